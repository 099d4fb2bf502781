"""DEBUG lines for the LISP control messages a node sends and receives, rate-limited.

One line per message, logger ``lispd.control.messages``::

    msg="control message" dir=in type=map-reply nonce=0x00000000075bcd15 peer=192.0.2.6:4342
    eids=[0]198.51.100.16/28 flags=probe

``dir`` is ``in`` or ``out``; ``peer`` the sender or destination (``address:port``); ``type`` the
message type (``map-request``, ``map-reply``, ``map-register``, ``map-notify``,
``map-notify-ack``, ``info-request``, ``info-reply``, ``ecm`` with the encapsulated message in
``inner``, or ``malformed`` with the decoder's ``error``); ``nonce`` in hex; ``eids`` the
EID-prefixes it names (at most 4, then ``+N``); ``flags`` the header bits that matter (probe,
smr, smr-invoked, proxy-reply, want-map-notify, to-etr, ...); ``path=data`` for the control
messages that travel in data packets (NAT keepalives, probes through a NAT).

A flood must not fill the disk: each direction has its own token bucket
(:data:`MESSAGE_RATE` lines a second, bursts of :data:`MESSAGE_BURST`).  Messages over the
limit are counted, and the count is logged as ``msg="control messages suppressed" dir=in
suppressed=N`` at most every :data:`SUMMARY_INTERVAL` seconds (when the next message of that
direction comes, whether or not it is itself logged).  Nothing is decoded or formatted unless
DEBUG is enabled and the bucket has a token, so the cost on a flood is a level check and a
bucket update per message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from lispd.logfmt import endpoint, pairs
from lispd.ratelimit import TokenBucket
from lispd.wire.address import Address, NatTraversalAddress, NoAddress, address_text, split_eid
from lispd.wire.control import MESSAGE_NAMES, ControlMessage, decode_control
from lispd.wire.ecm import EncapsulatedControl
from lispd.wire.errors import WireError
from lispd.wire.info import InfoMessage
from lispd.wire.mapreferral import MapReferral
from lispd.wire.mapregister import MapNotify, MapRegister
from lispd.wire.mapreply import MapReply
from lispd.wire.maprequest import MapRequest

log = logging.getLogger("lispd.control.messages")

MESSAGE_RATE: Final = 1.0
"""Message lines a second per direction, on average."""

MESSAGE_BURST: Final = 10.0
"""Message lines per direction in a burst."""

SUMMARY_INTERVAL: Final = 10.0
"""Seconds between two ``control messages suppressed`` lines of one direction."""

MAX_EIDS: Final = 4
"""EID-prefixes named in one line; more are summed up as ``+N``."""


def eid_text(address: Address, mask_len: int) -> str:
    """An EID-prefix as ``[iid]prefix`` (an address that is not IP as its text/mask)."""
    try:
        iid, network = split_eid(address, mask_len)
    except (ValueError, TypeError):
        iid, network = 0, None
    if network is None:
        return f"{address_text(address)}/{mask_len}"
    return f"[{iid}]{network}"


def truncated(items: Sequence[object], limit: int) -> list[str]:
    """The first ``limit`` of ``items`` as text, then ``+N`` for the rest (for a log field)."""
    out = [str(item) for item in items[:limit]]
    if len(items) > limit:
        out.append(f"+{len(items) - limit}")
    return out


def eid_list(prefixes: Sequence[tuple[Address, int]], limit: int = MAX_EIDS) -> list[str]:
    """(address, mask-len) pairs as ``[iid]prefix`` texts, at most ``limit`` and then ``+N``."""
    return truncated([eid_text(address, mask_len) for address, mask_len in prefixes], limit)


def _eids(prefixes: Sequence[tuple[Address, int]]) -> list[str]:
    return eid_list(prefixes, MAX_EIDS)


def _flags(**bits: bool) -> list[str]:
    return [name.replace("_", "-") for name, on in bits.items() if on]


def describe(message: ControlMessage) -> dict[str, object]:
    """The fields naming a decoded control message: ``type``, ``nonce`` (hex), ``eids``,
    ``flags`` (only those set), and a few type-specific ones."""
    if isinstance(message, EncapsulatedControl):
        inner = describe(message.message)
        flags = _flags(to_etr=message.to_etr, to_ms=message.to_ms, rtr=message.rtr, ddt=message.ddt)
        inner_flags = inner.pop("flags", [])
        assert isinstance(inner_flags, list)
        fields: dict[str, object] = {"type": "ecm", "inner": inner.pop("type")}
        fields.update(inner)
        if flags or inner_flags:
            fields["flags"] = flags + inner_flags
        return fields
    fields = {"type": _type_name(message), "nonce": f"0x{message.nonce:016x}"}
    if isinstance(message, MapRequest):
        fields["eids"] = _eids([(r.address, r.mask_len) for r in message.records])
        if not isinstance(message.source_eid, NoAddress):
            fields["source-eid"] = address_text(message.source_eid)
        flag_list = _flags(
            probe=message.probe, smr=message.smr, smr_invoked=message.smr_invoked, pitr=message.pitr
        )
    elif isinstance(message, MapReply):
        fields["eids"] = _eids([(r.eid, r.mask_len) for r in message.records])
        flag_list = _flags(probe=message.probe)
    elif isinstance(message, MapRegister):
        fields["eids"] = _eids([(r.eid, r.mask_len) for r in message.records])
        flag_list = _flags(
            proxy_reply=message.proxy_reply,
            want_map_notify=message.want_map_notify,
            ttl_timeout=message.ttl_timeout,
        )
        if message.records and all(r.ttl == 0 for r in message.records):
            flag_list.append("deregister")
    elif isinstance(message, MapNotify):
        fields["eids"] = _eids([(r.eid, r.mask_len) for r in message.records])
        flag_list = []
    elif isinstance(message, MapReferral):
        fields["eids"] = _eids([(r.eid, r.mask_len) for r in message.records])
        fields["actions"] = [r.action.name.lower().replace("_", "-") for r in message.records]
        flag_list = []
    else:
        fields["eids"] = _eids([(message.eid, message.eid_mask_len)])
        nat = message.address
        if isinstance(nat, NatTraversalAddress):
            fields["global-rloc"] = endpoint(address_text(nat.global_etr_rloc), nat.etr_port)
            fields["rtrs"] = [address_text(a) for a in nat.rtr_rlocs]
        flag_list = []
    if flag_list:
        fields["flags"] = flag_list
    return fields


def _type_name(
    message: MapRequest | MapReply | MapRegister | MapNotify | MapReferral | InfoMessage,
) -> str:
    if isinstance(message, MapReferral):
        return "map-referral"
    if isinstance(message, InfoMessage):
        return "info-reply" if message.reply else "info-request"
    if isinstance(message, MapNotify):
        return "map-notify-ack" if message.ack else "map-notify"
    if isinstance(message, MapRegister):
        return "map-register"
    return "map-reply" if isinstance(message, MapReply) else "map-request"


@dataclass(slots=True)
class _Direction:
    """The rate limit of one direction and what it has not logged yet."""

    name: str
    bucket: TokenBucket
    suppressed: int = 0
    since: float | None = None  # the first unreported suppression
    total_suppressed: int = field(default=0)


class MessageLog:
    """Writes the DEBUG ``control message`` lines, within a rate per direction.

    ``now`` is the caller's monotonic clock, as in the machines.
    """

    def __init__(
        self,
        logger: logging.Logger = log,
        rate: float = MESSAGE_RATE,
        burst: float = MESSAGE_BURST,
        interval: float = SUMMARY_INTERVAL,
    ) -> None:
        if not rate > 0 or not burst >= 1 or not interval > 0:
            raise ValueError("the message log needs rate > 0, burst >= 1 and interval > 0")
        self.logger = logger
        self.interval = interval
        self._in = _Direction("in", TokenBucket(rate, burst))
        self._out = _Direction("out", TokenBucket(rate, burst))

    @property
    def suppressed(self) -> dict[str, int]:
        """Lines left out so far, per direction (``in``, ``out``)."""
        return {d.name: d.total_suppressed for d in (self._in, self._out)}

    def received(
        self,
        message: ControlMessage,
        src: object,
        port: int,
        now: float,
        *,
        path: str = "control",
    ) -> None:
        """A decoded message arrived from ``src``:``port``."""
        if self._admit(self._in, now):
            self._write(self._in, describe(message), src, port, path)

    def malformed(
        self,
        data: bytes,
        error: WireError,
        src: object,
        port: int,
        now: float,
        *,
        path: str = "control",
    ) -> None:
        """A message from ``src``:``port`` that did not decode (``error``)."""
        if self._admit(self._in, now):
            kind = MESSAGE_NAMES.get(data[0] >> 4, f"type-{data[0] >> 4}") if data else "empty"
            fields: dict[str, object] = {"type": "malformed", "claimed": kind}
            fields["error"] = error.reason
            self._write(self._in, fields, src, port, path)

    def sent(
        self,
        payload: bytes,
        dst: object,
        port: int,
        now: float,
        *,
        path: str = "control",
        offset: int = 0,
    ) -> None:
        """A message (``payload[offset:]``: after a data header when ``path`` is ``data``) went
        out to ``dst``:``port``."""
        if not self._admit(self._out, now):
            return
        try:
            fields = describe(decode_control(payload[offset:]))
        except WireError as exc:
            fields = {"type": "undecodable", "error": exc.reason}
        self._write(self._out, fields, dst, port, path)

    # --- internals ----------------------------------------------------------------------------

    def _admit(self, direction: _Direction, now: float) -> bool:
        """Whether a line may be written now; counts and summarises the ones that may not."""
        if not self.logger.isEnabledFor(logging.DEBUG):
            return False
        allowed = direction.bucket.take(now)
        if not allowed:
            direction.suppressed += 1
            direction.total_suppressed += 1
            if direction.since is None:
                direction.since = now
        since = direction.since
        if since is not None and now - since >= self.interval:
            self.logger.debug(
                "control messages suppressed %s",
                pairs(
                    {
                        "dir": direction.name,
                        "suppressed": direction.suppressed,
                        "seconds": round(now - since, 3),
                    }
                ),
            )
            direction.suppressed, direction.since = 0, None
        return allowed

    def _write(
        self, direction: _Direction, fields: dict[str, object], peer: object, port: int, path: str
    ) -> None:
        head: dict[str, object] = {"dir": direction.name}
        head.update(fields)
        head["peer"] = endpoint(peer, port)
        if path != "control":
            head["path"] = path
        self.logger.debug("control message %s", pairs(head))
