"""The network half of the model zoo: load checkpoints from the Hugging Face Hub, push them there.

`huggingface_hub` is imported only when a Hub reference is used, so that the core package works
without the network. Network errors are caught as `huggingface_hub.utils.httpx`'s, the HTTP module
huggingface_hub itself uses (httpx in 1.31+, httpx2 in 2.x), so no HTTP package is imported directly.
Files come through `huggingface_hub`'s cache (`HF_HOME` / `HF_HUB_CACHE`), the endpoint is
`HF_ENDPOINT`, and `HF_HUB_OFFLINE=1` serves from the cache alone. Only `config.json` and
`model.safetensors` are ever downloaded; nothing is unpickled.

A repo cannot cost the server memory or disk: config.json's size is read from the Hub's
metadata before it is downloaded, the config is checked (`checkpoint.check_config`: known
architecture and noise, arguments within bounds) before the weights are asked for, and the
weights' size is read from the metadata and checked against `checkpoint.MAX_WEIGHTS_BYTES` before
they are downloaded. Every request has a deliberate timeout (below; the HF_HUB_ETAG_TIMEOUT
and HF_HUB_DOWNLOAD_TIMEOUT environment variables override them).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
from pathlib import Path

from .checkpoint import (CARD_NAME, CONFIG_NAME, MAX_CONFIG_BYTES, WEIGHTS_NAME, CheckpointError, LoadedModel,
                         check_config, check_weights_size, format_size, load_dir, read_config, write_model_card)
from .io import reason
from .version import __version__

log = logging.getLogger(__name__)

REPO_RE = re.compile(r"^[\w.-]+/[\w.-]+(@[\w./-]+)?(:[\w./-]+)?$")  # owner/repo[@revision][:subfolder]
PUSHED_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)  # never training_state.safetensors
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
METADATA_TIMEOUT_S = 5.0  # each HEAD (does the Hub answer, the files' sizes): seconds to wait for the answer
DOWNLOAD_TIMEOUT_S = 10.0  # a download: seconds to wait for the next bytes (huggingface_hub resumes 5 times)


class HubUnreachableError(CheckpointError):
    """The Hub could not be reached (network down, Hub down, offline mode) and nothing usable is cached."""


def parse_ref(ref: str) -> tuple[str, str | None, str | None]:
    """`owner/repo[@revision][:subfolder]` → (repo_id, revision or None, subfolder or None)."""
    ref = str(ref).strip()
    if not REPO_RE.match(ref):
        raise CheckpointError(f"{ref!r} is not a Hub reference: expected owner/repo[@revision][:subfolder]")
    ref, _, subfolder = ref.partition(":")
    repo_id, _, revision = ref.partition("@")
    subfolder = subfolder.strip("/") or None
    if subfolder and any(part in ("", ".", "..") for part in subfolder.split("/")):
        raise CheckpointError(f"bad subfolder {subfolder!r} in Hub reference")
    return repo_id, revision or None, subfolder


def load_from_hub(ref: str, anonymous: bool = False) -> LoadedModel:
    """Load `owner/repo[@revision][:subfolder]` from the Hub (or its local cache), strict keys, no pickle.

    `LoadedModel.source` is `hub:owner/repo@revision[:subfolder]`, followed by a note in
    parentheses when the files came from the cache because the Hub was not asked or did not answer;
    `origin` is "hub" and `repo`, `revision`, `subfolder` and `note` hold the same in fields.
    anonymous: send no token at all (a visitor's reference in the app: never the Space's HF_TOKEN
    or saved login); otherwise huggingface_hub's own (HF_TOKEN, then the saved login).
    """
    repo_id, revision, subfolder = parse_ref(ref)
    revision = revision or "main"
    label = f"{repo_id}@{revision}" + (f":{subfolder}" if subfolder else "")
    folder, note = _fetch(repo_id, revision, subfolder, label, token=False if anonymous else None)
    loaded = load_dir(folder, source=f"hub:{label}" + (f" ({note})" if note else ""), name=f"Hub checkpoint {label}")
    return dataclasses.replace(loaded, origin="hub", repo=repo_id, revision=revision, subfolder=subfolder or "",
                               note=note)


def _fetch(repo_id: str, revision: str, subfolder: str | None, label: str,
           token: bool | None = None) -> tuple[Path, str]:
    """Download (or find in the cache) config.json then model.safetensors; return their folder and a note.
    token: False for none at all, None for huggingface_hub's default."""
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import (FileMetadataError, HfHubHTTPError, LocalEntryNotFoundError,
                                        OfflineModeIsEnabled, RemoteEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)
    from huggingface_hub.utils import httpx

    if "HF_HUB_DOWNLOAD_TIMEOUT" not in os.environ:  # huggingface_hub reads this constant; no argument for it
        constants.HF_HUB_DOWNLOAD_TIMEOUT = DOWNLOAD_TIMEOUT_S
    offline = constants.is_offline_mode()
    unreachable: str | None = "HF_HUB_OFFLINE is set" if offline else None  # set: use the cache alone
    problem: str | None = None  # what the Hub answered, for the message if nothing is cached either
    config_file = f"{subfolder}/{CONFIG_NAME}" if subfolder else CONFIG_NAME
    pinned_and_cached = bool(_COMMIT_RE.match(revision)) and isinstance(
        try_to_load_from_cache(repo_id, config_file, revision=revision), str)
    if not offline and not pinned_and_cached:  # a cached commit needs no network at all
        # One HEAD without retries first: hf_hub_download retries a failed connection with
        # back-off for ~20 s when nothing is cached, far too long for the bundled fallback.
        try:
            size = _probe(repo_id, revision, subfolder, token=token)
            if size is not None and size > MAX_CONFIG_BYTES:  # refused before it is downloaded
                raise CheckpointError(f"Hub checkpoint {label}: {CONFIG_NAME} is {format_size(size)}, far more than "
                                      "an n2n config needs")
        except (httpx.TransportError, OfflineModeIsEnabled, FileMetadataError) as e:
            unreachable = reason(e, typed=True)
        except (RepositoryNotFoundError, RevisionNotFoundError, RemoteEntryNotFoundError):
            pass  # hf_hub_download raises the same, handled below with the cache consulted
        except HfHubHTTPError as e:
            status = e.response.status_code if e.response is not None else None
            problem = f"the Hub answered {status}"
            if status is None or status >= 500 or status in (408, 429):
                unreachable = problem  # Hub down: straight to the cache, no retries
    kwargs = dict(repo_id=repo_id, revision=revision, subfolder=subfolder, library_name="n2n",
                  library_version=__version__, local_files_only=unreachable is not None,
                  etag_timeout=_metadata_timeout(), token=token)
    wanted = CONFIG_NAME
    try:
        config_path = Path(hf_hub_download(filename=CONFIG_NAME, **kwargs))
        folder = config_path.parent
        # Not an n2n checkpoint, or one that asks for an absurd model? Refused before the weights are asked for.
        check_config(read_config(folder, f"Hub checkpoint {label}"), f"Hub checkpoint {label}")
        # The weights from the very commit the config came from, even if the branch moves meanwhile.
        commit = folder.parents[len(subfolder.split("/")) - 1].name if subfolder else folder.name
        if _COMMIT_RE.match(commit):
            kwargs["revision"] = commit
        wanted = WEIGHTS_NAME
        weights_file = f"{subfolder}/{WEIGHTS_NAME}" if subfolder else WEIGHTS_NAME
        cached = isinstance(try_to_load_from_cache(repo_id, weights_file, revision=kwargs["revision"]), str)
        if not kwargs["local_files_only"] and not cached:  # (a cached file's size is checked by load_dir)
            check_weights_size(_probe(repo_id, kwargs["revision"], subfolder, WEIGHTS_NAME, token),
                                   f"Hub checkpoint {label}")
        weights_path = Path(hf_hub_download(filename=WEIGHTS_NAME, **kwargs))
    except RepositoryNotFoundError:
        raise CheckpointError(f"Hub repo {repo_id!r} not found at {constants.ENDPOINT} (or it is private or gated "
                              "and HF_TOKEN does not grant access)") from None
    except RevisionNotFoundError:
        raise CheckpointError(f"revision {revision!r} not found in Hub repo {repo_id!r}") from None
    except LocalEntryNotFoundError:  # before RemoteEntryNotFoundError: both are EntryNotFoundError
        if offline:
            raise HubUnreachableError(
                f"HF_HUB_OFFLINE=1 and {label} ({wanted}) is not in the Hub cache ({constants.HF_HUB_CACHE}); "
                "load it once online, or use a bundled model or a checkpoint folder") from None
        if problem and not unreachable:  # 401/403 and the like: the Hub answered, but no
            raise CheckpointError(f"the Hub refused {label} ({problem}) and nothing is cached; "
                                  "check HF_TOKEN's access to the repo") from None
        raise HubUnreachableError(
            f"cannot reach the Hub and nothing is cached for {label} ({unreachable or 'no answer'}); set "
            "HF_HUB_OFFLINE=1 to use the cache or use a bundled model (or a checkpoint folder)") from None
    except RemoteEntryNotFoundError:
        raise CheckpointError(f"{label} is not an n2n checkpoint: no {wanted} "
                              f"{'in ' + subfolder if subfolder else 'at the repo root'}") from None
    except (HfHubHTTPError, httpx.HTTPError) as e:
        raise HubUnreachableError(
            f"cannot download {wanted} of {label} from the Hub: {reason(e, typed=True)}") from None
    if weights_path.parent != folder:  # cannot happen with a well-formed cache; load_dir needs one folder
        raise CheckpointError(f"{label}: config.json and model.safetensors landed in different folders")
    note = "" if unreachable is None else (
        "from the cache, offline" if offline else f"from the cache, Hub unreachable: {unreachable}")
    return folder, note


