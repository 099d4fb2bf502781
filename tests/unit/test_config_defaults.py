"""Every default of lispd.conf is written once, in lispd.config.model: the schema takes a missing
key's value from there, the control machines take their settings' defaults from there, and
each ``Default:`` of the lispd.conf.example* files is held to it here."""

from __future__ import annotations

import inspect
import re
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lispd.config import ROOT, parse_config
from lispd.config.locate import key_lines
from lispd.config.model import (
    DaemonConfig,
    DataplaneConfig,
    LimitsConfig,
    MappingSystemConfig,
    MapServerRef,
    NatTraversalConfig,
    ProbingConfig,
    RegistrationConfig,
    ResolverConfig,
    Rloc,
    RtrConfig,
    SitePrefix,
    TunConfig,
    UnderlayConfig,
    field_default,
)
from lispd.config.schema import NO_DEFAULT, Key, ListOf, Table
from lispd.control.mapresolver import MapResolver
from lispd.control.mapserver import MapServer, SitePrefixSpec
from lispd.control.nat import NatClient
from lispd.control.prober import ProbeSettings
from lispd.control.registrar import MapServerTarget, Registrar
from lispd.control.resolver import ResolverSettings
from lispd.control.responder import MapReplier
from lispd.node.build import build_control_plane, build_database
from tests.unit.test_config import EXAMPLES

# Only what each section requires: every optional key and table left out.
XTR = """\
[daemon]
roles = ["itr", "etr"]
[underlay]
rlocs = ["192.0.2.1"]
[[database-mapping]]
eid-prefix = "198.51.100.0/28"
rlocs = [{ address = "192.0.2.1" }]
[[map-server]]
address = "192.0.2.10"
key = "k"
[[map-resolver]]
address = "192.0.2.10"
[[petr]]
address = "192.0.2.30"
[nat-traversal]
enabled = true
"""

MSMR = """\
[daemon]
roles = ["map-server", "map-resolver"]
[underlay]
rlocs = ["192.0.2.10"]
[[site]]
name = "a"
key = "k"
eid-prefixes = [{ eid-prefix = "198.51.100.0/28" }]
"""


def _tables(table: Table = ROOT) -> Iterator[Table]:
    """``table`` and every table below it."""
    yield table
    for key in table.keys:
        spec = key.spec
        while isinstance(spec, ListOf):
            spec = spec.item
        if isinstance(spec, Table):
            yield from _tables(spec)


def _has_default(table: Table, key: Key) -> bool:
    """Whether a file may leave ``key`` out and get a value other than "absent" (None)."""
    if table is ROOT or key.required or isinstance(key.spec, Table):
        return False
    return key.default_factory is not None or table.default(key) is not None


# -- the schema -----------------------------------------------------------------------------------


def test_the_schema_writes_no_default_its_model_has() -> None:
    """A key's own ``default`` is only for what the model cannot say: None for "absent" (the
    build tells an elp left out from one given), or the value of a field that has no default
    (``tun.name``, ``instance-id``); never a second copy of a model field's default."""
    for table in _tables():
        if table.model is None:
            continue
        for key in table.keys:
            if key.default is NO_DEFAULT or key.default is None:
                continue
            with pytest.raises(LookupError):
                field_default(table.model, key.attr)


def test_a_file_without_the_optional_keys_gets_the_models_defaults() -> None:
    xtr, msmr = parse_config(XTR), parse_config(MSMR)
    for config in (xtr, msmr):
        assert config.registration == RegistrationConfig()
        assert config.resolver == ResolverConfig()
        assert config.probing == ProbingConfig()
        assert config.mapping_system == MappingSystemConfig()
        assert config.rtr == RtrConfig()
        assert config.limits == LimitsConfig()
        assert config.dataplane == DataplaneConfig()
        for name in ("log_level", "control_socket"):
            assert getattr(config.daemon, name) == field_default(DaemonConfig, name)
        for name in ("route_table", "rule_priority", "route_protocol"):
            assert getattr(config.tun, name) == field_default(TunConfig, name)
        assert config.underlay.mtu == field_default(UnderlayConfig, "mtu")
    assert xtr.nat_traversal.info_interval == NatTraversalConfig().info_interval
    assert xtr.nat_traversal.keepalive_interval == NatTraversalConfig().keepalive_interval
    for rloc in (*xtr.database[0].rlocs, *xtr.petrs):
        assert (rloc.priority, rloc.weight) == (
            field_default(Rloc, "priority"),
            field_default(Rloc, "weight"),
        )
    [ms] = xtr.map_servers
    assert ms.key_id == field_default(MapServerRef, "key_id")
    assert ms.proxy_reply == field_default(MapServerRef, "proxy_reply")
    [prefix] = msmr.sites[0].prefixes
    assert prefix.accept_more_specifics == field_default(SitePrefix, "accept_more_specifics")


# -- the control machines -------------------------------------------------------------------------

_RESOLVER_FIELDS = {"max_ttl_minutes": "max_ttl"}  # ResolverSettings -> ResolverConfig names


