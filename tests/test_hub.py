"""The Hub part of the model zoo, against tests/hubserver.py's FakeHub: a real HTTP server on
127.0.0.1 that answers like the Hub and records every request, which the tests assert on. One test
runs the CLI in a subprocess with the real environment variables instead of patched constants.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from n2n import hub
from n2n.hub import CheckpointError
from n2n.infer import denoise
from helpers import photo
from hubserver import (TOKEN, FakeHub, checkpoint_state, close_client, free_port_url, point_client_at,
                       safetensors_bytes, same_weights)

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture
def fake(monkeypatch, tmp_path, ckpt_files):
    """A running fake Hub with n2n/tiny (root checkpoint, tag v1 older), n2n/zoo (subfolders) and n2n/broken."""
    server = FakeHub()
    old_config = json.loads(ckpt_files[hub.CONFIG_NAME])
    old_config["note"] = "tagged v1"
    server.commit("n2n/tiny", {hub.CONFIG_NAME: json.dumps(old_config).encode(),
                               hub.WEIGHTS_NAME: ckpt_files[hub.WEIGHTS_NAME]}, refs=("main", "v1"))
    server.commit("n2n/tiny", {**ckpt_files, "README.md": b"# tiny\n"})
    server.commit("n2n/zoo", {f"gaussian/{k}": v for k, v in ckpt_files.items()})
    config = json.loads(ckpt_files[hub.CONFIG_NAME])
    wrong = {f"renamed.{k}": v for k, v in checkpoint_state(ckpt_files).items()}
    server.commit("n2n/broken", {
        "noarch/config.json": json.dumps({"model_args": {}}).encode(),
        "noarch/model.safetensors": ckpt_files[hub.WEIGHTS_NAME],
        "wrongkeys/config.json": json.dumps(config).encode(),
        "wrongkeys/model.safetensors": safetensors_bytes(wrong),
        "noweights/config.json": json.dumps(config).encode(),
    })
    point_client_at(monkeypatch, server.url, tmp_path / "hf" / "hub")
    yield server
    server.close()
    close_client()


# ----------------------------------------------------------------------------- downloads

def test_download_loads_and_denoises_like_the_folder(fake, tiny_checkpoint):
    loaded = hub.resolve("n2n/tiny")
    assert loaded.source == "hub:n2n/tiny@main"
    fields = (loaded.origin, loaded.repo, loaded.revision, loaded.subfolder, loaded.note)
    assert fields == ("hub", "n2n/tiny", "main", "", "")
    assert "note" not in loaded.config  # main, not the v1 tag
    image = photo(48)
    expected = denoise(hub.load_dir(tiny_checkpoint).model, image)
    assert np.array_equal(denoise(loaded.model, image), expected)

    gets = [r["path"] for r in fake.requests("GET")]
    assert gets == [f"/n2n/tiny/resolve/main/{hub.CONFIG_NAME}",
                    f"/n2n/tiny/resolve/{fake.repos['n2n/tiny']['refs']['main']}/{hub.WEIGHTS_NAME}"]
    assert not fake.requests(contains="README.md")  # only the two files a checkpoint needs
    assert all("n2n" in r["headers"].get("user-agent", "") for r in fake.log)


def test_anonymous_loads_never_send_the_machines_token(fake, monkeypatch):
    """The app loads a visitor's Hub reference anonymously: the Space's HF_TOKEN stays home (issue 15).
    Without `anonymous` (the CLI, N2N_HUB_REPO) huggingface_hub's own token goes along as before."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub.resolve("n2n/tiny", anonymous=True)
    assert fake.log and not any("authorization" in r["headers"] for r in fake.log)
    fake.log.clear()
    hub.resolve("n2n/zoo:gaussian")
    assert fake.log and all(r["headers"].get("authorization") == f"Bearer {TOKEN}" for r in fake.log)


