"""Ready-made topologies with their addresses as named attributes.

:func:`two_site_topology` is the standard data-plane test bed (the others:
:func:`mapping_system_topology`, :func:`proxy_topology`, :func:`nat_topology` with xTRs behind
NATs and an RTR behind a 1:1 NAT, :func:`elp_topology` with two RTRs for explicit locator
paths)::

    A ---- xTR1 ---- R ---- xTR2 ---- B
     site A      underlay      site B

Links (left end first; gateways and routers take .1/::1 of a link):

- a - xtr1: a 198.51.100.2/28, 2001:db8:100:1::2/64; xtr1 198.51.100.1/28, 2001:db8:100:1::1/64
- xtr1 - r: xtr1 192.0.2.2/30, 2001:db8:0:1::2/64; r 192.0.2.1/30, 2001:db8:0:1::1/64
- r - xtr2: r 192.0.2.5/30, 2001:db8:0:2::1/64; xtr2 192.0.2.6/30, 2001:db8:0:2::2/64
- xtr2 - b: xtr2 198.51.100.17/28, 2001:db8:100:2::1/64; b 198.51.100.18/28, 2001:db8:100:2::2/64

Interfaces are named ``to-<peer>``.
Routes: hosts default-route (both families) to their xTR; xTRs reach the whole underlay
(192.0.2.0/24, 2001:db8::/48) via R.  No route on an xTR leads to the other site: lispd
installs those toward its TUN, so without lispd A cannot reach B.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lispd.lab.topology import Node, Topology

__all__ = [
    "ElpPlan",
    "MappingSystemPlan",
    "NatPlan",
    "ProxyPlan",
    "SiteHandle",
    "TwoSitePlan",
    "elp_topology",
    "mapping_system_topology",
    "nat_topology",
    "proxy_topology",
    "two_site_topology",
]


@dataclass(frozen=True)
class TwoSitePlan:
    """Node names, interface names and addresses of :func:`two_site_topology`.

    ``*_v4``/``*_v6`` are bare addresses; ``*_prefix_*`` are networks; ``*_if`` interface
    names.  ``xtrN_rloc_*`` is the xTR's underlay address, ``xtrN_eid_*`` its address on its
    site (the hosts' gateway).
    """

    topology: Topology = field(compare=False, repr=False)

    host_a: str = "a"
    xtr1: str = "xtr1"
    r: str = "r"
    xtr2: str = "xtr2"
    host_b: str = "b"

    site_a_prefix_v4: str = "198.51.100.0/28"
    site_a_prefix_v6: str = "2001:db8:100:1::/64"
    site_b_prefix_v4: str = "198.51.100.16/28"
    site_b_prefix_v6: str = "2001:db8:100:2::/64"
    underlay_v4: str = "192.0.2.0/24"
    underlay_v6: str = "2001:db8::/48"

    host_a_v4: str = "198.51.100.2"
    host_a_v6: str = "2001:db8:100:1::2"
    xtr1_eid_v4: str = "198.51.100.1"
    xtr1_eid_v6: str = "2001:db8:100:1::1"
    xtr1_rloc_v4: str = "192.0.2.2"
    xtr1_rloc_v6: str = "2001:db8:0:1::2"
    r_xtr1_v4: str = "192.0.2.1"
    r_xtr1_v6: str = "2001:db8:0:1::1"
    r_xtr2_v4: str = "192.0.2.5"
    r_xtr2_v6: str = "2001:db8:0:2::1"
    xtr2_rloc_v4: str = "192.0.2.6"
    xtr2_rloc_v6: str = "2001:db8:0:2::2"
    xtr2_eid_v4: str = "198.51.100.17"
    xtr2_eid_v6: str = "2001:db8:100:2::1"
    host_b_v4: str = "198.51.100.18"
    host_b_v6: str = "2001:db8:100:2::2"

    host_a_if: str = "to-xtr1"
    xtr1_site_if: str = "to-a"
    xtr1_rloc_if: str = "to-r"
    r_xtr1_if: str = "to-xtr1"
    r_xtr2_if: str = "to-xtr2"
    xtr2_rloc_if: str = "to-r"
    xtr2_site_if: str = "to-b"
    host_b_if: str = "to-xtr2"


def two_site_topology(
    *, underlay_mtu: int | None = None, site_mtu: int | None = None
) -> TwoSitePlan:
    """Build the A - xTR1 - R - xTR2 - B topology; return its plan (``plan.topology``).

    ``underlay_mtu``/``site_mtu`` set the MTU of the RLOC links and of the site links.
    """
    topo = Topology()
    p = TwoSitePlan(topo)
    a, x1, r, x2, b = (
        topo.host(p.host_a),
        topo.lisp_router(p.xtr1),
        topo.router(p.r),
        topo.lisp_router(p.xtr2),
        topo.host(p.host_b),
    )
    topo.link(
        a,
        x1,
        [f"{p.host_a_v4}/28", f"{p.host_a_v6}/64"],
        [f"{p.xtr1_eid_v4}/28", f"{p.xtr1_eid_v6}/64"],
        mtu=site_mtu,
    )
    topo.link(
        x1,
        r,
        [f"{p.xtr1_rloc_v4}/30", f"{p.xtr1_rloc_v6}/64"],
        [f"{p.r_xtr1_v4}/30", f"{p.r_xtr1_v6}/64"],
        mtu=underlay_mtu,
    )
    topo.link(
        r,
        x2,
        [f"{p.r_xtr2_v4}/30", f"{p.r_xtr2_v6}/64"],
        [f"{p.xtr2_rloc_v4}/30", f"{p.xtr2_rloc_v6}/64"],
        mtu=underlay_mtu,
    )
    topo.link(
        x2,
        b,
        [f"{p.xtr2_eid_v4}/28", f"{p.xtr2_eid_v6}/64"],
        [f"{p.host_b_v4}/28", f"{p.host_b_v6}/64"],
        mtu=site_mtu,
    )
    topo.route(a, "default", via=p.xtr1_eid_v4)
    topo.route(a, "default", via=p.xtr1_eid_v6)
    topo.route(b, "default", via=p.xtr2_eid_v4)
    topo.route(b, "default", via=p.xtr2_eid_v6)
    topo.route(x1, p.underlay_v4, via=p.r_xtr1_v4)
    topo.route(x1, p.underlay_v6, via=p.r_xtr1_v6)
    topo.route(x2, p.underlay_v4, via=p.r_xtr2_v4)
    topo.route(x2, p.underlay_v6, via=p.r_xtr2_v6)
    return p


@dataclass(frozen=True)
class SiteHandle:
    """One LISP site of :func:`mapping_system_topology`: its host, xTR and addresses."""

    index: int
    host: str
    xtr: str
    prefix_v4: str
    prefix_v6: str
    host_v4: str
    host_v6: str
    gateway_v4: str
    gateway_v6: str
    rloc: str  # the xTR's IPv4 RLOC (the underlay is IPv4 only)
    router_side: str  # R's address on the xTR link


@dataclass(frozen=True)
class MappingSystemPlan:
    """Nodes and addresses of :func:`mapping_system_topology`."""

    topology: Topology = field(compare=False, repr=False)
    sites: tuple[SiteHandle, ...] = ()
    r: str = "r"
    msmr: str = "msmr"
    msmr_rloc: str = "192.0.2.30"
    r_msmr: str = "192.0.2.29"
    underlay_v4: str = "192.0.2.0/24"
    eid_space_v4: str = "198.51.100.0/24"
    eid_space_v6: str = "2001:db8:100::/48"
    outside_v4: str = "203.0.113.5"
    # A second MS/MR (``mapping_system_topology(second_msmr=True)`` only).
    second_msmr: bool = False
    msmr2: str = "msmr2"
    msmr2_rloc: str = "192.0.2.34"
    r_msmr2: str = "192.0.2.33"


def mapping_system_topology(sites: int = 3, *, second_msmr: bool = False) -> MappingSystemPlan:
    """``sites`` LISP sites and one MS/MR around a core router R, IPv4 underlay (the seed
    "IPv6 over IPv4 transition" lab)::

        hN ---- xtrN ---- R ---- msmr        (N = 1..sites, each xtrN also on R)

    Site N: 198.51.100.(16*(N-1))/28 and 2001:db8:100:N::/64, host .2/::2, xTR .1/::1.
    xtrN - R: 192.0.2.(4*(N-1)) /30, R takes .1, the xTR .2.  msmr - R: 192.0.2.28/30.
    xTRs and the MS/MR reach the underlay 192.0.2.0/24 via R; nothing else is routed.

    ``second_msmr`` adds a second MS/MR node ``msmr2`` on R (msmr2 - R: 192.0.2.32/30, R .33,
    msmr2 .34), also reaching the underlay via R: the mapping system of a fault test, where
    one MS/MR goes down and the other carries on.
    """
    if not 1 <= sites <= 7:
        raise ValueError("1 to 7 sites")
    topo = Topology()
    r = topo.router("r")
    handles = [_star_site(topo, r, n) for n in range(1, sites + 1)]
    plan = MappingSystemPlan(topo, tuple(handles), second_msmr=second_msmr)
    msmr = topo.lisp_router(plan.msmr)
    topo.link(msmr, r, [f"{plan.msmr_rloc}/30"], [f"{plan.r_msmr}/30"])
    topo.route(msmr, plan.underlay_v4, via=plan.r_msmr)
    if second_msmr:
        msmr2 = topo.lisp_router(plan.msmr2)
        topo.link(msmr2, r, [f"{plan.msmr2_rloc}/30"], [f"{plan.r_msmr2}/30"])
        topo.route(msmr2, plan.underlay_v4, via=plan.r_msmr2)
    return plan


@dataclass(frozen=True)
class ProxyPlan:
    """Nodes and addresses of :func:`proxy_topology`."""

    topology: Topology = field(compare=False, repr=False)
    sites: tuple[SiteHandle, ...] = ()
    r: str = "r"
    pxtr: str = "pxtr"
    pxtr_rloc: str = "192.0.2.14"
    r_pxtr: str = "192.0.2.13"
    pxtr_v6: str = "2001:db8:0:4::2"
    r_pxtr_v6: str = "2001:db8:0:4::1"
    outside: str = "ow"
    outside_link: str = "192.0.2.18"
    r_outside: str = "192.0.2.17"
    outside_link_v6: str = "2001:db8:0:5::2"
    r_outside_v6: str = "2001:db8:0:5::1"
    outside_v4: str = "203.0.113.1"
    outside_v6: str = "2001:db8:200::1"
    eid_space_v4: str = "198.51.100.0/24"
    eid_space_v6: str = "2001:db8:100::/48"


def proxy_topology() -> ProxyPlan:
    """The seed "LISP - Proxy xTR" lab: two LISP sites, one node that is Map-Server,
    Map-Resolver, PITR and PETR, and a non-LISP "outside world", around a core router R::

        h1 - xtr1 --+            +-- pxtr (MS/MR/PITR/PETR)
                    +---- R -----+
        h2 - xtr2 --+            +-- ow (outside world: 203.0.113.1, 2001:db8:200::1)

    The underlay between the LISP nodes is IPv4 (xTRs know only 192.0.2.0/24, as the seed's
    lisp1 knows only the PETR); the PxTR and the outside world also speak IPv6 natively.  R
    sends the EID space to the PITR and 203.0.113.0/24, 2001:db8:200::/48 to the outside world.
    """
    topo = Topology()
    r = topo.router("r")
    handles = [_star_site(topo, r, n) for n in (1, 2)]
    plan = ProxyPlan(topo, tuple(handles))
    pxtr, ow = topo.lisp_router(plan.pxtr), topo.host(plan.outside)
    topo.link(
        pxtr, r, [f"{plan.pxtr_rloc}/30", f"{plan.pxtr_v6}/64"],
        [f"{plan.r_pxtr}/30", f"{plan.r_pxtr_v6}/64"],
    )  # fmt: skip
    topo.link(
        ow, r, [f"{plan.outside_link}/30", f"{plan.outside_link_v6}/64"],
        [f"{plan.r_outside}/30", f"{plan.r_outside_v6}/64"],
    )  # fmt: skip
    topo.route(pxtr, "default", via=plan.r_pxtr)
    topo.route(pxtr, "default", via=plan.r_pxtr_v6)
    topo.route(ow, "default", via=plan.r_outside)
    topo.route(ow, "default", via=plan.r_outside_v6)
    topo.route(r, plan.eid_space_v4, via=plan.pxtr_rloc)
    topo.route(r, plan.eid_space_v6, via=plan.pxtr_v6)
    topo.route(r, "203.0.113.0/24", via=plan.outside_link)
    topo.route(r, "2001:db8:200::/48", via=plan.outside_link_v6)
    return plan


def site_handle(n: int, xtr: str, *, rloc: str, router_side: str) -> SiteHandle:
    """Site ``n``: host ``hN`` behind ``xtr`` on 198.51.100.16*(n-1)/28 and
    2001:db8:100:n::/64 (xTR .1/::1, host .2/::2); the plans' sites and tests' own topologies."""
    b = 16 * (n - 1)
    v6 = f"2001:db8:100:{n}::"
    return SiteHandle(
        index=n,
        host=f"h{n}",
        xtr=xtr,
        prefix_v4=f"198.51.100.{b}/28",
        prefix_v6=f"{v6}/64",
        host_v4=f"198.51.100.{b + 2}",
        host_v6=f"{v6}2",
        gateway_v4=f"198.51.100.{b + 1}",
        gateway_v6=f"{v6}1",
        rloc=rloc,
        router_side=router_side,
    )


def _star_site(topo: Topology, r: Node, n: int) -> SiteHandle:
    """Site ``n`` around router ``r`` (the mapping-system and proxy plans): host ``hN`` behind
    ``xtrN`` (see :func:`_site`), the xTR on 192.0.2.4*(n-1)/30 to ``r`` (``r`` takes .1, the
    xTR .2) reaching the underlay 192.0.2.0/24 through it."""
    link4 = 4 * (n - 1)
    site = site_handle(
        n, f"xtr{n}", rloc=f"192.0.2.{link4 + 2}", router_side=f"192.0.2.{link4 + 1}"
    )
    host, xtr = topo.host(site.host), topo.lisp_router(site.xtr)
    topo.link(
        host,
        xtr,
        [f"{site.host_v4}/28", f"{site.host_v6}/64"],
        [f"{site.gateway_v4}/28", f"{site.gateway_v6}/64"],
    )
    topo.link(xtr, r, [f"{site.rloc}/30"], [f"{site.router_side}/30"])
    topo.route(host, "default", via=site.gateway_v4)
    topo.route(host, "default", via=site.gateway_v6)
    topo.route(xtr, "192.0.2.0/24", via=site.router_side)
    return site


@dataclass(frozen=True)
class NatPlan:
    """Nodes, interface names and addresses of :func:`nat_topology`.

    Bare addresses end in ``_v4``/``_v6``, networks in ``_prefix_*``/``_space_*``, interface
    names in ``_if``.  ``core_<x>_v4`` is core's address on its link toward ``x`` (``x``'s
    gateway); ``<nat>_public_v4`` a NAT's own address on its public link (what a masqueraded
    packet carries), ``<nat>_private_v4`` its inside address (its xTR's gateway);
    ``gxtr1_rloc_v4``/``xtr2_rloc_v4`` the xTRs' private RLOCs; ``rtr1_private_v4`` the RTR's
    own address and ``rtr1_public_v4`` its 1:1 NAT address on cloudnat;
    ``<xtr>_eid_v4/_v6`` an xTR's address on its site (the host's gateway).  ``sites`` holds the
    same as :class:`SiteHandle` s (``rloc`` the private RLOC, ``router_side`` the NAT's inside
    address).  With ``extra_hops`` the routers ``hops`` sit between core and nat2, and
    ``core_nat2_if``/``nat2_public_if`` are the interfaces of that path's two ends.  With
    ``outside_world`` (``nat_topology(outside_world=True)``) the non-LISP host ``outside``
    (``outside_v4``/``outside_v6``, its gateway ``core_outside_v4/_v6``) hangs off core, and
    ms also has ``ms_v6`` (gateway ``core_ms_v6``) to be a PITR/PETR for both families.
    """

    topology: Topology = field(compare=False, repr=False)
    sites: tuple[SiteHandle, ...] = ()
    hops: tuple[str, ...] = ()

    core: str = "core"
    ms: str = "ms"
    cloudnat: str = "cloudnat"
    rtr1: str = "rtr1"
    nat1: str = "nat1"
    gxtr1: str = "gxtr1"
    h1: str = "h1"
    nat2: str = "nat2"
    xtr2: str = "xtr2"
    h2: str = "h2"

    public_v4: str = "192.0.2.0/25"
    private_v4: str = "192.0.2.128/25"
    eid_space_v4: str = "198.51.100.0/24"
    eid_space_v6: str = "2001:db8:100::/48"

    # public links to core (192.0.2.0/25)
    core_ms_v4: str = "192.0.2.1"
    ms_rloc_v4: str = "192.0.2.2"
    core_cloudnat_v4: str = "192.0.2.5"
    cloudnat_public_v4: str = "192.0.2.6"
    core_nat1_v4: str = "192.0.2.9"
    nat1_public_v4: str = "192.0.2.10"
    core_nat2_v4: str = "192.0.2.13"  # nat2's gateway: core, or the last of ``hops``
    nat2_public_v4: str = "192.0.2.14"
    rtr1_public_v4: str = "192.0.2.100"  # 1:1 NAT address of rtr1 (on cloudnat)

    # private links (192.0.2.128/25)
    cloudnat_private_v4: str = "192.0.2.129"
    rtr1_private_v4: str = "192.0.2.130"
    nat1_private_v4: str = "192.0.2.133"
    gxtr1_rloc_v4: str = "192.0.2.134"
    nat2_private_v4: str = "192.0.2.137"
    xtr2_rloc_v4: str = "192.0.2.138"

    # EID sites
    site1_prefix_v4: str = "198.51.100.0/28"
    site1_prefix_v6: str = "2001:db8:100:1::/64"
    gxtr1_eid_v4: str = "198.51.100.1"
    gxtr1_eid_v6: str = "2001:db8:100:1::1"
    h1_v4: str = "198.51.100.2"
    h1_v6: str = "2001:db8:100:1::2"
    site2_prefix_v4: str = "198.51.100.16/28"
    site2_prefix_v6: str = "2001:db8:100:2::/64"
    xtr2_eid_v4: str = "198.51.100.17"
    xtr2_eid_v6: str = "2001:db8:100:2::1"
    h2_v4: str = "198.51.100.18"
    h2_v6: str = "2001:db8:100:2::2"

    # the non-LISP outside world (``outside_world=True`` only)
    outside_world: bool = False
    outside: str = "outside"
    outside_space_v4: str = "203.0.113.0/24"
    outside_space_v6: str = "2001:db8:200::/48"
    core_outside_v4: str = "203.0.113.1"
    outside_v4: str = "203.0.113.2"
    core_outside_v6: str = "2001:db8:200::1"
    outside_v6: str = "2001:db8:200::2"
    core_ms_v6: str = "2001:db8:0:1::1"
    ms_v6: str = "2001:db8:0:1::2"
    core_outside_if: str = "to-outside"
    outside_if: str = "to-core"

    # interfaces: public links (captures of what the Internet sees) ...
    core_ms_if: str = "to-ms"
    ms_if: str = "to-core"
    core_cloudnat_if: str = "to-cloudnat"
    cloudnat_public_if: str = "to-core"
    core_nat1_if: str = "to-nat1"
    nat1_public_if: str = "to-core"
    core_nat2_if: str = "to-nat2"
    nat2_public_if: str = "to-core"
    # ... private links (what the xTRs and the RTR send) ...
    cloudnat_private_if: str = "to-rtr1"
    rtr1_if: str = "to-cloudnat"
    nat1_private_if: str = "to-gxtr1"
    gxtr1_rloc_if: str = "to-nat1"
    nat2_private_if: str = "to-xtr2"
    xtr2_rloc_if: str = "to-nat2"
    # ... and sites
    gxtr1_site_if: str = "to-h1"
    h1_if: str = "to-gxtr1"
    xtr2_site_if: str = "to-h2"
    h2_if: str = "to-xtr2"


def nat_topology(
    *,
    extra_hops: int = 0,
    fully_random: bool = True,
    nat_udp_timeout: int | None = None,
    outside_world: bool = False,
) -> NatPlan:
    """The seed "A LISP TraceRoute Tool" lab: LISP sites behind NATs and an RTR behind a 1:1
    NAT, around a core router of the public underlay (IPv4 only)::

        h1 - gxtr1 - nat1 ----+          +---- ms (MS/MR)
          (masquerade)        |          |
                              +-- core --+---- cloudnat - rtr1
          (masquerade)        |             (1:1: 192.0.2.100 <-> 192.0.2.130)
        h2 - xtr2 -- nat2 ----+ (via hop1..hopN with ``extra_hops``)

    Public /30 links in 192.0.2.0/25: ms 192.0.2.0/30, cloudnat .4/30, nat1 .8/30, nat2
    .12/30 (core, or the last hop, takes the first address); ``hopK`` links from
    192.0.2.16/30 on.  Private /30s in 192.0.2.128/25: cloudnat-rtr1 .128, nat1-gxtr1 .132,
    nat2-xtr2 .136 (NAT first).  Sites: 198.51.100.0/28 + 2001:db8:100:1::/64 (h1) and
    198.51.100.16/28 + 2001:db8:100:2::/64 (h2), xTR .1/::1, host .2/::2.

    Routes: hosts default (v4 and v6) via their xTR; xTRs and rtr1 default via their NAT;
    NATs and ms default via core (or their hop); core reaches the public links and
    rtr1's 1:1 address (a /32 via cloudnat), never the private space.  nat1 and nat2
    masquerade on their public link (``fully_random``: random source ports); cloudnat does
    only the 1:1 NAT.  ``nat_udp_timeout`` sets the conntrack UDP timeouts (both) of the
    three NATs.  ``extra_hops`` (0-4) plain routers ``hop1``.. sit between core and nat2.

    ``outside_world`` adds the seed's non-LISP Internet (see :func:`_add_outside_world`): a host
    ``outside`` on core (203.0.113.2/30, 2001:db8:200::2/64), core routing the EID space to ms
    (the PITR), IPv6 on the core - ms link (2001:db8:0:1::/64), and the xTRs reaching the
    underlay 192.0.2.0/24 through their NAT also without their default route::

        outside ---- core ---- ms (MS/MR, PITR, PETR)
    """
    if not 0 <= extra_hops <= 4:
        raise ValueError("extra_hops: 0 to 4")
    topo = Topology()
    hops = tuple(f"hop{k}" for k in range(1, extra_hops + 1))
    nat2_up = hops[-1] if hops else "core"
    p = NatPlan(
        topo,
        sites=(
            site_handle(1, "gxtr1", rloc="192.0.2.134", router_side="192.0.2.133"),
            site_handle(2, "xtr2", rloc="192.0.2.138", router_side="192.0.2.137"),
        ),
        hops=hops,
        core_nat2_if=f"to-{hops[0]}" if hops else "to-nat2",
        nat2_public_if=f"to-{nat2_up}",
        outside_world=outside_world,
    )
    core = topo.router(p.core)
    ms = topo.lisp_router(p.ms)
    for name in (p.cloudnat, p.nat1, p.nat2):
        topo.nat(name, udp_timeout=nat_udp_timeout)
    rtr1, gxtr1 = topo.lisp_router(p.rtr1), topo.lisp_router(p.gxtr1)
    xtr2 = topo.lisp_router(p.xtr2)
    h1, h2 = topo.host(p.h1), topo.host(p.h2)

    # public side
    core_ms, ms_core = [f"{p.core_ms_v4}/30"], [f"{p.ms_rloc_v4}/30"]
    if outside_world:
        core_ms, ms_core = [*core_ms, f"{p.core_ms_v6}/64"], [*ms_core, f"{p.ms_v6}/64"]
    topo.link(core, ms, core_ms, ms_core)
    topo.link(core, p.cloudnat, [f"{p.core_cloudnat_v4}/30"], [f"{p.cloudnat_public_v4}/30"])
    topo.link(core, p.nat1, [f"{p.core_nat1_v4}/30"], [f"{p.nat1_public_v4}/30"])
    chain = [p.core, *hops]
    for k, hop in enumerate(hops):
        topo.router(hop)
        base = 16 + 4 * k
        topo.link(chain[k], hop, [f"192.0.2.{base + 1}/30"], [f"192.0.2.{base + 2}/30"])
        topo.route(hop, "default", via=f"192.0.2.{base + 1}")
    topo.link(nat2_up, p.nat2, [f"{p.core_nat2_v4}/30"], [f"{p.nat2_public_v4}/30"])
    # core and each hop but the last send the links beyond their next hop to it
    path_links = [f"192.0.2.{16 + 4 * k}/30" for k in range(extra_hops)] + ["192.0.2.12/30"]
    for k in range(extra_hops):
        for prefix in path_links[k + 1 :]:
            topo.route(chain[k], prefix, via=f"192.0.2.{16 + 4 * k + 2}")
    topo.route(core, f"{p.rtr1_public_v4}/32", via=p.cloudnat_public_v4)
    topo.route(ms, "default", via=p.core_ms_v4)
    topo.route(p.cloudnat, "default", via=p.core_cloudnat_v4)
    topo.route(p.nat1, "default", via=p.core_nat1_v4)
    topo.route(p.nat2, "default", via=p.core_nat2_v4)

    # private side and NAT
    topo.link(p.cloudnat, rtr1, [f"{p.cloudnat_private_v4}/30"], [f"{p.rtr1_private_v4}/30"])
    topo.link(p.nat1, gxtr1, [f"{p.nat1_private_v4}/30"], [f"{p.gxtr1_rloc_v4}/30"])
    topo.link(p.nat2, xtr2, [f"{p.nat2_private_v4}/30"], [f"{p.xtr2_rloc_v4}/30"])
    topo.route(rtr1, "default", via=p.cloudnat_private_v4)
    topo.route(gxtr1, "default", via=p.nat1_private_v4)
    topo.route(xtr2, "default", via=p.nat2_private_v4)
    topo.static_nat(p.cloudnat, p.rtr1_private_v4, p.rtr1_public_v4, p.cloudnat_public_if)
    topo.masquerade(p.nat1, p.nat1_public_if, fully_random=fully_random)
    topo.masquerade(p.nat2, p.nat2_public_if, fully_random=fully_random)

    # sites
    for site, xtr, host in ((p.sites[0], gxtr1, h1), (p.sites[1], xtr2, h2)):
        topo.link(
            xtr,
            host,
            [f"{site.gateway_v4}/28", f"{site.gateway_v6}/64"],
            [f"{site.host_v4}/28", f"{site.host_v6}/64"],
        )
        topo.route(host, "default", via=site.gateway_v4)
        topo.route(host, "default", via=site.gateway_v6)
    if outside_world:
        _add_outside_world(topo, p)
    return p


def _add_outside_world(topo: Topology, p: NatPlan) -> None:
    """The non-LISP side of :func:`nat_topology`: host ``outside`` on core (core .1/::1), its
    default routes to core, core's routes of the EID space to ms (the PITR that attracts it),
    ms's IPv6 default route (the PETR forwards IPv6 natively), and the xTRs' routes of the
    underlay 192.0.2.0/24 via their NAT (so that lispd may take their default routes into its
    TUN, to send the outside world's traffic through LISP too)."""
    outside = topo.host(p.outside)
    topo.link(
        p.core, outside, [f"{p.core_outside_v4}/30", f"{p.core_outside_v6}/64"],
        [f"{p.outside_v4}/30", f"{p.outside_v6}/64"],
    )  # fmt: skip
    topo.route(outside, "default", via=p.core_outside_v4)
    topo.route(outside, "default", via=p.core_outside_v6)
    topo.route(p.core, p.eid_space_v4, via=p.ms_rloc_v4)
    topo.route(p.core, p.eid_space_v6, via=p.ms_v6)
    topo.route(p.ms, "default", via=p.core_ms_v6)
    for site in p.sites:
        topo.route(site.xtr, "192.0.2.0/24", via=site.router_side)


@dataclass(frozen=True)
class ElpPlan:
    """Nodes, interface names and addresses of :func:`elp_topology`.

    Every node but the hosts has one uplink to core: ``<node>_rloc_v4`` is its address there,
    ``core_<node>_v4`` core's (its gateway), ``<node>_uplink_if`` its interface and
    ``core_<node>_if`` core's (capture either to see which hops a packet took).
    ``xtrN_eid_v4/_v6`` are the xTRs' site addresses (the hosts' gateways); ``sites`` holds
    the sites as :class:`SiteHandle` s (``rloc`` the xTR's, ``router_side`` core's).
    """

    topology: Topology = field(compare=False, repr=False)
    sites: tuple[SiteHandle, ...] = ()

    core: str = "core"
    ms: str = "ms"
    xtr1: str = "xtr1"
    xtr2: str = "xtr2"
    rtra: str = "rtra"
    rtrb: str = "rtrb"
    h1: str = "h1"
    h2: str = "h2"

    underlay_v4: str = "192.0.2.0/24"
    eid_space_v4: str = "198.51.100.0/24"
    eid_space_v6: str = "2001:db8:100::/48"

    core_xtr1_v4: str = "192.0.2.1"
    xtr1_rloc_v4: str = "192.0.2.2"
    core_xtr2_v4: str = "192.0.2.5"
    xtr2_rloc_v4: str = "192.0.2.6"
    core_rtra_v4: str = "192.0.2.9"
    rtra_rloc_v4: str = "192.0.2.10"
    core_rtrb_v4: str = "192.0.2.13"
    rtrb_rloc_v4: str = "192.0.2.14"
    core_ms_v4: str = "192.0.2.17"
    ms_rloc_v4: str = "192.0.2.18"

    site1_prefix_v4: str = "198.51.100.0/28"
    site1_prefix_v6: str = "2001:db8:100:1::/64"
    xtr1_eid_v4: str = "198.51.100.1"
    xtr1_eid_v6: str = "2001:db8:100:1::1"
    h1_v4: str = "198.51.100.2"
    h1_v6: str = "2001:db8:100:1::2"
    site2_prefix_v4: str = "198.51.100.16/28"
    site2_prefix_v6: str = "2001:db8:100:2::/64"
    xtr2_eid_v4: str = "198.51.100.17"
    xtr2_eid_v6: str = "2001:db8:100:2::1"
    h2_v4: str = "198.51.100.18"
    h2_v6: str = "2001:db8:100:2::2"

    xtr1_uplink_if: str = "to-core"
    xtr2_uplink_if: str = "to-core"
    rtra_uplink_if: str = "to-core"
    rtrb_uplink_if: str = "to-core"
    ms_uplink_if: str = "to-core"
    core_xtr1_if: str = "to-xtr1"
    core_xtr2_if: str = "to-xtr2"
    core_rtra_if: str = "to-rtra"
    core_rtrb_if: str = "to-rtrb"
    core_ms_if: str = "to-ms"
    xtr1_site_if: str = "to-h1"
    xtr2_site_if: str = "to-h2"
    h1_if: str = "to-xtr1"
    h2_if: str = "to-xtr2"


def elp_topology() -> ElpPlan:
    """An Explicit Locator Path (RFC 9300 ELP, draft-ietf-lisp-te) test bed: every LISP node
    one hop from core, so routing alone never sends a packet through an RTR::

        h1 - xtr1 --+        +-- rtra
                    |        |
                  core ------+-- rtrb        (ms: MS/MR, also on core)
                    |        |
        h2 - xtr2 --+        +-- ms

    Uplinks (core takes the first address): xtr1 192.0.2.0/30, xtr2 .4/30, rtra .8/30, rtrb
    .12/30, ms .16/30; each LISP node reaches 192.0.2.0/24 via core.  Sites as in
    :func:`nat_topology`: 198.51.100.0/28 + 2001:db8:100:1::/64 (h1 - xtr1) and
    198.51.100.16/28 + 2001:db8:100:2::/64 (h2 - xtr2), xTR .1/::1, host .2/::2; hosts
    default-route (v4 and v6) to their xTR.  An ELP xtr1 -> rtra -> rtrb -> xtr2 shows up as
    one packet on each of core's interfaces to xtr1, rtra, rtrb and xtr2 in turn.
    """
    topo = Topology()
    p = ElpPlan(
        topo,
        sites=(
            site_handle(1, "xtr1", rloc="192.0.2.2", router_side="192.0.2.1"),
            site_handle(2, "xtr2", rloc="192.0.2.6", router_side="192.0.2.5"),
        ),
    )
    core = topo.router(p.core)
    for name, mine, cores in (
        (p.xtr1, p.xtr1_rloc_v4, p.core_xtr1_v4),
        (p.xtr2, p.xtr2_rloc_v4, p.core_xtr2_v4),
        (p.rtra, p.rtra_rloc_v4, p.core_rtra_v4),
        (p.rtrb, p.rtrb_rloc_v4, p.core_rtrb_v4),
        (p.ms, p.ms_rloc_v4, p.core_ms_v4),
    ):
        node = topo.lisp_router(name)
        topo.link(core, node, [f"{cores}/30"], [f"{mine}/30"])
        topo.route(node, p.underlay_v4, via=cores)
    for site in p.sites:
        host = topo.host(site.host)
        topo.link(
            site.xtr,
            host,
            [f"{site.gateway_v4}/28", f"{site.gateway_v6}/64"],
            [f"{site.host_v4}/28", f"{site.host_v6}/64"],
        )
        topo.route(host, "default", via=site.gateway_v4)
        topo.route(host, "default", via=site.gateway_v6)
    return p
