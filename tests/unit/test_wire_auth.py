"""Unit tests of lispd.wire.auth and the signed encoders (Map-Register, Map-Notify(-Ack), Info).

Known answers are computed independently here: the message bytes are written out by hand
(RFC 9301 section 5, Map-Register: key-id at byte 12, length at 14, data at 16, HMAC over the
whole message with the data zeroed) and hashed with the stdlib ``hmac`` module.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from lispd.wire import auth
from lispd.wire.address import NatTraversalAddress
from lispd.wire.auth import KeyId
from lispd.wire.errors import EncodeError, WireError
from lispd.wire.info import InfoMessage, decode_info, encode_info, encode_info_signed
from lispd.wire.mapregister import (
    MapNotify,
    MapRegister,
    RtrAuth,
    decode_map_notify,
    decode_map_register,
    encode_map_notify,
    encode_map_register,
    encode_signed,
    verify_notify,
)
from lispd.wire.records import EidRecord, Locator

KEY = b"lisp-site-key"
WRONG_KEY = b"lisp-site-kez"

RECORD = EidRecord(
    IPv4Address("198.51.100.0"),
    24,
    (Locator(IPv4Address("192.0.2.1"), 1, 100, local=True),),
    authoritative=True,
)

BODY_AFTER_AUTH = bytes.fromhex(
    # EID-record
    "000005a0"  # TTL 1440
    "01"  # locator count 1
    "18"  # mask-len 24
    "1000"  # ACT 0, A=1
    "0000"  # map-version 0
    "0001"  # AFI 1
    "c6336400"  # 198.51.100.0
    "01"  # priority 1
    "64"  # weight 100
    "ff"  # m-priority 255
    "00"  # m-weight 0
    "0005"  # L + R
    "0001"  # AFI 1
    "c0000201"  # 192.0.2.1
    # I=1 tail
    "000102030405060708090a0b0c0d0e0f"  # xTR-ID
    "0000000000000001"  # site-ID 1
)


def register_zeroed(key_id: int, auth_len: int) -> bytes:
    """A Map-Register with I and M set, its authentication data all zeros, built by hand."""
    return (
        bytes.fromhex(
            "32"  # type 3, I=1 (xTR-ID + site-ID appended)
            "00"  # reserved
            "01"  # M=1
            "01"  # record count 1
            "0000000000000007"  # nonce 7
        )
        + key_id.to_bytes(2, "big")  # key-id
        + auth_len.to_bytes(2, "big")  # authentication data length
        + bytes(auth_len)  # authentication data, zeroed
        + BODY_AFTER_AUTH
    )


def splice(zeroed: bytes, digest: bytes) -> bytes:
    return zeroed[:16] + digest + zeroed[16 + len(digest) :]


def register_obj(key_id: int) -> MapRegister:
    return MapRegister(
        nonce=7,
        records=(RECORD,),
        key_id=key_id,
        want_map_notify=True,
        xtr_id=0x000102030405060708090A0B0C0D0E0F,
        site_id=1,
    )


ALGORITHMS = [
    (KeyId.HMAC_SHA_1_96, hashlib.sha1, 20, 12),
    (KeyId.HMAC_SHA_256_128, hashlib.sha256, 32, 16),
]
ALG_IDS = ["sha1", "sha256"]


# --- primitives -----------------------------------------------------------------------------------


def test_compute_matches_rfc2202_and_rfc4231_vectors() -> None:
    data = b"what do ya want for nothing?"
    assert auth.compute(1, b"Jefe", data).hex() == "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
    assert auth.compute(2, b"Jefe", data).hex() == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_lengths() -> None:
    assert auth.auth_length(KeyId.NONE) == 0
    assert auth.auth_length(KeyId.HMAC_SHA_1_96) == 20
    assert auth.auth_length(KeyId.HMAC_SHA_256_128) == 32
    assert auth.TRUNCATED_LENGTH == {KeyId.HMAC_SHA_1_96: 12, KeyId.HMAC_SHA_256_128: 16}


@pytest.mark.parametrize("key_id", [3, 4, 255, 0x0101, 0xFFFF])
def test_unknown_key_id_in_helpers(key_id: int) -> None:
    with pytest.raises(EncodeError):
        auth.auth_length(key_id)
    with pytest.raises(EncodeError):
        auth.compute(key_id, KEY, b"x")


def test_key_id_none_computes_nothing() -> None:
    assert auth.compute(KeyId.NONE, KEY, b"anything") == b""


# --- known answers over hand-built messages ------------------------------------------------------


@pytest.mark.parametrize(("key_id", "digestmod", "full", "short"), ALGORITHMS, ids=ALG_IDS)
def test_known_answer_map_register(key_id, digestmod, full, short) -> None:
    zeroed = register_zeroed(key_id, full)
    expected_digest = hmac.new(KEY, zeroed, digestmod).digest()
    assert len(expected_digest) == full
    expected = splice(zeroed, expected_digest)

    # The hand-built zeroed message is exactly what the encoder writes before signing.
    assert encode_map_register(replace(register_obj(key_id), auth_data=bytes(full))) == zeroed
    assert encode_signed(register_obj(key_id), KEY) == expected
    assert auth.sign(zeroed, KEY) == expected
    assert auth.compute(key_id, KEY, zeroed) == expected_digest

    assert expected[12:14] == key_id.to_bytes(2, "big")
    assert expected[14:16] == full.to_bytes(2, "big")  # full digest on the wire
    assert expected[16 : 16 + full] == expected_digest
    decoded = decode_map_register(expected)
    assert decoded.auth_data == expected_digest
    assert decoded == replace(register_obj(key_id), auth_data=expected_digest)


@pytest.mark.parametrize(("key_id", "digestmod", "full", "short"), ALGORITHMS, ids=ALG_IDS)
def test_verify_right_and_wrong_key(key_id, digestmod, full, short) -> None:
    wire = encode_signed(register_obj(key_id), KEY)
    assert auth.verify(wire, KEY) is True
    assert auth.verify(wire, WRONG_KEY) is False
    assert auth.verify(wire, b"") is False
    assert auth.verify(wire, KEY[:-1]) is False


@pytest.mark.parametrize(("key_id", "digestmod", "full", "short"), ALGORITHMS, ids=ALG_IDS)
def test_any_flipped_bit_fails_verification(key_id, digestmod, full, short) -> None:
    wire = encode_signed(register_obj(key_id), KEY)
    for bit in range(len(wire) * 8):
        flipped = bytearray(wire)
        flipped[bit // 8] ^= 0x80 >> (bit % 8)
        try:
            ok = auth.verify(bytes(flipped), KEY)
        except WireError as exc:
            # Only a flip in the length field can make it point past the message.
            assert 14 <= bit // 8 < 16, bit
            assert exc.reason == "bad-auth-length"
            continue
        assert ok is False, f"bit {bit} flipped still verifies"


@pytest.mark.parametrize(("key_id", "digestmod", "full", "short"), ALGORITHMS, ids=ALG_IDS)
def test_truncated_digest_accepted(key_id, digestmod, full, short) -> None:
    zeroed = register_zeroed(key_id, short)
    digest = hmac.new(KEY, zeroed, digestmod).digest()[:short]
    wire = splice(zeroed, digest)
    assert auth.verify(wire, KEY) is True
    assert auth.verify(wire, WRONG_KEY) is False
    assert decode_map_register(wire).auth_data == digest
    # The truncated form is the leading bytes of the HMAC over the *short* zeroed field.
    other = splice(zeroed, hmac.new(KEY, register_zeroed(key_id, full), digestmod).digest()[:short])
    assert auth.verify(other, KEY) is False


@pytest.mark.parametrize(
    ("key_id", "length"),
    [(1, 0), (1, 8), (1, 16), (1, 32), (2, 0), (2, 12), (2, 20), (2, 31)],
)
def test_other_lengths_never_verify(key_id: int, length: int) -> None:
    digestmod = hashlib.sha1 if key_id == 1 else hashlib.sha256
    zeroed = register_zeroed(key_id, length)
    digest = (hmac.new(KEY, zeroed, digestmod).digest() * 2)[:length]
    assert auth.verify(splice(zeroed, digest), KEY) is False


@pytest.mark.parametrize("key_id", [3, 0x0101, 0x0102, 0xFFFF])
def test_unknown_key_id_never_verifies(key_id: int) -> None:
    zeroed = register_zeroed(key_id, 20)
    digest = hmac.new(KEY, zeroed, hashlib.sha1).digest()
    assert auth.verify(splice(zeroed, digest), KEY) is False


def test_unknown_key_id_cannot_be_signed() -> None:
    with pytest.raises(EncodeError):
        encode_signed(register_obj(3), KEY)
    with pytest.raises(EncodeError):
        auth.sign(register_zeroed(3, 20), KEY)


def test_key_id_none() -> None:
    msg = register_obj(KeyId.NONE)
    wire = encode_signed(msg, KEY)
    assert wire == encode_map_register(msg)
    assert wire[12:16] == b"\x00\x00\x00\x00"
    assert wire == register_zeroed(0, 0)
    assert auth.verify(wire, KEY) is False  # no authentication never counts as verified
    assert decode_map_register(wire) == msg


def test_sign_refuses_wrong_length_field() -> None:
    with pytest.raises(EncodeError):
        auth.sign(register_zeroed(1, 32), KEY)
    with pytest.raises(EncodeError):
        auth.sign(register_zeroed(2, 20), KEY)


def test_verify_short_message_is_truncated() -> None:
    with pytest.raises(WireError) as info:
        auth.verify(bytes.fromhex("3000000100000000000000070001"), KEY)
    assert info.value.reason == "truncated"


def test_verify_length_beyond_message() -> None:
    wire = bytearray(encode_signed(register_obj(1), KEY))
    wire[14:16] = b"\xff\xff"
    with pytest.raises(WireError) as info:
        auth.verify(bytes(wire), KEY)
    assert info.value.reason == "bad-auth-length"


def test_sign_is_idempotent_over_stale_digest() -> None:
    # sign() hashes what it is given: a message must be zeroed first, and verify() zeroes itself.
    wire = encode_signed(register_obj(2), KEY)
    assert auth.verify(wire, KEY)
    assert auth.sign(wire, KEY) != wire


def test_different_keys_different_digests() -> None:
    a = encode_signed(register_obj(2), b"key-a")
    b = encode_signed(register_obj(2), b"key-b")
    assert a[:16] == b[:16] and a[48:] == b[48:]
    assert a[16:48] != b[16:48]


def test_empty_key_still_hmac() -> None:
    wire = encode_signed(register_obj(1), b"")
    assert wire[16:36] == hmac.new(b"", register_zeroed(1, 20), hashlib.sha1).digest()
    assert auth.verify(wire, b"")


# --- Map-Notify / Map-Notify-Ack / Info -----------------------------------------------------------


@pytest.mark.parametrize("ack", [False, True], ids=["notify", "ack"])
@pytest.mark.parametrize(("key_id", "digestmod", "full", "short"), ALGORITHMS, ids=ALG_IDS)
def test_known_answer_map_notify(ack, key_id, digestmod, full, short) -> None:
    zeroed = (
        bytes.fromhex(
            ("50" if ack else "40")  # type 5 Map-Notify-Ack / type 4 Map-Notify
            + "00"  # reserved
            "00"  # reserved
            "01"  # record count 1
            "0000000000000007"  # nonce 7
        )
        + key_id.to_bytes(2, "big")
        + full.to_bytes(2, "big")
        + bytes(full)
        + BODY_AFTER_AUTH[:-24]  # the record, no xTR-ID/site-ID
    )
    expected = splice(zeroed, hmac.new(KEY, zeroed, digestmod).digest())
    msg = MapNotify(nonce=7, records=(RECORD,), key_id=key_id, ack=ack)
    assert encode_map_notify(replace(msg, auth_data=bytes(full))) == zeroed
    assert encode_signed(msg, KEY) == expected
    assert auth.verify(expected, KEY)
    assert not auth.verify(expected, WRONG_KEY)
    assert decode_map_notify(expected).ack is ack


def test_map_notify_signed_with_xtr_id_for_rtr() -> None:
    msg = MapNotify(nonce=9, records=(RECORD,), key_id=2, xtr_id=5, site_id=6, rtr_auth=RtrAuth())
    wire = encode_signed(msg, KEY)
    assert wire[-4:] == bytes(4)  # the empty MS-RTR block, outside the HMAC
    assert verify_notify(wire, KEY)
    assert auth.verify(wire[:-4], KEY)
    tail = bytearray(wire)
    tail[-5] ^= 1  # site-ID is covered by the HMAC
    assert not verify_notify(bytes(tail), KEY)


@pytest.mark.parametrize(("key_id", "digestmod", "full", "short"), ALGORITHMS, ids=ALG_IDS)
def test_known_answer_info_request(key_id, digestmod, full, short) -> None:
    zeroed = (
        bytes.fromhex(
            "70"  # type 7, R=0 (Info-Request)
            "000000"  # reserved
            "0000000000000042"  # nonce 0x42
        )
        + key_id.to_bytes(2, "big")
        + full.to_bytes(2, "big")
        + bytes(full)
        + bytes.fromhex(
            "00000000"  # TTL 0
            "00"  # reserved
            "00"  # EID mask-len 0
            "0000"  # EID AFI 0
            "0000"  # AFI 0
        )
    )
    expected = splice(zeroed, hmac.new(KEY, zeroed, digestmod).digest())
    msg = InfoMessage(nonce=0x42, key_id=key_id)
    assert encode_info(replace(msg, auth_data=bytes(full))) == zeroed
    assert encode_info_signed(msg, KEY) == expected
    assert auth.verify(expected, KEY)
    assert not auth.verify(expected, WRONG_KEY)
    assert decode_info(expected).auth_data == expected[16 : 16 + full]


def test_info_reply_signed_round_trip() -> None:
    nat = NatTraversalAddress(
        4342,
        50000,
        IPv4Address("203.0.113.5"),
        IPv4Address("192.0.2.9"),
        IPv4Address("192.0.2.129"),
        (IPv4Address("192.0.2.13"), IPv4Address("192.0.2.17")),
    )
    msg = InfoMessage(nonce=3, reply=True, key_id=2, ttl=15, address=nat)
    wire = encode_info_signed(msg, KEY)
    assert auth.verify(wire, KEY)
    decoded = decode_info(wire)
    assert decoded == replace(msg, auth_data=wire[16:48])
    assert encode_info(decoded) == wire


def test_info_key_id_none() -> None:
    msg = InfoMessage(nonce=3)
    assert encode_info_signed(msg, KEY) == encode_info(msg)
    assert not auth.verify(encode_info(msg), KEY)


# --- a real capture -------------------------------------------------------------------------------

# UDP payloads of the two frames of tcpdump's tests/lisp_eid_register.pcap (HMAC-SHA-1, 20 bytes).
TCPDUMP_FRAME_1 = bytes.fromhex(
    "32001102c4218228892d20a4000100144bbb9614a67a86040407799545371906836cd1d6"
    "000005a001201000000000010a1e01640164016400000001141408fd"
    "000005a001201000000000010a1e01600164016400000001141408fc"
    "9787ad753caf58a713fa6920e6d27a8f0000000000000000"
)
TCPDUMP_FRAME_2 = bytes.fromhex(
    "32001102c4218228892d20a4000100144bbb9614a67a86040407799545371906836cd1d6"
    "000005a001201000000000010a1e01640164016400000001141408fd"
    "000005a002201000000000010a1e01600164016400000001141408fb"
    "0164016400000001141408fc"
    "9787ad753caf58a713fa6920e6d27a8f0000000000000000"
)
CANDIDATE_KEYS = [b"password", b"lisp", b"test", b"key", b"tcpdump", b"secret"]


@pytest.mark.parametrize("frame", [TCPDUMP_FRAME_1, TCPDUMP_FRAME_2], ids=["frame1", "frame2"])
def test_tcpdump_capture_decodes_and_reencodes(frame: bytes) -> None:
    msg = decode_map_register(frame)
    assert msg.key_id == KeyId.HMAC_SHA_1_96
    assert len(msg.auth_data) == 20
    assert msg.want_map_notify and msg.xtr_id is not None
    assert encode_map_register(msg) == frame


@pytest.mark.parametrize("frame", [TCPDUMP_FRAME_1, TCPDUMP_FRAME_2], ids=["frame1", "frame2"])
def test_tcpdump_capture_does_not_verify_with_guessable_keys(frame: bytes) -> None:
    # No common key verifies.  The two frames differ in their records yet carry byte-identical
    # authentication data, so the digest cannot be valid for both: the test-suite packets were
    # edited after signing.
    for key in CANDIDATE_KEYS:
        assert auth.verify(frame, key) is False
    assert TCPDUMP_FRAME_1[16:36] == TCPDUMP_FRAME_2[16:36]
    assert TCPDUMP_FRAME_1[36:] != TCPDUMP_FRAME_2[36:]
