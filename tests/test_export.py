"""ONNX export: the bundled `gaussian` as a graph that onnxruntime runs at any multiple of 32, as torch does."""
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from n2n import hub
from n2n.export import ONNX_PACKAGES, PIP_INSTALL, export_onnx
from n2n.infer import denoise
from n2n.noise import corrupt
from helpers import declared, normalise, photo

ROOT = Path(__file__).resolve().parents[1]
GAUSSIAN = ROOT / "checkpoints" / "gaussian"


def n2n(*args, code: str = "from n2n.cli import main; main()"):
    env = os.environ | {"N2N_HUB_REPO": "", "HF_HUB_OFFLINE": "1"}  # the bundled names, as bundled
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture(scope="module")
def gaussian():
    return hub.load_dir(GAUSSIAN).model


@pytest.fixture(scope="module")
def exported(gaussian, tmp_path_factory) -> Path:
    return export_onnx(gaussian, tmp_path_factory.mktemp("onnx") / "gaussian.onnx")


def test_onnxruntime_matches_torch_at_two_sizes(gaussian, exported):
    session = onnxruntime.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    (graph_input,), (graph_output,) = session.get_inputs(), session.get_outputs()
    assert graph_input.name == "image" and graph_output.name == "denoised"
    assert graph_input.shape[1] == 3 and graph_input.shape[2:] == ["32*height_over_32", "32*width_over_32"]
    assert "multiples of 32" in session.get_modelmeta().description
    rng = np.random.default_rng(0)
    for shape in ((1, 3, 64, 96), (1, 3, 96, 64), (2, 3, 32, 128)):
        image = np.clip(rng.random(shape, dtype=np.float32) * 0.6 + 0.2 + rng.normal(0, 0.1, shape), 0, 1)
        image = image.astype(np.float32)
        with torch.inference_mode():
            expected = gaussian(torch.from_numpy(image)).numpy()
        got = session.run(["denoised"], {"image": image})[0]
        assert got.shape == shape
        assert np.abs(got - expected).max() <= 1e-3, shape
        assert np.abs(expected - image).mean() > 0.01  # the network changed it: a real comparison
    assert next(gaussian.parameters()).dtype == torch.float32 and not gaussian.training  # left as it was


def test_the_cards_onnx_recipe_gives_what_denoise_gives(exported, tmp_path, monkeypatch):
    """The model card's Python lines, run as written on a 50×70 photo (padded to 64×96 there), give
    `n2n.denoise`'s uint8 output within one level (rounding of float differences)."""
    folder = tmp_path / "gaussian"
    shutil.copytree(GAUSSIAN, folder)
    card = hub.write_model_card(folder).read_text()
    section = card[card.index("## ONNX"):]
    assert "python -m n2n export --model gaussian --onnx gaussian.onnx" in section and PIP_INSTALL in section
    recipe = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    shutil.copy(exported, tmp_path / "gaussian.onnx")
    monkeypatch.chdir(tmp_path)
    noisy = np.clip(corrupt(photo(128)[:50, :70], "gaussian", 25, np.random.default_rng(1)), 0, 1)
    image = (noisy * 255).round().astype(np.uint8)
    names = {"image": image}
    exec(recipe, names)
    expected = denoise(hub.load_dir(GAUSSIAN).model, image, precision="fp32")
    assert names["clean"].dtype == np.uint8 and names["clean"].shape == image.shape
    difference = np.abs(names["clean"].astype(int) - expected.astype(int))
    assert difference.max() <= 1 and difference.mean() < 0.01
    assert np.abs(expected.astype(int) - image.astype(int)).mean() > 5  # denoised, not passed through


def test_cli_exports_a_bundled_model_that_onnxruntime_runs(tmp_path, gaussian):
    out = tmp_path / "new folder" / "g.onnx"
    result = n2n("export", "--model", "gaussian", "--onnx", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{out}: input (N, 3, H, W) float32 in [0, 1]")
    assert "multiples of 32" in result.stdout and "onnxruntime matches torch within" in result.stdout
    image = np.random.default_rng(2).random((1, 3, 32, 64), dtype=np.float32)
    got = onnxruntime.InferenceSession(str(out)).run(None, {"image": image})[0]
    with torch.inference_mode():
        assert np.abs(got - gaussian(torch.from_numpy(image)).numpy()).max() <= 1e-3


def test_cli_refuses_a_bad_model_name_in_one_line(tmp_path):
    out = tmp_path / "x.onnx"
    result = n2n("export", "--model", "no-such-model", "--onnx", out)
    assert result.returncode == 2 and not out.exists()
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line, no traceback
    assert result.stderr.startswith("error: no model 'no-such-model': give a bundled name (")


def test_cli_without_onnxscript_names_the_pip_command(tmp_path):
    out = tmp_path / "x.onnx"
    hidden = "import sys; sys.modules['onnxscript'] = None; from n2n.cli import main; main()"
    result = n2n("export", "--model", "gaussian", "--onnx", out, code=hidden)
    assert result.returncode == 2 and not out.exists()
    assert result.stderr.strip() == (f"error: ONNX export needs onnxscript, not installed here: run `{PIP_INSTALL}` "
                                     "(in a checkout of n2n: pip install \".[onnx]\")")


def test_the_packages_it_needs_are_the_onnx_extra_and_dev_requirements():
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["onnx"]
    names = {normalise(re.split(r"[<>=!~;\[ ]", line)[0]) for line in extra}
    assert names == set(ONNX_PACKAGES) and names <= declared(ROOT / "requirements-dev.txt")
    assert PIP_INSTALL == "pip install onnx onnxscript onnxruntime"
