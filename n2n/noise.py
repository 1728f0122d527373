"""Corruption models of Noise2Noise (Lehtinen et al., 2018), in the paper's units.

Every model maps a clean float32 image of shape (H, W, C) in [0, 1] to a noisy
float32 image of the same shape (not clipped: training noise is unclipped, as in
the paper) and a mask of shape (H, W, 1) that is 1 where the pixel carries
information about the clean image (only Bernoulli noise drops pixels).
Randomness always comes from a `numpy.random.Generator` passed in.
"""
from __future__ import annotations

import functools
import math
import string
import zlib
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

Corruption = Callable[[np.ndarray, float, np.random.Generator], "tuple[np.ndarray, np.ndarray]"]


@dataclass(frozen=True)
class NoiseModel:
    """A corruption model and what the UI, CLI and training need to know of it."""

    name: str
    param: str  # the parameter's symbol
    units: str  # what the parameter means, for labels
    noise_range: tuple[float, float]  # training draws the parameter uniformly from this
    default: float  # the test setting
    limits: tuple[float, float]  # what a user may choose
    loss: str  # the loss whose optimum is the clean image for this noise
    apply: Corruption
    same_param: bool = False  # a training pair shares one parameter (two shots of one camera at one ISO)


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
          noise_range=(0.0, 50.0), default=25.0, limits=(0.0, 100.0), loss="l2")
def gaussian(image, sigma, rng):
    """Additive white Gaussian noise, σ on the 0–255 scale."""
    noise = rng.standard_normal(image.shape, dtype=np.float32)
    noise *= np.float32(sigma / 255.0)
    return image + noise, _ones_mask(image)


@register("poisson", param="λ", units="photons at full intensity (higher λ, less noise)",
          noise_range=(5.0, 50.0), default=30.0, limits=(1.0, 100.0), loss="l2")
def poisson(image, lam, rng):
    """Shot noise: `poisson(λ·x) / λ`, computed in float (no uint8 wrap-around)."""
    lam = max(float(lam), 1e-3)
    counts = rng.poisson(np.clip(image, 0.0, None) * lam)
    return (counts / lam).astype(np.float32), _ones_mask(image)


@register("bernoulli", param="p", units="fraction of pixels dropped",
          noise_range=(0.0, 0.95), default=0.5, limits=(0.0, 0.99), loss="masked_l2")
def bernoulli(image, p, rng):
    """Multiplicative Bernoulli noise: each pixel (all channels) set to 0 with probability p."""
    mask = (rng.random(image.shape[:2] + (1,), dtype=np.float32) >= p).astype(np.float32)
    return image * mask, mask


@register("impulse", param="p", units="fraction of pixels replaced by random values",
          noise_range=(0.0, 0.95), default=0.5, limits=(0.0, 0.99), loss="l0")
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
          noise_range=(0.0, 0.5), default=0.25, limits=(0.0, 0.9), loss="l1")
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


# Camera noise: a simulated in-camera pipeline (Brooks et al. 2019, "Unprocessing images for learned
# raw denoising"; Guo et al. 2019, CBDNet's noise model). A clean sRGB image is taken back to the
# sensor (tone curve, gamma, colour matrix and white balance inverted, Bayer mosaic), given shot and
# read noise there (variance a·x + b), then rendered again (demosaicing, white balance, colour matrix,
# gamma, tone curve, luma noise reduction, chroma smoothing, sharpening, JPEG): the noise that comes out
# depends on brightness and colour and is correlated over neighbouring pixels, as in real photos. In-camera
# noise reduction takes out the finest grain and leaves the coarser one: DSLR JPEGs keep noise correlated
# 2 and 4 px apart (0.37 and 0.15 on ../shared/data/real/nam25, where demosaicing alone gives 0.18 and 0.05).

# The camera's parameter is its ISO in stops above ISO 100 (ISO = 100 · 2^stops): one slider from a DSLR in
# daylight (0) to a phone in a dim room (8, ISO 25600), in the 0-100 range of the other noises' parameters.
STOPS_RANGE = (0.0, 8.0)  # training: uniform in stops, so log-uniform in ISO


def stops_to_iso(stops: float) -> float:
    """The ISO of `stops` above ISO 100."""
    return 100.0 * 2.0 ** stops


# Raw shot-noise variance per unit signal: 1e-4 at ISO 100 to 1.2e-2 at ISO 12800 (the range of Brooks et al.)
SHOT_AT_100, SHOT_SLOPE = 1e-4, math.log(120) / math.log(128)


def shot_gain(iso: float) -> float:
    """Raw shot-noise gain a (variance a·x at signal x in [0, 1]) at `iso`, log-linear in ISO."""
    return SHOT_AT_100 * (iso / 100.0) ** SHOT_SLOPE