def test_control_settings_built_from_a_file_without_the_sections_are_the_models() -> None:
    xtr = parse_config(XTR)
    plane = build_control_plane(xtr, build_database(xtr), lambda: 1)
    assert plane.resolver is not None and plane.prober is not None
    assert plane.registrar is not None and plane.replier is not None and plane.nat is not None
    settings = plane.resolver.settings
    assert settings == ResolverSettings()
    for name in ResolverSettings.__dataclass_fields__:
        model_name = _RESOLVER_FIELDS.get(name, name)
        assert getattr(settings, name) == getattr(ResolverConfig(), model_name), name
    assert plane.prober.settings == ProbeSettings()
    for name in ("interval", "timeout", "down_after", "max_per_second"):
        assert getattr(plane.prober.settings, name) == getattr(ProbingConfig(), name), name
    assert plane.prober.settings.max_rlocs == LimitsConfig().probed_rlocs
    assert plane.registrar.interval == RegistrationConfig().interval
    assert plane.registrar.want_map_notify == RegistrationConfig().want_map_notify
    assert plane.replier.record_ttl == RegistrationConfig().record_ttl
    assert plane.nat.info_interval == NatTraversalConfig().info_interval
    assert plane.nat.keepalive_interval == NatTraversalConfig().keepalive_interval

    msmr = parse_config(MSMR)
    plane = build_control_plane(msmr, build_database(msmr), lambda: 1)
    assert plane.map_server is not None and plane.map_resolver is not None
    assert plane.map_server.registration_timeout == MappingSystemConfig().registration_timeout
    assert plane.map_server.max_site_registrations == LimitsConfig().site_registrations
    assert plane.map_resolver.negative_ttl_minutes == MappingSystemConfig().negative_ttl


def _own_default(machine: Callable[..., Any], name: str) -> Any:
    """The default of ``name``: a dataclass field, or a parameter of ``machine``."""
    if hasattr(machine, "__dataclass_fields__"):
        return field_default(machine, name)  # type: ignore[arg-type]
    return inspect.signature(machine).parameters[name].default


# (control machine or settings, its name, the model, the model's name)
CONTROL_DEFAULTS: list[tuple[Callable[..., Any], str, type[Any], str]] = [
    *(
        (ResolverSettings, name, ResolverConfig, _RESOLVER_FIELDS.get(name, name))
        for name in ResolverSettings.__dataclass_fields__
    ),
    *(
        (ProbeSettings, name, ProbingConfig, name)
        for name in ("interval", "timeout", "down_after", "max_per_second")
    ),
    (ProbeSettings, "max_rlocs", LimitsConfig, "probed_rlocs"),
    (Registrar, "interval", RegistrationConfig, "interval"),
    (Registrar, "want_map_notify", RegistrationConfig, "want_map_notify"),
    (MapReplier, "record_ttl", RegistrationConfig, "record_ttl"),
    (MapServerTarget, "key_id", MapServerRef, "key_id"),
    (MapServerTarget, "proxy_reply", MapServerRef, "proxy_reply"),
    (NatClient, "info_interval", NatTraversalConfig, "info_interval"),
    (NatClient, "keepalive_interval", NatTraversalConfig, "keepalive_interval"),
    (MapServer, "registration_timeout", MappingSystemConfig, "registration_timeout"),
    (MapServer, "max_site_registrations", LimitsConfig, "site_registrations"),
    (MapResolver, "negative_ttl_minutes", MappingSystemConfig, "negative_ttl"),
    (SitePrefixSpec, "accept_more_specifics", SitePrefix, "accept_more_specifics"),
]


@pytest.mark.parametrize(
    ("machine", "name", "model", "model_name"),
    CONTROL_DEFAULTS,
    ids=[f"{m.__name__}.{n}" for m, n, _, _ in CONTROL_DEFAULTS],
)
def test_a_control_machines_own_default_is_the_models(
    machine: Callable[..., Any], name: str, model: type[Any], model_name: str
) -> None:
    """Built without the configuration (as the unit tests do), a machine behaves as the
    daemon would without the key in its file."""
    assert _own_default(machine, name) == field_default(model, model_name)


# -- the examples ---------------------------------------------------------------------------------

DEFAULT = re.compile(r"\bDefault: (.*)")
ITEM = re.compile(r"#\s{2,}([a-z][a-z-]*)\s+- ")
"""A line of a comment describing the keys of an inline table: ``#   priority - 0..255...``."""


def _schema_key(path: tuple[str, ...]) -> tuple[Table, Key]:
    """The table and the key a generic key path (no array indexes) names."""
    table, key = ROOT, None
    for name in path:
        if key is not None:
            spec = key.spec
            while isinstance(spec, ListOf):
                spec = spec.item
            assert isinstance(spec, Table), path
            table = spec
        key = next((k for k in table.keys if k.name == name), None)
        assert key is not None, path
    assert key is not None
    return table, key


