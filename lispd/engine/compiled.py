"""The compiled fast path (C, :mod:`lispd.engine._accel`) and what keeps its tables current.

The C engine reads the TUN and the UDP 4341 sockets itself, in batches, and encapsulates,
decapsulates and re-encapsulates every packet whose fate its tables settle: a forwarding record
per map-cache prefix (the usable RLOCs of the best priority, weights, ports) and the local
EID-prefixes.  Everything else -- misses, negative entries, traces, packets too big for the
tunnel, data-plane control messages, the first packet of each new ITR -- comes back to Python
as plain packets and goes through the reference path (:mod:`lispd.dataplane`), which decides
exactly as before.  Both paths pick the same RLOC and outer source port for a flow: the C code
computes the same CRC-32 flow hash.

The control plane owns the map-cache: :class:`CompiledPath` listens to it
(:attr:`lispd.mapcache.MapCache.listener`) and turns each installed entry into a record.  A
record also carries what the node knows of each RLOC apart from the mapping, the translated
port of a NATed xTR at an RTR: when that changes, :class:`RecordRefresh` issues again the
records of the entries using that RLOC only, a bounded number per call and per second.

The records live in one table shared by every engine when the kernel allows it
(``shared_table``, the default): the main engine writes it in a shared memory region
(``lispd/engine/csrc/maptable.c``) and each worker's engine maps it read-only, so record
changes go to the main engine only, and a new or restarted worker is not sent the records
(:meth:`CompiledPath.seed_operations`).  Otherwise each engine keeps a private copy, every
change goes to all of them and a new worker receives every record.
"""

from __future__ import annotations

import socket
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from lispd.dataplane.rloc import mapping_candidates
from lispd.engine.workers import WorkerSet, add_counts
from lispd.engine.workerwire import Operation
from lispd.mapcache import LocalDatabase, MapCache, MapCacheEntry, Network, RlocEntry

try:
    import lispd.engine._accel as _accel
except ImportError:  # built without a C compiler: the pure-Python path runs
    _accel = None

IPAddress = IPv4Address | IPv6Address
NatPort = Callable[[IPAddress, int, Network | None], int | None]
"""An RTR's NAT binding lookup: the translated port of an RLOC for an entry's (instance-ID,
EID-prefix), None when the RLOC is not a NATed xTR's
(:meth:`lispd.node.natbindings.NatBindings.port_for`)."""
RecordRloc = tuple[bytes, int, int, bool]  # packed address, port, weight, via the 4341 socket
# _rloc_set_record's answer: (record, all down, the candidates' addresses) or None
SetRecord = tuple[list[RecordRloc], bool, tuple[IPAddress, ...]] | None

RECORDS_KEPT = 4096
"""RLOC sets whose record part (:func:`_rloc_set_record`) a :class:`CompiledPath` keeps, by
the identity of the interned ``rlocs`` tuple (:func:`lispd.mapcache.entries.intern_rlocs`):
entries sharing a set cost one look-up instead of the candidate selection each."""

FORWARDED = ("itr.encap.packets", "etr.decap.packets", "rtr.reencap.packets")
"""The engine's packet counters of forwarded packets, one per role (``itr.all-rlocs-down`` is
a part of ``itr.encap``, not counted again)."""

REFRESH_SLICE = 250
"""Records :meth:`RecordRefresh.run` issues again per call at most: each costs 3-10 us
(building it, the main engine's ``map_set``, the workers' message), so a few milliseconds."""
MAP_OPERATIONS = frozenset({"map_set", "map_remove", "map_clear"})
"""The engine methods that change the map-cache records: with a shared table, the main
engine's alone (the workers read its table)."""
REFRESH_RATE = 10_000.0
"""Records a second :class:`RecordRefresh` issues again at most, in the long run (a tenth of a
core at most; an RLOC used by 100,000 entries is current again within 10 s)."""

SEED_CHUNK = 128
"""Forwarding records per chunk of a worker's seed (:meth:`CompiledPath.seed_operations`):
each costs a few microseconds to build and send, so a chunk is about a millisecond."""


def available() -> bool:
    """True when the compiled fast path was built with the package."""
    return _accel is not None


