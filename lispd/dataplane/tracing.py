"""LISP-Trace at each hop: the records an ITR, RTR or ETR appends to a trace it forwards, and
the node's state that fills them in (:class:`Tracer`).

A LISP-Trace (the format in :mod:`lispd.wire.trace`) is an ordinary overlay UDP packet from the
``ltr`` client's port to the destination EID's port 2434.  Every lispd on its path recognises it
(:func:`is_trace`, a few byte comparisons on every data packet) and appends a record to the JSON
body: an encap record when it encapsulates (:func:`stamp_encap`), a decap record when it
decapsulates (:func:`stamp_decap`).  The ETR whose database covers the destination turns the
packet around (:func:`turn_around_packet`) and sends it back through its own ITR; a node that
cannot forward returns the bare payload to the client (:func:`error_return`).  An RTR remembers
where the NAT put an ``ltr`` client from the bare packet it sends (:func:`client_rloc_key`).

The functions are pure: an inner IPv4/IPv6 + UDP packet (bytes) in, a rebuilt one out, with
the payload re-encoded the way every re-encoding node writes it (word 0 ``0x90000000``, word 1
zero, nonce unchanged, see :func:`~lispd.wire.trace.reply_header`), lengths fixed, the IPv4
header checksum and a real UDP checksum (IPv4 and IPv6 alike) computed.  TTL / hop limit, TOS /
traffic class, flow label, IP ID, DF, IPv4 options, addresses and ports are kept (addresses
and ports swapped by the turnaround).

No function raises on bytes from the network: a packet that is not a trace, whose framing or
checksum is wrong, or whose body does not decode gives ``None``.  What the caller should do
with ``None``: forward the packet untouched as the ordinary data packet it is (an application
may use UDP 2434 for something else; an undecodable trace reaches the client, which ignores
it).  That is also what happens when the trace has segments but none for the packet's current
destination: nothing is appended, as in lispers.net.

Which record goes where (``sr`` / ``dr`` are RLOC strings the caller formats, see
:func:`rloc_text`):

=======================  ========  ==========================  ===========================
hop                      ``n``     ``sr``                      ``dr``
=======================  ========  ==========================  ===========================
ITR encapsulating        ITR       own RLOC (+ ``:client       chosen RLOC (``:port`` when
                                   port`` added here on the    not 4341)
                                   client's first packet)
RTR decapsulating        RTR       outer source RLOC           own RLOC
RTR re-encapsulating     RTR       own RLOC                    chosen RLOC
ETR decapsulating        ETR       outer source RLOC           own RLOC
cannot forward           role      own RLOC                    ``? (<reason>)``
=======================  ========  ==========================  ===========================

:class:`Tracer` is the node's side: the daemon asks :func:`is_trace` of a packet first, and only
trace packets reach it.  It knows what a record needs that the packet does not carry: the
node's name, its RLOCs (an RTR's public ones too), the wall clock and what RLOC probing knows
of the RLOC chosen (recent RTTs and hop counts).  No I/O: packets in, packets out.

A trace whose destination has no mapping yet waits for it like a data packet (the resolver
holds it), so that the first trace to a destination comes back with its whole path; the
Tracer remembers it (:meth:`Tracer.hold`) and, when the mapping has not come within
:data:`TRACE_HOLD` seconds, gives it back (:meth:`Tracer.overdue`) to be answered
``? (map-cache miss)``, the answer lispers.net gives at once.  A trace released after that
was answered already and is dropped (:meth:`Tracer.release`).
"""

from __future__ import annotations

import math
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import ip_address
from typing import Final

from lispd.dataplane.inner import inner_source
from lispd.dataplane.outputs import Encap
from lispd.wire.data import DATA_HEADER_LEN, LISP_DATA_PORT, read_data_header
from lispd.wire.errors import WireError
from lispd.wire.ip import UdpDatagram, build_udp_datagram, parse_udp_datagram
from lispd.wire.trace import (
    NODE_ETR,
    NODE_ITR,
    NODE_RTR,
    REASON_DROP_ACTION,
    REASON_MAP_CACHE_MISS,
    REASON_NO_REACHABLE_RLOCS,
    REASON_NOT_AN_EID,
    TRACE_PORT,
    IPAddress,
    Number,
    TraceHop,
    TraceMessage,
    TraceSegment,
    decode_trace,
    encode_trace,
    format_eid,
    format_rloc,
    format_unreachable,
    nat_trace_key,
    parse_eid,
    parse_rloc,
    reply_header,
    return_address,
    turn_around,
)

