"""The ETR side of RFC 9301 registration: Map-Register out, Map-Notify in, Map-Notify-Ack back.

A sans-IO machine like :mod:`lispd.control.resolver`: every input carries ``now`` from the
daemon's monotonic clock, outputs are :class:`SendControl` values, nonces come from an injected
source, and :meth:`Registrar.next_deadline` is the one timer to arm.

Every Map-Server target is scheduled on its own: the first :meth:`Registrar.on_timer` call
registers with all of them, then each one again ``interval`` seconds after its last
Map-Register.  A target that never answers delays nobody.

Choices:

- Every Map-Register carries a fresh 64-bit nonce from ``rng`` (a CSPRNG by default), as
  deployed xTRs do: nothing an observer saw predicts the next one.  RFC 9301 lets a Map-Server
  drop non-increasing nonces, but none deployed does (xTRs send random nonces and persist
  nothing across restarts); lispd's Map-Server refuses a nonce it accepted before instead.
- A Map-Notify is accepted only from a target's address, with a valid HMAC under that target's
  key.  Its nonce is then one of the last :data:`RECENT_NONCES` Map-Registers sent to that target
  (an acknowledgement: the target is marked acknowledged), a nonce already acknowledged (a
  duplicate, counted and ignored), or none of ours: an unsolicited Map-Notify, answered with a
  Map-Notify-Ack (same nonce and records, signed with the target's key under the notify's key-id)
  to the sender's port 4342.
- ``acknowledged`` in :meth:`Registrar.status` means a Map-Notify acknowledged a registration in
  the last 3 intervals (so it is never true with ``want_map_notify=False``).
- Changes of that verdict are logged, one line per Map-Server and change (logger
  ``lispd.control.registrar``): ``registration acknowledged`` (INFO, the first
  acknowledgement), ``registration lost`` (WARNING, at the moment ``acknowledged`` turns false:
  :meth:`Registrar.next_deadline` includes that moment), ``registration restored`` (INFO,
  acknowledged again after a loss), and ``registration not acknowledged`` (WARNING, once, when a
  Map-Server has acknowledged nothing 3 intervals after our first Map-Register to it, judged
  when the next Map-Register goes out).  A re-registration that stays acknowledged logs nothing.
- Nothing is sent while the database is empty (``stats["register-skipped-empty"]``).

State table.  Each Map-Server target is in one :class:`Registration` state and every input for
it has a :class:`RegistrarInput` kind; :data:`REGISTRAR_TABLE` (total, consulted before acting)
says where each pair leads.  A Map-Notify-Ack, a bad HMAC or malformed bytes from a target's
address are refused in every state, a duplicate acknowledgement wherever one is possible; a
Map-Notify from no target's address reaches no table (``map-notify-unknown-source``).
``ack-lapsed`` comes at every timer run once the last acknowledgement is 3 intervals old, and
``ack-overdue`` with every Map-Register while nothing was ever acknowledged: the first of
each moves (and logs), the others change nothing.

- ``unregistered``: register (map-register) -> registering; stays on register-empty,
  withdraw (map-register ttl 0), notify-unsolicited (map-notify-ack); refuses
  notify-bad-auth, notify-malformed, notify-ack; never gets notify, notify-older,
  notify-duplicate, ack-overdue, ack-lapsed.
- ``registering``: notify (log acknowledged) -> registered, notify-older (log acknowledged)
  -> refreshing, ack-overdue (log not acknowledged) -> unacknowledged; stays on register
  (map-register), register-empty, withdraw (map-register ttl 0), notify-unsolicited
  (map-notify-ack); refuses notify-bad-auth, notify-malformed, notify-ack; never gets
  notify-duplicate, ack-lapsed.
- ``registered``: register (map-register) -> refreshing, ack-lapsed (log lost) -> lost;
  stays on register-empty, withdraw (map-register ttl 0), notify, notify-unsolicited
  (map-notify-ack); refuses notify-duplicate, notify-bad-auth, notify-malformed, notify-ack;
  never gets notify-older, ack-overdue.
- ``refreshing``: notify -> registered, ack-lapsed (log lost) -> lost; stays on register
  (map-register), register-empty, withdraw (map-register ttl 0), notify-older,
  notify-unsolicited (map-notify-ack); refuses notify-duplicate, notify-bad-auth,
  notify-malformed, notify-ack; never gets ack-overdue.
- ``unacknowledged``: notify (log acknowledged) -> registered, notify-older (log
  acknowledged) -> refreshing; stays on register (map-register), register-empty, withdraw
  (map-register ttl 0), notify-unsolicited (map-notify-ack), ack-overdue; refuses
  notify-bad-auth, notify-malformed, notify-ack; never gets notify-duplicate, ack-lapsed.
- ``lost``: notify (log restored) -> registered, notify-older (log restored) -> refreshing;
  stays on register (map-register), register-empty, withdraw (map-register ttl 0),
  notify-unsolicited (map-notify-ack), ack-lapsed; refuses notify-duplicate,
  notify-bad-auth, notify-malformed, notify-ack; never gets ack-overdue.

Refused inputs are counted: notify-bad-auth as ``map-notify-bad-auth``; notify-malformed as
``map-notify-malformed``; notify-ack as ``map-notify-ack-unexpected``; notify-duplicate as
``map-notify-duplicate``. Impossible ones as ``registration-out-of-state``.

``drops`` counts refused Map-Notifies by reason (``map-notify-unknown-source``,
``map-notify-bad-auth``, ``map-notify-duplicate``, ``map-notify-ack-unexpected``,
``map-notify-malformed``); ``stats`` counts events (``registers-sent``, ``notifies-accepted``,
``unsolicited-notifies``, ``notify-acks-sent``).
"""

