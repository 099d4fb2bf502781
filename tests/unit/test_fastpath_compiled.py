"""The compiled fast path (lispd.engine._accel) against the pure-Python reference: both pass
the same test vectors.

* flow hash: ``_accel.flow_hash`` is ``inner.flow_hash(inner.parse_inner(...))`` on any bytes;
* ITR: ``Engine.encap`` against ``Itr.handle`` over one map-cache and local database (the C
  tables loaded the way the daemon loads them, through :class:`CompiledPath`);
* ETR / RTR / RTR+ETR: ``Engine.datagram`` against ``Etr.handle``, ``Rtr.handle`` and the
  node's dispatch between the two;
* ``complete_checksum`` (the partial checksums a TUN with a virtio-net header hands over).

What the compiled path leaves to Python ("punts") is fine whenever the Python path decides;
where Python would encapsulate or decapsulate and C still punts, the reason must be one the
design names, checked here case by case:

* ITR and RTR: LISP-Traces (stamped in Python); a mapping whose forwarding record is "punt"
  because one of its usable RLOCs has an Explicit Locator Path or is this node (Python then
  encapsulates the flows that land on another RLOC); a PITR's packets from non-EID sources;
* ETR: LISP-Traces; a PETR's datagrams for destinations outside the local database; and, in
  ``from_udp`` only (``datagram`` skips it), the first datagram of every ITR not seen since
  the last ``forget_sources`` (Python keeps the list of recent ITRs it sends SMRs to).

The other way round, C encapsulates with a map-cache entry whose TTL ran out until the node's
timer expires it (Python already sees a miss): see
test_itr_keeps_an_expired_entry_until_the_map_cache_expires_it.  Segmenting and merging TCP:
test_fastpath_offloads.py; the table: test_fastpath_lpm.py.
"""

from __future__ import annotations

import functools
import socket
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lispd.dataplane.etr import Etr
from lispd.dataplane.inner import flow_hash, inner_destination, parse_inner
from lispd.dataplane.itr import Itr
from lispd.dataplane.outputs import Drop, Encap, Miss, Output, ToTun
from lispd.dataplane.rloc import mapping_candidates
from lispd.dataplane.rtr import Rtr
from lispd.dataplane.tracing import is_trace
from lispd.engine.compiled import CompiledPath, forwarding_record
from lispd.mapcache import DatabaseEntry, LocalDatabase, MapCache, MapCacheEntry, Network, RlocEntry
from lispd.stats import Counters
from lispd.wire.data import DATA_HEADER_LEN, read_data_header
from lispd.wire.ip import internet_checksum
from tests.unit.fastpath_packets import (
    PROTO_TCP,
    PROTO_UDP,
    inner_packets,
    ip_packet,
    ipv4,
    ipv4_checksum_ok,
    ipv6,
    lisp_header,
    mangled,
    packed,
    pseudo_header,
    require_accel,
    tcp_packet,
    transport_checksum_ok,
    udp_packet,
    vnet_header,
)

_accel = require_accel()

IPAddress = IPv4Address | IPv6Address
FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The engine dup()s the sockets it is given and reports the caller's numbers in its decisions:
# real descriptors, held open for the whole module (nothing is sent through them).
_SOCKETS = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(13)]
POOL = {4: [s.fileno() for s in _SOCKETS[:8]], 6: [s.fileno() for s in _SOCKETS[8:11]]}
DATA_FD = {4: _SOCKETS[11].fileno(), 6: _SOCKETS[12].fileno()}
PY_NONCE = 0xABCDEF


def entry(
    prefix: str, *rlocs: RlocEntry, iid: int = 0, action: str = "encapsulate"
) -> MapCacheEntry:
    """A static map-cache entry."""
    return MapCacheEntry(iid, ip_network(prefix), rlocs, action)  # type: ignore[arg-type]


def rloc(address: str, priority: int = 1, weight: int = 100, **kw: Any) -> RlocEntry:
    """An RLOC of a map-cache entry."""
    return RlocEntry(address, priority, weight, **kw)


def wire_engine(fast: CompiledPath, mapcache: MapCache, database: LocalDatabase) -> Any:
    """Give ``fast`` the test's socket numbers and the node's tables the way the daemon does
    (load everything, then follow the map-cache through its listener); return the engine."""
    engine = fast.engine
    for version, fds in POOL.items():
        engine.set_pool(version, fds)
        engine.set_data_socket(version, DATA_FD[version])
    fast.load_database(database)
    fast.load_map_cache(mapcache)
    mapcache.listener = fast.on_map_cache
    return engine


def expected_fd(out: Encap) -> int:
    """The socket the daemon sends ``out`` from (lispd.io.udp.Sender)."""
    version = out.rloc.version
    if out.data_port:
        return DATA_FD[version]
    pool = POOL[version]
    return pool[out.flow_hash % len(pool)]


def assert_same_encap(c: tuple[bytes, int, int, int, int, bytes], py: Output, iid: int) -> None:
    """The engine's (rloc, port, fd, ttl, tos, payload) is the Python Encap ``py`` (all but
    the random nonce), in instance ``iid``."""
    assert type(py) is Encap, f"C encapsulates, Python says {py}"
    address, port, fd, ttl, tos, payload = c
    assert ip_address(address) == py.rloc
    assert (port, ttl, tos) == (py.port, py.ttl, py.tos)
    assert fd == expected_fd(py)
    assert payload[DATA_HEADER_LEN:] == py.payload[DATA_HEADER_LEN:]
    assert payload[0] == py.payload[0] == 0x88  # N and I bits
    assert payload[4:8] == py.payload[4:8] == iid.to_bytes(3, "big") + b"\x00"
    assert read_data_header(payload) == (iid, 0)


# --- flow hash -------------------------------------------------------------------------------

SOURCES = {  # local EIDs of iids 0, 7 (and 3), twice each to draw them more often, and others
    4: ["198.51.100.10", "198.51.100.200"] * 2 + ["203.0.113.250", "192.0.2.1"],
    6: ["2001:db8:1::10", "2001:db8:7::10", "2001:db8:3::10"] * 2 + ["2001:db8:dead::1"],
}
DESTINATIONS = {
    4: [
        *(f"203.0.113.{n}" for n in (1, 2, 3, 5, 6, 7, 9, 12, 17, 20, 33, 50, 60, 70, 100)),
        *(f"203.0.113.{n}" for n in (129, 140, 200, 230, 250)),
        "192.0.2.77",
        "198.51.100.99",
        "224.0.0.5",
        "239.1.2.3",
        "255.255.255.255",
    ],
    6: [
        "2001:db8:a::1",
        "2001:db8:a::ffff",
        "2001:db8:a:1::1",
        "2001:db8:a:2::1",
        "2001:db8:a:3::1",
        "2001:db8:b::1",
        "2001:db8:1::99",
        "ff02::1",
        "ff05::2",
    ],
}
PACKETS = inner_packets(SOURCES, DESTINATIONS)
ANY_BYTES = st.one_of(
    PACKETS,
    mangled(PACKETS),
    mangled(PACKETS),
    st.binary(max_size=80),
    st.binary(min_size=20, max_size=60).map(lambda b: bytes([0x45]) + b[1:]),
    st.binary(min_size=40, max_size=60).map(lambda b: bytes([0x60]) + b[1:]),
)


