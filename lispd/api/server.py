"""Control-socket server: answers JSON requests about the running daemon.

Request: one line ``{"command": "stats"}`` (optionally with arguments); response: one line
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``.

Bounded and total: a request line over :data:`MAX_REQUEST` bytes, one that does not come within
:data:`REQUEST_TIMEOUT`, malformed JSON, an unknown command and a handler that fails all get an
error object (never an unhandled exception, never an empty reply); at most :data:`MAX_CLIENTS`
are served at once, the rest told so at once, so one client cannot hold the others up.

The socket is taken over from a previous run only when nothing answers on it: a second lispd on
the same configuration refuses to start instead of silently stealing the running one's socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import json
import logging
import os
import socket
import stat
from collections.abc import Callable
from typing import Any

from lispd.logfmt import kv

log = logging.getLogger("lispd.api")

Handler = Callable[[dict[str, Any]], Any]
MAX_REQUEST = 65536
"""Longest request line, in bytes (the newline included)."""
REQUEST_TIMEOUT = 5.0
"""Seconds a client has to send its request line."""
MAX_CLIENTS = 32
"""Clients served at once."""
PROBE_TIMEOUT = 1.0
"""Seconds to wait for an answer on an existing socket before calling it stale."""


class ControlServer:
    """Serves ``handlers`` (command name -> function of the request) on a unix socket."""

    def __init__(self, path: str, handlers: dict[str, Handler], mode: int = 0o660) -> None:
        self.path = path
        self.handlers = handlers
        self.mode = mode
        self.server: asyncio.AbstractServer | None = None
        # The directories above the socket that start() created, outermost first: close()
        # removes them again when empty.  One that was there already (systemd's
        # RuntimeDirectory=, an operator's) is never in it.
        self.created_dirs: list[str] = []
        self.bound = False  # the socket file is ours: close() removes it, and only then
        self.clients = 0

    async def start(self) -> None:
        """Bind the socket (replacing a stale one) and start serving; the directories missing
        above it are created (and remembered, for :meth:`close`)."""
        self._make_directories(os.path.dirname(self.path))
        # Off the loop: asking a socket that is there who serves it may wait for an answer.
        listener = await asyncio.to_thread(self._bind)
        self.bound = True
        self.server = await asyncio.start_unix_server(
            self._client, sock=listener, limit=MAX_REQUEST + 1
        )
        os.chmod(self.path, self.mode)

    def _bind(self) -> socket.socket:
        """A listening socket on :attr:`path`.  A file already there is replaced only when it
        is a socket nobody answers on (a run that died); OSError(EADDRINUSE) names the lispd
        that answers, OSError(EEXIST) a file that is not a socket."""
        for attempt in range(2):
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                listener.bind(self.path)
            except OSError as exc:
                listener.close()
                if exc.errno != errno.EADDRINUSE or attempt:
                    raise
                self._remove_stale()
                continue
            listener.listen(MAX_CLIENTS)
            listener.setblocking(False)
            return listener
        raise AssertionError("unreachable")

    def _remove_stale(self) -> None:
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise OSError(errno.EEXIST, f"{self.path} exists and is not a socket")
        who = probe(self.path)
        if who is not None:
            raise OSError(errno.EADDRINUSE, f"{who} is serving {self.path}")
        log.info("stale control socket replaced %s", kv(path=self.path))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The response to one decoded request."""
        command = request.get("command")
        handler = self.handlers.get(command) if isinstance(command, str) else None
        if handler is None:
            return {"ok": False, "error": f"unknown command {str(command)[:64]!r}"}
        try:
            return {"ok": True, "result": handler(request)}
        except (ValueError, KeyError) as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # a bug in a handler: the client still gets an answer
            log.exception("control command failed %s", kv(command=command))
            return {"ok": False, "error": f"internal error: {type(exc).__name__}"}

    async def answer_async(self, request: dict[str, Any]) -> dict[str, Any]:
        """:meth:`answer`, awaiting a handler that returns an awaitable (one that asks
        another process, such as the fast-path workers for their counters)."""
        response = self.answer(request)
        result = response.get("result")
        if inspect.isawaitable(result):
            try:
                response["result"] = await result
            except (ValueError, KeyError) as exc:
                response = {"ok": False, "error": str(exc)}
            except Exception as exc:
                log.exception("control command failed %s", kv(command=request.get("command")))
                response = {"ok": False, "error": f"internal error: {type(exc).__name__}"}
        return response

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients += 1
        try:
            if self.clients > MAX_CLIENTS:
                response: dict[str, Any] = {"ok": False, "error": "busy: too many clients"}
            else:
                response = await self._respond(reader)
            writer.write(json.dumps(response).encode() + b"\n")
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)
        except (ConnectionError, TimeoutError) as exc:
            log.debug("control client error %s", kv(error=exc))
        finally:
            self.clients -= 1
            writer.close()

    async def _respond(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        """Read one request line within the bounds and answer it."""
        try:
            line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT)
        except TimeoutError:
            return {"ok": False, "error": f"no request within {REQUEST_TIMEOUT:g} s"}
        except ValueError:  # the line outgrew the stream's limit (LimitOverrunError)
            return {"ok": False, "error": f"request too long (over {MAX_REQUEST} bytes)"}
        if len(line) > MAX_REQUEST:
            return {"ok": False, "error": f"request too long (over {MAX_REQUEST} bytes)"}
        try:
            request = json.loads(line)
        except (ValueError, RecursionError) as exc:
            return {"ok": False, "error": f"bad request: {str(exc)[:200]}"}
        if not isinstance(request, dict):
            return {"ok": False, "error": "bad request: not an object"}
        return await self.answer_async(request)

    def _make_directories(self, directory: str) -> None:
        """Create ``directory`` and its missing parents one by one, recording each one this
        call created (one that appears meanwhile, made by someone else, is not ours)."""
        missing: list[str] = []
        while directory and not os.path.isdir(directory):
            missing.append(directory)
            parent = os.path.dirname(directory)
            if parent == directory:
                break
            directory = parent
        for path in reversed(missing):
            try:
                os.mkdir(path)
            except FileExistsError:
                if not os.path.isdir(path):
                    raise
                continue
            self.created_dirs.append(path)

    async def close(self) -> None:
        """Stop serving, remove the socket file and, when empty, the directories
        :meth:`start` created (so a run by hand leaves no /run/lispd behind)."""
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        if self.bound:  # never another lispd's socket, when ours could not be made
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self.bound = False
        for path in reversed(self.created_dirs):
            with contextlib.suppress(OSError):  # not empty (or gone): left as it is
                os.rmdir(path)
        self.created_dirs = []


def probe(path: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """Who answers on the control socket at ``path``: ``"lispd (node NAME)"``, ``"a process"``
    for an answer that is not lispd's, or None when nothing listens (a stale socket)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        try:
            client.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return None
        except OSError:
            return "a process"  # it exists and we may not even talk to it: not ours to take
        try:
            client.sendall(b'{"command": "version"}\n')
            reply = json.loads(client.makefile("rb").readline(MAX_REQUEST))
            name = reply["result"]["name"]
        except (OSError, ValueError, KeyError, TypeError):
            return "a process"
        return f"lispd (node {name})"
