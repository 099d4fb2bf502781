"""The Map-Server machine: registrations (policy, HMAC, replay, expiry) and Map-Request delivery.

Everything goes through bytes built by the :mod:`lispd.wire` encoders and decoded again, with an
injected clock: no sockets, no root.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lispd.control.mapserver import (
    DEFAULT_REGISTRATION_TIMEOUT,
    MapServer,
    Registration,
    SitePrefixSpec,
    SiteSpec,
    best_etr_locator,
    reply_destination,
    request_eid,
)
from lispd.control.outputs import SendControl
from lispd.wire import auth
from lispd.wire.address import DistinguishedName, InstanceIdAddress, MacAddress
from lispd.wire.data import LISP_CONTROL_PORT
from lispd.wire.ecm import EncapsulatedControl, decode_ecm, encode_ecm
from lispd.wire.ip import IPv4Header, IPv6Header
from lispd.wire.mapregister import (
    MapRegister,
    decode_map_notify,
    decode_map_register,
    encode_map_register,
    encode_signed,
)
from lispd.wire.mapreply import MapReply, decode_map_reply
from lispd.wire.maprequest import MapRequest
from lispd.wire.records import Action, EidPrefix, EidRecord, Locator

KEY_A = b"site-a secret"
KEY_B = b"site-b secret"
ETR_A = IPv4Address("192.0.2.1")
ETR_A6 = IPv6Address("2001:db8::1")
ETR_B = IPv4Address("192.0.2.5")
ITR = IPv4Address("192.0.2.9")
ITR6 = IPv6Address("2001:db8::9")
INNER_SRC = IPv4Address("198.51.100.33")
PREFIX_A = ip_network("198.51.100.0/28")
PREFIX_A6 = ip_network("2001:db8:100::/64")
PREFIX_B = ip_network("198.51.100.16/28")

SITES = (
    SiteSpec(
        "site-a",
        KEY_A,
        (SitePrefixSpec(0, PREFIX_A), SitePrefixSpec(0, PREFIX_A6)),
    ),
    SiteSpec(
        "site-b",
        KEY_B,
        (
            SitePrefixSpec(0, PREFIX_B, accept_more_specifics=True),
            SitePrefixSpec(7, PREFIX_A),
        ),
    ),
)


def make_ms(**kwargs) -> MapServer:
    return MapServer(SITES, rng=lambda: 0x1122334455667788, **kwargs)


def record(
    prefix: str,
    *rlocs: IPv4Address | IPv6Address,
    iid: int = 0,
    ttl: int = 1440,
    **loc_kw,
) -> EidRecord:
    net = ip_network(prefix)
    eid = net.network_address if iid == 0 else InstanceIdAddress(iid, net.network_address)
    locators = tuple(Locator(r, **loc_kw) for r in rlocs)
    return EidRecord(eid=eid, mask_len=net.prefixlen, locators=locators, ttl=ttl)


def register(
    ms: MapServer,
    records: tuple[EidRecord, ...],
    key: bytes,
    now: float,
    *,
    src: IPv4Address | IPv6Address = ETR_A,
    sport: int = LISP_CONTROL_PORT,
    nonce: int = 0xA1,
    **fields,
) -> tuple[list[SendControl], bytes]:
    """Sign, encode, decode and hand a Map-Register to ``ms`` like the daemon would."""
    msg = MapRegister(nonce=nonce, records=records, **fields)
    raw = encode_signed(msg, key)
    decoded = decode_map_register(raw)
    return ms.on_map_register(raw, decoded, src, sport, now), raw


def request_ecm(
    eid: IPv4Address | IPv6Address | InstanceIdAddress,
    itr_rlocs=(ITR,),
    *,
    mask_len: int | None = None,
    nonce: int = 0xBEEF,
    sport: int = 50000,
    inner_src: IPv4Address | IPv6Address = INNER_SRC,
    **ecm_kw,
) -> EncapsulatedControl:
    """An ECM'd Map-Request as an ITR sends it, round-tripped through bytes."""
    plain = eid.address if isinstance(eid, InstanceIdAddress) else eid
    if mask_len is None:
        mask_len = 32 if plain.version == 4 else 128
    req = MapRequest(nonce=nonce, records=(EidPrefix(eid, mask_len),), itr_rlocs=tuple(itr_rlocs))
    if inner_src.version == 4:
        dst4 = plain if plain.version == 4 else IPv4Address("198.51.100.1")
        inner = IPv4Header(inner_src, dst4)
    else:
        dst6 = plain if plain.version == 6 else IPv6Address("2001:db8:100::1")
        inner = IPv6Header(inner_src, dst6)
    ecm = EncapsulatedControl(inner, sport, LISP_CONTROL_PORT, req, **ecm_kw)
    return decode_ecm(encode_ecm(ecm))


