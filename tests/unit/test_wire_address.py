"""Unit tests of lispd.wire.address: AFI-encoded addresses and LCAFs (RFC 8060).

Golden byte strings are worked out by hand from the IANA address family numbers and RFC 8060
( LCAF header ``AFI 16387 | rsvd1 | flags | type | rsvd2 | length``).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from lispd.wire.address import (
    AFI_LCAF,
    AFI_MAC,
    MAX_LCAF_NESTING,
    NO_ADDRESS,
    Address,
    AfiListAddress,
    DistinguishedName,
    ElpAddress,
    ElpHop,
    InstanceIdAddress,
    MacAddress,
    NatTraversalAddress,
    NoAddress,
    UnknownLcaf,
    address_text,
    check_mask_len,
    decode_address,
    eid_prefix,
    encode_address,
    max_mask_len,
    split_eid,
)
from lispd.wire.errors import EncodeError, WireError
from lispd.wire.reader import Reader

V4 = IPv4Address("192.0.2.1")
V4B = IPv4Address("198.51.100.7")
V6 = IPv6Address("2001:db8::1")
V6B = IPv6Address("2001:db8:100::7")
MAC = MacAddress(bytes.fromhex("00005e005301"))  # RFC 7042 documentation MAC


def decode_all(data: bytes) -> Address:
    """Decode one address that must use every byte of ``data``."""
    r = Reader(data)
    addr = decode_address(r)
    assert r.remaining == 0, f"{r.remaining} bytes left over"
    return addr


def wire_error(data: bytes) -> WireError:
    """The WireError raised by decoding ``data`` (fails on any other outcome)."""
    with pytest.raises(WireError) as info:
        decode_all(data)
    return info.value


# --- golden vectors -----------------------------------------------------------------------------

GOLDEN: list[tuple[str, bytes, Address]] = [
    ("no-address", bytes.fromhex("0000"), NO_ADDRESS),  # AFI 0, nothing follows
    (
        "ipv4",
        bytes.fromhex(
            "0001"  # AFI 1 IPv4
            "c0000201"  # 192.0.2.1
        ),
        V4,
    ),
    (
        "ipv6",
        bytes.fromhex(
            "0002"  # AFI 2 IPv6
            "20010db8000000000000000000000001"  # 2001:db8::1
        ),
        V6,
    ),
    (
        "distinguished-name",
        bytes.fromhex(
            "0011"  # AFI 17 distinguished name
            "787472312e6578616d706c65"  # "xtr1.example"
            "00"  # NUL terminator
        ),
        DistinguishedName("xtr1.example"),
    ),
    (
        "mac",
        bytes.fromhex(
            "4005"  # AFI 16389 48-bit MAC
            "00005e005301"  # 00:00:5e:00:53:01
        ),
        MAC,
    ),
    (
        "iid-ipv4",
        bytes.fromhex(
            "4003"  # AFI 16387 LCAF
            "00"  # rsvd1
            "00"  # flags
            "02"  # type 2 instance-ID
            "00"  # rsvd2 = IID mask-len 0
            "000a"  # length 10 = 4 (IID) + 2 (AFI) + 4 (IPv4)
            "00000007"  # IID 7
            "0001"  # AFI 1
            "c6336407"  # 198.51.100.7
        ),
        InstanceIdAddress(7, V4B),
    ),
    (
        "iid-ipv6-large",
        bytes.fromhex(
            "4003"  # AFI LCAF
            "0000"  # rsvd1, flags
            "02"  # type 2 instance-ID
            "00"  # IID mask-len 0
            "0016"  # length 22 = 4 + 2 + 16
            "fedcba98"  # IID 0xFEDCBA98 (uses all 32 bits)
            "0002"  # AFI 2
            "20010db8010000000000000000000007"  # 2001:db8:100::7
        ),
        InstanceIdAddress(0xFEDCBA98, V6B),
    ),
    (
        "iid-range",
        bytes.fromhex(
            "4003"  # AFI LCAF
            "0000"  # rsvd1, flags
            "02"  # type 2 instance-ID
            "08"  # rsvd2 = IID mask-len 8 (an IID range, address AFI 0)
            "0006"  # length 6 = 4 + 2
            "00123400"  # IID 0x123400
            "0000"  # AFI 0
        ),
        InstanceIdAddress(0x123400, NO_ADDRESS, iid_mask_len=8),
    ),
    (
        "afi-list-v4-v6",
        bytes.fromhex(
            "4003"  # AFI LCAF
            "0000"  # rsvd1, flags
            "01"  # type 1 AFI-list
            "00"  # rsvd2
            "0018"  # length 24 = (2 + 4) + (2 + 16)
            "0001"  # AFI 1
            "c0000201"  # 192.0.2.1
            "0002"  # AFI 2
            "20010db8000000000000000000000001"  # 2001:db8::1
        ),
        AfiListAddress((V4, V6)),
    ),
    (
        "elp",
        bytes.fromhex(
            "4003"  # AFI LCAF
            "0000"  # rsvd1, flags
            "0a"  # type 10 ELP
            "00"  # rsvd2
            "0034"  # length 52 = 8 + 8 + 8 + 8 + 20
            "0004"  # hop 1 flags: L (lookup)
            "0001"  # AFI 1
            "c0000201"  # 192.0.2.1
            "0002"  # hop 2 flags: P (probe)
            "0001"  # AFI 1
            "c0000205"  # 192.0.2.5
            "0001"  # hop 3 flags: S (strict)
            "0001"  # AFI 1
            "c0000209"  # 192.0.2.9
            "0007"  # hop 4 flags: L + P + S
            "0001"  # AFI 1
            "c000020d"  # 192.0.2.13
            "0000"  # hop 5 flags: none
            "0002"  # AFI 2
            "20010db8000000000000000000000009"  # 2001:db8::9
        ),
        ElpAddress(
            (
                ElpHop(IPv4Address("192.0.2.1"), lookup=True),
                ElpHop(IPv4Address("192.0.2.5"), probe=True),
                ElpHop(IPv4Address("192.0.2.9"), strict=True),
                ElpHop(IPv4Address("192.0.2.13"), lookup=True, probe=True, strict=True),
                ElpHop(IPv6Address("2001:db8::9")),
            )
        ),
    ),
    (
        "nat-traversal",
        bytes.fromhex(
            "4003"  # AFI LCAF
            "0000"  # rsvd1, flags
            "07"  # type 7 NAT-traversal
            "00"  # rsvd2
            "002e"  # length 46 = 2 + 2 + 6 + 6 + 6 + 6 + 18
            "10f6"  # MS UDP port 4342
            "c350"  # ETR UDP port 50000
            "0001"  # global ETR RLOC: AFI 1
            "cb007105"  # 203.0.113.5
            "0001"  # MS RLOC: AFI 1
            "c0000209"  # 192.0.2.9
            "0001"  # private ETR RLOC: AFI 1
            "c0000281"  # 192.0.2.129
            "0001"  # RTR 1: AFI 1
            "c000020d"  # 192.0.2.13
            "0002"  # RTR 2: AFI 2
            "20010db800000000000000000000000d"  # 2001:db8::d
        ),
        NatTraversalAddress(
            4342,
            50000,
            IPv4Address("203.0.113.5"),
            IPv4Address("192.0.2.9"),
            IPv4Address("192.0.2.129"),
            (IPv4Address("192.0.2.13"), IPv6Address("2001:db8::d")),
        ),
    ),
    (
        "unknown-lcaf-as-number",
        bytes.fromhex(
            "4003"  # AFI LCAF
            "11"  # rsvd1 0x11 (kept)
            "80"  # flags 0x80 (kept)
            "03"  # type 3 AS number (not interpreted by lispd)
            "22"  # rsvd2 0x22 (kept)
            "000a"  # length 10
            "0000fde8"  # ASN 65000
            "0001"  # AFI 1
            "c0000201"  # 192.0.2.1
        ),
        UnknownLcaf(3, bytes.fromhex("0000fde80001c0000201"), flags=0x80, rsvd1=0x11, rsvd2=0x22),
    ),
    (
        "null-lcaf",
        bytes.fromhex(
            "4003"  # AFI LCAF
            "0000"  # rsvd1, flags
            "00"  # type 0 null
            "00"  # rsvd2
            "0000"  # length 0
        ),
        UnknownLcaf(0, b""),
    ),
]


@pytest.mark.parametrize(("name", "wire", "expected"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_decode(name: str, wire: bytes, expected: Address) -> None:
    assert decode_all(wire) == expected


@pytest.mark.parametrize(("name", "wire", "expected"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_encode(name: str, wire: bytes, expected: Address) -> None:
    assert encode_address(expected) == wire


def test_constants_match_reference() -> None:
    assert AFI_LCAF == 16387
    assert AFI_MAC == 16389
    assert MAX_LCAF_NESTING >= 2


# --- round trips ----------------------------------------------------------------------------------

ROUND_TRIP: list[Address] = [
    NO_ADDRESS,
    V4,
    V6,
    IPv4Address("0.0.0.0"),
    IPv6Address("::"),
    DistinguishedName(""),
    DistinguishedName("rtr-1.example.net"),
    MAC,
    InstanceIdAddress(0, V4),
    InstanceIdAddress(1, V6),
    InstanceIdAddress(0xFFFFFF, V4),
    InstanceIdAddress(0x1000000, V4B),
    InstanceIdAddress(0xFFFFFFFF, V6B),
    InstanceIdAddress(42, MAC),
    InstanceIdAddress(42, DistinguishedName("eid.example")),
    InstanceIdAddress(0x100, NO_ADDRESS, iid_mask_len=24),
    AfiListAddress(()),
    AfiListAddress((V4,)),
    AfiListAddress((V4, V6)),
    AfiListAddress((DistinguishedName("xtr.example"), V4, V6)),
    NatTraversalAddress(4342, 4341, V4, V4B, NO_ADDRESS),
    NatTraversalAddress(
        4342,
        61000,
        IPv4Address("203.0.113.9"),
        IPv4Address("192.0.2.9"),
        IPv4Address("192.0.2.130"),
        (
            IPv4Address("192.0.2.13"),
            IPv4Address("192.0.2.17"),
            IPv6Address("2001:db8::13"),
            IPv6Address("2001:db8::17"),
        ),
    ),
    ElpAddress(()),
    ElpAddress((ElpHop(V4), ElpHop(V6, lookup=True))),
    ElpAddress(
        tuple(
            ElpHop(V4, lookup=lk, probe=pr, strict=st)
            for lk in (False, True)
            for pr in (False, True)
            for st in (False, True)
        )
    ),
    # Source/Dest key LCAF (type 12): rsvd, src mask 24, dst mask 25, src + dst addresses.
    UnknownLcaf(12, bytes.fromhex("0000 18 19 0001c6336400 0001c6336480")),
    UnknownLcaf(255, b"\xff" * 7, flags=0xFF, rsvd1=0xFF, rsvd2=0xFF),
    # Nested LCAFs.
    AfiListAddress((InstanceIdAddress(7, V4), InstanceIdAddress(7, V6))),
    InstanceIdAddress(9, AfiListAddress((V4, V6))),
    ElpAddress((ElpHop(InstanceIdAddress(3, V4), lookup=True), ElpHop(AfiListAddress((V4, V6))))),
    AfiListAddress((ElpAddress((ElpHop(V4), ElpHop(V4B, strict=True))), V6)),
    NatTraversalAddress(
        1, 2, InstanceIdAddress(1, V4), AfiListAddress((V4, V6)), NO_ADDRESS, (MAC,)
    ),
    AfiListAddress((UnknownLcaf(5, b"\x01\x02\x03\x04", flags=1), V4)),
]


@pytest.mark.parametrize("addr", ROUND_TRIP, ids=repr)
def test_round_trip_object(addr: Address) -> None:
    assert decode_all(encode_address(addr)) == addr


@pytest.mark.parametrize("addr", ROUND_TRIP, ids=repr)
def test_round_trip_bytes(addr: Address) -> None:
    wire = encode_address(addr)
    assert encode_address(decode_all(wire)) == wire


def test_decode_leaves_following_bytes() -> None:
    wire = encode_address(V4) + encode_address(V6) + b"\xaa"
    r = Reader(wire)
    assert decode_address(r) == V4
    assert decode_address(r) == V6
    assert r.remaining == 1


def test_unknown_lcaf_preserved_inside_message_order() -> None:
    # An unknown LCAF between two known addresses keeps its exact bytes, header bits included.
    unknown = bytes.fromhex(
        "4003"  # AFI LCAF
        "7f"  # rsvd1
        "01"  # flags
        "0e"  # type 14 JSON (not interpreted)
        "03"  # rsvd2
        "0004"  # length 4
        "7b7d0000"  # opaque body
    )
    wire = (
        bytes.fromhex("4003 0000 01 00")  # AFI-list header...
        + (6 + len(unknown) + 6).to_bytes(2, "big")  # ...length covering three items
        + encode_address(V4)
        + unknown
        + encode_address(V4B)
    )
    decoded = decode_all(wire)
    assert decoded == AfiListAddress(
        (V4, UnknownLcaf(14, bytes.fromhex("7b7d0000"), flags=1, rsvd1=0x7F, rsvd2=3), V4B)
    )
    assert encode_address(decoded) == wire


# --- decode errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("afi", [3, 4, 5, 16, 18, 16386, 16388, 16390, 0xFFFF])
def test_unknown_afi_is_bad_afi(afi: int) -> None:
    assert wire_error(afi.to_bytes(2, "big") + bytes(16)).reason == "bad-afi"


def test_distinguished_name_without_nul_is_bad_afi() -> None:
    assert wire_error(bytes.fromhex("0011 414243")).reason == "bad-afi"


def test_distinguished_name_not_ascii_is_bad_afi() -> None:
    assert wire_error(bytes.fromhex("0011 c3a900")).reason == "bad-afi"


def test_distinguished_name_nul_must_be_inside_fence() -> None:
    # AFI-list of length 3 holding a name whose NUL lies just past the LCAF body.
    wire = bytes.fromhex("4003 0000 01 00 0003 0011 41 00")
    assert wire_error(wire).reason == "bad-afi"


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"\x00",
        bytes.fromhex("0001c00002"),  # IPv4 missing a byte
        bytes.fromhex("0002" + "00" * 15),  # IPv6 missing a byte
        bytes.fromhex("4005" + "00" * 5),  # MAC missing a byte
        bytes.fromhex("4003 000002"),  # LCAF header cut short
    ],
)
def test_short_addresses_are_truncated(wire: bytes) -> None:
    assert wire_error(wire).reason == "truncated"


def test_lcaf_length_beyond_buffer() -> None:
    wire = bytes.fromhex(
        "4003 0000 02 00"  # LCAF AFI, rsvd1, flags, type instance-ID, IID mask-len
        "000b"  # length 11, but only 10 body bytes follow
        "00000007 0001 c6336407"  # IID 7, AFI 1, 198.51.100.7
    )
    assert wire_error(wire).reason == "bad-lcaf-length"


def test_lcaf_length_beyond_buffer_unknown_type() -> None:
    wire = bytes.fromhex("4003 0000 63 00 0010 00112233")
    assert wire_error(wire).reason == "bad-lcaf-length"


def test_iid_lcaf_with_unused_bytes() -> None:
    wire = bytes.fromhex(
        "4003 0000 02 00"  # LCAF AFI, rsvd1, flags, type instance-ID, IID mask-len
        "000c"  # length 12: 10 used by IID + IPv4, 2 left over
        "00000007 0001 c6336407"  # IID 7, AFI 1, 198.51.100.7
        "0000"  # unused
    )
    assert wire_error(wire).reason == "bad-lcaf-length"


def test_iid_lcaf_too_short_for_iid() -> None:
    wire = bytes.fromhex("4003 0000 02 00 0002 0000")
    assert wire_error(wire).reason == "truncated"


def test_nested_address_cannot_read_past_lcaf_length() -> None:
    # IID LCAF of length 8 whose IPv4 address needs 10: the body fence stops the read.
    wire = bytes.fromhex("4003 0000 02 00 0008 00000007 0001 c6336407")
    assert wire_error(wire).reason == "truncated"


def test_afi_list_item_crossing_length() -> None:
    wire = bytes.fromhex("4003 0000 01 00 0005 0001 c0000201")
    assert wire_error(wire).reason == "truncated"


def test_elp_odd_leftover_byte() -> None:
    wire = bytes.fromhex("4003 0000 0a 00 0009 0000 0001 c0000201 00")
    assert wire_error(wire).reason == "truncated"


def test_nat_lcaf_too_short() -> None:
    wire = bytes.fromhex("4003 0000 07 00 0006 10f6 10f5 0000")
    assert wire_error(wire).reason == "truncated"


def _nested_iid(depth: int) -> Address:
    addr: Address = V4
    for i in range(depth):
        addr = InstanceIdAddress(i + 1, addr)
    return addr


def _nested_afi_list(depth: int) -> Address:
    addr: Address = V6
    for _ in range(depth):
        addr = AfiListAddress((addr,))
    return addr


def _nested_elp(depth: int) -> Address:
    addr: Address = V4
    for _ in range(depth):
        addr = ElpAddress((ElpHop(addr, strict=True),))
    return addr


@pytest.mark.parametrize("builder", [_nested_iid, _nested_afi_list, _nested_elp])
def test_nesting_up_to_the_limit_decodes(builder) -> None:
    addr = builder(MAX_LCAF_NESTING)
    assert decode_all(encode_address(addr)) == addr


@pytest.mark.parametrize("builder", [_nested_iid, _nested_afi_list, _nested_elp])
def test_nesting_beyond_the_limit_is_bad_lcaf(builder) -> None:
    wire = encode_address(builder(MAX_LCAF_NESTING + 1))
    assert wire_error(wire).reason == "bad-lcaf"


def test_very_deep_nesting_is_bad_lcaf_not_recursion_error() -> None:
    # A hostile packet: 5000 nested AFI-list headers, each claiming the rest of the buffer.
    depth = 5000
    wire = b""
    for _ in range(depth):
        wire = bytes.fromhex("4003 0000 01 00") + len(wire).to_bytes(2, "big") + wire
    assert wire_error(wire).reason == "bad-lcaf"


@pytest.mark.parametrize(("name", "wire", "expected"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_every_truncation_raises_wire_error(name: str, wire: bytes, expected: Address) -> None:
    for cut in range(len(wire)):
        with pytest.raises(WireError):
            decode_all(wire[:cut])


def test_every_truncation_of_nested_lcaf_raises_wire_error() -> None:
    for addr in ROUND_TRIP[-6:]:
        wire = encode_address(addr)
        for cut in range(len(wire)):
            with pytest.raises(WireError):
                decode_all(wire[:cut])


def test_decode_accepts_memoryview() -> None:
    assert decode_address(Reader(memoryview(encode_address(V6)))) == V6


# --- encode errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("iid", [-1, 1 << 32, (1 << 40) + 5])
def test_iid_out_of_range(iid: int) -> None:
    with pytest.raises(EncodeError):
        encode_address(InstanceIdAddress(iid, V4))


def test_distinguished_name_with_nul() -> None:
    with pytest.raises(EncodeError):
        encode_address(DistinguishedName("a\x00b"))


@pytest.mark.parametrize("raw", [b"", b"\x00" * 5, b"\x00" * 7])
def test_mac_must_be_six_bytes(raw: bytes) -> None:
    with pytest.raises(EncodeError):
        MacAddress(raw)


def test_lcaf_body_too_long() -> None:
    with pytest.raises(EncodeError):
        encode_address(UnknownLcaf(99, bytes(0x10000)))
    with pytest.raises(EncodeError):
        encode_address(AfiListAddress((V6,) * 3641))  # 3641 * 18 = 65538 bytes


def test_lcaf_body_max_length_ok() -> None:
    addr = UnknownLcaf(99, bytes(0xFFFF))
    assert decode_all(encode_address(addr)) == addr


@pytest.mark.parametrize("value", ["192.0.2.1", 3221225985, None, IPv4Network("192.0.2.0/24")])
def test_not_an_address(value: object) -> None:
    with pytest.raises(EncodeError):
        encode_address(value)  # type: ignore[arg-type]


def test_nat_port_out_of_range_is_encode_error() -> None:
    with pytest.raises(EncodeError):
        encode_address(NatTraversalAddress(65536, 4341, V4, V4B, NO_ADDRESS))


def test_lcaf_header_byte_out_of_range_is_encode_error() -> None:
    with pytest.raises(EncodeError):
        encode_address(InstanceIdAddress(7, V4, iid_mask_len=256))


def test_unknown_lcaf_type_out_of_range_is_encode_error() -> None:
    with pytest.raises(EncodeError):
        encode_address(UnknownLcaf(256, b""))


def test_non_ascii_name_is_encode_error() -> None:
    with pytest.raises(EncodeError):
        encode_address(DistinguishedName("r\u00e9seau"))


# --- helpers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("addr", "text"),
    [
        (NO_ADDRESS, "none"),
        (V4, "192.0.2.1"),
        (V6, "2001:db8::1"),
        (DistinguishedName("xtr.example"), "xtr.example"),
        (MAC, "00:00:5e:00:53:01"),
        (InstanceIdAddress(7, V6), "[7]2001:db8::1"),
        (InstanceIdAddress(0xFFFFFF, V4), "[16777215]192.0.2.1"),
    ],
)
def test_address_text(addr: Address, text: str) -> None:
    assert address_text(addr) == text


@pytest.mark.parametrize(
    ("addr", "limit"),
    [
        (V4, 32),
        (V6, 128),
        (MAC, 48),
        (NO_ADDRESS, 0),
        (InstanceIdAddress(1, V4), 32),
        (InstanceIdAddress(1, V6), 128),
        (DistinguishedName("x"), None),
        (AfiListAddress((V4,)), None),
        (UnknownLcaf(3, b""), None),
    ],
)
def test_max_mask_len(addr: Address, limit: int | None) -> None:
    assert max_mask_len(addr) == limit


@pytest.mark.parametrize(
    ("addr", "mask"),
    [(V4, 33), (V6, 129), (MAC, 49), (NO_ADDRESS, 1), (InstanceIdAddress(5, V4), 33)],
)
def test_check_mask_len_rejects(addr: Address, mask: int) -> None:
    with pytest.raises(WireError) as info:
        check_mask_len(addr, mask)
    assert info.value.reason == "bad-mask-len"


@pytest.mark.parametrize(
    ("addr", "mask"),
    [(V4, 32), (V4, 0), (V6, 128), (MAC, 48), (NO_ADDRESS, 0), (DistinguishedName("x"), 255)],
)
def test_check_mask_len_accepts(addr: Address, mask: int) -> None:
    check_mask_len(addr, mask)


def test_eid_prefix_without_iid() -> None:
    assert eid_prefix(0, "198.51.100.0/24") == (IPv4Address("198.51.100.0"), 24)
    assert eid_prefix(0, "198.51.100.77/28") == (IPv4Address("198.51.100.64"), 28)


def test_eid_prefix_with_iid() -> None:
    assert eid_prefix(7, IPv6Network("2001:db8:100::/48")) == (
        InstanceIdAddress(7, IPv6Address("2001:db8:100::")),
        48,
    )


def test_split_eid() -> None:
    assert split_eid(InstanceIdAddress(7, V4B), 24) == (7, IPv4Network("198.51.100.0/24"))
    assert split_eid(V6, 32) == (0, IPv6Network("2001:db8::/32"))
    assert split_eid(MAC, 48) == (0, None)
    assert split_eid(InstanceIdAddress(3, MAC), 48) == (3, None)


def test_no_address_singleton_equality() -> None:
    assert NoAddress() == NO_ADDRESS
    assert decode_all(b"\x00\x00") is NO_ADDRESS


def test_afi_802_reads_as_a_mac_and_is_sent_as_afi_16389() -> None:
    mac = bytes.fromhex("020000000001")
    r = Reader(b"\x00\x06" + mac)
    assert decode_address(r) == MacAddress(mac)
    assert encode_address(MacAddress(mac))[:2] == (16389).to_bytes(2, "big")
