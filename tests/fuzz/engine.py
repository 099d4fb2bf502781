"""The C engine's fuzz job: every entry point of :mod:`lispd.engine._accel` fed hostile
input, and checked against the Python reference path wherever both decide.

    python -m tests.fuzz.engine [--entry NAME ...] [--inputs N] [--seed S] [--jobs N]
    python -m tests.fuzz.engine --engine atheris --entry NAME [libFuzzer options...]
    python -m tests.fuzz.engine --replay NAME HEX
    python -m tests.fuzz.sanitizer run DIR -- -m tests.fuzz.engine ...   # under ASan + UBSan

``--inputs`` is per entry point.  Entry points (``--entry``, all by default):

``tun``
    An ITR engine on a TUN without a virtio-net header (``Engine.fuzz_tun``: one ``from_tun``
    round of 1-8 reads).  Every packet is sent or punted; sent exactly as ``Itr.handle``
    encapsulates it (RLOC, port, socket, TTL, TOS, instance-ID, the inner bytes), punted only
    when Python does not encapsulate it or for a reason the design names
    (``documented_itr_punt``); each destination's datagrams leave in the order read, and a UDP
    GSO send cut at its segment size gives back exactly the datagrams queued.
``vnet``
    The same ITR with IFF_VNET_HDR and offloads: a read is a virtio-net header and a packet.
    A partial checksum is completed and a TCP super-packet segmented as
    :mod:`tests.fuzz.engine_model` does it, each packet or segment then checked as above;
    short reads, bad headers and super-packets the engine cannot split are dropped under
    their reasons exactly when the model says so.
``udp``
    An RTR+ETR engine on UDP 4341 (``Engine.fuzz_udp``: one ``from_udp`` round of 1-8
    messages, outer TTL and TOS from the input): each datagram goes to the TUN exactly as the
    daemon's dispatch (``Etr.handle`` for its own EIDs, ``Rtr.handle`` for the rest)
    decapsulates it, is re-encapsulated exactly as it does, or is punted when Python drops
    it or for a named reason (a LISP-Trace, a record Python must decide).
``gro``
    The same node with UDP GRO and a vnet TUN: a message is datagrams coalesced at a segment
    size (any size, hostile ones too); TCP segments merged into a super-packet must segment
    back into the very packets Python decapsulates, in order, the super-packet's header
    fit for the kernel.
``tables``
    ``map_set`` / ``map_remove`` / ``db_set`` / ``db_remove`` / ``*_clear`` with hostile
    arguments (any type, instance-IDs past 24 bits or 64, prefixes of any length, prefix
    lengths past the family, ports, weights, 0 to 300 RLOCs of any shape, bulk loads that
    grow the table): refused with ValueError, TypeError or OverflowError exactly when the
    model refuses them, and every lookup answered as the model's longest-prefix match.  The
    engine writes a shared table (``maptable.c``) and a second engine reads it as a worker
    does: its lookups and record count must be the writer's, its changes refused.
``helpers``
    The module functions ``segment``, ``merge``, ``flow_hash`` and ``complete_checksum``
    against the model and ``lispd.dataplane.inner``.

An input is bytes (a header, then parts each behind a 2-byte length), so any byte string is a
valid input: the mutation engine builds them from seeds, atheris mutates them freely, and a
failure prints one as hex for ``--replay``.  Exit status 1 when any input broke a check.

The worlds (map-cache, local database, Python ITR/ETR/RTR next to engines loaded the daemon's
way) are those of ``tests/unit/test_fastpath_compiled.py``, so both suites check one design.
"""

from __future__ import annotations

import argparse
import functools
import gc
import mmap
import os
import random
import sys
import time
import types
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from lispd.dataplane.inner import (
    fix_inner_on_decap,
    flow_hash,
    inner_destination,
    parse_inner,
)
from lispd.dataplane.outputs import Drop, Encap, Miss, Output, ToTun
from lispd.engine.compiled import CompiledPath
from lispd.wire.data import DATA_HEADER_LEN, read_data_header
from lispd.wire.ip import internet_checksum
from tests.fuzz import engine_model as model
from tests.fuzz.mutator import fix_ip, mutate
from tests.unit import test_fastpath_compiled as worlds
from tests.unit.fastpath_packets import (
    ACK,
    FIN,
    PROTO_TCP,
    PROTO_UDP,
    PSH,
    ip_packet,
    lisp_header,
    packed,
    pseudo_header,
    tcp_packet,
    timestamp_option,
    udp_packet,
    vnet_header,
)

_accel = worlds._accel
ENTRIES = ("tun", "vnet", "udp", "gro", "tables", "helpers")
BATCH = 8  # parts (reads, messages) per input at most, of the engine's 64
SOURCE = packed("192.0.2.1")  # the one ITR every fuzz_udp datagram comes from
REFUSALS = (ValueError, TypeError, OverflowError)


class Mismatch(AssertionError):
    """The engine and the reference disagree (or the engine broke a rule of its own)."""


def check(condition: object, message: str) -> None:
    if not condition:
        raise Mismatch(message)


# --- input framing ------------------------------------------------------------------------------

HEADER_BYTES = {"tun": 1, "vnet": 1, "udp": 2, "gro": 2, "tables": 0, "helpers": 1}


def frame(header: bytes, parts: list[bytes]) -> bytes:
    """An input: ``header``, then each part behind its 2-byte length (parts are cut at 65535)."""
    out = bytearray(header)
    for part in parts:
        part = part[:0xFFFF]
        out += len(part).to_bytes(2, "big") + part
    return bytes(out)


def unframe(data: bytes, header_len: int) -> tuple[bytes, list[bytes]]:
    """(header, parts) of any bytes: a short header is padded, a part cut short keeps what
    is there, at most :data:`BATCH` parts."""
    header = data[:header_len].ljust(header_len, b"\0")
    parts, at = [], header_len
    while at < len(data) and len(parts) < BATCH:
        n = int.from_bytes(data[at : at + 2], "big")
        parts.append(data[at + 2 : at + 2 + n])
        at += 2 + n
    return header, parts


# --- the worlds ---------------------------------------------------------------------------------


@functools.cache
def _placeholder_fd() -> int:
    """A descriptor for engines that need a TUN to have a virtio-net header but never read it
    (the fuzz entry points take the reads as arguments); held for the process's life."""
    return os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)


def _offload_engine(
    roles: list[str], mtu: int, base: Any, mapcache: Any, database: Any, itr: Any
) -> Any:
    """An engine with offloads (vnet TUN, UDP GSO sends: ``offloads = "gso"``, so that GSO
    bursts are checked; the plain engines send as the default does) over ``mapcache`` and
    ``database``, loaded the way the daemon loads one."""
    fast = CompiledPath(
        roles=roles,
        mtu=mtu,
        tun_fd=_placeholder_fd(),
        offloads=True,
        gso=True,
        families=itr.families if itr else (),
        own_rlocs=itr.own_rlocs if itr else (),
        nat_port=itr.nat_port if itr else None,
    )
    listener = mapcache.listener
    engine = worlds.wire_engine(fast, mapcache, database)
    mapcache.listener = listener  # the tables do not change from here on
    return engine


