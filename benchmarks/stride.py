"""The pixel-shuffle stride the app presets on upload for `camera` (`n2n.estimate.sure_stride`), against each
stride's PSNR on real photos.

    python -m benchmarks.stride [--data ../shared/data/real] [--out benchmarks/results]

For each real pair under --data (`n2n.evaluate.match_pairs`): the app's own upload estimate (`ui.denoise.estimate`,
with the bundled models: the camera-noise σ read blind with `camera`, and the stride Stein's unbiased risk estimate
picks with no clean image), and `camera`'s PSNR against the clean image at strides 1 and 2, at the precision the app
runs (`auto`). Writes OUT/stride.json and OUT/stride.md. Measure and tune on these photos; never train on them.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.bench import machine
from n2n import hub
from n2n.evaluate import match_pairs
from n2n.infer import denoise, model_stride, resolve_precision
from n2n.io import read_image, to_float
from n2n.metrics import psnr
from ui.denoise import estimate

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "real"
DEFAULT_OUT = ROOT / "benchmarks" / "results"
STRIDES = (1, 2)


def run(data: Path) -> list[dict]:
    """One row per pair: {"photo", "noise", "sigma", "model", "psnr": {stride: dB}, "chosen": stride}."""
    model = hub.resolve("camera").model.eval()
    rows = []
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        for noisy_path, clean_path in match_pairs(folder):
            noisy, clean = read_image(noisy_path), to_float(read_image(clean_path))
            found = estimate(str(noisy_path))
            scores = {s: psnr(clean, to_float(denoise(model, noisy, stride=s))) for s in STRIDES}
            chosen = found.stride or model_stride(model)
            rows.append({"photo": f"{folder.name}/{noisy_path.name}", "noise": found.noise, "sigma": found.sigma,
                         "model": found.model, "psnr": {str(s): v for s, v in scores.items()}, "chosen": chosen})
            print(f"{rows[-1]['photo']}: {found.noise} σ {found.sigma}, {found.model}; "
                  + ", ".join(f"stride {s} {v:.2f}" for s, v in scores.items()) + f"; chosen {chosen}", flush=True)
    return rows


def markdown(rows: list[dict], info: dict) -> str:
    folders = sorted({r["photo"].split("/")[0] for r in rows})
    lines = ["# The stride the app presets for `camera` on real photos (`python -m benchmarks.stride`)", "",
             f"`camera` at pixel-shuffle strides {', '.join(map(str, STRIDES))}, PSNR in dB against the clean mean "
             f"image, per photo averaged, in {info['precision']} (the app's `auto` on this machine); *chosen*: the "
             "stride the upload's estimate presets (`ui.denoise.estimate`: `n2n.estimate.sure_stride`, Stein's "
             "unbiased risk estimate in fp32 with noise shaped like the photo's, at the σ read blind; no clean "
             "image). Never trained on.", "",
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
        "below the other)" for r in wrong) or "none") + ".",
        "", "Caveat: the DSLR crops all chose 1 and the one smartphone block 2; a threshold on σ would have chosen "
        "the same here, and one phone photo is thin evidence for phones."]
    return "\n".join(lines)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        raise SystemExit(f"error: {args.data} is not a folder of real pairs (see ../shared/data/real/README.md)")
    rows = run(args.data)
    text = markdown(rows, machine() | {"precision": resolve_precision("auto")})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stride.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / "stride.md").write_text(text + "\n")
    print(text)
    return text


if __name__ == "__main__":
    main()
