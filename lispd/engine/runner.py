"""The compiled engine as the daemon runs it: engine 0 in the main process, the workers'
processes, and the engine's share of what the node asks for.

:class:`EngineRunner` hands the TUN and the data sockets to a :class:`CompiledPath`, loads the
node's tables into it and keeps it current (the map-cache listener, and the node's
``DatabaseChanged``, ``PuntAll``, ``ForgetSources`` and ``NatBindingsChanged`` actions),
starts one worker per further TUN queue and set of 4341 sockets, and merges every engine's
counters into the daemon's ``stats``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from lispd.engine.compiled import CompiledPath, RecordRefresh, merge_counts
from lispd.engine.serving import LoopHandlers, ServeThread
from lispd.engine.workers import TunHandler, UdpHandler, WorkerSet, WorkerSlot
from lispd.io.egress import BurstCheck
from lispd.io.tun import Tun, set_queue_attached
from lispd.io.udp import Sender, enable_offloads
from lispd.logfmt import kv
from lispd.node import Node
from lispd.node.actions import DatabaseChanged, ForgetSources, NatBindingsChanged, PuntAll

log = logging.getLogger("lispd.engine")

EngineAction = DatabaseChanged | PuntAll | ForgetSources | NatBindingsChanged


class EngineRunner:
    """Engine 0, its workers and the record refresh of an RTR (see the module docstring)."""

    def __init__(
        self,
        node: Node,
        *,
        tun: Tun | None,
        sender: Sender,
        worker_receive: list[dict[int, socket.socket]],
        offloads: bool,
        gso: bool = False,
        gso_reason: str = "",
        gso_rlocs: tuple[Any, ...] = (),
        busy_poll: int = 0,
        on_tun: TunHandler,
        on_udp: UdpHandler,
        clock: Callable[[], float],
    ) -> None:
        """``on_tun``/``on_udp``: where a worker's punts go (the node, then a transmit);
        ``offloads``/``gso``/``gso_rlocs``/``busy_poll`` as :class:`CompiledPath`'s
        (``gso_reason``: why bursts are sent or not, for the log and ``version``)."""
        cfg, itr = node.config, node.itr
        self.node = node
        self.clock = clock
        fast = CompiledPath(
            roles=cfg.daemon.roles,
            mtu=cfg.underlay.mtu,
            tun_fd=tun.fd if tun is not None else -1,
            offloads=offloads,
            gso=gso,
            gso_rlocs=gso_rlocs,
            busy_poll=busy_poll,
            families=itr.families if itr is not None else (),
            own_rlocs=itr.own_rlocs if itr is not None else (),
            nat_port=itr.nat_port if itr is not None else None,
        )
        if offloads:
            checksums = gso or bool(gso_rlocs)  # IPv4 UDP GSO needs UDP checksums
            enable_offloads(sender.pools, sender.data_sockets, gso=checksums)
            for receive in worker_receive:
                enable_offloads({}, receive, gso=checksums)
        fast.use_sockets(sender.pools, sender.data_sockets)
        fast.load_database(node.database)
        fast.load_map_cache(node.mapcache)
        node.mapcache.listener = fast.on_map_cache  # the engine mirrors the map-cache
        self.fast = fast
        # An RTR's records carry NATed xTRs' ports: issued again when their bindings change.
        self.record_refresh = (
            RecordRefresh(fast, node.mapcache) if node.nat_bindings is not None else None
        )
        self._refresh_handle: asyncio.TimerHandle | None = None
        self.workers: WorkerSet | None = None
        if worker_receive:
            queues = tun.queue_fds if tun is not None else []
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
                on_tun=on_tun,
                on_udp=on_udp,
                on_bad_report=lambda: node.drop("worker-bad-report"),
                cover=self._cover,
            )
            fast.attach_workers(self.workers)
        self.serving: ServeThread | None = None
        self.offloads = offloads
        self._sockets = (sender, worker_receive)  # whose UDP checksums bursts need
        self.udp_bursts_reason = gso_reason
        peers = ",".join(map(str, gso_rlocs)) if offloads and gso_rlocs else None
        log.info(
            "fast path compiled %s",
            kv(
                offloads=offloads,
                udp_gso="on" if self.udp_bursts else "off",
                why=gso_reason or None,
                gso_rlocs=peers,
                busy_poll_us=busy_poll,
                engines=self.engines,
            ),
        )

    def set_udp_bursts(self, check: BurstCheck) -> None:
        """``offloads = "auto"`` looked at the ways out again (``check``): every engine sends
        UDP GSO bursts from now on, or stops.  Before the first burst the IPv4 data sockets
        compute UDP checksums (the kernel refuses GSO without them); they keep computing them
        when the bursts stop, since a worker may still send one before it hears."""
        self.udp_bursts_reason = check.reason
        safe = self.offloads and check.safe
        if safe == self.udp_bursts:
            return
        if safe:
            sender, worker_receive = self._sockets
            enable_offloads(sender.pools, sender.data_sockets, gso=True)
            for receive in worker_receive:
                enable_offloads({}, receive, gso=True)
        self.fast.set_gso(safe)
        log.warning("UDP GSO bursts %s %s", "on" if safe else "off", kv(why=check.reason))

    def _cover(self, slot: WorkerSlot, covering: bool) -> None:
        """While a worker restarts, its share of the traffic is the main engine's: its TUN
        queue detached (the kernel steers its flows to the attached queues) and its 4341
        sockets served by engine 0's thread; given back before the new worker starts."""
        assert self.serving is not None  # started before the workers (start)
        orphans = list(slot.receive.values())
        kept = [fd for fd in self.serving.fds if fd not in orphans]
        self.serving.set_fds(kept + orphans if covering else kept)
        if slot.tun_fd >= 0:
            set_queue_attached(slot.tun_fd, not covering)
        taken = "main" if covering else "worker"
        log.info("worker traffic %s", kv(worker=slot.index, taken_by=taken))

    @property
    def udp_bursts(self) -> bool:
        """Whether the engines send UDP GSO bursts to every RLOC (the engines' ``gso``)."""
        return bool(self.fast.engine_options["gso"])

    @property
    def engines(self) -> int:
        """Engines forwarding: this process's and one per worker."""
        return 1 + (len(self.workers.slots) if self.workers is not None else 0)

    def start(self, fds: list[int], handlers: LoopHandlers) -> None:
        """Have engine 0 serve the TUN and the 4341 sockets ``fds`` from a thread
        (:class:`ServeThread`; its punts reach ``handlers`` on this loop), then start the
        workers' processes."""
        loop = asyncio.get_running_loop()
        self.serving = ServeThread(self.fast.engine, fds, loop=loop, handlers=handlers)
        self.serving.start()
        if self.workers is not None:
            self.workers.start()

    async def ready(self) -> bool:
        """Wait (at most 10 s) until every worker has its table; False when one has not."""
        return self.workers is None or await self.workers.ready()

    def apply(self, action: EngineAction) -> None:
        """The engine's share of one of the node's actions."""
        if isinstance(action, DatabaseChanged):
            self.fast.load_database(self.node.database)
        elif isinstance(action, PuntAll):
            self.fast.set_punt_all(action.on)
        elif isinstance(action, ForgetSources):
            self.fast.forget_sources()
        else:
            self._bindings_changed(action.addresses)

    def _bindings_changed(self, addresses: tuple[Any, ...]) -> None:
        """The NAT bindings of ``addresses`` are new, moved or gone.  The Python path reads
        the bindings per packet; the compiled records carry the translated ports, so the
        records of the map-cache entries using these addresses (only those) are issued again:
        now for the first slice, later for the rest (:class:`RecordRefresh`, bounded per loop
        turn and per second)."""
        refresh = self.record_refresh
        if refresh is None:
            return
        for address in addresses:
            refresh.mark(address)
        if self._refresh_handle is None:  # else a run is due soon anyway
            self._run_record_refresh()

    def _run_record_refresh(self) -> None:
        """One slice of :meth:`_bindings_changed`'s work; the next one is scheduled."""
        self._refresh_handle = None
        refresh = self.record_refresh
        if refresh is None:
            return
        wait = refresh.run(self.clock())
        if wait is not None:
            loop = asyncio.get_running_loop()
            self._refresh_handle = loop.call_later(wait, self._run_record_refresh)

    def stats_into(self, snap: dict[str, Any]) -> None:
        """Add every engine's counters (the workers' as they last reported them) to ``snap``."""
        merge_counts(snap, self.fast.counters())
        if self.workers is not None:
            snap["engines"] = self.fast.engine_packets()
        refresh = self.record_refresh
        if refresh is not None:
            snap["fastpath"]["records-reissued"] = refresh.issued
            snap["fastpath"]["records-reissue-pending"] = len(refresh)

    async def refresh_counters(self) -> None:
        """Have every worker report its current counters (at most half a second)."""
        if self.workers is not None:
            await self.workers.refresh()

    def stopping(self) -> None:
        """The daemon is stopping: workers that exit now are not restarted."""
        if self.workers is not None:
            self.workers.stopping()

    async def close(self) -> None:
        """Stop the workers (a covered one's sockets handed back to nobody), then engine 0's
        thread, stop mirroring the map-cache, release the engine's own copies of the TUN and
        the sockets."""
        if self._refresh_handle is not None:
            self._refresh_handle.cancel()
            self._refresh_handle = None
        if self.workers is not None:  # while engine 0 serves: closing may uncover a worker
            await self.workers.close()
            self.workers = None
        if self.serving is not None:  # the engine is free again once it has stopped
            self.serving.stop()
            self.serving = None
        self.node.mapcache.listener = None
        self.fast.close()
        self.record_refresh = None
