"""Model zoo: bundled checkpoints and the Hugging Face Hub; save, load and push.

A checkpoint is a directory holding `config.json` (architecture, its arguments, the
noise it was trained for, training budget, eval results) and `model.safetensors`.
Loading uses strict key checks and never unpickles anything.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .models import build_model

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
_REPO_RE = re.compile(r"^[\w.-]+/[\w.-]+(@[\w./-]+)?(:[\w./-]+)?$")


class CheckpointError(ValueError):
    """A model reference that cannot be resolved or loaded; the message says why."""


@dataclass
class LoadedModel:
    model: nn.Module
    config: dict
    source: str  # where the weights came from, for the UI: "bundled", a path, or "hub:owner/repo@rev"
    fallback: str = ""  # why the Hub copy was not served, when the bundled one stands in for it


def bundled_names() -> list[str]:
    """Names of the checkpoints shipped in `checkpoints/`."""
    if not CHECKPOINTS.is_dir():
        return []
    return sorted(p.name for p in CHECKPOINTS.iterdir() if (p / CONFIG_NAME).is_file() and (p / WEIGHTS_NAME).is_file())


def read_config(directory: str | Path) -> dict:
    path = Path(directory) / CONFIG_NAME
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not a readable n2n config.json ({e})") from None
    if not isinstance(config, dict) or "architecture" not in config:
        raise CheckpointError(f"{path} is not an n2n checkpoint config (no 'architecture' key)")
    return config


def load_dir(directory: str | Path, source: str | None = None, device: str | torch.device = "cpu") -> LoadedModel:
    """Load the checkpoint in `directory` (config.json + model.safetensors) with strict keys."""
    directory = Path(directory)
    config = read_config(directory)
    try:
        model = build_model(config["architecture"], **config.get("model_args", {}))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{directory}: cannot build {config['architecture']!r}: {e}") from None
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{directory} has no {WEIGHTS_NAME}")
    try:
        state = load_file(weights)
    except Exception as e:  # safetensors raises several types for a bad header
        raise CheckpointError(f"{weights} is not a valid safetensors file ({e})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0:2]
        raise CheckpointError(f"{weights} does not match the {config['architecture']} architecture: {' '.join(first)}") from None
    model.to(device).eval().to(memory_format=torch.channels_last)
    return LoadedModel(model, config, source or str(directory))


HUB_REPO_ENV = "N2N_HUB_REPO"  # owner/repo[@revision] whose subfolders NAME serve the bundled names first
_NAME_RE = re.compile(r"^[\w.-]+$")


def resolve(name_or_dir: str) -> LoadedModel:
    """A bundled name, a checkpoint directory, or a Hub reference `owner/repo[@revision][:subfolder]`.

    With `N2N_HUB_REPO=owner/repo[@revision]` set, a model name is first looked up on the Hub
    as `owner/repo@revision:NAME`; when that fails (offline, unreachable, not there, broken),
    the bundled copy serves and `source` reads `bundled:NAME (Hub unreachable: ...)` or
    `bundled:NAME (Hub copy unavailable: ...)`, for the app and the CLI to show.
    """
    ref = str(name_or_dir)
    if Path(ref).is_dir():
        return load_dir(ref)
    hub_repo = os.environ.get(HUB_REPO_ENV, "").strip()
    if hub_repo and _NAME_RE.match(ref):
        return _resolve_name_via_hub(ref, hub_repo)
    if ref in bundled_names():
        return load_dir(CHECKPOINTS / ref, source=f"bundled:{ref}")
    if _REPO_RE.match(ref):
        from .hub_remote import load_from_hub  # the network part, imported only when used
        return load_from_hub(ref)
    known = ", ".join(bundled_names()) or "none bundled"
    raise CheckpointError(f"no model {ref!r}: give a bundled name ({known}), a checkpoint folder, or owner/repo on the Hub")


def _resolve_name_via_hub(name: str, hub_repo: str) -> LoadedModel:
    """`name` from `hub_repo` (subfolder `name`), else the bundled copy with the reason in `source`."""
    from .hub_remote import HubUnreachableError, load_from_hub

    ref = f"{hub_repo}:{name}"
    try:
        if ":" in hub_repo or not _REPO_RE.match(ref):
            raise CheckpointError(f"{HUB_REPO_ENV}={hub_repo!r} is not owner/repo[@revision]")
        return load_from_hub(ref)
    except (CheckpointError, OSError, ImportError) as e:  # whatever kept the Hub copy away: the bundled one serves
        why = "Hub unreachable" if isinstance(e, HubUnreachableError) else "Hub copy unavailable"
        if name not in bundled_names():
            raise CheckpointError(f"no model {name!r}: {why} ({e}) and no bundled copy in {CHECKPOINTS}") from None
        import logging

        logging.getLogger(__name__).warning("%s: using the bundled copy (%s: %s)", name, why, e)
        loaded = load_dir(CHECKPOINTS / name, source=f"bundled:{name} ({why}: {e})")
        loaded.fallback = f"{why}: {e}"
        return loaded


def push(directory: str | Path, repo_id: str, token: str | None = None, private: bool = True,
         path_in_repo: str | None = None, **kwargs) -> str:
    """Upload config.json, model.safetensors and README.md of `directory` to the Hub; return the URL.

    Token from the argument or `HF_TOKEN`, never printed, logged or stored. See `hub_remote.push`.
    """
    from .hub_remote import push as _push

    return _push(directory, repo_id, token=token, private=private, path_in_repo=path_in_repo, **kwargs)


def load_model(name_or_dir: str) -> nn.Module:
    """The model for a bundled name, a checkpoint directory or a Hub repo id, in eval mode on CPU."""
    return resolve(name_or_dir).model


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
    _atomic(directory / WEIGHTS_NAME, lambda p: save_file(state, p, metadata={"format": "pt"}))
    _atomic(directory / CONFIG_NAME, lambda p: Path(p).write_text(json.dumps(config, indent=2) + "\n"))
    return directory


def _atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_model_card(directory: str | Path) -> Path:
    """Write README.md, a Hub model card, from the checkpoint's config.json (training budget, eval table)."""
    from huggingface_hub import ModelCard, ModelCardData

    directory = Path(directory)
    config = read_config(directory)
    noise, train = config.get("noise", "?"), config.get("train_config", {})
    data = ModelCardData(library_name="n2n", license="mit", pipeline_tag="image-to-image",
                         tags=["denoising", "noise2noise", noise, "pytorch", "safetensors"])
    rows = "\n".join(
        f"| {e['data']} ({e.get('images', '?')}) | {e['noise']} {e['param']:g} | {e['noisy_psnr']:.2f} | **{e['psnr']:.2f}** / {e['ssim']:.4f} | "
        + " · ".join(f"{b} {f['psnr']:.2f}" for b, f in e.get("baselines", {}).items()) + " |"
        for e in config.get("eval", []))
    targets = "clean images (Noise2Clean)" if config.get("clean_targets") else "noisy images only (Noise2Noise)"
    draws = "the targets are the clean images" if config.get("clean_targets") else "source and target independently"
    start = f" (started from `{Path(train['init']).name}`)" if train.get("init") else ""
    history = config.get("history", [])  # one line per run or campaign step that made these weights
    provenance = "\n## History\n\n" + "\n".join(f"- {line}" for line in history) + "\n" if history else ""
    content = f"""---
{data.to_yaml()}
---
# n2n `{directory.name}`: {config['architecture']} denoiser for {noise} noise

Trained with **{targets}**, loss `{config.get('loss')}`, noise parameter drawn per image
from {config.get('noise_range')}, {draws}.

- training data: `{Path(train.get('data', '?')).name}` ({train.get('mode', 'synthetic')} pairs), crops {train.get('crop')}×{train.get('crop')}, batch {train.get('batch_size')}
- budget: {config.get('steps')} steps of Adam (0.9, 0.99), lr {train.get('lr')} with the paper's ramp-down{start}
- architecture: the Noise2Noise U-Net (Lehtinen et al. 2018), arguments {config.get('model_args')}
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
"""
    path = directory / "README.md"
    ModelCard(content).save(path)
    return path