def forwarding_record(
    entry: MapCacheEntry,
    families: Collection[int],
    own_rlocs: Collection[IPAddress],
    nat_port: NatPort | None,
) -> tuple[list[RecordRloc], bool] | None:
    """What the engine needs of ``entry``: the RLOCs flows are shared among, in the order and
    with the weights :func:`lispd.dataplane.rloc.select_mapping_rloc` uses, each with the port
    to send to, and whether they are used with every RLOC down (the engine counts those
    packets as ``itr.all-rlocs-down``, as the Python path does); None when Python must see the
    packets (a negative entry, no usable RLOC, an explicit locator path, an RLOC that is this
    node)."""
    if entry.action != "encapsulate":
        return None
    return _translated(_rloc_set_record(entry.rlocs, families, own_rlocs), entry, nat_port)


def _rloc_set_record(
    rlocs: Sequence[RlocEntry], families: Collection[int], own_rlocs: Collection[IPAddress]
) -> SetRecord:
    """The part of :func:`forwarding_record` that depends on the RLOC set alone: the record
    before any NAT translation (``via_data`` False) and the candidates' addresses, None when
    Python must see the packets."""
    candidates, all_down = mapping_candidates(rlocs, families)
    if not candidates:
        return None
    record: list[RecordRloc] = []
    for rloc in candidates:
        if rloc.elp or rloc.address in own_rlocs:
            return None
        record.append((rloc.address.packed, rloc.port, rloc.weight, False))
    return record, all_down, tuple(rloc.address for rloc in candidates)


def _translated(
    record: SetRecord, entry: MapCacheEntry, nat_port: NatPort | None
) -> tuple[list[RecordRloc], bool] | None:
    """``record`` (of ``entry``'s RLOC set) with ``nat_port``'s translated port for each RLOC
    of ``entry`` that has one (a new list; the set's own list is shared, never changed)."""
    if record is None:
        return None
    rlocs, all_down, addresses = record
    if nat_port is None:
        return rlocs, all_down
    out: list[RecordRloc] = []
    for address, (packed, port, weight, via_data) in zip(addresses, rlocs, strict=True):
        translated = nat_port(address, entry.iid, entry.prefix)
        if translated is not None:
            port, via_data = translated, True
        out.append((packed, port, weight, via_data))
    return out, all_down


