"""The schema of ``lispd.conf``: one :class:`~lispd.config.schema.Table` per section.

Each section is declared once here, with the rules that involve only its own keys in its
``build`` function; rules across sections are in :mod:`lispd.config.rules`.

Defaults are not written here: a ``Table`` names its ``model`` dataclass, and a key left out
of a file takes the default of the model's field (see :class:`~lispd.config.schema.Key`).

Adding a section (say ``[[petr]]``): a dataclass in :mod:`lispd.config.model` (with the
defaults), a field in :class:`~lispd.config.model.Config`, a ``Table`` here with its ``model``
and its :class:`Key` in :data:`ROOT`, one line in :func:`lispd.config.rules.build_config`, and
the keys in ``lispd.conf.example`` or, for Map-Server/Map-Resolver keys,
``lispd.conf.example.msmr`` (a test fails until they are documented in one of them, and
another until each ``Default:`` written there is the model's).
"""

from __future__ import annotations

import socket
from typing import Any

from lispd.config.ddt import AUTHORITY, DDT, DELEGATION
from lispd.config.locate import KeyPath
from lispd.config.model import (
    DEFAULT_INSTANCE_ID,
    DEFAULT_TUN_NAME,
    FASTPATHS,
    KEY_IDS,
    LOG_LEVELS,
    MAP_CACHE_ACTIONS,
    MAX_INSTANCE_ID,
    MAX_RULE_PRIORITY,
    MIN_IPV6_MTU,
    NAT_STYLES,
    OFFLOAD_BOOLS,
    OFFLOADS,
    ROLES,
    DaemonConfig,
    DataplaneConfig,
    LimitsConfig,
    Mapping,
    MappingSystemConfig,
    MapServerRef,
    MetricsConfig,
    NatTraversalConfig,
    ProbingConfig,
    RegistrationConfig,
    ResolverConfig,
    Rloc,
    RtrConfig,
    Site,
    SitePrefix,
    TunConfig,
    UnderlayConfig,
)
from lispd.config.rules import build_config
from lispd.config.schema import (
    Address,
    Bool,
    Context,
    Endpoint,
    Int,
    IntChoice,
    Key,
    ListOf,
    Number,
    Prefix,
    Secret,
    Str,
    Table,
    format_key_path,
)

IFNAMSIZ = 16
"""Linux interface names are at most ``IFNAMSIZ - 1`` bytes."""

MAX_TTL_MINUTES = 0xFFFFFFFF
"""Record TTLs are 32-bit minute counts (RFC 9301 section 5.4)."""


def default_node_name() -> str:
    """The host name, the default of ``daemon.name``."""
    return socket.gethostname() or "lispd"


def node_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a node name (it goes in key=value logs and trace records)."""
    if not 1 <= len(name) <= 64:
        return "must be 1 to 64 characters"
    if any(not char.isprintable() or char.isspace() for char in name):
        return f"{name!r} has a space or a control character"
    return None


def interface_name_problem(name: str) -> str | None:
    """Why Linux would refuse ``name`` as an interface name (``dev_valid_name``), or ``None``."""
    if not name:
        return "must not be empty"
    if not name.isascii() or not name.isprintable():
        return f"{name!r}: use printable ASCII characters only"
    if len(name) >= IFNAMSIZ:
        return f"{name!r} is {len(name)} characters; Linux allows at most {IFNAMSIZ - 1}"
    if name in (".", ".."):
        return f"{name!r} is not a valid interface name"
    for char in "/: %":
        if char in name:
            return f"{name!r}: interface names cannot contain {char!r}"
    return None


# -- [daemon] -------------------------------------------------------------------------------------


def _build_daemon(values: dict[str, Any], path: KeyPath, ctx: Context) -> DaemonConfig:
    return DaemonConfig(
        name=values["name"],
        roles=frozenset(values["roles"]),
        log_level=values["log_level"],
        control_socket=values["control_socket"],
    )


def socket_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be a unix socket path, or ``None`` (empty disables the socket)."""
    if path and not path.startswith("/"):
        return f"{path!r} must be an absolute path"
    if len(path.encode()) > 107:
        return "a unix socket path is at most 107 bytes"
    return None


