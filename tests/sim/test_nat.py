"""Scenario 6: NAT traversal.  xtr1 sits behind a home NAT (private RLOC 203.0.113.2); the
Map-Server, the RTR and xtr2 are on the public side.  xtr1 discovers the NAT (Info-Request/
Info-Reply: its translated RLOC differs from its own) and the RTR, registers its translated RLOC
and the RTR with proxy-reply, keeps its NAT binding open with keepalives to the RTR, and traffic
between the two sites flows through the RTR in both directions."""

from __future__ import annotations

from ipaddress import ip_address

from lispd.wire.control import decode_control
from lispd.wire.info import InfoMessage
from tests import configs
from tests.sim.network import Nat, Network, SimNode
from tests.sim.plan import (
    H1,
    H2,
    MS,
    NAT_PUBLIC,
    RTR,
    SITE1,
    SITE2,
    XTR1_PRIVATE,
    XTR2,
)
from tests.sim.worlds import Pinger, registering, resolving

KEEPALIVE = 1.0
NAT_TIMEOUT = 30.0


def world() -> tuple[Network, Nat, SimNode, SimNode, SimNode, SimNode]:
    """(net, nat, ms, rtr, xtr1 behind the NAT, xtr2), after 3 s."""
    net = Network()
    nat = net.add_nat(
        "nat", NAT_PUBLIC, timeout=NAT_TIMEOUT, filtering="address-and-port-dependent"
    )
    ms = net.add_node(
        "ms",
        configs.msmr(
            "ms", [MS], [SITE1.table(), SITE2.table()], mapping_system={"rtr-rlocs": [RTR]}
        ),
    )
    rtr = net.add_node("rtr", configs.rtr("rtr", [RTR], map_resolver=configs.addresses(MS)))
    xtr2 = net.add_node(
        "xtr2",
        configs.xtr(
            "xtr2",
            [XTR2],
            SITE2.prefixes[:1],
            map_server=registering(SITE2),
            **resolving(),
        ),
        answer_pings=True,
    )
    xtr1 = net.add_node(
        "xtr1",
        configs.xtr(
            "xtr1",
            [XTR1_PRIVATE],
            SITE1.prefixes[:1],
            map_server=registering(SITE1),
            nat_traversal={"enabled": True, "info-interval": 5, "keepalive-interval": KEEPALIVE},
            **resolving(),
        ),
        behind=nat,
        answer_pings=True,
    )
    net.advance(3.0)
    return net, nat, ms, rtr, xtr1, xtr2


def test_discovery_and_registration_through_the_nat() -> None:
    net, nat, ms, rtr, xtr1, _xtr2 = world()
    status = xtr1.node.nat_status
    assert status is not None and status.behind_nat
    assert status.global_rloc == ip_address(NAT_PUBLIC) and status.rtrs == (ip_address(RTR),)

    # The Info-Request left xtr1's control port and came back through the NAT's mapping.
    info = [
        d
        for d in net.datagrams("control", sender="xtr1", dst=MS)
        if isinstance(decode_control(d.payload), InfoMessage)
    ]
    assert info and (str(info[0].src), info[0].sport) == (XTR1_PRIVATE, 4342)
    control_port = nat.mappings()[(ip_address(XTR1_PRIVATE), 4342)]
    data_port = nat.mappings()[(ip_address(XTR1_PRIVATE), 4341)]

    # Registered: the translated RLOC and the RTR, proxy-reply set, from the NAT's mapping.
    site1 = [s for s in ms.sites() if s["site"] == "site1"]
    assert [(s["eid-prefix"], s["rlocs"], s["proxy-reply"]) for s in site1] == [
        (SITE1.prefixes[0], [NAT_PUBLIC, RTR], True)
    ]
    assert site1[0]["registered-by"] == f"{NAT_PUBLIC}:{control_port}"
    status_ms = xtr1.node.control.registrar.status(net.now)  # type: ignore[union-attr]
    assert status_ms[0]["acknowledged"]  # the Map-Notify came in through the NAT

    # Keepalives every second from xtr1's data port (an Info-Request behind a data header
    # with instance-ID 0xFFFFFF): the RTR knows the translated port.
    net.settle()
    keepalives = [
        d
        for d in net.datagrams("data", sender="xtr1", dst=RTR)
        if d.control_in_data and isinstance(decode_control(d.payload[8:]), InfoMessage)
    ]
    assert len(keepalives) >= 2 and {(d.sport, d.dport) for d in keepalives} == {(4341, 4341)}
    assert rtr.node.nat_bindings is not None
    assert rtr.node.nat_bindings.port_for(ip_address(NAT_PUBLIC)) == data_port
    assert rtr.packets("rtr.nat-keepalive") == len(keepalives)
    assert xtr1.drops() == {} and rtr.drops() == {} and ms.drops() == {}


