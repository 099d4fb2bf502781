"""LISP-Trace at each hop (lispd.dataplane.tracing): stamping, turnaround, error returns.

A whole round trip is simulated on inner packets only (no sockets): client -> ITR (encap) ->
RTR (decap, encap) -> ETR (decap, turnaround) -> its ITR (encap) -> RTR (decap, encap) -> ETR
(decap) -> delivered, checking after every hop that the packet is valid IP/UDP (IPv4 header
checksum, a real UDP checksum) and, at the end, the records against the format in
``lispd/wire/trace.py``.
"""

from __future__ import annotations

import ipaddress
import json
import struct
from dataclasses import dataclass, replace
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lispd.dataplane.inner import parse_inner
from lispd.dataplane.tracing import (
    TRACE_PORT,
    TraceContext,
    client_rloc_key,
    error_return,
    flow_is_trace,
    is_trace,
    needs_turnaround,
    return_key,
    rloc_text,
    stamp_decap,
    stamp_encap,
    turn_around_packet,
)
from lispd.wire.ip import (
    IPv4Header,
    IPv6Header,
    UdpDatagram,
    build_udp_datagram,
    internet_checksum,
    parse_udp_datagram,
)
from lispd.wire.trace import (
    NODE_ETR,
    NODE_ITR,
    NODE_RTR,
    REASON_MAP_CACHE_MISS,
    REASON_NO_REACHABLE_RLOCS,
    REASON_NOT_AN_EID,
    REPLY_WORD0,
    TraceHop,
    TraceMessage,
    TraceSegment,
    decode_trace,
    encode_trace,
)

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address
IPAddress = V4 | V6

NONCE = 0x0123456789ABCDEF
CLIENT_PORT = 50000
CLIENT_RLOC = V4("192.0.2.1")
REPLY_HEADER = bytes.fromhex("90000000000000000123456789abcdef")


# ---------------------------------------------------------------------------------------------
# Packet helpers


def first_payload(port: int = CLIENT_PORT, rloc: V4 = CLIENT_RLOC) -> bytes:
    """The client's first trace payload: the 16-byte header, no JSON."""
    return encode_trace(TraceMessage(local_port=port, local_rloc=rloc, nonce=NONCE))


def udp_packet(
    src: IPAddress,
    dst: IPAddress,
    sport: int,
    dport: int,
    payload: bytes,
    *,
    ttl: int = 61,
    tos: int = 0x28,
    ident: int = 0x1234,
    options: bytes = b"",
    zero_checksum: bool = False,
) -> bytes:
    """An inner IPv4 or IPv6 UDP packet (the family of ``src``)."""
    if isinstance(src, V4):
        assert isinstance(dst, V4)
        ip: IPv4Header | IPv6Header = IPv4Header(
            src, dst, ttl=ttl, tos=tos, ident=ident, options=options
        )
    else:
        assert isinstance(dst, V6)
        ip = IPv6Header(src, dst, hop_limit=ttl, traffic_class=tos, flow_label=0xABCDE)
    return build_udp_datagram(UdpDatagram(ip, sport, dport, payload, zero_checksum=zero_checksum))


def assert_valid(pkt: bytes | None) -> UdpDatagram:
    """``pkt`` is a well-formed IP/UDP packet with a correct IPv4 header checksum and a real
    (non-zero, verified) UDP checksum; returns it parsed."""
    assert pkt is not None
    assert isinstance(pkt, bytes)
    if pkt[0] >> 4 == 4:
        ihl = (pkt[0] & 0x0F) * 4
        assert internet_checksum(pkt[:ihl]) == 0, "IPv4 header checksum"
        assert struct.unpack_from("!H", pkt, 2)[0] == len(pkt)
    else:
        assert struct.unpack_from("!H", pkt, 4)[0] == len(pkt) - 40
    dg = parse_udp_datagram(pkt, verify_checksum=True)
    assert not dg.zero_checksum, "UDP checksum must be real"
    assert parse_inner(pkt) is not None
    return dg


def ok(pkt: bytes | None) -> bytes:
    """``pkt``, which must not be None."""
    assert pkt is not None
    return pkt


def encap(
    pkt: bytes, iid: int, role: str, sr: str, dr: str, hn: str, ts: float, **probe: Any
) -> bytes:
    """One encap record, which must succeed."""
    return ok(stamp_encap(pkt, iid=iid, role=role, sr=sr, dr=dr, hn=hn, ts=ts, **probe))