ROLE_HINTS = (
    ("xtr", 'an xTR has two roles: write "itr", "etr"'),
    ("pxtr", 'a PxTR has two roles: write "pitr", "petr"'),
    ("ms", "did you mean 'map-server'?"),
    ("mr", "did you mean 'map-resolver'?"),
    ("msmr", 'a Map-Server/Map-Resolver has two roles: write "map-server", "map-resolver"'),
    ("ms/mr", 'a Map-Server/Map-Resolver has two roles: write "map-server", "map-resolver"'),
)
"""Role names from LISP parlance that lispd spells otherwise (difflib would guess wrong:
'xtr' is close to 'rtr')."""

DAEMON = Table(
    keys=(
        Key("name", Str(validate=node_name_problem), default_factory=default_node_name),
        Key(
            "roles",
            ListOf(Str(choices=ROLES, hints=ROLE_HINTS), min_len=1, unique=True),
            required=True,
        ),
        Key("log-level", Str(choices=LOG_LEVELS)),
        Key("control-socket", Str(validate=socket_path_problem)),
    ),
    build=_build_daemon,
    model=DaemonConfig,
)

# -- [tun] ----------------------------------------------------------------------------------------

# No build: the default MTU depends on [underlay], so rules.build_config makes the TunConfig.
TUN = Table(
    keys=(
        Key("name", Str(validate=interface_name_problem), default=DEFAULT_TUN_NAME),
        Key("mtu", Int(68, 65535), default=None),  # None: from underlay.mtu
        Key("route-table", Int(1, 0xFFFFFFFF)),
        Key("rule-priority", Int(1, MAX_RULE_PRIORITY)),
        # 0-4 are the kernel's own (unspec, redirect, kernel, boot, static).
        Key("route-protocol", Int(5, 255)),
    ),
    model=TunConfig,
)

# -- [underlay] -----------------------------------------------------------------------------------


def _check_one_per_family(addresses: tuple[Any, ...], path: KeyPath, ctx: Context) -> None:
    """At most one address per family in the list at ``path``."""
    for index, address in enumerate(addresses):
        first = next(i for i, other in enumerate(addresses) if other.version == address.version)
        if first != index:
            ctx.fail(
                (*path, index),
                f"{address} is a second IPv{address.version} RLOC after {addresses[first]}; "
                "give at most one per address family",
            )


def _build_underlay(values: dict[str, Any], path: KeyPath, ctx: Context) -> UnderlayConfig:
    rlocs = values["rlocs"]
    _check_one_per_family(rlocs, (*path, "rlocs"), ctx)
    underlay = UnderlayConfig(rlocs=rlocs, mtu=values["mtu"])
    if underlay.rloc_v6 is not None and underlay.mtu < MIN_IPV6_MTU:
        ctx.fail(
            (*path, "mtu"),
            f"must be at least {MIN_IPV6_MTU} with an IPv6 RLOC ({underlay.rloc_v6}), "
            f"got {underlay.mtu}",
            at=(*path, "mtu"),
        )
    return underlay


UNDERLAY = Table(
    keys=(
        Key("rlocs", ListOf(Address(), min_len=1, unique=True), required=True),
        Key("mtu", Int(576, 65535)),
    ),
    build=_build_underlay,
    model=UnderlayConfig,
)

# -- rlocs = [ { address | elp, priority, weight } ] ----------------------------------------------

MIN_ELP_HOPS = 2
"""An Explicit Locator Path has at least one hop before the ETR (else it is a plain RLOC)."""


