"""Map-Request (type 1, RFC 9301 section 5.2), including RLOC-probes and SMRs."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from lispd.wire.address import (
    NO_ADDRESS,
    Address,
    check_mask_len,
    check_mask_len_for_encode,
    decode_address,
    encode_address,
)
from lispd.wire.errors import BAD_COUNT, BAD_TYPE, TRAILING_BYTES, EncodeError, WireError
from lispd.wire.reader import Reader
from lispd.wire.records import EidPrefix, EidRecord, decode_eid_record, encode_eid_record

TYPE_MAP_REQUEST = 1

F_AUTHORITATIVE = 0x08000000
F_MAP_DATA = 0x04000000
F_PROBE = 0x02000000
F_SMR = 0x01000000
F_PITR = 0x00800000
F_SMR_INVOKED = 0x00400000
F_LOCAL_XTR = 0x00004000
F_DONT_MAP_REPLY = 0x00002000
_KNOWN = (
    F_AUTHORITATIVE
    | F_MAP_DATA
    | F_PROBE
    | F_SMR
    | F_PITR
    | F_SMR_INVOKED
    | F_LOCAL_XTR
    | F_DONT_MAP_REPLY
)
_RESERVED_MASK = 0x0FFFE000 & ~_KNOWN  # header bits that are neither flags, IRC nor count


@dataclass(frozen=True, slots=True)
class MapRequest:
    """A Map-Request: "which RLOCs serve these EID-prefixes?"."""

    nonce: int
    records: tuple[EidPrefix, ...]
    itr_rlocs: tuple[Address, ...]
    source_eid: Address = NO_ADDRESS
    authoritative: bool = False
    probe: bool = False
    smr: bool = False
    pitr: bool = False
    smr_invoked: bool = False
    local_xtr: bool = False
    dont_map_reply: bool = False
    map_reply: EidRecord | None = None
    reserved: int = 0  # reserved header bits as received, re-sent unchanged


def decode_map_request(data: bytes) -> MapRequest:
    """Decode a Map-Request message (starting at its type nibble)."""
    r = Reader(data)
    word0 = r.u32("map-request header")
    if word0 >> 28 != TYPE_MAP_REQUEST:
        raise WireError(BAD_TYPE, f"type {word0 >> 28} is not a Map-Request")
    nonce = r.u64("nonce")
    irc = ((word0 >> 8) & 0x1F) + 1
    count = word0 & 0xFF
    if count == 0:
        raise WireError(BAD_COUNT, "Map-Request without records")
    source_eid = decode_address(r)
    itr_rlocs = tuple(decode_address(r) for _ in range(irc))
    if count * 4 > r.remaining:
        raise WireError(BAD_COUNT, f"{count} records cannot fit in {r.remaining} bytes")
    records = []
    for _ in range(count):
        r.u8("record reserved")
        mask_len = r.u8("record mask-len")
        eid = decode_address(r)
        check_mask_len(eid, mask_len)
        records.append(EidPrefix(eid, mask_len))
    map_reply = decode_eid_record(r) if word0 & F_MAP_DATA else None
    if r.remaining:
        raise WireError(TRAILING_BYTES, f"{r.remaining} bytes after the Map-Request")
    return MapRequest(
        nonce=nonce,
        records=tuple(records),
        itr_rlocs=itr_rlocs,
        source_eid=source_eid,
        authoritative=bool(word0 & F_AUTHORITATIVE),
        probe=bool(word0 & F_PROBE),
        smr=bool(word0 & F_SMR),
        pitr=bool(word0 & F_PITR),
        smr_invoked=bool(word0 & F_SMR_INVOKED),
        local_xtr=bool(word0 & F_LOCAL_XTR),
        dont_map_reply=bool(word0 & F_DONT_MAP_REPLY),
        map_reply=map_reply,
        reserved=word0 & _RESERVED_MASK,
    )


def encode_map_request(m: MapRequest) -> bytes:
    """Bytes of a Map-Request."""
    if not 1 <= len(m.itr_rlocs) <= 32:
        raise EncodeError("a Map-Request carries 1 to 32 ITR-RLOCs")
    if not 1 <= len(m.records) <= 255:
        raise EncodeError("a Map-Request carries 1 to 255 records")
    word0 = (TYPE_MAP_REQUEST << 28) | ((len(m.itr_rlocs) - 1) << 8) | len(m.records)
    for flag, on in (
        (F_AUTHORITATIVE, m.authoritative),
        (F_MAP_DATA, m.map_reply is not None),
        (F_PROBE, m.probe),
        (F_SMR, m.smr),
        (F_PITR, m.pitr),
        (F_SMR_INVOKED, m.smr_invoked),
        (F_LOCAL_XTR, m.local_xtr),
        (F_DONT_MAP_REPLY, m.dont_map_reply),
    ):
        if on:
            word0 |= flag
    word0 |= m.reserved & _RESERVED_MASK
    if not 0 <= m.nonce < 1 << 64:
        raise EncodeError("nonce is 64 bits")
    parts = [struct.pack("!IQ", word0, m.nonce), encode_address(m.source_eid)]
    parts += [encode_address(a) for a in m.itr_rlocs]
    for rec in m.records:
        check_mask_len_for_encode(rec.address, rec.mask_len)
        parts.append(bytes((0, rec.mask_len)) + encode_address(rec.address))
    if m.map_reply is not None:
        parts.append(encode_eid_record(m.map_reply))
    return b"".join(parts)
