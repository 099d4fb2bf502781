"""The pure parts of ``python -m benchmarks.hops``: tshark's fields to events, events to the
steps of a round trip."""

from __future__ import annotations

import pytest

from benchmarks.hops import format_steps, hop_steps, parse_tshark

# a TTL-exceeded message quoting an echo (type 11, then 8) is no echo of its own
CAPTURE = "1.000000\t8\t1\n1.010000\t0\t1\n1.500000\t8\t2\n2.0\t11,8\t3,3\n2.1\t\t\n"


def test_parse_tshark_reads_echoes_and_takes_the_inner_fields() -> None:
    events = parse_tshark("xtr1:to-r", CAPTURE)
    assert events == [
        ("xtr1:to-r", "request", 1, 1.0),
        ("xtr1:to-r", "reply", 1, 1.01),
        ("xtr1:to-r", "request", 2, 1.5),
    ]


def test_hop_steps_between_the_points_seen_and_the_round_trip() -> None:
    events = []
    for seq, base in ((1, 10.0), (2, 20.0), (3, 30.0)):
        events += [
            ("a:to-xtr1", "request", seq, base),
            ("xtr1:to-r", "request", seq, base + 0.000100),  # no TUN capture: steps merge
            ("xtr1:to-r", "request", seq, base + 0.000900),  # seen again: the first counts
            ("a:to-xtr1", "reply", seq, base + 0.000300 + seq * 0.000010),
        ]
    events.append(("a:to-xtr1", "request", 4, 40.0))  # unanswered: in no step that needs both
    steps = hop_steps(events)
    assert [(s["from"], s["to"]) for s in steps] == [
        ("a:to-xtr1 request", "xtr1:to-r request"),
        ("xtr1:to-r request", "a:to-xtr1 reply"),
        ("a:to-xtr1 request", "a:to-xtr1 reply"),
    ]
    assert steps[0]["p50_us"] == pytest.approx(100.0) and steps[0]["pings"] == 3
    assert steps[2]["p50_us"] == pytest.approx(320.0) and steps[2]["round_trip"] is True
    text = format_steps(steps)
    assert "round trip" in text and "320.0" in text
    assert hop_steps([]) == []
