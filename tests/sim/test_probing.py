"""Scenario 5: RLOC-probing failover.  Site 2 is multihomed: xtr2 (priority 1) and xtr3
(priority 2).  When xtr2 stops answering (taken off the network), xtr1's probes mark it down
within ``interval + down-after x timeout`` and traffic moves to xtr3; when xtr2 is back, the
next probe's answer brings it up and traffic returns."""

from __future__ import annotations

from typing import Any

import pytest

from tests import configs
from tests.sim.network import Network, SimNode
from tests.sim.plan import H1, H2, MS, SITE1, SITE2, XTR1, XTR2, XTR3
from tests.sim.worlds import Pinger, database, registering, resolving

INTERVAL, TIMEOUT, DOWN_AFTER = 1.0, 0.5, 2
DETECTION = INTERVAL + DOWN_AFTER * TIMEOUT  # the longest an RLOC may stay "up" once dead


def world(learned: bool) -> tuple[Network, SimNode, SimNode, SimNode]:
    """xtr1 and site 2's two ETRs; xtr1 learns site 2's mapping from ms (``learned``) or has
    it as a static map-cache entry (then there is no mapping system at all)."""
    net = Network()
    probing = {"interval": INTERVAL, "timeout": TIMEOUT, "down-after": DOWN_AFTER}
    rlocs = [{"address": XTR2, "priority": 1}, {"address": XTR3, "priority": 2}]
    registration: dict[str, Any] = {"map_server": registering(SITE2)} if learned else {}
    if learned:
        net.add_node("ms", configs.msmr("ms", [MS], [SITE1.table(), SITE2.table()]))
    xtrs = [
        net.add_node(
            name,
            configs.xtr(
                name,
                [rloc],
                database_mapping=database(SITE2, *rlocs),
                probing=probing,
                **registration,
            ),
        )
        for name, rloc in (("xtr2", XTR2), ("xtr3", XTR3))
    ]
    if learned:
        tables = {"map_server": registering(SITE1), **resolving()}
    else:
        tables = {"map_cache": database(SITE2, *rlocs)}
    xtr1 = configs.xtr("xtr1", [XTR1], SITE1.prefixes, probing=probing, **tables)
    itr = net.add_node("xtr1", xtr1)
    net.advance(1.0)
    return net, itr, xtrs[0], xtrs[1]


def receiver(ping: int, *etrs: SimNode) -> list[str]:
    """Which ETRs' hosts got echo request ``ping``."""
    return [e.name for e in etrs if any(p.seq == ping for p in e.delivered)]


@pytest.mark.parametrize("learned", [False, True], ids=["static", "learned"])
def test_failover_to_the_next_priority_and_back(learned: bool) -> None:
    net, itr, xtr2, xtr3 = world(learned)
    ping = Pinger(net, "xtr1", H1, H2)
    first = ping.send()
    net.settle()
    assert receiver(first, xtr2, xtr3) == ["xtr2"]
    entry = itr.lookup(H2)
    assert entry is not None
    assert [(str(r.address), r.priority, r.up) for r in entry.rlocs] == [
        (XTR2, 1, True),
        (XTR3, 2, True),
    ]

    # xtr2 goes: a ping every 100 ms; until probing notices, they are lost on the way.
    net.take_down("xtr2")
    down_at = net.now
    while True:
        seq = ping.send()
        net.advance(0.1)
        if receiver(seq, xtr2, xtr3):
            break
        assert net.now - down_at <= DETECTION + 0.2, "probing never noticed"
    assert receiver(seq, xtr2, xtr3) == ["xtr3"]
    failover = net.now - down_at
    assert failover >= DOWN_AFTER * TIMEOUT  # not before enough probes were lost
    entry = itr.lookup(H2)
    assert entry is not None and [r.up for r in entry.rlocs] == [False, True]
    lost = [lost for lost in net.lost if lost.datagram.kind == "data"]
    assert len(lost) == seq - first - 1 and {lost.reason for lost in lost} == {"node-down"}
    states = {s["rloc"]: s for s in itr.node.control.prober.states(net.now)}  # type: ignore[union-attr]
    assert states[XTR2]["state"] == "down" and states[XTR3]["state"] == "up"
    for _ in range(5):  # it stays on xtr3 (xtr2's probes keep being lost)
        net.advance(0.5)
        seq = ping.send()
        net.settle()
        assert receiver(seq, xtr2, xtr3) == ["xtr3"]
    assert xtr3.packets("etr.decap") == 6 and xtr2.packets("etr.decap") == 1

    # xtr2 is back: the next probe is answered, traffic returns to the preferred RLOC.
    net.bring_up("xtr2")
    net.advance(INTERVAL + 0.1)
    entry = itr.lookup(H2)
    assert entry is not None and [r.up for r in entry.rlocs] == [True, True]
    back = ping.send()
    net.settle()
    assert receiver(back, xtr2, xtr3) == ["xtr2"]
    assert itr.drops() == {} and xtr2.drops() == {} and xtr3.drops() == {}


def test_a_site_whose_only_rloc_is_down_still_gets_the_traffic() -> None:
    """Issue 21: site 2 single-homed (xtr2 only).  Once probing has marked xtr2 down, xtr1 keeps
    encapsulating to it (counted ``itr.all-rlocs-down``) instead of dropping as
    ``no-usable-rloc``: a peer back before its next probe (a restarted xTR, or OOR, which answers
    no probe for its first seconds) gets the flow at once.  RFC 9300 section 10 / RFC 9301
    section 7.1 switch traffic to another locator; with none left there is nothing to switch to."""
    net = Network()
    probing = {"interval": INTERVAL, "timeout": TIMEOUT, "down-after": DOWN_AFTER}
    site2 = database(SITE2, {"address": XTR2, "priority": 1})
    xtr2 = net.add_node(
        "xtr2", configs.xtr("xtr2", [XTR2], database_mapping=site2, probing=probing)
    )
    itr = net.add_node(
        "xtr1", configs.xtr("xtr1", [XTR1], SITE1.prefixes, probing=probing, map_cache=site2)
    )
    net.advance(1.0)
    ping = Pinger(net, "xtr1", H1, H2)
    first = ping.send()
    net.settle()
    assert receiver(first, xtr2) == ["xtr2"]
    assert itr.packets("itr.all-rlocs-down") == 0

    net.take_down("xtr2")
    net.advance(DETECTION + 0.5)
    entry = itr.lookup(H2)
    assert entry is not None and [r.up for r in entry.rlocs] == [False]
    lost = ping.send()  # encapsulated to the down RLOC, lost on the way (xtr2 is off)
    net.advance(0.1)
    assert receiver(lost, xtr2) == [] and itr.packets("itr.all-rlocs-down") == 1

    # xtr2 is back; its next probe is up to an interval away, but the traffic gets through now.
    net.bring_up("xtr2")
    back = ping.send()
    net.advance(0.05)
    entry = itr.lookup(H2)
    assert entry is not None and [r.up for r in entry.rlocs] == [False]  # not probed yet
    assert receiver(back, xtr2) == ["xtr2"] and itr.packets("itr.all-rlocs-down") == 2
    assert "no-usable-rloc" not in itr.drops()

    net.advance(INTERVAL + 0.1)  # the probe is answered: up again, ordinary forwarding
    entry = itr.lookup(H2)
    assert entry is not None and [r.up for r in entry.rlocs] == [True]
    later = ping.send()
    net.settle()
    assert receiver(later, xtr2) == ["xtr2"] and itr.packets("itr.all-rlocs-down") == 2
