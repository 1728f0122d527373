"""Blind noise estimation: how noisy an image is, with no clean reference, and which bundled model fits.

`noise_sigma` is the PCA estimator of Chen, Zhu & Heng (ICCV 2015, "An efficient statistical method
for image noise level estimation"): the eigenvalues of the covariance of small patches that the
image's structure leaves alone are the noise variance; the largest ones (structure) are dropped
until the remaining ones' mean equals their median. On Kodak24 it is several times more accurate
than the wavelet estimator of `skimage.restoration.estimate_sigma` at low σ, where only the
flattest patches are read (benchmarks/results/estimate.md). `estimate_noise` adds a guess of
which noise it is: impulses (many isolated outliers), camera noise (correlated between neighbouring
pixels by demosaicing, in-camera processing and JPEG: it reads stronger two pixels apart than between
neighbours, `correlation_ratio`; its σ is the local variance that a camera-noise denoiser takes out,
`removed_sigma`, or the PCA σ at stride 2 without one), signal-dependent (Poisson-like: the variance
grows with brightness) or Gaussian; the guess is rougher than σ (its hit rate is in the same file).
`blind_score` ranks denoisers on one noisy image without its clean one (Noise2Self's masked loss), and
`sure_score` on camera noise, whose neighbours carry a masked pixel's noise (Stein's unbiased risk estimate
with noise shaped like the photo's): "Adapt to this photo" says which of the pretrained and the adapted
result scores better (its download is the adapted one).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
from scipy.ndimage import median_filter
from threadpoolctl import threadpool_limits

from .io import centre_crop, to_float
from .noise import camera_stops

PATCH = 7  # patch side of the PCA estimator
WEAK_BELOW = 14.0  # σ under which the flattest patches alone are read (measured on Kodak24)
MAX_SIDE = 512  # the estimate reads a centre crop of at most this side: cheap on a 16 MP upload
IMPULSE_FRACTION = 0.04  # more isolated outliers than this: impulse noise (textured clean photos reach 0.02)
POISSON_DEPENDENCE = 0.45  # more of the variance growing with brightness than this: Poisson (σ > 10 only)
CAMERA_RATIO = 1.5  # noise reading this much stronger two pixels apart than between neighbours: camera noise
Denoiser = Callable[[np.ndarray], np.ndarray]  # float32 (H, W, C) in [0, 1] -> the same shape
WINDOW = 16  # side of the windows in which `removed_sigma` compares the noisy and the denoised image


@dataclass
class NoiseEstimate:
    """What `estimate_noise` found: `noise` a noise name of n2n.noise ("gaussian", "poisson",
    "impulse", "camera"), `sigma` the Gaussian-equivalent σ on the 0–255 scale, `param` the estimate in the
    noise's own units (σ, λ or p), `model` the bundled model that fits, `text` one sentence."""

    noise: str
    sigma: float
    param: float
    model: str
    text: str
    stride: int | None = None  # the pixel-shuffle stride to denoise at; None: the model's own


