"""The LISP-DDT machines on their own (sans-IO): a DDT node's answers, a Map-Server's MS-ACK and
MS-NOT-REGISTERED, the DDT Map-Resolver's walk against forged, looping and hostile referrals,
the referral cache's bounds; Open Overlay Router's DDT messages answered and followed
(skipped without the captures)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, ip_address, ip_network
from typing import Any

import pytest

from lispd.config.model import DdtAuthority, DdtConfig, DdtDelegation
from lispd.control.mapserver import MapServer, SitePrefixSpec, SiteSpec
from lispd.ddt.authority import DdtNode
from lispd.ddt.cache import ReferralCache
from lispd.ddt.leaf import DdtLeaf
from lispd.ddt.resolver import DdtResolver
from lispd.tools.pcap import ip_payload, read_file
from lispd.wire.address import InstanceIdAddress
from lispd.wire.control import decode_control
from lispd.wire.ecm import EncapsulatedControl, decode_ecm
from lispd.wire.ip import IPv4Header, parse_udp_datagram
from lispd.wire.mapreferral import (
    MapReferral,
    ReferralAction,
    ReferralRecord,
    decode_map_referral,
)
from lispd.wire.mapregister import (
    MapRegister,
    decode_map_register,
    encode_signed,
)
from lispd.wire.mapreply import MapReply, decode_map_reply
from lispd.wire.maprequest import MapRequest
from lispd.wire.records import Action, EidPrefix, EidRecord, Locator
from tests.external import capture

ROOT = ip_address("192.0.2.40")
ROOT2 = ip_address("192.0.2.42")
MR = ip_address("192.0.2.41")
CHILD = ip_address("192.0.2.50")
MS_A = ip_address("192.0.2.10")
MS_B = ip_address("192.0.2.11")
ITR = ip_address("192.0.2.2")
EID = ip_address("198.51.100.17")

A = ReferralAction


def node(delegations: list[DdtDelegation], authority: tuple[str, ...] = ("0.0.0.0/0",)) -> DdtNode:
    return DdtNode(
        [DdtAuthority(0, ip_network(p)) for p in authority],
        delegations,
        DdtConfig(referral_ttl=1440, hole_ttl=15),
    )


def delegation(prefix: str, kind: str, *referrals: str, iid: int = 0) -> DdtDelegation:
    return DdtDelegation(iid, ip_network(prefix), kind, tuple(ip_address(r) for r in referrals))


def request_ecm(
    eid: str = str(EID), *, nonce: int = 0x1111, iid: int = 0, ddt: bool = True, sport: int = 4342
) -> EncapsulatedControl:
    address = ip_address(eid)
    record = EidPrefix(InstanceIdAddress(iid, address) if iid else address, 32)
    request = MapRequest(nonce=nonce, records=(record,), itr_rlocs=(ITR,))
    inner = IPv4Header(IPv4Address("198.51.100.1"), address)  # type: ignore[arg-type]
    return EncapsulatedControl(inner, sport, 4342, request, ddt=ddt)


def referral_of(payload: bytes) -> ReferralRecord:
    msg = decode_map_referral(payload)
    assert len(msg.records) == 1
    return msg.records[0]


# --- DDT node ---------------------------------------------------------------------------------


def test_a_ddt_node_refers_holes_and_disowns() -> None:
    ddt = node(
        [delegation("198.51.100.0/24", "ddt-node", "192.0.2.50", "192.0.2.51")],
        authority=("198.0.0.0/8",),
    )
    (send,) = ddt.on_ecm(request_ecm(), MR, 4342, 0.0)
    assert (send.dst, send.port) == (MR, 4342)
    rec = referral_of(send.payload)
    assert (str(rec.eid), rec.mask_len, rec.action, rec.ttl) == (
        "198.51.100.0",
        24,
        A.NODE_REFERRAL,
        1440,
    )
    assert [(str(r.address), r.priority) for r in rec.referrals] == [
        ("192.0.2.50", 1),
        ("192.0.2.51", 2),
    ]
    assert rec.authoritative
    (send,) = ddt.on_ecm(request_ecm("198.51.99.7"), MR, 4342, 0.0)
    rec = referral_of(send.payload)
    # The largest prefix inside 198.0.0.0/8 holding the EID and missing 198.51.100.0/24.
    assert (f"{rec.eid}/{rec.mask_len}", rec.action, rec.ttl, rec.referrals) == (
        "198.51.96.0/22",
        A.DELEGATION_HOLE,
        15,
        (),
    )
    (send,) = ddt.on_ecm(request_ecm("203.0.113.5"), ROOT, 61000, 0.0)
    assert send.port == 61000  # back to the asker's port (rig)
    rec = referral_of(send.payload)
    assert (f"{rec.eid}/{rec.mask_len}", rec.action, rec.ttl, rec.authoritative) == (
        "203.0.113.5/32",
        A.NOT_AUTHORITATIVE,
        0,
        False,
    )
    assert ddt.stats["sent-node-referral"] == ddt.stats["sent-delegation-hole"] == 1


def test_a_ddt_node_answers_in_its_instance_ids_only() -> None:
    ddt = DdtNode(
        [DdtAuthority(7, ip_network("0.0.0.0/0"))],
        [delegation("198.51.100.0/24", "map-server", "192.0.2.10", iid=7)],
    )
    (send,) = ddt.on_ecm(request_ecm(iid=7), MR, 4342, 0.0)
    rec = referral_of(send.payload)
    assert rec.action == A.MS_REFERRAL and rec.eid == InstanceIdAddress(
        7, ip_address("198.51.100.0")
    )
    (send,) = ddt.on_ecm(request_ecm(iid=0), MR, 4342, 0.0)
    assert referral_of(send.payload).action == A.NOT_AUTHORITATIVE


def test_a_ddt_node_refuses_by_name_and_limits_each_source() -> None:
    ddt = DdtNode([DdtAuthority(0, ip_network("0.0.0.0/0"))], [], DdtConfig(answer_rate=2))
    assert ddt.on_ecm(request_ecm(ddt=False), MR, 4342, 0.0) == []
    assert ddt.on_ecm(request_ecm(sport=0), MR, 0, 0.0) == []
    not_a_request = replace(request_ecm(), message=MapReply(nonce=1, records=()))
    assert ddt.on_ecm(not_a_request, MR, 4342, 0.0) == []
    answered = sum(len(ddt.on_ecm(request_ecm(), ROOT2, 4342, 1.0)) for _ in range(50))
    assert answered == 4  # a burst of twice the rate
    assert ddt.drops == {
        "ddt-request-not-ddt": 1,
        "ddt-request-bad-port": 1,
        "ddt-request-not-map-request": 1,
        "ddt-request-rate-limited": 46,
    }


# --- Map-Server leaf ------------------------------------------------------------------------


def map_server() -> MapServer:
    sites = [
        SiteSpec("site2", b"key-two", (SitePrefixSpec(0, ip_network("198.51.100.16/28")),)),
        SiteSpec("site3", b"key-three", (SitePrefixSpec(0, ip_network("198.51.100.32/28")),)),
    ]
    return MapServer(sites)


def register(ms: MapServer, prefix: str, etr: str, key: bytes, now: float = 0.0) -> None:
    net = ip_network(prefix)
    record = EidRecord(
        net.network_address, net.prefixlen, (Locator(ip_address(etr)),), authoritative=True
    )
    data = encode_signed(MapRegister(nonce=5, records=(record,)), key)
    ms.on_map_register(data, decode_map_register(data), ip_address(etr), 4342, now)
    assert ms.lookup(0, net.network_address) is not None


def test_a_map_server_forwards_without_the_d_bit_and_acknowledges() -> None:
    ms = map_server()
    register(ms, "198.51.100.16/28", "192.0.2.2", b"key-two")
    leaf = DdtLeaf(ms, [MS_A], referral_ttl=1440)
    forward, ack = leaf.on_ecm(request_ecm(), MR, 4342, 1.0) or []
    to_etr = decode_ecm(forward.payload)
    assert forward.dst == ip_address("192.0.2.2") and to_etr.to_etr and not to_etr.ddt
    assert to_etr.message.nonce == 0x1111  # type: ignore[union-attr]
    rec = referral_of(ack.payload)
    assert (ack.dst, f"{rec.eid}/{rec.mask_len}", rec.action) == (MR, "198.51.100.16/28", A.MS_ACK)
    assert [r.address for r in rec.referrals] == [MS_A]
    assert decode_map_referral(ack.payload).nonce == 0x1111


def test_a_map_server_says_not_registered_or_not_authoritative() -> None:
    leaf = DdtLeaf(map_server(), [MS_A])
    (send,) = leaf.on_ecm(request_ecm("198.51.100.33"), MR, 4342, 0.0) or []
    rec = referral_of(send.payload)
    assert (f"{rec.eid}/{rec.mask_len}", rec.action, rec.ttl) == (
        "198.51.100.32/28",
        A.MS_NOT_REGISTERED,
        1,
    )
    (send,) = leaf.on_ecm(request_ecm("203.0.113.1"), MR, 4342, 0.0) or []
    assert referral_of(send.payload).action == A.NOT_AUTHORITATIVE
    # With a DDT node role beside it, that role answers for what no site holds.
    assert leaf.on_ecm(request_ecm("203.0.113.1"), MR, 4342, 0.0, last_word=False) is None


# --- the DDT Map-Resolver ---------------------------------------------------------------------


class Nonces:
    """A predictable rng for the walk's own nonces."""

    def __init__(self) -> None:
        self.n = 0x5000

    def __call__(self, _bits: int) -> int:
        self.n += 1
        return self.n


