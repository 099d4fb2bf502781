"""``rig``: the LISP Internet Groper for DDT (RFC 8112), walks the DDT tree for an EID.

    rig [-c CONFIG] [-t NODE] [-s SOURCE-EID] [--iid N] [--timeout S] [--max-steps N] [--json]
        EID

Asks a DDT node about ``EID`` with a DDT-originated Map-Request (an ECM with the D bit, RFC 8111
section 6.3) and follows the Map-Referrals that come back, node after node, down to the
Map-Server, printing every step::

    Send DDT map-request to 192.0.2.40 for [0]198.51.100.10 ...
    Received node-referral from 192.0.2.40 with rtt 0.002 secs
      [0]198.51.100.0/25, ttl 1440, auth
        Referral    Priority/Weight
        192.0.2.50  1/100
    Send DDT map-request to 192.0.2.50 for [0]198.51.100.10 ...
    Received ms-referral from 192.0.2.50 with rtt 0.001 secs
      [0]198.51.100.0/26, ttl 1440, auth
        Referral    Priority/Weight
        192.0.2.10  1/100
    Send DDT map-request to 192.0.2.10 for [0]198.51.100.10 ...
    Received ms-ack from 192.0.2.10 with rtt 0.001 secs
      [0]198.51.100.0/28, ttl 1440, auth
        Referral    Priority/Weight
        192.0.2.10  1/100
    Received map-reply from 192.0.2.6 with rtt 0.002 secs

    Mapping entry for EID '[0]198.51.100.0/28', record ttl 1440, auth
      Locator    State  Priority/Weight
      192.0.2.6  up     1/100

The walk (RFC 8111 section 7.3, as a DDT Map-Resolver walks, without its referral cache):

* It starts at ``--to`` (an address or a name), else at the ``[ddt] roots`` of the
  configuration (``-c``, default ``/etc/lispd/lispd.conf``), the first root first, the next
  one when it does not answer.
* A NODE-REFERRAL or MS-REFERRAL is followed to the best member of its referral set: lowest
  priority first (set order among equals); never priority 255, a non-IP, multicast, broadcast
  or unspecified address.  When the member asked does not answer within ``--timeout`` seconds
  (``Timed out: ...``), the next member is asked; when the whole set is silent, the walk ends
  (``timeout``); when it has no usable member, too (``no-usable-referral``).
* The Map-Reply is taken from any address (the ETR answers, not the Map-Server) when it
  carries the nonce of a request to a node not known to be a DDT node (one that answered with
  a referral).
* MS-ACK, MS-NOT-REGISTERED, DELEGATION-HOLE and NOT-AUTHORITATIVE end the walk.  The
  Map-Server of an MS-ACK also forwards the request to the ETR (or answers for it): the
  Map-Reply that comes back to us (carrying the nonce of our request to a Map-Server) is shown
  as the final answer; after the MS-ACK rig waits ``--timeout`` seconds for it at most.  A
  Map-Server that sends a Map-Reply but no Map-Referral (not DDT-aware) ends the walk with that
  Map-Reply when the request times out (outcome ``map-reply``).
* A referral already followed (same action, EID-prefix and referral set), or one less specific
  than the previous referral followed, is a referral loop: the walk ends (``loop``).
* At most ``--max-steps`` Map-Requests are sent (timeouts included); one more would be needed:
  the walk ends (``max-steps``).

Matching: every request carries a fresh random 64-bit nonce; a Map-Referral is taken only when
it carries the nonce of a request of the current step (a late answer of a member that timed out
counts) and comes from the address that request went to, and only its record covering the EID
(the most specific; a negative answer's only record is taken as it is).  Everything else that
reaches our socket (garbage, other nonces, other sources, answers to earlier steps) is ignored
and counted by reason (``malformed``, ``wrong-nonce``, ...; printed at the end, under
``ignored`` in JSON).

Packets: the Map-Request is lig's (:func:`lispd.cli.lookup.build_request`) with the ECM D bit:
ITR-RLOC and outer source the address this machine sends from toward the node, inner UDP
source port our socket's port (DDT nodes send the Map-Referral there, RFC 8111 section 7.2).
A socket is opened per local address the nodes are reached from.

``--json`` prints one object on stdout (progress lines go to stderr)::

    {"eid": "[0]198.51.100.10/32", "outcome": "ms-ack", "steps": [{"node": "192.0.2.40",
     "action": "node-referral", "prefix": "[0]198.51.100.0/25", "ttl": 1440,
     "authoritative": true, "incomplete": false, "referrals": [{"address": "192.0.2.50",
     "priority": 1, "weight": 100}], "rtt": 0.002}, {"node": "192.0.2.51", "timeout": true},
     ...], "map_reply": {"from": ..., "rtt": ..., "nonce": ..., "records": [...]} or null,
     "ignored": {"wrong-nonce": 1}}

Exit status: 0 when the walk ended in an answer (MS-ACK, MS-NOT-REGISTERED, DELEGATION-HOLE,
NOT-AUTHORITATIVE, a Map-Reply), 1 when it did not (timeout, loop, max-steps, a referral set
without a usable member, nothing could be sent), 2 on a usage error.

The module is a sans-IO core (arguments, :class:`Walk` fed with ``(datagram, source, now)`` and
timer calls, text and JSON formatting) and a thin IO shell (:func:`run_rig`, :func:`main`).
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import json
import secrets
import selectors
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from lispd.cli.args import seconds
from lispd.cli.lookup import (
    CONTROL_PORT,
    INDENT,
    IPAddress,
    Target,
    UsageError,
    build_request,
    choose_source_eid,
    family,
    format_locator_address,
    format_prefix,
    format_reply,
    format_seconds,
    format_ttl,
    iid_arg,
    local_addresses,
    make_target,
    parse_eid,
    parse_source,
    record_json,
    resolve_host,
    route_source,
)
from lispd.wire.address import InstanceIdAddress
from lispd.wire.errors import EncodeError, WireError
from lispd.wire.mapreferral import (
    TYPE_MAP_REFERRAL,
    MapReferral,
    ReferralAction,
    ReferralRecord,
    decode_map_referral,
)
from lispd.wire.mapreply import TYPE_MAP_REPLY, MapReply, decode_map_reply

DEFAULT_CONFIG = "/etc/lispd/lispd.conf"
DEFAULT_TIMEOUT = 2.0
DEFAULT_MAX_STEPS = 16
MAX_STEPS_LIMIT = 64
DDT_PORT = CONTROL_PORT
"""The port DDT nodes and Map-Servers listen on (a module constant so that tests can point it
elsewhere)."""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

_RECV_SIZE = 65535
_MASK64 = (1 << 64) - 1
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")

ACTION_NAMES: dict[ReferralAction, str] = {
    ReferralAction.NODE_REFERRAL: "node-referral",
    ReferralAction.MS_REFERRAL: "ms-referral",
    ReferralAction.MS_ACK: "ms-ack",
    ReferralAction.MS_NOT_REGISTERED: "ms-not-registered",
    ReferralAction.DELEGATION_HOLE: "delegation-hole",
    ReferralAction.NOT_AUTHORITATIVE: "not-authoritative",
}
FOLLOWED = frozenset({ReferralAction.NODE_REFERRAL, ReferralAction.MS_REFERRAL})
"""Actions that send the walk on to the referral set."""
NEGATIVE = frozenset(
    {
        ReferralAction.MS_NOT_REGISTERED,
        ReferralAction.DELEGATION_HOLE,
        ReferralAction.NOT_AUTHORITATIVE,
    }
)
"""Actions that end the walk without a mapping."""

# Outcomes besides the action names.
OUTCOME_MAP_REPLY = "map-reply"
OUTCOME_TIMEOUT = "timeout"
OUTCOME_LOOP = "loop"
OUTCOME_MAX_STEPS = "max-steps"
OUTCOME_NO_REFERRAL = "no-usable-referral"
ANSWERS = frozenset({*(ACTION_NAMES[a] for a in (ReferralAction.MS_ACK, *NEGATIVE)), "map-reply"})
"""Outcomes that are an answer (exit status 0)."""

# Why a datagram was ignored.
IGNORED_MALFORMED = "malformed"
IGNORED_UNEXPECTED_TYPE = "unexpected-type"
IGNORED_WRONG_NONCE = "wrong-nonce"
IGNORED_WRONG_SOURCE = "wrong-source"
IGNORED_STALE = "stale"
IGNORED_NOT_COVERING = "not-covering"
IGNORED_UNKNOWN_ACTION = "unknown-action"
IGNORED_PROBE = "rloc-probe"
IGNORED_NOT_FROM_MS = "map-reply-not-for-ms"


def random_nonce() -> int:
    """A fresh random 64-bit nonce."""
    return secrets.randbits(64) & _MASK64


# --------------------------------------------------------------------------------------------
# Sans-IO core: what the walk does and sees


@dataclass(frozen=True, slots=True)
class Request:
    """A Map-Request sent: to ``node`` at ``sent``, for the referral set number ``round``.

    ``ms``: True when the node is a Map-Server (reached by an MS-REFERRAL, or it answered as
    one), False when it answered as a DDT node (a referral), None while not known.  A Map-Reply
    is taken for any but False."""

    nonce: int
    node: IPAddress
    sent: float
    round: int
    ms: bool | None


@dataclass(frozen=True, slots=True)
class Answered:
    """A step that got its Map-Referral: the record that applies to the EID."""

    node: IPAddress
    rtt: float
    record: ReferralRecord


@dataclass(frozen=True, slots=True)
class TimedOut:
    """A step without answer: nothing within the timeout, or the request could not be sent
    (``error``)."""

    node: IPAddress
    timeout: float
    error: str | None = None


Step = Answered | TimedOut


@dataclass(frozen=True, slots=True)
class MapReplyAnswer:
    """The Map-Reply that answered our request to a Map-Server (from the ETR or the MS)."""

    message: MapReply
    reply_from: str
    rtt: float


@dataclass(frozen=True, slots=True)
class Send:
    """Effect: send the DDT Map-Request with ``nonce`` to ``node``."""

    node: IPAddress
    nonce: int


@dataclass(frozen=True, slots=True)
class StepDone:
    """Effect: a step ended (print it)."""

    step: Step


@dataclass(frozen=True, slots=True)
class ShowMapReply:
    """Effect: the final Map-Reply (print it)."""

    answer: MapReplyAnswer


@dataclass(frozen=True, slots=True)
class Finished:
    """Effect: the walk is over with ``outcome``; ``detail`` says why when it is no answer."""

    outcome: str
    detail: str = ""


Effect = Send | StepDone | ShowMapReply | Finished


def action_name(action: ReferralAction) -> str:
    """``node-referral``, ``ms-ack``, ... (an unassigned value as its number)."""
    return ACTION_NAMES.get(action, str(int(action)))


def covers(record: ReferralRecord, target: Target) -> bool:
    """True when the record's EID-prefix holds the requested EID-prefix (same instance-id)."""
    iid, address = 0, record.eid
    if isinstance(address, InstanceIdAddress):
        iid, address = address.iid, address.address
    if iid != target.iid or not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return False
    if not 0 <= record.mask_len <= address.max_prefixlen:
        return False
    prefix = ipaddress.ip_network((address, record.mask_len), strict=False)
    return (
        prefix.version == target.address.version
        and target.address in prefix
        and prefix.prefixlen <= target.mask_len
    )


