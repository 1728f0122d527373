"""The Denoise tab: a model (listed, fine-tuned here, or from the Hub) beside the classical baselines,
scored against a clean reference when one is given.

Endpoints /denoise (image, model, Hub repo, compare with, clean reference, noise, parameter) and
/adapt (image, model, seconds, clean reference): the model fitted to this one photo for a few
seconds (Neighbor2Neighbor; on camera noise on the stride-2 sub-images, or, from the camera model, pseudo-clean
pairs of its own result), shown beside the pretrained one, and
the better of the two by a blind score (n2n.estimate.blind_psnr, no clean image needed; unreliable on camera
noise, as the summary says): n2n.adapt.adapt_photo does that work, adapt_image checks its inputs and charges the
visitor's share of the slot, and adapt_outputs formats the result. The download is the adapted result, the
summary and gallery mark the better one; the adapted model joins the visitor's model list, theirs alone.
On upload, the noise is estimated (n2n.estimate) to preset the baselines' noise level and choose the model that
fits, at its pixel-shuffle stride (camera noise: the camera model at the stride Stein's estimate reads
better, n2n.estimate.sure_stride, or a white-noise model at stride 2).
Endpoint /estimate (image): the upload's noise estimate in words and figures, for API and MCP callers (no
button: the upload shows it). Also wires the Corrupt tab's "Send A to Denoise", which fills this tab's inputs.
"""
from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import torch

from n2n import baselines, hub
from n2n.adapt import PSEUDO_CLEAN_STEPS, AdaptedPhoto, adapt_photo
from n2n.estimate import NoiseEstimate, estimate_noise, sure_stride
from n2n.infer import denoise, model_stride, resolve_precision
from n2n.io import read_icc_profile, split_alpha, to_float, with_alpha
from n2n.metrics import psnr, ssim
from n2n.noise import NOISE_MODELS
from ui import budget
from ui.common import (API_DEFAULT_PARAM, IMAGE_SOURCES, UserError, check_param, gpu, image_input, noise_model,
                       param_slider, read, safe_name, save_png, session_key, workdir)
from ui.corrupt import CorruptTab
from ui.registry import (BASELINE_LABELS, add_finetuned, check_session, compare_choices, init_ref, load,
                         model_names)

# What Adapt from camera did on real photos (benchmarks/results/adapt-real.md, `python -m benchmarks.adapt_real`)
PSEUDO_CLEAN_RECORD = ("on 26 real photos with clean references, this Adapt gained on 24, +0.65 dB on average, and the "
                       "blind score named the better result on 24")
# "Adapt to this photo": seconds of training per call (SECURITY.md: one fine-tuning slot, shared)
ADAPT_SECONDS = (5, 120)
ADAPT_DEFAULT_S = 60
# The centre crop on which the upload compares strides (four fp32 passes; 256² and 512² chose alike on the 26 real
# photos of ../shared/data/real)
STRIDE_SIDE = 256


@dataclass
class DenoiseTab:
    """What the Fine-tune tab and the batch accordion wire to: the model choices, the names of this
    session's models, the stride and the self-ensemble."""

    model: gr.Dropdown
    hub_repo: gr.Textbox
    compare: gr.CheckboxGroup
    stride: gr.Dropdown
    ensemble: gr.Checkbox


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# Pixel-shuffle choices: the model's own stride (its checkpoint's), or one given
STRIDE_CHOICES = [("the model's own", "auto"), ("1 (whole image)", "1"), ("2", "2"), ("3", "3"), ("4", "4")]


def check_stride(stride) -> int | None:
    """The stride a visitor chose (one of STRIDE_CHOICES' values: Gradio refuses any other) as n2n.denoise takes
    it: None for the model's own, else 1 to 4."""
    return None if stride in (None, "", "auto") else int(stride)