__all__ = [
    "FAILURE_REASONS",
    "MAX_HELD_TRACES",
    "MAX_NAT_CLIENTS",
    "NODE_ETR",
    "NODE_ITR",
    "NODE_RTR",
    "PROBE_HISTORY",
    "REASON_DROP_ACTION",
    "REASON_MAP_CACHE_MISS",
    "REASON_NOT_AN_EID",
    "REASON_NO_REACHABLE_RLOCS",
    "TRACE_HOLD",
    "UNKNOWN_HOPS",
    "UNKNOWN_LATENCY",
    "UNKNOWN_RTT",
    "TraceContext",
    "Tracer",
    "client_rloc_key",
    "error_return",
    "flow_is_trace",
    "inner_iid",
    "is_trace",
    "needs_turnaround",
    "return_key",
    "rloc_text",
    "stamp_decap",
    "stamp_encap",
    "turn_around_packet",
]

PROBE_HISTORY: Final = 3
"""Entries in each of ``rtts``, ``hops`` and ``lats``."""
UNKNOWN_RTT: Final = -1
"""An ``rtts`` entry with no measurement (a JSON integer, as lispers.net writes it)."""
UNKNOWN_HOPS: Final = "?/?"
"""A ``hops`` entry with neither direction known."""
UNKNOWN_LATENCY: Final = "?/?"
"""A ``lats`` entry with no measurement."""

_PORT_HI: Final = TRACE_PORT >> 8  # 0x09
_PORT_LO: Final = TRACE_PORT & 0xFF  # 0x82
_PROTO_UDP: Final = 17

# What the codecs raise on bad bytes (WireError) or on values that do not fit (EncodeError is a
# ValueError, so are UnicodeError and ipaddress's errors); struct / overflow / recursion errors
# are a belt on top of the braces.  Anything else is a bug and is left to propagate.
_BAD_INPUT: Final = (WireError, ValueError, struct.error, OverflowError, RecursionError)


# --------------------------------------------------------------------------------------------
# The hot-path test


def is_trace(inner: bytes | bytearray, start: int = 0) -> bool:
    """True when ``inner`` (the packet from offset ``start``: 8 to look past a LISP header
    without copying) looks like a LISP-Trace: an unfragmented IPv4 packet (any IHL) or an IPv6
    packet whose next header is UDP, with UDP source or destination port 2434.

    Called for every data packet: it reads a handful of bytes, allocates nothing and never
    raises (lengths are checked before every index).  It does not validate the packet; the
    stamping functions do that.
    """
    n = len(inner) - start
    if n < 28:
        return False
    first = inner[start]
    version = first >> 4
    if version == 4:
        if inner[start + 9] != _PROTO_UDP or inner[start + 6] & 0x3F or inner[start + 7]:
            return False  # not UDP, or a fragment
        off = (first & 0x0F) << 2
        if off < 20 or n < off + 8:
            return False
    elif version == 6:
        if inner[start + 6] != _PROTO_UDP or n < 48:
            return False
        off = 40
    else:
        return False
    off += start
    return (inner[off] == _PORT_HI and inner[off + 1] == _PORT_LO) or (
        inner[off + 2] == _PORT_HI and inner[off + 3] == _PORT_LO
    )


def flow_is_trace(protocol: int, ports: bytes) -> bool:
    """The same test on what :func:`lispd.dataplane.inner.parse_inner` already extracted
    (``flow.protocol``, ``flow.ports``; ports are empty for fragments)."""
    return (
        protocol == _PROTO_UDP
        and len(ports) == 4
        and (
            (ports[0] == _PORT_HI and ports[1] == _PORT_LO)
            or (ports[2] == _PORT_HI and ports[3] == _PORT_LO)
        )
    )


# --------------------------------------------------------------------------------------------
# Small helpers the caller uses to fill the records


def rloc_text(address: IPAddress, port: int = LISP_DATA_PORT) -> str:
    """An encap record's ``dr``: the RLOC, with ``":<port>"`` when the port is not 4341 (an
    xTR behind a NAT, reached on its translated port)."""
    return format_rloc(address, None if port == LISP_DATA_PORT else port)


