"""Where does the served app's RSS grow? The same requests (corrupt + denoise, 96x128) from one session, then
from a new session each, twice; RSS of the server before and after each phase.

    python -m benchmarks.session_probe [N]     # N pairs per phase (default 150)
"""
import re
import sys
import tempfile
import time
from pathlib import Path
import numpy as np
from benchmarks.soak import start_app
from gradio_client import Client, handle_file
from n2n.io import write_image

def rss(pid):
    return int(re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M).group(1)) / 1024

work = Path(tempfile.mkdtemp(prefix="probe-"))
proc, url = start_app(work, "http://127.0.0.1:9", {})
img = work / "in.png"
write_image(img, np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8))
one = Client(url, verbose=False)
for _ in range(30):  # warm-up
    one.predict(handle_file(str(img)), "gaussian", 25, 0, api_name="/corrupt")
    one.predict(handle_file(str(img)), "gaussian", api_name="/denoise")
n = int(sys.argv[1]) if len(sys.argv) > 1 else 150
for phase in ("one session", "a new session each", "one session", "a new session each"):
    before = rss(proc.pid)
    t = time.monotonic()
    for i in range(n):
        c = one if phase == "one session" else Client(url, verbose=False)
        c.predict(handle_file(str(img)), "gaussian", 25, 0, api_name="/corrupt")
        c.predict(handle_file(str(img)), "gaussian", api_name="/denoise")
        if c is not one:
            c.close()
    print(f"{phase}: {n} x (corrupt + denoise) in {time.monotonic() - t:.0f} s: "
          f"RSS {before:.0f} -> {rss(proc.pid):.0f} MB"
          f" ({(rss(proc.pid) - before) * 1024 / n:+.0f} kB per pair)", flush=True)
proc.kill()
