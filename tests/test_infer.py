"""denoise(): every size, dtype and channel layout; tiles invisible; a trained model helps."""
import numpy as np
import pytest
import torch

from n2n import hub
from n2n.infer import denoise
from n2n.metrics import psnr
from n2n.models import build_model
from n2n.noise import corrupt
from conftest import photo


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return build_model("unet").eval()


@pytest.mark.parametrize("shape", [(1, 1), (1, 1, 3), (5, 3, 4), (33, 65, 2), (7, 200, 1), (31, 33, 3)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_any_shape_and_dtype_round_trips(unet, shape, dtype):
    rng = np.random.default_rng(0)
    image = rng.random(shape, dtype=np.float32)
    if dtype != np.float32:
        image = (image * np.iinfo(dtype).max).round().astype(dtype)
    out = denoise(unet, image)
    assert out.shape == image.shape and out.dtype == image.dtype
    if len(shape) == 3 and shape[2] in (2, 4):
        np.testing.assert_array_equal(out[..., -1], image[..., -1])  # alpha untouched


def test_tiled_equals_untiled(unet):
    image = np.random.default_rng(1).random((200, 300, 3), dtype=np.float32)
    whole = denoise(unet, image, tile=1024)
    for tile, overlap in [(64, 32), (128, 64), (96, 48)]:
        tiled = denoise(unet, image, tile=tile, overlap=overlap, batch=3)
        assert np.abs(tiled - whole).max() < 1e-3


def test_progress_and_batching(unet):
    calls = []
    denoise(unet, np.zeros((100, 130, 3), np.float32), tile=64, overlap=32, batch=4,
            progress=lambda done, total: calls.append((done, total)))
    done, total = calls[-1]
    assert done == total >= 4 and len(calls) < total  # every tile, several per forward pass


def test_gray_image_with_rgb_model_and_rgb_image_with_gray_model(unet):
    gray = photo(64, channels=1)
    assert denoise(unet, gray).shape == gray.shape
    gray_model = build_model("unet", in_channels=1, out_channels=1).eval()
    rgb = photo(64)
    assert denoise(gray_model, rgb).shape == rgb.shape


def test_bad_input(unet):
    with pytest.raises(ValueError, match="shape"):
        denoise(unet, np.zeros((0, 5, 3), np.float32))
    with pytest.raises(ValueError, match="channels"):
        denoise(unet, np.zeros((8, 8, 5), np.float32))
    with pytest.raises(ValueError, match="precision"):
        denoise(unet, np.zeros((8, 8, 3), np.float32), precision="fp8")


def test_bundled_gaussian_model_denoises():
    if "gaussian" not in hub.bundled_names():
        pytest.skip("checkpoints/gaussian is not bundled yet")
    model = hub.load_model("gaussian")
    clean = photo(128)
    noisy = corrupt(clean, "gaussian", 25.0, np.random.default_rng(0))
    assert psnr(clean, denoise(model, noisy)) > psnr(clean, noisy) + 5.0