# --- registration -----------------------------------------------------------------------------


def test_register_installs_and_answers_a_verifiable_map_notify() -> None:
    ms = make_ms()
    recs = (record("198.51.100.0/28", ETR_A), record("2001:db8:100::/64", ETR_A6))
    out, _raw = register(
        ms, recs, KEY_A, 10.0, sport=61000, want_map_notify=True, xtr_id=0xABC, site_id=9
    )
    assert len(out) == 1
    send = out[0]
    assert (send.dst, send.port) == (ETR_A, 61000)
    assert auth.verify(send.payload, KEY_A)
    assert not auth.verify(send.payload, KEY_B)
    notify = decode_map_notify(send.payload)
    assert notify.nonce == 0xA1
    assert notify.records == recs
    assert notify.key_id == auth.KeyId.HMAC_SHA_256_128
    assert (notify.xtr_id, notify.site_id) == (0xABC, 9)
    assert not notify.ack

    regs = ms.registrations()
    assert [r.prefix for r in regs] == [PREFIX_A, PREFIX_A6]
    reg = regs[0]
    assert reg == Registration(
        site="site-a",
        iid=0,
        prefix=PREFIX_A,
        record=recs[0],
        registered_by=ETR_A,
        registered_by_port=61000,
        first_registered=10.0,
        last_registered=10.0,
        expires=10.0 + DEFAULT_REGISTRATION_TIMEOUT,
        proxy_reply=False,
        xtr_id=0xABC,
        site_id=9,
    )
    assert reg.locators == (Locator(ETR_A),) and reg.ttl == 1440
    assert ms.lookup(0, IPv4Address("198.51.100.7")) == reg
    assert ms.lookup(0, "2001:db8:100::77").prefix == PREFIX_A6
    assert ms.lookup(0, IPv4Address("198.51.100.20")) is None
    assert ms.stats["registered"] == 2 and ms.stats["map-notify-sent"] == 1
    assert not ms.drops


def test_map_notify_with_sha1_key_id() -> None:
    ms = make_ms()
    out, _ = register(
        ms,
        (record("198.51.100.0/28", ETR_A),),
        KEY_A,
        0.0,
        key_id=auth.KeyId.HMAC_SHA_1_96,
        want_map_notify=True,
    )
    notify = decode_map_notify(out[0].payload)
    assert notify.key_id == auth.KeyId.HMAC_SHA_1_96 and len(notify.auth_data) == 20
    assert auth.verify(out[0].payload, KEY_A)


def test_no_map_notify_unless_asked() -> None:
    ms = make_ms()
    out, _ = register(ms, (record("198.51.100.0/28", ETR_A),), KEY_A, 0.0)
    assert out == []
    assert len(ms.registrations()) == 1


def test_wrong_key_is_refused_counted_and_installs_nothing(caplog) -> None:
    ms = make_ms()
    with caplog.at_level(logging.WARNING, logger="lispd.control.mapserver"):
        out, _ = register(
            ms,
            (record("198.51.100.0/28", ETR_A),),
            b"not the key",
            0.0,
            want_map_notify=True,
        )
    assert out == []
    assert ms.registrations() == []
    assert ms.drops == {"register-auth-failed": 1}
    assert ms.next_deadline() is None
    refusals = [r for r in caplog.records if r.name == "lispd.control.mapserver"]
    assert len(refusals) == 1 and refusals[0].levelno == logging.WARNING
    assert "reason=register-auth-failed" in refusals[0].getMessage()
    assert "\n" not in refusals[0].getMessage()


def test_a_flood_of_refusals_is_counted_in_full_but_logged_sparingly(caplog) -> None:
    """1000 forged Map-Registers in one second: 1000 counted, one WARNING line; the next one
    after 10 s logs again and says how many went unlogged (regression: a line per packet)."""
    ms = make_ms()
    recs = (record("198.51.100.0/28", ETR_A),)
    with caplog.at_level(logging.WARNING, logger="lispd.control.mapserver"):
        for k in range(1000):
            register(ms, recs, b"forged", k / 1000, nonce=k)
        register(ms, (record("203.0.113.0/24", ETR_A),), b"forged", 0.5)  # another reason
        register(ms, recs, b"forged", 10.5, nonce=5000)
    assert ms.drops == {"register-auth-failed": 1001, "register-unknown-site": 1}
    lines = [r.getMessage() for r in caplog.records if r.name == "lispd.control.mapserver"]
    assert len(lines) == 3, lines
    assert "reason=register-auth-failed" in lines[0] and "unlogged=" not in lines[0]
    assert "reason=register-unknown-site" in lines[1]
    assert "reason=register-auth-failed" in lines[2]
    assert lines[2].endswith(" unlogged=999")


