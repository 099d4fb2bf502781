"""Authentication of Map-Register, Map-Notify(-Ack) and Info messages (RFC 9301 section 5.6).

The authentication data is an HMAC over the whole message with the authentication field zeroed.
Key-id 1 is HMAC-SHA-1-96 and key-id 2 HMAC-SHA-256-128, but every deployed implementation puts
the *full* digest on the wire (20 and 32 bytes); lispd sends full digests and, when verifying,
compares as many leading bytes as the received length field says (accepting the truncated 12/16
byte forms too).  Comparison is constant-time.

In every message that carries it, the authentication block sits at the same place: byte 12 is
the 16-bit key-id, byte 14 the 16-bit length, byte 16 the data.  RFC 9301 splits the key-id into
a one-byte key-id and a one-byte algorithm-id; with key-id 0 both readings agree on the wire.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from enum import IntEnum

from lispd.wire.errors import BAD_AUTH_LENGTH, TRUNCATED, EncodeError, WireError

AUTH_OFFSET = 12


class KeyId(IntEnum):
    """The algorithms lispd knows."""

    NONE = 0
    HMAC_SHA_1_96 = 1
    HMAC_SHA_256_128 = 2


_DIGESTS = {KeyId.HMAC_SHA_1_96: hashlib.sha1, KeyId.HMAC_SHA_256_128: hashlib.sha256}
FULL_LENGTH = {KeyId.NONE: 0, KeyId.HMAC_SHA_1_96: 20, KeyId.HMAC_SHA_256_128: 32}
TRUNCATED_LENGTH = {KeyId.HMAC_SHA_1_96: 12, KeyId.HMAC_SHA_256_128: 16}


def auth_length(key_id: int) -> int:
    """The length lispd sends for ``key_id`` (the full digest)."""
    try:
        return FULL_LENGTH[KeyId(key_id)]
    except ValueError:
        raise EncodeError(f"unknown authentication key-id {key_id}") from None


def compute(key_id: int, key: bytes, message: bytes) -> bytes:
    """The full HMAC digest of ``message`` (its auth field already zeroed)."""
    if key_id == KeyId.NONE:
        return b""
    try:
        digest = _DIGESTS[KeyId(key_id)]
    except (ValueError, KeyError):
        raise EncodeError(f"unknown authentication key-id {key_id}") from None
    return hmac.new(key, message, digest).digest()


def _auth_field(raw: bytes) -> tuple[int, int]:
    if len(raw) < AUTH_OFFSET + 4:
        raise WireError(TRUNCATED, "authentication header")
    key_id, length = struct.unpack_from("!HH", raw, AUTH_OFFSET)
    if AUTH_OFFSET + 4 + length > len(raw):
        raise WireError(BAD_AUTH_LENGTH, f"auth length {length} beyond the message")
    return key_id, length


def sign(raw: bytes, key: bytes) -> bytes:
    """``raw`` (encoded with a zeroed auth field of the right length) with its HMAC filled in."""
    key_id, length = _auth_field(raw)
    digest = compute(key_id, key, raw)
    if len(digest) != length:
        raise EncodeError(f"auth field is {length} bytes, key-id {key_id} needs {len(digest)}")
    start = AUTH_OFFSET + 4
    return raw[:start] + digest + raw[start + length :]


def verify(raw: bytes, key: bytes) -> bool:
    """Whether the HMAC in ``raw`` is right for ``key``.  Unknown key-ids, empty or odd-length
    authentication data never verify."""
    key_id, length = _auth_field(raw)
    if key_id not in _DIGESTS:
        return False
    kid = KeyId(key_id)
    if length not in (FULL_LENGTH[kid], TRUNCATED_LENGTH[kid]):
        return False
    start = AUTH_OFFSET + 4
    received = raw[start : start + length]
    zeroed = raw[:start] + bytes(length) + raw[start + length :]
    expected = compute(key_id, key, zeroed)[:length]
    return hmac.compare_digest(received, expected)
