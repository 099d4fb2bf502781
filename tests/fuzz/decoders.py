"""Every decoder as a fuzz target for the dedicated job (``--entry decoders``), with the
properties the hypothesis tests check (``tests/fuzz/test_decoders.py``,
``tests/unit/test_wire_trace.py``, ``tests/unit/test_pcap.py``, ``tests/unit/test_fastpath.py``):
a codec raises its own error or returns a value that re-encodes and decodes back to itself;
the packet-path parsers never raise.

Each target has its seeds (real captures and encoder-built messages, see
:mod:`tests.fuzz.seeds` and :mod:`tests.fuzz.mutator`) and one ``check(data)`` that raises
``AssertionError`` (or whatever escaped the decoder) on a broken property and otherwise
returns an outcome name for the summary: ``ok`` or the decoder's error reason.
"""

from __future__ import annotations

import random
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from lispd.dataplane.inner import inner_destination, parse_inner
from lispd.tools.pcap import PcapError, ip_payload, read_packets
from lispd.wire.address import decode_address, encode_address
from lispd.wire.control import decode_control, encode_control
from lispd.wire.data import (
    decapsulate,
    decode_data_header,
    encapsulate,
    encode_data_header,
    read_data_header,
)
from lispd.wire.ecm import decode_ecm, encode_ecm
from lispd.wire.errors import WireError
from lispd.wire.info import decode_info, encode_info
from lispd.wire.ip import build_udp_datagram, parse_udp_datagram
from lispd.wire.mapregister import (
    decode_map_notify,
    decode_map_register,
    encode_map_notify,
    encode_map_register,
)
from lispd.wire.mapreply import decode_map_reply, encode_map_reply
from lispd.wire.maprequest import decode_map_request, encode_map_request
from lispd.wire.packet import decode_ip_packet
from lispd.wire.reader import Reader
from lispd.wire.trace import decode_trace, encode_trace
from tests.fuzz.harness import Failure, FuzzInput, RunStats
from tests.fuzz.mutator import entry_seeds, mutate
from tests.fuzz.seeds import capture_file_seeds, control_seeds, packet_seeds


@dataclass(frozen=True, slots=True)
class Target:
    """One decoder: its name, its property check, the seeds of its inputs."""

    name: str
    check: Callable[[bytes], str]
    seeds: Callable[[], tuple[bytes, ...]]


def _roundtrip(decode: Callable[[bytes], Any], encode: Callable[[Any], bytes]) -> Callable:
    def check(data: bytes) -> str:
        try:
            value = decode(data)
        except WireError as exc:
            assert exc.reason and exc.reason == exc.reason.lower(), exc
            return exc.reason
        again = decode(encode(value))
        assert again == value, (value, again)
        return "ok"

    return check


def _address(data: bytes) -> str:
    r = Reader(data)
    try:
        value = decode_address(r)
    except WireError as exc:
        return exc.reason
    assert decode_address(Reader(encode_address(value))) == value
    return "ok"


def _data_header(data: bytes) -> str:
    return _roundtrip(decode_data_header, encode_data_header)(data[:8])


def _udp(data: bytes) -> str:
    outcome = _roundtrip(parse_udp_datagram, build_udp_datagram)(data)
    _roundtrip(decapsulate, encapsulate)(data)
    return outcome


def _ip_packet(data: bytes) -> str:
    decode_ip_packet(data)  # reports, never raises
    return "ok"


def _fastpath(data: bytes) -> str:
    """The per-packet parsers: never raise, whatever the bytes."""
    read_data_header(data)
    flow = parse_inner(data)
    inner_destination(data)
    return "ok" if flow is not None else "not-a-flow"


def _trace(data: bytes) -> str:
    try:
        msg = decode_trace(data)
    except WireError as exc:
        return exc.reason
    wire = encode_trace(msg)
    again = decode_trace(wire)
    assert again == msg
    assert encode_trace(again) == wire
    assert wire[:16] == data[:16]
    return "ok"


def _pcap(data: bytes) -> str:
    try:
        for pkt in read_packets(data):
            ip = ip_payload(pkt.linktype, pkt.frame)
            assert ip is None or (ip[0] >> 4 in (4, 6) and len(ip) <= len(pkt.frame))
    except PcapError as exc:
        return exc.reason
    return "ok"


@cache
def _typed(kind: int) -> tuple[bytes, ...]:
    """The control seeds of one message type (all of them when none is)."""
    return tuple(s for s in entry_seeds("control") if s and s[0] >> 4 == kind) or control_seeds()


@cache
def _addresses() -> tuple[bytes, ...]:
    """Control messages cut where their addresses may start (after nonces, in records)."""
    return tuple(s[o:] for s in control_seeds() for o in (8, 12, 16, 20, 24, 28) if len(s) > o)


@cache
def _packets() -> tuple[bytes, ...]:
    return packet_seeds() + entry_seeds("tun")


@cache
def _traces() -> tuple[bytes, ...]:
    return entry_seeds("trace") + tuple(p[28:] for p in entry_seeds("tun") if len(p) > 44)


TARGETS: tuple[Target, ...] = (
    Target("map-request", _roundtrip(decode_map_request, encode_map_request), lambda: _typed(1)),
    Target("map-reply", _roundtrip(decode_map_reply, encode_map_reply), lambda: _typed(2)),
    Target("map-register", _roundtrip(decode_map_register, encode_map_register), lambda: _typed(3)),
    Target("map-notify", _roundtrip(decode_map_notify, encode_map_notify), lambda: _typed(4)),
    Target("info", _roundtrip(decode_info, encode_info), lambda: _typed(7)),
    Target("ecm", _roundtrip(decode_ecm, encode_ecm), lambda: _typed(8)),
    Target("control", _roundtrip(decode_control, encode_control), lambda: entry_seeds("control")),
    Target("address", _address, _addresses),
    Target("data-header", _data_header, lambda: entry_seeds("data")),
    Target("udp-and-lisp-data", _udp, _packets),
    Target("ip-packet", _ip_packet, _packets),
    Target("fastpath", _fastpath, lambda: entry_seeds("tun")),
    Target("trace", _trace, _traces),
    Target("pcap", _pcap, capture_file_seeds),
)


def run_target(target: Target, seed: int, count: int, stats: RunStats) -> None:
    """Feed ``count`` mutated inputs to ``target``, recording into ``stats`` (inputs and
    outcomes under ``(target.name, "decoders")``)."""
    rng = random.Random(f"{seed}/decoders/{target.name}")
    seeds = target.seeds()
    outcome = stats.outcomes.setdefault((target.name, "decoders"), Counter())
    for _ in range(count):
        if rng.random() < 0.05:
            data = rng.randbytes(rng.randrange(300))
        else:
            data = rng.choice(seeds)
            if rng.random() < 0.9:
                data = mutate(data, rng, seeds, rng.randrange(1, 6))
        check_one(target, data, stats, outcome)
    stats.inputs[(target.name, "decoders")] += count


def check_one(target: Target, data: bytes, stats: RunStats, outcome: Counter[str]) -> None:
    """Check one input, counting its outcome or recording the failure."""
    try:
        outcome[target.check(data)] += 1
    except Exception:
        stats.failure_kinds["decoder"] += 1
        if len(stats.failures) < 20:
            item = FuzzInput(data)
            detail = traceback.format_exc()
            stats.failures.append(Failure(target.name, "decoders", "decoder", item, detail))