def test_tampered_bytes_fail_authentication() -> None:
    ms = make_ms()
    msg = MapRegister(nonce=1, records=(record("198.51.100.0/28", ETR_A),))
    raw = bytearray(encode_signed(msg, KEY_A))
    raw[-1] ^= 1  # flip a bit of the RLOC
    out = ms.on_map_register(bytes(raw), decode_map_register(bytes(raw)), ETR_A, 4342, 0.0)
    assert out == [] and ms.drops["register-auth-failed"] == 1 and not ms.registrations()


def test_another_sites_key_is_refused() -> None:
    ms = make_ms()
    out, _ = register(ms, (record("198.51.100.0/28", ETR_A),), KEY_B, 0.0)
    assert out == [] and ms.drops["register-auth-failed"] == 1 and not ms.registrations()


@pytest.mark.parametrize("key_id", [0, 3, 0x0102])
def test_unknown_or_no_key_id_is_refused(key_id: int) -> None:
    ms = make_ms()
    msg = MapRegister(
        nonce=1,
        records=(record("198.51.100.0/28", ETR_A),),
        key_id=key_id,
        auth_data=bytes(20),
    )
    raw = encode_map_register(msg)
    assert ms.on_map_register(raw, decode_map_register(raw), ETR_A, 4342, 0.0) == []
    assert ms.drops == {"register-bad-key-id": 1}
    assert not ms.registrations()


@pytest.mark.parametrize(
    ("prefix", "reason"),
    [
        ("203.0.113.0/24", "register-unknown-site"),  # nobody's space
        ("198.51.100.0/24", "register-prefix-not-allowed"),  # wider than the site's /28
        ("198.51.100.0/29", "register-prefix-not-allowed"),  # more-specific, not accepted
        ("2001:db8:100::/48", "register-prefix-not-allowed"),
        ("2001:db8:200::/64", "register-unknown-site"),
    ],
)
def test_prefix_outside_the_site_is_refused(prefix: str, reason: str) -> None:
    ms = make_ms()
    recs = (record("198.51.100.0/28", ETR_A), record(prefix, ETR_A))
    out, _ = register(ms, recs, KEY_A, 0.0, want_map_notify=True)
    assert out == []
    assert ms.drops == {reason: 1}
    assert ms.registrations() == []  # the allowed record is not installed either


def test_more_specifics_only_where_configured() -> None:
    ms = make_ms()
    out, _ = register(
        ms,
        (record("198.51.100.16/29", ETR_B), record("198.51.100.28/30", ETR_B)),
        KEY_B,
        0.0,
        src=ETR_B,
        want_map_notify=True,
    )
    assert len(out) == 1
    assert [str(r.prefix) for r in ms.registrations()] == ["198.51.100.16/29", "198.51.100.28/30"]
    assert ms.lookup(0, "198.51.100.29").prefix == ip_network("198.51.100.28/30")
    assert ms.lookup(0, "198.51.100.25") is None  # the /28 itself is not registered
    # site-a's /28 does not accept more-specifics
    register(ms, (record("198.51.100.0/29", ETR_A),), KEY_A, 0.0)
    assert ms.drops == {"register-prefix-not-allowed": 1}


def test_records_spanning_two_sites_are_refused() -> None:
    ms = make_ms()
    recs = (record("198.51.100.0/28", ETR_A), record("198.51.100.16/28", ETR_A))
    for key in (KEY_A, KEY_B):
        out, _ = register(ms, recs, key, 0.0, want_map_notify=True)
        assert out == []
    assert ms.drops == {"register-multiple-sites": 2}
    assert ms.registrations() == []


def test_zero_records_is_refused() -> None:
    ms = make_ms()
    out, _ = register(ms, (), KEY_A, 0.0, want_map_notify=True)
    assert out == [] and ms.drops == {"register-no-records": 1}


def test_non_ip_eid_is_refused() -> None:
    ms = make_ms()
    mac = EidRecord(eid=MacAddress(b"\x02\x00\x00\x00\x00\x01"), mask_len=48)
    out, _ = register(ms, (mac,), KEY_A, 0.0)
    assert out == [] and ms.drops == {"register-bad-eid": 1}


