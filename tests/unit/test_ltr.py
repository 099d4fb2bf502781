"""``ltr``, the LISP-Trace client: the sans-IO core against golden strings, and ``main`` end to
end against a fake hop on the loopback (no root, no namespaces)."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from lispd.cli import ltr
from lispd.config import parse_config
from lispd.wire.trace import (
    TraceHop,
    TraceMessage,
    TraceSegment,
    decode_trace,
    encode_trace,
    reply_header,
)
from tests import configs

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address
NONCE = 0x0123456789ABCDEF
LATS = ("?/?", "?/?", "?/?")

# --------------------------------------------------------------------------------------------
# Golden messages

# The seed's "ltr 2.2.2.2" in documentation addresses.  xtr1 (EID 198.51.100.1, private RLOC
# 10.0.0.2, behind a NAT that shows it as 192.0.2.10:40123) traces 198.51.100.17 behind xtr2
# (private RLOC 10.0.2.4, behind a NAT that shows it as 203.0.113.2:53227) through rtr1 (own
# RLOC 10.0.1.5, public 192.0.2.20 on a 1:1 NAT).  The records keep what each node saw,
# ports included (decap sources too); the report prints decap sources without them.
FORWARD = TraceSegment(
    se="[0]198.51.100.1",
    de="[0]198.51.100.17",
    paths=(
        TraceHop.encap(
            "ITR",
            "10.0.0.2:40123",
            "192.0.2.20",
            "xtr1",
            1700000000.101,
            rtts=(0.012, 0.011, -1),
            hops=("2/2", "2/2", "?/?"),
            lats=LATS,
        ),
        TraceHop.decap("RTR", "192.0.2.10:40123", "10.0.1.5", "rtr1", 1700000000.106),
        TraceHop.encap(
            "RTR",
            "192.0.2.20",
            "203.0.113.2:53227",
            "rtr1",
            1700000000.107,
            rtts=(0.004, -1, -1),
            hops=("1/1", "?/?", "?/?"),
            lats=LATS,
        ),
        TraceHop.decap("ETR", "192.0.2.20", "10.0.2.4", "xtr2", 1700000000.111),
    ),
)
RETURN = TraceSegment(
    se="[0]198.51.100.17",
    de="[0]198.51.100.1",
    paths=(
        TraceHop.encap(
            "ITR",
            "10.0.2.4",
            "192.0.2.20",
            "xtr2",
            1700000000.112,
            rtts=(0.005, 0.004, 0.006),
            hops=("1/1", "1/1", "1/1"),
            lats=LATS,
        ),
        TraceHop.decap("RTR", "203.0.113.2:53227", "10.0.1.5", "rtr1", 1700000000.116),
        TraceHop.encap(
            "RTR",
            "192.0.2.20",
            "192.0.2.10:40123",
            "rtr1",
            1700000000.117,
            rtts=(0.011, 0.012, 0.01),
            hops=("2/2", "2/2", "2/2"),
            lats=LATS,
        ),
        TraceHop.decap("ETR", "192.0.2.20", "10.0.0.2", "xtr1", 1700000000.121),
    ),
)
ROUND_TRIP = TraceMessage(local_port=0, local_rloc=V4(0), nonce=NONCE, segments=(FORWARD, RETURN))

# The seed's layout: a blank line after "Received reply" and between the two paths, none at
# the end; decap sources without a port; the RTR's encap source its public address.
ROUND_TRIP_REPORT = """\
Received reply from 198.51.100.17, rtt 0.025 secs

Path from [0]198.51.100.1 to [0]198.51.100.17:
  ITR encap: 10.0.0.2:40123 -> 192.0.2.20, ts 1700000000.101, node xtr1
    recent-rtts [0.012, 0.011, ?], recent-hops [2/2, 2/2, ?/?]
  RTR decap: 192.0.2.10 -> 10.0.1.5, ts 1700000000.106, node rtr1
  RTR encap: 192.0.2.20 -> 203.0.113.2:53227, ts 1700000000.107, node rtr1
    recent-rtts [0.004, ?, ?], recent-hops [1/1, ?/?, ?/?]
  ETR decap: 192.0.2.20 -> 10.0.2.4, ts 1700000000.111, node xtr2

