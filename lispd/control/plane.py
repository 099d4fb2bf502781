"""The control plane of one node: decodes what arrives on UDP 4342, hands each message to the
machine that the node's roles run, and gathers what they want done.

Sans-IO like the machines it drives: datagrams and the time go in, a :class:`ControlResult`
(datagrams to send, map-cache entries to install, held packets to push through the ITR again)
comes out.  The daemon does the I/O.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address

from lispd.control.infoserver import InfoResponder
from lispd.control.mapresolver import MapResolver
from lispd.control.mapserver import MapServer
from lispd.control.messagelog import MessageLog
from lispd.control.nat import NatClient, NatStatus
from lispd.control.natdraft import DraftInfoResponder, DraftNatClient
from lispd.control.outputs import SendControl, SendData
from lispd.control.prober import Prober, RlocChange
from lispd.control.registrar import Registrar
from lispd.control.resolver import Resolver
from lispd.control.responder import MapReplier, SmrSender
from lispd.ddt.authority import DdtNode
from lispd.ddt.leaf import DdtLeaf
from lispd.ddt.resolver import DdtResolver
from lispd.mapcache import MapCacheEntry
from lispd.wire.address import max_mask_len, split_eid
from lispd.wire.control import decode_control
from lispd.wire.ecm import EncapsulatedControl
from lispd.wire.errors import WireError
from lispd.wire.info import InfoMessage
from lispd.wire.mapreferral import MapReferral
from lispd.wire.mapregister import MapNotify, MapRegister
from lispd.wire.mapreply import MapReply
from lispd.wire.maprequest import MapRequest

log = logging.getLogger("lispd.control")

IPAddress = IPv4Address | IPv6Address


@dataclass
class ControlResult:
    """What the daemon must do after a control-plane input."""

    sends: list[SendControl | SendData] = field(default_factory=list)
    installs: list[MapCacheEntry] = field(default_factory=list)
    released: list[tuple[int, bytes]] = field(default_factory=list)  # (iid, held packet)
    dropped: int = 0  # held packets given up (already counted by the resolver)
    rloc_changes: list[RlocChange] = field(default_factory=list)  # probed RLOCs up/down
    nat_status: NatStatus | None = None  # NAT discovery learned something new


@dataclass
class ControlPlane:
    """The machines this node runs (None for a role it does not have)."""

    resolver: Resolver | None = None
    registrar: Registrar | None = None
    replier: MapReplier | None = None
    smr: SmrSender | None = None
    map_server: MapServer | None = None
    map_resolver: MapResolver | None = None
    prober: Prober | None = None
    nat: NatClient | None = None
    info_responder: InfoResponder | None = None
    ddt_node: DdtNode | None = None  # the ddt-node role
    ddt_leaf: DdtLeaf | None = None  # every Map-Server: answers DDT Map-Requests for its sites
    ddt_resolver: DdtResolver | None = None  # a Map-Resolver with [ddt] roots
    # Whether the ITR's map-cache holds a mapping for (iid, EID): an SMR is only acted on for
    # a mapping we actually cache (the daemon sets this; the resolver cannot see the cache).
    is_cached: Callable[[int, IPAddress], bool] = lambda _iid, _eid: False
    drops: Counter[str] = field(default_factory=Counter)
    # DEBUG lines for every control message in and out (rate-limited); the daemon logs what
    # it sends and what arrives in data packets through it too.
    messages: MessageLog = field(default_factory=MessageLog)

    def machines(self) -> list[object]:
        """Every machine present, for counters and deadlines."""
        return [
            m
            for m in (
                self.resolver,
                self.registrar,
                self.replier,
                self.smr,
                self.map_server,
                self.map_resolver,
                self.prober,
                self.nat,
                self.info_responder,
                self.ddt_node,
                self.ddt_leaf,
                self.ddt_resolver,
            )
            if m is not None
        ]

    # --- inputs -------------------------------------------------------------------------------

    def on_datagram(
        self,
        data: bytes,
        src: str,
        sport: int,
        now: float,
        ttl: int | None = None,
        *,
        path: str | None = "control",
        dst: str | None = None,
    ) -> ControlResult:
        """One datagram received on a LISP control socket from ``src``:``sport`` (``ttl``: the
        IP TTL / hop limit it arrived with, when known: RLOC probing counts hops with it).
        ``path`` names where it came from in the DEBUG message log (None: the caller logged
        it already).  ``dst`` is the local address it was sent to, when known: an RLOC-probe's
        answer names it as the probed locator."""
        try:
            msg = decode_control(data)
        except WireError as exc:
            self.drops["control-" + exc.reason] += 1
            if path is not None:
                self.messages.malformed(data, exc, src, sport, now, path=path)
            return ControlResult()
        if path is not None:
            self.messages.received(msg, src, sport, now, path=path)
        source = ip_address(src)
        if isinstance(msg, MapReply):
            return self._map_reply(msg, source, now, ttl)
        if isinstance(msg, MapRequest):
            local = ip_address(dst) if dst is not None else None
            return self._map_request(msg, sport, source, now, ttl, local)
        if isinstance(msg, EncapsulatedControl):
            return self._ecm(msg, source, sport, now)
        if isinstance(msg, MapRegister):
            if self.map_server is None:
                return self._unexpected("map-register")
            return ControlResult(
                list(self.map_server.on_map_register(data, msg, source, sport, now))
            )
        if isinstance(msg, MapNotify):
            if msg.ack:
                return self._unexpected("map-notify-ack")
            if self.registrar is None:
                return self._unexpected("map-notify")
            return ControlResult(list(self.registrar.on_map_notify(data, msg, source, now)))
        if isinstance(msg, InfoMessage):
            if msg.reply:
                if self.nat is None:
                    return self._unexpected("info-reply")
                if isinstance(self.nat, DraftNatClient):  # verifies the reply's HMAC
                    return ControlResult(nat_status=self.nat.on_info_reply(msg, source, now, data))
                return ControlResult(nat_status=self.nat.on_info_reply(msg, source, now))
            responder = self.info_responder
            if responder is None:
                return self._unexpected("info-request")
            if isinstance(responder, DraftInfoResponder):  # verifies authenticated requests
                return ControlResult(list(responder.answer(data, msg, source, sport, now)))
            return ControlResult(list(responder.on_info_request(msg, source, sport, now)))
        if isinstance(msg, MapReferral):
            if self.ddt_resolver is None:
                return self._unexpected("map-referral")
            return ControlResult(list(self.ddt_resolver.on_map_referral(msg, source, now)))
        return self._unexpected(type(msg).__name__.lower())

    def _unexpected(self, what: str) -> ControlResult:
        self.drops[f"control-unexpected-{what}"] += 1
        return ControlResult()

    def _map_reply(
        self, msg: MapReply, src: IPAddress, now: float, ttl: int | None = None
    ) -> ControlResult:
        if msg.probe:
            if self.prober is None:
                return self._unexpected("probe-reply")
            change = self.prober.on_map_reply(msg, src, now, ttl)
            return ControlResult(rloc_changes=[change] if change is not None else [])
        if self.resolver is None:
            return self._unexpected("map-reply")
        result = self.resolver.on_map_reply(msg, src, now)
        return ControlResult(
            installs=list(result.installs), released=list(result.released), dropped=result.dropped
        )

    def _map_request(
        self,
        msg: MapRequest,
        sport: int,
        src: IPAddress,
        now: float,
        ttl: int | None = None,
        dst: IPAddress | None = None,
    ) -> ControlResult:
        if msg.smr:
            if self.resolver is None:
                return self._unexpected("smr")
            iid, network = split_eid(msg.source_eid, max_mask_len(msg.source_eid) or 0)
            if network is None or not self.is_cached(iid, network.network_address):
                self.drops["smr-not-cached"] += 1
                return ControlResult()
            return ControlResult(list(self.resolver.on_smr(msg, src, now)))
        if self.replier is None:
            return self._unexpected("map-request")
        return ControlResult(list(self._answer(msg, sport, src, now, ttl, dst)))

    def _answer(
        self,
        msg: MapRequest,
        port: int,
        src: IPAddress,
        now: float,
        ttl: int | None = None,
        dst: IPAddress | None = None,
    ) -> list[SendControl]:
        """The ETR answers; an SMR-invoked request also tells the SMR sender that ITR reacted."""
        assert self.replier is not None
        if msg.smr_invoked and self.smr is not None:
            self.smr.saw_invoked(msg.itr_rlocs)
        return self.replier.on_map_request(msg, port, src, now, ttl, dst)

    def _ddt_ecm(
        self, ecm: EncapsulatedControl, src: IPAddress, sport: int, now: float
    ) -> ControlResult:
        """A DDT-originated request: the Map-Server answers for its sites, the DDT node for
        the rest (or the Map-Server says it is not authoritative)."""
        if self.ddt_leaf is not None:
            sends = self.ddt_leaf.on_ecm(ecm, src, sport, now, last_word=self.ddt_node is None)
            if sends is not None:
                return ControlResult(list(sends))
        if self.ddt_node is not None:
            return ControlResult(list(self.ddt_node.on_ecm(ecm, src, sport, now)))
        return self._unexpected("ddt-ecm")

    def _ecm(
        self, ecm: EncapsulatedControl, src: IPAddress, sport: int, now: float
    ) -> ControlResult:
        inner = ecm.message
        if ecm.ddt and not ecm.to_etr:
            return self._ddt_ecm(ecm, src, sport, now)
        if self.ddt_resolver is not None and not ecm.to_etr:
            return ControlResult(list(self.ddt_resolver.on_ecm(ecm, now, src)))
        if ecm.to_etr or (self.map_resolver is None and self.map_server is None):
            # A Map-Server forwarded a request to us as the ETR (or we are only an ETR).
            if self.replier is None or not isinstance(inner, MapRequest):
                return self._unexpected("ecm")
            return ControlResult(list(self._answer(inner, ecm.sport, src, now)))
        if self.map_resolver is not None:
            return ControlResult(list(self.map_resolver.on_ecm(ecm, now, src)))
        assert self.map_server is not None
        sends = self.map_server.on_map_request(ecm, now)
        if sends is None:
            self.drops["ecm-not-registered"] += 1
            return ControlResult()
        return ControlResult(list(sends))

    # --- time ---------------------------------------------------------------------------------

    def on_timer(self, now: float) -> ControlResult:
        """Retransmissions, periodic registrations, expiries that are due at ``now``."""
        result = ControlResult()
        if self.resolver is not None:
            sends, dropped = self.resolver.on_timer(now)
            result.sends += sends
            result.dropped += dropped
        if self.registrar is not None:
            result.sends += self.registrar.on_timer(now)
        if self.smr is not None:
            result.sends += self.smr.on_timer(now)
        if self.prober is not None:
            sends, changes = self.prober.on_timer(now)
            result.sends += sends
            result.rloc_changes += changes
        if self.nat is not None:
            result.sends += self.nat.on_timer(now)
        if self.ddt_resolver is not None:
            result.sends += self.ddt_resolver.on_timer(now)
        if self.map_server is not None:
            self.map_server.expire(now)
        return result

    def next_deadline(self) -> float | None:
        """The earliest time a machine wants :meth:`on_timer` called."""
        deadlines = [
            d
            for m in (
                self.resolver,
                self.registrar,
                self.smr,
                self.map_server,
                self.prober,
                self.nat,
                self.ddt_resolver,
            )
            if m is not None and (d := m.next_deadline()) is not None
        ]
        return min(deadlines, default=None)

    def counters(self) -> dict[str, int]:
        """Every machine's drop counters, merged, for ``show stats``."""
        merged: Counter[str] = Counter(self.drops)
        for machine in self.machines():
            merged.update(getattr(machine, "drops", {}))
        return dict(merged)
