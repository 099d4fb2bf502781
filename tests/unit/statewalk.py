"""What the state-table tests share: a spy on a control machine's ``_step`` (the one place its
units change state, after consulting the table) and checks of what it saw against the table.

Each machine (registrar, prober, NAT client, resolver) routes every input for a unit through
``_step(unit, kind)``, which consults its :class:`~lispd.control.statetable.StateTable` and sets
``unit.phase``.  The spy records every call, so that a test can check that the kinds it fed
were the ones it meant, that each step went where the table says, and that the phases the
machine reports are the end of those steps.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from lispd.control.statetable import Go, Refuse, StateTable


@dataclass(frozen=True)
class Step:
    unit: Any
    before: Enum
    kind: Enum
    after: Enum
    allowed: bool


class Spy:
    """Records every ``_step`` of ``machine`` (wrapping the bound method on the instance)."""

    def __init__(self, machine: Any) -> None:
        self.steps: list[Step] = []
        real: Callable[[Any, Enum], bool] = machine._step

        def step(unit: Any, kind: Enum) -> bool:
            before = unit.phase
            allowed = real(unit, kind)
            self.steps.append(Step(unit, before, kind, unit.phase, allowed))
            return allowed

        machine._step = step

    def take(self) -> list[Step]:
        """The steps recorded since the last call."""
        out, self.steps = self.steps, []
        return out


def after(table: StateTable[Any, Any], state: Enum, kind: Enum) -> Enum:
    """Where the table leaves a unit in ``state`` after ``kind``."""
    entry = table.entry(state, kind)
    return entry.to if isinstance(entry, Go) else state


def check_steps(
    table: StateTable[Any, Any],
    steps: Iterable[Step],
    before: dict[int, tuple[Any, Enum]],
    units: Iterable[Any],
) -> None:
    """Every step went where ``table`` says, from a pair some input can produce; per unit the
    steps chain from its phase ``before`` the input (``id(unit) -> (unit, phase)``, for units
    that existed then) to the phase it has now; units without steps kept their phase."""
    last: dict[int, Enum] = {key: phase for key, (_, phase) in before.items()}
    for step in steps:
        entry = table.entry(step.before, step.kind)
        assert not (isinstance(entry, Refuse) and not entry.possible), (
            f"{table.name}: {step.kind.value} reached {step.before.value}, which the table "
            "says no input can produce"
        )
        assert step.after is after(table, step.before, step.kind), step
        assert step.allowed == isinstance(entry, Go), step
        key = id(step.unit)
        if key in last:
            assert step.before is last[key], f"{step} does not follow {last[key]}"
        last[key] = step.after
    for unit in units:
        if id(unit) in last:
            assert unit.phase is last[id(unit)], (unit.phase, last[id(unit)])


def phases(units: Iterable[Any]) -> dict[int, tuple[Any, Enum]]:
    """``id(unit) -> (unit, phase)`` for :func:`check_steps` (the unit is kept alive so that
    its id is not reused)."""
    return {id(u): (u, u.phase) for u in units}


def walk_pair(
    table: StateTable[Any, Any],
    machine: Any,
    spy: Spy,
    unit: Any,
    state: Enum,
    kind: Enum,
    feed: Callable[[], Any],
) -> Any:
    """Feed ``kind`` to ``unit`` (in ``state``) through the real API (``feed``) and check the
    outcome against ``table``: the first step of the unit is ``(state, kind)``, it and every
    later step go where the table says, a refusal is counted under its reason.  Returns what
    ``feed`` returned."""
    assert unit.phase is state, (unit.phase, state)
    drops = Counter(machine.drops)
    before = phases([unit])
    spy.take()
    out = feed()
    steps = spy.take()
    mine = [s for s in steps if s.unit is unit]
    assert mine, f"feeding {kind.value} made no step"
    assert (mine[0].before, mine[0].kind) == (state, kind), mine[0]
    check_steps(table, steps, before, [unit])
    entry = table.entry(state, kind)
    if isinstance(entry, Refuse):
        assert machine.drops[entry.reason] > drops[entry.reason]
        assert mine[0].after is state
    else:
        assert mine[0].after is entry.to
    return out


def refuse_directly(
    table: StateTable[Any, Any], machine: Any, unit: Any, state: Enum, kind: Enum
) -> None:
    """A pair no input produces: fed straight to ``_step``, it is refused, counted and changes
    nothing."""
    entry = table.entry(state, kind)
    assert isinstance(entry, Refuse) and not entry.possible
    drops = Counter(machine.drops)
    assert unit.phase is state
    assert machine._step(unit, kind) is False
    assert unit.phase is state
    assert machine.drops - drops == Counter({entry.reason: 1})
