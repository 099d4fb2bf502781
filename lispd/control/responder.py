"""ETR side of resolution: authoritative Map-Replies for the local database, and SMRs.

* :class:`MapReplier` answers Map-Requests for EIDs in the local database (sent to it directly,
  or forwarded by a Map-Server inside an ECM) with authoritative Map-Replies to the requester's
  ITR-RLOC, rate-limited per requester so the ETR cannot be used as an amplifier.  An
  RLOC-probe's answer sets the probed-locator bit (``p``) on the one locator that is the
  address the probe was sent to (RFC 9301 section 5.4), when the caller knows that address.
* :class:`SmrSender` remembers which ITRs recently sent traffic to this ETR and, when the local
  mappings change, sends them Solicit-Map-Requests so they re-resolve (RFC 9301 section 6.1).
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Final

from lispd.config.model import RegistrationConfig
from lispd.control.messagelog import eid_list, truncated
from lispd.control.outputs import SendControl
from lispd.logfmt import kv
from lispd.mapcache import DatabaseEntry, LocalDatabase
from lispd.ratelimit import TokenBucket
from lispd.wire.address import ElpAddress, ElpHop, InstanceIdAddress, eid_prefix, split_eid
from lispd.wire.data import LISP_CONTROL_PORT
from lispd.wire.mapreply import MapReply, encode_map_reply
from lispd.wire.maprequest import MapRequest, encode_map_request
from lispd.wire.records import EidPrefix, EidRecord, Locator

log = logging.getLogger("lispd.control.responder")

IPAddress = IPv4Address | IPv6Address

MAX_TRACKED = 4096  # requesters / ITRs remembered for rate limits and SMRs
MAX_LOGGED_ITRS = 8  # ITRs named in an SMR log line (then "+N")
_REGISTRATION: Final = RegistrationConfig()
"""The defaults of ``[registration]``: ``record_ttl`` is :class:`MapReplier`'s."""


def database_records(
    entries: Iterable[DatabaseEntry], local_rlocs: Sequence[IPAddress], ttl: int
) -> list[EidRecord]:
    """Local database entries as authoritative EID-records (our own RLOCs flagged local)."""
    records = []
    for entry in entries:
        eid, mask_len = eid_prefix(entry.iid, entry.prefix)
        locators = tuple(
            Locator(
                ElpAddress(tuple(ElpHop(hop) for hop in r.elp)) if r.elp else r.address,
                r.priority,
                r.weight,
                local=(r.elp[-1] if r.elp else r.address) in local_rlocs,
                reachable=r.up,
            )
            for r in entry.rlocs
        )
        records.append(EidRecord(eid, mask_len, locators, ttl=ttl, authoritative=True))
    return records


def _locator_end(address: object) -> object:
    """The address a locator ends at: itself, or an explicit locator path's last hop."""
    if isinstance(address, ElpAddress) and address.hops:
        return address.hops[-1].address
    return address


def mark_probed(record: EidRecord, probed: IPAddress) -> EidRecord:
    """``record`` with the probed-locator bit set on the locators ending at ``probed`` and
    cleared on the others (RFC 9301 section 5.4: the bit names the locator the RLOC-probe was
    sent to, which may differ from the Map-Reply's source)."""
    locators = tuple(
        replace(loc, probed=_locator_end(loc.address) == probed) for loc in record.locators
    )
    return replace(record, locators=locators)


def pick_itr_rloc(request: MapRequest, families: frozenset[int]) -> IPAddress | None:
    """The ITR-RLOC to answer to: the first one of a family we can send from."""
    for rloc in request.itr_rlocs:
        if isinstance(rloc, IPv4Address | IPv6Address) and rloc.version in families:
            return rloc
    return None