def return_key(address: IPAddress, port: int) -> str:
    """The key of an RTR's NAT trace cache for a return address: the same text as
    :func:`~lispd.wire.trace.nat_trace_key` gives for the client's bare packet."""
    return f"{address}:{port}"


def _rtt(value: object) -> Number:
    """Seconds rounded to the millisecond, or -1 for anything that is no measurement."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            return UNKNOWN_RTT
        if math.isfinite(seconds) and seconds >= 0:
            return round(seconds, 3)
    return UNKNOWN_RTT


def _texts(values: Sequence[str] | None, unknown: str) -> tuple[str, ...]:
    items = [v if isinstance(v, str) else unknown for v in (values or ())][:PROBE_HISTORY]
    return (*items, *(unknown,) * (PROBE_HISTORY - len(items)))


def _probe_data(
    rtts: Sequence[Number] | None, hops: Sequence[str] | None, lats: Sequence[str] | None
) -> tuple[tuple[Number, ...], tuple[str, ...], tuple[str, ...]] | None:
    """Exactly three entries each (most recent first, padded with the unknown forms), or None
    when no probe data was given at all."""
    if rtts is None and hops is None and lats is None:
        return None
    numbers = [_rtt(v) for v in (rtts or ())][:PROBE_HISTORY]
    numbers += [UNKNOWN_RTT] * (PROBE_HISTORY - len(numbers))
    return tuple(numbers), _texts(hops, UNKNOWN_HOPS), _texts(lats, UNKNOWN_LATENCY)


# --------------------------------------------------------------------------------------------
# Parsing and rebuilding the inner packet


def _parse(inner: bytes | bytearray) -> tuple[UdpDatagram, TraceMessage] | None:
    """The datagram and its decoded trace; None when it is not a well-formed trace (framing,
    UDP checksum when one is present, or payload)."""
    if not is_trace(inner):
        return None
    try:
        dg = parse_udp_datagram(bytes(inner), verify_checksum=True)
        if TRACE_PORT not in (dg.sport, dg.dport):
            return None  # is_trace read the ports of a header the parser read differently
        return dg, decode_trace(dg.payload)
    except _BAD_INPUT:
        return None


def _rebuild(dg: UdpDatagram, msg: TraceMessage, swap: bool = False) -> bytes | None:
    """The packet again with ``msg`` (reply header) as payload and a real UDP checksum;
    addresses and ports exchanged when ``swap``.  None when it no longer fits."""
    ip, sport, dport = dg.ip, dg.sport, dg.dport
    if swap:
        ip = replace(ip, src=ip.dst, dst=ip.src)  # type: ignore[arg-type]
        sport, dport = dport, sport
    try:
        payload = encode_trace(reply_header(msg))
        return build_udp_datagram(UdpDatagram(ip, sport, dport, payload))
    except _BAD_INPUT:
        return None


def _segment_index(segments: Sequence[TraceSegment], iid: int, dst: IPAddress) -> int | None:
    """The first segment whose ``de`` names ``dst`` in ``iid``: the exact text first, then the
    same EID written another way (a peer writing IPv6 in capitals or uncompressed)."""
    de = format_eid(iid, dst)
    for i, seg in enumerate(segments):
        if seg.de == de:
            return i
    for i, seg in enumerate(segments):
        try:
            if parse_eid(seg.de) == (iid, dst):
                return i
        except WireError:
            continue
    return None


_HopMaker = Callable[[bool], TraceHop]
"""Builds the record to append; its argument says whether it is the trace's very first one."""


def _append(dg: UdpDatagram, msg: TraceMessage, iid: int, make: _HopMaker) -> TraceMessage | None:
    """``msg`` with the record appended to the segment of the packet's current destination;
    the forward segment is created first on the client's first packet (no body, or ``[]``).
    None when there is no such segment."""
    if not msg.segments:
        if dg.dport != TRACE_PORT:
            return None  # only the client's packet toward port 2434 starts a trace
        forward = TraceSegment(
            se=format_eid(iid, dg.ip.src), de=format_eid(iid, dg.ip.dst), paths=(make(True),)
        )
        return replace(msg, segments=(forward,))
    i = _segment_index(msg.segments, iid, dg.ip.dst)
    if i is None:
        return None
    segments = list(msg.segments)
    segments[i] = replace(segments[i], paths=(*segments[i].paths, make(False)))
    return replace(msg, segments=tuple(segments))


