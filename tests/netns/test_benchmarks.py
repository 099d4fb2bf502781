"""The one-command benchmark harness (``python -m benchmarks``) in its quick mode.

What it checks is that the harness works end to end, not the figures: the JSON has every
section, the kernel paths and lispd's Python path have positive figures, the RTR path's
counter check ran, the compiled variants have figures or say why they are not available,
the targets were evaluated, every lispd process said how many engines it ran (and the
compiled path's engines each counted their share of the floods), and nothing of the lab is
left behind.  Runs the real command in a subprocess; on a timeout it is interrupted
(SIGINT: the lab tears itself down) before the test fails.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lispd.lab.netns import NS_PREFIX, cleanup_stale, list_namespaces
from tests.netns.common import REPO

pytestmark = [pytest.mark.netns, pytest.mark.solo]  # measures: nothing else may run beside it

TIMEOUT_S = 85.0


def run_quick(json_path: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """``python -m benchmarks --quick --json FILE`` (see :func:`run_child`)."""
    argv = [sys.executable, "-m", "benchmarks", "--quick", "--json", str(json_path)]
    return run_child(argv, TIMEOUT_S, "python -m benchmarks --quick")


def run_child(
    argv: list[str], timeout_s: float, what: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run a benchmark's ``argv`` from the repository; the process and its wall time.  Fails
    when it takes over ``timeout_s`` (interrupted: its Lab tears itself down) or leaves a
    namespace behind (removed then)."""
    env = {**os.environ, "PYTHONPATH": REPO}
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.send_signal(signal.SIGINT)  # KeyboardInterrupt: the Lab tears itself down
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    elapsed = time.monotonic() - started
    child = re.compile(rf"^{NS_PREFIX}{proc.pid}[a-z]-")
    left = [n for n in list_namespaces() if child.match(n)]
    if left:
        cleanup_stale()  # its process is gone: the lab's namespaces are stale
    assert not timed_out, f"{what} took over {timeout_s:g} s:\n{err[-3000:]}"
    assert not left, f"namespaces left behind: {left}"
    return subprocess.CompletedProcess(argv, proc.returncode, out, err), elapsed


def positive(section: dict[str, Any], *keys: str) -> float:
    """The number at ``section[keys...]``, asserted positive."""
    value: Any = section
    for k in keys:
        assert isinstance(value, dict) and k in value, f"missing {keys} in {section}"
        value = value[k]
    assert isinstance(value, int | float) and value > 0, f"{keys}: {value!r}"
    return float(value)


