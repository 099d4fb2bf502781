"""A worker's seed in chunks over many loop turns, and its bounded outgoing queue, without a
worker process: :class:`WorkerSet` talks over a SEQPACKET socket pair to a
:class:`~lispd.engine.worker.Worker` (the worker process's own loop code) in this process,
whose engine only keeps the table operations it is sent in dicts.  Whatever the map-cache
does while a seed runs (entries added, replaced, removed; a worker that stops reading, then
reads again), the worker's table must end equal to the map-cache's records, and the event
loop must never wait for the worker.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from typing import Any

import pytest

from benchmarks.mapcache_scale import entries, random_prefixes
from lispd.engine import workers, workerwire
from lispd.engine.compiled import CompiledPath
from lispd.engine.worker import Worker
from lispd.engine.workers import WorkerSet, WorkerSlot
from lispd.engine.workerwire import Operation
from lispd.mapcache import MapCache, MapCacheEntry, RlocEntry
from tests.unit.fastpath_packets import require_accel

Key = tuple[int, bytes, int]


class TableEngine:
    """The table operations of an engine, kept in dicts: what a worker's engine holds."""

    def __init__(self) -> None:
        self.records: dict[Key, tuple[Any, bool]] = {}
        self.database: set[Key] = set()
        self.punt_all = False
        self.gso = False
        self.clears = 0

    def map_set(self, iid: int, address: bytes, plen: int, rlocs: Any, down: bool = False) -> None:
        self.records[(iid, address, plen)] = (rlocs, down)

    def map_remove(self, iid: int, address: bytes, plen: int) -> None:
        self.records.pop((iid, address, plen), None)

    def map_clear(self) -> None:
        self.records.clear()
        self.clears += 1

    def db_set(self, iid: int, address: bytes, plen: int) -> None:
        self.database.add((iid, address, plen))

    def db_remove(self, iid: int, address: bytes, plen: int) -> None:
        self.database.discard((iid, address, plen))

    def db_clear(self) -> None:
        self.database.clear()

    def set_punt_all(self, flag: bool) -> None:
        self.punt_all = flag

    def set_gso(self, flag: bool) -> None:
        self.gso = flag

    def forget_sources(self) -> None:
        pass

    def counters(self) -> dict[str, dict[str, int]]:
        return {"packets": {}, "drops": {}}


def expected(fast: CompiledPath, mapcache: MapCache) -> dict[Key, tuple[Any, bool]]:
    """The records the map-cache's entries make now (what every engine must hold)."""
    out: dict[Key, tuple[Any, bool]] = {}
    for entry in mapcache.entries():
        args = fast._record_args(entry.iid, entry.prefix, entry)
        out[args[:3]] = (args[3], len(args) > 4 and args[4])
    return out


class Bench:
    """A map-cache mirrored by a compiled path whose workers are one in-process Worker."""

    def __init__(self, n: int, rng: random.Random, **options: Any) -> None:
        require_accel()
        self.rng = rng
        self.fast = CompiledPath(
            roles=("itr",), mtu=1500, tun_fd=-1, offloads=False, families=(4, 6),
            own_rlocs=(), nat_port=None, shared_table=False,
        )  # fmt: skip
        self.mapcache = MapCache()
        self.fast.load_map_cache(self.mapcache)
        self.mapcache.listener = self.fast.on_map_cache
        generated = random_prefixes(n + 2000, rng)
        made = entries(generated, rng)
        for entry in made[:n]:
            self.mapcache.add(entry)
        self.spare = made[n:]  # added while the seed runs
        self.slot = WorkerSlot(index=1, tun_fd=-1, receive={})
        self.steps = 0
        chunk = options.pop("chunk", 16)

        def seed() -> Any:
            for ops in self.fast.seed_operations(chunk=chunk):
                self.steps += 1
                yield ops

        self.set = WorkerSet(
            [self.slot],
            engine={},
            pools={},
            seed=seed,
            on_tun=lambda _packet: None,
            on_udp=lambda *_datagram: None,
            **options,
        )
        self.fast.attach_workers(self.set)
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for end in (self.ours, self.theirs):
            end.setblocking(False)
        self.engine = TableEngine()
        self.worker = Worker({"index": 1, "engine": {}, "receive": {}}, self.engine, self.theirs)
        self.reading = False

    def read(self) -> None:
        """The worker starts reading what it is sent (as its process's loop would)."""
        asyncio.get_running_loop().add_reader(self.theirs.fileno(), self.worker.on_control)
        self.reading = True

    def change(self) -> str:
        """One random change of the map-cache: an entry added, replaced or removed."""
        rng, mapcache = self.rng, self.mapcache
        kind = rng.choice(("add", "replace", "remove"))
        if kind == "add" and self.spare:
            mapcache.add(self.spare.pop())
            return kind
        existing = mapcache.entries()
        if not existing:
            return "none"
        entry = rng.choice(existing)
        if kind == "remove":
            mapcache.remove(entry.iid, entry.prefix)
            return kind
        rloc = RlocEntry(rng.choice(compiled_rlocs()), rng.randint(1, 3), rng.randint(1, 100))
        mapcache.add(
            MapCacheEntry(iid=entry.iid, prefix=entry.prefix, rlocs=(rloc,), ttl=600.0, created=0.0)
        )
        return "replace"

    async def settle(self) -> None:
        """Until everything queued for the worker has been sent and read."""
        deadline = time.monotonic() + 10
        while self.set.queued() or self._unread():
            assert time.monotonic() < deadline, "the worker never caught up"
            await asyncio.sleep(0.01)

    def _unread(self) -> bool:
        try:
            self.theirs.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        return True

    async def close(self) -> None:
        if self.reading:
            asyncio.get_running_loop().remove_reader(self.theirs.fileno())
        self.set.stopping()
        await self.set.close()
        self.theirs.close()


