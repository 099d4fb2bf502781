"""Declarative schema primitives: what a key may hold, checked and converted in one walk.

A schema is a tree of specs. :class:`Table` holds :class:`Key` entries (kebab-case names as in
the file), each with a value spec: :class:`Int`, :class:`Number`, :class:`IntChoice`,
:class:`Bool`, :class:`Str`, :class:`Secret`, :class:`Address`, :class:`Endpoint`,
:class:`Prefix`, :class:`ListOf` or another :class:`Table`. ``spec.check(value, path, ctx)``
validates a value freshly parsed by :mod:`tomllib` and returns its converted form; a table with a
``build`` function turns its checked values into a model object, so rules that involve several
keys of one table live next to the table.

The same tree answers "which keys exist" (:func:`key_paths`), which the tests use to prove that
the two ``lispd.conf.example*`` files document every key.
"""

from __future__ import annotations

import datetime
import difflib
import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

from lispd.config.errors import ConfigError
from lispd.config.locate import KeyPath, key_lines
from lispd.config.model import IPAddress, IPNetwork, field_default

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_HOST_NAME = re.compile(r"(?=.*[g-zG-Z])[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?")
"""A DNS name: labels with at least one letter that is not a hex digit (so no IPv6 typo)."""
_LENGTH = re.compile(r"[0-9]{1,3}")


def format_key_path(path: KeyPath) -> str:
    """Render a key path the way an operator would write it: ``a[1].b[0].c``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = part if _BARE_KEY.fullmatch(part) else f'"{part}"'
            text += f".{name}" if text else name
    return text


class Context:
    """One parse: the file name and source text, used to report errors with a line."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        self._lines: dict[KeyPath, int] | None = None

    def line_of(self, path: KeyPath, *, enclosing: bool = False) -> int | None:
        """The line of ``path`` in the source; with ``enclosing``, of its nearest ancestor."""
        if self._lines is None:
            self._lines = key_lines(self.text)
        while path:
            line = self._lines.get(path)
            if line is not None or not enclosing:
                return line
            path = path[:-1]
        return None

    def fail(self, path: KeyPath, message: str, *, at: KeyPath | None = None) -> NoReturn:
        """Raise a :class:`ConfigError` for ``path``.

        The line is the one of ``at`` (default: ``path`` itself); pass the enclosing table as
        ``at`` for errors about something missing from it.
        """
        line = self.line_of(path) if at is None else self.line_of(at, enclosing=True)
        raise ConfigError(self.path, line, format_key_path(path), message)


class Spec(Protocol):
    """What every value spec provides."""

    def check(self, value: object, path: KeyPath, ctx: Context) -> Any:
        """Validate ``value`` found at ``path``; return it converted, or fail through ``ctx``."""
        ...


def toml_type(value: object) -> str:
    """The TOML name of the type of a value produced by :mod:`tomllib`."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime.date | datetime.time):
        return "a date-time"
    return type(value).__name__


def _suggest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    """``"; did you mean 'x'?"`` when a choice is close to ``word``, else ``""``."""
    candidates = [c for c in choices if c == word.replace("_", "-").lower()]
    candidates = candidates or difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean '{candidates[0]}'?" if candidates else ""


@dataclass(frozen=True, slots=True)
class Int:
    """An integer from ``low`` to ``high`` inclusive (never a boolean nor a float)."""

    low: int
    high: int

    def check(self, value: object, path: KeyPath, ctx: Context) -> int:
        """Validate an integer in range."""
        if isinstance(value, bool) or not isinstance(value, int):
            ctx.fail(path, f"must be an integer, not {toml_type(value)}")
        if not self.low <= value <= self.high:
            ctx.fail(path, f"must be from {self.low} to {self.high}, got {value}")
        return value


def _number_text(value: float) -> str:
    """``60``, ``0.05``: a bound as an operator would write it."""
    return f"{value:g}"


@dataclass(frozen=True, slots=True)
class Number:
    """A number from ``low`` to ``high`` inclusive, integer or float, returned as a float.

    Booleans, NaN and infinities are refused (the last two by the range check).
    """

    low: float
    high: float

    def check(self, value: object, path: KeyPath, ctx: Context) -> float:
        """Validate a number in range."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            ctx.fail(path, f"must be a number, not {toml_type(value)}")
        if not self.low <= value <= self.high:
            ctx.fail(
                path,
                f"must be from {_number_text(self.low)} to {_number_text(self.high)}, "
                f"got {_number_text(value)}",
            )
        return float(value)


