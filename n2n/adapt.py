"""Adapt to this photo: a pretrained model fitted to one noisy photo within a time budget,
by Neighbor2Neighbor through the one training loop (the Denoise tab's Adapt button and /adapt).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .train import Record, TrainConfig, TrainData, train

# "Adapt to this photo": Neighbor2Neighbor from the pretrained model, the settings that gained most
# per second on 2 CPU cores (benchmarks/results/adapt.md: +3.1 dB on average in 60 s)
ADAPT_CROP = 64  # training crops, pixels a side: 3x the steps of 128 in the same time, +0.17 dB
ADAPT_BATCH = 4
ADAPT_LR = 3e-4
ADAPT_CALIBRATION_STEPS = 4  # timed first, to fit the learning-rate schedule to the budget


def adapt_config(init: str, folder: Path, steps: int, crop: int = ADAPT_CROP, batch_size: int = ADAPT_BATCH,
                 lr: float = ADAPT_LR, seed: int = 0, stride: int = 1) -> TrainConfig:
    """The TrainConfig that adapts `init` (a bundled name or checkpoint folder) to one noisy photo
    (handed to `train` decoded, as TrainData; `data` names it), writing the checkpoint to
    `folder`/adapted: Neighbor2Neighbor (mode "single"), a checkpoint only at the end (the weights,
    not Adam's moments), no validation (there is no clean image). `stride` > 1: on the photo's
    pixel-shuffled sub-images (camera noise, correlated between neighbours, is about independent
    there); the adapted model denoises at it."""
    return TrainConfig(data="photo", mode="single", init=init, steps=steps, batch_size=batch_size,
                       crop=crop, lr=lr, checkpoint_every=10**9, out=str(folder / "adapted"), seed=seed,
                       stride=stride, optimiser_state=False)


def adapt(init: str, noisy: np.ndarray, folder: Path, seconds: float = 60.0, stop: Callable[[], bool] = lambda: False,
          **settings) -> Iterator[Record]:
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
    """
    if seconds <= 0:
        raise ValueError(f"the time budget must be positive, got {seconds} s")
    start = time.perf_counter()
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
    steps = len(stamps) + max(1, int((seconds - (stamps[-1] - start)) / per_step))
    for record in train(dataclasses.replace(calibration, steps=steps), stop=over, data=data, resume_from=record):
        yield dataclasses.replace(record, elapsed_s=time.perf_counter() - start)
