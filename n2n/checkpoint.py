"""The checkpoint on disk: a directory holding `config.json` and `model.safetensors` (and README.md,
its model card). Saving, loading with checks, and the errors; no network (n2n.hub finds checkpoints
by name, on the Hub or bundled).

`config.json` holds the architecture, its arguments, the noise it was trained for, the training
budget and eval results. Loading checks the config and the weights' size before anything is built
or read whole, uses strict key checks and never unpickles anything.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from .infer import STRIDES
from .io import write_atomic
from .models import MODELS, allowed_args, build_model, describe
from .noise import NOISE_MODELS

CONFIG_NAME, WEIGHTS_NAME, CARD_NAME = "config.json", "model.safetensors", "README.md"
# Limits on what a checkpoint (a Hub repo or a folder) may hold, checked before anything is built or read whole.
MAX_WEIGHTS_BYTES = 16 * 1024**2  # 4× the bundled U-Net (4.0 MB); an SRResNet at its defaults is 4.9 MB
MAX_CONFIG_BYTES = 256 * 1024  # the bundled config.json files are 2 kB


class CheckpointError(ValueError):
    """A model reference that cannot be resolved or loaded; the message says why."""


@dataclass
class LoadedModel:
    """A loaded checkpoint and where it came from: `source` in one line, and the same in fields."""

    model: nn.Module
    config: dict
    source: str  # in one line: "bundled:NAME", "hub:owner/repo@rev[:sub]", "local:NAME" or a path; " (note)" after
    fallback: str = ""  # why the Hub copy was not served, when the bundled one stands in for it
    origin: str = "local"  # bundled | hub | local (a folder) | finetuned (a folder fine-tuned in this app)
    repo: str = ""  # hub: owner/repo
    revision: str = ""  # hub: the revision asked for (branch, tag or commit)
    subfolder: str = ""  # hub: the checkpoint's folder in the repo, if not its root
    note: str = ""  # how it was served, when that is worth saying: "from the cache, offline", "Hub unreachable: ..."


def read_config(directory: str | Path, name: str | None = None) -> dict:
    """The checkpoint's config.json as a dict, refused if too large, not a JSON object or without 'architecture'.

    `name` stands for the folder in messages (a Hub load gives the repo, not its cache path).
    """
    path = Path(directory) / CONFIG_NAME
    where = name or str(Path(directory))
    try:
        with path.open("rb") as f:  # a bounded read: the file may be huge, or endless (a link to /dev/zero)
            text = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise CheckpointError(f"{where}: cannot read {CONFIG_NAME} ({e.strerror or e})") from None
    if len(text) > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{where}: {CONFIG_NAME} is larger than {format_size(MAX_CONFIG_BYTES)}, far more than "
                              "an n2n config needs")
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8, too deep or too long numbers
        raise CheckpointError(f"{where}: {CONFIG_NAME} is not valid JSON ({_short(e, 80)})") from None
    if not isinstance(config, dict) or "architecture" not in config:
        raise CheckpointError(f"{where}: {CONFIG_NAME} is not an n2n checkpoint config (no 'architecture' key)")
    return config


def check_config(config: dict, name: str = "checkpoint") -> None:
    """Refuse an unknown architecture or noise, and model arguments outside their bounds; allocates nothing.

    Each architecture argument a config may set has bounds (`n2n.models.allowed_args`: channels 1 to 4, ...),
    and the weights those arguments make, counted on the meta device, must fit in MAX_WEIGHTS_BYTES.
    """
    arch = config.get("architecture")
    if not isinstance(arch, str) or arch not in MODELS:
        raise CheckpointError(f"{name}: unknown architecture {_short(arch)}; n2n knows {', '.join(MODELS)}")
    noise = config.get("noise")
    if noise is not None and (not isinstance(noise, str) or noise not in NOISE_MODELS):
        raise CheckpointError(f"{name}: unknown noise {_short(noise)}; n2n knows {', '.join(NOISE_MODELS)}")
    args = config.get("model_args", {})
    if not isinstance(args, dict):
        raise CheckpointError(f"{name}: model_args is {_short(args)}, not a JSON object of arguments")
    bounds = allowed_args(arch)
    for key, value in args.items():
        if key not in bounds:
            raise CheckpointError(f"{name}: the {arch} architecture takes no argument {_short(key)} "
                                  f"(it takes {', '.join(bounds)})")
        low, high = bounds[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise CheckpointError(f"{name}: {key}={_short(value)} is refused; the {arch} architecture takes "
                                  f"{key} from {low} to {high}")
    stride = config.get("stride", 1)
    if isinstance(stride, bool) or stride not in STRIDES:
        raise CheckpointError(f"{name}: stride={_short(stride)} is refused; a checkpoint's pixel-shuffle stride is one "
                              f"of {', '.join(map(str, STRIDES))}")
    low_pass = config.get("low_pass", 0)
    if isinstance(low_pass, bool) or not isinstance(low_pass, (int, float)) or not 0 <= low_pass <= 256:
        raise CheckpointError(f"{name}: low_pass={_short(low_pass)} is refused; a checkpoint's low-pass scale is 0 "
                              "(off) to 256 pixels")
    size = weights_bytes(arch, args)
    if size > MAX_WEIGHTS_BYTES:
        raise CheckpointError(f"{name}: a {arch} with {args} would hold {format_size(size)} of weights, over the "
                              f"{format_size(MAX_WEIGHTS_BYTES)} limit for models served here")


def weights_bytes(architecture: str, model_args: dict) -> int:
    """Bytes of the state dict `build_model(architecture, **model_args)` would hold, counted on the meta device."""
    with torch.device("meta"):  # shapes only, no memory (thread-local: other threads keep their device)
        model = build_model(architecture, **model_args)
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def check_weights_size(size: int | None, name: str = "checkpoint") -> None:
    """Refuse a weights file larger than MAX_WEIGHTS_BYTES, or of unknown size."""
    if size is None:
        raise CheckpointError(f"{name}: the size of {WEIGHTS_NAME} is not known, so it is not loaded")
    if size > MAX_WEIGHTS_BYTES:
        raise CheckpointError(f"{name}: {WEIGHTS_NAME} is {format_size(size)}, over the "
                              f"{format_size(MAX_WEIGHTS_BYTES)} limit for models served here")


def format_size(n: int) -> str:
    """Bytes in words: 812 bytes, 256 kB, 16 MB, 2.0 GB (powers of 1024)."""
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("kB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}" if n < 10 * scale else f"{n // scale} {unit}"
    return f"{n} bytes"


def _short(value, limit: int = 40) -> str:
    """repr(value) cut to `limit` characters, for messages that quote what a config holds."""
    text = repr(value) if not isinstance(value, BaseException) else str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def load_dir(directory: str | Path, source: str | None = None, device: str | torch.device = "cpu",
             name: str | None = None) -> LoadedModel:
    """Load the checkpoint in `directory` (config.json + model.safetensors) with strict keys.

    The config and the weights' size are checked (`check_config`, `check_weights_size`) before
    the model is built or the weights read. `name` stands for the folder in messages.
    """
    directory = Path(directory)
    where = name or str(directory)
    config = read_config(directory, where)
    check_config(config, where)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{where} has no {WEIGHTS_NAME}")
    check_weights_size(weights.stat().st_size, where)
    try:
        model = build_model(config["architecture"], **config.get("model_args", {}))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: cannot build {config['architecture']!r}: {e}") from None
    try:
        state = load_file(weights)
    except Exception as e:  # safetensors raises several types for a bad header
        raise CheckpointError(f"{where}: {WEIGHTS_NAME} is not a valid safetensors file ({_short(e, 120)})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0:2]
        raise CheckpointError(f"{where}: {WEIGHTS_NAME} does not match the {config['architecture']} "
                              f"architecture: {' '.join(first)}") from None
    model.to(device).eval().to(memory_format=torch.channels_last)
    model.stride = int(config.get("stride", 1))  # the pixel-shuffle stride it is meant for (n2n.infer.denoise)
    model.low_pass = float(config.get("low_pass", 0))  # the scale above which it keeps the photo's brightness
    return LoadedModel(model, config, source or str(directory))


def save(model: nn.Module, directory: str | Path, config: dict) -> Path:
    """Write `config.json` and `model.safetensors` into `directory`, each atomically.

    `config` must name the `architecture` and its `model_args`; anything else
    (noise, range, steps, eval results) travels along.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if "architecture" not in config:
        raise ValueError("config needs an 'architecture' key")
    module = model.module if hasattr(model, "module") else model
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    write_atomic(directory / WEIGHTS_NAME, safetensors_bytes(state, metadata={"format": "pt"}))
    write_config(directory, config)
    return directory