@dataclass(frozen=True, slots=True)
class IntChoice:
    """An integer that is one of ``choices``: (value, meaning) pairs, listed in errors."""

    choices: tuple[tuple[int, str], ...]

    def check(self, value: object, path: KeyPath, ctx: Context) -> int:
        """Validate an integer among the choices."""
        if isinstance(value, bool) or not isinstance(value, int):
            ctx.fail(path, f"must be an integer, not {toml_type(value)}")
        if value not in (choice for choice, _ in self.choices):
            listed = [f"{choice} ({meaning})" for choice, meaning in self.choices]
            ctx.fail(path, f"must be {' or '.join(listed)}, got {value}")
        return value


@dataclass(frozen=True, slots=True)
class Bool:
    """``true`` or ``false``."""

    def check(self, value: object, path: KeyPath, ctx: Context) -> bool:
        """Validate a boolean."""
        if not isinstance(value, bool):
            ctx.fail(path, f"must be true or false, not {toml_type(value)}")
        return value


@dataclass(frozen=True, slots=True)
class Secret:
    """A non-empty string holding a secret, returned UTF-8 encoded.

    Its errors never quote the value: they name the key path and the problem only.
    """

    def check(self, value: object, path: KeyPath, ctx: Context) -> bytes:
        """Validate a secret string; return its UTF-8 bytes."""
        if not isinstance(value, str):
            ctx.fail(path, f"must be a string, not {toml_type(value)}")
        if not value:
            ctx.fail(path, "must not be empty")
        return value.encode("utf-8")


@dataclass(frozen=True, slots=True)
class Str:
    """A string, optionally one of ``choices`` and/or accepted by ``validate``.

    ``validate`` returns an error message for a bad value, ``None`` for a good one. ``hints``
    are (value, hint) pairs for values that are not among the choices but that an operator may
    well write: the hint (compared in lower case) replaces the "did you mean" guess.
    ``booleans`` are (boolean, value) pairs: ``true``/``false`` accepted for a string value (a
    key that used to be a boolean), returned as that value.
    """

    choices: tuple[str, ...] | None = None
    validate: Callable[[str], str | None] | None = None
    hints: tuple[tuple[str, str], ...] = ()
    booleans: tuple[tuple[bool, str], ...] = ()

    def check(self, value: object, path: KeyPath, ctx: Context) -> str:
        """Validate a string."""
        if isinstance(value, bool) and self.booleans:
            for boolean, meaning in self.booleans:
                if value is boolean:
                    return meaning
        if not isinstance(value, str):
            if self.booleans and self.choices is not None:
                allowed = ", ".join(f'"{choice}"' for choice in self.choices)
                old = "/".join("true" if b else "false" for b, _ in self.booleans)
                ctx.fail(path, f"must be one of {allowed} (or {old}), not {toml_type(value)}")
            ctx.fail(path, f"must be a string, not {toml_type(value)}")
        if self.choices is not None and value not in self.choices:
            hint = dict(self.hints).get(value.lower())
            ctx.fail(
                path,
                f"{value!r} is not one of {', '.join(self.choices)}"
                + (f"; {hint}" if hint else _suggest(value, self.choices)),
            )
        if self.validate is not None:
            problem = self.validate(value)
            if problem:
                ctx.fail(path, problem)
        return value


