"""The control socket's commands (``lispctl``): one registry, one function per command.

A command takes the running daemon and the request (a JSON object) and returns what is sent
back (JSON-able), or an awaitable of it (the server awaits it).  :func:`handlers` binds the
registry to one daemon for :class:`~lispd.api.server.ControlServer`.

Reads cost what they show, never the size of a table: ``map-cache`` with ``eid`` is one
longest-prefix match, with ``prefix`` one exact match; the table commands (``map-cache``,
``database``, ``site``, ``rlocs``, ``rtr``) answer in pages when asked with the paging fields
(:mod:`lispd.api.paging`), and without them only while the table is small
(:data:`~lispd.api.paging.UNPAGED_MAX`).
"""

from __future__ import annotations

import ipaddress
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lispd import __version__
from lispd.api import paging, views
from lispd.cli.args import split_iid
from lispd.mapcache import MAX_IID, MapCacheEntry

if TYPE_CHECKING:
    from lispd.daemon import Daemon

Request = dict[str, Any]
Command = Callable[["Daemon", Request], Any]

COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    """Register the decorated function as the control-socket command ``name``."""

    def register(func: Command) -> Command:
        COMMANDS[name] = func
        return func

    return register


_LISTINGS: weakref.WeakKeyDictionary[Any, paging.Listings] = weakref.WeakKeyDictionary()


def listings(daemon: Daemon) -> paging.Listings:
    """The open paged listings of ``daemon`` (made on first use)."""
    found = _LISTINGS.get(daemon)
    if found is None:
        found = _LISTINGS[daemon] = paging.Listings()
    return found


def handlers(daemon: Daemon) -> dict[str, Callable[[Request], Any]]:
    """Every registered command, bound to ``daemon``."""
    return {name: _bind(func, daemon) for name, func in COMMANDS.items()}


def _bind(func: Command, daemon: Daemon) -> Callable[[Request], Any]:
    return lambda req: func(daemon, req)


@command("version")
def version(daemon: Daemon, _req: Request) -> dict[str, Any]:
    """lispd's version, the node's name, the fast path it runs and whether its engines send
    UDP GSO bursts to every RLOC (and why)."""
    engine = daemon.engine
    workers = engine.workers if engine is not None else None
    return {
        "version": __version__,
        "name": daemon.node.config.daemon.name,
        "fastpath": "compiled" if engine is not None else "python",
        "engines": engine.engines if engine is not None else 1,
        "worker-pids": workers.pids() if workers is not None else [],
        "udp-gso": engine.udp_bursts if engine is not None else False,
        "udp-gso-why": engine.udp_bursts_reason if engine is not None else "",
    }


@command("stats")
def stats(daemon: Daemon, _req: Request) -> Any:
    """The counters; with workers, an awaitable of them once every worker has reported its
    current counts."""
    if daemon.engine is None or daemon.engine.workers is None:
        return daemon.stats()

    async def fresh() -> dict[str, Any]:
        await daemon.refresh_workers()
        return daemon.stats()

    return fresh()


def _scoped(req: Request, key: str) -> tuple[int, str]:
    """The instance-ID and text of ``req[key]``: ``"[iid]text"``, or ``"text"`` with the
    request's ``instance-id`` (0 when absent)."""
    value = req.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, not {type(value).__name__}")
    split = split_iid(value)
    if split is None:
        raise ValueError(f"{value!r}: expected [instance-id]{key}")
    iid, text = split
    if iid is None:
        iid = req.get("instance-id", 0)
    if not isinstance(iid, int) or isinstance(iid, bool) or not 0 <= iid <= MAX_IID:
        raise ValueError(f"instance-id must be from 0 to {MAX_IID}, not {iid!r}")
    return iid, text


