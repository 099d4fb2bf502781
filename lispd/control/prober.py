"""RLOC probing (RFC 9301 section 7.1): is an RLOC alive, how far away, how slow?

A probe is a Map-Request with the P bit sent straight to the RLOC's UDP 4342 (not inside an
ECM); the answer is a Map-Reply with the P bit and the same nonce.  A sans-IO machine like
:mod:`lispd.control.registrar`: every input carries ``now`` from the daemon's monotonic clock,
outputs are :class:`SendControl` values and :class:`RlocChange` verdicts, nonces come from an
injected 64-bit source, and :meth:`Prober.next_deadline` is the one timer to arm.

What a probe carries:

- Source-EID AFI 0 (RLOC-probes are not about a source EID).
- One EID-record: the ``(iid, prefix)`` given to :meth:`Prober.watch` (instance-ID LCAF when
  ``iid != 0``), or ``0.0.0.0/0`` (``::/0`` for an IPv6 RLOC) when none is given (a PETR, which
  has no EID-prefix of its own to be asked about).
- ITR-RLOCs: the local RLOCs *of the probed RLOC's address family* only.  The answerer sends its
  Map-Reply to one ITR-RLOC from one of its own addresses; the reply is accepted only from the
  probed address, so offering an ITR-RLOC of the other family would invite a reply from an
  address we then refuse.  An RLOC of a family we have no local RLOC of cannot be probed
  (``ValueError`` from :meth:`Prober.watch`).

Timing and verdicts:

- The first probe goes out from :meth:`Prober.watch`; then one every ``interval`` seconds
  (measured from the previous probe).  At most one probe per RLOC is outstanding: a probe
  unanswered ``timeout`` seconds after it was sent is *lost* (its nonce is forgotten, a late
  answer counts as ``probe-reply-unknown-nonce``), and only then may the next one go out, so
  with ``timeout > interval`` probes go out every ``timeout`` seconds.
- A lost probe of an RLOC that is not (yet) down is followed by the next one at once, not an
  interval later: an RLOC that stops answering right after a reply is down ``interval +
  down_after * timeout`` seconds later at most (19 s with the defaults), within three
  intervals whenever ``down_after * timeout <= 2 * interval``.  (Waiting an interval after
  each loss would take up to ``down_after * interval + timeout``: 33 s.)  A down RLOC is
  probed every ``interval`` again.  Over the rate limit these quick retries wait behind the
  regular probes, so that dead RLOCs cannot starve the others.
- An RLOC starts *unknown* (``up is None``), which :meth:`Prober.is_usable` treats like up: a
  dead-on-arrival RLOC costs ``down_after`` probe rounds of traffic, but a live one (the common
  case) never has its traffic held back or dropped while the first answer is on its way.
- ``down_after`` losses in a row make it *down*; the first accepted reply makes it *up*.
- An :class:`RlocChange` is reported when usability flips: unknown or up -> down (from
  :meth:`Prober.on_timer`), down -> up (from :meth:`Prober.on_map_reply`).  unknown -> up changes
  nothing for forwarding and is not reported.
- The same flips are logged (logger ``lispd.control.prober``): ``rloc down`` at WARNING,
  ``rloc up`` at INFO; unknown -> up only at DEBUG (``rloc reachable``).

State table.  Each watched RLOC is in one :class:`ProbeState` (:attr:`RlocState.up` is None in
the unknown ones, True in the up ones, False when down) and every input for it has a
:class:`ProbeInput` kind; :data:`PROBER_TABLE` (total, consulted before acting) says where each
pair leads.  A probe reply is an RLOC's when it carries its outstanding probe's nonce
(``reply``, or ``reply-wrong-source`` from another address), or comes from its address without
(``reply-stale``); one without the P bit, or with an unknown nonce from an address that is no
watched RLOC, reaches no table.  ``probe`` comes only when no probe is outstanding.

- ``unknown``: reply (log reachable) -> up, loss (probe at once) -> unknown-retrying,
  loss-down (rloc-change down) -> down; stays on probe (probe), probe-deferred; refuses
  reply-wrong-source, reply-stale.
- ``unknown-retrying``: reply (log reachable) -> up, loss-down (rloc-change down) -> down;
  stays on probe (probe), probe-deferred, loss (probe at once); refuses reply-wrong-source,
  reply-stale.
- ``up``: loss (probe at once) -> up-retrying, loss-down (rloc-change down) -> down; stays
  on probe (probe), probe-deferred, reply; refuses reply-wrong-source, reply-stale.
- ``up-retrying``: reply -> up, loss-down (rloc-change down) -> down; stays on probe
  (probe), probe-deferred, loss (probe at once); refuses reply-wrong-source, reply-stale.
- ``down``: reply (rloc-change up) -> up; stays on probe (probe), probe-deferred, loss,
  loss-down; refuses reply-wrong-source, reply-stale.

Refused inputs are counted: reply-wrong-source as ``probe-reply-wrong-source``; reply-stale
as ``probe-reply-unknown-nonce``.

Round-trip time is reply arrival - probe send time.  Hop counts are not in the RFC; like
lispers.net we derive them from IP TTLs: the daemon sends probes with TTL :data:`PROBE_TTL` (64);
the answerer reports the TTL the probe arrived with in the Map-Reply's reserved byte 2
(:attr:`MapReply.reported_ttl`), and the daemon hands :meth:`Prober.on_map_reply` the TTL the
reply arrived with (``IP_RECVTTL`` / ``IPV6_RECVHOPLIMIT``).  Forward hops = 64 - reported TTL,
return hops = 64 - received TTL: the number of routers that decremented the TTL, so 0 for a
directly connected RLOC (lispers.net counts one more, the receiving host).  A value outside
1..64 (0 is "not reported") makes that direction unknown, shown ``?``; hops are kept as
``"F/R"`` strings, e.g. ``"2/3"``, ``"?/3"``.

``drops`` counts refused probe replies by reason: ``probe-reply-not-probe`` (no P bit),
``probe-reply-unknown-nonce`` (no outstanding probe has that nonce: never sent, already answered,
timed out, or unwatched), ``probe-reply-wrong-source`` (the nonce of an outstanding probe, but
from an address other than the RLOC it was sent to).  ``stats`` counts ``probes-sent``,
``probes-lost``, ``replies``, ``rloc-down`` and ``rloc-up`` (reported changes only).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import secrets
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import Final, NamedTuple

from lispd.config.model import LimitsConfig, ProbingConfig
from lispd.control import statetable
from lispd.control.outputs import SendControl
from lispd.logfmt import kv, pairs
from lispd.ratelimit import TokenBucket
from lispd.wire.address import NO_ADDRESS
from lispd.wire.address import eid_prefix as wire_eid_prefix
from lispd.wire.data import LISP_CONTROL_PORT
from lispd.wire.mapreply import MapReply
from lispd.wire.maprequest import MapRequest, encode_map_request
from lispd.wire.records import EidPrefix

IpAddress = IPv4Address | IPv6Address
IpNetwork = IPv4Network | IPv6Network

log = logging.getLogger("lispd.control.prober")

PROBE_TTL: Final = 64
"""The IP TTL (hop limit) the daemon sends probes with; hop counts are reckoned from it."""

_MASK64: Final = (1 << 64) - 1
_NONCE_TRIES: Final = 16
_DEFAULT_V4: Final = IPv4Network("0.0.0.0/0")
_DEFAULT_V6: Final = IPv6Network("::/0")
_PROBING: Final = ProbingConfig()
_LIMITS: Final = LimitsConfig()


class ProbeState(Enum):
    """What probing knows of one RLOC (see the module documentation)."""

    UNKNOWN = "unknown"
    """No reply yet, no probe lost yet (usable)."""
    UNKNOWN_RETRYING = "unknown-retrying"
    """No reply yet, some probes lost (fewer than ``down_after``): retried at once (usable)."""
    UP = "up"
    """Answered; no probe lost since (usable)."""
    UP_RETRYING = "up-retrying"
    """Answered, then some probes lost in a row (fewer than ``down_after``): retried at once
    (usable)."""
    DOWN = "down"
    """``down_after`` probes lost in a row (unusable); probed every interval."""


class ProbeInput(Enum):
    """What happens to one probed RLOC."""

    PROBE = "probe"
    """A probe goes out (from :meth:`Prober.watch`, or the timer at the next probe time)."""
    PROBE_DEFERRED = "probe-deferred"
    """A probe is due but over the rate limit: put off a little."""
    REPLY = "reply"
    """A probe reply with the outstanding probe's nonce, from the RLOC."""
    REPLY_WRONG_SOURCE = "reply-wrong-source"
    """A probe reply with the outstanding probe's nonce, from another address."""
    REPLY_STALE = "reply-stale"
    """A probe reply from the RLOC with no outstanding probe's nonce (a duplicate, an answer
    to a lost probe, or never sent)."""
    LOSS = "loss"
    """The outstanding probe timed out; fewer than ``down_after`` lost in a row."""
    LOSS_DOWN = "loss-down"
    """The outstanding probe timed out; ``down_after`` (or more) lost in a row."""


