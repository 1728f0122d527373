"""n2n: Noise2Noise (Lehtinen et al., 2018) for people. See README.md."""
from .hub import load_model
from .infer import denoise
from .noise import NOISE_MODELS, corrupt
from .version import __version__

__all__ = ["corrupt", "load_model", "denoise", "NOISE_MODELS", "__version__"]