@gpu
def denoise_image(image, model="gaussian", hub_repo="", compare=None, clean=None, noise="gaussian",
                  param=API_DEFAULT_PARAM, stride="auto", ensemble=False, progress=gr.Progress(),
                  request: gr.Request = None):
    """Denoise an image with a Noise2Noise model, bundled or from the Hugging Face Hub, and with every method in
    `compare`; given a clean reference, score each result (PSNR in dB, SSIM). Bundled models: gaussian, poisson,
    bernoulli, impulse and text, each trained for that synthetic noise; camera, for real photos' noise; gaussian-n2c and
    camera-n2c, their twins trained on clean targets. estimate_image names the model and stride that fit an image.

    Args:
        image: the noisy image (PNG, JPEG, HEIC, WebP or TIFF; 8 or 16 bits, alpha kept; at most 16 megapixels).
        model: the model: a bundled one's name (e.g. gaussian, camera) or one fine-tuned in this session.
        hub_repo: a model on the Hugging Face Hub instead, "owner/name" or "owner/name@revision"; empty: `model`.
        compare: more methods to run beside it: model names, nlm (OpenCV non-local means), median (median filter).
        clean: the clean image, same size as `image`, to score the results against (optional).
        noise: the noise in the image, for nlm and median only: gaussian, poisson, bernoulli, impulse, text, camera.
        param: that noise's level, for nlm and median only (units as corrupt_image's; 25: the noise's default).
        stride: pixel-shuffle: "auto" (the model's own), "1" (whole image), "2" to "4" (stride² sub-images apart).
        ensemble: average the model over the 4 rotations × 2 flips: about +0.1 dB, 8 times slower.
    Returns:
        the noisy image and the denoised one (two PNG files)
        every result with its caption (a gallery of PNG files)
        the scores: method, PSNR (dB) and SSIM when `clean` is given, seconds
        the denoised image (a PNG of the input's size, bit depth and alpha)
        one sentence: where the model came from, what noise it was trained for, how it ran
    """
    noisy, profile = read(image, "noisy image"), read_icc_profile(image)
    stride = check_stride(stride)
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
        result = run_method(method, noisy, noise, param, progress, stride, bool(ensemble))
        seconds = time.perf_counter() - start
        path = save_png(folder / f"{stem}_denoised_{safe_name(method)}.png", result, noisy, profile)
        main = main or path
        row = score_row(method_label(method), reference, result, seconds)
        rows.append(row)
        caption = BASELINE_LABELS.get(method, method) + (
            f" · {row['PSNR (dB)']:.2f} dB" if reference is not None else "")
        gallery.append((path, caption))
    used = model_stride(loaded.model) if stride is None else stride
    source = describe_source(ref, loaded, used) + (" With the ×8 self-ensemble." if ensemble else "")
    return (image, main), gallery, pd.DataFrame(rows), main, source


@gpu(duration=180)
def adapt_image(image, model="gaussian", seconds=ADAPT_DEFAULT_S, clean=None,
                progress=gr.Progress(), request: gr.Request = None):
    """Fit a bundled model to one noisy photo alone for a few seconds (Neighbor2Neighbor; on camera noise its
    stride-2 sub-images, or from camera its own result re-photographed with simulated camera noise at the photo's
    ISO, a few steps) and denoise the photo with it, beside the pretrained model; a blind score (no clean image
    needed) says which of the two results is better. Runs in the app's one fine-tuning slot.

    Args:
        image: the noisy photo (PNG, JPEG, HEIC, WebP or TIFF; 8 or 16 bits, alpha kept; at most 16 megapixels).
        model: the bundled model to start from (e.g. gaussian, camera), or one fine-tuned in this session.
        seconds: seconds of training, 5 to 120.
        clean: the clean photo, same size as `image`, to score both results against (optional).
    Returns:
        the adapted result (a PNG of the photo's size, bit depth and alpha)
        the pretrained and the adapted results (two PNG files)
        every result with its caption, the better one marked (a gallery of PNG files)
        the scores: method, PSNR (dB) and SSIM when `clean` is given, blind score (dB, higher is better), seconds
        a summary saying which result to keep
        the session's model list and methods to compare, the adapted model among them
    """
    noisy, model = read(image, "noisy image"), (model or "").strip()
    init = adapt_init(model, seconds, request)
    reference, folder = clean_reference(clean, noisy), workdir("runs", max_age_s=24 * 3600)
    visitor = session_key(request) or "anonymous"
    budget.SLOT.check(visitor, float(seconds), "adapting")
    held = time.monotonic()
    try:  # the slot is held for the whole call: training, denoising and scoring twice, writing the files
        found = adapt_photo(init, noisy, folder, float(seconds),
                            lambda what, done, total, unit: progress((done, total), desc=what, unit=unit))
        return adapt_outputs(found, image, noisy, model, reference, folder, request)
    except FloatingPointError:
        raise UserError("Adapting diverged and stopped; the model it started from is unchanged. "
                        "Try a shorter time or another model.") from None
    finally:
        budget.SLOT.charge(visitor, time.monotonic() - held)


