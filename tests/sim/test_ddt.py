"""LISP-DDT in memory: whole lispd nodes (root and child DDT nodes, two Map-Servers, a DDT
Map-Resolver, two xTRs) exchanging real datagrams on the simulated network.

Tree: the root is authoritative for everything (0.0.0.0/0, ::/0) and delegates the EID space
(198.51.100.0/24, 2001:db8:100::/48) to the child DDT node, which delegates the sites' part
(198.51.100.0/27, 2001:db8:100::/56) to the pair of Map-Servers ms and ms2 (both hold both sites'
registrations).  Everything else is a delegation hole: of the child (198.51.100.128/25) or of
the root (outside the EID space).
"""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from lispd.api import views
from lispd.api.metrics import render_metrics
from lispd.cli import lispctl
from lispd.wire.control import decode_control
from lispd.wire.ecm import EncapsulatedControl
from lispd.wire.mapreferral import MapReferral
from tests import configs
from tests.configs import Doc
from tests.sim.network import Network, SimNode
from tests.sim.packets import icmp_echo
from tests.sim.plan import H1, H1_V6, H2, H2_V6, SITE1, SITE2, XTR1, XTR1_V6, XTR2, XTR2_V6, Site
from tests.sim.worlds import Pinger, database

ROOT, ROOT_V6 = "192.0.2.40", "2001:db8:0:40::40"
CHILD, CHILD_V6 = "192.0.2.50", "2001:db8:0:50::50"
MS_A, MS_A_V6 = "192.0.2.10", "2001:db8:0:10::10"
MS_B, MS_B_V6 = "192.0.2.11", "2001:db8:0:11::11"
MR, MR_V6 = "192.0.2.41", "2001:db8:0:41::41"
SITE3 = Site("site3", "key-site-three", ("198.51.100.32/28",))  # configured, never registers


def ddt_node(
    name: str, rlocs: tuple[str, str], authority: list[str], delegations: list[Doc]
) -> Doc:
    return configs.node(
        name,
        ["ddt-node"],
        rlocs,
        ddt_authority=[{"eid-prefix": p} for p in authority],
        ddt_delegation=delegations,
    )


def delegation(prefix: str, kind: str, *referrals: str) -> Doc:
    return {"eid-prefix": prefix, "kind": kind, "referrals": list(referrals)}


def xtr(name: str, rlocs: tuple[str, str], site: Site) -> Doc:
    return configs.xtr(
        name,
        rlocs,
        database_mapping=database(site, *rlocs),
        map_server=[configs.map_server(ms, site.key) for ms in (MS_A, MS_B)],
        map_cache=[configs.resolve("0.0.0.0/0"), configs.resolve("::/0")],
        map_resolver=configs.addresses(MR),
    )


class Tree:
    def __init__(self, *, request_timeout: float = 0.5) -> None:
        net = self.net = Network()
        self.root = net.add_node(
            "root",
            ddt_node(
                "root",
                (ROOT, ROOT_V6),
                ["0.0.0.0/0", "::/0"],
                [
                    delegation("198.51.100.0/24", "ddt-node", CHILD, CHILD_V6),
                    delegation("2001:db8:100::/48", "ddt-node", CHILD_V6, CHILD),
                ],
            ),
        )
        self.child = net.add_node(
            "child",
            ddt_node(
                "child",
                (CHILD, CHILD_V6),
                ["198.51.100.0/24", "2001:db8:100::/48"],
                [
                    delegation("198.51.100.0/26", "map-server", MS_A, MS_B),
                    delegation("2001:db8:100::/56", "map-server", MS_A_V6, MS_B_V6),
                ],
            ),
        )
        sites = [SITE1.table(), SITE2.table(), SITE3.table()]
        self.ms = net.add_node(
            "ms", configs.msmr("ms", [MS_A, MS_A_V6], sites, roles=["map-server"])
        )
        self.ms2 = net.add_node(
            "ms2", configs.msmr("ms2", [MS_B, MS_B_V6], sites, roles=["map-server"])
        )
        self.mr = net.add_node(
            "mr",
            configs.node(
                "mr",
                ["map-resolver"],
                [MR, MR_V6],
                ddt={"roots": [ROOT], "request-timeout": request_timeout},
            ),
        )
        self.xtr1 = net.add_node("xtr1", xtr("xtr1", (XTR1, XTR1_V6), SITE1), answer_pings=True)
        self.xtr2 = net.add_node("xtr2", xtr("xtr2", (XTR2, XTR2_V6), SITE2), answer_pings=True)
        net.advance(1.0)  # both sites registered with both Map-Servers

    def ddt_stats(self, sim: SimNode) -> dict[str, int]:
        resolver = sim.node.control.ddt_resolver
        assert resolver is not None
        return dict(resolver.stats)

    def referrals(self) -> dict[str, str]:
        resolver = self.mr.node.control.ddt_resolver
        assert resolver is not None
        return {
            f"[{iid}]{prefix}": ",".join(map(str, entry.referrals)) or entry.action.name
            for iid, prefix, entry in resolver.cache.items()
        }


