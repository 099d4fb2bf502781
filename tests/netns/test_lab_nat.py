"""The NAT lab in real namespaces, without lispd: masquerading NATs in front of the xTRs,
1:1 NAT in front of the RTR (both directions), conntrack UDP timeouts read back from the
kernel, conntrack listing and flushing, and the ELP lab's direct reachability."""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Iterator

import pytest

from lispd.lab import Capture, Lab, NatPlan, elp_topology, nat_topology

pytestmark = pytest.mark.netns

UDP_TIMEOUT = 17
LISP_CONTROL = 4342


def ipv4_fields(packet: bytes) -> tuple[str, str, int, bytes]:
    """(src, dst, protocol, payload) of an IPv4 packet."""
    ihl = (packet[0] & 0x0F) * 4
    src = str(ipaddress.IPv4Address(packet[12:16]))
    dst = str(ipaddress.IPv4Address(packet[16:20]))
    return src, dst, packet[9], packet[ihl:]


def flows(cap: Capture) -> set[tuple[str, str, int]]:
    """(src, dst, protocol) of the IPv4 packets of a capture."""
    return {ipv4_fields(p)[:3] for p in cap.ip_packets() if p[0] >> 4 == 4}


def udp_endpoints(cap: Capture) -> set[tuple[str, int, str, int]]:
    """(src, sport, dst, dport) of the UDP packets of a capture."""
    out = set()
    for p in cap.ip_packets():
        src, dst, proto, payload = ipv4_fields(p)
        if proto == 17:
            sport, dport = int.from_bytes(payload[0:2]), int.from_bytes(payload[2:4])
            out.add((src, sport, dst, dport))
    return out


def send_udp(lab: Lab, node: str, dst: str, port: int = LISP_CONTROL) -> None:
    """One UDP datagram from ``node``'s port ``port`` to ``dst``:``port``."""
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.bind(('', int(sys.argv[2])))\n"
        "s.sendto(b'lab', (sys.argv[1], int(sys.argv[2])))\n"
    )
    lab.run(node, sys.executable, "-I", "-S", "-c", code, dst, str(port))


@pytest.fixture(scope="module")
def nat_lab() -> Iterator[tuple[NatPlan, Lab]]:
    plan = nat_topology(extra_hops=1, nat_udp_timeout=UDP_TIMEOUT)
    with Lab(plan.topology) as lab:
        yield plan, lab


def test_masquerade_hides_the_xtrs(nat_lab: tuple[NatPlan, Lab]) -> None:
    p, lab = nat_lab
    with lab.capture(p.ms, p.ms_if, "icmp") as cap:
        assert lab.ping(p.gxtr1, p.ms_rloc_v4)
        assert lab.ping(p.xtr2, p.ms_rloc_v4)  # through nat2 and hop1
    assert flows(cap) == {
        (p.nat1_public_v4, p.ms_rloc_v4, 1),
        (p.ms_rloc_v4, p.nat1_public_v4, 1),
        (p.nat2_public_v4, p.ms_rloc_v4, 1),
        (p.ms_rloc_v4, p.nat2_public_v4, 1),
    }
    assert "fully-random" in lab.run(p.nat1, "nft", "list", "table", "ip", "lab_nat").stdout


def test_static_nat_inbound(nat_lab: tuple[NatPlan, Lab]) -> None:
    p, lab = nat_lab
    with lab.capture(p.cloudnat, p.cloudnat_private_if, "icmp") as cap:
        assert lab.ping(p.ms, p.rtr1_public_v4)
    # rtr1 sees the real source and its own private address as destination
    assert flows(cap) == {
        (p.ms_rloc_v4, p.rtr1_private_v4, 1),
        (p.rtr1_private_v4, p.ms_rloc_v4, 1),
    }
    addrs = lab.run(p.cloudnat, "ip", "-4", "-o", "addr", "show", p.cloudnat_public_if).stdout
    assert f"{p.rtr1_public_v4}/32" in addrs


def test_static_nat_outbound(nat_lab: tuple[NatPlan, Lab]) -> None:
    p, lab = nat_lab
    with lab.capture(p.core, p.core_cloudnat_if, "icmp or udp") as cap:
        assert lab.ping(p.rtr1, p.ms_rloc_v4)
        send_udp(lab, p.rtr1, p.ms_rloc_v4)
    assert flows(cap) == {
        (p.rtr1_public_v4, p.ms_rloc_v4, 1),
        (p.ms_rloc_v4, p.rtr1_public_v4, 1),
        (p.rtr1_public_v4, p.ms_rloc_v4, 17),
    }
    # 1:1 NAT keeps the port (a masquerade fully-random would not)
    assert udp_endpoints(cap) == {(p.rtr1_public_v4, LISP_CONTROL, p.ms_rloc_v4, LISP_CONTROL)}


