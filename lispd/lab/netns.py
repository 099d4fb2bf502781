"""Operating-system work for the lab: network namespaces, ``ip`` batches, sysctls, cleanup.

Every namespace a lab creates is called ``lt<pid><letter>-<node>``: ``<pid>`` is the process
that built it and ``<letter>`` tells apart labs alive at the same time in one process.  Temp
dirs are ``lispd-lab-<pid><letter>-*`` in the system temp dir.  :func:`cleanup_stale` removes
both kinds when ``<pid>`` no longer exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import string
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "NS_PREFIX",
    "CommandError",
    "LabError",
    "add_namespace",
    "choose_run_id",
    "cleanup_stale",
    "delete_namespace",
    "down_links",
    "ip_batch",
    "kill_namespace_processes",
    "list_namespaces",
    "namespace_pids",
    "pid_alive",
    "run_checked",
    "set_sysctls",
    "wait_links_up",
]

NS_PREFIX = "lt"
TMP_PREFIX = "lispd-lab-"
_NS_RE = re.compile(rf"^{NS_PREFIX}(\d+)([a-z])-")
_TMP_RE = re.compile(rf"^{TMP_PREFIX}(\d+)([a-z])-")
_CMD_TIMEOUT = 30.0


class LabError(RuntimeError):
    """The lab could not be built, a command in it failed, or teardown left something."""


class CommandError(subprocess.CalledProcessError, LabError):
    """A command exited non-zero; ``str()`` shows its argv, exit code, stdout and stderr."""

    def __str__(self) -> str:
        text = f"command {self.cmd!r} exited with {self.returncode}"
        for label, out in (("stdout", self.stdout), ("stderr", self.stderr)):
            if out:
                if isinstance(out, bytes):
                    out = out.decode(errors="replace")
                text += f"\n--- {label} ---\n{out.rstrip()}"
        return text


def run_checked(
    argv: Sequence[str],
    *,
    input: str | None = None,
    timeout: float = _CMD_TIMEOUT,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (no shell), capture its text output; raise :class:`CommandError` on failure."""
    proc = subprocess.run(
        list(argv),
        input=input,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise CommandError(proc.returncode, list(argv), proc.stdout, proc.stderr)
    return proc


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (any owner)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_namespaces() -> list[str]:
    """Names of the named network namespaces (``ip netns list``)."""
    out = run_checked(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def add_namespace(name: str) -> None:
    """Create the named network namespace ``name``."""
    run_checked(["ip", "netns", "add", name])


def delete_namespace(name: str) -> None:
    """Delete the named network namespace ``name`` (its veths go with it)."""
    run_checked(["ip", "netns", "delete", name])


def namespace_pids(name: str) -> list[int]:
    """Pids of the processes running in namespace ``name``."""
    proc = run_checked(["ip", "netns", "pids", name], check=False)
    return [int(tok) for tok in proc.stdout.split() if tok.isdigit()]


def kill_namespace_processes(name: str) -> list[int]:
    """SIGKILL every process left in namespace ``name``; return their pids."""
    pids = [p for p in namespace_pids(name) if p != os.getpid()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def ip_batch(ns: str, lines: Iterable[str]) -> None:
    """Run ``ip`` commands (one per line, without the leading ``ip``) inside namespace ``ns``.

    Stops at the first failing line; the :class:`CommandError` carries the whole batch.
    """
    text = "".join(line + "\n" for line in lines)
    if not text:
        return
    try:
        run_checked(["ip", "-n", ns, "-batch", "-"], input=text)
    except CommandError as exc:
        exc.stderr = f"{exc.stderr}--- batch ---\n{text}"
        raise


def down_links(ns: str, ifnames: Iterable[str]) -> list[str]:
    """Those of ``ifnames`` in namespace ``ns`` whose operational state is not ``UP``."""
    out = run_checked(["ip", "-n", ns, "-j", "link", "show"]).stdout
    state = {link["ifname"]: link.get("operstate") for link in json.loads(out or "[]")}
    return [name for name in ifnames if state.get(name) != "UP"]


def wait_links_up(links: dict[str, list[str]], timeout: float = 10.0) -> None:
    """Wait until every interface of ``links`` (namespace -> names) is operationally UP.

    A veth's carrier comes up asynchronously after both ends are set up (the kernel's link
    watch may defer it by up to a second); until then packets are dropped.
    """
    deadline = time.monotonic() + timeout
    pending = {ns: list(names) for ns, names in links.items() if names}
    while pending:
        pending = {ns: down for ns, names in pending.items() if (down := down_links(ns, names))}
        if not pending:
            return
        if time.monotonic() > deadline:
            raise LabError(f"links still down after {timeout:g} s: {pending}")
        time.sleep(0.02)


def set_sysctls(ns: str, settings: dict[str, str]) -> None:
    """Write ``settings`` (``{"net.ipv4.ip_forward": "1", ...}``) inside namespace ``ns``."""
    if settings:
        argv = ["ip", "netns", "exec", ns, "sysctl", "-q", "-w"]
        run_checked(argv + [f"{k}={v}" for k, v in settings.items()])


def choose_run_id() -> str:
    """A run id ``<pid><letter>`` not used by any namespace or temp dir that exists now."""
    pid = os.getpid()
    names = set(list_namespaces())
    tmp = Path(tempfile.gettempdir())
    for letter in string.ascii_lowercase:
        run_id = f"{pid}{letter}"
        if any(n.startswith(f"{NS_PREFIX}{run_id}-") for n in names):
            continue
        if any(tmp.glob(f"{TMP_PREFIX}{run_id}-*")):
            continue
        return run_id
    raise LabError(f"26 labs already alive in process {pid}")


def cleanup_stale() -> list[str]:
    """Remove lab namespaces and temp dirs whose creating process no longer exists.

    Processes still running inside a stale namespace are killed first.  Returns what was
    removed (namespace names and temp dir paths).  Labs of live processes are left alone.
    """
    removed: list[str] = []
    for name in list_namespaces():
        m = _NS_RE.match(name)
        if m is None or pid_alive(int(m.group(1))):
            continue
        kill_namespace_processes(name)
        with contextlib.suppress(CommandError):
            delete_namespace(name)
            removed.append(name)
    tmp = Path(tempfile.gettempdir())
    for path in tmp.glob(f"{TMP_PREFIX}*"):
        m = _TMP_RE.match(path.name)
        if m is None or pid_alive(int(m.group(1))) or not path.is_dir():
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(str(path))
    return removed
