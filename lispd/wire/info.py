"""Info-Request / Info-Reply (type 7): NAT discovery (draft-ietf-lisp-nat-traversal).

Body: nonce, authentication block (same place and scheme as Map-Register), TTL (minutes), one
reserved byte, EID mask-len, EID-prefix, then one more address: AFI 0 (or a host name) in a
request, the NAT-traversal LCAF in a reply.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from lispd.wire import auth
from lispd.wire.address import (
    NO_ADDRESS,
    Address,
    check_mask_len,
    decode_address,
    encode_address,
)
from lispd.wire.errors import BAD_TYPE, TRAILING_BYTES, EncodeError, WireError
from lispd.wire.reader import Reader

TYPE_INFO = 7
F_REPLY = 0x08000000


@dataclass(frozen=True, slots=True)
class InfoMessage:
    """An Info-Request (``reply`` False) or Info-Reply.

    ``address`` is the last field: AFI 0 or a host name in requests, the
    :class:`~lispd.wire.address.NatTraversalAddress` in replies.
    """

    nonce: int
    reply: bool = False
    key_id: int = auth.KeyId.NONE
    auth_data: bytes = b""
    ttl: int = 0
    eid: Address = NO_ADDRESS
    eid_mask_len: int = 0
    address: Address = NO_ADDRESS
    reserved: int = 0


def decode_info(data: bytes) -> InfoMessage:
    """Decode an Info-Request or Info-Reply."""
    r = Reader(data)
    word0 = r.u32("info header")
    if word0 >> 28 != TYPE_INFO:
        raise WireError(BAD_TYPE, f"type {word0 >> 28} is not an Info message")
    nonce = r.u64("nonce")
    key_id = r.u16("key-id")
    auth_data = r.take(r.u16("auth length"), "authentication data")
    ttl = r.u32("ttl")
    r.u8("reserved")
    mask_len = r.u8("eid mask-len")
    eid = decode_address(r)
    check_mask_len(eid, mask_len)
    address = decode_address(r)
    if r.remaining:
        raise WireError(TRAILING_BYTES, f"{r.remaining} bytes after the Info message")
    return InfoMessage(
        nonce=nonce,
        reply=bool(word0 & F_REPLY),
        key_id=key_id,
        auth_data=auth_data,
        ttl=ttl,
        eid=eid,
        eid_mask_len=mask_len,
        address=address,
        reserved=word0 & 0x07FFFFFF,
    )


def encode_info(m: InfoMessage) -> bytes:
    """Bytes of an Info message carrying ``m.auth_data`` as it is."""
    word0 = (TYPE_INFO << 28) | (F_REPLY if m.reply else 0) | (m.reserved & 0x07FFFFFF)
    try:
        head = struct.pack("!IQHH", word0, m.nonce, m.key_id, len(m.auth_data))
        mid = struct.pack("!IBB", m.ttl, 0, m.eid_mask_len)
    except struct.error as exc:
        raise EncodeError(f"Info field out of range: {exc}") from None
    return head + m.auth_data + mid + encode_address(m.eid) + encode_address(m.address)


def encode_info_signed(m: InfoMessage, key: bytes) -> bytes:
    """Bytes of ``m`` authenticated with ``key`` under ``m.key_id``."""
    return auth.sign(encode_info(replace(m, auth_data=bytes(auth.auth_length(m.key_id)))), key)