def pick_record(message: MapReferral, target: Target) -> ReferralRecord | None:
    """The record of a Map-Referral that answers for ``target``: the most specific covering
    one; else, when the message holds a single negative record, that one (a negative answer
    only ends the walk); else None."""
    covering = [r for r in message.records if covers(r, target)]
    if covering:
        return max(covering, key=lambda r: r.mask_len)
    if len(message.records) == 1 and message.records[0].action in NEGATIVE:
        return message.records[0]
    return None


def usable_referrals(record: ReferralRecord) -> list[IPAddress]:
    """The members of a referral set to ask, best first: IP addresses, priority below 255,
    lowest priority first (set order among equals), each once; never a multicast, broadcast or
    unspecified address."""
    members: list[IPAddress] = []
    for loc in sorted(record.referrals, key=lambda loc: loc.priority):
        address = loc.address
        if (
            loc.usable
            and isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address)
            and not (address.is_multicast or address.is_unspecified or address == _BROADCAST)
            and address not in members
        ):
            members.append(address)
    return members


def _referral_key(record: ReferralRecord) -> tuple[Any, ...]:
    addresses = tuple(sorted(format_locator_address(loc.address) for loc in record.referrals))
    return (int(record.action), format_prefix(record), addresses)


@dataclass
class Walk:
    """The walk down the DDT tree for ``target``, sans IO.

    Call :meth:`start` once, then :meth:`on_datagram` for every datagram our sockets receive
    and :meth:`on_timer` whenever :attr:`deadline` is reached (calling it earlier is harmless);
    :meth:`on_send_error` when a :class:`Send` could not be sent.  Each returns the effects to
    carry out in order.  :attr:`done` tells when it is over; :attr:`outcome`, :attr:`steps`,
    :attr:`map_reply` and :attr:`ignored` hold the result.
    """

    target: Target
    start_nodes: Sequence[IPAddress]
    timeout: float = DEFAULT_TIMEOUT
    max_steps: int = DEFAULT_MAX_STEPS
    nonce: Callable[[], int] = random_nonce
    requests: dict[int, Request] = field(default_factory=dict, init=False)
    steps: list[Step] = field(default_factory=list, init=False)
    ignored: collections.Counter[str] = field(default_factory=collections.Counter, init=False)
    outcome: str | None = field(default=None, init=False)
    map_reply: MapReplyAnswer | None = field(default=None, init=False)
    _members: list[IPAddress] = field(default_factory=list, init=False)
    _round: int = field(default=0, init=False)
    _round_ms: bool | None = field(default=None, init=False)
    _current: Request | None = field(default=None, init=False)
    _followed: set[tuple[Any, ...]] = field(default_factory=set, init=False)
    _previous: ReferralRecord | None = field(default=None, init=False)
    _linger_until: float | None = field(default=None, init=False)
    _pending_reply: MapReplyAnswer | None = field(default=None, init=False)

    # -- state ---------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """True once the walk is over (nothing more to send or wait for)."""
        return self.outcome is not None and self._linger_until is None

    @property
    def deadline(self) -> float | None:
        """When :meth:`on_timer` must be called next; None when the walk is over."""
        if self.done:
            return None
        if self._linger_until is not None:
            return self._linger_until
        if self._current is not None:
            return self._current.sent + self.timeout
        return None

    # -- inputs --------------------------------------------------------------------------

    def start(self, now: float) -> list[Effect]:
        """Ask the first start node."""
        if self.requests or self.outcome is not None:
            raise RuntimeError("the walk was already started")
        self._members = list(dict.fromkeys(self.start_nodes))
        return self._ask_next(now)

    def on_timer(self, now: float) -> list[Effect]:
        """Timeouts due at ``now``: the next member of the set, or the end."""
        if self.done:
            return []
        if self._linger_until is not None:
            if now < self._linger_until:
                return []
            self._linger_until = None
            return [
                Finished(self.outcome or "", f"no map-reply within {self._secs} after the ms-ack")
            ]
        current = self._current
        if current is None or now < current.sent + self.timeout:
            return []
        self._current = None
        step = TimedOut(current.node, self.timeout)
        self.steps.append(step)
        if self._pending_reply is not None:
            # A Map-Server that answered with a Map-Reply only: that is the answer.
            return [StepDone(step), *self._finish_with_reply(self._pending_reply)]
        return [StepDone(step), *self._ask_next(now)]

    def on_send_error(self, nonce: int, error: str, now: float) -> list[Effect]:
        """The request ``nonce`` could not be sent: on to the next member."""
        current = self._current
        if self.done or current is None or current.nonce != nonce:
            return []
        self._current = None
        step = TimedOut(current.node, self.timeout, error)
        self.steps.append(step)
        return [StepDone(step), *self._ask_next(now)]

    def on_datagram(self, data: bytes, src: IPAddress | None, now: float) -> list[Effect]:
        """A datagram from ``src`` reached one of our sockets at ``now``."""
        if self.done:
            self.ignored[IGNORED_STALE] += 1
            return []
        kind = data[0] >> 4 if data else None
        if kind == TYPE_MAP_REFERRAL:
            return self._on_referral(data, src, now)
        if kind == TYPE_MAP_REPLY:
            return self._on_map_reply(data, src, now)
        self.ignored[IGNORED_UNEXPECTED_TYPE if data else IGNORED_MALFORMED] += 1
        return []

    # -- the steps -----------------------------------------------------------------------

    @property
    def _secs(self) -> str:
        return f"{format_seconds(self.timeout)} secs"

    def _ask_next(self, now: float) -> list[Effect]:
        if not self._members:
            detail = (
                "no member of the referral set answered"
                if self._round
                else "no start node answered"
            )
            return self._finish(OUTCOME_TIMEOUT, detail)
        if len(self.requests) >= self.max_steps:
            return self._finish(
                OUTCOME_MAX_STEPS, f"{len(self.requests)} map-requests sent (--max-steps)"
            )
        node = self._members.pop(0)
        nonce = self.nonce() & _MASK64
        while nonce in self.requests:
            nonce = self.nonce() & _MASK64
        request = Request(nonce, node, now, self._round, self._round_ms)
        self.requests[nonce] = request
        self._current = request
        return [Send(node, nonce)]

    def _finish(self, outcome: str, detail: str = "") -> list[Effect]:
        self.outcome = outcome
        self._current = None
        self._linger_until = None
        return [Finished(outcome, detail)]

    def _finish_with_reply(self, answer: MapReplyAnswer) -> list[Effect]:
        self.map_reply = answer
        outcome = self.outcome or OUTCOME_MAP_REPLY
        return [ShowMapReply(answer), *self._finish(outcome)]

    def _request_for(self, nonce: int) -> Request | None:
        request = self.requests.get(nonce)
        if request is None:
            self.ignored[IGNORED_WRONG_NONCE] += 1
            return None
        return request

    def _on_referral(self, data: bytes, src: IPAddress | None, now: float) -> list[Effect]:
        try:
            message = decode_map_referral(data)
        except (WireError, ValueError):
            self.ignored[IGNORED_MALFORMED] += 1
            return []
        request = self._request_for(message.nonce)
        if request is None:
            return []
        if src != request.node:
            self.ignored[IGNORED_WRONG_SOURCE] += 1
            return []
        if request.round != self._round or self._linger_until is not None:
            self.ignored[IGNORED_STALE] += 1  # an earlier step's, or a second answer
            return []
        record = pick_record(message, self.target)
        if record is None:
            self.ignored[IGNORED_NOT_COVERING] += 1
            return []
        if record.action not in ACTION_NAMES:
            self.ignored[IGNORED_UNKNOWN_ACTION] += 1
            return []
        self._current = None
        step = Answered(request.node, now - request.sent, record)
        self.steps.append(step)
        effects: list[Effect] = [StepDone(step)]
        action = record.action
        is_ms = action not in FOLLOWED
        self.requests[request.nonce] = Request(
            request.nonce, request.node, request.sent, request.round, is_ms
        )
        if action in FOLLOWED:
            return effects + self._follow(record, now)
        if action == ReferralAction.MS_ACK:
            self.outcome = action_name(action)
            pending = self._pending_reply
            if pending is not None:
                return effects + self._finish_with_reply(pending)
            self._linger_until = now + self.timeout
            return effects
        return effects + self._finish(action_name(action))

    def _follow(self, record: ReferralRecord, now: float) -> list[Effect]:
        key = _referral_key(record)
        previous = self._previous
        if key in self._followed:
            return self._finish(
                OUTCOME_LOOP, f"referral loop, {format_prefix(record)} already followed"
            )
        if previous is not None and record.mask_len < previous.mask_len:
            return self._finish(
                OUTCOME_LOOP,
                f"referral loop, {format_prefix(record)} less specific than "
                f"{format_prefix(previous)}",
            )
        self._followed.add(key)
        self._previous = record
        self._round += 1
        # Members of an MS-REFERRAL are Map-Servers; of a NODE-REFERRAL, unknown until they
        # answer (one may be a Map-Server all the same).
        self._round_ms = True if record.action == ReferralAction.MS_REFERRAL else None
        self._pending_reply = None
        self._members = usable_referrals(record)
        if not self._members:
            return self._finish(OUTCOME_NO_REFERRAL, "the referral set has no usable member")
        return self._ask_next(now)

    def _on_map_reply(self, data: bytes, src: IPAddress | None, now: float) -> list[Effect]:
        try:
            message = decode_map_reply(data)
        except (WireError, ValueError):
            self.ignored[IGNORED_MALFORMED] += 1
            return []
        if message.probe:
            self.ignored[IGNORED_PROBE] += 1
            return []
        request = self._request_for(message.nonce)
        if request is None:
            return []
        if request.ms is False:
            self.ignored[IGNORED_NOT_FROM_MS] += 1
            return []
        if request.round != self._round or self._pending_reply is not None:
            self.ignored[IGNORED_STALE] += 1
            return []
        answer = MapReplyAnswer(message, "" if src is None else str(src), now - request.sent)
        if self._linger_until is not None:  # after the MS-ACK
            self._linger_until = None
            return self._finish_with_reply(answer)
        self._pending_reply = answer  # shown after the MS-ACK (or at the timeout)
        return []