Path from [0]198.51.100.17 to [0]198.51.100.1:
  ITR encap: 10.0.2.4 -> 192.0.2.20, ts 1700000000.112, node xtr2
    recent-rtts [0.005, 0.004, 0.006], recent-hops [1/1, 1/1, 1/1]
  RTR decap: 203.0.113.2 -> 10.0.1.5, ts 1700000000.116, node rtr1
  RTR encap: 192.0.2.20 -> 192.0.2.10:40123, ts 1700000000.117, node rtr1
    recent-rtts [0.011, 0.012, 0.01], recent-hops [2/2, 2/2, 2/2]
  ETR decap: 192.0.2.20 -> 10.0.0.2, ts 1700000000.121, node xtr1
"""


def _stopped(iid: int, de: str, reason: str) -> TraceMessage:
    """The seed's stopped traces: rtr1 appends its record with ``? (<reason>)`` and returns the
    payload from its RLOC to the first ITR's sr (10.0.0.2:39656, through the NAT)."""
    return TraceMessage(
        local_port=0,
        local_rloc=V4(0),
        nonce=NONCE,
        segments=(
            TraceSegment(
                se=f"[{iid}]198.51.100.1",
                de=f"[{iid}]{de}",
                paths=(
                    TraceHop.encap(
                        "ITR",
                        "10.0.0.2:39656",
                        "192.0.2.20",
                        "xtr1",
                        1700000000.5,
                        rtts=(0.004, -1, -1),
                        hops=("1/1", "?/?", "?/?"),
                        lats=LATS,
                    ),
                    TraceHop.decap("RTR", "192.0.2.10:61000", "10.0.1.5", "rtr1", 1700000000.502),
                    TraceHop.encap("RTR", "192.0.2.20", f"? ({reason})", "rtr1", 1700000000.503),
                ),
            ),
        ),
    )


# The RTR has no mapping for the destination (the seed's "RTR map-cache miss").
STOPPED = _stopped(1000, "198.51.100.99", "map-cache miss")

STOPPED_REPORT = """\
Received reply from 192.0.2.20, rtt 0.004 secs

Path from [1000]198.51.100.1 to [1000]198.51.100.99:
  ITR encap: 10.0.0.2:39656 -> 192.0.2.20, ts 1700000000.5, node xtr1
    recent-rtts [0.004, ?, ?], recent-hops [1/1, ?/?, ?/?]
  RTR decap: 192.0.2.10 -> 10.0.1.5, ts 1700000000.502, node rtr1
  RTR encap: 192.0.2.20 -> ? (map-cache miss), ts 1700000000.503, node rtr1
"""

# The mapping system says the destination is no EID (the seed's "ltr 8.8.8.8").
NOT_AN_EID = _stopped(0, "203.0.113.8", "not an EID")

NOT_AN_EID_REPORT = """\
Received reply from 192.0.2.20, rtt 0.064 secs

Path from [0]198.51.100.1 to [0]203.0.113.8:
  ITR encap: 10.0.0.2:39656 -> 192.0.2.20, ts 1700000000.5, node xtr1
    recent-rtts [0.004, ?, ?], recent-hops [1/1, ?/?, ?/?]
  RTR decap: 192.0.2.10 -> 10.0.1.5, ts 1700000000.502, node rtr1
  RTR encap: 192.0.2.20 -> ? (not an EID), ts 1700000000.503, node rtr1
"""

# --json keeps every detail of the records, the RTR decap source's port included.
STOPPED_JSON = (
    '[{"se": "[1000]198.51.100.1", "de": "[1000]198.51.100.99", "paths": ['
    '{"n": "ITR", "sr": "10.0.0.2:39656", "hn": "xtr1", "ets": 1700000000.5, '
    '"dr": "192.0.2.20", "rtts": [0.004, -1, -1], "hops": ["1/1", "?/?", "?/?"], '
    '"lats": ["?/?", "?/?", "?/?"]}, '
    '{"n": "RTR", "sr": "192.0.2.10:61000", "hn": "rtr1", "dts": 1700000000.502, '
    '"dr": "10.0.1.5"}, '
    '{"n": "RTR", "sr": "192.0.2.20", "hn": "rtr1", "ets": 1700000000.503, '
    '"dr": "? (map-cache miss)"}]}]'
)


