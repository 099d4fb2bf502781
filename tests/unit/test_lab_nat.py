"""NAT in the lab description (no namespaces): masquerade options, 1:1 static NAT and their
nftables text, conntrack UDP timeouts, the NAT and ELP plans' address plans and routing, and
the ctnetlink attribute codec the lab uses to list and flush conntrack entries."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest

from lispd.lab import (
    ElpPlan,
    NatPlan,
    NodeKind,
    StaticNat,
    Topology,
    TopologyError,
    elp_topology,
    nat_topology,
)
from lispd.lab.lab import _ct_tuple, _nla, _nla_parse
from lispd.lab.topology import UDP_TIMEOUT_STREAM_SYSCTL, UDP_TIMEOUT_SYSCTL

PUBLIC = ipaddress.ip_network("192.0.2.0/25")
PRIVATE = ipaddress.ip_network("192.0.2.128/25")


def nat_box(**kw: int) -> tuple[Topology, str]:
    """in (192.0.2.130) - nat - out; returns the topology and the NAT's name."""
    topo = Topology()
    inside, nat, out = topo.host("in"), topo.nat("nat", **kw), topo.host("out")
    topo.link(inside, nat, ["192.0.2.130/30"], ["192.0.2.129/30"])
    topo.link(nat, out, ["192.0.2.1/30"], ["192.0.2.2/30"])
    return topo, nat.name


# -- masquerade and static NAT --------------------------------------------------------------


def test_masquerade_keeps_its_signature_and_text() -> None:
    topo, nat = nat_box()
    topo.masquerade(nat, "to-out")
    node = topo.node(nat)
    assert node.masquerade == ["to-out"] and node.fully_random == []
    assert node.nat_ruleset() == (
        "table ip lab_nat {\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        '    oifname "to-out" masquerade\n'
        "  }\n"
        "}\n"
    )


def test_masquerade_fully_random() -> None:
    topo, nat = nat_box()
    topo.masquerade(nat, "to-out", fully_random=True)
    assert '    oifname "to-out" masquerade fully-random\n' in topo.node(nat).nat_ruleset()
    assert "prerouting" not in topo.node(nat).nat_ruleset()
    with pytest.raises(TopologyError, match="already masqueraded"):
        topo.masquerade(nat, "to-out")
    with pytest.raises(TopologyError, match="no interface"):
        topo.masquerade(nat, "eth9", fully_random=True)


def test_no_nat_no_ruleset() -> None:
    topo, nat = nat_box()
    assert topo.node(nat).nat_ruleset() == ""
    assert topo.node("in").nat_ruleset() == ""


def test_static_nat_ruleset() -> None:
    topo, nat = nat_box()
    topo.masquerade(nat, "to-out", fully_random=True)
    mapping = topo.static_nat(nat, inside="192.0.2.130", outside="192.0.2.100", ifname="to-out")
    assert mapping == StaticNat(
        ipaddress.IPv4Address("192.0.2.130"), ipaddress.IPv4Address("192.0.2.100"), "to-out"
    )
    assert topo.node(nat).nat_ruleset() == (
        "table ip lab_nat {\n"
        "  chain prerouting {\n"
        "    type nat hook prerouting priority dstnat; policy accept;\n"
        "    ip daddr 192.0.2.100 dnat to 192.0.2.130\n"
        "  }\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        '    oifname "to-out" ip saddr 192.0.2.130 snat to 192.0.2.100\n'
        '    oifname "to-out" masquerade fully-random\n'  # after the 1:1 rule: it wins
        "  }\n"
        "}\n"
    )
    topo.validate()


