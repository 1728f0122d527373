"""Train the bundled checkpoints: plain runs, the standing campaign, the GPU plan, adopting, evaluating.

    python train_space.py train --noise gaussian --steps 20000          # one model into checkpoints/gaussian
    python train_space.py train --all --steps 20000 --finetune-steps 5000  # gaussian, then the others from it
    python train_space.py train --noise gaussian --clean-targets        # the Noise2Clean twin, gaussian-n2c
    torchrun --nproc_per_node 8 train_space.py train --all ...          # DistributedDataParallel
    python train_space.py train --smoke --data DIR --out DIR            # seconds long, for tests
    python train_space.py eval --all                                    # evaluate the checkpoints, rewrite cards
    nice python train_space.py campaign --threads 1 [--only camera]     # the standing campaign (below)
    python train_space.py gpu --minutes 7 --batch-size 64 --crop 128 --workers 12 \\
        --out $OUT/checkpoints --work $OUT/work                         # one GPU (after cp -r checkpoints $OUT/)
    python train_space.py adopt DIR/checkpoints                         # back here: keep what beats ours

The campaign trains the bundled models in order of need (CAMPAIGN), for as long as it runs:
it resumes from what is committed, scores the run on a fixed Kodak subset every --eval-every
steps and replaces checkpoints/NAME only when the run scores higher than it; each replacement
is evaluated on Kodak24 and CBSD68 in full and its model card rewritten, ready to commit.
The GPU plan (GPU) does the same for every model in turn, --minutes shared between them, with no
full evaluation unless --eval names sets: `adopt` evaluates what it brings in.

Each run writes NAME/config.json, model.safetensors and a model card README.md; `train` resumes
with --resume, the campaign always. Ctrl-C or SIGTERM ends the current step, saves and stops.
Each subcommand's -h lists its own options.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from n2n import hub
from n2n.cli import run_training
from n2n.data import list_images
from n2n.evaluate import evaluate
from n2n.noise import NOISE_MODELS
from n2n.infer import resolve_precision
from n2n.train import TrainConfig, checkpoint_meta, train

DATA = Path(__file__).resolve().parent.parent / "shared" / "data"
NOISES = [name for name in hub.BUNDLED if not name.endswith("-n2c")]  # the bundled models with noisy targets


def model_name(noise: str, clean_targets: bool) -> str:
    return f"{noise}-n2c" if clean_targets else noise


def evaluate_checkpoint(directory: Path, sets: list[str], limit: int = 0, baseline_names=("nlm", "median"),
                        reuse: list[dict] = (), ensemble_sets=()) -> None:
    """`python -m n2n eval` figures of the checkpoint at its noise's test setting, with the classical
    baselines, stored under "eval" in its config.json (the model card's table reads them); on `ensemble_sets`
    also the ×8 self-ensemble's ("ensemble_psnr", "ensemble_ssim"). `reuse`: earlier eval rows whose baseline
    figures stand when data, noise, setting, count and the noisy images' PSNR match (a changed noise shows there)."""
    loaded = hub.load_dir(directory)
    noise = loaded.config["noise"]
    param = NOISE_MODELS[noise].default
    rows = []
    for name in sets:
        folder = Path(name) if Path(name).is_dir() else DATA / name
        if not folder.is_dir():
            print(f"skip eval on {name}: no such folder")
            continue
        files = list_images(folder)[: limit or None]
        candidates = [r for r in reuse
                      if (r["data"], r["noise"], r["param"], r["images"]) == (folder.name, noise, param, len(files))
                      and set(r.get("baselines", {})) >= set(baseline_names)]
        # with a candidate, the model alone first: its noisy images' PSNR says whether the candidate's stand
        figures = evaluate(loaded.model, files, noise, param, baselines_=() if candidates else baseline_names,
                           label=f"eval {folder.name}")
        same = [r for r in candidates if abs(r["noisy_psnr"] - figures["noisy_psnr"]) < 1e-6]
        if same:
            figures["baselines"] = {b: same[0]["baselines"][b] for b in baseline_names}
        elif candidates:  # the noise changed since: the baselines run again
            figures["baselines"] = evaluate(loaded.model, files, noise, param, baselines_=baseline_names,
                                            limits={"model": 1},  # the model's figures are the first pass's
                                            label=f"eval {folder.name} baselines")["baselines"]
        row = {"data": folder.name, "noise": noise, "param": param, "images": figures["images"],
               "noisy_psnr": figures["noisy_psnr"], "psnr": figures["psnr"], "ssim": figures["ssim"],
               "seconds_per_megapixel": figures["seconds_per_megapixel"], "precision": resolve_precision("auto"),
               "baselines": {b: {"psnr": f["psnr"], "ssim": f["ssim"]} for b, f in figures["baselines"].items()}}
        if folder.name in ensemble_sets or name in ensemble_sets:
            eight = evaluate(loaded.model, files, noise, param, ensemble=True, label=f"eval {folder.name} ×8")
            row |= {"ensemble_psnr": eight["psnr"], "ensemble_ssim": eight["ssim"]}
        print(f"{directory.name} on {folder.name}: {row['psnr']:.2f} dB (noisy {row['noisy_psnr']:.2f}; "
              + ", ".join(f"{b} {f['psnr']:.2f}" for b, f in row["baselines"].items())
              + (f"; ×8 ensemble {row['ensemble_psnr']:.2f}" if "ensemble_psnr" in row else "") + ")", flush=True)
        rows.append(row)
    hub.save(loaded.model, directory, loaded.config | {"eval": rows})


def evaluate_and_card(directory: Path, sets, limit: int, baseline_names, reuse: list[dict] = (),
                      ensemble_sets=()) -> None:
    """Evaluate the checkpoint on `sets` and store the figures (evaluate_checkpoint; no sets: those stored
    stay), then rewrite its model card from its config."""
    if sets:
        evaluate_checkpoint(directory, list(sets), limit, baseline_names, reuse, ensemble_sets)
    hub.write_model_card(directory)


@dataclass(frozen=True)
class Stage:
    """One run of the campaign: train NAME for `steps` steps at `lr`, from scratch or from `init`."""

    name: str
    noise: str
    steps: int
    lr: float
    init: str = ""  # a bundled name: start from its current weights
    clean_targets: bool = False
    index: int = 0  # place in the campaign's sequence of runs

    @property
    def recipe(self) -> str:
        start = f"from {self.init}" if self.init else "from scratch"
        return (f"run {self.index}: {self.noise}{' (clean targets)' if self.clean_targets else ''}, {start}, "
                f"{self.steps} steps at lr {self.lr:g}")


# In order of need: camera (issue 23: real photos; from gaussian's weights), then as in issue 11 gaussian
# (the warm start's recipe), poisson and impulse from it, the clean-target twin at gaussian's recipe, text
# and bernoulli, then camera's clean-target twin (issue 23: the gap at equal budget: from gaussian-n2c, the
# 11,000 steps camera had on camera noise when it was added); then rounds of warm restarts.
CAMPAIGN = [
    Stage("camera", "camera", 9000, 3e-4, init="gaussian"),
    Stage("gaussian", "gaussian", 29000, 5e-4),
    Stage("poisson", "poisson", 6000, 3e-4, init="gaussian"),
    Stage("impulse", "impulse", 6000, 3e-4, init="gaussian"),
    Stage("gaussian-n2c", "gaussian", 29000, 5e-4, clean_targets=True),
    Stage("text", "text", 6000, 3e-4, init="gaussian"),
    Stage("bernoulli", "bernoulli", 6000, 3e-4, init="gaussian"),
    Stage("camera-n2c", "camera", 11000, 3e-4, init="gaussian-n2c", clean_targets=True),
]
ROUND = [  # then, round after round: a warm restart of each model from its own weights, in CAMPAIGN's order
    Stage(s.name, s.noise, 10000, 1e-4, init=s.name, clean_targets=s.clean_targets) for s in CAMPAIGN
]
GPU = [  # one GPU for minutes (issue 11 §4): every model from its own weights, large batches (set by flags)
    Stage(s.name, s.noise, 1500, 2e-4, init=s.name, clean_targets=s.clean_targets, index=1000 + i)
    for i, s in enumerate(CAMPAIGN)
]
SMOKE = [Stage("gaussian", "gaussian", 6, 1e-3), Stage("poisson", "poisson", 4, 1e-3, init="gaussian")]
SMOKE_RUN = dict(batch_size=2, crop=32, val_images=1, val_crop=64, val_every=2, checkpoint_every=2)  # --smoke runs
MARKER = "campaign.json"  # in a run's folder: the Stage it runs


def stages(first: list[Stage], rounds: list[Stage]):
    """The campaign's runs, numbered: `first`, then `rounds` again and again (if any)."""
    index = 0
    for stage in first:
        yield dataclasses.replace(stage, index=index)
        index += 1
    while rounds:
        for stage in rounds:
            yield dataclasses.replace(stage, index=index)
            index += 1


def _record(directory: Path) -> dict:
    """The campaign record of a checkpoint: {"recipe", "index", "step", "total_steps", ...}; {} if none."""
    try:
        return hub.read_config(directory).get("campaign", {})
    except hub.CheckpointError:
        return {}


def quick_score(model, noise: str, files: list[Path]) -> float:
    """Mean PSNR (dB) on `files` at the noise's test setting, fixed seeds: the campaign's yardstick."""
    return evaluate(model, files, noise, NOISE_MODELS[noise].default, label="quick eval")["psnr"]


def steps_before(stage: Stage, committed: dict, committed_steps: int, init_record: dict) -> int:
    """The training steps behind `stage`'s starting point, so that a checkpoint at step s of the run has
    had steps_before + s in all. `committed`: the campaign record of the committed checkpoint (_record),
    `committed_steps` its config's "steps" (for one made outside the campaign), `init_record` the record
    of the checkpoint the run starts from."""
    if committed.get("recipe") == stage.recipe:  # committed mid-run: its total counts this run's first steps
        return committed.get("total_steps", 0) - committed.get("step", 0)
    if stage.init == stage.name:
        return committed.get("total_steps", committed_steps)
    return init_record.get("total_steps", 0)


@dataclass(frozen=True)
class CampaignConfig:
    """The settings of the campaign, the GPU plan and adopt, built once from the command line (campaign_config)."""

    out: Path  # parent folder of the committed checkpoints, NAME/
    work: Path  # parent folder of the runs in progress, NAME/, and of their locks
    quick_files: tuple[Path, ...]  # the quick eval's images
    eval_sets: tuple[str, ...]  # a replacement's full evaluation: folders of DATA, or paths
    eval_limit: int  # the first N images of each set only (0: all)
    eval_baselines: tuple[str, ...]
    eval_every: int = 1000  # quick eval every N steps
    replace_every: float = 20  # replace a checkpoint at most every N minutes (and at the end of a run)
    minutes: float = 0  # stop after this long (0: until a signal)
    only: tuple[str, ...] = ()  # the campaign: only the runs of these models (empty: all)
    smoke: bool = False  # SMOKE's stages, four-step GPU runs
    train: TrainConfig = field(default_factory=TrainConfig)  # the fields every run shares: data, batch, crop...


def run_stage(stage: Stage, cfg: CampaignConfig, stop) -> bool:
    """Train `stage` in work/NAME (resuming its run, or the committed checkpoint of the same run),
    replacing out/NAME whenever the run scores higher on the quick eval. True when finished."""
    bundled, work = cfg.out / stage.name, cfg.work / stage.name
    committed = _record(bundled)
    marker = json.loads((work / MARKER).read_text()) if (work / MARKER).is_file() else {}
    if (max(committed.get("index", -1), marker.get("index", -1)) > stage.index
            or committed.get("finished", -1) >= stage.index
            or (committed.get("index") == stage.index and committed.get("step", 0) >= stage.steps)):
        return True  # a later run of this model started, or this one ended (beaten or not)
    if marker.get("recipe") != stage.recipe or not (work / hub.WEIGHTS_NAME).is_file():
        shutil.rmtree(work, ignore_errors=True)
        if committed.get("recipe") == stage.recipe:  # committed mid-run (another session): go on from there
            shutil.copytree(bundled, work)
        work.mkdir(parents=True, exist_ok=True)
        (work / MARKER).write_text(json.dumps({"recipe": stage.recipe, "index": stage.index}) + "\n")
    elif hub.read_config(work).get("steps", 0) >= stage.steps:
        mark_finished(bundled, stage)
        return True  # finished without beating the committed checkpoint
    init = cfg.out / stage.init if stage.init else None
    if init and stage.init == stage.name and not (init / hub.WEIGHTS_NAME).is_file():
        first = next(s for s in CAMPAIGN if s.name == stage.name)  # not made yet: start where the campaign does
        init = cfg.out / first.init if first.init else None
    committed_steps = hub.read_config(bundled).get("steps", 0) if (bundled / hub.CONFIG_NAME).is_file() else 0
    base_total = steps_before(stage, committed, committed_steps, _record(init) if init else {})
    files = list(cfg.quick_files)
    best = (quick_score(hub.load_dir(bundled).model, stage.noise, files) if (bundled / hub.WEIGHTS_NAME).is_file()
            else -math.inf)
    print(f"== {stage.name}, {stage.recipe}; committed checkpoint: {best:.3f} dB on the quick eval", flush=True)
    config = dataclasses.replace(cfg.train, noise=stage.noise, clean_targets=stage.clean_targets, steps=stage.steps,
                                 lr=stage.lr, init=str(init) if init else "", out=str(work), resume=True)
    waiting, last_replace, rec = None, time.monotonic(), None
    for rec in train(config, stop=stop):
        step = rec.step
        if step % 50 == 0:
            print(f"{stage.name} step {step}/{stage.steps} loss {rec.loss:.5f} lr {rec.lr:.2e} "
                  f"{rec.steps_per_s:.2f} steps/s", flush=True)
        if step % cfg.eval_every and not rec.done:
            continue
        score = quick_score(rec.model, stage.noise, files)
        print(f"{stage.name} step {step}: {score:.3f} dB on the quick eval (committed {best:.3f})", flush=True)
        if score > best + 1e-3:
            waiting = (score, step, {k: v.detach().clone() for k, v in rec.model.state_dict().items()})
        if waiting and (rec.done or time.monotonic() - last_replace > cfg.replace_every * 60):
            score, at, state = waiting
            best, waiting, last_replace = score, None, time.monotonic()
            replace(stage, rec.model, state, config, at, base_total + at, score, cfg)
    finished = rec is not None and rec.step >= stage.steps
    if finished:
        mark_finished(bundled, stage)
    return finished


def mark_finished(bundled: Path, stage: Stage) -> None:
    """Record in the committed checkpoint's config.json (its weights untouched) that `stage` ended, so that
    a machine without the run folder does not train its last steps again."""
    if not (bundled / hub.CONFIG_NAME).is_file():
        return
    config = hub.read_config(bundled)
    record = config.setdefault("campaign", {})
    if record.get("finished", -1) < stage.index:
        record["finished"] = stage.index
        hub.write_config(bundled, config)


def full_eval_drop(old: dict, new: dict) -> float | None:
    """How many dB `new`'s full evaluation (a checkpoint config's "eval") is below `old`'s, averaged over the sets
    both were evaluated on at the same noise, level and number of images; None when they share none."""
    key = lambda row: (row["data"], row["noise"], row["param"], row["images"])  # noqa: E731
    before = {key(row): row["psnr"] for row in old.get("eval", [])}
    drops = [before[key(row)] - row["psnr"] for row in new.get("eval", []) if key(row) in before]
    return sum(drops) / len(drops) if drops else None


def replace(stage: Stage, model, state: dict, config: TrainConfig, step: int, total: int, score: float,
            cfg: CampaignConfig) -> None:
    """Write the weights `state` with the run's config into a candidate folder, evaluate it in full and write its
    card; it becomes out/NAME unless its full evaluation is lower than NAME's (`full_eval_drop`: the quick eval's
    6 images rank warm restarts this close by chance: a bernoulli step that gained 0.02 dB there lost 0.04 on
    CBSD68)."""
    import copy

    bundled, candidate = cfg.out / stage.name, cfg.work / "candidates" / stage.name  # the card names its folder
    snapshot = copy.deepcopy(model)
    snapshot.load_state_dict(state)
    old = hub.read_config(bundled) if (bundled / hub.CONFIG_NAME).is_file() else {}
    line = f"campaign {stage.recipe}: step {step} ({total} in all), quick eval {score:.2f} dB"
    history = [h for h in old.get("history", []) if not h.startswith(f"campaign {stage.recipe}:")] + [line]
    meta = checkpoint_meta(config, snapshot, step, {
        "campaign": {"recipe": stage.recipe, "index": stage.index, "step": step, "total_steps": total,
                     "quick_eval_psnr": score},
        "history": history})
    shutil.rmtree(candidate, ignore_errors=True)
    hub.save(snapshot, candidate, meta)
    evaluate_and_card(candidate, cfg.eval_sets, cfg.eval_limit, cfg.eval_baselines, reuse=old.get("eval", []))
    drop = full_eval_drop(old, hub.read_config(candidate))
    if drop is not None and drop > 0:
        shutil.rmtree(candidate)
        print(f"kept {bundled}: {line}, but {drop:.3f} dB lower in the full evaluation", flush=True)
        return
    shutil.copytree(candidate, bundled, dirs_exist_ok=True)
    shutil.rmtree(candidate)
    print(f"replaced {bundled}: {line}", flush=True)


def stopper(minutes: float = 0):
    """A `stop` for the training loop: true once SIGINT or SIGTERM came, or `minutes` passed (0: never)."""
    deadline = time.monotonic() + (minutes * 60 if minutes else math.inf)
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.append(True))
    return lambda: bool(stopping) or time.monotonic() > deadline


