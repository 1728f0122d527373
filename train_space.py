"""Train the bundled checkpoints: a CPU smoke run, one GPU, or many with torchrun.

    python train_space.py --noise gaussian --steps 20000            # one model into checkpoints/gaussian
    python train_space.py --all --steps 20000 --finetune-steps 5000 # gaussian, then the others from it
    python train_space.py --noise gaussian --clean-targets          # the Noise2Clean twin, gaussian-n2c
    torchrun --nproc_per_node 8 train_space.py --all ...            # DistributedDataParallel
    python train_space.py --smoke --data DIR --out DIR              # seconds long, for tests
    nice python train_space.py --campaign                           # the standing campaign (below)
    python train_space.py --campaign --gpu --minutes 7 --batch-size 64 --crop 128 --workers 12 \
        --eval-every 200 --replace-every 0 --eval "" --out $OUT/checkpoints --work $OUT/work
                                                                    # one GPU (after cp -r checkpoints $OUT/)
    python train_space.py --adopt DIR/checkpoints                   # back here: keep what beats ours

The campaign trains the bundled models in order of need (CAMPAIGN), for as long as it runs:
it resumes from what is committed, scores the run on a fixed Kodak subset every --eval-every
steps and replaces checkpoints/NAME only when the run scores higher than it; each replacement
is evaluated on Kodak24 and CBSD68 in full and its model card rewritten, ready to commit.

Each run writes NAME/config.json, model.safetensors and a model card README.md, and
resumes with --resume. Ctrl-C or SIGTERM ends the current step, saves and stops.
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
from dataclasses import dataclass
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
BUNDLED = ["gaussian", "poisson", "text", "bernoulli", "impulse", "camera"]


def model_name(noise: str, clean_targets: bool) -> str:
    return f"{noise}-n2c" if clean_targets else noise


def evaluate_checkpoint(directory: Path, sets: list[str], limit: int = 0, baseline_names=("nlm", "median"),
                        reuse: list[dict] = ()) -> None:
    """`python -m n2n eval` figures of the checkpoint at its noise's test setting, with the classical
    baselines, stored under "eval" in its config.json (the model card's table reads them).
    `reuse`: earlier eval rows whose baseline figures stand when data, noise, setting and count match."""
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
        same = [r for r in reuse
                if (r["data"], r["noise"], r["param"], r["images"]) == (folder.name, noise, param, len(files))
                and set(r.get("baselines", {})) >= set(baseline_names)]
        figures = evaluate(loaded.model, files, noise, param, baselines_=() if same else baseline_names,
                           label=f"eval {folder.name}")
        if same:
            figures["baselines"] = {b: same[0]["baselines"][b] for b in baseline_names}
        row = {"data": folder.name, "noise": noise, "param": param, "images": figures["images"],
               "noisy_psnr": figures["noisy_psnr"], "psnr": figures["psnr"], "ssim": figures["ssim"],
               "seconds_per_megapixel": figures["seconds_per_megapixel"], "precision": resolve_precision("auto"),
               "baselines": {b: {"psnr": f["psnr"], "ssim": f["ssim"]} for b, f in figures["baselines"].items()}}
        print(f"{directory.name} on {folder.name}: {row['psnr']:.2f} dB (noisy {row['noisy_psnr']:.2f}; "
              + ", ".join(f"{b} {f['psnr']:.2f}" for b, f in row["baselines"].items()) + ")", flush=True)
        rows.append(row)
    hub.save(loaded.model, directory, loaded.config | {"eval": rows})


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
# and bernoulli; then rounds of warm restarts.
CAMPAIGN = [
    Stage("camera", "camera", 9000, 3e-4, init="gaussian"),
    Stage("gaussian", "gaussian", 29000, 5e-4),
    Stage("poisson", "poisson", 6000, 3e-4, init="gaussian"),
    Stage("impulse", "impulse", 6000, 3e-4, init="gaussian"),
    Stage("gaussian-n2c", "gaussian", 29000, 5e-4, clean_targets=True),
    Stage("text", "text", 6000, 3e-4, init="gaussian"),
    Stage("bernoulli", "bernoulli", 6000, 3e-4, init="gaussian"),
]
ROUND = [  # then, round after round: a warm restart of each model from its own weights
    Stage(n, n.removesuffix("-n2c"), 10000, 1e-4, init=n, clean_targets=n.endswith("-n2c"))
    for n in ("camera", "gaussian", "poisson", "impulse", "gaussian-n2c", "text", "bernoulli")
]
GPU = [  # one GPU for minutes (issue 11 §4): every model from its own weights, large batches (set by flags)
    Stage(n, n.removesuffix("-n2c"), 1500, 2e-4, init=n, clean_targets=n.endswith("-n2c"), index=1000 + i)
    for i, n in enumerate(("camera", "gaussian", "gaussian-n2c", "poisson", "impulse", "text", "bernoulli"))
]
SMOKE = [Stage("gaussian", "gaussian", 6, 1e-3), Stage("poisson", "poisson", 4, 1e-3, init="gaussian")]
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


def run_stage(stage: Stage, args, base: dict, files: list[Path], stop) -> bool:
    """Train `stage` in --work/NAME (resuming its run, or the committed checkpoint of the same run),
    replacing --out/NAME whenever the run scores higher on the quick eval. True when finished."""
    bundled, work = Path(args.out) / stage.name, Path(args.work) / stage.name
    committed = _record(bundled)
    if committed.get("index", -1) > stage.index or (committed.get("index") == stage.index
                                                     and committed.get("step", 0) >= stage.steps):
        return True
    marker = json.loads((work / MARKER).read_text()) if (work / MARKER).is_file() else {}
    if marker.get("recipe") != stage.recipe or not (work / hub.WEIGHTS_NAME).is_file():
        shutil.rmtree(work, ignore_errors=True)
        if committed.get("recipe") == stage.recipe:  # committed mid-run (another session): go on from there
            shutil.copytree(bundled, work)
        work.mkdir(parents=True, exist_ok=True)
        (work / MARKER).write_text(json.dumps({"recipe": stage.recipe}) + "\n")
    elif hub.read_config(work).get("steps", 0) >= stage.steps:
        return True  # finished without beating the committed checkpoint
    init = Path(args.out) / stage.init if stage.init else None
    if init and stage.init == stage.name and not (init / hub.WEIGHTS_NAME).is_file():
        first = next(s for s in CAMPAIGN if s.name == stage.name)  # not made yet: start where the campaign does
        init = Path(args.out) / first.init if first.init else None
    committed_steps = hub.read_config(bundled).get("steps", 0) if (bundled / hub.CONFIG_NAME).is_file() else 0
    base_total = steps_before(stage, committed, committed_steps, _record(init) if init else {})
    best = (quick_score(hub.load_dir(bundled).model, stage.noise, files) if (bundled / hub.WEIGHTS_NAME).is_file()
            else -math.inf)
    print(f"== {stage.name}, {stage.recipe}; committed checkpoint: {best:.3f} dB on the quick eval", flush=True)
    config = TrainConfig(noise=stage.noise, clean_targets=stage.clean_targets, steps=stage.steps, lr=stage.lr,
                         init=str(init) if init else "", out=str(work), resume=True,
                         **{k: v for k, v in base.items() if k not in ("val", "clean_targets", "resume", "lr")})
    waiting, last_replace, rec = None, time.monotonic(), None
    for rec in train(config, stop=stop):
        step = rec.step
        if step % 50 == 0:
            print(f"{stage.name} step {step}/{stage.steps} loss {rec.loss:.5f} lr {rec.lr:.2e} "
                  f"{rec.steps_per_s:.2f} steps/s", flush=True)
        if step % args.eval_every and not rec.done:
            continue
        score = quick_score(rec.model, stage.noise, files)
        print(f"{stage.name} step {step}: {score:.3f} dB on the quick eval (committed {best:.3f})", flush=True)
        if score > best + 1e-3:
            waiting = (score, step, {k: v.detach().clone() for k, v in rec.model.state_dict().items()})
        if waiting and (rec.done or time.monotonic() - last_replace > args.replace_every * 60):
            score, at, state = waiting
            best, waiting, last_replace = score, None, time.monotonic()
            replace(stage, rec.model, state, config, at, base_total + at, score, bundled, args)
    return rec is not None and rec.step >= stage.steps


def replace(stage: Stage, model, state: dict, config: TrainConfig, step: int, total: int, score: float,
            bundled: Path, args) -> None:
    """Write the weights `state` into --out/NAME with the run's config, evaluate in full, rewrite the card."""
    import copy

    snapshot = copy.deepcopy(model)
    snapshot.load_state_dict(state)
    old = hub.read_config(bundled) if (bundled / hub.CONFIG_NAME).is_file() else {}
    line = f"campaign {stage.recipe}: step {step} ({total} in all), quick eval {score:.2f} dB"
    history = [h for h in old.get("history", []) if not h.startswith(f"campaign {stage.recipe}:")] + [line]
    meta = checkpoint_meta(config, snapshot, step, {
        "campaign": {"recipe": stage.recipe, "index": stage.index, "step": step, "total_steps": total,
                     "quick_eval_psnr": score},
        "history": history})
    hub.save(snapshot, bundled, meta)
    print(f"replaced {bundled}: {line}", flush=True)
    evaluate_checkpoint(bundled, [s for s in args.eval.split(",") if s], args.eval_limit,
                        [b for b in args.eval_baselines.split(",") if b], reuse=old.get("eval", []))
    hub.write_model_card(bundled)


def campaign(args, base: dict) -> None:
    """Run the campaign's stages in order, then rounds of ROUND, until --minutes pass or a signal."""
    deadline = time.monotonic() + (args.minutes * 60 if args.minutes else math.inf)
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.append(True))
    stop = lambda: bool(stopping) or time.monotonic() > deadline  # noqa: E731
    files = list_images(args.val)[: args.quick_images] if Path(args.val).is_dir() else []
    if not files:
        raise SystemExit(f"--val {args.val}: no images for the quick eval")
    print(f"campaign in {resolve_precision('auto')} on {os.cpu_count()} CPUs; quick eval: {len(files)} images "
          f"of {args.val}", flush=True)
    if args.gpu:  # each model gets an equal share of --minutes, and goes on to the next when it is up
        share = (deadline - time.monotonic()) / len(GPU)
        for stage in GPU:
            stage = dataclasses.replace(stage, steps=4) if args.smoke else stage
            end = time.monotonic() + share
            run_stage(stage, args, base, files, lambda: stop() or time.monotonic() > end)
        return
    for stage in stages(SMOKE, []) if args.smoke else stages(CAMPAIGN, ROUND):
        if args.only and stage.name not in args.only.split(","):
            continue
        held = take_lock(Path(args.work) / f"{stage.name}.lock")
        if held is None:
            print(f"== {stage.name}: another campaign process is training it; next model", flush=True)
            continue
        try:
            if stop() or not run_stage(stage, args, base, files, stop):
                break  # stopped in the middle: the next start picks up here
        finally:
            held.release()


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


