"""The pure parts of the benchmark suite and its command line (no root, no namespaces)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from benchmarks.__main__ import parse_args
from benchmarks.cpuload import CLK_TCK, machine_cpu_seconds
from benchmarks.dataplane import lispd_config
from benchmarks.suite import (
    PATH_NAMES,
    PATHS,
    QUICK_PATHS,
    TESTS,
    cost_per,
    cpu_summary,
    daemon_deltas,
    dataplane_table,
    engine_spread,
    loaded_accelerator,
    parse_stat,
    rtr_totals,
    start_reason,
    tree_cpu_seconds,
    tree_pids,
    udp_senders,
)
from lispd.config.loader import parse_config
from lispd.lab import two_site_topology


def test_parse_stat_with_spaces_and_parentheses_in_the_name() -> None:
    text = "4242 (lispd (x) y) S 17 4242 4242 0 -1 4194560 100 0 0 0 150 25 0 0 20 0 3 0 99"
    assert parse_stat(text) == (17, 175)


def test_parse_stat_counts_children_waited_for() -> None:
    # cutime/cstime (fields 16, 17): a worker that died and was reaped keeps its CPU counted
    text = "77 (python) S 1 77 77 0 -1 4194560 100 0 0 0 150 25 40 5 20 0 3 0 99"
    assert parse_stat(text) == (1, 220)


def test_own_process_tree() -> None:
    assert tree_pids(os.getpid())[0] == os.getpid()
    assert tree_cpu_seconds(os.getpid()) > 0


def test_start_reason_picks_the_error_line_without_timestamp() -> None:
    log = (
        "2026-11-23 20:43:14,100 level=INFO logger=lispd starting\n"
        "2026-11-23 20:43:14,309 level=ERROR logger=lispd lispd failed to start "
        "error=fastpath = compiled: the compiled fast path is not built\n"
        "\n"
    )
    assert start_reason(log) == (
        "lispd failed to start error=fastpath = compiled: the compiled fast path is not built"
    )
    logfmt = (
        "time=2026-11-23T20:43:14.100Z level=info logger=lispd.daemon msg=starting\n"
        'time=2026-11-23T20:43:14.309Z level=error logger=lispd.daemon msg="lispd failed to '
        'start" error="fastpath = compiled: the compiled fast path is not built"\n'
    )
    assert start_reason(logfmt) == (
        'msg="lispd failed to start" error="fastpath = compiled: the compiled fast path is not '
        'built"'
    )
    assert start_reason("last words\n") == "last words"
    assert start_reason("", "exited with 1") == "exited with 1"


def test_dataplane_table() -> None:
    specs = {s.name: s for s in PATHS}
    assert dataplane_table(specs["python"]) == '\n[dataplane]\nfastpath = "python"\n'
    assert 'fastpath = "compiled"\noffloads = "auto"' in dataplane_table(specs["compiled"])
    assert 'offloads = "off"' in dataplane_table(specs["rtr-compiled-nooffload"])
    assert 'offloads = "gso"' in dataplane_table(specs["compiled-gso"])
    assert 'offloads = "gso"' in dataplane_table(specs["rtr-compiled-gso"])
    # the engines: one per core by default, one for the -1 variants
    for name in (
        "compiled",
        "rtr-compiled",
        "compiled-gso",
        "rtr-compiled-gso",
        "compiled-nooffload",
        "rtr-compiled-nooffload",
    ):
        assert dataplane_table(specs[name]).endswith("workers = 0\n"), name
    for name in ("compiled-1", "rtr-compiled-1"):
        assert dataplane_table(specs[name]).endswith("workers = 1\n"), name
        assert specs[name].fastpath == "compiled" and specs[name].offloads == "auto"
    assert specs["rtr-compiled-1"].via_rtr and not specs["compiled-1"].via_rtr
    assert specs["compiled-1"].label == "lispd ITR->ETR, compiled, one engine"


def test_dataplane_table_is_valid_lispd_config() -> None:
    plan = two_site_topology()
    for spec in PATHS:
        if spec.kind != "lispd":
            continue
        config = parse_config(lispd_config(plan, 1, None, "/tmp/x.sock", dataplane_table(spec)))
        assert config.dataplane.fastpath == spec.fastpath, spec.name
        assert config.dataplane.workers == spec.workers, spec.name
        assert config.dataplane.offloads == spec.offloads, spec.name


def test_daemon_deltas_count_data_plane_packets() -> None:
    before = {"xtr1": (1.0, {"itr.encap.packets": 10, "control.sent.packets": 5})}
    after = {
        "xtr1": (
            1.5,
            {"itr.encap.packets": 1010, "etr.decap.packets": 7, "control.sent.packets": 9},
        )
    }
    assert daemon_deltas(before, after) == {"xtr1": {"cpu_s": 0.5, "packets": 1007}}


def test_daemon_deltas_per_engine_and_restarts() -> None:
    before = {
        "xtr1": (
            1.0,
            {"itr.encap.packets": 0, "engine:main": 10, "engine:worker1": 5, "worker-restarts": 0},
        )
    }
    after = {
        "xtr1": (
            2.0,
            {
                "itr.encap.packets": 300,
                "engine:main": 160,
                "engine:worker1": 155,
                "worker-restarts": 1,
            },
        )
    }
    assert daemon_deltas(before, after) == {
        "xtr1": {
            "cpu_s": 1.0,
            "packets": 300,
            "engines": {"main": 150, "worker1": 150},
            "worker_restarts": 1,
        }
    }


def test_engine_spread_sums_runs_per_test() -> None:
    def run(main: int, worker: int, restarts: int = 0) -> dict[str, object]:
        d = {"cpu_s": 1.0, "packets": main + worker, "engines": {"main": main, "worker1": worker}}
        return {"daemons": {"xtr1": {**d, "worker_restarts": restarts}, "xtr2": {"cpu_s": 1.0}}}

    path = {
        "tcp4": {"runs": [run(100, 0)]},
        "udp64": {"max": {"runs": [run(60, 40), run(50, 50, 1)]}, "half": {"runs": [run(5, 5)]}},
    }
    assert engine_spread(path) == {
        "xtr1": {
            "all": {"main": 215, "worker1": 95},
            "udp64": {"main": 110, "worker1": 90},
            "tcp4": {"main": 100, "worker1": 0},
            "worker_restarts": 1,
        }
    }
    assert engine_spread({"tcp1": {"runs": [{"daemons": {"xtr1": {"cpu_s": 1.0}}}]}}) == {}


def test_cpu_summary_and_rtr_totals() -> None:
    def run(cpu: float, packets: int) -> dict[str, object]:
        return {
            "daemons": {"xtr1": {"cpu_s": cpu, "packets": packets}},
            "counters": {"rtr_reencap": packets},
        }

    path = {
        "tcp1": {"runs": [run(1.0, 100_000)]},
        "udp64": {"max": {"runs": [run(2.0, 400_000), run(2.0, 600_000)]}, "half": {"runs": []}},
        "udp1400": {"error": "failed"},
    }
    cpu = cpu_summary(path)["xtr1"]
    assert cpu["cpu_s"] == 5.0 and cpu["packets"] == 1_100_000
    assert cpu["cpu_s_per_mpkt"] == round(5.0 / 1.1, 3)
    assert cpu["udp64_cpu_s_per_mpkt"] == 4.0
    assert cpu["udp64_pps_per_cpu"] == 250_000.0
    assert rtr_totals(path) == {"rtr_reencap": 1_100_000}
    assert cpu_summary({"status": "not available"}) == {}


def test_command_line_defaults_quick_and_only() -> None:
    settings, json_path = parse_args([])
    assert settings.paths == PATH_NAMES and settings.tests == TESTS and settings.mapcache
    assert json_path is None
    assert settings.senders == 0
    assert settings.flows == 16 and settings.flow_run == 1
    flows, _ = parse_args(["--flows", "1", "--flow-run", "64"])
    assert flows.flows == 1 and flows.flow_run == 64
    for bad in (["--flows", "0"], ["--flows", "1025"], ["--flow-run", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
    quick, _ = parse_args(["--quick", "--json", "out.json"])
    assert quick.paths == QUICK_PATHS and quick.runs == 1 and quick.seconds == 1.0
    assert quick.senders == 0 and parse_args(["--quick", "--senders", "2"])[0].senders == 2
    only, _ = parse_args(["--only", "python", "routed", "tcp1"])
    assert only.paths == ("routed", "python") and only.tests == ("tcp1",)
    assert not only.mapcache
    tests_only, _ = parse_args(["--only", "latency"])
    assert tests_only.paths == PATH_NAMES and tests_only.tests == ("latency",)
    sections_only, _ = parse_args(["--only", "mapcache"])
    assert sections_only.paths == () and sections_only.mapcache
    with pytest.raises(SystemExit):
        parse_args(["--only", "nonsense"])
    with pytest.raises(SystemExit):
        parse_args(["--runs", "0"])


def test_udp_senders() -> None:
    specs = {s.name: s for s in PATHS}
    assert udp_senders(3, specs["routed"]) == 3 and udp_senders(3, specs["python"]) == 3
    assert udp_senders(0, specs["vxlan"]) == (os.cpu_count() or 1)
    assert udp_senders(0, specs["rtr-compiled"]) == 1
    assert udp_senders(0, specs["compiled-1"]) == 1 and udp_senders(0, specs["compiled"]) == 1


def test_paths_with_one_engine() -> None:
    specs = {s.name: s for s in PATHS}
    assert PATH_NAMES.index("compiled-1") == PATH_NAMES.index("compiled") + 1
    assert PATH_NAMES.index("rtr-compiled-1") == PATH_NAMES.index("rtr-compiled") + 1
    assert [s.name for s in PATHS if s.workers] == ["compiled-1", "rtr-compiled-1"]
    assert all(specs[n].workers == 0 for n in ("compiled", "compiled-nooffload"))


def test_no_accelerator_in_a_plain_process() -> None:
    child = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        assert loaded_accelerator(child.pid) is None
    finally:
        child.communicate(b"")


def test_machine_cpu_from_proc_stat_and_cost_per_unit() -> None:
    """Busy = user + nice + system + irq + softirq of the aggregate line; idle, iowait and
    steal are not work done for the traffic."""
    line = "cpu  100 10 50 9000 40 5 20 7 0 0\n"
    busy, softirq = machine_cpu_seconds(line)
    assert busy == (100 + 10 + 50 + 5 + 20) / CLK_TCK and softirq == 20 / CLK_TCK
    with pytest.raises(ValueError):
        machine_cpu_seconds("cpu0 1 2 3 4")
    now_busy, _ = machine_cpu_seconds()
    assert now_busy > 0
    assert cost_per({"machine_cpu_s": 3.0, "bytes": 2e9}, "bytes", 1e9) == 1.5
    assert cost_per({"machine_cpu_s": 3.0, "received": 500_000}, "received", 1e6) == 6.0
    assert cost_per({"machine_cpu_s": 3.0, "received": 0}, "received", 1e6) is None
    assert cost_per({"bytes": 10}, "bytes", 1e9) is None


def test_a_run_is_disturbed_by_other_processes_and_by_steal_time() -> None:
    from benchmarks.suite import disturbance

    assert disturbance({"other_cpu_s": 0.1, "steal_s": 0.25}) == 0.35
    assert disturbance({}) == 0.0
