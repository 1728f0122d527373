"""The models a visitor can pick, by name, and the cache that holds them once loaded.

Bundled names first, then extra checkpoints shown to everyone (`build_demo`, N2N_EXTRA_MODELS),
then the models fine-tuned in the visitor's own session: a fine-tuned model belongs to the
session that made it, and any other session is told it does not exist. A Hub repo id
(owner/name[@revision][:subfolder]) loads from the Hub; a bundled copy standing in for an
unreachable Hub is retried after a while.
"""
from __future__ import annotations

import dataclasses
import os
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path

import gradio as gr

from n2n import baselines, hub
from n2n.checkpoint import CheckpointError, LoadedModel, load_dir, read_config
from n2n.io import reason
from ui.common import KEEP_S, UserError, session_key

EXTRA: dict[str, Path] = {}  # checkpoints shown to everyone beside the bundled ones, by name
FINETUNED: dict[str, Path] = {}  # checkpoints fine-tuned here, by name; listed only to the session that made them
FINETUNED_KEPT = 10_000  # names remembered (oldest forgotten first): their folders age out long before (KEEP_S)
BASELINE_LABELS = {"nlm": "non-local means (OpenCV)", "median": "median filter", "bm3d": "BM3D"}

_OWNERS: dict[str, str | None] = {}  # fine-tuned model name -> session hash of the visitor who made it
_CACHE: OrderedDict[str, tuple[LoadedModel, float]] = OrderedDict()  # ref -> (model, time.monotonic() loaded)
FALLBACK_S = 300.0  # a bundled copy standing in for an unreachable Hub copy is kept this long, then the Hub is retried
_CACHE_LOCK = threading.Lock()


def register_extra(models) -> None:
    """Add checkpoint folders to the model list: a dict name -> folder, or folders (named after themselves)."""
    items = models.items() if isinstance(models, dict) else ((Path(p).name, p) for p in models)
    for name, folder in items:
        folder = Path(folder)
        read_config(folder)  # fails loudly on a folder that is not a checkpoint
        name = str(name)
        while name in hub.bundled_names() or (name in EXTRA and EXTRA[name] != folder):
            name += "+"
        EXTRA[name] = folder


def extra_from_env() -> dict[str, str]:
    """N2N_EXTRA_MODELS: entries `name=folder` or `folder`, separated by os.pathsep."""
    found = {}
    for entry in filter(None, os.environ.get("N2N_EXTRA_MODELS", "").split(os.pathsep)):
        name, _, folder = entry.partition("=") if "=" in entry else (Path(entry).name, "", entry)
        found[name] = folder
    return found


def add_finetuned(name: str, folder: Path, request: gr.Request | None) -> None:
    """A model fine-tuned in the caller's session, from now on theirs alone."""
    FINETUNED[name], _OWNERS[name] = folder, session_key(request)
    while len(FINETUNED) > FINETUNED_KEPT:  # a server that runs for weeks: the oldest names go
        oldest = next(iter(FINETUNED))
        del FINETUNED[oldest]
        _OWNERS.pop(oldest, None)


def owns(name: str, request: gr.Request | None) -> bool:
    """Whether `name` was fine-tuned in the caller's session."""
    return name in FINETUNED and _OWNERS.get(name) == session_key(request)


def session_models(request: gr.Request | None) -> list[str]:
    """The models fine-tuned or adapted in the caller's session, oldest first: the one list of a visitor's models
    (none for a call without a session)."""
    key = session_key(request)
    return [n for n in FINETUNED if key is not None and _OWNERS.get(n) == key]


def model_names(request: gr.Request | None = None) -> list[str]:
    """Bundled models, extra checkpoints, then the caller's own fine-tuned ones (none without `request`)."""
    names = hub.bundled_names() + [n for n in EXTRA if n not in hub.bundled_names()]
    return names + [n for n in session_models(request) if n not in names]


def compare_choices(request: gr.Request | None = None) -> list[tuple[str, str]]:
    return [(f"n2n · {n}", n) for n in model_names(request)] + [(BASELINE_LABELS[b], b) for b in baselines.available()]


def is_hub_ref(ref: str) -> bool:
    """owner/name[@revision][:subfolder], with no '.' or '..' part: a revision reaches the Hub cache's paths."""
    return bool(hub.REPO_RE.match(ref)) and not any(part in (".", "..") for part in re.split(r"[/@:]", ref))


def unknown_model(ref: str) -> UserError:
    return UserError(f"Unknown model {ref!r}: choose one of {', '.join(model_names()) or '(none installed)'}, "
                     f"or give a Hugging Face Hub repo id such as owner/name.")


