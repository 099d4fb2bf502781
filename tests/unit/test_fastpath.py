"""The Python reference path's per-packet helpers (lispd.dataplane inner, rloc, icmp), checked
against the wire codecs and by hand."""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from lispd.dataplane.icmp import frag_needed_v4, packet_too_big_v6
from lispd.dataplane.inner import (
    ECN_CE,
    ECN_ECT0,
    ECN_ECT1,
    ECN_NOT_ECT,
    ecn_decapsulate,
    fix_inner_on_decap,
    flow_hash,
    parse_inner,
    source_port,
)
from lispd.dataplane.rloc import select_rloc
from lispd.wire.ip import (
    IPv4Header,
    IPv6Header,
    UdpDatagram,
    build_udp_datagram,
    internet_checksum,
    parse_ip_header,
)

A4, B4 = IPv4Address("198.51.100.2"), IPv4Address("198.51.100.18")
A6, B6 = IPv6Address("2001:db8:100:1::2"), IPv6Address("2001:db8:100:2::2")


def udp4(sport: int = 1000, dport: int = 2000, ttl: int = 63, tos: int = 0, df: bool = True):
    ip = IPv4Header(A4, B4, ttl=ttl, tos=tos, dont_fragment=df)
    return build_udp_datagram(UdpDatagram(ip, sport, dport, b"hello"))


def udp6(sport: int = 1000, dport: int = 2000, hlim: int = 63, tclass: int = 0):
    ip = IPv6Header(A6, B6, hop_limit=hlim, traffic_class=tclass)
    return build_udp_datagram(UdpDatagram(ip, sport, dport, b"hello"))


def test_parse_inner_ipv4() -> None:
    flow = parse_inner(udp4(ttl=9, tos=0xB8))
    assert flow is not None
    assert (flow.version, flow.src, flow.dst, flow.protocol) == (4, A4.packed, B4.packed, 17)
    assert flow.ports == struct.pack("!HH", 1000, 2000)
    assert (flow.ttl, flow.tos, flow.dont_fragment) == (9, 0xB8, True)
    assert parse_inner(udp4(df=False)).dont_fragment is False


def test_parse_inner_ipv6() -> None:
    flow = parse_inner(udp6(hlim=7, tclass=0x2E))
    assert flow is not None
    assert (flow.version, flow.src, flow.dst, flow.ttl, flow.tos) == (
        6,
        A6.packed,
        B6.packed,
        7,
        0x2E,
    )
    assert flow.ports == struct.pack("!HH", 1000, 2000)


@pytest.mark.parametrize(
    "bad",
    [b"", b"\x45" * 19, udp4()[:-1], udp4() + b"x", udp6()[:-1], b"\x75" + udp4()[1:]],
    ids=["empty", "short", "v4-short", "v4-long", "v6-short", "version-7"],
)
def test_parse_inner_rejects(bad: bytes) -> None:
    assert parse_inner(bad) is None


def test_fragments_hash_without_ports() -> None:
    pkt = bytearray(udp4())
    pkt[6] |= 0x20  # more fragments
    flow = parse_inner(bytes(pkt))
    assert flow is not None and flow.ports == b""


def test_flow_hash_is_deterministic_and_spreads() -> None:
    assert flow_hash(parse_inner(udp4(1, 2))) == flow_hash(parse_inner(udp4(1, 2)))
    hashes = {flow_hash(parse_inner(udp4(sport, 80))) for sport in range(1000, 1100)}
    assert len(hashes) > 95
    ports = {source_port(h) for h in hashes}
    assert all(49152 <= p <= 65535 for p in ports) and len(ports) > 90


@dataclass(frozen=True)
class R:
    address: IPv4Address | IPv6Address
    priority: int = 1
    weight: int = 50
    up: bool = True


def test_select_lowest_priority_and_skip_255_down_and_family() -> None:
    rlocs = [
        R(ip_address("192.0.2.1"), priority=255),
        R(ip_address("192.0.2.2"), priority=2),
        R(ip_address("192.0.2.3"), priority=1, up=False),
        R(ip_address("2001:db8::3"), priority=1),
    ]
    for h in range(50):
        assert select_rloc(rlocs, h, {4}).address == ip_address("192.0.2.2")
        assert select_rloc(rlocs, h, {4, 6}).address == ip_address("2001:db8::3")
    assert select_rloc([R(ip_address("192.0.2.1"), priority=255)], 1, {4}) is None
    assert select_rloc([], 1, {4}) is None


