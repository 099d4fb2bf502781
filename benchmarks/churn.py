"""Map-cache churn: how long the daemon's event loop stalls while a big map-cache churns.

    sudo .venv/bin/python -m benchmarks.mapcache_scale [--prefixes N] [--quick] [--json FILE]

(the churn phase of :mod:`benchmarks.mapcache_scale`; ``--phase-seconds``, ``--no-unit``).

Lab (:func:`lispd.lab.two_site_topology`): host a - xtr1 - r - xtr2 - host b.  xtr1 runs the
real :class:`lispd.daemon.Daemon` (roles itr, etr and rtr, the compiled fast path with two
engines: the main process and one worker, metrics on, map-cache probing off) started through
this module (``python -m benchmarks.churn xtr ...``), which adds two things to the daemon's own
process, both on its loop: the daemon's loop-lag tick (:class:`lispd.heartbeat.Heartbeat`)
keeps every sample (:class:`RecordingLag`, a :class:`lispd.stats.LoopLag`), and an *agent* on
a Unix socket of its own loads the map-cache and drives the churn sources that have no wire
input this lab could produce at the rate asked.  xtr2 is a plain lispd; a 10 ms ping goes from
a to b through both xTRs the whole time.

What xtr1's map-cache holds: ``N`` learned entries (source ``map-reply``, TTL one day), loaded
after the daemon started with ``MapCache.add``, 2,000 per loop turn, so that engine 0 and the
worker mirror them through the map-cache's listener as they mirror a Map-Reply's install (not
through ``Node._apply`` itself: its log line is built whatever the log level, ~100 us an
entry today, which would make a million take minutes; no route is added either way): IPv4
/24-/32 inside 203.0.113.0/24 (511 of them) and IPv6 /53-/128 (for a million) inside
2001:db8:8000::/33.  ``min(100,000, N/2)`` of them have RLOC 192.0.2.200 (priority 1, the
flapping one) and a pool RLOC (priority 2); every entry has one RLOC of a pool of
``N / 100`` IPv6 addresses counted up from 2001:db8:ff00::1 (100 entries each).  None of
those addresses exists: nothing is sent to them (the ping's site has its static entry).

The churn sources, each alone for ``--phase-seconds`` and then all at once:

``expiry``
    10,000 entries a second expire and are learned again: the agent installs 100 entries
    every 10 ms (as the load does) with a TTL of one second, cycling
    through 20,000 of them, so that the node's own timer expires 10,000 a second
    (``MapCache.expire`` from ``Node.handle_timer``) and each is re-learned a second after
    it went.  Afterwards the 20,000 get their one-day TTL back (outside the measured window).
``flap``
    RLOC 192.0.2.200, used by 100,000 entries, goes down and up again every second: the
    prober's state change (``ControlResult.rloc_changes``, what RLOC probing reports) handed
    to the node, which marks every entry using it.
``rebind``
    1,000 NAT keepalives a second into the node's data-port input (``Daemon._data_packet``,
    what the engine hands to Python), each from a pool address and a port it has not used
    yet: a new NAT binding of an RLOC 100 entries use, whose records the RTR issues again
    (:class:`lispd.engine.compiled.RecordRefresh`); the bindings time out after one second
    (``[rtr] nat-binding-timeout``), another change.
``scrape``
    ``GET /metrics`` once a second over TCP from xtr1's namespace.
``dump``
    one full ``lispctl show map-cache`` (the command-line client, in a process of its own).
``lookup``
    ``lispctl show map-cache EID`` five times in a row (once above 200,000 prefixes), the
    client's code in this process (no interpreter start-up in the figure); the largest latency
    is ``show_map_cache_eid_ms``.  Today the client fetches the whole map-cache and matches
    itself, so above 200,000 prefixes the ``all`` phase leaves it out (its ``dump`` is the
    same work for the daemon).
``kill``
    the fast-path worker is killed (SIGKILL); the daemon restarts it and loads its table;
    the phase lasts until it is ready again.

Per phase: the largest lag and the 99th percentile of the lag of the daemon's 10 ms tick
(``loop_stall_max_ms``/``loop_stall_p99_ms``: how late the loop ran a timer; a callback that
holds the loop for ``d`` ms makes it late by up to ``d``), the ticks later than 20 ms, and the
ping's losses (a reply more than a second late is lost).  The top-level figures are those of
the whole churn (every phase but ``quiet``).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import io
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

REPO = str(Path(__file__).resolve().parent.parent)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from lispd.stats import LoopLag  # noqa: E402

FLAP_RLOC = IPv4Address("192.0.2.200")
POOL_BASE = IPv6Address("2001:db8:ff00::1")
EID_V4 = IPv4Network("203.0.113.0/24")
EID_V6_BASE = int(IPv6Address("2001:db8:8000::"))  # /33
PER_RLOC = 100
FLAP_USERS = 100_000
EXPIRY_RATE = 10_000  # entries a second
EXPIRY_TTL = 1.0
REBIND_RATE = 1_000  # keepalives a second
FLAP_PERIOD = 2.0  # seconds: down for half, up for half
LOAD_CHUNK = 2_000
RESTORE_CHUNK = 200  # entries learned again per loop turn inside a measured phase (~3 ms)
LONG_TTL = 86400.0
STALL_LIMIT_MS = 20.0
SOURCES = ("expiry", "flap", "rebind", "scrape", "dump", "lookup", "kill")
TARGETS = {
    "load_s": ("<=", 5.0),
    "rss_total_mb": ("<=", 300.0),
    "loop_stall_max_ms": ("<=", STALL_LIMIT_MS),
    "ping_loss": ("<=", 0),
    "show_map_cache_eid_ms": ("<", 50.0),
}


# --- inside xtr1: the daemon, its map-cache and the agent --------------------------------------


class RecordingLag(LoopLag):
    """:class:`LoopLag` that also keeps every sample (monotonic time, lag in seconds), so that
    the stalls of any window can be read back: largest, percentiles, count over a limit."""

    __slots__ = ("lags", "times")

    def __init__(self, interval: float = 0.01, window: float = 10.0) -> None:
        super().__init__(interval, window)
        self.times = array("d")
        self.lags = array("d")

    def note(self, lag: float, now: float) -> None:
        """See :meth:`LoopLag.note`; the sample is kept too."""
        super().note(lag, now)
        self.times.append(now)
        self.lags.append(max(0.0, lag))

    def window_figures(self, start: float, end: float) -> dict[str, Any]:
        """The lag of the ticks that ran in [start, end], in milliseconds."""
        lo = bisect.bisect_left(self.times, start)
        hi = bisect.bisect_right(self.times, end)
        return stall_figures(list(self.lags[lo:hi]), end - start)


def stall_figures(lags: list[float], seconds: float) -> dict[str, Any]:
    """Max, p99 (nearest rank), ticks and ticks later than :data:`STALL_LIMIT_MS` of ``lags``
    (seconds), in ms; ``missing_ticks``: the ticks a 10 ms tick would have run in
    ``seconds`` beyond those seen (a loop stuck to the end of the window runs none)."""
    if not lags:
        return {"ticks": 0, "max_ms": None, "p99_ms": None, "over_20ms": 0}
    ordered = sorted(lags)
    p99 = ordered[min(len(ordered) - 1, max(0, -(-99 * len(ordered) // 100) - 1))]
    return {
        "ticks": len(ordered),
        "max_ms": round(ordered[-1] * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
        "over_20ms": sum(1 for lag in ordered if lag * 1000 > STALL_LIMIT_MS),
    }


def eid_prefixes(n: int, seed: int = 22) -> Iterator[IPv4Network | IPv6Network]:
    """``n`` distinct EID-prefixes: the 511 of 203.0.113.0/24 from /24 to /32 first, then IPv6
    ones inside 2001:db8:8000::/33, distinct by construction (the bits after the /33 count
    them; no set of those seen, whose garbage would stay in the RSS measured): random lengths
    from just past the counter (/53 for a million) to /128, random bits below."""
    made = 0
    base = int(EID_V4.network_address)
    for plen in range(24, 33):
        for k in range(1 << (plen - 24)):
            if made == n:
                return
            yield IPv4Network((base + (k << (32 - plen)), plen))
            made += 1
    rng = random.Random(seed)
    shift = 95 - max(1, n.bit_length())  # the counter sits just below the /33
    for k in range(n - made):
        plen = rng.randint(128 - shift, 128)
        value = EID_V6_BASE | (k << shift) | rng.getrandbits(shift)
        yield IPv6Network((value >> (128 - plen) << (128 - plen), plen))


def pool_size(prefixes: int) -> int:
    """RLOC addresses of the pool: one per :data:`PER_RLOC` entries."""
    return max(1, prefixes // PER_RLOC)


def flap_users(prefixes: int) -> int:
    """Entries using the flapping RLOC."""
    return min(FLAP_USERS, prefixes // 2)


class Agent:
    """Loads the map-cache and drives the in-process churn sources of the daemon it runs
    beside; answers one JSON request per line on a Unix socket (see :meth:`handle`)."""

    def __init__(self, daemon: Any, prefixes: int, lag: RecordingLag) -> None:
        self.daemon = daemon
        self.prefixes = prefixes
        self.lag = lag
        self.entries: list[Any] = []
        self.pool = [IPv6Address(int(POOL_BASE) + k) for k in range(pool_size(prefixes))]
        self.tasks: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self.stopping: dict[str, asyncio.Event] = {}
        self.rebinds = 0  # keepalives sent so far (the next one's port and address)
        self.paced_figures: dict[str, int] = {}

    # the map-cache

    def make_entries(self) -> None:
        """The entries to load (see the module docstring)."""
        from lispd.mapcache import MapCacheEntry, RlocEntry

        now = self.daemon.clock()
        flappers = flap_users(self.prefixes)
        pool = [RlocEntry(a, 1, 100) for a in self.pool]
        backup = [RlocEntry(a, 2, 100) for a in self.pool]
        flap = RlocEntry(FLAP_RLOC, 1, 100)
        out = []
        for i, prefix in enumerate(eid_prefixes(self.prefixes)):
            k = i % len(pool)
            rlocs = (flap, backup[k]) if i < flappers else (pool[k],)
            out.append(
                MapCacheEntry(0, prefix, rlocs, ttl=LONG_TTL, created=now, source="map-reply")
            )
        self.entries = out

    def install(self, entries: list[Any]) -> None:
        """Install ``entries`` as Map-Reply answers are installed, then let the daemon act
        (and arm its timer) as after any input."""
        from lispd.control.plane import ControlResult

        node = self.daemon.node
        node.now = self.daemon.clock()
        node.inputs += 1
        node._apply(ControlResult(installs=entries))
        self.daemon.transmit()

    def learn(self, entries: list[Any]) -> None:
        """Install ``entries`` in the map-cache (the engines follow through its listener) as
        :meth:`load` does, then let the daemon act and arm its timer as after any input."""
        node = self.daemon.node
        for entry in entries:
            node.mapcache.add(entry)
        node.inputs += 1
        self.daemon.transmit()

    async def load(self) -> dict[str, Any]:
        """Load every entry, :data:`LOAD_CHUNK` per loop turn; seconds it took, and until the
        worker has its copy too."""
        if not self.entries:
            self.make_entries()
        started = time.monotonic()
        for k in range(0, len(self.entries), LOAD_CHUNK):
            self.learn(self.entries[k : k + LOAD_CHUNK])
            await asyncio.sleep(0)
        loaded = time.monotonic() - started
        ready = await self.workers_ready(600.0)
        return {
            "entries": len(self.daemon.node.mapcache),
            "load_s": round(loaded, 3),
            "load_with_worker_s": round(time.monotonic() - started, 3),
            "worker_ready": ready["ready"],
        }

    async def workers_ready(self, timeout: float) -> dict[str, Any]:
        """Wait until every worker has loaded its table (a restarted one too)."""
        engine = self.daemon.engine
        started = time.monotonic()
        ok = True
        if engine is not None and engine.workers is not None:
            workers = engine.workers
            deadline = started + timeout
            while time.monotonic() < deadline:
                if len(workers.pids()) == len(workers.slots):
                    ok = await workers.ready(max(0.1, deadline - time.monotonic()))
                    if ok:
                        break
                await asyncio.sleep(0.05)
            else:
                ok = False
        return {"ready": ok, "waited_s": round(time.monotonic() - started, 3)}

    # the sources

    def start(self, source: str) -> None:
        """Start ``source`` (one of expiry, flap, rebind) running until :meth:`stop`."""
        if source in self.tasks:
            raise ValueError(f"{source} runs already")
        run = {"expiry": self.expiry, "flap": self.flap, "rebind": self.rebind}[source]
        stop = self.stopping[source] = asyncio.Event()
        self.tasks[source] = asyncio.get_running_loop().create_task(run(stop))

    async def stop(self, source: str) -> dict[str, Any]:
        """Stop ``source``; what it did."""
        self.stopping[source].set()
        done = await self.tasks.pop(source)
        del self.stopping[source]
        return done

    async def paced(self, rate: float, stop: asyncio.Event, step: Any) -> int:
        """Call ``step(n)`` every 10 ms with the ``n`` items due at ``rate`` a second, until
        ``stop``; the items done."""
        started = time.monotonic()
        done = dropped = 0
        while not stop.is_set():
            due = int((time.monotonic() - started) * rate)
            if due > done:
                # A loop that fell behind does not catch up in one go: the debt beyond two
                # steps' worth is dropped (the rate achieved is reported).
                n = min(due - done, max(1, int(rate * 0.02)))
                step(n)
                done += n
                dropped += due - done
                done = due
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.01)
        self.paced_figures = {
            "done": done - dropped,
            "rate": round((done - dropped) / max(1e-3, time.monotonic() - started)),
        }
        return done - dropped

    async def expiry(self, stop: asyncio.Event) -> dict[str, Any]:
        """10,000 entries a second installed with a one-second TTL, cycling through 20,000."""
        from lispd.mapcache import MapCacheEntry

        cycle = self.entries[-min(len(self.entries), 2 * EXPIRY_RATE) :]
        position = 0
        mapcache = self.daemon.node.mapcache
        before = len(mapcache)

        def step(n: int) -> None:
            nonlocal position
            now = self.daemon.clock()
            batch = []
            for _ in range(n):
                e = cycle[position % len(cycle)]
                position += 1
                batch.append(
                    MapCacheEntry(e.iid, e.prefix, e.rlocs, ttl=EXPIRY_TTL, created=now,
                                  source="map-reply")
                )  # fmt: skip
            self.learn(batch)

        installed = await self.paced(EXPIRY_RATE, stop, step)
        lowest = len(mapcache)
        await asyncio.sleep(EXPIRY_TTL + 0.2)  # the last ones expire
        expired_after = before - len(mapcache)
        for k in range(0, len(cycle), RESTORE_CHUNK):  # learned again, for a day
            self.learn(self.reissued(cycle[k : k + RESTORE_CHUNK]))
            await asyncio.sleep(0)
        return {
            "installed": installed,
            "rate": self.paced_figures["rate"],
            "cycle": len(cycle),
            "entries_at_stop": lowest,
            "missing_after_ttl": expired_after,
            "entries_restored": len(mapcache),
        }

    def reissued(self, entries: list[Any]) -> list[Any]:
        """``entries`` learned again now with their one-day TTL."""
        from lispd.mapcache import MapCacheEntry

        now = self.daemon.clock()
        return [
            MapCacheEntry(e.iid, e.prefix, e.rlocs, ttl=LONG_TTL, created=now, source="map-reply")
            for e in entries
        ]

    def rloc_change(self, up: bool) -> None:
        """What RLOC probing reports when :data:`FLAP_RLOC` goes down or up, handed to the
        node as its control plane hands it over."""
        from lispd.control.plane import ControlResult
        from lispd.control.prober import RlocChange

        node = self.daemon.node
        node.now = self.daemon.clock()
        node.inputs += 1
        node._apply(ControlResult(rloc_changes=[RlocChange(FLAP_RLOC, up)]))
        self.daemon.transmit()

    async def flap(self, stop: asyncio.Event) -> dict[str, Any]:
        """:data:`FLAP_RLOC` down, up, down ... every :data:`FLAP_PERIOD` / 2 seconds."""
        changes = 0
        up = True
        while not stop.is_set():
            up = not up
            self.rloc_change(up)
            changes += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FLAP_PERIOD / 2)
        if not up:
            self.rloc_change(True)
            changes += 1
        using = len(self.daemon.node.mapcache.using(FLAP_RLOC))
        return {"changes": changes, "entries_using": using}

    async def rebind(self, stop: asyncio.Event) -> dict[str, Any]:
        """1,000 keepalives a second, each a new NAT binding (see the module docstring)."""
        from lispd.wire.data import IID_CONTROL, build_data_header
        from lispd.wire.info import InfoMessage, encode_info

        daemon = self.daemon
        counters = daemon.node.counters.packets
        changes_before = counters["rtr.nat-binding-change.packets"]

        def step(n: int) -> None:
            for _ in range(n):
                k = self.rebinds
                self.rebinds += 1
                address = self.pool[k % len(self.pool)]
                port = 20000 + (k // len(self.pool)) % 40000
                info = InfoMessage(nonce=k + 1, ttl=1440, eid=address, eid_mask_len=128)
                payload = build_data_header((k + 1) & 0xFFFFFF, IID_CONTROL) + encode_info(info)
                daemon._data_packet(payload, 64, 0, str(address), port)
            daemon.transmit()

        sent = await self.paced(REBIND_RATE, stop, step)
        return {
            "keepalives": sent,
            "rate": self.paced_figures["rate"],
            "binding_changes": counters["rtr.nat-binding-change.packets"] - changes_before,
        }

    # the socket

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request a line: ``{"op": "load"}``, ``{"op": "start"|"stop", "source": S}``,
        ``{"op": "stalls", "windows": {name: [start, end]}}``, ``{"op": "workers-ready",
        "timeout": s}``, ``{"op": "figures"}``; answers ``{"ok": true, "result": ...}``."""
        try:
            while line := await reader.readline():
                try:
                    req = json.loads(line)
                    op = req["op"]
                    result: Any
                    if op == "load":
                        result = await self.load()
                    elif op == "start":
                        self.start(req["source"])
                        result = None
                    elif op == "stop":
                        result = await self.stop(req["source"])
                    elif op == "stalls":
                        result = {
                            name: self.lag.window_figures(a, b)
                            for name, (a, b) in req["windows"].items()
                        }
                    elif op == "workers-ready":
                        result = await self.workers_ready(float(req["timeout"]))
                    elif op == "figures":
                        result = self.figures()
                    else:
                        raise ValueError(f"unknown op {op!r}")
                    answer = {"ok": True, "result": result}
                except Exception as exc:  # reported to the benchmark, which fails
                    answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()

    def figures(self) -> dict[str, Any]:
        """The map-cache's size and the lag ticks kept so far."""
        return {
            "entries": len(self.daemon.node.mapcache),
            "ticks": len(self.lag.times),
            "eid": str(self.entries[-1].prefix.network_address) if self.entries else None,
        }


