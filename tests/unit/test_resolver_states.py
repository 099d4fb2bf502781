"""The resolver's enforced state table (:data:`lispd.control.resolver.RESOLVER_TABLE`).

Every (state, input) pair is walked: a lookup is driven into the state through the resolver's
API on a fake clock, the input is fed through the API, and the lookup's state, what was sent,
released and counted must be what the table says.  A finished lookup is forgotten, so no input
reaches it: its pairs are refused when fed to ``_step`` directly, and a late Map-Reply for it
is counted as an unknown nonce without touching it.  Then hypothesis sends random sequences of
lookups, held packets, SMRs, Map-Replies (positive, negative, empty, late, probes) and clock
steps, checking every step against the table and the invariants that tie a lookup's state to
its data.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from lispd.control.resolver import (
    FINISHED,
    RESOLVER_TABLE,
    Lookup,
    LookupInput,
    Resolver,
    ResolverSettings,
)
from lispd.control.statetable import Go, Refuse
from lispd.wire.mapreply import MapReply
from lispd.wire.maprequest import MapRequest
from lispd.wire.records import Action, EidPrefix, EidRecord, Locator

from .statewalk import Spy, check_steps, phases, refuse_directly, walk_pair

MR1 = IPv4Address("192.0.2.10")
MR2 = IPv6Address("2001:db8::10")
RLOC4 = IPv4Address("192.0.2.1")
RLOC6 = IPv6Address("2001:db8::1")
REMOTE = IPv4Address("192.0.2.66")
SRC = IPv4Address("198.51.100.1")
EID = IPv4Address("198.51.100.17")
EID2 = IPv4Address("198.51.100.18")
EID6 = IPv6Address("2001:db8:100:2::5")
NET = IPv4Network("198.51.100.16/28")
SETTINGS = ResolverSettings(retries=3, retry_interval=1.0, queue_timeout=3.0)
L = Lookup
K = LookupInput
REPLY_KINDS = {K.MAPPED, K.MAPPED_NEGATIVE, K.UNMAPPED}


def make(settings: ResolverSettings = SETTINGS) -> Resolver:
    counter = itertools.count(0x1000)
    return Resolver([MR1, MR2], [RLOC4, RLOC6], settings, lambda: next(counter))


def record(net: IPv4Network | IPv6Network, negative: bool = False, ttl: int = 1440) -> EidRecord:
    locators = () if negative else (Locator(REMOTE, 1, 100),)
    return EidRecord(
        net.network_address, net.prefixlen, locators, ttl=ttl, action=Action.NATIVELY_FORWARD
    )


def records_for(kind: LookupInput, net: IPv4Network | IPv6Network) -> tuple[EidRecord, ...]:
    """The records of a Map-Reply that is ``kind`` to a lookup ``net`` covers."""
    if kind is K.MAPPED:
        return (record(net),)
    if kind is K.MAPPED_NEGATIVE:
        return (record(net, negative=True),)
    return ()


# --- driving a lookup into each state ----------------------------------------------------------


def pending() -> tuple[Resolver, Any, float]:
    r = make()
    r.resolve(0, EID, SRC, 0.0)
    r.hold(0, EID, b"early", 0.0)  # ages out at 3, after the first retry at 1
    return r, r._pending[0, EID], 0.0


def retrying() -> tuple[Resolver, Any, float]:
    r = make()
    r.resolve(0, EID, SRC, 0.0)
    r.on_timer(1.0)
    r.hold(0, EID, b"later", 1.0)  # ages out at 4, after the next retry at 3
    return r, r._pending[0, EID], 1.0


def finished(kind: LookupInput) -> Callable[[], tuple[Resolver, Any, float]]:
    def drive() -> tuple[Resolver, Any, float]:
        r, lookup, _ = pending()
        r.on_map_reply(MapReply(lookup.nonce, records_for(kind, NET)), REMOTE, 0.1)
        return r, lookup, 0.1  # kept by hand: the resolver forgets it

    return drive


def given_up() -> tuple[Resolver, Any, float]:
    r, lookup, _ = pending()
    for t in (1.0, 3.0, 7.0, 15.0):
        r.on_timer(t)
    return r, lookup, 15.0


DRIVERS: dict[Lookup, Callable[[], tuple[Resolver, Any, float]]] = {
    L.PENDING: pending,
    L.RETRYING: retrying,
    L.ANSWERED: finished(K.MAPPED),
    L.NEGATIVE: finished(K.MAPPED_NEGATIVE),
    L.NO_MAPPING: finished(K.UNMAPPED),
    L.GIVEN_UP: given_up,
}


def feeder(r: Resolver, lookup: Any, now: float, kind: LookupInput) -> Callable[[], Any] | None:
    """The API calls that give ``lookup`` ``kind`` now, or None when nothing can."""
    if r._pending.get((0, EID)) is not lookup:
        return None  # finished: forgotten, nothing reaches it
    t = now + 0.05
    if kind is K.RESOLVE:
        return lambda: r.resolve(0, EID, SRC, t)
    if kind is K.HOLD:
        return lambda: r.hold(0, EID, b"more", t)
    if kind is K.HELD_EXPIRED:
        ages_out = lookup.held[0].arrival + SETTINGS.queue_timeout
        return lambda: r.on_timer(ages_out)
    if kind is K.RETRY:
        return lambda: r.on_timer(lookup.next_retry)
    if kind is K.GIVE_UP:

        def give_up() -> Any:
            r.set_map_resolvers([])  # a reload leaves no Map-Resolver to retry with
            return r.on_timer(lookup.next_retry)

        return give_up
    reply = MapReply(lookup.nonce, records_for(kind, NET))
    return lambda: r.on_map_reply(reply, REMOTE, t)


def check_invariants(r: Resolver, finished: Iterable[Any] = ()) -> None:
    for key, lookup in r._pending.items():
        assert key == (lookup.iid, lookup.eid)
        assert lookup.phase is (L.PENDING if lookup.attempts == 1 else L.RETRYING)
        assert r._by_nonce[lookup.nonce] is lookup
    assert all(r._pending[p.iid, p.eid] is p for p in r._by_nonce.values())
    assert r.held_total == sum(len(p.held) for p in r._pending.values())
    for lookup in finished:
        assert lookup.phase in FINISHED and not lookup.held
        assert r._pending.get((lookup.iid, lookup.eid)) is not lookup
        assert r._by_nonce.get(lookup.nonce) is not lookup


def test_drivers_reach_their_states() -> None:
    for state in DRIVERS:
        r, lookup, _ = DRIVERS[state]()
        assert lookup.phase is state
        assert r.phase(0, EID) is (state if state not in FINISHED else None)
        check_invariants(r, [lookup] if state in FINISHED else [])


PAIRS = [(s, k) for s, k, _ in RESOLVER_TABLE.pairs()]


@pytest.mark.parametrize(("state", "kind"), PAIRS, ids=[f"{s.value}-{k.value}" for s, k in PAIRS])
def test_every_pair(state: Lookup, kind: LookupInput) -> None:
    r, lookup, now = DRIVERS[state]()
    entry = RESOLVER_TABLE.entry(state, kind)
    feed = feeder(r, lookup, now, kind)
    impossible = isinstance(entry, Refuse) and not entry.possible
    assert (feed is None) == impossible, "the table and the API disagree on what can happen"
    if feed is None:
        refuse_directly(RESOLVER_TABLE, r, lookup, state, kind)
        if kind in REPLY_KINDS:  # a late Map-Reply: an unknown nonce, before any table
            spy = Spy(r)
            unknown = r.drops["map-reply-unknown-nonce"]
            late = r.on_map_reply(MapReply(lookup.nonce, records_for(kind, NET)), REMOTE, now + 1)
            assert late.installs == [] and spy.take() == []
            assert r.drops["map-reply-unknown-nonce"] == unknown + 1
            assert lookup.phase is state
        return
    out = walk_pair(RESOLVER_TABLE, r, Spy(r), lookup, state, kind, feed)
    check_invariants(r, [lookup] if lookup.phase in FINISHED else [])
    emits = entry.emits if isinstance(entry, Go) else ""
    if emits == "map-request":
        sends, _ = out
        assert len(sends) == 1
    if kind in REPLY_KINDS:
        assert (out.released != []) == (emits == "held packets released")
        assert out.dropped == (0 if emits else 1)


def test_a_reply_covering_other_lookups_finishes_them_too() -> None:
    r = make()
    r.resolve(0, EID, SRC, 0.0)
    r.resolve(0, EID2, SRC, 0.0)
    r.resolve(0, EID6, None, 0.0)
    other = r._pending[0, EID2]
    spy = Spy(r)
    reply = MapReply(r._pending[0, EID].nonce, (record(NET, negative=True),))
    result = r.on_map_reply(reply, REMOTE, 0.1)
    assert [(s.unit.eid, s.kind) for s in spy.take()] == [
        (EID, K.MAPPED_NEGATIVE),
        (EID2, K.MAPPED_NEGATIVE),
    ]
    assert other.phase is L.NEGATIVE and len(result.installs) == 1
    assert r.phase(0, EID6) is L.PENDING


def test_the_most_specific_covering_entry_names_the_outcome() -> None:
    r = make()
    r.resolve(0, EID, SRC, 0.0)
    nonce = r._pending[0, EID].nonce
    host = IPv4Network(f"{EID}/32")
    spy = Spy(r)
    r.on_map_reply(MapReply(nonce, (record(NET), record(host, negative=True))), REMOTE, 0.1)
    assert [s.kind for s in spy.take()] == [K.MAPPED_NEGATIVE]


def test_replies_that_name_no_lookup_reach_no_table() -> None:
    r, _, _ = pending()
    spy = Spy(r)
    nonce = r._pending[0, EID].nonce
    r.on_map_reply(MapReply(nonce, (record(NET),), probe=True), REMOTE, 0.1)
    r.on_map_reply(MapReply(0xDEAD, (record(NET),)), REMOTE, 0.1)
    assert spy.take() == []
    assert r.drops == {"map-reply-probe": 1, "map-reply-unknown-nonce": 1}
    assert r.phase(0, EID) is L.PENDING


# --- random sequences --------------------------------------------------------------------------

EIDS = [EID, EID2, EID6]
NETS = {EID: NET, EID2: IPv4Network(f"{EID2}/32"), EID6: IPv6Network("2001:db8:100:2::/64")}


class ResolverMachine(RuleBasedStateMachine):
    """Lookups of three EIDs (two in one /28), held packets, SMRs, answers of every kind,
    retries, give-ups and reloads."""

    def __init__(self) -> None:
        super().__init__()
        self.r = make(ResolverSettings(retries=2, queue_per_entry=2, queue_total=3))
        self.spy = Spy(self.r)
        self.now = 0.0
        self.lookups: dict[int, Any] = {}  # every lookup ever made, by id
        self.finished: list[Any] = []
        self.nonces: list[int] = []

    def _apply(self, call: Callable[[], Any], timer: bool = False) -> Any:
        before = phases(self.r._pending.values())
        out = call()
        check_steps(RESOLVER_TABLE, self.spy.steps, before, self.lookups.values())
        for lookup in self.r._pending.values():
            if id(lookup) not in self.lookups:
                self.lookups[id(lookup)] = lookup
                self.nonces.append(lookup.nonce)
        self.finished = [p for p in self.lookups.values() if p.phase in FINISHED]
        if timer:
            deadline = self.r.next_deadline()
            assert deadline is None or deadline > self.now, "a deadline left in the past"
        return out

    @rule(eid=st.sampled_from(EIDS), dt=st.floats(0.0, 1.0))
    def resolve(self, eid: IPv4Address | IPv6Address, dt: float) -> None:
        self.now += dt
        was = self.r._pending.get((0, eid))
        self._apply(lambda: self.r.resolve(0, eid, None, self.now))
        kinds = [(s.unit, s.kind) for s in self.spy.take()]
        assert kinds == ([(was, K.RESOLVE)] if was is not None else [])

    @rule(eid=st.sampled_from(EIDS), dt=st.floats(0.0, 1.0))
    def smr(self, eid: IPv4Address | IPv6Address, dt: float) -> None:
        self.now += dt
        request = MapRequest(0xABC, (EidPrefix(SRC, 32),), (REMOTE,), source_eid=eid, smr=True)
        self._apply(lambda: self.r.on_smr(request, REMOTE, self.now))
        self.spy.take()

    @rule(eid=st.sampled_from(EIDS), dt=st.floats(0.0, 1.0))
    def hold(self, eid: IPv4Address | IPv6Address, dt: float) -> None:
        self.now += dt
        held = self._apply(lambda: self.r.hold(0, eid, b"p", self.now))
        kinds = [s.kind for s in self.spy.take()]
        assert kinds == ([K.HOLD] if held else [])

    @rule(dt=st.floats(0.0, 4.0))
    def tick(self, dt: float) -> None:
        self.now += dt
        self._apply(lambda: self.r.on_timer(self.now), timer=True)
        self.spy.take()

    @rule()
    def wake(self) -> None:
        deadline = self.r.next_deadline()
        if deadline is not None:
            self.now = max(self.now, deadline)
        self._apply(lambda: self.r.on_timer(self.now), timer=True)
        self.spy.take()

    @rule(
        how=st.sampled_from(["mapped", "negative", "empty", "ttl-zero", "probe", "late"]),
        pick=st.integers(0, 10),
        dt=st.floats(0.0, 1.0),
    )
    def reply(self, how: str, pick: int, dt: float) -> None:
        self.now += dt
        live = list(self.r._pending.values())
        if how == "late" or not live:
            nonce = self.nonces[-1 - pick % len(self.nonces)] if self.nonces else 0xDEAD
            eid = EID
        else:
            lookup = live[pick % len(live)]
            nonce, eid = lookup.nonce, lookup.eid
        net = NETS[eid]
        recs = {
            "mapped": (record(net),),
            "negative": (record(net, negative=True),),
            "ttl-zero": (record(net, ttl=0),),
        }.get(how, ())
        answered = None if how == "probe" else self.r._by_nonce.get(nonce)
        message = MapReply(nonce, recs, probe=how == "probe")
        self._apply(lambda: self.r.on_map_reply(message, REMOTE, self.now))
        steps = self.spy.take()
        # What the input was, told from the outside.
        if answered is None:
            assert steps == []
        else:
            first = steps[0]
            assert first.unit is answered
            if answered.eid == eid and how == "mapped":
                assert first.kind is K.MAPPED
            elif answered.eid == eid and how == "negative":
                assert first.kind is K.MAPPED_NEGATIVE
            elif answered.eid == eid:
                assert first.kind is K.UNMAPPED
            assert all(s.kind is not K.UNMAPPED for s in steps[1:])  # covered ones got a mapping

    @rule(empty=st.booleans(), retries=st.integers(0, 3))
    def reload(self, empty: bool, retries: int) -> None:
        self.r.set_map_resolvers([] if empty else [MR1, MR2])
        self.r.set_settings(ResolverSettings(retries=retries, queue_per_entry=2, queue_total=3))

    @invariant()
    def consistent(self) -> None:
        check_invariants(self.r, self.finished)


TestResolverSequences = ResolverMachine.TestCase
TestResolverSequences.settings = settings(max_examples=75, stateful_step_count=35, deadline=None)
