"""RLOC probing through real namespaces: failover to the next priority and back, RTTs and
underlay hop counts.

lispd.lab.two_site_topology (A - xTR1 - R - xTR2 - B, dual-stack underlay): each xTR maps the
other site to two RLOCs, the IPv4 one at priority 1 and the IPv6 one at priority 2.  Probing
every 0.5 s: when R drops everything to xTR2's IPv4 RLOC, xTR1 must stop using it within three
probe intervals and carry the traffic over IPv6; when the path comes back, so does the traffic.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lispd.api.client import request
from lispd.lab import Lab, TwoSitePlan, two_site_topology
from lispd.wire.data import decapsulate
from lispd.wire.errors import WireError
from tests.netns import common

pytestmark = pytest.mark.netns

INTERVAL = 0.5


@contextlib.contextmanager
def probing_lab() -> Iterator[tuple[Lab, TwoSitePlan, str]]:
    plan = two_site_topology()
    with Lab(plan.topology) as lab:
        socks = [str(lab.workdir / f"xtr{n}.sock") for n in (1, 2)]
        daemons = [
            lab.start_lispd(
                node,
                common.two_site_failover_config(plan, n, socks[n - 1], (INTERVAL, INTERVAL, 2)),
            )
            for n, node in ((1, plan.xtr1), (2, plan.xtr2))
        ]
        try:
            yield lab, plan, socks[0]
        finally:
            for daemon in daemons:
                assert daemon.stop() == 0, daemon.log_tail()


def rloc_states(sock: str) -> dict[str, dict[str, Any]]:
    return {row["rloc"]: row for row in request(sock, "rlocs")}


def wait_state(sock: str, rloc: str, state: str, timeout: float) -> float:
    """Seconds until ``rloc`` shows ``state`` in xTR1's probing table."""
    start = time.monotonic()
    while rloc_states(sock).get(rloc, {}).get("state") != state:
        assert time.monotonic() - start < timeout, f"{rloc} never became {state}"
        time.sleep(0.05)
    return time.monotonic() - start


def underlay_of_echoes(lab: Lab, plan: TwoSitePlan) -> set[str]:
    """The outer destinations of xTR1's encapsulated pings to B, seen on R."""
    with lab.capture(plan.r, lab.iface(plan.r, plan.xtr1).name, "udp port 4341") as cap:
        assert lab.ping(plan.host_a, plan.host_b_v4, count=3, wait=2.0)
    out = set()
    for ip in cap.ip_packets():
        try:
            encap = decapsulate(ip)
        except (ValueError, WireError):
            continue
        if str(encap.outer.src) in (plan.xtr1_rloc_v4, plan.xtr1_rloc_v6):
            out.add(str(encap.outer.dst))
    return out


def test_failover_to_the_next_priority_within_three_probe_intervals_and_back() -> None:
    with probing_lab() as (lab, plan, sock1):
        v4, v6 = plan.xtr2_rloc_v4, plan.xtr2_rloc_v6
        wait_state(sock1, v4, "up", 5.0)
        wait_state(sock1, v6, "up", 5.0)
        time.sleep(3 * INTERVAL)  # three probes each: full RTT and hop history
        states = rloc_states(sock1)
        for rloc in (v4, v6):
            # One router (R) between the xTRs in each direction.
            assert states[rloc]["hops"][:3] == ["1/1", "1/1", "1/1"], states[rloc]
            assert len(states[rloc]["rtts"]) == 3 and all(0 < r < 1 for r in states[rloc]["rtts"])
        assert underlay_of_echoes(lab, plan) == {v4}

        lab.run(plan.r, "nft", "-f", "-", input=(
            "table ip cut {\n  chain cutter {\n    type filter hook forward priority 0;\n"
            f"    ip daddr {v4} drop\n  }}\n}}\n"
        ))  # fmt: skip
        took = wait_state(sock1, v4, "down", 10.0)
        assert took <= 3 * INTERVAL + 0.5, f"down after {took:.2f} s"
        assert underlay_of_echoes(lab, plan) == {v6}

        lab.run(plan.r, "nft", "delete", "table", "ip", "cut")
        took = wait_state(sock1, v4, "up", 10.0)
        assert took <= 3 * INTERVAL + 0.5, f"up after {took:.2f} s"
        assert underlay_of_echoes(lab, plan) == {v4}
        stats = request(sock1, "map-cache")
        entry = next(e for e in stats if e["eid-prefix"] == plan.site_b_prefix_v4)
        assert [r["up"] for r in entry["rlocs"]] == [True, True]
