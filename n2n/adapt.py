"""Adapt to this photo: a pretrained model fitted to one noisy photo within a time budget, through the
one training loop (`adapt`): by Neighbor2Neighbor, or, for a camera-noise model on camera noise, by
pseudo-clean pairs (its own result re-photographed with simulated camera noise); and the whole of the
Denoise tab's Adapt button and /adapt endpoint (`adapt_photo`): adapting, both models' results, the blind
comparison that says which to keep.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from .estimate import blind_psnr, estimate_noise
from .hub import resolve
from .infer import denoise
from .io import split_alpha
from .noise import camera_stops
from .train import Record, TrainConfig, TrainData, train

# "Adapt to this photo": Neighbor2Neighbor from the pretrained model, the settings that gained most
# per second on 2 CPU cores (benchmarks/results/adapt.md: +3.1 dB on average in 60 s)
ADAPT_CROP = 64  # training crops, pixels a side: 3x the steps of 128 in the same time, +0.17 dB
ADAPT_BATCH = 4
ADAPT_LR = 3e-4
ADAPT_CALIBRATION_STEPS = 4  # timed first, to fit the learning-rate schedule to the budget

# A camera-noise model on camera noise (real photos): Neighbor2Neighbor learns the correlated noise back and
# loses 0-2.6 dB there. Instead the model's own result is re-photographed with simulated camera noise at the
# level estimated blind and fitted back, a few steps at a small learning rate (pseudo-clean pairs):
# benchmarks/results/adapt-real.md, session 5: +0.6 dB on average over the pretrained `camera` on nam25 + sidd1
# at 100 and 200 steps (worst photo +0.03 and -0.15); 400 fit the pretrained result itself too closely (+0.34
# on six photos, one at -0.32). 150: benchmarks/adapt_real.py.
PSEUDO_CLEAN_STEPS = 150  # at most, whatever the budget
PSEUDO_CLEAN_LR = 1e-5


def adapt_config(init: str, folder: Path, steps: int, crop: int = ADAPT_CROP, batch_size: int = ADAPT_BATCH,
                 lr: float = ADAPT_LR, seed: int = 0, stride: int = 1, stops: float | None = None) -> TrainConfig:
    """The TrainConfig that adapts `init` (a bundled name or checkpoint folder) to one noisy photo
    (handed to `train` decoded, as TrainData; `data` names it), writing the checkpoint to
    `folder`/adapted: Neighbor2Neighbor (mode "single"), a checkpoint only at the end (the weights,
    not Adam's moments), no validation (there is no clean image). `stride` > 1: on the photo's
    pixel-shuffled sub-images (camera noise, correlated between neighbours, is about independent
    there); the adapted model denoises at it. `stops` (camera noise's ISO in stops, n2n.noise.camera):
    pseudo-clean pairs instead, on the pretrained model's result for the photo (mode "synthetic", clean
    targets, camera noise at exactly `stops`)."""
    common = dict(data="photo", init=init, steps=steps, batch_size=batch_size, crop=crop, lr=lr,
                  checkpoint_every=10**9, out=str(folder / "adapted"), seed=seed, optimiser_state=False)
    if stops is not None:
        return TrainConfig(mode="synthetic", noise="camera", noise_range=(stops, stops), clean_targets=True, **common)
    return TrainConfig(mode="single", stride=stride, **common)


def adapt(init: str, noisy: np.ndarray, folder: Path, seconds: float = 60.0, stop: Callable[[], bool] = lambda: False,
          pseudo_clean: tuple[np.ndarray, float] | None = None, **settings) -> Iterator[Record]:
    """Fit the model `init` to the one photo `noisy` (H, W, C, any dtype) for about `seconds` of
    wall-clock time; yield the training loop's records, their `elapsed_s` counted from this call.

    Neighbor2Neighbor on `noisy` alone (no clean image, no second shot), through the one training
    loop. The first ADAPT_CALIBRATION_STEPS steps are timed, at the constant learning rate that opens
    every run; the run then goes on in memory from them (`train`'s `resume_from`: the same network and
    Adam's moments) with as many steps in all as the rest of the budget holds, so that its learning
    rate ramps down before the time is up. It also stops at the budget or when `stop()` turns true.
    The last record, and only it, has `done` and `out`, the checkpoint folder (`folder`/adapted: the
    weights and config.json, no optimiser state). `settings`: crop, batch_size, lr, seed, stride
    (adapt_config).

    pseudo_clean: (result, stops): instead, fit `init` (a camera-noise model) to its own `result` for `noisy`
    ((H, W, C), any dtype) re-photographed with camera noise at `stops`, at PSEUDO_CLEAN_LR (unless
    `settings` say otherwise), for at most PSEUDO_CLEAN_STEPS steps.
    """
    if seconds <= 0:
        raise ValueError(f"the time budget must be positive, got {seconds} s")
    start = time.perf_counter()
    most = 10**6
    if pseudo_clean is not None:
        result, stops = pseudo_clean
        data, most = TrainData([np.asarray(result)]), PSEUDO_CLEAN_STEPS
        settings = {"lr": PSEUDO_CLEAN_LR} | settings | {"stops": float(stops)}
    else:
        data = TrainData([np.asarray(noisy)])
    over = lambda: stop() or time.perf_counter() - start >= seconds  # noqa: E731
    # a length the calibration never reaches (its end is set once its steps are timed): until then the
    # learning rate is constant, as in the first 70 % of any run
    calibration = adapt_config(init, folder, 10**6, **settings)
    run, stamps, record = train(calibration, stop=over, data=data), [], None
    for record in run:
        stamps.append(time.perf_counter())
        yield dataclasses.replace(record, elapsed_s=stamps[-1] - start)
        if record.done:  # the budget ran out already: that record was the last, with `done` and `out`
            return
        if len(stamps) == ADAPT_CALIBRATION_STEPS:
            break
    run.close()  # no checkpoint: the run goes on from `record`, in memory
    # the first step carries the set-up; the next ones give the pace
    per_step = (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1)
    steps = min(most, len(stamps) + max(1, int((seconds - (stamps[-1] - start)) / per_step)))
    for record in train(dataclasses.replace(calibration, steps=steps), stop=over, data=data, resume_from=record):
        yield dataclasses.replace(record, elapsed_s=time.perf_counter() - start)


@dataclass(frozen=True)
class AdaptedPhoto:
    """What `adapt_photo` did to one photo: the adapted model, both models' results and their blind scores."""

    model: nn.Module  # the adapted network, in eval mode, on the device it trained on
    out: Path  # its checkpoint folder (config.json + model.safetensors)
    steps: int  # training steps taken
    seconds: float  # seconds of training, loading the model included
    stride: int  # the pixel-shuffle stride it trained and denoises at: 2 on camera noise by Neighbor2Neighbor, else 1
    camera_noise: bool  # n2n.estimate read camera noise: the blind scores are `sure_score`'s (masking favours
    # results that keep correlated noise)
    pseudo_clean: bool  # adapted by pseudo-clean pairs (a camera-noise model, not on impulses), not Neighbor2Neighbor
    pretrained: np.ndarray  # the pretrained model's result: (H, W, C) colour channels, the photo's dtype
    adapted: np.ndarray  # the adapted model's result, likewise
    blind_pretrained: float  # n2n.estimate.blind_psnr of the pretrained model on the photo (dB, higher is better)
    blind_adapted: float  # the same of the adapted model
    better: str  # "adapted" or "pretrained": the higher blind score (the adapted one on a tie)


def adapt_photo(init: str, noisy: np.ndarray, folder: Path, seconds: float = 60.0,
                progress: Callable[[str, float, float, str], None] | None = None) -> AdaptedPhoto:
    """"Adapt to this photo", whole: fit `init` (a bundled name or checkpoint folder) to `noisy`
    ((H, W, C), any dtype; alpha ignored) for about `seconds` (`adapt`), denoise the photo with the
    pretrained and the adapted model, and score both blind (`blind_psnr`, no clean image; on camera noise
    Stein's unbiased risk estimate with noise shaped like the photo's, `sure_score`). The pretrained
    model is loaded once (`hub.resolve`, as `train` starts from it) for its result and its score; the
    checkpoint goes to `folder`/adapted.

    How it adapts follows `estimate_noise` (read with `init` itself when `init` was trained for camera noise):
    a camera-noise model on anything but impulse noise: pseudo-clean pairs at the estimated ISO (`adapt`'s
    pseudo_clean; weak camera noise can read as Gaussian, whose σ gives the ISO); camera noise and another
    model: Neighbor2Neighbor on the stride-2 sub-images, where the noise is about independent; else
    Neighbor2Neighbor on the photo.

    progress: called as progress(what, done, total, unit), e.g. ("adapting: step 12", 30.5, 60, "s").
    A diverging run raises FloatingPointError, as `train` does.
    """
    report = progress or (lambda *_: None)
    colour = split_alpha(np.asarray(noisy))[0]
    report("loading the model", 0, 1, "steps")
    loaded = resolve(init)  # the weights `train` starts from: its copy is the one that trains
    pretrained = loaded.model.to("cuda" if torch.cuda.is_available() else "cpu")
    camera_model = loaded.config.get("noise") == "camera"
    try:
        found = estimate_noise(colour, denoiser=(lambda x: denoise(pretrained, x)) if camera_model else None)
    except ValueError:  # too small to tell
        found = None
    camera_noise = found is not None and found.noise == "camera"
    results = {"pretrained": denoise(pretrained, colour, progress=lambda done, total: report(
        "denoising with the pretrained model", done, total, "tiles"))}
    pseudo_clean = None
    if camera_model and found is not None and found.noise != "impulse":  # weak camera noise can read as Gaussian
        pseudo_clean = (results["pretrained"], camera_stops(found.sigma))
    stride = 2 if camera_noise and not pseudo_clean else 1
    start, record = time.perf_counter(), None
    for record in adapt(init, colour, folder, seconds, pseudo_clean=pseudo_clean, stride=stride):
        report(f"adapting: step {record.step}", min(record.elapsed_s, seconds), seconds, "s")
    trained_s = time.perf_counter() - start
    if record is None or not record.done:
        raise RuntimeError("adapting ended without its last record")
    device = next(record.model.parameters()).device
    models = {"pretrained": pretrained.to(device), "adapted": record.model.eval()}
    results["adapted"] = denoise(models["adapted"], colour, progress=lambda done, total: report(
        "denoising with the adapted model", done, total, "tiles"))
    report("scoring both without a clean image", 0, 1, "steps")
    correlated = found.sigma if camera_noise else 0.0  # masking favours results that keep correlated noise
    blind = {which: blind_psnr(colour, lambda x, model=model: denoise(model, x, precision="fp32"),  # as SURE needs
                               correlated_sigma=correlated) for which, model in models.items()}
    return AdaptedPhoto(models["adapted"], Path(record.out), record.step, trained_s, stride, camera_noise,
                        pseudo_clean is not None, results["pretrained"], results["adapted"], blind["pretrained"],
                        blind["adapted"], "adapted" if blind["adapted"] >= blind["pretrained"] else "pretrained")
