"""The ETR's Map-Replier and SMR sender, sans-IO."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv6Address, ip_address

from lispd.control.responder import MapReplier, SmrSender, database_records
from lispd.mapcache import DatabaseEntry, LocalDatabase, RlocEntry
from lispd.wire.address import InstanceIdAddress
from lispd.wire.mapreply import decode_map_reply
from lispd.wire.maprequest import MapRequest, decode_map_request
from lispd.wire.records import EidPrefix

RLOC = IPv4Address("192.0.2.2")
OTHER = IPv4Address("192.0.2.66")
ITR = IPv4Address("192.0.2.6")


def database() -> LocalDatabase:
    db = LocalDatabase()
    db.add(DatabaseEntry(0, "198.51.100.0/28", (RlocEntry(RLOC, 1, 60), RlocEntry(OTHER, 2, 40))))
    db.add(DatabaseEntry(7, "2001:db8:100:1::/64", (RlocEntry(RLOC, 1, 100),)))
    return db


def request(eid, mask: int, nonce: int = 42, **kw) -> MapRequest:
    return MapRequest(nonce=nonce, records=(EidPrefix(eid, mask),), itr_rlocs=(ITR,), **kw)


def test_answers_with_the_database_prefix_authoritatively() -> None:
    replier = MapReplier(database(), [RLOC], record_ttl=1440)
    (out,) = replier.on_map_request(request(ip_address("198.51.100.5"), 32), 61000, ITR, 0.0)
    assert (out.dst, out.port) == (ITR, 61000)
    reply = decode_map_reply(out.payload)
    assert reply.nonce == 42 and not reply.probe
    (record,) = reply.records
    assert (record.eid, record.mask_len) == (ip_address("198.51.100.0"), 28)
    assert record.authoritative and record.ttl == 1440
    assert [(loc.address, loc.priority, loc.weight, loc.local) for loc in record.locators] == [
        (RLOC, 1, 60, True),
        (OTHER, 2, 40, False),
    ]


def test_instance_ids_are_kept_apart() -> None:
    replier = MapReplier(database(), [RLOC])
    v6 = ip_address("2001:db8:100:1::9")
    assert replier.on_map_request(request(v6, 128), 4342, ITR, 0.0) == []
    assert replier.drops["request-not-our-eid"] == 1
    (out,) = replier.on_map_request(request(InstanceIdAddress(7, v6), 128), 4342, ITR, 0.0)
    (record,) = decode_map_reply(out.payload).records
    assert (
        record.eid == InstanceIdAddress(7, IPv6Address("2001:db8:100:1::"))
        and record.mask_len == 64
    )


def test_refuses_foreign_eids_smrs_and_unreachable_requesters() -> None:
    replier = MapReplier(database(), [RLOC])
    assert replier.on_map_request(request(ip_address("203.0.113.1"), 32), 1, ITR, 0.0) == []
    assert (
        replier.on_map_request(request(ip_address("198.51.100.1"), 32, smr=True), 1, ITR, 0.0) == []
    )
    v6_only = MapRequest(
        1, (EidPrefix(ip_address("198.51.100.1"), 32),), (ip_address("2001:db8::1"),)
    )
    assert replier.on_map_request(v6_only, 1, ITR, 0.0) == []
    assert dict(replier.drops) == {
        "request-not-our-eid": 1,
        "request-smr-at-etr": 1,
        "request-no-usable-itr-rloc": 1,
    }


def test_rate_limited_per_requester() -> None:
    replier = MapReplier(database(), [RLOC], rate=1.0, burst=3.0)
    req = request(ip_address("198.51.100.1"), 32)
    answered = sum(len(replier.on_map_request(req, 1, ITR, 0.0)) for _ in range(10))
    assert answered == 3 and replier.drops["request-rate-limited"] == 7
    other = IPv4Address("192.0.2.99")
    assert replier.on_map_request(req, 1, other, 0.0)  # another requester has its own budget
    assert replier.on_map_request(req, 1, ITR, 1.5)  # tokens come back with time


def test_smr_goes_to_recent_itrs_only() -> None:
    rng = random.Random(3)
    smr = SmrSender([RLOC], lambda: rng.getrandbits(64), recent=60.0)
    smr.saw_traffic("192.0.2.6", ip_address("198.51.100.18").packed, 0, now=0.0)
    smr.saw_traffic("192.0.2.10", ip_address("198.51.100.34").packed, 0, now=-100.0)
    records = database_records(database().entries(), [RLOC], 1440)[:1]
    (out,) = smr.solicit(records, now=10.0)
    assert (out.dst, out.port) == (ITR, 4342)
    req = decode_map_request(out.payload)
    assert req.smr and req.source_eid == ip_address("198.51.100.0")
    assert req.records == (EidPrefix(ip_address("198.51.100.18"), 32),)
    assert req.itr_rlocs == (RLOC,)
