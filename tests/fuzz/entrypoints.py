"""The dedicated fuzz job: the daemon's real packet entry points, every role, many inputs.

    python -m tests.fuzz.entrypoints --inputs 1000000 [--entry tun|data|control|trace|all]
        [--role xtr|rtr|msmr|pxtr|nat-xtr|all] [--seed N] [--jobs N] [--engine mutate|atheris]
    python -m tests.fuzz.entrypoints --entry decoders --inputs 1000000 [--engine atheris]

``--inputs`` is per entry point *and role*: with ``--entry all`` every role gets that many
inputs at each entry point it has (TUN: xtr, pxtr, nat-xtr; UDP 4341 and 2434: all but msmr;
UDP 4342: all five).  A role's run is cut into segments of ``--segment`` inputs, each a fresh
daemon with its own seed (long enough for state to build up, many enough to spread over
``--jobs`` processes).  What it prints per entry point: inputs run (per role), what the fuzz
inputs made the daemon count (top drop reasons and packet counters; the timer's and the
simulated peers' own counts left out), CPU seconds and inputs per second; then every failure
with a reproducer.  Exit status 1 when any input made an exception escape a handler, was
caught by the daemon's guard (``internal-error``), ended uncounted, or broke the timer or a
show command.  ``--entry decoders`` runs every decoder on its own instead
(:mod:`tests.fuzz.decoders`: ``--inputs`` each, outcomes per decoder, exit status 1 when a
property broke).

``--engine atheris`` (when ``pip install atheris`` works: it ships wheels for CPython 3.11 on
x86-64 Linux) hands the mutation to libFuzzer with coverage feedback from the instrumented
Python code, one role and entry point per process, starting from the same seeds; the harness
and its checks are the same.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import types
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, TextIO

import lispd
from tests.fuzz.decoders import TARGETS, check_one, run_target
from tests.fuzz.harness import ENTRY_POINTS, FuzzInput, Harness, RunStats, new_loop, run_inputs
from tests.fuzz.mutator import SPORTS, Mutator, World, entry_seeds
from tests.fuzz.roles import PEERS, ROLE_CONFIGS, ROLES, STRANGERS

SEGMENT = 250_000
DECODERS = "decoders"  # the pseudo entry point: every decoder on its own
TARGET_BY_NAME = {target.name: target for target in TARGETS}
TOP = 12  # counters shown per entry point


@dataclass(frozen=True, slots=True)
class Task:
    """One segment: a fresh daemon of ``role`` fed ``count`` inputs at ``entry``."""

    role: str
    entry: str
    seed: int
    count: int


def role_entries(role: str) -> tuple[str, ...]:
    """The entry points a role has (as the harness opens them)."""
    return Harness(role).entry_points


def plan(
    roles: Iterable[str], entries: Iterable[str], inputs: int, seed: int, segment: int
) -> list[Task]:
    """The segments of a run: ``inputs`` per role and entry point, ``segment`` at most each."""
    tasks = []
    entries = list(entries)
    pairs = [(r, e) for r in roles for e in entries if e != DECODERS and e in role_entries(r)]
    if DECODERS in entries:
        pairs += [(target.name, DECODERS) for target in TARGETS]
    for role, entry in pairs:
        left, index = inputs, 0
        while left > 0:
            count = min(segment, left)
            tasks.append(Task(role, entry, seed * 1000 + index, count))
            left -= count
            index += 1
    return tasks


def run_task(task: Task) -> tuple[Task, RunStats, float]:
    """Run one segment (in a worker process); its statistics and CPU seconds."""
    started = time.process_time()
    if task.entry == DECODERS:
        stats = RunStats()
        run_target(TARGET_BY_NAME[task.role], task.seed, task.count, stats)
        return task, stats, time.process_time() - started
    mutator = Mutator(task.role, task.entry, task.seed)
    stats = run_inputs(
        task.role,
        task.entry,
        lambda h: mutator.stream(h, task.count),
        seed=task.seed,
        world=World(task.role, task.seed),
    )
    return task, stats, time.process_time() - started


def merge(total: RunStats, part: RunStats) -> None:
    """Add ``part`` into ``total``."""
    total.inputs.update(part.inputs)
    total.failure_kinds.update(part.failure_kinds)
    total.uncounted.update(part.uncounted)
    total.failures.extend(part.failures[: max(0, 50 - len(total.failures))])
    for key, outcome in part.outcomes.items():
        total.outcomes.setdefault(key, Counter()).update(outcome)


def report(
    stats: RunStats, seconds: dict[str, float], wall: float, out: TextIO | None = None
) -> int:
    """Print the summary per entry point (to ``out``, stdout by default); the exit status."""
    out = out if out is not None else sys.stdout
    for entry in ENTRY_POINTS:
        _report_entry(stats, entry, seconds, out)
    _report_decoders(stats, seconds.get(DECODERS, 0.0), out)
    print(f"== wall time {wall:,.1f} s, {sum(stats.inputs.values()):,} inputs in all", file=out)
    if stats.uncounted:
        print("   uncounted inputs: " + str(dict(stats.uncounted.most_common(20))), file=out)
    if stats.failure_kinds:
        print(f"== FAILURES: {dict(stats.failure_kinds)}", file=out)
        for failure in stats.failures:
            print(failure.report(), file=out)
        return 1
    print("== no failures: nothing escaped, no internal-error, every input counted", file=out)
    return 0


def _report_decoders(stats: RunStats, cpu: float, out: TextIO) -> None:
    """Inputs and outcomes per decoder."""
    runs = {r: n for (r, e), n in stats.inputs.items() if e == DECODERS}
    if not runs:
        return
    total = sum(runs.values())
    rate = total / cpu if cpu else 0.0
    print(f"== decoders: {total:,} inputs, cpu time {cpu:,.1f} s, {rate:,.0f}/s", file=out)
    for name, count in runs.items():
        outcome = stats.outcomes.get((name, DECODERS), Counter())
        top = ", ".join(f"{k} {v:,}" for k, v in outcome.most_common(5))
        print(f"   {name}: {count:,} ({top})", file=out)


def _report_entry(stats: RunStats, entry: str, seconds: dict[str, float], out: TextIO) -> None:
    """Inputs, counters and rate of one entry point."""
    per_role = {r: n for (r, e), n in stats.inputs.items() if e == entry}
    if not per_role:
        return
    total = sum(per_role.values())
    cpu = seconds.get(entry, 0.0)
    drops: Counter[str] = Counter()
    packets: Counter[str] = Counter()
    machines: Counter[str] = Counter()  # the control machines' statistics
    for (_role, e), outcome in stats.outcomes.items():
        if e != entry:
            continue
        for name, value in outcome.items():
            if name.startswith("drop:"):
                drops[name.removeprefix("drop:")] += value
            elif ":" in name:
                machines[name] += value
            else:
                packets[name] += value
    rate = total / cpu if cpu else 0.0
    print(f"== entry point {entry}: {total:,} inputs", file=out)
    print(
        "   per role: " + ", ".join(f"{r} {n:,}" for r, n in sorted(per_role.items())),
        file=out,
    )
    print(f"   cpu time {cpu:,.1f} s, {rate:,.0f} inputs/s per core", file=out)
    print(
        "   packets: " + ", ".join(f"{k} {v:,}" for k, v in packets.most_common(TOP)),
        file=out,
    )
    print(
        "   top drops: " + ", ".join(f"{k} {v:,}" for k, v in drops.most_common(TOP)),
        file=out,
    )
    print(
        "   control machines: " + ", ".join(f"{k} {v:,}" for k, v in machines.most_common(TOP)),
        file=out,
    )
    errors = drops.get("internal-error", 0)
    print(f"   internal-error: {errors}", file=out)


def run_mutate(args: argparse.Namespace, roles: list[str], entries: list[str]) -> int:
    """The built-in mutator, over ``--jobs`` processes."""
    tasks = plan(roles, entries, args.inputs, args.seed, args.segment)
    total = RunStats()
    seconds: Counter[str] = Counter()
    done: Counter[tuple[str, str]] = Counter()
    started = time.perf_counter()
    print(
        f"fuzzing {len(tasks)} segments: roles {','.join(roles)}, entry points "
        f"{','.join(entries)}, {args.inputs:,} inputs each, seed {args.seed}, {args.jobs} jobs",
        flush=True,
    )
    if args.jobs == 1:
        results = (run_task(t) for t in tasks)
        for task, stats, cpu in results:
            _progress(task, stats, cpu, total, seconds, done, started)
    else:
        with ProcessPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(run_task, t) for t in tasks]
            for future in as_completed(futures):
                task, stats, cpu = future.result()
                _progress(task, stats, cpu, total, seconds, done, started)
    return report(total, dict(seconds), time.perf_counter() - started)


def _progress(
    task: Task,
    stats: RunStats,
    cpu: float,
    total: RunStats,
    seconds: Counter[str],
    done: Counter[tuple[str, str]],
    started: float,
) -> None:
    """Merge a finished segment and say so."""
    merge(total, stats)
    seconds[task.entry] += cpu
    done[(task.role, task.entry)] += task.count
    bad = sum(stats.failure_kinds.values())
    print(
        f"  {task.role}/{task.entry} seed {task.seed}: {task.count:,} inputs in {cpu:.1f} s "
        f"({task.count / cpu if cpu else 0:,.0f}/s), {bad} failures; "
        f"{done[(task.role, task.entry)]:,} done, wall {time.perf_counter() - started:,.0f} s",
        flush=True,
    )


# --- atheris ----------------------------------------------------------------------------------


def _atheris_input(data: bytes, families: tuple[int, ...], role: str) -> FuzzInput:
    """libFuzzer's bytes as an input: 4 bytes of source, port, TTL and TOS, then the datagram."""
    if len(data) < 4:
        data = data + bytes(4 - len(data))
    sources = [
        s for s in (*map(str, PEERS[role]), *STRANGERS) if (6 if ":" in s else 4) in families
    ]
    return FuzzInput(
        data[4:],
        sources[data[0] % len(sources)],
        SPORTS[data[1] % len(SPORTS)] if data[1] < 128 else data[1] << 8 | data[2],
        data[2],
        data[3],
    )


