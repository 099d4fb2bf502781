"""Unit tests of the LISP control messages: Map-Request, Map-Reply, Map-Register, Map-Notify(-Ack),
Info-Request/Reply, ECM, and the decode_control / encode_control dispatch.

Golden bytes are worked out by hand from RFC 9301 section 5 and the NAT-traversal draft (Info);
every field has a comment.  Each golden is checked both ways: decode(golden) == object and
encode(object) == golden.
"""

from __future__ import annotations

from dataclasses import replace
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
    NatTraversalAddress,
    UnknownLcaf,
    encode_address,
)
from lispd.wire.auth import KeyId
from lispd.wire.control import (
    MESSAGE_NAMES,
    ControlMessage,
    control_type,
    decode_control,
    encode_control,
)
from lispd.wire.ecm import EncapsulatedControl, decode_ecm, encode_ecm
from lispd.wire.errors import EncodeError, WireError
from lispd.wire.info import InfoMessage, decode_info, encode_info
from lispd.wire.ip import IPv4Header, IPv6Header
from lispd.wire.mapreferral import MapReferral
from lispd.wire.mapregister import (
    MapNotify,
    MapRegister,
    RtrAuth,
    decode_map_notify,
    decode_map_register,
    encode_map_notify,
    encode_map_register,
)
from lispd.wire.mapreply import MapReply, decode_map_reply, encode_map_reply
from lispd.wire.maprequest import MapRequest, decode_map_request, encode_map_request
from lispd.wire.records import Action, EidPrefix, EidRecord, Locator

RLOC4 = IPv4Address("192.0.2.1")
RLOC4B = IPv4Address("192.0.2.5")
RLOC6 = IPv6Address("2001:db8::1")
RLOC6B = IPv6Address("2001:db8::5")
EID4 = IPv4Address("198.51.100.0")
EID4_HOST = IPv4Address("198.51.100.1")
EID6 = IPv6Address("2001:db8:100::")
EID6_HOST = IPv6Address("2001:db8:100::1")
NONCE = 0x0102030405060708


def reason_of(fn, data: bytes) -> str:
    with pytest.raises(WireError) as info:
        fn(data)
    return info.value.reason


# =================================================================================================
# Golden vectors
# =================================================================================================

MAP_REQUEST_GOLDEN = bytes.fromhex(
    "10"  # type 1; A=0 M=0 P=0 S=0
    "00"  # p=0 s=0, reserved
    "01"  # reserved(3) L=0 D=0, IRC=1 (two ITR-RLOCs)
    "01"  # record count 1
    "0102030405060708"  # nonce
    # source EID: instance-ID LCAF
    "4003"  # AFI LCAF
    "00"  # rsvd1
    "00"  # flags
    "02"  # type 2 instance-ID
    "00"  # IID mask-len
    "000a"  # length 10
    "00000007"  # IID 7
    "0001"  # AFI 1
    "c6336401"  # 198.51.100.1
    # ITR-RLOC 1
    "0001"  # AFI 1
    "c0000201"  # 192.0.2.1
    # ITR-RLOC 2
    "0002"  # AFI 2
    "20010db8000000000000000000000001"  # 2001:db8::1
    # record 1
    "00"  # reserved
    "1c"  # EID mask-len 28
    "4003"  # AFI LCAF
    "0000"  # rsvd1, flags
    "02"  # type 2 instance-ID
    "00"  # IID mask-len
    "000a"  # length 10
    "00000007"  # IID 7
    "0001"  # AFI 1
    "c6336410"  # 198.51.100.16
)
MAP_REQUEST = MapRequest(
    nonce=NONCE,
    records=(EidPrefix(InstanceIdAddress(7, IPv4Address("198.51.100.16")), 28),),
    itr_rlocs=(RLOC4, RLOC6),
    source_eid=InstanceIdAddress(7, EID4_HOST),
)

NEGATIVE_MAP_REPLY_GOLDEN = bytes.fromhex(
    "20"  # type 2; P=0 E=0 S=0
    "00"  # reserved
    "00"  # reserved / reported TTL 0
    "01"  # record count 1
    "1122334455667788"  # nonce
    "0000000f"  # record TTL 15 minutes
    "00"  # locator count 0
    "18"  # EID mask-len 24
    "2000"  # ACT 1 Natively-Forward (1 << 13), A=0
    "0000"  # map-version 0
    "0001"  # AFI 1
    "c6336400"  # 198.51.100.0
)
NEGATIVE_MAP_REPLY = MapReply(
    nonce=0x1122334455667788,
    records=(EidRecord(EID4, 24, (), ttl=15, action=Action.NATIVELY_FORWARD),),
)

MAP_REGISTER_GOLDEN = bytes.fromhex(
    "38"  # type 3, P=1 (proxy Map-Reply)
    "00"  # S=0 I=0 R=0, reserved
    "01"  # E=0 T=0 a=0, M=1 (want Map-Notify)
    "02"  # record count 2
    "8877665544332211"  # nonce
    "0002"  # key-id 2 (HMAC-SHA-256-128)
    "0020"  # authentication data length 32
    # authentication data, 32 bytes of 0x5a (opaque to the codec):
    "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"
    # record 1
    "000005a0"  # TTL 1440
    "01"  # locator count 1
    "1c"  # EID mask-len 28
    "1000"  # ACT 0, A=1
    "0000"  # map-version 0
    "0001"  # AFI 1
    "c6336410"  # 198.51.100.16
    "01"  # priority 1
    "64"  # weight 100
    "ff"  # m-priority 255
    "00"  # m-weight 0
    "0005"  # L + R
    "0001"  # AFI 1
    "c0000201"  # 192.0.2.1
    # record 2
    "000005a0"  # TTL 1440
    "02"  # locator count 2
    "40"  # EID mask-len 64
    "1000"  # ACT 0, A=1
    "0000"  # map-version 0
    "4003"  # AFI LCAF
    "0000"  # rsvd1, flags
    "02"  # instance-ID
    "00"  # IID mask-len
    "0016"  # length 22
    "00000007"  # IID 7
    "0002"  # AFI 2
    "20010db8010000010000000000000000"  # 2001:db8:100:1::
    "01"  # priority 1
    "32"  # weight 50
    "ff"  # m-priority 255
    "00"  # m-weight 0
    "0005"  # L + R
    "0002"  # AFI 2
    "20010db8000000000000000000000001"  # 2001:db8::1
    "01"  # priority 1
    "32"  # weight 50
    "ff"  # m-priority 255
    "00"  # m-weight 0
    "0001"  # R
    "0001"  # AFI 1
    "c0000205"  # 192.0.2.5
)
MAP_REGISTER = MapRegister(
    nonce=0x8877665544332211,
    records=(
        EidRecord(
            IPv4Address("198.51.100.16"),
            28,
            (Locator(RLOC4, 1, 100, local=True),),
            authoritative=True,
        ),
        EidRecord(
            InstanceIdAddress(7, IPv6Address("2001:db8:100:1::")),
            64,
            (Locator(RLOC6, 1, 50, local=True), Locator(RLOC4B, 1, 50)),
            authoritative=True,
        ),
    ),
    key_id=KeyId.HMAC_SHA_256_128,
    auth_data=b"\x5a" * 32,
    proxy_reply=True,
    want_map_notify=True,
)

