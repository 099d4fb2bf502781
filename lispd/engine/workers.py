"""The main process's side of the fast-path workers: start them, keep their tables current,
take what they punt, collect their counters, and restart the ones that die.

The main process runs one engine itself (queue 0 of the TUN, its own 4341 sockets) and
``N - 1`` workers (:mod:`lispd.engine.worker`) each on a queue and sockets of their own.
Every table change the control plane makes reaches every engine: the main one at once, the
workers in one message per event-loop turn (:meth:`WorkerSet.broadcast`).  A worker that dies
is started again after a pause (1 s, doubling up to 30 s while it keeps dying) and gets the
whole table again (``seed``); its last counters are kept so sums never go backwards.

The event loop never waits on a worker:

* Each worker has its own outgoing queue of messages, written as far as its socket takes them
  and then whenever the socket is writable again (``add_writer``).  A worker so far behind
  that its queue passes ``queue_limit`` bytes loses the queue: the set counts a *resync*
  (``fastpath worker-resyncs`` in the stats), logs it (at most once every few seconds) and
  seeds the worker again.  A worker whose socket has taken nothing for :data:`SEND_WAIT`
  seconds while messages waited is taken for stuck: killed, and restarted.
* A seed (a new, restarted or resynced worker) is a sequence of chunks of operations
  (``seed()`` returns an iterable of lists, built lazily: see
  :meth:`lispd.engine.compiled.CompiledPath.seed_operations`), between a ``seed_begin`` and
  a ``seed_end`` (meanwhile the worker's engine hands the main process every packet its
  partial table would decide).  The first chunk is queued at once; the rest a chunk at a
  time, for at most :data:`SEED_BUDGET` seconds per loop turn (an empty chunk ends the
  turn's share: what comes next, a snapshot, takes a turn of its own), and only while less
  than :data:`SEED_LOW_WATER` bytes wait in the worker's queue (the worker's own pace bounds
  the queue).  Before each step the pending broadcasts are flushed,
  so every message reaches the worker in the order the changes were made: a chunk built from
  the tables as they are when it is queued is followed by every change made after it.  The
  worker counts as ready (:meth:`WorkerSet.ready`) only once its whole seed is applied: a
  counters request queued after the last chunk has been answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from lispd.engine import workerwire
from lispd.engine.workerwire import CountersReport, Operation, TunPunt, UdpPunt
from lispd.logfmt import kv

log = logging.getLogger(__name__)

REPORTS_PER_WAKE = 64
CONTROL_BUFFER = 4 * 1024 * 1024
SEND_WAIT = 5.0  # seconds a worker's socket may take nothing while messages wait: stuck
QUEUE_LIMIT = 16 * 1024 * 1024
"""Bytes that may wait for one worker beyond its socket buffer; past it the worker resyncs."""
SEED_LOW_WATER = 1024 * 1024
"""A seed's next chunk is built only while fewer bytes than this wait for the worker."""
SEED_BUDGET = 0.004
"""Seconds of one loop turn a worker's seed may take (chunks are built until it is spent)."""
RESYNC_LOG_EVERY = 10.0  # seconds between two resync warnings
RESTART_FIRST = 1.0
RESTART_MAX = 30.0
STABLE_AFTER = 60.0  # a worker up this long restarts after RESTART_FIRST again

TunHandler = Callable[[bytes], None]
UdpHandler = Callable[[bytes, int, int, str, int], None]
Counts = dict[str, dict[str, int]]
Seed = Callable[[], Iterable[list[Operation]]]
"""What loads a fresh engine: chunks of operations, each built when it is about to be sent."""


@dataclass
class WorkerSlot:
    """One worker: the descriptors it serves (owned by the daemon) and its current process."""

    index: int
    tun_fd: int
    receive: dict[int, int]  # IP version -> its SO_REUSEPORT 4341 socket
    process: subprocess.Popen[bytes] | None = None
    control: socket.socket | None = None
    started: float = 0.0
    delay: float = RESTART_FIRST
    restart: asyncio.TimerHandle | None = None
    counters: Counts = field(default_factory=dict)
    answered: int = 0  # the latest counters request it answered
    loaded: int = 0  # the request sent after its tables: answered, it forwards
    outgoing: deque[bytes] = field(default_factory=deque)  # messages its socket has not taken
    queued: int = 0  # their bytes
    writing: bool = False  # waiting for its socket to be writable
    progress: float = 0.0  # when its socket last took a message (or its queue was empty)
    seed: Iterator[list[Operation]] | None = None  # the rest of its seed, while seeding
    covered: bool = False  # its traffic taken by the main process while it restarts
    seed_step: asyncio.Handle | None = None  # the next seed step, when one is scheduled


