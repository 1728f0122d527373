"""The pixel-shuffle stride chosen blind on real photos (`n2n.estimate.sure_stride`), against each stride's PSNR.

    python -m benchmarks.stride [--data ../shared/data/real] [--model camera] [--out benchmarks/results]

For each real pair under --data (`n2n.evaluate.match_pairs`): the camera-noise σ read blind with the model
(`estimate_noise`), the model's PSNR against the clean image at strides 1 and 2, and the stride Stein's unbiased
risk estimate picks with no clean image, as the app presets it on upload. Writes OUT/stride.json and
OUT/stride.md. Measure and tune on these photos; never train on them.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.bench import machine
from n2n import hub
from n2n.estimate import estimate_noise, sure_stride
from n2n.evaluate import match_pairs
from n2n.infer import denoise
from n2n.io import read_image, to_float
from n2n.metrics import psnr

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "real"
DEFAULT_OUT = ROOT / "benchmarks" / "results"
STRIDES = (1, 2)


def run(data: Path, model_name: str) -> list[dict]:
    """One row per pair: {"photo", "sigma", "psnr": {stride: dB}, "chosen": stride}."""
    model = hub.resolve(model_name).model.eval()
    rows = []
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        for noisy_path, clean_path in match_pairs(folder):
            noisy, clean = read_image(noisy_path), to_float(read_image(clean_path))
            found = estimate_noise(noisy, denoiser=lambda x: denoise(model, x, precision="fp32"))
            scores = {s: psnr(clean, to_float(denoise(model, noisy, stride=s))) for s in STRIDES}
            chosen = sure_stride(noisy, lambda x, s: denoise(model, x, stride=s, precision="fp32"), found.sigma,
                                 STRIDES)
            rows.append({"photo": f"{folder.name}/{noisy_path.name}", "noise": found.noise, "sigma": found.sigma,
                         "psnr": {str(s): v for s, v in scores.items()}, "chosen": chosen})
            print(f"{rows[-1]['photo']}: σ {found.sigma}, " + ", ".join(f"stride {s} {v:.2f}" for s, v in
                                                                       scores.items()) + f"; chosen {chosen}",
                  flush=True)
    return rows


def markdown(rows: list[dict], model_name: str, info: dict) -> str:
    folders = sorted({r["photo"].split("/")[0] for r in rows})
    lines = [f"# The stride chosen blind on real photos (`python -m benchmarks.stride --model {model_name}`)", "",
             f"`{model_name}` at pixel-shuffle strides {', '.join(map(str, STRIDES))}, PSNR in dB against the clean "
             "mean image, per photo averaged; *chosen*: the stride `n2n.estimate.sure_stride` picks with no clean "
             "image (Stein's unbiased risk estimate, noise shaped like the photo's, at the σ read blind), as the app "
             "presets it on upload. Never trained on.", "",
             f"Machine: {info.get('cpu', '?')}, {info.get('cores', '?')} cores, torch {info.get('torch', '?')}.", "",
             "| photos | images | " + " | ".join(f"stride {s}" for s in STRIDES) + " | chosen | best of each | "
             "chosen right |", "|---|---|" + "---|" * (len(STRIDES) + 3)]
    for folder in folders:
        part = [r for r in rows if r["photo"].startswith(folder + "/")]
        per = [np.mean([r["psnr"][str(s)] for r in part]) for s in STRIDES]
        chosen = np.mean([r["psnr"][str(r["chosen"])] for r in part])
        best = np.mean([max(r["psnr"].values()) for r in part])
        right = sum(r["psnr"][str(r["chosen"])] == max(r["psnr"].values()) for r in part)
        lines.append(f"| `{folder}` | {len(part)} | " + " | ".join(f"{v:.2f}" for v in per)
                     + f" | **{chosen:.2f}** | {best:.2f} | {right} of {len(part)} |")
    wrong = [r for r in rows if r["psnr"][str(r["chosen"])] != max(r["psnr"].values())]
    lines += ["", "Chosen wrong: " + (", ".join(
        f"{r['photo']} (stride {r['chosen']}, {max(r['psnr'].values()) - r['psnr'][str(r['chosen'])]:.2f} dB "
        "below the other)" for r in wrong) or "none") + "."]
    return "\n".join(lines)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="camera", help="a bundled name or a checkpoint folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        raise SystemExit(f"error: {args.data} is not a folder of real pairs (see ../shared/data/real/README.md)")
    rows = run(args.data, args.model)
    text = markdown(rows, args.model, machine())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stride.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / "stride.md").write_text(text + "\n")
    print(text)
    return text


if __name__ == "__main__":
    main()
