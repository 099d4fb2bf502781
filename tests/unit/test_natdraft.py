"""Unit tests of lispd.control.natdraft (draft-style NAT traversal) and its configuration:
every refusal of the Map-Server's, the xTR's and the RTR's side counted under its reason, the
RTR's bindings per xTR-ID (new, moved, two xTRs behind one NAT address, expiry, eviction)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Network, ip_address, ip_network

import pytest

from lispd.config import ConfigError, parse_config
from lispd.control.natdraft import (
    PENDING_TIMEOUT,
    DraftInfoResponder,
    DraftNatClient,
    DraftRtr,
    draft_record,
    ecm_via_rtr,
    relay_packet,
    relayed_control,
)
from lispd.control.outputs import SendControl
from lispd.wire import auth
from lispd.wire.address import NO_ADDRESS, NatTraversalAddress
from lispd.wire.control import decode_control, encode_control
from lispd.wire.ecm import decode_ecm
from lispd.wire.info import InfoMessage, decode_info, encode_info, encode_info_signed
from lispd.wire.ip import parse_udp_datagram
from lispd.wire.mapregister import (
    MapNotify,
    MapRegister,
    RtrAuth,
    encode_signed,
    verify_notify,
)
from lispd.wire.records import EidRecord, Locator
from tests.unit.test_config import MSMR, XTR_CP, error_of

MS, RTR, NAT, PRIVATE = (
    ip_address(a) for a in ("192.0.2.10", "192.0.2.20", "192.0.2.30", "203.0.113.2")
)
SITE_KEY, RTR_KEY = b"site-key", b"ms-rtr-key"
PREFIX = ip_network("198.51.100.0/25")
DRAFT_MS_WITHOUT_KEY = """
[nat-traversal]
style = "draft"

