"""Fast-path workers: the messages between the main process and a worker, and a real worker
process (``python -m lispd.engine.worker``) driven by :class:`WorkerSet` over sockets that
need no root: a datagram socket pair stands in for its TUN queue, loopback UDP sockets for the
underlay.  It must forward what its tables settle, punt the rest to the main process, follow
table changes, report counters, and come back with its tables after it is killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lispd.engine import workers, workerwire
from lispd.engine.worker import Worker
from lispd.engine.workers import WorkerSet, WorkerSlot, add_counts
from lispd.engine.workerwire import CountersReport, TunPunt, UdpPunt, WireError
from lispd.io.udp import open_receive_socket
from tests.unit.fastpath_packets import lisp_header, packed, require_accel, udp_packet

# --- messages --------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["192.0.2.1", "2001:db8::9"])
def test_udp_punt_round_trip(source: str) -> None:
    data = workerwire.encode_udp_punt(b"\x08payload", 17, 0xB8, source, 61000)
    assert workerwire.decode_report(data) == UdpPunt(b"\x08payload", 17, 0xB8, source, 61000)


def test_tun_punt_and_counters_round_trip() -> None:
    assert workerwire.decode_report(workerwire.encode_tun_punt(b"\x45abc")) == TunPunt(b"\x45abc")
    counts = {"packets": {"itr.encap.packets": 3}, "drops": {}}
    report = workerwire.decode_report(workerwire.encode_counters(7, counts))
    assert report == CountersReport(7, counts)


def test_commands_round_trip_and_unknown_operations_are_refused() -> None:
    ops = [("map_set", (5, packed("198.51.100.16"), 28, [(packed("192.0.2.9"), 4341, 100, False)]))]
    ops.append(("map_clear", ()))
    assert workerwire.decode_command(workerwire.encode_operations(ops)) == ("ops", ops)
    assert workerwire.decode_command(workerwire.encode_counters_request(4)) == ("counters", 4)
    for bad in (
        workerwire.encode_operations([("from_tun", ())]),  # not a table operation
        workerwire.encode_operations([("__del__", ())]),
        b"",
        b"\xff\x00garbage",
    ):
        with pytest.raises(WireError):
            workerwire.decode_command(bad)


@given(st.binary(max_size=64))
def test_whatever_a_worker_sends_decodes_or_is_a_wire_error(data: bytes) -> None:
    for kind in (b"", b"T", b"U", b"C", b"X"):
        try:
            report = workerwire.decode_report(kind + data)
        except WireError:
            continue
        if isinstance(report, CountersReport):
            add_counts({}, report.counters)  # what the main process does with it


def test_counters_that_are_not_numbers_are_refused() -> None:
    for bad in (b'C[1, {"packets": {"a": "x"}}]', b"C[1, []]", b'C["1", {}]', b"C\xff"):
        with pytest.raises(WireError):
            workerwire.decode_report(bad)


@given(
    st.lists(st.tuples(st.integers(0, 2**24 - 1), st.binary(min_size=4, max_size=4)), max_size=300)
)
def test_batches_keep_every_operation_in_order_and_bounded(items: list[tuple[int, bytes]]) -> None:
    ops = [("db_set", (iid, address, 32)) for iid, address in items]
    messages = workerwire.batches(ops, limit=2000)
    assert all(len(m) < 4000 for m in messages)
    decoded = [op for m in messages for op in workerwire.decode_command(m)[1]]
    assert decoded == ops


def test_counts_add_up_and_keep_the_latest_send_error() -> None:
    total: dict[str, dict[str, int]] = {}
    add_counts(total, {"packets": {"a": 2}, "fastpath": {"last-send-errno": 11}})
    add_counts(total, {"packets": {"a": 3, "b": 1}, "fastpath": {"last-send-errno": 0}})
    assert total == {"packets": {"a": 5, "b": 1}, "fastpath": {"last-send-errno": 11}}


# --- a worker's loop, in this process ------------------------------------------------------------


def test_worker_applies_table_operations_and_counts_bad_ones() -> None:
    accel = require_accel()
    engine = accel.Engine(itr=True)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    theirs.setblocking(False)
    worker = Worker({"index": 1, "engine": {}, "receive": {}}, engine, theirs)
    record = [(packed("192.0.2.9"), 4341, 100, False)]
    ours.send(workerwire.encode_operations([("map_set", (0, packed("198.51.100.16"), 28, record))]))
    ours.send(workerwire.encode_operations([("map_set", (0, b"\x01", 99, None))]))  # bad prefix
    ours.send(b"not marshal at all")
    ours.send(workerwire.encode_counters_request(3))
    assert worker.on_control()
    assert engine.lookup(0, packed("198.51.100.18")) is not None
    report = workerwire.decode_report(ours.recv(65536))
    assert isinstance(report, CountersReport) and report.sequence == 3
    assert report.counters["drops"]["worker-bad-command"] == 2
    ours.close()
    assert not worker.on_control()  # the main process went away: the worker ends
    theirs.close()


# --- a real worker process -------------------------------------------------------------------

SITE = "198.51.100.0"  # our EID-prefix /28
PEER = "198.51.100.16"  # the peer site's /28


class Harness:
    """One worker process on a socket-pair TUN queue and loopback sockets."""

    def __init__(self) -> None:
        require_accel()
        self.tun, tun_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.tun.setblocking(False)
        tun_theirs.setblocking(False)
        self.tun_theirs = tun_theirs
        self.peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the peer's RLOC
        self.peer.bind(("127.0.0.1", 0))
        self.peer.settimeout(5)
        self.send = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.send.bind(("127.0.0.1", 0))
        self.receive = open_receive_socket(IPv4Address("127.0.0.1"), 0)
        self.record = [(packed("127.0.0.1"), self.peer.getsockname()[1], 100, False)]
        self.tables: list[workerwire.Operation] = [
            ("db_set", (0, packed(SITE), 28)),
            ("map_set", (0, packed(PEER), 28, self.record)),
        ]
        self.tun_punts: list[bytes] = []
        self.udp_punts: list[tuple[bytes, int, int, str, int]] = []
        self.covers: list[tuple[int, bool]] = []  # (worker, covered) as the set told them
        slot = WorkerSlot(1, tun_theirs.fileno(), {4: self.receive.fileno()})
        self.set = WorkerSet(
            [slot],
            engine={"itr": True, "etr": False, "rtr": False, "mtu": 1500, "vnet": False},
            pools={4: [self.send.fileno()]},
            seed=lambda: [list(self.tables)],
            on_tun=self.tun_punts.append,
            on_udp=lambda *punt: self.udp_punts.append(punt),
            cover=lambda slot, covered: self.covers.append((slot.index, covered)),
        )

    def close(self) -> None:
        for sock in (self.tun, self.tun_theirs, self.peer, self.send, self.receive):
            sock.close()


async def until(what: str, check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def encapsulated(h: Harness, inner: bytes) -> bytes:
    """Write ``inner`` to the worker's TUN queue; what the peer RLOC receives."""
    h.tun.send(inner)
    data = await asyncio.get_running_loop().run_in_executor(None, h.peer.recv, 65536)
    return data