def test_static_nat_errors() -> None:
    topo, nat = nat_box()
    with pytest.raises(TopologyError, match="does not forward"):
        topo.static_nat("in", "192.0.2.130", "192.0.2.100", "to-nat")
    with pytest.raises(TopologyError, match="no interface"):
        topo.static_nat(nat, "192.0.2.130", "192.0.2.100", "eth0")
    with pytest.raises(TopologyError, match="IPv4 only"):
        topo.static_nat(nat, "2001:db8::1", "192.0.2.100", "to-out")
    with pytest.raises(TopologyError, match="IPv4 only"):
        topo.static_nat(nat, "192.0.2.130", "not-an-address", "to-out")
    with pytest.raises(TopologyError, match="documentation"):
        topo.static_nat(nat, "10.0.0.1", "192.0.2.100", "to-out")
    with pytest.raises(TopologyError, match="same address"):
        topo.static_nat(nat, "192.0.2.130", "192.0.2.130", "to-out")
    topo.static_nat(nat, "192.0.2.130", "192.0.2.100", "to-out")
    with pytest.raises(TopologyError, match="clashes"):
        topo.static_nat(nat, "192.0.2.130", "192.0.2.101", "to-out")
    with pytest.raises(TopologyError, match="clashes"):
        topo.static_nat(nat, "192.0.2.131", "192.0.2.100", "to-out")
    topo.validate()


def test_static_nat_outside_address_must_be_free() -> None:
    topo, nat = nat_box()
    topo.static_nat(nat, "192.0.2.130", "192.0.2.2", "to-out")  # "out" already has it
    with pytest.raises(TopologyError, match=r"outside address 192\.0\.2\.2 on nat"):
        topo.validate()


# -- conntrack UDP timeouts -----------------------------------------------------------------


def test_nat_udp_timeouts() -> None:
    topo, nat = nat_box()
    assert topo.node(nat).nat_sysctls() == {}
    topo2, _ = nat_box(udp_timeout=20)
    assert topo2.node("nat").nat_sysctls() == {
        UDP_TIMEOUT_SYSCTL: "20",
        UDP_TIMEOUT_STREAM_SYSCTL: "20",  # defaults to udp_timeout
    }
    topo3, _ = nat_box(udp_timeout=5, udp_timeout_stream=60)
    assert topo3.node("nat").udp_timeout == 5
    assert topo3.node("nat").udp_timeout_stream == 60
    topo4, _ = nat_box(udp_timeout_stream=60)
    assert topo4.node("nat").nat_sysctls() == {UDP_TIMEOUT_STREAM_SYSCTL: "60"}
    for bad in (0, -1, True):
        with pytest.raises(TopologyError, match="positive integer"):
            Topology().nat("n", udp_timeout=bad)
    with pytest.raises(TopologyError, match="positive integer"):
        Topology().nat("n", udp_timeout_stream=0)
    assert UDP_TIMEOUT_SYSCTL == "net.netfilter.nf_conntrack_udp_timeout"
    assert UDP_TIMEOUT_STREAM_SYSCTL == "net.netfilter.nf_conntrack_udp_timeout_stream"


# -- a tiny router: where does a packet from ``src`` to ``dst`` go? ---------------------------


def owner(topo: Topology, addr: str) -> str | None:
    """The node with ``addr`` on an interface, or as a static NAT's outside address."""
    ip = ipaddress.ip_address(addr)
    for link in topo.links:
        for end in (link.left, link.right):
            if any(a.ip == ip for a in end.addresses):
                return end.node
    for node in topo.nodes.values():
        if any(n.outside == ip for n in node.static_nats):
            return node.name
    return None


def walk(topo: Topology, src: str, dst: str) -> list[str]:
    """The nodes a packet crosses from ``src`` to the owner of ``dst`` (longest-prefix match on
    connected subnets and static routes; no NAT translation).  Raises LookupError when a node
    has no route."""
    ip = ipaddress.ip_address(dst)
    path, node = [src], src
    while owner(topo, dst) != node:
        candidates: list[tuple[int, str]] = []
        for end in topo.interfaces(node):
            for a in end.addresses:
                if ip in a.network:
                    peer = next(lk.peer(node) for lk in topo.links if end in (lk.left, lk.right))
                    candidates.append((a.network.prefixlen, peer.node))
        for r in topo.routes:
            if r.node == node and ip in r.dst:
                assert r.via is not None
                nxt = owner(topo, str(r.via))
                assert nxt is not None, f"gateway {r.via} of {node} belongs to nobody"
                candidates.append((r.dst.prefixlen, nxt))
        if not candidates:
            raise LookupError(f"{node} has no route to {dst}")
        node = max(candidates)[1]
        path.append(node)
        assert len(path) < 20, path
    return path


# -- nat_topology ---------------------------------------------------------------------------


