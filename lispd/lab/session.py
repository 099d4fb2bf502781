"""``lispd-lab up`` / ``lispd-lab down``: the seed world left running to explore, and removed.

A lab's namespaces are named after the process that built them, and every lab start removes
the namespaces of processes that no longer exist (:func:`lispd.lab.netns.cleanup_stale`).  So
``up`` does not build the world itself: it starts a *keeper*, a detached process
(``python -m lispd.lab _keep``, its own session) that builds the world, starts the daemons,
writes the state file ``<state-dir>/state.json`` (default state dir ``/run/lispd-lab``) and then
waits.  ``up`` waits for the keeper's word on a pipe, prints how to explore, and returns.

``down`` reads the state file and SIGTERMs the keeper, which stops the daemons and deletes the
namespaces (as any lab teardown).  Should the keeper be gone (killed, machine state lost), down
kills what is left in the namespaces the state file names and deletes exactly those.  Down with
no state file says so and succeeds.  Only one world per state dir is up at a time.

State file (JSON): ``keeper_pid``, ``status`` (``starting`` then ``up``), ``run_id``,
``workdir`` (configs, logs, control sockets), ``namespaces`` (node -> namespace), ``daemons``
(node -> pid), ``sockets`` and ``configs`` (node -> path), ``python`` (the interpreter).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from lispd.lab import netns
from lispd.lab import pinger as pinger_module
from lispd.lab.lab import Lab
from lispd.lab.plans import NatPlan
from lispd.lab.world import ROLES, seed_plan, socket_path, start_daemons, wait_converged

__all__ = [
    "DEFAULT_STATE_DIR",
    "down",
    "explore_text",
    "keep",
    "read_state",
    "up",
]

DEFAULT_STATE_DIR = Path("/run/lispd-lab")
STATE_FILE = "state.json"
WORKDIR = "world"
KEEPER_LOG = "keeper.log"
UP_TIMEOUT = 90.0
DOWN_TIMEOUT = 30.0
KILL_WAIT = 5.0  # seconds down waits for SIGKILLed processes to be gone


class _Stop(BaseException):
    """SIGTERM or SIGINT reached the keeper."""


def read_state(state_dir: Path) -> dict[str, Any] | None:
    """The state file's content, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_state(state_dir: Path, state: dict[str, Any]) -> None:
    tmp = state_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(state_dir / STATE_FILE)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _keeper_alive(state: dict[str, Any]) -> bool:
    pid = state.get("keeper_pid")
    return isinstance(pid, int) and "lispd.lab" in _cmdline(pid) and "_keep" in _cmdline(pid)


def _tool(name: str) -> str:
    """How to run lispd's console script ``name``: next to this Python, else ``python -m``."""
    script = Path(sys.executable).parent / name
    if script.exists():
        return str(script)
    return f"{sys.executable} -m lispd.cli.{name}"


def explore_text(state: dict[str, Any]) -> str:
    """What ``up`` prints: the world's namespaces and commands to explore it."""
    ns: dict[str, str] = state["namespaces"]
    socks: dict[str, str] = state["sockets"]
    confs: dict[str, str] = state["configs"]
    plan = seed_plan()
    s1, s2 = plan.sites
    py = state.get("python", sys.executable)
    pinger = f"{py} {pinger_module.__file__} -c 3"
    lispctl, ltr = _tool("lispctl"), _tool("ltr")
    lines = [
        f"The seed world is up (run {state['run_id']}; keeper pid {state['keeper_pid']}).",
        "",
        "Namespaces:",
        *(f"  {node:<9} {name}" for node, name in ns.items()),
        "",
        "lispd nodes:",
        *(f"  {n:<6} {ROLES.get(n, '')}; pid {pid}" for n, pid in state["daemons"].items()),
        f"  configs, logs and control sockets: {state['workdir']}",
        "",
        "Explore:",
        f"  ip netns exec {ns[s1.host]} bash     # a shell on h1 (exit to leave)",
        "  # ping between the sites, and to and from the outside world:",
        f"  ip netns exec {ns[s1.host]} {pinger} {s2.host_v4}",
        f"  ip netns exec {ns[s2.host]} {pinger} {s1.host_v6}",
        f"  ip netns exec {ns[s1.host]} {pinger} {plan.outside_v6}",
        f"  ip netns exec {ns[plan.outside]} {pinger} {s1.host_v4}",
        "  # what the lispd nodes know:",
        f"  {lispctl} -s {socks[s1.xtr]} show map-cache",
        f"  {lispctl} -s {socks[s1.xtr]} show nat",
        f"  {lispctl} -s {socks[plan.rtr1]} show map-cache",
        f"  {lispctl} -s {socks[plan.rtr1]} show rtr",
        f"  {lispctl} -s {socks[plan.ms]} show site",
        "  # LISP-Trace from gxtr1 to h2 (IPv4 and IPv6 EIDs):",
        f"  ip netns exec {ns[s1.xtr]} {ltr} -c {confs[s1.xtr]} {s2.host_v4}",
        f"  ip netns exec {ns[s1.xtr]} {ltr} -c {confs[s1.xtr]} {s2.host_v6}",
        "  # what the Internet sees of site 1 (Ctrl-C to stop):",
        f"  ip netns exec {ns[plan.nat1]} tcpdump -ni {plan.nat1_public_if} udp",
        "",
        f"Tear it down with: {_down_command(state)}",
    ]
    return "\n".join(lines)


