"""Unit tests of lispd.control.resolver: the ITR's Map-Request / Map-Reply machine.

No sockets: a fake clock (plain floats), a counting nonce source, and every message the resolver
sends decoded again with lispd.wire and checked field by field.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lispd.control.outputs import SendControl
from lispd.control.resolver import Resolver, ResolveResult, ResolverSettings
from lispd.mapcache import MapCacheEntry, RlocEntry
from lispd.wire.address import (
    NO_ADDRESS,
    AfiListAddress,
    DistinguishedName,
    InstanceIdAddress,
    MacAddress,
    UnknownLcaf,
)
from lispd.wire.ecm import EncapsulatedControl, decode_ecm
from lispd.wire.errors import WireError
from lispd.wire.ip import IPv4Header, IPv6Header
from lispd.wire.mapreply import MapReply, decode_map_reply, encode_map_reply
from lispd.wire.maprequest import MapRequest
from lispd.wire.records import Action, EidPrefix, EidRecord, Locator

MR1 = IPv4Address("192.0.2.10")
MR2 = IPv6Address("2001:db8::10")
MR3 = IPv4Address("192.0.2.11")
RLOC4 = IPv4Address("192.0.2.1")
RLOC6 = IPv6Address("2001:db8::1")
REMOTE_RLOC = IPv4Address("192.0.2.66")
REMOTE_RLOC6 = IPv6Address("2001:db8:0:2::66")
SRC = IPv4Address("198.51.100.1")  # our site 198.51.100.0/28
EID = IPv4Address("198.51.100.17")  # remote site 198.51.100.16/28
EID2 = IPv4Address("198.51.100.18")
SRC6 = IPv6Address("2001:db8:100:1::1")
EID6 = IPv6Address("2001:db8:100:2::5")
NONCE0 = 0x1000


def counting_rng(start: int = NONCE0) -> Callable[[], int]:
    """Nonces start, start+1, ..."""
    it = itertools.count(start)
    return lambda: next(it)


def make(
    settings: ResolverSettings | None = None,
    mrs: tuple = (MR1, MR2),
    rlocs: tuple = (RLOC4, RLOC6),
    **kw: object,
) -> Resolver:
    return Resolver(list(mrs), list(rlocs), settings or ResolverSettings(), counting_rng(), **kw)


def decode(send: SendControl) -> tuple[EncapsulatedControl, MapRequest]:
    assert send.port == 4342
    ecm = decode_ecm(send.payload)
    assert isinstance(ecm.message, MapRequest)
    return ecm, ecm.message


def nonce_of(send: SendControl) -> int:
    return decode(send)[1].nonce


def positive(
    eid: object = IPv4Network("198.51.100.16/28"),
    iid: int = 0,
    ttl: int = 1440,
    locators: tuple[Locator, ...] = (Locator(REMOTE_RLOC, 1, 100),),
) -> EidRecord:
    net = eid
    address = net.network_address if iid == 0 else InstanceIdAddress(iid, net.network_address)
    return EidRecord(address, net.prefixlen, locators, ttl=ttl, authoritative=True)


def reply(nonce: int, *records: EidRecord, probe: bool = False) -> MapReply:
    """A Map-Reply as it arrives: encoded and decoded again."""
    return decode_map_reply(encode_map_reply(MapReply(nonce, tuple(records), probe=probe)))


# --- sending ------------------------------------------------------------------------------------


def test_resolve_sends_an_ecm_map_request_to_the_first_map_resolver() -> None:
    r = make()
    sends = r.resolve(0, EID, SRC, now=0.0)
    assert len(sends) == 1
    send = sends[0]
    assert send.dst == MR1
    ecm, req = decode(send)
    assert not (ecm.ddt or ecm.to_etr or ecm.to_ms or ecm.rtr or ecm.relayed)
    assert ecm.reserved == 0
    assert isinstance(ecm.inner_ip, IPv4Header)
    assert ecm.inner_ip.src == SRC
    assert ecm.inner_ip.dst == EID
    assert (ecm.sport, ecm.dport) == (4342, 4342)
    assert req.nonce == NONCE0
    assert req.records == (EidPrefix(EID, 32),)
    assert req.itr_rlocs == (RLOC4, RLOC6)
    assert req.source_eid == SRC
    assert not (req.smr or req.smr_invoked or req.probe or req.authoritative or req.pitr)
    assert not (req.local_xtr or req.dont_map_reply)
    assert req.map_reply is None
    assert r.stats["requests-sent"] == 1
    assert r.is_pending(0, EID)
    [p] = r.pending()
    assert p == {
        "iid": 0,
        "eid": str(EID),
        "source-eid": str(SRC),
        "nonce": f"0x{NONCE0:016x}",
        "attempts": 1,
        "map-resolver": str(MR1),
        "started": 0.0,
        "next-retry": 1.0,
        "held": 0,
        "smr-invoked": False,
    }


def test_instance_id_and_ipv6_are_wrapped_and_local_port_is_the_inner_source_port() -> None:
    r = make(local_port=40000)
    [send] = r.resolve(7, EID6, SRC6, now=5.0)
    ecm, req = decode(send)
    assert isinstance(ecm.inner_ip, IPv6Header)
    assert (ecm.inner_ip.src, ecm.inner_ip.dst) == (SRC6, EID6)
    assert (ecm.sport, ecm.dport) == (40000, 4342)
    assert req.records == (EidPrefix(InstanceIdAddress(7, EID6), 128),)
    assert req.source_eid == InstanceIdAddress(7, SRC6)
    assert req.itr_rlocs == (RLOC4, RLOC6)


def test_inner_source_without_source_eid_is_our_rloc_of_the_eid_family() -> None:
    r = make()
    ecm, req = decode(r.resolve(0, EID, None, now=0.0)[0])
    assert ecm.inner_ip.src == RLOC4
    assert req.source_eid == NO_ADDRESS
    ecm, req = decode(r.resolve(0, EID6, None, now=0.0)[0])
    assert ecm.inner_ip.src == RLOC6
    assert req.source_eid == NO_ADDRESS


def test_inner_source_of_the_other_family_falls_back_to_an_rloc_or_unspecified() -> None:
    r = make()
    # A v4 source EID cannot go in the v6 inner header: our v6 RLOC does.  The Map-Request
    # still names the source EID.
    ecm, req = decode(r.resolve(0, EID6, SRC, now=0.0)[0])
    assert ecm.inner_ip.src == RLOC6
    assert req.source_eid == SRC
    # No v6 RLOC at all: the unspecified address.
    r4 = make(rlocs=(RLOC4,))
    ecm, req = decode(r4.resolve(0, EID6, None, now=0.0)[0])
    assert ecm.inner_ip.src == IPv6Address("::")
    assert req.itr_rlocs == (RLOC4,)


def test_already_pending_sends_nothing() -> None:
    r = make()
    assert len(r.resolve(0, EID, SRC, now=0.0)) == 1
    assert r.resolve(0, EID, SRC, now=0.1) == []
    assert r.stats["already-pending"] == 1
    # Same address in another instance is another lookup.
    assert len(r.resolve(3, EID, SRC, now=0.1)) == 1


def test_no_map_resolver_or_itr_rloc_refuses_lookups() -> None:
    r = make(mrs=())
    assert r.resolve(0, EID, SRC, now=0.0) == []
    assert r.stats["no-map-resolver"] == 1
    assert r.hold(0, EID, b"p", now=0.0) is False
    r = make(rlocs=())
    assert r.resolve(0, EID, SRC, now=0.0) == []
    assert r.stats["no-itr-rloc"] == 1


def test_bad_iid_is_counted_not_raised() -> None:
    r = make()
    assert r.resolve(1 << 24, EID, SRC, now=0.0) == []
    assert r.drops["bad-iid"] == 1


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        ResolverSettings(retry_interval=0)
    with pytest.raises(ValueError):
        ResolverSettings(retries=-1)
    with pytest.raises(ValueError):
        ResolverSettings(max_requests_per_second=0)
    with pytest.raises(ValueError):
        Resolver([MR1], [RLOC4] * 33)


# --- retransmission ------------------------------------------------------------------------------


def test_retries_back_off_exponentially_rotate_map_resolvers_then_give_up() -> None:
    r = make(ResolverSettings(queue_timeout=100.0))
    [first] = r.resolve(0, EID, SRC, now=0.0)
    assert r.hold(0, EID, b"pkt", now=0.0)
    assert r.next_deadline() == 1.0
    assert r.on_timer(0.999) == ([], 0)
    expected = [(1.0, MR2, 3.0), (3.0, MR1, 7.0), (7.0, MR2, 15.0)]
    for when, dst, next_deadline in expected:
        sends, dropped = r.on_timer(when)
        assert dropped == 0
        assert [s.dst for s in sends] == [dst]
        # Same Map-Request whatever the MR, but a fresh nonce per attempt (RFC 9301 5.2).
        assert decode(sends[0])[1] == replace(decode(first)[1], nonce=nonce_of(sends[0]))
        assert nonce_of(sends[0]) != nonce_of(first)
        assert r.next_deadline() == next_deadline
    assert r.pending()[0]["attempts"] == 4
    assert r.on_timer(14.9) == ([], 0)
    assert r.on_timer(15.0) == ([], 1)
    assert r.drops["resolve-timeout"] == 1
    assert r.stats["resolve-timeouts"] == 1
    assert r.stats["requests-sent"] == 4
    assert r.stats["retransmits"] == 3
    assert not r.is_pending(0, EID)
    assert r.held_total == 0
    assert r.next_deadline() is None
    # A reply that comes after giving up is not ours any more.
    result = r.on_map_reply(reply(NONCE0, positive()), REMOTE_RLOC, now=15.5)
    assert result == ResolveResult()
    assert r.drops["map-reply-unknown-nonce"] == 1


def test_retries_setting_and_interval_are_honoured() -> None:
    r = make(ResolverSettings(retries=1, retry_interval=0.5))
    r.resolve(0, EID, SRC, now=10.0)
    assert r.next_deadline() == 10.5
    sends, _ = r.on_timer(10.5)
    assert len(sends) == 1
    assert r.next_deadline() == 11.5
    assert r.on_timer(11.5) == ([], 0)
    assert not r.is_pending(0, EID)


def test_zero_retries_gives_up_after_one_interval() -> None:
    r = make(ResolverSettings(retries=0))
    r.resolve(0, EID, SRC, now=0.0)
    assert r.on_timer(1.0) == ([], 0)
    assert r.stats["resolve-timeouts"] == 1
    assert r.stats["requests-sent"] == 1


def test_late_timer_retransmits_once_and_backs_off_from_then() -> None:
    r = make()
    r.resolve(0, EID, SRC, now=0.0)
    sends, _ = r.on_timer(2.5)  # the daemon was late
    assert len(sends) == 1
    assert r.next_deadline() == 4.5


def test_map_resolver_that_answered_a_retransmission_is_tried_first_from_then_on() -> None:
    """MR1 down: the first lookup waits one interval for MR2; the next ones go to MR2 first."""
    r = make(mrs=(MR1, MR2, MR3))
    assert r.preferred_map_resolver == MR1
    [send] = r.resolve(0, EID, SRC, now=0.0)
    assert send.dst == MR1
    [retry], _ = r.on_timer(1.0)
    assert retry.dst == MR2
    assert r.on_map_reply(reply(nonce_of(retry), positive()), REMOTE_RLOC, now=1.1).installs
    assert r.preferred_map_resolver == MR2
    assert r.stats["map-resolver-switched"] == 1
    [send] = r.resolve(0, EID6, SRC6, now=2.0)
    assert send.dst == MR2
    # Should MR2 fail in turn, retries rotate on from it: MR3, then MR1.
    assert [s.dst for s in r.on_timer(3.0)[0]] == [MR3]
    [last] = r.on_timer(5.0)[0]
    assert last.dst == MR1
    assert r.pending()[0]["map-resolver"] == str(MR1)
    assert r.on_map_reply(reply(nonce_of(last), positive(IPv6Network("2001:db8:100:2::/64"))),
                          REMOTE_RLOC6, now=5.1).installs  # fmt: skip
    assert r.preferred_map_resolver == MR1
    assert r.stats["map-resolver-switched"] == 2


def test_a_first_attempt_answer_keeps_the_preferred_map_resolver() -> None:
    r = make()
    r.resolve(0, EID, SRC, now=0.0)
    r.on_map_reply(reply(NONCE0, positive()), REMOTE_RLOC, now=0.1)
    assert r.preferred_map_resolver == MR1
    assert r.stats["map-resolver-switched"] == 0
    [send] = r.resolve(0, EID6, SRC6, now=1.0)
    assert send.dst == MR1


def test_a_new_map_resolver_list_starts_again_from_its_first() -> None:
    r = make()
    r.resolve(0, EID, SRC, now=0.0)
    [retry], _ = r.on_timer(1.0)
    r.on_map_reply(reply(nonce_of(retry), positive()), REMOTE_RLOC, now=1.1)
    assert r.preferred_map_resolver == MR2
    r.set_map_resolvers([MR1, MR2])  # the same list (a reload that changed nothing): kept
    assert r.preferred_map_resolver == MR2
    r.set_map_resolvers([MR2, MR1])
    assert r.preferred_map_resolver == MR2  # now the first of the new list
    r.set_map_resolvers([MR1, MR2])
    assert r.preferred_map_resolver == MR1
    [send] = r.resolve(0, EID6, SRC6, now=3.0)
    assert send.dst == MR1
    r.set_map_resolvers([])
    assert r.preferred_map_resolver is None


# --- Map-Replies --------------------------------------------------------------------------------


def test_reply_installs_the_entry_and_releases_held_packets_in_order() -> None:
    r = make()
    r.resolve(0, EID, SRC, now=0.0)
    for i in range(3):
        assert r.hold(0, EID, b"pkt%d" % i, now=0.1 * i)
    assert r.held_total == 3
    result = r.on_map_reply(reply(NONCE0, positive()), REMOTE_RLOC, now=0.5)
    assert result.installs == [
        MapCacheEntry(
            0,
            IPv4Network("198.51.100.16/28"),
            (RlocEntry(REMOTE_RLOC, 1, 100, up=True),),
            "encapsulate",
            ttl=1440 * 60,
            created=0.5,
            source="map-reply",
        )
    ]
    assert result.installs[0].expires == 0.5 + 86400
    assert result.released == [(0, b"pkt0"), (0, b"pkt1"), (0, b"pkt2")]
    assert result.dropped == 0
    assert not r.is_pending(0, EID)
    assert r.held_total == 0
    assert r.next_deadline() is None
    assert r.stats["replies-accepted"] == 1
    assert r.stats["entries-installed"] == 1
    assert r.stats["packets-released"] == 3


def test_replayed_reply_after_completion_is_unknown() -> None:
    r = make()
    r.resolve(0, EID, SRC, now=0.0)
    msg = reply(NONCE0, positive())
    assert r.on_map_reply(msg, REMOTE_RLOC, now=0.2).installs
    assert r.on_map_reply(msg, REMOTE_RLOC, now=0.3) == ResolveResult()
    assert r.drops["map-reply-unknown-nonce"] == 1
    assert r.stats["replies-accepted"] == 1


def test_unknown_nonce_is_dropped_and_the_lookup_stays_pending() -> None:
    r = make()
    r.resolve(0, EID, SRC, now=0.0)
    r.hold(0, EID, b"p", now=0.0)
    assert r.on_map_reply(reply(NONCE0 + 99, positive()), REMOTE_RLOC, 0.1) == ResolveResult()
    assert r.drops["map-reply-unknown-nonce"] == 1
    assert r.is_pending(0, EID)
    assert r.held_total == 1


def test_probe_replies_are_not_for_the_resolver() -> None:
    r = make()
    r.resolve(0, EID, SRC, now=0.0)
    result = r.on_map_reply(reply(NONCE0, positive(), probe=True), REMOTE_RLOC, now=0.1)
    assert result == ResolveResult()
    assert r.drops["map-reply-probe"] == 1
    assert r.is_pending(0, EID)


def test_a_reply_answering_a_retransmission_is_accepted() -> None:
    r = make()
    r.resolve(0, EID, SRC, now=0.0)
    r.on_timer(1.0)
    assert r.on_map_reply(reply(NONCE0, positive()), REMOTE_RLOC, now=1.2).installs


@pytest.mark.parametrize(
    "record",
    [
        positive(IPv4Network("198.51.100.32/28")),  # does not cover the EID
        positive(IPv4Network("198.51.100.16/28"), iid=5),  # other instance
        positive(IPv6Network("::/0")),  # other family (covers nothing of IPv4)
        positive(IPv4Network("198.51.100.17/32"), iid=0xFFFFFFFF),  # iid beyond 24 bits
        EidRecord(MacAddress(b"\x02\x00\x00\x00\x00\x01"), 48),  # not an IP EID
        EidRecord(DistinguishedName("site-b"), 0),
    ],
)
def test_prefix_mismatch_installs_nothing_and_drops_the_held_packets(record: EidRecord) -> None:
    r = make()
    r.resolve(0, EID, SRC, now=0.0)
    r.hold(0, EID, b"p1", now=0.0)
    r.hold(0, EID, b"p2", now=0.0)
    result = r.on_map_reply(MapReply(NONCE0, (record,)), REMOTE_RLOC, now=0.1)
    assert result.installs == []
    assert result.released == []
    assert result.dropped == 2
    assert r.drops["map-reply-prefix-mismatch"] == 1
    assert r.drops["no-mapping"] == 2
    assert not r.is_pending(0, EID)
    assert r.held_total == 0


def test_only_the_covering_records_are_installed() -> None:
    r = make()
    r.resolve(0, EID, SRC, now=0.0)
    result = r.on_map_reply(
        reply(
            NONCE0,
            positive(IPv4Network("198.51.100.32/28")),
            positive(IPv4Network("198.51.100.0/24")),
            positive(IPv4Network("198.51.100.16/28")),
        ),
        REMOTE_RLOC,
        now=0.1,
    )
    assert [str(e.prefix) for e in result.installs] == ["198.51.100.0/24", "198.51.100.16/28"]
    assert r.drops["map-reply-prefix-mismatch"] == 1


def test_instance_id_records_must_match_the_requested_instance() -> None:
    r = make()
    r.resolve(7, EID6, SRC6, now=0.0)
    r.hold(7, EID6, b"v6", now=0.0)
    rec = positive(IPv6Network("2001:db8:100:2::/64"), iid=7, locators=(Locator(REMOTE_RLOC6),))
    result = r.on_map_reply(reply(NONCE0, rec), REMOTE_RLOC6, now=0.1)
    [entry] = result.installs
    assert (entry.iid, str(entry.prefix)) == (7, "2001:db8:100:2::/64")
    assert entry.rlocs == (RlocEntry(REMOTE_RLOC6, 1, 100),)
    assert result.released == [(7, b"v6")]


@pytest.mark.parametrize(
    ("record_ttl", "max_ttl", "seconds"),
    [
        (1440, 1440, 86400),
        (5000, 1440, 86400),
        (0xFFFFFFFF, 1440, 86400),
        (15, 10, 600),
        (1, 1440, 60),
    ],
)
def test_ttl_is_capped(record_ttl: int, max_ttl: int, seconds: int) -> None:
    r = make(ResolverSettings(max_ttl_minutes=max_ttl))
    r.resolve(0, EID, SRC, now=0.0)
    [entry] = r.on_map_reply(reply(NONCE0, positive(ttl=record_ttl)), REMOTE_RLOC, 2.0).installs
    assert entry.ttl == seconds
    assert entry.expires == 2.0 + seconds


def test_ttl_zero_caches_nothing_and_drops_held_packets() -> None:
    r = make()
    r.resolve(0, EID, SRC, now=0.0)
    r.hold(0, EID, b"a", now=0.0)
    r.hold(0, EID, b"b", now=0.1)
    result = r.on_map_reply(reply(NONCE0, positive(ttl=0)), REMOTE_RLOC, now=0.2)
    assert result.installs == []
    assert result.released == []
    assert result.dropped == 2
    assert r.drops["ttl-zero"] == 2
    assert not r.is_pending(0, EID)
    assert r.held_total == 0


@pytest.mark.parametrize(
    ("act", "expected"),
    [
        (Action.NO_ACTION, "no-action"),
        (Action.NATIVELY_FORWARD, "native-forward"),
        (Action.SEND_MAP_REQUEST, "send-map-request"),
        (Action.DROP, "drop"),
        (Action.DROP_POLICY_DENIED, "drop"),
        (Action.DROP_AUTH_FAILURE, "drop"),
        (Action.SEND_SUBSCRIBE, "drop"),
        (Action.NOT_REGISTERED, "drop"),
    ],
)
def test_negative_replies_install_their_action(act: Action, expected: str) -> None:
    r = make()
    r.resolve(0, EID, SRC, now=0.0)
    r.hold(0, EID, b"p", now=0.0)
    rec = EidRecord(IPv4Address("198.51.100.0"), 24, (), ttl=15, action=act)
    result = r.on_map_reply(reply(NONCE0, rec), MR1, now=1.0)
    [entry] = result.installs
    assert entry.negative
    assert entry.action == expected
    assert entry.ttl == 15 * 60
    assert str(entry.prefix) == "198.51.100.0/24"
    # The packets go back to the ITR, which applies the action.
    assert result.released == [(0, b"p")]


def test_unusable_locators_are_skipped_and_none_left_means_drop() -> None:
    r = make()
    r.resolve(0, EID, SRC, now=0.0)
    rec = positive(
        locators=(
            Locator(AfiListAddress((REMOTE_RLOC, REMOTE_RLOC6))),
            Locator(UnknownLcaf(99, b"\x01\x02")),
            Locator(IPv4Address("198.51.100.20")),  # inside the record's own EID-prefix: a loop
        )
    )
    [entry] = r.on_map_reply(MapReply(NONCE0, (rec,)), REMOTE_RLOC, 0.1).installs
    assert entry.rlocs == ()
    assert entry.action == "drop"
    assert r.drops["locator-unsupported"] == 2
    assert r.drops["locator-in-eid-prefix"] == 1


def test_locator_fields_are_copied_and_ip_locators_kept_among_others() -> None:
    r = make()
    r.resolve(0, EID, SRC, now=0.0)
    rec = positive(
        locators=(
            Locator(REMOTE_RLOC, priority=1, weight=30, reachable=False),
            Locator(UnknownLcaf(99, b"")),
            Locator(REMOTE_RLOC6, priority=2, weight=70),
            Locator(IPv4Address("192.0.2.99"), priority=255, weight=0),
        )
    )
    [entry] = r.on_map_reply(reply(NONCE0, rec), REMOTE_RLOC, 0.1).installs
    assert entry.rlocs == (
        RlocEntry(REMOTE_RLOC, 1, 30, up=False),
        RlocEntry(REMOTE_RLOC6, 2, 70, up=True),
        RlocEntry(IPv4Address("192.0.2.99"), 255, 0, up=True),
    )
    assert r.drops["locator-unsupported"] == 1


def test_a_covering_prefix_releases_every_covered_lookup_in_arrival_order() -> None:
    r = make()
    [s1] = r.resolve(0, EID, SRC, now=0.0)
    [s2] = r.resolve(0, EID2, SRC, now=0.0)
    [s3] = r.resolve(4, EID2, SRC, now=0.0)  # same address, other instance: not covered
    r.hold(0, EID, b"e1-a", now=0.0)
    r.hold(0, EID2, b"e2-a", now=0.1)
    r.hold(4, EID2, b"other-iid", now=0.15)
    r.hold(0, EID, b"e1-b", now=0.2)
    r.hold(0, EID2, b"e2-b", now=0.3)
    result = r.on_map_reply(reply(nonce_of(s1), positive()), REMOTE_RLOC, now=0.4)
    assert result.released == [(0, b"e1-a"), (0, b"e2-a"), (0, b"e1-b"), (0, b"e2-b")]
    assert not r.is_pending(0, EID)
    assert not r.is_pending(0, EID2)
    assert r.is_pending(4, EID2)
    assert r.held_total == 1
    # EID2's own reply, arriving later, is no longer expected.
    late = r.on_map_reply(reply(nonce_of(s2), positive()), REMOTE_RLOC, now=0.5)
    assert late == ResolveResult()
    assert r.drops["map-reply-unknown-nonce"] == 1
    rec = positive(iid=4)
    assert r.on_map_reply(reply(nonce_of(s3), rec), REMOTE_RLOC, 0.6).released == [
        (4, b"other-iid")
    ]


def test_reply_without_records_completes_the_lookup() -> None:
    r = make()
    r.resolve(0, EID, SRC, now=0.0)
    r.hold(0, EID, b"p", now=0.0)
    result = r.on_map_reply(reply(NONCE0), REMOTE_RLOC, now=0.1)
    assert result == ResolveResult([], [], 1)
    assert r.drops["no-mapping"] == 1


# --- holding packets ----------------------------------------------------------------------------


def test_hold_needs_a_pending_lookup() -> None:
    r = make()
    assert r.hold(0, EID, b"p", now=0.0) is False
    assert r.stats["packets-held"] == 0


def test_queue_limit_per_entry() -> None:
    r = make(ResolverSettings(queue_per_entry=2))
    r.resolve(0, EID, SRC, now=0.0)
    assert r.hold(0, EID, b"1", now=0.0)
    assert r.hold(0, EID, b"2", now=0.0)
    assert not r.hold(0, EID, b"3", now=0.0)
    assert r.pending()[0]["held"] == 2


def test_queue_limit_total() -> None:
    r = make(ResolverSettings(queue_per_entry=10, queue_total=3))
    r.resolve(0, EID, SRC, now=0.0)
    r.resolve(0, EID2, SRC, now=0.0)
    assert r.hold(0, EID, b"1", now=0.0)
    assert r.hold(0, EID2, b"2", now=0.0)
    assert r.hold(0, EID, b"3", now=0.0)
    assert not r.hold(0, EID2, b"4", now=0.0)
    assert r.held_total == 3
    # Space comes back when a lookup completes.
    r.on_map_reply(reply(NONCE0, positive(IPv4Network("198.51.100.17/32"))), REMOTE_RLOC, 0.1)
    assert r.held_total == 1
    assert r.hold(0, EID2, b"4", now=0.2)


def test_held_packets_time_out() -> None:
    r = make(ResolverSettings(retry_interval=10.0, queue_timeout=3.0))
    r.resolve(0, EID, SRC, now=0.0)
    r.hold(0, EID, b"old", now=0.0)
    r.hold(0, EID, b"new", now=2.0)
    assert r.next_deadline() == 3.0
    assert r.on_timer(2.99) == ([], 0)
    assert r.on_timer(3.0) == ([], 1)
    assert r.drops["queue-timeout"] == 1
    assert r.next_deadline() == 5.0
    assert r.on_timer(5.0) == ([], 1)
    assert r.held_total == 0
    assert r.next_deadline() == 10.0  # back to the retry
    assert r.is_pending(0, EID)
    # A packet held later still comes out when the answer arrives.
    r.hold(0, EID, b"later", now=6.0)
    assert r.next_deadline() == 9.0
    result = r.on_map_reply(reply(NONCE0, positive()), REMOTE_RLOC, now=7.0)
    assert result.released == [(0, b"later")]


def test_hold_copies_the_packet() -> None:
    r = make()
    r.resolve(0, EID, SRC, now=0.0)
    buf = bytearray(b"abc")
    r.hold(0, EID, buf, now=0.0)  # type: ignore[arg-type]
    buf[0] = ord("x")
    result = r.on_map_reply(reply(NONCE0, positive()), REMOTE_RLOC, now=0.1)
    assert result.released == [(0, b"abc")]


# --- rate limits --------------------------------------------------------------------------------


def test_per_eid_minimum_interval_after_a_finished_lookup() -> None:
    r = make(ResolverSettings(min_request_interval=1.0))
    r.resolve(0, EID, SRC, now=0.0)
    r.on_map_reply(reply(NONCE0, positive(ttl=0)), REMOTE_RLOC, now=0.5)
    assert r.resolve(0, EID, SRC, now=1.0) == []
    assert r.stats["rate-limited-eid"] == 1
    assert r.hold(0, EID, b"p", now=1.0) is False
    assert len(r.resolve(0, EID2, SRC, now=1.0)) == 1  # other EIDs are not held back
    assert len(r.resolve(0, EID, SRC, now=1.5)) == 1


def test_per_eid_minimum_interval_after_giving_up() -> None:
    r = make(ResolverSettings(retries=0, min_request_interval=2.0))
    r.resolve(0, EID, SRC, now=0.0)
    r.on_timer(1.0)  # gives up
    assert r.resolve(0, EID, SRC, now=2.9) == []
    assert len(r.resolve(0, EID, SRC, now=3.0)) == 1


def test_global_token_bucket() -> None:
    r = make(ResolverSettings(max_requests_per_second=2.0))
    eids = [IPv4Address(f"198.51.100.{i}") for i in range(20, 30)]
    assert len(r.resolve(0, eids[0], SRC, now=0.0)) == 1
    assert len(r.resolve(0, eids[1], SRC, now=0.0)) == 1
    assert r.resolve(0, eids[2], SRC, now=0.0) == []
    assert r.stats["rate-limited-global"] == 1
    assert not r.is_pending(0, eids[2])
    assert len(r.resolve(0, eids[2], SRC, now=0.5)) == 1
    assert r.resolve(0, eids[3], SRC, now=0.5) == []
    # Retransmissions are not charged to the bucket.
    sends, _ = r.on_timer(1.0)
    assert len(sends) == 2
    assert len(r.resolve(0, eids[3], SRC, now=1.0)) == 1


def test_rng_collisions_refuse_the_lookup() -> None:
    r = Resolver([MR1], [RLOC4], ResolverSettings(), lambda: 42)
    assert len(r.resolve(0, EID, SRC, now=0.0)) == 1
    assert r.resolve(0, EID2, SRC, now=0.0) == []
    assert r.stats["nonce-collision"] == 1


def test_nonces_are_64_bit() -> None:
    r = Resolver([MR1], [RLOC4], ResolverSettings(), lambda: (1 << 70) + 5)
    assert nonce_of(r.resolve(0, EID, SRC, now=0.0)[0]) == 5


# --- SMR ----------------------------------------------------------------------------------------


def smr(source_eid: object, *, smr_bit: bool = True) -> MapRequest:
    return MapRequest(
        nonce=0xABCDEF,
        records=(EidPrefix(SRC, 32),),  # our EID, as cached by the sender
        itr_rlocs=(REMOTE_RLOC,),
        source_eid=source_eid,  # type: ignore[arg-type]
        smr=smr_bit,
    )


def test_smr_re_resolves_its_source_eid_through_the_map_resolver() -> None:
    r = make()
    [send] = r.on_smr(smr(InstanceIdAddress(7, EID)), REMOTE_RLOC, now=0.0)
    assert send.dst == MR1  # never to the SMR's sender
    ecm, req = decode(send)
    assert req.smr_invoked
    assert not req.smr
    assert req.records == (EidPrefix(InstanceIdAddress(7, EID), 32),)
    assert req.source_eid == NO_ADDRESS
    assert req.itr_rlocs == (RLOC4, RLOC6)
    assert (ecm.inner_ip.src, ecm.inner_ip.dst) == (RLOC4, EID)
    assert r.is_pending(7, EID)
    assert r.pending()[0]["smr-invoked"] is True
    assert r.stats["smr-received"] == 1
    assert r.stats["smr-invoked-requests"] == 1
    # The retransmission keeps the s bit.
    sends, _ = r.on_timer(1.0)
    assert decode(sends[0])[1].smr_invoked


def test_smr_is_rate_limited_like_any_lookup() -> None:
    r = make()
    assert len(r.on_smr(smr(EID), REMOTE_RLOC, now=0.0)) == 1
    assert r.on_smr(smr(EID), REMOTE_RLOC, now=0.1) == []  # pending
    r.on_map_reply(reply(NONCE0, positive()), REMOTE_RLOC, now=0.2)
    assert r.on_smr(smr(EID), REMOTE_RLOC, now=0.3) == []  # too soon
    assert r.stats["rate-limited-eid"] == 1
    assert len(r.on_smr(smr(EID), REMOTE_RLOC, now=1.2)) == 1


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (smr(EID, smr_bit=False), "smr-not-smr"),
        (smr(NO_ADDRESS), "smr-bad-source-eid"),
        (smr(MacAddress(b"\x02" * 6)), "smr-bad-source-eid"),
        (smr(InstanceIdAddress(1 << 24, EID)), "smr-bad-iid"),
        (smr(InstanceIdAddress(3, InstanceIdAddress(4, EID))), "smr-bad-source-eid"),
    ],
)
def test_smr_garbage_is_counted(request_: MapRequest, reason: str) -> None:
    r = make()
    assert r.on_smr(request_, REMOTE_RLOC, now=0.0) == []
    assert r.drops[reason] == 1
    assert r.pending() == []


# --- robustness ---------------------------------------------------------------------------------

ip4 = st.integers(0, 2**32 - 1).map(IPv4Address)
ip6 = st.integers(0, 2**128 - 1).map(IPv6Address)
near_v4 = st.integers(0, 31).map(lambda i: IPv4Address(f"198.51.100.{i}"))
plain = st.one_of(near_v4, ip4, ip6)
addresses = st.one_of(
    plain,
    st.builds(InstanceIdAddress, st.sampled_from([0, 4, 7, 1 << 24]), plain),
    st.just(NO_ADDRESS),
    st.builds(UnknownLcaf, st.integers(0, 255), st.binary(max_size=8)),
    st.builds(AfiListAddress, st.tuples(plain, plain)),
)
locators = st.builds(
    Locator,
    addresses,
    st.integers(0, 255),
    st.integers(0, 255),
    reachable=st.booleans(),
)
records = st.builds(
    EidRecord,
    addresses,
    st.integers(0, 255),
    st.lists(locators, max_size=4).map(tuple),
    ttl=st.sampled_from([0, 1, 15, 1440, 99999, 0xFFFFFFFF]),
    action=st.sampled_from(list(Action)),
)


def busy_resolver() -> Resolver:
    r = make(ResolverSettings(queue_per_entry=3, queue_total=5))
    for i, eid in enumerate([EID, EID2, IPv4Address("198.51.100.3")]):
        r.resolve(0, eid, SRC, now=0.0)
        r.hold(0, eid, b"p%d" % i, now=0.0)
    r.resolve(7, EID, None, now=0.0)
    r.resolve(7, EID6, SRC6, now=0.0)
    r.hold(7, EID6, b"v6", now=0.0)
    return r


def check_invariants(r: Resolver) -> None:
    held = sum(p["held"] for p in r.pending())  # type: ignore[misc]
    assert held == r.held_total >= 0
    deadline = r.next_deadline()
    assert (deadline is None) == (not r.pending())


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    nonce=st.one_of(st.integers(NONCE0, NONCE0 + 6), st.integers(0, 2**64 - 1)),
    recs=st.lists(records, max_size=4),
    probe=st.booleans(),
)
def test_random_map_replies_never_raise(nonce: int, recs: list[EidRecord], probe: bool) -> None:
    r = busy_resolver()
    result = r.on_map_reply(MapReply(nonce, tuple(recs), probe=probe), REMOTE_RLOC, now=0.5)
    assert isinstance(result, ResolveResult)
    for entry in result.installs:
        assert entry.ttl is not None and entry.ttl <= 1440 * 60
        assert entry.ttl > 0
    check_invariants(r)
    r.on_timer(100.0)
    check_invariants(r)


GOOD_REPLY = encode_map_reply(
    MapReply(
        NONCE0,
        (
            positive(),
            positive(IPv6Network("2001:db8:100:2::/64"), iid=7, locators=(Locator(RLOC6),)),
        ),
    )
)


@settings(max_examples=300)
@given(
    edits=st.lists(st.tuples(st.integers(0, len(GOOD_REPLY) - 1), st.integers(0, 255)), max_size=6),
    cut=st.one_of(st.just(len(GOOD_REPLY)), st.integers(0, len(GOOD_REPLY))),
)
def test_mutated_map_reply_bytes_never_raise(edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(GOOD_REPLY)
    for pos, value in edits:
        data[pos] = value
    try:
        msg = decode_map_reply(bytes(data[:cut]))
    except WireError:
        return
    r = busy_resolver()
    r.on_map_reply(msg, REMOTE_RLOC, now=0.5)
    check_invariants(r)


@settings(max_examples=200)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["resolve", "hold", "reply", "timer", "smr"]),
            st.sampled_from([EID, EID2, EID6]),
            st.floats(0.0, 2.0),
            st.integers(0, 8),
        ),
        max_size=40,
    )
)
def test_random_interleavings_keep_the_books_straight(
    ops: list[tuple[str, IPv4Address | IPv6Address, float, int]],
) -> None:
    r = make(ResolverSettings(queue_per_entry=3, queue_total=4, max_requests_per_second=3.0))
    now = 0.0
    for op, eid, step, k in ops:
        now += step
        if op == "resolve":
            r.resolve(0, eid, None, now)
        elif op == "hold":
            r.hold(0, eid, b"x", now)
        elif op == "reply":
            net = IPv4Network("198.51.100.16/28") if eid.version == 4 else IPv6Network("::/0")
            r.on_map_reply(reply(NONCE0 + k, positive(net, ttl=k % 3)), REMOTE_RLOC, now)
        elif op == "smr":
            r.on_smr(smr(eid), REMOTE_RLOC, now)
        else:
            deadline = r.next_deadline()
            if deadline is not None:
                now = max(now, deadline)
            r.on_timer(now)
        check_invariants(r)
    for _ in range(20):
        deadline = r.next_deadline()
        if deadline is None:
            break
        r.on_timer(deadline)
        check_invariants(r)
    assert r.pending() == []
    assert r.held_total == 0


# --- issue 21: the PITR bit and a fresh nonce per retransmission -------------------------------


def test_pitr_map_requests_carry_the_pitr_bit_and_itr_ones_do_not() -> None:
    """RFC 9301 section 5.2 (Map-Request header ``p`` bit): the PITR bit is set to 1 when the
    Map-Request is sent by a PITR, and only then; first attempts and retransmissions alike."""
    pitr = make(pitr=True)
    [first] = pitr.resolve(0, EID, None, now=0.0)
    [retry], _ = pitr.on_timer(1.0)
    assert decode(first)[1].pitr and decode(retry)[1].pitr
    [itr_send] = make().resolve(0, EID, SRC, now=0.0)
    assert not decode(itr_send)[1].pitr


def test_node_roles_decide_the_pitr_bit() -> None:
    """RFC 9301 section 5.2, through :class:`lispd.node.Node`: a node with the ``pitr`` role
    sends Map-Requests with the PITR bit; an ITR's have it clear."""
    from lispd.config import parse_config
    from lispd.node import Node
    from tests import configs

    def first_request(doc: dict[str, object]) -> MapRequest:
        node = Node(parse_config(configs.toml(doc)), 0.0)
        resolver = node.control.resolver
        assert resolver is not None
        [send] = resolver.resolve(0, IPv4Address("198.51.100.200"), None, now=1.0)
        return decode(send)[1]

    assert first_request(configs.pxtr()).pitr
    itr = configs.xtr(probing={"map-cache": False}, map_resolver=configs.addresses("192.0.2.10"))
    assert not first_request(itr).pitr