def resolver(**settings: object) -> DdtResolver:
    config = replace(DdtConfig(request_timeout=1.0), **settings)  # type: ignore[arg-type]
    return DdtResolver([ROOT, ROOT2], config, frozenset({4, 6}), rng=Nonces())


def itr_ecm(eid: str = str(EID), nonce: int = 0xAAAA) -> EncapsulatedControl:
    return request_ecm(eid, nonce=nonce, ddt=False, sport=4342)


def answer(
    step: bytes, action: A, prefix: str, *referrals: str, ttl: int = 1440, nonce: int | None = None
) -> MapReferral:
    ecm = decode_ecm(step)
    net = ip_network(prefix)
    rec = ReferralRecord(
        net.network_address,
        net.prefixlen,
        tuple(Locator(ip_address(r)) for r in referrals),
        ttl,
        action,
        authoritative=True,
    )
    return MapReferral(nonce=ecm.message.nonce if nonce is None else nonce, records=(rec,))  # type: ignore[union-attr]


def test_the_walk_goes_down_the_tree_and_remembers_it() -> None:
    r = resolver()
    (step,) = r.on_ecm(itr_ecm(), 0.0, ITR)
    assert step.dst == ROOT and decode_ecm(step.payload).ddt
    assert decode_ecm(step.payload).message.nonce != 0xAAAA  # type: ignore[union-attr]
    (step,) = r.on_map_referral(
        answer(step.payload, A.NODE_REFERRAL, "198.51.100.0/24", "192.0.2.50"), ROOT, 0.1
    )
    assert step.dst == CHILD
    (step,) = r.on_map_referral(
        answer(step.payload, A.MS_REFERRAL, "198.51.100.0/26", "192.0.2.10", "192.0.2.11"),
        CHILD,
        0.2,
    )
    assert step.dst == MS_A
    assert decode_ecm(step.payload).message.nonce == 0xAAAA  # type: ignore[union-attr]
    assert (
        r.on_map_referral(
            answer(step.payload, A.MS_ACK, "198.51.100.16/28", "192.0.2.10"), MS_A, 0.3
        )
        == []
    )
    assert r.pending() == 0 and r.stats["answered"] == 1 and r.stats["steps"] == 3
    cached = {f"{p}": (e.action, e.referrals) for _i, p, e in r.cache.items()}
    assert cached["198.51.100.16/28"] == (A.MS_REFERRAL, (MS_A, MS_B))
    # The next request for the site goes to its Map-Servers at once.
    (step,) = r.on_ecm(itr_ecm("198.51.100.18", nonce=0xBBBB), 1.0, ITR)
    assert step.dst == MS_A


