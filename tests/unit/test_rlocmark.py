"""RLOC up/down marking in slices (lispd.node.rlocmark) under concurrent map-cache changes.

The job replaces at most a slice of entries per run; meanwhile entries are replaced (by
installs that carry the prober's current state, as the node's do), removed, added, and the RLOC
may flap back.  When the job is done, every entry using the RLOC shows its final state, the
other RLOCs of those entries are untouched, and the map-cache's index still matches.
"""

from __future__ import annotations

import random
from dataclasses import replace
from ipaddress import IPv4Address, ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lispd.mapcache import MapCache, MapCacheEntry, RlocEntry
from lispd.node.rlocmark import MARK_SLICE, RlocMarking

A = IPv4Address("192.0.2.1")  # the RLOC that flaps
B = IPv4Address("192.0.2.5")  # the next priority
C = IPv4Address("192.0.2.9")  # an RLOC that stays down throughout


def entry(k: int, a_up: bool = True, *, with_b: bool = True) -> MapCacheEntry:
    rlocs = [RlocEntry(A, 1, 50, up=a_up)]
    if with_b:
        rlocs.append(RlocEntry(B, 2, 50))
    if k % 5 == 0:
        rlocs.append(RlocEntry(C, 3, 50, up=False))
    return MapCacheEntry(
        k % 2, ip_network(f"2001:db8:100:{k:x}::/64"), tuple(rlocs), ttl=600, created=0.0
    )


def states(mc: MapCache, address: IPv4Address) -> set[bool]:
    return {r.up for e in mc.entries() for r in e.rlocs if r.address == address}


def run_out(job: RlocMarking, limit: int = 10_000) -> int:
    runs = 0
    while job:
        looked = job.run()
        assert looked <= job.slice_size
        runs += 1
        assert runs < limit
    return runs


def test_a_down_rloc_is_shown_in_slices() -> None:
    mc = MapCache()
    installs: list[object] = []
    mc.listener = lambda iid, prefix, e: installs.append(e)
    for k in range(1000):
        mc.add(entry(k))
    mc.add(MapCacheEntry(0, ip_network("198.51.100.0/24"), (RlocEntry(B, 1, 1),)))  # no A
    installs.clear()
    job = RlocMarking(mc, slice_size=100)
    job.mark(A, False)
    assert len(job) == 1 and states(mc, A) == {True}  # queued: nothing done yet
    assert job.run() == 100
    assert len(installs) == 100 and len(mc) == 1001  # a slice replaced, no more
    assert sum(not r.up for e in mc.entries() for r in e.rlocs if r.address == A) == 100
    assert run_out(job) == 9 and not job and len(job) == 0
    assert states(mc, A) == {False} and states(mc, B) == {True} and states(mc, C) == {False}
    assert len(installs) == 1000 and job.replaced == 1000
    assert len(mc.using(A)) == 1000  # the index follows the replacements
    job.mark(A, False)  # nothing to change: a pass of comparisons, no replacement
    run_out(job)
    assert len(installs) == 1000
    job.mark(IPv4Address("192.0.2.77"), False)  # no entry uses it: not even queued
    assert not job
    with pytest.raises(ValueError):
        RlocMarking(mc, slice_size=0)
    assert MARK_SLICE >= 1


def test_a_flap_back_mid_job_ends_with_every_entry_up() -> None:
    mc = MapCache()
    for k in range(500):
        mc.add(entry(k))
    job = RlocMarking(mc, slice_size=40)
    job.mark(A, False)
    job.run()
    job.run()  # 80 entries down, the rest not yet
    job.mark(A, True)  # back up while the pass runs
    run_out(job)
    assert states(mc, A) == {True}
    # and down-up-down while waiting behind another address: the newest state wins
    job.mark(B, False)
    job.mark(A, False)
    job.mark(A, True)
    job.mark(A, False)
    assert len(job) == 2
    run_out(job)
    assert states(mc, A) == {False} and states(mc, B) == {False}


def test_entries_replaced_removed_and_added_mid_job() -> None:
    mc = MapCache()
    for k in range(600):
        mc.add(entry(k))
    job = RlocMarking(mc, slice_size=50)
    job.mark(A, False)
    job.run()
    snapshot = mc.using(A)
    prober_up = False  # what the node would stamp on an install now
    removed = 0
    for k in range(0, 600, 7):
        e = entry(k, prober_up)
        if k % 2:
            mc.remove(e.iid, e.prefix)
            removed += 1
        else:  # a Map-Reply refresh, stamped with the prober's state
            mc.add(e)
    for k in range(600, 700):  # new entries, installed with the prober's state
        mc.add(entry(k, prober_up))
    for k in range(700, 720):  # ... some not using A at all
        prefix = ip_network(f"2001:db8:100:{k:x}::/64")
        mc.add(MapCacheEntry(k % 2, prefix, (RlocEntry(B, 1, 1),), ttl=600))
    replaced_before = job.replaced
    # what is left to replace: entries of the snapshot still installed as they were, A up
    left = sum(
        1
        for e in snapshot
        if mc.get(e.iid, e.prefix) is e and any(r.address == A and r.up for r in e.rlocs)
    )
    assert 0 < left < 600 - 50
    run_out(job)
    assert states(mc, A) == {False}
    assert len(mc) == 720 - removed
    assert len(mc.using(A)) == 700 - removed
    # those replaced or removed meanwhile, or added, were skipped: they showed it already
    assert job.replaced - replaced_before == left
    # flap back up: the new entries are included in the second pass
    job.mark(A, True)
    run_out(job)
    assert states(mc, A) == {True} and states(mc, C) == {False}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["mark", "mark", "run", "run", "run", "add", "replace", "remove"]),
            st.integers(0, 199),
            st.booleans(),
        ),
        max_size=80,
    ),
    st.integers(1, 30),
)
def test_property_the_final_state_wins_whatever_happens_meanwhile(ops: list, size: int) -> None:
    """A model of the node: a 'prober' state per RLOC, installs stamped with it, marks queued
    on every change.  After the job runs out, every entry shows the prober's state."""
    mc = MapCache()
    prober = {A: True, B: True}
    rng = random.Random(size)
    for k in range(120):
        mc.add(entry(k))
    job = RlocMarking(mc, slice_size=size)

    def stamped(e: MapCacheEntry) -> MapCacheEntry:
        return replace(e, rlocs=tuple(replace(r, up=prober.get(r.address, r.up)) for r in e.rlocs))

    for kind, k, flag in ops:
        if kind == "mark":
            address = A if flag else B
            prober[address] = not prober[address] if rng.random() < 0.8 else prober[address]
            job.mark(address, prober[address])
        elif kind == "run":
            job.run()
        elif kind in ("add", "replace"):
            mc.add(stamped(entry(k + (0 if kind == "replace" else 120))))
        elif kind == "remove":
            e = entry(k)
            if mc.get(e.iid, e.prefix) is not None:
                mc.remove(e.iid, e.prefix)
    run_out(job)
    for address, up in prober.items():
        assert states(mc, address) <= {up}
    assert states(mc, C) <= {False}
    for address in (A, B, C):
        using = {id(e) for e in mc.using(address)}
        assert using == {id(e) for e in mc.entries() if any(r.address == address for r in e.rlocs)}
