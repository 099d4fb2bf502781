"""Unit tests of lispd.node.natbindings: the RTR's NAT binding table (fake clock).  One binding
per xTR (translated address and port), each EID-prefix going to the binding whose keepalives
name it, claims that only move away from a quiet holder, expiry, the table's limit and the
per-claim limit on moves."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lispd.node.natbindings import (
    CHANGE_BURST,
    CHANGE_RATE,
    MAX_EIDS,
    MIN_GAP,
    QUIET_GAPS,
    NatBindings,
)

A = IPv4Address("192.0.2.5")  # one NAT's public address
B = IPv4Address("192.0.2.6")
V6 = IPv6Address("2001:db8::5")
P1 = (0, IPv4Network("198.51.100.0/28"))  # xtr1's EID-prefix
P2 = (0, IPv4Network("198.51.100.16/28"))  # xtr2's
P3 = (7, IPv6Network("2001:db8:100::/48"))


def port(t: NatBindings, address: IPv4Address | IPv6Address, eid: tuple | None = None) -> object:
    """What the packet path gets for an entry of ``eid`` (None: a prefix nobody names)."""
    if eid is None:
        return t.port_for(address, 0, IPv4Network("203.0.113.0/24"))
    return t.port_for(address, *eid)


def keepalives(t: NatBindings, at: float, *who: tuple) -> None:
    """One keepalive round at ``at`` from each (address, port, eid)."""
    for address, p, eid in who:
        t.learn(address, p, at, eid)


def test_one_xtr_behind_its_nat() -> None:
    t = NatBindings(timeout=60.0, max_entries=10)
    assert len(t) == 0 and t.port_for(A) is None and t.next_deadline() is None
    assert t.learn(A, 61001, 0.0, P1) == [A]  # new: it takes P1 and the address-wide claim
    assert port(t, A, P1) == 61001 and port(t, A) == 61001 and t.port_for(A) == 61001
    assert A in t and (A, 61001) in t and (A, 61002) not in t and len(t) == 1
    assert t.learn(A, 61001, 5.0, P1) == []  # a refresh
    assert t.learn(V6, 4341, 7.0, None) == [V6]  # a keepalive naming no IP prefix
    assert t.port_for(V6) == 4341 and t.port_for(B) is None
    assert t.stats["learned"] == 2 and dict(t.drops) == {}


def test_two_xtrs_behind_one_nat_address_each_get_their_own_port() -> None:
    """The case this table exists for: one public address, two xTRs, two translated ports."""
    t = NatBindings(timeout=60.0, max_entries=10)
    assert t.learn(A, 40001, 0.0, P1) == [A]
    assert t.learn(A, 40002, 0.5, P2) == [A]  # its own binding, claiming its own prefix
    assert len(t) == 2
    for now in range(10, 200, 10):  # both keep their keepalives going, interleaved
        keepalives(t, float(now), (A, 40001, P1), (A, 40002, P2))
        assert port(t, A, P1) == 40001 and port(t, A, P2) == 40002
        # A prefix nobody names (and RLOC probes) keep going to the first binding: the
        # address-wide claim does not flap with whichever keepalive came last.
        assert port(t, A) == 40001
    assert dict(t.drops) == {} and t.stats["claim-moved"] == 0


def test_a_spoofed_keepalive_does_not_steal_a_live_xtrs_prefix() -> None:
    t = NatBindings(timeout=60.0, max_entries=10)
    keepalives(t, 0.0, (A, 40001, P1), (A, 40002, P2))
    keepalives(t, 10.0, (A, 40001, P1), (A, 40002, P2))  # gaps known: 10 s
    # Someone else (xtr2's port, or a spoofer on any port) names xtr1's prefix.
    assert t.learn(A, 40002, 12.0, P1) == []
    assert t.learn(A, 50000, 13.0, P1) == []  # a new binding, but it takes nothing
    assert port(t, A, P1) == 40001 and port(t, A, P2) == 40002 and port(t, A) == 40001
    assert t.drops["nat-binding-eid-held"] == 2
    # Within 1.5 gaps of its last keepalive xtr1 still holds it.
    assert t.learn(A, 40002, 10.0 + QUIET_GAPS * 10.0, P1) == []
    assert port(t, A, P1) == 40001


def test_a_nat_rebinding_an_xtr_is_followed_once_the_old_port_is_quiet() -> None:
    """The NAT forgets xtr1's mapping (a reboot, a timeout): its keepalives come from a new
    port.  The RTR moves xtr1's prefix (and the address-wide claim) to the new port at the
    first keepalive after 1.5 of its keepalive gaps without one from the old port."""
    t = NatBindings(timeout=60.0, max_entries=10)
    for now in (0.0, 10.0, 20.0):
        keepalives(t, now, (A, 40001, P1), (A, 40002, P2))
    # NAT reboot at 25 s: xtr1 is now 41001.
    keepalives(t, 30.0, (A, 41001, P1), (A, 40002, P2))
    assert port(t, A, P1) == 40001  # 10 s since 40001's last: not quiet yet
    assert t.learn(A, 41001, 40.0, P1) == [A]  # 20 s > 1.5 x 10 s: moved
    assert port(t, A, P1) == 41001 and port(t, A) == 41001 and port(t, A, P2) == 40002
    assert t.stats["claim-moved"] == 2  # P1 and the address-wide claim
    assert (A, 40001) in t  # the old binding stays until it times out, holding nothing
    assert t.expire(80.0) == []  # 40001 expires (its last refresh 20 s): nothing it held
    assert (A, 40001) not in t and port(t, A, P1) == 41001


def test_a_port_the_nat_gives_to_another_xtr_loses_the_old_xtrs_prefix() -> None:
    """xtr1's mapping (port 40001) goes; the NAT later gives 40001 to xtr3, whose keepalives
    name site 3.  The binding of 40001 stays alive, but nothing names site 1 from it any
    more: xtr1, now on 41001, takes site 1 back as if 40001 had gone quiet."""
    t = NatBindings(timeout=60.0, max_entries=10)
    for now in (0.0, 10.0):
        t.learn(A, 40001, now, P1)
    for now in (20.0, 30.0, 40.0):
        t.learn(A, 40001, now, P3)  # xtr3 now, on xtr1's old port
        t.learn(A, 41001, now, P1)  # xtr1 on its new port
    assert t.port_for(A, *P1) == 41001  # at 30 s: 20 s since 40001 last named it
    assert t.port_for(A, *P3) == 40001
    assert t.port_for(A) == 40001  # the address-wide claim: 40001 is alive
    assert t.drops["nat-binding-eid-held"] == 1  # xtr1's try at 20 s


def test_quiet_without_a_known_gap_is_half_the_timeout() -> None:
    t = NatBindings(timeout=60.0, max_entries=10)
    t.learn(A, 40001, 0.0, P1)  # one keepalive only: no gap known
    assert t.learn(A, 41001, 30.0, P1) == []
    assert t.learn(A, 41001, 30.5, P1) == [A]
    assert port(t, A, P1) == 41001


def test_a_burst_of_keepalives_is_not_a_gap() -> None:
    """An xTR sends one keepalive per EID-prefix at once: the burst must not shrink its gap
    (which would let anyone take its prefixes after a fraction of a second)."""
    t = NatBindings(timeout=60.0, max_entries=10)
    for now in (0.0, 10.0):
        keepalives(t, now, (A, 40001, P1), (A, 40001, P3))
    keepalives(t, 10.0 + MIN_GAP / 2, (A, 40001, P1))  # a resend just after
    assert t.learn(A, 50000, 20.0, P3) == []  # 10 s after the burst: not quiet
    assert t.port_for(A, *P3) == 40001 and t.drops["nat-binding-eid-held"] == 1


def test_moves_of_one_claim_are_rate_limited() -> None:
    t = NatBindings(timeout=1000.0, max_entries=10, change_rate=0.01, change_burst=2)
    t.learn(A, 1000, 0.0, P1)
    t.learn(A, 1000, 1.0, P1)  # a 1 s gap: quiet 1.5 s after its last keepalive
    assert t.learn(A, 1001, 3.0, P1) == [A]  # moves 1 (of P1 and of the address-wide claim)
    t.learn(A, 1001, 4.0, P1)
    assert t.learn(A, 1002, 6.0, P1) == [A]  # moves 2: the burst is spent
    t.learn(A, 1002, 7.0, P1)
    assert t.learn(A, 1003, 9.0, P1) == []  # quiet holder, but no token left: refused
    assert t.port_for(A, *P1) == 1002 and t.port_for(A) == 1002
    assert t.drops["nat-binding-change-rate-limited"] == 2  # P1 and the address-wide claim
    assert t.learn(A, 1003, 109.0, P1) == [A]  # 100 s at 0.01 a second: one token again
    assert t.port_for(A, *P1) == 1003
    # A plain refresh and a new binding (or a new claim) are never limited.
    assert t.learn(A, 1003, 109.5, P1) == []
    assert t.learn(B, 7, 109.5, P2) == [B]
    assert t.stats["claim-moved"] == 6


def test_default_change_limit() -> None:
    assert (CHANGE_RATE, CHANGE_BURST) == (0.1, 4.0)


def test_expiry_passes_the_address_wide_claim_on() -> None:
    t = NatBindings(timeout=30.0, max_entries=10)
    t.learn(A, 40001, 0.0, P1)
    t.learn(A, 40002, 10.0, P2)
    t.learn(B, 1, 15.0, None)
    assert t.next_deadline() == 30.0
    assert t.expire(29.9) == []
    assert t.expire(30.0) == [A]  # 40001 went, with P1 and the address-wide claim
    assert port(t, A, P1) == 40002 and port(t, A) == 40002  # nobody names P1 now
    assert port(t, A, P2) == 40002 and len(t) == 2 and t.next_deadline() == 40.0
    assert t.expire(100.0) == [A, B]
    assert len(t) == 0 and t.port_for(A) is None and t.next_deadline() is None
    assert t.stats["expired"] == 3
    # A new binding for the prefix is a new claim: no wait, no move counted.
    assert t.learn(A, 40009, 101.0, P1) == [A] and port(t, A, P1) == 40009


def test_expiry_order_follows_refreshes() -> None:
    t = NatBindings(timeout=30.0, max_entries=10)
    t.learn(A, 1, 0.0)
    t.learn(A, 2, 10.0)
    t.learn(A, 1, 20.0)  # refreshed: now the youngest
    assert t.next_deadline() == 40.0
    assert t.expire(40.0) == []  # port 2 went; it held nothing
    assert (A, 2) not in t and t.port_for(A) == 1 and t.next_deadline() == 50.0


def test_the_table_is_bounded_least_recently_refreshed_out() -> None:
    t = NatBindings(timeout=60.0, max_entries=3)
    t.learn(A, 1, 0.0, P1)
    t.learn(A, 2, 1.0, P2)
    t.learn(B, 1, 2.0)
    t.learn(A, 1, 3.0, P1)  # refreshed: (A, 2) is now the oldest
    assert t.learn(A, 3, 4.0) == [A]  # (A, 2) evicted: P2 went with it
    assert t.drops["nat-binding-evicted"] == 1 and len(t) == 3
    assert port(t, A, P2) == 1 and port(t, A, P1) == 1  # P2 falls back to the address-wide one
    assert t.learn(V6, 9, 5.0) == [B, V6]  # (B, 1) out: B has no binding at all now
    assert t.port_for(B) is None and len(t) == 3 and t.drops["nat-binding-evicted"] == 2


def test_a_binding_claims_at_most_max_eids() -> None:
    t = NatBindings(timeout=60.0, max_entries=10)
    eids = [(0, IPv4Network(f"198.51.100.{8 * k}/29")) for k in range(MAX_EIDS + 1)]
    for eid in eids:
        t.learn(A, 40001, 0.0, eid)
    assert all(t.port_for(A, *e) == 40001 for e in eids)  # the last one by the fallback
    assert t.drops["nat-binding-too-many-eids"] == 1
    t.learn(A, 40002, 0.0, eids[-1])  # another binding may claim it
    assert t.port_for(A, *eids[-1]) == 40002


def test_forget() -> None:
    t = NatBindings(timeout=60.0, max_entries=4)
    t.learn(A, 1, 0.0, P1)
    t.learn(A, 2, 0.0, P2)
    assert t.forget(A, 1) is True and t.forget(A, 1) is False
    assert port(t, A, P1) == 2  # the address-wide claim passed on
    assert t.forget(A) is True and t.forget(A) is False
    assert t.port_for(A) is None and t.next_deadline() is None and len(t) == 0


def test_states() -> None:
    t = NatBindings(timeout=60.0, max_entries=4)
    t.learn(A, 61001, 0.0, P1)
    t.learn(A, 61002, 5.0, P2)
    t.learn(V6, 4341, 10.0, P3)
    rows = t.states(15.0)
    json.dumps(rows)
    assert rows == [
        {
            "address": "2001:db8::5",
            "port": 4341,
            "age-seconds": 5.0,
            "expires-in": 55.0,
            "address-wide": True,
            "eid-prefixes": ["[7]2001:db8:100::/48"],
        },
        {
            "address": "192.0.2.5",
            "port": 61002,
            "age-seconds": 10.0,
            "expires-in": 50.0,
            "address-wide": False,
            "eid-prefixes": ["[0]198.51.100.16/28"],
        },
        {
            "address": "192.0.2.5",
            "port": 61001,
            "age-seconds": 15.0,
            "expires-in": 45.0,
            "address-wide": True,
            "eid-prefixes": ["[0]198.51.100.0/28"],
        },
    ]


@pytest.mark.parametrize(
    ("timeout", "max_entries"),
    [(0, 1), (-1.0, 1), (float("inf"), 1), (float("nan"), 1), (True, 1), (1.0, 0), (1.0, 1.5)],
)
def test_constructor_checks(timeout: float, max_entries: int) -> None:
    with pytest.raises(ValueError):
        NatBindings(timeout, max_entries)


@pytest.mark.parametrize("bad", [0, -1, 65536])
def test_bad_ports_are_refused(bad: int) -> None:
    t = NatBindings(60.0, 4)
    with pytest.raises(ValueError):
        t.learn(A, bad, 0.0)
    assert len(t) == 0


def claims(t: NatBindings) -> dict[tuple[str, str | None], int]:
    """Who holds what, from ``states``: (address, "[iid]prefix" or None for the address-wide
    claim) -> port."""
    held: dict[tuple[str, str | None], int] = {}
    for row in t.states(0.0):
        address, p = str(row["address"]), int(row["port"])  # type: ignore[call-overload]
        if row["address-wide"]:
            held[(address, None)] = p
        for eid in row["eid-prefixes"]:  # type: ignore[attr-defined]
            held[(address, eid)] = p
    return held


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["learn", "learn", "expire"]),
            st.sampled_from([A, B]),
            st.integers(1, 4),
            st.sampled_from([None, P1, P2]),
            st.floats(0.0, 12.0),
        ),
        max_size=60,
    )
)
def test_invariants(ops: list) -> None:
    """Whatever the keepalives: every port handed out is a live binding's at that address,
    each claim has one live holder, the table stays bounded, and a holder that is not quiet
    never loses a claim to another binding."""
    timeout = 30.0
    t = NatBindings(timeout=timeout, max_entries=5, change_rate=0.2, change_burst=2)
    live: dict[tuple, float] = {}  # (address, port) -> last refresh
    gaps: dict[tuple, float] = {}
    named_at: dict[tuple, float] = {}  # (address, port, "[iid]prefix") -> last named
    now = 0.0
    for kind, address, p, eid, step in ops:
        now += step
        before = claims(t)
        if kind == "learn":
            key = (address, p)
            if key in live and now - live[key] >= MIN_GAP:
                gaps[key] = now - live[key]
            evicting = key not in live and len(live) == 5
            t.learn(address, p, now, eid)
            if eid is not None:
                named_at[(address, p, f"[{eid[0]}]{eid[1]}")] = now
            live.pop(key, None)
            live[key] = now
            while len(live) > 5:
                old = next(iter(live))
                del live[old]
                gaps.pop(old, None)
            # The anti-theft property: a claim held by another binding that is not quiet
            # stayed where it was (unless a full table evicted its holder).
            after = claims(t)
            named = [None] if eid is None else [None, f"[{eid[0]}]{eid[1]}"]
            for e in named:
                held = before.get((str(address), e))
                if held is None or held == p or (address, held) not in live or evicting:
                    continue
                last = live[(address, held)] if e is None else named_at[(address, held, e)]
                gap = gaps.get((address, held))
                wait = timeout / 2 if gap is None else QUIET_GAPS * gap
                if now - last <= wait:
                    assert after.get((str(address), e)) == held
        else:
            t.expire(now)
            for key in [k for k, at in live.items() if at <= now - timeout]:
                del live[key]
                gaps.pop(key, None)
        assert len(t) == len(live) <= 5
        for a in (A, B):
            ports_here = [k[1] for k in live if k[0] == a]
            for e in (None, P1, P2):
                got = t.port_for(a, *e) if e else t.port_for(a)
                assert (got is None) == (not ports_here)
                assert got is None or got in ports_here
        for (a, _e), p in claims(t).items():
            assert (IPv4Address(a), p) in live
        deadline = t.next_deadline()
        assert deadline == (min(live.values()) + timeout if live else None)
