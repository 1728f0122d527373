"""The Learn tab (issue 13, part 3): N noisy copies combined as L2 (mean), L1 (median) and annealed L0
(mode) would combine noisy targets, n2n.learn, and its /learn endpoint driven through gradio_client.

The three claims on a small real photo: Gaussian noise, the mean wins and climbs with N; text overlay,
the mean keeps grey ghosts of the letters and the median is clean; random-valued impulses, the mode
wins. Margins are a fraction of what was measured (in each test's comment), so a wrong statistic fails.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gradio_client import handle_file

from helpers import photo, refusal
from n2n.io import from_float, read_image, write_image
from n2n.learn import combine, median_of_sorted, mode_of_sorted, mode_window



def run(noise: str, param: float, n: int, seed: int = 0):
    return combine(photo(64), noise, param, n, np.random.default_rng(seed))


# ----------------------------------------------------------------------------- the statistics


def test_median_and_mode_of_sorted_values():
    values = np.sort(np.array([[0.9, 0.5, 0.1, 0.5, 0.5, 0.3, 0.7],  # the clean value repeats among random ones
                               [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.45]]).T, axis=0)  # (7, 2): sorted along axis 0
    assert median_of_sorted(values).tolist() == pytest.approx([0.5, 0.45])
    assert mode_of_sorted(values)[0] == pytest.approx(0.5)
    assert median_of_sorted(np.array([[1.0], [3.0]]))[0] == 2.0  # even N: between the middle two
    # uint8: the window widths of sorted values never wrap around
    impulses = np.sort(np.array([200, 3, 200, 250, 200, 90, 200, 17, 200], np.uint8))[:, None]
    assert mode_of_sorted(impulses)[0] == 200 and median_of_sorted(impulses)[0] == 200
    # ties between equally narrow windows go to the middle of the sample, not to the lowest values
    evenly = np.arange(0, 250, 10, dtype=np.uint8)[:, None]  # 25 values, every window as wide
    assert mode_of_sorted(evenly)[0] == 120
    assert [mode_window(n) for n in (1, 2, 3, 4, 16, 17, 64)] == [1, 2, 2, 2, 4, 5, 8]


def test_gaussian_the_mean_wins_and_climbs_with_n():
    # measured (64² astronaut, σ = 25, 4 seeds): N = 16: mean 32.4-32.6, median 30.8-30.9, mode 24.9-25.0;
    # the mean +5.8 dB from N = 1 to 4 and +5.9 from 4 to 16
    result = run("gaussian", 25, 16)
    scores = result.psnr
    assert scores["mean"] > scores["median"] + 0.8 and scores["mean"] > scores["mode"] + 4, scores
    assert scores["noisy"] < 22 < scores["mean"]
    mean = {row["N"]: row["psnr"] for row in result.curve if row["statistic"] == "mean"}
    assert list(mean) == [1, 2, 3, 4, 6, 8, 12, 16]
    assert all(b > a for a, b in zip(list(mean.values()), list(mean.values())[1:])), mean
    assert mean[16] > mean[4] + 5 and mean[4] > mean[1] + 5, mean  # 10·log10(4) = 6.02 dB per 4× the copies
    assert mean[16] == pytest.approx(scores["mean"], abs=0.01)  # a 64² image: the curve reads every value


def test_text_the_mean_keeps_ghosts_and_the_median_is_clean():
    # measured (p = 0.25, N = 16, 4 seeds): mean 20.2-21.0 dB; median 35.8-41.6 dB; seed 0: 85% of the mean's
    # values off by over 4/255, 0.7% of the median's
    clean = photo(64)
    result = run("text", 0.25, 16)
    scores = result.psnr
    assert scores["median"] > scores["mean"] + 10 and scores["median"] > 32, scores

    def off(image):  # fraction of values more than 4/255 away from the clean image: ghosts of the letters
        return float(np.mean(np.abs(from_float(image, np.uint8).astype(int) - from_float(clean, np.uint8)) > 4))

    assert off(result.images["mean"]) > 0.3 and off(result.images["median"]) < 0.03, (
        off(result.images["mean"]), off(result.images["median"]))


@pytest.mark.parametrize("p", [0.5, 0.7])
def test_impulse_the_mode_wins(p):
    # measured at N = 32: p = 0.5: mean 16.2, median 25.4, mode ∞ (identical);
    # p = 0.7: 13.4, 15.8, 29.4 (4 seeds: mode 27.8-29.4)
    scores = run("impulse", p, 32).psnr
    assert scores["mode"] > scores["median"] + 8 and scores["median"] > scores["mean"], scores


def test_copies_are_independent_seeded_and_the_same_on_any_number_of_threads():
    clean = photo(32)
    one = combine(clean, "gaussian", 25, 5, np.random.default_rng(3), threads=1)
    two = combine(clean, "gaussian", 25, 5, np.random.default_rng(3), threads=2)
    for name in ("mean", "median", "mode"):
        np.testing.assert_array_equal(one.images[name], two.images[name])
    assert one.psnr == two.psnr
    assert combine(clean, "gaussian", 25, 5, np.random.default_rng(4)).psnr["mean"] != one.psnr["mean"]
    # one copy: every statistic is that copy
    single = combine(clean, "impulse", 0.5, 1, np.random.default_rng(0))
    assert single.psnr["mean"] == single.psnr["median"] == single.psnr["mode"] == single.psnr["noisy"]
    with pytest.raises(ValueError, match="N must be 1 to 64"):
        combine(clean, "gaussian", 25, 65, np.random.default_rng(0))


# ----------------------------------------------------------------------------- the endpoint


@pytest.fixture(scope="module")
def clean_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("learn") / "clean.png"
    write_image(path, from_float(photo(64)[:48], np.uint8))  # 64 wide, 48 high: a swapped axis shows
    return path


def test_learn_endpoint_text(client, clean_png):
    out = client.predict(handle_file(str(clean_png)), "text", 0.25, 8, 0, api_name="/learn")
    paths, scores, plot, notes, summary = out[:4], out[4:8], out[8], out[9:12], out[12]
    for path in paths:
        image = read_image(path, dtype=None)
        assert Path(path).suffix == ".png" and image.shape == (48, 64, 3) and image.dtype == np.uint8
    noisy, mean, median, mode = scores
    assert median > mean + 5 and mean > noisy, scores
    rows = plot["data"]
    assert {row[0] for row in rows} == {1, 2, 3, 4, 6, 8}
    assert {row[2] for row in rows} == {"mean (L2)", "median (L1)", "mode (annealed L0)"}
    assert "**The app trains text noise with L1**" in notes[1] and "**The app" not in notes[0] + notes[2]
    assert "grey ghosts" in notes[0]
    assert summary.startswith("8 noisy copies of this 64×48 image with text noise (p = 0.25)")
    assert "mean" not in summary.split("**")[1], summary  # the median wins, or the mode (it finds the clean value too)


def test_learn_endpoint_gaussian_defaults_and_large_images(client, tmp_path):
    big = tmp_path / "big.png"
    write_image(big, from_float(np.tile(photo(64), (10, 9, 1)), np.uint8))  # 576 wide, 640 high
    out = client.predict(handle_file(str(big)), "gaussian", 25, 2, api_name="/learn")
    assert read_image(out[0], dtype=None).shape == (512, 461, 3)
    assert "(reduced from 576×640)" in out[12]
    assert "**The app trains gaussian noise with L2**" in out[9]


@pytest.mark.parametrize("args, said", [(("bernoulli", 0.5, 4), "bernoulli is not in the list of choices"),
                                        (("impulse", 1.5, 4), "impulse p = 1.5 is outside"),
                                        (("gaussian", 25, 65), "greater than maximum value 64")])
def test_learn_endpoint_refuses_in_one_sentence(client, clean_png, args, said):
    message = refusal(lambda: client.predict(handle_file(str(clean_png)), *args, api_name="/learn"))
    assert said in message, message


def test_neighbour_pairs_of_camera_noise_are_correlated_until_pixel_shuffled():
    """Claim (4): Gaussian noise is independent between the pixels Neighbor2Neighbor pairs; camera noise is not
    (demosaicing, JPEG), and pixel-shuffling at stride 2 takes most of that away."""
    from n2n.learn import correlation, independence, neighbour_pair

    white, camera = independence(photo(128), np.random.default_rng(0))
    assert abs(white["neighbours"]) < 0.05 and abs(white["pairs"]) < 0.05 and abs(white["pairs_stride_2"]) < 0.05
    assert camera["neighbours"] > 0.3 and camera["pairs"] > 0.3
    assert camera["pairs_stride_2"] < 0.7 * camera["pairs"]
    assert camera["noise_image"].shape == (128, 128, 3)
    grid = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    a, b = neighbour_pair(grid, np.random.default_rng(1))
    assert a.shape == (2, 2, 1) and np.all(np.isin(np.abs(a - b), [1, 4]))  # adjacent, never the same pixel
    assert correlation(grid, grid) == pytest.approx(1.0)


def test_independence_endpoint(client, clean_png):
    gaussian, camera, table, text = client.predict(handle_file(str(clean_png)), 0, api_name="/independence")
    assert read_image(gaussian, dtype=None).shape == (48, 64, 3) and Path(camera).suffix == ".png"
    assert [row[0] for row in table["data"]] == ["gaussian (σ = 10)", "camera (stops = 4)"]
    assert text.startswith("**Noise2Noise needs noise independent between the input and its target.**")
