"""``rig``, the LISP Internet Groper for DDT: the walk fed with in-memory Map-Referrals and a fake
clock (golden text and JSON), hostile datagrams, and ``main`` end to end against fake DDT nodes
on the loopback (no root, no namespaces)."""

from __future__ import annotations

import ipaddress
import itertools
import json
import random
import re
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from lispd.cli import rig
from lispd.cli.lookup import Target, build_request
from lispd.wire.address import InstanceIdAddress
from lispd.wire.ecm import EncapsulatedControl, decode_ecm
from lispd.wire.mapreferral import (
    MapReferral,
    ReferralAction,
    ReferralRecord,
    encode_map_referral,
)
from lispd.wire.mapreply import MapReply, encode_map_reply
from lispd.wire.maprequest import MapRequest, encode_map_request
from lispd.wire.records import EidPrefix, EidRecord, Locator
from tests import configs

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address
A = ReferralAction

TARGET = Target(0, V4("198.51.100.10"), 32)
ROOT = V4("192.0.2.40")
NODE = V4("192.0.2.50")
NODE2 = V4("192.0.2.51")
MS = V4("192.0.2.10")
ETR = V4("192.0.2.6")

Member = tuple[str, int, int]


def record(
    action: ReferralAction,
    prefix: str = "198.51.100.0/25",
    members: Sequence[Member] = (),
    *,
    ttl: int = 1440,
    auth: bool = True,
    incomplete: bool = False,
    iid: int = 0,
) -> ReferralRecord:
    net = ipaddress.ip_network(prefix)
    eid: Any = net.network_address
    if iid:
        eid = InstanceIdAddress(iid, eid)
    return ReferralRecord(
        eid=eid,
        mask_len=net.prefixlen,
        referrals=tuple(Locator(ipaddress.ip_address(a), p, w) for a, p, w in members),
        ttl=ttl,
        action=action,
        authoritative=auth,
        incomplete=incomplete,
    )


def referral(nonce: int, *records: ReferralRecord) -> bytes:
    return encode_map_referral(MapReferral(nonce, records))


MAPPING = EidRecord(V4("198.51.100.0"), 28, (Locator(ETR, 1, 100),), ttl=1440, authoritative=True)


def map_reply(nonce: int, *, probe: bool = False) -> bytes:
    return encode_map_reply(MapReply(nonce, (MAPPING,), probe=probe))


def counter(start: int = 0x1000) -> Callable[[], int]:
    it = itertools.count(start)
    return lambda: next(it)


class Driver:
    """Feeds a walk and keeps what it prints and sends, on a fake clock."""

    def __init__(
        self,
        start: Sequence[ipaddress.IPv4Address] = (ROOT,),
        *,
        timeout: float = 2.0,
        max_steps: int = 16,
        target: Target = TARGET,
    ) -> None:
        self.walk = rig.Walk(target, start, timeout=timeout, max_steps=max_steps, nonce=counter())
        self.now = 100.0
        self.text = ""
        self.sent: list[rig.Send] = []
        self.feed(self.walk.start(self.now))

    def feed(self, effects: Sequence[rig.Effect]) -> None:
        for effect in effects:
            self.text += rig.format_effect(effect, self.walk.target)
            if isinstance(effect, rig.Send):
                self.sent.append(effect)

    @property
    def last(self) -> rig.Send:
        return self.sent[-1]

    def datagram(self, data: bytes, src: ipaddress.IPv4Address | None, dt: float = 0.002) -> None:
        self.now += dt
        self.feed(self.walk.on_datagram(data, src, self.now))

    def answer(self, *records: ReferralRecord, dt: float = 0.002) -> None:
        """The node last asked answers with ``records``."""
        self.datagram(referral(self.last.nonce, *records), self.last.node, dt)

    def tick(self, dt: float) -> None:
        self.now += dt
        self.feed(self.walk.on_timer(self.now))

    def lines(self) -> str:
        return self.text


# --------------------------------------------------------------------------------------------
# The request

# lig's golden Map-Request (tests/unit/test_lig.py) with the ECM's D bit.
GOLDEN_DDT_REQUEST = bytes.fromhex(
    "84000000"  # ECM, D (DDT-originated)
    "4500003c0000400040114e69c0000202c6336412"  # inner IPv4 192.0.2.2 -> 198.51.100.18, UDP
    "9c4010f60028a157"  # inner UDP 40000 -> 4342
    "10000001"  # Map-Request, one record
    "0123456789abcdef"  # nonce
    "0001c6336401"  # source EID 198.51.100.1
    "0001c0000202"  # ITR-RLOC 192.0.2.2
    "00200001c6336412"  # record: /32 198.51.100.18
)


