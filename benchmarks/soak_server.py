"""The app as benchmarks.soak serves it: `app.demo` in a process of its own, its heap sampled from inside.

    python -m benchmarks.soak_server --port P [--sample-s 10] [--trace]

Every --sample-s seconds a JSON line goes to the file $N2N_SOAK_HEAP: the C heap's bytes in use and free
(glibc's mallinfo2, in MB), Python's allocated blocks and the objects gc tracks. With --trace the process runs
under tracemalloc (12 frames), started before the app is imported, and each SIGUSR1 dumps a snapshot into the
folder $N2N_SOAK_SNAPSHOTS (NNN.pickle, written whole then renamed). Prints "URL <url>" once serving, then
serves until killed.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import signal
import sys
import threading
import time
import tracemalloc


class Mallinfo2(ctypes.Structure):
    """glibc's struct mallinfo2 (every field a size_t)."""

    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                    "fsmblks", "uordblks", "fordblks", "keepcost")]


def sample_heap(path: str, every_s: float) -> None:
    """Append one heap line to `path` every `every_s` seconds, forever (a daemon thread's loop)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Mallinfo2
    while True:
        m = libc.mallinfo2()
        with open(path, "a") as f:
            f.write(json.dumps({"malloc_used_mb": (m.uordblks + m.hblkhd) / 2**20,
                                "malloc_free_mb": m.fordblks / 2**20, "python_blocks": sys.getallocatedblocks(),
                                "gc_objects": len(gc.get_objects())}) + "\n")
        time.sleep(every_s)


def dump_snapshot(*_) -> None:
    """SIGUSR1: tracemalloc's snapshot into $N2N_SOAK_SNAPSHOTS, numbered."""
    folder = os.environ["N2N_SOAK_SNAPSHOTS"]
    path = os.path.join(folder, f"{len(os.listdir(folder))}")
    tracemalloc.take_snapshot().dump(path + ".part")
    os.rename(path + ".part", path + ".pickle")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--trace", action="store_true")
    args = parser.parse_args(argv)
    threading.Thread(target=sample_heap, args=(os.environ["N2N_SOAK_HEAP"], args.sample_s), daemon=True).start()
    if args.trace:
        tracemalloc.start(12)
        signal.signal(signal.SIGUSR1, dump_snapshot)
    import app  # after tracemalloc started: the app's own allocations are traced from its first import

    _, url, _ = app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=args.port,
                                quiet=True, **app.LAUNCH_KWARGS)
    print("URL", url, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