def test_each_retransmission_carries_a_fresh_nonce() -> None:
    """RFC 9301 section 5.2: the nonce is a random value the Map-Request's sender makes (from a
    properly seeded pseudo-random source); nothing ties a retransmission to the first nonce,
    so each attempt draws its own from the resolver's rng."""
    r = make()
    sends = r.resolve(0, EID, SRC, now=0.0)
    for when in (1.0, 3.0, 7.0):
        sends += r.on_timer(when)[0]
    nonces = [nonce_of(s) for s in sends]
    assert nonces == [NONCE0, NONCE0 + 1, NONCE0 + 2, NONCE0 + 3]
    assert r.pending()[0]["nonce"] == f"0x{NONCE0 + 3:016x}"  # the latest attempt's


@pytest.mark.parametrize("attempt", [0, 1, 2])
def test_a_reply_to_any_attempt_resolves_the_lookup(attempt: int) -> None:
    """RFC 9301 section 5.3: a Map-Reply is successful when its nonce matches that of an
    outstanding Map-Request; every attempt of a pending lookup is outstanding, so a late
    answer to the first attempt still resolves it."""
    r = make()
    sends = r.resolve(0, EID, SRC, now=0.0)
    sends += r.on_timer(1.0)[0]
    sends += r.on_timer(3.0)[0]
    r.hold(0, EID, b"pkt", now=3.0)
    result = r.on_map_reply(reply(nonce_of(sends[attempt]), positive()), REMOTE_RLOC, now=3.5)
    assert result.installs and result.released == [(0, b"pkt")]
    assert not r.is_pending(0, EID)
    assert r.drops["map-reply-unknown-nonce"] == 0
    # The Map-Resolver the answered attempt went to becomes the preferred one.
    assert r.preferred_map_resolver == sends[attempt].dst
    # All its nonces are forgotten with the lookup: late replies to any attempt are unknown.
    for send in sends:
        assert r.on_map_reply(reply(nonce_of(send), positive()), REMOTE_RLOC, 4.0) == (
            ResolveResult()
        )
    assert r.drops["map-reply-unknown-nonce"] == len(sends)
    assert r._by_nonce == {}


