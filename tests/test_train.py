"""The one training loop, for real at tiny size: N2N, N2C, pairs, Neighbor2Neighbor, resume, NaN, DDP."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from n2n import hub
from n2n.io import write_image
from n2n.losses import l0, l0_gamma, l1, l2
from n2n.train import TrainConfig, get_lr, train, zero_shot
from n2n.noise import corrupt
from n2n.metrics import psnr
from conftest import photo

ROOT = Path(__file__).resolve().parents[1]


def tiny(photo_folder, tmp_path, **kw):
    return TrainConfig(**(dict(data=str(photo_folder), steps=4, batch_size=2, crop=32, out=str(tmp_path / "run"),
                               checkpoint_every=2) | kw))


def test_lr_schedule_ramps_down_smoothly():
    config = TrainConfig(steps=1000, lr=1e-3, rampdown=0.3)
    assert get_lr(0, config) == get_lr(699, config) == 1e-3
    lrs = [get_lr(s, config) for s in range(700, 1001)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:])) and lrs[-1] == pytest.approx(0, abs=1e-12)


def test_losses_optima():
    """Minimising over a constant prediction: L2 -> mean, L1 -> median, annealed L0 -> mode."""
    target = torch.tensor([0.2, 0.2, 0.2, 0.9, 0.5, 0.6, 0.55]).view(1, 1, 1, 7)
    mask = torch.ones(1, 1, 1, 7)
    grid = torch.linspace(0, 1, 1001)

    def best(fn, **kw):
        losses = torch.stack([fn(torch.full_like(target, float(v)), target, mask, **kw) for v in grid])
        return float(grid[losses.argmin()])

    assert best(l2) == pytest.approx(float(target.mean()), abs=1e-3)
    assert best(l1) == pytest.approx(0.5, abs=1e-3)  # the median
    assert l0_gamma(0.0) == 2.0 and l0_gamma(1.0) == 0.0
    assert best(l0, progress=0.0) == pytest.approx(float(target.mean()), abs=1e-3)  # γ=2 is L2
    assert best(l0, progress=0.95) == pytest.approx(0.2, abs=1e-3)  # γ→0: the mode


def test_masked_loss_ignores_dropped_pixels():
    denoised, target = torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
    mask = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    target[..., 0, 1] = 100.0  # a dropped pixel must not count
    assert l2(denoised, target, mask).item() == pytest.approx(1.0)


@pytest.mark.parametrize("kw", [dict(), dict(clean_targets=True), dict(noise="bernoulli"), dict(noise="impulse"),
                                dict(noise="text"), dict(mode="single")])
def test_training_modes_run_and_checkpoint(photo_folder, tmp_path, kw):
    config = tiny(photo_folder, tmp_path, val=str(photo_folder), val_every=2, val_images=1, val_crop=48, **kw)
    records = list(train(config))
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) for r in records) and "val_psnr" in records[1]
    assert records[-1]["done"] and hub.load_dir(config.out).config["steps"] == 4


def test_real_noisy_pairs(photo_folder, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, seed in ((a, 0), (b, 1)):
        folder.mkdir()
        for k, f in enumerate(sorted(photo_folder.iterdir())):
            from n2n.io import read_image
            noisy = corrupt(read_image(f), "gaussian", 20.0, np.random.default_rng([seed, k]))
            write_image(folder / f.name, np.clip(noisy, 0, 1))
    records = list(train(TrainConfig(data=str(a), data_target=str(b), mode="pairs", steps=3, batch_size=2, crop=32,
                                     out=str(tmp_path / "run"))))
    assert records[-1]["done"]
    (b / sorted(os.listdir(b))[0]).unlink()
    with pytest.raises(ValueError, match="partner"):
        next(train(TrainConfig(data=str(a), data_target=str(b), mode="pairs", steps=3, out=str(tmp_path / "x"))))


def test_resume_continues_exactly(photo_folder, tmp_path):
    full = list(train(tiny(photo_folder, tmp_path / "full")))
    first = tiny(photo_folder, tmp_path / "split")
    first.steps = 4
    stopped = list(train(first, stop=lambda: True))  # Stop pressed at once: saves after step 1
    assert len(stopped) == 1 and stopped[-1]["done"]
    resumed = list(train(tiny(photo_folder, tmp_path / "split", resume=True)))
    assert [r["step"] for r in resumed] == [2, 3, 4]
    a = hub.load_dir(tmp_path / "full" / "run").model.state_dict()
    b = hub.load_dir(tmp_path / "split" / "run").model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert resumed[-1]["loss"] == pytest.approx(full[-1]["loss"], rel=1e-4)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(photo_folder, tmp_path):
    good = tiny(photo_folder, tmp_path, steps=2)
    list(train(good))
    before = hub.load_dir(good.out).model.state_dict()
    exploding = tiny(photo_folder, tmp_path, steps=8, lr=1e30, resume=True)
    with pytest.raises(FloatingPointError, match="last good checkpoint"):
        for _ in train(exploding):
            pass
    after = hub.load_dir(good.out)  # the checkpoint from before the blow-up, intact and usable
    assert after.config["steps"] == 2
    assert all(torch.equal(before[k], v) for k, v in after.model.state_dict().items())


def test_zero_shot_denoises_one_image():
    clean = photo(64)
    noisy = np.clip(corrupt(clean, "gaussian", 25.0, np.random.default_rng(0)), 0, 1)
    out = zero_shot(noisy, steps=300, crop=64)
    assert psnr(clean, out) > psnr(clean, noisy) + 3.0


def test_ddp_two_processes_agree(photo_folder, tmp_path):
    """torchrun with 2 CPU processes (gloo): both ranks end with the same parameters."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
                             str(ROOT / "tests" / "ddp_worker.py"), str(photo_folder), str(tmp_path)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rank0, rank1 = (np.load(tmp_path / f"params{r}.npy") for r in (0, 1))
    np.testing.assert_array_equal(rank0, rank1)
    start = hub.load_dir(tmp_path / "ddp")
    assert start.config["steps"] == 3
    np.testing.assert_array_equal(rank0, torch.cat([p.detach().flatten() for p in start.model.parameters()]).numpy())
