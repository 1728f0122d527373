"""How far apart noise stays correlated: real photos (noisy − clean) against simulated camera noise.

    python -m benchmarks.grain [--real ../shared/data/real] [--clean ../shared/data/kodak24] [--images 8]

For each folder of real pairs (`n2n.evaluate.match_pairs`) and for `camera` noise at stops 2, 4, 6 and 8 on the
first --images clean photos (256² crops, seeds 0, 1, ...): the correlation of the noise with itself 1, 2, 4 and
8 pixels apart (`lag_correlation`), averaged over images (min and max beside), and its RMS on the 0–255 scale.
Writes OUT/grain.md. A simulator whose grain is correlated less far than real photos' teaches a model to leave
the coarser part of real noise in.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from n2n.data import list_images
from n2n.evaluate import match_pairs
from n2n.io import centre_crop, read_image, to_float
from n2n.learn import correlation
from n2n.noise import corrupt

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
LAGS = (1, 2, 4, 8)
STOPS = (2, 4, 6, 8)


def lag_correlation(noise: np.ndarray, lag: int) -> float:
    """Correlation of `noise` (H, W, C) with itself `lag` pixels to the right and down (n2n.learn.correlation,
    each channel centred), the two directions averaged."""
    return (correlation(noise[:, lag:], noise[:, :-lag]) + correlation(noise[lag:], noise[:-lag])) / 2


def row(label: str, noises: list[np.ndarray]) -> str:
    """One table row: per lag the mean correlation [min, max] over `noises`, then the mean RMS (0–255)."""
    cells = []
    for lag in LAGS:
        r = [lag_correlation(n, lag) for n in noises]
        cells.append(f"{np.mean(r):.2f} [{min(r):.2f}, {max(r):.2f}]")
    rms = np.mean([255 * n.std() for n in noises])
    return f"| {label} ({len(noises)}) | " + " | ".join(cells) + f" | {rms:.1f} |"


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=DATA / "real")
    parser.add_argument("--clean", type=Path, default=DATA / "kodak24")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    lines = ["# Noise grain: correlation 1, 2, 4 and 8 px apart", "",
             "`python -m benchmarks.grain`: the noise's correlation with itself at each distance, mean [min, max] "
             "over the images, and its RMS (0–255). Real photos: noisy − clean; `camera`: the simulated noise on "
             f"256² crops of {args.clean.name}.", "",
             "| noise (images) | " + " | ".join(f"{lag} px" for lag in LAGS) + " | RMS |",
             "|---|" + "---|" * (len(LAGS) + 1)]
    for folder in sorted(p for p in args.real.iterdir() if p.is_dir()) if args.real.is_dir() else []:
        noises = [to_float(read_image(noisy, dtype=None)).astype(np.float64)
                  - to_float(read_image(clean, dtype=None)).astype(np.float64) for noisy, clean in match_pairs(folder)]
        lines.append(row(f"real: `{folder.name}`", noises))
    cleans = [centre_crop(to_float(read_image(f, dtype=None)), 256) for f in list_images(args.clean)[: args.images]]
    for stops in STOPS:
        noises = [corrupt(c, "camera", stops, np.random.default_rng(k)).astype(np.float64) - c
                  for k, c in enumerate(cleans)]
        lines.append(row(f"camera, stops {stops}", noises))
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "grain.md").write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
