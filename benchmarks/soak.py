"""Soak: lispd's memory and a steady flow under map-cache churn, for minutes on end.

    sudo .venv/bin/python -m benchmarks.soak --minutes 10 [--eids 5000] [--rate 200] [--json FILE]

Lab (:func:`lispd.lab.mapping_system_topology` with two sites)::

    h1 ---- xtr1 ---- R ---- xtr2 ---- h2
                      |
                    msmr: a fake Map-Resolver (benchmarks.soak_agents fake-mr), 192.0.2.30

lispd runs as ITR+ETR on xtr1 and xtr2 (IPv4 and IPv6 EIDs over the IPv4 underlay), resolving
the EID space 198.51.100.0/24 and 2001:db8:100::/48 through the Map-Resolver on msmr.  That
Map-Resolver is a small Python process built from lispd's own wire codecs that answers every
ECM'd Map-Request itself, every record with a TTL of 1 minute (the smallest there is): site 1
(198.51.100.0/28, 2001:db8:100:1::/64) -> xtr1, site 2 (198.51.100.16/28,
2001:db8:100:2::/80) -> xtr2, and every address of the churn range 2001:db8:100:2:1::/80 ->
xtr2 *as its own /128*, so that each churn destination is one map-cache entry.  (A real lispd
Map-Server would need the thousands of prefixes registered, at most 255 records per
Map-Register; the fake answers for them directly.)  xtr2 decapsulates the churn range (inside
its 2001:db8:100:2::/64) and routes it to h2, where it is local (``ip route add local``) and a
sink counts it.

Traffic, for ``--minutes``:

* churn: h1 sends ``--rate`` small UDP datagrams per second to ``--eids`` distinct
  destinations of the churn range in turn (2001:db8:100:2:1::1, ::2, ...), cycling: each
  destination misses in xtr1's map-cache, is resolved (the packet held meanwhile) and
  installed as a /128 for 60 s, used again on later cycles, expires, and is resolved again on
  its next visit.  Thousands of entries are installed and expire every minute.
* steady: h1 sends one sequence-numbered UDP datagram every 50 ms to h2 over IPv4 and one over
  IPv6; h2 echoes each back (so both ITRs resolve, and re-resolve whenever the 1-minute entries
  of the sites expire).  Every datagram must come back: sent and received are counted exactly.

Every ``--sample-every`` seconds (10 by default): each lispd's VmRSS (``/proc/PID/status``) and
CPU time, its map-cache size, pending resolutions and held packets (the Prometheus endpoint,
``[metrics]``), its counters and drops (control socket ``stats``), and the map-cache entries
installed and expired so far (its ``map-cache learned`` / ``negative`` / ``expired`` log lines,
at ``log-level = "debug"``, where every map-cache change gets its line, uncapped; a
refresh of an unchanged mapping is a different line and not counted); the daemons' notify
sockets are read as systemd would (their last ``STATUS=`` goes
in the sample).  After the warm-up (the first minute; a third of the run when
it is shorter than two minutes) the sample taken then is the *start*; the last one the *end*.

Exit 1 when the steady flow lost a datagram (either family, either direction), when a lispd's
RSS grew from start to end by more than ``--rss-growth-pct`` % of the start plus
``--rss-growth-mb`` MB (10 % + 5 MB; checked only for runs of at least 3 minutes: before the
first entries have expired and been replaced, the map-cache is still filling), when a daemon
died or its control socket or metrics endpoint stopped answering, or when nothing churned (no
entry installed, or none expired in a run longer than two minutes).  A table on stdout, a
progress line per sample on stderr, everything (every sample too) as JSON with ``--json``.
``--minutes 0.5`` is the quick mode the netns test runs.

The resolver's global Map-Request rate limit is raised to 1000/s for the soak
(``[resolver] max-requests-per-second``; default 100) so that the churn, not the limit, decides
what is resolved: the soak is about memory and the steady flow, not about that limit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv6Network, ip_network
from pathlib import Path
from typing import Any, BinaryIO

from lispd.api.client import ControlError, request
from lispd.lab import DaemonHandle, Lab, MappingSystemPlan, SiteHandle, mapping_system_topology

REPO = str(Path(__file__).resolve().parent.parent)
CHURN_RANGE = "2001:db8:100:2:1::/80"
SITE2_STEADY_V6 = "2001:db8:100:2::/80"  # not the /64: that would cover the churn range
ECHO_PORT = 5000
SINK_PORT = 5001
METRICS = "127.0.0.1:9342"
_SCRAPE = (
    "import sys, urllib.request\n"
    f"sys.stdout.write(urllib.request.urlopen('http://{METRICS}/metrics', timeout=5)"
    ".read().decode())\n"
)
_PROM_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_PREFIX = re.compile(r"\bprefix=(\S+)")
_INSTALLED = ('msg="map-cache learned"', 'msg="map-cache negative"')
_EXPIRED = 'msg="map-cache expired"'


def lispd_config(site: SiteHandle, plan: MappingSystemPlan, sock: str) -> str:
    """lispd.conf of a site's xTR: ITR+ETR, the EID space resolved through the fake MR."""
    return f"""
[daemon]
name = "{site.xtr}"
roles = ["itr", "etr"]
log-level = "debug"
control-socket = "{sock}"

[underlay]
rlocs = ["{site.rloc}"]

[[database-mapping]]
eid-prefix = "{site.prefix_v4}"
rlocs = [{{ address = "{site.rloc}" }}]

[[database-mapping]]
eid-prefix = "{site.prefix_v6}"
rlocs = [{{ address = "{site.rloc}" }}]

[[map-cache]]
eid-prefix = "{plan.eid_space_v4}"
action = "send-map-request"

[[map-cache]]
eid-prefix = "{plan.eid_space_v6}"
action = "send-map-request"

[[map-resolver]]
address = "{plan.msmr_rloc}"

[resolver]
max-requests-per-second = 1000

[metrics]
listen = "{METRICS}"
"""