def decap(pkt: bytes, iid: int, role: str, sr: str, dr: str, hn: str, ts: float) -> bytes:
    """One decap record, which must succeed."""
    return ok(stamp_decap(pkt, iid=iid, role=role, sr=sr, dr=dr, hn=hn, ts=ts))


def segments(payload: bytes) -> tuple[TraceSegment, ...]:
    """The segments of a trace payload, which must have a body."""
    found = decode_trace(payload).segments
    assert found is not None
    return found


def message(pkt: bytes | None) -> TraceMessage:
    """The trace carried by the (valid) packet ``pkt``."""
    return decode_trace(assert_valid(pkt).payload)


# ---------------------------------------------------------------------------------------------
# The full round trip


@dataclass(frozen=True)
class Topology:
    eid_a: IPAddress  # the ltr client, behind xTR A
    eid_b: IPAddress  # the destination EID, behind xTR B
    xtr_a: IPAddress
    rtr: IPAddress
    xtr_b: IPAddress
    iid: int


TOPOLOGIES = {
    "v4-over-v4": Topology(
        V4("198.51.100.1"),
        V4("198.51.100.17"),
        V4("192.0.2.1"),
        V4("192.0.2.9"),
        V4("192.0.2.17"),
        0,
    ),
    "v6-over-v4": Topology(
        V6("2001:db8:100::1"),
        V6("2001:db8:100:1::1"),
        V4("192.0.2.1"),
        V4("192.0.2.9"),
        V4("192.0.2.17"),
        1000,
    ),
    "v4-over-v6": Topology(
        V4("198.51.100.1"),
        V4("198.51.100.17"),
        V6("2001:db8::1"),
        V6("2001:db8::9"),
        V6("2001:db8::17"),
        7,
    ),
}

PROBE: dict[str, Any] = {"rtts": [0.0123456, 0.011], "hops": ["1/1"], "lats": None}
RTR_PROBE: dict[str, Any] = {
    "rtts": [0.02, 0.021, 0.019, 0.5],
    "hops": ["2/2", "2/2", "2/3", "9/9"],
    "lats": ["?/?", "?/?", "?/?"],
}


