"""Reliability and security (issue 7): hostile files through the CLI and the app, concurrent load,
faults (the Hub dropping mid-download, a diverging run, an unwritable output), and what a visitor
can and cannot reach on the server.

tests/test_io.py already feeds read_image every kind of broken file; here a representative set goes
through the CLI (in a subprocess) and the running app (gradio_client), which must answer each with
a result or a one-line refusal, and keep serving.
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import os
import re
import socket
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import torch
from gradio_client import handle_file
from PIL import Image

import app
from benchmarks.load import run_load
from helpers import ROOT, photo, plain_image, refusal
from hubserver import FakeHub, checkpoint_state, free_port_url, point_client_at, safetensors_bytes
from n2n import finetune as ft, hub
from n2n.infer import denoise
from n2n.io import read_image, write_image
from ui import common, registry

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- hostile files

def _chunk(chunk_type: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + chunk_type + data + zlib.crc32(chunk_type + data).to_bytes(4, "big")


def _gray_png(width: int, height: int, rows: int | None = None) -> bytes:
    """An 8-bit gray PNG of width × height, all black, compressed row by row (a 12000² one is ~140 kB).
    rows: how many rows the pixel data really holds (fewer: only the header tells the size)."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    packer, row = zlib.compressobj(9), b"\0" * (width + 1)
    idat = b"".join(packer.compress(row) for _ in range(height if rows is None else rows)) + packer.flush()
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, tuple[Path, tuple]]:
    """name -> (file, expectation): ("refused", regex of the message) or ("ok", shape, dtype) of the result."""
    folder = tmp_path_factory.mktemp("hostile")
    rgb = Image.fromarray(np.rint(photo(48)[:32] * 255).astype(np.uint8))  # 48 wide, 32 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    flipped = rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    files = {
        "page.png": (b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n", ("refused", r"HTML page")),
        "document.png": (b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n", ("refused", r"PDF")),
        "drawing.png": (b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><rect/></svg>\n',
                        ("refused", r"SVG")),
        "cut.jpg": (_encoded(rgb, "JPEG", quality=90)[:-300], ("refused", r"truncated")),
        "empty.png": (b"", ("refused", r"empty")),
        "bomb.png": (_gray_png(40000, 40000, rows=2), ("refused", r"pixels.*over the limit")),  # header only
        "huge.png": (_gray_png(12000, 12000), ("refused", r"pixels.*over the limit")),  # real; Pillow only warns
        "animated.gif": (_encoded(rgb, "GIF", save_all=True, append_images=[flipped], duration=100, loop=0),
                         ("ok", (32, 48, 3), np.uint8)),
        "rotated.jpg": (_encoded(rgb, "JPEG", quality=95, exif=exif.tobytes()), ("ok", (48, 32, 3), np.uint8)),
        "cmyk.jpg": (_encoded(rgb.convert("CMYK"), "JPEG", quality=95), ("ok", (32, 48, 3), np.uint8)),
        "palette.png": (_encoded(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
                        ("ok", (32, 48, 3), np.uint8)),
        "with space ünïcödé 名前.png": (None, ("ok", (32, 48, 3), np.uint8)),
        "-leading-dash.png": (None, ("ok", (32, 48, 3), np.uint8)),
        "n" * 196 + ".png": (None, ("ok", (32, 48, 3), np.uint8)),  # 200 characters
    }
    found = {}
    for name, (data, expect) in files.items():
        path = folder / name
        if data is None:
            write_image(path, np.asarray(rgb))
        else:
            path.write_bytes(data)
        found[name] = (path, expect)
    gray16 = np.rint(photo(40, channels=1)[:24] * 65535).astype(np.uint16)
    for name, image, expect in [("deep16.png", gray16, ("ok", (24, 40, 1), np.uint16)),
                                ("one.png", np.full((1, 1, 3), 200, np.uint8), ("ok", (1, 1, 3), np.uint8)),
                                ("thin.png", np.random.default_rng(0).integers(0, 256, (3, 4000, 3), dtype=np.uint8),
                                 ("ok", (3, 4000, 3), np.uint8))]:
        found[name] = (write_image(folder / name, image), expect)
    assert len({p.stem for p, _ in found.values()}) == len(found)  # the CLI names its outputs by stem
    return found


@pytest.fixture(scope="module")
def tiny_model(tiny_checkpoint):
    return hub.load_dir(tiny_checkpoint).model


@pytest.fixture(scope="module")
def expected(hostile, tiny_model) -> dict[str, np.ndarray]:
    """What the tiny model makes of each file that must work: the answer the CLI and the app must give."""
    return {name: denoise(tiny_model, read_image(path, dtype=None))
            for name, (path, expect) in hostile.items() if expect[0] == "ok"}


def test_cli_denoises_or_refuses_every_hostile_file_in_one_line(hostile, expected, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    paths = [str(path) for path, _ in hostile.values()]
    result = subprocess.run([sys.executable, "-m", "n2n", "denoise", "-o", str(out), "--model", str(tiny_checkpoint),
                             "--", *paths], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr  # some refused, the rest done
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    refused = [name for name, (_, expect) in hostile.items() if expect[0] == "refused"]
    assert len(errors) == len(refused), errors
    for name, (path, expect) in hostile.items():
        target = out / f"{path.stem}.png"
        if expect[0] == "refused":
            mine = [line for line in errors if line.startswith(f"error: {path}: ")]
            assert len(mine) == 1 and re.search(expect[1], mine[0]), (name, mine)
            assert not target.exists(), name
        else:
            got = read_image(target, dtype=None)
            assert got.shape == expect[1] and got.dtype == expect[2], name
            assert np.array_equal(got, expected[name]), name
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{path.stem}.png" for path, expect in hostile.values() if expect[0] == "ok"), "no temporary files left"


# ----------------------------------------------------------------------------- the running app

def test_app_denoises_or_refuses_every_hostile_file_and_keeps_serving(client, hostile, expected):
    for name, (path, expect) in hostile.items():
        if expect[0] == "refused":
            for api in ("/denoise", "/corrupt") if name in ("page.png", "empty.png", "bomb.png") else ("/denoise",):
                message = refusal(lambda: client.predict(handle_file(str(path)),
                                                         "tiny" if api == "/denoise" else "gaussian", api_name=api))
                assert message.startswith(f"{name}: ") and re.search(expect[1], message), (api, message)
                assert "max_pixels" not in message and "read_image" not in message, message  # advice for programmers
        else:
            *_, download, _ = client.predict(handle_file(str(path)), "tiny", api_name="/denoise")
            got = read_image(download, dtype=None)
            assert got.shape == expect[1] and got.dtype == expect[2], name
            assert np.array_equal(got, expected[name]), name
            if name in ("rotated.jpg", "deep16.png", "one.png"):
                noisy_a, *_ = client.predict(handle_file(str(path)), "gaussian", 10, api_name="/corrupt")
                noisy = read_image(noisy_a, dtype=None)
                assert noisy.shape == expect[1] and noisy.dtype == expect[2], name
    # uploads for fine-tuning are checked the same way, the first bad one named
    good, page, bomb = (hostile[n][0] for n in ("palette.png", "page.png", "bomb.png"))
    for files, word in (([good, page], r"^page\.png: not an image file"), ([bomb], r"^bomb\.png: .*over the limit")):
        for mode in ("synthetic", "zero-shot"):
            message = refusal(lambda: client.predict([handle_file(str(f)) for f in files], "gaussian", mode, steps=1,
                                                     api_name="/finetune"))
            assert re.search(word if len(files) == 1 or mode != "zero-shot" else "exactly one", message), message
    # still serving: a normal request after all that
    clean = hostile["palette.png"][0]
    _, _, psnr_a, _, = client.predict(handle_file(str(clean)), "gaussian", 25, api_name="/corrupt")
    assert 18 < psnr_a < 24


def test_concurrent_requests_each_get_their_own_answer(server, tiny_model, tmp_path):
    """The load benchmark at small size: 8 /denoise and 1 /finetune at once, every answer checked."""
    _, url = server
    report = run_load(url, model="tiny", n_denoise=8, n_finetune=1, steps=1, size=24, verify_model=tiny_model,
                      workdir=tmp_path)
    for endpoint, sent in (("denoise", 8), ("finetune", 1)):
        part = report[endpoint]
        assert part["answered"] == part["correct"] == sent, part  # none lost, failed or mixed up
        assert not part["failed"] and not part["mixed_up"]
        assert 0 < part["p50_s"] <= part["p95_s"] <= part["max_s"]
    assert report["ok"] and report["verified"]


# ----------------------------------------------------------------------------- faults

class DroppingHub(FakeHub):
    """A Hub that cuts the connection halfway through the first weights file it sends, then stays
    down: every later connection is closed without an answer, until `healed` is set."""

    def __init__(self):
        self.down = False
        self.healed = False
        super().__init__()

    def _handler(self):
        fake, base = self, super()._handler()

        class Handler(base):
            def handle(self):
                if not fake.down:
                    super().handle()

            def _send(self, status, content, headers=None):
                if (self.command == "GET" and status == 200 and not fake.healed
                        and urlsplit(self.path).path.endswith(".safetensors")):
                    fake.down = True
                    self.send_response(200)
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content[: len(content) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                super()._send(status, content, headers)

        return Handler


def test_hub_dropping_mid_download_serves_the_bundled_model_with_a_notice(client, bundled, ckpt_files, fresh_models,
                                                                          monkeypatch, tmp_path):
    # not the bundled weights: tells them apart
    hub_weights = {k: v + 0.01 for k, v in checkpoint_state(ckpt_files).items()}
    fake = DroppingHub()
    try:
        fake.commit("n2n/zoo", {"gaussian/config.json": ckpt_files[hub.CONFIG_NAME],
                                "gaussian/model.safetensors": safetensors_bytes(hub_weights)})
        point_client_at(monkeypatch, fake.url, tmp_path / "hf" / "hub")
        monkeypatch.setenv(hub.HUB_REPO_ENV, "n2n/zoo")
        image = plain_image(tmp_path)
        start = time.monotonic()
        _, _, _, download, source = client.predict(handle_file(str(image)), "gaussian", api_name="/denoise")
        assert time.monotonic() - start < 30
        assert fake.down and fake.requests("GET", "/gaussian/model.safetensors"), "the download began, then broke"
        assert "bundled checkpoint" in source and "Hub unreachable" in source, source  # the notice
        expected = denoise(hub.load_dir(bundled / "gaussian").model, read_image(image, dtype=None))
        assert np.array_equal(read_image(download, dtype=None), expected)
        assert not list((tmp_path / "hf" / "hub").rglob("snapshots/*/gaussian/model.safetensors")), "no half file"
        # the Hub comes back: within the fallback's time in the cache the bundled copy still serves, after it the Hub's
        fake.down, fake.healed = False, True
        *_, source = client.predict(handle_file(str(image)), "gaussian", api_name="/denoise")
        assert "bundled checkpoint" in source, source
        monkeypatch.setattr(registry, "FALLBACK_S", 0.0)
        _, _, _, download, source = client.predict(handle_file(str(image)), "gaussian", api_name="/denoise")
        assert "Hugging Face Hub" in source and "unreachable" not in source, source
        assert not np.array_equal(read_image(download, dtype=None), expected)  # the Hub's weights, not the bundled
    finally:
        fake.close()


def test_diverging_finetune_stops_cleanly_and_every_model_stays_usable(client, photo_folder, tiny_checkpoint,
                                                                      tiny_model, monkeypatch, tmp_path):
    """The app exposes no learning rate: an absurd one is forced on the run the app starts."""
    files = [handle_file(str(p)) for p in sorted(photo_folder.glob("*.png"))[:2]]
    digest = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in tiny_checkpoint.iterdir() if f.is_file()}
    real_train = ft.train
    with monkeypatch.context() as patch:
        patch.setattr(ft, "train", lambda config, **kw: real_train(dataclasses.replace(config, lr=1e30), **kw))
        # 20 steps: the loss of step 2 blows up; 6 steps: already the validation after step 1 (its denoised
        # images turn NaN): both stop the run with a plain message
        for steps, cause in ((20, r"loss became (nan|inf) at step 1"), (6, r"model's output holds NaN")):
            message = refusal(lambda: client.submit(files, "gaussian", steps=steps, init="tiny",
                                                    api_name="/finetune").result(timeout=180))
            assert message.startswith("Training diverged and stopped") and re.search(cause, message), message
    # the model it started from is untouched, and serves as before
    after = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in tiny_checkpoint.iterdir() if f.is_file()}
    assert after == digest
    image = plain_image(tmp_path)
    *_, download, _ = client.predict(handle_file(str(image)), "tiny", api_name="/denoise")
    assert np.array_equal(read_image(download, dtype=None), denoise(tiny_model, read_image(image, dtype=None)))
    # and the next run trains normally, its checkpoint loadable
    *_, status, archive, name = client.submit(files, "gaussian", steps=1, api_name="/finetune").result(timeout=180)
    assert "finished" in status
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "unzipped")
    assert hub.load_dir(tmp_path / "unzipped" / name).config["steps"] == 1


def test_cli_unwritable_output_or_full_disk_is_a_clear_error_and_leaves_nothing(photo_folder, tiny_checkpoint,
                                                                                 tmp_path, capsys, monkeypatch):
    from n2n import cli

    source, other = sorted(photo_folder.glob("*.png"))[:2]
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")

    def run(*args) -> str:
        with pytest.raises(SystemExit) as exit_:
            cli.main(["denoise", "--model", str(tiny_checkpoint), *map(str, args)])
        assert exit_.value.code not in (0, None)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "Traceback" not in err, err
        return lines[0]

    # a parent that is a regular file: one output file, then an output folder for several inputs
    assert "cannot write" in run(source, "-o", blocker / "out.png")
    assert "error:" in run(source, other, "-o", blocker / "outdir")
    assert blocker.read_text() == "not a folder"
    # a full disk: the temporary file cannot be synced; nothing is left under the final name, nor beside it
    folder = tmp_path / "full"
    folder.mkdir()

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    assert "No space left on device" in run(source, "-o", folder / "out.png")
    monkeypatch.undo()
    assert list(folder.iterdir()) == []


def test_cli_model_with_broken_weights_is_a_clear_error(tmp_path, capsys, photo_folder):
    from n2n import cli
    from n2n.models import build_model

    model = build_model("unet")
    with torch.no_grad():
        model.enc_conv0.weight.fill_(float("nan"))  # what a diverged run could leave behind
    hub.save(model, tmp_path / "broken", {"architecture": "unet", "model_args": {"in_channels": 3, "out_channels": 3}})
    with pytest.raises(SystemExit) as exit_:
        cli.main(["denoise", str(next(photo_folder.glob("*.png"))), "-o", str(tmp_path / "out.png"),
                  "--model", str(tmp_path / "broken")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert re.search(r"^error: the model's output holds NaN", err, re.M), err
    assert not (tmp_path / "out.png").exists()


# ----------------------------------------------------------------------------- security

FORBIDDEN = [r"\btorch\.load\s*\(", r"\btorch\.hub\.load\s*\(", r"\bpickle\.loads?\s*\(", r"\bcPickle\b",
             r"weights_only\s*=\s*False", r"allow_pickle\s*=\s*True", r"\bjoblib\.load\s*\(", r"\bdill\.loads?\s*\("]
SKIP_DIRS = {".venv", "venv", "node_modules", "site-packages", "__pycache__", "runs", "artifacts"}


def test_nothing_is_ever_unpickled():
    found, scanned = [], 0
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(".")]
        for name in files:
            path = Path(folder) / name
            if not name.endswith(".py") or path.resolve() == Path(__file__).resolve():
                continue
            scanned += 1
            text = path.read_text(errors="replace")
            found += [f"{path.relative_to(ROOT)}: {m.group()}"
                      for pattern in FORBIDDEN for m in re.finditer(pattern, text)]
    assert scanned > 10 and not found, found


def _bytes(size: str) -> int:
    number, unit = re.fullmatch(r"\s*([\d.]+)\s*([kmg]?b)\s*", size.lower()).groups()
    return int(float(number) * {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}[unit])


def test_uploads_are_bounded_by_the_server(server):
    import httpx

    _, url = server
    limit = _bytes(app.LAUNCH_KWARGS["max_file_size"])
    assert 1024**2 <= limit <= 100 * 1024**2
    too_big = httpx.post(url + "gradio_api/upload", files={"files": ("big.png", b"\0" * (limit + 1), "image/png")},
                         timeout=60)
    assert too_big.status_code == 413, too_big.text
    fine = httpx.post(url + "gradio_api/upload", files={"files": ("small.png", b"\0" * 1000, "image/png")}, timeout=60)
    assert fine.status_code == 200
    assert common.MAX_PIXELS <= 40_000_000  # and images are refused on their header's size (bomb.png above)


def test_model_names_never_reach_the_filesystem(client, canary, monkeypatch, tmp_path):
    folder, opened = canary
    cache = tmp_path / "hf" / "hub"
    point_client_at(monkeypatch, free_port_url(), cache)  # the Hub unreachable: the client falls back on its cache
    (cache / "models--n2n--zoo" / "refs").mkdir(parents=True)  # as if n2n/zoo had been downloaded once
    up_from_refs = os.path.relpath(folder, cache / "models--n2n--zoo" / "refs")
    image = plain_image(tmp_path)
    names = [str(folder), os.path.relpath(folder, os.getcwd()), "../" * 12 + str(folder).lstrip("/"),
             f"file://{folder}", f"~/{os.path.relpath(folder, Path.home())}",
             f"n2n/zoo@{up_from_refs}/refs/main",  # a revision is a path in the Hub cache
             f"n2n/zoo@main:{'../' * 8}{str(folder).lstrip('/')}", "../zoo", "n2n/..", "./n2n"]
    for name in names:
        for model, hub_repo in ((name, ""), ("tiny", name)):  # the model box and the Hub box
            message = refusal(lambda: client.predict(handle_file(str(image)), model, hub_repo, api_name="/denoise"))
            assert re.search(r"^(Unknown model|Cannot load) ", message), message
    assert opened == [], "a model name reached these files"


def test_files_outside_the_uploads_are_never_read_or_served(server, canary):
    import httpx

    _, url = server
    folder, opened = canary
    config = str(folder / hub.CONFIG_NAME)
    for path in (config, f"/tmp/gradio/../..{config}"):  # as an input that was never uploaded
        data = [{"path": path, "meta": {"_type": "gradio.FileData"}}, "tiny", "", [], None, "gaussian", 25]
        event = httpx.post(url + "gradio_api/call/denoise", json={"data": data}, timeout=30).json()["event_id"]
        answer = httpx.get(url + f"gradio_api/call/denoise/{event}", timeout=60).text
        assert "event: error" in answer and "event: complete" not in answer
    for path in (config, "/etc/passwd", str(ROOT / "app.py")):  # fetched directly
        assert httpx.get(url + "gradio_api/file=" + path, timeout=30).status_code in (403, 404)
    assert opened == []
