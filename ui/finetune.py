"""The Fine-tune tab: short runs on the visitor's images with live curves and a preview, ending with
a checkpoint that belongs to the visitor's session (download it, use it in Denoise, push it).

Endpoints /finetune (images, noise, kind (the data mode), second shots, range, loss, steps, start from, twin, seed)
and /stop (the caller's own run); /push is ui/push.py, built inside this tab.
"""
from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import torch

from n2n import finetune as ft, losses
from n2n.io import centre_crop, read_icc_profile, split_alpha, to_float, write_image
from n2n.noise import NOISE_MODELS
from n2n.train import Record, TrainConfig
from ui import budget, push
from ui.common import (API_DEFAULT_RANGE, MAX_STEPS, MAX_TRAIN_PIXELS, MAX_UPLOADS, PHOTO_TYPES, UserError, check_range,
                       gpu, noise_model, range_sliders, read, safe_name, save_png, session_key, workdir)
from ui.denoise import DenoiseTab
from ui.registry import FINETUNED, add_finetuned, check_session, compare_choices, init_ref, model_names

MODE_LABELS = {"synthetic": "clean images → synthetic noisy pairs",
               "pairs": "pairs of noisy shots of the same scenes (two uploads)",
               "single": "single noisy images (Neighbor2Neighbor)",
               ft.ZERO_SHOT: "one noisy image, zero-shot (no training data)"}
if set(MODE_LABELS) != {*ft.MODES, ft.ZERO_SHOT}:  # the modes are n2n.finetune's: a label for each, no other
    raise RuntimeError(f"ui.finetune.MODE_LABELS names {sorted(MODE_LABELS)}, n2n.finetune "
                       f"{sorted({*ft.MODES, ft.ZERO_SHOT})}")
MODE_CHOICES = [(MODE_LABELS[mode], mode) for mode in (*ft.MODES, ft.ZERO_SHOT)]  # the radio's (label, value) pairs
LOSS_LABELS = {"l2": "L2 (mean)", "l1": "L1 (median)", "l0": "annealed L0 (mode)",
               "masked_l2": "L2 on surviving pixels"}
if set(LOSS_LABELS) != set(losses.LOSSES):  # the losses are n2n.losses': a label for each, no other
    raise RuntimeError(f"ui.finetune.LOSS_LABELS names {sorted(LOSS_LABELS)}, n2n.losses {sorted(losses.LOSSES)}")
LOSS_CHOICES = [("auto: the one that fits the noise", "auto"), *((LOSS_LABELS[name], name) for name in losses.LOSSES)]

STOP_FLAGS: dict[str, threading.Event] = {}  # session -> the "stop" flag of its fine-tuning run in progress


@dataclass
class Run:
    """One fine-tuning run as the UI shows it: the prepared run (N2N, maybe its N2C twin; None for
    zero-shot), its curves, status and preview."""

    labels: list[str]
    folder: Path
    steps: int
    prepared: ft.Prepared | None = None
    loss_points: list[dict] = field(default_factory=list)
    val_points: list[dict] = field(default_factory=list)
    last: list = field(default_factory=list)  # the latest Record of each run (a ZeroShotRecord for zero-shot)
    preview: str | None = None
    last_yield: float = 0.0

    @property
    def configs(self) -> list[TrainConfig]:
        return self.prepared.configs if self.prepared else []

    def add(self, records: list[Record]) -> None:
        self.last = records
        for label, record in zip(self.labels, records):
            self.loss_points.append({"step": record.step, "loss": record.loss, "run": label})
            if record.val_psnr is not None:
                self.val_points.append({"step": record.step, "psnr": record.val_psnr, "run": label})
        if records[0].step % self.configs[0].checkpoint_every == 0 or records[0].done:
            self.refresh_preview()

    def due(self) -> bool:
        """Whether to send an update now: twice a second, on a validation and at the end."""
        return (time.monotonic() - self.last_yield > 0.5 or self.last[0].val_psnr is not None
                or self.last[0].done)

    def refresh_preview(self) -> None:
        """Denoise the preview crop with every run's current model: noisy | N2N [| N2C]."""
        self.preview = str(write_image(self.folder / f"preview_{uuid.uuid4().hex[:8]}.png",
                                         ft.preview(self.prepared.preview_noisy, self.last)))

    def outputs(self, status: str | None = None, download=None, name=""):
        self.last_yield = time.monotonic()
        val_runs = self.labels if self.configs and self.configs[0].val else []
        # x_lim and the legend are part of the plot's drawing: a run with other runs in its legend redraws it
        return (gr.LinePlot(value=curve(self.loss_points, "loss", self.labels), x_lim=[0, self.steps],
                            colors_in_legend=self.labels),
                gr.LinePlot(value=curve(self.val_points, "psnr", val_runs), x_lim=[0, self.steps],
                            colors_in_legend=val_runs),
                self.preview, status or self.status(), download, name)

    def status(self) -> str:
        if not self.last:
            return "Loading the images and building the model…"
        record = self.last[0]
        text = (f"**step {record.step} / {self.steps}** · loss {record.loss:.4f} · "
                f"{record.steps_per_s:.2f} steps/s · {format_eta(record.eta_s)} left")
        if self.val_points:
            latest = {p["run"]: p["psnr"] for p in self.val_points}
            noisy_psnr = self.prepared.noisy_val_psnr
            noisy = f"noisy input {noisy_psnr:.2f} dB → " if noisy_psnr else ""
            text += " · validation PSNR: " + noisy + ", ".join(f"{k} {v:.2f} dB" for k, v in latest.items())
        elif self.configs and not self.configs[0].val:
            text += " · no validation PSNR: it needs clean images"
        return text