def wire(msg: TraceMessage) -> bytes:
    return encode_trace(msg)


# --------------------------------------------------------------------------------------------
# Arguments and EIDs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("198.51.100.18", (None, "198.51.100.18")),
        ("[1000]198.51.100.18", (1000, "198.51.100.18")),
        ("[0]2001:db8::1", (0, "2001:db8::1")),
        ("[7]host.example", (7, "host.example")),
        ("host.example", (None, "host.example")),
        ("2001:db8::1", (None, "2001:db8::1")),
        ("[16777214]10.0.0.1", (16777214, "10.0.0.1")),
    ],
)
def test_parse_destination(text: str, expected: tuple[int | None, str]) -> None:
    assert ltr.parse_destination(text) == expected


@pytest.mark.parametrize(
    "text", ["", "[1000]", "[x]10.0.0.1", "[]10.0.0.1", "[16777215]10.0.0.1", "[1", "a b"]
)
def test_parse_destination_refuses(text: str) -> None:
    with pytest.raises(ltr.UsageError):
        ltr.parse_destination(text)


def test_parse_source() -> None:
    assert ltr.parse_source("[5]10.1.1.1") == (5, V4("10.1.1.1"))
    assert ltr.parse_source("2001:db8::5") == (None, V6("2001:db8::5"))
    for bad in ("host.example", "[5]", "fe80::1%eth0"):
        with pytest.raises(ltr.UsageError):
            ltr.parse_source(bad)


DATABASE = parse_config(
    configs.toml(
        configs.xtr(
            rlocs=("2001:db8:ffff::2", "192.0.2.2"),
            database_mapping=[
                configs.mapping("198.51.100.0/24", "192.0.2.2", instance_id=1000),
                configs.mapping("198.51.100.0/28", "192.0.2.2", instance_id=1000),
                configs.mapping("198.51.100.0/28", "192.0.2.2", instance_id=7),
                configs.mapping("2001:db8:1::/48", "192.0.2.2"),
            ],
        )
    )
)
LOCAL = [V4("127.0.0.1"), V4("192.0.2.2"), V6("2001:db8:1::1"), V4("198.51.100.1"), V6("::1")]


def no_resolve(host: str, version: int | None) -> list[ltr.IPAddress]:
    raise AssertionError(f"unexpected resolution of {host}")


def test_local_eids_and_database_iid() -> None:
    assert ltr.local_eids(DATABASE.database, LOCAL) == [
        ltr.Eid(1000, V4("198.51.100.1")),
        ltr.Eid(7, V4("198.51.100.1")),
        ltr.Eid(0, V6("2001:db8:1::1")),
    ]
    assert ltr.database_iid(DATABASE.database, V4("198.51.100.1")) == 1000
    assert ltr.database_iid(DATABASE.database, V4("198.51.100.1"), 7) == 7
    assert ltr.database_iid(DATABASE.database, V4("198.51.100.200")) == 1000
    assert ltr.database_iid(DATABASE.database, V4("198.51.100.200"), 7) is None
    assert ltr.database_iid(DATABASE.database, V4("10.0.0.1")) is None
    assert str(ltr.Eid(1000, V4("198.51.100.1"))) == "[1000]198.51.100.1"


def select(
    dest: str,
    source: str | None = None,
    resolve: Callable[[str, int | None], list[ltr.IPAddress]] = no_resolve,
) -> tuple[str, str]:
    iid, host = ltr.parse_destination(dest)
    src = None if source is None else ltr.parse_source(source)
    s, d = ltr.select_endpoints(iid, host, src, DATABASE.database, lambda: LOCAL, resolve)
    return str(s), str(d)


def test_select_default_source_of_the_destination_family() -> None:
    assert select("198.51.100.18") == ("[1000]198.51.100.1", "[1000]198.51.100.18")
    assert select("203.0.113.9") == ("[1000]198.51.100.1", "[1000]203.0.113.9")  # non-EID
    assert select("2001:db8:2::1") == ("[0]2001:db8:1::1", "[0]2001:db8:2::1")
    assert select("[7]198.51.100.18") == ("[7]198.51.100.1", "[7]198.51.100.18")