@pytest.mark.parametrize("name", list(TOPOLOGIES))
def test_full_round_trip(name: str) -> None:
    t = TOPOLOGIES[name]
    a, r, b = str(t.xtr_a), str(t.rtr), str(t.xtr_b)
    iid = t.iid
    pkt0 = udp_packet(t.eid_a, t.eid_b, CLIENT_PORT, TRACE_PORT, first_payload())
    assert is_trace(pkt0)
    assert not needs_turnaround(pkt0, iid=iid)  # no segment yet

    # Forward path.
    pkt1 = encap(pkt0, iid, NODE_ITR, a, r, "xtr-a", 1000.5, **PROBE)
    pkt2 = decap(pkt1, iid, NODE_RTR, a, r, "rtr", 1001.25)
    pkt3 = encap(pkt2, iid, NODE_RTR, r, b, "rtr", 1001.5, **RTR_PROBE)
    pkt4 = decap(pkt3, iid, NODE_ETR, r, b, "xtr-b", 1002.0)
    for pkt in (pkt0, pkt1, pkt2, pkt3, pkt4):
        dg = assert_valid(pkt)
        assert (dg.ip.src, dg.sport, dg.ip.dst, dg.dport) == (
            t.eid_a,
            CLIENT_PORT,
            t.eid_b,
            TRACE_PORT,
        )
    assert needs_turnaround(pkt4, iid=iid)

    # The destination ETR turns it around and hands it to its ITR.
    pkt5 = ok(turn_around_packet(pkt4, iid=iid))
    dg5 = assert_valid(pkt5)
    assert (dg5.ip.src, dg5.sport, dg5.ip.dst, dg5.dport) == (
        t.eid_b,
        TRACE_PORT,
        t.eid_a,
        CLIENT_PORT,
    )
    assert not needs_turnaround(pkt5, iid=iid)
    assert turn_around_packet(pkt5, iid=iid) is None

    # Return path: records keyed by the new destination (the client's EID).
    pkt6 = encap(pkt5, iid, NODE_ITR, b, r, "xtr-b", 1002.25)
    pkt7 = decap(pkt6, iid, NODE_RTR, b, r, "rtr", 1003.0)
    pkt8 = encap(pkt7, iid, NODE_RTR, r, a, "rtr", 1003.5)
    pkt9 = decap(pkt8, iid, NODE_ETR, r, a, "xtr-a", 1004.0)
    for pkt in (pkt6, pkt7, pkt8, pkt9):
        dg = assert_valid(pkt)
        assert (dg.ip.src, dg.sport, dg.ip.dst, dg.dport) == (
            t.eid_b,
            TRACE_PORT,
            t.eid_a,
            CLIENT_PORT,
        )
    # Home: the ETR delivers it; no second turnaround.
    assert turn_around_packet(pkt9, iid=iid) is None
    assert not needs_turnaround(pkt9, iid=iid)

    # What did not change on the way: TTL/hop limit, TOS/traffic class, IP ID, flow label.
    final = parse_udp_datagram(pkt9)
    first = parse_udp_datagram(pkt0)
    swapped = replace(first.ip, src=first.ip.dst, dst=first.ip.src)  # type: ignore[arg-type]
    assert final.ip == swapped

    # The records.
    assert final.payload[:16] == REPLY_HEADER
    msg = decode_trace(final.payload)
    assert msg.segments is not None
    forward, back = msg.segments
    assert (forward.se, forward.de) == (f"[{iid}]{t.eid_a}", f"[{iid}]{t.eid_b}")
    assert (back.se, back.de) == (f"[{iid}]{t.eid_b}", f"[{iid}]{t.eid_a}")
    assert [(h.node, h.is_encap, h.sr, h.dr, h.hn, h.timestamp) for h in forward.paths] == [
        (NODE_ITR, True, f"{a}:{CLIENT_PORT}", r, "xtr-a", 1000.5),
        (NODE_RTR, False, a, r, "rtr", 1001.25),
        (NODE_RTR, True, r, b, "rtr", 1001.5),
        (NODE_ETR, False, r, b, "xtr-b", 1002.0),
    ]
    assert [(h.node, h.is_encap, h.sr, h.dr, h.hn, h.timestamp) for h in back.paths] == [
        (NODE_ITR, True, b, r, "xtr-b", 1002.25),
        (NODE_RTR, False, b, r, "rtr", 1003.0),
        (NODE_RTR, True, r, a, "rtr", 1003.5),
        (NODE_ETR, False, r, a, "xtr-a", 1004.0),
    ]
    itr_a, _, rtr_fwd, _ = forward.paths
    assert itr_a.rtts == (0.012, 0.011, -1)
    assert itr_a.hops == ("1/1", "?/?", "?/?")
    assert itr_a.lats == ("?/?", "?/?", "?/?")
    assert rtr_fwd.rtts == (0.02, 0.021, 0.019)
    assert rtr_fwd.hops == ("2/2", "2/2", "2/3")
    for hop in (*forward.paths, *back.paths):
        if hop is not itr_a and hop is not rtr_fwd:
            assert hop.rtts is None and hop.hops is None and hop.lats is None


def test_ipv4_client_without_udp_checksum_gets_a_real_one() -> None:
    t = TOPOLOGIES["v4-over-v4"]
    pkt = udp_packet(t.eid_a, t.eid_b, CLIENT_PORT, TRACE_PORT, first_payload(), zero_checksum=True)
    assert parse_udp_datagram(pkt).zero_checksum
    out = stamp_encap(pkt, iid=0, role=NODE_ITR, sr="192.0.2.1", dr="192.0.2.9", hn="a", ts=1.0)
    assert_valid(out)


def test_ipv4_options_and_flags_are_kept() -> None:
    t = TOPOLOGIES["v4-over-v4"]
    options = b"\x01\x01\x01\x00"  # NOP NOP NOP EOL
    pkt = udp_packet(
        t.eid_a, t.eid_b, CLIENT_PORT, TRACE_PORT, first_payload(), options=options, ttl=3
    )
    assert is_trace(pkt)
    out = stamp_encap(pkt, iid=0, role=NODE_ITR, sr="192.0.2.1", dr="192.0.2.9", hn="a", ts=1.0)
    dg = assert_valid(out)
    assert isinstance(dg.ip, IPv4Header)
    assert (dg.ip.options, dg.ip.ttl, dg.ip.tos, dg.ip.ident, dg.ip.dont_fragment) == (
        options,
        3,
        0x28,
        0x1234,
        True,
    )
    turned = turn_around_packet(decap(ok(out), 0, NODE_ETR, "1.1.1.1", "2.2.2.2", "b", 2.0), iid=0)
    back = assert_valid(turned)
    assert isinstance(back.ip, IPv4Header)
    assert (back.ip.options, back.ip.ttl, back.ip.ident) == (options, 3, 0x1234)


