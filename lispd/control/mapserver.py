"""The Map-Server (RFC 9301 sections 8.2-8.4): site registrations and Map-Request delivery.

A sans-IO machine: every method takes the caller's monotonic time ``now`` (seconds) and returns
what to send as :class:`~lispd.control.outputs.SendControl`; nothing here touches a socket, the
event loop or the wall clock.  Every input that is malformed, unauthenticated or against policy
is dropped, counted in :attr:`MapServer.drops` under a reason and never raises; it is logged at
WARNING through a :class:`RefusalLog`: the first of each reason at once, then at most one line
per reason every 10 s saying how many went unlogged (a flood of forged Map-Registers must not
become a flood of log lines).

Registration (:meth:`MapServer.on_map_register`), in this order:

1. at least one EID-record, key-id 1 (HMAC-SHA-1-96) or 2 (HMAC-SHA-256-128);
2. every EID-record is an IP EID-prefix (optionally in an instance-ID LCAF) that one configured
   site allows: exactly one of its prefixes, or a more-specific one when that prefix accepts
   more-specifics.  All records must be allowed by one same site;
3. the HMAC verifies with that site's key (nothing is installed otherwise);
4. the nonce is not a replay (see below);
5. one :class:`Registration` per EID-record is installed or refreshed, keyed by (instance-ID,
   EID-prefix): the latest authenticated Map-Register for a prefix replaces the previous one
   (the merge bit is not implemented, so every xTR of a multi-homed site should register all of
   the site's RLOCs, as OOR and lispers.net do when so configured);
6. a Map-Notify is returned when the Map-Register asked for one (M bit).

Registrations live ``registration_timeout`` seconds (180, three missed 60 s refreshes), or the
record TTL in minutes when the Map-Register has the T bit; T with a record TTL of 0 removes the
site's registration of that prefix at once (a deregistration).

Nonce replay.  RFC 9301 asks the Map-Server to accept only strictly increasing nonces per
(xTR-ID, key), but deployed xTRs (lispers.net, Cisco, OOR, pylisp) send random nonces and
persist nothing across restarts, so an increasing-nonce rule would lock them out.  lispd
remembers every nonce it accepted per (site, xTR-ID — none when the Map-Register carries no
xTR-ID) for ``registration_timeout`` seconds and refuses a Map-Register repeating one of them
(``register-replayed``), whatever address it comes from: a captured Map-Register cannot be
replayed, from anywhere, to resurrect or flip a registration inside its lifetime (keying by the
source address would let a replay from any other address through).  Only authenticated
Map-Registers are remembered, so the memory grows with the sites' own registrations, not with
what an attacker sends.  ``check_replay=False`` turns the check off for xTRs that send a
constant nonce.

Map-Requests (:meth:`MapServer.on_map_request`, called by the Map-Resolver with the ECM it
received) for a registered EID are answered by the Map-Server itself when the registration
asked for proxy replies (P bit), else forwarded to the registered ETR inside a new ECM with the
E (to-ETR) bit.  An EID with no registration returns None: the Map-Resolver answers negatively.
An ECM that already carries the E bit is refused: it is meant for an ETR, and forwarding it again
could loop between co-located roles.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from lispd.config.model import LimitsConfig, MappingSystemConfig, SitePrefix, field_default
from lispd.control.outputs import SendControl
from lispd.logfmt import endpoint, kv
from lispd.mapcache.prefixes import MAX_IID
from lispd.mapcache.scoped import ScopedTables
from lispd.wire import auth
from lispd.wire.address import (
    AfiListAddress,
    ElpAddress,
    InstanceIdAddress,
    address_text,
    split_eid,
)
from lispd.wire.data import LISP_CONTROL_PORT
from lispd.wire.ecm import EncapsulatedControl, encode_ecm
from lispd.wire.errors import EncodeError, WireError
from lispd.wire.mapregister import MapNotify, MapRegister, RtrAuth, encode_signed
from lispd.wire.mapreply import MapReply, encode_map_reply
from lispd.wire.maprequest import MapRequest
from lispd.wire.records import EidRecord, Locator

log = logging.getLogger("lispd.control.mapserver")

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

DEFAULT_REGISTRATION_TIMEOUT = MappingSystemConfig().registration_timeout
"""Seconds a registration lives without a refresh (RFC 9301: three 60 s periods), as
``mapping-system.registration-timeout``."""

_ACCEPTED_KEY_IDS = (auth.KeyId.HMAC_SHA_1_96, auth.KeyId.HMAC_SHA_256_128)

# Drop reasons, one spelling for counters, logs and tests.
REGISTER_NO_RECORDS = "register-no-records"
REGISTER_BAD_KEY_ID = "register-bad-key-id"
REGISTER_BAD_EID = "register-bad-eid"
REGISTER_UNKNOWN_SITE = "register-unknown-site"
REGISTER_PREFIX_NOT_ALLOWED = "register-prefix-not-allowed"
REGISTER_MULTIPLE_SITES = "register-multiple-sites"
REGISTER_MALFORMED = "register-malformed"
REGISTER_AUTH_FAILED = "register-auth-failed"
REGISTER_REPLAYED = "register-replayed"
NOTIFY_ENCODE_FAILED = "notify-encode-failed"
REQUEST_NOT_MAP_REQUEST = "request-not-map-request"
REQUEST_TO_ETR = "request-to-etr"
REQUEST_BAD_EID = "request-bad-eid"
REQUEST_BAD_PORT = "request-bad-port"
REQUEST_NO_ITR_RLOC = "request-no-itr-rloc"
REQUEST_NO_ETR_LOCATOR = "request-no-etr-locator"
REQUEST_ENCODE_FAILED = "request-encode-failed"


@dataclass(frozen=True, slots=True)
class SitePrefixSpec:
    """One EID-prefix a site may register, in instance ``iid``."""

    iid: int
    prefix: IPNetwork
    accept_more_specifics: bool = field_default(SitePrefix, "accept_more_specifics")
    """Also accept registrations of prefixes strictly inside ``prefix``."""


@dataclass(frozen=True, slots=True)
class SiteSpec:
    """A site allowed to register: its name, shared key and EID-prefixes."""

    name: str
    key: bytes = field(repr=False)
    prefixes: tuple[SitePrefixSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class Registration:
    """One registered EID-prefix: what an authenticated Map-Register said about it."""

    site: str
    iid: int
    prefix: IPNetwork
    record: EidRecord
    """The EID-record as registered (EID as on the wire, locators, TTL, action)."""
    registered_by: IPAddress
    """Source address of the last accepted Map-Register."""
    registered_by_port: int
    first_registered: float
    last_registered: float
    expires: float
    proxy_reply: bool = False
    xtr_id: int | None = None
    site_id: int | None = None

    @property
    def locators(self) -> tuple[Locator, ...]:
        """The registered RLOCs."""
        return self.record.locators

    @property
    def ttl(self) -> int:
        """The registered record TTL in minutes (what proxy replies hand out)."""
        return self.record.ttl


# --- helpers shared with the Map-Resolver ----------------------------------------------------


REFUSAL_LOG_INTERVAL = 10.0
"""Seconds between two WARNING lines about refusals of one reason."""


class RefusalLog:
    """WARNING lines about refused inputs that an attacker cannot turn into a log flood: the
    first refusal of each reason is logged at once, then at most one per reason every
    ``interval`` seconds, with the number left unlogged since the previous line (every refusal
    is counted in the machine's ``drops`` all the same).  ``now`` is the caller's monotonic
    time, as everywhere in the machines."""

    def __init__(self, logger: logging.Logger, interval: float = REFUSAL_LOG_INTERVAL) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._unlogged: Counter[str] = Counter()

    def warn(self, reason: str, now: float, event: str, **fields: object) -> None:
        """Log ``event`` with ``reason=`` and ``fields`` for a refusal of ``reason`` at ``now``,
        unless one of that reason was logged less than ``interval`` seconds ago; the next line
        says how many went unlogged meanwhile (``unlogged=N``)."""
        last = self._last.get(reason)
        if last is not None and now - last < self.interval:
            self._unlogged[reason] += 1
            return
        self._last[reason] = now
        unlogged = self._unlogged.pop(reason, 0)
        if unlogged:
            fields["unlogged"] = unlogged
        self.logger.warning("%s %s", event, kv(reason=reason, **fields))


def request_eid(request: MapRequest) -> tuple[int, IPAddress] | None:
    """(instance-ID, address) of a Map-Request's first EID-record; None when it is not IP."""
    if not request.records:
        return None
    first = request.records[0]
    try:
        iid, net = split_eid(first.address, first.mask_len)
    except ValueError:
        return None
    if net is None:
        return None
    address = first.address
    if isinstance(address, InstanceIdAddress):
        address = address.address
    if not isinstance(address, IPv4Address | IPv6Address):
        return None
    return iid, address


def _reply_rloc_ok(addr: object) -> bool:
    return (
        isinstance(addr, IPv4Address | IPv6Address)
        and not addr.is_unspecified
        and not addr.is_multicast
        and not addr.is_loopback
    )


def reply_destination(request: MapRequest, ecm: EncapsulatedControl) -> IPAddress | None:
    """The ITR-RLOC a Map-Reply to ``request`` goes to, or None when none is usable.

    Plain IPv4/IPv6 ITR-RLOCs (and those listed in an AFI-list LCAF) are candidates; unspecified,
    multicast and loopback addresses are skipped.  One of the family of the ECM's inner source
    address is preferred (the ITR could source the request from that family), else the first.
    """
    candidates: list[IPAddress] = []
    for rloc in request.itr_rlocs:
        items: Iterable[object] = rloc.addresses if isinstance(rloc, AfiListAddress) else (rloc,)
        candidates.extend(a for a in items if _reply_rloc_ok(a))  # type: ignore[misc]
    if not candidates:
        return None
    family = ecm.inner_ip.src.version
    for addr in candidates:
        if addr.version == family:
            return addr
    return candidates[0]


def best_etr_locator(record: EidRecord) -> IPAddress | None:
    """The RLOC a Map-Request is forwarded to: a reachable IPv4/IPv6 locator of priority < 255
    with the lowest priority, then the highest weight, then the first listed."""
    best: Locator | None = None
    best_address: object = None
    for loc in record.locators:
        address = etr_address(loc.address)
        if not (loc.usable and loc.reachable and _reply_rloc_ok(address)):
            continue
        if best is None or (loc.priority, -loc.weight) < (best.priority, -best.weight):
            best, best_address = loc, address
    return best_address  # type: ignore[return-value]


def etr_address(address: object) -> object:
    """The ETR behind a locator address: the last hop of an Explicit Locator Path, else the
    address itself."""
    if isinstance(address, ElpAddress) and address.hops:
        return address.hops[-1].address
    return address


def proxy_record(record: EidRecord) -> EidRecord:
    """The EID-record of a proxy Map-Reply: not authoritative, L and p bits cleared."""
    return dataclasses.replace(
        record,
        authoritative=False,
        locators=tuple(
            dataclasses.replace(loc, local=False, probed=False) for loc in record.locators
        ),
    )


def requester_is_rtr(request: MapRequest, rtrs: frozenset[IPAddress]) -> bool:
    """Whether one of the request's ITR-RLOCs is one of ``rtrs``."""
    for rloc in request.itr_rlocs:
        items: Iterable[object] = rloc.addresses if isinstance(rloc, AfiListAddress) else (rloc,)
        if any(a in rtrs for a in items):
            return True
    return False


def nat_view(record: EidRecord, rtrs: frozenset[IPAddress], for_rtr: bool) -> EidRecord:
    """What a requester sees of a registration from an xTR behind NAT, whose locators are its
    translated RLOC and the RTRs (draft-ietf-lisp-nat-traversal): an RTR gets the translated
    RLOC (the RTR knows the NAT's port from the xTR's keepalives), anyone else the RTRs, the
    only way in through the NAT.  A record without RTR locators is returned as it is."""
    if not any(loc.address in rtrs for loc in record.locators):
        return record
    kept = tuple(loc for loc in record.locators if (loc.address in rtrs) != for_rtr)
    return dataclasses.replace(record, locators=kept) if kept else record


# --- the machine ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AllowedPrefix:
    """A configured site prefix and the site it belongs to (values of the site-prefix table)."""

    site: SiteSpec
    spec: SitePrefixSpec


class MapServer:
    """Accepts Map-Registers from configured sites and answers or forwards Map-Requests.

    Attributes:
        drops: refused inputs by reason (``register-auth-failed``, ``request-bad-eid``...).
        stats: accepted work: ``map-register-accepted`` (messages), ``registered`` (new
            prefixes), ``refreshed``, ``deregistered``, ``expired``, ``map-notify-sent``,
            ``proxy-replied``, ``forwarded``.
    """

    def __init__(
        self,
        sites: Sequence[SiteSpec],
        registration_timeout: float = DEFAULT_REGISTRATION_TIMEOUT,
        rng: Callable[[], int] = lambda: secrets.randbits(64),
        *,
        check_replay: bool = True,
        max_site_registrations: int = LimitsConfig().site_registrations,
    ) -> None:
        """Serve ``sites``.  Raises ValueError for an unusable site list (a configuration error:
        duplicate names, empty keys, instance-IDs out of range, a prefix twice in one site).

        ``rng`` returns 64-bit nonces; it is kept for Map-Server-initiated messages (unsolicited
        Map-Notify) — replies and notifies echo the nonce they answer.  A site holds at most
        ``max_site_registrations`` EID-prefixes at once (``register-site-full`` beyond).
        """
        if registration_timeout <= 0:
            raise ValueError("registration_timeout must be positive")
        self.registration_timeout = float(registration_timeout)
        self.rng = rng
        self.check_replay = check_replay
        self.max_site_registrations = max_site_registrations
        self._per_site: Counter[str] = Counter()  # registrations held per site
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self._refusal_log = RefusalLog(log)
        self._now = 0.0  # the latest time an input came with (for the refusal log)
        self._sites: dict[str, SiteSpec] = {}
        self._site_prefixes: ScopedTables[tuple[AllowedPrefix, ...]] = ScopedTables()
        self._registrations: ScopedTables[Registration] = ScopedTables()
        self._heap: list[tuple[float, int, int, IPNetwork]] = []
        self._seq = 0
        self._nonces: dict[tuple[str, int | None, int], float] = {}  # accepted -> when
        self._next_nonce_prune = float("-inf")
        # RTRs handed to xTRs behind NAT: registrations listing them are NATed sites.
        self.rtrs: frozenset[IPAddress] = frozenset()
        # Draft-style NAT traversal: the key (and key-id) of the MS-RTR authentication block
        # of Map-Notifies answering registrations an RTR forwarded (R bit); None: none sent.
        self.ms_rtr_key: bytes | None = None
        self.ms_rtr_key_id: int = auth.KeyId.HMAC_SHA_1_96
        self._load_sites(sites)

    # -- configuration -------------------------------------------------------------------------

    def _load_sites(self, sites: Sequence[SiteSpec]) -> None:
        by_name: dict[str, SiteSpec] = {}
        table: ScopedTables[tuple[AllowedPrefix, ...]] = ScopedTables()
        for site in sites:
            if site.name in by_name:
                raise ValueError(f"site {site.name!r} is configured twice")
            if not site.key:
                raise ValueError(f"site {site.name!r} has an empty key")
            seen: set[tuple[int, IPNetwork]] = set()
            for spec in site.prefixes:
                if not isinstance(spec.iid, int) or not 0 <= spec.iid <= MAX_IID:
                    raise ValueError(f"site {site.name!r}: instance-id {spec.iid!r} out of range")
                if not isinstance(spec.prefix, IPv4Network | IPv6Network):
                    raise ValueError(f"site {site.name!r}: {spec.prefix!r} is not an IP prefix")
                if (spec.iid, spec.prefix) in seen:
                    raise ValueError(f"site {site.name!r}: [{spec.iid}]{spec.prefix} twice")
                seen.add((spec.iid, spec.prefix))
                previous = table.exact(spec.iid, spec.prefix) or ()
                table.insert(spec.iid, spec.prefix, (*previous, AllowedPrefix(site, spec)))
            by_name[site.name] = site
        self._sites = by_name
        self._site_prefixes = table

    def set_sites(self, sites: Sequence[SiteSpec], now: float) -> list[Registration]:
        """Replace the site configuration (a reload).  Registrations the new configuration
        still allows (same site name, prefix still allowed) are kept untouched; the others are
        removed and returned.  Registrations past their lifetime at ``now`` are expired first
        (as :meth:`expire`, not returned here).  Raises ValueError, changing nothing, for an
        unusable list."""
        self._load_sites(sites)  # builds the new tables aside; assigns only when valid
        self.expire(now)
        removed: list[Registration] = []
        for iid, prefix, reg in list(self._registrations.items()):
            if reg.site not in {a.site.name for a in self._allowing(iid, prefix)}:
                self._registrations.delete(iid, prefix)
                self._per_site[reg.site] -= 1
                removed.append(reg)
                log.info(
                    "registration removed by reload %s", kv(site=reg.site, eid=f"[{iid}]{prefix}")
                )
        self._nonces = {k: v for k, v in self._nonces.items() if k[0] in self._sites}
        return removed

    @property
    def sites(self) -> tuple[SiteSpec, ...]:
        """The configured sites, by name."""
        return tuple(self._sites[name] for name in sorted(self._sites))

    def site_prefix(self, iid: int, address: IPAddress) -> tuple[IPNetwork, str] | None:
        """The most specific configured site prefix holding ``address`` in ``iid`` and the
        name of (the first) site it belongs to, or None."""
        try:
            hit = self._site_prefixes.lookup(iid, address)
        except ValueError:
            return None
        if hit is None:
            return None
        return hit[0], hit[1][0].site.name

    @property
    def site_prefix_tables(self) -> ScopedTables[tuple[AllowedPrefix, ...]]:
        """The configured site prefixes per (instance-ID, family) (read only, please)."""
        return self._site_prefixes

    @property
    def registration_tables(self) -> ScopedTables[Registration]:
        """The registrations per (instance-ID, family) (read only, please)."""
        return self._registrations

    def site_keys(self, iid: int, net: IPNetwork) -> list[bytes]:
        """The keys of the sites allowed to register exactly ``net`` in ``iid`` (what an
        authenticated Info-Request naming that EID-prefix must be signed with)."""
        return [a.site.key for a in self._allowing(iid, net)]

    def _allowing(self, iid: int, net: IPNetwork) -> list[AllowedPrefix]:
        """Configured prefixes that allow registering exactly ``net`` in ``iid``."""
        out: list[AllowedPrefix] = []
        for prefix, allowed in self._site_prefixes.covering(iid, net):
            for entry in allowed:
                if prefix == net or entry.spec.accept_more_specifics:
                    out.append(entry)
        return out

    def _overlaps_site(self, iid: int, net: IPNetwork) -> bool:
        return bool(
            self._site_prefixes.covering(iid, net) or self._site_prefixes.more_specifics(iid, net)
        )

    # -- Map-Register --------------------------------------------------------------------------

    def _refuse(self, reason: str, what: str, src: object, sport: int, **fields: object) -> None:
        self.drops[reason] += 1
        self._refusal_log.warn(
            reason, self._now, f"{what} refused", src=endpoint(src, sport), **fields
        )

    def on_map_register(
        self, raw: bytes, msg: MapRegister, src: IPAddress, sport: int, now: float
    ) -> list[SendControl]:
        """Handle a Map-Register: ``raw`` is the message as received (the HMAC covers it),
        ``msg`` its decoded form, ``src``:``sport`` where it came from.  Returns the Map-Notify
        to send when one was asked for and the registration was accepted, else nothing."""
        self._now = now
        if not msg.records:
            self._refuse(REGISTER_NO_RECORDS, "map-register", src, sport)
            return []
        if msg.key_id not in _ACCEPTED_KEY_IDS:
            self._refuse(REGISTER_BAD_KEY_ID, "map-register", src, sport, key_id=msg.key_id)
            return []

        # Policy: which sites allow every record?
        targets: list[tuple[EidRecord, int, IPNetwork]] = []
        candidates: set[str] | None = None
        for record in msg.records:
            try:
                iid, net = split_eid(record.eid, record.mask_len)
            except ValueError:
                net = None
            if net is None:
                self._refuse(REGISTER_BAD_EID, "map-register", src, sport)
                return []
            allowing = {a.site.name for a in self._allowing(iid, net)}
            if not allowing:
                reason = (
                    REGISTER_PREFIX_NOT_ALLOWED
                    if self._overlaps_site(iid, net)
                    else REGISTER_UNKNOWN_SITE
                )
                self._refuse(reason, "map-register", src, sport, eid=f"[{iid}]{net}")
                return []
            candidates = allowing if candidates is None else candidates & allowing
            targets.append((record, iid, net))
        if not candidates:
            self._refuse(REGISTER_MULTIPLE_SITES, "map-register", src, sport)
            return []

        # Authentication with the key of (one of) the site(s) allowing every record.
        site: SiteSpec | None = None
        try:
            for name in sorted(candidates):
                if auth.verify(raw, self._sites[name].key):
                    site = self._sites[name]
                    break
        except WireError as exc:
            self._refuse(REGISTER_MALFORMED, "map-register", src, sport, error=exc.reason)
            return []
        if site is None:
            names = sorted(candidates)
            self._refuse(REGISTER_AUTH_FAILED, "map-register", src, sport, site=names)
            return []

        # Replay: a nonce this site (and xTR-ID) used within the timeout, from any address.
        nonce_key = (site.name, msg.xtr_id, msg.nonce)
        seen = self._nonces.get(nonce_key)
        if self.check_replay and seen is not None and now - seen < self.registration_timeout:
            self._refuse(
                REGISTER_REPLAYED,
                "map-register",
                src,
                sport,
                site=site.name,
                nonce=f"0x{msg.nonce:016x}",
            )
            return []
        self._nonces[nonce_key] = now
        self.stats["map-register-accepted"] += 1

        for record, iid, net in targets:
            self._install(site, record, iid, net, msg, src, sport, now)

        if not msg.want_map_notify:
            return []
        notify = MapNotify(
            nonce=msg.nonce,
            records=msg.records,
            key_id=msg.key_id,
            xtr_id=msg.xtr_id,
            site_id=msg.site_id,
        )
        rtr_key: bytes | None = None
        if msg.for_rtr and self.ms_rtr_key is not None and src in self.rtrs:
            # Forwarded by one of our RTRs for an xTR behind a NAT (draft-ietf-lisp-nat-
            # traversal): the Map-Notify goes to that RTR with the R bit and an MS-RTR
            # authentication block, signed with the key only the RTRs share with us.  Without
            # that key, or from elsewhere, it is an ordinary Map-Notify to the sender (which an
            # RTR will not relay: nothing signed with the MS-RTR key leaves for a stranger).
            rtr_key = self.ms_rtr_key
            notify = dataclasses.replace(notify, rtr_auth=RtrAuth(self.ms_rtr_key_id))
            self.stats["map-notify-for-rtr"] += 1
        try:
            payload = encode_signed(notify, site.key, rtr_key)
        except EncodeError as exc:
            self._refuse(NOTIFY_ENCODE_FAILED, "map-notify", src, sport, error=exc)
            return []
        self.stats["map-notify-sent"] += 1
        return [SendControl(src, sport, payload)]

    def _install(
        self,
        site: SiteSpec,
        record: EidRecord,
        iid: int,
        net: IPNetwork,
        msg: MapRegister,
        src: IPAddress,
        sport: int,
        now: float,
    ) -> None:
        previous = self._registrations.exact(iid, net)
        lifetime = record.ttl * 60.0 if msg.ttl_timeout else self.registration_timeout
        if lifetime <= 0:
            if previous is not None and previous.site == site.name:
                self._registrations.delete(iid, net)
                self._per_site[site.name] -= 1
                self.stats["deregistered"] += 1
                log.info("deregistered %s", kv(site=site.name, eid=f"[{iid}]{net}", src=src))
            return
        same = previous is not None and previous.site == site.name
        reg = Registration(
            site=site.name,
            iid=iid,
            prefix=net,
            record=record,
            registered_by=src,
            registered_by_port=sport,
            first_registered=previous.first_registered if same and previous else now,
            last_registered=now,
            expires=now + lifetime,
            proxy_reply=msg.proxy_reply,
            xtr_id=msg.xtr_id,
            site_id=msg.site_id,
        )
        if not same:
            if self._per_site[site.name] >= self.max_site_registrations:
                self._refuse("register-site-full", "map-register", src, sport, site=site.name)
                return
            if previous is not None:
                self._per_site[previous.site] -= 1
            self._per_site[site.name] += 1
        self._registrations.insert(iid, net, reg)
        self._seq += 1
        heapq.heappush(self._heap, (reg.expires, self._seq, iid, net))
        if same:
            self.stats["refreshed"] += 1
        else:
            self.stats["registered"] += 1
            log.info(
                "registered %s",
                kv(
                    site=site.name,
                    eid=f"[{iid}]{net}",
                    rlocs=[address_text(loc.address) for loc in record.locators],
                    src=endpoint(src, sport),
                    proxy_reply=msg.proxy_reply,
                ),
            )

    # -- registrations -------------------------------------------------------------------------

    def registrations(self) -> list[Registration]:
        """Every registration, in (instance-ID, family, prefix) order."""
        return [reg for _iid, _net, reg in self._registrations.items()]

    def registrations_per_site(self) -> dict[str, int]:
        """How many EID-prefixes each site has registered (sites with none left out): kept up
        to date on every change, so this costs the number of sites, not of registrations."""
        return {site: n for site, n in self._per_site.items() if n > 0}

    def lookup(self, iid: int, address: IPAddress | str) -> Registration | None:
        """The registration with the longest prefix covering ``address`` in ``iid``."""
        try:
            hit = self._registrations.lookup(iid, address)
        except ValueError:
            return None
        return None if hit is None else hit[1]

    def _is_current(self, expires: float, iid: int, net: IPNetwork) -> Registration | None:
        reg = self._registrations.exact(iid, net)
        return reg if reg is not None and reg.expires == expires else None

    def expire(self, now: float) -> list[Registration]:
        """Remove and return the registrations whose lifetime ended at or before ``now``."""
        removed: list[Registration] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            expires, _seq, iid, net = heapq.heappop(heap)
            reg = self._is_current(expires, iid, net)
            if reg is None:
                continue  # refreshed, replaced or removed since
            self._registrations.delete(iid, net)
            self._per_site[reg.site] -= 1
            removed.append(reg)
            self.stats["expired"] += 1
            log.info(
                "registration expired %s",
                kv(site=reg.site, eid=f"[{iid}]{net}", last_registered_by=reg.registered_by),
            )
        if now >= self._next_nonce_prune:
            # Forget nonces older than the replay window (they could not be refused any more).
            horizon = now - self.registration_timeout
            self._nonces = {k: v for k, v in self._nonces.items() if v > horizon}
            self._next_nonce_prune = now + self.registration_timeout
        return removed

    def next_deadline(self) -> float | None:
        """When :meth:`expire` next has work (the earliest registration expiry), or None."""
        heap = self._heap
        while heap and self._is_current(heap[0][0], heap[0][2], heap[0][3]) is None:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    # -- Map-Request ---------------------------------------------------------------------------

    def on_map_request(self, ecm: EncapsulatedControl, now: float) -> list[SendControl] | None:
        """Deliver an ECM'd Map-Request for a registered EID.

        Returns None when no registration covers the requested EID (the Map-Resolver answers
        negatively), else what to send: a proxy Map-Reply to an ITR-RLOC at the ECM's inner UDP
        source port, or the ECM re-encoded with the E bit to the registered ETR's port 4342.
        An empty list means the request was refused (counted in :attr:`drops`).  Registrations
        whose lifetime ended by ``now`` are expired first, as :meth:`expire` would.
        """
        self._now = now
        self.expire(now)  # a registration past its lifetime answers nothing, timer or not
        request = ecm.message
        sport = ecm.sport
        src = ecm.inner_ip.src
        if not isinstance(request, MapRequest):
            self._refuse(REQUEST_NOT_MAP_REQUEST, "ecm", src, sport)
            return []
        if ecm.to_etr:
            self._refuse(REQUEST_TO_ETR, "map-request", src, sport)
            return []
        eid = request_eid(request)
        if eid is None:
            self._refuse(REQUEST_BAD_EID, "map-request", src, sport)
            return []
        iid, address = eid
        reg = self.lookup(iid, address)
        if reg is None:
            return None

        if reg.proxy_reply:
            if not 0 < sport <= 0xFFFF:
                self._refuse(REQUEST_BAD_PORT, "map-request", src, sport)
                return []
            dst = reply_destination(request, ecm)
            if dst is None:
                self._refuse(
                    REQUEST_NO_ITR_RLOC, "map-request", src, sport, eid=f"[{iid}]{address}"
                )
                return []
            record = nat_view(reg.record, self.rtrs, requester_is_rtr(request, self.rtrs))
            reply = MapReply(nonce=request.nonce, records=(proxy_record(record),))
            try:
                payload = encode_map_reply(reply)
            except EncodeError as exc:
                self._refuse(REQUEST_ENCODE_FAILED, "map-reply", src, sport, error=exc)
                return []
            self.stats["proxy-replied"] += 1
            return [SendControl(dst, sport, payload)]

        etr = best_etr_locator(reg.record)
        if etr is None:
            self._refuse(
                REQUEST_NO_ETR_LOCATOR, "map-request", src, sport, eid=f"[{iid}]{reg.prefix}"
            )
            return []
        try:
            payload = encode_ecm(dataclasses.replace(ecm, to_etr=True, to_ms=False))
        except EncodeError as exc:
            self._refuse(REQUEST_ENCODE_FAILED, "ecm", src, sport, error=exc)
            return []
        self.stats["forwarded"] += 1
        return [SendControl(etr, LISP_CONTROL_PORT, payload)]

    def __repr__(self) -> str:
        return f"<MapServer {len(self._sites)} sites {len(self._registrations)} registrations>"
