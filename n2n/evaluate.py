"""A model on a folder of clean images, beside the classical baselines: PSNR, SSIM and seconds per
megapixel, each image corrupted with its own seed. Shared by `python -m n2n eval`, train_space.py
and benchmarks/bench.py; also the command line's progress bar.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from . import baselines
from .infer import TILE, denoise
from .io import DEFAULT_MAX_PIXELS, read_image, to_float
from .metrics import psnr, ssim
from .noise import corrupt


def progress_bar(iterable, total: int, label: str):
    """Yield from `iterable`, drawing a one-line progress bar on stderr (from 0/total, before the first
    item, so that a message printed meanwhile knows to start on a new line)."""
    start = time.perf_counter()
    print(f"\r{label} [{'.' * 30}] 0/{total}", end="", file=sys.stderr)
    for i, item in enumerate(iterable, 1):
        yield item
        done = int(30 * i / max(total, 1))
        rate = i / (time.perf_counter() - start)
        print(f"\r{label} [{'#' * done}{'.' * (30 - done)}] {i}/{total} {rate:.2f}/s", end="", file=sys.stderr)
    print(file=sys.stderr)


def evaluate(model, files, noise: str, param: float, seed: int = 0, baselines_: list[str] | tuple = (),
             tile: int = TILE, precision: str = "auto", repeats: int = 1, limits: dict | None = None,
             label: str = "eval", max_pixels: int = DEFAULT_MAX_PIXELS) -> dict:
    """PSNR, SSIM and seconds per megapixel of `model` and of each baseline on the clean images
    `files`, each corrupted by `noise` at `param` (image k with seed [seed, k]); also the noisy
    input's PSNR and SSIM. `repeats`: the model's time is the fastest of that many runs per image.
    `limits`: {method: N} runs that method ("model" or a baseline) on the first N images only.
    `max_pixels`: larger images are refused (`io.read_image`).
    Returns the `eval` JSON less the model's name: images, psnr, ssim, noisy_psnr, noisy_ssim,
    seconds_per_megapixel, per_image, and baselines {name: the same figures}."""
    channels = model.in_channels
    methods = {"model": lambda noisy: denoise(model, noisy, tile=tile, precision=precision)}
    for name in [b for b in baselines_ if b]:
        fn = baselines.get_baseline(name)
        methods[name] = lambda noisy, fn=fn: fn(noisy, noise, param)
    limits = limits or {}
    rows = {name: [] for name in methods}
    noisy_psnr, noisy_ssim = [], []
    for k, path in enumerate(progress_bar(files, len(files), label)):
        clean = to_float(read_image(path, max_pixels=max_pixels, dtype=None))[..., :channels]
        if clean.shape[2] != channels:
            clean = np.repeat(clean, channels, axis=2)
        noisy = corrupt(clean, noise, param, np.random.default_rng([seed, k]))
        noisy_psnr.append(psnr(clean, noisy))
        noisy_ssim.append(ssim(clean, noisy))
        for name, fn in methods.items():
            if limits.get(name) and k >= limits[name]:
                continue
            seconds = float("inf")
            for _ in range(repeats if name == "model" else 1):
                t = time.perf_counter()
                out = fn(noisy)
                seconds = min(seconds, time.perf_counter() - t)
            rows[name].append({"image": path.name, "psnr": psnr(clean, out), "ssim": ssim(clean, out),
                               "seconds": seconds, "megapixels": clean.shape[0] * clean.shape[1] / 1e6})

    def summary(r):
        return {"images": len(r), "psnr": float(np.mean([x["psnr"] for x in r])),
                "ssim": float(np.mean([x["ssim"] for x in r])),
                "seconds_per_megapixel": sum(x["seconds"] for x in r) / sum(x["megapixels"] for x in r),
                "per_image": r}

    result = {"images": len(files), "noisy_psnr": float(np.mean(noisy_psnr)),
              "noisy_ssim": float(np.mean(noisy_ssim))} | summary(rows.pop("model"))
    result["images"] = len(files)
    result["baselines"] = {name: summary(r) for name, r in rows.items()}
    return result
