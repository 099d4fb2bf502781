"""What runs beside the node on the daemon's loop: systemd's ``STATUS=`` and ``WATCHDOG=1``,
the tick that measures the loop's own stalls, and the garbage collector's freeze.

A million map-cache entries are several million objects the cyclic garbage collector tracks;
a full collection walks all of them (about 1.5 s at a million entries, on the loop).  None of
them needs the collector: entries, records and bindings are freed by reference counting when
they leave their tables.  So every ``FREEZE_INTERVAL`` seconds the young generations are
collected and what survived is frozen (:func:`gc.freeze`): full collections then walk only what
was made since.  The price: a reference cycle among objects older than that interval that
later becomes garbage is never collected; lispd's long-lived state makes none.

Neither decides anything for the router: the status line is a view of the node, the lag is
the loop's (``stats`` -> ``loop``, :class:`lispd.stats.LoopLag`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

from lispd.io.notify import sd_notify, watchdog_interval
from lispd.logfmt import kv
from lispd.stats import LoopLag

log = logging.getLogger("lispd.daemon")

STATUS_INTERVAL = 10.0  # seconds between STATUS= updates to systemd (when changed)
LAG_INTERVAL = 0.01  # seconds between two ticks measuring the loop's lag (its stalls)
FREEZE_INTERVAL = 1.0  # seconds between two freezes of the collector's survivors


class Heartbeat:
    """The status/watchdog tick and the lag tick of one daemon."""

    def __init__(self, status: Callable[[], str]) -> None:
        """``status``: the one-line summary systemd shows (called at every status tick)."""
        self.status = status
        self.lag = LoopLag(LAG_INTERVAL)
        self._watchdog: float | None = None  # seconds between WATCHDOG=1, when systemd asks
        self._last_status = ""
        self._status_handle: asyncio.TimerHandle | None = None
        self._lag_handle: asyncio.TimerHandle | None = None
        self._lag_due = 0.0  # time.monotonic() when the lag tick should run
        self._freeze_handle: asyncio.TimerHandle | None = None
        self.freezes = 0  # how many times the survivors were frozen

    def ready(self) -> None:
        """Tell systemd we are ready (with the status line), then start both ticks."""
        summary = self.status()
        sd_notify(f"READY=1\nSTATUS={summary}")
        self._last_status = summary
        self._watchdog = watchdog_interval()
        if self._watchdog is not None:
            log.info("systemd watchdog %s", kv(ping_interval=round(self._watchdog, 1)))
        loop = asyncio.get_running_loop()
        self._status_handle = loop.call_later(self._status_interval(), self._status_tick)
        self.lag_tick(first=True)
        self.freeze_tick()

    def lag_tick(self, first: bool = False) -> None:
        """Note how late this tick runs, and arm the next one ``LAG_INTERVAL`` seconds
        ahead."""
        now = time.monotonic()
        if not first:
            self.lag.note(now - self._lag_due, now)
        self._lag_due = now + LAG_INTERVAL
        self._lag_handle = asyncio.get_running_loop().call_later(LAG_INTERVAL, self.lag_tick)

    def freeze_tick(self) -> None:
        """Collect the young generations, freeze what survived (see the module's docstring),
        and arm the next freeze ``FREEZE_INTERVAL`` seconds ahead."""
        gc.collect(1)
        gc.freeze()
        self.freezes += 1
        loop = asyncio.get_running_loop()
        self._freeze_handle = loop.call_later(FREEZE_INTERVAL, self.freeze_tick)

    def gc_snapshot(self) -> dict[str, int]:
        """The collector's figures for ``stats``: freezes, full collections.  (Not the count
        of frozen objects: :func:`gc.get_freeze_count` walks them all, 40 ms at 300,000
        entries.)"""
        return {
            "freezes": self.freezes,
            "full-collections": gc.get_stats()[2]["collections"],
        }

    def _status_interval(self) -> float:
        return min(self._watchdog or STATUS_INTERVAL, STATUS_INTERVAL)

    def _status_tick(self) -> None:
        """Tell systemd we are alive (``WATCHDOG=1``, when it asked: a stalled loop misses it
        and gets restarted) and, when it changed, what we are doing (``STATUS=``)."""
        status = self.status()
        lines = ["WATCHDOG=1"] if self._watchdog is not None else []
        if status != self._last_status:
            lines.append(f"STATUS={status}")
            self._last_status = status
        if lines:
            sd_notify("\n".join(lines))
        loop = asyncio.get_running_loop()
        self._status_handle = loop.call_later(self._status_interval(), self._status_tick)

    def stop(self) -> None:
        """Cancel the ticks."""
        for handle in (self._status_handle, self._lag_handle, self._freeze_handle):
            if handle is not None:
                handle.cancel()
        self._status_handle = self._lag_handle = self._freeze_handle = None
