"""LISP-Trace at this node: the records it stamps on trace packets crossing it.

The daemon asks :func:`lispd.dataplane.trace.is_trace` of a packet first (a few byte
comparisons); only trace packets come here.  :class:`Tracer` knows what a record needs that the
packet does not carry: the node's name, its RLOCs (an RTR's public ones too), the wall clock
and what RLOC probing knows of the RLOC chosen (recent RTTs and hop counts).  Pure: packets in,
packets out.

A trace whose destination has no mapping yet waits for it like a data packet (the resolver
holds it), so that the first trace to a destination comes back with its whole path; the
Tracer remembers it (:meth:`Tracer.hold`) and, when the mapping has not come within
:data:`TRACE_HOLD` seconds, gives it back (:meth:`Tracer.overdue`) to be answered
``? (map-cache miss)``, the answer lispers.net gives at once.  A trace released after that
was answered already and is dropped (:meth:`Tracer.release`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Final

from lispd.dataplane import trace
from lispd.dataplane.outputs import Encap
from lispd.wire.data import DATA_HEADER_LEN, read_data_header

IPAddress = IPv4Address | IPv6Address

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
            public = self.public_rlocs.get(family) if role == trace.NODE_RTR else None
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
        stamped = trace.stamp_encap(
            out.payload[DATA_HEADER_LEN:],
            iid=header[0],
            role=role,
            sr=self._source(out.rloc.version, role),
            dr=trace.rloc_text(out.rloc, out.port),
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
        stamped = trace.stamp_decap(
            inner,
            iid=iid,
            role=role,
            sr=trace.rloc_text(source, sport),
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
            source = ip_address(inner[12:16] if inner[0] >> 4 == 4 else inner[8:24])
        except (ValueError, IndexError):
            return None
        return trace.error_return(
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
        key = trace.client_rloc_key(payload)
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