def fake_mr_rules(plan: MappingSystemPlan) -> list[str]:
    """The fake Map-Resolver's answers (``PREFIX=RLOC[/host]``, see soak_agents)."""
    s1, s2 = plan.sites
    return [
        f"{s1.prefix_v4}={s1.rloc}",
        f"{s1.prefix_v6}={s1.rloc}",
        f"{s2.prefix_v4}={s2.rloc}",
        f"{SITE2_STEADY_V6}={s2.rloc}",
        f"{CHURN_RANGE}={s2.rloc}/host",
    ]


# --- what a sample reads -------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (MB) and CPU seconds (user+system) of ``pid``."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    out["cpu_s"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> value per metric name, summed over its label sets."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        m = _PROM_LINE.match(line)
        if m is None or line.startswith("#"):
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        sums[m.group(1)] = sums.get(m.group(1), 0.0) + value
    return sums


@dataclass
class LogCounter:
    """Counts a daemon's ``msg="map-cache learned"`` / ``"map-cache negative"`` (installed) and
    ``msg="map-cache expired"`` lines, reading its log file incrementally."""

    path: Path
    churn: IPv6Network
    fh: BinaryIO | None = None
    tail: bytes = b""
    installed: int = 0
    expired: int = 0
    churn_installed: int = 0
    churn_expired: int = 0
    distinct: set[str] = field(default_factory=set)

    def update(self) -> None:
        """Read what was appended since the last call (the file stays open between calls)."""
        if self.fh is None:
            self.fh = self.path.open("rb")
        data = self.fh.read()
        lines = (self.tail + data).split(b"\n")
        self.tail = lines.pop()
        for raw in lines:
            line = raw.decode(errors="replace")
            added = any(event in line for event in _INSTALLED)
            if not added and _EXPIRED not in line:
                continue
            m = _PREFIX.search(line)
            prefix = m.group(1) if m else ""
            in_churn = False
            if prefix:
                try:
                    net = ip_network(prefix)
                    in_churn = net.version == 6 and net.subnet_of(self.churn)  # type: ignore[arg-type]
                except ValueError:
                    pass
            if added:
                self.installed += 1
                self.churn_installed += in_churn
                if prefix:
                    self.distinct.add(prefix)
            else:
                self.expired += 1
                self.churn_expired += in_churn


