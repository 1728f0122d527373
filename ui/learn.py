"""The Learn tab: the paper's claims without training. N noisy copies of one image combined as the
losses would combine noisy targets: L2 → the mean, L1 → the median, annealed L0 → the mode
(n2n.learn), each with its PSNR, the PSNR against N, and why the app trains each noise as it does.

Endpoint /learn (image, noise, parameter, N, seed). Claim (4), endpoint /independence (image, seed): Noise2Noise
needs noise independent between a pair's pixels; camera noise is not, between neighbours, until pixel-shuffled.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import pandas as pd

from n2n.io import split_alpha, to_float, write_image
from n2n.learn import MAX_COPIES, STATISTIC_LOSS, combine, independence, mode_window
from n2n.noise import NOISE_MODELS
from ui.common import (API_DEFAULT_PARAM, IMAGE_SOURCES, UserError, check_param, image_input, noise_model,
                       param_slider, read, workdir)
from ui.corrupt import EXAMPLES, example_images

NOISES = ("gaussian", "text", "impulse")  # the three claims; Poisson tells Gaussian's story 4x slower
MAX_SIDE = 512  # larger images are reduced to this many pixels a side: N copies of them are held at once
DEFAULT_N = 16
PSNR_LABEL = "PSNR vs clean (dB)"
PLOT_CAP = 60.0  # PSNR drawn no higher (identical images have an infinite PSNR)
LOSS_NAMES = {"l2": "L2", "l1": "L1", "l0": "annealed L0"}
LABELS = {stat: f"{stat} ({LOSS_NAMES[loss]})" for stat, loss in STATISTIC_LOSS.items()}
COLOURS = {LABELS["mean"]: "#2563eb", LABELS["median"]: "#16a34a", LABELS["mode"]: "#dc2626"}

# why the loss the app trains each noise with fits it (n2n.noise: NoiseModel.loss)
REASONS = {
    "gaussian": "Gaussian noise is zero-mean, so the mean of the noisy targets is the clean image, and of the "
                "three statistics the mean finds it from the fewest copies.",
    "text": "the text covers a pixel in fewer than half of the copies, so the median of the targets is the clean "
            "value, where the mean blends the letters' colours in.",
    "impulse": "each copy replaces a pixel by a random colour, spread over all values, while the clean value "
               "repeats: the most frequent value is the clean one even when most copies are hit, where the mean "
               "and the median are pulled towards grey.",
}
# why the other statistics do not fit (statistic, noise)
NOT_THIS = {
    ("mean", "text"): "the letters' colours are averaged in, so grey ghosts of them stay however many copies "
                      "there are.",
    ("mean", "impulse"): "every random value pulls the mean towards mid-grey, however many copies there are.",
    ("median", "gaussian"): "the median is centred on the clean value too, but from N copies it is noisier than "
                            "the mean (about 1.25× its error).",
    ("median", "impulse"): "the median is the clean value only where fewer than half of the copies are hit (or "
                           "in mid-tones); elsewhere it is pulled towards grey.",
    ("mode", "gaussian"): "the peak of a smooth bell is found only roughly from N samples (here: the densest "
                          "⌈√N⌉ of them), so the mode gains far less from more copies than the mean.",
    ("mode", "text"): "the clean value is the most frequent one, so the mode is clean too; but the median finds "
                      "it as well while text covers under half of the copies, and L1 needs no annealing.",
}


def explain(statistic: str, noise: str) -> str:
    """One or two sentences under the `statistic` image: the loss it is the optimum of, and whether
    (and why) the app trains `noise` with that loss."""
    loss = STATISTIC_LOSS[statistic]
    head = f"**{LOSS_NAMES[loss]} → the {statistic}.** "
    if NOISE_MODELS[noise].loss == loss:
        return head + (f"**The app trains {noise} noise with {LOSS_NAMES[loss]}** (`n2n.losses.{loss}`): "
                       f"{REASONS[noise]}")
    used = LOSS_NAMES[NOISE_MODELS[noise].loss]
    return head + f"The app trains {noise} noise with {used} instead: {NOT_THIS[statistic, noise]}"


def working_image(image: np.ndarray) -> tuple[np.ndarray, str]:
    """The colour channels of `image` as float32 in [0, 1], reduced to at most MAX_SIDE a side
    (area averaging); and a note saying so, or ""."""
    colour = to_float(split_alpha(image)[0])
    h, w = colour.shape[:2]
    if max(h, w) <= MAX_SIDE:
        return colour, ""
    scale = MAX_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(colour, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], -1)
    return small, f" (reduced from {w}×{h})"


def write_png(path: Path, image: np.ndarray) -> str:
    """`image` (float, [0, 1]) as an 8-bit PNG, written fast (n2n.io.write_image): these are transient views."""
    return str(write_image(path, image, bit_depth=8, fast=True))


def db(value: float) -> float | None:
    """A PSNR for a gr.Number: None when infinite (identical images; the note under it says so)."""
    return round(value, 2) if math.isfinite(value) else None


def plot_frame(curve: list[dict]) -> pd.DataFrame:
    rows = [{"N": r["N"], "PSNR (dB)": min(r["psnr"], PLOT_CAP), "combined as": LABELS[r["statistic"]]}
            for r in curve]
    return pd.DataFrame(rows, columns=["N", "PSNR (dB)", "combined as"]).astype(
        {"N": "int64", "PSNR (dB)": "float64", "combined as": "str"})


def learn(image, noise="gaussian", param=API_DEFAULT_PARAM, n=DEFAULT_N, seed=0):
    """N noisy copies of a clean image combined as mean, median and mode, as the L2, L1 and annealed L0 losses
    combine noisy targets (the Noise2Noise paper's claim): one copy and the three combinations (PNG), their PSNR
    (dB; None when identical to the clean image), the PSNR-vs-N plot, a sentence under each combination, and a
    summary. Images over 512 pixels a side are reduced.

    Args:
        image: the clean image (PNG, JPEG, HEIC, WebP or TIFF; at most 16 megapixels).
        noise: gaussian, text or impulse.
        param: the noise level in its units, as corrupt_image's (25 with text or impulse: the noise's default).
        n: the number of noisy copies, 1 to 64.
        seed: the random seed, a whole number.
    """
    if noise not in NOISES:
        raise UserError(f"The Learn tab shows {', '.join(NOISES)} noise; got {noise!r}.")
    model = noise_model(noise)
    param = check_param(model, param)
    if n is None or not 1 <= n <= MAX_COPIES or n != int(n):
        raise UserError(f"N is a whole number of copies from 1 to {MAX_COPIES}, got {n}.")
    n = int(n)
    clean, reduced = working_image(read(image))
    start = time.perf_counter()
    result = combine(clean, noise, param, n, np.random.default_rng(int(seed or 0)))
    folder = workdir()
    paths = [write_png(folder / f"{name}.png", img) for name, img in [("noisy", result.noisy), *result.images.items()]]
    seconds = time.perf_counter() - start
    scores = result.psnr
    best = max(scores[s] for s in STATISTIC_LOSS)
    winners = [s for s in STATISTIC_LOSS if scores[s] >= best - 0.05]
    won = " and ".join(f"the {s}" for s in winners) + (" win" if len(winners) > 1 else " wins")
    h, w = clean.shape[:2]
    summary = (f"{n} noisy cop{'y' if n == 1 else 'ies'} of this {w}×{h} image{reduced} with {noise} noise "
               f"({model.param} = {param:g}): **{won}** "
               f"({'identical to the clean image' if math.isinf(best) else f'{best:.2f} dB'}; one copy: "
               f"{scores['noisy']:.2f} dB)."
               + (f" The mode is read from the densest {mode_window(n)} of the {n} values." if n > 2 else "")
               + f" Computed in {seconds:.2f} s.")
    notes = [("*PSNR ∞: identical to the clean image.* " if math.isinf(scores[s]) else "") + explain(s, noise)
             for s in STATISTIC_LOSS]
    return (*paths, *(db(scores[s]) for s in ("noisy", *STATISTIC_LOSS)), plot_frame(result.curve), *notes, summary)


def independence_check(image, seed=0):
    """Whether noise is independent between the pixels a training pair is drawn from, on a clean image: Gaussian
    (pixel-independent) and camera noise, each one's correlation between neighbours and between Neighbor2Neighbor's
    sub-images, at stride 1 and after pixel-shuffle; the two noises as pictures (amplified 4× around grey), a
    table, and a sentence for each.

    Args:
        image: the clean image (PNG, JPEG, HEIC, WebP or TIFF; at most 16 megapixels; over 512 pixels a side: reduced).
        seed: the random seed, a whole number.
    """
    clean, reduced = working_image(read(image))
    start = time.perf_counter()
    rows = independence(clean, np.random.default_rng(int(seed or 0)))
    folder = workdir()
    pictures = [write_png(folder / f"noise_{r['noise']}.png", np.clip(0.5 + 4 * r["noise_image"], 0, 1)) for r in rows]
    table = pd.DataFrame([{"noise": f"{r['noise']} ({NOISE_MODELS[r['noise']].param} = {r['param']:g})",
                           "neighbours": round(r["neighbours"], 3),
                           "Neighbor2Neighbor pairs": round(r["pairs"], 3),
                           "pairs after pixel-shuffle (stride 2)": round(r["pairs_stride_2"], 3)} for r in rows])
    white, camera = rows
    text = (f"**Noise2Noise needs noise independent between the input and its target.** Gaussian noise is drawn "
            f"pixel by pixel: neighbours are uncorrelated ({white['neighbours']:+.2f}), so Neighbor2Neighbor can "
            f"train on two neighbouring sub-images of one photo. Camera noise is spread over neighbours by "
            f"demosaicing, sharpening and JPEG ({camera['neighbours']:+.2f}): the two sub-images share "
            f"{camera['pairs']:+.2f} of their noise, and a network trained on them learns to copy it back. "
            f"Pixel-shuffling first (every second pixel, stride 2) brings that down to "
            f"{camera['pairs_stride_2']:+.2f}, why n2n adapts and denoises real photos at a stride. "
            f"On this image{reduced}, in {time.perf_counter() - start:.2f} s.")
    return *pictures, table, text


def build() -> None:
    """The tab's components and events, inside the caller's gr.Tab."""
    examples = example_images()
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            clean_in = image_input(label="Clean image", type="filepath",
                                   image_mode=None, sources=IMAGE_SOURCES, height=240, value=examples[0],
                                   elem_id="learn-in").image
            gr.Examples([[p] for p in examples], inputs=clean_in, example_labels=list(EXAMPLES),
                        cache_examples=False)
        with gr.Column(scale=1, min_width=260):
            noise_dd = gr.Dropdown(list(NOISES), value="gaussian", label="Noise", elem_id="learn-noise")
            param = param_slider("gaussian", elem_id="learn-param")
            copies = gr.Slider(1, MAX_COPIES, value=DEFAULT_N, step=1, label="N: independent noisy copies",
                               elem_id="learn-n")
            seed = gr.Number(0, precision=0, label="Seed")
            learn_btn = gr.Button("Combine the copies", variant="primary", elem_id="learn-btn")
        with gr.Column(scale=2):
            gr.Markdown("A network trained on noisy targets learns, for each input, the statistic of those "
                        "targets that its loss is minimised by: **L2** the mean, **L1** the median, **annealed "
                        "L0** the mode. Here the targets are N noisy copies of one image, combined per pixel "
                        "without any training: which statistic gives back the clean image depends on the noise. "
                        "(Images larger than 512 pixels a side are reduced to it.)")
            summary = gr.Markdown("", elem_id="learn-summary")
            plot = gr.LinePlot(x="N", y="PSNR (dB)", color="combined as", color_map=COLOURS, color_title="",
                               label="PSNR against N (on 16,384 sampled values; ∞ drawn at 60 dB)",
                               y_title="PSNR (dB)", x_title="N copies", elem_id="learn-plot")
    images, numbers, notes = [], [], []
    with gr.Row():
        for key, label in [("noisy", "One noisy copy"), *((s, LABELS[s][0].upper() + LABELS[s][1:])
                                                          for s in STATISTIC_LOSS)]:
            with gr.Column(min_width=200):
                images.append(gr.Image(label=label, format="png", type="filepath", interactive=False, height=280,
                                       elem_id=f"learn-{key}"))
                numbers.append(gr.Number(label=PSNR_LABEL, precision=2, interactive=False,
                                         elem_id=f"learn-psnr-{key}"))
                if key != "noisy":
                    notes.append(gr.Markdown("", elem_id=f"learn-note-{key}"))
                else:
                    gr.Markdown("One of the N independent draws of the noise, each a training target.")

    gr.Markdown("### (4) Is the noise independent between the pixels a pair is drawn from?")
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            independence_btn = gr.Button("Measure on this image", elem_id="independence-btn")
            independence_md = gr.Markdown("", elem_id="independence-summary")
        pictures = [gr.Image(label=label, format="png", type="filepath", interactive=False, height=240,
                             elem_id=f"independence-{key}")
                    for key, label in (("gaussian", "Gaussian noise (4× around grey)"),
                                       ("camera", "Camera noise (4× around grey)"))]
    independence_table = gr.Dataframe(label="Correlation of the noise", interactive=False,
                                      elem_id="independence-table")
    independence_btn.click(independence_check, [clean_in, seed], [*pictures, independence_table, independence_md],
                           api_name="independence")

    inputs, outputs = [clean_in, noise_dd, param, copies, seed], [*images, *numbers, plot, *notes, summary]
    learn_btn.click(learn, inputs, outputs, api_name="learn")  # first, so that the name is not taken
    noise_dd.input(param_slider, noise_dd, param, api_visibility="private").then(
        learn, inputs, outputs, api_visibility="private")
    copies.release(learn, inputs, outputs, api_visibility="private")