@functools.cache
def itr_worlds(vnet: bool) -> tuple[worlds.ItrWorld, ...]:
    """One ITR world per configuration of the unit tests (families, MTU)."""
    out = []
    for families, mtu in worlds.ITR_CONFIGS:
        base = worlds.itr_world(families, mtu)
        if vnet:
            engine = _offload_engine(
                ["itr", "etr"], mtu, base, base.mapcache, base.database, base.itr
            )
            base = worlds.ItrWorld(base.itr, engine, base.mapcache, base.database, families, mtu)
        out.append(base)
    return tuple(out)


def _warm(engine: Any, tun_kind: str) -> None:
    """Let the engine know SOURCE as an ITR (its first datagram is punted: Python remembers
    new ITRs), so that from here on what it decapsulates goes to the TUN."""
    inner = udp_packet(packed("192.0.2.99"), packed("198.51.100.20"))
    message = [(lisp_header(0x88, 1, 0) + inner, 0)]
    first, second = engine.fuzz_udp(message), engine.fuzz_udp(message)
    assert [e[0] for e in first] == ["punt"] and [e[0] for e in second] == ["tun"], (first, second)
    assert tun_kind == "plain" or second[0][1][:10] == bytes(10)


@functools.cache
def udp_engine(vnet: bool) -> Any:
    """The RTR+ETR engine of the decapsulation world (``vnet``: with offloads)."""
    world = worlds.decap_world()
    if vnet:
        engine = _offload_engine(
            ["etr", "rtr"], 1500, None, world.mapcache, world.database, world.forwarder
        )
    else:
        engine = world.both_engine
    _warm(engine, "vnet" if vnet else "plain")
    return engine


# --- what came out of the engine ----------------------------------------------------------------


@dataclass
class Sent:
    """One datagram the engine sent: its destination and the 8-byte header + inner packet."""

    fd: int
    rloc: bytes
    port: int
    ttl: int
    tos: int
    datagram: bytes

    @property
    def inner(self) -> bytes:
        return self.datagram[DATA_HEADER_LEN:]

    def as_encap(self) -> tuple[bytes, int, int, int, int, bytes]:
        """In the shape of ``Engine.encap``'s answer (what assert_same_encap compares)."""
        return self.rloc, self.port, self.fd, self.ttl, self.tos, self.datagram


@dataclass
class Events:
    """An engine's events of one call, sorted by kind (in order within each kind)."""

    punts: list[tuple[Any, ...]] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    tun: list[bytes] = field(default_factory=list)


def sort_events(events: list[tuple[Any, ...]]) -> Events:
    """Group ``fuzz_*`` events; raise Mismatch when a GSO send breaks the kernel's rules."""
    out = Events()
    for event in events:
        kind = event[0]
        if kind == "punt":
            out.punts.append(event[1:])
        elif kind == "tun":
            out.tun.append(event[1])
        else:
            check(kind == "send", f"unknown event {event!r}")
            _, fd, rloc, port, ttl, tos, seg, datagrams = event
            try:
                model.gso_datagrams(datagrams, seg)
            except AssertionError as exc:
                raise Mismatch(f"GSO send: {exc}") from None
            out.sent.extend(Sent(fd, rloc, port, ttl, tos, d) for d in datagrams)
    return out


def drop_delta(engine: Any, before: dict[str, int]) -> Counter[str]:
    """The engine's drops since ``before`` (its counters()["drops"] then)."""
    after = engine.counters()["drops"]
    return Counter({k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)})


class SentPool:
    """The datagrams sent, claimed one by one by the inputs they carry; remembers the order
    each destination got them in."""

    def __init__(self, sent: list[Sent], key: Callable[[Sent], bytes]) -> None:
        self.left: dict[bytes, list[tuple[int, Sent]]] = {}
        for position, s in enumerate(sent):
            self.left.setdefault(key(s), []).append((position, s))
        self.order: dict[tuple[int, bytes, int, int, int], list[int]] = {}

    def holds(self, bodies: list[bytes]) -> bool:
        """Whether datagrams carrying all of ``bodies`` are left to claim."""
        return all(len(self.left.get(b, ())) >= k for b, k in Counter(bodies).items())

    def claim(self, body: bytes) -> Sent | None:
        found = self.left.get(body)
        if not found:
            return None
        position, s = found.pop(0)
        self.order.setdefault((s.fd, s.rloc, s.port, s.ttl, s.tos), []).append(position)
        return s

    def finish(self) -> None:
        extra = [s for group in self.left.values() for _, s in group]
        check(not extra, f"sent what no input holds: {[s.datagram.hex() for s in extra[:2]]}")
        for dest, positions in self.order.items():
            check(positions == sorted(positions), f"datagrams to {dest} out of order")


# --- the ITR: tun and vnet ----------------------------------------------------------------------


@dataclass
class Unit:
    """What one TUN read must become: packets (one, or a super-packet's segments) to send or
    punt, or a drop; ``may_drop``: a super-packet the engine may also drop as
    tso-unsupported (it splits fewer segments on one of its two ways)."""

    packets: list[bytes]
    drop: str | None = None
    super_: tuple[int, int] | None = None  # headers' length, gso_size of a super-packet
    may_drop: bool = False
    raw: bytes = b""  # the super-packet as read


def vnet_unit(read: bytes) -> Unit:
    """The model's verdict on one read of a vnet TUN."""
    if len(read) >= model.TUN_ROOM[True]:
        return Unit([], "tun-read-truncated")
    if len(read) < model.VNET_HDR_LEN:
        return Unit([], "tun-read-short")
    header, pkt = model.Vnet.read(read), read[model.VNET_HDR_LEN :]
    kind = header.kind
    if kind not in (model.VNET_GSO_NONE, model.VNET_GSO_TCPV4, model.VNET_GSO_TCPV6):
        return Unit([], "tun-bad-vnet-header")
    if kind != model.VNET_GSO_NONE:
        if header.gso_size == 0:
            return Unit([], "tun-bad-vnet-header")
        headers = model.tcp_headers(pkt)
        if headers is None:
            return Unit([], "tso-unsupported")
        if (kind == model.VNET_GSO_TCPV4) != (headers.version == 4):
            return Unit([], "tun-bad-vnet-header")
        segments = model.segment(pkt, header.gso_size)
        assert segments is not None
        limits = model.segment_limit(headers, header.gso_size)
        if len(segments) > max(limits):
            return Unit([], "tso-unsupported")
        return Unit(
            segments,
            super_=(headers.length, header.gso_size),
            may_drop=len(segments) > min(limits),
            raw=pkt,
        )
    if header.flags & model.VNET_F_NEEDS_CSUM:
        done = model.complete_checksum(pkt, header)
        if done is None:
            return Unit([], "tun-bad-vnet-header")
        pkt = done
    return Unit([pkt])


