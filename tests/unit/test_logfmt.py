"""Unit tests of lispd.logfmt: quoting, key=value building, and the formatter's lines.

Every line is checked with the small logfmt parser below, written from the format's rules and
not from lispd's code: ``key=value`` pairs separated by single spaces, a value bare (no space,
``"``, ``=``, ``\\`` or non-printable) or double-quoted with ``\\"``, ``\\\\``, ``\\n``,
``\\r``, ``\\t``, ``\\uXXXX`` and ``\\UXXXXXXXX`` escapes.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lispd.cli.main import _setup_logging, log_formatter
from lispd.logfmt import (
    LogfmtFormatter,
    endpoint,
    is_fields,
    key_text,
    kv,
    message_pairs,
    pairs,
    quote,
    split_message,
    value_text,
)

_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}


def parse_logfmt(line: str) -> list[tuple[str, str]]:
    """A line's (key, value) pairs; ``ValueError`` for anything that is not logfmt."""
    if not line or not line.isprintable():
        raise ValueError(f"empty or non-printable line: {line!r}")
    out: list[tuple[str, str]] = []
    i, n = 0, len(line)
    while True:
        eq = line.find("=", i)
        if eq <= i:
            raise ValueError(f"no key at {i}: {line!r}")
        key = line[i:eq]
        if any(c in ' "\\' for c in key):
            raise ValueError(f"bad key {key!r}")
        i = eq + 1
        if i < n and line[i] == '"':
            value, i = _quoted(line, i + 1)
        else:
            end = line.find(" ", i)
            end = n if end < 0 else end
            value = line[i:end]
            if any(c in '"=\\' for c in value):
                raise ValueError(f"bad bare value {value!r}")
            i = end
        out.append((key, value))
        if i == n:
            return out
        if line[i] != " " or i + 1 == n:
            raise ValueError(f"no single space between pairs at {i}: {line!r}")
        i += 1


def _quoted(line: str, i: int) -> tuple[str, int]:
    chars: list[str] = []
    while True:
        if i >= len(line):
            raise ValueError("unterminated quoted value")
        c = line[i]
        if c == '"':
            return "".join(chars), i + 1
        if c != "\\":
            chars.append(c)
            i += 1
            continue
        e = line[i + 1 : i + 2]
        if e in _SIMPLE_ESCAPES:
            chars.append(_SIMPLE_ESCAPES[e])
            i += 2
        elif e in ("u", "U"):
            width = 4 if e == "u" else 8
            digits = line[i + 2 : i + 2 + width]
            if len(digits) != width or any(d not in "0123456789abcdef" for d in digits):
                raise ValueError(f"bad escape at {i}")
            chars.append(chr(int(digits, 16)))
            i += 2 + width
        else:
            raise ValueError(f"unknown escape \\{e}")


def test_the_parser_itself() -> None:
    assert parse_logfmt('a=1 b="x y" c= d="q\\"\\\\\\n"') == [
        ("a", "1"),
        ("b", "x y"),
        ("c", ""),
        ("d", 'q"\\\n'),
    ]
    for bad in ("a", "a=1  b=2", "a=1 ", "=1", 'a="x', 'a=x"y', "a=1\n", 'a="\\q"', "a b=1"):
        with pytest.raises(ValueError):
            parse_logfmt(bad)


# --- quoting and values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("[7]2001:db8::/48", "[7]2001:db8::/48"),
        ("0x00000000075bcd15", "0x00000000075bcd15"),
        ("", '""'),
        ("two words", '"two words"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("a=b", '"a=b"'),
        ("C:\\dir", '"C:\\\\dir"'),
        ("line\nbreak\ttab\rcr", '"line\\nbreak\\ttab\\rcr"'),
        ("nul\x00del\x7f", '"nul\\u0000del\\u007f"'),
        ("café", "café"),
        ("sep\u2028", '"sep\\u2028"'),
        ("surrogate\udcff", '"surrogate\\udcff"'),
        ("tag\U000e0041", '"tag\\U000e0041"'),
    ],
)
def test_quote(value: str, written: str) -> None:
    assert quote(value) == written
    assert parse_logfmt(f"k={written}") == [("k", value)]


