"""The app's tabs, one module each, and what they share (common, registry). See app.py."""
