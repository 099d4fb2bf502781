"""The shared forwarding table (``lispd/engine/csrc/maptable.c``): one engine writes the
map-cache records in a sealed memfd region, engines of other processes map it read-only.

Checked here: the shared table answers exactly as a private one over random inserts,
replacements, removals and clears (the writer's own lookups and a reader's); a reader refuses
changes and holds no memory of its own; a region that fills up refuses records and stays
right; descriptors that are not such a region are refused; a reader process looking up while
the writer churns only ever sees records the writer stored, never crashes; a reader over a
region full of garbage (the writer's arrays and published offsets overwritten) stays bounded;
and the compiled path sends record operations to the workers only when the table is private.
"""

from __future__ import annotations

import asyncio
import json
import mmap
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import time
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

from lispd.engine.compiled import CompiledPath
from lispd.mapcache import MapCache, MapCacheEntry, RlocEntry
from tests.unit.fastpath_packets import packed, require_accel, udp_packet
from tests.unit.test_fastpath_workers import PEER, SITE, Harness, encapsulated, until

_accel = require_accel()

MIB = 1 << 20
# maptable.c's header: magic, version, header size, size, four layout sizes, then the
# sequence and the published table (slots, mask, buckets, bmask, scopes, nscopes, records,
# the allocated end).
SEQ_OFFSET = 40
PUBLISHED = range(48, 112, 8)
HEADER = 4096


def writer(size: int = 0) -> Any:
    engine = _accel.Engine(itr=True, shared=True, table_size=size)
    if engine.table_fd() < 0:
        pytest.skip("no shared memory region on this kernel (the private table is used)")
    return engine


def reader_of(engine: Any) -> Any:
    return _accel.Engine(itr=True, table_fd=engine.table_fd())


def random_record(rng: random.Random) -> list[tuple[bytes, int, int, bool]] | None:
    if rng.random() < 0.1:
        return None  # a punt record
    return [
        (
            rng.randbytes(rng.choice((4, 16))),
            rng.randrange(1, 65536),
            rng.randrange(256),
            rng.random() < 0.2,
        )
        for _ in range(rng.choice((0, 1, 1, 2, 3, 8)))
    ]


def random_prefix(rng: random.Random) -> tuple[int, bytes, int]:
    iid = rng.choice((0, 0, 1, 0xFFFFFF))
    if rng.random() < 0.6:
        return iid, rng.randbytes(4), rng.choice((0, 8, 16, 20, 24, 24, 28, 32, 32))
    return iid, rng.randbytes(16), rng.choice((0, 32, 48, 56, 64, 96, 128, 128))


def test_the_shared_table_answers_as_the_private_one() -> None:
    rng = random.Random(22)
    private = _accel.Engine(itr=True)
    shared = writer()
    view = reader_of(shared)
    assert (shared.table()["mode"], view.table()["mode"], private.table()["mode"]) == (
        "shared",
        "reader",
        "private",
    )
    stored: list[tuple[int, bytes, int]] = []
    for step in range(12_000):
        roll = rng.random()
        if step == 4000:  # once: everything at once, then the table fills again
            private.map_clear()
            shared.map_clear()
            stored.clear()
        elif roll < 0.6 or not stored:
            key = random_prefix(rng)
            record = random_record(rng)
            for engine in (private, shared):
                engine.map_set(*key, record)
            stored.append(key)
        elif roll < 0.75:  # replace
            key = rng.choice(stored)
            record = random_record(rng)
            for engine in (private, shared):
                engine.map_set(*key, record)
        else:
            key = stored.pop(rng.randrange(len(stored)))
            assert private.map_remove(*key) == shared.map_remove(*key)
        if step % 1000 == 999:
            assert len(private) == len(shared) == len(view)
            for _ in range(300):
                iid, prefix, _plen = rng.choice(stored) if stored else random_prefix(rng)
                probe = bytearray(prefix)
                probe[-1] ^= rng.randrange(256)  # in the prefix or near it
                want = private.lookup(iid, bytes(probe))
                assert shared.lookup(iid, bytes(probe)) == want
                assert view.lookup(iid, bytes(probe)) == want
    assert len(view) == len(private) > 1000
    info = shared.table()
    assert info["records"] == len(private) and info["resident"] > 0
    assert info["allocated"] >= info["free"] >= 0
    assert view.memory() < private.memory()  # a reader holds no table of its own


