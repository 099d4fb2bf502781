"""The daemon: wires the configuration to the roles and the roles to the operating system.

One asyncio loop (uvloop when installed).  The TUN device and the UDP 4341 sockets are drained in
batches (read until EAGAIN, bounded per wake-up so that no source starves the others); each
packet goes through the role logic (:mod:`lispd.dataplane`), whose output is sent, written to
the TUN, held for resolution, or counted as a drop.  UDP 4342 carries the control plane
(:mod:`lispd.control.plane`), whose machines ask for one timer: the earliest deadline any of
them has, re-armed after every input.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import random
import secrets
import signal
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any

from lispd import __version__
from lispd.api.metrics import MetricsServer, MetricsSnapshot
from lispd.api.server import ControlServer
from lispd.api.server import probe as probe_control_socket
from lispd.build import build_control_plane, build_database, build_tables, rloc_entries
from lispd.config import Config, ConfigError, load_config
from lispd.control.mapcachelog import log_install, log_removed
from lispd.control.nat import NatStatus, nat_record
from lispd.control.outputs import LISP_CONTROL_PORT, SendControl, SendData
from lispd.control.plane import ControlResult
from lispd.control.registrar import MapServerTarget
from lispd.control.responder import database_records
from lispd.dataplane import tracing as trace
from lispd.dataplane.etr import Etr
from lispd.dataplane.inner import inner_destination
from lispd.dataplane.itr import Itr
from lispd.dataplane.natbindings import NatBindings
from lispd.dataplane.outputs import Encap, Miss, ToTun
from lispd.dataplane.rtr import Rtr
from lispd.dataplane.tracing import TRACE_PORT, Tracer, is_trace
from lispd.engine import compiled
from lispd.engine.compiled import CompiledPath, RecordRefresh, merge_counts
from lispd.engine.workers import WorkerSet, WorkerSlot
from lispd.io.notify import sd_notify, watchdog_interval
from lispd.io.routes import KernelRouting, RoutingPolicy
from lispd.io.sysctl import prepare_tun_interface
from lispd.io.tun import Tun, held_by_another_process
from lispd.io.udp import (
    Sender,
    claim_port,
    enable_offloads,
    open_control_socket,
    open_receive_socket,
    open_send_pool,
    recv_batch,
)
from lispd.logfmt import kv
from lispd.mapcache import DatabaseEntry, MapCacheEntry, RlocEntry
from lispd.ratelimit import TokenBucket
from lispd.reconfigure import plan_reload, update_control_plane
from lispd.startup import opening
from lispd.stats import Counters, DropLog, LoopLag
from lispd.wire.address import ElpAddress
from lispd.wire.control import decode_control
from lispd.wire.data import DATA_HEADER_LEN as HEADER_LEN
from lispd.wire.data import IID_CONTROL, LISP_DATA_PORT
from lispd.wire.data import build_data_header as build_header
from lispd.wire.data import read_data_header as read_header
from lispd.wire.errors import WireError
from lispd.wire.info import InfoMessage
from lispd.wire.mapreply import MapReply
from lispd.wire.maprequest import MapRequest
from lispd.wire.records import EidRecord

log = logging.getLogger("lispd.daemon")

BATCH = 256  # packets handled per wake-up and source before yielding to the loop
SEND_POOL_SIZE = 8  # outer source ports per address family
DATA_ROLES = frozenset({"itr", "etr", "pitr", "petr", "rtr"})
TUN_ROLES = frozenset({"itr", "etr", "pitr", "petr"})  # an RTR alone needs no TUN
SMR_MEMORY = 300.0  # seconds an ITR that sent us traffic is remembered for SMRs
MAX_RECENT_ITRS = 4096  # ITRs remembered per SMR_MEMORY window (spoofed sources: bounded)
SMR_SAMPLE = HEADER_LEN + 40  # what an SMR needs of their packet: header, inner source
STATUS_INTERVAL = 10.0  # seconds between STATUS= updates to systemd (when changed)
LAG_INTERVAL = 0.01  # seconds between two ticks measuring the loop's lag (its stalls)
BINDING_LOG_RATE = 1.0  # "nat binding" lines a second (after a burst of BINDING_LOG_BURST)
BINDING_LOG_BURST = 20.0  # spoofed sources each make a binding: their lines are bounded


def control_nonce() -> int:
    """A 64-bit control-plane nonce from the CSPRNG (Map-Request, probe, Info-Request,
    Map-Register, SMR): an attacker who saw any number of them cannot predict the next."""
    return secrets.randbits(64)


class Daemon:
    """One running lispd: tables, roles, OS resources and the control socket."""

    def __init__(
        self,
        config: Config,
        clock: Callable[[], float] = time.monotonic,
        fixed_log_level: bool = False,
    ) -> None:
        """``fixed_log_level``: the log level was given on the command line (``-v``), so a
        reload does not change it."""
        self.config = config
        self.fixed_log_level = fixed_log_level
        self.clock = clock
        self.counters = Counters()
        self.drop_log = DropLog(log, clock)
        self.mapcache, self.database = build_tables(config, clock())
        # The data header's nonce gates nothing (prediction is harmless): a fast generator,
        # seeded from the CSPRNG.  Every control-plane nonce, the only thing tying a Map-Reply,
        # probe reply or Info-Reply to its request, comes from the CSPRNG (control_nonce).
        self.data_nonces = random.Random(secrets.randbits(256))
        roles = config.daemon.roles
        local_rlocs: dict[int, IPv4Address | IPv6Address] = {
            a.version: a for a in config.underlay.rlocs
        }
        self.nat_bindings = (
            NatBindings(config.rtr.nat_binding_timeout, config.rtr.max_nat_bindings)
            if "rtr" in roles
            else None
        )
        self.itr = (
            Itr(
                self.mapcache,
                self.database,
                local_rlocs,
                config.underlay.mtu,
                self.counters,
                nonce=lambda: self.data_nonces.getrandbits(24),
                clock=clock,
                proxy="pitr" in roles,
                petrs=rloc_entries(config.petrs),
                own_rlocs=config.rtr.public_rlocs,
                nat_port=self.nat_bindings.port_for if self.nat_bindings is not None else None,
            )
            if roles & {"itr", "pitr", "rtr"}
            else None
        )
        self.etr = Etr(self.database, petr="petr" in roles) if roles & {"etr", "petr"} else None
        self.rtr = Rtr(self.itr) if "rtr" in roles and self.itr is not None else None
        self.tracer = Tracer(
            config.daemon.name,
            local_rlocs,
            self._probe_history,
            public_rlocs={a.version: a for a in config.rtr.public_rlocs},
        )
        self.trace_sockets: dict[int, socket.socket] = {}
        self.nat_status: NatStatus | None = None
        self.control = build_control_plane(
            config,
            self.database,
            control_nonce,
        )
        self.control.is_cached = self._is_cached
        self.tun: Tun | None = None
        self.routes: KernelRouting | None = None
        self.receivers: list[socket.socket] = []
        self.control_sockets: dict[int, list[socket.socket]] = {}
        self.sender: Sender | None = None
        self.fast: CompiledPath | None = None  # the compiled fast path, when it runs
        # RTR with the compiled path: records to issue again after NAT binding changes.
        self._record_refresh: RecordRefresh | None = None
        self._refresh_handle: asyncio.TimerHandle | None = None
        self.workers: WorkerSet | None = None  # its other engines' processes (workers > 1)
        self.worker_sockets: list[socket.socket] = []  # their 4341 sockets (we keep them open)
        self.api: ControlServer | None = None
        self.metrics: MetricsServer | None = None
        self._timer: asyncio.Handle | None = None  # a TimerHandle, or a Handle (see _arm_timer)
        self._status_handle: asyncio.TimerHandle | None = None
        self.loop_lag = LoopLag(LAG_INTERVAL)
        self._lag_handle: asyncio.TimerHandle | None = None
        self._lag_due = 0.0  # time.monotonic() when the lag tick should run
        self._binding_log = TokenBucket(BINDING_LOG_RATE, BINDING_LOG_BURST)
        self._bindings_unlogged = 0
        self._watchdog: float | None = None  # seconds between WATCHDOG=1, when systemd asks
        self._last_status = ""
        self._stop = asyncio.Event()
        # ITRs that recently encapsulated to us: outer source -> the start of a payload of
        # theirs (for SMRs), at most MAX_RECENT_ITRS per window.
        self._recent_itrs: dict[str, bytes] = {}
        self._older_itrs: dict[str, bytes] = {}
        self._itrs_rotated = clock()

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the TUN, sockets, routes and control socket, then tell systemd we are ready."""
        loop = asyncio.get_running_loop()
        cfg = self.config
        fast = self._use_compiled()
        engines = self._engine_count() if fast else 1
        rloc_keys = {addr: ("underlay", "rlocs", i) for i, addr in enumerate(cfg.underlay.rlocs)}
        # First what another lispd would hold (its control socket, its 4342 sockets, its TUN),
        # so that a second instance stops before it touches anything of the first's.
        if cfg.daemon.control_socket:
            path = cfg.daemon.control_socket
            with opening(cfg, ("daemon", "control-socket"), path, "the control socket"):
                who = await asyncio.to_thread(probe_control_socket, path)
                if who is not None:
                    raise OSError(errno.EADDRINUSE, f"{who} is serving {path}")
        control_sockets = []
        for addr in cfg.underlay.rlocs:
            port = f"UDP {LISP_CONTROL_PORT} on the RLOC"
            with opening(cfg, rloc_keys[addr], addr, port, holder=(addr, LISP_CONTROL_PORT)):
                sock = open_control_socket(addr, LISP_CONTROL_PORT)
            self.control_sockets.setdefault(addr.version, []).append(sock)
            control_sockets.append(sock)
        if cfg.daemon.roles & TUN_ROLES:
            with opening(cfg, ("tun", "name"), cfg.tun.name, "the TUN device"):
                if held_by_another_process(cfg.tun.name):
                    raise OSError(
                        errno.EBUSY, f"TUN device {cfg.tun.name} is held by another process"
                    )
                self.tun = Tun(
                    cfg.tun.name,
                    cfg.tun.mtu,
                    prepare=prepare_tun_interface,
                    vnet=fast and cfg.dataplane.offloads,
                    queues=engines,
                )
            engines = 1 + len(self.tun.queue_fds)  # one, on a single-queue persistent device
            tun = cfg.tun
            policy = RoutingPolicy(tun.route_table, tun.rule_priority, tun.route_protocol)
            with opening(cfg, ("tun", "route-table"), policy.table, "lispd's routes and rules"):
                self.routes = KernelRouting(
                    self.tun.name,
                    policy,
                    itr="itr" in cfg.daemon.roles,
                    pitr="pitr" in cfg.daemon.roles,
                )
                self.routes.set_local_prefixes(e.prefix for e in self.database.entries())
                for entry in self.mapcache.entries():
                    self.routes.add(entry.prefix)
            loop.add_reader(self.tun.fd, self._on_tun_readable)
        if cfg.daemon.roles & DATA_ROLES:
            data_sockets: dict[int, socket.socket] = {}
            worker_receive: list[dict[int, socket.socket]] = [{} for _ in range(engines - 1)]
            pools: dict[int, list[socket.socket]] = {}
            for addr in cfg.underlay.rlocs:
                port = f"UDP {LISP_DATA_PORT} on the RLOC"
                with opening(cfg, rloc_keys[addr], addr, port, holder=(addr, LISP_DATA_PORT)):
                    if engines > 1:  # nobody else's group to join by mistake
                        claim_port(addr, LISP_DATA_PORT)
                    sock = open_receive_socket(addr, LISP_DATA_PORT, shared=engines > 1)
                    self.receivers.append(sock)
                    for receive in worker_receive:
                        receive[addr.version] = open_receive_socket(
                            addr, LISP_DATA_PORT, shared=True
                        )
                        self.worker_sockets.append(receive[addr.version])
                    pools[addr.version] = open_send_pool(addr, SEND_POOL_SIZE)
                data_sockets[addr.version] = sock
                loop.add_reader(sock.fileno(), self._on_udp_readable, sock)
            self.sender = Sender(pools, data_sockets)
            if fast:
                self._start_compiled(data_sockets, worker_receive)
            for addr in cfg.underlay.rlocs:  # LISP-Trace: error returns, NATed ltr clients
                port = f"UDP {TRACE_PORT} (LISP-Trace) on the RLOC"
                with opening(cfg, rloc_keys[addr], addr, port, holder=(addr, TRACE_PORT)):
                    sock = open_control_socket(addr, TRACE_PORT)
                self.trace_sockets[addr.version] = sock
                loop.add_reader(sock.fileno(), self._on_trace_readable, sock)
        for sock in control_sockets:  # opened first, read from now on
            loop.add_reader(sock.fileno(), self._on_control_readable, sock)
        if cfg.daemon.control_socket:
            path = cfg.daemon.control_socket
            with opening(cfg, ("daemon", "control-socket"), path, "the control socket"):
                self.api = ControlServer(path, self._handlers())
                await self.api.start()
        if cfg.metrics is not None:
            listen = f"{cfg.metrics.address}:{cfg.metrics.port}"
            with opening(cfg, ("metrics", "listen"), listen, "the metrics listener"):
                self.metrics = MetricsServer(
                    str(cfg.metrics.address), cfg.metrics.port, self._metrics, refresh=self._refresh
                )
                await self.metrics.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)  # its answer goes to the log
        if self.control.prober is not None:
            now = self.clock()
            for petr in cfg.petrs:
                self._send_control(self.control.prober.watch(petr.address, None, now))
            for entry in self.mapcache.entries():
                self._watch_rlocs(entry)
        if self.workers is not None and not await self.workers.ready():
            log.warning("fast-path workers not ready yet: their flows wait in their queues")
        self._on_timer()  # first registrations go out now
        summary = self._status_line()
        log.info("lispd ready %s %s", kv(version=__version__), summary)
        sd_notify(f"READY=1\nSTATUS={summary}")
        self._last_status = summary
        self._watchdog = watchdog_interval()
        if self._watchdog is not None:
            log.info("systemd watchdog %s", kv(ping_interval=round(self._watchdog, 1)))
        self._status_handle = loop.call_later(self._tick_interval(), self._status_tick)
        self._lag_tick(first=True)

    def _lag_tick(self, first: bool = False) -> None:
        """Note how late this tick runs (``stats`` -> ``loop``: the loop's stalls, see
        :class:`LoopLag`), and arm the next one ``LAG_INTERVAL`` seconds ahead."""
        now = time.monotonic()
        if not first:
            self.loop_lag.note(now - self._lag_due, now)
        self._lag_due = now + LAG_INTERVAL
        self._lag_handle = asyncio.get_running_loop().call_later(LAG_INTERVAL, self._lag_tick)

    def _use_compiled(self) -> bool:
        """Whether the compiled fast path runs (``[dataplane] fastpath``); refuses to start
        when it is asked for and was not built."""
        wanted = self.config.dataplane.fastpath
        if not self.config.daemon.roles & DATA_ROLES or wanted == "python":
            return False
        if wanted == "compiled" and not compiled.available():
            raise OSError(
                'dataplane.fastpath is "compiled" but lispd was built without it '
                '(lispd.fastpath._accel is missing: install with a C compiler, or use "auto")'
            )
        return compiled.available()

    def _engine_count(self) -> int:
        """``[dataplane] workers``: engines forwarding in parallel (0: one per usable core)."""
        wanted = self.config.dataplane.workers
        return wanted if wanted > 0 else max(1, len(os.sched_getaffinity(0)))

    def _start_compiled(
        self,
        data_sockets: dict[int, socket.socket],
        worker_receive: list[dict[int, socket.socket]],
    ) -> None:
        """Hand the TUN and the data sockets to the compiled engine, load its tables, keep
        them current from the map-cache, and start the workers (one per further TUN queue and
        set of 4341 sockets in ``worker_receive``)."""
        cfg, itr, sender = self.config, self.itr, self.sender
        assert sender is not None
        fast = CompiledPath(
            roles=cfg.daemon.roles,
            mtu=cfg.underlay.mtu,
            tun_fd=self.tun.fd if self.tun is not None else -1,
            offloads=cfg.dataplane.offloads,
            families=itr.families if itr is not None else (),
            own_rlocs=itr.own_rlocs if itr is not None else (),
            nat_port=itr.nat_port if itr is not None else None,
        )
        if cfg.dataplane.offloads:
            enable_offloads(sender.pools, data_sockets)
            for receive in worker_receive:
                enable_offloads({}, receive)
        fast.use_sockets(sender.pools, data_sockets)
        fast.load_database(self.database)
        fast.load_map_cache(self.mapcache)
        self.mapcache.listener = fast.on_map_cache
        if self.nat_bindings is not None:
            self._record_refresh = RecordRefresh(fast, self.mapcache)
        self.fast = fast
        if worker_receive:
            queues = self.tun.queue_fds if self.tun is not None else []
            slots = [
                WorkerSlot(
                    index=i + 1,
                    tun_fd=queues[i] if queues else -1,
                    receive={v: s.fileno() for v, s in receive.items()},
                )
                for i, receive in enumerate(worker_receive)
            ]
            self.workers = WorkerSet(
                slots,
                engine=fast.engine_options,
                pools={v: [s.fileno() for s in pool] for v, pool in sender.pools.items()},
                seed=fast.seed_operations,
                on_tun=self._tun_packet,
                on_udp=self._data_packet,
                on_bad_report=lambda: self._drop("worker-bad-report"),
            )
            fast.attach_workers(self.workers)
            self.workers.start()
        engines = 1 + len(worker_receive)
        log.info("fast path compiled %s", kv(offloads=cfg.dataplane.offloads, engines=engines))

    def _tick_interval(self) -> float:
        return min(self._watchdog or STATUS_INTERVAL, STATUS_INTERVAL)

    def _status_tick(self) -> None:
        """Tell systemd we are alive (``WATCHDOG=1``, when it asked: a stalled loop misses it
        and gets restarted) and, when it changed, what we are doing (``STATUS=``)."""
        status = self._status_line()
        lines = ["WATCHDOG=1"] if self._watchdog is not None else []
        if status != self._last_status:
            lines.append(f"STATUS={status}")
            self._last_status = status
        if lines:
            sd_notify("\n".join(lines))
        loop = asyncio.get_running_loop()
        self._status_handle = loop.call_later(self._tick_interval(), self._status_tick)

    def _status_line(self) -> str:
        """One line for ``systemctl status``: roles, table sizes, registrations, traffic."""
        stats = self._stats()
        packets, drops = stats["packets"], stats["drops"]
        parts = [
            f"roles={','.join(sorted(self.config.daemon.roles))}",
            f"map-cache={len(self.mapcache)}",
            f"database={len(self.database)}",
        ]
        registrar = self.control.registrar
        if registrar is not None:
            status = registrar.status(self.clock())
            acked = sum(1 for s in status if s["acknowledged"])
            parts.append(f"registered={acked}/{len(status)}")
        if self.control.map_server is not None:
            parts.append(f"site-registrations={len(self.control.map_server.registrations())}")
        if self.nat_bindings is not None:
            parts.append(f"nat-bindings={len(self.nat_bindings)}")
        # Every role's share, counted once each: ITR + PITR, ETR + PETR.
        encap = packets.get("itr.encap.packets", 0) + packets.get("pitr.encap.packets", 0)
        decap = packets.get("etr.decap.packets", 0) + packets.get("petr.decap.packets", 0)
        parts.append(f"encap={encap} decap={decap}")
        parts.append(f"drops={sum(drops.values())}")
        return " ".join(parts)

    def stop(self) -> None:
        """Ask the daemon to shut down (signal handlers call this)."""
        if self.workers is not None:
            self.workers.stopping()
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
        if self._status_handle is not None:
            self._status_handle.cancel()
        if self._refresh_handle is not None:
            self._refresh_handle.cancel()
            self._refresh_handle = None
        if self._lag_handle is not None:
            self._lag_handle.cancel()
            self._lag_handle = None
        if self.api is not None:
            await self.api.close()
        if self.metrics is not None:
            await self.metrics.close()
        if self.workers is not None:
            await self.workers.close()
            self.workers = None
        for sock in self.worker_sockets:
            sock.close()
        self.worker_sockets = []
        sockets = self.receivers + [s for group in self.control_sockets.values() for s in group]
        sockets += list(self.trace_sockets.values())
        self.trace_sockets = {}
        for sock in sockets:
            loop.remove_reader(sock.fileno())
            sock.close()
        self.receivers, self.control_sockets = [], {}
        if self.sender is not None:
            self.sender.close()
        if self.routes is not None:
            self.routes.close()
            self.routes = None
        if self.tun is not None:
            loop.remove_reader(self.tun.fd)
            self.tun.close()
            self.tun = None
        self.mapcache.listener = None
        if self.fast is not None:
            self.fast.close()  # the engine's own copies of the TUN and the sockets
        self.fast = None
        self._record_refresh = None

    def reload(self) -> dict[str, Any]:
        """SIGHUP / ``lispctl reload``: read the configuration file again.

        A file that does not validate changes nothing: the error is logged and returned.  A
        valid one is applied at once (database-mappings re-registered or withdrawn, Map-Servers
        and their keys, Map-Resolvers, PETRs, static map-cache entries, sites, timers, log
        level) without touching the TUN, the sockets or unaffected map-cache entries; settings
        only a restart can change are kept as they run and reported."""
        try:
            new = load_config(self.config.path)
        except (ConfigError, OSError) as exc:
            log.error("reload refused, configuration unchanged %s", kv(error=exc))
            return {"reloaded": False, "error": str(exc)}
        plan = plan_reload(self.config, new)
        self._reconfigure(plan.effective)
        if plan.restart_needed:
            log.warning("reload needs a restart %s", kv(settings=list(plan.restart_needed)))
        log.info("reload done %s", kv(changed=list(plan.applied)))
        return {
            "reloaded": True,
            "applied": list(plan.applied),
            "restart-needed": list(plan.restart_needed),
            "database-changed": "database-mapping" in plan.applied,
        }

    def _reconfigure(self, new: Config) -> None:
        """Move the running node from ``self.config`` to ``new`` (already stripped of what needs
        a restart)."""
        old, now = self.config, self.clock()
        self.config = new
        if new.daemon.log_level != old.daemon.log_level and not self.fixed_log_level:
            logging.getLogger().setLevel(new.daemon.logging_level)
        self.tracer.node_name = new.daemon.name
        if new.database != old.database or new.registration != old.registration:
            self._apply_database(new)
        fresh = build_control_plane(
            new, self.database, control_nonce
        )
        had_prober = self.control.prober is not None
        self._send_control(
            update_control_plane(
                self.control, fresh, now, registrar_targets=not new.nat_traversal.enabled
            )
        )
        if new.map_cache != old.map_cache:
            self._apply_static_map_cache(old, new, now)
        if self.itr is not None and new.petrs != old.petrs:
            up = {p.address: p.up for p in self.itr.petrs}
            self.itr.petrs = tuple(
                replace(p, up=up.get(p.address, True)) for p in rloc_entries(new.petrs)
            )
        prober = self.control.prober
        if prober is not None:
            for petr in new.petrs:
                if petr.address not in prober.watched:
                    self._send_control(prober.watch(petr.address, None, now))
            if not had_prober:
                for entry in self.mapcache.entries():
                    self._watch_rlocs(entry)
        self._unwatch_unused()
        if self.nat_bindings is not None:
            self.nat_bindings.timeout = new.rtr.nat_binding_timeout
            self.nat_bindings.max_entries = new.rtr.max_nat_bindings
        # Run the machines now: a Map-Server added where there was none registers at once.
        if self._timer is not None:
            self._timer.cancel()
        self._on_timer()

    def _apply_static_map_cache(self, old: Config, new: Config, now: float) -> None:
        """Static map-cache entries added, changed or removed by a reload; learned entries and
        the unchanged static ones stay as they are (with their probe state)."""
        before = {(m.instance_id, m.prefix): m for m in old.map_cache}
        after = {(m.instance_id, m.prefix): m for m in new.map_cache}
        table, _ = build_tables(new, now)
        for key in before.keys() - after.keys():
            if self.mapcache.get(*key) is not None:
                self.mapcache.remove(*key)
            log.info("map-cache static removed %s", kv(iid=key[0], prefix=key[1]))
            if self.routes is not None and all(p != key[1] for _i, p in after):
                self.routes.remove(key[1])
        for key, mapping in after.items():
            if before.get(key) == mapping:
                continue
            entry = self._with_probe_state(table.get(*key))  # type: ignore[arg-type]
            self.mapcache.add(entry)
            self._watch_rlocs(entry)
            if self.routes is not None:
                self.routes.add(entry.prefix)
            log.info("map-cache static set %s", kv(iid=key[0], prefix=key[1], action=entry.action))

    def _apply_database(self, new: Config) -> None:
        database = build_database(new)
        old_entries = {(e.iid, e.prefix): e for e in self.database.entries()}
        for entry in list(self.database.entries()):
            self.database.remove(entry.iid, entry.prefix)
        for entry in database.entries():
            self.database.add(entry)
        if self.fast is not None:
            self.fast.load_database(self.database)
        if self.routes is not None:
            self.routes.set_local_prefixes(e.prefix for e in self.database.entries())
        changed = [e for e in self.database.entries() if old_entries.get((e.iid, e.prefix)) != e]
        removed = [e for key, e in old_entries.items() if self.database.get(*key) is None]
        for entry in changed:
            log.info("database set %s", kv(iid=entry.iid, prefix=entry.prefix))
        for entry in removed:
            log.info("database removed %s", kv(iid=entry.iid, prefix=entry.prefix))
        ttl = new.registration.record_ttl
        now = self.clock()
        sends: list[SendControl] = []
        registrar = self.control.registrar
        if registrar is not None:
            sends += registrar.update_records(self._registration_records(ttl), now)
            rlocs = tuple(self.config.underlay.rlocs)
            sends += registrar.deregister(database_records(removed, rlocs, ttl), now)
        changed += removed
        if self.control.smr is not None and changed:
            sends += self._solicit(changed, ttl, now)
        self._send_control(sends)
        self._arm_timer()

    def _solicit(self, changed: list[DatabaseEntry], ttl: int, now: float) -> list[SendControl]:
        smr = self.control.smr
        assert smr is not None
        for rloc, payload in {**self._older_itrs, **self._recent_itrs}.items():
            header = read_header(payload)
            inner = payload[HEADER_LEN:]
            if header is None or len(inner) < 20:
                continue
            src = inner[12:16] if inner[0] >> 4 == 4 else inner[8:24]
            smr.saw_traffic(rloc, src, header[0], now)
        records = database_records(changed, tuple(self.config.underlay.rlocs), ttl)
        return smr.solicit(records, now)

    # --- packet path --------------------------------------------------------------------------

    def _drop(self, reason: str, source: str = "", port: int | None = None) -> None:
        self.counters.drop(reason)
        self.drop_log.note(reason, source, port)

    def _on_tun_readable(self) -> None:
        tun = self.tun
        assert tun is not None
        if self.fast is not None:
            try:
                self.fast.from_tun(self._tun_packet)  # we get what it leaves to Python
            except Exception:  # the TUN read failed (handlers guard themselves)
                self._internal_error("tun")
            return
        for pkt in tun.read_batch(BATCH):
            self._tun_packet(pkt)

    def _tun_packet(self, pkt: bytes) -> None:
        try:
            self._itr_packet(pkt)
        except Exception:  # a bug must cost one packet, never the daemon
            self._internal_error("tun")

    def _itr_packet(self, pkt: bytes, held: bool = False, iid: int | None = None) -> None:
        itr, sender, counters = self.itr, self.sender, self.counters
        if itr is None or sender is None:
            self._drop("itr-disabled")
            return
        traced = is_trace(pkt)
        if held and traced and not self.tracer.release(pkt):
            self._drop("trace-answered")  # it waited too long and was answered map-cache miss
            return
        out = itr.handle(pkt, iid, self.tun is None)  # no TUN (an RTR): no ICMP to send
        if type(out) is Encap:
            if traced:
                role = self._trace_role(pkt)
                if out.to_petr:  # not an EID: the trace ends here, as in lispers.net
                    self._trace_failure(pkt, iid, role, "native-forward")
                    return
                out = self.tracer.encap(out, role)
            if self._send_encap(out):
                counters.count("pitr.encap" if out.pitr else "itr.encap", len(pkt))
            else:
                self._drop("send-failed")
        elif type(out) is Miss:
            if held:
                self._drop("resolved-without-mapping")
                if traced:
                    self._trace_failure(pkt, out.iid, self._trace_role(pkt), "map-cache-miss")
            elif traced:
                self._hold_trace(out, pkt, self._trace_role(pkt))
            else:
                self._on_miss(out, pkt)
        elif type(out) is ToTun:
            if self.tun is None or not self.tun.write(out.packet):
                self._drop("tun-write-failed")
        else:
            reason = out.reason  # type: ignore[union-attr]
            self._drop(reason, "tun")
            if traced:
                self._trace_failure(pkt, iid, self._trace_role(pkt), reason)

    def _trace_role(self, pkt: bytes) -> str:
        """ITR for a packet from one of our EIDs (or as a PITR), RTR for one passing through."""
        itr = self.itr
        if itr is None or itr.proxy:
            return "ITR"
        src = pkt[12:16] if pkt[0] >> 4 == 4 else pkt[8:24]
        return "ITR" if itr.instance_for_source(src) is not None else "RTR"

    def _trace_failure(self, inner: bytes, iid: int | None, role: str, reason: str) -> None:
        """A trace we cannot forward goes back to the ltr client with our record and why."""
        if iid is None and self.itr is not None:
            src = inner[12:16] if inner[0] >> 4 == 4 else inner[8:24]
            iid = self.itr.instance_for_source(src)
        if self.rtr is not None:
            # A client behind a NAT announced itself to our port 2434 before it sent the
            # trace, but the loop may have woken for the trace first: learn where the NAT put
            # it now, or the answer would go to its private address and be lost.
            for sock in self.trace_sockets.values():
                self._on_trace_readable(sock)
        back = self.tracer.failure(inner, iid or 0, role, reason)
        if back is None:
            self._drop("trace-no-return-address")
            return
        payload, address, port = back
        trace_sock = self.trace_sockets.get(address.version)
        if trace_sock is None:
            self._drop("trace-no-socket-for-family")
            return
        try:
            trace_sock.sendto(payload, (str(address), port))
            self.counters.count("trace.returned", len(payload))
        except OSError as exc:
            self._drop("trace-send-failed", f"{address}:{port} {exc.strerror}")

    def _on_trace_readable(self, sock: socket.socket) -> None:
        """Port 2434: an RTR learns where NATed ltr clients are; nothing else is expected."""
        for payload, _ttl, _tos, src, sport in recv_batch(sock, BATCH):
            try:
                if self.rtr is not None and self.tracer.learn_client(payload, src, sport):
                    self.counters.count("trace.nat-client", len(payload))
                else:
                    self._drop("trace-unexpected", src, sport)
            except Exception:  # a bug must cost one packet, never the daemon
                self._internal_error(f"{src}:{sport}")

    def _probe_history(self, rloc: Any) -> tuple[list[float], list[str]] | None:
        prober = self.control.prober
        if prober is None:
            return None
        try:
            state = prober.state(rloc)  # a dict look-up (``watched`` would copy them all)
        except KeyError:
            return None  # not probed
        return list(state.rtts), list(state.hops)

    def _send_encap(self, out: Encap) -> bool:
        sender = self.sender
        assert sender is not None
        if out.data_port:
            return sender.send_from_data_port(out.payload, out.rloc, out.port, out.ttl, out.tos)
        return sender.send(out.payload, out.rloc, out.port, out.flow_hash, out.ttl, out.tos)

    def _on_miss(self, miss: Miss, pkt: bytes) -> None:
        resolver = self.control.resolver
        if resolver is None:
            self._drop("map-cache-miss", "tun")
            return
        now = self.clock()
        dst = ip_address(miss.dst)
        self._send_control(resolver.resolve(miss.iid, dst, ip_address(miss.src), now))
        if resolver.hold(miss.iid, dst, pkt, now):
            self.counters.count("itr.held", len(pkt))
        else:
            self._drop("resolve-queue-full", "tun")
        self._arm_timer()

    def _hold_trace(self, miss: Miss, inner: bytes, role: str) -> None:
        """A trace whose destination has no mapping yet: resolve it and hold the trace like a
        data packet, so that the first trace to a destination follows the mapping when it
        comes (or ends where the mapping says, "not an EID"), but for at most
        ``tracing.TRACE_HOLD`` seconds: then :meth:`_on_timer` answers it ``? (map-cache
        miss)``.  Without a resolver or room to hold it, it is answered so at once."""
        resolver = self.control.resolver
        if resolver is not None:
            now = self.clock()
            dst = ip_address(miss.dst)
            self._send_control(resolver.resolve(miss.iid, dst, ip_address(miss.src), now))
            if self.tracer.hold(inner, miss.iid, role, now):
                if resolver.hold(miss.iid, dst, inner, now):
                    self.counters.count("trace.held", len(inner))
                    self._arm_timer()
                    return
                self.tracer.release(inner)  # not held after all
            self._arm_timer()
        self._trace_failure(inner, miss.iid, role, "map-cache-miss")

    def _is_cached(self, iid: int, eid: Any) -> bool:
        entry = self.mapcache.lookup(iid, eid)
        return entry is not None and entry.source != "static"

    def _on_udp_readable(self, sock: socket.socket) -> None:
        if self.fast is not None:
            try:
                self.fast.from_udp(sock, self._data_packet)  # we get what it leaves to Python
            except Exception:  # the receive failed (handlers guard themselves)
                self._internal_error("udp")
            return
        for payload, ttl, tos, src, sport in recv_batch(sock, BATCH):
            self._data_packet(payload, ttl, tos, src, sport)

    def _data_packet(self, payload: bytes, ttl: int, tos: int, src: str, sport: int) -> None:
        """One datagram from a 4341 socket: a data-plane control message, or data for the
        ETR or RTR."""
        handle = self._rtr_packet if self.rtr is not None else self._etr_packet
        try:
            if (
                len(payload) > HEADER_LEN
                and payload[4] == 0xFF  # instance-ID 0xFFFFFF (with the I bit): control
                and payload[5] == 0xFF
                and payload[6] == 0xFF
                and payload[0] & 0x08
            ):
                self._data_control(payload, ttl, src, sport)  # instance-ID 0xFFFFFF
            else:
                handle(payload, ttl, tos, src, sport)
        except Exception:  # a bug must cost one packet, never the daemon
            self._internal_error(f"{src}:{sport}")

    def _internal_error(self, source: str) -> None:
        self.counters.drop("internal-error")
        if self.drop_log.allow("log:internal-error"):
            log.exception("internal error handling a packet %s", kv(source=source))

    def _etr_packet(self, payload: bytes, ttl: int, tos: int, src: str, sport: int) -> None:
        etr, tun = self.etr, self.tun
        if etr is None or tun is None:
            self._drop("etr-disabled", src, sport)
            return
        out = etr.handle(payload, ttl, tos)
        if type(out) is ToTun:
            recent = self._recent_itrs
            if src not in recent and len(recent) < MAX_RECENT_ITRS:
                recent[src] = payload[:SMR_SAMPLE]  # not the whole packet, per source
            packet = out.packet
            decap = "petr.decap" if out.petr else "etr.decap"
            if is_trace(packet) and self._etr_trace(bytes(packet), payload, src, sport, decap):
                return
            if tun.write(packet):
                self.counters.count(decap, len(packet))
            else:
                self._drop("tun-write-failed")
        else:
            self._drop(out.reason, src, sport)  # type: ignore[union-attr]

    def _etr_trace(
        self, inner: bytes, payload: bytes, src: str, sport: int, decap: str = "etr.decap"
    ) -> bool:
        """Stamp the ETR's decap record; at the traced EID's site turn the trace around and
        send it back through our ITR.  True when the packet was consumed here; one written
        to the TUN is counted under ``decap`` (``petr.decap`` for a PETR's)."""
        iid = read_header(payload)[0]  # type: ignore[index]
        stamped = self.tracer.decap(inner, iid, "ETR", src, sport)
        back = trace.turn_around_packet(stamped, iid=iid)
        self.counters.count("trace.etr", len(inner))
        if back is None:
            if self.tun is not None and self.tun.write(stamped):
                self.counters.count(decap, len(stamped))
            return True
        self._itr_packet(back, iid=iid)
        return True

    def _rtr_packet(self, payload: bytes, ttl: int, tos: int, src: str, sport: int) -> None:
        """The data port of a node with the RTR role: packets for our own EIDs (when also an
        ETR) are decapsulated to the TUN, every other one re-encapsulated; NAT keepalives
        from xTRs behind NAT teach us their translated address and port."""
        rtr = self.rtr
        assert rtr is not None
        header = read_header(payload)
        if self.etr is not None and header is not None:
            dst = inner_destination(memoryview(payload)[HEADER_LEN:])  # no copy of the packet
            if dst is not None and self.database.contains(header[0], dst):
                self._etr_packet(payload, ttl, tos, src, sport)
                return
        traced = header is not None and is_trace(payload, HEADER_LEN)
        if traced:
            iid = header[0]  # type: ignore[index]
            stamped = self.tracer.decap(payload[HEADER_LEN:], iid, "RTR", src, sport)
            payload = payload[:HEADER_LEN] + stamped
        out = rtr.handle(payload, ttl, tos)
        if type(out) is Encap:
            if traced:
                if out.to_petr:  # not an EID: the trace ends here, as in lispers.net
                    inner = payload[HEADER_LEN:]
                    self._trace_failure(inner, header[0], "RTR", "native-forward")  # type: ignore[index]
                    return
                out = self.tracer.encap(out, "RTR")
            if self._send_encap(out):
                self.counters.count("rtr.reencap", len(out.payload))
            else:
                self._drop("send-failed")
        elif type(out) is Miss:
            if traced:  # held like data; answered map-cache miss if it waits too long
                self._hold_trace(out, out.packet, "RTR")
            else:
                self._on_miss(out, out.packet)
        else:
            reason = "rtr-" + out.reason  # type: ignore[union-attr]
            self._drop(reason, src, sport)
            if traced:
                self._trace_failure(payload[HEADER_LEN:], header[0], "RTR", reason)  # type: ignore[index]

    def _data_control(self, payload: bytes, ttl: int, src: str, sport: int) -> None:
        """A control message in the data path (instance-ID 0xFFFFFF), the way through NATs:
        an RTR takes NAT keepalives (Info-Requests) from xTRs behind NAT; RLOC probes between
        RTRs and NATed xTRs, and their answers, travel this way too."""
        body = payload[HEADER_LEN:]
        now = self.clock()
        try:
            msg = decode_control(body)
        except WireError as exc:
            self._drop("data-control-" + exc.reason, src, sport)
            self.control.messages.malformed(body, exc, src, sport, now, path="data")
            return
        self.control.messages.received(msg, src, sport, now, path="data")
        address = ip_address(src)
        if isinstance(msg, InfoMessage) and not msg.reply and self.nat_bindings is not None:
            if not sport:  # no binding to port 0: nothing could be sent back there
                self._drop("nat-keepalive-port-zero", src, sport)
                return
            changed = self.nat_bindings.learn(address, sport, now)
            if changed:
                if address in changed:
                    self._log_binding("nat binding", now, rloc=address, port=sport)
                    self.counters.count("rtr.nat-binding-change", len(payload))
                self._nat_bindings_changed(changed)
                self._arm_timer()
            self.counters.count("rtr.nat-keepalive", len(payload))
        elif isinstance(msg, MapRequest) and msg.probe and self.control.replier is not None:
            for send in self.control.replier.on_map_request(msg, sport, address, now, ttl):
                self._send_data_control(send.payload, address, sport)
        elif isinstance(msg, MapReply) and msg.probe:
            self._apply(self.control.on_datagram(body, src, sport, now, ttl, path=None))
        else:
            self._drop("data-control-unexpected", src, sport)

    def _send_data_control(self, message: bytes, dst: Any, port: int) -> None:
        """Send a control message from our 4341 socket inside a data header (IID 0xFFFFFF)."""
        sock = self.sender.data_sockets.get(dst.version) if self.sender else None
        if sock is None:
            self._drop("data-control-no-socket")
            return
        try:
            sock.sendto(
                build_header(self.data_nonces.getrandbits(24), IID_CONTROL) + message,
                (str(dst), port),
            )
            self.counters.count("data-control.sent", len(message))
            self.control.messages.sent(message, dst, port, self.clock(), path="data")
        except OSError as exc:
            self._drop("control-send-failed", f"{dst}:{port} {exc.strerror}")

    def _probe_port_through_nat(self, send: SendControl) -> int | None:
        """The data port to send an RLOC probe to when it must cross a NAT: to a NATed xTR
        (its translated port, learned by us as RTR) or, from behind a NAT, to our RTRs."""
        payload = send.payload
        if not payload or payload[0] >> 4 != 1 or not payload[0] & 0x02:
            return None  # not a Map-Request with the probe bit
        if self.nat_bindings is not None:
            port = self.nat_bindings.port_for(send.dst)
            if port is not None:
                return port
        itr = self.itr
        if (
            itr is not None
            and itr.rtrs is not None
            and any(r.address == send.dst for r in itr.rtrs)
        ):
            return LISP_DATA_PORT
        return None

    # --- control plane ------------------------------------------------------------------------

    def _on_control_readable(self, sock: socket.socket) -> None:
        now = self.clock()
        for data, ttl, _tos, src, sport in recv_batch(sock, BATCH):
            try:
                self._apply(self.control.on_datagram(data, src, sport, now, ttl))
            except Exception:  # a bug must cost one message, never the daemon
                self._internal_error(f"{src}:{sport}")
        self._arm_timer()

    def _apply(self, result: ControlResult) -> None:
        for entry in result.installs:
            entry = self._with_probe_state(entry)
            self._make_room(entry)
            previous = self.mapcache.get(entry.iid, entry.prefix)  # for the log line
            self.mapcache.add(entry)
            self._watch_rlocs(entry)
            log_install(previous, entry)
        self._send_control(result.sends)
        for iid, pkt in result.released:
            self._itr_packet(pkt, held=True, iid=iid)
        if result.nat_status is not None:
            self._apply_nat_status(result.nat_status)
        if result.rloc_changes and self.itr is not None:
            state = {c.rloc: c.up for c in result.rloc_changes}  # logged by the prober
            self.itr.petrs = tuple(
                replace(p, up=state.get(p.address, p.up)) for p in self.itr.petrs
            )
            self._mark_rlocs(state)

    def _make_room(self, entry: MapCacheEntry) -> None:
        """A new learned entry in a map-cache holding ``limits.map-cache-entries`` learned ones
        replaces the one closest to its expiry."""
        if self.mapcache.get(entry.iid, entry.prefix) is not None:
            return  # a refresh
        learned = len(self.mapcache) - len(self.config.map_cache)
        if learned < self.config.limits.map_cache_entries:
            return
        victim = self.mapcache.evict_soonest()
        if victim is not None:
            self.counters.drop("map-cache-evicted")
            # Its RLOCs stay probed until the next expiry sweeps unused ones (a sweep is a pass
            # over the whole map-cache: too dear for every install of a flood).
            self.drop_log.note("map-cache-evicted", f"[{victim.iid}]{victim.prefix}")

    # --- RLOC probing of the map-cache ---------------------------------------------------------

    def _probing_map_cache(self) -> bool:
        # From behind a NAT probes cannot be answered (our RLOC is private): the RTRs carry
        # everything anyway.
        return (
            self.control.prober is not None
            and self.config.probing.map_cache
            and (self.itr is None or self.itr.rtrs is None)
        )

    def _with_probe_state(self, entry: MapCacheEntry) -> MapCacheEntry:
        """``entry`` with the RLOCs probing knows to be down marked so."""
        prober = self.control.prober
        if prober is None or not entry.rlocs:
            return entry
        rlocs = tuple(
            r if not r.up or prober.is_usable(r.address) else replace(r, up=False)
            for r in entry.rlocs
        )
        return entry if rlocs == entry.rlocs else replace(entry, rlocs=rlocs)

    def _watch_rlocs(self, entry: MapCacheEntry) -> None:
        """Start probing the RLOCs of a new map-cache entry (the first hop of a path)."""
        prober = self.control.prober
        if prober is None or not entry.rlocs or not self._probing_map_cache():
            return
        now = self.clock()
        sends: list[SendControl] = []
        for rloc in entry.rlocs:
            try:
                sends += prober.watch(rloc.address, (entry.iid, entry.prefix), now)
            except (ValueError, TypeError):
                continue  # a family we have no RLOC of: never used anyway
        self._send_control(sends)

    def _unwatch_unused(self) -> None:
        """Stop probing RLOCs no map-cache entry, PETR or (behind a NAT) RTR of ours refers to
        any more: one index look-up per watched RLOC, not a walk over the map-cache."""
        prober = self.control.prober
        if prober is None:
            return
        used: set[Any] = {p.address for p in self.config.petrs}
        if self.itr is not None and self.itr.rtrs is not None:
            used.update(r.address for r in self.itr.rtrs)  # behind a NAT: our RTRs
        for rloc in prober.watched:
            if rloc not in used and not self.mapcache.uses(rloc):
                prober.unwatch(rloc)

    def _mark_rlocs(self, state: dict[Any, bool]) -> None:
        """Probing says these RLOCs went up or down: the map-cache entries using them (found
        through the map-cache's RLOC index) follow, so the fast path fails over to the next
        priority (and back)."""
        affected = {
            (entry.iid, entry.prefix): entry
            for address in state
            for entry in self.mapcache.using(address)
        }  # the entries using these RLOCs (an index: not a walk over the map-cache)
        for entry in affected.values():
            rlocs = tuple(
                replace(r, up=state[r.address]) if r.address in state else r for r in entry.rlocs
            )
            self.mapcache.add(replace(entry, rlocs=rlocs))
        itr = self.itr
        if itr is not None and itr.rtrs is not None:
            itr.rtrs = tuple(replace(r, up=state.get(r.address, r.up)) for r in itr.rtrs)

    def _apply_nat_status(self, status: NatStatus) -> None:
        """NAT discovery changed what we know: behind a NAT, off-site traffic goes to the RTRs
        and we register the RTRs (and our translated RLOC) with proxy-reply set, since Map-
        Requests cannot reach us through the NAT; not behind one, we are a normal xTR."""
        self.nat_status = status  # logged by the NAT client
        behind = status.behind_nat and bool(status.rtrs)
        if self.itr is not None:
            self.itr.rtrs = tuple(RlocEntry(r, 1, 100) for r in status.rtrs) if behind else None
        if self.fast is not None:
            self.fast.set_punt_all(behind)
        prober = self.control.prober
        if prober is not None and behind:  # probed through the NAT, over the data port
            now = self.clock()
            for rtr in status.rtrs:
                try:
                    self._send_control(prober.watch(rtr, None, now))
                except (ValueError, TypeError):
                    continue
        registrar = self.control.registrar
        if registrar is None:
            return
        now = self.clock()
        targets = [
            MapServerTarget(ms.address, ms.key, ms.key_id, ms.proxy_reply or behind)
            for ms in self.config.map_servers
        ]
        # Register everywhere at once with the new records (and the proxy-reply flag).
        registrar.update_targets([], now)
        registrar.update_records(
            self._registration_records(self.config.registration.record_ttl), now
        )
        self._send_control(registrar.update_targets(targets, now))

    def _registration_records(self, ttl: int) -> list[EidRecord]:
        """The database as we register it (changed by NAT traversal when behind a NAT)."""
        records = database_records(self.database.entries(), tuple(self.config.underlay.rlocs), ttl)
        status = self.nat_status
        if status is not None and status.behind_nat and status.rtrs:
            records = [nat_record(r, status) for r in records]
        return records

    def _send_control(self, sends: list[SendControl] | list[SendControl | SendData]) -> None:
        for send in sends:
            if isinstance(send, SendData):
                sock = self.sender.data_sockets.get(send.dst.version) if self.sender else None
                if sock is None:
                    self._drop("data-control-no-socket")
                    continue
                try:
                    sock.sendto(send.payload, (str(send.dst), send.port))
                    self.counters.count("nat.keepalive-sent", len(send.payload))
                    self.control.messages.sent(
                        send.payload,
                        send.dst,
                        send.port,
                        self.clock(),
                        path="data",
                        offset=HEADER_LEN,
                    )
                except OSError as exc:
                    self._drop("control-send-failed", f"{send.dst}:{send.port} {exc.strerror}")
                continue
            port = self._probe_port_through_nat(send)
            if port is not None:
                self._send_data_control(send.payload, send.dst, port)
                continue
            socks = self.control_sockets.get(send.dst.version)
            if not socks:
                self._drop("control-no-socket-for-family")
                continue
            try:
                socks[0].sendto(send.payload, (str(send.dst), send.port))
                self.counters.count("control.sent", len(send.payload))
                self.control.messages.sent(send.payload, send.dst, send.port, self.clock())
            except OSError as exc:
                self._drop("control-send-failed", f"{send.dst}:{send.port} {exc.strerror}")

    def _on_timer(self) -> None:
        self._timer = None
        now = self.clock()
        self._apply(self.control.on_timer(now))
        for packet, iid, role in self.tracer.overdue(now):  # still no mapping: say so
            self._trace_failure(packet, iid, role, "map-cache-miss")
        expired = self.mapcache.expire(now)
        for entry in expired:
            log_removed(entry, "expired")
        if expired:
            self._unwatch_unused()
        if self.nat_bindings is not None:
            expired_bindings = self.nat_bindings.expire(now)
            for address in expired_bindings:
                self._log_binding("nat binding expired", now, rloc=address)
            if expired_bindings:
                self._nat_bindings_changed(expired_bindings)
        if now - self._itrs_rotated > SMR_MEMORY:
            self._older_itrs, self._recent_itrs = self._recent_itrs, {}
            self._itrs_rotated = now
            if self.fast is not None:
                self.fast.forget_sources()
        self._arm_timer()

    def _arm_timer(self) -> None:
        candidates = [
            self.control.next_deadline(),
            self.mapcache.next_expiry(),
            self.tracer.next_deadline(),
        ]
        if self.nat_bindings is not None:
            candidates.append(self.nat_bindings.next_deadline())
        deadlines = [d for d in candidates if d is not None]
        deadline = min(deadlines, default=self.clock() + SMR_MEMORY)
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

    # --- control socket -----------------------------------------------------------------------

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        def clear_map_cache(req: dict[str, Any]) -> dict[str, int]:
            """Remove learned entries (every one, or those of exactly ``prefix``, in every
            instance or in ``instance-id``); static entries come from the configuration and
            stay."""
            iid, prefix = req.get("instance-id"), req.get("prefix")
            if iid is not None and (type(iid) is not int or not 0 <= iid <= 0xFFFFFF):
                raise ValueError(f"instance-id must be an integer in 0..16777215, not {iid!r}")
            if prefix is not None and not isinstance(prefix, str):
                raise ValueError(f"prefix must be a string, not {prefix!r}")
            net = None if prefix is None else ip_network(prefix)  # ValueError when malformed
            cleared = [
                e
                for e in self.mapcache.entries()
                if e.source != "static"
                and (iid is None or e.iid == iid)
                and (net is None or e.prefix == net)
            ]
            for entry in cleared:
                self.mapcache.remove(entry.iid, entry.prefix)
                log_removed(entry, "cleared")
            if cleared:
                self._unwatch_unused()
            return {"cleared": len(cleared)}

        return {
            "version": lambda _req: {
                "version": __version__,
                "name": self.config.daemon.name,
                "fastpath": "compiled" if self.fast is not None else "python",
                "engines": 1 + (len(self.workers.slots) if self.workers is not None else 0),
                "worker-pids": self.workers.pids() if self.workers is not None else [],
            },
            "stats": self._stats_answer,
            "map-cache": lambda _req: [_entry_json(e) for e in self.mapcache.entries()],
            "database": lambda _req: [_entry_json(e) for e in self.database.entries()],
            "site": lambda _req: self._sites(),
            "rlocs": lambda _req: (
                self.control.prober.states(self.clock()) if self.control.prober else []
            ),
            "nat": lambda _req: self.control.nat.states() if self.control.nat else {},
            "rtr": lambda _req: (
                self.nat_bindings.states(self.clock()) if self.nat_bindings is not None else []
            ),
            "registrations": lambda _req: (
                self.control.registrar.status() if self.control.registrar else []
            ),
            "clear-map-cache": clear_map_cache,
            "reload": lambda _req: self.reload(),
        }

    def _stats(self) -> dict[str, Any]:
        """Every counter, the workers' as they last reported them (at most a second ago)."""
        snap = self.counters.snapshot()
        snap["drops"].update(self.control.counters())
        if self.nat_bindings is not None:
            snap["drops"].update(self.nat_bindings.drops)
        snap["loop"] = self.loop_lag.snapshot(time.monotonic())
        if self.fast is not None:
            merge_counts(snap, self.fast.counters())
            if self.workers is not None:
                snap["engines"] = self.fast.engine_packets()
            refresh = self._record_refresh
            if refresh is not None:
                snap["fastpath"]["records-reissued"] = refresh.issued
                snap["fastpath"]["records-reissue-pending"] = len(refresh)
        return snap

    async def _refresh(self) -> None:
        """Have every worker report its current counters (at most half a second)."""
        if self.workers is not None:
            await self.workers.refresh()

    def _stats_answer(self, _req: dict[str, Any]) -> Any:
        """``stats``: the counters, or with workers an awaitable of them once every worker
        has reported its current counts (the control server awaits it)."""
        if self.workers is None:
            return self._stats()

        async def fresh() -> dict[str, Any]:
            await self._refresh()
            return self._stats()

        return fresh()

    def _log_binding(self, event: str, now: float, **fields: Any) -> None:
        """A NAT binding line at INFO, at most :data:`BINDING_LOG_RATE` a second after a burst:
        keepalives are unauthenticated, and every spoofed source would make (and expire) a
        binding of its own.  The next line written counts those left out (``unlogged``)."""
        if not self._binding_log.take(now):
            self._bindings_unlogged += 1
            return
        if self._bindings_unlogged:
            fields["unlogged"], self._bindings_unlogged = self._bindings_unlogged, 0
        log.info("%s %s", event, kv(**fields))

    def _nat_bindings_changed(self, addresses: Iterable[Any]) -> None:
        """The NAT bindings of ``addresses`` are new, moved or gone.  The Python path reads
        the bindings per packet; the compiled records carry the translated ports, so the
        records of the map-cache entries using these addresses (only those) are issued again:
        now for the first slice, later for the rest (:class:`RecordRefresh`, bounded per loop
        turn and per second)."""
        refresh = self._record_refresh
        if refresh is None:
            return
        for address in addresses:
            refresh.mark(address)
        if self._refresh_handle is None:  # else a run is due soon anyway
            self._run_record_refresh()

    def _run_record_refresh(self) -> None:
        """One slice of :meth:`_nat_bindings_changed`'s work; the next one is scheduled."""
        self._refresh_handle = None
        refresh = self._record_refresh
        if refresh is None:
            return
        wait = refresh.run(self.clock())
        if wait is not None:
            loop = asyncio.get_running_loop()
            self._refresh_handle = loop.call_later(wait, self._run_record_refresh)

    def _metrics(self) -> MetricsSnapshot:
        """What ``GET /metrics`` shows: the data of the control socket's show commands."""
        control, ms, now = self.control, self.control.map_server, self.clock()
        return MetricsSnapshot(
            name=self.config.daemon.name,
            version=__version__,
            stats=self._stats(),
            map_cache_counts=self.mapcache.census(),
            pending=control.resolver.pending() if control.resolver else None,
            registrations=control.registrar.status(now) if control.registrar else None,
            rlocs=control.prober.states(now) if control.prober else None,
            nat_bindings=len(self.nat_bindings) if self.nat_bindings is not None else None,
            sites=[site.name for site in ms.sites] if ms else None,
            registered=[reg.site for reg in ms.registrations()] if ms else None,
            now=now,
        )

    def _sites(self) -> list[dict[str, Any]]:
        ms = self.control.map_server
        if ms is None:
            return []
        now = self.clock()
        out = []
        for reg in ms.registrations():
            out.append(
                {
                    "site": reg.site,
                    "instance-id": reg.iid,
                    "eid-prefix": str(reg.prefix),
                    "registered-by": f"{reg.registered_by}:{reg.registered_by_port}",
                    "last-registered-ago": round(now - reg.last_registered, 1),
                    "rlocs": [_address_text(loc.address) for loc in reg.record.locators],
                    "proxy-reply": reg.proxy_reply,
                }
            )
        return out


def _address_text(address: object) -> str:
    """A locator address for people: an Explicit Locator Path as its hops joined by "->"."""
    if isinstance(address, ElpAddress):
        return "->".join(str(hop.address) for hop in address.hops)
    return str(address)


def _entry_json(entry: MapCacheEntry | DatabaseEntry) -> dict[str, Any]:
    out: dict[str, Any] = {
        "instance-id": entry.iid,
        "eid-prefix": str(entry.prefix),
        "rlocs": [
            {
                "address": str(r.address),
                "priority": r.priority,
                "weight": r.weight,
                "up": r.up,
                **({"elp": [str(hop) for hop in r.elp]} if r.elp else {}),
            }
            for r in entry.rlocs
        ],
    }
    if isinstance(entry, MapCacheEntry):
        out["action"] = entry.action
        out["source"] = entry.source
        out["ttl"] = entry.ttl
    return out


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
