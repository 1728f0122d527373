"""Corruption models of Noise2Noise (Lehtinen et al., 2018), in the paper's units.

Every model maps a clean float32 image of shape (H, W, C) in [0, 1] to a noisy
float32 image of the same shape (not clipped: training noise is unclipped, as in
the paper) and a mask of shape (H, W, 1) that is 1 where the pixel carries
information about the clean image (only Bernoulli noise drops pixels).
Randomness always comes from a `numpy.random.Generator` passed in.
"""
from __future__ import annotations

import functools
import string
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Corruption = Callable[[np.ndarray, float, np.random.Generator], "tuple[np.ndarray, np.ndarray]"]


@dataclass(frozen=True)
class NoiseModel:
    """A corruption model and what the UI, CLI and training need to know of it."""

    name: str
    param: str  # the parameter's symbol
    units: str  # what the parameter means, for labels
    train_range: tuple[float, float]  # training draws the parameter uniformly from this
    default: float  # the test setting
    limits: tuple[float, float]  # what a user may choose
    loss: str  # the loss whose optimum is the clean image for this noise
    apply: Corruption


NOISE_MODELS: dict[str, NoiseModel] = {}


def register(name, **fields):
    """Decorator adding a corruption function to `NOISE_MODELS` under `name`."""

    def wrap(fn: Corruption) -> Corruption:
        NOISE_MODELS[name] = NoiseModel(name=name, apply=fn, **fields)
        return fn

    return wrap


def get_noise(name: str) -> NoiseModel:
    """The registered noise model `name`; raises ValueError listing the known ones."""
    if name not in NOISE_MODELS:
        raise ValueError(f"unknown noise {name!r}; choose one of: {', '.join(NOISE_MODELS)}")
    return NOISE_MODELS[name]


def _ones_mask(image: np.ndarray) -> np.ndarray:
    return np.ones(image.shape[:2] + (1,), np.float32)


@register("gaussian", param="σ", units="standard deviation on the 0–255 scale",
          train_range=(0.0, 50.0), default=25.0, limits=(0.0, 100.0), loss="l2")
def gaussian(image, sigma, rng):
    """Additive white Gaussian noise, σ on the 0–255 scale."""
    noise = rng.standard_normal(image.shape, dtype=np.float32)
    noise *= np.float32(sigma / 255.0)
    return image + noise, _ones_mask(image)


@register("poisson", param="λ", units="photons at full intensity (higher λ, less noise)",
          train_range=(5.0, 50.0), default=30.0, limits=(1.0, 100.0), loss="l2")
def poisson(image, lam, rng):
    """Shot noise: `poisson(λ·x) / λ`, computed in float (no uint8 wrap-around)."""
    lam = max(float(lam), 1e-3)
    counts = rng.poisson(np.clip(image, 0.0, None) * lam)
    return (counts / lam).astype(np.float32), _ones_mask(image)


@register("bernoulli", param="p", units="fraction of pixels dropped",
          train_range=(0.0, 0.95), default=0.5, limits=(0.0, 0.99), loss="masked_l2")
def bernoulli(image, p, rng):
    """Multiplicative Bernoulli noise: each pixel (all channels) set to 0 with probability p."""
    mask = (rng.random(image.shape[:2] + (1,), dtype=np.float32) >= p).astype(np.float32)
    return image * mask, mask


@register("impulse", param="p", units="fraction of pixels replaced by random values",
          train_range=(0.0, 0.95), default=0.5, limits=(0.0, 0.99), loss="l0")
def impulse(image, p, rng):
    """Random-valued impulse noise: each pixel replaced with probability p by a uniform random colour."""
    hit = rng.random(image.shape[:2] + (1,), dtype=np.float32) < p
    values = rng.random(image.shape, dtype=np.float32)
    return np.where(hit, values, image), _ones_mask(image)


_LETTERS = list(string.ascii_letters + string.digits)


@functools.lru_cache(maxsize=None)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)  # Pillow's scalable font: on every machine


TEXT_SIZES = (10, 32)  # font size range in pixels: the same on a training crop, a Kodak photo or a 24 MP one
TEXT_POOL = 32  # strings rendered per font size


