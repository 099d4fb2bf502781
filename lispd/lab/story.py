"""How the lab demo talks: numbered steps, short narrative lines, tool output indented under
the command that produced it, and checks collected for the final summary.

Pure output formatting over a text stream (no OS access), so that it is unit-tested.
"""

from __future__ import annotations

import shlex
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

__all__ = ["Check", "Story"]

NARRATIVE_INDENT = "    "
OUTPUT_INDENT = "        "
WIDTH = 96


@dataclass(frozen=True)
class Check:
    """One thing the demo verified: ``name``, whether it held, and why not."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class Story:
    """The demo's narrative, written to ``out`` as it happens."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    checks: list[Check] = field(default_factory=list)
    steps: int = 0

    def _print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def title(self, text: str) -> None:
        """The demo's heading (wrapped)."""
        self._print(textwrap.fill(text, WIDTH, break_on_hyphens=False))

    def step(self, title: str) -> None:
        """Start the next numbered step."""
        self.steps += 1
        self._print()
        self._print(f"[{self.steps}] {title}")

    def say(self, text: str) -> None:
        """A narrative paragraph, wrapped and indented under the step title."""
        self._print(
            textwrap.fill(
                text,
                WIDTH,
                initial_indent=NARRATIVE_INDENT,
                subsequent_indent=NARRATIVE_INDENT,
                break_on_hyphens=False,
            )
        )

    def lines(self, lines: Sequence[str]) -> None:
        """Lines printed as they are (a diagram, a table), indented like the narrative."""
        for line in lines:
            self._print(f"{NARRATIVE_INDENT}{line}".rstrip())

    def command(self, where: str, argv: Sequence[str], output: str) -> None:
        """A command as typed on node ``where`` ("" for the host) and its output under it."""
        prompt = f"{where}# " if where else "# "
        self._print(f"{NARRATIVE_INDENT}{prompt}{shlex.join(argv)}")
        self.output(output)

    def output(self, text: str) -> None:
        """Tool output, indented one level deeper than the narrative (blank lines kept)."""
        body = text.rstrip("\n")
        for line in body.splitlines() if body else ["(no output)"]:
            self._print(f"{OUTPUT_INDENT}{line}".rstrip())

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        """Record a check; a failed one is said at once.  Returns ``ok``."""
        self.checks.append(Check(name, ok, detail))
        if not ok:
            self._print(f"{NARRATIVE_INDENT}FAILED: {name}{': ' + detail if detail else ''}")
        return ok

    @property
    def failed(self) -> list[Check]:
        """The checks that did not hold."""
        return [c for c in self.checks if not c.ok]

    def summary(self, seconds: float, torn_down: bool, interrupted: str = "") -> None:
        """The closing table: every check with ok/FAILED, then one verdict line
        (``interrupted``: the signal's name, when one cut the demo short)."""
        self._print()
        self._print("Summary")
        for c in self.checks:
            self._print(f"{NARRATIVE_INDENT}{'ok    ' if c.ok else 'FAILED'}  {c.name}")
        passed = len(self.checks) - len(self.failed)
        cleanup = "everything torn down" if torn_down else "TEARDOWN INCOMPLETE"
        if interrupted:
            verdict = f"demo INTERRUPTED by {interrupted} after {passed} passed checks"
        elif self.failed or not torn_down:
            verdict = f"demo FAILED: {passed} of {len(self.checks)} checks passed"
        else:
            verdict = f"demo succeeded: all {passed} checks passed"
        self._print(f"{verdict} in {seconds:.1f} s; {cleanup}.")
