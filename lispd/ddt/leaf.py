"""A Map-Server at the bottom of the DDT tree (RFC 8111 section 7.2.2).

A DDT Map-Resolver that reached a Map-Server through an MS-REFERRAL sends it the Map-Request in
an ECM with the D bit.  The Map-Server does for it what it does for any Map-Request (forwards it
to the registered ETR, or proxy-replies) and also tells the Map-Resolver how it went, with a
Map-Referral back to the ECM's outer source address and port:

- MS-ACK for the registered prefix (the registration's, so the Map-Resolver can send the next
  request for that site straight here), referral set this Map-Server's own RLOCs, TTL
  ``referral_ttl``;
- MS-NOT-REGISTERED when the EID lies in a configured site prefix nobody registered now: the
  prefix the Map-Resolver would answer negatively for (the site prefix, or the part of it no
  registration overlaps), TTL 1 minute (the site may register soon);
- NOT-AUTHORITATIVE (TTL 0, no referral set) when the EID is in no site prefix, unless the
  machine is a DDT node too: that role answers then.

The ETR (or the ITR, for a proxy reply) gets the request without the D bit: it is an ordinary
Map-Request to them.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence

from lispd.control.mapresolver import negative_answer
from lispd.control.mapserver import MapServer, request_eid
from lispd.control.outputs import SendControl
from lispd.control.responder import _Limiter
from lispd.ddt.replies import (
    ACTION_NAMES,
    IPAddress,
    host_prefix,
    referral_datagram,
    referral_set,
)
from lispd.wire.ecm import EncapsulatedControl
from lispd.wire.errors import EncodeError
from lispd.wire.mapreferral import ReferralAction
from lispd.wire.maprequest import MapRequest
from lispd.wire.records import Action

ENCODE_FAILED = "ddt-referral-encode-failed"
RATE_LIMITED = "ddt-request-rate-limited"
BAD_PORT = "ddt-request-bad-port"


class DdtLeaf:
    """Answers DDT-originated Map-Requests for the sites of ``map_server``."""

    def __init__(
        self,
        map_server: MapServer,
        own_rlocs: Sequence[IPAddress],
        referral_ttl: int = 1440,
        rate: float = 10_000.0,
    ) -> None:
        """``own_rlocs`` are handed out as the MS-ACK's referral set; answers are limited to
        ``rate`` a second per source address, in bursts of twice that."""
        self.map_server = map_server
        self.own = referral_set(own_rlocs)
        self.referral_ttl = referral_ttl
        self._limiter = _Limiter(rate, 2.0 * rate)
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()

    def on_ecm(
        self,
        ecm: EncapsulatedControl,
        src: IPAddress,
        sport: int,
        now: float,
        *,
        last_word: bool = True,
    ) -> list[SendControl] | None:
        """Answer a DDT ECM from ``src``:``sport``.  For an EID in none of the Map-Server's
        site prefixes: NOT-AUTHORITATIVE when ``last_word``, else None (the caller's DDT node
        answers)."""
        if not self._limiter.allow(src, now):
            self.drops[RATE_LIMITED] += 1
            return []
        request = ecm.message
        plain = dataclasses.replace(ecm, ddt=False)
        if not 0 < sport <= 0xFFFF:
            self.drops[BAD_PORT] += 1  # no way to answer the asker
            return []
        eid = request_eid(request) if isinstance(request, MapRequest) else None
        if eid is None or not isinstance(request, MapRequest):
            # the Map-Server refuses and counts malformed requests itself
            return self.map_server.on_map_request(plain, now) or []
        iid, address = eid
        delivered = self.map_server.on_map_request(plain, now)
        sends: list[SendControl] = []
        referrals = self.own
        authoritative = True
        if delivered is not None:
            reg = self.map_server.lookup(iid, address)
            if not delivered or reg is None:
                return delivered  # refused (counted by the Map-Server): no acknowledgement
            sends = list(delivered)
            action, prefix, ttl = ReferralAction.MS_ACK, reg.prefix, self.referral_ttl
        else:
            negative = negative_answer(self.map_server, iid, address, 1)
            if negative is not None and negative[1] == Action.SEND_MAP_REQUEST:
                action, prefix, ttl = ReferralAction.MS_NOT_REGISTERED, negative[0], negative[2]
            elif last_word:
                action, prefix, ttl = (
                    ReferralAction.NOT_AUTHORITATIVE,
                    host_prefix(address, request.records[0].mask_len),
                    0,
                )
                referrals, authoritative = (), False
            else:
                return None
        try:
            sends.append(
                referral_datagram(
                    src,
                    sport,
                    request.nonce,
                    iid,
                    prefix,
                    action,
                    ttl,
                    referrals,
                    authoritative=authoritative,
                )
            )
        except EncodeError:
            self.drops[ENCODE_FAILED] += 1
            return sends
        self.stats["referrals-sent"] += 1
        self.stats["sent-" + ACTION_NAMES[action]] += 1
        return sends

    def __repr__(self) -> str:
        return f"<DdtLeaf {self.map_server!r}>"