def test_ddt_request_golden() -> None:
    target = Target(0, V4("198.51.100.18"), 32)
    data = build_request(
        target, V4("192.0.2.2"), 40000, 0x0123456789ABCDEF, V4("198.51.100.1"), ddt=True
    )
    assert data == GOLDEN_DDT_REQUEST
    ecm = decode_ecm(data)
    assert ecm.ddt and not (ecm.to_ms or ecm.to_etr)
    assert ecm.sport == 40000
    assert build_request(target, V4("192.0.2.2"), 40000, 1)[0] == 0x80  # lig's: no D bit


# --------------------------------------------------------------------------------------------
# The walk

FULL_WALK_TEXT = (
    "Send DDT map-request to 192.0.2.40 for [0]198.51.100.10 ...\n"
    "Received node-referral from 192.0.2.40 with rtt 0.002 secs\n"
    "  [0]198.51.100.0/25, ttl 1440, auth\n"
    "    Referral    Priority/Weight\n"
    "    192.0.2.51  2/100\n"
    "    192.0.2.50  1/100\n"
    "Send DDT map-request to 192.0.2.50 for [0]198.51.100.10 ...\n"
    "Received ms-referral from 192.0.2.50 with rtt 0.003 secs\n"
    "  [0]198.51.100.0/26, ttl 1440, auth, incomplete\n"
    "    Referral    Priority/Weight\n"
    "    192.0.2.10  1/100\n"
    "Send DDT map-request to 192.0.2.10 for [0]198.51.100.10 ...\n"
    "Received ms-ack from 192.0.2.10 with rtt 0.004 secs\n"
    "  [0]198.51.100.0/28, ttl 1440, auth\n"
    "    Referral    Priority/Weight\n"
    "    192.0.2.10  1/100\n"
    "Received map-reply from 192.0.2.6 with rtt 0.001 secs\n"
    "\n"
    "Mapping entry for EID '[0]198.51.100.0/28', record ttl 1440, auth\n"
    "  Locator    State  Priority/Weight\n"
    "  192.0.2.6  up     1/100\n"
)


def full_walk(reply_first: bool) -> Driver:
    d = Driver()
    d.answer(
        record(A.NODE_REFERRAL, "198.51.100.0/25", [("192.0.2.51", 2, 100), ("192.0.2.50", 1, 100)])
    )
    assert d.last.node == NODE  # the lowest priority first
    d.answer(
        record(A.MS_REFERRAL, "198.51.100.0/26", [("192.0.2.10", 1, 100)], incomplete=True),
        dt=0.003,
    )
    assert d.last.node == MS
    ms_nonce = d.last.nonce
    if reply_first:  # the ETR's Map-Reply overtakes the MS-ACK: shown after it
        d.datagram(map_reply(ms_nonce), ETR, dt=0.001)
        assert d.text.endswith("192.0.2.10 for [0]198.51.100.10 ...\n")
        d.answer(record(A.MS_ACK, "198.51.100.0/28", [("192.0.2.10", 1, 100)]), dt=0.003)
    else:
        d.answer(record(A.MS_ACK, "198.51.100.0/28", [("192.0.2.10", 1, 100)]), dt=0.004)
        assert not d.walk.done and d.walk.deadline == pytest.approx(d.now + 2.0)
        d.datagram(map_reply(ms_nonce), ETR, dt=0.001)
    return d


@pytest.mark.parametrize("reply_first", [False, True])
def test_full_walk_text(reply_first: bool) -> None:
    d = full_walk(reply_first)
    assert d.walk.done and d.walk.deadline is None
    assert d.walk.outcome == "ms-ack" and rig.exit_status(d.walk) == 0
    if reply_first:  # rtts from the request: the Map-Reply 0.001 in, the MS-ACK 0.003 later
        assert d.text == FULL_WALK_TEXT
    else:  # the MS-ACK 0.004 in, the Map-Reply 0.001 later
        assert d.text == FULL_WALK_TEXT.replace(
            "rtt 0.001 secs\n\nMapping", "rtt 0.005 secs\n\nMapping"
        )
    assert [s.nonce for s in d.sent] == [0x1000, 0x1001, 0x1002]  # a fresh nonce per request
    assert not d.walk.ignored