def compiled_rlocs() -> tuple[Any, ...]:
    from ipaddress import ip_address

    return (ip_address("192.0.2.77"), ip_address("198.51.100.7"), ip_address("2001:db8::77"))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_seed_spread_over_loop_turns_never_brings_back_a_stale_record(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries added, replaced and removed between the seed's chunks (before and after the
    chunk that carries them): once seeded, the worker's table is the map-cache's."""
    monkeypatch.setattr(workers, "SEED_BUDGET", 0.0)  # one chunk per loop turn

    async def story() -> None:
        bench = Bench(1500, random.Random(seed))
        try:
            bench.read()
            bench.set.connect(bench.slot, bench.ours)
            assert bench.set.seeding() == 1 and not bench.set.is_ready(bench.slot)
            turns, kinds = 0, set()
            while bench.set.seeding():
                for _ in range(bench.rng.randint(0, 6)):
                    kinds.add(bench.change())
                await asyncio.sleep(0)
                turns += 1
                # its table partial, the worker hands everything to the main process
                assert bench.engine.punt_all or not bench.engine.records
                if turns == 20:  # asked for now, in effect once the worker is seeded
                    bench.fast.set_punt_all(True)
            assert {"add", "replace", "remove"} <= kinds
            assert bench.steps >= 1500 // 16  # one chunk per turn: it took many turns
            assert turns >= 1500 // 16
            assert await bench.set.ready(timeout=5)
            assert bench.engine.punt_all and not bench.worker.seeding
            for _ in range(50):  # and it follows the changes after the seed as before
                bench.change()
            bench.fast.set_punt_all(False)
            await asyncio.sleep(0)
            await bench.settle()
            assert bench.engine.clears == 1 and not bench.engine.punt_all
            assert bench.engine.records == expected(bench.fast, bench.mapcache)
        finally:
            await bench.close()

    asyncio.run(story())


def test_ready_waits_for_the_whole_seed_not_for_any_counters_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A counters request answered in the middle of the seed does not make the worker ready."""
    monkeypatch.setattr(workers, "SEED_BUDGET", 0.0)

    async def story() -> None:
        bench = Bench(800, random.Random(5))
        try:
            bench.read()
            bench.set.connect(bench.slot, bench.ours)
            await bench.set.refresh(timeout=1.0)  # answered, sequence past any so far
            assert bench.slot.answered > 0 and bench.set.seeding() == 1
            assert not bench.set.is_ready(bench.slot)
            assert await bench.set.ready(timeout=5)
            assert bench.engine.records == expected(bench.fast, bench.mapcache)
        finally:
            await bench.close()

    asyncio.run(story())


