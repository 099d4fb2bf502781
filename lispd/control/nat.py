"""The xTR side of NAT traversal (lispers.net flavour of draft-ietf-lisp-nat-traversal).

A sans-IO machine like :mod:`lispd.control.prober`: every input carries ``now`` from the daemon's
monotonic clock, outputs are :class:`SendControl` / :class:`SendData` values, nonces come from an
injected 64-bit source, and :meth:`NatClient.next_deadline` is the one timer to arm.

Discovery.  An Info-Request (type 7, R=0, key-id 0, no authentication, TTL :data:`INFO_TTL`,
last address AFI 0) goes from the control socket to UDP 4342 of every Map-Server of an address
family we have a local RLOC of (the others are skipped: we could not send to them).  Its
EID-prefix is the first database EID-prefix of the Map-Server's address family (the first one
of any family when there is none, AFI 0 when the database is empty), wrapped in an instance-ID
LCAF when its instance-ID is not 0, as Map-Registers and Map-Requests carry it.  Each Map-Server
is scheduled on its own: until it first answers, requests are retried after 1, 2, 4, ... seconds,
capped at ``info_interval``; from its first answer on, one goes out every ``info_interval``
(counted from the request that was answered).

The TTL sent is 1440 minutes (a day, our usual record TTL): the draft leaves its use in a request
open and a responder like :class:`lispd.control.infoserver.InfoResponder` copies it into the
reply.  We do not expire what a reply taught on its TTL: it stays until a later reply changes it.

Replies.  An Info-Reply is accepted when its nonce is one of the last :data:`RECENT_NONCES`
requests sent to a Map-Server and not answered yet (from any source address: the 64-bit nonce is
the proof, and a multihomed Map-Server may answer from another address of its own; such replies
are counted in ``stats["replies-from-other-address"]``).  Its last address must be the
NAT-traversal LCAF with an IPv4/IPv6 global ETR RLOC of the Map-Server's family.  The Map-Server
saw our request coming from that global RLOC: we are behind a NAT when it is none of our local
RLOCs.  The RTR RLOCs it lists are kept when they are IPv4/IPv6 addresses of a family we have a
local RLOC of (the others could not be reached; ``stats["rtrs-ignored"]``).

Status.  :class:`NatStatus` combines the last accepted reply of every Map-Server that answered:
behind NAT when any of them says so; the global RLOC is the one that Map-Server saw (the first
such Map-Server in configuration order), or the first answering Map-Server's when none does; the
RTRs are the union of their lists, in Map-Server order.  A Map-Server that stops answering keeps
its last reply in the combination and is still asked every ``info_interval``: one lost reply (or
a Map-Server down for a while) does not flip the xTR in or out of NAT mode and the traffic with
it; only a reply saying something else does.  ``last-reply-ago`` in :meth:`NatClient.states`
shows how old that knowledge is.

Keepalives.  While behind NAT, every RTR gets a keepalive every ``keepalive_interval`` seconds
(the first at once when it appears, and at once to all when the global RLOC changes): a
:class:`SendData` from our UDP 4341 socket to the RTR's UDP 4341 whose payload is a LISP data
header (24-bit nonce = the low 24 bits of the Info-Request nonce, instance-ID
:data:`~lispd.wire.data.IID_CONTROL`) followed by an Info-Request naming a database
EID-prefix; a round is one keepalive per database EID-prefix (at most
:data:`MAX_KEEPALIVE_EIDS`), the one an Info-Request over the RTR's family names first.  It
keeps the NAT binding of our data socket open so that the RTR can send us traffic through it,
and tells the RTR which EID-prefixes are ours: other xTRs may share our public address
(:mod:`lispd.node.natbindings`).  An RTR that answers its keepalive
(lispers.net RTRs may) has the reply counted as ``stats["keepalive-replies"]`` and its time shown
in :meth:`NatClient.states`; such a reply never changes the status (the RTR lists no RTRs).

Every status change is logged at INFO (logger ``lispd.control.nat``) as ``nat status``: behind a
NAT or not, the translated (global) RLOC and port, the RTRs, and which of them ``changed``.

State table.  Each Map-Server is in one :class:`NatPhase` and every input for it has a
:class:`NatInput` kind; :data:`NAT_TABLE` (total, consulted before acting) says where each pair
leads.  An Info-Reply is a Map-Server's when it carries the nonce of one of its recent requests
(the nonce is used up even when the reply is refused) or, without, comes from its address
(``reply-stale``); an Info-Request (R bit clear), an RTR's answer to a keepalive, or an unknown
nonce from elsewhere reaches no table.  RTR keepalives have no table: an RTR is kept alive
while the combined status is behind NAT and lists it.

- ``unasked``: request (info-request) -> discovering; refuses reply-stale; never gets
  reply-behind-nat, reply-not-behind-nat, reply-bad-address, reply-bad-global-rloc.
- ``discovering``: reply-behind-nat -> behind-nat, reply-not-behind-nat -> not-behind-nat;
  stays on request (info-request, backing off); refuses reply-bad-address,
  reply-bad-global-rloc, reply-stale.
- ``behind-nat``: reply-not-behind-nat -> not-behind-nat; stays on request (info-request),
  reply-behind-nat; refuses reply-bad-address, reply-bad-global-rloc, reply-stale.
- ``not-behind-nat``: reply-behind-nat -> behind-nat; stays on request (info-request),
  reply-not-behind-nat; refuses reply-bad-address, reply-bad-global-rloc, reply-stale.

Refused inputs are counted: reply-stale as ``info-reply-unknown-nonce``; reply-bad-address
as ``info-reply-bad-address``; reply-bad-global-rloc as ``info-reply-bad-global-rloc``.
Impossible ones as ``info-reply-unknown-nonce``.

``drops`` counts refused replies by reason: ``info-reply-not-reply`` (R bit clear),
``info-reply-unknown-nonce`` (never sent, already answered or refused, or too old),
``info-reply-bad-address`` (last address not a NAT-traversal LCAF), ``info-reply-bad-global-rloc``
(its global ETR RLOC not an address of the Map-Server's family).  ``stats`` counts
``requests-sent``, ``replies``, ``keepalives-sent``, ``keepalive-replies``, ``status-changes``,
``rtrs-ignored`` and ``replies-from-other-address``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import secrets
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import Final

from lispd.config.model import NatTraversalConfig
from lispd.control import statetable
from lispd.control.outputs import SendControl, SendData
from lispd.logfmt import kv
from lispd.wire.address import NO_ADDRESS, Address, NatTraversalAddress, eid_prefix
from lispd.wire.data import IID_CONTROL, LISP_CONTROL_PORT, LISP_DATA_PORT, build_data_header
from lispd.wire.info import InfoMessage, encode_info
from lispd.wire.records import EidRecord, Locator

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

log = logging.getLogger("lispd.control.nat")


INFO_TTL: Final = 1440
"""The TTL (minutes) of our Info-Requests (see the module documentation)."""

FIRST_RETRY: Final = 1.0
"""Seconds before the first retry to a Map-Server that has not answered yet (then doubled)."""

RECENT_NONCES: Final = 8
"""Unanswered Info-Request nonces remembered per Map-Server: a late answer to one of the last
few requests still counts."""

RECENT_KEEPALIVE_NONCES: Final = 4
"""Keepalive rounds whose nonces are remembered per RTR (for the RTR's optional answers)."""

MAX_KEEPALIVE_EIDS: Final = 16
"""Database EID-prefixes named in a round of keepalives, one keepalive each (an RTR claims as
many per binding, :data:`lispd.node.natbindings.MAX_EIDS`)."""

_NAT_TRAVERSAL: Final = NatTraversalConfig()
"""The defaults of ``[nat-traversal]``, which are those of :class:`NatClient`'s intervals."""

_MASK64: Final = (1 << 64) - 1
_NONCE_TRIES: Final = 16


class NatPhase(Enum):
    """What one Map-Server has told us about NAT (see the module documentation)."""

    UNASKED = "unasked"
    """No Info-Request sent to it yet (due at once)."""
    DISCOVERING = "discovering"
    """Asked, no answer accepted yet: asked again after 1, 2, 4, ... seconds."""
    BEHIND_NAT = "behind-nat"
    """Its last accepted answer saw us from an address that is none of our RLOCs."""
    NOT_BEHIND_NAT = "not-behind-nat"
    """Its last accepted answer saw us from one of our RLOCs."""


class NatInput(Enum):
    """What happens to one Map-Server asked about NAT."""

    REQUEST = "request"
    """An Info-Request goes out to it (the timer)."""
    REPLY_BEHIND_NAT = "reply-behind-nat"
    """An Info-Reply to one of its recent requests: the global RLOC is none of ours."""
    REPLY_NOT_BEHIND_NAT = "reply-not-behind-nat"
    """An Info-Reply to one of its recent requests: the global RLOC is one of ours."""
    REPLY_BAD_ADDRESS = "reply-bad-address"
    """An Info-Reply to one of its recent requests without a NAT-traversal LCAF."""
    REPLY_BAD_GLOBAL_RLOC = "reply-bad-global-rloc"
    """... whose global ETR RLOC is not an address of the Map-Server's family."""
    REPLY_STALE = "reply-stale"
    """An Info-Reply from its address with a nonce of no recent request (a duplicate, one too
    old, or never sent)."""


_N = NatPhase
_NI = NatInput
_NEVER = statetable.Refuse("info-reply-unknown-nonce", possible=False)


def _answered_row(state: NatPhase) -> dict[NatInput, statetable.Go[NatPhase] | statetable.Refuse]:
    return {
        _NI.REQUEST: statetable.Go(state, "info-request"),
        _NI.REPLY_BEHIND_NAT: statetable.Go(_N.BEHIND_NAT),
        _NI.REPLY_NOT_BEHIND_NAT: statetable.Go(_N.NOT_BEHIND_NAT),
        _NI.REPLY_BAD_ADDRESS: statetable.Refuse("info-reply-bad-address"),
        _NI.REPLY_BAD_GLOBAL_RLOC: statetable.Refuse("info-reply-bad-global-rloc"),
        _NI.REPLY_STALE: statetable.Refuse("info-reply-unknown-nonce"),
    }


NAT_TABLE: Final = statetable.StateTable(
    "nat",
    NatPhase,
    NatInput,
    {
        _N.UNASKED: {
            _NI.REQUEST: statetable.Go(_N.DISCOVERING, "info-request"),
            _NI.REPLY_BEHIND_NAT: _NEVER,  # nothing asked: no nonce to answer
            _NI.REPLY_NOT_BEHIND_NAT: _NEVER,
            _NI.REPLY_BAD_ADDRESS: _NEVER,
            _NI.REPLY_BAD_GLOBAL_RLOC: _NEVER,
            _NI.REPLY_STALE: statetable.Refuse("info-reply-unknown-nonce"),
        },
        _N.DISCOVERING: {
            **_answered_row(_N.DISCOVERING),
            _NI.REQUEST: statetable.Go(_N.DISCOVERING, "info-request, backing off"),
        },
        _N.BEHIND_NAT: _answered_row(_N.BEHIND_NAT),
        _N.NOT_BEHIND_NAT: _answered_row(_N.NOT_BEHIND_NAT),
    },
)
"""The NAT client's table, per Map-Server (rendered in the module documentation)."""


@dataclass(frozen=True, slots=True)
class NatStatus:
    """What NAT discovery knows: behind a NAT or not, our global (translated) RLOC as the
    Map-Servers see it, the RTRs to use, and whether any Map-Server has answered yet
    (``discovered`` False: nothing is known, the other fields are their defaults)."""

    behind_nat: bool = False
    global_rloc: IPAddress | None = None
    rtrs: tuple[IPAddress, ...] = ()
    discovered: bool = False


@dataclass(slots=True, eq=False)
class _MapServer:
    address: IPAddress
    backoff: float
    next_send: float | None = None  # None: never asked, due at once
    last_sent: float | None = None
    last_reply: float | None = None
    last_rtt: float | None = None
    requests_sent: int = 0
    replies: int = 0
    nonces: OrderedDict[int, float] = field(default_factory=OrderedDict)  # nonce -> sent at
    phase: NatPhase = NatPhase.UNASKED
    # What the last accepted reply said.
    global_rloc: IPAddress | None = None
    rtrs: tuple[IPAddress, ...] = ()
    etr_port: int | None = None

    @property
    def behind_nat(self) -> bool:
        """Whether its last accepted reply said we are behind a NAT."""
        return self.phase is NatPhase.BEHIND_NAT


@dataclass(slots=True, eq=False)
class _Rtr:
    address: IPAddress
    next_send: float
    keepalives_sent: int = 0
    last_sent: float | None = None
    last_reply: float | None = None
    nonces: OrderedDict[int, None] = field(default_factory=OrderedDict)


def _check_address(what: str, addr: object) -> IPAddress:
    if not isinstance(addr, IPv4Address | IPv6Address):
        raise TypeError(f"a {what} is an IPv4/IPv6 address, not {addr!r}")
    return addr


def _check_interval(what: str, value: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"the {what} must be a finite number > 0, not {value!r}")
    return float(value)


def _ago(now: float | None, then: float | None) -> float | None:
    if now is None or then is None:
        return None
    return round(now - then, 3)


class NatClient:
    """Discovers whether this xTR is behind a NAT and keeps its bindings toward the RTRs open."""

    def __init__(
        self,
        map_servers: Sequence[IPAddress],
        local_rlocs: Sequence[IPAddress],
        eids: Sequence[tuple[int, IPNetwork]],
        info_interval: float = _NAT_TRAVERSAL.info_interval,
        keepalive_interval: float = _NAT_TRAVERSAL.keepalive_interval,
        rng: Callable[[], int] | None = None,
    ) -> None:
        """Ask ``map_servers`` (those of a family of ``local_rlocs``) every ``info_interval``
        seconds, and keep each RTR's binding open with a keepalive every ``keepalive_interval``
        seconds while behind NAT.  ``eids`` are the (instance-ID, EID-prefix) pairs of the local
        database, named in the requests; ``rng`` returns 64-bit nonces (default:
        :func:`secrets.randbits`).

        Raises ``TypeError`` for something that is not an address, ``ValueError`` for a bad
        interval, instance-ID or prefix.
        """
        self.info_interval = _check_interval("info interval", info_interval)
        self.keepalive_interval = _check_interval("keepalive interval", keepalive_interval)
        rlocs: list[IPAddress] = []
        for addr in local_rlocs:
            if _check_address("local RLOC", addr) not in rlocs:
                rlocs.append(addr)
        self.local_rlocs: tuple[IPAddress, ...] = tuple(rlocs)
        self._families = frozenset(a.version for a in rlocs)
        self._eids = self._eid_choices(eids)
        self._keepalive_eids = self._keepalive_choices(eids)
        self._servers: list[_MapServer] = []
        skipped: list[IPAddress] = []
        first_retry = min(FIRST_RETRY, self.info_interval)
        for addr in map_servers:
            _check_address("Map-Server address", addr)
            if any(s.address == addr for s in self._servers) or addr in skipped:
                continue
            if addr.version in self._families:
                self._servers.append(_MapServer(addr, first_retry))
            else:
                skipped.append(addr)
        self.skipped_map_servers: tuple[IPAddress, ...] = tuple(skipped)
        """Map-Servers of a family we have no local RLOC of: never asked."""
        self._rng: Callable[[], int] = rng if rng is not None else lambda: secrets.randbits(64)
        self._nonces: dict[int, _MapServer] = {}  # outstanding request nonce -> Map-Server
        self._keepalive_nonces: dict[int, _Rtr] = {}  # recent keepalive nonce -> RTR
        self._rtrs: dict[IPAddress, _Rtr] = {}  # keepalive targets (only while behind NAT)
        self._status = NatStatus()
        self._now: float | None = None
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()

    @staticmethod
    def _eid_choices(eids: Sequence[tuple[int, IPNetwork]]) -> dict[int, tuple[Address, int]]:
        """The (address, mask-len) to name in requests sent over IPv4 (key 4) and IPv6 (6)."""
        checked: list[tuple[int, IPNetwork]] = []
        for iid, prefix in eids:
            if isinstance(iid, bool) or not isinstance(iid, int) or not 0 <= iid < 1 << 24:
                raise ValueError(f"instance-ID {iid!r} is not a 24-bit integer")
            checked.append((iid, ip_network(prefix)))
        choices: dict[int, tuple[Address, int]] = {}
        for version in (4, 6):
            same = [e for e in checked if e[1].version == version]
            pick = same[0] if same else checked[0] if checked else None
            choices[version] = (NO_ADDRESS, 0) if pick is None else eid_prefix(*pick)
        return choices

    def _keepalive_choices(
        self, eids: Sequence[tuple[int, IPNetwork]]
    ) -> dict[int, tuple[tuple[Address, int], ...]]:
        """The (address, mask-len) of every keepalive of a round to an RTR over IPv4 (key 4)
        and IPv6 (6): the EID-prefix an Info-Request over that family names first, then every
        other database EID-prefix once, :data:`MAX_KEEPALIVE_EIDS` in all."""
        rounds: dict[int, tuple[tuple[Address, int], ...]] = {}
        for version, first in self._eids.items():
            named = [first]
            for iid, prefix in eids:
                choice = eid_prefix(iid, ip_network(prefix))
                if choice not in named:
                    named.append(choice)
            rounds[version] = tuple(named[:MAX_KEEPALIVE_EIDS])
        return rounds

    # --- queries ------------------------------------------------------------------------------

    @property
    def status(self) -> NatStatus:
        """The current verdict (``discovered`` False until a Map-Server answers)."""
        return self._status

    @property
    def map_servers(self) -> tuple[IPAddress, ...]:
        """The Map-Servers asked, in configuration order."""
        return tuple(s.address for s in self._servers)

    def phase(self, map_server: IPAddress) -> NatPhase:
        """The :class:`NatPhase` of ``map_server`` (``KeyError`` if it is not asked)."""
        for ms in self._servers:
            if ms.address == map_server:
                return ms.phase
        raise KeyError(map_server)

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` next has work: ``-inf`` (at once) for a Map-Server never asked
        yet or an RTR just learnt, None when there is nothing to ask."""
        deadlines = [-math.inf if s.next_send is None else s.next_send for s in self._servers]
        if self._status.behind_nat:
            deadlines += [r.next_send for r in self._rtrs.values()]
        return min(deadlines, default=None)

    def states(self, now: float | None = None) -> dict[str, object]:
        """JSON-ready state for ``show nat``; ages are judged at ``now`` (default: the latest
        time given to any method), in seconds rounded to milliseconds."""
        if now is None:
            now = self._now
        s = self._status
        servers: list[dict[str, object]] = []
        for ms in self._servers:
            servers.append(
                {
                    "address": str(ms.address),
                    "answered": ms.last_reply is not None,
                    "last-sent-ago": _ago(now, ms.last_sent),
                    "last-reply-ago": _ago(now, ms.last_reply),
                    "last-rtt": None if ms.last_rtt is None else round(ms.last_rtt, 6),
                    "next-send-in": (
                        None
                        if ms.next_send is None or now is None
                        else round(max(0.0, ms.next_send - now), 3)
                    ),
                    "requests-sent": ms.requests_sent,
                    "replies": ms.replies,
                    "outstanding": len(ms.nonces),
                    "global-rloc": None if ms.global_rloc is None else str(ms.global_rloc),
                    "translated-port": ms.etr_port,
                    "behind-nat": ms.behind_nat if ms.last_reply is not None else None,
                    "rtrs": [str(a) for a in ms.rtrs],
                }
            )
        keepalives = [
            {
                "rtr": str(r.address),
                "keepalives-sent": r.keepalives_sent,
                "last-sent-ago": _ago(now, r.last_sent),
                "last-reply-ago": _ago(now, r.last_reply),
                "next-send-in": None if now is None else round(max(0.0, r.next_send - now), 3),
            }
            for r in self._rtrs.values()
        ]
        return {
            "discovered": s.discovered,
            "behind-nat": s.behind_nat,
            "global-rloc": None if s.global_rloc is None else str(s.global_rloc),
            "rtrs": [str(a) for a in s.rtrs],
            "local-rlocs": [str(a) for a in self.local_rlocs],
            "info-interval": self.info_interval,
            "keepalive-interval": self.keepalive_interval,
            "map-servers": servers,
            "skipped-map-servers": [str(a) for a in self.skipped_map_servers],
            "keepalives": keepalives,
            "drops": dict(self.drops),
            "stats": dict(self.stats),
        }

    # --- inputs -------------------------------------------------------------------------------

    def on_timer(self, now: float) -> list[SendControl | SendData]:
        """The Info-Requests to Map-Servers and the keepalives to RTRs due at ``now``."""
        self._now = now
        sends: list[SendControl | SendData] = []
        for ms in self._servers:
            if (ms.next_send is None or ms.next_send <= now) and (
                request := self._request(ms, now)
            ) is not None:
                sends.append(request)
        if self._status.behind_nat:
            for rtr in self._rtrs.values():
                if rtr.next_send <= now:
                    sends.extend(self._keepalives(rtr, now))
        return sends

    def on_info_reply(self, msg: InfoMessage, src: IPAddress, now: float) -> NatStatus | None:
        """An Info-Reply received from ``src`` at ``now``.  Returns the new :class:`NatStatus`
        when it changed (the first answer, NAT mode on or off, another global RLOC or RTR list),
        else None; refused replies are counted in ``drops``."""
        self._now = now
        if not msg.reply:
            self.drops["info-reply-not-reply"] += 1
            return None
        ms = self._nonces.pop(msg.nonce, None)
        if ms is None:
            rtr = self._keepalive_nonces.pop(msg.nonce, None)
            if rtr is not None:
                rtr.nonces.pop(msg.nonce, None)
                rtr.last_reply = now
                self.stats["keepalive-replies"] += 1
                return None
            stale = next((s for s in self._servers if s.address == src), None)
            if stale is not None:
                self._step(stale, NatInput.REPLY_STALE)
            else:
                self.drops["info-reply-unknown-nonce"] += 1
            return None
        sent_at = ms.nonces.pop(msg.nonce)  # used up, whatever the reply says
        nat = msg.address
        if not isinstance(nat, NatTraversalAddress):
            self._step(ms, NatInput.REPLY_BAD_ADDRESS)
            return None
        global_rloc = nat.global_etr_rloc
        if (
            not isinstance(global_rloc, IPv4Address | IPv6Address)
            or global_rloc.version != ms.address.version
        ):
            self._step(ms, NatInput.REPLY_BAD_GLOBAL_RLOC)
            return None
        behind = global_rloc not in self.local_rlocs
        kind = NatInput.REPLY_BEHIND_NAT if behind else NatInput.REPLY_NOT_BEHIND_NAT
        was = ms.phase
        if not self._step(ms, kind):
            return None
        if src != ms.address:
            self.stats["replies-from-other-address"] += 1
        rtrs: list[IPAddress] = []
        for rtr_rloc in nat.rtr_rlocs:
            if isinstance(rtr_rloc, IPv4Address | IPv6Address) and rtr_rloc.version in (
                self._families
            ):
                if rtr_rloc not in rtrs:
                    rtrs.append(rtr_rloc)
            else:
                self.stats["rtrs-ignored"] += 1
        if was is NatPhase.DISCOVERING:
            # First answer: from now on, one request per interval.
            last_sent = ms.last_sent if ms.last_sent is not None else now
            ms.next_send = last_sent + self.info_interval
        ms.last_reply = now
        ms.last_rtt = max(0.0, now - sent_at)
        ms.replies += 1
        ms.global_rloc = global_rloc
        ms.rtrs = tuple(rtrs)
        ms.etr_port = nat.etr_port
        self.stats["replies"] += 1
        return self._update_status(now)

    # --- internals ----------------------------------------------------------------------------

    def _step(self, ms: _MapServer, kind: NatInput) -> bool:
        """Consult :data:`NAT_TABLE`: move ``ms`` on ``kind`` and return True, or return False
        when the table refuses it (counted in ``drops``)."""
        to = NAT_TABLE.step(ms.phase, kind, self.drops)
        if to is None:
            return False
        ms.phase = to
        return True

    def _combined(self) -> NatStatus:
        answered = [s for s in self._servers if s.last_reply is not None]
        if not answered:
            return NatStatus()
        natted = [s for s in answered if s.behind_nat]
        rtrs: list[IPAddress] = []
        for s in answered:
            rtrs += [a for a in s.rtrs if a not in rtrs]
        return NatStatus(
            behind_nat=bool(natted),
            global_rloc=(natted or answered)[0].global_rloc,
            rtrs=tuple(rtrs),
            discovered=True,
        )

    def _update_status(self, now: float) -> NatStatus | None:
        status = self._combined()
        if status == self._status:
            return None
        moved = status.global_rloc != self._status.global_rloc
        self._log_status(self._status, status)
        self._status = status
        self.stats["status-changes"] += 1
        wanted = status.rtrs if status.behind_nat else ()
        kept = {a: self._rtrs[a] for a in wanted if a in self._rtrs}
        for addr, rtr in self._rtrs.items():
            if addr not in kept:
                for nonce in rtr.nonces:
                    self._keepalive_nonces.pop(nonce, None)
        if moved:  # a new NAT binding: show it to every RTR now, not at the next keepalive
            for rtr in kept.values():
                rtr.next_send = min(rtr.next_send, now)
        # A new RTR gets its first keepalive at once: the daemon re-arms the timer from
        # next_deadline() after this input, and on_timer sends it.
        self._rtrs = {a: kept.get(a) or _Rtr(a, next_send=now) for a in wanted}
        return status

    def _log_status(self, old: NatStatus, new: NatStatus) -> None:
        """One INFO line for a status change: what we now know and which parts ``changed``."""
        changed = [
            name
            for name, before, after in (
                ("discovered", old.discovered, new.discovered),
                ("behind-nat", old.behind_nat, new.behind_nat),
                ("global-rloc", old.global_rloc, new.global_rloc),
                ("rtrs", old.rtrs, new.rtrs),
            )
            if before != after
        ]
        port = next(
            (
                s.etr_port
                for s in self._servers
                if s.last_reply is not None and s.global_rloc == new.global_rloc
            ),
            None,
        )
        log.info(
            "nat status %s",
            kv(
                behind_nat=new.behind_nat,
                global_rloc=new.global_rloc,
                translated_port=port if new.behind_nat else None,
                rtrs=new.rtrs,
                changed=changed,
            ),
        )

    def _new_nonce(self) -> int:
        for _ in range(_NONCE_TRIES):
            nonce = self._rng() & _MASK64
            if nonce not in self._nonces and nonce not in self._keepalive_nonces:
                return nonce
        raise RuntimeError("the nonce source keeps repeating outstanding nonces")

    def _info_request(self, nonce: int, family: int) -> bytes:
        return self._info(nonce, *self._eids[family])

    @staticmethod
    def _info(nonce: int, eid: Address, mask_len: int) -> bytes:
        return encode_info(InfoMessage(nonce=nonce, ttl=INFO_TTL, eid=eid, eid_mask_len=mask_len))

    def _request(self, ms: _MapServer, now: float) -> SendControl | None:
        nonce = self._new_nonce()
        payload = self._info_request(nonce, ms.address.version)
        if not self._step(ms, NatInput.REQUEST):
            return None
        ms.nonces[nonce] = now
        self._nonces[nonce] = ms
        while len(ms.nonces) > RECENT_NONCES:
            old, _ = ms.nonces.popitem(last=False)
            del self._nonces[old]
        ms.last_sent = now
        ms.requests_sent += 1
        if ms.phase is NatPhase.DISCOVERING:
            ms.next_send = now + ms.backoff
            ms.backoff = min(ms.backoff * 2, self.info_interval)
        else:
            ms.next_send = now + self.info_interval
        self.stats["requests-sent"] += 1
        return SendControl(ms.address, LISP_CONTROL_PORT, payload)

    def _keepalives(self, rtr: _Rtr, now: float) -> list[SendData]:
        """One round of keepalives to ``rtr``: one naming each database EID-prefix, so that
        the RTR knows which of the xTRs behind our NAT address each prefix belongs to."""
        sends: list[SendData] = []
        named = self._keepalive_eids[rtr.address.version]
        for eid, mask_len in named:
            nonce = self._new_nonce()
            payload = build_data_header(nonce & 0xFFFFFF, IID_CONTROL) + self._info(
                nonce, eid, mask_len
            )
            rtr.nonces[nonce] = None
            self._keepalive_nonces[nonce] = rtr
            sends.append(SendData(rtr.address, LISP_DATA_PORT, payload))
        while len(rtr.nonces) > RECENT_KEEPALIVE_NONCES * len(named):
            old, _ = rtr.nonces.popitem(last=False)
            del self._keepalive_nonces[old]
        rtr.last_sent = now
        rtr.next_send = now + self.keepalive_interval
        rtr.keepalives_sent += len(sends)
        self.stats["keepalives-sent"] += len(sends)
        return sends


NAT_RTR_PRIORITY: Final = 254
"""Priority of the RTR locators a site behind NAT registers (as lispers.net registers them)."""


def nat_record(record: EidRecord, status: NatStatus) -> EidRecord:
    """A database record as an xTR behind NAT registers it: its translated (global) RLOC in
    place of the private one, plus the RTRs at :data:`NAT_RTR_PRIORITY` (the Map-Server hands
    those to ITRs, and the translated RLOC to the RTRs)."""
    glob = status.global_rloc
    locators = [
        dataclasses.replace(loc, address=glob, local=False)
        if loc.local and glob is not None and getattr(loc.address, "version", None) == glob.version
        else loc
        for loc in record.locators
    ]
    locators += [Locator(rtr, NAT_RTR_PRIORITY, 100) for rtr in status.rtrs]
    return dataclasses.replace(record, locators=tuple(locators))
