"""The RLOC prober's enforced state table (:data:`lispd.control.prober.PROBER_TABLE`).

Every (state, input) pair is walked: a prober is driven into the state through its API on a
fake clock (with a probe outstanding or not, as the input needs: a probe is put off when
another RLOC's probe took the last token of the rate limit), the input is fed through the
API, and the RLOC's state, what was sent, reported and counted must be what the table says.
Then hypothesis sends random sequences of inputs and clock steps, checking every step against
the table and the invariants that tie each state to the RLOC's data.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from lispd.control.outputs import SendControl
from lispd.control.prober import (
    _VERDICT,
    PROBER_TABLE,
    ProbeInput,
    Prober,
    ProbeSettings,
    ProbeState,
    RlocChange,
)
from lispd.control.statetable import Go
from lispd.wire.mapreply import MapReply

from .statewalk import Spy, check_steps, phases, walk_pair

LOCAL4 = IPv4Address("192.0.2.1")
LOCAL6 = IPv6Address("2001:db8::1")
RLOC = IPv4Address("192.0.2.14")
STRANGER = IPv4Address("198.51.100.99")
SETTINGS = ProbeSettings(interval=10.0, timeout=3.0, down_after=3, max_per_second=1.0)
S = ProbeState
K = ProbeInput
NEEDS_OUTSTANDING = {K.REPLY, K.REPLY_WRONG_SOURCE, K.LOSS, K.LOSS_DOWN}


class World:
    """A prober, its clock, and other RLOCs to spend the rate limit's last token on."""

    def __init__(self) -> None:
        counter = itertools.count(0x1000)
        self.p = Prober((LOCAL4, LOCAL6), SETTINGS, lambda: next(counter))
        self.others = (IPv4Address(f"192.0.2.{n}") for n in range(100, 200))

    def spend_token(self, now: float) -> None:
        """Another RLOC's first probe takes the token: the next probe due now is put off."""
        assert self.p.watch(next(self.others), None, now)

    def reply(self, nonce: int | None, src: IPv4Address, now: float) -> RlocChange | None:
        return self.p.on_map_reply(MapReply(nonce or 0xDEAD, (), probe=True), src, now)

    @property
    def target(self) -> Any:
        return self.p._targets[RLOC]


# --- driving the RLOC into each state, with a probe outstanding or not -------------------------


def unknown(outstanding: bool) -> tuple[World, float]:
    w = World()
    if not outstanding:
        w.spend_token(0.0)  # the first probe is put off
    w.p.watch(RLOC, None, 0.0)
    return w, 0.0


def unknown_retrying(outstanding: bool) -> tuple[World, float]:
    w, _ = unknown(True)
    if not outstanding:
        w.spend_token(3.0)  # the quick retry is put off
    w.p.on_timer(3.0)
    return w, 3.0


def up(outstanding: bool) -> tuple[World, float]:
    w, _ = unknown(True)
    w.reply(w.target.nonce, RLOC, 0.1)
    if outstanding:
        w.p.on_timer(10.0)
        return w, 10.0
    return w, 0.1


def up_retrying(outstanding: bool) -> tuple[World, float]:
    w, _ = up(True)
    if not outstanding:
        w.spend_token(13.0)
    w.p.on_timer(13.0)
    return w, 13.0


def down(outstanding: bool) -> tuple[World, float]:
    w, _ = unknown(True)
    for t in (3.0, 6.0, 9.0):
        w.p.on_timer(t)
    if outstanding:
        w.p.on_timer(16.0)
        return w, 16.0
    return w, 9.0


DRIVERS: dict[ProbeState, Callable[[bool], tuple[World, float]]] = {
    S.UNKNOWN: unknown,
    S.UNKNOWN_RETRYING: unknown_retrying,
    S.UP: up,
    S.UP_RETRYING: up_retrying,
    S.DOWN: down,
}


