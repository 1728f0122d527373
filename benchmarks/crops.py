"""Larger training crops at equal wall-clock: warm restarts of `gaussian` at 96² × 8, 192² × 2, 256² × 1 (issue 25).

    nice -n 10 env OMP_NUM_THREADS=1 PYTHONPATH=. python -m benchmarks.crops [--minutes 20]
        [--schedules 96x8,192x2,256x1] [--init checkpoints/gaussian] [--lr 1e-4] [--work runs/crops]

The U-Net pools five times, so a 96² crop reaches its bottleneck as 3×3; the paper trained on 256².
Each schedule (crop × batch) is a warm restart from --init at --lr on the campaign's data and noise
(train_space.py: ../shared/data/train/bsd400, Gaussian σ ∈ [0, 50]), one torch thread, precision "auto".
A probe of --probe steps (after 5 untimed, none of them kept) measures the schedule's steps/s; its run
then gets the steps that fill --minutes, so that every run's lr ramp-down ends. The last checkpoint of
each goes to WORK/CROPxBATCH. Each result, and the starting checkpoint, is scored on the campaign's quick
eval (train_space.quick_score: the first 6 Kodak24 images at σ=25, fixed seeds) and on full-size Kodak24
at σ=25 (n2n.evaluate.evaluate, seed 0). The quick eval also runs at --checks fractions of each run, to
show how far one run's figure moves between nearby steps. Writes OUT/crops.json and OUT/crops.md (after
each schedule, so an interrupted run leaves what it measured).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.bench import DEFAULT_OUT, ROOT, machine
from n2n import hub
from n2n.data import list_images
from n2n.evaluate import evaluate
from n2n.infer import resolve_precision
from n2n.noise import NOISE_MODELS
from n2n.train import TrainConfig, read_data, train
from train_space import DATA, quick_score

NOISE = "gaussian"
PROBE_WARMUP = 5  # untimed steps before the probe's timed ones (the first steps are slow)
MEANINGFUL = 0.03  # dB: the margin on both scores at which a schedule "clearly wins" (issue 25)


def parse_schedules(text: str) -> list[tuple[int, int]]:
    """'96x8,192x2' → [(96, 8), (192, 2)]: (crop, batch) pairs."""
    return [(int(c), int(b)) for c, b in (s.lower().split("x") for s in text.split(",") if s)]


def probe(config: TrainConfig, data, steps: int) -> float:
    """Steps/s of `config`'s schedule over `steps` steps after PROBE_WARMUP, in a throwaway folder."""
    with tempfile.TemporaryDirectory() as out:
        probe_config = dataclasses.replace(config, steps=PROBE_WARMUP + steps, out=out, checkpoint_every=10**9,
                                           optimiser_state=False)
        for record in train(probe_config, data=data):
            if record.step == PROBE_WARMUP:
                start = record.elapsed_s
            last = record.elapsed_s
    return steps / (last - start)


def scores(model, quick_files, test_files) -> dict:
    """The quick eval's and the test set's PSNR (dB) of `model` at the noise's default setting."""
    t = time.perf_counter()
    quick = quick_score(model, NOISE, quick_files)
    test = evaluate(model, test_files, NOISE, NOISE_MODELS[NOISE].default, label="test")["psnr"]
    return {"quick_psnr": quick, "test_psnr": test, "eval_s": time.perf_counter() - t}


