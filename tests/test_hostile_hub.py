"""Issue 14: hostile Hub repos and hand-made checkpoint folders are refused before they cost memory.

A visitor can type any Hub repo id into the app. `HostileHub` (tests/hubserver.py: the tests' FakeHub,
extended) serves repos whose config.json asks for absurd models or is no JSON at all, whose weights
or config are far too large (files known only by their size: nothing that large is ever held here),
and repos that answer slowly. Each is loaded in a fresh process whose peak RSS is reset before every
load (`/proc/self/clear_refs`) and read after it (VmHWM): a refusal must cost less than REFUSAL_MB.
The server's request log shows what was never downloaded.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import ROOT, photo, plain_image, refusal
from n2n import hub, hub_remote
from n2n.hub import CheckpointError
from hubserver import MB, HostileHub, close_client, point_client_at, same_weights

REFUSAL_MB = 4  # a refusal may cost this much peak RSS; one real load of the tiny U-Net costs about 8 MB


def _config(ckpt_files, **changes) -> bytes:
    config = json.loads(ckpt_files[hub.CONFIG_NAME])
    config.update(changes)
    return json.dumps(config).encode()


# repo (or folder) name -> (what its config.json says, the refusal expected)
HOSTILE = {
    "huge-weights": (None, r"model\.safetensors is 256 MB, over the 16 MB limit for models served here"),
    "million-channels": ({"model_args": {"in_channels": 1_000_000, "out_channels": 3}},
                         r"in_channels=1000000 is refused; the unet architecture takes in_channels from 1 to 4"),
    "wide-srresnet": ({"architecture": "srresnet", "model_args": {"features": 256, "blocks": 64}},
                      r"a srresnet with .* would hold 290 MB of weights, over the 16 MB limit"),
    "unknown-argument": ({"model_args": {"in_channels": 3, "features": 4096}},
                         r"the unet architecture takes no argument 'features' \(it takes in_channels, out_channels\)"),
    "unknown-architecture": ({"architecture": "transformer"},
                             r"unknown architecture 'transformer'; n2n knows unet, srresnet, zsn2n"),
    "unknown-noise": ({"noise": "laser"}, r"unknown noise 'laser'; n2n knows gaussian"),
    "not-json": (b"{architecture: unet, model_args: {in_channels: 3", r"config\.json is not valid JSON \(Expecting"),
    "json-list": (b"[1, 2, 3]", r"config\.json is not an n2n checkpoint config"),
    "huge-config": (None, r"config\.json is (64 MB|larger than 256 kB), far more than an n2n config needs"),
}


@pytest.fixture
def hostile_hub(monkeypatch, tmp_path, ckpt_files):
    """A HostileHub serving hostile/good (the tiny checkpoint), hostile/NAME for each of HOSTILE, and
    hostile/slow (the tiny checkpoint, every answer 3 s late)."""
    server = HostileHub()
    server.commit("hostile/good", ckpt_files)
    for name, (config, _) in HOSTILE.items():
        files = dict(ckpt_files)
        if isinstance(config, dict):
            files[hub.CONFIG_NAME] = _config(ckpt_files, **config)
        elif isinstance(config, bytes):
            files[hub.CONFIG_NAME] = config
        server.commit(f"hostile/{name}", files)
    server.sized[("hostile/huge-weights", hub.WEIGHTS_NAME)] = 256 * MB
    server.sized[("hostile/huge-config", hub.CONFIG_NAME)] = 64 * MB
    server.commit("hostile/slow", {f"gaussian/{k}": v for k, v in ckpt_files.items()})
    server.delays[("HEAD", "/hostile/slow/")] = server.delays[("GET", "/hostile/slow/")] = 3.0
    point_client_at(monkeypatch, server.url, tmp_path / "hf" / "hub")
    yield server
    server.close()
    close_client()


def hand_made_folders(root: Path, ckpt_files) -> dict[str, Path]:
    """Checkpoint folders made by hand, each as hostile as a HOSTILE repo of the same name."""
    folders = {}
    for name, (config, _) in HOSTILE.items():
        folder = root / name
        folder.mkdir(parents=True)
        data = config if isinstance(config, bytes) else _config(ckpt_files, **(config or {}))
        (folder / hub.CONFIG_NAME).write_bytes(data)
        (folder / hub.WEIGHTS_NAME).write_bytes(ckpt_files[hub.WEIGHTS_NAME])
        folders[name] = folder
    with open(folders["huge-weights"] / hub.WEIGHTS_NAME, "r+b") as f:
        f.truncate(256 * MB)  # sparse: it takes no disk here, but reading it would take 256 MB of memory
    (folders["huge-config"] / hub.CONFIG_NAME).unlink()
    (folders["huge-config"] / hub.CONFIG_NAME).symlink_to("/dev/zero")  # endless: only a bounded read survives it
    return folders


# Runs in a fresh process: loads each reference with n2n.load_model and reports what it cost.
PROBE = r"""
import json, re, sys, time
import n2n