def test_nat_plan_nodes_and_addresses() -> None:
    p = nat_topology()
    topo = p.topology
    topo.validate()
    assert isinstance(p, NatPlan) and p.hops == ()
    kinds = {n.name: n.kind for n in topo.nodes.values()}
    assert kinds == {
        "core": NodeKind.ROUTER,
        "ms": NodeKind.LISP,
        "cloudnat": NodeKind.NAT,
        "nat1": NodeKind.NAT,
        "nat2": NodeKind.NAT,
        "rtr1": NodeKind.LISP,
        "gxtr1": NodeKind.LISP,
        "xtr2": NodeKind.LISP,
        "h1": NodeKind.HOST,
        "h2": NodeKind.HOST,
    }
    # the addresses of the plan are where it says
    for node, peer, addr in (
        (p.ms, p.core, p.ms_rloc_v4),
        (p.core, p.ms, p.core_ms_v4),
        (p.cloudnat, p.core, p.cloudnat_public_v4),
        (p.core, p.cloudnat, p.core_cloudnat_v4),
        (p.nat1, p.core, p.nat1_public_v4),
        (p.core, p.nat1, p.core_nat1_v4),
        (p.nat2, p.core, p.nat2_public_v4),
        (p.core, p.nat2, p.core_nat2_v4),
        (p.cloudnat, p.rtr1, p.cloudnat_private_v4),
        (p.rtr1, p.cloudnat, p.rtr1_private_v4),
        (p.nat1, p.gxtr1, p.nat1_private_v4),
        (p.gxtr1, p.nat1, p.gxtr1_rloc_v4),
        (p.nat2, p.xtr2, p.nat2_private_v4),
        (p.xtr2, p.nat2, p.xtr2_rloc_v4),
        (p.gxtr1, p.h1, p.gxtr1_eid_v4),
        (p.h1, p.gxtr1, p.h1_v4),
        (p.xtr2, p.h2, p.xtr2_eid_v4),
        (p.h2, p.xtr2, p.h2_v4),
    ):
        assert topo.addr(node, 4, toward=peer) == addr, (node, peer)
    for node, peer, addr in (
        (p.gxtr1, p.h1, p.gxtr1_eid_v6),
        (p.h1, p.gxtr1, p.h1_v6),
        (p.xtr2, p.h2, p.xtr2_eid_v6),
        (p.h2, p.xtr2, p.h2_v6),
    ):
        assert topo.addr(node, 6, toward=peer) == addr
    # interface names of the public and private links
    for node, peer, ifname in (
        (p.core, p.ms, p.core_ms_if),
        (p.ms, p.core, p.ms_if),
        (p.core, p.cloudnat, p.core_cloudnat_if),
        (p.cloudnat, p.core, p.cloudnat_public_if),
        (p.core, p.nat1, p.core_nat1_if),
        (p.nat1, p.core, p.nat1_public_if),
        (p.core, p.nat2, p.core_nat2_if),
        (p.nat2, p.core, p.nat2_public_if),
        (p.cloudnat, p.rtr1, p.cloudnat_private_if),
        (p.rtr1, p.cloudnat, p.rtr1_if),
        (p.nat1, p.gxtr1, p.nat1_private_if),
        (p.gxtr1, p.nat1, p.gxtr1_rloc_if),
        (p.nat2, p.xtr2, p.nat2_private_if),
        (p.xtr2, p.nat2, p.xtr2_rloc_if),
        (p.gxtr1, p.h1, p.gxtr1_site_if),
        (p.h1, p.gxtr1, p.h1_if),
        (p.xtr2, p.h2, p.xtr2_site_if),
        (p.h2, p.xtr2, p.h2_if),
    ):
        assert topo.interface(node, peer).name == ifname
    # the sites as SiteHandles
    s1, s2 = p.sites
    assert (s1.host, s1.xtr, s1.rloc, s1.router_side) == (
        p.h1,
        p.gxtr1,
        p.gxtr1_rloc_v4,
        p.nat1_private_v4,
    )
    assert (s2.host, s2.xtr, s2.rloc, s2.router_side) == (
        p.h2,
        p.xtr2,
        p.xtr2_rloc_v4,
        p.nat2_private_v4,
    )
    assert (s1.prefix_v4, s1.prefix_v6) == (p.site1_prefix_v4, p.site1_prefix_v6)
    assert (s2.prefix_v4, s2.prefix_v6) == (p.site2_prefix_v4, p.site2_prefix_v6)
    assert (s1.host_v4, s1.host_v6, s1.gateway_v4, s1.gateway_v6) == (
        p.h1_v4, p.h1_v6, p.gxtr1_eid_v4, p.gxtr1_eid_v6,
    )  # fmt: skip
    assert (s2.host_v4, s2.host_v6, s2.gateway_v4, s2.gateway_v6) == (
        p.h2_v4, p.h2_v6, p.xtr2_eid_v4, p.xtr2_eid_v6,
    )  # fmt: skip


