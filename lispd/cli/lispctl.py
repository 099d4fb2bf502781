"""``lispctl``: ask a running lispd what it knows, like ``birdc``, ``vtysh`` or ``show lisp``.

    lispctl [-s SOCKET | -c CONFIG] [--json] [--timeout SECONDS] [--limit N] COMMAND...

Commands (every word may be shortened to a unique prefix: ``lispctl sh map`` is
``lispctl show map-cache``)::

    show map-cache [EID]      the map-cache; with EID (address or [iid]address), only the entry
                              of the longest prefix holding it (instance-id 0 when not given);
                              with an EID-prefix ([iid]prefix/len), only that exact prefix
    show database             the local EID-prefixes (database-mappings)
    show rlocs                RLOC probing: state, round-trip times, hop counts
    show stats                packet/byte counters, then every drop reason
    show site                 Map-Server: the registered EID-prefixes
    show nat                  NAT traversal (xTR behind a NAT)
    show rtr                  RTR: the NAT bindings of the xTRs behind NATs
    show registrations        ETR: the Map-Servers registered with
    show referral-cache [EID] DDT Map-Resolver: the referrals learned from the DDT tree; with
                              EID, only the one of the longest prefix holding it
    clear map-cache [PREFIX]  remove learned entries (all, or exactly [iid]PREFIX); static
                              entries of the configuration stay
    clear referral-cache      DDT Map-Resolver: forget every referral (resolutions start
                              from the roots again)
    reload                    read the configuration again (as SIGHUP does)
    version                   the daemon's version and name

It speaks the control socket's protocol (:mod:`lispd.api.server`): one JSON request line, one
JSON response line.  Tables are for people (a header line, aligned columns, modelled on Cisco's
``show lisp``); ``--json`` prints the daemon's result as is (pretty, sorted keys) for scripts,
the one exception being ``show map-cache EID``, which prints the list of the matching entry.

The tables (map-cache, database, site, rlocs, rtr) are fetched in pages (:mod:`lispd.api.paging`)
and printed as they come, so a million map-cache entries print without a timeout and without
holding the daemon up: the header line gives the size the table had when the listing began,
columns are as wide as the first page needs (widening when a later page needs more), and a last
line says so when fewer entries were printed (``--limit``, or entries removed meanwhile).
``--json`` prints the same JSON array as ever, written element by element.  ``--limit N``
prints the first N entries.  The EID look-up is answered by the daemon (one longest-prefix
match); an older daemon that answers with its whole map-cache is matched here.

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
import contextlib
import ipaddress
import json
import math
import os
import socket
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from lispd.cli.args import Parser, seconds, split_iid

DEFAULT_SOCKET = "/run/lispd/lispd.sock"
DEFAULT_TIMEOUT = 5.0
PAGE_SIZE = 100
"""Entries asked for per page (the daemon caps it: see :data:`lispd.api.paging.MAX_PAGE`)."""
PAGED = frozenset(("map-cache", "database", "site", "rlocs", "rtr", "referral-cache"))
"""The daemon commands whose tables are fetched in pages."""
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
    Command(("show", "referral-cache"), "referral-cache", "EID"),
    Command(("clear", "map-cache"), "clear-map-cache", "PREFIX"),
    Command(("clear", "referral-cache"), "clear-referral-cache"),
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


def parse_map_cache_arg(text: str) -> tuple[int, IPAddress | IPNetwork]:
    """``show map-cache`` argument: an EID (``[iid]address``) or an EID-prefix
    (``[iid]prefix/len``), instance-id 0 when not given."""
    if "/" not in text:
        return parse_eid(text)
    iid, network = parse_prefix(text)
    return (0 if iid is None else iid), network


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
    if command.request == "referral-cache" and arg is not None:
        iid, address = parse_eid(arg)
        return {"eid": str(address), "instance-id": iid}
    if command.request == "map-cache" and arg is not None:
        iid, what = parse_map_cache_arg(arg)
        key = "prefix" if isinstance(what, ipaddress.IPv4Network | ipaddress.IPv6Network) else "eid"
        return {key: str(what), "instance-id": iid}
    return {}


def exact_match(entries: Iterable[dict[str, Any]], iid: int, network: IPNetwork) -> list[Any]:
    """The map-cache entry (as the daemon reports it) of exactly ``network`` in ``iid``, as a
    list of zero or one entry."""
    for entry in entries:
        if entry.get("instance-id") == iid and entry.get("eid-prefix") == str(network):
            return [entry]
    return []


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


@dataclass(frozen=True)
class TableFormat:
    """How one table command prints: the title line for a number of entries, the column
    headers, the rows of some entries, the right-aligned columns."""

    title: Callable[[int], str]
    headers: tuple[str, ...]
    rows: Callable[[Sequence[dict[str, Any]]], list[list[str]]]
    right: tuple[int, ...] = ()

    def format(self, entries: Sequence[dict[str, Any]]) -> str:
        """The whole table at once."""
        lines = [self.title(len(entries)), ""]
        return "\n".join(lines + table(self.headers, self.rows(entries), self.right)) + "\n"


def _map_cache_rows(entries: Sequence[dict[str, Any]]) -> list[list[str]]:
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
    return rows


MAP_CACHE_FORMAT = TableFormat(
    lambda n: f"LISP map-cache: {_count(n, 'entry', 'entries')}",
    ("Inst-ID", "EID-prefix", "Action", "Source", "TTL", "Locator", "Pri/Wgt", "State"),
    _map_cache_rows,
)


def _referral_rows(entries: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows: list[list[str]] = []
    for e in entries:
        first = [
            str(e.get("instance-id", "?")),
            str(e.get("eid-prefix", "?")),
            str(e.get("action", "?")),
            format_duration(e.get("expires-in")),
            str(e.get("learned-from", "?")),
        ]
        referrals = e.get("referrals") or ["-"]
        for i, address in enumerate(referrals):
            rows.append([*(first if i == 0 else [""] * len(first)), str(address)])
    return rows


REFERRAL_FORMAT = TableFormat(
    lambda n: f"LISP-DDT referral cache: {_count(n, 'referral')}",
    ("Inst-ID", "EID-prefix", "Referral", "Expires", "Learned from", "Referral set"),
    _referral_rows,
)


def format_referral_cache(entries: Sequence[dict[str, Any]]) -> str:
    """``show referral-cache``: one line per member of the referral set."""
    return REFERRAL_FORMAT.format(entries)


def format_map_cache(entries: Sequence[dict[str, Any]]) -> str:
    """``show map-cache``: one line per RLOC, the prefix on the first one."""
    return MAP_CACHE_FORMAT.format(entries)


def _database_rows(entries: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows: list[list[str]] = []
    for e in entries:
        first = [str(e.get("instance-id", "?")), str(e.get("eid-prefix", "?"))]
        rlocs = e.get("rlocs") or []
        if not rlocs:
            rows.append([*first, "-", "-", "-"])
        for i, rloc in enumerate(rlocs):
            rows.append([*(first if i == 0 else ["", ""]), *_rloc_cells(rloc)])
    return rows


DATABASE_FORMAT = TableFormat(
    lambda n: f"LISP database: {_count(n, 'EID-prefix', 'EID-prefixes')}",
    ("Inst-ID", "EID-prefix", "Locator", "Pri/Wgt", "State"),
    _database_rows,
)


def format_database(entries: Sequence[dict[str, Any]]) -> str:
    """``show database``: the local EID-prefixes, one line per RLOC."""
    return DATABASE_FORMAT.format(entries)


def _site_rows(registrations: Sequence[dict[str, Any]]) -> list[list[str]]:
    return [
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


SITE_HEADERS = (
    "Site", "Last-register", "Up", "Who-last-registered", "Inst-ID", "EID-prefix",
    "Proxy-reply", "RLOCs",
)  # fmt: skip
SITE_FORMAT = TableFormat(
    lambda n: f"LISP site registrations: {_count(n, 'EID-prefix', 'EID-prefixes')}",
    SITE_HEADERS,
    _site_rows,
)


def format_site(registrations: Sequence[dict[str, Any]]) -> str:
    """``show site``: what the Map-Server holds (expired registrations are gone, so Up is yes
    for every line)."""
    return SITE_FORMAT.format(registrations)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


def _rloc_rows(states: Sequence[dict[str, Any]]) -> list[list[str]]:
    return [
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


RLOCS_HEADERS = (
    "RLOC", "EID-prefix", "State", "RTTs (ms)", "Hops", "Last-reply", "Probes", "Replies",
    "Lost",
)  # fmt: skip
RLOCS_FORMAT = TableFormat(
    lambda n: f"LISP RLOC probing: {_count(n, 'RLOC')}",
    RLOCS_HEADERS,
    _rloc_rows,
    right=(6, 7, 8),
)


def format_rlocs(states: Sequence[dict[str, Any]]) -> str:
    """``show rlocs``: RLOC probing, newest RTT and hop count first."""
    return RLOCS_FORMAT.format(states)


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
    lines += _ddt_lines(snapshot)
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


def _ddt_lines(snapshot: dict[str, Any]) -> list[str]:
    """LISP-DDT: the resolver's walks and the referrals this node sent and received."""
    ddt = snapshot.get("ddt")
    if not isinstance(ddt, dict) or not ddt:
        return []
    rows = [[k, str(v)] for k, v in sorted(ddt.items())]
    return ["", "LISP-DDT", "", *table(["Counter", "Count"], rows, right=(1,))]


