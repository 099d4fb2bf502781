"""Rules across sections, and the assembly of the final :class:`~lispd.config.model.Config`.

Each section has already been checked on its own (:mod:`lispd.config.sections`); what is left
are the rules that need two of them:

- no (instance-id, EID-prefix) twice in ``database-mapping``, nor twice in ``map-cache``, nor
  in both (a prefix is either local or remote);
- roles get what they need: ``itr`` and ``etr`` need at least one ``database-mapping``;
- with the ``etr`` role, every ``database-mapping`` lists at least one of ``underlay.rlocs``
  (other RLOCs in the set are allowed: they are the site's other xTRs, registered along);
- every positive ``map-cache`` entry has an RLOC of a family this router has an RLOC of;
- in both rules an Explicit Locator Path counts as its last hop, the ETR (its ``Rloc.address``;
  its hops are all of one family);
- ``tun.mtu`` defaults to ``underlay.mtu`` minus the encapsulation overhead, and is at least
  1280 when any EID-prefix is IPv6;
- the control plane: ``map-server`` needs at least one ``site``, ``map-resolver`` needs the
  ``map-server`` role (lispd's Map-Resolver answers from its co-located Map-Server's
  registrations) or ``[ddt] roots`` (it resolves through LISP-DDT); ``ddt-node`` needs a
  ``[[ddt-authority]]`` (the DDT rules are in :mod:`lispd.config.ddt`); ``[[map-server]]``
  entries need the ``etr`` role or an enabled
  ``[nat-traversal]`` (an ITR behind a NAT sends them Info-Requests), and ``[[site]]`` entries
  the ``map-server`` role (else they would be ignored); a ``"send-map-request"`` map-cache entry
  needs the ``itr`` role and at least one ``[[map-resolver]]``;
- NAT traversal: ``nat-traversal.enabled`` needs the ``etr`` or ``itr`` role and at least one
  ``[[map-server]]``; each of ``rtr.public-rlocs`` is of a family ``underlay.rlocs`` has (it
  stands for that RLOC behind the NAT); no ``mapping-system.rtr-rlocs`` is one of this node's
  own RLOCs unless it has the ``rtr`` role. Like ``[mapping-system]`` without the
  ``map-server`` role, an ``[rtr]`` table without the ``rtr`` role is checked but unused;
- no Map-Server nor Map-Resolver address twice, each of a family ``underlay.rlocs`` has, and not
  one of this node's own RLOCs unless it has the matching role;
- site names are unique, and no EID-prefix of one site overlaps (equals, contains or is inside)
  one of another site in the same instance-id.

Keys (``map-server.key``, ``site.key``) are secrets: no message here ever quotes one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lispd.config.ddt import check_ddt
from lispd.config.locate import KeyPath
from lispd.config.model import (
    DEFAULT_ROUTE_TABLE,
    MIN_IPV6_MTU,
    RESERVED_ROUTE_TABLES,
    Config,
    DaemonConfig,
    IPAddress,
    IPNetwork,
    Mapping,
    MappingSystemConfig,
    MapServerRef,
    NatTraversalConfig,
    Rloc,
    RtrConfig,
    Site,
    TunConfig,
    UnderlayConfig,
)
from lispd.config.schema import Context, format_key_path

DATABASE_KEY = "database-mapping"
MAP_CACHE_KEY = "map-cache"
MAP_SERVER_KEY = "map-server"
MAP_RESOLVER_KEY = "map-resolver"
SITE_KEY = "site"
PETR_KEY = "petr"
NAT_TRAVERSAL_KEY = "nat-traversal"
RTR_KEY = "rtr"
MAPPING_SYSTEM_KEY = "mapping-system"
SEND_MAP_REQUEST = "send-map-request"

RoleNeed = tuple[Callable[[dict[str, Any]], bool], str]

ROLE_NEEDS: dict[str, tuple[RoleNeed, ...]] = {
    "itr": (
        (
            lambda values: bool(values["database_mapping"]),
            "needs at least one [[database-mapping]] (the local EID-prefixes it encapsulates from)",
        ),
    ),
    "etr": (
        (
            lambda values: bool(values["database_mapping"]),
            "needs at least one [[database-mapping]] (the local EID-prefixes it decapsulates for)",
        ),
    ),
    "pitr": (
        (
            lambda values: any(m.action == SEND_MAP_REQUEST for m in values["map_cache"]),
            'needs at least one [[map-cache]] with action = "send-map-request" (the EID-prefixes '
            "it attracts from non-LISP space and resolves)",
        ),
    ),
    "map-server": (
        (
            lambda values: bool(values["site"]),
            "needs at least one [[site]] (the sites allowed to register)",
        ),
    ),
    "map-resolver": (
        (
            lambda values: "map-server" in values["daemon"].roles or bool(values["ddt"].roots),
            "needs the 'map-server' role too (lispd's Map-Resolver answers Map-Requests from "
            "the registrations of its co-located Map-Server) or [ddt] roots (it resolves "
            "through LISP-DDT)",
        ),
    ),
    "ddt-node": (
        (
            lambda values: bool(values["ddt_authority"]),
            "needs at least one [[ddt-authority]] (the EID-prefixes it is authoritative for)",
        ),
    ),
}
"""Per role, (predicate over the checked top-level values, what is missing) pairs."""


def build_config(values: dict[str, Any], path: KeyPath, ctx: Context) -> Config:
    """Check the cross-section rules on the checked sections and assemble the Config."""
    daemon: DaemonConfig = values["daemon"]
    underlay: UnderlayConfig = values["underlay"]
    database: tuple[Mapping, ...] = values["database_mapping"]
    map_cache: tuple[Mapping, ...] = values["map_cache"]

    _check_unique_prefixes(database, DATABASE_KEY, ctx)
    _check_unique_prefixes(map_cache, MAP_CACHE_KEY, ctx)
    _check_local_not_cached(database, map_cache, ctx)
    _check_roles(daemon, values, ctx)
    if "etr" in daemon.roles:
        _check_etr_rlocs(database, underlay, ctx)
    _check_map_cache_families(map_cache, underlay, ctx)

    map_servers: tuple[MapServerRef, ...] = values["map_server"]
    map_resolvers: tuple[IPAddress, ...] = values["map_resolver"]
    sites: tuple[Site, ...] = values["site"]
    nat_traversal: NatTraversalConfig = values["nat_traversal"]
    _check_nat_traversal(nat_traversal, daemon, map_servers, ctx)
    if map_servers and "etr" not in daemon.roles and not nat_traversal.enabled:
        nat_hint = (
            ", set nat-traversal.enabled (an ITR behind a NAT sends them Info-Requests)"
            if "itr" in daemon.roles
            else ""
        )
        ctx.fail(
            (MAP_SERVER_KEY, 0),
            "[[map-server]] is only used by the 'etr' role (to register the database-mappings), "
            f"which daemon.roles does not have: add 'etr'{nat_hint} or remove the "
            "[[map-server]] entries",
        )
    if sites and "map-server" not in daemon.roles:
        ctx.fail(
            (SITE_KEY, 0),
            "[[site]] is only used by the 'map-server' role, which daemon.roles does not "
            "have: add 'map-server' or remove the [[site]] entries",
        )
    _check_control_addresses(
        MAP_SERVER_KEY, [ms.address for ms in map_servers], "map-server", underlay, daemon, ctx
    )
    _check_control_addresses(
        MAP_RESOLVER_KEY, list(map_resolvers), "map-resolver", underlay, daemon, ctx
    )
    _check_send_map_request(map_cache, map_resolvers, daemon, ctx)
    petrs: tuple[Rloc, ...] = values["petr"]
    if petrs and not daemon.roles & {"itr", "pitr", "rtr"}:
        ctx.fail(
            (PETR_KEY, 0),
            "[[petr]] is only used by the 'itr', 'pitr' and 'rtr' roles (to send "
            "native-forward traffic to), which daemon.roles does not have",
        )
    _check_control_addresses(PETR_KEY, [p.address for p in petrs], "petr", underlay, daemon, ctx)
    _check_site_names(sites, ctx)
    _check_site_overlaps(sites, ctx)
    rtr: RtrConfig = values["rtr"]
    _check_public_rlocs(rtr, underlay, ctx)
    mapping_system: MappingSystemConfig = values["mapping_system"]
    _check_rtr_rlocs(mapping_system, underlay, daemon, ctx)
    _check_ms_rtr_keys(mapping_system, nat_traversal, daemon, ctx)
    check_ddt(values, daemon, underlay, ctx)

    tun = _resolve_tun(values["tun"], underlay, database + map_cache, ctx)
    return Config(
        daemon=daemon,
        tun=tun,
        underlay=underlay,
        database=database,
        map_cache=map_cache,
        map_servers=map_servers,
        map_resolvers=map_resolvers,
        registration=values["registration"],
        resolver=values["resolver"],
        mapping_system=mapping_system,
        sites=sites,
        petrs=petrs,
        probing=values["probing"],
        nat_traversal=nat_traversal,
        rtr=rtr,
        metrics=values["metrics"],
        limits=values["limits"],
        dataplane=values["dataplane"],
        ddt=values["ddt"],
        ddt_authorities=values["ddt_authority"],
        ddt_delegations=values["ddt_delegation"],
        path=ctx.path,
    )


def _describe(mapping: Mapping) -> str:
    return f"{mapping.prefix} in instance-id {mapping.instance_id}"


def _check_unique_prefixes(mappings: tuple[Mapping, ...], section: str, ctx: Context) -> None:
    seen: dict[tuple[int, Any], int] = {}
    for index, mapping in enumerate(mappings):
        key = (mapping.instance_id, mapping.prefix)
        if key in seen:
            ctx.fail(
                (section, index, "eid-prefix"),
                f"{_describe(mapping)} is already {format_key_path((section, seen[key]))}",
            )
        seen[key] = index


def _check_local_not_cached(
    database: tuple[Mapping, ...], map_cache: tuple[Mapping, ...], ctx: Context
) -> None:
    local = {(m.instance_id, m.prefix): i for i, m in enumerate(database)}
    for index, mapping in enumerate(map_cache):
        first = local.get((mapping.instance_id, mapping.prefix))
        if first is not None:
            ctx.fail(
                (MAP_CACHE_KEY, index, "eid-prefix"),
                f"{_describe(mapping)} is a local prefix "
                f"({format_key_path((DATABASE_KEY, first))}), it cannot also be remote",
            )


def _check_roles(daemon: DaemonConfig, values: dict[str, Any], ctx: Context) -> None:
    for role in sorted(daemon.roles):
        for satisfied, missing in ROLE_NEEDS.get(role, ()):
            if not satisfied(values):
                ctx.fail(("daemon", "roles"), f"role '{role}' {missing}")


def _check_etr_rlocs(database: tuple[Mapping, ...], underlay: UnderlayConfig, ctx: Context) -> None:
    for index, mapping in enumerate(database):
        if not any(rloc.address in underlay.rlocs for rloc in mapping.rlocs):
            own = ", ".join(str(a) for a in underlay.rlocs)
            ctx.fail(
                (DATABASE_KEY, index, "rlocs"),
                f"lists none of underlay.rlocs ({own}); an ETR must list at least one of "
                "its own RLOCs here",
            )


def _check_map_cache_families(
    map_cache: tuple[Mapping, ...], underlay: UnderlayConfig, ctx: Context
) -> None:
    local_versions = {address.version for address in underlay.rlocs}
    for index, mapping in enumerate(map_cache):
        versions = {rloc.address.version for rloc in mapping.rlocs}
        if versions and not versions & local_versions:
            missing = "/".join(f"IPv{v}" for v in sorted(versions))
            ctx.fail(
                (MAP_CACHE_KEY, index, "rlocs"),
                f"unreachable: all are {missing} and underlay.rlocs has no {missing} address",
            )


def _check_control_addresses(
    section: str,
    addresses: list[IPAddress],
    role: str,
    underlay: UnderlayConfig,
    daemon: DaemonConfig,
    ctx: Context,
) -> None:
    """Map-Server or Map-Resolver addresses: unique, reachable, not ourselves without the role."""
    seen: dict[IPAddress, int] = {}
    local_versions = {address.version for address in underlay.rlocs}
    for index, address in enumerate(addresses):
        path = (section, index, "address")
        if address in seen:
            ctx.fail(path, f"{address} is already {format_key_path((section, seen[address]))}")
        seen[address] = index
        if address.version not in local_versions:
            ctx.fail(
                path,
                f"unreachable: {address} is IPv{address.version} and underlay.rlocs has no "
                f"IPv{address.version} address",
            )
        if address in underlay.rlocs and role not in daemon.roles:
            ctx.fail(
                path,
                f"{address} is this node's own RLOC, but daemon.roles has no '{role}' role "
                "to answer there",
            )


def _check_send_map_request(
    map_cache: tuple[Mapping, ...],
    map_resolvers: tuple[IPAddress, ...],
    daemon: DaemonConfig,
    ctx: Context,
) -> None:
    for index, mapping in enumerate(map_cache):
        if mapping.action != SEND_MAP_REQUEST:
            continue
        path = (MAP_CACHE_KEY, index, "action")
        if not daemon.roles & {"itr", "pitr"}:
            ctx.fail(
                path,
                f"\"{SEND_MAP_REQUEST}\" needs the 'itr' or 'pitr' role (only they resolve the "
                "destinations they encapsulate to), which daemon.roles does not have",
            )
        if not map_resolvers:
            ctx.fail(
                path,
                f'"{SEND_MAP_REQUEST}" needs at least one [[map-resolver]] to send the '
                "Map-Requests to",
            )


def _check_nat_traversal(
    nat_traversal: NatTraversalConfig,
    daemon: DaemonConfig,
    map_servers: tuple[MapServerRef, ...],
    ctx: Context,
) -> None:
    if not nat_traversal.enabled:
        return
    path = (NAT_TRAVERSAL_KEY, "enabled")
    if not daemon.roles & {"etr", "itr"}:
        ctx.fail(
            path,
            "NAT traversal is for an xTR behind a NAT: it needs the 'etr' or 'itr' role, which "
            "daemon.roles does not have",
        )
    if not map_servers:
        ctx.fail(
            path,
            "NAT traversal needs at least one [[map-server]] (to send the Info-Requests to that "
            "discover the translated RLOC and the RTRs)",
        )


def _check_public_rlocs(rtr: RtrConfig, underlay: UnderlayConfig, ctx: Context) -> None:
    local_versions = {address.version for address in underlay.rlocs}
    for index, address in enumerate(rtr.public_rlocs):
        if address.version not in local_versions:
            ctx.fail(
                (RTR_KEY, "public-rlocs", index),
                f"{address} is IPv{address.version} and underlay.rlocs has no "
                f"IPv{address.version} address for it to stand for (a public RLOC is the "
                "address of a local RLOC of its family seen through a 1:1 NAT)",
            )


def _check_rtr_rlocs(
    mapping_system: MappingSystemConfig,
    underlay: UnderlayConfig,
    daemon: DaemonConfig,
    ctx: Context,
) -> None:
    if "rtr" in daemon.roles:
        return
    for index, address in enumerate(mapping_system.rtr_rlocs):
        if address in underlay.rlocs:
            ctx.fail(
                (MAPPING_SYSTEM_KEY, "rtr-rlocs", index),
                f"{address} is this node's own RLOC, but daemon.roles has no 'rtr' role to "
                "relay there",
            )


def _check_ms_rtr_keys(
    mapping_system: MappingSystemConfig,
    nat_traversal: NatTraversalConfig,
    daemon: DaemonConfig,
    ctx: Context,
) -> None:
    """The Map-Server's MS-RTR key (draft-style NAT traversal) belongs to that role, and a
    draft-style Map-Server handing out RTRs needs it. (``rtr.ms-rtr-key`` is checked but unused
    without the ``rtr`` role, like the rest of ``[rtr]``.)"""
    if mapping_system.ms_rtr_key is not None and "map-server" not in daemon.roles:
        ctx.fail(
            (MAPPING_SYSTEM_KEY, "ms-rtr-key"),
            "the MS-RTR key signs the Map-Server's Map-Notifies to RTRs: it needs the "
            "'map-server' role, which daemon.roles does not have",
        )
    if (
        nat_traversal.style == "draft"
        and "map-server" in daemon.roles
        and mapping_system.rtr_rlocs
        and mapping_system.ms_rtr_key is None
    ):
        ctx.fail(
            (MAPPING_SYSTEM_KEY, "rtr-rlocs"),
            'with nat-traversal.style = "draft" the Map-Server answers registrations that '
            "come through these RTRs with Map-Notifies signed for them: set "
            "mapping-system.ms-rtr-key (the key the RTRs have as rtr.ms-rtr-key)",
        )


def _check_site_names(sites: tuple[Site, ...], ctx: Context) -> None:
    seen: dict[str, int] = {}
    for index, site in enumerate(sites):
        if site.name in seen:
            first = format_key_path((SITE_KEY, seen[site.name]))
            ctx.fail((SITE_KEY, index, "name"), f"site name {site.name!r} is already {first}")
        seen[site.name] = index


_Position = tuple[int, int]
"""A site prefix's place in the file: (index in ``site``, index in its ``eid-prefixes``)."""


