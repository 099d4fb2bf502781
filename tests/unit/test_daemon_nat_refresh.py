"""What an unauthenticated NAT keepalive costs an RTR with the compiled fast path: the records
of the map-cache entries using the keepalive's address, not the whole table (issue 19).

The real :class:`lispd.daemon.Daemon` (RTR role, compiled path, no sockets) holds 50,000
map-cache entries in its node, five of which use the RLOC of a NATed xTR: the node says which
bindings changed (:class:`~lispd.node.actions.NatBindingsChanged`), the daemon re-issues the
records of the entries using them (:class:`RecordRefresh`, sliced and scheduled on the loop).
The compiled path's table operations are counted where they leave :class:`CompiledPath` for the
engines: a fake :class:`WorkerSet` receives every operation broadcast to the workers (one per
operation applied to the main engine too), so a count there is the count of ``map_set`` calls
and of the worker messages' contents.  With the shared forwarding table (the default) record
operations go to the main engine alone: the fake then records them where the main engine
receives them (:meth:`FakeWorkers.watch`), so the counts mean the same either way.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network, ip_address
from typing import Any

import pytest

from lispd.api.metrics import MetricsSnapshot, render_metrics
from lispd.cli.lispctl import format_stats
from lispd.config import parse_config
from lispd.daemon import Daemon
from lispd.engine.compiled import MAP_OPERATIONS, CompiledPath, RecordRefresh
from lispd.engine.runner import EngineRunner
from lispd.io.udp import Sender
from lispd.mapcache import MapCache, MapCacheEntry, RlocEntry
from lispd.wire.address import DistinguishedName, eid_prefix
from lispd.wire.control import encode_control
from lispd.wire.data import IID_CONTROL, build_data_header
from lispd.wire.info import InfoMessage
from tests import configs
from tests.unit.fastpath_packets import require_accel

require_accel()

NATED = IPv4Address("203.0.113.7")  # the translated address of a NATed xTR
ENTRIES = 50_000
USING_NATED = 5

RTR_CONFIG = configs.toml(
    configs.rtr(
        limits={"map-cache-entries": 100000},
        dataplane={"workers": 1, "offloads": False},
        probing={"map-cache": False},
    )
)


class FakeWorkers:
    """Stands in for :class:`lispd.engine.workers.WorkerSet`: records what would be sent."""

    slots: list[object] = []  # no worker processes
    restarts = 0
    resyncs = 0

    def __init__(self) -> None:
        self.operations: list[tuple[str, tuple[Any, ...]]] = []

    def seeding(self) -> int:
        """Workers being seeded: none."""
        return 0

    def queued(self) -> int:
        """Bytes waiting for the workers: none."""
        return 0

    def counters(self) -> dict[str, dict[str, int]]:
        """The workers' counters: none."""
        return {}

    def broadcast(self, name: str, *args: Any) -> None:
        """One table operation for every worker."""
        self.operations.append((name, args))

    def names(self) -> Counter[str]:
        """How many operations of each kind were broadcast."""
        return Counter(name for name, _ in self.operations)

    def watch(self, fast: CompiledPath) -> None:
        """Be ``fast``'s workers; with a shared table, also record the record operations
        its main engine receives (they are not broadcast: the workers read that table)."""
        fast.attach_workers(self)  # type: ignore[arg-type]
        if fast.shared_table:
            fast.engine = MainEngine(fast.engine, self.operations)


class MainEngine:
    """The real engine, with the record operations it receives recorded."""

    def __init__(self, real: Any, operations: list[tuple[str, tuple[Any, ...]]]) -> None:
        self.real, self.operations = real, operations

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.real, name)
        if name not in MAP_OPERATIONS:
            return attribute

        def recorded(*args: Any) -> Any:
            self.operations.append((name, args))
            return attribute(*args)

        return recorded


