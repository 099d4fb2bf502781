"""What goes wrong when lispd opens its resources, said in the configuration's terms.

A resource lispd opens at start (the TUN, a socket on an RLOC, the control socket, the metrics
listener, its routes) comes from a key of ``lispd.conf``.  When the kernel refuses it, the
operator needs the file and line of that key, the value, what the refusal means and what to do;
``[Errno 99] Cannot assign requested address`` says none of that.  :func:`opening` turns an
``OSError`` raised while opening one resource into a :class:`StartupError` that does.

:func:`host_warnings` is ``lispd --check``'s look at this host: what it can see would fail at
start here (an RLOC on no interface, no TUN device node, missing privileges), reported as
warnings, since a file may be checked on another host than the one it is meant for.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from lispd.config.locate import KeyPath, key_lines
from lispd.config.model import Config
from lispd.config.schema import format_key_path

TUN_DEVICE = Path("/dev/net/tun")
CAP_NET_ADMIN = 12
TUN_ROLES = frozenset({"itr", "etr", "pitr", "petr"})
"""Roles that need the TUN device (as the daemon opens it)."""


class StartupError(OSError):
    """A resource lispd could not open, named by the key of the configuration behind it:
    ``FILE:LINE: key.path: value: what went wrong; what to do``."""

    def __init__(self, where: str, key: KeyPath, value: str, problem: str, fix: str, code: int):
        self.key_path = format_key_path(key)
        self.value = value
        self.problem = problem
        self.fix = fix
        text = f"{where}: {self.key_path}: {value}: {problem}; {fix}"
        super().__init__(code, text)

    def __str__(self) -> str:
        return str(self.strerror)


def key_location(config: Config, key: KeyPath) -> str:
    """``FILE:LINE`` of ``key`` in the file ``config`` came from (``FILE`` alone when the line
    cannot be found, e.g. a default value or a file changed since)."""
    try:
        text = Path(config.path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return config.path
    lines = key_lines(text)
    for length in range(len(key), 0, -1):  # the key itself, else the table that holds it
        line = lines.get(key[:length])
        if line is not None:
            return f"{config.path}:{line}"
    return config.path


def port_holder(address: IPv4Address | IPv6Address, port: int, proto: str = "udp") -> str | None:
    """``"name (pid N)"`` of a process with a socket bound to ``port`` (on ``address`` or the
    wildcard), as far as /proc lets this process see; None when it cannot tell."""
    table = f"/proc/net/{proto}{'6' if address.version == 6 else ''}"
    inodes: set[str] = set()
    try:
        with open(table) as file:
            next(file)
            for line in file:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port:
                    inodes.add(fields[9])
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    inodes.discard("0")
    if not inodes:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:[") and target[8:-1] in inodes:
                        name = Path(f"/proc/{pid}/comm").read_text().strip()
                        return f"{name} (pid {pid})"
    return None


def explain(exc: OSError, what: str) -> tuple[str, str]:
    """(what went wrong, what to do) for ``exc`` raised while opening ``what``."""
    code = exc.errno
    if code == errno.EADDRNOTAVAIL:
        return (
            "not an address of this host (no interface has it)",
            "add it to an interface (ip address add ...) or use one of this host's addresses",
        )
    if code == errno.EADDRINUSE and exc.strerror and exc.strerror != os.strerror(code):
        return (exc.strerror, "stop it first, or give this instance another value")  # says who
    if code == errno.EADDRINUSE:
        return (f"{what} is already in use by another socket", "stop the process that holds it")
    if code in (errno.EACCES, errno.EPERM):
        return (
            f"permission denied opening {what}",
            "run lispd as root or with CAP_NET_ADMIN (systemd/lispd.service grants it)",
        )
    if code == errno.ENOENT and "TUN" in what:
        return (
            f"{TUN_DEVICE} does not exist",
            "load the tun module (modprobe tun) or give the service access to the device",
        )
    return (f"cannot open {what}: {exc.strerror or exc}", "see the error above")


@contextlib.contextmanager
def opening(
    config: Config,
    key: KeyPath,
    value: object,
    what: str,
    *,
    holder: tuple[IPv4Address | IPv6Address, int] | None = None,
) -> Iterator[None]:
    """Open one resource; an ``OSError`` inside becomes a :class:`StartupError` naming
    ``key`` (with its file and line), ``value`` and ``what`` was being opened.  ``holder``:
    the address and UDP port, to name the process holding it when it is in use."""
    try:
        yield
    except StartupError:
        raise
    except OSError as exc:
        problem, fix = explain(exc, what)
        if exc.errno == errno.EADDRINUSE and holder is not None:
            who = port_holder(*holder)
            if who is not None:
                problem = f"{what} is already in use by {who}"
        where = key_location(config, key)
        raise StartupError(where, key, str(value), problem, fix, exc.errno or 0) from exc


def _bindable(address: IPv4Address | IPv6Address) -> OSError | None:
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((str(address), 0))
        except OSError as exc:
            return exc
    return None


def _effective_capabilities() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        return None
    return None


def host_warnings(config: Config) -> list[str]:
    """What this host would refuse when ``config`` starts here, one ``FILE:LINE: key: ...``
    line each (empty when nothing)."""
    warnings: list[str] = []

    def warn(key: KeyPath, value: object, problem: str, fix: str) -> None:
        where = key_location(config, key)
        warnings.append(f"{where}: {format_key_path(key)}: {value}: {problem}; {fix}")

    for index, rloc in enumerate(config.underlay.rlocs):
        error = _bindable(rloc)
        if error is not None and error.errno == errno.EADDRNOTAVAIL:
            warn(("underlay", "rlocs", index), rloc, *explain(error, "the RLOC"))
    if config.daemon.roles & TUN_ROLES:
        if not TUN_DEVICE.exists():
            warn(("tun", "name"), config.tun.name, *explain(OSError(errno.ENOENT, ""), "TUN"))
        elif not os.access(TUN_DEVICE, os.R_OK | os.W_OK):
            warn(("tun", "name"), config.tun.name, *explain(OSError(errno.EACCES, ""), "TUN"))
    caps = _effective_capabilities()
    if config.daemon.roles & TUN_ROLES and caps is not None and not caps & (1 << CAP_NET_ADMIN):
        warn(
            ("daemon", "roles"),
            ",".join(sorted(config.daemon.roles)),
            "this process lacks CAP_NET_ADMIN, which the TUN, its routes and sysctls need",
            "run lispd as root or under systemd/lispd.service, which grants it",
        )
    return warnings
