"""Small worlds the scenarios start from (addresses: :mod:`tests.sim.plan`), and the tables of
an xTR of a site that registers with and resolves through the Map-Server/Map-Resolver of
:data:`~tests.sim.plan.MS` (configurations: :mod:`tests.configs`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

from tests import configs
from tests.configs import Doc
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
    Site,
)


def database(site: Site, *rlocs: configs.Rloc) -> list[Doc]:
    """``[[database-mapping]]`` tables: every prefix of ``site`` on ``rlocs``."""
    return [configs.mapping(prefix, *rlocs) for prefix in site.prefixes]


def registering(site: Site, *, proxy_reply: bool = False) -> list[Doc]:
    """The ``[[map-server]]`` of an ETR of ``site``: :data:`~tests.sim.plan.MS`, under the
    site's key."""
    return [configs.map_server(MS, site.key, proxy_reply=proxy_reply)]


def resolving(prefixes: Sequence[str] = EID_SPACE) -> dict[str, list[Doc]]:
    """The keyword tables of an ITR that resolves ``prefixes`` through the Map-Resolver of
    :data:`~tests.sim.plan.MS`: ``configs.xtr(..., **resolving())``."""
    return {
        "map_cache": [configs.resolve(prefix) for prefix in prefixes],
        "map_resolver": configs.addresses(MS),
    }


def site_xtr(
    name: str,
    rlocs: tuple[str, str],
    site: Site,
    *,
    database_rlocs: Sequence[configs.Rloc] | None = None,
    proxy_reply: bool = False,
    resolve: Sequence[str] = EID_SPACE,
    **tables: Any,
) -> Doc:
    """An xTR of ``site`` on (IPv4, IPv6) ``rlocs``, its prefixes on ``database_rlocs``
    (default: ``rlocs``), registering with :func:`registering` and resolving ``resolve``
    with :func:`resolving`; ``tables`` as in :func:`tests.configs.merge`."""
    return configs.xtr(
        name,
        rlocs,
        database_mapping=database(site, *(rlocs if database_rlocs is None else database_rlocs)),
        map_server=registering(site, proxy_reply=proxy_reply),
        **resolving(resolve),
        **tables,
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
    Map-Server to answer for it; ``ms``: more tables of the Map-Server, as in
    :func:`tests.configs.merge`."""
    net = Network()
    msmr = net.add_node("ms", configs.msmr("ms", [MS, MS_V6], [SITE1.table(), SITE2.table()], **ms))
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