# --------------------------------------------------------------------------------------------
# Sans-IO core: text and JSON


def eid_text(target: Target) -> str:
    """``[iid]address/len`` (the length always written)."""
    return f"[{target.iid}]{target.address}/{target.mask_len}"


def format_send_line(node: IPAddress | str, target: Target) -> str:
    """``Send DDT map-request to NODE for EID ...``"""
    return f"Send DDT map-request to {node} for {target} ..."


def format_received_line(what: str, src: IPAddress | str, rtt: float) -> str:
    """``Received WHAT from SRC with rtt R secs``"""
    return f"Received {what} from {src} with rtt {rtt:.3f} secs"


def format_referral(record: ReferralRecord) -> list[str]:
    """The record line (prefix, TTL, bits) and the referral set table, indented."""
    bits = "auth" if record.authoritative else "not auth"
    if record.incomplete:
        bits += ", incomplete"
    lines = [f"{INDENT}{format_prefix(record)}, ttl {format_ttl(record.ttl)}, {bits}"]
    if not record.referrals:
        return lines
    rows = [("Referral", "Priority/Weight")]
    rows += [
        (format_locator_address(loc.address), f"{loc.priority}/{loc.weight}")
        for loc in record.referrals
    ]
    width = max(len(a) for a, _ in rows)
    lines += [f"{INDENT * 2}{a:<{width}}  {b}" for a, b in rows]
    return lines


