"""``lispctl``: ask a running lispd what it knows, like ``birdc``, ``vtysh`` or ``show lisp``.

    lispctl [-s SOCKET | -c CONFIG] [--json] [--timeout SECONDS] COMMAND...

Commands (every word may be shortened to a unique prefix: ``lispctl sh map`` is
``lispctl show map-cache``)::

    show map-cache [EID]      the map-cache; with EID (address or [iid]address), only the entry
                              of the longest prefix holding it (instance-id 0 when not given)
    show database             the local EID-prefixes (database-mappings)
    show rlocs                RLOC probing: state, round-trip times, hop counts
    show stats                packet/byte counters, then every drop reason
    show site                 Map-Server: the registered EID-prefixes
    show nat                  NAT traversal (xTR behind a NAT)
    show rtr                  RTR: the NAT bindings of the xTRs behind NATs
    show registrations        ETR: the Map-Servers registered with
    clear map-cache [PREFIX]  remove learned entries (all, or exactly [iid]PREFIX); static
                              entries of the configuration stay
    reload                    read the configuration again (as SIGHUP does)
    version                   the daemon's version and name

It speaks the control socket's protocol (:mod:`lispd.api.server`): one JSON request line, one
JSON response line.  Tables are for people (a header line, aligned columns, modelled on Cisco's
``show lisp``); ``--json`` prints the daemon's result as is (pretty, sorted keys) for scripts,
the one exception being ``show map-cache EID``, which prints the list of the matching entry.

Times the daemon reports on its monotonic clock (the registrations' last-sent, last-acked and
next-send) are turned into ages with this machine's ``time.monotonic()``: the control socket is
a unix socket, so lispctl runs on the daemon's machine and shares its clock.

Exit status: 0 done, 1 the daemon cannot be reached, refused the request or reported a failure
(a reload it refused, no map-cache entry for EID), 2 usage error.

The formatting is sans-IO (functions of the JSON results, unit-tested with golden strings);
:func:`main` is the thin IO shell.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lispd.cli.args import Parser, seconds, split_iid

DEFAULT_SOCKET = "/run/lispd/lispd.sock"
DEFAULT_TIMEOUT = 5.0
MAX_IID = 0xFFFFFF
MAX_RESPONSE = 64 * 1024 * 1024

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class UsageError(Exception):
    """A bad command line: printed by argparse, exit 2."""


class ControlFailure(Exception):
    """The daemon cannot be reached, did not answer, or refused the request: exit 1."""


# --------------------------------------------------------------------------------------------
# Commands


@dataclass(frozen=True)
class Command:
    """One lispctl command: its keywords, the daemon command it sends and its argument."""

    words: tuple[str, ...]
    request: str
    arg: str | None = None
    """Metavar of the optional argument (``EID``, ``PREFIX``), None when it takes none."""


COMMANDS: tuple[Command, ...] = (
    Command(("show", "map-cache"), "map-cache", "EID"),
    Command(("show", "database"), "database"),
    Command(("show", "rlocs"), "rlocs"),
    Command(("show", "stats"), "stats"),
    Command(("show", "site"), "site"),
    Command(("show", "nat"), "nat"),
    Command(("show", "rtr"), "rtr"),
    Command(("show", "registrations"), "registrations"),
    Command(("clear", "map-cache"), "clear-map-cache", "PREFIX"),
    Command(("reload",), "reload"),
    Command(("version",), "version"),
)


def parse_command(words: Sequence[str]) -> tuple[Command, str | None]:
    """The command ``words`` name (each keyword may be a unique prefix) and its argument.

    Raises :class:`UsageError` for an unknown, ambiguous or incomplete command and for extra
    arguments.
    """
    if not words:
        raise UsageError("missing command (try --help)")
    candidates = list(COMMANDS)
    depth = 0
    resolved: list[str] = []
    while True:
        finished = [c for c in candidates if len(c.words) == depth]
        if finished:
            command = finished[0]
            break
        keywords = sorted({c.words[depth] for c in candidates})
        said = " ".join(resolved)
        if depth == len(words):
            raise UsageError(f"incomplete command {said!r}: expected {' | '.join(keywords)}")
        word = words[depth]
        matches = [k for k in keywords if k == word] or [k for k in keywords if k.startswith(word)]
        where = f" after {said!r}" if said else ""
        if not matches:
            raise UsageError(f"unknown command {word!r}{where}: expected {' | '.join(keywords)}")
        if len(matches) > 1:
            raise UsageError(f"ambiguous command {word!r}{where}: {' | '.join(matches)}")
        candidates = [c for c in candidates if c.words[depth] == matches[0]]
        resolved.append(matches[0])
        depth += 1
    args = list(words[depth:])
    if len(args) > (1 if command.arg else 0):
        usage = " ".join(command.words) + (f" [{command.arg}]" if command.arg else "")
        raise UsageError(f"too many arguments: {' '.join(args)!r} (usage: {usage})")
    return command, args[0] if args else None


def _split_iid(text: str) -> tuple[int | None, str]:
    """``"[iid]rest"`` or ``"rest"`` -> ``(iid or None, rest)``."""
    split = split_iid(text)
    if split is None:
        raise UsageError(f"{text.strip()!r}: expected [instance-id]address")
    iid, rest = split
    if iid is not None and iid > MAX_IID:
        raise UsageError(f"{text.strip()!r}: instance-id must be from 0 to {MAX_IID}")
    return iid, rest


def parse_eid(text: str) -> tuple[int, IPAddress]:
    """``show map-cache`` argument: ``"[iid]address"`` or ``"address"`` (instance-id 0)."""
    iid, rest = _split_iid(text)
    try:
        address = ipaddress.ip_address(rest)
    except ValueError:
        raise UsageError(f"{text!r} is not an EID ([instance-id]address)") from None
    return (0 if iid is None else iid), address


def parse_prefix(text: str) -> tuple[int | None, IPNetwork]:
    """``clear map-cache`` argument: ``"[iid]prefix"`` or ``"prefix"`` (every instance)."""
    iid, rest = _split_iid(text)
    try:
        network = ipaddress.ip_network(rest)
    except ValueError as exc:
        raise UsageError(f"{text!r} is not an EID-prefix ([instance-id]prefix): {exc}") from None
    return iid, network


def build_request(command: Command, arg: str | None) -> dict[str, Any]:
    """The request's arguments (besides ``command``) for ``command`` with ``arg``."""
    if command.request == "clear-map-cache" and arg is not None:
        iid, network = parse_prefix(arg)
        return {"prefix": str(network), **({"instance-id": iid} if iid is not None else {})}
    if command.request == "map-cache" and arg is not None:
        parse_eid(arg)  # a usage error before asking the daemon
    return {}


