"""Short fine-tuning runs, as the app's Fine-tune tab makes them: the configs of a run on a folder
of uploads, Noise2Noise and its clean-target twin stepped together, Zero-Shot Noise2Noise in a
thread, the preview strip, the zip of the result, and `adapt`: a model fitted to one noisy photo
within a time budget. No UI here: the app turns records into plots.
"""
from __future__ import annotations

import threading
import time
import zipfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from . import hub
from .infer import denoise
from .io import from_float, to_float, write_image
from .train import TrainConfig, train, zero_shot

KINDS = ("synthetic", "pairs", "single")  # clean images, pairs of noisy shots, single noisy images

# "Adapt to this photo": Neighbor2Neighbor from the pretrained model, the settings that gained most
# per second on 2 CPU cores (benchmarks/results/adapt.md)
ADAPT_CROP = 128  # training crops, pixels a side
ADAPT_BATCH = 4
ADAPT_LR = 3e-4
ADAPT_CALIBRATION_STEPS = 4  # timed first, to fit the learning-rate schedule to the budget


def run_configs(folder: Path, kind: str, noise: str, noise_range: tuple[float, float], loss: str | None,
                steps: int, init: str, twin: bool, seed: int, cuda: bool) -> list[TrainConfig]:
    """The TrainConfig of a run on `folder`/data (and `folder`/target for pairs), writing to
    `folder`/n2n; with `twin`, a second one with clean targets writing to `folder`/n2c.

    Small crops and batches on a CPU, so that a step takes about a second; validation and a
    checkpoint every tenth of the run; validation only where the images are clean (synthetic).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind of data {kind!r}; choose one of: {', '.join(KINDS)}")
    if twin and kind != "synthetic":
        raise ValueError("the clean-target twin needs clean images (kind 'synthetic')")
    every = max(1, steps // 10)
    base = TrainConfig(noise=noise, noise_range=noise_range, data=str(folder / "data"),
                       data_target=str(folder / "target") if kind == "pairs" else "", mode=kind, loss=loss,
                       init=init, steps=steps, batch_size=8 if cuda else 4, crop=128 if cuda else 64,
                       val=str(folder / "data") if kind == "synthetic" else "", val_images=4, val_crop=128,
                       val_every=every, checkpoint_every=every, out=str(folder / "n2n"), seed=seed)
    if not twin:
        return [base]
    return [base, TrainConfig(**{**base.__dict__, "clean_targets": True, "out": str(folder / "n2c")})]


def lockstep(configs: list[TrainConfig], stop: Callable[[], bool]) -> Iterator[list[dict]]:
    """Step the runs together (Noise2Noise and its clean-target twin); yield their records each step.
    `stop()` is read once per step, so every run stops, and saves, at the same step."""
    flag = {"stop": False}
    runs = [train(config, stop=lambda: flag["stop"]) for config in configs]
    while True:
        flag["stop"] = stop()
        records = [next(run, None) for run in runs]
        if records[0] is None or None in records:
            return
        yield records
        if records[0].get("done"):
            return


def zero_shot_records(noisy: np.ndarray, steps: int, stop: Callable[[], bool], every_s: float = 0.5) -> Iterator[dict]:
    """Zero-Shot Noise2Noise on `noisy` (float32 (H, W, C) in [0, 1]) in a thread, so its progress
    can be streamed: yields {"losses": [{"step", "loss"}…], "step", "steps_per_s", "eta_s"} about
    every `every_s` seconds, then {"done": True, "result": float32 (H, W, C)}, or
    {"stopped": True} once `stop()` turned true. Errors of the run are raised here."""
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

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(every_s)
        losses = list(state["losses"])
        if losses:
            step = losses[-1]["step"]
            rate = step / (time.perf_counter() - state["start"])
            yield {"losses": losses, "step": step, "loss": losses[-1]["loss"], "steps_per_s": rate,
                   "eta_s": (steps - step) / rate}
    if isinstance(state.get("error"), InterruptedError):
        yield {"stopped": True}
    elif "error" in state:
        raise state["error"]
    else:
        yield {"done": True, "result": state["result"]}


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


def preview_panels(noisy: np.ndarray, records: list[dict]) -> list[np.ndarray]:
    """The noisy crop and its denoising by each run's current model (records from `train`)."""
    return [noisy] + [denoise(record["model"], noisy) for record in records]


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


def adapt_config(init: str, folder: Path, steps: int, crop: int = ADAPT_CROP, batch_size: int = ADAPT_BATCH,
                 lr: float = ADAPT_LR, seed: int = 0) -> TrainConfig:
    """The TrainConfig that adapts `init` (a bundled name or checkpoint folder) to the noisy image
    in `folder`/data, writing the checkpoint to `folder`/adapted: Neighbor2Neighbor (mode
    "single"), a checkpoint only at the end, no validation (there is no clean image)."""
    return TrainConfig(data=str(folder / "data"), mode="single", init=init, steps=steps, batch_size=batch_size,
                       crop=crop, lr=lr, checkpoint_every=10**9, out=str(folder / "adapted"), seed=seed)


def adapt(init: str, noisy: np.ndarray, folder: Path, seconds: float = 60.0, stop: Callable[[], bool] = lambda: False,
          **settings) -> Iterator[dict]:
    """Fit the model `init` to the one photo `noisy` (H, W, C, any dtype) for about `seconds` of
    wall-clock time; yield the training loop's records, each with `elapsed_s` and `seconds` added.

    Neighbor2Neighbor on `noisy` alone (no clean image, no second shot), through the one training
    loop. The first ADAPT_CALIBRATION_STEPS steps are timed, then the run resumes with as many steps
    as the rest of the budget holds, so that its learning rate ramps down before the time is up; it
    also stops at the budget or when `stop()` turns true. The last record has `done` and `out`, the
    checkpoint folder (`folder`/adapted). `settings`: crop, batch_size, lr, seed (adapt_config).
    """
    if seconds <= 0:
        raise ValueError(f"the time budget must be positive, got {seconds} s")
    start = time.perf_counter()
    (folder / "data").mkdir(parents=True, exist_ok=True)
    write_image(folder / "data" / "noisy.png", noisy)
    over = lambda: stop() or time.perf_counter() - start >= seconds  # noqa: E731
    calibration = adapt_config(init, folder, ADAPT_CALIBRATION_STEPS, **settings)
    stamps = []
    for record in train(calibration, stop=over):
        stamps.append(time.perf_counter())
        if over():  # the budget ran out already: this record is the last, with `done`
            yield record | {"elapsed_s": stamps[-1] - start, "seconds": seconds}
            return
        yield {k: v for k, v in record.items() if k not in ("done", "out")} | {"elapsed_s": stamps[-1] - start,
                                                                               "seconds": seconds}
    # the first step carries the set-up; the next ones give the pace
    per_step = (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1)
    steps = len(stamps) + max(1, int((seconds - (stamps[-1] - start)) / per_step))
    config = TrainConfig(**{**calibration.__dict__, "steps": steps, "resume": True})
    for record in train(config, stop=over):
        yield record | {"elapsed_s": time.perf_counter() - start, "seconds": seconds}