[mapping-system]
rtr-rlocs = ["192.0.2.20"]
"""
XTR_ID = 0x1234_5678_9ABC_DEF0_1122_3344_5566_7788


def _keys(iid: int, net: IPv4Network) -> list[bytes]:
    return [SITE_KEY] if (iid, net) == (0, PREFIX) else []


def _request(key: bytes | None = SITE_KEY, prefix: object = PREFIX, nonce: int = 7) -> bytes:
    net = ip_network(prefix)  # type: ignore[arg-type]
    msg = InfoMessage(nonce=nonce, key_id=1, eid=net.network_address, eid_mask_len=net.prefixlen)
    if key is None:
        return encode_info(replace(msg, key_id=0))
    return encode_info_signed(msg, key)


# --- Map-Server -------------------------------------------------------------------------------


def test_info_responder_signs_its_answer_with_the_site_key() -> None:
    responder = DraftInfoResponder([MS], [RTR], _keys)
    raw = _request()
    (send,) = responder.answer(raw, decode_info(raw), NAT, 40000, 0.0)
    assert (send.dst, send.port) == (NAT, 40000)
    reply = decode_info(send.payload)
    assert reply.reply and reply.nonce == 7 and reply.ttl == 10 and reply.key_id == 1
    assert auth.verify(send.payload, SITE_KEY)
    assert reply.address == NatTraversalAddress(4342, 40000, NAT, MS, NO_ADDRESS, (RTR,))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (_request(b"other-key"), "info-request-auth-failed"),
        (_request(None), "info-request-unauthenticated"),
        (_request(prefix="198.51.100.128/25"), "info-request-unknown-site"),
        (
            encode_info_signed(InfoMessage(nonce=1, key_id=1), SITE_KEY),  # EID AFI 0
            "info-request-bad-eid",
        ),
    ],
)
def test_info_responder_refusals(raw: bytes, reason: str) -> None:
    responder = DraftInfoResponder([MS], [RTR], _keys)
    assert responder.answer(raw, decode_info(raw), NAT, 4342, 0.0) == []
    assert dict(responder.drops) == {reason: 1}


def test_info_responder_without_require_auth_answers_unsigned_requests_unsigned() -> None:
    responder = DraftInfoResponder([MS], [RTR], _keys, require_auth=False)
    raw = _request(None)
    (send,) = responder.answer(raw, decode_info(raw), NAT, 4342, 0.0)
    reply = decode_info(send.payload)
    assert reply.key_id == 0 and reply.auth_data == b""
    # ... but a signed one is still checked.
    bad = _request(b"other-key")
    assert responder.answer(bad, decode_info(bad), NAT, 4342, 0.0) == []
    assert responder.drops["info-request-auth-failed"] == 1


def test_info_responder_rate_limit_comes_before_the_hmac() -> None:
    responder = DraftInfoResponder([MS], [RTR], _keys, rate=1.0, burst=2.0)
    raw = _request(b"other-key")
    for _ in range(5):
        responder.answer(raw, decode_info(raw), NAT, 4342, 0.0)
    assert responder.drops == {"info-request-auth-failed": 2, "info-request-rate-limited": 3}


# --- xTR --------------------------------------------------------------------------------------


def _client() -> DraftNatClient:
    nonces = iter(range(100, 200))
    return DraftNatClient(
        [MS], {MS: (1, SITE_KEY)}, [PRIVATE], [(0, PREFIX)], rng=lambda: next(nonces)
    )


def _reply_to(request: SendControl, key: bytes | None) -> bytes:
    msg = decode_info(request.payload)
    reply = InfoMessage(
        nonce=msg.nonce,
        reply=True,
        key_id=1 if key else 0,
        ttl=10,
        eid=msg.eid,
        eid_mask_len=msg.eid_mask_len,
        address=NatTraversalAddress(4342, 4342, NAT, MS, NO_ADDRESS, (RTR,)),
    )
    return encode_info_signed(reply, key) if key else encode_info(reply)


def test_nat_client_signs_requests_and_checks_replies() -> None:
    client = _client()
    (request,) = client.on_timer(0.0)
    assert isinstance(request, SendControl)
    msg = decode_info(request.payload)
    assert msg.key_id == 1 and msg.ttl == 0 and auth.verify(request.payload, SITE_KEY)
    for key, reason in ((None, "info-reply-unauthenticated"), (b"wrong", "info-reply-auth-failed")):
        raw = _reply_to(request, key)
        assert client.on_info_reply(decode_info(raw), MS, 0.1, raw) is None
        assert client.drops[reason] == 1
    # The nonce is still outstanding: the genuine reply counts.
    raw = _reply_to(request, SITE_KEY)
    status = client.on_info_reply(decode_info(raw), MS, 0.2, raw)
    assert status is not None and status.behind_nat and status.rtrs == (RTR,)


def test_nat_client_needs_a_key_per_map_server() -> None:
    with pytest.raises(ValueError, match="no key"):
        DraftNatClient([MS], {}, [PRIVATE], [(0, PREFIX)])


def test_draft_record_and_the_ecm_around_a_map_register() -> None:
    record = EidRecord(PREFIX.network_address, 25, (Locator(PRIVATE, local=True),), ttl=10)
    registered = draft_record(record, RTR)
    assert [(loc.address, loc.reachable, loc.local) for loc in registered.locators] == [
        (RTR, True, False),
        (PRIVATE, False, True),
    ]
    register = encode_signed(MapRegister(nonce=5, records=(registered,), key_id=1), SITE_KEY)
    ecm = decode_ecm(ecm_via_rtr(register, PRIVATE, MS))
    assert ecm.rtr and (ecm.inner_ip.src, ecm.inner_ip.dst) == (PRIVATE, MS)
    assert (ecm.sport, ecm.dport) == (4342, 4342) and ecm.inner_ip.ttl == 255
    with pytest.raises(ValueError):
        ecm_via_rtr(register, ip_address("2001:db8::1"), MS)


def test_relayed_control_tells_inner_packets_from_bare_messages() -> None:
    notify = encode_signed(MapNotify(nonce=1, records=(), key_id=1), SITE_KEY)
    packet = relay_packet(notify, MS, PRIVATE, 9)
    dg = relayed_control(packet[8:])
    assert dg is not None and dg.payload == notify and dg.ip.src == MS
    assert relayed_control(notify) is None  # a bare Map-Notify (first byte 0x4_ too)
    assert relayed_control(encode_control(InfoMessage(nonce=3))) is None
    assert relayed_control(b"") is None and relayed_control(b"\x45\x00") is None


# --- RTR --------------------------------------------------------------------------------------


def _register(
    nonce: int = 11,
    xtr_id: int | None = XTR_ID,
    for_rtr: bool = True,
    prefix: IPv4Network = PREFIX,
) -> bytes:
    record = draft_record(
        EidRecord(
            prefix.network_address, prefix.prefixlen, (Locator(PRIVATE, local=True),), ttl=10
        ),
        RTR,
    )
    msg = MapRegister(
        nonce=nonce,
        records=(record,),
        key_id=1,
        proxy_reply=True,
        for_rtr=for_rtr,
        want_map_notify=True,
        xtr_id=xtr_id,
        site_id=0 if xtr_id is not None else None,
    )
    return encode_signed(msg, SITE_KEY)


def _ecm(register: bytes) -> bytes:
    return ecm_via_rtr(register, PRIVATE, MS)


def _notify(register: bytes, key: bytes = RTR_KEY, xtr_id: int | None = None) -> bytes:
    msg = decode_control(register)
    assert isinstance(msg, MapRegister)
    notify = MapNotify(
        nonce=msg.nonce,
        records=msg.records,
        key_id=1,
        xtr_id=msg.xtr_id if xtr_id is None else xtr_id,
        site_id=msg.site_id,
        rtr_auth=RtrAuth(1),
    )
    return encode_signed(notify, SITE_KEY, key)


def _forward(
    rtr: DraftRtr, register: bytes, src: object = NAT, port: int = 40000, now: float = 0.0
) -> list[SendControl]:
    raw = _ecm(register)
    return rtr.on_ecm(raw, decode_ecm(raw), src, port, now)  # type: ignore[arg-type]


def _answer(rtr: DraftRtr, notify: bytes, src: object = MS, now: float = 0.1):  # type: ignore[no-untyped-def]
    msg = decode_control(notify)
    assert isinstance(msg, MapNotify)
    return rtr.on_map_notify(notify, msg, src, now)  # type: ignore[arg-type]


def test_rtr_forwards_binds_and_relays() -> None:
    rtr = DraftRtr(RTR_KEY, 120.0, 10)
    register = _register()
    (forward,) = _forward(rtr, register)
    assert (forward.dst, forward.port, forward.payload) == (MS, 4342, register)
    out = _answer(rtr, _notify(register))
    (relay,) = out.sends
    assert (relay.dst, relay.port) == (NAT, 40000)
    inner = parse_udp_datagram(relay.payload[8:])
    assert (inner.ip.src, inner.ip.dst) == (MS, PRIVATE)
    assert inner.payload.endswith(bytes(4)) and verify_notify(inner.payload, SITE_KEY)
    assert out.changed == [NAT] and rtr.port_for(NAT) == 40000
    (entry,) = out.installs
    assert (entry.prefix, [(r.address, r.port) for r in entry.rlocs]) == (PREFIX, [(NAT, 40000)])
    (binding,) = rtr.bindings()
    assert (binding.xtr_id, binding.private, binding.map_server) == (XTR_ID, PRIVATE, MS)
    # The same Map-Notify again answers nothing we are waiting for.
    assert _answer(rtr, _notify(register)).sends == []
    assert rtr.drops == {"rtr-notify-unknown-nonce": 1}


@pytest.mark.parametrize(
    ("register", "reason"),
    [
        (_register(for_rtr=False), "rtr-register-not-for-rtr"),
        (_register(xtr_id=None), "rtr-register-no-xtr-id"),
    ],
)
def test_rtr_refuses_registers(register: bytes, reason: str) -> None:
    rtr = DraftRtr(RTR_KEY, 120.0, 10)
    assert _forward(rtr, register) == []
    assert rtr.drops == {reason: 1}


def test_rtr_without_a_key_forwards_nothing() -> None:
    rtr = DraftRtr(None, 120.0, 10)
    assert _forward(rtr, _register()) == []
    assert rtr.drops == {"rtr-no-ms-rtr-key": 1}


def test_rtr_refuses_bad_notifies() -> None:
    rtr = DraftRtr(RTR_KEY, 120.0, 10)
    register = _register()
    _forward(rtr, register)
    assert _answer(rtr, _notify(register), src=ip_address("192.0.2.99")).sends == []
    assert _answer(rtr, _notify(register, key=b"wrong")).sends == []
    assert _answer(rtr, _notify(register, xtr_id=XTR_ID + 1)).sends == []
    plain = encode_signed(replace(decode_control(_notify(register)), rtr_auth=None), SITE_KEY)  # type: ignore[type-var]
    assert _answer(rtr, plain).sends == []
    assert rtr.drops == {
        "rtr-notify-unknown-nonce": 1,
        "rtr-notify-auth-failed": 1,
        "rtr-notify-xtr-id-mismatch": 1,
        "rtr-notify-not-for-rtr": 1,
    }
    assert not rtr.bindings() and rtr.port_for(NAT) is None


def test_rtr_bindings_per_xtr_id_move_expire_and_evict() -> None:
    rtr = DraftRtr(RTR_KEY, 100.0, 2)
    a, b = _register(1, XTR_ID), _register(2, XTR_ID + 1)
    _forward(rtr, a, port=40000)
    _forward(rtr, b, port=40001)
    _answer(rtr, _notify(a))
    out = _answer(rtr, _notify(b))
    assert out.changed == [NAT] and rtr.port_for(NAT, 0, PREFIX) == 40001  # latest confirmed
    assert rtr.port_for(NAT) == 40000  # naming no prefix: the first xTR there
    assert len(rtr.bindings()) == 2
    # xTR a's NAT mapping moves: reported; b keeps its own.
    a2 = _register(3, XTR_ID)
    _forward(rtr, a2, src=ip_address("192.0.2.31"), port=50000, now=10.0)
    out = _answer(rtr, _notify(a2), now=10.1)
    assert ip_address("192.0.2.31") in out.changed and rtr.stats["bindings-moved"] == 1
    assert rtr.port_for(ip_address("192.0.2.31")) == 50000 and rtr.port_for(NAT) == 40001
    # A third xTR evicts the least recently confirmed one (b).
    c = _register(4, XTR_ID + 2)
    _forward(rtr, c, src=ip_address("192.0.2.32"), port=60000, now=20.0)
    out = _answer(rtr, _notify(c), now=20.1)
    assert rtr.drops["rtr-binding-evicted"] == 1 and NAT in out.changed
    assert rtr.port_for(NAT) is None
    assert [b.xtr_id for b in rtr.bindings()] == [XTR_ID, XTR_ID + 2]
    # Unconfirmed for the timeout: forgotten.
    assert rtr.next_deadline() == pytest.approx(110.1)
    gone = rtr.expire(110.1)
    assert [b.xtr_id for b in gone] == [XTR_ID] and rtr.port_for(ip_address("192.0.2.31")) is None


def test_rtr_ports_per_eid_prefix_for_xtrs_sharing_a_nat_address() -> None:
    """Two xTRs behind one NAT address: each EID-prefix the Map-Server confirmed goes to the
    port of its own xTR; a refresh changes nothing; when one goes, its prefix falls back to
    the address's remaining xTR."""
    rtr = DraftRtr(RTR_KEY, 100.0, 10)
    other = ip_network("198.51.100.128/25")
    a = _register(1, XTR_ID)
    b = _register(2, XTR_ID + 1, prefix=other)
    _forward(rtr, a, port=40000)
    _forward(rtr, b, port=40001, now=1.0)
    _answer(rtr, _notify(a))
    _answer(rtr, _notify(b), now=1.1)
    assert rtr.port_for(NAT, 0, PREFIX) == 40000
    assert rtr.port_for(NAT, 0, other) == 40001
    assert rtr.port_for(NAT) == 40000  # no prefix named: the first xTR there
    again = _register(3, XTR_ID)
    _forward(rtr, again, port=40000, now=50.0)
    assert _answer(rtr, _notify(again), now=50.1).changed == []
    gone = rtr.expire(101.1)
    assert [g.xtr_id for g in gone] == [XTR_ID + 1]
    assert rtr.port_for(NAT, 0, other) == 40000 and rtr.port_for(NAT, 0, PREFIX) == 40000


