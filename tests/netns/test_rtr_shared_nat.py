"""Two lispd xTRs behind ONE masquerading NAT, through one lispd RTR (real namespaces).

The carrier-grade / cloud NAT gateway case: xtr1 (site 1) and xtr3 (site 3) share the NAT's one
public address; nftables masquerade (fully random) gives each xTR's port-4341 flow its own
translated port.  A lispd Map-Server/Map-Resolver, the RTR and xtr2 (site 2) are on the public
side::

    h1 - xtr1 --+                  +-- ms (MS/MR, rtr-rlocs = rtr)
                +-- nat -- core ---+-- rtr
    h3 - xtr3 --+  (masquerade)    +-- xtr2 - h2

Both NATed xTRs register the NAT's address as their RLOC; the RTR keeps one binding per xTR
(lispd.node.natbindings) and sends each site's traffic to its own xTR's translated port.  The
test checks that both NATed sites are reachable at the same time, from each other (out of the
NAT and back in through the RTR) and from site 2, with real pings and a UDP exchange, and that
on the NAT's public link the RTR's packets for each site go to that site's own port.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from lispd.api.client import request
from lispd.lab import Lab, SiteHandle, site_handle
from lispd.lab.topology import Topology
from lispd.wire.data import decapsulate
from lispd.wire.errors import WireError
from lispd.wire.ip import parse_ip_header
from tests import configs
from tests.netns import common

pytestmark = pytest.mark.netns

KEYS = {1: "key-one", 2: "key-two", 3: "key-three"}
KEEPALIVE = 1.0
EID_SPACE = ("198.51.100.0/24", "2001:db8:100::/48")

# Public /30s around core (core takes .1 of each): ms, rtr, nat, xtr2.  Behind the NAT: one
# /30 per xTR (the NAT takes the first address).
MS_RLOC, RTR_RLOC, NAT_PUBLIC = "192.0.2.2", "192.0.2.6", "192.0.2.10"
CORE = {"ms": "192.0.2.1", "rtr": "192.0.2.5", "nat": "192.0.2.9", "xtr2": "192.0.2.13"}


def site(n: int, xtr: str, rloc: str, router_side: str) -> SiteHandle:
    """Site ``n``: host ``hN`` behind ``xtr`` (see :func:`lispd.lab.site_handle`)."""
    return site_handle(n, xtr, rloc=rloc, router_side=router_side)


SITE1 = site(1, "xtr1", "192.0.2.130", "192.0.2.129")  # behind the NAT
SITE2 = site(2, "xtr2", "192.0.2.14", CORE["xtr2"])  # public
SITE3 = site(3, "xtr3", "192.0.2.134", "192.0.2.133")  # behind the same NAT
SITES = (SITE1, SITE2, SITE3)


def topology() -> Topology:
    """The namespaces, links, routes and the NAT of the picture above."""
    topo = Topology()
    core = topo.router("core")
    nat = topo.nat("nat")
    ms, rtr = topo.lisp_router("ms"), topo.lisp_router("rtr")
    for name, rloc in (("ms", MS_RLOC), ("rtr", RTR_RLOC), ("nat", NAT_PUBLIC)):
        topo.link(core, name, [f"{CORE[name]}/30"], [f"{rloc}/30"])
        topo.route(name, "default", via=CORE[name])
    for s in SITES:
        xtr, host = topo.lisp_router(s.xtr), topo.host(s.host)
        if s is SITE2:
            topo.link(core, xtr, [f"{CORE['xtr2']}/30"], [f"{s.rloc}/30"])
        else:
            topo.link(nat, xtr, [f"{s.router_side}/30"], [f"{s.rloc}/30"])
        topo.route(xtr, "default", via=s.router_side)
        topo.link(
            xtr,
            host,
            [f"{s.gateway_v4}/28", f"{s.gateway_v6}/64"],
            [f"{s.host_v4}/28", f"{s.host_v6}/64"],
        )
        topo.route(host, "default", via=s.gateway_v4)
        topo.route(host, "default", via=s.gateway_v6)
    topo.masquerade(nat, "to-core", fully_random=True)
    del ms, rtr
    return topo


@dataclass
class World:
    lab: Lab

    def sock(self, node: str) -> str:
        return str(self.lab.workdir / f"{node}.sock")

    def ask(self, node: str, command: str) -> Any:
        return request(self.sock(node), command)

    def bindings(self) -> dict[str, int]:
        """The RTR's bindings at the NAT's address: claimed EID-prefix -> translated port."""
        return {
            prefix: row["port"]
            for row in self.ask("rtr", "rtr")
            if row["address"] == NAT_PUBLIC
            for prefix in row["eid-prefixes"]
        }


def claimed(bindings: dict[str, int]) -> bool:
    """Whether both NATed sites' prefixes are claimed, each site by one port of its own."""
    keys = [f"[0]{s.prefix_v4}" for s in (SITE1, SITE3)] + [
        f"[0]{s.prefix_v6}" for s in (SITE1, SITE3)
    ]
    return all(k in bindings for k in keys)