def adapt_init(model: str, seconds, request) -> str:
    """TrainConfig.init for adapting `model` (a listed model's name: a Hub repo cannot be adapted) for `seconds`,
    or a UserError saying what to choose instead."""
    if not model or model == "scratch":
        raise UserError(f"Adapt starts from a model: choose one of {', '.join(model_names(request))}.")
    check_session(model, request)
    init = init_ref(model)
    if seconds is None or not ADAPT_SECONDS[0] <= seconds <= ADAPT_SECONDS[1]:
        raise UserError(f"Adapt takes {ADAPT_SECONDS[0]} to {ADAPT_SECONDS[1]} seconds, got {seconds}.")
    return init


def adapt_outputs(found: AdaptedPhoto, image, noisy, model, reference, folder, request):
    """adapt_image's outputs, `found` formatted: adapt_photo's work on the visitor's `image` (decoded: `noisy`)
    from `model`. The adapted model named and made the session's; both results written as PNGs in `folder`."""
    name = f"adapted-{safe_name(model)[:24]}-{uuid.uuid4().hex[:6]}"
    add_finetuned(name, found.out, request)
    stem = safe_name(Path(image).stem)
    profile = read_icc_profile(image)
    adapted_path = save_png(folder / f"{stem}_adapted.png", found.adapted, noisy, profile)
    pretrained_path = save_png(folder / f"{stem}_pretrained_{safe_name(model)}.png", found.pretrained, noisy, profile)
    rows = [score_row("noisy input", reference, noisy, 0.0)] if reference is not None else []
    rows += [score_row(f"pretrained · {model}", reference, found.pretrained, 0.0, found.blind_pretrained),
             score_row(f"adapted · {name}", reference, found.adapted, found.seconds, found.blind_adapted)]

    def caption(label, row, which):  # the mark first: a long caption is cut at its end
        return (("better · " if which == found.better else "") + label
                + (f" · {row['PSNR (dB)']:.2f} dB" if "PSNR (dB)" in row else ""))
    gallery = [(image, caption("noisy input", rows[0], None) if reference is not None else "noisy input"),
               (pretrained_path, caption(f"pretrained · {model}", rows[-2], "pretrained")),
               (adapted_path, caption("adapted", rows[-1], "adapted"))]
    gain = (f" PSNR {rows[-2]['PSNR (dB)']:.2f} → {rows[-1]['PSNR (dB)']:.2f} dB against the clean reference."
            if reference is not None else "")
    return (adapted_path, (pretrained_path, adapted_path), gallery, pd.DataFrame(rows),
            adapt_summary(found, model, name, gain), gr.Dropdown(choices=model_names(request)),
            gr.CheckboxGroup(choices=compare_choices(request)))


