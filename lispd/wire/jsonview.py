"""A JSON view of decoded wire objects, for ``lispd decode``, logs and the control socket.

Dataclasses become objects with a ``"type"`` key naming the class; addresses become their text
form; bytes become hex; enums their lowercase hyphenated name; 64-bit and longer identifiers
(nonces, xTR-IDs, site-IDs) hex strings so that JSON readers with 53-bit numbers keep them whole.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from lispd.wire.address import NoAddress

_HEX_FIELDS = frozenset({"nonce", "xtr_id", "site_id"})


def to_jsonable(value: Any, name: str = "") -> Any:
    """``value`` as plain JSON-serialisable data (dict, list, str, int, float, bool, None)."""
    if isinstance(value, bool) or value is None or isinstance(value, float | str):
        return value
    if isinstance(value, Enum):
        return value.name.lower().replace("_", "-")
    if isinstance(value, int):
        return f"0x{value:016x}" if name in _HEX_FIELDS else value
    if isinstance(value, IPv4Address | IPv6Address):
        return str(value)
    if isinstance(value, NoAddress):
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {"type": type(value).__name__}
        for f in dataclasses.fields(value):
            out[f.name] = to_jsonable(getattr(value, f.name), f.name)
        return out
    if isinstance(value, tuple | list):
        return [to_jsonable(v, name) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, str(k)) for k, v in value.items()}
    return str(value)
