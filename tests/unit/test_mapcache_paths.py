"""The map-cache's bookkeeping on every path that changes it, against brute force.

Every way an entry comes or goes (a new install, a replacement with the same or another expiry
time, a removal, a bounded expiry, an eviction, a clear of everything, of an instance, of a
prefix) must keep the RLOC index (``using``, ``uses``, ``rloc_addresses``), the census and
``len`` equal to what a walk over the entries finds, and must tell the listener exactly once
per entry installed or removed (the listener's mirror of the table is the compiled fast path's
copy).  Bounded expiry removes the earliest due entries, never more than asked, and leaves
:meth:`~lispd.mapcache.MapCache.next_expiry` at or before ``now`` while due entries remain.
"""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Address, IPv6Address, ip_network

from hypothesis import given, settings
from hypothesis import strategies as st

from lispd.mapcache import MapCache, MapCacheEntry, Network, RlocEntry
from lispd.mapcache.cache import STALE_PER_REMOVAL

RLOCS = (
    RlocEntry(IPv4Address("192.0.2.1"), 1, 50),
    RlocEntry(IPv4Address("192.0.2.5"), 1, 50),
    RlocEntry(IPv6Address("2001:db8::1"), 2, 100),
    RlocEntry(IPv4Address("192.0.2.9"), 1, 1, up=False),
)
PREFIXES = (
    "198.51.100.0/24",
    "198.51.100.0/28",
    "198.51.100.16/28",
    "198.51.100.17/32",
    "2001:db8:100::/48",
    "2001:db8:100:1::/64",
    "203.0.113.0/24",
)
Key = tuple[int, Network]


class Mirror:
    """The listener's view: what a compiled fast path would hold, and the calls it got."""

    def __init__(self, mc: MapCache) -> None:
        self.table: dict[Key, MapCacheEntry] = {}
        self.calls = 0
        mc.listener = self

    def __call__(self, iid: int, prefix: Network, entry: MapCacheEntry | None) -> None:
        self.calls += 1
        if entry is None:
            assert (iid, prefix) in self.table, "removal of an entry never installed"
            del self.table[iid, prefix]
        else:
            assert (entry.iid, entry.prefix) == (iid, prefix)
            self.table[iid, prefix] = entry


def check(mc: MapCache, mirror: Mirror) -> None:
    """Every derived structure agrees with a walk over the entries."""
    entries = mc.entries()
    assert len(mc) == len(entries) == len(mirror.table)
    assert {(e.iid, e.prefix): e for e in entries} == mirror.table
    assert all(mirror.table[e.iid, e.prefix] is e for e in entries)
    model: dict[object, set[int]] = {}
    for entry in entries:
        for rloc in entry.rlocs:
            model.setdefault(rloc.address, set()).add(id(entry))
    assert set(mc.rloc_addresses()) == set(model)
    for rloc in RLOCS:
        found = mc.using(rloc.address)
        assert {id(e) for e in found} == model.get(rloc.address, set())
        assert len(found) == len(model.get(rloc.address, ()))
        assert mc.uses(rloc.address) == (rloc.address in model)
    assert mc.census() == dict(Counter((e.iid, e.prefix.version, e.source) for e in entries))
    due = [e.expires for e in entries if e.expires is not None]
    soonest = mc.next_expiry()
    if due:
        assert soonest is not None and soonest <= min(due)
    # else: stale items may remain, answering an earlier time (a harmless early wake-up)


def make(iid: int, prefix: str, rlocs: list[RlocEntry], expires: float | None) -> MapCacheEntry:
    source = "static" if expires is None else "map-reply"
    if rlocs:
        return MapCacheEntry(
            iid, ip_network(prefix), tuple(rlocs), expires=expires, ttl=60, source=source
        )
    return MapCacheEntry(iid, ip_network(prefix), action="drop", expires=expires, ttl=60)


OPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["add", "add", "add", "same-expiry", "remove", "expire", "expire", "evict",
             "clear", "clear-iid", "clear-prefix"]
        ),
        st.sampled_from([0, 7]),
        st.sampled_from(PREFIXES),
        st.lists(st.sampled_from(RLOCS), max_size=3),
        st.one_of(st.none(), st.integers(1, 40).map(float)),
        st.integers(1, 4),
    ),
    max_size=50,
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_every_path_keeps_index_census_listener_and_len_exact(ops: list) -> None:
    mc = MapCache()
    mirror = Mirror(mc)
    now = 0.0
    for kind, iid, prefix, rlocs, expires, limit in ops:
        calls = mirror.calls
        before = len(mc)
        if kind == "add":
            mc.add(make(iid, prefix, rlocs, None if expires is None else now + expires))
            assert mirror.calls == calls + 1
        elif kind == "same-expiry":  # what RLOC marking does: other RLOCs, same clock
            old = mc.get(iid, prefix)
            if old is not None and rlocs:
                mc.add(make(iid, prefix, rlocs, old.expires))
                assert mirror.calls == calls + 1 and len(mc) == before
        elif kind == "remove":
            if mc.get(iid, prefix) is not None:
                mc.remove(iid, prefix)
                assert mirror.calls == calls + 1 and len(mc) == before - 1
        elif kind == "expire":
            now += limit * 3
            due = sorted(
                e.expires for e in mc.entries() if e.expires is not None and e.expires <= now
            )
            removed = mc.expire(now, limit=limit)
            assert len(removed) <= limit and mirror.calls == calls + len(removed)
            assert all(e.expires is not None and e.expires <= now for e in removed)
            left = [e.expires for e in mc.entries() if e.expires is not None and e.expires <= now]
            if removed and left:  # the earliest due went first
                assert max(e.expires for e in removed) <= min(left)  # type: ignore[type-var]
            if left:  # work remains: the timer is due now
                assert (soon := mc.next_expiry()) is not None and soon <= now
            # stale items may stop a call early, never make it remove a live one too many
            assert len(removed) + len(left) == len(due)
        elif kind == "evict":
            victim = mc.evict_soonest()
            assert mirror.calls == calls + (victim is not None)
            assert victim is None or victim.source != "static"
        elif kind == "clear":
            removed = mc.clear()
            assert mirror.calls == calls + len(removed) and len(mc) == 0
        elif kind == "clear-iid":
            removed = mc.clear(iid)
            assert mirror.calls == calls + len(removed) and mc.count(iid) == 0
        elif kind == "clear-prefix":
            removed = mc.clear(None if limit % 2 else iid, "198.51.100.0/24")
            assert mirror.calls == calls + len(removed)
        check(mc, mirror)
    # Whatever happened, expiring everything (in bounded calls) empties the learned entries.
    while (soon := mc.next_expiry()) is not None:
        mc.expire(soon, limit=2)
    assert all(e.expires is None for e in mc.entries())
    check(mc, mirror)


def test_a_replacement_with_the_same_expiry_keeps_its_single_expiry_item() -> None:
    """Marking RLOCs replaces entries without touching their clock: no stale expiry item
    piles up (and none keeps the replaced entry alive), and the new entry still expires."""
    mc = MapCache()
    mirror = Mirror(mc)
    first = make(0, "198.51.100.0/28", [RLOCS[0]], 50.0)
    mc.add(first)
    for k in range(100):
        old = mc.get(0, ip_network("198.51.100.0/28"))
        assert old is not None
        mc.add(make(0, "198.51.100.0/28", [RLOCS[k % 2]], old.expires))
    assert len(mc._heap) == 1  # one item for one entry
    last = mc.get(0, ip_network("198.51.100.0/28"))
    assert mc.next_expiry() == 50.0 and mc.expire(49.9) == []
    assert mc.expire(50.0) == [last] and len(mc) == 0 and mirror.table == {}


def test_bounded_expiry_of_a_thousand_entries_due_at_once() -> None:
    mc = MapCache()
    mirror = Mirror(mc)
    for k in range(1000):
        mc.add(make(k % 3, f"2001:db8:100:{k:x}::/64", [RLOCS[k % 3]], 10.0 + (k % 7) / 100))
    mc.add(make(0, "198.51.100.0/24", [RLOCS[0]], 100.0))  # not due
    calls = 0
    expired: list[MapCacheEntry] = []
    while True:
        batch = mc.expire(20.0, limit=64)
        assert len(batch) <= 64
        expired += batch
        calls += 1
        check(mc, mirror)
        soonest = mc.next_expiry()
        if soonest is None or soonest > 20.0:
            break
    assert len(expired) == 1000 and calls == -(-1000 // 64)
    assert [e.expires for e in expired] == sorted(e.expires for e in expired)  # type: ignore[type-var]
    assert len(mc) == 1 and mc.next_expiry() == 100.0
    assert mc.expire(20.0, limit=0) == []  # a zero budget removes nothing


def test_stale_items_cost_bounded_calls_never_a_removal_too_many() -> None:
    """Entries refreshed (a new expiry each time) leave stale items at the head of the
    queue: one bounded call pops at most STALE_PER_REMOVAL x limit of them and returns;
    next_expiry meanwhile answers a time at or before the true one."""
    mc = MapCache()
    mirror = Mirror(mc)
    prefixes = [f"2001:db8:100:{k:x}::/64" for k in range(200)]
    for p in prefixes:
        mc.add(make(0, p, [RLOCS[0]], 5.0))
    for p in prefixes:  # refreshed: the first items are stale now
        mc.add(make(0, p, [RLOCS[0]], 30.0))
    assert mc.expire(10.0, limit=1) == []  # nothing is due: stale items only
    assert mc.next_expiry() is not None and mc.next_expiry() <= 30.0  # type: ignore[operator]
    removed = []
    rounds = 0
    while len(mc):
        removed += mc.expire(30.0, limit=10)
        rounds += 1
        assert rounds < 100
    assert len(removed) == 200 and mirror.table == {}
    assert STALE_PER_REMOVAL >= 1
