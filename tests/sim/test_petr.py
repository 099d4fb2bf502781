"""Scenario 3: a destination outside the EID space gets a negative Map-Reply (native-forward)
and the ITR sends its traffic to the Proxy-ETR, which decapsulates it for native forwarding."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from lispd.wire.control import decode_control
from lispd.wire.mapreply import MapReply
from lispd.wire.records import Action
from tests import configs
from tests.sim.network import Network, SimNode
from tests.sim.plan import (
    EID_SPACE,
    H1,
    H1_V6,
    MS,
    MS_V6,
    OUTSIDE,
    OUTSIDE_V6,
    PETR,
    SITE1,
    SITE2,
    XTR1,
    XTR1_V6,
)
from tests.sim.worlds import Pinger, site_xtr


def world() -> tuple[Network, SimNode, SimNode, SimNode]:
    """ms (negative TTL 1 minute), a PETR, and xtr1 resolving everything through ms."""
    net = Network()
    ms = net.add_node(
        "ms",
        configs.msmr(
            "ms", [MS, MS_V6], [SITE1.table(), SITE2.table()], mapping_system={"negative-ttl": 1}
        ),
    )
    petr = net.add_node("petr", configs.node("petr", ["petr"], [PETR]))
    xtr = net.add_node(
        "xtr1",
        site_xtr(
            "xtr1",
            (XTR1, XTR1_V6),
            SITE1,
            resolve=("0.0.0.0/0", "::/0"),
            petr=configs.addresses(PETR),
        ),
    )
    net.advance(1.0)
    return net, ms, petr, xtr


@pytest.mark.parametrize(("src", "dst"), [(H1, OUTSIDE), (H1_V6, OUTSIDE_V6)], ids=["ipv4", "ipv6"])
def test_a_non_eid_goes_to_the_petr(src: str, dst: str) -> None:
    net, ms, petr, xtr = world()
    start = net.now
    ping = Pinger(net, "xtr1", src, dst)
    sent = [ping.send(), ping.send()]
    net.settle()

    # The Map-Server answered negatively: native-forward, for a prefix covering the
    # destination and none of the EID space, with the configured TTL.
    reply = next(net.datagrams("control", sender="ms", since=start))
    msg = decode_control(reply.payload)
    assert isinstance(msg, MapReply) and len(msg.records) == 1
    record = msg.records[0]
    assert record.locators == () and record.action == Action.NATIVELY_FORWARD
    assert record.ttl == 1
    entry = xtr.lookup(dst)
    assert entry is not None and entry.action == "native-forward" and entry.ttl == 60
    assert ip_address(dst) in entry.prefix
    eid_space = [ip_network(p) for p in EID_SPACE]
    assert not any(entry.prefix.overlaps(n) for n in eid_space if n.version == entry.prefix.version)

    # Both held packets went to the PETR, encapsulated, and out of its TUN natively.
    data = list(net.datagrams("data", sender="xtr1"))
    assert [str(d.dst) for d in data] == [PETR, PETR]
    assert [(str(p.src), str(p.dst), p.seq) for p in petr.delivered] == [
        (src, dst, s) for s in sent
    ]
    assert petr.packets("petr.decap") == 2 and petr.packets("etr.decap") == 0
    assert xtr.packets("itr.encap") == 2
    assert xtr.drops() == {} and petr.drops() == {} and ms.drops() == {}


def test_the_negative_entry_expires_and_is_asked_again() -> None:
    net, _ms, petr, xtr = world()
    ping = Pinger(net, "xtr1", H1, OUTSIDE)
    ping.send()
    net.settle()
    negative = xtr.lookup(OUTSIDE)
    assert negative is not None and negative.action == "native-forward"
    net.advance(61.0)  # the negative TTL (1 minute)
    entry = xtr.lookup(OUTSIDE)
    assert entry is not None and entry.source == "static"  # back to the 0.0.0.0/0 entry
    before = len(list(net.datagrams("control", sender="xtr1", dst=MS)))
    ping.send()
    net.settle()
    assert len(list(net.datagrams("control", sender="xtr1", dst=MS))) == before + 1
    assert [p.seq for p in petr.delivered] == [1, 2]


def test_a_petr_that_stops_answering_probes_is_not_used() -> None:
    net, _ms, petr, xtr = world()
    ping = Pinger(net, "xtr1", H1, OUTSIDE)
    ping.send()
    net.settle()
    assert [p.seq for p in petr.delivered] == [1]
    net.take_down("petr")
    net.advance(30.0)  # probing (10 s interval, 3 s timeout, 3 losses) marks it down
    assert [p.up for p in xtr.node.itr.petrs] == [False]  # type: ignore[union-attr]
    lost_before = len(net.lost)
    ping.send()
    net.settle()
    assert xtr.packets("itr.encap") == 1  # the second packet was not sent anywhere
    assert xtr.drops() == {"no-live-petr": 1}
    assert all(lost.datagram.kind != "data" for lost in net.lost[lost_before:])
    net.bring_up("petr")
    net.advance(11.0)  # the next probe is answered
    assert [p.up for p in xtr.node.itr.petrs] == [True]  # type: ignore[union-attr]
    ping.send()
    net.settle()
    assert [p.seq for p in petr.delivered] == [1, 3]
