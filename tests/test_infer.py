"""denoise(): every size, dtype and channel layout; tiles invisible; a trained model helps."""
import copy

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from n2n import hub
from n2n.infer import as_bf16, denoise, keep_low_pass, resolve_precision
from n2n.io import to_uint8
from n2n.metrics import psnr
from n2n.models import build_model
from n2n.noise import corrupt
from helpers import photo


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


def test_tiles_are_invisible_with_the_trained_model():
    """The bundled gaussian model on a real noisy 8-bit photo (400 × 600, so the last tiles are padded):
    tiled in 256-px tiles and whole, the outputs are at most one level apart away from the image border
    once tiles overlap by 96 px or more, the default, but for a handful of values two levels apart (measured:
    1 of 627,000 in fp32, 3 in bf16, the 77,000-step model; none at overlap 128). (At 64, the old default, the
    39,000-step model left 14 of 720,000 values up to 3 levels apart.) An untrained net barely looks at distant
    pixels: only a trained one shows the seams. Both precisions that "auto" picks are checked where bf16 is
    native (or N2N_PRECISION=bf16 asks for it)."""
    model = hub.load_dir(hub.CHECKPOINTS / "gaussian").model
    clean = skimage.data.coffee().astype(np.float32) / 255
    noisy = to_uint8(corrupt(clean, "gaussian", 25.0, np.random.default_rng(0)))
    inner = (slice(16, -16), slice(16, -16))
    for precision in ["fp32"] + (["bf16"] if resolve_precision("auto") == "bf16" else []):
        whole = denoise(model, noisy, tile=1024, precision=precision)
        assert whole.dtype == np.uint8 and psnr(clean, whole) > psnr(clean, noisy) + 8  # the trained model, at work
        for settings in ({}, {"overlap": 128, "batch": 2}):  # {}: the default overlap
            apart = np.abs(denoise(model, noisy, tile=256, precision=precision, **settings).astype(int) - whole)[inner]
            assert apart.max() <= 2 and np.count_nonzero(apart > 1) <= 10, (precision, settings, apart.max())
            assert np.mean(apart > 0) < 0.05, (precision, settings)