def test_second_load_reuses_the_cache(fake):
    first = hub.resolve("n2n/zoo:gaussian")
    fake.log.clear()
    second = hub.resolve("n2n/zoo:gaussian")
    assert second.source == first.source == "hub:n2n/zoo@main:gaussian"
    assert (second.origin, second.repo, second.revision, second.subfolder) == ("hub", "n2n/zoo", "main", "gaussian")
    assert same_weights(first.model, second.model)
    assert fake.requests("GET") == []  # nothing downloaded again
    # Only metadata: HEADs of config.json; the weights are pinned to the commit already cached.
    assert {r["path"] for r in fake.log} == {"/n2n/zoo/resolve/main/gaussian/config.json"}


def test_pinned_revision_reaches_the_server(fake):
    loaded = hub.resolve("n2n/tiny@v1")
    assert loaded.source == "hub:n2n/tiny@v1" and loaded.revision == "v1"
    assert loaded.config["note"] == "tagged v1"
    v1 = fake.repos["n2n/tiny"]["refs"]["v1"]
    assert v1 != fake.repos["n2n/tiny"]["refs"]["main"]
    assert fake.requests("GET", "/n2n/tiny/resolve/v1/config.json")
    assert fake.requests("GET", f"/n2n/tiny/resolve/{v1}/model.safetensors")
    assert not fake.requests(contains="/resolve/main/")
    # A commit hash works too, and once cached needs no request at all.
    fake.log.clear()
    assert hub.resolve(f"n2n/tiny@{v1}").config["note"] == "tagged v1"
    assert fake.log == []


def test_missing_repo_and_revision_give_clear_errors(fake):
    with pytest.raises(CheckpointError, match=r"Hub repo 'n2n/nope' not found"):
        hub.resolve("n2n/nope")
    with pytest.raises(CheckpointError, match=r"revision 'v9' not found in Hub repo 'n2n/tiny'"):
        hub.resolve("n2n/tiny@v9")
    with pytest.raises(CheckpointError, match=r"n2n/zoo@main:poisson is not an n2n checkpoint: no config.json"):
        hub.resolve("n2n/zoo:poisson")
    assert fake.requests("HEAD", "/n2n/nope/resolve/main/config.json")


@pytest.mark.parametrize("sub, message", [
    ("noarch", r"not an n2n checkpoint config \(no 'architecture' key\)"),
    ("wrongkeys", r"does not match the unet architecture"),
    ("noweights", r"is not an n2n checkpoint: no model.safetensors"),
])
def test_malformed_checkpoints_are_refused(fake, sub, message):
    with pytest.raises(CheckpointError, match=message):
        hub.resolve(f"n2n/broken:{sub}")
    if sub == "noarch":  # refused on its config: the weights were never fetched
        assert not fake.requests("GET", "model.safetensors")


def test_pickles_are_never_fetched(fake):
    tiny = fake.repos["n2n/tiny"]
    fake.commit("n2n/pickled", {"config.json": tiny["commits"][tiny["refs"]["main"]]["config.json"],
                                "pytorch_model.bin": b"\x80\x04 not to be unpickled"})
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        hub.resolve("n2n/pickled")
    assert not fake.requests(contains="pytorch_model.bin")


# ----------------------------------------------------------------------------- offline, unreachable

def test_offline_mode_serves_from_the_cache(fake, monkeypatch):
    from huggingface_hub import constants

    online = hub.resolve("n2n/zoo:gaussian")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    fake.log.clear()
    offline = hub.resolve("n2n/zoo:gaussian")
    assert fake.log == []
    assert offline.source == "hub:n2n/zoo@main:gaussian (from the cache, offline)"
    assert offline.origin == "hub" and offline.note == "from the cache, offline"  # the note in a field: no parsing
    assert same_weights(online.model, offline.model)