def test_timeouts_move_to_the_next_member_and_an_all_silent_set_ends_quietly() -> None:
    r = resolver()
    (step,) = r.on_ecm(itr_ecm(), 0.0, ITR)
    assert step.dst == ROOT
    (step,) = r.on_timer(1.0)
    assert step.dst == ROOT2
    assert r.on_timer(2.0) == []
    assert r.pending() == 0 and r.stats["gave-up-unreachable"] == 1
    # The roots timed out lately: a new walk still asks them (nobody else to ask).
    (step,) = r.on_ecm(itr_ecm(nonce=0xCCCC), 3.0, ITR)
    assert step.dst == ROOT


def test_forged_referrals_change_nothing() -> None:
    r = resolver()
    (step,) = r.on_ecm(itr_ecm(), 0.0, ITR)
    good = answer(step.payload, A.DELEGATION_HOLE, "198.51.100.0/24", ttl=15)
    assert r.on_map_referral(replace(good, nonce=good.nonce + 1), ROOT, 0.1) == []
    assert r.on_map_referral(good, ip_address("192.0.2.99"), 0.1) == []  # not asked
    assert r.pending() == 1 and len(r.cache) == 0
    assert r.drops["referral-unknown-nonce"] == 1 and r.drops["referral-wrong-source"] == 1
    # A record for another EID is no answer: the next member is asked.
    elsewhere = answer(step.payload, A.DELEGATION_HOLE, "203.0.113.0/24")
    (step,) = r.on_map_referral(elsewhere, ROOT, 0.2)
    assert step.dst == ROOT2 and r.drops["referral-eid-mismatch"] == 1


