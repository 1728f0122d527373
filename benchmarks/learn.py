"""How long the Learn tab takes (issue 13: "about a second for a 512² image on 2 cores"): the /learn
endpoint through gradio_client on the 512² astronaut, and n2n.learn.combine alone, per noise and N.

    nice -n 5 python -m benchmarks.learn [--repeats 3] [--out benchmarks/results/learn.md]

The endpoint's seconds are the whole round trip a visitor waits for (upload, the copies, four PNGs,
the plot's data, the downloads); `combine` is the arithmetic alone. Median of the repeats, after one
warm-up call (the text noise renders its strings on first use). The load average is recorded: the
machine this runs on is rarely quiet.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import skimage.data

from n2n.io import to_float
from n2n.learn import combine
from n2n.noise import NOISE_MODELS

NOISES = ("gaussian", "text", "impulse")
NS = (1, 16, 64)


def timed(call, repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/learn.md")
    args = parser.parse_args(argv)

    import app
    from gradio_client import Client, handle_file
    from ui.corrupt import example_images

    clean = to_float(skimage.data.astronaut())  # 512 × 512 × 3
    path = example_images()[0]  # the same photo as a PNG
    demo = app.build_demo()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **app.LAUNCH_KWARGS)
    client = Client(url, verbose=False)
    load_before = os.getloadavg()[0]
    rows = []
    try:
        for noise in NOISES:
            param = NOISE_MODELS[noise].default
            client.predict(handle_file(path), noise, param, 2, 0, api_name="/learn")  # warm-up
            for n in NS:
                endpoint = timed(lambda: client.predict(handle_file(path), noise, param, n, 0, api_name="/learn"),
                                 args.repeats)
                alone = timed(lambda: combine(clean, noise, param, n, np.random.default_rng(0)), args.repeats)
                scores = combine(clean, noise, param, n, np.random.default_rng(0)).psnr
                rows.append((noise, param, n, endpoint, alone, scores))
                print(rows[-1][:5], flush=True)
    finally:
        client.close()
        demo.close()
    load_after = os.getloadavg()[0]
    lines = ["# Learn tab: seconds per call on the 512² astronaut", "",
             f"`nice -n 5 python -m benchmarks.learn --repeats {args.repeats}`: median of {args.repeats} calls "
             f"after a warm-up; {os.cpu_count()} CPU cores, load average {load_before:.1f} before and "
             f"{load_after:.1f} after (a load above 2 means other work ran beside it).", "",
             "| noise | parameter | N | /learn round trip (s) | `combine` alone (s) "
             "| PSNR noisy / mean / median / mode (dB) |",
             "|---|---|---|---|---|---|"]
    for noise, param, n, endpoint, alone, scores in rows:
        psnrs = " / ".join("∞" if np.isinf(scores[k]) else f"{scores[k]:.2f}" for k in ("noisy", "mean", "median",
                                                                                         "mode"))
        lines.append(f"| {noise} | {NOISE_MODELS[noise].param} = {param:g} | {n} | {endpoint:.2f} | {alone:.2f} | "
                     f"{psnrs} |")
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