def test_select_with_source() -> None:
    assert select("198.51.100.18", "198.51.100.5") == ("[1000]198.51.100.5", "[1000]198.51.100.18")
    assert select("198.51.100.18", "[7]198.51.100.5") == ("[7]198.51.100.5", "[7]198.51.100.18")
    # The destination's instance-id picks the source's when -s has none.
    assert select("[7]198.51.100.18", "198.51.100.5") == ("[7]198.51.100.5", "[7]198.51.100.18")


def test_select_dns_name_prefers_the_source_family() -> None:
    asked: list[tuple[str, int | None]] = []

    def resolve(host: str, version: int | None) -> list[ltr.IPAddress]:
        asked.append((host, version))
        return [V6("2001:db8:2::1"), V4("198.51.100.18")]

    assert select("[1000]host", resolve=resolve) == ("[1000]198.51.100.1", "[1000]198.51.100.18")
    assert select("host", "2001:db8:1::9", resolve) == ("[0]2001:db8:1::9", "[0]2001:db8:2::1")
    assert asked == [("host", None), ("host", 6)]

    def only_v6(host: str, version: int | None) -> list[ltr.IPAddress]:
        return [V6("2001:db8::9")]

    assert select("host", resolve=only_v6) == ("[0]2001:db8:1::1", "[0]2001:db8::9")
    with pytest.raises(ltr.UsageError, match="no IPv4 address"):
        select("host", "198.51.100.5", only_v6)


@pytest.mark.parametrize(
    ("dest", "source", "message"),
    [
        ("[5]198.51.100.18", None, "no local IPv4 EID in instance-id 5"),
        ("198.51.100.18", "10.9.9.9", "not a local EID"),
        ("198.51.100.18", "[7]198.51.100.200", "not a local EID"),
        ("[7]198.51.100.18", "[1000]198.51.100.5", "instance-ids must be the same"),
        ("2001:db8:2::1", "198.51.100.5", "not of the same address family"),
        ("224.1.1.1", None, "multicast"),
    ],
)
def test_select_refuses(dest: str, source: str | None, message: str) -> None:
    with pytest.raises(ltr.UsageError, match=message):
        select(dest, source)


def test_local_rloc_and_nat_status() -> None:
    assert ltr.local_rloc(DATABASE.underlay.rlocs) == V4("192.0.2.2")
    assert ltr.local_rloc([V6("2001:db8::1")]) == V4("0.0.0.0")
    assert ltr.parse_nat_status({}) == (False, [])
    assert ltr.parse_nat_status(None) == (False, [])
    assert ltr.parse_nat_status({"behind-nat": None, "rtrs": ["192.0.2.20"]}) == (False, [])
    assert ltr.parse_nat_status({"behind-nat": False, "rtrs": ["192.0.2.20"]}) == (False, [])
    assert ltr.parse_nat_status(
        {"behind-nat": True, "rtrs": ["192.0.2.20", "junk", 5, "2001:db8::20", "192.0.2.20"]}
    ) == (True, [V4("192.0.2.20"), V6("2001:db8::20")])


# --------------------------------------------------------------------------------------------
# Packets


def test_build_first_packet() -> None:
    packet = ltr.build_first_packet(40123, V4("10.0.0.2"), NONCE)
    assert packet == bytes.fromhex("90009cbb0a0000020123456789abcdef")
    msg = decode_trace(packet)
    assert (msg.local_port, msg.local_rloc, msg.nonce, msg.segments) == (
        40123,
        V4("10.0.0.2"),
        NONCE,
        None,
    )


def test_accept_reply() -> None:
    assert ltr.accept_reply(wire(ROUND_TRIP), NONCE) == ROUND_TRIP
    assert ltr.accept_reply(wire(STOPPED), NONCE) == STOPPED
    ignored = [
        wire(ROUND_TRIP)[:-1],  # broken JSON
        wire(replace(ROUND_TRIP, nonce=NONCE ^ 1)),
        wire(replace(ROUND_TRIP, local_port=40123)),  # word 0 not exactly 0x90000000
        wire(replace(ROUND_TRIP, reserved=1)),
        wire(replace(ROUND_TRIP, segments=None)),  # no JSON
        wire(replace(ROUND_TRIP, segments=())),  # "[]"
        ltr.build_first_packet(40123, V4("10.0.0.2"), NONCE),
        b"\x80" + wire(ROUND_TRIP)[1:],  # type 8
        b"\x90\x00\x00",
        b"",
    ]
    for data in ignored:
        assert ltr.accept_reply(data, NONCE) is None, data