MAP_NOTIFY_ACK_GOLDEN = bytes.fromhex(
    "50"  # type 5 Map-Notify-Ack, I=0 R=0
    "00"  # reserved
    "00"  # reserved
    "01"  # record count 1
    "8877665544332212"  # nonce
    "0001"  # key-id 1 (HMAC-SHA-1-96)
    "0014"  # authentication data length 20
    "00112233445566778899aabbccddeeff00112233"  # authentication data
    "000005a0"  # TTL 1440
    "01"  # locator count 1
    "18"  # EID mask-len 24
    "1000"  # ACT 0, A=1
    "0000"  # map-version 0
    "0001"  # AFI 1
    "c6336400"  # 198.51.100.0
    "01"  # priority 1
    "64"  # weight 100
    "ff"  # m-priority 255
    "00"  # m-weight 0
    "0005"  # L + R
    "0001"  # AFI 1
    "c0000201"  # 192.0.2.1
)
MAP_NOTIFY_ACK = MapNotify(
    nonce=0x8877665544332212,
    records=(EidRecord(EID4, 24, (Locator(RLOC4, 1, 100, local=True),), authoritative=True),),
    key_id=KeyId.HMAC_SHA_1_96,
    auth_data=bytes.fromhex("00112233445566778899aabbccddeeff00112233"),
    ack=True,
)

INFO_REPLY_GOLDEN = bytes.fromhex(
    "78"  # type 7, R=1 (Info-Reply)
    "000000"  # reserved
    "0a0b0c0d0e0f1011"  # nonce
    "0000"  # key-id 0
    "0000"  # authentication data length 0
    "0000000f"  # TTL 15 minutes
    "00"  # reserved
    "00"  # EID mask-len 0
    "0000"  # EID-prefix AFI 0
    "4003"  # AFI LCAF
    "0000"  # rsvd1, flags
    "07"  # type 7 NAT-traversal
    "00"  # rsvd2
    "0040"  # length 64 = 2 + 2 + 6 + 6 + 6 + 6 + 18 + 18
    "10f6"  # MS UDP port 4342
    "c350"  # ETR UDP port 50000 (translated)
    "0001"  # global ETR RLOC AFI 1
    "cb007105"  # 203.0.113.5
    "0001"  # MS RLOC AFI 1
    "c0000209"  # 192.0.2.9
    "0001"  # private ETR RLOC AFI 1
    "c0000281"  # 192.0.2.129
    "0001"  # RTR 1 AFI 1
    "c000020d"  # 192.0.2.13
    "0002"  # RTR 2 AFI 2
    "20010db800000000000000000000000d"  # 2001:db8::d
    "0002"  # RTR 3 AFI 2
    "20010db800000000000000000000000e"  # 2001:db8::e
)
NAT_LCAF = NatTraversalAddress(
    ms_port=4342,
    etr_port=50000,
    global_etr_rloc=IPv4Address("203.0.113.5"),
    ms_rloc=IPv4Address("192.0.2.9"),
    private_etr_rloc=IPv4Address("192.0.2.129"),
    rtr_rlocs=(
        IPv4Address("192.0.2.13"),
        IPv6Address("2001:db8::d"),
        IPv6Address("2001:db8::e"),
    ),
)
INFO_REPLY = InfoMessage(nonce=0x0A0B0C0D0E0F1011, reply=True, ttl=15, address=NAT_LCAF)

ECM_INNER_REQUEST = MapRequest(
    nonce=NONCE,
    records=(EidPrefix(IPv4Address("198.51.100.200"), 32),),
    itr_rlocs=(RLOC4,),
    source_eid=EID4_HOST,
)
ECM_GOLDEN = bytes.fromhex(
    "80000000"  # ECM: type 8, S=0 D=0 E=0 M=0 R=0 N=0
    # inner IPv4 header
    "45"  # version 4, IHL 5
    "00"  # TOS
    "003c"  # total length 60 = 20 + 8 + 32
    "0000"  # identification
    "4000"  # DF
    "40"  # TTL 64
    "11"  # UDP
    "e580"  # header checksum (hand sum 0x31a7c -> 0x1a7f -> ~ = 0xe580)
    "c6336401"  # source EID 198.51.100.1
    "c63364c8"  # destination EID 198.51.100.200
    # inner UDP header
    "c350"  # source port 50000
    "10f6"  # destination port 4342
    "0028"  # length 40 = 8 + 32
    "0000"  # checksum zero
    # Map-Request
    "10"  # type 1, no flags
    "00"  # reserved
    "00"  # IRC 0 (one ITR-RLOC)
    "01"  # record count 1
    "0102030405060708"  # nonce
    "0001"  # source EID AFI 1
    "c6336401"  # 198.51.100.1
    "0001"  # ITR-RLOC AFI 1
    "c0000201"  # 192.0.2.1
    "00"  # reserved
    "20"  # mask-len 32
    "0001"  # AFI 1
    "c63364c8"  # 198.51.100.200
)
ECM = EncapsulatedControl(
    inner_ip=IPv4Header(EID4_HOST, IPv4Address("198.51.100.200")),
    sport=50000,
    dport=4342,
    message=ECM_INNER_REQUEST,
    zero_checksum=True,
)

GOLDEN: list[tuple[str, bytes, ControlMessage, object, object]] = [
    ("map-request", MAP_REQUEST_GOLDEN, MAP_REQUEST, decode_map_request, encode_map_request),
    (
        "negative-map-reply",
        NEGATIVE_MAP_REPLY_GOLDEN,
        NEGATIVE_MAP_REPLY,
        decode_map_reply,
        encode_map_reply,
    ),
    ("map-register", MAP_REGISTER_GOLDEN, MAP_REGISTER, decode_map_register, encode_map_register),
    (
        "map-notify-ack",
        MAP_NOTIFY_ACK_GOLDEN,
        MAP_NOTIFY_ACK,
        decode_map_notify,
        encode_map_notify,
    ),
    ("info-reply", INFO_REPLY_GOLDEN, INFO_REPLY, decode_info, encode_info),
    ("ecm-map-request", ECM_GOLDEN, ECM, decode_ecm, encode_ecm),
]
GOLDEN_IDS = [g[0] for g in GOLDEN]


