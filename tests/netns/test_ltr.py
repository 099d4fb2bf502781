"""ltr through real namespaces: the seed "A LISP TraceRoute Tool" run in the NAT lab.

lispd.lab.nat_topology(extra_hops=2): gxtr1 behind nat1, xtr2 behind nat2 with two more routers
between the core and nat2, the RTR rtr1 behind a 1:1 NAT.  ``ltr`` on gxtr1 traces to the EID
behind xtr2: both directions come back with four records each (ITR encap, RTR decap, RTR encap,
ETR decap), the addresses as each node saw them (after NAT), recent RTTs and hop counts equal
to the underlay routers really crossed.  A trace whose mapping the RTR cannot get stops with
the seed's "map-cache miss".

The seed world (lispd.lab.world: the same NAT lab with the outside world, the xTRs resolving
0.0.0.0/0 and ::/0 as the seed's do, rtr1 with ms as its PETR): ``ltr`` from gxtr1 to a site
EID, to a non-EID, to an unregistered address inside the EID space and to a site EID right
after ``lispctl clear map-cache`` on rtr1 prints, each on its first try, the seed's transcripts
line for line (addresses, ports, times and RTTs matched by patterns).
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from lispd.api.client import request
from lispd.lab import Lab, NatPlan
from lispd.lab.process import DaemonHandle
from lispd.lab.world import seed_plan, socket_path, start_daemons, wait_converged
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
        # The RTR sees it from nat1's translated address, arriving at its private one (the
        # seed prints no port on decap sources) ...
        assert rtr_in.sr == nat1 and rtr_in.dr == rtr_priv, out
        # ... and sends it from its public address (what xtr2 sees, the seed's "RTR encap"
        # source) to nat2's translated port.
        assert rtr_out.sr == rtr_pub and rtr_out.dr == f"{nat2}:{ports[nat2]}", out
        assert etr.sr == rtr_pub and etr.dr == s2.rloc, out
        itr, rtr_in, rtr_out, etr = back
        assert itr.sr == s2.rloc and itr.dr == rtr_pub, out
        assert rtr_in.sr == nat2 and rtr_out.dr == f"{nat1}:{ports[nat1]}", out
        assert rtr_out.sr == rtr_pub and etr.sr == rtr_pub and etr.dr == s1.rloc, out
        # --json keeps what the printed lines leave out: the NATs' ports the RTR saw.
        _, raw = ltr(w, "--json", s2.host_v4)
        body = json.loads(raw[raw.index("[{") : raw.rindex("}]") + 2])
        assert [body[0]["paths"][1]["sr"], body[1]["paths"][1]["sr"]] == [
            f"{nat1}:{ports[nat1]}",
            f"{nat2}:{ports[nat2]}",
        ], raw

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


def test_a_mapping_that_does_not_come_stops_the_trace_map_cache_miss() -> None:
    """rtr1 cannot reach its Map-Resolver: it holds the trace ``TRACE_HOLD`` seconds, then
    answers it ``? (map-cache miss)`` from its public address; with the Map-Resolver back
    the next trace goes through."""
    with world(probe_interval=0.3) as w:
        plan, lab = w.plan, w.lab
        s2 = plan.sites[1]
        blackhole = ["ip", "route", "add", "blackhole", f"{plan.ms_rloc_v4}/32"]
        lab.run(plan.rtr1, *blackhole)
        start = time.monotonic()
        code, out = ltr(w, s2.host_v6, check=False)
        took = time.monotonic() - start
        print(out)
        assert code == 2, out
        last = [h for hops in parse(out).values() for h in hops][-1]
        assert (last.n, last.kind, last.hn) == ("RTR", "encap", plan.rtr1), out
        assert (last.sr, last.dr) == (plan.rtr1_public_v4, "? (map-cache miss)"), out
        assert 1.5 < took < 5, f"answered after {took:.1f} s"  # held, then answered
        lab.run(plan.rtr1, "ip", "route", "del", "blackhole", f"{plan.ms_rloc_v4}/32")
        deadline = time.monotonic() + 15  # the resolver's next retransmission gets through
        while (code := ltr(w, s2.host_v6, check=False)[0]) != 0:
            assert time.monotonic() < deadline, "no round trip with the Map-Resolver back"
            time.sleep(0.5)


# --------------------------------------------------------------------------------------------
# The seed world: the seed's transcripts, line for line, each on its first try

# Patterns for what changes from run to run; everything else in a transcript is literal.
_PATTERNS = {
    "{TS}": r"[0-9]+(?:\.[0-9]+)?",
    "{RTT}": r"[0-9]+\.[0-9]{3}",
    "{PORT}": r"[0-9]{1,5}",
    "{RTTS}": r"(?:[0-9.]+|\?)(?:, (?:[0-9.]+|\?)){2}",
    "{HOPS}": r"[0-9?]+/[0-9?]+(?:, [0-9?]+/[0-9?]+){2}",
}
_PLACEHOLDER = re.compile("|".join(re.escape(k) for k in _PATTERNS))


def transcript(template: str) -> re.Pattern[str]:
    """``template`` (the exact text, with the placeholders of ``_PATTERNS``) as a regex."""
    parts: list[str] = []
    last = 0
    for m in _PLACEHOLDER.finditer(template):
        parts += [re.escape(template[last : m.start()]), _PATTERNS[m.group()]]
        last = m.end()
    parts.append(re.escape(template[last:]))
    return re.compile("".join(parts))


def round_trip_template(p: NatPlan, dst: str) -> str:
    """The seed's ``ltr 2.2.2.2`` in the seed world: gxtr1 to ``dst`` behind xtr2 and back."""
    src, s1, s2 = p.gxtr1_eid_v4, p.sites[0], p.sites[1]
    pub, priv, nat1, nat2 = p.rtr1_public_v4, p.rtr1_private_v4, p.nat1_public_v4, p.nat2_public_v4
    stats = "    recent-rtts [{RTTS}], recent-hops [{HOPS}]\n"
    return (
        f"Send NAT-traversal LISP-Trace to RTR {pub} ...\n"
        f"Send round-trip LISP-Trace between EIDs [0]{src} and [0]{dst} ...\n"
        f"Received reply from {dst}, rtt {{RTT}} secs\n"
        "\n"
        f"Path from [0]{src} to [0]{dst}:\n"
        f"  ITR encap: {s1.rloc}:{{PORT}} -> {pub}, ts {{TS}}, node {s1.xtr}\n"
        + stats
        + f"  RTR decap: {nat1} -> {priv}, ts {{TS}}, node {p.rtr1}\n"
        f"  RTR encap: {pub} -> {nat2}:{{PORT}}, ts {{TS}}, node {p.rtr1}\n"
        + stats
        + f"  ETR decap: {pub} -> {s2.rloc}, ts {{TS}}, node {s2.xtr}\n"
        "\n"
        f"Path from [0]{dst} to [0]{src}:\n"
        f"  ITR encap: {s2.rloc} -> {pub}, ts {{TS}}, node {s2.xtr}\n"
        + stats
        + f"  RTR decap: {nat2} -> {priv}, ts {{TS}}, node {p.rtr1}\n"
        f"  RTR encap: {pub} -> {nat1}:{{PORT}}, ts {{TS}}, node {p.rtr1}\n"
        + stats
        + f"  ETR decap: {pub} -> {s1.rloc}, ts {{TS}}, node {s1.xtr}\n"
    )


