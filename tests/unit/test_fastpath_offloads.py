"""The compiled fast path's TCP offloads: ``_accel.segment`` splits a TUN super-packet (TSO) as
the kernel's GSO does, and ``_accel.merge`` turns consecutive segments of one flow back into a
super-packet for a TUN with a virtio-net header (what the ETR writes after UDP GRO).

There is no Python reference for these: the segments are checked field by field against what
TCP segmentation must produce, and merging is checked by segmenting its output again.
"""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lispd.wire.data import DATA_HEADER_LEN
from lispd.wire.ip import internet_checksum
from tests.unit.fastpath_packets import (
    ACK,
    CWR,
    ECE,
    FIN,
    PROTO_TCP,
    PSH,
    RST,
    SYN,
    URG,
    VNET_F_NEEDS_CSUM,
    VNET_GSO_TCPV4,
    VNET_GSO_TCPV6,
    addresses,
    ipv4,
    ipv4_checksum_ok,
    ipv6,
    lisp_header,
    packed,
    pseudo_header,
    read_vnet,
    require_accel,
    tcp_packet,
    tcp_segment,
    tcp_view,
    timestamp_option,
    transport_checksum_ok,
    udp_packet,
    vnet_header,
)

_accel = require_accel()

V4 = (packed("198.51.100.7"), packed("203.0.113.9"))
V6 = (packed("2001:db8:1::7"), packed("2001:db8:2::9"))
ZERO_VNET = bytes(10)


def pseudo_sum(pkt: bytes) -> int:
    """The folded pseudo-header sum (not complemented) of a TCP/IP packet: what a
    CHECKSUM_PARTIAL packet holds in its checksum field."""
    view = tcp_view(pkt)
    src, dst = addresses(pkt)
    length = len(pkt) - view.l3len
    return ~internet_checksum(pseudo_header(src, dst, PROTO_TCP, length)) & 0xFFFF


def with_partial_checksum(pkt: bytes) -> bytes:
    """``pkt`` as the TUN hands a super-packet over: the TCP checksum field holds the
    pseudo-header sum only (the device is to finish it)."""
    at = tcp_view(pkt).l3len + 16
    return pkt[:at] + pseudo_sum(pkt).to_bytes(2, "big") + pkt[at + 2 :]


def super_header(pkt: bytes, gso_size: int) -> bytes:
    """The virtio-net header the kernel puts in front of a TCP super-packet."""
    view = tcp_view(pkt)
    gso_type = VNET_GSO_TCPV4 if view.version == 4 else VNET_GSO_TCPV6
    hdrs = view.l3len + view.l4len
    return vnet_header(VNET_F_NEEDS_CSUM, gso_type, hdrs, gso_size, view.l3len, 16)