@pytest.mark.parametrize(("name", "wire", "msg", "dec", "enc"), GOLDEN, ids=GOLDEN_IDS)
def test_golden_decode(name, wire, msg, dec, enc) -> None:
    assert dec(wire) == msg
    assert decode_control(wire) == msg


@pytest.mark.parametrize(("name", "wire", "msg", "dec", "enc"), GOLDEN, ids=GOLDEN_IDS)
def test_golden_encode(name, wire, msg, dec, enc) -> None:
    assert enc(msg) == wire
    assert encode_control(msg) == wire


@pytest.mark.parametrize(("name", "wire", "msg", "dec", "enc"), GOLDEN, ids=GOLDEN_IDS)
def test_golden_every_truncation_raises_wire_error(name, wire, msg, dec, enc) -> None:
    for cut in range(len(wire)):
        with pytest.raises(WireError):
            dec(wire[:cut])
        with pytest.raises(WireError):
            decode_control(wire[:cut])


def test_golden_ecm_inner_header_checksum_verifies() -> None:
    from lispd.wire.ip import internet_checksum

    assert internet_checksum(ECM_GOLDEN[4:24]) == 0


# =================================================================================================
# Map-Request
# =================================================================================================

REC4 = (EidPrefix(IPv4Address("198.51.100.130"), 32),)
REPLY_RECORD = EidRecord(EID4, 24, (Locator(RLOC4, local=True),), authoritative=True)


def base_request(**kwargs) -> MapRequest:
    fields = {"nonce": NONCE, "records": REC4, "itr_rlocs": (RLOC4,)}
    fields.update(kwargs)
    return MapRequest(**fields)


@pytest.mark.parametrize(
    ("kwargs", "bit"),
    [
        ({"authoritative": True}, 0x08000000),
        ({"map_reply": REPLY_RECORD}, 0x04000000),
        ({"probe": True}, 0x02000000),
        ({"smr": True}, 0x01000000),
        ({"pitr": True}, 0x00800000),
        ({"smr_invoked": True}, 0x00400000),
        ({"local_xtr": True}, 0x00004000),
        ({"dont_map_reply": True}, 0x00002000),
    ],
    ids=["A", "M", "P", "S", "p", "s", "L", "D"],
)
def test_map_request_each_flag(kwargs: dict, bit: int) -> None:
    msg = base_request(**kwargs)
    wire = encode_map_request(msg)
    assert int.from_bytes(wire[:4], "big") == 0x10000001 | bit
    assert decode_map_request(wire) == msg
    assert encode_map_request(decode_map_request(wire)) == wire


def test_map_request_m_bit_appends_record() -> None:
    plain = encode_map_request(base_request())
    with_record = encode_map_request(base_request(map_reply=REPLY_RECORD))
    assert with_record[4:].startswith(plain[4:])
    assert len(with_record) > len(plain)


def test_map_request_all_flags_together() -> None:
    msg = base_request(
        authoritative=True,
        map_reply=REPLY_RECORD,
        probe=True,
        smr=True,
        pitr=True,
        smr_invoked=True,
        local_xtr=True,
        dont_map_reply=True,
    )
    wire = encode_map_request(msg)
    assert wire[:4] == bytes.fromhex("1fc06001")
    assert decode_map_request(wire) == msg


def test_map_request_reserved_bits_preserved() -> None:
    # lispers.net's private m bit (0x00200000) and N bit (0x00008000) are reserved for us.
    wire = bytearray(encode_map_request(base_request()))
    wire[1] |= 0x20
    wire[2] |= 0x80
    msg = decode_map_request(bytes(wire))
    assert msg.reserved == 0x00208000
    assert encode_map_request(msg) == bytes(wire)


MAP_REQUEST_ROUND_TRIP = [
    base_request(),
    base_request(source_eid=NO_ADDRESS, probe=True),
    base_request(
        records=(EidPrefix(EID6_HOST, 128),),
        itr_rlocs=(RLOC6,),
        source_eid=IPv6Address("2001:db8:100::2"),
    ),
    base_request(
        records=(EidPrefix(InstanceIdAddress(0xFFFFFF, EID6), 48),),
        itr_rlocs=(RLOC6, RLOC4),
        source_eid=InstanceIdAddress(0xFFFFFF, EID6_HOST),
    ),
    base_request(
        records=(EidPrefix(InstanceIdAddress(0xDEADBEEF, EID4), 24),),
        source_eid=InstanceIdAddress(0xDEADBEEF, EID4_HOST),
    ),
    base_request(itr_rlocs=tuple(IPv4Address(f"192.0.2.{i}") for i in range(1, 33))),
    base_request(records=tuple(EidPrefix(IPv4Address(f"198.51.100.{i}"), 32) for i in range(255))),
    base_request(records=(EidPrefix(EID4, 24), EidPrefix(EID6, 48), EidPrefix(NO_ADDRESS, 0))),
    base_request(itr_rlocs=(AfiListAddress((RLOC4, RLOC6)), DistinguishedName("itr.example"))),
    base_request(itr_rlocs=(UnknownLcaf(11, bytes.fromhex("0100010000040102030400010c000201")),)),
    base_request(records=(EidPrefix(MacAddress(bytes.fromhex("00005e005301")), 48),)),
    base_request(smr=True, source_eid=EID4_HOST, dont_map_reply=True),
    base_request(
        map_reply=EidRecord(
            InstanceIdAddress(7, EID6),
            48,
            (Locator(RLOC6, local=True), Locator(RLOC4, priority=255)),
            map_version=9,
        )
    ),
]


@pytest.mark.parametrize("msg", MAP_REQUEST_ROUND_TRIP, ids=range(len(MAP_REQUEST_ROUND_TRIP)))
def test_map_request_round_trip(msg: MapRequest) -> None:
    wire = encode_map_request(msg)
    assert decode_map_request(wire) == msg
    assert encode_map_request(decode_map_request(wire)) == wire


def test_map_request_irc_field() -> None:
    msg = base_request(itr_rlocs=tuple(IPv4Address(f"192.0.2.{i}") for i in range(1, 33)))
    wire = encode_map_request(msg)
    assert wire[2] & 0x1F == 31


@pytest.mark.parametrize("msg", MAP_REQUEST_ROUND_TRIP[:5] + MAP_REQUEST_ROUND_TRIP[-2:])
def test_map_request_every_truncation(msg: MapRequest) -> None:
    wire = encode_map_request(msg)
    for cut in range(len(wire)):
        with pytest.raises(WireError):
            decode_map_request(wire[:cut])


