"""Unit tests of the map-cache's lean storage: shared RLOC sets, tables that store values knowing
their own prefix, the RLOC index grouped by RLOC set, and the compiled path's record per set.

Every table test runs on both backends and compares a table storing the values alone
(``prefix_of``) with one storing ``(prefix, value)`` pairs: same answers to every query.
Documentation ranges only.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Network, ip_address, ip_network
from operator import attrgetter

import pytest

from lispd.engine import compiled
from lispd.engine.compiled import CompiledPath, forwarding_record
from lispd.mapcache import (
    BACKENDS,
    DatabaseEntry,
    LocalDatabase,
    MapCache,
    MapCacheEntry,
    Network,
    PrefixTable,
    RlocEntry,
    ScopedTables,
    entries,
)
from lispd.mapcache import table as table_module
from lispd.mapcache.cache import MAP_CACHE_BACKEND
from lispd.mapcache.table import order_key

RLOC_A = RlocEntry(IPv4Address("192.0.2.1"), priority=1, weight=50)
RLOC_B = RlocEntry(IPv4Address("192.0.2.5"), priority=1, weight=50)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend in turn."""
    return str(request.param)


@pytest.fixture
def fresh_interning() -> Iterator[None]:
    """Start and end with nothing interned (a test that clears it leaves no trace)."""
    entries._interned.clear()
    yield
    entries._interned.clear()


# --- shared RLOC sets ------------------------------------------------------------------------


def test_entries_with_equal_rloc_sets_share_one_tuple(fresh_interning: None) -> None:
    one = MapCacheEntry(0, "198.51.100.0/24", [RlocEntry("192.0.2.1", 1, 50)])
    two = MapCacheEntry(7, "203.0.113.0/24", (RlocEntry("192.0.2.1", 1, 50),))
    assert one.rlocs is two.rlocs and one.rlocs[0] is two.rlocs[0]
    down = MapCacheEntry(0, "198.51.100.0/24", (RlocEntry("192.0.2.1", 1, 50, up=False),))
    assert down.rlocs is not one.rlocs and down.rlocs != one.rlocs  # another set
    assert down != one and one == MapCacheEntry(0, "198.51.100.0/24", one.rlocs)
    negative = MapCacheEntry(0, "198.51.100.0/24", action="drop")
    assert negative.rlocs == () and entries.intern_rlocs(()) == ()