def adapt_summary(found: AdaptedPhoto, model: str, name: str, gain: str = "") -> str:
    """The sentences under Adapt's result: what ran, which result to keep and why, where the model went."""
    scores = f"{found.blind_adapted:.3f} dB against the pretrained model's {found.blind_pretrained:.3f} dB"
    verdict = (f"Better: **the adapted result** (blind score {scores})" if found.better == "adapted" else
               f"Better: **the pretrained result**: adapting made the blind score worse ({scores}), so keep the "
               "pretrained model's (in the gallery; the download is the adapted one)")
    if found.camera_noise:
        verdict += (". This photo holds camera noise (correlated between neighbouring pixels), so the blind score is "
                    "Stein's unbiased risk estimate with noise shaped like the photo's, not masking (which favours "
                    "results that keep such noise); give a clean reference to be sure"
                    + (f" ({PSEUDO_CLEAN_RECORD})" if found.pseudo_clean else ""))
    blind = ("it reads how far each result is from a second shot of the scene, from the result's distance to the "
             "photo and how much the result moves when noise like the photo's is added" if found.camera_noise else
             "each of a quarter of the pixels is hidden from the model and its prediction compared with the noisy "
             "pixel")
    how = ("fitting its own result back from copies re-photographed with simulated camera noise at the photo's "
           "ISO (pseudo-clean pairs; Neighbor2Neighbor would learn this photo's correlated noise back)"
           if found.pseudo_clean else
           f"Neighbor2Neighbor on the photo alone{' (its stride-2 sub-images)' if found.stride > 1 else ''}")
    return (f"**{model}** adapted to this photo: {found.steps} step{'s' if found.steps != 1 else ''} "
            f"of {how} in {found.seconds:.0f} s.{gain} {verdict}. The blind score needs no clean image: {blind} "
            f"(higher is better; the noise caps it). The model **{name}** is now in your model list (yours only); the "
            "slider shows pretrained ↔ adapted.")


def estimate(image) -> NoiseEstimate:
    """`estimate_noise` on an uploaded image, suggesting from the visitor's models; camera noise's σ is read
    with the `camera` model (`removed_sigma`: loaded on camera noise only, on the device it is on), and its stride
    is the one Stein's estimate reads closer to a second shot (`sure_stride` on a STRIDE_SIDE² crop, 1 or 2: on
    the real photos, 1 for 25 DSLR crops and 2 for the one smartphone block; benchmarks/results/stride.md)."""
    names = model_names()
    camera = (lambda x: denoise(load("camera").model, x)) if "camera" in names else None
    noisy = read(image, "noisy image")
    found = estimate_noise(noisy, models=names, denoiser=camera)
    if found.noise == "camera" and found.model == "camera" and found.sigma >= 1:  # below, the probe is about 0
        model = load("camera").model
        stride = sure_stride(split_alpha(noisy)[0], lambda x, s: denoise(model, x, stride=s, precision="fp32"),
                             found.sigma, max_side=STRIDE_SIDE)
        found = dataclasses.replace(found, stride=None if stride == model_stride(model) else stride)
    return found


def estimate_upload(image):
    """On upload: the noise estimate in words; the suggested model and stride chosen, and the baselines'
    noise and level preset from it."""
    unchanged = gr.Markdown(""), gr.Dropdown(), gr.Slider(), gr.Dropdown(), gr.Dropdown()
    if not image:
        return unchanged
    try:
        found = estimate(image)
    except (gr.Error, ValueError):
        return unchanged
    at = f" at pixel-shuffle stride {found.stride}" if found.stride else ""
    text = (f"Noise estimate: {found.text}. Suggested model: **{found.model}**{at}, chosen for you "
            f"(the baselines are set to it).")
    return (gr.Markdown(text), gr.Dropdown(value=found.noise), param_slider(found.noise, found.param),
            gr.Dropdown(value=found.model) if found.model else gr.Dropdown(),
            gr.Dropdown(value=str(found.stride) if found.stride else "auto"))


def estimate_image(image):
    """Estimate the noise in an image blind, with no clean reference: which noise (gaussian, poisson, impulse or
    camera), its level, and the bundled model and pixel-shuffle stride that fit it, for denoise_image. Camera noise
    is told by reading stronger two pixels apart than between neighbours. The level `param` is in that noise's units,
    as corrupt_image takes it: σ (0–255 scale), λ (photons at full intensity), p (fraction of pixels) or stops.

    Args:
        image: the noisy image (PNG, JPEG, HEIC, WebP or TIFF; 8 or 16 bits; at least 20 × 20 pixels).
    Returns:
        one sentence: the noise and its level, the model and stride suggested
        the figures: kind, sigma (Gaussian-equivalent σ, 0–255 scale), param, model, stride (null: the model's own)
    """
    try:
        found = estimate(image)
    except ValueError as e:  # too small to tell
        raise UserError(f"Cannot estimate the noise: {e}.") from None
    at = f" at pixel-shuffle stride {found.stride}" if found.stride else ""
    figures = {"kind": found.noise, "sigma": found.sigma, "param": found.param, "model": found.model,
               "stride": found.stride}
    return f"Noise estimate: {found.text}. Suggested model: {found.model}{at}.", figures