@FAST
@given(ANY_BYTES)
def test_flow_hash_is_the_python_hash_and_none_exactly_when_parse_inner_is(pkt: bytes) -> None:
    flow = parse_inner(pkt)
    if flow is None:
        assert _accel.flow_hash(pkt) is None
    else:
        assert _accel.flow_hash(pkt) == flow_hash(flow)


def test_flow_hash_vectors_by_hand() -> None:
    src, dst = packed("198.51.100.1"), packed("203.0.113.1")
    src6, dst6 = packed("2001:db8:1::1"), packed("2001:db8:2::1")
    udp = udp_packet(src, dst, 1, 2)
    cases = [
        udp,
        udp_packet(src6, dst6, 1, 2),
        tcp_packet(src, dst, sport=5, dport=6),
        ipv4(src, dst, 132, struct.pack("!HHI", 7, 8, 1)),  # SCTP
        ipv4(src, dst, 1, b"\x08\x00\x00\x00abcd"),  # ICMP: no ports
        ipv4(src, dst, 17, udp[20:], mf=True),  # first fragment: no ports
        ipv4(src, dst, 17, udp[20:], frag_offset=3),  # later fragment
        ipv4(src, dst, 17, udp[20:], options=b"\x01" * 8),  # ports after the options
        ipv4(src, dst, 17, b"\x00\x01\x00"),  # 3 bytes: too short for ports
        ipv6(src6, dst6, 44, b"\x11\x00\x00\x01" + bytes(4) + udp[20:]),  # fragment header
    ]
    for pkt in cases:
        flow = parse_inner(pkt)
        assert flow is not None
        assert _accel.flow_hash(pkt) == flow_hash(flow)
    assert _accel.flow_hash(udp[:-1]) is None
    assert _accel.flow_hash(b"") is None
    assert _accel.flow_hash(memoryview(udp)) == _accel.flow_hash(bytearray(udp))


# --- ITR -------------------------------------------------------------------------------------

LOCAL_RLOCS: dict[int, IPAddress] = {
    4: IPv4Address("192.0.2.1"),
    6: IPv6Address("2001:db8:ffff::1"),
}
NATED = IPv4Address("192.0.2.71")  # an RLOC whose translated port the RTR knows
NAT_PORT = 61000


def nat_port(address: IPAddress, _iid: int, _prefix: Network | None) -> int | None:
    """The translated port of the one NATed RLOC (whatever the EID-prefix)."""
    return NAT_PORT if address == NATED else None


def itr_database() -> LocalDatabase:
    """Local EID-prefixes in three instances, overlapping so that the lowest iid must win."""
    database = LocalDatabase()
    own = (rloc("192.0.2.1"),)
    for iid, prefix in [
        (0, "198.51.100.0/25"),
        (0, "2001:db8:1::/48"),
        (7, "198.51.100.0/24"),
        (7, "2001:db8:7::/48"),
        (7, "2001:db8:1::/56"),
        (3, "2001:db8:3::/48"),
    ]:
        database.add(DatabaseEntry(iid, ip_network(prefix), own))
    return database


ITR_ENTRIES = [
    # iid 0, IPv4 EIDs
    entry(
        "203.0.113.0/24",
        rloc("192.0.2.11", 1, 30),
        rloc("192.0.2.12", 1, 70),
        rloc("192.0.2.13", 2),
    ),
    entry("203.0.113.128/25", rloc("2001:db8:ffff::21", 1, 50), rloc("192.0.2.22", 1, 0)),
    entry("203.0.113.192/26", action="drop"),
    entry("203.0.113.224/27", action="send-map-request"),
    entry("203.0.113.64/26", rloc("192.0.2.31", 1, up=False), rloc("192.0.2.32", 255)),
    entry("203.0.113.32/28", rloc("192.0.2.35", 255), rloc("192.0.2.36", 255, up=False)),
    entry("203.0.113.96/27", action="native-forward"),
    entry("203.0.113.16/28", rloc("192.0.2.41", elp=("192.0.2.41", "192.0.2.42"))),
    entry("203.0.113.8/29", rloc("192.0.2.1", 1, 50), rloc("192.0.2.51", 1, 50)),  # own RLOC
    entry(
        "203.0.113.4/30",
        rloc("192.0.2.61", 1, 0),
        rloc("192.0.2.62", 1, 0),
        rloc("192.0.2.63", 1, 0),
    ),
    entry("203.0.113.2/31", rloc("192.0.2.71", 1, 50), rloc("192.0.2.72", 1, 50, port=4342)),
    entry(
        "203.0.113.48/28",
        rloc("192.0.2.81", 1, up=False),
        rloc("192.0.2.82", 2, 10),
        rloc("192.0.2.83", 2, 20),
    ),
    # iid 0, IPv6 EIDs
    entry("2001:db8:a::/48", rloc("2001:db8:ffff::a1", 1, 40), rloc("2001:db8:ffff::a2", 1, 60)),
    entry("2001:db8:a:1::/64", rloc("192.0.2.91", 1, 1)),
    entry("2001:db8:a:2::/64", rloc("2001:db8:ffff::b1", port=4342)),
    entry("2001:db8:a:3::/64", action="drop"),
    # iid 7
    entry("203.0.113.0/24", rloc("192.0.2.101"), iid=7),
    entry("0.0.0.0/0", rloc("192.0.2.102"), iid=7),
    entry("::/0", rloc("2001:db8:ffff::c1"), iid=7),
    # iid 3
    entry("::/0", rloc("192.0.2.111", 1, 5), rloc("2001:db8:ffff::c2", 1, 5), iid=3),
    entry("2001:db8:a::/48", rloc("2001:db8:ffff::c3"), iid=3),
]


@dataclass
class ItrWorld:
    """A Python ITR and a compiled engine over one map-cache and local database."""

    itr: Itr
    engine: Any
    mapcache: MapCache
    database: LocalDatabase
    families: frozenset[int]
    mtu: int


ITR_CONFIGS = [(frozenset({4, 6}), 1500), (frozenset({4}), 1400), (frozenset({6}), 1300)]


