"""Map-Referral (type 6, LISP-DDT, RFC 8111 section 6.4).

A DDT node answers a DDT Map-Request with a Map-Referral: a header (type, record count, nonce)
and referral records laid out as Map-Reply EID-records, with three differences of meaning: the
3-bit ACT field holds a referral action, the locators are the DDT nodes or Map-Servers to ask
next ("referral set", its count where a Map-Reply has the locator count), and the top 4 bits of
the map-version word count DDT signatures that follow the record.  lispd decodes and re-encodes
them (``lispd decode``, captures of other implementations); records carrying signatures are
refused as ``unsupported-signature`` since lispd does not verify DDT signatures.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from lispd.wire.address import Address
from lispd.wire.errors import (
    BAD_TYPE,
    TRAILING_BYTES,
    UNSUPPORTED_SIGNATURE,
    EncodeError,
    WireError,
)
from lispd.wire.reader import Reader
from lispd.wire.records import Action, EidRecord, Locator, decode_records, encode_eid_record

TYPE_MAP_REFERRAL = 6


class ReferralAction(IntEnum):
    """The ACT values of a referral record (RFC 8111 section 6.4.1)."""

    NODE_REFERRAL = 0
    MS_REFERRAL = 1
    MS_ACK = 2
    MS_NOT_REGISTERED = 3
    DELEGATION_HOLE = 4
    NOT_AUTHORITATIVE = 5
    # 6 and 7 are unassigned; kept so that decoding never fails on them.
    UNASSIGNED_6 = 6
    UNASSIGNED_7 = 7


@dataclass(frozen=True, slots=True)
class ReferralRecord:
    """One referral: for ``eid``/``mask_len``, ask ``referrals`` next (per ``action``).

    ``incomplete`` is the I bit (the referral set may be partial); ``reserved`` holds the 11
    reserved bits after A and I, re-sent unchanged.
    """

    eid: Address
    mask_len: int
    referrals: tuple[Locator, ...]
    ttl: int
    action: ReferralAction
    authoritative: bool = False
    incomplete: bool = False
    map_version: int = 0
    reserved: int = 0


@dataclass(frozen=True, slots=True)
class MapReferral:
    """A Map-Referral; ``reserved`` holds the header's reserved bits as received."""

    nonce: int
    records: tuple[ReferralRecord, ...]
    reserved: int = 0


def _referral(rec: EidRecord) -> ReferralRecord:
    signatures = rec.reserved & 0xF
    if signatures:
        raise WireError(
            UNSUPPORTED_SIGNATURE, f"referral record with {signatures} DDT signature(s)"
        )
    return ReferralRecord(
        eid=rec.eid,
        mask_len=rec.mask_len,
        referrals=rec.locators,
        ttl=rec.ttl,
        action=ReferralAction(int(rec.action)),
        authoritative=rec.authoritative,
        incomplete=rec.incomplete,
        map_version=rec.map_version,
        reserved=rec.reserved >> 4,
    )


def decode_map_referral(data: bytes) -> MapReferral:
    """Decode a Map-Referral message."""
    r = Reader(data)
    word0 = r.u32("map-referral header")
    if word0 >> 28 != TYPE_MAP_REFERRAL:
        raise WireError(BAD_TYPE, f"type {word0 >> 28} is not a Map-Referral")
    nonce = r.u64("nonce")
    records = tuple(_referral(rec) for rec in decode_records(r, word0 & 0xFF))
    if r.remaining:
        raise WireError(TRAILING_BYTES, f"{r.remaining} bytes after the Map-Referral")
    return MapReferral(nonce=nonce, records=records, reserved=(word0 >> 8) & 0x0FFFFF)


def encode_map_referral(m: MapReferral) -> bytes:
    """Bytes of a Map-Referral."""
    if len(m.records) > 255:
        raise EncodeError("a Map-Referral carries at most 255 records")
    if not 0 <= m.nonce < 1 << 64:
        raise EncodeError("nonce is 64 bits")
    if not 0 <= m.reserved <= 0x0FFFFF:
        raise EncodeError("the header's reserved field is 20 bits")
    body = []
    for rec in m.records:
        if not 0 <= rec.reserved <= 0x7FF:
            raise EncodeError("a referral record's reserved field is 11 bits")
        body.append(
            encode_eid_record(
                EidRecord(
                    eid=rec.eid,
                    mask_len=rec.mask_len,
                    locators=rec.referrals,
                    ttl=rec.ttl,
                    action=Action(int(rec.action)),
                    authoritative=rec.authoritative,
                    incomplete=rec.incomplete,
                    map_version=rec.map_version,
                    reserved=rec.reserved << 4,
                )
            )
        )
    word0 = (TYPE_MAP_REFERRAL << 28) | (m.reserved << 8) | len(m.records)
    return struct.pack("!IQ", word0, m.nonce) + b"".join(body)