def _check_elp(elp: tuple[Any, ...], path: KeyPath, ctx: Context) -> None:
    """At least two hops, all of one address family (``ListOf`` already refused repeats)."""
    if len(elp) < MIN_ELP_HOPS:
        ctx.fail(
            path,
            f"an Explicit Locator Path needs at least {MIN_ELP_HOPS} hops (the last is the "
            f"ETR), got {len(elp)}; give a single RLOC as address instead",
        )
    first = elp[0]
    for index, hop in enumerate(elp):
        if hop.version != first.version:
            ctx.fail(
                (*path, index),
                f"{hop} is IPv{hop.version} but elp[0] ({first}) is IPv{first.version}; all "
                "hops of a path must be of one address family",
            )


def _build_rloc(values: dict[str, Any], path: KeyPath, ctx: Context) -> Rloc:
    address, elp = values["address"], values["elp"]
    if address is not None and elp is not None:
        ctx.fail(
            (*path, "elp"),
            "give either address or elp, not both (the address of a path is its last hop)",
        )
    if elp is None:
        if address is None:
            ctx.fail(
                (*path, "address"),
                "required key is missing (or give elp, an Explicit Locator Path)",
                at=path,
            )
        return Rloc(address=address, priority=values["priority"], weight=values["weight"])
    _check_elp(elp, (*path, "elp"), ctx)
    return Rloc(address=elp[-1], priority=values["priority"], weight=values["weight"], elp=elp)


_PRIORITY = Key("priority", Int(0, 255))
_WEIGHT = Key("weight", Int(0, 255))

RLOC = Table(
    keys=(
        Key("address", Address(), default=None),  # None: absent (give address or elp)
        Key("elp", ListOf(Address(), unique=True), default=None),
        _PRIORITY,
        _WEIGHT,
    ),
    build=_build_rloc,
    model=Rloc,
)
"""A locator of a database-mapping or map-cache entry: an address, or an Explicit Locator
Path whose last hop becomes the address."""


def _build_petr(values: dict[str, Any], path: KeyPath, ctx: Context) -> Rloc:
    return Rloc(address=values["address"], priority=values["priority"], weight=values["weight"])


PETR = Table(
    keys=(Key("address", Address(), required=True), _PRIORITY, _WEIGHT),
    build=_build_petr,
    model=Rloc,
)
"""A ``[[petr]]``: an RLOC without an Explicit Locator Path."""


def _rloc_address_path(rloc: Rloc) -> KeyPath:
    """Where, inside its inline table, ``rloc.address`` was written: ``address`` or the last
    hop of ``elp``."""
    return ("elp", len(rloc.elp) - 1) if rloc.elp else ("address",)


def _check_rloc_set(rlocs: tuple[Rloc, ...], path: KeyPath, ctx: Context) -> None:
    """No address twice in one RLOC set (an Explicit Locator Path counts as its last hop)."""
    seen: dict[Any, int] = {}
    for index, rloc in enumerate(rlocs):
        first = seen.get(rloc.address)
        if first is not None:
            message = f"{rloc.address} is already rlocs[{first}]"
            if rloc.elp or rlocs[first].elp:
                message += (
                    "; an ETR is in an RLOC set once, on its own or as the last hop of an elp"
                )
            ctx.fail((*path, "rlocs", index, *_rloc_address_path(rloc)), message)
        seen[rloc.address] = index


# -- [[database-mapping]] -------------------------------------------------------------------------


def _build_database_mapping(values: dict[str, Any], path: KeyPath, ctx: Context) -> Mapping:
    _check_rloc_set(values["rlocs"], path, ctx)
    return Mapping(
        instance_id=values["instance_id"], prefix=values["eid_prefix"], rlocs=values["rlocs"]
    )


DATABASE_MAPPING = Table(
    keys=(
        Key("eid-prefix", Prefix(), required=True),
        Key("instance-id", Int(0, MAX_INSTANCE_ID), default=DEFAULT_INSTANCE_ID),
        Key("rlocs", ListOf(RLOC, min_len=1), required=True),
    ),
    build=_build_database_mapping,
)

