"""NAT keepalive flood: a big RTR keeps forwarding while a spoofer makes its bindings flap.

    sudo .venv/bin/python -m benchmarks.nat_flood [--prefixes 1000000] [--per-rloc 100]
        [--rate 1000] [--seconds 30] [--quiet-seconds 10] [--ping-interval 0.01] [--json FILE]

Lab (:func:`lispd.lab.nat_topology`, as ``tests/netns/test_rtr_nat.py``)::

    h1 - gxtr1 - nat1 --+            +-- ms (Map-Server / Map-Resolver) + the spoofer
                        +-- core ----+
    h2 - xtr2 -- nat2 --+            +-- cloudnat - rtr1 (the RTR, behind a 1:1 NAT)

gxtr1 and xtr2 sit behind masquerading NATs with NAT traversal on: they register through ms and
send everything off-site to rtr1, which learns their NAT bindings from their keepalives.  The
RTR's map-cache holds ``--prefixes`` extra entries besides the ones it resolves itself: learned
entries (source ``map-reply``, TTL one day) for IPv4 prefixes /16-/32 inside 10.0.0.0/8 and
IPv6 /32-/128 inside fd00::/8 (two thirds IPv4; none covers the lab's EIDs), each with one RLOC
out of ``prefixes / per-rloc`` addresses counted up from 198.18.0.1, so ``--per-rloc`` entries
use each RLOC.

How they get there: rtr1's lispd is started through this module (``python -m
benchmarks.nat_flood rtr --prefixes N -c CONF``), which builds the :class:`lispd.daemon.Daemon`
from the configuration as ``lispd`` does, installs the entries in its node's map-cache with
``MapCache.add`` (as ``Node._apply`` installs Map-Reply answers, minus the Map-Replies), and
then runs the daemon unchanged: ``start`` loads them into the compiled engines and seeds the
worker like any map-cache.  Resolving a million prefixes through a Map-Resolver would take hours
at the resolver's rate limits, a million static ``[[map-cache]]`` tables would be a 100 MB
configuration file, and a control-socket command to install entries would be a way in for anyone
who may use that socket: the benchmark's own entry point changes nothing in lispd.  Map-cache
probing is off on rtr1 (``[probing] map-cache = false``): the entries' RLOCs do not exist, and
probing them is not what is measured.

Measured, in two windows of the same ping (``--ping-interval``, 10 ms: h1 -> h2 through gxtr1,
rtr1 and xtr2): ``--quiet-seconds`` without the flood, then ``--seconds`` while ms sends
``--rate`` NAT keepalives a second from 198.18.0.1 (an address on ms, the first of the RLOCs:
``--per-rloc`` entries use it), alternating between two source ports, to rtr1's data port.
Per window: pings sent / answered / lost and their round-trip times; rtr1's keepalives counted,
binding changes accepted (new bindings and moved claims: ``rtr.nat-binding-change``), claims
refused because the binding holding them is alive (``nat-binding-eid-held``: since bindings are
kept per xTR, each source port is a binding of its own and the first one holds the spoofed
address and EID-prefix), moves refused by the per-claim rate limit
(``nat-binding-change-rate-limited``), forwarding records re-issued; the event loop's stalls
as lispd reports them (``stats`` -> ``loop``: the largest lag of a tick due every 10 ms, in the
last 10-20 s, read every second) and as this module's own tick measures them in rtr1's loop
(every 10 ms, written to a file each second: a cross-check that needs nothing of lispd); CPU
seconds of rtr1's main process and of its worker.  Exit 1 when a ping was lost during the
flood or the loop stalled over ``--max-stall-ms`` (20).

``--lispd PATH`` runs rtr1 from another source tree (with its C extension built in place:
``lispd/engine/_accel*.so``, or ``lispd/fastpath/_accel*.so`` in a tree older than issue 20),
e.g. the commit before the fix, to compare: its stalls are measured by the tick of this module
(an older lispd may report none).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from pathlib import Path
from typing import Any

REPO = str(Path(__file__).resolve().parent.parent)
if REPO not in sys.path:  # run as a script (rtr1's lispd from another tree): lispd.api below
    sys.path.append(REPO)

from lispd.api.client import ControlError, request  # noqa: E402  (the client only)

SPOOFED = IPv4Address("198.18.0.1")  # the first RLOC of the preloaded entries
FLOOD_PORTS = (50001, 50002)
KEYS = {1: "flood-key-one", 2: "flood-key-two"}
TICK = 0.01  # seconds between two ticks of this module's own loop-lag measurement
_REPLY = re.compile(r"seq=(\d+) time=([\d.]+) ms")


# --- inside rtr1: the RTR with a preloaded map-cache -------------------------------------------


def preload_entries(prefixes: int, per_rloc: int, now: float, seed: int = 19) -> Iterable[Any]:
    """``prefixes`` learned map-cache entries (see the module docstring), made on the fly."""
    from lispd.mapcache import MapCacheEntry, RlocEntry

    rng = random.Random(seed)
    rloc_count = max(1, prefixes // per_rloc)
    rlocs = [RlocEntry(IPv4Address(int(SPOOFED) + k), 1, 100) for k in range(rloc_count)]
    seen: set[tuple[int, int, int]] = set()
    made = 0
    while made < prefixes:
        if rng.random() < 2 / 3:
            plen = rng.randint(16, 32)
            value = (0x0A000000 | rng.getrandbits(24)) >> (32 - plen) << (32 - plen)
            key = (4, plen, value)
            prefix: IPv4Network | IPv6Network = IPv4Network((value, plen))
        else:
            plen = rng.randint(32, 128)
            value = ((0xFD << 120) | rng.getrandbits(120)) >> (128 - plen) << (128 - plen)
            key = (6, plen, value)
            prefix = IPv6Network((value, plen))
        if key in seen:
            continue
        seen.add(key)
        rloc = rlocs[made % rloc_count]
        made += 1
        yield MapCacheEntry(0, prefix, (rloc,), ttl=86400.0, created=now, source="map-reply")


class LagFile:
    """This module's own measure of the loop's stalls, independent of lispd's: a tick every
    :data:`TICK` seconds notes how late it runs; once a second the largest lateness of that
    second goes to a JSON file (``[[start, end, max lag s, ticks], ...]``, monotonic times: the
    second runs from ``start`` to ``end``, longer when the loop stalled)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.seconds: list[tuple[float, float, float, int]] = []
        self.due = 0.0
        self.second_start = 0.0
        self.second_max = 0.0
        self.second_ticks = 0

    def start(self) -> None:
        """Arm the first tick (on the running loop)."""
        now = time.monotonic()
        self.due = now + TICK
        self.second_start = now
        asyncio.get_running_loop().call_later(TICK, self.tick)

    def tick(self) -> None:
        """Note this tick's lateness; write the file once a second."""
        now = time.monotonic()
        self.second_max = max(self.second_max, now - self.due)
        self.second_ticks += 1
        if now - self.second_start >= 1.0:
            self.seconds.append(
                (round(self.second_start, 3), round(now, 3), round(self.second_max, 6),
                 self.second_ticks)
            )  # fmt: skip
            self.second_start, self.second_max, self.second_ticks = now, 0.0, 0
            tmp = f"{self.path}.tmp"
            with open(tmp, "w") as fh:
                json.dump(self.seconds, fh)
            os.replace(tmp, self.path)
        self.due = now + TICK
        asyncio.get_running_loop().call_later(TICK, self.tick)