def run_xtr(args: argparse.Namespace) -> int:
    """xtr1's process: the daemon as ``lispd -c`` builds it, its lag tick recording, the agent
    on ``args.agent``."""
    from lispd.cli.main import log_formatter
    from lispd.config import load_config
    from lispd.daemon import Daemon

    config = load_config(args.config)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(log_formatter(False))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(config.daemon.logging_level)
    daemon = Daemon(config)
    lag = RecordingLag(daemon.heartbeat.lag.interval, daemon.heartbeat.lag.window)
    daemon.heartbeat.lag = lag
    agent = Agent(daemon, args.prefixes, lag)

    async def main() -> None:
        server = await asyncio.start_unix_server(agent.handle, path=args.agent)
        try:
            await daemon.run()
        finally:
            server.close()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
    return 0


# --- the benchmark -----------------------------------------------------------------------------


class AgentClient:
    """The benchmark's end of the agent's socket: a connection per request (the agent serves
    them at once), so that a request that waits long holds up no other."""

    def __init__(self, path: str) -> None:
        self.path = path

    def ask(self, op: str, **args: Any) -> Any:
        """One request; its result (raises RuntimeError when the agent failed)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(900)
            sock.connect(self.path)
            sock.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
            with sock.makefile("rb") as reader:
                answer = json.loads(reader.readline())
        if not answer["ok"]:
            raise RuntimeError(f"agent: {op}: {answer['error']}")
        return answer["result"]


def xtr1_config(plan: Any, sock: str, prefixes: int, metrics_port: int) -> str:
    """xtr1: ITR, ETR and RTR (for the NAT bindings), IPv4 and IPv6 RLOCs, two engines,
    metrics, no map-cache probing, room for the entries, one-second NAT bindings."""
    return f"""
