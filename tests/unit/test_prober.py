"""Unit tests of lispd.control.prober: the RLOC-probing machine.

A fake clock (plain floats), a counting nonce source, and a stand-in answerer built from
lispd.wire (decode the probe, answer with a probe Map-Reply through the wire codec) instead of
sockets.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lispd.control.outputs import SendControl
from lispd.control.prober import (
    PROBE_TTL,
    Prober,
    ProbeSettings,
    RlocChange,
    RlocState,
    hop_count,
)
from lispd.wire.address import NO_ADDRESS, InstanceIdAddress
from lispd.wire.control import decode_control
from lispd.wire.errors import WireError
from lispd.wire.mapreply import MapReply, decode_map_reply, encode_map_reply
from lispd.wire.maprequest import MapRequest
from lispd.wire.records import EidPrefix, EidRecord, Locator

LOCAL4 = IPv4Address("192.0.2.1")
LOCAL6 = IPv6Address("2001:db8::1")
PETR4 = IPv4Address("192.0.2.14")
PETR6 = IPv6Address("2001:db8:0:2::14")
ETR4 = IPv4Address("203.0.113.7")
STRANGER = IPv4Address("198.51.100.99")
START = 0x1000
SETTINGS = ProbeSettings(interval=10.0, timeout=3.0, down_after=3, history=3)


def counting_rng(start: int = START) -> Callable[[], int]:
    counter = itertools.count(start)
    return lambda: next(counter)


def make(
    local: tuple[IPv4Address | IPv6Address, ...] = (LOCAL4, LOCAL6),
    probe_settings: ProbeSettings = SETTINGS,
) -> Prober:
    return Prober(local, probe_settings, counting_rng())


def decode_probe(send: SendControl) -> MapRequest:
    """The probe as a LISP control message: a bare Map-Request (type 1), never an ECM."""
    assert send.port == 4342
    assert send.payload[0] >> 4 == 1  # type nibble: Map-Request, not ECM (8)
    message = decode_control(send.payload)
    assert isinstance(message, MapRequest)
    return message


def answer(
    send: SendControl, reported_ttl: int = 0, probe: bool = True, nonce: int | None = None
) -> MapReply:
    """What an ETR sends back for ``send``, passed through the wire codec."""
    request = decode_probe(send)
    locator = Locator(send.dst, 1, 100, local=True, probed=True, reachable=True)
    record = EidRecord(request.records[0].address, request.records[0].mask_len, (locator,))
    reply = MapReply(
        nonce=request.nonce if nonce is None else nonce,
        records=(record,),
        probe=probe,
        reported_ttl=reported_ttl,
    )
    return decode_map_reply(encode_map_reply(reply))


def lose_rounds(p: Prober, rloc: IPv4Address | IPv6Address, start: float, rounds: int) -> list:
    """Let ``rounds`` probes go unanswered from ``start`` (a probe just sent at ``start``); each
    loss short of down is followed by the next probe at once."""
    changes: list[RlocChange] = []
    t = start
    for _ in range(rounds):
        t += SETTINGS.timeout
        sends, lost = p.on_timer(t)
        changes += lost
        assert [s.dst for s in sends] == [rloc]
    return changes


# --- the probe on the wire -------------------------------------------------------------------


def test_ipv4_probe_is_a_plain_map_request_with_the_p_bit() -> None:
    p = make()
    (send,) = p.watch(PETR4, None, 0.0)
    assert (send.dst, send.port) == (PETR4, 4342)
    assert send.payload[0] == 0x12  # type 1, P bit; no ECM header in front
    req = decode_probe(send)
    assert req.probe
    assert not (req.smr or req.smr_invoked or req.pitr or req.authoritative or req.dont_map_reply)
    assert req.map_reply is None
    assert req.nonce == START
    assert req.source_eid == NO_ADDRESS
    assert req.itr_rlocs == (LOCAL4,)  # only the probed family: the reply must come from it
    assert req.records == (EidPrefix(IPv4Address("0.0.0.0"), 0),)
    assert p.stats["probes-sent"] == 1


def test_ipv6_probe_names_the_ipv6_default_route_and_ipv6_itr_rlocs() -> None:
    p = make(local=(LOCAL4, LOCAL6, IPv6Address("2001:db8::2")))
    (send,) = p.watch(PETR6, None, 0.0)
    assert send.dst == PETR6
    req = decode_probe(send)
    assert req.probe and req.source_eid == NO_ADDRESS
    assert req.itr_rlocs == (LOCAL6, IPv6Address("2001:db8::2"))
    assert req.records == (EidPrefix(IPv6Address("::"), 0),)


def test_eid_prefix_record_is_iid_wrapped_when_iid_is_not_zero() -> None:
    p = make()
    (plain,) = p.watch(ETR4, (0, IPv4Network("198.51.100.0/28")), 0.0)
    assert decode_probe(plain).records == (EidPrefix(IPv4Address("198.51.100.0"), 28),)
    (scoped,) = p.watch(PETR6, (7, IPv6Network("2001:db8:100:1::/64")), 0.0)
    assert decode_probe(scoped).records == (
        EidPrefix(InstanceIdAddress(7, IPv6Address("2001:db8:100:1::")), 64),
    )
    # An IPv6 EID-prefix probed over an IPv4 RLOC is fine: the record family is the EID's.
    (mixed,) = p.watch(PETR4, (3, IPv6Network("2001:db8:100:2::/64")), 0.0)
    req = decode_probe(mixed)
    assert req.itr_rlocs == (LOCAL4,)
    assert req.records[0].address == InstanceIdAddress(3, IPv6Address("2001:db8:100:2::"))
    assert p.state(PETR6).eid_prefix == (7, IPv6Network("2001:db8:100:1::/64"))


def test_watch_is_idempotent() -> None:
    p = make()
    assert len(p.watch(PETR4, None, 0.0)) == 1
    assert p.watch(PETR4, (0, IPv4Network("198.51.100.0/24")), 1.0) == []
    assert p.state(PETR4).eid_prefix == (0, IPv4Network("0.0.0.0/0"))
    assert p.state(PETR4).probes_sent == 1
    assert p.watched == (PETR4,)


def test_watch_refuses_what_cannot_be_probed() -> None:
    p = make(local=(LOCAL4,))
    with pytest.raises(ValueError, match="no local IPv6 RLOC"):
        p.watch(PETR6, None, 0.0)
    with pytest.raises(TypeError):
        p.watch("192.0.2.14", None, 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="instance-ID"):
        p.watch(PETR4, (1 << 24, IPv4Network("198.51.100.0/24")), 0.0)
    with pytest.raises(ValueError):
        p.watch(PETR4, (0, "198.51.100.1/24"), 0.0)  # type: ignore[arg-type]  # host bits
    assert p.watched == () and p.next_deadline() is None and p.stats["probes-sent"] == 0
    with pytest.raises(TypeError):
        Prober(["192.0.2.1"])  # type: ignore[list-item]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interval": 0},
        {"interval": -1.0},
        {"interval": float("inf")},
        {"timeout": 0},
        {"timeout": float("nan")},
        {"down_after": 0},
        {"down_after": 1.5},
        {"history": 0},
        {"history": True},
    ],
)
def test_settings_are_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ProbeSettings(**kwargs)  # type: ignore[arg-type]


def test_settings_defaults() -> None:
    assert ProbeSettings() == ProbeSettings(interval=10.0, timeout=3.0, down_after=3, history=3)
    with pytest.raises(AttributeError):
        ProbeSettings().interval = 1.0  # type: ignore[misc]


# --- replies, RTT and hop counts --------------------------------------------------------------


def test_reply_gives_rtt_and_hops() -> None:
    p = make()
    (send,) = p.watch(PETR4, None, 100.0)
    assert p.on_map_reply(answer(send, reported_ttl=62), PETR4, 100.25, ttl=61) is None
    s = p.state(PETR4)
    assert isinstance(s, RlocState)
    assert s.up is True and s.usable
    assert s.last_rtt == pytest.approx(0.25)
    assert s.rtts == (pytest.approx(0.25),)
    assert s.hops == ("2/3",)
    assert s.last_reply == 100.25
    assert (s.losses, s.probes_sent, s.replies, s.outstanding) == (0, 1, 1, False)
    assert p.stats["replies"] == 1 and not p.drops


def test_rtt_and_hop_history_is_newest_first_and_bounded() -> None:
    p = make()
    (send,) = p.watch(PETR4, None, 0.0)
    t = 0.0
    for i in range(5):
        p.on_map_reply(answer(send, reported_ttl=60 + i), PETR4, t + 0.01 * (i + 1), ttl=50 + i)
        t += SETTINGS.interval
        (send,), _ = p.on_timer(t)
    s = p.state(PETR4)
    assert s.rtts == tuple(pytest.approx(x) for x in (0.05, 0.04, 0.03))
    assert s.hops == ("0/10", "1/11", "2/12")
    assert s.last_rtt == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("reported", "ttl", "hops"),
    [
        (64, 64, "0/0"),  # directly connected both ways
        (63, 62, "1/2"),
        (1, 1, "63/63"),
        (0, 60, "?/4"),  # answerer does not report (0 = reserved byte unused)
        (62, None, "2/?"),  # daemon does not know the received TTL
        (65, 255, "?/?"),  # not sent with TTL 64 by us: meaningless
        (128, 0, "?/?"),
    ],
)
def test_hop_counts(reported: int, ttl: int | None, hops: str) -> None:
    p = make()
    (send,) = p.watch(PETR4, None, 0.0)
    p.on_map_reply(answer(send, reported_ttl=reported), PETR4, 0.1, ttl=ttl)
    assert p.state(PETR4).hops == (hops,)


def test_hop_count_function() -> None:
    assert PROBE_TTL == 64
    assert [hop_count(v) for v in (None, 0, 1, 60, 64, 65)] == ["?", "?", "63", "4", "0", "?"]


def test_reply_arriving_before_send_time_is_clamped_to_zero_rtt() -> None:
    p = make()
    (send,) = p.watch(PETR4, None, 5.0)
    p.on_map_reply(answer(send), PETR4, 4.0)
    assert p.state(PETR4).last_rtt == 0.0


# --- refused replies --------------------------------------------------------------------------


def test_non_probe_reply_is_ignored() -> None:
    p = make()
    (send,) = p.watch(PETR4, None, 0.0)
    assert p.on_map_reply(answer(send, probe=False), PETR4, 0.1) is None
    assert p.drops == {"probe-reply-not-probe": 1}
    assert p.state(PETR4).up is None and p.state(PETR4).outstanding


def test_wrong_source_is_ignored_and_the_probe_stays_outstanding() -> None:
    p = make()
    (send,) = p.watch(PETR4, None, 0.0)
    assert p.on_map_reply(answer(send), STRANGER, 0.1) is None
    assert p.drops == {"probe-reply-wrong-source": 1}
    assert p.state(PETR4).up is None and p.state(PETR4).outstanding
    # The real answer still counts.
    assert p.on_map_reply(answer(send), PETR4, 0.2) is None
    assert p.state(PETR4).up is True and p.state(PETR4).last_rtt == pytest.approx(0.2)


def test_nonce_of_another_rlocs_probe_is_wrong_source() -> None:
    p = make()
    (to_petr,) = p.watch(PETR4, None, 0.0)
    (to_etr,) = p.watch(ETR4, None, 0.0)
    p.on_map_reply(answer(to_etr), PETR4, 0.1)  # PETR4 answers with ETR4's probe nonce
    assert p.drops == {"probe-reply-wrong-source": 1}
    assert p.state(PETR4).up is None and p.state(ETR4).up is None
    p.on_map_reply(answer(to_petr), PETR4, 0.1)
    assert p.state(PETR4).up is True and p.state(ETR4).up is None


def test_unknown_duplicate_late_and_unwatched_nonces_are_ignored() -> None:
    p = make()
    (send,) = p.watch(PETR4, None, 0.0)
    assert p.on_map_reply(answer(send, nonce=0xDEAD), PETR4, 0.1) is None  # never sent
    assert p.drops == {"probe-reply-unknown-nonce": 1}
    p.on_map_reply(answer(send), PETR4, 0.2)
    p.on_map_reply(answer(send), PETR4, 0.3)  # duplicate
    assert p.drops == {"probe-reply-unknown-nonce": 2}
    assert p.state(PETR4).replies == 1
    (send,), _ = p.on_timer(10.0)
    p.on_timer(13.0)  # lost
    p.on_map_reply(answer(send), PETR4, 13.5)  # late
    assert p.drops == {"probe-reply-unknown-nonce": 3}
    assert p.state(PETR4).losses == 1 and p.state(PETR4).replies == 1
    (send,), _ = p.on_timer(20.0)
    p.unwatch(PETR4)
    assert p.on_map_reply(answer(send), PETR4, 20.1) is None
    assert p.drops == {"probe-reply-unknown-nonce": 4}
    assert p.stats["replies"] == 1


# --- up / down --------------------------------------------------------------------------------


def test_unknown_state_is_usable() -> None:
    p = make()
    p.watch(PETR4, None, 0.0)
    s = p.state(PETR4)
    assert s.up is None and s.usable and s.outstanding
    assert p.is_usable(PETR4)
    assert p.is_usable(ETR4)  # not watched: nothing known against it
    with pytest.raises(KeyError):
        p.state(ETR4)


def test_down_after_consecutive_losses_and_back_up_on_first_reply() -> None:
    p = make()
    (send,) = p.watch(PETR4, None, 0.0)
    p.on_map_reply(answer(send), PETR4, 0.1)  # up
    p.on_timer(10.0)
    changes = lose_rounds(p, PETR4, 10.0, 2)  # lost at 13 and 16, retried at once each time
    assert changes == [] and p.state(PETR4).losses == 2 and p.is_usable(PETR4)
    sends, changes = p.on_timer(19.0)  # third loss in a row
    assert changes == [RlocChange(PETR4, False)] and sends == []
    assert not p.is_usable(PETR4) and p.state(PETR4).up is False
    assert p.stats["rloc-down"] == 1 and p.stats["probes-lost"] == 3
    # Probing goes on every interval while down; more losses report nothing new.
    assert p.next_deadline() == 26.0
    (send,), _ = p.on_timer(26.0)
    assert p.on_timer(29.0) == ([], [])
    assert p.state(PETR4).losses == 4 and p.next_deadline() == 36.0
    (send,), _ = p.on_timer(36.0)
    change = p.on_map_reply(answer(send, reported_ttl=63), PETR4, 36.02, ttl=63)
    assert change == RlocChange(PETR4, True)
    s = p.state(PETR4)
    assert s.up is True and s.losses == 0 and p.is_usable(PETR4)
    assert s.last_rtt == pytest.approx(0.02) and s.hops[0] == "1/1"
    assert p.stats["rloc-up"] == 1
    # Already up: a further reply changes nothing.
    (send,), _ = p.on_timer(46.0)
    assert p.on_map_reply(answer(send), PETR4, 46.1) is None
    assert p.stats["rloc-up"] == 1


def test_an_rloc_failing_right_after_a_reply_is_down_within_three_intervals() -> None:
    """The worst case: the RLOC dies just after answering.  With the defaults (10 s, 3 s,
    3 losses) it is down at most interval + 3 timeouts later (19 s), not 3 intervals +
    a timeout (33 s) as when every loss waited for the next interval."""
    p = Prober((LOCAL4,), ProbeSettings(), counting_rng())
    (send,) = p.watch(ETR4, None, 0.0)
    p.on_map_reply(answer(send), ETR4, 0.001)  # then it dies
    t, down_at = 0.0, None
    while down_at is None:
        t = p.next_deadline()
        assert t is not None and t <= 30.0
        _, changes = p.on_timer(t)
        if changes:
            assert changes == [RlocChange(ETR4, False)]
            down_at = t
    assert down_at == pytest.approx(19.0)
    assert p.state(ETR4).probes_sent == 4


def test_a_dead_rloc_goes_down_from_unknown() -> None:
    p = make()
    p.watch(PETR4, None, 0.0)
    changes = lose_rounds(p, PETR4, 0.0, 2)
    _, last = p.on_timer(9.0)  # three timeouts: a dead RLOC costs little traffic
    assert changes + last == [RlocChange(PETR4, False)]
    assert p.state(PETR4).up is False and not p.is_usable(PETR4)


def test_first_reply_from_unknown_reports_no_change() -> None:
    p = make()
    (send,) = p.watch(PETR4, None, 0.0)
    assert p.on_map_reply(answer(send), PETR4, 0.1) is None
    assert p.state(PETR4).up is True and p.stats["rloc-up"] == 0


def test_a_reply_resets_the_loss_run() -> None:
    p = make(probe_settings=ProbeSettings(interval=10, timeout=3, down_after=2))
    p.watch(PETR4, None, 0.0)
    (send,), _ = p.on_timer(3.0)  # loss 1, and the next probe at once
    p.on_map_reply(answer(send), PETR4, 3.5)
    (send,), _ = p.on_timer(13.0)  # answered: back to the interval
    _, changes = p.on_timer(16.0)  # loss 1 again, not 2
    assert changes == [] and p.state(PETR4).up is True and p.state(PETR4).losses == 1


def test_rlocs_are_independent() -> None:
    p = make()
    (a,) = p.watch(PETR4, None, 0.0)
    (b,) = p.watch(PETR6, None, 0.0)
    assert decode_probe(a).nonce != decode_probe(b).nonce
    p.on_map_reply(answer(b), PETR6, 0.3)
    _, changes = p.on_timer(3.0)
    assert changes == []
    assert p.state(PETR4).losses == 1 and p.state(PETR6).losses == 0


# --- timing -----------------------------------------------------------------------------------


def test_interval_timing_and_deadlines() -> None:
    p = make()
    assert p.next_deadline() is None
    (send,) = p.watch(PETR4, None, 0.0)
    assert p.next_deadline() == 3.0  # the outstanding probe's timeout
    p.on_map_reply(answer(send), PETR4, 0.1)
    assert p.next_deadline() == 10.0  # answered: the next probe
    assert p.on_timer(9.99) == ([], [])
    sends, _ = p.on_timer(10.0)
    assert [s.dst for s in sends] == [PETR4]
    assert p.next_deadline() == 13.0
    assert p.on_timer(12.0) == ([], [])  # still waiting, nothing to send
    sends, _ = p.on_timer(13.0)  # lost: the next probe goes at once, not at 20
    assert len(sends) == 1 and p.next_deadline() == 16.0
    p.on_map_reply(answer(sends[0]), PETR4, 13.1)
    assert p.next_deadline() == 23.0  # answered: every interval again
    sends, _ = p.on_timer(24.5)  # called late: sends now, next interval counts from now
    assert len(sends) == 1 and p.next_deadline() == 27.5
    p.on_map_reply(answer(sends[0]), PETR4, 24.6)
    assert p.next_deadline() == 34.5
    assert p.state(PETR4).probes_sent == 4


def test_timeout_longer_than_interval_keeps_one_probe_outstanding() -> None:
    p = make(probe_settings=ProbeSettings(interval=10.0, timeout=15.0, down_after=2))
    (first,) = p.watch(PETR4, None, 0.0)
    assert p.next_deadline() == 15.0  # not 10: the first probe is still outstanding
    assert p.on_timer(10.0) == ([], [])
    sends, changes = p.on_timer(15.0)  # lost, and the next probe goes at once
    assert len(sends) == 1 and changes == []
    assert decode_probe(sends[0]).nonce != decode_probe(first).nonce
    assert p.next_deadline() == 30.0
    # The superseded nonce is no longer accepted.
    p.on_map_reply(answer(first), PETR4, 15.5)
    assert p.drops == {"probe-reply-unknown-nonce": 1}
    p.on_map_reply(answer(sends[0]), PETR4, 16.0)
    assert p.state(PETR4).up is True and p.next_deadline() == 25.0


def test_unwatch() -> None:
    p = make()
    p.watch(PETR4, None, 0.0)
    (send,) = p.watch(ETR4, None, 0.0)
    p.unwatch(PETR4)
    p.unwatch(PETR4)  # unknown: ignored
    assert p.watched == (ETR4,)
    p.on_map_reply(answer(send), ETR4, 0.1)
    assert p.next_deadline() == 10.0
    sends, _ = p.on_timer(10.0)
    assert [s.dst for s in sends] == [ETR4]
    p.unwatch(ETR4)
    assert p.next_deadline() is None
    assert p.on_timer(100.0) == ([], [])
    assert p.states() == []
    assert p.is_usable(ETR4)
    # Watching again starts afresh.
    assert len(p.watch(ETR4, None, 200.0)) == 1
    assert p.state(ETR4).up is None and p.state(ETR4).probes_sent == 1


# --- nonces -----------------------------------------------------------------------------------


def test_nonces_are_64_bit_and_never_shared_by_outstanding_probes() -> None:
    values = iter([(1 << 64) + 5, 5, 5, 6])
    p = Prober((LOCAL4,), SETTINGS, lambda: next(values))
    (a,) = p.watch(PETR4, None, 0.0)
    (b,) = p.watch(ETR4, None, 0.0)
    assert decode_probe(a).nonce == 5  # masked to 64 bits
    assert decode_probe(b).nonce == 6  # 5 is outstanding: drawn again


def test_a_stuck_nonce_source_is_an_error() -> None:
    p = Prober((LOCAL4,), SETTINGS, lambda: 42)
    p.watch(PETR4, None, 0.0)
    with pytest.raises(RuntimeError):
        p.watch(ETR4, None, 0.0)
    assert p.watched == (PETR4,)


# --- show -------------------------------------------------------------------------------------


def test_states_for_show_commands() -> None:
    p = make()
    (send,) = p.watch(PETR4, None, 0.0)
    p.watch(ETR4, (5, IPv4Network("198.51.100.16/28")), 0.0)
    p.on_map_reply(answer(send, reported_ttl=62), PETR4, 0.0123456789, ttl=60)
    rows = p.states(now=2.0)
    json.dumps(rows)  # JSON-ready
    assert rows[0] == {
        "rloc": "192.0.2.14",
        "eid-prefix": "0.0.0.0/0",
        "state": "up",
        "up": True,
        "last-rtt": 0.012346,
        "rtts": [0.012346],
        "hops": ["2/4"],
        "last-reply": 0.0123456789,
        "losses": 0,
        "probes-sent": 1,
        "replies": 1,
        "outstanding": False,
        "last-reply-age": 1.988,
    }
    assert rows[1]["eid-prefix"] == "[5]198.51.100.16/28"
    assert rows[1]["state"] == "unknown" and rows[1]["last-rtt"] is None
    assert "last-reply-age" not in p.states()[0]


# --- robustness -------------------------------------------------------------------------------

_SOURCES = st.sampled_from([PETR4, ETR4, PETR6, STRANGER])
_REPLIES = st.builds(
    MapReply,
    nonce=st.one_of(st.integers(START, START + 20), st.integers(0, (1 << 64) - 1)),
    records=st.just(()),
    probe=st.booleans(),
    echo_nonce_capable=st.booleans(),
    reported_ttl=st.integers(0, 255),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["reply", "timer", "watch", "unwatch"]),
            _REPLIES,
            _SOURCES,
            st.one_of(st.none(), st.integers(-5, 300)),
            st.floats(0.0, 8.0),
        ),
        max_size=40,
    )
)
def test_random_inputs_never_raise_and_keep_invariants(ops: list) -> None:
    """Whatever arrives: no exception, bounded histories, down only after losses, and
    ``next_deadline`` (the top of the deadline heap) equal to a walk over every target."""
    p = Prober((LOCAL4, LOCAL6), ProbeSettings(interval=5.0, timeout=3.0), counting_rng())
    now = 0.0
    for kind, reply, src, ttl, step in ops:
        now += step
        if kind == "reply":
            change = p.on_map_reply(reply, src, now, ttl=ttl)
            assert change is None or change == RlocChange(src, True)
        elif kind == "timer":
            sends, changes = p.on_timer(now)
            assert all(c.up is False for c in changes)
            assert all(s.port == 4342 and decode_probe(s).probe for s in sends)
            deadline = p.next_deadline()
            assert deadline is None or deadline > now  # no busy loop
        elif kind == "watch":
            p.watch(src, None, now)
        else:
            p.unwatch(src)
        # The remembered deadline is always the one a pass over every target finds.
        walked = min((t.deadline() for t in p._targets.values()), default=None)
        assert p.next_deadline() == walked
        assert p.next_deadline() == walked  # asked again: the same, without a pass
        for rloc in p.watched:
            s = p.state(rloc)
            assert len(s.rtts) <= 3 and len(s.hops) == len(s.rtts)
            assert s.up is not False or s.losses >= 3
            assert s.up is not None or s.replies == 0
    assert p.stats["replies"] + sum(p.drops.values()) == sum(1 for op in ops if op[0] == "reply")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), _SOURCES, st.integers(0, 255))
def test_replies_decoded_from_random_bytes_never_raise(
    body: bytes, src: IPv4Address, ttl: int
) -> None:
    p = make()
    p.watch(PETR4, None, 0.0)
    header = bytes([0x28, 0, 62, 0]) + START.to_bytes(8, "big")
    try:
        reply = decode_map_reply(header + body)
    except WireError:
        return
    p.on_map_reply(reply, src, 0.5, ttl=ttl)


def test_probes_are_rate_limited_in_all_and_deferred_not_lost() -> None:
    prober = Prober(
        [IPv4Address("192.0.2.1")],
        ProbeSettings(interval=10.0, timeout=1.0, max_per_second=2.0),
        counting_rng(),
    )
    rlocs = [IPv4Address(f"192.0.2.{n}") for n in range(10, 16)]
    first = [s for r in rlocs for s in prober.watch(r, None, 0.0)]
    assert len(first) == 2  # the burst allowed at once; the other four wait
    assert prober.stats["probes-deferred"] == 4
    sent = {s.dst for s in first}
    now = 0.0
    while len(sent) < len(rlocs):
        now = prober.next_deadline() or now
        sends, _ = prober.on_timer(now)
        assert len(sends) <= 2
        sent.update(s.dst for s in sends)
        assert now < 3.0, "deferred probes never went out"
    assert sent == set(rlocs)


def test_the_probe_table_is_bounded() -> None:
    a = IPv4Address
    nonces = iter(range(1, 100))
    prober = Prober([a("192.0.2.1")], ProbeSettings(max_rlocs=2), rng=lambda: next(nonces))
    for last in (10, 11, 12):
        prober.watch(a(f"192.0.2.{last}"), None, 0.0)
    assert prober.watched == (a("192.0.2.10"), a("192.0.2.11"))
    assert prober.drops["probe-table-full"] == 1
    assert prober.is_usable(a("192.0.2.12"))  # not probed: never taken for down
    prober.unwatch(a("192.0.2.10"))
    assert prober.watch(a("192.0.2.12"), None, 1.0) != []
    with pytest.raises(ValueError):
        ProbeSettings(max_rlocs=0)


def test_the_remembered_deadline_follows_every_change() -> None:
    """``next_deadline`` (the daemon asks after every packet) follows every change: a watch, a
    reply, a timer run, an unwatch and new settings each move it, a refused reply does not."""
    p = make()
    assert p.next_deadline() is None
    (probe,) = p.watch(ETR4, None, 0.0)
    assert p.next_deadline() == 3.0  # the probe's timeout
    p.on_map_reply(answer(probe), ETR4, 1.0)
    assert p.next_deadline() == 10.0  # the next probe
    p.on_map_reply(answer(probe), ETR4, 1.5)  # a duplicate: refused, nothing moves
    assert p.next_deadline() == 10.0
    (probe6,) = p.watch(PETR6, None, 2.0)
    assert p.next_deadline() == 5.0
    p.on_timer(5.0)  # PETR6's probe is lost: a quick retry goes out at once
    assert p.next_deadline() == 8.0
    p.unwatch(PETR6)
    assert p.next_deadline() == 10.0  # ETR4's next probe
    p.set_settings(ProbeSettings(interval=20.0, timeout=3.0))
    assert p.next_deadline() == 10.0
    p.on_timer(10.0)
    assert p.next_deadline() == 13.0  # the new probe's timeout
    p.unwatch(ETR4)
    assert p.next_deadline() is None
    assert probe6.dst == PETR6


class _NoWalk(dict):  # type: ignore[type-arg]
    """The prober's target table, refusing to be walked (lookups by RLOC only)."""

    walking_allowed = False

    def values(self):  # type: ignore[no-untyped-def]
        assert self.walking_allowed, "the targets were walked"
        return super().values()

    def __iter__(self):  # type: ignore[no-untyped-def]
        assert self.walking_allowed, "the targets were walked"
        return super().__iter__()