def test_select_by_weight_is_proportional_and_sticky() -> None:
    a, b = R(ip_address("192.0.2.1"), weight=75), R(ip_address("192.0.2.2"), weight=25)
    flows = [parse_inner(udp4(sport, 80)) for sport in range(2000, 6000)]
    counts = Counter(select_rloc([a, b], flow_hash(f), {4}).address for f in flows)
    assert 0.70 < counts[a.address] / len(flows) < 0.80
    for f in flows[:100]:  # one flow, one RLOC, every time
        assert len({select_rloc([a, b], flow_hash(f), {4}).address for _ in range(3)}) == 1
    zero = [R(ip_address("192.0.2.1"), weight=0), R(ip_address("192.0.2.2"), weight=0)]
    assert len({select_rloc(zero, h, {4}).address for h in range(10)}) == 2


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        (ECN_NOT_ECT, ECN_ECT0, ECN_ECT0),
        (ECN_ECT0, ECN_NOT_ECT, ECN_NOT_ECT),
        (ECN_ECT1, ECN_ECT0, ECN_ECT1),
        (ECN_ECT0, ECN_ECT1, ECN_ECT1),
        (ECN_CE, ECN_ECT0, ECN_CE),
        (ECN_CE, ECN_ECT1, ECN_CE),
        (ECN_CE, ECN_CE, ECN_CE),
        (ECN_CE, ECN_NOT_ECT, None),
    ],
)
def test_ecn_decapsulation_table(outer: int, inner: int, expected: int | None) -> None:
    assert ecn_decapsulate(outer, inner) == expected


def test_decap_lowers_ttl_and_keeps_ipv4_checksum_valid() -> None:
    pkt = udp4(ttl=60, tos=0xB8 | ECN_ECT0)
    fixed = fix_inner_on_decap(pkt, outer_ttl=50, outer_tos=ECN_CE)
    assert fixed is not None
    header, hlen, _ = parse_ip_header(fixed)
    assert header.ttl == 50 and header.tos == 0xB8 | ECN_CE
    assert internet_checksum(fixed[:hlen]) == 0
    assert fix_inner_on_decap(pkt, outer_ttl=64, outer_tos=0) == pkt  # nothing to change


def test_decap_ipv6_hop_limit_and_ce() -> None:
    pkt = udp6(hlim=60, tclass=0x28 | ECN_ECT1)
    fixed = fix_inner_on_decap(pkt, outer_ttl=30, outer_tos=ECN_CE)
    header, _, _ = parse_ip_header(fixed)
    assert header.hop_limit == 30 and header.traffic_class == 0x28 | ECN_CE
    assert fix_inner_on_decap(udp6(tclass=0), outer_ttl=64, outer_tos=ECN_CE) is None


def test_icmp_frag_needed() -> None:
    pkt = udp4()
    icmp = frag_needed_v4(pkt, 1464, IPv4Address("192.0.2.1"))
    header, hlen, end = parse_ip_header(icmp)
    assert (header.src, header.dst, header.protocol) == (IPv4Address("192.0.2.1"), A4, 1)
    body = icmp[hlen:end]
    assert body[:2] == b"\x03\x04" and struct.unpack("!H", body[6:8])[0] == 1464
    assert internet_checksum(body) == 0 and body[8:] == pkt


def test_icmpv6_packet_too_big() -> None:
    pkt = udp6()
    src = IPv6Address("2001:db8::1")
    icmp = packet_too_big_v6(pkt, 1444, src)
    header, hlen, end = parse_ip_header(icmp)
    assert (header.src, header.dst, header.next_header) == (src, A6, 58)
    body = icmp[hlen:end]
    pseudo = src.packed + A6.packed + struct.pack("!I3xB", len(body), 58)
    assert body[:2] == b"\x02\x00" and struct.unpack("!I", body[4:8])[0] == 1444
    assert internet_checksum(pseudo + body) == 0 and body[8:] == pkt