from __future__ import annotations

import logging
import math
import secrets
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from ipaddress import IPv4Address, IPv6Address
from typing import Final

from lispd.config.model import MapServerRef, RegistrationConfig, field_default
from lispd.control import messagelog
from lispd.control.outputs import SendControl
from lispd.control.statetable import Go, Refuse, StateTable
from lispd.logfmt import kv, pairs
from lispd.wire import auth
from lispd.wire.data import LISP_CONTROL_PORT
from lispd.wire.errors import EncodeError, WireError
from lispd.wire.mapregister import MapNotify, MapRegister, encode_signed, verify_notify
from lispd.wire.records import EidRecord, encode_eid_record

IpAddress = IPv4Address | IPv6Address

log = logging.getLogger("lispd.control.registrar")

MAX_LOGGED_EIDS: Final = 8
"""EID-prefixes named in a log line; more are summed up as ``+N``."""

RECENT_NONCES: Final = 4
"""Map-Register nonces remembered per target: a late Map-Notify for one of the last few
registrations still counts as an acknowledgement."""

ACK_WINDOW_INTERVALS: Final = 3
"""A target is ``acknowledged`` when its last acknowledgement is at most this many intervals old."""

_MASK64: Final = (1 << 64) - 1
_REGISTRATION: Final = RegistrationConfig()


class Registration(Enum):
    """Where registration with one Map-Server stands (see the module documentation)."""

    UNREGISTERED = "unregistered"
    """No Map-Register sent to it yet (before the first timer, or while the database is empty)."""
    REGISTERING = "registering"
    """Map-Registers sent, none acknowledged yet (without want-map-notify it stays here)."""
    REGISTERED = "registered"
    """Acknowledged, and so is the latest Map-Register."""
    REFRESHING = "refreshing"
    """Acknowledged; a newer Map-Register awaits its Map-Notify."""
    UNACKNOWLEDGED = "unacknowledged"
    """Nothing acknowledged 3 intervals after the first Map-Register (logged); still sending."""
    LOST = "lost"
    """Acknowledged once, then no acknowledgement for 3 intervals (logged); still sending."""


class RegistrarInput(Enum):
    """What happens to one Map-Server target."""

    REGISTER = "register"
    """A Map-Register goes out (first timer, each interval, new records, new target)."""
    REGISTER_EMPTY = "register-empty"
    """One is due but the database is empty: nothing goes out."""
    WITHDRAW = "withdraw"
    """A Map-Register with TTL 0 withdraws EID-prefixes removed from the database."""
    NOTIFY = "notify"
    """An authentic Map-Notify acknowledging one of the recent Map-Registers, after which the
    latest is acknowledged (it is the latest, or the latest was acknowledged before)."""
    NOTIFY_OLDER = "notify-older"
    """An authentic Map-Notify acknowledging an earlier Map-Register while the latest still
    awaits its own."""
    NOTIFY_DUPLICATE = "notify-duplicate"
    """An authentic Map-Notify with a nonce acknowledged already."""
    NOTIFY_UNSOLICITED = "notify-unsolicited"
    """An authentic Map-Notify with none of the recent nonces: the Map-Server's own news."""
    NOTIFY_BAD_AUTH = "notify-bad-auth"
    """A Map-Notify from the target's address whose HMAC does not verify under its key."""
    NOTIFY_MALFORMED = "notify-malformed"
    """A Map-Notify from the target's address whose bytes cannot even be verified."""
    NOTIFY_ACK = "notify-ack"
    """A Map-Notify-Ack from the target's address (an ETR expects none)."""
    ACK_OVERDUE = "ack-overdue"
    """A Map-Register is due 3 intervals after the first, none acknowledged (want-map-notify)."""
    ACK_LAPSED = "ack-lapsed"
    """The timer runs after the last acknowledgement has become 3 intervals old."""


