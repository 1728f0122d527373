"""What several test modules share, imported as `from helpers import ...` (pyproject puts tests/ on the path):
a small real photo, a plain noisy one on disk, the check that an app error is one plain line, and the
requirements files' names."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import skimage.data

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def photo(size: int = 64, channels: int = 3) -> np.ndarray:
    """A real photo (scikit-image's astronaut), resized to size × size, float32 in [0, 1]."""
    from skimage.transform import resize

    image = resize(skimage.data.astronaut(), (size, size), anti_aliasing=True).astype(np.float32)
    return image.mean(axis=2, keepdims=True) if channels == 1 else image


def plain_image(folder: Path) -> Path:
    """A plain small noisy photo."""
    from n2n.io import write_image

    path = folder / "plain.png"
    noisy = np.clip(photo(40) + np.random.default_rng(0).normal(0, 0.1, (40, 40, 3)), 0, 1)
    return write_image(path, np.rint(noisy * 255).astype(np.uint8))


def refusal(call) -> str:
    """The message of the gradio error `call()` raises: asserted to be one plain line."""
    from gradio_client.exceptions import AppError

    from ui import common

    with pytest.raises(AppError) as err:
        call()
    message = str(err.value)
    assert message and "\n" not in message and "Traceback" not in message
    assert "upstream Gradio app has raised an exception" not in message  # Gradio's word for an unhandled crash
    for server_path in (os.path.join(tempfile.gettempdir(), "gradio"), str(common.WORK), str(ROOT)):
        assert server_path not in message, message  # no paths of the server's files
    return message


def declared(requirements: Path) -> set[str]:
    """The distributions a requirements file names, following `-r`, normalised (PEP 503)."""
    names = set()
    for line in requirements.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r"):
            names |= declared(requirements.parent / line[2:].strip())
        elif line:
            names.add(normalise(re.split(r"[<>=!~;\[ ]", line)[0]))
    return names


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
