"""CPU time taken by processes outside a lab during a measurement: tells disturbed runs apart.

On a small machine another process (a test suite, a compiler) takes CPU from the traffic
endpoints and the routers and skews a throughput figure.  :class:`OtherLoad` samples
``/proc`` at the start and the end of a run and sums the user+system time of every process
that is neither in one of the given network namespaces (the lab's), nor this process, nor a
kernel thread (the veth/softirq work of the lab itself runs there).  A process that started
and ended between the two samples is not seen, so the figure is a lower bound.  The
hypervisor's steal time (``/proc/stat``) is reported next to it.

    load = OtherLoad(lab.namespaces())
    load.start()
    ...  # the run
    sample = load.stop()  # {"other_cpu_s": 0.04, "steal_s": 0.0, "top": [["pytest", 0.03]]}
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
PF_KTHREAD = 0x00200000

# (pid, start time) -> (command, cpu seconds)
Snapshot = dict[tuple[int, int], tuple[str, float]]


def _netns_inodes(namespaces: Iterable[str]) -> set[int]:
    inodes = set()
    for ns in namespaces:
        try:
            inodes.add(os.stat(f"/run/netns/{ns}").st_ino)
        except OSError:
            continue
    return inodes


# /proc/stat's aggregate "cpu" line: user nice system idle iowait irq softirq steal guest ...
_BUSY_FIELDS = (1, 2, 3, 6, 7)  # user, nice, system, irq, softirq (guest time is in user)
_SOFTIRQ_FIELD = 7


def machine_cpu_seconds(stat_line: str | None = None) -> tuple[float, float]:
    """(busy, softirq) CPU seconds of the whole machine since boot, every CPU summed: busy is
    user + nice + system + irq + softirq (idle, iowait and the hypervisor's steal left out).
    ``stat_line`` is the first line of ``/proc/stat`` (read now when None)."""
    if stat_line is None:
        with open("/proc/stat") as fh:
            stat_line = fh.readline()
    fields = stat_line.split()
    if not fields or fields[0] != "cpu":
        raise ValueError(f"not /proc/stat's cpu line: {stat_line!r}")
    ticks = [int(f) for f in fields[1:]]
    busy = sum(ticks[i - 1] for i in _BUSY_FIELDS if i - 1 < len(ticks))
    softirq = ticks[_SOFTIRQ_FIELD - 1] if len(ticks) >= _SOFTIRQ_FIELD else 0
    return busy / CLK_TCK, softirq / CLK_TCK


class MachineCpu:
    """The whole machine's CPU time over a run (every process, kernel threads and softirq
    work included: the veth, netfilter and UDP work of a kernel path as much as lispd's), so
    that paths are compared by what they cost the machine for the same traffic."""

    def __init__(self) -> None:
        self._start: tuple[float, float] | None = None

    def start(self) -> None:
        """Take the first sample."""
        self._start = machine_cpu_seconds()

    def stop(self) -> dict[str, float]:
        """``{"machine_cpu_s": busy seconds, "machine_softirq_s": softirq seconds}`` since
        :meth:`start`."""
        if self._start is None:
            raise RuntimeError("MachineCpu.stop() before start()")
        busy, softirq = machine_cpu_seconds()
        return {
            "machine_cpu_s": round(busy - self._start[0], 3),
            "machine_softirq_s": round(softirq - self._start[1], 3),
        }


def _steal_seconds() -> float:
    with open("/proc/stat") as fh:
        fields = fh.readline().split()
    return int(fields[8]) / CLK_TCK if len(fields) > 8 else 0.0


def _processes(skip_netns: set[int], skip_pid: int) -> Snapshot:
    out: Snapshot = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == skip_pid:
            continue
        try:
            with open(f"/proc/{pid}/stat") as fh:
                text = fh.read()
            netns = os.stat(f"/proc/{pid}/ns/net").st_ino
        except OSError:
            continue  # gone meanwhile
        if netns in skip_netns:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        # fields[0] is field 3 (state): flags = field 9, utime/stime 14/15, starttime 22
        if int(fields[6]) & PF_KTHREAD:
            continue
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
        out[(pid, int(fields[19]))] = (comm, cpu)
    return out


class OtherLoad:
    """CPU seconds used by processes outside ``namespaces`` between :meth:`start` and
    :meth:`stop` (this process and kernel threads excluded)."""

    def __init__(self, namespaces: Iterable[str]) -> None:
        self._skip = _netns_inodes(namespaces)
        self._before: Snapshot = {}
        self._steal = 0.0

    def start(self) -> None:
        """Take the first sample."""
        self._before = _processes(self._skip, os.getpid())
        self._steal = _steal_seconds()

    def stop(self) -> dict[str, Any]:
        """Take the second sample; ``other_cpu_s``, ``steal_s`` and the ``top`` 3 consumers."""
        after = _processes(self._skip, os.getpid())
        used: dict[str, float] = {}
        for key, (comm, cpu) in after.items():
            delta = cpu - self._before.get(key, (comm, 0.0))[1]
            if delta > 0:
                used[comm] = used.get(comm, 0.0) + delta
        top = sorted(used.items(), key=lambda kv: -kv[1])[:3]
        return {
            "other_cpu_s": round(sum(used.values()), 3),
            "steal_s": round(_steal_seconds() - self._steal, 3),
            "top": [[comm, round(cpu, 3)] for comm, cpu in top],
        }


def add_noise_arguments(parser: argparse.ArgumentParser) -> None:
    """``--max-other-cpu`` and ``--retries``: when a run counts as disturbed, how often to
    repeat it (the benchmarks share them)."""
    parser.add_argument(
        "--max-other-cpu",
        type=float,
        default=0.1,
        metavar="CORES",
        help="a run is disturbed when processes outside the lab and the hypervisor (steal "
        "time) took more than this many cores on average meanwhile (default 0.1); disturbed "
        "runs are repeated",
    )
    parser.add_argument(
        "--retries", type=int, default=2, help="repeats of a disturbed run (default 2)"
    )