def referral_actions(net: Network, since: int) -> list[tuple[str, str, str]]:
    """(sender, action, prefix) of every Map-Referral sent after the first ``since`` datagrams."""
    out = []
    for d in net.sent[since:]:
        if d.kind != "control":
            continue
        msg = decode_control(d.payload)
        if isinstance(msg, MapReferral):
            rec = msg.records[0]
            out.append((d.sender, rec.action.name, f"{rec.eid}/{rec.mask_len}"))
    return out


def test_first_packets_wait_for_the_walk_down_the_tree_and_are_delivered() -> None:
    tree = Tree()
    for src, dst in ((H1, H2), (H1_V6, H2_V6)):
        ping = Pinger(tree.net, "xtr1", src, dst)
        sent = [ping.send() for _ in range(3)]
        tree.net.advance(1.0)
        assert ping.answered() == sent, (src, dst)
    stats = tree.ddt_stats(tree.mr)
    assert stats["answered"] >= 2 and stats.get("gave-up", 0) == 0, stats
    # The walk: the root refers to the child, the child to the Map-Servers, one acknowledges.
    cached = tree.referrals()
    assert cached["[0]198.51.100.0/24"] == f"{CHILD},{CHILD_V6}"
    assert cached["[0]198.51.100.0/26"] == f"{MS_A},{MS_B}"
    assert cached["[0]198.51.100.16/28"] == f"{MS_A},{MS_B}"  # the MS-ACK's registered prefix
    assert cached["[0]2001:db8:100::/56"] == f"{MS_A_V6},{MS_B_V6}"
    assert tree.xtr1.lookup(H2).prefix == ip_network("198.51.100.16/28")


def test_a_cached_referral_takes_the_request_straight_to_the_map_server() -> None:
    tree = Tree()
    ping = Pinger(tree.net, "xtr1", H1, H2)
    ping.send()
    tree.net.advance(1.0)
    sent_before = tree.ddt_stats(tree.mr)["requests-sent"]
    tree.net.advance(1.0)  # past the ITR's min-request-interval for the EID
    tree.xtr1.node.clear_map_cache(None, None, tree.net.now)
    since = len(tree.net.sent)
    ping.send()
    tree.net.advance(1.0)
    assert ping.answered() == [1, 2]
    assert tree.ddt_stats(tree.mr)["requests-sent"] == sent_before + 1
    assert [(s, a) for s, a, _ in referral_actions(tree.net, since)] == [("ms", "MS_ACK")]


def test_delegation_holes_are_negative_natively_forward_for_the_whole_hole() -> None:
    tree = Tree()
    for eid, hole in (("198.51.100.200", "198.51.100.128/25"), ("203.0.113.9", "200.0.0.0/5")):
        tree.net.inject("xtr1", _echo(H1, eid))
        tree.net.advance(1.0)
        entry = tree.xtr1.lookup(eid)
        assert entry is not None and entry.prefix == ip_network(hole), (eid, entry)
        assert entry.action == "native-forward" and not entry.rlocs
    assert tree.referrals()["[0]198.51.100.128/25"] == "DELEGATION_HOLE"
    # The next request in the hole is answered from the cache, without a walk.
    sent = tree.ddt_stats(tree.mr)["requests-sent"]
    tree.net.advance(1.0)  # past the ITR's min-request-interval for the EID
    tree.xtr1.node.clear_map_cache(None, None, tree.net.now)
    tree.net.inject("xtr1", _echo(H1, "198.51.100.201"))
    tree.net.advance(1.0)
    assert tree.ddt_stats(tree.mr)["requests-sent"] == sent
    assert tree.ddt_stats(tree.mr)["answered-from-cache"] == 1