def read_json(path: Path) -> dict[str, Any]:
    """An agent's stats file ({} until it wrote one)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


class Soak:
    """The lab, its daemons and agents, and the samples taken of them."""

    def __init__(self, lab: Lab, plan: MappingSystemPlan, args: argparse.Namespace) -> None:
        self.lab, self.plan, self.args = lab, plan, args
        self.duration = args.minutes * 60.0
        self.warmup = 60.0 if self.duration >= 120 else self.duration / 3
        self.every = args.sample_every or min(10.0, max(2.0, self.duration / 6))
        self.daemons: dict[str, DaemonHandle] = {}
        self.socks: dict[str, str] = {}
        self.logs: dict[str, LogCounter] = {}
        self.stats_files = {
            k: lab.workdir / f"{k}.json" for k in ("fake-mr", "server", "steady", "churn")
        }
        self.samples: list[dict[str, Any]] = []
        self.env = {**os.environ, "PYTHONPATH": REPO}

    # -- setup ----------------------------------------------------------------------------------

    def agent(self, node: str, *argv: str) -> subprocess.Popen[bytes]:
        """Start one of benchmarks.soak_agents in ``node``; its stderr goes to the workdir."""
        name = argv[0]
        cmd = [sys.executable, "-m", "benchmarks.soak_agents", *argv]
        cmd += ["--stats", str(self.stats_files[name])]
        with (self.lab.workdir / f"{name}.log").open("wb") as log:  # the child keeps its copy
            return self.lab.popen(
                node, cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self.env,
            )  # fmt: skip

    def setup(self) -> None:
        """Routes for the churn range, the fake MR, the sink/echo server and both lispds."""
        lab, plan = self.lab, self.plan
        s1, s2 = plan.sites
        churn = CHURN_RANGE
        lab.run(s2.xtr, "ip", "-6", "route", "add", churn, "via", s2.host_v6)
        lab.run(s2.host, "ip", "-6", "route", "add", "local", churn, "dev", "lo")
        rules = [a for r in fake_mr_rules(plan) for a in ("--rule", r)]
        self.fake_mr = self.agent(plan.msmr, "fake-mr", "--listen", plan.msmr_rloc, *rules)
        self.server = self.agent(
            s2.host, "server", "--echo-port", str(ECHO_PORT), "--sink-port", str(SINK_PORT)
        )
        for site in (s1, s2):
            sock = str(lab.workdir / f"{site.xtr}.sock")
            self.socks[site.xtr] = sock
            d = lab.start_lispd(site.xtr, lispd_config(site, plan, sock))
            self.daemons[site.xtr] = d
            self.logs[site.xtr] = LogCounter(d.log_path, IPv6Network(churn))
        deadline = time.monotonic() + 10
        started = [self.stats_files["fake-mr"], self.stats_files["server"]]
        while not all(p.exists() for p in started):
            if time.monotonic() > deadline:
                raise RuntimeError("the fake Map-Resolver or the echo server did not start")
            time.sleep(0.1)

    # -- run ------------------------------------------------------------------------------------

    def start_traffic(self) -> None:
        """The steady flows and the churn, both for the whole duration."""
        s1, s2 = self.plan.sites
        self.steady = self.agent(
            s1.host, "steady", "--v4", s2.host_v4, "--v6", s2.host_v6,
            "--port", str(ECHO_PORT), "--interval", str(self.args.interval),
            "--seconds", str(self.duration),
        )  # fmt: skip
        base = str(IPv6Network(CHURN_RANGE).network_address)
        self.churn = self.agent(
            s1.host, "churn", "--base", base, "--count", str(self.args.eids),
            "--rate", str(self.args.rate), "--port", str(SINK_PORT),
            "--seconds", str(self.duration),
        )  # fmt: skip

    def sample(self, t: float) -> dict[str, Any]:
        """One sample of every daemon and agent at ``t`` seconds into the run."""
        out: dict[str, Any] = {"t": round(t, 1), "daemons": {}}
        for node, d in self.daemons.items():
            one: dict[str, Any] = {"alive": d.running()}
            # Read the notify socket as systemd would (its queue holds 10 datagrams).
            status = [n for n in d.read_notifications() if n.startswith("STATUS=")]
            one["status"] = status[-1][len("STATUS=") :] if status else None
            if d.running():
                one.update(proc_status(d.pid))
                try:
                    stats = request(self.socks[node], "stats", timeout=10)
                    one["packets"] = stats["packets"]
                    one["drops"] = stats["drops"]
                except ControlError as exc:
                    one["error"] = str(exc)
                scrape = self.lab.run(
                    node, sys.executable, "-I", "-S", "-c", _SCRAPE, check=False, timeout=20
                )
                if scrape.returncode != 0:
                    one["error"] = f"metrics: {scrape.stderr.strip()[-200:]}"
                metrics = parse_metrics(scrape.stdout)
                one["map_cache"] = int(metrics.get("lispd_map_cache_entries", -1))
                one["pending"] = int(metrics.get("lispd_resolutions_pending", -1))
                one["held"] = int(metrics.get("lispd_resolution_held_packets", -1))
            counter = self.logs[node]
            counter.update()
            one["installed"] = counter.installed
            one["expired"] = counter.expired
            one["churn_installed"] = counter.churn_installed
            one["churn_expired"] = counter.churn_expired
            out["daemons"][node] = one
        out["agents"] = {k: read_json(p) for k, p in self.stats_files.items()}
        return out

    def run(self) -> None:
        """Traffic for the duration, a sample every ``self.every`` seconds."""
        self.samples.append(self.sample(0.0))
        self.start_traffic()
        start = time.monotonic()
        k = 1
        while True:
            due = start + k * self.every
            if due > start + self.duration:
                due = start + self.duration
            time.sleep(max(0.0, due - time.monotonic()))
            s = self.sample(time.monotonic() - start)
            self.samples.append(s)
            print(progress_line(s), file=sys.stderr, flush=True)
            if due >= start + self.duration:
                break
            k += 1
        for proc in (self.steady, self.churn):
            proc.wait(timeout=60)
        for proc in (self.fake_mr, self.server):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
        self.final = self.sample(time.monotonic() - start)
        for counter in self.logs.values():
            if counter.fh is not None:
                counter.fh.close()

    # -- verdict --------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Start/end/max RSS, map-cache range, churn and steady-flow figures, failures."""
        args = self.args
        start_sample = min(self.samples, key=lambda s: abs(s["t"] - self.warmup))
        end_sample = self.samples[-1]
        after = [s for s in self.samples if s["t"] >= start_sample["t"]]
        rss_checked = self.duration >= 180
        failures: list[str] = []
        daemons: dict[str, Any] = {}
        for node in self.daemons:
            d_start, d_end = start_sample["daemons"][node], end_sample["daemons"][node]
            final = self.final["daemons"][node]
            if not final.get("alive"):
                failures.append(f"{node}: lispd died")
                continue
            unanswered = [s["t"] for s in self.samples if "error" in s["daemons"][node]]
            if unanswered:
                failures.append(f"{node}: no answer (control socket or metrics) at {unanswered} s")
            rss = [s["daemons"][node]["VmRSS"] for s in self.samples]
            cache_after = [s["daemons"][node]["map_cache"] for s in after]
            growth = d_end["VmRSS"] - d_start["VmRSS"]
            allowed = d_start["VmRSS"] * args.rss_growth_pct / 100 + args.rss_growth_mb
            daemons[node] = {
                "rss_start_mb": round(d_start["VmRSS"], 1),
                "rss_end_mb": round(d_end["VmRSS"], 1),
                "rss_max_mb": round(max(rss), 1),
                "rss_before_traffic_mb": round(self.samples[0]["daemons"][node]["VmRSS"], 1),
                "rss_growth_mb": round(growth, 1),
                "rss_growth_allowed_mb": round(allowed, 1),
                "hwm_mb": round(final["VmHWM"], 1),
                "cpu_s": round(final["cpu_s"] - self.samples[0]["daemons"][node]["cpu_s"], 1),
                "map_cache_min": min(cache_after),
                "map_cache_max": max(s["daemons"][node]["map_cache"] for s in self.samples),
                "pending_max": max(s["daemons"][node]["pending"] for s in self.samples),
                "held_max": max(s["daemons"][node]["held"] for s in self.samples),
                "installed": final["installed"],
                "expired": final["expired"],
                "churn_installed": final["churn_installed"],
                "churn_expired": final["churn_expired"],
                "distinct_prefixes": len(self.logs[node].distinct),
                "drops": final.get("drops", {}),
                "packets": final.get("packets", {}),
            }
            if rss_checked and growth > allowed:
                failures.append(
                    f"{node}: RSS grew {growth:.1f} MB from {d_start['VmRSS']:.1f} MB at "
                    f"{start_sample['t']:.0f} s to {d_end['VmRSS']:.1f} MB at the end "
                    f"(allowed {allowed:.1f} MB)"
                )
        agents = self.final["agents"]
        steady = agents.get("steady", {})
        for family in ("v4", "v6"):
            flow = steady.get(family)
            if flow is None or "lost" not in flow:
                failures.append(f"steady {family}: no final figures from the steady flow")
            elif flow["lost"] or flow["sent"] == 0:
                failures.append(
                    f"steady {family}: {flow['lost']} of {flow['sent']} datagrams lost "
                    f"(sent at {flow['lost_at_s'][:20]} s)"
                )
        churned = daemons.get(self.plan.sites[0].xtr, {})
        if not churned.get("churn_installed"):
            failures.append("no churn: the ITR installed no entry of the churn range")
        elif self.duration > 120 and not churned.get("churn_expired"):
            failures.append("no churn: no entry of the churn range expired")
        return {
            "minutes": args.minutes,
            "eids": args.eids,
            "rate": args.rate,
            "interval": args.interval,
            "warmup_s": round(self.warmup, 1),
            "start_t": start_sample["t"],
            "end_t": end_sample["t"],
            "rss_checked": rss_checked,
            "daemons": daemons,
            "steady": steady,
            "churn": agents.get("churn", {}),
            "sink": agents.get("server", {}),
            "fake_mr": agents.get("fake-mr", {}),
            "failures": failures,
        }


