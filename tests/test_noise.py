"""The method's premise: each noise's fitting statistic of many corruptions is the clean image."""
import numpy as np
import pytest

from n2n.noise import NOISE_MODELS, corrupt, get_noise, training_pair
from helpers import photo


@pytest.mark.parametrize("noise", ["gaussian", "poisson"])
def test_mean_of_many_corruptions_is_clean(noise):
    clean = photo(32)
    rng = np.random.default_rng(0)
    param = {"gaussian": 50.0, "poisson": 5.0}[noise]
    mean = np.mean([corrupt(clean, noise, param, rng) for _ in range(2000)], axis=0)
    single = corrupt(clean, noise, param, rng)
    error = np.abs(single - clean).mean()
    assert error > 0.05  # the noise is strong ...
    assert np.abs(mean - clean).mean() < 0.05 * error  # ... its average converges to clean (≈ error / √2000)
    assert abs(np.mean(mean - clean)) < 0.001  # ... with no bias


def test_poisson_has_no_uint8_wrap_and_right_variance():
    clean = np.full((64, 64, 3), 0.999, np.float32)
    noisy = corrupt(clean, "poisson", 30.0, np.random.default_rng(0))
    assert noisy.max() > 1.0  # unclipped, no wrap-around to 0
    assert abs(noisy.var() - 0.999 / 30.0) < 0.004


@pytest.mark.parametrize("lam", [5.0, 30.0])
def test_poisson_is_counts_over_lambda_with_variance_x_over_lambda(lam):
    """Shot noise, not a Gaussian of constant variance: λ·noisy is a whole number of photons, and the
    variance grows with the intensity, x/λ, at dark, mid and bright pixels (9× apart from 0.1 to 0.9)."""
    for k, x in enumerate((0.1, 0.5, 0.9)):
        noisy = corrupt(np.full((128, 128, 3), x, np.float32), "poisson", lam, np.random.default_rng(k))
        counts = noisy.astype(np.float64) * lam
        assert np.abs(counts - np.round(counts)).max() < 1e-3 and counts.min() >= 0, (lam, x)
        # 49,152 samples: the sample mean and variance are within ~1 % of the truth; allow 5 %
        assert abs(noisy.mean() - x) < 0.05 * x, (lam, x, noisy.mean())
        assert abs(noisy.var() / (x / lam) - 1) < 0.05, (lam, x, noisy.var(), x / lam)


@pytest.mark.parametrize("sigma", [10.0, 50.0])
def test_gaussian_is_white_with_sigma_on_the_255_scale(sigma):
    """Zero mean, standard deviation σ/255 whatever the intensity, no correlation between neighbours or channels."""
    for k, x in enumerate((0.1, 0.9)):
        noise = corrupt(np.full((128, 128, 3), x, np.float32), "gaussian", sigma, np.random.default_rng(k)) - x
        assert abs(noise.mean()) < 0.02 * sigma / 255
        assert abs(noise.std() / (sigma / 255) - 1) < 0.02, (sigma, x, noise.std() * 255)
        for a, b in ((noise[:, 1:], noise[:, :-1]), (noise[1:], noise[:-1]), (noise[..., 1:], noise[..., :-1])):
            assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.02


def test_median_of_many_text_corruptions_is_clean():
    clean = photo(48)
    rng = np.random.default_rng(0)
    stack = np.stack([corrupt(clean, "text", 0.25, rng) for _ in range(61)])
    single_changed = np.mean(np.abs(stack[0] - clean).max(axis=2) > 1e-6)
    assert 0.15 < single_changed < 0.35  # about a quarter of the pixels covered
    assert np.abs(np.median(stack, axis=0) - clean).mean() < 0.01