def longest_match(entries: Iterable[dict[str, Any]], iid: int, address: IPAddress) -> list[Any]:
    """The map-cache entry (as the daemon reports it) of the longest prefix of ``iid`` holding
    ``address``, as a list of zero or one entry."""
    best: tuple[int, dict[str, Any]] | None = None
    for entry in entries:
        if entry.get("instance-id") != iid:
            continue
        try:
            network = ipaddress.ip_network(entry["eid-prefix"])
        except (KeyError, ValueError):
            continue
        if network.version != address.version or address not in network:
            continue
        if best is None or network.prefixlen > best[0]:
            best = (network.prefixlen, entry)
    return [] if best is None else [best[1]]


# --------------------------------------------------------------------------------------------
# Formatting (sans-IO)


def table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], right: Iterable[int] = ()
) -> list[str]:
    """Aligned columns two spaces apart, ``right`` (column indexes) right-aligned; no trailing
    blanks."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    right = set(right)

    def line(row: Sequence[str]) -> str:
        out = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    return [line(headers)] + [line(r) for r in cells]


def format_duration(seconds: float | None) -> str:
    """Cisco's style: ``hh:mm:ss`` under a day, then ``1d02h``, then ``2w3d``; None: never."""
    if seconds is None:
        return "never"
    if not math.isfinite(seconds):
        return "never" if seconds > 0 else "-"
    total = max(0, round(seconds))
    if total < 86400:
        return f"{total // 3600:02d}:{total // 60 % 60:02d}:{total % 60:02d}"
    days, hours = total // 86400, total // 3600 % 24
    if days < 7:
        return f"{days}d{hours:02d}h"
    return f"{days // 7}w{days % 7}d"


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _yes(value: object) -> str:
    if value is None:
        return "-"
    return "yes" if value else "no"


def _locator(rloc: dict[str, Any]) -> str:
    """An RLOC for people: its explicit locator path as hops joined by "->" when it has one."""
    elp = rloc.get("elp")
    return "->".join(str(h) for h in elp) if elp else str(rloc.get("address", "?"))


def _rloc_cells(rloc: dict[str, Any]) -> list[str]:
    return [
        _locator(rloc),
        f"{rloc.get('priority', '?')}/{rloc.get('weight', '?')}",
        "up" if rloc.get("up") else "down",
    ]


