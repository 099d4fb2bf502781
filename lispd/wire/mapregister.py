"""Map-Register (type 3), Map-Notify (type 4) and Map-Notify-Ack (type 5), RFC 9301 5.6-5.7.

The three share one body: nonce, authentication block, EID-records, and optionally an xTR-ID
(128 bits) and site-ID (64 bits).  Encoders write the authentication data held in the message;
:func:`encode_signed` computes it instead (see :mod:`lispd.wire.auth`).

A Map-Notify(-Ack) with the R bit set (NAT traversal, draft-ermagan/ietf-lisp-nat-traversal)
ends with an MS-RTR authentication block after the xTR-ID/site-ID: MS-RTR Key ID (16 bits),
MS-RTR Authentication Data Length (16 bits), MS-RTR Authentication Data.  This is where Open
Overlay Router writes and parses it (``rtr_auth_field`` after ``site_id`` when
``rtr_auth_present``, i.e. the R bit) and where Wireshark's dissector looks for it.  OOR's
captured behaviour (tests/wire/test_oor_notify.py checks it on real frames):

* the Map-Server sends the RTR a 24-byte block: key-id 1, 20 bytes of HMAC-SHA-1 with the
  MS-RTR key over the *whole* Map-Notify as sent (its site HMAC already filled in) with only the
  MS-RTR authentication data zeroed;
* the site HMAC in the ordinary authentication field covers the message *without* the MS-RTR
  block (:func:`verify_notify`), so the RTR can relay it unchanged;
* the RTR relays it to the xTR as a "data-Map-Notify" (inside a LISP data packet, IID 0xFFFFFF)
  with the 4-byte empty block (key-id 0, length 0) in place of its own.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass, replace

from lispd.wire import auth
from lispd.wire.errors import BAD_TYPE, TRAILING_BYTES, EncodeError, WireError
from lispd.wire.reader import Reader
from lispd.wire.records import EidRecord, decode_records, encode_eid_record

TYPE_MAP_REGISTER = 3
TYPE_MAP_NOTIFY = 4
TYPE_MAP_NOTIFY_ACK = 5

# Map-Register flags
R_PROXY_REPLY = 0x08000000
R_SECURITY = 0x04000000
R_XTR_ID = 0x02000000
R_FOR_RTR = 0x01000000  # "R" of the NAT-traversal drafts (Cisco and OOR still send it)
R_EID_NOTIFY = 0x00001000
R_TTL_TIMEOUT = 0x00000800
R_MERGE = 0x00000400
R_WANT_NOTIFY = 0x00000100
_R_RESERVED = 0x00FFE200

# Map-Notify / Map-Notify-Ack flags
N_XTR_ID = 0x08000000
N_FOR_RTR = 0x04000000
_N_RESERVED = 0x03FFFF00


@dataclass(frozen=True, slots=True)
class MapRegister:
    """An ETR's registration of its EID-prefixes with a Map-Server."""

    nonce: int
    records: tuple[EidRecord, ...]
    key_id: int = auth.KeyId.HMAC_SHA_256_128
    auth_data: bytes = b""
    proxy_reply: bool = False
    security_capable: bool = False
    for_rtr: bool = False
    eid_notify: bool = False
    ttl_timeout: bool = False
    merge: bool = False
    want_map_notify: bool = False
    xtr_id: int | None = None
    site_id: int | None = None
    reserved: int = 0


@dataclass(frozen=True, slots=True)
class RtrAuth:
    """The MS-RTR authentication block of a Map-Notify with the R bit (NAT traversal).

    ``RtrAuth()`` is the empty form (key-id 0, no data) an RTR puts in a data-Map-Notify.
    """

    key_id: int = 0
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class MapNotify:
    """A Map-Server's acknowledgement (or unsolicited update) of a registration.

    ``ack`` distinguishes a Map-Notify-Ack (type 5), which has the same body.  ``rtr_auth`` is
    the MS-RTR authentication block; the R bit is set exactly when it is present
    (:attr:`for_rtr`).
    """

    nonce: int
    records: tuple[EidRecord, ...]
    key_id: int = auth.KeyId.HMAC_SHA_256_128
    auth_data: bytes = b""
    xtr_id: int | None = None
    site_id: int | None = None
    ack: bool = False
    reserved: int = 0
    rtr_auth: RtrAuth | None = None

    @property
    def for_rtr(self) -> bool:
        """The R bit: the message carries an MS-RTR authentication block."""
        return self.rtr_auth is not None


RegisterOrNotify = MapRegister | MapNotify


_Body = tuple[int, int, bytes, tuple[EidRecord, ...], int | None, int | None]