def test_instance_id_scoping() -> None:
    ms = make_ms()
    # [7]198.51.100.0/28 belongs to site-b, [0]198.51.100.0/28 to site-a.
    register(ms, (record("198.51.100.0/28", ETR_A, iid=7),), KEY_A, 0.0)
    assert ms.drops == {"register-auth-failed": 1}
    register(ms, (record("198.51.100.0/28", ETR_B, iid=7),), KEY_B, 0.0, src=ETR_B)
    register(ms, (record("198.51.100.0/28", ETR_A),), KEY_A, 0.0)
    in0 = ms.lookup(0, "198.51.100.1")
    in7 = ms.lookup(7, "198.51.100.1")
    assert in0 is not None and in7 is not None
    assert (in0.site, in0.iid, in0.locators[0].address) == ("site-a", 0, ETR_A)
    assert (in7.site, in7.iid, in7.locators[0].address) == ("site-b", 7, ETR_B)
    assert ms.lookup(8, "198.51.100.1") is None
    assert [(r.iid, r.site) for r in ms.registrations()] == [(0, "site-a"), (7, "site-b")]
    # an instance-ID beyond 24 bits never matches a site (and never raises)
    register(ms, (record("198.51.100.0/28", ETR_B, iid=1 << 30),), KEY_B, 0.0)
    assert ms.drops["register-unknown-site"] == 1


# --- lifetime ---------------------------------------------------------------------------------


def test_expiry_with_an_injected_clock_and_refresh() -> None:
    ms = make_ms()
    recs = (record("198.51.100.0/28", ETR_A),)
    register(ms, recs, KEY_A, 0.0, nonce=1)
    assert ms.next_deadline() == 180.0
    assert ms.expire(179.9) == []
    # refresh at t=100: same registration, later expiry, first-registered kept
    register(ms, recs, KEY_A, 100.0, nonce=2)
    reg = ms.lookup(0, "198.51.100.1")
    assert reg is not None
    assert (reg.first_registered, reg.last_registered, reg.expires) == (0.0, 100.0, 280.0)
    assert ms.stats["refreshed"] == 1
    assert ms.expire(180.0) == []  # the old deadline is stale
    assert ms.next_deadline() == 280.0
    assert ms.lookup(0, "198.51.100.1") is not None
    gone = ms.expire(280.0)
    assert [r.prefix for r in gone] == [PREFIX_A]
    assert ms.lookup(0, "198.51.100.1") is None and ms.registrations() == []
    assert ms.next_deadline() is None
    assert ms.stats["expired"] == 1
    # registering again after expiry starts a new registration
    register(ms, recs, KEY_A, 300.0, nonce=3)
    reg = ms.lookup(0, "198.51.100.1")
    assert reg is not None and reg.first_registered == 300.0


def test_custom_timeout_and_ttl_timeout_bit() -> None:
    ms = make_ms(registration_timeout=30.0)
    register(ms, (record("198.51.100.0/28", ETR_A),), KEY_A, 0.0, nonce=1)
    assert ms.next_deadline() == 30.0
    register(ms, (record("198.51.100.0/28", ETR_A, ttl=2),), KEY_A, 5.0, nonce=2, ttl_timeout=True)
    reg = ms.lookup(0, "198.51.100.1")
    assert reg is not None and reg.expires == 5.0 + 120.0
    assert ms.expire(35.0) == [] and ms.next_deadline() == 125.0


def test_ttl_timeout_with_zero_ttl_deregisters() -> None:
    ms = make_ms()
    register(ms, (record("198.51.100.0/28", ETR_A),), KEY_A, 0.0, nonce=1)
    out, _ = register(
        ms,
        (record("198.51.100.0/28", ETR_A, ttl=0),),
        KEY_A,
        1.0,
        nonce=2,
        ttl_timeout=True,
        want_map_notify=True,
    )
    assert len(out) == 1  # still acknowledged
    assert ms.registrations() == [] and ms.stats["deregistered"] == 1
    assert ms.next_deadline() is None


def test_expired_registration_does_not_answer_requests() -> None:
    ms = make_ms()
    register(ms, (record("198.51.100.0/28", ETR_A),), KEY_A, 0.0)
    assert ms.on_map_request(request_ecm(IPv4Address("198.51.100.3")), 200.0) is None
    assert ms.registrations() == []


# --- replay -----------------------------------------------------------------------------------


def test_exact_replay_is_refused_within_the_timeout() -> None:
    ms = make_ms()
    out, raw = register(ms, (record("198.51.100.0/28", ETR_A),), KEY_A, 0.0, want_map_notify=True)
    assert len(out) == 1
    again = ms.on_map_register(raw, decode_map_register(raw), ETR_A, 4342, 60.0)
    assert again == [] and ms.drops == {"register-replayed": 1}
    reg = ms.lookup(0, "198.51.100.1")
    assert reg is not None and reg.last_registered == 0.0  # not refreshed by the replay
    # a fresh nonce (random, not increasing) is fine
    out, _ = register(ms, (record("198.51.100.0/28", ETR_A),), KEY_A, 61.0, nonce=0x05)
    assert ms.lookup(0, "198.51.100.1").last_registered == 61.0
    # an older nonce than the last one is a replay too (within the timeout)
    register(ms, (record("198.51.100.0/28", ETR_A),), KEY_A, 62.0, nonce=0xA1)
    assert ms.drops == {"register-replayed": 2}
    assert ms.lookup(0, "198.51.100.1").last_registered == 61.0