def test_offline_mode_with_an_empty_cache_says_so(fake, monkeypatch):
    from huggingface_hub import constants

    from n2n.hub_remote import HubUnreachableError

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubUnreachableError,
                       match=r"HF_HUB_OFFLINE=1 and n2n/tiny@main \(config.json\) is not in the Hub cache"):
        hub.resolve("n2n/tiny")
    assert fake.log == []


def test_unreachable_hub_uses_the_cache_or_says_nothing_is_cached(fake, monkeypatch, tmp_path):
    from n2n.hub_remote import HubUnreachableError

    hub.resolve("n2n/tiny")  # cached while the Hub answers
    dead = free_port_url()
    point_client_at(monkeypatch, dead, tmp_path / "hf" / "hub")
    start = time.monotonic()
    loaded = hub.resolve("n2n/tiny")
    assert loaded.source.startswith("hub:n2n/tiny@main (from the cache, Hub unreachable: ConnectError")
    with pytest.raises(HubUnreachableError,
                       match="cannot reach the Hub and nothing is cached for n2n/zoo@main:gaussian"):
        hub.resolve("n2n/zoo:gaussian")
    assert time.monotonic() - start < 5  # no retry back-off (hf_hub_download alone would wait ~20 s)


# ----------------------------------------------------------------------------- N2N_HUB_REPO

def test_hub_repo_serves_bundled_names_first(fake, bundled, monkeypatch):
    monkeypatch.setenv(hub.HUB_REPO_ENV, "n2n/zoo")
    loaded = hub.resolve("gaussian")
    assert loaded.source == "hub:n2n/zoo@main:gaussian"
    assert fake.requests("GET", "/n2n/zoo/resolve/main/gaussian/config.json")
    # Not on the Hub but bundled → the bundled copy, and the source says why.
    shutil.copytree(bundled / "gaussian", bundled / "poisson")
    loaded = hub.resolve("poisson")
    assert loaded.source.startswith(
        "bundled:poisson (Hub copy unavailable: n2n/zoo@main:poisson is not an n2n checkpoint")
    # Neither on the Hub nor bundled → a clear error.
    with pytest.raises(CheckpointError, match="no model 'impulse': Hub copy unavailable"):
        hub.resolve("impulse")


@pytest.mark.parametrize("down", ["refused", "503"])
def test_hub_repo_falls_back_to_bundled_when_the_hub_is_down(fake, bundled, monkeypatch, tmp_path, down):
    monkeypatch.setenv(hub.HUB_REPO_ENV, "n2n/zoo@main")
    if down == "refused":
        point_client_at(monkeypatch, free_port_url(), tmp_path / "hf" / "hub")
        monkeypatch.setenv(hub.HUB_REPO_ENV, "n2n/zoo@main")
    else:
        fake.status_override = 503
    start = time.monotonic()
    loaded = hub.resolve("gaussian")
    assert time.monotonic() - start < 5
    assert loaded.source.startswith("bundled:gaussian (Hub unreachable: ")
    assert loaded.fallback.startswith("Hub unreachable: ")  # what the app reads to retry the Hub later
    assert loaded.origin == "bundled" and loaded.note == loaded.fallback and loaded.repo == ""
    assert ("ConnectError" if down == "refused" else "503") in loaded.source
    assert same_weights(loaded.model, hub.load_dir(bundled / "gaussian").model)
    if down == "503":
        assert len(fake.requests("HEAD")) == 1  # one probe, no retries


def test_without_hub_repo_bundled_names_stay_local(fake, bundled):
    loaded = hub.resolve("gaussian")
    assert loaded.source == "bundled:gaussian" and loaded.fallback == ""
    assert loaded.origin == "bundled" and loaded.note == ""
    assert hub.resolve(str(bundled / "gaussian")).origin == "local"  # a folder, by its path
    assert fake.log == []


# ----------------------------------------------------------------------------- push