def campaign(cfg: CampaignConfig) -> None:
    """Run the campaign's stages in order, then rounds of ROUND, until `minutes` pass or a signal; a model
    that another campaign process is training is skipped."""
    stop = stopper(cfg.minutes)
    print(f"campaign in {resolve_precision('auto')} on {os.cpu_count()} CPUs; quick eval: {len(cfg.quick_files)} "
          f"images of {cfg.quick_files[0].parent}", flush=True)
    for stage in stages(SMOKE, []) if cfg.smoke else stages(CAMPAIGN, ROUND):
        if cfg.only and stage.name not in cfg.only:
            continue
        held = take_lock(cfg.work / f"{stage.name}.lock")
        if held is None:
            print(f"== {stage.name}: another campaign process is training it; next model", flush=True)
            continue
        try:
            if stop() or not run_stage(stage, cfg, stop):
                break  # stopped in the middle: the next start picks up here
        finally:
            held.release()


def gpu_plan(cfg: CampaignConfig) -> None:
    """The GPU plan: each model of GPU gets an equal share of `minutes` (0: each runs to its end), then the next."""
    stop = stopper(cfg.minutes)
    share = cfg.minutes * 60 / len(GPU) if cfg.minutes else math.inf
    each = f"{share / 60:.1f} minutes a model" if cfg.minutes else "each model to the end of its run"
    print(f"GPU plan in {resolve_precision('auto')}, {each}; quick eval: "
          f"{len(cfg.quick_files)} images of {cfg.quick_files[0].parent}", flush=True)
    for stage in GPU:
        stage = dataclasses.replace(stage, steps=4) if cfg.smoke else stage
        end = time.monotonic() + share
        run_stage(stage, cfg, lambda: stop() or time.monotonic() > end)