def _gc_lines(snapshot: dict[str, Any]) -> list[str]:
    """The garbage collector: objects frozen out of its full passes (lispd.heartbeat)."""
    collector = snapshot.get("gc")
    if not isinstance(collector, dict):
        return []
    return [
        f"Garbage collector: survivors frozen {collector.get('freezes', 0)} times, "
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


def _rtr_rows(bindings: Sequence[dict[str, Any]]) -> list[list[str]]:
    return [
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


RTR_FORMAT = TableFormat(
    lambda n: f"LISP RTR NAT bindings: {_count(n, 'binding')}",
    ("xTR global RLOC", "Port", "Refreshed", "Expires-in", "Default", "EID-prefixes"),
    _rtr_rows,
    right=(1,),
)


def format_rtr(bindings: Sequence[dict[str, Any]]) -> str:
    """``show rtr``: the NAT bindings an RTR learned (most recently refreshed first), one per
    NATed xTR: the EID-prefixes its keepalives claim, and ``*`` on the binding that takes
    the address's unclaimed prefixes."""
    return RTR_FORMAT.format(bindings)


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
    "referral-cache": format_referral_cache,
    "database": format_database,
    "rlocs": format_rlocs,
    "stats": format_stats,
    "site": format_site,
    "nat": format_nat,
    "rtr": format_rtr,
    "reload": format_reload,
    "version": format_version,
}


TABLE_FORMATS: dict[str, TableFormat] = {
    "map-cache": MAP_CACHE_FORMAT,
    "referral-cache": REFERRAL_FORMAT,
    "database": DATABASE_FORMAT,
    "site": SITE_FORMAT,
    "rlocs": RLOCS_FORMAT,
    "rtr": RTR_FORMAT,
}


def format_json(result: Any) -> str:
    return json.dumps(result, indent=2, sort_keys=True) + "\n"


class TablePrinter:
    """Prints a table page by page (sans-IO: each call returns the text to write).

    The title counts the entries the table had when the listing began; the columns are as
    wide as the headers and the rows seen so far need (widening when a later page needs
    more).  When the whole table came in one page, the output is :meth:`TableFormat.format`'s.
    """

    def __init__(self, fmt: TableFormat) -> None:
        self.fmt = fmt
        self.widths = [len(h) for h in fmt.headers]
        self.shown = 0
        self.started = False

    def _lines(self, rows: Sequence[Sequence[str]]) -> list[str]:
        right = set(self.fmt.right)
        out = []
        for row in rows:
            cells = [
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, self.widths, strict=True))
            ]
            out.append("  ".join(cells).rstrip())
        return out

    def page(self, entries: Sequence[dict[str, Any]], total: int, last: bool) -> str:
        """The text of one page of ``entries`` (of a table of ``total``; ``last``: no page
        follows)."""
        rows = self.fmt.rows(entries)
        for row in rows:
            self.widths = [max(w, len(c)) for w, c in zip(self.widths, row, strict=True)]
        lines: list[str] = []
        if not self.started:
            self.started = True
            count = len(entries) if last else total  # one page: exactly what is shown
            lines += [self.fmt.title(count), "", *self._lines([self.fmt.headers])]
        self.shown += len(entries)
        lines += self._lines(rows)
        return "".join(line + "\n" for line in lines)

    def end(self, total: int, limit: int | None) -> str:
        """The closing line: how many entries were printed when that is not the title's
        count (``--limit`` reached, or entries gone while the table was listed)."""
        if not self.started or self.shown == total:
            return ""
        if limit is not None and self.shown >= limit:
            return f"(the first {self.shown} of {total} shown: --limit {limit})\n"
        return f"({self.shown} of {total} shown: the table changed while it was listed)\n"


