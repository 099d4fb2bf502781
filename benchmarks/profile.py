"""A ``perf`` profile of one path under load: where the CPU goes, user and kernel.

    sudo .venv/bin/python -m benchmarks.profile [--path NAME] [--load tcp|udp64]
                                                [--seconds S] [--out FILE] [--top N] [--children]

Brings up one path of :mod:`benchmarks.suite` (default ``compiled-1``) on the two-site lab,
runs a TCP flow (iperf3, one stream) or a 64-byte UDP flood (udpgen, 16 flows) from A to B, and
records the whole machine with ``perf record -a -g`` for the middle ``--seconds`` (default 4)
of it.  Prints the traffic's figure, the share of the samples per command, and per lispd
process (xTR1 is the ITR, xTR2 the ETR, with their workers) the ``--top`` symbols by
self time (``--children``: counting what they called, a system call's whole cost).
``--out`` keeps ``perf.data`` for ``perf report -i FILE --pid PID``.  Needs root,
perf, iperf3.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.suite import PATHS, Settings, Suite, bring_up, tree_pids
from benchmarks.traffic import build_udpgen, iperf_tcp, udp_flood
from lispd.lab import Lab

LOAD_SECONDS_EXTRA = 4.0  # traffic runs this much longer than the recording, around it


def perf_report(data: Path, *args: str, children: bool = False) -> str:
    """``perf report --stdio`` of ``data`` without call graphs, by self time (``children``:
    with the time of what each function called); the sample lines only."""
    mode = "--children" if children else "--no-children"
    argv = ["perf", "report", "-i", str(data), "--stdio", mode, "-g", "none", *args]
    out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    return "\n".join(line for line in out.splitlines() if line.strip() and "%" in line[:12])


def top_lines(text: str, n: int) -> list[str]:
    """The first ``n`` sample lines of a report, trailing columns trimmed."""
    return [line.rstrip(" -") for line in text.splitlines()[:n]]


def main(argv: list[str] | None = None) -> int:
    """Profile, print; the exit status."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("--path", default="compiled-1", choices=[p.name for p in PATHS])
    parser.add_argument("--load", default="tcp", choices=("tcp", "udp64"))
    parser.add_argument("--seconds", type=float, default=4.0, help="recorded (default 4)")
    parser.add_argument("--out", help="keep perf.data here")
    parser.add_argument("--top", type=int, default=15, help="symbols per process (15)")
    parser.add_argument(
        "--children", action="store_true", help="rank by time with callees (default: self time)"
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("benchmarks.profile needs root (network namespaces)", file=sys.stderr)
        return 2
    if shutil.which("perf") is None:
        print("benchmarks.profile needs perf", file=sys.stderr)
        return 2
    spec = next(p for p in PATHS if p.name == args.path)
    plan = Suite(Settings()).plan
    udpgen = build_udpgen()
    seconds = args.seconds + LOAD_SECONDS_EXTRA
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="lispd-profile-") as tmp:
        data = Path(args.out) if args.out else Path(tmp) / "perf.data"
        with Lab(plan.topology) as lab, bring_up(lab, plan, spec) as up:
            lab.wait_ping(plan.host_a, plan.host_b_v4, timeout=10.0)

            def load() -> None:
                if args.load == "tcp":
                    result.update(
                        iperf_tcp(lab, plan.host_a, plan.host_b, plan.host_b_v4, seconds=seconds)
                    )
                else:
                    result.update(
                        udp_flood(
                            lab,
                            udpgen,
                            plan.host_a,
                            plan.host_b,
                            plan.host_b_v4,
                            size=64,
                            seconds=seconds,
                            flows=16,
                        )
                    )

            traffic = threading.Thread(target=load)
            traffic.start()
            time.sleep(LOAD_SECONDS_EXTRA / 2)
            record = ["perf", "record", "-a", "-g", "-o", str(data), "--", "sleep"]
            subprocess.run([*record, f"{args.seconds:g}"], capture_output=True, check=False)
            processes = {d.label: tree_pids(d.handle.pid) for d in up.daemons}
            traffic.join()
        figure = (
            f"{result.get('gbps', 0):.2f} Gbit/s"
            if args.load == "tcp"
            else f"{result.get('received_pps', 0) / 1000:.1f} kpps received"
        )
        print(f"{spec.name} under {args.load}: {figure}")
        print("\nsamples per command:")
        print("\n".join(top_lines(perf_report(data, "--sort", "comm"), 8)))
        for label, pids in processes.items():
            shown = ",".join(map(str, pids))
            rank = "with callees" if args.children else "by self time"
            print(f"\n{label} (pids {shown}), top symbols {rank} (% of all samples):")
            text = perf_report(data, "--pid", shown, "--sort", "dso,symbol", children=args.children)
            print("\n".join(top_lines(text, args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
