"""What operators see of a running node: counters, tables as JSON, the metrics snapshot and the
one-line status for systemd.

Pure functions of a :class:`~lispd.node.Node` (and, where it runs, the compiled engine's
counters): the control-socket commands (:mod:`lispd.api.commands`), ``GET /metrics`` and the
daemon's ``STATUS=`` line all read through here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from lispd import __version__
from lispd.api.metrics import MetricsSnapshot
from lispd.api.paging import Listing
from lispd.mapcache import (
    DatabaseEntry,
    MapCache,
    MapCacheEntry,
    Network,
    PrefixTable,
    ScopedTables,
)
from lispd.wire.address import ElpAddress

if TYPE_CHECKING:
    from lispd.control.mapserver import Registration
    from lispd.node import Node

SORTED_PART_MAX = 2_000
"""A table (one instance-ID and family) of up to this many entries is listed in prefix order;
a larger one partition by partition, in no order (sorting a million prefixes takes seconds)."""


def node_stats(node: Node) -> dict[str, Any]:
    """The node's counters with the control machines' and the NAT bindings' drops, and the
    DDT machines' work (``ddt``) when the node runs any."""
    snap = node.counters.snapshot()
    snap["drops"].update(node.control.counters())
    if node.nat_bindings is not None:
        snap["drops"].update(node.nat_bindings.drops)
    ddt = ddt_stats(node)
    if ddt:
        snap["ddt"] = ddt
    return snap


def ddt_stats(node: Node) -> dict[str, int]:
    """What the DDT machines did: the resolver's walks (``resolutions``, ``requests-sent``,
    ``received-<action>``, ``steps``, ...; ``referral-cache-entries``, ``pending``), the DDT
    node's and the Map-Server's answers (``sent-<action>``, ``referrals-sent``)."""
    control = node.control
    out: dict[str, int] = {}
    resolver = control.ddt_resolver
    if resolver is not None:
        out.update(resolver.stats)
        out["referral-cache-entries"] = len(resolver.cache)
        out["referral-cache-full"] = resolver.cache.full
        out["pending"] = resolver.pending()
        out["max-steps-per-resolution"] = resolver.max_steps_seen
    for answerer in (control.ddt_node, control.ddt_leaf):
        if answerer is not None:
            for key, value in answerer.stats.items():
                out[key] = out.get(key, 0) + value
    return out


def referral_listing(node: Node, clock: Callable[[], float]) -> Listing[Any]:
    """A paged listing of the DDT Map-Resolver's referral cache (none without one)."""
    resolver = node.control.ddt_resolver
    if resolver is None:
        return Listing([], lambda _item: None, 0)
    cache = resolver.cache
    tables = cache.tables()
    # The referral does not carry its instance-id: each part's items get it attached.
    parts = [functools.partial(_scoped_items, iid, piece) for iid, piece in _iid_parts(tables)]

    def render(item: tuple[int, Network, Any]) -> dict[str, Any] | None:
        iid, net, _entry = item
        current = tables.exact(iid, net)
        now = clock()
        if current is None or current.expires <= now:
            return None
        return current.view(iid, net, now)

    return Listing(parts, render, len(cache))


def _scoped_items(iid: int, piece: Part) -> list[tuple[int, Network, Any]]:
    return [(iid, net, value) for net, value in piece()]


def status_line(node: Node, stats: dict[str, Any], now: float) -> str:
    """One line for ``systemctl status``: roles, table sizes, registrations, traffic."""
    packets, drops = stats["packets"], stats["drops"]
    parts = [
        f"roles={','.join(sorted(node.config.daemon.roles))}",
        f"map-cache={len(node.mapcache)}",
        f"database={len(node.database)}",
    ]
    registrar = node.control.registrar
    if registrar is not None:
        status = registrar.status(now)
        acked = sum(1 for s in status if s["acknowledged"])
        parts.append(f"registered={acked}/{len(status)}")
    if node.control.map_server is not None:
        parts.append(f"site-registrations={len(node.control.map_server.registration_tables)}")
    if node.nat_bindings is not None:
        parts.append(f"nat-bindings={len(node.nat_bindings)}")
    # Every role's share, counted once each: ITR + PITR, ETR + PETR.
    encap = packets.get("itr.encap.packets", 0) + packets.get("pitr.encap.packets", 0)
    decap = packets.get("etr.decap.packets", 0) + packets.get("petr.decap.packets", 0)
    parts.append(f"encap={encap} decap={decap}")
    parts.append(f"drops={sum(drops.values())}")
    return " ".join(parts)


def metrics_snapshot(node: Node, stats: dict[str, Any], now: float) -> MetricsSnapshot:
    """What ``GET /metrics`` shows: the data of the control socket's show commands."""
    control, ms = node.control, node.control.map_server
    return MetricsSnapshot(
        name=node.config.daemon.name,
        version=__version__,
        stats=stats,
        map_cache_counts=node.mapcache.census(),
        pending=control.resolver.pending() if control.resolver else None,
        registrations=control.registrar.status(now) if control.registrar else None,
        rlocs=control.prober.states(now) if control.prober else None,
        nat_bindings=len(node.nat_bindings) if node.nat_bindings is not None else None,
        sites=[site.name for site in ms.sites] if ms else None,
        registered_counts=ms.registrations_per_site() if ms else None,
        now=now,
    )


