"""Unit tests of lispd.control.infoserver: the Map-Server's Info-Request responder (sans-IO,
fake clock, replies checked through the wire codec, golden bytes instead of tshark)."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lispd.control.infoserver import InfoResponder
from lispd.control.outputs import SendControl
from lispd.wire import auth
from lispd.wire.address import (
    NO_ADDRESS,
    DistinguishedName,
    InstanceIdAddress,
    NatTraversalAddress,
)
from lispd.wire.errors import WireError
from lispd.wire.info import InfoMessage, decode_info, encode_info, encode_info_signed

MS4 = IPv4Address("192.0.2.9")
MS6 = IPv6Address("2001:db8::9")
NAT4 = IPv4Address("192.0.2.5")  # an xTR's request, as translated by its NAT
XTR6 = IPv6Address("2001:db8:1::1")
OTHER4 = IPv4Address("192.0.2.66")
RTR_A = IPv4Address("192.0.2.13")
RTR6 = IPv6Address("2001:db8::d")
EID = IPv4Address("198.51.100.0")


def request(nonce: int = 0x0102030405060708, **kw: object) -> InfoMessage:
    fields: dict[str, object] = {"ttl": 1440, "eid": EID, "eid_mask_len": 28}
    fields.update(kw)
    return InfoMessage(nonce=nonce, **fields)  # type: ignore[arg-type]


def test_reply_content() -> None:
    ms = InfoResponder([MS4, MS6], [RTR_A, RTR6])
    (out,) = ms.on_info_request(request(), NAT4, 61001, 0.0)
    assert type(out) is SendControl
    assert (out.dst, out.port) == (NAT4, 61001)
    reply = decode_info(out.payload)
    assert reply == InfoMessage(
        nonce=0x0102030405060708,
        reply=True,
        key_id=auth.KeyId.NONE,
        auth_data=b"",
        ttl=1440,
        eid=EID,
        eid_mask_len=28,
        address=NatTraversalAddress(
            ms_port=4342,
            etr_port=61001,
            global_etr_rloc=NAT4,
            ms_rloc=MS4,
            private_etr_rloc=NO_ADDRESS,
            rtr_rlocs=(RTR_A, RTR6),
        ),
    )
    assert ms.stats["info-replies-sent"] == 1 and not ms.drops


def test_reply_bytes_are_the_expected_ones_and_decode_back() -> None:
    """The encoded reply byte for byte (tshark-free), and decode(encode(x)) == x."""
    ms = InfoResponder([MS4], [RTR_A, RTR6])
    message = ms.reply_for(request(ttl=15, eid=NO_ADDRESS, eid_mask_len=0), NAT4, 50000)
    golden = bytes.fromhex(
        "78000000"  # type 7, R=1, reserved
        "0102030405060708"  # nonce
        "0000"  # key-id 0
        "0000"  # authentication data length 0
        "0000000f"  # TTL 15
        "00"  # reserved
        "00"  # EID mask-len
        "0000"  # EID-prefix AFI 0
        "4003"  # AFI LCAF
        "0000"  # rsvd1, flags
        "07"  # type 7 NAT-traversal
        "00"  # rsvd2
        "002a"  # length 42 = 2 + 2 + 6 + 6 + 2 + 6 + 18
        "10f6"  # MS port 4342
        "c350"  # ETR port 50000
        "0001c0000205"  # global ETR RLOC 192.0.2.5
        "0001c0000209"  # MS RLOC 192.0.2.9
        "0000"  # private ETR RLOC AFI 0
        "0001c000020d"  # RTR 192.0.2.13
        "000220010db800000000000000000000000d"  # RTR 2001:db8::d
    )
    payload = encode_info(message)
    assert payload == golden
    assert decode_info(payload) == message
    (out,) = ms.on_info_request(request(ttl=15, eid=NO_ADDRESS, eid_mask_len=0), NAT4, 50000, 0.0)
    assert out.payload == golden


def test_ipv6_requester_gets_the_ipv6_ms_rloc_and_eids_are_echoed() -> None:
    ms = InfoResponder([MS4, MS6], [RTR_A])
    eid = InstanceIdAddress(7, IPv6Address("2001:db8:100:1::"))
    (out,) = ms.on_info_request(request(eid=eid, eid_mask_len=64, ttl=0), XTR6, 4342, 0.0)
    reply = decode_info(out.payload)
    assert (reply.eid, reply.eid_mask_len, reply.ttl) == (eid, 64, 0)
    assert isinstance(reply.address, NatTraversalAddress)
    assert reply.address.ms_rloc == MS6 and reply.address.global_etr_rloc == XTR6
    assert reply.address.etr_port == 4342


def test_no_local_rloc_of_the_family_and_no_rtrs() -> None:
    ms = InfoResponder([MS4], [])
    (out,) = ms.on_info_request(request(), XTR6, 4342, 0.0)
    nat = decode_info(out.payload).address
    assert isinstance(nat, NatTraversalAddress)
    assert nat.ms_rloc == NO_ADDRESS and nat.rtr_rlocs == ()
    assert ms.ms_rloc(6) == NO_ADDRESS and ms.ms_rloc(4) == MS4


def test_a_host_name_in_the_request_is_not_echoed() -> None:
    """lispers.net puts its host name in the request's last address; the reply has the LCAF."""
    ms = InfoResponder([MS4], [RTR_A])
    (out,) = ms.on_info_request(request(address=DistinguishedName("xtr-1")), NAT4, 4342, 0.0)
    assert isinstance(decode_info(out.payload).address, NatTraversalAddress)