_P = ProbeState
_IN = ProbeInput
_Go = statetable.Go
_Refuse = statetable.Refuse


def _probe_row(
    state: ProbeState, reply: statetable.Go[ProbeState], loss: ProbeState, loss_down: str
) -> dict[ProbeInput, statetable.Go[ProbeState] | statetable.Refuse]:
    return {
        _IN.PROBE: _Go(state, "probe"),
        _IN.PROBE_DEFERRED: _Go(state),
        _IN.REPLY: reply,
        _IN.REPLY_WRONG_SOURCE: _Refuse("probe-reply-wrong-source"),
        _IN.REPLY_STALE: _Refuse("probe-reply-unknown-nonce"),
        _IN.LOSS: _Go(loss, "probe at once" if loss is not _P.DOWN else ""),
        _IN.LOSS_DOWN: _Go(_P.DOWN, loss_down),
    }


PROBER_TABLE: Final = statetable.StateTable(
    "prober",
    ProbeState,
    ProbeInput,
    {
        _P.UNKNOWN: _probe_row(
            _P.UNKNOWN, _Go(_P.UP, "log reachable"), _P.UNKNOWN_RETRYING, "rloc-change down"
        ),
        _P.UNKNOWN_RETRYING: _probe_row(
            _P.UNKNOWN_RETRYING,
            _Go(_P.UP, "log reachable"),
            _P.UNKNOWN_RETRYING,
            "rloc-change down",
        ),
        _P.UP: _probe_row(_P.UP, _Go(_P.UP), _P.UP_RETRYING, "rloc-change down"),
        _P.UP_RETRYING: _probe_row(_P.UP_RETRYING, _Go(_P.UP), _P.UP_RETRYING, "rloc-change down"),
        _P.DOWN: _probe_row(_P.DOWN, _Go(_P.UP, "rloc-change up"), _P.DOWN, ""),
    },
)
"""The prober's table, per watched RLOC (rendered in the module documentation)."""