def _down_command(state: dict[str, Any]) -> str:
    state_dir = state.get("state_dir")
    if state_dir is None or Path(state_dir) == DEFAULT_STATE_DIR:
        return "lispd-lab down"
    return f"lispd-lab --state-dir {state_dir} down"


# -- the keeper (runs detached) --------------------------------------------------------------


def keep(state_dir: Path, ready_fd: int) -> int:
    """Build the world, start lispd, write the state file, say ``ok`` (or ``error: ...``) on
    ``ready_fd``, then wait for SIGTERM/SIGINT and tear everything down."""

    def stop(signum: int, frame: FrameType | None) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        raise _Stop

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    workdir = state_dir / WORKDIR
    state: dict[str, Any] = {"keeper_pid": os.getpid(), "status": "starting"}
    plan = seed_plan()
    lab = Lab(plan.topology, workdir=workdir)
    try:
        _write_state(state_dir, state)
        lab.start()
        handles = start_daemons(lab, plan)
        wait_converged(plan, workdir)
        _warm_up(lab, plan)
        state.update(
            status="up",
            run_id=lab.run_id,
            workdir=str(workdir),
            namespaces={node: lab.ns(node) for node in plan.topology.nodes},
            daemons={node: h.pid for node, h in handles.items()},
            sockets={node: str(socket_path(workdir, node)) for node in handles},
            configs={node: str(h.config_path) for node, h in handles.items()},
            python=sys.executable,
            state_dir=str(state_dir),
        )
        _write_state(state_dir, state)
        _tell(ready_fd, "ok")
        while True:
            time.sleep(3600)
    except _Stop:
        return 0
    except Exception as exc:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        _tell(ready_fd, f"error: {type(exc).__name__}: {exc}")
        return 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        lab.close(raise_errors=False)
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)


def _warm_up(lab: Lab, plan: NatPlan) -> None:
    """Ping between the sites (both families, both ways) and to the outside world, so that
    the world is known to work and rtr1 has its mappings (an RTR does not hold LISP-Trace
    packets while it resolves: ``ltr`` through a cold RTR stops at a map-cache miss)."""
    s1, s2 = plan.sites
    pairs = [(s1.host, s2.host_v4), (s1.host, s2.host_v6), (s2.host, s1.host_v4)]
    pairs += [(s2.host, s1.host_v6), (s1.host, plan.outside_v4), (s1.host, plan.outside_v6)]
    for src, dst in pairs:
        if not lab.ping(src, dst, wait=3.0):
            raise RuntimeError(f"{src} cannot reach {dst}")


def _tell(fd: int, text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, text.encode() + b"\n")
        os.close(fd)


# -- up and down -----------------------------------------------------------------------------