class CompiledPath:
    """An :class:`_accel.Engine` wired to a node's tables and sockets, and the workers'
    engines (:class:`lispd.engine.workers.WorkerSet`) when there are any: every table
    operation goes to all of them, but the map-cache records' when the table is shared
    (``shared_table``: the main engine writes it in shared memory, the workers' engines map it
    read-only by ``engine_options["table_fd"]``; a private table per engine when the region
    cannot be made).

    ``offloads``: the TUN carries virtio-net headers (TSO super-packets in, merged TCP
    segments out) when there is one; ``gso`` (with ``offloads``): runs of datagrams to one
    destination leave as UDP GSO bursts, else as separate datagrams of one ``sendmmsg``;
    ``gso_rlocs`` (with ``offloads``): runs to these RLOCs leave as GSO bursts even so;
    ``busy_poll``: microseconds every engine keeps reading after a batch before it sleeps
    (``[dataplane] busy-poll``)."""

    def __init__(
        self,
        *,
        roles: Collection[str],
        mtu: int,
        tun_fd: int,
        offloads: bool,
        gso: bool = False,
        gso_rlocs: Collection[IPAddress] = (),
        busy_poll: int = 0,
        families: Collection[int],
        own_rlocs: Collection[IPAddress],
        nat_port: NatPort | None,
        shared_table: bool = True,
    ) -> None:
        if _accel is None:
            raise RuntimeError("the compiled fast path is not built")
        self.engine_options: dict[str, Any] = {  # every engine's but the TUN queue
            "itr": bool({"itr", "pitr"} & set(roles)),
            "etr": bool({"etr", "petr"} & set(roles)),
            "rtr": "rtr" in roles,
            "mtu": mtu,
            "vnet": offloads and tun_fd >= 0,
            "gso": offloads and gso,
            "gso_peers": [str(a) for a in gso_rlocs] if offloads else [],
            "busy_poll_us": busy_poll,
        }
        self.engine = _accel.Engine(tun_fd=tun_fd, shared=shared_table, **self.engine_options)
        table_fd: int = self.engine.table_fd()
        self.shared_table = table_fd >= 0  # False: not asked, or the region could not be made
        if self.shared_table:
            self.engine_options["table_fd"] = table_fd  # the workers' engines read this one
        self.families = frozenset(families)
        self.own_rlocs = frozenset(own_rlocs)
        self.nat_port = nat_port
        self.workers: WorkerSet | None = None
        self.mapcache: MapCache | None = None
        self.database: LocalDatabase | None = None
        self.punt_all = False
        # id(rlocs) -> (rlocs, its record part): the tuple held so that its id stays its own.
        self._set_records: dict[int, tuple[tuple[RlocEntry, ...], SetRecord]] = {}

    def _apply(self, name: str, *args: Any) -> None:
        """One table operation in every engine."""
        getattr(self.engine, name)(*args)
        if self.workers is not None and not (self.shared_table and name in MAP_OPERATIONS):
            self.workers.broadcast(name, *args)

    def attach_workers(self, workers: WorkerSet) -> None:
        """Mirror every table operation in ``workers`` from now on (their ``seed`` should be
        :meth:`seed_operations`)."""
        self.workers = workers

    def seed_operations(self, chunk: int = SEED_CHUNK) -> Iterator[list[Operation]]:
        """What loads a fresh engine with the current tables, in chunks built lazily: each
        when the caller asks for it (:class:`lispd.engine.workers.WorkerSet` asks for a few
        per loop turn, sending each at once, with every table change in between).

        The first chunk clears the engine and carries the local EID-prefixes and the punt-all
        flag as they are then.  Each later chunk carries the forwarding records of up to
        ``chunk`` map-cache prefixes, taken from a snapshot of the prefixes of one part of
        one (iid, family) table (an unordered copy made when the seed reaches that part,
        :meth:`lispd.mapcache.table.PrefixTable.pieces`), each record
        built from the entry the map-cache holds *when the chunk is built*.  Why that is
        enough, whatever changes meanwhile: every change also reaches the engine as its own
        operation (the map-cache listener, :meth:`_apply`), in order with the chunks.  A
        prefix changed before its chunk is built goes out with its current record (the
        change's own operation, sent earlier, said the same or less); one changed after its
        chunk is sent gets the change's operation after it; one removed is skipped (its
        ``map_remove`` went out already, or goes after); one added after its table's snapshot
        comes with its own ``map_set``, after the first chunk's ``map_clear``.  So no chunk
        ever brings back a stale record, and when the last chunk is applied the engine's
        table equals the map-cache.  An empty chunk comes before each snapshot: the caller
        should end its loop turn there, so that the copy starts a turn of its own.

        With a shared table (:attr:`shared_table`) the seed is the first chunk alone: the
        worker's engine reads the main engine's records, so none are sent."""
        ops: list[Operation] = [("db_clear", ())]
        if self.database is not None:
            for entry in self.database.entries():
                prefix = entry.prefix
                ops.append(("db_set", (entry.iid, prefix.network_address.packed, prefix.prefixlen)))
        if not self.shared_table:
            ops.append(("map_clear", ()))
        ops.append(("set_punt_all", (self.punt_all,)))
        yield ops
        mapcache = self.mapcache
        if mapcache is None or self.shared_table:
            return
        for iid in mapcache.tables.instance_ids():
            for family in (4, 6):
                table = mapcache.tables.table(iid, family)
                if table is None:
                    continue
                pieces = table.pieces()
                while True:
                    yield []  # the copy below starts a loop turn of its own
                    items = next(pieces, None)
                    if items is None:
                        break
                    for start in range(0, len(items), chunk):
                        ops = []
                        for prefix, _cached in items[start : start + chunk]:
                            current = mapcache.get(iid, prefix)
                            if current is not None:
                                ops.append(("map_set", self._record_args(iid, prefix, current)))
                        yield ops

    # --- sockets ------------------------------------------------------------------------------

    def use_sockets(
        self, pools: dict[int, list[socket.socket]], data_sockets: dict[int, socket.socket]
    ) -> None:
        """Send from these sockets (the Python sender's, so both paths use the same outer
        source port for a flow); with offloads, :func:`lispd.io.udp.enable_offloads` must have
        prepared them (``gso`` as this path's)."""
        for version, pool in pools.items():
            self.engine.set_pool(version, [sock.fileno() for sock in pool])
        for version, sock in data_sockets.items():
            self.engine.set_data_socket(version, sock.fileno())

    # --- tables -------------------------------------------------------------------------------

    def on_map_cache(self, iid: int, prefix: Network, entry: MapCacheEntry | None) -> None:
        """:attr:`MapCache.listener`: mirror one installed or removed entry."""
        if entry is None:
            self._apply("map_remove", iid, prefix.network_address.packed, prefix.prefixlen)
            return
        self._apply("map_set", *self._record_args(iid, prefix, entry))

    def _record_args(self, iid: int, prefix: Network, entry: MapCacheEntry) -> tuple[Any, ...]:
        """``map_set``'s arguments for ``entry``: :func:`forwarding_record`, the RLOC set's part
        worked out once per (interned) set."""
        rlocs = entry.rlocs
        kept = self._set_records.get(id(rlocs))
        if kept is not None and kept[0] is rlocs:
            record = kept[1]
        else:
            record = _rloc_set_record(rlocs, self.families, self.own_rlocs) if rlocs else None
            if len(self._set_records) >= RECORDS_KEPT:
                self._set_records.clear()
            self._set_records[id(rlocs)] = (rlocs, record)
        packed, plen = prefix.network_address.packed, prefix.prefixlen
        if entry.action != "encapsulate" or record is None:
            return (iid, packed, plen, None)
        if self.nat_port is None:
            chosen, all_down, _addresses = record
        else:
            translated = _translated(record, entry, self.nat_port)
            assert translated is not None  # record is not None
            chosen, all_down = translated
        # The fifth argument only when set: the operation stays the four-argument form the
        # workers and their message-size estimate know for every ordinary record.
        return (iid, packed, plen, chosen, True) if all_down else (iid, packed, plen, chosen)

    def reissue(self, entries: Iterable[MapCacheEntry]) -> int:
        """Install the current record of each of ``entries`` (map-cache entries) again in
        every engine, for something the record depends on besides the entry (an RLOC's NAT
        binding); returns how many."""
        issued = 0
        for entry in entries:
            self._apply("map_set", *self._record_args(entry.iid, entry.prefix, entry))
            issued += 1
        return issued

    def load_map_cache(self, mapcache: MapCache) -> None:
        """Replace every record with the map-cache's current entries (at start)."""
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

    def set_gso(self, flag: bool) -> None:
        """Whether runs to one RLOC leave as UDP GSO bursts, in every engine (and in a worker
        started later)."""
        self.engine_options["gso"] = flag
        self._apply("set_gso", flag)

    # --- packets ------------------------------------------------------------------------------

    def forget_sources(self) -> None:
        """Python starts a new list of recent ITRs: show it the next packet of each again."""
        self._apply("forget_sources")

    def close(self) -> None:
        """Release the main engine's descriptors: it keeps its own copies (dup) of the TUN
        and the send sockets, so closing the daemon's leaves the device and the ports held
        until this (or the engine's end)."""
        self.engine.close()

    def counters(self) -> dict[str, dict[str, int]]:
        """{"packets": ..., "drops": ..., "fastpath": ...} counted in C, by every engine
        (``fastpath``: also ``engines``, ``worker-restarts``, and ``shared-table``, 1 when the
        engines read one shared forwarding table)."""
        counts: dict[str, dict[str, int]] = self.engine.counters()
        if self.workers is not None:
            add_counts(counts, self.workers.counters())
            section = counts.setdefault("fastpath", {})
            section["engines"] = 1 + len(self.workers.slots)
            section["worker-restarts"] = self.workers.restarts
            section["worker-resyncs"] = self.workers.resyncs
            section["workers-seeding"] = self.workers.seeding()
            section["worker-queued-bytes"] = self.workers.queued()
        else:
            counts.setdefault("fastpath", {})["engines"] = 1
        counts["fastpath"]["shared-table"] = int(self.shared_table)  # one table, read by all
        return counts

    def engine_packets(self) -> dict[str, int]:
        """Packets each engine forwarded (encapsulated, decapsulated, re-encapsulated):
        ``main``, ``worker1``...; how the kernel spread the flows."""

        def forwarded(counts: dict[str, dict[str, int]]) -> int:
            packets = counts.get("packets", {})
            return sum(packets.get(k, 0) for k in FORWARDED)

        spread = {"main": forwarded(self.engine.counters())}
        if self.workers is not None:
            for index, counts in self.workers.per_worker().items():
                spread[f"worker{index}"] = forwarded(counts)
        return spread


