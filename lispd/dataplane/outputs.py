"""What the role logic asks the daemon to do with a packet."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import NamedTuple


class Encap(NamedTuple):
    """Send ``payload`` (LISP header + inner packet) over UDP to ``rloc``:``port``."""

    rloc: IPv4Address | IPv6Address
    port: int
    flow_hash: int  # picks the outer source port (socket) so one flow keeps one port
    ttl: int
    tos: int
    payload: bytes


class ToTun(NamedTuple):
    """Write ``packet`` to the TUN device (decapsulated traffic, or an ICMP error)."""

    packet: bytes


class Drop(NamedTuple):
    """Drop the packet; ``reason`` names the counter."""

    reason: str


Output = Encap | ToTun | Drop