def format_step(step: Step) -> list[str]:
    """The lines of a step: the answer and its record, or the timeout."""
    if isinstance(step, TimedOut):
        if step.error is not None:
            return [f"Cannot send to {step.node}: {step.error}"]
        return [
            f"Timed out: no map-referral from {step.node} within "
            f"{format_seconds(step.timeout)} secs"
        ]
    return [
        format_received_line(action_name(step.record.action), step.node, step.rtt),
        *format_referral(step.record),
    ]


def format_effect(effect: Effect, target: Target) -> str:
    """The text an effect prints (lines ending in newlines; may be empty)."""
    if isinstance(effect, Send):
        return format_send_line(effect.node, target) + "\n"
    if isinstance(effect, StepDone):
        return "".join(line + "\n" for line in format_step(effect.step))
    if isinstance(effect, ShowMapReply):
        answer = effect.answer
        head = format_received_line("map-reply", answer.reply_from, answer.rtt) + "\n"
        return head + format_reply(answer.message)
    if not effect.detail:
        return ""
    if effect.outcome in ANSWERS:
        return effect.detail[0].upper() + effect.detail[1:] + "\n"
    return f"Stopped: {effect.detail}\n"


def format_ignored(ignored: collections.Counter[str]) -> str:
    """``Ignored N datagrams: reason n, ...`` or nothing."""
    total = sum(ignored.values())
    if not total:
        return ""
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(ignored.items()))
    return f"Ignored {total} datagram{'s' if total != 1 else ''}: {reasons}\n"


