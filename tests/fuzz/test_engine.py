"""The C engine's fuzz job (:mod:`tests.fuzz.engine`) inside the test suite: a short run at
every entry point against the normal build, proof that its checks catch a wrong engine, and a
few hundred inputs per entry point against a build with AddressSanitizer and
UndefinedBehaviorSanitizer, in a child process (the long runs are in README, "Fuzzing and
soak")."""

from __future__ import annotations

import os
import subprocess
import sysconfig
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.fuzz import engine as fuzz
from tests.fuzz import sanitizer
from tests.unit.fastpath_packets import lisp_header, packed, require_accel, udp_packet

require_accel()

INPUTS = int(os.environ.get("LISPD_ENGINE_FUZZ_INPUTS", "2500"))
SANITIZED_INPUTS = 300
# What each entry point must have reached in a short run (seeds first, then mutants): the
# checks ran on real decisions, not only on inputs refused at the first byte.
REACHED = {
    "tun": {"encap", "punt", "punt-trace", "punt-elp"},
    "vnet": {
        "encap",
        "punt-super-mtu",
        "drop:tun-bad-vnet-header",
        "drop:tun-read-short",
        "drop:tso-unsupported",
    },
    "udp": {"tun", "reencap", "punt", "punt-trace"},
    "gro": {"tun", "tun-merged", "reencap", "punt"},
    "tables": {"map_set", "map_set-refused", "db_set", "lookup", "lookup-refused", "bulk"}
    | (
        set()
        if fuzz.tables_reader() is None
        else {"reader-lookup", "reader-refused", "reader-garbage"}
    ),
    "helpers": {"flow_hash", "complete_checksum", "segment", "merge"},
}


@pytest.mark.parametrize("entry", fuzz.ENTRIES)
def test_a_short_run_holds_every_check(entry: str) -> None:
    result = fuzz.run_entry(entry, 0, INPUTS)
    assert result.inputs == INPUTS
    assert not result.failures, "\n".join(f.report() for f in result.failures[:3])
    missing = REACHED[entry] - set(result.outcomes)
    assert not missing, f"{entry} never reached {missing}: {result.outcomes.most_common(12)}"


def test_inputs_replay_and_any_bytes_are_an_input() -> None:
    for entry in fuzz.ENTRIES:
        for data in (b"", b"\xff", bytes(300), fuzz.seeds(entry)[0]):
            fuzz.run_one(entry, data, Counter())
    assert fuzz.main(["--replay", "udp", fuzz.seeds("udp")[0].hex()]) == 0


class Tampered:
    """An engine whose fuzz answers ``change`` spoils; everything else is the real one's."""

    def __init__(self, real: Any, method: str, change: Any) -> None:
        self.real, self.method, self.change = real, method, change

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.real, name)
        if name != self.method:
            return attribute
        return lambda *args, **kw: self.change(attribute(*args, **kw))


def _with_engine(monkeypatch: pytest.MonkeyPatch, entry: str, change: Any) -> None:
    if entry == "tun":
        world = fuzz.itr_worlds(False)[0]
        monkeypatch.setattr(world, "engine", Tampered(world.engine, "fuzz_tun", change))
    else:
        real = fuzz.udp_engine(False)
        monkeypatch.setattr(fuzz, "udp_engine", lambda vnet: Tampered(real, "fuzz_udp", change))


def _sent_ttl_plus_one(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [(*e[:4], e[4] + 1, *e[5:]) if e[0] == "send" else e for e in events]


def _last_dropped(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return events[:-1]


def _inner_byte_flipped(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    out = []
    for e in events:
        if e[0] == "tun":
            data = bytearray(e[1])
            data[-1] ^= 1
            e = ("tun", bytes(data))
        out.append(e)
    return out


@pytest.mark.parametrize(
    ("entry", "change", "data"),
    [
        (
            "tun",
            _sent_ttl_plus_one,
            fuzz.frame(b"\0", [udp_packet(packed("198.51.100.10"), packed("203.0.113.1"))]),
        ),
        (
            "tun",
            _last_dropped,
            fuzz.frame(b"\0", [udp_packet(packed("198.51.100.10"), packed("192.0.2.77"))]),
        ),
        (
            "udp",
            _inner_byte_flipped,
            fuzz.frame(
                b"\x40\0",
                [lisp_header() + udp_packet(packed("192.0.2.99"), packed("198.51.100.20"))],
            ),
        ),
    ],
)
def test_the_checks_catch_a_wrong_engine(
    monkeypatch: pytest.MonkeyPatch, entry: str, change: Any, data: bytes
) -> None:
    fuzz.run_one(entry, data, Counter())  # the real engine passes
    _with_engine(monkeypatch, entry, change)
    with pytest.raises(fuzz.Mismatch):
        fuzz.run_one(entry, data, Counter())


def _sanitizer_skip() -> str | None:
    """Why the sanitized build cannot be made here, or None."""
    try:
        sanitizer.runtime()
    except sanitizer.SanitizerUnavailable as exc:
        return f"no sanitizer runtime: {exc}"
    if not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")):
        return "no Python headers to build the extension"
    return None


@pytest.mark.skipif(_sanitizer_skip() is not None, reason=str(_sanitizer_skip()))
def test_the_fuzz_job_runs_clean_under_asan_and_ubsan(tmp_path: Path) -> None:
    built = sanitizer.build(tmp_path)
    run = subprocess.run(
        sanitizer.command(["-m", "tests.fuzz.engine", "--inputs", str(SANITIZED_INPUTS)]),
        env=sanitizer.environment(built),
        cwd=sanitizer.ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = run.stdout[-4000:] + run.stderr[-4000:]
    assert run.returncode not in sanitizer.SANITIZER_EXIT, f"a sanitizer report:\n{output}"
    assert run.returncode == 0, output
    assert f"accel {built}" in run.stdout, "the child did not load the sanitized build"
    assert "AddressSanitizer" not in run.stderr and "runtime error" not in run.stderr
    assert run.stdout.count(f"{SANITIZED_INPUTS:,} inputs") == len(fuzz.ENTRIES)
