"""Train the bundled checkpoints: a CPU smoke run, one GPU, or many with torchrun.

    python train_space.py --noise gaussian --steps 20000            # one model into checkpoints/gaussian
    python train_space.py --all --steps 20000 --finetune-steps 5000 # gaussian, then the others from it
    python train_space.py --noise gaussian --clean-targets          # the Noise2Clean twin, gaussian-n2c
    torchrun --nproc_per_node 8 train_space.py --all ...            # DistributedDataParallel
    python train_space.py --smoke --data DIR --out DIR              # seconds long, for tests

Each run writes NAME/config.json, model.safetensors and a model card README.md, and
resumes with --resume. Ctrl-C or SIGTERM ends the current step, saves and stops.
"""
from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from n2n import hub
from n2n.cli import evaluate, run_training
from n2n.data import list_images
from n2n.noise import NOISE_MODELS
from n2n.train import TrainConfig

DATA = Path(__file__).resolve().parent.parent / "shared" / "data"
BUNDLED = ["gaussian", "poisson", "text", "bernoulli", "impulse"]


def model_name(noise: str, clean_targets: bool) -> str:
    return f"{noise}-n2c" if clean_targets else noise


def evaluate_checkpoint(directory: Path, sets: list[str], limit: int = 0, baseline_names=("nlm", "median")) -> None:
    """`python -m n2n eval` figures of the checkpoint at its noise's test setting, with the classical
    baselines, stored under "eval" in its config.json (the model card's table reads them)."""
    loaded = hub.load_dir(directory)
    noise = loaded.config["noise"]
    param = NOISE_MODELS[noise].default
    rows = []
    for name in sets:
        folder = Path(name) if Path(name).is_dir() else DATA / name
        if not folder.is_dir():
            print(f"skip eval on {name}: no such folder")
            continue
        figures = evaluate(loaded.model, list_images(folder)[: limit or None], noise, param, baselines_=baseline_names,
                           label=f"eval {folder.name}")
        row = {"data": folder.name, "noise": noise, "param": param, "images": figures["images"],
               "noisy_psnr": figures["noisy_psnr"], "psnr": figures["psnr"], "ssim": figures["ssim"],
               "seconds_per_megapixel": figures["seconds_per_megapixel"],
               "baselines": {b: {"psnr": f["psnr"], "ssim": f["ssim"]} for b, f in figures["baselines"].items()}}
        print(f"{directory.name} on {folder.name}: {row['psnr']:.2f} dB (noisy {row['noisy_psnr']:.2f}; "
              + ", ".join(f"{b} {f['psnr']:.2f}" for b, f in row["baselines"].items()) + ")", flush=True)
        rows.append(row)
    hub.save(loaded.model, directory, loaded.config | {"eval": rows})


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--noise", choices=list(NOISE_MODELS), default="gaussian")
    parser.add_argument("--all", action="store_true", help="train every bundled model: gaussian, then the rest from it")
    parser.add_argument("--data", default=str(DATA / "train" / "bsd400"), help="folder of clean training images")
    parser.add_argument("--val", default=str(DATA / "kodak24"), help="folder of clean validation images")
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--finetune-steps", type=int, default=0, help="--all: steps for the models started from gaussian (default steps/4)")
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
    parser.add_argument("--eval-baselines", default="nlm,median", help="classical baselines to evaluate alongside (bm3d is slow)")
    parser.add_argument("--eval-limit", type=int, default=0, help="evaluate on the first N images of each set only")
    parser.add_argument("--eval-only", action="store_true", help="skip training: evaluate the existing checkpoints")
    parser.add_argument("--push-to-hub", metavar="REPO", default="", help="upload each checkpoint to REPO/NAME (token: HF_TOKEN)")
    args = parser.parse_args(argv)

    base = dict(data=args.data, val=args.val if Path(args.val).is_dir() else "", lr=args.lr,
                batch_size=args.batch_size, crop=args.crop, resume=args.resume, workers=args.workers,
                threads=args.threads, val_every=args.val_every, checkpoint_every=min(250, args.val_every),
                clean_targets=args.clean_targets)
    if args.smoke:
        base |= dict(batch_size=2, crop=32, val_images=1, val_crop=64, val_every=2, checkpoint_every=2)
        args.steps = min(args.steps, 4)
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
        record = {"done": True} if args.eval_only else run_training(config, stop=lambda: bool(stopping))
        if int(os.environ.get("RANK", "0")) == 0:
            if args.eval and record.get("done") and not stopping:
                evaluate_checkpoint(out, [s for s in args.eval.split(",") if s], args.eval_limit,
                                    [b for b in args.eval_baselines.split(",") if b])
            hub.write_model_card(out)
            if args.push_to_hub:
                url = hub.push(out, args.push_to_hub, path_in_repo=out.name)
                print(f"pushed {out} to {url}")
        if stopping or not record.get("done"):
            break


if __name__ == "__main__":
    main()
