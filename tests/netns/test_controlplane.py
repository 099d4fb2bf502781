"""The control plane through real namespaces: three lispd xTRs and one lispd MS/MR.

lispd.lab.mapping_system_topology (the seed "IPv6 over IPv4 transition" lab): sites h1-xtr1,
h2-xtr2, h3-xtr3 and an MS/MR around a core router, IPv4 underlay, IPv4 and IPv6 EIDs.  The
ITRs know nothing but "resolve everything through the Map-Resolver" (send-map-request for
0.0.0.0/0 and ::/0); the ETRs register with the Map-Server.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from lispd.api.client import request
from lispd.lab import DaemonHandle, Lab, MappingSystemPlan, SiteHandle, mapping_system_topology
from tests import configs
from tests.netns import common
from tests.netns.common import wait_for

pytestmark = pytest.mark.netns

KEYS = {1: "key-one", 2: "key-two", 3: "key-three"}


def xtr_doc(
    plan: MappingSystemPlan,
    site: SiteHandle,
    sock: str,
    *,
    key: str | None = None,
    priority: int = 1,
    interval: int = 60,
    record_ttl: int = 1440,
) -> configs.Doc:
    return common.xtr_doc(
        site,
        sock,
        plan.msmr_rloc,
        key or KEYS[site.index],
        rloc={"address": site.rloc, "priority": priority},
        registration={"interval": interval, "record-ttl": record_ttl},
    )


def xtr_config(
    plan: MappingSystemPlan,
    site: SiteHandle,
    sock: str,
    *,
    key: str | None = None,
    priority: int = 1,
    interval: int = 60,
    record_ttl: int = 1440,
) -> str:
    return configs.toml(
        xtr_doc(
            plan, site, sock, key=key, priority=priority, interval=interval, record_ttl=record_ttl
        )
    )


def msmr_config(plan: MappingSystemPlan, sock: str, timeout: int = 180) -> str:
    return common.ms_config(
        "msmr",
        plan.msmr_rloc,
        sock,
        plan.sites,
        KEYS,
        mapping_system={"registration-timeout": timeout},
    )


@dataclass
class Network:
    lab: Lab
    plan: MappingSystemPlan
    daemons: dict[str, DaemonHandle]

    def sock(self, node: str) -> str:
        return str(self.lab.workdir / f"{node}.sock")

    def ask(self, node: str, command: str) -> Any:
        return request(self.sock(node), command)

    def start_xtr(self, site: SiteHandle, **kw: Any) -> DaemonHandle:
        config = xtr_config(self.plan, site, self.sock(site.xtr), **kw)
        self.daemons[site.xtr] = self.lab.start_lispd(site.xtr, config)
        return self.daemons[site.xtr]

    def stop(self, node: str) -> None:
        daemon = self.daemons.pop(node)
        assert daemon.stop() == 0, daemon.log_tail()


@contextlib.contextmanager
def network(
    timeout: int = 180, interval: int = 60, xtr_options: dict[int, dict[str, Any]] | None = None
) -> Iterator[Network]:
    xtr_options = xtr_options or {}
    plan = mapping_system_topology()
    with Lab(plan.topology) as lab:
        net = Network(lab, plan, {})
        net.daemons["msmr"] = lab.start_lispd(
            plan.msmr, msmr_config(plan, net.sock("msmr"), timeout)
        )
        for site in plan.sites:
            net.start_xtr(site, interval=interval, **xtr_options.get(site.index, {}))
        try:
            yield net
        finally:
            for node in list(net.daemons):
                net.stop(node)


def registered(net: Network) -> set[str]:
    return {r["eid-prefix"] for r in net.ask("msmr", "site")}


def all_prefixes(plan: MappingSystemPlan) -> set[str]:
    return {p for s in plan.sites for p in (s.prefix_v4, s.prefix_v6)}


def test_three_sites_register_and_reach_each_other_without_losing_the_first_ping() -> None:
    with network() as net:
        plan = net.plan
        wait_for("every site registered", lambda: registered(net) == all_prefixes(plan))
        for entry in net.ask("msmr", "site"):
            assert entry["rlocs"] and entry["site"].startswith("site")
        for site in plan.sites:
            status = net.ask(site.xtr, "registrations")
            assert status and all(s["acknowledged"] for s in status), status
        # Cold caches everywhere: every first ping must come back (held during resolution).
        for src in plan.sites:
            for dst in plan.sites:
                if src is dst:
                    continue
                for addr in (dst.host_v4, dst.host_v6):
                    assert net.lab.ping(src.host, addr, count=1, wait=3.0), (
                        f"first ping {src.host} -> {addr} lost"
                    )
        cache = net.ask("xtr1", "map-cache")
        learned = {e["eid-prefix"]: e for e in cache if e["source"] == "map-reply"}
        for dst in plan.sites[1:]:
            for prefix in (dst.prefix_v4, dst.prefix_v6):
                assert prefix in learned, cache  # the registered prefix, not a host route
                assert learned[prefix]["rlocs"][0]["address"] == dst.rloc
        stats = net.ask("xtr1", "stats")
        assert stats["packets"]["itr.held.packets"] >= 4
        assert "resolve-queue-full" not in stats["drops"]


def test_wrong_key_is_refused_and_counted() -> None:
    with network() as net:
        plan = net.plan
        site3 = plan.sites[2]
        wait_for("sites registered", lambda: len(registered(net)) == 6)
        net.stop(site3.xtr)
        net.start_xtr(site3, key="not-the-key")
        wait_for(
            "auth failure counted",
            lambda: net.ask("msmr", "stats")["drops"].get("register-auth-failed", 0) >= 1,
        )
        time.sleep(0.5)
        regs = [r for r in net.ask("msmr", "site") if r["site"] == "site3"]
        # Registered before with the right key; the bad registrations changed nothing.
        assert all(r["registered-by"].startswith(site3.rloc) for r in regs)
        status = net.ask(site3.xtr, "registrations")
        assert not any(s["acknowledged"] for s in status)


def test_registration_expires_and_requests_then_get_negative_replies() -> None:
    with network(timeout=3, interval=1) as net:
        plan = net.plan
        site1, site3 = plan.sites[0], plan.sites[2]
        wait_for("sites registered", lambda: len(registered(net)) == 6)
        net.stop(site3.xtr)
        wait_for("site3 expired", lambda: site3.prefix_v4 not in registered(net), timeout=10)
        assert not net.lab.ping(site1.host, site3.host_v4, count=1, wait=1.0)
        cache = {e["eid-prefix"]: e for e in net.ask(site1.xtr, "map-cache")}
        entry = cache[site3.prefix_v4]
        assert entry["rlocs"] == [] and entry["action"] != "encapsulate", entry


def test_outside_destination_gets_native_forward_negative_entry() -> None:
    with network() as net:
        plan = net.plan
        site1 = plan.sites[0]
        wait_for("sites registered", lambda: len(registered(net)) == 6)
        assert not net.lab.ping(site1.host, plan.outside_v4, count=1, wait=1.0)
        negative = [
            e
            for e in net.ask(site1.xtr, "map-cache")
            if e["source"] == "map-reply" and e["action"] == "native-forward"
        ]
        assert negative, net.ask(site1.xtr, "map-cache")
        # The largest prefix holding 203.0.113.5 and no registered EID-prefix: 200.0.0.0/5.
        assert [e["eid-prefix"] for e in negative] == ["200.0.0.0/5"]


def test_rloc_priority_change_triggers_smr_and_the_itr_follows() -> None:
    with network() as net:
        plan = net.plan
        site1, site2 = plan.sites[0], plan.sites[1]
        wait_for("sites registered", lambda: len(registered(net)) == 6)
        assert net.lab.ping(site1.host, site2.host_v4, count=2)

        def priority_at_xtr1() -> int | None:
            for e in net.ask(site1.xtr, "map-cache"):
                if e["eid-prefix"] == site2.prefix_v4 and e["rlocs"]:
                    return e["rlocs"][0]["priority"]
            return None

        assert priority_at_xtr1() == 1
        daemon = net.daemons[site2.xtr]
        daemon.config_path.write_text(xtr_config(plan, site2, net.sock(site2.xtr), priority=7))
        daemon.send_signal(1)  # SIGHUP: reload
        wait_for("xtr1 picked up priority 7", lambda: priority_at_xtr1() == 7)
        assert net.ask(site2.xtr, "stats")["drops"].get("request-rate-limited", 0) == 0
        assert net.lab.ping(site1.host, site2.host_v4, count=2)
