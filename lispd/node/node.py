"""The router's core: one LISP node as a sans-IO object.

A :class:`Node` owns everything a lispd decides with: the map-cache and the local database, the
role logic (ITR/PITR, ETR/PETR, RTR), the control machines (resolver, registrar, prober, NAT
client, Map-Server/Resolver, SMRs), the RTR's NAT bindings, the LISP-Trace state, the counters
and the memory of ITRs that sent us traffic.  It does no I/O and keeps no time of its own (the
time of day in LISP-Trace records comes from an injectable ``wall_clock``):

- inputs are bytes with ``now``: :meth:`tun_packet`, :meth:`data_datagram` (UDP 4341),
  :meth:`control_datagram` (UDP 4342), :meth:`trace_datagram` (UDP 2434), plus
  :meth:`handle_timer` at the deadline :meth:`get_timer` gives, :meth:`start` once and
  :meth:`reload` with a new configuration;
- outputs are :mod:`lispd.node.actions`, taken with :meth:`take_actions`: datagrams to send,
  packets to write to the TUN, routes and engine updates.  The shell performs them and reports
  each send's outcome with :meth:`account`.

The asyncio daemon (:mod:`lispd.daemon`) is the shell around one node; the in-memory harness
(``tests/sim``) wires several nodes together on a fake clock.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any

from lispd.config import Config
from lispd.control.mapcachelog import install_event, log_install, log_removed
from lispd.control.nat import NatStatus, nat_record
from lispd.control.natdraft import DraftRtr, draft_record, ecm_via_rtr, relayed_control
from lispd.control.outputs import SendControl, SendData
from lispd.control.plane import ControlResult
from lispd.control.registrar import MapServerTarget
from lispd.control.responder import database_records
from lispd.dataplane import tracing as trace
from lispd.dataplane.etr import Etr
from lispd.dataplane.inner import inner_destination, inner_source
from lispd.dataplane.itr import Itr
from lispd.dataplane.outputs import Encap, Miss, ToTun
from lispd.dataplane.rtr import Rtr
from lispd.dataplane.tracing import Tracer, is_trace
from lispd.logfmt import kv
from lispd.mapcache import DatabaseEntry, MapCacheEntry, RlocEntry
from lispd.node.actions import (
    Action,
    DatabaseChanged,
    ForgetSources,
    LocalPrefixes,
    NatBindingsChanged,
    PuntAll,
    ReturnTrace,
    RouteAdd,
    RouteRemove,
    SendDatagram,
    SendEncap,
    WriteTun,
)
from lispd.node.build import build_control_plane, build_database, build_tables, rloc_entries
from lispd.node.natbindings import IPNetwork, NatBindings
from lispd.node.reload import plan_reload, update_control_plane
from lispd.node.rlocmark import RlocMarking
from lispd.ratelimit import TokenBucket
from lispd.stats import Counters, DropLog
from lispd.wire.address import split_eid
from lispd.wire.control import decode_control
from lispd.wire.data import (
    DATA_HEADER_LEN,
    IID_CONTROL,
    LISP_CONTROL_PORT,
    LISP_DATA_PORT,
    build_data_header,
    read_data_header,
)
from lispd.wire.ecm import F_RTR, TYPE_ECM, decode_ecm
from lispd.wire.errors import EncodeError, WireError
from lispd.wire.info import InfoMessage
from lispd.wire.ip import UDP_HEADER_LEN, UdpDatagram, parse_ip_header
from lispd.wire.mapregister import (
    N_FOR_RTR,
    TYPE_MAP_NOTIFY,
    TYPE_MAP_REGISTER,
    MapNotify,
    decode_map_notify,
)
from lispd.wire.mapreply import MapReply
from lispd.wire.maprequest import MapRequest, decode_map_request
from lispd.wire.records import EidRecord

log = logging.getLogger("lispd.node")
mapcache_log = logging.getLogger("lispd.mapcache")


def _every_line() -> bool:
    """At ``log-level = "debug"`` every map-cache change gets its line (no rate cap): who
    debugs, or counts the lines (benchmarks/soak.py), wants them all."""
    return mapcache_log.isEnabledFor(logging.DEBUG)


IPAddress = IPv4Address | IPv6Address

DATA_ROLES = frozenset({"itr", "etr", "pitr", "petr", "rtr"})
TUN_ROLES = frozenset({"itr", "etr", "pitr", "petr"})  # an RTR alone needs no TUN
SMR_MEMORY = 300.0  # seconds an ITR that sent us traffic is remembered for SMRs
MAX_RECENT_ITRS = 4096  # ITRs remembered per SMR_MEMORY window (spoofed sources: bounded)
SMR_SAMPLE = DATA_HEADER_LEN + 40  # what an SMR needs of their packet: header, inner source
BINDING_LOG_RATE = 1.0  # "nat binding" lines a second (after a burst of BINDING_LOG_BURST)
BINDING_LOG_BURST = 20.0  # spoofed sources each make a binding: their lines are bounded
# Map-cache entries one timer turn removes at most.  Measured at 1,000,000 entries with the
# compiled listener on the shared 2-core VM (``python -m benchmarks.turn_costs``): about 30 us
# of CPU per removal (prefix table, RLOC index, expiry queue, compiled table; 50-70 us of wall
# time), so a turn's batch costs about 3 ms (median 3.2 ms CPU, 7 ms wall), and 10,000
# expiries a second take 100 short turns, with packets served between them.
EXPIRE_BATCH = 100
# "map-cache expired" lines a second after a burst (each costs ~75 us to format and write):
# thousands expiring at once are summed up in one line a second (EXPIRY_SUMMARY_INTERVAL).
EXPIRY_LOG_RATE = 10.0
EXPIRY_LOG_BURST = 50.0
EXPIRY_SUMMARY_INTERVAL = 1.0

# The drop counted when a send of this kind failed (the socket said no).
SEND_FAILED = {
    "control": "control-send-failed",
    "data": "control-send-failed",
    "trace": "trace-send-failed",
}
# The drop counted when there is no socket of the destination's family for it.
NO_SOCKET = {
    "control": "control-no-socket-for-family",
    "data": "data-control-no-socket",
    "trace": "trace-no-socket-for-family",
}


def control_nonce() -> int:
    """A 64-bit control-plane nonce from the CSPRNG (Map-Request, probe, Info-Request,
    Map-Register, SMR): an attacker who saw any number of them cannot predict the next."""
    return secrets.randbits(64)


@dataclass(frozen=True)
class ReloadOutcome:
    """What a reload applied, and what only a restart can change."""

    applied: tuple[str, ...]
    restart_needed: tuple[str, ...]


class Node:
    """One LISP node's state and decisions; see the module docstring for its inputs and
    outputs."""

    def __init__(
        self,
        config: Config,
        now: float,
        *,
        control_rng: Callable[[], int] = control_nonce,
        data_rng: random.Random | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """``control_rng`` gives every control-plane nonce (the CSPRNG unless a test injects
        one); ``data_rng`` the data header's nonces (prediction is harmless there: a fast
        generator, seeded from the CSPRNG); ``wall_clock`` the time of day LISP-Trace records
        carry (the one clock the node reads itself: a timestamp, never a deadline)."""
        self.config = config
        self.now = now
        self._actions: list[Action] = []
        self.inputs = 0  # inputs handled so far: the shell re-arms its timer after new ones
        self.counters = Counters()
        self.drop_log = DropLog(log, self._clock)
        self.mapcache, self.database = build_tables(config, now)
        self.data_nonces = data_rng or random.Random(secrets.randbits(256))
        self._control_rng = control_rng
        roles = config.daemon.roles
        self.has_tun = bool(roles & TUN_ROLES)
        self.families = frozenset(a.version for a in config.underlay.rlocs)
        local_rlocs: dict[int, IPv4Address | IPv6Address] = {
            a.version: a for a in config.underlay.rlocs
        }
        self.nat_bindings = (
            NatBindings(config.rtr.nat_binding_timeout, config.rtr.max_nat_bindings)
            if "rtr" in roles
            else None
        )
        # Draft-style NAT traversal, RTR side: NATed xTRs registering through us, per xTR-ID.
        self.draft_rtr = (
            DraftRtr(
                config.rtr.ms_rtr_key,
                config.rtr.nat_binding_timeout,
                config.rtr.max_nat_bindings,
                nonce=lambda: self.data_nonces.getrandbits(24),
            )
            if "rtr" in roles
            else None
        )
        # ... xTR side: behind a NAT we register through (RTR, our private RLOC) (None: not).
        self.draft_nat = config.nat_traversal.enabled and config.nat_traversal.style == "draft"
        self.via_rtr: tuple[IPAddress, IPAddress] | None = None
        self.itr = (
            Itr(
                self.mapcache,
                self.database,
                local_rlocs,
                config.underlay.mtu,
                self.counters,
                nonce=lambda: self.data_nonces.getrandbits(24),
                clock=self._clock,
                proxy="pitr" in roles,
                petrs=rloc_entries(config.petrs),
                own_rlocs=config.rtr.public_rlocs,
                nat_port=self._nat_port if self.nat_bindings is not None else None,
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
            wall_clock=wall_clock,
        )
        self.nat_status: NatStatus | None = None
        self.control = build_control_plane(config, self.database, control_rng)
        self.control.is_cached = self._is_cached
        self._binding_log = TokenBucket(BINDING_LOG_RATE, BINDING_LOG_BURST)
        self._bindings_unlogged = 0
        self._removal_log = TokenBucket(EXPIRY_LOG_RATE, EXPIRY_LOG_BURST)
        self._install_log = TokenBucket(EXPIRY_LOG_RATE, EXPIRY_LOG_BURST)
        # Map-cache lines left out, by event (expired, cleared, learned, negative), summed up at ...
        self._removals_unlogged: Counter[str] = Counter()
        self._removal_summary_due = now  # ... this time
        # RLOC up/down changes being shown in the map-cache entries, a slice per timer turn.
        self.rloc_marking = RlocMarking(self.mapcache)
        self._marked_at = -1  # the input (``inputs``) whose handling ran a marking slice
        # ITRs that recently encapsulated to us: outer source -> the start of a payload of
        # theirs (for SMRs), at most MAX_RECENT_ITRS per window.
        self.recent_itrs: dict[str, bytes] = {}
        self.older_itrs: dict[str, bytes] = {}
        self.itrs_rotated = now

    def _clock(self) -> float:
        return self.now

    def _nat_port(
        self, address: IPAddress, iid: int = 0, prefix: IPNetwork | None = None
    ) -> int | None:
        """An RTR's translated port for the NATed xTR at ``address`` serving the map-cache
        entry (``iid``, ``prefix``), or None.  The port learnt from keepalives to our data port
        comes first: they are the very flow (xTR:4341 -> RTR:4341) our data to the xTR
        answers, which a NAT with endpoint-dependent mapping translates to another port than
        the xTR's ECM'd Map-Registers to our control port (the draft binding's port, used
        when there are no keepalives, as from OOR)."""
        bindings = self.nat_bindings
        if bindings is not None:
            port = bindings.port_for(address, iid, prefix)
            if port is not None:
                return port
        draft = self.draft_rtr
        return draft.port_for(address, iid, prefix) if draft is not None else None

    # --- outputs ------------------------------------------------------------------------------

    def take_actions(self) -> list[Action]:
        """What the node asks for since the last call, in order (and forgets them)."""
        actions, self._actions = self._actions, []
        return actions

    def account(self, action: SendEncap | SendDatagram | WriteTun, error: str | None) -> None:
        """The shell performed ``action``: ``error`` is None when it succeeded, else why not
        ("no-socket" when there is no socket for it, or the system's words)."""
        if isinstance(action, SendEncap):
            if error is None:
                self.counters.count(action.count, action.size)
            else:
                self.drop("send-failed")
        elif isinstance(action, WriteTun):
            if error is None:
                if action.count is not None:
                    self.counters.count(action.count, len(action.packet))
            else:
                self.drop("tun-write-failed")
        elif error is None:
            self.counters.count(action.count, action.size)
            if action.message is not None:
                path = "data" if action.via == "data" else "control"
                self.control.messages.sent(
                    action.message,
                    action.dst,
                    action.port,
                    self.now,
                    path=path,
                    offset=action.offset,
                )
        elif error == "no-socket":
            self.drop(NO_SOCKET[action.via])
        else:
            self.drop(SEND_FAILED[action.via], f"{action.dst}:{action.port} {error}")

    def drop(self, reason: str, source: str = "", port: int | None = None) -> None:
        """Count a drop under ``reason`` (and log it, at a rate limit)."""
        self.counters.drop(reason)
        self.drop_log.note(reason, source, port)

    def internal_error(self, source: str) -> None:
        """A bug cost one input: counted, and logged with its traceback at a rate limit."""
        self.counters.drop("internal-error")
        if self.drop_log.allow("log:internal-error"):
            log.exception("internal error handling a packet %s", kv(source=source))

    def _send_encap(self, out: Encap, count: str, size: int) -> None:
        self._actions.append(SendEncap(out, count, size))

    def _write_tun(self, packet: bytes | bytearray, count: str | None) -> None:
        self._actions.append(WriteTun(packet, count))

    # --- life cycle ---------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """The node goes live: probing of PETRs and static entries starts, first
        registrations and NAT discovery go out."""
        self.now = now
        self.inputs += 1
        if self.control.prober is not None:
            for petr in self.config.petrs:
                self._send_control(self.control.prober.watch(petr.address, None, now))
            for entry in self.mapcache.entries():
                self._watch_rlocs(entry)
        self.handle_timer(now)

    def reload(self, new: Config, now: float) -> ReloadOutcome:
        """Move the running node to ``new`` (a validated configuration): what can change
        live is applied at once; settings only a restart can change keep their running
        values and are reported."""
        self.now = now
        self.inputs += 1
        plan = plan_reload(self.config, new)
        self._reconfigure(plan.effective)
        return ReloadOutcome(plan.applied, plan.restart_needed)

    def _reconfigure(self, new: Config) -> None:
        old, now = self.config, self.now
        self.config = new
        self.tracer.node_name = new.daemon.name
        if new.database != old.database or new.registration != old.registration:
            self._apply_database(new)
        fresh = build_control_plane(new, self.database, self._control_rng)
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
        if self.draft_rtr is not None:
            self.draft_rtr.ms_rtr_key = new.rtr.ms_rtr_key
            self.draft_rtr.timeout = new.rtr.nat_binding_timeout
            self.draft_rtr.max_entries = new.rtr.max_nat_bindings
        # Run the machines now: a Map-Server added where there was none registers at once.
        self.handle_timer(now)

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
            if all(p != key[1] for _i, p in after):
                self._actions.append(RouteRemove(key[1]))
        for key, mapping in after.items():
            if before.get(key) == mapping:
                continue
            entry = self._with_probe_state(table.get(*key))  # type: ignore[arg-type]
            self.mapcache.add(entry)
            self._watch_rlocs(entry)
            self._actions.append(RouteAdd(entry.prefix))
            log.info("map-cache static set %s", kv(iid=key[0], prefix=key[1], action=entry.action))

    def _apply_database(self, new: Config) -> None:
        database = build_database(new)
        old_entries = {(e.iid, e.prefix): e for e in self.database.entries()}
        for entry in list(self.database.entries()):
            self.database.remove(entry.iid, entry.prefix)
        for entry in database.entries():
            self.database.add(entry)
        self._actions.append(DatabaseChanged())
        self._actions.append(LocalPrefixes(tuple(e.prefix for e in self.database.entries())))
        changed = [e for e in self.database.entries() if old_entries.get((e.iid, e.prefix)) != e]
        removed = [e for key, e in old_entries.items() if self.database.get(*key) is None]
        for entry in changed:
            log.info("database set %s", kv(iid=entry.iid, prefix=entry.prefix))
        for entry in removed:
            log.info("database removed %s", kv(iid=entry.iid, prefix=entry.prefix))
        ttl = new.registration.record_ttl
        now = self.now
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

    def _solicit(self, changed: list[DatabaseEntry], ttl: int, now: float) -> list[SendControl]:
        smr = self.control.smr
        assert smr is not None
        for rloc, payload in {**self.older_itrs, **self.recent_itrs}.items():
            header = read_data_header(payload)
            inner = payload[DATA_HEADER_LEN:]
            if header is None or len(inner) < 20:
                continue
            smr.saw_traffic(rloc, inner_source(inner), header[0], now)
        records = database_records(changed, tuple(self.config.underlay.rlocs), ttl)
        return smr.solicit(records, now)

    # --- timer --------------------------------------------------------------------------------

    def get_timer(self) -> float:
        """The node's next deadline (``now`` of the :meth:`handle_timer` it wants): ``now``
        itself (or a time before it) while bounded work remains (expired map-cache entries,
        RLOC marking), so that the shell calls again on its next loop turn, after serving
        the packets that wait."""
        if self.rloc_marking:
            return self.now
        candidates = [
            self.control.next_deadline(),
            self.mapcache.next_expiry(),
            self.tracer.next_deadline(),
            self.itrs_rotated + SMR_MEMORY,
        ]
        if self.nat_bindings is not None:
            candidates.append(self.nat_bindings.next_deadline())
        if self.draft_rtr is not None:
            candidates.append(self.draft_rtr.next_deadline())
        if self._removals_unlogged:
            candidates.append(self._removal_summary_due)
        return min(d for d in candidates if d is not None)

    def handle_timer(self, now: float) -> None:
        """Run what is due at ``now``: retransmissions, registrations, probes, expiries.

        Work proportional to the map-cache is bounded per call: at most
        :data:`EXPIRE_BATCH` expired entries are removed and one slice of RLOC marking
        (:class:`~lispd.node.rlocmark.RlocMarking`) is done; :meth:`get_timer` is ``now``
        while more remains.  The control machines run only when one of them is due (the
        prober's pass over its RLOCs is not repeated on every turn of such a backlog)."""
        self.now = now
        self.inputs += 1
        due = self.control.next_deadline()
        if due is not None and due <= now:
            self._apply(self.control.on_timer(now))
        for packet, iid, role in self.tracer.overdue(now):  # still no mapping: say so
            self._trace_failure(packet, iid, role, "map-cache-miss")
        if self.rloc_marking and self._marked_at != self.inputs:
            self.rloc_marking.run()
        expired = self.mapcache.expire(now, limit=EXPIRE_BATCH)
        if expired:
            self._log_removals(expired, "expired", now)
            self._unwatch_unused(r.address for e in expired for r in e.rlocs)
        if self._removals_unlogged and now >= self._removal_summary_due:
            for why, count in sorted(self._removals_unlogged.items()):
                mapcache_log.info("map-cache %s-unlogged %s", why, kv(count=count))
            self._removals_unlogged.clear()
        if self.nat_bindings is not None:
            expired_bindings = self.nat_bindings.expire(now)
            for address in expired_bindings:
                self._log_binding("nat binding expired", now, rloc=address)
            if expired_bindings:
                self._actions.append(NatBindingsChanged(tuple(expired_bindings)))
        if self.draft_rtr is not None:
            self._expire_draft_bindings(now)
        if now - self.itrs_rotated >= SMR_MEMORY:
            self.older_itrs, self.recent_itrs = self.recent_itrs, {}
            self.itrs_rotated = now
            self._actions.append(ForgetSources())

    # --- from the TUN -------------------------------------------------------------------------

    def tun_packet(self, pkt: bytes, now: float) -> None:
        """A packet the kernel routed into the TUN (or the engine left to us)."""
        self.now = now
        self.inputs += 1
        try:
            self._itr_packet(pkt)
        except Exception:  # a bug must cost one packet, never the daemon
            self.internal_error("tun")

    def _itr_packet(self, pkt: bytes, held: bool = False, iid: int | None = None) -> None:
        itr = self.itr
        if itr is None:
            self.drop("itr-disabled")
            return
        traced = is_trace(pkt)
        if held and traced and not self.tracer.release(pkt):
            self.drop("trace-answered")  # it waited too long and was answered map-cache miss
            return
        out = itr.handle(pkt, iid, not self.has_tun)  # no TUN (an RTR): no ICMP to send
        if type(out) is Encap:
            if traced:
                role = self._trace_role(pkt)
                if out.to_petr:  # not an EID: the trace ends here, as in lispers.net
                    self._trace_failure(pkt, iid, role, "native-forward")
                    return
                out = self.tracer.encap(out, role)
            self._send_encap(out, "pitr.encap" if out.pitr else "itr.encap", len(pkt))
        elif type(out) is Miss:
            if held:
                self.drop("resolved-without-mapping")
                if traced:
                    self._trace_failure(pkt, out.iid, self._trace_role(pkt), "map-cache-miss")
            elif traced:
                self._hold_trace(out, pkt, self._trace_role(pkt))
            else:
                self._on_miss(out, pkt)
        elif type(out) is ToTun:
            if self.has_tun:
                self._write_tun(out.packet, None)
            else:
                self.drop("tun-write-failed")
        else:
            reason = out.reason  # type: ignore[union-attr]
            self.drop(reason, "tun")
            if traced:
                self._trace_failure(pkt, iid, self._trace_role(pkt), reason)

    def _trace_role(self, pkt: bytes) -> str:
        """ITR for a packet from one of our EIDs (or as a PITR), RTR for one passing through."""
        itr = self.itr
        if itr is None or itr.proxy:
            return "ITR"
        return "ITR" if itr.instance_for_source(inner_source(pkt)) is not None else "RTR"

    def _trace_failure(self, inner: bytes, iid: int | None, role: str, reason: str) -> None:
        """A trace we cannot forward goes back to the ltr client with our record and why."""
        if iid is None and self.itr is not None:
            iid = self.itr.instance_for_source(inner_source(inner))
        failure = ReturnTrace(inner, iid, role, reason)
        if self.rtr is not None:
            self._actions.append(failure)  # port 2434 is read first (see ReturnTrace)
        else:
            self.return_trace(failure)

    def return_trace(self, failure: ReturnTrace) -> None:
        """The datagram answering ``failure`` goes out (see :class:`ReturnTrace`)."""
        back = self.tracer.failure(failure.inner, failure.iid or 0, failure.role, failure.reason)
        if back is None:
            self.drop("trace-no-return-address")
            return
        payload, address, port = back
        if address.version not in self.families:
            self.drop("trace-no-socket-for-family")
            return
        self._actions.append(
            SendDatagram("trace", payload, address, port, "trace.returned", len(payload))
        )

    def trace_datagram(self, payload: bytes, src: str, sport: int, now: float) -> None:
        """Port 2434: an RTR learns where NATed ltr clients are; nothing else is expected."""
        self.now = now
        self.inputs += 1
        try:
            if self.rtr is not None and self.tracer.learn_client(payload, src, sport):
                self.counters.count("trace.nat-client", len(payload))
            else:
                self.drop("trace-unexpected", src, sport)
        except Exception:  # a bug must cost one packet, never the daemon
            self.internal_error(f"{src}:{sport}")

    def _probe_history(self, rloc: Any) -> tuple[list[float], list[str]] | None:
        prober = self.control.prober
        if prober is None:
            return None
        try:
            state = prober.state(rloc)  # a dict look-up (``watched`` would copy them all)
        except KeyError:
            return None  # not probed
        return list(state.rtts), list(state.hops)

    def _on_miss(self, miss: Miss, pkt: bytes) -> None:
        resolver = self.control.resolver
        if resolver is None:
            self.drop("map-cache-miss", "tun")
            return
        now = self.now
        dst = ip_address(miss.dst)
        self._send_control(resolver.resolve(miss.iid, dst, ip_address(miss.src), now))
        if resolver.hold(miss.iid, dst, pkt, now):
            self.counters.count("itr.held", len(pkt))
        else:
            self.drop("resolve-queue-full", "tun")

    def _hold_trace(self, miss: Miss, inner: bytes, role: str) -> None:
        """A trace whose destination has no mapping yet: resolve it and hold the trace like a
        data packet, so that the first trace to a destination follows the mapping when it
        comes (or ends where the mapping says, "not an EID"), but for at most
        ``tracing.TRACE_HOLD`` seconds: then :meth:`handle_timer` answers it ``? (map-cache
        miss)``.  Without a resolver or room to hold it, it is answered so at once."""
        resolver = self.control.resolver
        if resolver is not None:
            now = self.now
            dst = ip_address(miss.dst)
            self._send_control(resolver.resolve(miss.iid, dst, ip_address(miss.src), now))
            if self.tracer.hold(inner, miss.iid, role, now):
                if resolver.hold(miss.iid, dst, inner, now):
                    self.counters.count("trace.held", len(inner))
                    return
                self.tracer.release(inner)  # not held after all
        self._trace_failure(inner, miss.iid, role, "map-cache-miss")

    def _is_cached(self, iid: int, eid: Any) -> bool:
        entry = self.mapcache.lookup(iid, eid)
        return entry is not None and entry.source != "static"

    # --- from UDP 4341 ------------------------------------------------------------------------

    def data_datagram(
        self, payload: bytes, ttl: int, tos: int, src: str, sport: int, now: float
    ) -> None:
        """One datagram from a 4341 socket (or one the engine left to us): a data-plane
        control message, or data for the ETR or RTR."""
        self.now = now
        self.inputs += 1
        handle = self._rtr_packet if self.rtr is not None else self._etr_packet
        try:
            header = read_data_header(payload)
            if header is not None and header[0] == IID_CONTROL and len(payload) > DATA_HEADER_LEN:
                self._data_control(payload, ttl, src, sport)  # instance-ID 0xFFFFFF
            else:
                handle(payload, ttl, tos, src, sport)
        except Exception:  # a bug must cost one packet, never the daemon
            self.internal_error(f"{src}:{sport}")

    def _etr_packet(self, payload: bytes, ttl: int, tos: int, src: str, sport: int) -> None:
        etr = self.etr
        if etr is None or not self.has_tun:
            self.drop("etr-disabled", src, sport)
            return
        out = etr.handle(payload, ttl, tos)
        if type(out) is ToTun:
            recent = self.recent_itrs
            if src not in recent and len(recent) < MAX_RECENT_ITRS:
                recent[src] = payload[:SMR_SAMPLE]  # not the whole packet, per source
            packet = out.packet
            decap = "petr.decap" if out.petr else "etr.decap"
            if is_trace(packet):
                self._etr_trace(bytes(packet), payload, src, sport, decap)
                return
            self._write_tun(packet, decap)
        else:
            self.drop(out.reason, src, sport)  # type: ignore[union-attr]

    def _etr_trace(
        self, inner: bytes, payload: bytes, src: str, sport: int, decap: str = "etr.decap"
    ) -> None:
        """Stamp the ETR's decap record; at the traced EID's site turn the trace around and
        send it back through our ITR.  One written to the TUN is counted under ``decap``
        (``petr.decap`` for a PETR's)."""
        iid = read_data_header(payload)[0]  # type: ignore[index]
        stamped = self.tracer.decap(inner, iid, "ETR", src, sport)
        back = trace.turn_around_packet(stamped, iid=iid)
        self.counters.count("trace.etr", len(inner))
        if back is None:
            if self.has_tun:
                self._write_tun(stamped, decap)
            return
        self._itr_packet(back, iid=iid)

    def _rtr_packet(self, payload: bytes, ttl: int, tos: int, src: str, sport: int) -> None:
        """The data port of a node with the RTR role: packets for our own EIDs (when also an
        ETR) are decapsulated to the TUN, every other one re-encapsulated."""
        rtr = self.rtr
        assert rtr is not None
        header = read_data_header(payload)
        if self.etr is not None and header is not None:
            dst = inner_destination(memoryview(payload)[DATA_HEADER_LEN:])  # no copy of the packet
            if dst is not None and self.database.contains(header[0], dst):
                self._etr_packet(payload, ttl, tos, src, sport)
                return
        traced = header is not None and is_trace(payload, DATA_HEADER_LEN)
        if traced:
            iid = header[0]  # type: ignore[index]
            stamped = self.tracer.decap(payload[DATA_HEADER_LEN:], iid, "RTR", src, sport)
            payload = payload[:DATA_HEADER_LEN] + stamped
        out = rtr.handle(payload, ttl, tos)
        if type(out) is Encap:
            if traced:
                if out.to_petr:  # not an EID: the trace ends here, as in lispers.net
                    inner = payload[DATA_HEADER_LEN:]
                    self._trace_failure(inner, header[0], "RTR", "native-forward")  # type: ignore[index]
                    return
                out = self.tracer.encap(out, "RTR")
            self._send_encap(out, "rtr.reencap", len(out.payload))
        elif type(out) is Miss:
            if traced:  # held like data; answered map-cache miss if it waits too long
                self._hold_trace(out, out.packet, "RTR")
            else:
                self._on_miss(out, out.packet)
        else:
            reason = "rtr-" + out.reason  # type: ignore[union-attr]
            self.drop(reason, src, sport)
            if traced:
                self._trace_failure(payload[DATA_HEADER_LEN:], header[0], "RTR", reason)  # type: ignore[index]

    def _data_control(self, payload: bytes, ttl: int, src: str, sport: int) -> None:
        """A control message in the data path (instance-ID 0xFFFFFF), the way through NATs:
        an RTR takes NAT keepalives (Info-Requests) from xTRs behind NAT; RLOC probes between
        RTRs and NATed xTRs, and their answers, travel this way too."""
        body = payload[DATA_HEADER_LEN:]
        now = self.now
        if self.draft_nat:
            relayed = relayed_control(body)
            if relayed is not None:  # a Map-Notify our RTR relays (draft NAT traversal)
                self._relayed_control(relayed, src, sport)
                return
        try:
            msg = decode_control(body)
        except WireError as exc:
            self.drop("data-control-" + exc.reason, src, sport)
            self.control.messages.malformed(body, exc, src, sport, now, path="data")
            return
        self.control.messages.received(msg, src, sport, now, path="data")
        address = ip_address(src)
        if isinstance(msg, InfoMessage) and not msg.reply and self.nat_bindings is not None:
            if not sport:  # no binding to port 0: nothing could be sent back there
                self.drop("nat-keepalive-port-zero", src, sport)
                return
            iid, prefix = split_eid(msg.eid, msg.eid_mask_len)
            eid = None if prefix is None else (iid, prefix)
            new = (address, sport) not in self.nat_bindings
            changed = self.nat_bindings.learn(address, sport, now, eid)
            if new or address in changed:
                self._log_binding(
                    "nat binding",
                    now,
                    rloc=address,
                    port=sport,
                    eid=None if prefix is None else f"[{iid}]{prefix}",
                    new=new,
                )
                self.counters.count("rtr.nat-binding-change", len(payload))
            if changed:
                self._actions.append(NatBindingsChanged(tuple(changed)))
            self.counters.count("rtr.nat-keepalive", len(payload))
        elif isinstance(msg, MapRequest) and msg.probe and self.control.replier is not None:
            for send in self.control.replier.on_map_request(msg, sport, address, now, ttl):
                self._send_data_control(send.payload, address, sport)
        elif isinstance(msg, MapReply) and msg.probe:
            self._apply(self.control.on_datagram(body, src, sport, now, ttl, path=None))
        else:
            self.drop("data-control-unexpected", src, sport)

    def _send_data_control(self, message: bytes, dst: IPv4Address | IPv6Address, port: int) -> None:
        """Send a control message from our 4341 socket inside a data header (IID 0xFFFFFF)."""
        if dst.version not in self.families or not self.config.daemon.roles & DATA_ROLES:
            self.drop("data-control-no-socket")
            return
        payload = build_data_header(self.data_nonces.getrandbits(24), IID_CONTROL) + message
        self._actions.append(
            SendDatagram("data", payload, dst, port, "data-control.sent", len(message), message)
        )

    def _probe_port_through_nat(self, send: SendControl) -> int | None:
        """The data port to send an RLOC probe to when it must cross a NAT: to a NATed xTR
        (its translated port, learned by us as RTR) or, from behind a NAT, to our RTRs."""
        payload = send.payload
        if not payload or payload[0] >> 4 != 1 or not payload[0] & 0x02:
            return None  # not a Map-Request with the probe bit
        if self.nat_bindings is not None and self._nat_port(send.dst) is not None:
            # Several xTRs may share the NAT address: the probe goes to the one whose
            # EID-prefix it names (the prober names the entry it watches the RLOC for).
            iid, prefix = 0, None
            try:
                records = decode_map_request(payload).records
            except WireError:
                records = ()
            if records:
                iid, prefix = split_eid(records[0].address, records[0].mask_len)
            port = self._nat_port(send.dst, iid, prefix)
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

    # --- from UDP 4342 ------------------------------------------------------------------------

    def control_datagram(
        self, data: bytes, ttl: int, src: str, sport: int, now: float, dst: str | None = None
    ) -> None:
        """One LISP control message from a 4342 socket (``dst``: the local address it was sent
        to, the socket's, when known)."""
        self.now = now
        self.inputs += 1
        try:
            if self.draft_rtr is not None and self._draft_rtr_datagram(data, src, sport):
                return
            self._apply(self.control.on_datagram(data, src, sport, now, ttl, dst=dst))
        except Exception:  # a bug must cost one message, never the daemon
            self.internal_error(f"{src}:{sport}")

    def _apply(self, result: ControlResult) -> None:
        for entry in result.installs:
            entry = self._with_probe_state(entry)
            victim = self._make_room(entry)
            previous = self.mapcache.get(entry.iid, entry.prefix)  # for the log line
            self.mapcache.add(entry)
            self._watch_rlocs(entry)
            self._log_install(previous, entry, self.now)
            if victim is not None:  # after the install: an RLOC both use stays probed
                self._unwatch_unused(r.address for r in victim.rlocs)
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

    def _make_room(self, entry: MapCacheEntry) -> MapCacheEntry | None:
        """A new learned entry in a map-cache holding ``limits.map-cache-entries`` learned ones
        replaces the one closest to its expiry: that one is returned (None: no eviction)."""
        if self.mapcache.get(entry.iid, entry.prefix) is not None:
            return None  # a refresh
        learned = len(self.mapcache) - len(self.config.map_cache)
        if learned < self.config.limits.map_cache_entries:
            return None
        victim = self.mapcache.evict_soonest()
        if victim is not None:
            self.counters.drop("map-cache-evicted")
            self.drop_log.note("map-cache-evicted", f"[{victim.iid}]{victim.prefix}")
        return victim

    def _send_control(self, sends: Iterable[SendControl | SendData]) -> None:
        for send in sends:
            if self.via_rtr is not None and isinstance(send, SendControl):
                wrapped = self._register_via_rtr(send)
                if wrapped is None:
                    continue
                send = wrapped
            if isinstance(send, SendData):  # a NAT keepalive, from our 4341 socket
                if send.dst.version not in self.families:
                    self.drop("data-control-no-socket")
                    continue
                self._actions.append(
                    SendDatagram(
                        "data",
                        send.payload,
                        send.dst,
                        send.port,
                        send.counter,
                        len(send.payload),
                        send.payload,
                        send.offset,
                    )
                )
                continue
            port = self._probe_port_through_nat(send)
            if port is not None:
                self._send_data_control(send.payload, send.dst, port)
                continue
            if send.dst.version not in self.families:
                self.drop("control-no-socket-for-family")
                continue
            self._actions.append(
                SendDatagram(
                    "control",
                    send.payload,
                    send.dst,
                    send.port,
                    "control.sent",
                    len(send.payload),
                    send.payload,
                )
            )

    # --- RLOC probing of the map-cache --------------------------------------------------------

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
        sends: list[SendControl] = []
        for rloc in entry.rlocs:
            try:
                sends += prober.watch(rloc.address, (entry.iid, entry.prefix), self.now)
            except (ValueError, TypeError):
                continue  # a family we have no RLOC of: never used anyway
        self._send_control(sends)

    def _unwatch_unused(self, candidates: Iterable[Any] | None = None) -> None:
        """Stop probing RLOCs no map-cache entry, PETR or (behind a NAT) RTR of ours refers to
        any more: of ``candidates`` (the RLOCs of entries just removed), or of every watched
        RLOC when None.  One index look-up per RLOC, never a walk over the map-cache."""
        prober = self.control.prober
        if prober is None:
            return
        used: set[Any] = {p.address for p in self.config.petrs}
        if self.itr is not None and self.itr.rtrs is not None:
            used.update(r.address for r in self.itr.rtrs)  # behind a NAT: our RTRs
        rlocs = prober.watched if candidates is None else set(candidates)
        for rloc in rlocs:
            if rloc not in used and not self.mapcache.uses(rloc):
                prober.unwatch(rloc)  # an RLOC not watched: nothing happens

    def _log_install(
        self, previous: MapCacheEntry | None, entry: MapCacheEntry, now: float
    ) -> None:
        """A ``map-cache learned`` / ``negative`` line per install, at the removals' rate (a
        bucket of its own: a million Map-Replies must not write a million lines on the loop;
        every line at debug level);
        those left out are summed up with the removals' (``learned-unlogged`` /
        ``negative-unlogged``).  A refresh (the same mapping again) is a DEBUG line, outside
        the budget."""
        event = install_event(previous, entry)
        if event is None or self._install_log.take(now) or _every_line():
            log_install(previous, entry)
            return
        if not self._removals_unlogged:
            self._removal_summary_due = now + EXPIRY_SUMMARY_INTERVAL
        self._removals_unlogged[event] += 1

    def _log_removals(self, removed: list[MapCacheEntry], why: str, now: float) -> None:
        """A ``map-cache expired`` / ``cleared`` line per entry, at most
        :data:`EXPIRY_LOG_RATE` a second after a burst; those left out are counted and summed
        up (``map-cache expired-unlogged count=N``) at most :data:`EXPIRY_SUMMARY_INTERVAL`
        after the first of them (by :meth:`handle_timer`)."""
        bucket = self._removal_log
        unlogged = self._removals_unlogged
        for entry in removed:
            if bucket.take(now) or _every_line():
                log_removed(entry, why)
                continue
            if not unlogged:
                self._removal_summary_due = now + EXPIRY_SUMMARY_INTERVAL
            unlogged[why] += 1

    def _mark_rlocs(self, state: dict[Any, bool]) -> None:
        """Probing says these RLOCs went up or down: the map-cache entries using them follow,
        so the fast path fails over to the next priority (and back).

        The ITR's RTRs follow at once; the entries through :attr:`rloc_marking`, a bounded
        slice now and one per timer turn after (an RLOC used by 100,000 entries would
        otherwise stall the loop for seconds).  Until its slice comes, an entry still shows
        the RLOC's former state: packets to its EIDs still go to the RLOC that went down (or
        keep avoiding the one that came back) for milliseconds when the RLOC has a few
        thousand entries, a few seconds when it has 100,000 (see
        :mod:`lispd.node.rlocmark`), after the many seconds probing takes to notice.
        Entries installed meanwhile get the prober's state when installed
        (:meth:`_with_probe_state`)."""
        for address, up in state.items():
            self.rloc_marking.mark(address, up)
        self.rloc_marking.run()
        self._marked_at = self.inputs  # handle_timer does not run a second slice this turn
        itr = self.itr
        if itr is not None and itr.rtrs is not None:
            itr.rtrs = tuple(replace(r, up=state.get(r.address, r.up)) for r in itr.rtrs)

    # --- NAT traversal ------------------------------------------------------------------------

    def _apply_nat_status(self, status: NatStatus) -> None:
        """NAT discovery changed what we know: behind a NAT, off-site traffic goes to the RTRs
        and we register the RTRs (and our translated RLOC) with proxy-reply set, since Map-
        Requests cannot reach us through the NAT; not behind one, we are a normal xTR."""
        self.nat_status = status  # logged by the NAT client
        behind = status.behind_nat and bool(status.rtrs)
        if self.itr is not None:
            self.itr.rtrs = tuple(RlocEntry(r, 1, 100) for r in status.rtrs) if behind else None
        self._actions.append(PuntAll(behind))
        prober = self.control.prober
        now = self.now
        if prober is not None and behind:  # probed through the NAT, over the data port
            for rtr in status.rtrs:
                try:
                    self._send_control(prober.watch(rtr, None, now))
                except (ValueError, TypeError):
                    continue
        if self.draft_nat:
            self._choose_rtr(status, behind)
        registrar = self.control.registrar
        if registrar is None:
            return
        registrar.for_rtr = self.via_rtr is not None
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
        if self.via_rtr is not None:
            records = [draft_record(r, self.via_rtr[0]) for r in records]
        elif status is not None and status.behind_nat and status.rtrs:
            records = [nat_record(r, status) for r in records]
        return records

    # --- draft-style NAT traversal (lispd.control.natdraft) ---------------------------------

    def _choose_rtr(self, status: NatStatus, behind: bool) -> None:
        """Behind a NAT, register through the first RTR we have an RLOC of its family for."""
        self.via_rtr = None
        if not behind:
            return
        own = {a.version: a for a in self.config.underlay.rlocs}
        for rtr in status.rtrs:
            if rtr.version in own:
                self.via_rtr = (rtr, own[rtr.version])
                log.info("nat registering through rtr %s", kv(rtr=rtr, private=own[rtr.version]))
                return

    def _register_via_rtr(self, send: SendControl) -> SendControl | SendData | None:
        """Behind a NAT (draft style) a Map-Register for one of our Map-Servers leaves in an
        ECM to the RTR, from our 4341 (None: it cannot, counted); anything else as it is."""
        payload = send.payload
        if not payload or payload[0] >> 4 != TYPE_MAP_REGISTER:
            return send
        if all(ms.address != send.dst for ms in self.config.map_servers):
            return send
        assert self.via_rtr is not None
        rtr, private = self.via_rtr
        try:
            ecm = ecm_via_rtr(payload, private, send.dst)
        except EncodeError:
            self.drop("nat-register-family-mismatch")
            return None
        return SendData(rtr, LISP_CONTROL_PORT, ecm, "nat.register-via-rtr", 0)

    def _relayed_control(self, dg: UdpDatagram, src: str, sport: int) -> None:
        """A control message an RTR relayed to us inside a data packet: a Map-Notify answering
        our registration through it (verified by the registrar with the site key)."""
        now = self.now
        try:
            msg = decode_control(dg.payload)
        except WireError as exc:
            self.drop("data-control-" + exc.reason, src, sport)
            self.control.messages.malformed(dg.payload, exc, src, sport, now, path="data")
            return
        self.control.messages.received(msg, src, sport, now, path="data")
        registrar = self.control.registrar
        itr = self.itr
        from_rtr = itr is not None and any(str(r.address) == src for r in itr.rtrs or ())
        if not isinstance(msg, MapNotify) or registrar is None or not from_rtr:
            self.drop("data-control-unexpected", src, sport)
            return
        self.counters.count("nat.notify-relayed", len(dg.payload))
        self._send_control(registrar.on_map_notify(dg.payload, msg, dg.ip.src, now))

    def _draft_rtr_datagram(self, data: bytes, src: str, sport: int) -> bool:
        """RTR: a NATed xTR's ECM'd Map-Register (R bit) or the Map-Server's Map-Notify for
        it (R bit); False for anything else (the control plane takes it)."""
        rtr = self.draft_rtr
        assert rtr is not None
        if len(data) < 4:
            return False
        kind = data[0] >> 4
        now = self.now
        before = Counter(rtr.drops)
        try:
            return self._draft_rtr_message(rtr, kind, data, src, sport, now)
        finally:  # the machine's refusals are the node's drops (counted, logged)
            for reason, n in (rtr.drops - before).items():
                for _ in range(n):
                    self.drop(reason, src, sport)

    def _draft_rtr_message(
        self, rtr: DraftRtr, kind: int, data: bytes, src: str, sport: int, now: float
    ) -> bool:
        if kind == TYPE_ECM and data[1] & (F_RTR >> 16):
            try:
                ecm = decode_ecm(data)
            except WireError:
                return False  # the control plane counts it
            self.control.messages.received(ecm, src, sport, now, path="control")
            self._send_control(rtr.on_ecm(data, ecm, ip_address(src), sport, now))
            return True
        if kind == TYPE_MAP_NOTIFY and data[0] & (N_FOR_RTR >> 24):
            try:
                notify = decode_map_notify(data)
            except WireError:
                return False
            self.control.messages.received(notify, src, sport, now, path="control")
            out = rtr.on_map_notify(data, notify, ip_address(src), now)
            self._apply(ControlResult(installs=out.installs))
            for send in out.sends:
                # The relayed Map-Notify follows the inner IP and UDP headers we built.
                _ip, ip_len, _end = parse_ip_header(send.payload[DATA_HEADER_LEN:])
                offset = DATA_HEADER_LEN + ip_len + UDP_HEADER_LEN
                self._actions.append(
                    SendDatagram(
                        "control",
                        send.payload,
                        send.dst,
                        send.port,
                        "rtr.notify-relayed",
                        len(send.payload),
                        send.payload,
                        offset,
                    )
                )
            if out.changed:
                self._actions.append(NatBindingsChanged(tuple(out.changed)))
            return True
        return False

    def _expire_draft_bindings(self, now: float) -> None:
        """Forget NATed xTRs (draft style) whose registrations stopped, and their mappings."""
        assert self.draft_rtr is not None
        gone = self.draft_rtr.expire(now)
        for binding in gone:
            log.info("nat binding expired %s", kv(xtr_id=f"0x{binding.xtr_id:032x}"))
            for iid, net in binding.eids:
                entry = self.mapcache.get(iid, net)
                if entry is not None and entry.source == "nat-registration":
                    self.mapcache.remove(iid, net)
                    log_removed(entry, "expired")
        if gone:
            self._actions.append(NatBindingsChanged(tuple({b.translated for b in gone})))

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

    # --- operator commands --------------------------------------------------------------------

    def clear_map_cache(self, iid: int | None, prefix: str | None, now: float) -> int:
        """Remove learned entries (every one, or those of exactly ``prefix``, in every instance
        or in ``iid``); static entries come from the configuration and stay.  How many went.
        Raises ValueError for a malformed instance-ID or prefix."""
        self.now = now
        self.inputs += 1
        if iid is not None and (type(iid) is not int or not 0 <= iid <= 0xFFFFFF):
            raise ValueError(f"instance-id must be an integer in 0..16777215, not {iid!r}")
        if prefix is not None and not isinstance(prefix, str):
            raise ValueError(f"prefix must be a string, not {prefix!r}")
        net = None if prefix is None else ip_network(prefix)  # ValueError when malformed
        mapcache = self.mapcache
        if net is None:  # an operator's clear of everything: a pass over what it clears
            cleared = [
                e for e in mapcache.entries() if e.source != "static" and iid in (None, e.iid)
            ]
        else:  # one prefix: a look-up per instance-ID, not a walk over the map-cache
            found = (
                mapcache.get(i, net) for i in (mapcache.instance_ids() if iid is None else [iid])
            )
            cleared = [e for e in found if e is not None and e.source != "static"]
        for entry in cleared:
            mapcache.remove(entry.iid, entry.prefix)
        self._log_removals(cleared, "cleared", now)
        if cleared:
            self._unwatch_unused(r.address for e in cleared for r in e.rlocs)
        return len(cleared)
