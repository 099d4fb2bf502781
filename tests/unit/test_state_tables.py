"""The control machines' state tables as tables: total, well-formed, documented.

Each of the registrar, the prober, the NAT client and the resolver has a
:class:`~lispd.control.statetable.StateTable`; ``test_*_states.py`` walk them through the
machines.  Here: every (state, kind) pair has an entry (a new state or kind without decided
inputs cannot even be built), every state can be reached, refusals are counted under stable
names, and each module's documentation carries its table as rendered.
"""

from __future__ import annotations

import enum
import importlib
from collections import Counter

import pytest

from lispd.control.nat import NAT_TABLE, NatInput
from lispd.control.prober import PROBER_TABLE, ProbeInput
from lispd.control.registrar import REGISTRAR_TABLE, RegistrarInput
from lispd.control.resolver import RESOLVER_TABLE, LookupInput
from lispd.control.statetable import Go, Refuse, StateTable

TABLES = {
    "registrar": REGISTRAR_TABLE,
    "prober": PROBER_TABLE,
    "nat": NAT_TABLE,
    "resolver": RESOLVER_TABLE,
}
INITIAL = {
    "registrar": "unregistered",
    "prober": "unknown",
    "nat": "unasked",
    "resolver": "pending",
}


@pytest.mark.parametrize("name", TABLES)
def test_tables_are_total(name: str) -> None:
    table = TABLES[name]
    pairs = [(s, k) for s, k, _ in table.pairs()]
    assert len(pairs) == len(set(pairs)) == len(table.states) * len(table.kinds)
    for state in table.states:
        for kind in table.kinds:
            entry = table.entry(state, kind)
            assert isinstance(entry, Go | Refuse)
            assert table.allows(state, kind) == isinstance(entry, Go)
            if isinstance(entry, Go):
                assert isinstance(entry.to, table.states)


TIMER_KINDS: dict[str, set[enum.Enum]] = {
    "registrar": {
        RegistrarInput.REGISTER,
        RegistrarInput.REGISTER_EMPTY,
        RegistrarInput.ACK_OVERDUE,
        RegistrarInput.ACK_LAPSED,
    },
    "prober": {ProbeInput.PROBE, ProbeInput.PROBE_DEFERRED, ProbeInput.LOSS, ProbeInput.LOSS_DOWN},
    "nat": {NatInput.REQUEST},
    "resolver": {LookupInput.RETRY, LookupInput.GIVE_UP, LookupInput.HELD_EXPIRED},
}


@pytest.mark.parametrize("name", TABLES)
def test_timer_inputs_are_never_refused_where_they_can_come(name: str) -> None:
    """The timer's inputs are what moves a unit's deadline on: refused, they would leave it
    in the past and the daemon's timer firing at once, again and again."""
    for state, kind, entry in TABLES[name].pairs():
        if kind in TIMER_KINDS[name]:
            assert isinstance(entry, Go) or not entry.possible, (state, kind)


@pytest.mark.parametrize("name", TABLES)
def test_every_state_is_reachable_from_the_initial_one(name: str) -> None:
    table = TABLES[name]
    seen = {table.states(INITIAL[name])}
    frontier = list(seen)
    while frontier:
        state = frontier.pop()
        for kind in table.kinds:
            entry = table.entry(state, kind)
            if isinstance(entry, Go) and entry.to not in seen:
                seen.add(entry.to)
                frontier.append(entry.to)
    assert seen == set(table.states)


@pytest.mark.parametrize("name", TABLES)
def test_refusals_have_stable_names(name: str) -> None:
    """Refusal reasons become ``drops`` keys (and metric labels): a few fixed lower-case
    names, and each kind refused under one name wherever it is possible."""
    reasons: dict[object, set[str]] = {}
    for _, kind, entry in TABLES[name].pairs():
        if isinstance(entry, Refuse):
            assert entry.reason == entry.reason.lower() and " " not in entry.reason
            if entry.possible:
                reasons.setdefault(kind, set()).add(entry.reason)
    assert all(len(r) == 1 for r in reasons.values()), reasons


@pytest.mark.parametrize("name", TABLES)
def test_module_documentation_carries_the_table(name: str) -> None:
    module = importlib.import_module(f"lispd.control.{name}")
    doc = " ".join((module.__doc__ or "").split())
    assert " ".join(TABLES[name].render().split()) in doc, (
        f"lispd/control/{name}.py documents another table than it enforces: paste "
        f"{TABLES[name].name}.render() into its docstring"
    )


class Light(enum.Enum):
    RED = "red"
    GREEN = "green"


class Event(enum.Enum):
    GO = "go"
    STOP = "stop"


def test_a_table_missing_a_pair_cannot_be_built() -> None:
    rows = {
        Light.RED: {Event.GO: Go(Light.GREEN), Event.STOP: Refuse("already-red")},
        Light.GREEN: {Event.STOP: Go(Light.RED)},  # GO undecided
    }
    with pytest.raises(ValueError, match=r"missing \[\('green', 'go'\)\]"):
        StateTable("light", Light, Event, rows)
    with pytest.raises(ValueError, match="stray"):
        StateTable("light", Light, Event, {**rows, "amber": {}})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="stray"):
        StateTable("light", Light, Event, {Light.RED: {Event.GO: Go("green")}})  # type: ignore[arg-type]


def test_step_counts_refusals_and_changes_nothing() -> None:
    table = StateTable(
        "light",
        Light,
        Event,
        {
            Light.RED: {Event.GO: Go(Light.GREEN), Event.STOP: Refuse("already-red")},
            Light.GREEN: {Event.GO: Go(Light.GREEN), Event.STOP: Go(Light.RED, "brakes")},
        },
    )
    drops: Counter[str] = Counter()
    assert table.step(Light.RED, Event.GO, drops) is Light.GREEN
    assert table.step(Light.RED, Event.STOP, drops) is None
    assert drops == {"already-red": 1}
    assert table.render() == (
        "- ``red``: go -> green; refuses stop.\n"
        "- ``green``: stop (brakes) -> red; stays on go.\n"
        "\n"
        "Refused inputs are counted: stop as ``already-red``."
    )