def _probe(repo_id: str, revision: str, subfolder: str | None, filename: str = CONFIG_NAME,
           token: bool | None = None) -> int | None:
    """A single HEAD of `filename`, no retries: its size in bytes (None if the Hub does not say), or
    raises what the Hub (or the network) says."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(repo_id, filename, subfolder=subfolder, revision=revision)
    return get_hf_file_metadata(url, timeout=_metadata_timeout(), library_name="n2n",
                                library_version=__version__, token=token).size


def _metadata_timeout() -> float:
    """METADATA_TIMEOUT_S, or HF_HUB_ETAG_TIMEOUT when the environment sets it."""
    from huggingface_hub import constants

    return float(constants.HF_HUB_ETAG_TIMEOUT) if os.environ.get("HF_HUB_ETAG_TIMEOUT") else METADATA_TIMEOUT_S


def push(directory: str | Path, repo_id: str, token: str | None = None, private: bool = True,
         path_in_repo: str | None = None, *, endpoint: str | None = None,
         commit_message: str | None = None) -> str:
    """Upload a checkpoint folder (config.json, model.safetensors, README.md) to `repo_id`; return its URL.

    Creates the repo if needed (private by default; an existing repo keeps its visibility).
    The token is the argument, else `HF_TOKEN` (else a `hf auth login` token); it goes into
    the Authorization header and nowhere else: not printed, logged, stored or put in errors.
    A missing README.md is written from config.json first (`checkpoint.write_model_card`).
    """
    from huggingface_hub import HfApi, constants, get_token
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import httpx

    directory = Path(directory)
    read_config(directory)
    if not (directory / WEIGHTS_NAME).is_file():
        raise CheckpointError(f"{directory} has no {WEIGHTS_NAME}: nothing to push")
    if not (directory / CARD_NAME).is_file():
        write_model_card(directory)
    token = token or os.environ.get("HF_TOKEN") or get_token()
    if not token:
        raise CheckpointError("pushing needs a Hub token with write access: pass token= or set HF_TOKEN")
    if not REPO_RE.match(repo_id) or "@" in repo_id or ":" in repo_id:
        raise CheckpointError(f"{repo_id!r} is not a Hub repo id (owner/name)")
    path_in_repo = (path_in_repo or "").strip("/") or None
    api = HfApi(endpoint=endpoint or constants.ENDPOINT, token=token, library_name="n2n",
                library_version=__version__)
    try:
        repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(folder_path=directory, repo_id=repo_id, repo_type="model", path_in_repo=path_in_repo,
                          allow_patterns=list(PUSHED_FILES),
                          commit_message=commit_message or f"n2n: upload {path_in_repo or directory.name}")
    except (HfHubHTTPError, OSError, ValueError) as e:
        message = f"push of {directory} to {repo_id} failed: {reason(e, typed=True)}"
        raise CheckpointError(message.replace(token, "***")) from None
    except httpx.HTTPError as e:  # network down: same scrubbing, no chained traceback
        message = f"push of {directory} to {repo_id} failed: {reason(e, typed=True)}"
        raise HubUnreachableError(message.replace(token, "***")) from None
    url = str(repo_url).rstrip("/")
    log.info("pushed %s to %s", directory, url)
    return f"{url}/tree/main/{path_in_repo}" if path_in_repo else url
