"""The standing campaign (train_space.py campaign): it resumes, and only ever replaces a
checkpoint with one that scores higher on its quick eval and not lower in its full evaluation."""
import dataclasses
import json
import math
import shutil
import sys

import pytest
import torch

import train_space
from n2n import hub
from n2n.models import build_model
from n2n.noise import NOISE_MODELS


def _config(photo_folder, tmp_path):
    args = train_space.build_parser().parse_args([
        "campaign", "--smoke", "--data", str(photo_folder), "--val", str(photo_folder), "--quick-images", "1",
        "--eval-every", "2", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"),
        "--eval", str(photo_folder), "--eval-limit", "1", "--eval-baselines", "median"])
    return train_space.campaign_config(args)


def _stop_after(n):
    calls = []
    return lambda: calls.append(1) or len(calls) >= n


def test_campaign_resumes_and_keeps_the_better_checkpoint(photo_folder, tmp_path):
    cfg = _config(photo_folder, tmp_path)
    files = sorted(photo_folder.iterdir())[:1]
    gaussian, poisson = list(train_space.stages(train_space.SMOKE, []))
    out = tmp_path / "out"
    # committed: a strong gaussian (the bundled one) that a 6-step run cannot beat, and a broken-in poisson
    shutil.copytree(hub.CHECKPOINTS / "gaussian", out / "gaussian", ignore=shutil.ignore_patterns("training_state*"))
    config = hub.read_config(out / "gaussian")
    config.pop("campaign", None)  # made outside this (smoke) campaign
    (out / "gaussian" / "config.json").write_text(json.dumps(config))
    strong = (out / "gaussian" / hub.WEIGHTS_NAME).read_bytes()
    torch.manual_seed(0)
    weak = build_model("unet", in_channels=3, out_channels=3)  # untrained
    hub.save(weak, out / "poisson", {"architecture": "unet", "model_args": {"in_channels": 3, "out_channels": 3},
                                       "noise": "poisson", "steps": 0})
    weak_score = train_space.quick_score(hub.load_dir(out / "poisson").model, "poisson", files)

    # the gaussian run stops after 3 steps, then resumes where it stopped and finishes
    assert not train_space.run_stage(gaussian, cfg, _stop_after(3))
    work = tmp_path / "work" / "gaussian"
    assert json.loads((work / "config.json").read_text())["steps"] == 3
    assert json.loads((work / train_space.MARKER).read_text())["recipe"] == gaussian.recipe
    assert train_space.run_stage(gaussian, cfg, lambda: False)
    assert json.loads((work / "config.json").read_text())["steps"] == gaussian.steps
    assert (out / "gaussian" / hub.WEIGHTS_NAME).read_bytes() == strong  # never replaced by a worse one
    assert train_space.run_stage(gaussian, cfg, lambda: False)  # finished: nothing more to do
    # ...also on a machine without the run folder (the committed config says the run ended), and its weights
    # stay as they were
    assert hub.read_config(out / "gaussian")["campaign"]["finished"] == gaussian.index
    shutil.rmtree(work)
    assert train_space.run_stage(gaussian, cfg, lambda: pytest.fail("trained a finished run again"))
    assert (out / "gaussian" / hub.WEIGHTS_NAME).read_bytes() == strong

    # poisson starts from the committed gaussian, beats the weak checkpoint and replaces it, with a card
    assert train_space.run_stage(poisson, cfg, lambda: False)
    config = hub.read_config(out / "poisson")
    assert config["campaign"]["recipe"] == poisson.recipe and config["campaign"]["step"] == poisson.steps
    assert config["campaign"]["quick_eval_psnr"] > weak_score
    assert config["campaign"]["quick_eval_psnr"] == pytest.approx(
        train_space.quick_score(hub.load_dir(out / "poisson").model, "poisson", files), abs=1e-6)
    assert config["eval"][0]["images"] == 1 and "median" in config["eval"][0]["baselines"]
    assert poisson.recipe in (out / "poisson" / "README.md").read_text()
    # the replacement's config is the run's own (n2n.train.checkpoint_meta), campaign record and history added
    run = json.loads((tmp_path / "work" / "poisson" / "config.json").read_text())
    same = set(run) - {"steps", "val_psnr"}
    assert {"architecture", "noise_range", "loss", "train_config"} <= same
    assert {k: config[k] for k in same} == {k: run[k] for k in same}
    assert set(config) - set(run) == {"campaign", "history", "eval"}
    # a committed, finished run is not trained again, even with its run folder gone
    shutil.rmtree(tmp_path / "work")
    before = (out / "poisson" / hub.WEIGHTS_NAME).read_bytes()
    assert train_space.run_stage(poisson, cfg, lambda: False)
    assert (out / "poisson" / hub.WEIGHTS_NAME).read_bytes() == before


