"""The validated, immutable configuration model.

Everything here is a frozen, slotted dataclass built by :func:`lispd.config.parse_config`, which
has already checked every rule: code that receives a :class:`Config` never re-validates it.
Addresses are stdlib :mod:`ipaddress` objects; collections are tuples and frozensets, so a
``Config`` can be shared, hashed and compared (a reload diffs the old and the new one).

This module is where every default of ``lispd.conf`` is written, once: as a field default of
these dataclasses (``ResolverConfig.retries = 3``), or as a ``DEFAULT_*`` constant for the few
keys whose field cannot have one (``tun.name``, ``instance-id``).  The schema
(:mod:`lispd.config.sections`) takes a missing key's value from here, the control machines
(:mod:`lispd.control`) take the defaults of their settings from here, and a test holds the
``Default:`` lines of the ``lispd.conf.example*`` files to them.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, Literal

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

ROLES: tuple[str, ...] = (
    "itr",
    "etr",
    "rtr",
    "pitr",
    "petr",
    "map-server",
    "map-resolver",
    "ddt-node",
)
"""Every value ``daemon.roles`` accepts."""

LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")
"""Every value ``daemon.log-level`` accepts."""

MapCacheAction = Literal["drop", "native-forward", "send-map-request"]
MAP_CACHE_ACTIONS: tuple[MapCacheAction, ...] = ("drop", "native-forward", "send-map-request")
"""Every value a negative ``map-cache`` entry's ``action`` accepts.

``"send-map-request"`` marks a prefix as EID space whose destinations are resolved through the
Map-Resolvers (``Config.map_resolvers``): a miss inside it sends a Map-Request.
"""

KEY_IDS: dict[int, str] = {1: "HMAC-SHA-1-96", 2: "HMAC-SHA-256-128"}
NAT_STYLES: tuple[str, ...] = ("lispers", "draft")
"""The values of ``nat-traversal.style``."""
"""Authentication key-ids a ``map-server`` entry accepts, with their algorithm (RFC 9301 5.6);
the values of :class:`lispd.wire.auth.KeyId` other than NONE."""

IPV4_ENCAP_OVERHEAD = 20 + 8 + 8
"""Bytes added in front of an inner packet: outer IPv4, UDP and LISP headers."""

IPV6_ENCAP_OVERHEAD = 40 + 8 + 8
"""Bytes added in front of an inner packet: outer IPv6, UDP and LISP headers."""

MIN_IPV6_MTU = 1280
"""IPv6 needs links of at least this MTU (RFC 8200 section 5)."""

MAX_INSTANCE_ID = 0xFFFFFF - 1
"""Largest usable 24-bit instance-id (0xFFFFFF is reserved)."""

DEFAULT_INSTANCE_ID = 0
"""The instance-id of an EID-prefix written without one."""


def field_default(model: type[Any], name: str) -> Any:
    """The default of the field ``name`` of the dataclass ``model`` (its ``default_factory``
    called, if that is how it is given).

    How the schema and the control machines read a default from this module without writing
    it again.  Raises ``LookupError`` when ``model`` has no such field, or the field no default.
    """
    for f in dataclasses.fields(model):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise LookupError(f"{model.__name__}.{name} has no default")
    raise LookupError(f"{model.__name__} has no field {name!r}")


@dataclass(frozen=True, slots=True)
class Rloc:
    """One locator of a mapping, with its traffic-engineering attributes (RFC 9301 5.4)."""

    address: IPAddress
    priority: int = 1
    """0..255, lower is preferred; 255 means "do not use for unicast"."""
    weight: int = 100
    """0..255, load share among the RLOCs of the best priority."""
    elp: tuple[IPAddress, ...] = ()
    """An Explicit Locator Path (LISP-TE, the ELP LCAF of RFC 8060): the hops in forwarding
    order, the last one being the ETR, which is also ``address``. Empty for a plain RLOC; else
    at least two hops, none repeated, all of one address family."""


@dataclass(frozen=True, slots=True)
class Mapping:
    """An EID-prefix in an instance-id, mapped to RLOCs or to a negative action.

    Local database entries always have ``rlocs`` and no ``action`` nor ``ttl``; static map-cache
    entries have either ``rlocs`` or an ``action`` (then ``rlocs`` is empty).
    """

    instance_id: int
    prefix: IPNetwork
    rlocs: tuple[Rloc, ...] = ()
    action: MapCacheAction | None = None
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


DEFAULT_TUN_NAME = "lisp0"
"""``tun.name`` when not given (:class:`TunConfig` is built in :mod:`lispd.config.rules`, its
MTU computed: its fields have no defaults)."""
DEFAULT_ROUTE_TABLE = 4341
DEFAULT_RULE_PRIORITY = 4340
DEFAULT_ROUTE_PROTOCOL = 44
RESERVED_ROUTE_TABLES = {0: "unspec", 253: "default", 254: "main", 255: "local"}
"""The kernel's own routing tables, which lispd never installs into."""
MAX_RULE_PRIORITY = 32765 - 3
"""lispd's four rules must come before the ``main`` table's rule (32766)."""