def status(key):
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024

report = []
for ref in json.loads(sys.argv[1]):
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak RSS (VmHWM) starts again from the current RSS
    before, start = status("VmRSS"), time.monotonic()
    try:
        model = n2n.load_model(ref)
        outcome, message = "loaded", ""
    except n2n.hub.CheckpointError as e:
        outcome, message = "refused", str(e)
    report.append({"ref": ref, "outcome": outcome, "message": message, "seconds": time.monotonic() - start,
                   "peak_growth": status("VmHWM") - before})
print(json.dumps(report))
"""


def test_hostile_repos_and_folders_are_refused_before_they_cost_memory(hostile_hub, ckpt_files, tmp_path):
    folders = hand_made_folders(tmp_path / "folders", ckpt_files)
    refs = ["hostile/good", "hostile/good"]  # the first warms up the client; the second shows what a load costs
    refs += [f"hostile/{name}" for name in HOSTILE] + ["hostile/slow:gaussian"]
    refs += [str(folders[name]) for name in HOSTILE]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "N2N_"))}
    env.update(HF_ENDPOINT=hostile_hub.url, HF_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_ETAG_TIMEOUT="1", OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", PROBE, json.dumps(refs)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.splitlines()[-1])
    print("\n".join(f"{r['ref'].replace(str(tmp_path), '<tmp>'):40} {r['outcome']:8} peak RSS "
                    f"+{r['peak_growth'] / MB:6.2f} MB  {r['seconds']:5.2f} s  {r['message'][:90]}" for r in report))

    good = report[1]
    assert good["outcome"] == "loaded" and good["peak_growth"] > REFUSAL_MB * MB  # the meter sees a real load
    refused = report[2:]
    expected = [HOSTILE[name][1] for name in HOSTILE] + [r"cannot reach the Hub and nothing is cached for "
                                                         r"hostile/slow@main:gaussian \(ReadTimeout"]
    expected += [HOSTILE[name][1] for name in HOSTILE]
    for entry, pattern in zip(refused, expected, strict=True):
        assert entry["outcome"] == "refused", entry
        assert re.search(pattern, entry["message"]), entry
        assert "\n" not in entry["message"], entry
        assert entry["peak_growth"] < REFUSAL_MB * MB, entry
        if not entry["ref"].startswith("/"):  # a Hub repo: named as such, never by its path in the cache
            assert f"{entry['ref'].split(':')[0]}@main" in entry["message"], entry
            assert str(tmp_path) not in entry["message"], entry
    assert report[2 + len(HOSTILE)]["seconds"] < 3  # the slow repo: given up after HF_HUB_ETAG_TIMEOUT (1 s)

    # Nothing of a refused repo was downloaded but its config.json, and the oversized config not even that;
    # the weights were not even asked about, but for the oversized ones: one HEAD for their size.
    for name in HOSTILE:
        mine = [r for r in hostile_hub.log if r["path"].startswith(f"/hostile/{name}/")]
        assert all(r["path"].endswith(hub.CONFIG_NAME) for r in mine if r["method"] == "GET"), name
        weights = [r["method"] for r in mine if r["path"].endswith(hub.WEIGHTS_NAME)]
        assert weights == (["HEAD"] if name == "huge-weights" else []), (name, weights)
    assert not hostile_hub.requests("GET", "/hostile/huge-config/")
    weights_gets = [r["path"] for r in hostile_hub.requests("GET", hub.WEIGHTS_NAME)]
    assert weights_gets and all(p.startswith("/hostile/good/") for p in weights_gets), weights_gets


@pytest.mark.parametrize("slow", ["metadata", "download"])
def test_slow_hub_times_out_then_the_bundled_copy_serves(hostile_hub, bundled, monkeypatch, slow):
    """N2N_HUB_REPO on a Hub that answers slowly: within the timeouts set in n2n.hub_remote, the bundled
    copy serves and says why; without a bundled copy, a clear refusal."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_ETAG_TIMEOUT", raising=False)
    monkeypatch.delenv("HF_HUB_DOWNLOAD_TIMEOUT", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", constants.HF_HUB_DOWNLOAD_TIMEOUT)  # restored after
    monkeypatch.setattr(hub_remote, "METADATA_TIMEOUT_S", 0.5)
    monkeypatch.setattr(hub_remote, "DOWNLOAD_TIMEOUT_S", 0.5)
    hostile_hub.delays.clear()
    if slow == "metadata":  # every answer late
        hostile_hub.delays[("HEAD", "/hostile/slow/")] = hostile_hub.delays[("GET", "/hostile/slow/")] = 3.0
    else:  # the weights' bytes late; everything else on time
        hostile_hub.delays[("GET", f"/gaussian/{hub.WEIGHTS_NAME}")] = 3.0
    monkeypatch.setenv(hub.HUB_REPO_ENV, "hostile/slow")

    start = time.monotonic()
    loaded = hub.resolve("gaussian")
    seconds = time.monotonic() - start
    assert loaded.fallback.startswith("Hub unreachable: ") and "ReadTimeout" in loaded.fallback, loaded.fallback
    assert loaded.source.startswith("bundled:gaussian (Hub unreachable: ")
    assert same_weights(loaded.model, hub.load_dir(bundled / "gaussian").model)
    # metadata: one HEAD that timed out, nothing else; download: huggingface_hub resumes 5 times, 1 s apart
    assert seconds < (2 if slow == "metadata" else 12), seconds
    if slow == "metadata":
        assert [r["method"] for r in hostile_hub.log] == ["HEAD"]
        start = time.monotonic()
        with pytest.raises(CheckpointError, match=r"^no model 'poisson': Hub unreachable \(cannot reach the Hub "
                                                  r"and nothing is cached for hostile/slow@main:poisson"):
            hub.resolve("poisson")  # not bundled: a clear refusal, as quickly
        assert time.monotonic() - start < 2
    else:
        assert 2 <= len(hostile_hub.requests("GET", f"/gaussian/{hub.WEIGHTS_NAME}")) <= 6


def test_cli_refuses_a_hand_made_folder_in_one_line(ckpt_files, tmp_path):
    from n2n.io import write_image

    folders = hand_made_folders(tmp_path / "folders", ckpt_files)
    write_image(tmp_path / "in.png", np.rint(photo(32) * 255).astype(np.uint8))
    for name in ("million-channels", "huge-weights"):
        run = subprocess.run([sys.executable, "-m", "n2n", "denoise", str(tmp_path / "in.png"), "-o",
                              str(tmp_path / "out.png"), "--model", str(folders[name])],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
        errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(f"error: {folders[name]}: "), run.stderr
        assert re.search(HOSTILE[name][1], errors[0]), errors[0]
        assert not (tmp_path / "out.png").exists()


def test_app_refuses_hostile_hub_ids_in_one_plain_line(hostile_hub, client, tmp_path):
    """What a visitor sees in the Denoise tab: one line naming the repo and what is wrong with it."""
    from gradio_client import handle_file

    image = handle_file(str(plain_image(tmp_path)))
    for name in ("huge-weights", "million-channels", "not-json"):
        message = refusal(lambda: client.predict(image, "tiny", f"hostile/{name}", api_name="/denoise"))
        assert message.startswith(f"Cannot load 'hostile/{name}': Hub checkpoint hostile/{name}@main: "), message
        assert re.search(HOSTILE[name][1], message), message
        assert str(tmp_path) not in message, message  # not the Hub cache's path
    *_, source = client.predict(image, "tiny", "hostile/good", api_name="/denoise")  # and it still serves
    assert "hostile/good@main" in source, source
    assert not hostile_hub.requests("GET", f"/hostile/huge-weights/resolve/main/{hub.WEIGHTS_NAME}")


def test_slow_hub_load_delays_no_one_else(hostile_hub, bundled, fresh_models, monkeypatch):
    """The app's model cache: while one visitor's Hub repo downloads slowly, another visitor's denoise
    with a bundled model is not kept waiting, and two visitors asking for the slow repo share one download."""
    from concurrent.futures import ThreadPoolExecutor

    from ui import registry

    monkeypatch.delenv(hub.HUB_REPO_ENV, raising=False)
    hostile_hub.delays.clear()
    hostile_hub.delays[("GET", f"/gaussian/{hub.WEIGHTS_NAME}")] = 3.0  # within the download timeout (10 s)
    with ThreadPoolExecutor(2) as pool:
        slow = [pool.submit(registry.load, "hostile/slow:gaussian") for _ in range(2)]
        time.sleep(0.5)  # both are waiting on the Hub
        quick = registry.load("gaussian")
        assert not any(f.done() for f in slow), "the bundled model waited for the slow Hub download"
        first, second = (f.result(timeout=30) for f in slow)
    assert first is second
    assert len(hostile_hub.requests("GET", f"/gaussian/{hub.WEIGHTS_NAME}")) == 1
    assert same_weights(quick.model, hub.load_dir(bundled / "gaussian").model)
    assert same_weights(first.model, quick.model)  # hostile/slow holds the same tiny checkpoint
