"""`python -m n2n corrupt | denoise | eval | train | export` (verbs and flags are contracts: docs/ARCHITECTURE.md)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from . import baselines, hub
from .checkpoint import CheckpointError
from .data import list_images
from .export import export_onnx, input_doc, onnx_difference, require_onnx
from .evaluate import PAIR_NAMES, evaluate, evaluate_pairs, match_pairs
from .infer import ENSEMBLE, STRIDES, TILE, denoise, model_stride, resolve_precision
from .io import DEFAULT_MAX_PIXELS, ImageError, read_icc_profile, read_image, split_alpha, with_alpha, write_image
from .noise import NOISE_MODELS, corrupt, get_noise


def refusal(e: ImageError) -> str:
    """An image refusal as the terminal shows it: read_image's advice to a program (a larger
    max_pixels) becomes the flag that does it."""
    if str(e) == e.user_message:
        return str(e)
    return f"{e.user_message}; only if you trust this file, rerun with a larger --max-pixels"


def cmd_corrupt(args) -> None:
    image = read_image(args.input, max_pixels=args.max_pixels)
    noisy = corrupt(split_alpha(image)[0], args.noise, args.param, np.random.default_rng(args.seed))
    write_image(args.output, with_alpha(noisy, image), bit_depth=8,  # clipped; alpha and colour profile pass through
                icc_profile=read_icc_profile(args.input))
    print(f"{args.output}: {args.noise} {get_noise(args.noise).param}={args.param}")


def output_names(inputs: list[str]) -> list[str]:
    """STEM.png for each input; inputs sharing a stem (a/x.png, b/x.jpg) get STEM-2.png, STEM-3.png…"""
    names, taken = [], set()
    for path in inputs:
        stem, k = Path(path).stem, 1
        name = f"{stem}.png"
        while name.lower() in taken:  # lower: on case-insensitive file systems X.png is x.png
            k += 1
            name = f"{stem}-{k}.png"
        taken.add(name.lower())
        names.append(name)
    return names


def cmd_denoise(args) -> None:
    loaded = hub.resolve(args.model)
    print(f"model {args.model} from {loaded.source}", file=sys.stderr)
    out, several = Path(args.output), len(args.inputs) > 1
    if several:
        out.mkdir(parents=True, exist_ok=True)
    targets = [out / name for name in output_names(args.inputs)] if several else [out]
    # A progress bar for several inputs only: one file is done or refused, and says which.
    refused = 0
    with tqdm(args.inputs, desc="denoise", unit="image", file=sys.stderr, disable=not several) as bar:
        for path, target in zip(bar, targets):
            try:
                image = read_image(path, max_pixels=args.max_pixels, dtype=None)
                write_image(target, denoise(loaded.model, image, tile=args.tile, precision=args.precision,
                                            stride=args.stride, ensemble=args.ensemble),
                            icc_profile=read_icc_profile(path))
            except ImageError as e:
                refused += 1
                bar.write(f"error: {refusal(e)}", file=sys.stderr)  # on its own line, the bar redrawn below
                continue
            if not several:
                print(f"{target}: denoised")
    if refused and several:
        # one "error:" line per refused file (above), then what was done
        raise SystemExit(f"{refused} of {len(args.inputs)} images refused (above); "
                         f"{len(args.inputs) - refused} written to {out}")
    if refused:
        raise SystemExit(1)


def cmd_eval(args) -> None:
    if bool(args.pairs) == bool(args.data) or (args.data and (args.noise is None or args.param is None)):
        raise SystemExit("error: eval takes --pairs DIR (real noisy/clean photos) or --data DIR --noise NAME "
                         "--param P (clean images corrupted here)")
    loaded = hub.resolve(args.model)
    names = tuple(tuple(p.split(",", 1)) for p in args.pair if "," in p) if args.pair else PAIR_NAMES
    if args.pair and len(names) != len(args.pair):
        raise SystemExit("error: --pair takes NOISY,CLEAN, the parts of the names that differ (e.g. _noise,_gt)")
    chosen = [b for b in (args.baselines or "").split(",") if b]
    if args.pairs:  # a refused image: its error goes below the progress bar, which evaluate closes first
        figures = evaluate_pairs(loaded.model, match_pairs(args.pairs, names)[: args.limit or None], chosen,
                                 tile=args.tile, precision=args.precision, max_pixels=args.max_pixels,
                                 stride=args.stride, ensemble=args.ensemble)
    else:
        figures = evaluate(loaded.model, list_images(args.data)[: args.limit or None], args.noise, args.param,
                           args.seed, chosen, tile=args.tile, precision=args.precision,
                           max_pixels=args.max_pixels, stride=args.stride, ensemble=args.ensemble)
    setting = ({"data": str(args.pairs), "noise": "real", "param": None} if args.pairs else
               {"data": str(args.data), "noise": args.noise, "param": args.param})
    result = {"model": args.model, "source": loaded.source} | setting | {
        "seed": args.seed, "precision": resolve_precision(args.precision),
        "stride": model_stride(loaded.model) if args.stride is None else args.stride,
        "ensemble": ENSEMBLE if args.ensemble else 1} | figures
    result |= result["baselines"]  # one top-level entry per baseline too
    text = json.dumps(result, indent=2)
    if args.json and args.json != "-":
        Path(args.json).write_text(text + "\n")
    if args.json == "-":
        print(text)
    else:
        print(f"{args.model} on {result['data']}, {args.noise or 'real'} {args.param or ''}: "
              f"noisy {result['noisy_psnr']:.2f} dB, "
              f"model {result['psnr']:.2f} dB / SSIM {result['ssim']:.4f}, "
              f"{result['seconds_per_megapixel']:.2f} s/MP"
              + "".join(f"; {n} {s['psnr']:.2f} dB" for n, s in result["baselines"].items()))


ONNX_TOLERANCE = 1e-3  # largest |onnxruntime − torch| accepted on the check image, for outputs in [0, 1]


def cmd_export(args) -> None:
    try:
        require_onnx()
    except ImportError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    loaded = hub.resolve(args.model)
    print(f"model {args.model} from {loaded.source}", file=sys.stderr)
    target = Path(args.onnx)
    target.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(loaded.model, target)
    difference = onnx_difference(loaded.model, target, 96, 64)  # not the traced 64×96: the sizes are dynamic
    if difference > ONNX_TOLERANCE:
        target.unlink()
        raise ValueError(f"the exported graph gives outputs {difference:.2g} away from the model's (over "
                         f"{ONNX_TOLERANCE:g}): nothing written; report this with your torch and onnx versions")
    stride = model_stride(loaded.model)
    shuffle = f"; meant for pixel-shuffle stride {stride}: denoise image[i::{stride}, j::{stride}] apart" * (stride > 1)
    print(f"{target}: input {input_doc(loaded.model)}; onnxruntime matches torch within {difference:.1e} "
          f"at 96×64{shuffle}")


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One --flag per field of the dataclass `cls`, typed and defaulted from it."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag, hint = "--" + f.name.replace("_", "-"), hints[f.name]
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        elif typing.get_origin(hint) in (tuple, typing.Union, types.UnionType):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            if typing.get_origin(args[0]) is tuple:
                parser.add_argument(flag, type=float, nargs=2, default=f.default, metavar=("LO", "HI"))
            else:
                parser.add_argument(flag, type=args[0], default=f.default)
        else:
            parser.add_argument(flag, type=hint, default=f.default)


def cmd_train(args) -> None:
    from .train import TrainConfig

    config = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    run_training(config)


def run_training(config, log_every: int = 50, stop=lambda: False):
    """Run `config` to the end (or until `stop()`), printing a line every `log_every` steps; the last
    `n2n.train.Record`, or None when the run had no step to take (resumed at its end)."""
    from .train import train

    record = None
    for record in train(config, stop=stop):
        if record.step % log_every == 0 or record.val_psnr is not None or record.done:
            val = f" val {record.val_psnr:.2f} dB" if record.val_psnr is not None else ""
            print(f"step {record.step}/{config.steps} loss {record.loss:.5f} lr {record.lr:.2e} "
                  f"{record.steps_per_s:.2f} steps/s{val}", flush=True)
    return record


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_max_pixels(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, metavar="N",
                        help=f"refuse images of more than N pixels (width × height; default {DEFAULT_MAX_PIXELS}): "
                             "raise it only for files you trust")


def add_stride(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ensemble", action="store_true",
                        help="the ×8 self-ensemble: 4 rotations × 2 flips, each undone, averaged (8× the time)")
    parser.add_argument("--stride", type=int, choices=STRIDES, default=None,
                        help="pixel-shuffle: denoise the stride² sub-images apart (noise correlated over neighbours, "
                             "as in real photos); default: the model's own (its config's stride, else 1)")


def build_parser() -> argparse.ArgumentParser:
    from .train import TrainConfig

    called = Path(sys.argv[0]).name  # the `n2n` script, or python -m n2n (__main__.py)
    parser = argparse.ArgumentParser(prog="python -m n2n" if called in ("__main__.py", "-c", "") else called,
                                     description="Noise2Noise denoising: corrupt, denoise, evaluate, train, export.")
    sub = parser.add_subparsers(dest="command", required=True)
    noises = ", ".join(f"{n} ({m.param}: {m.units}, test {m.default})" for n, m in NOISE_MODELS.items())

    p = sub.add_parser("corrupt", help="add noise to an image")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--noise", required=True, choices=list(NOISE_MODELS), help=noises)
    p.add_argument("--param", type=float, required=True)
    p.add_argument("--seed", type=int, default=0)
    add_max_pixels(p)
    p.set_defaults(run=cmd_corrupt)

    p = sub.add_parser("denoise", help="denoise images with a model")
    p.add_argument("inputs", nargs="+")
    p.add_argument("-o", "--output", required=True, help="a .png file for one input, a folder for several")
    p.add_argument("--model", required=True, help="bundled name, checkpoint folder, or owner/repo[@rev] on the Hub")
    p.add_argument("--tile", type=int, default=TILE)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="auto: bf16 on CUDA and on CPUs with native bf16, fp32 elsewhere")
    add_stride(p)
    add_max_pixels(p)
    p.set_defaults(run=cmd_denoise)

    p = sub.add_parser("eval", help="PSNR/SSIM/speed of a model and baselines on a folder of clean images "
                                    "(--data) or of real noisy/clean pairs (--pairs)")
    p.add_argument("--model", required=True)
    p.add_argument("--data", help="a folder of clean images, corrupted here with --noise at --param")
    p.add_argument("--noise", choices=list(NOISE_MODELS))
    p.add_argument("--param", type=float)
    p.add_argument("--pairs", help="a folder of real noisy photos and their clean images, matched by name: "
                                   "NAME_noise/NAME_gt, NAME_real/NAME_mean, noisy/gt (the baselines at the "
                                   "noise level estimated blind)")
    p.add_argument("--pair", action="append", metavar="NOISY,CLEAN",
                   help="--pairs: the parts of the names that differ (repeatable), instead of the usual ones")
    add_stride(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--baselines", default="", help="comma-separated: " + ",".join(baselines.BASELINES))
    p.add_argument("--limit", type=int, default=0, help="only the first N images")
    p.add_argument("--tile", type=int, default=TILE)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="auto: bf16 on CUDA and on CPUs with native bf16, fp32 elsewhere")
    p.add_argument("--json", help="write the JSON here, or - for stdout")
    add_max_pixels(p)
    p.set_defaults(run=cmd_eval)

    p = sub.add_parser("export", help="write a model as an ONNX graph, for onnxruntime (needs onnx, onnxscript, "
                                      "onnxruntime)")
    p.add_argument("--model", required=True, help="bundled name, checkpoint folder, or owner/repo[@rev] on the Hub")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx",
                   help="the file to write: input `image` (N, C, H, W) float32 in [0, 1], H and W dynamic but "
                        "multiples of 32 for the U-Net (pad, then crop the output); output `denoised`, the same shape")
    p.set_defaults(run=cmd_export)

    p = sub.add_parser("train", help="train a model (see also train_space.py)")
    add_dataclass_arguments(p, TrainConfig)
    p.set_defaults(run=cmd_train)
    return parser


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if argv[:1] == ["bench"]:  # the benchmark imports n2n, never the reverse
        raise SystemExit("error: the benchmark is not part of the package: run `python -m benchmarks.bench` "
                         "from a checkout of n2n")
    args = build_parser().parse_args(argv)
    if getattr(args, "max_pixels", None) and Image.MAX_IMAGE_PIXELS is not None:
        # Pillow's own decompression-bomb limit must not refuse what --max-pixels admits.
        Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS, args.max_pixels)
    try:
        args.run(args)
    except ImageError as e:
        print(f"error: {refusal(e)}", file=sys.stderr)
        raise SystemExit(2)
    except (CheckpointError, ValueError, FloatingPointError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