def format_map_cache(entries: Sequence[dict[str, Any]]) -> str:
    """``show map-cache``: one line per RLOC, the prefix on the first one."""
    rows: list[list[str]] = []
    for e in entries:
        first = [
            str(e.get("instance-id", "?")),
            str(e.get("eid-prefix", "?")),
            str(e.get("action", "?")),
            str(e.get("source", "?")),
            format_duration(e.get("ttl")),
        ]
        rlocs = e.get("rlocs") or []
        if not rlocs:
            rows.append([*first, "-", "-", "-"])
        for i, rloc in enumerate(rlocs):
            rows.append([*(first if i == 0 else [""] * len(first)), *_rloc_cells(rloc)])
    headers = ["Inst-ID", "EID-prefix", "Action", "Source", "TTL", "Locator", "Pri/Wgt", "State"]
    lines = [f"LISP map-cache: {_count(len(entries), 'entry', 'entries')}", ""]
    return "\n".join(lines + table(headers, rows)) + "\n"


def format_database(entries: Sequence[dict[str, Any]]) -> str:
    """``show database``: the local EID-prefixes, one line per RLOC."""
    rows: list[list[str]] = []
    for e in entries:
        first = [str(e.get("instance-id", "?")), str(e.get("eid-prefix", "?"))]
        rlocs = e.get("rlocs") or []
        if not rlocs:
            rows.append([*first, "-", "-", "-"])
        for i, rloc in enumerate(rlocs):
            rows.append([*(first if i == 0 else ["", ""]), *_rloc_cells(rloc)])
    headers = ["Inst-ID", "EID-prefix", "Locator", "Pri/Wgt", "State"]
    lines = [f"LISP database: {_count(len(entries), 'EID-prefix', 'EID-prefixes')}", ""]
    return "\n".join(lines + table(headers, rows)) + "\n"


def format_site(registrations: Sequence[dict[str, Any]]) -> str:
    """``show site``: what the Map-Server holds (expired registrations are gone, so Up is yes
    for every line)."""
    rows = [
        [
            str(r.get("site", "?")),
            format_duration(r.get("last-registered-ago")),
            "yes",
            str(r.get("registered-by", "?")),
            str(r.get("instance-id", "?")),
            str(r.get("eid-prefix", "?")),
            _yes(r.get("proxy-reply")),
            ",".join(str(a) for a in r.get("rlocs") or []) or "-",
        ]
        for r in registrations
    ]
    headers = [
        "Site", "Last-register", "Up", "Who-last-registered", "Inst-ID", "EID-prefix",
        "Proxy-reply", "RLOCs",
    ]  # fmt: skip
    lines = [
        f"LISP site registrations: {_count(len(registrations), 'EID-prefix', 'EID-prefixes')}",
        "",
    ]
    return "\n".join(lines + table(headers, rows)) + "\n"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


def format_rlocs(states: Sequence[dict[str, Any]]) -> str:
    """``show rlocs``: RLOC probing, newest RTT and hop count first."""
    rows = [
        [
            str(s.get("rloc", "?")),
            str(s.get("eid-prefix") or "-"),
            str(s.get("state", "?")),
            ",".join(_ms(r) for r in s.get("rtts") or []) or "-",
            ",".join(str(h) for h in s.get("hops") or []) or "-",
            format_duration(s.get("last-reply-age")),
            str(s.get("probes-sent", "?")),
            str(s.get("replies", "?")),
            str(s.get("losses", "?")),
        ]
        for s in states
    ]
    headers = [
        "RLOC", "EID-prefix", "State", "RTTs (ms)", "Hops", "Last-reply", "Probes", "Replies",
        "Lost",
    ]  # fmt: skip
    lines = [f"LISP RLOC probing: {_count(len(states), 'RLOC')}", ""]
    return "\n".join(lines + table(headers, rows, right=(6, 7, 8))) + "\n"