def _address_problem(address: IPAddress) -> str | None:
    """Why ``address`` cannot be a unicast RLOC, or ``None`` when it can."""
    if address.is_unspecified:
        return f"{address} is the unspecified address, not a usable RLOC"
    if address.is_multicast:
        return f"{address} is a multicast address, not a usable RLOC"
    if address == ipaddress.IPv4Address("255.255.255.255"):
        return f"{address} is the broadcast address, not a usable RLOC"
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return f"{address}: zone indexes (%{address.scope_id}) are not supported"
        if address.ipv4_mapped is not None:
            return f"{address} is IPv4-mapped; write it as {address.ipv4_mapped}"
    return None


@dataclass(frozen=True, slots=True)
class Address:
    """A unicast IPv4 or IPv6 address as a string, converted to an :mod:`ipaddress` object."""

    def check(self, value: object, path: KeyPath, ctx: Context) -> IPAddress:
        """Validate and convert an address."""
        if not isinstance(value, str):
            ctx.fail(path, f"must be an IP address string, not {toml_type(value)}")
        try:
            address = ipaddress.ip_address(value.strip())
        except ValueError:
            if "/" in value:
                ctx.fail(path, f"{value!r} is a prefix; give just the address")
            if _HOST_NAME.fullmatch(value.strip()):
                ctx.fail(path, f"{value!r} is not an IP address (host names are not resolved)")
            ctx.fail(path, f"{value!r} is not a valid IPv4 or IPv6 address")
        problem = _address_problem(address)
        if problem:
            ctx.fail(path, problem)
        return address


_PORT = re.compile(r"[0-9]{1,5}")


