"""An RTR node's NAT bindings from keepalives, without sockets: what the node tells its shell
(:class:`~lispd.node.actions.NatBindingsChanged`) and what it logs.  What the daemon does with
the changes on the compiled path (re-issuing records) is in ``test_daemon_nat_refresh.py``."""

from __future__ import annotations

import logging
from ipaddress import ip_address

import pytest

from lispd.config import parse_config
from lispd.node import Node
from lispd.node.actions import NatBindingsChanged
from lispd.wire.address import DistinguishedName
from lispd.wire.control import encode_control
from lispd.wire.data import IID_CONTROL, build_data_header
from lispd.wire.info import InfoMessage
from tests.unit.socketless import perform

RTR_CONFIG = """
[daemon]
name = "rtr1"
roles = ["rtr"]
control-socket = ""

[underlay]
rlocs = ["192.0.2.20"]

[probing]
map-cache = false
"""


def keepalive() -> bytes:
    """A NAT keepalive: an Info-Request behind a data header with instance-ID 0xFFFFFF."""
    info = InfoMessage(nonce=9, address=DistinguishedName("xtr-behind-nat"))
    return build_data_header(0x42, IID_CONTROL) + encode_control(info)


def test_binding_log_lines_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    """Every spoofed source makes a binding of its own: the INFO lines about them stop after a
    burst, then one a second, and the next line says how many were left out.  Each new
    binding is still one change the shell hears of."""
    now = 1000.0
    node = Node(parse_config(RTR_CONFIG), now)
    changed: list[NatBindingsChanged] = []

    def keepalive_from(src: str) -> None:
        node.data_datagram(keepalive(), 64, 0, src, 40000, now)
        changed.extend(a for a in perform(node) if isinstance(a, NatBindingsChanged))

    with caplog.at_level(logging.INFO, logger="lispd.node"):
        for k in range(100):
            keepalive_from(f"203.0.113.{k + 10}")
        now += 5.0
        keepalive_from("198.51.100.200")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("nat binding")]
    assert len(lines) == 21
    assert "unlogged=80" in lines[-1] and "rloc=198.51.100.200" in lines[-1]
    bindings = node.nat_bindings
    assert bindings is not None and len(bindings) == 101  # all of them learned
    sources = [f"203.0.113.{k + 10}" for k in range(100)] + ["198.51.100.200"]
    assert changed == [NatBindingsChanged((ip_address(s),)) for s in sources]
    assert node.counters.packets["rtr.nat-keepalive.packets"] == 101
    assert node.counters.packets["rtr.nat-binding-change.packets"] == 101
