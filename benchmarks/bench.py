"""Quality and speed of the bundled models against the classical baselines, in one run.

    python -m benchmarks.bench [--data DIR] [--limit N] [--models a,b] [--out benchmarks/results]

For each model at its noise model's test setting (config.json `noise`, `NOISE_MODELS[noise].default`),
on a folder of clean images (default ../shared/data/kodak24): PSNR, SSIM and seconds per megapixel
of the model, of OpenCV non-local means, of the median filter, of BM3D when installed, and the
noisy input's PSNR and SSIM (`n2n.evaluate`, the `eval` command's core). Then, for one model
(gaussian when there): the peak resident memory of denoising a 24-megapixel photo in a fresh
process, and the model's achieved GFLOP/s against this machine's measured matrix-multiply peak in
the dtype it runs in (--precision auto: bf16 where the CPU computes it natively, else fp32). Writes OUT/latest.json
and OUT/latest.md, with the machine it ran on.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from n2n.infer import TILE, as_bf16, resolve_precision

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "kodak24"
DEFAULT_OUT = ROOT / "benchmarks" / "results"


# --------------------------------------------------------------------------- machine


def machine() -> dict:
    """CPU model, cores, library versions and the load average (the bench is as good as the quiet)."""
    import cv2
    import torch

    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        info = []
    for line in info:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            cpu = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
        if flags and key.strip() == "model name":
            break
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    try:
        import bm3d  # noqa: F401
        from importlib.metadata import version
        bm3d_version = version("bm3d")
    except ImportError:
        bm3d_version = None
    return {"cpu": cpu, "simd": simd, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "numpy": np.__version__, "opencv": cv2.__version__, "bm3d": bm3d_version,
            "python": platform.python_version(), "mkldnn_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


# --------------------------------------------------------------------------- compute


def _fastest(fn, runs: int, clock=time.perf_counter) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(runs):
        t = clock()
        fn()
        best = min(best, clock() - t)
    return best


def matmul_peak(dtype: str = "fp32", n: int = 2048, runs: int = 5, threads: int | None = None) -> float:
    """GFLOP/s of square torch.mm in `dtype`: the best of sizes n/2, n and 3n/2, each the fastest
    of `runs`. With threads=1, measured in the thread's CPU time: a figure that other processes
    on the machine disturb less."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads or old)
    try:
        dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
        clock = time.thread_time if threads == 1 else time.perf_counter
        best = 0.0
        for size in (n // 2, n, n * 3 // 2):
            a, b = torch.randn(size, size, dtype=dt), torch.randn(size, size, dtype=dt)
            best = max(best, 2 * size**3 / _fastest(lambda: torch.mm(a, b), runs, clock) / 1e9)
        return best
    finally:
        torch.set_num_threads(old)


def flops_per_pixel(model) -> float:
    """FLOPs of one forward pass per input pixel, counted by torch's FlopCounterMode on a 64×64
    input (the U-Net's cost per pixel is the same at every size that is a multiple of 32)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    side = max(64, getattr(model, "multiple", 1) * 2)
    x = torch.rand(1, model.in_channels, side, side)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x)
    return counter.get_total_flops() / side**2


def forward_speed(model, precision: str = "fp32", side: int = 512, runs: int = 3, threads: int | None = None) -> float:
    """Seconds per megapixel of one bare forward pass on a side×side tile (no tiling, no I/O);
    with threads=1 in the thread's CPU time, as `matmul_peak`."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads or old)
    try:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        net = as_bf16(model) if precision == "bf16" else copy.deepcopy(model).float()  # as n2n.denoise runs it
        x = torch.rand(1, model.in_channels, side, side, dtype=dtype).contiguous(memory_format=torch.channels_last)
        clock = time.thread_time if threads == 1 else time.perf_counter

        def run():
            with torch.inference_mode():
                net(x)
        return _fastest(run, runs, clock) / (side * side / 1e6)
    finally:
        torch.set_num_threads(old)


# --------------------------------------------------------------------------- memory


def synth_photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A noisy colour gradient as uint8 (H, W, 3), made a band of rows at a time so that making it
    costs no more memory than the image itself (what read_image returns for an 8-bit photo)."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.uint8)
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)
    for y0 in range(0, height, 256):
        y = np.linspace(y0 / height, min(y0 + 256, height) / height, min(256, height - y0), dtype=np.float32)[:, None]
        band = np.stack([np.broadcast_to(x, (len(y), width)), np.broadcast_to(y, (len(y), width)),
                         0.5 + 0.5 * np.sin(6.0 * (x + y))], axis=2) * 200 + 28
        band += rng.normal(0.0, 25.0, band.shape).astype(np.float32)
        image[y0:y0 + len(y)] = np.clip(band, 0, 255).round().astype(np.uint8)
    return image


