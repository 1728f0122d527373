"""Soak: the app served here for N minutes to a bounded mix of visitors; memory and disk should stay flat.

    python -m benchmarks.soak --minutes 30                 # the issue's run (report: benchmarks/results/soak-30min.*)
    nice -n 5 python -m benchmarks.soak --minutes 2        # a short check

The app runs in its own process (`app.demo`, as `python app.py` serves it) with its own temporary
folder (TMPDIR: Gradio's cache and the app's work folders) and Hugging Face home, so that its RSS,
open files and disk use can be read from outside every 10 s. Its Hub is the tests' stand-in
(`tests/hubserver.py`'s HostileHub on 127.0.0.1) serving one good repo and hostile ones.

A fixed number of visitors (threads, each its own gradio_client session, renewed every few
requests) loop over a weighted mix until the time is up: denoise with comparisons (a bundled model
beside NLM and the median, with a clean reference), corrupt, a short fine-tune, the good Hub repo,
hostile uploads (an HTML page named .png, a truncated JPEG, a decompression-bomb header) and Hub
ids that fail (missing, a million channels, oversized weights, not JSON, a Hub too slow to answer),
and /adapt when the app has it. Each answer is checked (the image's size, the scores table, the
checkpoint) and each refusal must be the expected one-line message; anything else is a failure.

Report (markdown, JSON and a PNG plot) under benchmarks/results/: requests answered and failed per
action, p50/p95 latency, and the server's RSS, open files and temporary-folder size over time.
Exit status 1 if any request failed or was lost.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SAMPLE_S = 10.0
REQUEST_TIMEOUT_S = 300.0
TRACED_TIMEOUT_S = 120.0  # the client's HTTP timeout under --trace (httpx's default, 5 s, is too short there)
# action (what a visitor asks for) -> weight in the mix
MIX = {"denoise": 30, "corrupt": 20, "finetune": 4, "hub_good": 6, "hostile_upload": 15, "hub_fails": 20, "adapt": 5}
ADAPT_S = 5  # seconds of adapting per /adapt request: the least the app allows (ui.denoise.ADAPT_SECONDS)
HUB_FAILS = {  # Hub id -> the refusal the visitor must read
    "nobody/missing-model": r"Hub repo 'nobody/missing-model' not found",
    "soak/million-channels": r"in_channels=1000000 is refused",
    "soak/huge-weights": r"model\.safetensors is 256 MB, over the 16 MB limit",
    "soak/not-json": r"config\.json is not valid JSON",
    "soak/slow": r"cannot reach the Hub and nothing is cached for soak/slow@main \(ReadTimeout",
}
HOSTILE_UPLOADS = {"page.png": r"HTML page", "cut.jpg": r"(?i)truncated", "bomb.png": r"pixels.*over the limit"}


@dataclass
class Request:
    action: str
    visitor: int
    start_s: float  # since the soak began
    seconds: float = 0.0
    outcome: str = "lost"  # ok | refused (as expected) | failed | lost (no answer within REQUEST_TIMEOUT_S)
    detail: str = ""


# ----------------------------------------------------------------------------- inputs


def photo_crops(folder: Path, n: int, rng: np.random.Generator) -> list[tuple[Path, Path]]:
    """n (clean, noisy) PNG pairs of crops of scikit-image's photos, each of its own size and content."""
    import skimage.data

    from n2n.io import write_image
    from n2n.noise import corrupt

    photos = [getattr(skimage.data, name)().astype(np.float32) / 255 for name in ("astronaut", "chelsea", "coffee")]
    pairs = []
    for k in range(n):
        image = photos[k % len(photos)]
        h, w = int(rng.integers(64, 200)), int(rng.integers(64, 240))
        y, x = int(rng.integers(0, image.shape[0] - h)), int(rng.integers(0, image.shape[1] - w))
        clean = np.ascontiguousarray(image[y:y + h, x:x + w])
        noisy = corrupt(clean, "gaussian", 25.0, np.random.default_rng(k))
        pairs.append((write_image(folder / f"clean_{k:03d}.png", clean, bit_depth=8),
                      write_image(folder / f"noisy_{k:03d}.png", np.clip(noisy, 0, 1), bit_depth=8)))
    return pairs


