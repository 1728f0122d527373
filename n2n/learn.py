"""The paper's claims without training: what each loss converges to, on N noisy copies of one image.

A denoiser trained with a loss on noisy targets learns, for each input, the statistic of the targets
that the loss is minimised by (Lehtinen et al. 2018, §2): L2 the mean, L1 the median, annealed L0 the
mode. Here the "targets" are N independent noisy copies of a clean image (from `n2n.noise`), and each
statistic is taken per pixel and channel, so one sees which one recovers the clean image for which
noise: the mean for zero-mean noise (Gaussian), the median for text overlay (the mean keeps grey
ghosts of the letters), the mode for random-valued impulses.

Images are float32 (H, W, C) in [0, 1]. The mean is taken over the unclipped copies, as training
sees them; the median and the mode over the copies as 8-bit values (clipped and rounded, as a visitor
or a PSNR sees them): both commute with clipping, and 8 bits make the per-pixel sort a radix sort,
about 3x faster than on floats (a 512² RGB image at N = 64 is 50 M values).
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .data import apply_subsample, neighbor_subsample
from .io import to_uint8
from .metrics import psnr
from .noise import corrupt

STATISTIC_LOSS = {"mean": "l2", "median": "l1", "mode": "l0"}  # the loss whose optimum each statistic is
MAX_COPIES = 64
CURVE_NS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)  # the N at which the PSNR-vs-N curve is drawn
CURVE_VALUES = 16_384  # the curve's PSNR is measured on this many values sampled from the image
BLOCK = 16_384  # values sorted at a time (n of each): the block stays in cache
PARTS = 2  # the copies are made in this many interleaved parts, one per thread at most


@dataclass
class Combination:
    """What `combine` returns: `noisy` the first noisy copy (unclipped), `images` the mean, median and
    mode (float32 (H, W, C) in [0, 1]), `psnr` their PSNR (dB, 8-bit, inf when identical) against the
    clean image and the first copy's under "noisy", and `curve` rows {"N", "statistic", "psnr"} of
    the PSNR of each statistic over the first N copies, on CURVE_VALUES sampled values."""

    noisy: np.ndarray
    images: dict[str, np.ndarray]
    psnr: dict[str, float]
    curve: list[dict]


def mode_window(n: int) -> int:
    """How many of n sorted values the mode's densest window holds: ⌈√n⌉, at least 2 (at most n)."""
    return min(n, max(2, math.ceil(math.sqrt(n))))