def test_campaign_goes_on_from_a_committed_unfinished_run(photo_folder, tmp_path):
    """A new machine has no run folder: the campaign continues from the committed checkpoint's step."""
    cfg = _config(photo_folder, tmp_path)
    gaussian = next(train_space.stages(train_space.SMOKE, []))
    assert not train_space.run_stage(gaussian, cfg, _stop_after(2))
    # commit the unfinished run by hand, as a replacement would (same recipe, step 2), then lose the run folder
    loaded = hub.load_dir(tmp_path / "work" / "gaussian")
    hub.save(loaded.model, tmp_path / "out" / "gaussian", loaded.config | {
        "campaign": {"recipe": gaussian.recipe, "index": gaussian.index, "step": 2, "total_steps": 2}})
    shutil.rmtree(tmp_path / "work")
    seen = []
    stop = lambda: seen.append(1) and False  # noqa: E731
    assert train_space.run_stage(gaussian, cfg, stop)
    assert len(seen) == gaussian.steps - 2  # only the remaining steps ran


def test_a_later_run_in_the_run_folder_means_the_earlier_one_ended(photo_folder, tmp_path):
    """The run folder holds run 9 of a model (its earlier run ended without beating the committed checkpoint):
    the campaign does not go back to train the earlier run's last steps, wiping run 9."""
    cfg = _config(photo_folder, tmp_path)
    gaussian = next(train_space.stages(train_space.SMOKE, []))
    later = dataclasses.replace(gaussian, steps=4, index=9)
    assert not train_space.run_stage(later, cfg, _stop_after(2))
    marker = tmp_path / "work" / "gaussian" / train_space.MARKER
    assert json.loads(marker.read_text()) == {"recipe": later.recipe, "index": 9}
    assert train_space.run_stage(gaussian, cfg, lambda: pytest.fail("went back to an earlier run"))
    assert json.loads(marker.read_text())["index"] == 9


