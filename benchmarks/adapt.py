""""Adapt to this photo" (n2n.adapt.adapt) on photos the models never saw, with noises they were
not trained for: PSNR of the pretrained model, of Neighbor2Neighbor from it for a time budget (one
or several settings), and of Zero-Shot Noise2Noise for the same budget.

    nice -n 5 python -m benchmarks.adapt [--images 3] [--seconds 60] [--settings 128x4@3e-4,64x4@3e-4]
        [--zero-shot] [--out benchmarks/results/adapt.md]

Images: the first --images of CBSD68, whole (481×321). Noisy uploads are clipped and rounded to 8 bits.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from n2n.data import list_images
from n2n.adapt import adapt
from n2n.estimate import blind_psnr
from n2n.infer import denoise
from n2n.io import from_float, read_image, to_float
from n2n.metrics import psnr
from n2n.noise import corrupt
from n2n import load_model
from n2n.train import zero_shot


def mixture(clean, rng):
    """Poisson–Gaussian: shot noise at λ = 20, then Gaussian σ = 10."""
    return corrupt(corrupt(clean, "poisson", 20, rng), "gaussian", 10, rng)


def salt_and_pepper(clean, rng):
    """Gaussian σ = 15, then 5% of pixels set to black or white."""
    noisy = corrupt(clean, "gaussian", 15, rng)
    hit = rng.random(clean.shape[:2] + (1,)) < 0.05
    return np.where(hit, (rng.random(clean.shape[:2] + (1,)) < 0.5).astype(np.float32), noisy)


def sigma70(clean, rng):
    """Gaussian σ = 70 (the models trained on σ ≤ 50)."""
    return corrupt(clean, "gaussian", 70, rng)


NOISES = {"Poisson λ=20 + Gaussian σ=10": mixture, "Gaussian σ=15 + 5% salt-and-pepper": salt_and_pepper,
          "Gaussian σ=70": sigma70}


def upload(clean: np.ndarray, noise, seed: int) -> np.ndarray:
    """The noisy photo as a visitor would upload it: clipped, 8-bit, float32 (H, W, C) in [0, 1]."""
    return to_float(from_float(np.clip(noise(clean, np.random.default_rng(seed)), 0, 1), np.uint8))


def parse_setting(text: str) -> dict:
    """'128x4@3e-4' → crop 128, batch 4, lr 3e-4."""
    size, lr = text.split("@")
    crop, batch = size.split("x")
    return {"crop": int(crop), "batch_size": int(batch), "lr": float(lr)}


def run_adapt(init: str, noisy: np.ndarray, seconds: float, setting: dict) -> tuple[np.ndarray, int, float, object]:
    """The adapted result, its steps, its seconds (training; the full-image denoise not included) and the model."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        for record in adapt(init, noisy, Path(folder), seconds, **setting):
            pass
        elapsed = time.perf_counter() - start
        return denoise(record.model.eval(), noisy), record.step, elapsed, record.model


def run_zero_shot(noisy: np.ndarray, seconds: float) -> tuple[np.ndarray, int, float]:
    """Zero-shot with as many steps as `seconds` holds, paced by a 20-step trial (not counted)."""
    start = time.perf_counter()
    zero_shot(noisy, steps=20)
    steps = max(1, int(seconds * 20 / (time.perf_counter() - start)))
    start = time.perf_counter()
    result = zero_shot(noisy, steps=steps)
    return result, steps, time.perf_counter() - start


def main(argv=None) -> str:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "cbsd68"))
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--init", default="gaussian", help="the pretrained model adapted")
    parser.add_argument("--settings", default="128x4@3e-4", help="crop x batch @ lr, comma-separated")
    parser.add_argument("--noises", default=",".join(NOISES), help="comma-separated names from NOISES")
    parser.add_argument("--zero-shot", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/adapt.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    settings = args.settings.split(",")
    pretrained = load_model(args.init).eval()
    files = list_images(args.data)[: args.images]
    header = ["noise", "image", "noisy", f"pretrained `{args.init}`"] + [f"N2N {s}" for s in settings]
    header += ["zero-shot"] if args.zero_shot else []
    header += [f"blind verdict on {settings[0]} (right?)"]
    lines = [f"# Adapt to this photo: {args.seconds:g} s budget, {os.cpu_count()} CPU cores (load average "
             f"{os.getloadavg()[0]:.1f} at the start)", "",
             f"`python -m benchmarks.adapt {' '.join(argv) if argv else ''}`".replace(" `", "`"), "",
             "PSNR in dB (8-bit); N2N = Neighbor2Neighbor from the pretrained model, crop x batch @ lr; "
             "(steps in brackets).", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    gains = {s: [] for s in settings + ["zero-shot"]}
    verdicts = []  # (the blind score picked the better of pretrained and adapted, PSNR of its pick - pretrained)
    for n, (name, noise) in enumerate(NOISES.items()):
        if name not in args.noises.split(","):
            continue
        for k, f in enumerate(files):
            clean = read_image(f)
            noisy = upload(clean, noise, 1000 * n + k)
            base = psnr(clean, denoise(pretrained, noisy))
            row = [name, f.name, f"{psnr(clean, noisy):.2f}", f"{base:.2f}"]
            for s in settings:
                result, steps, seconds, model = run_adapt(args.init, noisy, args.seconds, parse_setting(s))
                gains[s].append(psnr(clean, result) - base)
                if s == settings[0]:  # the app's verdict: n2n.estimate.blind_psnr of both
                    adapted_wins = (blind_psnr(noisy, lambda x: denoise(model.eval(), x))
                                    >= blind_psnr(noisy, lambda x: denoise(pretrained, x)))
                    verdicts.append((adapted_wins == (gains[s][-1] >= 0), gains[s][-1] if adapted_wins else 0.0,
                                     "adapted" if adapted_wins else "pretrained"))
                row.append(f"{psnr(clean, result):.2f} ({gains[s][-1]:+.2f}, {steps} st, {seconds:.0f} s)")
            if args.zero_shot:
                result, steps, seconds = run_zero_shot(noisy, args.seconds)
                gains["zero-shot"].append(psnr(clean, result) - base)
                row.append(f"{psnr(clean, result):.2f} ({gains['zero-shot'][-1]:+.2f}, {steps} st, {seconds:.0f} s)")
            row.append(f"{verdicts[-1][2]} ({'yes' if verdicts[-1][0] else 'no'})")
            lines.append("| " + " | ".join(row) + " |")
            print(lines[-1], flush=True)
    means = [f"{np.mean(gains[s]):+.2f} dB" for s in settings] + ([f"{np.mean(gains['zero-shot']):+.2f} dB"]
                                                                  if args.zero_shot else [])
    picked = np.mean([v[1] for v in verdicts])
    means.append(f"right {sum(v[0] for v in verdicts)}/{len(verdicts)}; its pick {picked:+.2f} dB")
    lines.append("| **mean gain over pretrained** | | | | " + " | ".join(means) + " |")
    text = "\n".join(lines) + "\n"
    print(lines[-1])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return text


if __name__ == "__main__":
    main()