def _check_site_overlaps(sites: tuple[Site, ...], ctx: Context) -> None:
    """No EID-prefix of one site equals, contains or is inside one of another site.

    Per (instance-id, IP version), the prefixes sorted by (address, length) put every prefix
    after those that contain it, so a stack of the nested prefixes seen so far holds all of
    them: linear but for the nesting depth. The conflict reported is the first in file order.
    """
    groups: dict[tuple[int, int], list[tuple[IPNetwork, _Position]]] = {}
    for site_index, site in enumerate(sites):
        for prefix_index, entry in enumerate(site.prefixes):
            group = groups.setdefault((entry.instance_id, entry.version), [])
            group.append((entry.prefix, (site_index, prefix_index)))
    conflict: tuple[_Position, _Position] | None = None  # (later, earlier) in file order
    for group in groups.values():
        group.sort(key=lambda item: (int(item[0].network_address), item[0].prefixlen, item[1]))
        stack: list[tuple[IPNetwork, _Position]] = []
        for prefix, position in group:
            while stack and not prefix.subnet_of(stack[-1][0]):  # type: ignore[arg-type]
                stack.pop()
            for _outer, outer_position in stack:
                if outer_position[0] != position[0]:
                    found = (max(position, outer_position), min(position, outer_position))
                    conflict = found if conflict is None else min(conflict, found)
            stack.append((prefix, position))
    if conflict is None:
        return
    (site_index, prefix_index), (other_site, other_index) = conflict
    entry = sites[site_index].prefixes[prefix_index]
    other = sites[other_site].prefixes[other_index]
    if entry.prefix == other.prefix:
        relation = "is also"
    elif entry.prefix.subnet_of(other.prefix):  # type: ignore[arg-type]
        relation = "is inside"
    else:
        relation = "contains"
    ctx.fail(
        (SITE_KEY, site_index, "eid-prefixes", prefix_index, "eid-prefix"),
        f"{entry.prefix} in instance-id {entry.instance_id} of site "
        f"{sites[site_index].name!r} {relation} {other.prefix} of site "
        f"{sites[other_site].name!r} "
        f"({format_key_path((SITE_KEY, other_site, 'eid-prefixes', other_index))}); "
        "an EID-prefix can belong to one site only",
    )