@contextlib.contextmanager
def world() -> Iterator[World]:
    with Lab(topology()) as lab:
        w = World(lab)
        daemons = [
            lab.start_lispd(
                "ms",
                common.ms_config(
                    "ms",
                    MS_RLOC,
                    w.sock("ms"),
                    SITES,
                    KEYS,
                    mapping_system={"rtr-rlocs": [RTR_RLOC]},
                ),
            ),
            lab.start_lispd(
                "rtr",
                configs.toml(
                    configs.rtr(
                        "rtr",
                        (RTR_RLOC,),
                        control_socket=w.sock("rtr"),
                        probing={"interval": 5, "timeout": 3},
                        map_resolver=configs.addresses(MS_RLOC),
                    )
                ),
            ),
        ]
        for s in SITES:
            nat_traversal = {"enabled": True, "info-interval": 5, "keepalive-interval": KEEPALIVE}
            config = common.xtr_config(
                s,
                w.sock(s.xtr),
                MS_RLOC,
                KEYS[s.index],
                eid_space=EID_SPACE,
                probing={"interval": 5, "timeout": 3},
                nat_traversal=nat_traversal,
            )
            daemons.append(lab.start_lispd(s.xtr, config))
        try:
            common.wait_for("sites did not register", lambda: len(w.ask("ms", "site")) == 6, 20)
            common.wait_for("the RTR did not learn both xTRs", lambda: claimed(w.bindings()), 20)
            yield w
        finally:
            for daemon in daemons:
                assert daemon.stop() == 0, daemon.log_tail()


def pinger(lab: Lab, src: SiteHandle, dst: str) -> subprocess.Popen[str]:
    """80 echo requests, one every 25 ms, from ``src``'s host to ``dst`` (in the background)."""
    return lab.popen(
        src.host,
        [sys.executable, "-m", "lispd.lab.pinger", "-i", "0.025", "-c", "80", "-W", "2", dst],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": common.REPO},
    )


UDP_ECHO = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 7007))
print("listening", flush=True)
for _ in range(int(sys.argv[2])):
    data, peer = s.recvfrom(2048)
    s.sendto(data[::-1], peer)
"""

UDP_ASK = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.settimeout(3)
answered = 0
for k in range(int(sys.argv[2])):
    msg = f"datagram {k} to {sys.argv[1]}".encode()
    s.sendto(msg, (sys.argv[1], 7007))
    if s.recv(2048) == msg[::-1]:
        answered += 1
print(answered)
"""


def legs_to_nat(cap: Any) -> set[tuple[int, str]]:
    """(destination port, inner destination) of the RTR's LISP data packets to the NAT."""
    out = set()
    for pkt in cap.ip_packets():
        try:
            encap = decapsulate(pkt)
        except (ValueError, WireError):
            continue
        if str(encap.outer.src) != RTR_RLOC or len(encap.inner) < 20:
            continue
        if encap.inner[0] >> 4 not in (4, 6):
            continue  # a control message in the data path (keepalive answer, probe)
        inner, _, _ = parse_ip_header(encap.inner)
        out.add((encap.dport, str(inner.dst)))
    return out