def adopt(source: Path, args) -> list[str]:
    """Bring in checkpoints trained elsewhere (a GPU run's folder): each replaces --out/NAME only if
    it scores higher here on the quick eval, keeping NAME's place in the campaign; then evaluated in
    full and its card rewritten. Returns the names adopted."""
    files = list_images(args.val)[: args.quick_images]
    adopted = []
    for directory in sorted(p for p in Path(source).iterdir() if (p / hub.WEIGHTS_NAME).is_file()):
        bundled = Path(args.out) / directory.name
        new = hub.load_dir(directory)
        score = quick_score(new.model, new.config["noise"], files)
        old = hub.read_config(bundled) if (bundled / hub.CONFIG_NAME).is_file() else {}
        best = quick_score(hub.load_dir(bundled).model, old["noise"], files) if old else -math.inf
        print(f"{directory.name}: {score:.3f} dB on the quick eval, committed {best:.3f}", flush=True)
        if score <= best + 1e-3:
            continue
        made = (new.config.get("history") or ["trained elsewhere"])[-1]
        config = (old or new.config) | {"history": old.get("history", []) + [f"adopted ({made})"]}
        hub.save(new.model, bundled, config)
        evaluate_checkpoint(bundled, [s for s in args.eval.split(",") if s], args.eval_limit,
                            [b for b in args.eval_baselines.split(",") if b], reuse=old.get("eval", []))
        hub.write_model_card(bundled)
        adopted.append(directory.name)
    return adopted


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--noise", choices=list(NOISE_MODELS), default="gaussian")
    parser.add_argument("--all", action="store_true", help="train every bundled model: gaussian, then the rest from it")
    parser.add_argument("--data", default=str(DATA / "train" / "bsd400"), help="folder of clean training images")
    parser.add_argument("--val", default=str(DATA / "kodak24"), help="folder of clean validation images")
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--finetune-steps", type=int, default=0,
                        help="--all: steps for the models started from gaussian (default steps/4)")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--init", default="", help="start from this checkpoint")
    parser.add_argument("--out", default="checkpoints", help="parent folder of the checkpoint folders")
    parser.add_argument("--clean-targets", action="store_true", help="train the clean-target twin NAME-n2c")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--val-every", type=int, default=1000)
    parser.add_argument("--smoke", action="store_true", help="a seconds-long run on tiny crops (tests)")
    parser.add_argument("--eval", default="kodak24,cbsd68",
                        help="after training, evaluate on these folders of ../shared/data (or paths) at the noise's "
                             "test setting and put the figures in config.json and the model card; '' for none")
    parser.add_argument("--eval-baselines", default="nlm,median",
                        help="classical baselines to evaluate alongside (bm3d is slow)")
    parser.add_argument("--eval-limit", type=int, default=0, help="evaluate on the first N images of each set only")
    parser.add_argument("--eval-only", action="store_true", help="skip training: evaluate the existing checkpoints")
    parser.add_argument("--campaign", action="store_true", help="the standing training campaign (see above)")
    parser.add_argument("--gpu", action="store_true",
                        help="--campaign: the GPU plan (GPU), --minutes shared by the seven models")
    parser.add_argument("--only", default="", help="--campaign: only the runs of these models (a,b), e.g. in a "
                        "second process beside the main one (never both on the same model)")
    parser.add_argument("--adopt", metavar="DIR", default="",
                        help="bring in the checkpoints in DIR that beat the committed ones")
    parser.add_argument("--work", default="runs/campaign", help="--campaign: folder of the runs in progress")
    parser.add_argument("--minutes", type=float, default=0, help="--campaign: stop after this long (0: until a signal)")
    parser.add_argument("--eval-every", type=int, default=1000, help="--campaign: quick eval every N steps")
    parser.add_argument("--quick-images", type=int, default=6,
                        help="--campaign: quick eval on the first N --val images")
    parser.add_argument("--replace-every", type=float, default=20,
                        help="--campaign: replace a checkpoint at most every N minutes")
    parser.add_argument("--push-to-hub", metavar="REPO", default="",
                        help="upload each checkpoint to REPO/NAME (token: HF_TOKEN)")
    return parser


