"""Scenario 4: Solicit-Map-Request.  The ETR's database changes through a reload (its RLOC
priorities swap: IPv6 preferred over IPv4); it re-registers, sends SMRs to the ITRs that sent it
traffic, and those re-resolve through the Map-Resolver (SMR-invoked Map-Request, forwarded to
the ETR) and follow the new mapping."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from lispd.wire.control import decode_control
from lispd.wire.ecm import EncapsulatedControl
from lispd.wire.maprequest import MapRequest
from tests.configs import Doc
from tests.sim.plan import H1, H2, MS, SITE2, XTR1, XTR1_V6, XTR2, XTR2_V6
from tests.sim.worlds import Pinger, site_xtr, two_sites


def xtr2_config(v4_priority: int, v6_priority: int) -> Doc:
    rlocs = [
        {"address": XTR2, "priority": v4_priority},
        {"address": XTR2_V6, "priority": v6_priority},
    ]
    return site_xtr("xtr2", (XTR2, XTR2_V6), SITE2, database_rlocs=rlocs)


def test_a_database_change_solicits_the_itrs_that_sent_traffic() -> None:
    w = two_sites(answer_pings=False)
    net = w.net
    net.reload("xtr2", xtr2_config(1, 2))  # IPv4 preferred
    net.advance(1.0)
    ping = Pinger(net, "xtr1", H1, H2)
    ping.send()
    net.settle()
    assert [str(d.dst) for d in net.datagrams("data", sender="xtr1")] == [XTR2]
    entry = w.xtr1.lookup(H2)
    assert entry is not None
    assert [(str(r.address), r.priority) for r in entry.rlocs] == [(XTR2, 1), (XTR2_V6, 2)]

    changed = net.now
    outcome = net.reload("xtr2", xtr2_config(2, 1))  # IPv6 preferred now
    assert outcome.applied == ("database-mapping",) and outcome.restart_needed == ()
    net.settle()

    # xtr2 re-registered its new records and solicited xtr1 (the only ITR that sent it
    # traffic) from its control port, one SMR per changed prefix.
    registered = {s["eid-prefix"]: s for s in w.ms.sites() if s["site"] == "site2"}
    assert set(registered) == set(SITE2.prefixes)
    smrs = [
        d
        for d in net.datagrams("control", sender="xtr2", since=changed)
        if isinstance(m := decode_control(d.payload), MapRequest) and m.smr
    ]
    assert {(str(d.dst), d.sport, d.dport) for d in smrs} == {(XTR1, 4342, 4342)}
    assert len(smrs) == len(SITE2.prefixes)
    # xtr1 caches only the IPv4 prefix: that SMR is acted on, the other one is not.
    assert w.xtr1.drops() == {"smr-not-cached": 1}
    invoked = [
        m.message
        for d in net.datagrams("control", sender="xtr1", dst=MS, since=changed)
        if isinstance(m := decode_control(d.payload), EncapsulatedControl)
    ]
    assert len(invoked) == 1
    assert isinstance(invoked[0], MapRequest) and invoked[0].smr_invoked
    # The SMR-invoked request went through the Map-Server to xtr2, which answered.
    forwarded = [
        d
        for d in net.datagrams("control", sender="ms", since=changed)
        if isinstance(m := decode_control(d.payload), EncapsulatedControl) and m.to_etr
    ]
    assert len(forwarded) == 1 and str(forwarded[0].dst) in (XTR2, XTR2_V6)

    # xtr1 follows the new mapping: the next packet goes to xtr2's IPv6 RLOC.
    entry = w.xtr1.lookup(H2)
    assert entry is not None
    assert [(str(r.address), r.priority) for r in entry.rlocs] == [(XTR2, 2), (XTR2_V6, 1)]
    sent_after = net.now
    ping.send()
    net.settle()
    data = list(net.datagrams("data", sender="xtr1", since=sent_after))
    assert [(str(d.src), str(d.dst)) for d in data] == [(XTR1_V6, XTR2_V6)]
    inner = data[0].inner()
    assert (str(inner.src), str(inner.dst), inner.seq) == (H1, H2, 2)
    assert [p.seq for p in w.xtr2.delivered] == [1, 2]
    assert isinstance(w.xtr2.delivered[1].src, IPv4Address)  # the inner packet is still IPv4
    assert isinstance(data[0].dst, IPv6Address)


def test_no_smr_to_itrs_that_sent_nothing() -> None:
    w = two_sites(answer_pings=False)
    w.net.advance(1.0)
    changed = w.net.now
    w.net.reload("xtr2", xtr2_config(2, 1))
    w.net.settle()
    smrs = [
        d
        for d in w.net.datagrams("control", sender="xtr2", since=changed)
        if isinstance(m := decode_control(d.payload), MapRequest) and m.smr
    ]
    assert smrs == []
    assert len([s for s in w.ms.sites() if s["site"] == "site2"]) == 2