def step_json(step: Step) -> dict[str, Any]:
    """A step of ``--json``."""
    if isinstance(step, TimedOut):
        doc: dict[str, Any] = {"node": str(step.node), "timeout": True}
        if step.error is not None:
            doc["error"] = step.error
        return doc
    record = step.record
    return {
        "node": str(step.node),
        "action": action_name(record.action),
        "prefix": format_prefix(record),
        "ttl": record.ttl,
        "authoritative": record.authoritative,
        "incomplete": record.incomplete,
        "referrals": [
            {
                "address": format_locator_address(loc.address),
                "priority": loc.priority,
                "weight": loc.weight,
            }
            for loc in record.referrals
        ],
        "rtt": round(step.rtt, 6),
    }


def map_reply_json(answer: MapReplyAnswer) -> dict[str, Any]:
    """The ``map_reply`` of ``--json``."""
    return {
        "from": answer.reply_from,
        "rtt": round(answer.rtt, 6),
        "nonce": f"0x{answer.message.nonce:016x}",
        "records": [record_json(r) for r in answer.message.records],
    }


def walk_json(walk: Walk) -> dict[str, Any]:
    """The ``--json`` object of a finished walk."""
    return {
        "eid": eid_text(walk.target),
        "outcome": walk.outcome,
        "steps": [step_json(s) for s in walk.steps],
        "map_reply": None if walk.map_reply is None else map_reply_json(walk.map_reply),
        "ignored": dict(sorted(walk.ignored.items())),
    }