def test_full_walk_json() -> None:
    d = full_walk(reply_first=False)
    assert rig.walk_json(d.walk) == {
        "eid": "[0]198.51.100.10/32",
        "outcome": "ms-ack",
        "steps": [
            {
                "node": "192.0.2.40",
                "action": "node-referral",
                "prefix": "[0]198.51.100.0/25",
                "ttl": 1440,
                "authoritative": True,
                "incomplete": False,
                "referrals": [
                    {"address": "192.0.2.51", "priority": 2, "weight": 100},
                    {"address": "192.0.2.50", "priority": 1, "weight": 100},
                ],
                "rtt": 0.002,
            },
            {
                "node": "192.0.2.50",
                "action": "ms-referral",
                "prefix": "[0]198.51.100.0/26",
                "ttl": 1440,
                "authoritative": True,
                "incomplete": True,
                "referrals": [{"address": "192.0.2.10", "priority": 1, "weight": 100}],
                "rtt": 0.003,
            },
            {
                "node": "192.0.2.10",
                "action": "ms-ack",
                "prefix": "[0]198.51.100.0/28",
                "ttl": 1440,
                "authoritative": True,
                "incomplete": False,
                "referrals": [{"address": "192.0.2.10", "priority": 1, "weight": 100}],
                "rtt": 0.004,
            },
        ],
        "map_reply": {
            "from": "192.0.2.6",
            "rtt": 0.005,
            "nonce": "0x0000000000001002",
            "records": [
                {
                    "eid-prefix": "[0]198.51.100.0/28",
                    "iid": 0,
                    "ttl": 1440,
                    "action": "no-action",
                    "authoritative": True,
                    "locators": [
                        {"address": "192.0.2.6", "priority": 1, "weight": 100, "state": "up"}
                    ],
                }
            ],
        },
        "ignored": {},
    }
    json.dumps(rig.walk_json(d.walk))  # serialisable


def test_ms_ack_without_map_reply_waits_one_timeout() -> None:
    d = Driver((MS,))
    d.answer(record(A.MS_ACK, "198.51.100.0/28", [("192.0.2.10", 1, 100)]))
    assert not d.walk.done
    d.tick(1.0)
    assert not d.walk.done
    d.tick(1.0)
    assert d.walk.done and d.walk.outcome == "ms-ack" and d.walk.map_reply is None
    assert d.text.endswith("No map-reply within 2 secs after the ms-ack\n")
    assert rig.exit_status(d.walk) == 0
    assert rig.walk_json(d.walk)["map_reply"] is None


@pytest.mark.parametrize(
    ("action", "prefix", "ttl", "line"),
    [
        (A.DELEGATION_HOLE, "198.51.100.0/27", 15, "  [0]198.51.100.0/27, ttl 15, auth\n"),
        (A.NOT_AUTHORITATIVE, "198.51.100.10/32", 0, "  [0]198.51.100.10/32, ttl 0, auth\n"),
        (A.MS_NOT_REGISTERED, "198.51.100.0/28", 1, "  [0]198.51.100.0/28, ttl 1, auth\n"),
    ],
)
def test_negative_answers_end_the_walk(
    action: ReferralAction, prefix: str, ttl: int, line: str
) -> None:
    d = Driver()
    d.answer(record(action, prefix, ttl=ttl))
    assert d.walk.done and d.walk.outcome == rig.ACTION_NAMES[action]
    assert rig.exit_status(d.walk) == 0
    assert d.text == (
        "Send DDT map-request to 192.0.2.40 for [0]198.51.100.10 ...\n"
        f"Received {rig.ACTION_NAMES[action]} from 192.0.2.40 with rtt 0.002 secs\n" + line
    )


def test_negative_answer_not_covering_the_eid_is_taken() -> None:
    # A lone negative record ends the walk even when its prefix is not the EID's.
    d = Driver()
    d.answer(record(A.NOT_AUTHORITATIVE, "203.0.113.0/24", ttl=0, auth=False))
    assert d.walk.outcome == "not-authoritative"
    assert "  [0]203.0.113.0/24, ttl 0, not auth\n" in d.text


def test_timeouts_move_through_the_set_and_a_late_answer_counts() -> None:
    d = Driver()
    d.answer(
        record(
            A.NODE_REFERRAL,
            "198.51.100.0/25",
            [("192.0.2.50", 1, 100), ("192.0.2.52", 255, 100), ("192.0.2.51", 1, 50)],
        )
    )
    first = d.last
    assert first.node == NODE
    d.tick(1.999)
    assert d.last is first
    d.tick(0.001)
    assert d.last.node == NODE2  # priority 255 is never asked
    assert "Timed out: no map-referral from 192.0.2.50 within 2 secs\n" in d.text
    # 192.0.2.50 answers late (its own nonce, from its address): accepted.
    d.datagram(referral(first.nonce, record(A.DELEGATION_HOLE, "198.51.100.0/27", ttl=15)), NODE)
    assert d.walk.outcome == "delegation-hole"
    assert rig.step_json(d.walk.steps[1]) == {"node": "192.0.2.50", "timeout": True}
    assert d.walk.steps[2].node == NODE  # type: ignore[union-attr]
    assert d.walk.steps[2].rtt == pytest.approx(2.002)  # type: ignore[union-attr]


