"""A fast-path worker process: one compiled engine on its own TUN queue and 4341 sockets.

Started by the main process (:class:`lispd.engine.workers.WorkerSet`) as
``python -m lispd.engine.worker SPEC``, with the descriptors SPEC names inherited: its TUN
queue, its SO_REUSEPORT 4341 sockets (one per family), the send pools, and one end of a
SOCK_SEQPACKET pair to the main process.  The kernel spreads flows over the TUN queues and the
4341 sockets; each worker forwards what its engine's tables settle and sends the rest to the
main process (:mod:`lispd.engine.workerwire`), which takes it through the Python path and
installs every table change in every engine.

The worker has no state of its own to lose: when it dies the main process starts another and
loads its tables again.  It exits when the main process closes its end of the pair, and the
kernel kills it when the main process dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

from lispd.engine import workerwire
from lispd.logfmt import LogfmtFormatter, kv

log = logging.getLogger("lispd.worker")

PR_SET_PDEATHSIG = 1
COUNTERS_EVERY = 1.0  # seconds between unasked counters reports (when they changed)
COMMANDS_PER_WAKE = 64
RECEIVE_SIZE = workerwire.MAX_MESSAGE + 4096


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL us when the process that started us exits (and exit now if it
    already has)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed %s", kv(errno=ctypes.get_errno()))
    if os.getppid() != parent:
        sys.exit(0)


class Worker:
    """The worker's loop around its engine (built by :func:`make_engine`)."""

    def __init__(self, spec: dict[str, Any], engine: Any, control: socket.socket) -> None:
        self.index: int = spec["index"]
        self.engine = engine
        self.control = control
        self.tun_fd: int = spec["engine"].get("tun_fd", -1)
        self.receive_fds: list[int] = list(spec["receive"].values())
        self.drops: dict[str, int] = {}
        self.seeding = False  # between seed_begin and seed_end: the engine punts all
        self.punt_all = False  # what the main process asked for (the engine's, once seeded)
        self._reported: dict[str, Any] | None = None
        self._last_error_log = 0.0

    # --- what goes to the main process ---------------------------------------------------------

    def _send(self, message: bytes) -> None:
        try:
            self.control.send(message)
        except BlockingIOError:  # the main process is behind: the packet is lost, counted
            self._drop("worker-punt-queue-full")
        except OSError as exc:  # EMSGSIZE (a punt larger than the buffer), or the main is gone
            self._drop("worker-punt-failed")
            self._log_error("punt to the main process failed", error=exc)

    def punt_tun(self, packet: bytes) -> None:
        """The engine's TUN punt handler."""
        self._send(workerwire.encode_tun_punt(packet))

    def punt_udp(self, payload: bytes, ttl: int, tos: int, source: str, port: int) -> None:
        """The engine's 4341 punt handler."""
        self._send(workerwire.encode_udp_punt(payload, ttl, tos, source, port))

    def counters(self) -> dict[str, dict[str, int]]:
        """The engine's counters with the worker's own drops."""
        counts: dict[str, dict[str, int]] = self.engine.counters()
        drops = counts.setdefault("drops", {})
        for reason, value in self.drops.items():
            drops[reason] = drops.get(reason, 0) + value
        return counts

    def report(self, sequence: int = 0) -> None:
        """Send the counters (asked: always; unasked: only when they changed)."""
        counts = self.counters()
        if sequence == 0 and counts == self._reported:
            return
        self._reported = counts
        self._send(workerwire.encode_counters(sequence, counts))

    def _drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def _log_error(self, event: str, **fields: object) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= 1.0:
            self._last_error_log = now
            log.warning("%s %s", event, kv(worker=self.index, **fields))

    # --- what comes from the main process ------------------------------------------------------

    def on_control(self) -> bool:
        """Apply what the main process sent; False when it closed its end (time to exit)."""
        for _ in range(COMMANDS_PER_WAKE):
            try:
                data = self.control.recv(RECEIVE_SIZE)
            except BlockingIOError:
                return True
            except ConnectionError:
                return False
            if not data:
                return False
            self.apply(data)
        return True

    def apply(self, data: bytes) -> None:
        """One command message: table operations, or a counters request."""
        try:
            kind, body = workerwire.decode_command(data)
        except workerwire.WireError as exc:
            self._drop("worker-bad-command")
            self._log_error("bad command from the main process", error=exc)
            return
        if kind == workerwire.COUNTERS_REQUEST:
            self.report(body)
            return
        for name, args in body:
            try:
                self._operation(name, args)
            except (TypeError, ValueError, OverflowError, MemoryError) as exc:
                self._drop("worker-bad-command")
                self._log_error("operation failed", operation=name, error=exc)

    def _operation(self, name: str, args: tuple[Any, ...]) -> None:
        """One operation: an engine method, or a mark around a seed (see
        :data:`lispd.engine.workerwire.OPERATIONS`)."""
        engine = self.engine
        if name == workerwire.SEED_BEGIN:
            self.seeding = True
            engine.set_punt_all(True)
        elif name == workerwire.SEED_END:
            self.seeding = False
            engine.set_punt_all(self.punt_all)
        elif name == "set_punt_all":
            (flag,) = args  # a ValueError (counted) when there is not exactly one
            self.punt_all = bool(flag)
            if not self.seeding:
                engine.set_punt_all(self.punt_all)
        else:
            getattr(engine, name)(*args)

    # --- the loop --------------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until the main process closes the control socket: the engine's own loop in C
        (:meth:`_accel.Engine.serve`: no Python between a packet's wake-up and its
        forwarding) returns when the main process sent something or a report is due."""
        engine, punt_tun, punt_udp = self.engine, self.punt_tun, self.punt_udp
        control_fd = self.control.fileno()
        next_report = time.monotonic() + COUNTERS_EVERY
        while True:
            wait_ms = max(0, int((next_report - time.monotonic()) * 1000))
            try:
                control = engine.serve(self.receive_fds, control_fd, wait_ms, punt_tun, punt_udp)
            except Exception as exc:  # a device or socket failure costs this wake-up, not us
                self._drop("internal-error")
                self._log_error("serve failed", error=exc)
                control = True  # what the main process sent is read all the same
                time.sleep(0.001)  # a device failing at once every time must not spin a core
            if control and not self.on_control():
                return
            now = time.monotonic()
            if now >= next_report:
                self.report()
                next_report = now + COUNTERS_EVERY


def make_engine(spec: dict[str, Any]) -> Any:
    """The compiled engine SPEC describes, with its sockets."""
    import lispd.engine._accel as _accel

    engine = _accel.Engine(**spec["engine"])
    for version, fds in spec["pools"].items():
        engine.set_pool(int(version), fds)
    for version, fd in spec["receive"].items():
        engine.set_data_socket(int(version), fd)  # NAT-translated destinations: from 4341
    return engine


def main(argv: list[str]) -> int:
    """``python -m lispd.engine.worker SPEC`` (SPEC: JSON, see WorkerSet)."""
    spec = json.loads(argv[1])
    handler = logging.StreamHandler(sys.stderr)  # the main process's stderr: the same format
    handler.setFormatter(LogfmtFormatter(journal=bool(os.environ.get("JOURNAL_STREAM"))))
    logging.basicConfig(level=spec.get("log_level", logging.INFO), handlers=[handler])
    die_with_parent(spec["parent"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is for the main process
    control = socket.socket(fileno=spec["control_fd"])
    control.setblocking(False)
    worker = Worker(spec, make_engine(spec), control)
    log.debug("worker started %s", kv(worker=worker.index, pid=os.getpid()))
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
