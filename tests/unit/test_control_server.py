"""The control socket's directory: created when missing (``/run/lispd`` on a run by hand),
removed again on close when this run created it and it is empty; a directory that was there
before (systemd's ``RuntimeDirectory=``) is never removed."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path

import pytest

from lispd.api.server import ControlServer


def ask(path: Path, command: str) -> object:
    """One request on the unix socket at ``path`` (blocking, run off the loop's thread)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(json.dumps({"command": command}).encode() + b"\n")
        reply = sock.makefile("rb").readline()
    return json.loads(reply)


async def serve_once(path: Path) -> object:
    """Start a server at ``path``, ask it one question, close it; returns the answer."""
    server = ControlServer(str(path), {"version": lambda _req: "test"})
    await server.start()
    try:
        assert path.is_socket()
        return await asyncio.to_thread(ask, path, "version")
    finally:
        await server.close()


def test_directories_it_created_are_removed_on_close(tmp_path: Path) -> None:
    path = tmp_path / "run" / "lispd" / "lispd.sock"
    assert asyncio.run(serve_once(path)) == {"ok": True, "result": "test"}
    assert not (tmp_path / "run").exists()  # both levels were ours, and are gone
    assert tmp_path.is_dir()


def test_a_directory_that_was_there_stays(tmp_path: Path) -> None:
    """As under systemd, whose RuntimeDirectory=lispd makes /run/lispd before lispd starts."""
    runtime = tmp_path / "lispd"
    runtime.mkdir(mode=0o750)
    path = runtime / "lispd.sock"
    asyncio.run(serve_once(path))
    assert runtime.is_dir() and not path.exists()
    assert runtime.stat().st_mode & 0o777 == 0o750


def test_only_the_missing_levels_are_ours(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    path = tmp_path / "run" / "lispd" / "lispd.sock"
    asyncio.run(serve_once(path))
    assert (tmp_path / "run").is_dir() and not (tmp_path / "run" / "lispd").exists()


def test_a_directory_it_created_is_kept_when_not_empty(tmp_path: Path) -> None:
    path = tmp_path / "run" / "lispd" / "lispd.sock"

    async def scenario() -> None:
        server = ControlServer(str(path), {})
        await server.start()
        (path.parent / "other.sock").write_text("someone else's")
        await server.close()

    asyncio.run(scenario())
    assert not path.exists()
    assert (path.parent / "other.sock").read_text() == "someone else's"


def test_a_failed_start_still_cleans_up_on_close(tmp_path: Path) -> None:
    """The daemon closes a half-started server: the directory made before the bind failed
    goes too (a unix socket path is at most 107 bytes)."""
    directory = tmp_path / "made"
    path = directory / ("s" * 120)

    async def scenario() -> None:
        server = ControlServer(str(path), {})
        with pytest.raises(OSError):
            await server.start()
        assert directory.is_dir() and server.created_dirs == [str(directory)]
        await server.close()

    asyncio.run(scenario())
    assert not directory.exists()


def test_a_file_in_the_way_is_an_error_and_nothing_is_removed(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("not a directory")
    server = ControlServer(str(tmp_path / "run" / "lispd.sock"), {})
    with pytest.raises(OSError):
        asyncio.run(server.start())
    assert server.created_dirs == []
    assert (tmp_path / "run").read_text() == "not a directory"


def test_a_socket_in_the_current_directory_needs_no_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    asyncio.run(serve_once(Path("lispd.sock")))
    assert os.listdir(tmp_path) == []


# --- bounded and total: every client gets an answer, none holds the others up ----------------


def raw_ask(path: Path, data: bytes, timeout: float = 10.0) -> dict[str, object]:
    """Send ``data`` as is and read the one-line answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(data)
        reply = sock.makefile("rb").readline()
    answer = json.loads(reply)
    assert isinstance(answer, dict)
    return answer


def failing(_request: dict[str, object]) -> object:
    raise RuntimeError("a bug in a handler")


HANDLERS = {"version": lambda _req: {"name": "n1"}, "boom": failing}


def test_every_bad_request_gets_an_error_object(tmp_path: Path) -> None:
    path = tmp_path / "lispd.sock"

    async def run() -> list[dict[str, object]]:
        server = ControlServer(str(path), HANDLERS)
        await server.start()
        try:
            cases = [
                b"x" * 70_000 + b"\n",  # over 64 KiB with a newline
                b"y" * 200_000,  # over 64 KiB, never a newline
                b"{not json\n",
                b"[1, 2]\n",
                b'{"command": "nope"}\n',
                b'{"command": "boom"}\n',
                b"[" * 100_000 + b"\n",  # deep nesting
            ]
            return [await asyncio.to_thread(raw_ask, path, c) for c in cases]
        finally:
            await server.close()

    answers = asyncio.run(run())
    assert all(a["ok"] is False for a in answers), answers
    errors = [str(a["error"]) for a in answers]
    assert errors[0].startswith("request too long") and errors[1].startswith("request too long")
    assert errors[2].startswith("bad request") and errors[3] == "bad request: not an object"
    assert errors[4] == "unknown command 'nope'"
    assert errors[5] == "internal error: RuntimeError"
    assert errors[6].startswith(("bad request", "request too long"))


def test_a_silent_client_does_not_hold_up_the_others(tmp_path: Path) -> None:
    path = tmp_path / "lispd.sock"

    async def run() -> tuple[dict[str, object], float]:
        server = ControlServer(str(path), HANDLERS)
        await server.start()
        idle = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(5)]
        try:
            for sock in idle:  # connected, saying nothing
                sock.connect(str(path))
            start = asyncio.get_running_loop().time()
            answer = await asyncio.to_thread(raw_ask, path, b'{"command": "version"}\n', 3.0)
            return answer, asyncio.get_running_loop().time() - start
        finally:
            for sock in idle:
                sock.close()
            await server.close()

    answer, took = asyncio.run(run())
    assert answer == {"ok": True, "result": {"name": "n1"}}
    assert took < 1.0


def test_a_second_server_refuses_a_socket_that_answers_and_leaves_it(tmp_path: Path) -> None:
    path = tmp_path / "lispd.sock"

    async def run() -> str:
        first = ControlServer(str(path), HANDLERS)
        await first.start()
        try:
            second = ControlServer(str(path), HANDLERS)
            with pytest.raises(OSError) as err:
                await second.start()
            await second.close()  # as the daemon does after a failed start
            assert path.is_socket()  # the running one's socket is still there ...
            answer = await asyncio.to_thread(ask, path, "version")
            assert answer == {"ok": True, "result": {"name": "n1"}}  # ... and answers
            return str(err.value)
        finally:
            await first.close()

    message = asyncio.run(run())
    assert message == f"[Errno 98] lispd (node n1) is serving {path}"


def test_a_stale_socket_is_taken_over_and_a_plain_file_is_not(tmp_path: Path) -> None:
    path = tmp_path / "lispd.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))  # a run that died: the file stays, nobody listens
    assert asyncio.run(serve_once(path)) == {"ok": True, "result": "test"}
    path.write_text("not a socket")
    with pytest.raises(FileExistsError, match="exists and is not a socket"):
        asyncio.run(serve_once(path))
    assert path.read_text() == "not a socket"
