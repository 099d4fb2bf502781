"""From a validated configuration to the objects a node runs: tables and control machines.

Pure construction, no I/O: the node calls these, and tests can build a node's brain without
root or sockets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from lispd.config import Config
from lispd.control.mapresolver import MapResolver
from lispd.control.mapserver import MapServer, SitePrefixSpec, SiteSpec
from lispd.control.nat import NatClient
from lispd.control.natdraft import DraftInfoResponder, DraftNatClient
from lispd.control.plane import ControlPlane
from lispd.control.prober import Prober, ProbeSettings
from lispd.control.registrar import MapServerTarget, Registrar
from lispd.control.resolver import Resolver, ResolverSettings
from lispd.control.responder import MapReplier, SmrSender, database_records
from lispd.ddt.authority import DdtNode
from lispd.ddt.leaf import DdtLeaf
from lispd.ddt.resolver import DdtResolver
from lispd.mapcache import (
    Action,
    DatabaseEntry,
    LocalDatabase,
    MapCache,
    MapCacheEntry,
    RlocEntry,
)


def rloc_entries(rlocs: Iterable[Any]) -> tuple[RlocEntry, ...]:
    """Configured RLOCs as map-cache RLOC entries (an RLOC with an explicit locator path is
    entered at the path's first hop)."""
    out = []
    for r in rlocs:
        elp = tuple(getattr(r, "elp", ()))
        out.append(RlocEntry(elp[0] if elp else r.address, r.priority, r.weight, elp=elp))
    return tuple(out)


def new_xtr_id(rng: Callable[[], int]) -> int:
    """A fresh 128-bit xTR-ID from two 64-bit draws of ``rng``."""
    return ((rng() & (2**64 - 1)) << 64) | (rng() & (2**64 - 1))


def build_database(config: Config) -> LocalDatabase:
    """The local database (the node's own EID-prefixes)."""
    database = LocalDatabase()
    for m in config.database:
        database.add(DatabaseEntry(m.instance_id, m.prefix, rloc_entries(m.rlocs)))
    return database


def build_tables(config: Config, now: float) -> tuple[MapCache, LocalDatabase]:
    """The static map-cache and the local database described by ``config``."""
    mapcache = MapCache()
    for m in config.map_cache:
        action: Action = "encapsulate" if m.rlocs else (m.action or "drop")
        ttl = None if m.ttl is None else m.ttl * 60.0
        mapcache.add(
            MapCacheEntry(
                iid=m.instance_id,
                prefix=m.prefix,
                rlocs=rloc_entries(m.rlocs),
                action=action,
                ttl=ttl,
                created=now,
                source="static",
            )
        )
    return mapcache, build_database(config)


def build_control_plane(
    config: Config,
    database: LocalDatabase,
    rng: Callable[[], int],
) -> ControlPlane:
    """The control machines the node's roles need; ``rng`` gives every control-plane nonce
    (the daemon passes a CSPRNG)."""
    roles = config.daemon.roles
    rlocs = tuple(config.underlay.rlocs)
    plane = ControlPlane()
    # An RTR behind a 1:1 NAT is answered at its public addresses.
    itr_rlocs = config.rtr.public_rlocs if "rtr" in roles and config.rtr.public_rlocs else rlocs
    if roles & {"itr", "pitr", "rtr"} and config.map_resolvers:
        r = config.resolver
        settings = ResolverSettings(
            retries=r.retries,
            retry_interval=r.retry_interval,
            queue_per_entry=r.queue_per_entry,
            queue_total=r.queue_total,
            queue_timeout=r.queue_timeout,
            min_request_interval=r.min_request_interval,
            max_requests_per_second=r.max_requests_per_second,
            max_ttl_minutes=r.max_ttl,
        )
        # A PITR's Map-Requests carry the PITR bit (RFC 9301 section 5.2).
        plane.resolver = Resolver(
            config.map_resolvers, itr_rlocs, settings, rng, pitr="pitr" in roles
        )
    p = config.probing
    if roles & {"itr", "pitr", "rtr"} and (config.petrs or p.map_cache):
        plane.prober = Prober(
            itr_rlocs,
            ProbeSettings(
                interval=p.interval,
                timeout=p.timeout,
                down_after=p.down_after,
                max_per_second=p.max_per_second,
                max_rlocs=config.limits.probed_rlocs,
            ),
            rng,
        )
    reg = config.registration
    nat = config.nat_traversal
    draft = nat.style == "draft"
    if roles & {"etr", "petr", "rtr"}:
        # PETRs and RTRs have no EID-prefix of their own to name: they answer probes anyway.
        plane.replier = MapReplier(
            database, rlocs, record_ttl=reg.record_ttl, answer_probes=bool(roles & {"petr", "rtr"})
        )
    if "etr" in roles:
        plane.smr = SmrSender(rlocs, rng)
        if config.map_servers:
            targets = [
                MapServerTarget(ms.address, ms.key, ms.key_id, ms.proxy_reply)
                for ms in config.map_servers
            ]
            plane.registrar = Registrar(
                # With NAT traversal, registering waits for NAT discovery: what to register
                # (our RLOC, or the translated one and the RTRs) depends on its answer.
                [] if config.nat_traversal.enabled else targets,
                database_records(database.entries(), rlocs, reg.record_ttl),
                interval=reg.interval,
                want_map_notify=reg.want_map_notify,
                rng=rng,
                # Draft-style NAT traversal: the RTR keeps its NAT binding per xTR-ID.
                xtr_id=new_xtr_id(rng) if draft else None,
            )
    if nat.enabled and config.map_servers and draft:
        plane.nat = DraftNatClient(
            [ms.address for ms in config.map_servers],
            {ms.address: (ms.key_id, ms.key) for ms in config.map_servers},
            rlocs,
            [(m.instance_id, m.prefix) for m in config.database],
            info_interval=nat.info_interval,
            keepalive_interval=nat.keepalive_interval,
            rng=rng,
        )
    elif nat.enabled and config.map_servers:
        plane.nat = NatClient(
            [ms.address for ms in config.map_servers],
            rlocs,
            [(m.instance_id, m.prefix) for m in config.database],
            info_interval=nat.info_interval,
            keepalive_interval=nat.keepalive_interval,
            rng=rng,
        )
    if "map-server" in roles:
        sites = [
            SiteSpec(
                s.name,
                s.key,
                tuple(
                    SitePrefixSpec(p.instance_id, p.prefix, p.accept_more_specifics)
                    for p in s.prefixes
                ),
            )
            for s in config.sites
        ]
        plane.map_server = MapServer(
            sites,
            registration_timeout=config.mapping_system.registration_timeout,
            rng=rng,
            max_site_registrations=config.limits.site_registrations,
        )
        plane.map_server.rtrs = frozenset(config.mapping_system.rtr_rlocs)
        plane.map_server.ms_rtr_key = config.mapping_system.ms_rtr_key
        plane.map_server.ms_rtr_key_id = config.mapping_system.ms_rtr_key_id
        # Authenticated Info-Requests are verified in either style; "draft" refuses the others.
        plane.info_responder = DraftInfoResponder(
            rlocs,
            config.mapping_system.rtr_rlocs,
            plane.map_server.site_keys,
            require_auth=draft,
        )
        if "map-resolver" in roles:
            plane.map_resolver = MapResolver(
                plane.map_server, negative_ttl_minutes=config.mapping_system.negative_ttl
            )
        plane.ddt_leaf = DdtLeaf(
            plane.map_server, rlocs, config.ddt.referral_ttl, float(config.ddt.answer_rate)
        )
    if "ddt-node" in roles:
        plane.ddt_node = DdtNode(config.ddt_authorities, config.ddt_delegations, config.ddt)
    if "map-resolver" in roles and config.ddt.roots:
        plane.ddt_resolver = DdtResolver(
            config.ddt.roots, config.ddt, frozenset(a.version for a in rlocs)
        )
    return plane
