"""The soak harness (benchmarks/soak.py) in its quick mode: 30 s of map-cache churn and a steady
flow through two lispd xTRs and a fake Map-Resolver.

What it checks is that the harness works, not the 10-minute verdict: thousands of churn entries
installed through real Map-Requests and Map-Replies (and the churn traffic delivered to all
those EIDs), the steady flow lossless in both families, RSS figures for both daemons.  No entry
can expire within 30 s (1 minute is the smallest TTL), so expiry is left to the long runs.
"""

from __future__ import annotations

import argparse
import time

import pytest

from benchmarks import soak

pytestmark = [pytest.mark.netns, pytest.mark.solo]  # measures: nothing else may run beside it


def test_quick_soak_churns_and_keeps_the_steady_flow() -> None:
    eids = 3000
    args = argparse.Namespace(
        minutes=0.5,
        eids=eids,
        rate=200.0,
        interval=0.05,
        sample_every=0.0,
        rss_growth_pct=10.0,
        rss_growth_mb=5.0,
        json=None,
    )
    started = time.monotonic()
    result = soak.run_soak(args)
    elapsed = time.monotonic() - started
    assert elapsed < 60, f"the quick mode took {elapsed:.0f} s"
    assert result["failures"] == [], result["failures"]

    xtr1, xtr2 = result["daemons"]["xtr1"], result["daemons"]["xtr2"]
    # Every churn EID was resolved and installed as its own /128 at the ITR ...
    assert xtr1["churn_installed"] >= eids
    assert xtr1["map_cache_max"] >= eids
    assert result["fake_mr"]["answered"][f"{soak.CHURN_RANGE}=192.0.2.6/host"] >= eids
    # ... and the churn traffic reached h2 through the ETR, to every one of them.
    assert result["sink"]["sink_distinct"] == eids
    assert result["sink"]["sink"] >= result["churn"]["sent"] * 0.99
    # The steady flow: sent for the whole run, every datagram echoed back.
    for family in ("v4", "v6"):
        flow = result["steady"][family]
        assert flow["sent"] >= 500, flow
        assert flow["received"] == flow["sent"] and flow["lost"] == 0, flow
    # RSS figures for both daemons, from samples before and during the traffic.
    for d in (xtr1, xtr2):
        assert 10 < d["rss_start_mb"] <= d["rss_max_mb"]
        assert 10 < d["rss_end_mb"] <= d["rss_max_mb"]
        assert d["rss_before_traffic_mb"] > 10
    assert len(result["samples"]) >= 6
    assert not result["rss_checked"]  # 30 s: the map-cache is still filling
