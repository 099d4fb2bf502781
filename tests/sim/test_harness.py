"""The harness itself: packet builders, the NAT model, losses, link delays and the clock."""

from __future__ import annotations

import struct
from ipaddress import ip_address

import pytest

from lispd.wire.ip import PROTO_ICMPV6, internet_checksum, parse_udp_datagram
from tests import configs
from tests.sim import network
from tests.sim.network import Nat, Network
from tests.sim.packets import icmp_echo, parse_inner, udp_packet
from tests.sim.plan import H1, H1_V6, H2, H2_V6, MS, SITE1, XTR1, XTR1_V6
from tests.sim.worlds import database, site_xtr


@pytest.mark.parametrize(("src", "dst"), [(H1, H2), (H1_V6, H2_V6)])
def test_inner_packets_are_well_formed(src: str, dst: str) -> None:
    echo = icmp_echo(src, dst, ident=7, seq=9, payload=b"abc")
    inner = parse_inner(echo)
    assert (str(inner.src), str(inner.dst), inner.ident, inner.seq) == (src, dst, 7, 9)
    assert inner.is_echo_request and inner.payload == b"abc"
    body = echo[20:] if inner.src.version == 4 else echo[40:]
    if inner.src.version == 4:
        assert internet_checksum(body) == 0
    else:
        pseudo = inner.src.packed + inner.dst.packed + struct.pack("!I3xB", len(body), 58)
        assert inner.proto == PROTO_ICMPV6 and internet_checksum(pseudo + body) == 0
    reply = parse_inner(inner.echo_reply())
    assert reply.is_echo_reply and (reply.src, reply.dst, reply.seq) == (inner.dst, inner.src, 9)

    datagram = udp_packet(src, dst, 1234, 53, b"query")
    udp = parse_udp_datagram(datagram, verify_checksum=True)
    assert (udp.sport, udp.dport, udp.payload) == (1234, 53, b"query")
    assert parse_inner(datagram).dport == 53


def test_nat_mapping_is_endpoint_independent_and_filters_inbound() -> None:
    nat = Nat(
        "nat", ip_address("192.0.2.100"), timeout=10.0, filtering="address-and-port-dependent"
    )
    a, ms, rtr = ip_address("203.0.113.2"), ip_address(MS), ip_address("192.0.2.20")
    port = nat.outbound(a, 4341, rtr, 4341, now=0.0)
    assert nat.outbound(a, 4341, ms, 4342, now=1.0) == port  # one mapping, any destination
    assert nat.outbound(a, 4342, ms, 4342, now=1.0) != port  # another private port
    assert nat.inbound(rtr, 4341, port, now=2.0) == (a, 4341)
    assert nat.inbound(rtr, 9999, port, now=2.0) is None  # never sent to that port
    assert nat.inbound(rtr, 4341, port + 100, now=2.0) is None  # no such mapping
    assert nat.inbound(rtr, 4341, port, now=11.5) is None  # unused for 10 s: gone
    assert nat.stats["expired"] == 2 and nat.mappings() == {}
    open_nat = Nat("open", ip_address("192.0.2.101"))
    port = open_nat.outbound(a, 4341, rtr, 4341, now=0.0)
    assert open_nat.inbound(ms, 1, port, now=1e6) == (a, 4341)  # anyone, forever


def test_lost_datagrams_say_why() -> None:
    """A static entry to an address nobody has, to a Map-Server (no data port) and to a node
    behind a NAT (not routed): every packet is lost, with its reason."""
    net = Network()
    net.add_node("ms", configs.msmr("ms", [MS], [SITE1.table()]))
    nat = net.add_nat("nat", "192.0.2.100")
    hidden = configs.node(
        "hidden", ["etr"], ["203.0.113.2"], database_mapping=database(SITE1, "203.0.113.2")
    )
    net.add_node("hidden", hidden, behind=nat)
    targets = {  # a host of each prefix -> the RLOC of the static entry
        "198.51.100.33": ("198.51.100.32/28", "192.0.2.99"),
        "198.51.100.49": ("198.51.100.48/28", MS),
        "198.51.100.65": ("198.51.100.64/28", "203.0.113.2"),
    }
    xtr = configs.xtr(
        "xtr1",
        [XTR1],
        ["198.51.100.0/28"],
        map_cache=[configs.mapping(p, r) for p, r in targets.values()],
        probing={"interval": 10, "timeout": 3, "map-cache": False},
    )
    net.add_node("xtr1", xtr)
    for host in targets:
        net.inject("xtr1", icmp_echo(H1, host))
    net.settle()
    assert sorted(lost.reason for lost in net.lost if lost.datagram.kind == "data") == [
        "port-unreachable",
        "private-address",
        "unknown-address",
    ]
    assert net["xtr1"].packets("itr.encap") == 3  # sent, as far as xtr1 can tell


def test_link_delays_and_the_clock() -> None:
    net = Network(delay=0.01)
    net.set_delay("xtr1", "ms", 0.25)
    ms = net.add_node("ms", configs.msmr("ms", [MS], [SITE1.table()]))
    xtr = net.add_node("xtr1", site_xtr("xtr1", (XTR1, XTR1_V6), SITE1))
    start = net.now
    net.advance(0.4)
    assert ms.sites() and xtr.node.control.registrar is not None
    assert not xtr.node.control.registrar.status(net.now)[0]["acknowledged"]  # in flight
    assert net.in_flight == 1
    net.advance(0.2)
    status = xtr.node.control.registrar.status(net.now)[0]
    assert status["acknowledged"] and status["last-acked"] == pytest.approx(start + 0.5)
    assert net.now == pytest.approx(start + 0.6)
    assert [r for _name, r in net.received] and all(
        a.time <= b.time for a, b in zip(net.sent, net.sent[1:], strict=False)
    )


def test_the_example_in_the_module_docstring_runs() -> None:
    """The "Writing a scenario" example of :mod:`tests.sim.network` stays true."""
    doc = network.__doc__ or ""
    start = doc.index("    from tests import configs")
    end = doc.index("\n\n", start)
    code = "\n".join(line[4:] for line in doc[start:end].splitlines())
    exec(compile(code, "tests/sim/network.py:docstring", "exec"), {})


def test_a_node_added_unstarted_does_nothing_until_started() -> None:
    net = Network()
    xtr = net.add_node("xtr1", site_xtr("xtr1", (XTR1, XTR1_V6), SITE1), start=False)
    ms = net.add_node("ms", configs.msmr("ms", [MS], [SITE1.table()]))
    net.advance(5.0)
    assert list(net.datagrams(sender="xtr1")) == [] and ms.sites() == []
    net.start("xtr1")  # now the mapping system is there: registered at once
    net.advance(0.1)
    assert len(ms.sites()) == 2 and xtr.node.control.registrar is not None
    assert xtr.node.control.registrar.status(net.now)[0]["acknowledged"]