def sites(node: Node, now: float) -> list[dict[str, Any]]:
    """The Map-Server's registrations (``lispctl site``)."""
    ms = node.control.map_server
    if ms is None:
        return []
    return [site_json(reg, now) for reg in ms.registrations()]


def site_json(reg: Registration, now: float) -> dict[str, Any]:
    """One Map-Server registration as ``lispctl site`` shows it."""
    return {
        "site": reg.site,
        "instance-id": reg.iid,
        "eid-prefix": str(reg.prefix),
        "registered-by": f"{reg.registered_by}:{reg.registered_by_port}",
        "last-registered-ago": round(now - reg.last_registered, 1),
        "rlocs": [address_text(loc.address) for loc in reg.record.locators],
        "proxy-reply": reg.proxy_reply,
    }


Part = Callable[[], Sequence[tuple[Network, Any]]]


def _iid_parts(tables: ScopedTables[Any]) -> list[tuple[int, Part]]:
    """Snapshot functions covering every non-empty (instance-ID, family) table of a
    :class:`~lispd.mapcache.ScopedTables`, each with its instance-ID, in (instance-ID, family)
    order: a small table in one part, in prefix order (the sort is cheap, and often cached); a
    large one in its :meth:`~lispd.mapcache.PrefixTable.partition` s, each copied when the
    listing gets to it."""
    out: list[tuple[int, Part]] = []
    for iid, family in tables.counts():
        table: PrefixTable[Any] | None = tables.table(iid, family)
        if table is None:
            continue
        if len(table) <= SORTED_PART_MAX:
            out.append((iid, table.items))
        else:
            out += [(iid, functools.partial(table.partition, i)) for i in range(table.partitions)]
    return out


def _parts(tables: ScopedTables[Any]) -> list[Part]:
    """:func:`_iid_parts` without the instance-IDs (the values carry theirs)."""
    return [part for _iid, part in _iid_parts(tables)]


def map_cache_listing(mapcache: MapCache, clock: Callable[[], float]) -> Listing[Any]:
    """A paged listing of the map-cache (see :mod:`lispd.api.paging`): each entry shown as
    it is when its page is served, none once removed or expired."""

    def render(item: tuple[Network, MapCacheEntry]) -> dict[str, Any] | None:
        entry = item[1]
        current = mapcache.get(entry.iid, entry.prefix)
        if current is None or current.is_expired(clock()):
            return None
        return entry_json(current)

    tables = mapcache.tables
    return Listing(_parts(tables), render, len(mapcache))


def site_listing(node: Node, clock: Callable[[], float]) -> Listing[Any]:
    """A paged listing of the Map-Server's registrations (none without a Map-Server)."""
    ms = node.control.map_server
    if ms is None:
        return Listing([], lambda _item: None, 0)
    tables = ms.registration_tables

    def render(item: tuple[Network, Registration]) -> dict[str, Any] | None:
        reg = item[1]
        current = tables.exact(reg.iid, reg.prefix)
        return None if current is None else site_json(current, clock())

    return Listing(_parts(tables), render, len(tables))


def rendered_listing(rows: list[Any]) -> Listing[Any]:
    """A paged listing of rows rendered already (a table small enough to render at once,
    such as the probed RLOCs or the NAT bindings, served in pages all the same)."""
    return Listing([lambda: rows], lambda row: row, len(rows))


def address_text(address: object) -> str:
    """A locator address for people: an Explicit Locator Path as its hops joined by "->"."""
    if isinstance(address, ElpAddress):
        return "->".join(str(hop.address) for hop in address.hops)
    return str(address)


@functools.lru_cache(maxsize=4096)
def _address_str(address: object) -> str:
    """``str(address)``, remembered: a million entries share a few thousand RLOCs, and an
    ``ipaddress`` object's text costs microseconds each time."""
    return str(address)


def entry_json(entry: MapCacheEntry | DatabaseEntry) -> dict[str, Any]:
    """A map-cache or database entry as ``lispctl map-cache`` / ``database`` show it."""
    out: dict[str, Any] = {
        "instance-id": entry.iid,
        "eid-prefix": str(entry.prefix),
        "rlocs": [
            {
                "address": _address_str(r.address),
                "priority": r.priority,
                "weight": r.weight,
                "up": r.up,
                **({"elp": [str(hop) for hop in r.elp]} if r.elp else {}),
            }
            for r in entry.rlocs
        ],
    }
    if isinstance(entry, MapCacheEntry):
        out["action"] = entry.action
        out["source"] = entry.source
        out["ttl"] = entry.ttl
    return out