_R = Registration
_I = RegistrarInput
_NEVER = Refuse("registration-out-of-state", possible=False)
_ALWAYS_REFUSED: Final[dict[RegistrarInput, Go[Registration] | Refuse]] = {
    _I.NOTIFY_BAD_AUTH: Refuse("map-notify-bad-auth"),
    _I.NOTIFY_MALFORMED: Refuse("map-notify-malformed"),
    _I.NOTIFY_ACK: Refuse("map-notify-ack-unexpected"),
}


def _unmoved(state: Registration) -> dict[RegistrarInput, Go[Registration] | Refuse]:
    """The inputs that leave every state as it is."""
    return {
        _I.REGISTER_EMPTY: Go(state),
        _I.WITHDRAW: Go(state, "map-register ttl 0"),
        _I.NOTIFY_UNSOLICITED: Go(state, "map-notify-ack"),
        **_ALWAYS_REFUSED,
    }


REGISTRAR_TABLE: Final = StateTable(
    "registrar",
    Registration,
    RegistrarInput,
    {
        _R.UNREGISTERED: {
            _I.REGISTER: Go(_R.REGISTERING, "map-register"),
            _I.NOTIFY: _NEVER,  # no Map-Register sent: no nonce to acknowledge
            _I.NOTIFY_OLDER: _NEVER,
            _I.NOTIFY_DUPLICATE: _NEVER,
            _I.ACK_OVERDUE: _NEVER,
            _I.ACK_LAPSED: _NEVER,
            **_unmoved(_R.UNREGISTERED),
        },
        _R.REGISTERING: {
            _I.REGISTER: Go(_R.REGISTERING, "map-register"),
            _I.NOTIFY: Go(_R.REGISTERED, "log acknowledged"),
            _I.NOTIFY_OLDER: Go(_R.REFRESHING, "log acknowledged"),
            _I.NOTIFY_DUPLICATE: _NEVER,  # nothing acknowledged yet
            _I.ACK_OVERDUE: Go(_R.UNACKNOWLEDGED, "log not acknowledged"),
            _I.ACK_LAPSED: _NEVER,
            **_unmoved(_R.REGISTERING),
        },
        _R.REGISTERED: {
            _I.REGISTER: Go(_R.REFRESHING, "map-register"),
            _I.NOTIFY: Go(_R.REGISTERED),  # an earlier one acknowledged late
            _I.NOTIFY_OLDER: _NEVER,  # the latest is acknowledged already
            _I.NOTIFY_DUPLICATE: Refuse("map-notify-duplicate"),
            _I.ACK_OVERDUE: _NEVER,
            _I.ACK_LAPSED: Go(_R.LOST, "log lost"),
            **_unmoved(_R.REGISTERED),
        },
        _R.REFRESHING: {
            _I.REGISTER: Go(_R.REFRESHING, "map-register"),
            _I.NOTIFY: Go(_R.REGISTERED),
            _I.NOTIFY_OLDER: Go(_R.REFRESHING),
            _I.NOTIFY_DUPLICATE: Refuse("map-notify-duplicate"),
            _I.ACK_OVERDUE: _NEVER,
            _I.ACK_LAPSED: Go(_R.LOST, "log lost"),
            **_unmoved(_R.REFRESHING),
        },
        _R.UNACKNOWLEDGED: {
            _I.REGISTER: Go(_R.UNACKNOWLEDGED, "map-register"),
            _I.NOTIFY: Go(_R.REGISTERED, "log acknowledged"),
            _I.NOTIFY_OLDER: Go(_R.REFRESHING, "log acknowledged"),
            _I.NOTIFY_DUPLICATE: _NEVER,
            _I.ACK_OVERDUE: Go(_R.UNACKNOWLEDGED),  # judged once
            _I.ACK_LAPSED: _NEVER,
            **_unmoved(_R.UNACKNOWLEDGED),
        },
        _R.LOST: {
            _I.REGISTER: Go(_R.LOST, "map-register"),
            _I.NOTIFY: Go(_R.REGISTERED, "log restored"),
            _I.NOTIFY_OLDER: Go(_R.REFRESHING, "log restored"),
            _I.NOTIFY_DUPLICATE: Refuse("map-notify-duplicate"),
            _I.ACK_OVERDUE: _NEVER,
            _I.ACK_LAPSED: Go(_R.LOST),  # logged once
            **_unmoved(_R.LOST),
        },
    },
)
"""The registrar's table, per Map-Server target (rendered in the module documentation)."""