def test_same_nonce_after_the_timeout_is_accepted() -> None:
    ms = make_ms()
    register(ms, (record("198.51.100.0/28", ETR_A),), KEY_A, 0.0)
    register(ms, (record("198.51.100.0/28", ETR_A),), KEY_A, 180.0)
    assert not ms.drops and ms.lookup(0, "198.51.100.1").last_registered == 180.0


def test_replay_state_is_per_site_and_xtr_id() -> None:
    ms = make_ms()
    recs = (record("198.51.100.0/28", ETR_A, ETR_B),)
    register(ms, recs, KEY_A, 0.0, nonce=7, xtr_id=1, site_id=1)
    register(ms, recs, KEY_A, 1.0, nonce=7, xtr_id=2, site_id=1)  # the other xTR
    register(ms, recs, KEY_A, 2.0, nonce=7, src=ETR_B)  # no xTR-ID
    register(ms, (record("198.51.100.16/28", ETR_B),), KEY_B, 2.5, nonce=7)  # another site
    assert not ms.drops
    register(ms, recs, KEY_A, 3.0, nonce=7, xtr_id=2, site_id=1, src=ETR_B)
    assert ms.drops == {"register-replayed": 1}


def test_replay_from_another_address_is_refused() -> None:
    """A captured Map-Register sent again from elsewhere (an attacker's address, or a
    spoofed one) changes nothing: not who registered, not when, and no Map-Notify goes out."""
    ms = make_ms()
    recs = (record("198.51.100.0/28", ETR_A),)
    out, raw = register(ms, recs, KEY_A, 0.0, want_map_notify=True)
    assert len(out) == 1
    attacker = IPv4Address("192.0.2.66")
    for t, src in ((1.0, attacker), (2.0, IPv4Address("192.0.2.81")), (3.0, attacker)):
        assert ms.on_map_register(raw, decode_map_register(raw), src, 4342, t) == []
    assert ms.drops == {"register-replayed": 3}
    reg = ms.lookup(0, "198.51.100.1")
    assert reg is not None and reg.registered_by == ETR_A and reg.last_registered == 0.0
    assert ms.stats["map-register-accepted"] == 1


def test_replay_check_can_be_disabled() -> None:
    ms = make_ms(check_replay=False)
    _, raw = register(ms, (record("198.51.100.0/28", ETR_A),), KEY_A, 0.0)
    ms.on_map_register(raw, decode_map_register(raw), ETR_A, 4342, 1.0)
    assert not ms.drops


def test_unauthenticated_copy_does_not_poison_the_nonce_state() -> None:
    ms = make_ms()
    register(ms, (record("198.51.100.0/28", ETR_A),), b"forged", 0.0, nonce=9)
    register(ms, (record("198.51.100.0/28", ETR_A),), KEY_A, 1.0, nonce=9)
    assert ms.drops == {"register-auth-failed": 1}
    assert len(ms.registrations()) == 1


# --- garbage ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x30", b"\x30\x00\x00\x01" + bytes(8) + b"\x00\x02\xff\xff", bytes(100)],
)
def test_garbage_raw_bytes_are_counted_never_raised(raw: bytes) -> None:
    ms = make_ms()
    msg = MapRegister(nonce=1, records=(record("198.51.100.0/28", ETR_A),), auth_data=bytes(32))
    assert ms.on_map_register(raw, msg, ETR_A, 4342, 0.0) == []
    assert sum(ms.drops.values()) == 1
    assert set(ms.drops) <= {"register-malformed", "register-auth-failed"}
    assert not ms.registrations()


