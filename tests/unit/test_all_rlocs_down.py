"""An ITR whose map-cache entry has every RLOC down keeps encapsulating to the best of them
(issue 21): the Python reference path and the compiled engine choose the same RLOC and count
the packets under ``itr.all-rlocs-down``.

RFC 9300 section 10 and RFC 9301 section 7.1 describe how an ITR learns that a locator is
unreachable (RLOC-probing among others) and that it moves its traffic to another locator of
the mapping; they leave open what to do when no locator is left.  lispd then uses the best
priority as if every RLOC were up, while probing goes on: a down verdict comes from lost probes,
and a peer that answers no probe yet (OOR for its first seconds, an xTR that just restarted)
may well take data.  Priority 255 still means "never for unicast" (RFC 9301 section 5.4).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from ipaddress import IPv4Address, ip_address, ip_network

import pytest

from lispd.dataplane.itr import DROP_NO_RLOC, Itr
from lispd.dataplane.outputs import Encap
from lispd.dataplane.rloc import (
    mapping_candidates,
    select_mapping_rloc,
    select_rloc,
    usable_candidates,
)
from lispd.engine.compiled import CompiledPath, forwarding_record
from lispd.mapcache import DatabaseEntry, LocalDatabase, MapCache, MapCacheEntry, RlocEntry
from lispd.stats import Counters
from tests.unit.fastpath_packets import packed, require_accel, udp_packet

SRC, DST = "198.51.100.10", "203.0.113.9"
LOCAL = IPv4Address("192.0.2.1")


def rloc(address: str, priority: int = 1, weight: int = 100, up: bool = True) -> RlocEntry:
    return RlocEntry(address, priority, weight, up=up)


def entry(*rlocs: RlocEntry, prefix: str = "203.0.113.0/24") -> MapCacheEntry:
    return MapCacheEntry(0, ip_network(prefix), rlocs)


def addresses(rlocs: list[RlocEntry]) -> list[str]:
    return [str(r.address) for r in rlocs]


# --- selection ---------------------------------------------------------------------------------


def test_one_rloc_up_is_used_and_nothing_falls_back() -> None:
    rlocs = (rloc("192.0.2.11", 1, up=False), rloc("192.0.2.12", 2), rloc("192.0.2.13", 2))
    chosen, all_down = mapping_candidates(rlocs, {4})
    assert addresses(chosen) == ["192.0.2.12", "192.0.2.13"] and not all_down
    assert chosen == usable_candidates(rlocs, {4})


def test_every_rloc_down_the_best_priority_is_used_with_its_weights() -> None:
    rlocs = (
        rloc("192.0.2.21", 2, up=False),
        rloc("192.0.2.22", 1, 30, up=False),
        rloc("192.0.2.23", 1, 70, up=False),
        rloc("192.0.2.24", 255, up=False),
    )
    chosen, all_down = mapping_candidates(rlocs, {4})
    assert addresses(chosen) == ["192.0.2.22", "192.0.2.23"] and all_down
    assert usable_candidates(rlocs, {4}) == []  # what PETRs and RTRs still go by
    picks = {h: select_mapping_rloc(rlocs, h, {4}) for h in range(100)}
    assert all(flag for _, flag in picks.values())
    shares = [
        sum(str(r.address) == a for r, _ in picks.values() if r)
        for a in ("192.0.2.22", "192.0.2.23")
    ]
    assert shares == [30, 70]  # the weights, as when they are up (RFC 9301 section 5.4)


def test_priority_255_and_foreign_families_never_fall_back() -> None:
    only_255 = (rloc("192.0.2.31", 255), rloc("192.0.2.32", 255, up=False))
    assert mapping_candidates(only_255, {4}) == ([], False)
    assert select_mapping_rloc(only_255, 7, {4}) == (None, False)
    ipv6_down = (rloc("2001:db8::1", 1, up=False), rloc("192.0.2.33", 3, up=False))
    chosen, all_down = mapping_candidates(ipv6_down, {4})
    assert addresses(chosen) == ["192.0.2.33"] and all_down  # the best one we can send to
    assert mapping_candidates(ipv6_down[:1], {4}) == ([], False)


def test_select_rloc_for_petrs_and_rtrs_still_skips_down_ones() -> None:
    """Only map-cache entries fall back: a down PETR or RTR is ``no-live-petr``/``-rtr``."""
    assert select_rloc([rloc("192.0.2.41", up=False)], 1, {4}) is None


# --- the Python reference path -----------------------------------------------------------------


def python_itr(mapcache: MapCache) -> Itr:
    database = LocalDatabase()
    database.add(DatabaseEntry(0, ip_network("198.51.100.0/24"), ()))
    return Itr(mapcache, database, {4: LOCAL}, 1500, Counters(), lambda: 1, lambda: 10.0)


def test_python_itr_encapsulates_to_a_down_rloc_and_counts_it() -> None:
    mapcache = MapCache()
    mapcache.add(entry(rloc("192.0.2.51", up=False), rloc("192.0.2.52", 2, up=False)))
    itr = python_itr(mapcache)
    pkt = udp_packet(packed(SRC), packed(DST))
    out = itr.handle(pkt)
    assert isinstance(out, Encap) and out.rloc == ip_address("192.0.2.51")
    assert itr.counters.packets["itr.all-rlocs-down.packets"] == 1
    assert itr.counters.packets["itr.all-rlocs-down.bytes"] == len(pkt)
    # Probing brings one back: ordinary forwarding, nothing counted.
    mapcache.add(entry(rloc("192.0.2.51", up=False), rloc("192.0.2.52", 2)))
    out = itr.handle(pkt)
    assert isinstance(out, Encap) and out.rloc == ip_address("192.0.2.52")
    assert itr.counters.packets["itr.all-rlocs-down.packets"] == 1


def test_python_itr_still_drops_when_no_rloc_is_for_unicast() -> None:
    mapcache = MapCache()
    mapcache.add(entry(rloc("192.0.2.61", 255, up=False)))
    itr = python_itr(mapcache)
    assert itr.handle(udp_packet(packed(SRC), packed(DST))) is DROP_NO_RLOC
    assert "itr.all-rlocs-down.packets" not in itr.counters.packets


# --- the compiled engine -----------------------------------------------------------------------


def test_forwarding_record_says_when_it_was_chosen_with_every_rloc_down() -> None:
    down = entry(rloc("192.0.2.71", 1, 10, up=False), rloc("192.0.2.72", 2, up=False))
    assert forwarding_record(down, {4}, (), None) == (
        [(packed("192.0.2.71"), 4341, 10, False)],
        True,
    )
    up = entry(rloc("192.0.2.71", 1, 10, up=False), rloc("192.0.2.72", 2))
    assert forwarding_record(up, {4}, (), None) == (
        [(packed("192.0.2.72"), 4341, 100, False)],
        False,
    )
    assert forwarding_record(entry(rloc("192.0.2.73", 255)), {4}, (), None) is None


@pytest.fixture
def wired() -> Iterator[tuple[socket.socket, socket.socket, socket.socket, socket.socket]]:
    """(our end of the fake TUN, the engine's end, the send socket, a receiver on 127.0.0.1)."""
    require_accel()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    theirs.setblocking(False)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2.0)
    yield ours, theirs, sender, receiver
    for s in (ours, theirs, sender, receiver):
        s.close()


