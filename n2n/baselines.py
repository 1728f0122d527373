"""Classical denoisers a user would pick instead: OpenCV non-local means, median, BM3D.

Each takes a float32 (H, W, C) noisy image in [0, 1] (C 1 or 3) and the noise model
with its parameter, and returns float32 (H, W, C) in [0, 1].
"""
from __future__ import annotations

import importlib.util

import cv2
import numpy as np

from .io import to_uint8
from .noise import camera_sigma

# h of cv2.fastNlMeans* as a function of the Gaussian-equivalent σ (0–255 scale), fitted on
# training images (bsd400, benchmarks/tune_nlm.py): h = NLM_SLOPE · σ + NLM_OFFSET.
NLM_SLOPE, NLM_OFFSET = 0.634, -1.42  # `python -m benchmarks.tune_nlm --images 6`


def equivalent_sigma(noise: str, param: float) -> float:
    """The σ (0–255) of Gaussian noise of about the same strength, for tuning classical filters."""
    if noise == "gaussian":
        return float(param)
    if noise == "poisson":  # variance x/λ, at mid-grey x = 0.5
        return 255.0 * float(np.sqrt(0.5 / max(param, 1e-3)))
    if noise == "camera":
        return camera_sigma(param)
    return 50.0


def nlm(noisy: np.ndarray, noise: str = "gaussian", param: float = 25.0) -> np.ndarray:
    """OpenCV fast non-local means with h chosen from the noise level."""
    h = max(1.0, NLM_SLOPE * equivalent_sigma(noise, param) + NLM_OFFSET)
    image = to_uint8(noisy)
    if image.shape[2] == 3:
        out = cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(image), None, h, h, 7, 21)
    else:
        out = cv2.fastNlMeansDenoising(np.ascontiguousarray(image[..., 0]), None, h, 7, 21)[..., None]
    return out.astype(np.float32) / 255.0


def median(noisy: np.ndarray, noise: str = "impulse", param: float = 0.5) -> np.ndarray:
    """Median filter, 3×3, or 5×5 when more than 30 % of pixels are hit (impulse, text)."""
    size = 5 if noise in ("impulse", "text", "bernoulli") and param > 0.3 else 3
    image = to_uint8(noisy)
    out = cv2.medianBlur(np.ascontiguousarray(image), size)
    return (out.reshape(image.shape)).astype(np.float32) / 255.0


def bm3d(noisy: np.ndarray, noise: str = "gaussian", param: float = 25.0) -> np.ndarray:
    """BM3D (the `bm3d` package, non-commercial licence: optional) with σ from the noise level."""
    import bm3d as _bm3d

    sigma = equivalent_sigma(noise, param) / 255.0
    if noisy.shape[2] == 3:
        out = _bm3d.bm3d_rgb(noisy, sigma)
    else:
        out = _bm3d.bm3d(noisy[..., 0], sigma)[..., None]
    return np.clip(out, 0.0, 1.0).astype(np.float32)


BASELINES = {"nlm": nlm, "median": median, "bm3d": bm3d}


def available() -> list[str]:
    """Baselines that can run here (BM3D only when the package is installed)."""
    return [name for name in BASELINES if name != "bm3d" or importlib.util.find_spec("bm3d")]


def get_baseline(name: str):
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from: {', '.join(BASELINES)}")
    if name not in available():
        raise ValueError(f"baseline {name!r} needs `pip install {name}` (non-commercial licence)")
    return BASELINES[name]