def test_map_request_zero_records_is_bad_count() -> None:
    wire = bytearray(encode_map_request(base_request()))
    wire[3] = 0
    assert reason_of(decode_map_request, bytes(wire)) == "bad-count"


def test_map_request_count_255_is_bad_count() -> None:
    wire = bytearray(encode_map_request(base_request()))
    wire[3] = 255
    assert reason_of(decode_map_request, bytes(wire)) == "bad-count"


def test_map_request_irc_beyond_buffer_is_refused() -> None:
    wire = bytearray(encode_map_request(base_request()))
    wire[2] |= 0x1F  # claims 32 ITR-RLOCs: the record bytes are read as RLOCs, then nothing
    assert reason_of(decode_map_request, bytes(wire)) in {"truncated", "bad-afi"}
    only_rlocs = encode_map_request(base_request())[:20] + bytes.fromhex("0001c0000202")
    wire = bytearray(only_rlocs)
    wire[2] |= 0x1F
    assert reason_of(decode_map_request, bytes(wire)) == "truncated"


def test_map_request_ipv4_mask_33_is_bad_mask_len() -> None:
    wire = bytearray(encode_map_request(base_request()))
    assert wire[-7] == 32
    wire[-7] = 33
    assert reason_of(decode_map_request, bytes(wire)) == "bad-mask-len"


def test_map_request_ipv6_mask_129_is_bad_mask_len() -> None:
    wire = bytearray(encode_map_request(base_request(records=(EidPrefix(EID6_HOST, 128),))))
    wire[-19] = 129
    assert reason_of(decode_map_request, bytes(wire)) == "bad-mask-len"


def test_map_request_unknown_afi_is_bad_afi() -> None:
    wire = bytearray(encode_map_request(base_request(source_eid=EID4_HOST)))
    wire[12:14] = b"\x00\x03"
    assert reason_of(decode_map_request, bytes(wire)) == "bad-afi"


def test_map_request_lcaf_length_beyond_buffer() -> None:
    wire = bytearray(MAP_REQUEST_GOLDEN)
    wire[18:20] = b"\xff\xff"  # source EID LCAF length
    assert reason_of(decode_map_request, bytes(wire)) == "bad-lcaf-length"


def test_map_request_lcaf_unused_bytes() -> None:
    # Grow the source-EID IID LCAF length by 2 and insert 2 unused bytes at its end.
    wire = MAP_REQUEST_GOLDEN[:18] + b"\x00\x0c" + MAP_REQUEST_GOLDEN[20:30] + b"\x00\x00"
    wire += MAP_REQUEST_GOLDEN[30:]
    assert reason_of(decode_map_request, wire) == "bad-lcaf-length"


def test_map_request_deep_lcaf_nesting_is_bad_lcaf() -> None:
    addr = EID4_HOST
    for i in range(40):
        addr = InstanceIdAddress(i, addr)
    wire = encode_map_request(base_request(source_eid=addr))
    assert reason_of(decode_map_request, wire) == "bad-lcaf"


def test_map_request_trailing_bytes() -> None:
    assert reason_of(decode_map_request, MAP_REQUEST_GOLDEN + b"\x00") == "trailing-bytes"


def test_map_request_m_bit_without_record_is_truncated() -> None:
    wire = bytearray(encode_map_request(base_request()))
    wire[0] |= 0x04
    assert reason_of(decode_map_request, bytes(wire)) == "truncated"


@pytest.mark.parametrize(
    "msg",
    [
        base_request(itr_rlocs=tuple(RLOC4 for _ in range(33))),
        base_request(itr_rlocs=()),
        base_request(records=()),
        base_request(records=REC4 * 256),
        base_request(records=(EidPrefix(EID4, 256),)),
        base_request(records=(EidPrefix(EID4, -1),)),
        base_request(source_eid=InstanceIdAddress(1 << 32, EID4_HOST)),
        base_request(map_reply=EidRecord(EID4, 24, map_version=4096)),
    ],
    ids=[
        "33-itr-rlocs",
        "0-itr-rlocs",
        "0-records",
        "256-records",
        "mask-256",
        "mask-neg",
        "iid-33-bits",
        "map-version-4096",
    ],
)
def test_map_request_encode_errors(msg: MapRequest) -> None:
    with pytest.raises(EncodeError):
        encode_map_request(msg)


def test_map_request_nonce_out_of_range() -> None:
    with pytest.raises(EncodeError):
        encode_map_request(base_request(nonce=1 << 64))


def test_map_request_mask_wider_than_address() -> None:
    with pytest.raises(EncodeError):
        encode_map_request(base_request(records=(EidPrefix(EID4, 33),)))


# =================================================================================================
# Map-Reply
# =================================================================================================

POSITIVE_RECORD = EidRecord(
    EID6,
    48,
    (Locator(RLOC6, 1, 50, local=True), Locator(RLOC4, 1, 50, probed=True)),
    authoritative=True,
)


@pytest.mark.parametrize(
    ("kwargs", "word0"),
    [
        ({"probe": True}, 0x28000001),
        ({"echo_nonce_capable": True}, 0x24000001),
        ({"security_data": bytes.fromhex("0001000400000000")}, 0x22000001),
        ({"reported_ttl": 63}, 0x20003F01),
        ({"reported_ttl": 255}, 0x2000FF01),
    ],
    ids=["P", "E", "S", "ttl-63", "ttl-255"],
)
def test_map_reply_each_flag(kwargs: dict, word0: int) -> None:
    msg = MapReply(nonce=NONCE, records=(POSITIVE_RECORD,), **kwargs)
    wire = encode_map_reply(msg)
    assert int.from_bytes(wire[:4], "big") == word0
    assert decode_map_reply(wire) == msg
    assert encode_map_reply(decode_map_reply(wire)) == wire


def test_map_reply_security_data_follows_records() -> None:
    sec = bytes(range(40))
    msg = MapReply(nonce=NONCE, records=(POSITIVE_RECORD,), security_data=sec)
    wire = encode_map_reply(msg)
    assert wire.endswith(sec)
    assert decode_map_reply(wire).security_data == sec


def test_map_reply_empty_security_data_keeps_s_bit() -> None:
    msg = MapReply(nonce=NONCE, records=(POSITIVE_RECORD,), security_data=b"")
    wire = encode_map_reply(msg)
    assert wire[0] == 0x22
    assert decode_map_reply(wire) == msg


@pytest.mark.parametrize("action", list(Action), ids=lambda a: a.name)
def test_map_reply_every_action(action: Action) -> None:
    msg = MapReply(nonce=NONCE, records=(EidRecord(EID4, 24, ttl=15, action=action),))
    wire = encode_map_reply(msg)
    assert wire[18] >> 5 == action
    assert decode_map_reply(wire) == msg