def test_a_delegation_hole_is_a_natively_forward_reply_and_cached() -> None:
    r = resolver()
    (step,) = r.on_ecm(itr_ecm("203.0.113.5"), 0.0, ITR)
    (reply,) = r.on_map_referral(
        answer(step.payload, A.DELEGATION_HOLE, "200.0.0.0/5", ttl=15), ROOT, 0.1
    )
    msg = decode_map_reply(reply.payload)
    assert (reply.dst, reply.port, msg.nonce) == (ITR, 4342, 0xAAAA)
    (rec,) = msg.records
    assert (f"{rec.eid}/{rec.mask_len}", rec.action, rec.ttl) == (
        "200.0.0.0/5",
        Action.NATIVELY_FORWARD,
        15,
    )
    (reply,) = r.on_ecm(itr_ecm("203.0.113.77", nonce=0xBBBB), 60.0, ITR)
    assert decode_map_reply(reply.payload).records[0].ttl == 14  # what is left of it
    assert r.stats["answered-from-cache"] == 1


@pytest.mark.parametrize(
    "second",
    [
        ("198.51.0.0/16", "less specific than the referral followed"),
        ("198.51.100.0/24", "the same referral again"),
    ],
)
def test_loops_end_with_a_short_negative_reply(second: tuple[str, str]) -> None:
    r = resolver()
    (step,) = r.on_ecm(itr_ecm(), 0.0, ITR)
    (step,) = r.on_map_referral(
        answer(step.payload, A.NODE_REFERRAL, "198.51.100.0/24", "192.0.2.50"), ROOT, 0.1
    )
    (reply,) = r.on_map_referral(
        answer(step.payload, A.NODE_REFERRAL, second[0], "192.0.2.40"), CHILD, 0.2
    )
    (rec,) = decode_map_reply(reply.payload).records
    assert (f"{rec.eid}/{rec.mask_len}", rec.action, rec.ttl) == (
        "198.51.100.17/32",
        Action.SEND_MAP_REQUEST,
        1,
    )
    assert r.stats["gave-up-loop"] == 1 and r.pending() == 0


