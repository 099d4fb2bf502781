"""The node's per-event work stays proportional to what changed, not to the map-cache.

Without sockets: installs come through the control plane's result (as from Map-Replies), RLOC
changes as the prober reports them.  An eviction stops probing only the RLOCs nothing uses any
more (after the new entry is installed: an RLOC both use keeps its probe state); a clear of one
prefix looks it up per instance-ID; removals are logged at a bounded rate with a summary; an
RLOC change updates the ITR's RTR list at once and the entries in slices, the node due "now"
until they are all marked.
"""

from __future__ import annotations

import logging
from ipaddress import ip_address, ip_network

import pytest

from lispd.config import parse_config
from lispd.control.plane import ControlResult
from lispd.control.prober import RlocChange
from lispd.mapcache import MapCacheEntry, RlocEntry
from lispd.node import Node
from lispd.node.node import EXPIRY_LOG_BURST, EXPIRY_SUMMARY_INTERVAL
from lispd.node.rlocmark import MARK_SLICE
from tests import configs

SHARED = ip_address("192.0.2.20")
ONLY_OLD = ip_address("192.0.2.21")
STATIC_RLOC = ip_address("192.0.2.2")


def node_with(**tables: object) -> Node:
    doc = configs.xtr(
        map_cache=[configs.mapping("198.51.100.16/28", str(STATIC_RLOC))],
        probing={"map-cache": True},
        **tables,
    )
    node = Node(parse_config(configs.toml(doc)), 0.0)
    node.start(0.0)
    node.take_actions()
    return node


def learned(k: int, *rlocs: object, ttl: float = 300.0, iid: int = 0) -> MapCacheEntry:
    return MapCacheEntry(
        iid,
        ip_network(f"2001:db8:100:{k:x}::/64"),
        tuple(RlocEntry(r, 1, 10) for r in rlocs),  # type: ignore[arg-type]
        ttl=ttl,
        created=0.0,
        source="map-reply",
    )


def test_an_eviction_unwatches_only_the_rlocs_nothing_uses_any_more() -> None:
    node = node_with(limits={"map-cache-entries": 1})
    prober = node.control.prober
    assert prober is not None
    node._apply(ControlResult(installs=[learned(1, SHARED, ONLY_OLD, ttl=100.0)]))
    assert {SHARED, ONLY_OLD, STATIC_RLOC} <= set(prober.watched)
    probes = prober.state(SHARED).probes_sent
    node._apply(ControlResult(installs=[learned(2, SHARED, ttl=200.0)]))  # evicts the first
    assert node.counters.drops["map-cache-evicted"] == 1
    assert ONLY_OLD not in prober.watched
    assert SHARED in prober.watched and STATIC_RLOC in prober.watched
    assert prober.state(SHARED).probes_sent == probes  # kept, not watched afresh


def test_clearing_a_prefix_looks_it_up_and_logs_at_a_bounded_rate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    node = node_with()
    prober = node.control.prober
    assert prober is not None
    many = int(EXPIRY_LOG_BURST) + 30
    node._apply(ControlResult(installs=[learned(k, SHARED) for k in range(many)]))
    node._apply(ControlResult(installs=[learned(5, ONLY_OLD, iid=7), learned(6, ONLY_OLD)]))
    assert len(node.mapcache) == many + 2  # the sixth prefix of iid 0 is ONLY_OLD's now
    assert ONLY_OLD in prober.watched
    caplog.set_level(logging.INFO, logger="lispd.mapcache")
    assert node.clear_map_cache(None, "2001:db8:100:5::/64", 1.0) == 2  # iid 0 and 7
    assert node.mapcache.get(7, ip_network("2001:db8:100:5::/64")) is None
    assert ONLY_OLD in prober.watched  # prefix :6 of iid 0 still uses it
    assert node.clear_map_cache(None, "198.51.100.16/28", 1.0) == 0  # static: stays
    assert node.clear_map_cache(0, None, 1.0) == many - 1
    assert len(node.mapcache) == 1 and node.mapcache.entries()[0].source == "static"
    assert ONLY_OLD not in prober.watched and SHARED not in prober.watched
    assert STATIC_RLOC in prober.watched
    one_by_one = [r for r in caplog.records if r.getMessage().startswith("map-cache cleared ")]
    assert len(one_by_one) == EXPIRY_LOG_BURST
    assert node.get_timer() <= 1.0 + EXPIRY_SUMMARY_INTERVAL  # the summary's deadline
    node.handle_timer(1.0 + EXPIRY_SUMMARY_INTERVAL)
    summary = [r.getMessage() for r in caplog.records if "cleared-unlogged" in r.getMessage()]
    assert summary == [f"map-cache cleared-unlogged count={many + 1 - int(EXPIRY_LOG_BURST)}"]
    with pytest.raises(ValueError):
        node.clear_map_cache(None, "not-a-prefix", 2.0)


