"""What the role logic asks the daemon to do with a packet."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import NamedTuple, final


class Encap(NamedTuple):
    """Send ``payload`` (LISP header + inner packet) over UDP to ``rloc``:``port``."""

    rloc: IPv4Address | IPv6Address
    port: int
    flow_hash: int  # picks the outer source port (socket) so one flow keeps one port
    ttl: int
    tos: int
    payload: bytes
    # Send from our UDP 4341 socket (source port 4341) instead of the flow's pool socket: the
    # way through a NAT (toward an RTR from behind one, or from an RTR to a NATed xTR's
    # translated port) is the binding of that socket.
    data_port: bool = False
    # A PITR's packet: its source is not a local EID (counted as pitr.encap, not itr.encap).
    pitr: bool = False
    # Sent to a Proxy-ETR: the mapping system said the destination is not an EID
    # (native-forward).  A LISP-Trace is answered "not an EID" here instead of following it.
    to_petr: bool = False


class ToTun(NamedTuple):
    """Write ``packet`` to the TUN device (decapsulated traffic, or an ICMP error)."""

    packet: bytes | bytearray  # a bytearray when decapsulation rewrote TTL or ECN in a copy
    # Decapsulated by a PETR for a destination outside the local database, for the kernel to
    # forward natively (counted as petr.decap, not etr.decap).
    petr: bool = False


class Miss(NamedTuple):
    """No mapping yet for ``dst`` in instance ``iid``: resolve it (and hold the packet)."""

    iid: int
    dst: bytes  # packed inner destination
    src: bytes  # packed inner source (the Map-Request's source EID)
    packet: bytes = b""  # the packet to hold, when not the one the daemon handed in (RTR)


@final  # so that ``type(out) is Drop``, the packet path's test, narrows both ways
class Drop(NamedTuple):
    """Drop the packet; ``reason`` names the counter."""

    reason: str


Output = Encap | ToTun | Miss | Drop