def test_authentication_is_neither_required_nor_checked() -> None:
    ms = InfoResponder([MS4], [RTR_A])
    signed = decode_info(
        encode_info_signed(request(key_id=auth.KeyId.HMAC_SHA_256_128), b"some-key")
    )
    assert signed.auth_data
    (out,) = ms.on_info_request(signed, NAT4, 4342, 0.0)
    reply = decode_info(out.payload)
    assert reply.key_id == auth.KeyId.NONE and reply.auth_data == b""
    bogus = InfoMessage(nonce=1, key_id=auth.KeyId.HMAC_SHA_1_96, auth_data=bytes(20))
    assert len(ms.on_info_request(bogus, NAT4, 4342, 0.0)) == 1


def test_an_info_reply_is_not_answered() -> None:
    ms = InfoResponder([MS4], [RTR_A])
    assert ms.on_info_request(InfoMessage(nonce=1, reply=True), NAT4, 4342, 0.0) == []
    assert ms.drops == {"info-unexpected-reply": 1}
    assert ms.stats["info-replies-sent"] == 0


def test_rate_limit_per_source_address() -> None:
    ms = InfoResponder([MS4], [RTR_A], rate=2.0, burst=5.0)
    answered = [len(ms.on_info_request(request(nonce=i), NAT4, 4342, 0.0)) for i in range(8)]
    assert answered == [1] * 5 + [0] * 3
    assert ms.drops == {"info-request-rate-limited": 3}
    # Another source has its own bucket.
    assert len(ms.on_info_request(request(), OTHER4, 4342, 0.0)) == 1
    # Tokens come back at ``rate`` per second.
    assert ms.on_info_request(request(), NAT4, 4342, 0.4) == []
    assert len(ms.on_info_request(request(), NAT4, 4342, 0.5)) == 1
    assert ms.on_info_request(request(), NAT4, 4342, 0.6) == []
    assert ms.drops == {"info-request-rate-limited": 5}
    assert ms.stats["info-replies-sent"] == 7


def test_replies_change_no_state() -> None:
    ms = InfoResponder([MS4], [RTR_A])
    first = ms.on_info_request(request(), NAT4, 61001, 0.0)
    ms.on_info_request(request(), NAT4, 62002, 1.0)  # another port: nothing remembered
    assert ms.on_info_request(request(), NAT4, 61001, 2.0) == first


def test_unencodable_echo_is_counted() -> None:
    ms = InfoResponder([MS4], [RTR_A])
    assert ms.on_info_request(request(ttl=1 << 32), NAT4, 4342, 0.0) == []
    assert ms.drops == {"info-reply-unencodable": 1}


def test_constructor_checks() -> None:
    with pytest.raises(TypeError):
        InfoResponder(["192.0.2.9"], [])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        InfoResponder([MS4], ["192.0.2.13"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        InfoResponder([MS4], [], rate=0)
    with pytest.raises(ValueError):
        InfoResponder([MS4], [], burst=0.5)
    ms = InfoResponder([MS4, MS4], [RTR_A, RTR_A, RTR6])
    assert ms.local_rlocs == (MS4,) and ms.rtrs == (RTR_A, RTR6)


def test_states() -> None:
    ms = InfoResponder([MS4], [RTR_A])
    ms.on_info_request(request(), NAT4, 4342, 0.0)
    ms.on_info_request(InfoMessage(nonce=1, reply=True), NAT4, 4342, 0.0)
    state = ms.states()
    json.dumps(state)
    assert state == {
        "local-rlocs": ["192.0.2.9"],
        "rtrs": ["192.0.2.13"],
        "drops": {"info-unexpected-reply": 1},
        "stats": {"info-replies-sent": 1},
    }


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=48), st.integers(1, 0xFFFF), st.sampled_from([NAT4, XTR6]))
def test_any_decodable_request_gets_a_decodable_reply(body: bytes, sport: int, src) -> None:
    ms = InfoResponder([MS4, MS6], [RTR_A, RTR6], rate=1e9, burst=1e9)
    header = bytes.fromhex("70000000") + (77).to_bytes(8, "big")
    try:
        msg = decode_info(header + body)
    except WireError:
        return
    for out in ms.on_info_request(msg, src, sport, 0.0):
        reply = decode_info(out.payload)
        assert reply.reply and reply.nonce == 77 and (out.dst, out.port) == (src, sport)
        assert (reply.eid, reply.eid_mask_len, reply.ttl) == (msg.eid, msg.eid_mask_len, msg.ttl)