def plain_unit(read: bytes) -> Unit:
    if len(read) >= model.TUN_ROOM[False]:
        return Unit([], "tun-read-truncated")
    return Unit([read])


def super_punt(world: worlds.ItrWorld, unit: Unit, py: Output) -> str | None:
    """Why the engine may leave a super-packet's segments to Python although Python
    encapsulates them: it decides once, on the super-packet as read, so a DF super-packet
    whose full segment does not fit the MTU goes to Python whole ("super-mtu"), and so does
    one whose own IP length field disagrees with its size ("super-length": the kernel never
    makes one; its segments, rebuilt with their own lengths, are fine)."""
    if unit.super_ is None or type(py) is not Encap:
        return None
    if parse_inner(unit.raw) is None:
        return "super-length"
    flow = parse_inner(unit.packets[0])
    overhead = 36 if py.rloc.version == 4 else 56
    hdrs, gso = unit.super_
    if flow is not None and flow.dont_fragment and hdrs + gso > world.mtu - overhead:
        return "super-mtu"
    return None


def check_itr_batch(
    world: worlds.ItrWorld,
    units: list[Unit],
    events: Events,
    drops: Counter[str],
    outcomes: Counter[str],
) -> None:
    """Every unit (a read: one packet, or a super-packet's segments) sent whole as Python
    encapsulates it or punted whole for a reason, in order; drops exactly the model's.

    The decision is matched per unit, not per packet: two reads can hold byte-identical
    packets (a super-packet and a copy with a broken length field segment alike) that the
    engine decides differently, each on its own read."""
    pool = SentPool(events.sent, lambda s: s.inner)
    punts = [p[0] for p in events.punts]
    at, wanted, optional = 0, Counter[str](), Counter[str]()
    for unit in units:
        if unit.drop is not None:
            wanted[unit.drop] += 1
            outcomes["drop:" + unit.drop] += 1
            continue
        n = len(unit.packets)
        can_punt = punts[at : at + n] == unit.packets
        can_send = pool.holds(unit.packets)
        if not can_punt and not can_send:
            check(unit.may_drop, f"packet neither sent nor punted: {unit.packets[0].hex()}")
            optional["tso-unsupported"] += 1
            outcomes["drop:tso-unsupported"] += 1
            continue
        decided = [(pkt, world.itr.handle(pkt)) for pkt in unit.packets]
        reasons = [_itr_punt_reason(world, unit, pkt, py) for pkt, py in decided]
        if can_punt and (all(reasons) or not can_send):
            for (pkt, _), why in zip(decided, reasons, strict=True):
                check(why, f"C punts a packet Python encapsulates: {pkt.hex()}")
                outcomes[str(why)] += 1
            at += n
            continue
        for pkt, py in decided:
            sent = pool.claim(pkt)
            assert sent is not None  # pool.holds said so
            flow = parse_inner(pkt)
            check(flow is not None and type(py) is Encap, f"C sends, Python says {py}")
            assert flow is not None
            iid = world.itr.instance_for_source(flow.src)
            try:
                worlds.assert_same_encap(sent.as_encap(), py, iid)  # type: ignore[arg-type]
            except AssertionError as exc:
                raise Mismatch(f"encapsulation differs: {exc}") from None
            outcomes["encap"] += 1
    check(at == len(punts), f"punted what no input holds: {punts[at : at + 1]}")
    pool.finish()
    check(not events.tun, "an ITR wrote to its TUN")
    extra = drops - wanted
    check(extra <= optional and wanted <= drops, f"drops {dict(drops)}, model {dict(wanted)}")


def _itr_punt_reason(world: worlds.ItrWorld, unit: Unit, pkt: bytes, py: Output) -> str | None:
    """Why the engine may leave ``pkt`` to Python: Python does not encapsulate it ("punt"),
    or a reason the design names; None when the engine should have sent it."""
    if type(py) is not Encap:
        return "punt"
    why = worlds.documented_itr_punt(world, pkt) or super_punt(world, unit, py)
    return "punt-" + why if why else None


def run_tun(data: bytes, vnet: bool, outcomes: Counter[str]) -> None:
    header, reads = unframe(data, HEADER_BYTES["vnet" if vnet else "tun"])
    if not reads:
        return
    world = itr_worlds(vnet)[header[0] % len(worlds.ITR_CONFIGS)]
    engine = world.engine
    before = engine.counters()["drops"]
    events = sort_events(engine.fuzz_tun(reads))
    units = [vnet_unit(r) if vnet else plain_unit(r) for r in reads]
    check_itr_batch(world, units, events, drop_delta(engine, before), outcomes)


# --- the ETR / RTR: udp and gro -----------------------------------------------------------------


def punted_forms(payload: bytes, ttl: int, tos: int) -> set[bytes]:
    """What a punted datagram may look like: as received, or with the decapsulation fix
    (TTL, ECN) already applied to its inner packet (the RTR applies it before it knows it
    will punt; it is idempotent, so Python applying it again changes nothing)."""
    forms = {payload}
    inner = payload[DATA_HEADER_LEN:]
    if len(payload) > DATA_HEADER_LEN and inner_destination(inner) is not None:
        fixed = fix_inner_on_decap(inner, ttl, tos)
        if fixed is not None:
            forms.add(payload[:DATA_HEADER_LEN] + bytes(fixed))
    return forms