def test_gpu_plan_then_adopt_keeps_only_what_beats_ours(photo_folder, tmp_path):
    """The GPU plan (`gpu --smoke` here, on the CPU) trains every model from its own weights into a
    copy of checkpoints/; `adopt` then brings in exactly those that score higher here."""
    gpu_out = tmp_path / "gpu" / "checkpoints"
    shutil.copytree(hub.CHECKPOINTS, gpu_out, ignore=shutil.ignore_patterns("training_state*"))
    train_space.main(["gpu", "--smoke", "--data", str(photo_folder), "--val", str(photo_folder),  # no --eval: none
                      "--quick-images", "1", "--eval-every", "2", "--out", str(gpu_out),
                      "--work", str(tmp_path / "gpu" / "work")])
    names = [s.name for s in train_space.GPU]
    assert all(json.loads((tmp_path / "gpu" / "work" / n / "config.json").read_text())["steps"] == 4 for n in names)
    replaced = [n for n in names if hub.read_config(gpu_out / n).get("campaign", {}).get("index", 0) >= 1000]
    assert replaced and all("eval" not in hub.read_config(gpu_out / n) for n in replaced)  # no full eval on the GPU

    here = tmp_path / "here"
    shutil.copytree(hub.CHECKPOINTS, here, ignore=shutil.ignore_patterns("training_state*"))
    torch.manual_seed(0)
    hub.save(build_model("unet", in_channels=3, out_channels=3), here / "impulse",  # an untrained impulse
             hub.read_config(here / "impulse"))
    cfg = train_space.campaign_config(train_space.build_parser().parse_args([
        "adopt", str(gpu_out), "--val", str(photo_folder), "--quick-images", "1", "--out", str(here),
        "--eval", str(photo_folder), "--eval-limit", "1", "--eval-baselines", "median"]))
    files = sorted(photo_folder.iterdir())[:1]
    def score(folder, name):  # a model not bundled yet (camera, before its first campaign run) scores -inf
        if not (folder / name / hub.WEIGHTS_NAME).is_file():
            return -math.inf
        loaded = hub.load_dir(folder / name)
        return train_space.quick_score(loaded.model, loaded.config["noise"], files)

    expected = [n for n in sorted(names) if score(gpu_out, n) > score(here, n) + 1e-3]
    weights = lambda n: (here / n / hub.WEIGHTS_NAME).read_bytes() if (here / n).is_dir() else b""  # noqa: E731
    before = {n: weights(n) for n in names}
    assert "impulse" in expected
    assert train_space.adopt(gpu_out, cfg) == expected
    for n in names:
        changed = weights(n) != before[n]
        assert changed == (n in expected), n
    config = hub.read_config(here / "impulse")
    made = (hub.read_config(gpu_out / "impulse").get("history") or ["trained elsewhere"])[-1]
    assert config["history"][-1] == f"adopted ({made})"
    assert config["eval"][0]["images"] == 1
    for n in expected:  # the record says what the adopted weights score, not what the old ones did
        record = hub.read_config(here / n).get("campaign")
        assert record is None or abs(record["quick_eval_psnr"] - score(here, n)) < 1e-6, n


def test_two_campaign_processes_never_train_the_same_model(photo_folder, tmp_path):
    """A model whose lock another process holds is skipped (the next model is trained); once that process
    is gone, killed or not, the lock is free."""
    import subprocess

    cfg = _config(photo_folder, tmp_path)
    shutil.copytree(hub.CHECKPOINTS / "gaussian", tmp_path / "out" / "gaussian",  # poisson starts from it
                    ignore=shutil.ignore_patterns("training_state*"))
    config = hub.read_config(tmp_path / "out" / "gaussian")
    config.pop("campaign", None)  # so that only the lock keeps this campaign off it
    (tmp_path / "out" / "gaussian" / "config.json").write_text(json.dumps(config))
    lock = tmp_path / "work" / "gaussian.lock"
    lock.parent.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; from filelock import FileLock; "
                              f"held = FileLock({str(lock)!r}); held.acquire(); print('held', flush=True); "
                              "time.sleep(60)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        assert train_space.take_lock(lock) is None
        train_space.campaign(cfg)
        assert not (tmp_path / "work" / "gaussian" / "config.json").exists()  # skipped: the other process has it
        assert (tmp_path / "out" / "poisson" / "config.json").is_file()  # the next model was trained
    finally:
        other.kill()
        other.wait()
    held = train_space.take_lock(lock)  # the killed process's lock went with it
    assert held is not None
    held.release()


def test_each_command_takes_its_own_options_and_an_old_flag_lists_the_commands(capsys):
    parser = train_space.build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--campaign"])
    assert "{train,campaign,gpu,adopt,eval}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["adopt", "DIR", "--steps", "5"])  # a training option: `train`'s only
    with pytest.raises(SystemExit):
        parser.parse_args(["gpu", "--only", "camera"])  # the campaign's
    with pytest.raises(SystemExit, match="--only camera,camra:"):  # a typo would have it skip every run, forever
        train_space.campaign_config(parser.parse_args(["campaign", "--only", "camera,camra"]))
    gpu, campaign = parser.parse_args(["gpu"]), parser.parse_args(["campaign"])
    assert (gpu.eval, gpu.eval_every, gpu.replace_every) == ("", 200, 0)
    assert (campaign.eval, campaign.eval_every, campaign.replace_every) == ("kodak24,cbsd68", 1000, 20)


