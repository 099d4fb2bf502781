"""The DDT Map-Resolver's referral cache: what the tree told it, each for its TTL.

Keyed by (instance-id, EID-prefix) with longest-prefix lookup (:class:`ScopedTables`: at most
33 or 129 probes).  Kinds of entries:

- NODE-REFERRAL / MS-REFERRAL: ask these DDT nodes / Map-Servers about EIDs inside the prefix
  (an MS-ACK is kept as an MS-REFERRAL for the registered prefix: the next request for that
  site goes straight to its Map-Servers);
- DELEGATION-HOLE: no LISP site there; answered negatively from the cache.

Bounded: at most ``capacity`` entries; a new prefix beyond that is not kept (counted
``referral-cache-full``: the resolution itself goes on), a known one is refreshed.  Expired
entries are never returned and are removed at most :data:`EXPIRE_BATCH` per :meth:`expire`
call (a timer turn), through a heap of expiry times holding one item per entry.  Referral sets
and the addresses referrals were learned from are interned: the thousands of site prefixes
under one pair of Map-Servers share one tuple.  The tables are the map-cache's ``pure``
backend (dicts per prefix length, no patricia tree beside them).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from lispd.ddt.replies import ACTION_NAMES, IPAddress, IPNetwork
from lispd.mapcache.cache import MAP_CACHE_BACKEND
from lispd.mapcache.scoped import ScopedTables
from lispd.wire.mapreferral import ReferralAction

EXPIRE_BATCH = 100
"""Expired entries removed per :meth:`ReferralCache.expire` call."""


@dataclass(frozen=True, slots=True)
class CachedReferral:
    """One referral: for EIDs in its prefix, ask ``referrals`` (in order) next."""

    action: ReferralAction
    referrals: tuple[IPAddress, ...]
    expires: float
    learned_from: IPAddress
    ttl: int  # minutes, as received (capped)
    seq: int  # of the entry's one item in the expiry heap (kept across refreshes)

    def view(self, iid: int, prefix: IPNetwork, now: float) -> dict[str, object]:
        """The entry as ``lispctl show referral-cache`` prints it."""
        return {
            "eid-prefix": f"[{iid}]{prefix}",
            "instance-id": iid,
            "action": ACTION_NAMES[self.action],
            "referrals": [str(a) for a in self.referrals],
            "ttl": self.ttl,
            "expires-in": round(max(0.0, self.expires - now), 1),
            "learned-from": str(self.learned_from),
        }


class ReferralCache:
    """Referrals by (instance-id, EID-prefix), bounded to ``capacity`` entries."""

    def __init__(self, capacity: int) -> None:
        """Keep at most ``capacity`` referrals."""
        self.capacity = capacity
        self._tables: ScopedTables[CachedReferral] = ScopedTables(backend=MAP_CACHE_BACKEND)
        # One heap item per entry: a refresh keeps the entry's ``seq`` and pushes nothing; when
        # the item comes up before the refreshed expiry it is pushed again, and an item whose
        # seq is not its entry's (removed, replaced) is dropped.
        self._heap: list[tuple[float, int, int, IPNetwork]] = []
        self._seq = itertools.count()
        self._sets: dict[tuple[IPAddress, ...], tuple[IPAddress, ...]] = {}
        self._sources: dict[IPAddress, IPAddress] = {}
        self.full = 0  # referrals not kept because the cache was full

    def __len__(self) -> int:
        return len(self._tables)

    def put(
        self,
        iid: int,
        prefix: IPNetwork,
        action: ReferralAction,
        referrals: tuple[IPAddress, ...],
        ttl_minutes: int,
        learned_from: IPAddress,
        now: float,
    ) -> bool:
        """Keep (or refresh) a referral for ``ttl_minutes``; False when the cache is full."""
        if ttl_minutes <= 0:
            return False
        old = self._tables.exact(iid, prefix)
        if old is None and len(self._tables) >= self.capacity:
            self.full += 1
            return False
        if len(self._sets) > 4 * self.capacity:  # sets of entries long gone
            self._sets.clear()
        if len(self._sources) > 4 * self.capacity:
            self._sources.clear()
        interned = self._sets.setdefault(referrals, referrals)
        source = self._sources.setdefault(learned_from, learned_from)
        expires = now + ttl_minutes * 60.0
        seq = next(self._seq) if old is None else old.seq
        entry = CachedReferral(action, interned, expires, source, ttl_minutes, seq)
        self._tables.put(iid, prefix, entry)
        if old is None:
            heapq.heappush(self._heap, (expires, seq, iid, prefix))
        return True

    def lookup(
        self, iid: int, address: IPAddress, now: float
    ) -> tuple[IPNetwork, CachedReferral] | None:
        """The live referral with the longest prefix holding ``address`` (an expired best match
        is removed and the next shorter one tried)."""
        for _ in range(130):
            hit = self._tables.lookup(iid, address)
            if hit is None or hit[1].expires > now:
                return hit
            self._tables.delete(iid, hit[0])
        return None  # pragma: no cover - at most 129 prefix lengths hold the address

    def remove(self, iid: int, prefix: IPNetwork) -> bool:
        """Forget the referral of exactly ``prefix`` (a node said it is not authoritative)."""
        if self._tables.exact(iid, prefix) is None:
            return False
        self._tables.delete(iid, prefix)
        return True

    def clear(self, iid: int | None = None) -> int:
        """Forget every referral (of ``iid``); returns how many."""
        before = len(self._tables)
        self._tables.clear(iid)
        if iid is None:
            self._heap.clear()
            self._sets.clear()
            self._sources.clear()
        else:  # the instance's expiry items go too (an operator's command: once over the heap)
            self._heap = [item for item in self._heap if item[2] != iid]
            heapq.heapify(self._heap)
        return before - len(self._tables)

    def expire(self, now: float, limit: int = EXPIRE_BATCH) -> int:
        """Remove up to ``limit`` referrals whose TTL ended by ``now``; returns how many."""
        removed = 0
        heap = self._heap
        while heap and heap[0][0] <= now and removed < limit:
            _when, seq, iid, prefix = heapq.heappop(heap)
            entry = self._tables.exact(iid, prefix)
            if entry is None or entry.seq != seq:
                continue  # removed or replaced since: that entry has its own item
            if entry.expires > now:  # refreshed since: queue its new expiry
                heapq.heappush(heap, (entry.expires, seq, iid, prefix))
                continue
            self._tables.delete(iid, prefix)
            removed += 1
        return removed

    def next_deadline(self) -> float | None:
        """The earliest expiry still to process, or None."""
        return self._heap[0][0] if self._heap else None

    def items(self) -> Iterator[tuple[int, IPNetwork, CachedReferral]]:
        """``(iid, prefix, referral)`` in (iid, family, prefix) order."""
        return self._tables.items()

    def tables(self) -> ScopedTables[CachedReferral]:
        """The underlying tables (for paged listings)."""
        return self._tables