def test_value_text() -> None:
    assert value_text(None) == "-"
    assert value_text(True) == "true" and value_text(False) == "false"
    assert value_text(3) == "3"
    assert value_text(0.0012345678) == "0.00123457"
    assert value_text(86400.0) == "86400"
    assert value_text(IPv6Address("2001:db8::1")) == "2001:db8::1"
    assert value_text(b"\x01\xab") == "01ab"
    assert value_text([IPv4Address("192.0.2.1"), "x", 2]) == "192.0.2.1,x,2"
    assert value_text(()) == "-"
    assert value_text(ValueError("boom")) == "boom"


def test_kv_and_pairs() -> None:
    assert kv(map_server=IPv4Address("192.0.2.50"), proxy_reply=False, rtrs=()) == (
        "map-server=192.0.2.50 proxy-reply=false rtrs=-"
    )
    assert kv(error="No such file: 'x y'") == "error=\"No such file: 'x y'\""
    assert pairs({"last-acked-ago": 1.5, "bad key=": 1}) == "last-acked-ago=1.5 bad_key_=1"
    assert key_text("") == "_"
    assert endpoint(IPv4Address("192.0.2.1"), 4342) == "192.0.2.1:4342"
    assert endpoint("2001:db8::1", 4341) == "[2001:db8::1]:4341"


def test_split_message() -> None:
    assert split_message("lispd ready version=1 roles=etr") == (
        "lispd ready",
        "version=1 roles=etr",
    )
    assert split_message("lispd stopping") == ("lispd stopping", "")
    assert split_message('registered site="a b"') == ("registered", 'site="a b"')
    assert split_message("worker=1 started") == ("", "worker=1 started")


@pytest.mark.parametrize(
    ("message", "written"),
    [
        ("lispd stopping", 'msg="lispd stopping"'),
        (
            "registered site=s1 eid=[0]198.51.100.0/28",
            "msg=registered site=s1 eid=[0]198.51.100.0/28",
        ),
        # free text around key=value words: the whole message is the value
        ("route del 10.0.0.0/8 error=[Errno 3] No such process", None),
        ("tun=lisp0 is a persistent single-queue device", None),
        ("a = b", None),
        ('half "quoted', None),
        ("x=1 multi\nline", None),
        ("", 'msg=""'),
    ],
)
def test_message_pairs(message: str, written: str | None) -> None:
    line = message_pairs(message)
    if written is not None:
        assert line == written
    else:
        assert line == f"msg={quote(message)}"
    parse_logfmt(line)
    assert is_fields(line)


# --- the formatter ---------------------------------------------------------------------------


@pytest.fixture
def lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through a :class:`LogfmtFormatter` into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(LogfmtFormatter())
    logger = logging.getLogger("lispd.test.logfmt")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, buffer
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def _records(buffer: io.StringIO) -> list[dict[str, str]]:
    text = buffer.getvalue()
    assert text.endswith("\n")
    return [dict(parse_logfmt(line)) for line in text[:-1].split("\n")]