[daemon]
name = "xtr1"
roles = ["itr", "etr", "rtr"]
log-level = "warning"
control-socket = "{sock}"
[underlay]
rlocs = ["{plan.xtr1_rloc_v4}", "{plan.xtr1_rloc_v6}"]
[[database-mapping]]
eid-prefix = "{plan.site_a_prefix_v4}"
rlocs = [{{ address = "{plan.xtr1_rloc_v4}" }}]
[[map-cache]]
eid-prefix = "{plan.site_b_prefix_v4}"
rlocs = [{{ address = "{plan.xtr2_rloc_v4}" }}]
[probing]
map-cache = false
[limits]
map-cache-entries = {max(100_000, 2 * prefixes)}
[rtr]
nat-binding-timeout = 1
[metrics]
listen = "{plan.xtr1_rloc_v4}:{metrics_port}"
[dataplane]
fastpath = "compiled"
workers = 2
"""


def xtr2_config(plan: Any, sock: str) -> str:
    """xtr2: a plain xTR of site b."""
    return f"""
[daemon]
name = "xtr2"
roles = ["itr", "etr"]
log-level = "warning"
control-socket = "{sock}"
[underlay]
rlocs = ["{plan.xtr2_rloc_v4}"]
[[database-mapping]]
eid-prefix = "{plan.site_b_prefix_v4}"
rlocs = [{{ address = "{plan.xtr2_rloc_v4}" }}]
[[map-cache]]
eid-prefix = "{plan.site_a_prefix_v4}"
rlocs = [{{ address = "{plan.xtr1_rloc_v4}" }}]
"""


class Pinger:
    """An ICMP echo every ``interval`` from a socket in the source namespace (a thread);
    :meth:`lost` counts, for a window, the requests sent in it without a reply within
    ``wait`` seconds."""

    def __init__(self, sock: socket.socket, dst: str, interval: float = 0.01) -> None:
        from lispd.lab.pinger import echo_request, parse_reply

        self.sock, self.dst, self.interval = sock, dst, interval
        self.echo_request, self.parse_reply = echo_request, parse_reply
        self.ident = os.getpid() & 0xFFFF
        self.sent: list[float] = []  # send time by seq - 1
        self.rtt: dict[int, float] = {}
        self.done = threading.Event()
        self.threads = [
            threading.Thread(target=self._send, name="ping-send", daemon=True),
            threading.Thread(target=self._receive, name="ping-recv", daemon=True),
        ]

    def start(self) -> None:
        """Start sending and receiving."""
        self.sock.settimeout(0.2)
        for t in self.threads:
            t.start()

    def _send(self) -> None:
        due = time.monotonic()
        while not self.done.is_set():
            seq = len(self.sent) + 1
            packet = self.echo_request(4, self.ident, seq & 0xFFFF, b"churn-ping" * 5)
            self.sent.append(time.monotonic())
            with contextlib.suppress(OSError):
                self.sock.sendto(packet, (self.dst, 0))
            due += self.interval
            time.sleep(max(0.0, due - time.monotonic()))

    def _receive(self) -> None:
        while not self.done.is_set() or time.monotonic() - self.sent[-1] < 1.0:
            try:
                data = self.sock.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            reply = self.parse_reply(4, data)
            if reply is None or reply[0] != self.ident:
                continue
            # seq wraps at 65536 (11 minutes at 10 ms): the latest request with that number
            count = len(self.sent)
            seq = reply[1] + ((count - reply[1]) >> 16 << 16)
            if 0 < seq <= count and seq not in self.rtt:
                self.rtt[seq] = now - self.sent[seq - 1]

    def stop(self) -> None:
        """Stop sending; wait for the last replies."""
        self.done.set()
        for t in self.threads:
            t.join(timeout=3)

    def window(self, start: float, end: float, wait: float = 1.0) -> dict[str, Any]:
        """Requests sent in [start, end]: how many, how many lost, RTT ms max/p99."""
        lo = bisect.bisect_left(self.sent, start)
        hi = bisect.bisect_right(self.sent, end)
        rtts = sorted(
            self.rtt[s] for s in range(lo + 1, hi + 1) if s in self.rtt and self.rtt[s] <= wait
        )
        out: dict[str, Any] = {"sent": hi - lo, "lost": (hi - lo) - len(rtts)}
        if rtts:
            out["rtt_p99_ms"] = round(rtts[min(len(rtts) - 1, len(rtts) * 99 // 100)] * 1000, 2)
            out["rtt_max_ms"] = round(rtts[-1] * 1000, 2)
        return out


def progress(text: str) -> None:
    """One line of progress on stderr."""
    print(f"churn {time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return 0.0


class Churn:
    """The lab, xtr1 with its agent, and the phases (see the module docstring)."""

    def __init__(self, lab: Any, plan: Any, prefixes: int, phase_s: float) -> None:
        self.lab, self.plan, self.prefixes, self.phase_s = lab, plan, prefixes, phase_s
        # A phase whose one-shot sources (dump, lookups, worker restart) are not done by then
        # fails the run (a million entries: minutes of full dumps today).
        self.phase_limit = max(120.0, prefixes / 200)
        self.socks = {n: str(lab.workdir / f"{n}.sock") for n in ("xtr1", "xtr2")}
        self.agent_path = str(lab.workdir / "agent.sock")
        self.metrics_port = 9422
        self.env = {**os.environ, "PYTHONPATH": REPO}
        self.pid = 0
        self.agent: AgentClient | None = None
        self.eid = ""
        self.scrapes: list[float] = []
        self.lookups: list[float] = []
        self.dumps: list[dict[str, Any]] = []
        self.kills: list[dict[str, Any]] = []
        self.control_errors = 0  # control-socket requests that failed (and were asked again)
        self.lookup_failures: list[str] = []
        self.lookup_count = 5 if prefixes <= 200_000 else 1  # each one a full dump today

    def ask(self, command: str, timeout: float = 600.0) -> Any:
        """A control-socket command to xtr1, asked again (for ``timeout`` seconds) when it
        fails: a loop stalled longer than the control server's request timeout answers an
        error, or nothing."""
        from lispd.api.client import ControlError, request

        deadline = time.monotonic() + timeout
        while True:
            try:
                return request(self.socks["xtr1"], command, timeout=timeout)
            except (ControlError, OSError):
                self.control_errors += 1
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def setup(self) -> dict[str, Any]:
        """Start both xTRs, check the ping path, load the map-cache; the load's figures."""
        lab, plan = self.lab, self.plan
        lab.start_lispd(plan.xtr2, xtr2_config(plan, self.socks["xtr2"]))
        argv = [sys.executable, str(Path(__file__).resolve()), "xtr", "--prefixes",
                str(self.prefixes), "--agent", self.agent_path, "-c", "{config}"]  # fmt: skip
        config = xtr1_config(plan, self.socks["xtr1"], self.prefixes, self.metrics_port)
        handle = lab.start_lispd(plan.xtr1, config, argv=argv, timeout=60, env=self.env)
        self.pid = handle.pid
        lab.wait_ping(plan.host_a, plan.host_b_v4, timeout=20)
        self.agent = AgentClient(self.agent_path)
        workers = self.workers()
        before = rss_mb(self.pid) + sum(rss_mb(p) for p in workers)
        progress(f"loading {self.prefixes} prefixes into xtr1")
        load = self.agent.ask("load")
        progress(f"loaded: {load}")
        workers = self.workers()
        main, worker = rss_mb(self.pid), sum(rss_mb(p) for p in workers)
        self.eid = self.agent.ask("figures")["eid"]
        return {
            **load,
            "engines": 1 + len(workers),
            "rss_main_mb": round(main, 1),
            "rss_workers_mb": round(worker, 1),
            "rss_total_mb": round(main + worker, 1),
            "rss_before_load_mb": round(before, 1),
            "bytes_per_prefix": round((main + worker - before) * 1e6 / self.prefixes, 1),
        }

    def workers(self) -> list[int]:
        """xtr1's fast-path worker processes now."""
        return [int(p) for p in self.ask("version").get("worker-pids", [])]

    # the sources run from here

    def scrape_loop(self, stop: threading.Event) -> None:
        """``GET /metrics`` once a second until ``stop``."""
        while not stop.is_set():
            started = time.monotonic()
            sock = self.lab.socket(self.plan.xtr1, socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.settimeout(60)
                sock.connect((self.plan.xtr1_rloc_v4, self.metrics_port))
                sock.sendall(b"GET /metrics HTTP/1.0\r\nHost: xtr1\r\n\r\n")
                size = 0
                while chunk := sock.recv(1 << 16):
                    size += len(chunk)
                if size:
                    self.scrapes.append(time.monotonic() - started)
            except OSError:
                pass
            finally:
                sock.close()
            stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))

    def dump(self) -> None:
        """One full ``lispctl show map-cache``, by the command-line client."""
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "lispd.cli.lispctl", "-s", self.socks["xtr1"], "--timeout",
             "600", "show", "map-cache"],
            capture_output=True, env=self.env, check=False,
        )  # fmt: skip
        self.dumps.append({
            "seconds": round(time.monotonic() - started, 3),
            "exit": proc.returncode,
            "lines": proc.stdout.count(b"\n"),
            **({"error": proc.stderr.decode(errors="replace").strip()[-300:]}
               if proc.returncode else {}),
        })  # fmt: skip

    def lookup(self, times: int = 5) -> None:
        """``lispctl show map-cache EID``, ``times`` in a row (the client's own code)."""
        from lispd.cli import lispctl

        parser = lispctl.build_parser()
        args = parser.parse_args(
            ["-s", self.socks["xtr1"], "--timeout", "600", "show", "map-cache", self.eid]
        )
        command, arg = lispctl.parse_command(args.command)
        for _ in range(times):
            out = io.StringIO()
            started = time.monotonic()
            try:
                code = lispctl.run(args, command, arg, out)
            except lispctl.ControlFailure as exc:
                self.lookup_failures.append(f"{time.monotonic() - started:.1f} s: {exc}")
                continue
            if code != 0 or self.eid not in out.getvalue():
                self.lookup_failures.append(f"exit {code}, no entry for {self.eid}")
                continue
            self.lookups.append(time.monotonic() - started)

    def kill_worker(self) -> None:
        """SIGKILL the worker; wait for the daemon to restart it and load its table."""
        assert self.agent is not None
        (old,) = self.workers()[:1] or (0,)
        started = time.monotonic()
        if old:
            os.kill(old, signal.SIGKILL)
        deadline = started + 600
        while time.monotonic() < deadline:
            pids = self.workers()
            if pids and old not in pids:
                break
            time.sleep(0.05)
        respawned = time.monotonic() - started
        while True:  # a loop stalled for long may drop the agent's connection: ask again
            try:
                ready = self.agent.ask("workers-ready", timeout=600)
                break
            except (OSError, ValueError):
                self.control_errors += 1
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.kills.append({
            "respawned_s": round(respawned, 3),
            "ready_s": round(time.monotonic() - started, 3),
            "ready": ready["ready"],
        })  # fmt: skip

    def phase(self, name: str, sources: tuple[str, ...]) -> tuple[float, float, dict[str, Any]]:
        """Run ``sources`` together for the phase time (the one-shot ones once, to their end);
        the window and what the in-process sources did."""
        assert self.agent is not None
        agent_sources = [s for s in sources if s in ("expiry", "flap", "rebind")]
        stop = threading.Event()
        threads = []
        if "scrape" in sources:
            threads.append(
                threading.Thread(target=self.scrape_loop, args=(stop,), name="scrape", daemon=True)
            )
        one_shot = {"dump": self.dump, "lookup": lambda: self.lookup(self.lookup_count),
                    "kill": self.kill_worker}  # fmt: skip
        for source in sources:
            if source == "lookup" and name == "all" and self.prefixes > 200_000:
                continue  # today each is a full dump: the dump source stands for it there
            if source in one_shot:
                threads.append(threading.Thread(target=one_shot[source], name=source, daemon=True))
        start = time.monotonic()
        for source in agent_sources:
            self.agent.ask("start", source=source)
        for t in threads:
            t.start()
        time.sleep(self.phase_s)
        # The continuous sources run for the phase time; the one-shot ones to their end.
        stop.set()
        done = {s: self.agent.ask("stop", source=s) for s in agent_sources}
        limit = start + self.phase_limit
        for t in threads:  # the one-shot sources run to their end, within the limit
            t.join(timeout=max(0.0, limit - time.monotonic()))
        unfinished = [t.name for t in threads if t.is_alive()]
        if unfinished:
            raise RuntimeError(f"phase {name}: {unfinished} still running after "
                               f"{self.phase_limit:g} s")  # fmt: skip
        end = time.monotonic()
        return start, end, done

    def run(self) -> dict[str, Any]:
        """Every phase; the figures."""
        assert self.agent is not None
        pinger = Pinger(
            self.lab.socket(self.plan.host_a, socket.AF_INET, socket.SOCK_RAW,
                            socket.IPPROTO_ICMP),
            self.plan.host_b_v4,
        )  # fmt: skip
        pinger.start()
        windows: dict[str, tuple[float, float]] = {}
        details: dict[str, Any] = {}
        plan: list[tuple[str, tuple[str, ...]]] = [("quiet", ())]
        plan += [(s, (s,)) for s in SOURCES]
        plan.append(("all", SOURCES))
        try:
            for name, sources in plan:
                progress(f"phase {name}")
                marks = (len(self.scrapes), len(self.lookups), len(self.dumps), len(self.kills),
                         len(self.lookup_failures))  # fmt: skip
                start, end, done = self.phase(name, sources)
                windows[name] = (start, end)
                detail: dict[str, Any] = dict(done)
                if "scrape" in sources:
                    scrapes = self.scrapes[marks[0] :]
                    detail["scrape"] = {
                        "count": len(scrapes),
                        "max_ms": round(max(scrapes) * 1000, 1) if scrapes else None,
                    }
                if "lookup" in sources:
                    detail["lookup_ms"] = [round(s * 1000, 1) for s in self.lookups[marks[1] :]]
                    if len(self.lookup_failures) > marks[4]:
                        detail["lookup_failures"] = self.lookup_failures[marks[4] :]
                if "dump" in sources:
                    detail["dump"] = self.dumps[marks[2] :]
                if "kill" in sources:
                    detail["kill"] = self.kills[marks[3] :]
                details[name] = detail
                time.sleep(0.5)  # settle: the next window starts quiet
                # Told as it goes: a later phase that fails leaves these figures at least.
                window = {name: [start, end + 0.3]}
                stall = self.agent.ask("stalls", windows=window)[name]
                progress(f"phase {name}: {round(end - start, 1)} s, stall {stall}, "
                         f"ping {pinger.window(start, end)}, {detail}")  # fmt: skip
        finally:
            pinger.stop()
        # A stall that ends the window shows in the tick just after it: 0.3 s more (of the
        # 0.5 s of quiet between two phases).
        late = {k: [a, b + 0.3] for k, (a, b) in windows.items()}
        stalls = self.agent.ask("stalls", windows=late)
        phases = {}
        for name, (start, end) in windows.items():
            phases[name] = {
                "seconds": round(end - start, 2),
                "stall": stalls[name],
                "ping": pinger.window(start, end),
                **details[name],
            }
        return phases

    def afterwards(self) -> dict[str, Any]:
        """What else tells of the run: control requests asked again, lispd's own loop
        figures, what xtr2's RLOC probing thinks of xtr1."""
        from lispd.api.client import request

        stats = self.ask("stats")
        try:
            rlocs = request(self.socks["xtr2"], "rlocs", timeout=10)
        except OSError as exc:
            rlocs = str(exc)
        log = self.lab.workdir / "xtr2-lispd.log"
        downs = log.read_text().count('msg="rloc down" rloc=' + self.plan.xtr1_rloc_v4)
        return {
            "control_errors": self.control_errors,
            "xtr2_marked_xtr1_down": downs,
            "lispd_loop": stats.get("loop"),
            "worker_restarts": stats.get("fastpath", {}).get("worker-restarts"),
            "xtr2_probing": rlocs,
        }


