"""A fair share of the fine-tuning slot (issue 26, item 5; SECURITY.md): each visitor session may hold the
slot that Fine-tune and Adapt share for ui.budget.SLOT_S seconds per hour. Past it a call is refused with one
sentence saying when to go on, a run under way stops when the share runs out, and other sessions are not
touched. The bookkeeping on explicit times first, then the real app driven by gradio_client."""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file

from helpers import refusal
from n2n.io import write_image

from ui import budget
from ui.common import UserError


def test_uses_count_for_an_hour_after_they_end_and_say_when_to_go_on():
    share = budget.Budget(600)
    share.charge("a", 400, now=1000.0)
    share.charge("a", 150, now=2000.0)
    assert share.left("a", now=2000.0) == 50 and share.left("b", now=2000.0) == 600  # per session
    assert share.wait_s("a", 50, now=2000.0) == 0
    assert share.wait_s("a", 100, now=2000.0) == 1000 + 3600 - 2000  # when the first use leaves the window
    assert share.wait_s("a", 500, now=2000.0) == 2000 + 3600 - 2000  # both must leave
    with pytest.raises(UserError) as err:
        share.check("a", 100, "adapting", now=2000.0)
    assert err.value.message == ("Adapting for 100 s needs more than the 50 s left of your share (10 min of "
                                 "fine-tuning and adapting per hour for each visitor, on one slot shared by "
                                 "everyone): ask for 50 s or less, or wait 43 min for the full time.")
    share.charge("a", 48, now=2000.0)
    with pytest.raises(UserError) as err:
        share.check("a", now=2000.0)
    assert err.value.message.startswith("Your share of the fine-tuning slot is used up") and \
        err.value.message.endswith("you can go on in 43 min.")
    assert share.check("a", 100, now=4601.0) == 600 - 150 - 48  # the first use has left the window
    assert share.left("a", now=5601.0) == 600


@pytest.fixture
def images(tmp_path) -> list:
    rng = np.random.default_rng(0)
    return [handle_file(str(write_image(tmp_path / f"{i}.png", rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))))
            for i in range(2)]


def test_a_run_stops_when_the_share_runs_out_and_the_next_call_is_refused(server, images, monkeypatch):
    monkeypatch.setattr(budget, "SLOT", budget.Budget(15))
    visitor, stranger = Client(server[1], verbose=False), Client(server[1], verbose=False)
    *_, status, download, name = visitor.predict(images, "gaussian", "synthetic", steps=2000, init="tiny",
                                                 api_name="/finetune")
    assert "**stopped: your share of the slot (15 s per hour) ran out**" in status and name and download
    steps = int(re.search(r"step (\d+) / 2000", status).group(1))
    assert 1 <= steps < 2000
    for call in (lambda: visitor.predict(images, "gaussian", "synthetic", steps=5, init="tiny", api_name="/finetune"),
                 lambda: visitor.predict(images[0], "tiny", 5, api_name="/adapt")):
        assert re.fullmatch(r"Your share of the fine-tuning slot is used up \(15 s of fine-tuning and adapting per "
                            r"hour for each visitor, on one slot shared by everyone\): you can go on in (59|60) min\.",
                            refusal(call))
    *_, status, _, _ = stranger.predict(images, "gaussian", "synthetic", steps=2, init="tiny", api_name="/finetune")
    assert "**finished**" in status  # another session's share is its own
    visitor.close()
    stranger.close()


def test_adapt_asks_for_no_more_than_is_left(server, images, monkeypatch):
    monkeypatch.setattr(budget, "SLOT", budget.Budget(12))
    visitor = Client(server[1], verbose=False)
    budget.SLOT.charge(visitor.session_hash, 5)
    message = refusal(lambda: visitor.predict(images[0], "tiny", 10, api_name="/adapt"))
    assert message.startswith("Adapting for 10 s needs more than the 7 s left of your share") and \
        message.endswith("ask for 7 s or less, or wait 60 min for the full time."), message
    start = time.monotonic()
    download, *_ = visitor.predict(images[0], "tiny", 5, api_name="/adapt")
    elapsed = time.monotonic() - start
    assert Path(download).is_file()
    charged = 7 - budget.SLOT.left(visitor.session_hash)
    assert 1 < charged <= elapsed, (charged, elapsed)  # the whole call held the slot (training stops near 5 s)
    visitor.close()