def test_bad_udp_checksum_is_not_stamped() -> None:
    t = TOPOLOGIES["v6-over-v4"]
    pkt = bytearray(udp_packet(t.eid_a, t.eid_b, CLIENT_PORT, TRACE_PORT, first_payload()))
    pkt[46] ^= 0xFF  # UDP checksum
    assert is_trace(pkt)
    assert stamp_encap(pkt, iid=1000, role="ITR", sr="x", dr="y", hn="h", ts=1.0) is None


def test_no_segment_for_the_current_destination_stamps_nothing() -> None:
    msg = TraceMessage(
        local_port=0,
        local_rloc=V4(0),
        nonce=NONCE,
        segments=(TraceSegment(se="[0]198.51.100.1", de="[0]198.51.100.99"),),
    )
    pkt = udp_packet(
        V4("198.51.100.1"), V4("198.51.100.17"), CLIENT_PORT, TRACE_PORT, encode_trace(msg)
    )
    assert stamp_encap(pkt, iid=0, role="ITR", sr="a", dr="b", hn="h", ts=1.0) is None
    assert stamp_decap(pkt, iid=0, role="ETR", sr="a", dr="b", hn="h", ts=1.0) is None
    # Another instance-ID does not match either.
    assert stamp_decap(pkt, iid=1, role="ETR", sr="a", dr="b", hn="h", ts=1.0) is None


def test_segment_written_another_way_still_matches() -> None:
    msg = TraceMessage(
        local_port=0,
        local_rloc=V4(0),
        nonce=NONCE,
        segments=(TraceSegment(se="[5]2001:DB8:100::1", de="[5]2001:DB8:100:1:0:0:0:1"),),
    )
    pkt = udp_packet(
        V6("2001:db8:100::1"), V6("2001:db8:100:1::1"), CLIENT_PORT, TRACE_PORT, encode_trace(msg)
    )
    out = stamp_decap(pkt, iid=5, role="ETR", sr="192.0.2.9", dr="192.0.2.17", hn="b", ts=1.0)
    (seg,) = segments(assert_valid(out).payload)
    assert seg.de == "[5]2001:DB8:100:1:0:0:0:1"  # kept as written
    assert len(seg.paths) == 1


def test_first_packet_not_to_port_2434_starts_no_trace() -> None:
    pkt = udp_packet(
        V4("198.51.100.17"), V4("198.51.100.1"), TRACE_PORT, CLIENT_PORT, first_payload()
    )
    assert is_trace(pkt)
    assert stamp_encap(pkt, iid=0, role="ITR", sr="a", dr="b", hn="h", ts=1.0) is None


def test_decap_first_creates_segment_without_port() -> None:
    t = TOPOLOGIES["v4-over-v4"]
    pkt = udp_packet(t.eid_a, t.eid_b, CLIENT_PORT, TRACE_PORT, first_payload())
    out = stamp_decap(pkt, iid=0, role=NODE_ETR, sr="192.0.2.1", dr="192.0.2.17", hn="b", ts=2.0)
    msg = message(out)
    assert msg.segments is not None
    assert msg.segments[0].paths[0].sr == "192.0.2.1"


# ---------------------------------------------------------------------------------------------
# Golden vector: the exact JSON in lispers.net's spelling


def test_golden_json_of_first_itr_record() -> None:
    pkt = udp_packet(
        V4("198.51.100.1"), V4("198.51.100.17"), CLIENT_PORT, TRACE_PORT, first_payload()
    )
    out = stamp_encap(
        pkt,
        iid=0,
        role=NODE_ITR,
        sr="192.0.2.1",
        dr=rloc_text(V4("192.0.2.9"), 4341),
        hn="xtr-a",
        ts=1700000000.123,
        rtts=[0.0123456, 2, -1, 0.4],
        hops=["2/2", "2/?"],
        lats=None,
    )
    payload = assert_valid(out).payload
    assert payload[:16] == REPLY_HEADER
    assert payload[16:].decode("ascii") == (
        '[{"se": "[0]198.51.100.1", "de": "[0]198.51.100.17", "paths": [{"n": "ITR", '
        '"sr": "192.0.2.1:50000", "hn": "xtr-a", "ets": 1700000000.123, "dr": "192.0.2.9", '
        '"rtts": [0.012, 2.0, -1], "hops": ["2/2", "2/?", "?/?"], '
        '"lats": ["?/?", "?/?", "?/?"]}]}]'
    )