def test_a_nonce_of_no_attempt_is_refused_and_given_up_lookups_forget_theirs() -> None:
    """RFC 9301 section 5.3: only a nonce of an outstanding Map-Request makes a Map-Reply
    successful; one of no attempt is refused, and so are a given-up lookup's old nonces."""
    r = make(ResolverSettings(retries=1))
    sends = r.resolve(0, EID, SRC, now=0.0)
    sends += r.on_timer(1.0)[0]
    assert r.on_map_reply(reply(NONCE0 + 50, positive()), REMOTE_RLOC, 1.5) == ResolveResult()
    assert r.drops["map-reply-unknown-nonce"] == 1
    assert r.is_pending(0, EID)
    r.on_timer(3.0)  # gives up
    assert not r.is_pending(0, EID)
    for send in sends:
        assert r.on_map_reply(reply(nonce_of(send), positive()), REMOTE_RLOC, 3.5) == (
            ResolveResult()
        )
    assert r.drops["map-reply-unknown-nonce"] == 3


def test_a_retransmission_reuses_its_nonce_when_the_rng_collides() -> None:
    """RFC 9301 section 5.2 asks for a random nonce; should the rng repeat one in use, the
    retransmission keeps the lookup's own latest nonce rather than taking another's."""
    r = Resolver([MR1], [RLOC4], ResolverSettings(), lambda: 42)
    [first] = r.resolve(0, EID, SRC, now=0.0)
    [retry], _ = r.on_timer(1.0)
    assert nonce_of(retry) == nonce_of(first) == 42
    assert r.stats["nonce-reused"] == 1
    assert r.on_map_reply(reply(42, positive()), REMOTE_RLOC, 1.5).installs
