"""An in-memory network of lispd :class:`~lispd.node.Node` objects on a fake clock.

What it is for
--------------
Multi-node LISP scenarios (registration, resolution, SMR, RLOC probing, NAT traversal,
Explicit Locator Paths) in milliseconds, without root, namespaces, sockets or asyncio: each
node is the real sans-IO core of lispd, built from a configuration parsed by lispd's own loader;
the harness plays the part of the daemon shell (:mod:`lispd.daemon`) and of the underlay
between them, in the manner of aioquic's ``roundtrip``/``transfer`` tests and h11's
``ConnectionPair``.

- Every node owns its underlay addresses (``[underlay] rlocs`` of its configuration).  What a
  node asks to send (:class:`~lispd.node.actions.SendDatagram`,
  :class:`~lispd.node.actions.SendEncap`) becomes a :class:`Datagram` from the right source
  address and port (4342 "control", 4341 "data" or an encapsulation's ``data_port``, 2434
  "trace", else one of the node's 8 pool ports chosen by the flow hash, as the daemon's
  :class:`~lispd.io.udp.Sender` does) and is delivered, after the link's delay, to the node
  owning the destination address, through the entry point of the destination port (4341
  :meth:`~lispd.node.Node.data_datagram`, 4342 :meth:`~lispd.node.Node.control_datagram`, 2434
  :meth:`~lispd.node.Node.trace_datagram`).  Every send is accounted to the node as a success
  (``node.account(action, None)``), so its counters count as in the daemon.
- A datagram to an address nobody owns, to a node taken off the network, to a port nobody
  listens on, or refused by a NAT is *lost*: recorded in :attr:`Network.lost` with the reason.
- :class:`~lispd.node.actions.WriteTun` packets are "delivered to the host": decoded into
  :class:`~tests.sim.packets.InnerPacket` in :attr:`SimNode.delivered`.  A node added with
  ``answer_pings=True`` has hosts that answer ICMP echo requests to its local EIDs (the reply
  goes back into the node's TUN at once).
- :class:`Nat`: an endpoint-independent-mapping NAT ("home NAT") in front of the nodes added
  ``behind=`` it; inbound datagrams pass only to existing mappings, which may time out.
- Time is fake: :meth:`Network.run` / :meth:`Network.advance` fire each node's
  :meth:`~lispd.node.Node.handle_timer` at its :meth:`~lispd.node.Node.get_timer` deadline and
  deliver datagrams, all in time order; :meth:`Network.settle` runs until no datagram is in
  flight.  Nonces come from seeded generators: a run is reproducible.

Writing a scenario
------------------
A scenario is a plain pytest function (no fixtures, no root): build the nodes from
configurations (:mod:`tests.configs`, the tests' one lispd.conf builder; :mod:`tests.sim.plan`
has the address plan and its sites; :mod:`tests.sim.worlds` the usual small worlds and the
tables of an xTR registering with and resolving through the plan's Map-Server), let fake time
run, inject packets from the hosts, and assert on what happened::

    from tests import configs
    from tests.sim.network import Network
    from tests.sim.packets import icmp_echo
    from tests.sim.plan import EID_SPACE, H1, H2, MS, SITE1, SITE2, XTR1, XTR2

    net = Network()                                   # 1 ms links, clock at 1000.0
    ms = net.add_node("ms", configs.msmr("ms", [MS], [SITE1.table(), SITE2.table()]))
    for name, rloc, site in (("xtr1", XTR1, SITE1), ("xtr2", XTR2, SITE2)):
        net.add_node(name, configs.xtr(name, [rloc], site.prefixes,
                                       map_server=[configs.map_server(MS, site.key)],
                                       map_cache=[configs.resolve(p) for p in EID_SPACE],
                                       map_resolver=configs.addresses(MS)))
    net.advance(1.0)                                  # registered and acknowledged
    assert len(ms.sites()) == 4
    net.inject("xtr1", icmp_echo(H1, H2))             # host H1 -> xtr1's TUN
    net.settle()                                      # resolved, released, delivered
    assert [(str(p.src), str(p.dst)) for p in net["xtr2"].delivered] == [(H1, H2)]

Nodes are started when added (at the network's current time: add the mapping system first,
or the first messages to it are lost); inject inner packets with :meth:`Network.inject` (and
plain UDP from a program on a node with :meth:`Network.send_from`, received by
:meth:`Network.listen`); change a node's configuration with :meth:`Network.reload`; cut a node
off with :meth:`Network.take_down` (it keeps running, nothing reaches it or leaves it) and
:meth:`Network.bring_up`; drop chosen datagrams with :attr:`Network.drop_if`; put a NAT in
front of nodes with :meth:`Network.add_nat` and ``add_node(..., behind=nat)``.  Assert on
outcomes: :attr:`SimNode.delivered`, the node's counters (:meth:`SimNode.packets`,
:meth:`SimNode.drops`), its map-cache (:meth:`SimNode.lookup`, :meth:`SimNode.map_cache`), the
Map-Server's registrations (:meth:`SimNode.sites`), the datagrams on the wire
(:attr:`Network.sent`, :meth:`Network.datagrams`, :meth:`Datagram.inner`) and the losses
(:attr:`Network.lost`, :meth:`Network.lost_reasons`), never merely on the absence of an
exception.  Keep each scenario to milliseconds of real time: fake time is free, so use short
protocol intervals only where the scenario waits for them.

What it does not model: the compiled fast path (the node's Python path is the reference; the
engine actions :class:`~lispd.node.actions.RouteAdd` etc. are kept in
:attr:`SimNode.other_actions`), the kernel's routing into the TUN (what is injected is what the
TUN would have handed over), fragmentation and MTUs, ICMP errors, and time spent computing.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from lispd.api import views
from lispd.config import Config, parse_config
from lispd.mapcache import MapCacheEntry
from lispd.node import DATA_ROLES, Node
from lispd.node.actions import (
    Action,
    ReturnTrace,
    SendDatagram,
    SendEncap,
    WriteTun,
)
from lispd.wire.data import LISP_CONTROL_PORT, LISP_DATA_PORT
from lispd.wire.trace import TRACE_PORT
from tests.configs import toml
from tests.sim.packets import InnerPacket, decode_lisp_data, parse_inner

Address = IPv4Address | IPv6Address

START = 1000.0  # the fake clock's first reading (a monotonic clock is never 0 in practice)
WALL_CLOCK_START = 1_700_000_000.0  # the Unix time trace records show at the start
DEFAULT_DELAY = 0.001  # seconds a datagram spends on a link
DEFAULT_TTL = 64  # TTL / hop limit of a datagram whose sender gives none (plain sockets)
POOL_SIZE = 8  # outer source ports per node and family for encapsulated data (the daemon's)
POOL_BASE = 50000  # the first of them
MAX_TIMER_FIRINGS = 10_000  # one node's timer firing at one instant: a deadline that never moves

_PORT_NAMES = {LISP_DATA_PORT: "data", LISP_CONTROL_PORT: "control", TRACE_PORT: "trace"}
_VIA_PORTS = {"data": LISP_DATA_PORT, "control": LISP_CONTROL_PORT, "trace": TRACE_PORT}


@dataclass(frozen=True)
class Datagram:
    """A UDP datagram on the wire, as its sender addressed it (before any NAT) or, for
    :attr:`Network.received`, as it arrived (after NATs)."""

    time: float
    sender: str  # node name
    src: Address
    sport: int
    dst: Address
    dport: int
    payload: bytes
    ttl: int = DEFAULT_TTL
    tos: int = 0

    @property
    def kind(self) -> str:
        """The kind: "data", "control", "trace" (by destination port, else by source port: to a
        NAT's translated port) or "other"."""
        return _PORT_NAMES.get(self.dport) or _PORT_NAMES.get(self.sport, "other")

    @property
    def control_in_data(self) -> bool:
        """A control message in the data path (LISP data header with instance-ID 0xFFFFFF:
        NAT keepalives, RLOC probes through NATs)."""
        payload = self.payload
        return (
            self.kind == "data"
            and len(payload) > 8
            and bool(payload[0] & 0x08)  # the I flag
            and payload[4:7] == b"\xff\xff\xff"
        )

    def inner(self) -> InnerPacket:
        """The inner packet of a LISP data datagram (not :attr:`control_in_data`)."""
        if self.control_in_data:
            raise ValueError("a control message in the data path, no inner packet")
        return decode_lisp_data(self.payload)[1]


@dataclass(frozen=True)
class Lost:
    """A datagram that reached nobody, and why."""

    datagram: Datagram
    reason: str


@dataclass(frozen=True)
class HostPacket(InnerPacket):
    """A packet a node wrote to its TUN (delivered to its host, or forwarded natively by a
    PETR), decoded, with when and where."""

    time: float = 0.0
    node: str = ""


@dataclass
class _Mapping:
    public_port: int
    private: tuple[Address, int]
    last_used: float
    peers: set[tuple[Address, int]] = field(default_factory=set)


class Nat:
    """An endpoint-independent-mapping NAT (RFC 4787 "EIM"): every datagram from a private
    (address, port) leaves from ``public`` and one allocated port, whatever its destination.
    Inbound datagrams to ``public`` pass only to an existing mapping: from anyone
    (``filtering="endpoint-independent"``) or only from (address, port) pairs the mapping sent
    to (``"address-and-port-dependent"``, a typical home NAT).  A mapping unused (outbound) for
    ``timeout`` seconds is forgotten; ``None``: never."""

    def __init__(
        self,
        name: str,
        public: Address,
        *,
        timeout: float | None = None,
        first_port: int = 20000,
        filtering: str = "endpoint-independent",
    ) -> None:
        if filtering not in ("endpoint-independent", "address-and-port-dependent"):
            raise ValueError(f"unknown filtering {filtering!r}")
        self.name = name
        self.public = public
        self.timeout = timeout
        self.filtering = filtering
        self._next_port = first_port
        self.by_private: dict[tuple[Address, int], _Mapping] = {}
        self.by_port: dict[int, _Mapping] = {}
        self.stats: Counter[str] = Counter()

    def _expire(self, now: float) -> None:
        if self.timeout is None:
            return
        for key, mapping in list(self.by_private.items()):
            if now - mapping.last_used >= self.timeout:
                del self.by_private[key]
                del self.by_port[mapping.public_port]
                self.stats["expired"] += 1

    def outbound(self, src: Address, sport: int, dst: Address, dport: int, now: float) -> int:
        """The public port a datagram from ``src``:``sport`` leaves from (a new mapping when
        there is none)."""
        self._expire(now)
        key = (src, sport)
        mapping = self.by_private.get(key)
        if mapping is None:
            port = self._next_port
            self._next_port += 1
            mapping = _Mapping(port, key, now)
            self.by_private[key] = mapping
            self.by_port[port] = mapping
            self.stats["created"] += 1
        mapping.last_used = now
        mapping.peers.add((dst, dport))
        self.stats["outbound"] += 1
        return mapping.public_port

    def inbound(
        self, src: Address, sport: int, port: int, now: float
    ) -> tuple[Address, int] | None:
        """The private (address, port) a datagram from ``src``:``sport`` to ``public``:``port``
        goes to, or None when the NAT drops it."""
        self._expire(now)
        mapping = self.by_port.get(port)
        if mapping is None:
            self.stats["inbound-no-mapping"] += 1
            return None
        if self.filtering != "endpoint-independent" and (src, sport) not in mapping.peers:
            self.stats["inbound-filtered"] += 1
            return None
        self.stats["inbound"] += 1
        return mapping.private

    def reboot(self, first_port: int | None = None) -> None:
        """Forget every mapping (a NAT restarting); new ones start at ``first_port``."""
        self.by_private.clear()
        self.by_port.clear()
        if first_port is not None:
            self._next_port = first_port
        self.stats["reboots"] += 1

    def forget(self, private: str | Address, port: int, first_port: int | None = None) -> None:
        """Forget the one mapping of ``private``:``port`` (its flow timed out, or the NAT
        lost it); the next one allocated gets ``first_port`` when given."""
        mapping = self.by_private.pop((ip_address(private), port))
        del self.by_port[mapping.public_port]
        if first_port is not None:
            self._next_port = first_port
        self.stats["forgotten"] += 1

    def mappings(self) -> dict[tuple[Address, int], int]:
        """Private (address, port) -> public port, of the live mappings."""
        return {key: m.public_port for key, m in self.by_private.items()}


class SimNode:
    """One lispd node in the network: its :class:`Node` and what reached its host."""

    def __init__(
        self,
        network: Network,
        name: str,
        node: Node,
        behind: Nat | None,
        answer_pings: bool,
    ) -> None:
        self.network = network
        self.name = name
        self.node = node
        self.behind = behind
        self.answer_pings = answer_pings
        self.online = True
        self.started = False
        self.delivered: list[HostPacket] = []
        self.other_actions: list[Action] = []  # route and engine actions (no kernel here)
        self.timer_firings = 0

    @property
    def config(self) -> Config:
        return self.node.config

    @property
    def addresses(self) -> tuple[Address, ...]:
        return tuple(self.node.config.underlay.rlocs)

    def address(self, family: int = 4) -> Address:
        """This node's underlay address of ``family``."""
        for address in self.addresses:
            if address.version == family:
                return address
        raise LookupError(f"{self.name} has no IPv{family} address")

    def pool_port(self, flow_hash: int) -> int:
        """The outer source port of an encapsulation (not from the data port): one of the
        node's :data:`POOL_SIZE` pool sockets, picked by the flow hash."""
        return POOL_BASE + flow_hash % POOL_SIZE

    # --- what to assert on --------------------------------------------------------------------

    def packets(self, name: str) -> int:
        """The packet counter ``name`` (e.g. "itr.encap", "etr.decap")."""
        return self.node.counters.packets[name + ".packets"]

    def drops(self) -> dict[str, int]:
        """Every drop counter that is not zero (the node's and its machines')."""
        return {k: v for k, v in views.node_stats(self.node)["drops"].items() if v}

    def sites(self) -> list[dict[str, Any]]:
        """The Map-Server's registrations, as ``lispctl site`` shows them."""
        return views.sites(self.node, self.network.now)

    def map_cache(self) -> dict[str, MapCacheEntry]:
        """The map-cache by "[iid]prefix"."""
        return {f"[{e.iid}]{e.prefix}": e for e in self.node.mapcache.entries()}

    def lookup(self, eid: str, iid: int = 0) -> MapCacheEntry | None:
        """The map-cache entry (longest match) for ``eid``."""
        return self.node.mapcache.lookup(iid, ip_address(eid))

    def received_from(self, src: str | Address) -> list[HostPacket]:
        """Packets delivered to this host from inner source ``src``."""
        address = ip_address(src)
        return [p for p in self.delivered if p.src == address]

    def __repr__(self) -> str:
        return f"SimNode({self.name!r}, {[str(a) for a in self.addresses]})"


@dataclass(order=True)
class _Event:
    time: float
    seq: int
    datagram: Datagram = field(compare=False)


class Network:
    """Nodes, NATs, links and the fake clock; see the module docstring."""

    def __init__(self, *, delay: float = DEFAULT_DELAY, seed: int = 20, start: float = START):
        self.now = start
        self.start_time = start
        self.delay = delay
        self.nodes: dict[str, SimNode] = {}
        self.nats: dict[str, Nat] = {}
        self.sent: list[Datagram] = []  # every datagram sent, as addressed by its sender
        self.received: list[tuple[str, Datagram]] = []  # (node, datagram as it arrived)
        self.lost: list[Lost] = []
        # A test's own loss: a datagram (as sent) for which this returns True is lost.
        self.drop_if: Callable[[Datagram], bool] | None = None
        self._delays: dict[frozenset[str], float] = {}
        self._owners: dict[Address, SimNode] = {}
        self._queue: list[_Event] = []
        self._seq = 0
        self._rng = random.Random(seed)
        # (address, port) -> datagrams received by a program listening there (``listen``).
        self.listeners: dict[tuple[Address, int], list[Datagram]] = {}

    # --- building -----------------------------------------------------------------------------

    def add_nat(self, name: str, public: str | Address, **kwargs: Any) -> Nat:
        """A NAT with public address ``public`` (see :class:`Nat` for ``kwargs``)."""
        address = ip_address(public)
        self._check_free(address)
        nat = Nat(name, address, **kwargs)
        self.nats[name] = nat
        return nat

    def add_node(
        self,
        name: str,
        config: str | Mapping[str, Any] | Config,
        *,
        behind: Nat | str | None = None,
        answer_pings: bool = False,
        start: bool = True,
    ) -> SimNode:
        """A node running ``config`` (lispd.conf text or a :mod:`tests.configs` document,
        parsed by lispd's loader, or a :class:`Config`), owning the addresses of its
        ``[underlay] rlocs``; ``behind``: the NAT it sits behind (its addresses are then
        private ones).  Started now unless ``start`` is False (then call :meth:`start`)."""
        if name in self.nodes:
            raise ValueError(f"node {name!r} exists")
        cfg = self._config(name, config)
        seed = self._rng.getrandbits(64)
        control = random.Random(seed)
        node = Node(
            cfg,
            self.now,
            control_rng=lambda: control.getrandbits(64),
            data_rng=random.Random(seed + 1),
            # Trace records carry a wall-clock timestamp: the fake clock, as Unix time.
            wall_clock=lambda: self.now - self.start_time + WALL_CLOCK_START,
        )
        nat = self.nats[behind] if isinstance(behind, str) else behind
        sim = SimNode(self, name, node, nat, answer_pings)
        for address in sim.addresses:
            self._check_free(address)
        for address in sim.addresses:
            self._owners[address] = sim
        self.nodes[name] = sim
        if start:
            self.start(name)
        return sim

    @staticmethod
    def _config(name: str, config: str | Mapping[str, Any] | Config) -> Config:
        if isinstance(config, Config):
            return config
        text = config if isinstance(config, str) else toml(config)
        return parse_config(text, f"<{name}>")

    def _check_free(self, address: Address) -> None:
        if address in self._owners or any(n.public == address for n in self.nats.values()):
            raise ValueError(f"address {address} is taken")

    def start(self, name: str) -> None:
        """Start node ``name`` now (``add_node(start=False)``)."""
        sim = self.nodes[name]
        if sim.started:
            raise RuntimeError(f"{name} runs already")
        sim.started = True
        sim.node.start(self.now)
        self._transmit(sim)

    def __getitem__(self, name: str) -> SimNode:
        return self.nodes[name]

    def set_delay(self, a: str, b: str, seconds: float) -> None:
        """The one-way delay between nodes ``a`` and ``b`` (both ways)."""
        self._delays[frozenset((a, b))] = seconds

    def take_down(self, name: str) -> None:
        """Cut node ``name`` off the network: it keeps running (timers fire), but nothing it
        sends leaves and nothing reaches it (lost as "node-down")."""
        self.nodes[name].online = False

    def bring_up(self, name: str) -> None:
        """Connect node ``name`` again."""
        self.nodes[name].online = True

    def listen(self, address: str | Address, port: int) -> list[Datagram]:
        """A program on the node owning ``address`` listens on UDP ``port`` (an ``ltr`` client
        waiting for a LISP-Trace error return, say): the datagrams arriving there, as they
        arrive (instead of being lost as "port-unreachable")."""
        return self.listeners.setdefault((ip_address(address), port), [])

    def send_from(
        self, name: str, sport: int, dst: str | Address, dport: int, payload: bytes
    ) -> None:
        """A program on node ``name`` sends a UDP datagram from its port ``sport`` (through
        the node's NAT, if any), now."""
        sim = self.nodes[name]
        target = ip_address(dst)
        src = self._source(sim, target)
        if src is None:
            raise LookupError(f"{name} has no IPv{target.version} address")
        self._send(sim, src, sport, target, dport, payload, DEFAULT_TTL, 0)

    # --- inputs -------------------------------------------------------------------------------

    def inject(self, name: str, packet: bytes) -> None:
        """A host behind node ``name`` sends ``packet``: it enters the node's TUN now."""
        sim = self.nodes[name]
        assert sim.started, f"{name} is not started"
        sim.node.tun_packet(packet, self.now)
        self._transmit(sim)

    def reload(self, name: str, config: str | Mapping[str, Any] | Config) -> Any:
        """Reload node ``name`` with a new configuration (as SIGHUP does); the outcome."""
        sim = self.nodes[name]
        cfg = self._config(name, config)
        outcome = sim.node.reload(cfg, self.now)
        self._transmit(sim)
        return outcome

    # --- the clock ----------------------------------------------------------------------------

    def _next_timer(self) -> tuple[float, SimNode | None]:
        best: tuple[float, SimNode | None] = (float("inf"), None)
        for sim in self.nodes.values():
            if not sim.started:
                continue
            deadline = sim.node.get_timer()
            if deadline < best[0]:
                best = (deadline, sim)
        return best

    def step(self, until: float) -> bool:
        """Run the earliest event (a datagram arriving or a node's timer) due by ``until``;
        False when there is none."""
        deadline, sim = self._next_timer()
        arrival = self._queue[0].time if self._queue else float("inf")
        if min(deadline, arrival) > until:
            return False
        if arrival <= deadline:
            event = heapq.heappop(self._queue)
            self._set_clock(event.time)
            self._deliver(event.datagram)
        else:
            assert sim is not None
            self._set_clock(deadline)
            # A deadline in the past fires now; one that handle_timer never moves would spin.
            sim.timer_firings += 1
            if sim.timer_firings > MAX_TIMER_FIRINGS:
                raise RuntimeError(f"{sim.name}'s timer stays at {deadline} (now {self.now})")
            sim.node.handle_timer(self.now)
            self._transmit(sim)
        return True

    def _set_clock(self, when: float) -> None:
        if when > self.now:
            self.now = when
            for sim in self.nodes.values():
                sim.timer_firings = 0

    def run(self, until: float) -> None:
        """Run every event due by time ``until``, then set the clock to ``until``."""
        while self.step(until):
            pass
        self.now = max(self.now, until)

    def advance(self, seconds: float) -> None:
        """Run the next ``seconds`` of fake time."""
        self.run(self.now + seconds)

    def settle(self, limit: float = 60.0) -> None:
        """Run until no datagram is in flight (timers due meanwhile fire too); at most
        ``limit`` seconds of fake time (then AssertionError: something keeps talking)."""
        end = self.now + limit
        while self._queue:
            if not self.step(end):
                raise AssertionError(f"datagrams still in flight after {limit} s")

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    # --- the shell: performing a node's actions -----------------------------------------------

    def _transmit(self, sim: SimNode) -> None:
        """Perform what ``sim``'s node asked for (as :meth:`lispd.daemon.Daemon.transmit`)."""
        node = sim.node
        actions = node.take_actions()
        while actions:
            for action in actions:
                if isinstance(action, SendEncap):
                    node.account(action, self._send_encap(sim, action))
                elif isinstance(action, SendDatagram):
                    node.account(action, self._send_datagram(sim, action))
                elif isinstance(action, WriteTun):
                    node.account(action, self._write_tun(sim, action))
                elif isinstance(action, ReturnTrace):
                    node.return_trace(action)
                else:
                    sim.other_actions.append(action)
            actions = node.take_actions()

    def _source(self, sim: SimNode, dst: Address) -> Address | None:
        for address in sim.addresses:
            if address.version == dst.version:
                return address
        return None

    def _send_encap(self, sim: SimNode, action: SendEncap) -> str | None:
        out = action.encap
        src = self._source(sim, out.rloc)
        if src is None:
            return "no-socket"
        sport = LISP_DATA_PORT if out.data_port else sim.pool_port(out.flow_hash)
        self._send(sim, src, sport, out.rloc, out.port, out.payload, out.ttl, out.tos)
        return None

    def _send_datagram(self, sim: SimNode, action: SendDatagram) -> str | None:
        src = self._source(sim, action.dst)
        if src is None:
            return "no-socket"
        sport = _VIA_PORTS[action.via]
        self._send(sim, src, sport, action.dst, action.port, action.payload, DEFAULT_TTL, 0)
        return None

    def _write_tun(self, sim: SimNode, action: WriteTun) -> str | None:
        if not sim.node.has_tun:
            return "write failed"
        packet = parse_inner(action.packet)
        sim.delivered.append(HostPacket(**vars(packet), time=self.now, node=sim.name))
        if sim.answer_pings and packet.is_echo_request and self._local_eid(sim, packet.dst):
            sim.node.tun_packet(packet.echo_reply(), self.now)  # performed by our caller's loop
        return None

    @staticmethod
    def _local_eid(sim: SimNode, address: Address) -> bool:
        return any(address in e.prefix for e in sim.node.database.entries())

    # --- the underlay -------------------------------------------------------------------------

    def _send(
        self,
        sim: SimNode,
        src: Address,
        sport: int,
        dst: Address,
        dport: int,
        payload: bytes,
        ttl: int,
        tos: int,
    ) -> None:
        datagram = Datagram(self.now, sim.name, src, sport, dst, dport, bytes(payload), ttl, tos)
        self.sent.append(datagram)
        if not sim.online:
            self._lose(datagram, "node-down")
            return
        if self.drop_if is not None and self.drop_if(datagram):
            self._lose(datagram, "dropped-by-test")
            return
        target = self._owners.get(dst)
        arriving = datagram
        if target is None or target.behind is not sim.behind:
            # Leaving its realm: through the sender's NAT, if any, to the public side.
            if sim.behind is not None:
                nat = sim.behind
                port = nat.outbound(src, sport, dst, dport, self.now)
                arriving = Datagram(
                    self.now, sim.name, nat.public, port, dst, dport, datagram.payload, ttl, tos
                )
            public_target = self._public_target(arriving)
            if isinstance(public_target, str):
                self._lose(datagram, public_target)
                return
            target, arriving = public_target
        delay = self._delays.get(frozenset((sim.name, target.name)), self.delay)
        self._seq += 1
        heapq.heappush(self._queue, _Event(self.now + delay, self._seq, arriving))

    def _public_target(self, dg: Datagram) -> tuple[SimNode, Datagram] | str:
        """Where a datagram on the public side goes: a public node, or through a NAT to a
        private one; else why it is lost."""
        for nat in self.nats.values():
            if nat.public == dg.dst:
                private = nat.inbound(dg.src, dg.sport, dg.dport, self.now)
                if private is None:
                    return "nat-refused"
                address, port = private
                node = self._owners.get(address)
                if node is None:
                    return "nat-to-nobody"
                return node, Datagram(dg.time, dg.sender, dg.src, dg.sport, address, port,
                                      dg.payload, dg.ttl, dg.tos)  # fmt: skip
        node = self._owners.get(dg.dst)
        if node is None:
            return "unknown-address"
        if node.behind is not None:
            return "private-address"  # not routed on the public side
        return node, dg

    def _lose(self, datagram: Datagram, reason: str) -> None:
        self.lost.append(Lost(datagram, reason))

    def _deliver(self, dg: Datagram) -> None:
        sim = self._owners[dg.dst]
        if not sim.online or not sim.started:
            self._lose(dg, "node-down")
            return
        node, now = sim.node, self.now
        ttl = max(dg.ttl - 1, 0)  # one router on the way
        data_sockets = bool(node.config.daemon.roles & DATA_ROLES)  # 4341 and 2434 are open
        if dg.dport == LISP_DATA_PORT and data_sockets:
            node.data_datagram(dg.payload, ttl, dg.tos, str(dg.src), dg.sport, now)
        elif dg.dport == LISP_CONTROL_PORT:
            node.control_datagram(dg.payload, ttl, str(dg.src), dg.sport, now, str(dg.dst))
        elif dg.dport == TRACE_PORT and data_sockets:
            node.trace_datagram(dg.payload, str(dg.src), dg.sport, now)
        elif (dg.dst, dg.dport) in self.listeners:
            self.listeners[(dg.dst, dg.dport)].append(dg)
            self.received.append((sim.name, dg))
            return
        else:
            self._lose(dg, "port-unreachable")
            return
        self.received.append((sim.name, dg))
        self._transmit(sim)

    # --- looking at the wire ------------------------------------------------------------------

    def datagrams(
        self,
        kind: str | None = None,
        *,
        sender: str | None = None,
        dst: str | Address | None = None,
        since: float | None = None,
    ) -> Iterator[Datagram]:
        """Datagrams sent (as addressed by their sender), filtered."""
        target = ip_address(dst) if isinstance(dst, str) else dst
        for dg in self.sent:
            if kind is not None and dg.kind != kind:
                continue
            if sender is not None and dg.sender != sender:
                continue
            if target is not None and dg.dst != target:
                continue
            if since is not None and dg.time < since:
                continue
            yield dg

    def lost_reasons(self) -> Counter[str]:
        """How many datagrams were lost, by reason."""
        return Counter(lost.reason for lost in self.lost)

    def delivered(self) -> Iterable[HostPacket]:
        """Every packet delivered to any host, in node order."""
        for sim in self.nodes.values():
            yield from sim.delivered