class JsonArrayPrinter:
    """Writes a JSON array element by element, exactly as :func:`format_json` writes it whole."""

    def __init__(self) -> None:
        self.count = 0

    def page(self, entries: Sequence[Any]) -> str:
        """The text of some more elements."""
        out = []
        for entry in entries:
            text = textwrap.indent(json.dumps(entry, indent=2, sort_keys=True), "  ")
            out.append(("[\n" if self.count == 0 else ",\n") + text)
            self.count += 1
        return "".join(out)

    def end(self) -> str:
        """What closes the array."""
        return "[]\n" if self.count == 0 else "\n]\n"


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


def pages(
    path: str, command: str, timeout: float, limit: int | None = None
) -> Iterator[tuple[list[Any], int, bool]]:
    """The pages of a table command: ``(entries, total, last)`` each, up to ``limit`` entries
    in all.  The listing is closed at the daemon when it stops early (``limit`` reached, or the
    caller stops iterating).  A daemon older than paging answers with the whole table at once:
    one page then."""
    cursor: str | None = None
    taken = 0
    try:
        while True:
            size = PAGE_SIZE if limit is None else max(1, min(PAGE_SIZE, limit - taken))
            result = call(path, command, timeout, cursor=cursor, count=size)
            if isinstance(result, list):  # no paging at the daemon: the whole table
                entries = result if limit is None else result[:limit]
                yield entries, len(result), True
                return
            if not isinstance(result, dict) or not isinstance(result.get("entries"), list):
                raise ControlFailure(f"malformed {command} page from lispd at {path}")
            entries = result["entries"]
            if limit is not None:
                entries = entries[: limit - taken]
            taken += len(entries)
            cursor = result.get("cursor")
            last = cursor is None or (limit is not None and taken >= limit)
            yield entries, int(result.get("total", taken)), last
            if last:
                return
    finally:
        if cursor is not None:  # stopped early: the daemon may forget the listing now
            # (the daemon drops it after its idle timeout anyway)
            with contextlib.suppress(ControlFailure):
                call(path, command, timeout, cursor=cursor, close=True)


