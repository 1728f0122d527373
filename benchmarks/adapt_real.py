""""Adapt to this photo" on real noisy photos with their clean mean images: the gain over the pretrained model,
and whether the blind verdict picks the better result.

    python -m benchmarks.adapt_real [--data ../shared/data/real] [--model camera] [--seconds 60] [--out FILE.json]

Runs `n2n.adapt.adapt_photo` (the app's Adapt button, whole) on every pair of every folder under --data
(`n2n.evaluate.match_pairs`: nam25, sidd1), one photo at a time, and prints one line each and a summary: PSNR of
the pretrained and the adapted result against the clean image, the steps and seconds, and whether the blind
verdict (`AdaptedPhoto.better`) named the one with the higher PSNR. The clean images are read to score, never
to adapt. Writes the rows as JSON to --out when given.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.bench import machine
from benchmarks.real import DEFAULT_DATA
from n2n.adapt import adapt_photo
from n2n.evaluate import match_pairs
from n2n.io import read_image, to_float
from n2n.metrics import psnr


def run(data: Path, model: str, seconds: float) -> list[dict]:
    """One row per real pair: {"set", "photo", "pretrained", "adapted" (dB), "steps", "seconds", "method", "right"}."""
    rows = []
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        for noisy_path, clean_path in match_pairs(folder):
            noisy, clean = read_image(noisy_path), to_float(read_image(clean_path))
            with tempfile.TemporaryDirectory() as work:
                found = adapt_photo(model, noisy, Path(work), seconds)
            scores = {which: psnr(clean, to_float(getattr(found, which))) for which in ("pretrained", "adapted")}
            truth = "adapted" if scores["adapted"] >= scores["pretrained"] else "pretrained"
            row = {"set": folder.name, "photo": noisy_path.name, **scores,
                   "gain": scores["adapted"] - scores["pretrained"],
                   "steps": found.steps, "seconds": round(found.seconds, 1),
                   "method": "pseudo-clean" if found.pseudo_clean else f"Neighbor2Neighbor, stride {found.stride}",
                   "blind_pretrained": found.blind_pretrained, "blind_adapted": found.blind_adapted,
                   "right": found.better == truth}
            rows.append(row)
            print(f"{folder.name}/{noisy_path.name}: {scores['pretrained']:.2f} -> {scores['adapted']:.2f} dB "
                  f"({row['gain']:+.2f}; {found.steps} steps, {found.seconds:.0f} s, {row['method']}); blind verdict "
                  f"{found.better} ({'right' if row['right'] else 'wrong'})", flush=True)
    return rows


def summary(rows: list[dict]) -> str:
    gains = np.array([r["gain"] for r in rows])
    return (f"{len(rows)} photos: mean gain {gains.mean():+.2f} dB (worst {gains.min():+.2f}, "
            f"best {gains.max():+.2f}); blind verdict right on {sum(r['right'] for r in rows)} of {len(rows)}")


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="camera")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        raise SystemExit(f"error: {args.data} is not a folder of real pairs (see ../shared/data/real/README.md)")
    rows = run(args.data, args.model, args.seconds)
    text = summary(rows)
    print(text)
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "model": args.model, "seconds": args.seconds,
                                        "rows": rows, "summary": text}, indent=2) + "\n")
    return text


if __name__ == "__main__":
    main()
