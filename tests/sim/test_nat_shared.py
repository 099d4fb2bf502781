"""NAT traversal with two xTRs behind ONE NAT address (the carrier-grade / cloud NAT case).

xtr1 (site 1) and xtr3 (site 3) sit behind the same NAT, so the Map-Server registers both sites
on the NAT's one public address; the NAT gives each xTR's data flow its own translated port.
The RTR keeps one binding per xTR (lispd.node.natbindings): each site's traffic goes to its own
xTR's port, a NAT rebinding one xTR moves only that xTR's prefix, a keepalive spoofed from the
NAT's address takes nothing from a live xTR, a silent xTR's binding expires, and the table stays
within ``max-nat-bindings``.  xtr2 (site 2) is on the public side."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from lispd.wire.address import eid_prefix, split_eid
from lispd.wire.control import encode_control
from lispd.wire.data import IID_CONTROL, build_data_header
from lispd.wire.info import InfoMessage
from lispd.wire.maprequest import decode_map_request
from tests import configs
from tests.sim.network import Nat, Network, SimNode
from tests.sim.plan import (
    EID_SPACE,
    H1,
    H2,
    MS,
    NAT_PUBLIC,
    RTR,
    SITE1,
    SITE2,
    XTR1_PRIVATE,
    XTR2,
    Site,
)
from tests.sim.worlds import Pinger, registering, resolving

KEEPALIVE = 1.0
BINDING_TIMEOUT = 10.0
XTR3_PRIVATE = "203.0.113.3"  # xtr3, behind the same NAT as xtr1
SITE3 = Site("site3", "key-site-three", ("198.51.100.32/28",))
H3 = "198.51.100.33"
PUBLIC = ip_address(NAT_PUBLIC)


def world(max_bindings: int = 100) -> tuple[Network, Nat, SimNode, SimNode, SimNode, SimNode]:
    """(net, nat, rtr, xtr1, xtr3, xtr2), registered and keeping their bindings, after 3 s."""
    net = Network()
    nat = net.add_nat("nat", NAT_PUBLIC, timeout=30.0, filtering="address-and-port-dependent")
    net.add_node(
        "ms",
        configs.msmr(
            "ms",
            [MS],
            [SITE1.table(), SITE2.table(), SITE3.table()],
            mapping_system={"rtr-rlocs": [RTR]},
        ),
    )
    rtr = net.add_node(
        "rtr",
        configs.rtr(
            "rtr",
            [RTR],
            map_resolver=configs.addresses(MS),
            rtr={"nat-binding-timeout": BINDING_TIMEOUT, "max-nat-bindings": max_bindings},
        ),
    )
    xtr2 = net.add_node(
        "xtr2",
        configs.xtr(
            "xtr2", [XTR2], SITE2.prefixes[:1], map_server=registering(SITE2), **resolving()
        ),
        answer_pings=True,
    )
    nated = []
    for name, private, site in (("xtr1", XTR1_PRIVATE, SITE1), ("xtr3", XTR3_PRIVATE, SITE3)):
        nated.append(
            net.add_node(
                name,
                configs.xtr(
                    name,
                    [private],
                    site.prefixes[:1],
                    map_server=registering(site),
                    nat_traversal={
                        "enabled": True,
                        "info-interval": 5,
                        "keepalive-interval": KEEPALIVE,
                    },
                    **resolving(EID_SPACE[:1]),
                ),
                behind=nat,
                answer_pings=True,
            )
        )
    net.advance(3.0)
    return net, nat, rtr, nated[0], nated[1], xtr2


def data_port(nat: Nat, private: str) -> int:
    """The NAT's public port for ``private``'s LISP data flow."""
    return nat.mappings()[(ip_address(private), 4341)]


def site_port(rtr: SimNode, prefix: str) -> int | None:
    """The port the RTR sends the site of ``prefix`` to."""
    bindings = rtr.node.nat_bindings
    assert bindings is not None
    return bindings.port_for(PUBLIC, 0, ip_network(prefix))


def ping_round(net: Network, pingers: list[Pinger]) -> None:
    """One echo request from each pinger at the same moment, then let everything settle."""
    for p in pingers:
        p.send()
    net.settle()


def test_two_xtrs_behind_one_nat_address_are_reachable_at_the_same_time() -> None:
    net, nat, rtr, xtr1, xtr3, xtr2 = world()
    ms = net["ms"]
    # Both sites are registered on the NAT's one public address (and the RTR).
    rlocs = {s["eid-prefix"]: s["rlocs"] for s in ms.sites()}
    assert rlocs[SITE1.prefixes[0]] == rlocs[SITE3.prefixes[0]] == [NAT_PUBLIC, RTR]
    port1, port3 = data_port(nat, XTR1_PRIVATE), data_port(nat, XTR3_PRIVATE)
    assert port1 != port3
    # The RTR holds one binding per xTR, each claiming its own site's prefix.
    assert site_port(rtr, SITE1.prefixes[0]) == port1
    assert site_port(rtr, SITE3.prefixes[0]) == port3
    rows = rtr.node.nat_bindings.states(net.now)  # type: ignore[union-attr]
    assert sorted((r["port"], tuple(r["eid-prefixes"])) for r in rows) == sorted(  # type: ignore[type-var]
        [(port1, (f"[0]{SITE1.prefixes[0]}",)), (port3, (f"[0]{SITE3.prefixes[0]}",))]
    )

    start = net.now
    pingers = [
        Pinger(net, "xtr2", H2, H1),
        Pinger(net, "xtr2", H2, H3),
        Pinger(net, "xtr1", H1, H3),  # between the two NATed sites: out and back in the NAT
        Pinger(net, "xtr3", H3, H1),
        Pinger(net, "xtr1", H1, H2),
        Pinger(net, "xtr3", H3, H2),
    ]
    for _ in range(3):
        ping_round(net, pingers)
    for p in pingers:
        assert p.answered() == [1, 2, 3], (p.node, p.dst)
    # Each site's packets reached its own xTR and nobody else's.
    assert {str(p.dst) for p in xtr1.delivered if p.is_echo_request} == {H1}
    assert {str(p.dst) for p in xtr3.delivered if p.is_echo_request} == {H3}
    # The RTR sent each site's traffic to that xTR's translated port, from its data port.
    to_nat = [
        d
        for d in net.datagrams("data", since=start, sender="rtr", dst=NAT_PUBLIC)
        if not d.control_in_data
    ]
    by_port = {
        dport: {str(d.inner().dst) for d in to_nat if d.dport == dport} for dport in (port1, port3)
    }
    assert by_port == {port1: {H1}, port3: {H3}}
    assert {d.sport for d in to_nat} == {4341} and {d.dport for d in to_nat} == {port1, port3}
    # The RTR's RLOC probes of the shared address go to the xTR whose EID-prefix they name
    # (a probe of site 3 reaching xtr1 would be dropped there as request-not-our-eid).
    probed = []
    for d in net.datagrams("data", sender="rtr", dst=NAT_PUBLIC):
        if d.control_in_data and d.payload[8] >> 4 == 1:  # a Map-Request (probe)
            record = decode_map_request(d.payload[8:]).records[0]
            probed.append((d.dport, str(split_eid(record.address, record.mask_len)[1])))
    assert probed and set(probed) <= {(port1, SITE1.prefixes[0]), (port3, SITE3.prefixes[0])}
    assert nat.stats["inbound-filtered"] == 0 and nat.stats["inbound-no-mapping"] == 0
    for node in (rtr, xtr1, xtr2, xtr3):
        assert node.drops() == {}, node.name


def test_a_nat_rebinding_one_xtr_moves_only_its_site() -> None:
    net, nat, rtr, _xtr1, _xtr3, _xtr2 = world()
    to1, to3 = Pinger(net, "xtr2", H2, H1), Pinger(net, "xtr2", H2, H3)
    ping_round(net, [to1, to3])
    port1, port3 = data_port(nat, XTR1_PRIVATE), data_port(nat, XTR3_PRIVATE)

    # The NAT loses xtr3's data mapping; xtr3's next keepalive gets a new port.
    nat.forget(XTR3_PRIVATE, 4341, first_port=40000)
    net.advance(KEEPALIVE)
    assert data_port(nat, XTR3_PRIVATE) == 40000
    bindings = rtr.node.nat_bindings
    assert bindings is not None and (PUBLIC, 40000) in bindings
    # xtr3's old port has not missed its keepalives long enough: the RTR keeps it one more
    # round (a live binding's prefix is never handed to another port) ...
    assert site_port(rtr, SITE3.prefixes[0]) == port3
    net.advance(KEEPALIVE)
    # ... then site 3 moves to the new port; site 1 never moved.
    assert site_port(rtr, SITE3.prefixes[0]) == 40000
    assert site_port(rtr, SITE1.prefixes[0]) == port1 == data_port(nat, XTR1_PRIVATE)
    ping_round(net, [to1, to3])
    assert to1.answered() == [1, 2] and to3.answered() == [1, 2]
    assert bindings.stats["claim-moved"] == 1  # only site 3's prefix
    # The new port's first keepalive, refused while the old port still looked alive.
    assert rtr.drops() == {"nat-binding-eid-held": 1}


def keepalive(prefix: str) -> bytes:
    """A keepalive naming ``prefix``, as an xTR sends it (data header, instance-ID 0xFFFFFF)."""
    eid, mask_len = eid_prefix(0, prefix)
    info = InfoMessage(nonce=0x5EED, ttl=1440, eid=eid, eid_mask_len=mask_len)
    return build_data_header(0x5EED & 0xFFFFFF, IID_CONTROL) + encode_control(info)


def test_a_keepalive_spoofed_from_the_nat_address_steals_nothing() -> None:
    net, nat, rtr, _xtr1, _xtr3, _xtr2 = world()
    to1, to3 = Pinger(net, "xtr2", H2, H1), Pinger(net, "xtr2", H2, H3)
    port1, port3 = data_port(nat, XTR1_PRIVATE), data_port(nat, XTR3_PRIVATE)
    # Someone who can send from the NAT's address claims site 1 from port 6666, and site 3
    # from xtr1's own port, a hundred times over ten seconds.
    for k in range(100):
        rtr.node.data_datagram(keepalive(SITE1.prefixes[0]), 64, 0, NAT_PUBLIC, 6666, net.now)
        rtr.node.data_datagram(keepalive(SITE3.prefixes[0]), 64, 0, NAT_PUBLIC, port1, net.now)
        net.advance(0.1)
        if k % 10 == 0:
            ping_round(net, [to1, to3])
    assert to1.answered() == to3.answered() == list(range(1, 11))
    assert site_port(rtr, SITE1.prefixes[0]) == port1 and site_port(rtr, SITE3.prefixes[0]) == port3
    assert rtr.drops() == {"nat-binding-eid-held": 200}
    assert rtr.node.nat_bindings.stats["claim-moved"] == 0  # type: ignore[union-attr]


def test_a_silent_xtr_expires_and_the_other_keeps_working() -> None:
    net, nat, rtr, _xtr1, _xtr3, _xtr2 = world()
    port1, port3 = data_port(nat, XTR1_PRIVATE), data_port(nat, XTR3_PRIVATE)
    bindings = rtr.node.nat_bindings
    assert bindings is not None and len(bindings) == 2
    net.take_down("xtr3")
    net.advance(BINDING_TIMEOUT + 2 * KEEPALIVE)
    assert (PUBLIC, port3) not in bindings and (PUBLIC, port1) in bindings
    assert len(bindings) == 1 and bindings.stats["expired"] == 1
    # Site 3 now falls back to the address's remaining binding (xtr1 would drop it: not its
    # EID); site 1 still works.
    assert site_port(rtr, SITE3.prefixes[0]) == port1
    to1 = Pinger(net, "xtr2", H2, H1)
    ping_round(net, [to1])
    assert to1.answered() == [1]


def test_max_nat_bindings_holds_with_many_xtrs_behind_one_address() -> None:
    """A table of 3: xtr1, xtr3 and one more fit; forty spoofed new ports evict the least
    recently refreshed bindings, the table never grows past 3, and the real xTRs come back
    with their next keepalive."""
    net, nat, rtr, _xtr1, _xtr3, _xtr2 = world(max_bindings=3)
    bindings = rtr.node.nat_bindings
    assert bindings is not None and len(bindings) == 2
    for k in range(40):
        rtr.node.data_datagram(keepalive("198.51.100.128/28"), 64, 0, NAT_PUBLIC, 7000 + k, net.now)
        assert len(bindings) <= 3
    assert bindings.drops["nat-binding-evicted"] == 39
    net.advance(2 * KEEPALIVE)
    assert len(bindings) == 3
    assert site_port(rtr, SITE1.prefixes[0]) == data_port(nat, XTR1_PRIVATE)
    assert site_port(rtr, SITE3.prefixes[0]) == data_port(nat, XTR3_PRIVATE)
    to1, to3 = Pinger(net, "xtr2", H2, H1), Pinger(net, "xtr2", H2, H3)
    ping_round(net, [to1, to3])
    assert to1.answered() == [1] and to3.answered() == [1]