@functools.cache
def itr_world(families: frozenset[int], mtu: int) -> ItrWorld:
    """The ITR of ``families`` (its local RLOCs) and underlay ``mtu``; half the map-cache is
    loaded before the engine starts, the rest arrives through the listener."""
    mapcache, database = MapCache(), itr_database()
    half = len(ITR_ENTRIES) // 2
    for e in ITR_ENTRIES[:half]:
        mapcache.add(e)
    local = {v: a for v, a in LOCAL_RLOCS.items() if v in families}
    itr = Itr(
        mapcache,
        database,
        local,
        mtu,
        Counters(),
        lambda: PY_NONCE,
        lambda: 1000.0,
        nat_port=nat_port,
    )
    fast = CompiledPath(
        roles=["itr", "etr"],
        mtu=mtu,
        tun_fd=-1,
        offloads=False,
        families=itr.families,
        own_rlocs=itr.own_rlocs,
        nat_port=itr.nat_port,
    )
    engine = wire_engine(fast, mapcache, database)
    for e in ITR_ENTRIES[half:]:
        mapcache.add(e)
    assert len(engine) == len(ITR_ENTRIES)
    return ItrWorld(itr, engine, mapcache, database, itr.families, mtu)


def documented_itr_punt(world: ItrWorld, pkt: bytes, iid: int | None = None) -> str | None:
    """Why the compiled path may leave a packet Python encapsulates to Python: a LISP-Trace
    (stamped in Python), or a mapping whose forwarding record is "punt" because one of its
    usable RLOCs has an Explicit Locator Path or is this node (Python then decides per flow
    and encapsulates flows that land on another RLOC).  None: no such reason."""
    if is_trace(pkt):
        return "trace"
    flow = parse_inner(pkt)
    assert flow is not None
    if iid is None:
        iid = world.itr.instance_for_source(flow.src)
    assert iid is not None
    found = world.mapcache.lookup(iid, flow.dst)
    assert found is not None
    candidates, _ = mapping_candidates(found.rlocs, world.families)
    if any(r.elp for r in candidates):  # type: ignore[attr-defined]
        return "elp"
    if any(r.address in world.itr.own_rlocs for r in candidates):
        return "own-rloc"
    return None


def check_itr(world: ItrWorld, pkt: bytes) -> str:
    """One packet through both ITRs; returns what happened (for the tests' tallies)."""
    py = world.itr.handle(pkt)
    c = world.engine.encap(pkt)
    if c is not None:
        assert not is_trace(pkt), "a LISP-Trace must go to Python (to be stamped)"
        flow = parse_inner(pkt)
        assert flow is not None
        iid = world.itr.instance_for_source(flow.src)
        assert iid is not None
        assert_same_encap(c, py, iid)
        assert _accel.flow_hash(pkt) == py.flow_hash  # type: ignore[union-attr]
        return "encap"
    if type(py) is Encap:
        why = documented_itr_punt(world, pkt)
        assert why is not None, f"C punts a packet Python encapsulates: {pkt.hex()}"
        return "punt-" + why
    assert type(py) in (Drop, Miss, ToTun)
    return "punt"


@pytest.mark.parametrize(("families", "mtu"), ITR_CONFIGS)
@FAST
@given(pkt=PACKETS)
def test_itr_decisions_match_python(families: frozenset[int], mtu: int, pkt: bytes) -> None:
    check_itr(itr_world(families, mtu), pkt)


@pytest.mark.parametrize(("families", "mtu"), ITR_CONFIGS)
@settings(max_examples=200, deadline=None)
@given(pkt=st.one_of(mangled(PACKETS), st.binary(max_size=60)))
def test_itr_punts_what_python_rejects(families: frozenset[int], mtu: int, pkt: bytes) -> None:
    check_itr(itr_world(families, mtu), pkt)


# what each destination from a local EID of iid 0 gets, families {4, 6} and MTU 1500
ITR_TABLE = [
    ("203.0.113.1", "encap"),  # /24, weights 30/70 at priority 1
    ("203.0.113.129", "encap"),  # /25, an IPv6 RLOC next to a weight-0 IPv4 one
    ("203.0.113.200", "punt"),  # negative: drop
    ("203.0.113.230", "punt"),  # negative: send-map-request
    ("203.0.113.70", "encap"),  # the only unicast RLOC down: used anyway (rloc.py)
    ("203.0.113.40", "punt"),  # no usable RLOC (priority 255 only)
    ("203.0.113.100", "punt"),  # native-forward (no PETR)
    ("203.0.113.17", "punt-elp"),  # ELP
    ("203.0.113.9", "own-rloc"),  # one RLOC is this node: punt or encap by flow
    ("203.0.113.5", "encap"),  # all weights 0: equal shares
    ("203.0.113.2", "encap"),  # a NATed RLOC (via the data socket) and port 4342
    ("203.0.113.50", "encap"),  # priority 1 down: priority 2 shared 10/20
    ("192.0.2.77", "punt"),  # no entry in iid 0: a miss
    ("224.0.0.5", "punt"),  # multicast
    ("2001:db8:a::1", "encap"),
    ("2001:db8:a:1::1", "encap"),  # IPv6 EID, IPv4 RLOC
    ("2001:db8:a:2::1", "encap"),  # port 4342
    ("2001:db8:a:3::1", "punt"),  # drop
    ("2001:db8:b::1", "punt"),  # miss
    ("ff02::1", "punt"),  # multicast
]


@pytest.mark.parametrize(("dst", "outcome"), ITR_TABLE)
def test_itr_table_of_destinations(dst: str, outcome: str) -> None:
    world = itr_world(frozenset({4, 6}), 1500)
    src = "198.51.100.10" if "." in dst else "2001:db8:1::10"
    seen = {
        check_itr(world, udp_packet(packed(src), packed(dst), sport, 4000))
        for sport in range(1000, 1064)
    }
    if outcome == "own-rloc":  # Python drops the flows on our own RLOC, sends the others
        assert seen == {"punt", "punt-own-rloc"}
    else:
        assert seen == {outcome}


def test_itr_spreads_flows_over_rlocs_pools_and_the_data_socket_like_python() -> None:
    world = itr_world(frozenset({4, 6}), 1500)
    chosen: dict[str, set[tuple[bytes, int, int]]] = {}
    for dst in ("203.0.113.1", "203.0.113.2", "203.0.113.5", "203.0.113.129", "2001:db8:a::1"):
        src = "198.51.100.10" if "." in dst else "2001:db8:1::10"
        for sport in range(2000, 2300):
            pkt = tcp_packet(packed(src), packed(dst), sport=sport)
            assert check_itr(world, pkt) == "encap"
            address, port, fd, *_ = world.engine.encap(pkt)
            chosen.setdefault(dst, set()).add((address, port, fd))
    rlocs = {dst: {(a, p) for a, p, _ in c} for dst, c in chosen.items()}
    assert rlocs["203.0.113.1"] == {(packed("192.0.2.11"), 4341), (packed("192.0.2.12"), 4341)}
    assert rlocs["203.0.113.2"] == {(packed("192.0.2.71"), NAT_PORT), (packed("192.0.2.72"), 4342)}
    assert len(rlocs["203.0.113.5"]) == 3
    assert rlocs["203.0.113.129"] == {(packed("2001:db8:ffff::21"), 4341)}
    fds = {fd for c in chosen.values() for _, _, fd in c}
    assert set(POOL[4]) | set(POOL[6]) | {DATA_FD[4]} == fds


