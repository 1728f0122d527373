"""The one training loop, for real at tiny size: N2N, N2C, pairs, Neighbor2Neighbor, resume, NaN, DDP,
and its entry points (`python -m n2n train`, `train_space.py train --smoke`). Whether it learns: test_learning.py."""
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import n2n.train
from n2n import hub
from n2n.data import apply_subsample, neighbor_subsample
from n2n.io import read_image, write_image
from n2n.losses import LOSSES, l0, l0_gamma, l1, l2
from n2n.train import TrainConfig, get_lr, train, zero_shot
from n2n.noise import corrupt
from n2n.metrics import psnr
from helpers import photo

ROOT = Path(__file__).resolve().parents[1]


def tiny(photo_folder, tmp_path, **kw):
    return TrainConfig(**(dict(data=str(photo_folder), steps=4, batch_size=2, crop=32, out=str(tmp_path / "run"),
                               checkpoint_every=2) | kw))


def parameters(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.fixture(scope="module")
def noisy_pairs(photo_folder, tmp_path_factory) -> tuple[Path, Path]:
    """Two folders of 8-bit noisy shots (Gaussian σ = 20) of the same four scenes, same file names."""
    root = tmp_path_factory.mktemp("pairs")
    for name, seed in (("a", 0), ("b", 1)):
        (root / name).mkdir()
        for k, f in enumerate(sorted(photo_folder.iterdir())):
            noisy = corrupt(read_image(f), "gaussian", 20.0, np.random.default_rng([seed, k]))
            write_image(root / name / f.name, np.clip(noisy, 0, 1))
    return root / "a", root / "b"


@pytest.fixture
def watch_loop(monkeypatch):
    """Records what the real loop hands its network (the noisy source, in training) and its loss
    (name, target, mask, fraction of the run done): spies wrapped around the real functions, which still do the work."""
    seen = {"sources": [], "losses": []}
    real_get_loss, real_build = n2n.train.get_loss, n2n.train.build_model

    def get_loss(name):
        fn = real_get_loss(name)

        def loss(denoised, target, mask, fraction):
            seen["losses"].append({"name": name, "target": target.detach().clone(), "mask": mask.clone(),
                                   "fraction": fraction})
            return fn(denoised, target, mask, fraction)
        return loss

    def build_model(*args, **kwargs):
        model = real_build(*args, **kwargs)
        model.register_forward_pre_hook(
            lambda m, a: seen["sources"].append(a[0].detach().clone()) if m.training else None)
        return model

    monkeypatch.setattr(n2n.train, "get_loss", get_loss)
    monkeypatch.setattr(n2n.train, "build_model", build_model)
    return seen


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
    assert best(l0, fraction=0.0) == pytest.approx(float(target.mean()), abs=1e-3)  # γ=2 is L2
    assert best(l0, fraction=0.95) == pytest.approx(0.2, abs=1e-3)  # γ→0: the mode


@pytest.mark.parametrize("name", list(LOSSES))
def test_every_loss_ignores_dropped_pixels(name):
    denoised, target = torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
    mask = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    target[..., 0, 1] = 100.0  # a dropped pixel must not count
    assert LOSSES[name](denoised, target, mask, 0.0).item() == pytest.approx(1.0)


@pytest.mark.parametrize("kw", [dict(), dict(clean_targets=True), dict(noise="bernoulli"), dict(noise="impulse"),
                                dict(noise="text"), dict(mode="single")])
def test_training_modes_run_and_checkpoint(photo_folder, tmp_path, kw, watch_loop):
    """Each mode runs, validates and saves; and the loop hands its loss the right things: the noise's loss,
    fraction = step/steps (annealed L0), a target that is an independent corruption (or the clean image
    for Noise2Clean), and the target's own Bernoulli mask."""
    config = tiny(photo_folder, tmp_path, val=str(photo_folder), val_every=2, val_images=1, val_crop=48, **kw)
    records = list(train(config))
    assert [r.step for r in records] == [1, 2, 3, 4]
    assert all(np.isfinite(r.loss) for r in records) and records[1].val_psnr is not None
    assert [r.val_psnr is None for r in records] == [True, False, True, False]
    assert [r.done for r in records] == [False, False, False, True] and records[-1].out == config.out
    assert hub.load_dir(config.out).config["steps"] == 4
    if config.mode == "single":  # its loss is Neighbor2Neighbor's, see test_neighbor_subsample_*
        return
    losses, sources = watch_loop["losses"], watch_loop["sources"]
    expected_loss = "l2" if config.clean_targets else {"gaussian": "l2", "bernoulli": "masked_l2", "impulse": "l0",
                                                       "text": "l1"}[config.noise]
    assert [c["name"] for c in losses] == [expected_loss] * 4
    assert [c["fraction"] for c in losses] == [0.0, 0.25, 0.5, 0.75]
    assert len(sources) == 4
    for call, source in zip(losses, sources):
        target, mask = call["target"], call["mask"]
        assert target.shape == source.shape and mask.shape == (2, 1) + source.shape[2:]
        assert not torch.equal(target, source)
        whole_levels = torch.equal(target * 255, (target * 255).round())
        if config.clean_targets:
            assert whole_levels  # the clean 8-bit crop itself
            assert mask.min() == 1
        elif config.noise == "bernoulli":
            dropped = mask[:, 0] == 0
            assert 0 < dropped.float().mean() < 1
            assert torch.all(target.abs().sum(1)[dropped] == 0)  # the mask is the target's ...
            assert not torch.equal(source.abs().sum(1) == 0, dropped)  # ... not the source's
        else:
            assert mask.min() == 1
    if not config.clean_targets and config.noise == "gaussian":
        residual = torch.stack([c["target"] for c in losses]) - torch.stack(sources)
        assert 0.01 < residual.std() < 0.3  # two independent corruptions, σ ~ U(0, 50) each


def test_real_noisy_pairs(noisy_pairs, tmp_path, watch_loop):
    """Source and target are the same crop of the two shots of one scene (not one shot twice, not two places)."""
    a, b = noisy_pairs
    config = TrainConfig(data=str(a), data_target=str(b), mode="pairs", steps=3, batch_size=2, crop=32,
                         out=str(tmp_path / "run"))
    records = list(train(config))
    assert records[-1].done
    for call, source in zip(watch_loop["losses"], watch_loop["sources"]):
        # σ = 20 each: √2·20/255 ≈ 0.11 (less where clipped); content would add to it
        residual = call["target"] - source
        assert 0.07 < residual.std() < 0.13 and abs(residual.mean()) < 0.02
    b_copy = tmp_path / "b_missing"
    b_copy.mkdir()
    for f in sorted(b.iterdir())[1:]:
        (b_copy / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ValueError, match="partner"):
        next(train(TrainConfig(data=str(a), data_target=str(b_copy), mode="pairs", steps=3, out=str(tmp_path / "x"))))


@pytest.mark.parametrize("mode", ["synthetic", "pairs", "single"])
def test_resume_continues_exactly(photo_folder, noisy_pairs, tmp_path, mode):
    """Stopped after step 1 and resumed, a run ends with the weights and loss of an uninterrupted one."""
    kw = dict(mode=mode) | (dict(data=str(noisy_pairs[0]), data_target=str(noisy_pairs[1])) if mode == "pairs" else {})
    full = list(train(tiny(photo_folder, tmp_path / "full", **kw)))
    stopped = list(train(tiny(photo_folder, tmp_path / "split", **kw), stop=lambda: True))  # Stop pressed at once
    assert len(stopped) == 1 and stopped[-1].done
    resumed = list(train(tiny(photo_folder, tmp_path / "split", resume=True, **kw)))
    assert [r.step for r in resumed] == [2, 3, 4]
    a = hub.load_dir(tmp_path / "full" / "run").model.state_dict()
    b = hub.load_dir(tmp_path / "split" / "run").model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert [r.loss for r in resumed] == pytest.approx([r.loss for r in full[1:]], rel=1e-4)


def test_resume_from_a_record_continues_exactly_in_memory(photo_folder, tmp_path):
    """n2n.adapt's hand-over: a run left after its first step (its generator closed, nothing written) goes on
    from that record with the same network and Adam's moments, and ends as an uninterrupted run does."""
    config = tiny(photo_folder, tmp_path / "full", mode="single", checkpoint_every=10**9)
    full = list(train(config))
    split = dataclasses.replace(config, out=str(tmp_path / "split" / "run"))
    run = train(split)
    first = next(run)
    run.close()
    assert first.step == 1 and not first.done and not (tmp_path / "split").exists()
    resumed = list(train(split, resume_from=first))
    assert [r.step for r in resumed] == [2, 3, 4] and resumed[-1].done
    assert resumed[-1].model is first.model and resumed[-1].optimizer is first.optimizer
    assert [r.loss for r in resumed] == pytest.approx([r.loss for r in full[1:]], rel=1e-4)
    a, b = hub.load_dir(config.out).model.state_dict(), hub.load_dir(split.out).model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


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


def test_ddp_two_ranks_equal_one_process_at_the_same_total_batch(photo_folder, tmp_path):
    """torchrun with 2 CPU processes (gloo), 2 examples each: both ranks end with the same parameters,
    rank 0 saves them, and they are those of one process taking the same 4 examples per step."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
                             str(ROOT / "tests" / "ddp_worker.py"), str(photo_folder), str(tmp_path)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rank0, rank1 = (np.load(tmp_path / f"params{r}.npy") for r in (0, 1))
    np.testing.assert_array_equal(rank0, rank1)
    saved = hub.load_dir(tmp_path / "ddp")
    assert saved.config["steps"] == 3
    np.testing.assert_array_equal(rank0, parameters(saved.model).numpy())
    # the same config as ddp_worker.py, in this one process
    *_, last = train(TrainConfig(data=str(photo_folder), steps=3, batch_size=4, crop=32, out=str(tmp_path / "one"),
                                 precision="fp32"))
    # Adam moves a weight by up to lr = 3e-4 a step, so a rank on other examples, gradients summed instead of
    # averaged or a missed all-reduce show up far above 1e-5; measured: 5e-8 (float rounding of the split batch)
    difference = np.abs(rank0 - parameters(last.model).numpy())
    assert difference.max() < 1e-5, difference.max()


def test_init_starts_from_the_checkpoint(tiny_checkpoint, photo_folder, tmp_path):
    """`init` loads the checkpoint's weights: at lr 0 the run ends where the checkpoint is (a fresh net would not)."""
    start = parameters(hub.load_dir(tiny_checkpoint).model)
    *_, last = train(tiny(photo_folder, tmp_path, init=str(tiny_checkpoint), lr=0.0, steps=1))
    assert torch.equal(parameters(last.model), start)
    torch.manual_seed(0)
    assert not torch.equal(parameters(n2n.train.build_model("unet")), start)  # what ignoring `init` would give


def test_camera_noise_models_keep_the_photos_brightness_and_l2_fine_tunes_inherit_it(photo_folder, tmp_path):
    """A model trained on camera noise is saved with CAMERA_LOW_PASS; a fine-tune of it on another noise keeps it
    with an L2 loss (its output keeps zero-mean noise's mean) and drops it with L1 (impulse: the median)."""
    from n2n.infer import CAMERA_LOW_PASS

    def run(name, **kw):
        *_, last = train(tiny(photo_folder, tmp_path, out=str(tmp_path / name), steps=1, **kw))
        return hub.read_config(last.out)["low_pass"], last.model.low_pass

    assert run("gaussian") == (0.0, 0.0)
    assert run("camera", noise="camera") == (CAMERA_LOW_PASS, CAMERA_LOW_PASS)
    assert run("camera-gaussian", noise="gaussian", init=str(tmp_path / "camera")) == (CAMERA_LOW_PASS,) * 2
    assert run("camera-impulse", noise="impulse", init=str(tmp_path / "camera")) == (0.0, 0.0)


def test_neighbor_subsample_picks_two_different_adjacent_pixels_per_cell():
    """Neighbor2Neighbor's sampler: in every 2×2 cell (positions 0 1 / 2 3) one of the 8 ordered pairs of
    side-by-side pixels, all 8 about equally often, never the same pixel or a diagonal; apply_subsample takes them."""
    b, c, h, w = 2, 3, 64, 96
    index1, index2 = neighbor_subsample(torch.rand(b, c, h, w), torch.Generator().manual_seed(0))
    assert index1.shape == index2.shape == (b, 1, h // 2, w // 2)
    pairs = torch.stack([index1.flatten(), index2.flatten()], 1)
    counts = {tuple(p): n for p, n in zip(*[t.tolist() for t in torch.unique(pairs, dim=0, return_counts=True)])}
    assert set(counts) == {(0, 1), (1, 0), (0, 2), (2, 0), (1, 3), (3, 1), (2, 3), (3, 2)}
    assert all(abs(n / len(pairs) - 1 / 8) < 0.02 for n in counts.values()), counts  # 3,072 cells
    again, _ = neighbor_subsample(torch.rand(b, c, h, w), torch.Generator().manual_seed(0))
    assert torch.equal(again, index1)  # the generator decides, nothing else
    address = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w).expand(b, c, h, w)  # each pixel: y·w + x
    cy, cx = torch.meshgrid(torch.arange(h // 2), torch.arange(w // 2), indexing="ij")
    for index in (index1, index2):
        expected = (2 * cy + index // 2) * w + 2 * cx + index % 2
        assert torch.equal(apply_subsample(address, index), expected.float().expand(b, c, h // 2, w // 2))


def test_cli_train_takes_tuple_and_optional_flags(photo_folder, tmp_path):
    """`python -m n2n train` end to end with a range (two numbers), an optional loss and validation level,
    from the bundled gaussian model: each reaches the run (the recorded validation PSNR is the one at
    --val-param 0.2, not at the default level)."""
    out = tmp_path / "cli"
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "n2n", "train", "--data", str(photo_folder), "--noise", "impulse",
                             "--noise-range", "0.1", "0.3", "--loss", "l1", "--val", str(photo_folder),
                             "--val-param", "0.2", "--val-images", "1", "--val-crop", "64", "--val-every", "2",
                             "--steps", "2", "--batch-size", "2", "--crop", "32", "--checkpoint-every", "2",
                             "--init", "gaussian", "--no-resume", "--threads", "1", "--out", str(out)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "step 2/2" in result.stdout and " val " in result.stdout
    saved = hub.load_dir(out)
    assert saved.config["noise"] == "impulse" and saved.config["loss"] == "l1" and saved.config["steps"] == 2
    assert saved.config["noise_range"] == [0.1, 0.3] and saved.config["train_config"]["val_param"] == 0.2
    config = TrainConfig(**saved.config["train_config"])
    validated = n2n.train.validate(saved.model, n2n.train.validation_set(config))
    assert saved.config["val_psnr"] == pytest.approx(validated, abs=0.05)
    config.val_param = None  # the default level, 0.5, scores differently: the flag was used
    assert abs(saved.config["val_psnr"] - n2n.train.validate(saved.model, n2n.train.validation_set(config))) > 1.0


def test_train_space_smoke_trains_every_bundled_model(photo_folder, tmp_path):
    """`train_space.py train --smoke --all`: gaussian, then the others started from it, each evaluated on a folder
    with a baseline, its figures in config.json and its model card; `eval` evaluates one again, on more images."""
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, str(ROOT / "train_space.py"), "train", "--smoke", "--all",
                             "--data", str(photo_folder),
                             "--val", str(photo_folder), "--out", str(tmp_path), "--eval", str(photo_folder),
                             "--eval-limit", "1", "--eval-baselines", "median", "--threads", "1"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("gaussian", "poisson", "text", "bernoulli", "impulse"):
        saved = hub.load_dir(tmp_path / name)
        assert saved.config["noise"] == name and saved.config["clean_targets"] is False
        assert saved.config["steps"] == (4 if name == "gaussian" else 1)
        assert saved.config["train_config"]["init"] == ("" if name == "gaussian" else str(tmp_path / "gaussian"))
        (row,) = saved.config["eval"]
        assert row["data"] == photo_folder.name and row["noise"] == name and row["images"] == 1
        assert set(row["baselines"]) == {"median"} and np.isfinite(row["psnr"])
        card = (tmp_path / name / "README.md").read_text()
        assert f"**{row['psnr']:.2f}**" in card
    result = subprocess.run([sys.executable, str(ROOT / "train_space.py"), "eval", "--noise", "poisson",
                             "--out", str(tmp_path), "--eval", str(photo_folder), "--eval-limit", "2",
                             "--eval-baselines", "median"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = hub.read_config(tmp_path / "poisson")["eval"]
    assert row["images"] == 2 and f"**{row['psnr']:.2f}**" in (tmp_path / "poisson" / "README.md").read_text()


def test_eval_adds_the_ensemble_and_reuses_baselines_only_on_the_same_noisy_images(photo_folder, tmp_path, bundled):
    """`train_space.py eval --ensemble SET`: the ×8 self-ensemble's figures join the row and the card; the stored
    baselines' figures are reused while the noisy images are the same (their PSNR), recomputed when they are not."""
    import train_space
    from n2n.evaluate import evaluate
    from n2n.data import list_images

    out = bundled  # the tiny checkpoint as `gaussian`
    argv = ["eval", "--noise", "gaussian", "--out", str(out), "--eval", str(photo_folder), "--eval-limit", "2",
            "--eval-baselines", "median"]
    train_space.main(argv + ["--ensemble", photo_folder.name])
    (row,) = hub.read_config(out / "gaussian")["eval"]
    files = list_images(photo_folder)[:2]
    eight = evaluate(hub.load_dir(out / "gaussian").model, files, "gaussian", 25.0, ensemble=True)
    assert row["ensemble_psnr"] == pytest.approx(eight["psnr"], abs=1e-9) and row["ensemble_psnr"] != row["psnr"]
    assert f"(×8 self-ensemble: {row['ensemble_psnr']:.2f}" in (out / "gaussian" / "README.md").read_text()
    config = hub.read_config(out / "gaussian")
    stale = dict(row, baselines={"median": {"psnr": 99.0, "ssim": 1.0}})
    hub.save(hub.load_dir(out / "gaussian").model, out / "gaussian", config | {"eval": [stale]})
    train_space.main(argv)
    (kept,) = hub.read_config(out / "gaussian")["eval"]
    assert kept["baselines"]["median"]["psnr"] == 99.0 and "ensemble_psnr" not in kept  # same noisy images: reused
    hub.save(hub.load_dir(out / "gaussian").model, out / "gaussian",
             config | {"eval": [dict(stale, noisy_psnr=stale["noisy_psnr"] + 0.5)]})  # as if the noise had changed
    train_space.main(argv)
    (fresh,) = hub.read_config(out / "gaussian")["eval"]
    assert fresh["baselines"]["median"]["psnr"] == pytest.approx(row["baselines"]["median"]["psnr"], abs=1e-9)
