"""The pure helpers of the benchmark harness's traffic module (no root, no namespaces)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks.traffic import (
    build_udpgen,
    iperf_summary,
    latency_summary,
    parse_ping,
    percentile,
    udp_summary,
)

UDPGEN_OUTPUT = """\
reply from 198.51.100.18 seq=1 time=0.412 ms
reply from 198.51.100.18 seq=2 time=0.071 ms
seq=3 send error: Network is unreachable
reply from 198.51.100.18 seq=4 time=0.065 ms
sent=4 received=3
"""

IPUTILS_OUTPUT = """\
PING 198.51.100.18 (198.51.100.18) 56(84) bytes of data.
64 bytes from 198.51.100.18: icmp_seq=1 ttl=61 time=0.120 ms
64 bytes from 198.51.100.18: icmp_seq=2 ttl=61 time=0.095 ms
64 bytes from 198.51.100.18: icmp_seq=2 ttl=61 time=0.097 ms (DUP!)

--- 198.51.100.18 ping statistics ---
2 packets transmitted, 2 received, +1 duplicates, 0% packet loss, time 1001ms
rtt min/avg/max/mdev = 0.095/0.107/0.120/0.012 ms
"""


def test_parse_ping_reads_udpgen_lines() -> None:
    assert parse_ping(UDPGEN_OUTPUT) == [0.412, 0.071, 0.065]


def test_parse_ping_reads_iputils_lines_and_drops_duplicates() -> None:
    assert parse_ping(IPUTILS_OUTPUT) == [0.120, 0.095]


def test_parse_ping_of_no_reply() -> None:
    assert parse_ping("sent=5 received=0\n") == []


def test_percentile_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == 2.5
    assert percentile(list(range(101)), 99) == 99.0
    assert percentile([7.0], 99) == 7.0


def test_percentile_rejects_nothing_and_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_summary_in_microseconds() -> None:
    s = latency_summary([0.1, 0.2, 0.3], sent=4)
    assert s["p50_us"] == 200.0
    assert s["min_us"] == 100.0 and s["max_us"] == 300.0
    assert s["count"] == 3 and s["lost"] == 1
    assert latency_summary([], sent=2) == {"count": 0, "sent": 2, "lost": 2}


def test_udp_summary_loss_and_rates() -> None:
    s = udp_summary({"sent": 1000, "errors": 0, "seconds": 2.0}, {"received": 750, "bytes": 48000})
    assert s["offered"] == 1000 and s["received"] == 750 and s["lost"] == 250
    assert s["loss_pct"] == 25.0
    assert s["offered_pps"] == 500.0 and s["received_pps"] == 375.0
    # more received than sent (cannot be loss) counts as no loss
    assert udp_summary({"sent": 10, "seconds": 1.0}, {"received": 11})["lost"] == 0
    assert udp_summary({"sent": 0, "seconds": 1.0}, {"received": 0})["loss_pct"] == 0.0


def test_iperf_summary_sums_received() -> None:
    report = {
        "end": {
            "sum_sent": {"retransmits": 3},
            "sum_received": {"bits_per_second": 2.5e9, "bytes": 312500000, "seconds": 1.0},
        }
    }
    assert iperf_summary(report) == {
        "gbps": 2.5,
        "bytes": 312500000,
        "seconds": 1.0,
        "retransmits": 3,
    }


def test_iperf_summary_raises_on_an_error_report() -> None:
    from lispd.lab import LabError

    with pytest.raises(LabError, match="unable to connect"):
        iperf_summary({"error": "unable to connect to server"})


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_udpgen_builds_once_per_source_and_checks_its_arguments(tmp_path: Path) -> None:
    binary = build_udpgen(tmp_path)
    assert binary.name.startswith("udpgen-") and binary.exists()
    mtime = binary.stat().st_mtime_ns
    assert build_udpgen(tmp_path) == binary  # cached
    assert binary.stat().st_mtime_ns == mtime
    for argv in ([], ["send"], ["send", "not-an-address", "9", "64", "1"], ["ping"]):
        proc = subprocess.run([str(binary), *argv], capture_output=True, text=True, check=False)
        assert proc.returncode == 2, argv
        assert "udpgen" in proc.stderr
