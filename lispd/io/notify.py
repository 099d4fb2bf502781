"""systemd's notify protocol (sd_notify): one datagram to $NOTIFY_SOCKET per state change."""

from __future__ import annotations

import os
import socket


def sd_notify(state: str) -> bool:
    """Send ``state`` (e.g. "READY=1\\nSTATUS=...") to the service manager; False when not
    running under one (no NOTIFY_SOCKET), it cannot be reached, or its queue is full.

    Never blocks: the daemon calls this from the event loop that carries the data plane, and
    a datagram to a manager that does not read its socket (a queue of
    ``net.unix.max_dgram_qlen``, 10 by default, already full) would otherwise stall every
    packet until it does.  Such a notification is dropped instead.
    """
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]  # abstract namespace socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(path)
            sock.send(state.encode(), socket.MSG_DONTWAIT)
    except OSError:
        return False
    return True


def watchdog_interval(
    environ: dict[str, str] | None = None, pid: int | None = None
) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings when the service manager asked for them
    (``WATCHDOG_USEC``, for this process if ``WATCHDOG_PID`` names one): half the watchdog
    timeout, as systemd recommends.  None when no watchdog is armed."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 1_000_000 / 2