def test_golden_json_of_decap_and_error_records() -> None:
    pkt = udp_packet(
        V4("198.51.100.1"), V4("198.51.100.17"), CLIENT_PORT, TRACE_PORT, first_payload()
    )
    out = stamp_encap(
        pkt, iid=0, role="ITR", sr="192.0.2.1", dr=rloc_text(V4("192.0.2.9"), 61000), hn="a", ts=1.5
    )
    out = decap(ok(out), 0, "RTR", "192.0.2.1", "192.0.2.9", "r", 2.5)
    answer = error_return(
        out,
        iid=0,
        role="RTR",
        sr="192.0.2.9",
        hn="r",
        ts=3.5,
        reason=REASON_NO_REACHABLE_RLOCS,
    )
    assert answer is not None
    payload, address, port = answer
    assert (address, port) == (V4("192.0.2.1"), CLIENT_PORT)
    expected_json = (
        b'[{"se": "[0]198.51.100.1", "de": "[0]198.51.100.17", "paths": ['
        b'{"n": "ITR", "sr": "192.0.2.1:50000", "hn": "a", "ets": 1.5, "dr": "192.0.2.9:61000"}, '
        b'{"n": "RTR", "sr": "192.0.2.1", "hn": "r", "dts": 2.5, "dr": "192.0.2.9"}, '
        b'{"n": "RTR", "sr": "192.0.2.9", "hn": "r", "ets": 3.5, '
        b'"dr": "? (No reachable RLOCs found)"}]}]'
    )
    assert payload == REPLY_HEADER + expected_json
    # The same as json.dumps with its defaults, the way lispers.net writes it.
    assert payload[16:].decode() == json.dumps(json.loads(payload[16:]))


def test_probe_data_normalisation() -> None:
    pkt = udp_packet(
        V4("198.51.100.1"), V4("198.51.100.17"), CLIENT_PORT, TRACE_PORT, first_payload()
    )
    out = stamp_encap(
        pkt,
        iid=0,
        role="ITR",
        sr="s",
        dr="d",
        hn="h",
        ts=1.0,
        rtts=[float("nan"), -0.5, True, 10**400],
        hops=None,
        lats=cast(list[str], ["1/2", 3, "5/6", "7/8"]),
    )
    hop = segments(assert_valid(out).payload)[0].paths[0]
    assert hop.rtts == (-1, -1, -1)
    assert all(type(x) is int for x in hop.rtts)
    assert hop.hops == ("?/?", "?/?", "?/?")
    assert hop.lats == ("1/2", "?/?", "5/6")
    # None of the three: none written.
    out = stamp_encap(pkt, iid=0, role="ITR", sr="s", dr="d", hn="h", ts=1.0)
    hop = segments(assert_valid(out).payload)[0].paths[0]
    assert (hop.rtts, hop.hops, hop.lats) == (None, None, None)


def test_rloc_text_and_return_key() -> None:
    assert rloc_text(V4("192.0.2.9")) == "192.0.2.9"
    assert rloc_text(V4("192.0.2.9"), 4341) == "192.0.2.9"
    assert rloc_text(V4("192.0.2.9"), 61000) == "192.0.2.9:61000"
    assert rloc_text(V6("2001:db8::9"), 61000) == "2001:db8::9:61000"
    assert return_key(V4("192.0.2.130"), 50000) == "192.0.2.130:50000"


# ---------------------------------------------------------------------------------------------
# Error returns


def test_map_cache_miss_at_first_itr_returns_to_client() -> None:
    pkt = udp_packet(
        V4("198.51.100.1"), V4("198.51.100.17"), CLIENT_PORT, TRACE_PORT, first_payload()
    )
    answer = error_return(
        pkt,
        iid=0,
        role=NODE_ITR,
        sr="192.0.2.1",
        hn="xtr-a",
        ts=5.0,
        reason=REASON_MAP_CACHE_MISS,
    )
    assert answer is not None
    payload, address, port = answer
    assert (address, port) == (CLIENT_RLOC, CLIENT_PORT)
    assert struct.unpack_from("!II", payload) == (REPLY_WORD0, 0)
    msg = decode_trace(payload)
    assert msg.nonce == NONCE
    assert msg.segments == (
        TraceSegment(
            se="[0]198.51.100.1",
            de="[0]198.51.100.17",
            paths=(
                TraceHop.encap(NODE_ITR, "192.0.2.1:50000", "? (map-cache miss)", "xtr-a", 5.0),
            ),
        ),
    )


