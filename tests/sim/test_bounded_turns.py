"""Work proportional to the map-cache is done in bounded turns, with packets served between.

An xTR (xtr1) holds many learned map-cache entries besides site 2's static one (xtr2 priority
1, xtr3 priority 2, both probed).  When probing declares xtr2 down, the entries using it are
marked in slices (``rloc_marking``), one per timer turn; when a thousand entries expire at
once, they go ``EXPIRE_BATCH`` per turn.  Either way the node's deadline stays "now" while work
remains, so the harness (like the daemon's loop) comes back after what else is due, and a
packet injected between two turns is forwarded at once, not after the whole job.
"""

from __future__ import annotations

import logging
from ipaddress import ip_address, ip_network

import pytest

from lispd.mapcache import MapCacheEntry, RlocEntry
from lispd.node.node import EXPIRE_BATCH, EXPIRY_LOG_BURST, EXPIRY_SUMMARY_INTERVAL, Node
from lispd.node.rlocmark import MARK_SLICE
from tests import configs
from tests.sim.network import Network, SimNode
from tests.sim.plan import H1, H2, SITE1, SITE2, XTR1, XTR2, XTR3
from tests.sim.worlds import Pinger, database

INTERVAL, TIMEOUT, DOWN_AFTER = 1.0, 0.5, 2
DETECTION = INTERVAL + DOWN_AFTER * TIMEOUT
MANY = 1000  # learned entries besides site 2's
STATIC = len(SITE2.prefixes)  # site 2's static entries (IPv4, IPv6)


def world() -> tuple[Network, SimNode, SimNode, SimNode]:
    net = Network()
    probing = {"interval": INTERVAL, "timeout": TIMEOUT, "down-after": DOWN_AFTER}
    rlocs = [{"address": XTR2, "priority": 1}, {"address": XTR3, "priority": 2}]
    xtrs = [
        net.add_node(
            name,
            configs.xtr(name, [rloc], database_mapping=database(SITE2, *rlocs), probing=probing),
        )
        for name, rloc in (("xtr2", XTR2), ("xtr3", XTR3))
    ]
    tables = {"map_cache": database(SITE2, *rlocs)}
    itr = net.add_node(
        "xtr1", configs.xtr("xtr1", [XTR1], SITE1.prefixes, probing=probing, **tables)
    )
    net.advance(1.0)
    return net, itr, xtrs[0], xtrs[1]


def learned(k: int, now: float, ttl: float) -> MapCacheEntry:
    """A learned entry (outside the sites' EID-prefixes) using xtr2 first, xtr3 second."""
    return MapCacheEntry(
        k % 2,
        ip_network(f"2001:db8:ffff:{k:x}::/64"),
        (RlocEntry(ip_address(XTR2), 1, 100), RlocEntry(ip_address(XTR3), 2, 100)),
        ttl=ttl,
        created=now,
        source="map-reply",
    )


def count_turns(node: Node, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The times of the node's timer turns from now on (handle_timer calls)."""
    turns: list[float] = []
    handle = node.handle_timer

    def counted(now: float) -> None:
        turns.append(now)
        handle(now)

    monkeypatch.setattr(node, "handle_timer", counted)
    return turns


def xtr2_down(itr: SimNode) -> int:
    """Entries showing xtr2 down."""
    return sum(
        1
        for e in itr.node.mapcache.entries()
        for r in e.rlocs
        if str(r.address) == XTR2 and not r.up
    )


def test_an_rloc_of_many_entries_goes_down_in_slices_with_packets_between(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net, itr, xtr2, xtr3 = world()
    node = itr.node
    for k in range(MANY):
        node.mapcache.add(learned(k, net.now, 3600.0))
    ping = Pinger(net, "xtr1", H1, H2)
    net.take_down("xtr2")
    end = net.now + DETECTION + 1.0
    while not node.rloc_marking:  # until probing declares xtr2 down
        assert net.step(end), "probing never noticed"
    # One slice was done at once: the rest waits for the next turns, the node due now.
    assert xtr2_down(itr) == MARK_SLICE
    assert node.get_timer() == net.now
    assert node.itr is not None and node.itr.rtrs is None
    turns = count_turns(node, monkeypatch)
    at = net.now
    while node.rloc_marking:
        encapsulated = itr.packets("itr.encap")
        ping.send()  # a packet between two turns: forwarded now, not after the job
        assert itr.packets("itr.encap") == encapsulated + 1
        assert node.get_timer() == net.now
        marked = xtr2_down(itr)
        assert net.step(net.now)  # a turn of the job, or a datagram arriving
        assert xtr2_down(itr) - marked <= MARK_SLICE
    assert turns == [at] * len(turns)  # every turn at the same instant: no time passes
    assert xtr2_down(itr) == MANY + STATIC  # and site 2's static entries
    assert len(turns) == -(-(MANY + STATIC) // MARK_SLICE) - 1
    seq = ping.send()
    net.settle()
    assert any(p.seq == seq for p in xtr3.delivered)
    # xtr2 back: the same job brings every entry back up.
    net.bring_up("xtr2")
    net.advance(INTERVAL + 0.1)
    assert not node.rloc_marking and xtr2_down(itr) == 0
    seq = ping.send()
    net.settle()
    assert any(p.seq == seq for p in xtr2.delivered)
    assert itr.drops() == {}


def test_a_thousand_expiries_at_once_go_in_batches(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    net, itr, xtr2, _xtr3 = world()
    node = itr.node
    prober = node.control.prober
    assert prober is not None
    other = ip_address("192.0.2.99")  # an RLOC only the expiring entries use
    for k in range(MANY):
        entry = learned(k, net.now, 30.0)
        if k == 7:
            entry = MapCacheEntry(
                entry.iid, entry.prefix, (RlocEntry(other, 1, 1),), ttl=30.0, created=net.now
            )
        node.mapcache.add(entry)
    prober.watch(other, None, net.now)  # as the node does on install
    expires = net.now + 30.0
    ping = Pinger(net, "xtr1", H1, H2)
    net.run(expires - 0.001)
    assert len(node.mapcache) == MANY + STATIC
    caplog.set_level(logging.INFO, logger="lispd.mapcache")
    turns = count_turns(node, monkeypatch)
    while len(node.mapcache) > STATIC:
        before = len(node.mapcache)
        assert net.step(expires + 1.0)
        assert before - len(node.mapcache) <= EXPIRE_BATCH
        if before > len(node.mapcache) > STATIC:  # work remains: due again now
            assert net.now == expires and node.get_timer() <= net.now
            encapsulated = itr.packets("itr.encap")
            ping.send()  # served between two batches
            assert itr.packets("itr.encap") == encapsulated + 1
    assert turns == [expires] * (MANY // EXPIRE_BATCH)
    assert other not in prober.watched  # its last entry went: no longer probed
    assert ip_address(XTR2) in prober.watched  # still used by site 2's entry
    lines = [r.getMessage() for r in caplog.records if r.name == "lispd.mapcache"]
    one_by_one = [m for m in lines if m.startswith("map-cache expired ")]
    assert len(one_by_one) == EXPIRY_LOG_BURST  # then the lines were counted, not written
    assert not any("expired-unlogged" in m for m in lines)
    net.advance(EXPIRY_SUMMARY_INTERVAL + 0.1)  # the summary is due a second later
    summary = [m for m in caplog.records if "expired-unlogged" in m.getMessage()]
    assert len(summary) == 1
    assert f"count={MANY - int(EXPIRY_LOG_BURST)}" in summary[0].getMessage()
    seq = ping.send()
    net.settle()
    assert any(p.seq == seq for p in xtr2.delivered)
