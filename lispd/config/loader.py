"""Entry points: read ``lispd.conf`` (or text), parse the TOML, check it against the schema."""

from __future__ import annotations

import ast
import ipaddress
import os
import re
import tomllib

from lispd.config.errors import ConfigError
from lispd.config.locate import first_repeat, open_values
from lispd.config.model import Config
from lispd.config.schema import Context, format_key_path
from lispd.config.sections import ROOT

_TOML_POSITION = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")
_TOML_KEY_TUPLE = re.compile(r"\((?:'[^']*'|\"[^\"]*\")(?:, (?:'[^']*'|\"[^\"]*\"))*,?\)")
"""A key as tomllib writes it in messages, a Python tuple: ``('daemon',)``."""
_DUPLICATE_MESSAGES = ("Cannot overwrite a value", "Cannot declare", "Duplicate inline table key")
_TABLE_HEADER = re.compile(
    r"[ \t]*\[\[?[ \t]*[A-Za-z0-9_-]+([ \t]*\.[ \t]*[A-Za-z0-9_-]+)*[ \t]*\]\]?[ \t]*(#.*)?"
)
_NEWLINE_IN_STRING = ("illegal character '\\n'", "found invalid character '\\n'")
"""tomllib's messages for a one-line string that reaches the end of its line."""
_TOKEN_DELIMITERS = frozenset(" \t\r\n,[]{}=#\"'")
_CLOSERS = {"[": "]", "{": "}"}
_WHAT = {"[": "array", "{": "inline table"}


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
    """Turn tomllib's "message (at line L, column C)" into a ConfigError with that line.

    A key or table defined twice is reported at its second definition, by key path, with the
    line of the first. For the commonest slips the message says what to do (a missing closing
    quote or bracket, an inline table over several lines or with a trailing comma, a string or
    an address without quotes); it never quotes the text, which may be a secret.
    """
    message = str(exc)
    match = _TOML_POSITION.search(message)
    line: int | None = None
    offset = len(text)
    if match:
        message = message[: match.start()]
        if match[1]:
            line, column = int(match[1]), int(match[2])
            offset = _offset(text, line, column)
        else:
            line = max(1, len(text.splitlines()))
    if message.startswith(_DUPLICATE_MESSAGES):
        repeat = first_repeat(text)
        if repeat is not None and (line is None or repeat.line <= line):
            if repeat.is_table != repeat.first_is_table:
                what = "defined both as a key and as a table"
            else:
                what = f"{'table' if repeat.is_table else 'key'} defined twice"
            return ConfigError(
                path,
                repeat.line,
                format_key_path(repeat.path),
                f"TOML syntax error: {what}, first on line {repeat.first_line}",
            )
    unclosed = open_values(text, offset) if offset >= len(text) else []
    if unclosed:  # reported where the value opened, not on the last line
        opener = unclosed[0]
        what = _WHAT.get(opener.opener, "string")
        closer = _CLOSERS.get(opener.opener, opener.opener)
        return ConfigError(
            path,
            opener.line,
            "",
            f"TOML syntax error: end of file inside the {what} opened on this line: "
            f"is its closing {closer} missing?",
        )
    message = _TOML_KEY_TUPLE.sub(_dotted_key, message)
    message = message[:1].lower() + message[1:]
    hint = _hint(message, text, offset)
    if offset >= len(text):
        message += " at end of file"
    elif match:
        message += f" at column {match[2]}"
    return ConfigError(path, line, "", f"TOML syntax error: {message}{hint}")


def _offset(text: str, line: int, column: int) -> int:
    """The offset in ``text`` of 1-based ``line`` and ``column``, as tomllib counts them."""
    start = 0
    for _ in range(line - 1):
        start = text.index("\n", start) + 1
    return min(start + column - 1, len(text))


def _dotted_key(match: re.Match[str]) -> str:
    """``('a', 'b')`` as ``a.b`` (left as is if it is not a tuple literal after all)."""
    try:
        parts: tuple[str, ...] = ast.literal_eval(match[0])
    except (ValueError, SyntaxError):
        return match[0]
    return format_key_path(parts)


def _token_at(text: str, offset: int) -> str:
    """The run of non-delimiter characters around ``offset`` (an unquoted word or number)."""
    start = end = offset
    while start > 0 and text[start - 1] not in _TOKEN_DELIMITERS:
        start -= 1
    while end < len(text) and text[end] not in _TOKEN_DELIMITERS:
        end += 1
    return text[start:end]


def _is_ip_text(token: str) -> bool:
    """Whether ``token`` is an IP address or prefix (as an operator might write unquoted)."""
    try:
        ipaddress.ip_network(token, strict=False)
    except ValueError:
        return False
    return True


def _hint(message: str, text: str, offset: int) -> str:
    """What to do about the syntax error ``message`` at ``offset``, or ``""``.

    The hints never quote the text (a secret may be on the line).
    """
    char = text[offset] if offset < len(text) else ""
    token = _token_at(text, offset)
    unclosed = open_values(text, offset)
    inner = unclosed[-1].opener if unclosed else ""
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    this_line = text[line_start : len(text) if line_end < 0 else line_end]
    outer = unclosed[0] if unclosed else None
    if (
        outer is not None
        and outer.opener == "["
        and outer.line < text.count("\n", 0, offset) + 1
        and _TABLE_HEADER.fullmatch(this_line)
    ):
        # A [table] header read as elements of an array left open on an earlier line.
        return (
            f"; this table header is inside the array opened on line {outer.line}: "
            "is its closing ] missing?"
        )
    if message.startswith(_NEWLINE_IN_STRING) and inner in ('"', "'"):
        return "; a string must end on its line: is its closing quote missing?"
    if _is_ip_text(token):
        return "; IP addresses and prefixes are strings: put them in quotes"
    if message.startswith("invalid value") and token[:1].isalpha():
        if token.lower() in ("true", "false"):
            return "; booleans are true or false, in lower case"
        return "; a string must be in quotes"
    if inner == "{" and char in ("\r", "\n"):
        return "; an inline table { ... } must be on one line"
    if inner == "{" and char == "}":
        return "; no comma after the last key/value of an inline table"
    if message.startswith("unclosed array"):
        return "; a ',' between elements or the closing ']' is missing"
    if message.startswith("unclosed inline table"):
        return "; a ',' between key/value pairs or the closing '}' is missing"
    if message.startswith("expected '=' after a key") and char == ":":
        return "; TOML writes key = value, not key: value"
    return ""
