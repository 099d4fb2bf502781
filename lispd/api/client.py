"""A blocking client of the control socket (for lispctl, ltr and tests)."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from typing import Any


class ControlError(Exception):
    """The daemon refused the request or could not be reached."""


def request(path: str, command: str, timeout: float = 5.0, **args: Any) -> Any:
    """Send one command to the daemon at ``path`` and return its result."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            sock.sendall(json.dumps({"command": command, **args}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError as exc:
            raise ControlError(f"{path}: {exc.strerror or exc}") from None
    try:
        response = json.loads(data)
    except ValueError:
        raise ControlError("malformed response from the daemon") from None
    if not response.get("ok"):
        raise ControlError(response.get("error", "request failed"))
    return response.get("result")


def entries(
    path: str, command: str, count: int = 100, timeout: float = 5.0, **args: Any
) -> Iterator[Any]:
    """Every entry of a table command (``map-cache``, ``database``, ``site``, ``rlocs``,
    ``rtr``), fetched a page of ``count`` at a time (see :mod:`lispd.api.paging`); stopping
    early closes the listing at the daemon."""
    cursor: str | None = None
    try:
        while True:
            page = request(path, command, timeout, cursor=cursor, count=count, **args)
            cursor = page["cursor"]
            yield from page["entries"]
            if cursor is None:
                return
    finally:
        if cursor is not None:  # (the daemon drops it after its idle timeout anyway)
            with contextlib.suppress(ControlError):
                request(path, command, timeout, cursor=cursor, close=True)