def test_a_tree_deeper_than_max_steps_is_given_up() -> None:
    r = resolver(max_steps=4)
    (step,) = r.on_ecm(itr_ecm(), 0.0, ITR)
    for length in range(17, 30):  # every referral a bit more specific, to another node
        prefix = ip_network(f"{EID}/{length}", strict=False)
        referral = answer(step.payload, A.NODE_REFERRAL, str(prefix), f"192.0.2.{length + 100}")
        (step,) = r.on_map_referral(referral, step.dst, 0.1)
        if isinstance(decode_control(step.payload), MapReply):
            break
    assert isinstance(decode_control(step.payload), MapReply)
    assert r.stats["gave-up-max-steps"] == 1 and r.stats["requests-sent"] == 4


def test_not_registered_everywhere_is_send_map_request_for_the_site_prefix() -> None:
    r = resolver()
    (step,) = r.on_ecm(itr_ecm(), 0.0, ITR)
    (step,) = r.on_map_referral(
        answer(step.payload, A.MS_REFERRAL, "198.51.100.0/26", "192.0.2.10", "192.0.2.11"),
        ROOT,
        0.1,
    )
    (step,) = r.on_map_referral(
        answer(step.payload, A.MS_NOT_REGISTERED, "198.51.100.16/28", ttl=1), MS_A, 0.2
    )
    assert step.dst == MS_B  # the other Map-Server may hold it
    (reply,) = r.on_map_referral(
        answer(step.payload, A.MS_NOT_REGISTERED, "198.51.100.16/28", ttl=1), MS_B, 0.3
    )
    (rec,) = decode_map_reply(reply.payload).records
    assert (f"{rec.eid}/{rec.mask_len}", rec.action, rec.ttl) == (
        "198.51.100.16/28",
        Action.SEND_MAP_REQUEST,
        1,
    )


def test_hostile_referral_sets_and_request_floods_are_bounded() -> None:
    r = resolver(max_pending=3)
    (step,) = r.on_ecm(itr_ecm(), 0.0, ITR)
    huge = [f"192.0.2.{i}" for i in range(100, 140)]
    (step,) = r.on_map_referral(
        answer(step.payload, A.NODE_REFERRAL, "198.51.100.0/24", *huge), ROOT, 0.1
    )
    assert step.dst == ROOT2 and r.drops["referral-set-too-large"] == 1
    (step,) = r.on_map_referral(
        answer(step.payload, A.NODE_REFERRAL, "198.51.100.0/24"), ROOT2, 0.1
    )
    assert r.drops["referral-set-empty"] == 1
    # Retransmissions of a request under way start nothing; the pending bound holds.
    r2 = resolver(max_pending=3)
    assert len(r2.on_ecm(itr_ecm(nonce=1), 0.0, ITR)) == 1
    assert r2.on_ecm(itr_ecm(nonce=1), 0.0, ITR) == []
    for n in range(2, 10):
        r2.on_ecm(itr_ecm(nonce=n), 0.0, ITR)
    assert r2.pending() == 3
    assert r2.drops["ddt-request-duplicate"] == 1 and r2.drops["ddt-pending-full"] == 6


def test_not_authoritative_for_a_cached_referral_drops_it_and_starts_again() -> None:
    r = resolver()
    r.cache.put(0, ip_network("198.51.100.0/24"), A.NODE_REFERRAL, (CHILD,), 1440, ROOT, 0.0)
    (step,) = r.on_ecm(itr_ecm(), 0.0, ITR)
    assert step.dst == CHILD
    (step,) = r.on_map_referral(
        answer(step.payload, A.NOT_AUTHORITATIVE, f"{EID}/32", ttl=0), CHILD, 0.1
    )
    assert step.dst == ROOT and len(r.cache) == 0
    assert r.stats["restarted-from-roots"] == 1


