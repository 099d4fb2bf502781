"""The compiled fast path's table (lpm.c: a hash per prefix length, per instance-ID and family)
against the map-cache's longest-prefix match (lispd.mapcache.MapCache.lookup), under churn."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv6Address, ip_network
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lispd.engine.compiled import CompiledPath
from lispd.mapcache import MapCache, MapCacheEntry, RlocEntry
from tests.unit.fastpath_packets import packed, require_accel

_accel = require_accel()

RLOC4 = packed("192.0.2.1")
IIDS = [0, 1, 77, 0xFFFFFE]
# every prefix and address comes from the documentation ranges: the short prefixes are the
# ones covering them
BASES4 = [int(IPv4Address(a)) for a in ("192.0.2.0", "198.51.100.0", "203.0.113.0")]
BASE6 = int(IPv6Address("2001:db8::"))


def random_address(rng: random.Random, version: int) -> bytes:
    """An address in one of the documentation ranges."""
    if version == 4:
        return (rng.choice(BASES4) | rng.getrandbits(8)).to_bytes(4, "big")
    low = rng.getrandbits(96)
    if rng.random() < 0.5:  # near others: share a random number of leading bits
        low &= ~((1 << rng.randrange(96)) - 1)
    return (BASE6 | low).to_bytes(16, "big")


def random_prefix(rng: random.Random, version: int) -> tuple[bytes, int]:
    """A prefix (host bits set sometimes: the engine masks them) of any length."""
    return random_address(rng, version), rng.randrange(33 if version == 4 else 129)


def make_entry(iid: int, prefix: bytes, plen: int, tag: int) -> MapCacheEntry:
    """A map-cache entry whose one RLOC's port is ``tag`` (a negative entry for tag 0)."""
    net = ip_network((prefix, plen), strict=False)
    if tag == 0:
        return MapCacheEntry(iid, net, (), "drop")
    return MapCacheEntry(iid, net, (RlocEntry(IPv4Address(RLOC4), 1, 1, port=tag),))


def engine_following(mapcache: MapCache) -> Any:
    """An engine whose map table follows ``mapcache`` through the listener."""
    fast = CompiledPath(
        roles=["itr"],
        mtu=1500,
        tun_fd=-1,
        offloads=False,
        families={4, 6},
        own_rlocs=(),
        nat_port=None,
    )
    fast.load_map_cache(mapcache)
    mapcache.listener = fast.on_map_cache
    return fast.engine


def same_answer(engine: Any, mapcache: MapCache, iid: int, address: bytes) -> None:
    """The engine's record for ``address`` is the map-cache's longest match."""
    expected = mapcache.lookup(iid, address)
    got = engine.lookup(iid, address)
    if expected is None:
        assert got is None, (iid, address.hex())
    elif expected.negative:
        assert got == [], (iid, address.hex(), expected)
    else:
        assert got == [(RLOC4, expected.rlocs[0].port, 1, False)], (iid, address.hex(), expected)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.sampled_from([20, 200, 1500]))