def run_rtr(args: argparse.Namespace) -> int:
    """Build the daemon from ``args.config`` as ``lispd -c`` does, preload the map-cache, run."""
    from lispd.cli.main import log_formatter
    from lispd.config import load_config
    from lispd.daemon import Daemon

    config = load_config(args.config)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(log_formatter(False))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(config.daemon.logging_level)
    log = logging.getLogger("lispd.benchmark")
    daemon = Daemon(config)
    started = time.monotonic()
    for entry in preload_entries(args.prefixes, args.per_rloc, daemon.clock()):
        daemon.node.mapcache.add(entry)
    log.info(
        "benchmark preloaded the map-cache prefixes=%d seconds=%.1f",
        args.prefixes,
        time.monotonic() - started,
    )
    lag = LagFile(args.lag_file) if args.lag_file else None

    async def main() -> None:
        if lag is not None:
            lag.start()
        await daemon.run()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
    return 0


# --- inside ms: the spoofer --------------------------------------------------------------------


def run_flood(args: argparse.Namespace) -> int:
    """Send ``args.rate`` keepalives a second from ``args.source``, alternating between the
    ports of :data:`FLOOD_PORTS`, to ``args.rtr``:4341 for ``args.seconds``."""
    from lispd.wire.data import IID_CONTROL, build_data_header
    from lispd.wire.info import InfoMessage, encode_info

    socks = []
    for port in FLOOD_PORTS:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((args.source, port))
        socks.append(sock)
    source = IPv4Address(args.source)
    target = (args.rtr, 4341)
    start = time.monotonic()
    sent = errors = 0
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= args.seconds:
            break
        due = int(elapsed * args.rate)
        while sent < due:
            info = InfoMessage(nonce=sent + 1, ttl=1440, eid=source, eid_mask_len=32)
            payload = build_data_header((sent + 1) & 0xFFFFFF, IID_CONTROL) + encode_info(info)
            try:
                socks[sent % 2].sendto(payload, target)
            except OSError:
                errors += 1
            sent += 1
        time.sleep(0.0005)
    elapsed = time.monotonic() - start
    with open(args.stats, "w") as fh:
        json.dump({"sent": sent, "errors": errors, "seconds": round(elapsed, 3)}, fh)
    return 0