def test_rtr_forgets_unanswered_registers() -> None:
    rtr = DraftRtr(RTR_KEY, 100.0, 2)
    register = _register()
    _forward(rtr, register)
    assert rtr.next_deadline() == PENDING_TIMEOUT
    rtr.expire(PENDING_TIMEOUT)
    assert _answer(rtr, _notify(register), now=PENDING_TIMEOUT).sends == []
    assert rtr.drops == {"rtr-notify-unknown-nonce": 1}


def test_rtr_keeps_the_first_sender_of_a_nonce_in_flight() -> None:
    rtr = DraftRtr(RTR_KEY, 100.0, 10)
    register = _register()
    assert _forward(rtr, register, port=40000)
    assert _forward(rtr, register, port=40000, now=1.0)  # a retransmission: forwarded again
    assert _forward(rtr, register, src=ip_address("192.0.2.66"), port=40000, now=1.5) == []
    assert rtr.drops == {"rtr-register-pending-conflict": 1}
    (relay,) = _answer(rtr, _notify(register), now=2.0).sends
    assert (relay.dst, relay.port) == (NAT, 40000)


def test_rtr_rate_limits_registers_per_source() -> None:
    rtr = DraftRtr(RTR_KEY, 100.0, 10, rate=1.0, burst=2.0)
    for n in range(4):
        _forward(rtr, _register(n + 1))
    assert rtr.stats["registers-forwarded"] == 2 and rtr.drops == {"rtr-register-rate-limited": 2}