def camera_sigma(stops: float) -> float:
    """About the RMS noise (0–255 scale) that camera noise at `stops` leaves in a photo: 2.5·√(ISO/100)
    (the median over Kodak24 is 5.4, 9.4, 18.0 and 35.7 at ISO 400, 1600, 6400 and 25600: stops 2, 4, 6, 8)."""
    return 2.5 * 2.0 ** (stops / 2)


def camera_stops(sigma: float) -> float:
    """The stops whose camera noise is about `sigma` (0–255 scale), the inverse of `camera_sigma`, within the limits."""
    return float(min(max(2 * math.log2(max(sigma, 1e-3) / 2.5), 0.0), 9.0))


@dataclass(frozen=True)
class Camera:
    """What one simulated camera does between its sensor and its JPEG (drawn by `draw_camera`)."""

    cam_to_rgb: np.ndarray  # (3, 3) colour matrix, rows summing to 1
    wb: np.ndarray  # (3,) white-balance gains (R, G, B), G = 1
    brightness: float  # the exposure the image was rendered at (raw = linear / brightness)
    read_offset: float  # log read variance beyond the shot-noise trend (Brooks et al.: N(0, 0.26))
    shot_jitter: float  # log factor on the ISO's shot gain (sensors differ)
    phase: tuple[int, int]  # where the RGGB pattern starts (rows, columns)
    edge_aware: bool  # demosaicing: OpenCV's edge-aware method, else bilinear
    chroma_blur: float  # σ in pixels of the in-camera chroma smoothing (0: none)
    denoise: float  # luma noise reduction: the share of detail finer than `denoise_px` taken out (0: none)
    denoise_px: float  # its scale, σ in pixels
    sharpen: float  # unsharp-mask amount (0: none)
    quality: int  # JPEG quality, 101: no JPEG


def draw_camera(rng: np.random.Generator) -> Camera:
    """A random camera over the ranges of Brooks et al. (gains, read noise) and common in-camera settings."""
    off = rng.uniform(-0.6, 0.0, size=(3, 3)) * (1 - np.eye(3))
    cam_to_rgb = off + np.diag(1.0 - off.sum(axis=1))
    return Camera(cam_to_rgb=cam_to_rgb.astype(np.float32),
                  wb=np.array([rng.uniform(1.9, 2.4), 1.0, rng.uniform(1.5, 1.9)], np.float32),
                  brightness=float(np.clip(rng.normal(0.8, 0.1), 0.5, 1.0)),
                  read_offset=float(rng.normal(0.0, 0.26)), shot_jitter=float(rng.normal(0.0, 0.2)),
                  phase=(int(rng.integers(2)), int(rng.integers(2))), edge_aware=bool(rng.integers(2)),
                  chroma_blur=float(rng.choice([0.0, rng.uniform(0.5, 2.0)])),
                  denoise=float(rng.choice([0.0, rng.uniform(0.3, 0.8)])), denoise_px=float(rng.uniform(0.8, 2.0)),
                  sharpen=float(rng.choice([0.0, rng.uniform(0.2, 1.0)])),
                  quality=int(rng.choice([101, int(rng.integers(75, 99))], p=[0.2, 0.8])))


def camera_of(image: np.ndarray) -> Camera:
    """The camera that photographs `image`: drawn from a hash of its pixels, so two corruptions of
    one image share the camera (a valid Noise2Noise pair) and different images get different ones."""
    key = zlib.crc32(np.ascontiguousarray(image[::3, ::3]).tobytes()) ^ zlib.crc32(repr(image.shape).encode())
    return draw_camera(np.random.default_rng(key))


def _unprocess(srgb: np.ndarray, cam: Camera) -> np.ndarray:
    """sRGB (H, W, 3) in [0, 1] -> linear camera RGB before white balance (H, W, 3)."""
    x = np.clip(srgb, 0.0, 1.0)
    x = 0.5 - np.sin(np.arcsin(1.0 - 2.0 * x) / 3.0)  # inverse of the smoothstep tone curve
    x = np.maximum(x, 1e-8) ** 2.2
    x = x @ np.linalg.inv(cam.cam_to_rgb.astype(np.float64)).T.astype(np.float32)
    return np.clip(x * (cam.brightness / cam.wb), 0.0, 1.0).astype(np.float32)