def test_itr_instance_is_the_lowest_holding_the_source() -> None:
    world = itr_world(frozenset({4, 6}), 1500)
    for src, iid in [("198.51.100.10", 0), ("198.51.100.200", 7), ("2001:db8:7::1", 7)]:
        dst = "203.0.113.1" if "." in src else "2001:db8:b::1"
        pkt = udp_packet(packed(src), packed(dst))
        check_itr(world, pkt)
        out = world.engine.encap(pkt)
        assert out is not None and read_data_header(out[5]) == (iid, 0)
    # 2001:db8:1::/56 is in iid 7 too: iid 0 (the lowest) wins, where 2001:db8:b::/48 misses
    assert world.engine.encap(udp_packet(packed("2001:db8:1::5"), packed("2001:db8:b::1"))) is None
    assert (
        type(world.itr.handle(udp_packet(packed("2001:db8:1::5"), packed("2001:db8:b::1")))) is Miss
    )
    # iid 3's ::/0 catches 2001:db8:b::1 for a source of iid 3 only
    assert world.engine.encap(udp_packet(packed("2001:db8:3::5"), packed("2001:db8:b::1")))


@pytest.mark.parametrize("mtu", [1300, 1500])
def test_itr_mtu_boundary_is_pythons(mtu: int) -> None:
    """Just below, at and above the largest packet that fits (per outer family), DF and not:
    C encapsulates exactly what Python does and punts the packets Python answers with an ICMP
    too-big (``ToTun``, or a rate-limited drop)."""
    world = itr_world(frozenset({4, 6}), mtu)
    for dst, overhead in [("203.0.113.1", 36), ("203.0.113.129", 56), ("2001:db8:a::1", 56)]:
        src = "198.51.100.10" if "." in dst else "2001:db8:1::10"
        header = 28 if "." in dst else 48
        for size in range(mtu - overhead - 2, mtu - overhead + 3):
            for df in (True, False) if "." in dst else (True,):
                ip = {"df": df} if "." in dst else {}
                pkt = udp_packet(packed(src), packed(dst), payload=bytes(size - header), **ip)
                assert len(pkt) == size
                got = check_itr(world, pkt)
                fits = size <= mtu - overhead or not df
                assert got == ("encap" if fits else "punt"), (dst, size, df)


def test_itr_follows_the_map_cache_listener() -> None:
    mapcache, database = MapCache(), itr_database()
    fast = CompiledPath(
        roles=["itr"],
        mtu=1500,
        tun_fd=-1,
        offloads=False,
        families={4},
        own_rlocs={LOCAL_RLOCS[4]},
        nat_port=None,
    )
    engine = wire_engine(fast, mapcache, database)
    pkt = udp_packet(packed("198.51.100.10"), packed("203.0.113.1"))
    assert engine.encap(pkt) is None and len(engine) == 0
    mapcache.add(entry("203.0.113.0/24", rloc("192.0.2.11")))
    assert engine.encap(pkt)[0] == packed("192.0.2.11")
    mapcache.add(entry("203.0.113.0/24", rloc("192.0.2.11", up=False), rloc("192.0.2.12")))
    assert engine.encap(pkt)[0] == packed("192.0.2.12")  # replaced: the RLOC went down
    mapcache.add(entry("203.0.113.0/25", action="drop"))
    assert engine.encap(pkt) is None and len(engine) == 2
    mapcache.remove(0, "203.0.113.0/25")
    assert engine.encap(pkt)[0] == packed("192.0.2.12")
    mapcache.clear()
    assert engine.encap(pkt) is None and len(engine) == 0
    engine.set_punt_all(True)
    mapcache.add(entry("203.0.113.0/24", rloc("192.0.2.11")))
    assert engine.encap(pkt) is None  # behind a NAT: everything goes to Python
    engine.set_punt_all(False)
    assert engine.encap(pkt) is not None
    engine.set_pool(4, [])
    assert engine.encap(pkt) is None  # no socket of the family: Python's sender decides


def test_itr_keeps_an_expired_entry_until_the_map_cache_expires_it() -> None:
    """A documented window, not a bug: Python's lookup ignores an entry whose TTL ran out
    (a miss, to resolve it again); the engine forwards with it until the node's timer calls
    ``MapCache.expire``, whose listener call removes the record."""
    mapcache, database = MapCache(), itr_database()
    itr = Itr(mapcache, database, {4: LOCAL_RLOCS[4]}, 1500, Counters(), lambda: 1, lambda: 70.0)
    fast = CompiledPath(
        roles=["itr"],
        mtu=1500,
        tun_fd=-1,
        offloads=False,
        families=itr.families,
        own_rlocs=itr.own_rlocs,
        nat_port=None,
    )
    engine = wire_engine(fast, mapcache, database)
    learned = MapCacheEntry(0, ip_network("203.0.113.0/24"), (rloc("192.0.2.11"),), ttl=60)
    mapcache.add(learned)
    pkt = udp_packet(packed("198.51.100.10"), packed("203.0.113.1"))
    assert type(itr.handle(pkt)) is Miss
    assert engine.encap(pkt) is not None
    assert mapcache.expire(70.0) == [learned]
    assert engine.encap(pkt) is None


def test_nonces_are_24_bits_random_and_seeded() -> None:
    world = itr_world(frozenset({4, 6}), 1500)
    pkt = udp_packet(packed("198.51.100.10"), packed("203.0.113.1"))
    world.engine.seed(42)
    first = [world.engine.encap(pkt)[5][1:4] for _ in range(200)]
    world.engine.seed(42)
    assert [world.engine.encap(pkt)[5][1:4] for _ in range(200)] == first
    assert len(set(first)) == 200
    high_bits = {n[0] >> 7 for n in first}
    assert high_bits == {0, 1}


# --- ETR, RTR --------------------------------------------------------------------------------


def etr_database() -> LocalDatabase:
    """The local EID-prefixes of the ETR (and of the RTR that is also an ETR)."""
    database = LocalDatabase()
    for iid, prefix in [
        (0, "198.51.100.0/24"),
        (0, "2001:db8:1::/48"),
        (5, "203.0.113.0/25"),
        (5, "2001:db8:5::/48"),
    ]:
        database.add(DatabaseEntry(iid, ip_network(prefix), (rloc("192.0.2.1"),)))
    return database