def exit_status(walk: Walk) -> int:
    """0 when the walk ended in an answer, else 1."""
    return EXIT_OK if walk.outcome in ANSWERS else EXIT_FAILED


# --------------------------------------------------------------------------------------------
# IO


class _Sockets:
    """One UDP socket per local address the nodes are reached from, all in one selector."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.by_local: dict[IPAddress, socket.socket] = {}
        self.selector = selectors.DefaultSelector()

    def toward(self, node: IPAddress) -> tuple[socket.socket, IPAddress]:
        local = route_source(node, self.port)
        sock = self.by_local.get(local)
        if sock is None:
            sock = socket.socket(family(local), socket.SOCK_DGRAM)
            try:
                sock.bind((str(local), 0))
                sock.setblocking(False)
                self.selector.register(sock, selectors.EVENT_READ)
            except BaseException:
                sock.close()
                raise
            self.by_local[local] = sock
        return sock, local

    def receive(self, timeout: float) -> list[tuple[bytes, IPAddress | None]]:
        got: list[tuple[bytes, IPAddress | None]] = []
        for key, _ in self.selector.select(max(timeout, 0.0)):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            while True:
                try:
                    data, addr = sock.recvfrom(_RECV_SIZE)
                except BlockingIOError:
                    break
                except OSError:  # an ICMP error reported on the socket
                    continue
                try:
                    src: IPAddress | None = ipaddress.ip_address(str(addr[0]).split("%", 1)[0])
                except ValueError:
                    src = None
                got.append((data, src))
        return got

    def close(self) -> None:
        self.selector.close()
        for sock in self.by_local.values():
            sock.close()


def run_rig(
    walk: Walk,
    source_eid: IPAddress | None,
    say: Callable[[str], None],
    port: int | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Walk:
    """Carry the walk out over UDP; ``say`` prints each effect's text.  Returns the walk."""
    sockets = _Sockets(DDT_PORT if port is None else port)
    try:
        pending: collections.deque[Effect] = collections.deque(walk.start(clock()))
        while True:
            while pending:
                effect = pending.popleft()
                text = format_effect(effect, walk.target)
                if text:
                    say(text)
                if isinstance(effect, Send):
                    error = _send(sockets, walk, effect, source_eid)
                    if error is not None:
                        pending.extend(walk.on_send_error(effect.nonce, error, clock()))
            deadline = walk.deadline
            if deadline is None:
                return walk
            for data, src in sockets.receive(deadline - clock()):
                pending.extend(walk.on_datagram(data, src, clock()))
            pending.extend(walk.on_timer(clock()))
    finally:
        sockets.close()