def test_private_space_is_not_routed(nat_lab: tuple[NatPlan, Lab]) -> None:
    p, lab = nat_lab
    for private in (p.gxtr1_rloc_v4, p.xtr2_rloc_v4, p.rtr1_private_v4):
        assert lab.run(p.core, "ip", "route", "get", private, check=False).returncode != 0
    assert not lab.ping(p.ms, p.gxtr1_rloc_v4, wait=0.2)


def test_sites_reach_their_xtr(nat_lab: tuple[NatPlan, Lab]) -> None:
    p, lab = nat_lab
    assert lab.ping(p.h1, p.gxtr1_eid_v4) and lab.ping(p.h1, p.gxtr1_eid_v6)
    assert lab.ping(p.h2, p.xtr2_eid_v4) and lab.ping(p.h2, p.xtr2_eid_v6)
    assert lab.ping(p.ms, p.core_nat2_v4)  # the hop's address on nat2's link is routed


def test_udp_timeouts_read_back(nat_lab: tuple[NatPlan, Lab]) -> None:
    p, lab = nat_lab
    for nat in (p.cloudnat, p.nat1, p.nat2):
        assert lab.nat_udp_timeouts(nat) == (UDP_TIMEOUT, UDP_TIMEOUT)
        assert lab.sysctl(nat, "net.netfilter.nf_conntrack_udp_timeout") == str(UDP_TIMEOUT)
    lab.set_nat_udp_timeout(p.nat2, 5, stream=9)
    assert lab.nat_udp_timeouts(p.nat2) == (5, 9)
    assert lab.nat_udp_timeouts(p.nat1) == (UDP_TIMEOUT, UDP_TIMEOUT)  # per namespace
    lab.set_nat_udp_timeout(p.nat2, UDP_TIMEOUT)
    assert lab.nat_udp_timeouts(p.nat2) == (UDP_TIMEOUT, UDP_TIMEOUT)
    assert lab.sysctl(p.core, "net.no_such_key") is None


def test_conntrack_list_and_flush_udp(nat_lab: tuple[NatPlan, Lab]) -> None:
    p, lab = nat_lab
    lab.flush_conntrack(p.nat1, proto=None)
    assert lab.ping(p.gxtr1, p.ms_rloc_v4)
    send_udp(lab, p.gxtr1, p.ms_rloc_v4)
    udp = lab.conntrack_entries(p.nat1)
    assert len(udp) == 1
    (e,) = udp
    assert (e.proto, str(e.orig_src), e.orig_sport, str(e.orig_dst), e.orig_dport) == (
        17, p.gxtr1_rloc_v4, LISP_CONTROL, p.ms_rloc_v4, LISP_CONTROL,
    )  # fmt: skip
    # the binding: replies go to nat1's public address on the port the NAT chose
    assert (str(e.reply_src), e.reply_sport, str(e.reply_dst)) == (
        p.ms_rloc_v4, LISP_CONTROL, p.nat1_public_v4,
    )  # fmt: skip
    assert e.reply_dport is not None and e.reply_dport > 0
    assert {x.proto for x in lab.conntrack_entries(p.nat1, proto=None)} == {1, 17}
    assert lab.flush_conntrack(p.nat1) == 1
    assert lab.conntrack_entries(p.nat1) == []
    assert [x.proto for x in lab.conntrack_entries(p.nat1, proto=None)] == [1]  # ICMP stays
    assert lab.flush_conntrack(p.nat1) == 0
    assert lab.flush_conntrack(p.nat1, proto=None) == 1
    assert lab.conntrack_entries(p.nat1, proto=None) == []


def test_elp_lab_every_node_is_one_hop_from_core() -> None:
    p = elp_topology()
    rlocs = {
        p.xtr1: p.xtr1_rloc_v4,
        p.xtr2: p.xtr2_rloc_v4,
        p.rtra: p.rtra_rloc_v4,
        p.rtrb: p.rtrb_rloc_v4,
        p.ms: p.ms_rloc_v4,
    }
    with Lab(p.topology) as lab:
        with lab.capture(p.core, p.core_rtra_if, "icmp") as cap:
            for a in rlocs:
                for b, addr in rlocs.items():
                    if a != b:
                        assert lab.ping(a, addr), (a, b)
        # only rtra's own pings cross its uplink: nothing transits an RTR
        assert all(p.rtra_rloc_v4 in f[:2] for f in flows(cap))
        assert lab.ping(p.h1, p.xtr1_eid_v6) and lab.ping(p.h2, p.xtr2_eid_v4)
