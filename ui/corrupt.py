"""The Corrupt tab: two independent noisy realisations of a clean image, a Noise2Noise training pair.

Endpoint /corrupt (image, noise, parameter, seed). "Send A to Denoise" is wired by the Denoise tab.
"""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import numpy as np

from n2n.io import read_icc_profile, split_alpha, to_float, write_image
from n2n.metrics import psnr
from n2n.noise import NOISE_MODELS, corrupt
from ui.common import (API_DEFAULT_PARAM, IMAGE_SOURCES, WORK, check_param, image_input, noise_model, param_slider,
                       read, save_png, workdir)

EXAMPLES = ("astronaut", "chelsea", "coffee", "rocket")


@dataclass
class CorruptTab:
    """What the other tabs wire to: the send button and what it sends."""

    send: gr.Button
    sent: gr.State  # {"clean", "noisy", "noise", "param"} of the last corruption, or None


def example_images() -> list[str]:
    """scikit-image's sample photos as PNG files, written on first use."""
    import skimage.data

    folder = WORK / "examples"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in EXAMPLES:
        path = folder / f"{name}.png"
        if not path.is_file():
            write_image(path, getattr(skimage.data, name)())
        paths.append(str(path))
    return paths


def corrupt_image(image, noise="gaussian", param=API_DEFAULT_PARAM, seed=0):
    """Two independent noisy realisations of a clean image (a Noise2Noise training pair) and their PSNR against it.
    Noise levels, each in its noise's units: gaussian σ 0–100 on the 0–255 scale (default 25); poisson λ 1–100,
    photons at full intensity, higher is less noise (30); bernoulli p 0–0.99, the fraction of pixels dropped (0.5);
    impulse p 0–0.99, the fraction replaced by random values (0.5); text p 0–0.9, the fraction covered by text
    (0.25); camera 0–9, the ISO in stops above ISO 100 (4: ISO 1600), a simulated camera's raw noise, demosaicing
    and JPEG.

    Args:
        image: the clean image (PNG, JPEG, HEIC, WebP or TIFF; 8 or 16 bits, alpha kept; at most 16 megapixels).
        noise: the noise to add: gaussian, poisson, bernoulli, impulse, text or camera.
        param: the noise level in that noise's units (above); 25 with another noise than gaussian: its default.
        seed: the random seed, a whole number: the same seed gives the same noise.
    Returns:
        noisy realisation A (a PNG of the image's size, bit depth and alpha)
        noisy realisation B (independent of A)
        the PSNR of A against the clean image (dB)
        the PSNR of B against the clean image (dB)
    """
    clean = read(image)
    model = noise_model(noise)
    param = check_param(model, param)
    colour = to_float(split_alpha(clean)[0])
    rng = np.random.default_rng(int(seed or 0))
    noisy = [corrupt(colour, noise, param, rng) for _ in range(2)]
    folder = workdir()
    profile = read_icc_profile(image)
    paths = [save_png(folder / f"noisy_{k}.png", n, clean, profile) for k, n in zip("AB", noisy)]  # clean's form
    scores = [round(psnr(colour, n), 2) for n in noisy]
    return paths[0], paths[1], scores[0], scores[1], {"clean": image, "noisy": paths[0], "noise": noise, "param": param}


def build() -> CorruptTab:
    """The tab's components and events, inside the caller's gr.Tab."""
    sent = gr.State(None)
    with gr.Row():
        with gr.Column(scale=2):
            clean_in = image_input(label="Clean image", type="filepath", image_mode=None,
                                   sources=IMAGE_SOURCES, height=300, elem_id="clean-in").image
            gr.Examples([[p] for p in example_images()], inputs=clean_in, example_labels=list(EXAMPLES),
                        cache_examples=False)
            noise_dd = gr.Dropdown(list(NOISE_MODELS), value="gaussian", label="Noise")
            param = param_slider("gaussian", elem_id="param")
            seed = gr.Number(0, precision=0, label="Seed")
            corrupt_btn = gr.Button("Corrupt", variant="primary")
        with gr.Column(scale=3):
            with gr.Row(equal_height=True):
                noisy_a = gr.Image(label="Noisy realisation A", format="png", type="filepath",
                                   interactive=False, height=340, elem_id="noisy-a")
                noisy_b = gr.Image(label="Noisy realisation B", format="png", type="filepath",
                                   interactive=False, height=340, elem_id="noisy-b")
            with gr.Row():
                psnr_a = gr.Number(label="PSNR of A vs clean (dB)", precision=2, interactive=False)
                psnr_b = gr.Number(label="PSNR of B vs clean (dB)", precision=2, interactive=False)
            gr.Markdown("A and B are independent draws of the same noise: a Noise2Noise training pair.")
            send_btn = gr.Button("Send A to Denoise →")

    noise_dd.input(param_slider, noise_dd, param, api_visibility="private")
    corrupt_btn.click(corrupt_image, [clean_in, noise_dd, param, seed], [noisy_a, noisy_b, psnr_a, psnr_b, sent],
                      api_name="corrupt")
    return CorruptTab(send_btn, sent)
