"""Map-Reply (type 2, RFC 9301 section 5.4), including RLOC-probe replies."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from lispd.wire.errors import BAD_TYPE, TRAILING_BYTES, EncodeError, WireError
from lispd.wire.reader import Reader
from lispd.wire.records import EidRecord, decode_records, encode_eid_record

TYPE_MAP_REPLY = 2

F_PROBE = 0x08000000
F_ECHO_NONCE = 0x04000000
F_SECURITY = 0x02000000


@dataclass(frozen=True, slots=True)
class MapReply:
    """A Map-Reply.

    ``reported_ttl`` is the reserved byte 2 of the header, where lispd (like lispers.net) reports
    the IP TTL an RLOC-probe arrived with so the prober can count forward hops; 0 otherwise.
    ``security_data`` holds LISP-SEC authentication data (S bit) uninterpreted.
    """

    nonce: int
    records: tuple[EidRecord, ...]
    probe: bool = False
    echo_nonce_capable: bool = False
    reported_ttl: int = 0
    security_data: bytes | None = None
    reserved: int = 0  # reserved header bits as received


def decode_map_reply(data: bytes) -> MapReply:
    """Decode a Map-Reply message."""
    r = Reader(data)
    word0 = r.u32("map-reply header")
    if word0 >> 28 != TYPE_MAP_REPLY:
        raise WireError(BAD_TYPE, f"type {word0 >> 28} is not a Map-Reply")
    nonce = r.u64("nonce")
    records = decode_records(r, word0 & 0xFF)
    security = None
    if word0 & F_SECURITY:
        security = r.rest()
    elif r.remaining:
        raise WireError(TRAILING_BYTES, f"{r.remaining} bytes after the Map-Reply")
    return MapReply(
        nonce=nonce,
        records=records,
        probe=bool(word0 & F_PROBE),
        echo_nonce_capable=bool(word0 & F_ECHO_NONCE),
        reported_ttl=(word0 >> 8) & 0xFF,
        security_data=security,
        reserved=word0 & 0x01FF0000,
    )


def encode_map_reply(m: MapReply) -> bytes:
    """Bytes of a Map-Reply."""
    if len(m.records) > 255:
        raise EncodeError("a Map-Reply carries at most 255 records")
    if not 0 <= m.reported_ttl <= 255:
        raise EncodeError("reported TTL is one byte")
    word0 = (TYPE_MAP_REPLY << 28) | (m.reported_ttl << 8) | len(m.records)
    word0 |= (F_PROBE if m.probe else 0) | (F_ECHO_NONCE if m.echo_nonce_capable else 0)
    word0 |= (F_SECURITY if m.security_data is not None else 0) | (m.reserved & 0x01FF0000)
    if not 0 <= m.nonce < 1 << 64:
        raise EncodeError("nonce is 64 bits")
    body = b"".join(encode_eid_record(rec) for rec in m.records)
    return struct.pack("!IQ", word0, m.nonce) + body + (m.security_data or b"")
