"""ltr through real namespaces: the seed "A LISP TraceRoute Tool" run in the NAT lab.

lispd.lab.nat_topology(extra_hops=2): gxtr1 behind nat1, xtr2 behind nat2 with two more routers
between the core and nat2, the RTR rtr1 behind a 1:1 NAT.  ``ltr`` on gxtr1 traces to the EID
behind xtr2: both directions come back with four records each (ITR encap, RTR decap, RTR encap,
ETR decap), the addresses as each node saw them (after NAT), recent RTTs and hop counts equal
to the underlay routers really crossed.  Traces to a non-EID and to an EID the RTR has no
mapping for stop with the seed's reasons.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass

import pytest

from tests.netns.common import REPO
from tests.netns.test_rtr_nat import World, world

pytestmark = pytest.mark.netns

LTR = [sys.executable, "-m", "lispd.cli.ltr"]
HOP = re.compile(
    r"  (?P<n>ITR|RTR|ETR) (?P<kind>encap|decap): (?P<sr>\S+) -> (?P<dr>.+?), "
    r"ts (?P<ts>[0-9.]+), node (?P<hn>\S+)$"
)
STATS = re.compile(r"    recent-rtts \[(?P<rtts>[^\]]*)\], recent-hops \[(?P<hops>[^\]]*)\]$")


@dataclass
class Hop:
    n: str
    kind: str
    sr: str
    dr: str
    ts: float
    hn: str
    rtts: list[str] | None = None
    hops: list[str] | None = None


def parse(out: str) -> dict[str, list[Hop]]:
    """ltr's report as {"Path from X to Y": [hops]}."""
    paths: dict[str, list[Hop]] = {}
    current: list[Hop] | None = None
    for line in out.splitlines():
        if line.startswith("Path from "):
            current = paths.setdefault(line.rstrip(":"), [])
        elif (m := HOP.match(line)) is not None:
            assert current is not None, line
            current.append(Hop(m["n"], m["kind"], m["sr"], m["dr"], float(m["ts"]), m["hn"]))
        elif (m := STATS.match(line)) is not None:
            assert current, line
            current[-1].rtts = [x.strip() for x in m["rtts"].split(",")]
            current[-1].hops = [x.strip() for x in m["hops"].split(",")]
    return paths


def ltr(w: World, *args: str, check: bool = True) -> tuple[int, str]:
    gxtr1 = w.plan.sites[0].xtr
    proc = w.lab.run(
        gxtr1, *LTR, "-c", w.config_paths[gxtr1], *args, check=False, timeout=30,
        env={"PYTHONPATH": REPO},
    )  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.returncode, proc.stdout + proc.stderr


def wait_probed(w: World) -> None:
    """Until gxtr1 and rtr1 each have three probe answers from the RLOCs the trace uses."""
    deadline = time.monotonic() + 20
    while True:
        rows = w.ask(w.plan.sites[0].xtr, "rlocs") + w.ask(w.plan.rtr1, "rlocs")
        if len(rows) >= 2 and all(len(r["rtts"]) >= 3 for r in rows):
            return
        assert time.monotonic() < deadline, rows
        time.sleep(0.2)


