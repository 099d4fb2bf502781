"""The compiled fast path (C, :mod:`lispd.fastpath._accel`) and what keeps its tables current.

The C engine reads the TUN and the UDP 4341 sockets itself, in batches, and encapsulates,
decapsulates and re-encapsulates every packet whose fate its tables settle: a forwarding record
per map-cache prefix (the usable RLOCs of the best priority, weights, ports) and the local
EID-prefixes.  Everything else -- misses, negative entries, traces, packets too big for the
tunnel, data-plane control messages, the first packet of each new ITR -- comes back to Python
as plain packets and goes through the reference path (:mod:`lispd.dataplane`), which decides
exactly as before.  Both paths pick the same RLOC and outer source port for a flow: the C code
computes the same CRC-32 flow hash.

The control plane owns the map-cache: :class:`CompiledPath` listens to it
(:attr:`lispd.mapcache.MapCache.listener`) and turns each installed entry into a record.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Collection
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from lispd.fastpath.rloc import usable_candidates
from lispd.fastpath.workers import WorkerSet, add_counts
from lispd.fastpath.workerwire import Operation
from lispd.mapcache import LocalDatabase, MapCache, MapCacheEntry, Network

try:
    from lispd.fastpath import _accel
except ImportError:  # built without a C compiler: the pure-Python path runs
    _accel = None  # type: ignore[assignment]

IPAddress = IPv4Address | IPv6Address
RecordRloc = tuple[bytes, int, int, bool]  # packed address, port, weight, via the 4341 socket


def available() -> bool:
    """True when the compiled fast path was built with the package."""
    return _accel is not None


def forwarding_record(
    entry: MapCacheEntry,
    families: Collection[int],
    own_rlocs: Collection[IPAddress],
    nat_port: Callable[[IPAddress], int | None] | None,
) -> list[RecordRloc] | None:
    """What the engine needs of ``entry``: the RLOCs flows are shared among, in the order and
    with the weights :func:`lispd.fastpath.rloc.select_rloc` uses, each with the port to send
    to; None when Python must see the packets (a negative entry, no usable RLOC, an explicit
    locator path, an RLOC that is this node)."""
    if entry.action != "encapsulate":
        return None
    candidates = usable_candidates(entry.rlocs, families)
    if not candidates:
        return None
    record: list[RecordRloc] = []
    for rloc in candidates:
        if rloc.elp or rloc.address in own_rlocs:  # type: ignore[attr-defined]
            return None
        address: IPAddress = rloc.address  # type: ignore[assignment]
        port, via_data = rloc.port, False  # type: ignore[attr-defined]
        if nat_port is not None:
            translated = nat_port(address)
            if translated is not None:
                port, via_data = translated, True
        record.append((address.packed, port, rloc.weight, via_data))
    return record


class CompiledPath:
    """An :class:`_accel.Engine` wired to a node's tables and sockets, and the workers'
    engines (:class:`lispd.fastpath.workers.WorkerSet`) when there are any: every table
    operation goes to all of them."""

    def __init__(
        self,
        *,
        roles: Collection[str],
        mtu: int,
        tun_fd: int,
        offloads: bool,
        families: Collection[int],
        own_rlocs: Collection[IPAddress],
        nat_port: Callable[[IPAddress], int | None] | None,
    ) -> None:
        if _accel is None:
            raise RuntimeError("the compiled fast path is not built")
        self.engine_options: dict[str, Any] = {  # every engine's but the TUN queue
            "itr": bool({"itr", "pitr"} & set(roles)),
            "etr": bool({"etr", "petr"} & set(roles)),
            "rtr": "rtr" in roles,
            "mtu": mtu,
            "vnet": offloads and tun_fd >= 0,
            "gso": offloads,
        }
        self.engine = _accel.Engine(tun_fd=tun_fd, **self.engine_options)
        self.families = frozenset(families)
        self.own_rlocs = frozenset(own_rlocs)
        self.nat_port = nat_port
        self.workers: WorkerSet | None = None
        self.mapcache: MapCache | None = None
        self.database: LocalDatabase | None = None
        self.punt_all = False

    def _apply(self, name: str, *args: Any) -> None:
        """One table operation in every engine."""
        getattr(self.engine, name)(*args)
        if self.workers is not None:
            self.workers.broadcast(name, *args)

    def attach_workers(self, workers: WorkerSet) -> None:
        """Mirror every table operation in ``workers`` from now on (their ``seed`` should be
        :meth:`seed_operations`)."""
        self.workers = workers

    def seed_operations(self) -> list[Operation]:
        """What loads a fresh engine with the current tables."""
        ops: list[Operation] = [("db_clear", ())]
        if self.database is not None:
            for entry in self.database.entries():
                prefix = entry.prefix
                ops.append(("db_set", (entry.iid, prefix.network_address.packed, prefix.prefixlen)))
        ops.append(("map_clear", ()))
        if self.mapcache is not None:
            for entry in self.mapcache.entries():
                ops.append(("map_set", self._record_args(entry.iid, entry.prefix, entry)))
        ops.append(("set_punt_all", (self.punt_all,)))
        return ops

    # --- sockets ------------------------------------------------------------------------------

    def use_sockets(
        self, pools: dict[int, list[socket.socket]], data_sockets: dict[int, socket.socket]
    ) -> None:
        """Send from these sockets (the Python sender's, so both paths use the same outer
        source port for a flow); with offloads, :func:`lispd.io.udp.enable_offloads` must have
        prepared them."""
        for version, pool in pools.items():
            self.engine.set_pool(version, [sock.fileno() for sock in pool])
        for version, sock in data_sockets.items():
            self.engine.set_data_socket(version, sock.fileno())

    # --- tables -------------------------------------------------------------------------------

    def on_map_cache(self, iid: int, prefix: Network, entry: MapCacheEntry | None) -> None:
        """:attr:`MapCache.listener`: mirror one installed or removed entry."""
        if entry is None:
            self._apply("map_remove", iid, prefix.network_address.packed, prefix.prefixlen)
        else:
            self._apply("map_set", *self._record_args(iid, prefix, entry))

    def _record_args(self, iid: int, prefix: Network, entry: MapCacheEntry) -> tuple[Any, ...]:
        record = forwarding_record(entry, self.families, self.own_rlocs, self.nat_port)
        return (iid, prefix.network_address.packed, prefix.prefixlen, record)

    def load_map_cache(self, mapcache: MapCache) -> None:
        """Replace every record with the map-cache's current entries (at start, and when
        something every record depends on changed: NAT bindings)."""
        self.mapcache = mapcache
        self._apply("map_clear")
        for entry in mapcache.entries():
            self.on_map_cache(entry.iid, entry.prefix, entry)

    def load_database(self, database: LocalDatabase) -> None:
        """The local EID-prefixes (ITR: which sources are ours; ETR: what we decapsulate)."""
        self.database = database
        self._apply("db_clear")
        for entry in database.entries():
            prefix = entry.prefix
            self._apply("db_set", entry.iid, prefix.network_address.packed, prefix.prefixlen)

    def set_punt_all(self, flag: bool) -> None:
        """Every packet from the TUN to Python (behind a NAT, where all goes to RTRs)."""
        self.punt_all = flag
        self._apply("set_punt_all", flag)

    # --- packets ------------------------------------------------------------------------------

    def from_tun(self, handler: Callable[[bytes], None]) -> None:
        """Handle what the TUN has; ``handler`` gets, at once and in order, each packet the
        Python path must take."""
        self.engine.from_tun(handler)

    def from_udp(
        self, sock: socket.socket, handler: Callable[[bytes, int, int, str, int], None]
    ) -> None:
        """Handle what ``sock`` (a 4341 socket) has; ``handler`` gets each datagram for Python
        as (payload, ttl, tos, source address, source port), like
        :func:`lispd.io.udp.recv_batch` gives them."""
        self.engine.from_udp(sock.fileno(), handler)

    def forget_sources(self) -> None:
        """Python starts a new list of recent ITRs: show it the next packet of each again."""
        self._apply("forget_sources")

    def counters(self) -> dict[str, dict[str, int]]:
        """{"packets": ..., "drops": ..., "fastpath": ...} counted in C, by every engine."""
        counts: dict[str, dict[str, int]] = self.engine.counters()
        if self.workers is not None:
            add_counts(counts, self.workers.counters())
            section = counts.setdefault("fastpath", {})
            section["engines"] = 1 + len(self.workers.slots)
            section["worker-restarts"] = self.workers.restarts
        else:
            counts.setdefault("fastpath", {})["engines"] = 1
        return counts

    def engine_packets(self) -> dict[str, int]:
        """Packets each engine forwarded (encapsulated, decapsulated, re-encapsulated):
        ``main``, ``worker1``...; how the kernel spread the flows."""

        def forwarded(counts: dict[str, dict[str, int]]) -> int:
            packets = counts.get("packets", {})
            return sum(v for k, v in packets.items() if k.endswith(".packets"))

        spread = {"main": forwarded(self.engine.counters())}
        if self.workers is not None:
            for index, counts in self.workers.per_worker().items():
                spread[f"worker{index}"] = forwarded(counts)
        return spread


def merge_counts(into: dict[str, Any], extra: dict[str, dict[str, int]]) -> None:
    """Add the engine's packet and drop counters to a stats snapshot (zeros left out)."""
    for section in ("packets", "drops"):
        target = into.setdefault(section, {})
        for key, value in extra.get(section, {}).items():
            if value:
                target[key] = target.get(key, 0) + value
    into["fastpath"] = dict(extra.get("fastpath", {}))
