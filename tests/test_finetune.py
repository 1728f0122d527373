"""n2n.finetune at tiny size: run configs, a run prepared from decoded images, lockstep N2N/N2C, zero-shot
records, preview strip, zip."""
import dataclasses
import zipfile
from pathlib import Path

import numpy as np
import pytest

import n2n.train
from n2n import finetune as ft, hub
from n2n.io import read_image
from n2n.noise import corrupt
from n2n.metrics import psnr
from n2n.train import train
from helpers import photo


def decoded(folder):
    """The images of `folder` as the app decodes uploads: by n2n.io, sorted by file name, at their own depth."""
    return [read_image(f, dtype=None) for f in sorted(folder.glob("*.png"))]


def test_run_configs_twin_differs_only_in_targets_and_folder(tmp_path):
    n2n, n2c = ft.run_configs(tmp_path, "synthetic", "gaussian", (0.0, 50.0), None, 10, "", twin=True, seed=3,
                              cuda=False)
    assert n2c.clean_targets and not n2n.clean_targets
    assert n2n.val == n2n.data == ft.UPLOADS and n2n.val_every == 1 and n2n.out == str(tmp_path / "n2n")
    differ = {k for k in n2n.__dict__ if n2n.__dict__[k] != n2c.__dict__[k]}
    assert differ == {"clean_targets", "out"}
    with pytest.raises(ValueError, match="clean images"):
        ft.run_configs(tmp_path, "single", "gaussian", (0.0, 50.0), None, 10, "", twin=True, seed=0, cuda=False)
    with pytest.raises(ValueError, match="unknown data mode"):
        ft.run_configs(tmp_path, "video", "gaussian", (0.0, 50.0), None, 10, "", twin=False, seed=0, cuda=False)


def test_a_prepared_run_is_the_run_on_a_folder_of_the_same_images(photo_folder, tmp_path, monkeypatch):
    """The uploads decoded once give the validation set, and the steps, that reading them from a folder gives;
    the validation set is built once for both runs, and nothing is read from disk while they train."""
    configs = ft.run_configs(tmp_path, "synthetic", "gaussian", (0.0, 50.0), None, 2, "", twin=True, seed=0,
                             cuda=False)
    built = []
    monkeypatch.setattr(ft, "validation_pairs", lambda *a: built.append(1) or n2n.train.validation_pairs(*a))
    prepared = ft.prepare(configs, decoded(photo_folder))
    on_disk = dataclasses.replace(configs[0], data=str(photo_folder), val=str(photo_folder),
                                  out=str(tmp_path / "disk"), optimiser_state=True)
    expected = n2n.train.validation_set(on_disk)
    assert len(prepared.data.val_pairs) == len(expected) == 4 and built == [1]
    for (clean, noisy), (clean_disk, noisy_disk) in zip(prepared.data.val_pairs, expected):
        assert np.array_equal(clean, clean_disk) and np.array_equal(noisy, noisy_disk)
    assert prepared.noisy_val_psnr == pytest.approx(np.mean([psnr(c, n) for c, n in expected]))
    assert prepared.preview_noisy.shape == (72, 72, 3)  # the first image's centre, at most 128 px
    from_folder = list(train(on_disk))

    def no_reading(*_, **__):
        raise AssertionError("read from disk during a prepared run")

    monkeypatch.setattr(n2n.train, "read_image", no_reading)
    *_, last = ft.lockstep(configs, stop=lambda: False, data=prepared.data)
    assert [r.step for r in last] == [2, 2] and last[0].loss == pytest.approx(from_folder[-1].loss, rel=1e-5)
    assert last[0].val_psnr == pytest.approx(from_folder[-1].val_psnr, abs=1e-4) and built == [1]
    # a visitor's run is never resumed: its folder holds the weights, not the optimiser's 8 MB
    assert (Path(last[0].out) / "model.safetensors").is_file()
    assert not (Path(last[0].out) / n2n.train.STATE_NAME).exists()
    assert (tmp_path / "disk" / n2n.train.STATE_NAME).is_file()  # as a run from the CLI does, to resume


def test_prepare_refuses_pairs_of_unequal_counts(photo_folder, tmp_path):
    configs = ft.run_configs(tmp_path, "pairs", "gaussian", (0.0, 50.0), None, 2, "", twin=False, seed=0, cuda=False)
    images = decoded(photo_folder)
    with pytest.raises(ValueError, match="as many second shots as first shots: got 4 and 3"):
        ft.prepare(configs, images, images[:3])
    assert ft.prepare(configs, images, images[::-1]).noisy_val_psnr is None  # noisy shots: no validation


def test_lockstep_stops_both_runs_at_the_same_step_and_packages_them(photo_folder, tmp_path):
    configs = ft.run_configs(tmp_path, "synthetic", "gaussian", (0.0, 50.0), None, 50, "", twin=True, seed=0,
                             cuda=False)
    prepared = ft.prepare(configs, decoded(photo_folder))
    steps = []
    for records in ft.lockstep(configs, stop=lambda: len(steps) >= 3, data=prepared.data):
        assert len(records) == 2 and records[0].step == records[1].step
        steps.append(records[0].step)
    assert steps == [1, 2, 3, 4] and records[0].done and records[1].done  # the step under way ends the run
    for config in configs:  # both saved at the step they stopped at
        assert hub.read_config(config.out)["steps"] == steps[-1]
    strip = ft.preview(photo(32), records)
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
