"""Small worlds the scenarios start from (addresses: :mod:`tests.sim.plan`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

from tests.sim import configs
from tests.sim.configs import Doc, Site
from tests.sim.network import Network, SimNode
from tests.sim.packets import icmp_echo
from tests.sim.plan import (
    EID_SPACE,
    MS,
    MS_V6,
    SITE1,
    SITE2,
    XTR1,
    XTR1_V6,
    XTR2,
    XTR2_V6,
)


def database(site: Site, *rlocs: Doc) -> list[Doc]:
    """``[[database-mapping]]`` tables: every prefix of ``site`` on ``rlocs``."""
    return [configs.mapping(prefix, rlocs, site.iid) for prefix in site.prefixes]


def site_xtr(
    name: str,
    rlocs: tuple[str, str],
    site: Site,
    *,
    rloc_tables: Iterable[Doc] | None = None,
    proxy_reply: bool = False,
    **kwargs: Any,
) -> Doc:
    """An xTR of ``site`` on (IPv4, IPv6) ``rlocs``, registering with and resolving the EID
    space through the Map-Server/Map-Resolver of :data:`~tests.sim.plan.MS`."""
    tables = list(rloc_tables) if rloc_tables is not None else [configs.rloc(r) for r in rlocs]
    kwargs.setdefault("resolve", EID_SPACE)
    return configs.xtr(
        name,
        list(rlocs),
        database(site, *tables),
        ms=MS,
        key=site.key,
        proxy_reply=proxy_reply,
        **kwargs,
    )


@dataclass
class TwoSites:
    """A Map-Server/Map-Resolver and the xTRs of two sites, all on the public side."""

    net: Network
    ms: SimNode
    xtr1: SimNode
    xtr2: SimNode


def two_sites(*, proxy_reply: bool = False, answer_pings: bool = True, **ms: Any) -> TwoSites:
    """:class:`TwoSites`, started (nothing has run yet); ``proxy_reply``: site 2 asks the
    Map-Server to answer for it; ``ms``: more :func:`configs.msmr` arguments."""
    net = Network()
    msmr = net.add_node("ms", configs.msmr("ms", [MS, MS_V6], [SITE1, SITE2], **ms))
    xtr1 = net.add_node("xtr1", site_xtr("xtr1", (XTR1, XTR1_V6), SITE1), answer_pings=answer_pings)
    xtr2 = net.add_node(
        "xtr2",
        site_xtr("xtr2", (XTR2, XTR2_V6), SITE2, proxy_reply=proxy_reply),
        answer_pings=answer_pings,
    )
    return TwoSites(net, msmr, xtr1, xtr2)


class Pinger:
    """Echo requests from a host behind one node, numbered; which ones were answered."""

    def __init__(self, net: Network, node: str, src: str, dst: str) -> None:
        self.net, self.node, self.src, self.dst = net, node, src, dst
        self.seq = 0

    def send(self) -> int:
        """One echo request into the node's TUN now; its sequence number."""
        self.seq += 1
        self.net.inject(self.node, icmp_echo(self.src, self.dst, seq=self.seq))
        return self.seq

    def answered(self) -> list[int]:
        """Sequence numbers of the echo replies delivered back to the sending host."""
        sim = self.net[self.node]
        return [
            p.seq
            for p in sim.delivered
            if p.is_echo_reply and p.src == ip_address(self.dst) and p.dst == ip_address(self.src)
            if p.seq is not None
        ]