def pca_variance(channel: np.ndarray, patch: int = PATCH, weak: float = 1.0, max_patches: int = 40_000) -> float:
    """Noise variance (in the units of `channel`², float (H, W)) from the eigenvalues of the patch
    covariance: drop the largest until the mean of the rest equals their median (Chen et al. 2015).

    weak: keep only this fraction of the patches, the flattest (least gradient): texture then
    inflates the estimate less at low noise, but the selection biases it low at high noise.
    """
    rows, cols = channel.shape[0] - patch + 1, channel.shape[1] - patch + 1  # the patches that fit, down and across
    if min(rows, cols) < 1 or rows * cols < patch * patch * 4:
        raise ValueError(f"the image is too small to estimate its noise: at least {2 * patch + 1} pixels a side")
    windows = np.lib.stride_tricks.sliding_window_view(channel, (patch, patch))  # (H', W', p, p)
    keep = np.arange(windows.shape[0] * windows.shape[1])  # the patches read, by their flat index
    if weak < 1.0:
        gradient = np.abs(np.diff(channel, axis=0))[:, :-1] + np.abs(np.diff(channel, axis=1))[:-1]  # (H-1, W-1)
        energy = np.lib.stride_tricks.sliding_window_view(gradient, (patch - 1, patch - 1)).mean(axis=(2, 3)).ravel()
        keep = keep[energy <= np.quantile(energy, weak)]
    if len(keep) > max_patches:
        keep = keep[np.random.default_rng(0).choice(len(keep), max_patches, replace=False)]
    patches = windows[keep // windows.shape[1], keep % windows.shape[1]].reshape(len(keep), patch * patch)
    with threadpool_limits(1, user_api="blas"):  # a 49 × 49 covariance: OpenBLAS's threads cost 100× on a busy CPU
        eig = np.maximum(np.sort(np.linalg.eigvalsh(np.cov(patches.astype(np.float64), rowvar=False))), 0.0)
    for end in range(len(eig), 0, -1):  # keep the `end` smallest eigenvalues (eig ascends)
        tail = eig[:end]
        if tail.mean() <= np.median(tail) * 1.0001:
            return float(tail.mean())
    return float(eig[0])


def noise_sigma(image: np.ndarray, stride: int = 1) -> float:
    """Gaussian σ (0–255 scale) of the noise in `image` ((H, W) or (H, W, C), any dtype), averaged
    over channels; a centre crop of at most MAX_SIDE² pixels is read. Below σ ≈ 14 the estimate is
    redone on the flattest 30% of patches (texture no longer dominates there). `stride` > 1: read on
    the sub-image of every stride-th pixel (of a crop `stride` times larger), where noise correlated
    between neighbours (camera noise) is seen whole; the flat-patch pass is skipped there (texture
    it would drop is what the sub-image holds at that σ) ."""
    colour = to_float(image)
    colour = colour if colour.ndim == 3 else colour[..., None]
    colour = centre_crop(colour, MAX_SIDE * stride)[::stride, ::stride, :3]
    sigma = 255.0 * np.sqrt(np.mean([pca_variance(colour[..., c]) for c in range(colour.shape[2])]))
    if sigma < WEAK_BELOW and stride == 1:
        sigma = 255.0 * np.sqrt(np.mean([pca_variance(colour[..., c], weak=0.3) for c in range(colour.shape[2])]))
    return float(sigma)


def correlation_ratio(image: np.ndarray) -> float:
    """How much stronger the noise of `image` ((H, W, C), any dtype) reads two pixels apart than
    between neighbours: the PCA σ of the flattest 30% of patches on the stride-2 sub-image over the
    same on the image (centre crops of MAX_SIDE² pixels each). About 1 for noise independent from pixel
    to pixel (up to 1.45 on Kodak24's most textured photos at σ = 5), 2 to 3.6 for the DSLR photos of
    ../shared/data/real/nam25 (demosaiced, in-camera processed, JPEG), 1.6 on a smartphone's."""
    colour = to_float(image)
    colour = colour if colour.ndim == 3 else colour[..., None]
    near = centre_crop(colour, MAX_SIDE)[..., :3]
    apart = centre_crop(colour, 2 * MAX_SIDE)[::2, ::2, :3]
    if min(apart.shape[:2]) < 4 * PATCH:
        return 1.0  # too small to tell
    var = [np.mean([pca_variance(x[..., c], weak=0.3) for c in range(x.shape[2])]) for x in (near, apart)]
    return float(np.sqrt(var[1] / max(var[0], 1e-12)))


def removed_sigma(image: np.ndarray, denoiser: Denoiser, window: int = WINDOW) -> float:
    """σ (0–255 scale) of the noise in `image` (float (H, W, C) in [0, 1]) as the variance that `denoiser`
    (the `camera` model) takes out: in every `window`² window and channel, the variance of the image about
    its local mean minus that of the denoised image (what the denoiser keeps is the photo), averaged.

    Noise correlated over a few pixels (camera noise) looks like texture to the PCA estimate, which reads
    only what is left at the smallest scale; a denoiser trained on such noise tells the two apart. On
    ../shared/data/real/nam25 (512² DSLR crops) it reads 0.74 to 1.25 times the true RMS, where the PCA
    estimate at stride 2 reads 0.44 to 1.00; about 10 % low where the denoiser leaves some noise in
    (benchmarks/results/estimate.md). One denoiser call on `image`."""
    noisy = np.asarray(image, np.float32)
    denoised = np.asarray(denoiser(noisy), np.float32)

    def local_variance(x: np.ndarray) -> np.ndarray:
        mean = cv2.blur(x, (window, window))
        return cv2.blur(x * x, (window, window)) - mean * mean

    removed = float(np.mean(local_variance(noisy) - local_variance(denoised))) * window ** 2 / (window ** 2 - 1)
    return 255.0 * float(np.sqrt(max(removed, 0.0)))


def impulse_fraction(image: np.ndarray) -> float:
    """Fraction of pixels (float (H, W, C) in [0, 1]) that stand out from their 3×3 median by over
    0.25 and over 6 robust σ of all such differences, in some channel: isolated outliers, which
    Gaussian or Poisson noise almost never makes."""
    residual = np.abs(image - median_filter(image, size=(3, 3, 1)))
    robust_sigma = 1.4826 * float(np.median(residual))
    return float((residual > max(0.25, 6 * robust_sigma)).any(axis=2).mean())


def signal_dependence(image: np.ndarray, block: int = 16) -> float:
    """How much of the noise variance grows with brightness, in [about 0, 1] (can stray outside):
    fit var = a + b·mean over the smoother half of `block`² blocks of float (H, W, C) `image`, and
    return b·m / (a + b·m) at the mean brightness m. About 0 for Gaussian noise, 1 for Poisson."""
    grey = image.mean(axis=2)
    h, w = (grey.shape[0] // block) * block, (grey.shape[1] // block) * block
    blocks = grey[:h, :w].reshape(h // block, block, w // block, block).transpose(0, 2, 1, 3).reshape(-1, block * block)
    diffs = np.diff(blocks.reshape(-1, block, block), axis=2).reshape(len(blocks), -1)  # var of a difference: 2σ²
    var = (1.4826 * np.median(np.abs(diffs - np.median(diffs, axis=1, keepdims=True)), axis=1)) ** 2 / 2
    mean = blocks.mean(axis=1)
    keep = (var <= np.quantile(var, 0.5)) & (mean > 0.05) & (mean < 0.95)  # smooth, unclipped
    if keep.sum() < 8:
        return 0.0
    a, b = np.linalg.lstsq(np.stack([np.ones(keep.sum()), mean[keep]], 1), var[keep], rcond=None)[0]
    m = float(mean[keep].mean())
    return float(b * m / max(a + b * m, 1e-12))


def estimate_noise(image: np.ndarray, models: list[str] | None = None,
                   denoiser: Denoiser | None = None) -> NoiseEstimate:
    """The noise in `image` ((H, W, C) any dtype, alpha ignored), guessed blind.

    models: the bundled model names to suggest from (default: gaussian, poisson, impulse, camera).
    denoiser: a denoiser of camera noise (float32 (H, W, C) in [0, 1] -> the same), called once on the
        centre crop when camera noise is found: its σ is then `removed_sigma`, else the PCA σ at stride 2.
    """
    models = ["gaussian", "poisson", "impulse", "camera"] if models is None else models
    full = to_float(image)
    full = full if full.ndim == 3 else full[..., None]
    full = full[..., :3] if full.shape[2] in (3, 4) else full[..., :1]
    colour = centre_crop(full, MAX_SIDE)
    # correlation first: sharpened camera noise without JPEG can leave as many outliers as impulse noise, but
    # impulses are pixel-independent (a ratio of at most 1.39 on Kodak24 at 5 % to 50 % replaced)
    spread = correlation_ratio(full)
    stride = None
    if spread > CAMERA_RATIO:  # its σ read where it is seen whole; the stride-1 PCA σ reads a fraction of it
        noise, sigma = "camera", (removed_sigma(colour, denoiser) if denoiser else noise_sigma(full, stride=2))
        param = round(camera_stops(sigma), 1)
        text = (f"looks like camera noise, correlated between neighbouring pixels (it reads {spread:.1f}× "
                f"stronger two pixels apart), σ ≈ {sigma:.0f}" if sigma >= 1 else "looks clean (σ < 1)")
    elif (impulses := impulse_fraction(colour)) > IMPULSE_FRACTION:
        noise, sigma = "impulse", noise_sigma(colour)
        param = round(min(0.95, impulses / 0.65), 2)  # about 2/3 of replaced pixels stand out
        text = f"looks like impulse noise (about {param:.0%} of pixels replaced)"
    elif (sigma := noise_sigma(colour)) > 10 and signal_dependence(colour) > POISSON_DEPENDENCE:
        mean = float(colour.mean())
        noise, param = "poisson", round(float(np.clip(mean / (sigma / 255) ** 2, 1, 100)), 1)  # var = x/λ
        text = f"looks like shot (Poisson) noise, λ ≈ {param:g} (σ ≈ {sigma:.0f} at mean brightness)"
    else:
        noise, param = "gaussian", round(sigma, 1)
        text = f"looks like Gaussian noise, σ ≈ {sigma:.0f}" if sigma >= 1 else "looks clean (σ < 1)"
    fallback = "gaussian" if "gaussian" in models else (models[0] if models else "")
    model = noise if noise in models else fallback
    if noise == "camera" and model != "camera":
        stride = 2  # a model trained on pixel-independent noise reads camera noise at stride 2 (pixel-shuffle)
    return NoiseEstimate(noise, round(sigma, 1), param, model, text, stride)


# --------------------------------------------------------------------------- scoring a denoiser blind

BLIND_OFFSETS = ((0, 0), (2, 2), (0, 2), (2, 0))  # the pixels masked in each 4 × 4 cell, one pass each
BLIND_SIDE = 384  # Adapt's comparison reads this centre crop: four passes cost about two of a 512² image
SURE_STEP = 0.05  # `sure_score`'s probe step ε, a fraction of the noise: the network is about linear over it


def blind_score(noisy: np.ndarray, denoiser: Denoiser, max_side: int = MAX_SIDE) -> float:
    """How far `denoiser` leaves `noisy` ((H, W, C), any dtype) from its clean image, with no clean
    image: Noise2Self's masked loss (Batson & Royer 2019). Lower is better; compare denoisers, never
    noises or images.

    In each pass, one pixel in every 4 × 4 cell is replaced by the mean of its four neighbours and
    the denoiser's output there, which never saw that pixel's noise, is compared with the noisy
    pixel (squared error, [0, 1] units). Where the noise is independent from pixel to pixel and
    zero-mean, its expectation is the denoiser's mean squared error on such masked pixels plus the
    noise variance, the same for every denoiser. Four passes (a quarter of the pixels), on a centre
    crop of at most `max_side`² pixels: four denoiser calls on it.

    Why masking and not Neighbor2Neighbor's own loss (g1(y) → g2(y)): "Adapt to this photo" trains
    on that very loss on this very photo, so it favoured the adapted model where it had lost 0.1 to
    0.7 dB: it ranked 14 of 24 cases right, the masked score 20 (11 of 12 as it is here, 9 of 12 with a
    two-pass prototype; wrong only within 0.2 dB; benchmarks/results/learn-blind-choice.md).
    """
    colour = to_float(noisy)
    colour = centre_crop(colour if colour.ndim == 3 else colour[..., None], max_side)
    h, w = colour.shape[:2]
    if min(h, w) < 4:
        raise ValueError(f"the image is too small to score blind: at least 4 pixels a side, got {w}×{h}")
    padded = np.pad(colour, ((1, 1), (1, 1), (0, 0)), mode="reflect")
    around = (padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]) / 4
    errors = []
    for row, col in BLIND_OFFSETS:
        cells = (slice(row, h, 4), slice(col, w, 4))
        masked = colour.copy()
        masked[cells] = around[cells]
        errors.append((np.asarray(denoiser(masked), np.float64)[cells] - colour[cells]).ravel() ** 2)
    return float(np.mean(np.concatenate(errors)))


def noise_like(noisy: np.ndarray, sigma: float, patch: int = 16, seed: int = 0) -> np.ndarray:
    """Gaussian noise shaped like the noise of `noisy` ((H, W, C) float in [0, 1]), without its picture: the
    power spectrum of its flattest fifth of `patch`² patches (their means taken out: there the noise is about
    all there is), in each of the colour axes along which their pixels are uncorrelated, so that how many
    pixels and which colours the noise is correlated over stays. RMS `sigma` (0–255 scale); float64, same
    shape."""
    h, w, c = noisy.shape
    rows, cols = h // patch, w // patch
    if rows * cols < 5:
        raise ValueError(f"the image is too small to shape noise like its own: at least {patch * 3} pixels a side")
    tiles = noisy[:rows * patch, :cols * patch].reshape(rows, patch, cols, patch, c).swapaxes(1, 2)
    tiles = tiles.reshape(-1, patch, patch, c).astype(np.float64)
    tiles -= tiles.mean(axis=(1, 2), keepdims=True)
    flat = tiles[np.argsort(tiles.var(axis=(1, 2, 3)))[: len(tiles) // 5]]
    _, axes = np.linalg.eigh(np.cov(flat.reshape(-1, c), rowvar=False).reshape(c, c))  # uncorrelated colours
    power = (np.abs(np.fft.fft2(flat @ axes, axes=(1, 2))) ** 2).mean(axis=0)  # (patch, patch, c)
    power[0, 0] = (power[0, 1] + power[1, 0] + power[0, -1] + power[-1, 0]) / 4  # the means taken out
    power = np.fft.ifftshift(cv2.resize(np.fft.fftshift(power, axes=(0, 1)).astype(np.float32), (w, h),
                                        interpolation=cv2.INTER_LINEAR).reshape(h, w, c), axes=(0, 1))
    white = np.fft.fft2(np.random.default_rng(seed).standard_normal((h, w, c)), axes=(0, 1))
    shaped = np.real(np.fft.ifft2(white * np.sqrt(power), axes=(0, 1))) @ axes.T
    return shaped * (sigma / 255.0 / max(float(np.sqrt(np.mean(shaped ** 2))), 1e-12))


def sure_score(noisy: np.ndarray, denoiser: Denoiser, sigma: float, max_side: int = BLIND_SIDE) -> float:
    """How far `denoiser` leaves `noisy` ((H, W, C), any dtype) from a second, independent shot of the same
    scene, with no clean image, for noise correlated between neighbouring pixels (camera noise), where the
    masked `blind_score` favours results that keep the noise. Lower is better; compare denoisers only.

    Stein's unbiased risk estimate for Gaussian noise of covariance Σ (Eldar 2009), its divergence read
    with one random probe (Ramani et al. 2008): ||f(y) − y||²/N + 2·b·(f(y + εb) − f(y))/(ε N), where the
    probe b has the noise's covariance: `noise_like(noisy)` at the noise's RMS `sigma` (0–255 scale;
    `estimate_noise`'s). Squared error in [0, 1] units, on a centre crop of at most `max_side`² pixels: two
    denoiser calls on it. The denoiser must resolve that step (ε·σ, about 0.001 in [0, 1] at σ = 5): run a network
    in fp32 (`denoise(..., precision="fp32")`), since bf16's 8-bit mantissa rounds the probe away and the
    divergence with it (on nam25's 01 it then ranked `gaussian` below the noisy photo). On the 26 real photos
    of ../shared/data/real it named the better of the pretrained and the adapted `camera` on 24 (the masked
    score on 15), and ranked 50 of 50 pairs of five denoisers on five of them as their PSNR does (masking: 8;
    benchmarks/results/adapt-real.md, blind-real.md)."""
    y = to_float(noisy)
    y = centre_crop(y if y.ndim == 3 else y[..., None], max_side).astype(np.float64)
    probe = noise_like(y, sigma)
    result = np.asarray(denoiser(y.astype(np.float32)), np.float64)
    moved = np.asarray(denoiser((y + SURE_STEP * probe).astype(np.float32)), np.float64) - result
    return float(np.mean((result - y) ** 2) + 2 * np.mean(probe * moved) / SURE_STEP)


def blind_psnr(noisy: np.ndarray, denoiser: Denoiser, max_side: int = BLIND_SIDE,
               correlated_sigma: float = 0.0) -> float:
    """A blind score as a PSNR against the noisy pixels (dB, higher is better): how "Adapt to this photo"
    ranks the pretrained and the adapted model, in the app and in benchmarks/adapt.py. `blind_score`
    (masking); with `correlated_sigma` (noise correlated between pixels, of that RMS), `sure_score`."""
    score = (sure_score(noisy, denoiser, correlated_sigma, max_side) if correlated_sigma > 0
             else blind_score(noisy, denoiser, max_side))
    return float(10 * np.log10(1.0 / max(score, 1e-12)))


def sure_stride(noisy: np.ndarray, denoiser_at: Callable[[np.ndarray, int], np.ndarray], sigma: float,
                strides: tuple[int, ...] = (1, 2), max_side: int = BLIND_SIDE) -> int:
    """The pixel-shuffle stride, of `strides`, at which `denoiser_at(x, stride)` (float32 (H, W, C) in [0, 1] -> the
    same; a network run in fp32, as `sure_score` needs) leaves `noisy` ((H, W, C), any dtype; camera noise of RMS
    `sigma`, 0–255 scale) closest to a second shot: `sure_score` at each, on the same centre crop; the first of
    equals. With `camera` on the real photos of ../shared/data/real it chose the better stride on 25 of 26 (the
    26th: 0.18 dB apart), stride 2 on the one smartphone block (+0.44 dB) and 1 on the 25 DSLR crops, where stride 2
    lost 0.90 dB on average (`python -m benchmarks.stride`, benchmarks/results/stride.md)."""
    if not strides:
        raise ValueError("sure_stride needs at least one stride to choose from")
    scores = [sure_score(noisy, lambda x, s=s: denoiser_at(x, s), sigma, max_side) for s in strides]
    return strides[int(np.argmin(scores))]
