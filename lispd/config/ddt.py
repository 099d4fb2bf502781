"""The LISP-DDT sections of ``lispd.conf`` (RFC 8111): ``[ddt]``, ``[[ddt-authority]]`` and
``[[ddt-delegation]]``, and the rules that tie them to the roles.

- ``[ddt] roots`` makes a ``map-resolver`` a DDT client: unique addresses, each of a family
  ``underlay.rlocs`` has; only with the ``map-resolver`` role;
- ``[[ddt-authority]]`` and ``[[ddt-delegation]]`` only with the ``ddt-node`` role, which
  needs at least one authority;
- no authority prefix twice (an authority inside another one is allowed: the longest wins);
- every delegation lies inside an authority prefix of its instance-id, and no two delegations
  of an instance-id overlap (equal, contain, inside): a DDT node refers each EID to exactly
  one referral set.
"""

from __future__ import annotations

from typing import Any

from lispd.config.locate import KeyPath
from lispd.config.model import (
    DDT_DELEGATION_KINDS,
    DEFAULT_INSTANCE_ID,
    MAX_INSTANCE_ID,
    DaemonConfig,
    DdtAuthority,
    DdtConfig,
    DdtDelegation,
    IPNetwork,
    UnderlayConfig,
)
from lispd.config.schema import (
    Address,
    Context,
    Int,
    Key,
    ListOf,
    Number,
    Prefix,
    Str,
    Table,
    format_key_path,
)

DDT_KEY = "ddt"
AUTHORITY_KEY = "ddt-authority"
DELEGATION_KEY = "ddt-delegation"

MAX_REFERRAL_SET = 16
"""Addresses in one delegation's referral set (what a Map-Resolver accepts in a referral)."""


def _build_ddt(values: dict[str, Any], path: KeyPath, ctx: Context) -> DdtConfig:
    return DdtConfig(**values)


DDT = Table(
    keys=(
        Key("roots", ListOf(Address(), unique=True)),
        Key("request-timeout", Number(0.1, 30)),
        Key("max-steps", Int(2, 64)),
        Key("max-pending", Int(1, 1_000_000)),
        Key("referral-cache-entries", Int(1, 10_000_000)),
        Key("referral-ttl", Int(1, 0xFFFFFFFF)),
        Key("hole-ttl", Int(1, 1440)),
        Key("answer-rate", Int(1, 1_000_000)),
    ),
    build=_build_ddt,
    model=DdtConfig,
)
"""``[ddt]``: the whole table is optional."""


def _build_authority(values: dict[str, Any], path: KeyPath, ctx: Context) -> DdtAuthority:
    return DdtAuthority(instance_id=values["instance_id"], prefix=values["eid_prefix"])


AUTHORITY = Table(
    keys=(
        Key("eid-prefix", Prefix(), required=True),
        Key("instance-id", Int(0, MAX_INSTANCE_ID), default=DEFAULT_INSTANCE_ID),
    ),
    build=_build_authority,
)


def _build_delegation(values: dict[str, Any], path: KeyPath, ctx: Context) -> DdtDelegation:
    return DdtDelegation(
        instance_id=values["instance_id"],
        prefix=values["eid_prefix"],
        kind=values["kind"],
        referrals=values["referrals"],
    )


def _referral_set_problem(referrals: tuple[Any, ...]) -> str | None:
    if len(referrals) > MAX_REFERRAL_SET:
        return f"at most {MAX_REFERRAL_SET} addresses in a referral set"
    return None


DELEGATION = Table(
    keys=(
        Key("eid-prefix", Prefix(), required=True),
        Key("instance-id", Int(0, MAX_INSTANCE_ID), default=DEFAULT_INSTANCE_ID),
        Key("kind", Str(choices=DDT_DELEGATION_KINDS), required=True),
        Key("referrals", ListOf(Address(), min_len=1, unique=True), required=True),
    ),
    build=_build_delegation,
)


