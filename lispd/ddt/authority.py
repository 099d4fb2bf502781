"""A DDT node (RFC 8111 section 7.2): answers DDT Map-Requests for the prefixes it is
authoritative for with Map-Referrals.

For the requested EID (longest match in its instance-id):

- inside a delegation: a NODE-REFERRAL (delegated to child DDT nodes) or MS-REFERRAL (to
  Map-Servers) for the delegated prefix, its referral set, TTL ``referral_ttl``;
- inside an authority prefix but no delegation: a DELEGATION-HOLE for the largest prefix inside
  the authority that holds the EID and overlaps no delegation (one answer covers the whole hole),
  no referral set, TTL ``hole_ttl``: there is no LISP site there;
- outside every authority prefix: NOT-AUTHORITATIVE for the requested prefix, TTL 0, the A bit
  clear: the asker's referral (or its root configuration) is wrong.

Requests are ECMs with the D bit (DDT-originated) carrying a Map-Request; the answer goes back to
the ECM's outer source address and port (a Map-Resolver's 4342, rig's own port) with the
Map-Request's nonce.  Answers
are limited per source address (``[ddt] answer-rate``, 10,000 a second: a Map-Resolver is one
source for all its ITRs; a Map-Referral is no larger than its request, but a spoofed source
must not get an unbounded stream either).  Every lookup is a
longest-prefix match over at most 33 or 129 prefix lengths, whatever the table sizes.

Refusals are counted in :attr:`DdtNode.drops` and logged at WARNING through ``lispd.ddt``, at
most one line per reason every 10 s; answers in :attr:`DdtNode.stats` under ``referrals-sent``
and one counter per action (``sent-node-referral``, ``sent-delegation-hole``, ...).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from lispd.config.model import DdtAuthority, DdtConfig, DdtDelegation
from lispd.control.mapserver import RefusalLog, request_eid
from lispd.control.outputs import SendControl
from lispd.control.responder import _Limiter
from lispd.ddt.replies import (
    ACTION_NAMES,
    IPAddress,
    IPNetwork,
    host_prefix,
    referral_datagram,
    referral_set,
)
from lispd.logfmt import endpoint
from lispd.mapcache.scoped import ScopedTables
from lispd.wire.ecm import EncapsulatedControl
from lispd.wire.errors import EncodeError
from lispd.wire.mapreferral import ReferralAction
from lispd.wire.maprequest import MapRequest
from lispd.wire.records import Locator

log = logging.getLogger("lispd.ddt")


NOT_DDT = "ddt-request-not-ddt"
NOT_MAP_REQUEST = "ddt-request-not-map-request"
BAD_EID = "ddt-request-bad-eid"
BAD_PORT = "ddt-request-bad-port"
RATE_LIMITED = "ddt-request-rate-limited"
ENCODE_FAILED = "ddt-referral-encode-failed"


@dataclass(frozen=True, slots=True)
class Delegation:
    """A delegated prefix, ready to be sent: the action and the referral set as locators."""

    action: ReferralAction
    referrals: tuple[Locator, ...]


def delegation_action(kind: str) -> ReferralAction:
    """The referral action of a ``ddt-delegation.kind``."""
    return ReferralAction.NODE_REFERRAL if kind == "ddt-node" else ReferralAction.MS_REFERRAL


class DdtNode:
    """Answers DDT-originated Map-Requests from its authority prefixes and delegations."""

    def __init__(
        self,
        authorities: Sequence[DdtAuthority],
        delegations: Sequence[DdtDelegation],
        settings: DdtConfig | None = None,
    ) -> None:
        """Authoritative for ``authorities``, referring ``delegations`` (as checked by the
        configuration: inside an authority, not overlapping); ``settings.answer_rate`` answers
        a second per source address."""
        rate = (settings or DdtConfig()).answer_rate
        self._limiter = _Limiter(float(rate), 2.0 * rate)
        self._refusal_log = RefusalLog(log)
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.configure(authorities, delegations, settings or DdtConfig())

    def configure(
        self,
        authorities: Sequence[DdtAuthority],
        delegations: Sequence[DdtDelegation],
        settings: DdtConfig,
    ) -> None:
        """Replace the authority prefixes, delegations and TTLs (a reload)."""
        self.referral_ttl = settings.referral_ttl
        self.hole_ttl = settings.hole_ttl
        self._authorities: ScopedTables[bool] = ScopedTables()
        for auth in authorities:
            self._authorities.put(auth.instance_id, auth.prefix, True)
        self._delegations: ScopedTables[Delegation] = ScopedTables()
        for d in delegations:
            self._delegations.put(
                d.instance_id,
                d.prefix,
                Delegation(delegation_action(d.kind), referral_set(d.referrals)),
            )

    @property
    def authority_count(self) -> int:
        """Authority prefixes configured."""
        return len(self._authorities)

    @property
    def delegation_count(self) -> int:
        """Delegations configured."""
        return len(self._delegations)

    def _refuse(self, reason: str, ecm: EncapsulatedControl, now: float, **fields: object) -> None:
        self.drops[reason] += 1
        src = endpoint(ecm.inner_ip.src, ecm.sport)
        self._refusal_log.warn(reason, now, "ddt map-request refused", src=src, **fields)

    def answer(
        self, iid: int, address: IPAddress
    ) -> tuple[IPNetwork, ReferralAction, int, tuple[Locator, ...], bool] | None:
        """(prefix, action, TTL, referral set, authoritative) for ``address`` in ``iid``; None
        when this node is not authoritative for it."""
        hit = self._delegations.lookup(iid, address)
        if hit is not None:
            prefix, delegation = hit
            return prefix, delegation.action, self.referral_ttl, delegation.referrals, True
        authority = self._authorities.lookup(iid, address)
        if authority is None:
            return None
        hole = self._delegations.largest_uncovered(iid, address)
        if hole is None:  # pragma: no cover - the lookup above found no delegation
            return None
        prefix = hole if hole.prefixlen >= authority[0].prefixlen else authority[0]
        return prefix, ReferralAction.DELEGATION_HOLE, self.hole_ttl, (), True

    def on_ecm(
        self, ecm: EncapsulatedControl, src: IPAddress, sport: int, now: float
    ) -> list[SendControl]:
        """Answer the DDT ECM received from ``src``:``sport`` (its outer source)."""
        if not ecm.ddt:
            self._refuse(NOT_DDT, ecm, now)
            return []
        request = ecm.message
        if not isinstance(request, MapRequest):
            self._refuse(NOT_MAP_REQUEST, ecm, now, message=type(request).__name__)
            return []
        if not self._limiter.allow(src, now):
            self.drops[RATE_LIMITED] += 1
            return []
        eid = request_eid(request)
        if eid is None:
            self._refuse(BAD_EID, ecm, now)
            return []
        if not 0 < sport <= 0xFFFF:
            self._refuse(BAD_PORT, ecm, now)
            return []
        iid, address = eid
        found = self.answer(iid, address)
        if found is None:
            prefix = host_prefix(address, request.records[0].mask_len)
            found = (prefix, ReferralAction.NOT_AUTHORITATIVE, 0, (), False)
        prefix, action, ttl, referrals, auth = found
        try:
            send = referral_datagram(
                src,
                sport,
                request.nonce,
                iid,
                prefix,
                action,
                ttl,
                referrals,
                authoritative=auth,
            )
        except EncodeError as exc:
            self._refuse(ENCODE_FAILED, ecm, now, error=exc)
            return []
        self.stats["referrals-sent"] += 1
        self.stats["sent-" + ACTION_NAMES[action]] += 1
        return [send]

    def __repr__(self) -> str:
        return (
            f"<DdtNode {len(self._authorities)} authority prefixes "
            f"{len(self._delegations)} delegations>"
        )