@functools.lru_cache(maxsize=None)
def _strings(size: int) -> tuple[np.ndarray, ...]:
    """TEXT_POOL random strings of 3 to 11 letters and digits rendered at `size` px, as boolean
    masks (h, w) cropped to their ink: rendered once (seeded), then stamped, ~100× faster than drawing."""
    rng = np.random.default_rng(size)
    font = _font(size)
    masks = []
    for _ in range(TEXT_POOL):
        word = "".join(rng.choice(_LETTERS, size=int(rng.integers(3, 12))))
        canvas = Image.new("L", font.getbbox(word)[2:], 0)
        ImageDraw.Draw(canvas).text((0, 0), word, fill=255, font=font)
        ink = np.asarray(canvas) > 127
        rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
        if rows.size:
            masks.append(ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
    return tuple(masks)


@register("text", param="p", units="fraction of pixels covered by text",
          train_range=(0.0, 0.5), default=0.25, limits=(0.0, 0.9), loss="l1")
def text(image, p, rng):
    """Strings of random sizes (TEXT_SIZES px, whatever the image size), colours and positions,
    stamped until a fraction p of the pixels is covered."""
    h, w, c = image.shape
    covered_mask = np.zeros((h, w), bool)
    overlay = np.zeros((h, w, 3), np.float32)
    target = p * h * w
    covered = 0
    high = max(8, min(TEXT_SIZES[1], min(h, w)))  # tiny images: letters no larger than the image
    while covered < target:
        pool = _strings(int(rng.integers(min(TEXT_SIZES[0], high), high + 1)))
        ink = pool[int(rng.integers(len(pool)))]
        y, x = int(rng.integers(1 - ink.shape[0], h)), int(rng.integers(1 - ink.shape[1], w))  # overlaps the image
        y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + ink.shape[0], h), min(x + ink.shape[1], w)
        part = ink[y0 - y:y1 - y, x0 - x:x1 - x]
        region = covered_mask[y0:y1, x0:x1]
        covered += np.count_nonzero(part & ~region)
        region |= part
        overlay[y0:y1, x0:x1][part] = rng.integers(0, 256, size=3) / 255.0
    if c != 3:
        overlay = np.repeat(overlay.mean(axis=2, keepdims=True), c, axis=2)
    return np.where(covered_mask[..., None], overlay, image).astype(np.float32), _ones_mask(image)


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected an image of shape (H, W) or (H, W, C), got {image.shape}")
    if image.dtype != np.float32:
        raise ValueError(f"expected float32 in [0, 1], got {image.dtype}; use n2n.io.to_float first")
    return image


def corrupt(image: np.ndarray, noise: str, param: float, rng: np.random.Generator,
            return_mask: bool = False):
    """Corrupt `image` (float32, (H, W) or (H, W, C), [0, 1]) with `noise` at `param`.

    Returns the noisy float32 image, same shape, unclipped; with `return_mask`,
    also the (H, W, 1) float32 mask of pixels that survived (Bernoulli).
    """
    model = get_noise(noise)
    lo, hi = model.limits
    if not lo <= param <= hi:
        raise ValueError(f"{noise} {model.param}={param} is outside [{lo}, {hi}] ({model.units})")
    was_2d = np.ndim(image) == 2
    noisy, mask = model.apply(_check_image(image), param, rng)
    noisy = noisy[..., 0] if was_2d else noisy
    return (noisy, mask) if return_mask else noisy


def training_pair(clean: np.ndarray, noise: str, rng: np.random.Generator,
                  param_range: tuple[float, float] | None = None, clean_target: bool = False):
    """One training example, as the paper draws it.

    Source and target are corrupted independently, each with its own parameter
    drawn uniformly from `param_range` (default: the noise model's training range).
    Returns (noisy_source, noisy_target, mask), (H, W, C) float32 and (H, W, 1);
    with `clean_target` the target is `clean` itself (Noise2Clean) and the mask all ones.
    """
    model = get_noise(noise)
    lo, hi = param_range or model.train_range
    noisy_source, _ = model.apply(clean, rng.uniform(lo, hi), rng)
    if clean_target:
        return noisy_source, clean, _ones_mask(clean)
    noisy_target, mask = model.apply(clean, rng.uniform(lo, hi), rng)
    return noisy_source, noisy_target, mask
