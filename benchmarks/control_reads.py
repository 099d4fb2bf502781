"""Operator reads at scale: ``show map-cache EID`` and a paged map-cache listing, in process.

    .venv/bin/python -m benchmarks.control_reads [--prefixes N] [--json FILE] [--no-dump]

Loads N prefixes (default 1,000,000, as :mod:`benchmarks.mapcache_scale` makes them) into a
:class:`~lispd.mapcache.MapCache`, then times, through the control socket's command handler
plus the JSON encoding of its answer (what the event loop spends on one request):

- ``eid_*_ms``: one ``map-cache`` request with an ``eid`` (a longest-prefix match), 500 of them;
- ``prefix_*_ms``: one with an exact ``prefix``;
- ``page100_*_ms``: pages of 100 of a listing (the first page opens it);
- ``partition_copy_*_ms`` and ``whole_copy_ms``: what a page copies of the largest table (one
  partition) against what a one-snapshot listing would copy at once;
- ``dump_s``, ``dump_lines``, ``dump_worst_request_ms``: ``lispctl show map-cache`` printing the
  whole map-cache from a control server on an asyncio loop in this process (client and server
  share the machine), and the longest request it served meanwhile.

No root, no daemon: the figures of the handlers alone.  ``benchmarks.mapcache_scale`` measures
the running daemon's loop stalls.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import random
import statistics
import sys
import tempfile
import time
from types import SimpleNamespace
from typing import Any

from benchmarks.mapcache_scale import entries, random_prefixes
from lispd.api import commands
from lispd.api.server import ControlServer
from lispd.cli import lispctl
from lispd.mapcache import MapCache


class _Daemon:
    """What the read commands use of the daemon: the map-cache and the clock."""

    def __init__(self, mapcache: MapCache) -> None:
        self.node = SimpleNamespace(mapcache=mapcache)

    def clock(self) -> float:
        return 10.0


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _figures(name: str, values: list[float]) -> dict[str, float]:
    return {
        f"{name}_median_ms": statistics.median(values),
        f"{name}_p99_ms": _pct(values, 0.99),
        f"{name}_max_ms": max(values),
    }


def measure(prefixes: int = 1_000_000, dump: bool = True) -> dict[str, Any]:
    """Load the map-cache and time the reads; figures as a dict."""
    rng = random.Random(9)
    made = entries(random_prefixes(prefixes, rng), rng)
    mapcache = MapCache()
    for entry in made:
        mapcache.add(entry)
    gc.collect()
    daemon: Any = _Daemon(mapcache)
    result: dict[str, Any] = {"prefixes": prefixes}

    def timed(req: dict[str, Any]) -> tuple[float, Any]:
        started = time.perf_counter()
        answer = commands.map_cache(daemon, {"command": "map-cache", **req})
        json.dumps({"ok": True, "result": answer})
        return (time.perf_counter() - started) * 1e3, answer

    sample = [made[rng.randrange(prefixes)] for _ in range(500)]
    eid = [timed({"eid": str(e.prefix.network_address), "instance-id": e.iid}) for e in sample]
    assert all(answer for _ms, answer in eid), "an EID of the map-cache found no entry"
    result.update(_figures("eid", [ms for ms, _answer in eid]))
    exact = [timed({"prefix": str(e.prefix), "instance-id": e.iid})[0] for e in sample]
    result.update(_figures("prefix", exact))

    pages: list[float] = []
    first, page = timed({"cursor": None, "count": 100})
    while page["cursor"] is not None and len(pages) < 2000:
        ms, page = timed({"cursor": page["cursor"], "count": 100})
        pages.append(ms)
    if page["cursor"] is not None:
        commands.map_cache(daemon, {"cursor": page["cursor"], "close": True})
    result["page100_first_ms"] = first
    result.update(_figures("page100", pages))

    largest = max(mapcache.tables.counts().items(), key=lambda item: item[1])[0]
    table = mapcache.tables.table(*largest)
    assert table is not None
    copies = []
    for index in range(table.partitions):
        started = time.perf_counter()
        table.partition(index)
        copies.append((time.perf_counter() - started) * 1e3)
    result.update(_figures("partition_copy", copies))
    started = time.perf_counter()
    whole = [item for index in range(table.partitions) for item in table.partition(index)]
    result["whole_copy_ms"] = (time.perf_counter() - started) * 1e3
    result["whole_copy_references"] = len(whole)
    del whole
    if dump:
        result.update(asyncio.run(_dump(daemon)))
    return result


async def _dump(daemon: Any) -> dict[str, Any]:
    """``lispctl show map-cache`` against a control server on this loop."""
    handlers = commands.handlers(daemon)
    serve = handlers["map-cache"]
    worst = [0.0]

    def timed(req: dict[str, Any]) -> Any:
        started = time.perf_counter()
        answer = serve(req)
        worst[0] = max(worst[0], time.perf_counter() - started)
        return answer

    handlers["map-cache"] = timed
    with tempfile.TemporaryDirectory() as where:
        path = os.path.join(where, "c.sock")
        server = ControlServer(path, handlers)
        await server.start()
        try:
            args = lispctl.build_parser().parse_args(["-s", path, "show", "map-cache"])
            out = io.StringIO()
            started = time.perf_counter()
            await asyncio.to_thread(lispctl.print_table, path, "map-cache", args, out)
            seconds = time.perf_counter() - started
        finally:
            await server.close()
    return {
        "dump_s": seconds,
        "dump_lines": out.getvalue().count("\n"),
        "dump_worst_request_ms": worst[0] * 1e3,
    }


def main(argv: list[str] | None = None) -> int:
    """Run and print the figures (and write JSON when asked)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.control_reads")
    parser.add_argument("--prefixes", type=int, default=1_000_000)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--no-dump", action="store_true", help="skip the lispctl dump")
    args = parser.parse_args(argv)
    result = measure(args.prefixes, dump=not args.no_dump)
    for key, value in result.items():
        print(f"{key:>28}: {value:.3f}" if isinstance(value, float) else f"{key:>28}: {value}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