def test_engine_and_python_send_to_the_down_rloc_and_count_alike(
    wired: tuple[socket.socket, socket.socket, socket.socket, socket.socket],
) -> None:
    """The same packets through the C engine (a real send to 127.0.0.1) and through the
    Python ITR: both encapsulate every one and count as many packets and bytes."""
    ours, theirs, sender, receiver = wired
    port = receiver.getsockname()[1]
    mapcache = MapCache()
    fast = CompiledPath(
        roles=["itr"],
        mtu=1500,
        tun_fd=theirs.fileno(),
        offloads=False,
        families=(4,),
        own_rlocs=(LOCAL,),
        nat_port=None,
    )
    fast.use_sockets({4: [sender]}, {})
    itr = python_itr(mapcache)
    fast.load_database(itr.database)
    fast.load_map_cache(mapcache)
    mapcache.listener = fast.on_map_cache
    dead = RlocEntry("127.0.0.1", 1, 100, up=False, port=port)
    mapcache.add(MapCacheEntry(0, ip_network("203.0.113.0/24"), (dead,)))
    packets = [udp_packet(packed(SRC), packed(DST), sport=1000 + i) for i in range(5)]
    punted: list[bytes] = []
    for pkt in packets:
        ours.send(pkt)
    fast.engine.from_tun(punted.append)
    assert punted == []  # the engine forwarded them all itself
    for pkt in packets:
        data, _ = receiver.recvfrom(4096)
        assert data[8:] == pkt  # behind the 8-byte LISP header
        out = itr.handle(pkt)
        assert isinstance(out, Encap) and out.rloc == dead.address and out.port == port
    c_counts = fast.counters()["packets"]
    py_counts = itr.counters.packets
    assert c_counts["itr.all-rlocs-down.packets"] == py_counts["itr.all-rlocs-down.packets"] == 5
    assert c_counts["itr.all-rlocs-down.bytes"] == py_counts["itr.all-rlocs-down.bytes"]
    assert c_counts["itr.all-rlocs-down.bytes"] == sum(map(len, packets))
    assert c_counts["itr.encap.packets"] == 5

    # The RLOC is up again (a probe answered): the listener reissues an ordinary record.
    mapcache.add(
        MapCacheEntry(0, ip_network("203.0.113.0/24"), (RlocEntry("127.0.0.1", 1, 100, port=port),))
    )
    ours.send(packets[0])
    fast.engine.from_tun(punted.append)
    assert punted == [] and receiver.recvfrom(4096)[0][8:] == packets[0]
    assert fast.counters()["packets"]["itr.all-rlocs-down.packets"] == 5
    assert fast.counters()["packets"]["itr.encap.packets"] == 6
    assert fast.engine_packets() == {"main": 6}  # the sub-counter is not counted twice
    fast.close()