def test_every_member_silent_is_a_timeout() -> None:
    d = Driver((ROOT, V4("192.0.2.41")), timeout=0.5)
    d.tick(0.5)
    assert d.last.node == V4("192.0.2.41")
    d.tick(0.5)
    assert d.walk.done and d.walk.outcome == "timeout" and rig.exit_status(d.walk) == 1
    assert d.text == (
        "Send DDT map-request to 192.0.2.40 for [0]198.51.100.10 ...\n"
        "Timed out: no map-referral from 192.0.2.40 within 0.5 secs\n"
        "Send DDT map-request to 192.0.2.41 for [0]198.51.100.10 ...\n"
        "Timed out: no map-referral from 192.0.2.41 within 0.5 secs\n"
        "Stopped: no start node answered\n"
    )
    assert rig.walk_json(d.walk)["steps"] == [
        {"node": "192.0.2.40", "timeout": True},
        {"node": "192.0.2.41", "timeout": True},
    ]
    # Deeper down: the set's members.
    d = Driver()
    d.answer(record(A.NODE_REFERRAL, members=[("192.0.2.50", 1, 100)]))
    d.tick(2.0)
    assert d.walk.outcome == "timeout"
    assert d.text.endswith("Stopped: no member of the referral set answered\n")


def test_send_error_moves_on() -> None:
    d = Driver((ROOT, V4("192.0.2.41")))
    d.feed(d.walk.on_send_error(d.last.nonce ^ 1, "nope", d.now))  # not the current request
    assert d.last.node == ROOT
    d.feed(d.walk.on_send_error(d.last.nonce, "Network is unreachable", d.now))
    assert d.last.node == V4("192.0.2.41")
    assert "Cannot send to 192.0.2.40: Network is unreachable\n" in d.text
    assert rig.step_json(d.walk.steps[0]) == {
        "node": "192.0.2.40",
        "timeout": True,
        "error": "Network is unreachable",
    }


def test_referral_loop_already_followed() -> None:
    d = Driver()
    d.answer(record(A.NODE_REFERRAL, "198.51.100.0/25", [("192.0.2.50", 1, 100)]))
    d.answer(record(A.NODE_REFERRAL, "198.51.100.0/25", [("192.0.2.51", 1, 100)]))
    d.answer(record(A.NODE_REFERRAL, "198.51.100.0/25", [("192.0.2.50", 1, 100)]))
    assert d.walk.done and d.walk.outcome == "loop" and rig.exit_status(d.walk) == 1
    assert len(d.sent) == 3
    assert d.text.endswith(
        "    192.0.2.50  1/100\nStopped: referral loop, [0]198.51.100.0/25 already followed\n"
    )
    assert len(rig.walk_json(d.walk)["steps"]) == 3


def test_referral_loop_less_specific() -> None:
    d = Driver()
    d.answer(record(A.NODE_REFERRAL, "198.51.100.0/26", [("192.0.2.50", 1, 100)]))
    d.answer(record(A.MS_REFERRAL, "198.51.100.0/25", [("192.0.2.10", 1, 100)]))
    assert d.walk.outcome == "loop" and len(d.sent) == 2
    assert d.text.endswith(
        "Stopped: referral loop, [0]198.51.100.0/25 less specific than [0]198.51.100.0/26\n"
    )


def test_max_steps() -> None:
    d = Driver(max_steps=3)
    for length in (25, 26, 27):
        d.answer(record(A.NODE_REFERRAL, f"198.51.100.0/{length}", [("192.0.2.50", 1, 100)]))
    assert d.walk.outcome == "max-steps" and len(d.sent) == 3
    assert d.text.endswith("Stopped: 3 map-requests sent (--max-steps)\n")
    assert rig.exit_status(d.walk) == 1
    # Timeouts count as requests too.
    d = Driver((ROOT, V4("192.0.2.41"), V4("192.0.2.42")), max_steps=2, timeout=1)
    d.tick(1)
    d.tick(1)
    assert d.walk.outcome == "max-steps" and len(d.sent) == 2


def test_no_usable_member() -> None:
    d = Driver()
    d.answer(record(A.NODE_REFERRAL, members=[("192.0.2.50", 255, 0), ("192.0.2.51", 255, 0)]))
    assert d.walk.outcome == "no-usable-referral" and rig.exit_status(d.walk) == 1
    assert d.text.endswith("Stopped: the referral set has no usable member\n")
    d = Driver()
    d.answer(record(A.MS_REFERRAL))  # empty set
    assert d.walk.outcome == "no-usable-referral"


