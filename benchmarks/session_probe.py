"""Where does the served app's RSS grow? The same requests (corrupt + denoise, 96x128) from one session,
then from a new session each, twice; the server's RSS before and after each phase.

    python -m benchmarks.session_probe [N]     # N pairs per phase (default 150)
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from gradio_client import Client, handle_file

from benchmarks.soak import proc_status, start_app
from n2n.io import write_image


def main(n: int = 150) -> None:
    work = Path(tempfile.mkdtemp(prefix="probe-"))
    proc, url = start_app(work, "http://127.0.0.1:9", {})  # no Hub needed
    rss = lambda: proc_status(proc.pid)[1]["VmRSS"]  # noqa: E731
    image = work / "in.png"
    write_image(image, np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8))
    one = Client(url, verbose=False)
    try:
        for _ in range(30):  # warm-up
            one.predict(handle_file(str(image)), "gaussian", 25, 0, api_name="/corrupt")
            one.predict(handle_file(str(image)), "gaussian", api_name="/denoise")
        for phase in ("one session", "a new session each") * 2:
            before, start = rss(), time.monotonic()
            for _ in range(n):
                client = one if phase == "one session" else Client(url, verbose=False)
                client.predict(handle_file(str(image)), "gaussian", 25, 0, api_name="/corrupt")
                client.predict(handle_file(str(image)), "gaussian", api_name="/denoise")
                if client is not one:
                    client.close()
            after = rss()
            print(f"{phase}: {n} x (corrupt + denoise) in {time.monotonic() - start:.0f} s: RSS {before:.0f} -> "
                  f"{after:.0f} MB ({(after - before) * 1024 / n:+.0f} kB per pair)", flush=True)
    finally:
        proc.kill()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 150)