def test_traffic_flows_through_the_rtr_both_ways() -> None:
    net, nat, _ms, rtr, xtr1, xtr2 = world()
    start = net.now
    out = Pinger(net, "xtr1", H1, H2)
    back = Pinger(net, "xtr2", H2, H1)
    for _ in range(3):
        out.send()
        net.settle()
        back.send()
        net.settle()
    # Every echo request reached the other host and every reply came back.
    assert out.answered() == [1, 2, 3] and back.answered() == [1, 2, 3]
    assert [(str(p.src), str(p.dst)) for p in xtr2.delivered if p.is_echo_request] == [(H1, H2)] * 3
    assert [(str(p.src), str(p.dst)) for p in xtr1.delivered if p.is_echo_request] == [(H2, H1)] * 3

    # All of it through the RTR: xtr1 and xtr2 never exchanged a data packet directly.
    data = [d for d in net.datagrams("data", since=start) if not d.control_in_data]
    pairs = {(d.sender, str(d.dst)) for d in data}
    assert pairs == {("xtr1", RTR), ("xtr2", RTR), ("rtr", XTR2), ("rtr", NAT_PUBLIC)}
    # To xtr1 the RTR sends from its data port to the NAT's mapping of xtr1's data port.
    to_nat = [d for d in data if d.sender == "rtr" and str(d.dst) == NAT_PUBLIC]
    data_port = nat.mappings()[(ip_address(XTR1_PRIVATE), 4341)]
    assert to_nat and {(d.sport, d.dport) for d in to_nat} == {(4341, data_port)}
    # xtr2 learned site 1 on the RTR (what the Map-Server hands to non-RTRs) ...
    entry = xtr2.lookup(H1)
    assert entry is not None and [str(r.address) for r in entry.rlocs] == [RTR]
    # ... and the RTR learned it on the NAT's public address (for the RTR: the translated one).
    entry = rtr.lookup(H1)
    assert entry is not None and [str(r.address) for r in entry.rlocs] == [NAT_PUBLIC]
    # 3 x (request + reply) each way; the first packet to each site waited at the RTR for its
    # mapping, and a held packet is counted as "itr.encap" when it goes (README, Counters).
    assert rtr.packets("itr.held") == 2 and rtr.packets("itr.encap") == 2
    assert rtr.packets("rtr.reencap") == 10
    assert xtr1.packets("itr.encap") == 6 and xtr1.packets("etr.decap") == 6
    assert nat.stats["inbound-filtered"] == 0 and nat.stats["inbound-no-mapping"] == 0
    assert xtr1.drops() == {} and xtr2.drops() == {} and rtr.drops() == {}


def test_keepalives_hold_the_nat_binding_and_a_nat_reboot_is_followed() -> None:
    net, nat, _ms, rtr, _xtr1, _xtr2 = world()
    back = Pinger(net, "xtr2", H2, H1)
    back.send()
    net.settle()
    assert back.answered() == [1]
    data_port = nat.mappings()[(ip_address(XTR1_PRIVATE), 4341)]

    net.advance(3 * NAT_TIMEOUT)  # quiet, but for keepalives: the mapping stays
    assert nat.mappings()[(ip_address(XTR1_PRIVATE), 4341)] == data_port
    back.send()
    net.settle()
    assert back.answered() == [1, 2]

    # The NAT reboots: its mappings are gone, the next one gets another port.
    nat.reboot(first_port=40000)
    back.send()
    net.settle()
    assert back.answered() == [1, 2]  # lost at the NAT
    assert [lost.reason for lost in net.lost] == ["nat-refused"]
    net.advance(KEEPALIVE)  # the next keepalive makes a new mapping: a new binding ...
    new_port = nat.mappings()[(ip_address(XTR1_PRIVATE), 4341)]
    assert new_port != data_port
    bindings = rtr.node.nat_bindings
    assert bindings is not None and (ip_address(NAT_PUBLIC), new_port) in bindings
    # ... which takes xtr1's prefix only once the old port has missed its keepalives (1.5 of
    # its keepalive gaps): a live binding's prefix is never handed to another port.
    assert bindings.port_for(ip_address(NAT_PUBLIC)) == data_port
    net.advance(KEEPALIVE)
    assert bindings.port_for(ip_address(NAT_PUBLIC)) == new_port
    back.send()
    net.settle()
    assert back.answered() == [1, 2, 4]
