"""Ready-made topologies with their addresses as named attributes.

:func:`two_site_topology` is the standard data-plane test bed::

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

from lispd.lab.topology import Topology

__all__ = ["TwoSitePlan", "two_site_topology"]


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


def mapping_system_topology(sites: int = 3) -> MappingSystemPlan:
    """``sites`` LISP sites and one MS/MR around a core router R, IPv4 underlay (the seed
    "IPv6 over IPv4 transition" lab)::

        hN ---- xtrN ---- R ---- msmr        (N = 1..sites, each xtrN also on R)

    Site N: 198.51.100.(16*(N-1))/28 and 2001:db8:100:N::/64, host .2/::2, xTR .1/::1.
    xtrN - R: 192.0.2.(4*(N-1)) /30, R takes .1, the xTR .2.  msmr - R: 192.0.2.28/30.
    xTRs and the MS/MR reach the underlay 192.0.2.0/24 via R; nothing else is routed.
    """
    if not 1 <= sites <= 7:
        raise ValueError("1 to 7 sites")
    topo = Topology()
    r = topo.router("r")
    handles = []
    for n in range(1, sites + 1):
        base4 = 16 * (n - 1)
        link4 = 4 * (n - 1)
        site = SiteHandle(
            index=n,
            host=f"h{n}",
            xtr=f"xtr{n}",
            prefix_v4=f"198.51.100.{base4}/28",
            prefix_v6=f"2001:db8:100:{n}::/64",
            host_v4=f"198.51.100.{base4 + 2}",
            host_v6=f"2001:db8:100:{n}::2",
            gateway_v4=f"198.51.100.{base4 + 1}",
            gateway_v6=f"2001:db8:100:{n}::1",
            rloc=f"192.0.2.{link4 + 2}",
            router_side=f"192.0.2.{link4 + 1}",
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
        handles.append(site)
    plan = MappingSystemPlan(topo, tuple(handles))
    msmr = topo.lisp_router(plan.msmr)
    topo.link(msmr, r, [f"{plan.msmr_rloc}/30"], [f"{plan.r_msmr}/30"])
    topo.route(msmr, plan.underlay_v4, via=plan.r_msmr)
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
    handles = []
    for n in (1, 2):
        base4, link4 = 16 * (n - 1), 4 * (n - 1)
        site = SiteHandle(
            n, f"h{n}", f"xtr{n}", f"198.51.100.{base4}/28", f"2001:db8:100:{n}::/64",
            f"198.51.100.{base4 + 2}", f"2001:db8:100:{n}::2", f"198.51.100.{base4 + 1}",
            f"2001:db8:100:{n}::1", f"192.0.2.{link4 + 2}", f"192.0.2.{link4 + 1}",
        )  # fmt: skip
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
        handles.append(site)
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
