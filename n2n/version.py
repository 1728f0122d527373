"""The package's version (pyproject.toml says the same); the Hub is told it as the library's version."""
__version__ = "0.1.0"