def print_table(path: str, command: str, args: argparse.Namespace, out: Any) -> None:
    """Fetch a table page by page and print each page as it comes."""
    limit = args.limit
    if args.json:
        array = JsonArrayPrinter()
        for entries, _total, _last in pages(path, command, args.timeout, limit):
            out.write(array.page(entries))
            out.flush()
        out.write(array.end())
        return
    printer = TablePrinter(TABLE_FORMATS[command])
    total = 0
    for entries, total, last in pages(path, command, args.timeout, limit):
        out.write(printer.page(entries, total, last))
        out.flush()
    out.write(printer.end(total, limit))


# --------------------------------------------------------------------------------------------
# The command


class _Parser(Parser):
    usage_exit = EXIT_USAGE


def _commands_help() -> str:
    lines = ["commands (keywords may be shortened to a unique prefix):"]
    for c in COMMANDS:
        lines.append("  " + " ".join(c.words) + (f" [{c.arg}]" if c.arg else ""))
    return "\n".join(lines)


def _positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lispctl",
        description="Ask a running lispd what it knows (map-cache, database, sites, RLOCs, "
        "counters, NAT) and tell it to clear its map-cache or reload its configuration.",
        epilog=_commands_help()
        + "\n\nEID: address or [instance-id]address (show map-cache also takes an EID-prefix:"
        "\n[instance-id]prefix/len, for that prefix exactly); PREFIX: prefix or"
        " [instance-id]prefix."
        "\nTables come in pages, printed as they arrive; --limit N prints the first N entries."
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
    parser.add_argument(
        "--limit",
        type=_positive,
        metavar="N",
        help="print only the first N entries of a table (map-cache, database, site, rlocs, rtr, "
        "referral-cache)",
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
    path = socket_path(args)
    if command.request in PAGED and arg is None:
        print_table(path, command.request, args, out)
        return EXIT_OK
    result = call(path, command.request, args.timeout, **request)
    status = EXIT_OK
    if command.request == "referral-cache" and not result:
        status = EXIT_ERROR
        if not args.json:
            sys.stderr.write(f"lispctl: no referral cached for {arg}\n")
            return status
    if command.request == "map-cache" and arg is not None:
        iid, what = parse_map_cache_arg(arg)
        # The daemon's answer is the match already; an older daemon's, the whole map-cache.
        if isinstance(what, ipaddress.IPv4Network | ipaddress.IPv6Network):
            result = exact_match(result or [], iid, what)
            missing = f"no map-cache entry for [{iid}]{what}"
        else:
            result = longest_match(result or [], iid, what)
            missing = f"no map-cache entry holds [{iid}]{what}"
        if not result:
            status = EXIT_ERROR
            if not args.json:
                sys.stderr.write(f"lispctl: {missing}\n")
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
    elif command.request == "clear-referral-cache":
        n = int((result or {}).get("cleared", 0))
        out.write(f"Cleared {_count(n, 'referral')}\n")
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
