"""The validated, immutable configuration model.

Everything here is a frozen, slotted dataclass built by :func:`lispd.config.parse_config`, which
has already checked every rule: code that receives a :class:`Config` never re-validates it.
Addresses are stdlib :mod:`ipaddress` objects; collections are tuples and frozensets, so a
``Config`` can be shared, hashed and compared (a reload diffs the old and the new one).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

ROLES: tuple[str, ...] = ("itr", "etr", "rtr", "pitr", "petr", "map-server", "map-resolver")
"""Every value ``daemon.roles`` accepts."""

LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")
"""Every value ``daemon.log-level`` accepts."""

MAP_CACHE_ACTIONS: tuple[str, ...] = ("drop", "native-forward")
"""Every value a negative ``map-cache`` entry's ``action`` accepts."""

IPV4_ENCAP_OVERHEAD = 20 + 8 + 8
"""Bytes added in front of an inner packet: outer IPv4, UDP and LISP headers."""

IPV6_ENCAP_OVERHEAD = 40 + 8 + 8
"""Bytes added in front of an inner packet: outer IPv6, UDP and LISP headers."""

MIN_IPV6_MTU = 1280
"""IPv6 needs links of at least this MTU (RFC 8200 section 5)."""

MAX_INSTANCE_ID = 0xFFFFFF - 1
"""Largest usable 24-bit instance-id (0xFFFFFF is reserved)."""


@dataclass(frozen=True, slots=True)
class Rloc:
    """One locator of a mapping, with its traffic-engineering attributes (RFC 9301 5.4)."""

    address: IPAddress
    priority: int = 1
    """0..255, lower is preferred; 255 means "do not use for unicast"."""
    weight: int = 100
    """0..255, load share among the RLOCs of the best priority."""


@dataclass(frozen=True, slots=True)
class Mapping:
    """An EID-prefix in an instance-id, mapped to RLOCs or to a negative action.

    Local database entries always have ``rlocs`` and no ``action`` nor ``ttl``; static map-cache
    entries have either ``rlocs`` or an ``action`` (then ``rlocs`` is empty).
    """

    instance_id: int
    prefix: IPNetwork
    rlocs: tuple[Rloc, ...] = ()
    action: str | None = None
    """``None`` for a positive entry, else one of :data:`MAP_CACHE_ACTIONS`."""
    ttl: int | None = None
    """Minutes before the entry expires; ``None`` for a static entry that never does."""

    @property
    def is_negative(self) -> bool:
        """True for an entry that carries an action instead of RLOCs."""
        return self.action is not None

    @property
    def version(self) -> int:
        """IP version of the EID-prefix (4 or 6)."""
        return self.prefix.version


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """The ``[daemon]`` table: who this node is and what it does."""

    name: str
    """Node name used in logs and LISP-Trace records."""
    roles: frozenset[str]
    """A non-empty subset of :data:`ROLES`."""
    log_level: str = "info"
    """One of :data:`LOG_LEVELS`."""
    control_socket: str = "/run/lispd/lispd.sock"
    """Path of the control socket (lispctl, ltr, tests); empty: no control socket."""

    @property
    def logging_level(self) -> int:
        """``log_level`` as a :mod:`logging` level number."""
        return int(logging.getLevelName(self.log_level.upper()))


@dataclass(frozen=True, slots=True)
class TunConfig:
    """The ``[tun]`` table: the TUN device that carries inner (EID) packets."""

    name: str
    """Linux interface name, at most 15 characters."""
    mtu: int
    """Always resolved: given, or the underlay MTU minus the encapsulation overhead."""


@dataclass(frozen=True, slots=True)
class UnderlayConfig:
    """The ``[underlay]`` table: this router's own RLOCs and the underlay path MTU."""

    rlocs: tuple[IPAddress, ...]
    """One or two addresses, at most one per address family, in file order."""
    mtu: int = 1500

    @property
    def rloc_v4(self) -> IPv4Address | None:
        """The local IPv4 RLOC, if any."""
        return next((a for a in self.rlocs if isinstance(a, IPv4Address)), None)

    @property
    def rloc_v6(self) -> IPv6Address | None:
        """The local IPv6 RLOC, if any."""
        return next((a for a in self.rlocs if isinstance(a, IPv6Address)), None)

    @property
    def encap_overhead(self) -> int:
        """Worst-case bytes added by encapsulation: 56 when any local RLOC is IPv6, else 36."""
        return IPV6_ENCAP_OVERHEAD if self.rloc_v6 is not None else IPV4_ENCAP_OVERHEAD


@dataclass(frozen=True, slots=True)
class Config:
    """A whole, validated ``lispd.conf``."""

    daemon: DaemonConfig
    tun: TunConfig
    underlay: UnderlayConfig
    database: tuple[Mapping, ...] = ()
    """``[[database-mapping]]`` entries: the local EID-prefixes, in file order."""
    map_cache: tuple[Mapping, ...] = ()
    """``[[map-cache]]`` entries: static remote mappings, in file order."""
    path: str = field(default="<string>", compare=False)
    """Where the configuration was read from (not part of equality, so a reload can diff)."""

    @property
    def roles(self) -> frozenset[str]:
        """Shortcut for ``daemon.roles``."""
        return self.daemon.roles

    def has_role(self, role: str) -> bool:
        """True when ``role`` (one of :data:`ROLES`) is in ``daemon.roles``."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles are: {', '.join(ROLES)}")
        return role in self.daemon.roles

    @property
    def rloc_v4(self) -> IPv4Address | None:
        """The local IPv4 RLOC, if any."""
        return self.underlay.rloc_v4

    @property
    def rloc_v6(self) -> IPv6Address | None:
        """The local IPv6 RLOC, if any."""
        return self.underlay.rloc_v6

    def local_rloc(self, version: int) -> IPAddress | None:
        """The local RLOC of IP ``version`` (4 or 6): the outer source address to use."""
        return self.underlay.rloc_v4 if version == 4 else self.underlay.rloc_v6

    def is_local_rloc(self, address: IPAddress) -> bool:
        """True when ``address`` is one of this router's own RLOCs (``underlay.rlocs``)."""
        return address in self.underlay.rlocs