_V4_BASES = (0xC6336400, 0xC6336410, 0xCB007100, 0)  # 198.51.100.0, .16, 203.0.113.0, 0.0.0.0
RANDOM_ADDRESS = st.one_of(
    st.builds(
        lambda base, off: IPv4Address(base + off),
        st.sampled_from(_V4_BASES),
        st.one_of(st.just(0), st.integers(0, 255)),
    ),
    st.builds(
        lambda off: IPv6Address(int(PREFIX_A6.network_address) + off),
        st.one_of(st.just(0), st.integers(0, 2**70)),
    ),
)
_GOOD_EIDS = [  # (address, mask-len, iid) some site may register
    (PREFIX_A.network_address, 28, 0),
    (PREFIX_A6.network_address, 64, 0),
    (PREFIX_B.network_address, 28, 0),
    (IPv4Address("198.51.100.24"), 29, 0),
    (PREFIX_A.network_address, 28, 7),
]
RANDOM_RECORD = st.one_of(
    st.sampled_from(_GOOD_EIDS).flatmap(
        lambda g: st.tuples(st.just(g[0]), st.just(g[1]), st.just(g[2]), st.integers(0, 3000))
    ),
    st.tuples(
        RANDOM_ADDRESS,
        st.one_of(st.sampled_from([28, 29, 64]), st.integers(0, 128)),
        st.sampled_from([0, 0, 7, 1 << 25]),
        st.integers(0, 2**32 - 1),
    ),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    key=st.sampled_from([KEY_A, KEY_B, b"x"]),
    key_id=st.sampled_from([1, 2, 1, 2, 0, 3]),
    nonce=st.integers(0, 2**64 - 1),
    flags=st.fixed_dictionaries(
        {
            "proxy_reply": st.booleans(),
            "want_map_notify": st.booleans(),
            "ttl_timeout": st.booleans(),
            "merge": st.booleans(),
            "for_rtr": st.booleans(),
        }
    ),
    now=st.floats(0, 1e6, allow_nan=False),
    corrupt=st.one_of(st.none(), st.integers(0, 400)),
)
def test_random_map_registers_never_raise(data, key, key_id, nonce, flags, now, corrupt) -> None:
    ms = make_ms()
    records = data.draw(st.lists(RANDOM_RECORD, max_size=4))
    recs = []
    for addr, plen, iid, ttl in records:
        plen = min(plen, 32 if addr.version == 4 else 128)
        eid = addr if iid == 0 else InstanceIdAddress(iid, addr)
        locs = (Locator(ETR_A), Locator(DistinguishedName("etr"), priority=255))
        recs.append(EidRecord(eid=eid, mask_len=plen, locators=locs, ttl=ttl))
    msg = MapRegister(nonce=nonce, records=tuple(recs), key_id=key_id, **flags)
    if key_id in (0, 1, 2):
        raw = encode_signed(msg, key)
    else:
        raw = encode_map_register(replace(msg, auth_data=bytes(16)))
    decoded = decode_map_register(raw)
    if corrupt is not None and corrupt < len(raw):
        raw = raw[:corrupt] + bytes([raw[corrupt] ^ 0x5A]) + raw[corrupt + 1 :]
    first = ms.on_map_register(raw, decoded, ETR_A, 4342, now)
    again = ms.on_map_register(raw, decoded, ETR_A, 4342, now + 1.0)
    for send in first + again:
        assert auth.verify(send.payload, KEY_A) or auth.verify(send.payload, KEY_B)
        assert decode_map_notify(send.payload).nonce == nonce
    accepted = ms.stats["map-register-accepted"] == 1
    assert sum(ms.drops.values()) == (1 if accepted else 2)  # the exact repeat is a replay
    for reg in ms.registrations():
        site = next(s for s in SITES if s.name == reg.site)
        assert any(
            p.iid == reg.iid
            and p.prefix.version == reg.prefix.version
            and reg.prefix.subnet_of(p.prefix)  # type: ignore[arg-type]
            for p in site.prefixes
        )
        assert ms.lookup(reg.iid, reg.prefix.network_address) is not None
    # requests for every registered or refused EID never raise either
    for rec in recs:
        iid = rec.eid.iid if isinstance(rec.eid, InstanceIdAddress) else 0
        addr = rec.eid.address if isinstance(rec.eid, InstanceIdAddress) else rec.eid
        out = ms.on_map_request(request_ecm(InstanceIdAddress(iid, addr) if iid else addr), now)
        assert out is None or all(send.payload for send in out)
    ms.expire(now + 1e12)  # beyond any record TTL
    assert ms.registrations() == [] and ms.next_deadline() is None


# --- Map-Request: proxy reply -----------------------------------------------------------------


def test_proxy_reply_contents() -> None:
    ms = make_ms()
    locs = (
        Locator(ETR_A, priority=1, weight=50, local=True, probed=True),
        Locator(ETR_A6, priority=1, weight=50, local=True),
    )
    registered = replace(record("198.51.100.0/28", ttl=60), locators=locs, authoritative=True)
    register(ms, (registered,), KEY_A, 0.0, proxy_reply=True)
    ecm = request_ecm(IPv4Address("198.51.100.9"), (ITR6, ITR), nonce=0xFEED, sport=51234)
    out = ms.on_map_request(ecm, 1.0)
    assert out is not None and len(out) == 1
    send = out[0]
    assert (send.dst, send.port) == (ITR, 51234)  # same family as the inner source
    reply = decode_map_reply(send.payload)
    assert reply.nonce == 0xFEED and not reply.probe
    (rec,) = reply.records
    assert rec.eid == IPv4Address("198.51.100.0") and rec.mask_len == 28
    assert rec.ttl == 60 and not rec.authoritative and rec.action == Action.NO_ACTION
    assert [(loc.address, loc.local, loc.probed, loc.reachable) for loc in rec.locators] == [
        (ETR_A, False, False, True),
        (ETR_A6, False, False, True),
    ]
    assert ms.stats["proxy-replied"] == 1