# --- the benchmark -----------------------------------------------------------------------------


def ms_config(plan: Any, sock: str) -> str:
    """ms: Map-Server and Map-Resolver of both sites, handing out rtr1 to NATed xTRs."""
    sites = "".join(
        f"""
[[site]]
name = "site{s.index}"
key = "{KEYS[s.index]}"
eid-prefixes = [{{ eid-prefix = "{s.prefix_v4}" }}, {{ eid-prefix = "{s.prefix_v6}" }}]
"""
        for s in plan.sites
    )
    return f"""
[daemon]
name = "ms"
roles = ["map-server", "map-resolver"]
control-socket = "{sock}"

[underlay]
rlocs = ["{plan.ms_rloc_v4}"]

[mapping-system]
rtr-rlocs = ["{plan.rtr1_public_v4}"]
{sites}"""


def xtr_config(plan: Any, site: Any, sock: str) -> str:
    """An xTR behind its NAT: NAT traversal, keepalives every second, the EID space resolved."""
    return f"""
[daemon]
name = "{site.xtr}"
roles = ["itr", "etr"]
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

[[map-server]]
address = "{plan.ms_rloc_v4}"
key = "{KEYS[site.index]}"

[[map-resolver]]
address = "{plan.ms_rloc_v4}"

[nat-traversal]
enabled = true
info-interval = 5
keepalive-interval = 1
"""


def rtr_config(plan: Any, sock: str, prefixes: int) -> str:
    """rtr1: the RTR behind cloudnat, room for the preloaded entries, no map-cache probing."""
    return f"""
[daemon]
name = "rtr1"
roles = ["rtr"]
control-socket = "{sock}"

[underlay]
rlocs = ["{plan.rtr1_private_v4}"]

[rtr]
public-rlocs = ["{plan.rtr1_public_v4}"]

[[map-resolver]]
address = "{plan.ms_rloc_v4}"

[probing]
map-cache = false

[limits]
map-cache-entries = {max(100_000, 2 * prefixes)}
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ping_summary(output: str, sent: int) -> dict[str, Any]:
    """Replies and round-trip times from the pinger's output."""
    rtts = sorted(float(m.group(2)) for m in _REPLY.finditer(output))
    out: dict[str, Any] = {"sent": sent, "received": len(rtts), "lost": sent - len(rtts)}
    if rtts:
        out["rtt_ms"] = {
            "median": round(rtts[len(rtts) // 2], 3),
            "p99": round(rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))], 3),
            "max": round(rtts[-1], 3),
        }
    return out