def add_counts(into: Counts, extra: Counts) -> None:
    """Add ``extra``'s counters to ``into``'s (``last-send-errno``: the latest non-zero)."""
    for section, values in extra.items():
        target = into.setdefault(section, {})
        for key, value in values.items():
            if key == "last-send-errno":
                if value:
                    target[key] = value
                else:
                    target.setdefault(key, 0)
            else:
                target[key] = target.get(key, 0) + value


class WorkerSet:
    """The workers of one daemon (see the module docstring).

    ``engine``: the keyword arguments of :class:`_accel.Engine` (``tun_fd`` is each worker's);
    ``pools``: the send sockets' descriptors per IP version, shared by every engine;
    ``seed``: the chunks of operations that load a fresh engine with the current tables;
    ``on_tun`` / ``on_udp``: the Python path, for what the workers punt;
    ``queue_limit``: the bytes that may wait for one worker before it resyncs.
    """

    def __init__(
        self,
        slots: list[WorkerSlot],
        *,
        engine: dict[str, Any],
        pools: dict[int, list[int]],
        seed: Seed,
        on_tun: TunHandler,
        on_udp: UdpHandler,
        on_bad_report: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        queue_limit: int = QUEUE_LIMIT,
        cover: Callable[[WorkerSlot, bool], None] | None = None,
    ) -> None:
        self.slots = slots
        self.engine = engine
        self.pools = pools
        self.seed = seed
        self.on_tun = on_tun
        self.on_udp = on_udp
        self.on_bad_report = on_bad_report
        # Told (slot, True) when a worker is lost and (slot, False) before its new process
        # starts: the main process takes the dead worker's share of the traffic meanwhile.
        self.cover = cover
        self.clock = clock
        self.queue_limit = queue_limit
        self.seed_low_water = min(SEED_LOW_WATER, queue_limit // 4)
        self.restarts = 0
        self.resyncs = 0  # queues dropped for a worker too far behind, then seeded again
        self._resync_logged = -RESYNC_LOG_EVERY
        self.retired: Counts = {}  # the last counters of workers that died
        self._pending: list[Operation] = []
        self._flush: asyncio.Handle | None = None
        self._sequence = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._closing = False

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start every worker."""
        for slot in self.slots:
            self._spawn(slot)

    def _set_covered(self, slot: WorkerSlot, covered: bool) -> None:
        """Tell :attr:`cover` when the main process starts or stops taking ``slot``'s share
        (a failing cover is logged: the restart goes on)."""
        if self.cover is None or slot.covered == covered:
            return
        slot.covered = covered
        try:
            self.cover(slot, covered)
        except OSError as exc:
            log.warning("worker cover failed %s", kv(worker=slot.index, error=exc))

    def _spawn(self, slot: WorkerSlot) -> None:
        slot.restart = None
        if self._closing:
            return
        self._set_covered(slot, False)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for end in (ours, theirs):
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CONTROL_BUFFER)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CONTROL_BUFFER)
        ours.setblocking(False)
        spec = {
            "index": slot.index,
            "parent": os.getpid(),
            "control_fd": theirs.fileno(),
            "engine": {**self.engine, "tun_fd": slot.tun_fd},
            "pools": {str(v): fds for v, fds in self.pools.items()},
            "receive": {str(v): fd for v, fd in slot.receive.items()},
            "log_level": logging.getLogger("lispd").getEffectiveLevel(),
        }
        inherited = [theirs.fileno(), *slot.receive.values()]
        inherited += [fd for fds in self.pools.values() for fd in fds]
        if self.engine.get("table_fd", -1) >= 0:  # the shared forwarding table (read-only)
            inherited.append(self.engine["table_fd"])
        if slot.tun_fd >= 0:
            inherited.append(slot.tun_fd)
        try:
            slot.process = subprocess.Popen(
                [sys.executable, "-P", "-m", "lispd.engine.worker", json.dumps(spec)],
                pass_fds=inherited,
                stdin=subprocess.DEVNULL,
                env=_worker_environment(),
            )
        except OSError as exc:
            ours.close()
            log.error("worker could not start %s", kv(worker=slot.index, error=exc))
            self._set_covered(slot, True)  # its queue and sockets are the main engine's meanwhile
            self._schedule_restart(slot)
            return
        finally:
            theirs.close()
        log.info("worker started %s", kv(worker=slot.index, pid=slot.process.pid))
        self.connect(slot, ours)

    def connect(self, slot: WorkerSlot, control: socket.socket) -> None:
        """Serve the worker of ``slot`` over ``control`` (non-blocking, our end of its socket
        pair): read its reports, and seed its tables."""
        slot.control = control
        slot.started = self.clock()
        slot.answered = slot.loaded = 0
        asyncio.get_running_loop().add_reader(control.fileno(), self._on_reports, slot)
        self._start_seed(slot)

    def _lost(self, slot: WorkerSlot, why: str) -> None:
        """The worker's control socket closed or failed: reap it, keep its counters, restart."""
        if slot.control is None:
            return
        self._disconnect(slot)
        code = _reap(slot.process)
        slot.process = None
        add_counts(self.retired, slot.counters)
        slot.counters = {}
        if self._closing:
            log.info("worker stopped %s", kv(worker=slot.index, exit=code))
            return
        self.restarts += 1
        self._set_covered(slot, True)
        if self.clock() - slot.started >= STABLE_AFTER:
            slot.delay = RESTART_FIRST
        log.warning(
            "worker lost, restarting %s",
            kv(worker=slot.index, reason=why, exit=code, restart_in=round(slot.delay, 1)),
        )
        self._schedule_restart(slot)
        self._answer_waiters()

    def _schedule_restart(self, slot: WorkerSlot) -> None:
        loop = asyncio.get_running_loop()
        slot.restart = loop.call_later(slot.delay, self._spawn, slot)
        slot.delay = min(slot.delay * 2, RESTART_MAX)

    def stopping(self) -> None:
        """The daemon is shutting down: workers that exit now (a service manager signals the
        whole group) are not restarted."""
        self._closing = True

    async def close(self, wait: float = 2.0) -> None:
        """Stop every worker: close their control sockets (they exit), SIGKILL stragglers."""
        self._closing = True
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        processes = []
        for slot in self.slots:
            if slot.restart is not None:
                slot.restart.cancel()
            self._set_covered(slot, False)
            if slot.control is not None:
                self._disconnect(slot)
            if slot.process is not None:
                processes.append(slot.process)
                slot.process = None
        deadline = time.monotonic() + wait
        for process in processes:
            while process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            _reap(process)
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _disconnect(self, slot: WorkerSlot) -> None:
        """Stop watching the worker's control socket, close it, forget what waited for it."""
        control = slot.control
        if control is None:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(control.fileno())
        if slot.writing:
            loop.remove_writer(control.fileno())
        control.close()
        slot.control = None
        self._stop_seed(slot)
        slot.outgoing.clear()
        slot.queued, slot.writing = 0, False

    def is_ready(self, slot: WorkerSlot) -> bool:
        """Whether a running worker has applied its whole seed (and so forwards)."""
        return slot.seed is None and slot.answered >= slot.loaded

    async def ready(self, timeout: float = 10.0) -> bool:
        """Wait (at most ``timeout``) until every worker has loaded its tables and forwards;
        False when one has not (it goes on starting, or is restarted)."""
        deadline = self.clock() + timeout
        while self.clock() < deadline:
            if all(self.is_ready(s) for s in self.slots if s.control is not None):
                return True
            await asyncio.sleep(0.01)
        return False

    def seeding(self) -> int:
        """Workers whose seed is still being built or sent."""
        return sum(1 for s in self.slots if s.seed is not None)

    def queued(self) -> int:
        """Bytes waiting for the workers' sockets, all workers together."""
        return sum(s.queued for s in self.slots)

    def pids(self) -> list[int]:
        """The running workers' process IDs."""
        return [s.process.pid for s in self.slots if s.process is not None]

    # --- tables -------------------------------------------------------------------------------

    def broadcast(self, name: str, *args: Any) -> None:
        """Call engine method ``name`` in every worker (sent at the end of this loop turn)."""
        self._pending.append((name, args))
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Queue the pending operations for every worker now (and send what their sockets
        take)."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        pending, self._pending = self._pending, []
        if not pending:
            return
        messages = workerwire.batches(pending)
        for slot in self.slots:
            self._enqueue(slot, messages)

    def _enqueue(self, slot: WorkerSlot, messages: list[bytes]) -> None:
        """Queue ``messages`` for the worker, in order, and send what its socket takes now;
        never waits.  A queue past the limit is dropped and the worker seeded again; a worker
        whose socket took nothing for :data:`SEND_WAIT` seconds is killed (and restarted)."""
        if slot.control is None or not messages:
            return
        now = self.clock()
        if not slot.outgoing and not slot.writing:  # nothing waits: the socket has room
            slot.progress = now
        elif now - slot.progress > SEND_WAIT:
            self._stuck(slot)
            return
        for message in messages:
            slot.outgoing.append(message)
            slot.queued += len(message)
        if slot.queued > self.queue_limit:
            self._resync(slot)
            return
        if not slot.writing:  # else the socket is full: the writer callback sends
            self._drain(slot)

    def _drain(self, slot: WorkerSlot) -> None:
        """Send queued messages until the socket is full (then wait until it is writable)."""
        control = slot.control
        if control is None:
            return
        outgoing = slot.outgoing
        sent = 0
        while outgoing:
            try:
                control.send(outgoing[0])
            except BlockingIOError:
                break
            except OSError as exc:
                self._kill(slot, f"table update failed: {exc}")
                return
            slot.queued -= len(outgoing.popleft())
            sent += 1
        if sent:
            slot.progress = self.clock()
        if outgoing and not slot.writing:
            asyncio.get_running_loop().add_writer(control.fileno(), self._on_writable, slot)
            slot.writing = True
        elif not outgoing and slot.writing:
            asyncio.get_running_loop().remove_writer(control.fileno())
            slot.writing = False

    def _on_writable(self, slot: WorkerSlot) -> None:
        """The worker's socket has room: send, and go on with its seed when there is one."""
        self._drain(slot)
        if slot.seed is not None and slot.seed_step is None and slot.queued < self.seed_low_water:
            self._seed_step(slot)

    def _kill(self, slot: WorkerSlot, why: str) -> None:
        if slot.process is not None:
            slot.process.kill()
        self._lost(slot, why)

    def _stuck(self, slot: WorkerSlot) -> None:
        self._kill(slot, f"it read no table update for {SEND_WAIT:g} s")

    def _resync(self, slot: WorkerSlot) -> None:
        """The worker is too far behind: drop what waits for it and seed it again."""
        dropped = slot.queued
        slot.outgoing.clear()
        slot.queued = 0
        self.resyncs += 1
        now = self.clock()
        if now - self._resync_logged >= RESYNC_LOG_EVERY:
            self._resync_logged = now
            log.warning(
                "worker behind on table updates, seeding it again %s",
                kv(worker=slot.index, dropped_bytes=dropped, resyncs=self.resyncs),
            )
        self._start_seed(slot)

    # --- seeds ----------------------------------------------------------------------------------

    def _start_seed(self, slot: WorkerSlot) -> None:
        """Load the worker's tables from scratch: the seed's first chunk (which clears them)
        now, the rest over the next loop turns (:meth:`_seed_step`)."""
        self._stop_seed(slot)
        self.flush()  # what changed before goes first
        seed = iter(self.seed())
        slot.seed = seed
        first = self._next_chunk(slot, seed)
        if slot.seed is not seed:  # the seed failed: the worker is being restarted
            return
        # The worker's engine punts everything its partial table would decide until seed_end.
        begin: list[Operation] = [(workerwire.SEED_BEGIN, ())]
        self._enqueue(slot, workerwire.batches(begin + (first or [])))
        if slot.seed is seed:
            self._schedule_seed_step(slot)

    def _stop_seed(self, slot: WorkerSlot) -> None:
        if slot.seed_step is not None:
            slot.seed_step.cancel()
        slot.seed_step, slot.seed = None, None

    def _schedule_seed_step(self, slot: WorkerSlot) -> None:
        if slot.seed_step is None and slot.queued < self.seed_low_water:
            slot.seed_step = asyncio.get_running_loop().call_soon(self._seed_step, slot)
        # else the writer callback takes the next step once the queue has drained

    def _seed_step(self, slot: WorkerSlot) -> None:
        """Queue the seed's next chunks: for :data:`SEED_BUDGET` seconds at most and while
        less than :data:`SEED_LOW_WATER` bytes wait; after the last one, the counters request
        whose answer marks the worker ready."""
        slot.seed_step = None
        seed = slot.seed
        if seed is None or slot.control is None:
            return
        self.flush()  # every change made before this chunk is built goes before it
        deadline = time.perf_counter() + SEED_BUDGET
        while slot.seed is seed and slot.queued < self.seed_low_water:
            chunk = self._next_chunk(slot, seed)
            if slot.seed is not seed:  # the seed failed: the worker is being restarted
                return
            if chunk is None:
                slot.seed = None
                self._sequence += 1
                slot.loaded = self._sequence
                end = workerwire.encode_operations([(workerwire.SEED_END, ())])
                self._enqueue(slot, [end, workerwire.encode_counters_request(slot.loaded)])
                return
            if not chunk:  # the seed asks for a turn of its own for what comes next
                break
            self._enqueue(slot, workerwire.batches(chunk))
            if time.perf_counter() >= deadline:
                break
        if slot.seed is seed:
            self._schedule_seed_step(slot)

    def _next_chunk(
        self, slot: WorkerSlot, seed: Iterator[list[Operation]]
    ) -> list[Operation] | None:
        """The seed's next chunk, None after the last; a seed that fails (a bug) costs the
        worker a restart, not the loop its callback."""
        try:
            return next(seed, None)
        except Exception:
            log.exception("worker seed failed %s", kv(worker=slot.index))
            self._kill(slot, "its seed failed")
            return None

    # --- punts and counters -------------------------------------------------------------------

    def _on_reports(self, slot: WorkerSlot) -> None:
        control = slot.control
        if control is None:
            return
        for _ in range(REPORTS_PER_WAKE):
            try:
                data = control.recv(workerwire.MAX_MESSAGE + 65536)
            except BlockingIOError:
                return
            except OSError as exc:
                self._lost(slot, str(exc))
                return
            if not data:
                self._lost(slot, "control socket closed")
                return
            try:
                report = workerwire.decode_report(data)
            except workerwire.WireError:
                self.on_bad_report()
                continue
            if type(report) is TunPunt:
                self.on_tun(report.packet)
            elif type(report) is UdpPunt:
                self.on_udp(report.payload, report.ttl, report.tos, report.source, report.port)
            elif type(report) is CountersReport:
                slot.counters = report.counters
                if report.sequence:
                    slot.answered = max(slot.answered, report.sequence)
                    self._answer_waiters()

    def counters(self) -> Counts:
        """The workers' engine counters summed (the latest each reported, and those of workers
        that died)."""
        total: Counts = {}
        add_counts(total, self.retired)
        for slot in self.slots:
            add_counts(total, slot.counters)
        return total

    def per_worker(self) -> dict[int, Counts]:
        """The latest counters of each running worker."""
        return {s.index: s.counters for s in self.slots if s.control is not None}

    async def refresh(self, timeout: float = 0.5) -> None:
        """Ask every running worker for its counters and wait (at most ``timeout``) for the
        answers, so that :meth:`counters` is current."""
        self._sequence += 1
        sequence = self._sequence
        request = workerwire.encode_counters_request(sequence)
        for slot in self.slots:
            # queued after the table updates already waiting: a busy worker answers late or
            # not at all (its last counters stand; the timeout below bounds the wait)
            self._enqueue(slot, [request])
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((sequence, waiter))
        self._answer_waiters()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        self._waiters = [(s, w) for s, w in self._waiters if w is not waiter]

    def _answer_waiters(self) -> None:
        running = [s for s in self.slots if s.control is not None]
        for sequence, waiter in self._waiters:
            if not waiter.done() and all(s.answered >= sequence for s in running):
                waiter.set_result(None)


def _worker_environment() -> dict[str, str]:
    """Our environment, with the directory our lispd package came from first on the path:
    the worker runs the same code as this process (and ``-P`` keeps the working directory
    off its path)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _reap(process: subprocess.Popen[bytes] | None) -> int | None:
    """Collect an exiting process (SIGKILL when it has not exited within a moment)."""
    if process is None:
        return None
    try:
        return process.wait(timeout=0.5)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