def _decode_body(r: Reader, word0: int, has_ids: bool, rtr_block: bool = False) -> _Body:
    """(nonce, key-id, authentication data, records, xTR-ID, site-ID) after the first word.

    With ``rtr_block`` the MS-RTR authentication block is left in ``r`` for the caller."""
    nonce = r.u64("nonce")
    key_id = r.u16("key-id")
    auth_len = r.u16("auth length")
    auth_data = r.take(auth_len, "authentication data")
    records = decode_records(r, word0 & 0xFF)
    xtr_id: int | None = None
    site_id: int | None = None
    if has_ids:
        hi, lo = struct.unpack("!QQ", r.take(16, "xtr-id"))
        xtr_id = (hi << 64) | lo
        site_id = r.u64("site-id")
    if r.remaining and not rtr_block:
        raise WireError(TRAILING_BYTES, f"{r.remaining} bytes after the records")
    return nonce, key_id, auth_data, records, xtr_id, site_id


def decode_map_register(data: bytes) -> MapRegister:
    """Decode a Map-Register (its authentication is checked separately: :func:`auth.verify`)."""
    r = Reader(data)
    word0 = r.u32("map-register header")
    if word0 >> 28 != TYPE_MAP_REGISTER:
        raise WireError(BAD_TYPE, f"type {word0 >> 28} is not a Map-Register")
    nonce, key_id, auth_data, records, xtr_id, site_id = _decode_body(
        r, word0, bool(word0 & R_XTR_ID)
    )
    return MapRegister(
        nonce=nonce,
        records=records,
        key_id=key_id,
        auth_data=auth_data,
        proxy_reply=bool(word0 & R_PROXY_REPLY),
        security_capable=bool(word0 & R_SECURITY),
        for_rtr=bool(word0 & R_FOR_RTR),
        eid_notify=bool(word0 & R_EID_NOTIFY),
        ttl_timeout=bool(word0 & R_TTL_TIMEOUT),
        merge=bool(word0 & R_MERGE),
        want_map_notify=bool(word0 & R_WANT_NOTIFY),
        xtr_id=xtr_id,
        site_id=site_id,
        reserved=word0 & _R_RESERVED,
    )


def decode_map_notify(data: bytes) -> MapNotify:
    """Decode a Map-Notify or Map-Notify-Ack."""
    r = Reader(data)
    word0 = r.u32("map-notify header")
    msg_type = word0 >> 28
    if msg_type not in (TYPE_MAP_NOTIFY, TYPE_MAP_NOTIFY_ACK):
        raise WireError(BAD_TYPE, f"type {msg_type} is not a Map-Notify")
    for_rtr = bool(word0 & N_FOR_RTR)
    nonce, key_id, auth_data, records, xtr_id, site_id = _decode_body(
        r, word0, bool(word0 & N_XTR_ID), rtr_block=for_rtr
    )
    rtr_auth: RtrAuth | None = None
    if for_rtr:
        rtr_key_id = r.u16("ms-rtr key-id")
        rtr_len = r.u16("ms-rtr auth length")
        rtr_auth = RtrAuth(rtr_key_id, r.take(rtr_len, "ms-rtr authentication data"))
        if r.remaining:
            raise WireError(
                TRAILING_BYTES, f"{r.remaining} bytes after the ms-rtr authentication block"
            )
    return MapNotify(
        nonce=nonce,
        records=records,
        key_id=key_id,
        auth_data=auth_data,
        xtr_id=xtr_id,
        site_id=site_id,
        ack=msg_type == TYPE_MAP_NOTIFY_ACK,
        reserved=word0 & _N_RESERVED,
        rtr_auth=rtr_auth,
    )


def _encode_body(word0: int, m: RegisterOrNotify) -> bytes:
    if len(m.records) > 255:
        raise EncodeError("at most 255 records")
    if (m.xtr_id is None) != (m.site_id is None):
        raise EncodeError("xTR-ID and site-ID go together")
    try:
        head = struct.pack("!IQHH", word0 | len(m.records), m.nonce, m.key_id, len(m.auth_data))
    except struct.error as exc:
        raise EncodeError(f"header field out of range: {exc}") from None
    parts = [head, m.auth_data, *(encode_eid_record(rec) for rec in m.records)]
    if m.xtr_id is not None and m.site_id is not None:
        if not (0 <= m.xtr_id < 1 << 128 and 0 <= m.site_id < 1 << 64):
            raise EncodeError("xTR-ID is 128 bits, site-ID 64 bits")
        parts.append(struct.pack("!QQQ", m.xtr_id >> 64, m.xtr_id & (2**64 - 1), m.site_id))
    return b"".join(parts)


