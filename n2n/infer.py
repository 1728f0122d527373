"""denoise(): any image size, any bit depth, in overlapping tiles, under inference mode."""
from __future__ import annotations

import copy
import functools
import os
from typing import Callable

import cv2
import numpy as np
import torch
from torch import nn

from .io import from_float, split_alpha, to_float, with_alpha

PRECISIONS = ("auto", "fp32", "bf16")
# Default tile side: a 768×512 photo (Kodak) goes through whole, with no overlap to compute twice;
# about 400 MB of activations per tile in fp32 (a 24-megapixel photo peaks near 1.2 GB RSS).
TILE = 768


@functools.cache
def native_bf16() -> bool:
    """True on CPUs that compute bf16 natively (AVX512-BF16 or AMX): there bf16 runs about twice
    as fast as fp32; on AVX2-only CPUs it is emulated and about 7× slower."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(precision: str = "auto", device: str | torch.device = "cpu") -> str:
    """"fp32" or "bf16" for `device`: "auto" picks bf16 on CUDA and on CPUs with native bf16,
    fp32 elsewhere, unless the environment variable N2N_PRECISION (fp32 or bf16) says which (to run
    the tests as a machine of the other kind would); "fp32" and "bf16" are returned as given."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    forced = os.environ.get("N2N_PRECISION", "")
    if forced:
        if forced not in PRECISIONS[1:]:
            raise ValueError(f"N2N_PRECISION must be fp32 or bf16 (or unset for auto), got {forced!r}")
        return forced
    device = torch.device(device)
    return "bf16" if device.type == "cuda" or (device.type == "cpu" and native_bf16()) else "fp32"


def _window(length: int, overlap: int, at_start: bool, at_end: bool) -> np.ndarray:
    """1-D blending weights of one tile: 1 inside, falling to ~0 over the middle half of
    each overlap with a neighbour, so the tile's outer `overlap/4` pixels barely count."""
    w = np.ones(length, np.float32)
    if overlap <= 0:
        return w
    i = np.arange(length, dtype=np.float32)
    ramp = np.clip((i + 0.5 - overlap / 4) / (overlap / 2), 1e-4, 1.0)
    if not at_start:
        w = np.minimum(w, ramp)
    if not at_end:
        w = np.minimum(w, ramp[::-1])
    return w


