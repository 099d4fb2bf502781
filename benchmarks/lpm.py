"""Micro-measurement of longest-prefix-match lookups: which radix implementation to use.

Run by hand::

    python benchmarks/lpm.py                 # 10k IPv4 + 10k IPv6 prefixes, 100k lookups
    python benchmarks/lpm.py --json out.json # also write the JSON to a file

For each family and two prefix-length distributions (``spread``: lengths uniform over
/8../32 and /16../128, the worst case for the pure-Python table; ``typical``: most IPv4
prefixes /24 and most IPv6 /48, as in routing tables), it times lookups of packed 4/16-byte keys
(what the fast path has) and of ``ipaddress`` objects through:

- ``pytricia``  the C library called directly (``PyTricia.get``),
- ``py-radix``  the C library called directly (``Radix.search_best(packed=...)``),
- ``table/<backend>``  :class:`lispd.mapcache.PrefixTable` on each backend (what lispd calls),
- ``fast/<backend>``  ``PrefixTable.lookup_packed`` (unchecked packed keys; pytricia's own
  ``get`` on that backend),
- ``scoped/<backend>``  :class:`lispd.mapcache.ScopedTables` (IID + family dispatch on top).

Half of the lookup addresses fall inside a stored prefix, half are uniformly random.  Each
figure is the best of ``--repeat`` timed passes; it includes the Python loop, whose own cost is
printed as ``loop overhead``.  The answers of all candidates are checked to agree first.
Prints a table, then the same figures as one line of JSON.

At map-cache scale, which backend a :class:`~lispd.mapcache.MapCache` should use::

    python benchmarks/lpm.py --mapcache 1000000

loads that many entries (``benchmarks.mapcache_scale``'s prefixes: IPv4 /16-/32, IPv6 /32-/128,
the worst case for the dict backend) into a map-cache per backend, and reports the memory
they added (RSS), the load's CPU time, and ``MapCache.lookup`` per family for addresses that
hit and that miss, in CPU time (the figures of a busy shared machine stay comparable).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lispd.mapcache import MapCache, PrefixTable, ScopedTables, available_backends

try:
    import pytricia
except ImportError:  # pragma: no cover - optional for this script
    pytricia = None
try:
    import radix
except ImportError:  # pragma: no cover - optional for this script
    radix = None

Network = IPv4Network | IPv6Network

# Prefix-length weights of the "typical" distribution (roughly a routing table's shape).
_TYPICAL = {
    4: {8: 1, 12: 2, 16: 6, 18: 3, 19: 4, 20: 6, 21: 6, 22: 12, 23: 10, 24: 50},
    6: {29: 2, 32: 15, 36: 3, 40: 6, 44: 8, 48: 55, 56: 4, 64: 5, 128: 2},
}


def make_prefixes(rng: random.Random, family: int, n: int, dist: str) -> list[Network]:
    """``n`` distinct random prefixes of ``family`` with the ``dist`` length distribution."""
    bits = 32 if family == 4 else 128
    net_type = IPv4Network if family == 4 else IPv6Network
    if dist == "spread":
        lengths: list[int] = list(range(8, 33)) if family == 4 else list(range(16, 129))
        weights: list[int] = [1] * len(lengths)
    else:
        lengths = list(_TYPICAL[family])
        weights = list(_TYPICAL[family].values())
    seen: set[tuple[int, int]] = set()
    out: list[Network] = []
    while len(out) < n:
        plen = rng.choices(lengths, weights)[0]
        address = rng.getrandbits(bits) >> (bits - plen) << (bits - plen)
        if (address, plen) not in seen:
            seen.add((address, plen))
            out.append(net_type((address, plen)))
    return out


def make_addresses(
    rng: random.Random, family: int, prefixes: Sequence[Network], n: int
) -> list[bytes]:
    """``n`` packed addresses: half inside a random stored prefix, half uniformly random."""
    bits = 32 if family == 4 else 128
    nbytes = bits // 8
    out = []
    for i in range(n):
        if i % 2:
            address = rng.getrandbits(bits)
        else:
            net = rng.choice(prefixes)
            host_bits = bits - net.prefixlen
            address = int(net.network_address) | (rng.getrandbits(host_bits) if host_bits else 0)
        out.append(address.to_bytes(nbytes, "big"))
    return out


def best_time(fn: Callable[[Sequence[Any]], object], keys: Sequence[Any], repeat: int) -> float:
    """Best wall time of ``repeat`` passes of ``fn(keys)``."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(keys)
        best = min(best, time.perf_counter() - t0)
    return best