def _toml_value(text: str) -> tuple[bool, Any]:
    """``(True, value)`` for the longest start of ``text`` that is a TOML value, else
    ``(False, None)``: ``'1.0. An integer'`` -> 1.0, ``'the host name.'`` -> nothing."""
    for end in range(len(text), 0, -1):
        try:
            return True, tomllib.loads(f"v = {text[:end]}")["v"]
        except tomllib.TOMLDecodeError:
            continue
    return False, None


def documented_defaults(example: Path) -> list[tuple[int, tuple[str, ...], str]]:
    """Every ``Default: ...`` of ``example``: its line, the generic key path it documents and
    the text after ``Default:``.

    A ``Default:`` documents the key below its comment block (or the key whose line it ends);
    in a block that describes the keys of an inline table (``#   name - ...`` lines), the key
    of the item it is in.  One the test cannot place fails it.
    """
    text = example.read_text()
    lines = text.splitlines()
    at_line: dict[int, tuple[str | int, ...]] = {}
    for path, number in key_lines(text).items():  # the outermost key written on each line
        if isinstance(path[-1], str) and len(path) < len(at_line.get(number, (*path, 0))):
            at_line[number] = path
    found = []
    for index, line in enumerate(lines):
        match = DEFAULT.search(line)
        if match is None:
            continue
        where = f"{example.name}:{index + 1}"
        below = index
        if line.lstrip().startswith("#"):
            while below < len(lines) and lines[below].lstrip().startswith("#"):
                below += 1
            assert below < len(lines) and lines[below].strip(), f"{where}: no key below"
        assert not lines[below].lstrip().startswith("["), f"{where}: documents a table"
        key_path = at_line[below + 1]
        generic = tuple(part for part in key_path if isinstance(part, str))
        sub_keys = {p[-1] for p in _key_paths_below(generic)}
        if sub_keys:
            start = index
            while start > 0 and lines[start - 1].lstrip().startswith("#"):
                start -= 1
            items = [ITEM.match(lines[i]) for i in range(start, index + 1)]
            names = [m.group(1) for m in items if m is not None]
            assert names, f"{where}: which key of {'.'.join(generic)}?"
            assert names[-1] in sub_keys, f"{where}: {names[-1]} is no key of {generic}"
            generic = (*generic, names[-1])
        found.append((index + 1, generic, match.group(1)))
    return found


def _key_paths_below(path: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The keys of the inline tables a key holds (none for a plain value)."""
    _table, key = _schema_key(path)
    spec = key.spec
    while isinstance(spec, ListOf):
        spec = spec.item
    return [(*path, k.name) for k in spec.keys] if isinstance(spec, Table) else []


def _same(documented: Any, default: Any) -> bool:
    """A TOML value equals a model default: a boolean only a boolean, a number any number,
    an array a tuple (of addresses or strings, compared as text)."""
    if isinstance(default, bool) or isinstance(documented, bool):
        return documented is default
    if isinstance(default, tuple):
        return isinstance(documented, list) and [str(x) for x in default] == documented
    if isinstance(default, int | float):
        return isinstance(documented, int | float) and documented == default
    return bool(documented == default)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_every_documented_default_is_the_models(example: Path) -> None:
    documented = documented_defaults(example)
    assert documented, example.name
    for line, path, text in documented:
        table, key = _schema_key(path)
        where = f"{example.name}:{line}: {'.'.join(path)}"
        literal, value = _toml_value(text)
        if not literal:
            # Prose ("the host name", "none - ...") only where there is no value to write.
            assert key.default_factory is not None or table.default(key) is None, where
            continue
        assert key.default_factory is None, f"{where}: computed, not {text!r}"
        default = table.default(key)
        assert _same(value, default), f"{where}: documented {value!r}, the model has {default!r}"


def test_every_default_is_documented() -> None:
    """Once among the examples (a key shared by two tables, like an RLOC's priority in
    [[database-mapping]] and [[petr]], counts once)."""
    documented = {
        id(_schema_key(path)[1])
        for example in EXAMPLES
        for _, path, _ in documented_defaults(example)
    }
    missing = [
        f"{key.name} ({table.model.__name__ if table.model else 'table'})"
        for table in _tables()
        for key in table.keys
        if _has_default(table, key) and id(key) not in documented
    ]
    assert missing == []


def test_the_checks_see_a_drifted_example(tmp_path: Path) -> None:
    """The test above fails for an example whose ``Default:`` is not the model's."""
    drifted = tmp_path / "lispd.conf.example"
    drifted.write_text(
        "[resolver]\n# Map-Request retransmissions, 0..10. Default: 4.\nretries = 3\n"
        "[rtr]\n# Bindings. Default: 100000.\nmax-nat-bindings = 1\n"
    )
    [(line, path, text), (_, rtr_path, rtr_text)] = documented_defaults(drifted)
    assert (line, path, text) == (2, ("resolver", "retries"), "4.")
    table, key = _schema_key(path)
    assert not _same(_toml_value(text)[1], table.default(key))
    table, key = _schema_key(rtr_path)
    assert _same(_toml_value(rtr_text)[1], table.default(key))