def _spans(size: int, tile: int, overlap: int, multiple: int) -> list[tuple[int, int]]:
    """(start, end) of the tiles along one axis, of any length up to `tile` (see `_grid_spans`):
    the tiling that computes the fewest pixels, padding included; fewer tiles on a tie.
    (768 px with tile 512 and overlap 64: two tiles of 416, not two of 512, a quarter less work.)"""
    if size <= tile:
        return [(0, size)]
    best = None
    for t in range(tile, max(2 * multiple, -(-2 * overlap // multiple) * multiple) - 1, -multiple):
        spans = _grid_spans(size, t, overlap, multiple)
        cost = sum(-(-(end - start) // multiple) * multiple for start, end in spans)
        if best is None or cost < best[0]:
            best = (cost, spans)
    return best[1] if best else _grid_spans(size, tile, overlap, multiple)


def _grid_spans(size: int, tile: int, overlap: int, multiple: int) -> list[tuple[int, int]]:
    """(start, end) of the tiles along one axis: starts on the model's pooling grid (multiples
    of `multiple`), neighbours sharing at least `overlap` pixels; the last tile ends at `size`."""
    if size <= tile:
        return [(0, size)]
    step = max(multiple, (tile - overlap) // multiple * multiple)
    last = (size - tile) // multiple * multiple
    return [(s, s + tile) for s in range(0, last, step)] + [(last, size)]


def _pad_to(x: np.ndarray, multiple: int) -> np.ndarray:
    """Reflect-pad (H, W, C) at the bottom and right to a multiple (works for any size, even 1×1)."""
    h, w = x.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        x = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="reflect" if min(h, w) > 1 else "edge")
    return x


def _axis_windows(spans: list[tuple[int, int]], size: int, overlap: int) -> dict[tuple[int, int], np.ndarray]:
    """Each span's blending window divided by the sum of all windows over the axis: since every
    row span meets every column span, the 2-D weights (row × column) then add up to 1 at every
    pixel, and no full-size weight image is needed."""
    windows = {span: _window(span[1] - span[0], overlap, span[0] == 0, span[1] == size) for span in spans}
    total = np.zeros(size, np.float32)
    for (start, end), win in windows.items():
        total[start:end] += win
    return {(start, end): win / total[start:end] for (start, end), win in windows.items()}


def _from_float_rows(out: np.ndarray, dtype, rows: int = 256) -> np.ndarray:
    """`from_float(out, dtype)` a band of rows at a time, so that no full-size float temporaries
    are made (a 24-megapixel image would need three of 288 MB each); float32 goes in place."""
    result = None
    for y in range(0, out.shape[0], rows):
        part = from_float(out[y:y + rows], dtype)
        if result is None:
            result = out if part.dtype == out.dtype else np.empty(out.shape, part.dtype)
        result[y:y + rows] = part
    return result


def as_bf16(model: nn.Module) -> nn.Module:
    """`model` itself when its weights are bf16 already (a copy made by an earlier call), else a bf16 copy of it for
    inference, its output layer (the last Conv2d) kept in fp32 with its input cast up:
    bf16's 8-bit mantissa would round every output pixel in [0.5, 1] to 1/256, about an 8-bit level (on nam25's
    real photos, where the camera model reaches 41.5 dB, that cost 0.06 dB); the layer is under 1 % of the work.
    (A net that adds its input back, zsn2n, still adds it as bf16 rounded it.)"""
    if next(model.parameters()).dtype == torch.bfloat16:
        return model
    net = copy.deepcopy(model).to(torch.bfloat16)
    last = [m for m in net.modules() if isinstance(m, nn.Conv2d)][-1]
    if last.out_channels != getattr(net, "out_channels", last.out_channels):
        raise ValueError(f"{type(model).__name__}'s last Conv2d is not its output layer: as_bf16 cannot keep it")
    last.float().register_forward_pre_hook(lambda _, inputs: tuple(t.float() for t in inputs))
    return net


def _run(model: nn.Module, batch: np.ndarray) -> np.ndarray:
    """Run `model` on tiles (N, h, w, C) float32, C matching the image, in the dtype of the
    model's weights; returns float32 of the same shape."""
    n, h, w, c = batch.shape
    x = torch.from_numpy(batch).permute(0, 3, 1, 2)  # (N, C, h, w)
    cin = model.in_channels
    if c == 1 and cin == 3:
        x = x.expand(-1, 3, -1, -1)
    elif c == 3 and cin == 1:
        x = x.reshape(n * 3, 1, h, w)
    elif c != cin:
        raise ValueError(f"this model takes {cin} channels, the image has {c}")
    weight = next(model.parameters())
    x = x.to(weight.device, weight.dtype).contiguous(memory_format=torch.channels_last)
    y = model(x).float()
    if not torch.isfinite(y).all():
        raise FloatingPointError("the model's output holds NaN or Inf values: its weights are broken "
                                 "(did its training diverge?)")
    if c == 1 and cin == 3:
        y = y.mean(dim=1, keepdim=True)
    elif c == 3 and cin == 1:
        y = y.reshape(n, 3, h, w)
    return y.permute(0, 2, 3, 1).cpu().numpy()


STRIDES = (1, 2, 3, 4)


def model_stride(model: nn.Module) -> int:
    """The pixel-shuffle stride `model` is meant for: its checkpoint's "stride" (set on loading), else 1."""
    return int(getattr(model, "stride", 1))


def model_low_pass(model: nn.Module) -> float:
    """The scale (σ in pixels) above which `model` keeps the photo's own brightness (`keep_low_pass`): its
    checkpoint's "low_pass" (set on loading), else 0 (off)."""
    return float(getattr(model, "low_pass", 0.0))


# Camera-noise models keep the photo's brightness above this scale. Trained on simulated camera noise, `camera`
# brightens real photos by 0.4 to 1 levels (0-255); its results on ../shared/data/real/nam25 gain +0.63 dB with it
# (none loses over 0.01), sidd1 +0.04, simulated camera noise on Kodak -0.01 to +0.05 (16 px and 64 px: within 0.03 dB).
CAMERA_LOW_PASS = 32.0


def keep_low_pass(noisy: np.ndarray, denoised: np.ndarray, sigma: float) -> np.ndarray:
    """`denoised` with the Gaussian low-pass (σ = `sigma` pixels) of what it took out of `noisy` put back,
    clipped to [0, 1]: float (H, W, C) in [0, 1] each. Noise of zero mean averages out over so many pixels, so
    what the low-pass holds is the denoiser's own shift of the photo's brightness and colour, not noise.

    The blur runs on the difference shrunk by sigma / 4 (area averaging) and is enlarged back bilinearly: within
    0.25 levels (0-255) of the full-size blur even on σ = 25 noise, and one full-size float array, not four (a
    24-megapixel photo: 2.4 s on a busy 2-core CPU, where the full-size blur took 16.6 s)."""
    removed = np.subtract(noisy, denoised, dtype=np.float32)
    h, w = removed.shape[:2]
    shrink = max(1, int(sigma // 4))  # 1: the sizes below are the image's own, and the resizes copy it
    small = cv2.resize(removed, (-(-w // shrink), -(-h // shrink)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / shrink, borderType=cv2.BORDER_REFLECT)
    removed[:] = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).reshape(removed.shape)
    removed += denoised
    return np.clip(removed, 0.0, 1.0, out=removed)


ENSEMBLE = 8  # the geometric self-ensemble: 4 rotations × 2 flips


def ensemble_transform(image: np.ndarray, k: int, inverse: bool = False) -> np.ndarray:
    """Transform k of the 8 rotations and flips of (H, W, C) `image` (0: none), or its inverse."""
    if inverse:
        image = np.rot90(image, -(k % 4))
        return image[:, ::-1] if k >= 4 else image
    image = image[:, ::-1] if k >= 4 else image
    return np.rot90(image, k % 4)


def denoise(model: nn.Module, image: np.ndarray, tile: int = TILE, overlap: int = 96, batch: int = 1,
            precision: str = "auto", progress: Callable[[int, int], None] | None = None,
            stride: int | None = None, ensemble: bool | int = False, low_pass: float | None = None) -> np.ndarray:
    """Denoise `image` with `model`; same shape and dtype out (see `denoise_tiled` for the arguments).

    stride: pixel-shuffle down-sampling (Zhou et al. 2020): the stride² sub-images image[i::s, j::s]
        are denoised one by one and put back in place. Noise correlated over neighbouring pixels (real
        photos: demosaicing, JPEG) is about independent between pixels `stride` apart, as a model trained
        on pixel-independent noise expects. None: the model's own (`model_stride`, 1 unless its
        checkpoint says otherwise); 1: the image whole.
    ensemble: the geometric self-ensemble: True (8) or a number n of the 8 rotations and flips, each
        denoised, undone and averaged in float (n times the time; +0.1 dB for `gaussian` on Kodak24).
    low_pass: keep the photo's own brightness above this scale, σ in pixels (`keep_low_pass`). None: the
        model's own (`model_low_pass`: CAMERA_LOW_PASS for camera-noise models, else 0); 0: off.
    """
    stride = model_stride(model) if stride is None else int(stride)
    low_pass = model_low_pass(model) if low_pass is None else float(low_pass)
    if low_pass < 0:
        raise ValueError(f"low_pass is a scale in pixels, 0 (off) or more, got {low_pass}")
    if stride not in STRIDES:
        raise ValueError(f"stride must be one of {STRIDES} (1: no pixel-shuffle), got {stride}")
    passes = ENSEMBLE if ensemble is True else int(ensemble or 1)
    if not 1 <= passes <= ENSEMBLE:
        raise ValueError(f"ensemble takes True, False or 1 to {ENSEMBLE} transforms, got {ensemble!r}")
    image = np.asarray(image)
    stride = stride if image.ndim >= 2 and min(image.shape[:2]) >= 2 * stride else 1  # too small to split
    if passes == 1 and stride == 1 and not low_pass:
        return denoise_tiled(model, image, tile, overlap, batch, precision, progress)
    squeeze = image.ndim == 2
    image = image[..., None] if squeeze else image
    precision = resolve_precision(precision, next(model.parameters()).device)
    net = as_bf16(model) if precision == "bf16" else model  # once, for every call below
    colour = to_float(split_alpha(image)[0])
    total, calls, s = None, passes * stride * stride, stride
    for k in range(passes):  # each rotation or flip, cut into its stride² sub-images
        turned = ensemble_transform(colour, k)
        out = np.empty(turned.shape, np.float32)
        for n, (i, j) in enumerate((i, j) for i in range(s) for j in range(s)):
            part = None if progress is None else (
                lambda done, count, n=k * s * s + n: progress(n * count + done, calls * count))
            out[i::s, j::s] = denoise_tiled(net, np.ascontiguousarray(turned[i::s, j::s]), tile, overlap, batch,
                                            precision, part)
        back = ensemble_transform(out, k, inverse=True)
        total = np.ascontiguousarray(back) if total is None else np.add(total, back, out=total)
    total /= passes
    result = with_alpha(keep_low_pass(colour, total, low_pass) if low_pass else total, image)
    return result[..., 0] if squeeze else result


@torch.inference_mode()
def denoise_tiled(model: nn.Module, image: np.ndarray, tile: int = TILE, overlap: int = 96, batch: int = 1,
                  precision: str = "auto", progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Denoise `image` with `model` in overlapping tiles; same shape and dtype out.

    image: (H, W) or (H, W, C) with C in 1..4 (2 and 4: the last channel is alpha,
        passed through unchanged), uint8, uint16 or float32 in [0, 1]; any size >= 1×1.
    tile: tile side in pixels (rounded up to the model's multiple, 32 for the U-Net; at least
        twice that when overlap > 0, so neighbours can share pixels);
        memory grows with the tile, not the image. overlap: pixels shared by neighbours.
    batch: tiles per forward pass (1: on a CPU, larger batches cost as much per pixel and more
        memory; see benchmarks/results/tuning.md). precision: "auto" (bf16 where the hardware
        computes it natively, see `resolve_precision`), "fp32" or "bf16" (a bf16 copy of the
        weights: as fast as autocast or faster, PSNR within 0.01 dB of fp32; about 7× slower
        than fp32 on CPUs without native bf16, e.g. AVX2-only ones).
    progress: called as progress(tiles_done, tiles_total).
    """
    precision = resolve_precision(precision, next(model.parameters()).device)
    image = np.asarray(image)
    squeeze = image.ndim == 2
    if squeeze:
        image = image[..., None]
    if image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"expected an image of shape (H, W) or (H, W, C), got {image.shape}")
    colour = split_alpha(image)[0]
    h, w, c = colour.shape
    multiple = getattr(model, "multiple", 1)
    # tiles start on the model's grid, so neighbours can share pixels only if a tile spans two grid cells
    tile = max(multiple * (2 if overlap > 0 else 1), -(-tile // multiple) * multiple)
    overlap = min(overlap, tile // 2)
    rows, cols = _spans(h, tile, overlap, multiple), _spans(w, tile, overlap, multiple)
    jobs = [(r, c_) for r in rows for c_ in cols]
    shape = lambda job: (job[0][1] - job[0][0], job[1][1] - job[1][0])  # noqa: E731
    jobs.sort(key=shape)  # equal shapes next to each other, so they batch
    row_win, col_win = _axis_windows(rows, h, overlap), _axis_windows(cols, w, overlap)
    out = np.zeros((h, w, c), np.float32)
    was_training = model.training
    model.eval()
    net = as_bf16(model) if precision == "bf16" else model  # denoise() may have made the copy once
    try:
        k = 0
        while k < len(jobs):
            chunk = [job for job in jobs[k:k + batch] if shape(job) == shape(jobs[k])]
            tiles = np.stack([_pad_to(to_float(colour[y0:y1, x0:x1]), multiple) for (y0, y1), (x0, x1) in chunk])
            th, tw = shape(chunk[0])
            result = _run(net, tiles)[:, :th, :tw]
            for ((y0, y1), (x0, x1)), res in zip(chunk, result):
                out[y0:y1, x0:x1] += res * (row_win[y0, y1][:, None, None] * col_win[x0, x1][None, :, None])
            k += len(chunk)
            if progress is not None:
                progress(k, len(jobs))
    finally:
        model.train(was_training)
    result = with_alpha(_from_float_rows(out, colour.dtype), image)
    return result[..., 0] if squeeze else result