# --------------------------------------------------------------------------------------------
# Text


def test_round_trip_report() -> None:
    assert ltr.format_report(ROUND_TRIP, "198.51.100.17", 0.0251) == ROUND_TRIP_REPORT
    assert ltr.exit_status(ROUND_TRIP) == 0
    assert ltr.format_stop(ROUND_TRIP) is None


def test_stopped_report() -> None:
    assert ltr.format_report(STOPPED, "::ffff:192.0.2.20", 0.0042) == STOPPED_REPORT
    assert ltr.exit_status(STOPPED) == 2
    assert ltr.format_stop(STOPPED) == "trace stopped at RTR rtr1: ? (map-cache miss)"
    bare = replace(STOPPED.segments[0], paths=STOPPED.segments[0].paths[:2])
    incomplete = replace(STOPPED, segments=(bare,))
    assert ltr.exit_status(incomplete) == 2
    assert ltr.format_stop(incomplete) == "trace came back without its return path"


def test_not_an_eid_report() -> None:
    assert ltr.format_report(NOT_AN_EID, "192.0.2.20", 0.064) == NOT_AN_EID_REPORT
    assert ltr.exit_status(NOT_AN_EID) == 2
    assert ltr.format_stop(NOT_AN_EID) == "trace stopped at RTR rtr1: ? (not an EID)"


def test_paths_are_separated_by_one_blank_line_and_end_without_one() -> None:
    text = ltr.format_paths(ROUND_TRIP)
    assert text.endswith("node xtr1\n") and not text.endswith("\n\n")
    assert text.count("\n\n") == 1
    assert ltr.format_paths(replace(ROUND_TRIP, segments=())) == ""


def test_json_output() -> None:
    assert ltr.format_json(STOPPED) == STOPPED_JSON
    assert json.loads(STOPPED_JSON)[0]["paths"][2]["dr"] == "? (map-cache miss)"
    assert ltr.format_json(ROUND_TRIP) == wire(ROUND_TRIP)[16:].decode()


def test_hop_details() -> None:
    # Stats only with all of rtts, hops and lats; "?" dr; an IPv6 RLOC with a port.
    hop = TraceHop(node="ITR", sr="2001:db8::2:40123", dr="?", hn="x", encap_ts=1, rtts=(-1,))
    assert ltr.format_hop(hop) == ["  ITR encap: 2001:db8::2:40123 -> ?, ts 1, node x"]
    # A decap source loses its port (IPv6 too); an encap destination keeps it.
    decap6 = TraceHop.decap("ETR", "2001:db8::2:40123", "2001:db8::6", "y", 3)
    assert ltr.format_hop(decap6) == ["  ETR decap: 2001:db8::2 -> 2001:db8::6, ts 3, node y"]
    assert ltr.without_port("192.0.2.10:61000") == "192.0.2.10"
    assert ltr.without_port("192.0.2.10") == "192.0.2.10"
    # An IPv6 text that is an address as a whole is taken as one (lispers.net writes no
    # brackets), as are texts that are no RLOC at all.
    assert ltr.without_port("2001:db8::1:5000") == "2001:db8::1:5000"
    assert ltr.without_port("? (map-cache miss)") == "? (map-cache miss)"
    assert ltr.without_port("junk:1") == "junk:1"
    # Control characters from the network are escaped, not sent to the terminal.
    evil = TraceHop.decap("ETR", "1.2.3.4", "5.6.7.8", "x\x1b[2Jy\n", 2.5)
    assert ltr.format_hop(evil) == ["  ETR decap: 1.2.3.4 -> 5.6.7.8, ts 2.5, node x\\x1b[2Jy\\n"]


