"""Fit the h(σ) rule of OpenCV non-local means on TRAINING images (never a test set).

    python -m benchmarks.tune_nlm [--data ../shared/data/train/bsd400] [--images 8]

For each σ, the h that maximises mean PSNR; then a least-squares line h = a·σ + b,
which goes into n2n/baselines.py (NLM_SLOPE, NLM_OFFSET).
"""
import argparse
from pathlib import Path

import cv2
import numpy as np

from n2n.data import list_images
from n2n.io import read_image, to_uint8
from n2n.metrics import psnr
from n2n.noise import corrupt

parser = argparse.ArgumentParser()
parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/train/bsd400"))
parser.add_argument("--images", type=int, default=8)
args = parser.parse_args()
files = list_images(args.data)[:: max(1, len(list_images(args.data)) // args.images)][: args.images]
cleans = [read_image(f)[..., :3] for f in files]
best = []
for sigma in (10, 15, 25, 35, 50):
    noisy = [to_uint8(corrupt(c, "gaussian", sigma, np.random.default_rng([sigma, k]))) for k, c in enumerate(cleans)]
    scores = {}
    for h in np.arange(0.5, 1.31, 0.1) * sigma:
        scores[h] = np.mean([psnr(c, cv2.fastNlMeansDenoisingColored(n, None, h, h, 7, 21))
                             for c, n in zip(cleans, noisy)])
    h_best = max(scores, key=scores.get)
    best.append((sigma, h_best))
    print(f"sigma {sigma}: best h {h_best:.1f} -> {scores[h_best]:.2f} dB")
slope, offset = np.polyfit(*zip(*best), 1)
print(f"NLM_SLOPE, NLM_OFFSET = {slope:.3f}, {offset:.2f}")
