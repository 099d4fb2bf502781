"""Data-plane throughput through real namespaces: lispd next to a plain routed path.

    sudo .venv/bin/python -m benchmarks.dataplane [--seconds 5] [--runs 3] [--json FILE]
                                                  [--scenario kernel|lispd|rtr ...]

Topology: host A - xTR1 - R - xTR2 - host B (lispd.lab.two_site_topology).  Measured in the
same run, one after the other on the same namespaces:

* ``kernel-routed``: xTR1, R and xTR2 forward natively (static routes between the sites);
* ``lispd``: the routes removed, lispd ITR+ETR on both xTRs with static map-caches pointing
  at each other (IPv4 over IPv4); R routes the outer packets;
* ``lispd-via-rtr``: as ``lispd``, but each xTR's map-cache sends the other site to R's RLOC
  (192.0.2.1), where lispd runs with ``roles = ["rtr"]`` (no TUN) and a static map-cache that
  sends each site to its xTR: every packet, both ways, is decapsulated and encapsulated again
  at R (ITR -> RTR -> ETR).  After every run the RTR's ``rtr.reencap.packets`` counter is
  checked against the xTRs' counters and iperf3's own count; a run that did not go through
  the RTR stops the benchmark with an error.

``--scenario`` (repeatable) picks a subset; all three by default.  For each: a single TCP
flow (iperf3, Gbit/s received) and 64-byte UDP (iperf3 -u -l 64 -b 0, packets/s received).
Medians of ``--runs`` runs, their min-max, and the ratio to ``kernel-routed``; a table on
stdout, per-run progress on stderr, JSON (with every run) with ``--json``.  iperf3 alone
cannot offer much more than ~150-200 kpps of small UDP on this kind of machine, so the UDP
figure of the kernel path is bounded by the generator, not the path.

Each run also records the CPU time that processes outside the lab took meanwhile
(:mod:`benchmarks.cpuload`); a run where they took more than ``--max-other-cpu`` of one core
is repeated up to ``--retries`` times; if every attempt was disturbed, the least disturbed one
counts (flagged in the table and the JSON).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks.cpuload import OtherLoad, add_noise_arguments
from lispd.api.client import request
from lispd.lab import Lab, TwoSitePlan, two_site_topology

SCENARIOS = {"kernel": "kernel-routed", "lispd": "lispd", "rtr": "lispd-via-rtr"}
LABELS = {
    "kernel-routed": "kernel-routed",
    "lispd": "lispd ITR->ETR",
    "lispd-via-rtr": "lispd via RTR",
}
RATIO_KEYS = {"lispd": "ratio", "lispd-via-rtr": "ratio-via-rtr"}
# Packets that may be in flight or counted on one side only when the counters are read.
COUNTER_SLACK = 64


class CheckFailed(RuntimeError):
    """The traffic did not take the path the scenario is about."""


def lispd_config(
    plan: TwoSitePlan, me: int, via: str | None = None, sock: str = "", extra: str = ""
) -> str:
    """lispd.conf of xTR ``me`` (1 or 2) for the benchmark (IPv4 over IPv4).

    ``via``: the RLOC the other site is mapped to (default: the other xTR's);
    ``sock``: the control socket path ("" for none); ``extra`` is appended (e.g. a
    ``[dataplane]`` table).
    """
    mine = (plan.site_a_prefix_v4, plan.xtr1_rloc_v4) if me == 1 else (
        plan.site_b_prefix_v4, plan.xtr2_rloc_v4)  # fmt: skip
    peer = (plan.site_b_prefix_v4, plan.xtr2_rloc_v4) if me == 1 else (
        plan.site_a_prefix_v4, plan.xtr1_rloc_v4)  # fmt: skip
    return f"""
[daemon]
name = "xtr{me}"
roles = ["itr", "etr"]
log-level = "warning"
control-socket = "{sock}"
[underlay]
rlocs = ["{mine[1]}"]
[[database-mapping]]
eid-prefix = "{mine[0]}"
rlocs = [{{ address = "{mine[1]}" }}]
[[map-cache]]
eid-prefix = "{peer[0]}"
rlocs = [{{ address = "{via or peer[1]}" }}]
{extra}"""


def rtr_config(plan: TwoSitePlan, sock: str, extra: str = "") -> str:
    """lispd.conf of the RTR on R: RLOC 192.0.2.1, each site mapped to its xTR (static);
    ``extra`` is appended."""
    return f"""
[daemon]
name = "rtr"
roles = ["rtr"]
log-level = "warning"
control-socket = "{sock}"
[underlay]
rlocs = ["{plan.r_xtr1_v4}"]
[[map-cache]]
eid-prefix = "{plan.site_a_prefix_v4}"
rlocs = [{{ address = "{plan.xtr1_rloc_v4}" }}]
[[map-cache]]
eid-prefix = "{plan.site_b_prefix_v4}"
rlocs = [{{ address = "{plan.xtr2_rloc_v4}" }}]
{extra}"""


def iperf(lab: Lab, plan: TwoSitePlan, seconds: float, udp: bool) -> dict[str, Any]:
    """One iperf3 run from A to B: Gbit/s and packets/s received, the UDP datagrams sent and
    received, the TCP bytes received, and the CPU other processes took meanwhile."""
    server = lab.popen(
        plan.host_b,
        ["iperf3", "-s", "-1", "-B", plan.host_b_v4],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    argv = ["iperf3", "-c", plan.host_b_v4, "-t", str(seconds), "-J"]
    if udp:
        argv += ["-u", "-l", "64", "-b", "0"]
    load = OtherLoad(lab.namespaces())
    load.start()
    out = lab.run(plan.host_a, *argv, timeout=seconds + 30).stdout
    other = load.stop()
    server.wait(timeout=10)
    end = json.loads(out)["end"]
    if udp:
        s = end["sum"]
        received = s["packets"] - s["lost_packets"]
        return {"pps": received / s["seconds"], "gbps": s["bits_per_second"] / 1e9 * (
            received / max(s["packets"], 1)), "sent": s["packets"], "received": received,
            **other}  # fmt: skip
    s = end["sum_received"]
    return {"gbps": s["bits_per_second"] / 1e9, "pps": 0.0, "bytes": s["bytes"], **other}


def measure(
    lab: Lab,
    plan: TwoSitePlan,
    args: argparse.Namespace,
    name: str,
    check: Callable[[Callable[[], dict[str, Any]]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Medians (and min-max, and every run) of TCP Gbit/s and UDP-64 packets/s.

    ``check`` wraps each run (it gets the run as a callable and returns its result).
    """
    limit = args.max_other_cpu * args.seconds
    result: dict[str, Any] = {}
    for kind, udp, key, scale, unit in (
        ("tcp", False, "gbps", 1.0, "Gbit/s"),
        ("udp64", True, "pps", 1e-3, "kpps"),
    ):
        runs = []
        for k in range(args.runs):
            one = functools.partial(iperf, lab, plan, args.seconds, udp)
            attempts = []
            for attempt in range(args.retries + 1):
                r = check(one) if check is not None else one()
                r["disturbed"] = r["other_cpu_s"] > limit
                attempts.append(r)
                note = f"other processes {r['other_cpu_s']:.2f} cpu-s, steal {r['steal_s']:.2f} s"
                if r["disturbed"]:
                    note += f" DISTURBED (top: {r['top']})"
                print(
                    f"{name} {kind} run {k + 1}/{args.runs}: {r[key] * scale:.3f} {unit} ({note})",
                    file=sys.stderr,
                    flush=True,
                )
                if not r["disturbed"] or attempt == args.retries:
                    break
                print(f"{name} {kind} run {k + 1}: repeating", file=sys.stderr, flush=True)
            # still disturbed after the retries: keep the least disturbed attempt
            runs.append(min(attempts, key=lambda a: a["other_cpu_s"]))
        values = [r[key] for r in runs]
        stat = "tcp_gbps" if kind == "tcp" else "udp64_pps"
        result[stat] = statistics.median(values)
        result[f"{stat}_min"], result[f"{stat}_max"] = min(values), max(values)
        result[f"{kind}_runs"] = runs
    return result


def plain_routes(lab: Lab, plan: TwoSitePlan, action: str) -> None:
    """Add or delete the static routes that make the xTRs plain routers between the sites."""
    lab.run(plan.xtr1, "ip", "route", action, plan.site_b_prefix_v4, "via", plan.r_xtr1_v4)
    lab.run(plan.xtr2, "ip", "route", action, plan.site_a_prefix_v4, "via", plan.r_xtr2_v4)
    for prefix, via in ((plan.site_a_prefix_v4, plan.xtr1_rloc_v4),
                        (plan.site_b_prefix_v4, plan.xtr2_rloc_v4)):  # fmt: skip
        lab.run(plan.r, "ip", "route", action, prefix, "via", via)


class RtrCheck:
    """Checks, around each run, that the traffic went through the RTR on R.

    From the daemons' ``stats`` (control sockets): the RTR must have re-encapsulated at least
    as many packets as the two ETRs decapsulated (every packet reaching an ETR came from the
    RTR) and at most as many as the two ITRs encapsulated; for UDP at least as many as iperf3
    says B received; for TCP at least as many bytes as B received.
    """

    def __init__(self, socks: dict[str, str]) -> None:
        self.socks = socks  # node -> control socket: "xtr1", "rtr", "xtr2"
        self.totals: dict[str, int] = {}

    def _counters(self) -> dict[str, dict[str, int]]:
        return {node: request(sock, "stats")["packets"] for node, sock in self.socks.items()}

    def __call__(self, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        time.sleep(0.2)  # let the last packets of the previous run land
        before = self._counters()
        result = run()
        time.sleep(0.2)
        after = self._counters()
        counts = check_rtr_counters(before, after, result)
        for key, value in counts.items():
            self.totals[key] = self.totals.get(key, 0) + value
        result["counters"] = counts
        return result


def check_rtr_counters(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], result: dict[str, Any]
) -> dict[str, int]:
    """The checks of :class:`RtrCheck` on two samples of the ``packets`` counters of nodes
    "xtr1", "rtr" and "xtr2" taken around one run; ``result`` may hold the UDP datagrams
    (``received``) or TCP ``bytes`` B received.  Returns the deltas; raises
    :class:`CheckFailed` when the traffic did not go through the RTR."""

    def delta(node: str, key: str) -> int:
        return after[node].get(key, 0) - before[node].get(key, 0)

    reencap = delta("rtr", "rtr.reencap.packets")
    reencap_bytes = delta("rtr", "rtr.reencap.bytes")
    encap = delta("xtr1", "itr.encap.packets") + delta("xtr2", "itr.encap.packets")
    decap = delta("xtr1", "etr.decap.packets") + delta("xtr2", "etr.decap.packets")
    counts = {"rtr_reencap": reencap, "xtrs_encap": encap, "xtrs_decap": decap}
    problems = []
    if reencap <= 0:
        problems.append("the RTR re-encapsulated nothing")
    if decap > reencap + COUNTER_SLACK:
        problems.append(f"the ETRs decapsulated {decap} packets, more than the RTR relayed")
    if reencap > encap + COUNTER_SLACK:
        problems.append(f"the RTR relayed more than the ITRs encapsulated ({encap})")
    if "received" in result and reencap < result["received"]:
        problems.append(f"B received {result['received']} UDP datagrams, more than relayed")
    if "bytes" in result and reencap_bytes < result["bytes"]:
        problems.append(f"B received {result['bytes']} TCP bytes, the RTR {reencap_bytes}")
    if problems:
        raise CheckFailed(f"traffic did not go through the RTR: {'; '.join(problems)} {counts}")
    return counts


def run_scenarios(args: argparse.Namespace, wanted: list[str]) -> dict[str, Any]:
    """Build the lab once and measure the ``wanted`` scenarios (keys of SCENARIOS) in order."""
    plan = two_site_topology()
    results: dict[str, Any] = {}
    with Lab(plan.topology) as lab:
        sock = {n: str(lab.workdir / f"{n}.sock") for n in ("xtr1", "rtr", "xtr2")}
        if "kernel" in wanted:
            plain_routes(lab, plan, "add")
            results["kernel-routed"] = measure(lab, plan, args, "kernel-routed")
            plain_routes(lab, plan, "del")
        if "lispd" in wanted:
            daemons = [
                lab.start_lispd(plan.xtr1, lispd_config(plan, 1)),
                lab.start_lispd(plan.xtr2, lispd_config(plan, 2)),
            ]
            results["lispd"] = measure(lab, plan, args, "lispd")
            for d in daemons:
                d.stop()
        if "rtr" in wanted:
            rtr_rloc = plan.r_xtr1_v4
            daemons = [
                lab.start_lispd(plan.r, rtr_config(plan, sock["rtr"])),
                lab.start_lispd(plan.xtr1, lispd_config(plan, 1, rtr_rloc, sock["xtr1"])),
                lab.start_lispd(plan.xtr2, lispd_config(plan, 2, rtr_rloc, sock["xtr2"])),
            ]
            check = RtrCheck(sock)
            results["lispd-via-rtr"] = measure(lab, plan, args, "lispd-via-rtr", check)
            results["lispd-via-rtr"]["counters"] = check.totals
            results["lispd-via-rtr"]["rtr_drops"] = request(sock["rtr"], "stats")["drops"]
            for d in daemons:
                d.stop()
    return results


def fmt_range(r: dict[str, Any], stat: str, scale: float, digits: int) -> str:
    """``min-max`` of a figure, and the spread as a percentage of the median."""
    lo, hi, med = r[f"{stat}_min"] * scale, r[f"{stat}_max"] * scale, r[stat] * scale
    spread = 100 * (hi - lo) / med if med else 0.0
    return f"{lo:.{digits}f}-{hi:.{digits}f} ({spread:.0f}%)"


def print_table(results: dict[str, Any]) -> None:
    """Medians, ratios to the kernel path and run-to-run spread, one row per path."""
    header = f"{'path':<16}{'TCP Gbit/s':>11}{'x kernel':>10}{'UDP-64 kpps':>13}{'x kernel':>10}"
    print(f"{header}   {'TCP min-max (spread)':<24}UDP kpps min-max (spread)")
    kernel = results.get("kernel-routed")
    for name, label in LABELS.items():
        r = results.get(name)
        if r is None:
            continue
        if kernel is not None:
            tcp_x = f"{r['tcp_gbps'] / kernel['tcp_gbps']:.3f}"
            udp_x = f"{r['udp64_pps'] / kernel['udp64_pps']:.3f}"
        else:
            tcp_x = udp_x = "-"
        row = f"{label:<16}{r['tcp_gbps']:>11.3f}{tcp_x:>10}{r['udp64_pps'] / 1e3:>13.1f}"
        row += f"{udp_x:>10}   {fmt_range(r, 'tcp_gbps', 1.0, 3):<24}"
        print(row + fmt_range(r, "udp64_pps", 1e-3, 1))
    rtr = results.get("lispd-via-rtr")
    if rtr is not None:
        c = rtr["counters"]
        print(
            f"RTR check: re-encapsulated {c['rtr_reencap']} packets over all runs "
            f"(ITRs encapsulated {c['xtrs_encap']}, ETRs decapsulated {c['xtrs_decap']}); "
            f"RTR drops: {rtr['rtr_drops'] or 'none'}"
        )
    disturbed = [
        f"{name} {kind}"
        for name in LABELS
        for kind in ("tcp", "udp64")
        if any(run["disturbed"] for run in results.get(name, {}).get(f"{kind}_runs", []))
    ]
    if disturbed:
        print(f"still disturbed by other processes after retries: {', '.join(disturbed)}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table (and write JSON when asked)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dataplane")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=list(SCENARIOS),
        help="measure only this path (repeatable; default: all, in the order kernel, lispd, rtr)",
    )
    add_noise_arguments(parser)
    args = parser.parse_args(argv)
    wanted = [s for s in SCENARIOS if s in (args.scenario or SCENARIOS)]
    started = time.monotonic()
    try:
        measured = run_scenarios(args, wanted)
    except CheckFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    results: dict[str, Any] = {"seconds": args.seconds, "runs": args.runs, **measured}
    kernel = results.get("kernel-routed")
    for name, key in RATIO_KEYS.items():
        if kernel is not None and name in results:
            results[key] = {
                "tcp": results[name]["tcp_gbps"] / kernel["tcp_gbps"],
                "udp64": results[name]["udp64_pps"] / kernel["udp64_pps"],
            }
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    print_table(results)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