def hostile_uploads(folder: Path) -> dict[str, Path]:
    """Files a visitor might upload that are no usable image: each must be refused in one line."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((48, 64, 3), 128, np.uint8)).save(buffer, format="JPEG", quality=90)

    def chunk(chunk_type: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + chunk_type + data + zlib.crc32(chunk_type + data).to_bytes(4, "big")

    side = (40000).to_bytes(4, "big")  # 1.6 gigapixels announced, two rows present
    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", side + side + bytes([8, 0, 0, 0, 0]))
            + chunk(b"IDAT", zlib.compress(b"\0" * 2 * 40001)) + chunk(b"IEND", b""))
    files = {"page.png": b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n",
             "cut.jpg": buffer.getvalue()[:-300], "bomb.png": bomb}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in files}


def start_hub():
    """The tests' Hub stand-in: soak/good (the bundled gaussian) and the hostile repos of HUB_FAILS."""
    sys.path.insert(0, str(ROOT / "tests"))
    from hubserver import MB, HostileHub

    from n2n import hub

    files = {name: (hub.CHECKPOINTS / "gaussian" / name).read_bytes() for name in (hub.CONFIG_NAME, hub.WEIGHTS_NAME)}
    config = json.loads(files[hub.CONFIG_NAME])
    server = HostileHub()
    server.commit("soak/good", files)
    server.commit("soak/million-channels", {**files, hub.CONFIG_NAME: json.dumps(
        config | {"model_args": {"in_channels": 1_000_000, "out_channels": 3}}).encode()})
    server.commit("soak/huge-weights", {hub.CONFIG_NAME: files[hub.CONFIG_NAME]})
    server.sized[("soak/huge-weights", hub.WEIGHTS_NAME)] = 256 * MB
    server.commit("soak/not-json", {**files, hub.CONFIG_NAME: b"{architecture: unet"})
    server.commit("soak/slow", files)
    server.delays[("HEAD", "/soak/slow/")] = server.delays[("GET", "/soak/slow/")] = 8.0  # > the 5 s timeout
    return server


# ----------------------------------------------------------------------------- the server and its sampler


HEAP_KEYS = (("malloc_used_mb", "malloc: in use (MB)"), ("malloc_free_mb", "malloc: free, kept for reuse (MB)"),
             ("python_blocks", "Python: allocated blocks"), ("gc_objects", "Python: objects tracked by gc"))