def test_map_server_answering_with_a_map_reply_only() -> None:
    # A Map-Server that does not speak DDT: its Map-Reply is the answer at the timeout.
    d = Driver((MS,), timeout=1)
    d.datagram(map_reply(d.last.nonce), MS)
    assert not d.walk.done
    d.tick(1)
    assert d.walk.done and d.walk.outcome == "map-reply" and rig.exit_status(d.walk) == 0
    assert "Received map-reply from 192.0.2.10 with rtt 0.002 secs\n" in d.text
    assert rig.walk_json(d.walk)["map_reply"]["from"] == "192.0.2.10"


def test_instance_id_and_ipv6() -> None:
    target = Target(7, V6("2001:db8:1::1"), 128)
    d = Driver(target=target)
    assert d.text == "Send DDT map-request to 192.0.2.40 for [7]2001:db8:1::1 ...\n"
    # The record of another instance-id does not cover the EID.
    d.answer(record(A.NODE_REFERRAL, "2001:db8::/32", [("2001:db8::50", 1, 100)]))
    assert d.walk.ignored == {"not-covering": 1}
    d.answer(record(A.NODE_REFERRAL, "2001:db8::/32", [("2001:db8::50", 1, 100)], iid=7))
    assert d.last.node == V6("2001:db8::50")
    assert "  [7]2001:db8::/32, ttl 1440, auth\n" in d.text
    assert "    Referral      Priority/Weight\n    2001:db8::50  1/100\n" in d.text
    assert rig.eid_text(target) == "[7]2001:db8:1::1/128"


# --------------------------------------------------------------------------------------------
# Hostile and stray datagrams


def test_stray_datagrams_are_counted_and_ignored() -> None:
    d = Driver()
    nonce = d.last.nonce
    good = referral(nonce, record(A.NODE_REFERRAL, members=[("192.0.2.50", 1, 100)]))
    d.datagram(b"", ROOT)
    d.datagram(good[:-3], ROOT)  # truncated
    d.datagram(b"\x60" + b"\xff" * 40, ROOT)  # garbage of the Map-Referral type
    d.datagram(referral(nonce ^ 1, record(A.MS_ACK)), ROOT)  # wrong nonce
    d.datagram(good, V4("192.0.2.99"))  # wrong source
    d.datagram(good, None)  # no source address
    d.datagram(
        encode_map_request(MapRequest(nonce, (EidPrefix(V4("1.2.3.4"), 32),), (ROOT,))), ROOT
    )
    d.datagram(map_reply(nonce, probe=True), ROOT)
    d.datagram(map_reply(nonce ^ 1), ROOT)
    d.datagram(referral(nonce, record(A.UNASSIGNED_6, "198.51.100.0/25")), ROOT)
    d.datagram(referral(nonce, record(A.NODE_REFERRAL, "203.0.113.0/24")), ROOT)  # not covering
    d.datagram(referral(nonce), ROOT)  # no record at all
    # A signed record (SigCnt set): lispd refuses them.
    signed = bytearray(good)
    signed[12 + 8] |= 0x10
    d.datagram(bytes(signed), ROOT)
    assert len(d.sent) == 1 and not d.walk.steps
    assert d.walk.ignored == {
        "malformed": 4,
        "wrong-nonce": 2,
        "wrong-source": 2,
        "unexpected-type": 1,
        "rloc-probe": 1,
        "unknown-action": 1,
        "not-covering": 2,
    }
    d.datagram(good, ROOT)  # the real answer still counts
    assert d.last.node == NODE
    # Answers to the step before: stale; a Map-Reply with a DDT node's nonce: not for an MS.
    d.datagram(good, ROOT)
    d.datagram(map_reply(nonce), ETR)
    assert d.walk.ignored["stale"] == 1 and d.walk.ignored["map-reply-not-for-ms"] == 1
    assert rig.format_ignored(d.walk.ignored) == (
        "Ignored 15 datagrams: malformed 4, map-reply-not-for-ms 1, not-covering 2, "
        "rloc-probe 1, stale 1, unexpected-type 1, unknown-action 1, wrong-nonce 2, "
        "wrong-source 2\n"
    )
    assert rig.walk_json(d.walk)["ignored"]["wrong-nonce"] == 2
    assert rig.format_ignored(rig.Walk(TARGET, [ROOT]).ignored) == ""


def test_a_second_answer_after_the_ms_ack_is_stale() -> None:
    d = Driver((MS,))
    ack = record(A.MS_ACK, "198.51.100.0/28", [("192.0.2.10", 1, 100)])
    d.answer(ack)
    d.answer(ack)
    assert d.walk.ignored == {"stale": 1} and len(d.walk.steps) == 1
    d.datagram(map_reply(d.last.nonce), ETR)
    d.datagram(map_reply(d.last.nonce), ETR)  # after the end
    assert d.walk.done and d.walk.ignored == {"stale": 2}


