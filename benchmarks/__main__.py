"""``python -m benchmarks``: lispd next to the kernel's own paths, in one run (root).

    sudo .venv/bin/python -m benchmarks [--quick] [--seconds S] [--runs N] [--json FILE]
                                        [--only NAME ...] [--flows N] [--flow-run N]

Builds host A - xTR1 - R - xTR2 - host B in network namespaces and measures, one path after
the other on the same namespaces: the kernel's routed path and its VXLAN tunnel on UDP 4341
(the baselines), lispd ITR->ETR and ITR->RTR->ETR with the Python and the compiled fast path
(with one engine per core, with a single engine, with UDP GSO sends, and without offloads).
Per path: TCP Gbit/s (iperf3, 1 and 4 streams), 64- and 1400-byte UDP packets/s over 16 flows
with loss (udpgen, a sendmmsg/recvmmsg generator) and the loss at half the maximum, ICMP round trips
(p50/p99, and the latency added over the routed path), CPU seconds per million packets of
each lispd process (with its workers), the engines each ran and their share of the packets.
Prints a table with ratios to the baselines, the targets of issue 24 and the multi-core gain;
``--json`` writes everything.  Progress goes to
stderr.  Exit status 0 when every path was measured or is not available, 1 when a path or a
test failed, 2 on a usage error.  See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from benchmarks.cpuload import add_noise_arguments
from benchmarks.report import format_report
from benchmarks.suite import PATH_NAMES, QUICK_PATHS, SECTIONS, TESTS, Settings, Suite


def parse_args(argv: list[str] | None = None) -> tuple[Settings, str | None]:
    """The command line as :class:`~benchmarks.suite.Settings` and the ``--json`` file."""
    names = (*PATH_NAMES, *TESTS, *SECTIONS)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="lispd's data plane next to the kernel's routed path and VXLAN tunnel.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="prove the harness works (< 60 s): 1 s runs, one of each, 50 pings, paths "
        + ", ".join(QUICK_PATHS),
    )
    parser.add_argument("--seconds", type=float, help="seconds per timed run (default 2)")
    parser.add_argument("--runs", type=int, help="runs per figure, median kept (default 2)")
    parser.add_argument("--json", metavar="FILE", help="write every figure and run as JSON")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        choices=names,
        help="measure only these paths and/or tests and/or sections: paths "
        f"{', '.join(PATH_NAMES)}; tests {', '.join(TESTS)}; sections {', '.join(SECTIONS)} "
        "(naming no path keeps every path, no test every test; the map-cache section runs "
        "only when named or without --only; ratios need routed and vxlan)",
    )
    parser.add_argument(
        "--pings", type=int, help="ICMP echo requests per path (default 200, --quick 50)"
    )
    parser.add_argument(
        "--flows",
        type=int,
        default=16,
        help="UDP flows (source ports, taking turns datagram by datagram) of the udpgen floods, "
        "shared by the senders (default 16: the kernel spreads flows over lispd's engines)",
    )
    parser.add_argument(
        "--flow-run",
        type=int,
        default=1,
        help="datagrams in a row per flow (default 1: the flows take turns datagram by "
        "datagram; 64: a whole sendmmsg batch per flow, back to back as one host's would be)",
    )
    parser.add_argument(
        "--senders",
        type=int,
        default=0,
        help="udpgen sender processes at once; 0 (default): one per CPU for the kernel "
        "paths, which forward in the senders' softirq context (one sender would bound them "
        "to one core), one for lispd paths (more would take CPU from lispd)",
    )
    parser.add_argument(
        "--busy-poll",
        type=int,
        metavar="US",
        help="[dataplane] busy-poll of every compiled path, in microseconds (default: "
        "lispd's own default)",
    )
    add_noise_arguments(parser)
    args = parser.parse_args(argv)
    only = args.only or []
    paths = tuple(n for n in PATH_NAMES if n in only)
    tests = tuple(n for n in TESTS if n in only)
    sections = tuple(n for n in SECTIONS if n in only)
    settings = Settings(quick=args.quick, max_other_cpu=args.max_other_cpu, retries=args.retries)
    if args.quick:
        settings.seconds, settings.runs, settings.ping_count = 1.0, 1, 50
        settings.udp_idle_s, settings.retries = 0.2, 0
        settings.paths = QUICK_PATHS
    if args.seconds is not None:
        settings.seconds = args.seconds
    if args.runs is not None:
        settings.runs = args.runs
    if args.pings is not None:
        settings.ping_count = args.pings
    settings.flows, settings.senders = args.flows, args.senders
    settings.flow_run = args.flow_run
    settings.busy_poll = args.busy_poll
    if settings.busy_poll is not None and not 0 <= settings.busy_poll <= 1000:
        parser.error("--busy-poll must be 0..1000")
    if settings.seconds <= 0 or settings.runs < 1 or settings.ping_count < 1:
        parser.error("--seconds, --runs and --pings must be positive")
    if (
        not 1 <= settings.flows <= 1024
        or not 0 <= settings.senders <= 16
        or not 1 <= settings.flow_run <= 1_000_000
    ):
        parser.error("--flows must be 1..1024, --senders 0..16, --flow-run 1..1000000")
    if only:
        if paths:
            settings.paths = paths
        elif not tests:  # only sections named
            settings.paths = ()
        if tests:
            settings.tests = tests
        settings.mapcache = "mapcache" in sections
    return settings, args.json


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table (and write JSON when asked); the exit status."""
    settings, json_path = parse_args(argv)
    if os.geteuid() != 0:
        print("python -m benchmarks needs root (network namespaces)", file=sys.stderr)
        return 2
    results = Suite(settings).run()
    print(format_report(results), flush=True)
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(results, fh, indent=2)
            fh.write("\n")
    failed = [
        name
        for name, path in results["paths"].items()
        if path.get("status") == "failed"
        or any(isinstance(path.get(t), dict) and "error" in path[t] for t in TESTS)
    ]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