def write_config(directory: str | Path, config: dict) -> None:
    """Write `config` as `directory`/config.json, atomically (the weights beside it untouched)."""
    write_atomic(Path(directory) / CONFIG_NAME, (json.dumps(config, indent=2) + "\n").encode())


def write_model_card(directory: str | Path) -> Path:
    """Write README.md, the model card, from the checkpoint's config.json (training budget, eval table).

    The card is part of the folder (bundled, fine-tuned and pushed checkpoints carry one); it is
    written here, with no network, though its metadata header is the Hub's (`huggingface_hub.ModelCard`).
    """
    from huggingface_hub import ModelCard, ModelCardData

    directory = Path(directory)
    config = read_config(directory)
    noise, train = config.get("noise", "?"), config.get("train_config", {})
    data = ModelCardData(library_name="n2n", license="mit", pipeline_tag="image-to-image",
                         tags=["denoising", "noise2noise", noise, "pytorch", "safetensors"])
    rows = "\n".join(
        f"| {e['data']} ({e.get('images', '?')}) | {e['noise']} {e['param']:g} | {e['noisy_psnr']:.2f} | "
        f"**{e['psnr']:.2f}** / {e['ssim']:.4f}"
        + (f" (×8 self-ensemble: {e['ensemble_psnr']:.2f} / {e['ensemble_ssim']:.4f})" if "ensemble_psnr" in e else "")
        + " | "
        + " · ".join(f"{b} {f['psnr']:.2f}" for b, f in e.get("baselines", {}).items()) + " |"
        for e in config.get("eval", []))
    targets = "clean images (Noise2Clean)" if config.get("clean_targets") else "noisy images only (Noise2Noise)"
    draws = "the targets are the clean images" if config.get("clean_targets") else "source and target independently"
    start = f" (started from `{Path(train['init']).name}`)" if train.get("init") else ""
    history = config.get("history", [])  # one line per run or campaign step that made these weights
    architecture = describe(config["architecture"]) if config["architecture"] in MODELS else "unknown here"
    crop = train.get("crop")
    data_line = (f"`{Path(train.get('data', '?')).name}` ({train.get('mode', 'synthetic')} pairs), "
                 f"crops {crop}×{crop}, batch {train.get('batch_size')}")
    stride = int(config.get("stride", 1))
    stride_note = "" if stride == 1 else (
        f"\nMeant for pixel-shuffle stride {stride}, as `n2n.denoise` runs it: run the graph on each "
        f"`image[i::{stride}, j::{stride}]` apart and put the results back in place.\n")
    low_pass = float(config.get("low_pass", 0))
    stride_note += "" if not low_pass else (
        f"\n`n2n.denoise` then keeps the photo's own brightness above {low_pass:g} px: it adds back the Gaussian "
        f"low-pass (σ = {low_pass:g} px) of noisy − denoised (`n2n.infer.keep_low_pass`; zero-mean noise averages "
        "out there, so it holds the model's own shift of brightness and colour). Do the same after the graph:\n\n"
        "```python\nimport cv2\nnoisy, y = image.astype(np.float32) / 255, y.transpose(1, 2, 0)  # (H, W, C)\n"
        f"low = cv2.GaussianBlur(noisy - y, (0, 0), {low_pass:g}, borderType=cv2.BORDER_REFLECT)\n"
        "clean = (np.clip(y + low, 0, 1) * 255).round().astype(np.uint8)\n```\n")
    provenance = "\n## History\n\n" + "\n".join(f"- {line}" for line in history) + "\n" if history else ""
    content = f"""---
{data.to_yaml()}
---
# n2n `{directory.name}`: {config['architecture']} denoiser for {noise} noise

Trained with **{targets}**, loss `{config.get('loss')}`, noise parameter drawn per image
from {config.get('noise_range')}, {draws}.

- training data: {data_line}
- budget: {config.get('steps')} steps of Adam (0.9, 0.99), lr {train.get('lr')} with the paper's ramp-down{start}
- architecture: `{config['architecture']}`: {architecture} Arguments {config.get('model_args')}
{provenance}
## Evaluation (`python -m n2n eval`, PSNR in dB on 8-bit output, per image, averaged)

| data (images) | noise | noisy PSNR | this model PSNR / SSIM | classical baselines PSNR |
|---|---|---|---|---|
{rows or '| (not evaluated yet) | | | | |'}

## Use

```python
import n2n
model = n2n.load_model("{directory.name}")   # or a folder holding config.json + model.safetensors
clean = n2n.denoise(model, image)             # (H, W, C) uint8/uint16/float32, same out
```

## ONNX

`python -m n2n export --model {directory.name} --onnx {directory.name}.onnx` (after
`pip install onnx onnxscript onnxruntime`) writes the network as one ONNX file: input `image`, NCHW float32
in [0, 1], H and W any multiples of 32; output `denoised`, the same shape. Pad, run, crop:

```python
import numpy as np, onnxruntime
session = onnxruntime.InferenceSession("{directory.name}.onnx")
x = (image.astype(np.float32) / 255).transpose(2, 0, 1)[None]  # (H, W, C) uint8 -> (1, C, H, W) in [0, 1]
h, w = x.shape[2:]
x = np.pad(x, ((0, 0), (0, 0), (0, -h % 32), (0, -w % 32)), mode="reflect")  # to multiples of 32
y = session.run(["denoised"], {{"image": x}})[0][0, :, :h, :w]
clean = (np.clip(y, 0, 1).transpose(1, 2, 0) * 255).round().astype(np.uint8)
```
{stride_note}"""
    path = directory / CARD_NAME
    write_atomic(path, str(ModelCard(content)).encode("utf-8"))
    return path
