"""The ITR side of RFC 9301 mapping resolution: Map-Request out, Map-Reply in, no first-packet loss.

A sans-IO machine in the style of aioquic: the daemon feeds it API calls, decoded messages and
timer ticks, each with ``now`` from its monotonic clock, and sends what it returns.  It owns
no socket, no task and no clock; nonces come from the injected ``rng``.

Life of a lookup, keyed by ``(iid, eid)`` (the host address that missed):

1. The ITR misses in the map-cache and calls :meth:`Resolver.resolve`.  Unless that key is
   already pending or rate-limited, the resolver returns one :class:`SendControl`: an ECM to the
   preferred Map-Resolver carrying a Map-Request for the host prefix (/32 or /128).
2. The ITR hands the packet to :meth:`Resolver.hold`, which queues it while the lookup is
   pending (bounded per entry and in total, and in time).
3. :meth:`Resolver.on_map_reply` matches the reply's nonce (that of any of the lookup's
   attempts), checks every record covers the
   requested EID, and returns a :class:`ResolveResult`: the map-cache entries to install and the
   held packets (of every pending lookup the new prefixes cover) for the ITR to send again.
4. :meth:`Resolver.on_timer` retransmits with exponential back-off, rotating through the
   Map-Resolvers, gives up after ``retries`` retransmissions and ages held packets out.

Choices:

- Every attempt, retransmissions included, carries a fresh nonce from ``rng`` (RFC 9301
  section 5.2: the nonce is a random value made by the Map-Request's sender, from a properly
  seeded pseudo-random source; section 5.3: a Map-Reply is a successful one when its nonce
  matches the nonce of an outstanding Map-Request).  Every attempt of a pending lookup is
  outstanding, so a reply carrying the nonce of any of them completes the lookup: a late
  answer to the first attempt still resolves it.  All of a lookup's nonces (at most
  ``retries + 1``) are forgotten when it finishes, so a late or replayed reply then counts as
  unknown.  Should ``rng`` collide with a nonce in use, the retransmission reuses the
  lookup's latest nonce (``stats["nonce-reused"]``).
- A PITR's Map-Requests carry the PITR bit (RFC 9301 section 5.2, the ``p`` bit of the
  header): ``pitr=True`` (``lispd.node.build`` sets it for the ``pitr`` role).
- Map-Resolver failover sticks: a lookup starts at the *preferred* Map-Resolver (the first
  configured one at start) and its retransmissions rotate through the others; the
  Map-Resolver that the answered attempt (known by the reply's nonce) went to becomes the
  preferred one (``stats["map-resolver-switched"]``).  So with the first Map-Resolver down,
  one lookup waits one retransmission interval and the following ones go straight to the
  next.  A new Map-Resolver list (reload) starts again from its first.
- With ``retries = 3`` a lookup sends 4 Map-Requests, at t, t+1, t+3, t+7 (interval doubling
  from ``retry_interval``), and gives up at t+15 when no answer came.
- Rate limits: a new lookup for a key is refused for ``min_request_interval`` after the
  previous one for that key finished (answered or given up), and every new lookup takes a token
  from a global bucket of ``max_requests_per_second`` (burst: one second's worth).
  Retransmissions are not charged to the bucket: the lookups they belong to already were.
- The ECM's inner IP header must be of the EID's family: its source is ``source_eid`` when of
  that family, else our first ITR-RLOC of that family, else the unspecified address of that
  family (0.0.0.0 or ::), since an address of the other family cannot go in the header.  The
  Map-Reply comes back to the ITR-RLOCs in the Map-Request, never to the inner source.
- Probe replies (P bit) belong to the RLOC prober and are counted and ignored here.
- Every SMR acted on is logged at INFO (``smr received``, logger ``lispd.control.resolver``,
  with ``lookup=started`` or ``skipped`` when already pending or rate-limited), at most
  :data:`SMR_LOG_RATE` lines a second on average: the next line counts those left out.
- Records whose locators all are unusable (LCAF, other AFIs, or, in IID 0, inside the record's own
  EID-prefix) become negative ``drop`` entries; priority-255 locators are kept (the data plane
  never picks them for unicast).

State table.  Each lookup is in one :class:`Lookup` state and every input for it has a
:class:`LookupInput` kind; :data:`RESOLVER_TABLE` (total, consulted before acting) says where
each pair leads.  A Map-Reply is a lookup's by its nonce alone (any attempt's); an unknown
nonce (never sent, or a finished lookup's: they are forgotten with the lookup) and probe
replies reach no table.  The finished states take no input: nothing reaches a finished
lookup, and a new :meth:`Resolver.resolve` of its EID starts another (rate limits
permitting).  :meth:`Resolver.hold`
refusing a packet for want of queue space is no table matter (the caller counts it).

- ``pending``: retry (map-request) -> retrying, give-up -> given-up, mapped (held packets
  released) -> answered, mapped-negative (held packets released) -> negative, unmapped ->
  no-mapping; stays on resolve, hold, held-expired.
- ``retrying``: give-up -> given-up, mapped (held packets released) -> answered,
  mapped-negative (held packets released) -> negative, unmapped -> no-mapping; stays on
  resolve, hold, held-expired, retry (map-request).
- ``answered``, ``negative``, ``no-mapping``, ``given-up``: never gets resolve, hold,
  held-expired, retry, give-up, mapped, mapped-negative, unmapped.

Impossible ones as ``lookup-finished``/``map-reply-unknown-nonce``.

Accounting: ``drops`` counts what was refused by reason: messages and records from the network
(``map-reply-unknown-nonce``, ``map-reply-probe``, ``map-reply-prefix-mismatch``,
``locator-unsupported``, ``smr-*``) and held packets the resolver dropped itself
(``queue-timeout``, ``resolve-timeout``, ``ttl-zero``, ``no-mapping``).  The ints returned by
:meth:`~Resolver.on_timer` and in :attr:`ResolveResult.dropped` repeat those packet counts for
the caller's totals; they are already counted here under their reason.  Packets :meth:`hold`
refuses are counted by the caller.  ``stats`` counts events (``requests-sent``,
``retransmits``, ``replies-accepted``, ``entries-installed``, ``resolve-timeouts``,
``rate-limited-eid``, ``rate-limited-global``, ``packets-held``, ``packets-released``, ...).
"""