def _first_sr(sr: str, msg: TraceMessage, first: bool) -> str:
    """The first ITR of the forward path writes its RLOC with the client's port."""
    return f"{sr}:{msg.local_port}" if first else sr


# --------------------------------------------------------------------------------------------
# Per-hop operations


def stamp_encap(
    inner: bytes | bytearray,
    *,
    iid: int,
    role: str,
    sr: str,
    dr: str,
    hn: str,
    ts: float,
    rtts: Sequence[float | int] | None = None,
    hops: Sequence[str] | None = None,
    lats: Sequence[str] | None = None,
) -> bytes | None:
    """The trace ``inner`` with an encap record (``ets``) appended by a node of role ``role``
    that is about to encapsulate it in instance ``iid`` from RLOC ``sr`` to RLOC ``dr``.

    On the client's first packet (no body yet) the forward segment is created from the inner
    addresses and ``":<client port>"`` (the header's ``local_port``) is appended to ``sr``:
    give ``sr`` without a port.  ``rtts`` / ``hops`` / ``lats`` are the chosen RLOC's recent
    probe results, most recent first; when any of them is given all three are written with
    exactly three entries each (truncated, or padded with ``-1`` / ``"?/?"`` / ``"?/?"``),
    RTTs rounded to the millisecond; when none is given none is written.

    Returns the rebuilt inner packet, or None when there is nothing to stamp (see the module
    docstring: forward the packet untouched).
    """
    parsed = _parse(inner)
    if parsed is None:
        return None
    dg, msg = parsed
    try:
        probe = _probe_data(rtts, hops, lats)
        r, h, la = probe if probe is not None else (None, None, None)

        def make(first: bool) -> TraceHop:
            return TraceHop.encap(
                role, _first_sr(sr, msg, first), dr, hn, ts, rtts=r, hops=h, lats=la
            )

        stamped = _append(dg, msg, iid, make)
    except _BAD_INPUT:
        return None
    return None if stamped is None else _rebuild(dg, stamped)


def stamp_decap(
    inner: bytes | bytearray,
    *,
    iid: int,
    role: str,
    sr: str,
    dr: str,
    hn: str,
    ts: float,
) -> bytes | None:
    """The trace ``inner`` with a decap record (``dts``) appended by a node of role ``role``
    that has just decapsulated it in instance ``iid`` (``sr`` the outer source RLOC, ``dr``
    its own).  A trace without a body gets its forward segment here (an ITR on the way that
    does not stamp), without a port on ``sr``.  None: forward untouched."""
    parsed = _parse(inner)
    if parsed is None:
        return None
    dg, msg = parsed
    try:
        stamped = _append(dg, msg, iid, lambda _first: TraceHop.decap(role, sr, dr, hn, ts))
    except _BAD_INPUT:
        return None
    return None if stamped is None else _rebuild(dg, stamped)


def _forward_only(dg: UdpDatagram, msg: TraceMessage) -> bool:
    return dg.dport == TRACE_PORT and msg.segments is not None and len(msg.segments) == 1


def needs_turnaround(inner: bytes | bytearray, *, iid: int) -> bool:
    """True for a trace on its way out: exactly one segment, to UDP port 2434.  The ETR whose
    database covers the destination then calls :func:`turn_around_packet` (RTRs never do).
    ``iid`` is accepted for symmetry with the other operations."""
    del iid
    parsed = _parse(inner)
    return parsed is not None and _forward_only(*parsed)


def turn_around_packet(inner: bytes | bytearray, *, iid: int) -> bytes | None:
    """The destination ETR's turnaround: the return segment added (``se`` / ``de`` of the
    forward one swapped), inner addresses and UDP ports swapped, lengths and checksums fixed
    (a real UDP checksum, on IPv6 too).  The ETR then hands the result to its own ITR, which
    stamps it like any trace (now keyed by the new destination, the client's EID).

    The TTL / hop limit is kept as it arrived: the turnaround is not a new packet, and keeping
    the count is what bounds a trace that loops.  None when the trace is not a single forward
    segment to port 2434 (a reply arriving home, already a round trip: deliver it).  ``iid``
    is accepted for symmetry; the return segment reuses the forward segment's EID texts.
    """
    del iid
    parsed = _parse(inner)
    if parsed is None:
        return None
    dg, msg = parsed
    if not _forward_only(dg, msg):
        return None
    try:
        returned = turn_around(msg)
    except _BAD_INPUT:
        return None
    return _rebuild(dg, returned, swap=True)