def check_session(ref: str, request: gr.Request | None) -> None:
    """Refuse a model fine-tuned in another visitor's session, as if it did not exist (names are not secrets)."""
    if ref in FINETUNED and not owns(ref, request):
        raise unknown_model(ref)


def init_ref(init: str) -> str:
    """TrainConfig.init for the "start from" choice: '' (scratch), a bundled name or a checkpoint folder."""
    if not init or init == "scratch":
        return ""
    if init in hub.bundled_names():
        return init
    if init in EXTRA or init in FINETUNED:
        return str(EXTRA.get(init) or FINETUNED[init])
    raise UserError(f"Cannot start from {init!r}: choose 'scratch' or one of {', '.join(model_names())}.")


def _load_uncached(ref: str) -> LoadedModel:
    if ref in hub.bundled_names() and not Path(ref).exists():  # (a folder of that name here would shadow it)
        return hub.resolve(ref)  # from the Hub first when N2N_HUB_REPO is set, else (or failing that) bundled
    if ref in FINETUNED and not FINETUNED[ref].is_dir():
        raise UserError(f"Your model {ref!r} was cleared from this server to make room (visitors' files are kept "
                        f"for {KEEP_S / 3600:g} h at most, less when space runs short): fine-tune or adapt again, "
                        "or use the zip you downloaded.")
    if ref in EXTRA or ref in FINETUNED:
        loaded = load_dir(EXTRA.get(ref) or FINETUNED[ref], source=f"local:{ref}")
        return dataclasses.replace(loaded, origin="local" if ref in EXTRA else "finetuned")
    if is_hub_ref(ref) and not Path(ref).exists():
        return hub.resolve(ref, anonymous=True)  # a visitor's reference: never with the Space's own token
    raise unknown_model(ref)


class _Pending:
    """A load in progress: callers asking for the same ref wait for it and share its outcome."""

    def __init__(self):
        self.done = threading.Event()
        self.error: UserError | None = None


_LOADING: dict[str, _Pending] = {}  # ref -> the load in progress (under _CACHE_LOCK)


def _cached(ref: str) -> LoadedModel | None:
    """The cached model for `ref`, marked most recent; None if absent or a stale fallback. Under _CACHE_LOCK."""
    if ref in _CACHE and _CACHE[ref][0].fallback and time.monotonic() - _CACHE[ref][1] > FALLBACK_S:
        del _CACHE[ref]  # the Hub may be back
    if ref not in _CACHE:
        return None
    _CACHE.move_to_end(ref)
    return _CACHE[ref][0]


def _load_checked(ref: str) -> LoadedModel:
    """`_load_uncached`, with every failure turned into one sentence for the visitor."""
    try:
        return _load_uncached(ref)
    except UserError:
        raise
    except CheckpointError as e:
        raise UserError(f"Cannot load {ref!r}: {e}") from None
    except ImportError:
        raise UserError("Loading models from the Hub is not available in this installation.") from None
    except Exception as e:  # network, authentication, missing files on the Hub
        raise UserError(f"Cannot load {ref!r} from the Hub: {reason(e, 300)}") from None


def forget(ref: str | None = None) -> None:
    """Drop `ref` from the cache, or every model when None: the next `load` reads it afresh."""
    with _CACHE_LOCK:
        if ref is None:
            _CACHE.clear()
        else:
            _CACHE.pop(ref, None)


def load(ref: str) -> LoadedModel:
    """The model for a listed name or a Hub repo id, loaded once and cached (the last 8).

    The cache's lock is never held while a model loads: a slow Hub repo delays only the visitors
    who asked for it (they share the one download), never a denoise with another model.
    """
    ref = (ref or "").strip()
    if not ref:
        raise UserError("No model chosen: pick one from the list or enter a Hub repo id.")
    while True:
        with _CACHE_LOCK:
            loaded = _cached(ref)
            if loaded is not None:
                return loaded
            pending, mine = _LOADING.get(ref), False
            if pending is None:
                pending, mine = _LOADING.setdefault(ref, _Pending()), True
        if mine:
            break
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
    try:
        loaded = _load_checked(ref)
    except UserError as e:
        pending.error = e
        raise
    else:
        with _CACHE_LOCK:
            _CACHE[ref] = (loaded, time.monotonic())
            while len(_CACHE) > 8:
                _CACHE.popitem(last=False)
        return loaded
    finally:
        with _CACHE_LOCK:
            del _LOADING[ref]
        pending.done.set()