MAP_REPLY_ROUND_TRIP = [
    MapReply(nonce=0, records=()),
    MapReply(nonce=(1 << 64) - 1, records=(POSITIVE_RECORD,)),
    MapReply(nonce=NONCE, records=(POSITIVE_RECORD, NEGATIVE_MAP_REPLY.records[0])),
    MapReply(
        nonce=NONCE,
        records=(
            EidRecord(
                InstanceIdAddress(0xFFFFFF, EID4),
                24,
                (Locator(ElpAddress((ElpHop(RLOC4B, strict=True), ElpHop(RLOC4))), weight=0),),
            ),
        ),
        probe=True,
        echo_nonce_capable=True,
        reported_ttl=9,
    ),
    MapReply(nonce=NONCE, records=(POSITIVE_RECORD,), reserved=0x01FF0000),
]


@pytest.mark.parametrize("msg", MAP_REPLY_ROUND_TRIP, ids=range(len(MAP_REPLY_ROUND_TRIP)))
def test_map_reply_round_trip(msg: MapReply) -> None:
    wire = encode_map_reply(msg)
    assert decode_map_reply(wire) == msg
    assert encode_map_reply(decode_map_reply(wire)) == wire


@pytest.mark.parametrize("msg", MAP_REPLY_ROUND_TRIP, ids=range(len(MAP_REPLY_ROUND_TRIP)))
def test_map_reply_every_truncation(msg: MapReply) -> None:
    # (Without S: with S, every cut inside the security data is itself a valid message.)
    wire = encode_map_reply(msg)
    for cut in range(len(wire)):
        with pytest.raises(WireError):
            decode_map_reply(wire[:cut])


def test_map_reply_count_255_is_bad_count() -> None:
    wire = bytearray(NEGATIVE_MAP_REPLY_GOLDEN)
    wire[3] = 255
    assert reason_of(decode_map_reply, bytes(wire)) == "bad-count"


def test_map_reply_ipv4_mask_33_is_bad_mask_len() -> None:
    wire = bytearray(NEGATIVE_MAP_REPLY_GOLDEN)
    wire[17] = 33
    assert reason_of(decode_map_reply, bytes(wire)) == "bad-mask-len"


def test_map_reply_trailing_bytes() -> None:
    assert reason_of(decode_map_reply, NEGATIVE_MAP_REPLY_GOLDEN + b"\x00") == "trailing-bytes"


@pytest.mark.parametrize(
    "msg",
    [
        MapReply(nonce=1, records=(NEGATIVE_MAP_REPLY.records[0],) * 256),
        MapReply(nonce=1, records=(), reported_ttl=256),
        MapReply(nonce=1, records=(), reported_ttl=-1),
        MapReply(nonce=1, records=(EidRecord(EID4, 24, (Locator(RLOC4, priority=256),)),)),
    ],
    ids=["256-records", "ttl-256", "ttl-neg", "priority-256"],
)
def test_map_reply_encode_errors(msg: MapReply) -> None:
    with pytest.raises(EncodeError):
        encode_map_reply(msg)


def test_map_reply_nonce_out_of_range() -> None:
    with pytest.raises(EncodeError):
        encode_map_reply(MapReply(nonce=1 << 64, records=()))


# =================================================================================================
# Map-Register / Map-Notify / Map-Notify-Ack
# =================================================================================================

REG_RECORD = EidRecord(EID4, 24, (Locator(RLOC4, local=True),), authoritative=True)
XTR_ID = 0x0123456789ABCDEF0011223344556677
SITE_ID = 0xFEDCBA9876543210


def base_register(**kwargs) -> MapRegister:
    fields = {"nonce": 5, "records": (REG_RECORD,), "key_id": 1, "auth_data": bytes(20)}
    fields.update(kwargs)
    return MapRegister(**fields)


@pytest.mark.parametrize(
    ("kwargs", "bit"),
    [
        ({"proxy_reply": True}, 0x08000000),
        ({"security_capable": True}, 0x04000000),
        ({"xtr_id": XTR_ID, "site_id": SITE_ID}, 0x02000000),
        ({"for_rtr": True}, 0x01000000),
        ({"eid_notify": True}, 0x00001000),
        ({"ttl_timeout": True}, 0x00000800),
        ({"merge": True}, 0x00000400),
        ({"want_map_notify": True}, 0x00000100),
    ],
    ids=["P", "S", "I", "R", "E", "T", "a", "M"],
)
def test_map_register_each_flag(kwargs: dict, bit: int) -> None:
    msg = base_register(**kwargs)
    wire = encode_map_register(msg)
    assert int.from_bytes(wire[:4], "big") == 0x30000001 | bit
    assert decode_map_register(wire) == msg
    assert encode_map_register(decode_map_register(wire)) == wire


def test_map_register_xtr_and_site_id_layout() -> None:
    wire = encode_map_register(base_register(xtr_id=XTR_ID, site_id=SITE_ID))
    assert wire[-24:] == bytes.fromhex(
        "0123456789abcdef0011223344556677"  # xTR-ID (128 bits)
        "fedcba9876543210"  # site-ID (64 bits)
    )


@pytest.mark.parametrize(
    ("xtr_id", "site_id"), [(0, 0), ((1 << 128) - 1, (1 << 64) - 1), (1, 1 << 63)]
)
def test_map_register_id_extremes(xtr_id: int, site_id: int) -> None:
    msg = base_register(xtr_id=xtr_id, site_id=site_id)
    assert decode_map_register(encode_map_register(msg)) == msg


def test_map_register_reserved_bits_preserved() -> None:
    wire = bytearray(encode_map_register(base_register()))
    wire[1] |= 0xFF
    wire[2] |= 0xE2
    msg = decode_map_register(bytes(wire))
    assert msg.reserved == 0x00FFE200
    assert encode_map_register(msg) == bytes(wire)


MAP_REGISTER_ROUND_TRIP = [
    base_register(),
    base_register(key_id=KeyId.NONE, auth_data=b""),
    base_register(key_id=KeyId.HMAC_SHA_256_128, auth_data=bytes(range(32))),
    base_register(key_id=0x0102, auth_data=b"\x01" * 16),  # RFC 9301 key-id 1, alg-id 2
    base_register(records=()),
    base_register(
        records=(
            REG_RECORD,
            EidRecord(InstanceIdAddress(0xFFFFFF, EID6), 48, (Locator(RLOC6),), ttl=3),
            EidRecord(InstanceIdAddress(4000000000, EID4), 24, (Locator(RLOC4B, priority=0),)),
        ),
        proxy_reply=True,
        want_map_notify=True,
        xtr_id=XTR_ID,
        site_id=SITE_ID,
        for_rtr=True,
    ),
    base_register(
        records=(EidRecord(EID4, 24, (Locator(RLOC4, priority=255, weight=0),)),),
        eid_notify=True,
        ttl_timeout=True,
        merge=True,
        security_capable=True,
    ),
]


