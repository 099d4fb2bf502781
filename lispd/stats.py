"""Packet and drop counters.  Every drop has a reason, and every reason a counter."""

from __future__ import annotations

from collections import Counter
from typing import Any


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