def test_progress_lines() -> None:
    src, dst = ltr.Eid(1000, V4("198.51.100.1")), ltr.Eid(1000, V4("198.51.100.18"))
    assert (
        ltr.format_nat_line(V4("192.0.2.20"))
        == "Send NAT-traversal LISP-Trace to RTR 192.0.2.20 ..."
    )
    assert ltr.format_send_line(src, dst) == (
        "Send round-trip LISP-Trace between EIDs [1000]198.51.100.1 and [1000]198.51.100.18 ..."
    )
    assert ltr.format_timeout(dst, 5.0) == (
        "No reply received within 5 seconds from [1000]198.51.100.18"
    )
    assert ltr.format_timeout(dst, 0.5).startswith("No reply received within 0.5 seconds")
    assert ltr.format_received_line("::ffff:10.0.0.1", 1.5) == (
        "Received reply from 10.0.0.1, rtt 1.500 secs"
    )
    assert ltr.format_address("fe80::1%eth0") == "fe80::1"
    assert ltr.format_address("2001:db8::1") == "2001:db8::1"
    assert ltr.format_not_routed(dst, "/etc/lispd/lispd.conf") == (
        "no [[map-cache]] prefix in /etc/lispd/lispd.conf covers 198.51.100.18: the kernel "
        "routes the trace outside LISP and no LISP node sees it (a send-map-request entry for "
        "0.0.0.0/0 and ::/0 makes lispd resolve and trace every destination)"
    )


def test_map_cache_covers() -> None:
    config = parse_config(
        configs.toml(
            configs.xtr(
                rlocs=("192.0.2.2",),
                roles=("itr",),
                map_cache=[
                    configs.resolve("198.51.100.0/24"),
                    configs.mapping("2001:db8:100::/48", "192.0.2.6", instance_id=7),
                ],
                map_resolver=configs.addresses("192.0.2.10"),
            )
        )
    )
    assert ltr.map_cache_covers(config.map_cache, V4("198.51.100.200"))
    assert ltr.map_cache_covers(config.map_cache, V6("2001:db8:100:1::1"))
    assert not ltr.map_cache_covers(config.map_cache, V4("203.0.113.5"))
    assert not ltr.map_cache_covers(config.map_cache, V6("2001:db8:200::1"))
    assert not ltr.map_cache_covers((), V4("198.51.100.1"))


# --------------------------------------------------------------------------------------------
# main() end to end on the loopback: a fake hop answers in place of the overlay.

Handler = Callable[[bytes, tuple[Any, ...], socket.socket], None]


class FakeHop:
    """A UDP responder on ``host`` (an ephemeral port standing in for 2434) that records what
    it receives and lets ``handler`` answer each datagram."""

    def __init__(self, host: str, handler: Handler | None) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.handler = handler
        self.received: list[tuple[bytes, tuple[Any, ...]]] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.received.append((data, addr))
            if self.handler is not None:
                try:
                    self.handler(data, addr, self.sock)
                except BaseException as exc:
                    self.errors.append(exc)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        assert not self.errors, self.errors


@pytest.fixture
def hop_factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., FakeHop]]:
    hops: list[FakeHop] = []

    def make(host: str, handler: Handler | None) -> FakeHop:
        hop = FakeHop(host, handler)
        hops.append(hop)
        monkeypatch.setattr(ltr, "TRACE_PORT", hop.port)
        return hop

    yield make
    for hop in hops:
        hop.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path (unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="ltr"))
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def write_config(
    directory: Path, control_socket: str = "", map_cache: Sequence[configs.Doc] = ()
) -> str:
    """A lispd.conf for ltr, with the ``[[map-cache]]`` tables ``map_cache``."""
    conf = directory / "lispd.conf"
    doc = configs.xtr(
        None,
        ("192.0.2.2",),
        control_socket=control_socket,
        database_mapping=[
            configs.mapping("127.0.0.0/24", "192.0.2.2", instance_id=1000),
            configs.mapping("::1/128", "192.0.2.2"),
        ],
    )
    if map_cache:
        doc["map-cache"] = list(map_cache)
    conf.write_text(configs.toml(doc))
    return str(conf)


def turn_around(segments: tuple[TraceSegment, ...], ignore_from: str | None = None) -> Handler:
    """A handler that answers like the far ETR: the same payload, re-headed, with ``segments``,
    sent back from the address the trace went to, to the address it came from (datagrams from
    ``ignore_from`` get no answer)."""

    def handler(data: bytes, addr: tuple[Any, ...], sock: socket.socket) -> None:
        msg = decode_trace(data)
        if msg.segments is None and addr[0] != ignore_from:
            sock.sendto(encode_trace(replace(reply_header(msg), segments=segments)), addr)

    return handler


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = ltr.main(list(argv))
    out, err = capsys.readouterr()
    return rc, re.sub(r"rtt \d+\.\d{3} secs", "rtt X secs", out), err


