"""logfmt log lines: every line lispd writes is ``key=value`` pairs separated by spaces.

A line reads ``time=2026-12-06T22:09:03.123Z level=info logger=lispd.daemon msg="lispd ready"
version=0.1.0 roles=etr,itr``: the time (UTC, milliseconds; left out under journald, which
stamps its own), the level, the logger, the event (``msg``), then the event's fields, and for a
logged exception its traceback as one escaped ``exc`` value.

Call sites write a short event text followed by fields built with :func:`kv`, which quotes
what needs it::

    log.info("registration acknowledged %s", kv(map_server=address, nonce=f"0x{nonce:016x}"))

:class:`LogfmtFormatter` splits a message into its event text (the words before the first
``key=value`` word) and its fields; when what follows the event text is not well-formed logfmt
(free text from a library, a hand-built message), the whole message becomes the ``msg`` value,
so every line parses whatever was logged.

Quoting: a value is written bare when it is non-empty, printable and free of spaces, ``"``,
``=`` and ``\\``; otherwise it is written in double quotes with ``\\"``, ``\\\\``, ``\\n``,
``\\r``, ``\\t`` and ``\\uXXXX`` / ``\\UXXXXXXXX`` for other non-printable characters.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv6Address
from typing import Final

PRIORITY: Final = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}
"""Syslog priority per level, written as the ``<N>`` prefix journald reads."""

_SPECIAL: Final = frozenset(' "=\\')
_ESCAPES: Final = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SAFE_ASCII: Final = re.compile(r"[\x21\x23-\x3c\x3e-\x5b\x5d-\x7e]+")

_KEY = r'[^\s="\\]+'
_BARE = r'[^\s="\\]*'
_QUOTED = r'"(?:[^"\\]|\\["\\nrt]|\\u[0-9a-f]{4}|\\U[0-9a-f]{8})*"'
_PAIR = rf"{_KEY}=(?:{_QUOTED}|{_BARE})"
_FIELDS: Final = re.compile(rf"{_PAIR}(?: {_PAIR})*")
_KEY_BAD: Final = re.compile(r'[\s="\\]')


def quote(value: str) -> str:
    """``value`` as a logfmt value: bare when it can be, else double-quoted and escaped."""
    if _SAFE_ASCII.fullmatch(value):
        return value
    if value and value.isprintable() and not _SPECIAL.intersection(value):
        return value  # printable non-ASCII text needs no quotes
    return '"' + "".join(_escape(c) for c in value) + '"'


def _escape(char: str) -> str:
    escaped = _ESCAPES.get(char)
    if escaped is not None:
        return escaped
    if char.isprintable():
        return char
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def value_text(value: object) -> str:
    """The text of a field value before quoting: None and empty sequences as ``-``, booleans as
    ``true``/``false``, floats with 6 significant digits, bytes in hex, lists, tuples and sets
    comma-joined, anything else ``str()``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | IPv4Address | IPv6Address):
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(value_text(v) for v in value) or "-"
    return str(value)


def key_text(name: str) -> str:
    """A field name as a logfmt key: ``_`` becomes ``-``; spaces, ``=``, ``"`` and ``\\``
    become ``_``; an empty name ``_``."""
    return _KEY_BAD.sub("_", name.replace("_", "-")) or "_"


def pairs(fields: Mapping[str, object]) -> str:
    """``key=value`` pairs for ``fields``, in order, quoted as needed."""
    return " ".join(f"{key_text(k)}={quote(value_text(v))}" for k, v in fields.items())


def kv(**fields: object) -> str:
    """``key=value`` pairs for keyword arguments (``map_server=`` is written ``map-server=``)."""
    return pairs(fields)


def endpoint(address: object, port: int) -> str:
    """``address:port`` as a field value, an IPv6 address in brackets: ``[2001:db8::1]:4342``."""
    text = str(address)
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


def is_fields(text: str) -> bool:
    """Whether ``text`` is well-formed logfmt pairs (single spaces between them)."""
    return text.isprintable() and _FIELDS.fullmatch(text) is not None


def split_message(message: str) -> tuple[str, str]:
    """(event text, fields): the words before the first word holding ``=`` or ``"``, and the
    rest of the message (empty when it has no such word)."""
    start = 0
    for word in message.split(" "):
        if "=" in word or '"' in word:
            return message[:start].strip(" "), message[start:]
        start += len(word) + 1
    return message.strip(" "), ""


def message_pairs(message: str) -> str:
    """A log message as logfmt: ``msg=<event text>`` followed by its fields, or the whole
    message as ``msg`` when its fields are not well-formed logfmt."""
    event, fields = split_message(message)
    if not fields:
        return f"msg={quote(event)}"
    if is_fields(fields):
        return f"msg={quote(event)} {fields}" if event else fields
    return f"msg={quote(message)}"


class LogfmtFormatter(logging.Formatter):
    """Formats records as logfmt lines; with ``journal`` (journald reads stderr), without the
    time and with the ``<N>`` syslog priority prefix that ``journalctl -p`` filters on."""

    def __init__(self, journal: bool = False) -> None:
        super().__init__()
        self.journal = journal

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """RFC 3339 UTC with milliseconds: ``2026-12-06T22:09:03.123Z``."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        """One logfmt line for ``record`` (exceptions and stacks included as escaped values)."""
        parts = [] if self.journal else [f"time={self.formatTime(record)}"]
        parts.append(f"level={quote(record.levelname.lower())}")
        parts.append(f"logger={quote(record.name)}")
        try:
            parts.append(message_pairs(record.getMessage()))
        except (TypeError, ValueError) as exc:  # arguments that do not fit the format
            parts.append(pairs({"msg": str(record.msg), "format-error": str(exc)}))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            parts.append(f"exc={quote(record.exc_text)}")
        if record.stack_info:
            parts.append(f"stack={quote(self.formatStack(record.stack_info))}")
        line = " ".join(parts)
        if self.journal:
            return f"<{PRIORITY.get(record.levelname, 6)}>{line}"
        return line