def test_lookup_is_the_map_cache_longest_match_under_churn(seed: int, size: int) -> None:
    rng = random.Random(seed)
    mapcache = MapCache()
    engine = engine_following(mapcache)
    tags = iter(range(1, 65536))
    for step in range(size * 2):
        live = mapcache.entries()
        action = rng.random()
        if live and action < 0.3:
            gone = rng.choice(live)
            mapcache.remove(gone.iid, gone.prefix)
        elif live and action < 0.4:  # replace: same prefix, another record
            old = rng.choice(live)
            prefix = old.prefix.network_address.packed
            mapcache.add(make_entry(old.iid, prefix, old.prefix.prefixlen, next(tags)))
        else:
            version = rng.choice([4, 6])
            prefix, plen = random_prefix(rng, version)
            tag = 0 if rng.random() < 0.1 else next(tags)
            mapcache.add(make_entry(rng.choice(IIDS), prefix, plen, tag))
        if step % max(1, size // 4) == 0:
            assert len(engine) == len(mapcache)
            for _ in range(50):
                version = rng.choice([4, 6])
                same_answer(engine, mapcache, rng.choice(IIDS), random_address(rng, version))
    for e in mapcache.entries():  # every stored prefix, at its first and last address
        for address in (e.prefix.network_address, e.prefix.broadcast_address):
            same_answer(engine, mapcache, e.iid, address.packed)
            same_answer(engine, mapcache, e.iid ^ 1, address.packed)
    assert engine.memory() > 0
    mapcache.clear()
    assert len(engine) == 0
    for _ in range(20):
        assert engine.lookup(rng.choice(IIDS), random_address(rng, 4)) is None


def every_length(address: str) -> list[tuple[bytes, int]]:
    """One prefix of each length, /0 to the full length, none of them but /0 covering another
    documentation range: ``address``'s prefixes from the length of its documentation range
    on, and below it the prefixes of the complement of ``address`` (all documentation ranges
    start with bit 1 in IPv4, with 2001:db8 in IPv6: the complement's prefixes cover none)."""
    version = 4 if "." in address else 6
    bits, doc = (32, 24) if version == 4 else (128, 32)
    value = int(IPv4Address(address) if version == 4 else IPv6Address(address))
    out = []
    for plen in range(bits + 1):
        source = ~value & ((1 << bits) - 1) if plen <= doc else value
        net = source >> (bits - plen) << (bits - plen)
        out.append((net.to_bytes(bits // 8, "big"), plen))
    return out


def probes(address: str) -> list[bytes]:
    """``address`` and the addresses differing from it in one bit past its documentation
    range's length (each one's longest match is one length shorter), plus addresses of the
    other documentation ranges (their longest match is the default route)."""
    version = 4 if "." in address else 6
    bits, doc = (32, 24) if version == 4 else (128, 32)
    value = int(IPv4Address(address) if version == 4 else IPv6Address(address))
    out = [
        (value ^ (1 << (bits - plen))).to_bytes(bits // 8, "big")
        for plen in range(doc + 1, bits + 1)
    ]
    others = ["192.0.2.1", "198.51.100.1"] if version == 4 else []
    return [value.to_bytes(bits // 8, "big"), *out, *(packed(a) for a in others)]


def test_every_ipv4_length_at_once_and_the_default_route() -> None:
    mapcache = MapCache()
    engine = engine_following(mapcache)
    for prefix, plen in every_length("203.0.113.77"):
        mapcache.add(make_entry(0, prefix, plen, 1000 + plen))
    assert len(engine) == 33
    for probe in probes("203.0.113.77"):
        same_answer(engine, mapcache, 0, probe)
    assert engine.lookup(0, packed("192.0.2.1")) == [(RLOC4, 1000, 1, False)]
    assert engine.lookup(0, packed("203.0.113.76")) == [(RLOC4, 1031, 1, False)]


def test_every_ipv6_length_but_one() -> None:
    """128 lengths in one scope: /0 and /2../128 (see the next test for all 129)."""
    mapcache = MapCache()
    engine = engine_following(mapcache)
    for prefix, plen in every_length("2001:db8::1"):
        if plen != 1:
            mapcache.add(make_entry(0, prefix, plen, 1000 + plen))
    assert len(engine) == 128
    for probe in probes("2001:db8::1"):
        same_answer(engine, mapcache, 0, probe)
    assert engine.lookup(0, packed("2001:db8:8000::1")) == [(RLOC4, 1000, 1, False)]


def test_every_ipv6_length_including_the_default_route() -> None:
    engine = _accel.Engine()
    for prefix, plen in every_length("2001:db8::1"):
        engine.map_set(0, prefix, plen, [(RLOC4, 1000 + plen, 1, False)])
    assert len(engine) == 129
    assert engine.lookup(0, packed("2001:db8::1")) == [(RLOC4, 1128, 1, False)]
    # 2001:db8:8000::1 is covered by ::/0 only
    assert engine.lookup(0, packed("2001:db8:8000::1")) == [(RLOC4, 1000, 1, False)]


def test_scopes_are_apart_by_instance_and_family() -> None:
    engine = _accel.Engine()
    engine.map_set(0, bytes(4), 0, [(RLOC4, 4000, 1, False)])
    engine.map_set(0, bytes(16), 0, [(RLOC4, 6000, 1, False)])
    engine.map_set(0xFFFFFF, bytes(4), 0, None)
    assert engine.lookup(0, packed("198.51.100.1"))[0][1] == 4000
    assert engine.lookup(0, packed("2001:db8::1"))[0][1] == 6000
    assert engine.lookup(0xFFFFFF, packed("198.51.100.1")) == []  # a punt record
    assert engine.lookup(1, packed("198.51.100.1")) is None
    assert engine.lookup(0xFFFFFF, packed("2001:db8::1")) is None
    assert len(engine) == 3


def test_host_bits_are_masked_and_records_replaced_in_place() -> None:
    engine = _accel.Engine()
    engine.map_set(5, packed("203.0.113.77"), 24, [(RLOC4, 1, 1, False)])
    engine.map_set(5, packed("203.0.113.0"), 24, [(RLOC4, 2, 1, True)])
    assert len(engine) == 1
    assert engine.lookup(5, packed("203.0.113.200")) == [(RLOC4, 2, 1, True)]
    assert engine.map_remove(5, packed("203.0.113.9"), 24) is True
    assert engine.map_remove(5, packed("203.0.113.9"), 24) is False
    assert engine.lookup(5, packed("203.0.113.200")) is None and len(engine) == 0


def test_records_keep_rloc_order_weights_ports_and_families() -> None:
    engine = _accel.Engine()
    rlocs = [
        (packed("192.0.2.1"), 4341, 0, False),
        (packed("2001:db8:ffff::1"), 61000, 255, True),
        (packed("192.0.2.2"), 1, 7, False),
    ]
    engine.map_set(3, packed("2001:db8:a::"), 48, rlocs)
    assert engine.lookup(3, packed("2001:db8:a::9")) == rlocs


@pytest.mark.parametrize(
    "args",
    [
        (0, b"\x00" * 5, 8, None),  # an address is 4 or 16 bytes
        (0, bytes(4), 33, None),
        (0, bytes(16), 129, None),
        (0, bytes(4), -1, None),
        (0x1000000, bytes(4), 8, None),  # instance-IDs are 24 bits
        (0, bytes(4), 8, [(bytes(4), 0, 1, False)]),  # port 0
        (0, bytes(4), 8, [(bytes(4), 4341, 256, False)]),  # weight > 255
        (0, bytes(4), 8, [(bytes(3), 4341, 1, False)]),
        (0, bytes(4), 8, [(bytes(4), 4341, 1, False)] * 256),  # at most 255 RLOCs
        (0, bytes(4), 8, 5),  # not a sequence
    ],
)
def test_map_set_refuses_bad_records(args: tuple[object, ...]) -> None:
    engine = _accel.Engine()
    with pytest.raises((ValueError, TypeError)):
        engine.map_set(*args)
    assert len(engine) == 0 and engine.memory() == 0


@pytest.mark.parametrize("rloc", [[bytes(4), 4341, 1, False], "x"])
def test_map_set_refuses_an_rloc_that_is_not_a_tuple_with_type_error(rloc: object) -> None:
    engine = _accel.Engine()
    with pytest.raises(TypeError):
        engine.map_set(0, bytes(4), 8, [rloc])


def test_memory_and_clear() -> None:
    engine = _accel.Engine()
    assert engine.memory() == 0
    for n in range(1000):
        engine.map_set(
            0, (0xC0000200 + n % 256).to_bytes(4, "big"), 24 + n % 9, [(RLOC4, 1, 1, False)]
        )
    assert len(engine) == len({(n % 256 >> (8 - n % 9), n % 9) for n in range(1000)})
    grown = engine.memory()
    assert grown > 1000
    engine.map_clear()
    assert len(engine) == 0 and engine.memory() < grown
    assert engine.lookup(0, packed("192.0.2.1")) is None
    engine.db_set(0, packed("192.0.2.0"), 24)
    assert engine.memory() > 0 and len(engine) == 0  # the database is not records


def test_bench_lookup_counts_hits() -> None:
    engine = _accel.Engine()
    engine.map_set(0, packed("198.51.100.0"), 24, [(RLOC4, 1, 1, False)])
    engine.map_set(0, packed("2001:db8::"), 32, [(RLOC4, 1, 1, False)])
    v4 = packed("198.51.100.1") + packed("198.51.100.2") + packed("203.0.113.1")
    ns, hits = engine.bench_lookup(0, v4, 4, 10)
    assert hits == 20 and ns > 0
    v6 = packed("2001:db8::1") + packed("2001:db8:1::1") + bytes(16)
    assert engine.bench_lookup(0, v6, 16, 3)[1] == 6
    assert engine.bench_lookup(9, v6, 16, 3)[1] == 0
    with pytest.raises(ValueError):
        engine.bench_lookup(0, v4, 8, 1)
    with pytest.raises(ValueError):
        engine.bench_lookup(0, v4, 4, 0)
