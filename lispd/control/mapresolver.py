"""The Map-Resolver (RFC 9301 section 8.3), in front of a co-located Map-Server.

A sans-IO machine: :meth:`MapResolver.on_ecm` takes an Encapsulated Control Message received on
UDP 4342 and the caller's monotonic time, and returns what to send.  A Map-Request for a
registered EID goes to the :class:`~lispd.control.mapserver.MapServer` (which proxy-replies or
forwards it to the ETR); for any other EID the Map-Resolver answers with a negative Map-Reply
itself (no locators), sent to one of the request's ITR-RLOCs at the ECM's inner UDP source port.

Negative replies come in two kinds:

``natively-forward`` (the EID is outside every configured site prefix)
    The record's EID-prefix is the LARGEST prefix holding the requested address that overlaps
    no configured site prefix and no registration, so that one reply covers as much non-LISP
    space as possible (RFC 9301: the Map-Resolver returns the least-specific prefix for which
    no more-specific EID-prefix exists).  Action Natively-Forward, TTL ``negative_ttl_minutes``
    (15 by default, as lispers.net does).

``send-map-request`` (the EID is inside a configured site prefix nobody has registered)
    The space is EID space, just not reachable yet: telling the ITR to forward natively would
    leak the site's traffic outside the overlay, and a Drop would black-hole it for the whole
    negative TTL.  lispd answers Send-Map-Request with a TTL of 1 minute
    (:data:`UNREGISTERED_TTL_MINUTES`), so the ITR keeps the space in its map-cache, drops
    while waiting (as for any miss) and asks again a minute later, when the site may have
    registered (lispers.net's private ACT 7 "not-registered-yet" means the same but other
    implementations treat unknown ACT values as Drop).  The prefix is the configured site
    prefix itself, or — when more-specifics of it are registered — the largest prefix inside
    it that holds the address and overlaps none of them.

Rate limit.  Every ECM counts against a token bucket of its (outer) source address, ``rate``
a second in bursts of ``burst`` (100 and 200: a lispd ITR or RTR sends at most 100 Map-Requests
a second); beyond it the request is dropped unanswered and counted ``request-rate-limited``
(not logged: that is what a flood looks like).  A Map-Reply goes to an ITR-RLOC named in the
request, not necessarily its source, so without the limit one source could have the
Map-Resolver send replies as fast as it sends requests to any address it names.  The replies
are not larger than the requests (no amplification), but the rate is bounded per source.

Refusals are counted in :attr:`MapResolver.drops` and logged at WARNING through
``lispd.control.mapresolver``, at most one line per reason every 10 s
(:class:`~lispd.control.mapserver.RefusalLog`); accepted work in :attr:`MapResolver.stats`:
``answered`` (a proxy Map-Reply from the Map-Server), ``forwarded`` (sent to the ETR),
``negative`` (every negative reply) and ``negative-unregistered`` (those of the second kind).
"""

from __future__ import annotations

import logging
from collections import Counter

from lispd.config.model import MappingSystemConfig
from lispd.control.mapserver import (
    IPAddress,
    IPNetwork,
    MapServer,
    RefusalLog,
    reply_destination,
    request_eid,
)
from lispd.control.outputs import SendControl
from lispd.control.responder import _Limiter
from lispd.logfmt import endpoint
from lispd.wire.address import eid_prefix
from lispd.wire.ecm import TYPE_ECM, EncapsulatedControl
from lispd.wire.errors import EncodeError
from lispd.wire.mapreply import TYPE_MAP_REPLY, MapReply, encode_map_reply
from lispd.wire.maprequest import MapRequest
from lispd.wire.records import Action, EidRecord

log = logging.getLogger("lispd.control.mapresolver")

DEFAULT_NEGATIVE_TTL_MINUTES = MappingSystemConfig().negative_ttl
"""TTL of Natively-Forward negative replies, as ``mapping-system.negative-ttl`` (15:
lispers.net's value; Cisco used 1)."""

UNREGISTERED_TTL_MINUTES = 1
"""TTL of Send-Map-Request replies for configured but unregistered site space."""

ECM_NOT_MAP_REQUEST = "ecm-not-map-request"
REQUEST_BAD_EID = "request-bad-eid"
REQUEST_BAD_PORT = "request-bad-port"
REQUEST_NO_ITR_RLOC = "request-no-itr-rloc"
REQUEST_ENCODE_FAILED = "request-encode-failed"
REQUEST_RATE_LIMITED = "request-rate-limited"

DEFAULT_RATE = 100.0
"""ECMs answered per second and source address (a lispd ITR sends at most 100 a second)."""
DEFAULT_BURST = 200.0


def _narrower(a: IPNetwork, b: IPNetwork) -> IPNetwork:
    """The longer of two prefixes that hold the same address (so one contains the other)."""
    return a if a.prefixlen >= b.prefixlen else b


