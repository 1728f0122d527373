"""The Denoise tab: a model (listed, fine-tuned here, or from the Hub) beside the classical baselines,
scored against a clean reference when one is given.

Endpoint /denoise (image, model, Hub repo, compare with, clean reference, noise, parameter).
Also wires the Corrupt tab's "Send A to Denoise", which fills this tab's inputs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import torch

from n2n import baselines, hub
from n2n.infer import denoise, resolve_precision
from n2n.io import from_float, split_alpha, to_float
from n2n.metrics import psnr, ssim
from n2n.noise import NOISE_MODELS
from ui.common import (API_DEFAULT_PARAM, IMAGE_SOURCES, UserError, check_param, gpu, image_input, noise_model,
                       param_slider, read, safe_name, save_png, workdir)
from ui.corrupt import CorruptTab
from ui.registry import BASELINE_LABELS, FINETUNED, check_session, compare_choices, load, model_names


@dataclass
class DenoiseTab:
    """What the Fine-tune tab wires to: the model choices."""

    model: gr.Dropdown
    hub_repo: gr.Textbox
    compare: gr.CheckboxGroup


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@gpu
def denoise_image(image, model="gaussian", hub_repo="", compare=None, clean=None, noise="gaussian",
                  param=API_DEFAULT_PARAM, progress=gr.Progress(), request: gr.Request = None):
    """Denoise `image` with `model` (or `hub_repo`), and with every method in `compare`; score them."""
    noisy = read(image, "noisy image")
    ref = (hub_repo or "").strip() or model
    for method in [ref, *(compare or [])]:
        check_session(method, request)
    loaded = load(ref)
    param = check_param(noise_model(noise), param)
    reference = clean_reference(clean, noisy)
    folder, stem = workdir(), safe_name(Path(image).stem)
    rows, gallery, main = [], [(image, "noisy input")], None
    if reference is not None:
        rows.append(score_row("noisy input", reference, noisy, 0.0))
        gallery = [(image, f"noisy input · {rows[0]['PSNR (dB)']:.2f} dB")]
    for method in dict.fromkeys([ref, *(compare or [])]):
        start = time.perf_counter()
        result = run_method(method, noisy, noise, param, progress)
        seconds = time.perf_counter() - start
        path = save_png(folder / f"{stem}_denoised_{safe_name(method)}.png", result, noisy)
        main = main or path
        row = score_row(method_label(method), reference, result, seconds)
        rows.append(row)
        caption = BASELINE_LABELS.get(method, method) + (f" · {row['PSNR (dB)']:.2f} dB" if reference is not None else "")
        gallery.append((path, caption))
    return (image, main), gallery, pd.DataFrame(rows), main, describe_source(ref, loaded)


def score_row(label: str, reference: np.ndarray | None, result: np.ndarray, seconds: float) -> dict:
    row = {"method": label}
    if reference is not None:
        colour = to_float(split_alpha(result)[0])
        row |= {"PSNR (dB)": round(psnr(reference, colour), 2), "SSIM": round(ssim(reference, colour), 4)}
    return row | {"seconds": round(seconds, 2)}


def describe_source(ref: str, loaded: hub.LoadedModel) -> str:
    src, config = loaded.source, loaded.config
    note = src[src.index(" (") + 2:-1] if src.endswith(")") and " (" in src else ""
    if src.startswith("bundled:"):
        where = "the bundled checkpoint in checkpoints/" + (f" ({note})" if note else "")
    elif src.startswith("hub:"):
        where = f"the Hugging Face Hub ({src[4:].split(' (')[0]}{', ' + note if note else ''})"
    elif ref in FINETUNED:
        where = "a model fine-tuned in this session"
    else:
        where = "a local checkpoint"
    targets = "clean targets (Noise2Clean)" if config.get("clean_targets") else "noisy targets (Noise2Noise)"
    device = next(loaded.model.parameters()).device
    precision = resolve_precision("auto", device)
    hardware = "GPU" if device.type == "cuda" else "CPU" + (" with native bf16" if precision == "bf16" else "")
    return (f"Model **{ref}** served from {where}: trained for {config.get('noise', '?')} noise with "
            f"{targets}, {config.get('steps', '?')} steps. Ran in {precision} on the {hardware}.")


def run_method(method: str, noisy: np.ndarray, noise: str, param: float, progress) -> np.ndarray:
    """Denoise `noisy` (HxWxC, own dtype) with a baseline or a model; same shape and dtype out."""
    if method in baselines.BASELINES:
        colour, alpha = split_alpha(noisy)
        try:
            out = baselines.get_baseline(method)(to_float(colour), noise, param)
        except ValueError as e:
            raise UserError(str(e)) from None
        out = from_float(out, colour.dtype)
        return out if alpha is None else np.concatenate([out, alpha], axis=2)
    model = load(method).model.to(device())
    try:
        return denoise(model, noisy, progress=lambda done, total: progress((done, total), desc=f"{method}: tiles", unit="tiles"))
    except FloatingPointError as e:  # NaN weights, e.g. from a run that diverged
        raise UserError(f"Model {method!r} cannot denoise: {e}") from None


def method_label(method: str) -> str:
    return BASELINE_LABELS.get(method, f"n2n · {method}")


def clean_reference(path, noisy: np.ndarray) -> np.ndarray | None:
    """The clean reference as float colour channels, or None (absent, or not matching the noisy image)."""
    if not path:
        return None
    clean = to_float(split_alpha(read(path, "clean reference"))[0])
    if clean.shape != split_alpha(noisy)[0].shape:
        gr.Warning(f"The clean reference is {clean.shape[1]}×{clean.shape[0]}×{clean.shape[2]}, the noisy image "
                   f"{noisy.shape[1]}×{noisy.shape[0]}×{split_alpha(noisy)[0].shape[2]}: PSNR and SSIM left out.")
        return None
    return clean


def send_to_denoise(sent):
    """The Corrupt tab's noisy A, its clean image and its noise, into this tab's inputs; this tab shown."""
    if not sent:
        raise UserError("Nothing to send yet: corrupt an image first.")
    return (sent["noisy"], sent["clean"], sent["noise"], param_slider(sent["noise"], sent["param"]),
            gr.Accordion(open=True), gr.Tabs(selected="denoise"))


def build(corrupted: CorruptTab, tabs: gr.Tabs) -> DenoiseTab:
    """The tab's components and events, inside the caller's gr.Tab; `corrupted` sends its images here."""
    names = model_names()
    default_model = "gaussian" if "gaussian" in names else (names[0] if names else None)
    with gr.Row():
        with gr.Column(scale=2):
            noisy_in = image_input(label="Noisy image", type="filepath", image_mode=None,
                                   sources=IMAGE_SOURCES, height=300, elem_id="noisy-in")
            model_dd = gr.Dropdown(names, value=default_model, label="Model", allow_custom_value=True,
                                   info="bundled models, and the ones you fine-tune here")
            hub_box = gr.Textbox("", label="…or a model on the Hugging Face Hub", placeholder="owner/name[@revision]")
            compare = gr.CheckboxGroup(compare_choices(), value=[], label="Compare with")
            with gr.Accordion("Clean reference and noise level (optional)", open=False) as ref_box:
                clean_ref = image_input(label="Clean reference, for PSNR and SSIM", type="filepath",
                                        image_mode=None, height=200)
                base_noise = gr.Dropdown(list(NOISE_MODELS), value="gaussian",
                                         label="Noise in the image (tunes the classical baselines)")
                base_param = param_slider("gaussian")
            denoise_btn = gr.Button("Denoise", variant="primary")
        with gr.Column(scale=3):
            slider = gr.ImageSlider(label="Noisy ↔ denoised", format="png", type="filepath",
                                    interactive=False, max_height=520, elem_id="slider")
            source_md = gr.Markdown(label="Model source", elem_id="source")
            with gr.Row(equal_height=True):
                download = gr.File(label="Denoised PNG, full resolution", scale=3)
                gr.DeepLinkButton(scale=1)
            gallery = gr.Gallery(label="Every result", format="png", columns=4, height=260,
                                 object_fit="contain", elem_id="gallery")
            table = gr.Dataframe(label="Scores (PSNR and SSIM when a clean reference is known)",
                                 interactive=False, elem_id="scores")

    base_noise.input(param_slider, base_noise, base_param, api_visibility="private")
    corrupted.send.click(send_to_denoise, corrupted.sent, [noisy_in, clean_ref, base_noise, base_param, ref_box, tabs],
                         api_visibility="private")
    denoise_btn.click(denoise_image, [noisy_in, model_dd, hub_box, compare, clean_ref, base_noise, base_param],
                      [slider, gallery, table, download, source_md], api_name="denoise")
    return DenoiseTab(model_dd, hub_box, compare)
