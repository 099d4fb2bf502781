"""The Map-Resolver: negative replies (prefix computation, actions, TTLs) and delegation to the
Map-Server, wired in memory through wire bytes with an injected clock."""

from __future__ import annotations

import logging
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lispd.control.mapresolver import (
    DEFAULT_NEGATIVE_TTL_MINUTES,
    UNREGISTERED_TTL_MINUTES,
    MapResolver,
)
from lispd.control.mapserver import MapServer, SitePrefixSpec, SiteSpec
from lispd.control.plane import ControlPlane
from lispd.wire.address import DistinguishedName, InstanceIdAddress, MacAddress
from lispd.wire.data import LISP_CONTROL_PORT
from lispd.wire.ecm import EncapsulatedControl, decode_ecm, encode_ecm
from lispd.wire.ip import IPv4Header, IPv6Header
from lispd.wire.mapregister import MapNotify, MapRegister, decode_map_register, encode_signed
from lispd.wire.mapreply import MapReply, decode_map_reply
from lispd.wire.maprequest import MapRequest
from lispd.wire.records import Action, EidPrefix, EidRecord, Locator

KEY = b"resolver test key"
ETR = IPv4Address("192.0.2.1")
ETR6 = IPv6Address("2001:db8::1")
ITR = IPv4Address("192.0.2.9")
ITR6 = IPv6Address("2001:db8::9")
ITR_PORT = 50123


def site(name: str, *prefixes: tuple[int, str] | tuple[int, str, bool]) -> SiteSpec:
    specs = tuple(
        SitePrefixSpec(p[0], ip_network(p[1]), accept_more_specifics=bool(p[2:] and p[2]))
        for p in prefixes
    )
    return SiteSpec(name, KEY, specs)


def register(ms: MapServer, iid: int, prefix: str, now: float = 0.0, **flags) -> None:
    net = ip_network(prefix)
    eid = net.network_address if iid == 0 else InstanceIdAddress(iid, net.network_address)
    rloc = ETR if net.version == 4 else ETR6
    rec = EidRecord(eid=eid, mask_len=net.prefixlen, locators=(Locator(rloc),))
    raw = encode_signed(
        MapRegister(nonce=hash((iid, prefix)) & 0xFFFF, records=(rec,), **flags), KEY
    )
    ms.on_map_register(raw, decode_map_register(raw), rloc, LISP_CONTROL_PORT, now)
    assert ms.lookup(iid, net.network_address) is not None, ms.drops


def ecm_bytes(
    eid: str,
    iid: int = 0,
    *,
    itr_rlocs=(ITR,),
    nonce: int = 0xC0FFEE,
    sport: int = ITR_PORT,
    **ecm_kw,
) -> bytes:
    """What an ITR sends to its Map-Resolver for ``eid``."""
    addr = ip_address(eid)
    wire_eid = addr if iid == 0 else InstanceIdAddress(iid, addr)
    req = MapRequest(
        nonce=nonce,
        records=(EidPrefix(wire_eid, addr.max_prefixlen),),
        itr_rlocs=tuple(itr_rlocs),
    )
    if addr.version == 4:
        inner: IPv4Header | IPv6Header = IPv4Header(IPv4Address("198.51.100.1"), addr)
    else:
        inner = IPv6Header(IPv6Address("2001:db8:100::1"), addr)
    return encode_ecm(EncapsulatedControl(inner, sport, LISP_CONTROL_PORT, req, **ecm_kw))


def resolve(mr: MapResolver, eid: str, iid: int = 0, now: float = 1.0, **kw) -> MapReply:
    """Send a request through bytes and return the single Map-Reply the resolver answers."""
    out = mr.on_ecm(decode_ecm(ecm_bytes(eid, iid, **kw)), now)
    assert len(out) == 1, (out, mr.drops, mr.map_server.drops)
    send = out[0]
    assert send.port == kw.get("sport", ITR_PORT)
    return decode_map_reply(send.payload)


