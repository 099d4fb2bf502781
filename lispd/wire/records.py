"""EID-records and locator records, shared by Map-Reply, Map-Register and Map-Notify (RFC 9301)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from lispd.wire.address import (
    Address,
    check_mask_len,
    check_mask_len_for_encode,
    decode_address,
    encode_address,
)
from lispd.wire.errors import BAD_COUNT, EncodeError, WireError
from lispd.wire.reader import Reader

_EID_RECORD = struct.Struct("!IBBHH")  # ttl, locator count, mask-len, act|A|rsvd, rsvd|map-version
_LOCATOR = struct.Struct("!BBBBH")  # priority, weight, m-priority, m-weight, unused|L|p|R

TTL_UNLIMITED = 0xFFFFFFFF


class Action(IntEnum):
    """Map-Reply ACT values (meaningful when a record has no locators)."""

    NO_ACTION = 0
    NATIVELY_FORWARD = 1
    SEND_MAP_REQUEST = 2
    DROP = 3
    DROP_POLICY_DENIED = 4
    DROP_AUTH_FAILURE = 5
    # Not in the IANA registry; lispers.net uses them.  Kept so decoding never fails on them.
    SEND_SUBSCRIBE = 6
    NOT_REGISTERED = 7


@dataclass(frozen=True, slots=True)
class Locator:
    """One RLOC of a mapping with its unicast/multicast priority and weight."""

    address: Address
    priority: int = 1
    weight: int = 100
    m_priority: int = 255
    m_weight: int = 0
    local: bool = False
    probed: bool = False
    reachable: bool = True
    reserved: int = 0  # the 13 unused flag bits as received, re-sent unchanged

    @property
    def usable(self) -> bool:
        """Priority 255 means "never use for unicast"."""
        return self.priority != 255


@dataclass(frozen=True, slots=True)
class EidPrefix:
    """An EID-prefix as asked for in a Map-Request record."""

    address: Address
    mask_len: int


@dataclass(frozen=True, slots=True)
class EidRecord:
    """A mapping: EID-prefix -> locator set (or an action when there are no locators)."""

    eid: Address
    mask_len: int
    locators: tuple[Locator, ...] = ()
    ttl: int = 1440
    action: Action = Action.NO_ACTION
    authoritative: bool = False
    incomplete: bool = False
    map_version: int = 0
    reserved: int = 0  # reserved bits as received, re-sent unchanged


def decode_locator(r: Reader) -> Locator:
    """One locator record."""
    priority, weight, m_priority, m_weight, flags = _LOCATOR.unpack(r.take(6, "locator"))
    return Locator(
        decode_address(r),
        priority,
        weight,
        m_priority,
        m_weight,
        local=bool(flags & 0x4),
        probed=bool(flags & 0x2),
        reachable=bool(flags & 0x1),
        reserved=flags >> 3,
    )


def encode_locator(loc: Locator) -> bytes:
    """Bytes of one locator record."""
    flags = ((loc.reserved & 0x1FFF) << 3) | (loc.local << 2) | (loc.probed << 1)
    flags |= int(loc.reachable)
    try:
        head = _LOCATOR.pack(loc.priority, loc.weight, loc.m_priority, loc.m_weight, flags)
    except struct.error as exc:
        raise EncodeError(f"locator field out of range: {exc}") from None
    return head + encode_address(loc.address)


def decode_eid_record(r: Reader) -> EidRecord:
    """One EID-record with its locators."""
    ttl, count, mask_len, act_word, version_word = _EID_RECORD.unpack(r.take(10, "eid record"))
    eid = decode_address(r)
    check_mask_len(eid, mask_len)
    # Every locator takes at least 8 bytes: refuse counts the buffer cannot hold before looping.
    if count * 8 > r.remaining:
        raise WireError(BAD_COUNT, f"{count} locators cannot fit in {r.remaining} bytes")
    locators = tuple(decode_locator(r) for _ in range(count))
    return EidRecord(
        eid=eid,
        mask_len=mask_len,
        locators=locators,
        ttl=ttl,
        action=Action(act_word >> 13),
        authoritative=bool(act_word & 0x1000),
        incomplete=bool(act_word & 0x0800),
        map_version=version_word & 0x0FFF,
        reserved=((act_word & 0x07FF) << 4) | (version_word >> 12),
    )


def encode_eid_record(rec: EidRecord) -> bytes:
    """Bytes of one EID-record with its locators."""
    if len(rec.locators) > 255:
        raise EncodeError("an EID-record holds at most 255 locators")
    if not 0 <= rec.map_version <= 0xFFF:
        raise EncodeError("map-version is 12 bits")
    check_mask_len_for_encode(rec.eid, rec.mask_len)
    act_word = (int(rec.action) << 13) | (rec.authoritative << 12) | (rec.incomplete << 11)
    act_word |= (rec.reserved >> 4) & 0x07FF
    version_word = ((rec.reserved & 0xF) << 12) | rec.map_version
    try:
        head = _EID_RECORD.pack(rec.ttl, len(rec.locators), rec.mask_len, act_word, version_word)
    except struct.error as exc:
        raise EncodeError(f"EID-record field out of range: {exc}") from None
    return b"".join([head, encode_address(rec.eid), *map(encode_locator, rec.locators)])


def decode_records(r: Reader, count: int) -> tuple[EidRecord, ...]:
    """``count`` EID-records, refusing counts the buffer cannot possibly hold."""
    if count * 12 > r.remaining:
        raise WireError(BAD_COUNT, f"{count} records cannot fit in {r.remaining} bytes")
    return tuple(decode_eid_record(r) for _ in range(count))
