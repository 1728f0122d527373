"""Short fine-tuning runs, as the app's Fine-tune tab makes them: the configs of a run on the visitor's
images (decoded once, by the app through n2n.io), the run prepared from those images (training data,
the validation set built once for both runs, the preview crop), Noise2Noise and its clean-target twin
stepped together, Zero-Shot Noise2Noise in a thread, the preview strip and the zip of the result.
No UI here: the app turns records into plots.
"""
from __future__ import annotations

import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from . import hub
from .infer import denoise
from .io import centre_crop, from_float, split_alpha, to_float
from .metrics import psnr
from .noise import corrupt, get_noise
from .train import MODES, Record, TrainConfig, TrainData, train, validation_pairs, zero_shot

# MODES, the training data a run takes: clean images, pairs of noisy shots, single noisy images; and beside them
ZERO_SHOT = "zero-shot"  # one noisy image, denoised with no training data (zero_shot_records)
UPLOADS = "uploads"  # what a run's config names its images, which come decoded (TrainData), not from a folder
PREVIEW_SIZE = 128  # the preview crop, pixels a side


@dataclass(frozen=True)
class Prepared:
    """A run ready to step: its configs (Noise2Noise, maybe its clean-target twin), the images both
    train on, and the noisy crop the preview denoises."""

    configs: list[TrainConfig]
    data: TrainData  # the images, decoded once, and the validation pairs, built once for every run
    preview_noisy: np.ndarray  # (h, w, 1 or 3): the crop each model denoises in the preview, noisy
    noisy_val_psnr: float | None  # the noisy validation images' PSNR (dB); None: no validation (not clean)


