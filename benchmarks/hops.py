"""Where a ping's round trip goes: the time between consecutive hops of one path.

    sudo .venv/bin/python -m benchmarks.hops [--path NAME] [--pings N] [--interval-ms MS]
                                             [--busy-poll US] [--json FILE]

Brings up one path of :mod:`benchmarks.suite` (default ``compiled-1``) on the two-site lab,
captures on every interface of hosts A and B and of both xTRs (tcpdump, nanosecond
timestamps, the TUN included), sends ``udpgen ping`` A -> B and prints, per step of the round
trip, the median and 90th percentile of the time from one capture point to the next:

    A out -> xTR1 TUN -> xTR1 to R -> xTR2 from R -> xTR2 TUN -> B in -> B out -> xTR2 TUN
    -> xTR2 to R -> xTR1 from R -> xTR1 TUN -> A in

(for a kernel path the TUN points are missing and those steps merge).  A step that ends on a
lispd process's input (xTR1's TUN to its wire, xTR2's wire to its TUN, ...) is that process's
wake-up and work; the others are the kernel's.  Every capture costs the kernel a copy and its
tcpdump a wake-up, so the total is longer than the benchmark's p50: read the steps against
each other.  Needs root, tcpdump and tshark.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.suite import PATHS, PathSpec, Settings, Suite, bring_up
from benchmarks.traffic import build_udpgen, percentile
from lispd.lab import Lab

# (capture point, direction) in the order a request and its reply pass them
ORDER: tuple[tuple[str, str], ...] = (
    ("a:to-xtr1", "request"),
    ("xtr1:lisp0", "request"),
    ("xtr1:to-r", "request"),
    ("xtr2:to-r", "request"),
    ("xtr2:lisp0", "request"),
    ("b:to-xtr2", "request"),
    ("b:to-xtr2", "reply"),
    ("xtr2:lisp0", "reply"),
    ("xtr2:to-r", "reply"),
    ("xtr1:to-r", "reply"),
    ("xtr1:lisp0", "reply"),
    ("a:to-xtr1", "reply"),
)
NODES = ("a", "xtr1", "xtr2", "b")
ECHO_REQUEST, ECHO_REPLY = "8", "0"

Event = tuple[str, str, int, float]  # (capture point, direction, ICMP sequence, time in s)


def parse_tshark(point: str, text: str) -> list[Event]:
    """The ICMP echo events of one capture from ``tshark -T fields -e frame.time_epoch -e
    icmp.type -e icmp.seq -E occurrence=a``.  The first ICMP header counts: an encapsulated
    echo has only the inner one, an ICMP error quoting an echo is no echo."""
    events = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or not parts[1] or not parts[2]:
            continue
        kind = parts[1].split(",")[0]
        if kind not in (ECHO_REQUEST, ECHO_REPLY):
            continue
        direction = "request" if kind == ECHO_REQUEST else "reply"
        events.append((point, direction, int(parts[2].split(",")[0]), float(parts[0])))
    return events


def hop_steps(events: Iterable[Event]) -> list[dict[str, Any]]:
    """Per step between consecutive capture points of :data:`ORDER` that were seen: the
    median and 90th percentile in microseconds over the pings seen at both ends, and the
    whole round trip last (first sighting of each point per ping counts)."""
    seen: dict[int, dict[tuple[str, str], float]] = {}
    for point, direction, seq, when in events:
        seen.setdefault(seq, {}).setdefault((point, direction), when)
    present = [k for k in ORDER if any(k in times for times in seen.values())]
    if not present:
        return []
    steps = []
    for first, second in [*itertools.pairwise(present), (present[0], present[-1])]:
        gaps = [
            (times[second] - times[first]) * 1e6
            for times in seen.values()
            if first in times and second in times
        ]
        if not gaps:
            continue
        steps.append(
            {
                "from": f"{first[0]} {first[1]}",
                "to": f"{second[0]} {second[1]}",
                "p50_us": round(statistics.median(gaps), 1),
                "p90_us": round(percentile(gaps, 90), 1),
                "pings": len(gaps),
            }
        )
    if steps:
        steps[-1]["round_trip"] = True
    return steps


def format_steps(steps: Sequence[dict[str, Any]]) -> str:
    """The table printed at the end."""
    out = [f"{'from':<22}{'to':<22}{'p50 us':>9}{'p90 us':>9}{'pings':>7}"]
    for s in steps:
        if s.get("round_trip"):
            out.append("")
            out.append(f"{'round trip':<44}{s['p50_us']:>9.1f}{s['p90_us']:>9.1f}{s['pings']:>7}")
        else:
            out.append(
                f"{s['from']:<22}{s['to']:<22}{s['p50_us']:>9.1f}{s['p90_us']:>9.1f}{s['pings']:>7}"
            )
    return "\n".join(out)


def interfaces(lab: Lab, node: str) -> list[str]:
    """The interfaces of ``node`` but loopback."""
    proc = lab.run(node, "ip", "-o", "link", "show")
    names = [line.split(":")[1].strip().split("@")[0] for line in proc.stdout.splitlines()]
    return [n for n in names if n != "lo"]


def measure(spec: PathSpec, pings: int, interval_ms: float, workdir: Path) -> list[Event]:
    """Bring ``spec`` up, ping A -> B under capture, return every capture's events."""
    suite = Suite(Settings())
    plan = suite.plan
    udpgen = build_udpgen()
    events: list[Event] = []
    with Lab(plan.topology) as lab, bring_up(lab, plan, spec):
        lab.wait_ping(plan.host_a, plan.host_b_v4, timeout=10.0)
        captures: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
        try:
            for node in NODES:
                for dev in interfaces(lab, node):
                    file = workdir / f"{node}-{dev}.pcap"
                    argv = ["tcpdump", "-i", dev, "-n", "-U", "--time-stamp-precision=nano"]
                    argv += ["-w", str(file), "icmp or udp port 4341"]
                    proc = lab.popen(node, argv, stderr=subprocess.DEVNULL)
                    captures.append((f"{node}:{dev}", file, proc))
            time.sleep(1.5)  # every tcpdump attached
            lab.run(
                plan.host_a,
                str(udpgen),
                "ping",
                plan.host_b_v4,
                str(pings),
                f"{interval_ms:g}",
                "1000",
                check=False,
                timeout=pings * interval_ms / 1000 + 30,
            )
            time.sleep(0.5)
        finally:
            for _, _, proc in captures:
                proc.terminate()
                proc.wait(timeout=10)
        for point, file, _ in captures:
            fields = ("frame.time_epoch", "icmp.type", "icmp.seq")
            text = subprocess.run(
                ["tshark", "-r", str(file), "-T", "fields", "-E", "occurrence=a"]
                + [arg for f in fields for arg in ("-e", f)],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            events += parse_tshark(point, text)
    return events


def main(argv: list[str] | None = None) -> int:
    """Measure, print (and write JSON when asked); the exit status."""
    names = [p.name for p in PATHS]
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hops")
    parser.add_argument("--path", default="compiled-1", choices=names)
    parser.add_argument("--pings", type=int, default=100)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    parser.add_argument("--busy-poll", type=int, help="[dataplane] busy-poll (us), compiled")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("benchmarks.hops needs root (network namespaces)", file=sys.stderr)
        return 2
    missing = [tool for tool in ("tcpdump", "tshark") if shutil.which(tool) is None]
    if missing:
        print(f"benchmarks.hops needs {' and '.join(missing)}", file=sys.stderr)
        return 2
    spec = next(p for p in PATHS if p.name == args.path)
    if args.busy_poll is not None:
        spec = dataclasses.replace(spec, busy_poll=args.busy_poll)
    with tempfile.TemporaryDirectory(prefix="lispd-hops-") as tmp:
        steps = hop_steps(measure(spec, args.pings, args.interval_ms, Path(tmp)))
    if not steps:
        print("no echo seen at two capture points", file=sys.stderr)
        return 1
    print(f"{spec.name}: {spec.label}, {args.pings} pings every {args.interval_ms:g} ms")
    print(format_steps(steps))
    if args.json:
        Path(args.json).write_text(json.dumps({"path": spec.name, "steps": steps}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
