"""Property tests (hypothesis): the noise models and denoise() over random shapes, dtypes and parameters.

Small budgets (25 examples each, no deadline): the machine has two cores and other work on them.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hypothesis import HealthCheck, example, given, settings, strategies as st

from n2n.infer import denoise
from n2n.models import build_model
from n2n.noise import NOISE_MODELS, corrupt

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@st.composite
def noise_case(draw, names=tuple(NOISE_MODELS)):
    """(image float32 HxWxC in [0, 1], noise name, parameter within its limits, seed)."""
    name = draw(st.sampled_from(names))
    lo, hi = NOISE_MODELS[name].limits
    param = draw(st.one_of(st.just(lo), st.just(hi), st.floats(lo, hi, allow_nan=False)))
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    c = draw(st.sampled_from([1, 3]))
    content = draw(st.sampled_from(["random", "zeros", "ones"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    image = {"random": lambda: rng.random((h, w, c), dtype=np.float32),
             "zeros": lambda: np.zeros((h, w, c), np.float32),
             "ones": lambda: np.ones((h, w, c), np.float32)}[content]()
    return image, name, param, draw(st.integers(0, 2**32 - 1))


@SETTINGS
@given(noise_case())
def test_noise_keeps_shape_and_dtype_is_finite_and_seed_reproducible(case):
    image, name, param, seed = case
    before = image.copy()
    noisy, mask = corrupt(image, name, param, np.random.default_rng(seed), return_mask=True)
    assert noisy.shape == image.shape and noisy.dtype == np.float32
    assert mask.shape == image.shape[:2] + (1,) and mask.dtype == np.float32
    assert np.isfinite(noisy).all()
    assert np.array_equal(image, before), "the clean image must not be modified in place"
    again, mask_again = corrupt(image, name, param, np.random.default_rng(seed), return_mask=True)
    assert np.array_equal(noisy, again) and np.array_equal(mask, mask_again)
    if name != "bernoulli":
        assert np.all(mask == 1)
    if name in ("impulse", "text", "bernoulli"):  # values replaced or dropped, never pushed out of range
        assert noisy.min() >= 0 and noisy.max() <= 1
    if name == "poisson":
        assert noisy.min() >= 0


@SETTINGS
@given(noise_case(names=("bernoulli",)))
def test_bernoulli_mask_is_binary_and_drops_exactly_the_masked_pixels(case):
    image, name, param, seed = case
    noisy, mask = corrupt(image, name, param, np.random.default_rng(seed), return_mask=True)
    assert set(np.unique(mask)) <= {0.0, 1.0}
    np.testing.assert_array_equal(noisy, image * mask)  # every channel of a dropped pixel is 0, the rest intact


@SETTINGS
@given(noise_case(), st.booleans())
def test_noise_on_2d_images_keeps_2d(case, _):
    image, name, param, seed = case
    gray = image[..., 0]
    noisy = corrupt(gray, name, param, np.random.default_rng(seed))
    assert noisy.shape == gray.shape and noisy.dtype == np.float32 and np.isfinite(noisy).all()


@SETTINGS
@given(st.sampled_from(list(NOISE_MODELS)), st.sampled_from(["below", "above", "nan"]))
def test_noise_parameter_outside_limits_is_refused(name, where):
    lo, hi = NOISE_MODELS[name].limits
    param = {"below": lo - 1e-3, "above": hi + 1e-3, "nan": float("nan")}[where]
    with pytest.raises(ValueError, match="outside"):
        corrupt(np.zeros((4, 4, 3), np.float32), name, param, np.random.default_rng(0))


# --------------------------------------------------------------------------- denoise

@pytest.fixture(scope="module")
def unets():
    """Freshly initialised U-Nets, RGB and gray, from a fixed seed."""
    torch.manual_seed(0)
    return {3: build_model("unet").eval(), 1: build_model("unet", in_channels=1, out_channels=1).eval()}


DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float32": np.float32}
TILES = st.one_of(st.sampled_from([32, 64, 96, 128]), st.integers(32, 128))


@st.composite
def denoise_case(draw):
    h, w = draw(st.integers(1, 70)), draw(st.integers(1, 70))
    c = draw(st.integers(1, 4))
    dtype = DTYPES[draw(st.sampled_from(list(DTYPES)))]
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    image = rng.random((h, w, c), dtype=np.float32)
    if dtype != np.float32:
        image = np.rint(image * np.iinfo(dtype).max).astype(dtype)
    return image, draw(TILES), draw(st.sampled_from([1, 3]))


@SETTINGS
@given(denoise_case())
def test_denoise_keeps_shape_dtype_and_alpha(unets, case):
    image, tile, model_channels = case
    before = image.copy()
    out = denoise(unets[model_channels], image, tile=tile)
    assert out.shape == image.shape and out.dtype == image.dtype
    assert np.array_equal(image, before), "the input must not be modified in place"
    if image.dtype == np.float32:
        assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    if image.shape[2] in (2, 4):
        np.testing.assert_array_equal(out[..., -1], image[..., -1])  # alpha passes through untouched


@SETTINGS
@given(st.integers(1, 70), st.integers(1, 160), st.sampled_from([1, 2, 3, 4]), TILES,
       st.sampled_from([16, 32, 64]), st.integers(0, 2**16))
@example(h=1, w=64, c=1, tile=32, overlap=64, seed=0)  # tile = the U-Net's multiple: tiles could not overlap
@example(h=40, w=150, c=4, tile=64, overlap=16, seed=1)
def test_tiled_equals_untiled_on_float_images(unets, h, w, c, tile, overlap, seed):
    """Up to 160 wide, so that tiles of 64 to 128 really split the image."""
    image = np.random.default_rng(seed).random((h, w, c), dtype=np.float32)
    whole = denoise(unets[3], image, tile=1024)
    tiled = denoise(unets[3], image, tile=tile, overlap=overlap)
    assert tiled.shape == whole.shape
    assert np.abs(tiled - whole).max() < 1e-3, f"tile {tile}, overlap {overlap} on {h}x{w}x{c}"


@SETTINGS
@given(st.integers(1, 40), st.integers(1, 40), st.sampled_from([np.uint8, np.uint16]))
def test_2d_images_stay_2d(unets, h, w, dtype):
    image = np.random.default_rng(h * 41 + w).integers(0, np.iinfo(dtype).max, (h, w), dtype=dtype)
    out = denoise(unets[1], image, tile=64)
    assert out.shape == image.shape and out.dtype == dtype