from __future__ import annotations

import heapq
import logging
import secrets
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from ipaddress import IPv4Address, IPv6Address
from typing import Final, NamedTuple

from lispd.config.model import ResolverConfig
from lispd.control import statetable
from lispd.control.outputs import SendControl
from lispd.logfmt import pairs
from lispd.mapcache import MAX_IID, MapCacheEntry, RlocEntry
from lispd.mapcache import Action as CacheAction
from lispd.ratelimit import TokenBucket
from lispd.wire.address import NO_ADDRESS, Address, ElpAddress, InstanceIdAddress, split_eid
from lispd.wire.data import LISP_CONTROL_PORT
from lispd.wire.ecm import EncapsulatedControl, encode_ecm
from lispd.wire.errors import EncodeError
from lispd.wire.ip import IPv4Header, IPv6Header
from lispd.wire.mapreply import MapReply
from lispd.wire.maprequest import MapRequest
from lispd.wire.records import Action, EidPrefix, EidRecord

IpAddress = IPv4Address | IPv6Address

log = logging.getLogger("lispd.control.resolver")

SMR_LOG_RATE: Final = 1.0
"""``smr received`` lines a second on average (bursts of :data:`SMR_LOG_BURST`): SMRs come from
the network, and a flood of them must not become a flood of log lines."""
SMR_LOG_BURST: Final = 10.0

_MASK64: Final = (1 << 64) - 1
_NONCE_TRIES: Final = 16

NEGATIVE_ACTIONS: Final[dict[int, CacheAction]] = {
    Action.NO_ACTION: "no-action",
    Action.NATIVELY_FORWARD: "native-forward",
    Action.SEND_MAP_REQUEST: "send-map-request",
}
"""Map-cache action of a record without locators; every other ACT value (the Drop variants,
lispers.net's 6 and 7, anything unknown) means ``drop``."""


class Lookup(Enum):
    """Where one lookup stands (see the module documentation)."""

    PENDING = "pending"
    """The first Map-Request is out, no answer yet."""
    RETRYING = "retrying"
    """Retransmitted at least once, no answer yet."""
    ANSWERED = "answered"
    """Finished: a Map-Reply installed a mapping with locators covering the EID."""
    NEGATIVE = "negative"
    """Finished: the mapping installed for the EID has no locators (a negative Map-Reply)."""
    NO_MAPPING = "no-mapping"
    """Finished: its Map-Reply installed nothing covering the EID (held packets dropped)."""
    GIVEN_UP = "given-up"
    """Finished: no answer to any retransmission (held packets dropped)."""


class LookupInput(Enum):
    """What happens to one lookup."""

    RESOLVE = "resolve"
    """:meth:`Resolver.resolve` (or an SMR) for its EID while it is pending: nothing sent."""
    HOLD = "hold"
    """A packet is held for it."""
    HELD_EXPIRED = "held-expired"
    """The timer drops held packets older than ``queue_timeout``."""
    RETRY = "retry"
    """The timer retransmits its Map-Request."""
    GIVE_UP = "give-up"
    """A retransmission is due, but ``retries`` are used up (or no Map-Resolver is left)."""
    MAPPED = "mapped"
    """A Map-Reply (its own, or one for another EID it covers) installed a mapping with locators
    for its EID (the most specific one when several cover it)."""
    MAPPED_NEGATIVE = "mapped-negative"
    """... a mapping without locators."""
    UNMAPPED = "unmapped"
    """Its own Map-Reply installed nothing covering its EID."""