def start_app(work: Path, hub_url: str, settings: dict[str, str], trace: bool = False) -> tuple[subprocess.Popen, str]:
    """`app.demo` served in its own process (benchmarks/soak_server.py) with its own TMPDIR and HF_HOME, and
    the environment `settings` (the app's N2N_*, or the allocator's MALLOC_*); returns it and its URL. With `trace`, the
    server runs under tracemalloc and writes a snapshot to work/snapshots/ on each SIGUSR1 (`snapshot`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "N2N_", "GRADIO_"))}
    env.update(TMPDIR=str(work / "tmp"), GRADIO_TEMP_DIR=str(work / "tmp" / "gradio"), HF_HOME=str(work / "hf"),
               HF_ENDPOINT=hub_url, HF_HUB_DISABLE_TELEMETRY="1", GRADIO_ANALYTICS_ENABLED="False",
               PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **settings)
    (work / "tmp").mkdir(parents=True)
    with socket.socket() as s:  # a free port: 7860 and up may be another app's
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if trace:
        (work / "snapshots").mkdir()
        env["N2N_SOAK_SNAPSHOTS"] = str(work / "snapshots")
    env["N2N_SOAK_HEAP"] = str(work / "heap.jsonl")
    log = open(work / "server.log", "w")
    command = [sys.executable, "-m", "benchmarks.soak_server", "--port", str(port), "--sample-s", str(SAMPLE_S)]
    proc = subprocess.Popen(command + (["--trace"] if trace else []), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=log, text=True)
    deadline = time.monotonic() + (900 if trace else 300)  # traced, the app (MCP server and all) takes ~5 min to start
    for line in proc.stdout:
        if line.startswith("URL "):
            return proc, line.split()[1]
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise SystemExit(f"error: the app did not start; see {work / 'server.log'}")


def snapshot(proc: subprocess.Popen, work: Path, timeout_s: float = 300.0):
    """The traced server's Python allocations now (a tracemalloc.Snapshot; start_app(..., trace=True))."""
    import tracemalloc

    before = set((work / "snapshots").glob("*.pickle"))
    os.kill(proc.pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        new = set((work / "snapshots").glob("*.pickle")) - before
        if new:
            return tracemalloc.Snapshot.load(str(new.pop()))
        time.sleep(0.5)
    raise TimeoutError("the server wrote no tracemalloc snapshot")


def growth(first, last, top: int = 8) -> dict:
    """Where the traced Python allocations grew from snapshot `first` to `last`: the total (MB), and the
    `top` allocation sites by growth in bytes, then the `top` others by growth in blocks, each with its call
    stack (innermost first: the allocating line, then the callers outside the standard library)."""
    import sysconfig
    import tracemalloc

    ignore = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>"),
              tracemalloc.Filter(False, "*/linecache.py")]  # imports, and source lines cached for tracebacks
    first, last = first.filter_traces(ignore), last.filter_traces(ignore)
    stats = last.compare_to(first, "traceback")
    by_blocks = sorted(stats, key=lambda st: -st.count_diff)
    sites = stats[:top] + [st for st in by_blocks if st not in stats[:top]][:top]
    stdlib = sysconfig.get_paths()["stdlib"]
    stack = lambda st: [f"{Path(f.filename).name}:{f.lineno}" for i, f in enumerate(reversed(st.traceback))  # noqa: E731
                        if i == 0 or not f.filename.startswith(stdlib)][:6]
    mb = lambda s: round(sum(t.size for t in s.traces) / 2**20, 2)  # noqa: E731
    return {"traced_mb_first": mb(first), "traced_mb_last": mb(last),
            "sites": [{"size_diff_mb": round(st.size_diff / 2**20, 3), "count_diff": st.count_diff,
                       "stack": stack(st)} for st in sites]}