class Clock:
    """The daemon's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def keepalive() -> bytes:
    """A NAT keepalive: an Info-Request behind a data header with instance-ID 0xFFFFFF."""
    info = InfoMessage(nonce=9, address=DistinguishedName("xtr-behind-nat"))
    return build_data_header(0x42, IID_CONTROL) + encode_control(info)


def entries(count: int, nated: int) -> list[MapCacheEntry]:
    """``count`` learned /32 entries; ``nated`` of them (spread out) use :data:`NATED`, the
    others one of 1,000 other RLOCs."""
    step = count // nated
    out = []
    for k in range(count):
        rloc = NATED if k % step == 0 and k // step < nated else IPv4Address(0xC6120000 + k % 1000)
        prefix = IPv4Network((0x0A000000 + k, 32))
        out.append(
            MapCacheEntry(
                0, prefix, (RlocEntry(rloc, 1, 100),), ttl=86400, created=0.0, source="map-reply"
            )
        )
    return out


class Rtr:
    """A socketless RTR daemon with the compiled path and a fake worker."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.daemon = Daemon(parse_config(RTR_CONFIG), clock=self.clock)
        # Real (loopback) sockets: the engine checks its descriptors.  Nothing is sent.
        self.sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
        for sock in self.sockets:
            sock.bind(("127.0.0.1", 0))
        data, pool = self.sockets[0], self.sockets[1:]
        d = self.daemon
        d.os.sender = Sender({4: pool}, {4: data})
        d.engine = EngineRunner(
            d.node,
            tun=None,
            sender=d.os.sender,
            worker_receive=[],
            offloads=False,
            on_tun=lambda _pkt: None,
            on_udp=lambda *_args: None,
            clock=self.clock,
        )
        assert d.engine.record_refresh is not None
        self.fast: CompiledPath = d.engine.fast
        self.workers = FakeWorkers()
        self.workers.watch(self.fast)
        self.loaded = entries(ENTRIES, USING_NATED)
        for entry in self.loaded:
            d.node.mapcache.add(entry)
        self.nated = [e for e in self.loaded if e.rlocs[0].address == NATED]
        assert len(self.nated) == USING_NATED
        self.workers.operations.clear()

    def keepalive(self, port: int) -> None:
        """A keepalive from the NATed xTR's address and ``port``, as the engine leaves it to
        Python from the 4341 socket; then the daemon performs what the node asked for (as
        ``_on_udp_readable`` does after the engine's batch)."""
        self.daemon._data_packet(keepalive(), 64, 0, str(NATED), port)
        self.daemon.transmit()

    def record_port(self, entry: MapCacheEntry) -> tuple[int, bool]:
        """The (port, via the 4341 socket) of ``entry``'s record in the main engine."""
        rlocs = self.fast.engine.lookup(0, entry.prefix.network_address.packed)
        assert rlocs is not None and len(rlocs) == 1
        packed, port, _weight, via_data = rlocs[0]
        assert ip_address(packed) == NATED
        return port, bool(via_data)


@pytest.fixture
def rtr() -> Iterator[Rtr]:
    made = Rtr()
    try:
        yield made
    finally:
        made.fast.close()  # the engine's descriptors (its socket copies, the table's memfd)
        for sock in made.sockets:
            sock.close()


def in_loop(rtr: Rtr, body: Callable[[], None]) -> None:
    """Run ``body()`` inside a running loop (the daemon arms its timers on it), then cancel
    what it armed."""

    async def run() -> None:
        try:
            body()
        finally:
            engine = rtr.daemon.engine
            assert engine is not None
            for handle in (rtr.daemon._timer, engine._refresh_handle):
                if handle is not None:
                    handle.cancel()

    asyncio.run(run())


