"""Load: concurrent /denoise and /finetune requests through gradio_client; every answer checked.

    python -m benchmarks.load                                  # starts the app here, in-process
    python -m benchmarks.load --url http://127.0.0.1:7860/ --model gaussian
    python -m benchmarks.load --denoise 16 --finetune 2 --steps 3 --json -

Every request comes from its own client (its own session), all sent at once. Each /denoise
request sends its own image (its own size and content); its answer must be exactly that image
denoised by the model, as `n2n.denoise` computes it here (when the model loads here; otherwise
only its size is checked). Each /finetune request asks for its own noise and number of steps;
the checkpoint it returns must say so. Reports p50/p95 latency per endpoint and every request
lost, failed or mixed up; exits with 1 if there is any.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NOISES = ("gaussian", "poisson", "bernoulli", "impulse", "text")


def denoise_inputs(folder: Path, n: int, size: int = 48) -> list[Path]:
    """n noisy photo crops, each of its own size (size+2k high, size+3k wide) and content."""
    import skimage.data

    from n2n.io import write_image
    from n2n.noise import corrupt

    photo = skimage.data.astronaut().astype(np.float32) / 255  # 512 x 512 x 3
    paths = []
    for k in range(n):
        h, w = size + 2 * k, size + 3 * k
        y, x = (37 * k) % (512 - h), (53 * k) % (512 - w)
        noisy = corrupt(np.ascontiguousarray(photo[y:y + h, x:x + w]), "gaussian", 25.0, np.random.default_rng(k))
        paths.append(write_image(folder / f"request_{k:02d}.png", np.clip(noisy, 0, 1), bit_depth=8))
    return paths


def finetune_inputs(folder: Path) -> list[Path]:
    """Two small clean photos to fine-tune on."""
    import skimage.data
    from skimage.transform import resize

    from n2n.io import write_image

    paths = []
    for name in ("chelsea", "coffee"):
        image = resize(getattr(skimage.data, name)(), (72, 96), anti_aliasing=True)
        paths.append(write_image(folder / f"{name}.png", np.rint(image * 255).astype(np.uint8)))
    return paths


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def run_load(url: str, model: str = "gaussian", n_denoise: int = 16, n_finetune: int = 2, steps: int = 3,
             size: int = 48, verify_model=None, timeout: float = 900.0, workdir: Path | None = None) -> dict:
    """Send n_denoise /denoise and n_finetune /finetune requests to the app at `url`, all at once.

    verify_model: the model (nn.Module) the app serves as `model`, to recompute each answer here;
        None: loaded here with n2n.hub.resolve(model) if possible, else answers are checked by size only.
    Returns a report: per endpoint, requests sent, answered correctly, failed (with the error),
    mixed up (an answer that is not its request's), latencies (s) and p50/p95; `ok` if all is well.
    """
    from gradio_client import Client, handle_file

    from n2n.infer import denoise
    from n2n.io import read_image

    if verify_model is None:
        try:
            from n2n import hub

            verify_model = hub.resolve(model).model
        except Exception as e:  # a Hub model, or a name only the server knows
            print(f"cannot load {model!r} here ({e}); answers checked by size only", file=sys.stderr)
    folder = Path(workdir or tempfile.mkdtemp(prefix="n2n-load-"))
    folder.mkdir(parents=True, exist_ok=True)
    inputs = denoise_inputs(folder, n_denoise, size)
    expected = []
    for path in inputs:
        noisy = read_image(path, dtype=None)
        expected.append(denoise(verify_model, noisy) if verify_model is not None else noisy.shape)
    train_files = finetune_inputs(folder) if n_finetune else []

    total = n_denoise + n_finetune
    clients = {}
    barrier = threading.Barrier(total)
    results: list[dict] = []
    lock = threading.Lock()

    def request(endpoint: str, k: int) -> None:
        result = {"endpoint": endpoint, "index": k}
        try:
            client = clients[(endpoint, k)] = Client(url, verbose=False)  # one visitor each: its own session
        except Exception as e:
            barrier.abort()  # the others go at once rather than wait for this one
            with lock:
                results.append(result | {"status": "failed", "error": f"cannot connect: {e}", "seconds": 0.0})
            return
        try:
            barrier.wait(timeout=timeout)  # all at once
        except threading.BrokenBarrierError:
            pass
        start = time.perf_counter()
        try:
            if endpoint == "denoise":
                answer = client.submit(handle_file(str(inputs[k])), model, api_name="/denoise").result(timeout=timeout)
                result |= check_denoise(answer, expected[k], read_image)
            else:
                noise, n_steps = NOISES[k % len(NOISES)], steps + k
                answer = client.submit([handle_file(str(p)) for p in train_files], noise, steps=n_steps, seed=k,
                                       api_name="/finetune").result(timeout=timeout)
                result |= check_finetune(answer, noise, n_steps)
        except Exception as e:  # the request failed: an error answer, a lost connection, a time-out
            first_line = str(e).splitlines()[0][:300] if str(e) else ""
            result |= {"status": "failed", "error": f"{type(e).__name__}: {first_line}"}
        result["seconds"] = time.perf_counter() - start
        with lock:
            results.append(result)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=total) as pool:
        futures = [pool.submit(request, "denoise", k) for k in range(n_denoise)]
        futures += [pool.submit(request, "finetune", k) for k in range(n_finetune)]
        for future in futures:
            future.result()
    wall = time.perf_counter() - start
    for client in clients.values():
        client.close()

    names = [r.get("name") for r in results if r["endpoint"] == "finetune" and r.get("name")]
    report: dict = {"url": url, "model": model, "wall_s": round(wall, 3), "verified": verify_model is not None}
    for endpoint, sent in (("denoise", n_denoise), ("finetune", n_finetune)):
        mine = sorted((r for r in results if r["endpoint"] == endpoint), key=lambda r: r["index"])
        seconds = [r["seconds"] for r in mine if r["status"] == "ok"]
        report[endpoint] = {
            "sent": sent,
            "answered": len(mine),
            "correct": sum(r["status"] == "ok" for r in mine),
            "failed": [r for r in mine if r["status"] == "failed"],
            "mixed_up": [r for r in mine if r["status"] == "mixed_up"],
            "p50_s": percentile(seconds, 50),
            "p95_s": percentile(seconds, 95),
            "max_s": max(seconds, default=None),
            "seconds": [round(r["seconds"], 3) for r in mine],
        }
    if len(set(names)) != len(names):
        report["finetune"]["mixed_up"].append({"error": f"two runs returned the same model name: {names}"})
    report["ok"] = all(report[k]["correct"] == report[k]["sent"] and not report[k]["mixed_up"]
                       for k in ("denoise", "finetune"))
    return report


def check_denoise(answer, expected, read_image) -> dict:
    """ok if the downloaded PNG is this request's image denoised (or, unverified, has its size)."""
    download = answer[3]
    result = read_image(download, dtype=None)
    if isinstance(expected, tuple):
        same = result.shape == expected
    else:
        same = result.shape == expected.shape and result.dtype == expected.dtype and np.array_equal(result, expected)
    if same:
        return {"status": "ok"}
    detail = (f"shape {result.shape}" if isinstance(expected, tuple) or result.shape != expected.shape
              else f"max difference {np.abs(result.astype(np.int64) - expected.astype(np.int64)).max()}")
    return {"status": "mixed_up", "error": f"the answer is not this request's image denoised ({detail})"}


def check_finetune(answer, noise: str, steps: int) -> dict:
    """ok if the run finished its steps and its checkpoint is for this request's noise and steps."""
    *_, status, archive, name = answer
    if not name or not name.startswith(f"finetuned-{noise}-"):
        return {"status": "mixed_up", "error": f"model name {name!r} for a {noise} run", "name": name}
    with zipfile.ZipFile(archive) as z:
        config = json.loads(z.read(f"{name}/config.json"))
    if config.get("noise") != noise or config.get("steps") != steps or f"step {steps} / {steps}" not in status:
        return {"status": "mixed_up", "name": name,
                "error": f"asked {noise} × {steps} steps, got {config.get('noise')} × {config.get('steps')}"}
    return {"status": "ok", "name": name}


def start_app(model: str):
    """Launch the app here on a free port; serve a snapshot of `model` (a bundled name or a folder) as 'bench'."""
    sys.path.insert(0, str(ROOT))
    import app
    from n2n import hub

    source = Path(model) if Path(model).is_dir() else hub.CHECKPOINTS / model
    if not (source / hub.WEIGHTS_NAME).is_file():
        raise SystemExit(f"error: no checkpoint {model!r} here (bundled: {', '.join(hub.bundled_names()) or 'none'})")
    snapshot = Path(tempfile.mkdtemp(prefix="n2n-load-model-")) / "bench"
    snapshot.mkdir()
    for name in (hub.CONFIG_NAME, hub.WEIGHTS_NAME):  # a copy: a training run may rewrite the original meanwhile
        shutil.copy2(source / name, snapshot / name)
    demo = app.build_demo(extra_models={"bench": snapshot})
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **app.LAUNCH_KWARGS)
    return demo, url, hub.load_dir(snapshot).model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running app; default: start one here")
    parser.add_argument("--model", default="gaussian",
                        help="model name (in-process: bundled name or checkpoint folder)")
    parser.add_argument("--denoise", type=int, default=16, help="concurrent /denoise requests")
    parser.add_argument("--finetune", type=int, default=2, help="concurrent /finetune requests")
    parser.add_argument("--steps", type=int, default=3, help="fine-tuning steps of the first run (+1 per next run)")
    parser.add_argument("--size", type=int, default=48, help="side of the smallest /denoise image")
    parser.add_argument("--json", help="write the report here, or - for stdout")
    args = parser.parse_args(argv)

    demo = None
    if args.url:
        url, model, verify = args.url, args.model, None
    else:
        demo, url, verify = start_app(args.model)
        model = "bench"
    try:
        from gradio_client import Client, handle_file

        with tempfile.TemporaryDirectory() as warm:  # one request first: the model loads once, outside the figures
            client = Client(url, verbose=False)
            client.predict(handle_file(str(denoise_inputs(Path(warm), 1, args.size)[0])), model, api_name="/denoise")
            client.close()
        report = run_load(url, model, args.denoise, args.finetune, args.steps, args.size, verify_model=verify)
    finally:
        if demo is not None:
            demo.close()

    if args.json:
        text = json.dumps(report, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    for endpoint in ("denoise", "finetune"):
        r = report[endpoint]
        if r["sent"]:
            print(f"{endpoint}: {r['correct']}/{r['sent']} correct, {len(r['failed'])} failed, "
                  f"{len(r['mixed_up'])} mixed up, {r['sent'] - r['answered']} lost; "
                  f"latency p50 {r['p50_s'] or 0:.2f} s, p95 {r['p95_s'] or 0:.2f} s, "
                  f"max {r['max_s'] or 0:.2f} s", file=sys.stderr)
        for bad in r["failed"] + r["mixed_up"]:
            print(f"  {endpoint} #{bad.get('index', '?')}: {bad.get('status', '')} {bad.get('error', '')}",
                  file=sys.stderr)
    answers = "verified against n2n.denoise here" if report["verified"] else "checked by size"
    print(f"wall {report['wall_s']:.2f} s; answers {answers}; "
          f"{'OK' if report['ok'] else 'PROBLEMS'}", file=sys.stderr)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