def encode_map_register(m: MapRegister) -> bytes:
    """Bytes of a Map-Register carrying ``m.auth_data`` as it is."""
    word0 = TYPE_MAP_REGISTER << 28 | (m.reserved & _R_RESERVED)
    for flag, on in (
        (R_PROXY_REPLY, m.proxy_reply),
        (R_SECURITY, m.security_capable),
        (R_XTR_ID, m.xtr_id is not None),
        (R_FOR_RTR, m.for_rtr),
        (R_EID_NOTIFY, m.eid_notify),
        (R_TTL_TIMEOUT, m.ttl_timeout),
        (R_MERGE, m.merge),
        (R_WANT_NOTIFY, m.want_map_notify),
    ):
        if on:
            word0 |= flag
    return _encode_body(word0, m)


def encode_map_notify(m: MapNotify) -> bytes:
    """Bytes of a Map-Notify (or Map-Notify-Ack) carrying ``m.auth_data`` as it is."""
    word0 = (TYPE_MAP_NOTIFY_ACK if m.ack else TYPE_MAP_NOTIFY) << 28
    word0 |= (N_XTR_ID if m.xtr_id is not None else 0) | (N_FOR_RTR if m.for_rtr else 0)
    word0 |= m.reserved & _N_RESERVED
    body = _encode_body(word0, m)
    if m.rtr_auth is None:
        return body
    return body + _encode_rtr_auth(m.rtr_auth)


def _encode_rtr_auth(block: RtrAuth) -> bytes:
    try:
        return struct.pack("!HH", block.key_id, len(block.data)) + block.data
    except struct.error as exc:
        raise EncodeError(f"ms-rtr authentication block out of range: {exc}") from None


def _rtr_block_offset(raw: bytes) -> int | None:
    """Where the MS-RTR authentication block of Map-Notify bytes ``raw`` starts (None without
    one); raises :class:`WireError` when ``raw`` is not a well-formed Map-Notify."""
    block = decode_map_notify(raw).rtr_auth
    return None if block is None else len(raw) - 4 - len(block.data)


def verify_notify(raw: bytes, key: bytes) -> bool:
    """:func:`auth.verify` of a Map-Notify(-Ack)'s own (site) authentication: its HMAC covers
    the message up to the MS-RTR authentication block, when there is one."""
    end = _rtr_block_offset(raw)
    return auth.verify(raw if end is None else raw[:end], key)


def verify_rtr_auth(raw: bytes, key: bytes) -> bool:
    """Whether the MS-RTR authentication block of Map-Notify bytes ``raw`` is right for the
    MS-RTR ``key``: an HMAC over the whole message with only the MS-RTR authentication data
    zeroed (the site HMAC left as sent), compared as :func:`auth.verify` compares.  A message
    without the block, or with the empty one, never verifies."""
    end = _rtr_block_offset(raw)
    if end is None:
        return False
    key_id, length = struct.unpack_from("!HH", raw, end)
    if key_id not in (auth.KeyId.HMAC_SHA_1_96, auth.KeyId.HMAC_SHA_256_128):
        return False
    kid = auth.KeyId(key_id)
    if length not in (auth.FULL_LENGTH[kid], auth.TRUNCATED_LENGTH[kid]):
        return False
    start = end + 4
    zeroed = raw[:start] + bytes(length)
    expected = auth.compute(key_id, key, zeroed)[:length]
    return hmac.compare_digest(raw[start:], expected)


def encode_signed(m: RegisterOrNotify, key: bytes, rtr_key: bytes | None = None) -> bytes:
    """Bytes of ``m`` authenticated with ``key`` under ``m.key_id`` (full-length digest).

    A Map-Notify's MS-RTR block is written as held in ``m.rtr_auth`` after the signed body,
    or, given ``rtr_key``, signed with it under ``m.rtr_auth.key_id`` (see
    :func:`verify_rtr_auth`)."""
    blank = bytes(auth.auth_length(m.key_id))
    if isinstance(m, MapRegister):
        if rtr_key is not None:
            raise EncodeError("a Map-Register has no MS-RTR authentication block")
        return auth.sign(encode_map_register(replace(m, auth_data=blank)), key)
    raw = encode_map_notify(replace(m, auth_data=blank))
    block = m.rtr_auth
    if block is None:
        if rtr_key is not None:
            raise EncodeError("an MS-RTR key needs an MS-RTR authentication block (rtr_auth)")
        return auth.sign(raw, key)
    # The site HMAC covers the message (R bit included) up to the MS-RTR block.
    signed = auth.sign(raw[: len(raw) - 4 - len(block.data)], key)
    if rtr_key is None:
        return signed + _encode_rtr_auth(block)
    blank_block = _encode_rtr_auth(replace(block, data=bytes(auth.auth_length(block.key_id))))
    digest = auth.compute(block.key_id, rtr_key, signed + blank_block)
    return signed + _encode_rtr_auth(replace(block, data=digest))