def curve(points: list[dict], y: str, runs: list[str]) -> pd.DataFrame:
    """Plot data for a LinePlot coloured by run, from the first update on.

    The browser fixes the plot's axis types and colours when it first draws it, so every frame
    has numeric columns (an empty frame's would be categories) and names all `runs` from the
    start, each with an empty point at step 0 (y = NaN, which the plot skips).
    """
    anchors = [{"step": 0, y: float("nan"), "run": run} for run in runs]
    return pd.DataFrame(anchors + points, columns=["step", y, "run"]).astype(
        {"step": "int64", y: "float64", "run": "str"})


def format_eta(seconds) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def read_uploads(files, what: str) -> list[np.ndarray]:
    """The uploaded images, checked and decoded once (HxWxC at their own bit depth), sorted by file name."""
    if not files:
        raise UserError(f"No {what}: upload at least one image.")
    files = sorted((f if isinstance(f, str) else f.name for f in files), key=lambda f: Path(f).name)
    if len(files) > MAX_UPLOADS:
        raise UserError(f"Too many {what}: {len(files)} files; at most {MAX_UPLOADS} per run.")
    images = [read(f, what) for f in files]
    if sum(i.shape[0] * i.shape[1] for i in images) > MAX_TRAIN_PIXELS:
        raise UserError(f"The {what} hold over {MAX_TRAIN_PIXELS // 1_000_000} megapixels together; "
                        "use fewer or smaller images.")
    return images


def plain(e: ValueError) -> str:
    """A core ValueError as a sentence for the visitor."""
    return f"{str(e)[0].upper()}{str(e)[1:]}."


def prepare_run(files, second_shots, mode, noise, low, high, loss, steps, init, twin, seed) -> Run:
    """Check the settings, decode the uploads and prepare the run (n2n.finetune) on them."""
    model = noise_model(noise)
    noise_range = check_range(model, low, high)
    if not 1 <= steps <= MAX_STEPS:
        raise UserError(f"Steps must be between 1 and {MAX_STEPS}, got {steps}.")
    start = init_ref(init)  # a UserError of its own (outside the try: gr.Error is a ValueError)
    folder = workdir("runs", max_age_s=24 * 3600)
    try:  # settings first, before any upload is read
        configs = ft.run_configs(folder, mode, noise, noise_range, None if loss in (None, "", "auto") else loss,
                                 steps, start, twin, seed, cuda=torch.cuda.is_available())
    except ValueError as e:
        raise UserError(plain(e)) from None
    images = read_uploads(files, "images")
    targets = read_uploads(second_shots, "second shots") if mode == "pairs" else None
    try:
        prepared = ft.prepare(configs, images, targets)
    except ValueError as e:
        raise UserError(plain(e)) from None
    labels = ["N2N (noisy targets)" if mode != "single" else "Neighbor2Neighbor", "N2C (clean targets)"][:len(configs)]
    return Run(labels, folder, steps, prepared)


def stop_flag(request: gr.Request | None) -> threading.Event:
    event = STOP_FLAGS[session_key(request) or "anonymous"] = threading.Event()
    return event


def drop_stop_flag(request: gr.Request | None, event: threading.Event) -> None:
    """The run with `event` is over: forget its flag (unless a newer run of the session replaced it)."""
    key = session_key(request) or "anonymous"
    if STOP_FLAGS.get(key) is event:
        del STOP_FLAGS[key]