_ACKNOWLEDGED: Final = frozenset({_R.REGISTERED, _R.REFRESHING})
"""The states in which an acknowledgement holds (logged as such)."""


@dataclass(frozen=True, slots=True)
class MapServerTarget:
    """A Map-Server to register with: its address, shared key and key-id (1 HMAC-SHA-1-96,
    2 HMAC-SHA-256-128), and whether to ask it for proxy Map-Replies; the defaults are those of
    a ``[[map-server]]`` table (:class:`lispd.config.model.MapServerRef`)."""

    address: IpAddress
    key: bytes = field(repr=False)
    key_id: int = field_default(MapServerRef, "key_id")
    proxy_reply: bool = field_default(MapServerRef, "proxy_reply")

    def __post_init__(self) -> None:
        if not isinstance(self.address, IPv4Address | IPv6Address):
            raise TypeError(f"a Map-Server address is an IPv4/IPv6 address, not {self.address!r}")
        if not isinstance(self.key, bytes) or not self.key:
            raise ValueError("a Map-Server key is non-empty bytes")
        if self.key_id not in (auth.KeyId.HMAC_SHA_1_96, auth.KeyId.HMAC_SHA_256_128):
            raise ValueError(f"key-id {self.key_id} is not 1 (HMAC-SHA-1) or 2 (HMAC-SHA-256)")


@dataclass(slots=True, eq=False)
class _TargetState:
    target: MapServerTarget
    next_send: float | None = None  # None: not registered yet, due at once
    last_sent: float | None = None
    last_acked: float | None = None
    registers_sent: int = 0
    notifies_accepted: int = 0
    recent: OrderedDict[int, bool] = field(default_factory=OrderedDict)  # nonce -> acked
    first_sent: float | None = None  # the first Map-Register asking for a Map-Notify
    phase: Registration = Registration.UNREGISTERED


def eid_list(records: Sequence[EidRecord], limit: int = MAX_LOGGED_EIDS) -> list[str]:
    """The EID-prefixes of ``records`` for a log line (``[iid]prefix``), at most ``limit`` of
    them and then ``+N`` for the rest."""
    return messagelog.eid_list([(r.eid, r.mask_len) for r in records], limit)


def _check_records(records: Sequence[EidRecord]) -> tuple[EidRecord, ...]:
    out = tuple(records)
    if len(out) > 255:
        raise ValueError("a Map-Register carries at most 255 EID-records")
    for record in out:
        if not isinstance(record, EidRecord):
            raise TypeError(f"a record is an EidRecord, not {type(record).__name__}")
        encode_eid_record(record)  # EncodeError (a ValueError) now rather than at send time
    return out