RTR_RLOCS: dict[int, IPAddress] = {
    4: IPv4Address("192.0.2.200"),
    6: IPv6Address("2001:db8:ffff::200"),
}
RTR_ENTRIES = [
    entry("203.0.113.0/24", rloc("192.0.2.11", 1, 50), rloc("192.0.2.12", 1, 50)),
    entry("203.0.113.64/26", action="drop"),
    entry("2001:db8:a::/48", rloc("2001:db8:ffff::a1")),
    entry("2001:db8:1::/48", rloc("2001:db8:ffff::a2")),
    entry("198.51.100.128/25", rloc("192.0.2.41", elp=("192.0.2.41", "192.0.2.200", "192.0.2.43"))),
    entry("198.51.100.0/26", rloc("192.0.2.200"), rloc("192.0.2.44")),  # holds the RTR itself
    entry("203.0.113.128/25", rloc("2001:db8:ffff::b1", 1, 1), rloc("192.0.2.71", 1, 3), iid=5),
    entry("203.0.113.0/25", rloc("192.0.2.21"), iid=5),
    entry("2001:db8:5::/48", rloc("192.0.2.22"), iid=5),
    entry("0.0.0.0/0", rloc("192.0.2.23"), iid=9),
]

DATAGRAM_SOURCES = {
    4: ["198.51.100.10", "192.0.2.99"],
    6: ["2001:db8:1::10", "2001:db8:99::1"],
}
DATAGRAM_DESTINATIONS = {
    4: [
        "198.51.100.20",
        "198.51.100.150",
        "198.51.100.30",
        "203.0.113.10",
        "203.0.113.70",
        "203.0.113.200",
        "192.0.2.250",
        "224.0.0.9",
    ],
    6: ["2001:db8:1::20", "2001:db8:5::20", "2001:db8:a::20", "2001:db8:77::1", "ff02::2"],
}
INNER = inner_packets(DATAGRAM_SOURCES, DATAGRAM_DESTINATIONS)
LISP_FLAGS = [0x80, 0x08, 0x00, 0xC8, 0x98, 0x8C, 0x89, 0x8A, 0x8B, 0x01]
IIDS = [0, 5, 9, 0xFFFFFF, 0xFFFFFE]


def served_iid(inner: bytes) -> int:
    """The instance-ID whose tables hold the inner destination (0 when none does)."""
    dst = inner_destination(inner)
    if dst is None:
        return 0
    for text, iid in [("203.0.113.0/25", 5), ("2001:db8:5::/48", 5), ("2001:db8:77::/48", 9)]:
        net = ip_network(text)
        if len(dst) == len(net.network_address.packed) and ip_address(dst) in net:
            return iid
    return 0


@st.composite
def datagrams(draw: st.DrawFn) -> tuple[bytes, int, int]:
    """(payload, outer TTL, outer TOS) as a 4341 socket delivers them: most with the N and I
    bits and the instance-ID that holds the inner destination, the others with any flags
    (key-id bits too) or instance-ID (served or not, 0xFFFFFF control); an inner packet,
    well-formed mostly, or broken, or cut anywhere down to nothing."""
    which = draw(st.integers(0, 9))
    if which < 7:
        inner = draw(INNER)
    else:
        inner = draw(mangled(INNER) if which < 9 else st.binary(max_size=48))
    well_formed = draw(st.integers(0, 3)) > 0
    flags = 0x88 if well_formed else draw(st.sampled_from(LISP_FLAGS))
    iid = served_iid(inner) if well_formed else draw(st.sampled_from(IIDS))
    header = lisp_header(flags, draw(st.integers(0, 0xFFFFFF)), iid, draw(st.integers(0, 255)))
    payload = header + inner
    if draw(st.integers(0, 15)) == 0:
        payload = payload[: draw(st.integers(0, 12))]
    ttl = draw(st.sampled_from([0, 1, 2, 64, 255]) | st.integers(0, 255))
    return payload, ttl, draw(st.integers(0, 255))


@dataclass
class DecapWorld:
    """Python's ETR and RTR next to engines of the roles etr, rtr, and etr + rtr."""

    etr: Etr
    petr: Etr
    rtr: Rtr
    forwarder: Itr
    mapcache: MapCache
    database: LocalDatabase
    etr_engine: Any
    petr_engine: Any
    rtr_engine: Any
    both_engine: Any


def compiled_for(
    roles: list[str], mapcache: MapCache, database: LocalDatabase, itr: Itr | None
) -> Any:
    """An engine of ``roles`` loaded like the daemon's (``itr``: its forwarder, if any)."""
    fast = CompiledPath(
        roles=roles,
        mtu=1500,
        tun_fd=-1,
        offloads=False,
        families=itr.families if itr else (),
        own_rlocs=itr.own_rlocs if itr else (),
        nat_port=itr.nat_port if itr else None,
    )
    engine = wire_engine(fast, mapcache, database)
    mapcache.listener = None  # several engines share the tables: loaded once, kept
    return engine


@functools.cache
def decap_world() -> DecapWorld:
    """The ETR/RTR node: local EIDs in iids 0 and 5, a map-cache in iids 0, 5 and 9."""
    mapcache, database = MapCache(), etr_database()
    for e in RTR_ENTRIES:
        mapcache.add(e)
    forwarder = Itr(
        mapcache,
        database,
        dict(RTR_RLOCS),
        1500,
        Counters(),
        lambda: PY_NONCE,
        lambda: 0.0,
        nat_port=nat_port,
    )
    return DecapWorld(
        etr=Etr(database),
        petr=Etr(database, petr=True),
        rtr=Rtr(forwarder),
        forwarder=forwarder,
        mapcache=mapcache,
        database=database,
        etr_engine=compiled_for(["etr"], mapcache, database, None),
        petr_engine=compiled_for(["petr"], mapcache, database, None),
        rtr_engine=compiled_for(["rtr"], mapcache, database, forwarder),
        both_engine=compiled_for(["etr", "rtr"], mapcache, database, forwarder),
    )


def is_data_trace(payload: bytes) -> bool:
    """The inner packet of a datagram is a LISP-Trace (the engines leave traces to Python)."""
    return len(payload) > DATA_HEADER_LEN and is_trace(payload, DATA_HEADER_LEN)