def test_timers_replies_and_deadlines_do_not_walk_thousands_of_rlocs() -> None:
    """With 2,000 RLOCs watched, a timer run, a reply and ``next_deadline`` touch only the
    RLOCs concerned (a heap of deadlines), never every watched RLOC."""
    p = Prober(
        (LOCAL4,),
        ProbeSettings(interval=10.0, timeout=3.0, max_rlocs=5000, max_per_second=1e6),
        counting_rng(),
    )
    table = _NoWalk()
    p._targets = table
    probes = {}
    for i in range(2000):
        rloc = IPv4Address(f"203.0.{113 + i // 250}.{i % 250 + 1}")
        (probes[rloc],) = p.watch(rloc, None, i * 0.001)
    assert p.next_deadline() == 3.0  # the first probe's timeout
    first = IPv4Address("203.0.113.1")
    p.on_map_reply(answer(probes[first]), first, 1.0)
    assert p.on_timer(2.9) == ([], [])  # nothing due yet
    sends, changes = p.on_timer(3.001)  # the second probe timed out: retried at once
    assert [s.dst for s in sends] == [IPv4Address("203.0.113.2")] and changes == []
    assert p.next_deadline() == 3.002  # the third probe's timeout
    table.walking_allowed = True
    walked = min(t.deadline() for t in p._targets.values())
    assert p.next_deadline() == walked
    assert len(p._heap) <= 4 * len(p._targets) + 64