def take_lock(lock: Path) -> FileLock | None:
    """Claim `lock` for this process: an OS file lock (filelock), let go when the process ends however it
    ends, so no stale lock outlives a killed run. None if another process holds it."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    held = FileLock(lock, timeout=0, is_singleton=False)
    try:
        held.acquire()
    except Timeout:
        return None
    return held


def adopt(source: Path, cfg: CampaignConfig) -> list[str]:
    """Bring in checkpoints trained elsewhere (a GPU run's folder): each replaces out/NAME only if
    it scores higher here on the quick eval, keeping NAME's place in the campaign; then evaluated in
    full and its card rewritten. Returns the names adopted."""
    files = list(cfg.quick_files)
    adopted = []
    for directory in sorted(p for p in Path(source).iterdir() if (p / hub.WEIGHTS_NAME).is_file()):
        bundled = cfg.out / directory.name
        new = hub.load_dir(directory)
        score = quick_score(new.model, new.config["noise"], files)
        old = hub.read_config(bundled) if (bundled / hub.CONFIG_NAME).is_file() else {}
        best = quick_score(hub.load_dir(bundled).model, old["noise"], files) if old else -math.inf
        print(f"{directory.name}: {score:.3f} dB on the quick eval, committed {best:.3f}", flush=True)
        if score <= best + 1e-3:
            continue
        made = (new.config.get("history") or ["trained elsewhere"])[-1]
        config = {k: v for k, v in old.items() if k != "eval"} if old else new.config  # old weights' figures go
        if "campaign" in config:  # NAME keeps its place in the campaign, with the adopted weights' quick eval
            config["campaign"] = config["campaign"] | {"quick_eval_psnr": score}
        hub.save(new.model, bundled, config | {"history": old.get("history", []) + [f"adopted ({made})"]})
        evaluate_and_card(bundled, cfg.eval_sets, cfg.eval_limit, cfg.eval_baselines, reuse=old.get("eval", []))
        adopted.append(directory.name)
    return adopted


def _out() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--out", default="checkpoints", help="parent folder of the checkpoint folders")
    return parent


def _training() -> argparse.ArgumentParser:
    """The options of the commands that train."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--data", default=str(DATA / "train" / "bsd400"), help="folder of clean training images")
    parent.add_argument("--batch-size", type=int, default=8)
    parent.add_argument("--crop", type=int, default=96)
    parent.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parent.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    parent.add_argument("--smoke", action="store_true", help="a seconds-long run on tiny crops (tests)")
    return parent


