"""Property tests: every decoder, fed random bytes and mutations of valid messages, either
raises WireError or returns a value that re-encodes and decodes back to itself.

The number of examples per decoder is ``LISPD_FUZZ_EXAMPLES`` (2,000 by default, what the suite
runs so that it stays well under 15 minutes; a long run sets 100,000 or more).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lispd.wire.address import decode_address, encode_address
from lispd.wire.control import decode_control, encode_control
from lispd.wire.data import decapsulate, decode_data_header, encapsulate, encode_data_header
from lispd.wire.ecm import decode_ecm, encode_ecm
from lispd.wire.errors import WireError
from lispd.wire.info import decode_info, encode_info
from lispd.wire.ip import build_udp_datagram, parse_udp_datagram
from lispd.wire.mapreferral import decode_map_referral, encode_map_referral
from lispd.wire.mapregister import (
    decode_map_notify,
    decode_map_register,
    encode_map_notify,
    encode_map_register,
)
from lispd.wire.mapreply import decode_map_reply, encode_map_reply
from lispd.wire.maprequest import decode_map_request, encode_map_request
from lispd.wire.packet import decode_ip_packet
from lispd.wire.reader import Reader
from tests.fuzz.seeds import control_seeds, packet_seeds

EXAMPLES = int(os.environ.get("LISPD_FUZZ_EXAMPLES", "2000"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


@st.composite
def mutated(draw: st.DrawFn, seeds: tuple[bytes, ...]) -> bytes:
    """A seed with a few mutations: truncation, bit flips, byte and 16-bit field overwrites
    (length fields, AFIs, counts), insertions and deletions — or plain random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 5))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == 0:
            del data[i:]
        elif op == 1:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == 2:
            data[i] = draw(st.integers(0, 255))
        elif op == 3 and i + 1 < len(data):
            value = draw(st.sampled_from([0, 1, 2, 0xFF, 0x100, 0x4003, 0xFFFF]))
            data[i : i + 2] = value.to_bytes(2, "big")
        elif op == 4:
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[i : i + draw(st.integers(1, 8))]
    return bytes(data)


def _address(data: bytes) -> Any:
    r = Reader(data)
    addr = decode_address(r)
    return addr, r.pos


def _address_encode(value: Any) -> bytes:
    return encode_address(value[0])


CASES: list[tuple[str, Callable[[bytes], Any], Callable[[Any], bytes]]] = [
    ("map-request", decode_map_request, encode_map_request),
    ("map-reply", decode_map_reply, encode_map_reply),
    ("map-register", decode_map_register, encode_map_register),
    ("map-notify", decode_map_notify, encode_map_notify),
    ("map-referral", decode_map_referral, encode_map_referral),
    ("info", decode_info, encode_info),
    ("ecm", decode_ecm, encode_ecm),
    ("control", decode_control, encode_control),
    ("address", _address, _address_encode),
]


def check_roundtrip(decode: Callable[[bytes], Any], encode: Callable[[Any], bytes], data: bytes):
    """The property: WireError, or a value whose encoding decodes to an equal value."""
    try:
        value = decode(data)
    except WireError as exc:
        assert exc.reason and exc.reason == exc.reason.lower()
        return
    again = decode(encode(value))
    if isinstance(value, tuple):  # address: compare the address, not the consumed length
        assert again[0] == value[0]
    else:
        assert again == value


@pytest.mark.parametrize(("name", "decode", "encode"), CASES, ids=[c[0] for c in CASES])
def test_control_decoders(name: str, decode: Callable, encode: Callable) -> None:
    @FUZZ
    @given(mutated(control_seeds()))
    def run(data: bytes) -> None:
        check_roundtrip(decode, encode, data)

    run()


@FUZZ
@given(st.binary(min_size=0, max_size=16) | mutated(packet_seeds()))
def test_data_header(data: bytes) -> None:
    check_roundtrip(decode_data_header, encode_data_header, data[:8] if len(data) >= 8 else data)


@FUZZ
@given(mutated(packet_seeds()))
def test_udp_and_encapsulation(data: bytes) -> None:
    check_roundtrip(parse_udp_datagram, build_udp_datagram, data)
    check_roundtrip(decapsulate, encapsulate, data)


@FUZZ
@given(mutated(packet_seeds()))
def test_decode_ip_packet_never_raises(data: bytes) -> None:
    """The whole-packet classifier used on captures reports errors, it never raises, also
    when told the capture may have cut the packet short (``lispd decode --pcap``)."""
    decode_ip_packet(data)
    for end in (len(data), len(data) * 3 // 4, len(data) // 2, 60, 40):
        decode_ip_packet(data[:end], cut=True)
