"""Engine 0 served from a thread of the main process (:mod:`lispd.engine.serving`): the punts
reach the asyncio loop's thread in the order read, one ``on_batch`` after them, descriptors
change while it runs, a failing handler is counted, and ``stop`` frees the engine."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from lispd.engine.serving import LoopHandlers, ServeThread
from tests.unit.fastpath_packets import lisp_header, packed, require_accel, udp_packet

_accel = require_accel()

SRC, DST = packed("198.51.100.1"), packed("203.0.113.9")


def pair() -> tuple[socket.socket, socket.socket]:
    """(ours, the engine's non-blocking end) of a datagram socket pair."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    theirs.setblocking(False)
    return ours, theirs


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    made: list[socket.socket] = []
    yield made
    for sock in made:
        sock.close()


def itr_on_a_pair(sockets: list[socket.socket]) -> tuple[socket.socket, object]:
    """(our end of the TUN pair, an ITR engine on the other end); both ends in ``sockets``."""
    tun_ours, tun_theirs = pair()
    sockets.extend((tun_ours, tun_theirs))
    return tun_ours, _accel.Engine(itr=True, tun_fd=tun_theirs.fileno())


class Seen:
    """What the handlers got, and on which thread."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.threads: set[int] = set()
        self.errors: list[str] = []
        self.drops: list[str] = []

    def handler(self, kind: str) -> Callable[..., None]:
        def handle(*args: object) -> None:
            self.threads.add(threading.get_ident())
            self.events.append((kind, args[0]))

        return handle


async def until(what: str, condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def serving(engine: object, fds: list[int], seen: Seen, **changed: object) -> ServeThread:
    handlers = LoopHandlers(
        on_tun=seen.handler("tun"),
        on_udp=seen.handler("udp"),
        on_batch=lambda: seen.events.append(("batch", None)),
        on_error=seen.errors.append,
        on_drop=seen.drops.append,
    )
    handlers = dataclasses.replace(handlers, **changed)  # type: ignore[arg-type]
    return ServeThread(engine, fds, loop=asyncio.get_running_loop(), handlers=handlers)


def test_punts_reach_the_loop_thread_in_order_and_new_sockets_are_served(
    sockets: list[socket.socket],
) -> None:
    tun_ours, tun_theirs = pair()
    udp_ours, udp_theirs = pair()
    extra_ours, extra_theirs = pair()
    sockets.extend((tun_ours, tun_theirs, udp_ours, udp_theirs, extra_ours, extra_theirs))
    engine = _accel.Engine(itr=True, etr=True, tun_fd=tun_theirs.fileno())
    inner = udp_packet(SRC, DST)
    seen = Seen()

    async def story() -> None:
        serve = serving(engine, [udp_theirs.fileno()], seen)
        serve.start()
        try:
            tun_ours.send(inner)
            await until("the TUN punt", lambda: ("tun", inner) in seen.events)
            udp_ours.send(lisp_header() + inner)
            await until("the 4341 punt", lambda: ("udp", lisp_header() + inner) in seen.events)
            extra_ours.send(lisp_header(nonce=7) + inner)  # not served yet: it waits
            await asyncio.sleep(0.05)
            assert ("udp", lisp_header(nonce=7) + inner) not in seen.events
            serve.set_fds([udp_theirs.fileno(), extra_theirs.fileno()])
            await until(
                "the new socket", lambda: ("udp", lisp_header(nonce=7) + inner) in seen.events
            )
            assert serve.fds == [udp_theirs.fileno(), extra_theirs.fileno()]
        finally:
            serve.stop()
        assert seen.threads == {threading.get_ident()}  # the loop's thread, never the server's
        kinds = [kind for kind, _ in seen.events]
        assert kinds.count("batch") >= 3 and kinds[-1] == "batch"
        assert seen.errors == [] and seen.drops == []
        # stopped: the engine is free for the loop's thread again
        tun_ours.send(inner)
        assert engine.from_tun() == [inner]

    asyncio.run(story())


def test_a_failing_handler_is_counted_and_the_rest_of_the_batch_goes_on(
    sockets: list[socket.socket],
) -> None:
    tun_ours, engine = itr_on_a_pair(sockets)
    seen = Seen()
    first, second = udp_packet(SRC, DST), udp_packet(SRC, DST, sport=7)

    def on_tun(packet: bytes) -> None:
        if packet == first:
            raise ValueError("a bug in the node")
        seen.events.append(("tun", packet))

    async def story() -> None:
        serve = serving(engine, [], seen, on_tun=on_tun)
        serve.start()
        try:
            tun_ours.send(first)
            tun_ours.send(second)
            await until("the second punt", lambda: ("tun", second) in seen.events)
        finally:
            serve.stop()
        assert seen.errors == ["tun"]

    asyncio.run(story())


def test_a_failing_device_is_counted_and_stop_still_returns(
    sockets: list[socket.socket],
) -> None:
    _, engine = itr_on_a_pair(sockets)
    seen = Seen()

    async def story() -> None:
        serve = serving(engine, [1_000_000], seen)  # not a descriptor: every serve() fails
        serve.start()
        try:
            await until("a failure counted", lambda: bool(seen.drops))
        finally:
            serve.stop()
        assert set(seen.drops) == {"internal-error"}
        serve.stop()  # twice: nothing more

    asyncio.run(story())


def test_punts_beyond_the_queue_are_dropped_and_counted(
    sockets: list[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    import lispd.engine.serving as serving_module

    monkeypatch.setattr(serving_module, "PUNT_QUEUE_MAX", 2)
    tun_ours, engine = itr_on_a_pair(sockets)
    seen = Seen()
    packets = [udp_packet(SRC, DST, sport=1000 + i) for i in range(5)]

    async def story() -> None:
        serve = serving(engine, [], seen)
        for packet in packets:  # read in one batch while the loop is busy here
            tun_ours.send(packet)
        serve.start()
        try:
            # the loop's thread does not yield until the thread has punted all five, so the
            # loop cannot empty the queue in between
            deadline = time.monotonic() + 10
            while engine.counters()["fastpath"]["punted-tun"] < len(packets):
                assert time.monotonic() < deadline, "the thread did not read the packets"
                time.sleep(0.001)
            await until("the drops counted", lambda: len(seen.drops) == 3)
        finally:
            serve.stop()
        assert [p for kind, p in seen.events if kind == "tun"] == packets[:2]
        assert seen.drops == ["punt-queue-full"] * 3

    asyncio.run(story())
