"""What a node needs of the operating system, opened for the daemon in a safe order.

First what another lispd would hold (its control socket, its UDP 4342 sockets, its TUN), so
that a second instance stops before it touches anything of the first's; then lispd's own routes
and rules, the UDP 4341 sockets (one set per engine), the send pools and the LISP-Trace
sockets.  Every failure is said in the configuration's terms (:func:`lispd.startup.opening`),
and whatever was opened before it is closed again.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network

from lispd.api.server import probe as probe_control_socket
from lispd.config import Config
from lispd.io.routes import KernelRouting, RoutingPolicy
from lispd.io.sysctl import prepare_tun_interface
from lispd.io.tun import Tun, held_by_another_process
from lispd.io.udp import (
    Sender,
    claim_port,
    open_control_socket,
    open_receive_socket,
    open_send_pool,
)
from lispd.node import DATA_ROLES, TUN_ROLES
from lispd.startup import opening
from lispd.wire.data import LISP_CONTROL_PORT, LISP_DATA_PORT
from lispd.wire.trace import TRACE_PORT

SEND_POOL_SIZE = 8  # outer source ports per address family


@dataclass
class Resources:
    """The TUN, the sockets and the routes of one running lispd (None / empty: not opened)."""

    tun: Tun | None = None
    routes: KernelRouting | None = None
    control_sockets: dict[int, list[socket.socket]] = field(default_factory=dict)
    """UDP 4342 on each RLOC, by address family."""
    receivers: list[socket.socket] = field(default_factory=list)
    """The main process's UDP 4341 sockets."""
    data_sockets: dict[int, socket.socket] = field(default_factory=dict)
    """The same, by address family (what data-plane control messages leave from)."""
    worker_receive: list[dict[int, socket.socket]] = field(default_factory=list)
    """Each worker engine's own UDP 4341 sockets (``SO_REUSEPORT`` group), by family."""
    sender: Sender | None = None
    """Encapsulated packets out: the send pools and the 4341 sockets."""
    trace_sockets: dict[int, socket.socket] = field(default_factory=dict)
    """UDP 2434 (LISP-Trace) on each RLOC, by address family."""

    @property
    def engines(self) -> int:
        """Engines the sockets were opened for: this process and one per worker."""
        return 1 + len(self.worker_receive)

    def sockets(self) -> list[socket.socket]:
        """Every socket the event loop reads (4341, 4342, 2434)."""
        out = list(self.receivers)
        out += [s for group in self.control_sockets.values() for s in group]
        return out + list(self.trace_sockets.values())

    def close(self) -> None:
        """Close every socket, remove lispd's routes and rules, close the TUN (what was
        opened: safe on a half-opened set)."""
        for sock in self.sockets():
            sock.close()
        for receive in self.worker_receive:
            for sock in receive.values():
                sock.close()
        self.receivers, self.control_sockets, self.trace_sockets = [], {}, {}
        self.worker_receive, self.data_sockets = [], {}
        if self.sender is not None:
            self.sender.close()
            self.sender = None
        if self.routes is not None:
            self.routes.close()
            self.routes = None
        if self.tun is not None:
            self.tun.close()
            self.tun = None


async def open_resources(
    config: Config,
    *,
    local_prefixes: Iterable[IPv4Network | IPv6Network],
    routed_prefixes: Iterable[IPv4Network | IPv6Network],
    engines: int,
    vnet: bool,
) -> Resources:
    """Open what ``config``'s roles need: ``engines`` TUN queues and sets of 4341 sockets
    (fewer on a persistent single-queue TUN), ``vnet``: the TUN with virtio-net headers (the
    compiled engine's offloads); ``local_prefixes`` stay native (our EIDs), ``routed_prefixes``
    are routed into the TUN (the static map-cache).  Raises :class:`OSError` (a
    :class:`~lispd.startup.StartupError` naming the key) after closing what it opened."""
    res = Resources()
    try:
        await _open(res, config, local_prefixes, routed_prefixes, engines, vnet)
    except BaseException:
        res.close()
        raise
    return res


async def _open(
    res: Resources,
    cfg: Config,
    local_prefixes: Iterable[IPv4Network | IPv6Network],
    routed_prefixes: Iterable[IPv4Network | IPv6Network],
    engines: int,
    vnet: bool,
) -> None:
    rloc_keys = {addr: ("underlay", "rlocs", i) for i, addr in enumerate(cfg.underlay.rlocs)}
    if cfg.daemon.control_socket:
        path = cfg.daemon.control_socket
        with opening(cfg, ("daemon", "control-socket"), path, "the control socket"):
            who = await asyncio.to_thread(probe_control_socket, path)
            if who is not None:
                raise OSError(errno.EADDRINUSE, f"{who} is serving {path}")
    for addr in cfg.underlay.rlocs:
        port = f"UDP {LISP_CONTROL_PORT} on the RLOC"
        with opening(cfg, rloc_keys[addr], addr, port, holder=(addr, LISP_CONTROL_PORT)):
            sock = open_control_socket(addr, LISP_CONTROL_PORT)
        res.control_sockets.setdefault(addr.version, []).append(sock)
    if cfg.daemon.roles & TUN_ROLES:
        with opening(cfg, ("tun", "name"), cfg.tun.name, "the TUN device"):
            if held_by_another_process(cfg.tun.name):
                raise OSError(errno.EBUSY, f"TUN device {cfg.tun.name} is held by another process")
            res.tun = Tun(
                cfg.tun.name,
                cfg.tun.mtu,
                prepare=prepare_tun_interface,
                vnet=vnet,
                queues=engines,
            )
        engines = 1 + len(res.tun.queue_fds)  # one, on a single-queue persistent device
        tun = cfg.tun
        policy = RoutingPolicy(tun.route_table, tun.rule_priority, tun.route_protocol)
        with opening(cfg, ("tun", "route-table"), policy.table, "lispd's routes and rules"):
            res.routes = KernelRouting(
                res.tun.name,
                policy,
                itr="itr" in cfg.daemon.roles,
                pitr="pitr" in cfg.daemon.roles,
            )
            res.routes.set_local_prefixes(local_prefixes)
            for prefix in routed_prefixes:
                res.routes.add(prefix)
    if not cfg.daemon.roles & DATA_ROLES:
        return
    res.worker_receive = [{} for _ in range(engines - 1)]
    pools: dict[int, list[socket.socket]] = {}
    res.sender = Sender(pools, res.data_sockets)  # filled below (closed with res on failure)
    for addr in cfg.underlay.rlocs:
        port = f"UDP {LISP_DATA_PORT} on the RLOC"
        with opening(cfg, rloc_keys[addr], addr, port, holder=(addr, LISP_DATA_PORT)):
            if engines > 1:  # nobody else's group to join by mistake
                claim_port(addr, LISP_DATA_PORT)
            sock = open_receive_socket(addr, LISP_DATA_PORT, shared=engines > 1)
            res.receivers.append(sock)
            res.data_sockets[addr.version] = sock
            for receive in res.worker_receive:
                receive[addr.version] = open_receive_socket(addr, LISP_DATA_PORT, shared=True)
            pools[addr.version] = open_send_pool(addr, SEND_POOL_SIZE)
    for addr in cfg.underlay.rlocs:  # LISP-Trace: error returns, NATed ltr clients
        port = f"UDP {TRACE_PORT} (LISP-Trace) on the RLOC"
        with opening(cfg, rloc_keys[addr], addr, port, holder=(addr, TRACE_PORT)):
            res.trace_sockets[addr.version] = open_control_socket(addr, TRACE_PORT)