# -- [[map-cache]] --------------------------------------------------------------------------------


def _build_map_cache(values: dict[str, Any], path: KeyPath, ctx: Context) -> Mapping:
    rlocs, action = values["rlocs"], values["action"]
    if rlocs is not None and action is not None:
        ctx.fail((*path, "action"), "give either rlocs or action, not both")
    if rlocs is None and action is None:
        ctx.fail(
            path,
            "needs rlocs (a positive entry) or action = "
            + " | ".join(f'"{a}"' for a in MAP_CACHE_ACTIONS)
            + " (a negative entry)",
        )
    if rlocs is not None:
        _check_rloc_set(rlocs, path, ctx)
    return Mapping(
        instance_id=values["instance_id"],
        prefix=values["eid_prefix"],
        rlocs=rlocs or (),
        action=action,
        ttl=values["ttl"],
    )


MAP_CACHE = Table(
    keys=(
        Key("eid-prefix", Prefix(), required=True),
        Key("instance-id", Int(0, MAX_INSTANCE_ID), default=DEFAULT_INSTANCE_ID),
        Key("rlocs", ListOf(RLOC, min_len=1)),
        Key("action", Str(choices=MAP_CACHE_ACTIONS)),
        Key("ttl", Int(1, MAX_TTL_MINUTES)),
    ),
    build=_build_map_cache,
)

# -- [[map-server]] -------------------------------------------------------------------------------


def _build_map_server(values: dict[str, Any], path: KeyPath, ctx: Context) -> MapServerRef:
    return MapServerRef(
        address=values["address"],
        key=values["key"],
        key_id=values["key_id"],
        proxy_reply=values["proxy_reply"],
    )


MAP_SERVER = Table(
    keys=(
        Key("address", Address(), required=True),
        Key("key", Secret(), required=True),
        Key("key-id", IntChoice(tuple(KEY_IDS.items()))),
        Key("proxy-reply", Bool()),
    ),
    build=_build_map_server,
    model=MapServerRef,
)

# -- [[map-resolver]] -----------------------------------------------------------------------------


def _build_map_resolver(values: dict[str, Any], path: KeyPath, ctx: Context) -> Any:
    return values["address"]


MAP_RESOLVER = Table(
    keys=(Key("address", Address(), required=True),),
    build=_build_map_resolver,
)

# -- [registration] -------------------------------------------------------------------------------


def _build_registration(values: dict[str, Any], path: KeyPath, ctx: Context) -> RegistrationConfig:
    return RegistrationConfig(**values)


REGISTRATION = Table(
    keys=(
        Key("interval", Number(1, 3600)),
        Key("record-ttl", Int(1, MAX_TTL_MINUTES)),
        Key("want-map-notify", Bool()),
    ),
    build=_build_registration,
    model=RegistrationConfig,
)

# -- [resolver] -----------------------------------------------------------------------------------


def _build_resolver(values: dict[str, Any], path: KeyPath, ctx: Context) -> ResolverConfig:
    return ResolverConfig(**values)


RESOLVER = Table(
    keys=(
        Key("retries", Int(0, 10)),
        Key("retry-interval", Number(0.05, 60)),
        Key("queue-per-entry", Int(0, 65535)),
        Key("queue-total", Int(0, 1_000_000)),
        Key("queue-timeout", Number(0.1, 60)),
        Key("min-request-interval", Number(0, 3600)),
        Key("max-requests-per-second", Int(1, 100_000)),
        Key("max-ttl", Int(1, MAX_TTL_MINUTES)),
    ),
    build=_build_resolver,
    model=ResolverConfig,
)

# -- [probing] ------------------------------------------------------------------------------------


def _build_probing(values: dict[str, Any], path: KeyPath, ctx: Context) -> ProbingConfig:
    return ProbingConfig(**values)