@dataclass(frozen=True, slots=True)
class TunConfig:
    """The ``[tun]`` table: the TUN device that carries inner (EID) packets."""

    name: str
    """Linux interface name, at most 15 characters."""
    mtu: int
    """Always resolved: given, or the underlay MTU minus the encapsulation overhead."""
    route_table: int = DEFAULT_ROUTE_TABLE
    """The kernel routing table that holds lispd's routes to the TUN (``ip route show table``)."""
    rule_priority: int = DEFAULT_RULE_PRIORITY
    """The first of the four ``ip rule`` priorities lispd uses (this one to three more)."""
    route_protocol: int = DEFAULT_ROUTE_PROTOCOL
    """The route and rule protocol number that marks what lispd installed (``proto``)."""


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
class MapServerRef:
    """One ``[[map-server]]``: a Map-Server this ETR registers its database-mappings with."""

    address: IPAddress
    key: bytes = field(repr=False)
    """The site's shared key, UTF-8 encoded; never shown by ``repr()``."""
    key_id: int = 2
    """Authentication algorithm, a key of :data:`KEY_IDS`: 1 HMAC-SHA-1-96, 2 HMAC-SHA-256-128."""
    proxy_reply: bool = False
    """Set the P-bit: ask the Map-Server to answer Map-Requests for our prefixes."""


@dataclass(frozen=True, slots=True)
class RegistrationConfig:
    """The ``[registration]`` table: how the ETR registers (used with the ``etr`` role)."""

    interval: float = 60.0
    """Seconds between Map-Registers, 1..3600."""
    record_ttl: int = 1440
    """Minutes, the record TTL in Map-Registers (what the Map-Server hands out in proxy
    replies), 1..0xFFFFFFFF."""
    want_map_notify: bool = True
    """Set the M-bit: ask the Map-Server to acknowledge each Map-Register with a Map-Notify."""


@dataclass(frozen=True, slots=True)
class ProbingConfig:
    """The ``[probing]`` table: RLOC probing of the PETRs and the map-cache RLOCs."""

    interval: float = 10.0
    """Seconds between probes of one RLOC."""
    timeout: float = 3.0
    """Seconds after which an unanswered probe counts as lost."""
    down_after: int = 3
    """Consecutive lost probes that mark an RLOC down (one reply brings it back)."""
    max_per_second: float = 100.0
    """Probes sent per second at most, all RLOCs together (the others wait their turn)."""
    map_cache: bool = True
    """Also probe the RLOCs of the map-cache (else only the PETRs): down RLOCs are avoided,
    and the RTTs and hop counts show in ``rlocs`` and LISP-Trace records."""


@dataclass(frozen=True, slots=True)
class ResolverConfig:
    """The ``[resolver]`` table: how the ITR resolves EIDs through the Map-Resolvers."""

    retries: int = 3
    """Map-Request retransmissions after the first, 0..10."""
    retry_interval: float = 1.0
    """Seconds before the first retransmission (doubling each time), 0.05..60."""
    queue_per_entry: int = 64
    """Packets held per unresolved destination, 0..65535 (0: drop while resolving)."""
    queue_total: int = 4096
    """Packets held in total, 0..1000000."""
    queue_timeout: float = 3.0
    """Seconds a held packet may wait, 0.1..60."""
    min_request_interval: float = 1.0
    """Seconds between Map-Requests for the same EID once the retries gave up, 0..3600."""
    max_requests_per_second: int = 100
    """Map-Requests sent per second in total, 1..100000."""
    max_ttl: int = 1440
    """Minutes; Map-Reply TTLs are capped to this, 1..0xFFFFFFFF."""


