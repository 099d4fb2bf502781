"""What one timer turn of the node costs with a big map-cache: the figures behind the node's
per-turn budgets (``EXPIRE_BATCH`` in :mod:`lispd.node.node`, ``MARK_SLICE`` in
:mod:`lispd.node.rlocmark`).

    .venv/bin/python -m benchmarks.turn_costs [--prefixes N] [--quick] [--json FILE]

Loads N learned entries (default 1,000,000, as :mod:`benchmarks.mapcache_scale` makes them) into
a :class:`~lispd.node.Node`'s map-cache with the compiled fast path as its listener (when the C
extension is built), 10% of them using one RLOC and 10% expiring at the same instant.  Then:

- expiry: the node's timer turns at that instant until none is due (removal lines logged to a
  file at INFO, as the daemon would); the time per removal and the longest turn;
- RLOC marking: that RLOC declared down and up again, the turns until every entry shows it;
  time per entry replaced and the longest turn;
- the cost of :meth:`~lispd.node.Node.get_timer` (asked after every input).

``--gc-freeze`` calls :func:`gc.freeze` after the load: the longest turns without it are the
cyclic collector's full passes over every object of the map-cache, which a turn's allocations
happen to trigger, not the turn's own work.

Times are wall-clock on whatever else the machine does: take the medians, not the maxima, as
the cost, and the maxima as what a turn may stall the loop.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import random
import statistics
import sys
import tempfile
import time
from ipaddress import ip_address
from typing import Any

from benchmarks.mapcache_scale import random_prefixes, table_only_path
from lispd.config import parse_config
from lispd.mapcache import MapCacheEntry, RlocEntry
from lispd.node import Node

FLAPPING = ip_address("192.0.2.7")
OTHERS = (ip_address("192.0.2.5"), ip_address("2001:db8::1"))
CONFIG = """
[daemon]
name = "bench"
roles = ["itr"]
control-socket = ""

[underlay]
rlocs = ["192.0.2.1", "2001:db8::100"]

[[database-mapping]]
eid-prefix = "198.51.100.0/28"
rlocs = [{ address = "192.0.2.1" }]

[limits]
map-cache-entries = 2000000
"""


Turns = list[tuple[float, float]]  # (wall-clock seconds, this thread's CPU seconds)


def turns(node: Node, now: float, until: Any) -> Turns:
    """Run the node's timer at ``now`` while ``until()`` is false; each turn's seconds."""
    took: Turns = []
    while not until():
        started, cpu = time.perf_counter(), time.thread_time()
        node.handle_timer(now)
        took.append((time.perf_counter() - started, time.thread_time() - cpu))
        node.take_actions()
        if len(took) > 10_000_000:
            raise RuntimeError("the node never finished")
    return took


def summary(took: Turns, units: int) -> dict[str, float]:
    """Per-unit and per-turn figures (microseconds, milliseconds): wall-clock, and CPU time
    (what the work costs, less what other processes on the machine took meanwhile)."""
    wall = [t[0] for t in took]
    cpu = [t[1] for t in took]
    return {
        "turns": len(took),
        "cpu_us_per_unit": sum(cpu) / max(units, 1) * 1e6,
        "wall_us_per_unit": sum(wall) / max(units, 1) * 1e6,
        "cpu_turn_ms_median": statistics.median(cpu) * 1e3 if cpu else 0.0,
        "cpu_turn_ms_max": max(cpu, default=0.0) * 1e3,
        "wall_turn_ms_median": statistics.median(wall) * 1e3 if wall else 0.0,
        "wall_turn_ms_max": max(wall, default=0.0) * 1e3,
    }


def measure(prefixes: int, gc_freeze: bool = False) -> dict[str, Any]:
    """Load the node, time expiry and marking turns; figures as a dict.  ``gc_freeze``: move
    what the load made out of the cyclic collector's reach (:func:`gc.freeze`) first, to tell
    the collector's full passes over a million entries from the turns' own work."""
    rng = random.Random(22)
    node = Node(parse_config(CONFIG), 0.0)
    fast = table_only_path()
    if fast is not None:
        node.mapcache.listener = fast.on_map_cache
    expiring = flapping = 0
    for k, (iid, prefix) in enumerate(random_prefixes(prefixes, rng)):
        first = FLAPPING if k % 10 == 0 else OTHERS[k % 2 if prefix.version == 4 else 1]
        rlocs = (RlocEntry(first, 1, 50), RlocEntry(OTHERS[0], 2, 50))
        ttl = 600.0 if k % 10 == 3 else 86400.0
        expiring += ttl == 600.0
        flapping += first == FLAPPING
        node.mapcache.add(
            MapCacheEntry(iid, prefix, rlocs, ttl=ttl, created=0.0, source="map-reply")
        )
    gc.collect()
    if gc_freeze:
        gc.freeze()
    result: dict[str, Any] = {
        "prefixes": prefixes,
        "gc_freeze": gc_freeze,
        "compiled": fast is not None,
        "expiring": expiring,
        "flapping_rloc_entries": flapping,
    }
    started = time.perf_counter()
    for _ in range(1000):
        node.get_timer()
    result["get_timer_us"] = (time.perf_counter() - started) / 1000 * 1e6
    with tempfile.NamedTemporaryFile("w", suffix=".log") as logfile:
        handler = logging.FileHandler(logfile.name)
        root = logging.getLogger("lispd")
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            size = len(node.mapcache)
            result["expiry"] = summary(
                turns(node, 600.0, lambda: node.get_timer() > 600.0), size - len(node.mapcache)
            )
            result["expiry"]["removed"] = size - len(node.mapcache)
            for up in (False, True):
                before = node.rloc_marking.replaced
                node.rloc_marking.mark(FLAPPING, up)
                took = turns(node, 601.0, lambda: not node.rloc_marking)
                replaced = node.rloc_marking.replaced - before
                result["mark_down" if not up else "mark_up"] = {
                    **summary(took, replaced),
                    "replaced": replaced,
                }
        finally:
            root.removeHandler(handler)
            handler.close()
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line: print the figures (and write them as JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefixes", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="20,000 prefixes")
    parser.add_argument("--json", default=None)
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after the load")
    args = parser.parse_args(argv)
    prefixes = args.prefixes or (20_000 if args.quick else 1_000_000)
    result = measure(prefixes, args.gc_freeze)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
