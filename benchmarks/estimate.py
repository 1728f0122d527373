"""The blind noise estimate (n2n.estimate) on Kodak24: its error in σ against the truth, beside
scikit-image's wavelet estimator, and how often it names the noise right.

    nice -n 5 python -m benchmarks.estimate [--data ../shared/data/kodak24] [--out benchmarks/results/estimate.md]

The noisy images are what a visitor uploads: clean + noise, clipped and rounded to 8 bits. As in the
app, `estimate_noise` is given the bundled `camera` model to read camera noise's σ with.
"""
from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np
from skimage.restoration import estimate_sigma

from n2n import load_model
from n2n.data import list_images
from n2n.estimate import MAX_SIDE, estimate_noise, noise_sigma
from n2n.infer import denoise
from n2n.io import centre_crop, from_float, read_image, to_float
from n2n.noise import corrupt

SIGMAS = (5, 15, 25, 50)
CASES = (("gaussian", 15), ("gaussian", 50), ("poisson", 10), ("poisson", 30), ("impulse", 0.2), ("impulse", 0.5),
         ("camera", 2), ("camera", 6))
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def upload(clean: np.ndarray, noise: str, param: float, seed: int) -> np.ndarray:
    """What a visitor would upload: the noisy image as 8-bit, float32 (H, W, C) in [0, 1]."""
    noisy = corrupt(clean, noise, param, np.random.default_rng(seed))
    return to_float(from_float(np.clip(noisy, 0, 1), np.uint8))


def camera_denoiser():
    """The bundled `camera` model, as the app hands it to `estimate_noise`."""
    model = load_model("camera").eval()
    return lambda x: denoise(model, x)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak24"))
    parser.add_argument("--out", default="benchmarks/results/estimate.md")
    parser.add_argument("--real", default=str(REAL), help="a folder of sets of real noisy/clean pairs")
    args = parser.parse_args(argv)
    cleans = [read_image(f) for f in list_images(args.data)]
    lines = [f"# Blind noise estimate on Kodak24 ({len(cleans)} images, 8-bit noisy uploads)", "",
             f"`python -m benchmarks.estimate`; both estimators read the centre {MAX_SIDE}² crop. "
             "Error = estimate − true σ on the 0–255 scale.", "",
             "| true σ | PCA (n2n) mean abs error | bias | max abs error "
             "| skimage estimate_sigma mean abs error | bias | max abs error |",
             "|---|---|---|---|---|---|---|"]
    times = {"pca": [], "skimage": []}
    for sigma in SIGMAS:
        errors = {"pca": [], "skimage": []}
        for k, clean in enumerate(cleans):
            noisy = upload(clean, "gaussian", sigma, k)
            t = time.perf_counter()
            errors["pca"].append(noise_sigma(noisy) - sigma)
            times["pca"].append(time.perf_counter() - t)
            t = time.perf_counter()
            crop = centre_crop(noisy, MAX_SIDE)
            errors["skimage"].append(255 * estimate_sigma(crop, channel_axis=-1, average_sigmas=True) - sigma)
            times["skimage"].append(time.perf_counter() - t)
        row = [f"{sigma}"]
        for name in ("pca", "skimage"):
            e = np.array(errors[name])
            row += [f"{np.abs(e).mean():.2f}", f"{e.mean():+.2f}", f"{np.abs(e).max():.2f}"]
        lines.append("| " + " | ".join(row) + " |")
        print(lines[-1], flush=True)
    lines += ["", f"Seconds per image: PCA {np.mean(times['pca']):.3f}, skimage {np.mean(times['skimage']):.3f} "
              "(2 shared cores).", "", "## Kind of noise named by `estimate_noise`", "",
              "| noise | parameter | named right | mostly named | median estimate of its parameter |",
              "|---|---|---|---|---|"]
    denoiser = camera_denoiser()
    for noise, param in CASES:
        found = [estimate_noise(upload(clean, noise, param, 100 + k), denoiser=denoiser)
                 for k, clean in enumerate(cleans)]
        named = [f.noise for f in found]
        right = [f.param for f in found if f.noise == noise]
        mostly = Counter(named).most_common(1)[0][0]  # a tie: the first named (a set's order changes between runs)
        lines.append(f"| {noise} | {param} | {named.count(noise)}/{len(named)} | {mostly} | "
                     f"{np.median(right) if right else float('nan'):.3g} |")
        print(lines[-1], flush=True)
    lines += simulated_camera(cleans, denoiser)
    lines += real_photos(Path(args.real)) if Path(args.real).is_dir() else []
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    return text


