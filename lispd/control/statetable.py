"""Enforced state tables for the sans-IO control machines.

The registrar, the RLOC prober, the NAT-traversal client and the resolver each keep, for every
unit they track (a Map-Server registered with, a probed RLOC, a Map-Server asked about NAT, a
lookup), a state from an :class:`~enum.Enum`, and name every input they handle for that unit by
a kind from another enum.  A :class:`StateTable` maps every (state, kind) pair to one entry, and
the machine consults it before acting on the input:

- :class:`Go`: allowed.  The unit moves to ``to`` (perhaps the state it is in) and the machine
  does what the kind does; ``emits`` names what goes out or is logged, for the docs and tests.
- :class:`Refuse`: not allowed in that state.  The input is dropped, counted in the machine's
  ``drops`` under ``reason``, and the unit stays where it is.  ``possible=False`` marks a pair no
  input can produce (the kind needs something the state lacks, e.g. an answer before any
  request); it is refused the same way should a bug ever feed one.

Inputs that name no unit (a reply whose nonce is nobody's, from an address that is no unit's)
are counted by the machine before any table.

Tables are total: :class:`StateTable` refuses to be built with a pair missing, so a state or a
kind cannot be added without deciding each of its pairs.  :meth:`StateTable.render` writes a
table as text; each machine's module documentation carries that text (the tests check it).
"""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

S = TypeVar("S", bound=Enum)
K = TypeVar("K", bound=Enum)

RENDER_WIDTH = 92
"""Columns :meth:`StateTable.render` wraps at (module docstrings stay within the line length)."""


@dataclass(frozen=True, slots=True)
class Go(Generic[S]):
    """An allowed input: the unit moves to ``to``; ``emits`` says what goes out or is logged."""

    to: S
    emits: str = ""


@dataclass(frozen=True, slots=True)
class Refuse:
    """A refused input: dropped and counted in ``drops[reason]``; the state does not change.
    ``possible=False``: no input produces this pair (refused all the same if one ever did)."""

    reason: str
    possible: bool = True


class StateTable(Generic[S, K]):
    """A total map (state, kind) -> :class:`Go` or :class:`Refuse`."""

    def __init__(
        self,
        name: str,
        states: type[S],
        kinds: type[K],
        rows: Mapping[S, Mapping[K, Go[S] | Refuse]],
    ) -> None:
        """``rows[state][kind]`` is the entry of each pair.  Raises ``ValueError`` when a pair
        is missing or something that is not one of ``states`` / ``kinds`` is in ``rows``."""
        self.name = name
        self.states = states
        self.kinds = kinds
        entries: dict[tuple[S, K], Go[S] | Refuse] = {}
        stray: list[object] = []
        for state, row in rows.items():
            if not isinstance(state, states):
                stray.append(state)
                continue
            for kind, entry in row.items():
                if not isinstance(kind, kinds):
                    stray.append(kind)
                elif isinstance(entry, Go) and not isinstance(entry.to, states):
                    stray.append(entry.to)
                elif not isinstance(entry, Go | Refuse):
                    stray.append(entry)
                else:
                    entries[state, kind] = entry
        missing = [(s, k) for s in states for k in kinds if (s, k) not in entries]
        if missing or stray:
            raise ValueError(
                f"state table {name} is not total: missing "
                f"{[(s.value, k.value) for s, k in missing]}, stray {stray!r}"
            )
        self._entries = entries

    def entry(self, state: S, kind: K) -> Go[S] | Refuse:
        """The entry of ``(state, kind)``."""
        return self._entries[state, kind]

    def step(self, state: S, kind: K, drops: Counter[str]) -> S | None:
        """The state after ``kind`` in ``state``, or None when the table refuses it (then
        counted in ``drops``)."""
        entry = self._entries[state, kind]
        if isinstance(entry, Refuse):
            drops[entry.reason] += 1
            return None
        return entry.to

    def allows(self, state: S, kind: K) -> bool:
        """Whether ``kind`` is allowed in ``state``."""
        return isinstance(self._entries[state, kind], Go)

    def pairs(self) -> Iterator[tuple[S, K, Go[S] | Refuse]]:
        """Every (state, kind, entry), states then kinds in declaration order."""
        for state in self.states:
            for kind in self.kinds:
                yield state, kind, self._entries[state, kind]

    def render(self) -> str:
        """The table as text: a paragraph per state (moves, inputs that keep it, refused inputs,
        impossible ones; states with the same row share one), then the reason each refused kind
        is counted under."""
        bodies: dict[str, list[str]] = {}  # a row's text -> the states that have it
        reasons: dict[str, list[str]] = {}
        for state in self.states:
            moves: list[str] = []
            stays: list[str] = []
            refused: list[str] = []
            never: list[str] = []
            for kind in self.kinds:
                entry = self._entries[state, kind]
                if isinstance(entry, Refuse):
                    (refused if entry.possible else never).append(str(kind.value))
                    if entry.possible and entry.reason not in reasons.setdefault(kind.value, []):
                        reasons[kind.value].append(entry.reason)
                    continue
                text = str(kind.value) + (f" ({entry.emits})" if entry.emits else "")
                if entry.to is state:
                    stays.append(text)
                else:
                    moves.append(f"{text} -> {entry.to.value}")
            parts = [", ".join(moves)] if moves else []
            parts += [f"stays on {', '.join(stays)}"] if stays else []
            parts += [f"refuses {', '.join(refused)}"] if refused else []
            parts += [f"never gets {', '.join(never)}"] if never else []
            bodies.setdefault("; ".join(parts), []).append(f"``{state.value}``")
        paragraphs = [_wrap(f"- {', '.join(names)}: {body}.") for body, names in bodies.items()]
        impossible = sorted(
            {e.reason for _, _, e in self.pairs() if isinstance(e, Refuse) and not e.possible}
        )
        counted = "; ".join(f"{kind} as ``{'``/``'.join(r)}``" for kind, r in reasons.items())
        tail = f"Refused inputs are counted: {counted}." if counted else ""
        if impossible:
            tail += f" Impossible ones as ``{'``/``'.join(impossible)}``."
        text = "\n".join(paragraphs)
        return f"{text}\n\n{_wrap(tail.strip(), bullet=False)}" if tail else text


def _wrap(text: str, bullet: bool = True) -> str:
    return textwrap.fill(
        text,
        width=RENDER_WIDTH,
        subsequent_indent="  " if bullet else "",
        break_on_hyphens=False,
        break_long_words=False,
    )