def _peak_rss_mb() -> float:
    """This process's peak resident set: VmHWM of /proc/self/status where there is one. Not
    ru_maxrss alone: Linux carries it over through exec from the forking parent, so a child of
    a big process would report the parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def rss_child(model_name: str, width: int, height: int, tile: int, precision: str) -> dict:
    """In this (fresh) process: load the model, make the photo, denoise it; peak RSS (VmHWM)."""
    import torch  # noqa: F401

    from n2n import hub
    from n2n.infer import denoise

    model = hub.resolve(model_name).model
    loaded_mb = _peak_rss_mb()
    image = synth_photo(width, height)
    t = time.perf_counter()
    out = denoise(model, image, tile=tile, precision=precision)
    seconds = time.perf_counter() - t
    assert out.shape == image.shape and out.dtype == np.uint8
    return {"model": model_name, "width": width, "height": height, "megapixels": width * height / 1e6,
            "tile": tile, "precision": precision, "seconds": seconds,
            "seconds_per_megapixel": seconds / (width * height / 1e6),
            "rss_after_model_load_mb": loaded_mb,
            "peak_rss_mb": _peak_rss_mb(),
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def peak_rss(model_name: str, width: int = 6000, height: int = 4000, tile: int = TILE, precision: str = "fp32") -> dict:
    """`rss_child` in a fresh Python process (its own peak, not this process's)."""
    cmd = [sys.executable, "-m", "benchmarks.bench", "--rss-child", model_name, "--rss-size", f"{width}x{height}",
           "--tile", str(tile), "--precision", precision]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"RSS probe failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the run


def test_setting(config: dict) -> tuple[str, float]:
    from n2n.noise import NOISE_MODELS

    noise = config.get("noise", "gaussian")
    return noise, NOISE_MODELS[noise].default


def bench_model(name: str, files: list[Path], args) -> dict:
    from n2n import baselines, hub
    from n2n.evaluate import evaluate

    loaded = hub.resolve(name)
    noise, param = test_setting(loaded.config)
    names = [b for b in (args.baselines.split(",") if args.baselines else baselines.available()) if b]
    for b in [b for b in names if b not in baselines.available()]:
        print(f"skipping {b}: not installed (`pip install {b}`)", file=sys.stderr)
    names = [b for b in names if b in baselines.available()]
    if noise not in args.bm3d_noises.split(","):
        names = [b for b in names if b != "bm3d"]
    limits = {"bm3d": args.bm3d_images} if args.bm3d_images else None
    figures = evaluate(loaded.model, files, noise, param, args.seed, names, tile=args.tile,
                       precision=args.precision, repeats=args.repeats, limits=limits, label=name)
    per_pixel = flops_per_pixel(loaded.model)
    return {"model": name, "source": loaded.source, "architecture": loaded.config.get("architecture"),
            "steps": loaded.config.get("steps"), "noise": noise, "param": param, "precision": args.precision,
            "tile": args.tile, "flops_per_pixel": per_pixel,
            "achieved_gflops": per_pixel / figures["seconds_per_megapixel"] / 1e3} | figures


def efficiency(model_name: str, precision: str, side: int = 512, matmul_size: int = 2048) -> dict:
    """The model's GFLOP/s against the matmul peak of its dtype: with all threads in wall time
    (what a user sees; other processes disturb it), and on one thread in CPU time (steadier)."""
    from n2n import hub

    model = hub.resolve(model_name).model
    per_pixel = flops_per_pixel(model)
    dtype = "bf16" if precision == "bf16" else "fp32"
    result = {"model": model_name, "dtype": dtype, "flops_per_pixel": per_pixel}
    for key, threads in (("all_threads", None), ("one_thread_cpu_time", 1)):
        peak = matmul_peak(dtype, n=matmul_size, threads=threads)
        s_per_mp = forward_speed(model, precision, side=side, threads=threads)
        achieved = per_pixel / s_per_mp / 1e3
        result[key] = {"matmul_size": matmul_size, "forward_side": side, "matmul_peak_gflops": peak,
                       "forward_seconds_per_megapixel": s_per_mp, "forward_gflops": achieved,
                       "fraction_of_peak": achieved / peak}
    return result


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# n2n benchmark ({report['date']})", "",
             f"Machine: {m['cpu']} ({', '.join(m['simd']) or 'no AVX2'}), {m['cores']} cores, "
             f"torch {m['torch']} on {m['torch_threads']} threads, OpenCV {m['opencv']}"
             + (f", bm3d {m['bm3d']}" if m["bm3d"] else ", BM3D not installed")
             + f"; load average {m['load_average']} at the start, {report['load_average_end']} at the end"
             " (other processes on the machine slow every figure down alike).", "",
             f"Data: {report['data']} ({report['images']} images), noise seed {report['seed']}; "
             "PSNR on 8-bit output; seconds per megapixel: wall clock"
             + (f", the model's the fastest of {report['repeats']} runs per image" if report["repeats"] > 1 else "")
             + ".", "",
             "| model (noise, test setting) | method | images | PSNR dB | SSIM | s / MP |",
             "|---|---|---|---|---|---|"]
    for r in report["models"]:
        head = f"{r['model']} ({r['noise']} {r['param']:g})"
        lines.append(f"| {head} | noisy input | {r['images']} | {r['noisy_psnr']:.2f} | {r['noisy_ssim']:.4f} | – |")
        lines.append(f"| {head} | **n2n U-Net** ({r['precision']}, tile {r['tile']}) | {r['images']} | "
                     f"**{r['psnr']:.2f}** | **{r['ssim']:.4f}** | {r['seconds_per_megapixel']:.2f} |")
        for name, b in r["baselines"].items():
            lines.append(f"| {head} | {name} | {b['images']} | {b['psnr']:.2f} | {b['ssim']:.4f} | "
                         f"{b['seconds_per_megapixel']:.2f} |")
    for r in report["models"]:
        b = r["baselines"].get("bm3d")
        if b and b["images"] == r["images"]:
            lines.append(f"\n{r['model']}: {b['seconds_per_megapixel'] / r['seconds_per_megapixel']:.0f}× faster than "
                         f"BM3D per megapixel, {r['psnr'] - b['psnr']:+.2f} dB.")
    e = report.get("efficiency")
    if e:
        a, o = e["all_threads"], e["one_thread_cpu_time"]
        lines += ["", f"Compute ({e['model']}, {e['dtype']}): {e['flops_per_pixel'] / 1e3:.1f} kFLOP per pixel "
                  "(torch FlopCounterMode). "
                  f"All threads: forward pass {a['forward_gflops']:.1f} GFLOP/s against a measured "
                  f"{e['dtype']} matmul peak of {a['matmul_peak_gflops']:.1f} GFLOP/s "
                  f"= **{100 * a['fraction_of_peak']:.0f}%**. One thread, CPU time: {o['forward_gflops']:.1f} of "
                  f"{o['matmul_peak_gflops']:.1f} GFLOP/s = {100 * o['fraction_of_peak']:.0f}%."]
        for r in report["models"]:
            lines.append(f"Whole denoise() on the images above ({r['model']}, tiles and blending included): "
                         f"{r['achieved_gflops']:.1f} GFLOP/s of useful work.")
    s = report.get("rss")
    if s:
        lines += ["", f"Memory: denoising a {s['width']}×{s['height']} ({s['megapixels']:.1f} MP) 8-bit photo with "
                  f"{s['model']} (tile {s['tile']}, {s['precision']}) in a fresh process: peak RSS "
                  f"**{s['peak_rss_mb']:.0f} MB** ({s['rss_after_model_load_mb']:.0f} MB after loading torch and "
                  f"the model), {s['seconds']:.0f} s ({s['seconds_per_megapixel']:.2f} s/MP)."]
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def main(argv=None) -> dict | None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder of clean images (default: %(default)s)")
    p.add_argument("--limit", type=int, default=0, help="only the first N images")
    p.add_argument("--models", default="",
                   help="comma-separated bundled names or checkpoint folders (default: all bundled)")
    p.add_argument("--baselines", default="", help="comma-separated, of nlm,median,bm3d (default: those installed)")
    p.add_argument("--bm3d-images", type=int, default=0, help="BM3D (slow) on the first N images only (0: all)")
    p.add_argument("--bm3d-noises", default="gaussian,poisson",
                   help="run BM3D (a Gaussian denoiser) only for models of these noises (default: %(default)s)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="folder for latest.json and latest.md")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tile", type=int, default=TILE)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="auto: bf16 where the CPU computes it natively, else fp32 (n2n.infer.resolve_precision)")
    p.add_argument("--repeats", type=int, default=2, help="time the model this many times per image, keep the fastest")
    p.add_argument("--rss-size", default="6000x4000", help="WxH of the synthetic photo of the memory probe; 0 skips it")
    p.add_argument("--no-efficiency", action="store_true", help="skip the GFLOP/s against matmul peak figures")
    p.add_argument("--forward-side", type=int, default=512, help="tile side of the timed bare forward pass")
    p.add_argument("--matmul-size", type=int, default=2048, help="n of the timed n×n matmul")
    p.add_argument("--rss-child", metavar="MODEL", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.precision = resolve_precision(args.precision)

    if args.rss_child:  # the fresh process of `peak_rss`
        width, height = map(int, args.rss_size.lower().split("x"))
        print(json.dumps(rss_child(args.rss_child, width, height, args.tile, args.precision)))
        return None

    from n2n import hub
    from n2n.data import list_images

    if not Path(args.data).is_dir():
        p.error(f"no folder {args.data}: give --data DIR, a folder of clean images")
    files = list_images(args.data)[: args.limit or None]
    names = [n for n in args.models.split(",") if n] or hub.bundled_names()
    if not names:
        p.error("no bundled model in checkpoints/: give --models NAME_OR_DIR")
    command = " ".join(["python -m benchmarks.bench"] + (argv if argv is not None else sys.argv[1:]))
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": command,
              "machine": machine(), "data": str(args.data), "images": len(files), "seed": args.seed,
              "repeats": args.repeats, "models": []}
    for name in names:
        row = bench_model(name, files, args)
        report["models"].append(row)
        print(f"{name}: {row['noise']} {row['param']:g}: noisy {row['noisy_psnr']:.2f} dB, model {row['psnr']:.2f} dB "
              f"{row['seconds_per_megapixel']:.2f} s/MP"
              + "".join(f"; {b} {v['psnr']:.2f} dB {v['seconds_per_megapixel']:.2f} s/MP"
                        for b, v in row["baselines"].items()),
              file=sys.stderr)
    probe = "gaussian" if "gaussian" in names else names[0]  # compute and memory: one model is enough
    if not args.no_efficiency:
        report["efficiency"] = efficiency(probe, args.precision, args.forward_side, args.matmul_size)
    if args.rss_size and args.rss_size != "0":
        width, height = map(int, args.rss_size.lower().split("x"))
        report["rss"] = peak_rss(probe, width, height, args.tile, args.precision)
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "latest.md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
