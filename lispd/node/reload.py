"""Reload: what of a new configuration a running node can take at once, and the control machines
brought up to date in place.

Pure functions over validated :class:`~lispd.config.Config` objects and the control machines;
the daemon does the I/O (routes, sockets, sends).  What a reload cannot change without a restart
(roles, the TUN, the underlay RLOCs and the sockets bound to them, NAT traversal, ...) is kept
as it runs and reported; everything else is applied while packets keep flowing, and state that
does not depend on the change (map-cache, pending resolutions, registrations at the Map-Server,
probe history) survives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from lispd.config import Config
from lispd.control.outputs import SendControl
from lispd.control.plane import ControlPlane

# Settings a running daemon cannot change: (name shown to the operator, how to read it).
RESTART_ONLY: tuple[tuple[str, Callable[[Config], Any]], ...] = (
    ("daemon.roles", lambda c: c.daemon.roles),
    ("daemon.control-socket", lambda c: c.daemon.control_socket),
    ("tun", lambda c: c.tun),
    ("underlay", lambda c: c.underlay),
    ("nat-traversal", lambda c: c.nat_traversal),
    ("rtr.public-rlocs", lambda c: c.rtr.public_rlocs),
    ("metrics", lambda c: c.metrics),
    ("dataplane", lambda c: c.dataplane),
)

# Sections applied live, for the log line and the reload answer.
LIVE: tuple[tuple[str, Callable[[Config], Any]], ...] = (
    ("daemon.log-level", lambda c: c.daemon.log_level),
    ("daemon.name", lambda c: c.daemon.name),
    ("database-mapping", lambda c: c.database),
    ("map-cache", lambda c: c.map_cache),
    ("map-server", lambda c: c.map_servers),
    ("map-resolver", lambda c: c.map_resolvers),
    ("registration", lambda c: c.registration),
    ("resolver", lambda c: c.resolver),
    ("mapping-system", lambda c: c.mapping_system),
    ("site", lambda c: c.sites),
    ("petr", lambda c: c.petrs),
    ("probing", lambda c: c.probing),
    ("rtr", lambda c: replace(c.rtr, public_rlocs=())),
    ("limits", lambda c: c.limits),
    ("ddt", lambda c: c.ddt),
    ("ddt-authority", lambda c: c.ddt_authorities),
    ("ddt-delegation", lambda c: c.ddt_delegations),
)


@dataclass(frozen=True)
class ReloadPlan:
    """The outcome of comparing the running configuration with a newly read one."""

    effective: Config
    """The configuration to run from now on: the new one, except for the settings in
    ``restart_needed``, which keep their running values."""
    applied: tuple[str, ...]
    """Sections that changed and are applied now."""
    restart_needed: tuple[str, ...]
    """Settings that changed but take effect only after a restart."""


def plan_reload(running: Config, new: Config) -> ReloadPlan:
    """Split the difference between ``running`` and ``new`` into what is applied now and what
    needs a restart."""
    restart = [name for name, get in RESTART_ONLY if get(running) != get(new)]
    # Behind a NAT the Map-Servers are also the NAT discovery servers: that machine is built
    # once, at start.
    if running.nat_traversal.enabled and running.map_servers != new.map_servers:
        restart.append("map-server (with nat-traversal)")
    effective = replace(
        new,
        daemon=replace(
            new.daemon, roles=running.daemon.roles, control_socket=running.daemon.control_socket
        ),
        tun=running.tun,
        underlay=running.underlay,
        nat_traversal=running.nat_traversal,
        rtr=replace(new.rtr, public_rlocs=running.rtr.public_rlocs),
        metrics=running.metrics,
        dataplane=running.dataplane,
        # Behind a NAT the registrar's Map-Servers come from NAT discovery, built at start.
        map_servers=running.map_servers if running.nat_traversal.enabled else new.map_servers,
    )
    applied = tuple(name for name, get in LIVE if get(running) != get(effective))
    return ReloadPlan(effective, applied, tuple(restart))


def update_control_plane(
    plane: ControlPlane, fresh: ControlPlane, now: float, *, registrar_targets: bool = True
) -> list[SendControl]:
    """Bring the running machines of ``plane`` to the configuration ``fresh`` was built from.

    A machine the new configuration adds is taken from ``fresh``, one it removes is dropped,
    and one present in both is updated in place, keeping its state: pending resolutions and
    their held packets, probe history, Map-Server registrations of sites still configured,
    registration schedules of unchanged Map-Servers.  With ``registrar_targets`` false the
    registrar's Map-Servers are left alone (NAT traversal sets them).  Returns the Map-Registers
    due at once (new Map-Servers, changed keys).
    """
    sends: list[SendControl] = []
    if plane.resolver is None or fresh.resolver is None:
        plane.resolver = fresh.resolver
    else:
        resolver = plane.resolver
        resolver.set_map_resolvers(fresh.resolver.map_resolvers)
        if resolver.settings != fresh.resolver.settings:
            resolver.set_settings(fresh.resolver.settings)

    if plane.registrar is None or fresh.registrar is None:
        plane.registrar = fresh.registrar
    else:
        registrar = plane.registrar
        registrar.want_map_notify = fresh.registrar.want_map_notify
        registrar.interval = fresh.registrar.interval
        if registrar_targets:
            sends += registrar.update_targets(fresh.registrar.targets, now)

    if plane.replier is None or fresh.replier is None:
        plane.replier = fresh.replier
    else:
        plane.replier.record_ttl = fresh.replier.record_ttl

    if plane.prober is None or fresh.prober is None:
        plane.prober = fresh.prober
    elif plane.prober.settings != fresh.prober.settings:
        plane.prober.set_settings(fresh.prober.settings)

    if plane.map_server is None or fresh.map_server is None:
        plane.map_server = fresh.map_server
        plane.map_resolver = fresh.map_resolver
        plane.info_responder = fresh.info_responder
    else:
        ms = plane.map_server
        ms.registration_timeout = fresh.map_server.registration_timeout
        ms.max_site_registrations = fresh.map_server.max_site_registrations
        ms.rtrs = fresh.map_server.rtrs
        ms.ms_rtr_key = fresh.map_server.ms_rtr_key
        ms.ms_rtr_key_id = fresh.map_server.ms_rtr_key_id
        if ms.sites != fresh.map_server.sites:
            ms.set_sites(fresh.map_server.sites, now)
        if plane.map_resolver is None or fresh.map_resolver is None:
            plane.map_resolver = fresh.map_resolver
        else:
            plane.map_resolver.negative_ttl_minutes = fresh.map_resolver.negative_ttl_minutes
        if plane.info_responder is not None and fresh.info_responder is not None:
            plane.info_responder.rtrs = fresh.info_responder.rtrs
        if plane.map_resolver is not None:
            plane.map_resolver.map_server = ms
    _update_ddt(plane, fresh)
    return sends


def _update_ddt(plane: ControlPlane, fresh: ControlPlane) -> None:
    """The DDT machines: a DDT node takes the new tables with its counters kept, the
    Map-Server's leaf follows the Map-Server, a DDT resolver keeps its walks in progress and its
    referral cache (referrals are the tree's answers, not configuration)."""
    if fresh.ddt_node is not None and plane.ddt_node is not None:
        fresh.ddt_node.drops, fresh.ddt_node.stats = plane.ddt_node.drops, plane.ddt_node.stats
    plane.ddt_node = fresh.ddt_node
    if fresh.ddt_leaf is not None and plane.map_server is not None:
        fresh.ddt_leaf.map_server = plane.map_server
        if plane.ddt_leaf is not None:
            fresh.ddt_leaf.drops, fresh.ddt_leaf.stats = plane.ddt_leaf.drops, plane.ddt_leaf.stats
    plane.ddt_leaf = fresh.ddt_leaf
    if plane.ddt_resolver is None or fresh.ddt_resolver is None:
        plane.ddt_resolver = fresh.ddt_resolver
    else:
        plane.ddt_resolver.configure_from(fresh.ddt_resolver)