def error_return(
    inner: bytes | bytearray,
    *,
    iid: int,
    role: str,
    sr: str,
    hn: str,
    ts: float,
    reason: str | None,
    nat_cache: Mapping[str, tuple[IPAddress, int]] | None = None,
) -> tuple[bytes, IPAddress, int] | None:
    """A node that cannot forward the trace (``reason``: one of the ``REASON_*`` texts, or
    None for a bare ``"?"``): its encap record with ``dr = "? (<reason>)"`` and no probe data
    is appended to the current segment, and the answer is ``(payload, address, port)``: the
    bare trace payload (reply header + JSON, no inner IP/UDP) to send from UDP port 2434 to the
    first ITR's ``sr`` address and client port.

    On the client's first packet that first ITR is this node: the forward segment is created
    and ``sr`` gets the client's port, so the answer goes back to the client directly.  An RTR
    passes its NAT trace cache as ``nat_cache`` (keys as :func:`return_key` /
    :func:`client_rloc_key`): a return address found there is replaced by the translated one.
    None when the packet is no trace, has no segment for its destination, or no return address.
    """
    parsed = _parse(inner)
    if parsed is None:
        return None
    dg, msg = parsed
    try:
        dr = format_unreachable(reason)
        stamped = _append(
            dg, msg, iid, lambda first: TraceHop.encap(role, _first_sr(sr, msg, first), dr, hn, ts)
        )
        if stamped is None:
            return None
        # The first ITR (this node, when the trace had no segment yet) knows the return address
        # without re-reading the "sr" it wrote, which is ambiguous for IPv6 ("2001:db8::1:5000").
        first = not msg.segments
        where = (parse_rloc(sr)[0], msg.local_port) if first else return_address(stamped)
        if where is None:
            return None
        address, port = where
        if nat_cache is not None:
            translated = nat_cache.get(return_key(address, port))
            if translated is not None:
                address, port = translated
        return encode_trace(reply_header(stamped)), address, port
    except _BAD_INPUT:
        return None


def client_rloc_key(payload: bytes) -> str | None:
    """For an RTR receiving, on its UDP port 2434, the bare 16-byte packet an ``ltr`` client
    behind a NAT sends ahead of its trace: the key ``"<private rloc>:<client port>"`` under
    which the RTR remembers the address and port the NAT gave it (the packet's outer source).

    None unless ``payload`` decodes as a trace without a JSON body (a re-encoded trace has a
    zeroed header and would give the meaningless key ``"0.0.0.0:0"``).
    """
    try:
        msg = decode_trace(bytes(payload))
    except (*_BAD_INPUT, TypeError):
        return None
    if msg.segments is not None:
        return None
    return nat_trace_key(msg)


# --------------------------------------------------------------------------------------------
# The same operations bound to one node and instance


@dataclass(frozen=True, slots=True)
class TraceContext:
    """What a stamping hop knows about itself: its short host name (``hn``) and the instance-ID
    of the packet in hand.  Built per trace packet (traces are rare); the methods are the
    module's functions with those two filled in."""

    node_name: str
    iid: int

    def encap(
        self,
        inner: bytes | bytearray,
        *,
        role: str,
        sr: str,
        dr: str,
        ts: float,
        rtts: Sequence[float | int] | None = None,
        hops: Sequence[str] | None = None,
        lats: Sequence[str] | None = None,
    ) -> bytes | None:
        """:func:`stamp_encap` for this node and instance."""
        return stamp_encap(
            inner,
            iid=self.iid,
            role=role,
            sr=sr,
            dr=dr,
            hn=self.node_name,
            ts=ts,
            rtts=rtts,
            hops=hops,
            lats=lats,
        )

    def decap(
        self, inner: bytes | bytearray, *, role: str, sr: str, dr: str, ts: float
    ) -> bytes | None:
        """:func:`stamp_decap` for this node and instance."""
        return stamp_decap(inner, iid=self.iid, role=role, sr=sr, dr=dr, hn=self.node_name, ts=ts)

    def needs_turnaround(self, inner: bytes | bytearray) -> bool:
        """:func:`needs_turnaround` for this instance."""
        return needs_turnaround(inner, iid=self.iid)

    def turn_around(self, inner: bytes | bytearray) -> bytes | None:
        """:func:`turn_around_packet` for this instance."""
        return turn_around_packet(inner, iid=self.iid)

    def error(
        self,
        inner: bytes | bytearray,
        *,
        role: str,
        sr: str,
        ts: float,
        reason: str | None,
        nat_cache: Mapping[str, tuple[IPAddress, int]] | None = None,
    ) -> tuple[bytes, IPAddress, int] | None:
        """:func:`error_return` for this node and instance."""
        return error_return(
            inner,
            iid=self.iid,
            role=role,
            sr=sr,
            hn=self.node_name,
            ts=ts,
            reason=reason,
            nat_cache=nat_cache,
        )


