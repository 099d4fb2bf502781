"""Scenario 2: resolution with held packets.  The ITR holds its first packets to a remote EID,
asks the Map-Resolver (an ECM'd Map-Request), the Map-Server answers for the ETR (proxy-reply)
or forwards the request to it (which answers the ITR), and the held packets go out, encapsulated
to the ETR, to its host; the host's replies come back the same way."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from lispd.wire.control import decode_control
from lispd.wire.ecm import EncapsulatedControl
from lispd.wire.mapreply import MapReply
from lispd.wire.maprequest import MapRequest
from tests import configs
from tests.sim.network import Datagram, Network
from tests.sim.plan import (
    H1,
    H1_V6,
    H2,
    H2_V6,
    MS,
    MS_V6,
    SITE1,
    SITE2,
    XTR1,
    XTR1_V6,
    XTR2,
    XTR2_V6,
)
from tests.sim.worlds import Pinger, site_xtr, two_sites


def messages(datagrams: list[Datagram]) -> list[tuple[str, str, str]]:
    """(sender, type, destination) of control datagrams, ECMs by what they carry."""
    out = []
    for d in datagrams:
        msg = decode_control(d.payload)
        if isinstance(msg, EncapsulatedControl):
            kind = "ecm-to-etr" if msg.to_etr else "ecm"
            kind += "(" + type(msg.message).__name__ + ")"
        else:
            kind = type(msg).__name__
        out.append((d.sender, kind, str(d.dst)))
    return out


@pytest.mark.parametrize("proxy_reply", [False, True], ids=["etr-answers", "ms-answers"])
@pytest.mark.parametrize(("src", "dst"), [(H1, H2), (H1_V6, H2_V6)], ids=["ipv4", "ipv6"])
def test_held_packets_are_released_once_resolved(proxy_reply: bool, src: str, dst: str) -> None:
    w = two_sites(proxy_reply=proxy_reply)
    net = w.net
    net.advance(1.0)  # registered
    start = net.now
    ping = Pinger(net, "xtr1", src, dst)
    sent = [ping.send() for _ in range(3)]  # no mapping yet: all three are held

    assert w.xtr1.packets("itr.held") == 3
    assert w.xtr1.packets("itr.encap") == 0
    assert not w.xtr2.delivered
    net.settle()

    # Each held packet reached the host behind xtr2, in order, with its inner addresses ...
    requests = [p for p in w.xtr2.delivered if p.is_echo_request]
    assert [(str(p.src), str(p.dst), p.seq) for p in requests] == [(src, dst, s) for s in sent]
    assert w.xtr1.packets("itr.encap") == 3 and w.xtr2.packets("etr.decap") == 3
    # ... and every reply came back (xtr2 resolved site 1 in turn).
    assert ping.answered() == sent
    assert w.xtr2.packets("itr.held") == 3 and w.xtr1.packets("etr.decap") == 3

    # The mapping xtr1 learned: site 2's prefix of that family on both of xtr2's RLOCs.
    entry = w.xtr1.lookup(dst)
    assert entry is not None and entry.source == "map-reply" and entry.ttl == 1440 * 60
    assert str(entry.prefix) in SITE2.prefixes and ip_address(dst) in entry.prefix
    assert {str(r.address) for r in entry.rlocs} == {XTR2, XTR2_V6}

    # Who said what: xtr1's first exchange, the Map-Request through the Map-Resolver.
    first = messages([d for d in net.datagrams("control", since=start)][:3])
    assert first[0] == ("xtr1", "ecm(MapRequest)", MS)
    if proxy_reply:
        assert first[1][:2] == ("ms", "MapReply")
        assert first[1][2] in (XTR1, XTR1_V6)  # one of the request's ITR-RLOCs
    else:
        assert first[1][:2] == ("ms", "ecm-to-etr(MapRequest)")
        assert first[1][2] in (XTR2, XTR2_V6)
        assert first[2][:2] == ("xtr2", "MapReply")
        assert first[2][2] in (XTR1, XTR1_V6)
    # Only one Map-Request for the three held packets.
    first_requests = [
        d
        for d in net.datagrams("control", sender="xtr1", dst=MS, since=start)
        if isinstance(decode_control(d.payload), EncapsulatedControl)
    ]
    assert len(first_requests) == 1
    assert w.xtr1.drops() == {} and w.xtr2.drops() == {} and w.ms.drops() == {}
    assert net.lost == []


def test_the_map_reply_carries_the_requested_eid_and_the_itr_rloc() -> None:
    w = two_sites()
    w.net.advance(1.0)
    start = w.net.now
    Pinger(w.net, "xtr1", H1, H2).send()
    w.net.settle()
    ecm = next(w.net.datagrams("control", sender="xtr1", dst=MS, since=start))
    outer = decode_control(ecm.payload)
    assert isinstance(outer, EncapsulatedControl) and isinstance(outer.message, MapRequest)
    # The inner header goes from the requesting EID to the requested one, port 4342 to 4342.
    assert (str(outer.inner_ip.src), str(outer.inner_ip.dst)) == (H1, H2)
    assert (outer.sport, outer.dport) == (4342, 4342)
    reply = next(d for d in w.net.datagrams("control", sender="xtr2", dst=XTR1))
    msg = decode_control(reply.payload)
    assert isinstance(msg, MapReply) and msg.nonce == outer.message.nonce
    assert (str(reply.src), reply.sport, reply.dport) == (XTR2, 4342, 4342)


def test_a_destination_nobody_registered_is_not_encapsulated() -> None:
    """198.51.100.100 is in the EID space but in no site: the Map-Server answers negatively
    (no PETR configured: the ITR drops), nothing reaches a host."""
    w = two_sites()
    w.net.advance(1.0)
    Pinger(w.net, "xtr1", H1, "198.51.100.100").send()
    w.net.settle()
    entry = w.xtr1.lookup("198.51.100.100")
    assert entry is not None and entry.source == "map-reply" and not entry.rlocs
    assert w.xtr1.packets("itr.encap") == 0
    assert list(w.net.datagrams("data")) == []
    assert not w.xtr2.delivered and not w.xtr1.delivered


def test_a_mapping_expires_after_its_ttl_and_is_resolved_again() -> None:
    """Site 2 announces a record TTL of one minute (the smallest a Map-Reply carries): xtr1's
    entry expires on its timer, and the next packet is held again while it resolves anew.
    (Was a namespace test that waited out the minute in real time.)"""
    net = Network()
    net.add_node("ms", configs.msmr("ms", [MS, MS_V6], [SITE1.table(), SITE2.table()]))
    xtr1 = net.add_node("xtr1", site_xtr("xtr1", (XTR1, XTR1_V6), SITE1), answer_pings=True)
    xtr2 = net.add_node(
        "xtr2",
        site_xtr("xtr2", (XTR2, XTR2_V6), SITE2, registration={"record-ttl": 1}),
        answer_pings=True,
    )
    net.advance(1.0)  # registered
    ping = Pinger(net, "xtr1", H1, H2)
    first = ping.send()
    net.settle()
    assert ping.answered() == [first]
    entry = xtr1.lookup(H2)
    assert entry is not None and entry.source == "map-reply" and entry.ttl == 60.0
    held = xtr1.packets("itr.held")

    def learned() -> bool:
        found = xtr1.lookup(H2)  # the longest match: the static send-map-request range after
        return found is not None and found.source == "map-reply"

    net.advance(59.0)
    assert learned()  # not before its minute
    net.advance(2.0)
    assert not learned()  # expired on the node's own timer

    again = ping.send()
    assert xtr1.packets("itr.held") == held + 1  # held while resolved anew
    net.settle()
    assert ping.answered() == [first, again]
    renewed = xtr1.lookup(H2)
    assert renewed is not None and renewed.source == "map-reply" and renewed.ttl == 60.0
    assert xtr2.packets("etr.decap") == 2
