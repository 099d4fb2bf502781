"""Unit tests of lispd.mapcache: prefix tables, scoped tables, map-cache and local database.

Every table test runs on both backends (pytricia and the pure-Python reference); the property
tests hold both to a brute-force longest-prefix match over random prefix sets.  Fixed examples
use documentation ranges only.
"""

from __future__ import annotations

import random
from collections import Counter
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lispd.mapcache import (
    BACKENDS,
    DEFAULT_BACKEND,
    MAX_IID,
    DatabaseEntry,
    LocalDatabase,
    MapCache,
    MapCacheEntry,
    Network,
    PrefixTable,
    PurePrefixTable,
    PyTriciaPrefixTable,
    RlocEntry,
    ScopedTables,
    available_backends,
)

RLOC_A = RlocEntry(IPv4Address("192.0.2.1"), priority=1, weight=50)
RLOC_B = RlocEntry(IPv4Address("192.0.2.5"), priority=1, weight=50)
RLOC_6 = RlocEntry(IPv6Address("2001:db8::1"), priority=2, weight=100)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend in turn (pytricia is a declared dependency: no skip when missing)."""
    return str(request.param)


def packed(text: str) -> bytes:
    return ip_address(text).packed


def hit_prefix(hit: tuple[Network, object] | None) -> str | None:
    return None if hit is None else str(hit[0])


# --- PrefixTable -----------------------------------------------------------------------------


def test_backend_selection() -> None:
    assert available_backends() == BACKENDS  # both installed here
    assert DEFAULT_BACKEND == "pytricia"
    assert isinstance(PrefixTable(4), PyTriciaPrefixTable)
    assert isinstance(PrefixTable(4, backend="pure"), PurePrefixTable)
    assert PrefixTable(6, backend="pytricia").backend == "pytricia"
    table: PrefixTable[int] = PrefixTable[int](6)  # subscripted generic works too
    assert table.family == 6 and table.bits == 128
    assert isinstance(PurePrefixTable(4), PurePrefixTable)
    with pytest.raises(ValueError, match="unknown"):
        PrefixTable(4, backend="btree")
    with pytest.raises(ValueError, match="backend"):
        PurePrefixTable(4, backend="pytricia")
    with pytest.raises(ValueError, match="4 or 6"):
        PrefixTable(5)


def test_lpm_ipv4_overlapping(backend: str) -> None:
    t: PrefixTable[str] = PrefixTable(4, backend=backend)
    t.insert("198.51.100.0/24", "site")
    t.insert("198.51.100.0/25", "low half")
    t.insert(IPv4Network("198.51.100.64/26"), "second quarter")
    t.insert("198.51.100.77/32", "host")
    assert t.lookup(packed("198.51.100.1")) == (IPv4Network("198.51.100.0/25"), "low half")
    assert t.lookup(packed("198.51.100.65"))[1] == "second quarter"  # type: ignore[index]
    assert t.lookup(packed("198.51.100.77"))[1] == "host"  # type: ignore[index]
    assert t.lookup(packed("198.51.100.78"))[1] == "second quarter"  # type: ignore[index]
    assert t.lookup(packed("198.51.100.200"))[1] == "site"  # type: ignore[index]
    assert t.lookup(packed("198.51.101.0")) is None
    assert t.lookup(packed("203.0.113.1")) is None
    assert len(t) == 4


def test_lpm_ipv6_overlapping(backend: str) -> None:
    t: PrefixTable[str] = PrefixTable(6, backend=backend)
    t.insert("2001:db8::/32", "documentation")
    t.insert("2001:db8:100::/48", "eid site")
    t.insert("2001:db8:100:1::/64", "subnet")
    t.insert("2001:db8:100:1::7/128", "host")
    assert t.lookup(packed("2001:db8:100:1::7"))[1] == "host"  # type: ignore[index]
    assert t.lookup(packed("2001:db8:100:1::8"))[1] == "subnet"  # type: ignore[index]
    assert t.lookup(packed("2001:db8:100:2::1"))[1] == "eid site"  # type: ignore[index]
    assert t.lookup(packed("2001:db8:200::1"))[1] == "documentation"  # type: ignore[index]
    assert t.lookup(packed("2001:db9::1")) is None
    hit = t.lookup(IPv6Address("2001:db8:100:1::7"))
    assert hit == (IPv6Network("2001:db8:100:1::7/128"), "host")


def test_default_route_and_host_routes(backend: str) -> None:
    t4: PrefixTable[str] = PrefixTable(4, backend=backend)
    t4.insert("0.0.0.0/0", "default")
    t4.insert("192.0.2.255/32", "host")
    assert t4.lookup(packed("0.0.0.0"))[1] == "default"  # type: ignore[index]
    assert t4.lookup(packed("255.255.255.255"))[1] == "default"  # type: ignore[index]
    assert t4.lookup(packed("192.0.2.255"))[1] == "host"  # type: ignore[index]
    assert t4.lookup(packed("192.0.2.254"))[1] == "default"  # type: ignore[index]
    t6: PrefixTable[str] = PrefixTable(6, backend=backend)
    t6.insert("::/0", "default")
    t6.insert("2001:db8::ffff/128", "host")
    assert t6.lookup(bytes(16))[1] == "default"  # type: ignore[index]
    assert t6.lookup(b"\xff" * 16)[1] == "default"  # type: ignore[index]
    assert t6.lookup(packed("2001:db8::ffff"))[1] == "host"  # type: ignore[index]
    assert t6.lookup(packed("2001:db8::fffe"))[1] == "default"  # type: ignore[index]
    assert t4.delete("0.0.0.0/0") == "default"
    assert t4.lookup(packed("192.0.2.254")) is None


def test_key_forms_agree(backend: str) -> None:
    t: PrefixTable[int] = PrefixTable(4, backend=backend)
    t.insert("203.0.113.0/24", 1)
    t.insert("203.0.113.128/25", 2)
    for text in ("203.0.113.1", "203.0.113.200", "198.51.100.1"):
        want = t.lookup(packed(text))
        assert t.lookup(IPv4Address(text)) == want
        assert t.lookup(text) == want
        assert t.lookup(bytearray(packed(text))) == want
        assert t.lookup(memoryview(packed(text))) == want
        assert t.lookup_packed(packed(text)) == want
    # The stored pair itself comes back: no allocation per lookup.
    assert t.lookup(packed("203.0.113.1")) is t.lookup(IPv4Address("203.0.113.1"))


def test_wrong_family_or_length_is_rejected(backend: str) -> None:
    t4: PrefixTable[int] = PrefixTable(4, backend=backend)
    t4.insert("0.0.0.0/0", 0)
    with pytest.raises(ValueError):
        t4.lookup(packed("2001:db8::1"))
    with pytest.raises(ValueError):
        t4.lookup(IPv6Address("2001:db8::1"))
    with pytest.raises(ValueError):
        t4.lookup(b"\x01\x02\x03")
    with pytest.raises(ValueError):
        t4.insert("2001:db8::/32", 1)
    with pytest.raises(TypeError):
        t4.lookup(3232235521)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        t4.insert(("192.0.2.0", 24), 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):  # host bits set: strict parsing
        t4.insert("192.0.2.1/24", 1)
    t6: PrefixTable[int] = PrefixTable(6, backend=backend)
    with pytest.raises(ValueError):
        t6.lookup(packed("192.0.2.1"))
    with pytest.raises(ValueError):
        t6.exact("192.0.2.0/24")


def test_insert_replace_exact_delete(backend: str) -> None:
    t: PrefixTable[str] = PrefixTable(4, backend=backend)
    t.insert("192.0.2.0/24", "a")
    t.insert("192.0.2.0/24", "b")  # replaces
    assert len(t) == 1
    assert t.exact("192.0.2.0/24") == "b"
    assert t.exact("192.0.2.0/25") is None  # exact is not a longest match
    assert "192.0.2.0/24" in t and IPv4Network("192.0.2.0/24") in t
    assert "192.0.2.0/25" not in t and "2001:db8::/32" not in t and 42 not in t
    assert t.delete(IPv4Network("192.0.2.0/24")) == "b"
    assert len(t) == 0 and t.lookup(packed("192.0.2.1")) is None
    with pytest.raises(KeyError):
        t.delete("192.0.2.0/24")
    t.insert("192.0.2.0/24", "c")  # and back again
    assert t.lookup(packed("192.0.2.1"))[1] == "c"  # type: ignore[index]


def test_iteration_in_prefix_order(backend: str) -> None:
    texts = [
        "0.0.0.0/0",
        "192.0.2.0/24",
        "192.0.2.0/25",
        "192.0.2.0/32",
        "192.0.2.64/26",
        "192.0.2.128/25",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "203.0.113.255/32",
    ]
    shuffled = texts[:]
    random.Random(3).shuffle(shuffled)
    t: PrefixTable[str] = PrefixTable(4, backend=backend)
    for text in shuffled:
        t.insert(text, text)
    assert [str(n) for n in t] == texts
    assert [v for _n, v in t.items()] == texts
    t.delete("192.0.2.0/25")
    texts.remove("192.0.2.0/25")
    assert [str(n) for n in t] == texts
    # items() is a snapshot: mutating while walking it is safe.
    for net, _v in t.items():
        t.delete(net)
    assert len(t) == 0 and list(t) == []


def test_clear_keeps_lookup_packed_valid(backend: str) -> None:
    t: PrefixTable[int] = PrefixTable(6, backend=backend)
    fast = t.lookup_packed
    t.insert("2001:db8::/32", 1)
    assert fast(packed("2001:db8::1")) == (IPv6Network("2001:db8::/32"), 1)
    t.clear()
    assert len(t) == 0 and fast(packed("2001:db8::1")) is None
    t.insert("2001:db8:100::/48", 2)
    assert fast(packed("2001:db8:100::1")) == (IPv6Network("2001:db8:100::/48"), 2)


def test_covering_and_more_specifics(backend: str) -> None:
    t: PrefixTable[int] = PrefixTable(4, backend=backend)
    for i, text in enumerate(
        ["0.0.0.0/0", "198.51.100.0/24", "198.51.100.0/26", "198.51.100.64/26", "198.51.100.5/32"]
    ):
        t.insert(text, i)
    cover = t.covering("198.51.100.0/26")
    assert [str(n) for n, _ in cover] == ["0.0.0.0/0", "198.51.100.0/24", "198.51.100.0/26"]
    assert [str(n) for n, _ in t.covering("198.51.100.0/26", strict=True)] == [
        "0.0.0.0/0",
        "198.51.100.0/24",
    ]
    assert [str(n) for n, _ in t.covering("198.51.100.128/25")] == [
        "0.0.0.0/0",
        "198.51.100.0/24",
    ]
    more = t.more_specifics("198.51.100.0/24")
    assert [str(n) for n, _ in more] == [
        "198.51.100.0/24",
        "198.51.100.0/26",
        "198.51.100.5/32",
        "198.51.100.64/26",
    ]
    strict = t.more_specifics("198.51.100.0/24", strict=True)
    assert [str(n) for n, _ in strict] == [str(n) for n, _ in more[1:]]
    assert [str(n) for n, _ in t.more_specifics("198.51.100.0/25")] == [
        "198.51.100.0/26",
        "198.51.100.5/32",
        "198.51.100.64/26",
    ]
    assert t.more_specifics("203.0.113.0/24") == []
    assert len(t.more_specifics("0.0.0.0/0")) == 5


def test_largest_uncovered(backend: str) -> None:
    t: PrefixTable[int] = PrefixTable(4, backend=backend)
    assert t.largest_uncovered(packed("192.0.2.1")) == IPv4Network("0.0.0.0/0")
    t.insert("198.51.100.0/24", 1)
    t.insert("198.51.100.128/28", 2)
    assert t.largest_uncovered(packed("198.51.100.1")) is None
    # 198.51.101.1 differs from 198.51.100.0 first at bit 24 (0-based 23): a /24 free block.
    assert t.largest_uncovered(packed("198.51.101.1")) == IPv4Network("198.51.101.0/24")
    assert t.largest_uncovered("203.0.113.9") == IPv4Network("200.0.0.0/5")
    assert t.largest_uncovered(IPv4Address("10.0.0.1")) == IPv4Network("0.0.0.0/1")
    t.insert("192.0.2.255/32", 3)  # a host route at the very end of a candidate block
    assert t.largest_uncovered(packed("192.0.2.0")) == IPv4Network("192.0.2.0/25")
    assert t.largest_uncovered(packed("192.0.2.254")) == IPv4Network("192.0.2.254/32")
    t6: PrefixTable[int] = PrefixTable(6, backend=backend)
    t6.insert("2001:db8:100::/48", 1)
    assert t6.largest_uncovered(packed("2001:db8:101::1")) == IPv6Network("2001:db8:101::/48")
    assert t6.largest_uncovered(packed("2001:db8:100::1")) is None


# --- brute-force reference and property tests --------------------------------------------------


def _mask(plen: int, bits: int) -> int:
    return ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)


def brute_lookup(prefixes: dict[Network, int], address: int, family: int) -> Network | None:
    """Longest match by scanning every prefix (integer arithmetic, no trie)."""
    best: Network | None = None
    for net in prefixes:
        if net.version != family:
            continue
        mask = _mask(net.prefixlen, net.max_prefixlen)
        if address & mask == int(net.network_address) and (
            best is None or net.prefixlen > best.prefixlen
        ):
            best = net
    return best


def brute_uncovered(prefixes: list[Network], address: int, family: int) -> Network | None:
    """Shortest prefix around ``address`` overlapping no stored prefix, by trying every length."""
    bits = 32 if family == 4 else 128
    nets = [(int(n.network_address), _mask(n.prefixlen, bits)) for n in prefixes]
    make = IPv4Network if family == 4 else IPv6Network
    for plen in range(bits + 1):
        mask = _mask(plen, bits)
        start = address & mask
        # Two prefixes overlap exactly when one contains the other's first address.
        if not any(n & mask == start or start & m == n for n, m in nets):
            return make((start, plen))
    return None


def prefix_strategy(family: int) -> st.SearchStrategy[Network]:
    """Random prefixes crowded into a few /8s (or /16s) so that they nest and overlap often."""
    bits = 32 if family == 4 else 128
    top = st.sampled_from([0x00, 0x0A, 0xC0, 0xFF] if family == 4 else [0x0000, 0x2001, 0xFFFF])
    top_bits = 8 if family == 4 else 16
    low = st.integers(0, (1 << (bits - top_bits)) - 1)
    plen = st.one_of(st.integers(0, bits), st.sampled_from([bits, top_bits, bits // 2]))
    make = IPv4Network if family == 4 else IPv6Network

    def build(t: int, lo: int, n: int) -> Network:
        address = (t << (bits - top_bits)) | lo
        return make((address >> (bits - n) << (bits - n), n))

    return st.builds(build, top, low, plen)


PREFIXES_4 = prefix_strategy(4)
PREFIXES_6 = prefix_strategy(6)
ANY_PREFIX = st.one_of(PREFIXES_4, PREFIXES_6)
IIDS = st.sampled_from([0, 7])
PROBE_IIDS = st.sampled_from([0, 7, 9])  # 9 holds nothing
FAMILIES = st.sampled_from([4, 6])
BITS_128 = st.integers(0, (1 << 128) - 1)


@st.composite
def scenario(draw: st.DrawFn) -> tuple[list[tuple[int, Network]], list[tuple[int, int, int]]]:
    """Prefixes tagged with an IID, and probes (iid, family, address) around and inside them."""
    entries = draw(st.lists(st.tuples(IIDS, ANY_PREFIX), max_size=40))
    probes: list[tuple[int, int, int]] = []
    for _ in range(draw(st.integers(1, 30))):
        iid = draw(PROBE_IIDS)
        inside = draw(st.booleans())
        if entries and inside:
            _i, net = entries[draw(st.integers(0, len(entries) - 1))]
            host = draw(BITS_128) & ((1 << (net.max_prefixlen - net.prefixlen)) - 1)
            probes.append((iid, net.version, int(net.network_address) | host))
        else:
            family = draw(FAMILIES)
            net = draw(PREFIXES_4 if family == 4 else PREFIXES_6)
            host = draw(BITS_128) & ((1 << (net.max_prefixlen - net.prefixlen)) - 1)
            probes.append((iid, family, int(net.network_address) | host))
    return entries, probes


@settings(max_examples=600, deadline=None)
@given(scenario(), st.randoms(use_true_random=False))
def test_property_backends_match_brute_force(
    case: tuple[list[tuple[int, Network]], list[tuple[int, int, int]]], rnd: random.Random
) -> None:
    entries, probes = case
    reference: dict[int, dict[Network, int]] = {0: {}, 7: {}, 9: {}}
    scoped = {b: ScopedTables[int](backend=b) for b in BACKENDS}
    for value, (iid, net) in enumerate(entries):
        reference[iid][net] = value
        for tables in scoped.values():
            tables.insert(iid, net, value)
    # Delete a random part so the tables are checked after removals too.
    for iid, net in rnd.sample(entries, len(entries) // 3):
        if net in reference[iid]:
            value = reference[iid].pop(net)
            for tables in scoped.values():
                assert tables.delete(iid, net) == value
    for iid, family, address in probes:
        best = brute_lookup(reference[iid], address, family)
        want = None if best is None else (best, reference[iid][best])
        nbytes = 4 if family == 4 else 16
        obj = IPv4Address(address) if family == 4 else IPv6Address(address)
        for tables in scoped.values():
            assert tables.lookup(iid, address.to_bytes(nbytes, "big")) == want
            assert tables.lookup(iid, obj) == want
    for tables in scoped.values():
        assert tables.count() == sum(len(r) for r in reference.values())
        expected_items = sorted(
            ((iid, net.version, net) for iid, r in reference.items() for net in r),
            key=lambda x: (x[0], x[1], int(x[2].network_address), x[2].prefixlen),
        )
        assert [(i, n) for i, n, _v in tables.items()] == [(i, n) for i, _f, n in expected_items]


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from([4, 6]).flatmap(
        lambda f: st.tuples(
            st.just(f),
            st.lists(PREFIXES_4 if f == 4 else PREFIXES_6, max_size=30),
            st.lists(PREFIXES_4 if f == 4 else PREFIXES_6),
        )
    )
)
def test_property_queries_match_brute_force(
    case: tuple[int, list[Network], list[Network]],
) -> None:
    family, stored, queries = case
    stored = list(dict.fromkeys(stored))
    tables = [PrefixTable[int](family, backend=b) for b in BACKENDS]
    for t in tables:
        for i, net in enumerate(stored):
            t.insert(net, i)
    for q in queries:
        covering = sorted((n for n in stored if q.subnet_of(n)), key=lambda n: n.prefixlen)  # type: ignore[arg-type]
        more = sorted(
            (n for n in stored if n.subnet_of(q)),  # type: ignore[arg-type]
            key=lambda n: (int(n.network_address), n.prefixlen),
        )
        uncovered = brute_uncovered(stored, int(q.network_address), family)
        for t in tables:
            assert [n for n, _ in t.covering(q)] == covering
            assert [n for n, _ in t.covering(q, strict=True)] == [n for n in covering if n != q]
            assert [n for n, _ in t.more_specifics(q)] == more
            assert [n for n, _ in t.more_specifics(q, strict=True)] == [n for n in more if n != q]
            assert t.largest_uncovered(q.network_address) == uncovered
            assert t.exact(q) == (stored.index(q) if q in stored else None)
    # The edges of stored prefixes are where an off-by-one in ``largest_uncovered`` would show.
    bits = 32 if family == 4 else 128
    edges = {int(n.network_address) - 1 for n in stored} | {
        int(n.broadcast_address) + 1 for n in stored
    }
    for address in sorted(a % (1 << bits) for a in edges):
        uncovered = brute_uncovered(stored, address, family)
        key = address.to_bytes(bits // 8, "big")
        for t in tables:
            assert t.largest_uncovered(key) == uncovered


# --- ScopedTables ------------------------------------------------------------------------------


def test_scoped_iid_separation(backend: str) -> None:
    s: ScopedTables[str] = ScopedTables(backend=backend)
    s.insert(0, "198.51.100.0/24", "iid0")
    s.insert(7, "198.51.100.0/24", "iid7")
    s.insert(7, "2001:db8:100::/48", "iid7 v6")
    assert s.lookup(0, packed("198.51.100.9"))[1] == "iid0"  # type: ignore[index]
    assert s.lookup(7, packed("198.51.100.9"))[1] == "iid7"  # type: ignore[index]
    assert s.lookup(3, packed("198.51.100.9")) is None
    assert s.lookup(0, packed("2001:db8:100::1")) is None
    assert s.lookup(7, IPv6Address("2001:db8:100::1"))[1] == "iid7 v6"  # type: ignore[index]
    assert s.lookup(7, "2001:db8:100::1")[1] == "iid7 v6"  # type: ignore[index]
    assert s.delete(0, "198.51.100.0/24") == "iid0"
    assert s.lookup(0, packed("198.51.100.9")) is None
    assert s.lookup(7, packed("198.51.100.9"))[1] == "iid7"  # type: ignore[index]
    assert s.exact(7, "198.51.100.0/24") == "iid7" and s.exact(0, "198.51.100.0/24") is None
    with pytest.raises(KeyError):
        s.delete(0, "198.51.100.0/24")
    with pytest.raises(KeyError):
        s.delete(12, "198.51.100.0/24")
    with pytest.raises(ValueError):
        s.lookup(0, b"\x00" * 5)
    with pytest.raises(ValueError):
        s.insert(MAX_IID + 1, "192.0.2.0/24", "x")
    with pytest.raises(ValueError):
        s.insert(-1, "192.0.2.0/24", "x")
    s.insert(MAX_IID, "192.0.2.0/24", "max")
    assert s.lookup(MAX_IID, packed("192.0.2.1"))[1] == "max"  # type: ignore[index]


def test_scoped_items_counts_and_order(backend: str) -> None:
    s: ScopedTables[int] = ScopedTables(backend=backend)
    s.insert(7, "2001:db8:100::/48", 1)
    s.insert(7, "198.51.100.0/24", 2)
    s.insert(0, "203.0.113.0/24", 3)
    s.insert(0, "198.51.100.0/24", 4)
    s.insert(0, "2001:db8::/32", 5)
    assert [(i, str(n), v) for i, n, v in s.items()] == [
        (0, "198.51.100.0/24", 4),
        (0, "203.0.113.0/24", 3),
        (0, "2001:db8::/32", 5),
        (7, "198.51.100.0/24", 2),
        (7, "2001:db8:100::/48", 1),
    ]
    assert s.count() == len(s) == 5
    assert s.count(0) == 3 and s.count(7, 6) == 1 and s.count(family=4) == 3
    assert s.count(99) == 0 and s.count(99, 4) == 0
    assert s.counts() == {(0, 4): 2, (0, 6): 1, (7, 4): 1, (7, 6): 1}
    assert s.instance_ids() == [0, 7]
    s.delete(7, "2001:db8:100::/48")
    s.delete(7, "198.51.100.0/24")
    assert s.instance_ids() == [0] and (7, 4) not in s.counts()
    table = s.table(0, 4)
    assert table is not None and len(table) == 2
    assert s.table(5, 4) is None
    s.clear(0)
    assert len(s) == 0 and s.table(0, 4) is table  # tables survive, so kept references stay valid
    assert s.covering(0, "192.0.2.0/24") == [] and s.more_specifics(3, "::/0") == []
    assert s.largest_uncovered(3, packed("192.0.2.1")) == IPv4Network("0.0.0.0/0")
    with pytest.raises(ValueError):
        s.count(family=5)


# --- entries -----------------------------------------------------------------------------------


def test_rloc_entry_validation() -> None:
    r = RlocEntry("2001:db8::1", 1, 100)  # type: ignore[arg-type]
    assert r.address == IPv6Address("2001:db8::1") and r.up and r.port == 4341
    with pytest.raises(ValueError):
        RlocEntry(IPv4Address("192.0.2.1"), 256, 0)
    with pytest.raises(ValueError):
        RlocEntry(IPv4Address("192.0.2.1"), 1, -1)
    with pytest.raises(ValueError):
        RlocEntry(IPv4Address("192.0.2.1"), 1, 1, port=0)
    with pytest.raises(AttributeError):
        r.up = False  # type: ignore[misc]


def test_map_cache_entry_rules() -> None:
    e = MapCacheEntry(0, "198.51.100.0/24", (RLOC_A,), ttl=60, created=100.0)  # type: ignore[arg-type]
    assert e.prefix == IPv4Network("198.51.100.0/24") and e.action == "encapsulate"
    assert e.expires == 160.0 and e.remaining(130.0) == 30.0 and e.remaining(999.0) == 0.0
    assert not e.is_expired(159.9) and e.is_expired(160.0) and not e.negative
    static = MapCacheEntry(0, IPv4Network("203.0.113.0/24"), [RLOC_B])  # type: ignore[arg-type]
    assert static.rlocs == (RLOC_B,) and static.expires is None and static.source == "static"
    assert not static.is_expired(1e12) and static.remaining(5.0) is None
    neg = MapCacheEntry(0, IPv4Network("192.0.2.0/24"), action="native-forward", ttl=15)
    assert neg.negative and neg.expires == 15.0
    stretched = MapCacheEntry(0, IPv4Network("192.0.2.0/24"), (RLOC_A,), ttl=60, expires=10.0)
    assert stretched.expires == 10.0
    with pytest.raises(ValueError, match="negative action"):
        MapCacheEntry(0, IPv4Network("192.0.2.0/24"))
    with pytest.raises(ValueError, match="RLOCs"):
        MapCacheEntry(0, IPv4Network("192.0.2.0/24"), (RLOC_A,), action="drop")
    with pytest.raises(ValueError, match="unknown action"):
        MapCacheEntry(0, IPv4Network("192.0.2.0/24"), action="forward")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        MapCacheEntry(1 << 24, IPv4Network("192.0.2.0/24"), (RLOC_A,))
    with pytest.raises(ValueError):
        MapCacheEntry(0, IPv4Network("192.0.2.0/24"), (RLOC_A,), ttl=-1)
    with pytest.raises(TypeError):
        MapCacheEntry(0, IPv4Network("192.0.2.0/24"), ("192.0.2.1",))  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        e.ttl = 5  # type: ignore[misc]
    d = DatabaseEntry(7, "2001:db8:100::/48", [RLOC_6])  # type: ignore[arg-type]
    assert d.prefix == IPv6Network("2001:db8:100::/48") and d.rlocs == (RLOC_6,)


# --- MapCache ----------------------------------------------------------------------------------


def mc_entry(
    iid: int, prefix: str, ttl: float | None = None, created: float = 0.0, rloc: RlocEntry = RLOC_A
) -> MapCacheEntry:
    return MapCacheEntry(
        iid, ip_network(prefix), (rloc,), ttl=ttl, created=created, source="map-reply"
    )


def test_map_cache_add_lookup_remove(backend: str) -> None:
    mc = MapCache(backend=backend)
    a = mc_entry(0, "198.51.100.0/24")
    b = mc_entry(0, "198.51.100.0/28", rloc=RLOC_B)
    c = mc_entry(7, "198.51.100.0/24", rloc=RLOC_B)
    v6 = mc_entry(0, "2001:db8:100::/48", rloc=RLOC_6)
    for e in (a, b, c, v6):
        assert mc.add(e) is None
    assert len(mc) == 4 and mc.count(0) == 3 and mc.count(family=6) == 1
    assert mc.lookup(0, packed("198.51.100.1")) is b
    assert mc.lookup(0, IPv4Address("198.51.100.100")) is a
    assert mc.lookup(7, packed("198.51.100.1")) is c
    assert mc.lookup(0, packed("2001:db8:100::9")) is v6
    assert mc.lookup(0, packed("203.0.113.1")) is None
    assert mc.get(0, "198.51.100.0/28") is b and mc.get(0, "198.51.100.0/25") is None
    assert mc.entries() == [a, b, v6, c] and list(mc) == mc.entries()
    assert mc.instance_ids() == [0, 7]
    assert mc.remove(0, "198.51.100.0/28") is b
    assert mc.lookup(0, packed("198.51.100.1")) is a
    with pytest.raises(KeyError):
        mc.remove(0, "198.51.100.0/28")
    a2 = mc_entry(0, "198.51.100.0/24", rloc=RLOC_B)
    assert mc.add(a2) is a and mc.lookup(0, packed("198.51.100.1")) is a2
    assert len(mc.tables.more_specifics(0, "198.51.0.0/16")) == 1


def test_map_cache_expiry_with_injected_clock(backend: str) -> None:
    mc = MapCache(backend=backend)
    short = mc_entry(0, "198.51.100.0/24", ttl=10, created=100.0)
    long = mc_entry(0, "198.51.100.0/28", ttl=60, created=100.0)
    static = mc_entry(0, "203.0.113.0/24")
    negative = MapCacheEntry(
        7, IPv6Network("2001:db8:200::/48"), action="send-map-request", ttl=5, created=100.0
    )
    for e in (short, long, static, negative):
        mc.add(e)
    assert mc.next_expiry() == 105.0
    # Without now, lookups ignore time; with now, an expired best match is a miss.
    assert mc.lookup(0, packed("198.51.100.200"), now=109.9) is short
    assert mc.lookup(0, packed("198.51.100.200"), now=110.0) is None
    assert mc.lookup(0, packed("198.51.100.200")) is short
    assert mc.lookup(0, packed("198.51.100.1"), now=110.0) is long
    generation = mc.generation
    assert mc.expire(104.0) == [] and mc.generation == generation
    assert mc.expire(110.0) == [negative, short]
    assert mc.generation > generation
    assert mc.next_expiry() == 160.0
    assert mc.lookup(0, packed("198.51.100.200"), now=110.0) is None
    assert mc.expire(1e9) == [long]
    assert mc.next_expiry() is None
    assert mc.entries() == [static]


def test_map_cache_refresh_replaces_expiry(backend: str) -> None:
    mc = MapCache(backend=backend)
    first = mc_entry(0, "198.51.100.0/24", ttl=10, created=0.0)
    mc.add(first)
    refreshed = mc_entry(0, "198.51.100.0/24", ttl=10, created=5.0)
    assert mc.add(refreshed) is first
    assert mc.next_expiry() == 15.0  # the stale deadline of ``first`` is skipped
    assert mc.expire(11.0) == []
    assert mc.lookup(0, packed("198.51.100.1"), now=11.0) is refreshed
    assert mc.expire(15.0) == [refreshed] and len(mc) == 0
    # Removed entries leave no deadline behind, and many refreshes keep the queue bounded.
    mc.add(mc_entry(0, "198.51.100.0/24", ttl=10, created=0.0))
    mc.remove(0, "198.51.100.0/24")
    assert mc.next_expiry() is None
    for t in range(10_000):
        mc.add(mc_entry(0, "198.51.100.0/24", ttl=10, created=float(t)))
    assert len(mc._heap) <= 2 * len(mc) + 65
    assert mc.next_expiry() == 10_009.0


def test_map_cache_generation_and_clear(backend: str) -> None:
    mc = MapCache(backend=backend)
    seen = [mc.generation]

    def bumped() -> bool:
        seen.append(mc.generation)
        return seen[-1] > seen[-2]

    mc.add(mc_entry(0, "198.51.100.0/24", ttl=30))
    assert bumped()
    mc.add(mc_entry(0, "198.51.100.64/26"))
    mc.add(mc_entry(0, "203.0.113.0/24"))
    mc.add(mc_entry(7, "198.51.100.0/24"))
    mc.add(mc_entry(7, "2001:db8:100::/48", rloc=RLOC_6))
    assert bumped()
    mc.add(mc_entry(0, "198.51.100.0/24"))  # replacing counts as a change
    assert bumped()
    mc.remove(0, "203.0.113.0/24")
    assert bumped()
    with pytest.raises(KeyError):
        mc.remove(0, "203.0.113.0/24")
    assert not bumped()
    removed = mc.clear(prefix="198.51.100.0/25")  # in every instance, more-specifics included
    assert [str(e.prefix) for e in removed] == ["198.51.100.64/26"]
    assert bumped()
    removed = mc.clear(7, "198.51.100.0/24")
    assert [(e.iid, str(e.prefix)) for e in removed] == [(7, "198.51.100.0/24")]
    assert mc.clear(7) == [mc_entry(7, "2001:db8:100::/48", rloc=RLOC_6)]
    assert bumped()
    assert mc.instance_ids() == [0]
    assert len(mc.clear()) == 1 and len(mc) == 0
    assert bumped()
    assert mc.next_expiry() is None
    mc.clear()
    assert bumped()  # every clear bumps, even an empty one
    assert "generation" in repr(mc)


def test_map_cache_default_backend_and_family_mismatch() -> None:
    mc = MapCache()
    mc.add(mc_entry(0, "0.0.0.0/0"))
    assert mc.lookup(0, packed("192.0.2.1")) is not None
    assert mc.lookup(0, packed("2001:db8::1")) is None  # v6 has its own (empty) table
    with pytest.raises(ValueError):
        mc.lookup(0, b"\x00" * 6)


# --- LocalDatabase -----------------------------------------------------------------------------


def test_local_database(backend: str) -> None:
    db = LocalDatabase(backend=backend)
    site4 = DatabaseEntry(0, IPv4Network("198.51.100.0/28"), (RLOC_A,))
    site6 = DatabaseEntry(0, IPv6Network("2001:db8:100::/64"), (RLOC_6,))
    other = DatabaseEntry(7, IPv4Network("198.51.100.0/28"), (RLOC_B,))
    g = db.generation
    for e in (other, site6, site4):
        assert db.add(e) is None
    assert db.generation > g and len(db) == 3
    assert db.lookup(0, packed("198.51.100.3")) is site4
    assert db.lookup(7, IPv4Address("198.51.100.3")) is other
    assert db.lookup(0, packed("2001:db8:100::1")) is site6
    assert db.contains(0, packed("198.51.100.15"))
    assert not db.contains(0, packed("198.51.100.16"))
    assert not db.contains(3, packed("198.51.100.1"))
    assert not db.contains(7, IPv6Address("2001:db8:100::1"))
    assert db.entries() == [site4, site6, other] and list(db) == db.entries()
    assert db.instance_ids() == [0, 7]
    assert db.get(7, "198.51.100.0/28") is other
    replacement = DatabaseEntry(7, IPv4Network("198.51.100.0/28"), (RLOC_A, RLOC_B))
    assert db.add(replacement) is other
    assert db.remove(7, "198.51.100.0/28") is replacement
    assert db.instance_ids() == [0]
    with pytest.raises(KeyError):
        db.remove(7, "198.51.100.0/28")
    assert db.tables.count() == 2 and "2 entries" in repr(db)


def test_evict_soonest_spares_static_entries(backend: str) -> None:
    mc = MapCache(backend=backend)
    static_soon = MapCacheEntry(
        0, IPv4Network("203.0.113.0/24"), action="drop", ttl=1, created=0.0, source="static"
    )
    later = mc_entry(0, "198.51.100.0/28", ttl=60, created=0.0)
    sooner = mc_entry(0, "198.51.100.16/28", ttl=30, created=0.0)
    for e in (static_soon, later, sooner):
        mc.add(e)
    generation = mc.generation
    assert mc.evict_soonest() is sooner and mc.generation > generation
    assert mc.evict_soonest() is later
    assert mc.evict_soonest() is None
    assert mc.entries() == [static_soon]
    assert mc.next_expiry() == 1.0  # the static entry still expires


# --- the RLOC index ------------------------------------------------------------------------

INDEX_RLOCS = (RLOC_A, RLOC_B, RLOC_6, RlocEntry(IPv4Address("192.0.2.9"), 1, 1))


def index_model(mc: MapCache) -> dict[object, set[tuple[int, Network]]]:
    """What MapCache.using should answer, by a walk over every entry."""
    model: dict[object, set[tuple[int, Network]]] = {}
    for entry in mc.entries():
        for rloc in entry.rlocs:
            model.setdefault(rloc.address, set()).add((entry.iid, entry.prefix))
    return model


def test_using_finds_the_entries_of_an_rloc_and_follows_every_change(backend: str) -> None:
    mc = MapCache(backend=backend)
    a, b = RLOC_A.address, RLOC_B.address
    both = MapCacheEntry(0, "198.51.100.0/28", (RLOC_A, RLOC_B), ttl=10, created=0.0)
    only_a = MapCacheEntry(7, "198.51.100.0/28", (RLOC_A,), ttl=20, created=0.0)
    mc.add(both)
    mc.add(only_a)
    mc.add(MapCacheEntry(0, "203.0.113.0/24", action="drop"))  # no RLOC: in no list
    assert sorted(map(id, mc.using(a))) == sorted(map(id, [both, only_a]))
    assert mc.using(b) == [both] and mc.uses(b)
    assert sorted(map(str, mc.rloc_addresses())) == ["192.0.2.1", "192.0.2.5"]
    moved = MapCacheEntry(0, "198.51.100.0/28", (RLOC_B,), ttl=30, created=0.0)
    mc.add(moved)  # replaces ``both``: no longer uses A
    assert mc.using(a) == [only_a] and mc.using(b) == [moved]
    assert mc.expire(25.0) == [only_a]
    assert not mc.uses(a) and mc.using(a) == []
    mc.remove(0, "198.51.100.0/28")
    assert mc.rloc_addresses() == [] and mc.using(b) == []


def test_an_rloc_listed_twice_in_one_entry_is_indexed_once(backend: str) -> None:
    mc = MapCache(backend=backend)
    twice = MapCacheEntry(0, "198.51.100.0/28", (RLOC_A, RlocEntry(RLOC_A.address, 2, 10)))
    mc.add(twice)
    assert mc.using(RLOC_A.address) == [twice]
    mc.clear()
    assert not mc.uses(RLOC_A.address)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["add", "add", "add", "remove", "clear", "clear-prefix", "expire",
                             "evict"]),
            st.sampled_from([0, 7]),
            st.sampled_from(["198.51.100.0/28", "198.51.100.0/29", "198.51.100.16/28",
                             "2001:db8::/64", "203.0.113.0/24"]),
            st.lists(st.sampled_from(INDEX_RLOCS), max_size=3),
            st.integers(1, 50),
        ),
        max_size=40,
    )
)  # fmt: skip
def test_property_the_index_matches_a_walk_over_the_map_cache(ops: list) -> None:
    """Whatever installs, replaces, removes, clears, expires and evicts: ``using`` and
    ``census`` answer exactly what a walk over every entry finds."""
    mc = MapCache()
    now = 0.0
    for kind, iid, prefix, rlocs, ttl in ops:
        now += 1.0
        if kind == "add":
            entry = (
                MapCacheEntry(iid, prefix, tuple(rlocs), ttl=ttl, created=now, source="map-reply")
                if rlocs
                else MapCacheEntry(iid, prefix, action="drop", ttl=ttl, created=now)
            )
            mc.add(entry)
        elif kind == "remove" and mc.get(iid, prefix) is not None:
            mc.remove(iid, prefix)
        elif kind == "clear":
            mc.clear(iid if ttl % 2 else None)
        elif kind == "clear-prefix":
            mc.clear(iid if ttl % 2 else None, "198.51.100.0/24" if ttl % 3 else "::/0")
        elif kind == "expire":
            mc.expire(now + ttl / 5)
        elif kind == "evict":
            mc.evict_soonest()
        model = index_model(mc)
        assert set(mc.rloc_addresses()) == set(model)
        census = Counter((e.iid, e.prefix.version, e.source) for e in mc.entries())
        assert mc.census() == dict(census)
        for rloc in INDEX_RLOCS:
            found = mc.using(rloc.address)
            assert {(e.iid, e.prefix) for e in found} == model.get(rloc.address, set())
            assert len(found) == len(model.get(rloc.address, ()))
            assert all(mc.get(e.iid, e.prefix) is e for e in found)  # the live entries
            assert mc.uses(rloc.address) == (rloc.address in model)


def test_still_using_keeps_the_entries_neither_replaced_nor_removed(backend: str) -> None:
    mc = MapCache(backend=backend)
    a = RLOC_A.address
    kept, moved, replaced, removed = (
        MapCacheEntry(0, f"198.51.100.{16 * k}/28", (RLOC_A,), ttl=60) for k in range(4)
    )
    for entry in (kept, moved, replaced, removed):
        mc.add(entry)
    snapshot = mc.using(a)
    assert len(snapshot) == 4
    mc.add(MapCacheEntry(0, moved.prefix, (RLOC_B,), ttl=60))  # no longer uses A
    fresh = MapCacheEntry(0, replaced.prefix, (RLOC_A,), ttl=90)
    mc.add(fresh)  # still uses A, but another entry now
    mc.remove(0, removed.prefix)
    assert list(mc.still_using(a, snapshot)) == [kept]
    assert list(mc.still_using(RLOC_6.address, snapshot)) == []  # an address nobody uses
    assert sorted(map(id, mc.using(a))) == sorted(map(id, [kept, fresh]))