def only_record(reply: MapReply) -> EidRecord:
    (rec,) = reply.records
    return rec


def record_prefix(rec: EidRecord):
    eid = rec.eid.address if isinstance(rec.eid, InstanceIdAddress) else rec.eid
    return ip_network((eid, rec.mask_len))


@pytest.fixture
def two_sites() -> MapResolver:
    """Sites 198.51.100.0/28 and 198.51.100.16/28, both registered; a v6 /64 registered."""
    ms = MapServer(
        [
            site("a", (0, "198.51.100.0/28"), (0, "2001:db8:100::/64")),
            site("b", (0, "198.51.100.16/28")),
        ]
    )
    register(ms, 0, "198.51.100.0/28")
    register(ms, 0, "198.51.100.16/28")
    register(ms, 0, "2001:db8:100::/64")
    return MapResolver(ms)


# --- negative replies -------------------------------------------------------------------------


def test_negative_reply_between_registered_prefixes(two_sites: MapResolver) -> None:
    reply = resolve(two_sites, "198.51.100.40", nonce=0x1234)
    assert reply.nonce == 0x1234 and not reply.probe
    rec = only_record(reply)
    assert rec.eid == IPv4Address("198.51.100.32") and rec.mask_len == 27
    assert rec.locators == ()
    assert rec.action == Action.NATIVELY_FORWARD
    assert rec.ttl == DEFAULT_NEGATIVE_TTL_MINUTES == 15
    assert not rec.authoritative
    assert two_sites.stats == {"negative": 1}


def test_negative_reply_is_sent_to_the_itr_rloc_and_port(two_sites: MapResolver) -> None:
    raw = ecm_bytes("198.51.100.40", itr_rlocs=(DistinguishedName("x"), ITR6, ITR), sport=40000)
    out = two_sites.on_ecm(decode_ecm(raw), 0.0)
    assert [(s.dst, s.port) for s in out] == [(ITR, 40000)]


def test_negative_reply_far_from_eid_space() -> None:
    ms = MapServer([site("a", (0, "198.51.100.0/24"))])
    register(ms, 0, "198.51.100.0/24")
    mr = MapResolver(ms, negative_ttl_minutes=5)
    rec = only_record(resolve(mr, "203.0.113.5"))
    # 203 = 0b11001011 and 198 = 0b11000110 share their first 4 bits: the /5 around 203.0.113.5
    # is the largest prefix that does not reach into 198.51.100.0/24.
    assert record_prefix(rec) == ip_network("200.0.0.0/5")
    assert rec.ttl == 5 and rec.action == Action.NATIVELY_FORWARD
    assert record_prefix(rec) == brute_force_uncovered(
        ip_address("203.0.113.5"), ["198.51.100.0/24"]
    )


def test_negative_reply_ipv6(two_sites: MapResolver) -> None:
    rec = only_record(resolve(two_sites, "2001:db8:200::1", itr_rlocs=(ITR6,)))
    # 2001:db8:200:: and 2001:db8:100:: first differ at bit 38
    assert record_prefix(rec) == ip_network("2001:db8:200::/39")
    assert rec.eid == IPv6Address("2001:db8:200::")
    rec = only_record(resolve(two_sites, "2001:db8:100:1::1", itr_rlocs=(ITR6,)))
    assert record_prefix(rec) == ip_network("2001:db8:100:1::/64")


def test_empty_instance_yields_the_whole_space_with_the_iid(two_sites: MapResolver) -> None:
    rec = only_record(resolve(two_sites, "198.51.100.1", iid=7))
    assert rec.eid == InstanceIdAddress(7, IPv4Address("0.0.0.0")) and rec.mask_len == 0
    rec = only_record(resolve(two_sites, "2001:db8:100::1", iid=7))
    assert rec.eid == InstanceIdAddress(7, IPv6Address("::")) and rec.mask_len == 0
    # ... while instance 0 answers from its registrations
    assert two_sites.stats["negative"] == 2