@gpu(duration=600)
def finetune(files, noise="gaussian", kind="synthetic", second_shots=None, range_low=API_DEFAULT_RANGE[0],
             range_high=API_DEFAULT_RANGE[1], loss="auto", steps=200, init="scratch", twin=False, seed=0,
             request: gr.Request = None):
    """Fine-tune a Noise2Noise model on the uploaded images for up to 2,000 steps (the app's one fine-tuning slot,
    minutes on a CPU); stream the curves, a preview and the time left; end with a checkpoint. The model belongs to
    the session that trained it. The run stops early when the visitor's share of the slot runs out (ui.budget:
    N2N_SLOT_S seconds per hour).

    Args:
        files: the images, 1 to 64 (at most 64 megapixels in all): clean ones, or noisy ones for the other modes.
        noise: the noise synthesised on clean images, also the validation noise: a corrupt_image noise name.
        kind: the data mode: "synthetic" (clean images), "pairs" (noisy, with second_shots), "single" or "zero-shot".
        second_shots: for "pairs": a second noisy shot of each scene, paired with `files` by sorted file name.
        range_low: the lowest noise level drawn per image, in the noise's units (0 to 50 left: the noise's range).
        range_high: the highest noise level drawn per image, in the noise's units.
        loss: "auto" (the one that fits the noise), "l2" (mean), "l1" (median), "l0" (mode) or "masked_l2".
        steps: training steps, 1 to 2000.
        init: "scratch", or the name of a model to start from (bundled, or fine-tuned in this session).
        twin: also train the clean-target twin (Noise2Clean) alongside, to compare the two.
        seed: the random seed, a whole number.
    Returns:
        the training loss by step (a plot)
        the validation PSNR (dB) by step (a plot)
        a preview: noisy | denoised by the model as it trains (PNG)
        the status in words: the step reached and the time left, then finished or stopped
        the checkpoint: a .zip of model.safetensors and config.json
        the fine-tuned model's name, for denoise_image in the same session
    """
    visitor = session_key(request) or "anonymous"
    left = budget.SLOT.check(visitor)
    held, stop = time.monotonic(), stop_flag(request)
    deadline = held + left

    def halted() -> bool:
        return stop.is_set() or time.monotonic() > deadline

    try:
        check_session(init, request)
        if kind == ft.ZERO_SHOT:
            yield from zero_shot_run(files, int(steps), halted)
            return
        run = prepare_run(files, second_shots, kind, noise, range_low, range_high, loss, int(steps), init, bool(twin),
                          int(seed or 0))
        yield run.outputs()
        try:
            for records in ft.lockstep(run.configs, halted, run.prepared.data):
                run.add(records)
                if run.due():
                    yield run.outputs()
        except FloatingPointError as e:  # diverged; its message names folders on this server: not for the visitor
            raise UserError(f"Training diverged and stopped ({str(e).split(';')[0]}); the model it started from is "
                           f"unchanged. Try fewer steps, another loss or other images.") from None
        except ValueError as e:
            raise UserError(str(e)) from None
        if not run.last:
            raise UserError("The run stopped before its first step.")
        name = f"finetuned-{noise}-{uuid.uuid4().hex[:6]}"
        for key, config in zip((name, f"{name}-n2c"), run.configs):
            add_finetuned(key, Path(config.out), request)
        done = "finished" if run.last[0].step >= run.steps else (
            "stopped" if stop.is_set() else f"stopped: your share of the slot ({budget.minutes(budget.SLOT.seconds)} "
            "per hour) ran out")
        yield run.outputs(f"{run.status()}\n\n**{done}**: `{name}` is ready; download it, use it in Denoise "
                          "or push it to the Hub.",
                          str(ft.package(run.configs, run.folder / f"{name}.zip", name)), name)
    finally:
        drop_stop_flag(request, stop)
        budget.SLOT.charge(visitor, time.monotonic() - held)


def zero_shot_run(files, steps: int, stopped):
    """Zero-Shot Noise2Noise on one noisy image, in a thread, until done or `stopped()`; stream its loss, end
    with the denoised PNG."""
    if not files or len(files) != 1:
        raise UserError("Zero-shot denoises one noisy image: upload exactly one.")
    if not 1 <= steps <= MAX_STEPS:
        raise UserError(f"Steps must be between 1 and {MAX_STEPS}, got {steps}.")
    path = files[0] if isinstance(files[0], str) else files[0].name
    noisy = read(path)
    colour = split_alpha(noisy)[0]
    run = Run(["zero-shot"], workdir(), steps)
    try:
        for record in ft.zero_shot_records(to_float(colour), steps, stopped):
            if record.stopped:
                yield run.outputs("**stopped**: zero-shot training was stopped before the end; no result.")
                return
            if record.done:
                break
            run.loss_points = [point | {"run": "zero-shot"} for point in record.losses]
            run.last = [record]
            yield run.outputs()
    except Exception as e:
        raise UserError(f"Zero-shot training failed: {e}") from None
    result = save_png(run.folder / f"{safe_name(Path(path).stem)}_zero_shot.png", record.result, noisy,
                      read_icc_profile(path))
    run.preview = str(write_image(run.folder / "preview.png", ft.preview_strip(
        [centre_crop(colour, ft.PREVIEW_SIZE), centre_crop(record.result, ft.PREVIEW_SIZE)])))
    yield run.outputs(f"{run.status()}\n\n**finished**: the denoised image is ready to download.", result, "")