def _instrument_lispd(atheris: Any) -> int:
    """Coverage instrumentation of lispd's own functions (``atheris.instrument_all`` does the
    whole interpreter, a minute of start-up); how many were instrumented."""
    import gc

    root = os.path.dirname(lispd.__file__)
    funcs = [
        obj
        for obj in gc.get_objects()
        if isinstance(obj, types.FunctionType) and obj.__code__.co_filename.startswith(root)
    ]
    for func in funcs:
        atheris.instrument_func(func)
    return len(funcs)


def run_atheris_child(args: argparse.Namespace) -> int:
    """One role and entry point under libFuzzer (this process ends when the count is done)."""
    import logging

    import atheris

    role, entry = args.role, args.entry
    corpus = tempfile.mkdtemp(prefix=f"lispd-fuzz-{role}-{entry}-")
    if entry == DECODERS:  # one byte picks the decoder
        seeds = [bytes([i]) + s for i, t in enumerate(TARGETS) for s in t.seeds()]
    else:  # four bytes pick source, port, TTL and TOS
        seeds = [b"\x00\x00\x40\x00" + s for s in entry_seeds(entry)]
    for i, seed in enumerate(seeds):
        with open(os.path.join(corpus, f"seed-{i}"), "wb") as f:
            f.write(seed)
    _instrument_lispd(atheris)
    stats = RunStats()
    logging.getLogger("lispd").setLevel(logging.ERROR)
    options = [f"-seed={args.seed + 1}", "-max_len=4096", "-print_final_stats=0"]
    if entry == DECODERS:
        return _atheris_decoders(atheris, args, stats, [sys.argv[0], *options, corpus])

    async def main() -> None:
        harness = Harness(role, args.seed, stats, world=World(role, args.seed))
        harness.start()
        started = time.process_time()
        wall = time.perf_counter()
        count = 0

        def one(data: bytes) -> None:
            nonlocal count
            harness.feed(entry, _atheris_input(data, harness.families, role))
            count += 1
            if count >= args.inputs:
                harness.run_timer(entry)
                harness.show(entry)
                harness.record_outcome(entry)
                cpu = time.process_time() - started
                status = report(stats, {entry: cpu}, time.perf_counter() - wall)
                sys.stdout.flush()
                os._exit(status)

        atheris.Setup([sys.argv[0], *options, corpus], one)
        atheris.Fuzz()

    new_loop().run_until_complete(main())
    return 0


