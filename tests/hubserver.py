"""The tests' Hub: a real HTTP server on 127.0.0.1 that answers like the Hugging Face Hub.

`FakeHub` serves the endpoints huggingface_hub 2.4 calls (read from its source):
- HEAD/GET `/{owner}/{repo}/resolve/{revision}/{path}`: `X-Repo-Commit`, `ETag` (git blob sha1),
  for LFS files (`*.safetensors`) `X-Linked-Etag` (sha256) and `X-Linked-Size`; errors as the Hub
  sends them: 404 + `X-Error-Code: RepoNotFound | RevisionNotFound | EntryNotFound`.
- POST `/api/repos/create`, `/api/validate-yaml`, `/api/models/{repo}/preupload/{rev}` (every file
  "regular", so the client sends it base64 in the commit; with hf_xet installed an "lfs" answer
  would send it to Xet storage, which this server does not speak) and `/api/models/{repo}/commit/{rev}`
  (NDJSON).
It records every request (method, path, headers, body), and the tests assert on that record.
`HostileHub` adds files known only by their size and slow answers (tests/test_hostile_hub.py,
benchmarks/soak.py).

`point_client_at` points huggingface_hub at it by patching `huggingface_hub.constants` (ENDPOINT,
the resolve URL template, HF_HUB_CACHE, HF_HUB_OFFLINE: what `HF_ENDPOINT`, `HF_HOME` and
`HF_HUB_OFFLINE` set at import). Used by test_hub, test_hostile_hub, test_security, test_reliability
and benchmarks/soak.py; the fixtures built on it (`ckpt_files`, `bundled`) are in conftest.py.
"""
from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import torch

from n2n import hub

TOKEN = "hf_TestOnlySecretToken0123456789abcdef"  # the one token FakeHub accepts
MB = 1024**2


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


def free_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def point_client_at(monkeypatch, endpoint: str, cache: Path) -> None:
    """What HF_ENDPOINT / HF_HUB_CACHE set when huggingface_hub is imported, set on the imported module."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(cache.parent / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(cache.parent / "stored_tokens"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv(hub.HUB_REPO_ENV, raising=False)
    close_client()  # no pooled connection from an earlier test's server


def close_client() -> None:
    """Close huggingface_hub's pooled HTTP session, so that no connection outlives a server."""
    from huggingface_hub.utils import _http

    _http.close_session()



def checkpoint_state(files) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    return load(files[hub.WEIGHTS_NAME])


def safetensors_bytes(state: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save(state, metadata={"format": "pt"})


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)



# ----------------------------------------------------------------------------- a hostile Hub

class HostileHub(FakeHub):
    """FakeHub plus files known only by their size, and slow answers.

    sized: {(repo_id, path): bytes}: HEAD answers with that size; GET streams a safetensors header
        and zeros, so that a client that does download it would really receive (and hold) that much.
    delays: {(method, path substring): seconds} to wait before answering a matching request.
    """

    def __init__(self):
        self.sized: dict[tuple[str, str], int] = {}
        self.delays: dict[tuple[str, str], float] = {}
        super().__init__()

    def _handler(self):
        fake, base = self, super()._handler()

        class Handler(base):
            def _dispatch(self):
                try:
                    super()._dispatch()  # logs the request, then answers it
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting: as it should
                    pass

            def _delay(self):
                path = urlsplit(self.path).path
                for (method, part), seconds in fake.delays.items():
                    if self.command == method and part in path:
                        time.sleep(seconds)

            def _send(self, status, content, headers=None):
                self._delay()
                super()._send(status, content, headers)

            def _resolve(self, repo_id, revision, filename):
                size = fake.sized.get((repo_id, filename))
                if size is None:
                    return super()._resolve(repo_id, revision, filename)
                self._delay()
                sha = fake.repos[repo_id]["refs"].get(revision, revision)
                self.send_response(200)
                for key, value in {"X-Repo-Commit": sha, "ETag": f'"{"e" * 40}"', "X-Linked-Etag": f'"{"f" * 64}"',
                                   "X-Linked-Size": str(size), "Content-Length": str(size),
                                   "Connection": "close"}.items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command == "GET":
                    head = safetensors_header(size)
                    self.wfile.write(head)
                    left, zeros = size - len(head), bytes(MB)
                    while left > 0:
                        self.wfile.write(zeros[:min(left, MB)])
                        left -= MB

        return Handler


def safetensors_header(size: int) -> bytes:
    """The header of a safetensors file of exactly `size` bytes holding one uint8 tensor of zeros."""
    n = size - 8 - 128  # the header: the JSON, padded with spaces to 128 bytes
    header = json.dumps({"pad": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode().ljust(128)
    return (128).to_bytes(8, "little") + header