PROBING = Table(
    keys=(
        Key("interval", Number(0.1, 3600)),
        Key("timeout", Number(0.05, 60)),
        Key("down-after", Int(1, 100)),
        Key("map-cache", Bool()),
        Key("max-per-second", Number(1, 100000)),
    ),
    build=_build_probing,
    model=ProbingConfig,
)

# -- [mapping-system] -----------------------------------------------------------------------------


def _build_mapping_system(
    values: dict[str, Any], path: KeyPath, ctx: Context
) -> MappingSystemConfig:
    return MappingSystemConfig(**values)


MAPPING_SYSTEM = Table(
    keys=(
        Key("registration-timeout", Number(3, 86400)),
        Key("negative-ttl", Int(1, 1440)),
        Key("rtr-rlocs", ListOf(Address(), unique=True)),
        Key("ms-rtr-key", Secret()),
        Key("ms-rtr-key-id", IntChoice(tuple(KEY_IDS.items()))),
    ),
    build=_build_mapping_system,
    model=MappingSystemConfig,
)

# -- [nat-traversal] ------------------------------------------------------------------------------


def _build_nat_traversal(values: dict[str, Any], path: KeyPath, ctx: Context) -> NatTraversalConfig:
    return NatTraversalConfig(**values)


NAT_TRAVERSAL = Table(
    keys=(
        Key("enabled", Bool()),
        Key("info-interval", Number(0.1, 3600)),
        Key("keepalive-interval", Number(0.1, 3600)),
        Key("style", Str(choices=NAT_STYLES)),
    ),
    build=_build_nat_traversal,
    model=NatTraversalConfig,
)

# -- [rtr] ----------------------------------------------------------------------------------------


def _build_rtr(values: dict[str, Any], path: KeyPath, ctx: Context) -> RtrConfig:
    _check_one_per_family(values["public_rlocs"], (*path, "public-rlocs"), ctx)
    return RtrConfig(**values)


RTR = Table(
    keys=(
        Key("public-rlocs", ListOf(Address(), unique=True)),
        Key("nat-binding-timeout", Number(1, 86400)),
        Key("max-nat-bindings", Int(1, 10_000_000)),
        Key("ms-rtr-key", Secret()),
    ),
    build=_build_rtr,
    model=RtrConfig,
)

# -- [limits] -------------------------------------------------------------------------------------


def _build_limits(values: dict[str, Any], path: KeyPath, ctx: Context) -> LimitsConfig:
    return LimitsConfig(**values)


LIMITS = Table(
    keys=(
        Key("map-cache-entries", Int(1, 10_000_000)),
        Key("site-registrations", Int(1, 1_000_000)),
        Key("probed-rlocs", Int(1, 1_000_000)),
    ),
    build=_build_limits,
    model=LimitsConfig,
)

# -- [metrics] ------------------------------------------------------------------------------------


def _build_metrics(values: dict[str, Any], path: KeyPath, ctx: Context) -> MetricsConfig:
    address, port = values["listen"]
    return MetricsConfig(address=address, port=port)


METRICS = Table(
    keys=(Key("listen", Endpoint(), required=True),),
    build=_build_metrics,
)
"""``[metrics]``: the Prometheus endpoint; the whole table is optional (absent: no endpoint)."""

# -- [dataplane] ----------------------------------------------------------------------------------

MAX_WORKERS = 256


MAX_BUSY_POLL_US = 1000
"""``FP_BUSY_POLL_MAX_US`` of the compiled engine."""

MAX_GSO_RLOCS = 64
"""What the compiled engine holds (``FP_GSO_PEERS_MAX``)."""


def _build_dataplane(values: dict[str, Any], path: KeyPath, ctx: Context) -> DataplaneConfig:
    if len(values["gso_rlocs"]) > MAX_GSO_RLOCS:
        ctx.fail((*path, "gso-rlocs"), f"at most {MAX_GSO_RLOCS} RLOCs")
    return DataplaneConfig(
        fastpath=values["fastpath"],
        offloads=values["offloads"],
        workers=values["workers"],
        gso_rlocs=values["gso_rlocs"],
        busy_poll=values["busy_poll"],
    )