def check_decap_batch(
    messages: list[tuple[bytes, int]],
    ttl: int,
    tos: int,
    vnet: bool,
    events: Events,
    drops: Counter[str],
    outcomes: Counter[str],
) -> None:
    """Every datagram decapsulated, re-encapsulated or punted as the daemon's dispatch says,
    TUN writes (merged or not) standing for Python's packets in order."""
    world = worlds.decap_world()
    pool = SentPool(events.sent, lambda s: s.inner)
    written: list[tuple[bytes, bool]] = []
    for data in events.tun:
        if vnet:
            try:
                packets, merged = model.expand_tun_write(data)
            except AssertionError as exc:
                raise Mismatch(f"TUN write: {exc}: {data[:80].hex()}") from None
            written += [(p, merged) for p in packets]
            outcomes["tun-merged" if merged else "tun"] += len(packets)
        else:
            written.append((data, False))
            outcomes["tun"] += 1
    punts, at, w = events.punts, 0, 0
    wanted = Counter[str]()
    for message, seg in messages:
        if len(message) > model.UDP_ROOM:
            datagrams = len(model.split_message(message[: model.UDP_ROOM], seg))
            wanted["udp-read-truncated"] += datagrams
            continue
        for d in model.split_message(message, seg):
            py = worlds.node_rtr_etr(world, d, ttl, tos)
            if at < len(punts) and punts[at][0] in punted_forms(d, ttl, tos):
                check(punts[at][1:3] == (ttl, tos), "a punt with another TTL/TOS")
                at += 1
                if type(py) is ToTun:
                    check(worlds.is_data_trace(d), f"C punts what Python decapsulates: {d.hex()}")
                    outcomes["punt-trace"] += 1
                elif type(py) is Encap:
                    why = worlds.rtr_record_punt(world, d)
                    check(why, f"C punts what the RTR re-encapsulates: {d.hex()}")
                    outcomes["punt-" + str(why)] += 1
                else:
                    check(type(py) in (Drop, Miss), f"Python says {py}")
                    outcomes["punt"] += 1
                continue
            if type(py) is ToTun:
                check(w < len(written), f"Python decapsulates, C did nothing: {d.hex()}")
                got, merged = written[w]
                w += 1
                expected = bytes(py.packet)
                if merged:
                    got, expected = model.without_ipv4_id(got), model.without_ipv4_id(expected)
                check(got == expected, f"TUN packet differs: {got.hex()} != {expected.hex()}")
                continue
            header = read_data_header(d)
            sent = pool.claim(_reencapsulated(d, ttl, tos))
            check(sent is not None, f"datagram neither written, sent nor punted: {d.hex()}")
            assert sent is not None and header is not None
            try:
                worlds.assert_same_encap(sent.as_encap(), py, header[0])
            except AssertionError as exc:
                raise Mismatch(f"re-encapsulation differs: {exc}") from None
            flow = parse_inner(sent.inner)
            check(flow is not None and sent.ttl == flow.ttl, "outer TTL is not the inner one")
            outcomes["reencap"] += 1
    if at != len(punts):
        raise Mismatch(f"punted what no input holds: {punts[at][0][:60].hex()}")
    if w != len(written):
        raise Mismatch(f"wrote what no input holds: {written[w][0][:60].hex()}")
    pool.finish()
    check(drops == wanted, f"drops {dict(drops)}, model {dict(wanted)}")


def _reencapsulated(datagram: bytes, ttl: int, tos: int) -> bytes:
    """The inner packet of ``datagram`` as the RTR sends it on: decapsulation fix, TTL - 1
    (the key the datagram sent for it is claimed by)."""
    from lispd.dataplane.inner import decrement_ttl

    fixed = fix_inner_on_decap(datagram[DATA_HEADER_LEN:], ttl, tos)
    lowered = decrement_ttl(fixed) if fixed is not None else None
    return bytes(lowered) if lowered is not None else b"-"


def run_udp(data: bytes, vnet: bool, outcomes: Counter[str]) -> None:
    header, parts = unframe(data, HEADER_BYTES["gro" if vnet else "udp"])
    if not parts:
        return
    ttl, tos = header[0], header[1]
    if vnet:
        messages = [(p[2:], int.from_bytes(p[:2], "big")) for p in parts]
    else:
        messages = [(p, 0) for p in parts]
    engine = udp_engine(vnet)
    before = engine.counters()["drops"]
    events = sort_events(engine.fuzz_udp(messages, ttl, tos, SOURCE, 4341))
    for punt in events.punts:
        check(punt[3:] == ("192.0.2.1", 4341), f"punted with source {punt[3:]}")
    check_decap_batch(messages, ttl, tos, vnet, events, drop_delta(engine, before), outcomes)


# --- the tables ---------------------------------------------------------------------------------


