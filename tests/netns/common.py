"""What the namespace tests share: lispd.conf texts for the usual nodes (built with
:mod:`tests.configs`), a TCP transfer, a ping running in the background, SIGKILL."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lispd.lab import DaemonHandle, Lab, SiteHandle, TwoSitePlan, pinger
from tests import configs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def site_tables(sites: Iterable[SiteHandle], keys: Mapping[int, str]) -> list[configs.Doc]:
    """``[[site]]`` tables allowing each site's IPv4 and IPv6 prefix, keyed by site index."""
    return [configs.site(f"site{s.index}", keys[s.index], s.prefix_v4, s.prefix_v6) for s in sites]


def ms_doc(
    name: str,
    rloc: str,
    sock: str,
    sites: Iterable[SiteHandle],
    keys: Mapping[int, str],
    *,
    roles: Sequence[str] = ("map-server", "map-resolver"),
    **tables: Any,
) -> configs.Doc:
    """A Map-Server/Map-Resolver serving ``sites``; ``tables`` as in
    :func:`tests.configs.merge`."""
    return configs.msmr(
        name,
        (rloc,),
        site_tables(sites, keys),
        roles=roles,
        control_socket=sock,
        daemon={"log-level": "debug"},
        **tables,
    )


def ms_config(
    name: str,
    rloc: str,
    sock: str,
    sites: Iterable[SiteHandle],
    keys: Mapping[int, str],
    *,
    roles: Sequence[str] = ("map-server", "map-resolver"),
    **tables: Any,
) -> str:
    """:func:`ms_doc` as lispd.conf text."""
    return configs.toml(ms_doc(name, rloc, sock, sites, keys, roles=roles, **tables))


def xtr_doc(
    site: SiteHandle,
    sock: str,
    ms: str,
    key: str,
    *,
    eid_space: tuple[str, str] = ("0.0.0.0/0", "::/0"),
    rloc: configs.Rloc | None = None,
    **tables: Any,
) -> configs.Doc:
    """An xTR of ``site`` registering with and resolving through ``ms``; destinations in
    ``eid_space`` are resolved; ``rloc`` replaces its database RLOC (default: its own address);
    ``tables`` as in :func:`tests.configs.merge`."""
    database_rloc = rloc or site.rloc
    doc = configs.xtr(
        site.xtr,
        (site.rloc,),
        control_socket=sock,
        daemon={"log-level": "debug"},
        database_mapping=[
            configs.mapping(site.prefix_v4, database_rloc),
            configs.mapping(site.prefix_v6, database_rloc),
        ],
        map_cache=[configs.resolve(prefix) for prefix in eid_space],
        map_server=[configs.map_server(ms, key)],
        map_resolver=configs.addresses(ms),
    )
    return configs.merge(doc, **tables)


def xtr_config(
    site: SiteHandle,
    sock: str,
    ms: str,
    key: str,
    *,
    eid_space: tuple[str, str] = ("0.0.0.0/0", "::/0"),
    rloc: configs.Rloc | None = None,
    **tables: Any,
) -> str:
    """:func:`xtr_doc` as lispd.conf text."""
    return configs.toml(xtr_doc(site, sock, ms, key, eid_space=eid_space, rloc=rloc, **tables))


