"""The event loop's lag (its stalls): :class:`lispd.stats.LoopLag` on a fake clock, the
daemon's tick on a real loop, and how ``show stats`` and ``/metrics`` show them."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from lispd.api.metrics import MetricsSnapshot, render_metrics
from lispd.cli.lispctl import format_stats
from lispd.config import parse_config
from lispd.daemon import Daemon
from lispd.heartbeat import LAG_INTERVAL
from lispd.stats import LAG_THRESHOLDS, LoopLag
from tests.unit.socketless import xtr_config


def test_lag_counts_thresholds_largest_and_the_recent_window() -> None:
    lag = LoopLag(interval=0.01, window=10.0)
    lag.note(0.001, 1.0)
    lag.note(-0.0005, 2.0)  # early by the timer's rounding: 0
    lag.note(0.03, 3.0)  # over 5, 10 and 20 ms
    assert lag.recent_max(3.0) == 0.03
    lag.note(0.002, 12.0)  # the next window: the previous one still counts
    assert lag.recent_max(12.0) == 0.03
    lag.note(0.004, 21.0)  # two windows on: 3.0's lag is history
    assert lag.recent_max(21.0) == 0.004
    assert lag.recent_max(35.0) == 0.004  # the window before this one
    assert lag.recent_max(45.0) == 0.0  # nothing noted in this window nor the one before
    snap = lag.snapshot(21.0)
    assert snap["ticks"] == 5 and snap["lag-max-ms"] == 30.0
    assert snap["lag-recent-max-ms"] == 4.0 and snap["lag-sum-ms"] == 37.0
    assert snap["lag-over-5ms"] == snap["lag-over-10ms"] == snap["lag-over-20ms"] == 1
    assert snap["lag-over-50ms"] == snap["lag-over-1000ms"] == 0
    assert [k for k in snap if k.startswith("lag-over-")] == [
        f"lag-over-{t * 1000:g}ms" for t in LAG_THRESHOLDS
    ]


def test_lag_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        LoopLag(interval=0)
    with pytest.raises(ValueError):
        LoopLag(window=-1)


def test_the_daemon_ticks_and_sees_a_callback_that_holds_the_loop() -> None:
    """A callback sleeping 60 ms on the loop makes the next tick that late (give or take a
    tick): ``stats`` shows it, and ``show stats`` and the metrics too."""
    d = Daemon(parse_config(xtr_config()))

    async def run() -> None:
        d.heartbeat.lag_tick(first=True)
        await asyncio.sleep(5 * LAG_INTERVAL)
        asyncio.get_running_loop().call_soon(time.sleep, 0.06)
        await asyncio.sleep(8 * LAG_INTERVAL)
        d.heartbeat.stop()

    asyncio.run(run())
    loop = d.stats()["loop"]
    assert loop["ticks"] >= 5
    assert 60 - 1000 * LAG_INTERVAL - 2 <= loop["lag-max-ms"] <= 1000
    assert loop["lag-recent-max-ms"] == loop["lag-max-ms"]
    assert loop["lag-over-20ms"] >= 1 and loop["lag-over-1000ms"] == 0
    text = format_stats(d.stats())
    assert f"Event loop: lag max {loop['lag-max-ms']} ms since start" in text
    assert f"{loop['lag-over-20ms']} of {loop['ticks']} ticks (every 10.0 ms) over 20 ms" in text
    page = render_metrics(
        lambda: MetricsSnapshot(name="n", version="v", stats=d.stats(), now=0.0)
    ).decode()
    assert f'lispd_event_loop_lag_seconds_bucket{{le="+Inf"}} {loop["ticks"]}.0' in page
    over20 = loop["ticks"] - loop["lag-over-20ms"]
    assert f'lispd_event_loop_lag_seconds_bucket{{le="0.02"}} {over20}.0' in page
    assert "lispd_event_loop_lag_recent_max_seconds " in page


def test_no_ticks_no_loop_lines() -> None:
    assert "Event loop" not in format_stats({"packets": {}, "drops": {}, "loop": {"ticks": 0}})


def test_the_collectors_survivors_are_frozen_out_of_its_full_passes() -> None:
    """The freeze tick collects the young generations and freezes the rest, so a full
    collection no longer walks a million map-cache entries; stats and ``show stats`` say so."""
    d = Daemon(parse_config(xtr_config()))
    survivors = [[object()] for _ in range(1000)]  # tracked objects alive across the freeze

    async def run() -> None:
        d.heartbeat.freeze_tick()
        d.heartbeat.stop()

    try:
        asyncio.run(run())
        assert gc.get_freeze_count() >= len(survivors)
        snap = d.stats()["gc"]
        assert snap["freezes"] == 1 and "frozen-objects" not in snap  # a count walks them
        assert snap["full-collections"] == gc.get_stats()[2]["collections"]
        text = format_stats({**d.stats(), "loop": {"ticks": 1}})
        assert "Garbage collector: survivors frozen 1 times" in text
    finally:
        gc.unfreeze()