class Draw:
    """Values drawn from the input's bytes (zeros once they run out)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def left(self) -> int:
        return len(self.data) - self.at

    def int(self, size: int) -> int:
        chunk = self.data[self.at : self.at + size]
        self.at += size
        return int.from_bytes(chunk.ljust(size, b"\0"), "big")

    def bytes(self, size: int) -> bytes:
        chunk = self.data[self.at : self.at + size]
        self.at += size
        return chunk.ljust(size, b"\0")

    def pick(self, options: tuple[Any, ...]) -> Any:
        return options[self.int(1) % len(options)]


IIDS = (0, 0, 5, 7, 9, 0xFFFFFF, 0xFFFFFE, 0x1000000, -1, 2**32, 2**64 + 5, "0", None, 3.0)
PLENS = (0, 8, 16, 24, 32, 48, 64, 128, -1, 33, 129, 200, 2**40, "24", None)


def _iid(draw: Draw) -> Any:
    choice = draw.pick(IIDS)
    return draw.int(3) % 16 if choice == 0 and draw.int(1) & 1 else choice


def _prefix(draw: Draw) -> Any:
    size = draw.pick((4, 4, 16, 16, 4, 16, 0, 3, 5, 15, 17, 32))
    value = draw.bytes(size)
    return draw.pick((value, value, value, bytearray(value), memoryview(value), "10.0.0.0"))


def _plen(draw: Draw, prefix: Any) -> Any:
    choice = draw.pick(PLENS)
    if choice == 0 and isinstance(prefix, bytes):
        return draw.int(1) % (len(prefix) * 8 + 2)
    return choice


def _rloc(draw: Draw) -> Any:
    """One RLOC argument: mostly a valid (address, port, weight, via_data) tuple."""
    kind = draw.int(1) % 10
    address = draw.bytes(draw.pick((4, 16, 4, 16, 0, 5)))
    port = draw.pick((4341, 4342, 1, 65535, 0, 65536, -1, 2**40, "4341"))
    weight = draw.pick((0, 1, 100, 255, 256, -1, 2**33))
    via = draw.pick((False, True, 0, 1, "x", None))
    if kind == 0:
        return [address, port, weight, via]  # a list, not a tuple
    if kind == 1:
        return (address, port, weight)
    return (address, port, weight, via)


def _rlocs(draw: Draw) -> Any:
    shape = draw.int(1) % 8
    if shape == 0:
        return None
    if shape == 1:
        return draw.pick(("rlocs", "", 5, [1, 2], {}, (None,)))
    count = draw.pick((1, 1, 2, 3, 0, 8, 255, 256, 300))
    if count > 8:  # the limit (255): many copies of one, another one somewhere
        out = [_rloc(draw)] * count
        out[draw.int(2) % count] = _rloc(draw)
    else:
        out = [_rloc(draw) for _ in range(count)]
    return out if draw.int(1) & 1 else tuple(out)


def run_tables(data: bytes, engine: Any, outcomes: Counter[str], reader: Any | None = None) -> None:
    """Hostile table operations on a persistent engine; the model restarts with each input
    (the input begins by clearing both tables).  ``reader``: an engine reading ``engine``'s
    shared table, which must answer every lookup as it does."""
    draw, table = Draw(data), model.TableModel()
    engine.map_clear()
    engine.db_clear()
    probes: list[tuple[int, bytes]] = []
    for _ in range(24):
        if draw.left() <= 0:
            break
        op = draw.int(1) % 9
        iid, prefix = _iid(draw), _prefix(draw)
        plen = _plen(draw, prefix)
        if _lookup_ok(iid, prefix):
            probes.append((iid, bytes(prefix)))
        if op in (0, 1):
            rlocs = _rlocs(draw)
            accepted = table.map_set(iid, prefix, plen, rlocs)
            _expect(engine.map_set, (iid, prefix, plen, rlocs), accepted, "map_set", outcomes)
        elif op in (2, 3):
            name = "map_remove" if op == 2 else "db_remove"
            found = table.remove("map" if op == 2 else "db", iid, prefix, plen)
            got = _expect(
                getattr(engine, name), (iid, prefix, plen), found is not None, name, outcomes
            )
            check(found is None or got is found, f"{name} said {got}, model {found}")
        elif op == 4:
            accepted = table.db_set(iid, prefix, plen)
            _expect(engine.db_set, (iid, prefix, plen), accepted, "db_set", outcomes)
        elif op == 5:
            _bulk(draw, engine, table, probes)
            outcomes["bulk"] += 1
        elif op == 6 and draw.int(1) % 4 == 0:
            engine.map_clear()
            table.clear_map()
            outcomes["map_clear"] += 1
        elif op == 7:
            _expect(engine.lookup, (iid, prefix), _lookup_ok(iid, prefix), "lookup", outcomes)
        else:
            _expect(engine.map_set, (iid, prefix), False, "map_set-arity", outcomes)
        check(len(engine) == len(table.map), f"{len(engine)} records, model {len(table.map)}")
        if reader is not None:
            check(len(reader) == len(engine), f"a reader sees {len(reader)} of {len(engine)}")
    for iid, address in probes[-32:]:
        got = engine.lookup(iid, address)
        want = table.lookup(iid, address)
        check(got == want, f"lookup({iid}, {address.hex()}) = {got}, model {want}")
        outcomes["lookup"] += 1
        if reader is not None:
            seen = reader.lookup(iid, address)
            check(seen == want, f"reader lookup({iid}, {address.hex()}) = {seen}, model {want}")
            outcomes["reader-lookup"] += 1
    if reader is not None and draw.int(1) % 8 == 0:
        try:
            reader.map_set(0, bytes(4), 0, None)
        except RuntimeError:
            outcomes["reader-refused"] += 1
        else:
            raise Mismatch("a reader of the shared table changed it")
    check(engine.memory() > 0 or not table.map, "memory() of a table holding records")
    if reader is not None and draw.left() > 0 and draw.int(1) % 4 == 0:
        _garbage_region(draw, outcomes)


# maptable.c's header: the sequence, then the published table (slots, mask, buckets, bmask,
# scopes, nscopes, records, the allocated end), then page 0 ends and the allocations begin.
TABLE_SEQ, TABLE_PUBLISHED, TABLE_HEADER = 40, 48, 4096


def _garbage_region(draw: Draw, outcomes: Counter[str]) -> None:
    """A reader over a shared table a broken writer scribbled on (input bytes over its arrays,
    records and published offsets, the sequence left even so that the reader believes them):
    every lookup must end without a fault, whatever it answers."""
    size = 1 << 20
    writer = _accel.Engine(itr=True, shared=True, table_size=size)
    reader = _accel.Engine(itr=True, table_fd=writer.table_fd())
    rng = random.Random(draw.int(4))
    probes = []
    for _ in range(rng.randrange(1, 300)):
        iid, address = rng.choice((0, 1)), rng.randbytes(rng.choice((4, 16)))
        record = [(rng.randbytes(4), 4341, 1, False)] * rng.randrange(0, 4)
        writer.map_set(iid, address, rng.randrange(len(address) * 8 + 1), record or None)
        probes.append((iid, address))
    allocated = max(8, writer.table()["allocated"])
    with mmap.mmap(writer.table_fd(), size) as region:
        for _ in range(draw.int(1) % 24 + 1):
            where = draw.int(3)
            if where % 5 == 0:  # a published field
                at = TABLE_PUBLISHED + where // 5 % 8 * 8
            else:
                at = TABLE_HEADER + where % allocated
            region[at : at + 8] = draw.bytes(8)
        seq = int.from_bytes(region[TABLE_SEQ : TABLE_SEQ + 8], "little")
        region[TABLE_SEQ : TABLE_SEQ + 8] = ((seq + 2) & ~1).to_bytes(8, "little")
        for iid, address in probes[:32]:
            try:
                got = reader.lookup(iid, address)
            except BlockingIOError:
                outcomes["reader-garbage-busy"] += 1
                continue
            check(got is None or len(got) <= 255, f"a reader over garbage answered {got!r}")
        check(len(reader) >= 0, "a reader over garbage counts records")
    outcomes["reader-garbage"] += 1  # the writer's own table is garbage now: dropped


def _lookup_ok(iid: Any, address: Any) -> bool:
    return (
        type(iid) is int
        and 0 <= iid <= 0xFFFFFF
        and isinstance(address, bytes | bytearray | memoryview)
        and len(address) in (4, 16)
    )


def _expect(
    call: Callable[..., Any],
    args: tuple[Any, ...],
    accepted: bool,
    name: str,
    outcomes: Counter[str],
) -> Any:
    """``call(*args)`` must succeed exactly when the model accepts it, and refuse it with
    one of :data:`REFUSALS` otherwise."""
    try:
        result = call(*args)
    except REFUSALS as exc:
        if accepted:
            raise Mismatch(f"{name}{_show(args)} refused ({exc!r}), the model accepts it") from None
        outcomes[name + "-refused"] += 1
        return None
    if not accepted:
        raise Mismatch(f"{name}{_show(args)} accepted, the model refuses it")
    outcomes[name] += 1
    return result


def _show(args: tuple[Any, ...]) -> str:
    return "(" + ", ".join(repr(a)[:60] for a in args) + ")"


def _bulk(
    draw: Draw, engine: Any, table: model.TableModel, probes: list[tuple[int, bytes]]
) -> None:
    """Many valid prefixes at once (the table grows, rehashes, fills its buckets)."""
    rng = random.Random(draw.int(4))
    for _ in range(draw.int(1) % 4 * 4):
        family = rng.choice((4, 6))
        address = rng.randbytes(4 if family == 4 else 16)
        plen = rng.randrange(0, len(address) * 8 + 1)
        iid = rng.choice((0, 1, 5, 0xFFFFFF))
        record = [
            (
                rng.randbytes(rng.choice((4, 16))),
                rng.randrange(1, 65536),
                rng.randrange(256),
                rng.random() < 0.2,
            )
            for _ in range(rng.randrange(0, 4))
        ]
        rlocs = record if record or rng.random() < 0.5 else None
        assert table.map_set(iid, address, plen, rlocs)
        engine.map_set(iid, address, plen, rlocs)
        if rng.random() < 0.3:
            assert table.db_set(iid, address, plen)
            engine.db_set(iid, address, plen)
        probes.append((iid, rng.randbytes(len(address))))
        probes.append((iid, address))


@functools.cache
def tables_engine() -> Any:
    """The writer of a shared table (64 MiB: inputs never fill it), or a private table
    where the region cannot be made."""
    return _accel.Engine(itr=True, etr=True, rtr=True, shared=True, table_size=64 << 20)


@functools.cache
def tables_reader() -> Any | None:
    """An engine reading :func:`tables_engine`'s table as a worker does, or None."""
    fd = tables_engine().table_fd()
    return _accel.Engine(itr=True, table_fd=fd) if fd >= 0 else None