def test_instance_scoping_of_the_negative_prefix() -> None:
    ms = MapServer([site("a", (7, "198.51.100.0/28")), site("b", (0, "198.51.100.128/25"))])
    register(ms, 7, "198.51.100.0/28")
    register(ms, 0, "198.51.100.128/25")
    mr = MapResolver(ms)
    rec = only_record(resolve(mr, "198.51.100.40", iid=7))
    assert rec.eid == InstanceIdAddress(7, IPv4Address("198.51.100.32")) and rec.mask_len == 27
    rec = only_record(resolve(mr, "198.51.100.40", iid=0))
    assert rec.eid == IPv4Address("198.51.100.0") and rec.mask_len == 25
    # the registered [7] prefix is answered by the Map-Server (forwarded to the ETR)
    out = mr.on_ecm(decode_ecm(ecm_bytes("198.51.100.3", iid=7)), 0.0)
    assert [(s.dst, s.port) for s in out] == [(ETR, LISP_CONTROL_PORT)]


def test_configured_but_unregistered_site_prefix() -> None:
    ms = MapServer(
        [
            site("a", (0, "198.51.100.0/28")),
            site("c", (0, "198.51.100.64/26", True)),
        ]
    )
    register(ms, 0, "198.51.100.0/28")
    mr = MapResolver(ms)
    rec = only_record(resolve(mr, "198.51.100.70"))
    assert record_prefix(rec) == ip_network("198.51.100.64/26")
    assert rec.action == Action.SEND_MAP_REQUEST
    assert rec.ttl == UNREGISTERED_TTL_MINUTES == 1
    assert rec.locators == () and not rec.authoritative
    assert mr.stats == {"negative": 1, "negative-unregistered": 1}
    # a more-specific of the site registered: the answer stays clear of it
    register(ms, 0, "198.51.100.64/28")
    rec = only_record(resolve(mr, "198.51.100.100"))
    assert record_prefix(rec) == ip_network("198.51.100.96/27")
    assert rec.action == Action.SEND_MAP_REQUEST
    rec = only_record(resolve(mr, "198.51.100.85"))
    assert record_prefix(rec) == ip_network("198.51.100.80/28")
    # outside every site prefix: native space, clear of the configured /26 too
    rec = only_record(resolve(mr, "198.51.100.40"))
    assert record_prefix(rec) == ip_network("198.51.100.32/27")
    assert rec.action == Action.NATIVELY_FORWARD


def test_site_prefix_becomes_unregistered_after_expiry() -> None:
    ms = MapServer([site("a", (0, "198.51.100.0/28"))], registration_timeout=60.0)
    register(ms, 0, "198.51.100.0/28", now=0.0)
    mr = MapResolver(ms)
    out = mr.on_ecm(decode_ecm(ecm_bytes("198.51.100.1")), 30.0)
    assert out[0].dst == ETR  # forwarded
    rec = only_record(resolve(mr, "198.51.100.1", now=61.0))
    assert record_prefix(rec) == ip_network("198.51.100.0/28")
    assert rec.action == Action.SEND_MAP_REQUEST


# --- delegation to the Map-Server -------------------------------------------------------------


def test_registered_eid_is_answered_or_forwarded_by_the_map_server() -> None:
    ms = MapServer([site("a", (0, "198.51.100.0/28")), site("b", (0, "198.51.100.16/28"))])
    register(ms, 0, "198.51.100.0/28", proxy_reply=True)
    register(ms, 0, "198.51.100.16/28")
    mr = MapResolver(ms)
    reply = resolve(mr, "198.51.100.5", nonce=77)
    rec = only_record(reply)
    assert reply.nonce == 77 and record_prefix(rec) == ip_network("198.51.100.0/28")
    assert [loc.address for loc in rec.locators] == [ETR] and rec.ttl == 1440
    out = mr.on_ecm(decode_ecm(ecm_bytes("198.51.100.20")), 0.0)
    assert [(s.dst, s.port) for s in out] == [(ETR, LISP_CONTROL_PORT)]
    forwarded = decode_ecm(out[0].payload)
    assert forwarded.to_etr and forwarded.message.nonce == 0xC0FFEE
    assert mr.stats == {"answered": 1, "forwarded": 1}


