"""Every bundled model on real noisy photos with their clean mean images, at pixel-shuffle strides 1 and 2.

    python -m benchmarks.real [--data ../shared/data/real] [--models a,b] [--strides 1,2] [--out benchmarks/results]

For each folder of real pairs under --data (`n2n.evaluate.match_pairs`: nam25, sidd1), each model at each
stride: PSNR and SSIM against the clean image (`n2n.evaluate.evaluate_pairs`, the `eval --pairs` command's
core), beside the noisy photo and non-local means at the σ estimated blind, and the ceiling of any denoiser
that keeps the noisy photo's mean brightness (`mean_ceiling`). Writes OUT/real.json and OUT/real.md, with the
machine it ran on. Measure and tune on these photos; never train on them.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.bench import machine
from n2n import hub
from n2n.evaluate import evaluate_pairs, match_pairs
from n2n.io import read_image, to_float
from n2n.metrics import psnr

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "real"
DEFAULT_OUT = ROOT / "benchmarks" / "results"


def mean_ceiling(pairs: list[tuple[Path, Path]]) -> float:
    """PSNR (dB, averaged over the pairs) of the clean image plus each channel's mean of noisy − clean: what a
    perfect denoiser scores if it keeps the noisy photo's mean, as Noise2Noise's L2 optimum does. Below the clean
    image's infinity when the noisy photo is brighter or darker than its clean reference (SIDD's are)."""
    scores = []
    for noisy_path, clean_path in pairs:
        noisy, clean = to_float(read_image(noisy_path, dtype=None)), to_float(read_image(clean_path, dtype=None))
        scores.append(psnr(clean, np.clip(clean + (noisy - clean).mean(axis=(0, 1)), 0, 1)))
    return float(np.mean(scores))  # inf when every shift rounds away on 8 bits


def run(data: Path, models: list[str], strides: list[int], report: dict | None = None) -> dict:
    """{folder: {"noisy": dB, "nlm": dB, "images": N, "models": {model: {stride: {"psnr", "ssim"}}}}}; `report`:
    an earlier one whose entries for other models stand (and whose noisy and NLM figures are reused)."""
    report = dict(report or {})
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        pairs = match_pairs(folder)
        entry = report.get(folder.name) or {"images": len(pairs), "models": {}}
        if "mean_ceiling" not in entry:
            ceiling = mean_ceiling(pairs)
            entry["mean_ceiling"] = ceiling if np.isfinite(ceiling) else None  # JSON has no infinity
        for name in models:
            loaded = hub.resolve(name)
            entry["models"][name] = {}
            for stride in strides:
                first = not entry.get("nlm")
                figures = evaluate_pairs(loaded.model, pairs, ["nlm"] if first else [], stride=stride,
                                         label=f"{folder.name} {name} stride {stride}")
                if first:
                    entry |= {"noisy": figures["noisy_psnr"], "nlm": figures["baselines"]["nlm"]["psnr"],
                              "nlm_ssim": figures["baselines"]["nlm"]["ssim"]}
                entry["models"][name][str(stride)] = {"psnr": figures["psnr"], "ssim": figures["ssim"],
                                                 "seconds_per_megapixel": figures["seconds_per_megapixel"]}
                print(f"{folder.name} {name} stride {stride}: {figures['psnr']:.2f} dB", flush=True)
        report[folder.name] = entry
    return report


def markdown(report: dict, strides: list[int], info: dict) -> str:
    lines = ["# Real photos: every bundled model at pixel-shuffle strides " + ", ".join(map(str, strides)), "",
             "`python -m benchmarks.real`; PSNR in dB on 8-bit output against the dataset's clean mean image, per "
             "image, averaged (`python -m n2n eval --pairs DIR --stride S`). Non-local means at the σ estimated "
             "blind. Never trained on.", "",
             f"Machine: {info['cpu']}, {info['cores']} cores ({', '.join(info['simd'])}), torch {info['torch']}, "
             f"load average {info['load_average']}.", ""]
    for folder, entry in report.items():
        ceiling = entry.get("mean_ceiling")
        lines += [f"## `{folder}` ({entry['images']} images): noisy {entry['noisy']:.2f} dB, non-local means "
                  f"{entry['nlm']:.2f}", "",
                  "A denoiser that keeps the noisy photos' mean brightness per channel (Noise2Noise's L2 optimum "
                  + (f"does) scores at most {ceiling:.2f} dB here: the clean image shifted by the mean of noisy − "
                     "clean." if ceiling else "does) is not held back here: their means match the clean images'."),
                  "",
                  "| model | " + " | ".join(f"stride {s}" for s in strides) + " |",
                  "|---|" + "---|" * len(strides)]
        for name, by_stride in entry["models"].items():
            best = max(by_stride.values(), key=lambda f: f["psnr"])["psnr"]
            cells = [(f"**{f['psnr']:.2f}**" if f["psnr"] == best else f"{f['psnr']:.2f}") + f" / {f['ssim']:.4f}"
                     for f in (by_stride[str(s)] for s in strides)]
            lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--models", default="", help="bundled names or folders, a,b (default: all bundled)")
    parser.add_argument("--strides", default="1,2")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--update", action="store_true", help="redo only --models in OUT/real.json, keep the rest")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        raise SystemExit(f"error: {args.data} is not a folder of real pairs (see ../shared/data/real/README.md)")
    models = [m for m in args.models.split(",") if m] or hub.bundled_names()
    strides = [int(s) for s in args.strides.split(",")]
    earlier = json.loads((args.out / "real.json").read_text()) if args.update else None
    report = run(args.data, models, strides, earlier)
    text = markdown(report, strides, machine())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "real.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "real.md").write_text(text + "\n")
    print(text)
    return text


if __name__ == "__main__":
    main()
