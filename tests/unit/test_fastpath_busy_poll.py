"""The compiled engine's own wait loop (``serve``, a worker's) and its adaptive busy-polling
(``[dataplane] busy-poll``: after a batch it keeps reading its TUN and 4341 sockets until they
stay empty for ``busy_poll_us``).

A socket pair stands in for the TUN and one for a 4341 socket; an engine without tables
punts every packet, so the handlers show what the spin read.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.unit.fastpath_packets import lisp_header, packed, require_accel, udp_packet

_accel = require_accel()

SRC, DST = packed("198.51.100.1"), packed("203.0.113.9")


@pytest.fixture
def pairs() -> Iterator[tuple[socket.socket, socket.socket, socket.socket, socket.socket]]:
    """(our TUN end, the engine's TUN end, our 4341 end, the engine's 4341 end)."""
    tun_ours, tun_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    udp_ours, udp_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for sock in (tun_theirs, udp_theirs):
        sock.setblocking(False)
    yield tun_ours, tun_theirs, udp_ours, udp_theirs
    for sock in (tun_ours, tun_theirs, udp_ours, udp_theirs):
        sock.close()


def fastpath(engine: object) -> dict[str, int]:
    counters: dict[str, dict[str, int]] = engine.counters()  # type: ignore[attr-defined]
    return counters["fastpath"]


def test_zero_returns_at_once_and_reads_nothing(
    pairs: tuple[socket.socket, socket.socket, socket.socket, socket.socket],
) -> None:
    tun_ours, tun_theirs, _, udp_theirs = pairs
    engine = _accel.Engine(itr=True, etr=True, tun_fd=tun_theirs.fileno())
    tun_ours.send(udp_packet(SRC, DST))
    seen: list[object] = []
    assert engine.busy_poll([udp_theirs.fileno()], seen.append, lambda *a: seen.append(a)) is None
    assert seen == [] and fastpath(engine)["busy-polls"] == 0
    assert engine.from_tun() == [udp_packet(SRC, DST)]  # still queued for the next wake-up


def test_the_spin_handles_what_is_waiting_on_the_tun_and_every_socket(
    pairs: tuple[socket.socket, socket.socket, socket.socket, socket.socket],
) -> None:
    tun_ours, tun_theirs, udp_ours, udp_theirs = pairs
    extra_ours, extra_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    extra_theirs.setblocking(False)
    try:
        engine = _accel.Engine(itr=True, etr=True, tun_fd=tun_theirs.fileno(), busy_poll_us=200)
        inner = udp_packet(SRC, DST)
        for _ in range(3):
            tun_ours.send(inner)
        udp_ours.send(lisp_header() + inner)
        extra_ours.send(lisp_header() + inner)
        from_tun: list[bytes] = []
        from_udp: list[bytes] = []
        fds = [udp_theirs.fileno(), extra_theirs.fileno()]
        engine.busy_poll(fds, from_tun.append, lambda payload, *_: from_udp.append(payload))
        assert from_tun == [inner] * 3
        assert from_udp == [lisp_header() + inner] * 2
        counts = fastpath(engine)
        assert (counts["busy-polls"], counts["busy-poll-packets"]) == (1, 5)
        assert (counts["punted-tun"], counts["punted-udp"]) == (3, 2)
    finally:
        extra_ours.close()
        extra_theirs.close()


def test_an_idle_spin_ends_and_is_counted(
    pairs: tuple[socket.socket, socket.socket, socket.socket, socket.socket],
) -> None:
    _, tun_theirs, _, udp_theirs = pairs
    engine = _accel.Engine(itr=True, tun_fd=tun_theirs.fileno(), busy_poll_us=1000)
    started = time.monotonic()
    engine.busy_poll([udp_theirs.fileno()], print, print)
    # 1 ms of nothing ends it (2 ms is the cap); the bound only catches a spin that never ends
    assert time.monotonic() - started < 5.0
    assert fastpath(engine)["busy-polls"] == 1 and fastpath(engine)["busy-poll-packets"] == 0


def test_a_failing_handler_ends_the_spin_with_its_exception(
    pairs: tuple[socket.socket, socket.socket, socket.socket, socket.socket],
) -> None:
    tun_ours, tun_theirs, _, udp_theirs = pairs
    engine = _accel.Engine(itr=True, tun_fd=tun_theirs.fileno(), busy_poll_us=100)
    tun_ours.send(udp_packet(SRC, DST))

    def fail(_: bytes) -> None:
        raise MemoryError("the handler failed")

    with pytest.raises(MemoryError):
        engine.busy_poll([udp_theirs.fileno()], fail, print)
    assert fastpath(engine)["punted-tun"] == 1


def test_bad_arguments_are_refused(
    pairs: tuple[socket.socket, socket.socket, socket.socket, socket.socket],
) -> None:
    _, tun_theirs, _, udp_theirs = pairs
    with pytest.raises(ValueError, match="busy_poll_us"):
        _accel.Engine(busy_poll_us=1001)
    with pytest.raises(ValueError, match="busy_poll_us"):
        _accel.Engine(busy_poll_us=-1)
    engine = _accel.Engine(itr=True, tun_fd=tun_theirs.fileno(), busy_poll_us=10)
    with pytest.raises(TypeError, match="both handlers"):
        engine.busy_poll([udp_theirs.fileno()], None, print)
    with pytest.raises(ValueError, match="at most 64"):
        engine.busy_poll([udp_theirs.fileno()] * 65, print, print)
    with pytest.raises(ValueError, match="out of range"):
        engine.busy_poll([-1], print, print)
    with pytest.raises(TypeError):
        engine.busy_poll("x", print, print)


# --- serve: a worker's loop in C ------------------------------------------------------------------


def test_serve_forwards_until_the_control_socket_speaks(
    pairs: tuple[socket.socket, socket.socket, socket.socket, socket.socket],
) -> None:
    tun_ours, tun_theirs, udp_ours, udp_theirs = pairs
    control_ours, control_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        engine = _accel.Engine(itr=True, etr=True, tun_fd=tun_theirs.fileno())
        inner = udp_packet(SRC, DST)
        tun_ours.send(inner)
        udp_ours.send(lisp_header() + inner)
        from_tun: list[bytes] = []
        from_udp: list[bytes] = []

        def on_udp(payload: bytes, *_: object) -> None:
            from_udp.append(payload)
            control_ours.send(b"tables")  # what the main process would send meanwhile

        args = ([udp_theirs.fileno()], control_theirs.fileno())
        assert engine.serve(*args, 10_000, from_tun.append, on_udp) is True
        assert from_tun == [inner] and from_udp == [lisp_header() + inner]
        assert control_theirs.recv(100) == b"tables"  # left for the caller to read
        started = time.monotonic()
        assert engine.serve(*args, 20, from_tun.append, on_udp) is False  # nothing: timeout
        assert time.monotonic() - started >= 0.015
        assert engine.serve(*args, 0, from_tun.append, on_udp) is False
    finally:
        control_ours.close()
        control_theirs.close()


def test_serve_without_a_control_socket_and_a_failing_handler(
    pairs: tuple[socket.socket, socket.socket, socket.socket, socket.socket],
) -> None:
    tun_ours, tun_theirs, _, udp_theirs = pairs
    engine = _accel.Engine(itr=True, tun_fd=tun_theirs.fileno(), busy_poll_us=50)
    assert engine.serve([udp_theirs.fileno()], -1, 5, print, print) is False

    def fail(_: bytes) -> None:
        raise MemoryError("the handler failed")

    tun_ours.send(udp_packet(SRC, DST))
    with pytest.raises(MemoryError):
        engine.serve([udp_theirs.fileno()], -1, 10_000, fail, print)
    # the engine is usable again afterwards (its busy mark was cleared)
    tun_ours.send(udp_packet(SRC, DST))
    assert engine.from_tun() == [udp_packet(SRC, DST)]


def test_serve_refuses_bad_arguments(
    pairs: tuple[socket.socket, socket.socket, socket.socket, socket.socket],
) -> None:
    _, tun_theirs, _, udp_theirs = pairs
    engine = _accel.Engine(itr=True, tun_fd=tun_theirs.fileno())
    with pytest.raises(ValueError, match="timeout_ms"):
        engine.serve([udp_theirs.fileno()], -1, -1, print, print)
    with pytest.raises(TypeError, match="both handlers"):
        engine.serve([udp_theirs.fileno()], -1, 0, print, None)
    with pytest.raises(OSError):  # not a descriptor epoll can watch
        engine.serve([1_000_000], -1, 0, print, print)
