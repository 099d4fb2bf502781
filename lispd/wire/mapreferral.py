"""Map-Referral (type 6, LISP-DDT, RFC 8111 section 6.4).

A DDT node answers a DDT Map-Request with a Map-Referral: a header (type, record count, nonce)
and referral records laid out as Map-Reply EID-records, with three differences of meaning: the
3-bit ACT field holds a referral action, the locators are the DDT nodes or Map-Servers to ask
next ("referral set", its count where a Map-Reply has the locator count), and the top 4 bits of
the map-version word count DDT signatures that follow the record.  lispd decodes and re-encodes
them (``lispd decode``, captures of other implementations, its DDT roles).

Signatures (RFC 8111 section 6.4.1) are kept, not verified: each is a fixed 20-byte part
(original record TTL, signature expiration and inception, key tag, signature length, algorithm,
24 reserved bits) and the signature bytes; they decode into :class:`DdtSignature` and re-encode
byte for byte.  lispd's DDT nodes sign nothing and its Map-Resolver trusts referrals by nonce and
source (the tree is configured, not discovered), counting the signed ones it followed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from lispd.wire.address import Address
from lispd.wire.errors import (
    BAD_COUNT,
    BAD_TYPE,
    TRAILING_BYTES,
    EncodeError,
    WireError,
)
from lispd.wire.reader import Reader
from lispd.wire.records import Action, EidRecord, Locator, decode_eid_record, encode_eid_record

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


_SIGNATURE = struct.Struct("!IIIHHBBH")
MAX_SIGNATURES = 15
"""SigCnt is 4 bits."""


@dataclass(frozen=True, slots=True)
class DdtSignature:
    """One signature of a referral record, as received (not verified)."""

    original_ttl: int
    expiration: int
    inception: int
    key_tag: int
    algorithm: int
    signature: bytes
    reserved: int = 0  # the 24 reserved bits after the algorithm


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
    signatures: tuple[DdtSignature, ...] = ()


@dataclass(frozen=True, slots=True)
class MapReferral:
    """A Map-Referral; ``reserved`` holds the header's reserved bits as received."""

    nonce: int
    records: tuple[ReferralRecord, ...]
    reserved: int = 0


def _signature(r: Reader) -> DdtSignature:
    ttl, expiration, inception, key_tag, length, algorithm, res8, res16 = _SIGNATURE.unpack(
        r.take(_SIGNATURE.size, "ddt signature")
    )
    return DdtSignature(
        original_ttl=ttl,
        expiration=expiration,
        inception=inception,
        key_tag=key_tag,
        algorithm=algorithm,
        signature=r.take(length, "ddt signature bytes"),
        reserved=(res8 << 16) | res16,
    )


def _referral(r: Reader) -> ReferralRecord:
    rec = decode_eid_record(r)
    signatures = tuple(_signature(r) for _ in range(rec.reserved & 0xF))
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
        signatures=signatures,
    )


def decode_map_referral(data: bytes) -> MapReferral:
    """Decode a Map-Referral message."""
    r = Reader(data)
    word0 = r.u32("map-referral header")
    if word0 >> 28 != TYPE_MAP_REFERRAL:
        raise WireError(BAD_TYPE, f"type {word0 >> 28} is not a Map-Referral")
    nonce = r.u64("nonce")
    count = word0 & 0xFF
    if count * 12 > r.remaining:  # every record takes at least 12 bytes
        raise WireError(BAD_COUNT, f"{count} records cannot fit in {r.remaining} bytes")
    records = tuple(_referral(r) for _ in range(count))
    if r.remaining:
        raise WireError(TRAILING_BYTES, f"{r.remaining} bytes after the Map-Referral")
    return MapReferral(nonce=nonce, records=records, reserved=(word0 >> 8) & 0x0FFFFF)


def _encode_signature(sig: DdtSignature) -> bytes:
    try:
        head = _SIGNATURE.pack(
            sig.original_ttl,
            sig.expiration,
            sig.inception,
            sig.key_tag,
            len(sig.signature),
            sig.algorithm,
            sig.reserved >> 16,
            sig.reserved & 0xFFFF,
        )
    except struct.error as exc:
        raise EncodeError(f"DDT signature field out of range: {exc}") from None
    return head + sig.signature


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
        if len(rec.signatures) > MAX_SIGNATURES:
            raise EncodeError(f"a referral record carries at most {MAX_SIGNATURES} signatures")
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
                    reserved=(rec.reserved << 4) | len(rec.signatures),
                )
            )
        )
        body += [_encode_signature(sig) for sig in rec.signatures]
    word0 = (TYPE_MAP_REFERRAL << 28) | (m.reserved << 8) | len(m.records)
    return struct.pack("!IQ", word0, m.nonce) + b"".join(body)
