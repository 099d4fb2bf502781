"""The benchmark suite behind ``python -m benchmarks``: every path measured in one lab.

One :class:`lispd.lab.Lab` of :func:`lispd.lab.two_site_topology` (host A - xTR1 - R - xTR2 -
host B) is built once; each path of :data:`PATHS` is brought up on it in turn, measured
(:data:`TESTS`) and taken down again:

* ``routed``: the kernel forwards natively (static routes between the sites);
* ``vxlan``: the kernel's own UDP encapsulation: a VXLAN device with ``dstport 4341`` on each
  xTR, remote = the other xTR's RLOC, the remote site routed over it (link 192.0.2.248/30);
* ``python``, ``compiled``, ``compiled-1``, ``compiled-gso``, ``compiled-gso-peers``,
  ``compiled-cut``, ``compiled-nooffload``: lispd ITR+ETR on both xTRs with static map-caches
  pointing at each other, ``[dataplane] fastpath`` as named (``workers = 1``: a single engine
  for ``compiled-1``, the default of one engine per core otherwise; ``offloads = "gso"`` (UDP
  GSO sends) for ``compiled-gso``, ``"off"`` for ``compiled-nooffload``, the default ``"auto"``
  otherwise; ``gso-rlocs`` = the lispd peers for ``compiled-gso-peers``; for ``compiled-cut``
  the lispd nodes' veths have UDP segmentation off, so the kernel cuts bursts before them and
  ``"auto"`` sends bursts);
* ``rtr-*``: the same, with both xTRs mapping the other site to R (192.0.2.1), where
  lispd runs as RTR: ITR -> RTR -> ETR, every run checked against the daemons' counters
  (:func:`benchmarks.dataplane.check_rtr_counters`).

Each lispd process is asked how many engines it runs (``version`` -> ``engines``), and every
run records how many packets each engine forwarded (``stats`` -> ``engines``): how the kernel
spread the flows over them.

A lispd variant that does not start (``fastpath = "compiled"`` before the compiled path was
built), or starts but does not run the compiled path, is reported ``not available`` with the
reason; the suite carries on.  Every timed run records the CPU other processes took
(:class:`benchmarks.cpuload.OtherLoad`) and is repeated when disturbed; every run on a lispd
path records the CPU time and data-plane counters of each lispd process.
"""

from __future__ import annotations

import importlib
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import lispd
from benchmarks import report
from benchmarks.cpuload import CLK_TCK, MachineCpu, OtherLoad
from benchmarks.dataplane import (
    CheckFailed,
    check_rtr_counters,
    lispd_config,
    plain_routes,
    rtr_config,
)
from benchmarks.traffic import build_udpgen, handoff, iperf_tcp, ping, udp_flood
from lispd.api.client import ControlError, request
from lispd.lab import (
    DaemonHandle,
    DaemonStartError,
    Lab,
    LabError,
    TwoSitePlan,
    two_site_topology,
)

# The counters of packets a lispd process handled on the data plane.
DATA_COUNTERS = ("itr.encap.packets", "etr.decap.packets", "rtr.reencap.packets")
# Seconds to let in-flight packets land before the counters are read after a run.
SETTLE_S = 0.2
VXLAN_DEV = "vx4341"
VXLAN_ADDRS = ("192.0.2.249", "192.0.2.250")  # xTR1's and xTR2's end of the tunnel's /30


@dataclass(frozen=True)
class PathSpec:
    """One path to measure: a kernel baseline or a lispd variant."""

    name: str
    label: str
    kind: str  # "kernel" or "lispd"
    fastpath: str = ""
    offloads: str = "auto"  # [dataplane] offloads of a compiled variant
    via_rtr: bool = False
    workers: int = 0  # [dataplane] workers of a compiled variant: 0 = one engine per core
    gso_peer: bool = False  # [dataplane] gso-rlocs = the other xTR's (and RTR's) RLOC
    busy_poll: int | None = None  # [dataplane] busy-poll (us) of a compiled variant; None: default
    features: tuple[tuple[str, bool], ...] = ()  # ethtool -K of the lispd nodes' veths


CUT = (("tx-udp-segmentation", False),)
"""The kernel cuts UDP GSO bursts before the veth, as before a card."""