def format_stats(snapshot: dict[str, Any]) -> str:
    """``show stats``: packets and bytes per counter, then every drop reason, sorted."""
    counters: dict[str, dict[str, int]] = {}
    for key, value in (snapshot.get("packets") or {}).items():
        name, _, unit = key.rpartition(".")
        if unit not in ("packets", "bytes") or not name:
            name, unit = key, "packets"
        counters.setdefault(name, {})[unit] = value
    rows = [
        [name, str(c.get("packets", "-")), str(c.get("bytes", "-"))]
        for name, c in sorted(counters.items())
    ]
    drops = snapshot.get("drops") or {}
    lines = ["LISP packet counters", ""]
    lines += table(["Counter", "Packets", "Bytes"], rows, right=(1, 2))
    lines += _fastpath_lines(snapshot)
    lines += _loop_lines(snapshot)
    if not drops:
        return "\n".join([*lines, "", "Drops: none"]) + "\n"
    lines += ["", f"Drops: {sum(drops.values())} in {_count(len(drops), 'reason')}", ""]
    lines += table(["Reason", "Packets"], sorted(drops.items()), right=(1,))
    return "\n".join(lines) + "\n"


def _fastpath_lines(snapshot: dict[str, Any]) -> list[str]:
    """The compiled fast path's engines: how many, what each forwarded, worker restarts."""
    fast = snapshot.get("fastpath")
    if not isinstance(fast, dict):
        return []
    engines = fast.get("engines", 1)
    line = f"Fast path: compiled, {_count(engines, 'engine')}"
    spread = snapshot.get("engines")
    if isinstance(spread, dict) and spread:
        line += " (forwarded: " + ", ".join(f"{k} {v}" for k, v in spread.items()) + ")"
    if fast.get("worker-restarts"):
        line += f", {_count(fast['worker-restarts'], 'worker restart')}"
    if fast.get("worker-resyncs"):
        line += f", {_count(fast['worker-resyncs'], 'worker resync')}"
    punted = fast.get("punted-tun", 0) + fast.get("punted-udp", 0)
    line += f"; {punted} packets left to the Python path"
    if fast.get("records-reissued") or fast.get("records-reissue-pending"):
        line += (
            f"; {_count(fast.get('records-reissued', 0), 'record')} re-issued after NAT "
            f"binding changes ({fast.get('records-reissue-pending', 0)} RLOCs pending)"
        )
    return ["", line]


def _loop_lines(snapshot: dict[str, Any]) -> list[str]:
    """The event loop's stalls: how late a tick due every few milliseconds ran."""
    loop = snapshot.get("loop")
    if not isinstance(loop, dict) or not loop.get("ticks"):
        return []
    return [
        "",
        f"Event loop: lag max {loop.get('lag-max-ms', 0)} ms since start, "
        f"{loop.get('lag-recent-max-ms', 0)} ms in the last 10-20 s; "
        f"{loop.get('lag-over-20ms', 0)} of {loop['ticks']} ticks "
        f"(every {loop.get('interval-ms', 0)} ms) over 20 ms late",
        *_gc_lines(snapshot),
    ]


def _gc_lines(snapshot: dict[str, Any]) -> list[str]:
    """The garbage collector: objects frozen out of its full passes (lispd.heartbeat)."""
    collector = snapshot.get("gc")
    if not isinstance(collector, dict):
        return []
    return [
        f"Garbage collector: {collector.get('frozen-objects', 0)} objects frozen "
        f"({collector.get('freezes', 0)} freezes), "
        f"{collector.get('full-collections', 0)} full collections"
    ]


def format_nat(state: dict[str, Any]) -> str:
    """``show nat``: what NAT traversal discovered, per Map-Server and per RTR."""
    if not state:
        return "NAT traversal is not enabled on this node\n"

    def addresses(key: str) -> str:
        return ", ".join(state.get(key) or []) or "-"

    lines = [
        f"NAT traversal: discovered {_yes(state.get('discovered'))}, "
        f"behind a NAT {_yes(state.get('behind-nat'))}",
        f"  Global RLOC: {state.get('global-rloc') or '-'}",
        f"  Local RLOCs: {addresses('local-rlocs')}",
        f"  RTRs: {addresses('rtrs')}",
        f"  Info-Request interval {state.get('info-interval', '?')} s, "
        f"keepalive interval {state.get('keepalive-interval', '?')} s",
    ]
    if state.get("skipped-map-servers"):
        lines.append(
            f"  Map-Servers of another family, not asked: {addresses('skipped-map-servers')}"
        )
    rows = [
        [
            str(ms.get("address", "?")),
            _yes(ms.get("answered")),
            _yes(ms.get("behind-nat")),
            str(ms.get("global-rloc") or "-"),
            str(ms.get("translated-port") or "-"),
            "-" if ms.get("last-rtt") is None else _ms(ms["last-rtt"]),
            format_duration(ms.get("last-reply-ago")),
            str(ms.get("requests-sent", "?")),
            str(ms.get("replies", "?")),
        ]
        for ms in state.get("map-servers") or []
    ]
    headers = [
        "Map-Server", "Answered", "Behind-NAT", "Global-RLOC", "Port", "RTT (ms)", "Last-reply",
        "Requests", "Replies",
    ]  # fmt: skip
    lines += ["", *table(headers, rows, right=(4, 5, 7, 8))]
    keepalives = state.get("keepalives") or []
    if keepalives:
        rows = [
            [
                str(k.get("rtr", "?")),
                str(k.get("keepalives-sent", "?")),
                format_duration(k.get("last-sent-ago")),
                format_duration(k.get("last-reply-ago")),
            ]
            for k in keepalives
        ]
        lines += ["", *table(["RTR", "Keepalives", "Last-sent", "Last-reply"], rows, right=(1,))]
    for title, key in (("Messages", "stats"), ("Refused", "drops")):
        values = state.get(key) or {}
        if values:
            lines += ["", *table([title, "Count"], sorted(values.items()), right=(1,))]
    return "\n".join(lines) + "\n"