def score_row(label: str, reference: np.ndarray | None, result: np.ndarray, seconds: float,
              blind: float | None = None) -> dict:
    row = {"method": label}
    if reference is not None:
        colour = to_float(split_alpha(result)[0])
        row |= {"PSNR (dB)": round(psnr(reference, colour), 2), "SSIM": round(ssim(reference, colour), 4)}
    if blind is not None:
        row |= {"blind score (dB)": round(blind, 3)}
    return row | {"seconds": round(seconds, 2)}


def describe_source(ref: str, loaded: hub.LoadedModel, stride: int = 1) -> str:
    """One line for the visitor: where the model came from, what it was trained for, how it ran."""
    config, note = loaded.config, loaded.note
    if loaded.origin == "bundled":
        where = "the bundled checkpoint in checkpoints/" + (f" ({note})" if note else "")
    elif loaded.origin == "hub":
        label = f"{loaded.repo}@{loaded.revision}" + (f":{loaded.subfolder}" if loaded.subfolder else "")
        where = f"the Hugging Face Hub ({label}{', ' + note if note else ''})"
    elif loaded.origin == "finetuned":
        where = "a model fine-tuned in this session"
    else:
        where = "a local checkpoint"
    targets = "clean targets (Noise2Clean)" if config.get("clean_targets") else "noisy targets (Noise2Noise)"
    steps = config.get("campaign", {}).get("total_steps") or config.get("steps")  # a campaign's steps in all
    device = next(loaded.model.parameters()).device
    precision = resolve_precision("auto", device)
    hardware = "GPU" if device.type == "cuda" else "CPU" + (" with native bf16" if precision == "bf16" else "")
    return (f"Model **{ref}** served from {where}: trained for {config.get('noise', '?')} noise with "
            f"{targets}, {f'{steps:,}' if isinstance(steps, int) else '?'} steps. Ran in {precision} on the {hardware}"
            + (f", on the {stride}² sub-images of pixel-shuffle stride {stride}." if stride > 1 else "."))


def run_method(method: str, noisy: np.ndarray, noise: str, param: float, progress,
               stride: int | None = None, ensemble: bool = False) -> np.ndarray:
    """Denoise `noisy` (HxWxC, own dtype) with a baseline or a model (at the pixel-shuffle `stride`, None:
    the model's own; with the ×8 self-ensemble when `ensemble`); same shape and dtype out."""
    if method in baselines.BASELINES:
        try:
            out = baselines.get_baseline(method)(to_float(split_alpha(noisy)[0]), noise, param)
        except ValueError as e:
            raise UserError(str(e)) from None
        return with_alpha(out, noisy)
    model = load(method).model.to(device())
    try:
        return denoise(model, noisy, stride=stride, ensemble=ensemble,
                       progress=lambda done, total: progress((done, total), desc=f"{method}: tiles", unit="tiles"))
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
    own = sent["noise"] in model_names()  # a synthetic noise gets its own model, at its own stride
    return (sent["noisy"], sent["clean"], sent["noise"], param_slider(sent["noise"], sent["param"]),
            gr.Accordion(open=True), gr.Tabs(selected="denoise"),
            gr.Dropdown(value=sent["noise"]) if own else gr.Dropdown(), gr.Dropdown(value="auto"))