# --- segmentation ----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    version=st.sampled_from([4, 6]),
    df=st.booleans(),
    timestamps=st.booleans(),
    size=st.one_of(st.integers(1, 3000), st.integers(1, 64000)),
    gso_size=st.integers(500, 1448),
    extra=st.sets(st.sampled_from([FIN, PSH, CWR, ECE])),
    seq=st.one_of(st.integers(0, 2**32 - 1), st.integers(2**32 - 70000, 2**32 - 1)),
    ident=st.one_of(st.integers(0, 65535), st.integers(65500, 65535)),
    seed=st.integers(0, 2**16),
)
def test_segment_splits_a_super_packet_like_tso(
    version: int,
    df: bool,
    timestamps: bool,
    size: int,
    gso_size: int,
    extra: set[int],
    seq: int,
    ident: int,
    seed: int,
) -> None:
    payload = random.Random(seed).randbytes(size)
    flags = ACK | sum(extra)
    options = timestamp_option(123456, 654321) if timestamps else b""
    src, dst = V4 if version == 4 else V6
    ip = {"df": df, "ident": ident, "tos": 0xB8, "ttl": 61} if version == 4 else {"hlim": 61}
    pkt = tcp_packet(
        src, dst, ip, seq=seq, flags=flags, payload=payload, options=options, window=4321
    )
    original = tcp_view(pkt)
    hdrs = original.l3len + original.l4len
    segments = _accel.segment(super_header(pkt, gso_size), with_partial_checksum(pkt))

    assert len(segments) == -(-size // gso_size)
    assert b"".join(tcp_view(s).payload for s in segments) == payload
    last = len(segments) - 1
    for k, seg in enumerate(segments):
        view = tcp_view(seg)
        assert len(seg) == hdrs + min(gso_size, size - k * gso_size)
        assert len(view.payload) == (gso_size if k < last else size - last * gso_size)
        assert seg[original.l3len + 20 : hdrs] == options  # options copied as they are
        assert view.seq == (seq + k * gso_size) & 0xFFFFFFFF
        expected = flags
        if k > 0:
            expected &= ~CWR  # congestion window reduced: said once, on the first
        if k < last:
            expected &= ~(FIN | PSH)  # the end of the data: on the last only
        assert view.flags == expected
        assert seg[original.l3len + 14 : original.l3len + 16] == (4321).to_bytes(2, "big")
        assert transport_checksum_ok(seg)
        if version == 4:
            assert view.ip_length == len(seg)
            assert view.ident == (ident + k) & 0xFFFF
            assert ipv4_checksum_ok(seg)
            assert bool(seg[6] & 0x40) == df and seg[1] == 0xB8 and seg[8] == 61
            assert seg[12:20] == pkt[12:20]
        else:
            assert view.ip_length == len(seg) - 40
            assert seg[:4] == pkt[:4] and seg[6:40] == pkt[6:40]


def test_segment_of_a_super_packet_with_ipv4_options_copies_them() -> None:
    options = b"\x94\x04\x00\x00"  # router alert
    pkt = tcp_packet(*V4, {"options": options}, payload=bytes(range(256)) * 8)
    segments = _accel.segment(super_header(pkt, 700), pkt)
    assert [len(tcp_view(s).payload) for s in segments] == [700, 700, 648]
    for seg in segments:
        assert seg[20:24] == options and ipv4_checksum_ok(seg) and transport_checksum_ok(seg)


def test_segment_of_a_packet_smaller_than_gso_size_is_that_packet() -> None:
    pkt = tcp_packet(*V4, payload=b"x" * 100, flags=ACK | PSH | FIN | CWR)
    assert _accel.segment(super_header(pkt, 1448), with_partial_checksum(pkt)) == [pkt]
    empty = tcp_packet(*V6, payload=b"", flags=ACK)
    assert _accel.segment(super_header(empty, 1448), empty) == [empty]


def test_segment_refuses_what_is_not_a_tcp_super_packet() -> None:
    pkt = tcp_packet(*V4, payload=bytes(3000))
    udp = udp_packet(*V4, payload=bytes(3000))
    bad_offset = bytearray(pkt)
    bad_offset[32] = 0x40  # TCP data offset 4 words (< 20 bytes)
    cases = [
        (super_header(pkt, 0), pkt),  # gso_size 0
        (super_header(pkt, 1000), udp),  # not TCP
        (super_header(pkt, 1000), pkt[:30]),  # shorter than the headers
        (super_header(pkt, 1000), bytes(bad_offset)),
        (super_header(pkt, 1000), b"\x75" + pkt[1:]),  # IP version 7
        (super_header(pkt, 10), pkt),  # 300 segments: more than the engine splits
        (b"\x00" * 9, pkt),  # not a virtio-net header
    ]
    for header, packet in cases:
        with pytest.raises(ValueError):
            _accel.segment(header, packet)


# --- merging ---------------------------------------------------------------------------------


def flow(
    version: int,
    sizes: list[int],
    *,
    seq: int = 1_000_000,
    ident: int = 100,
    flags: list[int] | None = None,
    timestamps: bool = True,
    sport: int = 40000,
) -> list[bytes]:
    """Consecutive segments of one TCP flow (IPv4 IDs consecutive too) with payloads of
    ``sizes`` bytes and ``flags`` (ACK each by default)."""
    src, dst = V4 if version == 4 else V6
    options = timestamp_option(777, 888) if timestamps else b""
    out = []
    for k, size in enumerate(sizes):
        ip = {"ident": (ident + k) & 0xFFFF} if version == 4 else {}
        out.append(
            tcp_packet(
                src,
                dst,
                ip,
                sport=sport,
                seq=seq,
                flags=flags[k] if flags else ACK,
                payload=bytes((seq + i) & 0xFF for i in range(size)),
                options=options,
            )
        )
        seq = (seq + size) & 0xFFFFFFFF
    return out


def check_merged(output: bytes, group: list[bytes]) -> None:
    """``output`` (virtio-net header + packet) is what merging ``group`` must give: the
    packet as it was for one segment; for more, a super-packet whose header says TSO with the
    first segment's size and whose checksum is left partial, and which segments back into
    ``group`` byte for byte."""
    header, packet = output[:10], output[10:]
    if len(group) == 1:
        assert header == ZERO_VNET and packet == group[0]
        return
    first = tcp_view(group[0])
    vnet = read_vnet(header)
    assert vnet.flags == VNET_F_NEEDS_CSUM
    assert vnet.gso_type == (VNET_GSO_TCPV4 if first.version == 4 else VNET_GSO_TCPV6)
    assert vnet.gso_size == len(first.payload)
    assert vnet.hdr_len == first.l3len + first.l4len
    assert (vnet.csum_start, vnet.csum_offset) == (first.l3len, 16)
    view = tcp_view(packet)
    assert view.payload == b"".join(tcp_view(s).payload for s in group)
    if view.version == 4:
        assert view.ip_length == len(packet) and ipv4_checksum_ok(packet)
    else:
        assert view.ip_length == len(packet) - 40
    assert packet[view.l3len + 16 : view.l3len + 18] == pseudo_sum(packet).to_bytes(2, "big")
    assert transport_checksum_ok(_accel.complete_checksum(header, packet))
    assert _accel.segment(header, packet) == group


def check_merge(packets: list[bytes], groups: list[list[int]]) -> list[bytes]:
    """Merge ``packets``; the outputs must be ``groups`` (indices into ``packets``), in
    order."""
    out = _accel.merge(packets)
    assert len(out) == len(groups), [read_vnet(o) for o in out]
    for output, group in zip(out, groups, strict=True):
        check_merged(output, [packets[i] for i in group])
    return out


@settings(max_examples=60, deadline=None)
@given(
    version=st.sampled_from([4, 6]),
    count=st.integers(2, 64),
    mss=st.integers(1, 1448),
    short_last=st.integers(0, 1447),
    push=st.booleans(),
    timestamps=st.booleans(),
    seq=st.one_of(st.integers(0, 2**32 - 1), st.integers(2**32 - 100000, 2**32 - 1)),
    ident=st.integers(0, 65535),
)
def test_merge_then_segment_gives_back_the_segments(
    version: int,
    count: int,
    mss: int,
    short_last: int,
    push: bool,
    timestamps: bool,
    seq: int,
    ident: int,
) -> None:
    sizes = [mss] * count
    if 0 < short_last < mss:
        sizes[-1] = short_last
    hdrs = (20 if version == 4 else 40) + (32 if timestamps else 20)
    while hdrs + sum(sizes) > 65535:
        sizes.pop()
    flags = [ACK] * (len(sizes) - 1) + [ACK | PSH if push else ACK]
    segments = flow(version, sizes, seq=seq, ident=ident, flags=flags, timestamps=timestamps)
    check_merge(segments, [list(range(len(segments)))])


def test_merge_caps_at_64_segments_and_64k() -> None:
    check_merge(flow(4, [100] * 70), [list(range(64)), list(range(64, 70))])
    per = (65535 - 52) // 1448  # IPv4 + TCP with timestamps: 52 bytes of headers
    check_merge(flow(4, [1448] * 50), [list(range(per)), list(range(per, 50))])
    per6 = (65535 - 72) // 1448
    check_merge(flow(6, [1448] * 50), [list(range(per6)), list(range(per6, 50))])


def replace_tcp(pkt: bytes, **changes: int) -> bytes:
    """``pkt`` (IPv4 or IPv6, TCP) rebuilt with other TCP fields (ack, window, flags, urgent,
    options as a tsval), checksums valid."""
    view = tcp_view(pkt)
    src, dst = addresses(pkt)
    th = pkt[view.l3len :]
    sport, dport, seq, ack = struct.unpack_from("!HHII", th)
    (window,) = struct.unpack_from("!H", th, 14)
    options = th[20 : view.l4len]
    if "tsval" in changes:
        options = timestamp_option(changes.pop("tsval"), 888)
    segment = tcp_segment(
        src,
        dst,
        sport=sport,
        dport=dport,
        seq=seq,
        ack=changes.pop("ack", ack),
        flags=changes.pop("flags", view.flags),
        payload=view.payload,
        window=changes.pop("window", window),
        options=options,
        urgent=changes.pop("urgent", 0),
    )
    assert not changes
    if view.version == 4:
        ident = struct.unpack_from("!H", pkt, 4)[0]
        return ipv4(src, dst, PROTO_TCP, segment, ident=ident, ttl=pkt[8], tos=pkt[1])
    return ipv6(src, dst, PROTO_TCP, segment, hlim=pkt[7])


def replace_ip(pkt: bytes, **changes: int) -> bytes:
    """An IPv4 TCP packet rebuilt with other IP fields (ttl, tos, df, mf, ident, options)."""
    view = tcp_view(pkt)
    src, dst = addresses(pkt)
    ip = {"ttl": pkt[8], "tos": pkt[1], "ident": view.ident, "df": bool(pkt[6] & 0x40)}
    ip.update(changes)
    return ipv4(src, dst, PROTO_TCP, pkt[view.l3len :], **ip)  # type: ignore[arg-type]


def _with(segments: list[bytes], at: int, new: bytes) -> list[bytes]:
    """``segments`` with the one at index ``at`` replaced by ``new``."""
    return [*segments[:at], new, *segments[at + 1 :]]


A = flow(4, [1000] * 4)
A6 = flow(6, [1000] * 4)
B = flow(4, [1000] * 4, sport=40001)
U = udp_packet(*V4, payload=b"between")

MERGE_CASES: list[tuple[str, list[bytes], list[list[int]]]] = [
    ("one-flow", A, [[0, 1, 2, 3]]),
    ("one-flow-v6", A6, [[0, 1, 2, 3]]),
    ("one-segment", A[:1], [[0]]),
    ("two-flows-interleaved", [A[0], B[0], A[1], B[1]], [[0], [1], [2], [3]]),
    ("two-flows-one-after-the-other", [A[0], A[1], B[0], B[1]], [[0, 1], [2, 3]]),
    ("v4-then-v6", [A[0], A6[0], A6[1]], [[0], [1, 2]]),
    ("gap", [A[0], A[2], A[3]], [[0], [1, 2]]),
    ("repeat", [A[0], A[0], A[1]], [[0], [1, 2]]),
    ("udp-between", [A[0], U, A[1], A[2]], [[0], [1], [2, 3]]),
    ("pure-ack-between", [A[0], flow(4, [0])[0], A[1]], [[0], [1], [2]]),
    ("shorter-ends", flow(4, [1000, 1000, 400, 1000]), [[0, 1, 2], [3]]),
    ("longer-starts-anew", flow(4, [400, 1000, 1000]), [[0], [1, 2]]),
    ("psh-ends", flow(4, [1000] * 4, flags=[ACK, ACK | PSH, ACK, ACK]), [[0, 1], [2, 3]]),
    ("psh-first-alone", flow(4, [1000] * 3, flags=[ACK | PSH, ACK, ACK]), [[0], [1, 2]]),
    ("fin", flow(4, [1000] * 3, flags=[ACK, ACK, ACK | FIN]), [[0, 1], [2]]),
    ("syn", flow(4, [1000] * 3, flags=[ACK, ACK | SYN, ACK]), [[0], [1], [2]]),
    ("rst", flow(4, [1000] * 3, flags=[ACK, ACK, RST | ACK]), [[0, 1], [2]]),
    ("urg", _with(A, 1, replace_tcp(A[1], flags=ACK | URG, urgent=5)), [[0], [1], [2, 3]]),
    ("ece", flow(4, [1000] * 3, flags=[ACK, ACK | ECE, ACK]), [[0], [1], [2]]),
    ("cwr", flow(4, [1000] * 3, flags=[ACK | CWR, ACK, ACK]), [[0], [1, 2]]),
    ("no-ack", flow(4, [1000] * 2, flags=[ACK, 0]), [[0], [1]]),
    ("other-ack", _with(A, 1, replace_tcp(A[1], ack=5001)), [[0], [1], [2, 3]]),
    ("other-window", _with(A, 2, replace_tcp(A[2], window=1)), [[0, 1], [2], [3]]),
    ("other-timestamp", _with(A, 2, replace_tcp(A[2], tsval=778)), [[0, 1], [2], [3]]),
    ("other-ttl", _with(A, 1, replace_ip(A[1], ttl=1)), [[0], [1], [2, 3]]),
    ("other-tos", _with(A, 1, replace_ip(A[1], tos=3)), [[0], [1], [2, 3]]),
    ("other-df", _with(A, 1, replace_ip(A[1], df=False)), [[0], [1], [2, 3]]),
    ("fragment", _with(A, 1, replace_ip(A[1], mf=True)), [[0], [1], [2, 3]]),
    ("ipv4-options", [replace_ip(p, options=b"\x01" * 4) for p in A], [[0], [1], [2], [3]]),
    ("v6-other-hop-limit", [A6[0], ipv6(*V6, PROTO_TCP, A6[1][40:], hlim=1)], [[0], [1]]),
    ("v6-other-class", [A6[0], ipv6(*V6, PROTO_TCP, A6[1][40:], tclass=4)], [[0], [1]]),
    ("v6-other-label", [A6[0], ipv6(*V6, PROTO_TCP, A6[1][40:], flow=5)], [[0], [1]]),
    (
        "v6-extension",
        [ipv6(*V6, 0, b"\x06\x00" + bytes(6) + p[40:]) for p in A6],
        [[0], [1], [2], [3]],
    ),
]


@pytest.mark.parametrize(
    ("packets", "groups"), [c[1:] for c in MERGE_CASES], ids=[c[0] for c in MERGE_CASES]
)
def test_merge_decisions(packets: list[bytes], groups: list[list[int]]) -> None:
    """What merges and what ends a merge: one flow's consecutive data segments (ACK, PSH on
    the last) with the same IP and TCP header fields but the IPv4 ID, sequence number and
    checksums; anything else is written as it came, after the merge so far."""
    check_merge(packets, groups)


def test_merged_super_packet_gets_consecutive_ipv4_ids() -> None:
    """By design the merger ignores IPv4 IDs (as GRO does for DF segments); segmenting the
    merged packet numbers its segments from the first one's ID, so a jump in the IDs of the
    segments received is not reproduced."""
    packets = _with(A, 2, replace_ip(A[2], ident=9))
    (merged,) = _accel.merge(packets)
    again = _accel.segment(merged[:10], merged[10:])
    assert [tcp_view(p).ident for p in packets] == [100, 101, 9, 103]
    assert [tcp_view(p).ident for p in again] == [100, 101, 102, 103]
    assert again[:2] == packets[:2] and again[3] == packets[3]
    assert tcp_view(again[2]).payload == tcp_view(packets[2]).payload


def test_merge_output_is_a_valid_super_packet_for_the_kernel() -> None:
    """What the kernel checks of a virtio-net GSO packet: header length covers IP + TCP, the
    checksum start and offset point at the TCP checksum, and the payload is a multiple of
    gso_size but for the last segment."""
    (merged,) = _accel.merge(flow(6, [1200, 1200, 1200, 700]))
    vnet, packet = read_vnet(merged), merged[10:]
    view = tcp_view(packet)
    assert vnet.hdr_len == view.l3len + view.l4len
    assert vnet.csum_start + vnet.csum_offset == view.l3len + 16
    assert len(view.payload) == 3 * vnet.gso_size + 700


def test_merge_does_not_launder_a_bad_tcp_checksum() -> None:
    segments = flow(4, [1000] * 3)
    corrupt = bytearray(segments[1])
    corrupt[-1] ^= 0xFF  # one payload byte changed after the sender's checksum
    packets = [segments[0], bytes(corrupt), segments[2]]
    assert not transport_checksum_ok(packets[1])
    delivered: list[bytes] = []
    for output in _accel.merge(packets):
        if output[:10] == ZERO_VNET:
            delivered.append(output[10:])
        else:
            done = _accel.complete_checksum(output[:10], output[10:])
            delivered.extend(_accel.segment(output[:10], done))
    bad = [p for p in delivered if tcp_view(p).payload == tcp_view(packets[1]).payload]
    assert bad and not any(transport_checksum_ok(p) for p in bad)


def test_merge_accepts_bytes_only_and_leaves_other_packets_alone() -> None:
    with pytest.raises(TypeError):
        _accel.merge([bytearray(A[0])])
    garbage = [b"", b"\x45", bytes(40), b"\x60" + bytes(59)]
    assert _accel.merge(garbage) == [ZERO_VNET + g for g in garbage]
    assert _accel.merge([]) == []


# --- what the TUN reader leaves to Python ------------------------------------------------------


@pytest.fixture
def tun() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A stand-in for the TUN device: a datagram socket pair (one read, one packet), the
    engine reading the second, the test writing the first."""
    ours, engines = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    engines.setblocking(False)
    yield ours, engines
    ours.close()
    engines.close()


def engine_on(tun_fd: int, *, vnet: bool, mtu: int = 1500) -> Any:
    """An ITR engine reading ``tun_fd`` with an empty map table: every packet is punted."""
    engine = _accel.Engine(itr=True, mtu=mtu, tun_fd=tun_fd, vnet=vnet, gso=vnet)
    engine.db_set(0, packed("198.51.100.0"), 24)
    return engine


def test_from_tun_punts_a_super_packet_as_its_segments(
    tun: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = tun
    engine = engine_on(theirs.fileno(), vnet=True)
    pkt = tcp_packet(*V4, {"ident": 7}, payload=bytes(range(256)) * 20, flags=ACK | PSH)
    ours.send(super_header(pkt, 1448) + with_partial_checksum(pkt))
    small = udp_packet(*V4, payload=b"after")
    ours.send(ZERO_VNET + small)
    punted = engine.from_tun()
    assert punted[:-1] == _accel.segment(super_header(pkt, 1448), pkt)
    assert [len(tcp_view(p).payload) for p in punted[:-1]] == [1448, 1448, 1448, 776]
    assert punted[-1] == small
    assert all(transport_checksum_ok(p) for p in punted[:-1])
    counters = engine.counters()["fastpath"]
    assert (counters["tun-superpackets"], counters["punted-tun"]) == (1, 5)


def test_from_tun_completes_a_partial_checksum_before_punting(
    tun: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = tun
    engine = engine_on(theirs.fileno(), vnet=True)
    pkt = udp_packet(*V6, payload=b"partial")
    at = 40 + 6
    src, dst = addresses(pkt)
    partial = ~internet_checksum(pseudo_header(src, dst, 17, len(pkt) - 40)) & 0xFFFF
    ours.send(
        vnet_header(1, 0, 0, 0, 40, 6) + pkt[:at] + partial.to_bytes(2, "big") + pkt[at + 2 :]
    )
    assert engine.from_tun() == [pkt]


def test_from_tun_without_a_virtio_header_punts_packets_as_they_are(
    tun: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = tun
    engine = engine_on(theirs.fileno(), vnet=False)
    packets = [udp_packet(*V4, payload=bytes(n)) for n in (0, 100, 1400)] + [b"\x45"]
    for p in packets:
        ours.send(p)
    assert engine.from_tun() == packets


def test_from_tun_punts_super_packets_of_a_jumbo_tun(
    tun: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = tun
    engine = engine_on(theirs.fileno(), vnet=True, mtu=9000)
    pkt = tcp_packet(*V4, payload=bytes(20000))
    ours.send(super_header(pkt, 8000) + pkt)
    punted = engine.from_tun()
    assert engine.counters()["drops"]["tso-unsupported"] == 0
    assert punted == _accel.segment(super_header(pkt, 8000), pkt)


# --- what the ETR writes to the TUN ------------------------------------------------------------


@dataclass
class EtrIo:
    """An ETR engine (virtio-net TUN with offloads) whose TUN and 4341 socket are datagram
    socket pairs, and the test's ends of them."""

    engine: Any
    udp_fd: int  # the engine's end of the 4341 socket
    udp: socket.socket  # where the test sends datagrams
    tun: socket.socket  # where the test reads what the engine wrote to the TUN


@pytest.fixture
def etr_io() -> Iterator[EtrIo]:
    """See :class:`EtrIo`."""
    tun_ours, tun_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    udp_ours, udp_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    tun_ours.setblocking(False)
    udp_theirs.setblocking(False)
    engine = _accel.Engine(etr=True, tun_fd=tun_theirs.fileno(), vnet=True, gso=True)
    engine.db_set(0, packed("203.0.113.0"), 24)
    yield EtrIo(engine, udp_theirs.fileno(), udp_ours, tun_ours)
    for s in (tun_ours, tun_theirs, udp_ours, udp_theirs):
        s.close()


def tun_written(tun_end: socket.socket) -> list[bytes]:
    """Everything the engine wrote to the TUN so far."""
    out = []
    while True:
        try:
            out.append(tun_end.recv(70000))
        except BlockingIOError:
            return out


def test_from_udp_merges_segments_once_the_itr_is_known(
    etr_io: EtrIo,
) -> None:
    engine, udp, tun_end = etr_io.engine, etr_io.udp, etr_io.tun
    segments = flow(4, [1000] * 5)
    for s in segments:
        udp.send(lisp_header() + s)
    punted = engine.from_udp(etr_io.udp_fd)
    # the first datagram of a new ITR goes to Python (which remembers ITRs to SMR them)
    assert [p[0] for p in punted] == [lisp_header() + segments[0]]
    (written,) = tun_written(tun_end)
    check_merged(written, segments[1:])
    counters = engine.counters()
    assert counters["packets"]["etr.decap.packets"] == 4
    assert counters["fastpath"]["merged-writes"] == 1
    more = flow(4, [1000, 1000, 300], seq=1_005_000, ident=105)
    for s in more:
        udp.send(lisp_header() + s)
    assert engine.from_udp(etr_io.udp_fd) == []
    (written,) = tun_written(tun_end)
    check_merged(written, more)  # a short segment ends a merge
    engine.forget_sources()
    udp.send(lisp_header() + segments[0])
    assert len(engine.from_udp(etr_io.udp_fd)) == 1 and tun_written(tun_end) == []


def test_from_udp_writes_what_does_not_merge_as_it_came(
    etr_io: EtrIo,
) -> None:
    engine, udp, tun_end = etr_io.engine, etr_io.udp, etr_io.tun
    packets = [udp_packet(*V4, payload=b"first"), *flow(4, [1000] * 2), udp_packet(*V4)]
    for p in packets:
        udp.send(lisp_header() + p)
    assert len(engine.from_udp(etr_io.udp_fd)) == 1
    written = tun_written(tun_end)
    assert len(written) == 2
    check_merged(written[0], packets[1:3])
    assert written[1] == ZERO_VNET + packets[3]


def test_from_udp_keeps_the_order_of_a_flow_around_a_punt(
    etr_io: EtrIo,
) -> None:
    engine, udp, tun_end = etr_io.engine, etr_io.udp, etr_io.tun
    segments = flow(4, [1000] * 3)
    for s in segments:
        udp.send(lisp_header() + s)
    order: list[tuple[str, bytes]] = []

    def python_path(payload: bytes, ttl: int, tos: int, src: str, port: int) -> None:
        # what the daemon's handler does with it: the TUN writes so far come before it
        order.extend(("tun", w) for w in tun_written(tun_end))
        order.append(("python", payload[DATA_HEADER_LEN:]))

    engine.from_udp(etr_io.udp_fd, python_path)
    order.extend(("tun", w) for w in tun_written(tun_end))
    assert order[0] == ("python", segments[0])  # nothing after it was written before it
    assert [kind for kind, _ in order] == ["python", "tun"]
    check_merged(order[1][1], segments[1:])


def test_interleaved_flows_leave_grouped_by_destination_each_flow_in_order() -> None:
    """Datagrams of flows to two RLOCs read interleaved from the TUN leave as one GSO burst
    per socket and RLOC (grouped at the flush), and every flow keeps its order."""
    tun_ours, tun_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    pool = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    rlocs = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        for s in pool + rlocs:
            s.bind(("127.0.0.1", 0))
        for s in rlocs:
            s.settimeout(2)
        tun_theirs.setblocking(False)  # the engine reads until EAGAIN
        engine = _accel.Engine(itr=True, tun_fd=tun_theirs.fileno(), vnet=False, gso=True)
        engine.set_pool(4, [s.fileno() for s in pool])
        engine.db_set(0, packed("198.51.100.0"), 28)
        for prefix, rloc in (("203.0.113.0", rlocs[0]), ("203.0.113.128", rlocs[1])):
            engine.map_set(
                0, packed(prefix), 25, [(packed("127.0.0.1"), rloc.getsockname()[1], 1, False)]
            )
        flows = [(dst, sport) for dst in ("203.0.113.9", "203.0.113.200") for sport in (7001, 7002)]
        sent = 12
        for seq in range(sent):
            for dst, sport in flows:  # every flow, one datagram at a time
                payload = f"{sport} {seq:04d}".encode()
                tun_ours.send(udp_packet(packed("198.51.100.1"), packed(dst), sport, 9, payload))
        assert engine.from_tun() == []
        seen: dict[tuple[int, int], list[int]] = {}
        for index, rloc in enumerate(rlocs):
            for _ in range(sent * 2):
                inner = rloc.recv(2048)[DATA_HEADER_LEN:]
                sport, seq = inner[28:].split()
                seen.setdefault((index, int(sport)), []).append(int(seq))
        assert seen == {key: list(range(sent)) for key in seen} and len(seen) == 4
        # 96 datagrams to 2 RLOCs from at most 2 sockets: at most 4 GSO bursts
        assert 1 <= engine.counters()["fastpath"]["gso-sends"] <= 4
        assert engine.counters()["packets"]["itr.encap.packets"] == sent * 4
    finally:
        for s in [tun_ours, tun_theirs, *pool, *rlocs]:
            s.close()


# --- UDP GSO on send: only when asked for (offloads = "gso") ----------------------------------


def itr_to_one_rloc(tun_end: socket.socket, sock: socket.socket, **options: Any) -> Any:
    """An ITR engine on a vnet TUN (``tun_end``) sending from ``sock``: local EIDs
    198.51.100.0/24, 203.0.113.0/24 mapped to the RLOC 192.0.2.9 (``options``: Engine's)."""
    engine = _accel.Engine(itr=True, mtu=1500, tun_fd=tun_end.fileno(), vnet=True, **options)
    engine.set_pool(4, [sock.fileno()])
    engine.db_set(0, packed("198.51.100.0"), 24)
    engine.map_set(0, packed("203.0.113.0"), 24, [(packed("192.0.2.9"), 4341, 1, False)])
    return engine


def super_packet_through(engine: Any) -> tuple[bytes, list[Any]]:
    """A 10,240-byte TCP super-packet (MSS 1400) read by ``engine``: the packet, the events."""
    pkt = tcp_packet(*V4, payload=bytes(range(256)) * 40, flags=ACK)
    return pkt, engine.fuzz_tun([super_header(pkt, 1400) + with_partial_checksum(pkt)])


@pytest.mark.parametrize("gso", [False, True])
def test_a_super_packet_leaves_as_datagrams_unless_gso_was_asked_for(
    tun: tuple[socket.socket, socket.socket], gso: bool
) -> None:
    """A TSO super-packet from a vnet TUN, segmented once: without ``gso`` (the default) each
    segment is a message of its own in the flush's sendmmsg, so no next hop can be handed an
    unsegmented burst; with it, the segments leave as one UDP GSO message.  The bytes sent
    are the same either way."""
    _, theirs = tun
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        engine = itr_to_one_rloc(theirs, sock, gso=gso)
        pkt, events = super_packet_through(engine)
        sends = [e for e in events if e[0] == "send"]
        assert len(sends) == len(events)  # nothing punted, nothing dropped
        segments = _accel.segment(super_header(pkt, 1400), pkt)
        datagrams = [d for send in sends for d in send[7]]
        assert [d[DATA_HEADER_LEN:] for d in datagrams] == segments and len(segments) == 8
        assert all(send[2] == packed("192.0.2.9") and send[3] == 4341 for send in sends)
        if gso:
            ((*_, seg, burst),) = sends
            assert seg == len(burst[0]) == DATA_HEADER_LEN + 40 + 1400
        else:
            assert [(send[6], len(send[7])) for send in sends] == [(0, 1)] * len(segments)
        assert engine.counters()["fastpath"]["gso-sends"] == (1 if gso else 0)
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("peers", "burst"), [(["192.0.2.9"], True), (["192.0.2.8", "2001:db8::9"], False), ([], False)]
)
def test_gso_peers_get_bursts_without_gso(
    tun: tuple[socket.socket, socket.socket], peers: list[str], burst: bool
) -> None:
    """``[dataplane] gso-rlocs``: without ``gso`` a run to an RLOC listed in ``gso_peers``
    still leaves as one UDP GSO burst (it reads 4341 from a UDP socket), any other RLOC gets
    separate datagrams."""
    _, theirs = tun
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        engine = itr_to_one_rloc(theirs, sock, gso=False, gso_peers=peers)
        _, events = super_packet_through(engine)
        sends = [e for e in events if e[0] == "send"]
        assert len(sends) == (1 if burst else 8)
        assert engine.counters()["fastpath"]["gso-sends"] == (1 if burst else 0)
    finally:
        sock.close()


