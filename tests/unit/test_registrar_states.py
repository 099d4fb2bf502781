"""The registrar's enforced state table (:data:`lispd.control.registrar.REGISTRAR_TABLE`).

Every (state, input) pair is walked: a registrar is driven into the state through its API on
a fake clock, the input is fed through the API, and the target's state, what was sent, what
was logged and what was counted must be what the table says.  Pairs the table calls impossible
must be impossible to produce from the driven state, and are refused when fed to ``_step``
directly.  Then hypothesis sends random sequences of inputs and clock steps, checking every
step against the table and the invariants that tie each state to the target's data.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from lispd.control.outputs import SendControl
from lispd.control.registrar import (
    ACK_WINDOW_INTERVALS,
    REGISTRAR_TABLE,
    MapServerTarget,
    Registrar,
    RegistrarInput,
    Registration,
)
from lispd.control.statetable import Go, Refuse
from lispd.wire.mapregister import MapNotify, decode_map_notify, decode_map_register, encode_signed
from lispd.wire.records import EidRecord, Locator

from .statewalk import Spy, check_steps, phases, refuse_directly, walk_pair

MS1 = IPv4Address("192.0.2.50")
MS2 = IPv6Address("2001:db8::50")
STRANGER = IPv4Address("203.0.113.99")
KEY1 = b"site-key-one"
KEY2 = b"site-key-two"
T1 = MapServerTarget(MS1, KEY1)
T2 = MapServerTarget(MS2, KEY2, key_id=1)
RLOC = IPv4Address("192.0.2.1")
RECORDS = (
    EidRecord(IPv4Address("198.51.100.0"), 28, (Locator(RLOC, 1, 100, local=True),), ttl=1440),
)
INTERVAL = 60.0
WINDOW = ACK_WINDOW_INTERVALS * INTERVAL
UNSOLICITED = 0xDEADBEEF
R = Registration
I = RegistrarInput  # noqa: E741


def make(*targets: MapServerTarget) -> Registrar:
    counter = itertools.count(0x5000)
    return Registrar(list(targets or (T1,)), RECORDS, INTERVAL, rng=lambda: next(counter))


def notify(nonce: int, key: bytes = KEY1, ack: bool = False) -> tuple[bytes, MapNotify]:
    raw = encode_signed(MapNotify(nonce, RECORDS, ack=ack), key)
    return raw, decode_map_notify(raw)


def ack_latest(r: Registrar, now: float) -> None:
    state = r._states[0]
    r.on_map_notify(*notify(next(reversed(state.recent))), MS1, now)


# --- driving a target into each state --------------------------------------------------------


def unregistered() -> tuple[Registrar, float]:
    return make(), 0.0


def registering() -> tuple[Registrar, float]:
    r = make()
    r.on_timer(0.0)
    r.on_timer(INTERVAL)  # two Map-Registers out: an earlier one and the latest
    return r, INTERVAL


def registered() -> tuple[Registrar, float]:
    r, now = registering()
    ack_latest(r, now + 0.5)  # the earlier one stays unacknowledged
    return r, now + 0.5


def refreshing() -> tuple[Registrar, float]:
    r, _ = registered()
    r.on_timer(2 * INTERVAL)
    return r, 2 * INTERVAL


def unacknowledged() -> tuple[Registrar, float]:
    r = make()
    for n in range(ACK_WINDOW_INTERVALS + 1):
        r.on_timer(n * INTERVAL)
    return r, WINDOW


def lost() -> tuple[Registrar, float]:
    r, acked = registered()
    for n in range(2, 5):
        r.on_timer(n * INTERVAL)
    r.on_timer(acked + WINDOW + 0.5)
    return r, acked + WINDOW + 0.5


DRIVERS: dict[Registration, Callable[[], tuple[Registrar, float]]] = {
    R.UNREGISTERED: unregistered,
    R.REGISTERING: registering,
    R.REGISTERED: registered,
    R.REFRESHING: refreshing,
    R.UNACKNOWLEDGED: unacknowledged,
    R.LOST: lost,
}


def feeder(r: Registrar, now: float, kind: RegistrarInput) -> Callable[[], Any] | None:
    """The API call that gives the first target ``kind`` now, or None when nothing can."""
    state = r._states[0]
    recent = state.recent
    latest = next(reversed(recent)) if recent else None
    latest_acked = latest is not None and recent[latest]
    t = now + 0.25

    def answer(nonces: list[int]) -> Callable[[], Any] | None:
        if not nonces:
            return None
        return lambda: r.on_map_notify(*notify(nonces[0]), MS1, t)

    if kind is I.REGISTER:
        return lambda: r.update_records(RECORDS, t)
    if kind is I.REGISTER_EMPTY:
        return lambda: r.update_records([], t)
    if kind is I.WITHDRAW:
        return lambda: r.deregister(RECORDS, t)
    if kind is I.NOTIFY:
        return answer([n for n, a in recent.items() if not a and (n == latest or latest_acked)])
    if kind is I.NOTIFY_OLDER:
        return answer([n for n, a in recent.items() if not a and n != latest and not latest_acked])
    if kind is I.NOTIFY_DUPLICATE:
        return answer([n for n, a in recent.items() if a])
    if kind is I.NOTIFY_UNSOLICITED:
        return answer([UNSOLICITED])
    if kind is I.NOTIFY_BAD_AUTH:
        return lambda: r.on_map_notify(*notify(UNSOLICITED, KEY2), MS1, t)
    if kind is I.NOTIFY_MALFORMED:
        raw, msg = notify(UNSOLICITED)
        return lambda: r.on_map_notify(raw[:13], msg, MS1, t)
    if kind is I.NOTIFY_ACK:
        return lambda: r.on_map_notify(*notify(UNSOLICITED, ack=True), MS1, t)
    if kind is I.ACK_OVERDUE:
        if state.last_acked is not None or state.first_sent is None:
            return None
        assert state.next_send is not None
        overdue = max(state.next_send, state.first_sent + WINDOW)
        return lambda: r.on_timer(overdue)
    assert kind is I.ACK_LAPSED
    if state.last_acked is None:
        return None
    lapsed = state.last_acked + WINDOW + 1.0
    return lambda: r.on_timer(lapsed)


def check_invariants(r: Registrar) -> None:
    """What each state says of a target's data."""
    for state in r._states:
        phase, recent = state.phase, state.recent
        latest = next(reversed(recent)) if recent else None
        assert (phase is R.UNREGISTERED) == (state.registers_sent == 0)
        if phase is R.UNREGISTERED:
            assert not recent and state.last_acked is None
        if phase in (R.REGISTERING, R.UNACKNOWLEDGED):
            assert state.last_acked is None and not any(recent.values())
        if phase is R.UNACKNOWLEDGED:
            assert state.first_sent is not None
        if phase in (R.REGISTERED, R.REFRESHING, R.LOST):
            assert state.last_acked is not None and state.notifies_accepted >= 1
        if phase is R.REGISTERED:
            assert latest is not None and recent[latest]
        if phase is R.REFRESHING:
            assert latest is not None and not recent[latest]
        holding = r._lost_at(state) is not None
        assert holding == (phase in (R.REGISTERED, R.REFRESHING))


