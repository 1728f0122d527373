"""Shared fixtures: small real images and a small real checkpoint, made by the tests themselves, that
checkpoint as a Hub repo holds it or as the bundled `gaussian`, the app served with it (the one in-process
launch of the app), and a canary folder whose every opened file is recorded. Plain helpers: tests/helpers.py."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data

from helpers import DATA


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true",
                     help="also run the tests marked slow (minutes: the bundled checkpoints' Kodak24 regressions)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: minutes long; skipped unless pytest is given --run-slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with `python -m pytest --run-slow -m slow`")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory) -> Path:
    """Four small clean photos as PNG files."""
    from n2n.io import write_image
    from skimage.transform import resize

    folder = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        image = getattr(skimage.data, name)()
        small = (resize(image, (72, 96), anti_aliasing=True) * 255).round().astype(np.uint8)
        write_image(folder / f"{name}.png", small)
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, photo_folder) -> Path:
    """A U-Net trained for a few steps by the real loop, saved by the real `checkpoint.save`."""
    from n2n.train import TrainConfig, train

    out = tmp_path_factory.mktemp("ckpt") / "gaussian"
    config = TrainConfig(data=str(photo_folder), steps=3, batch_size=2, crop=32, out=str(out), checkpoint_every=3)
    for _ in train(config):
        pass
    return out


@pytest.fixture
def kodak():
    folder = DATA / "kodak24"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent: the shared benchmark data is not on this machine")
    return folder


@pytest.fixture(scope="module")
def ckpt_files(tiny_checkpoint) -> dict[str, bytes]:
    """The tiny checkpoint's config.json and model.safetensors, as a Hub repo holds them (tests/hubserver.py)."""
    from n2n import hub

    return {name: (tiny_checkpoint / name).read_bytes() for name in (hub.CONFIG_NAME, hub.WEIGHTS_NAME)}


@pytest.fixture
def bundled(monkeypatch, tmp_path, tiny_checkpoint) -> Path:
    """A `checkpoints/` folder holding the tiny checkpoint as `gaussian` (deterministic, unlike the real one)."""
    from n2n import hub

    folder = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoint, folder / "gaussian", ignore=shutil.ignore_patterns("training_state*"))
    monkeypatch.setattr(hub, "CHECKPOINTS", folder)
    return folder


@pytest.fixture
def fresh_models():
    """The app's model cache emptied before and after the test: each model it names loads afresh, and
    none it loaded (a fallback, a monkeypatched bundled one) outlives it."""
    from ui import registry

    registry.forget()
    yield
    registry.forget()


@pytest.fixture(scope="module")
def server(tiny_checkpoint):
    """The app served on 127.0.0.1 with the tiny checkpoint listed as "tiny": (demo, url)."""
    import app

    demo = app.build_demo(extra_models={"tiny": tiny_checkpoint})
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **app.LAUNCH_KWARGS)
    yield demo, url
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    """A gradio_client session with `server`."""
    from gradio_client import Client

    client = Client(server[1], verbose=False)
    yield client
    client.close()


_WATCHED: list[str] = []  # folders whose opening is recorded while a test watches them (a canary)
_OPENED: list[str] = []  # the files opened inside them
_auditing = False  # whether _audit is installed


def _audit(event, args):
    if event == "open" and _WATCHED and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.path.abspath(os.fsdecode(args[0]))
        if any(path == w or path.startswith(w + os.sep) for w in _WATCHED):
            _OPENED.append(path)


@pytest.fixture
def canary(tmp_path, tiny_checkpoint):
    """A valid checkpoint and a Hub-cache-like 'refs/main' file outside anything the app may read:
    (folder, opened), `opened` listing every file opened inside the folder by any thread of this process."""
    global _auditing
    from n2n import hub

    folder = tmp_path / "canary"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    for name in (hub.CONFIG_NAME, hub.WEIGHTS_NAME):
        (folder / name).write_bytes((tiny_checkpoint / name).read_bytes())
    if not _auditing:  # audit hooks cannot be removed: install it once
        sys.addaudithook(_audit)
        _auditing = True
    _OPENED.clear()
    _WATCHED.append(str(folder.resolve()))
    yield folder.resolve(), _OPENED
    _WATCHED.clear()