def test_a_line_has_time_level_logger_msg_then_fields(
    lines: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = lines
    logger.info("lispd ready %s %s", kv(version="0.1.0"), "roles=etr,itr map-cache=0")
    [line] = buffer.getvalue().splitlines()
    keys = [k for k, _ in parse_logfmt(line)]
    assert keys == ["time", "level", "logger", "msg", "version", "roles", "map-cache"]
    [record] = _records(buffer)
    assert record["level"] == "info" and record["logger"] == "lispd.test.logfmt"
    assert record["msg"] == "lispd ready" and record["version"] == "0.1.0"
    time_value = record["time"]
    assert len(time_value) == 24 and time_value[10] == "T" and time_value.endswith("Z")


def test_awkward_values_exceptions_and_bad_arguments_all_parse(
    lines: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = lines
    awkward = 'a "quoted" value with = and \\ and\nnewline\x00\u2028 and café'
    logger.warning("reload refused %s", kv(error=awkward))
    try:
        raise RuntimeError('boom "inside"\nsecond line')
    except RuntimeError:
        logger.exception("internal error handling a packet %s", kv(source="192.0.2.9:4342"))
    logger.error("free text: %s", "x=1 y z")
    # Arguments that do not fit the format (pytest's own handlers would raise: format directly).
    bad = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "no fit %d", ("x",), None)
    buffer.write(LogfmtFormatter().format(bad) + "\n")
    logger.debug("tun=%s is a persistent single-queue device: one queue", "lisp0")
    logger.info("stack", stack_info=True)
    records = _records(buffer)
    assert records[0]["msg"] == "reload refused" and records[0]["error"] == awkward
    assert records[1]["msg"] == "internal error handling a packet"
    assert records[1]["source"] == "192.0.2.9:4342"
    assert records[1]["exc"].startswith("Traceback (most recent call last):")
    assert records[1]["exc"].endswith('RuntimeError: boom "inside"\nsecond line')
    assert records[2]["msg"] == "free text: x=1 y z"
    assert records[3]["msg"] == "no fit %d" and "real number" in records[3]["format-error"]
    assert records[4]["msg"] == "tun=lisp0 is a persistent single-queue device: one queue"
    assert records[5]["stack"].startswith("Stack (most recent call last):")
    assert [r["level"] for r in records] == ["warning", "error", "error", "info", "debug", "info"]


_EVENT = st.text(st.characters(blacklist_characters='="'), max_size=20)
_VALUES = st.dictionaries(
    st.text(st.characters(whitelist_categories=("Ll", "Nd")), min_size=1, max_size=8),
    st.text(max_size=30),
    max_size=4,
)


def _format(message: str, *args: object) -> list[tuple[str, str]]:
    record = logging.LogRecord("lispd.x", logging.INFO, __file__, 1, message, args, None)
    parsed = parse_logfmt(LogfmtFormatter().format(record))
    assert [k for k, _ in parsed[:3]] == ["time", "level", "logger"]
    return parsed[3:]


@settings(max_examples=300, deadline=None)
@given(event=_EVENT, values=_VALUES)
def test_event_and_fields_round_trip(event: str, values: dict[str, str]) -> None:
    """Any event text (without ``=`` or ``"``) and any values come back exactly as logged."""
    rest = _format("%s %s", event, pairs(values))
    expected = [("msg", event.strip(" "))] if event.strip(" ") or not values else []
    assert rest == expected + list(values.items())


@settings(max_examples=300, deadline=None)
@given(message=st.text(max_size=60))
def test_any_message_gives_a_logfmt_line(message: str) -> None:
    """Free text of any kind: the line parses, and a message that is not event + fields is
    kept whole as ``msg``."""
    rest = _format("%s", message)
    if len(rest) == 1 and rest[0][0] == "msg":
        assert rest[0][1] in (message, message.strip(" "))


def test_journal_lines_have_a_priority_and_no_time() -> None:
    formatter = log_formatter(journal=True)
    record = logging.LogRecord(
        "lispd.daemon", logging.WARNING, __file__, 1, "rloc down %s", None, None
    )
    record.args = (kv(rloc="192.0.2.6"),)
    line = formatter.format(record)
    assert line.startswith("<4>")
    assert parse_logfmt(line[3:]) == [
        ("level", "warning"),
        ("logger", "lispd.daemon"),
        ("msg", "rloc down"),
        ("rloc", "192.0.2.6"),
    ]
    assert log_formatter(journal=False).format(record).startswith("time=")


def test_the_command_line_logs_logfmt_to_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    try:
        _setup_logging("info")
        logging.getLogger("lispd.daemon").info("lispd stopping")
        logging.getLogger("pyroute2").info("not ours: filtered below warning")
    finally:
        for handler in root.handlers:
            if handler not in before:
                root.removeHandler(handler)
        root.setLevel(level)
    [line] = buffer.getvalue().splitlines()
    assert dict(parse_logfmt(line))["msg"] == "lispd stopping"