# --- configuration ----------------------------------------------------------------------------


def test_style_and_keys_parse() -> None:
    xtr = parse_config(XTR_CP + '\n[nat-traversal]\nenabled = true\nstyle = "draft"\n')
    assert xtr.nat_traversal.style == "draft"
    assert parse_config(XTR_CP).nat_traversal.style == "lispers"
    ms = parse_config(
        MSMR
        + '\n[mapping-system]\nrtr-rlocs = ["192.0.2.20"]\nms-rtr-key = "k"\nms-rtr-key-id = 2\n'
    )
    assert (ms.mapping_system.ms_rtr_key, ms.mapping_system.ms_rtr_key_id) == (b"k", 2)
    assert "k'" not in repr(ms.mapping_system)


@pytest.mark.parametrize(
    ("text", "key_path", "fragment"),
    [
        (
            XTR_CP + '\n[nat-traversal]\nstyle = "oor"\n',
            "nat-traversal.style",
            "'oor' is not one of lispers, draft",
        ),
        (
            XTR_CP + '\n[mapping-system]\nms-rtr-key = "k"\n',
            "mapping-system.ms-rtr-key",
            "needs the 'map-server' role",
        ),
        (
            MSMR + DRAFT_MS_WITHOUT_KEY,
            "mapping-system.rtr-rlocs",
            "set mapping-system.ms-rtr-key",
        ),
        (
            MSMR + '\n[mapping-system]\nms-rtr-key = ""\n',
            "mapping-system.ms-rtr-key",
            "must not be empty",
        ),
    ],
)
def test_bad_configurations_are_refused_by_key_path(
    text: str, key_path: str, fragment: str
) -> None:
    err = error_of(text)
    assert isinstance(err, ConfigError)
    assert err.key_path == key_path and fragment in err.message, err
