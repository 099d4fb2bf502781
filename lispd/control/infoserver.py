"""The Map-Server side of NAT traversal: Info-Requests in, Info-Replies out.

An xTR asks its Map-Server, with an Info-Request to UDP 4342, how it is seen from outside; the
answer (lispers.net flavour of draft-ietf-lisp-nat-traversal) is an Info-Reply to the address and
port the request came from, carrying the NAT-traversal LCAF:

- MS port 4342, ETR port = the request's (possibly translated) source port;
- global ETR RLOC = the request's (possibly translated) source address;
- MS RLOC = our local RLOC of that address's family (AFI 0 when we have none);
- private ETR RLOC AFI 0 (the draft's ETR copy of its own address: the xTR knows it already);
- the RTR RLOCs configured here, all of them (the xTR keeps those it can reach).

The reply has the request's nonce, TTL, EID-prefix and mask-length, key-id 0 and no
authentication.

Unauthenticated Info-Requests are accepted, as lispers.net accepts them, and an authenticated
one is answered without its authentication being checked: answering changes no state here (no
registration, no NAT binding is learnt; the RTR learns those from the keepalives it receives),
and the reply tells the sender nothing but what its own packet already showed on the wire plus
the RTR list, which is public to anyone who can send a Map-Request for a NATed site anyway.  The
reply being about as long as the request (the RTR list aside), the rate limit per source address
is what keeps the Map-Server from being a useful reflector.

``drops`` counts ``info-unexpected-reply`` (an Info-Reply sent to a Map-Server),
``info-request-rate-limited`` and ``info-reply-unencodable`` (an echoed field the encoder
refuses); ``stats`` counts ``info-replies-sent``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address

from lispd.control.outputs import SendControl
from lispd.control.responder import _Limiter
from lispd.wire import auth
from lispd.wire.address import NO_ADDRESS, Address, NatTraversalAddress
from lispd.wire.data import LISP_CONTROL_PORT
from lispd.wire.errors import EncodeError
from lispd.wire.info import InfoMessage, encode_info

IPAddress = IPv4Address | IPv6Address


def _check_addresses(what: str, addresses: Sequence[IPAddress]) -> tuple[IPAddress, ...]:
    out: list[IPAddress] = []
    for addr in addresses:
        if not isinstance(addr, IPv4Address | IPv6Address):
            raise TypeError(f"a {what} is an IPv4/IPv6 address, not {addr!r}")
        if addr not in out:
            out.append(addr)
    return tuple(out)


class InfoResponder:
    """Answers Info-Requests with what the Map-Server sees of the sender, and the RTR list."""

    def __init__(
        self,
        local_rlocs: Sequence[IPAddress],
        rtrs: Sequence[IPAddress],
        rate: float = 10.0,
        burst: float = 20.0,
    ) -> None:
        """``local_rlocs`` are the Map-Server's own RLOCs (the MS RLOC of a reply is the first
        one of the requester's family); ``rtrs`` the RTR RLOCs to tell every requester; each
        source address may be answered ``rate`` times a second, in bursts of up to ``burst``."""
        if not rate > 0 or not burst >= 1:
            raise ValueError("the Info-Request rate limit needs rate > 0 and burst >= 1")
        self.local_rlocs: tuple[IPAddress, ...] = _check_addresses("local RLOC", local_rlocs)
        self.rtrs: tuple[IPAddress, ...] = _check_addresses("RTR RLOC", rtrs)
        self._limiter = _Limiter(rate, burst)
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()

    def ms_rloc(self, family: int) -> Address:
        """Our first local RLOC of IP version ``family`` (AFI 0 when there is none)."""
        for addr in self.local_rlocs:
            if addr.version == family:
                return addr
        return NO_ADDRESS

    def reply_for(self, msg: InfoMessage, src: IPAddress, sport: int) -> InfoMessage:
        """The Info-Reply to the Info-Request ``msg`` received from ``src``:``sport`` (no rate
        limit, no checks: :meth:`on_info_request` is the input)."""
        return InfoMessage(
            nonce=msg.nonce,
            reply=True,
            key_id=auth.KeyId.NONE,
            ttl=msg.ttl,
            eid=msg.eid,
            eid_mask_len=msg.eid_mask_len,
            address=NatTraversalAddress(
                ms_port=LISP_CONTROL_PORT,
                etr_port=sport,
                global_etr_rloc=src,
                ms_rloc=self.ms_rloc(src.version),
                private_etr_rloc=NO_ADDRESS,
                rtr_rlocs=self.rtrs,
            ),
        )

    def on_info_request(
        self, msg: InfoMessage, src: IPAddress, sport: int, now: float
    ) -> list[SendControl]:
        """Answer the Info-Request ``msg`` received from ``src``:``sport`` at ``now`` (the reply
        goes back to ``src``:``sport``, through the NAT that translated them); refused messages
        are counted in ``drops``."""
        if msg.reply:
            self.drops["info-unexpected-reply"] += 1
            return []
        if not self._limiter.allow(src, now):
            self.drops["info-request-rate-limited"] += 1
            return []
        try:
            payload = encode_info(self.reply_for(msg, src, sport))
        except EncodeError:
            self.drops["info-reply-unencodable"] += 1
            return []
        self.stats["info-replies-sent"] += 1
        return [SendControl(src, sport, payload)]

    def states(self) -> dict[str, object]:
        """JSON-ready configuration and counters for ``show nat`` on a Map-Server."""
        return {
            "local-rlocs": [str(a) for a in self.local_rlocs],
            "rtrs": [str(a) for a in self.rtrs],
            "drops": dict(self.drops),
            "stats": dict(self.stats),
        }
