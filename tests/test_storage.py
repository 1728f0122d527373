"""Issue 14: the app's files on disk and its memory stay bounded. `ui.common.prune` (from `workdir`) ages out call
and run folders and keeps WORK under a size budget, oldest first, never a folder a call may still be using; a
visitor whose fine-tuned model was cleared is told so in one sentence; `release_memory` (also from `workdir`)
returns the C heap's freed pages to the system."""
from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ui import common, registry


def folder(root, name, mb, age_s):
    """A folder of `mb` MB last touched `age_s` seconds ago."""
    path = root / name
    path.mkdir(parents=True)
    (path / "weights.bin").write_bytes(bytes(int(mb * 2**20)))
    stamp = time.time() - age_s
    for p in (path / "weights.bin", path):
        os.utime(p, (stamp, stamp))
    return path


@pytest.fixture
def work(monkeypatch, tmp_path):
    monkeypatch.setattr(common, "WORK", tmp_path / "n2n-app")  # as in a fresh app: the first workdir of an area prunes
    return tmp_path / "n2n-app"


def test_old_folders_age_out_by_area(work, monkeypatch):
    monkeypatch.setattr(common, "KEEP_S", 24 * 3600)
    stale_call = folder(work / "calls", "stale", 0.1, 4 * 3600)
    fresh_call = folder(work / "calls", "fresh", 0.1, 2 * 3600)
    run = folder(work / "runs", "run", 0.1, 4 * 3600)  # runs are kept longer: another area
    new = common.workdir("calls")  # the first call of an area prunes it
    assert new.is_dir() and new.parent == work / "calls"
    assert not stale_call.exists() and fresh_call.exists() and run.exists()
    common.prune("runs", max_age_s=24 * 3600)
    assert run.exists()
    monkeypatch.setattr(common, "KEEP_S", 3600)  # N2N_KEEP_S caps every area
    common.prune("runs", max_age_s=24 * 3600)
    assert not run.exists() and fresh_call.exists()


def test_the_budget_removes_the_oldest_first_never_a_recent_one(work, monkeypatch):
    monkeypatch.setattr(common, "WORK_BUDGET_MB", 5)
    monkeypatch.setattr(common, "MIN_KEEP_S", 600)
    examples = work / "examples"
    examples.mkdir(parents=True)
    (examples / "astronaut.png").write_bytes(bytes(3 * 2**20))  # not the visitors' files: never counted
    oldest = folder(work / "runs", "oldest", 2, 3000)
    older = folder(work / "calls", "older", 2, 2000)
    old = folder(work / "calls", "old", 2, 1000)
    recent = [folder(work / "runs", f"recent{i}", 2, 90 - 10 * i) for i in range(3)]  # recent0 the oldest
    common.prune("calls", 3 * 3600)
    # 12 MB over a 5 MB budget: every folder older than MIN_KEEP_S goes, oldest first; the recent stay
    assert not oldest.exists() and not older.exists() and not old.exists()
    assert all(r.exists() for r in recent) and (examples / "astronaut.png").exists()
    monkeypatch.setattr(common, "MIN_KEEP_S", 0)
    common.prune("calls", 3 * 3600)
    left = sorted(p.name for p in (work / "runs").iterdir())
    assert left == ["recent1", "recent2"], left  # down to the budget (4 of 5 MB), the newest kept


def test_a_cleared_finetuned_model_is_explained(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.FINETUNED, "mine-123456", tmp_path / "gone")
    with pytest.raises(common.UserError, match=r"Your model 'mine-123456' was cleared from this server to make "
                                               r"room \(visitors' files are kept for 24 h at most"):
        registry.load("mine-123456")


def test_the_served_app_keeps_a_bounded_number_of_visitor_sessions(server, tmp_path, monkeypatch):
    """Each visitor session's state costs the server memory (about 250 kB measured); the app launches with
    Gradio keeping at most app.SESSIONS_KEPT of them, the oldest dropped first."""
    import numpy as np
    from gradio_client import Client, handle_file

    import app
    from n2n.io import write_image

    demo, url = server
    assert demo.state_holder.capacity == app.SESSIONS_KEPT <= 1000
    monkeypatch.setattr(demo.state_holder, "capacity", 2)  # the same eviction, at a size a test can reach
    image = tmp_path / "in.png"
    write_image(image, np.full((16, 16, 3), 128, np.uint8))
    for _ in range(4):  # four visitors, one after the other
        visitor = Client(url, verbose=False)
        visitor.predict(handle_file(str(image)), "gaussian", 25, 0, api_name="/corrupt")
        visitor.close()
    assert len(demo.state_holder.session_data) <= 2


