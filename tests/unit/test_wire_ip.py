"""Unit tests of lispd.wire.ip: IPv4/IPv6 + UDP framing and checksums.

The checksums in the golden vectors were added up by hand (RFC 1071 ones' complement sum);
IPv6 checksums are cross-checked against a small independent implementation below.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

import pytest

from lispd.wire.errors import EncodeError, WireError
from lispd.wire.ip import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_UDP,
    IPv4Header,
    IPv6Header,
    UdpDatagram,
    build_ip_header,
    build_udp_datagram,
    internet_checksum,
    parse_ip_header,
    parse_udp_datagram,
    udp_checksum,
)

A4 = IPv4Address("192.0.2.1")
B4 = IPv4Address("192.0.2.2")
A6 = IPv6Address("2001:db8::1")
B6 = IPv6Address("2001:db8::2")


def ref_sum(data: bytes) -> int:
    """Independent RFC 1071 checksum (byte-pair loop, end-around carry each step)."""
    if len(data) % 2:
        data += b"\x00"
    acc = 0
    for i in range(0, len(data), 2):
        acc += (data[i] << 8) | data[i + 1]
        acc = (acc & 0xFFFF) + (acc >> 16)
    return (~acc) & 0xFFFF


def ref_udp6_checksum(src: IPv6Address, dst: IPv6Address, segment: bytes) -> int:
    """Independent IPv6 UDP checksum (RFC 8200 8.1 pseudo-header)."""
    pseudo = src.packed + dst.packed + len(segment).to_bytes(4, "big") + b"\x00\x00\x00\x11"
    value = ref_sum(pseudo + segment[:6] + b"\x00\x00" + segment[8:])
    return value or 0xFFFF


# --- checksums ------------------------------------------------------------------------------------


def test_internet_checksum_rfc1071_example() -> None:
    # RFC 1071 section 3 example words 0001 f203 f4f5 f6f7: sum ddf2, checksum 220d.
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_internet_checksum_odd_length_pads_with_zero() -> None:
    assert internet_checksum(b"\x01") == 0xFEFF
    assert internet_checksum(b"\x01\x02\x03") == internet_checksum(b"\x01\x02\x03\x00")


def test_internet_checksum_of_checksummed_header_is_zero() -> None:
    header = build_ip_header(IPv4Header(A4, B4, ttl=7, tos=0xB8, ident=0x1234), 100)
    assert internet_checksum(header) == 0
    assert ref_sum(header) == 0


@pytest.mark.parametrize("data", [b"", b"\x00\x00", b"\xff\xff", bytes(range(256)) * 3])
def test_internet_checksum_matches_reference(data: bytes) -> None:
    assert internet_checksum(data) == ref_sum(data)


def test_udp_checksum_zero_result_is_sent_as_ffff() -> None:
    ip = IPv4Header(A4, B4)
    base = struct.pack("!HHHH", 4342, 4342, 10, 0)
    c = udp_checksum(ip, base + b"\x00\x00")
    # Adding c as a payload word makes the ones' complement sum 0xFFFF, i.e. checksum 0.
    assert udp_checksum(ip, base + c.to_bytes(2, "big")) == 0xFFFF


# --- golden IPv4 ----------------------------------------------------------------------------------

GOLDEN_V4_HEADER = bytes.fromhex(
    "45"  # version 4, IHL 5
    "00"  # TOS 0
    "003c"  # total length 60 (20 + 40 payload)
    "0000"  # identification 0
    "4000"  # DF, offset 0
    "40"  # TTL 64
    "11"  # protocol 17 UDP
    "e580"  # header checksum (hand sum 0x31a7c -> 0x1a7f -> ~ = 0xe580)
    "c6336401"  # source 198.51.100.1
    "c63364c8"  # destination 198.51.100.200
)


def test_golden_ipv4_header() -> None:
    ip = IPv4Header(IPv4Address("198.51.100.1"), IPv4Address("198.51.100.200"))
    assert build_ip_header(ip, 40) == GOLDEN_V4_HEADER
    parsed, hlen, end = parse_ip_header(GOLDEN_V4_HEADER + bytes(40))
    assert (parsed, hlen, end) == (ip, 20, 60)


GOLDEN_V4_UDP = bytes.fromhex(
    "45"  # version 4, IHL 5
    "00"  # TOS
    "001e"  # total length 30
    "0000"  # identification
    "4000"  # DF
    "40"  # TTL 64
    "11"  # UDP
    "b6cb"  # header checksum (hand sum 0x24932 -> 0x4934 -> ~ = 0xb6cb)
    "c0000201"  # 192.0.2.1
    "c0000202"  # 192.0.2.2
    "10f6"  # source port 4342
    "10f6"  # destination port 4342
    "000a"  # UDP length 10
    "47b6"  # UDP checksum (pseudo-header + segment sum 0x1b848 -> 0xb849 -> ~ = 0x47b6)
    "1234"  # payload
)


def test_golden_ipv4_udp_datagram() -> None:
    dg = UdpDatagram(IPv4Header(A4, B4), 4342, 4342, b"\x12\x34")
    assert build_udp_datagram(dg) == GOLDEN_V4_UDP
    assert parse_udp_datagram(GOLDEN_V4_UDP, verify_checksum=True) == dg


def test_golden_ipv4_udp_zero_checksum() -> None:
    dg = UdpDatagram(IPv4Header(A4, B4), 4342, 4342, b"\x12\x34", zero_checksum=True)
    wire = build_udp_datagram(dg)
    assert wire == GOLDEN_V4_UDP[:26] + b"\x00\x00" + GOLDEN_V4_UDP[28:]
    assert parse_udp_datagram(wire, verify_checksum=True) == dg


# --- IPv6 -----------------------------------------------------------------------------------------


def test_ipv6_header_layout() -> None:
    ip = IPv6Header(A6, B6, hop_limit=9, traffic_class=0xB8, flow_label=0xABCDE)
    wire = build_ip_header(ip, 300)
    assert wire == bytes.fromhex(
        "6b8abcde"  # version 6, traffic class 0xb8, flow label 0xabcde
        "012c"  # payload length 300
        "11"  # next header UDP
        "09"  # hop limit 9
        "20010db8000000000000000000000001"  # source
        "20010db8000000000000000000000002"  # destination
    )
    assert parse_ip_header(wire + bytes(300)) == (ip, 40, 340)


def test_ipv6_udp_checksum_independent() -> None:
    dg = UdpDatagram(IPv6Header(A6, B6), 61000, 4342, b"lisp control payload")
    wire = build_udp_datagram(dg)
    segment = wire[40:]
    stored = int.from_bytes(segment[6:8], "big")
    assert stored != 0
    assert stored == ref_udp6_checksum(A6, B6, segment)
    assert stored == udp_checksum(dg.ip, segment[:6] + b"\x00\x00" + segment[8:])
    assert parse_udp_datagram(wire, verify_checksum=True) == dg


# --- round trips ----------------------------------------------------------------------------------

DATAGRAMS = [
    UdpDatagram(IPv4Header(A4, B4), 4342, 4342, b""),
    UdpDatagram(IPv4Header(A4, B4, ttl=1, tos=0xFF, ident=0xFFFF), 1, 65535, b"x" * 1000),
    UdpDatagram(IPv4Header(A4, B4, dont_fragment=False), 4341, 4341, b"abc", zero_checksum=True),
    UdpDatagram(IPv4Header(A4, B4, options=b"\x01\x01\x01\x00"), 4342, 4342, b"\x00"),
    UdpDatagram(IPv4Header(A4, B4, options=bytes(40)), 4342, 4342, b"opts"),
    UdpDatagram(IPv6Header(A6, B6), 4342, 4342, b""),
    UdpDatagram(IPv6Header(A6, B6, 255, 0xFF, 0xFFFFF), 50000, 4341, b"y" * 777),
    UdpDatagram(IPv6Header(A6, B6, 0, 0, 0), 4341, 4341, b"z", zero_checksum=True),
]


@pytest.mark.parametrize("dg", DATAGRAMS, ids=range(len(DATAGRAMS)))
def test_datagram_round_trip(dg: UdpDatagram) -> None:
    wire = build_udp_datagram(dg)
    assert parse_udp_datagram(wire, verify_checksum=True) == dg
    assert build_udp_datagram(parse_udp_datagram(wire)) == wire


@pytest.mark.parametrize("dg", DATAGRAMS, ids=range(len(DATAGRAMS)))
def test_datagram_lengths(dg: UdpDatagram) -> None:
    wire = build_udp_datagram(dg)
    ip, hlen, end = parse_ip_header(wire)
    assert end == len(wire)
    assert int.from_bytes(wire[hlen + 4 : hlen + 6], "big") == 8 + len(dg.payload)
    if isinstance(ip, IPv4Header):
        assert hlen == 20 + len(ip.options)
        assert wire[0] == 0x40 | (hlen // 4)


def test_link_layer_padding_is_left_out() -> None:
    dg = UdpDatagram(IPv4Header(A4, B4), 4342, 4342, b"abcd")
    wire = build_udp_datagram(dg)
    _, _, end = parse_ip_header(wire + bytes(18))
    assert end == len(wire)
    assert parse_udp_datagram(wire + bytes(18), verify_checksum=True) == dg


def test_partial_packet_keeps_the_stated_end() -> None:
    """A capture cut short: with ``partial`` the header is read and the end the header states
    returned; without it the packet is truncated.  The header itself must be whole."""
    v4 = build_udp_datagram(UdpDatagram(IPv4Header(A4, B4, options=b"\x01" * 4), 1, 2, bytes(500)))
    v6 = build_udp_datagram(UdpDatagram(IPv6Header(A6, B6), 1, 2, bytes(500)))
    for wire, hlen in ((v4, 24), (v6, 40)):
        whole = parse_ip_header(wire)
        assert parse_ip_header(wire[: hlen + 1], partial=True) == whole
        assert parse_ip_header(wire, partial=True) == whole
        with pytest.raises(WireError) as info:
            parse_ip_header(wire[: hlen + 1])
        assert info.value.reason == "truncated"
        with pytest.raises(WireError) as info:
            parse_ip_header(wire[: hlen - 1], partial=True)  # the header is cut
        assert info.value.reason == "truncated"


def test_ipv4_flag_bits() -> None:
    ip = IPv4Header(A4, B4, dont_fragment=False, more_fragments=True, fragment_offset=0x1FFF)
    wire = build_ip_header(ip, 0)
    assert wire[6:8] == b"\x3f\xff"
    assert parse_ip_header(wire)[0] == ip


# --- decode errors --------------------------------------------------------------------------------


def reason(data: bytes, verify: bool = False) -> str:
    with pytest.raises(WireError) as info:
        parse_udp_datagram(data, verify_checksum=verify)
    return info.value.reason


def test_empty_packet() -> None:
    assert reason(b"") == "truncated"


@pytest.mark.parametrize("version", [0, 5, 7, 15])
def test_bad_ip_version(version: int) -> None:
    assert reason(bytes([version << 4 | 5]) + bytes(39)) == "bad-ip-version"


def test_ipv4_ihl_too_small() -> None:
    wire = bytearray(GOLDEN_V4_UDP)
    wire[0] = 0x44
    assert reason(bytes(wire)) == "bad-length"


def test_ipv4_total_smaller_than_header() -> None:
    wire = bytearray(GOLDEN_V4_UDP)
    wire[2:4] = (19).to_bytes(2, "big")
    assert reason(bytes(wire)) == "bad-length"


def test_ipv4_total_beyond_buffer() -> None:
    wire = bytearray(GOLDEN_V4_UDP)
    wire[2:4] = (31).to_bytes(2, "big")
    assert reason(bytes(wire)) == "truncated"


def test_ipv6_payload_beyond_buffer() -> None:
    wire = bytearray(build_udp_datagram(UdpDatagram(IPv6Header(A6, B6), 1, 2, b"abc")))
    wire[4:6] = (12).to_bytes(2, "big")
    assert reason(bytes(wire)) == "truncated"


@pytest.mark.parametrize(
    "ip",
    [IPv4Header(A4, B4, more_fragments=True), IPv4Header(A4, B4, fragment_offset=1)],
    ids=["MF", "offset"],
)
def test_ipv4_fragments_refused(ip: IPv4Header) -> None:
    wire = build_udp_datagram(UdpDatagram(ip, 4342, 4342, b"frag"))
    assert reason(wire) == "bad-protocol"


def test_non_udp_refused() -> None:
    wire4 = build_ip_header(IPv4Header(A4, B4, protocol=PROTO_ICMP), 8) + bytes(8)
    assert reason(wire4) == "bad-protocol"
    wire6 = build_ip_header(IPv6Header(A6, B6, next_header=PROTO_ICMPV6), 8) + bytes(8)
    assert reason(wire6) == "bad-protocol"


def test_ip_payload_shorter_than_udp_header() -> None:
    wire = build_ip_header(IPv4Header(A4, B4), 7) + bytes(7)
    assert reason(wire) == "truncated"


@pytest.mark.parametrize("udp_len", [0, 7, 11])
def test_bad_udp_length(udp_len: int) -> None:
    wire = bytearray(GOLDEN_V4_UDP)
    wire[24:26] = udp_len.to_bytes(2, "big")
    assert reason(bytes(wire)) == "bad-length"


def test_udp_length_shorter_than_ip_payload_trims_payload() -> None:
    wire = bytearray(GOLDEN_V4_UDP)
    wire[24:26] = (9).to_bytes(2, "big")
    assert parse_udp_datagram(bytes(wire)).payload == b"\x12"


def test_bad_checksum_detected_only_when_asked() -> None:
    wire = bytearray(GOLDEN_V4_UDP)
    wire[-1] ^= 0x01  # corrupt the payload
    assert parse_udp_datagram(bytes(wire)).payload == b"\x12\x35"
    assert reason(bytes(wire), verify=True) == "bad-field"


def test_bad_ipv6_checksum_detected() -> None:
    wire = bytearray(build_udp_datagram(UdpDatagram(IPv6Header(A6, B6), 1, 2, b"abc")))
    wire[46] ^= 0x80  # checksum high byte
    assert reason(bytes(wire), verify=True) == "bad-field"


@pytest.mark.parametrize("dg", DATAGRAMS, ids=range(len(DATAGRAMS)))
def test_every_truncation_raises_wire_error(dg: UdpDatagram) -> None:
    wire = build_udp_datagram(dg)
    for cut in range(len(wire)):
        with pytest.raises(WireError):
            parse_udp_datagram(wire[:cut])


# --- encode errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ip",
    [
        IPv4Header(A4, B4, options=b"\x01"),
        IPv4Header(A4, B4, options=bytes(44)),
        IPv4Header(A4, B4, ttl=256),
        IPv4Header(A4, B4, tos=-1),
        IPv4Header(A4, B4, ident=1 << 16),
        IPv4Header(A4, B4, protocol=256),
        IPv6Header(A6, B6, hop_limit=256),
        IPv6Header(A6, B6, next_header=-1),
    ],
    ids=repr,
)
def test_header_field_out_of_range(ip) -> None:
    with pytest.raises(EncodeError):
        build_ip_header(ip, 8)


def test_ipv4_packet_too_long() -> None:
    with pytest.raises(EncodeError):
        build_ip_header(IPv4Header(A4, B4), 0xFFFF - 19)
    build_ip_header(IPv4Header(A4, B4), 0xFFFF - 20)


def test_ipv6_payload_too_long() -> None:
    with pytest.raises(EncodeError):
        build_ip_header(IPv6Header(A6, B6), 0x10000)


def test_udp_datagram_too_long() -> None:
    with pytest.raises(EncodeError):
        build_udp_datagram(UdpDatagram(IPv6Header(A6, B6), 1, 2, bytes(0xFFFF - 7)))


@pytest.mark.parametrize(("sport", "dport"), [(65536, 4342), (4342, -1)])
def test_udp_port_out_of_range(sport: int, dport: int) -> None:
    with pytest.raises(EncodeError):
        build_udp_datagram(UdpDatagram(IPv4Header(A4, B4), sport, dport, b""))


def test_ipv6_traffic_class_out_of_range() -> None:
    with pytest.raises(EncodeError):
        build_ip_header(IPv6Header(A6, B6, traffic_class=256), 0)


def test_ipv6_flow_label_out_of_range() -> None:
    with pytest.raises(EncodeError):
        build_ip_header(IPv6Header(A6, B6, flow_label=1 << 20), 0)


def test_ipv4_fragment_offset_out_of_range() -> None:
    with pytest.raises(EncodeError):
        build_ip_header(IPv4Header(A4, B4, dont_fragment=False, fragment_offset=0x2000), 0)


def test_protocol_constants() -> None:
    assert (PROTO_UDP, PROTO_ICMP, PROTO_ICMPV6) == (17, 1, 58)