def test_unregistered_site_space_is_asked_of_every_map_server_then_send_map_request() -> None:
    tree = Tree()
    tree.net.inject("xtr1", _echo(H1, "198.51.100.33"))
    tree.net.advance(2.0)
    entry = tree.xtr1.lookup("198.51.100.33")
    assert entry is not None and entry.prefix == ip_network("198.51.100.32/28")
    assert entry.action == "send-map-request" and entry.ttl == 60  # seconds: 1 minute
    assert tree.ms.node.control.ddt_leaf.stats["sent-ms-not-registered"] == 1  # type: ignore[union-attr]
    assert tree.ms2.node.control.ddt_leaf.stats["sent-ms-not-registered"] == 1  # type: ignore[union-attr]


def test_a_dead_map_server_is_skipped_for_its_peer_and_remembered() -> None:
    tree = Tree()
    tree.net.take_down("ms")
    ping = Pinger(tree.net, "xtr1", H1, H2)
    first = ping.send()
    tree.net.advance(2.0)
    assert ping.answered() == [first]
    stats = tree.ddt_stats(tree.mr)
    assert stats["timeouts"] == 1 and stats["answered"] >= 1
    # The next walk asks the peer first: the dead one timed out lately.
    tree.net.advance(1.0)  # past the ITR's min-request-interval for the EID
    tree.xtr1.node.clear_map_cache(None, None, tree.net.now)
    ping.send()
    tree.net.advance(2.0)
    assert ping.answered() == [1, 2]
    assert tree.ddt_stats(tree.mr)["timeouts"] == 1


def test_a_dead_root_leaves_cached_referrals_working() -> None:
    tree = Tree()
    ping = Pinger(tree.net, "xtr1", H1, H2)
    ping.send()
    tree.net.advance(1.0)
    tree.net.take_down("root")
    tree.net.advance(1.0)  # past the ITR's min-request-interval for the EID
    tree.xtr1.node.clear_map_cache(None, None, tree.net.now)
    ping.send()
    tree.net.advance(1.0)
    assert ping.answered() == [1, 2]
    # An EID with nothing cached under the dead root cannot be resolved: the walk ends
    # silently after the timeout, the ITR asks again later.
    tree.net.inject("xtr1", _echo(H1, "203.0.113.9"))
    tree.net.advance(2.0)
    assert tree.ddt_stats(tree.mr)["gave-up-unreachable"] >= 1
    entry = tree.xtr1.lookup("203.0.113.9")  # nothing learned: still the static 0.0.0.0/0
    assert entry is not None and entry.source == "static", entry


def test_not_authoritative_for_a_cached_referral_restarts_from_the_root() -> None:
    tree = Tree()
    ping = Pinger(tree.net, "xtr1", H1, H2)
    ping.send()
    tree.net.advance(1.0)
    # The child stops delegating the sites' part to the Map-Servers and is authoritative for
    # less: the cached /24 referral to it is now wrong for 198.51.100.0/26...
    tree.net.reload(
        "child",
        ddt_node("child", (CHILD, CHILD_V6), ["198.51.100.128/25"], []),
    )
    resolver = tree.mr.node.control.ddt_resolver
    assert resolver is not None
    resolver.cache.remove(0, ip_network("198.51.100.16/28"))
    resolver.cache.remove(0, ip_network("198.51.100.0/26"))
    tree.net.advance(1.0)  # past the ITR's min-request-interval for the EID
    tree.xtr1.node.clear_map_cache(None, None, tree.net.now)
    ping.send()
    tree.net.advance(2.0)
    stats = tree.ddt_stats(tree.mr)
    assert stats["restarted-from-roots"] == 1
    # ... the root still refers to the child, which is now not authoritative: given up.
    assert stats.get("gave-up-loop", 0) + stats.get("gave-up-exhausted", 0) == 1, stats
    entry = tree.xtr1.lookup(H2)
    assert entry is not None and entry.action == "send-map-request"
    assert entry.prefix == ip_network(f"{H2}/32")