class Bench:
    """The lab, its daemons, and the two measured windows."""

    def __init__(self, lab: Any, plan: Any, args: argparse.Namespace) -> None:
        self.lab, self.plan, self.args = lab, plan, args
        self.socks = {n: str(lab.workdir / f"{n}.sock") for n in ("ms", "rtr1", "gxtr1", "xtr2")}
        self.lag_path = lab.workdir / "rtr1-lag.json"
        self.env = {**os.environ, "PYTHONPATH": REPO}
        self.rtr_pid = 0
        self.worker_pids: list[int] | None = None

    def ask(self, node: str, command: str) -> Any:
        """One control-socket command to ``node``'s lispd."""
        return request(self.socks[node], command, timeout=30)

    def setup(self) -> float:
        """Start the daemons (rtr1 preloaded), wait until both sites can reach each other;
        the seconds rtr1 took to start."""
        lab, plan, args = self.lab, self.plan, self.args
        lab.start_lispd(plan.ms, ms_config(plan, self.socks["ms"]))
        env = {"PYTHONPATH": f"{args.lispd}{os.pathsep}{REPO}"} if args.lispd else None
        script = str(Path(__file__).resolve())
        argv = [sys.executable, script, "rtr", "--prefixes", str(args.prefixes)]
        argv += ["--per-rloc", str(args.per_rloc), "--lag-file", str(self.lag_path)]
        argv += ["-c", "{config}"]
        started = time.monotonic()
        rtr = lab.start_lispd(
            plan.rtr1, rtr_config(plan, self.socks["rtr1"], args.prefixes), argv=argv,
            timeout=args.start_timeout, env=env,
        )  # fmt: skip
        rtr_start = time.monotonic() - started
        self.rtr_pid = rtr.pid
        for site in plan.sites:
            lab.start_lispd(site.xtr, xtr_config(plan, site, self.socks[site.xtr]))
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = len(self.ask("ms", "site")) == 4 and len(self.ask("rtr1", "rtr")) == 2
            except (ControlError, OSError):  # still starting
                ready = False
            if ready:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the sites did not register or rtr1 learned no bindings")
            time.sleep(0.2)
        s1, s2 = plan.sites
        if not lab.ping(s1.host, s2.host_v4, count=5, wait=3.0):
            raise RuntimeError("h1 cannot reach h2 through rtr1")
        # The spoofer's address on ms (nothing routes back to it: nothing needs to).
        lab.run(plan.ms, "ip", "addr", "add", f"{SPOOFED}/32", "dev", plan.ms_if)
        return rtr_start

    def workers(self) -> list[int]:
        """rtr1's fast-path worker processes (asked once: a stalled rtr1 answers late)."""
        if self.worker_pids is None:
            pids = self.patient("version").get("worker-pids", [])
            self.worker_pids = [int(p) for p in pids]
        return self.worker_pids

    def patient(self, command: str, limit: float = 900.0) -> Any:
        """``command`` to rtr1, asked again until it answers (a stalled loop answers late)."""
        deadline = time.monotonic() + limit
        while True:
            try:
                return self.ask("rtr1", command)
            except (ControlError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def sample(self) -> dict[str, Any]:
        """rtr1's counters and loop figures (None when it did not answer within
        ``--answer-timeout``), and its CPU, now."""
        try:
            stats = self.patient("stats", self.args.answer_timeout)
        except (ControlError, OSError):
            stats = None
        pids = self.workers()
        return {
            "t": time.monotonic(),
            "stats": stats,
            "cpu_main": cpu_seconds(self.rtr_pid),
            "cpu_workers": sum(cpu_seconds(p) for p in pids if os.path.exists(f"/proc/{p}")),
        }

    def window(self, seconds: float, flood: bool) -> dict[str, Any]:
        """Ping for ``seconds`` (with the flood when ``flood``); the window's figures."""
        lab, plan, args = self.lab, self.plan, self.args
        s1, s2 = plan.sites
        count = max(1, int(seconds / args.ping_interval))
        before = self.sample()
        flood_stats = lab.workdir / "flood.json"
        flooder = None
        if flood:
            script = str(Path(__file__).resolve())
            flooder = lab.popen(
                plan.ms,
                [sys.executable, script, "flood", "--source", str(SPOOFED), "--rtr",
                 plan.rtr1_public_v4, "--rate", str(args.rate), "--seconds", str(seconds),
                 "--stats", str(flood_stats)],
                stdin=subprocess.DEVNULL, env=self.env,
            )  # fmt: skip
        ping_log = lab.workdir / f"ping-{'flood' if flood else 'quiet'}.txt"
        with ping_log.open("w") as out:  # a file, not a pipe: 3,000 lines would fill a pipe
            pinger = lab.popen(
                s1.host,
                [sys.executable, "-m", "lispd.lab.pinger", "-i", str(args.ping_interval), "-c",
                 str(count), "-W", "2", s2.host_v4],
                stdout=out, stdin=subprocess.DEVNULL, env=self.env,
            )  # fmt: skip
        started = time.monotonic()
        unanswered = 0
        while pinger.poll() is None:  # the control socket goes on answering meanwhile
            time.sleep(1.0)
            try:
                self.ask("rtr1", "stats")
            except (ControlError, OSError):
                unanswered += 1
        out_text = ping_log.read_text()
        ended = time.monotonic()
        if flooder is not None:
            flooder.wait(timeout=seconds + 30)
        after = self.sample()
        figures = self.figures(before, after, started, ended, out_text, count,
                               json.loads(flood_stats.read_text()) if flood else None)  # fmt: skip
        figures["stats_unanswered"] = unanswered
        return figures

    def figures(
        self,
        before: dict[str, Any],
        after: dict[str, Any],
        started: float,
        ended: float,
        ping_output: str,
        count: int,
        flood: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """The difference of two samples, the ping, the stalls of the window."""

        stats_before, stats_after = before["stats"] or {}, after["stats"]

        def delta(section: str, key: str) -> int | None:
            if stats_after is None:
                return None  # rtr1 did not answer: no counters
            now = int(stats_after.get(section, {}).get(key, 0))
            return now - int(stats_before.get(section, {}).get(key, 0))

        wall = after["t"] - before["t"]
        ticks, silent = read_lag(self.lag_path, started, ended)
        loop_before = stats_before.get("loop", {})
        loop_after = stats_after.get("loop", {}) if stats_after is not None else {}
        out: dict[str, Any] = {
            "seconds": round(ended - started, 1),
            "ping": ping_summary(ping_output, count),
            "rtr1_answered": stats_after is not None,
            "keepalives": delta("packets", "rtr.nat-keepalive.packets"),
            "binding_changes": delta("packets", "rtr.nat-binding-change.packets"),
            "rate_limited": delta("drops", "nat-binding-change-rate-limited"),
            "claims_refused": delta("drops", "nat-binding-eid-held"),
            "records_reissued": delta("fastpath", "records-reissued"),
            "cpu_main_pct": round(100 * (after["cpu_main"] - before["cpu_main"]) / wall, 1),
            "cpu_workers_pct": round(
                100 * (after["cpu_workers"] - before["cpu_workers"]) / wall, 1
            ),
            # A loop still stuck when the window ended wrote no record for it: its silence
            # since the last record is a stall too.
            "tick_max_lag_ms": round(max([t[2] for t in ticks] + [silent]) * 1000, 1),
            "tick_seconds": len(ticks),
        }
        if loop_after:  # lispd's own figures: how many of its ticks were late, how late
            out["lispd_ticks"] = delta("loop", "ticks")
            out["lispd_ticks_over"] = {
                key[len("lag-over-") :]: int(value) - int(loop_before.get(key, 0))
                for key, value in loop_after.items()
                if key.startswith("lag-over-")
            }
        if flood is not None:
            out["flood"] = flood
        return out


def read_lag(
    path: Path, start: float, end: float
) -> tuple[list[tuple[float, float, float, int]], float]:
    """The records of the tick in rtr1 (see :class:`LagFile`) overlapping [start, end], and
    how long before ``end`` the last record ends (0 when one ends after it; a stalled loop
    writes none)."""
    try:
        raw = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return [], 0.0
    seconds = [(float(a), float(b), float(lag), int(n)) for a, b, lag, n in raw]
    inside = [s for s in seconds if s[0] < end and s[1] > start]
    last = max((s[1] for s in seconds), default=start)
    return inside, max(0.0, end - max(last, start) - 1.0)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Build the lab, start everything, measure both windows, tear down."""
    from lispd.lab import Lab, nat_topology

    plan = nat_topology()
    workdir = Path(tempfile.mkdtemp(prefix=f"lispd-natflood-{os.getpid()}-"))
    with Lab(plan.topology, workdir=workdir) as lab:
        bench = Bench(lab, plan, args)
        rtr_start = bench.setup()
        quiet = bench.window(args.quiet_seconds, flood=False) if args.quiet_seconds else None
        flood = bench.window(args.seconds, flood=True)
        try:
            bindings = bench.patient("rtr", args.answer_timeout)
        except (ControlError, OSError):
            bindings = None
        result = {
            "prefixes": args.prefixes,
            "per_rloc": args.per_rloc,
            "rate": args.rate,
            "ping_interval_ms": args.ping_interval * 1000,
            "lispd": args.lispd or "this tree",
            "rtr_start_s": round(rtr_start, 1),
            "rtr_rss_mb": round(rss_mb(bench.rtr_pid), 1),
            "quiet": quiet,
            "flood": flood,
            "bindings": bindings,
        }
    if os.environ.get("LISPD_LAB_KEEP", "") in ("", "0"):
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    result["failures"] = failures(result, args.max_stall_ms)
    return result


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def failures(result: dict[str, Any], max_stall_ms: float) -> list[str]:
    """What makes the run fail: a lost ping during the flood, a stall over the limit."""
    out = []
    flood = result["flood"]
    if not flood["rtr1_answered"]:
        out.append("rtr1 did not answer its control socket after the flood")
    if flood["ping"]["lost"]:
        out.append(f"{flood['ping']['lost']} of {flood['ping']['sent']} pings lost in the flood")
    if flood["tick_max_lag_ms"] > max_stall_ms:
        out.append(f"the loop stalled {flood['tick_max_lag_ms']} ms (limit {max_stall_ms} ms)")
    late = {k: n for k, n in flood.get("lispd_ticks_over", {}).items() if n}
    over = [k for k in late if float(k.removesuffix("ms")) >= max_stall_ms]
    if over:
        out.append(f"lispd counted ticks late by more than {', '.join(over)}: {late}")
    if not flood["tick_seconds"]:
        out.append("no loop-lag figures from rtr1")
    return out


def print_report(r: dict[str, Any]) -> None:
    """The figures, for people."""
    print(
        f"nat flood: rtr1 with {r['prefixes']} preloaded prefixes ({r['per_rloc']} per RLOC), "
        f"started in {r['rtr_start_s']} s, RSS {r['rtr_rss_mb']} MB; lispd from {r['lispd']}"
    )
    for name in ("quiet", "flood"):
        w = r[name]
        if w is None:
            continue
        p = w["ping"]
        rtt = p.get("rtt_ms", {})
        line = (
            f"{name:<6}{w['seconds']:>5} s  ping every {r['ping_interval_ms']:g} ms: "
            f"{p['received']}/{p['sent']} answered, {p['lost']} lost, RTT ms median "
            f"{rtt.get('median')} p99 {rtt.get('p99')} max {rtt.get('max')}"
        )
        print(line)
        if "flood" in w and not w["rtr1_answered"]:
            f = w["flood"]
            print(
                f"        keepalives sent {f['sent']} ({f['sent'] / f['seconds']:.0f}/s); rtr1 "
                f"did not answer its control socket within the answer timeout: no counters"
            )
        elif "flood" in w:
            f = w["flood"]
            print(
                f"        keepalives sent {f['sent']} ({f['sent'] / f['seconds']:.0f}/s), "
                f"counted by rtr1 {w['keepalives']}, binding changes accepted "
                f"{w['binding_changes']}, claims refused (holder alive) {w['claims_refused']}, "
                f"refused (rate-limited) {w['rate_limited']}, "
                f"records re-issued {w['records_reissued']}"
            )
        if "lispd_ticks" in w:
            late = ", ".join(f"{n} over {k}" for k, n in w["lispd_ticks_over"].items() if n)
            lispd_lag = f"lispd: {w['lispd_ticks']} ticks, {late or 'none over 5ms'}"
        else:
            lispd_lag = "lispd: not reported"
        print(
            f"        loop stall (lag of a 10 ms tick): this module's tick max "
            f"{w['tick_max_lag_ms']} ms over {w['tick_seconds']} s; {lispd_lag}; CPU main "
            f"{w['cpu_main_pct']} %, worker {w['cpu_workers_pct']} %; stats requests "
            f"unanswered {w['stats_unanswered']}"
        )
    print("FAILED:\n  " + "\n  ".join(r["failures"]) if r["failures"] else "OK")


def main(argv: list[str] | None = None) -> int:
    """The benchmark, or (first argument ``rtr`` / ``flood``) one of its processes."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "rtr":
        p = argparse.ArgumentParser(prog="nat_flood rtr")
        p.add_argument("--prefixes", type=int, required=True)
        p.add_argument("--per-rloc", type=int, required=True)
        p.add_argument("--lag-file", default="")
        p.add_argument("-c", "--config", required=True)
        return run_rtr(p.parse_args(argv[1:]))
    if argv and argv[0] == "flood":
        p = argparse.ArgumentParser(prog="nat_flood flood")
        p.add_argument("--source", required=True)
        p.add_argument("--rtr", required=True)
        p.add_argument("--rate", type=float, required=True)
        p.add_argument("--seconds", type=float, required=True)
        p.add_argument("--stats", required=True)
        return run_flood(p.parse_args(argv[1:]))
    parser = argparse.ArgumentParser(prog="python -m benchmarks.nat_flood")
    parser.add_argument("--prefixes", type=int, default=1_000_000)
    parser.add_argument("--per-rloc", type=int, default=100, help="entries per RLOC (100)")
    parser.add_argument("--rate", type=float, default=1000.0, help="keepalives a second")
    parser.add_argument("--seconds", type=float, default=30.0, help="the flood window")
    parser.add_argument("--quiet-seconds", type=float, default=10.0, help="0: none")
    parser.add_argument("--ping-interval", type=float, default=0.01)
    parser.add_argument("--max-stall-ms", type=float, default=20.0)
    parser.add_argument("--start-timeout", type=float, default=900.0)
    parser.add_argument(
        "--answer-timeout", type=float, default=120.0,
        help="seconds rtr1 may take to answer after a window (then: no counters)",
    )  # fmt: skip
    parser.add_argument("--lispd", default="", help="run rtr1 from this source tree")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    if args.prefixes < 1 or args.per_rloc < 1 or args.rate <= 0 or args.seconds <= 0:
        parser.error("--prefixes, --per-rloc, --rate and --seconds must be positive")
    result = run_benchmark(args)
    print_report(result)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
