"""Inference speed: the U-Net in torch against its ONNX export in onnxruntime, on this CPU.

    python -m benchmarks.onnx [--sizes 256,512] [--threads 1,2] [--runs 7] [--out benchmarks/results]

The bundled `gaussian` (any bundled model: they are one network) on one random (1, 3, S, S) image in
[0, 1]: torch fp32 as `n2n.denoise` runs a tile (channels_last, `torch.inference_mode`), torch bf16 where
the CPU computes it natively (a bf16 copy, as precision "auto" picks there), and the file that
`python -m n2n export` writes, in onnxruntime's CPU provider (all graph optimisations, its default).
At each size and thread count: one warm-up run of each backend, then --runs rounds in which they take
turns (a load that comes and goes meets them alike), the median of each, in seconds and seconds per megapixel.
Writes OUT/onnx.json and OUT/onnx.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from benchmarks.bench import DEFAULT_OUT, ROOT, machine
from n2n import hub
from n2n.export import INPUT_NAME, OUTPUT_NAME, export_onnx
from n2n.infer import native_bf16


def median_seconds(runs: dict, repeats: int) -> dict[str, float]:
    """{name: the median wall time of `repeats` calls of runs[name]()}, after one warm-up call each. The
    backends take turns, run by run, so that a load that comes and goes on the machine meets them alike."""
    times = {name: [] for name in runs}
    for run in runs.values():
        run()
    for _ in range(repeats):
        for name, run in runs.items():
            t = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(t) for name, t in times.items()}


def torch_run(model: torch.nn.Module, image: np.ndarray, dtype: torch.dtype):
    """A call that runs `model` (already in `dtype`) on (1, C, H, W) float32 `image`, as n2n.infer does."""
    x = torch.from_numpy(image).to(dtype).contiguous(memory_format=torch.channels_last)

    def run():
        with torch.inference_mode():
            return model(x).float()
    return run


def onnx_run(path: Path, image: np.ndarray, threads: int):
    """A call that runs the ONNX file at `path` on `image` with `threads` intra-op threads."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda: session.run([OUTPUT_NAME], {INPUT_NAME: image})[0]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,512", help="image sides in pixels (multiples of 32)")
    parser.add_argument("--threads", default="1,2", help="thread counts, for torch and onnxruntime alike")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per cell (the median is kept)")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)
    sizes, thread_counts = [int(s) for s in args.sizes.split(",")], [int(t) for t in args.threads.split(",")]
    load = lambda: hub.load_dir(ROOT / "checkpoints" / "gaussian").model  # noqa: E731  (eval mode, fp32, CPU)
    models = {"torch fp32": (load().to(memory_format=torch.channels_last), torch.float32)}
    if native_bf16():
        models["torch bf16"] = (load().to(torch.bfloat16, memory_format=torch.channels_last), torch.bfloat16)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(load(), Path(tmp) / "gaussian.onnx")
        for size in sizes:
            image = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
            for threads in thread_counts:
                torch.set_num_threads(threads)
                runs = {name: torch_run(net, image, dtype) for name, (net, dtype) in models.items()}
                seconds = median_seconds(runs | {"onnxruntime": onnx_run(path, image, threads)}, args.runs)
                row = {"size": size, "threads": threads, "seconds": seconds,
                       "onnx_speedup_over_torch_fp32": seconds["torch fp32"] / seconds["onnxruntime"]}
                print(json.dumps(row), flush=True)
                rows.append(row)
    report = {"machine": machine(), "onnxruntime": onnxruntime.__version__, "runs": args.runs, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "onnx.json").write_text(json.dumps(report, indent=2) + "\n")
    m, names = report["machine"], list(rows[0]["seconds"])
    lines = ["# Inference: torch against onnxruntime (`python -m benchmarks.onnx`)", "",
             f"{m['cpu']}, {m['cores']} cores ({', '.join(m['simd'])}; native bf16: {m['mkldnn_bf16']}), "
             f"torch {m['torch']}, onnxruntime {report['onnxruntime']}, load average {m['load_average']} at the end. "
             f"The bundled `gaussian` U-Net on one (1, 3, S, S) image, batch 1; median of {args.runs} runs after "
             "a warm-up, the backends taking turns run by run; seconds (seconds per megapixel).", "",
             "| S | threads | " + " | ".join(names) + " | torch fp32 / onnxruntime |",
             "|---|---|" + "---|" * len(names) + "---|"]
    for r in rows:
        mp = r["size"] ** 2 / 1e6
        lines.append(f"| {r['size']} | {r['threads']} | "
                     + " | ".join(f"{r['seconds'][n]:.3f} ({r['seconds'][n] / mp:.2f})" for n in names)
                     + f" | {r['onnx_speedup_over_torch_fp32']:.2f}× |")
    (out / "onnx.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
