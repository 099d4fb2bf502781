"""LISP-Trace (UDP 2434): the round-trip trace message spoken by lispers.net's ``ltr`` client.

Sans-IO codec: bytes in, frozen dataclasses out, and back.  Nothing here opens a socket.

Wire format (all integers big-endian)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Type=9 |   reserved (zero)     |    client's local UDP port    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |            client's local (private) IPv4 RLOC                 |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                     nonce (8 bytes, opaque)                   |
    +                                                               +
    |                                                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  JSON text, UTF-8, up to the end of the UDP payload (no length)|
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

The client's first packet carries no JSON.  Every node that appends a record re-encodes the
header as word 0 = ``0x90000000`` and word 1 = 0 (see :func:`reply_header`); the client accepts
only that.  The JSON body is a list of segments (forward, then return after the turnaround)::

    [{"se": "[0]198.51.100.1", "de": "[0]198.51.100.17", "paths": [hop, ...]}, ...]

and a hop is an object whose keys are ``n`` (role), ``sr`` / ``dr`` (source / destination RLOC
strings), ``hn`` (host name), ``ets`` or ``dts`` (encap / decap Unix time, a JSON number) and,
on encap records, ``rtts`` / ``hops`` / ``lats`` (three recent probe RTTs, hop counts "F/R" and
latencies "f/r").

Facts taken from lispers.net (farinacci/lispers.net, ``lisp/lisp.py``: class ``lisp_trace``
and function ``lisp_trace_append``; ``lisp/ltr.py``: ``build_packet`` / ``parse_packet``):

* lispers.net serialises the body with a bare ``json.dumps(obj)``: default separators
  ``", "`` and ``": "``, ``ensure_ascii=True``, keys in insertion order (not sorted), floats
  written with ``repr``.  We do the same, so bytes produced by lispers.net decode and re-encode
  to themselves.
* Insertion order of a hop's keys in ``lisp_trace_append``: ``n``, ``sr``, ``hn``, ``ets`` or
  ``dts``, ``dr``, then ``rtts``, ``hops``, ``lats`` (only when an RLOC was chosen).  A segment
  is built as ``se``, ``de``, ``paths``.  Our encoder writes keys in that order; unknown keys
  that a peer added are kept and written after the known ones.
* Timestamps are ``time.time()`` floats.  ``rtts`` starts life as ``[-1, -1, -1]`` (JSON
  integers) and is filled with ``round(rtt, 3)`` floats, so a list may mix both; we keep each
  number's int/float kind so that re-encoding gives back the same text.
* ``ltr`` writes the nonce with ``struct.pack("Q")`` (host byte order) and only compares it
  with the echoed copy, so the 8 bytes are opaque; we read them as one big-endian integer and
  write them back unchanged.
* lispers.net's decoder checks only that the top byte of word 0 is ``0x90``; the ``ltr``
  client insists on word 0 being exactly ``0x90000000``.  We accept any reserved bits after the
  type nibble and keep them (``TraceMessage.reserved``) so that re-encoding is faithful.
* The RTR keeps a NAT cache keyed by ``"<local rloc>:<local port>"`` taken from the header of
  the bare packet the client sends it (:func:`nat_trace_key`).

Every malformed input raises :class:`~lispd.wire.errors.WireError`; misuse of the encoder
raises :class:`~lispd.wire.errors.EncodeError`.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Final, TypeGuard

from lispd.wire.errors import (
    BAD_FIELD,
    BAD_JSON,
    BAD_TRACE,
    BAD_UTF8,
    EncodeError,
    WireError,
)
from lispd.wire.reader import Reader

__all__ = [
    "NODE_ETR",
    "NODE_ITR",
    "NODE_RTR",
    "REASON_DROP_ACTION",
    "REASON_MAP_CACHE_MISS",
    "REASON_NOT_AN_EID",
    "REASON_NO_REACHABLE_RLOCS",
    "REPLY_WORD0",
    "TRACE_HEADER_LEN",
    "TRACE_PORT",
    "TRACE_TYPE",
    "UNREACHABLE_RLOC",
    "IPAddress",
    "Number",
    "TraceHop",
    "TraceMessage",
    "TraceSegment",
    "append_hop",
    "decode_trace",
    "encode_trace",
    "find_segment",
    "format_eid",
    "format_rloc",
    "format_unreachable",
    "is_round_trip",
    "nat_trace_key",
    "parse_eid",
    "parse_rloc",
    "reply_header",
    "return_address",
    "turn_around",
]

TRACE_PORT: Final = 2434
"""UDP port of LISP-Trace (4342 written backwards)."""
TRACE_TYPE: Final = 9
"""Message type in the top four bits of word 0."""
TRACE_HEADER_LEN: Final = 16
"""Fixed header: word 0, word 1 and the 8-byte nonce."""
REPLY_WORD0: Final = TRACE_TYPE << 28
"""Word 0 as every re-encoding node writes it (0x90000000)."""

NODE_ITR: Final = "ITR"
NODE_RTR: Final = "RTR"
NODE_ETR: Final = "ETR"
UNREACHABLE_RLOC: Final = "?"
"""``dr`` value of a node that could not forward (optionally followed by `` (<reason>)``)."""

# Reasons lispers.net writes after "? " in "dr" when it cannot forward.
REASON_MAP_CACHE_MISS: Final = "map-cache miss"
REASON_NOT_AN_EID: Final = "not an EID"
REASON_NO_REACHABLE_RLOCS: Final = "No reachable RLOCs found"
REASON_DROP_ACTION: Final = "drop action"

Number = int | float
"""A JSON number as decoded: int or float (never bool), kept apart for faithful re-encoding."""
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_MAX_DEPTH: Final = 32
"""Deepest JSON nesting accepted; the known structure needs 5 levels."""
_MAX_IID: Final = 0xFFFFFFFF
_HEADER = struct.Struct("!IIQ")

_SEGMENT_KEYS: Final = ("se", "de", "paths")
_HOP_KEYS: Final = ("n", "sr", "hn", "ets", "dts", "dr", "rtts", "hops", "lats")
_EID_RE: Final = re.compile(r"\[([0-9]{1,10})\](.+)", re.ASCII | re.DOTALL)
_PORT_RE: Final = re.compile(r"[0-9]{1,5}", re.ASCII)


# --------------------------------------------------------------------------------------------
# Data model


@dataclass(frozen=True, slots=True)
class TraceHop:
    """One record appended by a node: a JSON object inside a segment's ``paths``.

    ``extra`` keeps keys this codec does not know, each as ``(key, value-as-JSON-text)`` with
    the text in lispers.net's spelling (``json.dumps`` defaults), in the order received.
    """

    node: str
    sr: str
    dr: str
    hn: str
    encap_ts: Number | None = None
    decap_ts: Number | None = None
    rtts: tuple[Number, ...] | None = None
    hops: tuple[str, ...] | None = None
    lats: tuple[str, ...] | None = None
    extra: tuple[tuple[str, str], ...] = ()

    @classmethod
    def encap(
        cls,
        node: str,
        sr: str,
        dr: str,
        hn: str,
        ts: float,
        *,
        rtts: Iterable[Number] | None = None,
        hops: Iterable[str] | None = None,
        lats: Iterable[str] | None = None,
    ) -> TraceHop:
        """An encapsulation record (``ets``).  ``rtts``, ``hops`` and ``lats`` go together:
        give all three or none (lispers.net's client prints none of them when one is missing).
        """
        given = [x is not None for x in (rtts, hops, lats)]
        if any(given) and not all(given):
            raise EncodeError("rtts, hops and lats must be given together")
        return cls(
            node=node,
            sr=sr,
            dr=dr,
            hn=hn,
            encap_ts=ts,
            rtts=None if rtts is None else tuple(rtts),
            hops=None if hops is None else tuple(hops),
            lats=None if lats is None else tuple(lats),
        )

    @classmethod
    def decap(cls, node: str, sr: str, dr: str, hn: str, ts: float) -> TraceHop:
        """A decapsulation record (``dts``)."""
        return cls(node=node, sr=sr, dr=dr, hn=hn, decap_ts=ts)

    @property
    def is_encap(self) -> bool:
        """True for an encapsulation record (it carries ``ets``)."""
        return self.encap_ts is not None

    @property
    def timestamp(self) -> Number | None:
        """``ets`` or, failing that, ``dts``."""
        return self.encap_ts if self.encap_ts is not None else self.decap_ts

    @property
    def unreachable(self) -> bool:
        """True when the node could not forward (``dr`` is ``?`` or ``? (<reason>)``)."""
        return self.dr == UNREACHABLE_RLOC or self.dr.startswith(UNREACHABLE_RLOC + " (")

    def extra_value(self, key: str) -> Any:
        """The decoded JSON value of unknown key ``key``; ``KeyError`` when absent."""
        for k, text in self.extra:
            if k == key:
                return json.loads(text)
        raise KeyError(key)


@dataclass(frozen=True, slots=True)
class TraceSegment:
    """One direction of the trace: EID ``se`` to EID ``de`` (both ``"[iid]address"``)."""

    se: str
    de: str
    paths: tuple[TraceHop, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class TraceMessage:
    """A whole LISP-Trace payload (what follows the inner UDP header).

    ``segments`` is ``None`` when there is no JSON body at all (the client's first packet and
    the bare NAT-traversal packet to an RTR); an empty tuple stands for the body ``[]``.
    ``reserved`` holds the 12 bits of word 0 between the type and the port (zero on the wire
    in practice).
    """

    local_port: int
    local_rloc: ipaddress.IPv4Address
    nonce: int
    segments: tuple[TraceSegment, ...] | None = None
    reserved: int = 0

    @property
    def word0(self) -> int:
        """Word 0 as it goes on the wire."""
        return (TRACE_TYPE << 28) | (self.reserved << 16) | self.local_port


# --------------------------------------------------------------------------------------------
# Decoding


class _BadNumber(Exception):
    """Raised from inside json.loads for NaN / Infinity / overflowing literals."""


def _reject_constant(name: str) -> Any:
    raise _BadNumber(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(text)
    return value


def _bad(detail: str) -> WireError:
    return WireError(BAD_JSON, detail)


def _check_depth(doc: Any) -> None:
    """Refuse nesting deeper than ``_MAX_DEPTH`` (iteratively: no recursion on hostile data)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Iterable[Any] = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > _MAX_DEPTH:
            raise _bad(f"JSON nested deeper than {_MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


def _dump(value: Any) -> str:
    """lispers.net's spelling of a JSON value: ``json.dumps`` with its defaults."""
    return json.dumps(value, ensure_ascii=True, separators=(", ", ": "), allow_nan=False)


def _is_number(value: Any) -> TypeGuard[Number]:
    """An int or float proper (not a bool, which JSON keeps apart from numbers)."""
    return type(value) in (int, float)


def _str_field(obj: dict[str, Any], key: str, where: str) -> str:
    if key not in obj:
        raise _bad(f"{where}: missing {key!r}")
    value = obj[key]
    if not isinstance(value, str):
        raise _bad(f"{where}: {key!r} is not a string")
    return value


def _number_field(obj: dict[str, Any], key: str, where: str) -> Number | None:
    if key not in obj:
        return None
    value = obj[key]
    if not _is_number(value):
        raise _bad(f"{where}: {key!r} is not a number")
    return value


def _list_field(obj: dict[str, Any], key: str, where: str, numbers: bool) -> tuple[Any, ...] | None:
    if key not in obj:
        return None
    value = obj[key]
    if not isinstance(value, list):
        raise _bad(f"{where}: {key!r} is not a list")
    for item in value:
        ok = _is_number(item) if numbers else isinstance(item, str)
        if not ok:
            kind = "numbers" if numbers else "strings"
            raise _bad(f"{where}: {key!r} must hold {kind}")
    return tuple(value)


def _extras(obj: dict[str, Any], known: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((k, _dump(v)) for k, v in obj.items() if k not in known)


def _hop_from_json(obj: Any, where: str) -> TraceHop:
    if not isinstance(obj, dict):
        raise _bad(f"{where}: not an object")
    return TraceHop(
        node=_str_field(obj, "n", where),
        sr=_str_field(obj, "sr", where),
        dr=_str_field(obj, "dr", where),
        hn=_str_field(obj, "hn", where),
        encap_ts=_number_field(obj, "ets", where),
        decap_ts=_number_field(obj, "dts", where),
        rtts=_list_field(obj, "rtts", where, numbers=True),
        hops=_list_field(obj, "hops", where, numbers=False),
        lats=_list_field(obj, "lats", where, numbers=False),
        extra=_extras(obj, _HOP_KEYS),
    )


def _segment_from_json(obj: Any, where: str) -> TraceSegment:
    if not isinstance(obj, dict):
        raise _bad(f"{where}: not an object")
    se = _str_field(obj, "se", where)
    de = _str_field(obj, "de", where)
    if "paths" not in obj:
        raise _bad(f"{where}: missing 'paths'")
    paths = obj["paths"]
    if not isinstance(paths, list):
        raise _bad(f"{where}: 'paths' is not a list")
    hops = tuple(_hop_from_json(h, f"{where} hop {i}") for i, h in enumerate(paths))
    return TraceSegment(se=se, de=de, paths=hops, extra=_extras(obj, _SEGMENT_KEYS))


def _decode_body(body: bytes) -> tuple[TraceSegment, ...]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(BAD_UTF8, f"trace body: {exc.reason} at byte {exc.start}") from None
    try:
        doc = json.loads(text, parse_float=_finite_float, parse_constant=_reject_constant)
    except _BadNumber as exc:
        raise _bad(f"non-finite number {exc}") from None
    except RecursionError:
        raise _bad("JSON nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError, and int literals past the digit limit
        raise _bad(str(exc)) from None
    _check_depth(doc)
    if not isinstance(doc, list):
        raise _bad("body is not a list of segments")
    return tuple(_segment_from_json(s, f"segment {i}") for i, s in enumerate(doc))


def decode_trace(data: bytes) -> TraceMessage:
    """Decode a LISP-Trace payload (the bytes after the inner UDP header).

    Raises ``WireError``: ``truncated`` below 16 bytes, ``bad-trace`` when the type is not 9,
    ``bad-utf8`` / ``bad-json`` for a body that is not UTF-8 or not the expected JSON shape.
    An empty body gives ``segments=None``.
    """
    data = bytes(data)
    reader = Reader(data)
    word0 = reader.u32("trace word 0")
    word1 = reader.u32("trace local rloc")
    nonce = reader.u64("trace nonce")
    msg_type = word0 >> 28
    if msg_type != TRACE_TYPE:
        raise WireError(BAD_TRACE, f"message type {msg_type}, expected {TRACE_TYPE}")
    body = reader.rest()
    return TraceMessage(
        local_port=word0 & 0xFFFF,
        local_rloc=ipaddress.IPv4Address(word1),
        nonce=nonce,
        segments=_decode_body(body) if body else None,
        reserved=(word0 >> 16) & 0xFFF,
    )


# --------------------------------------------------------------------------------------------
# Encoding


def _need_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise EncodeError(f"{what} must be a str, not {type(value).__name__}")
    return value


def _need_number(value: Any, what: str) -> Number:
    if not _is_number(value):
        raise EncodeError(f"{what} must be an int or float, not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise EncodeError(f"{what} must be finite")
    return value


def _extras_to_json(extra: Any, known: tuple[str, ...], where: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for item in extra:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise EncodeError(f"{where}: extra items must be (key, json-text) pairs")
        key = _need_str(item[0], f"{where} extra key")
        text = _need_str(item[1], f"{where} extra {key!r}")
        if key in known or key in seen:
            raise EncodeError(f"{where}: extra key {key!r} clashes with another key")
        seen.add(key)
        try:
            value = json.loads(text, parse_float=_finite_float, parse_constant=_reject_constant)
        except (ValueError, RecursionError, _BadNumber):
            raise EncodeError(f"{where}: extra {key!r} is not JSON text") from None
        out.append((key, value))
    return out


def _hop_to_json(hop: TraceHop, where: str) -> dict[str, Any]:
    if not isinstance(hop, TraceHop):
        raise EncodeError(f"{where}: not a TraceHop")
    obj: dict[str, Any] = {
        "n": _need_str(hop.node, f"{where} node"),
        "sr": _need_str(hop.sr, f"{where} sr"),
        "hn": _need_str(hop.hn, f"{where} hn"),
    }
    if hop.encap_ts is not None:
        obj["ets"] = _need_number(hop.encap_ts, f"{where} ets")
    if hop.decap_ts is not None:
        obj["dts"] = _need_number(hop.decap_ts, f"{where} dts")
    obj["dr"] = _need_str(hop.dr, f"{where} dr")
    if hop.rtts is not None:
        obj["rtts"] = [_need_number(x, f"{where} rtts item") for x in hop.rtts]
    if hop.hops is not None:
        obj["hops"] = [_need_str(x, f"{where} hops item") for x in hop.hops]
    if hop.lats is not None:
        obj["lats"] = [_need_str(x, f"{where} lats item") for x in hop.lats]
    obj.update(_extras_to_json(hop.extra, _HOP_KEYS, where))
    return obj


def _segment_to_json(seg: TraceSegment, where: str) -> dict[str, Any]:
    if not isinstance(seg, TraceSegment):
        raise EncodeError(f"{where}: not a TraceSegment")
    obj: dict[str, Any] = {
        "se": _need_str(seg.se, f"{where} se"),
        "de": _need_str(seg.de, f"{where} de"),
        "paths": [_hop_to_json(h, f"{where} hop {i}") for i, h in enumerate(seg.paths)],
    }
    obj.update(_extras_to_json(seg.extra, _SEGMENT_KEYS, where))
    return obj


def _check_int(value: Any, bits: int, what: str) -> int:
    if type(value) is not int or not 0 <= value < (1 << bits):
        raise EncodeError(f"{what} must be an int of {bits} bits, got {value!r}")
    return value


def encode_trace(msg: TraceMessage) -> bytes:
    """Encode a LISP-Trace payload.

    The JSON body is written exactly as lispers.net writes it (``json.dumps`` defaults: ``", "``
    and ``": "`` separators, ASCII-only output, keys in lispers.net's insertion order), so a
    message decoded from lispers.net's bytes re-encodes to the same bytes.  Raises
    ``EncodeError`` for values that do not fit.
    """
    _check_int(msg.local_port, 16, "local_port")
    _check_int(msg.reserved, 12, "reserved")
    _check_int(msg.nonce, 64, "nonce")
    if not isinstance(msg.local_rloc, ipaddress.IPv4Address):
        raise EncodeError("local_rloc must be an IPv4Address")
    header = _HEADER.pack(msg.word0, int(msg.local_rloc), msg.nonce)
    if msg.segments is None:
        return header
    doc = [_segment_to_json(s, f"segment {i}") for i, s in enumerate(msg.segments)]
    try:
        text = _dump(doc)
    except (ValueError, TypeError, RecursionError) as exc:
        raise EncodeError(f"trace JSON: {exc}") from None
    return header + text.encode("ascii")


# --------------------------------------------------------------------------------------------
# String helpers: EIDs and RLOCs as lispers.net prints them


def format_eid(iid: int, address: IPAddress | str) -> str:
    """``"[iid]address"``, the way segments name EIDs (the IID is always written)."""
    if type(iid) is not int or not 0 <= iid <= _MAX_IID:
        raise EncodeError(f"instance-id must be an int in 0..{_MAX_IID}, got {iid!r}")
    if isinstance(address, str):
        try:
            address = ipaddress.ip_address(address)
        except ValueError:
            raise EncodeError(f"not an IP address: {address!r}") from None
    if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
        raise EncodeError(f"not an IP address: {address!r}")
    return f"[{iid}]{address}"


def _parse_ip(text: str, what: str) -> IPAddress:
    if "%" in text:  # ipaddress accepts IPv6 scope ids; they have no place on the wire
        raise WireError(BAD_FIELD, f"{what}: scoped address {text!r}")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise WireError(BAD_FIELD, f"{what}: not an IP address: {text!r}") from None


def parse_eid(text: str) -> tuple[int, IPAddress]:
    """Parse ``"[iid]address"`` into ``(iid, address)``; ``WireError(bad-field)`` if malformed."""
    match = _EID_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise WireError(BAD_FIELD, f"EID not in [iid]address form: {text!r}")
    iid = int(match.group(1))
    if iid > _MAX_IID:
        raise WireError(BAD_FIELD, f"instance-id {iid} out of range")
    return iid, _parse_ip(match.group(2), "EID")


def format_rloc(address: IPAddress | str, port: int | None = None) -> str:
    """An ``sr`` / ``dr`` value: the address, plus ``":<port>"`` when a port is given.

    lispers.net appends the port without brackets, also to IPv6 addresses.
    """
    text = str(address)
    if port is None:
        return text
    return f"{text}:{_check_int(port, 16, 'port')}"


def format_unreachable(reason: str | None = None) -> str:
    """The ``dr`` of a node that could not forward: ``"?"`` or ``"? (<reason>)"``."""
    return UNREACHABLE_RLOC if reason is None else f"{UNREACHABLE_RLOC} ({reason})"


def parse_rloc(text: str) -> tuple[IPAddress, int | None]:
    """Parse an ``sr`` / ``dr`` value ``"address"`` or ``"address:port"``.

    An IPv6 address followed by ``:port`` is ambiguous (no brackets); a string that is a valid
    address as a whole is taken as an address without port.  ``WireError(bad-field)`` for
    anything else (including the ``"?"`` forms).
    """
    if not isinstance(text, str):
        raise WireError(BAD_FIELD, f"RLOC is not a string: {text!r}")
    if "%" not in text:
        try:
            return ipaddress.ip_address(text), None
        except ValueError:
            pass
    addr_text, sep, port_text = text.rpartition(":")
    if not sep or not _PORT_RE.fullmatch(port_text) or int(port_text) > 0xFFFF:
        raise WireError(BAD_FIELD, f"not an RLOC[:port]: {text!r}")
    return _parse_ip(addr_text, "RLOC"), int(port_text)


# --------------------------------------------------------------------------------------------
# Pure helpers for the nodes that stamp traces


def reply_header(msg: TraceMessage) -> TraceMessage:
    """The message with the header a re-encoding node writes: word 0 exactly ``0x90000000``
    (no port, no reserved bits) and word 1 zero; nonce and body unchanged."""
    return replace(msg, local_port=0, local_rloc=ipaddress.IPv4Address(0), reserved=0)


def find_segment(msg: TraceMessage, de: str) -> TraceSegment | None:
    """The first segment whose ``de`` equals ``de``, or ``None``."""
    for seg in msg.segments or ():
        if seg.de == de:
            return seg
    return None


def append_hop(msg: TraceMessage, de: str, hop: TraceHop, se: str | None = None) -> TraceMessage:
    """Append ``hop`` to the first segment whose ``de`` equals the packet's current destination.

    With no segment yet (no body, or ``[]``), the forward segment ``se`` -> ``de`` is created
    first, so ``se`` is then required (``EncodeError`` otherwise).  When segments exist but
    none matches ``de``, the message is returned unchanged, as lispers.net does.
    """
    if not msg.segments:
        if se is None:
            raise EncodeError("append_hop: the first record needs the source EID (se)")
        return replace(msg, segments=(TraceSegment(se=se, de=de, paths=(hop,)),))
    segments = list(msg.segments)
    for i, seg in enumerate(segments):
        if seg.de == de:
            segments[i] = replace(seg, paths=(*seg.paths, hop))
            return replace(msg, segments=tuple(segments))
    return msg


def is_round_trip(msg: TraceMessage) -> bool:
    """True once the return segment has been added (two or more segments)."""
    return msg.segments is not None and len(msg.segments) >= 2


def turn_around(msg: TraceMessage) -> TraceMessage:
    """Add the empty return segment (``se`` and ``de`` of the forward one swapped).

    Only a message with exactly one segment can be turned around (``EncodeError`` otherwise).
    """
    if msg.segments is None or len(msg.segments) != 1:
        count = 0 if msg.segments is None else len(msg.segments)
        raise EncodeError(f"turn_around needs exactly one segment, found {count}")
    forward = msg.segments[0]
    return replace(msg, segments=(forward, TraceSegment(se=forward.de, de=forward.se)))


def return_address(msg: TraceMessage) -> tuple[IPAddress, int] | None:
    """Where a node that cannot forward returns the bare payload: the first ITR's ``sr``
    (``address:client-port``) of the forward segment.  ``None`` when there is no first record
    or its ``sr`` carries no port; ``WireError(bad-field)`` when ``sr`` is malformed."""
    if not msg.segments or not msg.segments[0].paths:
        return None
    address, port = parse_rloc(msg.segments[0].paths[0].sr)
    if port is None:
        return None
    return address, port


def nat_trace_key(msg: TraceMessage) -> str:
    """``"<local rloc>:<local port>"`` from the header: the key under which an RTR remembers
    the NAT-translated address of an ``ltr`` client behind NAT."""
    return f"{msg.local_rloc}:{msg.local_port}"