def build(corrupted: CorruptTab, tabs: gr.Tabs) -> DenoiseTab:
    """The tab's components and events, inside the caller's gr.Tab; `corrupted` sends its images here."""
    names = model_names()
    default_model = "gaussian" if "gaussian" in names else (names[0] if names else None)
    with gr.Row():
        with gr.Column(scale=2):
            noisy = image_input(label="Noisy image", type="filepath", image_mode=None,
                                sources=IMAGE_SOURCES, height=300, elem_id="noisy-in")
            noisy_in = noisy.image
            model_dd = gr.Dropdown(names, value=default_model, label="Model", allow_custom_value=True,
                                   info="bundled models, and the ones you fine-tune here")
            hub_box = gr.Textbox("", label="…or a model on the Hugging Face Hub", placeholder="owner/name[@revision]")
            compare = gr.CheckboxGroup(compare_choices(), value=[], label="Compare with")
            with gr.Accordion("Clean reference and noise level (optional)", open=False) as ref_box:
                clean_ref = image_input(label="Clean reference, for PSNR and SSIM", type="filepath",
                                        image_mode=None, height=200).image
                base_noise = gr.Dropdown(list(NOISE_MODELS), value="gaussian",
                                         label="Noise in the image (tunes the classical baselines)")
                base_param = param_slider("gaussian")
                stride_dd = gr.Dropdown(STRIDE_CHOICES, value="auto", label="Pixel-shuffle stride",
                                        info="denoise the stride² sub-images apart: noise correlated between "
                                             "neighbours (real photos) looks pixel-independent there")
            estimate_md = gr.Markdown("", elem_id="estimate")
            estimate_json = gr.JSON(visible=False)  # the /estimate endpoint's figures (no UI: the upload shows words)
            ensemble_cb = gr.Checkbox(False, label="Best quality (8 passes, about 8× slower)", elem_id="ensemble",
                                      info="the model's results on the 4 rotations × 2 flips of the photo, averaged")
            denoise_btn = gr.Button("Denoise", variant="primary")
            with gr.Row(equal_height=True):
                adapt_btn = gr.Button("Adapt to this photo", scale=1, elem_id="adapt-btn")
                adapt_s = gr.Slider(*ADAPT_SECONDS, value=ADAPT_DEFAULT_S, step=5, label="seconds of training", scale=2,
                                    info="fits the model to this photo alone (Neighbor2Neighbor; camera: pseudo-clean "
                                         f"pairs, at most {PSEUDO_CLEAN_STEPS} steps)")
        with gr.Column(scale=3):
            slider = gr.ImageSlider(label="Noisy ↔ denoised (after Adapt: pretrained ↔ adapted)", format="png",
                                    type="filepath", interactive=False, max_height=520, elem_id="slider")
            source_md = gr.Markdown(label="Model source", elem_id="source")
            with gr.Row(equal_height=True):
                download = gr.File(label="Denoised (or adapted) PNG, full resolution", scale=3)
                gr.DeepLinkButton(scale=1)
            gallery = gr.Gallery(label="Every result", format="png", columns=4, height=260,
                                 object_fit="contain", elem_id="gallery")
            table = gr.Dataframe(label="Scores (PSNR and SSIM when a clean reference is known)",
                                 interactive=False, elem_id="scores")

    base_noise.input(param_slider, base_noise, base_param, api_visibility="private")
    noisy.on_upload(estimate_upload, [estimate_md, base_noise, base_param, model_dd, stride_dd],
                    api_visibility="private", show_progress="hidden")
    gr.on([], estimate_image, noisy_in, [estimate_md, estimate_json], api_name="estimate")  # API and MCP only
    corrupted.send.click(send_to_denoise, corrupted.sent,
                         [noisy_in, clean_ref, base_noise, base_param, ref_box, tabs, model_dd, stride_dd],
                         api_visibility="private")
    denoise_btn.click(denoise_image, [noisy_in, model_dd, hub_box, compare, clean_ref, base_noise, base_param,
                                      stride_dd, ensemble_cb],
                      [slider, gallery, table, download, source_md], api_name="denoise")
    adapt_btn.click(adapt_image, [noisy_in, model_dd, adapt_s, clean_ref],
                    [download, slider, gallery, table, source_md, model_dd, compare], api_name="adapt",
                    concurrency_limit=1, concurrency_id="finetune")
    return DenoiseTab(model_dd, hub_box, compare, stride_dd, ensemble_cb)
