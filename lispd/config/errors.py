"""The one exception raised for anything wrong with ``lispd.conf``.

A :class:`ConfigError` names the file, the line (when it can be found) and the key path of the
offending value, so ``lispd --check`` can print ``str(err)`` as is::

    /etc/lispd.conf:12: database-mapping[1].rlocs[0].priority: must be from 0 to 255, got 300
"""

from __future__ import annotations

from typing import Any


class ConfigError(Exception):
    """A configuration file that cannot be used: refuse it and say why.

    Attributes:
        path: the file name as given to the loader (``"<string>"`` for text).
        line: the 1-based line of the offending key or table, or ``None`` when unknown.
        key_path: where in the document, e.g. ``"database-mapping[1].rlocs[0].priority"``;
            empty for errors about the file as a whole (unreadable, TOML syntax).
        message: what is wrong, in a few words an operator can act on.
    """

    def __init__(self, path: str, line: int | None, key_path: str, message: str) -> None:
        self.path = path
        self.line = line
        self.key_path = key_path
        self.message = message
        super().__init__(self._format())

    def _format(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return (
            f"{where}: {self.key_path}: {self.message}"
            if self.key_path
            else (f"{where}: {self.message}")
        )

    def __str__(self) -> str:
        return self._format()

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.line, self.key_path, self.message))