def folder_bytes(folder: Path) -> tuple[int, int]:
    """(bytes on disk, files) under folder."""
    total = files = 0
    for parent, _, names in os.walk(folder):  # (os.walk skips a folder removed while it walks)
        for name in names:
            try:
                info = os.lstat(os.path.join(parent, name))
            except OSError:  # removed meanwhile
                continue
            if stat.S_ISREG(info.st_mode):
                total += info.st_blocks * 512
                files += 1
    return total, files


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set in MB: VmHWM of /proc/PID/status, the kernel's high-water mark
    (psutil gives the current RSS only; sampling it would miss the peaks between samples)."""
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.M).group(1)) / 1024


def sample(pid: int, work: Path, start: float, done: int) -> dict:
    process = psutil.Process(pid)
    with process.oneshot():
        rss_mb, open_files, threads = process.memory_info().rss / 2**20, process.num_fds(), process.num_threads()
    tmp, tmp_files = folder_bytes(work / "tmp")
    hf, _ = folder_bytes(work / "hf")
    parts = {}  # the temporary folder by part: Gradio's cache, and each of the app's work folders
    for part in [work / "tmp" / "gradio", *sorted((work / "tmp" / "n2n-app").glob("*"))]:
        parts[str(part.relative_to(work / "tmp"))] = round(folder_bytes(part)[0] / 2**20, 2)
    heap = {}  # the server's own last heap line (benchmarks.soak_server.sample_heap)
    if (work / "heap.jsonl").exists():
        lines = (work / "heap.jsonl").read_text().splitlines()
        heap = json.loads(lines[-1]) if lines else {}
    return heap | {"t_s": round(time.monotonic() - start, 1), "rss_mb": rss_mb, "peak_rss_mb": peak_rss_mb(pid),
                   "tmp_mb": tmp / 2**20, "tmp_files": tmp_files, "hf_cache_mb": hf / 2**20,
                   "open_files": open_files, "threads": threads, "requests_done": done, "tmp_parts_mb": parts}


# ----------------------------------------------------------------------------- visitors


class Visitor:
    """One thread of visits: a gradio_client session, renewed every `renew` requests."""

    def __init__(self, index: int, url: str, inputs: dict, work: Path, seed: int, renew: int = 8,
                 timeout_s: float | None = None):
        self.index, self.url, self.inputs, self.renew, self.timeout_s = index, url, inputs, renew, timeout_s
        self.downloads = work / "client" / str(index)
        self.rng = random.Random(seed * 1000 + index)
        self.client = None
        self.count = 0

    def session(self):
        from gradio_client import Client

        if self.client is None or self.count % self.renew == 0:
            if self.client is not None:
                self.client.close()
            shutil.rmtree(self.downloads, ignore_errors=True)  # the visitor's own copies, not the server's
            self.client = Client(self.url, verbose=False, download_files=str(self.downloads), analytics_enabled=False,
                                 httpx_kwargs=None if self.timeout_s is None else {"timeout": self.timeout_s})
        self.count += 1
        return self.client

    def visit(self, action: str) -> tuple[str, str]:
        """One request of `action`: ("ok" | "refused", detail); raises on anything unexpected."""
        from gradio_client import handle_file
        from gradio_client.exceptions import AppError

        from n2n.io import read_image

        client, rng = self.session(), self.rng
        clean, noisy = rng.choice(self.inputs["pairs"])
        shape = read_image(noisy, dtype=None).shape
        if action in ("hostile_upload", "hub_fails"):
            name = rng.choice(list(HOSTILE_UPLOADS if action == "hostile_upload" else HUB_FAILS))
            try:
                if action == "hostile_upload":
                    client.predict(handle_file(str(self.inputs["hostile"][name])), "gaussian", api_name="/denoise")
                else:
                    client.predict(handle_file(str(noisy)), "gaussian", name, api_name="/denoise")
            except AppError as e:
                message = str(e)
                expected = HOSTILE_UPLOADS[name] if action == "hostile_upload" else HUB_FAILS[name]
                if "\n" in message or not re.search(expected, message):
                    raise AssertionError(f"{name}: unexpected refusal: {message[:300]}") from None
                return "refused", name
            raise AssertionError(f"{name} was not refused")
        if action in ("denoise", "hub_good"):
            hub_id = "soak/good" if action == "hub_good" else ""
            compare = [] if hub_id else ["nlm", "median"]
            _, gallery, table, download, source = client.predict(
                handle_file(str(noisy)), "gaussian", hub_id, compare, handle_file(str(clean)), "gaussian", 25,
                api_name="/denoise")
            if read_image(download, dtype=None).shape != shape:
                raise AssertionError(f"denoised image {read_image(download, dtype=None).shape}, sent {shape}")
            rows = table["data"] if isinstance(table, dict) else table
            if len(rows) != 2 + len(compare) or len(gallery) != 2 + len(compare):
                raise AssertionError(f"{len(rows)} score rows and {len(gallery)} images for {1 + len(compare)} methods")
            if hub_id and "soak/good@main" not in source:
                raise AssertionError(f"source {source[:200]!r}")
            return "ok", ""
        if action == "corrupt":
            noise = rng.choice(["gaussian", "poisson", "text", "bernoulli", "impulse"])
            a, b, psnr_a, psnr_b = client.predict(handle_file(str(clean)), noise, 25, rng.randrange(1000),
                                                  api_name="/corrupt")[:4]
            if read_image(a, dtype=None).shape != shape or read_image(b, dtype=None).shape != shape:
                raise AssertionError("noisy images of the wrong size")
            if not (np.isfinite(psnr_a) and np.isfinite(psnr_b)):
                raise AssertionError(f"PSNR {psnr_a}, {psnr_b}")
            return "ok", noise
        if action == "finetune":
            steps = rng.randint(2, 4)
            files = [handle_file(str(p)) for p, _ in rng.sample(self.inputs["pairs"], 2)]
            *_, status, archive, name = client.submit(files, "gaussian", steps=steps, seed=rng.randrange(1000),
                                                      api_name="/finetune").result(timeout=REQUEST_TIMEOUT_S)
            with zipfile.ZipFile(archive) as z:
                config = json.loads(z.read(f"{name}/config.json"))
            if "finished" not in status or config.get("steps") != steps:
                raise AssertionError(f"fine-tune of {steps} steps: {config.get('steps')} steps, "
                                     f"status {status[-200:]!r}")
            return "ok", f"{steps} steps"
        if action == "adapt":
            outputs = client.predict(handle_file(str(noisy)), "gaussian", ADAPT_S, api_name="/adapt")
            files = [o for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])
                     if isinstance(o, str) and o.endswith(".png")]
            if not files or read_image(files[0], dtype=None).shape != shape:
                raise AssertionError("no adapted PNG of the input's size")
            return "ok", ""
        raise ValueError(action)


def run_visitors(url: str, inputs: dict, work: Path, minutes: float, visitors: int, seed: int, mix: dict,
                 start: float, requests: list[Request], lock: threading.Lock, timeout_s: float | None = None) -> None:
    deadline = start + minutes * 60
    actions, weights = list(mix), list(mix.values())

    def loop(index: int) -> None:
        visitor = Visitor(index, url, inputs, work, seed, timeout_s=timeout_s)
        while time.monotonic() < deadline:
            action = visitor.rng.choices(actions, weights)[0]
            request = Request(action, index, round(time.monotonic() - start, 2))
            with lock:
                requests.append(request)
            began = time.perf_counter()
            try:
                request.outcome, request.detail = visitor.visit(action)
            except Exception as e:  # an error answer, a broken connection, a wrong answer
                first_line = str(e).splitlines()[0][:300] if str(e) else ""
                request.outcome, request.detail = "failed", f"{type(e).__name__}: {first_line}"
            request.seconds = round(time.perf_counter() - began, 3)
            time.sleep(visitor.rng.uniform(0.2, 1.5))  # a visitor looks at the result
        if visitor.client is not None:
            visitor.client.close()

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(visitors)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()) + REQUEST_TIMEOUT_S)  # later: counted as lost


# ----------------------------------------------------------------------------- report


def summarize(requests: list[Request], samples: list[dict], minutes: float, warmup_s: float) -> dict:
    actions = {}
    for action in sorted({r.action for r in requests}):
        mine = [r for r in requests if r.action == action]
        answered = [r.seconds for r in mine if r.outcome in ("ok", "refused")]
        actions[action] = {"sent": len(mine), "ok": sum(r.outcome == "ok" for r in mine),
                       "refused_as_expected": sum(r.outcome == "refused" for r in mine),
                       "failed": sum(r.outcome == "failed" for r in mine),
                       "lost": sum(r.outcome == "lost" for r in mine),
                       "p50_s": float(np.percentile(answered, 50)) if answered else None,
                       "p95_s": float(np.percentile(answered, 95)) if answered else None,
                       "max_s": max(answered, default=None)}
    after = [s for s in samples if s["t_s"] >= warmup_s]

    def trend(key: str) -> dict:
        if len(after) < 2:
            return {}
        t = np.array([s["t_s"] for s in after]) / 60
        v = np.array([s.get(key, np.nan) for s in after])
        if np.isnan(v).any():
            return {}
        return {"at_warmup": round(float(v[0]), 1), "end": round(float(v[-1]), 1), "min": round(float(v.min()), 1),
                "max": round(float(v.max()), 1), "slope_per_min": round(float(np.polyfit(t, v, 1)[0]), 2)}

    failures = {}
    for r in requests:
        if r.outcome in ("failed", "lost"):
            failures[f"{r.action}: {r.detail}"] = failures.get(f"{r.action}: {r.detail}", 0) + 1
    return {"minutes": minutes, "warmup_s": warmup_s, "requests": len(requests),
            "answered": sum(r.outcome in ("ok", "refused") for r in requests),
            "failed": sum(r.outcome == "failed" for r in requests), "lost": sum(r.outcome == "lost" for r in requests),
            "actions": actions, "rss_mb": trend("rss_mb"), "tmp_mb": trend("tmp_mb"), "tmp_files": trend("tmp_files"),
            "hf_cache_mb": trend("hf_cache_mb"), "open_files": trend("open_files"), "threads": trend("threads"),
            **{key: trend(key) for key, _ in HEAP_KEYS},
            "failures": failures}


def plot(samples: list[dict], warmup_s: float, path: Path, title: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -r requirements-dev.txt): no plot", file=sys.stderr)
        return False
    t = [s["t_s"] / 60 for s in samples]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    top.plot(t, [s["rss_mb"] for s in samples], marker=".", label="RSS")
    top.plot(t, [s["peak_rss_mb"] for s in samples], linestyle="--", label="peak RSS")
    top.plot(t, [s.get("malloc_used_mb", np.nan) for s in samples], marker=".", label="in use (malloc)")
    top.plot(t, [s.get("malloc_free_mb", np.nan) for s in samples], marker=".", label="free, kept by malloc")
    top.set_ylabel("server memory (MB)")
    bottom.plot(t, [s["tmp_mb"] for s in samples], marker=".", label="temporary folder (Gradio cache + app work)")
    bottom.plot(t, [s["hf_cache_mb"] for s in samples], marker=".", label="Hugging Face cache")
    bottom.set_ylabel("disk (MB)")
    bottom.set_xlabel("minutes")
    for axis in (top, bottom):
        axis.axvline(warmup_s / 60, color="gray", linewidth=0.8)
        axis.grid(alpha=0.3)
        axis.legend(loc="upper left", fontsize=8)
        axis.set_ylim(bottom=0)
    top.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def markdown(summary: dict, samples: list[dict], args, plotted: bool, stem: str, machine: str) -> str:
    label = f"{args.minutes:g}-minute run" + (
        " (a short check; the issue's soak is 30 minutes: `python -m benchmarks.soak --minutes 30`)"
        if args.minutes < 30 else "")
    lines = [f"# Soak: {label}", "",
             f"`python -m benchmarks.soak --minutes {args.minutes:g} --visitors {args.visitors} --seed {args.seed}"
             + "".join(f" --{k[4:].lower().replace('_', '-')} {v}" for k, v in app_settings(args).items())
             + "".join(f" --server-env {kv}" for kv in args.server_env) + (" --trace" if args.trace else "") + "`, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine}.", "",
             f"{args.visitors} visitors at once, each its own session (renewed every 8 requests), 0.2-1.5 s between "
             f"requests; the server's RSS, open files and disk sampled every {SAMPLE_S:g} s, and its heap by the "
             "server itself (glibc's mallinfo2: the bytes malloc has handed out, and the free ones it keeps for "
             "reuse, resident or, once malloc_trim has handed their pages back, not; the Python allocator's "
             f"blocks and the objects gc tracks); warm-up: the first {summary['warmup_s']:g} s.", "",
             f"**{summary['requests']} requests: {summary['answered']} answered as expected, "
             f"{summary['failed']} failed, "
             f"{summary['lost']} lost.**", "",
             "| action | sent | ok | refused as expected | failed | lost | p50 (s) | p95 (s) | max (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    for action, k in summary["actions"].items():
        lines.append(f"| {action} | {k['sent']} | {k['ok']} | {k['refused_as_expected']} | {k['failed']} | "
                     f"{k['lost']} | {fmt(k['p50_s'])} | {fmt(k['p95_s'])} | {fmt(k['max_s'])} |")
    lines += ["", "After warm-up (first sample after it, last, min, max, least-squares slope per minute):", "",
              "| server | at warm-up | end | min | max | slope / min |", "|---|---|---|---|---|---|"]
    for key, name in (("rss_mb", "RSS (MB)"), *HEAP_KEYS, ("tmp_mb", "temporary folder (MB)"),
                      ("tmp_files", "temporary files"), ("hf_cache_mb", "HF cache (MB)"), ("open_files", "open files"),
                      ("threads", "threads")):
        t = summary.get(key)
        if t:
            lines.append(f"| {name} | {t['at_warmup']} | {t['end']} | {t['min']} | {t['max']} | {t['slope_per_min']} |")
    parts = samples[-1]["tmp_parts_mb"] if samples else {}
    if parts:
        lines += ["", "The temporary folder at the end, by part (MB): "
                  + ", ".join(f"`{name}` {mb:g}" for name, mb in parts.items()) + "."]
    if plotted:
        lines += ["", f"![RSS and disk over time]({stem}.png)"]
    if "python_growth" in summary:
        g = summary["python_growth"]
        lines += ["", "Python allocations (tracemalloc) from the end of the warm-up to the end: "
                  f"{g['traced_mb_first']} -> {g['traced_mb_last']} MB. The sites that grew most in bytes, then in "
                  "blocks:", "",
                  "| MB | blocks | where (innermost first) |", "|---|---|---|"]
        lines += [f"| {site['size_diff_mb']:+.3f} | {site['count_diff']:+d} | {' < '.join(site['stack'])} |"
                  for site in g["sites"]]
    if summary["failures"]:
        lines += ["", "Failures and lost requests:", ""]
        lines += [f"- {n} × {text}" for text, n in summary["failures"].items()]
    lines += ["", "Samples:", "", "| t (s) | RSS (MB) | peak (MB) | malloc in use (MB) | malloc free (MB) | Python "
              "blocks | tmp (MB) | tmp files | HF cache (MB) | open files | threads | requests done |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    heap = lambda s, key, f: format(s[key], f) if key in s else "–"  # noqa: E731
    lines += [f"| {s['t_s']:g} | {s['rss_mb']:.1f} | {s['peak_rss_mb']:.1f} | {heap(s, 'malloc_used_mb', '.1f')} | "
              f"{heap(s, 'malloc_free_mb', '.1f')} | {heap(s, 'python_blocks', 'd')} | {s['tmp_mb']:.2f} | "
              f"{s['tmp_files']} | {s['hf_cache_mb']:.2f} | {s['open_files']} | {s['threads']} | {s['requests_done']} |"
              for s in samples]
    return "\n".join(lines) + "\n"


def server_env(args) -> dict[str, str]:
    """--server-env KEY=VALUE ... as a dict."""
    pairs = [item.split("=", 1) for item in args.server_env]
    if any(len(p) != 2 or not p[0] for p in pairs):
        raise SystemExit(f"error: --server-env takes KEY=VALUE, got {args.server_env}")
    return dict(pairs)


def app_settings(args) -> dict[str, str]:
    """The N2N_* environment the app is started with (--keep-s, --work-mb, --sessions)."""
    settings = {"N2N_KEEP_S": args.keep_s, "N2N_WORK_MB": args.work_mb, "N2N_SESSIONS": args.sessions}
    return {k: f"{v:g}" for k, v in settings.items() if v is not None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--visitors", type=int, default=4, help="visitors at once")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds; default: a quarter of the run, at most 5 min")
    parser.add_argument("--out", default=None,
                        help="report path without extension; default benchmarks/results/soak-Nmin")
    parser.add_argument("--keep-s", type=float, default=None,
                        help="N2N_KEEP_S for the app: seconds visitors' files are kept at most (default: the app's)")
    parser.add_argument("--work-mb", type=float, default=None,
                        help="N2N_WORK_MB for the app: its disk budget for visitors' files (default: the app's)")
    parser.add_argument("--sessions", type=int, default=None,
                        help="N2N_SESSIONS for the app: visitor sessions whose state it keeps (default: the app's, "
                             "1,000; the soak opens about 14 a minute, so a lower one shows the plateau sooner)")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="more environment for the server, e.g. MALLOC_ARENA_MAX=2 (repeatable)")
    parser.add_argument("--trace", action="store_true",
                        help="run the server under tracemalloc and report where its Python allocations grew "
                             "between the end of the warm-up and the end (slower requests)")
    parser.add_argument("--machine", default=f"{os.cpu_count()} CPU cores",
                        help="a word on the machine, for the report")
    args = parser.parse_args(argv)
    stem = Path(args.out) if args.out else RESULTS / f"soak-{args.minutes:g}min"
    stem.parent.mkdir(parents=True, exist_ok=True)
    warmup_s = args.warmup if args.warmup is not None else min(300.0, args.minutes * 60 / 4)

    work = Path(tempfile.mkdtemp(prefix="n2n-soak-"))
    hub_server = start_hub()
    proc = None
    try:
        inputs_dir = work / "inputs"
        inputs_dir.mkdir()
        inputs = {"pairs": photo_crops(inputs_dir, 24, np.random.default_rng(args.seed)),
                  "hostile": hostile_uploads(inputs_dir)}
        proc, url = start_app(work, hub_server.url, app_settings(args) | server_env(args), trace=args.trace)
        from gradio_client import Client

        probe = Client(url, verbose=False, download_files=False)
        endpoints = set(probe.view_api(return_format="dict", print_info=False)["named_endpoints"])
        probe.close()
        mix = {k: w for k, w in MIX.items() if k != "adapt" or "/adapt" in endpoints}
        print(f"app at {url} (pid {proc.pid}); visitors: {args.visitors}; mix: {mix}; {args.minutes:g} min",
              file=sys.stderr)

        if args.trace:  # traced, the server's first requests (lazy imports) are slow: one of each before the clock
            warm = Visitor(-1, url, inputs, work, args.seed, timeout_s=TRACED_TIMEOUT_S)
            for action in mix:
                try:
                    warm.visit(action)
                except Exception as e:
                    print(f"warming the traced server: {action}: {str(e)[:200]}", file=sys.stderr)
            warm.client.close()
        requests: list[Request] = []
        lock = threading.Lock()
        samples: list[dict] = []
        start = time.monotonic()
        stop = threading.Event()
        snapshots = []

        def sampler():
            while True:
                if args.trace and not snapshots and time.monotonic() - start >= warmup_s:
                    snapshots.append(snapshot(proc, work))
                stopped = stop.is_set()  # one last sample once the visitors are done
                with lock:
                    done = sum(r.outcome != "lost" for r in requests)
                samples.append(sample(proc.pid, work, start, done))
                if stopped:
                    break
                stop.wait(SAMPLE_S)

        sampling = threading.Thread(target=sampler, daemon=True)
        sampling.start()
        run_visitors(url, inputs, work, args.minutes, args.visitors, args.seed, mix, start, requests, lock,
                     timeout_s=TRACED_TIMEOUT_S if args.trace else None)
        stop.set()
        sampling.join()
        if args.trace and snapshots:
            snapshots.append(snapshot(proc, work))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        hub_server.close()

    summary = summarize(requests, samples, args.minutes, warmup_s)
    if len(snapshots) == 2:
        summary["python_growth"] = growth(*snapshots)
    title = f"n2n soak: {args.minutes:g} min, {args.visitors} visitors, {summary['requests']} requests"
    plotted = plot(samples, warmup_s, stem.with_suffix(".png"), title)
    stem.with_suffix(".md").write_text(markdown(summary, samples, args, plotted, stem.name, args.machine))
    stem.with_suffix(".json").write_text(json.dumps({"summary": summary, "samples": samples,
                                                     "requests": [asdict(r) for r in requests]}, indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    print(f"{summary['requests']} requests: {summary['answered']} answered, {summary['failed']} failed, "
          f"{summary['lost']} lost; RSS {summary['rss_mb']}; report {stem.with_suffix('.md')}")
    return 0 if summary["failed"] == 0 and summary["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
