"""Ratios, targets and the table of the benchmark harness, on made-up results (no root)."""

from __future__ import annotations

import copy
from typing import Any

from benchmarks.report import (
    add_derived,
    disturbed_tests,
    engine_shares,
    engines_cell,
    evaluate_targets,
    figure,
    format_report,
    multicore_gain,
    per_million,
    ratio,
    summarize_section,
)


def path(
    tcp1: float, udp64: float, p50: float, *, half_loss: float = 0.0, pps_per_cpu: float = 0.0
) -> dict[str, Any]:
    """One measured path with the figures the report reads."""
    out: dict[str, Any] = {
        "status": "ok",
        "tcp1": {"gbps": tcp1, "runs": [{"gbps": tcp1, "disturbed": False}]},
        "tcp4": {"gbps": 2 * tcp1, "runs": []},
        "udp64": {
            "max": {"received_pps": udp64, "loss_pct": 10.0, "runs": []},
            "half": {"loss_pct": half_loss, "runs": []},
        },
        "udp1400": {"max": {"received_pps": udp64 / 2, "loss_pct": 0.0}, "half": {}},
        "latency": {"p50_us": p50, "p99_us": 2 * p50, "runs": []},
    }
    if pps_per_cpu:
        out["cpu"] = {
            "xtr1": {
                "cpu_s": 1.0,
                "packets": 100000,
                "cpu_s_per_mpkt": 10.0,
                "udp64_pps_per_cpu": pps_per_cpu,
            }
        }
    return out


def results() -> dict[str, Any]:
    """A run with both baselines, the python and compiled paths and their RTR variants."""
    return {
        "machine": {"cpus": 2, "cpu_model": "test", "kernel": "6.1", "lispd_commit": "abc"},
        "settings": {"seconds": 2, "runs": 2, "ping_count": 300, "ping_interval_ms": 5},
        "paths": {
            "routed": path(16.0, 200000.0, 60.0),
            "vxlan": path(14.0, 160000.0, 70.0),
            "python": path(0.7, 50000.0, 400.0, pps_per_cpu=100000.0),
            "compiled": path(10.5, 150000.0, 100.0, pps_per_cpu=1.2e6, half_loss=0.01),
            "compiled-nooffload": {"status": "not available", "reason": "not built"},
            "rtr-python": path(0.5, 45000.0, 600.0),
            "rtr-compiled": {"status": "failed", "reason": "CheckFailed: no RTR"},
        },
    }


def test_per_million_and_ratio() -> None:
    assert per_million(2.0, 1_000_000) == 2.0
    assert per_million(1.0, 0) is None
    assert ratio(1.0, 4.0) == 0.25
    assert ratio(None, 1.0) is None and ratio(1.0, 0.0) is None and ratio(1.0, None) is None


def test_figure_reads_measured_paths_only() -> None:
    r = results()["paths"]
    assert figure(r["routed"], "tcp1") == 16.0
    assert figure(r["routed"], "udp64") == 200000.0
    assert figure(r["routed"], "latency_p50") == 60.0
    assert figure(r["compiled-nooffload"], "tcp1") is None
    assert figure(None, "tcp1") is None
    assert figure({"status": "ok", "tcp1": {"error": "iperf3 failed"}}, "tcp1") is None


def test_add_derived_ratios_and_added_latency() -> None:
    r = results()
    add_derived(r)
    python = r["paths"]["python"]
    assert python["ratios"]["routed"]["tcp1"] == round(0.7 / 16.0, 4)
    assert python["ratios"]["vxlan"]["tcp1"] == 0.05
    assert python["ratios"]["vxlan"]["udp64"] == round(50000 / 160000, 4)
    assert python["latency"]["added_p50_us"] == 340.0
    assert python["latency"]["added_p50_us_vs_vxlan"] == 330.0
    assert r["paths"]["vxlan"]["ratios"] == {
        "routed": {"tcp1": 0.875, "tcp4": 0.875, "udp64": 0.8, "udp1400": 0.8}
    }
    assert "ratios" not in r["paths"]["routed"]
    assert "added_p50_us" not in r["paths"]["routed"]["latency"]
    assert "ratios" not in r["paths"]["compiled-nooffload"]