def _send(sockets: _Sockets, walk: Walk, send: Send, source_eid: IPAddress | None) -> str | None:
    """Send one request; the reason when it cannot be sent."""
    try:
        sock, local = sockets.toward(send.node)
        packet = build_request(
            walk.target, local, sock.getsockname()[1], send.nonce, source_eid, ddt=True
        )
        sock.sendto(packet, (str(send.node), sockets.port))
    except OSError as exc:
        return exc.strerror or str(exc)
    except EncodeError as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------------------------
# The command


def _max_steps(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= MAX_STEPS_LIMIT:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_STEPS_LIMIT}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``rig`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="rig",
        description="LISP Internet Groper for DDT (RFC 8112): walk the LISP-DDT tree for EID, "
        "from a DDT node down to the Map-Server, and print every referral. Exit status: 0 an "
        "answer, 1 none (timeout, referral loop, too many steps), 2 usage error.",
    )
    parser.add_argument(
        "-c",
        "--config",
        default=None,
        help=f"lispd configuration, for the DDT roots and source EID ({DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "-t",
        "--to",
        metavar="NODE",
        help="DDT node (address or name) to start at (default: the [ddt] roots)",
    )
    parser.add_argument(
        "-s",
        "--source",
        metavar="SOURCE-EID",
        help="source EID written in the Map-Request (default: a local EID of the database)",
    )
    parser.add_argument(
        "--iid", type=iid_arg, default=None, metavar="N", help="instance-id of EID (0)"
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help="seconds to wait for each node before asking the next member of its set "
        f"({format_seconds(DEFAULT_TIMEOUT)})",
    )
    parser.add_argument(
        "--max-steps",
        type=_max_steps,
        default=DEFAULT_MAX_STEPS,
        metavar="N",
        help=f"Map-Requests sent at most ({DEFAULT_MAX_STEPS})",
    )
    parser.add_argument("--json", action="store_true", help="print the walk as one JSON object")
    parser.add_argument(
        "eid", metavar="EID", help="[iid]address, address/len or host name to look up"
    )
    return parser


def _emit(stream: TextIO, text: str) -> None:
    stream.write(text)
    stream.flush()


def _settings(args: argparse.Namespace, target: Target) -> tuple[list[IPAddress], IPAddress | None]:
    """(start nodes, source EID) from the arguments and, when needed, the configuration."""
    from lispd.config import ConfigError, load_config

    nodes = [resolve_host(args.to)] if args.to else []
    source = parse_source(args.source) if args.source is not None else None
    config = None
    if not nodes or source is None:
        try:
            config = load_config(args.config or DEFAULT_CONFIG)
        except ConfigError as exc:
            # Only for the source EID, the default configuration may be missing.
            if not nodes or args.config is not None:
                raise UsageError(str(exc)) from None
    if not nodes:
        assert config is not None
        if not config.ddt.roots:
            raise UsageError(f"{config.path}: no [ddt] roots (give a DDT node with --to)")
        nodes = list(config.ddt.roots)
    if source is None and config is not None and config.database:
        source = choose_source_eid(
            config.database, target.iid, target.address.version, local_addresses()
        )
    return nodes, source


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rig`` console script."""
    args = build_parser().parse_args(argv)
    out = sys.stdout
    info = sys.stderr if args.json else sys.stdout  # --json: stdout holds the JSON alone
    try:
        iid, host, mask_len = parse_eid(args.eid, args.iid)
        target = make_target(iid, resolve_host(host), mask_len)
        nodes, source = _settings(args, target)
    except UsageError as exc:
        _emit(sys.stderr, f"rig: {exc}\n")
        return EXIT_USAGE
    walk = Walk(target, nodes, timeout=args.timeout, max_steps=args.max_steps)
    try:
        run_rig(walk, source, lambda text: _emit(info, text))
    except OSError as exc:
        _emit(sys.stderr, f"rig: {getattr(exc, 'strerror', None) or exc}\n")
        return EXIT_FAILED
    _emit(info, format_ignored(walk.ignored))
    if args.json:
        _emit(out, json.dumps(walk_json(walk)) + "\n")
    return exit_status(walk)


if __name__ == "__main__":
    sys.exit(main())