def check_etr(engine: Any, etr: Etr, payload: bytes, ttl: int, tos: int) -> str:
    """One datagram through an ETR engine and ``etr``; returns what happened."""
    py = etr.handle(payload, ttl, tos)
    c = engine.datagram(payload, ttl, tos)
    if c is None:
        if type(py) is ToTun:
            assert is_data_trace(payload), f"C punts what the ETR decapsulates: {payload.hex()}"
            return "punt-trace"
        assert type(py) is Drop
        return "punt"
    kind, inner = c
    assert kind == "tun", c
    assert not is_data_trace(payload), "a LISP-Trace must go to Python (to be stamped)"
    assert type(py) is ToTun, f"C decapsulates, Python says {py}"
    assert inner == bytes(py.packet)
    if inner[0] >> 4 == 4 and ipv4_checksum_ok(payload[DATA_HEADER_LEN:]):
        assert ipv4_checksum_ok(inner)
    return "tun"


def rtr_record_punt(world: DecapWorld, payload: bytes) -> str | None:
    """Why the RTR engine may leave a datagram the Python RTR re-encapsulates (see
    :func:`documented_itr_punt`): a trace, or a punt record (ELP, own RLOC)."""
    if is_data_trace(payload):
        return "trace"
    header = read_data_header(payload)
    dst = inner_destination(payload[DATA_HEADER_LEN:])
    assert header is not None and dst is not None
    found = world.mapcache.lookup(header[0], dst)
    assert found is not None
    fwd = world.forwarder
    if forwarding_record(found, fwd.families, fwd.own_rlocs, fwd.nat_port) is None:
        return "record"
    return None


def check_rtr(world: DecapWorld, engine: Any, payload: bytes, ttl: int, tos: int) -> str:
    """One datagram through an RTR engine and the Python RTR."""
    py = world.rtr.handle(payload, ttl, tos)
    c = engine.datagram(payload, ttl, tos)
    if c is None:
        if type(py) is Encap:
            why = rtr_record_punt(world, payload)
            assert why is not None, f"C punts what the RTR re-encapsulates: {payload.hex()}"
            return "punt-" + why
        assert type(py) in (Drop, Miss)
        return "punt"
    kind, out = c
    assert kind == "encap", c
    assert not is_data_trace(payload), "a LISP-Trace must go to Python (to be stamped)"
    iid = read_data_header(payload)[0]  # type: ignore[index]
    assert_same_encap(out, py, iid)
    inner = out[5][DATA_HEADER_LEN:]
    assert out[3] == parse_inner(inner).ttl  # type: ignore[union-attr]
    if inner[0] >> 4 == 4 and ipv4_checksum_ok(payload[DATA_HEADER_LEN:]):
        assert ipv4_checksum_ok(inner)
    return "encap"


def node_rtr_etr(world: DecapWorld, payload: bytes, ttl: int, tos: int) -> Output:
    """What Node._rtr_packet does on a node that is RTR and ETR: datagrams for its own EIDs
    go to the ETR, every other one to the RTR."""
    header = read_data_header(payload)
    if header is not None:
        dst = inner_destination(payload[DATA_HEADER_LEN:])
        if dst is not None and world.database.contains(header[0], dst):
            return world.etr.handle(payload, ttl, tos)
    return world.rtr.handle(payload, ttl, tos)


def check_rtr_etr(world: DecapWorld, payload: bytes, ttl: int, tos: int) -> str:
    """One datagram through the RTR+ETR engine and the node's dispatch."""
    py = node_rtr_etr(world, payload, ttl, tos)
    c = world.both_engine.datagram(payload, ttl, tos)
    if c is None:
        if type(py) is ToTun:
            assert is_data_trace(payload)
        elif type(py) is Encap:
            assert rtr_record_punt(world, payload) is not None
        return "punt"
    kind, out = c
    if kind == "tun":
        assert type(py) is ToTun and bytes(py.packet) == out
    else:
        assert_same_encap(out, py, read_data_header(payload)[0])  # type: ignore[index]
    return kind


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datagrams())
def test_etr_decisions_match_python(datagram: tuple[bytes, int, int]) -> None:
    world = decap_world()
    check_etr(world.etr_engine, world.etr, *datagram)


@FAST
@given(datagrams())
def test_rtr_decisions_match_python(datagram: tuple[bytes, int, int]) -> None:
    world = decap_world()
    check_rtr(world, world.rtr_engine, *datagram)


@FAST
@given(datagrams())
def test_rtr_and_etr_decisions_match_the_daemons_dispatch(datagram: tuple[bytes, int, int]) -> None:
    check_rtr_etr(decap_world(), *datagram)


@FAST
@given(datagrams())
def test_petr_engine_decapsulates_local_eids_and_leaves_the_rest_to_python(
    datagram: tuple[bytes, int, int],
) -> None:
    """By design the engine has no PETR mode: a PETR's engine decapsulates what an ETR's does
    and leaves datagrams for non-EID destinations to Python, which decapsulates them too
    (forwarded natively by the kernel)."""
    world = decap_world()
    payload, ttl, tos = datagram
    py = world.petr.handle(payload, ttl, tos)
    c = world.petr_engine.datagram(payload, ttl, tos)
    if c is not None:
        assert type(py) is ToTun and c == ("tun", bytes(py.packet))
    elif type(py) is ToTun:
        header = read_data_header(payload)
        dst = inner_destination(payload[DATA_HEADER_LEN:])
        assert is_data_trace(payload) or not world.database.contains(header[0], dst)  # type: ignore[index,arg-type]


V4_EID, V4_SRC = packed("198.51.100.20"), packed("192.0.2.99")
V6_EID, V6_SRC = packed("2001:db8:1::20"), packed("2001:db8:99::1")


def inner_v4(ttl: int = 64, tos: int = 0, dst: bytes = V4_EID, **kw: Any) -> bytes:
    """A UDP/IPv4 inner packet for the ETR vectors."""
    return udp_packet(V4_SRC, dst, 1000, 2000, b"inner", ttl=ttl, tos=tos, **kw)


def inner_v6(ttl: int = 64, tclass: int = 0, dst: bytes = V6_EID) -> bytes:
    """A UDP/IPv6 inner packet for the ETR vectors."""
    return udp_packet(V6_SRC, dst, 1000, 2000, b"inner", hlim=ttl, tclass=tclass)


def _bad_length(pkt: bytes, at: int, delta: int) -> bytes:
    """``pkt`` with the 16-bit length field at ``at`` off by ``delta``."""
    value = (pkt[at] << 8 | pkt[at + 1]) + delta
    return pkt[:at] + value.to_bytes(2, "big") + pkt[at + 2 :]


