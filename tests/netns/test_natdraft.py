"""Draft-style NAT traversal (draft-ietf-lisp-nat-traversal, as Open Overlay Router does it)
through real namespaces: a lispd Map-Server, a lispd RTR and a public lispd xTR on the public
side, a lispd xTR behind a masquerading NAT (nftables), laid out as OOR's own capture lab::

    h1 - gxtr1 - nat1 ---+           +--- ms (MS/MR)
       (masquerade)      +-- core ---+--- rtr1
                         |
    h2 - xtr2 -----------+ (public)

gxtr1 discovers the NAT with a signed Info-Request, registers through rtr1 (ECM'd
Map-Registers from its port 4341), gets the Map-Server's Map-Notify relayed by rtr1, and its
traffic with the public site goes through rtr1 both ways.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from lispd.api.client import request
from lispd.lab import Lab, Topology, site_handle
from lispd.wire.control import decode_control
from lispd.wire.data import decapsulate
from lispd.wire.ecm import EncapsulatedControl
from lispd.wire.errors import WireError
from lispd.wire.ip import UdpDatagram, parse_ip_header, parse_udp_datagram
from lispd.wire.mapregister import MapNotify
from tests import configs
from tests.netns import common

pytestmark = pytest.mark.netns

KEYS = {1: "key-one", 2: "key-two"}
MS_RTR_KEY = "ms-rtr-key"
REGISTRATION = 5  # seconds between gxtr1's registrations (through the RTR)
EID_SPACE = ("198.51.100.0/24", "2001:db8:100::/48")

CORE_MS, MS = "192.0.2.1", "192.0.2.2"
CORE_RTR, RTR = "192.0.2.5", "192.0.2.6"
CORE_NAT1, NAT1_PUBLIC = "192.0.2.9", "192.0.2.10"
CORE_XTR2, XTR2 = "192.0.2.13", "192.0.2.14"
NAT1_PRIVATE, GXTR1 = "192.0.2.133", "192.0.2.134"


SITE1 = site_handle(1, "gxtr1", rloc=GXTR1, router_side=NAT1_PRIVATE)  # behind nat1
SITE2 = site_handle(2, "xtr2", rloc=XTR2, router_side=CORE_XTR2)  # public


def topology() -> Topology:
    """The lab of the module docstring (IPv4 underlay, documentation addresses only)."""
    topo = Topology()
    core = topo.router("core")
    ms, rtr1 = topo.lisp_router("ms"), topo.lisp_router("rtr1")
    gxtr1, xtr2 = topo.lisp_router("gxtr1"), topo.lisp_router("xtr2")
    topo.nat("nat1")
    topo.link(core, ms, [f"{CORE_MS}/30"], [f"{MS}/30"])
    topo.link(core, rtr1, [f"{CORE_RTR}/30"], [f"{RTR}/30"])
    topo.link(core, "nat1", [f"{CORE_NAT1}/30"], [f"{NAT1_PUBLIC}/30"])
    topo.link(core, xtr2, [f"{CORE_XTR2}/30"], [f"{XTR2}/30"])
    topo.link("nat1", gxtr1, [f"{NAT1_PRIVATE}/30"], [f"{GXTR1}/30"])
    for node, gateway in ((ms, CORE_MS), (rtr1, CORE_RTR), ("nat1", CORE_NAT1), (xtr2, CORE_XTR2)):
        topo.route(node, "default", via=gateway)
    topo.route(gxtr1, "default", via=NAT1_PRIVATE)
    topo.masquerade("nat1", "to-core")
    for site, xtr in ((SITE1, gxtr1), (SITE2, xtr2)):
        host = topo.host(site.host)
        topo.link(
            xtr,
            host,
            [f"{site.gateway_v4}/28", f"{site.gateway_v6}/64"],
            [f"{site.host_v4}/28", f"{site.host_v6}/64"],
        )
        topo.route(host, "default", via=site.gateway_v4)
        topo.route(host, "default", via=site.gateway_v6)
    return topo


@dataclass
class World:
    lab: Lab
    socks: dict[str, str] = field(default_factory=dict)

    def ask(self, node: str, command: str) -> Any:
        return request(self.socks[node], command)


@contextlib.contextmanager
def world() -> Iterator[World]:
    with Lab(topology()) as lab:
        w = World(lab, {n: str(lab.workdir / f"{n}.sock") for n in ("ms", "rtr1", "gxtr1", "xtr2")})
        ms = common.ms_config(
            "ms",
            MS,
            w.socks["ms"],
            (SITE1, SITE2),
            KEYS,
            mapping_system={"rtr-rlocs": [RTR], "ms-rtr-key": MS_RTR_KEY},
            nat_traversal={"style": "draft"},
        )
        rtr = configs.toml(
            configs.rtr(
                "rtr1",
                (RTR,),
                control_socket=w.socks["rtr1"],
                daemon={"log-level": "debug"},
                rtr={"ms-rtr-key": MS_RTR_KEY},
                map_resolver=configs.addresses(MS),
            )
        )
        gxtr1 = common.xtr_config(
            SITE1,
            w.socks["gxtr1"],
            MS,
            KEYS[1],
            eid_space=EID_SPACE,
            nat_traversal={"enabled": True, "style": "draft", "info-interval": 5},
            registration={"interval": REGISTRATION},
        )
        xtr2 = common.xtr_config(SITE2, w.socks["xtr2"], MS, KEYS[2], eid_space=EID_SPACE)
        daemons = [
            lab.start_lispd("ms", ms),
            lab.start_lispd("rtr1", rtr),
            lab.start_lispd("xtr2", xtr2),
            lab.start_lispd("gxtr1", gxtr1),
        ]
        try:
            common.wait_for("sites did not register", lambda: len(w.ask("ms", "site")) == 4, 20)
            common.wait_for(
                "no draft binding at the RTR",
                lambda: len(w.ask("rtr1", "rtr-draft")["bindings"]) == 1,
                20,
            )
            yield w
        finally:
            for daemon in daemons:
                assert daemon.stop() == 0, daemon.log_tail()


def _datagrams(packets: list[bytes]) -> Iterator[UdpDatagram]:
    for pkt in packets:
        try:
            yield parse_udp_datagram(pkt)
        except (ValueError, WireError):
            continue


def _relays(packets: list[bytes]) -> Iterator[bytes]:
    """The LISP payloads of what the RTR sent from its control port to the NAT."""
    for dg in _datagrams(packets):
        if str(dg.ip.src) == RTR and dg.sport == 4342 and str(dg.ip.dst) == NAT1_PUBLIC:
            yield dg.payload


def legs(packets: list[bytes]) -> set[tuple[str, str, str, str]]:
    """(outer src, outer dst, inner src, inner dst) of every LISP data packet."""
    out = set()
    for pkt in packets:
        try:
            encap = decapsulate(pkt)
        except (ValueError, WireError):
            continue
        if encap.sport == 4342 or len(encap.inner) < 20 or encap.inner[0] >> 4 not in (4, 6):
            continue  # relays and keepalives: control messages, no inner packet
        inner, _, _ = parse_ip_header(encap.inner)
        out.add((str(encap.outer.src), str(encap.outer.dst), str(inner.src), str(inner.dst)))
    return out


def test_natted_site_and_public_site_reach_each_other_through_the_rtr() -> None:
    with world() as w:
        lab = w.lab
        nat = w.ask("gxtr1", "nat")
        assert nat["behind-nat"] and nat["global-rloc"] == NAT1_PUBLIC and nat["rtrs"] == [RTR]
        registered = {r["eid-prefix"]: r for r in w.ask("ms", "site")}
        assert registered[SITE1.prefix_v4]["rlocs"] == [RTR, GXTR1]
        assert registered[SITE1.prefix_v4]["proxy-reply"]
        assert registered[SITE2.prefix_v4]["rlocs"] == [XTR2]
        (binding,) = w.ask("rtr1", "rtr-draft")["bindings"]
        assert binding["private"] == GXTR1 and binding["translated"].startswith(NAT1_PUBLIC)
        acked = w.ask("gxtr1", "registrations")
        assert acked and all(r["acknowledged"] for r in acked)

        with lab.capture("nat1", "to-core", "udp") as cap:
            for a, b in ((SITE1, SITE2), (SITE2, SITE1)):
                for dst in (b.host_v4, b.host_v6):
                    assert lab.ping(a.host, dst, count=3, wait=3.0), f"{a.host} -> {dst}"
            # gxtr1 registers every REGISTRATION seconds: let a round through the RTR pass.
            time.sleep(REGISTRATION + 2)
        packets = cap.ip_packets()
        # The ECM'd Map-Registers leave the NAT from its public address to the RTR's 4342 ...
        ecms = [
            (dg.ip.src, decode_control(dg.payload))
            for dg in _datagrams(packets)
            if str(dg.ip.dst) == RTR and dg.dport == 4342
        ]
        assert ecms and all(str(src) == NAT1_PUBLIC for src, _m in ecms)
        assert all(isinstance(m, EncapsulatedControl) and m.rtr for _s, m in ecms)
        # ... and the Map-Notify comes back from the RTR's 4342 inside a data packet.
        relays = list(_relays(packets))
        assert relays
        inner = parse_udp_datagram(relays[-1][8:])
        assert str(inner.ip.src) == MS and str(inner.ip.dst) == GXTR1
        assert isinstance(decode_control(inner.payload), MapNotify)
        # Data: the NATed site's packets go to the RTR, the public site's come from it.
        seen = legs(packets)
        assert (NAT1_PUBLIC, RTR, SITE1.host_v4, SITE2.host_v4) in seen
        assert (RTR, NAT1_PUBLIC, SITE2.host_v4, SITE1.host_v4) in seen
        assert (NAT1_PUBLIC, RTR, SITE1.host_v6, SITE2.host_v6) in seen
        assert (RTR, NAT1_PUBLIC, SITE2.host_v6, SITE1.host_v6) in seen

        rtr_stats = w.ask("rtr1", "stats")
        assert rtr_stats["packets"]["rtr.notify-relayed.packets"] >= 2
        assert rtr_stats["packets"]["rtr.reencap.packets"] >= 12
        for node in ("ms", "rtr1", "gxtr1"):
            drops = w.ask(node, "stats")["drops"]
            bad = {k: v for k, v in drops.items() if "auth" in k or "unexpected" in k}
            assert not bad, (node, bad)
