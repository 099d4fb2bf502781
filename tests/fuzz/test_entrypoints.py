"""The daemon's real packet entry points, every role, in CI's time budget: nothing escapes a
handler, the per-packet guard catches nothing (``internal-error`` stays 0), every input ends
counted.  The long run is ``python -m tests.fuzz.entrypoints`` (see there).

Two kinds of input per (role, entry point): the deterministic mutator of the dedicated job
(``LISPD_FUZZ_ENTRY_INPUTS`` inputs, 5,000 by default, against a daemon whose peers answer
what it sends), and hypothesis' own mutations of the same seeds (``LISPD_FUZZ_ENTRY_EXAMPLES``
examples, 1,000 by default) with the source address, port, TTL and TOS drawn too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.decoders import TARGETS, Target, run_target
from tests.fuzz.entrypoints import role_entries
from tests.fuzz.harness import FuzzInput, Harness, RunStats, new_loop, run_inputs
from tests.fuzz.mutator import SPORTS, Mutator, World, entry_seeds
from tests.fuzz.roles import PEERS, ROLES, STRANGERS
from tests.fuzz.test_decoders import mutated

INPUTS = int(os.environ.get("LISPD_FUZZ_ENTRY_INPUTS", "5000"))
EXAMPLES = int(os.environ.get("LISPD_FUZZ_ENTRY_EXAMPLES", "1000"))
CASES = [(role, entry) for role in ROLES for entry in role_entries(role)]
IDS = [f"{role}-{entry}" for role, entry in CASES]


def _explain(stats: RunStats) -> str:
    return f"{dict(stats.failure_kinds)}\n" + "\n\n".join(f.report() for f in stats.failures)


@pytest.mark.parametrize(("role", "entry"), CASES, ids=IDS)
def test_mutated_inputs(role: str, entry: str) -> None:
    """The dedicated job's mutator, a short run."""
    mutator = Mutator(role, entry, seed=1)
    stats = run_inputs(
        role, entry, lambda h: mutator.stream(h, INPUTS), seed=1, world=World(role, 1)
    )
    assert stats.inputs[(role, entry)] == INPUTS
    assert not stats.failure_kinds, _explain(stats)
    assert not stats.outcomes[(role, entry)]["drop:internal-error"]


def test_every_role_and_entry_point_is_covered() -> None:
    """TUN for the roles with one, 4341 and 2434 for the data-plane roles, 4342 for all."""
    assert {e for _r, e in CASES} == {"tun", "data", "control", "trace"}
    assert {r for r, e in CASES if e == "control"} == set(ROLES)
    assert {r for r, e in CASES if e == "tun"} == {"xtr", "pxtr", "nat-xtr"}


class _Fed:
    """A harness kept across hypothesis examples, inside its own event loop."""

    def __init__(self, role: str) -> None:
        self.loop = new_loop()
        self.stats = RunStats()
        self.harness = Harness(role, seed=3, stats=self.stats, world=World(role, 3))
        self.loop.run_until_complete(self._call(self.harness.start))

    @staticmethod
    async def _call(fn, *args) -> None:  # type: ignore[no-untyped-def]
        fn(*args)

    def feed(self, entry: str, item: FuzzInput) -> None:
        self.loop.run_until_complete(self._call(self.harness.feed, entry, item))

    def close(self) -> None:
        self.harness.close()
        self.loop.close()


@pytest.fixture
def fed(request: pytest.FixtureRequest) -> Iterator[_Fed]:
    role = request.node.callspec.params["role"]
    harness = _Fed(role)
    yield harness
    harness.close()


def _sources(role: str) -> st.SearchStrategy[str]:
    known = [str(a) for a in PEERS[role]] + list(STRANGERS)
    return st.sampled_from(known) | st.ip_addresses().map(str)


@pytest.mark.parametrize(("role", "entry"), CASES, ids=IDS)
def test_hypothesis_inputs(fed: _Fed, role: str, entry: str) -> None:
    """Hypothesis' mutations of the same seeds, with the rest of the datagram drawn too."""
    families = fed.harness.families

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(
        mutated(entry_seeds(entry)),
        _sources(role).filter(lambda s: (6 if ":" in s else 4) in families),
        st.sampled_from(SPORTS) | st.integers(0, 65535),
        st.none() | st.integers(0, 255),
        st.integers(0, 255),
    )
    def run(data: bytes, src: str, sport: int, ttl: int | None, tos: int) -> None:
        fed.feed(entry, FuzzInput(data, src, sport, ttl, tos))
        assert not fed.stats.failure_kinds, _explain(fed.stats)

    run()


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_decoder_targets(target: Target) -> None:
    """The dedicated job's decoder targets (``--entry decoders``), a short run each (the
    hypothesis tests of every decoder are in test_decoders.py and the unit tests)."""
    stats = RunStats()
    run_target(target, seed=1, count=INPUTS // 5, stats=stats)
    assert not stats.failure_kinds, _explain(stats)
    assert stats.inputs[(target.name, "decoders")] == INPUTS // 5
