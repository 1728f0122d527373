"""Image quality as papers report it: on 8-bit output, per image."""
from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from .io import to_uint8


def _pair(clean, test):
    clean, test = to_uint8(clean), to_uint8(test)
    if clean.shape != test.shape:
        raise ValueError(f"images differ in shape: {clean.shape} vs {test.shape}")
    return clean, test


def psnr(clean: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB of `test` against `clean` after both are clipped and rounded to uint8.

    Identical images give inf.
    """
    clean, test = _pair(clean, test)
    mse = np.mean((clean.astype(np.float64) - test.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def ssim(clean: np.ndarray, test: np.ndarray) -> float:
    """SSIM (scikit-image, Gaussian weights as in Wang et al.) on uint8, averaged over channels."""
    clean, test = _pair(clean, test)
    if clean.ndim == 3 and clean.shape[2] == 1:
        clean, test = clean[..., 0], test[..., 0]
    channel_axis = 2 if clean.ndim == 3 else None
    return float(structural_similarity(clean, test, data_range=255, channel_axis=channel_axis,
                                       gaussian_weights=True, sigma=1.5, use_sample_covariance=False))