@dataclass(frozen=True, slots=True)
class MappingSystemConfig:
    """The ``[mapping-system]`` table: the embedded Map-Server / Map-Resolver."""

    registration_timeout: float = 180.0
    """Seconds without a Map-Register before a registration expires, 3..86400."""
    negative_ttl: int = 15
    """Minutes, the TTL of the Map-Resolver's negative Map-Replies, 1..1440."""
    rtr_rlocs: tuple[IPAddress, ...] = ()
    """The RTRs (their public addresses) the Map-Server hands to xTRs behind a NAT in its
    Info-Replies, in file order; no duplicates. Empty: no NAT traversal service."""
    ms_rtr_key: bytes | None = field(default=None, repr=False)
    """The key shared with the RTRs (draft-style NAT traversal): a Map-Notify answering a
    Map-Register an RTR of ``rtr-rlocs`` forwarded (R bit) carries an MS-RTR authentication
    block signed with it. None: those Map-Notifies go out without it (no RTR relays them)."""
    ms_rtr_key_id: int = 1
    """Algorithm of the MS-RTR authentication: 1 HMAC-SHA-1 (what OOR uses), 2 HMAC-SHA-256."""


DDT_DELEGATION_KINDS: tuple[str, ...] = ("ddt-node", "map-server")
"""The values of ``ddt-delegation.kind``: who the delegated prefix is referred to."""


@dataclass(frozen=True, slots=True)
class DdtConfig:
    """The ``[ddt]`` table: LISP-DDT (RFC 8111) as client (Map-Resolver) and as DDT node."""

    roots: tuple[IPAddress, ...] = ()
    """The DDT root nodes a Map-Resolver starts every uncached resolution at, in file order;
    no duplicates. Non-empty: the Map-Resolver resolves through DDT instead of its co-located
    Map-Server."""
    request_timeout: float = 1.0
    """Seconds the Map-Resolver waits for a referral before asking the next member of the
    referral set, 0.1..30."""
    max_steps: int = 16
    """Referrals followed (requests sent) per resolution before giving up, 2..64."""
    max_pending: int = 1000
    """Resolutions in progress at once; more Map-Requests are dropped, 1..1000000."""
    referral_cache_entries: int = 100_000
    """Referrals the Map-Resolver caches, 1..10000000; when full, new ones are not cached."""
    referral_ttl: int = 1440
    """Minutes, the TTL of the referrals a DDT node hands out (and of a Map-Server's MS-ACK),
    1..0xFFFFFFFF."""
    hole_ttl: int = 15
    """Minutes, the TTL of a DDT node's delegation-hole answers, 1..1440."""
    answer_rate: int = 10_000
    """DDT Map-Requests a DDT node or Map-Server answers per second and source address (in
    bursts of twice that), 1..1000000: one Map-Resolver is one source for all its ITRs, and a
    Map-Referral is no larger than the request (no amplification to bound)."""


@dataclass(frozen=True, slots=True)
class DdtAuthority:
    """One ``[[ddt-authority]]``: an EID-prefix this DDT node is authoritative for."""

    instance_id: int
    prefix: IPNetwork


@dataclass(frozen=True, slots=True)
class DdtDelegation:
    """One ``[[ddt-delegation]]``: part of an authority prefix referred to child DDT nodes or
    to Map-Servers."""

    instance_id: int
    prefix: IPNetwork
    kind: str
    """One of :data:`DDT_DELEGATION_KINDS`."""
    referrals: tuple[IPAddress, ...]
    """The referral set, in file order (their preference); 1..16, no duplicates."""


@dataclass(frozen=True, slots=True)
class NatTraversalConfig:
    """The ``[nat-traversal]`` table: an xTR that may sit behind a NAT
    (draft-ietf-lisp-nat-traversal)."""

    enabled: bool = False
    """This xTR may sit behind a NAT: it discovers its translated RLOC with Info-Requests to
    its Map-Servers and, when behind a NAT, sends through the RTRs they name. Needs the ``etr``
    or ``itr`` role and at least one ``[[map-server]]``."""
    info_interval: float = 15.0
    """Seconds between Info-Requests to each Map-Server, 0.1..3600."""
    keepalive_interval: float = 10.0
    """Seconds between NAT keepalives to each RTR (they keep the NAT's binding open),
    0.1..3600."""
    style: str = "lispers"
    """Which NAT traversal to speak: ``lispers`` (lispers.net: unauthenticated Info-Requests,
    the xTR registers its translated RLOC itself) or ``draft`` (draft-ietf-lisp-nat-traversal
    as Open Overlay Router does it: authenticated Info-Request/Reply, Map-Registers through the
    RTR in ECMs, Map-Notifies relayed by the RTR). On a Map-Server, ``draft`` also refuses
    unauthenticated Info-Requests (authenticated ones are verified in either style)."""