ETR_VECTORS: list[tuple[str, bytes, str, str]] = [
    # (name, payload, Python's outcome, C's outcome)
    ("valid-v4", lisp_header() + inner_v4(), "tun", "tun"),
    ("valid-v6", lisp_header() + inner_v6(), "tun", "tun"),
    ("valid-iid5", lisp_header(iid=5) + inner_v4(dst=packed("203.0.113.9")), "tun", "tun"),
    ("no-i-bit-is-iid0", lisp_header(0x80, iid=5) + inner_v4(), "tun", "tun"),
    ("lsb-bits", lisp_header(0xC8, lsb=0xFF) + inner_v4(), "tun", "tun"),
    ("ipv4-options", lisp_header() + inner_v4(options=b"\x01" * 12), "tun", "tun"),
    ("ipv4-fragment", lisp_header() + inner_v4(mf=True), "tun", "tun"),
    ("empty", b"", "truncated-header", "punt"),
    ("short-header", lisp_header()[:7], "truncated-header", "punt"),
    ("header-only", lisp_header(), "bad-inner-header", "punt"),
    ("key-id-1", lisp_header(0x89) + inner_v4(), "encrypted-unsupported", "punt"),
    ("key-id-2", lisp_header(0x8A) + inner_v4(), "encrypted-unsupported", "punt"),
    ("key-id-3", lisp_header(0x8B) + inner_v4(), "encrypted-unsupported", "punt"),
    ("control-iid", lisp_header(iid=0xFFFFFF) + inner_v4(), "data-control-unsupported", "punt"),
    ("wrong-iid", lisp_header(iid=9) + inner_v4(), "wrong-instance-id", "punt"),
    ("iid5-not-ours", lisp_header(iid=5) + inner_v4(), "not-our-eid", "punt"),
    ("not-our-eid", lisp_header() + inner_v4(dst=packed("192.0.2.250")), "not-our-eid", "punt"),
    ("v4-long", lisp_header() + inner_v4() + b"x", "bad-inner-header", "punt"),
    ("v4-short", lisp_header() + inner_v4()[:-1], "bad-inner-header", "punt"),
    ("v4-length", lisp_header() + _bad_length(inner_v4(), 2, 1), "bad-inner-header", "punt"),
    ("v4-ihl-4", lisp_header() + bytes([0x44]) + inner_v4()[1:], "bad-inner-header", "punt"),
    ("v6-length", lisp_header() + _bad_length(inner_v6(), 4, -1), "bad-inner-header", "punt"),
    ("v6-short", lisp_header() + inner_v6()[:39], "bad-inner-header", "punt"),
    ("version-5", lisp_header() + bytes([0x55]) + inner_v4()[1:], "bad-inner-header", "punt"),
    ("trace-v4", lisp_header() + udp_packet(V4_SRC, V4_EID, 2434, 40000), "tun", "punt"),
    ("trace-v6", lisp_header() + udp_packet(V6_SRC, V6_EID, 40000, 2434), "tun", "punt"),
]


@pytest.mark.parametrize(
    ("payload", "python", "c"), [v[1:] for v in ETR_VECTORS], ids=[v[0] for v in ETR_VECTORS]
)
def test_etr_vectors(payload: bytes, python: str, c: str) -> None:
    """Each case the ETR tells apart; traces are the one case the engine leaves to Python
    although Python decapsulates them (the ETR stamps and may turn them around)."""
    world = decap_world()
    py = world.etr.handle(payload, 64, 0)
    assert (py.reason if type(py) is Drop else "tun") == python  # type: ignore[union-attr]
    got = world.etr_engine.datagram(payload, 64, 0)
    assert (got[0] if got else "punt") == c
    check_etr(world.etr_engine, world.etr, payload, 64, 0)


ECN = {"not-ect": 0, "ect1": 1, "ect0": 2, "ce": 3}


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("inner_ecn", list(ECN))
@pytest.mark.parametrize("outer_ecn", list(ECN))
@pytest.mark.parametrize(("inner_ttl", "outer_ttl"), [(64, 200), (200, 64), (9, 9), (1, 0)])
def test_etr_ecn_and_ttl_combinations(
    version: int, inner_ecn: str, outer_ecn: str, inner_ttl: int, outer_ttl: int
) -> None:
    """RFC 6040 normal mode and the lower of the TTLs, both ways, DSCP kept; CE on a
    not-ECN-capable packet is dropped by Python and punted by C."""
    world = decap_world()
    dscp = 0xB8
    inner = (
        inner_v4(inner_ttl, dscp | ECN[inner_ecn])
        if version == 4
        else inner_v6(inner_ttl, dscp | ECN[inner_ecn])
    )
    for outer_dscp in (0, 0x28):
        payload, tos = lisp_header() + inner, outer_dscp | ECN[outer_ecn]
        got = check_etr(world.etr_engine, world.etr, payload, outer_ttl, tos)
        assert got == ("punt" if (outer_ecn, inner_ecn) == ("ce", "not-ect") else "tun")
        got_rtr = check_rtr_etr(world, payload, outer_ttl, tos)
        assert got_rtr == ("punt" if got == "punt" else "tun")


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize(("inner_ttl", "outer_ttl"), [(64, 200), (200, 64), (2, 64), (64, 2)])
@pytest.mark.parametrize("iid", [0, 5, 9])
def test_rtr_vectors_lower_the_ttl_like_python(
    version: int, inner_ttl: int, outer_ttl: int, iid: int
) -> None:
    world = decap_world()
    dst = packed("203.0.113.140" if version == 4 else "2001:db8:a::9")
    if iid == 5 and version == 6:
        dst = packed("2001:db8:5::9")
    for sport in range(1000, 1016):  # several flows: both RLOCs, NATed and IPv6 ones in iid 5
        if version == 4:
            inner = udp_packet(V4_SRC, dst, sport, 2000, b"inner", ttl=inner_ttl, tos=3)
        else:
            inner = udp_packet(V6_SRC, dst, sport, 2000, b"inner", hlim=inner_ttl, tclass=1)
        payload = lisp_header(iid=iid) + inner
        got = check_rtr(world, world.rtr_engine, payload, outer_ttl, 2)
        expected = "encap"
        if version == 6 and iid == 9:
            expected = "punt"  # a miss in iid 9
        assert got == expected


def test_rtr_ttl_expiry_and_records_left_to_python() -> None:
    world = decap_world()
    dst = packed("203.0.113.140")
    for inner_ttl, outer_ttl in [(1, 64), (64, 1), (0, 64), (64, 0)]:
        payload = lisp_header() + inner_v4(inner_ttl, dst=dst)
        assert type(world.rtr.handle(payload, outer_ttl, 0)) is Drop
        assert check_rtr(world, world.rtr_engine, payload, outer_ttl, 0) == "punt"
    for dst_text, why in [("198.51.100.150", "punt-record"), ("198.51.100.30", "punt-record")]:
        payload = lisp_header() + inner_v4(dst=packed(dst_text))
        outcomes = set()
        for sport in range(1000, 1032):
            inner = udp_packet(V4_SRC, packed(dst_text), sport, 2000, b"x")
            payload = lisp_header() + inner
            outcomes.add(check_rtr(world, world.rtr_engine, payload, 64, 0))
        assert why in outcomes
    # the ETR half of an RTR+ETR node decapsulates its own EIDs, the RTR half forwards the rest
    assert check_rtr_etr(world, lisp_header() + inner_v4(), 64, 0) == "tun"
    assert check_rtr_etr(world, lisp_header() + inner_v4(dst=dst), 64, 0) == "encap"


