"""The blind noise estimate (n2n.estimate) on real photos: σ within a tolerance, the kind of noise
and the model it suggests. Kodak24 figures in benchmarks/results/estimate.md."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import DATA, photo
from n2n.estimate import estimate_noise, noise_sigma
from n2n.io import from_float, read_image, to_float
from n2n.noise import corrupt


def upload(clean: np.ndarray, noise: str, param: float, seed: int = 0) -> np.ndarray:
    """What a visitor uploads: clean + noise, clipped and rounded to 8 bits."""
    noisy = corrupt(clean, noise, param, np.random.default_rng(seed))
    return from_float(np.clip(noisy, 0, 1), np.uint8)


@pytest.mark.parametrize("sigma", [5, 10, 25, 50])
def test_sigma_of_gaussian_noise_on_a_photo(sigma):
    # measured on the 256² astronaut: 4.2, 7.9, 23.4, 43.0 (clipping in its dark and bright areas
    # takes away some of the σ = 50 noise); a clean photo reads 0.7
    estimate = noise_sigma(upload(photo(256), "gaussian", sigma))
    assert abs(estimate - sigma) <= max(2.5, 0.2 * sigma), estimate


def test_a_clean_photo_reads_almost_noiseless():
    assert noise_sigma(from_float(photo(256), np.uint8)) < 2.0


def test_the_kind_of_noise_and_the_suggested_model():
    clean = photo(256)
    gaussian = estimate_noise(upload(clean, "gaussian", 25))
    assert (gaussian.kind, gaussian.model) == ("gaussian", "gaussian")
    assert gaussian.text == f"looks like Gaussian noise, σ ≈ {gaussian.sigma:.0f}"
    impulse = estimate_noise(upload(clean, "impulse", 0.3))
    assert (impulse.kind, impulse.model) == ("impulse", "impulse")
    assert estimate_noise(upload(clean, "impulse", 0.3), models=["gaussian"]).model == "gaussian"


def test_large_images_are_read_as_a_crop(monkeypatch):
    # a 16 MP upload must not cost seconds: only the centre MAX_SIDE² is read
    import n2n.estimate as estimate

    seen = []
    real = estimate.pca_variance
    monkeypatch.setattr(estimate, "pca_variance",
                        lambda channel, **kw: seen.append(channel.shape) or real(channel, **kw))
    big = upload(np.tile(photo(256), (4, 6, 1)), "gaussian", 25)  # 1024 × 1536
    assert abs(estimate.noise_sigma(big) - 25) < 5
    assert seen and all(shape == (estimate.MAX_SIDE, estimate.MAX_SIDE) for shape in seen)


@pytest.mark.skipif(not (DATA / "kodak24").is_dir(), reason="needs ../shared/data/kodak24")
@pytest.mark.parametrize("sigma", [5, 25])
def test_sigma_on_kodak(sigma):
    # benchmarks/results/estimate.md: mean abs error 0.39 at σ = 5 and 0.56 at σ = 25 over 24 images
    files = sorted((DATA / "kodak24").glob("*.png"))[:4]
    errors = [noise_sigma(upload(to_float(read_image(f)), "gaussian", sigma, k)) - sigma for k, f in enumerate(files)]
    assert np.mean(np.abs(errors)) < 1.5, errors