_L = Lookup
_LI = LookupInput
_FINISHED = statetable.Refuse("lookup-finished", possible=False)
_FORGOTTEN = statetable.Refuse("map-reply-unknown-nonce", possible=False)


def _active_row(state: Lookup) -> dict[LookupInput, statetable.Go[Lookup] | statetable.Refuse]:
    return {
        _LI.RESOLVE: statetable.Go(state),
        _LI.HOLD: statetable.Go(state),
        _LI.HELD_EXPIRED: statetable.Go(state),
        _LI.RETRY: statetable.Go(_L.RETRYING, "map-request"),
        _LI.GIVE_UP: statetable.Go(_L.GIVEN_UP),
        _LI.MAPPED: statetable.Go(_L.ANSWERED, "held packets released"),
        _LI.MAPPED_NEGATIVE: statetable.Go(_L.NEGATIVE, "held packets released"),
        _LI.UNMAPPED: statetable.Go(_L.NO_MAPPING),
    }


def _finished_row() -> dict[LookupInput, statetable.Go[Lookup] | statetable.Refuse]:
    # A finished lookup is forgotten with its nonce: a late or replayed Map-Reply is counted
    # as map-reply-unknown-nonce before it reaches any lookup, and its EID may be looked up
    # again by a new one.
    return {
        _LI.RESOLVE: _FINISHED,
        _LI.HOLD: _FINISHED,
        _LI.HELD_EXPIRED: _FINISHED,
        _LI.RETRY: _FINISHED,
        _LI.GIVE_UP: _FINISHED,
        _LI.MAPPED: _FORGOTTEN,
        _LI.MAPPED_NEGATIVE: _FORGOTTEN,
        _LI.UNMAPPED: _FORGOTTEN,
    }


RESOLVER_TABLE: Final = statetable.StateTable(
    "resolver",
    Lookup,
    LookupInput,
    {
        _L.PENDING: _active_row(_L.PENDING),
        _L.RETRYING: _active_row(_L.RETRYING),
        _L.ANSWERED: _finished_row(),
        _L.NEGATIVE: _finished_row(),
        _L.NO_MAPPING: _finished_row(),
        _L.GIVEN_UP: _finished_row(),
    },
)
"""The resolver's table, per lookup (rendered in the module documentation)."""

FINISHED: Final = frozenset({_L.ANSWERED, _L.NEGATIVE, _L.NO_MAPPING, _L.GIVEN_UP})
"""The states a lookup ends in."""

_CONFIG: Final = ResolverConfig()
"""The defaults of ``[resolver]``, which are those of :class:`ResolverSettings`."""


@dataclass(frozen=True, slots=True)
class ResolverSettings:
    """Tunables of the :class:`Resolver` (seconds unless named otherwise); the defaults are
    those of ``lispd.conf``'s ``[resolver]`` (:class:`lispd.config.model.ResolverConfig`)."""

    retries: int = _CONFIG.retries
    """Retransmissions after the first Map-Request before giving up."""
    retry_interval: float = _CONFIG.retry_interval
    """Wait before the first retransmission; doubles after each."""
    queue_per_entry: int = _CONFIG.queue_per_entry
    """Packets held per pending lookup."""
    queue_total: int = _CONFIG.queue_total
    """Packets held over all pending lookups."""
    queue_timeout: float = _CONFIG.queue_timeout
    """A held packet older than this is dropped."""
    min_request_interval: float = _CONFIG.min_request_interval
    """Minimum time between the end of one lookup of an EID and the start of the next."""
    max_requests_per_second: float = _CONFIG.max_requests_per_second
    """Global rate of new lookups (token bucket, burst of one second's worth)."""
    max_ttl_minutes: int = _CONFIG.max_ttl
    """Record TTLs are capped to this (``max-ttl``)."""

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError("retries must be >= 0")
        if self.retry_interval <= 0:
            raise ValueError("retry_interval must be > 0")
        if self.queue_per_entry < 0 or self.queue_total < 0:
            raise ValueError("queue limits must be >= 0")
        if self.queue_timeout <= 0:
            raise ValueError("queue_timeout must be > 0")
        if self.min_request_interval < 0:
            raise ValueError("min_request_interval must be >= 0")
        if self.max_requests_per_second <= 0:
            raise ValueError("max_requests_per_second must be > 0")
        if self.max_ttl_minutes < 0:
            raise ValueError("max_ttl_minutes must be >= 0")