def progress_line(s: dict[str, Any]) -> str:
    """One stderr line per sample."""
    parts = [f"{s['t']:6.0f}s"]
    for node, d in s["daemons"].items():
        if not d.get("alive"):
            parts.append(f"{node} DEAD")
            continue
        parts.append(
            f"{node} rss {d['VmRSS']:.1f}MB cache {d['map_cache']} pend {d['pending']} "
            f"held {d['held']} +{d['installed']} -{d['expired']}"
        )
    agents = s["agents"]
    steady = agents.get("steady", {})
    for family in ("v4", "v6"):
        if family in steady:
            parts.append(f"{family} {steady[family]['received']}/{steady[family]['sent']}")
    if "churn" in agents:
        parts.append(f"churn {agents['churn'].get('sent', 0)}")
    if "server" in agents:
        parts.append(
            f"sink {agents['server'].get('sink', 0)} ({agents['server'].get('sink_distinct', 0)})"
        )
    return " | ".join(parts)


def print_report(r: dict[str, Any]) -> None:
    """The figures, for people."""
    print(
        f"soak: {r['minutes']:g} min, churn {r['rate']:g} datagrams/s over {r['eids']} EIDs, "
        f"steady flow every {r['interval'] * 1000:g} ms; start = {r['start_t']:.0f} s, "
        f"end = {r['end_t']:.0f} s"
    )
    header = f"{'lispd':<6}{'RSS start':>10}{'end':>8}{'max':>8}{'growth':>8}{'allowed':>9}"
    header += f"{'cache min':>10}{'max':>7}{'installed':>10}{'expired':>9}{'cpu s':>7}"
    print(header)
    for node, d in r["daemons"].items():
        print(
            f"{node:<6}{d['rss_start_mb']:>10.1f}{d['rss_end_mb']:>8.1f}{d['rss_max_mb']:>8.1f}"
            f"{d['rss_growth_mb']:>+8.1f}{d['rss_growth_allowed_mb']:>9.1f}"
            f"{d['map_cache_min']:>10}{d['map_cache_max']:>7}{d['installed']:>10}"
            f"{d['expired']:>9}{d['cpu_s']:>7.1f}"
        )
    print("(RSS in MB; growth from start to end, checked: " + ("yes" if r["rss_checked"] else
          "no, the run is shorter than 3 minutes") + ")")  # fmt: skip
    for node, d in r["daemons"].items():
        drops = ", ".join(f"{k}={v}" for k, v in sorted(d["drops"].items())) or "none"
        print(
            f"{node}: churn entries installed {d['churn_installed']}, expired "
            f"{d['churn_expired']}, distinct prefixes {d['distinct_prefixes']}; pending max "
            f"{d['pending_max']}, held max {d['held_max']}; drops: {drops}"
        )
    for family in ("v4", "v6"):
        f = r["steady"].get(family, {})
        rtt = f.get("rtt_ms", {})
        print(
            f"steady {family}: sent {f.get('sent')}, received {f.get('received')}, lost "
            f"{f.get('lost')}, duplicates {f.get('duplicates')}; RTT ms median "
            f"{rtt.get('median')} p99 {rtt.get('p99')} max {rtt.get('max')}"
        )
    sink, mr = r["sink"], r["fake_mr"]
    print(
        f"churn: sent {r['churn'].get('sent')}, reached h2 {sink.get('sink')} "
        f"({sink.get('sink_distinct')} distinct EIDs); fake MR answered {mr.get('replies')} "
        f"Map-Requests {mr.get('answered')}"
    )
    if r["failures"]:
        print("FAILED:\n  " + "\n  ".join(r["failures"]))
    else:
        print("OK")