# --- the referral cache -----------------------------------------------------------------------


def test_the_referral_cache_is_bounded_and_expires_in_batches() -> None:
    cache = ReferralCache(capacity=3)
    for i in range(5):
        cache.put(0, ip_network(f"198.51.100.{16 * i}/28"), A.MS_REFERRAL, (MS_A,), 1, MS_A, 0.0)
    assert len(cache) == 3 and cache.full == 2
    # A refresh of a known prefix is no new entry, and keeps one heap item.
    cache.put(0, ip_network("198.51.100.0/28"), A.MS_REFERRAL, (MS_A,), 10, MS_A, 30.0)
    assert len(cache._heap) == 3
    assert cache.lookup(0, ip_address("198.51.100.1"), 61.0) is not None
    assert cache.lookup(0, ip_address("198.51.100.17"), 61.0) is None  # expired
    assert cache.expire(61.0, limit=1) == 1
    assert cache.expire(61.0) == 0  # the other expired one went at its lookup
    assert len(cache) == 1 and len(cache._heap) == 1
    assert cache.clear() == 1 and cache.next_deadline() is None


def test_clearing_one_instance_takes_its_expiry_items_too() -> None:
    """``lispctl clear`` of one instance-ID: its referrals and their heap items go, the
    other instance's stay (the heap does not keep items of a cleared instance until expiry)."""
    cache = ReferralCache(capacity=100)
    for iid, ttl in ((1, 1), (2, 5)):
        for i in range(4):
            net = ip_network(f"198.51.100.{16 * i}/28")
            cache.put(iid, net, A.MS_REFERRAL, (MS_A,), ttl, MS_A, 0.0)
    assert cache.next_deadline() == 60.0 and len(cache._heap) == 8
    assert cache.clear(1) == 4
    assert len(cache) == 4 and len(cache._heap) == 4 and cache.next_deadline() == 300.0
    assert cache.lookup(2, ip_address("198.51.100.1"), 61.0) is not None
    assert cache.expire(301.0) == 4 and cache.next_deadline() is None


def test_referral_sets_are_shared_between_entries() -> None:
    cache = ReferralCache(capacity=100)
    for i in range(10):
        cache.put(0, ip_network(f"198.51.100.{16 * i}/28"), A.MS_REFERRAL, (MS_A, MS_B), 5, MS_A, 0)
    sets = {id(entry.referrals) for _i, _p, entry in cache.items()}
    assert len(sets) == 1


# --- Open Overlay Router's DDT exchange ---------------------------------------------------------


def _oor_control() -> list[tuple[str, int, object, bytes]]:
    out = []
    for pkt in read_file(str(capture("oor/oor-ddt-referrals.pcap"))):
        ip = ip_payload(pkt.linktype, pkt.frame)
        if ip is None:
            continue
        dg = parse_udp_datagram(ip)
        out.append((str(dg.ip.src), dg.sport, decode_control(dg.payload), dg.payload))
    return out