def test_a_worker_process_forwards_punts_follows_tables_and_comes_back_after_a_kill() -> None:
    asyncio.run(worker_story())


async def worker_story() -> None:
    h = Harness()
    ws = h.set
    try:
        ws.start()
        (pid,) = ws.pids()
        assert await ws.ready()  # its tables are loaded: what follows is forwarded at once
        to_peer = udp_packet(packed("198.51.100.1"), packed("198.51.100.18"))
        data = await encapsulated(h, to_peer)
        assert data[:1] == b"\x88" and data[8:] == to_peer  # N and I bits, iid 0: ours

        elsewhere = udp_packet(packed("198.51.100.1"), packed("203.0.113.5"))
        h.tun.send(elsewhere)  # a miss: the main process's Python path takes it
        await until("the miss punted", lambda: h.tun_punts)
        assert h.tun_punts == [elsewhere]

        control = lisp_header(flags=0x08, iid=0xFFFFFF) + b"data-plane control"
        h.send.sendto(control, h.receive.getsockname())
        await until("the datagram punted", lambda: h.udp_punts)
        payload, ttl, _tos, source, port = h.udp_punts[0]
        assert (payload, source, port) == (control, "127.0.0.1", h.send.getsockname()[1])
        assert ttl == 64

        await ws.refresh()
        counts = ws.counters()
        assert counts["packets"]["itr.encap.packets"] == 1
        assert counts["fastpath"]["punted-tun"] == 1 and counts["fastpath"]["punted-udp"] == 1

        # a table change reaches the worker: the peer's prefix gone, its packets are punted
        ws.broadcast("map_remove", 0, packed(PEER), 28)
        await asyncio.sleep(0.2)
        h.tun.send(to_peer)
        await until("the removed prefix punted", lambda: len(h.tun_punts) == 2)

        # killed, it comes back with the tables seed() gives and its counts are kept
        assert h.covers == []
        os.kill(pid, signal.SIGKILL)
        # lost: the main process takes its traffic until the new process is about to start
        await until("the main process covering", lambda: h.covers == [(1, True)])
        await until("a new worker", lambda: ws.pids() and ws.pids() != [pid], timeout=15)
        assert h.covers == [(1, True), (1, False)]
        assert ws.restarts == 1
        data = await encapsulated(h, to_peer)  # seed() still has the peer's prefix
        assert data[8:] == to_peer
        await ws.refresh()
        assert ws.counters()["packets"]["itr.encap.packets"] == 2
    finally:
        pids = ws.pids()
        await ws.close()
        h.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_worker_that_reads_nothing_is_restarted_and_never_waited_for(monkeypatch) -> None:
    """A stopped worker: table updates queue up for it (never blocking the loop: each flush
    returns at once), and once its socket has taken nothing for SEND_WAIT it is killed and a
    new one seeded."""

    async def story() -> None:
        h = Harness()
        ws = h.set
        try:
            ws.start()
            (pid,) = ws.pids()
            os.kill(pid, signal.SIGSTOP)  # stuck: it reads nothing any more
            monkeypatch.setattr(workers, "SEND_WAIT", 0.2)
            longest = 0.0
            for i in range(2000):
                for j in range(1000):
                    ws.broadcast("db_set", i * 1000 + j, bytes(16), 128)
                started = time.perf_counter()
                ws.flush()
                longest = max(longest, time.perf_counter() - started)
                if ws.restarts:
                    break
                await asyncio.sleep(0.001)
            assert ws.restarts == 1
            assert longest < 0.1  # a flush never waited for the stuck worker
            await until("a new worker", lambda: ws.pids() and ws.pids() != [pid], timeout=15)
            assert await ws.ready()
        finally:
            await ws.close()
            h.close()

    asyncio.run(story())


def test_a_worker_forwards_and_counts_a_record_whose_rlocs_are_all_down() -> None:
    """``map_set(..., all_down=True)`` (issue 21: every RLOC of the mapping down, the best
    used anyway) reaches a worker like any record: it forwards, and counts the packets as
    ``itr.all-rlocs-down`` besides ``itr.encap``."""
    asyncio.run(all_down_story())


async def all_down_story() -> None:
    h = Harness()
    ws = h.set
    try:
        ws.start()
        assert await ws.ready()
        ws.broadcast("map_set", 0, packed(PEER), 28, h.record, True)
        await asyncio.sleep(0.2)
        to_peer = udp_packet(packed("198.51.100.1"), packed("198.51.100.18"))
        data = await encapsulated(h, to_peer)
        assert data[8:] == to_peer and h.tun_punts == []
        await ws.refresh()
        packets = ws.counters()["packets"]
        assert packets["itr.all-rlocs-down.packets"] == 1 and packets["itr.encap.packets"] == 1
        assert packets["itr.all-rlocs-down.bytes"] == len(to_peer)
    finally:
        await ws.close()
        h.close()
