"""A model on a folder of clean images, beside the classical baselines: PSNR, SSIM and seconds per
megapixel, each image corrupted with its own seed. Shared by `python -m n2n eval`, train_space.py
and benchmarks/bench.py (a tqdm progress bar on stderr).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import baselines
from .data import list_images
from .estimate import estimate_noise
from .infer import TILE, denoise
from .io import DEFAULT_MAX_PIXELS, read_image, to_float
from .metrics import psnr, ssim
from .noise import corrupt


def evaluate(model, files, noise: str, param: float, seed: int = 0, baselines_: list[str] | tuple = (),
             tile: int = TILE, precision: str = "auto", repeats: int = 1, limits: dict | None = None,
             label: str = "eval", max_pixels: int = DEFAULT_MAX_PIXELS, stride: int | None = None,
             ensemble: bool = False) -> dict:
    """PSNR, SSIM and seconds per megapixel of `model` and of each baseline on the clean images
    `files`, each corrupted by `noise` at `param` (image k with seed [seed, k]); also the noisy
    input's PSNR and SSIM. `repeats`: the model's time is the fastest of that many runs per image.
    `limits`: {method: N} runs that method ("model" or a baseline) on the first N images only.
    `max_pixels`: larger images are refused (`io.read_image`). `stride`, `ensemble`: `n2n.denoise`'s.
    Returns the `eval` JSON less the model's name: images, psnr, ssim, noisy_psnr, noisy_ssim,
    seconds_per_megapixel, per_image, and baselines {name: the same figures}."""
    channels = model.in_channels

    def items():
        for k, path in enumerate(files):
            clean = _channels(to_float(read_image(path, max_pixels=max_pixels, dtype=None)), channels)
            yield path.name, clean, corrupt(clean, noise, param, np.random.default_rng([seed, k])), noise, param

    return _score(model, items(), len(files), baselines_, tile, precision, repeats, limits or {}, label, stride,
                  ensemble)


# How the files of a real noisy/clean pair are named: (part of the noisy name, the clean name's part instead)
PAIR_NAMES = (("_noise", "_gt"), ("_real", "_mean"), ("noisy", "gt"), ("noisy", "clean"), ("_NOISY", "_GT"))


def match_pairs(folder: str | Path, names: tuple[tuple[str, str], ...] = PAIR_NAMES) -> list[tuple[Path, Path]]:
    """The (noisy, clean) files of `folder`, matched by name: `NN_noise.png` with `NN_gt.png`, `*_real*` with
    `*_mean*`, `noisy*` with `gt*` (PAIR_NAMES), or `names` given. ValueError naming every unmatched file."""
    files = list_images(folder)
    by_stem = {p.stem: p for p in files}
    pairs, used = [], set()
    for path in files:
        for noisy, clean in names:
            match = by_stem.get(path.stem.replace(noisy, clean, 1)) if noisy in path.stem else None
            if match is not None and match != path:
                pairs.append((path, match))
                used |= {path, match}
                break
    unmatched = [p.name for p in files if p not in used]
    if unmatched or not pairs:
        raise ValueError(f"{folder}: no noisy/clean partner for {', '.join(unmatched) or 'any file'}; name pairs "
                         f"NAME_noise / NAME_gt, NAME_real / NAME_mean or noisy / gt, or give the parts with --pair "
                         f"NOISY,CLEAN")
    return pairs


def evaluate_pairs(model, pairs: list[tuple[Path, Path]], baselines_: list[str] | tuple = (), tile: int = TILE,
                   precision: str = "auto", label: str = "eval", max_pixels: int = DEFAULT_MAX_PIXELS,
                   stride: int | None = None, ensemble: bool = False) -> dict:
    """`evaluate` on real photos: each (noisy, clean) pair of files (`match_pairs`) as it is; the baselines
    run as for Gaussian noise of the σ estimated blind on the noisy photo (`estimate.estimate_noise`, with no
    model: camera noise is read at stride 2, where it is about independent between pixels)."""
    channels = model.in_channels

    def items():
        for noisy_path, clean_path in pairs:
            noisy = _channels(to_float(read_image(noisy_path, max_pixels=max_pixels, dtype=None)), channels)
            clean = _channels(to_float(read_image(clean_path, max_pixels=max_pixels, dtype=None)), channels)
            if noisy.shape != clean.shape:
                raise ValueError(f"{noisy_path.name} and {clean_path.name} differ in size: {noisy.shape[:2]} vs "
                                 f"{clean.shape[:2]}")
            sigma = max(estimate_noise(noisy).sigma, 0.5) if any(baselines_) else 0.0  # the baselines' level, blind
            yield noisy_path.name, clean, noisy, "gaussian", sigma

    return _score(model, items(), len(pairs), baselines_, tile, precision, 1, {}, label, stride, ensemble)


def _channels(image: np.ndarray, channels: int) -> np.ndarray:
    image = image[..., :channels]
    return np.repeat(image, channels, axis=2) if image.shape[2] != channels else image


def _score(model, items, count: int, baselines_, tile, precision, repeats, limits, label, stride, ensemble) -> dict:
    """The figures of `evaluate` over `items`: (name, clean, noisy, noise, param) each."""
    methods = {"model": lambda noisy, noise, param: denoise(model, noisy, tile=tile, precision=precision,
                                                            stride=stride, ensemble=ensemble)}
    for name in [b for b in baselines_ if b]:
        methods[name] = baselines.get_baseline(name)
    rows = {name: [] for name in methods}
    noisy_psnr, noisy_ssim = [], []
    # the bar is closed (its line ended) before an error from reading an image or denoising is printed
    with tqdm(items, total=count, desc=label, unit="image", file=sys.stderr) as bar:
        for k, (image, clean, noisy, noise, param) in enumerate(bar):
            noisy_psnr.append(psnr(clean, noisy))
            noisy_ssim.append(ssim(clean, noisy))
            for name, fn in methods.items():
                if limits.get(name) and k >= limits[name]:
                    continue
                seconds = float("inf")
                for _ in range(repeats if name == "model" else 1):
                    t = time.perf_counter()
                    out = fn(noisy, noise, param)
                    seconds = min(seconds, time.perf_counter() - t)
                rows[name].append({"image": image, "psnr": psnr(clean, out), "ssim": ssim(clean, out),
                                   "seconds": seconds, "megapixels": clean.shape[0] * clean.shape[1] / 1e6})

    def summary(r):
        return {"images": len(r), "psnr": float(np.mean([x["psnr"] for x in r])),
                "ssim": float(np.mean([x["ssim"] for x in r])),
                "seconds_per_megapixel": sum(x["seconds"] for x in r) / sum(x["megapixels"] for x in r),
                "per_image": r}

    result = {"images": count, "noisy_psnr": float(np.mean(noisy_psnr)),
              "noisy_ssim": float(np.mean(noisy_ssim))} | summary(rows.pop("model"))
    result["images"] = count
    result["baselines"] = {name: summary(r) for name, r in rows.items()}
    return result
