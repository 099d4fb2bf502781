"""RTR: a LISP packet from UDP 4341 -> decapsulated and encapsulated again toward the next RLOC.

A re-encapsulating tunnel router (RFC 9300 section 8) sits between an ITR and an ETR: the NAT
traversal relay for xTRs behind NATs, and the middle hops of Explicit Locator Paths.  The inner
packet is validated like an ETR does it (same drop reasons), its TTL is lowered the way a router
lowers it (the RTR forwards without the kernel), then the ITR logic picks the next RLOC in the
packet's own instance-ID: the map-cache (a miss is resolved like an ITR's), an ELP's next hop,
and a NATed xTR's translated port.
"""

from __future__ import annotations

from lispd.dataplane.etr import DROP_BAD_INNER, DROP_ECN, data_iid
from lispd.dataplane.inner import decrement_ttl, fix_inner_on_decap, inner_destination
from lispd.dataplane.itr import Itr
from lispd.dataplane.outputs import Drop, Miss, Output
from lispd.wire.data import DATA_HEADER_LEN

DROP_TTL = Drop("ttl-exceeded")


class Rtr:
    """Re-encapsulation decisions for payloads received on the LISP data port."""

    def __init__(self, forwarder: Itr) -> None:
        self.forwarder = forwarder

    def handle(self, payload: bytes, outer_ttl: int, outer_tos: int) -> Output:
        """Decide what to do with one UDP payload (LISP header + inner packet)."""
        iid = data_iid(payload)
        if type(iid) is Drop:
            return iid
        inner = payload[DATA_HEADER_LEN:]
        if inner_destination(inner) is None:
            return DROP_BAD_INNER
        fixed = fix_inner_on_decap(inner, outer_ttl, outer_tos)
        if fixed is None:
            return DROP_ECN
        forwarded = decrement_ttl(fixed)
        if forwarded is None:
            return DROP_TTL
        out = self.forwarder.handle(forwarded, iid, True)
        if type(out) is Miss:  # held decapsulated, TTL lowered (as bytes: it is kept a while)
            return out._replace(packet=bytes(forwarded))
        return out