def loop(lookup: Callable[[Any], object]) -> Callable[[Sequence[Any]], object]:
    """A pass calling ``lookup`` on every key (the shape of a packet loop)."""

    def run(keys: Sequence[Any]) -> object:
        result = None
        for key in keys:
            result = lookup(key)
        return result

    return run


def candidates(family: int, prefixes: Sequence[Network]) -> dict[str, dict[str, Any]]:
    """Build every candidate over ``prefixes``: name -> {lookup, lookup_obj, answer}."""
    out: dict[str, dict[str, Any]] = {}
    bits = 32 if family == 4 else 128
    if pytricia is not None:
        pyt = pytricia.PyTricia(bits)
        for i, net in enumerate(prefixes):
            pyt.insert(net.network_address.packed, net.prefixlen, i)
        out["pytricia"] = {
            "lookup": pyt.get,
            "lookup_obj": pyt.get,  # pytricia reads .packed of ipaddress objects itself
            "answer": lambda k, pyt=pyt: pyt.get_key(k),
        }
    if radix is not None:
        rad = radix.Radix()
        for i, net in enumerate(prefixes):
            rad.add(str(net)).data["v"] = i

        def rad_lookup(key: bytes, rad: Any = rad) -> object:
            return rad.search_best(packed=key)

        def rad_lookup_obj(key: IPv4Address | IPv6Address, rad: Any = rad) -> object:
            return rad.search_best(packed=key.packed)

        def rad_answer(key: bytes, rad: Any = rad) -> str | None:
            node = rad.search_best(packed=key)
            return None if node is None else node.prefix

        out["py-radix"] = {"lookup": rad_lookup, "lookup_obj": rad_lookup_obj, "answer": rad_answer}
    for backend in available_backends():
        table: PrefixTable[int] = PrefixTable(family, backend=backend)
        scoped: ScopedTables[int] = ScopedTables(backend=backend)
        for i, net in enumerate(prefixes):
            table.insert(net, i)
            scoped.insert(7, net, i)

        def answer(k: bytes, table: PrefixTable[int] = table) -> str | None:
            hit = table.lookup(k)
            return None if hit is None else str(hit[0])

        out[f"table/{backend}"] = {
            "lookup": table.lookup,
            "lookup_obj": table.lookup,
            "answer": answer,
        }
        out[f"fast/{backend}"] = {"lookup": table.lookup_packed}

        def scoped_lookup(key: Any, scoped: ScopedTables[int] = scoped) -> object:
            return scoped.lookup(7, key)

        out[f"scoped/{backend}"] = {"lookup": scoped_lookup, "lookup_obj": scoped_lookup}
    return out


def rss_bytes() -> int:
    """Resident set size of this process now."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def cpu_per_lookup(mapcache: MapCache, keys: Sequence[bytes], repeat: int) -> float:
    """Best CPU time of ``repeat`` passes of ``mapcache.lookup(0, key)``, per key."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        for key in keys:
            mapcache.lookup(0, key)
        best = min(best, time.process_time() - t0)
    return best / max(len(keys), 1)


