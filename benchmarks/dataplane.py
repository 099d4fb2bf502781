"""Data-plane throughput through real namespaces: lispd ITR->ETR next to a plain routed path.

    sudo .venv/bin/python -m benchmarks.dataplane [--seconds 5] [--runs 3] [--json FILE]

Topology: host A - xTR1 - R - xTR2 - host B (lispd.lab.two_site_topology).  Measured in the
same run, one after the other on the same namespaces:

* ``kernel-routed``: xTR1/xTR2 forward natively (static routes between the sites via R);
* ``lispd``: the routes removed, lispd on both xTRs with static map-caches (IPv4 over IPv4).

For each: a single TCP flow (iperf3, Gbit/s received) and 64-byte UDP (iperf3 -u -l 64 -b 0,
packets/s received).  Medians of ``--runs`` runs; a table on stdout, JSON with ``--json``.
iperf3 alone cannot offer much more than ~150-200 kpps of small UDP on this kind of machine, so
the UDP figure of the kernel path is bounded by the generator, not the path.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

from lispd.lab import Lab, TwoSitePlan, two_site_topology


def lispd_config(plan: TwoSitePlan, me: int) -> str:
    """lispd.conf of xTR ``me`` (1 or 2) for the benchmark (IPv4 over IPv4)."""
    mine = (plan.site_a_prefix_v4, plan.xtr1_rloc_v4) if me == 1 else (
        plan.site_b_prefix_v4, plan.xtr2_rloc_v4)  # fmt: skip
    peer = (plan.site_b_prefix_v4, plan.xtr2_rloc_v4) if me == 1 else (
        plan.site_a_prefix_v4, plan.xtr1_rloc_v4)  # fmt: skip
    return f"""
[daemon]
name = "xtr{me}"
roles = ["itr", "etr"]
log-level = "warning"
control-socket = ""
[underlay]
rlocs = ["{mine[1]}"]
[[database-mapping]]
eid-prefix = "{mine[0]}"
rlocs = [{{ address = "{mine[1]}" }}]
[[map-cache]]
eid-prefix = "{peer[0]}"
rlocs = [{{ address = "{peer[1]}" }}]
"""


def iperf(lab: Lab, plan: TwoSitePlan, seconds: float, udp: bool) -> dict[str, float]:
    """One iperf3 run from A to B; Gbit/s and packets/s received."""
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
    out = lab.run(plan.host_a, *argv, timeout=seconds + 30).stdout
    server.wait(timeout=10)
    end = json.loads(out)["end"]
    if udp:
        s = end["sum"]
        received = s["packets"] - s["lost_packets"]
        return {"pps": received / s["seconds"], "gbps": s["bits_per_second"] / 1e9 * (
            received / max(s["packets"], 1))}  # fmt: skip
    s = end["sum_received"]
    return {"gbps": s["bits_per_second"] / 1e9, "pps": 0.0}


def measure(lab: Lab, plan: TwoSitePlan, seconds: float, runs: int) -> dict[str, float]:
    """Medians of TCP Gbit/s and UDP-64 packets/s."""
    tcp = [iperf(lab, plan, seconds, udp=False)["gbps"] for _ in range(runs)]
    udp = [iperf(lab, plan, seconds, udp=True)["pps"] for _ in range(runs)]
    return {"tcp_gbps": statistics.median(tcp), "udp64_pps": statistics.median(udp)}


def plain_routes(lab: Lab, plan: TwoSitePlan, action: str) -> None:
    """Add or delete the static routes that make the xTRs plain routers between the sites."""
    lab.run(plan.xtr1, "ip", "route", action, plan.site_b_prefix_v4, "via", plan.r_xtr1_v4)
    lab.run(plan.xtr2, "ip", "route", action, plan.site_a_prefix_v4, "via", plan.r_xtr2_v4)
    for prefix, via in ((plan.site_a_prefix_v4, plan.xtr1_rloc_v4),
                        (plan.site_b_prefix_v4, plan.xtr2_rloc_v4)):  # fmt: skip
        lab.run(plan.r, "ip", "route", action, prefix, "via", via)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table (and write JSON when asked)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dataplane")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    plan = two_site_topology()
    results: dict[str, Any] = {"seconds": args.seconds, "runs": args.runs}
    with Lab(plan.topology) as lab:
        plain_routes(lab, plan, "add")
        results["kernel-routed"] = measure(lab, plan, args.seconds, args.runs)
        plain_routes(lab, plan, "del")
        d1 = lab.start_lispd(plan.xtr1, lispd_config(plan, 1))
        d2 = lab.start_lispd(plan.xtr2, lispd_config(plan, 2))
        results["lispd"] = measure(lab, plan, args.seconds, args.runs)
        d1.stop()
        d2.stop()
    k, lp = results["kernel-routed"], results["lispd"]
    results["ratio"] = {
        "tcp": lp["tcp_gbps"] / k["tcp_gbps"],
        "udp64": lp["udp64_pps"] / k["udp64_pps"],
    }
    print(f"{'path':<16}{'TCP Gbit/s':>12}{'UDP-64 kpps':>14}")
    for name in ("kernel-routed", "lispd"):
        r = results[name]
        print(f"{name:<16}{r['tcp_gbps']:>12.3f}{r['udp64_pps'] / 1e3:>14.1f}")
    ratio = results["ratio"]
    print(f"{'lispd/kernel':<16}{ratio['tcp']:>12.3f}{ratio['udp64']:>14.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