def test_quick_benchmark_measures_kernel_and_lispd(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc, elapsed = run_quick(out)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    assert elapsed < TIMEOUT_S
    results = json.loads(out.read_text())

    assert {"machine", "settings", "paths", "targets", "elapsed_s"} <= set(results)
    assert results["settings"]["quick"] is True
    paths = results["paths"]
    assert set(paths) == {"routed", "vxlan", "python", "compiled", "rtr-python"}

    for name in ("routed", "vxlan", "python", "rtr-python"):
        p = paths[name]
        assert p["status"] == "ok", (name, p.get("reason"))
        positive(p, "tcp1", "gbps")
        positive(p, "tcp4", "gbps")
        for test in ("udp64", "udp1400"):
            positive(p, test, "max", "received_pps")
            positive(p, test, "max", "offered_pps")
            assert 0 <= p[test]["max"]["loss_pct"] <= 100
            positive(p, test, "half", "rate_pps")
            assert 0 <= p[test]["half"]["loss_pct"] <= 100
        positive(p, "latency", "p50_us")
        assert p["latency"]["p99_us"] >= p["latency"]["p50_us"]
        # what the traffic cost the whole machine (every CPU, softirq included)
        positive(p, "tcp1", "machine_cpu_s_per_gb")
        positive(p, "udp64", "max", "machine_cpu_s_per_mpkt")
        assert all(r["machine_cpu_s"] >= r["machine_softirq_s"] >= 0 for r in p["tcp1"]["runs"])

    # the kernel's tunnel cannot beat the plain path by much; lispd's Python path is slower
    assert paths["python"]["tcp1"]["gbps"] < paths["routed"]["tcp1"]["gbps"]
    for name in ("vxlan", "python", "rtr-python"):
        for baseline in ("routed", "vxlan"):
            if name == baseline:
                continue
            positive(paths[name], "ratios", baseline, "tcp1")
            positive(paths[name], "ratios", baseline, "udp64")
    assert "added_p50_us" in paths["python"]["latency"]
    positive(paths["python"], "cost_ratios_vs_vxlan", "tcp1_cpu_per_gb")

    # CPU per lispd process, and the RTR check on every run
    for node in ("xtr1", "xtr2"):
        positive(paths["python"], "cpu", node, "cpu_s_per_mpkt")
        positive(paths["python"], "cpu", node, "udp64_pps_per_cpu")
    positive(paths["rtr-python"], "cpu", "rtr", "cpu_s_per_mpkt")
    positive(paths["rtr-python"], "rtr_check", "rtr_reencap")

    # every lispd process said how many engines it ran: the Python path has one
    for name in ("python", "rtr-python"):
        assert set(paths[name]["engines"].values()) == {1}, paths[name]["engines"]
    assert paths["rtr-python"]["engines"].keys() == {"xtr1", "rtr", "xtr2"}

    compiled = paths["compiled"]
    if compiled["status"] == "ok":
        positive(compiled, "tcp1", "gbps")
        positive(compiled, "udp64", "max", "received_pps")
        # workers = 0: one engine per core lispd may run on (it inherits our affinity)
        assert compiled["config"]["workers"] == 0
        cores = len(os.sched_getaffinity(0))
        assert compiled["engines"] == {"xtr1": cores, "xtr2": cores}
        if cores > 1:  # the packets each engine forwarded, summed over the 64-byte floods
            for node in ("xtr1", "xtr2"):
                flood = compiled["engine_spread"][node]["udp64"]
                assert set(flood) == {"main", *(f"worker{i}" for i in range(1, cores))}
                assert sum(flood.values()) > 0
    else:
        assert compiled["status"] == "not available", compiled
        assert compiled["reason"]
    # the multi-core gain needs compiled-1, which the quick mode leaves out
    gains = results["multicore_gain"]
    assert [(g["path"], g["vs"], g["figure"]) for g in gains] == [
        ("compiled", "compiled-1", "tcp4"),
        ("compiled", "compiled-1", "udp64"),
    ]
    assert all(g["value"] is None and g["note"] == "compiled-1 not measured" for g in gains)

    targets = results["targets"]
    assert {t["target"] for t in targets} >= {
        "TCP1 >= 0.8x kernel VXLAN",
        "machine CPU per GB, TCP1 <= 1.5x VXLAN",
        "TCP >= 5x python",
        "64-byte UDP >= 600k pkt/CPU-s at the ITR",
        "64-byte UDP: no loss at 50% of max",
        "added latency p50 <= 50 us",
        "RTR >= 0.8x ITR->ETR, TCP",
    }
    for t in targets:
        assert t["met"] in (True, False, None)
        assert (t["met"] is None) == (t["value"] is None)
    python_latency = next(
        t for t in targets if t["target"].startswith("added latency") and t["path"] == "python"
    )
    assert python_latency["value"] is not None

    # the table
    for text in (
        "routed",
        "vxlan",
        "rtr-python",
        "target (issue 24)",
        "ratio to kernel",
        "multi-core gain",
    ):
        assert text in proc.stdout


# --- python -m benchmarks.mapcache_scale --quick: the churn phase --------------------------------

CHURN_TIMEOUT_S = 120.0


def test_mapcache_scale_churn_quick(tmp_path: Path) -> None:
    """The churn phase end to end at 5,000 prefixes: every phase ran its sources, the loop's
    lag was sampled in each, the figures are consistent, and no ping was lost but while the
    fast-path worker was down (its TUN queue's flows wait for it)."""
    out = tmp_path / "churn.json"
    argv = [sys.executable, "-m", "benchmarks.mapcache_scale", "--quick", "--no-unit",
            "--json", str(out)]  # fmt: skip
    proc, _ = run_child(argv, CHURN_TIMEOUT_S, "mapcache_scale --quick")
    returncode, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    assert returncode == 0, f"exit {returncode}\n{stdout}\n{stderr[-3000:]}"
    result = json.loads(out.read_text())
    churn = result["churn"]
    n = churn["prefixes"]
    assert n == 5000

    # the load: every entry (and the static one), two engines, memory of both processes
    load = churn["load"]
    assert load["entries"] == n + 1
    assert load["engines"] == 2 and load["worker_ready"] is True
    assert 0 < load["load_s"] <= load["load_with_worker_s"]
    assert 0 < load["rss_workers_mb"] < load["rss_main_mb"] < load["rss_total_mb"]
    for key in ("load_s", "rss_total_mb", "bytes_per_prefix", "loop_stall_max_ms",
                "loop_stall_p99_ms", "show_map_cache_eid_ms", "ping_loss"):  # fmt: skip
        assert result[key] == churn[key]
        assert isinstance(result[key], int | float) and result[key] >= 0, key

    phases = churn["phases"]
    assert list(phases) == ["quiet", "expiry", "flap", "rebind", "scrape", "dump", "lookup",
                            "kill", "all"]  # fmt: skip
    for name, p in phases.items():
        seconds, stall, ping = p["seconds"], p["stall"], p["ping"]
        assert seconds >= churn["phase_seconds"], name
        # a 10 ms tick: about 100 a second, fewer when the loop stalled (the stalls are read
        # 0.3 s past the phase's end: one that ends it shows in the tick just after)
        assert 0 < stall["ticks"] <= (seconds + 0.3) * 100 + 5, (name, stall)
        assert stall["max_ms"] >= stall["p99_ms"] >= 0, (name, stall)
        assert stall["over_20ms"] <= stall["ticks"]
        # a ping every 10 ms from a thread of the benchmark, give or take its scheduling
        assert 0.5 * seconds * 100 <= ping["sent"] <= seconds * 100 + 5, (name, ping)
        if name not in ("kill", "all"):
            assert ping["lost"] == 0, (name, ping)
    for name in ("kill", "all"):  # lost only while the worker was down
        (kill,) = phases[name]["kill"]
        assert kill["ready"] is True and 0 < kill["respawned_s"] <= kill["ready_s"]
        assert phases[name]["ping"]["lost"] <= (kill["ready_s"] + 1.0) * 100, phases[name]
    assert churn["ping_loss"] == sum(p["ping"]["lost"] for k, p in phases.items() if k != "quiet")
    assert churn["loop_stall_max_ms"] == max(
        p["stall"]["max_ms"] for k, p in phases.items() if k != "quiet"
    )

    # each source did what it says
    for name in ("expiry", "all"):
        e = phases[name]["expiry"]
        assert e["installed"] > 0 and e["missing_after_ttl"] > 0
        assert e["entries_restored"] == n + 1
    for name in ("flap", "all"):
        f = phases[name]["flap"]
        assert f["changes"] >= 2 and f["changes"] % 2 == 0  # it ends up
        assert f["entries_using"] == n // 2
    for name in ("rebind", "all"):
        r = phases[name]["rebind"]
        assert 0 < r["binding_changes"] <= r["keepalives"]
    for name in ("scrape", "all"):
        assert phases[name]["scrape"]["count"] >= 1
    for name in ("dump", "all"):
        (dump,) = phases[name]["dump"]
        assert dump["exit"] == 0 and dump["lines"] >= n  # one line per RLOC at least
    assert len(phases["lookup"]["lookup_ms"]) == 5
    assert churn["show_map_cache_eid_ms"] == max(
        ms for p in phases.values() for ms in p.get("lookup_ms", [])
    )
    assert "lookup_failures" not in phases["lookup"]

    # the targets, and the report
    assert {t["figure"] for t in churn["targets"]} == {
        "load_s", "rss_total_mb", "loop_stall_max_ms", "ping_loss", "show_map_cache_eid_ms",
    }  # fmt: skip
    for t in churn["targets"]:
        assert t["met"] is (t["value"] <= float(t["target"].split()[1]) if "<=" in t["target"]
                            else t["value"] < float(t["target"].split()[1]))  # fmt: skip
    assert "target (issue 22)" in stdout and "loop_stall_max_ms" in stdout


# --- python -m benchmarks.ddt --quick: DDT resolution, cold and warm --------------------------

DDT_TIMEOUT_S = 90.0


def test_ddt_quick(tmp_path: Path) -> None:
    """The DDT benchmark end to end at 200 sites under 2 Map-Servers: every site registered
    (its Map-Notify came back), every timed request answered, the figures consistent, one
    resolution per site through the DDT Map-Resolver filled its referral cache, and nothing of
    the lab is left."""
    out = tmp_path / "ddt.json"
    argv = [sys.executable, "-m", "benchmarks.ddt", "--quick", "--json", str(out)]
    proc, elapsed = run_child(argv, DDT_TIMEOUT_S, "benchmarks.ddt --quick")
    returncode, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    assert returncode == 0, f"exit {returncode}\n{stdout}\n{stderr[-3000:]}"
    assert elapsed < 60, f"--quick took {elapsed:.1f} s"
    result = json.loads(out.read_text())

    settings = result["settings"]
    assert (settings["quick"], settings["sites"], settings["map_servers"]) == (True, 200, 2)
    registration = result["registration"]
    assert registration["registrations"] == 400 and registration["unacknowledged"] == 0

    timed = result["timed"]
    for kind in ("cold", "warm", "baseline"):
        t = timed[kind]
        assert t["samples"] == 30 and t["lost"] == 0, (kind, t)
        assert 0 < t["min_ms"] <= t["median_ms"] <= t["p95_ms"] <= t["max_ms"], (kind, t)
    for name, baseline_kind in (("cold/baseline", "cold"), ("warm/baseline", "warm")):
        r = timed["ratios"][name]
        assert r["median"] == round(
            timed[baseline_kind]["median_ms"] / timed["baseline"]["median_ms"], 2
        )
        assert all(v is not None and v > 0 for v in r.values()), (name, r)
    # after one cold resolution the cache holds the walk's three referrals: the root's node
    # referral, the child's MS referral and the Map-Server's MS-ACK (kept as an MS referral)
    assert timed["referral_entries_after_one_site"] == [3, 3, 3], timed
    counters = result["counters"]
    mr = counters["mr"]
    # every cold sample walked from the root (the cache was cleared), every warm one started
    # from the cache; the samples took turns between both Map-Servers
    assert mr["received-node-referral"] >= 30 and mr["received-ms-referral"] >= 30, mr
    assert mr["cache-hits"] >= 30 and mr["max-steps-per-resolution"] == 3, mr
    assert counters["root"]["sent-node-referral"] == mr["received-node-referral"]
    assert counters["ms1"]["sent-ms-ack"] >= 30 and counters["ms2"]["sent-ms-ack"] >= 30
    assert mr["answered"] == mr["resolutions"], mr
    assert not any("drops" in c for c in counters.values()), counters

    memory = result["memory"]
    bulk = memory["resolutions"]
    assert bulk["answered"] == bulk["eids"] == 200 and bulk["failed"] == 0, bulk
    # one MS-ACK per site, each Map-Server's /36 and each child's /34
    assert memory["referral_entries_by_kind"] == {"node-referral": 2, "ms-referral": 202}
    assert memory["referral_entries"] == memory["referral_cache_entries_counter"] == 204
    assert memory["rss_before_bytes"] > 0 and memory["rss_after_bytes"] > 0
    assert memory["rss_growth_bytes"] == memory["rss_after_bytes"] - memory["rss_before_bytes"]
    # the cache alone, in process: the same 204 referrals
    for figures in result["in_process"].values():
        assert figures["entries"] == 204 and figures["tracemalloc_bytes_per_entry"] > 0
    assert "resolution" in stdout and "cold/baseline" in stdout
