"""Map-cache scale: a million EID-prefixes in the map-cache and the compiled fast path's table.

    sudo .venv/bin/python -m benchmarks.mapcache_scale [--prefixes N] [--quick] [--json FILE]
        [--phase-seconds S] [--no-unit] [--no-churn]

Loads N prefixes (default 1,000,000; IPv4 /16-/32 and IPv6 /32-/128 mixed, two instance-IDs,
one or two RLOCs each) the way the daemon installs Map-Reply answers: into the
:class:`~lispd.mapcache.MapCache`, whose listener builds each forwarding record and installs it in
the compiled engine.  Reports the load time, the resident memory it took (process RSS before and
after), the engine's table memory, and the longest-prefix match time per lookup of the compiled
table (C loop over random addresses that hit) and of the Python map-cache, and how long a new
fast-path worker process takes to load the whole table (and the event loop's longest turn
meanwhile, and the worker's memory then).  No root needed for these ("unit" figures).

As root it goes on with the churn phase (:mod:`benchmarks.churn`): the same number of prefixes
(``--quick``: 5,000) in a running lispd (xTR with two engines) in network namespaces, and the
event loop's stalls, a 10 ms ping's losses and ``lispctl show map-cache EID``'s latency while
its map-cache churns (expiries, an RLOC flapping, NAT rebindings, metrics scrapes, a full dump,
a worker killed).
The JSON's top-level ``load_s``, ``rss_total_mb``, ``bytes_per_prefix``, ``loop_stall_max_ms``,
``loop_stall_p99_ms``, ``show_map_cache_eid_ms`` and ``ping_loss`` are the churn run's (the unit
figures' ``load_s`` and ``bytes_per_prefix`` without root), printed beside issue 22's targets.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import sys
import time
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any

from lispd.engine import compiled
from lispd.engine.workers import WorkerSet, WorkerSlot
from lispd.mapcache import MapCache, MapCacheEntry, RlocEntry

RLOCS = (ip_address("192.0.2.1"), ip_address("192.0.2.5"), ip_address("2001:db8::1"))


def rss_bytes() -> int:
    """Resident set size of this process now."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def random_prefixes(n: int, rng: random.Random) -> list[tuple[int, IPv4Network | IPv6Network]]:
    """``n`` distinct (iid, prefix): two thirds IPv4 /16-/32 inside 10.0.0.0/8-style space,
    one third IPv6 /32-/128 inside 2001:db8::/32 (addresses are never sent anywhere)."""
    seen: set[tuple[int, int, int, int]] = set()
    out: list[tuple[int, IPv4Network | IPv6Network]] = []
    while len(out) < n:
        iid = rng.choice((0, 0, 0, 7))
        if rng.random() < 2 / 3:
            plen = rng.randint(16, 32)
            value = rng.getrandbits(32) >> (32 - plen) << (32 - plen)
            key = (iid, 4, plen, value)
            prefix: IPv4Network | IPv6Network = IPv4Network((value, plen))
        else:
            plen = rng.randint(32, 128)
            value = (0x20010DB8 << 96) | rng.getrandbits(96)
            value = value >> (128 - plen) << (128 - plen)
            key = (iid, 6, plen, value)
            prefix = IPv6Network((value, plen))
        if key not in seen:
            seen.add(key)
            out.append((iid, prefix))
    return out


def entries(
    prefixes: list[tuple[int, IPv4Network | IPv6Network]], rng: random.Random
) -> list[MapCacheEntry]:
    """One map-cache entry per prefix, one or two RLOCs, a 24-hour TTL."""
    out = []
    for iid, prefix in prefixes:
        rlocs: tuple[RlocEntry, ...] = (RlocEntry(rng.choice(RLOCS), 1, 50),)
        if rng.random() < 0.3:
            rlocs += (RlocEntry(RLOCS[1], 1, 50),)
        out.append(MapCacheEntry(iid=iid, prefix=prefix, rlocs=rlocs, ttl=86400.0, created=0.0))
    return out