PATHS: tuple[PathSpec, ...] = (
    PathSpec("routed", "kernel, routed (no tunnel)", "kernel"),
    PathSpec("vxlan", "kernel VXLAN on UDP 4341", "kernel"),
    PathSpec("python", "lispd ITR->ETR, python", "lispd", "python"),
    PathSpec("compiled", "lispd ITR->ETR, compiled", "lispd", "compiled"),
    PathSpec("compiled-1", "lispd ITR->ETR, compiled, one engine", "lispd", "compiled", workers=1),
    PathSpec("compiled-gso", "lispd ITR->ETR, compiled, UDP GSO sends", "lispd", "compiled", "gso"),
    PathSpec(
        "compiled-gso-peers",
        "lispd ITR->ETR, compiled, UDP GSO to the lispd peer only (gso-rlocs)",
        "lispd",
        "compiled",
        gso_peer=True,
    ),
    PathSpec(
        "compiled-cut",
        "lispd ITR->ETR, compiled, veths without UDP segmentation (auto: bursts the kernel cuts)",
        "lispd",
        "compiled",
        features=CUT,
    ),
    PathSpec(
        "compiled-nooffload", "lispd ITR->ETR, compiled, offloads off", "lispd", "compiled", "off"
    ),
    PathSpec("rtr-python", "lispd ITR->RTR->ETR, python", "lispd", "python", via_rtr=True),
    PathSpec("rtr-compiled", "lispd ITR->RTR->ETR, compiled", "lispd", "compiled", via_rtr=True),
    PathSpec(
        "rtr-compiled-1",
        "lispd ITR->RTR->ETR, compiled, one engine",
        "lispd",
        "compiled",
        via_rtr=True,
        workers=1,
    ),
    PathSpec(
        "rtr-compiled-gso",
        "lispd ITR->RTR->ETR, compiled, UDP GSO sends",
        "lispd",
        "compiled",
        "gso",
        True,
    ),
    PathSpec(
        "rtr-compiled-cut",
        "lispd ITR->RTR->ETR, compiled, veths without UDP segmentation",
        "lispd",
        "compiled",
        via_rtr=True,
        features=CUT,
    ),
    PathSpec(
        "rtr-compiled-nooffload",
        "lispd ITR->RTR->ETR, compiled, offloads off",
        "lispd",
        "compiled",
        "off",
        True,
    ),
)
PATH_NAMES = tuple(p.name for p in PATHS)
QUICK_PATHS = ("routed", "vxlan", "python", "compiled", "rtr-python")
TESTS = ("latency", "tcp1", "tcp4", "udp64", "udp1400")
SECTIONS = ("mapcache",)
UDP_SIZES = {"udp64": 64, "udp1400": 1400}


