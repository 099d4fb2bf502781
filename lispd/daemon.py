"""The daemon: the asyncio shell around one :class:`~lispd.node.Node`.

It opens what the node needs of the operating system (the TUN device, UDP 4341/4342/2434
sockets, lispd's routes and rules, the compiled engine and its workers, the control socket and
the metrics listener), hands every input to the node with the time, performs what the node asks
for in :meth:`Daemon.transmit` and keeps one timer armed at the node's next deadline.  The
decisions are all the node's; this module is I/O, signals and systemd.

One asyncio loop (uvloop when installed).  The TUN device and the UDP sockets are drained in
batches (read until EAGAIN, bounded per wake-up so that no source starves the others).  With
the compiled engine the TUN and the 4341 sockets are not the loop's: engine 0 serves them from
a thread of its own (:mod:`lispd.engine.serving`), and only what it leaves to Python reaches
the node, on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from lispd import __version__
from lispd.api import views
from lispd.api.commands import handlers
from lispd.api.metrics import MetricsServer, MetricsSnapshot
from lispd.api.server import ControlServer
from lispd.config import Config, ConfigError, load_config
from lispd.engine import compiled
from lispd.engine.runner import EngineAction, EngineRunner
from lispd.engine.serving import LoopHandlers
from lispd.heartbeat import Heartbeat
from lispd.io.egress import BurstCheck, udp_bursts_safe
from lispd.io.notify import sd_notify
from lispd.io.udp import recv_batch
from lispd.logfmt import kv
from lispd.node import DATA_ROLES, Node
from lispd.node.actions import (
    LocalPrefixes,
    ReturnTrace,
    RouteAdd,
    RouteRemove,
    SendDatagram,
    SendEncap,
    WriteTun,
)
from lispd.resources import Resources, open_resources
from lispd.startup import opening

log = logging.getLogger("lispd.daemon")

BATCH = 256  # packets handled per wake-up and source before yielding to the loop
EGRESS_RECHECK_S = 5.0
"""How often ``offloads = "auto"`` looks at the ways out again (a netlink dump and an ethtool
query per device the verdict depends on, on a thread)."""


class Daemon:
    """One running lispd: a node and the operating-system resources it works through."""

    def __init__(
        self,
        config: Config,
        clock: Callable[[], float] = time.monotonic,
        fixed_log_level: bool = False,
    ) -> None:
        """``fixed_log_level``: the log level was given on the command line (``-v``), so a
        reload does not change it."""
        self.clock = clock
        self.fixed_log_level = fixed_log_level
        self.node = Node(config, clock())
        self.os = Resources()  # the TUN, sockets and routes, once opened
        self.engine: EngineRunner | None = None  # the compiled engine, when it runs
        self.api: ControlServer | None = None
        self.metrics: MetricsServer | None = None
        self._timer: asyncio.Handle | None = None  # a TimerHandle, or a Handle (see _arm_timer)
        self._armed_after = -1  # node.inputs when the timer was last armed
        self.heartbeat = Heartbeat(self._status_line)
        self._stop = asyncio.Event()
        self._egress_watch: asyncio.Task[None] | None = None  # offloads = "auto" at work

    @property
    def config(self) -> Config:
        """The configuration the node runs."""
        return self.node.config

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the TUN, sockets, routes, engines, control socket and metrics listener, then
        tell systemd we are ready."""
        loop = asyncio.get_running_loop()
        cfg, node = self.config, self.node
        fast = self._use_compiled()
        self.os = await open_resources(
            cfg,
            local_prefixes=[e.prefix for e in node.database.entries()],
            routed_prefixes=[e.prefix for e in node.mapcache.entries()],
            engines=self._engine_count() if fast else 1,
            vnet=fast and cfg.dataplane.local_offloads,
        )
        os_ = self.os
        if os_.routes is not None:  # from now on the loop never waits for netlink
            os_.routes.detach(loop)
        if fast and os_.sender is not None:
            bursts = await self._udp_bursts()
            self.engine = EngineRunner(
                node,
                tun=os_.tun,
                sender=os_.sender,
                worker_receive=os_.worker_receive,
                offloads=cfg.dataplane.local_offloads,
                gso=bursts.safe,
                gso_reason=bursts.reason,
                gso_rlocs=cfg.dataplane.gso_rlocs,
                busy_poll=cfg.dataplane.busy_poll,
                on_tun=self._worker_tun_packet,
                on_udp=self._worker_data_packet,
                clock=self.clock,
            )
            to_loop = LoopHandlers(
                on_tun=self._tun_packet,
                on_udp=self._data_packet,
                on_batch=self.transmit,
                on_error=self.node.internal_error,
                on_drop=self.node.counters.drop,
            )
            # engine 0 serves the TUN and the 4341 sockets itself, from a thread
            self.engine.start([sock.fileno() for sock in os_.receivers], to_loop)
            if cfg.dataplane.offloads == "auto":
                self._egress_watch = asyncio.create_task(self._watch_egress(self.engine))
        else:
            if os_.tun is not None:
                loop.add_reader(os_.tun.fd, self._on_tun_readable)
            for sock in os_.receivers:
                loop.add_reader(sock.fileno(), self._on_udp_readable, sock)
        for sock in os_.trace_sockets.values():
            loop.add_reader(sock.fileno(), self._on_trace_readable, sock)
        for group in os_.control_sockets.values():
            for sock in group:
                loop.add_reader(sock.fileno(), self._on_control_readable, sock)
        if cfg.daemon.control_socket:
            path = cfg.daemon.control_socket
            with opening(cfg, ("daemon", "control-socket"), path, "the control socket"):
                self.api = ControlServer(path, handlers(self))
                await self.api.start()
        if cfg.metrics is not None:
            listen = f"{cfg.metrics.address}:{cfg.metrics.port}"
            with opening(cfg, ("metrics", "listen"), listen, "the metrics listener"):
                self.metrics = MetricsServer(
                    str(cfg.metrics.address),
                    cfg.metrics.port,
                    self.metrics_snapshot,
                    refresh=self.refresh_workers,
                )
                await self.metrics.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)  # its answer goes to the log
        if self.engine is not None and not await self.engine.ready():
            log.warning("fast-path workers not ready yet: their flows wait in their queues")
        node.start(self.clock())  # first registrations go out now
        self.transmit()
        log.info("lispd ready %s %s", kv(version=__version__), self._status_line())
        self.heartbeat.ready()  # READY=1, then the status/watchdog and loop-lag ticks

    def _use_compiled(self) -> bool:
        """Whether the compiled fast path runs (``[dataplane] fastpath``); refuses to start
        when it is asked for and was not built."""
        wanted = self.config.dataplane.fastpath
        if not self.config.daemon.roles & DATA_ROLES or wanted == "python":
            return False
        if wanted == "compiled" and not compiled.available():
            raise OSError(
                'dataplane.fastpath is "compiled" but lispd was built without it '
                '(lispd.engine._accel is missing: install with a C compiler, or use "auto")'
            )
        return compiled.available()

    async def _udp_bursts(self) -> BurstCheck:
        """Whether the engines send UDP GSO bursts to every RLOC: ``offloads = "gso"`` says
        yes, ``"off"`` no, ``"auto"`` when every interface they can leave by cuts them before
        the wire (:mod:`lispd.io.egress`; on a thread: pyroute2's netlink calls cannot run
        inside a running event loop)."""
        dataplane = self.config.dataplane
        if dataplane.offloads != "auto":
            return BurstCheck(dataplane.udp_gso, f'offloads = "{dataplane.offloads}"')
        return await asyncio.to_thread(udp_bursts_safe, self.config.tun.name)

    async def _watch_egress(self, engine: EngineRunner) -> None:
        """``offloads = "auto"``: the ways out looked at again every
        :data:`EGRESS_RECHECK_S` seconds, the engines following the verdict (a container's
        veth that came up after lispd, an ``ethtool -K`` since)."""
        while True:
            await asyncio.sleep(EGRESS_RECHECK_S)
            check = await self._udp_bursts()
            try:
                engine.set_udp_bursts(check)
            except OSError as exc:  # a socket option refused: keep what runs, try again later
                log.warning("cannot change UDP GSO bursts %s", kv(error=exc))

    def _engine_count(self) -> int:
        """``[dataplane] workers``: engines forwarding in parallel (0: one per usable core)."""
        wanted = self.config.dataplane.workers
        return wanted if wanted > 0 else max(1, len(os.sched_getaffinity(0)))

    def _status_line(self) -> str:
        return views.status_line(self.node, self.stats(), self.clock())

    def stop(self) -> None:
        """Ask the daemon to shut down (signal handlers call this)."""
        if self.engine is not None:
            self.engine.stopping()
        self._stop.set()

    async def run(self) -> None:
        """Start, serve until stopped, then release every OS resource."""
        try:
            await self.start()
            await self._stop.wait()
            log.info("lispd stopping")
            sd_notify("STOPPING=1")
        finally:
            await self.close()

    async def close(self) -> None:
        """Remove routes, close sockets and the TUN (safe on a half-started daemon)."""
        loop = asyncio.get_running_loop()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._egress_watch is not None:
            self._egress_watch.cancel()
            self._egress_watch = None
        self.heartbeat.stop()
        if self.api is not None:
            await self.api.close()
        if self.metrics is not None:
            await self.metrics.close()
        if self.engine is not None:
            await self.engine.close()  # the engine's own copies of the TUN and the sockets
            self.engine = None
        for sock in self.os.sockets():
            loop.remove_reader(sock.fileno())
        if self.os.tun is not None:
            loop.remove_reader(self.os.tun.fd)
        self.os.close()

    def reload(self) -> dict[str, Any]:
        """SIGHUP / ``lispctl reload``: read the configuration file again.

        A file that does not validate changes nothing: the error is logged and returned.  A
        valid one is applied at once (database-mappings re-registered or withdrawn, Map-Servers
        and their keys, Map-Resolvers, PETRs, static map-cache entries, sites, timers, log
        level) without touching the TUN, the sockets or unaffected map-cache entries; settings
        only a restart can change are kept as they run and reported."""
        old = self.config
        try:
            new = load_config(old.path)
        except (ConfigError, OSError) as exc:
            log.error("reload refused, configuration unchanged %s", kv(error=exc))
            return {"reloaded": False, "error": str(exc)}
        outcome = self.node.reload(new, self.clock())
        if new.daemon.log_level != old.daemon.log_level and not self.fixed_log_level:
            logging.getLogger().setLevel(new.daemon.logging_level)
        if self._timer is not None:  # the node's deadlines moved: armed again by transmit()
            self._timer.cancel()
            self._timer = None
        self.transmit()
        if outcome.restart_needed:
            log.warning("reload needs a restart %s", kv(settings=list(outcome.restart_needed)))
        log.info("reload done %s", kv(changed=list(outcome.applied)))
        return {
            "reloaded": True,
            "applied": list(outcome.applied),
            "restart-needed": list(outcome.restart_needed),
            "database-changed": "database-mapping" in outcome.applied,
        }

    # --- inputs -------------------------------------------------------------------------------

    def _on_tun_readable(self) -> None:
        """The Python fast path's TUN reader (the compiled engine reads the TUN itself)."""
        tun = self.os.tun
        assert tun is not None
        now = self.clock()
        for pkt in tun.read_batch(BATCH):
            self.node.tun_packet(pkt, now)
        self.transmit()

    def _tun_packet(self, pkt: bytes) -> None:
        """A packet the engine left to Python (performed by the caller's ``transmit``)."""
        self.node.tun_packet(pkt, self.clock())

    def _worker_tun_packet(self, pkt: bytes) -> None:
        """A packet a worker's engine left to Python."""
        self._tun_packet(pkt)
        self.transmit()

    def _worker_data_packet(self, payload: bytes, ttl: int, tos: int, src: str, sport: int) -> None:
        """A 4341 datagram a worker's engine left to Python."""
        self._data_packet(payload, ttl, tos, src, sport)
        self.transmit()

    def _on_udp_readable(self, sock: socket.socket) -> None:
        """The Python fast path's 4341 reader (the compiled engine reads its sockets
        itself)."""
        now = self.clock()
        for payload, ttl, tos, src, sport in recv_batch(sock, BATCH):
            self.node.data_datagram(payload, ttl, tos, src, sport, now)
        self.transmit()

    def _data_packet(self, payload: bytes, ttl: int, tos: int, src: str, sport: int) -> None:
        """A 4341 datagram the engine left to Python (performed by the caller's
        ``transmit``)."""
        self.node.data_datagram(payload, ttl, tos, src, sport, self.clock())

    def _on_control_readable(self, sock: socket.socket) -> None:
        now = self.clock()
        local = str(sock.getsockname()[0])  # bound to one RLOC: what arrives was sent to it
        for data, ttl, _tos, src, sport in recv_batch(sock, BATCH):
            self.node.control_datagram(data, ttl, src, sport, now, local)
        self.transmit()

    def _on_trace_readable(self, sock: socket.socket) -> None:
        self._read_trace(sock)
        self.transmit()

    def _read_trace(self, sock: socket.socket) -> None:
        now = self.clock()
        for payload, _ttl, _tos, src, sport in recv_batch(sock, BATCH):
            self.node.trace_datagram(payload, src, sport, now)

    def _on_timer(self) -> None:
        self._timer = None
        self.node.handle_timer(self.clock())
        self.transmit()

    # --- outputs ------------------------------------------------------------------------------

    def transmit(self) -> None:
        """Perform what the node asked for, then arm the timer at its next deadline."""
        node = self.node
        actions = node.take_actions()
        while actions:
            for action in actions:
                if isinstance(action, SendEncap):
                    node.account(action, self._send_encap(action))
                elif isinstance(action, SendDatagram):
                    node.account(action, self._send_datagram(action))
                elif isinstance(action, WriteTun):
                    ok = self.os.tun is not None and self.os.tun.write(action.packet)
                    node.account(action, None if ok else "write failed")
                elif isinstance(action, ReturnTrace):
                    # A NATed ltr client's announcement may still wait on port 2434.
                    for sock in self.os.trace_sockets.values():
                        self._read_trace(sock)
                    node.return_trace(action)
                else:
                    self._engine_or_routes(action)
            actions = node.take_actions()  # what performing those added (trace returns)
        if node.inputs != self._armed_after:  # else its deadlines did not move (an engine
            self._arm_timer()  # wake-up that left nothing to Python)

    def _send_encap(self, action: SendEncap) -> str | None:
        sender, out = self.os.sender, action.encap
        if sender is None:
            return "no-socket"
        if out.data_port:
            sent = sender.send_from_data_port(out.payload, out.rloc, out.port, out.ttl, out.tos)
        else:
            sent = sender.send(out.payload, out.rloc, out.port, out.flow_hash, out.ttl, out.tos)
        return None if sent else "send failed"

    def _send_datagram(self, action: SendDatagram) -> str | None:
        sock: socket.socket | None
        version = action.dst.version
        if action.via == "control":
            group = self.os.control_sockets.get(version)
            sock = group[0] if group else None
        elif action.via == "data":
            sock = self.os.data_sockets.get(version)
        else:
            sock = self.os.trace_sockets.get(version)
        if sock is None:
            return "no-socket"
        try:
            sock.sendto(action.payload, (str(action.dst), action.port))
        except OSError as exc:
            return exc.strerror or str(exc)
        return None

    def _engine_or_routes(
        self, action: RouteAdd | RouteRemove | LocalPrefixes | EngineAction
    ) -> None:
        routes = self.os.routes
        if isinstance(action, RouteAdd):
            if routes is not None:
                routes.add(action.prefix)
        elif isinstance(action, RouteRemove):
            if routes is not None:
                routes.remove(action.prefix)
        elif isinstance(action, LocalPrefixes):
            if routes is not None:
                routes.set_local_prefixes(action.prefixes)
        elif self.engine is not None:
            self.engine.apply(action)

    def _arm_timer(self) -> None:
        self._armed_after = self.node.inputs
        deadline = self.node.get_timer()
        if self._timer is not None:
            # uvloop's call_at gives a plain Handle (no when()) for a deadline due within the
            # millisecond: it runs on the next loop iteration, before any other deadline.
            when = getattr(self._timer, "when", None)
            if when is None or when() <= self._loop_time(deadline):
                return
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(self._loop_time(deadline), self._on_timer)

    def _loop_time(self, deadline: float) -> float:
        loop = asyncio.get_running_loop()
        return loop.time() + max(0.0, deadline - self.clock())

    # --- views --------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Every counter, the workers' as they last reported them (at most a second ago)."""
        snap = views.node_stats(self.node)
        snap["loop"] = self.heartbeat.lag.snapshot(time.monotonic())
        snap["gc"] = self.heartbeat.gc_snapshot()
        if self.engine is not None:
            self.engine.stats_into(snap)
        if self.os.routes is not None:
            snap["netlink"] = self.os.routes.stats()
        return snap

    async def routes_settled(self) -> None:
        """Wait (the loop goes on) until the kernel has every route change asked for so far."""
        if self.os.routes is not None:
            await self.os.routes.settled()

    async def refresh_workers(self) -> None:
        """Have every worker report its current counters (at most half a second)."""
        if self.engine is not None:
            await self.engine.refresh_counters()

    def metrics_snapshot(self) -> MetricsSnapshot:
        """What ``GET /metrics`` shows."""
        return views.metrics_snapshot(self.node, self.stats(), self.clock())


def run_daemon(config: Config, fixed_log_level: bool = False) -> int:
    """Run the daemon in the foreground until SIGTERM/SIGINT; the process exit code.
    ``fixed_log_level``: the level came from the command line, reloads keep it."""
    try:
        import uvloop

        runner: Callable[..., Any] = uvloop.run
    except ImportError:
        runner = asyncio.run

    async def main() -> None:
        await Daemon(config, fixed_log_level=fixed_log_level).run()

    try:
        runner(main())
    except OSError as exc:
        log.error("lispd failed to start %s", kv(error=exc))
        return 1
    return 0