def test_nat_plan_address_ranges() -> None:
    p = nat_topology(extra_hops=2)
    topo = p.topology
    eid4, eid6 = ipaddress.ip_network(p.eid_space_v4), ipaddress.ip_network(p.eid_space_v6)
    assert (eid4, eid6) == (
        ipaddress.ip_network("198.51.100.0/24"),
        ipaddress.ip_network("2001:db8:100::/48"),
    )
    assert ipaddress.ip_network(p.public_v4) == PUBLIC
    assert ipaddress.ip_network(p.private_v4) == PRIVATE
    site_nodes = {p.h1, p.h2}
    private_nodes = {p.rtr1, p.gxtr1, p.xtr2}
    private_links: list[ipaddress.IPv4Network] = []
    for link in topo.links:
        ends = {link.left.node, link.right.node}
        addrs = link.left.addresses + link.right.addresses
        if ends & site_nodes:
            assert {a.version for a in addrs} == {4, 6}
            assert all(a.network.subnet_of(eid4 if a.version == 4 else eid6) for a in addrs)  # type: ignore[arg-type]
            assert all(a.network.prefixlen == (28 if a.version == 4 else 64) for a in addrs)
            continue
        assert {a.version for a in addrs} == {4}, "the underlay is IPv4 only"
        assert all(a.network.prefixlen == 30 for a in addrs)
        space = PRIVATE if ends & private_nodes else PUBLIC
        assert all(a.network.subnet_of(space) for a in addrs), ends
        if space is PRIVATE:
            private_links.append(link.left.addresses[0].network)  # type: ignore[arg-type]
    assert len(set(private_links)) == 3
    for addr in (p.nat1_public_v4, p.nat2_public_v4, p.cloudnat_public_v4, p.ms_rloc_v4):
        assert ipaddress.ip_address(addr) in PUBLIC
    assert ipaddress.ip_address(p.rtr1_public_v4) in PUBLIC
    for addr in (p.gxtr1_rloc_v4, p.xtr2_rloc_v4, p.rtr1_private_v4):
        assert ipaddress.ip_address(addr) in PRIVATE


def test_nat_plan_nat_rules() -> None:
    p = nat_topology(nat_udp_timeout=17)
    topo = p.topology
    cloudnat, nat1, nat2 = topo.node(p.cloudnat), topo.node(p.nat1), topo.node(p.nat2)
    assert cloudnat.static_nats == [
        StaticNat(
            ipaddress.IPv4Address(p.rtr1_private_v4),
            ipaddress.IPv4Address(p.rtr1_public_v4),
            p.cloudnat_public_if,
        )
    ]
    assert cloudnat.masquerade == []
    for nat, ifname in ((nat1, p.nat1_public_if), (nat2, p.nat2_public_if)):
        assert nat.masquerade == [ifname] and nat.fully_random == [ifname]
        assert nat.static_nats == []
    for nat in (cloudnat, nat1, nat2):
        assert (nat.udp_timeout, nat.udp_timeout_stream) == (17, 17)
    assert topo.node(p.core).nat_sysctls() == {}
    plain = nat_topology(fully_random=False)
    assert plain.topology.node(p.nat1).fully_random == []
    assert "fully-random" not in plain.topology.node(p.nat1).nat_ruleset()
    assert plain.topology.node(p.nat1).udp_timeout is None