def test_set_gso_turns_bursts_on_and_off_in_a_running_engine(
    tun: tuple[socket.socket, socket.socket],
) -> None:
    """``offloads = "auto"`` looking again: ``set_gso`` changes what the next flush does."""
    _, theirs = tun
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        engine = itr_to_one_rloc(theirs, sock, gso=False)
        sends_per_packet = []
        for flag in (True, False, True):
            engine.set_gso(flag)
            _, events = super_packet_through(engine)
            sends_per_packet.append(len([e for e in events if e[0] == "send"]))
        assert sends_per_packet == [1, 8, 1]
        assert engine.counters()["fastpath"]["gso-sends"] == 2
        with pytest.raises(TypeError):
            engine.set_gso()
    finally:
        sock.close()


def test_gso_peers_are_checked() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        _accel.Engine(itr=True, gso_peers=["192.0.2.300"])
    with pytest.raises(ValueError, match="at most 64"):
        _accel.Engine(itr=True, gso_peers=[f"192.0.2.{i}" for i in range(65)])
    with pytest.raises(TypeError):
        _accel.Engine(itr=True, gso_peers=[b"\xc0\x00\x02\x01"])


def test_without_gso_the_etr_still_merges_tcp_for_its_tun() -> None:
    """Merging decapsulated TCP segments into one TUN write is an offload between the engine
    and its own kernel: it goes with the vnet TUN, not with UDP GSO on send."""
    tun_ours, tun_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        engine = _accel.Engine(etr=True, tun_fd=tun_theirs.fileno(), vnet=True, gso=False)
        engine.db_set(0, packed("203.0.113.0"), 24)
        segments = flow(4, [1000] * 5)
        events = engine.fuzz_udp([(lisp_header() + s, 0) for s in segments])
        # the first datagram of a new ITR is punted (Python remembers ITRs), the rest merged
        assert [e[0] for e in events] == ["punt", "tun"], events
        check_merged(events[1][1], segments[1:])
        assert engine.counters()["fastpath"]["merged-writes"] == 1
    finally:
        tun_ours.close()
        tun_theirs.close()