def test_two_xtrs_behind_one_nat_are_reachable_at_once_through_the_rtr() -> None:
    with world() as w:
        lab = w.lab
        nat = {s.xtr: w.ask(s.xtr, "nat") for s in (SITE1, SITE3)}
        for state in nat.values():
            assert state["behind-nat"] and state["global-rloc"] == NAT_PUBLIC
            assert state["rtrs"] == [RTR_RLOC]
        registered = {r["eid-prefix"]: set(r["rlocs"]) for r in w.ask("ms", "site")}
        assert registered[SITE1.prefix_v4] == registered[SITE3.prefix_v4] == {NAT_PUBLIC, RTR_RLOC}

        # One binding per xTR at the one public address, on two different translated ports.
        bindings = w.bindings()
        port1, port3 = bindings[f"[0]{SITE1.prefix_v4}"], bindings[f"[0]{SITE3.prefix_v4}"]
        assert port1 != port3
        assert bindings[f"[0]{SITE1.prefix_v6}"] == port1
        assert bindings[f"[0]{SITE3.prefix_v6}"] == port3

        # Everybody pings everybody at the same time: the NATed sites from each other (out of
        # the NAT, through the RTR, back in) and from site 2, and site 2 from them.
        pairs = [
            (SITE1, SITE3.host_v4),
            (SITE3, SITE1.host_v6),
            (SITE2, SITE1.host_v4),
            (SITE2, SITE3.host_v4),
            (SITE2, SITE3.host_v6),
            (SITE1, SITE2.host_v4),
            (SITE3, SITE2.host_v6),
        ]
        with lab.capture("nat", "to-core", f"udp and src host {RTR_RLOC}") as cap:
            # Resolve first (the first packet of a flow waits for its Map-Reply).
            for src, dst in pairs:
                assert lab.ping(src.host, dst, count=1, wait=3.0), f"{src.host} -> {dst}"
            running = [(src, dst, pinger(lab, src, dst)) for src, dst in pairs]
            results = {}
            for src, dst, proc in running:
                out, _ = proc.communicate(timeout=30)
                results[(src.host, dst)] = out.strip()
            # UDP both ways between the two NATed sites (a request/answer per datagram).
            server = lab.popen(
                SITE3.host,
                [sys.executable, "-c", UDP_ECHO, SITE3.host_v4, "50"],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert server.stdout is not None and server.stdout.readline().strip() == "listening"
            answered = lab.run(
                SITE1.host, sys.executable, "-c", UDP_ASK, SITE3.host_v4, "50", timeout=60
            ).stdout.strip()
            server.wait(timeout=10)
        for pair, out in results.items():
            assert "sent=80 received=80" in out, (pair, out)
        assert answered == "50"

        # On the NAT's public link: the RTR sends site 1's packets to xtr1's port and site 3's
        # to xtr3's, never the other way round.
        seen = legs_to_nat(cap)
        site1_hosts, site3_hosts = {SITE1.host_v4, SITE1.host_v6}, {SITE3.host_v4, SITE3.host_v6}
        assert {dst for port, dst in seen if port == port1} == site1_hosts
        assert {dst for port, dst in seen if port == port3} == site3_hosts
        assert {port for port, _ in seen} == {port1, port3}

        # Nothing moved while it ran, and no xTR got a packet for the other one.
        assert w.bindings() == bindings
        drops = w.ask("rtr", "stats")["drops"]
        assert "nat-binding-eid-held" not in drops, drops
        for s in (SITE1, SITE3):
            xtr_drops = w.ask(s.xtr, "stats")["drops"]
            assert not any("not-our-eid" in reason for reason in xtr_drops), (s.xtr, xtr_drops)