@dataclass
class Settings:
    """What to measure and how long; see ``python -m benchmarks --help``."""

    seconds: float = 2.0
    runs: int = 2
    half_runs: int = 1
    ping_count: int = 200
    ping_interval_ms: float = 5.0
    max_other_cpu: float = 0.1
    retries: int = 2
    quick: bool = False
    paths: tuple[str, ...] = PATH_NAMES
    tests: tuple[str, ...] = TESTS
    mapcache: bool = True
    udp_idle_s: float = 0.3
    flows: int = 16  # UDP flows (source ports) of the floods, shared by the senders
    flow_run: int = 1  # datagrams in a row per flow (1: interleaved datagram by datagram)
    senders: int = 0  # 0: one per CPU for kernel paths, one for lispd paths (udp_senders)
    busy_poll: int | None = None  # [dataplane] busy-poll of every compiled path; None: default

    def as_json(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict."""
        return dict(self.__dict__)


class NotAvailable(Exception):
    """A lispd variant that this tree cannot run (e.g. the compiled fast path not built)."""


class PathFailed(Exception):
    """A path that came up but could not be measured (a check failed, a daemon died)."""


# -- lispd processes: CPU time and counters ----------------------------------------------


def parse_stat(text: str) -> tuple[int, int]:
    """``(ppid, CPU clock ticks)`` from the text of ``/proc/PID/stat``: the ticks are utime +
    stime of the process and cutime + cstime, those of its children that exited and were
    waited for."""
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): ppid is field 4, utime/stime/cutime/cstime 14-17
    return int(fields[1]), sum(int(f) for f in fields[11:15])


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user+system) of ``pid`` and of all its descendants alive now, and of
    those that exited and were waited for (a lispd with worker processes counts them all,
    also a worker that died and was restarted during a run)."""
    ticks = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/stat") as fh:
                ticks += parse_stat(fh.read())[1]
        except (OSError, ValueError):
            continue
    return ticks / CLK_TCK


@dataclass
class Daemon:
    """A lispd process of a path: its node label ("xtr1", "rtr", "xtr2"), handle and control
    socket."""

    label: str
    handle: DaemonHandle
    sock: str

    def sample(self) -> tuple[float, dict[str, int]]:
        """CPU seconds so far and the ``packets`` counters, with the packets each engine
        forwarded (``engine:main``, ``engine:worker1``...) and the workers restarted
        (``worker-restarts``) when lispd runs several engines."""
        stats = request(self.sock, "stats")
        counters: dict[str, int] = dict(stats["packets"])
        for engine, packets in (stats.get("engines") or {}).items():
            counters[f"engine:{engine}"] = int(packets)
        restarts = (stats.get("fastpath") or {}).get("worker-restarts")
        if isinstance(restarts, int):
            counters["worker-restarts"] = restarts
        return tree_cpu_seconds(self.handle.pid), counters

    def engines(self) -> int | None:
        """How many fast-path engines this lispd runs (``version`` -> ``engines``), None when
        it does not say."""
        try:
            answer = request(self.sock, "version")
        except ControlError:
            return None
        engines = answer.get("engines") if isinstance(answer, dict) else None
        return engines if isinstance(engines, int) else None


@dataclass
class PathUp:
    """A path brought up in the lab: its lispd processes (none for kernel paths)."""

    spec: PathSpec
    daemons: list[Daemon] = field(default_factory=list)
    note: str = ""
    engines: dict[str, int | None] = field(default_factory=dict)  # per daemon label

    def sample(self) -> dict[str, tuple[float, dict[str, int]]]:
        """One :meth:`Daemon.sample` per daemon, by label."""
        return {d.label: d.sample() for d in self.daemons}

    def check_alive(self) -> None:
        """Raise :class:`PathFailed` when a lispd process has exited."""
        for d in self.daemons:
            if not d.handle.running():
                raise PathFailed(
                    f"lispd on {d.label} exited ({d.handle.returncode}): "
                    f"{d.handle.log_tail(5).strip()}"
                )


def daemon_deltas(
    before: dict[str, tuple[float, dict[str, int]]], after: dict[str, tuple[float, dict[str, int]]]
) -> dict[str, dict[str, Any]]:
    """Per daemon: the CPU seconds and data-plane packets (:data:`DATA_COUNTERS`) between two
    samples; with several engines also the packets each forwarded (``engines``) and the
    workers restarted (``worker_restarts``)."""
    out: dict[str, dict[str, Any]] = {}
    for label, (cpu1, c1) in after.items():
        cpu0, c0 = before[label]
        packets = sum(c1.get(k, 0) - c0.get(k, 0) for k in DATA_COUNTERS)
        entry: dict[str, Any] = {"cpu_s": round(cpu1 - cpu0, 3), "packets": packets}
        engines = {
            k.split(":", 1)[1]: v - c0.get(k, 0) for k, v in c1.items() if k.startswith("engine:")
        }
        if engines:
            entry["engines"] = engines
        if "worker-restarts" in c1:
            entry["worker_restarts"] = c1["worker-restarts"] - c0.get("worker-restarts", 0)
        out[label] = entry
    return out


# -- bringing paths up and down ------------------------------------------------------------


def vxlan_tunnel(lab: Lab, plan: TwoSitePlan, action: str) -> None:
    """Add (``"add"``) or remove (``"del"``) the kernel VXLAN tunnel between the xTRs: device
    :data:`VXLAN_DEV` with VNI 4341 on UDP 4341 over the RLOC links, addresses from
    :data:`VXLAN_ADDRS`, each remote site routed over it."""
    ends = (
        (plan.xtr1, plan.xtr1_rloc_v4, plan.xtr2_rloc_v4, plan.xtr1_rloc_if, plan.site_b_prefix_v4),
        (plan.xtr2, plan.xtr2_rloc_v4, plan.xtr1_rloc_v4, plan.xtr2_rloc_if, plan.site_a_prefix_v4),
    )
    for me, (node, local, remote, dev, prefix) in enumerate(ends):
        if action == "del":
            lab.run(node, "ip", "link", "del", VXLAN_DEV, check=False)
            continue
        device = f"type vxlan id 4341 local {local} remote {remote} dstport 4341 dev {dev}"
        lab.run(node, "ip", "link", "add", VXLAN_DEV, *device.split())
        lab.run(node, "ip", "addr", "add", f"{VXLAN_ADDRS[me]}/30", "dev", VXLAN_DEV)
        lab.run(node, "ip", "link", "set", VXLAN_DEV, "up")
        lab.run(node, "ip", "route", "add", prefix, "via", VXLAN_ADDRS[1 - me])


def dataplane_table(spec: PathSpec, peers: tuple[str, ...] = ()) -> str:
    """The ``[dataplane]`` table of a lispd variant (``peers``: every lispd RLOC of the lab,
    its ``gso-rlocs`` when the variant sends GSO bursts to lispd peers only)."""
    text = f'\n[dataplane]\nfastpath = "{spec.fastpath}"\n'
    if spec.fastpath == "compiled":
        text += f'offloads = "{spec.offloads}"\n'
        text += f"workers = {spec.workers}\n"
        if spec.gso_peer:
            text += f"gso-rlocs = [{', '.join(repr(p) for p in peers)}]\n".replace("'", '"')
        if spec.busy_poll is not None:
            text += f"busy-poll = {spec.busy_poll}\n"
    return text


_LOG_PREFIX = re.compile(  # logfmt (time=...) or the older "2026-11-23 20:43:14,100" lines
    r"^(?:time=\S+|\d{4}-\d\d-\d\d[ T][\d:]+(?:[,.]\d+)?)\s+(?:level=\S+\s+)?"
    r"(?:logger=\S+\s+)?"
)


def start_reason(log_tail: str, fallback: str = "") -> str:
    """A one-line reason from a daemon's log after a failed start: its last line naming an
    error (else its last line, else ``fallback``), without the timestamp and level."""
    lines = [line.strip() for line in log_tail.splitlines() if line.strip()]
    chosen = next(
        (line for line in reversed(lines) if "error" in line.lower() or "not built" in line),
        lines[-1] if lines else fallback,
    )
    return _LOG_PREFIX.sub("", chosen)


def tree_pids(pid: int) -> list[int]:
    """``pid`` and the processes descended from it that are alive now."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as fh:
                    parents[int(entry.name)] = parse_stat(fh.read())[0]
            except (OSError, ValueError):
                continue
    tree, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in tree]
        tree += children
        frontier += children
    return tree


def loaded_accelerator(pid: int) -> str | None:
    """The compiled fast-path module (a shared object under ``lispd/engine/``) that the
    process ``pid`` or one of its descendants has mapped, or None."""
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/maps") as fh:
                for line in fh:
                    path = line.split(maxsplit=5)[-1].strip()
                    if "/lispd/engine/" in path and ".so" in path:
                        return path
        except OSError:
            continue
    return None


def active_fastpath(sock: str) -> str | None:
    """The fast path a running lispd says it uses (a ``fastpath`` key in its ``version`` or
    ``stats`` answer, or in a ``dataplane`` dict there), or None when it does not say."""
    for command in ("version", "stats"):
        try:
            answer = request(sock, command)
        except ControlError:
            continue
        if not isinstance(answer, dict):
            continue
        for holder in (answer, answer.get("dataplane")):
            if isinstance(holder, dict) and isinstance(holder.get("fastpath"), str):
                return str(holder["fastpath"])
    return None


@contextmanager
def bring_up(lab: Lab, plan: TwoSitePlan, spec: PathSpec) -> Iterator[PathUp]:
    """Set up ``spec`` in the lab, yield it, take it down again (also on errors).

    Raises :class:`NotAvailable` for a lispd variant this tree cannot run.
    """
    if spec.name == "routed":
        plain_routes(lab, plan, "add")
        try:
            yield PathUp(spec)
        finally:
            plain_routes(lab, plan, "del")
        return
    if spec.name == "vxlan":
        try:
            vxlan_tunnel(lab, plan, "add")
            yield PathUp(spec)
        finally:
            vxlan_tunnel(lab, plan, "del")
        return
    socks = {n: str(lab.workdir / f"{spec.name}-{n}.sock") for n in ("xtr1", "rtr", "xtr2")}
    peers = (plan.xtr1_rloc_v4, plan.xtr2_rloc_v4, plan.r_xtr1_v4, plan.r_xtr2_v4)
    extra = dataplane_table(spec, peers)
    via = plan.r_xtr1_v4 if spec.via_rtr else None
    wanted = [("xtr1", plan.xtr1, lispd_config(plan, 1, via, socks["xtr1"], extra))]
    if spec.via_rtr:
        wanted.append(("rtr", plan.r, rtr_config(plan, socks["rtr"], extra)))
    wanted.append(("xtr2", plan.xtr2, lispd_config(plan, 2, via, socks["xtr2"], extra)))
    up = PathUp(spec)
    changed = [node for _, node, _ in wanted] if spec.features else []
    try:
        for node in changed:
            lab.set_features(node, dict(spec.features))
        for label, node, config in wanted:
            try:
                handle = lab.start_lispd(node, config, name=spec.name)
            except DaemonStartError as exc:
                if spec.fastpath == "compiled":
                    raise NotAvailable(
                        "lispd with fastpath = compiled did not start: "
                        + start_reason(exc.log_tail, str(exc).splitlines()[0])
                    ) from None
                raise
            up.daemons.append(Daemon(label, handle, socks[label]))
        if spec.fastpath == "compiled":
            says = active_fastpath(socks["xtr1"])
            if says is not None and says != "compiled":
                raise NotAvailable(f"lispd started but reports fastpath {says!r}")
            if says is None:
                accel = loaded_accelerator(up.daemons[0].handle.pid)
                if accel is None:
                    raise NotAvailable(
                        "lispd started with fastpath = compiled but neither says which fast "
                        "path it runs nor has a compiled module of lispd/engine loaded "
                        "(/proc/PID/maps): it runs the Python path"
                    )
                up.note = f"lispd does not report its fast path; it has {Path(accel).name} loaded"
        up.engines = {d.label: d.engines() for d in up.daemons}
        yield up
    finally:
        for d in up.daemons:
            d.handle.stop()
        for node in changed:  # back to what the lab made
            lab.set_features(node, {name: not on for name, on in spec.features})


# -- measuring -----------------------------------------------------------------------------


def cost_per(run: dict[str, Any], moved: str, unit: float) -> float | None:
    """Whole-machine CPU seconds of one run per ``unit`` of what it moved (``run[moved]``:
    bytes received for TCP, datagrams received for UDP); None when nothing moved or the run
    has no machine sample."""
    cpu, amount = run.get("machine_cpu_s"), run.get(moved)
    if not isinstance(cpu, int | float) or not isinstance(amount, int | float) or amount <= 0:
        return None
    return float(cpu) * unit / float(amount)


class Suite:
    """Runs the selected paths and tests in one lab and collects the results."""

    def __init__(self, settings: Settings, log: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self.lab: Lab | None = None
        self.plan = two_site_topology()
        self.udpgen: Path | None = None

    # one timed run, repeated while other processes disturb it

    def _attempt(self, up: PathUp, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        assert self.lab is not None
        before = up.sample() if up.daemons else {}
        load = OtherLoad(self.lab.namespaces())
        load.start()
        machine = MachineCpu()
        machine.start()
        started = time.monotonic()
        result = fn()
        wall = time.monotonic() - started
        result.update(machine.stop())
        result.update(load.stop())
        result["wall_s"] = round(wall, 3)
        result["disturbed"] = disturbance(result) > self.settings.max_other_cpu * wall
        if up.daemons:
            up.check_alive()
            time.sleep(SETTLE_S)
            after = up.sample()
            result["daemons"] = daemon_deltas(before, after)
            if up.spec.via_rtr:
                try:
                    result["counters"] = check_rtr_counters(
                        {k: v[1] for k, v in before.items()},
                        {k: v[1] for k, v in after.items()},
                        result,
                    )
                except CheckFailed as exc:
                    raise PathFailed(str(exc)) from None
        return result

    def _runs(
        self,
        up: PathUp,
        test: str,
        fn: Callable[[], dict[str, Any]],
        runs: int,
        show: Callable[[dict[str, Any]], str],
    ) -> list[dict[str, Any]]:
        kept = []
        for k in range(runs):
            attempts = []
            for attempt in range(self.settings.retries + 1):
                r = self._attempt(up, fn)
                attempts.append(r)
                note = f"other processes {r['other_cpu_s']:.2f} cpu-s, steal {r['steal_s']:.2f} s"
                if r["disturbed"]:
                    note += f" DISTURBED (top: {r['top']})"
                self.log(f"{up.spec.name} {test} run {k + 1}/{runs}: {show(r)} ({note})")
                if not r["disturbed"] or attempt == self.settings.retries:
                    break
                self.log(f"{up.spec.name} {test} run {k + 1}: repeating")
            kept.append(min(attempts, key=disturbance))
        return kept

    # the tests

    def _latency(self, up: PathUp) -> dict[str, Any]:
        assert self.lab is not None and self.udpgen is not None
        s, lab, udpgen = self.settings, self.lab, self.udpgen

        def one() -> dict[str, Any]:
            return ping(
                lab,
                udpgen,
                self.plan.host_a,
                self.plan.host_b_v4,
                count=s.ping_count,
                interval_ms=s.ping_interval_ms,
            )

        def show(r: dict[str, Any]) -> str:
            return f"p50 {r.get('p50_us', '-')} us, p99 {r.get('p99_us', '-')} us"

        runs = self._runs(up, "latency", one, s.runs, show)
        answered = [r for r in runs if r.get("count")]
        if not answered:
            return {"error": "no echo reply", "runs": runs}
        out: dict[str, Any] = {
            key: round(statistics.median(r[key] for r in answered), 1)
            for key in ("p50_us", "p99_us", "mean_us")
        }
        out["p50_min_us"] = min(r["p50_us"] for r in answered)
        out["p50_max_us"] = max(r["p50_us"] for r in answered)
        out["sent"] = sum(r["sent"] for r in runs)
        out["lost"] = sum(r["lost"] for r in runs)
        out["runs"] = runs
        return out

    def _tcp(self, up: PathUp, streams: int) -> dict[str, Any]:
        assert self.lab is not None
        lab, p = self.lab, self.plan

        def one() -> dict[str, Any]:
            return iperf_tcp(
                lab, p.host_a, p.host_b, p.host_b_v4, seconds=self.settings.seconds, streams=streams
            )

        runs = self._runs(
            up, f"tcp{streams}", one, self.settings.runs, lambda r: f"{r['gbps']:.3f} Gbit/s"
        )
        values = [r["gbps"] for r in runs]
        out: dict[str, Any] = {
            "gbps": round(statistics.median(values), 4),
            "min": min(values),
            "max": max(values),
            "streams": streams,
            "runs": runs,
        }
        per_gb = [v for r in runs if (v := cost_per(r, "bytes", 1e9)) is not None]
        if per_gb and len(per_gb) == len(runs):
            out["machine_cpu_s_per_gb"] = round(statistics.median(per_gb), 3)
        return out

    def _udp(self, up: PathUp, test: str) -> dict[str, Any]:
        assert self.lab is not None and self.udpgen is not None
        s, lab, p, udpgen, size = self.settings, self.lab, self.plan, self.udpgen, UDP_SIZES[test]

        def flood(rate: float, senders: int) -> Callable[[], dict[str, Any]]:
            def one() -> dict[str, Any]:
                return udp_flood(
                    lab,
                    udpgen,
                    p.host_a,
                    p.host_b,
                    p.host_b_v4,
                    size=size,
                    seconds=s.seconds,
                    rate_pps=rate,
                    flows=s.flows,
                    senders=senders,
                    idle=s.udp_idle_s,
                    flow_run=s.flow_run,
                )

            return one

        def show(r: dict[str, Any]) -> str:
            return (
                f"offered {r['offered_pps'] / 1e3:.1f} kpps, received "
                f"{r['received_pps'] / 1e3:.1f} kpps, loss {r['loss_pct']:.2f}%"
            )

        senders = udp_senders(s.senders, up.spec)
        runs = self._runs(up, f"{test} max", flood(0.0, senders), s.runs, show)
        received = [r["received_pps"] for r in runs]
        best = statistics.median(received)
        out: dict[str, Any] = {
            "payload_bytes": size,
            "senders": senders,
            "flows": max(s.flows, senders),
            "flow_run": s.flow_run,
            "max": {
                "received_pps": round(best, 1),
                "min": min(received),
                "max": max(received),
                "offered_pps": round(statistics.median(r["offered_pps"] for r in runs), 1),
                "loss_pct": round(statistics.median(r["loss_pct"] for r in runs), 4),
                "runs": runs,
            },
        }
        per_mpkt = [v for r in runs if (v := cost_per(r, "received", 1e6)) is not None]
        if per_mpkt and len(per_mpkt) == len(runs):
            out["max"]["machine_cpu_s_per_mpkt"] = round(statistics.median(per_mpkt), 3)
        if best <= 0:
            out["half"] = {"error": "nothing received at full rate"}
            return out
        rate = best / 2
        half = self._runs(up, f"{test} at 50%", flood(rate, senders), s.half_runs, show)
        offered = sum(r["offered"] for r in half)
        lost = sum(r["lost"] for r in half)
        out["half"] = {
            "rate_pps": round(rate, 1),
            "offered_pps": round(statistics.median(r["offered_pps"] for r in half), 1),
            "received_pps": round(statistics.median(r["received_pps"] for r in half), 1),
            "lost": lost,
            "loss_pct": round(100.0 * lost / offered, 4) if offered else 0.0,
            "runs": half,
        }
        return out

    # one path

    def measure_path(self, spec: PathSpec) -> dict[str, Any]:
        """Bring ``spec`` up, run the selected tests, take it down; its results."""
        assert self.lab is not None
        if spec.fastpath == "compiled" and self.settings.busy_poll is not None:
            spec = replace(spec, busy_poll=self.settings.busy_poll)
        out: dict[str, Any] = {
            "label": spec.label,
            "kind": spec.kind,
            "config": {
                "fastpath": spec.fastpath,
                "offloads": spec.offloads,
                "via_rtr": spec.via_rtr,
                "workers": spec.workers,
                "busy_poll_us": spec.busy_poll,
            }
            if spec.kind == "lispd"
            else {},
        }
        started = time.monotonic()
        self.log(f"== {spec.name}: {spec.label}")
        try:
            with bring_up(self.lab, self.plan, spec) as up:
                if up.note:
                    out["note"] = up.note
                if up.engines:
                    out["engines"] = up.engines
                    self.log(
                        f"{spec.name}: engines "
                        + ", ".join(
                            f"{k} {v if v is not None else '?'}" for k, v in up.engines.items()
                        )
                    )
                self.lab.wait_ping(self.plan.host_a, self.plan.host_b_v4, timeout=10.0)
                for test in self.settings.tests:
                    try:
                        if test == "latency":
                            out[test] = self._latency(up)
                        elif test in ("tcp1", "tcp4"):
                            out[test] = self._tcp(up, int(test[3:]))
                        else:
                            out[test] = self._udp(up, test)
                    except (LabError, ControlError, subprocess.SubprocessError, OSError) as exc:
                        up.check_alive()
                        out[test] = {"error": f"{type(exc).__name__}: {exc}"}
                        self.log(f"{spec.name} {test}: ERROR {exc}")
            out["status"] = "ok"
        except NotAvailable as exc:
            out = {**out, "status": "not available", "reason": str(exc)}
            self.log(f"{spec.name}: not available: {exc}")
        except (PathFailed, LabError, ControlError) as exc:
            out = {**out, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
            self.log(f"{spec.name}: FAILED: {exc}")
        cpu = cpu_summary(out)
        if cpu:
            out["cpu"] = cpu
        spread = engine_spread(out)
        if spread:
            out["engine_spread"] = spread
        if spec.via_rtr and out["status"] == "ok":
            out["rtr_check"] = rtr_totals(out)
        out["elapsed_s"] = round(time.monotonic() - started, 1)
        return out

    def run(self) -> dict[str, Any]:
        """Build the lab, measure every selected path, add the map-cache scale section, the
        ratios and the targets; the whole result (JSON-ready)."""
        started = time.monotonic()
        results: dict[str, Any] = {
            "machine": machine_info(),
            "settings": self.settings.as_json(),
            "paths": {},
        }
        self.udpgen = build_udpgen()
        wanted = [spec for spec in PATHS if spec.name in self.settings.paths]
        if wanted and "latency" in self.settings.tests:
            s = self.settings
            floor = handoff(self.udpgen, count=s.ping_count, interval_ms=s.ping_interval_ms)
            results["machine"]["handoff_rtt"] = floor
            self.log(f"hand-off floor: two processes' round trip p50 {floor.get('p50_us')} us")
        if wanted:
            with Lab(self.plan.topology) as lab:
                self.lab = lab
                for spec in wanted:
                    results["paths"][spec.name] = self.measure_path(spec)
                self.lab = None
        if self.settings.mapcache:
            section = mapcache_scale(self.settings.quick)
            if section is not None:
                results["mapcache_scale"] = section
        report.add_derived(results)
        results["elapsed_s"] = round(time.monotonic() - started, 1)
        return results


def disturbance(run: dict[str, Any]) -> float:
    """CPU seconds taken from a run by others: processes outside the lab, and the hypervisor
    (steal time: on a shared VM the host takes the vCPUs away, as much as other processes)."""
    return float(run.get("other_cpu_s", 0.0)) + float(run.get("steal_s", 0.0))


def udp_senders(senders: int, spec: PathSpec) -> int:
    """How many udpgen senders flood ``spec``: ``senders``, or when 0 (automatic) one per
    CPU for a kernel path and one for a lispd path, whatever its number of engines.

    The kernel forwards a veth path in the senders' own softirq context, so one sender
    bounds a kernel path to one core (routed, 16 flows: ~145 kpps with one sender, ~265
    with two on the 2-core VM); a lispd path needs the CPU for its processes, which a second
    sender takes (python: ~50 kpps with one, ~35 with two).  That holds with several engines
    too: 64-byte floods over 16 flows, medians of 2-3 runs on the 2-core VM, one sender /
    two: ``compiled-1`` 100 / 87 and 98 / 90 kpps, ``compiled`` (2 engines) 108 / 84 and
    88 / 88, ``rtr-compiled`` 101 / 80; 1400-byte: ``compiled-1`` 81 / 70, ``compiled``
    95 / 77.  The engines and both sites' lispd already want more than the two cores.
    """
    if senders > 0:
        return senders
    return (os.cpu_count() or 1) if spec.kind == "kernel" else 1


def iter_runs(path: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(test, part, run)`` for every kept run of a path's results (``part``: "" for
    latency and TCP, "max" or "half" for UDP)."""
    for test in TESTS:
        section = path.get(test)
        if not isinstance(section, dict):
            continue
        if test in UDP_SIZES:
            for part in ("max", "half"):
                for run in section.get(part, {}).get("runs", []):
                    yield test, part, run
        else:
            for run in section.get("runs", []):
                yield test, "", run


def rtr_totals(path: dict[str, Any]) -> dict[str, int]:
    """The RTR check's counter deltas summed over every run of a path (empty without)."""
    totals: dict[str, int] = {}
    for _test, _part, run in iter_runs(path):
        for key, value in run.get("counters", {}).items():
            totals[key] = totals.get(key, 0) + value
    return totals


def cpu_summary(path: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per lispd process of a measured path: CPU seconds and packets over all its runs, CPU
    seconds per million packets, and the same over the 64-byte floods at full rate (with the
    packets it handled per CPU-second there)."""
    totals: dict[str, dict[str, float]] = {}
    flood: dict[str, dict[str, float]] = {}
    for test, part, run in iter_runs(path):
        for label, d in run.get("daemons", {}).items():
            targets = (totals, flood) if (test, part) == ("udp64", "max") else (totals,)
            for target in targets:
                t = target.setdefault(label, {"cpu_s": 0.0, "packets": 0})
                t["cpu_s"] += d["cpu_s"]
                t["packets"] += d["packets"]
    out: dict[str, dict[str, Any]] = {}
    for label, t in totals.items():
        entry: dict[str, Any] = {
            "cpu_s": round(t["cpu_s"], 3),
            "packets": int(t["packets"]),
            "cpu_s_per_mpkt": report.per_million(t["cpu_s"], t["packets"]),
        }
        f = flood.get(label)
        if f is not None:
            entry["udp64_cpu_s"] = round(f["cpu_s"], 3)
            entry["udp64_packets"] = int(f["packets"])
            entry["udp64_cpu_s_per_mpkt"] = report.per_million(f["cpu_s"], f["packets"])
            entry["udp64_pps_per_cpu"] = (
                round(f["packets"] / f["cpu_s"], 1) if f["cpu_s"] > 0 else None
            )
        out[label] = entry
    return out


def engine_spread(path: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per lispd process that ran several engines: the packets each engine forwarded over all
    runs of the path (``all``), over the full-rate 64-byte floods (``udp64``) and the 4-stream
    TCP runs (``tcp4``), and the workers restarted meanwhile (``worker_restarts``).  One
    engine with (nearly) everything means the kernel put every flow on one queue."""
    out: dict[str, dict[str, Any]] = {}
    for test, part, run in iter_runs(path):
        for label, d in run.get("daemons", {}).items():
            if "engines" not in d:
                continue
            entry = out.setdefault(
                label, {"all": {}, "udp64": {}, "tcp4": {}, "worker_restarts": 0}
            )
            keys = ["all"]
            if (test, part) == ("udp64", "max"):
                keys.append("udp64")
            elif test == "tcp4":
                keys.append("tcp4")
            for key in keys:
                for engine, packets in d["engines"].items():
                    entry[key][engine] = entry[key].get(engine, 0) + packets
            entry["worker_restarts"] += d.get("worker_restarts", 0)
    return out


def machine_info() -> dict[str, Any]:
    """CPUs, kernel, CPU model, Python and the lispd commit of this run."""
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    repo = Path(lispd.__file__).resolve().parent.parent
    commit = subprocess.run(
        ["git", "-C", str(repo), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "lispd_commit": commit,
    }


# -- extension point: the map-cache scale section --------------------------------------------
#
# benchmarks/mapcache_scale.py (not written yet) defines ``measure(quick: bool) -> dict``: a
# JSON-ready dict of its figures (1M EID-prefixes: load time, memory, LPM time...).  When the
# module exists its dict goes into the JSON as "mapcache_scale" and one line of the table
# (its "summary" string when it has one, else its top-level numbers).  Without the module the
# section is skipped.  It runs after the paths, outside the lab.


def mapcache_scale(quick: bool) -> dict[str, Any] | None:
    """The map-cache scale section: ``benchmarks.mapcache_scale.measure(quick)``, None when
    that module does not exist, ``{"error": ...}`` when it fails."""
    try:
        module = importlib.import_module("benchmarks.mapcache_scale")
    except ModuleNotFoundError as exc:
        if exc.name == "benchmarks.mapcache_scale":
            return None
        raise
    try:
        result = module.measure(quick)
    except Exception as exc:
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}"}
    return dict(result)