@pytest.mark.parametrize("msg", MAP_REGISTER_ROUND_TRIP, ids=range(len(MAP_REGISTER_ROUND_TRIP)))
def test_map_register_round_trip(msg: MapRegister) -> None:
    wire = encode_map_register(msg)
    assert decode_map_register(wire) == msg
    assert encode_map_register(decode_map_register(wire)) == wire
    assert decode_control(wire) == msg


@pytest.mark.parametrize("msg", MAP_REGISTER_ROUND_TRIP, ids=range(len(MAP_REGISTER_ROUND_TRIP)))
def test_map_register_every_truncation(msg: MapRegister) -> None:
    wire = encode_map_register(msg)
    for cut in range(len(wire)):
        with pytest.raises(WireError):
            decode_map_register(wire[:cut])


def base_notify(**kwargs) -> MapNotify:
    fields = {"nonce": 5, "records": (REG_RECORD,), "key_id": 2, "auth_data": bytes(32)}
    fields.update(kwargs)
    return MapNotify(**fields)


@pytest.mark.parametrize(
    ("kwargs", "word0"),
    [
        ({}, 0x40000001),
        ({"xtr_id": XTR_ID, "site_id": SITE_ID}, 0x48000001),
        ({"rtr_auth": RtrAuth()}, 0x44000001),
        ({"ack": True}, 0x50000001),
        (
            {"ack": True, "xtr_id": XTR_ID, "site_id": SITE_ID, "rtr_auth": RtrAuth(1, bytes(20))},
            0x5C000001,
        ),
    ],
    ids=["notify", "I", "R", "ack", "ack-I-R"],
)
def test_map_notify_flags(kwargs: dict, word0: int) -> None:
    msg = base_notify(**kwargs)
    wire = encode_map_notify(msg)
    assert int.from_bytes(wire[:4], "big") == word0
    assert decode_map_notify(wire) == msg
    assert decode_control(wire) == msg
    assert encode_map_notify(decode_map_notify(wire)) == wire


def test_map_notify_reserved_bits_preserved() -> None:
    wire = bytearray(encode_map_notify(base_notify()))
    wire[0] |= 0x03
    wire[1:3] = b"\xff\xff"
    msg = decode_map_notify(bytes(wire))
    assert msg.reserved == 0x03FFFF00
    assert encode_map_notify(msg) == bytes(wire)


def test_map_notify_same_body_as_register() -> None:
    reg = base_register(key_id=2, auth_data=bytes(32), xtr_id=XTR_ID, site_id=SITE_ID)
    notify = base_notify(xtr_id=XTR_ID, site_id=SITE_ID)
    assert encode_map_register(reg)[4:] == encode_map_notify(notify)[4:]


@pytest.mark.parametrize(
    "msg",
    [base_notify(), base_notify(ack=True, xtr_id=1, site_id=2), base_notify(records=())],
)
def test_map_notify_every_truncation(msg: MapNotify) -> None:
    wire = encode_map_notify(msg)
    for cut in range(len(wire)):
        with pytest.raises(WireError):
            decode_map_notify(wire[:cut])


def test_map_register_count_255_is_bad_count() -> None:
    wire = bytearray(MAP_REGISTER_GOLDEN)
    wire[3] = 255
    assert reason_of(decode_map_register, bytes(wire)) == "bad-count"
    wire = bytearray(MAP_NOTIFY_ACK_GOLDEN)
    wire[3] = 255
    assert reason_of(decode_map_notify, bytes(wire)) == "bad-count"


def test_map_register_auth_length_beyond_buffer_is_truncated() -> None:
    wire = bytearray(MAP_REGISTER_GOLDEN)
    wire[14:16] = b"\xff\xff"
    assert reason_of(decode_map_register, bytes(wire)) == "truncated"


def test_map_register_i_bit_without_ids_is_truncated() -> None:
    wire = bytearray(MAP_REGISTER_GOLDEN)
    wire[0] |= 0x02
    assert reason_of(decode_map_register, bytes(wire)) == "truncated"


def test_map_register_and_notify_trailing_bytes() -> None:
    assert reason_of(decode_map_register, MAP_REGISTER_GOLDEN + b"\x00") == "trailing-bytes"
    assert reason_of(decode_map_notify, MAP_NOTIFY_ACK_GOLDEN + b"\x00") == "trailing-bytes"


def test_map_register_record_mask_33_is_bad_mask_len() -> None:
    wire = bytearray(MAP_REGISTER_GOLDEN)
    wire[53] = 33  # record 1 mask-len (after 16 header + 32 auth + 5)
    assert reason_of(decode_map_register, bytes(wire)) == "bad-mask-len"


@pytest.mark.parametrize(
    "msg",
    [
        base_register(records=(REG_RECORD,) * 256),
        base_register(xtr_id=XTR_ID),
        base_register(site_id=SITE_ID),
        base_register(xtr_id=1 << 128, site_id=0),
        base_register(xtr_id=0, site_id=1 << 64),
        base_register(xtr_id=-1, site_id=0),
        base_register(key_id=0x10000),
        base_register(nonce=1 << 64),
        base_register(nonce=-1),
        base_register(auth_data=bytes(0x10000)),
        base_register(records=(EidRecord(EID4, 24, map_version=4096),)),
    ],
    ids=[
        "256-records",
        "xtr-without-site",
        "site-without-xtr",
        "xtr-129-bits",
        "site-65-bits",
        "xtr-neg",
        "key-id-17-bits",
        "nonce-65-bits",
        "nonce-neg",
        "auth-64k",
        "map-version-4096",
    ],
)
def test_map_register_encode_errors(msg: MapRegister) -> None:
    with pytest.raises(EncodeError):
        encode_map_register(msg)


def test_map_notify_encode_errors() -> None:
    with pytest.raises(EncodeError):
        encode_map_notify(base_notify(xtr_id=1))
    with pytest.raises(EncodeError):
        encode_map_notify(base_notify(nonce=1 << 64))
    with pytest.raises(EncodeError):
        encode_map_notify(base_notify(records=(REG_RECORD,) * 256))


def test_register_and_notify_decoders_refuse_each_other() -> None:
    assert reason_of(decode_map_register, MAP_NOTIFY_ACK_GOLDEN) == "bad-type"
    assert reason_of(decode_map_notify, MAP_REGISTER_GOLDEN) == "bad-type"