def test_oor_ddt_requests_are_answered_as_oor_answered_them() -> None:
    """OOR's DDT Map-Resolver asks OOR's root, then OOR's Map-Server: lispd as that root and as
    that Map-Server gives the same answers (action, prefix, referral set) OOR's did."""
    messages = _oor_control()
    ddt_requests = [m for m in messages if isinstance(m[2], EncapsulatedControl) and m[2].ddt]
    referrals = [m for m in messages if isinstance(m[2], MapReferral)]
    assert len(ddt_requests) >= 2 and len(referrals) >= 2
    root = DdtNode(
        [DdtAuthority(0, ip_network("0.0.0.0/0"))],
        [delegation("198.51.100.0/24", "map-server", "192.0.2.10")],
    )
    src, sport, ecm, _ = ddt_requests[0]
    assert isinstance(ecm, EncapsulatedControl)
    (ours,) = root.on_ecm(ecm, ip_address(src), sport, 0.0)
    theirs = referrals[0][2]
    assert isinstance(theirs, MapReferral)
    mine = decode_map_referral(ours.payload)
    assert mine.nonce == theirs.nonce
    assert [
        (r.eid, r.mask_len, r.action, [loc.address for loc in r.referrals]) for r in mine.records
    ] == [
        (r.eid, r.mask_len, r.action, [loc.address for loc in r.referrals]) for r in theirs.records
    ]
    # The Map-Server: site 1 (198.51.100.0/25) registered by xTR 192.0.2.1.
    site1 = SitePrefixSpec(0, ip_network("198.51.100.0/25"))
    ms = MapServer([SiteSpec("site1", b"lab-secret-1", (site1,))])
    for s, p, msg, data in messages:
        if isinstance(msg, MapRegister) and s == "192.0.2.1":
            ms.on_map_register(data, msg, ip_address(s), p, 0.0)
    leaf = DdtLeaf(ms, [ip_address("192.0.2.10")])
    src, sport, ecm, _ = ddt_requests[1]
    assert isinstance(ecm, EncapsulatedControl)
    sends = leaf.on_ecm(ecm, ip_address(src), sport, 1.0) or []
    ack = decode_map_referral(sends[-1].payload)
    theirs = referrals[1][2]
    assert isinstance(theirs, MapReferral)
    assert [(r.eid, r.mask_len, r.action) for r in ack.records] == [
        (r.eid, r.mask_len, r.action) for r in theirs.records
    ]


def test_lispd_follows_oor_referrals() -> None:
    """lispd as the DDT Map-Resolver of OOR's tree: OOR's root's MS-REFERRAL and OOR's Map-Server's
    MS-ACK (their bytes, nonces put back to ours) complete the walk."""
    messages = _oor_control()
    referrals = [m for m in messages if isinstance(m[2], MapReferral)]
    r = DdtResolver([IPv4Address("192.0.2.40")], DdtConfig(), rng=Nonces())
    itr_request = next(
        m for m in messages if isinstance(m[2], EncapsulatedControl) and not m[2].ddt
    )[2]
    assert isinstance(itr_request, EncapsulatedControl)
    (step,) = r.on_ecm(itr_request, 0.0, ip_address("192.0.2.2"))
    for src, _sport, msg, _data in referrals[:2]:
        assert isinstance(msg, MapReferral)
        nonce = decode_ecm(step.payload).message.nonce  # type: ignore[union-attr]
        out = r.on_map_referral(replace(msg, nonce=nonce), ip_address(src), 0.1)
        if not out:
            break
        (step,) = out
        assert step.dst == ip_address("192.0.2.10")
    assert r.stats["answered"] == 1 and r.pending() == 0


def test_a_reload_keeps_the_referral_cache_and_takes_new_roots_and_settings() -> None:
    from lispd.config import parse_config
    from lispd.mapcache import LocalDatabase
    from lispd.node.build import build_control_plane
    from lispd.node.reload import update_control_plane

    def plane(roots: str, timeout: float) -> Any:
        text = (
            '[daemon]\nroles = ["map-resolver"]\n[underlay]\nrlocs = ["192.0.2.41"]\n'
            f"[ddt]\nroots = [{roots}]\nrequest-timeout = {timeout}\n"
        )
        return build_control_plane(parse_config(text), LocalDatabase(), lambda: 7)

    running = plane('"192.0.2.40"', 1.0)
    resolver = running.ddt_resolver
    resolver.cache.put(0, ip_network("198.51.100.0/24"), A.NODE_REFERRAL, (CHILD,), 10, ROOT, 0.0)
    update_control_plane(running, plane('"192.0.2.42", "192.0.2.40"', 0.3), 1.0)
    assert running.ddt_resolver is resolver and len(resolver.cache) == 1
    assert resolver.roots == (ROOT2, ROOT) and resolver.request_timeout == 0.3
