"""LISP-Trace at this node: the records it stamps on trace packets crossing it.

The daemon asks :func:`lispd.dataplane.trace.is_trace` of a packet first (a few byte
comparisons); only trace packets come here.  :class:`Tracer` knows what a record needs that the
packet does not carry: the node's name, its RLOCs, the wall clock and what RLOC probing knows
of the RLOC chosen (recent RTTs and hop counts).  Pure: packets in, packets out.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_address

from lispd.dataplane import trace
from lispd.dataplane.outputs import Encap
from lispd.fastpath.header import HEADER_LEN, read_header

IPAddress = IPv4Address | IPv6Address

# Why a node could not forward, by drop reason, in the words ltr prints.
FAILURE_REASONS = {
    "native-forward-no-petr": "not an EID",
    "no-live-petr": "not an EID",
    "pitr-no-map-cache-entry": "not an EID",
    "no-usable-rloc": "No reachable RLOCs found",
    "no-live-rtr": "No reachable RLOCs found",
    "map-cache-miss": "map-cache miss",
}
MAX_NAT_CLIENTS = 4096


class Tracer:
    """Stamps LISP-Trace records for one node."""

    def __init__(
        self,
        node_name: str,
        local_rlocs: dict[int, IPAddress],
        probe_history: Callable[[IPAddress], tuple[list[float], list[str]] | None],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.node_name = node_name
        self.local_rlocs = local_rlocs
        self.probe_history = probe_history
        self.wall_clock = wall_clock
        # RTR: "<client's private rloc>:<port>" -> where that ltr client is seen (behind NAT).
        self.nat_clients: OrderedDict[str, tuple[IPAddress, int]] = OrderedDict()

    def _local(self, version: int) -> str:
        rloc = self.local_rlocs.get(version)
        return str(rloc) if rloc is not None else "?"

    def encap(self, out: Encap, role: str) -> Encap:
        """``out`` with this node's encap record on its trace (unchanged if undecodable)."""
        header = read_header(out.payload)
        if header is None:
            return out
        history = self.probe_history(out.rloc)
        rtts, hops = history if history is not None else (None, None)
        stamped = trace.stamp_encap(
            out.payload[HEADER_LEN:],
            iid=header[0],
            role=role,
            sr=self._local(out.rloc.version),
            dr=trace.rloc_text(out.rloc, out.port),
            hn=self.node_name,
            ts=self.wall_clock(),
            rtts=rtts,
            hops=hops,
            lats=None if history is None else ("?/?",) * 3,
        )
        if stamped is None:
            return out
        return out._replace(payload=out.payload[:HEADER_LEN] + stamped)

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
            sr=self._local(source.version),
            hn=self.node_name,
            ts=self.wall_clock(),
            reason=reason,
            nat_cache=self.nat_clients,
        )

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
    header = read_header(payload)
    return 0 if header is None else header[0]