def _resolve_tun(
    values: dict[str, Any],
    underlay: UnderlayConfig,
    mappings: tuple[Mapping, ...],
    ctx: Context,
) -> TunConfig:
    overhead = underlay.encap_overhead
    mtu: int | None = values["mtu"]
    given = mtu is not None
    if mtu is None:
        mtu = underlay.mtu - overhead
    if mtu < MIN_IPV6_MTU and any(m.version == 6 for m in mappings):
        if given:
            message = f"must be at least {MIN_IPV6_MTU} with IPv6 EID-prefixes, got {mtu}"
        else:
            message = (
                f"defaults to {mtu} (underlay.mtu {underlay.mtu} minus {overhead} bytes of "
                f"headers), below the {MIN_IPV6_MTU} IPv6 EID-prefixes need; set underlay.mtu "
                f"to at least {MIN_IPV6_MTU + overhead} or set tun.mtu"
            )
        ctx.fail(("tun", "mtu"), message, at=("tun", "mtu"))
    table = values["route_table"]
    if table in RESERVED_ROUTE_TABLES:
        ctx.fail(
            ("tun", "route-table"),
            f"{table} is the kernel's {RESERVED_ROUTE_TABLES[table]!r} table; lispd needs a "
            f"table of its own (default {DEFAULT_ROUTE_TABLE})",
            at=("tun", "route-table"),
        )
    return TunConfig(
        name=values["name"],
        mtu=mtu,
        route_table=table,
        rule_priority=values["rule_priority"],
        route_protocol=values["route_protocol"],
    )
