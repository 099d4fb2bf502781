"""LISP-DDT (RFC 8111) through real namespaces: issue 23's acceptance with real lispd processes.

The world (tests/netns/ddt_world.py, one for the module): two root DDT nodes, two child DDT
nodes, four Map-Servers in two pairs, two DDT Map-Resolvers, four xTR sites (two in
instance-id 0, two in 7, each instance with one site under each child), and a PITR/PETR in
front of a non-LISP internet host, every node one hop from a core router.  Every lispd is a
real process; the xTRs know nothing but "resolve everything through the Map-Resolvers".

Each test clears the caches it depends on (``lispctl clear referral-cache`` on the
Map-Resolvers, ``clear map-cache`` on the ITRs) or measures deltas, so they share the world.  The
failure test kills a root and a Map-Server and brings them back afterwards; the load test after
it may leave the Map-Resolver thinking ms3/ms4 failed lately, so both come last (pytest keeps
file order).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests import configs
from tests.netns import common
from tests.netns.common import REPO, wait_for
from tests.netns.ddt_world import (
    CHILDREN,
    INET,
    INET_V4,
    INET_V6,
    MAP_RESOLVERS,
    PXTR,
    REQUEST_TIMEOUT,
    ROOTS,
    SILENT_SITE,
    DdtSite,
    World,
    configs_of,
    delegation_hole,
    root_doc,
    world,
)

pytestmark = pytest.mark.netns

RIG = [sys.executable, "-m", "lispd.cli.rig"]


@pytest.fixture(scope="module")
def w() -> Iterator[World]:
    with world() as running:
        yield running


# -- helpers --------------------------------------------------------------------------------------


def clear_caches(w: World) -> None:
    """Forget every referral of the Map-Resolvers and every learned mapping of the ITRs."""
    for mr in MAP_RESOLVERS:
        w.lispctl(mr, "clear", "referral-cache")
    for node in (*(s.xtr for s in w.plan.sites), PXTR):
        w.lispctl(node, "clear", "map-cache")


def learned(w: World, node: str) -> dict[tuple[int, str], dict[str, Any]]:
    """The map-cache entries ``node`` learned from Map-Replies, by (iid, EID-prefix)."""
    return {
        (e["instance-id"], e["eid-prefix"]): e
        for e in w.ask(node, "map-cache")
        if e["source"] == "map-reply"
    }


def iid_prefix(iid: int, prefix: str) -> str:
    """``[iid]prefix`` as rig and lispctl write an EID-prefix."""
    return f"[{iid}]{prefix}"


def rig(w: World, site: DdtSite, to: str, eid: str) -> tuple[int, dict[str, Any]]:
    """``rig --json`` run in ``site``'s xTR namespace toward node ``to`` for ``eid``
    (``[iid]address``): its exit status and output."""
    config = str(w.daemons[site.xtr].config_path)
    proc = w.lab.run(
        site.xtr, *RIG, "-c", config, "--to", w.plan.rloc[to], "--timeout", "2", "--json", eid,
        check=False, timeout=30, env={"PYTHONPATH": REPO},
    )  # fmt: skip
    assert proc.stdout, (proc.returncode, proc.stderr)
    return proc.returncode, json.loads(proc.stdout)


def stats(w: World, node: str) -> dict[str, Any]:
    """``lispctl --json show stats`` of ``node``."""
    result: dict[str, Any] = w.lispctl_json(node, "show", "stats")
    return result


# -- 1. reachability, first packet included -------------------------------------------------------


def test_every_host_reaches_its_instance_and_the_first_ping_is_answered(w: World) -> None:
    plan = w.plan
    clear_caches(w)
    for src in plan.sites:
        for dst in plan.in_iid(src.iid):
            if dst is src:
                continue
            for addr in (dst.host_v4, dst.host_v6):
                # Cold caches: the ITR holds the packet while the Map-Resolver walks the tree.
                assert w.lab.ping(src.host, addr, count=1, wait=4.0), (
                    f"first ping {src.host} -> {addr} (iid {src.iid}) lost"
                )
    for src in plan.sites:
        cache = learned(w, src.xtr)
        for dst in plan.in_iid(src.iid):
            if dst is src:
                continue
            for prefix in dst.prefixes():
                entry = cache.get((dst.iid, prefix))
                assert entry is not None, (src.xtr, prefix, cache)  # the registered prefix
                assert [r["address"] for r in entry["rlocs"]] == [dst.rloc], entry
        held = w.ask(src.xtr, "stats")["packets"].get("itr.held.packets", 0)
        assert held >= 2, (src.xtr, held)  # its own first pings, v4 and v6


# -- 2. the chain, seen by rig and in the referral cache ------------------------------------------


def test_rig_walks_root_child_map_server_and_the_referral_cache_lists_the_chain(
    w: World,
) -> None:
    plan = w.plan
    for site in plan.sites:
        asker = next(s for s in plan.sites if s is not site)
        for root in ROOTS:
            for eid, ms_block, child_block, prefix in (
                (site.host_v4, site.ms_block_v4, site.child_block_v4, site.prefix_v4),
                (site.host_v6, site.ms_block_v6, site.child_block_v6, site.prefix_v6),
            ):
                code, out = rig(w, asker, root, f"[{site.iid}]{eid}")
                assert code == 0, out
                steps = out["steps"]
                assert out["outcome"] == "ms-ack", out
                assert [s["node"] for s in steps] == [
                    plan.rloc[root],
                    plan.referral(site.child),
                    plan.rloc[site.map_servers[0]],
                ], out
                assert [s["action"] for s in steps] == ["node-referral", "ms-referral", "ms-ack"]
                assert [s["prefix"] for s in steps] == [
                    iid_prefix(site.iid, child_block),
                    iid_prefix(site.iid, ms_block),
                    iid_prefix(site.iid, prefix),
                ], out
                assert [r["address"] for r in steps[0]["referrals"]] == [plan.referral(site.child)]
                assert [r["address"] for r in steps[1]["referrals"]] == [
                    plan.rloc[ms] for ms in site.map_servers
                ]
                ms = site.map_servers[0]  # MS-ACK: the Map-Server's own RLOCs
                assert [r["address"] for r in steps[2]["referrals"]] == list(plan.rlocs(ms))
                assert all(s["authoritative"] for s in steps), out
                # The Map-Server also forwarded the request to the site's ETR: its Map-Reply.
                reply = out["map_reply"]
                assert reply is not None, out
                record = reply["records"][0]
                assert record["eid-prefix"] == iid_prefix(site.iid, prefix), reply
                assert [loc["address"] for loc in record["locators"]] == [site.rloc], reply

    # The referral cache: cold, then what the walks of one ping per pair learned.
    clear_caches(w)
    for mr in MAP_RESOLVERS:
        assert w.lispctl_json(mr, "show", "referral-cache") == []
    for src in plan.sites:
        for dst in plan.in_iid(src.iid):
            if dst is not src:
                for addr in (dst.host_v4, dst.host_v6):
                    assert w.lab.ping(src.host, addr, count=1, wait=4.0), (src.host, addr)
    cached: dict[tuple[str, str], dict[str, Any]] = {}
    tables = ""
    for mr in MAP_RESOLVERS:  # the ITRs may use either
        tables += w.lispctl(mr, "show", "referral-cache")
        for entry in w.lispctl_json(mr, "show", "referral-cache"):
            cached[(entry["eid-prefix"], entry["action"])] = entry
    ms_rlocs = {s.index: [plan.rloc[ms] for ms in s.map_servers] for s in plan.sites}
    expected = {}
    for site in plan.sites:
        for child_block, ms_block, prefix in (
            (site.child_block_v4, site.ms_block_v4, site.prefix_v4),
            (site.child_block_v6, site.ms_block_v6, site.prefix_v6),
        ):
            # root1 (first of the roots) referred the child's half, the child the Map-Server
            # block; the MS-ACK's registered prefix is kept as a referral to the same pair.
            expected[(iid_prefix(site.iid, child_block), "node-referral")] = (
                plan.rloc[ROOTS[0]],
                [plan.referral(site.child)],
            )
            expected[(iid_prefix(site.iid, ms_block), "ms-referral")] = (
                plan.referral(site.child),
                ms_rlocs[site.index],
            )
            expected[(iid_prefix(site.iid, prefix), "ms-referral")] = (
                plan.rloc[site.map_servers[0]], ms_rlocs[site.index])  # fmt: skip
    got = {key: (e["learned-from"], e["referrals"]) for key, e in cached.items()}
    assert got == expected, tables
    for (prefix, action), (learned_from, _) in expected.items():
        assert re.search(
            rf"^\d+\s+{re.escape(prefix)}\s+{action}\s+\S+\s+{re.escape(learned_from)}\s",
            tables, re.M,
        ), tables  # fmt: skip
    assert all(e["ttl"] == 1440 for e in cached.values()), cached
    # One EID: the longest cached prefix holding it, the site's (from the MS-ACK); a
    # Map-Resolver that has none says so with exit status 1 and an empty list.
    for site in plan.sites:
        for addr, prefix in ((site.host_v4, site.prefix_v4), (site.host_v6, site.prefix_v6)):
            eid = f"[{site.iid}]{addr}"
            found = [
                entry
                for mr in MAP_RESOLVERS
                for entry in w.lispctl_json(mr, "show", "referral-cache", eid, codes=(0, 1))
            ]
            assert {e["eid-prefix"] for e in found} == {iid_prefix(site.iid, prefix)}, found


# -- 4. the internet: a delegation hole, natively forwarded through the PETR ----------------------


def test_a_non_eid_destination_is_a_delegation_hole_reached_through_the_petr(w: World) -> None:
    plan = w.plan
    proxy_before = stats(w, PXTR)["packets"]
    for site in (plan.site(1), plan.site(3)):  # one site per instance
        for dst in (INET_V4, INET_V6):
            # The root is authoritative for the whole family and delegated nothing around
            # the internet host: one step, the largest undelegated prefix holding it.
            hole = delegation_hole(dst, plan.root_delegations(site.iid))
            code, out = rig(w, site, ROOTS[0], f"[{site.iid}]{dst}")
            assert code == 0 and out["outcome"] == "delegation-hole", out
            [step] = out["steps"]
            assert step["node"] == plan.rloc[ROOTS[0]] and step["prefix"] == iid_prefix(
                site.iid, hole
            ), out
            assert step["referrals"] == [] and step["ttl"] == 15 and step["authoritative"], out
            # Through the Map-Resolver: natively-forward for the hole, so the ITR sends to the
            # PETR, which hands the packets to the internet; the replies come back through
            # the PITR side of the same node, which resolves the site through DDT as well.
            assert w.lab.ping(site.host, dst, count=3, wait=4.0), f"{site.host} -> {dst}"
            entry = learned(w, site.xtr).get((site.iid, hole))
            assert entry is not None, learned(w, site.xtr)
            assert entry["action"] == "native-forward" and entry["rlocs"] == [], entry
            assert 15 * 60 - 30 <= entry["ttl"] <= 15 * 60, entry
    proxy = stats(w, PXTR)["packets"]
    for counter in ("petr.decap.packets", "pitr.encap.packets"):
        assert proxy.get(counter, 0) >= proxy_before.get(counter, 0) + 12, (counter, proxy)
    assert learned(w, PXTR), "the PITR resolved nothing"

    # The internet's first packet to a site, caches cold: the PITR holds it while it walks
    # the tree for the site, the site's ITR holds the answer while it walks for the hole.
    clear_caches(w)
    for site in plan.sites:
        for addr in (site.host_v4, site.host_v6):
            assert w.lab.ping(INET, addr, count=1, wait=4.0), f"first ping {INET} -> {addr}"
    pitr = learned(w, PXTR)
    for site in plan.sites:
        for prefix in site.prefixes():
            assert [r["address"] for r in pitr[(site.iid, prefix)]["rlocs"]] == [site.rloc]

    # Another instance's EID-prefix is no EID in this one: the roots delegated instance 7's
    # blocks only, so [7] of instance 0's site is a hole too (the largest one without them).
    site1, site3 = plan.site(1), plan.site(3)
    hole = delegation_hole(site1.host_v4, plan.root_delegations(site3.iid))
    code, out = rig(w, site3, ROOTS[1], f"[{site3.iid}]{site1.host_v4}")
    assert code == 0 and out["outcome"] == "delegation-hole", out
    assert [s["prefix"] for s in out["steps"]] == [iid_prefix(site3.iid, hole)], out


# -- a configured site nobody registers: MS-NOT-REGISTERED from both Map-Servers ---------------


def test_an_unregistered_site_is_ms_not_registered_and_the_itr_gets_send_map_request(
    w: World,
) -> None:
    plan = w.plan
    site1 = plan.site(1)  # instance 0, as the silent site
    _, _, iid, *prefixes = SILENT_SITE
    before = ddt_counters(w, MAP_RESOLVERS)
    for prefix in prefixes:
        eid = str(ipaddress.ip_network(prefix).network_address + 2)
        code, out = rig(w, site1, ROOTS[0], f"[{iid}]{eid}")
        assert code == 0 and out["outcome"] == "ms-not-registered", out
        steps = out["steps"]
        assert [s["action"] for s in steps] == ["node-referral", "ms-referral", "ms-not-registered"]
        assert steps[-1]["prefix"] == iid_prefix(iid, prefix) and steps[-1]["ttl"] == 1, out
        assert out["map_reply"] is None, out
        # Through the Map-Resolver: ms3 and then ms4 say not registered; the ITR gets a
        # negative Map-Reply send-map-request for the site's prefix, for a minute.
        assert not w.lab.ping(site1.host, eid, count=1, wait=2.0)
        entry = wait_for(
            f"negative entry for {prefix} at {site1.xtr}",
            lambda prefix=prefix: learned(w, site1.xtr).get((iid, prefix)),  # type: ignore[misc]
        )
        assert entry["action"] == "send-map-request" and entry["rlocs"] == [], entry
        assert 0 < entry["ttl"] <= 60, entry
    delta = ddt_counters(w, MAP_RESOLVERS) - before
    assert delta["received-ms-not-registered"] >= 4 and delta["not-registered"] >= 2, delta


# -- 5. counters ----------------------------------------------------------------------------------


def ddt_counters(w: World, nodes: tuple[str, ...]) -> Counter[str]:
    """The ``ddt`` section of ``lispctl show stats`` summed over ``nodes``."""
    total: Counter[str] = Counter()
    for node in nodes:
        total.update(stats(w, node).get("ddt", {}))
    return total


def test_ddt_counters_on_the_map_resolvers_and_the_ddt_nodes(w: World) -> None:
    plan = w.plan
    site1, site2 = plan.site(1), plan.site(2)
    groups = {
        "mr": MAP_RESOLVERS,
        "roots": ROOTS,
        "ddt1": ("ddt1",),
        "ddt2": ("ddt2",),
        "ms12": site1.map_servers,
        "ms34": site2.map_servers,
    }
    before = {g: ddt_counters(w, nodes) for g, nodes in groups.items()}
    clear_caches(w)
    # h1 -> h2 and h2's answer: two walks, root -> child -> Map-Server, one per direction.
    assert w.lab.ping(site1.host, site2.host_v4, count=1, wait=4.0)
    delta = {g: ddt_counters(w, nodes) - before[g] for g, nodes in groups.items()}
    mr = delta["mr"]
    assert mr["resolutions"] >= 2 and mr["answered"] >= 2, mr
    for action in ("node-referral", "ms-referral", "ms-ack"):
        assert mr[f"received-{action}"] >= 2, (action, mr)
    assert mr["referrals-received"] >= 6 and mr["requests-sent"] >= 6, mr
    assert delta["roots"]["sent-node-referral"] >= 2, delta["roots"]
    assert delta["roots"]["referrals-sent"] >= 2, delta["roots"]
    for child in CHILDREN:
        assert delta[child]["sent-ms-referral"] >= 1, (child, delta[child])
        assert delta[child]["referrals-sent"] >= 1, (child, delta[child])
    for pair in ("ms12", "ms34"):
        assert delta[pair]["sent-ms-ack"] >= 1, (pair, delta[pair])
    # The text table has the section, and a node without a DDT role has none.
    text = w.lispctl(MAP_RESOLVERS[0], "show", "stats")
    assert "LISP-DDT" in text and re.search(r"^referrals-received\s+\d+$", text, re.M), text
    assert "ddt" not in stats(w, site1.xtr) and "LISP-DDT" not in w.lispctl(
        site1.xtr, "show", "stats"
    )


# -- reload: a root's delegations change in place ------------------------------------------------


def test_a_reloaded_root_answers_from_its_new_delegations(w: World) -> None:
    plan = w.plan
    site1, site2 = plan.site(1), plan.site(2)
    root = ROOTS[0]
    daemon = w.daemons[root]
    original = daemon.config_path.read_text()
    doc = root_doc(plan, root, w.sock(root))
    doc["ddt-delegation"] = [
        d for d in doc["ddt-delegation"]
        if (d["instance-id"], d["eid-prefix"]) != (site2.iid, site2.child_block_v4)
    ]  # fmt: skip
    try:
        daemon.config_path.write_text(configs.toml(doc))
        assert "reloaded" in w.lispctl(root, "reload")
        # ddt2's IPv4 half of instance 0 is now undelegated at root1: a hole of that half.
        code, out = rig(w, site1, root, f"[{site2.iid}]{site2.host_v4}")
        assert code == 0 and out["outcome"] == "delegation-hole", out
        assert [s["prefix"] for s in out["steps"]] == [
            iid_prefix(site2.iid, site2.child_block_v4)
        ], out
        # root2, unchanged, still refers it; root1's other delegations stand.
        code, out = rig(w, site1, ROOTS[1], f"[{site2.iid}]{site2.host_v4}")
        assert code == 0 and out["outcome"] == "ms-ack", out
        code, out = rig(w, site2, root, f"[{site1.iid}]{site1.host_v4}")
        assert code == 0 and out["outcome"] == "ms-ack", out
    finally:
        daemon.config_path.write_text(original)
        w.lispctl(root, "reload")
    code, out = rig(w, site1, root, f"[{site2.iid}]{site2.host_v4}")
    assert code == 0 and out["outcome"] == "ms-ack", out


# -- 3. failure: a root and a Map-Server die ------------------------------------------------------


def test_a_dead_root_and_a_dead_map_server_are_walked_around(w: World) -> None:
    plan = w.plan
    site1, site2, site3, site4 = plan.sites
    dead_root, live_root = ROOTS
    dead_ms, live_ms = site1.map_servers
    acks_before = ddt_counters(w, (live_ms,))["sent-ms-ack"]
    for node in (dead_root, dead_ms):
        common.sigkill(w.daemons[node])
        w.killed.add(node)
    try:
        clear_caches(w)
        # h2 -> h1: root1 is asked first and stays silent, root2 answers; ddt1 refers to ms1
        # (dead) and ms2, and ms2 forwards the request to xtr1.  The first ping comes back
        # (the ITR holds it meanwhile), at least two request timeouts late.
        before = ddt_counters(w, MAP_RESOLVERS)
        rtt = common.ping_rtt(w.lab, site2.host, site1.host_v4, wait=6.0)
        assert rtt is not None, f"first ping {site2.host} -> {site1.host_v4} lost"
        assert rtt >= 2 * REQUEST_TIMEOUT, rtt
        assert (ddt_counters(w, MAP_RESOLVERS) - before)["timeouts"] >= 2
        assert w.lab.ping(site2.host, site1.host_v6, count=1, wait=6.0)
        # The Map-Resolvers now ask the nodes that timed out last: h4 -> h3 in instance 7
        # (other walks: root, ddt1, the same pair of Map-Servers) wait on nobody.  (Walks
        # still under way first end: the ITR asked the other Map-Resolver too after its
        # 1 s retry interval, and that walk went through both dead nodes as well.)
        wait_for(
            "no DDT walk under way",
            lambda: all(stats(w, mr)["ddt"]["pending"] == 0 for mr in MAP_RESOLVERS),
        )
        before = ddt_counters(w, MAP_RESOLVERS)
        for addr in (site3.host_v4, site3.host_v6):
            assert w.lab.ping(site4.host, addr, count=1, wait=6.0), f"{site4.host} -> {addr}"
        delta = ddt_counters(w, MAP_RESOLVERS) - before
        assert delta["timeouts"] == 0 and delta["answered"] >= 2, delta
        assert ddt_counters(w, (live_ms,))["sent-ms-ack"] >= acks_before + 4
        for mr in MAP_RESOLVERS:
            for entry in w.lispctl_json(mr, "show", "referral-cache"):
                assert entry["learned-from"] not in (plan.rloc[dead_root], plan.rloc[dead_ms])
                if entry["action"] == "node-referral":
                    assert entry["learned-from"] == plan.rloc[live_root], entry
    finally:
        docs = configs_of(plan, w.sock)
        for node in sorted(w.killed):
            w.start(node, docs[node])
        wait_for(
            f"{dead_ms} has its sites again",
            lambda: w.registered(dead_ms) == w.expected_at(dead_ms),
            timeout=20,
        )


# -- load: many ITRs behind one Map-Resolver ------------------------------------------------------

BURST_ITRS = ("xtr1", "xtr3", "xtr4", PXTR)
BURST_COUNT, BURST_RATE = 150, 100.0  # per ITR address: what one lispd ITR sends at most


def test_many_itrs_resolving_at_their_own_rate_through_one_map_resolver_are_answered(
    w: World,
) -> None:
    """Four ITR addresses, each at 100 Map-Requests a second (a lispd ITR's most, and within
    the Map-Resolver's per-ITR limit), for site 2 through mr1, whose referral cache already
    leads straight to ms3/ms4: the DDT path loses none of them.

    The Map-Servers must drop none of the Map-Resolver's DDT requests and acknowledge every one:
    before ``[ddt] answer-rate`` the Map-Servers answered 100 a second per source, and a
    Map-Resolver is one source for all its ITRs (this test saw ms3/ms4 drop 185 of these 600 as
    ``ddt-request-rate-limited``).  The ETR answers each ITR within its own budget (10 a second
    and ITR-RLOC, bursts of 20): it used to key that budget on the request's source, which for a
    forwarded request is the Map-Server, the same for every ITR (35 of 600 answered then)."""
    plan = w.plan
    site1, site2 = plan.site(1), plan.site(2)
    mr = MAP_RESOLVERS[0]
    assert w.lab.ping(site1.host, site2.host_v4, count=1, wait=4.0)  # a warm referral cache
    ms_drops = {
        ms: stats(w, ms)["drops"].get("ddt-request-rate-limited", 0) for ms in site2.map_servers
    }
    answered_before = stats(w, mr)["ddt"].get("answered", 0)
    senders = []
    started = time.monotonic()
    for node in BURST_ITRS:
        argv = [sys.executable, "-m", "tests.netns.ddt_burst", plan.rloc[mr], plan.rloc[node]]
        argv += [site2.prefix_v4, str(BURST_COUNT), str(BURST_RATE)]
        env = {**os.environ, "PYTHONPATH": REPO}
        senders.append(
            w.lab.popen(node, argv, stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
        )
    replies = []
    for sender in senders:
        out, _ = sender.communicate(timeout=30)
        match = re.fullmatch(r"sent (\d+) replies (\d+)\n", out)
        assert match and int(match.group(1)) == BURST_COUNT, out
        replies.append(int(match.group(2)))
    elapsed = time.monotonic() - started
    dropped = {
        ms: stats(w, ms)["drops"].get("ddt-request-rate-limited", 0) - ms_drops[ms]
        for ms in site2.map_servers
    }
    assert not any(dropped.values()), dropped
    total = BURST_COUNT * len(BURST_ITRS)
    acknowledged = wait_for(
        "every DDT request acknowledged",
        lambda: (n := stats(w, mr)["ddt"].get("answered", 0) - answered_before) >= total and n,
    )
    assert acknowledged == total
    # Each ITR got at least its own burst from the ETR, and none more than its budget allows.
    budget = 20 + 10 * elapsed
    assert all(20 <= n <= budget + 1 for n in replies), (replies, elapsed)