@dataclass(frozen=True, slots=True)
class RtrConfig:
    """The ``[rtr]`` table: the re-encapsulating tunnel router (used with the ``rtr`` role)."""

    public_rlocs: tuple[IPAddress, ...] = ()
    """The addresses other nodes reach this RTR at when it sits behind a 1:1 NAT (a cloud VM):
    at most one per address family, each of a family ``underlay.rlocs`` has. Used as ITR-RLOCs
    in its Map-Requests and to find itself in Explicit Locator Paths. Empty: not behind a NAT."""
    nat_binding_timeout: float = 120.0
    """Seconds without a keepalive after which a NATed xTR's translated address:port is
    forgotten, 1..86400."""
    max_nat_bindings: int = 100000
    """NATed xTRs remembered at once, 1..10000000 (when full, a new one evicts the least
    recently refreshed)."""
    ms_rtr_key: bytes | None = field(default=None, repr=False)
    """The key shared with the Map-Servers (draft-style NAT traversal): a Map-Notify for a
    NATed xTR is relayed only when its MS-RTR authentication verifies with it. None: Map-
    Registers from NATed xTRs (ECMs with the R bit) are not forwarded."""


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """The ``[limits]`` table: upper bounds on the tables that traffic and peers make grow."""

    map_cache_entries: int = 100_000
    """Learned map-cache entries (from Map-Replies) at most, 1..10000000; when full, the entry
    closest to its expiry makes room (counted ``map-cache-evicted``). Static ones do not count."""
    site_registrations: int = 10_000
    """EID-prefixes one site may have registered at this Map-Server at once (more-specifics
    included), 1..1000000; more are refused (``register-site-full``)."""
    probed_rlocs: int = 10_000
    """RLOCs probed at once, 1..1000000; more are not probed (``probe-table-full``) and count
    as up."""


FASTPATHS = ("auto", "compiled", "python")
OFFLOADS = ("auto", "gso", "off")
OFFLOAD_BOOLS = {True: "auto", False: "off"}
"""What ``offloads = true``/``false`` (the key was a boolean before UDP GSO became opt-in) mean."""