def test_etr_follows_database_changes() -> None:
    database = etr_database()
    fast = CompiledPath(
        roles=["etr"],
        mtu=1500,
        tun_fd=-1,
        offloads=False,
        families=(),
        own_rlocs=(),
        nat_port=None,
    )
    engine = wire_engine(fast, MapCache(), database)
    payload = lisp_header() + inner_v4()
    assert engine.datagram(payload, 64, 0)[0] == "tun"
    assert engine.db_remove(0, packed("198.51.100.0"), 24) is True
    assert engine.db_remove(0, packed("198.51.100.0"), 24) is False
    assert engine.datagram(payload, 64, 0) is None
    engine.db_set(0, packed("198.51.100.20"), 32)
    assert engine.datagram(payload, 64, 0)[0] == "tun"
    engine.db_clear()
    assert engine.datagram(payload, 64, 0) is None
    fast.load_database(database)
    assert engine.datagram(payload, 64, 0)[0] == "tun"


# --- complete_checksum -----------------------------------------------------------------------


def partial(pkt: bytes, proto: int) -> tuple[bytes, bytes]:
    """What a TUN with a virtio-net header hands over for ``pkt`` when the kernel left the
    transport checksum to the device: (header, packet with the pseudo-header sum in the
    checksum field, not complemented)."""
    l3 = (pkt[0] & 0x0F) * 4 if pkt[0] >> 4 == 4 else 40
    offset = 6 if proto == PROTO_UDP else 16
    segment = pkt[l3:]
    src, dst = (pkt[12:16], pkt[16:20]) if pkt[0] >> 4 == 4 else (pkt[8:24], pkt[24:40])
    pseudo = ~internet_checksum(pseudo_header(src, dst, proto, len(segment))) & 0xFFFF
    at = l3 + offset
    broken = pkt[:at] + pseudo.to_bytes(2, "big") + pkt[at + 2 :]
    return vnet_header(1, 0, 0, 0, l3, offset), broken


@settings(max_examples=200, deadline=None)
@given(
    version=st.sampled_from([4, 6]),
    proto=st.sampled_from([PROTO_TCP, PROTO_UDP]),
    body=st.binary(max_size=1500),
    options=st.sampled_from([b"", b"\x01" * 8]),
)
def test_complete_checksum_makes_partial_checksums_valid(
    version: int, proto: int, body: bytes, options: bytes
) -> None:
    src, dst = (
        (packed("198.51.100.1"), packed("203.0.113.9"))
        if version == 4
        else (packed("2001:db8:1::1"), packed("2001:db8:2::9"))
    )
    ip: dict[str, Any] = {"options": options} if version == 4 else {}
    if proto == PROTO_TCP:
        pkt = tcp_packet(src, dst, ip, payload=body, flags=0x18)
    else:
        pkt = udp_packet(src, dst, 5000, 53, body, **ip)
    header, broken = partial(pkt, proto)
    done = _accel.complete_checksum(header, broken)
    assert transport_checksum_ok(done, proto)
    assert done == pkt  # the sender's own checksum (0xFFFF for a UDP zero)


def zero_sum_packet(version: int, proto: int) -> bytes:
    """A UDP or TCP packet whose checksum computes to 0 (for UDP, sent as 0xFFFF; here the
    field holds 0)."""
    src, dst = (
        (packed("198.51.100.1"), packed("203.0.113.9"))
        if version == 4
        else (packed("2001:db8:1::1"), packed("2001:db8:2::9"))
    )

    def segment(filler: int) -> bytes:
        """The transport header and a body ending in ``filler``."""
        body = b"zero" + filler.to_bytes(2, "big")
        if proto == PROTO_UDP:
            return struct.pack("!HHHH", 5000, 53, 8 + len(body), 0) + body
        return struct.pack("!HHIIBBHHH", 5000, 80, 1, 2, 5 << 4, 0x10, 1000, 0, 0) + body

    def total(seg: bytes) -> int:
        """The ones' complement sum of the pseudo-header and ``seg``."""
        return ~internet_checksum(pseudo_header(src, dst, proto, len(seg)) + seg) & 0xFFFF

    seg = segment((0xFFFF - total(segment(0))) & 0xFFFF)  # the sum becomes 0xFFFF
    assert total(seg) == 0xFFFF
    return ip_packet(src, dst, proto, seg)


@pytest.mark.parametrize("version", [4, 6])
def test_complete_checksum_sends_a_computed_udp_zero_as_all_ones(version: int) -> None:
    pkt = zero_sum_packet(version, PROTO_UDP)
    header, broken = partial(pkt, PROTO_UDP)
    done = _accel.complete_checksum(header, broken)
    l3 = 20 if version == 4 else 40
    assert done[l3 + 6 : l3 + 8] == b"\xff\xff"
    assert transport_checksum_ok(done, PROTO_UDP)
    pkt = zero_sum_packet(version, PROTO_TCP)  # a TCP zero stays zero: only UDP reserves it
    header, broken = partial(pkt, PROTO_TCP)
    assert _accel.complete_checksum(header, broken)[l3 + 16 : l3 + 18] == b"\x00\x00"


def test_complete_checksum_refuses_offsets_outside_the_packet() -> None:
    pkt = udp_packet(packed("198.51.100.1"), packed("203.0.113.9"))
    with pytest.raises(ValueError):
        _accel.complete_checksum(vnet_header(1, 0, 0, 0, len(pkt), 0), pkt)
    with pytest.raises(ValueError):
        _accel.complete_checksum(vnet_header(1, 0, 0, 0, 20, len(pkt) - 21), pkt)
    with pytest.raises(ValueError):
        _accel.complete_checksum(b"\x00" * 9, pkt)


def test_engine_calls_leave_their_arguments_untouched() -> None:
    world = itr_world(frozenset({4, 6}), 1500)
    pkt = bytearray(udp_packet(packed("198.51.100.10"), packed("203.0.113.1")))
    before = bytes(pkt)
    assert world.engine.encap(pkt) is not None
    assert bytes(pkt) == before
    payload = bytearray(lisp_header() + inner_v4(200, 3))
    before = bytes(payload)
    assert decap_world().etr_engine.datagram(payload, 64, 3) is not None
    assert bytes(payload) == before  # datagram() works on a copy
