"""RTR role and NAT traversal through real namespaces: the seed "A LISP TraceRoute Tool" lab.

lispd.lab.nat_topology: gxtr1 behind a masquerading NAT (nat1), xtr2 behind another (nat2), the
RTR rtr1 in a "cloud" behind a 1:1 NAT (cloudnat), one lispd Map-Server/Map-Resolver on the
public side.  Both NATs pick fully random ports.  The xTRs discover their NATs with Info-Requests,
register their translated RLOC and the RTR, keep their NAT bindings open with keepalives to the
RTR, and send everything off-site to the RTR, which re-encapsulates to the other xTR at the
translated address and port it learned.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from lispd.api.client import request
from lispd.lab import Lab, NatPlan, SiteHandle, nat_topology
from lispd.wire.data import decapsulate
from lispd.wire.errors import WireError
from lispd.wire.ip import parse_ip_header
from tests import configs
from tests.netns import common

pytestmark = pytest.mark.netns

KEYS = {1: "key-one", 2: "key-two"}
KEEPALIVE = 1.0


def probing(interval: float) -> dict[str, float]:
    """``[probing]`` every ``interval`` seconds, a probe lost after at most 3."""
    return {"interval": interval, "timeout": min(interval, 3)}


def xtr_config(plan: NatPlan, site: SiteHandle, sock: str, probe_interval: float = 10) -> str:
    return common.xtr_config(
        site,
        sock,
        plan.ms_rloc_v4,
        KEYS[site.index],
        eid_space=(plan.eid_space_v4, plan.eid_space_v6),
        probing=probing(probe_interval),
        nat_traversal={"enabled": True, "info-interval": 5, "keepalive-interval": KEEPALIVE},
    )


def ms_config(plan: NatPlan, sock: str) -> str:
    return common.ms_config(
        "ms",
        plan.ms_rloc_v4,
        sock,
        plan.sites,
        KEYS,
        mapping_system={"rtr-rlocs": [plan.rtr1_public_v4]},
    )


def rtr_config(plan: NatPlan, sock: str, probe_interval: float = 10, **tables: Any) -> str:
    """rtr1; ``tables`` as in :func:`tests.configs.merge`."""
    doc = configs.rtr(
        "rtr1",
        (plan.rtr1_private_v4,),
        control_socket=sock,
        daemon={"log-level": "debug"},
        rtr={"public-rlocs": [plan.rtr1_public_v4]},
        probing=probing(probe_interval),
        map_resolver=configs.addresses(plan.ms_rloc_v4),
    )
    return configs.toml(configs.merge(doc, **tables))


@dataclass
class World:
    lab: Lab
    plan: NatPlan
    config_paths: dict[str, str] = field(default_factory=dict)

    def sock(self, node: str) -> str:
        return str(self.lab.workdir / f"{node}.sock")

    def ask(self, node: str, command: str) -> Any:
        return request(self.sock(node), command)

    def wait(self, what: str, check: Any, timeout: float = 15.0) -> Any:
        return common.wait_for(what, check, timeout)


@contextlib.contextmanager
def world(
    nat_udp_timeout: int | None = None, extra_hops: int = 0, probe_interval: float = 10
) -> Iterator[World]:
    plan = nat_topology(nat_udp_timeout=nat_udp_timeout, extra_hops=extra_hops)
    with Lab(plan.topology) as lab:
        w = World(lab, plan)
        daemons = [
            lab.start_lispd(plan.ms, ms_config(plan, w.sock(plan.ms))),
            lab.start_lispd(plan.rtr1, rtr_config(plan, w.sock(plan.rtr1), probe_interval)),
        ]
        for site in plan.sites:
            config = xtr_config(plan, site, w.sock(site.xtr), probe_interval)
            daemons.append(lab.start_lispd(site.xtr, config))
        w.config_paths = {d.node: str(d.config_path) for d in daemons}
        # Registered with the translated RLOC and the RTR; the RTR knows both NAT bindings.
        w.wait("sites did not register", lambda: len(w.ask(plan.ms, "site")) == 4)
        w.wait("no NAT bindings at the RTR", lambda: len(w.ask(plan.rtr1, "rtr")) == 2)
        try:
            yield w
        finally:
            for daemon in daemons:
                assert daemon.stop() == 0, daemon.log_tail()


def legs(cap: Any) -> set[tuple[str, int, str, int, str, str]]:
    """(outer src, sport, outer dst, dport, inner src, inner dst) of every LISP data packet."""
    out = set()
    for pkt in cap.ip_packets():
        try:
            encap = decapsulate(pkt)
        except (ValueError, WireError):
            continue
        if len(encap.inner) < 20 or encap.inner[0] >> 4 not in (4, 6):
            continue  # NAT keepalives: a control message, no inner packet
        inner, _, _ = parse_ip_header(encap.inner)
        out.add(
            (
                str(encap.outer.src),
                encap.sport,
                str(encap.outer.dst),
                encap.dport,
                str(inner.src),
                str(inner.dst),
            )
        )
    return out


def test_xtrs_behind_nats_reach_each_other_through_the_rtr() -> None:
    with world() as w:
        plan, lab = w.plan, w.lab
        s1, s2 = plan.sites
        nat = {s.xtr: w.ask(s.xtr, "nat") for s in plan.sites}
        assert nat[s1.xtr]["behind-nat"] and nat[s1.xtr]["global-rloc"] == plan.nat1_public_v4
        assert nat[s2.xtr]["global-rloc"] == plan.nat2_public_v4
        assert nat[s1.xtr]["rtrs"] == [plan.rtr1_public_v4]
        registered = {r["eid-prefix"]: r for r in w.ask(plan.ms, "site")}
        assert set(registered[s1.prefix_v4]["rlocs"]) == {plan.nat1_public_v4, plan.rtr1_public_v4}
        assert registered[s1.prefix_v4]["proxy-reply"]

        with (
            lab.capture(plan.nat1, plan.nat1_public_if, "udp port 4341") as cap1,
            lab.capture(plan.nat2, plan.nat2_public_if, "udp port 4341") as cap2,
        ):
            for a, b in ((s1, s2), (s2, s1)):
                for dst in (b.host_v4, b.host_v6):
                    assert lab.ping(a.host, dst, count=3, wait=3.0), f"{a.host} -> {dst}"
        common.transfer(lab, s1.host, s2.host, s2.host_v4)
        common.transfer(lab, s2.host, s1.host, s1.host_v6)

        bindings = {b["address"]: b["port"] for b in w.ask(plan.rtr1, "rtr")}
        port1, port2 = bindings[plan.nat1_public_v4], bindings[plan.nat2_public_v4]
        assert port1 != 4341 or port2 != 4341  # fully random NATs translate the port
        seen1, seen2 = legs(cap1), legs(cap2)
        rtr = plan.rtr1_public_v4
        for inner_src, inner_dst in ((s1.host_v4, s2.host_v4), (s1.host_v6, s2.host_v6)):
            # ITR -> RTR leaves nat1 from its translated address and port...
            assert (plan.nat1_public_v4, port1, rtr, 4341, inner_src, inner_dst) in seen1
            # ...and the RTR re-encapsulates from its public address to nat2's translated port.
            assert (rtr, 4341, plan.nat2_public_v4, port2, inner_src, inner_dst) in seen2
        for inner_src, inner_dst in ((s2.host_v4, s1.host_v4), (s2.host_v6, s1.host_v6)):
            assert (plan.nat2_public_v4, port2, rtr, 4341, inner_src, inner_dst) in seen2
            assert (rtr, 4341, plan.nat1_public_v4, port1, inner_src, inner_dst) in seen1

        stats = w.ask(plan.rtr1, "stats")
        assert stats["packets"]["rtr.reencap.packets"] > 1000
        assert stats["packets"]["rtr.nat-keepalive.packets"] >= 4

        # Garbage, truncated and spoofed packets at the RTR are dropped and counted while
        # traffic goes on.
        pinger = lab.popen(
            s1.host,
            [sys.executable, "-m", "lispd.lab.pinger", "-i", "0.05", "-c", "80", s2.host_v4],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": common.REPO},
        )
        bad = [
            b"",
            b"\x88",
            b"\x88\x00\x00\x01\xff\xff\xff\x00",  # data-control header, nothing after
            b"\x88\x00\x00\x01\xff\xff\xff\x00" + b"\x70" + b"\x00" * 10,  # truncated Info
            b"\x88\x00\x00\x01\xff\xff\xff\x00" + b"\x78" + b"\x00" * 40,  # garbage "reply"
            b"\x88\x00\x00\x01\x00\x00\x00\x00" + b"\x45" * 30,  # bad inner header
            b"\x88\x00\x00\x01\x00\x00\x00\x00" + os.urandom(200),
        ]
        script = (
            "import socket,sys\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            f"bad={bad!r}\n"
            "for i in range(300):\n"
            f"    s.sendto(bad[i % len(bad)], ('{rtr}', 4341))\n"
            "    s.sendto(bad[i % len(bad)], ('"
            f"{plan.ms_rloc_v4}', 4342))\n"
        )
        lab.run(plan.ms, sys.executable, "-c", script)
        out, _ = pinger.communicate(timeout=30)
        assert "sent=80 received=80" in out, out
        drops = w.ask(plan.rtr1, "stats")["drops"]
        bad_reasons = ("rtr-", "data-control-")
        assert sum(n for r, n in drops.items() if r.startswith(bad_reasons)) >= 250, drops
        assert w.ask(plan.ms, "stats")["drops"], "the Map-Server counted nothing"
        assert len(w.ask(plan.rtr1, "rtr")) == 2  # nothing learned from garbage


def test_nat_bindings_that_time_out_are_renewed_by_keepalives() -> None:
    """NAT timeouts of 2 s with keepalives every second: an idle site stays reachable.  Then the
    bindings are flushed at nat2 (as a NAT reboot does): the next keepalive opens a new one on
    another random port, the RTR learns it, and traffic flows again without any action."""
    with world(nat_udp_timeout=2) as w:
        plan, lab = w.plan, w.lab
        s1, s2 = plan.sites
        assert lab.ping(s1.host, s2.host_v4, count=2, wait=3.0)
        time.sleep(6)  # idle: three NAT timeouts
        assert lab.ping(s1.host, s2.host_v4, count=1, wait=2.0), "binding lost while idle"

        def site2_port() -> int | None:
            """The port the RTR sends site 2 to (the binding claiming its prefix)."""
            claim = f"[0]{s2.prefix_v4}"
            rows = [b for b in w.ask(plan.rtr1, "rtr") if claim in b["eid-prefixes"]]
            return rows[0]["port"] if rows else None

        before = site2_port()
        assert before is not None
        assert lab.flush_conntrack(plan.nat2) > 0
        # The next keepalive comes from a new port: a binding of its own, which takes site 2's
        # prefix once the old port has missed its keepalives (1.5 keepalive intervals).
        w.wait(
            "the RTR never moved site 2 to nat2's new port",
            lambda: site2_port() not in (None, before),
            timeout=10,
        )
        assert lab.ping(s1.host, s2.host_v4, count=3, wait=3.0)
        assert lab.ping(s2.host, s1.host_v6, count=3, wait=3.0)
