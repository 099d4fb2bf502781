"""The one exception family raised by every decoder in :mod:`lispd.wire`.

A decoder that meets malformed input raises :class:`WireError` (or a subclass) carrying a short,
machine-readable ``reason``.  Daemon code turns that reason into a drop-counter label
(``drops{reason="truncated"}``), so reasons are lowercase, hyphenated and stable.

Errors of local misuse (asking an encoder to write a value that does not fit its field) are not
wire errors: encoders raise :class:`EncodeError`, a ``ValueError``.
"""

from __future__ import annotations


class WireError(Exception):
    """Malformed bytes from the network: count, drop, go on."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class EncodeError(ValueError):
    """A value handed to an encoder does not fit the wire format (a bug in the caller)."""


# Reasons in use, kept in one place so counters and tests agree on their spelling.
TRUNCATED = "truncated"
TRAILING_BYTES = "trailing-bytes"
BAD_TYPE = "bad-type"
BAD_AFI = "bad-afi"
BAD_LCAF = "bad-lcaf"
BAD_LCAF_LENGTH = "bad-lcaf-length"
BAD_LENGTH = "bad-length"
BAD_COUNT = "bad-count"
BAD_MASK_LEN = "bad-mask-len"
BAD_VERSION = "bad-ip-version"
BAD_PROTOCOL = "bad-protocol"
BAD_AUTH_LENGTH = "bad-auth-length"
BAD_TRACE = "bad-trace"
BAD_JSON = "bad-json"
BAD_UTF8 = "bad-utf8"
BAD_FIELD = "bad-field"
UNSUPPORTED_TYPE = "unsupported-type"
UNSUPPORTED_SIGNATURE = "unsupported-signature"