def test_text_looks_the_same_on_a_training_crop_and_a_photo():
    """Letters of the same sizes in pixels whatever the image size: a model trained on 96-pixel crops
    meets the same text on a full photo (letters scaled with the image were up to 128 px tall there)."""
    from skimage.measure import label

    sizes = {}
    for h, w in ((96, 96), (512, 768)):
        clean = np.zeros((h, w, 3), np.float32)
        covered = np.stack([corrupt(clean, "text", 0.25, np.random.default_rng(s)).max(axis=2) > 0 for s in range(4)])
        assert abs(covered.mean() - 0.25) < 0.03
        labels = [label(c, connectivity=2) for c in covered]
        sizes[h] = covered.sum() / sum(lab.max() for lab in labels)  # mean ink blob area, pixels
    assert 0.6 < sizes[96] / sizes[512] < 1.6, sizes


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_bernoulli_drop_rate_and_mask(p):
    clean = photo(96) + 0.01
    noisy, mask = corrupt(clean, "bernoulli", p, np.random.default_rng(1), return_mask=True)
    assert mask.shape == (96, 96, 1)
    assert abs(1 - mask.mean() - p) < 0.03
    assert np.all(noisy[mask[..., 0] == 0] == 0) and np.allclose(noisy * mask, clean * mask)


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5])
def test_text_covers_the_asked_fraction_in_random_colours(p):
    """The fraction p of pixels covered, over the whole range the models are trained on; strings in
    many colours (all channels of a covered pixel replaced); uncovered pixels untouched."""
    clean = photo(128)
    for seed in range(3):
        noisy = corrupt(clean, "text", p, np.random.default_rng(seed))
        covered = np.any(noisy != clean, axis=2)
        assert abs(covered.mean() - p) < 0.03, (p, seed, covered.mean())
        assert np.array_equal(noisy[~covered], clean[~covered])
        colours = np.unique(noisy[covered].round(4), axis=0)
        assert len(colours) >= 3, colours  # several strings, each its own colour
        assert np.all(np.isin(np.round(noisy[covered] * 255, 3), np.arange(256)))  # 8-bit colours


def test_impulse_values_are_uniform_on_0_1_per_channel():
    """Random-valued impulse noise, not salt-and-pepper: a hit pixel gets a colour drawn uniformly
    on [0, 1] in each channel independently."""
    clean = np.full((200, 200, 3), 0.5, np.float32)
    noisy = corrupt(clean, "impulse", 0.5, np.random.default_rng(3))
    hit = np.any(noisy != clean, axis=2)
    assert abs(hit.mean() - 0.5) < 0.02
    values = noisy[hit]  # (N, 3), N ≈ 20,000
    assert values.min() >= 0.0 and values.max() <= 1.0
    counts = np.histogram(values, bins=10, range=(0.0, 1.0))[0] / values.size
    # each tenth of [0, 1] gets its tenth (salt-and-pepper: 0 and 1 only)
    assert np.all(np.abs(counts - 0.1) < 0.01), counts
    assert abs(values.mean() - 0.5) < 0.01 and abs(values.var() - 1 / 12) < 0.003
    assert abs(np.corrcoef(values[:, 0], values[:, 1])[0, 1]) < 0.03  # a colour, not a grey level


@pytest.mark.parametrize("p", [0.2, 0.7])
def test_impulse_fraction(p):
    clean = photo(96)
    noisy = corrupt(clean, "impulse", p, np.random.default_rng(2))
    changed = np.mean(np.any(noisy != clean, axis=2))
    assert abs(changed - p) < 0.03
    # the mode of many corruptions is clean: random values almost never repeat, the clean one does
    stack = np.stack([corrupt(clean, "impulse", p, np.random.default_rng(k))[..., 0] for k in range(30)])
    assert np.mean(np.sum(stack == clean[..., 0], axis=0) >= 2) > 0.99


@pytest.mark.parametrize("noise", list(NOISE_MODELS))
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_dtype_and_seed(noise, channels):
    clean = photo(40, channels)
    a = corrupt(clean, noise, get_noise(noise).default, np.random.default_rng(7))
    b = corrupt(clean, noise, get_noise(noise).default, np.random.default_rng(7))
    c = corrupt(clean, noise, get_noise(noise).default, np.random.default_rng(8))
    assert a.shape == clean.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    gray2d = corrupt(clean[..., 0], noise, get_noise(noise).default, np.random.default_rng(7))
    assert gray2d.shape == clean.shape[:2]


def test_training_pair_independent_and_clean_target():
    clean = photo(32)
    source, target, mask = training_pair(clean, "gaussian", np.random.default_rng(0))
    assert not np.array_equal(source, target) and mask.shape == (32, 32, 1)
    # parameters drawn independently: residual std differs between source and target over many draws
    rng = np.random.default_rng(1)
    pairs = (training_pair(clean, "gaussian", rng) for _ in range(50))
    stds = np.array([[np.std(s - clean), np.std(t - clean)] for s, t, _ in pairs])
    assert np.corrcoef(stds.T)[0, 1] < 0.5
    _, target, _ = training_pair(clean, "gaussian", rng, clean_target=True)
    assert target is clean