def _evaluation(sets: str = "kodak24,cbsd68") -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--eval", default=sets,
                        help="evaluate on these folders of ../shared/data (or paths) at the noise's test setting "
                             "and put the figures in config.json and the model card; '' for none")
    parent.add_argument("--eval-baselines", default="nlm,median",
                        help="classical baselines to evaluate alongside (bm3d is slow)")
    parent.add_argument("--eval-limit", type=int, default=0, help="evaluate on the first N images of each set only")
    return parent


def _models() -> argparse.ArgumentParser:
    """Which checkpoints `train` and `eval` make or read, and where they go."""
    parent = argparse.ArgumentParser(add_help=False)
    which = parent.add_mutually_exclusive_group()
    which.add_argument("--noise", choices=list(NOISE_MODELS), default="gaussian")
    which.add_argument("--all", action="store_true", help="every bundled model: " + ", ".join(NOISES))
    parent.add_argument("--clean-targets", action="store_true", help="the clean-target twins, NAME-n2c")
    parent.add_argument("--push-to-hub", metavar="REPO", default="",
                        help="upload each checkpoint to REPO/NAME (token: HF_TOKEN)")
    return parent


def _quick_eval() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--val", default=str(DATA / "kodak24"), help="folder of the quick eval's images")
    parent.add_argument("--quick-images", type=int, default=6, help="quick eval on the first N --val images")
    return parent