def _echo(src: str, dst: str) -> bytes:
    return icmp_echo(src, dst, seq=1)


def test_ecms_to_the_map_server_carry_the_itr_nonce_and_the_d_bit() -> None:
    tree = Tree()
    since = len(tree.net.sent)
    Pinger(tree.net, "xtr1", H1, H2).send()
    tree.net.advance(1.0)
    itr_nonce = None
    seen = []
    for d in tree.net.sent[since:]:
        if d.kind != "control":
            continue
        msg = decode_control(d.payload)
        if isinstance(msg, EncapsulatedControl):
            seen.append((d.sender, str(d.dst), msg.ddt, msg.to_etr, msg.message.nonce))
            if d.sender == "xtr1":
                itr_nonce = msg.message.nonce
    assert itr_nonce is not None
    to_root = [s for s in seen if s[1] == ROOT]
    to_ms = [s for s in seen if s[1] in (MS_A, MS_B)]
    to_etr = [s for s in seen if s[3]]
    assert to_root and to_root[0][2] and to_root[0][4] != itr_nonce  # a nonce of its own
    assert to_ms and to_ms[0][2] and to_ms[0][4] == itr_nonce
    assert to_etr and not to_etr[0][2] and str(to_etr[0][1]) == XTR2  # D bit cleared
    assert ip_address(XTR2)


def test_operators_see_the_referral_cache_and_the_walks() -> None:
    """What ``lispctl show referral-cache``, ``show stats`` and ``/metrics`` are made of."""
    tree = Tree()
    Pinger(tree.net, "xtr1", H1, H2).send()
    tree.net.inject("xtr1", _echo(H1, "203.0.113.9"))
    tree.net.advance(1.0)
    listing = views.referral_listing(tree.mr.node, lambda: tree.net.now)
    rows = listing.page(2) + listing.page(200)
    assert len(rows) == listing.total == len(tree.referrals()) >= 4
    hole = next(r for r in rows if r["action"] == "delegation-hole")
    assert hole["eid-prefix"] == "[0]200.0.0.0/5" and hole["referrals"] == []
    assert hole["learned-from"] == ROOT and 0 < hole["expires-in"] <= 15 * 60
    text = lispctl.format_referral_cache(rows)
    assert text.startswith(f"LISP-DDT referral cache: {len(rows)} referrals")
    assert "[0]198.51.100.0/26" in text and f"{MS_A}\n" in text and f"{MS_B}\n" in text
    stats = views.node_stats(tree.mr.node)["ddt"]
    assert stats["referral-cache-entries"] == len(rows) and stats["pending"] == 0
    assert stats["received-ms-ack"] == 2  # xtr1 -> h2, and xtr2 resolving h1 for the reply
    assert stats["received-delegation-hole"] == 1
    assert "LISP-DDT" in lispctl.format_stats(views.node_stats(tree.mr.node))
    root_stats = views.node_stats(tree.root.node)["ddt"]
    assert root_stats["sent-node-referral"] >= 1 and root_stats["sent-delegation-hole"] == 1
    ms_stats = views.node_stats(tree.ms.node)["ddt"]
    assert ms_stats["sent-ms-ack"] == 2
    snapshot = views.metrics_snapshot(tree.mr.node, views.node_stats(tree.mr.node), tree.net.now)
    exposition = render_metrics(lambda: snapshot).decode()
    assert f"lispd_ddt_referral_cache_entries {float(len(rows))}" in exposition
    assert 'lispd_ddt_referrals_received_total{action="ms-ack"} 2.0' in exposition
    # Cleared: the next walk starts at the root again.
    resolver = tree.mr.node.control.ddt_resolver
    assert resolver is not None and resolver.cache.clear() == len(rows)
    assert views.referral_listing(tree.mr.node, lambda: tree.net.now).total == 0
