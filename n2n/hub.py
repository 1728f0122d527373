"""Model names → checkpoints: the bundled ones in `checkpoints/`, the Hugging Face Hub, the fallback
from one to the other; and push. The checkpoint format itself (save, load, checks, errors) is
n2n.checkpoint, whose names are re-exported here for the callers that know them as `hub.*`.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
from pathlib import Path

from torch import nn

# The format's names that callers (app, CLI, train_space, benchmarks, tests) reach as hub.*, re-exported:
from .checkpoint import (CONFIG_NAME, WEIGHTS_NAME, CheckpointError, LoadedModel, load_dir,  # noqa: F401
                         read_config, save, write_config, write_model_card)
from .hub_remote import REPO_RE, HubUnreachableError, load_from_hub, push  # noqa: F401 (push re-exported)

log = logging.getLogger(__name__)

# The bundled checkpoints: the copy an installed wheel carries in n2n/bundled (pyproject.toml), else checkpoints/
# of the repository (where the app and the campaign read and write them)
_WHEEL_COPY = Path(__file__).resolve().parent / "bundled"
CHECKPOINTS = _WHEEL_COPY if _WHEEL_COPY.is_dir() else Path(__file__).resolve().parent.parent / "checkpoints"
# The models the project ships there (DESIGN.md names the first five): one per noise, trained with noisy targets
# (train_space.py trains them), and the clean-target twins of gaussian and camera. `bundled_names()`: those present
# on this machine.
BUNDLED = ("gaussian", "poisson", "text", "bernoulli", "impulse", "camera", "gaussian-n2c", "camera-n2c")
HUB_REPO_ENV = "N2N_HUB_REPO"  # owner/repo[@revision] whose subfolders NAME serve the bundled names first
_NAME_RE = re.compile(r"^[\w.-]+$")


def bundled_names() -> list[str]:
    """Names of the checkpoints shipped in `checkpoints/`."""
    if not CHECKPOINTS.is_dir():
        return []
    return sorted(p.name for p in CHECKPOINTS.iterdir() if (p / CONFIG_NAME).is_file() and (p / WEIGHTS_NAME).is_file())


def resolve(name_or_dir: str, anonymous: bool = False) -> LoadedModel:
    """A bundled name, a checkpoint directory, or a Hub reference `owner/repo[@revision][:subfolder]`.

    anonymous: fetch a Hub reference with no token at all (the app, for a visitor's reference:
    never the Space's HF_TOKEN); the `N2N_HUB_REPO` lookup of a name keeps the machine's token.

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
        return dataclasses.replace(load_dir(CHECKPOINTS / ref, source=f"bundled:{ref}"), origin="bundled")
    if REPO_RE.match(ref):
        return load_from_hub(ref, anonymous=anonymous)
    known = ", ".join(bundled_names()) or "none bundled"
    raise CheckpointError(f"no model {ref!r}: give a bundled name ({known}), a checkpoint folder, "
                          "or owner/repo on the Hub")


def _resolve_name_via_hub(name: str, hub_repo: str) -> LoadedModel:
    """`name` from `hub_repo` (subfolder `name`), else the bundled copy with the reason in `source`."""
    ref = f"{hub_repo}:{name}"
    try:
        if ":" in hub_repo or not REPO_RE.match(ref):
            raise CheckpointError(f"{HUB_REPO_ENV}={hub_repo!r} is not owner/repo[@revision]")
        return load_from_hub(ref)
    except (CheckpointError, OSError, ImportError) as e:  # whatever kept the Hub copy away: the bundled one serves
        why = "Hub unreachable" if isinstance(e, HubUnreachableError) else "Hub copy unavailable"
        if name not in bundled_names():
            raise CheckpointError(f"no model {name!r}: {why} ({e}) and no bundled copy in {CHECKPOINTS}") from None
        log.warning("%s: using the bundled copy (%s: %s)", name, why, e)
        loaded = load_dir(CHECKPOINTS / name, source=f"bundled:{name} ({why}: {e})")
        return dataclasses.replace(loaded, origin="bundled", fallback=f"{why}: {e}", note=f"{why}: {e}")


def load_model(name_or_dir: str) -> nn.Module:
    """The model for a bundled name, a checkpoint directory or a Hub repo id, in eval mode on CPU."""
    return resolve(name_or_dir).model