def mapcache_scale(n: int, repeat: int, seed: int, backend: str) -> dict[str, Any]:
    """Bytes per prefix, load CPU seconds and lookup ns of a map-cache of ``n`` entries on
    ``backend`` (see the module docstring; one backend per process: memory another freed
    would be reused and hide what this one takes)."""
    from benchmarks.mapcache_scale import entries, random_prefixes

    rng = random.Random(seed)
    made = entries(random_prefixes(n, rng), rng)
    hits: dict[int, list[bytes]] = {4: [], 6: []}
    for entry in rng.sample(made, min(n, 50_000)):
        if entry.iid == 0:
            hits[entry.prefix.version].append(entry.prefix.network_address.packed)
    misses = {  # outside every stored prefix: 10.0.0.0/8-style space is full, so v6 only
        6: [((0x20010DB9 << 96) | rng.getrandbits(96)).to_bytes(16, "big") for _ in range(10_000)]
    }
    randoms = [rng.getrandbits(32).to_bytes(4, "big") for _ in range(10_000)]
    out: dict[str, Any] = {}
    gc.collect()
    rss0 = rss_bytes()
    mapcache = MapCache(backend=backend)
    t0 = time.process_time()
    for entry in made:
        mapcache.add(entry)
    out[f"{backend}/load_cpu_s"] = round(time.process_time() - t0, 2)
    out[f"{backend}/bytes_per_prefix"] = round((rss_bytes() - rss0) / n)
    for name, keys in (
        ("v4_hit", hits[4][:10_000]),
        ("v6_hit", hits[6][:10_000]),
        ("v4_random", randoms),
        ("v6_miss", misses[6]),
    ):
        out[f"{backend}/lookup_{name}_ns"] = round(cpu_per_lookup(mapcache, keys, repeat) * 1e9)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the table and the JSON; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--mapcache", type=int, metavar="N", help="map-cache scale instead: N entries"
    )
    parser.add_argument("--backend", help="with --mapcache: this backend only, in-process")
    parser.add_argument("--prefixes", type=int, default=10_000, help="prefixes per family")
    parser.add_argument("--lookups", type=int, default=100_000, help="lookups per pass")
    parser.add_argument("--repeat", type=int, default=5, help="timed passes (best is kept)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the JSON result here")
    args = parser.parse_args(argv)
    if args.mapcache and args.backend:
        figures = mapcache_scale(args.mapcache, min(args.repeat, 3), args.seed, args.backend)
        print(json.dumps(figures))
        return 0
    if args.mapcache:
        figures = {"prefixes": args.mapcache}
        for backend in available_backends():
            command = [sys.executable, __file__, "--mapcache", str(args.mapcache)]
            command += ["--backend", backend, "--repeat", str(args.repeat)]
            command += ["--seed", str(args.seed)]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            figures.update(json.loads(done.stdout.splitlines()[-1]))
        for key, value in figures.items():
            print(f"{key:>32}: {value}")
        text = json.dumps({"benchmark": "lpm-mapcache", **figures})
        print(text)
        if args.json:
            args.json.write_text(text + "\n")
        return 0

    rng = random.Random(args.seed)
    results: list[dict[str, Any]] = []
    overhead = best_time(loop(id), list(range(args.lookups)), args.repeat) / args.lookups
    for dist in ("spread", "typical"):
        for family in (4, 6):
            prefixes = make_prefixes(rng, family, args.prefixes, dist)
            packed = make_addresses(rng, family, prefixes, args.lookups)
            addr_type = IPv4Address if family == 4 else IPv6Address
            objects = [addr_type(k) for k in packed]
            cands = candidates(family, prefixes)
            # Every candidate must give the same answers before any figure is believed.
            check = packed[:2000]
            answers = {
                name: [None if (a := c["answer"](k)) is None else ip_network(a) for k in check]
                for name, c in cands.items()
                if "answer" in c
            }
            reference = next(iter(answers.values()))
            for name, got in answers.items():
                if got != reference:
                    print(f"MISMATCH: {name} disagrees with the others", file=sys.stderr)
                    return 1
            for name, c in cands.items():
                for key_kind, keys, fn in (
                    ("packed", packed, c["lookup"]),
                    ("ipaddress", objects, c.get("lookup_obj")),
                ):
                    if fn is None:
                        continue
                    seconds = best_time(loop(fn), keys, args.repeat) / len(keys)
                    results.append(
                        {
                            "dist": dist,
                            "family": family,
                            "impl": name,
                            "key": key_kind,
                            "ns_per_lookup": round(seconds * 1e9, 1),
                            "lookups_per_s": round(1 / seconds),
                        }
                    )

    print(
        f"LPM lookups, {args.prefixes} prefixes per family, {args.lookups} lookups per pass, "
        f"best of {args.repeat}; Python {platform.python_version()}, "
        f"pytricia {'yes' if pytricia else 'no'}, py-radix {'yes' if radix else 'no'}"
    )
    print(f"loop overhead (a builtin call per key): {overhead * 1e9:.0f} ns")
    header = (
        f"{'dist':8} {'fam':>3} {'implementation':18} {'key':10} "
        f"{'ns/lookup':>10} {'Mlookups/s':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['dist']:8} {'v' + str(r['family']):>3} {r['impl']:18} {r['key']:10} "
            f"{r['ns_per_lookup']:>10.0f} {r['lookups_per_s'] / 1e6:>11.2f}"
        )
    doc = {
        "benchmark": "lpm",
        "python": platform.python_version(),
        "prefixes": args.prefixes,
        "lookups": args.lookups,
        "repeat": args.repeat,
        "loop_overhead_ns": round(overhead * 1e9, 1),
        "results": results,
    }
    text = json.dumps(doc)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
