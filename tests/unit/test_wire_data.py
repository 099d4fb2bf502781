"""Unit tests of lispd.wire.data: the LISP data header and whole encapsulated packets.

Golden bytes are worked out by hand from RFC 9300 section 5 (the LISP header): first byte
``N L E V I R K K`` (0x80 0x40 0x20 0x10 0x08 0x04 0x03), 24 bits of nonce or src/dst
map-versions, then 32 LSBs or (I=1) a 24-bit instance-ID and 8 LSBs.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lispd.wire.data import (
    DATA_HEADER_LEN,
    IID_CONTROL,
    LISP_CONTROL_PORT,
    LISP_DATA_PORT,
    DataHeader,
    EncapsulatedPacket,
    build_data_header,
    decapsulate,
    decode_data_header,
    encapsulate,
    encode_data_header,
    read_data_header,
)
from lispd.wire.errors import EncodeError, WireError
from lispd.wire.ip import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    IPv4Header,
    IPv6Header,
    UdpDatagram,
    build_ip_header,
    build_udp_datagram,
    udp_checksum,
)

RLOC4_A = IPv4Address("192.0.2.1")
RLOC4_B = IPv4Address("192.0.2.5")
RLOC6_A = IPv6Address("2001:db8::1")
RLOC6_B = IPv6Address("2001:db8::5")


def ref_udp6_checksum(src: IPv6Address, dst: IPv6Address, segment: bytes) -> int:
    """Independent IPv6 UDP checksum: pseudo-header + segment with its checksum zeroed."""
    data = (
        src.packed
        + dst.packed
        + len(segment).to_bytes(4, "big")
        + b"\x00\x00\x00\x11"
        + segment[:6]
        + b"\x00\x00"
        + segment[8:]
    )
    if len(data) % 2:
        data += b"\x00"
    acc = 0
    for i in range(0, len(data), 2):
        acc += int.from_bytes(data[i : i + 2], "big")
    while acc >> 16:
        acc = (acc & 0xFFFF) + (acc >> 16)
    return (~acc & 0xFFFF) or 0xFFFF


# --- data header goldens --------------------------------------------------------------------------

HEADER_GOLDEN: list[tuple[str, bytes, DataHeader]] = [
    (
        "N+I",
        bytes.fromhex(
            "88"  # flags N (0x80) + I (0x08)
            "abcdef"  # nonce 0xABCDEF
            "123456"  # instance-ID 0x123456
            "03"  # LSBs 0x03 (8 bits because I=1)
        ),
        DataHeader(
            nonce_present=True,
            instance_id_present=True,
            nonce=0xABCDEF,
            instance_id=0x123456,
            lsbs=0x03,
        ),
    ),
    (
        "N+L+I",
        bytes.fromhex(
            "c8"  # flags N + L (0x40) + I
            "abcdef"  # nonce 0xABCDEF
            "123456"  # instance-ID 0x123456
            "03"  # LSBs 0x03
        ),
        DataHeader(
            nonce_present=True,
            lsb_enabled=True,
            instance_id_present=True,
            nonce=0xABCDEF,
            instance_id=0x123456,
            lsbs=0x03,
        ),
    ),
    (
        "V",
        bytes.fromhex(
            "10"  # flags V (0x10)
            "123456"  # source map-version 0x123, destination map-version 0x456
            "00000000"  # LSBs 0 (32 bits)
        ),
        DataHeader(map_version_present=True, source_map_version=0x123, dest_map_version=0x456),
    ),
    (
        "V+L",
        bytes.fromhex(
            "50"  # flags L + V
            "fff001"  # source map-version 0xFFF, destination map-version 0x001
            "80000001"  # LSBs: locators 0 and 31 up
        ),
        DataHeader(
            lsb_enabled=True,
            map_version_present=True,
            source_map_version=0xFFF,
            dest_map_version=0x001,
            lsbs=0x80000001,
        ),
    ),
    (
        "N+E",
        bytes.fromhex(
            "a0"  # flags N + E (0x20)
            "000001"  # nonce 1
            "00000000"  # LSBs 0
        ),
        DataHeader(nonce_present=True, echo_nonce_request=True, nonce=1),
    ),
    (
        "I-control",
        bytes.fromhex(
            "08"  # flags I
            "000000"  # no nonce
            "ffffff"  # instance-ID 0xFFFFFF (Data-Map-Notify)
            "00"  # LSBs 0
        ),
        DataHeader(instance_id_present=True, instance_id=IID_CONTROL),
    ),
    (
        "K=3",
        bytes.fromhex(
            "83"  # flags N + key-id 3
            "00abcd"  # nonce 0xABCD
            "00000000"  # LSBs
        ),
        DataHeader(nonce_present=True, key_id=3, nonce=0xABCD),
    ),
    ("empty", bytes(8), DataHeader()),
]


@pytest.mark.parametrize(("name", "wire", "hdr"), HEADER_GOLDEN, ids=[g[0] for g in HEADER_GOLDEN])
def test_golden_header_decode(name: str, wire: bytes, hdr: DataHeader) -> None:
    assert decode_data_header(wire) == hdr


@pytest.mark.parametrize(("name", "wire", "hdr"), HEADER_GOLDEN, ids=[g[0] for g in HEADER_GOLDEN])
def test_golden_header_encode(name: str, wire: bytes, hdr: DataHeader) -> None:
    assert encode_data_header(hdr) == wire


@pytest.mark.parametrize(
    ("field", "bit"),
    [
        ("nonce_present", 0x80),
        ("lsb_enabled", 0x40),
        ("echo_nonce_request", 0x20),
        ("map_version_present", 0x10),
        ("instance_id_present", 0x08),
        ("reserved_flag", 0x04),
    ],
)
def test_each_flag_alone(field: str, bit: int) -> None:
    hdr = DataHeader(**{field: True})
    wire = encode_data_header(hdr)
    assert wire == bytes([bit]) + bytes(7)
    assert decode_data_header(wire) == hdr


@pytest.mark.parametrize("key_id", [0, 1, 2, 3])
def test_key_id_bits(key_id: int) -> None:
    hdr = DataHeader(key_id=key_id)
    wire = encode_data_header(hdr)
    assert wire[0] == key_id
    assert decode_data_header(wire) == hdr


def test_n_and_v_together_read_as_nonce() -> None:
    wire = bytes.fromhex("90 abcdef 00000000")  # N + V: the field is a nonce (RFC 9300)
    hdr = decode_data_header(wire)
    assert hdr.nonce_present and hdr.map_version_present
    assert hdr.nonce == 0xABCDEF
    assert (hdr.source_map_version, hdr.dest_map_version) == (0, 0)
    assert encode_data_header(hdr) == wire


def test_low24_without_n_or_v_preserved() -> None:
    wire = bytes.fromhex("00 010203 04050607")
    hdr = decode_data_header(wire)
    assert hdr.nonce == 0x010203
    assert hdr.lsbs == 0x04050607
    assert encode_data_header(hdr) == wire


def test_lsbs_are_32_bits_without_i_and_8_bits_with_i() -> None:
    assert decode_data_header(bytes.fromhex("40000000ffffffff")).lsbs == 0xFFFFFFFF
    hdr = decode_data_header(bytes.fromhex("48000000ffffffff"))
    assert (hdr.instance_id, hdr.lsbs) == (0xFFFFFF, 0xFF)


def test_iid_property() -> None:
    assert DataHeader(instance_id_present=True, instance_id=7).iid == 7
    assert DataHeader(instance_id_present=False, instance_id=7).iid == 0
    assert decode_data_header(bytes.fromhex("00000000 12345603")).iid == 0


def test_decode_at_offset() -> None:
    wire = b"\xee" * 5 + HEADER_GOLDEN[0][1] + b"\xee"
    assert decode_data_header(wire, 5) == HEADER_GOLDEN[0][2]


@pytest.mark.parametrize("length", range(8))
def test_short_header_is_truncated(length: int) -> None:
    with pytest.raises(WireError) as info:
        decode_data_header(bytes(length))
    assert info.value.reason == "truncated"
    with pytest.raises(WireError):
        decode_data_header(bytes(8 + length), offset=length + 1)


@pytest.mark.parametrize(
    "hdr",
    [
        DataHeader(key_id=4),
        DataHeader(key_id=-1),
        DataHeader(nonce_present=True, nonce=1 << 24),
        DataHeader(nonce_present=True, nonce=-1),
        DataHeader(map_version_present=True, source_map_version=4096),
        DataHeader(map_version_present=True, dest_map_version=4096),
        DataHeader(map_version_present=True, dest_map_version=-1),
        DataHeader(instance_id_present=True, instance_id=1 << 24),
        DataHeader(instance_id_present=True, instance_id=5, lsbs=256),
        DataHeader(lsbs=1 << 32),
        DataHeader(lsbs=-1),
    ],
    ids=repr,
)
def test_header_encode_out_of_range(hdr: DataHeader) -> None:
    with pytest.raises(EncodeError):
        encode_data_header(hdr)


def test_constants() -> None:
    assert (LISP_DATA_PORT, LISP_CONTROL_PORT, DATA_HEADER_LEN, IID_CONTROL) == (
        4341,
        4342,
        8,
        0xFFFFFF,
    )


# --- the packet path's header: build_data_header / read_data_header -------------------------------


@given(st.integers(0, 0xFFFFFF), st.integers(0, 0xFFFFFE))
@settings(max_examples=300)
def test_built_header_agrees_with_the_full_codec(nonce: int, iid: int) -> None:
    raw = build_data_header(nonce, iid)
    h = decode_data_header(raw)
    assert h.nonce_present and h.instance_id_present and h.nonce == nonce and h.iid == iid
    assert raw == encode_data_header(h)
    assert read_data_header(raw) == (iid, 0)


@given(st.binary(min_size=DATA_HEADER_LEN, max_size=DATA_HEADER_LEN + 4))
@settings(max_examples=300)
def test_read_header_agrees_with_the_full_codec(data: bytes) -> None:
    h = decode_data_header(data)
    assert read_data_header(data) == (h.iid, h.key_id)


def test_read_header_without_iid_and_with_key_bits() -> None:
    assert read_data_header(bytes.fromhex("8000000100000003")) == (0, 0)
    assert read_data_header(bytes.fromhex("8a00000100000700")) == (7, 2)
    assert read_data_header(b"\x80\x00") is None


# --- whole packets --------------------------------------------------------------------------------

INNER_V4_HEADER_GOLDEN = bytes.fromhex(
    "45"  # version 4, IHL 5
    "00"  # TOS
    "0014"  # total length 20
    "0000"  # identification
    "4000"  # DF
    "3f"  # TTL 63
    "01"  # protocol ICMP
    "e6fe"  # checksum (hand sum 0x318fe -> 0x1901 -> ~ = 0xe6fe)
    "c6336401"  # 198.51.100.1
    "c6336482"  # 198.51.100.130
)

ENCAP_GOLDEN = (
    bytes.fromhex(
        "45"  # outer IPv4, IHL 5
        "00"  # TOS
        "0038"  # total length 56 = 20 + 8 + 8 + 20
        "0000"  # identification
        "4000"  # DF
        "40"  # TTL 64
        "11"  # UDP
        "b6ae"  # checksum (hand sum 0x2494f -> 0x4951 -> ~ = 0xb6ae)
        "c0000201"  # source RLOC 192.0.2.1
        "c0000205"  # destination RLOC 192.0.2.5
        "c001"  # UDP source port 49153
        "10f5"  # UDP destination port 4341
        "0024"  # UDP length 36 = 8 + 8 + 20
        "0000"  # UDP checksum zero (IPv4 LISP data)
        "88"  # LISP flags N + I
        "abcdef"  # nonce
        "123456"  # instance-ID
        "03"  # LSBs
    )
    + INNER_V4_HEADER_GOLDEN
)
ENCAP = EncapsulatedPacket(
    outer=IPv4Header(RLOC4_A, RLOC4_B),
    sport=49153,
    header=HEADER_GOLDEN[0][2],
    inner=INNER_V4_HEADER_GOLDEN,
    zero_checksum=True,
)


def test_golden_encapsulated_packet() -> None:
    inner = build_ip_header(
        IPv4Header(IPv4Address("198.51.100.1"), IPv4Address("198.51.100.130"), ttl=63, protocol=1),
        0,
    )
    assert inner == INNER_V4_HEADER_GOLDEN
    assert encapsulate(ENCAP) == ENCAP_GOLDEN
    assert decapsulate(ENCAP_GOLDEN) == ENCAP
    assert decapsulate(ENCAP_GOLDEN, verify_checksum=True) == ENCAP


def inner_v4(ttl: int = 63, tos: int = 0xB8) -> bytes:
    icmp = bytes.fromhex("0800f7fe00010000")  # echo request id 1 seq 0 (checksum correct)
    ip = IPv4Header(
        IPv4Address("198.51.100.1"),
        IPv4Address("198.51.100.130"),
        ttl=ttl,
        tos=tos,
        protocol=PROTO_ICMP,
    )
    return build_ip_header(ip, len(icmp)) + icmp


def inner_v6(hlim: int = 63) -> bytes:
    icmp = bytes.fromhex("8000000000010000")  # echo request (checksum not relevant here)
    ip = IPv6Header(
        IPv6Address("2001:db8:100::1"),
        IPv6Address("2001:db8:100:1::1"),
        hop_limit=hlim,
        next_header=PROTO_ICMPV6,
    )
    return build_ip_header(ip, len(icmp)) + icmp


OUTER_V4 = IPv4Header(RLOC4_A, RLOC4_B, ttl=63, tos=0xB8, ident=0x4242)
OUTER_V6 = IPv6Header(RLOC6_A, RLOC6_B, hop_limit=63, traffic_class=0xB8, flow_label=0x12345)
HDR = DataHeader(nonce_present=True, lsb_enabled=True, nonce=0x5A5A5A, lsbs=0b11)
HDR_IID = DataHeader(nonce_present=True, instance_id_present=True, nonce=7, instance_id=1000)

COMBOS = [
    ("v4-in-v4", EncapsulatedPacket(OUTER_V4, 61000, HDR, inner_v4(), zero_checksum=True)),
    ("v6-in-v4", EncapsulatedPacket(OUTER_V4, 61001, HDR_IID, inner_v6(), zero_checksum=True)),
    ("v4-in-v6", EncapsulatedPacket(OUTER_V6, 61002, HDR_IID, inner_v4())),
    ("v6-in-v6", EncapsulatedPacket(OUTER_V6, 61003, HDR, inner_v6())),
]


@pytest.mark.parametrize(("name", "pkt"), COMBOS, ids=[c[0] for c in COMBOS])
def test_encapsulate_decapsulate_round_trip(name: str, pkt: EncapsulatedPacket) -> None:
    wire = encapsulate(pkt)
    assert decapsulate(wire, verify_checksum=True) == pkt
    assert encapsulate(decapsulate(wire)) == wire


@pytest.mark.parametrize(("name", "pkt"), COMBOS, ids=[c[0] for c in COMBOS])
def test_layout_and_lengths(name: str, pkt: EncapsulatedPacket) -> None:
    wire = encapsulate(pkt)
    hlen = 20 if isinstance(pkt.outer, IPv4Header) else 40
    udp = wire[hlen : hlen + 8]
    assert int.from_bytes(udp[0:2], "big") == pkt.sport
    assert int.from_bytes(udp[2:4], "big") == 4341
    assert int.from_bytes(udp[4:6], "big") == 8 + 8 + len(pkt.inner)
    assert wire[hlen + 8 : hlen + 16] == encode_data_header(pkt.header)
    assert wire[hlen + 16 :] == pkt.inner
    if hlen == 20:
        assert int.from_bytes(wire[2:4], "big") == 20 + 8 + 8 + len(pkt.inner)
    else:
        assert int.from_bytes(wire[4:6], "big") == 8 + 8 + len(pkt.inner)


@pytest.mark.parametrize(("name", "pkt"), COMBOS[:2], ids=[c[0] for c in COMBOS[:2]])
def test_ipv4_outer_zero_udp_checksum(name: str, pkt: EncapsulatedPacket) -> None:
    wire = encapsulate(pkt)
    assert wire[26:28] == b"\x00\x00"
    back = decapsulate(wire, verify_checksum=True)
    assert back.zero_checksum


@pytest.mark.parametrize(("name", "pkt"), COMBOS[2:], ids=[c[0] for c in COMBOS[2:]])
def test_ipv6_outer_real_udp_checksum(name: str, pkt: EncapsulatedPacket) -> None:
    wire = encapsulate(pkt)
    segment = wire[40:]
    stored = int.from_bytes(segment[6:8], "big")
    assert stored != 0
    assert stored == udp_checksum(pkt.outer, segment[:6] + b"\x00\x00" + segment[8:])
    assert stored == ref_udp6_checksum(RLOC6_A, RLOC6_B, segment)
    assert not decapsulate(wire, verify_checksum=True).zero_checksum


def test_ipv4_outer_with_checksum_when_asked() -> None:
    pkt = EncapsulatedPacket(OUTER_V4, 61000, HDR, inner_v4(), zero_checksum=False)
    wire = encapsulate(pkt)
    assert wire[26:28] != b"\x00\x00"
    assert decapsulate(wire, verify_checksum=True) == pkt


def test_ipv4_ttl_and_tos_on_the_wire() -> None:
    wire = encapsulate(COMBOS[0][1])
    assert wire[1] == 0xB8  # TOS
    assert wire[8] == 63  # TTL
    assert wire[4:6] == b"\x42\x42"  # identification
    assert wire[6] & 0x40  # DF set by default
    out = decapsulate(wire).outer
    assert isinstance(out, IPv4Header)
    assert (out.ttl, out.tos, out.ident, out.dont_fragment) == (63, 0xB8, 0x4242, True)


def test_ipv6_hop_limit_traffic_class_flow_label_on_the_wire() -> None:
    wire = encapsulate(COMBOS[3][1])
    assert wire[0:4] == bytes.fromhex("6b812345")  # version 6, TC 0xb8, flow label 0x12345
    assert wire[6] == 17  # next header UDP
    assert wire[7] == 63  # hop limit
    out = decapsulate(wire).outer
    assert isinstance(out, IPv6Header)
    assert (out.hop_limit, out.traffic_class, out.flow_label) == (63, 0xB8, 0x12345)


@pytest.mark.parametrize(("name", "pkt"), COMBOS, ids=[c[0] for c in COMBOS])
def test_ttl_tos_preserved_across_values(name: str, pkt: EncapsulatedPacket) -> None:
    for ttl, tos in [(1, 0), (255, 0xFF), (64, 0x02)]:
        if isinstance(pkt.outer, IPv4Header):
            outer = IPv4Header(RLOC4_A, RLOC4_B, ttl=ttl, tos=tos)
        else:
            outer = IPv6Header(RLOC6_A, RLOC6_B, hop_limit=ttl, traffic_class=tos)
        p = EncapsulatedPacket(outer, pkt.sport, pkt.header, pkt.inner, 4341, pkt.zero_checksum)
        assert decapsulate(encapsulate(p)).outer == outer


@pytest.mark.parametrize(("name", "pkt"), COMBOS[2:], ids=[c[0] for c in COMBOS[2:]])
def test_corrupted_checksum_rejected_when_verifying(name: str, pkt: EncapsulatedPacket) -> None:
    wire = bytearray(encapsulate(pkt))
    wire[46] ^= 0x01  # UDP checksum low byte (IPv6 outer)
    assert decapsulate(bytes(wire)).inner == pkt.inner  # accepted without verification
    with pytest.raises(WireError) as info:
        decapsulate(bytes(wire), verify_checksum=True)
    assert info.value.reason == "bad-field"


@pytest.mark.parametrize(("name", "pkt"), COMBOS[2:], ids=[c[0] for c in COMBOS[2:]])
def test_corrupted_payload_rejected_when_verifying(name: str, pkt: EncapsulatedPacket) -> None:
    wire = bytearray(encapsulate(pkt))
    wire[-1] ^= 0x10  # inner packet byte
    with pytest.raises(WireError) as info:
        decapsulate(bytes(wire), verify_checksum=True)
    assert info.value.reason == "bad-field"


def test_corrupted_checksum_ipv4_outer_rejected_when_verifying() -> None:
    pkt = EncapsulatedPacket(OUTER_V4, 61000, HDR, inner_v4(), zero_checksum=False)
    wire = bytearray(encapsulate(pkt))
    wire[27] ^= 0xFF
    with pytest.raises(WireError) as info:
        decapsulate(bytes(wire), verify_checksum=True)
    assert info.value.reason == "bad-field"


def test_translated_destination_port_accepted() -> None:
    pkt = EncapsulatedPacket(OUTER_V4, 4341, HDR, inner_v4(), dport=62000, zero_checksum=True)
    assert decapsulate(encapsulate(pkt)) == pkt


def test_data_map_notify_iid() -> None:
    control = build_udp_datagram(
        UdpDatagram(IPv4Header(RLOC4_B, RLOC4_A), 4342, 4342, bytes.fromhex("4000000000000001"))
    )
    hdr = DataHeader(instance_id_present=True, instance_id=IID_CONTROL)
    pkt = EncapsulatedPacket(OUTER_V4, 4342, hdr, control, zero_checksum=True)
    back = decapsulate(encapsulate(pkt))
    assert back.header.iid == IID_CONTROL
    assert back.inner == control


def test_empty_inner_packet() -> None:
    pkt = EncapsulatedPacket(OUTER_V6, 4341, DataHeader(), b"")
    assert decapsulate(encapsulate(pkt), verify_checksum=True) == pkt


def test_udp_payload_shorter_than_lisp_header() -> None:
    wire = build_udp_datagram(UdpDatagram(OUTER_V4, 4341, 4341, b"\x88\x00\x00", True))
    with pytest.raises(WireError) as info:
        decapsulate(wire)
    assert info.value.reason == "truncated"


def test_decapsulate_not_udp() -> None:
    wire = build_ip_header(IPv4Header(RLOC4_A, RLOC4_B, protocol=PROTO_ICMP), 16) + bytes(16)
    with pytest.raises(WireError) as info:
        decapsulate(wire)
    assert info.value.reason == "bad-protocol"


@pytest.mark.parametrize(("name", "pkt"), COMBOS, ids=[c[0] for c in COMBOS])
def test_every_truncation_raises_wire_error(name: str, pkt: EncapsulatedPacket) -> None:
    wire = encapsulate(pkt)
    for cut in range(len(wire)):
        with pytest.raises(WireError):
            decapsulate(wire[:cut], verify_checksum=True)


def test_encapsulate_header_errors_are_encode_errors() -> None:
    with pytest.raises(EncodeError):
        encapsulate(EncapsulatedPacket(OUTER_V4, 4341, DataHeader(key_id=9), b""))
    with pytest.raises(EncodeError):
        encapsulate(EncapsulatedPacket(OUTER_V4, 70000, DataHeader(), b""))
    with pytest.raises(EncodeError):
        encapsulate(EncapsulatedPacket(OUTER_V4, 4341, DataHeader(), bytes(0xFFFF)))