def test_round_trip_trace_through_nats_and_the_rtr() -> None:
    with world(extra_hops=2, probe_interval=0.3) as w:
        plan, lab = w.plan, w.lab
        s1, s2 = plan.sites
        assert lab.ping(s1.host, s2.host_v4, count=2, wait=3.0)  # the RTR learns site 2
        wait_probed(w)
        _, out = ltr(w, s2.host_v4)
        assert f"Send NAT-traversal LISP-Trace to RTR {plan.rtr1_public_v4} ..." in out, out
        src = f"[0]{s1.gateway_v4}"
        dst = f"[0]{s2.host_v4}"
        assert f"Send round-trip LISP-Trace between EIDs {src} and {dst} ..." in out, out
        assert re.search(r"Received reply from \S+, rtt [0-9]+\.[0-9]{3} secs", out), out
        paths = parse(out)
        forward, back = paths[f"Path from {src} to {dst}"], paths[f"Path from {dst} to {src}"]
        roles = [("ITR", "encap"), ("RTR", "decap"), ("RTR", "encap"), ("ETR", "decap")]
        assert [(h.n, h.kind) for h in forward] == roles, out
        assert [(h.n, h.kind) for h in back] == roles, out
        assert [h.hn for h in forward] == [s1.xtr, plan.rtr1, plan.rtr1, s2.xtr], out
        assert [h.hn for h in back] == [s2.xtr, plan.rtr1, plan.rtr1, s1.xtr], out
        for path in (forward, back):
            assert [h.ts for h in path] == sorted(h.ts for h in path), out

        rtr_priv, rtr_pub = plan.rtr1_private_v4, plan.rtr1_public_v4
        ports = {b["address"]: b["port"] for b in w.ask(plan.rtr1, "rtr")}
        nat1, nat2 = plan.nat1_public_v4, plan.nat2_public_v4
        itr, rtr_in, rtr_out, etr = forward
        # The ITR sends from its private RLOC (and the client's port) to the RTR's public one.
        assert itr.sr.startswith(f"{s1.rloc}:") and itr.dr == rtr_pub, out
        # The RTR sees it from nat1's translated address and port, arriving at its private one.
        assert itr.sr != rtr_in.sr and rtr_in.sr == f"{nat1}:{ports[nat1]}", out
        assert rtr_in.dr == rtr_priv, out
        # ... and sends to nat2's translated port; xtr2 sees it from the RTR's public address.
        assert rtr_out.sr == rtr_priv and rtr_out.dr == f"{nat2}:{ports[nat2]}", out
        assert etr.sr == rtr_pub and etr.dr == s2.rloc, out
        itr, rtr_in, rtr_out, etr = back
        assert itr.sr == s2.rloc and itr.dr == rtr_pub, out
        assert rtr_in.sr == f"{nat2}:{ports[nat2]}" and rtr_out.dr == f"{nat1}:{ports[nat1]}", out
        assert etr.sr == rtr_pub and etr.dr == s1.rloc, out

        # Recent RTTs and hops on every encap record: the underlay routers really crossed.
        # gxtr1 -> rtr1: nat1, core, cloudnat; rtr1 -> xtr2: cloudnat, core, hop1, hop2, nat2.
        expected_hops = {
            (s1.xtr, "forward"): "3/3",
            (plan.rtr1, "forward"): "5/5",
            (s2.xtr, "back"): "5/5",
            (plan.rtr1, "back"): "3/3",
        }
        for direction, path in (("forward", forward), ("back", back)):
            for hop in path:
                if hop.kind != "encap":
                    assert hop.rtts is None, out
                    continue
                assert hop.rtts is not None and hop.hops is not None, out
                assert len(hop.rtts) == 3 and all(float(r) >= 0 for r in hop.rtts), out
                assert hop.hops == [expected_hops[hop.hn, direction]] * 3, out


def test_traces_that_stop_say_where_and_why() -> None:
    with world(probe_interval=0.3) as w:
        plan = w.plan
        s2 = plan.sites[1]
        # An EID the RTR has no mapping for yet: it asks the mapping system, and says so.
        code, out = ltr(w, s2.host_v6, check=False)
        assert code == 2, out
        lines = [h for hops in parse(out).values() for h in hops]
        assert (lines[-1].n, lines[-1].hn, lines[-1].dr) == (
            "RTR",
            plan.rtr1,
            "? (map-cache miss)",
        ), out
        # Asked again, the mapping is there: the trace goes through.
        deadline = time.monotonic() + 10
        while (code := ltr(w, s2.host_v6, check=False)[0]) != 0:
            assert time.monotonic() < deadline, "no round trip after the miss"
            time.sleep(0.5)
        # Not an EID: the mapping system says so (once the RTR has asked) and it has no PETR.
        deadline = time.monotonic() + 10
        while True:
            code, out = ltr(w, "198.51.100.200", check=False)
            assert code == 2, out
            last = [h for hops in parse(out).values() for h in hops][-1]
            if last.dr == "? (not an EID)":
                break
            assert last.dr == "? (map-cache miss)" and time.monotonic() < deadline, out
            time.sleep(0.5)
        assert (last.n, last.hn) == ("RTR", plan.rtr1), out