def test_interning_starts_afresh_past_its_bound(
    fresh_interning: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(entries, "INTERNED_RLOC_SETS", 3)
    sets = [(RlocEntry(f"192.0.2.{k}", 1, 50),) for k in range(1, 5)]
    kept = [entries.intern_rlocs(s) for s in sets[:3]]
    assert len(entries._interned) == 3
    assert entries.intern_rlocs(sets[3]) is sets[3]  # full: forgets the others first
    assert len(entries._interned) == 1
    again = (RlocEntry("192.0.2.1", 1, 50),)
    assert entries.intern_rlocs(again) is again and again == kept[0]  # equal, not shared


# --- tables storing values that know their prefix ---------------------------------------------


class Item:
    """A value that knows its prefix (as a map-cache entry does)."""

    __slots__ = ("name", "prefix")

    def __init__(self, prefix: str, name: str) -> None:
        self.prefix = ip_network(prefix)
        self.name = name

    def __repr__(self) -> str:
        return f"Item({self.prefix}, {self.name})"


def test_a_keyed_table_stores_the_values_and_answers_pairs(backend: str) -> None:
    t: PrefixTable[Item] = PrefixTable(4, backend=backend, prefix_of=attrgetter("prefix"))
    wide, narrow = Item("198.51.100.0/24", "wide"), Item("198.51.100.128/25", "narrow")
    assert t.put(wide.prefix, wide) is None
    t.insert("198.51.100.128/25", narrow)  # text is parsed: the same prefix
    assert t.lookup("198.51.100.200") == (narrow.prefix, narrow)
    assert t.lookup_packed(ip_address("198.51.100.1").packed) == (wide.prefix, wide)
    assert t.exact("198.51.100.0/24") is wide and len(t) == 2
    assert t.items() == [(wide.prefix, wide), (narrow.prefix, narrow)]
    assert t.values() == [wide, narrow] and list(t) == [wide.prefix, narrow.prefix]
    other = Item("198.51.100.0/24", "other")
    assert t.put(wide.prefix, other) is wide
    with pytest.raises(ValueError, match="must have that prefix"):
        t.put("203.0.113.0/24", other)
    assert t.delete("198.51.100.0/24") is other and t.lookup("198.51.100.1") is None


def test_replacing_a_value_keeps_the_cached_order_current(backend: str) -> None:
    t: PrefixTable[Item] = PrefixTable(4, backend=backend, prefix_of=attrgetter("prefix"))
    names = ["198.51.100.0/24", "198.51.100.0/25", "198.51.100.128/25", "203.0.113.0/24"]
    for text in names:
        t.insert(text, Item(text, "first"))
    assert [str(p) for p in t] == names  # the order is built and kept
    t.insert("198.51.100.0/25", Item("198.51.100.0/25", "second"))
    assert [(str(v.prefix), v.name) for v in t.values()] == [
        ("198.51.100.0/24", "first"),
        ("198.51.100.0/25", "second"),
        ("198.51.100.128/25", "first"),
        ("203.0.113.0/24", "first"),
    ]
    assert [v.name for _p, v in t.more_specifics("198.51.100.0/24", strict=True)] == [
        "second",
        "first",
    ]


@pytest.mark.parametrize("family", [4, 6])
def test_random_operations_keyed_and_paired_tables_agree(backend: str, family: int) -> None:
    """Inserts, replacements and deletes at random: a keyed table and a paired one answer
    every query alike (the paired one is the reference the existing tests hold)."""
    rng = random.Random(family * 7 + len(backend))
    bits = 32 if family == 4 else 128
    base = int(ip_address("198.51.100.0" if family == 4 else "2001:db8::"))
    net_type = IPv4Network if family == 4 else IPv6Network
    top = 8 if family == 4 else 32
    keyed: PrefixTable[Item] = PrefixTable(family, backend=backend, prefix_of=attrgetter("prefix"))
    paired: PrefixTable[Item] = PrefixTable(family, backend=backend)
    pool = []
    for _ in range(60):
        plen = rng.randint(bits - top, bits)
        address = (base | rng.getrandbits(top)) >> (bits - plen) << (bits - plen)
        pool.append(str(net_type((address, plen))))
    for step in range(400):
        text = rng.choice(pool)
        if rng.random() < 0.3 and keyed.exact(text) is not None:
            assert keyed.delete(text) is paired.delete(text)
        else:
            item = Item(text, str(step))
            assert keyed.put(item.prefix, item) is paired.put(item.prefix, item)
        if step % 40 == 0:  # the cached order, then changes to it
            assert keyed.items() == paired.items()
        probe = (base | rng.getrandbits(top)).to_bytes(bits // 8, "big")
        assert keyed.lookup(probe) == paired.lookup(probe)
        assert keyed.largest_uncovered(probe) == paired.largest_uncovered(probe)
        assert keyed.covering(text) == paired.covering(text)
        assert keyed.more_specifics(text) == paired.more_specifics(text)
    assert keyed.items() == paired.items() and len(keyed) == len(paired)
    keyed.clear()
    assert len(keyed) == 0 and keyed.lookup(probe) is None and keyed.items() == []


def test_scoped_tables_count_every_table_in_one_total(backend: str) -> None:
    s: ScopedTables[Item] = ScopedTables(backend=backend, prefix_of=attrgetter("prefix"))
    for iid, text in [(0, "198.51.100.0/24"), (7, "198.51.100.0/24"), (0, "2001:db8::/48")]:
        s.insert(iid, text, Item(text, str(iid)))
    assert len(s) == 3 and s.count(0) == 2
    assert s.put(7, ip_network("198.51.100.0/24"), Item("198.51.100.0/24", "x")) is not None
    assert len(s) == 3
    s.delete(0, "2001:db8::/48")
    assert len(s) == 2
    s.clear(7)
    assert len(s) == 1 and [v.name for v in s.values()] == ["0"]
    s.clear()
    assert len(s) == 0 and s.values() == []


def test_the_map_cache_and_database_by_default() -> None:
    """The map-cache stores its entries alone, on the dict backend; the local database (a
    handful of prefixes) keeps the default backend."""
    mc = MapCache()
    entry = MapCacheEntry(0, "198.51.100.0/24", (RLOC_A,))
    mc.add(entry)
    table = mc.tables.table(0, 4)
    assert table is not None and table.backend == MAP_CACHE_BACKEND == "pure"
    assert mc.tables.lookup(0, "198.51.100.7") == (entry.prefix, entry)
    db = LocalDatabase()
    db.add(DatabaseEntry(0, "203.0.113.0/24", (RLOC_A,)))
    assert db.lookup(0, "203.0.113.9") is not None


# --- the RLOC index by RLOC set --------------------------------------------------------------


def test_prefixes_sharing_a_network_address_are_all_indexed(backend: str) -> None:
    """The index keys an entry by its network address's int: /24, /25 and another instance
    at 198.51.100.0 share that key and must each be found, removed and re-checked alone."""
    mc = MapCache(backend=backend)
    a = RLOC_A.address
    wide = MapCacheEntry(0, "198.51.100.0/24", (RLOC_A,), ttl=60)
    narrow = MapCacheEntry(0, "198.51.100.0/25", (RLOC_A,), ttl=60)
    other = MapCacheEntry(7, "198.51.100.0/24", (RLOC_A,), ttl=60)
    for entry in (wide, narrow, other):
        mc.add(entry)
    snapshot = mc.using(a)
    assert sorted(map(id, snapshot)) == sorted(map(id, (wide, narrow, other)))
    mc.remove(0, "198.51.100.0/25")
    assert sorted(map(id, mc.using(a))) == sorted(map(id, (wide, other)))
    assert sorted(map(id, mc.still_using(a, snapshot))) == sorted(map(id, (wide, other)))
    fresh = MapCacheEntry(7, "198.51.100.0/24", (RLOC_A,), ttl=90)
    mc.add(fresh)
    assert list(mc.still_using(a, snapshot)) == [wide]
    mc.remove(0, "198.51.100.0/24")
    assert mc.using(a) == [fresh]
    mc.remove(7, "198.51.100.0/24")
    assert not mc.uses(a) and mc.rloc_addresses() == [] and not mc._groups


def test_equal_rloc_sets_not_shared_are_indexed_apart(fresh_interning: None) -> None:
    """An RLOC set met again after interning started afresh is another tuple: another
    group, found alike."""
    mc = MapCache()
    first = MapCacheEntry(0, "198.51.100.0/24", (RlocEntry("192.0.2.1", 1, 50),))
    entries._interned.clear()
    second = MapCacheEntry(0, "203.0.113.0/24", (RlocEntry("192.0.2.1", 1, 50),))
    assert first.rlocs == second.rlocs and first.rlocs is not second.rlocs
    mc.add(first)
    mc.add(second)
    a = ip_address("192.0.2.1")
    assert len(mc._groups) == 2 and sorted(map(id, mc.using(a))) == sorted(map(id, (first, second)))
    assert list(mc.still_using(a, [first, second])) == [first, second]
    mc.remove(0, "198.51.100.0/24")
    assert mc.using(a) == [second] and len(mc._groups) == 1


def test_one_group_per_rloc_set_whatever_the_number_of_entries() -> None:
    mc = MapCache()
    for k in range(256):
        mc.add(MapCacheEntry(0, f"198.51.100.{k}/32", (RLOC_A, RLOC_B)))
        mc.add(MapCacheEntry(7, f"198.51.100.{k}/32", (RLOC_A,)))
    assert len(mc._groups) == 2
    assert len(mc.using(RLOC_A.address)) == 512 and len(mc.using(RLOC_B.address)) == 256


# --- the compiled path's record per RLOC set -------------------------------------------------


def _path(nat_port: compiled.NatPort | None = None) -> CompiledPath:
    if not compiled.available():
        pytest.skip("lispd.engine._accel is not built (setup.py build_ext --inplace)")
    return CompiledPath(
        roles=("itr",), mtu=1500, tun_fd=-1, offloads=False, families=(4, 6),
        own_rlocs=(), nat_port=nat_port,
    )  # fmt: skip


def test_entries_of_one_rloc_set_get_the_record_of_forwarding_record() -> None:
    fast = _path()
    down = RlocEntry("192.0.2.9", 1, 30, up=False)
    made = [
        MapCacheEntry(0, f"198.51.100.{k}/32", (RLOC_A, RLOC_B) if k % 2 else (down,))
        for k in range(20)
    ] + [MapCacheEntry(0, "203.0.113.0/24", action="drop")]
    for entry in made:
        args = fast._record_args(entry.iid, entry.prefix, entry)
        record = forwarding_record(entry, fast.families, fast.own_rlocs, None)
        prefix = entry.prefix
        head = (entry.iid, prefix.network_address.packed, prefix.prefixlen)
        if record is None:
            assert args == (*head, None)
        else:
            assert args == ((*head, record[0], True) if record[1] else (*head, record[0]))
    assert len(fast._set_records) == 3  # two RLOC sets and the empty one


def test_a_nat_translated_port_is_per_entry_not_per_set() -> None:
    nated = ip_network("198.51.100.0/25")

    def nat_port(address: object, iid: int, prefix: Network | None) -> int | None:
        return 40000 if prefix == nated and address == RLOC_A.address else None

    fast = _path(nat_port)
    one = MapCacheEntry(0, nated, (RLOC_A, RLOC_B))
    two = MapCacheEntry(0, "198.51.100.128/25", (RLOC_A, RLOC_B))
    first = fast._record_args(0, one.prefix, one)[3]
    second = fast._record_args(0, two.prefix, two)[3]
    assert first == forwarding_record(one, fast.families, (), nat_port)[0]  # type: ignore[index]
    assert (RLOC_A.address.packed, 40000, 50, True) in first
    assert (RLOC_A.address.packed, 4341, 50, False) in second
    assert fast._record_args(0, one.prefix, one)[3] == first  # the set's part unchanged


# --- the expiry queue --------------------------------------------------------------------------


def test_expiry_items_name_the_key_and_time_not_the_entry(backend: str) -> None:
    """An item per (key, expiry time): a replacement expiring at the same time (an RLOC marked
    down) queues nothing; the items hold atomic values only, which the GC stops tracking."""
    mc = MapCache(backend=backend)
    first = [MapCacheEntry(0, f"198.51.100.{k}/32", (RLOC_A,), ttl=30.0) for k in range(50)]
    v6 = MapCacheEntry(7, "2001:db8::/48", (RLOC_A,), ttl=40.0)
    for entry in [*first, v6]:
        mc.add(entry)
    down = RlocEntry(RLOC_A.address, 1, 50, up=False)
    second = [MapCacheEntry(0, e.prefix, (down,), ttl=30.0) for e in first]
    for entry in second:
        mc.add(entry)
    assert len(mc._heap) == 51
    gc.collect()
    assert not any(gc.is_tracked(item) for item in mc._heap)
    assert mc.next_expiry() == 30.0
    removed = mc.expire(30.0)
    assert sorted(map(id, removed)) == sorted(map(id, second))  # the entries stored now
    assert mc.next_expiry() == 40.0 and mc.expire(40.0) == [v6] and len(mc) == 0


def test_an_item_of_a_replaced_expiry_time_is_stale(backend: str) -> None:
    mc = MapCache(backend=backend)
    a = MapCacheEntry(0, "198.51.100.0/24", (RLOC_A,), ttl=10.0)
    b = MapCacheEntry(0, "198.51.100.0/24", (RLOC_A,), ttl=20.0)
    c = MapCacheEntry(0, "198.51.100.0/24", (RLOC_A,), ttl=10.0)  # back to a's time
    narrow = MapCacheEntry(0, "198.51.100.0/25", (RLOC_A,), ttl=15.0)  # same address int
    for entry in (a, narrow, b):
        mc.add(entry)
    assert mc.next_expiry() == 15.0  # a's item is stale: b expires at 20
    mc.add(c)
    assert mc.next_expiry() == 10.0 and mc.expire(10.0) == [c]
    assert mc.expire(20.0) == [narrow] and mc.next_expiry() is None
    mc.add(MapCacheEntry(0, "198.51.100.0/24", action="drop", ttl=5.0, source="map-reply"))
    mc.add(MapCacheEntry(0, "198.51.100.0/25", action="drop", ttl=1.0))
    evicted = mc.evict_soonest()
    assert evicted is not None and evicted.source == "map-reply"  # the static one is kept
    assert mc.next_expiry() == 1.0


def test_pieces_cover_every_prefix_once_in_bounded_parts(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table_module, "PIECE", 3)
    keyed: PrefixTable[Item] = PrefixTable(4, backend=backend, prefix_of=attrgetter("prefix"))
    paired: PrefixTable[Item] = PrefixTable(4, backend=backend)
    texts = [f"198.51.100.{k}/32" for k in range(7)] + ["198.51.100.0/24", "203.0.113.0/25"]
    for text in texts:
        item = Item(text, text)
        keyed.insert(text, item)
        paired.insert(text, item)
    for t in (keyed, paired):
        parts = list(t.pieces())
        assert all(0 < len(part) <= 3 for part in parts)
        pairs = [pair for part in parts for pair in part]
        assert sorted(pairs, key=lambda p: order_key(p[0])) == t.items()