def test_drivers_reach_their_states() -> None:
    for state, drive in DRIVERS.items():
        r, _ = drive()
        assert r.phases() == [(T1, state)]
        check_invariants(r)


PAIRS = [(s, k) for s, k, _ in REGISTRAR_TABLE.pairs()]


@pytest.mark.parametrize(("state", "kind"), PAIRS, ids=[f"{s.value}-{k.value}" for s, k in PAIRS])
def test_every_pair(
    state: Registration, kind: RegistrarInput, caplog: pytest.LogCaptureFixture
) -> None:
    r, now = DRIVERS[state]()
    unit = r._states[0]
    entry = REGISTRAR_TABLE.entry(state, kind)
    feed = feeder(r, now, kind)
    impossible = isinstance(entry, Refuse) and not entry.possible
    assert (feed is None) == impossible, "the table and the API disagree on what can happen"
    if feed is None:
        refuse_directly(REGISTRAR_TABLE, r, unit, state, kind)
        return
    spy = Spy(r)
    caplog.set_level(logging.INFO, logger="lispd.control.registrar")
    caplog.clear()
    out = walk_pair(REGISTRAR_TABLE, r, spy, unit, state, kind, feed)
    check_invariants(r)
    if isinstance(entry, Go) and entry.emits:
        sends = [s for s in out if isinstance(s, SendControl) and s.dst == MS1]
        if entry.emits.startswith("map-register"):
            regs = [decode_map_register(s.payload) for s in sends]
            assert regs and regs[0].ttl_timeout == ("ttl 0" in entry.emits)
        elif entry.emits == "map-notify-ack":
            assert [decode_map_notify(s.payload).ack for s in sends] == [True]
        else:
            line = entry.emits.removeprefix("log ")
            assert f"registration {line} " in caplog.text
    elif kind.value.startswith("notify"):
        assert out == [] and "registration" not in caplog.text  # refused or quiet


def test_a_map_notify_from_no_target_reaches_no_table() -> None:
    r, now = registered()
    spy = Spy(r)
    raw, msg = notify(next(iter(r._states[0].recent)))
    assert r.on_map_notify(raw, msg, STRANGER, now + 1) == []
    assert r.on_map_notify(*notify(UNSOLICITED, ack=True), STRANGER, now + 1) == []
    assert spy.take() == []
    assert r.drops["map-notify-unknown-source"] == 1
    assert r.drops["map-notify-ack-unexpected"] == 1


# --- random sequences --------------------------------------------------------------------------


