"""LISP-Trace codec (lispd.wire.trace): golden vectors, errors, helpers and fuzzing.

The golden vectors are written by hand from the format lispers.net defines (summarised in
``lispd/wire/trace.py``): the 16-byte header as hex
(word 0 = type 9 << 28 | client port, word 1 = client's private IPv4 RLOC, 8-byte nonce) and the
JSON body as lispers.net writes it (``json.dumps`` defaults: ", " and ": " separators, keys in
the order lispers.net inserts them: n, sr, hn, ets|dts, dr, rtts, hops, lats).
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lispd.wire.errors import (
    BAD_FIELD,
    BAD_JSON,
    BAD_TRACE,
    BAD_UTF8,
    TRUNCATED,
    EncodeError,
    WireError,
)
from lispd.wire.trace import (
    NODE_ETR,
    NODE_ITR,
    NODE_RTR,
    REPLY_WORD0,
    TRACE_PORT,
    TRACE_TYPE,
    TraceHop,
    TraceMessage,
    TraceSegment,
    append_hop,
    decode_trace,
    encode_trace,
    find_segment,
    format_eid,
    format_rloc,
    format_unreachable,
    is_round_trip,
    nat_trace_key,
    parse_eid,
    parse_rloc,
    reply_header,
    return_address,
    turn_around,
)

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address
NONCE = 0x0123456789ABCDEF
ZERO = V4("0.0.0.0")

# Header of every re-encoded packet: word 0 = 0x90000000, word 1 = 0, then the nonce.
REPLY_HEADER = bytes.fromhex("90000000000000000123456789abcdef")

# ---------------------------------------------------------------------------------------------
# Vector 1: the client's first packet, no JSON.  Port 50000 = 0xc350, RLOC 192.0.2.130.
FIRST_PACKET = bytes.fromhex("9000c350c00002820123456789abcdef")
FIRST_MESSAGE = TraceMessage(
    local_port=50000, local_rloc=V4("192.0.2.130"), nonce=NONCE, segments=None
)

# ---------------------------------------------------------------------------------------------
# Vector 2: forward path, ITR encap (sr carries the client's port) and ETR decap.
ITR_A = TraceHop(
    node="ITR",
    sr="192.0.2.1:50000",
    dr="192.0.2.5",
    hn="xtr-a",
    encap_ts=1700000000.123,
    rtts=(0.012, 0.011, -1),
    hops=("2/2", "2/2", "?/?"),
    lats=("?/?", "?/?", "?/?"),
)
ETR_B = TraceHop(node="ETR", sr="192.0.2.1", dr="192.0.2.5", hn="xtr-b", decap_ts=1700000000.125)
FORWARD_JSON = (
    b'{"se": "[0]198.51.100.1", "de": "[0]198.51.100.17", "paths": ['
    b'{"n": "ITR", "sr": "192.0.2.1:50000", "hn": "xtr-a", "ets": 1700000000.123, '
    b'"dr": "192.0.2.5", "rtts": [0.012, 0.011, -1], "hops": ["2/2", "2/2", "?/?"], '
    b'"lats": ["?/?", "?/?", "?/?"]}, '
    b'{"n": "ETR", "sr": "192.0.2.1", "hn": "xtr-b", "dts": 1700000000.125, '
    b'"dr": "192.0.2.5"}]}'
)
FORWARD_PACKET = REPLY_HEADER + b"[" + FORWARD_JSON + b"]"
FORWARD_SEGMENT = TraceSegment(se="[0]198.51.100.1", de="[0]198.51.100.17", paths=(ITR_A, ETR_B))
FORWARD_MESSAGE = TraceMessage(
    local_port=0, local_rloc=ZERO, nonce=NONCE, segments=(FORWARD_SEGMENT,)
)

# ---------------------------------------------------------------------------------------------
# Vector 3: full round trip; the return segment has se/de swapped.  The return ITR's sr has no
# port (the inner source port is 2434 on the way back).
ITR_B = TraceHop(
    node="ITR",
    sr="192.0.2.5",
    dr="192.0.2.1",
    hn="xtr-b",
    encap_ts=1700000000.126,
    rtts=(0.01, -1, -1),
    hops=("1/1", "?/?", "?/?"),
    lats=("0.004/0.006", "?/?", "?/?"),
)
ETR_A = TraceHop(node="ETR", sr="192.0.2.5", dr="192.0.2.1", hn="xtr-a", decap_ts=1700000000.13)
RETURN_JSON = (
    b'{"se": "[0]198.51.100.17", "de": "[0]198.51.100.1", "paths": ['
    b'{"n": "ITR", "sr": "192.0.2.5", "hn": "xtr-b", "ets": 1700000000.126, '
    b'"dr": "192.0.2.1", "rtts": [0.01, -1, -1], "hops": ["1/1", "?/?", "?/?"], '
    b'"lats": ["0.004/0.006", "?/?", "?/?"]}, '
    b'{"n": "ETR", "sr": "192.0.2.5", "hn": "xtr-a", "dts": 1700000000.13, '
    b'"dr": "192.0.2.1"}]}'
)
ROUND_TRIP_PACKET = REPLY_HEADER + b"[" + FORWARD_JSON + b", " + RETURN_JSON + b"]"
ROUND_TRIP_MESSAGE = TraceMessage(
    local_port=0,
    local_rloc=ZERO,
    nonce=NONCE,
    segments=(
        FORWARD_SEGMENT,
        TraceSegment(se="[0]198.51.100.17", de="[0]198.51.100.1", paths=(ITR_B, ETR_A)),
    ),
)

# ---------------------------------------------------------------------------------------------
# Vector 4: through an RTR, client behind NAT (private RLOC 192.0.2.130, port 50000), the ETR
# behind another NAT (the RTR encapsulates to translated port 16001: dr carries ":16001").
NAT_JSON = (
    b'[{"se": "[1000]198.51.100.33", "de": "[1000]198.51.100.49", "paths": ['
    b'{"n": "ITR", "sr": "192.0.2.130:50000", "hn": "xtr-c", "ets": 1700000100.5, '
    b'"dr": "192.0.2.9", "rtts": [-1, -1, -1], "hops": ["?/?", "?/?", "?/?"], '
    b'"lats": ["?/?", "?/?", "?/?"]}, '
    b'{"n": "RTR", "sr": "192.0.2.2", "hn": "rtr-1", "dts": 1700000100.502, '
    b'"dr": "192.0.2.9"}, '
    b'{"n": "RTR", "sr": "192.0.2.9", "hn": "rtr-1", "ets": 1700000100.503, '
    b'"dr": "192.0.2.66:16001", "rtts": [0.002, 0.003, 0.002], '
    b'"hops": ["3/3", "3/3", "3/4"], "lats": ["?/?", "?/?", "?/?"]}]}]'
)
NAT_PACKET = REPLY_HEADER + NAT_JSON
NAT_MESSAGE = TraceMessage(
    local_port=0,
    local_rloc=ZERO,
    nonce=NONCE,
    segments=(
        TraceSegment(
            se="[1000]198.51.100.33",
            de="[1000]198.51.100.49",
            paths=(
                TraceHop(
                    node="ITR",
                    sr="192.0.2.130:50000",
                    dr="192.0.2.9",
                    hn="xtr-c",
                    encap_ts=1700000100.5,
                    rtts=(-1, -1, -1),
                    hops=("?/?", "?/?", "?/?"),
                    lats=("?/?", "?/?", "?/?"),
                ),
                TraceHop(
                    node="RTR", sr="192.0.2.2", dr="192.0.2.9", hn="rtr-1", decap_ts=1700000100.502
                ),
                TraceHop(
                    node="RTR",
                    sr="192.0.2.9",
                    dr="192.0.2.66:16001",
                    hn="rtr-1",
                    encap_ts=1700000100.503,
                    rtts=(0.002, 0.003, 0.002),
                    hops=("3/3", "3/3", "3/4"),
                    lats=("?/?", "?/?", "?/?"),
                ),
            ),
        ),
    ),
)

# ---------------------------------------------------------------------------------------------
# Vector 5: the RTR has no map-cache entry: it appends a record with dr "? (map-cache miss)" (no
# rtts/hops/lats) and returns the bare payload to the first ITR's sr.
MISS_JSON = (
    b'[{"se": "[0]198.51.100.33", "de": "[0]203.0.113.7", "paths": ['
    b'{"n": "ITR", "sr": "192.0.2.130:50000", "hn": "xtr-c", "ets": 1700000200.25, '
    b'"dr": "192.0.2.9", "rtts": [0.004, -1, -1], "hops": ["2/2", "?/?", "?/?"], '
    b'"lats": ["?/?", "?/?", "?/?"]}, '
    b'{"n": "RTR", "sr": "192.0.2.2", "hn": "rtr-1", "dts": 1700000200.251, '
    b'"dr": "192.0.2.9"}, '
    b'{"n": "RTR", "sr": "192.0.2.9", "hn": "rtr-1", "ets": 1700000200.252, '
    b'"dr": "? (map-cache miss)"}]}]'
)
MISS_PACKET = REPLY_HEADER + MISS_JSON
MISS_MESSAGE = TraceMessage(
    local_port=0,
    local_rloc=ZERO,
    nonce=NONCE,
    segments=(
        TraceSegment(
            se="[0]198.51.100.33",
            de="[0]203.0.113.7",
            paths=(
                TraceHop(
                    node="ITR",
                    sr="192.0.2.130:50000",
                    dr="192.0.2.9",
                    hn="xtr-c",
                    encap_ts=1700000200.25,
                    rtts=(0.004, -1, -1),
                    hops=("2/2", "?/?", "?/?"),
                    lats=("?/?", "?/?", "?/?"),
                ),
                TraceHop(
                    node="RTR", sr="192.0.2.2", dr="192.0.2.9", hn="rtr-1", decap_ts=1700000200.251
                ),
                TraceHop(
                    node="RTR",
                    sr="192.0.2.9",
                    dr="? (map-cache miss)",
                    hn="rtr-1",
                    encap_ts=1700000200.252,
                ),
            ),
        ),
    ),
)

# ---------------------------------------------------------------------------------------------
# Vector 6: IPv6 EIDs in instance 7, body "[]" (empty list: segments is an empty tuple, not None),
# and a header that still carries the client's port and RLOC (port 4000 = 0x0fa0, 10.1.2.3).
EMPTY_LIST_PACKET = bytes.fromhex("90000fa00a010203fedcba9876543210") + b"[]"
EMPTY_LIST_MESSAGE = TraceMessage(
    local_port=4000, local_rloc=V4("10.1.2.3"), nonce=0xFEDCBA9876543210, segments=()
)
V6_JSON = (
    b'[{"se": "[7]2001:db8:100::1", "de": "[7]2001:db8:100:1::1", "paths": ['
    b'{"n": "ITR", "sr": "2001:db8::1", "hn": "v6-a", "ets": 1700000300.0, '
    b'"dr": "2001:db8:0:1::1"}]}]'
)
V6_PACKET = REPLY_HEADER + V6_JSON
V6_MESSAGE = TraceMessage(
    local_port=0,
    local_rloc=ZERO,
    nonce=NONCE,
    segments=(
        TraceSegment(
            se="[7]2001:db8:100::1",
            de="[7]2001:db8:100:1::1",
            paths=(
                TraceHop(
                    node="ITR",
                    sr="2001:db8::1",
                    dr="2001:db8:0:1::1",
                    hn="v6-a",
                    encap_ts=1700000300.0,
                ),
            ),
        ),
    ),
)

GOLDEN = [
    pytest.param(FIRST_PACKET, FIRST_MESSAGE, id="first-bare-packet"),
    pytest.param(FORWARD_PACKET, FORWARD_MESSAGE, id="forward-itr-etr"),
    pytest.param(ROUND_TRIP_PACKET, ROUND_TRIP_MESSAGE, id="round-trip"),
    pytest.param(NAT_PACKET, NAT_MESSAGE, id="rtr-nat-ports"),
    pytest.param(MISS_PACKET, MISS_MESSAGE, id="rtr-map-cache-miss"),
    pytest.param(EMPTY_LIST_PACKET, EMPTY_LIST_MESSAGE, id="empty-list-body"),
    pytest.param(V6_PACKET, V6_MESSAGE, id="ipv6-eids"),
]


# =============================================================================================
# Golden vectors


def test_constants() -> None:
    assert TRACE_PORT == 2434
    assert TRACE_TYPE == 9
    assert REPLY_WORD0 == 0x90000000


@pytest.mark.parametrize(("wire", "message"), GOLDEN)
def test_golden_decode(wire: bytes, message: TraceMessage) -> None:
    assert decode_trace(wire) == message


@pytest.mark.parametrize(("wire", "message"), GOLDEN)
def test_golden_encode(wire: bytes, message: TraceMessage) -> None:
    assert encode_trace(message) == wire


@pytest.mark.parametrize(("wire", "message"), GOLDEN)
def test_golden_reencode_is_identity(wire: bytes, message: TraceMessage) -> None:
    assert encode_trace(decode_trace(wire)) == wire


def test_golden_bodies_are_what_lispers_net_json_dumps_writes() -> None:
    # Cross-check of the hand-written text: a bare json.dumps of the same objects (lispers.net's
    # call) gives the same bytes.
    for wire in (FORWARD_PACKET, ROUND_TRIP_PACKET, NAT_PACKET, MISS_PACKET, V6_PACKET):
        body = wire[16:]
        assert json.dumps(json.loads(body)).encode() == body


def test_first_packet_fields() -> None:
    msg = decode_trace(FIRST_PACKET)
    assert msg.word0 == 0x9000C350
    assert msg.reserved == 0
    assert nat_trace_key(msg) == "192.0.2.130:50000"


def test_int_and_float_kinds_survive() -> None:
    # rtts mixes ints (-1, the "unknown" value) and floats; both must come back as written.
    hop = decode_trace(FORWARD_PACKET).segments[0].paths[0]  # type: ignore[index]
    assert [type(x) for x in hop.rtts] == [float, float, int]  # type: ignore[union-attr]
    # -1 and -1.0 compare equal but are spelled differently: the kind decides the bytes.
    as_float = replace(ITR_A, rtts=(0.012, 0.011, -1.0))
    wire = encode_trace(
        replace(FORWARD_MESSAGE, segments=(replace(FORWARD_SEGMENT, paths=(as_float, ETR_B)),))
    )
    assert b'"rtts": [0.012, 0.011, -1.0]' in wire


def test_reserved_bits_are_kept() -> None:
    wire = bytes.fromhex("9abc0001000000000000000000000001")
    msg = decode_trace(wire)
    assert (msg.reserved, msg.local_port) == (0xABC, 1)
    assert encode_trace(msg) == wire
    assert encode_trace(reply_header(msg))[:8] == bytes.fromhex("9000000000000000")


def test_unknown_keys_are_kept_in_order() -> None:
    body = (
        b'[{"se": "[0]198.51.100.1", "de": "[0]198.51.100.17", "paths": ['
        b'{"n": "ETR", "sr": "192.0.2.1", "hn": "h", "dts": 1.5, "dr": "192.0.2.5", '
        b'"zz": {"b": [1, 2.5, null, true], "a": "\\u00e9"}, "aa": 3}], "note": "x"}]'
    )
    msg = decode_trace(REPLY_HEADER + body)
    hop = msg.segments[0].paths[0]  # type: ignore[index]
    assert hop.extra == (("zz", '{"b": [1, 2.5, null, true], "a": "\\u00e9"}'), ("aa", "3"))
    assert hop.extra_value("zz") == {"b": [1, 2.5, None, True], "a": "\u00e9"}
    assert msg.segments[0].extra == (("note", '"x"'),)  # type: ignore[index]
    assert encode_trace(msg) == REPLY_HEADER + body
    with pytest.raises(KeyError):
        hop.extra_value("missing")


def test_non_ascii_is_escaped_like_json_dumps() -> None:
    hop = TraceHop.decap(NODE_ETR, "192.0.2.1", "192.0.2.5", "r\u00e9seau", 2.0)
    msg = TraceMessage(0, ZERO, 1, (TraceSegment("[0]198.51.100.1", "[0]198.51.100.2", (hop,)),))
    wire = encode_trace(msg)
    assert b'"hn": "r\\u00e9seau"' in wire
    assert decode_trace(wire) == msg
    # Raw UTF-8 from another sender is accepted too.
    raw = wire.replace(b"r\\u00e9seau", "r\u00e9seau".encode())
    assert decode_trace(raw) == msg


def test_whitespace_and_foreign_key_order_decode_to_the_same_value() -> None:
    body = (
        b' [ {"paths": [ {"dr": "192.0.2.5", "dts": 1700000000.125, "hn": "xtr-b",'
        b' "sr": "192.0.2.1", "n": "ETR"} ], "de": "[0]198.51.100.17",'
        b' "se": "[0]198.51.100.1"} ]\n'
    )
    msg = decode_trace(REPLY_HEADER + body)
    expected_seg = TraceSegment("[0]198.51.100.1", "[0]198.51.100.17", (ETR_B,))
    assert msg.segments == (expected_seg,)
    # Re-encoded in lispers.net's order and spacing.
    assert encode_trace(msg) == REPLY_HEADER + (
        b'[{"se": "[0]198.51.100.1", "de": "[0]198.51.100.17", "paths": ['
        b'{"n": "ETR", "sr": "192.0.2.1", "hn": "xtr-b", "dts": 1700000000.125, '
        b'"dr": "192.0.2.5"}]}]'
    )


def test_hop_with_both_or_no_timestamps() -> None:
    both = TraceHop("RTR", "a", "b", "c", encap_ts=1.0, decap_ts=2)
    none = TraceHop("RTR", "a", "b", "c")
    msg = TraceMessage(0, ZERO, 0, (TraceSegment("s", "d", (both, none)),))
    wire = encode_trace(msg)
    assert b'"ets": 1.0, "dts": 2, "dr": "b"' in wire
    assert decode_trace(wire) == msg


# =============================================================================================
# Errors


def _body(text: str | bytes) -> bytes:
    return REPLY_HEADER + (text.encode() if isinstance(text, str) else text)


SEG = '{"se": "[0]1.2.3.4", "de": "[0]5.6.7.8", "paths": [%s]}'
HOP = '{"n": "ITR", "sr": "1.1.1.1", "hn": "h", "ets": 1.5, "dr": "2.2.2.2"%s}'


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"\x90",
        bytes.fromhex("90000000"),
        bytes.fromhex("9000000000000000"),
        FIRST_PACKET[:15],
    ],
)
def test_truncated(wire: bytes) -> None:
    with pytest.raises(WireError) as info:
        decode_trace(wire)
    assert info.value.reason == TRUNCATED


@pytest.mark.parametrize("first", ["00", "10", "80", "a0", "f0"])
def test_bad_type(first: str) -> None:
    wire = bytes.fromhex(first) + FIRST_PACKET[1:]
    with pytest.raises(WireError) as info:
        decode_trace(wire)
    assert info.value.reason == BAD_TRACE


@pytest.mark.parametrize(
    "body",
    [
        b"\xff",
        b"[\x80]",
        b'["\xc3"]',
        b'[{"se": "\xed\xa0\x80"}]',  # UTF-8 encoded surrogate
        b"\xfe\xff\x00[\x00]",  # UTF-16 is not UTF-8
    ],
)
def test_bad_utf8(body: bytes) -> None:
    with pytest.raises(WireError) as info:
        decode_trace(_body(body))
    assert info.value.reason == BAD_UTF8


BAD_JSON_BODIES = {
    "not-json": "hello",
    "whitespace-only": " \n",
    "truncated-json": FORWARD_JSON.decode()[:40],
    "trailing-garbage": "[] x",
    "utf8-bom": "\ufeff[]",
    "nul-padding": "[]\x00",
    "object-not-list": "{}",
    "string-not-list": '"x"',
    "number-not-list": "1",
    "null": "null",
    "segment-not-object": "[1]",
    "segment-is-list": "[[]]",
    "segment-missing-se": '[{"de": "x", "paths": []}]',
    "segment-missing-de": '[{"se": "x", "paths": []}]',
    "segment-missing-paths": '[{"se": "x", "de": "y"}]',
    "se-not-string": '[{"se": 1, "de": "y", "paths": []}]',
    "de-null": '[{"se": "x", "de": null, "paths": []}]',
    "paths-not-list": '[{"se": "x", "de": "y", "paths": {}}]',
    "hop-not-object": "[" + SEG % '"ITR"' + "]",
    "hop-missing-n": '[{"se": "x", "de": "y", "paths": [{"sr": "a", "dr": "b", "hn": "c"}]}]',
    "hop-missing-sr": '[{"se": "x", "de": "y", "paths": [{"n": "a", "dr": "b", "hn": "c"}]}]',
    "hop-missing-dr": '[{"se": "x", "de": "y", "paths": [{"n": "a", "sr": "b", "hn": "c"}]}]',
    "hop-missing-hn": '[{"se": "x", "de": "y", "paths": [{"n": "a", "sr": "b", "dr": "c"}]}]',
    "hn-not-string": "[" + SEG % HOP.replace('"h"', "7") % "" + "]",
    "ets-string": "[" + SEG % HOP.replace("1.5", '"1.5"') % "" + "]",
    "ets-bool": "[" + SEG % HOP.replace("1.5", "true") % "" + "]",
    "dts-null": "[" + SEG % HOP % ', "dts": null' + "]",
    "rtts-not-list": "[" + SEG % HOP % ', "rtts": 1' + "]",
    "rtts-string-item": "[" + SEG % HOP % ', "rtts": ["0.1"]' + "]",
    "rtts-bool-item": "[" + SEG % HOP % ', "rtts": [false]' + "]",
    "hops-number-item": "[" + SEG % HOP % ', "hops": [1]' + "]",
    "lats-null-item": "[" + SEG % HOP % ', "lats": [null]' + "]",
    "lats-string": "[" + SEG % HOP % ', "lats": "?/?"' + "]",
    "nan": "[" + SEG % HOP.replace("1.5", "NaN") % "" + "]",
    "infinity": "[" + SEG % HOP.replace("1.5", "-Infinity") % "" + "]",
    "overflowing-float": "[" + SEG % HOP.replace("1.5", "1e999") % "" + "]",
    "nan-in-extra": "[" + SEG % HOP % ', "x": [NaN]' + "]",
    "huge-int-in-extra": "[" + SEG % HOP % (', "x": ' + "9" * 5000) + "]",
    "deep-extra": "[" + SEG % HOP % (', "x": ' + "[" * 40 + "]" * 40) + "]",
    "very-deep": "[" * 100000 + "]" * 100000,
    "very-deep-objects": '{"a": ' * 50000 + "1" + "}" * 50000,
}


@pytest.mark.parametrize("body", list(BAD_JSON_BODIES.values()), ids=list(BAD_JSON_BODIES))
def test_bad_json(body: str) -> None:
    with pytest.raises(WireError) as info:
        decode_trace(_body(body))
    assert info.value.reason == BAD_JSON


def test_moderately_nested_extra_is_fine() -> None:
    wire = _body("[" + SEG % HOP % (', "x": ' + "[" * 20 + "]" * 20) + "]")
    msg = decode_trace(wire)
    assert encode_trace(msg) == wire


@pytest.mark.parametrize(
    "msg",
    [
        replace(FIRST_MESSAGE, local_port=65536),
        replace(FIRST_MESSAGE, local_port=-1),
        replace(FIRST_MESSAGE, local_port=True),
        replace(FIRST_MESSAGE, nonce=1 << 64),
        replace(FIRST_MESSAGE, nonce=-1),
        replace(FIRST_MESSAGE, reserved=0x1000),
        replace(FIRST_MESSAGE, local_rloc="192.0.2.1"),
        replace(FIRST_MESSAGE, local_rloc=V6("::1")),
        replace(FIRST_MESSAGE, segments=("not a segment",)),
        replace(FIRST_MESSAGE, segments=(TraceSegment("s", "d", ("not a hop",)),)),
        replace(FIRST_MESSAGE, segments=(TraceSegment(1, "d"),)),
        replace(FIRST_MESSAGE, segments=(TraceSegment("s", "d", extra=(("se", '"x"'),)),)),
        replace(FIRST_MESSAGE, segments=(TraceSegment("s", "d", extra=(("k", "nope"),)),)),
        replace(FIRST_MESSAGE, segments=(TraceSegment("s", "d", extra=(("k", "NaN"),)),)),
        replace(FIRST_MESSAGE, segments=(TraceSegment("s", "d", extra=(("k", 1),)),)),
        replace(FIRST_MESSAGE, segments=(TraceSegment("s", "d", extra=(("k",),)),)),
        replace(
            FIRST_MESSAGE,
            segments=(TraceSegment("s", "d", extra=(("k", "1"), ("k", "2"))),),
        ),
    ],
)
def test_encode_misuse(msg: TraceMessage) -> None:
    with pytest.raises(EncodeError):
        encode_trace(msg)


@pytest.mark.parametrize(
    "hop",
    [
        TraceHop("ITR", "a", "b", "c", encap_ts=float("nan")),
        TraceHop("ITR", "a", "b", "c", encap_ts=float("inf")),
        TraceHop("ITR", "a", "b", "c", decap_ts=True),
        TraceHop("ITR", "a", "b", "c", decap_ts="1.5"),  # type: ignore[arg-type]
        TraceHop("ITR", "a", "b", "c", rtts=(1, "2")),  # type: ignore[arg-type]
        TraceHop("ITR", "a", "b", "c", rtts=(10**5000,)),
        TraceHop("ITR", "a", "b", "c", hops=(1,)),  # type: ignore[arg-type]
        TraceHop("ITR", "a", "b", "c", lats=(None,)),  # type: ignore[arg-type]
        TraceHop(None, "a", "b", "c"),  # type: ignore[arg-type]
        TraceHop("ITR", b"a", "b", "c"),  # type: ignore[arg-type]
        TraceHop("ITR", "a", "b", "c", extra=(("ets", "1"),)),
        TraceHop("ITR", "a", "b", "c", extra=((1, "1"),)),  # type: ignore[arg-type]
    ],
)
def test_encode_misuse_in_hop(hop: TraceHop) -> None:
    msg = replace(FIRST_MESSAGE, segments=(TraceSegment("s", "d", (hop,)),))
    with pytest.raises(EncodeError):
        encode_trace(msg)


# =============================================================================================
# EID and RLOC strings


@pytest.mark.parametrize(
    ("iid", "address", "text"),
    [
        (0, V4("198.51.100.1"), "[0]198.51.100.1"),
        (1000, V4("198.51.100.33"), "[1000]198.51.100.33"),
        (0xFFFFFF, V6("2001:db8:100::1"), "[16777215]2001:db8:100::1"),
        (0xFFFFFFFF, V6("2001:db8::"), "[4294967295]2001:db8::"),
    ],
)
def test_eid_format_and_parse(iid: int, address: V4 | V6, text: str) -> None:
    assert format_eid(iid, address) == text
    assert format_eid(iid, str(address)) == text
    assert parse_eid(text) == (iid, address)


def test_format_eid_normalises_text_addresses() -> None:
    assert format_eid(3, "2001:DB8:100:0::1") == "[3]2001:db8:100::1"


@pytest.mark.parametrize(
    "text",
    [
        "198.51.100.1",
        "[]198.51.100.1",
        "[x]198.51.100.1",
        "[-1]198.51.100.1",
        "[+1]198.51.100.1",
        "[ 1]198.51.100.1",
        "[4294967296]198.51.100.1",
        "[12345678901]1.2.3.4",
        "[0]",
        "[0]host.example",
        "[0]198.51.100.1/32",
        "[0]fe80::1%eth0",
        "[0]198.51.100.1\n",
        "[0] 198.51.100.1",
        "[\u0663]1.2.3.4",
    ],
)
def test_parse_eid_rejects(text: str) -> None:
    with pytest.raises(WireError) as info:
        parse_eid(text)
    assert info.value.reason == BAD_FIELD


@pytest.mark.parametrize(
    ("iid", "address"), [(-1, "1.2.3.4"), (1 << 32, "1.2.3.4"), (True, "1.2.3.4"), (0, "x"), (0, 7)]
)
def test_format_eid_rejects(iid: int, address: object) -> None:
    with pytest.raises(EncodeError):
        format_eid(iid, address)  # type: ignore[arg-type]


def test_rloc_strings() -> None:
    assert format_rloc(V4("192.0.2.1")) == "192.0.2.1"
    assert format_rloc(V4("192.0.2.1"), 50000) == "192.0.2.1:50000"
    assert format_rloc(V6("2001:db8::1"), 4341) == "2001:db8::1:4341"
    assert format_unreachable() == "?"
    assert format_unreachable("map-cache miss") == "? (map-cache miss)"
    assert parse_rloc("192.0.2.1") == (V4("192.0.2.1"), None)
    assert parse_rloc("192.0.2.130:50000") == (V4("192.0.2.130"), 50000)
    assert parse_rloc("192.0.2.66:16001") == (V4("192.0.2.66"), 16001)
    assert parse_rloc("2001:db8::1") == (V6("2001:db8::1"), None)
    # An IPv6 address with an unbracketed port is ambiguous: a valid whole address wins.
    assert parse_rloc("2001:db8::1:4341") == (V6("2001:db8::1:4341"), None)
    assert parse_rloc("2001:db8::1.2.3.4:4341") == (V6("2001:db8::102:304"), 4341)
    with pytest.raises(EncodeError):
        format_rloc(V4("192.0.2.1"), 65536)


@pytest.mark.parametrize(
    "text", ["?", "? (map-cache miss)", "", "192.0.2.1:", "192.0.2.1:x", "192.0.2.1:65536", ":1"]
)
def test_parse_rloc_rejects(text: str) -> None:
    with pytest.raises(WireError) as info:
        parse_rloc(text)
    assert info.value.reason == BAD_FIELD


# =============================================================================================
# Helpers for the stamping nodes


def test_hop_constructors() -> None:
    assert (
        TraceHop.encap(
            NODE_ITR,
            format_rloc(V4("192.0.2.1"), 50000),
            "192.0.2.5",
            "xtr-a",
            1700000000.123,
            rtts=[0.012, 0.011, -1],
            hops=["2/2", "2/2", "?/?"],
            lats=["?/?", "?/?", "?/?"],
        )
        == ITR_A
    )
    assert TraceHop.decap(NODE_ETR, "192.0.2.1", "192.0.2.5", "xtr-b", 1700000000.125) == ETR_B
    assert ITR_A.is_encap and not ETR_B.is_encap
    assert ITR_A.timestamp == 1700000000.123
    assert ETR_B.timestamp == 1700000000.125
    with pytest.raises(EncodeError):
        TraceHop.encap(NODE_RTR, "a", "b", "c", 1.0, rtts=[1, 2, 3])


def test_unreachable_flag() -> None:
    miss = MISS_MESSAGE.segments[0].paths[-1]  # type: ignore[index]
    assert miss.unreachable
    assert TraceHop("RTR", "a", "?", "c").unreachable
    assert not ITR_A.unreachable
    assert not TraceHop("RTR", "a", "?x", "c").unreachable


def test_full_trace_built_with_helpers_matches_the_golden_round_trip() -> None:
    # Client sends the bare packet; each node decodes, appends, re-encodes (reply header).
    wire = FIRST_PACKET
    se, de = format_eid(0, V4("198.51.100.1")), format_eid(0, V4("198.51.100.17"))

    msg = decode_trace(wire)
    wire = encode_trace(reply_header(append_hop(msg, de, ITR_A, se=se)))  # ITR xtr-a

    msg = decode_trace(wire)
    msg = append_hop(msg, de, ETR_B)  # ETR xtr-b: the destination EID is its own
    assert not is_round_trip(msg)
    msg = turn_around(msg)
    assert is_round_trip(msg)
    wire = encode_trace(reply_header(msg))

    msg = decode_trace(wire)
    wire = encode_trace(reply_header(append_hop(msg, se, ITR_B)))  # ITR xtr-b, return path
    msg = decode_trace(wire)
    wire = encode_trace(reply_header(append_hop(msg, se, ETR_A)))  # ETR xtr-a, to the client

    assert wire == ROUND_TRIP_PACKET
    # What ltr checks before printing: exact word 0, zero word 1, its nonce, non-empty JSON.
    assert wire[:4] == bytes.fromhex("90000000")
    assert wire[4:8] == bytes(4)
    assert wire[8:16] == FIRST_PACKET[8:16]
    assert len(wire) > 16


def test_append_hop_rules() -> None:
    with pytest.raises(EncodeError):
        append_hop(FIRST_MESSAGE, "[0]198.51.100.17", ITR_A)
    empty = append_hop(EMPTY_LIST_MESSAGE, "[0]d", ITR_A, se="[0]s")
    assert empty.segments == (TraceSegment("[0]s", "[0]d", (ITR_A,)),)
    # No segment for this destination: unchanged, as lispers.net does.
    assert append_hop(FORWARD_MESSAGE, "[0]203.0.113.1", ETR_A) is FORWARD_MESSAGE
    # Appends to the segment whose de matches, and only to it.
    out = append_hop(ROUND_TRIP_MESSAGE, "[0]198.51.100.17", ETR_A)
    assert out.segments[0].paths == (ITR_A, ETR_B, ETR_A)  # type: ignore[index]
    assert out.segments[1] == ROUND_TRIP_MESSAGE.segments[1]  # type: ignore[index]
    assert find_segment(ROUND_TRIP_MESSAGE, "[0]198.51.100.1") is not None
    assert find_segment(ROUND_TRIP_MESSAGE, "[0]203.0.113.1") is None
    assert find_segment(FIRST_MESSAGE, "[0]198.51.100.1") is None


def test_turn_around_rules() -> None:
    out = turn_around(FORWARD_MESSAGE)
    assert out.segments[1] == TraceSegment("[0]198.51.100.17", "[0]198.51.100.1")  # type: ignore[index]
    for msg in (FIRST_MESSAGE, EMPTY_LIST_MESSAGE, ROUND_TRIP_MESSAGE):
        with pytest.raises(EncodeError):
            turn_around(msg)


def test_reply_header() -> None:
    out = reply_header(FIRST_MESSAGE)
    assert (out.local_port, out.local_rloc, out.reserved, out.nonce) == (0, ZERO, 0, NONCE)
    assert encode_trace(out) == REPLY_HEADER
    assert out.word0 == REPLY_WORD0


def test_return_address() -> None:
    assert return_address(MISS_MESSAGE) == (V4("192.0.2.130"), 50000)
    assert return_address(FORWARD_MESSAGE) == (V4("192.0.2.1"), 50000)
    assert return_address(FIRST_MESSAGE) is None
    assert return_address(EMPTY_LIST_MESSAGE) is None
    assert return_address(V6_MESSAGE) is None  # first sr has no port
    bad = replace(ITR_A, sr="somewhere:50000")
    with pytest.raises(WireError):
        return_address(replace(FORWARD_MESSAGE, segments=(TraceSegment("s", "d", (bad,)),)))


# =============================================================================================
# Property tests


def _check_wire(data: bytes) -> None:
    """Either a WireError, or a value whose encoding decodes to an equal value (and whose
    second encoding is the same bytes)."""
    try:
        msg = decode_trace(data)
    except WireError:
        return
    wire = encode_trace(msg)
    again = decode_trace(wire)
    assert again == msg
    assert encode_trace(again) == wire
    assert wire[:16] == data[:16]


_FUZZ = settings(
    # LISPD_FUZZ_EXAMPLES, as in tests/fuzz: 2,000 in the suite, more in a long run.
    max_examples=int(os.environ.get("LISPD_FUZZ_EXAMPLES", "2000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_GOLDEN_WIRES = [p.values[0] for p in GOLDEN]
_GOLDEN_DOCS = [json.loads(w[16:]) for w in _GOLDEN_WIRES if len(w) > 16]

_numbers = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=False, allow_infinity=False),
)
_short_text = st.text(max_size=6)
_json_leaf = st.one_of(st.none(), st.booleans(), _numbers, _short_text)
_json_small = st.one_of(
    _json_leaf,
    st.lists(_json_leaf, max_size=3),
    st.dictionaries(st.sampled_from(["n", "sr", "dts", "x", "paths"]), _json_leaf, max_size=2),
)


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    """A golden packet with 1-4 byte-level mutations: truncation, bit flip, overwrite,
    insertion, deletion."""
    base = bytearray(draw(st.sampled_from(_GOLDEN_WIRES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "set", "insert", "delete"]))
        if kind == "truncate":
            del base[draw(st.integers(0, len(base))) :]
        elif not base and kind != "insert":
            continue
        elif kind == "flip":
            i = draw(st.integers(0, len(base) - 1))
            base[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            base[draw(st.integers(0, len(base) - 1))] = draw(st.integers(0, 255))
        elif kind == "insert":
            base.insert(draw(st.integers(0, len(base))), draw(st.integers(0, 255)))
        else:
            del base[draw(st.integers(0, len(base) - 1))]
    return bytes(base)


def _slots(doc: object) -> list[tuple[list | dict, int | str]]:
    """Every (container, index-or-key) position in a JSON document."""
    out: list[tuple[list | dict, int | str]] = []
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            out.extend((node, i) for i in range(len(node)))
            stack.extend(node)
        elif isinstance(node, dict):
            out.extend((node, k) for k in node)
            stack.extend(node.values())
    return out


@st.composite
def _edited_docs(draw: st.DrawFn) -> bytes:
    """A golden JSON body with 1-3 structural edits: a value replaced (wrong type, small
    container), a key or item removed, or an unknown key added; dumped with random spacing."""
    doc = copy.deepcopy(draw(st.sampled_from(_GOLDEN_DOCS)))
    for _ in range(draw(st.integers(1, 3))):
        slots = _slots(doc)
        if not slots:
            break
        container, where = slots[draw(st.integers(0, len(slots) - 1))]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            container[where] = draw(_json_small)  # type: ignore[index]
        elif action == "delete":
            del container[where]  # type: ignore[arg-type]
        elif isinstance(container, dict):
            container[draw(_short_text)] = draw(_json_small)
        else:
            container.insert(int(where), draw(_json_small))
    compact = draw(st.booleans())
    text = json.dumps(doc, separators=(",", ":") if compact else None)
    return REPLY_HEADER + text.encode()


_HOP_KEY_SET = {"n", "sr", "dr", "hn", "ets", "dts", "rtts", "hops", "lats"}
_SEG_KEY_SET = {"se", "de", "paths"}


def _extras(known: set[str]) -> st.SearchStrategy[tuple[tuple[str, str], ...]]:
    pairs = st.lists(
        st.tuples(_short_text.filter(lambda k: k not in known), _json_small.map(json.dumps)),
        max_size=2,
        unique_by=lambda kv: kv[0],
    )
    return pairs.map(tuple)


_hops = st.builds(
    TraceHop,
    node=st.sampled_from([NODE_ITR, NODE_RTR, NODE_ETR, "?"]) | _short_text,
    sr=st.sampled_from(["192.0.2.1", "192.0.2.130:50000", "2001:db8::1"]) | _short_text,
    dr=st.sampled_from(["192.0.2.5", "?", "? (map-cache miss)"]) | _short_text,
    hn=_short_text,
    encap_ts=st.none() | _numbers,
    decap_ts=st.none() | _numbers,
    rtts=st.none() | st.lists(_numbers, max_size=3).map(tuple),
    hops=st.none() | st.lists(_short_text, max_size=3).map(tuple),
    lats=st.none() | st.lists(_short_text, max_size=3).map(tuple),
    extra=_extras(_HOP_KEY_SET),
)
_segments = st.builds(
    TraceSegment,
    se=_short_text,
    de=_short_text,
    paths=st.lists(_hops, max_size=3).map(tuple),
    extra=_extras(_SEG_KEY_SET),
)
_messages = st.builds(
    TraceMessage,
    local_port=st.integers(0, 0xFFFF),
    local_rloc=st.integers(0, 0xFFFFFFFF).map(V4),
    nonce=st.integers(0, (1 << 64) - 1),
    segments=st.none() | st.lists(_segments, max_size=2).map(tuple),
    reserved=st.integers(0, 0xFFF),
)


@_FUZZ
@given(st.binary(max_size=64))
def test_fuzz_random_bytes(data: bytes) -> None:
    _check_wire(data)


@_FUZZ
@given(st.binary(min_size=16, max_size=16), st.binary(max_size=64))
def test_fuzz_random_body_after_trace_header(header: bytes, body: bytes) -> None:
    _check_wire(bytes([0x90 | (header[0] & 0x0F)]) + header[1:] + body)


@_FUZZ
@given(st.text(alphabet='[]{}",: 0123456789.-eEntrufalsNIy\\', max_size=80))
def test_fuzz_json_like_bodies(text: str) -> None:
    _check_wire(REPLY_HEADER + text.encode())


@_FUZZ
@given(_mutated())
def test_fuzz_mutated_golden_packets(data: bytes) -> None:
    _check_wire(data)


@_FUZZ
@given(_edited_docs())
def test_fuzz_structurally_edited_bodies(data: bytes) -> None:
    _check_wire(data)


@_FUZZ
@given(_messages)
def test_generated_messages_round_trip(msg: TraceMessage) -> None:
    wire = encode_trace(msg)
    assert decode_trace(wire) == msg
    assert encode_trace(decode_trace(wire)) == wire
    _check_wire(wire[: len(wire) // 2])
