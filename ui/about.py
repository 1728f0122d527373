"""The About tab: the idea of Noise2Noise, the noise models and their losses, the papers."""
from __future__ import annotations

import gradio as gr

from n2n.noise import NOISE_MODELS

ABOUT_TABLE = "\n".join(f"| {m.name} | {m.param}: {m.units} | {m.noise_range[0]:g} to {m.noise_range[1]:g} | {m.loss} |"
                        for m in NOISE_MODELS.values())

ABOUT = f"""## The idea
A denoiser trained with a loss learns the statistic of the targets that the loss is minimised by.
With **noisy** targets whose noise averages out, that statistic is the clean image: so two noisy shots
of the same scene are enough to train on, and the result is as good as training with clean targets.

- **L2 loss → the mean**: zero-mean noise (Gaussian, Poisson).
- **L1 loss → the median**: noise that covers under half of the pixels (text overlay).
- **annealed L0 loss → the mode**: random-valued impulse noise, where the clean value is the most frequent.
- **L2 on the surviving pixels**: multiplicative Bernoulli noise (dropped pixels carry no information).

The **Learn** tab shows this without any training: N noisy copies of one photo combined per pixel as each
loss would combine noisy targets (mean, median, mode), with their PSNR as N grows.

| noise | parameter | training range | loss |
|---|---|---|---|
{ABOUT_TABLE}

The Fine-tune tab also trains from **single** noisy images (Neighbor2Neighbor, Huang et al. 2021) or from
**one** noisy image alone (Zero-Shot Noise2Noise, Mansour & Heckel 2023), and can train the clean-target
twin (Noise2Clean) beside Noise2Noise, so both validation curves show live. In the Denoise tab,
**Adapt to this photo** runs Neighbor2Neighbor from the chosen model on your one photo for up to two
minutes: a noise the model was not trained for (a mixture, a level beyond its range) is learnt from
the photo itself.

PSNR is measured as papers report it: on 8-bit output, per image. All images pass through lossless PNG.

**Paper:** [arXiv:1803.04189](https://arxiv.org/abs/1803.04189) · **Official code:**
[NVlabs/noise2noise](https://github.com/NVlabs/noise2noise)
"""


def build() -> None:
    """The tab's text, inside the caller's gr.Tab."""
    gr.Markdown(ABOUT)
