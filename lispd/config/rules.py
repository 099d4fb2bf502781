"""Rules across sections, and the assembly of the final :class:`~lispd.config.model.Config`.

Each section has already been checked on its own (:mod:`lispd.config.sections`); what is left
are the rules that need two of them:

- no (instance-id, EID-prefix) twice in ``database-mapping``, nor twice in ``map-cache``, nor
  in both (a prefix is either local or remote);
- roles get what they need: ``itr`` and ``etr`` need at least one ``database-mapping``;
- with the ``etr`` role, every ``database-mapping`` lists at least one of ``underlay.rlocs``
  (other RLOCs in the set are allowed: they are the site's other xTRs, registered along);
- every positive ``map-cache`` entry has an RLOC of a family this router has an RLOC of;
- ``tun.mtu`` defaults to ``underlay.mtu`` minus the encapsulation overhead, and is at least
  1280 when any EID-prefix is IPv6.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lispd.config.locate import KeyPath
from lispd.config.model import (
    MIN_IPV6_MTU,
    Config,
    DaemonConfig,
    Mapping,
    TunConfig,
    UnderlayConfig,
)
from lispd.config.schema import Context, format_key_path

DATABASE_KEY = "database-mapping"
MAP_CACHE_KEY = "map-cache"

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
    tun = _resolve_tun(values["tun"], underlay, database + map_cache, ctx)
    return Config(
        daemon=daemon,
        tun=tun,
        underlay=underlay,
        database=database,
        map_cache=map_cache,
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
    return TunConfig(name=values["name"], mtu=mtu)
