"""The MS-RTR authentication block of a Map-Notify with the R bit (LISP NAT traversal).

Layout (after the records, and after the xTR-ID/site-ID when the I bit is set): MS-RTR Key ID
(16 bits), MS-RTR Authentication Data Length (16 bits), MS-RTR Authentication Data.  The site
HMAC covers the message up to the block; the MS-RTR HMAC covers the whole message with only the
MS-RTR authentication data zeroed.  Known answers are computed here with the stdlib ``hmac``.
No capture needed (tests/wire/test_oor_notify.py checks the same on Open Overlay Router's).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from ipaddress import IPv4Address

import pytest

from lispd.wire import auth
from lispd.wire.control import decode_control, encode_control
from lispd.wire.errors import EncodeError, WireError
from lispd.wire.mapregister import (
    MapNotify,
    MapRegister,
    RtrAuth,
    decode_map_notify,
    encode_map_notify,
    encode_signed,
    verify_notify,
    verify_rtr_auth,
)
from lispd.wire.records import EidRecord, Locator

SITE_KEY = b"site-key"
RTR_KEY = b"rtr-key"
RECORD = EidRecord(
    IPv4Address("198.51.100.0"), 25, (Locator(IPv4Address("192.0.2.20"), 1, 100),), ttl=10
)
XTR_ID = 0xFC384016254E5FE13CD179A396A7AD8E

# (a) what a Map-Server sends the RTR; (b) the data-Map-Notify the RTR relays to the xTR.
TO_RTR = MapNotify(
    nonce=0xBFF7B57B6BAD361F,
    records=(RECORD,),
    key_id=auth.KeyId.HMAC_SHA_1_96,
    xtr_id=XTR_ID,
    site_id=0,
    rtr_auth=RtrAuth(auth.KeyId.HMAC_SHA_1_96, bytes(range(20))),
)
RELAYED = MapNotify(
    nonce=TO_RTR.nonce,
    records=TO_RTR.records,
    key_id=TO_RTR.key_id,
    xtr_id=XTR_ID,
    site_id=0,
    rtr_auth=RtrAuth(),
)


@pytest.mark.parametrize("msg", [TO_RTR, RELAYED], ids=["24-byte-block", "empty-block"])
def test_round_trip(msg: MapNotify) -> None:
    wire = encode_map_notify(msg)
    block = msg.rtr_auth
    assert block is not None
    assert int.from_bytes(wire[:4], "big") & 0x0C000000 == 0x0C000000  # I and R
    assert wire[-4 - len(block.data) :] == struct.pack("!HH", block.key_id, len(block.data)) + (
        block.data
    )
    assert decode_map_notify(wire) == msg
    assert decode_control(wire) == msg
    assert encode_control(decode_control(wire)) == wire
    assert msg.for_rtr


def test_block_without_ids_follows_the_records() -> None:
    msg = MapNotify(nonce=1, records=(RECORD,), key_id=0, rtr_auth=RtrAuth(2, b"\xaa" * 32))
    wire = encode_map_notify(msg)
    assert int.from_bytes(wire[:4], "big") & 0x0C000000 == 0x04000000  # R only
    assert len(wire) == len(encode_map_notify(MapNotify(1, (RECORD,), key_id=0))) + 36
    assert decode_map_notify(wire) == msg


def test_no_r_bit_no_block() -> None:
    msg = MapNotify(nonce=1, records=(RECORD,), key_id=0)
    assert not msg.for_rtr
    assert decode_map_notify(encode_map_notify(msg)).rtr_auth is None


@pytest.mark.parametrize("msg", [TO_RTR, RELAYED], ids=["24-byte-block", "empty-block"])
def test_truncated_block_refused(msg: MapNotify) -> None:
    wire = encode_map_notify(msg)
    assert msg.rtr_auth is not None
    for cut in range(1, 5 + len(msg.rtr_auth.data)):
        with pytest.raises(WireError) as err:
            decode_map_notify(wire[:-cut])
        assert err.value.reason == "truncated", cut
        assert "ms-rtr" in err.value.detail, cut


def test_truncated_block_names_its_field() -> None:
    wire = encode_map_notify(TO_RTR)
    for cut, field in ((1, "ms-rtr authentication data"), (22, "ms-rtr auth length")):
        with pytest.raises(WireError, match=field) as err:
            decode_map_notify(wire[:-cut])
        assert err.value.reason == "truncated"


@pytest.mark.parametrize("msg", [TO_RTR, RELAYED], ids=["24-byte-block", "empty-block"])
def test_byte_after_the_block_refused(msg: MapNotify) -> None:
    with pytest.raises(WireError) as err:
        decode_map_notify(encode_map_notify(msg) + b"\x00")
    assert err.value.reason == "trailing-bytes"
    assert "ms-rtr" in err.value.detail


def test_trailing_bytes_without_r_bit_still_refused() -> None:
    plain = encode_map_notify(MapNotify(nonce=1, records=(RECORD,), key_id=0))
    for junk in (b"\x00", bytes(4), struct.pack("!HH", 1, 20) + bytes(20)):
        with pytest.raises(WireError) as err:
            decode_map_notify(plain + junk)
        assert err.value.reason == "trailing-bytes"


def test_block_encoder_range() -> None:
    with pytest.raises(EncodeError):
        encode_map_notify(MapNotify(1, (), rtr_auth=RtrAuth(1 << 16)))
    with pytest.raises(EncodeError):
        encode_map_notify(MapNotify(1, (), rtr_auth=RtrAuth(1, bytes(1 << 16))))


def test_signed_known_answer() -> None:
    """Site HMAC over the message up to the block (R bit set, site auth zeroed); MS-RTR HMAC
    over everything with the MS-RTR data zeroed."""
    wire = encode_signed(TO_RTR, SITE_KEY, RTR_KEY)
    body_len = len(wire) - 24
    body = bytearray(wire[:body_len])
    site = bytes(body[16:36])
    body[16:36] = bytes(20)
    assert site == hmac.new(SITE_KEY, bytes(body), hashlib.sha1).digest()
    msrtr = hmac.new(
        RTR_KEY, wire[:body_len] + struct.pack("!HH", 1, 20) + bytes(20), hashlib.sha1
    ).digest()
    assert wire[body_len:] == struct.pack("!HH", 1, 20) + msrtr
    assert verify_notify(wire, SITE_KEY)
    assert not verify_notify(wire, RTR_KEY)
    assert verify_rtr_auth(wire, RTR_KEY)
    assert not verify_rtr_auth(wire, SITE_KEY)
    flipped = bytearray(wire)
    flipped[52] ^= 1  # the locator priority: both HMACs cover it
    assert not verify_notify(bytes(flipped), SITE_KEY)
    assert not verify_rtr_auth(bytes(flipped), RTR_KEY)


def test_relayed_form_keeps_the_site_hmac() -> None:
    """The RTR swaps its block for the empty one; the xTR's site HMAC still verifies."""
    to_rtr = encode_signed(TO_RTR, SITE_KEY, RTR_KEY)
    relayed = encode_signed(RELAYED, SITE_KEY)
    assert relayed == to_rtr[:-24] + bytes(4)
    assert verify_notify(relayed, SITE_KEY)
    assert not verify_rtr_auth(relayed, RTR_KEY)  # the empty block verifies nothing


def test_rtr_key_needs_a_block() -> None:
    with pytest.raises(EncodeError):
        encode_signed(MapNotify(1, (RECORD,)), SITE_KEY, RTR_KEY)
    with pytest.raises(EncodeError):
        encode_signed(MapRegister(1, (RECORD,)), SITE_KEY, RTR_KEY)
