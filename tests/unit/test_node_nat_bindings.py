"""An RTR node's NAT bindings from keepalives, without sockets: what the node tells its shell
(:class:`~lispd.node.actions.NatBindingsChanged`) and what it logs.  What the daemon does with
the changes on the compiled path (re-issuing records) is in ``test_daemon_nat_refresh.py``."""

from __future__ import annotations

import logging
from ipaddress import ip_address, ip_network

import pytest

from lispd.api import views
from lispd.config import parse_config
from lispd.node import Node
from lispd.node.actions import NatBindingsChanged
from lispd.wire.address import DistinguishedName, eid_prefix
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


def keepalive_naming(prefix: str, iid: int = 0) -> bytes:
    """A keepalive as lispd's NAT client sends it: naming one database EID-prefix."""
    eid, mask_len = eid_prefix(iid, prefix)
    info = InfoMessage(nonce=9, ttl=1440, eid=eid, eid_mask_len=mask_len)
    return build_data_header(0x42, IID_CONTROL) + encode_control(info)


def test_two_xtrs_behind_one_address_get_a_binding_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Keepalives from two ports of one NAT address, each naming its xTR's EID-prefix (one in
    instance 7): two bindings, each prefix going to its own port; the second xTR's arrival
    changes forwarding at the address (its prefix now has a port of its own); a keepalive
    naming the first xTR's prefix from the second port is refused and counted."""
    now = 1000.0
    node = Node(parse_config(RTR_CONFIG), now)
    nat = "192.0.2.77"
    changed: list[NatBindingsChanged] = []

    def from_port(port: int, payload: bytes) -> None:
        node.data_datagram(payload, 64, 0, nat, port, now)
        changed.extend(a for a in perform(node) if isinstance(a, NatBindingsChanged))

    with caplog.at_level(logging.INFO, logger="lispd.node"):
        from_port(40001, keepalive_naming("198.51.100.0/28"))
        from_port(40002, keepalive_naming("2001:db8:100:3::/64", iid=7))
        now += 1.0
        from_port(40001, keepalive_naming("198.51.100.0/28"))  # refreshes
        from_port(40002, keepalive_naming("2001:db8:100:3::/64", iid=7))
        from_port(40002, keepalive_naming("198.51.100.0/28"))  # xtr1's prefix, from xtr2
    bindings = node.nat_bindings
    assert bindings is not None and len(bindings) == 2
    address = ip_address(nat)
    assert bindings.port_for(address, 0, ip_network("198.51.100.0/28")) == 40001
    assert bindings.port_for(address, 7, ip_network("2001:db8:100:3::/64")) == 40002
    assert changed == [NatBindingsChanged((address,))] * 2
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("nat binding")]
    assert len(lines) == 2
    assert "port=40001" in lines[0] and "eid=[0]198.51.100.0/28" in lines[0]
    assert "port=40002" in lines[1] and "eid=[7]2001:db8:100:3::/64" in lines[1]
    drops = {k: v for k, v in views.node_stats(node)["drops"].items() if v}
    assert drops == {"nat-binding-eid-held": 1}
    assert node.counters.packets["rtr.nat-keepalive.packets"] == 5