def test_rtr_error_goes_to_first_itr_and_through_nat_cache() -> None:
    t = TOPOLOGIES["v6-over-v4"]
    pkt = udp_packet(t.eid_a, t.eid_b, CLIENT_PORT, TRACE_PORT, first_payload())
    pkt = encap(pkt, 1000, NODE_ITR, "192.0.2.1", "192.0.2.9", "a", 1.0)
    pkt = decap(pkt, 1000, NODE_RTR, "192.0.2.1", "192.0.2.9", "r", 2.0)
    kwargs: dict[str, Any] = {
        "iid": 1000,
        "role": NODE_RTR,
        "sr": "192.0.2.9",
        "hn": "r",
        "ts": 3.0,
    }
    answer = error_return(pkt, reason=REASON_MAP_CACHE_MISS, **kwargs)
    assert answer is not None
    payload, address, port = answer
    assert (address, port) == (V4("192.0.2.1"), CLIENT_PORT)
    hops = segments(payload)[0].paths
    assert [h.node for h in hops] == [NODE_ITR, NODE_RTR, NODE_RTR]
    assert hops[-1].dr == "? (map-cache miss)" and hops[-1].is_encap and hops[-1].rtts is None
    nat = {"192.0.2.1:50000": (V4("203.0.113.5"), 61001)}
    answer = error_return(pkt, reason=None, nat_cache=nat, **kwargs)
    assert answer is not None
    assert answer[1:] == (V4("203.0.113.5"), 61001)
    assert segments(answer[0])[0].paths[-1].dr == "?"


def test_first_itr_error_over_ipv6_rloc_with_ambiguous_port() -> None:
    """ "2001:db8::1:5000" is itself an IPv6 address: a later hop cannot split it (lispers.net
    writes no brackets), but the first ITR knows its address and the client's port."""
    pkt = udp_packet(
        V4("198.51.100.1"), V4("198.51.100.17"), 5000, TRACE_PORT, first_payload(port=5000)
    )
    answer = error_return(
        pkt, iid=0, role=NODE_ITR, sr="2001:db8::1", hn="a", ts=1.0, reason=REASON_NOT_AN_EID
    )
    assert answer is not None
    assert answer[1:] == (V6("2001:db8::1"), 5000)
    hop = segments(answer[0])[0].paths[0]
    assert (hop.sr, hop.dr) == ("2001:db8::1:5000", "? (not an EID)")
    # Further down the path the same record reads as an address without a port.
    stamped = encap(pkt, 0, NODE_ITR, "2001:db8::1", "2001:db8::9", "a", 1.0)
    assert error_return(stamped, iid=0, role=NODE_RTR, sr="r", hn="r", ts=2.0, reason="x") is None


def test_error_without_return_address_is_none() -> None:
    t = TOPOLOGIES["v4-over-v4"]
    pkt = udp_packet(t.eid_a, t.eid_b, CLIENT_PORT, TRACE_PORT, first_payload())
    decapped = stamp_decap(pkt, iid=0, role=NODE_RTR, sr="192.0.2.1", dr="x", hn="r", ts=1.0)
    assert decapped is not None
    assert error_return(decapped, iid=0, role=NODE_RTR, sr="s", hn="r", ts=2.0, reason="x") is None


def test_client_rloc_key() -> None:
    assert client_rloc_key(first_payload(50000, V4("192.0.2.130"))) == "192.0.2.130:50000"
    assert client_rloc_key(REPLY_HEADER + b"[]") is None  # a trace with a body: not the bare one
    assert client_rloc_key(b"\x90\x00") is None
    assert client_rloc_key(b"\x10" + bytes(15)) is None


def test_trace_context_delegates() -> None:
    ctx = TraceContext(node_name="xtr-a", iid=0)
    pkt = udp_packet(
        V4("198.51.100.1"), V4("198.51.100.17"), CLIENT_PORT, TRACE_PORT, first_payload()
    )
    out = ctx.encap(pkt, role=NODE_ITR, sr="192.0.2.1", dr="192.0.2.9", ts=1.0)
    assert out == stamp_encap(
        pkt, iid=0, role=NODE_ITR, sr="192.0.2.1", dr="192.0.2.9", hn="xtr-a", ts=1.0
    )
    assert out is not None
    d = ctx.decap(out, role=NODE_ETR, sr="a", dr="b", ts=2.0)
    assert d is not None and ctx.needs_turnaround(d)
    assert ctx.turn_around(d) == turn_around_packet(d, iid=0)
    err = ctx.error(pkt, role=NODE_ITR, sr="192.0.2.1", ts=1.0, reason=REASON_MAP_CACHE_MISS)
    assert err is not None and err[1:] == (CLIENT_RLOC, CLIENT_PORT)
    with pytest.raises(AttributeError):
        ctx.iid = 1  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# is_trace