class RecordRefresh:
    """The RLOCs whose records must be issued again, and the work of issuing them, bounded.

    :meth:`mark` an RLOC address when something its records carry changed (at an RTR, the NAT
    binding of that address); :meth:`run` then issues the records of the map-cache entries
    using it (:meth:`lispd.mapcache.MapCache.using`), each built afresh, so it carries the port
    known when it is issued.  An address no entry uses is not even queued (an entry installed
    later gets its record, with the port of the day, from the map-cache listener).  An address
    marked again while it waits is still one pass; one marked while its pass runs gets another
    pass afterwards (records issued before the change carry the older port).  An entry
    replaced or removed since its pass began is skipped: the listener issued (or removed) its
    record already.

    Each :meth:`run` looks at ``slice_size`` entries at most and, over time, at ``rate`` a
    second (a token bucket holding one slice): many addresses changing at once, or one used
    by very many entries, cost the loop a few milliseconds per turn and a bounded share of a
    core, never a pass over the map-cache.
    """

    def __init__(
        self,
        fast: CompiledPath,
        mapcache: MapCache,
        *,
        rate: float = REFRESH_RATE,
        slice_size: int = REFRESH_SLICE,
    ) -> None:
        if not rate > 0 or slice_size < 1:
            raise ValueError("a record refresh needs rate > 0 and slice_size >= 1")
        self.fast = fast
        self.mapcache = mapcache
        self.rate = float(rate)
        self.slice_size = slice_size
        self.issued = 0  # records issued again, in all
        self._pending: OrderedDict[IPAddress, None] = OrderedDict()  # addresses waiting
        self._address: IPAddress | None = None  # the running pass's address ...
        self._entries: list[MapCacheEntry] = []  # ... its entries when it began ...
        self._next = 0  # ... and the next one to look at
        self._tokens = float(slice_size)
        self._last: float | None = None

    def __len__(self) -> int:
        """Addresses still to be issued again, the one whose pass runs included."""
        return len(self._pending) + (self._next < len(self._entries))

    def mark(self, address: IPAddress) -> None:
        """The records of the entries using ``address`` are stale: issue them again."""
        if self.mapcache.uses(address):
            self._pending[address] = None

    def run(self, now: float) -> float | None:
        """Issue what one turn and the rate allow at ``now``.  Returns None when nothing is
        left, else the seconds to wait before the next call (until a whole slice is allowed
        again)."""
        if self._last is not None:
            refill = (now - self._last) * self.rate
            self._tokens = min(float(self.slice_size), self._tokens + max(0.0, refill))
        self._last = now
        budget = min(self.slice_size, int(self._tokens))
        looked = 0
        while looked < budget:
            if self._next >= len(self._entries):
                if not self._pending:
                    break
                self._address, _ = self._pending.popitem(last=False)
                self._entries, self._next = self.mapcache.using(self._address), 0
                continue
            chunk = self._entries[self._next : self._next + budget - looked]
            self._next += len(chunk)
            looked += len(chunk)
            assert self._address is not None
            self.issued += self.fast.reissue(self.mapcache.still_using(self._address, chunk))
        if self._next >= len(self._entries):
            self._address, self._entries, self._next = None, [], 0
        self._tokens -= looked
        if not self:
            return None
        return max(0.0, (self.slice_size - self._tokens) / self.rate)


def merge_counts(into: dict[str, Any], extra: dict[str, dict[str, int]]) -> None:
    """Add the engine's packet and drop counters to a stats snapshot (zeros left out)."""
    for section in ("packets", "drops"):
        target = into.setdefault(section, {})
        for key, value in extra.get(section, {}).items():
            if value:
                target[key] = target.get(key, 0) + value
    into["fastpath"] = dict(extra.get("fastpath", {}))