def table_only_path() -> compiled.CompiledPath | None:
    """A compiled ITR path with no TUN and no sockets (its tables only), or None when the
    compiled fast path is not built."""
    if not compiled.available():
        return None
    return compiled.CompiledPath(
        roles=("itr",), mtu=1500, tun_fd=-1, offloads=False, families=(4, 6),
        own_rlocs=(), nat_port=None,
    )  # fmt: skip


def measure(quick: bool = False, prefixes: int | None = None) -> dict[str, Any]:
    """Load the map-cache and the compiled table, and time lookups; figures as a dict."""
    n = prefixes or (20_000 if quick else 1_000_000)
    rng = random.Random(9)
    generated = random_prefixes(n, rng)
    made = entries(generated, rng)
    del generated
    gc.collect()
    result: dict[str, Any] = {"prefixes": n, "compiled": compiled.available()}
    rss0 = rss_bytes()
    mapcache = MapCache()
    fast = table_only_path()
    if fast is not None:
        mapcache.listener = fast.on_map_cache
    started = time.perf_counter()
    for entry in made:
        mapcache.add(entry)
    result["load_s"] = time.perf_counter() - started
    result["rss_added_mb"] = (rss_bytes() - rss0) / 1e6
    result["bytes_per_prefix"] = (rss_bytes() - rss0) / n
    sample = [made[rng.randrange(n)] for _ in range(min(n, 50_000))]
    addresses = {4: [], 6: []}  # type: dict[int, list[bytes]]
    for entry in sample:
        if entry.iid == 0:
            addresses[entry.prefix.version].append(entry.prefix.network_address.packed)
    if fast is not None:
        result["engine_table_mb"] = fast.engine.memory() / 1e6
        for version, width in ((4, 4), (6, 16)):
            blob = b"".join(addresses[version])
            if blob:
                ns, hits = fast.engine.bench_lookup(0, blob, width, 20)
                result[f"compiled_lookup_v{version}_ns"] = ns
                result[f"compiled_lookup_v{version}_hits"] = hits / 20 / (len(blob) // width)
    probes = addresses[4][:20_000]
    started = time.perf_counter()
    for packed in probes:
        mapcache.lookup(0, packed)
    result["python_lookup_v4_ns"] = (time.perf_counter() - started) / max(len(probes), 1) * 1e9
    # Load the compiled table alone (no Python map-cache): what a full resync costs.
    if fast is not None:
        started = time.perf_counter()
        fast.load_map_cache(mapcache)
        result["resync_s"] = time.perf_counter() - started
        result.update(asyncio.run(worker_seed(fast)))
    return result


async def worker_seed(fast: compiled.CompiledPath) -> dict[str, float]:
    """Start one fast-path worker process (no TUN, no sockets: tables only) and load it with
    ``fast``'s tables, as the daemon does for a new or restarted worker (in chunks, over many
    loop turns): seconds until it is ready, the longest the event loop went without running
    a 1 ms ticker meanwhile (its longest turn, roughly: wall time, and the main thread's CPU
    time in it), and the worker's resident memory."""
    workers = WorkerSet(
        [WorkerSlot(index=1, tun_fd=-1, receive={})],
        engine=fast.engine_options,
        pools={},
        seed=fast.seed_operations,
        on_tun=lambda _packet: None,
        on_udp=lambda *_datagram: None,
    )
    longest = longest_cpu = 0.0
    seeded = False

    async def ticker() -> None:
        # Wall time between two ticks (what a packet waiting for the loop sees, inflated when
        # the machine is busy with other processes) and this thread's CPU time between them
        # (the work the loop did: independent of the machine's load).
        nonlocal longest, longest_cpu
        last, last_cpu = time.perf_counter(), time.thread_time()
        while not seeded:
            await asyncio.sleep(0.001)
            now, cpu = time.perf_counter(), time.thread_time()
            longest = max(longest, now - last - 0.001)
            longest_cpu = max(longest_cpu, cpu - last_cpu)
            last, last_cpu = now, cpu

    started = time.perf_counter()
    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # the ticker runs before the worker starts
    workers.start()
    try:
        if not await workers.ready(timeout=300):
            raise RuntimeError("the worker did not load its tables")
        seconds = time.perf_counter() - started
        seeded = True
        await ticking
        (pid,) = workers.pids()
        with open(f"/proc/{pid}/statm") as fh:
            rss = int(fh.read().split()[1]) * resource.getpagesize()
    finally:
        seeded = True
        await workers.close()
    return {
        "worker_seed_s": seconds,
        "worker_seed_longest_turn_ms": longest * 1e3,
        "worker_seed_longest_turn_cpu_ms": longest_cpu * 1e3,
        "worker_rss_mb": rss / 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    """Run and print the figures (and write JSON when asked)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mapcache_scale")
    parser.add_argument("--prefixes", type=int)
    parser.add_argument(
        "--quick", action="store_true",
        help="20,000 prefixes (the churn: 5,000, phases of 1.5 s)",
    )  # fmt: skip
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--phase-seconds", type=float, help="each churn phase (default 8)")
    parser.add_argument("--no-unit", action="store_true", help="the churn phase only")
    parser.add_argument("--no-churn", action="store_true", help="the unit figures only")
    parser.add_argument(
        "--before", metavar="FILE",
        help="a --json file of an earlier run (e.g. the previous code, same machine): "
        "its figures are printed beside this run's",
    )  # fmt: skip
    args = parser.parse_args(argv)
    before: dict[str, Any] | None = None
    if args.before:
        with open(args.before) as fh:
            before = json.load(fh)
    n = args.prefixes or (20_000 if args.quick else 1_000_000)
    result: dict[str, Any] = {"prefixes": n}
    if not args.no_unit:
        unit = measure(args.quick, n)
        result["unit"] = unit
        for key, value in unit.items():
            print(f"{key:>28}: {value:.3f}" if isinstance(value, float) else f"{key:>28}: {value}")
        result.update(load_s=unit["load_s"], bytes_per_prefix=unit["bytes_per_prefix"])
    if args.no_churn:
        pass  # the unit figures only
    elif os.geteuid() != 0:
        result["churn"] = {"skipped": "the churn phase needs root (network namespaces)"}
        print("churn: skipped (needs root: network namespaces)")
    else:
        from benchmarks import churn

        phase_s = args.phase_seconds or (1.5 if args.quick else 8.0)
        churn_n = args.prefixes or (5_000 if args.quick else 1_000_000)
        section = churn.run_churn(churn_n, phase_s)
        result["churn"] = section
        for key in ("load_s", "rss_total_mb", "bytes_per_prefix", "loop_stall_max_ms",
                    "loop_stall_p99_ms", "show_map_cache_eid_ms", "ping_loss"):  # fmt: skip
            result[key] = section[key]
        result["targets"] = section["targets"]
        churn.print_report(section)
    if before is not None:
        print_comparison(before, result)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


COMPARED = (
    "load_s", "rss_total_mb", "bytes_per_prefix", "loop_stall_max_ms", "loop_stall_p99_ms",
    "show_map_cache_eid_ms", "ping_loss",
)  # fmt: skip
"""The top-level figures :func:`print_comparison` shows (issue 22's), then every unit one."""


def comparison_rows(before: dict[str, Any], now: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(figure, before, now) for the top-level figures and the unit figures either run has;
    a figure a run lacks is None."""
    rows = [(key, before.get(key), now.get(key)) for key in COMPARED]
    unit_before, unit_now = before.get("unit", {}), now.get("unit", {})
    for key in [*unit_before, *(k for k in unit_now if k not in unit_before)]:
        rows.append((f"unit.{key}", unit_before.get(key), unit_now.get(key)))
    return rows


def print_comparison(before: dict[str, Any], now: dict[str, Any]) -> None:
    """An earlier run's figures beside this run's."""

    def text(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)

    print(f"{'figure':<38} {'before':>12} {'now':>12}")
    for key, old, new in comparison_rows(before, now):
        print(f"{key:<38} {text(old):>12} {text(new):>12}")


if __name__ == "__main__":
    sys.exit(main())