def stopped_template(p: NatPlan, dst: str, reason: str) -> str:
    """The seed's stopped traces ("RTR map-cache miss", ``ltr 8.8.8.8``) in the seed world."""
    src, s1 = p.gxtr1_eid_v4, p.sites[0]
    pub, priv, nat1 = p.rtr1_public_v4, p.rtr1_private_v4, p.nat1_public_v4
    return (
        f"Send NAT-traversal LISP-Trace to RTR {pub} ...\n"
        f"Send round-trip LISP-Trace between EIDs [0]{src} and [0]{dst} ...\n"
        f"Received reply from {pub}, rtt {{RTT}} secs\n"
        "\n"
        f"Path from [0]{src} to [0]{dst}:\n"
        f"  ITR encap: {s1.rloc}:{{PORT}} -> {pub}, ts {{TS}}, node {s1.xtr}\n"
        "    recent-rtts [{RTTS}], recent-hops [{HOPS}]\n"
        f"  RTR decap: {nat1} -> {priv}, ts {{TS}}, node {p.rtr1}\n"
        f"  RTR encap: {pub} -> ? ({reason}), ts {{TS}}, node {p.rtr1}\n"
    )


@dataclass
class Seed:
    lab: Lab
    plan: NatPlan
    daemons: dict[str, DaemonHandle]

    def ltr(self, dst: str) -> tuple[int, str, str]:
        """``ltr dst`` on gxtr1 (its own lispd.conf, the default timeout): exit status,
        stdout, stderr; printed for the record (``pytest -s``)."""
        conf = str(self.daemons[self.plan.gxtr1].config_path)
        proc = self.lab.run(
            self.plan.gxtr1, *LTR, "-c", conf, dst, check=False, timeout=30,
            env={"PYTHONPATH": REPO},
        )  # fmt: skip
        print(f"gxtr1$ ltr {dst}\n{proc.stdout}{proc.stderr}")
        return proc.returncode, proc.stdout, proc.stderr

    def ask(self, node: str, command: str) -> Any:
        """The answer of ``node``'s control socket to ``command``."""
        return request(str(socket_path(self.lab.workdir, node)), command)