# --- the module functions -----------------------------------------------------------------------


def run_helpers(data: bytes, outcomes: Counter[str]) -> None:
    header, parts = unframe(data, HEADER_BYTES["helpers"])
    which = header[0] % 4
    if not parts:
        return
    if which == 0:
        for pkt in parts:
            flow = parse_inner(pkt)
            want = None if flow is None else flow_hash(flow)
            check(_accel.flow_hash(pkt) == want, f"flow_hash({pkt.hex()})")
            outcomes["flow_hash"] += 1
    elif which == 1:
        vh, pkt = parts[0][:10], parts[0][10:]
        want = model.complete_checksum(pkt, model.Vnet.read(vh)) if len(vh) == 10 else None
        try:
            got = _accel.complete_checksum(vh, pkt)
        except ValueError:
            got = None
        check(got == want, f"complete_checksum({vh.hex()}, {pkt.hex()})")
        outcomes["complete_checksum"] += 1
    elif which == 2:
        vh, pkt = parts[0][:10], parts[0][10:]
        want_segments: list[bytes] | None = None
        if len(vh) == 10:
            gso = model.Vnet.read(vh).gso_size
            if gso and len(pkt) // gso + 1 <= model.FP_SEG_MAX:
                want_segments = model.segment(pkt, gso)
        try:
            got_segments = _accel.segment(vh, pkt)
        except ValueError:
            got_segments = None
        check(got_segments == want_segments, f"segment({vh.hex()}, {pkt.hex()[:120]})")
        outcomes["segment"] += 1
    else:
        merged = _accel.merge(parts)
        expanded: list[bytes] = []
        masked: list[bool] = []
        for out in merged:
            try:
                packets, was_merged = model.expand_tun_write(out)
            except AssertionError as exc:
                raise Mismatch(f"merge output: {exc}") from None
            expanded += packets
            masked += [was_merged] * len(packets)
        check(len(expanded) == len(parts), f"merge: {len(parts)} packets in, {len(expanded)} out")
        for got, want, was_merged in zip(expanded, parts, masked, strict=True):
            if was_merged:
                got, want = model.without_ipv4_id(got), model.without_ipv4_id(want)
            check(got == want, f"merge changed a packet: {want.hex()[:80]}")
        outcomes["merge"] += 1


# --- one input ----------------------------------------------------------------------------------


def run_one(entry: str, data: bytes, outcomes: Counter[str]) -> None:
    """One input at one entry point; raises Mismatch when a check fails."""
    if entry == "tun":
        run_tun(data, False, outcomes)
    elif entry == "vnet":
        run_tun(data, True, outcomes)
    elif entry == "udp":
        run_udp(data, False, outcomes)
    elif entry == "gro":
        run_udp(data, True, outcomes)
    elif entry == "tables":
        run_tables(data, tables_engine(), outcomes, tables_reader())
    elif entry == "helpers":
        run_helpers(data, outcomes)
    else:
        raise ValueError(f"unknown entry point {entry!r}")


# --- seeds --------------------------------------------------------------------------------------


def _packets_between(
    sources: dict[int, list[str]],
    destinations: dict[int, list[str]],
    sizes: tuple[int, ...] = (0, 64, 1200, 1460),
) -> list[bytes]:
    """Well-formed packets of every kind from each source to each destination."""
    out = []
    for version in (4, 6):
        for i, src_text in enumerate(dict.fromkeys(sources[version])):
            for j, dst_text in enumerate(destinations[version]):
                src, dst = packed(src_text), packed(dst_text)
                size = sizes[(i + j) % len(sizes)]
                body = bytes((k * 7 + j) & 0xFF for k in range(size))
                ip4 = {"df": bool(j & 1), "ttl": 1 + (i * 37 + j) % 255, "tos": (j * 13) & 0xFF}
                ip = ip4 if version == 4 else {"hlim": 64, "tclass": (j * 13) & 0xFF}
                out.append(udp_packet(src, dst, 1000 + j, 2000 + i, body, **ip))
                out.append(tcp_packet(src, dst, ip, sport=40000 + i, payload=body[:100]))
                out.append(udp_packet(src, dst, 5000, 2434, b"trace?"))  # LISP-Trace port
                icmp = 1 if version == 4 else 58
                out.append(ip_packet(src, dst, icmp, b"\x08\x00\x00\x00" + body[:20], **ip))
                if version == 4:
                    out.append(ip_packet(src, dst, PROTO_UDP, body[:40], mf=True, ident=j))
    return out


def _partial(pkt: bytes, proto: int) -> bytes:
    """``pkt`` as the TUN hands over a packet whose transport checksum it left partial."""
    version = pkt[0] >> 4
    l3 = (pkt[0] & 0x0F) * 4 if version == 4 else 40
    src, dst = (pkt[12:16], pkt[16:20]) if version == 4 else (pkt[8:24], pkt[24:40])
    offset = 16 if proto == PROTO_TCP else 6
    partial = ~internet_checksum(pseudo_header(src, dst, proto, len(pkt) - l3)) & 0xFFFF
    at = l3 + offset
    body = pkt[:at] + partial.to_bytes(2, "big") + pkt[at + 2 :]
    return vnet_header(model.VNET_F_NEEDS_CSUM, 0, 0, 0, l3, offset) + body


def _super(src: str, dst: str, size: int, gso: int, **tcp: Any) -> bytes:
    """A TCP super-packet read from a vnet TUN (header, partial checksum)."""
    payload = bytes((k * 31) & 0xFF for k in range(size))
    pkt = tcp_packet(packed(src), packed(dst), payload=payload, **tcp)
    version = pkt[0] >> 4
    l3 = 20 if version == 4 else 40
    hdrs = l3 + (pkt[l3 + 12] >> 4) * 4
    kind = model.VNET_GSO_TCPV4 if version == 4 else model.VNET_GSO_TCPV6
    read = _partial(pkt, PROTO_TCP)
    return vnet_header(model.VNET_F_NEEDS_CSUM, kind, hdrs, gso, l3, 16) + read[10:]