def test_targets_met_not_met_and_missing() -> None:
    paths = copy.deepcopy(results())["paths"]
    add_derived({"paths": paths})
    rows = {(t["target"], t["path"]): t for t in evaluate_targets(paths)}
    tcp = rows[("TCP1 >= 0.8x kernel VXLAN", "compiled")]
    assert (tcp["value"], tcp["met"]) == (0.75, False)  # 10.5 / 14
    gso = rows[("TCP1 >= 0.8x kernel VXLAN", "compiled-gso-peers")]
    assert gso["met"] is None and gso["note"] == "compiled-gso-peers not measured"
    assert rows[("TCP >= 5x python", "compiled")]["value"] == 15.0
    assert rows[("64-byte UDP >= 600k pkt/CPU-s at the ITR", "compiled")]["met"] is True
    assert rows[("64-byte UDP >= 600k pkt/CPU-s at the ITR", "python")]["met"] is False
    # one datagram lost in 10,000 is not "no loss"; every lispd path is held to it
    assert rows[("64-byte UDP: no loss at 50% of max", "compiled")]["met"] is False
    assert rows[("64-byte UDP: no loss at 50% of max", "python")]["met"] is True
    assert rows[("64-byte UDP: no loss at 50% of max", "rtr-python")]["met"] is True
    unbuilt = rows[("64-byte UDP: no loss at 50% of max", "compiled-nooffload")]
    assert unbuilt["met"] is None and unbuilt["note"] == "compiled-nooffload not available"
    assert ("64-byte UDP: no loss at 50% of max", "vxlan") not in rows
    assert rows[("added latency p50 <= 50 us", "compiled")]["value"] == 40.0
    assert rows[("added latency p50 <= 50 us", "compiled")]["met"] is True
    assert rows[("added latency p50 <= 50 us", "python")]["met"] is False
    rtr = rows[("RTR >= 0.8x ITR->ETR, TCP", "rtr-python")]
    assert rtr["value"] == round(0.5 / 0.7, 4) and rtr["met"] is False
    assert rows[("RTR >= 0.8x ITR->ETR, 64-byte UDP pps", "rtr-python")]["met"] is True
    missing = rows[("RTR >= 0.8x ITR->ETR, TCP", "rtr-compiled")]
    assert missing["met"] is None and missing["note"] == "rtr-compiled failed"


def test_targets_without_the_compiled_path() -> None:
    paths = results()["paths"]
    paths["compiled"] = {"status": "not available", "reason": "lispd: not built"}
    del paths["rtr-compiled"]
    rows = evaluate_targets(paths)
    compiled = [t for t in rows if t["path"] in ("compiled", "rtr-compiled")]
    assert compiled and all(t["met"] is None for t in compiled)
    notes = {t["note"] for t in compiled}
    assert notes == {"compiled not available", "rtr-compiled not measured"}


def test_format_report_shows_every_path_and_target() -> None:
    r = results()
    r["mapcache_scale"] = {"summary": "1M prefixes in 3.1 s"}
    r["elapsed_s"] = 123.4
    add_derived(r)
    text = format_report(r)
    for name in r["paths"]:
        assert name in text
    assert "not available: not built" in text
    assert "CheckFailed: no RTR" in text
    assert "map-cache scale: 1M prefixes in 3.1 s" in text
    assert "NOT met" in text and " met" in text and "n/a (" in text
    assert "0.044 / 0.050" in text  # python TCP1 x routed / x VXLAN
    assert "total 123 s" in text


def test_format_report_names_the_hand_off_floor() -> None:
    r = results()
    assert "hand-off floor" not in format_report(r)
    r["machine"]["handoff_rtt"] = {"p50_us": 60.0, "count": 200}
    text = format_report(r)
    assert "p50 60 us (30 us a hand-off)" in text
    assert "lispd ITR->ETR 3 = 90 us, ITR->RTR->ETR 5 = 150 us" in text


def test_summarize_section_and_disturbed() -> None:
    assert summarize_section({"prefixes": 1000000, "load_s": 3.25, "ok": True, "x": {}}) == (
        "prefixes=1000000, load_s=3.25"
    )
    assert summarize_section({}) == "(no figures)"
    paths = results()["paths"]
    assert disturbed_tests(paths) == []
    paths["python"]["udp64"]["half"]["runs"] = [{"disturbed": True}]
    assert disturbed_tests(paths) == ["python udp64"]


def with_engines(p: dict[str, Any], engines: int, *, rtr: bool = False) -> dict[str, Any]:
    """``p`` with the engines its lispd processes reported."""
    labels = ("xtr1", "rtr", "xtr2") if rtr else ("xtr1", "xtr2")
    p["engines"] = dict.fromkeys(labels, engines)
    return p


def test_engines_cell() -> None:
    assert engines_cell(results()["paths"]["routed"]) == "-"
    assert engines_cell(with_engines(path(1.0, 1.0, 1.0), 2)) == "2"
    assert engines_cell({"engines": {"xtr1": 2, "rtr": 1, "xtr2": None}}) == "2/1/?"


