"""``lispd-lab demo``, ``up`` and ``down`` run for real, as a user runs them (subprocesses from
the repository root): the demo tells every step and exits 0; interrupted it still tears down;
``up`` leaves a working world that ``down`` removes, also when its keeper was killed.  After each,
no namespace of the run and no process of it (lispd, tcpdump) may remain."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lispd.lab import pinger
from lispd.lab.netns import NS_PREFIX, TMP_PREFIX, list_namespaces
from tests.netns.common import REPO

pytestmark = pytest.mark.netns

LAB = [sys.executable, "-m", "lispd.lab"]
ENV = {**os.environ, "PYTHONPATH": REPO, "PYTHONUNBUFFERED": "1"}


def namespaces_of(pid: int) -> list[str]:
    """The namespaces the process ``pid`` created (``lt<pid><letter>-<node>``)."""
    return [n for n in list_namespaces() if n.startswith(f"{NS_PREFIX}{pid}") and "-" in n]


def processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that contain ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found


def assert_demo_left_nothing(pid: int) -> None:
    assert namespaces_of(pid) == []
    # lispd and tcpdump of the demo have their config/pcap in its workdir lispd-lab-<pid>x-*
    assert processes_mentioning(f"{TMP_PREFIX}{pid}") == []
    assert not list(Path("/tmp").glob(f"{TMP_PREFIX}{pid}*"))


def test_demo_tells_the_story_and_cleans_up() -> None:
    start = time.monotonic()
    demo = subprocess.Popen(
        [*LAB, "demo"], cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        out, err = demo.communicate(timeout=180)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    took = time.monotonic() - start
    assert demo.returncode == 0, out + err
    for text in (
        "[1] Build the seed world in network namespaces",
        "h1 -> 198.51.100.18: unreachable",
        "ms     pid",
        "# lispctl -s gxtr1.sock show nat",
        "h1# pinger -c 3 198.51.100.18",
        "h1# pinger -c 3 2001:db8:100:2::2",
        "sent=3 received=3",
        "192.0.2.10:",  # nat1's address, as the Internet sees site 1
        "gxtr1# ltr -c gxtr1-lispd.conf 198.51.100.18",
        "Received reply from 198.51.100.18",
        "RTR encap: 192.0.2.100 -> 192.0.2.14:",  # rtr1's public address, as in the seed
        "h1# pinger -c 3 203.0.113.2",
        "outside# pinger -c 3 2001:db8:100:1::2",
        "native-forward",
        "# lispctl -s gxtr1.sock show map-cache",
        "Tear everything down",
        "Summary",
        "demo succeeded: all",
    ):
        assert text in out, f"{text!r} missing from:\n{out}"
    assert "FAILED" not in out
    assert f"named {NS_PREFIX}{demo.pid}a-<node>" in out
    assert_demo_left_nothing(demo.pid)
    assert took < 90, f"the demo took {took:.0f} s"


def test_interrupted_demo_tears_everything_down() -> None:
    demo = subprocess.Popen(
        [*LAB, "demo"], cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    assert demo.stdout is not None
    lines = []
    try:
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("[4]"):  # daemons running, pings (and a capture) under way
                break
        assert namespaces_of(demo.pid), "".join(lines)
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    out = "".join(lines) + rest
    assert demo.returncode == 128 + signal.SIGINT, out
    assert "Interrupted by SIGINT." in out and "demo INTERRUPTED by SIGINT" in out, out
    assert "everything torn down" in out, out
    assert_demo_left_nothing(demo.pid)


def lab(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LAB, "--state-dir", str(state_dir), *args],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A private state dir for up/down (never the machine's /run/lispd-lab); down at the end
    whatever happened."""
    path = tmp_path / "state"
    try:
        yield path
    finally:
        lab(path, "down")


def read_state(state_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((state_dir / "state.json").read_text())
    return data


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def ping(namespace: str, dst: str) -> subprocess.CompletedProcess[str]:
    argv = ["ip", "netns", "exec", namespace, sys.executable, "-I", "-S", pinger.__file__]
    return subprocess.run(
        [*argv, "-c", "2", "-W", "3", dst], capture_output=True, text=True, timeout=30
    )


def assert_down(state: dict[str, Any], state_dir: Path) -> None:
    present = set(list_namespaces())
    assert not present & set(state["namespaces"].values())
    assert not alive(state["keeper_pid"])
    assert not [pid for pid in state["daemons"].values() if alive(pid)]
    assert processes_mentioning(str(state_dir)) == []
    assert not state_dir.exists()


def test_up_leaves_a_working_world_that_down_removes(state_dir: Path) -> None:
    up = lab(state_dir, "up")
    assert up.returncode == 0, up.stdout + up.stderr
    state = read_state(state_dir)
    ns = state["namespaces"]
    assert set(ns.values()) <= set(list_namespaces())
    assert all(alive(pid) for pid in [state["keeper_pid"], *state["daemons"].values()])
    assert f"ip netns exec {ns['h1']} bash" in up.stdout
    assert f"lispctl -s {state_dir}/world/gxtr1.sock show map-cache" in up.stdout
    assert f"lispd-lab --state-dir {state_dir} down" in up.stdout

    for src, dst in (
        ("h1", "198.51.100.18"),
        ("h2", "2001:db8:100:1::2"),
        ("outside", "198.51.100.2"),
    ):
        result = ping(ns[src], dst)
        assert result.returncode == 0, f"{src} -> {dst}: {result.stdout}{result.stderr}"
    again = lab(state_dir, "up")
    assert again.returncode == 1 and "already up" in again.stderr

    down = lab(state_dir, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "the seed world is down" in down.stdout
    assert_down(state, state_dir)
    nothing = lab(state_dir, "down")
    assert nothing.returncode == 0 and "nothing is up" in nothing.stdout


@pytest.mark.solo  # a Lab starting beside it would clean up the dead keeper's world first
def test_down_cleans_up_after_a_killed_keeper(state_dir: Path) -> None:
    up = lab(state_dir, "up")
    assert up.returncode == 0, up.stdout + up.stderr
    state = read_state(state_dir)
    os.kill(state["keeper_pid"], signal.SIGKILL)
    deadline = time.monotonic() + 5
    while alive(state["keeper_pid"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    down = lab(state_dir, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert_down(state, state_dir)