@dataclass(slots=True)
class ResolveResult:
    """What a Map-Reply changed.

    ``installs``: map-cache entries to install.  ``released``: ``(iid, packet)`` for every held
    packet of every lookup an installed prefix now covers, in arrival order, to push through the
    ITR again.  ``dropped``: held packets dropped because the reply gave nothing to install for
    their EID (already counted in ``Resolver.drops`` under ``ttl-zero`` or ``no-mapping``).
    """

    installs: list[MapCacheEntry] = field(default_factory=list)
    released: list[tuple[int, bytes]] = field(default_factory=list)
    dropped: int = 0


class _Held(NamedTuple):
    seq: int
    arrival: float
    packet: bytes


@dataclass(slots=True, eq=False)
class _Pending:
    """One outstanding lookup."""

    rid: int
    iid: int
    eid: IpAddress
    nonce: int  # the latest attempt's
    source_eid: IpAddress | None
    smr_invoked: bool
    started: float
    first_mr: int = 0  # index of the Map-Resolver its first attempt went to
    attempts: int = 0
    next_retry: float = 0.0
    last_sent_to: IpAddress | None = None
    held: deque[_Held] = field(default_factory=deque)
    phase: Lookup = Lookup.PENDING
    # Every attempt's nonce -> the Map-Resolver it went to (the latest, if a nonce was reused).
    nonces: dict[int, IpAddress] = field(default_factory=dict)


def _host_prefix(iid: int, addr: IpAddress) -> Address:
    return InstanceIdAddress(iid, addr) if iid else addr