def test_installs_are_logged_at_a_bounded_rate_with_a_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A burst of Map-Reply installs writes EXPIRY_LOG_BURST lines, then sums up the rest;
    installing the same mapping again is a refresh, never counted against the budget."""
    node = node_with()
    caplog.set_level(logging.INFO, logger="lispd.mapcache")
    many = int(EXPIRY_LOG_BURST) + 40
    node.now = 0.0
    node._apply(ControlResult(installs=[learned(k, SHARED) for k in range(many)]))
    lines = [r.getMessage() for r in caplog.records]
    assert len([m for m in lines if m.startswith("map-cache learned ")]) == EXPIRY_LOG_BURST
    node._apply(ControlResult(installs=[learned(k, SHARED) for k in range(many)]))  # refreshes
    assert node.get_timer() <= EXPIRY_SUMMARY_INTERVAL
    node.handle_timer(EXPIRY_SUMMARY_INTERVAL)
    summary = [r.getMessage() for r in caplog.records if "-unlogged" in r.getMessage()]
    assert summary == [f"map-cache learned-unlogged count={many - int(EXPIRY_LOG_BURST)}"]
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="lispd.mapcache")  # debugging: every line
    node._apply(ControlResult(installs=[learned(k, ONLY_OLD) for k in range(many)]))
    lines = [r.getMessage() for r in caplog.records]
    assert len([m for m in lines if m.startswith("map-cache learned ")]) == many


def test_an_rloc_change_marks_rtrs_at_once_and_entries_in_slices() -> None:
    node = node_with()
    itr = node.itr
    assert itr is not None
    itr.rtrs = (RlocEntry(SHARED, 1, 100), RlocEntry(ONLY_OLD, 1, 100))  # behind a NAT
    many = 5 * MARK_SLICE + 3
    node._apply(ControlResult(installs=[learned(k, SHARED) for k in range(many)]))
    node.handle_timer(1.0)
    assert not node.rloc_marking and node.get_timer() > 1.0  # nothing to do
    node.now = 2.0
    node._apply(ControlResult(rloc_changes=[RlocChange(SHARED, False)]))
    assert [r.up for r in itr.rtrs] == [False, True]  # at once

    def down() -> int:
        return sum(1 for e in node.mapcache.using(SHARED) if not e.rlocs[0].up)

    assert down() == MARK_SLICE and node.get_timer() == 2.0
    turns = 0
    while node.rloc_marking:
        node.handle_timer(2.0)
        turns += 1
        assert down() <= MARK_SLICE * (turns + 1)
    assert down() == many and turns == 5
    # Back up before the job is through, then down again: the last word wins.
    node._apply(ControlResult(rloc_changes=[RlocChange(SHARED, True)]))
    node.handle_timer(2.0)
    node._apply(ControlResult(rloc_changes=[RlocChange(SHARED, False)]))
    while node.rloc_marking:
        node.handle_timer(2.0)
    assert down() == many and [r.up for r in itr.rtrs] == [False, True]