def test_a_binding_reissues_exactly_the_records_of_its_rloc(rtr: Rtr) -> None:
    """A new binding and then a port change each re-issue the five records using the
    translated address; nothing else, no map_clear, and the engine's records carry the port."""

    def body() -> None:
        rtr.keepalive(40000)
        assert rtr.workers.names() == {"map_set": USING_NATED}
        issued = {(args[0], args[1], args[2]) for _name, args in rtr.workers.operations}
        wanted = {(0, e.prefix.network_address.packed, 32) for e in rtr.nated}
        assert issued == wanted
        for _name, args in rtr.workers.operations:
            assert args[3] == [(NATED.packed, 40000, 100, True)]
        assert all(rtr.record_port(e) == (40000, True) for e in rtr.nated)
        rtr.workers.operations.clear()

        # The NAT rebinds, much later: the old port has been quiet for more than half the
        # binding timeout (it sent one keepalive: no gap known), so its claim moves.
        rtr.clock.now += rtr.daemon.node.config.rtr.nat_binding_timeout / 2 + 1.0
        rtr.keepalive(40001)
        assert rtr.workers.names() == {"map_set": USING_NATED}
        assert all(rtr.record_port(e) == (40001, True) for e in rtr.nated)
        rtr.workers.operations.clear()

        rtr.clock.now += 1.0
        rtr.keepalive(40001)  # a refresh: no work at all
        assert rtr.workers.operations == []

    in_loop(rtr, body)
    d = rtr.daemon
    stats = d.stats()
    assert stats["packets"]["rtr.nat-keepalive.packets"] == 3
    assert stats["packets"]["rtr.nat-binding-change.packets"] == 2
    assert stats["fastpath"]["records-reissued"] == 2 * USING_NATED
    assert stats["fastpath"]["records-reissue-pending"] == 0
    assert "10 records re-issued after NAT binding changes (0 RLOCs pending)" in format_stats(stats)
    page = render_metrics(lambda: MetricsSnapshot(name="rtr1", version="v", stats=stats))
    assert b"lispd_fastpath_records_reissued_total 10.0" in page


def test_a_thousand_keepalives_from_other_ports_of_the_address_take_nothing(rtr: Rtr) -> None:
    """A spoofer sending from the NATed xTR's address, alternating between two other source
    ports every millisecond: each port is a binding of its own (two new ones), the xTR's
    binding is live and keeps the address's traffic, and not one record is re-issued."""

    def body() -> None:
        rtr.keepalive(50000)  # the xTR's binding
        rtr.workers.operations.clear()
        for k in range(1000):
            rtr.clock.now += 0.001
            rtr.keepalive(50001 + k % 2)

    in_loop(rtr, body)
    d = rtr.daemon
    bindings = d.node.nat_bindings
    assert bindings is not None
    assert bindings.stats["learned"] == 3 and bindings.stats["claim-moved"] == 0
    assert len(bindings) == 3 and "nat-binding-change-rate-limited" not in d.stats()["drops"]
    assert rtr.workers.operations == []
    assert d.node.counters.packets["rtr.nat-keepalive.packets"] == 1001
    assert d.node.counters.packets["rtr.nat-binding-change.packets"] == 3  # the new bindings
    assert bindings.port_for(NATED) == 50000
    assert all(rtr.record_port(e) == (50000, True) for e in rtr.nated)


def test_two_xtrs_behind_the_address_get_their_own_records(rtr: Rtr) -> None:
    """Two xTRs behind the NATed address, each naming the EID-prefix of one of the entries in
    its keepalives: the compiled records of those two entries carry each xTR's own port, the
    other entries of the address the address-wide one (the first xTR's)."""
    first, second = rtr.nated[0], rtr.nated[1]

    def body() -> None:
        for port, entry in ((40001, first), (40002, second)):
            eid, mask_len = eid_prefix(entry.iid, entry.prefix)
            info = InfoMessage(nonce=9, ttl=1440, eid=eid, eid_mask_len=mask_len)
            payload = build_data_header(0x42, IID_CONTROL) + encode_control(info)
            rtr.daemon._data_packet(payload, 64, 0, str(NATED), port)
            rtr.daemon.transmit()

    in_loop(rtr, body)
    assert rtr.record_port(first) == (40001, True)
    assert rtr.record_port(second) == (40002, True)
    assert all(rtr.record_port(e) == (40001, True) for e in rtr.nated[2:])
    assert rtr.workers.names() == {"map_set": 2 * USING_NATED}  # one pass per new claim