def test_nat_plan_routing() -> None:
    p = nat_topology()
    topo = p.topology
    # xTRs and the RTR reach ms through their NAT and core
    assert walk(topo, p.gxtr1, p.ms_rloc_v4) == [p.gxtr1, p.nat1, p.core, p.ms]
    assert walk(topo, p.xtr2, p.ms_rloc_v4) == [p.xtr2, p.nat2, p.core, p.ms]
    assert walk(topo, p.rtr1, p.ms_rloc_v4) == [p.rtr1, p.cloudnat, p.core, p.ms]
    # core and ms reach every public address, the 1:1 one included ...
    for addr in (p.nat1_public_v4, p.nat2_public_v4, p.cloudnat_public_v4, p.rtr1_public_v4):
        assert walk(topo, p.ms, addr)[-2:] == [p.core, owner(topo, addr)]
    assert owner(topo, p.rtr1_public_v4) == p.cloudnat
    # ... and never the private space
    for addr in (p.gxtr1_rloc_v4, p.xtr2_rloc_v4, p.rtr1_private_v4, p.nat1_private_v4):
        with pytest.raises(LookupError, match="core has no route"):
            walk(topo, p.ms, addr)
    assert not [r for r in topo.routes if r.node == p.core and r.dst.subnet_of(PRIVATE)]  # type: ignore[arg-type]
    # default routes: xTRs via their NAT, hosts via their xTR in both families
    defaults = {(r.node, r.family): str(r.via) for r in topo.routes if r.dst.prefixlen == 0}
    assert defaults[(p.gxtr1, 4)] == p.nat1_private_v4
    assert defaults[(p.xtr2, 4)] == p.nat2_private_v4
    assert defaults[(p.rtr1, 4)] == p.cloudnat_private_v4
    assert defaults[(p.h1, 4)] == p.gxtr1_eid_v4 and defaults[(p.h1, 6)] == p.gxtr1_eid_v6
    assert defaults[(p.h2, 4)] == p.xtr2_eid_v4 and defaults[(p.h2, 6)] == p.xtr2_eid_v6


@pytest.mark.parametrize("hops", [1, 2, 4])
def test_nat_plan_extra_hops(hops: int) -> None:
    p = nat_topology(extra_hops=hops)
    topo = p.topology
    topo.validate()
    assert p.hops == tuple(f"hop{k}" for k in range(1, hops + 1))
    assert all(topo.node(h).kind is NodeKind.ROUTER for h in p.hops)
    assert p.core_nat2_if == "to-hop1" == topo.interface(p.core, "hop1").name
    assert p.nat2_public_if == f"to-hop{hops}" == topo.interface(p.nat2, p.hops[-1]).name
    assert topo.addr(p.nat2, toward=p.hops[-1]) == p.nat2_public_v4
    assert topo.addr(p.hops[-1], toward=p.nat2) == p.core_nat2_v4
    assert walk(topo, p.xtr2, p.ms_rloc_v4) == [p.xtr2, p.nat2, *p.hops[::-1], p.core, p.ms]
    assert walk(topo, p.ms, p.nat2_public_v4) == [p.ms, p.core, *p.hops, p.nat2]
    # every hop address is reachable from ms (traceroute answers come back)
    for hop in p.hops:
        for end in topo.interfaces(hop):
            assert walk(topo, p.ms, str(end.addresses[0].ip))[-1] == hop
    assert topo.node(p.nat2).masquerade == [p.nat2_public_if]


def test_nat_plan_bad_extra_hops() -> None:
    for bad in (-1, 5):
        with pytest.raises(ValueError, match="extra_hops"):
            nat_topology(extra_hops=bad)


# -- elp_topology ---------------------------------------------------------------------------


