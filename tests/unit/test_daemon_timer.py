"""The daemon's one timer (armed at its node's next deadline) on uvloop, without sockets: a
deadline that is due now must not break the next re-arm."""

from __future__ import annotations

import asyncio
from ipaddress import ip_network

import pytest

from lispd.config import parse_config
from lispd.daemon import Daemon
from lispd.mapcache import MapCacheEntry, RlocEntry
from tests.unit.socketless import xtr_config

uvloop = pytest.importorskip("uvloop")

CONFIG = xtr_config()


def test_rearming_while_a_due_timer_is_pending() -> None:
    """Regression (found by benchmarks/soak.py): uvloop's ``call_at`` returns a plain
    ``Handle`` without ``when()`` for a deadline due within the millisecond, so the next
    ``_arm_timer`` raised AttributeError: ~1200 packets and Map-Replies counted as
    ``internal-error`` (and an ERROR traceback every 10 s) in a 10-minute map-cache churn,
    whenever a packet missed while expired entries were due."""
    now = 100.0
    d = Daemon(parse_config(CONFIG), clock=lambda: now)
    rloc = RlocEntry(ip_network("192.0.2.6/32").network_address, 1, 100)
    due = MapCacheEntry(
        0, ip_network("2001:db8:100:2:1::1/128"), (rloc,), "encapsulate", ttl=60, created=40.0
    )
    assert due.expires == now
    d.node.mapcache.add(due)

    async def run() -> None:
        d._arm_timer()  # due now: uvloop hands back a Handle, not a TimerHandle
        d._arm_timer()  # a packet missing meanwhile re-arms: must not raise
        d._arm_timer()
        await asyncio.sleep(0.05)  # the timer runs: the entry expires, the timer is re-armed
        assert d.node.mapcache.get(0, due.prefix) is None
        assert d._timer is not None and d._timer.when() > asyncio.get_running_loop().time()
        d._timer.cancel()

    uvloop.run(run())
    assert "internal-error" not in d.node.counters.drops
