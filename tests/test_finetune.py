"""n2n.finetune at tiny size: run configs, lockstep N2N/N2C, zero-shot records, preview strip, zip."""
import shutil
import zipfile

import numpy as np
import pytest

from n2n import finetune as ft, hub
from n2n.noise import corrupt
from n2n.metrics import psnr
from conftest import photo


def run_folder(photo_folder, tmp_path):
    shutil.copytree(photo_folder, tmp_path / "data")
    return tmp_path


def test_run_configs_twin_differs_only_in_targets_and_folder(photo_folder, tmp_path):
    n2n, n2c = ft.run_configs(run_folder(photo_folder, tmp_path), "synthetic", "gaussian", (0.0, 50.0), None, 10,
                              "", twin=True, seed=3, cuda=False)
    assert n2c.clean_targets and not n2n.clean_targets
    assert n2n.val == n2n.data == str(tmp_path / "data") and n2n.val_every == 1
    differ = {k for k in n2n.__dict__ if n2n.__dict__[k] != n2c.__dict__[k]}
    assert differ == {"clean_targets", "out"}
    with pytest.raises(ValueError, match="clean images"):
        ft.run_configs(tmp_path, "single", "gaussian", (0.0, 50.0), None, 10, "", twin=True, seed=0, cuda=False)
    with pytest.raises(ValueError, match="unknown kind"):
        ft.run_configs(tmp_path, "video", "gaussian", (0.0, 50.0), None, 10, "", twin=False, seed=0, cuda=False)


def test_lockstep_stops_both_runs_at_the_same_step_and_packages_them(photo_folder, tmp_path):
    configs = ft.run_configs(run_folder(photo_folder, tmp_path), "synthetic", "gaussian", (0.0, 50.0), None, 50,
                             "", twin=True, seed=0, cuda=False)
    steps = []
    for records in ft.lockstep(configs, stop=lambda: len(steps) >= 3):
        assert len(records) == 2 and records[0].step == records[1].step
        steps.append(records[0].step)
    assert steps == [1, 2, 3, 4] and records[0].done and records[1].done  # the step under way ends the run
    for config in configs:  # both saved at the step they stopped at
        assert hub.read_config(config.out)["steps"] == steps[-1]
    panels = ft.preview_panels(photo(32), records)
    strip = ft.preview_strip(panels)
    assert strip.dtype == np.uint8 and strip.shape == (192, 3 * 192 + 2 * 4, 3)  # 32 px zoomed 6×, two gaps

    archive = ft.package(configs, tmp_path / "run.zip", "mine")
    names = set(zipfile.ZipFile(archive).namelist())
    assert {"mine/config.json", "mine/model.safetensors", "mine/README.md",
            "mine/n2c/config.json", "mine/n2c/model.safetensors"} <= names
    assert not any("training_state" in n for n in names)


def test_zero_shot_records_stream_then_denoise():
    clean = photo(64)
    noisy = corrupt(clean, "gaussian", 25.0, np.random.default_rng(0))
    records = list(ft.zero_shot_records(noisy, steps=200, stop=lambda: False, every_s=0.05))
    assert records[-1].done and records[-1].result.shape == noisy.shape
    assert not any(r.done or r.stopped or r.result is not None for r in records[:-1])
    steps = [r.step for r in records[:-1]]
    assert steps and steps == sorted(steps) and records[-2].losses[-1]["step"] == steps[-1]
    assert psnr(clean, records[-1].result) > psnr(clean, noisy) + 2


def test_zero_shot_records_stop():
    noisy = photo(64)
    records = list(ft.zero_shot_records(noisy, steps=100_000, stop=lambda: True, every_s=0.05))
    assert records[-1].stopped and not records[-1].done and records[-1].result is None
