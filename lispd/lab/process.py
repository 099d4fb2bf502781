"""Processes the lab runs inside namespaces: daemons (sd_notify readiness) and captures."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from lispd.lab.netns import LabError
from lispd.tools.pcap import CapturedPacket, ip_payload, read_file

__all__ = [
    "Capture",
    "DaemonHandle",
    "DaemonStartError",
    "log_tail",
    "stop_process",
    "terminate_all",
]


class DaemonStartError(LabError):
    """A daemon exited, or stayed silent, before it said ``READY=1``; carries its log tail."""

    def __init__(self, message: str, log_tail: str, returncode: int | None) -> None:
        self.log_tail = log_tail
        self.returncode = returncode
        super().__init__(f"{message}\n--- log tail ---\n{log_tail}")


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of the text file at ``path`` ("" if it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Send ``sig`` to the process group of ``proc`` (its own session) or to ``proc``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        try:
            pgid = os.getpgid(proc.pid)
        except ProcessLookupError:
            return
        if pgid == proc.pid:
            os.killpg(pgid, sig)
        else:
            proc.send_signal(sig)


def stop_process(
    proc: subprocess.Popen[bytes], timeout: float = 5.0, sig: int = signal.SIGTERM
) -> int:
    """Send ``sig`` (default SIGTERM), wait ``timeout`` s, then SIGKILL; return the exit code.

    The exit code is negative when a signal ended the process (``subprocess`` convention).
    """
    if proc.poll() is None:
        _signal(proc, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def terminate_all(procs: Iterable[subprocess.Popen[bytes]], grace: float = 3.0) -> None:
    """SIGTERM every running process in ``procs``, wait up to ``grace`` s in all, SIGKILL."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            _signal(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL)
            proc.wait()


class DaemonHandle:
    """A daemon started by :meth:`lispd.lab.Lab.start_lispd`.

    ``pid``, ``node``, ``config_path``, ``log_path``; ``notifications`` holds every line
    received on the daemon's ``NOTIFY_SOCKET`` so far (``READY=1``, ``STATUS=...``).
    """

    def __init__(
        self,
        node: str,
        proc: subprocess.Popen[bytes],
        config_path: Path,
        log_path: Path,
        notify_sock: socket.socket,
    ) -> None:
        self.node = node
        self.proc = proc
        self.config_path = config_path
        self.log_path = log_path
        self.notifications: list[str] = []
        self._sock: socket.socket | None = notify_sock

    @property
    def pid(self) -> int:
        """The daemon's process id (``ip netns exec`` execs it, so this is the daemon)."""
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once it has exited, else None."""
        return self.proc.poll()

    def running(self) -> bool:
        """Whether the daemon is still running."""
        return self.proc.poll() is None

    def log_text(self) -> str:
        """Everything the daemon wrote to stdout and stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the daemon's log."""
        return log_tail(self.log_path, lines)

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the daemon (e.g. ``signal.SIGHUP`` to reload)."""
        self.proc.send_signal(sig)

    def _receive(self, wait: float) -> None:
        if self._sock is None:
            time.sleep(wait)
            return
        readable, _, _ = select.select([self._sock], [], [], wait)
        while readable:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                break
            self.notifications.extend(data.decode(errors="replace").splitlines())

    def read_notifications(self) -> list[str]:
        """Read (without waiting) what the daemon sent to its notify socket since the last
        read; return the new lines, which are also appended to :attr:`notifications`.

        Call it now and then for a daemon that runs for minutes, as a service manager reads
        its socket: the socket queues only ``net.unix.max_dgram_qlen`` (10) datagrams, and
        lispd drops the notifications that do not fit (it never blocks on them)."""
        before = len(self.notifications)
        self._receive(0.0)
        return self.notifications[before:]

    def wait_notify(self, line: str = "READY=1", timeout: float = 15.0, *, start: int = 0) -> None:
        """Wait until ``line`` is among the notifications (from index ``start`` on).

        Raises :class:`DaemonStartError` with the log tail if the daemon exits first or
        ``timeout`` seconds pass; on timeout the daemon is left running.  Pass
        ``start=len(handle.notifications)`` to wait for a *new* ``READY=1`` (after a reload).
        """
        deadline = time.monotonic() + timeout
        while True:
            self._receive(0.0)
            if line in self.notifications[start:]:
                return
            if self.proc.poll() is not None:
                self._receive(0.0)  # a datagram sent just before exiting still counts
                if line in self.notifications[start:]:
                    return
                raise DaemonStartError(
                    f"{self.node}: daemon (pid {self.pid}) exited with {self.proc.returncode} "
                    f"before sending {line}",
                    self.log_tail(),
                    self.proc.returncode,
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise DaemonStartError(
                    f"{self.node}: daemon (pid {self.pid}) sent no {line} within {timeout:g} s",
                    self.log_tail(),
                    None,
                )
            self._receive(min(left, 0.05))

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, wait ``timeout`` s, SIGKILL; return the exit code (negative: signal)."""
        code = stop_process(self.proc, timeout)
        if self._sock is not None:
            self._receive(0.0)  # what it said while stopping (STOPPING=1)
            self._sock.close()
            self._sock = None
        return code


class Capture:
    """A running tcpdump writing ``path`` (pcap); see :meth:`lispd.lab.Lab.capture`."""

    def __init__(self, proc: subprocess.Popen[bytes], path: Path, log_path: Path) -> None:
        self.proc = proc
        self.path = path
        self.log_path = log_path
        #: Packets the kernel dropped (tcpdump's ring full); known after :meth:`stop`.
        self.dropped: int | None = None

    def wait_listening(self, timeout: float = 10.0) -> None:
        """Wait until tcpdump says it is listening (packets from then on are captured)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "listening on" in self._log():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        stop_process(self.proc, 1.0)
        raise LabError(f"tcpdump did not start:\n{log_tail(self.log_path)}")

    def stop(self, settle: float = 0.2) -> Path:
        """Wait ``settle`` s for packets in flight, stop tcpdump (SIGINT); return the path."""
        if self.proc.poll() is None:
            time.sleep(settle)
            stop_process(self.proc, 5.0, signal.SIGINT)
            m = re.search(r"^(\d+) packets? dropped by kernel", self._log(), re.MULTILINE)
            self.dropped = int(m.group(1)) if m else None
        return self.path

    def _log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def packets(self) -> list[CapturedPacket]:
        """The captured frames (read the file after :meth:`stop`)."""
        return read_file(self.path)

    def ip_packets(self) -> list[bytes]:
        """The IPv4/IPv6 packets of the captured frames (link-layer header stripped)."""
        out = []
        for pkt in self.packets():
            ip = ip_payload(pkt.linktype, pkt.frame)
            if ip is not None:
                out.append(ip)
        return out
