"""A model as an ONNX graph, to run without PyTorch (onnxruntime, a browser, a phone).

Needs the optional packages `onnx`, `onnxscript` (torch's exporter is written in it) and `onnxruntime`
(to check the file): `pip install onnx onnxscript onnxruntime`, or in a checkout `pip install ".[onnx]"`.
"""
from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
PIP_INSTALL = "pip install " + " ".join(ONNX_PACKAGES)
INPUT_NAME, OUTPUT_NAME = "image", "denoised"


def require_onnx() -> None:
    """Raise ImportError, naming the pip command, when a package that the export needs is missing."""
    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"ONNX export needs {', '.join(missing)}, not installed here: run `{PIP_INSTALL}` "
                          f"(in a checkout of n2n: pip install \".[onnx]\")")


def input_doc(model: nn.Module) -> str:
    """What the graph's input is: layout, type, range and the size rule of `model`."""
    multiple = getattr(model, "multiple", 1)
    size = f"H and W multiples of {multiple} (pad, e.g. reflect, then crop the output)" if multiple > 1 else "any H, W"
    return f"(N, {model.in_channels}, H, W) float32 in [0, 1], NCHW; {size}"


def export_onnx(model: nn.Module, path: str | Path, height: int = 64, width: int = 96) -> Path:
    """Write `model` to `path` as one self-contained ONNX file (weights inside), in float32.

    The graph takes `image`, (N, C, H, W) float32 in [0, 1] (C = model.in_channels), and gives
    `denoised`, (N, C_out, H, W) float32, about [0, 1] (not clipped). N, H and W are dynamic; H and W
    must be multiples of the model's `multiple` (32 for the U-Net: five 2× poolings), as the graph's
    input doc and its dimension names (32*height_over_32, 32*width_over_32) say.
    height, width: the example the exporter traces, in pixels (multiples of `multiple`).
    `model` itself is left as it was (a float32 copy is traced). Returns `path`.
    """
    require_onnx()
    multiple = getattr(model, "multiple", 1)
    if height % multiple or width % multiple:
        raise ValueError(f"the example size must be a multiple of {multiple}, got {height}×{width}")
    net = copy.deepcopy(model).float().cpu().eval()
    example = torch.rand(1, net.in_channels, height, width)
    batch = torch.export.Dim("batch", min=1)
    rows = torch.export.Dim(f"height_over_{multiple}", min=1)  # H = multiple · rows: the size rule in the graph
    cols = torch.export.Dim(f"width_over_{multiple}", min=1)
    program = torch.onnx.export(net, (example,), None, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                dynamic_shapes=({0: batch, 2: multiple * rows, 3: multiple * cols},),
                                dynamo=True, verbose=False)
    doc = input_doc(net)
    program.model.graph.inputs[0].doc_string = doc
    program.model.graph.outputs[0].doc_string = "the same shape, float32, about [0, 1] (clip before saving)"
    program.model.doc_string = f"n2n {type(net).__name__} denoiser; input {INPUT_NAME}: {doc}"
    program.model.metadata_props["multiple"] = str(multiple)
    path = Path(path)
    program.save(path, external_data=False)
    return path


def onnx_difference(model: nn.Module, path: str | Path, height: int, width: int, seed: int = 0) -> float:
    """Largest |onnxruntime − torch fp32| over the outputs of both on one random (1, C, height, width)
    image in [0, 1] (height, width in pixels, multiples of the model's `multiple`)."""
    import onnxruntime

    image = np.random.default_rng(seed).random((1, model.in_channels, height, width), dtype=np.float32)
    net = copy.deepcopy(model).float().cpu().eval()
    with torch.inference_mode():
        expected = net(torch.from_numpy(image)).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: image})[0]
    return float(np.abs(got - expected).max())
