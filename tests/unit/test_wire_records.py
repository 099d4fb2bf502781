"""Unit tests of lispd.wire.records: EID-records and locator records (RFC 9301).

Golden bytes are worked out by hand from the record layouts of RFC 9301 section 5:
EID-record ``TTL(4) | loc-count(1) | mask-len(1) | ACT(3) A(1) I(1) rsvd(11) | rsvd(4)
map-version(12) | EID AFI+address``, locator ``priority | weight | m-priority | m-weight |
unused(13) L p R | AFI+address``.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from lispd.wire.address import (
    NO_ADDRESS,
    AfiListAddress,
    DistinguishedName,
    ElpAddress,
    ElpHop,
    InstanceIdAddress,
    MacAddress,
    UnknownLcaf,
)
from lispd.wire.errors import EncodeError, WireError
from lispd.wire.reader import Reader
from lispd.wire.records import (
    TTL_UNLIMITED,
    Action,
    EidPrefix,
    EidRecord,
    Locator,
    decode_eid_record,
    decode_locator,
    decode_records,
    encode_eid_record,
    encode_locator,
)

RLOC4 = IPv4Address("192.0.2.1")
RLOC4B = IPv4Address("192.0.2.5")
RLOC6 = IPv6Address("2001:db8::1")
EID4 = IPv4Address("198.51.100.0")
EID6 = IPv6Address("2001:db8:100::")
MAC = MacAddress(bytes.fromhex("00005e005301"))


def dec_record(data: bytes) -> EidRecord:
    r = Reader(data)
    rec = decode_eid_record(r)
    assert r.remaining == 0
    return rec


def dec_locator(data: bytes) -> Locator:
    r = Reader(data)
    loc = decode_locator(r)
    assert r.remaining == 0
    return loc


# --- golden vectors -----------------------------------------------------------------------------

POSITIVE_WIRE = bytes.fromhex(
    "000005a0"  # record TTL 1440 minutes
    "02"  # locator count 2
    "18"  # EID mask-len 24
    "1000"  # ACT 0 no-action, A=1, I=0, reserved 0
    "0005"  # reserved 0, map-version 5
    "0001"  # EID AFI 1
    "c6336400"  # 198.51.100.0
    # locator 1
    "01"  # priority 1
    "32"  # weight 50
    "ff"  # m-priority 255
    "00"  # m-weight 0
    "0005"  # flags: L + R
    "0001"  # AFI 1
    "c0000201"  # 192.0.2.1
    # locator 2
    "02"  # priority 2
    "32"  # weight 50
    "ff"  # m-priority 255
    "00"  # m-weight 0
    "0003"  # flags: p + R
    "0002"  # AFI 2
    "20010db8000000000000000000000001"  # 2001:db8::1
)
POSITIVE = EidRecord(
    eid=EID4,
    mask_len=24,
    locators=(
        Locator(RLOC4, priority=1, weight=50, local=True, reachable=True),
        Locator(RLOC6, priority=2, weight=50, probed=True, reachable=True),
    ),
    ttl=1440,
    authoritative=True,
    map_version=5,
)

NEGATIVE_WIRE = bytes.fromhex(
    "0000000f"  # record TTL 15 minutes
    "00"  # locator count 0 (negative)
    "30"  # EID mask-len 48
    "6000"  # ACT 3 drop (3 << 13), A=0
    "0000"  # map-version 0
    "4003"  # EID AFI LCAF
    "0000"  # rsvd1, flags
    "02"  # type instance-ID
    "00"  # IID mask-len
    "0016"  # length 22
    "00000007"  # IID 7
    "0002"  # AFI 2
    "20010db8010000000000000000000000"  # 2001:db8:100::
)
NEGATIVE = EidRecord(eid=InstanceIdAddress(7, EID6), mask_len=48, ttl=15, action=Action.DROP)

LOCATOR_ELP_WIRE = bytes.fromhex(
    "00"  # priority 0
    "00"  # weight 0
    "00"  # m-priority 0
    "00"  # m-weight 0
    "0000"  # flags: none
    "4003"  # AFI LCAF
    "0000"  # rsvd1, flags
    "0a"  # type 10 ELP
    "00"  # rsvd2
    "0010"  # length 16
    "0001"  # hop 1 flags: S
    "0001"  # AFI 1
    "c000020d"  # 192.0.2.13
    "0000"  # hop 2 flags: none
    "0001"  # AFI 1
    "c0000201"  # 192.0.2.1
)
LOCATOR_ELP = Locator(
    ElpAddress((ElpHop(IPv4Address("192.0.2.13"), strict=True), ElpHop(RLOC4))),
    priority=0,
    weight=0,
    m_priority=0,
    m_weight=0,
    reachable=False,
)

GOLDEN_RECORDS = [("positive", POSITIVE_WIRE, POSITIVE), ("negative", NEGATIVE_WIRE, NEGATIVE)]


@pytest.mark.parametrize(("name", "wire", "rec"), GOLDEN_RECORDS, ids=["positive", "negative"])
def test_golden_record_decode(name: str, wire: bytes, rec: EidRecord) -> None:
    assert dec_record(wire) == rec


@pytest.mark.parametrize(("name", "wire", "rec"), GOLDEN_RECORDS, ids=["positive", "negative"])
def test_golden_record_encode(name: str, wire: bytes, rec: EidRecord) -> None:
    assert encode_eid_record(rec) == wire


def test_golden_locator() -> None:
    assert dec_locator(LOCATOR_ELP_WIRE) == LOCATOR_ELP
    assert encode_locator(LOCATOR_ELP) == LOCATOR_ELP_WIRE


# --- locators -------------------------------------------------------------------------------------


def test_locator_defaults() -> None:
    loc = Locator(RLOC4)
    assert (loc.priority, loc.weight, loc.m_priority, loc.m_weight) == (1, 100, 255, 0)
    assert loc.reachable and not loc.local and not loc.probed
    assert encode_locator(loc) == bytes.fromhex("01 64 ff 00 0001 0001 c0000201")


@pytest.mark.parametrize(
    ("flags", "kwargs"),
    [
        (0x0000, {"local": False, "probed": False, "reachable": False}),
        (0x0004, {"local": True, "probed": False, "reachable": False}),
        (0x0002, {"local": False, "probed": True, "reachable": False}),
        (0x0001, {"local": False, "probed": False, "reachable": True}),
        (0x0007, {"local": True, "probed": True, "reachable": True}),
    ],
    ids=["none", "L", "p", "R", "LpR"],
)
def test_locator_flag_bits(flags: int, kwargs: dict[str, bool]) -> None:
    loc = Locator(RLOC4, **kwargs)
    wire = encode_locator(loc)
    assert wire[4:6] == flags.to_bytes(2, "big")
    assert dec_locator(wire) == loc


def test_locator_unused_flag_bits_ignored_on_decode() -> None:
    wire = bytes.fromhex("01 64 ff 00 fff8 0001 c0000201")
    loc = dec_locator(wire)
    assert not (loc.local or loc.probed or loc.reachable)


@pytest.mark.parametrize("priority", [0, 1, 254, 255])
def test_locator_priorities(priority: int) -> None:
    loc = Locator(RLOC6, priority=priority, weight=0)
    wire = encode_locator(loc)
    assert wire[0] == priority
    back = dec_locator(wire)
    assert back == loc
    assert back.usable == (priority != 255)


@pytest.mark.parametrize(
    "address",
    [
        RLOC4,
        RLOC6,
        AfiListAddress((RLOC4, RLOC6)),
        ElpAddress((ElpHop(RLOC4B, lookup=True, probe=True), ElpHop(RLOC6, strict=True))),
        InstanceIdAddress(3, RLOC4),
        DistinguishedName("rtr.example"),
        UnknownLcaf(11, bytes.fromhex("01000500000400112233"), flags=0x80),
        NO_ADDRESS,
    ],
    ids=repr,
)
def test_locator_address_kinds_round_trip(address) -> None:
    loc = Locator(address, priority=3, weight=33, m_priority=7, m_weight=66, local=True)
    wire = encode_locator(loc)
    assert dec_locator(wire) == loc
    assert encode_locator(dec_locator(wire)) == wire


@pytest.mark.parametrize(
    "kwargs",
    [
        {"priority": 256},
        {"priority": -1},
        {"weight": 256},
        {"m_priority": 256},
        {"m_weight": -1},
    ],
    ids=repr,
)
def test_locator_encode_out_of_range(kwargs: dict[str, int]) -> None:
    with pytest.raises(EncodeError):
        encode_locator(Locator(RLOC4, **kwargs))


# --- EID-records ----------------------------------------------------------------------------------


@pytest.mark.parametrize("action", list(Action), ids=lambda a: a.name)
def test_every_action(action: Action) -> None:
    rec = EidRecord(EID4, 24, ttl=15, action=action)
    wire = encode_eid_record(rec)
    assert wire[6] == action << 5  # ACT is the top 3 bits of byte 6
    assert wire[7] == 0
    back = dec_record(wire)
    assert back == rec
    assert back.action is action


def test_action_values_match_iana() -> None:
    assert [int(a) for a in Action] == list(range(8))
    assert Action.NATIVELY_FORWARD == 1
    assert Action.SEND_MAP_REQUEST == 2
    assert Action.DROP_AUTH_FAILURE == 5


@pytest.mark.parametrize(
    ("kwargs", "byte6", "byte7"),
    [
        ({"authoritative": True}, 0x10, 0x00),
        ({"incomplete": True}, 0x08, 0x00),
        ({"authoritative": True, "incomplete": True, "action": Action.DROP}, 0x78, 0x00),
    ],
)
def test_record_flag_bits(kwargs: dict, byte6: int, byte7: int) -> None:
    rec = EidRecord(EID4, 24, **kwargs)
    wire = encode_eid_record(rec)
    assert (wire[6], wire[7]) == (byte6, byte7)
    assert dec_record(wire) == rec


@pytest.mark.parametrize("version", [0, 1, 0x800, 0xFFF])
def test_map_version(version: int) -> None:
    rec = EidRecord(EID6, 48, (Locator(RLOC6),), map_version=version)
    wire = encode_eid_record(rec)
    assert int.from_bytes(wire[8:10], "big") == version
    assert dec_record(wire) == rec


@pytest.mark.parametrize("ttl", [0, 1, 15, 1440, 0x80000000 | 30, TTL_UNLIMITED])
def test_ttl(ttl: int) -> None:
    rec = EidRecord(EID4, 24, (Locator(RLOC4),), ttl=ttl)
    wire = encode_eid_record(rec)
    assert wire[:4] == ttl.to_bytes(4, "big")
    assert dec_record(wire) == rec


def test_reserved_bits_preserved() -> None:
    wire = bytes.fromhex(
        "0000003c"  # TTL 60
        "00"  # locator count 0
        "20"  # mask-len 32
        "27ff"  # ACT 1, A=0, I=0, all 11 reserved bits set
        "f123"  # 4 reserved bits set, map-version 0x123
        "0001"  # AFI 1
        "c6336401"  # 198.51.100.1
    )
    rec = dec_record(wire)
    assert rec.action is Action.NATIVELY_FORWARD
    assert not rec.authoritative and not rec.incomplete
    assert rec.map_version == 0x123
    assert rec.reserved == 0x7FFF
    assert encode_eid_record(rec) == wire


RECORD_ROUND_TRIP = [
    EidRecord(EID4, 0),
    EidRecord(IPv4Address("198.51.100.1"), 32, (Locator(RLOC4, priority=255),)),
    EidRecord(EID6, 48, (Locator(RLOC4), Locator(RLOC6)), authoritative=True),
    EidRecord(IPv6Address("2001:db8:100::1"), 128, ttl=TTL_UNLIMITED),
    EidRecord(InstanceIdAddress(0xFFFFFF, EID4), 24, (Locator(RLOC6, weight=100),)),
    EidRecord(InstanceIdAddress(0xFFFFFFFF, EID6), 48, action=Action.SEND_MAP_REQUEST),
    EidRecord(InstanceIdAddress(123456789, IPv4Address("0.0.0.0")), 0, action=Action.NO_ACTION),
    EidRecord(MAC, 48, (Locator(RLOC4),)),
    EidRecord(InstanceIdAddress(10, MAC), 48, (Locator(RLOC4),)),
    EidRecord(DistinguishedName("eid.example"), 0),
    EidRecord(
        EID4,
        24,
        tuple(Locator(IPv4Address(f"192.0.2.{i}"), priority=i, weight=100) for i in range(1, 9)),
    ),
    EidRecord(EID4, 24, (Locator(RLOC4, weight=100), Locator(RLOC4B, weight=100))),
    EidRecord(EID4, 24, reserved=0x4001, map_version=7, incomplete=True),
    EidRecord(EID6, 48, (Locator(AfiListAddress((RLOC4, RLOC6)), local=True),)),
]


@pytest.mark.parametrize("rec", RECORD_ROUND_TRIP, ids=range(len(RECORD_ROUND_TRIP)))
def test_record_round_trip(rec: EidRecord) -> None:
    wire = encode_eid_record(rec)
    assert dec_record(wire) == rec
    assert encode_eid_record(dec_record(wire)) == wire


def test_max_locator_count() -> None:
    rec = EidRecord(EID4, 24, tuple(Locator(RLOC4, weight=0) for _ in range(255)))
    wire = encode_eid_record(rec)
    assert wire[4] == 255
    assert dec_record(wire) == rec


def test_decode_records_sequence() -> None:
    r = Reader(POSITIVE_WIRE + NEGATIVE_WIRE + b"\x99")
    assert decode_records(r, 2) == (POSITIVE, NEGATIVE)
    assert r.remaining == 1


def test_decode_records_zero() -> None:
    assert decode_records(Reader(b""), 0) == ()


def test_eid_prefix_is_plain_value() -> None:
    assert EidPrefix(EID4, 24) == EidPrefix(IPv4Address("198.51.100.0"), 24)
    assert EidPrefix(EID4, 24) != EidPrefix(EID4, 25)


# --- decode errors --------------------------------------------------------------------------------


def test_record_count_beyond_buffer_is_bad_count() -> None:
    with pytest.raises(WireError) as info:
        decode_records(Reader(POSITIVE_WIRE), 255)
    assert info.value.reason == "bad-count"


def test_locator_count_beyond_buffer_is_bad_count() -> None:
    wire = bytearray(NEGATIVE_WIRE)
    wire[4] = 255
    with pytest.raises(WireError) as info:
        dec_record(bytes(wire))
    assert info.value.reason == "bad-count"


@pytest.mark.parametrize(
    ("eid", "mask"),
    [
        (EID4, 33),
        (EID4, 255),
        (EID6, 129),
        (InstanceIdAddress(7, EID4), 33),
        (InstanceIdAddress(7, EID6), 200),
        (MAC, 49),
        (NO_ADDRESS, 1),
    ],
    ids=repr,
)
def test_mask_len_too_long_is_bad_mask_len(eid, mask: int) -> None:
    wire = bytearray(encode_eid_record(EidRecord(eid, 0)))
    wire[5] = mask
    with pytest.raises(WireError) as info:
        dec_record(bytes(wire))
    assert info.value.reason == "bad-mask-len"


@pytest.mark.parametrize(("name", "wire", "rec"), GOLDEN_RECORDS, ids=["positive", "negative"])
def test_every_truncation_of_a_record(name: str, wire: bytes, rec: EidRecord) -> None:
    for cut in range(len(wire)):
        with pytest.raises(WireError):
            decode_records(Reader(wire[:cut]), 1)


def test_every_truncation_of_a_locator() -> None:
    for cut in range(len(LOCATOR_ELP_WIRE)):
        with pytest.raises(WireError):
            dec_locator(LOCATOR_ELP_WIRE[:cut])


def test_bad_afi_inside_locator() -> None:
    wire = bytes.fromhex("01 64 ff 00 0001 0007 c0000201")
    with pytest.raises(WireError) as info:
        dec_locator(wire)
    assert info.value.reason == "bad-afi"


# --- encode errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rec",
    [
        EidRecord(EID4, 24, map_version=4096),
        EidRecord(EID4, 24, map_version=-1),
        EidRecord(EID4, 24, ttl=1 << 32),
        EidRecord(EID4, 24, ttl=-1),
        EidRecord(EID4, 256),
        EidRecord(EID4, -1),
        EidRecord(EID4, 24, tuple(Locator(RLOC4) for _ in range(256))),
        EidRecord(EID4, 24, (Locator(RLOC4, priority=256),)),
        EidRecord(InstanceIdAddress(1 << 32, EID4), 24),
    ],
    ids=[
        "map-version-4096",
        "map-version-neg",
        "ttl-33-bits",
        "ttl-neg",
        "mask-256",
        "mask-neg",
        "256-locators",
        "priority-256",
        "iid-33-bits",
    ],
)
def test_record_encode_out_of_range(rec: EidRecord) -> None:
    with pytest.raises(EncodeError):
        encode_eid_record(rec)


def test_record_encode_mask_wider_than_address() -> None:
    with pytest.raises(EncodeError):
        encode_eid_record(EidRecord(EID4, 33))