def _describe(iid: int, prefix: IPNetwork) -> str:
    return f"{prefix} in instance-id {iid}"


def check_ddt(
    values: dict[str, Any], daemon: DaemonConfig, underlay: UnderlayConfig, ctx: Context
) -> None:
    """The cross-section DDT rules (module docstring) on the checked top-level values."""
    ddt: DdtConfig = values["ddt"]
    authorities: tuple[DdtAuthority, ...] = values["ddt_authority"]
    delegations: tuple[DdtDelegation, ...] = values["ddt_delegation"]
    if ddt.roots and "map-resolver" not in daemon.roles:
        ctx.fail(
            (DDT_KEY, "roots"),
            "[ddt] roots are only used by the 'map-resolver' role (to resolve through "
            "LISP-DDT), which daemon.roles does not have",
        )
    families = {a.version for a in underlay.rlocs}
    for index, root in enumerate(ddt.roots):
        if root.version not in families:
            ctx.fail(
                (DDT_KEY, "roots", index),
                f"unreachable: {root} is IPv{root.version} and underlay.rlocs has no "
                f"IPv{root.version} address",
            )
    for key, entries in ((AUTHORITY_KEY, authorities), (DELEGATION_KEY, delegations)):
        if entries and "ddt-node" not in daemon.roles:
            ctx.fail(
                (key, 0),
                f"[[{key}]] is only used by the 'ddt-node' role, which daemon.roles does not "
                "have: add 'ddt-node' or remove the entries",
            )
    seen: dict[tuple[int, IPNetwork], int] = {}
    for index, auth in enumerate(authorities):
        scoped = (auth.instance_id, auth.prefix)
        if scoped in seen:
            ctx.fail(
                (AUTHORITY_KEY, index, "eid-prefix"),
                f"{_describe(*scoped)} is already {format_key_path((AUTHORITY_KEY, seen[scoped]))}",
            )
        seen[scoped] = index
    for index, dele in enumerate(delegations):
        path = (DELEGATION_KEY, index)
        problem = _referral_set_problem(dele.referrals)
        if problem is not None:
            ctx.fail((*path, "referrals"), problem)
        inside = any(
            a.instance_id == dele.instance_id
            and a.prefix.version == dele.prefix.version
            and dele.prefix.subnet_of(a.prefix)  # type: ignore[arg-type]
            for a in authorities
        )
        if not inside:
            ctx.fail(
                (*path, "eid-prefix"),
                f"{_describe(dele.instance_id, dele.prefix)} is inside no [[ddt-authority]] "
                "prefix: a DDT node delegates only what it is authoritative for",
            )
    _check_delegation_overlaps(delegations, ctx)


def _check_delegation_overlaps(delegations: tuple[DdtDelegation, ...], ctx: Context) -> None:
    """Prefixes are nested or disjoint, so in (scope, start address, length) order an overlap
    is always with the entry reaching furthest so far: one sort, one pass."""
    order = sorted(
        range(len(delegations)),
        key=lambda i: (
            delegations[i].instance_id,
            delegations[i].prefix.version,
            int(delegations[i].prefix.network_address),
            delegations[i].prefix.prefixlen,
        ),
    )
    reach: tuple[int, int, int, int] | None = None  # (iid, version, last address, index)
    for index in order:
        dele = delegations[index]
        scope = (dele.instance_id, dele.prefix.version)
        start = int(dele.prefix.network_address)
        if reach is not None and reach[:2] == scope and start <= reach[2]:
            first, second = sorted((reach[3], index))
            ctx.fail(
                (DELEGATION_KEY, second, "eid-prefix"),
                f"{_describe(dele.instance_id, delegations[second].prefix)} overlaps "
                f"{delegations[first].prefix} of {format_key_path((DELEGATION_KEY, first))}: "
                "each EID is delegated to one referral set",
            )
        end = int(dele.prefix.broadcast_address)
        if reach is None or reach[:2] != scope or end > reach[2]:
            reach = (*scope, end, index)