# --- refusals ---------------------------------------------------------------------------------


def test_requests_are_answered_at_a_bounded_rate_per_source(two_sites: MapResolver) -> None:
    """A flood from one (spoofed) source naming a victim as ITR-RLOC: the first ``burst`` and
    then ``rate`` a second are answered, the rest dropped and counted; other sources and the
    source once its bucket refilled are answered as usual (regression: no limit at all)."""
    mr = MapResolver(two_sites.map_server, rate=10.0, burst=20.0)
    flooder, victim, other = IPv4Address("192.0.2.90"), IPv4Address("192.0.2.91"), ITR
    ecm = decode_ecm(ecm_bytes("203.0.113.7", itr_rlocs=(victim,)))
    answered = 0
    for k in range(1000):  # 1000 requests in one second
        answered += len(mr.on_ecm(ecm, k / 1000, flooder))
    assert 20 <= answered <= 20 + 10 + 1
    assert mr.drops == {"request-rate-limited": 1000 - answered}
    assert mr.stats["negative"] == answered
    assert len(mr.on_ecm(ecm, 1.0, other)) == 1  # another source has its own bucket
    assert len(mr.on_ecm(ecm, 3.0, flooder)) == 1  # refilled
    registered = decode_ecm(ecm_bytes("198.51.100.5", itr_rlocs=(victim,)))
    for _ in range(30):  # proxy replies and forwards count against the same bucket
        mr.on_ecm(registered, 3.0, flooder)
    assert mr.drops["request-rate-limited"] == 1000 - answered + 30 - 19
    assert mr.on_ecm(ecm, 4.0) != []  # without a source (in-process callers): no limit


def test_control_plane_limits_by_the_outer_source(two_sites: MapResolver) -> None:
    """The control plane hands the Map-Resolver the datagram's source address as the key."""
    mr = MapResolver(two_sites.map_server, rate=10.0, burst=20.0)
    plane = ControlPlane(map_server=two_sites.map_server, map_resolver=mr)
    raw = ecm_bytes("203.0.113.7", itr_rlocs=(IPv4Address("192.0.2.91"),))
    sends = [len(plane.on_datagram(raw, "192.0.2.90", 4342, 0.0).sends) for _ in range(50)]
    assert sum(sends) == 20 and plane.counters()["request-rate-limited"] == 30
    assert plane.on_datagram(raw, "192.0.2.9", 4342, 0.0).sends  # another source


def test_refusals_are_logged_at_most_once_per_reason_every_10_s(
    two_sites: MapResolver, caplog: pytest.LogCaptureFixture
) -> None:
    """Ten unusable requests a second for 50 s: all counted, five WARNING lines."""
    raw = ecm_bytes("198.51.100.40", itr_rlocs=(DistinguishedName("itr"),))
    with caplog.at_level(logging.WARNING, logger="lispd.control.mapresolver"):
        for k in range(500):
            assert two_sites.on_ecm(decode_ecm(raw), k / 10) == []
    assert two_sites.drops == {"request-no-itr-rloc": 500}
    lines = [r.getMessage() for r in caplog.records if r.name == "lispd.control.mapresolver"]
    assert len(lines) == 5, lines
    assert "reason=request-no-itr-rloc" in lines[0] and "unlogged=" not in lines[0]
    assert all(line.endswith(" unlogged=99") for line in lines[1:])


