"""The main process's side of the fast-path workers: start them, keep their tables current,
take what they punt, collect their counters, and restart the ones that die.

The main process runs one engine itself (queue 0 of the TUN, its own 4341 sockets) and
``N - 1`` workers (:mod:`lispd.engine.worker`) each on a queue and sockets of their own.
Every table change the control plane makes reaches every engine: the main one at once, the
workers in one message per event-loop turn (:meth:`WorkerSet.broadcast`).  A worker that dies
is started again after a pause (1 s, doubling up to 30 s while it keeps dying) and gets the
whole table again (``seed``); its last counters are kept so sums never go backwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lispd.engine import workerwire
from lispd.engine.workerwire import CountersReport, Operation, TunPunt, UdpPunt
from lispd.logfmt import kv

log = logging.getLogger(__name__)

REPORTS_PER_WAKE = 64
CONTROL_BUFFER = 4 * 1024 * 1024
SEND_WAIT = 5.0  # seconds a table load may wait for a busy worker before it is restarted
RESTART_FIRST = 1.0
RESTART_MAX = 30.0
STABLE_AFTER = 60.0  # a worker up this long restarts after RESTART_FIRST again

TunHandler = Callable[[bytes], None]
UdpHandler = Callable[[bytes, int, int, str, int], None]
Counts = dict[str, dict[str, int]]


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
    ``seed``: the operations that load a fresh engine with the current tables;
    ``on_tun`` / ``on_udp``: the Python path, for what the workers punt.
    """

    def __init__(
        self,
        slots: list[WorkerSlot],
        *,
        engine: dict[str, Any],
        pools: dict[int, list[int]],
        seed: Callable[[], list[Operation]],
        on_tun: TunHandler,
        on_udp: UdpHandler,
        on_bad_report: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slots = slots
        self.engine = engine
        self.pools = pools
        self.seed = seed
        self.on_tun = on_tun
        self.on_udp = on_udp
        self.on_bad_report = on_bad_report
        self.clock = clock
        self.restarts = 0
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

    def _spawn(self, slot: WorkerSlot) -> None:
        slot.restart = None
        if self._closing:
            return
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
            self._schedule_restart(slot)
            return
        finally:
            theirs.close()
        slot.control = ours
        slot.started = self.clock()
        slot.answered = 0
        asyncio.get_running_loop().add_reader(ours.fileno(), self._on_reports, slot)
        log.info("worker started %s", kv(worker=slot.index, pid=slot.process.pid))
        self._sequence += 1
        slot.loaded = self._sequence
        loaded = workerwire.encode_counters_request(slot.loaded)  # answered once seeded
        self._send(slot, [*workerwire.batches(self.seed()), loaded])

    def _lost(self, slot: WorkerSlot, why: str) -> None:
        """The worker's control socket closed or failed: reap it, keep its counters, restart."""
        if slot.control is None:
            return
        asyncio.get_running_loop().remove_reader(slot.control.fileno())
        slot.control.close()
        slot.control = None
        code = _reap(slot.process)
        slot.process = None
        add_counts(self.retired, slot.counters)
        slot.counters = {}
        if self._closing:
            log.info("worker stopped %s", kv(worker=slot.index, exit=code))
            return
        self.restarts += 1
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
        loop = asyncio.get_running_loop()
        processes = []
        for slot in self.slots:
            if slot.restart is not None:
                slot.restart.cancel()
            if slot.control is not None:
                loop.remove_reader(slot.control.fileno())
                slot.control.close()
                slot.control = None
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

    async def ready(self, timeout: float = 10.0) -> bool:
        """Wait (at most ``timeout``) until every worker has loaded its tables and forwards;
        False when one has not (it goes on starting, or is restarted)."""
        deadline = self.clock() + timeout
        while self.clock() < deadline:
            if all(s.answered >= s.loaded for s in self.slots if s.control is not None):
                return True
            await asyncio.sleep(0.01)
        return False

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
        """Send the pending operations now."""
        self._flush = None
        pending, self._pending = self._pending, []
        if not pending:
            return
        messages = workerwire.batches(pending)
        for slot in self.slots:
            self._send(slot, messages)

    def _send(self, slot: WorkerSlot, messages: list[bytes]) -> None:
        """Deliver ``messages`` in order, waiting (bounded) for a worker that is behind; one
        that stays stuck is killed, and restarted with the whole table."""
        for message in messages:
            if slot.control is None:
                return
            try:
                _send_waiting(slot.control, message, SEND_WAIT)
            except (OSError, TimeoutError) as exc:
                if slot.process is not None:
                    slot.process.kill()
                self._lost(slot, f"table update failed: {exc}")
                return

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
            if slot.control is not None:
                # never wait on a worker here: a busy one answers late or not at all (its
                # last counters stand; the timeout below bounds the wait)
                with contextlib.suppress(OSError):
                    slot.control.send(request)
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


def _send_waiting(sock: socket.socket, message: bytes, wait: float) -> None:
    """Send one message on a non-blocking socket, waiting up to ``wait`` seconds for room."""
    deadline = time.monotonic() + wait
    while True:
        try:
            sock.send(message)
            return
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the worker does not read its table updates") from None
            select.select([], [sock], [], left)


def _reap(process: subprocess.Popen[bytes] | None) -> int | None:
    """Collect an exiting process (SIGKILL when it has not exited within a moment)."""
    if process is None:
        return None
    try:
        return process.wait(timeout=0.5)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
