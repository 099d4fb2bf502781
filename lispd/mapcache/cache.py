"""The map-cache: EID-prefix -> :class:`MapCacheEntry` per instance-ID, with TTL expiry.

Owned by the control plane, which adds entries from Map-Replies (and configuration) and calls
:meth:`MapCache.expire` from its timer.  :attr:`MapCache.generation` grows on every change so a
per-flow cache in front of the longest-prefix match can tell when it is stale.

Besides the prefix tables it keeps an index from RLOC address to the entries using it
(:meth:`MapCache.using`), updated on every install and removal, so that what changes for one
RLOC (its reachability, its NAT binding at an RTR) costs the entries of that RLOC, not a walk
over the whole map-cache; and a count of entries per instance-ID, family and source
(:meth:`MapCache.census`, for the metrics).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from itertools import count

from lispd.mapcache.entries import MapCacheEntry
from lispd.mapcache.prefixes import Address, AddressLike, Network, PrefixLike, to_network
from lispd.mapcache.scoped import ScopedTables

# (expires, insertion sequence, iid, prefix): an item is live while the entry stored for its
# (iid, prefix) expires at its time, so an entry replaced by one expiring at the same time (an
# RLOC marked up or down) keeps its item: no new item, no stale one holding the old entry.
_HeapItem = tuple[float, int, int, Network]
# Stale heap items one expire() / next_expiry() call pops at most per removal it may make: a
# burst of stale items at the head (entries refreshed since) costs several calls, never one
# long one.
STALE_PER_REMOVAL = 4
# RLOC address -> the entries with an RLOC at that address, by id() (an int key: hashing an
# ipaddress network costs microseconds, and the index never needs the prefix).
_RlocIndex = dict[Address, dict[int, MapCacheEntry]]


class MapCache:
    """Map-cache entries keyed by (iid, EID-prefix), looked up by longest-prefix match.

    Time is never read here: expiry uses the ``now`` the caller passes.
    """

    __slots__ = ("_by_rloc", "_census", "_generation", "_heap", "_seq", "_tables", "listener")

    def __init__(self, *, backend: str | None = None) -> None:
        """Create an empty map-cache (``backend``: see :class:`~lispd.mapcache.PrefixTable`)."""
        self._tables: ScopedTables[MapCacheEntry] = ScopedTables(backend=backend)
        self._generation = 0
        # Expiry queue with lazy deletion: an item whose entry is no longer the one stored for
        # its (iid, prefix) is skipped when popped, and the heap is rebuilt when mostly stale.
        self._heap: list[_HeapItem] = []
        self._seq = count()
        self._by_rloc: _RlocIndex = {}
        self._census: Counter[tuple[int, int, str]] = Counter()  # see census()
        # Told of every entry installed (the entry) or removed (None), by (iid, prefix): how
        # a compiled fast path keeps its own copy of the table current.
        self.listener: Callable[[int, Network, MapCacheEntry | None], None] | None = None

    @property
    def generation(self) -> int:
        """Grows by at least one on every add, remove, clear and expiry that removed entries."""
        return self._generation

    def _live(self, item: _HeapItem) -> MapCacheEntry | None:
        """The entry ``item`` is due for (stored, expiring at its time), or None: stale."""
        entry = self._tables.exact(item[2], item[3])
        return entry if entry is not None and entry.expires == item[0] else None

    def add(self, entry: MapCacheEntry) -> MapCacheEntry | None:
        """Install ``entry``, replacing the entry for the same (iid, prefix); return that one."""
        old = self._tables.exact(entry.iid, entry.prefix)
        self._tables.insert(entry.iid, entry.prefix, entry)
        self._generation += 1
        if old is not None:
            self._unindex(old)
        self._index(entry)
        if self.listener is not None:
            self.listener(entry.iid, entry.prefix, entry)
        if entry.expires is not None and (old is None or old.expires != entry.expires):
            heapq.heappush(self._heap, (entry.expires, next(self._seq), entry.iid, entry.prefix))
            if len(self._heap) > 2 * len(self._tables) + 64:
                self._compact()
        return old

    def _compact(self) -> None:
        self._heap = [item for item in self._heap if self._live(item) is not None]
        heapq.heapify(self._heap)

    def remove(self, iid: int, prefix: PrefixLike) -> MapCacheEntry:
        """Remove exactly ``prefix`` of ``iid`` and return its entry; KeyError when absent."""
        entry = self._tables.delete(iid, prefix)
        self._generation += 1
        self._removed(entry)
        return entry

    def _removed(self, entry: MapCacheEntry) -> None:
        self._unindex(entry)
        if self.listener is not None:
            self.listener(entry.iid, entry.prefix, None)

    def _index(self, entry: MapCacheEntry) -> None:
        self._census[entry.iid, entry.prefix.version, entry.source] += 1
        for rloc in entry.rlocs:
            users = self._by_rloc.get(rloc.address)
            if users is None:
                users = self._by_rloc[rloc.address] = {}
            users[id(entry)] = entry  # the dict holds it: its id is its own meanwhile

    def _unindex(self, entry: MapCacheEntry) -> None:
        key = (entry.iid, entry.prefix.version, entry.source)
        self._census[key] -= 1
        if not self._census[key]:
            del self._census[key]
        for rloc in entry.rlocs:
            users = self._by_rloc.get(rloc.address)
            if users is None:
                continue  # an address listed twice in the entry: gone already
            users.pop(id(entry), None)
            if not users:
                del self._by_rloc[rloc.address]

    def using(self, address: Address) -> list[MapCacheEntry]:
        """The entries with an RLOC at ``address`` (for an explicit locator path: its first
        hop), in no particular order; costs their number, not the map-cache's size."""
        users = self._by_rloc.get(address)
        return [] if users is None else list(users.values())

    def still_using(
        self, address: Address, entries: Iterable[MapCacheEntry]
    ) -> Iterator[MapCacheEntry]:
        """Those of ``entries`` (from :meth:`using`, some time ago) that are still installed
        and still use ``address``: not replaced nor removed since.  One look-up each."""
        users = self._by_rloc.get(address)
        if users is None:
            return
        for entry in entries:
            if users.get(id(entry)) is entry:
                yield entry

    def uses(self, address: Address) -> bool:
        """Whether any entry has an RLOC at ``address`` (see :meth:`using`)."""
        return address in self._by_rloc

    def census(self) -> dict[tuple[int, int, str], int]:
        """Entries per (instance-ID, IP version, source), kept up to date by every install
        and removal (the metrics' ``lispd_map_cache_entries``, without a pass over the
        table)."""
        return dict(self._census)

    def rloc_addresses(self) -> list[Address]:
        """Every RLOC address some entry uses (the first hop of a path), in no order."""
        return list(self._by_rloc)

    def get(self, iid: int, prefix: PrefixLike) -> MapCacheEntry | None:
        """The entry for exactly ``prefix`` in ``iid`` (no longest match), or None."""
        return self._tables.exact(iid, prefix)

    def lookup(
        self, iid: int, address: AddressLike, now: float | None = None
    ) -> MapCacheEntry | None:
        """The entry of the longest prefix of ``iid`` containing ``address``, or None.

        ``address`` is 4/16 packed bytes, an address object or text.  With ``now``, an expired
        best match is not returned and the result is None, not a less specific entry: the more
        specific mapping is what must be refreshed, and a covering one may point elsewhere.
        """
        hit = self._tables.lookup(iid, address)
        if hit is None:
            return None
        entry = hit[1]
        if now is not None and entry.expires is not None and now >= entry.expires:
            return None
        return entry

    def expire(self, now: float, limit: int | None = None) -> list[MapCacheEntry]:
        """Remove the entries whose expiry time is at or before ``now``; return them.

        ``limit``: remove at most that many (and look at a bounded number of stale expiry
        items, :data:`STALE_PER_REMOVAL` per removal), leaving the rest for later calls, so that
        thousands expiring at once cost several short calls, not one long one; while some
        remain, :meth:`next_expiry` is at or before ``now``.  None: every one, in one call.
        """
        heap = self._heap
        removed: list[MapCacheEntry] = []
        if limit is not None and limit < 1:
            return removed
        stale = 0
        stale_limit = None if limit is None else STALE_PER_REMOVAL * limit
        while heap and heap[0][0] <= now:
            entry = self._live(heap[0])
            heapq.heappop(heap)
            if entry is None:
                stale += 1
                if stale_limit is not None and stale >= stale_limit:
                    break
                continue
            self._tables.delete(entry.iid, entry.prefix)
            self._removed(entry)
            removed.append(entry)
            if limit is not None and len(removed) >= limit:
                break
        if removed:
            self._generation += 1
        return removed

    def evict_soonest(self) -> MapCacheEntry | None:
        """Make room in a full map-cache: remove and return the learned entry (one that is not
        ``static``) that would expire first, or None when there is none."""
        heap = self._heap
        skipped: list[_HeapItem] = []
        victim = None
        while heap:
            item = heapq.heappop(heap)
            entry = self._live(item)
            if entry is None:
                continue
            if entry.source == "static":
                skipped.append(item)
                continue
            victim = entry
            self._tables.delete(victim.iid, victim.prefix)
            self._removed(victim)
            self._generation += 1
            break
        for item in skipped:
            heapq.heappush(heap, item)
        return victim

    def next_expiry(self) -> float | None:
        """Earliest expiry time among the stored entries (the timer to arm), or None.

        Drops at most a bounded number of stale expiry items on the way (entries refreshed or
        removed since); past that it answers the time of the first stale one left, which is
        earlier than the true answer: the caller wakes early and :meth:`expire` moves on."""
        heap = self._heap
        for _ in range(STALE_PER_REMOVAL * 256):
            if not heap or self._live(heap[0]) is not None:
                break
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def entries(self) -> list[MapCacheEntry]:
        """Every entry in (iid, family, prefix) order (a snapshot)."""
        return [entry for _iid, _net, entry in self._tables.items()]

    def __iter__(self) -> Iterator[MapCacheEntry]:
        return iter(self.entries())

    def __len__(self) -> int:
        return len(self._tables)

    def count(self, iid: int | None = None, family: int | None = None) -> int:
        """Number of entries, in total or for one instance and/or family."""
        return self._tables.count(iid, family)

    def instance_ids(self) -> list[int]:
        """Instance-IDs holding at least one entry, ascending."""
        return self._tables.instance_ids()

    def clear(
        self, iid: int | None = None, prefix: PrefixLike | None = None
    ) -> list[MapCacheEntry]:
        """Remove entries and return them.

        No argument: everything.  ``iid``: that instance.  ``prefix``: the entries equal to or
        more specific than it (in ``iid``, or in every instance when ``iid`` is None).
        """
        if prefix is None:
            removed = [e for i, _net, e in self._tables.items() if iid is None or i == iid]
            self._tables.clear(iid)
            for entry in removed:
                self._removed(entry)
            self._compact()
        else:
            net = to_network(prefix)
            iids = self._tables.instance_ids() if iid is None else [iid]
            removed = []
            for i in iids:
                for found, entry in self._tables.more_specifics(i, net):
                    self._tables.delete(i, found)
                    self._removed(entry)
                    removed.append(entry)
        self._generation += 1
        return removed

    @property
    def tables(self) -> ScopedTables[MapCacheEntry]:
        """The underlying tables, for read-only queries (covering, more-specifics, counts).

        Mutating them directly would bypass :attr:`generation`: use the methods of this class.
        """
        return self._tables

    def __repr__(self) -> str:
        return f"<MapCache {len(self)} entries, generation {self._generation}>"