@functools.cache
def seeds(entry: str) -> tuple[bytes, ...]:
    """Inputs (framed) that reach deep: the unit tests' worlds' traffic, each kind once."""
    if entry in ("tun", "vnet"):
        packets = _packets_between(worlds.SOURCES, worlds.DESTINATIONS)
        out = [frame(bytes([k % 3]), [p]) for k, p in enumerate(packets)]
        if entry == "vnet":
            out = [frame(bytes([k % 3]), [bytes(10) + p]) for k, p in enumerate(packets)]
            for k, p in enumerate(packets[::3]):
                proto = p[9] if p[0] >> 4 == 4 else p[6]
                if proto in (PROTO_TCP, PROTO_UDP):
                    out.append(frame(bytes([k % 3]), [_partial(p, proto)]))
            for k, (src, dst) in enumerate(
                [
                    ("198.51.100.10", "203.0.113.1"),
                    ("198.51.100.10", "203.0.113.2"),
                    ("2001:db8:1::10", "2001:db8:a::1"),
                    ("198.51.100.10", "192.0.2.77"),
                    ("2001:db8:1::10", "2001:db8:b::1"),
                ]
            ):
                for size, gso in ((3000, 1448), (20000, 1400), (1000, 1448), (64000, 1200)):
                    options = timestamp_option(k, size) if size % 2 else b""
                    flags = ACK | (PSH if k & 1 else 0) | (FIN if size == 1000 else 0)
                    read = _super(src, dst, size, gso, options=options, flags=flags)
                    out.append(frame(bytes([k % 3]), [read]))
        return tuple(out)
    if entry in ("udp", "gro"):
        inner = _packets_between(worlds.DATAGRAM_SOURCES, worlds.DATAGRAM_DESTINATIONS)
        out = []
        for k, p in enumerate(inner):
            flags = (0x88, 0x88, 0x88, 0x08, 0x80, 0x8A, 0x00)[k % 7]
            iid = worlds.served_iid(p) if k % 5 else (0, 5, 9, 0xFFFFFF)[k % 4]
            datagram = lisp_header(flags, k, iid) + p
            ttl, tos = (64, 1, 0, 255, 2)[k % 5], (0, 3, 2, 1)[k % 4]
            part = datagram if entry == "udp" else bytes(2) + datagram
            out.append(frame(bytes([ttl, tos]), [part]))
        if entry == "gro":
            out += _gro_seeds()
        return tuple(out)
    if entry == "tables":
        rng = random.Random(7)
        return tuple(rng.randbytes(n) for n in (40, 120, 300, 600, 1200))
    if entry == "helpers":
        packets = _packets_between(worlds.SOURCES, worlds.DESTINATIONS)[:40]
        supers = [_super("198.51.100.10", "203.0.113.1", n, 1000) for n in (500, 3000, 9000)]
        out = [frame(b"\0", packets[:8])]
        out += [frame(b"\1", [_partial(p, PROTO_UDP)]) for p in packets if p[9:10] == b"\x11"]
        out += [frame(b"\2", [s]) for s in supers]
        flows = [_flow("203.0.113.9", "198.51.100.20", [1000] * n) for n in (2, 5, 9)]
        out += [frame(b"\3", f) for f in flows]
        return tuple(out)
    raise ValueError(f"unknown entry point {entry!r}")


def _flow(src: str, dst: str, sizes: list[int], seq: int = 1_000_000, **ip: Any) -> list[bytes]:
    """Consecutive TCP segments of one flow (valid checksums: mergeable)."""
    out, at = [], seq
    for k, size in enumerate(sizes):
        flags = ACK | (PSH if k == len(sizes) - 1 else 0)
        fields = {**ip, "ident": k} if ":" not in src else ip
        out.append(
            tcp_packet(
                packed(src),
                packed(dst),
                fields,
                seq=at,
                flags=flags,
                payload=bytes((at + i) & 0xFF for i in range(size)),
            )
        )
        at += size
    return out


def _gro_seeds() -> list[bytes]:
    """Coalesced messages: TCP segments of one flow to a local EID (merged at the TUN) or
    to a mapped one (re-encapsulated), equal-sized UDP datagrams, a short last one."""
    out = []
    cases = [
        ("192.0.2.99", "198.51.100.20", 0, [1000] * 6, {}),
        ("192.0.2.99", "198.51.100.20", 0, [1200] * 3 + [300], {"tos": 2}),
        ("2001:db8:99::1", "2001:db8:1::20", 0, [1000] * 4, {}),
        ("192.0.2.99", "203.0.113.10", 0, [1000] * 4, {}),
        ("2001:db8:99::1", "2001:db8:5::20", 5, [800] * 5, {}),
    ]
    for k, (src, dst, iid, sizes, ip) in enumerate(cases):
        datagrams = [lisp_header(0x88, k, iid) + s for s in _flow(src, dst, sizes, **ip)]
        seg = len(datagrams[0])
        out.append(frame(bytes([64, 0]), [seg.to_bytes(2, "big") + b"".join(datagrams)]))
        split = [
            seg.to_bytes(2, "big") + b"".join(datagrams[:2]),
            seg.to_bytes(2, "big") + b"".join(datagrams[2:]),
        ]
        out.append(frame(bytes([64, 0]), split))
    udp = [
        lisp_header(0x88, 9, 0)
        + udp_packet(packed("192.0.2.99"), packed("198.51.100.20"), 9, 9, bytes(200))
        for _ in range(5)
    ]
    out.append(frame(bytes([64, 1]), [len(udp[0]).to_bytes(2, "big") + b"".join(udp)]))
    return out


# --- mutation -----------------------------------------------------------------------------------


REPAIR_AT = {"tun": 0, "vnet": 10, "udp": 8, "gro": 8, "helpers": 0}


def mutated(entry: str, rng: random.Random) -> bytes:
    """A seed of ``entry`` with 1-5 mutations, structure-aware most of the time: a part
    mutated (and its IP lengths and checksum repaired half the time so it gets past the first
    checks), parts dropped, doubled, taken from another seed; sometimes plain random bytes."""
    pool = seeds(entry)
    data = rng.choice(pool)
    roll = rng.random()
    if roll < 0.03:
        return rng.randbytes(rng.randrange(0, 200))
    if entry == "tables" or roll < 0.13:
        return mutate(data, rng, pool, rng.randint(1, 5))
    hlen = HEADER_BYTES[entry]
    header, parts = unframe(data, hlen)
    header = bytearray(header)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(10)
        if op == 0 and header:
            header[rng.randrange(hlen)] = rng.choice((0, 1, 2, 63, 64, 255, rng.randrange(256)))
        elif op == 1 and len(parts) < BATCH:
            parts.append(rng.choice(unframe(rng.choice(pool), hlen)[1] or [b""]))
        elif op == 2 and len(parts) > 1:
            del parts[rng.randrange(len(parts))]
        elif op == 3 and parts and len(parts) < BATCH:
            parts.insert(rng.randrange(len(parts)), rng.choice(parts))
        elif parts:
            k = rng.randrange(len(parts))
            parts[k] = _mutate_part(entry, parts[k], rng, pool)
    return frame(bytes(header), parts)