def base_config(args) -> dict:
    """TrainConfig fields shared by every run of this invocation."""
    base = dict(data=args.data, val=args.val if Path(args.val).is_dir() else "", lr=args.lr,
                batch_size=args.batch_size, crop=args.crop, resume=args.resume, workers=args.workers,
                threads=args.threads, val_every=args.val_every, checkpoint_every=min(250, args.val_every),
                clean_targets=args.clean_targets)
    if args.smoke:
        base |= dict(batch_size=2, crop=32, val_images=1, val_crop=64, val_every=2, checkpoint_every=2)
    elif args.campaign:
        base |= dict(checkpoint_every=250)
    return base


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    base = base_config(args)
    if args.smoke:
        args.steps = min(args.steps, 4)
    if args.campaign:
        campaign(args, base)
        return
    if args.adopt:
        print(f"adopted: {', '.join(adopt(Path(args.adopt), args)) or 'none'}")
        return
    plan = [(args.noise, args.init, args.steps)]
    if args.all:
        finetune = args.finetune_steps or max(1, args.steps // 4)
        first = Path(args.out) / model_name("gaussian", args.clean_targets)
        plan = [("gaussian", args.init, args.steps)] + [(n, str(first), finetune) for n in BUNDLED if n != "gaussian"]
    stopping = []  # SIGINT/SIGTERM: finish the step, save, stop
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.append(True))
    for noise, init, steps in plan:
        out = Path(args.out) / model_name(noise, args.clean_targets)
        config = TrainConfig(noise=noise, init=init, steps=steps, out=str(out), **base)
        print(f"== {out.name}: {steps} steps{' from ' + init if init else ''}", flush=True)
        last = None if args.eval_only else run_training(config, stop=lambda: bool(stopping))
        done = args.eval_only or (last is not None and last.done)
        if int(os.environ.get("RANK", "0")) == 0:
            if args.eval and done and not stopping:
                evaluate_checkpoint(out, [s for s in args.eval.split(",") if s], args.eval_limit,
                                    [b for b in args.eval_baselines.split(",") if b])
            hub.write_model_card(out)
            if args.push_to_hub:
                url = hub.push(out, args.push_to_hub, path_in_repo=out.name)
                print(f"pushed {out} to {url}")
        if stopping or not done:
            break


if __name__ == "__main__":
    main()