def run_soak(args: argparse.Namespace) -> dict[str, Any]:
    """Build the lab, soak, tear down; the summary (with every sample under ``samples``)."""
    plan = mapping_system_topology(sites=2)
    # Our own workdir, outside lispd.lab's temp-dir naming: a soak runs for many minutes while
    # other labs come and go, and nothing but this process may remove its files.
    workdir = Path(tempfile.mkdtemp(prefix=f"lispd-soak-{os.getpid()}-"))
    try:
        with Lab(plan.topology, workdir=workdir) as lab:
            soak = Soak(lab, plan, args)
            soak.setup()
            soak.run()
            result = soak.summary()
            result["samples"] = [*soak.samples, soak.final]
    finally:
        if os.environ.get("LISPD_LAB_KEEP", "") in ("", "0"):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"soak: files kept in {workdir}", file=sys.stderr)
    return result


def main(argv: Iterable[str] | None = None) -> int:
    """Run the soak; print the report (and write JSON when asked); 1 on a failure."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak")
    parser.add_argument("--minutes", type=float, default=10.0, help="default 10; 0.5: quick")
    parser.add_argument("--eids", type=int, default=5000, help="churn destinations (5000)")
    parser.add_argument(
        "--rate", type=float, default=200.0, help="churn datagrams per second (200)"
    )
    parser.add_argument(
        "--interval", type=float, default=0.05, help="steady flow: seconds between datagrams"
    )
    parser.add_argument("--sample-every", type=float, default=0.0, help="seconds (default 10)")
    parser.add_argument("--rss-growth-pct", type=float, default=10.0)
    parser.add_argument("--rss-growth-mb", type=float, default=5.0)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.minutes <= 0 or args.eids < 1 or args.rate <= 0:
        parser.error("--minutes, --eids and --rate must be positive")
    if args.eids >= 1 << 64:
        parser.error("--eids: the churn range is a /80")
    started = time.monotonic()
    result = run_soak(args)
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    print_report(result)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