# =================================================================================================
# Info-Request / Info-Reply
# =================================================================================================

INFO_ROUND_TRIP = [
    InfoMessage(nonce=1),
    InfoMessage(nonce=2, key_id=1, auth_data=bytes(range(20)), ttl=0),
    InfoMessage(nonce=3, address=DistinguishedName("etr-1.example")),  # lispers.net hostname
    InfoMessage(nonce=4, eid=EID4_HOST, eid_mask_len=32),
    InfoMessage(nonce=5, eid=InstanceIdAddress(7, EID6), eid_mask_len=48),
    INFO_REPLY,
    replace(INFO_REPLY, key_id=2, auth_data=bytes(32), ttl=1440),
    replace(INFO_REPLY, address=replace(NAT_LCAF, private_etr_rloc=NO_ADDRESS, rtr_rlocs=())),
    replace(
        INFO_REPLY,
        address=replace(NAT_LCAF, rtr_rlocs=tuple(IPv4Address(f"192.0.2.{i}") for i in range(20))),
    ),
    InfoMessage(nonce=6, reserved=0x00ABCDEF),
]


@pytest.mark.parametrize("msg", INFO_ROUND_TRIP, ids=range(len(INFO_ROUND_TRIP)))
def test_info_round_trip(msg: InfoMessage) -> None:
    wire = encode_info(msg)
    assert decode_info(wire) == msg
    assert decode_control(wire) == msg
    assert encode_info(decode_info(wire)) == wire
    assert wire[0] == (0x78 if msg.reply else 0x70) | (msg.reserved >> 24)


@pytest.mark.parametrize("msg", INFO_ROUND_TRIP, ids=range(len(INFO_ROUND_TRIP)))
def test_info_every_truncation(msg: InfoMessage) -> None:
    wire = encode_info(msg)
    for cut in range(len(wire)):
        with pytest.raises(WireError):
            decode_info(wire[:cut])


def test_info_request_golden() -> None:
    wire = bytes.fromhex(
        "70"  # type 7, R=0 (Info-Request)
        "000000"  # reserved
        "0000000000000009"  # nonce 9
        "0000"  # key-id 0
        "0000"  # auth length 0
        "00000000"  # TTL 0
        "00"  # reserved
        "00"  # EID mask-len 0
        "0000"  # EID-prefix AFI 0
        "0000"  # AFI 0 (nothing asked for)
    )
    msg = InfoMessage(nonce=9)
    assert decode_info(wire) == msg
    assert encode_info(msg) == wire


def test_info_mask_33_is_bad_mask_len() -> None:
    wire = bytearray(encode_info(InfoMessage(nonce=4, eid=EID4_HOST, eid_mask_len=32)))
    wire[21] = 33
    assert reason_of(decode_info, bytes(wire)) == "bad-mask-len"


def test_info_trailing_bytes() -> None:
    assert reason_of(decode_info, INFO_REPLY_GOLDEN + b"\x00") == "trailing-bytes"


def test_info_nat_lcaf_length_beyond_buffer() -> None:
    wire = bytearray(INFO_REPLY_GOLDEN)
    assert wire[30:32] == b"\x00\x40"  # NAT LCAF length
    wire[30:32] = b"\x00\x41"
    assert reason_of(decode_info, bytes(wire)) == "bad-lcaf-length"


@pytest.mark.parametrize(
    "msg",
    [
        InfoMessage(nonce=1, ttl=1 << 32),
        InfoMessage(nonce=1, eid_mask_len=256),
        InfoMessage(nonce=1, key_id=1 << 16),
        InfoMessage(nonce=1 << 64),
        InfoMessage(nonce=1, eid=InstanceIdAddress(1 << 32, EID4)),
    ],
    ids=["ttl", "mask", "key-id", "nonce", "iid"],
)
def test_info_encode_errors(msg: InfoMessage) -> None:
    with pytest.raises(EncodeError):
        encode_info(msg)


# =================================================================================================
# Encapsulated Control Message
# =================================================================================================

INNER_V4 = IPv4Header(EID4_HOST, IPv4Address("198.51.100.200"), ttl=32)
INNER_V6 = IPv6Header(EID6_HOST, IPv6Address("2001:db8:100::c8"), hop_limit=128)

INNER_MESSAGES: list[ControlMessage] = [
    ECM_INNER_REQUEST,
    base_request(records=(EidPrefix(EID6_HOST, 128),), itr_rlocs=(RLOC6, RLOC4), smr_invoked=True),
    NEGATIVE_MAP_REPLY,
    MAP_REGISTER,
    base_register(proxy_reply=True, want_map_notify=True, xtr_id=XTR_ID, site_id=SITE_ID),
    base_notify(rtr_auth=RtrAuth(1, bytes(20)), xtr_id=XTR_ID, site_id=SITE_ID),
    MAP_NOTIFY_ACK,
    InfoMessage(nonce=77),
    INFO_REPLY,
]
INNER_IDS = [
    "map-request",
    "map-request-v6",
    "map-reply",
    "map-register",
    "map-register-I",
    "map-notify-R",
    "map-notify-ack",
    "info-request",
    "info-reply",
]


@pytest.mark.parametrize("inner_ip", [INNER_V4, INNER_V6], ids=["inner-v4", "inner-v6"])
@pytest.mark.parametrize("message", INNER_MESSAGES, ids=INNER_IDS)
def test_ecm_round_trip_each_inner_type(inner_ip, message: ControlMessage) -> None:
    ecm = EncapsulatedControl(inner_ip=inner_ip, sport=61111, dport=4342, message=message)
    wire = encode_ecm(ecm)
    assert wire[:4] == b"\x80\x00\x00\x00"
    assert decode_ecm(wire) == ecm
    assert decode_control(wire) == ecm
    assert encode_ecm(decode_ecm(wire)) == wire
    assert wire[4] >> 4 == (4 if isinstance(inner_ip, IPv4Header) else 6)


@pytest.mark.parametrize(
    ("field", "bit"),
    [
        ("ddt", 0x04000000),
        ("to_etr", 0x02000000),
        ("to_ms", 0x01000000),
        ("rtr", 0x00400000),
        ("relayed", 0x00200000),
    ],
    ids=["D", "E", "M", "R", "N"],
)
@pytest.mark.parametrize("inner_ip", [INNER_V4, INNER_V6], ids=["inner-v4", "inner-v6"])
def test_ecm_each_flag(field: str, bit: int, inner_ip) -> None:
    ecm = EncapsulatedControl(inner_ip, 4342, 4342, ECM_INNER_REQUEST, **{field: True})
    wire = encode_ecm(ecm)
    assert int.from_bytes(wire[:4], "big") == 0x80000000 | bit
    assert decode_ecm(wire) == ecm


