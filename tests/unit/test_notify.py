"""sd_notify: the notify protocol, and never blocking the daemon's loop on a full queue."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from lispd.io.notify import sd_notify


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> socket.socket:
    """A service manager's notify socket (``NOTIFY_SOCKET`` points at it) that reads nothing
    until the test does."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_sends_one_datagram_per_call(manager: socket.socket) -> None:
    assert sd_notify("READY=1\nSTATUS=up")
    manager.settimeout(1.0)
    assert manager.recv(4096) == b"READY=1\nSTATUS=up"


def test_without_a_manager_it_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sd_notify("READY=1")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert not sd_notify("READY=1")


def test_a_manager_that_does_not_read_never_blocks_the_caller(manager: socket.socket) -> None:
    """The soak found it: the lab's notify socket is read only while waiting for READY=1, so
    after ten STATUS= updates (net.unix.max_dgram_qlen) a blocking send froze lispd's whole
    loop (data plane, control plane, control socket) about two minutes into a run.  Once the
    queue is full, notifications are dropped and sd_notify returns False at once."""
    results: list[bool] = []

    def notify_many() -> None:
        for k in range(200):  # far more than any default queue holds
            results.append(sd_notify(f"STATUS=update {k}"))

    worker = threading.Thread(target=notify_many, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "sd_notify blocked on the full notify socket"
    assert len(results) == 200
    assert results[0] is True and results[-1] is False
    # What was queued arrived whole and in order; the manager catches up from there.
    manager.settimeout(1.0)
    assert manager.recv(4096) == b"STATUS=update 0"
    manager.setblocking(False)
    while True:
        try:
            manager.recv(4096)
        except BlockingIOError:
            break
    assert sd_notify("STATUS=again")
    assert manager.recv(4096) == b"STATUS=again"