def test_main_round_trip_ipv4(
    hop_factory: Callable[..., FakeHop], short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hop = hop_factory("127.0.0.1", turn_around(ROUND_TRIP.segments or ()))
    conf = write_config(short_dir)
    rc, out, err = run_main(capsys, "-c", conf, "-s", "127.0.0.2", "--timeout", "3", "127.0.0.1")
    assert (rc, err) == (0, "")
    expected = ROUND_TRIP_REPORT.replace("198.51.100.17, rtt 0.025 secs", "127.0.0.1, rtt X secs")
    assert out == (
        "Send round-trip LISP-Trace between EIDs [1000]127.0.0.2 and [1000]127.0.0.1 ...\n"
        + expected
    )
    [(data, addr)] = hop.received
    assert addr[0] == "127.0.0.2"  # IP_PKTINFO / IPV6_PKTINFO set the source EID
    first = decode_trace(data)
    assert (first.local_port, first.local_rloc, first.segments) == (addr[1], V4("192.0.2.2"), None)


def test_main_error_return_reaches_the_same_socket(
    hop_factory: Callable[..., FakeHop], short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The failing node returns the payload from its own address (127.0.0.3 here) to the
    # xTR's RLOC (127.0.0.1 here), not to the source EID (127.0.0.2): the wildcard-bound
    # socket still gets it.
    node = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    node.bind(("127.0.0.3", 0))

    def handler(data: bytes, addr: tuple[Any, ...], sock: socket.socket) -> None:
        msg = decode_trace(data)
        node.sendto(
            encode_trace(replace(reply_header(msg), segments=STOPPED.segments)),
            ("127.0.0.1", addr[1]),
        )

    hop_factory("127.0.0.1", handler)
    conf = write_config(short_dir)
    try:
        rc, out, err = run_main(capsys, "-c", conf, "-s", "127.0.0.2", "127.0.0.1")
    finally:
        node.close()
    assert rc == 2
    assert out == (
        "Send round-trip LISP-Trace between EIDs [1000]127.0.0.2 and [1000]127.0.0.1 ...\n"
        + STOPPED_REPORT.replace("192.0.2.20, rtt 0.004 secs", "127.0.0.3, rtt X secs")
    )
    assert err == "ltr: trace stopped at RTR rtr1: ? (map-cache miss)\n"


def test_main_json(
    hop_factory: Callable[..., FakeHop], short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hop_factory("127.0.0.1", turn_around(STOPPED.segments or ()))
    conf = write_config(short_dir)
    rc, out, err = run_main(capsys, "-c", conf, "--json", "[1000]127.0.0.1")
    assert rc == 2
    assert out == STOPPED_JSON + "\n"
    assert re.sub(r"rtt \d+\.\d{3} secs", "rtt X secs", err) == (
        "Send round-trip LISP-Trace between EIDs [1000]127.0.0.1 and [1000]127.0.0.1 ...\n"
        "Received reply from 127.0.0.1, rtt X secs\n"
        "ltr: trace stopped at RTR rtr1: ? (map-cache miss)\n"
    )


def test_main_ignores_strangers_then_times_out(
    hop_factory: Callable[..., FakeHop], short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def handler(data: bytes, addr: tuple[Any, ...], sock: socket.socket) -> None:
        msg = decode_trace(data)
        good = replace(reply_header(msg), segments=ROUND_TRIP.segments)
        for bad in (
            data,  # the header as sent (word 0 carries the port), no JSON
            encode_trace(replace(good, nonce=msg.nonce ^ 1)),
            encode_trace(replace(good, local_port=1)),
            encode_trace(replace(good, segments=())),
            b"garbage",
        ):
            sock.sendto(bad, addr)

    hop_factory("127.0.0.1", handler)
    conf = write_config(short_dir)
    rc, out, err = run_main(capsys, "-c", conf, "-s", "127.0.0.2", "--timeout", "0.5", "127.0.0.1")
    assert rc == 1
    assert out == (
        "Send round-trip LISP-Trace between EIDs [1000]127.0.0.2 and [1000]127.0.0.1 ...\n"
        "No reply received within 0.5 seconds from [1000]127.0.0.1\n"
    )
    # No [[map-cache]] prefix covers the destination: ltr says why nothing could answer.
    assert err == f"ltr: {ltr.format_not_routed(ltr.Eid(1000, V4('127.0.0.1')), conf)}\n"


def test_main_timeout_inside_the_map_cache_says_nothing_more(
    hop_factory: Callable[..., FakeHop], short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hop_factory("127.0.0.1", None)  # never answers
    conf = write_config(short_dir, map_cache=[configs.mapping("0.0.0.0/0", "192.0.2.6")])
    rc, out, err = run_main(capsys, "-c", conf, "-s", "127.0.0.2", "--timeout", "0.3", "127.0.0.1")
    assert (rc, err) == (1, "")
    assert out.endswith("No reply received within 0.3 seconds from [1000]127.0.0.1\n")


def test_main_behind_nat_primes_the_rtrs(
    hop_factory: Callable[..., FakeHop], short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctl_path = str(short_dir / "ctl.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(ctl_path)
    server.listen(1)
    requests: list[Any] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            requests.append(json.loads(conn.makefile().readline()))
            result = {"behind-nat": True, "rtrs": ["127.0.0.1"], "global-rloc": "192.0.2.10"}
            conn.sendall(json.dumps({"ok": True, "result": result}).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    hop = hop_factory("127.0.0.1", turn_around(ROUND_TRIP.segments or (), "127.0.0.1"))
    conf = write_config(short_dir, ctl_path)
    try:
        rc, out, err = run_main(capsys, "-c", conf, "-s", "127.0.0.2", "127.0.0.1")
    finally:
        thread.join(5)
        server.close()
    assert (rc, err) == (0, "")
    assert requests == [{"command": "nat"}]
    assert out.startswith(
        "Send NAT-traversal LISP-Trace to RTR 127.0.0.1 ...\n"
        "Send round-trip LISP-Trace between EIDs [1000]127.0.0.2 and [1000]127.0.0.1 ...\n"
        "Received reply from 127.0.0.1, rtt X secs\n\n"
    )
    # The bare header to the RTR and the trace: same bytes, same socket (port); the first from
    # the address the kernel chose (the RLOC), the second from the source EID.
    [(to_rtr, rtr_addr), (trace, trace_addr)] = hop.received
    assert to_rtr == trace and len(trace) == 16
    assert rtr_addr == ("127.0.0.1", trace_addr[1])
    assert trace_addr[0] == "127.0.0.2"


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_main_round_trip_ipv6_default_source(
    hop_factory: Callable[..., FakeHop], short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    segments = (TraceSegment(se="[0]::1", de="[0]::1"), TraceSegment(se="[0]::1", de="[0]::1"))
    hop = hop_factory("::1", turn_around(segments))
    conf = write_config(short_dir)
    rc, out, err = run_main(capsys, "-c", conf, "::1")
    assert (rc, err) == (0, "")
    assert out == (
        "Send round-trip LISP-Trace between EIDs [0]::1 and [0]::1 ...\n"
        "Received reply from ::1, rtt X secs\n\n"
        "Path from [0]::1 to [0]::1:\n\n"
        "Path from [0]::1 to [0]::1:\n"
    )
    assert hop.received[0][1][0] == "::1"


def test_main_usage_errors_exit_1(short_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = write_config(short_dir)
    assert ltr.main(["-c", conf, "[x]1.2.3.4"]) == 1
    assert ltr.main(["-c", conf, "-s", "10.9.9.9", "1.2.3.4"]) == 1
    assert ltr.main(["-c", os.path.join(str(short_dir), "absent.conf"), "1.2.3.4"]) == 1
    with pytest.raises(SystemExit) as exc:
        ltr.main(["-c", conf, "--timeout", "0", "1.2.3.4"])
    assert exc.value.code == 1
    with pytest.raises(SystemExit) as exc:
        ltr.main([])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "ltr: '[x]1.2.3.4': expected [instance-id]address or a host name" in err
    assert "ltr: source 10.9.9.9 is not in a database-mapping prefix: not a local EID" in err
    assert "absent.conf: cannot read" in err