def format_rtr(bindings: Sequence[dict[str, Any]]) -> str:
    """``show rtr``: the NAT bindings an RTR learned (most recently refreshed first), one per
    NATed xTR: the EID-prefixes its keepalives claim, and ``*`` on the binding that takes
    the address's unclaimed prefixes."""
    rows = [
        [
            str(b.get("address", "?")),
            str(b.get("port", "?")),
            format_duration(b.get("age-seconds")),
            format_duration(b.get("expires-in")),
            "*" if b.get("address-wide") else "",
            ", ".join(b.get("eid-prefixes") or ()) or "-",
        ]
        for b in bindings
    ]
    lines = [f"LISP RTR NAT bindings: {_count(len(bindings), 'binding')}", ""]
    headers = ["xTR global RLOC", "Port", "Refreshed", "Expires-in", "Default", "EID-prefixes"]
    return "\n".join(lines + table(headers, rows, right=(1,))) + "\n"


def _age(now: float, then: float | None) -> str:
    return "never" if then is None else format_duration(now - then)


def format_registrations(targets: Sequence[dict[str, Any]], now: float) -> str:
    """``show registrations``: per Map-Server; the daemon's clock times are shown as ages
    relative to ``now`` (this machine's monotonic clock, which the daemon uses)."""
    rows = [
        [
            str(t.get("address", "?")),
            str(t.get("key-id", "?")),
            _yes(t.get("proxy-reply")),
            _yes(t.get("acknowledged")),
            str(t.get("registers-sent", "?")),
            str(t.get("notifies-accepted", "?")),
            _age(now, t.get("last-sent")),
            _age(now, t.get("last-acked")),
            "-" if t.get("next-send") is None else format_duration(t["next-send"] - now),
        ]
        for t in targets
    ]
    headers = [
        "Map-Server", "Key-ID", "Proxy-reply", "Acked", "Registers", "Notifies", "Last-sent",
        "Last-acked", "Next-send",
    ]  # fmt: skip
    lines = [f"LISP registrations: {_count(len(targets), 'Map-Server')}", ""]
    return "\n".join(lines + table(headers, rows, right=(1, 4, 5))) + "\n"


def format_clear(result: dict[str, Any], prefix: str | None) -> str:
    n = int(result.get("cleared", 0))
    what = f" for {prefix}" if prefix else ""
    return f"Cleared {_count(n, 'learned map-cache entry', 'learned map-cache entries')}{what}\n"


def format_reload(result: dict[str, Any]) -> str:
    if not result.get("reloaded"):
        return f"Reload refused, configuration unchanged: {result.get('error', 'unknown error')}\n"
    applied = result.get("applied") or []
    out = f"Configuration reloaded: {', '.join(applied) if applied else 'nothing changed'}\n"
    restart = result.get("restart-needed") or []
    if restart:
        out += f"Needs a restart to take effect: {', '.join(restart)}\n"
    return out


def format_version(result: dict[str, Any]) -> str:
    return f"lispd {result.get('version', '?')}, node {result.get('name') or '-'}\n"


FORMATTERS: dict[str, Callable[[Any], str]] = {
    "map-cache": format_map_cache,
    "database": format_database,
    "rlocs": format_rlocs,
    "stats": format_stats,
    "site": format_site,
    "nat": format_nat,
    "rtr": format_rtr,
    "reload": format_reload,
    "version": format_version,
}


def format_json(result: Any) -> str:
    return json.dumps(result, indent=2, sort_keys=True) + "\n"