def _v4(sport: int = CLIENT_PORT, dport: int = TRACE_PORT, options: bytes = b"") -> bytes:
    src, dst = V4("198.51.100.1"), V4("198.51.100.17")
    return udp_packet(src, dst, sport, dport, b"x" * 16, options=options)


def _v6(sport: int = CLIENT_PORT, dport: int = TRACE_PORT) -> bytes:
    return udp_packet(V6("2001:db8:100::1"), V6("2001:db8:100::2"), sport, dport, b"x" * 16)


def _set(pkt: bytes, index: int, value: int) -> bytes:
    buf = bytearray(pkt)
    buf[index] = value
    return bytes(buf)


IS_TRACE_CASES = {
    "v4 to 2434": (_v4(), True),
    "v4 from 2434": (_v4(TRACE_PORT, CLIENT_PORT), True),
    "v4 with options": (_v4(options=b"\x01" * 8), True),
    "v6 to 2434": (_v6(), True),
    "v6 from 2434": (_v6(TRACE_PORT, 40000), True),
    "v4 other ports": (_v4(4341, 4342), False),
    "v4 port 2434 byte-swapped": (_v4(CLIENT_PORT, 0x8209), False),
    "v6 other ports": (_v6(1234, 53), False),
    "v4 tcp": (_set(_v4(), 9, 6), False),
    "v6 tcp": (_set(_v6(), 6, 6), False),
    "v6 hop-by-hop header first": (_set(_v6(), 6, 0), False),
    "v4 more fragments": (_set(_v4(), 6, 0x20 | 0x40), False),
    "v4 fragment offset": (_set(_v4(), 7, 1), False),
    "v4 fragment offset high bits": (_set(_v4(), 6, 0x41), False),
    "v4 DF alone is fine": (_set(_v4(), 6, 0x40), True),
    "v4 ihl below 5": (_set(_v4(), 0, 0x44), False),
    "v4 ihl past the end": (_set(_v4()[:40], 0, 0x4F), False),
    "version 5": (_set(_v4(), 0, 0x55), False),
    "v4 truncated to 27": (_v4()[:27], False),
    "v4 truncated to ports": (_v4()[:28], True),
    "v6 truncated to 47": (_v6()[:47], False),
    "empty": (b"", False),
}


@pytest.mark.parametrize("case", list(IS_TRACE_CASES))
def test_is_trace(case: str) -> None:
    pkt, expected = IS_TRACE_CASES[case]
    assert is_trace(pkt) is expected
    assert is_trace(bytearray(pkt)) is expected


@settings(max_examples=500, deadline=None)
@given(
    st.booleans(),
    st.sampled_from([6, 17, 132, 1]),
    st.sampled_from([TRACE_PORT, 4341, 53, 0x8209, 0x0900, 50000]),
    st.sampled_from([TRACE_PORT, 4342, 443, 0x0982 + 1, 61000]),
    st.booleans(),
)
def test_is_trace_agrees_with_parse_inner(
    v6: bool, proto: int, sport: int, dport: int, swap: bool
) -> None:
    if swap:
        sport, dport = dport, sport
    pkt = _v6(sport, dport) if v6 else _v4(sport, dport)
    pkt = _set(pkt, 6 if v6 else 9, proto)
    flow = parse_inner(pkt)
    assert flow is not None
    expected = proto == 17 and TRACE_PORT in (sport, dport)
    assert is_trace(pkt) is expected
    assert flow_is_trace(flow.protocol, flow.ports) is expected


# ---------------------------------------------------------------------------------------------
# Garbage never raises

_FUZZ = settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _run_everything(pkt: bytes) -> None:
    for inner in (pkt, bytearray(pkt)):
        is_trace(inner)
        needs_turnaround(inner, iid=0)
        for out in (
            stamp_encap(
                inner,
                iid=0,
                role="ITR",
                sr="192.0.2.1",
                dr="192.0.2.9",
                hn="h",
                ts=1.0,
                rtts=[0.1],
                hops=["1/1"],
                lats=["?/?"],
            ),
            stamp_decap(inner, iid=0, role="RTR", sr="192.0.2.1", dr="192.0.2.9", hn="h", ts=1.0),
            turn_around_packet(inner, iid=0),
        ):
            if out is not None:
                assert_valid(out)
        answer = error_return(inner, iid=0, role="RTR", sr="s", hn="h", ts=1.0, reason="x")
        if answer is not None:
            decode_trace(answer[0])
    client_rloc_key(pkt)