def _mutate_part(entry: str, part: bytes, rng: random.Random, pool: tuple[bytes, ...]) -> bytes:
    repair = REPAIR_AT[entry]
    if entry == "gro":
        seg, message = int.from_bytes(part[:2], "big"), part[2:]
        if rng.random() < 0.3:
            seg = rng.choice((0, 1, seg - 1, seg + 1, len(message), 65535, rng.randrange(2000)))
        elif seg and rng.random() < 0.7:  # one datagram of the message, the others aligned
            pieces = model.split_message(message, seg)
            k = rng.randrange(len(pieces))
            piece = mutate(pieces[k], rng, pool, rng.randint(1, 3))
            pieces[k] = fix_ip(piece, repair) if rng.random() < 0.5 else piece
            message = b"".join(pieces)
        else:
            message = mutate(message, rng, pool, rng.randint(1, 5))
        return max(0, min(seg, 0xFFFF)).to_bytes(2, "big") + message
    out = mutate(part, rng, pool, rng.randint(1, 5))
    if entry == "vnet" and rng.random() < 0.3:  # a header field the kernel fills
        field_at = rng.choice((0, 1, 4, 6, 8))
        width = 1 if field_at < 2 else 2
        value = rng.choice((0, 1, 4, 5, 0x81, 0x84, 6, 16, 20, 40, 536, 1448, 65535))
        out = (
            out[:field_at]
            + (value & (0xFF if width == 1 else 0xFFFF)).to_bytes(width, "little")
            + out[field_at + width :]
        )
    return fix_ip(out, repair) if rng.random() < 0.5 else out


# --- runs ---------------------------------------------------------------------------------------


@dataclass
class Failure:
    entry: str
    data: bytes
    message: str

    def report(self) -> str:
        return (
            f"  [{self.entry}] {self.message[:400]}\n"
            f"    replay: python -m tests.fuzz.engine --replay {self.entry} {self.data.hex()}"
        )


@dataclass
class Result:
    entry: str
    inputs: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    failed: int = 0


def run_inputs(entry: str, inputs: Iterator[bytes]) -> Result:
    """Run every input of ``inputs`` at ``entry``."""
    result = Result(entry)
    started = time.process_time()
    for data in inputs:
        result.inputs += 1
        try:
            run_one(entry, data, result.outcomes)
        except Mismatch as exc:
            result.failed += 1
            if len(result.failures) < 20:
                result.failures.append(Failure(entry, data, str(exc)))
    result.seconds = time.process_time() - started
    return result


def stream(entry: str, seed: int, count: int) -> Iterator[bytes]:
    """``count`` inputs: the seeds first, then mutants from ``random.Random(seed)``."""
    rng = random.Random(f"{entry}:{seed}")
    pool = seeds(entry)
    for k in range(count):
        yield pool[k] if k < len(pool) and seed % 1000 == 0 else mutated(entry, rng)


def run_entry(entry: str, seed: int, count: int) -> Result:
    return run_inputs(entry, stream(entry, seed, count))


def merge(total: Result, part: Result) -> None:
    total.inputs += part.inputs
    total.seconds += part.seconds
    total.outcomes.update(part.outcomes)
    total.failed += part.failed
    total.failures += part.failures[: max(0, 20 - len(total.failures))]


def run_all(entries: list[str], count: int, seed: int, jobs: int, chunk: int) -> list[Result]:
    """``count`` inputs per entry point, cut into chunks run by ``jobs`` processes."""
    tasks = [
        (e, seed * 1000 + k, min(chunk, count - k * chunk))
        for e in entries
        for k in range(-(-count // chunk))
    ]
    totals = {e: Result(e) for e in entries}
    if jobs <= 1:
        for entry, task_seed, n in tasks:
            merge(totals[entry], run_entry(entry, task_seed, n))
    else:
        with ProcessPoolExecutor(jobs) as pool:
            futures = [pool.submit(run_entry, *task) for task in tasks]
            for future in as_completed(futures):
                part = future.result()
                merge(totals[part.entry], part)
    return list(totals.values())


def report(results: list[Result], wall: float) -> int:
    print(f"== accel {_accel.__file__}")
    failed = 0
    for r in results:
        rate = r.inputs / r.seconds if r.seconds else 0.0
        top = ", ".join(f"{k} {v:,}" for k, v in r.outcomes.most_common(10))
        print(f"== {r.entry}: {r.inputs:,} inputs, {r.seconds:,.1f} CPU s ({rate:,.0f}/s); {top}")
        for failure in r.failures[:5]:
            print(failure.report())
        if r.failed:
            print(f"   {r.failed:,} inputs FAILED")
        failed += r.failed
    print(f"== wall time {wall:,.1f} s, {sum(r.inputs for r in results):,} inputs in all")
    if failed:
        print(f"== FAILURES: {failed:,}")
        return 1
    print("== no failures: every check held")
    return 0


def run_atheris(entry: str, argv: list[str]) -> int:
    """libFuzzer (atheris) drives ``entry`` from the seeds, with coverage of the Python code
    (the reference path and these checks, instrumented here).  The C extension is not
    instrumented (that needs clang; this machine builds it with gcc): atheris sees the engine
    only through what its answers make the checks do.  Run it under ``tests.fuzz.sanitizer
    run`` to have ASan and UBSan watch the engine meanwhile."""
    import atheris  # type: ignore[import-not-found]

    def one_input(data: bytes) -> None:
        run_one(entry, data, Counter())

    corpus = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"lispd-engine-corpus-{entry}")
    os.makedirs(corpus, exist_ok=True)
    for k, data in enumerate(seeds(entry)):
        with open(os.path.join(corpus, f"seed-{k}"), "wb") as f:
            f.write(data)
    run_one(entry, seeds(entry)[0], Counter())  # build the worlds before instrumenting
    covered = ("lispd.", "tests.fuzz.engine", "tests.unit.test_fastpath_compiled")
    for obj in gc.get_objects():  # the functions of the reference path and the checks
        if isinstance(obj, types.FunctionType) and (obj.__module__ or "").startswith(covered):
            atheris.instrument_func(obj)
    atheris.Setup([sys.argv[0], "-max_len=16384", *argv, corpus], one_input)
    atheris.Fuzz()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz.engine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--entry", action="append", choices=ENTRIES)
    parser.add_argument("--inputs", type=int, default=10_000, help="per entry point")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=50_000, help="inputs per task")
    parser.add_argument("--engine", choices=("mutate", "atheris"), default="mutate")
    parser.add_argument("--replay", nargs=2, metavar=("ENTRY", "HEX"))
    args, rest = parser.parse_known_args(argv)
    if args.replay:
        entry, data = args.replay[0], bytes.fromhex(args.replay[1])
        outcomes: Counter[str] = Counter()
        run_one(entry, data, outcomes)
        print(f"{entry}: passed ({dict(outcomes)})")
        return 0
    entries = args.entry or list(ENTRIES)
    if args.engine == "atheris":
        if len(entries) != 1:
            parser.error("--engine atheris takes one --entry")
        return run_atheris(entries[0], rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    started = time.monotonic()
    results = run_all(entries, args.inputs, args.seed, args.jobs, args.chunk)
    return report(results, time.monotonic() - started)


if __name__ == "__main__":
    sys.exit(main())