def _eid(req: Request) -> tuple[int, ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The request's ``eid`` (with its instance-id) as an address; ValueError if it is none."""
    iid, text = _scoped(req, "eid")
    try:
        return iid, ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an EID (an IPv4 or IPv6 address)") from None


def _live(entry: MapCacheEntry | None, now: float) -> list[dict[str, Any]]:
    return [] if entry is None or entry.is_expired(now) else [views.entry_json(entry)]


@command("map-cache")
def map_cache(daemon: Daemon, req: Request) -> Any:
    """The map-cache.  With ``eid`` (``"[iid]address"``, or an address and ``instance-id``):
    the live entry of the longest prefix holding it, as a list of zero or one entry (an
    expired best match is none: the more specific mapping is what must be refreshed).  With
    ``prefix``: the live entry of exactly that prefix, likewise.  Otherwise every entry: in
    pages with the paging fields, else all at once while there are at most
    :data:`~lispd.api.paging.UNPAGED_MAX`."""
    mapcache = daemon.node.mapcache
    if "eid" in req:
        iid, address = _eid(req)
        return _live(mapcache.lookup(iid, address), daemon.clock())
    if "prefix" in req:
        iid, text = _scoped(req, "prefix")
        try:
            network = ipaddress.ip_network(text)
        except ValueError as exc:
            raise ValueError(f"{text!r} is not an EID-prefix: {exc}") from None
        return _live(mapcache.get(iid, network), daemon.clock())
    if paging.is_paged(req):
        return listings(daemon).serve(
            "map-cache",
            req,
            lambda: views.map_cache_listing(mapcache, daemon.clock),
            daemon.clock(),
        )
    paging.unpaged("map-cache", len(mapcache))
    return [views.entry_json(e) for e in mapcache.entries()]


@command("database")
def database(daemon: Daemon, req: Request) -> Any:
    """The local database (our EID-prefixes), in pages with the paging fields."""
    db = daemon.node.database
    if paging.is_paged(req):
        return listings(daemon).serve(
            "database",
            req,
            lambda: paging.Listing([db.entries], views.entry_json, len(db)),
            daemon.clock(),
        )
    paging.unpaged("database", len(db))
    return [views.entry_json(e) for e in db.entries()]


@command("site")
def site(daemon: Daemon, req: Request) -> Any:
    """The Map-Server's site registrations, in pages with the paging fields."""
    if paging.is_paged(req):
        return listings(daemon).serve(
            "site", req, lambda: views.site_listing(daemon.node, daemon.clock), daemon.clock()
        )
    ms = daemon.node.control.map_server
    paging.unpaged("site", 0 if ms is None else len(ms.registration_tables))
    return views.sites(daemon.node, daemon.clock())


def _rendered(daemon: Daemon, kind: str, req: Request, rows: Callable[[], list[Any]]) -> Any:
    """A table rendered whole (small: one row per RLOC, per NAT binding), paged on demand."""
    if paging.is_paged(req):
        return listings(daemon).serve(
            kind, req, lambda: views.rendered_listing(rows()), daemon.clock()
        )
    return rows()


@command("rlocs")
def rlocs(daemon: Daemon, req: Request) -> Any:
    """What RLOC probing knows of every probed RLOC."""
    prober = daemon.node.control.prober
    return _rendered(
        daemon, "rlocs", req, lambda: prober.states(daemon.clock()) if prober is not None else []
    )


@command("nat")
def nat(daemon: Daemon, _req: Request) -> Any:
    """The NAT-traversal client's state."""
    client = daemon.node.control.nat
    return client.states() if client is not None else {}


@command("rtr")
def rtr(daemon: Daemon, req: Request) -> Any:
    """The RTR's NAT bindings."""
    bindings = daemon.node.nat_bindings
    return _rendered(
        daemon, "rtr", req, lambda: bindings.states(daemon.clock()) if bindings is not None else []
    )


@command("rtr-draft")
def rtr_draft(daemon: Daemon, _req: Request) -> Any:
    """The RTR's draft-style NAT traversal: bindings per xTR-ID, pending registrations."""
    draft = daemon.node.draft_rtr
    return draft.states(daemon.clock()) if draft is not None else {}


@command("registrations")
def registrations(daemon: Daemon, _req: Request) -> Any:
    """Our registrations with each Map-Server."""
    registrar = daemon.node.control.registrar
    return registrar.status() if registrar is not None else []


@command("clear-map-cache")
def clear_map_cache(daemon: Daemon, req: Request) -> dict[str, int]:
    """Remove learned entries (every one, or those of exactly ``prefix``, in every instance or
    in ``instance-id``); static entries come from the configuration and stay."""
    cleared = daemon.node.clear_map_cache(req.get("instance-id"), req.get("prefix"), daemon.clock())
    daemon.transmit()
    return {"cleared": cleared}


@command("referral-cache")
def referral_cache(daemon: Daemon, req: Request) -> Any:
    """The DDT Map-Resolver's referral cache, in pages with the paging fields; with ``eid``,
    the live referral of the longest prefix holding it (a list of zero or one)."""
    resolver = daemon.node.control.ddt_resolver
    if "eid" in req:
        iid, address = _eid(req)
        now = daemon.clock()
        hit = None if resolver is None else resolver.cache.lookup(iid, address, now)
        return [] if hit is None else [hit[1].view(iid, hit[0], now)]
    if paging.is_paged(req):
        return listings(daemon).serve(
            "referral-cache",
            req,
            lambda: views.referral_listing(daemon.node, daemon.clock),
            daemon.clock(),
        )
    paging.unpaged("referral-cache", 0 if resolver is None else len(resolver.cache))
    listing = views.referral_listing(daemon.node, daemon.clock)
    return [row for part in listing.parts for item in part() if (row := listing.render(item))]


@command("clear-referral-cache")
def clear_referral_cache(daemon: Daemon, req: Request) -> dict[str, int]:
    """Forget the DDT Map-Resolver's referrals (every one, or those of ``instance-id``): the
    next resolutions start from the roots."""
    resolver = daemon.node.control.ddt_resolver
    iid = req.get("instance-id")
    if iid is not None and (not isinstance(iid, int) or isinstance(iid, bool) or iid < 0):
        raise ValueError(f"instance-id must be a non-negative integer, not {iid!r}")
    return {"cleared": 0 if resolver is None else resolver.cache.clear(iid)}


@command("reload")
def reload(daemon: Daemon, _req: Request) -> Any:
    """Read the configuration file again (see :meth:`Daemon.reload`); answered once the
    kernel has the route changes it made (made off the event loop)."""
    answer = daemon.reload()

    async def settled() -> dict[str, Any]:
        await daemon.routes_settled()
        return answer

    return settled()
