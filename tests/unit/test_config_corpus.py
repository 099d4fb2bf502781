"""The corpus of broken ``lispd.conf`` files in ``tests/data/bad-configs``: each is refused.

Every file is one realistic operator mistake. Its first line states what the refusal must say::

    # expect: <line>: <key path>: <part of the message>
    # expect: <line>: <part of the message>          (TOML syntax errors without a key path)

``<line>`` is ``-`` when the error has no line (a required top-level table that is missing).
The file names start with their category: ``toml-`` (syntax), ``unknown-`` (keys), ``missing-``
(required keys and tables), ``value-`` (types, ranges, formats), ``semantic-`` (rules across
keys and sections) and ``lines-`` (the line is found past multi-line strings, comments, dotted
keys and repeated tables). At the end, the TOML syntax messages that the corpus does not show.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from lispd.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "data" / "bad-configs"
FILES = sorted(CORPUS.glob("*.conf"))

CATEGORIES = ("toml", "unknown", "missing", "value", "semantic", "lines")
MIN_FILES = 40
MIN_PER_CATEGORY = 3

_KEY_PATH = r"[A-Za-z0-9_-]+(?:\[[0-9]+\]|\.[A-Za-z0-9_-]+)*"
_EXPECT = re.compile(rf"# expect: (?P<line>[0-9]+|-): (?:(?P<key>{_KEY_PATH}): )?(?P<message>.+)")

DOC_RANGES = [
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
]
SECRET_MARK = "example-key"
"""Every ``key`` in the corpus contains this; no error message may show it."""


@dataclass(frozen=True)
class Expectation:
    """What a corpus file's refusal must say."""

    line: int | None
    key_path: str
    message: str


def expectation(path: Path) -> Expectation:
    """Parse the ``# expect:`` first line of a corpus file."""
    first = path.read_text(encoding="utf-8").split("\n", 1)[0]
    match = _EXPECT.fullmatch(first)
    assert match, f"{path.name}: the first line is not '# expect: <line>: [<key path>: ]<text>'"
    line = None if match["line"] == "-" else int(match["line"])
    return Expectation(line, match["key"] or "", match["message"])


def refusal(path: Path) -> ConfigError:
    """The ConfigError that loading ``path`` raises."""
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


def where(path: Path, expected: Expectation) -> str:
    """``FILE:LINE: KEY: ``, how the error must start (``FILE: KEY: `` without a line)."""
    place = str(path) if expected.line is None else f"{path}:{expected.line}"
    return f"{place}: {expected.key_path}: " if expected.key_path else f"{place}: "


def test_corpus_is_large_enough() -> None:
    assert len(FILES) >= MIN_FILES


def test_every_file_has_an_expect_line() -> None:
    for path in FILES:
        expected = expectation(path)
        assert expected.line is None or expected.line >= 2, path.name  # line 1 is the comment


def test_every_category_is_covered() -> None:
    categories = Counter(path.name.split("-", 1)[0] for path in FILES)
    assert set(categories) <= set(CATEGORIES), "unknown category prefix in the corpus"
    for category in CATEGORIES:
        assert categories[category] >= MIN_PER_CATEGORY, category


def test_corpus_uses_documentation_addresses_only() -> None:
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"(?<![/\w:.])[0-9A-Fa-f:.]{7,}", text):
            try:
                address = ipaddress.ip_address(match[0])
            except ValueError:
                continue  # not an address, or a deliberately broken one
            assert any(address in net for net in DOC_RANGES), f"{path.name}: {address}"


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.stem)
def test_bad_config_is_refused_naming_place_and_problem(path: Path) -> None:
    expected = expectation(path)
    err = refusal(path)
    assert err.path == str(path)
    assert err.line == expected.line
    assert err.key_path == expected.key_path
    assert expected.message in err.message
    assert str(err).startswith(where(path, expected))
    assert expected.message in str(err)
    assert SECRET_MARK not in str(err)


# One file refused by the TOML parser, one by the schema, one by a rule across sections.
CLI_SAMPLES = ("toml-duplicate-key", "value-priority-256", "semantic-duplicate-database-eid")


@pytest.mark.parametrize("name", CLI_SAMPLES)
def test_check_cli_prints_file_line_key_and_message(name: str) -> None:
    path = CORPUS / f"{name}.conf"
    expected = expectation(path)
    proc = subprocess.run(
        [sys.executable, "-m", "lispd", "--check", "-c", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert f"{where(path, expected)}" in proc.stderr
    assert expected.message in proc.stderr


# -- syntax errors the corpus does not show -------------------------------------------------------

# (text, line, key path, part of the message)
# fmt: off
SYNTAX_CASES = [
    ("a = 1\n[a]\n", 2, "a", "defined both as a key and as a table, first on line 1"),
    ("x = { a = 1, a = 2 }\n", 1, "x.a", "key defined twice, first on line 1"),
    ("[d]\nr.s = 1\nr.s = 2\n", 3, "d.r.s", "key defined twice, first on line 2"),
    # An array of arrays with a missing comma: a line starting with '[' is no table header here.
    ("a = [\n  [1, 2]\n  [3, 4],\n]\n", 3, "", "a ',' between elements or the closing ']'"),
    ("a = { b = 1 c = 2 }\n", 1, "", "a ',' between key/value pairs or the closing '}'"),
    ('x = 1\nk = """abc\nb = 1\n', 2, "", "end of file inside the string opened on this line"),
    ("a = { b = 1,", 1, "", "end of file inside the inline table opened on this line"),
    ("a = [2001:db8::1]\n", 1, "", "IP addresses and prefixes are strings"),
]
# fmt: on


@pytest.mark.parametrize(("text", "line", "key_path", "fragment"), SYNTAX_CASES)
def test_syntax_errors(text: str, line: int, key_path: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "t.conf")
    err = info.value
    assert (err.line, err.key_path) == (line, key_path)
    assert err.message.startswith("TOML syntax error: ")
    assert fragment in err.message


@pytest.mark.parametrize(
    "broken",
    ["key = 's3cret-ms\n", 'key = """s3cret-ms\n', "key = s3cret-ms\n", "key = s3cret.ms\n"],
)
def test_syntax_hints_never_show_the_text(broken: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config('[[map-server]]\naddress = "192.0.2.10"\n' + broken, "t.conf")
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("role", "fragment"),
    [("MS", "did you mean 'map-server'?"), ("pxtr", 'write "pitr", "petr"')],
)
def test_role_hints(role: str, fragment: str) -> None:
    text = f'[daemon]\nroles = ["{role}"]\n[underlay]\nrlocs = ["192.0.2.2"]\n'
    with pytest.raises(ConfigError) as info:
        parse_config(text, "t.conf")
    assert info.value.key_path == "daemon.roles[0]"
    assert fragment in info.value.message
