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