@pytest.mark.parametrize("shape", [(65, 33, 3), (40, 48, 4), (3, 3, 3)])
def test_pixel_shuffle_denoises_each_sub_image_in_place(unet, shape):
    """stride s: the s² sub-images image[i::s, j::s] denoised one by one and put back where they came from
    (alpha untouched); an image too small to split goes through whole."""
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    calls = []
    out = denoise(unet, image, stride=2, progress=lambda done, total: calls.append((done, total)))
    if min(shape[:2]) < 4:
        np.testing.assert_array_equal(out, denoise(unet, image, stride=1))
        return
    for i in range(2):
        for j in range(2):
            np.testing.assert_array_equal(out[i::2, j::2], denoise(unet, image[i::2, j::2], stride=1))
    assert not np.array_equal(out, denoise(unet, image, stride=1))
    assert calls[-1][0] == calls[-1][1] and [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len({t for _, t in calls}) == 1  # one total from the first call to the last


def test_a_checkpoint_names_the_stride_it_is_meant_for(unet, tmp_path):
    from n2n.checkpoint import CheckpointError, load_dir, save

    image = np.random.default_rng(1).random((64, 64, 3), dtype=np.float32)
    save(unet, tmp_path / "s2", {"architecture": "unet", "model_args": {}, "stride": 2})
    loaded = load_dir(tmp_path / "s2").model
    np.testing.assert_array_equal(denoise(loaded, image), denoise(unet, image, stride=2))
    np.testing.assert_array_equal(denoise(loaded, image, stride=1), denoise(unet, image))
    for bad in (0, 5, 2.5, True, "2"):
        save(unet, tmp_path / "bad", {"architecture": "unet", "model_args": {}, "stride": bad})
        with pytest.raises(CheckpointError, match="stride=.* is refused"):
            load_dir(tmp_path / "bad")
    with pytest.raises(ValueError, match="stride must be one of"):
        denoise(unet, image, stride=8)


class _Identity(torch.nn.Module):
    """Returns its input: any transform the ensemble makes must be undone exactly for the output to match."""

    in_channels, multiple = 3, 1

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        return x * self.scale


@pytest.mark.parametrize("shape", [(37, 53, 3), (20, 31, 4), (17, 9)])
def test_self_ensemble_undoes_everyensemble_transform(shape):
    """Each of the 8 rotations and flips is undone in place: an identity model gives the image back exactly,
    at stride 1 and 2, whatever the shape (not square, odd, alpha, gray)."""
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    for stride in (1, 2):
        for ensemble in (True, 3):
            out = denoise(_Identity(), image, ensemble=ensemble, stride=stride, precision="fp32")  # bf16 rounds
            np.testing.assert_allclose(out, image, atol=1e-6)


def test_self_ensemble_averages_the_transformed_passes(unet):
    from n2n.infer import ensemble_transform

    image = photo(64)
    passes = [ensemble_transform(denoise(unet, np.ascontiguousarray(ensemble_transform(image, k))), k, inverse=True)
              for k in range(8)]
    np.testing.assert_allclose(denoise(unet, image, ensemble=True), np.mean(passes, axis=0), atol=1e-5)
    assert not np.allclose(passes[0], passes[5], atol=1e-4)  # the untrained net is not rotation-invariant
    calls = []
    denoise(unet, image, ensemble=True, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (8, 8)
    with pytest.raises(ValueError, match="ensemble takes"):
        denoise(unet, image, ensemble=9)


def test_a_tiled_ensemble_matches_an_untiled_one():
    model = hub.load_dir(hub.CHECKPOINTS / "gaussian").model
    clean = skimage.data.coffee()[:320, :400].astype(np.float32) / 255
    noisy = to_uint8(corrupt(clean, "gaussian", 25.0, np.random.default_rng(0)))
    whole = denoise(model, noisy, tile=1024, ensemble=True, precision="fp32")
    tiled = denoise(model, noisy, tile=256, ensemble=True, precision="fp32")  # 2 × 2 tiles, the default overlap
    apart = np.abs(tiled.astype(int) - whole)[16:-16, 16:-16]
    assert apart.max() <= 2 and np.count_nonzero(apart > 1) <= 10 and np.mean(apart > 0) < 0.05
    assert psnr(clean, whole) > psnr(clean, denoise(model, noisy, precision="fp32"))  # the ensemble helps


class _Brighten(torch.nn.Module):
    """Blurs its input a little and brightens it by 0.05: detail changed, and a shift of the photo's mean."""

    in_channels, multiple = 3, 1

    def __init__(self):
        super().__init__()
        self.offset = torch.nn.Parameter(torch.tensor(0.05))

    def forward(self, x):
        return torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False) + self.offset


def test_low_pass_keeps_the_photos_brightness_and_the_models_detail(unet, tmp_path):
    """low_pass: the model's shift of brightness is undone (the low-pass of noisy − denoised put back), its fine
    detail kept; a checkpoint's "low_pass" is its default, 0 turns it off, bad values are refused."""
    from scipy.ndimage import gaussian_filter

    from n2n.checkpoint import CheckpointError, load_dir, save

    clean = photo(128)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
    plain = denoise(_Brighten(), noisy, precision="fp32")
    kept = denoise(_Brighten(), noisy, precision="fp32", low_pass=16)
    assert abs(plain.mean() - noisy.mean() - 0.05) < 0.01  # brightened
    assert abs(kept.mean() - noisy.mean()) < 0.005  # brightness of the photo kept
    fine = lambda x: x - gaussian_filter(x, (16, 16, 0))  # noqa: E731
    assert np.abs(fine(kept) - fine(plain)).mean() < 0.1 * np.abs(fine(noisy) - fine(plain)).mean()  # detail kept
    assert psnr(clean, kept) > psnr(clean, plain) + 2  # measured: +2.5 dB
    for sigma in (4, 16, 32):  # the shrunk blur is the full-size one within 0.25 levels (0-255), on σ = 25 noise
        plain_c = np.ascontiguousarray(plain)
        exact = np.clip(plain_c + cv2.GaussianBlur(noisy - plain_c, (0, 0), sigma, borderType=cv2.BORDER_REFLECT),
                        0, 1)
        assert np.abs(keep_low_pass(noisy, plain_c, sigma) - exact).max() < 0.25 / 255, sigma  # measured: 0.14
    np.testing.assert_array_equal(denoise(_Brighten(), noisy, precision="fp32", low_pass=0), plain)
    save(unet, tmp_path / "lp", {"architecture": "unet", "model_args": {}, "low_pass": 16})
    loaded = load_dir(tmp_path / "lp").model
    np.testing.assert_allclose(denoise(loaded, noisy), denoise(unet, noisy, low_pass=16), atol=1e-6)
    np.testing.assert_array_equal(denoise(loaded, noisy, low_pass=0), denoise(unet, noisy))
    for bad in (-1, 300, True, "16"):
        save(unet, tmp_path / "bad", {"architecture": "unet", "model_args": {}, "low_pass": bad})
        with pytest.raises(CheckpointError, match="low_pass=.* is refused"):
            load_dir(tmp_path / "bad")
    with pytest.raises(ValueError, match="low_pass is a scale in pixels"):
        denoise(unet, noisy, low_pass=-2)


@pytest.mark.parametrize("arch", ["unet", "srresnet"])  # zsn2n adds its bf16 input back: rounded all the same
def test_bf16_keeps_the_output_layer_in_fp32_and_lands_nearer_fp32(arch):
    """bf16 inference runs every layer in bf16 but the output conv, whose result bf16 would round to 1/256 in
    [0.5, 1] (about an 8-bit level): its weights stay fp32, and the output is nearer fp32's than an all-bf16
    copy's. The output must be near 1 for that to show: the net's last bias is set to 0.75."""
    torch.manual_seed(0)
    model = build_model(arch).eval()
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.mul_(0.01)
        last.bias.fill_(0.75)
    net = as_bf16(model)
    assert as_bf16(net) is net  # a copy already: denoise() and its tiles share it
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[-1].weight.dtype == torch.float32 and all(m.weight.dtype == torch.bfloat16 for m in convs[:-1])
    x = photo(64)
    exact = denoise(model, x, precision="fp32")
    plain = copy.deepcopy(model).to(torch.bfloat16)
    err = lambda out: float(np.sqrt(np.mean((out - exact) ** 2)))  # noqa: E731
    assert err(denoise(net, x, precision="bf16")) < 0.5 * err(denoise(plain, x, precision="bf16"))