class RegistrarMachine(RuleBasedStateMachine):
    """Two Map-Servers, a database that empties and fills, Map-Notifies of every kind."""

    def __init__(self) -> None:
        super().__init__()
        self.r = make(T1, T2)
        self.spy = Spy(self.r)
        self.now = 0.0
        self.sent: dict[IPv4Address | IPv6Address, list[int]] = {MS1: [], MS2: []}
        self.steps: list[Any] = []

    def _apply(self, call: Callable[[], Any], timer: bool = False) -> Any:
        before = phases(self.r._states)
        out = call()
        self.steps = self.spy.take()
        check_steps(REGISTRAR_TABLE, self.steps, before, self.r._states)
        for send in out:
            if send.payload[0] >> 4 == 3:  # a Map-Register
                self.sent[send.dst].append(decode_map_register(send.payload).nonce)
        if timer:
            deadline = self.r.next_deadline()
            assert deadline is None or deadline > self.now, "a deadline left in the past"
        return out

    @rule(dt=st.floats(0.0, 100.0))
    def tick(self, dt: float) -> None:
        self.now += dt
        self._apply(lambda: self.r.on_timer(self.now), timer=True)

    @rule()
    def wake(self) -> None:
        deadline = self.r.next_deadline()
        if deadline is not None and deadline != -math.inf:
            self.now = max(self.now, deadline)
        self._apply(lambda: self.r.on_timer(self.now), timer=True)

    @rule(
        which=st.sampled_from([MS1, MS2]),
        pick=st.integers(0, 6),
        how=st.sampled_from(["ours", "unsolicited", "bad-key", "malformed", "ack"]),
        dt=st.floats(0.0, 5.0),
    )
    def notify(self, which: IPv4Address | IPv6Address, pick: int, how: str, dt: float) -> None:
        self.now += dt
        key, other = (KEY1, KEY2) if which == MS1 else (KEY2, KEY1)
        nonces = self.sent[which]
        nonce = nonces[-1 - pick % len(nonces)] if how == "ours" and nonces else UNSOLICITED
        raw, msg = notify(nonce, other if how == "bad-key" else key, ack=how == "ack")
        if how == "malformed":
            raw = raw[:13]
        unit = next((s for s in self.r._states if s.target.address == which), None)
        kind = None if unit is None else unit.recent.get(nonce, "unsolicited")
        out = self._apply(lambda: self.r.on_map_notify(raw, msg, which, self.now))
        # Told from the outside: only an authentic notify with none of our nonces is answered.
        answered = how in ("ours", "unsolicited") and kind == "unsolicited"
        assert [decode_map_notify(s.payload).ack for s in out] == ([True] if answered else [])
        refused = {
            "bad-key": I.NOTIFY_BAD_AUTH,
            "malformed": I.NOTIFY_MALFORMED,
            "ack": I.NOTIFY_ACK,
        }
        if unit is None:
            assert self.steps == []
        elif how in refused:
            assert [(s.unit, s.kind, s.allowed) for s in self.steps] == [
                (unit, refused[how], False)
            ]

    @rule(which=st.sampled_from([MS1, MS2]), pick=st.integers(0, 3), dt=st.floats(0.0, 5.0))
    def answer(self, which: IPv4Address | IPv6Address, pick: int, dt: float) -> None:
        """The Map-Server acknowledges one of the recent Map-Registers (maybe twice)."""
        self.now += dt
        unit = next((s for s in self.r._states if s.target.address == which), None)
        if unit is None or not unit.recent:
            return
        recent = list(unit.recent)
        nonce = recent[-1 - pick % len(recent)]
        latest_acked = unit.recent[recent[-1]]
        acked = unit.recent[nonce]
        raw, msg = notify(nonce, KEY1 if which == MS1 else KEY2)
        assert self._apply(lambda: self.r.on_map_notify(raw, msg, which, self.now)) == []
        kind = I.NOTIFY_DUPLICATE if acked else I.NOTIFY
        if not acked and nonce != recent[-1] and not latest_acked:
            kind = I.NOTIFY_OLDER
        assert [(s.unit, s.kind) for s in self.steps] == [(unit, kind)]

    @rule(dt=st.floats(0.0, 5.0))
    def stranger(self, dt: float) -> None:
        self.now += dt
        raw, msg = notify(UNSOLICITED)
        self._apply(lambda: self.r.on_map_notify(raw, msg, STRANGER, self.now))

    @rule(empty=st.booleans(), dt=st.floats(0.0, 30.0))
    def records(self, empty: bool, dt: float) -> None:
        self.now += dt
        self._apply(lambda: self.r.update_records([] if empty else RECORDS, self.now))

    @rule(dt=st.floats(0.0, 30.0))
    def withdraw(self, dt: float) -> None:
        self.now += dt
        self._apply(lambda: self.r.deregister(RECORDS, self.now))

    @precondition(lambda self: len(self.r.targets) == 2)
    @rule()
    def drop_second(self) -> None:
        self._apply(lambda: self.r.update_targets([T1], self.now))
        self.sent[MS2] = []

    @precondition(lambda self: len(self.r.targets) == 1)
    @rule()
    def add_second(self) -> None:
        self._apply(lambda: self.r.update_targets([T1, T2], self.now))

    @invariant()
    def consistent(self) -> None:
        check_invariants(self.r)


TestRegistrarSequences = RegistrarMachine.TestCase
TestRegistrarSequences.settings = settings(max_examples=75, stateful_step_count=35, deadline=None)