def test_multicore_gain_compares_default_engines_with_one() -> None:
    paths = results()["paths"]
    with_engines(paths["compiled"], 2)  # TCP4 21.0, UDP64 150000
    paths["compiled-1"] = with_engines(path(7.0, 100000.0, 90.0), 1)  # TCP4 14.0
    rows = multicore_gain(paths)
    assert [(r["path"], r["vs"], r["figure"]) for r in rows] == [
        ("compiled", "compiled-1", "tcp4"),
        ("compiled", "compiled-1", "udp64"),
        # rtr-compiled was run (it failed), rtr-compiled-1 not
        ("rtr-compiled", "rtr-compiled-1", "tcp4"),
        ("rtr-compiled", "rtr-compiled-1", "udp64"),
    ]
    assert rows[0]["value"] == 1.5 and rows[1]["value"] == 1.5
    assert rows[0]["engines"] == 2 and rows[0]["engines_vs"] == 1
    assert rows[2]["value"] is None and rows[2]["note"] == "rtr-compiled failed"
    del paths["rtr-compiled"]
    assert len(multicore_gain(paths)) == 2
    del paths["compiled-1"]
    only = multicore_gain(paths)
    assert only[0]["value"] is None and only[0]["note"] == "compiled-1 not measured"
    # the targets stay on the default paths: compiled-1 is not one of them
    assert all(t["path"] != "compiled-1" for t in evaluate_targets(paths))


def test_engine_shares() -> None:
    entry = {
        "udp64": {"main": 510, "worker1": 490},
        "tcp4": {"main": 1000, "worker1": 0},
        "worker_restarts": 0,
    }
    assert engine_shares(entry) == "51/49 | 100/0"
    entry["worker_restarts"] = 1
    entry["tcp4"] = {}
    assert engine_shares(entry) == "51/49 | - (workers restarted: 1)"


def test_format_report_shows_engines_spread_and_gain() -> None:
    r = results()
    r["settings"]["flows"] = 16
    r["settings"]["flow_run"] = 1
    with_engines(r["paths"]["compiled"], 2)
    r["paths"]["compiled"]["engine_spread"] = {
        "xtr1": {"udp64": {"main": 3, "worker1": 1}, "tcp4": {"main": 1, "worker1": 1}}
    }
    r["paths"]["compiled"]["udp64"]["senders"] = 1
    r["paths"]["compiled-1"] = with_engines(path(7.0, 100000.0, 90.0), 1)
    add_derived(r)
    assert r["multicore_gain"][0]["value"] == 1.5
    text = format_report(r)
    compiled_row = next(line for line in text.splitlines() if line.startswith("compiled  "))
    assert compiled_row.split()[1] == "2"  # the eng column
    assert (
        next(line for line in text.splitlines() if line.startswith("compiled-1 ")).split()[1] == "1"
    )
    assert "compiled xtr1 75/25 | 50/50" in text
    assert "UDP flows: 16 (source ports" in text and "datagram by datagram" in text
    assert "multi-core gain" in text
    assert "TCP4: compiled / compiled-1" in text and "2 vs 1 engines" in text


def with_cost(p: dict[str, Any], per_gb: float, per_mpkt: float) -> dict[str, Any]:
    p["tcp1"]["machine_cpu_s_per_gb"] = per_gb
    p["udp64"]["max"]["machine_cpu_s_per_mpkt"] = per_mpkt
    return p


def test_whole_machine_cost_ratios_target_and_table() -> None:
    """CPU seconds of the whole machine per GB and per million datagrams, each path against
    the kernel VXLAN path of the same run; the target is <= 1.5x VXLAN's per GB."""
    r = results()
    with_cost(r["paths"]["vxlan"], 2.0, 8.0)
    with_cost(r["paths"]["compiled"], 3.6, 20.0)
    with_cost(r["paths"]["routed"], 1.0, 5.0)
    add_derived(r)
    compiled = r["paths"]["compiled"]
    assert compiled["cost_ratios_vs_vxlan"] == {
        "tcp1_cpu_per_gb": 1.8,
        "tcp4_cpu_per_gb": None,
        "udp64_cpu_per_mpkt": 2.5,
    }
    assert "cost_ratios_vs_vxlan" not in r["paths"]["vxlan"]
    assert "cost_ratios_vs_vxlan" not in r["paths"]["python"]  # no cost measured
    rows = {(t["target"], t["path"]): t for t in r["targets"]}
    target = rows[("machine CPU per GB, TCP1 <= 1.5x VXLAN", "compiled")]
    assert target["value"] == 1.8 and target["met"] is False
    text = format_report(r)
    assert "whole-machine CPU" in text
    line = next(x for x in text.splitlines() if x.startswith("compiled ") and "3.60" in x)
    assert "1.80 / - / 2.50" in line
