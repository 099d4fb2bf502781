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


def test_rate_limited_per_reply_destination() -> None:
    """The budget is the ITR-RLOC's the reply goes to, whoever sends the request: a
    Map-Server forwarding many ITRs' requests from its one address is not throttled as one,
    and no address gets more than the budget, however many sources name it."""
    replier = MapReplier(database(), [RLOC], rate=1.0, burst=3.0)
    req = request(ip_address("198.51.100.1"), 32)
    answered = sum(len(replier.on_map_request(req, 1, ITR, 0.0)) for _ in range(10))
    assert answered == 3 and replier.drops["request-rate-limited"] == 7
    spoofed = IPv4Address("192.0.2.99")
    assert replier.on_map_request(req, 1, spoofed, 0.0) == []  # same destination, no budget
    other_itr = IPv4Address("192.0.2.77")
    forwarded = MapRequest(nonce=1, records=req.records, itr_rlocs=(other_itr,))
    assert replier.on_map_request(forwarded, 1, ITR, 0.0)  # another ITR has its own budget
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


# --- the probed-locator bit (issue 21) -----------------------------------------------------------


def _probed_bits(replier: MapReplier, dst: IPv4Address | None, probe: bool) -> list[bool]:
    req = request(ip_address("198.51.100.5"), 32, probe=probe)
    (out,) = replier.on_map_request(req, 4342, ITR, 0.0, dst=dst)
    (record,) = decode_map_reply(out.payload).records
    return [loc.probed for loc in record.locators]


def test_probe_reply_sets_p_on_the_probed_locator_only() -> None:
    """RFC 9301 section 5.4 (Map-Reply locator ``p`` bit): in an RLOC-probe reply the ETR flags
    the one locator the probe was sent to, which need not be the reply's source address; no
    other locator carries the bit."""
    replier = MapReplier(database(), [RLOC, OTHER])
    assert _probed_bits(replier, OTHER, probe=True) == [False, True]
    assert _probed_bits(replier, RLOC, probe=True) == [True, False]
    # The destination unknown, or not one of the locators: no locator is named.
    assert _probed_bits(replier, None, probe=True) == [False, False]
    assert _probed_bits(replier, IPv4Address("192.0.2.99"), probe=True) == [False, False]


def test_non_probe_reply_sets_no_probed_locator() -> None:
    """RFC 9301 section 5.4: the locator ``p`` bit only answers an RLOC-probe, so an ordinary
    Map-Reply has it clear on every locator, whatever address the request was sent to."""
    replier = MapReplier(database(), [RLOC, OTHER])
    assert _probed_bits(replier, RLOC, probe=False) == [False, False]


def test_petr_probe_reply_names_only_the_probed_rloc() -> None:
    """RFC 9301 section 5.4: the bit is set on a single locator of the set; a PETR answering a
    probe with its own RLOCs flags only the probed one (it used to flag them all)."""
    replier = MapReplier(LocalDatabase(), [RLOC, OTHER], answer_probes=True)
    req = request(ip_address("203.0.113.1"), 32, probe=True)
    (out,) = replier.on_map_request(req, 4342, ITR, 0.0, dst=OTHER)
    (record,) = decode_map_reply(out.payload).records
    assert [(loc.address, loc.probed) for loc in record.locators] == [(RLOC, False), (OTHER, True)]


def test_node_passes_the_probed_address_to_the_replier() -> None:
    """RFC 9301 section 5.4, end to end through :class:`lispd.node.Node`: the address a probe
    arrived at (the control socket's) is the locator flagged in the reply."""
    from lispd.config import parse_config
    from lispd.node import Node
    from lispd.node.actions import SendDatagram
    from lispd.wire.control import encode_control
    from tests import configs
    from tests.unit.socketless import perform

    rlocs = ("192.0.2.1", "2001:db8::1")  # one RLOC per family
    itr6 = IPv6Address("2001:db8::6")
    doc = configs.xtr(
        rlocs=rlocs,
        probing={"map-cache": False},
        database_mapping=[configs.mapping("198.51.100.0/28", *rlocs)],
    )
    node = Node(parse_config(configs.toml(doc)), 0.0)
    perform(node)
    probe = MapRequest(
        nonce=7, records=(EidPrefix(ip_address("198.51.100.5"), 32),), itr_rlocs=(itr6,), probe=True
    )
    node.control_datagram(encode_control(probe), 64, str(itr6), 4342, 1.0, "2001:db8::1")
    replies = [
        decode_map_reply(a.payload)
        for a in perform(node)
        if isinstance(a, SendDatagram) and a.dst == itr6 and a.payload[0] >> 4 == 2
    ]
    (reply,) = replies
    assert reply.probe and reply.nonce == 7
    assert [(str(loc.address), loc.probed) for loc in reply.records[0].locators] == [
        ("192.0.2.1", False),
        ("2001:db8::1", True),
    ]