def negative_answer(
    ms: MapServer, iid: int, address: IPAddress, negative_ttl_minutes: int
) -> tuple[IPNetwork, Action, int] | None:
    """(EID-prefix, action, TTL minutes) of the negative reply for ``address`` in ``iid`` from
    what ``ms`` holds, or None when a registration covers it: Send-Map-Request for 1 minute
    inside a configured site prefix (see the module docstring), else Natively-Forward."""
    registered = ms.registration_tables.largest_uncovered(iid, address)
    if registered is None:
        return None
    configured = ms.site_prefix_tables.largest_uncovered(iid, address)
    if configured is None:  # inside a configured site prefix: EID space, not registered
        site = ms.site_prefix(iid, address)
        prefix = registered if site is None else _narrower(site[0], registered)
        return prefix, Action.SEND_MAP_REQUEST, UNREGISTERED_TTL_MINUTES
    return _narrower(configured, registered), Action.NATIVELY_FORWARD, negative_ttl_minutes


def negative_reply(
    request: MapRequest,
    ecm: EncapsulatedControl,
    iid: int,
    prefix: IPNetwork,
    action: Action,
    ttl: int,
) -> SendControl | str:
    """A negative Map-Reply (no locators) for ``prefix`` to the ITR that sent ``request`` in
    ``ecm`` (one of its ITR-RLOCs, at the ECM's inner UDP source port), or the refusal reason
    when it cannot be sent."""
    if not 0 < ecm.sport <= 0xFFFF:
        return REQUEST_BAD_PORT
    dst = reply_destination(request, ecm)
    if dst is None:
        return REQUEST_NO_ITR_RLOC
    eid_addr, mask_len = eid_prefix(iid, prefix)
    record = EidRecord(eid=eid_addr, mask_len=mask_len, ttl=ttl, action=action)
    try:
        payload = encode_map_reply(MapReply(nonce=request.nonce, records=(record,)))
    except EncodeError:
        return REQUEST_ENCODE_FAILED
    return SendControl(dst, ecm.sport, payload)


class MapResolver:
    """Resolves ECM'd Map-Requests: through the Map-Server, or with a negative Map-Reply."""

    def __init__(
        self,
        map_server: MapServer,
        negative_ttl_minutes: int = DEFAULT_NEGATIVE_TTL_MINUTES,
        rate: float = DEFAULT_RATE,
        burst: float = DEFAULT_BURST,
    ) -> None:
        """Resolve against ``map_server``'s sites and registrations, answering each source
        address ``rate`` times a second in bursts of up to ``burst``."""
        if not 0 <= negative_ttl_minutes <= 0xFFFFFFFF:
            raise ValueError("negative_ttl_minutes must fit 32 bits")
        if not rate > 0 or not burst >= 1:
            raise ValueError("the Map-Request rate limit needs rate > 0 and burst >= 1")
        self.map_server = map_server
        self.negative_ttl_minutes = negative_ttl_minutes
        self._limiter = _Limiter(rate, burst)
        self._refusal_log = RefusalLog(log)
        self._now = 0.0  # the latest time an ECM came with (for the refusal log)
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()

    def _refuse(self, reason: str, ecm: EncapsulatedControl, **fields: object) -> None:
        self.drops[reason] += 1
        src = endpoint(ecm.inner_ip.src, ecm.sport)
        self._refusal_log.warn(reason, self._now, "map-request refused", src=src, **fields)

    def on_ecm(
        self, ecm: EncapsulatedControl, now: float, src: IPAddress | None = None
    ) -> list[SendControl]:
        """Handle an ECM received by the Map-Resolver from ``src`` (its outer source address:
        the rate limit's key; None skips the limit); returns what to send (maybe nothing)."""
        self._now = now
        if src is not None and not self._limiter.allow(src, now):
            self.drops[REQUEST_RATE_LIMITED] += 1
            return []
        request = ecm.message
        if not isinstance(request, MapRequest):
            self._refuse(ECM_NOT_MAP_REQUEST, ecm, message=type(request).__name__)
            return []
        eid = request_eid(request)
        if eid is None:
            self._refuse(REQUEST_BAD_EID, ecm)
            return []
        out = self.map_server.on_map_request(ecm, now)
        if out is not None:
            for send in out:
                kind = send.payload[0] >> 4 if send.payload else None
                if kind == TYPE_MAP_REPLY:
                    self.stats["answered"] += 1
                elif kind == TYPE_ECM:
                    self.stats["forwarded"] += 1
            return out

        iid, address = eid
        answer = negative_answer(self.map_server, iid, address, self.negative_ttl_minutes)
        if answer is None:  # pragma: no cover - the Map-Server would have answered
            return []
        prefix, action, ttl = answer
        reply = negative_reply(request, ecm, iid, prefix, action, ttl)
        if isinstance(reply, str):
            self._refuse(reply, ecm, eid=f"[{iid}]{address}")
            return []
        self.stats["negative"] += 1
        if action == Action.SEND_MAP_REQUEST:
            self.stats["negative-unregistered"] += 1
        return [reply]

    def __repr__(self) -> str:
        return f"<MapResolver negative-ttl={self.negative_ttl_minutes}min {self.map_server!r}>"
