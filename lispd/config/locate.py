"""Find the line of each key in a TOML document, for error messages.

:mod:`tomllib` returns plain dicts without positions, so this module re-reads the source text
with a small scanner that only understands what it needs: table headers (``[a]``, ``[[a]]``,
counted per array), keys (bare, quoted, dotted), and values just well enough to skip them (strings
of the four kinds, arrays and inline tables, whose elements and keys it also records).

It runs only when an error is reported: on text that :mod:`tomllib` accepted (to find the line
of a key), or on the part of a rejected text that :mod:`tomllib` read before its error (to find a
key defined twice, or the arrays, inline tables and strings still open there).
It is best effort: anything it does not follow ends the scan and keeps what was found so far.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

KeyPath = tuple[str | int, ...]
"""A position in the document: table names and keys (str) and array indexes (int)."""


@dataclass(frozen=True, slots=True)
class Repeat:
    """A key or table defined a second time (which TOML forbids)."""

    path: KeyPath
    line: int
    """The line of the second definition."""
    first_line: int
    """The line of the first one."""
    is_table: bool
    """Whether the second definition is a ``[table]`` header (else a ``key =``)."""
    first_is_table: bool
    """Whether the first one is."""


@dataclass(frozen=True, slots=True)
class OpenValue:
    """An array, inline table or string not closed yet at some point of the text."""

    opener: str
    """``[``, ``{``, or the quote(s) that opened the string."""
    line: int


_BARE_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class _ScanError(Exception):
    """The scanner met something it does not follow (never escapes this module)."""


class _Scanner:
    """One pass over the text, filling ``lines`` with the first line of every key path.

    It also notes every key or table defined twice (``repeats``) and keeps the stack of the
    values being read (``open``); with ``stop``, it ends before reading past that offset.
    """

    def __init__(self, text: str, stop: int | None = None) -> None:
        self.text = text
        self.stop = stop
        self.pos = 0
        self.line = 1
        self.lines: dict[KeyPath, int] = {}
        self.array_counts: dict[KeyPath, int] = {}
        self.definitions: dict[KeyPath, tuple[int, bool]] = {}
        self.repeats: list[Repeat] = []
        self.open: list[OpenValue] = []

    # -- characters ---------------------------------------------------------------------------

    def peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.text[index] if index < len(self.text) else ""

    def startswith(self, prefix: str) -> bool:
        return self.text.startswith(prefix, self.pos)

    def advance(self, count: int = 1) -> None:
        end = min(self.pos + count, len(self.text))
        if self.stop is not None and end > self.stop:
            raise _ScanError("stop")
        self.line += self.text.count("\n", self.pos, end)
        self.pos = end

    def expect(self, token: str) -> None:
        if not self.startswith(token):
            raise _ScanError(token)
        self.advance(len(token))

    def skip_blanks(self) -> None:
        while self.peek() in (" ", "\t"):
            self.advance()

    def skip_space(self) -> None:
        """Skip blanks, newlines and comments."""
        while True:
            char = self.peek()
            if char in (" ", "\t", "\r", "\n"):
                self.advance()
            elif char == "#":
                while self.peek() not in ("", "\n"):
                    self.advance()
            else:
                return

    # -- records --------------------------------------------------------------------------------

    def record(self, path: KeyPath, line: int) -> None:
        for end in range(1, len(path) + 1):
            self.lines.setdefault(path[:end], line)

    def define(self, path: KeyPath, line: int, *, is_table: bool = False) -> None:
        """Record a key or a ``[table]`` header, noting it when it was defined before."""
        first = self.definitions.get(path)
        if first is None:
            self.definitions[path] = (line, is_table)
        else:
            self.repeats.append(Repeat(path, line, first[0], is_table, first[1]))
        self.record(path, line)

    # -- grammar --------------------------------------------------------------------------------

    def run(self) -> None:
        prefix: KeyPath = ()
        while True:
            self.skip_space()
            if not self.peek():
                return
            line = self.line
            if self.startswith("[["):
                self.advance(2)
                prefix = self.array_header(self.key())
                self.skip_blanks()
                self.expect("]]")
                self.record(prefix, line)
            elif self.peek() == "[":
                self.advance()
                prefix = self.resolve(self.key())
                self.skip_blanks()
                self.expect("]")
                self.define(prefix, line, is_table=True)
            else:
                path = prefix + self.key()
                self.skip_blanks()
                self.expect("=")
                self.define(path, line)
                self.skip_blanks()
                self.value(path)

    def resolve(self, parts: tuple[str, ...]) -> KeyPath:
        """A header's dotted name, with the current index after each array of tables."""
        resolved: KeyPath = ()
        for part in parts:
            resolved += (part,)
            count = self.array_counts.get(resolved)
            if count:
                resolved += (count - 1,)
        return resolved

    def array_header(self, parts: tuple[str, ...]) -> KeyPath:
        """Resolve a ``[[a.b]]`` header and count one more element of that array."""
        if not parts:
            raise _ScanError("empty header")
        array = (*self.resolve(parts[:-1]), parts[-1])
        index = self.array_counts.get(array, 0)
        self.array_counts[array] = index + 1
        return (*array, index)

    def key(self) -> tuple[str, ...]:
        parts: list[str] = []
        while True:
            self.skip_blanks()
            char = self.peek()
            if char == '"':
                parts.append(self.basic_string())
            elif char == "'":
                parts.append(self.literal_string())
            else:
                start = self.pos
                while self.peek() and self.peek() in _BARE_KEY_CHARS:
                    self.advance()
                if self.pos == start:
                    raise _ScanError("key")
                parts.append(self.text[start : self.pos])
            self.skip_blanks()
            if self.peek() != ".":
                return tuple(parts)
            self.advance()

    def value(self, path: KeyPath) -> None:
        char = self.peek()
        if char == "[":
            self.advance()
            self.open.append(OpenValue("[", self.line))
            index = 0
            while True:
                self.skip_space()
                if self.peek() == "]":
                    self.advance()
                    self.open.pop()
                    return
                if not self.peek():
                    raise _ScanError("array")
                self.record((*path, index), self.line)
                self.value((*path, index))
                index += 1
                self.skip_space()
                if self.peek() == ",":
                    self.advance()
        elif char == "{":
            self.advance()
            self.open.append(OpenValue("{", self.line))
            while True:
                self.skip_space()
                if self.peek() == "}":
                    self.advance()
                    self.open.pop()
                    return
                if not self.peek():
                    raise _ScanError("inline table")
                line = self.line
                key_path = path + self.key()
                self.skip_blanks()
                self.expect("=")
                self.define(key_path, line)
                self.skip_blanks()
                self.value(key_path)
                self.skip_space()
                if self.peek() == ",":
                    self.advance()
        elif char == '"':
            self.basic_string()
        elif char == "'":
            self.literal_string()
        else:
            # Number, boolean or date-time (which may hold a space): up to a delimiter.
            start = self.pos
            while self.peek() and self.peek() not in ",]}#\r\n":
                self.advance()
            if self.pos == start:
                raise _ScanError("value")

    def basic_string(self) -> str:
        """Skip a ``"..."`` or ``\"\"\"...\"\"\"`` string; return its raw content."""
        if self.startswith('"""'):
            self.open.append(OpenValue('"""', self.line))
            self.advance(3)
            start = self.pos
            while not self.startswith('"""'):
                if not self.peek():
                    raise _ScanError("string")
                self.advance(2 if self.peek() == "\\" else 1)
            end = self.pos
            self.advance(3)
            for _ in range(2):  # up to two quotes may end the content: """a""""
                if self.peek() == '"':
                    self.advance()
                    end += 1
            self.open.pop()
            return self.text[start:end]
        self.open.append(OpenValue('"', self.line))
        self.advance()
        start = self.pos
        while self.peek() != '"':
            if self.peek() in ("", "\n"):
                raise _ScanError("string")
            self.advance(2 if self.peek() == "\\" else 1)
        end = self.pos
        self.advance()
        self.open.pop()
        return self.text[start:end]

    def literal_string(self) -> str:
        """Skip a ``'...'`` or ``'''...'''`` string; return its content."""
        if self.startswith("'''"):
            self.open.append(OpenValue("'''", self.line))
            self.advance(3)
            end = self.text.find("'''", self.pos)
            if end < 0:
                raise _ScanError("string")
            extra = 0  # up to two quotes may end the content: '''a''''
            while extra < 2 and self.text.startswith("'", end + 3 + extra):
                extra += 1
            content = self.text[self.pos : end + extra]
            self.advance(end + 3 + extra - self.pos)
            self.open.pop()
            return content
        self.open.append(OpenValue("'", self.line))
        self.advance()
        end = self.text.find("'", self.pos)
        if end < 0 or "\n" in self.text[self.pos : end]:
            raise _ScanError("string")
        content = self.text[self.pos : end]
        self.advance(end + 1 - self.pos)
        self.open.pop()
        return content


def key_lines(text: str) -> dict[KeyPath, int]:
    """Map every key path found in ``text`` to the 1-based line where it first appears.

    Tables map to their header line, keys to their ``key =`` line, array elements to the line
    where the element starts; e.g. ``("database-mapping", 1, "rlocs", 0, "priority")``.
    """
    return _scan(text).lines


def _scan(text: str, stop: int | None = None) -> _Scanner:
    scanner = _Scanner(text, stop)
    with contextlib.suppress(_ScanError, IndexError):
        scanner.run()
    return scanner


def first_repeat(text: str) -> Repeat | None:
    """The first key or ``[table]`` defined a second time in ``text``, in document order."""
    repeats = _scan(text).repeats
    return repeats[0] if repeats else None


def open_values(text: str, offset: int) -> list[OpenValue]:
    """The arrays, inline tables and strings still open at ``offset``, outermost first.

    ``offset`` is where a parser met something it did not expect (``len(text)`` for the end of
    the file); a value counts as open there when it started before it and did not end before it.
    """
    return _scan(text, offset).open