class Registrar:
    """Registers the local database with Map-Servers and verifies their Map-Notifies."""

    def __init__(
        self,
        targets: Sequence[MapServerTarget],
        records: Sequence[EidRecord],
        interval: float = _REGISTRATION.interval,
        want_map_notify: bool = _REGISTRATION.want_map_notify,
        rng: Callable[[], int] | None = None,
        xtr_id: int | None = None,
        site_id: int = 0,
    ) -> None:
        """``records`` are the wire EID-records of the database as the Map-Servers should hold
        them (authoritative, locators with the local bit, TTL for proxy replies).  With
        ``xtr_id`` set, every Map-Register carries it and ``site_id`` (I bit)."""
        if interval <= 0:
            raise ValueError("the registration interval must be > 0")
        if xtr_id is not None and not 0 <= xtr_id < 1 << 128:
            raise ValueError("the xTR-ID is 128 bits")
        if not 0 <= site_id < 1 << 64:
            raise ValueError("the site-ID is 64 bits")
        self.interval = interval
        self.want_map_notify = want_map_notify
        self.xtr_id = xtr_id
        self.site_id = site_id
        self.for_rtr = False
        """Set the R bit ("for an RTR"): an xTR behind a NAT registering through an RTR
        (draft-style NAT traversal; the node sets it)."""
        self._rng: Callable[[], int] = rng if rng is not None else lambda: secrets.randbits(64)
        self._records = _check_records(records)
        self._states: list[_TargetState] = [_TargetState(t) for t in self._check_targets(targets)]
        self._now: float | None = None
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()

    @staticmethod
    def _check_targets(targets: Sequence[MapServerTarget]) -> list[MapServerTarget]:
        out = list(targets)
        for target in out:
            if not isinstance(target, MapServerTarget):
                raise TypeError(f"a target is a MapServerTarget, not {type(target).__name__}")
        return out

    # --- inputs -------------------------------------------------------------------------------

    @property
    def records(self) -> tuple[EidRecord, ...]:
        """The EID-records being registered."""
        return self._records

    @property
    def targets(self) -> tuple[MapServerTarget, ...]:
        """The Map-Servers registered with."""
        return tuple(s.target for s in self._states)

    def on_timer(self, now: float) -> list[SendControl]:
        """Map-Registers due at ``now``: every target on the first call, then each target
        ``interval`` after its previous one."""
        self._now = now
        sends: list[SendControl] = []
        for state in self._states:
            if state.last_acked is not None and not self._acknowledged(state, now):
                self._judge_lost(state, now)
            if state.next_send is None or state.next_send <= now:
                first = state.first_sent
                if (
                    state.last_acked is None
                    and first is not None
                    and self.want_map_notify
                    and now >= first + ACK_WINDOW_INTERVALS * self.interval
                ):
                    self._judge_unanswered(state, now)
                sends.extend(self._register(state, now))
        return sends

    def update_records(self, records: Sequence[EidRecord], now: float) -> list[SendControl]:
        """The database changed: register the new records with every target at once (each
        target's period restarts from ``now``)."""
        self._now = now
        self._records = _check_records(records)
        sends: list[SendControl] = []
        for state in self._states:
            sends.extend(self._register(state, now))
        return sends

    def update_targets(self, targets: Sequence[MapServerTarget], now: float) -> list[SendControl]:
        """Reconfigure the Map-Servers: unchanged targets keep their schedule and state, new
        ones (or changed key, key-id, proxy flag) register at once, removed ones are forgotten."""
        self._now = now
        old = {s.target: s for s in self._states}
        states: list[_TargetState] = []
        sends: list[SendControl] = []
        for target in self._check_targets(targets):
            state = old.pop(target, None)
            if state is None:
                state = _TargetState(target)
                sends.extend(self._register(state, now))
            states.append(state)
        self._states = states
        # A Map-Server we no longer use (or one whose key changed) forgets us now rather than
        # at its registration timeout, unless another target is still the same address.
        kept = {t.address for t in self.targets}
        for state in old.values():
            if state.target.address not in kept:
                sends.extend(self._deregister(state.target, self._records))
        return sends

    def deregister(self, records: Sequence[EidRecord], now: float) -> list[SendControl]:
        """Withdraw ``records`` (EID-prefixes removed from the database) from every target: a
        Map-Register with the T bit and a record TTL of 0, which removes the registration at
        once instead of at the Map-Server's timeout."""
        self._now = now
        sends: list[SendControl] = []
        for state in self._states:
            checked = _check_records(records)
            if checked and self._step(state, RegistrarInput.WITHDRAW):
                sends.extend(self._deregister(state.target, checked))
        return sends

    def on_map_notify(
        self, raw: bytes, notify: MapNotify, src: IpAddress, now: float
    ) -> list[SendControl]:
        """Handle a Map-Notify (``raw`` its bytes, ``notify`` them decoded) from ``src``.

        Returns the Map-Notify-Ack to send for an unsolicited one, else nothing.
        """
        self._now = now
        states = [s for s in self._states if s.target.address == src]
        if notify.ack:
            if states:
                self._step(states[0], RegistrarInput.NOTIFY_ACK)
            else:
                self.drops["map-notify-ack-unexpected"] += 1
            return []
        if not states:
            self.drops["map-notify-unknown-source"] += 1
            return []
        state = None
        for candidate in states:
            try:
                ok = verify_notify(raw, candidate.target.key)
            except WireError:
                self._step(candidate, RegistrarInput.NOTIFY_MALFORMED)
                return []
            if ok:
                state = candidate
                break
        if state is None:
            self._step(states[0], RegistrarInput.NOTIFY_BAD_AUTH)
            return []
        kind = self._notify_kind(state, notify.nonce)
        was = state.phase
        if not self._step(state, kind):
            return []
        if kind is not RegistrarInput.NOTIFY_UNSOLICITED:  # NOTIFY or NOTIFY_OLDER
            state.recent[notify.nonce] = True
            previous = state.last_acked
            state.last_acked = now
            state.notifies_accepted += 1
            self.stats["notifies-accepted"] += 1
            if was not in _ACKNOWLEDGED:
                self._log_acknowledged(state, notify.nonce, previous, now, was is _R.LOST)
            return []
        # Authentic but answering none of our Map-Registers: the Map-Server's own news.
        self.stats["unsolicited-notifies"] += 1
        key_id = notify.key_id
        if key_id not in (auth.KeyId.HMAC_SHA_1_96, auth.KeyId.HMAC_SHA_256_128):
            key_id = state.target.key_id
        ack = MapNotify(
            nonce=notify.nonce,
            records=notify.records,
            key_id=key_id,
            xtr_id=notify.xtr_id if notify.site_id is not None else None,
            site_id=notify.site_id if notify.xtr_id is not None else None,
            ack=True,
        )
        try:
            payload = encode_signed(ack, state.target.key)
        except (EncodeError, ValueError, TypeError):
            self.drops["map-notify-malformed"] += 1
            return []
        self.stats["notify-acks-sent"] += 1
        return [SendControl(src, LISP_CONTROL_PORT, payload)]

    # --- queries ------------------------------------------------------------------------------

    def phases(self) -> list[tuple[MapServerTarget, Registration]]:
        """Every target with its :class:`Registration` state, in configuration order."""
        return [(s.target, s.phase) for s in self._states]

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` next has work (a Map-Register due, or an acknowledgement about
        to run out, to be logged as lost): ``-inf`` (at once) before the first call, None
        without targets."""
        if not self._states:
            return None
        deadlines = [-math.inf if s.next_send is None else s.next_send for s in self._states]
        deadlines += [d for s in self._states if (d := self._lost_at(s)) is not None]
        return min(deadlines)

    def status(self, now: float | None = None) -> list[dict[str, object]]:
        """Per target: address, last-sent, last-acked, acknowledged, registers-sent, ...

        ``acknowledged`` is judged at ``now`` (default: the latest time given to any method).
        """
        if now is None:
            now = self._now
        out: list[dict[str, object]] = []
        for s in self._states:
            acknowledged = now is not None and self._acknowledged(s, now)
            out.append(
                {
                    "address": str(s.target.address),
                    "key-id": int(s.target.key_id),
                    "proxy-reply": s.target.proxy_reply,
                    "last-sent": s.last_sent,
                    "last-acked": s.last_acked,
                    "acknowledged": acknowledged,
                    "registers-sent": s.registers_sent,
                    "notifies-accepted": s.notifies_accepted,
                    "next-send": s.next_send,
                }
            )
        return out

    # --- internals ----------------------------------------------------------------------------

    def _acknowledged(self, state: _TargetState, now: float) -> bool:
        """Whether a Map-Notify acknowledged ``state``'s target in the last 3 intervals."""
        last = state.last_acked
        return last is not None and now <= last + ACK_WINDOW_INTERVALS * self.interval

    def _lost_at(self, state: _TargetState) -> float | None:
        """The first time at which a logged acknowledgement no longer holds (None when none is
        logged as holding)."""
        if state.phase not in _ACKNOWLEDGED or state.last_acked is None:
            return None
        return math.nextafter(state.last_acked + ACK_WINDOW_INTERVALS * self.interval, math.inf)

    def _step(self, state: _TargetState, kind: RegistrarInput) -> bool:
        """Consult :data:`REGISTRAR_TABLE`: move ``state`` on ``kind`` and return True, or
        return False when the table refuses it (counted in ``drops``)."""
        to = REGISTRAR_TABLE.step(state.phase, kind, self.drops)
        if to is None:
            return False
        state.phase = to
        return True

    def _notify_kind(self, state: _TargetState, nonce: int) -> RegistrarInput:
        """What an authentic Map-Notify with ``nonce`` is to ``state``'s target."""
        acked = state.recent.get(nonce)
        if acked is None:
            return RegistrarInput.NOTIFY_UNSOLICITED
        if acked:
            return RegistrarInput.NOTIFY_DUPLICATE
        latest = next(reversed(state.recent))
        if nonce == latest or state.recent[latest]:
            return RegistrarInput.NOTIFY
        return RegistrarInput.NOTIFY_OLDER

    def _judge_lost(self, state: _TargetState, now: float) -> None:
        """The acknowledgement has run out: ``registration lost`` when one was holding."""
        was = state.phase
        if not self._step(state, RegistrarInput.ACK_LAPSED) or was not in _ACKNOWLEDGED:
            return
        assert state.last_acked is not None
        log.warning(
            "registration lost %s",
            kv(
                map_server=state.target.address,
                last_acked_ago=round(now - state.last_acked, 3),
                unanswered=sum(1 for acked in state.recent.values() if not acked),
                eids=eid_list(self._records),
            ),
        )

    def _judge_unanswered(self, state: _TargetState, now: float) -> None:
        """Nothing acknowledged 3 intervals after our first Map-Register to the target: log
        ``registration not acknowledged`` once."""
        was = state.phase
        if not self._step(state, RegistrarInput.ACK_OVERDUE) or was is not _R.REGISTERING:
            return
        assert state.first_sent is not None
        first = state.first_sent
        log.warning(
            "registration not acknowledged %s",
            kv(
                map_server=state.target.address,
                registers_sent=state.registers_sent,
                since=round(now - first, 3),
                eids=eid_list(self._records),
            ),
        )

    def _log_acknowledged(
        self, state: _TargetState, nonce: int, previous: float | None, now: float, restored: bool
    ) -> None:
        """Log ``registration acknowledged`` (first time) or ``restored`` (after a loss)."""
        restored = restored and previous is not None
        fields: dict[str, object] = {
            "map-server": state.target.address,
            "nonce": f"0x{nonce:016x}",
            "proxy-reply": state.target.proxy_reply,
            "eids": eid_list(self._records),
        }
        if restored:
            assert previous is not None
            fields["last-acked-ago"] = round(now - previous, 3)
        log.info("registration %s %s", "restored" if restored else "acknowledged", pairs(fields))

    def _take_nonce(self) -> int:
        return self._rng() & _MASK64

    def _deregister(
        self, target: MapServerTarget, records: Sequence[EidRecord]
    ) -> list[SendControl]:
        if not records:
            return []
        message = MapRegister(
            nonce=self._take_nonce(),
            records=tuple(replace(r, ttl=0) for r in records),
            key_id=target.key_id,
            proxy_reply=target.proxy_reply,
            want_map_notify=False,
            ttl_timeout=True,
            for_rtr=self.for_rtr,
            xtr_id=self.xtr_id,
            site_id=self.site_id if self.xtr_id is not None else None,
        )
        self.stats["deregisters-sent"] += 1
        return [SendControl(target.address, LISP_CONTROL_PORT, encode_signed(message, target.key))]

    def _register(self, state: _TargetState, now: float) -> list[SendControl]:
        if not self._records:
            if self._step(state, RegistrarInput.REGISTER_EMPTY):
                state.next_send = now + self.interval
                self.stats["register-skipped-empty"] += 1
            return []
        if not self._step(state, RegistrarInput.REGISTER):
            return []
        state.next_send = now + self.interval
        target = state.target
        nonce = self._take_nonce()
        message = MapRegister(
            nonce=nonce,
            records=self._records,
            key_id=target.key_id,
            proxy_reply=target.proxy_reply,
            want_map_notify=self.want_map_notify,
            for_rtr=self.for_rtr,
            xtr_id=self.xtr_id,
            site_id=self.site_id if self.xtr_id is not None else None,
        )
        payload = encode_signed(message, target.key)
        state.recent[nonce] = False
        while len(state.recent) > RECENT_NONCES:
            state.recent.popitem(last=False)
        state.last_sent = now
        if state.first_sent is None and self.want_map_notify:
            state.first_sent = now
        state.registers_sent += 1
        self.stats["registers-sent"] += 1
        return [SendControl(target.address, LISP_CONTROL_PORT, payload)]