def test_255_records_and_a_huge_referral_set() -> None:
    d = Driver()
    members = [(f"192.0.2.{i}", 255 if i % 2 else i % 7, 1) for i in range(1, 256)]
    others = [record(A.NODE_REFERRAL, f"203.0.113.{i}/32") for i in range(254)]
    covering = record(A.NODE_REFERRAL, "198.51.100.0/25", members)
    d.answer(*others[:100], covering, *others[100:])
    step = d.walk.steps[0]
    assert isinstance(step, rig.Answered) and step.record == covering
    assert len(rig.step_json(step)["referrals"]) == 255
    assert d.text.count("\n    192.0.2.") == 255
    # Best first: priority 0 of the even addresses (i % 7 == 0), odd ones are 255.
    assert d.last.node == V4("192.0.2.14")
    # The most specific covering record wins.
    d = Driver()
    d.answer(
        record(A.NODE_REFERRAL, "198.51.100.0/24", [("192.0.2.50", 1, 1)]),
        record(A.NODE_REFERRAL, "198.51.100.0/26", [("192.0.2.51", 1, 1)]),
    )
    assert d.last.node == NODE2
    # A set of 255 silent members ends at --max-steps, never loops on forever.
    d = Driver(max_steps=5, timeout=0.1)
    d.answer(record(A.NODE_REFERRAL, members=[(f"192.0.2.{i}", 1, 1) for i in range(1, 256)]))
    for _ in range(10):
        d.tick(0.1)
    assert d.walk.outcome == "max-steps" and len(d.sent) == 5


def test_random_and_truncated_datagrams_never_raise() -> None:
    rng = random.Random(8112)
    d = Driver()
    nonce = d.last.nonce
    good = referral(
        nonce,
        record(A.NODE_REFERRAL, "198.51.100.0/25", [("192.0.2.50", 1, 100)]),
        record(A.DELEGATION_HOLE, "203.0.113.0/24"),
    )
    for end in range(len(good)):
        d.datagram(good[:end], ROOT)
    for _ in range(2000):
        data = bytearray(good if rng.random() < 0.5 else rng.randbytes(rng.randrange(1, 80)))
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data[0] = (data[0] & 0x0F) | (rng.choice((2, 6)) << 4)
        d.datagram(bytes(data), rng.choice((ROOT, NODE)), dt=0)
        if d.walk.done:
            break
    assert sum(d.walk.ignored.values()) >= len(good)
    json.dumps(rig.walk_json(d.walk))


def test_walk_starts_once() -> None:
    d = Driver()
    with pytest.raises(RuntimeError):
        d.walk.start(0.0)


def test_usable_referrals_order() -> None:
    rec = record(
        A.NODE_REFERRAL,
        members=[
            ("192.0.2.3", 2, 1),
            ("192.0.2.1", 1, 1),
            ("224.0.0.1", 0, 1),
            ("192.0.2.2", 1, 1),
            ("0.0.0.0", 0, 1),
            ("255.255.255.255", 0, 1),
            ("ff02::1", 0, 1),
            ("::", 0, 1),
            ("192.0.2.1", 3, 1),
            ("2001:db8::1", 4, 1),
        ],
    )
    assert rig.usable_referrals(rec) == [
        V4("192.0.2.1"),
        V4("192.0.2.2"),
        V4("192.0.2.3"),
        V6("2001:db8::1"),
    ]


def test_a_node_referral_to_a_map_server() -> None:
    # A NODE-REFERRAL may lead to a Map-Server: its ETR's Map-Reply, even ahead of the MS-ACK,
    # is the answer; a Map-Reply for a node that answered with a referral is not.
    d = Driver()
    d.answer(record(A.NODE_REFERRAL, members=[("192.0.2.10", 1, 100)]))
    d.datagram(map_reply(d.sent[0].nonce), ETR)
    d.datagram(map_reply(d.last.nonce), ETR)
    d.answer(record(A.MS_ACK, "198.51.100.0/28", [("192.0.2.10", 1, 100)]))
    assert d.walk.done and d.walk.outcome == "ms-ack"
    assert d.walk.map_reply is not None and d.walk.map_reply.message.nonce == d.last.nonce
    assert d.walk.ignored == {"map-reply-not-for-ms": 1}


# --------------------------------------------------------------------------------------------
# main() against fake DDT nodes on the loopback

Responder = Callable[[EncapsulatedControl, socket.socket], None]


