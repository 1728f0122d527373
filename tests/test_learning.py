"""Does the loop learn? Noise2Noise beside its Noise2Clean twin, and Bernoulli noise through its masked
loss: a few hundred real steps of `n2n.train` on small crops, judged by the loop's own validation PSNR.

The network is the Zero-Shot Noise2Noise net (`zsn2n`, 22k parameters, output = input − predicted noise),
for which the identity is the easy answer: a loop that hands it the source as its target, or a loss that
counts the pixels Bernoulli noise dropped, leaves it at (or near) the noisy input's PSNR. The U-Net cannot
tell these apart in seconds: with target = source it scored the same +7 dB after 150 steps as with a
real noisy target (its early fits are smoothings). The U-Net's own path is checked by test_train.py (the
loop's wiring) and test_checkpoints.py (the trained models).

Calibration (once, on the shared 2-core CPU, bf16 autocast and fp32 alike, seeds 0, 1 and 2, 200 steps of
4 crops of 32 px, lr 1e-3; validation on chelsea, 128 px, never trained on):
- Gaussian (σ ~ U(0, 50), validated at σ = 25, noisy 20.3 dB): N2N 28.4-28.6 dB, N2C 28.5-28.6 dB,
  apart by at most 0.1 dB. Target = source: 20.3 dB (+0.0), 8.3 dB below its twin.
  Thresholds: both at least noisy + 5 dB, within 1 dB of each other.
- Bernoulli (p ~ U(0, 0.95), validated at p = 0.5, noisy 9.8 dB): 23.8-25.8 dB (+14 to +16);
  with the mask ignored 12.8-13.7 dB (+3.0 to +3.9). Threshold: noisy + 9 dB.
Checked by breaking the loop on purpose (then reverted): target = source fails both tests, the mask
ignored fails the Bernoulli one, an optimiser that never steps (15.9 dB, 11.2 dB) or a loss of the wrong
sign (7.9 dB, 6.8 dB) fails both. Each test takes about 2 to 5 s of CPU.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from skimage.transform import resize

from n2n.finetune import lockstep
from n2n.io import write_image
from n2n.metrics import psnr
from n2n.train import TrainConfig, train, validation_set


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """train/: four real photos at a third of their size; val/: a fifth one (chelsea) at half size."""
    root = tmp_path_factory.mktemp("learning")
    for folder, names, scale in (("train", ("astronaut", "coffee", "rocket", "immunohistochemistry"), 3),
                                 ("val", ("chelsea",), 2)):
        (root / folder).mkdir()
        for name in names:
            image = getattr(skimage.data, name)()
            small = resize(image, (image.shape[0] // scale, image.shape[1] // scale), anti_aliasing=True)
            write_image(root / folder / f"{name}.png", (small * 255).round().astype(np.uint8))
    return root


@pytest.fixture(autouse=True)
def one_thread():
    """The runs below use one CPU thread (threads=1): on tensors this small a second thread gains little, and
    on a busy machine threads waiting for each other made a 5 s test take 70 s. Restored afterwards."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def config(photos: Path, tmp_path: Path, **kw) -> TrainConfig:
    return TrainConfig(**(dict(arch="zsn2n", data=str(photos / "train"), steps=200, batch_size=4, crop=32, lr=1e-3,
                               val=str(photos / "val"), val_images=1, val_crop=128, val_every=200,
                               checkpoint_every=10**6, out=str(tmp_path / "n2n"), threads=1) | kw))


def noisy_psnr(config: TrainConfig) -> float:
    """PSNR of the noisy validation image the loop evaluates on (same seed, same noise level)."""
    (clean, noisy), = validation_set(config)
    return psnr(clean, noisy)


def test_noise2noise_learns_as_well_as_noise2clean(photos, tmp_path):
    n2n = config(photos, tmp_path, noise="gaussian")
    n2c = config(photos, tmp_path, noise="gaussian", clean_targets=True, out=str(tmp_path / "n2c"))
    *_, last = lockstep([n2n, n2c], stop=lambda: False)
    assert [r.step for r in last] == [200, 200]
    noisy = noisy_psnr(n2n)
    n2n_psnr, n2c_psnr = (r.val_psnr for r in last)
    assert n2c_psnr > noisy + 5.0, (noisy, n2c_psnr)
    assert n2n_psnr > noisy + 5.0, (noisy, n2n_psnr)  # noisy targets only ...
    assert abs(n2n_psnr - n2c_psnr) < 1.0, (n2n_psnr, n2c_psnr)  # ... as good as clean ones


def test_bernoulli_learns_from_the_surviving_pixels(photos, tmp_path):
    run = config(photos, tmp_path, noise="bernoulli")
    *_, last = train(run)
    noisy = noisy_psnr(run)
    assert last.val_psnr > noisy + 9.0, (noisy, last.val_psnr)
