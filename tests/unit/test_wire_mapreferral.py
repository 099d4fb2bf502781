"""Map-Referral (type 6, LISP-DDT, RFC 8111 section 6.4): decode, encode, refusals; tshark as
the oracle for what we encode; Open Overlay Router's referrals from its DDT capture (skipped,
saying why, when the shared captures are absent)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address

import pytest

from lispd.tools.pcap import ip_payload, read_file
from lispd.wire.address import InstanceIdAddress
from lispd.wire.control import decode_control, encode_control
from lispd.wire.errors import WireError
from lispd.wire.ip import parse_udp_datagram
from lispd.wire.mapreferral import (
    DdtSignature,
    MapReferral,
    ReferralAction,
    ReferralRecord,
    decode_map_referral,
    encode_map_referral,
)
from lispd.wire.records import Locator
from tests import oracle
from tests.external import capture

NODE = Locator(IPv4Address("192.0.2.40"), priority=0, weight=0, reachable=True)
MS = Locator(IPv6Address("2001:db8::10"), priority=1, weight=50, local=True, reachable=True)


def referral(*records: ReferralRecord, nonce: int = 0x0123456789ABCDEF) -> MapReferral:
    return MapReferral(nonce=nonce, records=records)


RECORDS = (
    ReferralRecord(IPv4Address("198.51.100.0"), 24, (NODE,), 1440, ReferralAction.NODE_REFERRAL),
    ReferralRecord(
        InstanceIdAddress(7, IPv6Address("2001:db8:1::")),
        48,
        (NODE, MS),
        60,
        ReferralAction.MS_REFERRAL,
        authoritative=True,
        incomplete=True,
        map_version=4095,
    ),
    ReferralRecord(IPv4Address("203.0.113.0"), 25, (), 15, ReferralAction.DELEGATION_HOLE),
    ReferralRecord(IPv4Address("198.51.100.0"), 25, (MS,), 1, ReferralAction.MS_ACK),
)


@pytest.mark.parametrize("action", list(ReferralAction))
def test_every_action_round_trips(action: ReferralAction) -> None:
    msg = referral(ReferralRecord(IPv4Address("198.51.100.0"), 24, (NODE,), 10, action))
    wire = encode_map_referral(msg)
    assert wire[0] >> 4 == 6
    assert decode_map_referral(wire) == msg
    assert decode_control(wire) == msg
    assert encode_control(msg) == wire


def test_layout_by_hand() -> None:
    """Header: type 6, 20 reserved bits, record count; nonce; then one referral record laid out
    as a Map-Reply EID-record with the referral count where the locator count is and ACT the
    referral action (RFC 8111 section 6.4)."""
    wire = encode_map_referral(referral(RECORDS[1]))
    assert wire[:4] == bytes([0x60, 0, 0, 1])
    assert wire[4:12] == bytes.fromhex("0123456789abcdef")
    ttl, count, mask, act = wire[12:16], wire[16], wire[17], wire[18]
    assert ttl == (60).to_bytes(4, "big")
    assert (count, mask) == (2, 48)
    assert act >> 5 == int(ReferralAction.MS_REFERRAL)
    assert act & 0x10 and act & 0x08  # A and I
    assert int.from_bytes(wire[20:22], "big") == 0x0FFF  # no signatures, map-version 4095


def test_several_records_and_reserved_bits_survive() -> None:
    msg = MapReferral(nonce=1, records=RECORDS, reserved=0xABCDE)
    assert decode_map_referral(encode_map_referral(msg)) == msg
    rec = ReferralRecord(IPv4Address("198.51.100.0"), 24, (), 0, ReferralAction.MS_ACK, reserved=5)
    assert decode_map_referral(encode_map_referral(referral(rec))).records == (rec,)


def test_signed_records_are_kept_byte_for_byte() -> None:
    """Signatures (RFC 8111 section 6.4.1) decode into fields and the bytes they carry, and
    re-encode exactly; lispd does not verify them."""
    sig = DdtSignature(1440, 2_000_000_000, 1_900_000_000, 0xBEEF, 8, b"\x01" * 64, reserved=7)
    rec = replace(RECORDS[0], signatures=(sig, replace(sig, key_tag=1, signature=b"")))
    wire = encode_map_referral(referral(rec))
    assert wire[20] >> 4 == 2  # SigCnt, the top 4 bits of the map-version word
    assert decode_map_referral(wire).records == (rec,)
    for end in range(len(wire) - 1, len(wire) - 90, -1):  # cut inside the signatures
        with pytest.raises(WireError):
            decode_map_referral(wire[:end])
    with pytest.raises(ValueError):
        encode_map_referral(referral(replace(rec, signatures=(sig,) * 16)))


def test_every_truncation_and_trailing_bytes_are_refused() -> None:
    wire = encode_map_referral(referral(*RECORDS))
    for end in range(len(wire)):
        with pytest.raises(WireError):
            decode_map_referral(wire[:end])
    with pytest.raises(WireError) as info:
        decode_map_referral(wire + b"\x00")
    assert info.value.reason == "trailing-bytes"


def test_a_record_count_the_bytes_cannot_hold_is_refused_before_looping() -> None:
    wire = bytes([0x60, 0, 0, 0xFF]) + bytes(8) + bytes(12)
    with pytest.raises(WireError) as info:
        decode_map_referral(wire)
    assert info.value.reason == "bad-count"


def test_encoder_refuses_fields_that_do_not_fit() -> None:
    with pytest.raises(ValueError):
        encode_map_referral(MapReferral(nonce=1 << 64, records=()))
    with pytest.raises(ValueError):
        encode_map_referral(MapReferral(nonce=0, records=(), reserved=1 << 20))
    with pytest.raises(ValueError):
        encode_map_referral(MapReferral(nonce=0, records=RECORDS * 64))


@oracle.requires_tshark
@pytest.mark.tshark
def test_tshark_reads_what_we_encode() -> None:
    msg = referral(RECORDS[0], RECORDS[3])
    pkt = oracle.udp_packet("192.0.2.40", "192.0.2.41", 4342, 4342, encode_map_referral(msg))
    (frame,) = oracle.tshark_frames([pkt])
    oracle.assert_clean(frame)
    assert frame["lisp.type"] == ["6"]
    assert frame["lisp.nonce"] == ["0x0123456789abcdef"]
    assert frame["lisp.mapping.ttl"] == ["1440", "1"]
    assert frame["lisp.mapping.eid.masklen"] == ["24", "25"]
    assert frame["lisp.loc.locator"] == ["192.0.2.40", "2001:db8::10"]
    assert frame["lisp.referral.sigcnt"] == ["0", "0"]


# --- Open Overlay Router's DDT capture -------------------------------------------------------


def test_oor_referrals_decode_and_reencode_byte_for_byte() -> None:
    """oor-ddt-referrals.pcap: the DDT root refers the DDT Map-Resolver to the Map-Server
    (MS-REFERRAL), the Map-Server answers MS-ACK; every referral re-encodes to its bytes."""
    seen: list[tuple[str, ReferralAction]] = []
    for pkt in read_file(str(capture("oor/oor-ddt-referrals.pcap"))):
        ip = ip_payload(pkt.linktype, pkt.frame)
        if ip is None:
            continue
        payload = parse_udp_datagram(ip).payload
        if not payload or payload[0] >> 4 != 6:
            continue
        msg = decode_map_referral(payload)
        assert encode_map_referral(msg) == payload
        seen += [(f"{r.eid}/{r.mask_len}", r.action) for r in msg.records]
    assert len(seen) == 6
    assert ("198.51.100.0/24", ReferralAction.MS_REFERRAL) in seen
    assert ("198.51.100.0/25", ReferralAction.MS_ACK) in seen