def test_steps_in_all_count_a_run_once_when_it_goes_on_from_its_committed_checkpoint():
    """A warm restart of impulse from impulse (56,000 steps in all), committed at its step 8,000 (64,000), then
    resumed on a new machine: its step 9,000 has 65,000 in all, not 64,000 + 9,000."""
    stage = train_space.Stage("impulse", "impulse", 10000, 1e-4, init="impulse", index=20)
    fresh = {"recipe": "run 14: earlier", "index": 14, "step": 8000, "total_steps": 56000}
    assert train_space.steps_before(stage, fresh, 0, fresh) == 56000
    mid_run = {"recipe": stage.recipe, "index": 20, "step": 8000, "total_steps": 64000}
    assert train_space.steps_before(stage, mid_run, 8000, mid_run) + 9000 == 65000
    # a run from another model counts that model's steps; one from scratch none; a committed checkpoint made
    # outside the campaign counts its config's steps
    poisson = train_space.Stage("poisson", "poisson", 6000, 3e-4, init="gaussian", index=1)
    assert train_space.steps_before(poisson, {}, 0, {"total_steps": 29000}) == 29000
    assert train_space.steps_before(train_space.Stage("gaussian", "gaussian", 29000, 5e-4), {}, 0, {}) == 0
    assert train_space.steps_before(train_space.Stage("gaussian", "gaussian", 10000, 1e-4, init="gaussian"),
                                    {}, 29000, {}) == 29000


def test_a_replacement_lower_in_the_full_evaluation_is_not_kept(photo_folder, tmp_path):
    """The quick eval can rank a step higher by chance: the campaign's replacement is evaluated in full first, and
    kept only if it is not lower there than the committed checkpoint (on the sets both were evaluated on). Here the
    committed poisson's figure on the eval folder is set above what any 4-step run reaches, so the run that beats
    it on the quick eval is not kept; with that figure lowered, the same run is."""
    cfg = _config(photo_folder, tmp_path)
    _, poisson = list(train_space.stages(train_space.SMOKE, []))
    out = tmp_path / "out"
    shutil.copytree(hub.CHECKPOINTS / "gaussian", out / "gaussian", ignore=shutil.ignore_patterns("training_state*"))
    torch.manual_seed(0)
    weak = build_model("unet", in_channels=3, out_channels=3)  # untrained: the quick eval is easily beaten
    row = {"data": photo_folder.name, "noise": "poisson", "param": NOISE_MODELS["poisson"].default, "images": 1,
           "psnr": 99.0}
    meta = {"architecture": "unet", "model_args": {"in_channels": 3, "out_channels": 3}, "noise": "poisson",
            "steps": 0, "eval": [row]}
    hub.save(weak, out / "poisson", meta)
    before = (out / "poisson" / hub.WEIGHTS_NAME).read_bytes()
    assert train_space.run_stage(poisson, cfg, lambda: False)
    assert (out / "poisson" / hub.WEIGHTS_NAME).read_bytes() == before  # 99 dB in full: not kept
    assert hub.read_config(out / "poisson")["eval"] == [row]
    assert not (tmp_path / "work" / "candidates" / "poisson").exists()

    shutil.rmtree(tmp_path / "work")
    hub.save(weak, out / "poisson", meta | {"eval": [row | {"psnr": 0.0}]})
    assert train_space.run_stage(poisson, cfg, lambda: False)
    config = hub.read_config(out / "poisson")
    assert (out / "poisson" / hub.WEIGHTS_NAME).read_bytes() != before and config["eval"][0]["psnr"] > 0
    assert config["campaign"]["recipe"] == poisson.recipe
    card = (out / "poisson" / "README.md").read_text()
    assert "# n2n `poisson`:" in card and 'load_model("poisson")' in card  # named as bundled, not as evaluated
