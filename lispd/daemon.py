"""The daemon: wires the configuration to the roles and the roles to the operating system.

One asyncio loop (uvloop when installed).  The TUN device and the UDP 4341 sockets are drained in
batches (read until EAGAIN, bounded per wake-up so that no source starves the others); each
packet goes through the role logic (:mod:`lispd.dataplane`), whose output is sent, written to
the TUN, or counted as a drop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from lispd import __version__
from lispd.api.server import ControlServer
from lispd.config import Config
from lispd.dataplane.etr import Etr
from lispd.dataplane.itr import Itr
from lispd.dataplane.outputs import Encap, ToTun
from lispd.io.notify import sd_notify
from lispd.io.routes import RouteTable
from lispd.io.sysctl import prepare_tun_interface
from lispd.io.tun import Tun
from lispd.io.udp import Sender, open_receive_socket, open_send_pool, recv_batch
from lispd.mapcache import DatabaseEntry, LocalDatabase, MapCache, MapCacheEntry, RlocEntry
from lispd.stats import Counters, DropLog
from lispd.wire.data import LISP_DATA_PORT

log = logging.getLogger("lispd")

BATCH = 256  # packets handled per wake-up and source before yielding to the loop
SEND_POOL_SIZE = 8  # outer source ports per address family


def _rloc_entries(rlocs: Any) -> tuple[RlocEntry, ...]:
    return tuple(RlocEntry(r.address, r.priority, r.weight) for r in rlocs)


def build_tables(config: Config, now: float) -> tuple[MapCache, LocalDatabase]:
    """The static map-cache and the local database described by ``config``."""
    mapcache = MapCache()
    for m in config.map_cache:
        action = "encapsulate" if m.rlocs else (m.action or "drop")
        ttl = None if m.ttl is None else m.ttl * 60.0
        mapcache.add(
            MapCacheEntry(
                iid=m.instance_id,
                prefix=m.prefix,
                rlocs=_rloc_entries(m.rlocs),
                action=action,
                ttl=ttl,
                created=now,
                expires=None if ttl is None else now + ttl,
                source="static",
            )
        )
    database = LocalDatabase()
    for m in config.database:
        database.add(DatabaseEntry(m.instance_id, m.prefix, _rloc_entries(m.rlocs)))
    return mapcache, database


class Daemon:
    """One running lispd: tables, roles, OS resources and the control socket."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.started = time.time()
        self.counters = Counters()
        self.drop_log = DropLog(log, clock)
        self.mapcache, self.database = build_tables(config, clock())
        rng = random.Random()
        local_rlocs = {a.version: a for a in config.underlay.rlocs}
        self.itr = (
            Itr(
                self.mapcache,
                self.database,
                local_rlocs,
                config.underlay.mtu,
                self.counters,
                nonce=lambda: rng.getrandbits(24),
                clock=clock,
            )
            if "itr" in config.daemon.roles
            else None
        )
        self.etr = Etr(self.database) if "etr" in config.daemon.roles else None
        self.tun: Tun | None = None
        self.routes: RouteTable | None = None
        self.receivers: list[socket.socket] = []
        self.sender: Sender | None = None
        self.control: ControlServer | None = None
        self._stop = asyncio.Event()

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the TUN, sockets, routes and control socket, then tell systemd we are ready."""
        loop = asyncio.get_running_loop()
        cfg = self.config
        self.tun = Tun(cfg.tun.name, cfg.tun.mtu, prepare=prepare_tun_interface)
        self.routes = RouteTable(self.tun.name)
        for entry in self.mapcache.entries():
            self.routes.add(entry.prefix)
        self.sender = Sender(
            {a.version: open_send_pool(a, SEND_POOL_SIZE) for a in cfg.underlay.rlocs}
        )
        for addr in cfg.underlay.rlocs:
            sock = open_receive_socket(addr, LISP_DATA_PORT)
            self.receivers.append(sock)
            loop.add_reader(sock.fileno(), self._on_udp_readable, sock)
        loop.add_reader(self.tun.fd, self._on_tun_readable)
        if cfg.daemon.control_socket:
            self.control = ControlServer(cfg.daemon.control_socket, self._handlers())
            await self.control.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)
        summary = (
            f"roles={','.join(sorted(cfg.daemon.roles))} tun={self.tun.name} "
            f"database={len(cfg.database)} map-cache={len(self.mapcache)}"
        )
        log.info("lispd ready version=%s %s", __version__, summary)
        sd_notify(f"READY=1\nSTATUS={summary}")

    def stop(self) -> None:
        """Ask the daemon to shut down (signal handlers call this)."""
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
        if self.control is not None:
            await self.control.close()
        for sock in self.receivers:
            loop.remove_reader(sock.fileno())
            sock.close()
        self.receivers = []
        if self.sender is not None:
            self.sender.close()
        if self.routes is not None:
            self.routes.close()
            self.routes = None
        if self.tun is not None:
            loop.remove_reader(self.tun.fd)
            self.tun.close()
            self.tun = None

    def _on_hup(self) -> None:
        log.warning("reload requested: live reload is not supported yet; configuration unchanged")

    # --- packet path --------------------------------------------------------------------------

    def _drop(self, reason: str, source: str = "") -> None:
        self.counters.drop(reason)
        self.drop_log.note(reason, source)

    def _on_tun_readable(self) -> None:
        tun, itr, sender, counters = self.tun, self.itr, self.sender, self.counters
        assert tun is not None and sender is not None
        for pkt in tun.read_batch(BATCH):
            if itr is None:
                self._drop("itr-disabled")
                continue
            out = itr.handle(pkt)
            if type(out) is Encap:
                if sender.send(out.payload, out.rloc, out.port, out.flow_hash, out.ttl, out.tos):
                    counters.count("itr.encap", len(pkt))
                else:
                    self._drop("send-failed")
            elif type(out) is ToTun:
                if not tun.write(out.packet):
                    self._drop("tun-write-failed")
            else:
                self._drop(out.reason, "tun")  # type: ignore[union-attr]

    def _on_udp_readable(self, sock: socket.socket) -> None:
        tun, etr, counters = self.tun, self.etr, self.counters
        assert tun is not None
        for payload, ttl, tos, src, sport in recv_batch(sock, BATCH):
            if etr is None:
                self._drop("etr-disabled", f"{src}:{sport}")
                continue
            out = etr.handle(payload, ttl, tos)
            if type(out) is ToTun:
                if tun.write(out.packet):
                    counters.count("etr.decap", len(out.packet))
                else:
                    self._drop("tun-write-failed")
            else:
                self._drop(out.reason, f"{src}:{sport}")  # type: ignore[union-attr]

    # --- control socket -----------------------------------------------------------------------

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        return {
            "version": lambda _req: {"version": __version__, "name": self.config.daemon.name},
            "stats": lambda _req: self.counters.snapshot(),
            "map-cache": lambda _req: [_entry_json(e) for e in self.mapcache.entries()],
            "database": lambda _req: [_entry_json(e) for e in self.database.entries()],
        }


def _entry_json(entry: MapCacheEntry | DatabaseEntry) -> dict[str, Any]:
    out: dict[str, Any] = {
        "instance-id": entry.iid,
        "eid-prefix": str(entry.prefix),
        "rlocs": [
            {"address": str(r.address), "priority": r.priority, "weight": r.weight, "up": r.up}
            for r in entry.rlocs
        ],
    }
    if isinstance(entry, MapCacheEntry):
        out["action"] = entry.action
        out["source"] = entry.source
    return out


def run_daemon(config: Config) -> int:
    """Run the daemon in the foreground until SIGTERM/SIGINT; the process exit code."""
    try:
        import uvloop

        runner: Callable[..., Any] = uvloop.run
    except ImportError:
        runner = asyncio.run

    async def main() -> None:
        await Daemon(config).run()

    try:
        runner(main())
    except OSError as exc:
        log.error("lispd failed to start error=%s", exc)
        return 1
    return 0