def _atheris_decoders(
    atheris: Any, args: argparse.Namespace, stats: RunStats, argv: list[str]
) -> int:
    """Every decoder under libFuzzer: the first byte picks it, the rest is its input."""
    started, wall = time.process_time(), time.perf_counter()
    count = 0

    def one(data: bytes) -> None:
        nonlocal count
        if data:
            target = TARGETS[data[0] % len(TARGETS)]
            outcome = stats.outcomes.setdefault((target.name, DECODERS), Counter())
            check_one(target, data[1:], stats, outcome)
            stats.inputs[(target.name, DECODERS)] += 1
            count += 1
        if count >= args.inputs:
            cpu = time.process_time() - started
            status = report(stats, {DECODERS: cpu}, time.perf_counter() - wall)
            sys.stdout.flush()
            os._exit(status)

    atheris.Setup(argv, one)
    atheris.Fuzz()
    return 0


def run_atheris(args: argparse.Namespace, roles: list[str], entries: list[str]) -> int:
    """Every (role, entry point) in its own libFuzzer process, ``--jobs`` at a time; each
    prints its own summary (libFuzzer's progress on stderr is discarded)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(role: str, entry: str) -> tuple[str, int]:
        cmd = [
            sys.executable, "-m", "tests.fuzz.entrypoints", "--engine", "atheris-child",
            "--role", role, "--entry", entry, "--inputs", str(args.inputs),
            "--seed", str(args.seed),
        ]  # fmt: skip
        done = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=False
        )
        return f"== atheris {role}/{entry}\n{done.stdout}", done.returncode

    pairs = [(r, e) for r in roles for e in entries if e != DECODERS and e in role_entries(r)]
    if DECODERS in entries:
        pairs.append(("-", DECODERS))
    print(f"atheris: {len(pairs)} runs of {args.inputs:,} inputs, {args.jobs} jobs", flush=True)
    status = 0
    with ThreadPoolExecutor(args.jobs) as pool:
        for text, code in pool.map(lambda pair: one(*pair), pairs):
            print(text, flush=True)
            status |= code != 0
    return int(status)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run."""
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.entrypoints", description=__doc__)
    parser.add_argument("--inputs", type=int, default=100_000, help="per entry point and role")
    parser.add_argument("--entry", default="all", choices=[*ENTRY_POINTS, DECODERS, "all"])
    parser.add_argument("--role", default="all", choices=[*ROLE_CONFIGS, "all", "-"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--segment", type=int, default=SEGMENT, help="inputs per fresh daemon")
    parser.add_argument(
        "--engine", default="mutate", choices=["mutate", "atheris", "atheris-child"]
    )
    args = parser.parse_args(argv)
    roles = list(ROLES) if args.role == "all" else [args.role]
    entries = list(ENTRY_POINTS) if args.entry == "all" else [args.entry]
    if args.engine == "atheris-child":
        return run_atheris_child(args)
    if args.engine == "atheris":
        try:
            import atheris  # noqa: F401
        except ImportError:
            print("atheris is not installed: pip install atheris", file=sys.stderr)
            return 2
        return run_atheris(args, roles, entries)
    return run_mutate(args, roles, entries)


if __name__ == "__main__":
    sys.exit(main())
