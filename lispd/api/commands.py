"""The control socket's commands (``lispctl``): one registry, one function per command.

A command takes the running daemon and the request (a JSON object) and returns what is sent
back (JSON-able), or an awaitable of it (the server awaits it).  :func:`handlers` binds the
registry to one daemon for :class:`~lispd.api.server.ControlServer`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lispd import __version__
from lispd.api import views

if TYPE_CHECKING:
    from lispd.daemon import Daemon

Request = dict[str, Any]
Command = Callable[["Daemon", Request], Any]

COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    """Register the decorated function as the control-socket command ``name``."""

    def register(func: Command) -> Command:
        COMMANDS[name] = func
        return func

    return register


def handlers(daemon: Daemon) -> dict[str, Callable[[Request], Any]]:
    """Every registered command, bound to ``daemon``."""
    return {name: _bind(func, daemon) for name, func in COMMANDS.items()}


def _bind(func: Command, daemon: Daemon) -> Callable[[Request], Any]:
    return lambda req: func(daemon, req)


@command("version")
def version(daemon: Daemon, _req: Request) -> dict[str, Any]:
    """lispd's version, the node's name and the fast path it runs."""
    engine = daemon.engine
    workers = engine.workers if engine is not None else None
    return {
        "version": __version__,
        "name": daemon.node.config.daemon.name,
        "fastpath": "compiled" if engine is not None else "python",
        "engines": engine.engines if engine is not None else 1,
        "worker-pids": workers.pids() if workers is not None else [],
    }


@command("stats")
def stats(daemon: Daemon, _req: Request) -> Any:
    """The counters; with workers, an awaitable of them once every worker has reported its
    current counts."""
    if daemon.engine is None or daemon.engine.workers is None:
        return daemon.stats()

    async def fresh() -> dict[str, Any]:
        await daemon.refresh_workers()
        return daemon.stats()

    return fresh()


@command("map-cache")
def map_cache(daemon: Daemon, _req: Request) -> list[dict[str, Any]]:
    """Every map-cache entry."""
    return [views.entry_json(e) for e in daemon.node.mapcache.entries()]


@command("database")
def database(daemon: Daemon, _req: Request) -> list[dict[str, Any]]:
    """The local database (our EID-prefixes)."""
    return [views.entry_json(e) for e in daemon.node.database.entries()]


@command("site")
def site(daemon: Daemon, _req: Request) -> list[dict[str, Any]]:
    """The Map-Server's site registrations."""
    return views.sites(daemon.node, daemon.clock())


@command("rlocs")
def rlocs(daemon: Daemon, _req: Request) -> Any:
    """What RLOC probing knows of every probed RLOC."""
    prober = daemon.node.control.prober
    return prober.states(daemon.clock()) if prober is not None else []


@command("nat")
def nat(daemon: Daemon, _req: Request) -> Any:
    """The NAT-traversal client's state."""
    client = daemon.node.control.nat
    return client.states() if client is not None else {}


@command("rtr")
def rtr(daemon: Daemon, _req: Request) -> Any:
    """The RTR's NAT bindings."""
    bindings = daemon.node.nat_bindings
    return bindings.states(daemon.clock()) if bindings is not None else []


@command("rtr-draft")
def rtr_draft(daemon: Daemon, _req: Request) -> Any:
    """The RTR's draft-style NAT traversal: bindings per xTR-ID, pending registrations."""
    draft = daemon.node.draft_rtr
    return draft.states(daemon.clock()) if draft is not None else {}


@command("registrations")
def registrations(daemon: Daemon, _req: Request) -> Any:
    """Our registrations with each Map-Server."""
    registrar = daemon.node.control.registrar
    return registrar.status() if registrar is not None else []


@command("clear-map-cache")
def clear_map_cache(daemon: Daemon, req: Request) -> dict[str, int]:
    """Remove learned entries (every one, or those of exactly ``prefix``, in every instance or
    in ``instance-id``); static entries come from the configuration and stay."""
    cleared = daemon.node.clear_map_cache(req.get("instance-id"), req.get("prefix"), daemon.clock())
    daemon.transmit()
    return {"cleared": cleared}


@command("reload")
def reload(daemon: Daemon, _req: Request) -> Any:
    """Read the configuration file again (see :meth:`Daemon.reload`); answered once the
    kernel has the route changes it made (made off the event loop)."""
    answer = daemon.reload()

    async def settled() -> dict[str, Any]:
        await daemon.routes_settled()
        return answer

    return settled()