def run_configs(folder: Path, mode: str, noise: str, noise_range: tuple[float, float], loss: str | None,
                steps: int, init: str, twin: bool, seed: int, cuda: bool) -> list[TrainConfig]:
    """The TrainConfig of a run on the visitor's images (handed to `prepare`: its data, data_target
    and val name them UPLOADS), writing to `folder`/n2n; with `twin`, a second one with clean targets
    writing to `folder`/n2c.

    Small crops and batches on a CPU, so that a step takes about a second; validation and a
    checkpoint every tenth of the run; validation only where the images are clean (synthetic).
    """
    if mode not in MODES:
        raise ValueError(f"unknown data mode {mode!r}; choose one of: {', '.join(MODES)}")
    if twin and mode != "synthetic":
        raise ValueError("the clean-target twin needs clean images (mode 'synthetic')")
    every = max(1, steps // 10)
    base = TrainConfig(noise=noise, noise_range=noise_range, data=UPLOADS,
                       data_target=UPLOADS if mode == "pairs" else "", mode=mode, loss=loss,
                       init=init, steps=steps, batch_size=8 if cuda else 4, crop=128 if cuda else 64,
                       val=UPLOADS if mode == "synthetic" else "", val_images=4, val_crop=128,
                       val_every=every, checkpoint_every=every, out=str(folder / "n2n"), seed=seed,
                       optimiser_state=False)
    if not twin:
        return [base]
    return [base, TrainConfig(**{**base.__dict__, "clean_targets": True, "out": str(folder / "n2c")})]


def prepare(configs: list[TrainConfig], images: list[np.ndarray], targets: list[np.ndarray] | None = None
            ) -> Prepared:
    """The run of `configs` (from `run_configs`) on `images` (H, W, C, any dtype, decoded once; for
    pairs, `targets` the second shots in the same order): the validation pairs from the images when
    they are clean, and the preview crop (the first image's centre, noisy: corrupted at the noise's
    test setting when the images are clean)."""
    config = configs[0]
    if config.mode == "pairs" and len(targets or []) != len(images):
        raise ValueError(f"pairs need as many second shots as first shots: got {len(images)} and "
                         f"{len(targets or [])}")
    val = validation_pairs(images, config) if config.val else []
    crop = split_alpha(centre_crop(images[0], PREVIEW_SIZE))[0]
    if config.mode == "synthetic":
        rng = np.random.default_rng(config.seed)
        crop = corrupt(to_float(crop), config.noise, get_noise(config.noise).default, rng)
    noisy_val_psnr = float(np.mean([psnr(clean, noisy) for clean, noisy in val])) if val else None
    return Prepared(configs, TrainData(images, targets, val), crop, noisy_val_psnr)


def lockstep(configs: list[TrainConfig], stop: Callable[[], bool], data: TrainData | None = None
             ) -> Iterator[list[Record]]:
    """Step the runs together (Noise2Noise and its clean-target twin), on the same `data` (None: each
    reads its config's folders); yield their records each step. `stop()` is read once per step, so
    every run stops, and saves, at the same step."""
    flag = {"stop": False}
    runs = [train(config, stop=lambda: flag["stop"], data=data) for config in configs]
    while True:
        flag["stop"] = stop()
        records = [next(run, None) for run in runs]
        if records[0] is None or None in records:
            return
        yield records
        if records[0].done:
            return


@dataclass(frozen=True)
class ZeroShotRecord:
    """Zero-Shot Noise2Noise's progress, as `zero_shot_records` yields it."""

    losses: list[dict]  # [{"step", "loss"}…] of every step so far
    step: int  # steps done (0: none yet)
    loss: float | None  # the last step's loss
    steps_per_s: float
    eta_s: float | None  # seconds left at that pace
    done: bool = False  # finished: `result` holds the denoised image
    stopped: bool = False  # `stop()` turned true first: no result
    result: np.ndarray | None = None  # done: float32 (H, W, C) in [0, 1]


def zero_shot_records(noisy: np.ndarray, steps: int, stop: Callable[[], bool],
                      every_s: float = 0.5) -> Iterator[ZeroShotRecord]:
    """Zero-Shot Noise2Noise on `noisy` (float32 (H, W, C) in [0, 1]) in a thread, so its progress
    can be streamed: a record about every `every_s` seconds once a step is done, then a last one
    with `done` and `result`, or with `stopped` once `stop()` turned true. Errors of the run are
    raised here."""
    state: dict = {"losses": [], "start": time.perf_counter()}

    def progress(step, total, loss):
        state["losses"].append({"step": step, "loss": loss})
        if stop():
            raise InterruptedError

    def work():
        try:
            state["result"] = zero_shot(noisy, steps=steps, progress=progress)
        except BaseException as e:  # handed to the generator's caller below
            state["error"] = e

    def record(**end) -> ZeroShotRecord:
        losses = list(state["losses"])
        step = losses[-1]["step"] if losses else 0
        rate = step / (time.perf_counter() - state["start"])
        return ZeroShotRecord(losses, step, losses[-1]["loss"] if losses else None, rate,
                              (steps - step) / rate if rate > 0 else None, **end)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(every_s)
        if state["losses"]:
            yield record()
    if isinstance(state.get("error"), InterruptedError):
        yield record(stopped=True)
    elif "error" in state:
        raise state["error"]
    else:
        yield record(done=True, result=state["result"])


def preview_strip(panels: list[np.ndarray], gap: int = 4, min_height: int = 192) -> np.ndarray:
    """Panels (H, W, C) of any dtype and equal sizes side by side with white gaps, as uint8;
    small crops enlarged pixel by pixel (integer zoom) to at least `min_height` rows."""
    panels = [from_float(to_float(p), np.uint8) for p in panels]
    zoom = max(1, min_height // panels[0].shape[0])
    panels = [p.repeat(zoom, axis=0).repeat(zoom, axis=1) for p in panels]
    white = np.full((panels[0].shape[0], gap, panels[0].shape[2]), 255, np.uint8)
    row = [panels[0]]
    for p in panels[1:]:
        row += [white, p]
    return np.concatenate(row, axis=1)


def preview(noisy: np.ndarray, records: list[Record]) -> np.ndarray:
    """The preview strip, uint8: the noisy crop, then its denoising by each run's current model."""
    return preview_strip([noisy] + [denoise(record.model, noisy) for record in records])


def package(configs: list[TrainConfig], path: Path, name: str) -> Path:
    """A zip at `path` of the runs' checkpoints under `name`/ (the twin under `name`/n2c/):
    config.json, model.safetensors and a model card each; never the optimiser state."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for config, sub in zip(configs, ["", "n2c/"]):
            out = Path(config.out)
            try:
                hub.write_model_card(out)
            except Exception:  # the card is a courtesy; the weights and config are what matter
                pass
            for file in (hub.CONFIG_NAME, hub.WEIGHTS_NAME, "README.md"):
                if (out / file).is_file():
                    archive.write(out / file, f"{name}/{sub}{file}")
    return path
