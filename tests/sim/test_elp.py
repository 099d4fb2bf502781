"""Scenario 7: Explicit Locator Paths.  xtr2 registers its prefixes with an ELP locator
(rtra -> rtrb -> xtr2); xtr1 learns it from the Map-Server, encapsulates to rtra, which finds
itself on the path and re-encapsulates to rtrb, which re-encapsulates to xtr2.  Every address is
reachable from every node: only the ELP makes traffic take that path, leg by leg, in order."""

from __future__ import annotations

import pytest

from tests import configs
from tests.sim.network import Network, SimNode
from tests.sim.plan import (
    H1,
    H1_V6,
    H2,
    H2_V6,
    MS,
    MS_V6,
    RTR,
    RTR_B,
    RTR_B_V6,
    RTR_V6,
    SITE1,
    SITE2,
    XTR1,
    XTR1_V6,
    XTR2,
    XTR2_V6,
)
from tests.sim.worlds import Pinger, site_xtr

PATH_V4 = (RTR, RTR_B, XTR2)
PATH_V6 = (RTR_V6, RTR_B_V6, XTR2_V6)


def world() -> tuple[Network, SimNode, SimNode, SimNode, SimNode]:
    net = Network()
    net.add_node("ms", configs.msmr("ms", [MS, MS_V6], [SITE1.table(), SITE2.table()]))
    rtra = net.add_node(
        "rtra", configs.rtr("rtra", [RTR, RTR_V6], map_resolver=configs.addresses(MS))
    )
    rtrb = net.add_node(
        "rtrb", configs.rtr("rtrb", [RTR_B, RTR_B_V6], map_resolver=configs.addresses(MS))
    )
    xtr1 = net.add_node(
        "xtr1",
        site_xtr("xtr1", (XTR1, XTR1_V6), SITE1, database_rlocs=[XTR1]),
        answer_pings=True,
    )
    xtr2_config = site_xtr("xtr2", (XTR2, XTR2_V6), SITE2)
    v4, v6 = xtr2_config["database-mapping"]
    v4["rlocs"] = [{"elp": list(PATH_V4)}]
    v6["rlocs"] = [{"elp": list(PATH_V6)}]
    xtr2 = net.add_node("xtr2", xtr2_config, answer_pings=True)
    net.advance(1.0)
    return net, rtra, rtrb, xtr1, xtr2


@pytest.mark.parametrize(
    ("src", "dst", "path", "itr_rloc"),
    [(H1, H2, PATH_V4, XTR1), (H1_V6, H2_V6, PATH_V6, XTR1_V6)],
    ids=["ipv4", "ipv6"],
)
def test_traffic_follows_the_explicit_locator_path(
    src: str, dst: str, path: tuple[str, str, str], itr_rloc: str
) -> None:
    net, rtra, rtrb, xtr1, xtr2 = world()
    ms = net["ms"]
    assert {s["eid-prefix"]: s["rlocs"] for s in ms.sites() if s["site"] == "site2"} == {
        SITE2.prefixes[0]: ["->".join(PATH_V4)],
        SITE2.prefixes[1]: ["->".join(PATH_V6)],
    }
    ping = Pinger(net, "xtr1", src, dst)
    ping.send()  # resolves along the path (held at xtr1, then at each RTR)
    net.settle()
    assert ping.answered() == [1]
    entry = xtr1.lookup(dst)
    assert entry is not None and len(entry.rlocs) == 1
    assert [str(hop) for hop in entry.rlocs[0].elp] == list(path)

    start = net.now
    for _ in range(3):
        ping.send()
        net.settle()
    assert ping.answered() == [1, 2, 3, 4]

    # Each echo request took the three legs, in order: xtr1 -> rtra -> rtrb -> xtr2.
    legs = [
        (d.sender, str(d.src), str(d.dst), d.inner().seq)
        for d in net.datagrams("data", since=start)
        if not d.control_in_data and d.inner().is_echo_request
    ]
    expected = []
    for seq in (2, 3, 4):
        expected += [
            ("xtr1", itr_rloc, path[0], seq),
            ("rtra", path[0], path[1], seq),
            ("rtrb", path[1], path[2], seq),
        ]
    assert legs == expected
    assert [(str(p.src), str(p.dst)) for p in xtr2.delivered if p.is_echo_request] == [
        (src, dst)
    ] * 4
    # The replies go straight back: site 1 has no path.
    replies = [
        d
        for d in net.datagrams("data", since=start)
        if not d.control_in_data and d.inner().is_echo_reply
    ]
    assert {(d.sender, str(d.dst)) for d in replies} == {("xtr2", XTR1)}
    # Both RTRs re-encapsulated every request (the first ones once resolved).
    for rtr in (rtra, rtrb):
        assert rtr.packets("rtr.reencap") + rtr.packets("itr.encap") == 4
        assert rtr.drops() == {}
    assert xtr1.drops() == {} and xtr2.drops() == {}