class FakeNodes:
    """UDP sockets on 127.0.0.x, one port for all, each answering DDT ECMs with a responder."""

    def __init__(self, responders: dict[str, Responder]) -> None:
        self.received: list[tuple[str, EncapsulatedControl]] = []
        self.socks: dict[str, socket.socket] = {}
        for address in responders:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            port = next(iter(self.socks.values())).getsockname()[1] if self.socks else 0
            sock.bind((address, port))
            sock.settimeout(0.05)
            self.socks[address] = sock
        self.port = next(iter(self.socks.values())).getsockname()[1]
        self.responders = responders
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self.run, args=(a,), daemon=True) for a in self.socks
        ]
        for thread in self.threads:
            thread.start()

    def run(self, address: str) -> None:
        sock = self.socks[address]
        while not self.stop.is_set():
            try:
                data, _ = sock.recvfrom(65535)
            except TimeoutError:
                continue
            ecm = decode_ecm(data)
            self.received.append((address, ecm))
            self.responders[address](ecm, sock)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        for sock in self.socks.values():
            sock.close()


def answers(*records: ReferralRecord, etr: socket.socket | None = None) -> Responder:
    """Answer like a DDT node (to the ITR-RLOC at the inner source port), after a stray
    wrong-nonce referral; ``etr``: also send the Map-Reply from that socket."""

    def respond(ecm: EncapsulatedControl, sock: socket.socket) -> None:
        request = ecm.message
        assert isinstance(request, MapRequest) and ecm.ddt
        dst = (str(request.itr_rlocs[0]), ecm.sport)
        sock.sendto(referral(request.nonce ^ 1, *records), dst)
        sock.sendto(referral(request.nonce, *records), dst)
        if etr is not None:
            etr.sendto(map_reply(request.nonce), dst)

    return respond


def silent(ecm: EncapsulatedControl, sock: socket.socket) -> None:
    """A dead node."""


@pytest.fixture
def loopback_etr() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.6", 0))
    yield sock
    sock.close()


@pytest.fixture
def nodes_factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., FakeNodes]]:
    made: list[FakeNodes] = []

    def make(responders: dict[str, Responder]) -> FakeNodes:
        fake = FakeNodes(responders)
        monkeypatch.setattr(rig, "DDT_PORT", fake.port)
        made.append(fake)
        return fake

    yield make
    for fake in made:
        fake.close()


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = rig.main(list(argv))
    out, err = capsys.readouterr()
    return rc, re.sub(r"rtt \d+\.\d{3} secs", "rtt X secs", out), err


def tree(etr: socket.socket) -> dict[str, Responder]:
    """root 127.0.0.2 -> (dead 127.0.0.3, node 127.0.0.4) -> Map-Server 127.0.0.5."""
    return {
        "127.0.0.2": answers(
            record(A.NODE_REFERRAL, "198.51.100.0/25", [("127.0.0.3", 1, 1), ("127.0.0.4", 2, 1)])
        ),
        "127.0.0.3": silent,
        "127.0.0.4": answers(record(A.MS_REFERRAL, "198.51.100.0/26", [("127.0.0.5", 1, 1)])),
        "127.0.0.5": answers(record(A.MS_ACK, "198.51.100.0/28", [("127.0.0.5", 1, 1)]), etr=etr),
    }