def stop_run(request: gr.Request):
    event = STOP_FLAGS.get(session_key(request) or "anonymous")
    if event is not None:
        event.set()


def after_finetune(request: gr.Request):
    """The Denoise tab's lists, the new model among them (ui.registry keeps the session's models)."""
    return gr.Dropdown(choices=model_names(request)), gr.CheckboxGroup(choices=compare_choices(request))


def use_in_denoise(name, request: gr.Request):
    if not name or name not in FINETUNED:
        raise UserError("No fine-tuned model yet: run a fine-tuning first.")
    return gr.Dropdown(choices=model_names(request), value=name), gr.Textbox(value=""), gr.Tabs(selected="denoise")


def refresh_lists(request: gr.Request):
    names = model_names(request)
    return (gr.Dropdown(choices=names), gr.CheckboxGroup(choices=compare_choices(request)),
            gr.Dropdown(choices=["scratch", *names]))


def on_unload(request: gr.Request):
    stop_run(request)


def build(demo: gr.Blocks, denoiser: DenoiseTab, tabs: gr.Tabs) -> None:
    """The tab's components and events, inside the caller's gr.Tab; new models join `denoiser`'s lists."""
    with gr.Row():
        with gr.Column(scale=2):
            ft_files = gr.File(label="Images", file_count="multiple", file_types=PHOTO_TYPES, height=180,
                               elem_id="ft-files")
            ft_mode = gr.Radio(MODE_CHOICES, value="synthetic", label="What are these images?")
            ft_second = gr.File(label="Second noisy shots (same scenes; paired by sorted file name)",
                                file_count="multiple", file_types=PHOTO_TYPES, visible=False, height=140)
            ft_noise = gr.Dropdown(list(NOISE_MODELS), value="gaussian", label="Noise",
                                   info="synthesised on clean images; also the validation noise")
            with gr.Row():
                ft_low, ft_high = range_sliders("gaussian")
            ft_loss = gr.Dropdown(LOSS_CHOICES, value="auto", label="Loss",
                                  info="single noisy images and zero-shot use their own losses")
            ft_steps = gr.Slider(1, MAX_STEPS, value=200, step=1, label="Steps", elem_id="ft-steps")
            ft_init = gr.Dropdown(["scratch", *model_names()], value="scratch", label="Start from",
                                  allow_custom_value=True)
            ft_twin = gr.Checkbox(label="Train the clean-target twin alongside (Noise2Clean)")
            ft_seed = gr.Number(0, precision=0, label="Seed")
            with gr.Row():
                start_btn = gr.Button("Start", variant="primary")
                stop_btn = gr.Button("Stop", variant="stop")
        with gr.Column(scale=3):
            ft_status = gr.Markdown("Upload images, choose the settings and press Start.", label="Status",
                                    elem_id="status")
            with gr.Row():
                loss_plot = gr.LinePlot(x="step", y="loss", color="run", label="Training loss", color_title="",
                                        y_title="loss", elem_id="loss-plot")
                val_plot = gr.LinePlot(x="step", y="psnr", color="run", label="Validation PSNR", color_title="",
                                       y_title="PSNR (dB)", elem_id="val-plot")
            preview = gr.Image(label="Preview: noisy | denoised by the model as it trains", format="png",
                               interactive=False, height=220, elem_id="preview")
            with gr.Row(equal_height=True):
                ft_download = gr.File(label="Checkpoint (.zip: model.safetensors + config.json)", scale=2)
                ft_name = gr.Textbox(label="Fine-tuned model", interactive=False, scale=1)
            use_btn = gr.Button("Use in Denoise →")
            push.build(ft_name)

    private = {"api_visibility": "private"}
    ft_noise.input(range_sliders, ft_noise, [ft_low, ft_high], **private)
    ft_mode.change(lambda mode: gr.File(visible=mode == "pairs"), ft_mode, ft_second, **private)
    start_btn.click(finetune, [ft_files, ft_noise, ft_mode, ft_second, ft_low, ft_high, ft_loss, ft_steps, ft_init,
                               ft_twin, ft_seed],
                    [loss_plot, val_plot, preview, ft_status, ft_download, ft_name], api_name="finetune",
                    concurrency_limit=1, concurrency_id="finetune", show_progress="minimal",
                    ).success(after_finetune, None, [denoiser.model, denoiser.compare], **private)
    stop_btn.click(stop_run, None, None, queue=False, api_name="stop", api_visibility="undocumented")
    use_btn.click(use_in_denoise, ft_name, [denoiser.model, denoiser.hub_repo, tabs], **private)
    demo.load(refresh_lists, None, [denoiser.model, denoiser.compare, ft_init], **private)
    demo.unload(on_unload)
