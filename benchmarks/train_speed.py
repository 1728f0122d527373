"""Training throughput: the project's loop against a bare PyTorch loop, in one run, per precision.

    python -m benchmarks.train_speed [--steps 60] [--warmup 10] [--compile] [--out benchmarks/results]

Both train the paper's U-Net with Adam on batches of 8 crops of 96² (the bundled models' recipe).
The bare loop feeds fixed random tensors (no data work at all); `n2n.train.train` draws real
Gaussian pairs from ../shared/data/train/bsd400 (or a folder of synthetic photos when it is
absent), as the campaign does. Steps per second after `--warmup` steps, for fp32 and bf16 autocast
(bf16 only where the CPU has native bf16, or with --all-precisions), the best of --repeats runs.
`--compile` adds a run of the bare loop under torch.compile. Writes OUT/train_speed.json and OUT/train_speed.md.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench import DEFAULT_OUT, ROOT, machine
from n2n.infer import native_bf16
from n2n.models import build_model
from n2n.train import TrainConfig, train

TRAIN = ROOT.parent / "shared" / "data" / "train" / "bsd400"


def bare_loop(precision: str, steps: int, warmup: int, batch: int = 8, crop: int = 96, compile_: bool = False) -> float:
    """Steps/s of forward, L2 loss, backward and Adam on fixed random batches."""
    torch.manual_seed(0)
    model = build_model("unet", in_channels=3, out_channels=3).to(memory_format=torch.channels_last).train()
    net = torch.compile(model) if compile_ else model
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4, betas=(0.9, 0.99))
    x = torch.rand(batch, 3, crop, crop).contiguous(memory_format=torch.channels_last)
    y = torch.rand(batch, 3, crop, crop).contiguous(memory_format=torch.channels_last)
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = torch.mean((net(x).float() - y) ** 2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps / (time.perf_counter() - t0)


def project_loop(precision: str, steps: int, warmup: int, data: Path, batch: int = 8, crop: int = 96) -> float:
    """Steps/s of `n2n.train.train` (real data pipeline, no validation) after `warmup` steps."""
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(data=str(data), noise="gaussian", steps=warmup + steps, precision=precision,
                             batch_size=batch, crop=crop,
                             out=out, checkpoint_every=10**9, val="")
        for record in train(config):
            if record.step == warmup:
                t0 = time.perf_counter()
    return steps / (time.perf_counter() - t0)


def _synthetic_photos(folder: Path, n: int = 5) -> Path:
    import skimage.data
    from n2n.io import write_image

    for k, name in enumerate(("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")[:n]):
        write_image(folder / f"{k}.png", np.asarray(getattr(skimage.data, name)())[..., :3])
    return folder


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--compile", action="store_true", help="also time the bare loop under torch.compile")
    parser.add_argument("--all-precisions", action="store_true", help="bf16 even without native bf16 (slow)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="the best of N runs of each loop (the machine's noise is ±6%%)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)
    precisions = ["fp32", "bf16"] if native_bf16() or args.all_precisions else ["fp32"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = TRAIN if TRAIN.is_dir() else _synthetic_photos(Path(tmp))
        for precision in precisions:
            bare = max(bare_loop(precision, args.steps, args.warmup, args.batch, args.crop)
                       for _ in range(args.repeats))
            ours = max(project_loop(precision, args.steps, args.warmup, data, args.batch, args.crop)
                       for _ in range(args.repeats))
            row = {"precision": precision, "bare_steps_per_s": bare, "n2n_steps_per_s": ours, "ratio": ours / bare}
            if args.compile:
                row["bare_compiled_steps_per_s"] = bare_loop(precision, args.steps, args.warmup, args.batch, args.crop,
                                                                  compile_=True)
            print(json.dumps(row), flush=True)
            rows.append(row)
    report = {"machine": machine(), "batch": args.batch, "crop": args.crop, "steps": args.steps, "warmup": args.warmup,
              "data": str(data) if data == TRAIN else "synthetic photos", "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    lines = [f"# Training throughput (`python -m benchmarks.train_speed{' --compile' if args.compile else ''}`)", "",
             f"{m['cpu']}, {m['cores']} cores ({', '.join(m['simd'])}; native bf16: {m['mkldnn_bf16']}), "
             f"torch {m['torch']}, load average {m['load_average']} at the end. "
             f"U-Net, Adam, batch {args.batch} of {args.crop}², "
             f"{args.steps} timed steps after {args.warmup}, best of {args.repeats} runs.", "",
             "| precision | bare loop (steps/s) | `n2n.train` (steps/s) | n2n / bare |"
             + (" bare + torch.compile |" if args.compile else ""),
             "|---|---|---|---|" + ("---|" if args.compile else "")]
    for r in rows:
        lines.append(f"| {r['precision']} | {r['bare_steps_per_s']:.2f} | {r['n2n_steps_per_s']:.2f} "
                     f"| {r['ratio']:.1%} |"
                     + (f" {r['bare_compiled_steps_per_s']:.2f} |" if args.compile else ""))
    (out / "train_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
