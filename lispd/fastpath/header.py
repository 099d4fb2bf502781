"""Building and reading the 8-byte LISP data header on the packet path (see
:mod:`lispd.wire.data` for the full codec this must agree with)."""

from __future__ import annotations

import struct

_HEADER = struct.Struct("!II")
_N_I = 0x88000000  # nonce present + instance-ID present
_K_BITS = 0x03000000
_N_BIT = 0x80000000
_I_BIT = 0x08000000

HEADER_LEN = 8
IID_CONTROL = 0xFFFFFF


def build_header(nonce: int, iid: int) -> bytes:
    """A header with a 24-bit nonce and the instance-ID (always sent, 0 included, so that the
    ETR never has to guess)."""
    return _HEADER.pack(_N_I | (nonce & 0xFFFFFF), (iid & 0xFFFFFF) << 8)


def read_header(payload: bytes) -> tuple[int, int] | None:
    """(instance-id, key-id bits) of the header at the start of ``payload``; None when the
    payload is shorter than a header.  A header without the I bit belongs to instance 0."""
    if len(payload) < HEADER_LEN:
        return None
    word0, word1 = _HEADER.unpack_from(payload)
    iid = word1 >> 8 if word0 & _I_BIT else 0
    return iid, (word0 & _K_BITS) >> 24
