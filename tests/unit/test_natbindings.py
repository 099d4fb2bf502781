"""Unit tests of lispd.node.natbindings: the RTR's NAT binding table (fake clock), its
per-address limit on port changes included."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lispd.node.natbindings import CHANGE_BURST, CHANGE_RATE, NatBindings
from lispd.ratelimit import TokenBucket

A = IPv4Address("192.0.2.5")
B = IPv4Address("192.0.2.6")
C = IPv4Address("192.0.2.7")
V6 = IPv6Address("2001:db8::5")


def test_learn_and_look_up() -> None:
    t = NatBindings(timeout=60.0, max_entries=10)
    assert len(t) == 0 and t.port_for(A) is None and t.next_deadline() is None
    assert t.learn(A, 61001, 0.0) == [A]  # new
    assert t.port_for(A) == 61001 and A in t and len(t) == 1
    assert t.learn(A, 61001, 5.0) == []  # refresh, same port
    assert t.learn(A, 62002, 6.0) == [A]  # the NAT rebound
    assert t.port_for(A) == 62002
    assert t.learn(V6, 4341, 7.0) == [V6]
    assert t.port_for(V6) == 4341 and t.port_for(B) is None
    assert t.stats == {"learned": 2, "port-changed": 1}
    assert not t.drops


def test_port_for_is_a_plain_dict_lookup() -> None:
    """No clock: a binding past its timeout is still used until expire() runs."""
    t = NatBindings(timeout=10.0, max_entries=10)
    t.learn(A, 61001, 0.0)
    assert t.port_for(A) == 61001
    assert t.next_deadline() == 10.0
    assert t.port_for(A) == 61001  # at any time, until expiry
    assert t.expire(10.0) == [A]
    assert t.port_for(A) is None


def test_expiry_follows_the_last_refresh() -> None:
    t = NatBindings(timeout=30.0, max_entries=10)
    t.learn(A, 1, 0.0)
    t.learn(B, 2, 10.0)
    t.learn(A, 1, 20.0)  # refreshed: now the youngest
    assert t.next_deadline() == 40.0  # B's
    assert t.expire(39.9) == []
    assert t.expire(40.0) == [B]
    assert t.next_deadline() == 50.0
    t.learn(C, 3, 45.0)
    assert t.expire(100.0) == [A, C]  # oldest first
    assert len(t) == 0 and t.next_deadline() is None
    assert t.stats["expired"] == 3
    assert t.expire(200.0) == []


def test_full_table_evicts_the_least_recently_refreshed() -> None:
    t = NatBindings(timeout=60.0, max_entries=2)
    t.learn(A, 1, 0.0)
    t.learn(B, 2, 1.0)
    t.learn(A, 1, 2.0)  # A refreshed: B is now the oldest
    assert t.learn(A, 5, 2.5) == [A]  # a known address never evicts
    assert not t.drops
    assert t.learn(C, 3, 3.0) == [B, C]  # B's forwarding changes too: it has no binding now
    assert len(t) == 2
    assert t.port_for(B) is None and t.port_for(A) == 5 and t.port_for(C) == 3
    assert t.drops == {"nat-binding-evicted": 1}
    assert t.next_deadline() == 62.5  # A's refresh at 2.5


def test_port_changes_beyond_the_rate_are_refused_and_counted() -> None:
    """A spoofer alternating source ports gets the burst, then one change per 1/rate seconds;
    every refused change leaves the binding (port and refresh time) as it was."""
    t = NatBindings(timeout=60.0, max_entries=10, change_rate=0.5, change_burst=2)
    assert t.learn(A, 1000, 0.0) == [A]  # a new binding is never limited
    assert t.learn(A, 1001, 0.1) == [A]
    assert t.learn(A, 1000, 0.2) == [A]  # the burst of 2 is spent
    assert t.learn(A, 1001, 0.3) == []
    assert t.port_for(A) == 1000 and t.next_deadline() == 60.2  # not refreshed by it
    assert t.learn(A, 1000, 0.4) == []  # the same port: a refresh, never limited
    assert t.next_deadline() == 60.4
    assert t.learn(A, 1001, 1.9) == []  # 0.1 + 1.6 s * 0.5: 0.9 token
    assert t.learn(A, 1001, 2.2) == [A]  # 1.05: one more change
    assert t.drops == {"nat-binding-change-rate-limited": 2}
    assert t.stats == {"learned": 1, "port-changed": 3}
    assert t.learn(B, 7, 2.4) == [B]  # another address has its own bucket
    assert t.learn(B, 8, 2.5) == [B]


def test_the_buckets_go_with_their_bindings() -> None:
    """Per-address state is bounded by the table: an expired, evicted or forgotten binding
    takes its bucket with it, and a new binding starts with a whole burst again."""
    t = NatBindings(timeout=10.0, max_entries=2, change_rate=0.01, change_burst=1)
    t.learn(A, 1, 0.0)
    assert t.learn(A, 2, 0.0) == [A]
    assert t.learn(A, 3, 0.0) == []
    t.learn(B, 1, 1.0)
    assert len(t._buckets) == 1
    assert t.learn(C, 1, 2.0) == [A, C]  # A evicted, with its bucket
    assert not t._buckets
    assert t.learn(C, 2, 2.0) == [C] and len(t._buckets) == 1
    assert t.expire(20.0) == [B, C] and not t._buckets
    t.learn(A, 1, 21.0)
    assert t.learn(A, 2, 21.0) == [A]  # a fresh burst
    assert t.forget(A) and not t._buckets


def test_default_limits_let_a_rebinding_nat_through_and_stop_a_flood() -> None:
    t = NatBindings(timeout=120.0, max_entries=10)
    assert (t.change_rate, t.change_burst) == (CHANGE_RATE, CHANGE_BURST)
    t.learn(A, 40000, 0.0)
    assert t.learn(A, 40001, 30.0) == [A]  # a NAT reboot, much later: at once
    accepted = sum(len(t.learn(A, 50000 + k % 2, 31.0 + k / 1000)) for k in range(1000))
    assert accepted == CHANGE_BURST - 1  # the rest of the burst (1 s adds 0.1 token)
    # Then the binding stays at 50000: the other 997 are refreshes (even k) or refused (odd).
    assert t.port_for(A) == 50000
    assert t.drops["nat-binding-change-rate-limited"] == 499


def test_forget() -> None:
    t = NatBindings(timeout=60.0, max_entries=4)
    t.learn(A, 1, 0.0)
    assert t.forget(A) is True
    assert t.forget(A) is False
    assert t.port_for(A) is None and t.next_deadline() is None


def test_states() -> None:
    t = NatBindings(timeout=60.0, max_entries=4)
    t.learn(A, 61001, 0.0)
    t.learn(V6, 4341, 10.0)
    rows = t.states(15.0)
    json.dumps(rows)
    assert rows == [
        {"address": "2001:db8::5", "port": 4341, "age-seconds": 5.0, "expires-in": 55.0},
        {"address": "192.0.2.5", "port": 61001, "age-seconds": 15.0, "expires-in": 45.0},
    ]


@pytest.mark.parametrize(
    ("timeout", "max_entries"),
    [(0, 1), (-1.0, 1), (float("inf"), 1), (float("nan"), 1), (True, 1), (1.0, 0), (1.0, 1.5)],
)
def test_constructor_checks(timeout: float, max_entries: int) -> None:
    with pytest.raises(ValueError):
        NatBindings(timeout, max_entries)


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_bad_ports_are_refused(port: int) -> None:
    t = NatBindings(60.0, 4)
    with pytest.raises(ValueError):
        t.learn(A, port, 0.0)
    assert len(t) == 0


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["learn", "expire"]),
            st.sampled_from([A, B, C, V6]),
            st.integers(1, 4),
            st.floats(0.0, 20.0),
        ),
        max_size=50,
    )
)
def test_matches_a_simple_model(ops: list) -> None:
    t = NatBindings(timeout=30.0, max_entries=3, change_rate=0.2, change_burst=2)
    model: dict[object, tuple[int, float]] = {}
    buckets: dict[object, TokenBucket] = {}  # the model's: one per bound address that changed
    now = 0.0
    for kind, address, port, step in ops:
        now += step
        if kind == "learn":
            changed = t.learn(address, port, now)
            old = model.get(address, (None, 0.0))[0]
            if old is not None and old != port:
                bucket = buckets.setdefault(address, TokenBucket(0.2, 2))
                if not bucket.take(now):
                    assert changed == []  # refused: nothing changes
                    continue
            expected = []
            if address not in model and len(model) == 3:
                victim = next(iter(model))  # least recently refreshed (dict order)
                del model[victim]
                buckets.pop(victim, None)
                expected.append(victim)
            if old != port:
                expected.append(address)
            assert changed == expected
            model.pop(address, None)
            model[address] = (port, now)
        else:
            expired = t.expire(now)
            gone = [a for a, (_, at) in model.items() if at <= now - 30.0]
            assert sorted(map(str, expired)) == sorted(map(str, gone))
            for a in gone:
                del model[a]
                buckets.pop(a, None)
        assert len(t) == len(model)
        for a in (A, B, C, V6):
            assert t.port_for(a) == (model[a][0] if a in model else None)
        deadline = t.next_deadline()
        assert deadline == (min(at for _, at in model.values()) + 30.0 if model else None)