def median_of_sorted(values: np.ndarray) -> np.ndarray:
    """Median along the first axis of `values` (n, ...), already sorted along it; float32, same units."""
    n = len(values)
    if n % 2:
        return values[n // 2].astype(np.float32)
    return (values[n // 2 - 1].astype(np.float32) + values[n // 2]) / 2


def mode_of_sorted(values: np.ndarray) -> np.ndarray:
    """A mode estimate along the first axis of `values` (n, ...), sorted along it; float32, same units.

    The densest window: of the n - k + 1 runs of k = mode_window(n) consecutive sorted values, the
    narrowest (ties go to the run nearest the middle of the sample, so that 8-bit ties do not bias
    the estimate low); its median is the mode. Where the clean value repeats among random ones
    (impulse noise, even when most copies are hit) the window falls inside the repeats; for a
    smooth bell (Gaussian noise) it finds the peak only roughly, which is the point of showing it.
    """
    n = len(values)
    k = mode_window(n)
    if n <= 2:
        return median_of_sorted(values)
    best_width, best = None, None
    for start in sorted(range(n - k + 1), key=lambda s: abs(2 * s + k - n)):  # centred runs first
        width = values[start + k - 1] - values[start]  # >= 0: sorted, so no uint8 wrap-around
        if best is None:
            best_width, best = width, np.full(width.shape, start, np.uint8)
        else:
            narrower = width < best_width  # strictly: of equal widths the more central run stays
            np.putmask(best, narrower, start)
            best_width = np.minimum(best_width, width)
    lo = np.take_along_axis(values, (best + (k - 1) // 2)[None], axis=0)[0].astype(np.float32)
    hi = np.take_along_axis(values, (best + k // 2)[None], axis=0)[0]
    return (lo + hi) / 2


def combine(clean: np.ndarray, noise: str, param: float, n: int, rng: np.random.Generator,
            curve_values: int = CURVE_VALUES, threads: int = 2) -> Combination:
    """N independent noisy copies of `clean` (float32 (H, W, C) in [0, 1]) with `noise` at `param`
    (n2n.noise units), combined per value three ways: mean, median and mode; with their PSNR and
    the PSNR-vs-N curve (at the CURVE_NS up to n, and n).

    Copy k draws from the k-th generator spawned from `rng`, and the copies are summed in PARTS
    fixed parts, so the result does not depend on `threads` (how many threads make the copies and
    sort them: NumPy releases the GIL in its random draws and sorts). Memory: n bytes per value,
    plus a few float32 images.
    """
    if not 1 <= n <= MAX_COPIES:
        raise ValueError(f"N must be 1 to {MAX_COPIES}, got {n}")
    clean = np.asarray(clean, dtype=np.float32)
    if clean.ndim != 3:
        raise ValueError(f"expected a clean image (H, W, C), got shape {clean.shape}")
    size = clean.size
    sample = (np.arange(size) if size <= curve_values
              else np.sort(np.random.default_rng(0).choice(size, curve_values, replace=False)))
    generators = rng.spawn(n)
    copies8 = np.empty((n, size), np.uint8)  # each copy clipped and rounded to 8 bits
    sampled = np.empty((n, len(sample)), np.float32)  # the unclipped copies at the curve's sample
    first = []

    def make(ks: range) -> np.ndarray:  # the copies ks; returns their (unclipped) sum
        total = np.zeros(size, np.float32)
        for k in ks:
            noisy = corrupt(clean, noise, param, generators[k])
            if k == 0:
                first.append(noisy)
            flat = noisy.reshape(-1)
            total += flat
            copies8[k] = to_uint8(flat)
            sampled[k] = flat[sample]
        return total

    def order(lo: int) -> tuple[np.ndarray, np.ndarray]:  # median and mode of values lo:lo+BLOCK
        block = copies8[:, lo:lo + BLOCK]
        if n > 1:
            block = cv2.transpose(block)  # (values, n): OpenCV's transpose is ~10x NumPy's on uint8
            block.sort(axis=1, kind="stable")  # a radix sort on uint8, along contiguous rows
            block = cv2.transpose(block)  # (n, values), sorted along axis 0
        return median_of_sorted(block), mode_of_sorted(block)

    parts = [range(t, n, PARTS) for t in range(min(PARTS, n))]  # fixed: the float sum's order never changes
    with ThreadPoolExecutor(max(1, min(threads, len(parts)))) as pool:
        total = sum(pool.map(make, parts))
        ordered = list(pool.map(order, range(0, size, BLOCK)))
    shape = clean.shape
    images = {"mean": np.clip(total / n, 0, 1).reshape(shape),
              "median": (np.concatenate([m for m, _ in ordered]) / 255).reshape(shape),
              "mode": (np.concatenate([m for _, m in ordered]) / 255).reshape(shape)}
    scores = {"noisy": psnr(clean, first[0])} | {name: psnr(clean, image) for name, image in images.items()}
    return Combination(first[0], images, scores, psnr_curve(clean.reshape(-1)[sample], sampled))


def psnr_curve(clean: np.ndarray, copies: np.ndarray) -> list[dict]:
    """PSNR of the mean, median and mode of the first N rows of `copies` (n, values) against
    `clean` (values,), at the N of CURVE_NS up to n, and n: rows {"N", "statistic", "psnr"}."""
    n = len(copies)
    quantised = to_uint8(copies)
    rows = []
    for k in sorted({m for m in CURVE_NS if m <= n} | {n}):
        ordered = np.sort(quantised[:k], axis=0)
        stats = {"mean": copies[:k].mean(axis=0), "median": median_of_sorted(ordered) / 255,
                 "mode": mode_of_sorted(ordered) / 255}
        rows += [{"N": k, "statistic": name, "psnr": psnr(clean[None, :, None], value[None, :, None])}
                 for name, value in stats.items()]
    return rows


# --------------------------------------------------------------------------- claim 4: independent noise

# The noises compared: pixel-independent Gaussian, and camera noise (demosaiced, processed, JPEG) of about the
# same strength (ISO 1600 leaves about σ 10 on Kodak24)
INDEPENDENCE_NOISES = (("gaussian", 10.0), ("camera", 4.0))


def neighbour_pair(noise: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Neighbor2Neighbor's two sub-images of (H, W, C) `noise`, drawn by the training loop's own sampler
    (n2n.data.neighbor_subsample): in every 2×2 cell two different adjacent pixels ((H/2, W/2, C) each)."""
    h, w = noise.shape[0] // 2 * 2, noise.shape[1] // 2 * 2
    x = torch.from_numpy(np.ascontiguousarray(noise[:h, :w].transpose(2, 0, 1)))[None]
    first, second = neighbor_subsample(x, torch.Generator().manual_seed(int(rng.integers(2**62))))
    return tuple(apply_subsample(x, index)[0].permute(1, 2, 0).numpy() for index in (first, second))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays of one shape, each centred per channel."""
    a = a - a.mean(axis=(0, 1))
    b = b - b.mean(axis=(0, 1))
    return float((a * b).mean() / max(np.sqrt((a * a).mean() * (b * b).mean()), 1e-12))


def independence(clean: np.ndarray, rng: np.random.Generator, noises=INDEPENDENCE_NOISES) -> list[dict]:
    """How independent each noise of `noises` is between the pixels that Neighbor2Neighbor pairs, on the clean
    (H, W, C) float32 image: one row per noise, {"noise", "param", "neighbours", "pairs", "pairs_stride_2",
    "noise_image"}: the correlation of the noise (noisy − clean) between horizontal neighbours, between the two
    Neighbor2Neighbor sub-images, and between them on the stride-2 pixel-shuffled image (where camera noise,
    correlated by demosaicing, is about independent again); and the noise itself, float32 (H, W, C)."""
    rows = []
    for noise, param in noises:
        residual = corrupt(clean, noise, param, rng) - clean
        rows.append({"noise": noise, "param": param,
                     "neighbours": correlation(residual[:, 1:], residual[:, :-1]),
                     "pairs": correlation(*neighbour_pair(residual, rng)),
                     "pairs_stride_2": correlation(*neighbour_pair(residual[::2, ::2], rng)),
                     "noise_image": residual.astype(np.float32)})
    return rows
