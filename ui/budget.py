"""A fair share of the one fine-tuning slot (SECURITY.md): Fine-tune and Adapt run one at a time for all
visitors together, so each visitor session may hold the slot for N2N_SLOT_S seconds (default 900, 15 min)
in any hour. A use counts from when it ends for an hour; past the share, a call is refused with one
sentence that says when the visitor can go on, and a run under way stops when the share runs out.
"""
from __future__ import annotations

import os
import threading
import time

from ui.common import UserError

SLOT_S = float(os.environ.get("N2N_SLOT_S", 900))  # seconds of the slot per visitor session per hour
WINDOW_S = 3600.0
MIN_RUN_S = 5.0  # a call with less left than this is refused: it could not take a step on 2 cores


def minutes(seconds: float) -> str:
    """`seconds` for a visitor: '40 s', '12 min'."""
    return f"{max(1, round(seconds))} s" if seconds < 120 else f"{round(seconds / 60)} min"


class Budget:
    """Seconds of the slot used per key (a visitor session) over a sliding window; times are time.time()."""

    def __init__(self, seconds: float, window_s: float = WINDOW_S):
        self.seconds, self.window_s = float(seconds), float(window_s)
        self._uses: dict[str, list[tuple[float, float]]] = {}  # key -> [(end time, seconds held)]
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[tuple[float, float]]:
        uses = [u for u in self._uses.get(key, []) if u[0] > now - self.window_s]
        if uses:
            self._uses[key] = uses
        else:
            self._uses.pop(key, None)  # the dict holds only sessions with a use in the last hour
        return uses

    def left(self, key: str, now: float | None = None) -> float:
        """Seconds of the share that `key` may use now (0 when spent)."""
        now = time.time() if now is None else now
        with self._lock:
            return max(0.0, self.seconds - sum(s for _, s in self._recent(key, now)))

    def wait_s(self, key: str, wanted: float, now: float | None = None) -> float:
        """Seconds until `key` has `wanted` seconds left (0: now), as its oldest uses leave the window."""
        now = time.time() if now is None else now
        wanted = min(wanted, self.seconds)
        with self._lock:
            uses = sorted(self._recent(key, now))
        left, at = self.seconds - sum(s for _, s in uses), now
        for end, held in uses:  # oldest first: each frees its seconds an hour after it ended
            if left >= wanted:
                break
            left, at = left + held, end + self.window_s
        return max(0.0, at - now)

    def charge(self, key: str, seconds: float, now: float | None = None) -> None:
        """Count `seconds` of the slot held by `key`, ending `now`."""
        now = time.time() if now is None else now
        with self._lock:
            self._uses.setdefault(key, []).append((now, max(0.0, float(seconds))))

    def check(self, key: str, wanted: float = MIN_RUN_S, what: str = "fine-tuning", now: float | None = None) -> float:
        """The seconds `key` may use, at least `wanted`; else a UserError that says when it can go on."""
        left = self.left(key, now)
        if left >= min(wanted, self.seconds):
            return left
        share = f"{minutes(self.seconds)} of fine-tuning and adapting per hour for each visitor"
        wait = minutes(self.wait_s(key, wanted, now))
        if left >= MIN_RUN_S:
            raise UserError(f"{what[0].upper()}{what[1:]} for {minutes(wanted)} needs more than the {minutes(left)} "
                            f"left of your share ({share}, on one slot shared by everyone): ask for {int(left)} s "
                            f"or less, or wait {wait} for the full time.")
        raise UserError(f"Your share of the fine-tuning slot is used up ({share}, on one slot shared by everyone): "
                        f"you can go on in {wait}.")


SLOT = Budget(SLOT_S)