def up(state_dir: Path = DEFAULT_STATE_DIR, out: Any = None) -> int:
    """Start the keeper, wait until the world is up, print how to explore it; exit status."""
    out = out or sys.stdout
    state = read_state(state_dir)
    if state is not None:
        if _keeper_alive(state):
            print(
                f"lispd-lab: a seed world is already up (keeper pid {state['keeper_pid']}); "
                "run lispd-lab down first",
                file=sys.stderr,
            )
            return 1
        _remove_leftovers(state, state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(state_dir / WORKDIR, ignore_errors=True)
    (state_dir / WORKDIR).mkdir()
    read_fd, write_fd = os.pipe()
    log_path = state_dir / KEEPER_LOG
    argv = [sys.executable, "-m", "lispd.lab", "--state-dir", str(state_dir), "_keep"]
    argv += ["--ready-fd", str(write_fd)]
    with log_path.open("wb") as log:
        keeper = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(write_fd,),
            start_new_session=True,
            cwd="/",
            env={**os.environ, **_python_path()},
        )
    os.close(write_fd)
    print(f"lispd-lab: building the seed world (keeper pid {keeper.pid}) ...", file=out)
    try:
        word = _read_word(read_fd, keeper, UP_TIMEOUT)
    except KeyboardInterrupt:
        _stop_keeper(keeper.pid)
        print("lispd-lab up: interrupted; everything torn down", file=sys.stderr)
        return 130
    finally:
        os.close(read_fd)
    if word != "ok":
        _stop_keeper(keeper.pid)
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        print(f"lispd-lab up failed: {word or 'the keeper exited'}\n{tail}", file=sys.stderr)
        return 1
    state = read_state(state_dir)
    assert state is not None
    print(explore_text(state), file=out)
    return 0


def _python_path() -> dict[str, str]:
    import lispd

    root = str(Path(lispd.__file__).resolve().parent.parent)
    old = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": root + (os.pathsep + old if old else "")}


def _read_word(fd: int, keeper: subprocess.Popen[bytes], timeout: float) -> str:
    """The keeper's line on the pipe ("" when it closed it or died without one)."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            return f"no word from the keeper within {timeout:g} s"
        ready, _, _ = select.select([fd], [], [], min(left, 0.5))
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
        elif keeper.poll() is not None:
            break
    return data.decode(errors="replace").strip()


def _stop_keeper(pid: int, timeout: float = DOWN_TIMEOUT) -> bool:
    """SIGTERM the keeper and wait for it to finish its teardown; SIGKILL after ``timeout``.
    Whether it ended by itself."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _running(pid):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return False


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is no zombie (reaping it when it is our child)."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _remove_leftovers(state: dict[str, Any], state_dir: Path) -> tuple[list[str], list[str]]:
    """Kill what runs in the state's namespaces, delete them, remove the state; return the
    namespaces deleted and those that could not be."""
    existing = set(netns.list_namespaces())
    deleted, failed = [], []
    killed: list[int] = []
    for name in (state.get("namespaces") or {}).values():
        if name not in existing:
            continue
        killed += netns.kill_namespace_processes(name)
        try:
            netns.delete_namespace(name)
            deleted.append(name)
        except netns.CommandError:
            failed.append(name)
    workdir = state.get("workdir")
    for pid in (state.get("daemons") or {}).values():
        if isinstance(pid, int) and workdir and workdir in _cmdline(pid):  # its config there
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    # SIGKILL is not instant (a daemon unmaps its buffers first): down returns once they are gone
    deadline = time.monotonic() + KILL_WAIT
    while any(_running(pid) for pid in killed) and time.monotonic() < deadline:
        time.sleep(0.02)
    if not failed:
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        shutil.rmtree(state_dir / WORKDIR, ignore_errors=True)
    return deleted, failed


def down(state_dir: Path = DEFAULT_STATE_DIR, out: Any = None) -> int:
    """Stop the world ``up`` left running; exit status 0 also when nothing was up."""
    out = out or sys.stdout
    state = read_state(state_dir)
    if state is None:
        print("lispd-lab: nothing is up", file=out)
        return 0
    names = list((state.get("namespaces") or {}).values())
    if _keeper_alive(state):
        print(f"lispd-lab: stopping the keeper (pid {state['keeper_pid']}) ...", file=out)
        _stop_keeper(state["keeper_pid"])
    deleted, failed = _remove_leftovers(state, state_dir)
    if failed:
        print(f"lispd-lab down: could not delete {' '.join(failed)}", file=sys.stderr)
        return 1
    left = sorted(set(names) & set(netns.list_namespaces()))
    if left:
        print(f"lispd-lab down: still there: {' '.join(left)}", file=sys.stderr)
        return 1
    (state_dir / KEEPER_LOG).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        state_dir.rmdir()  # only when empty
    extra = f" ({len(deleted)} left behind by the keeper removed)" if deleted else ""
    print(
        f"lispd-lab: the seed world is down: lispd stopped, {len(names)} namespaces deleted{extra}",
        file=out,
    )
    return 0
