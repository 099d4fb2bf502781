"""The declarative description of a lab: nodes, point-to-point links and static routes.

Nothing here touches the OS: a :class:`Topology` is plain data that :class:`lispd.lab.Lab`
turns into network namespaces.  Write one like this::

    topo = Topology()
    a = topo.host("a")
    x1 = topo.lisp_router("xtr1")
    r = topo.router("r")
    topo.link(a, x1, ["198.51.100.2/28", "2001:db8:100:1::2/64"],
                     ["198.51.100.1/28", "2001:db8:100:1::1/64"])
    topo.link(x1, r, ["192.0.2.2/30", "2001:db8:0:1::2/64"],
                     ["192.0.2.1/30", "2001:db8:0:1::1/64"], mtu=1500)
    topo.route(a, "default", via="198.51.100.1")
    topo.route(a, "default", via="2001:db8:100:1::1")

Nodes
    ``host`` (no forwarding), ``router`` (forwarding), ``lisp_router`` (forwarding; will run
    lispd), ``nat`` (forwarding; optional conntrack UDP timeouts).  Names are 1-12 characters
    ``[a-z0-9-]`` starting with a letter, so that the default interface name ``to-<peer>`` fits
    the kernel's 15-character limit.

NAT (nftables table ``ip lab_nat``, IPv4 only; :meth:`Node.nat_ruleset` is its text)
    ``topo.masquerade(nat, "to-core", fully_random=True)``: source NAT of what leaves that
    interface to the interface's address (``masquerade fully-random``: random source ports,
    an endpoint-dependent NAT as most home and carrier NATs behave).
    ``topo.static_nat(nat, inside="192.0.2.130", outside="192.0.2.100", ifname="to-core")``:
    1:1 NAT as a cloud provider's elastic address: packets for ``outside`` are
    destination-NATed to ``inside`` (whatever interface they come in on), packets from
    ``inside`` leaving ``ifname`` get source ``outside`` (ports kept).  The lab adds
    ``outside/32`` to ``ifname`` so that the node answers ARP for it; a neighbour still needs
    a route to it (or the address must lie in the link's subnet).  Static rules come before
    masquerade ones, so the inside host keeps its own public address.
    ``topo.nat("nat1", udp_timeout=20)`` sets ``net.netfilter.nf_conntrack_udp_timeout``
    (unreplied flows) and ``..._udp_timeout_stream`` (flows with replies; defaults to the same
    value) in the node, i.e. how long an idle UDP NAT binding lives.

Links
    One veth pair between two nodes.  Each end gets a list of addresses with prefix length
    (IPv4 and/or IPv6; IPv6 is configured with ``nodad``) and an interface name, by default
    ``to-<peer>`` (give ``names=(left, right)`` when two nodes share more than one link).
    ``mtu`` sets both ends.

Routes
    ``topo.route(node, dst, via=..., dev=...)``: ``dst`` is a prefix or ``"default"`` (the
    family then comes from ``via``).  A gateway must lie in a subnet of one of the node's
    links (checked by :meth:`Topology.validate`) unless ``dev`` names the interface.

Addresses
    By default only the documentation ranges are accepted (192.0.2.0/24, 198.51.100.0/24,
    203.0.113.0/24, 2001:db8::/32, plus IPv6 link-local), as the project's address plan
    requires; ``Topology(doc_ranges_only=False)`` lifts that.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "DOCUMENTATION_NETWORKS",
    "UDP_TIMEOUT_STREAM_SYSCTL",
    "UDP_TIMEOUT_SYSCTL",
    "IPAddress",
    "IPInterface",
    "IPNetwork",
    "Interface",
    "Link",
    "Node",
    "NodeKind",
    "NodeRef",
    "Route",
    "StaticNat",
    "Topology",
    "TopologyError",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Address ranges a topology may use unless ``doc_ranges_only=False`` (RFC 5737, RFC 3849;
#: link-local IPv6 because every interface has it anyway).
DOCUMENTATION_NETWORKS: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("192.0.2.0/24"),
    ipaddress.ip_network("198.51.100.0/24"),
    ipaddress.ip_network("203.0.113.0/24"),
    ipaddress.ip_network("2001:db8::/32"),
    ipaddress.ip_network("fe80::/10"),
)

#: The conntrack sysctls set by ``udp_timeout``/``udp_timeout_stream``.
UDP_TIMEOUT_SYSCTL = "net.netfilter.nf_conntrack_udp_timeout"
UDP_TIMEOUT_STREAM_SYSCTL = "net.netfilter.nf_conntrack_udp_timeout_stream"

IFNAME_MAX = 15  # IFNAMSIZ - 1
NODE_NAME_MAX = 12  # so that "to-" + name fits IFNAME_MAX
_NODE_NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class TopologyError(ValueError):
    """A topology description that cannot be built (bad name, address, route...)."""


@dataclass(frozen=True)
class StaticNat:
    """A 1:1 NAT on a node: ``inside`` <-> ``outside``, the latter published on ``ifname``."""

    inside: ipaddress.IPv4Address
    outside: ipaddress.IPv4Address
    ifname: str

    def rules(self) -> tuple[str, str]:
        """The nftables (prerouting, postrouting) rules of this mapping."""
        return (
            f"ip daddr {self.outside} dnat to {self.inside}",
            f'oifname "{self.ifname}" ip saddr {self.inside} snat to {self.outside}',
        )


class NodeKind(enum.Enum):
    """What a node is; decides IP forwarding and tells users (demo, tests) its role."""

    HOST = "host"
    ROUTER = "router"
    LISP = "lisp"
    NAT = "nat"


@dataclass
class Node:
    """One network namespace.

    ``forwarding`` is on for every kind but ``HOST``; ``sysctls`` are extra ``key: value``
    settings applied in the namespace after the lab's defaults; ``masquerade`` lists the
    interfaces on which an nftables masquerade (source NAT) is installed, ``fully_random``
    those of them whose masquerade uses random ports; ``static_nats`` are 1:1 NATs;
    ``udp_timeout``/``udp_timeout_stream`` the conntrack UDP timeouts in seconds (None: the
    kernel's, 30 and 120 s by default).
    """

    name: str
    kind: NodeKind
    sysctls: dict[str, str] = field(default_factory=dict)
    masquerade: list[str] = field(default_factory=list)
    fully_random: list[str] = field(default_factory=list)
    static_nats: list[StaticNat] = field(default_factory=list)
    udp_timeout: int | None = None
    udp_timeout_stream: int | None = None

    @property
    def forwarding(self) -> bool:
        """Whether the node forwards IPv4 and IPv6 packets."""
        return self.kind is not NodeKind.HOST

    def nat_sysctls(self) -> dict[str, str]:
        """The conntrack UDP timeout sysctls of this node (empty when none is set)."""
        out = {}
        if self.udp_timeout is not None:
            out[UDP_TIMEOUT_SYSCTL] = str(self.udp_timeout)
        if self.udp_timeout_stream is not None:
            out[UDP_TIMEOUT_STREAM_SYSCTL] = str(self.udp_timeout_stream)
        return out

    def nat_ruleset(self) -> str:
        """The nftables script of this node's NAT (table ``ip lab_nat``), "" without NAT.

        A ``prerouting`` chain (priority dstnat) holds the static NATs' DNAT rules; a
        ``postrouting`` chain (priority srcnat) their SNAT rules, then the masquerades.
        """
        pre = [nat.rules()[0] for nat in self.static_nats]
        post = [nat.rules()[1] for nat in self.static_nats]
        for ifname in self.masquerade:
            random = " fully-random" if ifname in self.fully_random else ""
            post.append(f'oifname "{ifname}" masquerade{random}')
        if not pre and not post:
            return ""
        text = "table ip lab_nat {\n"
        for chain, hook, prio, rules in (
            ("prerouting", "prerouting", "dstnat", pre),
            ("postrouting", "postrouting", "srcnat", post),
        ):
            if rules:
                text += f"  chain {chain} {{\n"
                text += f"    type nat hook {hook} priority {prio}; policy accept;\n"
                text += "".join(f"    {rule}\n" for rule in rules)
                text += "  }\n"
        return text + "}\n"


NodeRef = Node | str


@dataclass
class Interface:
    """One end of a link: the interface ``name`` in ``node`` with its ``addresses``."""

    node: str
    name: str
    addresses: list[IPInterface]

    def address(self, family: int) -> IPInterface | None:
        """The first address of ``family`` (4 or 6) on this end, or None."""
        return next((a for a in self.addresses if a.version == family), None)


@dataclass
class Link:
    """A veth pair between ``left.node`` and ``right.node``; ``mtu`` applies to both ends."""

    left: Interface
    right: Interface
    mtu: int | None = None

    def end(self, node: NodeRef) -> Interface:
        """The end of this link that lies in ``node``."""
        name = _name(node)
        if self.left.node == name:
            return self.left
        if self.right.node == name:
            return self.right
        raise TopologyError(f"link {self.left.node}-{self.right.node} does not touch {name}")

    def peer(self, node: NodeRef) -> Interface:
        """The end of this link that does not lie in ``node``."""
        end = self.end(node)
        return self.right if end is self.left else self.left


@dataclass
class Route:
    """A static route in ``node``: ``dst`` via gateway ``via`` and/or out of interface ``dev``."""

    node: str
    dst: IPNetwork
    via: IPAddress | None = None
    dev: str | None = None
    metric: int | None = None

    @property
    def family(self) -> int:
        """4 or 6."""
        return self.dst.version

    def ip_args(self) -> list[str]:
        """Arguments after ``ip route add`` (a prefix, not ``default``: it tells the family)."""
        args = [str(self.dst)]
        if self.via is not None:
            args += ["via", str(self.via)]
        if self.dev is not None:
            args += ["dev", self.dev]
        if self.metric is not None:
            args += ["metric", str(self.metric)]
        return args


def _name(node: NodeRef) -> str:
    return node.name if isinstance(node, Node) else node


@dataclass
class Topology:
    """Nodes, links and routes; build it with the methods below, then hand it to ``Lab``."""

    nodes: dict[str, Node] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    doc_ranges_only: bool = True

    # -- nodes --------------------------------------------------------------------------

    def add_node(self, name: str, kind: NodeKind, sysctls: dict[str, str] | None = None) -> Node:
        """Add and return a node of ``kind``; names are unique, 1-12 chars of ``[a-z0-9-]``."""
        if not _NODE_NAME_RE.match(name) or len(name) > NODE_NAME_MAX:
            raise TopologyError(
                f"node name {name!r}: use 1-{NODE_NAME_MAX} characters [a-z0-9-], "
                "starting with a letter"
            )
        if name in self.nodes:
            raise TopologyError(f"node {name!r} already exists")
        node = Node(name, kind, dict(sysctls or {}))
        self.nodes[name] = node
        return node

    def host(self, name: str, *, sysctls: dict[str, str] | None = None) -> Node:
        """Add an end host (no forwarding)."""
        return self.add_node(name, NodeKind.HOST, sysctls)

    def router(self, name: str, *, sysctls: dict[str, str] | None = None) -> Node:
        """Add a plain IP router (IPv4 and IPv6 forwarding on)."""
        return self.add_node(name, NodeKind.ROUTER, sysctls)

    def lisp_router(self, name: str, *, sysctls: dict[str, str] | None = None) -> Node:
        """Add a router that will run lispd (xTR, RTR, PxTR, MS/MR); forwarding on."""
        return self.add_node(name, NodeKind.LISP, sysctls)

    def nat(
        self,
        name: str,
        *,
        sysctls: dict[str, str] | None = None,
        udp_timeout: int | None = None,
        udp_timeout_stream: int | None = None,
    ) -> Node:
        """Add a NAT box (forwarding on); then call :meth:`masquerade` and/or
        :meth:`static_nat` for its outside interface.

        ``udp_timeout``: seconds an idle UDP conntrack entry (so a NAT binding) lives before a
        reply was seen (``nf_conntrack_udp_timeout``); ``udp_timeout_stream``: after a reply
        (``nf_conntrack_udp_timeout_stream``), by default ``udp_timeout`` as well.
        """
        for label, value in (("udp_timeout", udp_timeout), ("stream", udp_timeout_stream)):
            if value is not None and (isinstance(value, bool) or not 1 <= value <= 2**31 - 1):
                raise TopologyError(f"nat {name}: {label} {value!r} is not a positive integer")
        node = self.add_node(name, NodeKind.NAT, sysctls)
        node.udp_timeout = udp_timeout
        node.udp_timeout_stream = udp_timeout if udp_timeout_stream is None else udp_timeout_stream
        return node

    def nodes_of_kind(self, *kinds: NodeKind) -> list[Node]:
        """The nodes whose kind is one of ``kinds``, in the order they were added."""
        return [n for n in self.nodes.values() if n.kind in kinds]

    def node(self, node: NodeRef) -> Node:
        """The node called ``node`` (or ``node`` itself), checked to belong to this topology."""
        name = _name(node)
        try:
            return self.nodes[name]
        except KeyError:
            raise TopologyError(f"no node {name!r} in the topology") from None

    # -- links and routes ---------------------------------------------------------------

    def link(
        self,
        left: NodeRef,
        right: NodeRef,
        left_addrs: Iterable[str] = (),
        right_addrs: Iterable[str] = (),
        *,
        mtu: int | None = None,
        names: tuple[str, str] | None = None,
    ) -> Link:
        """Add a veth pair between ``left`` and ``right`` and return it.

        ``left_addrs``/``right_addrs`` are ``"address/prefixlen"`` strings (IPv4 or IPv6);
        ``names`` overrides the interface names (default ``to-<peer>`` on each side).
        """
        ln, rn = self.node(left).name, self.node(right).name
        if ln == rn:
            raise TopologyError(f"link from {ln!r} to itself")
        lname, rname = names if names is not None else (f"to-{rn}", f"to-{ln}")
        if mtu is not None and not 68 <= mtu <= 65535:
            raise TopologyError(f"link {ln}-{rn}: mtu {mtu} is outside 68..65535")
        link = Link(
            Interface(ln, self._ifname(ln, lname), self._addresses(ln, left_addrs)),
            Interface(rn, self._ifname(rn, rname), self._addresses(rn, right_addrs)),
            mtu,
        )
        self.links.append(link)
        return link

    def route(
        self,
        node: NodeRef,
        dst: str,
        via: str | None = None,
        *,
        dev: str | None = None,
        metric: int | None = None,
    ) -> Route:
        """Add a static route ``dst`` (prefix or ``"default"``) via ``via`` and/or ``dev``."""
        name = self.node(node).name
        if via is None and dev is None:
            raise TopologyError(f"route {dst} on {name}: give via= or dev=")
        gw = None
        if via is not None:
            try:
                gw = ipaddress.ip_address(via)
            except ValueError as exc:
                raise TopologyError(f"route {dst} on {name}: {exc}") from None
        if dst == "default":
            if gw is None:
                raise TopologyError(
                    f"route default on {name}: without via, write 0.0.0.0/0 or ::/0"
                )
            net: IPNetwork = ipaddress.ip_network("0.0.0.0/0" if gw.version == 4 else "::/0")
        else:
            try:
                net = ipaddress.ip_network(dst)
            except ValueError as exc:
                raise TopologyError(f"route {dst} on {name}: {exc}") from None
        if gw is not None and gw.version != net.version:
            raise TopologyError(f"route {dst} on {name}: gateway {via} is of the other family")
        if net.prefixlen:
            self._check_doc(name, net)
        if dev is not None and all(i.name != dev for i in self.interfaces(name)):
            raise TopologyError(f"route {dst} on {name}: no interface {dev!r}")
        r = Route(name, net, gw, dev, metric)
        self.routes.append(r)
        return r

    def masquerade(self, node: NodeRef, ifname: str, fully_random: bool = False) -> None:
        """Source-NAT (nftables ``ip`` masquerade: IPv4 only) what ``node`` sends out ``ifname``.

        ``fully_random``: pick every mapping's source port at random (``masquerade
        fully-random``) instead of keeping the original port when it is free.
        """
        n = self.node(node)
        if all(i.name != ifname for i in self.interfaces(n)):
            raise TopologyError(f"masquerade on {n.name}: no interface {ifname!r}")
        if ifname in n.masquerade:
            raise TopologyError(f"masquerade on {n.name}: {ifname!r} already masqueraded")
        n.masquerade.append(ifname)
        if fully_random:
            n.fully_random.append(ifname)

    def static_nat(self, node: NodeRef, inside: str, outside: str, ifname: str) -> StaticNat:
        """1:1 NAT on ``node`` between ``inside`` and ``outside`` (IPv4 addresses).

        Packets for ``outside`` are destination-NATed to ``inside``; packets from ``inside``
        leaving ``ifname`` get source ``outside``.  The lab adds ``outside/32`` to ``ifname``.
        """
        n = self.node(node)
        where = f"static nat {inside} <-> {outside} on {n.name}"
        if not n.forwarding:
            raise TopologyError(f"{where}: the node does not forward (use nat() or router())")
        if all(i.name != ifname for i in self.interfaces(n)):
            raise TopologyError(f"{where}: no interface {ifname!r}")
        try:
            ins, out = ipaddress.IPv4Address(inside), ipaddress.IPv4Address(outside)
        except ValueError as exc:
            raise TopologyError(f"{where}: {exc} (IPv4 only)") from None
        if ins == out:
            raise TopologyError(f"{where}: inside and outside are the same address")
        self._check_doc(n.name, ipaddress.ip_network(ins))
        self._check_doc(n.name, ipaddress.ip_network(out))
        for other in n.static_nats:
            if ins == other.inside or out == other.outside:
                raise TopologyError(f"{where}: clashes with {other.inside} <-> {other.outside}")
        nat = StaticNat(ins, out, ifname)
        n.static_nats.append(nat)
        return nat

    # -- queries ------------------------------------------------------------------------

    def interfaces(self, node: NodeRef) -> list[Interface]:
        """The link ends in ``node``, in the order the links were added."""
        name = _name(node)
        return [end for link in self.links for end in (link.left, link.right) if end.node == name]

    def links_between(self, a: NodeRef, b: NodeRef) -> list[Link]:
        """The links joining ``a`` and ``b``."""
        pair = {_name(a), _name(b)}
        return [lk for lk in self.links if {lk.left.node, lk.right.node} == pair]

    def interface(self, node: NodeRef, toward: NodeRef | None = None) -> Interface:
        """The interface of ``node`` on its (single) link toward ``toward``.

        Without ``toward`` the node must have exactly one link.
        """
        name = self.node(node).name
        if toward is None:
            ends = self.interfaces(name)
            if len(ends) != 1:
                raise TopologyError(f"{name} has {len(ends)} interfaces: say toward which peer")
            return ends[0]
        links = self.links_between(name, toward)
        if len(links) != 1:
            raise TopologyError(f"{len(links)} links between {name} and {_name(toward)}")
        return links[0].end(name)

    def addr(self, node: NodeRef, family: int = 4, toward: NodeRef | None = None) -> str:
        """The first ``family`` address (no prefix length) of ``node``, e.g. ``"192.0.2.1"``.

        With ``toward``, the address on the link to that peer; otherwise the first such
        address over all the node's links.
        """
        ends = [self.interface(node, toward)] if toward is not None else self.interfaces(node)
        for end in ends:
            a = end.address(family)
            if a is not None:
                return str(a.ip)
        raise TopologyError(f"{_name(node)} has no IPv{family} address")

    def validate(self) -> None:
        """Check cross-references the builder relies on; raise :class:`TopologyError`.

        Interface names unique per node; no address used twice (static NATs' outside
        addresses included); gateways on-link.
        """
        seen: dict[IPAddress, str] = {}
        for link in self.links:
            for end in (link.left, link.right):
                for a in end.addresses:
                    if a.ip in seen:
                        raise TopologyError(f"address {a.ip} on {end.node} and {seen[a.ip]}")
                    seen[a.ip] = end.node
        for node in self.nodes.values():
            for nat in node.static_nats:
                if nat.outside in seen:
                    raise TopologyError(
                        f"static nat outside address {nat.outside} on {node.name} "
                        f"is also on {seen[nat.outside]}"
                    )
                seen[nat.outside] = node.name
        for r in self.routes:
            if r.via is None or r.dev is not None:
                continue
            if r.via.is_link_local:
                raise TopologyError(f"route {r.dst} on {r.node}: link-local gateway needs dev=")
            subnets = [a.network for end in self.interfaces(r.node) for a in end.addresses]
            if not any(r.via in net for net in subnets):
                raise TopologyError(
                    f"route {r.dst} on {r.node}: gateway {r.via} is on none of its links"
                )

    # -- helpers ------------------------------------------------------------------------

    def _ifname(self, node: str, name: str) -> str:
        if len(name) > IFNAME_MAX or not _IFNAME_RE.match(name):
            raise TopologyError(f"interface name {name!r} on {node}: 1-{IFNAME_MAX} characters")
        if name == "lo" or any(i.name == name for i in self.interfaces(node)):
            raise TopologyError(
                f"interface {name!r} already exists on {node}: pass names=(...) to link()"
            )
        return name

    def _addresses(self, node: str, addrs: Iterable[str] | str) -> list[IPInterface]:
        if isinstance(addrs, str):
            addrs = [addrs]
        out: list[IPInterface] = []
        for text in addrs:
            if "/" not in text:
                raise TopologyError(f"address {text!r} on {node}: give a prefix length")
            try:
                a = ipaddress.ip_interface(text)
            except ValueError as exc:
                raise TopologyError(f"address {text!r} on {node}: {exc}") from None
            self._check_doc(node, a.network)
            out.append(a)
        return out

    def _check_doc(self, node: str, net: IPNetwork) -> None:
        if not self.doc_ranges_only:
            return
        allowed = (d for d in DOCUMENTATION_NETWORKS if d.version == net.version)
        if not any(net.subnet_of(d) for d in allowed):  # type: ignore[arg-type]
            raise TopologyError(
                f"{net} on {node} is outside the documentation ranges "
                "(192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32)"
            )