def test_push_uploads_the_checkpoint_and_keeps_the_token_secret(fake, tiny_checkpoint, tmp_path, monkeypatch,
                                                               caplog, capsys):
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "ckpt" / "gaussian"
    shutil.copytree(tiny_checkpoint, out)
    assert (out / "training_state.safetensors").is_file()
    monkeypatch.setenv("HF_TOKEN", TOKEN)

    url = hub.push(out, "me/n2n-models", path_in_repo=out.name)

    assert url == f"{fake.url}/me/n2n-models/tree/main/gaussian"
    assert fake.created == [{"name": "n2n-models", "organization": "me", "visibility": "private", "type": "model"}]
    files = fake.repos["me/n2n-models"]["commits"][fake.repos["me/n2n-models"]["refs"]["main"]]
    assert set(files) == {".gitattributes", "gaussian/config.json", "gaussian/model.safetensors", "gaussian/README.md"}
    for name in ("config.json", "model.safetensors", "README.md"):
        assert files[f"gaussian/{name}"] == (out / name).read_bytes()
    assert b"library_name: n2n" in files["gaussian/README.md"]  # the model card, written by push
    # The token went to the server in the Authorization header of every write...
    writes = fake.requests("POST", "/api/repos/create") + fake.requests("POST", "/commit/main")
    assert writes and all(r["headers"]["authorization"] == f"Bearer {TOKEN}" for r in writes)
    # ...and nowhere else: not in logs, output, the URL, the checkpoint folder or the HF home.
    captured = capsys.readouterr()
    assert TOKEN not in caplog.text + captured.out + captured.err + url
    for path in [*out.rglob("*"), *(tmp_path / "hf").rglob("*")]:
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path

    # Pushing again (repo exists: 409 is fine) with the token as an argument, to the repo root.
    monkeypatch.delenv("HF_TOKEN")
    assert hub.push(out, "me/n2n-models", token=TOKEN) == f"{fake.url}/me/n2n-models"
    files = fake.repos["me/n2n-models"]["commits"][fake.repos["me/n2n-models"]["refs"]["main"]]
    assert {"config.json", "model.safetensors", "README.md"} <= set(files)
    assert not any("training_state" in f for f in files)


def test_push_errors_never_show_the_token(fake, tiny_checkpoint, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    bad = "hf_TestOnlyRevokedToken9876543210"
    with pytest.raises(CheckpointError) as err:
        hub.push(tiny_checkpoint, "me/other", token=bad)
    assert "me/other" in str(err.value) and "401" in str(err.value)
    captured = capsys.readouterr()
    for text in (str(err.value), repr(err.value), caplog.text, captured.out, captured.err):
        assert bad not in text
    assert fake.requests("POST", "/api/repos/create")[0]["headers"]["authorization"] == f"Bearer {bad}"
    with pytest.raises(CheckpointError, match="needs a Hub token"):
        hub.push(tiny_checkpoint, "me/other")


# ----------------------------------------------------------------------------- the real environment variables

def test_cli_with_hf_endpoint_and_hf_home_from_the_environment(fake, tmp_path):
    """HF_ENDPOINT / HF_HOME set before huggingface_hub is imported, as a user would, through the CLI."""
    from n2n.io import write_image

    write_image(tmp_path / "in.png", (photo(40) * 255).round().astype(np.uint8))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "N2N_"))}
    env.update(HF_ENDPOINT=fake.url, HF_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT),
               HF_HUB_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-m", "n2n", "denoise", str(tmp_path / "in.png"), "-o",
                          str(tmp_path / "out.png"), "--model", "n2n/zoo:gaussian", "--tile", "64"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "from hub:n2n/zoo@main:gaussian" in run.stderr
    assert (tmp_path / "out.png").is_file()
    assert fake.requests("GET", "/n2n/zoo/resolve/main/gaussian/config.json")
    assert list((tmp_path / "home" / "hub").glob("models--n2n--zoo/snapshots/*/gaussian/model.safetensors"))
