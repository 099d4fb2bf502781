"""The NAT-traversal client's enforced state table (:data:`lispd.control.nat.NAT_TABLE`).

Every (state, input) pair is walked: a client is driven into the state through its API on a
fake clock, the input is fed through the API, and the Map-Server's state, what was sent and
what was counted must be what the table says.  Pairs the table calls impossible must be
impossible to produce from the driven state, and are refused when fed to ``_step`` directly.
Then hypothesis sends random sequences of Info-Replies (good, stale, malformed, from elsewhere)
and clock steps, checking every step against the table and the invariants that tie each state
to the Map-Server's data and the combined status.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from lispd.control.nat import NAT_TABLE, NatClient, NatInput, NatPhase
from lispd.control.outputs import SendControl, SendData
from lispd.control.statetable import Go, Refuse
from lispd.wire.address import NO_ADDRESS, Address, NatTraversalAddress
from lispd.wire.data import DATA_HEADER_LEN
from lispd.wire.info import InfoMessage, decode_info

from .statewalk import Spy, check_steps, phases, refuse_directly, walk_pair

LOCAL4 = IPv4Address("192.0.2.130")
LOCAL6 = IPv6Address("2001:db8:1::1")
GLOBAL4 = IPv4Address("192.0.2.5")
GLOBAL6 = IPv6Address("2001:db8:ffff::5")
MS4 = IPv4Address("192.0.2.9")
MS6 = IPv6Address("2001:db8::9")
RTR = IPv4Address("192.0.2.13")
STRANGER = IPv4Address("203.0.113.99")
EIDS = ((0, IPv4Network("198.51.100.0/28")), (7, IPv6Network("2001:db8:100:1::/64")))
INTERVAL = 60.0
STALE = 0xDEAD
P = NatPhase
K = NatInput


def make(*servers: IPv4Address | IPv6Address) -> NatClient:
    counter = itertools.count(0x1000)
    return NatClient(
        list(servers or (MS4,)), (LOCAL4, LOCAL6), EIDS, INTERVAL, 15.0, lambda: next(counter)
    )


def info_reply(nonce: int, ms: Address, global_rloc: Address | None = None) -> InfoMessage:
    """An Info-Reply; ``global_rloc`` None: without the NAT-traversal LCAF."""
    address: Address = NO_ADDRESS
    if global_rloc is not None:
        address = NatTraversalAddress(4342, 61000, global_rloc, ms, NO_ADDRESS, (RTR,))
    return InfoMessage(nonce, reply=True, ttl=1440, address=address)


# --- driving a Map-Server into each state ------------------------------------------------------


def unasked() -> tuple[NatClient, float]:
    return make(), 0.0


def discovering() -> tuple[NatClient, float]:
    c = make()
    c.on_timer(0.0)
    c.on_timer(1.0)  # a retry: two requests outstanding
    return c, 1.0


def answered(global_rloc: IPv4Address) -> Callable[[], tuple[NatClient, float]]:
    def drive() -> tuple[NatClient, float]:
        c, now = discovering()
        latest = next(reversed(c._servers[0].nonces))
        c.on_info_reply(info_reply(latest, MS4, global_rloc), MS4, now + 0.1)
        return c, now + 0.1  # the first request is still outstanding

    return drive


DRIVERS: dict[NatPhase, Callable[[], tuple[NatClient, float]]] = {
    P.UNASKED: unasked,
    P.DISCOVERING: discovering,
    P.BEHIND_NAT: answered(GLOBAL4),
    P.NOT_BEHIND_NAT: answered(LOCAL4),
}


def feeder(c: NatClient, now: float, kind: NatInput) -> Callable[[], Any] | None:
    """The API call that gives the Map-Server ``kind`` now, or None when nothing can."""
    ms = c._servers[0]
    outstanding = list(ms.nonces)
    t = now + 0.05

    def reply(global_rloc: Address | None) -> Callable[[], Any] | None:
        if not outstanding:
            return None
        msg = info_reply(outstanding[0], MS4, global_rloc)
        return lambda: c.on_info_reply(msg, MS4, t)

    if kind is K.REQUEST:
        due = now if ms.next_send is None else ms.next_send
        return lambda: c.on_timer(due)
    if kind is K.REPLY_BEHIND_NAT:
        return reply(GLOBAL4)
    if kind is K.REPLY_NOT_BEHIND_NAT:
        return reply(LOCAL4)
    if kind is K.REPLY_BAD_ADDRESS:
        return reply(None)
    if kind is K.REPLY_BAD_GLOBAL_RLOC:
        return reply(GLOBAL6)  # not of the Map-Server's family
    assert kind is K.REPLY_STALE
    return lambda: c.on_info_reply(info_reply(STALE, MS4, GLOBAL4), MS4, t)


def check_invariants(c: NatClient) -> None:
    for ms in c._servers:
        phase = ms.phase
        assert (phase is P.UNASKED) == (ms.requests_sent == 0) == (ms.next_send is None)
        assert (phase in (P.BEHIND_NAT, P.NOT_BEHIND_NAT)) == (ms.last_reply is not None)
        if ms.last_reply is not None:
            assert (phase is P.BEHIND_NAT) == (ms.global_rloc not in c.local_rlocs)
        for nonce in ms.nonces:
            assert c._nonces[nonce] is ms
    status = c.status
    assert status.discovered == any(ms.last_reply is not None for ms in c._servers)
    assert status.behind_nat == any(ms.phase is P.BEHIND_NAT for ms in c._servers)


def test_drivers_reach_their_states() -> None:
    for state, drive in DRIVERS.items():
        c, _ = drive()
        assert c.phase(MS4) is state
        check_invariants(c)
    with pytest.raises(KeyError):
        make().phase(MS6)


PAIRS = [(s, k) for s, k, _ in NAT_TABLE.pairs()]


@pytest.mark.parametrize(("state", "kind"), PAIRS, ids=[f"{s.value}-{k.value}" for s, k in PAIRS])
def test_every_pair(state: NatPhase, kind: NatInput) -> None:
    c, now = DRIVERS[state]()
    ms = c._servers[0]
    entry = NAT_TABLE.entry(state, kind)
    feed = feeder(c, now, kind)
    impossible = isinstance(entry, Refuse) and not entry.possible
    assert (feed is None) == impossible, "the table and the API disagree on what can happen"
    if feed is None:
        refuse_directly(NAT_TABLE, c, ms, state, kind)
        return
    status = c.status
    out = walk_pair(NAT_TABLE, c, Spy(c), ms, state, kind, feed)
    check_invariants(c)
    if isinstance(entry, Go) and entry.emits.startswith("info-request"):
        assert [s.dst for s in out if isinstance(s, SendControl)] == [MS4]
    if isinstance(entry, Refuse):
        assert out is None and c.status == status  # refused: nothing learnt
    elif kind.value.startswith("reply"):
        assert (out is not None) == (c.status != status)


def test_replies_that_name_no_map_server_reach_no_table() -> None:
    c, now = DRIVERS[P.BEHIND_NAT]()
    keepalive, *_others = [s for s in c.on_timer(now) if isinstance(s, SendData)]
    spy = Spy(c)
    ka_nonce = decode_info(keepalive.payload[DATA_HEADER_LEN:]).nonce
    assert c.on_info_reply(info_reply(ka_nonce, MS4, GLOBAL4), RTR, now) is None
    assert c.on_info_reply(info_reply(STALE, MS4, GLOBAL4), STRANGER, now) is None
    assert c.on_info_reply(InfoMessage(next(iter(c._servers[0].nonces))), MS4, now) is None
    assert spy.take() == []
    assert c.stats["keepalive-replies"] == 1
    assert c.drops == {"info-reply-unknown-nonce": 1, "info-reply-not-reply": 1}


# --- random sequences --------------------------------------------------------------------------


class NatMachine(RuleBasedStateMachine):
    """Two Map-Servers (IPv4 and IPv6) asked on their own schedules, answering late, twice,
    with garbage, from other addresses, saying we are behind a NAT or not."""

    def __init__(self) -> None:
        super().__init__()
        self.c = make(MS4, MS6)
        self.spy = Spy(self.c)
        self.now = 0.0
        self.sent: dict[Any, list[int]] = {MS4: [], MS6: [], RTR: []}

    def _apply(self, call: Callable[[], Any], timer: bool = False) -> Any:
        before = phases(self.c._servers)
        out = call()
        check_steps(NAT_TABLE, self.spy.steps, before, self.c._servers)
        if timer:
            for send in out:
                body = (
                    send.payload[DATA_HEADER_LEN:] if isinstance(send, SendData) else send.payload
                )
                self.sent.setdefault(send.dst, []).append(decode_info(body).nonce)
            deadline = self.c.next_deadline()
            assert deadline is None or deadline > self.now, "a deadline left in the past"
        return out

    @rule(dt=st.floats(0.0, 40.0))
    def tick(self, dt: float) -> None:
        self.now += dt
        self._apply(lambda: self.c.on_timer(self.now), timer=True)
        self.spy.take()

    @rule()
    def wake(self) -> None:
        deadline = self.c.next_deadline()
        if deadline is not None:
            self.now = max(self.now, deadline)
        self._apply(lambda: self.c.on_timer(self.now), timer=True)
        self.spy.take()

    @rule(
        ms=st.sampled_from([MS4, MS6]),
        pick=st.integers(0, 20),
        how=st.sampled_from(["behind", "not-behind", "bad-address", "bad-global", "stale"]),
        src=st.sampled_from(["ms", "ms", "other"]),
        dt=st.floats(0.0, 3.0),
    )
    def reply(self, ms: Any, pick: int, how: str, src: str, dt: float) -> None:
        self.now += dt
        server = next(s for s in self.c._servers if s.address == ms)
        nonces = self.sent[ms]
        nonce = nonces[-1 - pick % len(nonces)] if nonces and how != "stale" else STALE
        v4 = ms.version == 4
        global_rloc = {
            "behind": GLOBAL4 if v4 else GLOBAL6,
            "not-behind": LOCAL4 if v4 else LOCAL6,
            "bad-address": None,
            "bad-global": GLOBAL6 if v4 else GLOBAL4,
        }.get(how, GLOBAL4)
        source = ms if src == "ms" else STRANGER
        outstanding = nonce in server.nonces
        status = self.c.status
        out = self._apply(
            lambda: self.c.on_info_reply(info_reply(nonce, ms, global_rloc), source, self.now)
        )
        kinds = [(s.unit.address, s.kind) for s in self.spy.take()]
        # What the input was, told from the outside.
        expected = {
            "behind": K.REPLY_BEHIND_NAT,
            "not-behind": K.REPLY_NOT_BEHIND_NAT,
            "bad-address": K.REPLY_BAD_ADDRESS,
            "bad-global": K.REPLY_BAD_GLOBAL_RLOC,
        }
        if outstanding:
            assert kinds == [(ms, expected[how])]
        elif source == ms:
            assert kinds == [(ms, K.REPLY_STALE)]
        else:
            assert kinds == []
        assert (out is not None) == (self.c.status != status)

    @rule(pick=st.integers(0, 5), dt=st.floats(0.0, 3.0))
    def keepalive_answer(self, pick: int, dt: float) -> None:
        self.now += dt
        nonces = self.sent[RTR]
        nonce = nonces[-1 - pick % len(nonces)] if nonces else STALE
        self._apply(lambda: self.c.on_info_reply(info_reply(nonce, RTR, GLOBAL4), RTR, self.now))
        assert self.spy.take() == []  # an RTR's answer is no Map-Server's input

    @invariant()
    def consistent(self) -> None:
        check_invariants(self.c)


TestNatSequences = NatMachine.TestCase
TestNatSequences.settings = settings(max_examples=75, stateful_step_count=35, deadline=None)
