import numpy as np
import pytest

from n2n.metrics import psnr, ssim


def test_identical_images():
    a = np.random.default_rng(0).random((16, 16, 3), dtype=np.float32)
    assert psnr(a, a) == float("inf") and ssim(a, a) == pytest.approx(1.0)


def test_psnr_clips_and_rounds_like_papers():
    clean = np.full((8, 8, 3), 0.5, np.float32)
    assert psnr(clean, clean + 0.001) == float("inf")  # rounds to the same uint8
    out = clean.copy()
    out[0, 0, 0] = 5.0  # clipped to 1.0 -> error 127.5 -> 128 levels? exactly 255-128=127
    expected = 10 * np.log10(255**2 / (127**2 / (8 * 8 * 3)))
    assert psnr(clean, out) == pytest.approx(expected)


def test_psnr_uint8_and_float_agree():
    rng = np.random.default_rng(1)
    a, b = rng.random((20, 20, 3), dtype=np.float32), rng.random((20, 20, 3), dtype=np.float32)
    assert psnr(a, b) == pytest.approx(psnr((a * 255).round().astype(np.uint8), b))


def test_shape_mismatch():
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))
    with pytest.raises(ValueError, match="differ in shape"):
        ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 1)))


def test_gray_ssim():
    rng = np.random.default_rng(2)
    a = rng.random((32, 32, 1), dtype=np.float32)
    assert 0 < ssim(a, np.clip(a + 0.1 * rng.standard_normal(a.shape, dtype=np.float32), 0, 1)) < 1