def summary(load: dict[str, Any], phases: dict[str, Any]) -> dict[str, Any]:
    """The top-level figures: the load's, and the worst of the churn phases."""
    churn = [p for name, p in phases.items() if name != "quiet"]
    stalls = [p["stall"] for p in churn if p["stall"]["ticks"]]
    lookups = [ms for p in churn for ms in p.get("lookup_ms", [])]
    return {
        "load_s": load["load_s"],
        "rss_total_mb": load["rss_total_mb"],
        "bytes_per_prefix": load["bytes_per_prefix"],
        "loop_stall_max_ms": max((s["max_ms"] for s in stalls), default=None),
        "loop_stall_p99_ms": max((s["p99_ms"] for s in stalls), default=None),
        "show_map_cache_eid_ms": max(lookups) if lookups else None,
        "show_map_cache_eid_failures": sum(len(p.get("lookup_failures", [])) for p in churn),
        "ping_loss": sum(p["ping"]["lost"] for p in churn),
        "ping_sent": sum(p["ping"]["sent"] for p in churn),
    }


def targets(top: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 22 with its figure and whether it is met."""
    out = []
    for key, (op, limit) in TARGETS.items():
        value = top.get(key)
        met = None if value is None else (value <= limit if op == "<=" else value < limit)
        out.append({"figure": key, "target": f"{op} {limit:g}", "value": value, "met": met})
    return out


def run_churn(prefixes: int, phase_s: float) -> dict[str, Any]:
    """Build the lab, run the phases, tear down; the churn section of the JSON."""
    from lispd.lab import Lab, two_site_topology

    plan = two_site_topology()
    workdir = Path(tempfile.mkdtemp(prefix=f"lispd-churn-{os.getpid()}-"))
    started = time.monotonic()
    with Lab(plan.topology, workdir=workdir) as lab:
        bench = Churn(lab, plan, prefixes, phase_s)
        load = bench.setup()
        phases = bench.run()
        extra = bench.afterwards()
    if os.environ.get("LISPD_LAB_KEEP", "") in ("", "0"):
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    top = summary(load, phases)
    return {
        "prefixes": prefixes,
        "phase_seconds": phase_s,
        **top,
        "targets": targets(top),
        "load": load,
        "phases": phases,
        **extra,
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def print_report(r: dict[str, Any]) -> None:
    """The churn figures, for people."""
    load = r["load"]
    print(
        f"churn: xtr1 with {r['prefixes']} prefixes loaded in {load['load_s']} s "
        f"({load['load_with_worker_s']} s with the worker), {load['engines']} engines, RSS "
        f"main {load['rss_main_mb']} + workers {load['rss_workers_mb']} = "
        f"{load['rss_total_mb']} MB, {load['bytes_per_prefix']} bytes/prefix"
    )
    print(f"{'phase':<8}{'s':>6}{'ticks':>7}{'max ms':>9}{'p99 ms':>8}{'>20ms':>7}"
          f"{'pings':>7}{'lost':>6}  what happened")  # fmt: skip
    for name, p in r["phases"].items():
        s, ping = p["stall"], p["ping"]
        what = []
        for key in ("expiry", "flap", "rebind"):
            if key in p:
                what.append(f"{key} {p[key]}")
        if "scrape" in p:
            what.append(f"scrapes {p['scrape']['count']} max {p['scrape']['max_ms']} ms")
        if "lookup_ms" in p:
            what.append(f"show map-cache EID ms {p['lookup_ms']}")
            for failure in p.get("lookup_failures", []):
                what.append(f"show map-cache EID failed after {failure}")
        if "dump" in p:
            what.append("dump " + ", ".join(
                f"{d['seconds']} s {d['lines']} lines"
                + (f" (exit {d['exit']}: {d.get('error', '')[-80:]})" if d["exit"] else "")
                for d in p["dump"]))  # fmt: skip
        if "kill" in p:
            what.append(
                "worker "
                + ", ".join(
                    f"respawned {k['respawned_s']} s ready {k['ready_s']} s" for k in p["kill"]
                )
            )
        print(
            f"{name:<8}{p['seconds']:>6}{s['ticks']:>7}{s['max_ms']!s:>9}{s['p99_ms']!s:>8}"
            f"{s['over_20ms']:>7}{ping['sent']:>7}{ping['lost']:>6}  " + "; ".join(what)
        )
    print(f"{'target (issue 22)':<24}{'value':>12}  result")
    for t in r["targets"]:
        result = "n/a" if t["met"] is None else ("met" if t["met"] else "NOT met")
        print(f"{t['figure'] + ' ' + t['target']:<30}{t['value']!s:>10}  {result}")


def main(argv: list[str] | None = None) -> int:
    """xtr1's process (``xtr``): the daemon with its agent."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "xtr":
        print("usage: python -m benchmarks.mapcache_scale (the churn runs from there)")
        return 2
    p = argparse.ArgumentParser(prog="churn xtr")
    p.add_argument("--prefixes", type=int, required=True)
    p.add_argument("--agent", required=True)
    p.add_argument("-c", "--config", required=True)
    return run_xtr(p.parse_args(argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
