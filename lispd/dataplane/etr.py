"""ETR: an encapsulated packet from UDP 4341 -> validated, decapsulated, to the TUN.

As a PETR (RFC 6832) it also decapsulates packets for destinations outside its database: the
kernel then forwards them natively through its routing table.
"""

from __future__ import annotations

from lispd.dataplane.inner import fix_inner_on_decap, inner_destination
from lispd.dataplane.outputs import Drop, Output, ToTun
from lispd.mapcache import LocalDatabase
from lispd.wire.data import DATA_HEADER_LEN, IID_CONTROL, read_data_header

DROP_SHORT = Drop("truncated-header")
DROP_ENCRYPTED = Drop("encrypted-unsupported")
DROP_CONTROL = Drop("data-control-unsupported")
DROP_BAD_INNER = Drop("bad-inner-header")
DROP_WRONG_IID = Drop("wrong-instance-id")
DROP_NOT_OURS = Drop("not-our-eid")
DROP_ECN = Drop("ecn-ce-on-not-ect")


def data_iid(payload: bytes) -> int | Drop:
    """The instance-ID of a LISP data payload this node can decapsulate, or the Drop saying
    why not (truncated, encrypted, or a data-plane control message)."""
    header = read_data_header(payload)
    if header is None:
        return DROP_SHORT
    iid, key_id = header
    if key_id:
        return DROP_ENCRYPTED
    if iid == IID_CONTROL:
        return DROP_CONTROL
    return iid


class Etr:
    """Decapsulation decisions for payloads received on the LISP data port."""

    def __init__(self, database: LocalDatabase, petr: bool = False) -> None:
        self.database = database
        self.petr = petr  # also decapsulate for non-EID destinations (forwarded natively)

    def handle(self, payload: bytes, outer_ttl: int, outer_tos: int) -> Output:
        """Decide what to do with one UDP payload (LISP header + inner packet).  A ToTun for
        a destination outside the database, decapsulated as a PETR, has ``petr`` set."""
        iid = data_iid(payload)
        if type(iid) is Drop:
            return iid
        inner = payload[DATA_HEADER_LEN:]
        dst = inner_destination(inner)
        if dst is None:
            return DROP_BAD_INNER
        ours = self.database.contains(iid, dst)
        if not ours and not self.petr:
            served = iid in self.database.instance_ids()
            return DROP_NOT_OURS if served else DROP_WRONG_IID
        fixed = fix_inner_on_decap(inner, outer_ttl, outer_tos)
        if fixed is None:
            return DROP_ECN
        return ToTun(fixed, not ours)