def test_elp_plan() -> None:
    p = elp_topology()
    topo = p.topology
    topo.validate()
    assert isinstance(p, ElpPlan)
    lisp = (p.xtr1, p.xtr2, p.rtra, p.rtrb, p.ms)
    assert [n.name for n in topo.nodes_of_kind(NodeKind.LISP)] == list(lisp)
    assert [n.name for n in topo.nodes_of_kind(NodeKind.NAT)] == []
    uplinks = {
        p.xtr1: (p.xtr1_rloc_v4, p.core_xtr1_v4, p.xtr1_uplink_if, p.core_xtr1_if),
        p.xtr2: (p.xtr2_rloc_v4, p.core_xtr2_v4, p.xtr2_uplink_if, p.core_xtr2_if),
        p.rtra: (p.rtra_rloc_v4, p.core_rtra_v4, p.rtra_uplink_if, p.core_rtra_if),
        p.rtrb: (p.rtrb_rloc_v4, p.core_rtrb_v4, p.rtrb_uplink_if, p.core_rtrb_if),
        p.ms: (p.ms_rloc_v4, p.core_ms_v4, p.ms_uplink_if, p.core_ms_if),
    }
    nets = set()
    for node, (mine, cores, my_if, core_if) in uplinks.items():
        assert topo.addr(node, toward=p.core) == mine
        assert topo.addr(p.core, toward=node) == cores
        assert topo.interface(node, p.core).name == my_if
        assert topo.interface(p.core, node).name == core_if
        iface = topo.interface(node, p.core)
        assert [a.network.prefixlen for a in iface.addresses] == [30]
        nets.add(iface.addresses[0].network)
    assert len(nets) == 5
    # every LISP node reaches every other directly through core: never through an RTR
    for a in lisp:
        for b in lisp:
            if a != b:
                assert walk(topo, a, uplinks[b][0]) == [a, p.core, b]
    for site, xtr, host in ((p.sites[0], p.xtr1, p.h1), (p.sites[1], p.xtr2, p.h2)):
        assert (site.xtr, site.host) == (xtr, host)
        assert topo.addr(host, 4, toward=xtr) == site.host_v4
        assert topo.addr(host, 6, toward=xtr) == site.host_v6
        assert topo.addr(xtr, 4, toward=host) == site.gateway_v4
        assert topo.addr(xtr, 6, toward=host) == site.gateway_v6
        assert site.rloc == uplinks[xtr][0] and site.router_side == uplinks[xtr][1]
    assert (p.h1_v4, p.h1_v6, p.xtr1_eid_v4, p.xtr1_eid_v6) == (
        "198.51.100.2", "2001:db8:100:1::2", "198.51.100.1", "2001:db8:100:1::1",
    )  # fmt: skip
    assert (p.site2_prefix_v4, p.site2_prefix_v6) == ("198.51.100.16/28", "2001:db8:100:2::/64")
    assert (p.h1_if, p.h2_if, p.xtr1_site_if, p.xtr2_site_if) == (
        topo.interface(p.h1).name,
        topo.interface(p.h2).name,
        topo.interface(p.xtr1, p.h1).name,
        topo.interface(p.xtr2, p.h2).name,
    )


# -- ctnetlink codec ------------------------------------------------------------------------


def test_ctnetlink_tuple_round_trip() -> None:
    ip = _nla(1, socket.inet_aton("192.0.2.134")) + _nla(2, socket.inet_aton("192.0.2.2"))
    l4 = _nla(1, bytes([17])) + _nla(2, struct.pack("!H", 4342)) + _nla(3, struct.pack("!H", 53))
    tup = _nla(1 | 0x8000, ip) + _nla(2 | 0x8000, l4)
    assert len(_nla(1, b"\x11")) == 8  # padded to 4 bytes
    attrs = _nla_parse(_nla(1 | 0x8000, tup) + _nla(18, b"\x00\x00"))
    assert set(attrs) == {1, 18}  # NLA_F_NESTED stripped
    src, dst, proto, sport, dport = _ct_tuple(attrs[1])
    assert (str(src), str(dst), proto, sport, dport) == ("192.0.2.134", "192.0.2.2", 17, 4342, 53)
    ip6 = _nla(3, ipaddress.IPv6Address("2001:db8::1").packed)
    ip6 += _nla(4, ipaddress.IPv6Address("2001:db8::2").packed)
    icmp6 = _nla(1 | 0x8000, ip6) + _nla(2 | 0x8000, _nla(1, bytes([58])) + _nla(4, b"\x00\x07"))
    src, dst, proto, sport, dport = _ct_tuple(icmp6)
    assert (str(src), str(dst), proto, sport, dport) == (
        "2001:db8::1",
        "2001:db8::2",
        58,
        None,
        None,
    )
