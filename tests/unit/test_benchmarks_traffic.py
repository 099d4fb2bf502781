"""The pure helpers of the benchmark harness's traffic module (no root, no namespaces)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from benchmarks.traffic import (
    SPORT_BASE,
    build_udpgen,
    flow_shares,
    handoff,
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
    bad_sends = (
        ["send", "not-an-address", "9", "64", "1"],
        ["send", "127.0.0.1", "9", "64", "1", "0", "0"],  # no flow
        ["send", "127.0.0.1", "9", "64", "1", "0", "1025"],  # too many
        ["send", "127.0.0.1", "9", "64", "1", "0", "16", "65530"],  # ports past 65535
        ["send", "127.0.0.1", "9", "64", "1", "0", "16", "20000", "0"],  # flow run 0
    )
    for argv in ([], ["send"], *bad_sends, ["ping"], ["handoff", "5"]):
        proc = subprocess.run([str(binary), *argv], capture_output=True, text=True, check=False)
        assert proc.returncode == 2, argv
        assert "udpgen" in proc.stderr


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_handoff_times_round_trips_between_two_processes(tmp_path: Path) -> None:
    floor = handoff(build_udpgen(tmp_path), count=20, interval_ms=1)
    assert floor["count"] == 20 and floor["lost"] == 0
    assert 0 < floor["min_us"] <= floor["p50_us"] <= floor["max_us"]


def test_flow_shares() -> None:
    assert flow_shares(16, 1) == [(SPORT_BASE, 16)]
    assert flow_shares(16, 2) == [(SPORT_BASE, 8), (SPORT_BASE + 8, 8)]
    assert flow_shares(5, 2, base=100) == [(100, 3), (103, 2)]
    assert flow_shares(1, 3, base=100) == [(100, 1), (101, 1), (102, 1)]  # one each at least


def _udpgen_ports(binary: Path, *extra: str) -> list[int]:
    """The source ports of what ``udpgen send`` sends to a local socket, in order."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        rx.settimeout(2.0)
        port = rx.getsockname()[1]
        # 2,000 datagrams/s for 0.1 s: about 200, in bursts of at most one
        argv = [str(binary), "send", "127.0.0.1", str(port), "64", "0.1", "2000", *extra]
        proc = subprocess.run(argv, capture_output=True, text=True, check=True)
        sent = int(proc.stdout.split('"sent": ')[1].split(",")[0])
        ports = []
        for _ in range(sent):
            data, (_addr, sport) = rx.recvfrom(2048)
            assert len(data) == 64
            ports.append(sport)
    return ports


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
@pytest.mark.skipif(os.geteuid() != 0, reason="udpgen send needs CAP_NET_RAW (a raw socket)")
def test_udpgen_flows_take_turns_datagram_by_datagram(tmp_path: Path) -> None:
    binary = build_udpgen(tmp_path)
    ports = _udpgen_ports(binary, "4", "30000")
    assert len(ports) > 20
    assert ports[:8] == [30000, 30001, 30002, 30003, 30000, 30001, 30002, 30003]
    assert set(ports) == {30000, 30001, 30002, 30003}
    runs = _udpgen_ports(binary, "2", "30000", "3")  # three in a row per flow
    assert runs[:9] == [30000, 30000, 30000, 30001, 30001, 30001, 30000, 30000, 30000]
    assert set(_udpgen_ports(binary)) == {SPORT_BASE}  # one flow by default