class Resolver:
    """Resolves EIDs through Map-Resolvers and holds the packets waiting for the answers."""

    def __init__(
        self,
        map_resolvers: Sequence[IpAddress],
        itr_rlocs: Sequence[IpAddress],
        settings: ResolverSettings | None = None,
        rng: Callable[[], int] | None = None,
        local_port: int = LISP_CONTROL_PORT,
        pitr: bool = False,
    ) -> None:
        """``map_resolvers`` are tried in order (the preferred one first, initially the first
        one, the others on retries);
        ``itr_rlocs`` (1 to 32) all go in every Map-Request; ``rng`` returns 64-bit nonces
        (default: :func:`secrets.randbits`), one per Map-Request sent; ``local_port`` is the UDP
        port the daemon receives Map-Replies on, written as the inner UDP source port;
        ``pitr``: this is a PITR, whose Map-Requests carry the PITR bit."""
        self.settings = settings if settings is not None else ResolverSettings()
        self._rng: Callable[[], int] = rng if rng is not None else lambda: secrets.randbits(64)
        if not 0 < local_port <= 0xFFFF:
            raise ValueError(f"local port {local_port} is outside 1..65535")
        self.local_port = local_port
        self.pitr = pitr
        self._map_resolvers: tuple[IpAddress, ...] = ()
        self._preferred: IpAddress | None = None
        self._itr_rlocs: tuple[IpAddress, ...] = ()
        self.set_map_resolvers(map_resolvers)
        self.set_itr_rlocs(itr_rlocs)
        rate = self.settings.max_requests_per_second
        self._bucket = TokenBucket(rate, max(1.0, rate))
        self._pending: dict[tuple[int, IpAddress], _Pending] = {}
        self._by_nonce: dict[int, _Pending] = {}
        self._finished: dict[tuple[int, IpAddress], float] = {}  # in finishing order
        self._heap: list[tuple[float, int, int, tuple[int, IpAddress]]] = []
        self._held_total = 0
        self._seq = 0
        self._rid = 0
        self._smr_log = TokenBucket(SMR_LOG_RATE, SMR_LOG_BURST)
        self._smr_unlogged = 0
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()

    # --- configuration ------------------------------------------------------------------------

    def set_map_resolvers(self, map_resolvers: Sequence[IpAddress]) -> None:
        """Replace the Map-Resolver list (pending lookups use it from their next retry).  An
        empty list is allowed: lookups are then refused (``stats["no-map-resolver"]``).  A
        different list forgets the preferred Map-Resolver: new lookups start at its first."""
        for mr in map_resolvers:
            if not isinstance(mr, IPv4Address | IPv6Address):
                raise TypeError(f"a Map-Resolver is an IPv4/IPv6 address, not {mr!r}")
        if tuple(map_resolvers) != self._map_resolvers:
            self._preferred = None
        self._map_resolvers = tuple(map_resolvers)

    def set_itr_rlocs(self, itr_rlocs: Sequence[IpAddress]) -> None:
        """Replace the ITR-RLOCs written in Map-Requests (at most 32).  An empty list is
        allowed: lookups are then refused (``stats["no-itr-rloc"]``)."""
        for rloc in itr_rlocs:
            if not isinstance(rloc, IPv4Address | IPv6Address):
                raise TypeError(f"an ITR-RLOC is an IPv4/IPv6 address, not {rloc!r}")
        if len(itr_rlocs) > 32:
            raise ValueError("a Map-Request carries at most 32 ITR-RLOCs")
        self._itr_rlocs = tuple(itr_rlocs)

    def set_settings(self, settings: ResolverSettings) -> None:
        """Replace the settings (reload): pending lookups keep their packets and follow the new
        retry and queue limits from their next event."""
        self.settings = settings
        rate = settings.max_requests_per_second
        self._bucket = TokenBucket(rate, max(1.0, rate))

    @property
    def map_resolvers(self) -> tuple[IpAddress, ...]:
        """The Map-Resolvers in use."""
        return self._map_resolvers

    @property
    def preferred_map_resolver(self) -> IpAddress | None:
        """The Map-Resolver new lookups go to first (None without Map-Resolvers)."""
        if self._preferred in self._map_resolvers:
            return self._preferred
        return self._map_resolvers[0] if self._map_resolvers else None

    @property
    def itr_rlocs(self) -> tuple[IpAddress, ...]:
        """The ITR-RLOCs in use."""
        return self._itr_rlocs

    @property
    def held_total(self) -> int:
        """Packets held over all pending lookups."""
        return self._held_total

    # --- inputs -------------------------------------------------------------------------------

    def resolve(
        self,
        iid: int,
        eid: IpAddress,
        source_eid: IpAddress | None,
        now: float,
        smr_invoked: bool = False,
    ) -> list[SendControl]:
        """Start looking ``eid`` up in instance ``iid`` unless already pending or rate-limited.

        ``source_eid`` is the source of the packet that missed (None when unknown, e.g. at a
        PITR or for a refresh).  Returns the ECM'd Map-Request to send, or nothing.
        """
        if not isinstance(eid, IPv4Address | IPv6Address):
            self.drops["bad-eid"] += 1
            return []
        if not 0 <= iid <= MAX_IID:
            self.drops["bad-iid"] += 1
            return []
        key = (iid, eid)
        joined = self._pending.get(key)
        if joined is not None:
            if self._step(joined, LookupInput.RESOLVE):
                self.stats["already-pending"] += 1
            return []
        self._prune_finished(now)
        finished = self._finished.get(key)
        if finished is not None and now - finished < self.settings.min_request_interval:
            self.stats["rate-limited-eid"] += 1
            return []
        if not self._map_resolvers:
            self.stats["no-map-resolver"] += 1
            return []
        if not self._itr_rlocs:
            self.stats["no-itr-rloc"] += 1
            return []
        if not self._bucket.take(now):
            self.stats["rate-limited-global"] += 1
            return []
        nonce = self._new_nonce()
        if nonce is None:
            self.stats["nonce-collision"] += 1
            return []
        if source_eid is not None and not isinstance(source_eid, IPv4Address | IPv6Address):
            source_eid = None
        self._rid += 1
        pending = _Pending(self._rid, iid, eid, nonce, source_eid, smr_invoked, started=now)
        preferred = self.preferred_map_resolver
        pending.first_mr = self._map_resolvers.index(preferred) if preferred is not None else 0
        self._pending[key] = pending
        self._by_nonce[nonce] = pending
        send = self._send(pending, now)
        self._schedule(pending)
        if smr_invoked:
            self.stats["smr-invoked-requests"] += 1
        return [send]

    def hold(self, iid: int, eid: IpAddress, packet: bytes, now: float) -> bool:
        """Queue ``packet`` until the lookup of ``(iid, eid)`` completes.

        False when it cannot be held: no such lookup pending, or the per-entry or total queue
        is full.  The caller counts that drop.
        """
        pending = self._pending.get((iid, eid))
        if pending is None:
            return False
        if len(pending.held) >= self.settings.queue_per_entry:
            return False
        if self._held_total >= self.settings.queue_total:
            return False
        if not self._step(pending, LookupInput.HOLD):
            return False
        self._seq += 1
        was_empty = not pending.held
        pending.held.append(_Held(self._seq, now, bytes(packet)))
        self._held_total += 1
        self.stats["packets-held"] += 1
        if was_empty:
            self._schedule(pending)
        return True

    def on_map_reply(self, reply: MapReply, src: IpAddress, now: float) -> ResolveResult:
        """Handle a Map-Reply from ``src`` (any replier: ETR or proxying Map-Server).

        Only the nonce ties it to a request; every record must cover the requested EID in the
        requested instance.  The lookup is complete afterwards, whatever the records said.
        """
        result = ResolveResult()
        if reply.probe:
            self.drops["map-reply-probe"] += 1
            return result
        pending = self._by_nonce.get(reply.nonce)
        if pending is None:
            self.drops["map-reply-unknown-nonce"] += 1
            return result
        self.stats["replies-accepted"] += 1
        ttl_zero = False
        for record in reply.records:
            verdict = self._record_entry(pending, record, now)
            if isinstance(verdict, MapCacheEntry):
                result.installs.append(verdict)
            elif verdict == "ttl-zero":
                ttl_zero = True
        if not self._step(pending, self._reply_kind(pending, result.installs)):
            return ResolveResult()
        self._complete(pending, now)
        answered_by = pending.nonces.get(reply.nonce, pending.last_sent_to)
        if answered_by in self._map_resolvers and answered_by != self.preferred_map_resolver:
            self._preferred = answered_by
            self.stats["map-resolver-switched"] += 1
        self.stats["entries-installed"] += len(result.installs)

        # Release every lookup now covered (the answered one and any other it covers).
        released: list[tuple[int, int, bytes]] = []  # (seq, iid, packet)
        covered = [pending] if self._covered(pending, result.installs) else []
        for other in list(self._pending.values()):
            kind = self._reply_kind(other, result.installs)
            if kind is not LookupInput.UNMAPPED and self._step(other, kind):
                self._complete(other, now)
                covered.append(other)
        for lookup in covered:
            released.extend((h.seq, lookup.iid, h.packet) for h in lookup.held)
            self._held_total -= len(lookup.held)
            lookup.held.clear()
        released.sort(key=lambda item: item[0])
        result.released = [(iid, packet) for _, iid, packet in released]
        self.stats["packets-released"] += len(result.released)

        if pending.held:  # nothing installed covers the requested EID
            reason = "ttl-zero" if ttl_zero else "no-mapping"
            result.dropped = self._drop_held(pending, reason)
        return result

    def on_smr(self, request: MapRequest, src: IpAddress, now: float) -> list[SendControl]:
        """Handle a Solicit-Map-Request from ``src``.

        The SMR's source-EID names the remote EID whose mapping changed; nothing else in it is
        trusted.  That EID is looked up again through the Map-Resolver with the s bit set,
        rate-limited like any lookup.  The daemon should pass only SMRs for EIDs its map-cache
        holds (RFC 9301 section 6.1), which the resolver cannot see.
        """
        if not request.smr:
            self.drops["smr-not-smr"] += 1
            return []
        self.stats["smr-received"] += 1
        addr = request.source_eid
        iid = 0
        if isinstance(addr, InstanceIdAddress):
            iid, addr = addr.iid, addr.address
        if not isinstance(addr, IPv4Address | IPv6Address):
            self.drops["smr-bad-source-eid"] += 1
            return []
        if not 0 <= iid <= MAX_IID:
            self.drops["smr-bad-iid"] += 1
            return []
        sends = self.resolve(iid, addr, None, now, smr_invoked=True)
        self._log_smr(src, iid, addr, bool(sends), now)
        return sends

    def on_timer(self, now: float) -> tuple[list[SendControl], int]:
        """Retransmit due lookups, give up on exhausted ones, age held packets out.

        Returns the Map-Requests to send and the number of held packets dropped (already
        counted in ``drops`` as ``queue-timeout`` or ``resolve-timeout``).
        """
        sends: list[SendControl] = []
        dropped = 0
        self._prune_finished(now)
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, rid, key = heapq.heappop(heap)
            pending = self._pending.get(key)
            if pending is None or pending.rid != rid:
                continue
            held = pending.held
            if (
                held
                and held[0].arrival + self.settings.queue_timeout <= now
                and self._step(pending, LookupInput.HELD_EXPIRED)
            ):
                dropped += self._expire_held(pending, now)
            if pending.next_retry <= now:
                if pending.attempts > self.settings.retries or not self._map_resolvers:
                    if self._step(pending, LookupInput.GIVE_UP):
                        self.stats["resolve-timeouts"] += 1
                        self._complete(pending, now)
                        dropped += self._drop_held(pending, "resolve-timeout")
                        continue
                elif self._step(pending, LookupInput.RETRY):
                    self._renew_nonce(pending)
                    sends.append(self._send(pending, now))
                    self.stats["retransmits"] += 1
            self._schedule(pending)
        if len(heap) > 64 + 4 * len(self._pending):
            self._rebuild_heap()
        return sends, dropped

    # --- queries ------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` next has work (a retry or a held packet's timeout), or None."""
        heap = self._heap
        while heap:
            when, _, rid, key = heap[0]
            pending = self._pending.get(key)
            if pending is not None and pending.rid == rid and self._deadline(pending) == when:
                return when
            heapq.heappop(heap)
        return None

    def is_pending(self, iid: int, eid: IpAddress) -> bool:
        """Whether a lookup of ``(iid, eid)`` is outstanding."""
        return (iid, eid) in self._pending

    def phase(self, iid: int, eid: IpAddress) -> Lookup | None:
        """The :class:`Lookup` state of the outstanding lookup of ``(iid, eid)`` (None when
        there is none: a finished lookup is forgotten)."""
        pending = self._pending.get((iid, eid))
        return None if pending is None else pending.phase

    def pending(self) -> list[dict[str, object]]:
        """The outstanding lookups, for show commands (times on the caller's clock)."""
        return [
            {
                "iid": p.iid,
                "eid": str(p.eid),
                "source-eid": None if p.source_eid is None else str(p.source_eid),
                "nonce": f"0x{p.nonce:016x}",
                "attempts": p.attempts,
                "map-resolver": None if p.last_sent_to is None else str(p.last_sent_to),
                "started": p.started,
                "next-retry": p.next_retry,
                "held": len(p.held),
                "smr-invoked": p.smr_invoked,
            }
            for p in self._pending.values()
        ]

    # --- internals ----------------------------------------------------------------------------

    def _step(self, p: _Pending, kind: LookupInput) -> bool:
        """Consult :data:`RESOLVER_TABLE`: move ``p`` on ``kind`` and return True, or return
        False when the table refuses it (counted in ``drops``)."""
        to = RESOLVER_TABLE.step(p.phase, kind, self.drops)
        if to is None:
            return False
        p.phase = to
        return True

    @staticmethod
    def _reply_kind(p: _Pending, installs: list[MapCacheEntry]) -> LookupInput:
        """What ``installs`` (one Map-Reply's entries) are to lookup ``p``."""
        covering = [
            e
            for e in installs
            if e.iid == p.iid and e.prefix.version == p.eid.version and p.eid in e.prefix
        ]
        if not covering:
            return LookupInput.UNMAPPED
        best = max(covering, key=lambda e: e.prefix.prefixlen)
        return LookupInput.MAPPED if best.action == "encapsulate" else LookupInput.MAPPED_NEGATIVE

    def _log_smr(self, src: IpAddress, iid: int, eid: IpAddress, started: bool, now: float) -> None:
        """``smr received`` at INFO, within :data:`SMR_LOG_RATE` (the lines left out are counted
        in the next one's ``unlogged``)."""
        if not self._smr_log.take(now):
            self._smr_unlogged += 1
            return
        fields: dict[str, object] = {
            "from": src,
            "eid": f"[{iid}]{eid}",
            "lookup": "started" if started else "skipped",
        }
        if self._smr_unlogged:
            fields["unlogged"], self._smr_unlogged = self._smr_unlogged, 0
        log.info("smr received %s", pairs(fields))

    def _new_nonce(self) -> int | None:
        for _ in range(_NONCE_TRIES):
            nonce = self._rng() & _MASK64
            if nonce not in self._by_nonce:
                return nonce
        return None

    def _renew_nonce(self, p: _Pending) -> None:
        """A fresh nonce for ``p``'s next attempt; the earlier ones stay valid until it ends."""
        nonce = self._new_nonce()
        if nonce is None:
            self.stats["nonce-reused"] += 1
            return
        p.nonce = nonce
        self._by_nonce[nonce] = p

    def _inner_source(self, eid: IpAddress, source_eid: IpAddress | None) -> IpAddress:
        if source_eid is not None and source_eid.version == eid.version:
            return source_eid
        for rloc in self._itr_rlocs:
            if rloc.version == eid.version:
                return rloc
        return IPv4Address(0) if eid.version == 4 else IPv6Address(0)

    def _build(self, p: _Pending) -> bytes:
        source: Address = NO_ADDRESS
        if p.source_eid is not None:
            source = _host_prefix(p.iid, p.source_eid)
        request = MapRequest(
            nonce=p.nonce,
            records=(EidPrefix(_host_prefix(p.iid, p.eid), p.eid.max_prefixlen),),
            itr_rlocs=self._itr_rlocs,
            source_eid=source,
            pitr=self.pitr,
            smr_invoked=p.smr_invoked,
        )
        inner_src = self._inner_source(p.eid, p.source_eid)
        inner_ip: IPv4Header | IPv6Header
        if isinstance(p.eid, IPv4Address):
            assert isinstance(inner_src, IPv4Address)
            inner_ip = IPv4Header(inner_src, p.eid)
        else:
            assert isinstance(inner_src, IPv6Address)
            inner_ip = IPv6Header(inner_src, p.eid)
        ecm = EncapsulatedControl(inner_ip, self.local_port, LISP_CONTROL_PORT, request)
        return encode_ecm(ecm)

    def _send(self, p: _Pending, now: float) -> SendControl:
        dst = self._map_resolvers[(p.first_mr + p.attempts) % len(self._map_resolvers)]
        payload = self._build(p)
        p.attempts += 1
        p.next_retry = now + self.settings.retry_interval * 2 ** (p.attempts - 1)
        p.last_sent_to = dst
        p.nonces[p.nonce] = dst
        self.stats["requests-sent"] += 1
        return SendControl(dst, LISP_CONTROL_PORT, payload)

    def _deadline(self, p: _Pending) -> float:
        if p.held:
            return min(p.next_retry, p.held[0].arrival + self.settings.queue_timeout)
        return p.next_retry

    def _schedule(self, p: _Pending) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (self._deadline(p), self._seq, p.rid, (p.iid, p.eid)))

    def _rebuild_heap(self) -> None:
        self._heap = []
        for p in self._pending.values():
            self._schedule(p)

    def _complete(self, p: _Pending, now: float) -> None:
        """Forget a lookup (its held packets stay on ``p`` for the caller to release/drop)."""
        key = (p.iid, p.eid)
        if self._pending.get(key) is p:
            del self._pending[key]
        for nonce in p.nonces:
            if self._by_nonce.get(nonce) is p:
                del self._by_nonce[nonce]
        self._finished.pop(key, None)  # re-insert at the end: the dict stays in finishing order
        self._finished[key] = now

    def _prune_finished(self, now: float) -> None:
        limit = self.settings.min_request_interval
        finished = self._finished
        while finished:
            key = next(iter(finished))
            if now - finished[key] < limit:
                break
            del finished[key]

    def _drop_held(self, p: _Pending, reason: str) -> int:
        count = len(p.held)
        if count:
            self.drops[reason] += count
            self._held_total -= count
            p.held.clear()
        return count

    def _expire_held(self, p: _Pending, now: float) -> int:
        timeout = self.settings.queue_timeout
        count = 0
        while p.held and p.held[0].arrival + timeout <= now:
            p.held.popleft()
            count += 1
        if count:
            self.drops["queue-timeout"] += count
            self._held_total -= count
        return count

    @staticmethod
    def _covered(p: _Pending, installs: list[MapCacheEntry]) -> bool:
        return any(
            e.iid == p.iid and e.prefix.version == p.eid.version and p.eid in e.prefix
            for e in installs
        )

    def _record_entry(
        self, p: _Pending, record: EidRecord, now: float
    ) -> MapCacheEntry | str | None:
        """The entry for one record, ``"ttl-zero"``, or None (record refused and counted)."""
        try:
            iid, network = split_eid(record.eid, record.mask_len)
        except (ValueError, TypeError):
            network = None
            iid = -1
        if (
            network is None
            or iid != p.iid
            or network.version != p.eid.version
            or p.eid not in network
        ):
            self.drops["map-reply-prefix-mismatch"] += 1
            return None
        if record.ttl == 0:
            self.stats["ttl-zero-records"] += 1
            return "ttl-zero"
        ttl = min(record.ttl, self.settings.max_ttl_minutes) * 60
        rlocs: list[RlocEntry] = []
        for locator in record.locators:
            address = locator.address
            path: tuple[IpAddress, ...] = ()
            if isinstance(address, ElpAddress):
                path = tuple(hop.address for hop in address.hops)  # type: ignore[misc]
                if len(path) < 2 or not all(isinstance(a, IPv4Address | IPv6Address) for a in path):
                    self.drops["locator-unsupported"] += 1
                    continue
                address = path[0]
            if not isinstance(address, IPv4Address | IPv6Address):
                self.drops["locator-unsupported"] += 1
                continue
            if iid == 0 and any(
                a.version == network.version and a in network for a in path or (address,)
            ):
                self.drops["locator-in-eid-prefix"] += 1
                continue
            try:
                rlocs.append(
                    RlocEntry(
                        address, locator.priority, locator.weight, up=locator.reachable, elp=path
                    )
                )
            except (ValueError, TypeError):
                self.drops["locator-unsupported"] += 1
        action: CacheAction
        if rlocs:
            action = "encapsulate"
        elif record.locators:
            action = "drop"
        else:
            action = NEGATIVE_ACTIONS.get(record.action, "drop")
        try:
            return MapCacheEntry(
                iid, network, tuple(rlocs), action, ttl=ttl, created=now, source="map-reply"
            )
        except (ValueError, TypeError, EncodeError):
            self.drops["map-reply-bad-record"] += 1
            return None
