"""Traffic for the benchmark harness: iperf3 TCP, udpgen UDP floods and ICMP latency.

Everything here runs between two nodes of a :class:`lispd.lab.Lab` (inside its namespaces,
never outside).  ``udpgen`` (``benchmarks/udpgen.c``) is a small sendmmsg/recvmmsg generator
and counting receiver with an ICMP echo mode: iperf3 cannot offer more than ~150 kpps of
small UDP on this kind of machine, and Debian's ``ping`` is not installed by the project.  It
is compiled with the system C compiler on first use and cached by the hash of its source.

The pure helpers (:func:`parse_ping`, :func:`percentile`, :func:`latency_summary`,
:func:`udp_summary`, :func:`iperf_summary`) take text or numbers and need no root.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lispd.lab import Lab, LabError

UDPGEN_SOURCE = Path(__file__).resolve().parent / "udpgen.c"
UDP_PORT = 9000
SPORT_BASE = 20000  # the floods' first source port (udpgen send's SPORT_BASE)
IPERF_PORT = 5201
_RTT = re.compile(r"seq=(\d+)\b[^\n]*?\btime[=<]([0-9.]+) ?ms")


# -- pure helpers --------------------------------------------------------------------------


def parse_ping(text: str) -> list[float]:
    """Round-trip times in milliseconds, one per reply line, in the order printed.

    Understands ``udpgen ping``, :mod:`lispd.lab.pinger` and iputils ``ping`` lines
    (``... seq=N time=T ms``; iputils writes ``icmp_seq=``, also matched).  A reply seen
    twice (same sequence number, a duplicate) counts once.
    """
    seen: set[int] = set()
    rtts = []
    for match in _RTT.finditer(text):
        seq = int(match.group(1))
        if seq in seen:
            continue
        seen.add(seq)
        rtts.append(float(match.group(2)))
    return rtts


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0..100) of ``values``, interpolated linearly between the
    closest ranks (numpy's default); raises ValueError on an empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct} outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(rtts_ms: Sequence[float], sent: int) -> dict[str, Any]:
    """p50/p99/min/max/mean of round-trip times (given in ms) in microseconds, with the
    number of replies and of requests without one."""
    if not rtts_ms:
        return {"count": 0, "sent": sent, "lost": sent}
    us = [1000.0 * r for r in rtts_ms]
    return {
        "p50_us": round(percentile(us, 50), 1),
        "p99_us": round(percentile(us, 99), 1),
        "min_us": round(min(us), 1),
        "max_us": round(max(us), 1),
        "mean_us": round(sum(us) / len(us), 1),
        "count": len(us),
        "sent": sent,
        "lost": max(0, sent - len(us)),
    }


def udp_summary(sender: dict[str, Any], receiver: dict[str, Any]) -> dict[str, Any]:
    """Offered and received packets and rates of one udpgen run, and the loss.

    ``sender``/``receiver`` are the JSON lines of ``udpgen send``/``udpgen recv``.  Rates are
    per second of sending (the receiver's count includes what was still in flight when the
    sender stopped); the loss is what was offered and never arrived.
    """
    sent, received = int(sender["sent"]), int(receiver["received"])
    seconds = float(sender["seconds"]) or 1e-9
    lost = max(0, sent - received)
    return {
        "offered": sent,
        "received": received,
        "lost": lost,
        "loss_pct": round(100.0 * lost / sent, 4) if sent else 0.0,
        "offered_pps": round(sent / seconds, 1),
        "received_pps": round(received / seconds, 1),
        "received_bytes": int(receiver.get("bytes", 0)),
        "seconds": round(seconds, 3),
        "send_errors": int(sender.get("errors", 0)),
    }


def iperf_summary(report: dict[str, Any]) -> dict[str, Any]:
    """Gbit/s and bytes received from an iperf3 ``-J`` TCP client report (all streams)."""
    if "error" in report and "end" not in report:
        raise LabError(f"iperf3: {report['error']}")
    received = report["end"]["sum_received"]
    retransmits = report["end"].get("sum_sent", {}).get("retransmits")
    return {
        "gbps": round(received["bits_per_second"] / 1e9, 4),
        "bytes": int(received["bytes"]),
        "seconds": round(float(received["seconds"]), 3),
        "retransmits": retransmits,
    }


# -- udpgen --------------------------------------------------------------------------------


def build_udpgen(cache_dir: Path | None = None, compiler: str = "gcc") -> Path:
    """Compile ``udpgen.c`` (once per source version) and return the binary's path.

    The binary is ``<cache_dir>/udpgen-<sha256 of the source, 16 hex>`` (default cache dir:
    ``$TMPDIR/lispd-benchmarks``); raises :class:`~lispd.lab.LabError` when no compiler is
    found or the build fails.
    """
    source = UDPGEN_SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    cache = cache_dir or Path(tempfile.gettempdir()) / "lispd-benchmarks"
    binary = cache / f"udpgen-{digest}"
    if binary.exists():
        return binary
    cc = shutil.which(compiler)
    if cc is None:
        raise LabError(f"udpgen needs a C compiler ({compiler}; scripts/install installs gcc)")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".udpgen-{digest}.{os.getpid()}"
    proc = subprocess.run(
        [cc, "-O2", "-Wall", "-o", str(tmp), str(UDPGEN_SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise LabError(f"compiling {UDPGEN_SOURCE.name} failed:\n{proc.stderr}")
    tmp.replace(binary)  # atomic: a concurrent build never sees half a binary
    return binary


def _read_json_line(text: str, what: str) -> dict[str, Any]:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    raise LabError(f"{what} printed no result: {text!r}")


def udp_flood(
    lab: Lab,
    udpgen: Path,
    src: str,
    dst: str,
    dst_addr: str,
    *,
    size: int,
    seconds: float,
    rate_pps: float = 0.0,
    flows: int = 1,
    senders: int = 1,
    idle: float = 0.5,
    flow_run: int = 1,
) -> dict[str, Any]:
    """Send ``size``-byte UDP payloads from node ``src`` to ``dst_addr`` (on node ``dst``)
    for ``seconds`` (as fast as possible, or at ``rate_pps`` in all); see
    :func:`udp_summary`.

    ``senders`` processes send at once, each its share of the rate and of the ``flows``
    flows (source ports from :data:`SPORT_BASE` on, distinct per sender, at least one each;
    see :func:`flow_shares`): every sender's datagrams take turns over its flows one by
    one.  The receiver stops ``idle`` s after the last datagram, so what was queued on the
    path when the senders stopped is counted.
    """
    receiver = lab.popen(
        dst,
        [str(udpgen), "recv", str(UDP_PORT), f"{seconds + idle + 30:g}", f"{idle:g}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs: list[subprocess.Popen[str]] = []
    try:
        assert receiver.stdout is not None
        line = receiver.stdout.readline()
        if line.strip() != "listening":
            raise LabError(f"udpgen recv did not start: {line!r}")
        argv = [str(udpgen), "send", dst_addr, str(UDP_PORT), str(size), f"{seconds:g}"]
        argv.append(f"{rate_pps / senders:.0f}")
        kw: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
        procs = [
            lab.popen(src, [*argv, str(count), str(base), str(flow_run)], **kw)
            for base, count in flow_shares(flows, senders)
        ]
        sent = []
        for proc in procs:
            out, err = proc.communicate(timeout=seconds + 30)
            if proc.returncode != 0:
                raise LabError(f"udpgen send failed ({proc.returncode}): {err.strip()}")
            sent.append(_read_json_line(out, "udpgen send"))
        out, err = receiver.communicate(timeout=idle + 30 + seconds)
    finally:
        for proc in [*procs, receiver]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    total = {
        "sent": sum(s["sent"] for s in sent),
        "errors": sum(s["errors"] for s in sent),
        "seconds": max(s["seconds"] for s in sent),
    }
    return udp_summary(total, _read_json_line(out, f"udpgen recv ({err.strip()})"))


def flow_shares(flows: int, senders: int, base: int = SPORT_BASE) -> list[tuple[int, int]]:
    """``(first source port, flows)`` of each of ``senders`` senders sharing ``flows`` flows
    as evenly as possible, on consecutive ports from ``base``; every sender gets at least one
    flow (so there are ``max(flows, senders)`` in all)."""
    total = max(flows, senders)
    shares = []
    for k in range(senders):
        count = total // senders + (1 if k < total % senders else 0)
        shares.append((base, count))
        base += count
    return shares


def ping(
    lab: Lab,
    udpgen: Path,
    src: str,
    dst_addr: str,
    *,
    count: int,
    interval_ms: float,
) -> dict[str, Any]:
    """ICMP echo round trips from node ``src`` to ``dst_addr`` (``udpgen ping``), one every
    ``interval_ms``; see :func:`latency_summary`."""
    proc = lab.run(
        src,
        str(udpgen),
        "ping",
        dst_addr,
        str(count),
        f"{interval_ms:g}",
        "1000",
        check=False,
        timeout=count * interval_ms / 1000 + 30,
    )
    if proc.returncode not in (0, 1):
        raise LabError(f"udpgen ping failed: {proc.stderr.strip()}")
    return latency_summary(parse_ping(proc.stdout), count)


def handoff(udpgen: Path, *, count: int, interval_ms: float) -> dict[str, Any]:
    """The machine's floor for passing a message between two processes and back (``udpgen
    handoff``: two wake-ups, no network), one round trip every ``interval_ms``; as
    :func:`latency_summary`."""
    proc = subprocess.run(
        [str(udpgen), "handoff", str(count), f"{interval_ms:g}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=count * interval_ms / 1000 + 30,
    )
    if proc.returncode not in (0, 1):
        raise LabError(f"udpgen handoff failed: {proc.stderr.strip()}")
    return latency_summary(parse_ping(proc.stdout), count)


# -- iperf3 --------------------------------------------------------------------------------


def _listening(pid: int, port: int) -> bool:
    """Whether process ``pid`` sees a TCP socket listening on ``port`` in its namespace."""
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as fh:
                next(fh)
                for line in fh:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except (OSError, StopIteration):
            continue
    return False


def iperf_tcp(
    lab: Lab, src: str, dst: str, dst_addr: str, *, seconds: float, streams: int = 1
) -> dict[str, Any]:
    """One iperf3 TCP run from node ``src`` to ``dst_addr`` (server on node ``dst``) with
    ``streams`` parallel streams for ``seconds`` (at least 1, whole seconds: iperf3's -t);
    see :func:`iperf_summary`."""
    server = lab.popen(
        dst,
        ["iperf3", "-s", "-1", "-B", dst_addr, "-p", str(IPERF_PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while not _listening(server.pid, IPERF_PORT):
            if server.poll() is not None or time.monotonic() > deadline:
                raise LabError("iperf3 server did not start")
            time.sleep(0.01)
        whole = max(1, round(seconds))
        argv = ["iperf3", "-c", dst_addr, "-p", str(IPERF_PORT), "-t", str(whole), "-J"]
        argv += ["-P", str(streams)]
        proc = lab.run(src, *argv, timeout=whole + 30, check=False)
        try:
            report = json.loads(proc.stdout)
        except ValueError:
            raise LabError(f"iperf3 client failed: {proc.stderr.strip()}") from None
        server.wait(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    return iperf_summary(report)