@contextlib.contextmanager
def seed_world() -> Iterator[Seed]:
    """``lispd-lab up``'s world: every daemon started and converged."""
    plan = seed_plan()
    with Lab(plan.topology) as lab:
        daemons = start_daemons(lab, plan)
        try:
            wait_converged(plan, lab.workdir)
            yield Seed(lab, plan, daemons)
        finally:
            for daemon in daemons.values():
                assert daemon.stop() == 0, daemon.log_tail()


def test_seed_transcripts_on_the_first_try() -> None:
    with seed_world() as seed:
        p = seed.plan
        h2 = p.sites[1].host_v4
        # A site EID: the whole round trip, though rtr1 had to resolve both sites first.
        code, out, err = seed.ltr(h2)
        assert (code, err) == (0, ""), out + err
        assert transcript(round_trip_template(p, h2)).fullmatch(out), out

        # Not an EID (no site registers 203.0.113.0/24): rtr1 gets a negative Map-Reply and
        # says so, though it has ms as PETR for the data.
        outside = "203.0.113.77"
        code, out, err = seed.ltr(outside)
        assert code == 2, out + err
        assert transcript(stopped_template(p, outside, "not an EID")).fullmatch(out), out
        assert err == f"ltr: trace stopped at RTR {p.rtr1}: ? (not an EID)\n"

        # Inside the EID space (gxtr1 routes 198.51.100.0/24 like everything) but registered
        # by no site: the same answer.
        unregistered = "198.51.100.200"
        code, out, err = seed.ltr(unregistered)
        assert code == 2, out + err
        assert transcript(stopped_template(p, unregistered, "not an EID")).fullmatch(out), out

        # rtr1 forgets every mapping: the next trace waits while rtr1 resolves again and
        # comes back whole (or, resolution too slow, with the seed's map-cache miss lines).
        assert seed.ask(p.rtr1, "clear-map-cache")["cleared"] >= 2  # both sites at least
        assert seed.ask(p.rtr1, "map-cache") == []
        code, out, err = seed.ltr(h2)
        whole = transcript(round_trip_template(p, h2)).fullmatch(out)
        miss = transcript(stopped_template(p, h2, "map-cache miss")).fullmatch(out)
        assert whole or miss, out + err
        assert code == (0 if whole else 2), out + err