def test_rate_limit_must_be_positive(two_sites: MapResolver) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        MapResolver(two_sites.map_server, rate=0.0)
    with pytest.raises(ValueError, match="rate limit"):
        MapResolver(two_sites.map_server, burst=0.5)


def test_ecm_not_carrying_a_map_request(two_sites: MapResolver) -> None:
    base = decode_ecm(ecm_bytes("198.51.100.40"))
    notify = MapNotify(nonce=1, records=(), auth_data=bytes(32))
    assert two_sites.on_ecm(replace(base, message=notify), 0.0) == []
    assert two_sites.on_ecm(replace(base, message=MapReply(nonce=1, records=())), 0.0) == []
    assert two_sites.drops == {"ecm-not-map-request": 2}
    assert not two_sites.stats


def test_request_without_usable_itr_rloc(two_sites: MapResolver) -> None:
    raw = ecm_bytes(
        "198.51.100.40",
        itr_rlocs=(DistinguishedName("itr"), IPv6Address("::"), IPv4Address("224.0.0.1")),
    )
    assert two_sites.on_ecm(decode_ecm(raw), 0.0) == []
    assert two_sites.drops == {"request-no-itr-rloc": 1}


def test_request_for_a_non_ip_eid(two_sites: MapResolver) -> None:
    base = decode_ecm(ecm_bytes("198.51.100.40"))
    req = replace(base.message, records=(EidPrefix(MacAddress(b"\x02" * 6), 48),))
    assert two_sites.on_ecm(replace(base, message=req), 0.0) == []
    assert two_sites.drops == {"request-bad-eid": 1}


def test_request_from_port_zero(two_sites: MapResolver) -> None:
    raw = ecm_bytes("198.51.100.40", sport=0)
    assert two_sites.on_ecm(decode_ecm(raw), 0.0) == []
    assert two_sites.drops == {"request-bad-port": 1}


def test_bad_negative_ttl_is_a_configuration_error(two_sites: MapResolver) -> None:
    with pytest.raises(ValueError):
        MapResolver(two_sites.map_server, negative_ttl_minutes=-1)


# --- the prefix computation against a brute-force reference -----------------------------------


def brute_force_uncovered(address, prefixes: list[str]):
    """Shortest prefix holding ``address`` that overlaps none of ``prefixes`` (reference)."""
    nets = [ip_network(p) for p in prefixes if ip_network(p).version == address.version]
    for plen in range(address.max_prefixlen + 1):
        cand = ip_network((address, plen), strict=False)
        if not any(cand.overlaps(n) for n in nets):
            return cand
    return None


REG_V4 = st.builds(
    lambda a, plen: str(ip_network((IPv4Address(0xC6336400 | a), plen), strict=False)),
    st.integers(0, 255),
    st.integers(24, 32),
)


@settings(max_examples=150, deadline=None)
@given(
    registered=st.lists(REG_V4, min_size=0, max_size=6, unique=True),
    probe=st.one_of(
        st.integers(0, 255).map(lambda a: IPv4Address(0xC6336400 | a)),
        st.integers(0, 2**32 - 1).map(IPv4Address),
    ),
)
def test_negative_prefix_matches_brute_force(registered: list[str], probe: IPv4Address) -> None:
    # every prefix is its own single-prefix site, all registered
    sites = [site(f"s{i}", (0, p)) for i, p in enumerate(registered)]
    ms = MapServer(sites)
    for p in registered:
        register(ms, 0, p)
    mr = MapResolver(ms)
    covered = any(probe in ip_network(p) for p in registered)
    out = mr.on_ecm(decode_ecm(ecm_bytes(str(probe))), 0.0)
    assert len(out) == 1
    if covered:
        assert out[0].dst == ETR  # forwarded to the ETR
        return
    rec = only_record(decode_map_reply(out[0].payload))
    expected = brute_force_uncovered(probe, registered)
    assert record_prefix(rec) == expected
    assert probe in expected
    assert rec.action == Action.NATIVELY_FORWARD