def test_a_reader_refuses_changes_and_sees_the_writers_at_once() -> None:
    shared = writer()
    view = reader_of(shared)
    record = [(IPv4Address("192.0.2.1").packed, 4341, 1, False)]
    with pytest.raises(RuntimeError, match="shared table"):
        view.map_set(0, bytes(4), 0, record)
    with pytest.raises(RuntimeError):
        view.map_remove(0, bytes(4), 0)
    with pytest.raises(RuntimeError):
        view.map_clear()
    assert view.table_fd() == -1
    shared.map_set(0, IPv4Address("198.51.100.0").packed, 24, record)
    assert view.lookup(0, IPv4Address("198.51.100.7").packed) == record
    assert shared.map_remove(0, IPv4Address("198.51.100.0").packed, 24)
    assert view.lookup(0, IPv4Address("198.51.100.7").packed) is None
    view.db_set(0, IPv4Address("198.51.100.0").packed, 24)  # its local EID-prefixes: its own
    with pytest.raises(ValueError):
        _accel.Engine(shared=True, table_fd=shared.table_fd())


def test_a_full_region_refuses_records_and_keeps_the_others() -> None:
    shared = writer(size=256 * 1024)
    view = reader_of(shared)
    record = [(IPv4Address("192.0.2.1").packed, 4341, 1, False)]
    kept = []
    with pytest.raises(MemoryError):
        for i in range(100_000):
            address = IPv4Address(0x0A000000 + i * 256).packed
            shared.map_set(0, address, 24, record)
            kept.append(address)
    assert 100 < len(kept) < 100_000 and len(view) == len(kept)
    for address in kept[:: max(1, len(kept) // 200)]:
        assert view.lookup(0, address) == record
    shared.map_clear()  # everything given back: the region takes records again
    assert len(view) == 0 and view.lookup(0, kept[0]) is None
    shared.map_set(0, kept[0], 24, record)
    assert view.lookup(0, kept[0]) == record


def test_only_a_sealed_table_region_is_attached(tmp_path: Any) -> None:
    path = tmp_path / "not-a-table"
    path.write_bytes(bytes(64 * 1024))
    with open(path, "rb") as fh, pytest.raises(OSError):
        _accel.Engine(table_fd=fh.fileno())  # not sealed: it could shrink under a reader
    fd = os.memfd_create("unsealed")
    try:
        os.ftruncate(fd, 64 * 1024)
        with pytest.raises(OSError):
            _accel.Engine(table_fd=fd)
    finally:
        os.close(fd)
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(OSError):
            _accel.Engine(table_fd=read_end)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_closing_the_writer_keeps_its_table_and_its_readers() -> None:
    shared = writer()
    view = reader_of(shared)
    record = [(IPv4Address("192.0.2.1").packed, 4341, 1, False)]
    shared.close()  # the daemon closing: descriptors go, the table stays
    assert shared.table_fd() == -1
    shared.map_set(0, bytes(4), 0, record)
    shared.map_clear()
    shared.map_set(0, bytes(4), 0, record)
    assert view.lookup(0, bytes(4)) == record
    del shared
    assert view.lookup(0, bytes(4)) == record  # its mapping outlives the writer


# --- a reader process while the writer churns ----------------------------------------------------

READER = textwrap.dedent(
    """
    import json, sys, time
    from ipaddress import IPv4Address, IPv4Network
    import lispd.engine._accel as a
    fd, seconds, probes = int(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3])
    view = a.Engine(itr=True, table_fd=fd)
    stats = {"lookups": 0, "hits": 0, "busy": 0, "bad": [], "sequences": set()}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for text in probes:
            probe = IPv4Address(text)
            try:
                got = view.lookup(0, probe.packed)
            except BlockingIOError:
                stats["busy"] += 1
                continue
            stats["lookups"] += 1
            if got is None:
                continue
            stats["hits"] += 1
            # every record the writer stores names its own prefix: (network, 1000 + length,
            # a version as weight); anything else was never stored
            if len(got) != 1:
                stats["bad"].append(repr(got))
                continue
            network, port, weight, via = got[0]
            plen = port - 1000
            ok = len(network) == 4 and 8 <= plen <= 32 and via is False
            ok = ok and probe in IPv4Network((IPv4Address(network), plen))
            if not ok:
                stats["bad"].append(repr(got))
        stats["sequences"].add(view.table()["sequence"])
    stats["sequences"] = len(stats["sequences"])
    print(json.dumps(stats))
    """
)


def test_a_reader_process_sees_only_stored_records_while_the_writer_churns() -> None:
    rng = random.Random(5)
    shared = writer()
    prefixes = [
        IPv4Network((0x0A000000 | rng.getrandbits(24) >> (32 - p) << (32 - p), p))
        for p in (rng.choice((8, 12, 16, 20, 24, 28, 32)) for _ in range(3000))
    ]
    probes = [str(n.network_address + rng.randrange(n.num_addresses)) for n in prefixes[:300]]

    def put(network: IPv4Network, version: int) -> None:
        record = [(network.network_address.packed, 1000 + network.prefixlen, version % 256, False)]
        shared.map_set(0, network.network_address.packed, network.prefixlen, record)

    for n in prefixes[:1500]:
        put(n, 0)
    child = subprocess.Popen(
        [sys.executable, "-c", READER, str(shared.table_fd()), "3.0", json.dumps(probes)],
        pass_fds=[shared.table_fd()],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    version, changes = 0, 0
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:  # inserts, replacements, removals, growth, clears
        version += 1
        for n in rng.sample(prefixes, 200):
            if rng.random() < 0.3:
                shared.map_remove(0, n.network_address.packed, n.prefixlen)
            else:
                put(n, version)
            changes += 1
        if version % 200 == 0:
            shared.map_clear()
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 0, out
    stats = json.loads(out)
    assert stats["bad"] == [], stats["bad"][:5]
    assert stats["lookups"] > 10_000 and stats["hits"] > 1000, stats
    assert stats["sequences"] > 10 and changes > 10_000  # it read a table that kept changing


# --- a reader over garbage -----------------------------------------------------------------------


def test_a_reader_over_a_garbage_region_stays_inside_it_and_ends() -> None:
    """Whatever bytes a reader finds (torn, stale, or plainly wrong), it neither faults nor
    loops: the writer's arrays and records, then the published offsets, overwritten with
    random bytes (a sequence kept even, so that the reader believes them)."""
    rng = random.Random(11)
    size = 4 * MIB
    shared = writer(size=size)
    view = reader_of(shared)
    for _ in range(3000):
        shared.map_set(*random_prefix(rng), random_record(rng))
    allocated = shared.table()["allocated"]
    region = mmap.mmap(shared.table_fd(), size)  # as a broken writer would
    try:
        probes = [random_prefix(rng)[:2] for _ in range(200)]
        for round_ in range(60):
            for _ in range(rng.choice((1, 20, 500))):
                at = HEADER + rng.randrange(allocated)
                region[at : at + 8] = rng.randbytes(8)
            if round_ % 3 == 0:
                for offset in PUBLISHED:
                    value = rng.choice(
                        (rng.getrandbits(64), rng.randrange(size), rng.randrange(size) & ~7, 0)
                    )
                    region[offset : offset + 8] = struct.pack("<Q", value)
            seq = struct.unpack("<Q", region[SEQ_OFFSET : SEQ_OFFSET + 8])[0]
            region[SEQ_OFFSET : SEQ_OFFSET + 8] = struct.pack("<Q", (seq + 2) & ~1)
            for iid, address in probes:
                try:
                    got = view.lookup(iid, address)
                except BlockingIOError:
                    continue
                assert got is None or len(got) <= 255
            assert 0 <= len(view) <= size  # the writer's count, no more than could fit
            assert view.table()["mode"] == "reader"
    finally:
        region.close()


# --- the compiled path ---------------------------------------------------------------------------


class Recorder:
    """A stand-in for the workers: what is broadcast to them."""

    slots: list[object] = []
    restarts = 0

    def __init__(self) -> None:
        self.names: list[str] = []

    def broadcast(self, name: str, *args: Any) -> None:
        self.names.append(name)


def compiled_path(shared: bool) -> CompiledPath:
    return CompiledPath(
        roles=("itr",),
        mtu=1500,
        tun_fd=-1,
        offloads=False,
        families=(4,),
        own_rlocs=(),
        nat_port=None,
        shared_table=shared,
    )


@pytest.mark.parametrize("shared", [True, False])
def test_record_operations_reach_the_workers_only_with_a_private_table(shared: bool) -> None:
    fast = compiled_path(shared)
    try:
        if shared and not fast.shared_table:
            pytest.skip("no shared memory region on this kernel")
        assert ("table_fd" in fast.engine_options) is shared
        mapcache = MapCache()
        fast.load_map_cache(mapcache)
        recorder = Recorder()
        fast.attach_workers(recorder)  # type: ignore[arg-type]
        mapcache.listener = fast.on_map_cache
        entry = MapCacheEntry(
            0, IPv4Network("198.51.100.0/24"), (RlocEntry("192.0.2.1", 1, 1),), ttl=60
        )
        mapcache.add(entry)
        mapcache.remove(0, entry.prefix)
        mapcache.add(entry)
        fast.set_punt_all(False)
        want = ["map_set", "map_remove", "map_set"] if not shared else []
        assert recorder.names == [*want, "set_punt_all"]
        seeded = [name for chunk in fast.seed_operations() for name, _args in chunk]
        assert ("map_set" in seeded) is not shared and ("map_clear" in seeded) is not shared
        assert fast.engine.lookup(0, IPv4Address("198.51.100.9").packed) is not None
        if shared:  # a worker's engine, built from engine_options, reads the same record
            view = _accel.Engine(**fast.engine_options)
            assert view.lookup(0, IPv4Address("198.51.100.9").packed) is not None
    finally:
        fast.close()


# --- a worker process ----------------------------------------------------------------------------


def test_a_worker_process_forwards_from_the_shared_table_and_is_sent_no_records() -> None:
    """A real worker (:class:`WorkerSet`) whose engine maps this process's table: it forwards
    by the records the main engine holds, follows their changes with nothing sent to it, and a
    restarted worker forwards again at once with a seed that carries no record."""
    asyncio.run(shared_worker_story())


async def shared_worker_story() -> None:
    h = Harness()
    main = writer()
    h.set.engine = {**h.set.engine, "table_fd": main.table_fd()}
    h.tables[:] = [("db_set", (0, packed(SITE), 28))]  # no record: the worker reads main's
    main.map_set(0, packed(PEER), 28, h.record)
    ws = h.set
    try:
        ws.start()
        (pid,) = ws.pids()
        assert await ws.ready()
        to_peer = udp_packet(packed("198.51.100.1"), packed("198.51.100.18"))
        data = await encapsulated(h, to_peer)
        assert data[8:] == to_peer and h.tun_punts == []

        assert main.map_remove(0, packed(PEER), 28)  # only the main engine is told
        h.tun.send(to_peer)
        await until("the removed prefix punted", lambda: h.tun_punts == [to_peer])
        main.map_set(0, packed(PEER), 28, h.record)
        data = await encapsulated(h, to_peer)
        assert data[8:] == to_peer
        await ws.refresh()  # its counts, kept when it dies
        assert ws.counters()["packets"]["itr.encap.packets"] == 2

        os.kill(pid, signal.SIGKILL)
        await until("a new worker", lambda: ws.pids() and ws.pids() != [pid], timeout=15)
        assert await ws.ready()
        data = await encapsulated(h, to_peer)  # the seed had no record: the table did
        assert data[8:] == to_peer
        await ws.refresh()
        counts = ws.counters()
        assert counts["packets"]["itr.encap.packets"] == 3
        assert counts["fastpath"]["punted-table-busy"] == 0
    finally:
        await ws.close()
        h.close()


FALLBACK = textwrap.dedent(
    """
    import resource
    from ipaddress import IPv4Address, IPv4Network
    from lispd.engine.compiled import CompiledPath
    from lispd.mapcache import MapCache, MapCacheEntry, RlocEntry
    # 3 GiB of address space: room for Python, none for a 64 GiB region
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    fast = CompiledPath(roles=("itr",), mtu=1500, tun_fd=-1, offloads=False, families=(4,),
                        own_rlocs=(), nat_port=None)
    mapcache = MapCache()
    fast.load_map_cache(mapcache)
    mapcache.listener = fast.on_map_cache
    mapcache.add(MapCacheEntry(0, IPv4Network("198.51.100.0/24"),
                               (RlocEntry("192.0.2.1", 1, 1),), ttl=60))
    seeded = [name for chunk in fast.seed_operations() for name, _ in chunk]
    print(fast.shared_table, fast.engine.table()["mode"], "table_fd" in fast.engine_options,
          seeded.count("map_set"), fast.engine.lookup(0, IPv4Address("198.51.100.1").packed))
    """
)


def test_without_a_region_the_table_is_private_and_workers_are_sent_records() -> None:
    """Where the region cannot be made (here: an address-space limit refuses the mapping, as
    an old kernel refuses memfd_create) the engine keeps a private table and the workers are
    loaded with every record, as before the shared table."""
    done = subprocess.run(
        [sys.executable, "-c", FALLBACK],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(" ", 4)[:4] == ["False", "private", "False", "1"], done.stdout
    assert "4341" in done.stdout  # the record is there, in the private table