def test_a_lagging_worker_is_never_waited_for_its_queue_is_bounded_and_it_resyncs(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that reads nothing: its queue never passes the limit, the loop goes on, each
    overflow drops the queue and counts a resync (logged at a rate limit); when it reads
    again it is seeded afresh and ends with the map-cache's table."""
    limit = 64 * 1024
    # Lagging, not stuck: however slow this machine, it is not killed while the test runs
    # (test_fastpath_workers covers the stuck worker); the old code waited this long per send.
    monkeypatch.setattr(workers, "SEND_WAIT", 60.0)

    async def story() -> None:
        bench = Bench(300, random.Random(8), queue_limit=limit)
        for end in (bench.ours, bench.theirs):  # small socket buffers: full at once
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        try:
            bench.set.connect(bench.slot, bench.ours)
            longest = 0.0
            for _ in range(400):
                started = time.perf_counter()
                for _ in range(20):
                    bench.change()
                bench.set.flush()
                longest = max(longest, time.perf_counter() - started)
                assert bench.slot.queued <= limit
                await asyncio.sleep(0)
                if bench.set.resyncs >= 3:
                    break
            assert bench.set.resyncs >= 3
            assert not bench.set.is_ready(bench.slot)
            counts = bench.fast.counters()["fastpath"]
            assert counts["worker-resyncs"] == bench.set.resyncs
            warnings = [r for r in caplog.records if "seeding it again" in r.getMessage()]
            assert len(warnings) == 1  # rate-limited: one per RESYNC_LOG_EVERY
            assert "dropped-bytes=" in warnings[0].getMessage()
            # never waited for the worker (20 changes and a flush: milliseconds)
            assert longest < 1.0
            bench.read()
            assert await bench.set.ready(timeout=10)
            await bench.settle()
            assert bench.engine.records == expected(bench.fast, bench.mapcache)
            assert bench.slot.process is None and bench.set.restarts == 0  # resynced, not killed
        finally:
            await bench.close()

    with caplog.at_level(logging.WARNING, logger="lispd.engine.workers"):
        asyncio.run(story())


def test_the_seed_chunks_carry_the_entries_current_at_each_chunk() -> None:
    """seed_operations itself: the first chunk clears; each later chunk is built when asked,
    from the entries of that moment (a prefix removed is skipped, one replaced carries its
    new record)."""
    require_accel()
    bench_rng = random.Random(4)
    fast = CompiledPath(
        roles=("itr",), mtu=1500, tun_fd=-1, offloads=False, families=(4, 6),
        own_rlocs=(), nat_port=None, shared_table=False,
    )  # fmt: skip
    mapcache = MapCache()
    fast.load_map_cache(mapcache)
    made = entries(random_prefixes(40, bench_rng), bench_rng)
    for entry in made:
        mapcache.add(entry)
    chunks = fast.seed_operations(chunk=4)
    head = next(chunks)
    assert head[0] == ("db_clear", ()) and ("map_clear", ()) in head
    assert ("set_punt_all", (False,)) in head
    sent: list[Operation] = []
    removed, replaced = made[-1], made[-2]
    mapcache.remove(removed.iid, removed.prefix)
    rloc = RlocEntry(compiled_rlocs()[0], 1, 7)
    mapcache.add(
        MapCacheEntry(iid=replaced.iid, prefix=replaced.prefix, rlocs=(rloc,), ttl=60.0, created=0)
    )
    for ops in chunks:
        assert len(ops) <= 4
        sent += ops
    keys = {op[1][:3]: op[1] for op in sent}
    assert len(keys) == len(sent) == 39
    packed = replaced.prefix.network_address.packed
    assert keys[(replaced.iid, packed, replaced.prefix.prefixlen)][3][0][2] == 7


def test_a_seed_that_fails_costs_the_worker_a_restart_not_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def story() -> None:
        def seed() -> Any:
            yield [("map_clear", ())]
            raise RuntimeError("a bug while building a chunk")

        ws = WorkerSet(
            [WorkerSlot(index=1, tun_fd=-1, receive={})],
            engine={},
            pools={},
            seed=seed,
            on_tun=lambda _packet: None,
            on_udp=lambda *_datagram: None,
        )
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        slot = ws.slots[0]
        ws.connect(slot, ours)
        await asyncio.sleep(0.01)  # the next step runs, and fails
        assert slot.control is None and slot.seed is None and ws.restarts == 1
        assert slot.restart is not None  # a new worker is due
        await ws.close()
        theirs.close()

    with caplog.at_level(logging.ERROR, logger="lispd.engine.workers"):
        asyncio.run(story())
    assert any("worker seed failed" in r.getMessage() for r in caplog.records)


def test_table_pieces_hold_every_prefix_once_and_are_copies() -> None:
    rng = random.Random(6)
    mapcache = MapCache()
    for entry in entries(random_prefixes(500, rng), rng):
        mapcache.add(entry)
    for iid in mapcache.tables.instance_ids():
        for family in (4, 6):
            table = mapcache.tables.table(iid, family)
            assert table is not None
            pieces = list(table.pieces())
            pairs = [pair for piece in pieces for pair in piece]
            assert sorted(pairs, key=lambda p: (p[0].network_address, p[0].prefixlen)) == list(
                table.items()
            )
            first = pairs[0][0]
            mapcache.remove(iid, first)  # the copies do not change with the table
            assert sum(len(piece) for piece in pieces) == len(pairs)


def test_the_worker_punts_all_between_seed_marks_and_keeps_the_flag_asked_for() -> None:
    engine = TableEngine()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        worker = Worker({"index": 1, "engine": {}, "receive": {}}, engine, theirs)
        worker.apply(workerwire.encode_operations([("set_punt_all", (True,))]))
        assert engine.punt_all
        worker.apply(workerwire.encode_operations([("seed_begin", ()), ("set_punt_all", (False,))]))
        assert engine.punt_all and worker.seeding  # still punting: the table is partial
        worker.apply(workerwire.encode_operations([("set_punt_all", ())]))  # malformed
        assert worker.drops == {"worker-bad-command": 1}
        worker.apply(workerwire.encode_operations([("seed_end", ())]))
        assert not engine.punt_all and not worker.seeding  # what was asked meanwhile
    finally:
        ours.close()
        theirs.close()


def test_the_worker_follows_the_udp_burst_verdict() -> None:
    """``offloads = "auto"`` changing its mind reaches a running worker's engine."""
    engine = TableEngine()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        worker = Worker({"index": 1, "engine": {}, "receive": {}}, engine, theirs)
        for flag in (True, False):
            worker.apply(workerwire.encode_operations([("set_gso", (flag,))]))
            assert engine.gso is flag
        assert worker.drops == {}
    finally:
        ours.close()
        theirs.close()