DATAPLANE = Table(
    keys=(
        Key("fastpath", Str(choices=FASTPATHS)),
        Key("offloads", Str(choices=OFFLOADS, booleans=tuple(OFFLOAD_BOOLS.items()))),
        Key("workers", Int(0, MAX_WORKERS)),
        Key("gso-rlocs", ListOf(Address(), unique=True)),
        Key("busy-poll", Int(0, MAX_BUSY_POLL_US)),
    ),
    build=_build_dataplane,
    model=DataplaneConfig,
)
"""``[dataplane]``: the packet-path implementation; the whole table is optional."""

# -- [[site]] -------------------------------------------------------------------------------------


def _build_site_prefix(values: dict[str, Any], path: KeyPath, ctx: Context) -> SitePrefix:
    return SitePrefix(
        instance_id=values["instance_id"],
        prefix=values["eid_prefix"],
        accept_more_specifics=values["accept_more_specifics"],
    )


SITE_PREFIX = Table(
    keys=(
        Key("eid-prefix", Prefix(), required=True),
        Key("instance-id", Int(0, MAX_INSTANCE_ID), default=DEFAULT_INSTANCE_ID),
        Key("accept-more-specifics", Bool()),
    ),
    build=_build_site_prefix,
    model=SitePrefix,
)


def _build_site(values: dict[str, Any], path: KeyPath, ctx: Context) -> Site:
    prefixes: tuple[SitePrefix, ...] = values["eid_prefixes"]
    seen: dict[tuple[int, Any], int] = {}
    for index, entry in enumerate(prefixes):
        key = (entry.instance_id, entry.prefix)
        if key in seen:
            ctx.fail(
                (*path, "eid-prefixes", index, "eid-prefix"),
                f"{entry.prefix} in instance-id {entry.instance_id} is already "
                f"{format_key_path(('eid-prefixes', seen[key]))}",
            )
        seen[key] = index
    return Site(name=values["name"], key=values["key"], prefixes=prefixes)


SITE = Table(
    keys=(
        Key("name", Str(validate=node_name_problem), required=True),
        Key("key", Secret(), required=True),
        Key("eid-prefixes", ListOf(SITE_PREFIX, min_len=1), required=True),
    ),
    build=_build_site,
)

# -- the whole file -------------------------------------------------------------------------------

ROOT = Table(
    keys=(
        Key("daemon", DAEMON, required=True),
        Key("tun", TUN),
        Key("underlay", UNDERLAY, required=True),
        Key("database-mapping", ListOf(DATABASE_MAPPING), default=()),
        Key("map-cache", ListOf(MAP_CACHE), default=()),
        Key("map-server", ListOf(MAP_SERVER), default=()),
        Key("map-resolver", ListOf(MAP_RESOLVER), default=()),
        Key("registration", REGISTRATION),
        Key("resolver", RESOLVER),
        Key("mapping-system", MAPPING_SYSTEM),
        Key("site", ListOf(SITE), default=()),
        Key("petr", ListOf(PETR), default=()),
        Key("probing", PROBING),
        Key("nat-traversal", NAT_TRAVERSAL),
        Key("rtr", RTR),
        Key("metrics", METRICS, default_factory=lambda: None),
        Key("limits", LIMITS),
        Key("dataplane", DATAPLANE),
        Key("ddt", DDT),
        Key("ddt-authority", ListOf(AUTHORITY), default=()),
        Key("ddt-delegation", ListOf(DELEGATION), default=()),
    ),
    build=build_config,
)
"""The schema of a whole ``lispd.conf``; ``ROOT.check(toml_dict, (), ctx)`` returns a Config."""
