"""Entry points: read ``lispd.conf`` (or text), parse the TOML, check it against the schema."""

from __future__ import annotations

import os
import re
import tomllib

from lispd.config.errors import ConfigError
from lispd.config.model import Config
from lispd.config.schema import Context
from lispd.config.sections import ROOT

_TOML_POSITION = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, parse and validate the configuration file at ``path``.

    Raises :class:`ConfigError` for anything wrong, including an unreadable or non-UTF-8 file.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise ConfigError(name, None, "", f"cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(name, line, "", "not valid UTF-8 text") from None
    return parse_config(text, name)


def parse_config(text: str, path: str = "<string>") -> Config:
    """Parse and validate configuration ``text``; ``path`` names it in errors and the result.

    Raises :class:`ConfigError` naming the line (when known) and key path of the first problem.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(exc, text, path) from None
    config: Config = ROOT.check(document, (), Context(path, text))
    return config


def _syntax_error(exc: tomllib.TOMLDecodeError, text: str, path: str) -> ConfigError:
    """Turn tomllib's "message (at line L, column C)" into a ConfigError with that line."""
    message = str(exc)
    match = _TOML_POSITION.search(message)
    line: int | None = None
    if match:
        message = message[: match.start()]
        if match[1]:
            line = int(match[1])
            message += f" at column {match[2]}"
        else:
            line = max(1, len(text.splitlines()))
            message += " at end of file"
    message = message[:1].lower() + message[1:]
    return ConfigError(path, line, "", f"TOML syntax error: {message}")