def transfer(lab: Lab, src: str, dst: str, dst_addr: str, nbytes: int = 2_000_000) -> None:
    """A checksummed TCP transfer of ``nbytes`` from node ``src`` to ``dst_addr`` on ``dst``:
    what the receiver counted and hashed must be what the sender sent."""
    env = {**os.environ, "PYTHONPATH": REPO}
    server = lab.popen(
        dst,
        [sys.executable, "-m", "lispd.lab.transfer", "serve", dst_addr, "5001"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert server.stdout is not None and server.stdout.readline().strip() == "listening"
    sent = lab.run(
        src, sys.executable, "-m", "lispd.lab.transfer", "send", dst_addr, "5001", str(nbytes),
        timeout=60, env={"PYTHONPATH": REPO},
    ).stdout.split()  # fmt: skip
    assert sent == server.stdout.readline().split()
    server.wait(timeout=10)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 10.0, poll: float = 0.1) -> Any:
    """Poll ``check`` every ``poll`` s until it returns something true (returned); fail the
    test naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll)


def two_site_failover_config(
    plan: TwoSitePlan, me: int, sock: str, probing: tuple[float, float, int] | None
) -> str:
    """xTR ``me`` (1 or 2) of the two-site lab: the other site mapped statically to the peer's
    IPv4 RLOC (priority 1) and IPv6 RLOC (priority 2); ``probing`` is (interval, timeout,
    down-after), None for the defaults."""
    mine, peer = (1, 2) if me == 1 else (2, 1)
    rloc4, rloc6 = getattr(plan, f"xtr{mine}_rloc_v4"), getattr(plan, f"xtr{mine}_rloc_v6")
    peer4, peer6 = getattr(plan, f"xtr{peer}_rloc_v4"), getattr(plan, f"xtr{peer}_rloc_v6")
    site, other = ("a", "b") if me == 1 else ("b", "a")
    doc = configs.xtr(
        f"xtr{me}",
        (rloc4, rloc6),
        control_socket=sock,
        database_mapping=[
            configs.mapping(
                getattr(plan, f"site_{site}_prefix_{f}"), rloc4, {"address": rloc6, "priority": 2}
            )
            for f in ("v4", "v6")
        ],
        map_cache=[
            configs.mapping(
                getattr(plan, f"site_{other}_prefix_{f}"),
                {"address": peer4, "priority": 1},
                {"address": peer6, "priority": 2},
            )
            for f in ("v4", "v6")
        ],
    )
    if probing is not None:
        interval, timeout, down_after = probing
        doc["probing"] = {"interval": interval, "timeout": timeout, "down-after": down_after}
    return configs.toml(doc)


# --- a ping running in the background, SIGKILL -------------------------------------------------

PING_INTERVAL = 0.05


@dataclass
class ContinuousPing:
    """A pinger sending every :data:`PING_INTERVAL` s in the background; ``replies`` holds the
    monotonic arrival time (in this process) and sequence number of every echo reply."""

    proc: subprocess.Popen[str]
    replies: list[tuple[float, int]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            m = re.match(r"reply from \S+ seq=(\d+)", line)
            if m:
                with self._lock:
                    self.replies.append((time.monotonic(), int(m.group(1))))

    def times(self) -> list[float]:
        """Arrival times of the replies so far."""
        with self._lock:
            return [t for t, _ in self.replies]

    def first_reply_after(self, moment: float) -> float | None:
        """Arrival time of the first reply after ``moment``, or None."""
        return next((t for t in self.times() if t > moment), None)

    def outage_after(self, moment: float) -> float:
        """Seconds from ``moment`` to the first reply that ended the longest silence after
        it (0 when replies never stopped for more than three ping intervals)."""
        times = [t for t in self.times() if t > moment]
        best_end, best_gap = None, 3 * PING_INTERVAL
        for before, after in zip([moment, *times], times, strict=False):
            if after - before > best_gap:
                best_end, best_gap = after, after - before
        return 0.0 if best_end is None else best_end - moment


@contextlib.contextmanager
def continuous_ping(lab: Lab, node: str, dst: str, seconds: float) -> Iterator[ContinuousPing]:
    """Ping ``dst`` from ``node`` every :data:`PING_INTERVAL` s for up to ``seconds``."""
    count = int(seconds / PING_INTERVAL)
    argv = [sys.executable, "-u", "-I", "-S", pinger.__file__, "-c", str(count)]
    argv += ["-i", str(PING_INTERVAL), "-W", "1", dst]
    proc = lab.popen(node, argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ping = ContinuousPing(proc)
    reader = threading.Thread(target=ping._read, name="continuous-ping", daemon=True)
    reader.start()
    try:
        yield ping
    finally:
        proc.terminate()
        proc.wait(5)
        reader.join(5)


def ping_rtt(lab: Lab, node: str, dst: str, wait: float = 4.0) -> float | None:
    """The round-trip time in seconds of one echo request, None when no reply came."""
    proc = lab.run(
        node, sys.executable, "-I", "-S", pinger.__file__, "-c", "1", "-W", f"{wait:g}", dst,
        check=False, timeout=wait + 10,
    )  # fmt: skip
    m = re.search(r"time=([\d.]+) ms", proc.stdout)
    return None if m is None else float(m.group(1)) / 1000


def sigkill(daemon: DaemonHandle) -> None:
    """Kill ``daemon`` with SIGKILL (no clean-up of its own) and reap it."""
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(5)
    assert daemon.returncode == -signal.SIGKILL
