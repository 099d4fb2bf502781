"""Control-socket server: answers JSON requests about the running daemon.

Request: one line ``{"command": "stats"}`` (optionally with arguments); response: one line
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
from collections.abc import Callable
from typing import Any

from lispd.logfmt import kv

log = logging.getLogger("lispd.api")

Handler = Callable[[dict[str, Any]], Any]
MAX_REQUEST = 65536


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

    async def start(self) -> None:
        """Bind the socket (replacing a stale one) and start serving; the directories missing
        above it are created (and remembered, for :meth:`close`)."""
        self._make_directories(os.path.dirname(self.path))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.server = await asyncio.start_unix_server(self._client, path=self.path)
        os.chmod(self.path, self.mode)

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The response to one decoded request."""
        command = request.get("command")
        handler = self.handlers.get(command) if isinstance(command, str) else None
        if handler is None:
            return {"ok": False, "error": f"unknown command {command!r}"}
        try:
            return {"ok": True, "result": handler(request)}
        except (ValueError, KeyError) as exc:
            return {"ok": False, "error": str(exc)}

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
        return response

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            if len(line) > MAX_REQUEST:
                response = {"ok": False, "error": "request too long"}
            else:
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise ValueError("not an object")
                    response = await self.answer_async(request)
                except ValueError as exc:
                    response = {"ok": False, "error": f"bad request: {exc}"}
            writer.write(json.dumps(response).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            log.debug("control client error %s", kv(error=exc))
        finally:
            writer.close()

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
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        for path in reversed(self.created_dirs):
            with contextlib.suppress(OSError):  # not empty (or gone): left as it is
                os.rmdir(path)
        self.created_dirs = []