@dataclass(frozen=True, slots=True)
class DataplaneConfig:
    """The ``[dataplane]`` table: which packet-path implementation runs, and how."""

    fastpath: str = "auto"
    """``compiled`` (the C accelerator; refused at start when it is not built), ``python``
    (the pure-Python reference), or ``auto`` (compiled when built, else Python)."""
    offloads: str = "auto"
    """Compiled path only.  ``auto``: TUN super-packets (IFF_VNET_HDR with TSO, TCP segments
    merged on the way back) and UDP GRO on receive; encapsulated datagrams leave as UDP GSO
    bursts while every interface up cuts them before the wire (UDP segmentation off, a PCI
    card, or a VLAN, bond or bridge over such devices only: :mod:`lispd.io.egress`, checked at
    start and every few seconds after), else as separate datagrams batched by ``sendmmsg`` (a
    veth, bridge or container link with UDP segmentation on hands a burst to the next hop
    unsegmented, which a raw-socket or pcap receiver such as OOR or lispers.net reads as one
    packet).  ``gso``: bursts whatever the interfaces.  ``off``: one packet per datagram, still
    batched.  ``true``/``false`` (the older boolean form) mean ``auto``/``off``."""
    workers: int = 0
    """Compiled path only: how many engines forward packets, each in its own process on its
    own TUN queue and SO_REUSEPORT 4341 sockets (the main process runs the first); 0: one per
    CPU core lispd may run on."""
    gso_rlocs: tuple[IPAddress, ...] = ()
    """Compiled path, ``offloads = "auto"``: RLOCs that get UDP GSO bursts all the same, the
    peers known to read UDP 4341 from a socket (other lispd xTRs and RTRs), up to 64, no
    duplicates.  Default: none."""
    busy_poll: int = 0
    """Compiled path only: after each batch an engine keeps reading its TUN queue and 4341
    sockets for this many microseconds without sleeping (the idle time that ends the spin,
    2 ms at most per batch); a packet arriving meanwhile costs no wake-up.  Engine 0 spins on
    its thread with the GIL held (the engine's tables are only safe under it), so the main
    process's event loop waits out each spin.  0 (default): sleep right away."""

    @property
    def local_offloads(self) -> bool:
        """TUN super-packets and UDP GRO: on unless ``offloads = "off"``."""
        return self.offloads != "off"

    @property
    def udp_gso(self) -> bool:
        """UDP GSO bursts on send whatever the interfaces: ``offloads = "gso"`` (``auto``
        decides from the interfaces, :mod:`lispd.io.egress`)."""
        return self.offloads == "gso"


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The ``[metrics]`` table: the Prometheus endpoint (``GET /metrics`` over HTTP).

    The table is optional: without it (``Config.metrics is None``) there is no endpoint."""

    address: IPAddress
    """The address to listen on; an unspecified one (``0.0.0.0``, ``::``) means every address
    of that family."""
    port: int
    """TCP port, 1..65535."""

    @property
    def listen(self) -> str:
        """``address:port`` as written in the file, IPv6 in brackets: ``[::1]:9342``."""
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SitePrefix:
    """One EID-prefix a site may register."""

    instance_id: int
    prefix: IPNetwork
    accept_more_specifics: bool = False
    """Also accept registrations of prefixes inside ``prefix`` (else only ``prefix`` itself)."""

    @property
    def version(self) -> int:
        """IP version of the EID-prefix (4 or 6)."""
        return self.prefix.version


@dataclass(frozen=True, slots=True)
class Site:
    """One ``[[site]]``: a site allowed to register with this node's Map-Server."""

    name: str
    """Unique among the sites, 1 to 64 printable characters without spaces."""
    key: bytes = field(repr=False)
    """The site's shared key, UTF-8 encoded; never shown by ``repr()``."""
    prefixes: tuple[SitePrefix, ...] = ()
    """At least one; no two equal, none overlapping another site's in the same instance-id."""


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
    map_servers: tuple[MapServerRef, ...] = ()
    """``[[map-server]]`` entries (``etr`` role only), in file order; no address twice."""
    map_resolvers: tuple[IPAddress, ...] = ()
    """``[[map-resolver]]`` addresses in file order, the first is the primary; no duplicates."""
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    """``[registration]``, defaults when absent."""
    resolver: ResolverConfig = field(default_factory=ResolverConfig)
    """``[resolver]``, defaults when absent."""
    mapping_system: MappingSystemConfig = field(default_factory=MappingSystemConfig)
    """``[mapping-system]``, defaults when absent."""
    sites: tuple[Site, ...] = ()
    """``[[site]]`` entries (``map-server`` role only), in file order; names unique."""
    petrs: tuple[Rloc, ...] = ()
    """``[[petr]]``: Proxy-ETRs the ITR/PITR encapsulates native-forward traffic to."""
    probing: ProbingConfig = field(default_factory=ProbingConfig)
    """``[probing]``, defaults when absent."""
    nat_traversal: NatTraversalConfig = field(default_factory=NatTraversalConfig)
    """``[nat-traversal]``, defaults (disabled) when absent."""
    rtr: RtrConfig = field(default_factory=RtrConfig)
    """``[rtr]``, defaults when absent (used with the ``rtr`` role only)."""
    metrics: MetricsConfig | None = None
    """``[metrics]``: where to serve Prometheus metrics; ``None`` (no endpoint) when absent."""
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    """``[limits]``, defaults when absent."""
    dataplane: DataplaneConfig = field(default_factory=DataplaneConfig)
    """``[dataplane]``, defaults when absent."""
    ddt: DdtConfig = field(default_factory=DdtConfig)
    """``[ddt]``, defaults (no roots) when absent."""
    ddt_authorities: tuple[DdtAuthority, ...] = ()
    """``[[ddt-authority]]`` entries (``ddt-node`` role only), in file order."""
    ddt_delegations: tuple[DdtDelegation, ...] = ()
    """``[[ddt-delegation]]`` entries (``ddt-node`` role only), in file order."""
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
