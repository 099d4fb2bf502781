"""Engine 0's packets served by the engine's own loop in C, on a thread of the main process.

The main process runs the control plane on its asyncio loop.  Were the TUN and the 4341
sockets readers of that loop, every packet's wake-up would first run the loop's Python (its
poll, its handle, the reader callback) before the engine saw the packet.  Instead a thread
sits in :meth:`_accel.Engine.serve`: it waits in ``epoll_wait`` with the GIL released,
forwards in C what the engine's tables settle, and returns to Python only for a punt or when
it is woken (new descriptors to serve, or the end).

The node is the asyncio loop's alone: a punt is queued here and handed to the loop
(``call_soon_threadsafe``, once per batch of punts), which gives it to the node in the order
the engine read it.  Every other engine call (table changes, counters) stays on the loop's
thread; the GIL orders them against the thread's batches, and table changes in the middle of
a batch are what the engine is made for (a punt handler could always make them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lispd.logfmt import kv

log = logging.getLogger("lispd.engine")

WAIT_MS = 1000  # the longest serve() call: a stop or new descriptors wake it sooner anyway
JOIN_S = 5.0
PUNT_QUEUE_MAX = 4096
"""Punts waiting for the loop; more are dropped (``punt-queue-full``), so a flood of packets
for Python (misses, control bits, everything behind a NAT) cannot queue without bound while
the loop is behind: the engine goes on forwarding what it settles itself."""

TunPunt = Callable[[bytes], None]
UdpPunt = Callable[[bytes, int, int, str, int], None]


@dataclass(frozen=True, slots=True)
class LoopHandlers:
    """What runs on the loop's thread for engine 0's thread."""

    on_tun: TunPunt
    """A packet from the TUN the engine left to Python."""
    on_udp: UdpPunt
    """A 4341 datagram the engine left to Python."""
    on_batch: Callable[[], None]
    """After each batch of punts (the daemon's ``transmit``)."""
    on_error: Callable[[str], None]
    """A punt handler raised: called inside its ``except`` with "tun" or "udp"."""
    on_drop: Callable[[str], None]
    """Count a drop by reason: a failed wait or read (the thread logs it), a punt over the
    queue's bound."""


class ServeThread:
    """One thread serving ``engine``'s TUN and the 4341 sockets ``fds`` (see the module
    docstring), handing its punts to ``handlers`` on ``loop``'s thread."""

    def __init__(
        self,
        engine: Any,
        fds: Sequence[int],
        *,
        loop: asyncio.AbstractEventLoop,
        handlers: LoopHandlers,
    ) -> None:
        self.engine = engine
        self.loop = loop
        self.handlers = handlers
        self._fds = list(fds)
        self._punts: deque[tuple[bytes] | tuple[bytes, int, int, str, int]] = deque()
        self._overflow = 0  # punts dropped since the loop last counted them
        self._overflow_lock = threading.Lock()
        self._scheduled = False
        self._stopping = False
        self._failures = 0
        self._last_log = 0.0
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name="lispd-engine0", daemon=True)

    def start(self) -> None:
        """Start serving."""
        self._thread.start()

    def set_fds(self, fds: Sequence[int]) -> None:
        """Serve these 4341 sockets from now on (a restarting worker's are added while it
        is away)."""
        self._fds = list(fds)
        self._wake()

    @property
    def fds(self) -> list[int]:
        """The 4341 sockets served."""
        return list(self._fds)

    def stop(self) -> None:
        """Stop serving and wait for the thread (the engine is free again afterwards)."""
        if self._stopping:
            return
        self._stopping = True
        self._wake()
        if self._thread.is_alive():
            self._thread.join(JOIN_S)
        if not self._thread.is_alive():  # else it may still wait on them
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # a full pipe: a wake-up is pending anyway
            os.write(self._wake_w, b"w")

    # --- the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        # Signals are the loop's thread's business (asyncio handles them there).
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        serve, wake = self.engine.serve, self._wake_r
        while not self._stopping:
            try:
                if serve(self._fds, wake, WAIT_MS, self._tun_punt, self._udp_punt):
                    self._drain_wake()
            except Exception as exc:  # the TUN or a socket failed: counted, the loop goes on
                self._failed(exc)

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        self.loop.call_soon_threadsafe(self.handlers.on_drop, "internal-error")
        now = time.monotonic()
        if now - self._last_log >= 1.0:
            self._last_log = now
            log.warning("engine 0 serve failed %s", kv(error=exc, failures=self._failures))
        time.sleep(0.001)  # a device that fails at once every time must not spin a core

    def _tun_punt(self, packet: bytes) -> None:
        self._queue((packet,))

    def _udp_punt(self, payload: bytes, ttl: int, tos: int, source: str, port: int) -> None:
        self._queue((payload, ttl, tos, source, port))

    def _queue(self, punt: tuple[bytes] | tuple[bytes, int, int, str, int]) -> None:
        if len(self._punts) < PUNT_QUEUE_MAX:
            self._punts.append(punt)
        else:
            with self._overflow_lock:
                self._overflow += 1
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon_threadsafe(self._deliver)

    # --- the loop's thread -----------------------------------------------------------------------

    def _deliver(self) -> None:
        """The punts queued so far, to the node in the order read, then one transmit."""
        self._scheduled = False  # before the queue is emptied: a later punt schedules anew
        handlers = self.handlers
        with self._overflow_lock:
            dropped, self._overflow = self._overflow, 0
        for _ in range(dropped):
            handlers.on_drop("punt-queue-full")
        punts = self._punts
        while punts:
            punt = punts.popleft()
            try:
                if len(punt) == 1:
                    handlers.on_tun(punt[0])
                else:
                    handlers.on_udp(*punt)
            except Exception:  # a bug in the node: counted (logged there), the rest goes on
                handlers.on_error("tun" if len(punt) == 1 else "udp")
        handlers.on_batch()