def _is_ipv6(text: str) -> bool:
    """Whether ``text`` is an IPv6 address."""
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A listening ``address:port``, an IPv6 address in brackets (``[::1]:9342``), converted
    to an ``(address, port)`` pair.

    The address is an IP literal (names are not resolved); an unspecified one (``0.0.0.0``,
    ``[::]``) stands for every address of its family; multicast, broadcast and zone indexes are
    refused. The port is 1..65535.
    """

    example_port: int = 9342
    """The port shown in the examples of error messages."""

    def check(self, value: object, path: KeyPath, ctx: Context) -> tuple[IPAddress, int]:
        """Validate and convert ``address:port``."""
        if not isinstance(value, str):
            ctx.fail(
                path,
                f"must be an 'address:port' string like '127.0.0.1:{self.example_port}', "
                f"not {toml_type(value)}",
            )
        text = value.strip()
        host, port_text = self._split(value, text, path, ctx)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            ctx.fail(
                path, f"{value!r}: {host!r} is not an IP address (host names are not resolved)"
            )
        bracketed = text.startswith("[")
        if bracketed and address.version == 4:
            ctx.fail(path, f"{value!r}: brackets are for IPv6 only; write '{host}:{port_text}'")
        if address.version == 6 and not bracketed:
            ctx.fail(path, f"{value!r}: write an IPv6 address in brackets: '[{host}]:{port_text}'")
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            ctx.fail(path, f"{value!r}: zone indexes (%{address.scope_id}) are not supported")
        if address.is_multicast or address == ipaddress.IPv4Address("255.255.255.255"):
            ctx.fail(path, f"{value!r}: {address} is not a unicast address to listen on")
        if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
            ctx.fail(path, f"{value!r}: the port must be from 1 to 65535, got {port_text!r}")
        return address, int(port_text)

    def _split(self, value: str, text: str, path: KeyPath, ctx: Context) -> tuple[str, str]:
        """``(host, port text)`` of ``text``, or fail with a hint."""
        if text.startswith("["):
            host, bracket, rest = text[1:].partition("]")
            if not bracket:
                ctx.fail(path, f"{value!r} has no closing ']'")
            if not rest.startswith(":"):
                ctx.fail(path, f"{value!r} has no port; write e.g. '[{host}]:{self.example_port}'")
            return host, rest[1:]
        try:
            whole = ipaddress.ip_address(text)
        except ValueError:
            whole = None
        host, colon, port_text = text.rpartition(":")
        if whole is not None:
            if whole.version == 6 and _PORT.fullmatch(port_text) and _is_ipv6(host):
                ctx.fail(
                    path,
                    f"{value!r} is ambiguous: write an IPv6 address in brackets, "
                    f"e.g. '[{host}]:{port_text}'",
                )
            written = f"[{whole}]" if whole.version == 6 else str(whole)
            ctx.fail(path, f"{value!r} has no port; write e.g. '{written}:{self.example_port}'")
        if not colon:
            ctx.fail(
                path,
                f"{value!r} is not 'address:port'; write e.g. '127.0.0.1:{self.example_port}'",
            )
        return host, port_text


def _mask_length(address: IPAddress, mask: str) -> int | None:
    """The prefix length a dotted IPv4 netmask (or host mask) stands for, else ``None``."""
    if address.version != 4 or "." not in mask:
        return None
    try:
        return ipaddress.ip_network(f"{address}/{mask}", strict=False).prefixlen
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Prefix:
    """An ``address/length`` IPv4 or IPv6 prefix without host bits set."""

    def check(self, value: object, path: KeyPath, ctx: Context) -> IPNetwork:
        """Validate and convert a prefix."""
        if not isinstance(value, str):
            ctx.fail(
                path, f"must be a prefix string like '198.51.100.0/28', not {toml_type(value)}"
            )
        address_text, slash, length_text = value.strip().partition("/")
        try:
            address = ipaddress.ip_address(address_text)
        except ValueError:
            ctx.fail(path, f"{value!r} is not a valid IPv4 or IPv6 prefix")
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            ctx.fail(path, f"{value!r}: zone indexes are not supported in prefixes")
        if not slash:
            example = f"{address}/{address.max_prefixlen}"
            ctx.fail(path, f"{value!r} has no length; write e.g. '{example}'")
        if not _LENGTH.fullmatch(length_text):
            mask_length = _mask_length(address, length_text)
            if mask_length is not None:
                ctx.fail(
                    path,
                    f"{value!r}: {length_text!r} is a mask; write the prefix length: "
                    f"'{address}/{mask_length}'",
                )
            ctx.fail(path, f"{value!r}: {length_text!r} is not a prefix length")
        length = int(length_text)
        if length > address.max_prefixlen:
            ctx.fail(
                path,
                f"{value!r}: length {length} is too long for IPv{address.version} "
                f"(at most {address.max_prefixlen})",
            )
        network = ipaddress.ip_network((address, length), strict=False)
        if network.network_address != address:
            ctx.fail(path, f"{value!r} has host bits set; did you mean '{network}'?")
        return network


@dataclass(frozen=True, slots=True)
class ListOf:
    """A TOML array of ``item`` values, converted to a tuple.

    ``unique`` rejects two elements whose converted values are equal.
    """

    item: Spec
    min_len: int = 0
    unique: bool = False

    def check(self, value: object, path: KeyPath, ctx: Context) -> tuple[Any, ...]:
        """Validate every element; return them as a tuple."""
        if not isinstance(value, list):
            hint = ""
            if isinstance(value, dict) and isinstance(self.item, Table):
                name = format_key_path(path)
                hint = f" (write [[{name}]] headers)" if len(path) == 1 else " ([ { ... }, ... ])"
            ctx.fail(path, f"must be an array{hint}, not {toml_type(value)}")
        if len(value) < self.min_len:
            ctx.fail(path, f"needs at least {self.min_len} element{'s' * (self.min_len > 1)}")
        items: list[Any] = []
        for index, element in enumerate(value):
            converted = self.item.check(element, (*path, index), ctx)
            if self.unique and converted in items:
                first = items.index(converted)
                ctx.fail((*path, index), f"duplicate of {format_key_path((*path, first))}")
            items.append(converted)
        return tuple(items)


class _NoDefault:
    """The type of :data:`NO_DEFAULT`."""

    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()
"""``Key.default`` when the key gives none itself: then it is its table's model's (or None)."""


@dataclass(frozen=True, slots=True)
class Key:
    """One key of a table: its file name (kebab-case), value spec and default.

    A missing key is an error when ``required``; otherwise it takes the result of
    ``default_factory()``, else ``default``, else (no ``default`` given) the default of the
    field of the same name in its table's ``model``, else None. A missing optional
    :class:`Table` is checked as an empty table, so its own defaults apply.

    Defaults are written in :mod:`lispd.config.model`: give ``default`` here only for a key
    whose model field has none (``default=None`` for "absent", or a ``DEFAULT_*`` constant).
    """

    name: str
    spec: Spec
    required: bool = False
    default: Any = NO_DEFAULT
    default_factory: Callable[[], Any] | None = None

    @property
    def attr(self) -> str:
        """The Python name of the key: ``log-level`` -> ``log_level``."""
        return self.name.replace("-", "_")


Builder = Callable[[dict[str, Any], KeyPath, Context], Any]


@dataclass(frozen=True, slots=True)
class Table:
    """A TOML table with a closed set of keys; anything else in it is an error.

    Its checked values (by :attr:`Key.attr`, missing optional keys filled in) go to ``build``,
    which returns the model object; without ``build`` the dict itself is the result.

    ``model`` is the dataclass of :mod:`lispd.config.model` the table stands for: an optional
    key with no default of its own takes the default of the model's field of the same name
    (:attr:`Key.attr`), which must have one (checked when the table is declared).
    """

    keys: tuple[Key, ...]
    build: Builder | None = None
    model: type[Any] | None = None

    def __post_init__(self) -> None:
        for key in self.keys:
            if key.required or key.default_factory is not None or isinstance(key.spec, Table):
                continue
            self.default(key)  # a LookupError now, not when a file leaves the key out

    def default(self, key: Key) -> Any:
        """What a missing optional ``key`` of this table stands for (see :class:`Key`)."""
        if key.default_factory is not None:
            return key.default_factory()
        if key.default is not NO_DEFAULT:
            return key.default
        if self.model is not None:
            return field_default(self.model, key.attr)
        return None

    def check(self, value: object, path: KeyPath, ctx: Context) -> Any:
        """Validate a table, then build it."""
        if not isinstance(value, dict):
            ctx.fail(path, f"must be a table, not {toml_type(value)}")
        names = tuple(key.name for key in self.keys)
        for name in value:
            if name not in names:
                where = f"in {format_key_path(path)}" if path else "at the top level"
                ctx.fail(
                    (*path, name),
                    f"unknown key {name!r}{_suggest(name, names)} "
                    f"(allowed {where}: {', '.join(names)})",
                )
        values: dict[str, Any] = {}
        for key in self.keys:
            if key.name in value:
                values[key.attr] = key.spec.check(value[key.name], (*path, key.name), ctx)
            elif key.required:
                what = "table" if isinstance(key.spec, Table) else "key"
                ctx.fail((*path, key.name), f"required {what} is missing", at=path)
            elif key.default_factory is None and isinstance(key.spec, Table):
                values[key.attr] = key.spec.check({}, (*path, key.name), ctx)
            else:
                values[key.attr] = self.default(key)
        return self.build(values, path, ctx) if self.build is not None else values


def key_paths(table: Table, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every key path ``table`` accepts, array indexes left out.

    E.g. ``("daemon", "name")`` and ``("database-mapping", "rlocs", "priority")``; tables
    and arrays of tables are listed themselves and then their keys.
    """
    for key in table.keys:
        path = (*prefix, key.name)
        yield path
        spec = key.spec
        while isinstance(spec, ListOf):
            spec = spec.item
        if isinstance(spec, Table):
            yield from key_paths(spec, path)