def _runs(eval_every: int, replace_every: float) -> argparse.ArgumentParser:
    """The options of the campaign and the GPU plan."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--work", default="runs/campaign", help="folder of the runs in progress")
    parent.add_argument("--minutes", type=float, default=0, help="stop after this long (0: until a signal)")
    parent.add_argument("--eval-every", type=int, default=eval_every, help="quick eval every N steps")
    parent.add_argument("--replace-every", type=float, default=replace_every,
                        help="replace a checkpoint at most every N minutes")
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    train_ = sub.add_parser("train", parents=[_models(), _training(), _out(), _evaluation()],
                            help="train one model, or every bundled one (--all); evaluate each at its end")
    train_.add_argument("--val", default=str(DATA / "kodak24"), help="folder of clean validation images")
    train_.add_argument("--steps", type=int, default=20000)
    train_.add_argument("--finetune-steps", type=int, default=0,
                        help="--all: steps for the models started from gaussian (default steps/4)")
    train_.add_argument("--lr", type=float, default=3e-4)
    train_.add_argument("--init", default="", help="start from this checkpoint")
    train_.add_argument("--resume", action="store_true")
    train_.add_argument("--val-every", type=int, default=1000)
    campaign_ = sub.add_parser("campaign", help="the standing training campaign (CAMPAIGN, then rounds of ROUND)",
                               parents=[_training(), _out(), _runs(1000, 20), _quick_eval(), _evaluation()])
    campaign_.add_argument("--only", default="", help="only the runs of these models (a,b), e.g. in a second "
                           "process beside the main one (never both on the same model)")
    sub.add_parser("gpu", help="the GPU plan (GPU): every model from its own weights, --minutes shared by them",
                   parents=[_training(), _out(), _runs(200, 0), _quick_eval(), _evaluation("")])
    adopt_ = sub.add_parser("adopt", help="bring in the checkpoints in DIR that beat the committed ones",
                            parents=[_out(), _quick_eval(), _evaluation()])
    adopt_.add_argument("source", metavar="DIR", help="a folder of checkpoint folders (the GPU plan's --out)")
    eval_ = sub.add_parser("eval", help="evaluate the existing checkpoints and rewrite their cards",
                           parents=[_models(), _out(), _evaluation()])
    eval_.add_argument("--ensemble", default="", help="also the ×8 self-ensemble's figures on these of --eval's "
                       "sets (8× the time), e.g. kodak24")
    return parser


def names(text: str) -> tuple[str, ...]:
    """'a,b' → ('a', 'b'); '' → ()."""
    return tuple(s for s in text.split(",") if s)


def campaign_config(args) -> CampaignConfig:
    """The CampaignConfig of parsed `campaign`, `gpu` or `adopt` arguments."""
    files = tuple(list_images(args.val)[: args.quick_images]) if Path(args.val).is_dir() else ()
    if not files:
        raise SystemExit(f"--val {args.val}: no images for the quick eval")
    common = dict(out=Path(args.out), quick_files=files, eval_sets=names(args.eval), eval_limit=args.eval_limit,
                  eval_baselines=names(args.eval_baselines))
    if args.command == "adopt":  # trains nothing
        return CampaignConfig(work=Path("runs/campaign"), **common)
    only = names(args.only) if args.command == "campaign" else ()
    if set(only) - {s.name for s in ROUND}:  # else the campaign would go round and round, training nothing
        raise SystemExit(f"--only {args.only}: the campaign's models are {', '.join(s.name for s in ROUND)}")
    # no validation (val ""): the quick eval scores the runs; val_every as the campaign's runs have recorded it
    train_ = TrainConfig(data=args.data, batch_size=args.batch_size, crop=args.crop, workers=args.workers,
                         threads=args.threads, val_every=1000, checkpoint_every=250)
    return CampaignConfig(work=Path(args.work), **common, eval_every=args.eval_every,
                          replace_every=args.replace_every, minutes=args.minutes,
                          only=only, smoke=args.smoke,
                          train=dataclasses.replace(train_, **SMOKE_RUN) if args.smoke else train_)


def push(directory: Path, repo: str) -> None:
    """Upload the checkpoint to REPO/NAME, if a repo is named."""
    if repo:
        print(f"pushed {directory} to {hub.push(directory, repo, path_in_repo=directory.name)}")


def train_models(args) -> None:
    """`train`: one model, or gaussian and then the others from it (--all); each evaluated when its run ends."""
    steps = min(args.steps, 4) if args.smoke else args.steps
    base = dict(data=args.data, val=args.val if Path(args.val).is_dir() else "", lr=args.lr,
                batch_size=args.batch_size, crop=args.crop, resume=args.resume, workers=args.workers,
                threads=args.threads, val_every=args.val_every, checkpoint_every=min(250, args.val_every),
                clean_targets=args.clean_targets) | (SMOKE_RUN if args.smoke else {})
    plan = [(args.noise, args.init, steps)]
    if args.all:
        finetune = args.finetune_steps or max(1, steps // 4)
        first = Path(args.out) / model_name("gaussian", args.clean_targets)
        plan = [("gaussian", args.init, steps)] + [(n, str(first), finetune) for n in NOISES if n != "gaussian"]
    stop = stopper()  # SIGINT/SIGTERM: finish the step, save, stop
    for noise, init, steps in plan:
        out = Path(args.out) / model_name(noise, args.clean_targets)
        print(f"== {out.name}: {steps} steps{' from ' + init if init else ''}", flush=True)
        last = run_training(TrainConfig(noise=noise, init=init, steps=steps, out=str(out), **base), stop=stop)
        done = last is not None and last.done
        if int(os.environ.get("RANK", "0")) == 0:
            sets = names(args.eval) if done and not stop() else ()
            evaluate_and_card(out, sets, args.eval_limit, names(args.eval_baselines))
            push(out, args.push_to_hub)
        if stop() or not done:
            break


def evaluate_models(args) -> None:
    """`eval`: evaluate the existing checkpoints (one, or every bundled model; with the ×8 self-ensemble on
    --ensemble's sets), rewrite their cards."""
    for noise in NOISES if args.all else [args.noise]:
        out = Path(args.out) / model_name(noise, args.clean_targets)
        stored = hub.read_config(out).get("eval", [])  # their baselines' figures stand while the noisy images do
        evaluate_and_card(out, names(args.eval), args.eval_limit, names(args.eval_baselines), reuse=stored,
                          ensemble_sets=names(args.ensemble))
        push(out, args.push_to_hub)


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        train_models(args)
    elif args.command == "eval":
        evaluate_models(args)
    elif args.command == "campaign":
        campaign(campaign_config(args))
    elif args.command == "gpu":
        gpu_plan(campaign_config(args))
    else:
        print(f"adopted: {', '.join(adopt(Path(args.source), campaign_config(args))) or 'none'}")


if __name__ == "__main__":
    main()