_VERDICT: Final[dict[ProbeState, bool | None]] = {
    _P.UNKNOWN: None,
    _P.UNKNOWN_RETRYING: None,
    _P.UP: True,
    _P.UP_RETRYING: True,
    _P.DOWN: False,
}
"""``up`` as :class:`RlocState` shows it: None (unknown), True or False."""


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    """Probe every ``interval`` seconds; a probe unanswered after ``timeout`` seconds is lost;
    an RLOC is down after ``down_after`` losses in a row and up again on the first reply; the
    last ``history`` RTTs and hop counts are kept; at most ``max_per_second`` probes go out a
    second in all (a large map-cache spreads its probes out rather than bursting); at most
    ``max_rlocs`` RLOCs are watched at once (more are refused: ``probe-table-full``).

    The defaults are those of ``lispd.conf`` (:class:`lispd.config.model.ProbingConfig`, and
    ``limits.probed-rlocs`` for ``max_rlocs``); ``history`` is not configurable."""

    interval: float = _PROBING.interval
    timeout: float = _PROBING.timeout
    down_after: int = _PROBING.down_after
    history: int = 3
    max_per_second: float = _PROBING.max_per_second
    max_rlocs: int = _LIMITS.probed_rlocs

    def __post_init__(self) -> None:
        for name in ("interval", "timeout", "max_per_second"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"probe {name} must be a finite number > 0, not {value!r}")
        for name in ("down_after", "history", "max_rlocs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"probe {name} must be an integer >= 1, not {value!r}")


class RlocChange(NamedTuple):
    """A probed RLOC became usable (``up=True``) or unusable (``up=False``)."""

    rloc: IpAddress
    up: bool


@dataclass(frozen=True, slots=True)
class RlocState:
    """A snapshot of what probing knows of one RLOC.

    ``up`` is None until the first verdict; ``rtts`` (seconds) and ``hops`` (``"F/R"``) are
    newest first; ``losses`` counts losses since the last reply; ``last_reply`` is the clock
    time of the last accepted reply.
    """

    rloc: IpAddress
    eid_prefix: tuple[int, IpNetwork]
    up: bool | None
    last_rtt: float | None
    rtts: tuple[float, ...]
    hops: tuple[str, ...]
    last_reply: float | None
    losses: int
    probes_sent: int
    replies: int
    outstanding: bool

    @property
    def usable(self) -> bool:
        """Unknown and up RLOCs carry traffic; down ones do not."""
        return self.up is not False


@dataclass(slots=True, eq=False)
class _Target:
    rloc: IpAddress
    eid_prefix: tuple[int, IpNetwork]
    history: int
    phase: ProbeState = ProbeState.UNKNOWN
    rtts: deque[float] = field(init=False)
    hops: deque[str] = field(init=False)
    last_reply: float | None = None
    losses: int = 0
    probes_sent: int = 0
    replies: int = 0
    nonce: int | None = None  # of the outstanding probe
    sent_at: float = 0.0  # of the outstanding (or last) probe
    expires: float = 0.0  # when the outstanding probe counts as lost
    next_probe: float = 0.0
    changed: float | None = None  # when ``up`` last changed
    order: int = 0  # when it was watched: due targets are handled in this order
    stamp: int = -1  # of its live item in the prober's deadline heap (older items are stale)

    def __post_init__(self) -> None:
        self.rtts = deque(maxlen=self.history)
        self.hops = deque(maxlen=self.history)

    @property
    def up(self) -> bool | None:
        """None until the first verdict, then whether the RLOC is up."""
        return _VERDICT[self.phase]

    def deadline(self) -> float:
        """The outstanding probe's expiry (no probe may go out before it), else the next probe."""
        return self.expires if self.nonce is not None else self.next_probe


def hop_count(ttl: int | None) -> str:
    """Routers between sender and receiver of a packet sent with TTL :data:`PROBE_TTL` that
    arrived with ``ttl``; ``"?"`` when ``ttl`` is unknown or outside 1..64."""
    if ttl is None or not 1 <= ttl <= PROBE_TTL:
        return "?"
    return str(PROBE_TTL - ttl)


def _prefix_text(iid: int, prefix: IpNetwork) -> str:
    return f"[{iid}]{prefix}" if iid else str(prefix)


class Prober:
    """Probes RLOCs and tracks their reachability, round-trip times and hop counts."""

    def __init__(
        self,
        local_rlocs: Sequence[IpAddress],
        settings: ProbeSettings | None = None,
        rng: Callable[[], int] | None = None,
    ) -> None:
        """``local_rlocs`` are offered as ITR-RLOCs (those of the probed RLOC's family);
        ``rng`` returns 64-bit nonces (default: :func:`secrets.randbits`)."""
        rlocs: list[IpAddress] = []
        for addr in local_rlocs:
            if not isinstance(addr, IPv4Address | IPv6Address):
                raise TypeError(f"a local RLOC is an IPv4/IPv6 address, not {addr!r}")
            if addr not in rlocs:
                rlocs.append(addr)
        self.local_rlocs: tuple[IpAddress, ...] = tuple(rlocs)
        self.settings = settings if settings is not None else ProbeSettings()
        self._rng: Callable[[], int] = rng if rng is not None else lambda: secrets.randbits(64)
        self._targets: dict[IpAddress, _Target] = {}
        self._nonces: dict[int, IpAddress] = {}  # outstanding probe nonce -> probed RLOC
        rate = self.settings.max_per_second
        self._budget = TokenBucket(rate=rate, burst=max(1.0, rate))
        self._full_logged = False
        # (deadline, stamp, rloc): each target's deadline, queued again when it changes (the
        # older item goes stale: its stamp is no longer the target's).  Neither a timer nor a
        # reply nor next_deadline walks the targets: thousands of RLOCs cost log(n) per event.
        self._heap: list[tuple[float, int, IpAddress]] = []
        self._stamps = itertools.count()
        self._orders = itertools.count()
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()

    # --- API ----------------------------------------------------------------------------------

    def set_settings(self, settings: ProbeSettings) -> None:
        """Replace the settings (reload): watched RLOCs keep their state and history and
        follow the new interval from their next probe."""
        self.settings = settings
        rate = settings.max_per_second
        self._budget = TokenBucket(rate=rate, burst=max(1.0, rate))

    @property
    def watched(self) -> tuple[IpAddress, ...]:
        """The RLOCs being probed, in the order they were added."""
        return tuple(self._targets)

    def watch(
        self,
        rloc: IpAddress,
        eid_prefix: tuple[int, IpNetwork] | None,
        now: float,
    ) -> list[SendControl]:
        """Start probing ``rloc``, naming ``eid_prefix`` (instance-ID, prefix) in the probes
        (the default route of the RLOC's family when None); returns the first probe.

        Idempotent: an RLOC already watched keeps its state and EID-prefix, and nothing is sent.
        With ``max_rlocs`` RLOCs watched already, ``rloc`` is not (counted
        ``probe-table-full``; it stays usable, as an unprobed RLOC is).  Raises ``ValueError``
        for an RLOC of a family without a local RLOC, or an EID-prefix that cannot be encoded;
        ``TypeError`` for something that is not an address.
        """
        if not isinstance(rloc, IPv4Address | IPv6Address):
            raise TypeError(f"an RLOC is an IPv4/IPv6 address, not {rloc!r}")
        if rloc in self._targets:
            return []
        if len(self._targets) >= self.settings.max_rlocs:
            self.drops["probe-table-full"] += 1
            if not self._full_logged:  # one line per time the table fills up
                log.warning("probe table full %s", kv(max_rlocs=self.settings.max_rlocs))
                self._full_logged = True
            return []
        self._full_logged = False
        if not any(a.version == rloc.version for a in self.local_rlocs):
            raise ValueError(f"cannot probe {rloc}: no local IPv{rloc.version} RLOC")
        if eid_prefix is None:
            record: tuple[int, IpNetwork] = (0, _DEFAULT_V4 if rloc.version == 4 else _DEFAULT_V6)
        else:
            iid, prefix = eid_prefix
            if isinstance(iid, bool) or not isinstance(iid, int) or not 0 <= iid < 1 << 24:
                raise ValueError(f"instance-ID {iid!r} is not a 24-bit integer")
            record = (iid, ip_network(prefix))
        target = _Target(rloc, record, self.settings.history, order=next(self._orders))
        self._encode(target, 0)  # refuse an unencodable probe now, before any state is kept
        self._targets[rloc] = target
        try:
            sends = self._probe_within_budget(target, now)
        except RuntimeError:
            del self._targets[rloc]
            raise
        self._schedule(target)
        return sends

    def unwatch(self, rloc: IpAddress) -> None:
        """Stop probing ``rloc`` and forget its state (a later reply to its probe is dropped as
        ``probe-reply-unknown-nonce``).  Unknown RLOCs are ignored."""
        target = self._targets.pop(rloc, None)
        if target is not None and target.nonce is not None:  # its heap items are stale now
            self._nonces.pop(target.nonce, None)

    def is_usable(self, rloc: IpAddress) -> bool:
        """False only for an RLOC probing has declared down (unknown, up and unwatched RLOCs are
        usable)."""
        target = self._targets.get(rloc)
        return target is None or target.up is not False

    def state(self, rloc: IpAddress) -> RlocState:
        """What probing knows of ``rloc`` (``KeyError`` if it is not watched)."""
        t = self._targets[rloc]
        return RlocState(
            rloc=t.rloc,
            eid_prefix=t.eid_prefix,
            up=t.up,
            last_rtt=t.rtts[0] if t.rtts else None,
            rtts=tuple(t.rtts),
            hops=tuple(t.hops),
            last_reply=t.last_reply,
            losses=t.losses,
            probes_sent=t.probes_sent,
            replies=t.replies,
            outstanding=t.nonce is not None,
        )

    def states(self, now: float | None = None) -> list[dict[str, object]]:
        """Every watched RLOC as JSON-ready dicts for ``show rlocs`` (RTTs in seconds, rounded to
        microseconds; with ``now``, also the age of the last reply)."""
        out: list[dict[str, object]] = []
        for rloc in self._targets:
            s = self.state(rloc)
            row: dict[str, object] = {
                "rloc": str(s.rloc),
                "eid-prefix": _prefix_text(*s.eid_prefix),
                "state": {None: "unknown", True: "up", False: "down"}[s.up],
                "up": s.up,
                "last-rtt": None if s.last_rtt is None else round(s.last_rtt, 6),
                "rtts": [round(r, 6) for r in s.rtts],
                "hops": list(s.hops),
                "last-reply": s.last_reply,
                "losses": s.losses,
                "probes-sent": s.probes_sent,
                "replies": s.replies,
                "outstanding": s.outstanding,
            }
            if now is not None:
                row["last-reply-age"] = (
                    None if s.last_reply is None else round(now - s.last_reply, 3)
                )
            out.append(row)
        return out

    # --- inputs -------------------------------------------------------------------------------

    def on_timer(self, now: float) -> tuple[list[SendControl], list[RlocChange]]:
        """Count the probes lost by ``now`` and send the ones due; returns (probes to send,
        RLOCs that went down)."""
        due: list[_Target] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _when, stamp, rloc = heapq.heappop(heap)
            target = self._targets.get(rloc)
            if target is not None and target.stamp == stamp:
                due.append(target)
        due.sort(key=lambda t: t.order)
        sends: list[SendControl] = []
        changes: list[RlocChange] = []
        retries: list[_Target] = []
        try:
            for target in due:
                if target.nonce is not None and now >= target.expires:
                    change = self._lost(target, now)
                    if change is not None:
                        changes.append(change)
                if target.nonce is None and now >= target.next_probe:
                    if target.losses and target.up is not False:
                        retries.append(target)  # a suspect's quick retry: after the others
                    else:
                        sends += self._probe_within_budget(target, now)
            for target in retries:
                sends += self._probe_within_budget(target, now)
        finally:  # queued again, also when a probe could not be made (a failing nonce source)
            for target in due:
                self._schedule(target)
        return sends, changes

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` next has something to do (None when nothing is watched): the
        earliest live item of the deadline heap."""
        heap = self._heap
        while heap:
            _when, stamp, rloc = heap[0]
            target = self._targets.get(rloc)
            if target is not None and target.stamp == stamp:
                return heap[0][0]
            heapq.heappop(heap)  # its target changed or went since it was queued
        return None

    def on_map_reply(
        self, reply: MapReply, src: IpAddress, now: float, ttl: int | None = None
    ) -> RlocChange | None:
        """A Map-Reply received from ``src`` at ``now`` (``ttl``: the IP TTL / hop limit it
        arrived with, when the daemon knows it).  Returns ``RlocChange(rloc, True)`` when it
        brought a down RLOC back up, else None; refused replies are counted in ``drops``."""
        if not reply.probe:
            self.drops["probe-reply-not-probe"] += 1
            return None
        probed = self._nonces.get(reply.nonce)
        if probed is None:
            stale = self._targets.get(src)
            if stale is not None:
                self._step(stale, ProbeInput.REPLY_STALE)
            else:
                self.drops["probe-reply-unknown-nonce"] += 1
            return None
        if probed != src:
            self._step(self._targets[probed], ProbeInput.REPLY_WRONG_SOURCE)
            return None
        target = self._targets[probed]
        was = target.up
        if not self._step(target, ProbeInput.REPLY):
            return None
        del self._nonces[reply.nonce]
        target.nonce = None
        self._schedule(target)  # its deadline is the next probe now
        target.losses = 0
        target.replies += 1
        target.last_reply = now
        target.rtts.appendleft(max(0.0, now - target.sent_at))
        target.hops.appendleft(f"{hop_count(reply.reported_ttl)}/{hop_count(ttl)}")
        self.stats["replies"] += 1
        if was is not True:
            self._log_up(target, was, now)
            target.changed = now
        if was is False:
            self.stats["rloc-up"] += 1
            return RlocChange(target.rloc, True)
        return None

    def phase(self, rloc: IpAddress) -> ProbeState:
        """The :class:`ProbeState` of ``rloc`` (``KeyError`` if it is not watched)."""
        return self._targets[rloc].phase

    # --- internals ----------------------------------------------------------------------------

    def _schedule(self, target: _Target) -> None:
        """Queue ``target``'s deadline (its earlier items go stale); rebuild the heap from the
        targets when stale items outnumber them."""
        target.stamp = next(self._stamps)
        heapq.heappush(self._heap, (target.deadline(), target.stamp, target.rloc))
        if len(self._heap) > 4 * len(self._targets) + 64:
            self._heap = [(t.deadline(), t.stamp, t.rloc) for t in self._targets.values()]
            heapq.heapify(self._heap)

    def _step(self, target: _Target, kind: ProbeInput) -> bool:
        """Consult :data:`PROBER_TABLE`: move ``target`` on ``kind`` and return True, or return
        False when the table refuses it (counted in ``drops``)."""
        to = PROBER_TABLE.step(target.phase, kind, self.drops)
        if to is None:
            return False
        target.phase = to
        return True

    def _encode(self, target: _Target, nonce: int) -> bytes:
        iid, prefix = target.eid_prefix
        address, mask_len = wire_eid_prefix(iid, prefix)
        request = MapRequest(
            nonce=nonce,
            records=(EidPrefix(address, mask_len),),
            itr_rlocs=tuple(a for a in self.local_rlocs if a.version == target.rloc.version),
            source_eid=NO_ADDRESS,
            probe=True,
        )
        return encode_map_request(request)

    def _new_nonce(self) -> int:
        for _ in range(_NONCE_TRIES):
            nonce = self._rng() & _MASK64
            if nonce not in self._nonces:
                return nonce
        raise RuntimeError("the nonce source keeps repeating outstanding nonces")

    def _probe_within_budget(self, target: _Target, now: float) -> list[SendControl]:
        """Probe ``target`` now, or, over the rate limit, a little later."""
        if not self._budget.take(now):
            if self._step(target, ProbeInput.PROBE_DEFERRED):
                target.next_probe = now + 1.0 / self.settings.max_per_second
                self.stats["probes-deferred"] += 1
            return []
        if not self._step(target, ProbeInput.PROBE):
            return []
        return self._probe(target, now)

    def _probe(self, target: _Target, now: float) -> list[SendControl]:
        nonce = self._new_nonce()
        payload = self._encode(target, nonce)
        target.nonce = nonce
        target.sent_at = now
        target.expires = now + self.settings.timeout
        target.next_probe = now + self.settings.interval
        target.probes_sent += 1
        self._nonces[nonce] = target.rloc
        self.stats["probes-sent"] += 1
        return [SendControl(target.rloc, LISP_CONTROL_PORT, payload)]

    def _log_up(self, target: _Target, was: bool | None, now: float) -> None:
        """``rloc up`` (INFO) after down, ``rloc reachable`` (DEBUG) after unknown."""
        iid, prefix = target.eid_prefix
        fields: dict[str, object] = {
            "rloc": target.rloc,
            "eid-prefix": f"[{iid}]{prefix}",
            "rtt": round(target.rtts[0], 6),
            "hops": target.hops[0],
        }
        if was is False:
            if target.changed is not None:
                fields["down-for"] = round(now - target.changed, 3)
            log.info("rloc up %s", pairs(fields))
        else:
            log.debug("rloc reachable %s", pairs(fields))

    def _log_down(self, target: _Target, now: float) -> None:
        """``rloc down`` (WARNING): ``down_after`` probes in a row went unanswered."""
        last = None if target.last_reply is None else round(now - target.last_reply, 3)
        iid, prefix = target.eid_prefix
        log.warning(
            "rloc down %s",
            kv(
                rloc=target.rloc,
                eid_prefix=f"[{iid}]{prefix}",
                losses=target.losses,
                last_reply_ago=last,
            ),
        )

    def _lost(self, target: _Target, now: float) -> RlocChange | None:
        assert target.nonce is not None
        final = target.losses + 1 >= self.settings.down_after
        was = target.phase
        if not self._step(target, ProbeInput.LOSS_DOWN if final else ProbeInput.LOSS):
            return None
        self._nonces.pop(target.nonce, None)
        target.nonce = None
        target.losses += 1
        self.stats["probes-lost"] += 1
        if was is ProbeState.DOWN:
            return None
        if target.phase is ProbeState.DOWN:
            target.changed = now
            self.stats["rloc-down"] += 1
            self._log_down(target, now)
            return RlocChange(target.rloc, False)
        # Suspect: probe again at once rather than an interval later (see the module doc).
        target.next_probe = min(target.next_probe, target.expires)
        return None