# --------------------------------------------------------------------------------------------
# The control socket


def call(path: str, command: str, timeout: float = DEFAULT_TIMEOUT, **args: Any) -> Any:
    """Send one request to the daemon at ``path`` and return its result.

    Raises :class:`ControlFailure` with a message for people when the socket cannot be reached,
    the daemon does not answer in ``timeout`` s or answers with an error.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
            raise ControlFailure(
                f"lispd is not running? cannot connect to {path}: {exc.strerror}"
            ) from None
        except OSError as exc:
            raise ControlFailure(f"cannot connect to {path}: {exc.strerror or exc}") from None
        data = b""
        try:
            sock.sendall(json.dumps({"command": command, **args}).encode() + b"\n")
            while not data.endswith(b"\n") and len(data) < MAX_RESPONSE:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            raise ControlFailure(f"no answer from lispd at {path} within {timeout:g} s") from None
        except OSError as exc:
            raise ControlFailure(f"{path}: {exc.strerror or exc}") from None
    try:
        response = json.loads(data)
    except ValueError:
        raise ControlFailure(f"malformed or no response from lispd at {path}") from None
    if not isinstance(response, dict):
        raise ControlFailure(f"malformed response from lispd at {path}")
    if not response.get("ok"):
        raise ControlFailure(f"lispd: {response.get('error', 'request failed')}")
    return response.get("result")


# --------------------------------------------------------------------------------------------
# The command


class _Parser(Parser):
    usage_exit = EXIT_USAGE


def _commands_help() -> str:
    lines = ["commands (keywords may be shortened to a unique prefix):"]
    for c in COMMANDS:
        lines.append("  " + " ".join(c.words) + (f" [{c.arg}]" if c.arg else ""))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lispctl",
        description="Ask a running lispd what it knows (map-cache, database, sites, RLOCs, "
        "counters, NAT) and tell it to clear its map-cache or reload its configuration.",
        epilog=_commands_help()
        + "\n\nEID: address or [instance-id]address; PREFIX: prefix or [instance-id]prefix."
        "\nExit status: 0 done, 1 lispd unreachable or the request failed, 2 usage error.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "-s", "--socket", help=f"the daemon's control socket (default {DEFAULT_SOCKET})"
    )
    where.add_argument(
        "-c",
        "--config",
        help="take the control socket from this lispd.conf (daemon.control-socket)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the daemon's JSON result (sorted keys)"
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for the daemon (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("command", nargs="+", metavar="COMMAND", help="see below")
    return parser


def socket_path(args: argparse.Namespace) -> str:
    """The control socket ``-s`` names, or that of the ``-c`` configuration, or the default."""
    if args.socket:
        return str(args.socket)
    if args.config is None:
        return DEFAULT_SOCKET
    from lispd.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise ControlFailure(str(exc)) from None
    if not config.daemon.control_socket:
        raise ControlFailure(f"{args.config}: no control socket (daemon.control-socket is empty)")
    return config.daemon.control_socket


def run(args: argparse.Namespace, command: Command, arg: str | None, out: Any) -> int:
    """Ask the daemon, print the answer; the exit status."""
    request = build_request(command, arg)
    result = call(socket_path(args), command.request, args.timeout, **request)
    status = EXIT_OK
    if command.request == "map-cache" and arg is not None:
        iid, address = parse_eid(arg)
        result = longest_match(result or [], iid, address)
        if not result:
            status = EXIT_ERROR
            if not args.json:
                sys.stderr.write(f"lispctl: no map-cache entry holds [{iid}]{address}\n")
                return status
    elif command.request == "reload" and not (result or {}).get("reloaded"):
        status = EXIT_ERROR
        if not args.json:
            sys.stderr.write("lispctl: " + format_reload(result or {}))
            return status
    if args.json:
        out.write(format_json(result))
    elif command.request == "clear-map-cache":
        out.write(format_clear(result or {}, arg))
    elif command.request == "registrations":
        out.write(format_registrations(result or [], time.monotonic()))
    else:
        out.write(FORMATTERS[command.request](result))
    return status


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lispctl`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        command, arg = parse_command(args.command)
        build_request(command, arg)
    except UsageError as exc:
        parser.error(str(exc))
    try:
        code = run(args, command, arg, sys.stdout)
        sys.stdout.flush()
        return code
    except ControlFailure as exc:
        sys.stderr.write(f"lispctl: {exc}\n")
        return EXIT_ERROR
    except BrokenPipeError:  # the reader went away (| head): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
