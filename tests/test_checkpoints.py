"""Every bundled checkpoint as shipped: it loads, its config names its noise (and clean targets for `-n2c`),
and on real photos corrupted with that noise at its test setting it beats the noisy input by a good part
of the gain its own card reports, and beats the best classical baseline. With --run-slow and the shared
data present: the Kodak24 figure on its card reproduces.

The checkpoints are retrained and replaced under the same names: every expected figure is read from the
checkpoint's own config.json ("eval" rows, which its model card shows), none is written here.
"""
from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from n2n import baselines, hub
from n2n.evaluate import evaluate
from n2n.data import list_images
from n2n.infer import denoise
from n2n.io import centre_crop
from n2n.metrics import psnr
from n2n.noise import corrupt, get_noise



def card_row(config: dict, data: str = "kodak24") -> dict:
    rows = [row for row in config.get("eval", []) if row["data"] == data]
    assert rows, (f"config.json has no eval row on {data}: run `python train_space.py eval --all` "
                  "(and `eval --noise gaussian --clean-targets`)")
    return rows[0]


def test_every_bundled_name_is_shipped():
    assert set(hub.BUNDLED) <= set(hub.bundled_names())


@pytest.mark.parametrize("name", hub.BUNDLED)
def test_config_and_card_name_its_noise_and_targets(name):
    config = hub.read_config(hub.CHECKPOINTS / name)
    noise, clean_targets = name.removesuffix("-n2c"), name.endswith("-n2c")
    assert config["noise"] == noise and config["clean_targets"] is clean_targets and config["mode"] == "synthetic"
    assert config["loss"] == ("l2" if clean_targets else get_noise(noise).loss)
    assert config["architecture"] == "unet"
    lo, hi = config["noise_range"]
    assert lo <= get_noise(noise).default <= hi  # trained over the test setting
    row = card_row(config)
    assert row["noise"] == noise and row["param"] == get_noise(noise).default
    assert row["psnr"] > row["noisy_psnr"] and row["images"] == 24
    card = (hub.CHECKPOINTS / name / "README.md").read_text()
    assert f"**{row['psnr']:.2f}**" in card  # the card shows the figures config.json holds
    assert ("Noise2Clean" in card) is clean_targets and ("Noise2Noise)" in card) is not clean_targets


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """Two real photos at their own resolution (256 px centre crops), float32 in [0, 1]."""
    return [centre_crop(getattr(skimage.data, name)().astype(np.float32) / 255, 256)
            for name in ("astronaut", "coffee")]


# The share of its card's Kodak24 gain each model must reach on the two photos: 0.6, and 0.45 for camera, whose
# photos draw their own camera (noise reduction, JPEG): measured 0.54 (step 8,000) and 0.55 (step 1,031), where the
# bundled poisson and gaussian models gain 0.30 and 0.06 of it on the same camera noise.
GAIN_SHARE = {"camera": 0.45, "camera-n2c": 0.45}  # its twin: the same noise


@pytest.mark.parametrize("name", hub.BUNDLED)
def test_denoises_its_noise_better_than_classical_filters(name, photos):
    """Calibration (checkpoints of this session, 2-core CPU): on these two photos each model gains 0.81 to 0.93
    of its card's Kodak24 gain over the noisy input, and leads the best baseline by 2.0 (poisson) to 11 dB
    (bernoulli). A broken checkpoint (untrained weights, another noise's model) falls far below both bars."""
    loaded = hub.load_dir(hub.CHECKPOINTS / name)
    noise = loaded.config["noise"]
    param = get_noise(noise).default
    row = card_row(loaded.config)
    scores = {"noisy": [], "model": [], "nlm": [], "median": []}
    for k, clean in enumerate(photos):
        noisy = corrupt(clean, noise, param, np.random.default_rng([0, k]))  # as `python -m n2n eval` does
        scores["noisy"].append(psnr(clean, noisy))
        scores["model"].append(psnr(clean, denoise(loaded.model, noisy)))
        for baseline in ("nlm", "median"):
            scores[baseline].append(psnr(clean, baselines.get_baseline(baseline)(noisy, noise, param)))
    mean = {method: float(np.mean(values)) for method, values in scores.items()}
    card_gain = row["psnr"] - row["noisy_psnr"]
    assert mean["model"] - mean["noisy"] > GAIN_SHARE.get(name, 0.6) * card_gain, (mean, card_gain)
    assert mean["model"] > max(mean["nlm"], mean["median"]) + 0.5, mean


@pytest.mark.slow
@pytest.mark.parametrize("name", hub.BUNDLED)
def test_card_figure_reproduces_on_kodak24(name, kodak):
    """The card's Kodak24 PSNR, recomputed as `python -m n2n eval` computes it (same images, noise seeds
    and precision): a checkpoint replaced without its card, or a change to the noise, the model's
    forward pass or the tiling, shows here. About 30 to 60 s per model on 2 cores."""
    loaded = hub.load_dir(hub.CHECKPOINTS / name)
    row = card_row(loaded.config)
    files = list_images(kodak)[: row["images"]]
    figures = evaluate(loaded.model, files, row["noise"], row["param"], precision=row.get("precision", "fp32"))
    assert figures["noisy_psnr"] == pytest.approx(row["noisy_psnr"], abs=0.01)  # the same noisy images
    # bf16 rounds differently from CPU to CPU (and on a GPU): a tenth of a dB covers it
    assert figures["psnr"] == pytest.approx(row["psnr"], abs=0.1)


@pytest.mark.parametrize("architecture, named", [("unet", "The U-Net of Lehtinen et al. 2018"),
                                                 ("srresnet", "SRResNet without upsampling (Ledig et al. 2017)")])
def test_a_card_names_the_architecture_its_config_holds(tmp_path, architecture, named):
    from n2n.models import build_model

    hub.save(build_model(architecture, in_channels=3, out_channels=3), tmp_path / "m",
             {"architecture": architecture, "model_args": {"in_channels": 3, "out_channels": 3}, "noise": "gaussian",
              "steps": 0})
    card = hub.write_model_card(tmp_path / "m").read_text()
    line = next(line for line in card.splitlines() if line.startswith("- architecture:"))
    assert line.startswith(f"- architecture: `{architecture}`: {named}"), line
    assert ("U-Net" in line) is (architecture == "unet")