def test_proxy_reply_in_an_instance_keeps_the_iid() -> None:
    ms = make_ms()
    register(ms, (record("198.51.100.0/28", ETR_B, iid=7),), KEY_B, 0.0, proxy_reply=True)
    out = ms.on_map_request(request_ecm(InstanceIdAddress(7, IPv4Address("198.51.100.2"))), 0.0)
    assert out is not None
    (rec,) = decode_map_reply(out[0].payload).records
    assert rec.eid == InstanceIdAddress(7, IPv4Address("198.51.100.0"))
    # the same address in instance 0 is not registered
    assert ms.on_map_request(request_ecm(IPv4Address("198.51.100.2")), 0.0) is None


def test_proxy_reply_itr_rloc_choice() -> None:
    ms = make_ms()
    register(ms, (record("198.51.100.0/28", ETR_A),), KEY_A, 0.0, proxy_reply=True)
    eid = IPv4Address("198.51.100.1")
    # IPv6 inner source: the IPv6 ITR-RLOC wins; non-IP ITR-RLOCs are skipped
    ecm = request_ecm(
        eid, (DistinguishedName("itr"), ITR, ITR6), inner_src=IPv6Address("2001:db8:100::5")
    )
    assert ms.on_map_request(ecm, 0.0)[0].dst == ITR6
    # no ITR-RLOC of the preferred family: any usable one
    ecm = request_ecm(eid, (ITR6,))
    assert ms.on_map_request(ecm, 0.0)[0].dst == ITR6
    # nothing usable: counted and dropped
    ecm = request_ecm(
        eid, (DistinguishedName("itr"), IPv4Address("0.0.0.0"), IPv4Address("127.0.0.1"))
    )
    assert ms.on_map_request(ecm, 0.0) == []
    assert ms.drops == {"request-no-itr-rloc": 1}


def test_reply_destination_helper() -> None:
    ecm = request_ecm(IPv4Address("198.51.100.1"), (IPv6Address("ff02::1"), ITR6))
    assert reply_destination(ecm.message, ecm) == ITR6


# --- Map-Request: forwarding to the ETR --------------------------------------------------------


def test_forward_to_the_registered_etr() -> None:
    ms = make_ms()
    locs = (
        Locator(IPv4Address("192.0.2.100"), priority=0, weight=100, reachable=False),
        Locator(IPv4Address("192.0.2.101"), priority=255, weight=100),
        Locator(DistinguishedName("etr"), priority=0),
        Locator(ETR_A6, priority=2, weight=100),
        Locator(ETR_B, priority=1, weight=10),
        Locator(ETR_A, priority=1, weight=90),
    )
    register(ms, (replace(record("198.51.100.0/28"), locators=locs),), KEY_A, 0.0)
    ecm = request_ecm(IPv4Address("198.51.100.4"), (ITR,), nonce=0x77, to_ms=True)
    out = ms.on_map_request(ecm, 1.0)
    assert out is not None and len(out) == 1
    send = out[0]
    assert (send.dst, send.port) == (ETR_A, LISP_CONTROL_PORT)
    forwarded = decode_ecm(send.payload)
    assert forwarded.to_etr and not forwarded.to_ms
    assert forwarded.message == ecm.message
    assert forwarded.inner_ip == ecm.inner_ip
    assert (forwarded.sport, forwarded.dport) == (ecm.sport, ecm.dport)
    assert forwarded == replace(ecm, to_etr=True, to_ms=False)
    assert ms.stats["forwarded"] == 1


def test_best_etr_locator_helper() -> None:
    rec = EidRecord(
        eid=IPv4Address("198.51.100.0"),
        mask_len=28,
        locators=(Locator(ETR_A, priority=3), Locator(ETR_A6, priority=2)),
    )
    assert best_etr_locator(rec) == ETR_A6
    assert best_etr_locator(replace(rec, locators=())) is None


def test_forward_without_a_usable_locator_is_dropped() -> None:
    ms = make_ms()
    locs = (Locator(ETR_A, priority=255), Locator(ETR_B, reachable=False))
    register(ms, (replace(record("198.51.100.0/28"), locators=locs),), KEY_A, 0.0)
    assert ms.on_map_request(request_ecm(IPv4Address("198.51.100.4")), 0.0) == []
    assert ms.drops == {"request-no-etr-locator": 1}