class _Limiter:
    """Token buckets per source address, the least recently used forgotten first."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.buckets: OrderedDict[IPAddress, TokenBucket] = OrderedDict()

    def allow(self, source: IPAddress, now: float) -> bool:
        bucket = self.buckets.pop(source, None) or TokenBucket(self.rate, self.burst)
        self.buckets[source] = bucket
        while len(self.buckets) > MAX_TRACKED:
            self.buckets.popitem(last=False)
        return bucket.take(now)


class MapReplier:
    """Answers Map-Requests for the local database."""

    def __init__(
        self,
        database: LocalDatabase,
        local_rlocs: Sequence[IPAddress],
        record_ttl: int = _REGISTRATION.record_ttl,
        rate: float = 10.0,
        burst: float = 20.0,
        answer_probes: bool = False,
    ) -> None:
        self.database = database
        self.local_rlocs = tuple(local_rlocs)
        self.families = frozenset(a.version for a in local_rlocs)
        self.record_ttl = record_ttl
        self.limiter = _Limiter(rate, burst)
        # A PETR (or RTR) has no database for what it is probed about: it still answers RLOC
        # probes so that ITRs learn it is alive, naming its own RLOCs.
        self.answer_probes = answer_probes
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()

    def _record_for(self, wanted: EidPrefix) -> EidRecord | None:
        iid, network = split_eid(wanted.address, wanted.mask_len)
        if network is None:
            return None
        hit = self.database.lookup(iid, network.network_address)
        if hit is None or network.prefixlen < hit.prefix.prefixlen:
            return None  # not ours, or asking for more than we hold
        return database_records([hit], self.local_rlocs, self.record_ttl)[0]

    def _probe_record(self, wanted: EidPrefix) -> EidRecord:
        locators = tuple(Locator(a, 1, 100, local=True, reachable=True) for a in self.local_rlocs)
        return EidRecord(wanted.address, wanted.mask_len, locators, ttl=self.record_ttl)

    def on_map_request(
        self,
        request: MapRequest,
        reply_port: int,
        src: IPAddress,
        now: float,
        ttl: int | None = None,
        dst: IPAddress | None = None,
    ) -> list[SendControl]:
        """Answer ``request`` (its reply goes to an ITR-RLOC at ``reply_port``: the inner UDP
        source port of an ECM, or the source port of a plain request).  ``ttl`` is the IP TTL
        the request arrived with: a probe's answer reports it, so the prober can count the
        forward hops.  ``dst`` is the address the request was sent to, when known: a probe's
        answer flags the locator at that address as the probed one (no locator when unknown)."""
        if request.smr:
            self.drops["request-smr-at-etr"] += 1  # handled by the ITR side, not here
            return []
        # The limit is per destination of the reply (the ITR-RLOC), not per source: a
        # Map-Server forwards every ITR's request from its one address, and what needs a bound
        # is how much one address can be sent, whoever asks.
        reply_to = pick_itr_rloc(request, self.families)
        if reply_to is None:
            self.drops["request-no-usable-itr-rloc"] += 1
            return []
        if not self.limiter.allow(reply_to, now):
            self.drops["request-rate-limited"] += 1
            return []
        records = [r for r in map(self._record_for, request.records) if r is not None]
        if not records and request.probe and self.answer_probes:
            records = [self._probe_record(r) for r in request.records]
        if not records:
            self.drops["request-not-our-eid"] += 1
            return []
        if request.probe and dst is not None:
            records = [mark_probed(r, dst) for r in records]
        dst = reply_to
        reported = ttl if request.probe and ttl is not None and 0 < ttl < 256 else 0
        reply = MapReply(
            nonce=request.nonce,
            records=tuple(records),
            probe=request.probe,
            reported_ttl=reported,
        )
        self.stats["map-replies-sent"] += 1
        return [SendControl(dst, reply_port, encode_map_reply(reply))]


@dataclass
class _Peer:
    last_seen: float
    remote_eid: bytes  # one inner source EID seen from that ITR (the SMR's record)
    iid: int


@dataclass
class _Solicitation:
    messages: list[bytes]  # the SMRs (whole control messages) to repeat
    attempts: int
    next_send: float


class SmrSender:
    """Remembers the ITRs that sent us traffic and solicits them when our mappings change.

    An ITR may not act on an SMR at once (its own rate limits), so solicitations are repeated
    every ``retry_interval`` seconds, at most ``attempts`` times, until a Map-Request with the
    SMR-invoked bit arrives from that ITR (RFC 9301 section 6.1).

    Logged (logger ``lispd.control.responder``): ``smr sent`` at INFO, one line per
    solicitation round (the ITRs and the changed EID-prefixes), ``smr unanswered`` at INFO for
    the ITRs given up on, ``smr answered`` at DEBUG per ITR that reacted; repeats are not logged.
    """

    def __init__(
        self,
        local_rlocs: Sequence[IPAddress],
        rng: Callable[[], int],
        recent: float = 300.0,
        attempts: int = 5,
        retry_interval: float = 1.0,
    ) -> None:
        self.local_rlocs = tuple(local_rlocs)
        self.rng = rng
        self.recent = recent
        self.attempts = attempts
        self.retry_interval = retry_interval
        self.peers: OrderedDict[IPAddress, _Peer] = OrderedDict()
        self.pending: dict[IPAddress, _Solicitation] = {}
        self.stats: Counter[str] = Counter()

    def saw_traffic(self, itr_rloc: str, inner_src: bytes, iid: int, now: float) -> None:
        """Note that ``itr_rloc`` encapsulated a packet from ``inner_src`` to us."""
        key = ip_address(itr_rloc)
        peer = self.peers.pop(key, None)
        if peer is None:
            peer = _Peer(now, inner_src, iid)
        peer.last_seen, peer.remote_eid, peer.iid = now, inner_src, iid
        self.peers[key] = peer
        while len(self.peers) > MAX_TRACKED:
            self.peers.popitem(last=False)

    def solicit(self, changed: Sequence[EidRecord], now: float) -> list[SendControl]:
        """SMRs to every recent ITR, one per changed local EID-prefix (then repeated by
        :meth:`on_timer` until the ITR asks again)."""
        out = []
        for rloc, peer in list(self.peers.items()):
            if now - peer.last_seen > self.recent:
                continue
            messages = self._smrs(peer, changed)
            if not messages:
                continue
            self.pending[rloc] = _Solicitation(messages, 1, now + self.retry_interval)
            out += [SendControl(rloc, LISP_CONTROL_PORT, m) for m in messages]
            self.stats["smr-sent"] += len(messages)
        if out:
            itrs = list(dict.fromkeys(send.dst for send in out))
            log.info(
                "smr sent %s",
                kv(
                    itrs=truncated(itrs, MAX_LOGGED_ITRS),
                    eids=eid_list([(r.eid, r.mask_len) for r in changed]),
                    messages=len(out),
                ),
            )
        return out

    def saw_invoked(self, itr_rlocs: Iterable[object]) -> None:
        """An SMR-invoked Map-Request arrived listing ``itr_rlocs``: that ITR has reacted."""
        for rloc in itr_rlocs:
            if self.pending.pop(rloc, None) is not None:  # type: ignore[call-overload]
                self.stats["smr-answered"] += 1
                log.debug("smr answered %s", kv(itr=rloc))

    def on_timer(self, now: float) -> list[SendControl]:
        """Repeat the solicitations that are due; give up after ``attempts``."""
        out = []
        gave_up: list[IPAddress] = []
        for rloc, sol in list(self.pending.items()):
            if sol.next_send > now:
                continue
            if sol.attempts >= self.attempts:
                del self.pending[rloc]
                self.stats["smr-unanswered"] += 1
                gave_up.append(rloc)
                continue
            sol.attempts += 1
            sol.next_send = now + self.retry_interval
            out += [SendControl(rloc, LISP_CONTROL_PORT, m) for m in sol.messages]
            self.stats["smr-sent"] += len(sol.messages)
        if gave_up:
            log.info(
                "smr unanswered %s",
                kv(
                    itrs=truncated(gave_up, MAX_LOGGED_ITRS),
                    count=len(gave_up),
                    attempts=self.attempts,
                ),
            )
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` has something to do."""
        return min((s.next_send for s in self.pending.values()), default=None)

    def _smrs(self, peer: _Peer, changed: Sequence[EidRecord]) -> list[bytes]:
        remote = ip_address(peer.remote_eid)
        remote_eid: InstanceIdAddress | IPAddress = remote
        if peer.iid:
            remote_eid = InstanceIdAddress(peer.iid, remote)
        out = []
        for record in changed:
            if not isinstance(record.eid, InstanceIdAddress | IPv4Address | IPv6Address):
                continue
            smr = MapRequest(
                nonce=self.rng(),
                records=(EidPrefix(remote_eid, remote.max_prefixlen),),
                itr_rlocs=self.local_rlocs,
                source_eid=record.eid,
                smr=True,
            )
            out.append(encode_map_request(smr))
        return out