def run_schedule(crop: int, batch: int, base: TrainConfig, data, args, quick_files, test_files) -> dict:
    """Probe, train for --minutes' worth of steps and score one schedule; its row of the table."""
    config = dataclasses.replace(base, crop=crop, batch_size=batch, out=str(Path(args.work) / f"{crop}x{batch}"))
    rate = probe(config, data, args.probe)
    if args.pixels:
        steps = max(1, round(args.pixels * 1e6 / (batch * crop * crop)))
        budget = f"{args.pixels:g} M pixels"
    else:
        steps = max(1, round(args.minutes * 60 * rate))
        budget = f"{args.minutes:g} minutes"
    print(f"== {crop}²×{batch}: probe {rate:.3f} steps/s → {steps} steps for {budget}", flush=True)
    shutil.rmtree(config.out, ignore_errors=True)  # a fresh run from --init, never a resumed one
    config = dataclasses.replace(config, steps=steps, checkpoint_every=max(1, steps // 4))
    check_steps = sorted({max(1, round(f * steps)) for f in args.checks} - {steps})
    checks, paused, last = [], 0.0, None
    for record in train(config, data=data):
        if record.step % 50 == 0:
            print(f"{crop}x{batch} step {record.step}/{steps} loss {record.loss:.5f} lr {record.lr:.2e} "
                  f"{record.steps_per_s:.3f} steps/s", flush=True)
        if record.step in check_steps:
            t = time.perf_counter()
            score = quick_score(record.model, NOISE, quick_files)
            paused += time.perf_counter() - t  # the loop's clock runs on while the quick eval does
            checks.append({"step": record.step, "quick_psnr": score})
            print(f"{crop}x{batch} step {record.step}: {score:.3f} dB on the quick eval", flush=True)
        last = record
    seconds = last.elapsed_s - paused
    figures = scores(hub.load_dir(config.out).model, quick_files, test_files)
    checks.append({"step": steps, "quick_psnr": figures["quick_psnr"]})
    row = {"schedule": f"{crop}x{batch}", "crop": crop, "batch": batch, "steps": steps, "probe_steps_per_s": rate,
           "steps_per_s": steps / seconds, "minutes": seconds / 60, "pixels": steps * batch * crop * crop,
           "checkpoint": config.out, "checks": checks} | figures
    print(f"{crop}x{batch}: {steps} steps in {seconds / 60:.1f} min; quick eval {row['quick_psnr']:.3f} dB, "
          f"test {row['test_psnr']:.3f} dB", flush=True)
    return row


def verdict(rows: list[dict]) -> tuple[str | None, str]:
    """The schedule that beats every other on both scores by MEANINGFUL dB (None if none does), and a sentence."""
    if len(rows) < 2:
        return None, "one schedule only: nothing to compare."
    best = max(rows, key=lambda r: r["test_psnr"])
    others = [r for r in rows if r is not best]
    margins = {key: best[key] - max(r[key] for r in others) for key in ("quick_psnr", "test_psnr")}
    name = best["schedule"].replace("x", "²×")
    text = (f"{name} is best on the test set, by {margins['test_psnr']:+.3f} dB over the next schedule there and "
            f"{margins['quick_psnr']:+.3f} dB on the quick eval")
    if min(margins.values()) >= MEANINGFUL:
        return best["schedule"], text + f": a clear win (≥ {MEANINGFUL} dB on both)."
    return None, text + f": not a clear win (under {MEANINGFUL} dB on one of them or both)."


def markdown(report: dict) -> str:
    m, start, rows = report["machine"], report["start"], report["rows"]
    sigmas, sigma = "[{:g}, {:g}]".format(*NOISE_MODELS[NOISE].noise_range), NOISE_MODELS[NOISE].default
    flags = ", ".join(f"{f}: {'yes' if f in m['simd'] else 'no'}" for f in ("avx512_bf16", "amx_bf16"))
    pixels = report.get("target_pixels")
    budget = (f"each schedule's steps see {pixels:g} M pixels (its steps/s from a {report['probe']}-step probe)"
              if pixels else f"each schedule's steps are set by a {report['probe']}-step probe of its pace to fill "
              f"{report['target_minutes']:g} minutes")
    lines = [f"# Larger crops at equal {'pixels' if pixels else 'wall-clock'} (`{report['command']}`)", "",
             f"Warm restarts of `{report['init']}` ({NOISE}, σ ∈ {sigmas}) at lr {report['lr']:g}, ramped down over "
             f"the last 30 % of each run, on {report['data']}; {budget}. Quick eval: the campaign's "
             f"(`train_space.quick_score`, the first {report['quick_images']} images of {report['quick']} at "
             f"σ={sigma:g}); test: {report['test_images']} full-size images of {report['test']} at σ={sigma:g}, "
             "seed 0. PSNR in dB.", "",
             f"Machine: {m['cpu']}, {m['cores']} cores ({flags}; simd {', '.join(m['simd'])}), torch {m['torch']}, "
             f"precision {report['precision']}, 1 torch thread, under `nice -n 10` beside other jobs (load average "
             f"{m['load_average']} at the end).", "",
             "| schedule | steps | steps/s (probe / run) | pixels seen | minutes | quick eval | "
             f"{report['test']} | gain over the start (quick / {report['test']}) |",
             "|---|---|---|---|---|---|---|---|",
             f"| start: `{report['init']}` | — | — | — | — | {start['quick_psnr']:.3f} | {start['test_psnr']:.3f} "
             "| — |"]
    for r in rows:
        lines.append(f"| {r['crop']}² × {r['batch']} | {r['steps']} | {r['probe_steps_per_s']:.3f} / "
                     f"{r['steps_per_s']:.3f} | {r['pixels'] / 1e6:.0f} M | {r['minutes']:.1f} "
                     f"| {r['quick_psnr']:.3f} | {r['test_psnr']:.3f} | {r['quick_psnr'] - start['quick_psnr']:+.3f} / "
                     f"{r['test_psnr'] - start['test_psnr']:+.3f} |")
    lines += ["", "Quick eval along each run (step: dB), the last the table's:", ""]
    for r in rows:
        lines.append(f"- {r['crop']}² × {r['batch']}: " + ", ".join(f"{c['step']}: {c['quick_psnr']:.3f}"
                                                                    for c in r["checks"]))
    lines += ["", f"**Verdict.** {report['verdict']}", "", report["caveat"]]
    return "\n".join(lines)


def caveat(rows: list[dict], quick_images: int, test_images: int, target_minutes: float | None) -> str:
    """How big a difference means something here: how far each run's quick eval moved near its end, and how far
    its minutes strayed from the target (the probe's pace is not the run's when the machine's load changes)."""
    text = (f"Caveat: one run of each schedule, one seed; the quick eval is {quick_images} images with one draw "
            f"of noise, the test {test_images}.")
    moves = [abs(r["checks"][-1]["quick_psnr"] - r["checks"][-2]["quick_psnr"]) for r in rows if len(r["checks"]) > 1]
    if moves:
        ranges = [max(c["quick_psnr"] for c in r["checks"]) - min(c["quick_psnr"] for c in r["checks"]) for r in rows]
        text += (f" Between its last two quick evals (lr nearly ramped down) a run moved by up to {max(moves):.3f} dB; "
                 f"over all its checks by up to {max(ranges):.3f}.")
    minutes = [r["minutes"] for r in rows]
    if target_minutes and (max(minutes) > 1.1 * target_minutes or min(minutes) < 0.9 * target_minutes):
        text += (f" The runs took {min(minutes):.1f}–{max(minutes):.1f} minutes against {target_minutes:g}: the "
                 "machine's load changed between a probe and its run, so their budgets were not equal; pixels seen "
                 "says by how much.")
    return text + " Differences under a few hundredths of a dB are within what a second seed could reverse."


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20, help="training wall-clock of each schedule")
    parser.add_argument("--schedules", default="96x8,192x2,256x1", help="CROPxBATCH,... ")
    parser.add_argument("--init", default=str(ROOT / "checkpoints" / "gaussian"), help="the warm start")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--pixels", type=float, default=0,
                        help="instead of --minutes: each schedule's steps see this many million pixels")
    parser.add_argument("--probe", type=int, default=30, help="timed steps of each schedule's probe")
    parser.add_argument("--checks", default="0.7,0.8,0.9", help="quick evals at these fractions of each run")
    parser.add_argument("--data", default=str(DATA / "train" / "bsd400"), help="folder of clean training images")
    parser.add_argument("--quick", default=str(DATA / "kodak24"), help="the quick eval's folder (its first N)")
    parser.add_argument("--quick-images", type=int, default=6)
    parser.add_argument("--test", default=str(DATA / "kodak24"), help="the full evaluation's folder")
    parser.add_argument("--test-images", type=int, default=0, help="the first N of --test only (0: all)")
    parser.add_argument("--work", default=str(ROOT / "runs" / "crops"), help="parent folder of the checkpoints")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--name", default="crops", help="write OUT/NAME.json and OUT/NAME.md")
    args = parser.parse_args(argv)
    args.checks = [float(f) for f in args.checks.split(",") if f]
    torch.set_num_threads(1)
    quick_files = list_images(args.quick)[: args.quick_images]
    test_files = list_images(args.test)[: args.test_images or None]
    # the campaign's TrainConfig (train_space.campaign_config, run_stage) less its crop and batch
    base = TrainConfig(data=args.data, noise=NOISE, lr=args.lr, init=args.init, threads=1, precision="auto",
                       val_every=1000)
    data = read_data(base, validation=False)  # decoded once for every probe and run
    report = {"command": "python -m benchmarks.crops " + " ".join(sys.argv[1:] if argv is None else argv),
              "init": args.init if not Path(args.init).is_relative_to(ROOT) else str(Path(args.init).relative_to(ROOT)),
              "lr": args.lr, "data": Path(args.data).name, "target_minutes": None if args.pixels else args.minutes,
              "target_pixels": args.pixels or None, "probe": args.probe,
              "quick": Path(args.quick).name, "quick_images": len(quick_files), "test": Path(args.test).name,
              "test_images": len(test_files),
              "precision": resolve_precision("auto"), "rows": []}
    report["start"] = scores(hub.load_model(args.init), quick_files, test_files)
    print(f"start: quick eval {report['start']['quick_psnr']:.3f} dB, test {report['start']['test_psnr']:.3f} dB",
          flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for crop, batch in parse_schedules(args.schedules):
        report["rows"].append(run_schedule(crop, batch, base, data, args, quick_files, test_files))
        report["winner"], report["verdict"] = verdict(report["rows"])
        report["caveat"] = caveat(report["rows"], len(quick_files), len(test_files),
                                  None if args.pixels else args.minutes)
        report["machine"] = machine()
        (out / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / f"{args.name}.md").write_text(markdown(report) + "\n")
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