def _develop(raw: np.ndarray, cam: Camera) -> np.ndarray:
    """Raw RGGB mosaic (H, W), linear, may hold values below 0 -> sRGB float32 (H, W, 3), before JPEG:
    demosaicing, white balance, colour matrix, gamma, tone curve, luma noise reduction, chroma smoothing,
    sharpening. Every step after the tone curve is linear, so that the noise (a difference of renderings)
    goes through it as it would alone."""
    lo, span = -0.25, 1.5  # an offset and scale that keep noise below black and above white for uint16
    raw16 = np.round(np.clip((raw - lo) / span, 0.0, 1.0) * 65535).astype(np.uint16)
    demosaic = cv2.COLOR_BayerBG2RGB_EA if cam.edge_aware else cv2.COLOR_BayerBG2RGB  # OpenCV's name for RGGB
    x = cv2.cvtColor(raw16, demosaic).astype(np.float32) * np.float32(span / 65535) + np.float32(lo)
    x = np.clip(x * (cam.wb / cam.brightness) @ cam.cam_to_rgb.T, 0.0, 1.0) ** np.float32(1 / 2.2)
    x = 3 * x ** 2 - 2 * x ** 3
    if cam.chroma_blur > 0 or cam.denoise > 0:
        ycc = cv2.cvtColor(x, cv2.COLOR_RGB2YCrCb)
        if cam.denoise > 0:  # a share of the luma finer than denoise_px removed
            y = ycc[..., 0]
            ycc[..., 0] = y - np.float32(cam.denoise) * (y - cv2.GaussianBlur(y, (0, 0), cam.denoise_px))
        if cam.chroma_blur > 0:
            ycc[..., 1:] = cv2.GaussianBlur(ycc[..., 1:], (0, 0), cam.chroma_blur)
        x = cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)
    if cam.sharpen > 0:
        x = x + np.float32(cam.sharpen) * (x - cv2.GaussianBlur(x, (0, 0), 1.0))
    return x


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """float (H, W, 3) in [0, 1] -> uint8, through a JPEG at `quality` (101: none)."""
    out = np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
    if quality > 100:
        return out
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(out[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]


@register("camera", param="stops", units="ISO in stops above ISO 100 (4: ISO 1600, 8: ISO 25600)",
          noise_range=STOPS_RANGE, default=4.0,
          limits=(0.0, 9.0), loss="l2", same_param=True)
def camera(image, stops, rng):
    """Real-camera-like noise at ISO 100 · 2^stops from the camera `camera_of(image)` (see `photograph`)."""
    return photograph(image, stops_to_iso(stops), rng, camera_of(image)), _ones_mask(image)


def photograph(image: np.ndarray, iso: float, rng: np.random.Generator, cam: Camera) -> np.ndarray:
    """`image` (H, W, C) float32 in [0, 1] as `cam` photographs it at `iso` (100 to 51200): shot and read
    noise drawn from `rng` in the raw Bayer mosaic, taken through the camera's rendering (the noisy rendering minus
    the clean one, added to the image, so the picture itself is not re-rendered), then JPEG.
    Returns float32 (H, W, C), quantised to 8 bits, in [0, 1] (an alpha channel passes through)."""
    h, w, c = image.shape
    rgb = np.repeat(image, 3, axis=2) if c == 1 else image[..., :3]
    dy, dx = cam.phase  # shift the picture against the RGGB pattern; pad tiny images for the demosaicing
    pad = ((dy, max(0, 8 - h - dy) + (h + dy) % 2), (dx, max(0, 8 - w - dx) + (w + dx) % 2), (0, 0))
    lin = _unprocess(np.pad(rgb, pad, mode="symmetric"), cam)
    raw = np.empty(lin.shape[:2], np.float32)
    raw[0::2, 0::2], raw[0::2, 1::2] = lin[0::2, 0::2, 0], lin[0::2, 1::2, 1]
    raw[1::2, 0::2], raw[1::2, 1::2] = lin[1::2, 0::2, 1], lin[1::2, 1::2, 2]
    shot = shot_gain(iso) * math.exp(cam.shot_jitter)
    read = math.exp(2.18 * math.log(shot) + 1.20 + cam.read_offset)
    noisy = raw + np.sqrt(shot * raw + read) * rng.standard_normal(raw.shape, dtype=np.float32)
    noise = (_develop(noisy, cam) - _develop(raw, cam))[dy:dy + h, dx:dx + w]
    out = _jpeg(np.clip(rgb, 0.0, 1.0) + noise, cam.quality).astype(np.float32) / 255
    if c == 1:
        return out.mean(axis=2, keepdims=True)
    return np.concatenate([out, image[..., 3:]], axis=2) if c > 3 else out


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
                  noise_range: tuple[float, float] | None = None, clean_target: bool = False):
    """One training example, as the paper draws it.

    Source and target are corrupted independently, each with its own parameter drawn uniformly
    (one for both for `same_param` models) from `noise_range` (default: the noise model's training range).
    Returns (noisy_source, noisy_target, mask), (H, W, C) float32 and (H, W, 1);
    with `clean_target` the target is `clean` itself (Noise2Clean) and the mask all ones.
    """
    model = get_noise(noise)
    lo, hi = noise_range or model.noise_range
    param = rng.uniform(lo, hi)
    noisy_source, _ = model.apply(clean, param, rng)
    if clean_target:
        return noisy_source, clean, _ones_mask(clean)
    noisy_target, mask = model.apply(clean, param if model.same_param else rng.uniform(lo, hi), rng)
    return noisy_source, noisy_target, mask