def test_expired_bindings_reissue_their_records_with_the_plain_port(rtr: Rtr) -> None:
    def body() -> None:
        rtr.keepalive(40000)
        rtr.workers.operations.clear()
        rtr.clock.now += 1000.0  # past the binding timeout
        rtr.daemon._on_timer()

    in_loop(rtr, body)
    table_operations = {k: n for k, n in rtr.workers.names().items() if k.startswith("map_")}
    assert table_operations == {"map_set": USING_NATED}  # (and forget_sources: 300 s passed)
    assert all(rtr.record_port(e) == (4341, False) for e in rtr.nated)


def test_probing_marks_only_the_entries_of_the_rloc(rtr: Rtr) -> None:
    """An RLOC going down re-installs the entries using it (the index), not all 50,000."""
    node = rtr.daemon.node
    before = {(e.iid, e.prefix): e for e in node.mapcache.using(NATED)}
    node._mark_rlocs({NATED: False})
    assert rtr.workers.names() == {"map_set": USING_NATED}
    after = node.mapcache.using(NATED)
    assert {(e.iid, e.prefix) for e in after} == set(before)
    assert all(not e.rlocs[0].up for e in after)
    untouched = node.mapcache.get(0, rtr.loaded[1].prefix)
    assert untouched is rtr.loaded[1]


def test_a_scrape_counts_the_map_cache_without_walking_it(
    rtr: Rtr, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``lispd_map_cache_entries`` comes from the map-cache's census, kept per install and
    removal: a scrape of a big RTR costs no pass over its entries."""

    def walked(_self: MapCache) -> list[MapCacheEntry]:
        raise AssertionError("a scrape walked the map-cache")

    d = rtr.daemon
    monkeypatch.setattr(MapCache, "entries", walked)
    page = render_metrics(d.metrics_snapshot).decode()
    line = 'lispd_map_cache_entries{family="ipv4",instance_id="0",source="map-reply"}'
    assert f"{line} {float(ENTRIES)}" in page


def test_record_refresh_is_sliced_rate_limited_and_coalesced() -> None:
    """One RLOC used by 2,500 entries: 1,000 records per run, a whole slice again only after
    slice/rate seconds (times and rate exact in binary: no rounding in the bucket); an
    address marked again while it waits is one pass, one marked while its pass runs gets a
    second pass; entries replaced meanwhile are left to the listener."""
    mapcache = MapCache()
    fast = CompiledPath(
        roles=("rtr",), mtu=1500, tun_fd=-1, offloads=False, families=(4,), own_rlocs=(),
        nat_port=None,
    )  # fmt: skip
    mapcache.listener = fast.on_map_cache
    for entry in entries(2500, 2500):  # every one uses NATED
        mapcache.add(entry)
    workers = FakeWorkers()
    workers.watch(fast)
    refresh = RecordRefresh(fast, mapcache, rate=8_000, slice_size=1000)
    refresh.mark(IPv4Address("192.0.2.99"))  # no entry uses it: not queued
    assert len(refresh) == 0 and refresh.run(0.0) is None
    refresh.mark(NATED)
    refresh.mark(NATED)
    assert len(refresh) == 1
    assert refresh.run(0.0) == 0.125  # 1000 done, the bucket is empty
    assert len(workers.operations) == 1000
    assert refresh.run(0.0625) == 0.125  # 500 tokens: 500 more
    assert len(workers.operations) == 1500
    refresh.mark(NATED)  # while its pass runs: another pass afterwards
    replaced = mapcache.using(NATED)[-1]  # not issued yet in this pass
    mapcache.add(MapCacheEntry(0, replaced.prefix, (RlocEntry("192.0.2.1", 1, 1),), ttl=5))
    workers.operations.clear()
    assert refresh.run(0.1875) == 0.125
    assert len(workers.operations) == 999  # 1000 looked at, the replaced one skipped
    assert refresh.run(0.3125) == 0.125  # the second pass: 2,499 entries now
    assert refresh.run(0.4375) == 0.125
    assert refresh.run(0.5625) is None and len(refresh) == 0
    assert refresh.issued == 1000 + 500 + 999 + 2499
    assert len(workers.operations) == 999 + 2499
    fast.close()