# --------------------------------------------------------------------------------------------
# The node: what it stamps with, and the traces it holds


# Why a node could not forward, by drop reason, in the words ltr prints.
FAILURE_REASONS = {
    # The mapping says native-forward: lispers.net answers a trace "not an EID" there (and
    # forwards data natively); lispd does too, also when it has a PETR for the data.
    "native-forward": "not an EID",
    "native-forward-no-petr": "not an EID",
    "no-live-petr": "not an EID",
    "pitr-no-map-cache-entry": "not an EID",
    "no-usable-rloc": "No reachable RLOCs found",
    "no-live-rtr": "No reachable RLOCs found",
    "map-cache-miss": "map-cache miss",
    "action-drop": "drop action",
}
MAX_NAT_CLIENTS = 4096
TRACE_HOLD: Final = 2.0
"""Seconds a trace waits for its destination's mapping before the node answers ``map-cache
miss``: a trace held on its way out and again on its way back still comes back within ltr's
default 5-second timeout."""
MAX_HELD_TRACES: Final = 256
"""Traces waiting at once; one more is answered ``map-cache miss`` at once."""


class Tracer:
    """Stamps LISP-Trace records for one node."""

    def __init__(
        self,
        node_name: str,
        local_rlocs: dict[int, IPAddress],
        probe_history: Callable[[IPAddress], tuple[list[float], list[str]] | None],
        wall_clock: Callable[[], float] = time.time,
        public_rlocs: dict[int, IPAddress] | None = None,
    ) -> None:
        """``public_rlocs``: an RTR's ``[rtr] public-rlocs`` by address family (behind a 1:1
        NAT, the addresses the other nodes see it at)."""
        self.node_name = node_name
        self.local_rlocs = local_rlocs
        self.probe_history = probe_history
        self.wall_clock = wall_clock
        self.public_rlocs = dict(public_rlocs or {})
        # RTR: "<client's private rloc>:<port>" -> where that ltr client is seen (behind NAT).
        self.nat_clients: OrderedDict[str, tuple[IPAddress, int]] = OrderedDict()
        # Traces the resolver holds: packet -> (when to answer it, instance-ID, role), oldest
        # first (every one waits TRACE_HOLD).
        self.held: dict[bytes, tuple[float, int, str]] = {}

    def _local(self, version: int) -> str:
        rloc = self.local_rlocs.get(version)
        return str(rloc) if rloc is not None else "?"

    def _source(self, version: int, role: str) -> str:
        """The ``sr`` of this node's encap record, an RLOC of family ``version`` if it has one
        (else of the other: a trace of IPv6 EIDs that stops on an IPv4 underlay still names,
        and returns to, an address): an RTR names its public RLOC when it has one (the
        address the next hop sees, as lispers.net's RTRs write it); any other node its own
        RLOC (the first ITR's is where error returns come back, and an RTR keys its NATed
        clients by it)."""
        for family in (version, 6 if version == 4 else 4):
            public = self.public_rlocs.get(family) if role == NODE_RTR else None
            rloc = public if public is not None else self.local_rlocs.get(family)
            if rloc is not None:
                return str(rloc)
        return "?"

    def encap(self, out: Encap, role: str) -> Encap:
        """``out`` with this node's encap record on its trace (unchanged if undecodable)."""
        header = read_data_header(out.payload)
        if header is None:
            return out
        history = self.probe_history(out.rloc)
        rtts, hops = history if history is not None else (None, None)
        stamped = stamp_encap(
            out.payload[DATA_HEADER_LEN:],
            iid=header[0],
            role=role,
            sr=self._source(out.rloc.version, role),
            dr=rloc_text(out.rloc, out.port),
            hn=self.node_name,
            ts=self.wall_clock(),
            rtts=rtts,
            hops=hops,
            lats=None if history is None else ("?/?",) * 3,
        )
        if stamped is None:
            return out
        return out._replace(payload=out.payload[:DATA_HEADER_LEN] + stamped)

    def decap(self, inner: bytes, iid: int, role: str, src: str, sport: int) -> bytes:
        """``inner`` with this node's decap record: the outer source as it arrived (after any
        NAT), our RLOC as destination."""
        try:
            source = ip_address(src)
        except ValueError:
            return inner
        stamped = stamp_decap(
            inner,
            iid=iid,
            role=role,
            sr=rloc_text(source, sport),
            dr=self._local(source.version),
            hn=self.node_name,
            ts=self.wall_clock(),
        )
        return inner if stamped is None else stamped

    def failure(
        self, inner: bytes, iid: int, role: str, drop_reason: str
    ) -> tuple[bytes, IPAddress, int] | None:
        """The bare trace payload a node that cannot forward sends back to the originating
        ITR (its RLOC and the client's port), with the reason in its record."""
        reason = FAILURE_REASONS.get(drop_reason.removeprefix("rtr-"), drop_reason)
        try:
            source = ip_address(inner_source(inner))
        except (ValueError, IndexError):
            return None
        return error_return(
            inner,
            iid=iid,
            role=role,
            sr=self._source(source.version, role),
            hn=self.node_name,
            ts=self.wall_clock(),
            reason=reason,
            nat_cache=self.nat_clients,
        )

    def hold(self, packet: bytes, iid: int, role: str, now: float) -> bool:
        """Remember ``packet``, a trace of instance ``iid`` that this node (as ``role``) hands
        to the resolver to wait for its destination's mapping; :meth:`overdue` gives it back
        at ``now + TRACE_HOLD``.  False when :data:`MAX_HELD_TRACES` already wait: answer it
        at once instead."""
        key = bytes(packet)
        if self.held.pop(key, None) is None and len(self.held) >= MAX_HELD_TRACES:
            return False
        self.held[key] = (now + TRACE_HOLD, iid, role)
        return True

    def release(self, packet: bytes) -> bool:
        """The resolver let ``packet`` go (or would not hold it): True when it was waiting, to
        be forwarded now; False when it was answered already (see :meth:`overdue`) or never
        held: drop it."""
        return self.held.pop(bytes(packet), None) is not None

    def overdue(self, now: float) -> list[tuple[bytes, int, str]]:
        """``(packet, iid, role)`` of every held trace whose time is up, forgotten here: the
        caller answers each ``map-cache miss`` (a later :meth:`release` of it is False)."""
        due: list[tuple[bytes, int, str]] = []
        for packet, (deadline, iid, role) in self.held.items():
            if deadline > now:
                break  # oldest first, all waiting equally long
            due.append((packet, iid, role))
        for packet, _iid, _role in due:
            del self.held[packet]
        return due

    def next_deadline(self) -> float | None:
        """When :meth:`overdue` next has a trace to give back, or None."""
        for deadline, _iid, _role in self.held.values():
            return deadline
        return None

    def learn_client(self, payload: bytes, src: str, sport: int) -> bool:
        """An ltr client behind NAT announced itself (the bare header sent to our port 2434):
        remember where its private RLOC:port is seen.  False when it is no such message."""
        key = client_rloc_key(payload)
        if key is None:
            return False
        try:
            address = ip_address(src)
        except ValueError:
            return False
        self.nat_clients.pop(key, None)
        self.nat_clients[key] = (address, sport)
        while len(self.nat_clients) > MAX_NAT_CLIENTS:
            self.nat_clients.popitem(last=False)
        return True


def inner_iid(payload: bytes) -> int:
    """The instance-ID of a LISP data payload (0 when the header is short)."""
    header = read_data_header(payload)
    return 0 if header is None else header[0]
