"""The real :class:`lispd.daemon.Daemon` (the asyncio shell around its
:class:`~lispd.node.Node`), driven through its per-packet entry points without root or sockets.

A :class:`Harness` builds a ``Daemon`` from a role configuration (:mod:`tests.fuzz.roles`) and
puts in-memory fakes where :meth:`Daemon.start` would put the operating system: a
:class:`FakeTun` as ``daemon.os.tun``, :class:`FakeSocket` objects as the 4341 receive sockets
(inside a real :class:`lispd.io.udp.Sender`, whose send pools are fakes too), the 4342 control
sockets and the 2434 trace sockets.  Nothing else is replaced: an input goes through the same
code as a datagram read by the loop - ``_on_tun_readable``, ``_on_udp_readable``,
``_on_control_readable`` and ``_on_trace_readable``, each reading its batch through the real
``recv_batch`` / ``read_batch`` code path from the fake into the node (with its own per-packet
exception guard), then :meth:`Daemon.transmit` performing what the node asked through the
fakes.

Per input the harness checks what the daemon promises: no exception escapes the entry point,
the ``internal-error`` counter (the guard caught a bug) stays at zero, and the input ended
counted somewhere (a packet or drop counter, a control machine's drop or statistics counter,
something sent or written).  The control machines' timers are run as the loop would run them,
on a fake clock that advances with every input, and the read-only control-socket commands and
the metrics page are rendered now and then, so that state built from fuzzed input is shown
without failing too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import struct
import traceback
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lispd.api.commands import handlers
from lispd.api.metrics import render_metrics
from lispd.config import parse_config
from lispd.daemon import Daemon
from lispd.io.udp import Sender
from lispd.node import DATA_ROLES, TUN_ROLES
from lispd.wire.control import decode_control
from lispd.wire.ecm import EncapsulatedControl
from lispd.wire.errors import WireError
from tests.fuzz.roles import ROLE_CONFIGS

ENTRY_POINTS: tuple[str, ...] = ("tun", "data", "control", "trace")
TIMER_EVERY = 32  # inputs between two runs of the daemon's timer
SHOW_EVERY = 2000  # inputs between two renderings of the show commands and /metrics
READ_ONLY_COMMANDS = (
    "version",
    "stats",
    "map-cache",
    "database",
    "site",
    "rlocs",
    "nat",
    "rtr",
    "registrations",
)
_INT = struct.Struct("@i")


@dataclass(frozen=True, slots=True)
class Sent:
    """A datagram the daemon sent through a fake socket."""

    payload: bytes
    dst: str
    port: int
    kind: str  # "data" (the 4341 socket), "control", "trace" or "pool"


@dataclass(frozen=True, slots=True)
class FuzzInput:
    """One datagram for an entry point: the bytes and what the socket would report with them
    (``src``/``sport``/``ttl``/``tos`` are ignored by the TUN entry point)."""

    data: bytes
    src: str = "192.0.2.6"
    sport: int = 4341
    ttl: int | None = 64  # None: no TTL in the ancillary data (the receive default applies)
    tos: int = 0


class FakeSocket:
    """A non-blocking UDP socket in memory: ``recvmsg`` hands out what :meth:`push` queued (with
    TTL/TOS ancillary data like the kernel's), then raises ``BlockingIOError``; what is sent is
    counted, and the last control messages are kept for the mutator (nonces to answer)."""

    _next_fd = 1000

    def __init__(
        self, family: int, kind: str, sent: Callable[[Sent], None], local: str = ""
    ) -> None:
        self.family = family
        self.kind = kind
        self.local = local or ("0.0.0.0" if family == socket.AF_INET else "::")
        self._queue: deque[tuple[bytes, list[tuple[int, int, bytes]], tuple[Any, ...]]] = deque()
        self._sent = sent
        self.sends = 0
        FakeSocket._next_fd += 1
        self._fd = FakeSocket._next_fd

    def fileno(self) -> int:
        """A made-up descriptor (never given to the loop)."""
        return self._fd

    def getsockname(self) -> tuple[Any, ...]:
        """The address it is "bound" to (the port is not modelled)."""
        return (self.local, 0) if self.family == socket.AF_INET else (self.local, 0, 0, 0)

    def push(self, item: FuzzInput) -> None:
        """Queue one datagram for the next ``recvmsg``."""
        ancillary: list[tuple[int, int, bytes]] = []
        if item.ttl is not None:
            if self.family == socket.AF_INET:
                ancillary.append((socket.IPPROTO_IP, socket.IP_TTL, _INT.pack(item.ttl)))
                ancillary.append((socket.IPPROTO_IP, socket.IP_TOS, bytes([item.tos & 0xFF])))
            else:
                ancillary.append((socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT, _INT.pack(item.ttl)))
                ancillary.append((socket.IPPROTO_IPV6, socket.IPV6_TCLASS, _INT.pack(item.tos)))
        addr: tuple[Any, ...] = (
            (item.src, item.sport)
            if self.family == socket.AF_INET
            else (item.src, item.sport, 0, 0)
        )
        self._queue.append((item.data, ancillary, addr))

    def recvmsg(self, bufsize: int, ancbufsize: int = 0) -> tuple[bytes, list, int, Any]:
        """The next queued datagram, truncated to ``bufsize`` like the kernel would."""
        if not self._queue:
            raise BlockingIOError
        data, ancillary, addr = self._queue.popleft()
        return data[:bufsize], ancillary, 0, addr

    def sendto(self, data: bytes, address: tuple[Any, ...]) -> int:
        """Record one datagram sent."""
        self.sends += 1
        self._sent(Sent(bytes(data), str(address[0]), int(address[1]), self.kind))
        return len(data)

    def sendmsg(self, buffers: list[bytes], ancdata: Any, flags: int, address: Any) -> int:
        """Record one datagram sent with ancillary data (the data-plane sender)."""
        self.sends += 1
        return sum(len(b) for b in buffers)

    def close(self) -> None:
        """Nothing to release."""


class FakeTun:
    """The TUN device in memory: ``read_batch`` hands out what was pushed, ``write`` counts."""

    def __init__(self, name: str = "lisp0") -> None:
        self.name = name
        self.fd = 999
        self.writes = 0
        self._queue: deque[bytes] = deque()

    def push(self, packet: bytes) -> None:
        """Queue one packet for the next ``read_batch``."""
        self._queue.append(packet)

    def read_batch(self, limit: int) -> list[bytes]:
        """Up to ``limit`` queued packets."""
        out = []
        while self._queue and len(out) < limit:
            out.append(self._queue.popleft())
        return out

    def write(self, packet: bytes | bytearray) -> bool:
        """Count one packet written to the kernel."""
        self.writes += 1
        return True

    def close(self) -> None:
        """Nothing to release."""


class FakeClock:
    """Monotonic time that the harness moves: mostly milliseconds between packets, sometimes
    seconds, now and then minutes (retransmissions, expiries, registration refreshes)."""

    def __init__(self, rng: random.Random, start: float = 1000.0) -> None:
        self.now = start
        self._rng = rng

    def __call__(self) -> float:
        return self.now

    def advance(self) -> None:
        """Move on by a random step."""
        r = self._rng.random()
        if r < 0.9:
            self.now += self._rng.random() * 0.05
        elif r < 0.99:
            self.now += 1.0 + self._rng.random() * 9.0
        else:
            self.now += 60.0 + self._rng.random() * 600.0


@dataclass
class Failure:
    """An input that broke a promise: what, where, and the bytes to reproduce it with."""

    role: str
    entry: str
    kind: str  # "escaped", "internal-error", "uncounted", "timer", "show"
    item: FuzzInput | None
    detail: str

    def report(self) -> str:
        """A few lines for a person: the failure and a reproducer."""
        head = f"{self.kind} role={self.role} entry={self.entry}"
        if self.item is not None:
            head += (
                f" src={self.item.src} sport={self.item.sport} ttl={self.item.ttl}"
                f" tos={self.item.tos} data={self.item.data.hex()}"
            )
        return head + "\n" + self.detail


@dataclass
class RunStats:
    """What a run did, per (role, entry point)."""

    inputs: Counter[tuple[str, str]] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    failure_kinds: Counter[str] = field(default_factory=Counter)
    uncounted: Counter[str] = field(default_factory=Counter)  # by message kind, see check
    # (role, entry) -> the daemon's counters at the end: packets, drops (control machines' too)
    outcomes: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)


class _ErrorCatcher(logging.Handler):
    """Keeps the tracebacks the daemon logs when its guard catches a bug."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        self.records.append(text)


class Harness:
    """One daemon of one role with fake I/O, fed one input at a time.

    Must be used inside a running asyncio loop (the daemon arms its timer on it): see
    :meth:`start`.  ``strict_counting``: an input that no counter shows is a failure; when
    False it is only tallied in ``stats.uncounted``.
    """

    def __init__(
        self,
        role: str,
        seed: int = 0,
        stats: RunStats | None = None,
        strict_counting: bool = True,
        max_failures: int = 20,
        world: Callable[[Harness], None] | None = None,
    ) -> None:
        """``world``: called after every run of the timer to play the node's peers (answer
        what it sent, send it some ordinary traffic) through :meth:`deliver`."""
        self.role = role
        self.clock = FakeClock(random.Random(seed + 1))
        self.config = parse_config(ROLE_CONFIGS[role])
        self.daemon = Daemon(self.config, clock=self.clock)
        self.daemon.node.data_nonces = random.Random(seed + 2)
        self.stats = stats if stats is not None else RunStats()
        self.strict_counting = strict_counting
        self.max_failures = max_failures
        self.world = world
        # What the daemon sent lately (payload, destination, port, socket kind), for answers.
        self.sent: deque[Sent] = deque(maxlen=64)
        self.unanswered: deque[Sent] = deque(maxlen=256)
        self.tun: FakeTun | None = None
        self.data_sockets: dict[int, FakeSocket] = {}
        self.control_sockets: dict[int, FakeSocket] = {}
        self.trace_sockets: dict[int, FakeSocket] = {}
        self.pool_sockets: list[FakeSocket] = []
        self._inputs = 0
        self._errors = _ErrorCatcher()
        self._baseline: Counter[str] = Counter()  # counters after start
        self._background: Counter[str] = Counter()  # counted by the timer and the world

    # --- set-up -----------------------------------------------------------------------------

    @property
    def entry_points(self) -> tuple[str, ...]:
        """The entry points this role has (what :meth:`Daemon.start` would open)."""
        roles = self.config.daemon.roles
        out = []
        if roles & TUN_ROLES:
            out.append("tun")
        if roles & DATA_ROLES:
            out.append("data")
        out.append("control")
        if roles & DATA_ROLES:
            out.append("trace")
        return tuple(out)

    @property
    def families(self) -> tuple[int, ...]:
        """The address families of the node's RLOCs (one socket of each kind per family)."""
        return tuple(sorted({a.version for a in self.config.underlay.rlocs}))

    def start(self) -> None:
        """Put the fakes in and do what :meth:`Daemon.start` does besides opening things
        (keep in step with it): start the node (probe the PETRs and static map-cache RLOCs,
        run its timer once: first registrations, Info-Requests) and transmit."""
        d = self.daemon
        entries = self.entry_points
        fam = {4: socket.AF_INET, 6: socket.AF_INET6}
        if "tun" in entries:
            self.tun = FakeTun(self.config.tun.name)
            d.os.tun = self.tun  # type: ignore[assignment]
        if "data" in entries:
            pools: dict[int, list[socket.socket]] = {}
            for v in self.families:
                self.data_sockets[v] = FakeSocket(fam[v], "data", self._record)
                pool = [FakeSocket(fam[v], "pool", self._record) for _ in range(2)]
                self.pool_sockets += pool
                pools[v] = pool  # type: ignore[assignment]
                self.trace_sockets[v] = FakeSocket(fam[v], "trace", self._record)
            d.os.receivers = list(self.data_sockets.values())  # type: ignore[arg-type]
            d.os.data_sockets = dict(self.data_sockets)  # type: ignore[arg-type]
            d.os.sender = Sender(pools, d.os.data_sockets)  # type: ignore[arg-type]
            d.os.trace_sockets = dict(self.trace_sockets)  # type: ignore[arg-type]
        for v in self.families:
            local = next(str(a) for a in self.config.underlay.rlocs if a.version == v)
            self.control_sockets[v] = FakeSocket(fam[v], "control", self._record, local)
            d.os.control_sockets[v] = [self.control_sockets[v]]  # type: ignore[list-item]
        logging.getLogger("lispd").addHandler(self._errors)
        d.node.start(self.clock())
        d.transmit()
        self._baseline = self._snapshot()

    def close(self) -> None:
        """Cancel the daemon's timer and detach the log catcher."""
        if self.daemon._timer is not None:
            self.daemon._timer.cancel()
            self.daemon._timer = None
        logging.getLogger("lispd").removeHandler(self._errors)

    # --- accounting -------------------------------------------------------------------------

    def _activity(self) -> int:
        """A number that grows whenever the daemon counted, sent or wrote anything."""
        node = self.daemon.node
        total = sum(node.counters.packets.values()) + sum(node.counters.drops.values())
        for machine in node.control.machines():
            total += sum(getattr(machine, "drops", {}).values())
            total += sum(getattr(machine, "stats", {}).values())
        total += sum(node.control.drops.values())
        total += self.tun.writes if self.tun is not None else 0
        for group in (self.data_sockets, self.control_sockets, self.trace_sockets):
            total += sum(s.sends for s in group.values())
        total += sum(s.sends for s in self.pool_sockets)
        return total

    def _fail(self, entry: str, kind: str, item: FuzzInput | None, detail: str) -> None:
        self.stats.failure_kinds[kind] += 1
        if len(self.stats.failures) < self.max_failures:
            self.stats.failures.append(Failure(self.role, entry, kind, item, detail))

    # --- input ------------------------------------------------------------------------------

    def feed(self, entry: str, item: FuzzInput) -> None:
        """Give one fuzz input to one entry point the way the loop would, and check the
        promises; every :data:`TIMER_EVERY` inputs run the timer (and the world around)."""
        self.clock.advance()
        self.deliver(entry, item, fuzzed=True)
        self._inputs += 1
        if self._inputs % TIMER_EVERY == 0:
            self.run_timer(entry)
        if self._inputs % SHOW_EVERY == 0:
            self.show(entry)

    def deliver(self, entry: str, item: FuzzInput, fuzzed: bool = False) -> None:
        """Hand ``item`` to ``entry`` through the fakes and check that nothing escaped and no
        bug was caught; a ``fuzzed`` input must also end counted (and is counted as run)."""
        d, counters = self.daemon, self.daemon.node.counters
        before_errors = counters.drops["internal-error"]
        before = self._activity() if fuzzed else 0
        logged = len(self._errors.records)
        try:
            if entry == "tun":
                assert self.tun is not None, f"{self.role} has no TUN"
                self.tun.push(item.data)
                d._on_tun_readable()
            else:
                sockets = {
                    "data": self.data_sockets,
                    "control": self.control_sockets,
                    "trace": self.trace_sockets,
                }[entry]
                sock = sockets[_version(item.src)]
                sock.push(item)
                if entry == "data":
                    d._on_udp_readable(sock)  # type: ignore[arg-type]
                elif entry == "control":
                    d._on_control_readable(sock)  # type: ignore[arg-type]
                else:
                    d._on_trace_readable(sock)  # type: ignore[arg-type]
        except Exception:
            self._fail(entry, "escaped", item, traceback.format_exc())
        if fuzzed:
            self.stats.inputs[(self.role, entry)] += 1
        if counters.drops["internal-error"] != before_errors:
            detail = "\n".join(self._errors.records[logged:]) or "(rate-limited: not logged)"
            self._fail(entry, "internal-error", item, detail)
        elif fuzzed and self._activity() == before:
            kind = _message_kind(entry, item.data)
            self.stats.uncounted[f"{self.role}/{entry}/{kind}"] += 1
            if self.strict_counting:
                self._fail(entry, "uncounted", item, f"nothing counted, sent or written ({kind})")

    def run_timer(self, entry: str = "timer") -> None:
        """Run the daemon's timer now, as the loop does when it is due (early is harmless:
        every machine checks its own deadlines)."""
        d = self.daemon
        before = self._snapshot()
        if d._timer is not None:
            d._timer.cancel()
        try:
            d._on_timer()
        except Exception:
            self._fail(entry, "timer", None, traceback.format_exc())
        if self.world is not None:
            self.world(self)
        self._background.update(self._snapshot() - before)

    def show(self, entry: str = "show") -> None:
        """Render every read-only control-socket command as JSON, and the metrics page."""
        commands = handlers(self.daemon)
        try:
            for command in READ_ONLY_COMMANDS:
                json.dumps(commands[command]({}))
            render_metrics(self.daemon.metrics_snapshot)
        except Exception:
            self._fail(entry, "show", None, traceback.format_exc())

    def _snapshot(self) -> Counter[str]:
        """Every counter of the daemon: packets, drops (control machines' too), statistics."""
        snap = self.daemon.stats()
        out: Counter[str] = Counter()
        for name, value in snap["packets"].items():
            if name.endswith(".packets"):
                out[name.removesuffix(".packets")] += value
        for name, value in snap["drops"].items():
            out["drop:" + name] += value
        for machine in self.daemon.node.control.machines():
            for name, value in getattr(machine, "stats", {}).items():
                out[f"{type(machine).__name__.lower()}:{name}"] += value
        return out

    def record_outcome(self, entry: str) -> None:
        """Add what the fuzz inputs made the daemon count to ``stats.outcomes[(role, entry)]``:
        its counters now, less those at the start and those moved by the timer and the world
        (which :meth:`run_timer` keeps apart)."""
        outcome = self.stats.outcomes.setdefault((self.role, entry), Counter())
        outcome.update(self._snapshot() - self._baseline - self._background)

    # --- for the mutator and the world ------------------------------------------------------

    def _record(self, sent: Sent) -> None:
        self.sent.append(sent)
        self.unanswered.append(sent)

    def recent_sends(self) -> list[Sent]:
        """The last control messages (and data-control ones) the daemon sent."""
        return list(self.sent)

    def take_unanswered(self) -> list[Sent]:
        """What the daemon sent since the last call (for the world to answer)."""
        out = list(self.unanswered)
        self.unanswered.clear()
        return out


def _version(src: str) -> int:
    return 6 if ":" in src else 4


def _message_kind(entry: str, data: bytes) -> str:
    """What an uncounted input was, for the report (the control message type, decoded)."""
    body = data[8:] if entry == "data" else data
    if entry in ("control", "data"):
        try:
            msg = decode_control(body)
        except WireError as exc:
            return "undecodable-" + exc.reason
        if isinstance(msg, EncapsulatedControl):
            return "ecm-" + type(msg.message).__name__
        flags = [
            f for f in ("probe", "smr", "reply", "want_map_notify", "ack") if getattr(msg, f, False)
        ]
        return type(msg).__name__ + "".join("+" + f for f in flags)
    return "packet"


def run_inputs(
    role: str,
    entry: str,
    inputs: Callable[[Harness], Any],
    seed: int = 0,
    stats: RunStats | None = None,
    strict_counting: bool = True,
    world: Callable[[Harness], None] | None = None,
) -> RunStats:
    """Build a :class:`Harness` for ``role`` in a fresh event loop (:func:`new_loop`) and feed
    it every
    :class:`FuzzInput` that ``inputs(harness)`` yields at ``entry``; the run's statistics."""
    stats = stats if stats is not None else RunStats()

    async def main() -> None:
        harness = Harness(role, seed, stats, strict_counting, world=world)
        harness.start()
        try:
            for item in inputs(harness):
                harness.feed(entry, item)
            harness.run_timer(entry)
            harness.show(entry)
            harness.record_outcome(entry)
        finally:
            harness.close()

    quiet = logging.getLogger("lispd")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # drops are logged at INFO: not what a fuzz run is about
    loop = new_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
        quiet.setLevel(level)
    return stats


def new_loop() -> asyncio.AbstractEventLoop:
    """An event loop of the kind the daemon runs on: uvloop's when installed (as
    :func:`lispd.daemon.run_daemon` picks it; its handles differ from asyncio's), else
    asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