def test_ecm_reserved_bits_preserved() -> None:
    ecm = replace(ECM, reserved=0x009FFFFF)
    wire = encode_ecm(ecm)
    assert wire[:4] == bytes.fromhex("809fffff")
    assert decode_ecm(wire) == ecm


def test_ecm_inner_udp_checksum_computed_by_default() -> None:
    ecm = replace(ECM, zero_checksum=False)
    wire = encode_ecm(ecm)
    assert wire[30:32] != b"\x00\x00"
    assert decode_ecm(wire) == ecm


def test_ecm_s_bit_is_unsupported() -> None:
    wire = bytearray(ECM_GOLDEN)
    wire[0] |= 0x08
    assert reason_of(decode_ecm, bytes(wire)) == "unsupported-type"
    assert reason_of(decode_control, bytes(wire)) == "unsupported-type"


def test_ecm_inside_ecm_is_bad_type() -> None:
    from lispd.wire.ip import UdpDatagram, build_udp_datagram

    inner = build_udp_datagram(UdpDatagram(INNER_V4, 4342, 4342, ECM_GOLDEN))
    assert reason_of(decode_ecm, b"\x80\x00\x00\x00" + inner) == "bad-type"


def test_ecm_inner_garbage_type_is_unsupported() -> None:
    from lispd.wire.ip import UdpDatagram, build_udp_datagram

    inner = build_udp_datagram(UdpDatagram(INNER_V4, 4342, 4342, b"\x90" + bytes(15)))
    assert reason_of(decode_ecm, b"\x80\x00\x00\x00" + inner) == "unsupported-type"


def test_ecm_inner_not_udp_is_bad_protocol() -> None:
    wire = bytearray(ECM_GOLDEN)
    wire[13] = 6  # inner protocol TCP
    assert reason_of(decode_ecm, bytes(wire)) == "bad-protocol"


def test_ecm_inner_empty_payload_is_truncated() -> None:
    from lispd.wire.ip import UdpDatagram, build_udp_datagram

    inner = build_udp_datagram(UdpDatagram(INNER_V4, 4342, 4342, b""))
    assert reason_of(decode_ecm, b"\x80\x00\x00\x00" + inner) == "truncated"


def test_ecm_decoder_refuses_other_types() -> None:
    assert reason_of(decode_ecm, MAP_REQUEST_GOLDEN) == "bad-type"


@pytest.mark.parametrize("inner_ip", [INNER_V4, INNER_V6], ids=["inner-v4", "inner-v6"])
def test_ecm_every_truncation(inner_ip) -> None:
    wire = encode_ecm(EncapsulatedControl(inner_ip, 4342, 4342, MAP_REGISTER, rtr=True))
    for cut in range(len(wire)):
        with pytest.raises(WireError):
            decode_ecm(wire[:cut])


def test_ecm_trailing_bytes() -> None:
    assert reason_of(decode_ecm, ECM_GOLDEN + b"\x00\x00") == "trailing-bytes"


def test_ecm_encode_refuses_nested_ecm() -> None:
    with pytest.raises(EncodeError):
        encode_ecm(replace(ECM, message=ECM))


def test_ecm_encode_errors() -> None:
    with pytest.raises(EncodeError):
        encode_ecm(replace(ECM, sport=1 << 16))
    with pytest.raises(EncodeError):
        encode_ecm(replace(ECM, message=base_request(records=())))


# =================================================================================================
# Dispatch
# =================================================================================================


def test_control_type() -> None:
    assert control_type(MAP_REQUEST_GOLDEN) == 1
    assert control_type(ECM_GOLDEN) == 8
    assert control_type(b"\xf0") == 15
    with pytest.raises(WireError) as info:
        control_type(b"")
    assert info.value.reason == "truncated"


def test_decode_control_empty_is_truncated() -> None:
    assert reason_of(decode_control, b"") == "truncated"


@pytest.mark.parametrize("msg_type", [0, 9, 10, 11, 12, 13, 14, 15])
def test_decode_control_unsupported_types(msg_type: int) -> None:
    wire = bytes([msg_type << 4]) + bytes(31)
    assert reason_of(decode_control, wire) == "unsupported-type"


def test_map_referral_named_and_decoded() -> None:
    """Type 6 is LISP-DDT's Map-Referral (RFC 8111 section 6.4): decoded, not refused."""
    assert MESSAGE_NAMES[6] == "map-referral"
    msg = decode_control(bytes([0x60]) + bytes(11))
    assert isinstance(msg, MapReferral)
    assert msg.records == ()
    assert encode_control(msg) == bytes([0x60]) + bytes(11)


@pytest.mark.parametrize(
    ("dec", "wire"),
    [
        (decode_map_request, NEGATIVE_MAP_REPLY_GOLDEN),
        (decode_map_reply, MAP_REQUEST_GOLDEN),
        (decode_map_register, INFO_REPLY_GOLDEN),
        (decode_map_notify, MAP_REQUEST_GOLDEN),
        (decode_info, MAP_REGISTER_GOLDEN),
        (decode_ecm, INFO_REPLY_GOLDEN),
    ],
    ids=["request", "reply", "register", "notify", "info", "ecm"],
)
def test_specific_decoders_refuse_wrong_type(dec, wire: bytes) -> None:
    assert reason_of(dec, wire) == "bad-type"


def test_encode_control_refuses_non_messages() -> None:
    with pytest.raises(EncodeError):
        encode_control(EidPrefix(EID4, 24))  # type: ignore[arg-type]


def test_decode_control_returns_right_classes() -> None:
    assert isinstance(decode_control(MAP_REQUEST_GOLDEN), MapRequest)
    assert isinstance(decode_control(NEGATIVE_MAP_REPLY_GOLDEN), MapReply)
    assert isinstance(decode_control(MAP_REGISTER_GOLDEN), MapRegister)
    notify_ack = decode_control(MAP_NOTIFY_ACK_GOLDEN)
    assert isinstance(notify_ack, MapNotify) and notify_ack.ack
    assert isinstance(decode_control(INFO_REPLY_GOLDEN), InfoMessage)
    assert isinstance(decode_control(ECM_GOLDEN), EncapsulatedControl)


def test_decoders_accept_wire_built_by_encode_address() -> None:
    # A Map-Request whose source EID is spliced in from encode_address (consistency check).
    src = encode_address(InstanceIdAddress(7, EID4_HOST))
    assert MAP_REQUEST_GOLDEN[12 : 12 + len(src)] == src