def test_n2n_sessions_lowers_the_kept_sessions_and_bad_values_are_refused():
    import app

    assert app.sessions_kept(None) == app.sessions_kept(" ") == 1000
    assert app.sessions_kept("150") == 150
    assert app.sessions_kept("50000") == 1000  # lowers only: 1,000 sessions is about 250 MB
    for bad, why in (("lots", "whole number"), ("0", "at least 1"), ("-3", "at least 1")):
        with pytest.raises(SystemExit, match=why):
            app.sessions_kept(bad)


def test_workdir_prunes_an_area_at_most_every_prune_every_s(work, monkeypatch):
    """Pruning walks every file under WORK, so calls do not each pay for it: a stale folder made
    right after a prune survives the next calls until PRUNE_EVERY_S has passed."""
    common.workdir("calls")
    stale = folder(work / "calls", "stale", 0.1, 4 * 3600)
    common.workdir("calls")
    assert stale.exists()
    monkeypatch.setattr(common, "PRUNE_EVERY_S", 0.0)
    common.workdir("calls")
    assert not stale.exists()


def rss_mb() -> float:
    return int(re.search(r"^VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1)) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc (Linux)")
def test_release_memory_returns_a_worker_threads_freed_buffers_to_the_system():
    """As in a Gradio worker thread: 2,000 image buffers of 96 kB (under malloc's mmap threshold, so
    from the thread's heap), one in ten kept, the rest freed; the freed ~170 MB stay resident until
    release_memory hands them back."""
    kept = []

    def call():
        buffers = [np.ones(96 * 1024 // 8) for _ in range(2000)]
        kept.extend(buffers[::10])  # what outlives the call pins the heap: freeing the rest cannot shrink it

    worker = threading.Thread(target=call)
    worker.start()
    worker.join()
    before = rss_mb()
    if not common.release_memory():
        pytest.skip("the C library has no malloc_trim (not glibc)")
    after = rss_mb()
    assert before - after > 100, f"RSS {before:.0f} -> {after:.0f} MB: the freed buffers were not handed back"
    assert sum(b.sum() for b in kept) == 200 * 96 * 1024 // 8  # the kept ones are intact


def test_the_finetuned_names_remembered_are_bounded(monkeypatch, tmp_path):
    """A server that runs for weeks forgets the oldest fine-tuned names past FINETUNED_KEPT (their folders went long
    before: KEEP_S); the newest stay their owner's."""
    monkeypatch.setattr(registry, "FINETUNED", {})
    monkeypatch.setattr(registry, "FINETUNED_KEPT", 3)
    for i in range(5):
        registry.add_finetuned(f"finetuned-{i}", tmp_path / str(i), None)
    assert list(registry.FINETUNED) == ["finetuned-2", "finetuned-3", "finetuned-4"]
    assert registry.owns("finetuned-4", None) and not registry.owns("finetuned-0", None)


def test_a_sessions_models_are_listed_to_it_alone(tmp_path):
    """ui.registry is the one list of a visitor's models: the model lists each session sees come from it."""
    import gradio as gr

    mine, theirs = gr.Request(session_hash="mine-1"), gr.Request(session_hash="theirs-1")
    registry.add_finetuned("finetuned-test-aaaaaa", tmp_path, mine)
    registry.add_finetuned("adapted-test-bbbbbb", tmp_path, mine)
    assert registry.session_models(mine)[-2:] == ["finetuned-test-aaaaaa", "adapted-test-bbbbbb"]
    assert not {"finetuned-test-aaaaaa", "adapted-test-bbbbbb"} & set(registry.model_names(theirs))
    assert registry.model_names(mine)[-2:] == ["finetuned-test-aaaaaa", "adapted-test-bbbbbb"]
    assert "finetuned-test-aaaaaa" not in registry.model_names()  # a call without a session sees none
    assert ("n2n · adapted-test-bbbbbb", "adapted-test-bbbbbb") in registry.compare_choices(mine)