def feeder(w: World, now: float, kind: ProbeInput) -> Callable[[], Any] | None:
    """The API calls that give the RLOC ``kind`` now (as ``(sends, changes)``), or None."""
    p, target = w.p, w.target
    nonce, losses = target.nonce, target.losses

    def timer(t: float) -> tuple[list[SendControl], list[RlocChange]]:
        return p.on_timer(t)

    def reply(src: IPv4Address, n: int | None) -> Callable[[], Any]:
        def call() -> tuple[list[SendControl], list[RlocChange]]:
            change = w.reply(n, src, now + 0.05)
            return [], [change] if change else []

        return call

    if kind is K.REPLY_STALE:
        return reply(RLOC, 0xDEAD)
    if (nonce is not None) != (kind in NEEDS_OUTSTANDING):
        return None
    if kind is K.PROBE:
        return lambda: timer(target.next_probe)
    if kind is K.PROBE_DEFERRED:
        due = target.next_probe

        def deferred() -> tuple[list[SendControl], list[RlocChange]]:
            w.spend_token(due)
            return timer(due)

        return deferred
    if kind is K.REPLY:
        return reply(RLOC, nonce)
    if kind is K.REPLY_WRONG_SOURCE:
        return reply(STRANGER, nonce)
    expires = target.expires
    down_after = losses + (1 if kind is K.LOSS_DOWN else 2)

    def lose() -> tuple[list[SendControl], list[RlocChange]]:
        if kind is K.LOSS_DOWN and losses + 1 >= SETTINGS.down_after:
            pass  # down_after in a row with the usual settings
        elif kind is K.LOSS and losses + 1 < SETTINGS.down_after:
            pass
        else:  # a reload moves down_after (a real input too)
            p.set_settings(dataclasses.replace(SETTINGS, down_after=down_after))
        return timer(expires)

    return lose


def check_invariants(p: Prober) -> None:
    for rloc, target in p._targets.items():
        phase = target.phase
        assert (phase in (S.UNKNOWN, S.UP)) == (target.losses == 0)
        if phase in (S.UNKNOWN, S.UNKNOWN_RETRYING):
            assert target.replies == 0
        if phase in (S.UP, S.UP_RETRYING):
            assert target.replies >= 1
        assert p.is_usable(rloc) == (phase is not S.DOWN)
        assert p.state(rloc).up is _VERDICT[phase]
        if target.nonce is not None:
            assert p._nonces[target.nonce] == rloc
    for nonce, rloc in p._nonces.items():
        assert p._targets[rloc].nonce == nonce


def test_drivers_reach_their_states() -> None:
    for state, drive in DRIVERS.items():
        for outstanding in (False, True):
            w, _ = drive(outstanding)
            assert w.p.phase(RLOC) is state
            assert (w.target.nonce is not None) == outstanding
            check_invariants(w.p)


PAIRS = [(s, k) for s, k, _ in PROBER_TABLE.pairs()]


@pytest.mark.parametrize(("state", "kind"), PAIRS, ids=[f"{s.value}-{k.value}" for s, k in PAIRS])
def test_every_pair(state: ProbeState, kind: ProbeInput, caplog: pytest.LogCaptureFixture) -> None:
    w, now = DRIVERS[state](kind in NEEDS_OUTSTANDING)
    entry = PROBER_TABLE.entry(state, kind)
    feed = feeder(w, now, kind)
    assert feed is not None, "every input can reach every state of a probed RLOC"
    spy = Spy(w.p)
    caplog.set_level(logging.DEBUG, logger="lispd.control.prober")
    caplog.clear()
    sends, changes = walk_pair(PROBER_TABLE, w.p, spy, w.target, state, kind, feed)
    check_invariants(w.p)
    probes = [s for s in sends if s.dst == RLOC]
    mine = [c for c in changes if c.rloc == RLOC]
    emits = entry.emits if isinstance(entry, Go) else ""
    if emits.startswith("probe"):
        assert probes, "no probe went out"
    elif kind is K.PROBE_DEFERRED:
        assert probes == [] and w.p.stats["probes-deferred"] >= 1
    if emits.startswith("rloc-change"):
        assert mine == [RlocChange(RLOC, emits.endswith("up"))]
    else:
        assert mine == []
    assert ("rloc reachable" in caplog.text) == (emits == "log reachable")


def test_a_reply_that_names_no_rloc_reaches_no_table() -> None:
    w, now = unknown(True)
    spy = Spy(w.p)
    assert w.reply(0xDEAD, STRANGER, now + 0.1) is None  # unknown nonce, no RLOC's address
    nonce = w.target.nonce
    w.p.on_map_reply(MapReply(nonce, (), probe=False), RLOC, now + 0.1)  # not a probe reply
    assert spy.take() == []
    assert w.p.drops == {"probe-reply-unknown-nonce": 1, "probe-reply-not-probe": 1}