def test_requests_the_map_server_does_not_handle() -> None:
    ms = make_ms()
    register(ms, (record("198.51.100.0/28", ETR_A),), KEY_A, 0.0)
    # not registered: the Map-Resolver decides
    assert ms.on_map_request(request_ecm(IPv4Address("198.51.100.40")), 0.0) is None
    assert not ms.drops
    # not a Map-Request
    base = request_ecm(IPv4Address("198.51.100.1"))
    reply_ecm = replace(base, message=MapReply(nonce=1, records=()))
    assert ms.on_map_request(reply_ecm, 0.0) == []
    # already marked for an ETR
    assert ms.on_map_request(replace(base, to_etr=True), 0.0) == []
    # a MAC EID
    mac_req = replace(base.message, records=(EidPrefix(MacAddress(b"\x02" * 6), 48),))
    assert ms.on_map_request(replace(base, message=mac_req), 0.0) == []
    assert ms.drops == {
        "request-not-map-request": 1,
        "request-to-etr": 1,
        "request-bad-eid": 1,
    }


def test_request_eid_helper() -> None:
    req = MapRequest(
        nonce=1,
        records=(EidPrefix(InstanceIdAddress(5, IPv6Address("2001:db8:100::1")), 128),),
        itr_rlocs=(ITR,),
    )
    assert request_eid(req) == (5, IPv6Address("2001:db8:100::1"))
    mac = replace(req, records=(EidPrefix(MacAddress(b"\x02" * 6), 48),))
    assert request_eid(mac) is None


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sites",
    [
        (SiteSpec("a", b"k"), SiteSpec("a", b"k")),
        (SiteSpec("a", b""),),
        (SiteSpec("a", b"k", (SitePrefixSpec(1 << 24, PREFIX_A),)),),
        (SiteSpec("a", b"k", (SitePrefixSpec(0, PREFIX_A), SitePrefixSpec(0, PREFIX_A))),),
    ],
)
def test_unusable_site_lists_are_configuration_errors(sites) -> None:
    with pytest.raises(ValueError):
        MapServer(sites)


def test_key_is_not_in_repr() -> None:
    assert "secret" not in repr(SITES[0])


def test_set_sites_keeps_what_is_still_allowed() -> None:
    ms = make_ms()
    register(ms, (record("198.51.100.0/28", ETR_A),), KEY_A, 0.0)
    register(ms, (record("198.51.100.16/28", ETR_B),), KEY_B, 0.0, src=ETR_B)
    before = ms.lookup(0, "198.51.100.1")
    new_sites = (SITES[0], SiteSpec("site-b", KEY_B, (SitePrefixSpec(7, PREFIX_A),)))
    removed = ms.set_sites(new_sites, 5.0)
    assert [r.prefix for r in removed] == [PREFIX_B]
    assert ms.lookup(0, "198.51.100.1") is before  # untouched
    assert ms.lookup(0, "198.51.100.17") is None
    assert ms.sites == new_sites
    with pytest.raises(ValueError):
        ms.set_sites((SiteSpec("x", b""),), 6.0)
    assert ms.sites == new_sites
    assert ms.site_prefix(7, ip_address("198.51.100.3")) == (PREFIX_A, "site-b")


def test_a_site_holds_at_most_its_registration_limit() -> None:
    """More-specifics let one site register any number of prefixes: the limit bounds them,
    refreshes and deregistrations keep working at the limit, and room made is reusable."""
    ms = make_ms(max_site_registrations=2)
    subnets = [f"198.51.100.{16 + 4 * i}/30" for i in range(3)]
    register(ms, tuple(record(p, ETR_B) for p in subnets[:2]), KEY_B, 0.0, src=ETR_B)
    register(ms, (record(subnets[2], ETR_B),), KEY_B, 1.0, src=ETR_B, nonce=2)
    assert ms.drops == {"register-site-full": 1}
    assert len(ms.registrations()) == 2
    # A refresh at the limit is no new registration.
    register(ms, (record(subnets[0], ETR_B),), KEY_B, 2.0, src=ETR_B, nonce=3)
    assert ms.drops == {"register-site-full": 1}
    # A deregistration makes room; so does expiry.
    register(
        ms, (record(subnets[0], ETR_B, ttl=0),), KEY_B, 3.0, src=ETR_B, nonce=4, ttl_timeout=True
    )
    register(ms, (record(subnets[2], ETR_B),), KEY_B, 4.0, src=ETR_B, nonce=5)
    assert sorted(str(r.prefix) for r in ms.registrations()) == sorted(subnets[1:])
    ms.expire(1e9)
    register(ms, (record(subnets[0], ETR_B),), KEY_B, 1e9 + 1, src=ETR_B, nonce=6)
    assert [str(r.prefix) for r in ms.registrations()] == [subnets[0]]
    # Other sites have their own count.
    register(ms, (record("198.51.100.0/28", ETR_A),), KEY_A, 1e9 + 2, nonce=7)
    assert len(ms.registrations()) == 2
