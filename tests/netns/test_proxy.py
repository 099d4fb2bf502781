"""Interworking with non-LISP space through real namespaces: PITR and PETR (RFC 6832).

lispd.lab.proxy_topology (the seed "LISP - Proxy xTR" lab): two lispd xTR sites, one lispd node
that is Map-Server + Map-Resolver + PITR + PETR, and an "outside world" that knows nothing of
LISP.  The xTRs resolve everything through the Map-Resolver; non-EID destinations come back as
native-forward, which they send to the PETR; the outside world reaches the EIDs through the
PITR, which attracts the EID space.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from lispd.api.client import request
from lispd.lab import Lab, ProxyPlan, SiteHandle, proxy_topology
from lispd.wire.data import decapsulate
from lispd.wire.ip import parse_ip_header
from tests import configs
from tests.netns import common
from tests.netns.common import wait_for

pytestmark = pytest.mark.netns

KEYS = {1: "key-one", 2: "key-two"}


def xtr_config(plan: ProxyPlan, site: SiteHandle, sock: str, petrs: list[str]) -> str:
    return common.xtr_config(
        site,
        sock,
        plan.pxtr_rloc,
        KEYS[site.index],
        probing={"interval": 0.5, "timeout": 0.5, "down-after": 2},
        petr=configs.addresses(*petrs),
    )


def pxtr_config(plan: ProxyPlan, sock: str) -> str:
    return common.ms_config(
        "pxtr",
        plan.pxtr_rloc,
        sock,
        plan.sites,
        KEYS,
        roles=("map-server", "map-resolver", "pitr", "petr"),
        map_resolver=configs.addresses(plan.pxtr_rloc),
        map_cache=[configs.resolve(plan.eid_space_v4), configs.resolve(plan.eid_space_v6)],
        mapping_system={"negative-ttl": 1},
    )


@dataclass
class World:
    lab: Lab
    plan: ProxyPlan

    def sock(self, node: str) -> str:
        return str(self.lab.workdir / f"{node}.sock")

    def ask(self, node: str, command: str) -> Any:
        return request(self.sock(node), command)


@contextlib.contextmanager
def world(petrs: list[str] | None = None) -> Iterator[World]:
    plan = proxy_topology()
    with Lab(plan.topology) as lab:
        lab.run(plan.outside, "ip", "addr", "add", f"{plan.outside_v4}/32", "dev", "lo")
        lab.run(plan.outside, "ip", "addr", "add", f"{plan.outside_v6}/128", "dev", "lo")
        w = World(lab, plan)
        daemons = [lab.start_lispd(plan.pxtr, pxtr_config(plan, w.sock(plan.pxtr)))]
        for site in plan.sites:
            config = xtr_config(plan, site, w.sock(site.xtr), petrs or [plan.pxtr_rloc])
            daemons.append(lab.start_lispd(site.xtr, config))
        wait_for("sites to register", lambda: len(w.ask(plan.pxtr, "site")) >= 4)
        try:
            yield w
        finally:
            for daemon in daemons:
                assert daemon.stop() == 0, daemon.log_tail()


def test_sites_and_outside_world_reach_each_other_through_the_proxies() -> None:
    with world() as w:
        plan, lab = w.plan, w.lab
        h1 = plan.sites[0]
        with lab.capture(h1.xtr, "to-r", "udp port 4341") as cap:
            for dst in (plan.outside_v4, plan.outside_v6):
                assert lab.ping(h1.host, dst, count=2, wait=3.0), f"{h1.host} -> {dst}"
            for dst in (h1.host_v4, h1.host_v6):
                assert lab.ping(plan.outside, dst, count=2, wait=3.0), f"outside -> {dst}"
        common.transfer(lab, h1.host, plan.outside, plan.outside_v4)
        common.transfer(lab, plan.outside, h1.host, h1.host_v6)

        legs = set()
        for pkt in cap.ip_packets():
            encap = decapsulate(pkt)
            inner, _, _ = parse_ip_header(encap.inner)
            legs.add((str(encap.outer.src), str(encap.outer.dst), str(inner.src), str(inner.dst)))
        # EID -> outside: encapsulated by xtr1 to the PETR; outside -> EID: by the PITR.
        assert (h1.rloc, plan.pxtr_rloc, h1.host_v4, plan.outside_v4) in legs
        assert (h1.rloc, plan.pxtr_rloc, h1.host_v6, plan.outside_v6) in legs
        assert (plan.pxtr_rloc, h1.rloc, plan.outside_v4, h1.host_v4) in legs
        assert (plan.pxtr_rloc, h1.rloc, plan.outside_v6, h1.host_v6) in legs

        negative = {
            e["eid-prefix"]: e
            for e in w.ask(h1.xtr, "map-cache")
            if e["action"] == "native-forward"
        }
        assert "200.0.0.0/5" in negative and negative["200.0.0.0/5"]["ttl"] == 60
        # The PxTR's traffic is all proxy traffic, counted under its own names (not as well
        # under etr.decap / itr.encap: it has no EIDs of its own).
        pxtr_stats = w.ask(plan.pxtr, "stats")["packets"]
        assert pxtr_stats["petr.decap.packets"] > 100 and pxtr_stats["pitr.encap.packets"] > 100
        assert "etr.decap.packets" not in pxtr_stats and "itr.encap.packets" not in pxtr_stats

        # That the negative entry expires after its minute and the next packet resolves again
        # is tests/sim/test_petr.py's (on a fake clock; it waited out the minute here).


def test_a_dead_petr_is_skipped() -> None:
    with world(petrs=["192.0.2.99", "192.0.2.14"]) as w:
        plan, lab = w.plan, w.lab
        h1 = plan.sites[0]
        deadline = time.monotonic() + 10
        while True:
            states = {r["rloc"]: r for r in w.ask(h1.xtr, "rlocs")}
            if states.get("192.0.2.99", {}).get("up") is False:
                break
            assert time.monotonic() < deadline, states
            time.sleep(0.2)
        assert states["192.0.2.14"]["up"] is True
        for sport_flows in range(3):  # flows hash over both PETRs; all must work now
            assert lab.ping(h1.host, plan.outside_v4, count=3, wait=3.0), sport_flows
        common.transfer(lab, h1.host, plan.outside, plan.outside_v4)
        assert w.ask(h1.xtr, "stats")["drops"].get("no-live-petr", 0) == 0