def test_main_walks_to_the_map_server(
    nodes_factory: Callable[..., FakeNodes],
    loopback_etr: socket.socket,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = nodes_factory(tree(loopback_etr))
    rc, out, err = run_main(
        capsys, "-t", "127.0.0.2", "-s", "198.51.100.1", "--timeout", "0.3", "198.51.100.10"
    )
    assert (rc, err) == (0, ""), err
    assert out == (
        "Send DDT map-request to 127.0.0.2 for [0]198.51.100.10 ...\n"
        "Received node-referral from 127.0.0.2 with rtt X secs\n"
        "  [0]198.51.100.0/25, ttl 1440, auth\n"
        "    Referral   Priority/Weight\n"
        "    127.0.0.3  1/1\n"
        "    127.0.0.4  2/1\n"
        "Send DDT map-request to 127.0.0.3 for [0]198.51.100.10 ...\n"
        "Timed out: no map-referral from 127.0.0.3 within 0.3 secs\n"
        "Send DDT map-request to 127.0.0.4 for [0]198.51.100.10 ...\n"
        "Received ms-referral from 127.0.0.4 with rtt X secs\n"
        "  [0]198.51.100.0/26, ttl 1440, auth\n"
        "    Referral   Priority/Weight\n"
        "    127.0.0.5  1/1\n"
        "Send DDT map-request to 127.0.0.5 for [0]198.51.100.10 ...\n"
        "Received ms-ack from 127.0.0.5 with rtt X secs\n"
        "  [0]198.51.100.0/28, ttl 1440, auth\n"
        "    Referral   Priority/Weight\n"
        "    127.0.0.5  1/1\n"
        "Received map-reply from 127.0.0.6 with rtt X secs\n"
        "\n"
        "Mapping entry for EID '[0]198.51.100.0/28', record ttl 1440, auth\n"
        "  Locator    State  Priority/Weight\n"
        "  192.0.2.6  up     1/100\n"
        "Ignored 3 datagrams: wrong-nonce 3\n"
    )
    asked = [a for a, _ in fake.received]
    assert asked == ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    nonces = set()
    for _, ecm in fake.received:
        assert ecm.ddt and ecm.dport == 4342
        request = ecm.message
        assert isinstance(request, MapRequest)
        assert request.records == (EidPrefix(V4("198.51.100.10"), 32),)
        assert request.itr_rlocs == (V4("127.0.0.1"),) and ecm.inner_ip.src == V4("127.0.0.1")
        assert request.source_eid == V4("198.51.100.1")
        nonces.add(request.nonce)
    assert len(nonces) == 4
    assert len({ecm.sport for _, ecm in fake.received}) == 1  # one socket: all from 127.0.0.1


def test_main_json_from_the_configured_roots(
    nodes_factory: Callable[..., FakeNodes],
    loopback_etr: socket.socket,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    responders = tree(loopback_etr)
    responders["127.0.0.7"] = silent  # the first root is dead
    nodes_factory(responders)
    conf = tmp_path / "lispd.conf"
    conf.write_text(
        configs.toml(
            configs.node(
                "mr", ("map-resolver",), ("127.0.0.1",), ddt={"roots": ["127.0.0.7", "127.0.0.2"]}
            )
        )
    )
    rc, out, err = run_main(capsys, "-c", str(conf), "--timeout", "0.3", "--json", "198.51.100.10")
    assert rc == 0, err
    assert err.startswith("Send DDT map-request to 127.0.0.7 for [0]198.51.100.10 ...\n"), err
    doc = json.loads(out)
    assert doc["eid"] == "[0]198.51.100.10/32" and doc["outcome"] == "ms-ack"
    assert [s["node"] for s in doc["steps"]] == [
        "127.0.0.7", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"
    ]  # fmt: skip
    assert doc["steps"][0] == {"node": "127.0.0.7", "timeout": True}
    assert [s.get("action") for s in doc["steps"]] == [
        None, "node-referral", None, "ms-referral", "ms-ack"
    ]  # fmt: skip
    assert doc["map_reply"]["from"] == "127.0.0.6"
    assert doc["map_reply"]["records"][0]["eid-prefix"] == "[0]198.51.100.0/28"
    assert doc["ignored"] == {"wrong-nonce": 3}


def test_main_loop_and_timeout(
    nodes_factory: Callable[..., FakeNodes], capsys: pytest.CaptureFixture[str]
) -> None:
    loop = record(A.NODE_REFERRAL, "198.51.100.0/25", [("127.0.0.3", 1, 1)])
    back = record(A.NODE_REFERRAL, "198.51.100.0/25", [("127.0.0.2", 1, 1)])
    nodes_factory({"127.0.0.2": answers(loop), "127.0.0.3": answers(back), "127.0.0.4": silent})
    rc, out, err = run_main(capsys, "-t", "127.0.0.2", "198.51.100.10")
    assert rc == 1, out + err
    assert out.count("Send DDT map-request") == 3
    assert "Stopped: referral loop, [0]198.51.100.0/25 already followed\n" in out
    rc, out, err = run_main(capsys, "-t", "127.0.0.4", "--timeout", "0.2", "--json", "1.2.3.4")
    assert rc == 1
    assert json.loads(out) == {
        "eid": "[0]1.2.3.4/32",
        "outcome": "timeout",
        "steps": [{"node": "127.0.0.4", "timeout": True}],
        "map_reply": None,
        "ignored": {},
    }


def test_main_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "none.conf")
    rc, _, err = run_main(capsys, "-c", missing, "198.51.100.18")
    assert rc == 2 and err.startswith("rig: ") and "cannot read" in err
    rc, _, err = run_main(capsys, "-c", missing, "-t", "127.0.0.1", "198.51.100.18")
    assert rc == 2 and "cannot read" in err
    conf = tmp_path / "lispd.conf"
    conf.write_text(configs.toml(configs.xtr(rlocs=("192.0.2.2",))))
    rc, _, err = run_main(capsys, "-c", str(conf), "198.51.100.18")
    assert rc == 2 and "no [ddt] roots" in err
    for argv in (["-t", "127.0.0.1", "[x]1.2.3.4"], ["-t", "127.0.0.1", "-s", "x", "1.2.3.4"]):
        rc, _, err = run_main(capsys, *argv)
        assert rc == 2 and err.startswith("rig: "), err
    for argv in (["--max-steps", "0", "1.2.3.4"], ["--max-steps", "65", "1.2.3.4"],
                 ["--timeout", "0", "1.2.3.4"], ["--iid", "-1", "1.2.3.4"], []):  # fmt: skip
        with pytest.raises(SystemExit) as exc:
            rig.main(argv)
        assert exc.value.code == 2
    capsys.readouterr()