def simulated_camera(cleans: list[np.ndarray], denoiser) -> list[str]:
    """σ of simulated camera noise (n2n.noise camera) against its RMS: the estimate with the camera model,
    and the PCA σ at stride 2 that it reads without one."""
    lines = ["", "## Simulated camera noise (the RMS of noisy − clean is the truth)", "",
             "| stops (ISO) | true RMS σ, median | with the camera model: estimate / truth, median | min | max "
             "| within 30 % | PCA σ at stride 2 / truth: median | within 30 % |", "|---|---|---|---|---|---|---|---|"]
    for stops in (0, 2, 4, 6, 8):
        rows = []
        for k, clean in enumerate(cleans):
            noisy = upload(clean, "camera", stops, 200 + k)
            truth = 255 * float(np.sqrt(np.mean((noisy.astype(np.float64) - clean) ** 2)))
            rows.append((truth, estimate_noise(noisy, denoiser=denoiser).sigma / truth,
                         noise_sigma(noisy, stride=2) / truth))
        truth, ratio, pca2 = (np.array(c, float) for c in zip(*rows))
        lines.append(f"| {stops} ({100 * 2 ** stops}) | {np.median(truth):.2f} | {np.median(ratio):.2f} | "
                     f"{ratio.min():.2f} | {ratio.max():.2f} | {int((np.abs(ratio - 1) <= 0.3).sum())}/{len(rows)} | "
                     f"{np.median(pca2):.2f} | {int((np.abs(pca2 - 1) <= 0.3).sum())}/{len(rows)} |")
        print(lines[-1], flush=True)
    return lines


def real_photos(real: Path) -> list[str]:
    """The estimate on real noisy photos against the RMS of (noisy − clean mean image): noise named, σ per set."""
    from n2n.evaluate import match_pairs

    denoiser = camera_denoiser()

    lines = ["", "## Real photos (camera noise: the RMS of noisy − clean mean image is the truth)", "",
             "| set | photos | named camera | true RMS σ, mean | estimate / truth: mean | min | max "
             "| within 30 % | PCA σ at stride 2 / truth: mean | min | max | within 30 % "
             "| PCA σ at stride 1 / truth, mean |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for folder in sorted(p for p in real.iterdir() if p.is_dir()):
        rows = []
        for noisy_path, clean_path in match_pairs(folder):
            noisy, clean = read_image(noisy_path), read_image(clean_path)
            truth = 255 * float(np.std(noisy.astype(np.float64) - clean))
            found = estimate_noise(noisy, denoiser=denoiser)
            rows.append((found.noise == "camera", truth, found.sigma / truth, noise_sigma(noisy, stride=2) / truth,
                         noise_sigma(noisy) / truth))
        named, truth, ratio, pca2, plain = (np.array(c, float) for c in zip(*rows))
        lines.append(f"| {folder.name} | {len(rows)} | {int(named.sum())}/{len(rows)} | {truth.mean():.2f} | "
                     f"{ratio.mean():.2f} | {ratio.min():.2f} | {ratio.max():.2f} | "
                     f"{int((np.abs(ratio - 1) <= 0.3).sum())}/{len(rows)} | {pca2.mean():.2f} | {pca2.min():.2f} | "
                     f"{pca2.max():.2f} | {int((np.abs(pca2 - 1) <= 0.3).sum())}/{len(rows)} | {plain.mean():.2f} |")
        print(lines[-1], flush=True)
    return lines


if __name__ == "__main__":
    main()
