"""Packet and drop counters.  Every drop has a reason, and every reason a counter."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from lispd.logfmt import kv


class Counters:
    """Per-role packet/byte counters and per-reason drop counters of one daemon."""

    __slots__ = ("drops", "packets")

    def __init__(self) -> None:
        self.packets: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()

    def drop(self, reason: str) -> None:
        """Count one dropped packet under ``reason``."""
        self.drops[reason] += 1

    def count(self, name: str, nbytes: int) -> None:
        """Count one packet of ``nbytes`` under ``name`` (e.g. "itr.encap")."""
        self.packets[name + ".packets"] += 1
        self.packets[name + ".bytes"] += nbytes

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy: {"packets": {...}, "drops": {...}}."""
        return {
            "packets": dict(sorted(self.packets.items())),
            "drops": dict(sorted(self.drops.items())),
        }


class DropLog:
    """Logs drops on the packet path without flooding: the first drop of each reason at once,
    then at most one line per reason per ``interval`` seconds with the count since the last."""

    __slots__ = ("_last", "_pending", "clock", "interval", "logger")

    def __init__(self, logger: logging.Logger, clock: Callable[[], float], interval: float = 10.0):
        self.logger = logger
        self.clock = clock
        self.interval = interval
        self._last: dict[str, float] = {}
        self._pending: Counter[str] = Counter()

    def note(self, reason: str, source: str = "", port: int | None = None) -> None:
        """Record one drop; maybe log it.  ``port``: the source is ``source:port``, only put
        together when the line is written (drops on the packet path build no text)."""
        self._pending[reason] += 1
        now = self.clock()
        last = self._last.get(reason)
        if last is not None and now - last < self.interval:
            return
        self._last[reason] = now
        count = self._pending.pop(reason)
        if port is not None:
            source = f"{source}:{port}"
        self.logger.info("drop %s", kv(reason=reason, count=count, source=source or None))

    def allow(self, key: str) -> bool:
        """Whether a line about ``key`` may be logged now (at most one per ``interval``)."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        self._last[key] = now
        return True


LAG_THRESHOLDS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0)
"""Seconds of lateness :class:`LoopLag` counts the ticks beyond (also the metric's buckets)."""


class LoopLag:
    """How late the event loop runs a tick due every ``interval`` seconds: its stalls.

    The daemon arms a timer ``interval`` seconds ahead, and the timer notes (:meth:`note`) how
    much later than that it ran.  A callback (or anything else) that holds the loop for ``d``
    seconds makes the tick due during that time late by more than ``d - interval`` and at most
    ``d``: the largest lag seen is the longest stall give or take one ``interval``.  Kept: the
    number of ticks, the sum of their lags, the largest lag since the start and in the recent
    past (this ``window`` of the clock and the one before: 10 to 20 s), and per threshold of
    :data:`LAG_THRESHOLDS` the ticks later than it.  ``now`` is any monotonic clock in
    seconds; nothing here reads it.
    """

    __slots__ = ("_windows", "interval", "largest", "over", "samples", "total", "window")

    def __init__(self, interval: float = 0.01, window: float = 10.0) -> None:
        if not interval > 0 or not window > 0:
            raise ValueError("the lag interval and window must be > 0")
        self.interval = interval
        self.window = window
        self.samples = 0
        self.total = 0.0
        self.largest = 0.0
        self.over = [0] * len(LAG_THRESHOLDS)
        self._windows: tuple[int, float, float] = (0, 0.0, 0.0)  # index, its max, previous max

    def note(self, lag: float, now: float) -> None:
        """A tick ran ``lag`` seconds late (a negative lag, early by the timer's rounding,
        counts as 0) at ``now``."""
        lag = max(0.0, lag)
        self.samples += 1
        self.total += lag
        self.largest = max(self.largest, lag)
        for k, threshold in enumerate(LAG_THRESHOLDS):
            if lag <= threshold:
                break
            self.over[k] += 1
        index, current, previous = self._windows
        this = int(now // self.window)
        if this == index:
            self._windows = (index, max(current, lag), previous)
        else:
            self._windows = (this, lag, current if this == index + 1 else 0.0)

    def recent_max(self, now: float) -> float:
        """The largest lag in this window of the clock and the one before (the last 10-20 s
        with the default window)."""
        index, current, previous = self._windows
        this = int(now // self.window)
        if this == index:
            return max(current, previous)
        return current if this == index + 1 else 0.0

    def snapshot(self, now: float) -> dict[str, float | int]:
        """JSON-ready figures for ``show stats`` (milliseconds, rounded to 0.1 ms)."""
        out: dict[str, float | int] = {
            "interval-ms": round(self.interval * 1000, 1),
            "ticks": self.samples,
            "lag-sum-ms": round(self.total * 1000, 1),
            "lag-max-ms": round(self.largest * 1000, 1),
            "lag-recent-max-ms": round(self.recent_max(now) * 1000, 1),
        }
        for threshold, count in zip(LAG_THRESHOLDS, self.over, strict=True):
            out[f"lag-over-{threshold * 1000:g}ms"] = count
        return out
