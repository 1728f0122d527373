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


@register("text", param="p", units="fraction of pixels covered by text",
          train_range=(0.0, 0.5), default=0.25, limits=(0.0, 0.9), loss="l1")
def text(image, p, rng):
    """Random strings of random sizes, colours and positions until a fraction p is covered."""
    h, w, c = image.shape
    cover = Image.new("L", (w, h), 0)
    colours = Image.new("RGB", (w, h), 0)
    draw_cover, draw_colour = ImageDraw.Draw(cover), ImageDraw.Draw(colours)
    target = p * h * w
    covered = 0
    max_size = max(8, min(h, w) // 4)
    for attempt in range(100_000):
        if covered >= target:
            break
        size = int(rng.integers(min(10, max_size), max_size + 1))
        font = _font(size)
        word = "".join(rng.choice(_LETTERS, size=int(rng.integers(3, 12))))
        xy = (int(rng.integers(-size, w)), int(rng.integers(-size, h)))
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        draw_cover.text(xy, word, fill=255, font=font)
        draw_colour.text(xy, word, fill=colour, font=font)
        if attempt % 4 == 3:
            covered = np.count_nonzero(np.asarray(cover) > 127)
    mask = (np.asarray(cover) > 127)[..., None]
    overlay = np.asarray(colours, np.float32) / 255.0
    if c != 3:
        overlay = np.repeat(overlay.mean(axis=2, keepdims=True), c, axis=2)
    return np.where(mask, overlay, image).astype(np.float32), _ones_mask(image)


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
