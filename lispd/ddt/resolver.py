"""The Map-Resolver as a DDT client (RFC 8111 section 7.3): walks the delegation tree for each
Map-Request an ITR sends it.

A walk starts at the longest referral cached for the EID (:mod:`lispd.ddt.cache`), else at the
configured roots, and sends the ITR's Map-Request in an ECM with the D bit to one member of the
referral set at a time (lowest priority first, members that timed out lately last):

- NODE-REFERRAL / MS-REFERRAL: cached for its TTL, and the walk goes on one level down;
- MS-ACK (from a Map-Server): done, the Map-Server forwarded the request to the ETR or answered
  the ITR itself; the registered prefix is cached as an MS-REFERRAL to that Map-Server set;
- MS-NOT-REGISTERED: the other Map-Servers of the set are asked (one may hold a registration
  this one lost); when none has it, a negative Map-Reply Send-Map-Request for the referral's
  prefix and TTL (the site may register soon: the ITR drops meanwhile and asks again);
- DELEGATION-HOLE: cached, and a negative Map-Reply Natively-Forward for the hole: no LISP site
  there (the ITR sends to its PETR);
- NOT-AUTHORITATIVE: a cached referral that led here is forgotten and the walk starts again
  from the roots, once; otherwise the next member of the set is asked;
- no answer within ``request_timeout``: the next member of the set.

Nonces.  The steps to DDT nodes carry a fresh CSPRNG nonce each (the referral must echo it);
the step to a Map-Server carries the ITR's own nonce, since the Map-Server forwards that very
request to the ETR, whose Map-Reply goes straight to the ITR.  A Map-Referral is accepted only
with the nonce of the step in flight, from the address that step went to, and with a record
holding the requested EID; anything else is counted and dropped without touching the walk.

Bounds.  At most ``max_pending`` walks at once (more Map-Requests are dropped), at most
``max_steps`` requests per walk, referral sets of at most :data:`MAX_REFERRAL_SET` usable
members; a referral less specific than the one being followed, or one already followed in this
walk, is a loop.  A walk that loops, runs out of steps or of members to ask (all said
not-authoritative) ends with a negative Map-Reply Send-Map-Request for the requested host prefix
and 1 minute: the ITR drops for that minute rather than leak the traffic natively.  A walk whose
every member timed out ends silently (the ITR asks again).  Requests are rate-limited per ITR
source address as the plain Map-Resolver's are.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import secrets
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address, ip_network

from lispd.config.model import DdtConfig
from lispd.control.mapresolver import (
    DEFAULT_BURST,
    DEFAULT_RATE,
    REQUEST_RATE_LIMITED,
    UNREGISTERED_TTL_MINUTES,
    negative_reply,
)
from lispd.control.mapserver import RefusalLog, reply_destination, request_eid
from lispd.control.outputs import SendControl
from lispd.control.responder import _Limiter
from lispd.ddt.cache import ReferralCache
from lispd.ddt.replies import ACTION_NAMES, IPAddress, IPNetwork
from lispd.logfmt import endpoint
from lispd.wire.address import split_eid
from lispd.wire.ecm import EncapsulatedControl, encode_ecm
from lispd.wire.errors import EncodeError
from lispd.wire.mapreferral import MapReferral, ReferralAction, ReferralRecord
from lispd.wire.maprequest import MapRequest
from lispd.wire.records import Action

log = logging.getLogger("lispd.ddt")

LISP_CONTROL_PORT = 4342
MAX_REFERRAL_SET = 32
"""Usable members of a received referral set; a larger set is refused."""
FAILED_MEMORY = 1024
"""Nodes remembered as lately timed out (tried last for :data:`FAILED_FOR` seconds)."""
FAILED_FOR = 60.0
TIMER_BATCH = 100
"""Timeouts handled per :meth:`DdtResolver.on_timer` call."""
GIVE_UP_TTL_MINUTES = 1

# drops
NOT_MAP_REQUEST = "ddt-ecm-not-map-request"
BAD_EID = "ddt-request-bad-eid"
NO_REPLY_PATH = "ddt-request-no-reply-path"
DUPLICATE = "ddt-request-duplicate"
PENDING_FULL = "ddt-pending-full"
UNKNOWN_NONCE = "referral-unknown-nonce"
WRONG_SOURCE = "referral-wrong-source"
EID_MISMATCH = "referral-eid-mismatch"
SET_EMPTY = "referral-set-empty"
SET_TOO_LARGE = "referral-set-too-large"
UNKNOWN_ACTION = "referral-unknown-action"
UNEXPECTED_ACK = "referral-unexpected-ms-ack"
NONCE_IN_USE = "ddt-nonce-in-use"
NO_SOCKET = "ddt-referral-no-socket-for-family"
ENCODE_FAILED = "ddt-request-encode-failed"
REPLY_FAILED = "ddt-negative-reply-failed"


@dataclass(slots=True, eq=False)
class Walk:
    """One resolution in progress."""

    ecm: EncapsulatedControl  # the ITR's, as received
    request: MapRequest
    iid: int
    address: IPAddress
    started: float
    kind: ReferralAction  # NODE_REFERRAL: asking DDT nodes; MS_REFERRAL: Map-Servers
    targets: tuple[IPAddress, ...]
    prefix_len: int  # of the referral being followed; -1 at the roots
    from_cache: tuple[int, IPNetwork] | None  # the cached referral the walk started from
    tried: set[IPAddress] = field(default_factory=set)
    seen: set[tuple[IPNetwork, ReferralAction]] = field(default_factory=set)
    target: IPAddress | None = None
    nonce: int | None = None
    steps: int = 0
    not_registered: tuple[IPNetwork, int] | None = None
    restarted: bool = False
    timeouts: int = 0


class DdtResolver:
    """Resolves ITRs' ECM'd Map-Requests by walking the DDT tree from ``roots``."""

    def __init__(
        self,
        roots: Sequence[IPAddress],
        settings: DdtConfig,
        families: frozenset[int] = frozenset({4, 6}),
        rng: Callable[[int], int] = secrets.randbits,
        rate: float = DEFAULT_RATE,
        burst: float = DEFAULT_BURST,
    ) -> None:
        """``families``: the address families this node has a control socket of."""
        self.roots = tuple(roots)
        self.families = families
        self._rng = rng
        self._limiter = _Limiter(rate, burst)
        self._refusal_log = RefusalLog(log)
        self.cache = ReferralCache(settings.referral_cache_entries)
        self.configure(settings)
        self._pending: dict[int, Walk] = {}  # by the nonce of the step in flight
        self._by_itr_nonce: dict[int, Walk] = {}
        # (deadline, seq, step nonce, step number): the steps to a set's Map-Servers share the
        # ITR's nonce, so the step number tells an overdue step from a later one.
        self._deadlines: list[tuple[float, int, int, int]] = []
        self._seq = itertools.count()
        self._failed: OrderedDict[IPAddress, float] = OrderedDict()
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.max_steps_seen = 0

    def configure(self, settings: DdtConfig) -> None:
        """Take new settings (a reload); walks in progress go on."""
        self.settings = settings
        self.request_timeout = settings.request_timeout
        self.max_steps = settings.max_steps
        self.max_pending = settings.max_pending
        self.cache.capacity = settings.referral_cache_entries

    def configure_from(self, other: DdtResolver) -> None:
        """Take the roots, families and settings of ``other`` (built from a new
        configuration); the referral cache and the walks in progress stay."""
        self.roots, self.families = other.roots, other.families
        self.configure(other.settings)

    def pending(self) -> int:
        """Walks in progress."""
        return len(self._by_itr_nonce)

    # --- from ITRs ----------------------------------------------------------------------------

    def _refuse(self, reason: str, now: float, **fields: object) -> None:
        self.drops[reason] += 1
        self._refusal_log.warn(reason, now, "ddt resolution refused", **fields)

    def on_ecm(
        self, ecm: EncapsulatedControl, now: float, src: IPAddress | None = None
    ) -> list[SendControl]:
        """An ITR's ECM'd Map-Request from ``src`` (its outer source, the rate limit's key)."""
        if src is not None and not self._limiter.allow(src, now):
            self.drops[REQUEST_RATE_LIMITED] += 1
            return []
        request = ecm.message
        who = endpoint(ecm.inner_ip.src, ecm.sport)
        if not isinstance(request, MapRequest):
            self._refuse(NOT_MAP_REQUEST, now, src=who)
            return []
        eid = request_eid(request)
        if eid is None:
            self._refuse(BAD_EID, now, src=who)
            return []
        if not 0 < ecm.sport <= 0xFFFF or reply_destination(request, ecm) is None:
            self._refuse(NO_REPLY_PATH, now, src=who)
            return []
        if request.nonce in self._by_itr_nonce:
            self.drops[DUPLICATE] += 1  # a retransmission: the walk is under way
            return []
        if len(self._by_itr_nonce) >= self.max_pending:
            self.drops[PENDING_FULL] += 1
            return []
        iid, address = eid
        self.stats["resolutions"] += 1
        cached = self.cache.lookup(iid, address, now)
        if cached is not None and cached[1].action == ReferralAction.DELEGATION_HOLE:
            self.stats["answered-from-cache"] += 1
            prefix, entry = cached
            remaining = max(1, int((entry.expires - now) // 60))
            return self._negative(ecm, request, iid, prefix, Action.NATIVELY_FORWARD, remaining)
        if cached is not None:
            prefix, entry = cached
            walk = Walk(
                ecm,
                request,
                iid,
                address,
                now,
                entry.action,
                entry.referrals,
                prefix.prefixlen,
                (iid, prefix),
            )
            self.stats["cache-hits"] += 1
        else:
            walk = Walk(
                ecm, request, iid, address, now, ReferralAction.NODE_REFERRAL, self.roots, -1, None
            )
        self._by_itr_nonce[request.nonce] = walk
        return self._next(walk, now)

    # --- steps --------------------------------------------------------------------------------

    def _choose(self, walk: Walk, now: float) -> IPAddress | None:
        """The next member to ask: untried, of a family we can send, lately failed ones last."""
        lately_failed = None
        for member in walk.targets:
            if member in walk.tried or member.version not in self.families:
                continue
            failed = self._failed.get(member)
            if failed is not None and now - failed < FAILED_FOR:
                lately_failed = lately_failed or member
                continue
            return member
        return lately_failed

    def _next(self, walk: Walk, now: float) -> list[SendControl]:
        """Send the walk's next request, or end it when there is nobody left to ask."""
        self._unlink(walk)
        if walk.steps >= self.max_steps:
            self.stats["gave-up-max-steps"] += 1
            return self._give_up(walk, now)
        target = self._choose(walk, now)
        if target is None:
            if walk.not_registered is not None:
                prefix, ttl = walk.not_registered
                self._finish(walk)
                self.stats["not-registered"] += 1
                return self._negative(
                    walk.ecm, walk.request, walk.iid, prefix, Action.SEND_MAP_REQUEST, max(1, ttl)
                )
            if walk.timeouts and walk.timeouts >= len(walk.tried):
                self.stats["gave-up-unreachable"] += 1
                self._finish(walk)
                return []
            self.stats["gave-up-exhausted"] += 1
            return self._give_up(walk, now)
        if walk.kind == ReferralAction.MS_REFERRAL:
            nonce = walk.request.nonce  # the ETR's Map-Reply must reach the ITR
            message = walk.request
        else:
            nonce = self._rng(64)
            message = replace(walk.request, nonce=nonce)
        if nonce in self._pending:
            self.drops[NONCE_IN_USE] += 1
            self._finish(walk)
            return []
        try:
            payload = encode_ecm(replace(walk.ecm, message=message, ddt=True, to_ms=False))
        except EncodeError:
            self.drops[ENCODE_FAILED] += 1
            self._finish(walk)
            return []
        walk.tried.add(target)
        walk.target = target
        walk.nonce = nonce
        walk.steps += 1
        self._pending[nonce] = walk
        heapq.heappush(
            self._deadlines, (now + self.request_timeout, next(self._seq), nonce, walk.steps)
        )
        self.stats["requests-sent"] += 1
        return [SendControl(target, LISP_CONTROL_PORT, payload)]

    def _unlink(self, walk: Walk) -> None:
        if walk.nonce is not None and self._pending.get(walk.nonce) is walk:
            del self._pending[walk.nonce]
        walk.nonce = None

    def _finish(self, walk: Walk) -> None:
        self._unlink(walk)
        if self._by_itr_nonce.get(walk.request.nonce) is walk:
            del self._by_itr_nonce[walk.request.nonce]
        self.stats["resolutions-finished"] += 1
        self.stats["steps"] += walk.steps
        self.max_steps_seen = max(self.max_steps_seen, walk.steps)

    def _give_up(self, walk: Walk, now: float) -> list[SendControl]:
        self._finish(walk)
        bits = 32 if walk.address.version == 4 else 128
        host = ip_network((walk.address, bits))
        self.stats["gave-up"] += 1
        self._refusal_log.warn(
            "ddt-gave-up",
            now,
            "ddt resolution gave up",
            eid=f"[{walk.iid}]{walk.address}",
            steps=walk.steps,
        )
        return self._negative(
            walk.ecm, walk.request, walk.iid, host, Action.SEND_MAP_REQUEST, GIVE_UP_TTL_MINUTES
        )

    def _negative(
        self,
        ecm: EncapsulatedControl,
        request: MapRequest,
        iid: int,
        prefix: IPNetwork,
        action: Action,
        ttl: int,
    ) -> list[SendControl]:
        reply = negative_reply(request, ecm, iid, prefix, action, ttl)
        if isinstance(reply, str):
            self.drops[REPLY_FAILED] += 1
            return []
        self.stats["negative"] += 1
        return [reply]

    # --- from the tree ------------------------------------------------------------------------

    def _record_for(self, walk: Walk, msg: MapReferral) -> tuple[ReferralRecord, IPNetwork] | None:
        for rec in msg.records:
            try:
                iid, net = split_eid(rec.eid, rec.mask_len)
            except ValueError:
                continue
            if (
                iid == walk.iid
                and net is not None
                and net.version == walk.address.version
                and walk.address in net
            ):
                return rec, net
        return None

    def on_map_referral(self, msg: MapReferral, src: IPAddress, now: float) -> list[SendControl]:
        """A Map-Referral from ``src``: the next step of the walk it answers."""
        walk = self._pending.get(msg.nonce)
        if walk is None:
            self.drops[UNKNOWN_NONCE] += 1
            return []
        if src != walk.target:
            self.drops[WRONG_SOURCE] += 1
            return []
        found = self._record_for(walk, msg)
        if found is None:
            self.drops[EID_MISMATCH] += 1
            return self._next(walk, now)
        rec, net = found
        self.stats["referrals-received"] += 1
        self.stats["received-" + ACTION_NAMES[rec.action]] += 1
        if rec.signatures:
            self.stats["signed-not-verified"] += 1  # kept, not checked: trust is nonce+source
        action = rec.action
        if action in (ReferralAction.NODE_REFERRAL, ReferralAction.MS_REFERRAL):
            return self._descend(walk, rec, net, src, now)
        if action == ReferralAction.MS_ACK:
            if walk.kind != ReferralAction.MS_REFERRAL:
                self.drops[UNEXPECTED_ACK] += 1
                return self._next(walk, now)
            if net.prefixlen >= walk.prefix_len:
                self.cache.put(
                    walk.iid, net, ReferralAction.MS_REFERRAL, walk.targets, rec.ttl, src, now
                )
            self.stats["answered"] += 1
            self._finish(walk)
            return []
        if action == ReferralAction.MS_NOT_REGISTERED:
            walk.not_registered = (net, min(rec.ttl, UNREGISTERED_TTL_MINUTES))
            return self._next(walk, now)
        if action == ReferralAction.DELEGATION_HOLE:
            ttl = max(1, rec.ttl)
            self.cache.put(walk.iid, net, ReferralAction.DELEGATION_HOLE, (), ttl, src, now)
            self._finish(walk)
            self.stats["delegation-holes"] += 1
            return self._negative(
                walk.ecm, walk.request, walk.iid, net, Action.NATIVELY_FORWARD, ttl
            )
        if action == ReferralAction.NOT_AUTHORITATIVE:
            if walk.from_cache is not None and not walk.restarted:
                self.cache.remove(*walk.from_cache)
                walk.restarted = True
                walk.from_cache = None
                walk.kind = ReferralAction.NODE_REFERRAL
                walk.targets, walk.prefix_len = self.roots, -1
                walk.tried, walk.seen = set(), set()
                self.stats["restarted-from-roots"] += 1
            return self._next(walk, now)
        self.drops[UNKNOWN_ACTION] += 1
        return self._next(walk, now)

    def _descend(
        self, walk: Walk, rec: ReferralRecord, net: IPNetwork, src: IPAddress, now: float
    ) -> list[SendControl]:
        usable = sorted(
            (loc for loc in rec.referrals if loc.priority != 255),
            key=lambda loc: loc.priority,
        )
        members = tuple(
            dict.fromkeys(
                loc.address for loc in usable if isinstance(loc.address, IPv4Address | IPv6Address)
            )
        )
        if not members:
            self.drops[SET_EMPTY] += 1
            return self._next(walk, now)
        if len(members) > MAX_REFERRAL_SET:
            self.drops[SET_TOO_LARGE] += 1
            return self._next(walk, now)
        key = (net, rec.action)
        if net.prefixlen < walk.prefix_len or key in walk.seen:
            self.stats["gave-up-loop"] += 1
            return self._give_up(walk, now)
        walk.seen.add(key)
        self.cache.put(walk.iid, net, rec.action, members, rec.ttl, src, now)
        walk.kind, walk.targets, walk.prefix_len = rec.action, members, net.prefixlen
        walk.tried, walk.not_registered, walk.from_cache = set(), None, None
        walk.timeouts = 0
        return self._next(walk, now)

    # --- time ---------------------------------------------------------------------------------

    def on_timer(self, now: float) -> list[SendControl]:
        """Steps whose answer is overdue move to the next member; expired referrals go."""
        sends: list[SendControl] = []
        heap = self._deadlines
        handled = 0
        while heap and heap[0][0] <= now and handled < TIMER_BATCH:
            _deadline, _seq, nonce, step = heapq.heappop(heap)
            walk = self._pending.get(nonce)
            if walk is None or walk.steps != step or walk.target is None:
                continue  # answered since
            handled += 1
            self.stats["timeouts"] += 1
            walk.timeouts += 1
            self._failed.pop(walk.target, None)
            self._failed[walk.target] = now
            while len(self._failed) > FAILED_MEMORY:
                self._failed.popitem(last=False)
            sends += self._next(walk, now)
        self.cache.expire(now)
        return sends

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` next has work."""
        heap = self._deadlines
        while heap and self._is_stale(heap[0]):
            heapq.heappop(heap)
        times = [heap[0][0]] if heap else []
        cache_deadline = self.cache.next_deadline()
        if cache_deadline is not None:
            times.append(cache_deadline)
        return min(times, default=None)

    def _is_stale(self, item: tuple[float, int, int, int]) -> bool:
        walk = self._pending.get(item[2])
        return walk is None or walk.steps != item[3]

    def __repr__(self) -> str:
        return (
            f"<DdtResolver roots={','.join(map(str, self.roots))} pending={self.pending()} "
            f"referrals={len(self.cache)}>"
        )