def test_bad_arguments_say_what_to_do():
    with pytest.raises(ValueError, match="choose one of"):
        corrupt(photo(8), "salt", 1.0, np.random.default_rng())
    with pytest.raises(ValueError, match="outside"):
        corrupt(photo(8), "gaussian", 1000.0, np.random.default_rng())
    with pytest.raises(ValueError, match="float32"):
        corrupt((photo(8) * 255).astype(np.uint8), "gaussian", 10.0, np.random.default_rng())


def _plain_camera(seed=0, **changes):
    """A drawn camera with JPEG, chroma smoothing, noise reduction and sharpening off unless `changes` set them."""
    import dataclasses

    from n2n.noise import draw_camera

    return dataclasses.replace(draw_camera(np.random.default_rng(seed)),
                               **({"quality": 101, "chroma_blur": 0.0, "denoise": 0.0, "sharpen": 0.0} | changes))


def test_camera_noise_grows_with_brightness_from_the_shadows():
    """Shot noise: variance a·x + b in raw, so the sRGB noise of a dark patch is far below a mid-grey one's."""
    from n2n.noise import photograph

    cam = _plain_camera()
    std = {x: np.std(photograph(np.full((64, 64, 3), x, np.float32), 3200, np.random.default_rng(1), cam) - x)
           for x in (0.02, 0.1, 0.4)}
    assert std[0.02] < std[0.1] < std[0.4] and std[0.4] > 2 * std[0.02], std


def test_camera_noise_is_correlated_between_neighbours_and_not_between_shots():
    """Demosaicing spreads each raw sample over its neighbours; two shots draw independent noise."""
    from n2n.noise import photograph

    clean = np.full((96, 96, 3), 0.4, np.float32)
    for cam in (_plain_camera(0), _plain_camera(1, quality=90, sharpen=0.5)):
        a, b = (photograph(clean, 6400, np.random.default_rng(k), cam) - clean for k in (1, 2))
        a0 = a - a.mean(axis=(0, 1))
        neighbour = (a0[:, 1:] * a0[:, :-1]).mean() / a0.var()
        assert neighbour > 0.3, neighbour
        assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.05
    white = corrupt(clean, "gaussian", 25.0, np.random.default_rng(0)) - clean  # for contrast: ~0
    assert abs((white[:, 1:] * white[:, :-1]).mean() / white.var()) < 0.05


def test_in_camera_noise_reduction_leaves_coarser_grain():
    """Luma noise reduction takes out the finest grain of the luma: less of it, correlated further (2 px apart)."""
    from n2n.noise import photograph

    clean = np.full((128, 128, 3), 0.4, np.float32)

    def grain(cam):
        n = (photograph(clean, 6400, np.random.default_rng(3), cam) - clean) @ np.float32([0.299, 0.587, 0.114])
        n = n - n.mean()
        return n.std(), (n[:, 2:] * n[:, :-2]).mean() / n.var()

    (std, lag2), (std_nr, lag2_nr) = grain(_plain_camera(0)), grain(_plain_camera(0, denoise=0.7, denoise_px=1.5))
    assert std_nr < 0.9 * std and lag2_nr > lag2 + 0.1, (std, lag2, std_nr, lag2_nr)


def test_camera_pair_shares_the_camera_and_the_iso():
    """Two corruptions of one image are two shots of one camera: same camera, same ISO, independent noise."""
    from n2n.noise import camera_of

    clean = photo(48)
    assert repr(camera_of(clean)) == repr(camera_of(clean.copy()))
    assert not np.array_equal(camera_of(clean).wb, camera_of(photo(40)).wb)
    rng = np.random.default_rng(3)
    stds = np.array([[np.std(s - clean), np.std(t - clean)]
                     for s, t, _ in (training_pair(clean, "camera", rng) for _ in range(30))])
    assert np.corrcoef(stds.T)[0, 1] > 0.9  # one ISO for both (drawn log-uniformly over the pairs)
    assert stds.max() > 3 * stds.min()
    source, target, _ = training_pair(clean, "camera", rng)
    assert abs(np.corrcoef((source - clean).ravel(), (target - clean).ravel())[0, 1]) < 0.5


def test_camera_noise_refuses_a_bad_iso_in_one_sentence():
    with pytest.raises(ValueError, match=r"camera stops=10.0 is outside \[0.0, 9.0\]"):
        corrupt(photo(16), "camera", 10.0, np.random.default_rng())
