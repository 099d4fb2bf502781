"""What a control-plane machine asks the daemon to send."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import NamedTuple


class SendControl(NamedTuple):
    """Send ``payload`` (a whole LISP control message) from our UDP 4342 socket of the same
    address family to ``dst``:``port``."""

    dst: IPv4Address | IPv6Address
    port: int
    payload: bytes


class SendData(NamedTuple):
    """Send ``payload`` (a LISP data header and what follows it) from our UDP 4341 socket of the
    same address family to ``dst``:``port``.

    Used where the source port matters: NAT-traversal keepalives (an Info-Request behind a data
    header with instance-ID 0xFFFFFF) must leave from port 4341 so that the NAT binding they
    keep open is the one the xTR's encapsulated traffic uses.
    """

    dst: IPv4Address | IPv6Address
    port: int
    payload: bytes
    counter: str = "nat.keepalive-sent"
    """The counter a successful send is counted under."""
    offset: int = 8
    """Where the LISP control message starts in ``payload`` (for the message log): after the
    data header, or 0 for a control message sent from port 4341 as it is (an ECM'd
    Map-Register through an RTR, draft-style NAT traversal)."""