@_FUZZ
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data: bytes) -> None:
    _run_everything(data)


@_FUZZ
@given(st.sampled_from([4, 6]), st.binary(min_size=0, max_size=80))
def test_fuzz_random_bytes_after_trace_looking_headers(version: int, rest: bytes) -> None:
    """Headers that pass is_trace (UDP to 2434), with random lengths and payload behind."""
    if version == 4:
        head = bytes([0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 198, 51, 100, 1, 198, 51, 100, 17])
    else:
        head = bytes([0x60, 0, 0, 0, 0, 0, 17, 64]) + bytes(15) + b"\x01" + bytes(15) + b"\x02"
    _run_everything(head + b"\xc3\x50\x09\x82" + rest)


_bodies = st.one_of(
    st.binary(max_size=120),
    st.text(alphabet='[]{}",: 0123456789.-eEntrufalsNIy\\sedpath', max_size=120).map(str.encode),
    st.sampled_from(
        [
            b"[]",
            b'[{"se": "[0]198.51.100.1", "de": "[0]198.51.100.17", "paths": []}]',
            b'[{"se": "x", "de": "[0]198.51.100.17", "paths": [{"n": "ITR", "sr": "zz", '
            b'"hn": "h", "ets": 1, "dr": "d"}]}]',
            b'[{"se": "[0]198.51.100.1", "de": "[4294967295]::", "paths": []}]',
            b'[{"se": "[0]198.51.100.1", "de": "[99999999999]1.2.3.4", "paths": []}]',
            b'[{"se": "a", "de": "b", "paths": []}, {"se": "b", "de": "a", "paths": []}]',
        ]
    ),
)


@_FUZZ
@given(
    st.booleans(),
    st.binary(min_size=16, max_size=16),
    _bodies,
    st.booleans(),
    st.booleans(),
)
def test_fuzz_valid_framing_random_trace_payloads(
    v6: bool, header: bytes, body: bytes, reply: bool, to_trace_port: bool
) -> None:
    """Well-formed IP/UDP carrying a random header (type 9 or not) and body, both directions."""
    head = bytes([0x90 if reply else header[0]]) + header[1:]
    sport, dport = (CLIENT_PORT, TRACE_PORT) if to_trace_port else (TRACE_PORT, CLIENT_PORT)
    pkt = (
        udp_packet(V6("2001:db8:100::1"), V6("2001:db8:100::2"), sport, dport, head + body)
        if v6
        else udp_packet(V4("198.51.100.1"), V4("198.51.100.17"), sport, dport, head + body)
    )
    _run_everything(pkt)


@_FUZZ
@given(st.data())
def test_fuzz_mutated_stamped_packets(data: st.DataObject) -> None:
    """A stamped packet with a few bytes flipped, cut or inserted: in the whole packet (framing
    and checksums broken) or in its trace payload only (framing rebuilt valid around it)."""
    t = TOPOLOGIES[data.draw(st.sampled_from(list(TOPOLOGIES)))]
    pkt = udp_packet(t.eid_a, t.eid_b, CLIENT_PORT, TRACE_PORT, first_payload())
    stamped = stamp_encap(
        pkt, iid=t.iid, role="ITR", sr=str(t.xtr_a), dr=str(t.rtr), hn="a", ts=1.0
    )
    stamped = decap(ok(stamped), t.iid, "RTR", "a", "b", "r", 2.0)
    whole = data.draw(st.booleans())
    buf = bytearray(stamped if whole else parse_udp_datagram(stamped).payload)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert", "set"]))
        if kind == "cut":
            del buf[data.draw(st.integers(0, len(buf))) :]
        elif kind == "insert":
            buf.insert(data.draw(st.integers(0, len(buf))), data.draw(st.integers(0, 255)))
        elif buf:
            i = data.draw(st.integers(0, len(buf) - 1))
            if kind == "flip":
                buf[i] ^= 1 << data.draw(st.integers(0, 7))
            else:
                buf[i] = data.draw(st.sampled_from(list(b'[]{}",:0?9')))
    if whole:
        _run_everything(bytes(buf))
    else:
        _run_everything(udp_packet(t.eid_a, t.eid_b, CLIENT_PORT, TRACE_PORT, bytes(buf)))
        _run_everything(udp_packet(t.eid_b, t.eid_a, TRACE_PORT, CLIENT_PORT, bytes(buf)))
