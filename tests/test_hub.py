"""The Hub part of the model zoo, against a real HTTP server on 127.0.0.1 that answers like the Hub.

`FakeHub` serves the endpoints huggingface_hub 2.4 calls (read from its source):
- HEAD/GET `/{owner}/{repo}/resolve/{revision}/{path}`: `X-Repo-Commit`, `ETag` (git blob sha1),
  for LFS files (`*.safetensors`) `X-Linked-Etag` (sha256) and `X-Linked-Size`; errors as the Hub
  sends them: 404 + `X-Error-Code: RepoNotFound | RevisionNotFound | EntryNotFound`.
- POST `/api/repos/create`, `/api/validate-yaml`, `/api/models/{repo}/preupload/{rev}` (every file
  "regular", so the client sends it base64 in the commit; with hf_xet installed an "lfs" answer
  would send it to Xet storage, which this server does not speak) and `/api/models/{repo}/commit/{rev}`
  (NDJSON).
It records every request (method, path, headers, body), and the tests assert on that record.

The client is pointed at it by patching `huggingface_hub.constants` (ENDPOINT, the resolve URL
template, HF_HUB_CACHE, HF_HUB_OFFLINE: what `HF_ENDPOINT`, `HF_HOME` and `HF_HUB_OFFLINE` set at
import); one test runs the CLI in a subprocess with the real environment variables instead.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
import torch

from n2n import hub
from n2n.hub import CheckpointError
from n2n.infer import denoise
from conftest import photo

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_TestOnlySecretToken0123456789abcdef"


# ----------------------------------------------------------------------------- the fake Hub

class FakeHub:
    """Repos as {repo_id: {"refs": {name: sha}, "commits": {sha: {path: bytes}}}} plus a request log."""

    def __init__(self):
        self.repos: dict[str, dict] = {}
        self.log: list[dict] = []
        self.created: list[dict] = []
        self.status_override: int | None = None  # e.g. 503: the Hub is down
        self.valid_tokens = {TOKEN}
        self._lock = threading.Lock()
        self._n = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    # --- state
    def commit(self, repo_id: str, files: dict[str, bytes], refs=("main",), base: str | None = "main") -> str:
        repo = self.repos.setdefault(repo_id, {"refs": {}, "commits": {}, "private": False})
        tree = dict(repo["commits"][repo["refs"][base]]) if base and base in repo["refs"] else {}
        tree.update(files)
        self._n += 1
        sha = hashlib.sha1(f"{repo_id}:{self._n}:{sorted(tree)}".encode()).hexdigest()
        repo["commits"][sha] = tree
        for ref in refs:
            repo["refs"][ref] = sha
        return sha

    def requests(self, method: str | None = None, contains: str = "") -> list[dict]:
        return [r for r in self.log if (method is None or r["method"] == method) and contains in r["path"]]

    # --- HTTP
    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep the test output clean
                pass

            def do_HEAD(self):
                self._dispatch()

            def do_GET(self):
                self._dispatch()

            def do_POST(self):
                self._dispatch()

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _dispatch(self):
                body = self._body() if self.command == "POST" else b""
                path = urlsplit(self.path).path
                if path == "/api/agent-harnesses":  # the client's once-a-process telemetry look-up: not ours
                    return self._send(404, b'{"error": "not found"}')
                with fake._lock:
                    fake.log.append({"method": self.command, "path": path, "query": urlsplit(self.path).query,
                                     "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                if fake.status_override:
                    return self._send(fake.status_override, b'{"error": "down"}')
                auth = self.headers.get("Authorization")
                if auth and auth.removeprefix("Bearer ") not in fake.valid_tokens:
                    return self._send(401, b'{"error": "Invalid credentials in Authorization header"}',
                                      {"X-Error-Message": "Invalid credentials in Authorization header"})
                if path.startswith("/api/"):
                    return self._api(path, body, auth)
                parts = [unquote(p) for p in path.strip("/").split("/")]
                if len(parts) >= 5 and parts[2] == "resolve":
                    return self._resolve("/".join(parts[:2]), parts[3], "/".join(parts[4:]))
                self._send(404, b'{"error": "not found"}')

            def _resolve(self, repo_id, revision, filename):
                repo = fake.repos.get(repo_id)
                if repo is None:
                    return self._send(404, b'{"error": "Repository not found"}',
                                      {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
                sha = repo["refs"].get(revision) or (revision if revision in repo["commits"] else None)
                if sha is None:
                    return self._send(404, b'{"error": "Invalid rev id"}',
                                      {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id"})
                content = repo["commits"][sha].get(filename)
                if content is None:
                    return self._send(404, b'{"error": "Entry not found"}',
                                      {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found",
                                       "X-Repo-Commit": sha})
                headers = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes",
                           "ETag": '"%s"' % hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()}
                if filename.endswith(".safetensors"):  # an LFS file: the Hub links its sha256 and size
                    headers["X-Linked-Etag"] = '"%s"' % hashlib.sha256(content).hexdigest()
                    headers["X-Linked-Size"] = str(len(content))
                self._send(200, content, headers)

            def _api(self, path, body, auth):
                if path == "/api/validate-yaml":
                    return self._json(200, {"errors": [], "warnings": []})
                if path == "/api/repos/create":
                    if not auth:
                        return self._json(401, {"error": "You must be authenticated"})
                    payload = json.loads(body)
                    fake.created.append(payload)
                    repo_id = f"{payload['organization']}/{payload['name']}"
                    if repo_id in fake.repos:
                        return self._json(409, {"error": "You already created this model repo",
                                                "url": f"{fake.url}/{repo_id}"})
                    fake.repos[repo_id] = {"refs": {}, "commits": {}, "private": payload.get("visibility") == "private"}
                    fake.commit(repo_id, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"})
                    return self._json(200, {"url": f"{fake.url}/{repo_id}", "name": repo_id})
                parts = [unquote(p) for p in path.strip("/").split("/")]
                if len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] in ("preupload", "commit"):
                    repo_id, action = f"{parts[2]}/{parts[3]}", parts[4]
                    if repo_id not in fake.repos or not auth:
                        return self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                    if action == "preupload":
                        files = json.loads(body)["files"]
                        return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                           "shouldIgnore": False, "oid": None} for f in files]})
                    lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                    files = {}
                    for item in lines[1:]:
                        if item["key"] != "file" or item["value"].get("encoding") != "base64":
                            return self._json(400, {"error": f"unsupported operation {item['key']}"})
                        files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    sha = fake.commit(repo_id, files, refs=(parts[5],), base=parts[5])
                    return self._json(200, {"commitUrl": f"{fake.url}/{repo_id}/commit/{sha}", "commitOid": sha,
                                            "pullRequestUrl": None})
                self._json(404, {"error": "not found"})

            def _json(self, status, obj, headers=None):
                self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

            def _send(self, status, content: bytes, headers=None):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(content)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(content)

        return Handler


def _free_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _point_client_at(monkeypatch, endpoint: str, cache: Path) -> None:
    """What HF_ENDPOINT / HF_HUB_CACHE set when huggingface_hub is imported, set on the imported module."""
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(cache.parent / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(cache.parent / "stored_tokens"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv(hub.HUB_REPO_ENV, raising=False)
    _http.close_session()  # no pooled connection from an earlier test's server


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def ckpt_files(tiny_checkpoint) -> dict[str, bytes]:
    return {name: (tiny_checkpoint / name).read_bytes() for name in (hub.CONFIG_NAME, hub.WEIGHTS_NAME)}


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
    wrong = {f"renamed.{k}": v for k, v in _state(ckpt_files).items()}
    server.commit("n2n/broken", {
        "noarch/config.json": json.dumps({"model_args": {}}).encode(),
        "noarch/model.safetensors": ckpt_files[hub.WEIGHTS_NAME],
        "wrongkeys/config.json": json.dumps(config).encode(),
        "wrongkeys/model.safetensors": _safetensors(wrong),
        "noweights/config.json": json.dumps(config).encode(),
    })
    _point_client_at(monkeypatch, server.url, tmp_path / "hf" / "hub")
    yield server
    server.close()
    from huggingface_hub.utils import _http
    _http.close_session()


@pytest.fixture
def bundled(monkeypatch, tmp_path, tiny_checkpoint) -> Path:
    """A `checkpoints/` folder holding the tiny checkpoint as `gaussian` (deterministic, unlike the real one)."""
    folder = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoint, folder / "gaussian", ignore=shutil.ignore_patterns("training_state*"))
    monkeypatch.setattr(hub, "CHECKPOINTS", folder)
    return folder


def _state(files) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    return load(files[hub.WEIGHTS_NAME])


def _safetensors(state: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save(state, metadata={"format": "pt"})


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------- downloads

def test_download_loads_and_denoises_like_the_folder(fake, tiny_checkpoint):
    loaded = hub.resolve("n2n/tiny")
    assert loaded.source == "hub:n2n/tiny@main"
    assert (loaded.kind, loaded.repo, loaded.revision, loaded.subfolder, loaded.note) == ("hub", "n2n/tiny", "main", "", "")
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
    assert (second.kind, second.repo, second.revision, second.subfolder) == ("hub", "n2n/zoo", "main", "gaussian")
    assert _same_weights(first.model, second.model)
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
    fake.commit("n2n/pickled", {"config.json": fake.repos["n2n/tiny"]["commits"][fake.repos["n2n/tiny"]["refs"]["main"]]["config.json"],
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
    assert offline.kind == "hub" and offline.note == "from the cache, offline"  # the note in a field: no parsing
    assert _same_weights(online.model, offline.model)


def test_offline_mode_with_an_empty_cache_says_so(fake, monkeypatch):
    from huggingface_hub import constants

    from n2n.hub_remote import HubUnreachableError

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubUnreachableError, match=r"HF_HUB_OFFLINE=1 and n2n/tiny@main \(config.json\) is not in the Hub cache"):
        hub.resolve("n2n/tiny")
    assert fake.log == []


def test_unreachable_hub_uses_the_cache_or_says_nothing_is_cached(fake, monkeypatch, tmp_path):
    from n2n.hub_remote import HubUnreachableError

    hub.resolve("n2n/tiny")  # cached while the Hub answers
    dead = _free_port_url()
    _point_client_at(monkeypatch, dead, tmp_path / "hf" / "hub")
    start = time.monotonic()
    loaded = hub.resolve("n2n/tiny")
    assert loaded.source.startswith("hub:n2n/tiny@main (from the cache, Hub unreachable: ConnectError")
    with pytest.raises(HubUnreachableError, match="cannot reach the Hub and nothing is cached for n2n/zoo@main:gaussian"):
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
    assert loaded.source.startswith("bundled:poisson (Hub copy unavailable: n2n/zoo@main:poisson is not an n2n checkpoint")
    # Neither on the Hub nor bundled → a clear error.
    with pytest.raises(CheckpointError, match="no model 'impulse': Hub copy unavailable"):
        hub.resolve("impulse")


@pytest.mark.parametrize("down", ["refused", "503"])
def test_hub_repo_falls_back_to_bundled_when_the_hub_is_down(fake, bundled, monkeypatch, tmp_path, down):
    monkeypatch.setenv(hub.HUB_REPO_ENV, "n2n/zoo@main")
    if down == "refused":
        _point_client_at(monkeypatch, _free_port_url(), tmp_path / "hf" / "hub")
        monkeypatch.setenv(hub.HUB_REPO_ENV, "n2n/zoo@main")
    else:
        fake.status_override = 503
    start = time.monotonic()
    loaded = hub.resolve("gaussian")
    assert time.monotonic() - start < 5
    assert loaded.source.startswith("bundled:gaussian (Hub unreachable: ")
    assert loaded.fallback.startswith("Hub unreachable: ")  # what the app reads to retry the Hub later
    assert loaded.kind == "bundled" and loaded.note == loaded.fallback and loaded.repo == ""
    assert ("ConnectError" if down == "refused" else "503") in loaded.source
    assert _same_weights(loaded.model, hub.load_dir(bundled / "gaussian").model)
    if down == "503":
        assert len(fake.requests("HEAD")) == 1  # one probe, no retries


def test_without_hub_repo_bundled_names_stay_local(fake, bundled):
    loaded = hub.resolve("gaussian")
    assert loaded.source == "bundled:gaussian" and loaded.fallback == ""
    assert loaded.kind == "bundled" and loaded.note == ""
    assert hub.resolve(str(bundled / "gaussian")).kind == "local"  # a folder, by its path
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
