"""Messages between the main process and its fast-path workers (sans-IO).

A worker is a process running one compiled engine on its own TUN queue and its own
SO_REUSEPORT 4341 sockets (:mod:`lispd.engine.worker`).  It talks to the main process over
one SOCK_SEQPACKET socket pair, one message per packet:

main -> worker
    a batch of table operations, ``[(name, args), ...]`` (:data:`OPERATIONS`: the engine
    methods that install records and local EID-prefixes, and the marks around a seed), or a
    counters request; marshal
    encoded (both ends are the same Python, started by us).

worker -> main
    ``T`` + an inner packet the Python path must take (from the worker's TUN queue),
    ``U`` + TTL, TOS, source port, address length, source address, datagram (from its 4341
    sockets), or ``C`` + the engine's counters (JSON), answering a request or unasked
    once a second.

marshal (which trusts the sizes in its input) carries only the main process's commands:
what the main process reads from a worker is plain bytes and JSON, checked, so a worker gone
wrong cannot make it allocate without bound or fail on a counter that is not a number.
"""

from __future__ import annotations

import json
import marshal
import socket
import struct
from dataclasses import dataclass
from typing import Any

SEED_BEGIN = "seed_begin"
SEED_END = "seed_end"
OPERATIONS = frozenset(
    {
        "map_set",
        "map_remove",
        "map_clear",
        "db_set",
        "db_remove",
        "db_clear",
        "set_punt_all",
        "set_gso",
        "forget_sources",
        "seed_begin",
        "seed_end",
    }
)
"""Engine methods the main process may call in a worker (all return None), and the worker's
own ``seed_begin`` / ``seed_end``, around a seed: in between the worker's engine hands every
packet whose fate depends on the map-cache to the main process (its table is partial: a
covering prefix could match before the more specific one arrives), and a ``set_punt_all``
takes effect at ``seed_end``."""

COUNTERS_REQUEST = "counters"
MAX_MESSAGE = 256 * 1024
"""A batch of operations is cut before it grows past this (socket buffers hold a few)."""

TUN_PUNT = ord("T")
UDP_PUNT = ord("U")
COUNTERS = ord("C")
_UDP_HEAD = struct.Struct("!BBBHB")  # kind, ttl, tos, source port, address length

Operation = tuple[str, tuple[Any, ...]]


class WireError(ValueError):
    """A message that does not decode (a bug or a stranger on the socket: dropped)."""


# --- main -> worker ---------------------------------------------------------------------------


def encode_operations(operations: list[Operation]) -> bytes:
    """One message carrying ``operations`` in order."""
    return marshal.dumps(("ops", [(name, tuple(args)) for name, args in operations]))


def encode_counters_request(sequence: int) -> bytes:
    """Ask for the engine's counters; the answer carries ``sequence``."""
    return marshal.dumps((COUNTERS_REQUEST, sequence))


def decode_command(data: bytes) -> tuple[str, Any]:
    """``("ops", [(name, args), ...])`` or ``("counters", sequence)``; names are checked
    against :data:`OPERATIONS`."""
    try:
        kind, body = marshal.loads(data)
    except (EOFError, ValueError, TypeError) as exc:
        raise WireError(f"undecodable command: {exc}") from exc
    if kind == COUNTERS_REQUEST and type(body) is int:
        return kind, body
    if kind != "ops" or type(body) is not list:
        raise WireError(f"unknown command {kind!r}")
    for item in body:
        if (
            type(item) is not tuple
            or len(item) != 2
            or item[0] not in OPERATIONS
            or type(item[1]) is not tuple
        ):
            raise WireError(f"bad operation {item!r:.80}")
    return kind, body


# --- worker -> main ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TunPunt:
    """An inner packet read from a worker's TUN queue, for the Python ITR path."""

    packet: bytes


@dataclass(frozen=True, slots=True)
class UdpPunt:
    """A datagram received on a worker's 4341 socket, for the Python ETR/RTR path."""

    payload: bytes
    ttl: int
    tos: int
    source: str
    port: int


@dataclass(frozen=True, slots=True)
class CountersReport:
    """A worker's engine counters; ``sequence`` 0 when nobody asked."""

    sequence: int
    counters: dict[str, dict[str, int]]


def encode_tun_punt(packet: bytes) -> bytes:
    """``T`` + packet."""
    return b"T" + packet


def encode_udp_punt(payload: bytes, ttl: int, tos: int, source: str, port: int) -> bytes:
    """``U`` + TTL, TOS, source port, source address (4 or 16 bytes) + datagram."""
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    address = socket.inet_pton(family, source)
    return _UDP_HEAD.pack(UDP_PUNT, ttl & 0xFF, tos & 0xFF, port, len(address)) + address + payload


def encode_counters(sequence: int, counters: dict[str, dict[str, int]]) -> bytes:
    """``C`` + (sequence, counters)."""
    return b"C" + json.dumps([sequence, counters]).encode()


def decode_report(data: bytes) -> TunPunt | UdpPunt | CountersReport:
    """One message from a worker."""
    if not data:
        raise WireError("empty message")
    kind = data[0]
    if kind == TUN_PUNT:
        return TunPunt(data[1:])
    if kind == UDP_PUNT:
        if len(data) < _UDP_HEAD.size:
            raise WireError("truncated datagram punt")
        _, ttl, tos, port, length = _UDP_HEAD.unpack_from(data)
        if length not in (4, 16) or len(data) < _UDP_HEAD.size + length:
            raise WireError("bad source address in a datagram punt")
        start = _UDP_HEAD.size
        family = socket.AF_INET if length == 4 else socket.AF_INET6
        source = socket.inet_ntop(family, data[start : start + length])
        return UdpPunt(data[start + length :], ttl, tos, source, port)
    if kind == COUNTERS:
        try:
            sequence, counters = json.loads(data[1:])
        except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError too
            raise WireError(f"undecodable counters: {exc}") from exc
        if type(sequence) is not int or not _is_counts(counters):
            raise WireError("bad counters report")
        return CountersReport(sequence, counters)
    raise WireError(f"unknown report kind {kind}")


def _is_counts(value: object) -> bool:
    """``{section: {name: int}}``."""
    return type(value) is dict and all(
        type(section) is dict and all(type(n) is int for n in section.values())
        for section in value.values()
    )


def batches(operations: list[Operation], limit: int = MAX_MESSAGE) -> list[bytes]:
    """``operations`` as messages of at most about ``limit`` bytes each, in order."""
    messages: list[bytes] = []
    chunk: list[Operation] = []
    size = 0
    for op in operations:
        cost = 64 + sum(len(a) if isinstance(a, bytes) else 16 for a in op[1]) + _record_cost(op)
        if chunk and size + cost > limit:
            messages.append(encode_operations(chunk))
            chunk, size = [], 0
        chunk.append(op)
        size += cost
    if chunk:
        messages.append(encode_operations(chunk))
    return messages


def _record_cost(op: Operation) -> int:
    """Bytes a map_set's RLOC list adds (about 40 per RLOC)."""
    if op[0] == "map_set" and len(op[1]) >= 4 and isinstance(op[1][3], list):
        return 40 * len(op[1][3])
    return 0
