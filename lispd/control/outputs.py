"""What a control-plane machine asks the daemon to send."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import NamedTuple

LISP_CONTROL_PORT = 4342


class SendControl(NamedTuple):
    """Send ``payload`` (a whole LISP control message) from our UDP 4342 socket of the same
    address family to ``dst``:``port``."""

    dst: IPv4Address | IPv6Address
    port: int
    payload: bytes
