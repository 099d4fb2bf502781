"""NAT traversal as draft-ietf-lisp-nat-traversal describes it (and Open Overlay Router does it).

lispd's other scheme, the lispers.net one (:mod:`lispd.control.nat`,
:mod:`lispd.control.infoserver`), lets the xTR register its translated RLOC itself with
unauthenticated Info messages.  In this one every step is authenticated and the RTR stands in
the middle of the registration:

1. the xTR sends its Map-Server an Info-Request signed with the site key (the key of the
   EID-prefix it names), TTL 0;
2. the Map-Server verifies it with the key of the site allowed to register that EID-prefix and
   answers with an Info-Reply signed with the same key: NAT-traversal LCAF (MS port, ETR port
   and global ETR RLOC = the request's translated source, MS RLOC, RTR list) and a TTL
   (:data:`INFO_REPLY_TTL`, minutes the answer may be kept);
3. the xTR, seeing a global RLOC that is none of its own, registers through an RTR: a
   Map-Register with the I bit (xTR-ID), R bit ("for an RTR"), P and M bits, whose locators are
   the RTR (reachable) and the xTR's private address (local, marked unreachable), signed with
   the site key, inside an ECM with the R bit ("process at RTR"), inner IP private -> Map-Server,
   inner UDP 4342 -> 4342, sent from UDP 4341 to the RTR's 4342, so the NAT state it opens is
   the one the xTR's data (also from 4341) uses;
4. the RTR remembers who sent it (xTR-ID, translated address and port, private address) under
   the Map-Register's nonce and forwards the inner Map-Register unchanged (its site HMAC must
   still verify) from its own 4342 to the Map-Server;
5. the Map-Server, seeing the R bit, answers that RTR with a Map-Notify signed with the site key
   plus an MS-RTR authentication block signed with the key it shares with its RTRs;
6. the RTR verifies the MS-RTR block, records the NAT binding (xTR-ID -> translated
   address:port and private address, plus the EID-prefixes, which it now maps to that
   address:port) and relays the Map-Notify to the xTR inside a LISP data packet with
   instance-ID 0xFFFFFF (inner IP Map-Server -> private address, UDP 4342 -> 4342, the MS-RTR
   block replaced by the empty 4-byte one), from its 4342 to the translated address:port;
7. the xTR accepts that Map-Notify with the site key and sends its traffic through the RTR; its
   periodic re-registrations through the RTR (and keepalives to the RTR's 4341) keep the NAT
   state open.

Here are the machines and helpers of the three roles; :class:`lispd.node.Node` wires them:

- :class:`DraftInfoResponder` (Map-Server): authenticated Info-Requests in, signed Info-Replies
  out; with ``require_auth`` unauthenticated (lispers.net) requests are refused, otherwise they
  are answered as :class:`~lispd.control.infoserver.InfoResponder` does.  Drops:
  ``info-request-unauthenticated``, ``info-request-auth-failed``, ``info-request-bad-eid``,
  ``info-request-unknown-site``, ``info-request-malformed`` (and the base class's).
- :class:`DraftNatClient` (xTR): :class:`~lispd.control.nat.NatClient` with signed requests and
  verified replies (drops ``info-reply-unauthenticated``, ``info-reply-auth-failed``).
- :func:`draft_record`, :func:`ecm_via_rtr`, :func:`relayed_control` (xTR): the registered
  record, the ECM around a Map-Register, the inner packet of a relayed Map-Notify.
- :class:`DraftRtr` (RTR): the pending registrations and the NAT bindings per xTR-ID.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Final

from lispd.config.model import NatTraversalConfig
from lispd.control.infoserver import InfoResponder
from lispd.control.nat import NatClient, NatStatus, _MapServer
from lispd.control.outputs import SendControl
from lispd.control.responder import _Limiter
from lispd.mapcache import MapCacheEntry, RlocEntry
from lispd.wire import auth
from lispd.wire.address import split_eid
from lispd.wire.data import IID_CONTROL, LISP_CONTROL_PORT, build_data_header
from lispd.wire.ecm import F_RTR, TYPE_ECM, EncapsulatedControl
from lispd.wire.errors import EncodeError, WireError
from lispd.wire.info import InfoMessage, decode_info, encode_info_signed
from lispd.wire.ip import (
    IPv4Header,
    IPv6Header,
    UdpDatagram,
    build_udp_datagram,
    parse_ip_header,
    parse_udp_datagram,
)
from lispd.wire.mapregister import MapNotify, MapRegister, decode_map_notify, verify_rtr_auth
from lispd.wire.records import EidRecord, Locator

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

INFO_REPLY_TTL: Final = 10
"""Minutes an xTR may keep what an Info-Reply told it (the draft's Info-Reply TTL; Open Overlay
Router's Map-Server answers 10 too).  lispd's own xTR asks again every ``info-interval``."""

INNER_TTL: Final = 255
"""The TTL / hop limit of the inner IP headers built here (as OOR writes them)."""

PENDING_TIMEOUT: Final = 10.0
"""Seconds an RTR waits for the Map-Notify of a Map-Register it forwarded."""

MAX_PENDING: Final = 4096
"""Forwarded Map-Registers awaiting their Map-Notify at once (the oldest is forgotten)."""

_NAT_TRAVERSAL: Final = NatTraversalConfig()


# --- Map-Server -------------------------------------------------------------------------------


class DraftInfoResponder(InfoResponder):
    """Answers Info-Requests, authenticated ones (draft style) with authenticated replies."""

    def __init__(
        self,
        local_rlocs: Sequence[IPAddress],
        rtrs: Sequence[IPAddress],
        site_keys: Callable[[int, IPNetwork], list[bytes]],
        *,
        require_auth: bool = True,
        reply_ttl: int = INFO_REPLY_TTL,
        rate: float = 10.0,
        burst: float = 20.0,
    ) -> None:
        """``site_keys(iid, prefix)`` gives the keys of the sites allowed to register exactly
        that EID-prefix (:meth:`lispd.control.mapserver.MapServer.site_keys`); with
        ``require_auth`` an Info-Request without authentication is refused, else answered the
        lispers.net way (unsigned).  ``reply_ttl`` is the signed replies' TTL in minutes."""
        super().__init__(local_rlocs, rtrs, rate, burst)
        self.site_keys = site_keys
        self.require_auth = require_auth
        self.reply_ttl = reply_ttl

    def answer(
        self, raw: bytes, msg: InfoMessage, src: IPAddress, sport: int, now: float
    ) -> list[SendControl]:
        """The Info-Request ``msg`` (``raw`` as received) from ``src``:``sport`` at ``now``:
        answered to ``src``:``sport`` when it authenticates (or, without ``require_auth``,
        carries no authentication at all); refused ones are counted in ``drops``."""
        if msg.reply:
            self.drops["info-unexpected-reply"] += 1
            return []
        if msg.key_id == auth.KeyId.NONE:
            if self.require_auth:
                self.drops["info-request-unauthenticated"] += 1
                return []
            return self.on_info_request(msg, src, sport, now)
        if not self._limiter.allow(src, now):  # before the HMAC: a flood costs no hashing
            self.drops["info-request-rate-limited"] += 1
            return []
        try:
            iid, net = split_eid(msg.eid, msg.eid_mask_len)
        except ValueError:
            net = None
        if net is None:
            self.drops["info-request-bad-eid"] += 1
            return []
        keys = self.site_keys(iid, net)
        if not keys:
            self.drops["info-request-unknown-site"] += 1
            return []
        try:
            key = next((k for k in keys if auth.verify(raw, k)), None)
        except WireError:
            self.drops["info-request-malformed"] += 1
            return []
        if key is None:
            self.drops["info-request-auth-failed"] += 1
            return []
        reply = dataclasses.replace(
            self.reply_for(msg, src, sport), key_id=msg.key_id, ttl=self.reply_ttl
        )
        try:
            payload = encode_info_signed(reply, key)
        except EncodeError:
            self.drops["info-reply-unencodable"] += 1
            return []
        self.stats["info-replies-sent"] += 1
        self.stats["info-replies-signed"] += 1
        return [SendControl(src, sport, payload)]


# --- xTR --------------------------------------------------------------------------------------


class DraftNatClient(NatClient):
    """:class:`~lispd.control.nat.NatClient` speaking the draft: its Info-Requests are signed
    with each Map-Server's key (TTL 0), and an Info-Reply counts only when it verifies with the
    key of the Map-Server whose request it answers."""

    def __init__(
        self,
        map_servers: Sequence[IPAddress],
        keys: Mapping[IPAddress, tuple[int, bytes]],
        local_rlocs: Sequence[IPAddress],
        eids: Sequence[tuple[int, IPNetwork]],
        info_interval: float = _NAT_TRAVERSAL.info_interval,
        keepalive_interval: float = _NAT_TRAVERSAL.keepalive_interval,
        rng: Callable[[], int] | None = None,
    ) -> None:
        """As :class:`~lispd.control.nat.NatClient`; ``keys`` maps each Map-Server address to
        its (key-id, key).  Raises ``ValueError`` for a Map-Server without a key."""
        super().__init__(map_servers, local_rlocs, eids, info_interval, keepalive_interval, rng=rng)
        for address in self.map_servers:
            if address not in keys:
                raise ValueError(f"no key for Map-Server {address}")
        self._keys = dict(keys)

    def _request(self, ms: _MapServer, now: float) -> SendControl | None:
        send = super()._request(ms, now)
        if send is None:
            return None
        key_id, key = self._keys[ms.address]
        msg = dataclasses.replace(decode_info(send.payload), key_id=key_id, ttl=0)
        self.stats["requests-signed"] += 1
        return send._replace(payload=encode_info_signed(msg, key))

    def on_info_reply(
        self, msg: InfoMessage, src: IPAddress, now: float, raw: bytes | None = None
    ) -> NatStatus | None:
        """As :meth:`NatClient.on_info_reply`, after checking that a reply to one of our
        Map-Server requests is signed with that Map-Server's key (``raw``: the bytes as
        received; without them, or unsigned, or with a bad HMAC, the reply is refused and the
        request stays outstanding)."""
        if msg.reply:
            ms = self._nonces.get(msg.nonce)
            if ms is not None:
                if msg.key_id == auth.KeyId.NONE or raw is None:
                    self.drops["info-reply-unauthenticated"] += 1
                    return None
                try:
                    ok = auth.verify(raw, self._keys[ms.address][1])
                except WireError:
                    ok = False
                if not ok:
                    self.drops["info-reply-auth-failed"] += 1
                    return None
        return super().on_info_reply(msg, src, now)


def draft_record(record: EidRecord, rtr: IPAddress) -> EidRecord:
    """A database record as an xTR behind a NAT registers it through ``rtr``: the RTR first
    (priority 1, reachable: where the Map-Server sends ITRs), then the xTR's own (private)
    locators, marked unreachable (the RTR learns them; nobody outside can use them)."""
    own = tuple(dataclasses.replace(loc, reachable=False) for loc in record.locators)
    return dataclasses.replace(record, locators=(Locator(rtr, 1, 100), *own))


def _inner_ip(src: IPAddress, dst: IPAddress) -> IPv4Header | IPv6Header:
    if isinstance(src, IPv4Address) and isinstance(dst, IPv4Address):
        return IPv4Header(src, dst, ttl=INNER_TTL)
    if isinstance(src, IPv6Address) and isinstance(dst, IPv6Address):
        return IPv6Header(src, dst, hop_limit=INNER_TTL)
    raise EncodeError(f"{src} and {dst} are not of one address family")


def ecm_via_rtr(register: bytes, private: IPAddress, map_server: IPAddress) -> bytes:
    """The ECM (R bit: "process at RTR") carrying the signed Map-Register bytes ``register``
    from ``private`` (our own RLOC behind the NAT) to ``map_server``, UDP 4342 -> 4342.
    Raises :class:`EncodeError` when the two addresses are of different families."""
    inner = UdpDatagram(
        _inner_ip(private, map_server), LISP_CONTROL_PORT, LISP_CONTROL_PORT, register
    )
    return struct.pack("!I", TYPE_ECM << 28 | F_RTR) + build_udp_datagram(inner)


def relayed_control(body: bytes) -> UdpDatagram | None:
    """The inner IP/UDP datagram of a control message an RTR relayed in a data packet
    (``body``: what follows the data header), when it is one: IPv4 or IPv6, UDP to port 4342.
    None for anything else (such as a control message carried bare)."""
    if not body or body[0] >> 4 not in (4, 6):
        return None
    try:
        dg = parse_udp_datagram(body)
    except WireError:
        return None
    return dg if dg.dport == LISP_CONTROL_PORT else None


def relay_packet(notify: bytes, map_server: IPAddress, private: IPAddress, nonce: int) -> bytes:
    """The data packet (instance-ID 0xFFFFFF) in which an RTR relays the Map-Notify bytes
    ``notify`` to an xTR: inner IP ``map_server`` -> ``private``, UDP 4342 -> 4342."""
    inner = UdpDatagram(
        _inner_ip(map_server, private), LISP_CONTROL_PORT, LISP_CONTROL_PORT, notify
    )
    return build_data_header(nonce & 0xFFFFFF, IID_CONTROL) + build_udp_datagram(inner)


# --- RTR --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DraftBinding:
    """Where an RTR reaches one NATed xTR: its translated address and port (the outer source of
    its ECM'd Map-Register), its private address, and the EID-prefixes the Map-Server
    confirmed for it."""

    xtr_id: int
    translated: IPAddress
    port: int
    private: IPAddress
    map_server: IPAddress
    eids: tuple[tuple[int, IPNetwork], ...]
    refreshed: float
    expires: float


@dataclass(frozen=True, slots=True)
class _Pending:
    xtr_id: int
    translated: IPAddress
    port: int
    private: IPAddress
    at: float


@dataclass
class NotifyOutcome:
    """What :meth:`DraftRtr.on_map_notify` asks for: datagrams, map-cache entries to install
    (the xTR's EID-prefixes -> its translated address), translated addresses whose binding is
    new or moved."""

    sends: list[SendControl] = dataclasses.field(default_factory=list)
    installs: list[MapCacheEntry] = dataclasses.field(default_factory=list)
    changed: list[IPAddress] = dataclasses.field(default_factory=list)


class DraftRtr:
    """The RTR's side: forwards NATed xTRs' Map-Registers, relays their verified Map-Notifies
    and keeps one :class:`DraftBinding` per xTR-ID.

    ``drops``: ``rtr-ecm-not-map-register``, ``rtr-register-not-for-rtr`` (no R bit),
    ``rtr-register-no-xtr-id``, ``rtr-register-bad-port`` (inner UDP not to 4342, or outer
    port 0), ``rtr-no-ms-rtr-key``, ``rtr-register-rate-limited``, ``rtr-register-malformed``,
    ``rtr-register-pending-conflict`` (the nonce of a registration in flight, from another
    sender or xTR-ID), ``rtr-notify-unknown-nonce`` (no forwarded Map-Register of that nonce
    from that Map-Server), ``rtr-notify-not-for-rtr`` (no MS-RTR block), ``rtr-notify-auth-failed``,
    ``rtr-notify-xtr-id-mismatch``, ``rtr-notify-malformed``, ``rtr-notify-unencodable``,
    ``rtr-binding-evicted``.  ``stats``: ``registers-forwarded``, ``notifies-relayed``,
    ``bindings-new``, ``bindings-moved``, ``bindings-expired``.
    """

    def __init__(
        self,
        ms_rtr_key: bytes | None,
        timeout: float,
        max_entries: int,
        *,
        rate: float = 10.0,
        burst: float = 20.0,
        nonce: Callable[[], int] | None = None,
    ) -> None:
        """Verify Map-Notifies with ``ms_rtr_key`` (None: forward nothing); forget a binding
        ``timeout`` seconds after its last confirmed registration; hold at most
        ``max_entries``; forward ``rate`` Map-Registers a second per translated address
        (bursts of ``burst``); ``nonce`` gives the relay packets' data nonces."""
        if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"the binding timeout must be a finite number > 0, not {timeout!r}")
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.ms_rtr_key = ms_rtr_key
        self.timeout = float(timeout)
        self.max_entries = max_entries
        self._limiter = _Limiter(rate, burst)
        self._nonce = nonce or (lambda: 0)
        self._pending: OrderedDict[tuple[IPAddress, int], _Pending] = OrderedDict()
        self._bindings: OrderedDict[int, DraftBinding] = OrderedDict()  # xTR-ID -> binding
        # translated address -> port for entries naming no prefix of ours (the first xTR there)
        self._ports: dict[IPAddress, int] = {}
        # (translated address, instance-ID, EID-prefix) -> port of the xTR confirmed for it
        self._eid_ports: dict[tuple[IPAddress, int, IPNetwork], int] = {}
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()

    # --- queries ------------------------------------------------------------------------------

    def port_for(
        self, address: IPAddress, iid: int = 0, prefix: IPNetwork | None = None
    ) -> int | None:
        """The translated port to encapsulate to ``address`` at for the map-cache entry
        (``iid``, ``prefix``): the port of the xTR the Map-Server confirmed that EID-prefix for
        (several xTRs may share one NAT address), else the address's first; None: no NATed
        xTR there.  Per packet: one or two dict look-ups."""
        if prefix is not None and self._eid_ports:
            port = self._eid_ports.get((address, iid, prefix))
            if port is not None:
                return port
        return self._ports.get(address)

    def bindings(self) -> list[DraftBinding]:
        """Every binding, least recently refreshed first."""
        return list(self._bindings.values())

    def next_deadline(self) -> float | None:
        """When :meth:`expire` has work next (the oldest binding's or pending entry's end)."""
        deadlines = []
        if self._bindings:
            deadlines.append(next(iter(self._bindings.values())).expires)
        if self._pending:
            deadlines.append(next(iter(self._pending.values())).at + PENDING_TIMEOUT)
        return min(deadlines, default=None)

    def states(self, now: float) -> dict[str, object]:
        """JSON-ready bindings and counters (for ``show nat`` on an RTR)."""
        return {
            "bindings": [
                {
                    "xtr-id": f"0x{b.xtr_id:032x}",
                    "translated": f"{b.translated}:{b.port}",
                    "private": str(b.private),
                    "map-server": str(b.map_server),
                    "eids": [f"[{iid}]{net}" for iid, net in b.eids],
                    "expires-in": round(max(0.0, b.expires - now), 3),
                }
                for b in self._bindings.values()
            ],
            "pending": len(self._pending),
            "drops": dict(self.drops),
            "stats": dict(self.stats),
        }

    # --- inputs -------------------------------------------------------------------------------

    def on_ecm(
        self, raw: bytes, ecm: EncapsulatedControl, src: IPAddress, sport: int, now: float
    ) -> list[SendControl]:
        """An ECM with the R bit (``raw`` as received) from ``src``:``sport``: a NATed xTR's
        Map-Register, forwarded unchanged to the Map-Server the inner header names."""
        register = ecm.message
        if not isinstance(register, MapRegister):
            self.drops["rtr-ecm-not-map-register"] += 1
            return []
        if not register.for_rtr:
            self.drops["rtr-register-not-for-rtr"] += 1
            return []
        if register.xtr_id is None:
            self.drops["rtr-register-no-xtr-id"] += 1
            return []
        if ecm.dport != LISP_CONTROL_PORT or not sport:
            self.drops["rtr-register-bad-port"] += 1
            return []
        if self.ms_rtr_key is None:
            self.drops["rtr-no-ms-rtr-key"] += 1
            return []
        if not self._limiter.allow(src, now):
            self.drops["rtr-register-rate-limited"] += 1
            return []
        try:
            _, hlen, _ = parse_ip_header(raw[4:])
        except WireError:
            self.drops["rtr-register-malformed"] += 1
            return []
        inner = raw[4 + hlen + 8 :]  # the Map-Register as the xTR signed it
        map_server = ecm.inner_ip.dst
        key = (map_server, register.nonce)
        pending = _Pending(register.xtr_id, src, sport, ecm.inner_ip.src, now)
        earlier = self._pending.pop(key, None)
        if earlier is not None and dataclasses.replace(earlier, at=now) != pending:
            # Someone else with the nonce of a registration in flight (seen on the path):
            # the first sender keeps it, the Map-Notify goes nowhere else.
            self._pending[key] = earlier
            self.drops["rtr-register-pending-conflict"] += 1
            return []
        self._pending[key] = pending
        while len(self._pending) > MAX_PENDING:
            self._pending.popitem(last=False)
        self.stats["registers-forwarded"] += 1
        return [SendControl(map_server, LISP_CONTROL_PORT, inner)]

    def on_map_notify(
        self, raw: bytes, notify: MapNotify, src: IPAddress, now: float
    ) -> NotifyOutcome:
        """A Map-Notify with the R bit from the Map-Server ``src``: when it answers a
        Map-Register we forwarded and its MS-RTR authentication verifies, the xTR's binding is
        recorded and the Map-Notify relayed to it."""
        out = NotifyOutcome()
        if notify.rtr_auth is None:
            self.drops["rtr-notify-not-for-rtr"] += 1
            return out
        pending = self._pending.get((src, notify.nonce))
        if pending is None:
            self.drops["rtr-notify-unknown-nonce"] += 1
            return out
        key = self.ms_rtr_key
        try:
            ok = key is not None and verify_rtr_auth(raw, key)
        except WireError:
            self.drops["rtr-notify-malformed"] += 1
            return out
        if not ok:
            self.drops["rtr-notify-auth-failed"] += 1
            return out
        if notify.xtr_id != pending.xtr_id:
            self.drops["rtr-notify-xtr-id-mismatch"] += 1
            return out
        del self._pending[(src, notify.nonce)]
        block = len(notify.rtr_auth.data) + 4
        relayed = raw[:-block] + struct.pack("!HH", 0, 0)  # the empty MS-RTR block
        try:
            decode_map_notify(relayed)
            packet = relay_packet(relayed, src, pending.private, self._nonce())
        except (WireError, EncodeError):
            self.drops["rtr-notify-unencodable"] += 1
            return out
        eids: list[tuple[int, IPNetwork, int]] = []
        for record in notify.records:
            try:
                iid, net = split_eid(record.eid, record.mask_len)
            except ValueError:
                continue
            if net is not None:
                eids.append((iid, net, record.ttl))
        self._bind(pending, src, tuple((iid, net) for iid, net, _ in eids), now, out)
        for iid, net, minutes in eids:
            ttl = minutes * 60.0
            out.installs.append(
                MapCacheEntry(
                    iid=iid,
                    prefix=net,
                    rlocs=(RlocEntry(pending.translated, 1, 100, port=pending.port),),
                    ttl=max(ttl, self.timeout),
                    created=now,
                    source="nat-registration",
                )
            )
        self.stats["notifies-relayed"] += 1
        out.sends.append(SendControl(pending.translated, pending.port, packet))
        return out

    def _bind(
        self,
        pending: _Pending,
        map_server: IPAddress,
        eids: tuple[tuple[int, IPNetwork], ...],
        now: float,
        out: NotifyOutcome,
    ) -> None:
        changed: list[IPAddress] = []
        old = self._bindings.pop(pending.xtr_id, None)
        binding = DraftBinding(
            pending.xtr_id,
            pending.translated,
            pending.port,
            pending.private,
            map_server,
            eids,
            now,
            now + self.timeout,
        )
        self._bindings[pending.xtr_id] = binding
        if old is None:
            self.stats["bindings-new"] += 1
        elif (old.translated, old.port) != (binding.translated, binding.port):
            self.stats["bindings-moved"] += 1
            changed.append(old.translated)
            self._forget_port(old)
        if old is not None:
            moved = (old.translated, old.port) != (binding.translated, binding.port)
            if self._forget_eids(old, keep=() if moved else eids):
                changed.append(old.translated)
        for iid, prefix in eids:
            if self._eid_ports.get((binding.translated, iid, prefix)) != binding.port:
                self._eid_ports[(binding.translated, iid, prefix)] = binding.port
                changed.append(binding.translated)
        if binding.translated not in self._ports:  # else the first xTR there keeps it
            self._ports[binding.translated] = binding.port
            changed.append(binding.translated)
        while len(self._bindings) > self.max_entries:
            _, evicted = self._bindings.popitem(last=False)
            self.drops["rtr-binding-evicted"] += 1
            if self._forget_port(evicted):
                changed.append(evicted.translated)
        out.changed.extend(a for a in dict.fromkeys(changed) if a not in out.changed)

    def _forget_eids(
        self, gone: DraftBinding, keep: tuple[tuple[int, IPNetwork], ...] = ()
    ) -> bool:
        """Drop the EID-prefix ports ``gone`` set (but those in ``keep``) that no other
        binding has taken since; True when one was dropped."""
        dropped = False
        for iid, prefix in gone.eids:
            key = (gone.translated, iid, prefix)
            if (iid, prefix) not in keep and self._eid_ports.get(key) == gone.port:
                del self._eid_ports[key]
                dropped = True
        return dropped

    def _forget_port(self, gone: DraftBinding) -> bool:
        """Drop ``gone``'s ports unless another xTR behind the same address still uses them;
        True when where its address's traffic goes changed."""
        dropped_eids = self._forget_eids(gone)
        if self._ports.get(gone.translated) != gone.port:
            return dropped_eids
        other = next(
            (b for b in reversed(self._bindings.values()) if b.translated == gone.translated),
            None,
        )
        if other is None:
            del self._ports[gone.translated]
        else:
            self._ports[gone.translated] = other.port
        return True

    def expire(self, now: float) -> list[DraftBinding]:
        """Forget pending registrations without an answer for :data:`PENDING_TIMEOUT` and
        bindings not confirmed for ``timeout`` seconds; returns the bindings forgotten."""
        while self._pending and next(iter(self._pending.values())).at + PENDING_TIMEOUT <= now:
            self._pending.popitem(last=False)
        gone: list[DraftBinding] = []
        while self._bindings and next(iter(self._bindings.values())).expires <= now:
            _, binding = self._bindings.popitem(last=False)
            self._forget_port(binding)
            self.stats["bindings-expired"] += 1
            gone.append(binding)
        return gone