# --- random sequences --------------------------------------------------------------------------

RLOCS = [RLOC, IPv4Address("203.0.113.7"), IPv6Address("2001:db8:0:2::14")]


class ProberMachine(RuleBasedStateMachine):
    """Three RLOCs watched and unwatched, answered or not, from the right address or not,
    under a rate limit and a down_after that reloads change."""

    def __init__(self) -> None:
        super().__init__()
        counter = itertools.count(0x1000)
        self.settings = SETTINGS  # one probe a second: some are put off
        self.p = Prober((LOCAL4, LOCAL6), self.settings, lambda: next(counter))
        self.spy = Spy(self.p)
        self.now = 0.0

    def _apply(self, call: Callable[[], Any], timer: bool = False) -> Any:
        before = phases(self.p._targets.values())
        out = call()
        check_steps(PROBER_TABLE, self.spy.steps, before, self.p._targets.values())
        if timer:
            deadline = self.p.next_deadline()
            assert deadline is None or deadline > self.now, "a deadline left in the past"
        return out

    def _kinds(self) -> list[tuple[Any, ProbeInput]]:
        return [(s.unit.rloc, s.kind) for s in self.spy.take()]

    @initialize()
    def watch_all(self) -> None:
        for rloc in RLOCS:
            self._apply(lambda rloc=rloc: self.p.watch(rloc, None, self.now))
        self.spy.take()

    @rule(rloc=st.sampled_from(RLOCS), dt=st.floats(0.0, 2.0))
    def watch(self, rloc: IPv4Address | IPv6Address, dt: float) -> None:
        self.now += dt
        self._apply(lambda: self.p.watch(rloc, None, self.now))
        self.spy.take()

    @rule(rloc=st.sampled_from(RLOCS))
    def unwatch(self, rloc: IPv4Address | IPv6Address) -> None:
        self._apply(lambda: self.p.unwatch(rloc))
        assert self._kinds() == []

    @rule(dt=st.floats(0.0, 6.0))
    def tick(self, dt: float) -> None:
        self.now += dt
        self._apply(lambda: self.p.on_timer(self.now), timer=True)
        self.spy.take()

    @rule()
    def wake(self) -> None:
        deadline = self.p.next_deadline()
        if deadline is not None:
            self.now = max(self.now, deadline)
        self._apply(lambda: self.p.on_timer(self.now), timer=True)
        self.spy.take()

    @rule(
        pick=st.integers(0, 5),
        how=st.sampled_from(["answer", "answer", "wrong-source", "stale", "not-probe", "nobody"]),
        dt=st.floats(0.0, 1.0),
    )
    def reply(self, pick: int, how: str, dt: float) -> None:
        self.now += dt
        waiting = [t for t in self.p._targets.values() if t.nonce is not None]
        watched = list(self.p._targets.values())
        pool = waiting if waiting and how in ("answer", "wrong-source") else watched
        target = pool[pick % len(pool)] if pool else None
        rloc = target.rloc if target is not None else RLOC
        nonce = target.nonce if target is not None and target.nonce is not None else 0xDEAD
        if how == "stale":
            nonce = 0xDEAD
        src = STRANGER if how in ("wrong-source", "nobody") else rloc
        reply = MapReply(nonce, (), probe=how != "not-probe")
        self._apply(lambda: self.p.on_map_reply(reply, src, self.now))
        kinds = self._kinds()
        # What the input was, told from the outside.
        if how == "not-probe" or (nonce == 0xDEAD and (target is None or src != rloc)):
            assert kinds == []
        elif nonce == 0xDEAD:
            assert kinds == [(rloc, K.REPLY_STALE)]
        elif how in ("wrong-source", "nobody"):
            assert kinds == [(rloc, K.REPLY_WRONG_SOURCE)]
        else:
            assert kinds == [(rloc, K.REPLY)]

    @rule(down_after=st.integers(1, 4))
    def reload(self, down_after: int) -> None:
        self.p.set_settings(dataclasses.replace(self.settings, down_after=down_after))

    @invariant()
    def consistent(self) -> None:
        check_invariants(self.p)


TestProberSequences = ProberMachine.TestCase
TestProberSequences.settings = settings(max_examples=75, stateful_step_count=35, deadline=None)
