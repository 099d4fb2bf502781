"""Unit tests of lispd.config: lispd.conf parsing, validation, error positions and the example."""

from __future__ import annotations

import dataclasses
import ipaddress
import pickle
import socket
import tomllib
from pathlib import Path

import pytest

from lispd.config import (
    LOG_LEVELS,
    MAP_CACHE_ACTIONS,
    ROLES,
    ROOT,
    Config,
    ConfigError,
    Mapping,
    Rloc,
    key_paths,
    load_config,
    parse_config,
)
from lispd.config.locate import key_lines

EXAMPLE = Path(__file__).resolve().parents[2] / "lispd.conf.example"

DOC_RANGES = [
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
]

# Line numbers in the tests below count from this text:
#   1 [daemon]  2 roles  4 [underlay]  5 rlocs  7 [[database-mapping]]  8 eid-prefix  9 rlocs
BASE = """\
[daemon]
roles = ["itr", "etr"]

[underlay]
rlocs = ["192.0.2.2"]

[[database-mapping]]
eid-prefix = "198.51.100.0/28"
rlocs = [{ address = "192.0.2.2" }]
"""

DUAL = BASE.replace('rlocs = ["192.0.2.2"]', 'rlocs = ["192.0.2.2", "2001:db8:0:1::2"]')


def error_of(text: str) -> ConfigError:
    """The ConfigError that parsing ``text`` raises."""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.conf")
    return info.value


# -- the example ----------------------------------------------------------------------------------


def test_example_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.path == str(EXAMPLE)
    assert config.daemon.name == "xtr1"
    assert config.roles == {"itr", "etr"}
    assert config.tun.mtu == 1444
    assert config.rloc_v4 == ipaddress.ip_address("192.0.2.2")
    assert config.rloc_v6 == ipaddress.ip_address("2001:db8:0:1::2")
    assert len(config.database) >= 1
    assert any(m.is_negative for m in config.map_cache)
    assert any(not m.is_negative for m in config.map_cache)


def _document_paths(value: object, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every key path of a parsed TOML document, array indexes left out."""
    paths: set[tuple[str, ...]] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            paths.add((*prefix, key))
            paths |= _document_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for item in value:
            paths |= _document_paths(item, prefix)
    return paths


def test_example_uses_every_key() -> None:
    accepted = set(key_paths(ROOT))
    used = _document_paths(tomllib.loads(EXAMPLE.read_text()))
    assert accepted - used == set(), "keys missing from lispd.conf.example"
    assert used - accepted == set()
    # Sanity of the schema walk itself.
    assert ("daemon", "log-level") in accepted
    assert ("database-mapping", "rlocs", "weight") in accepted
    assert ("map-cache", "action") in accepted


def _comment_block(lines: list[str], lineno: int, direction: int) -> str:
    """The comment lines directly above (direction -1) or below (+1) 1-based ``lineno``."""
    block: list[str] = []
    index = lineno - 1 + direction
    while 0 <= index < len(lines) and lines[index].lstrip().startswith("#"):
        block.append(lines[index])
        index += direction
    return "\n".join(block)


def test_example_comments_every_key() -> None:
    text = EXAMPLE.read_text()
    lines = text.splitlines()
    positions = key_lines(text)
    first_line: dict[tuple[str, ...], tuple[tuple[str | int, ...], int]] = {}
    for path, line in sorted(positions.items(), key=lambda item: item[1]):
        if isinstance(path[-1], int):
            continue
        generic = tuple(part for part in path if isinstance(part, str))
        first_line.setdefault(generic, (path, line))
    for generic in key_paths(ROOT):
        path, line = first_line[generic]
        own = lines[line - 1]
        above = _comment_block(lines, line, -1)
        below = _comment_block(lines, line, +1)
        inline = any(isinstance(p, int) for p in path[2:])  # a key inside { ... }
        if inline:
            parent = path[: max(i for i, p in enumerate(path) if isinstance(p, int))]
            block = _comment_block(lines, positions[parent], -1)
            assert generic[-1] in block, f"{generic} not described above {parent}"
        elif generic in {("daemon",), ("tun",), ("underlay",)} or len(generic) == 1:
            assert above or below, f"table {generic} has no comment"
        else:
            assert above or "#" in own, f"{generic} (line {line}) has no comment"


def test_example_uses_documentation_addresses_only() -> None:
    config = load_config(EXAMPLE)
    addresses = list(config.underlay.rlocs)
    for mapping in config.database + config.map_cache:
        addresses.append(mapping.prefix)
        addresses += [rloc.address for rloc in mapping.rlocs]
    for item in addresses:
        network = ipaddress.ip_network(item)
        assert any(
            network.version == doc.version and network.subnet_of(doc)  # type: ignore[arg-type]
            for doc in DOC_RANGES
        ), f"{item} is not a documentation address"


# -- defaults -------------------------------------------------------------------------------------


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "testhost")
    config = parse_config(BASE + '[[map-cache]]\neid-prefix = "203.0.113.0/24"\naction = "drop"\n')
    assert config.path == "<string>"
    assert config.daemon.name == "testhost"
    assert config.daemon.log_level == "info"
    assert config.tun.name == "lisp0"
    assert config.tun.mtu == 1500 - 36
    assert config.underlay.mtu == 1500
    (local,) = config.database
    assert local == Mapping(
        instance_id=0,
        prefix=ipaddress.ip_network("198.51.100.0/28"),
        rlocs=(Rloc(ipaddress.ip_address("192.0.2.2"), priority=1, weight=100),),
    )
    (remote,) = config.map_cache
    assert remote.action == "drop" and remote.rlocs == () and remote.ttl is None


def test_map_cache_defaults() -> None:
    config = parse_config(
        BASE + '[[map-cache]]\neid-prefix = "198.51.100.16/28"\nrlocs = [{address = "192.0.2.6"}]\n'
    )
    (entry,) = config.map_cache
    assert entry.instance_id == 0 and entry.ttl is None and entry.action is None
    assert entry.rlocs == (Rloc(ipaddress.ip_address("192.0.2.6"), 1, 100),)


def test_all_values_given() -> None:
    config = parse_config(
        """\
[daemon]
name = "rtr-7.lab"
roles = ["rtr", "map-resolver", "map-server"]
log-level = "debug"
[tun]
name = "lisp-rtr"
mtu = 1300
[underlay]
rlocs = ["2001:db8:0:9::1"]
mtu = 1400
[[map-cache]]
eid-prefix = "2001:db8:100:2::/64"
instance-id = 16777214
rlocs = [{ address = "2001:db8:0:2::2", priority = 255, weight = 0 }]
ttl = 4294967295
"""
    )
    assert config.daemon.name == "rtr-7.lab"
    assert config.daemon.log_level == "debug"
    assert config.has_role("rtr") and config.has_role("map-server")
    assert not config.has_role("itr")
    assert config.tun.name == "lisp-rtr" and config.tun.mtu == 1300
    assert config.rloc_v4 is None
    assert config.map_cache[0].instance_id == 16777214
    assert config.map_cache[0].ttl == 4294967295
    assert config.map_cache[0].rlocs[0].priority == 255
    assert config.database == ()


@pytest.mark.parametrize("level", LOG_LEVELS)
def test_log_levels(level: str) -> None:
    config = parse_config(BASE.replace("[underlay]", f'log-level = "{level}"\n[underlay]'))
    assert config.daemon.log_level == level
    assert isinstance(config.daemon.logging_level, int)


def test_every_role_accepted() -> None:
    roles = ", ".join(f'"{role}"' for role in ROLES)
    config = parse_config(BASE.replace('roles = ["itr", "etr"]', f"roles = [{roles}]"))
    assert config.roles == frozenset(ROLES)


def test_weights_all_zero_are_fine() -> None:
    text = BASE.replace('{ address = "192.0.2.2" }', '{ address = "192.0.2.2", weight = 0 }')
    assert parse_config(text).database[0].rlocs[0].weight == 0


# -- MTU ------------------------------------------------------------------------------------------


def test_tun_mtu_default_ipv4_rlocs_only() -> None:
    assert parse_config(BASE).tun.mtu == 1464
    text = BASE.replace('rlocs = ["192.0.2.2"]', 'rlocs = ["192.0.2.2"]\nmtu = 9000')
    assert parse_config(text).tun.mtu == 9000 - 36
    text = BASE.replace('rlocs = ["192.0.2.2"]', 'rlocs = ["192.0.2.2"]\nmtu = 576')
    assert parse_config(text).tun.mtu == 540


def test_tun_mtu_default_with_an_ipv6_rloc() -> None:
    config = parse_config(DUAL)
    assert config.underlay.encap_overhead == 56
    assert config.tun.mtu == 1444
    v6_only = BASE.replace('["192.0.2.2"]', '["2001:db8:0:1::2"]').replace(
        '"192.0.2.2" }', '"2001:db8:0:1::2" }'
    )
    assert parse_config(v6_only).tun.mtu == 1444


def test_tun_mtu_given_is_kept() -> None:
    config = parse_config(BASE + "[tun]\nmtu = 9000\n")
    assert config.tun.mtu == 9000


def test_ipv6_underlay_needs_1280() -> None:
    err = error_of(DUAL.replace('"2001:db8:0:1::2"]', '"2001:db8:0:1::2"]\nmtu = 1279'))
    assert (err.key_path, err.line) == ("underlay.mtu", 6)
    assert "at least 1280" in err.message
    config = parse_config(DUAL.replace('"2001:db8:0:1::2"]', '"2001:db8:0:1::2"]\nmtu = 1280'))
    assert config.tun.mtu == 1280 - 56


def test_ipv6_eids_need_a_1280_tun() -> None:
    v6_site = BASE + '[[map-cache]]\neid-prefix = "2001:db8:100:2::/64"\naction = "drop"\n'
    err = error_of(v6_site + "[tun]\nmtu = 1279\n")
    assert (err.key_path, err.line) == ("tun.mtu", 14)
    # The default would be too small: the message says how to fix it.
    small = v6_site.replace('rlocs = ["192.0.2.2"]', 'rlocs = ["192.0.2.2"]\nmtu = 1300')
    err = error_of(small)
    assert err.key_path == "tun.mtu" and err.line is None
    assert "defaults to 1264" in err.message and "at least 1316" in err.message
    err = error_of(small + "[tun]\nname = 'lisp0'\n")
    assert err.line == 14  # the [tun] header, as tun.mtu itself is not in the file


# -- errors: syntax and file ----------------------------------------------------------------------


def test_syntax_error_line() -> None:
    err = error_of(BASE + "[tun]\nmtu = = 1400\n")
    assert err.line == 11
    assert err.key_path == ""
    assert err.message.startswith("TOML syntax error:")
    assert "column" in err.message
    assert str(err) == f"test.conf:11: {err.message}"


def test_syntax_error_at_end_of_file() -> None:
    err = error_of('[daemon]\nroles = ["itr",\n')
    assert err.line == 2
    assert "end of file" in err.message


def test_duplicate_key_is_a_syntax_error() -> None:
    err = error_of(BASE.replace("[underlay]", 'roles = ["etr"]\n[underlay]'))
    assert err.line == 4 and "TOML syntax error" in err.message


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.conf"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert info.value.line is None and info.value.path == str(missing)
    assert str(info.value) == f"{missing}: cannot read: No such file or directory"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.conf"
    path.write_bytes(BASE.encode() + b'[tun]\nname = "l\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.line == 11 and "UTF-8" in info.value.message


def test_load_config_from_file(tmp_path: Path) -> None:
    path = tmp_path / "lispd.conf"
    path.write_text(BASE)
    assert load_config(path) == parse_config(BASE)  # path is not part of equality
    assert load_config(str(path)).path == str(path)


# -- errors: unknown keys -------------------------------------------------------------------------


def test_unknown_top_level_key() -> None:
    err = error_of("colour = 1\n" + BASE)
    assert (err.key_path, err.line) == ("colour", 1)
    assert "unknown key 'colour'" in err.message
    assert "daemon, tun, underlay, database-mapping, map-cache" in err.message


def test_unknown_table() -> None:
    err = error_of(BASE + "\n[map-server]\naddress = '192.0.2.1'\n")
    assert (err.key_path, err.line) == ("map-server", 11)


def test_unknown_key_in_table() -> None:
    err = error_of(BASE.replace("roles =", 'log_level = "info"\nroles ='))
    assert (err.key_path, err.line) == ("daemon.log_level", 2)
    assert "did you mean 'log-level'?" in err.message
    assert "allowed in daemon: name, roles, log-level" in err.message
    assert str(err).startswith("test.conf:2: daemon.log_level: unknown key 'log_level'")


def test_unknown_key_in_inline_rloc_table() -> None:
    err = error_of(BASE.replace('"192.0.2.2" }', '"192.0.2.2", prio = 2 }'))
    assert (err.key_path, err.line) == ("database-mapping[0].rlocs[0].prio", 9)
    assert "did you mean 'priority'?" in err.message
    assert "address, priority, weight" in err.message


def test_unknown_key_in_second_array_table() -> None:
    text = (
        BASE
        + '\n[[database-mapping]]\neid-prefix = "198.51.100.32/28"\n'
        + 'rlocs = [{ address = "192.0.2.2" }]\nttl = 10\n'
    )
    err = error_of(text)
    assert (err.key_path, err.line) == ("database-mapping[1].ttl", 14)


# -- errors: types, ranges, values ----------------------------------------------------------------

# (replace this, with that, expected key path, expected line, fragment of the message)
# fmt: off
CASES = [
    ('roles = ["itr", "etr"]', "roles = []", "daemon.roles", 2, "at least 1 element"),
    ('roles = ["itr", "etr"]', 'roles = "itr"', "daemon.roles", 2, "must be an array"),
    ('roles = ["itr", "etr"]', 'roles = ["itr", "xtr"]', "daemon.roles[1]", 2, "'xtr' is not"),
    ('roles = ["itr", "etr"]', 'roles = ["etr", "etr"]', "daemon.roles[1]", 2, "duplicate"),
    ("[underlay]", "log-level = 'loud'\n[underlay]", "daemon.log-level", 4, "'loud' is not one"),
    ("[underlay]", "name = 'x t r'\n[underlay]", "daemon.name", 4, "space"),
    ("[underlay]", "name = ''\n[underlay]", "daemon.name", 4, "1 to 64"),
    ("[underlay]", "name = 7\n[underlay]", "daemon.name", 4, "must be a string, not an integer"),
    ('rlocs = ["192.0.2.2"]', "rlocs = []", "underlay.rlocs", 5, "at least 1"),
    ('["192.0.2.2"]', '["192.0.2.2", "192.0.2.2"]', "underlay.rlocs[1]", 5, "duplicate of"),
    ('["192.0.2.2"]', '["192.0.2.2", "192.0.2.3"]', "underlay.rlocs[1]", 5, "at most one per"),
    ('["192.0.2.2"]', '["192.0.2.300"]', "underlay.rlocs[0]", 5, "not a valid IPv4 or IPv6"),
    ('["192.0.2.2"]', '["192.0.2.2/32"]', "underlay.rlocs[0]", 5, "is a prefix"),
    ('["192.0.2.2"]', '["224.0.0.5"]', "underlay.rlocs[0]", 5, "multicast"),
    ('["192.0.2.2"]', '["0.0.0.0"]', "underlay.rlocs[0]", 5, "unspecified"),
    ('["192.0.2.2"]', '["fe80::1%eth0"]', "underlay.rlocs[0]", 5, "zone"),
    ('["192.0.2.2"]', '["::ffff:192.0.2.2"]', "underlay.rlocs[0]", 5, "write it as 192.0.2.2"),
    ('["192.0.2.2"]', "[3221225986]", "underlay.rlocs[0]", 5, "not an integer"),
    ('["192.0.2.2"]', '["192.0.2.2"]\nmtu = 575', "underlay.mtu", 6, "from 576 to 65535"),
    ('["192.0.2.2"]', '["192.0.2.2"]\nmtu = "1500"', "underlay.mtu", 6, "not a string"),
    ('["192.0.2.2"]', '["192.0.2.2"]\nmtu = 1500.0', "underlay.mtu", 6, "not a float"),
    ('["192.0.2.2"]', '["192.0.2.2"]\nmtu = true', "underlay.mtu", 6, "not a boolean"),
    ('"198.51.100.0/28"', '"198.51.100.1/28"', "database-mapping[0].eid-prefix", 8,
     "has host bits set; did you mean '198.51.100.0/28'?"),
    ('"198.51.100.0/28"', '"2001:db8:100::1/48"', "database-mapping[0].eid-prefix", 8,
     "did you mean '2001:db8:100::/48'?"),
    ('"198.51.100.0/28"', '"198.51.100.0"', "database-mapping[0].eid-prefix", 8,
     "has no length; write e.g. '198.51.100.0/32'"),
    ('"198.51.100.0/28"', '"198.51.100.0/33"', "database-mapping[0].eid-prefix", 8,
     "length 33 is too long for IPv4"),
    ('"198.51.100.0/28"', '"198.51.100.0/x"', "database-mapping[0].eid-prefix", 8,
     "is not a prefix length"),
    ('"198.51.100.0/28"', '"198.51.300.0/28"', "database-mapping[0].eid-prefix", 8,
     "not a valid IPv4 or IPv6 prefix"),
    ('"198.51.100.0/28"', '"198.51.100.0/28"\ninstance-id = 16777215',
     "database-mapping[0].instance-id", 9, "from 0 to 16777214"),
    ('"198.51.100.0/28"', '"198.51.100.0/28"\ninstance-id = -1',
     "database-mapping[0].instance-id", 9, "from 0 to 16777214"),
    ('"192.0.2.2" }', '"192.0.2.2", priority = 256 }',
     "database-mapping[0].rlocs[0].priority", 9, "must be from 0 to 255, got 256"),
    ('"192.0.2.2" }', '"192.0.2.2", weight = -1 }',
     "database-mapping[0].rlocs[0].weight", 9, "from 0 to 255"),
    ('"192.0.2.2" }', '"192.0.2.2", weight = "50" }',
     "database-mapping[0].rlocs[0].weight", 9, "must be an integer, not a string"),
    ('{ address = "192.0.2.2" }', '{ priority = 1 }',
     "database-mapping[0].rlocs[0].address", 9, "required key is missing"),
    ('{ address = "192.0.2.2" }', '"192.0.2.2"',
     "database-mapping[0].rlocs[0]", 9, "must be a table, not a string"),
    ('[{ address = "192.0.2.2" }]', '{ address = "192.0.2.2" }',
     "database-mapping[0].rlocs", 9, "must be an array ([ { ... }, ... ]), not a table"),
    ('rlocs = [{ address = "192.0.2.2" }]', "rlocs = []",
     "database-mapping[0].rlocs", 9, "at least 1"),
    ('rlocs = [{ address = "192.0.2.2" }]', "",
     "database-mapping[0].rlocs", 7, "required key is missing"),
    ('eid-prefix = "198.51.100.0/28"', "",
     "database-mapping[0].eid-prefix", 7, "required key is missing"),
    ('[{ address = "192.0.2.2" }]', '[{ address = "192.0.2.2" }, { address = "192.0.2.2" }]',
     "database-mapping[0].rlocs[1].address", 9, "192.0.2.2 is already rlocs[0]"),
    ("[[database-mapping]]", "[database-mapping]",
     "database-mapping", 7, "must be an array (write [[database-mapping]] headers)"),
    ('[{ address = "192.0.2.2" }]', '[{ address = "192.0.2.9" }]',
     "database-mapping[0].rlocs", 9, "lists none of underlay.rlocs (192.0.2.2)"),
    ('roles = ["itr", "etr"]', 'roles = ["etr"]\n[tun]\nname = "lisp.0/1"',
     "tun.name", 4, "cannot contain '/'"),
    ('roles = ["itr", "etr"]', 'roles = ["etr"]\n[tun]\nname = "sixteen-chars-xx"',
     "tun.name", 4, "at most 15"),
    ('roles = ["itr", "etr"]', 'roles = ["etr"]\n[tun]\nname = ""', "tun.name", 4, "empty"),
    ('roles = ["itr", "etr"]', 'roles = ["etr"]\n[tun]\nmtu = 67', "tun.mtu", 4, "68 to 65535"),
    ('roles = ["itr", "etr"]', 'roles = ["etr"]\n[tun]\nmtu = 1400\nmtu2 = 1',
     "tun.mtu2", 5, "unknown key"),
]
# fmt: on


@pytest.mark.parametrize(("old", "new", "key_path", "line", "fragment"), CASES)
def test_validation_errors(old: str, new: str, key_path: str, line: int, fragment: str) -> None:
    assert old in BASE
    err = error_of(BASE.replace(old, new, 1))
    assert err.key_path == key_path
    assert err.line == line
    assert fragment in err.message
    assert str(err) == f"test.conf:{line}: {key_path}: {err.message}"


def test_missing_sections() -> None:
    err = error_of("[underlay]\nrlocs = ['192.0.2.2']\n")
    assert (err.key_path, err.line) == ("daemon", None)
    assert err.message == "required table is missing"
    assert str(err) == "test.conf: daemon: required table is missing"
    err = error_of("[daemon]\nroles = ['pitr']\n")
    assert (err.key_path, err.line) == ("underlay", None)
    err = error_of("[daemon]\nname = 'x'\n[underlay]\nrlocs = ['192.0.2.2']\n")
    assert (err.key_path, err.line) == ("daemon.roles", 1)  # points at [daemon]
    err = error_of("daemon = 5\n")
    assert (err.key_path, err.line) == ("daemon", 1)
    assert "must be a table, not an integer" in err.message


def test_array_spread_over_lines() -> None:
    text = BASE.replace(
        'rlocs = [{ address = "192.0.2.2" }]',
        'rlocs = [\n  { address = "192.0.2.2" },\n  # a comment [with] {braces}\n'
        '  { address = "192.0.2.9", weight = 300 },\n]',
    )
    err = error_of(text)
    assert (err.key_path, err.line) == ("database-mapping[0].rlocs[1].weight", 12)


def test_quoted_and_dotted_keys_are_located() -> None:
    err = error_of(BASE.replace("[underlay]", '"log-level" = "loud"\n[underlay]'))
    assert (err.key_path, err.line) == ("daemon.log-level", 4)
    text = 'daemon.name = "x#[y]"\ndaemon.roles = ["itr"]\n' + "daemon.log-level = 'x'\n"
    err = error_of(text + BASE.split("\n", 2)[2])
    assert (err.key_path, err.line) == ("daemon.log-level", 3)


def test_key_path_quotes_odd_keys() -> None:
    err = error_of(BASE.replace("[underlay]", '"a.b" = 1\n[underlay]'))
    assert err.key_path == 'daemon."a.b"' and err.line == 4


# -- errors: rules across keys and sections -------------------------------------------------------

MAP_CACHE_ENTRY = '\n[[map-cache]]\neid-prefix = "198.51.100.16/28"\n'  # header on line 11


def test_map_cache_needs_rlocs_or_action() -> None:
    err = error_of(BASE + MAP_CACHE_ENTRY)
    assert (err.key_path, err.line) == ("map-cache[0]", 11)
    assert 'needs rlocs (a positive entry) or action = "drop" | "native-forward"' in err.message


def test_map_cache_rlocs_and_action_exclusive() -> None:
    err = error_of(BASE + MAP_CACHE_ENTRY + "rlocs = [{address = '192.0.2.6'}]\naction = 'drop'\n")
    assert (err.key_path, err.line) == ("map-cache[0].action", 14)
    assert "either rlocs or action, not both" in err.message


@pytest.mark.parametrize("action", MAP_CACHE_ACTIONS)
def test_map_cache_actions(action: str) -> None:
    config = parse_config(BASE + MAP_CACHE_ENTRY + f"action = '{action}'\nttl = 15\n")
    assert config.map_cache[0].action == action and config.map_cache[0].ttl == 15
    assert config.map_cache[0].is_negative


def test_map_cache_bad_action_and_ttl() -> None:
    err = error_of(BASE + MAP_CACHE_ENTRY + "action = 'forward'\n")
    assert (err.key_path, err.line) == ("map-cache[0].action", 13)
    assert "did you mean 'native-forward'?" in err.message
    err = error_of(BASE + MAP_CACHE_ENTRY + "action = 'drop'\nttl = 0\n")
    assert (err.key_path, err.line) == ("map-cache[0].ttl", 14)
    err = error_of(BASE + MAP_CACHE_ENTRY + "action = 'drop'\nttl = 4294967296\n")
    assert err.key_path == "map-cache[0].ttl" and "4294967295" in err.message


def test_map_cache_rlocs_must_be_reachable() -> None:
    err = error_of(BASE + MAP_CACHE_ENTRY + "rlocs = [{address = '2001:db8:0:2::2'}]\n")
    assert (err.key_path, err.line) == ("map-cache[0].rlocs", 13)
    assert "underlay.rlocs has no IPv6 address" in err.message
    both = "rlocs = [{address = '2001:db8:0:2::2'}, {address = '192.0.2.6'}]\n"
    assert len(parse_config(BASE + MAP_CACHE_ENTRY + both).map_cache[0].rlocs) == 2


def test_duplicate_database_prefix() -> None:
    second = (
        '\n[[database-mapping]]\neid-prefix = "198.51.100.0/28"\n'
        'rlocs = [{address = "192.0.2.2"}]\n'
    )
    err = error_of(BASE + second)
    assert (err.key_path, err.line) == ("database-mapping[1].eid-prefix", 12)
    assert "198.51.100.0/28 in instance-id 0 is already database-mapping[0]" in err.message
    other_iid = second.replace("rlocs", "instance-id = 7\nrlocs")
    assert len(parse_config(BASE + other_iid).database) == 2


def test_duplicate_map_cache_prefix() -> None:
    entry = MAP_CACHE_ENTRY + "action = 'drop'\n"
    err = error_of(BASE + entry + entry)
    assert (err.key_path, err.line) == ("map-cache[1].eid-prefix", 16)
    assert "is already map-cache[0]" in err.message


def test_map_cache_prefix_cannot_be_local() -> None:
    entry = '\n[[map-cache]]\neid-prefix = "198.51.100.0/28"\naction = "drop"\n'
    err = error_of(BASE + entry)
    assert (err.key_path, err.line) == ("map-cache[0].eid-prefix", 12)
    assert "local prefix (database-mapping[0])" in err.message
    # A more specific remote prefix inside a local one is allowed.
    assert parse_config(BASE + entry.replace("/28", "/30")).map_cache


@pytest.mark.parametrize("role", ["itr", "etr"])
def test_role_needs_database_mapping(role: str) -> None:
    text = BASE.split("[[database-mapping]]")[0].replace('["itr", "etr"]', f'["{role}"]')
    err = error_of(text)
    assert (err.key_path, err.line) == ("daemon.roles", 2)
    assert f"role '{role}' needs at least one [[database-mapping]]" in err.message


@pytest.mark.parametrize("role", ["rtr", "pitr", "petr", "map-server", "map-resolver"])
def test_other_roles_need_no_database_mapping(role: str) -> None:
    text = BASE.split("[[database-mapping]]")[0].replace('["itr", "etr"]', f'["{role}"]')
    assert parse_config(text).database == ()


def test_database_rlocs_of_other_xtrs() -> None:
    # An ETR lists its own RLOC and those of the site's other xTRs.
    sibling = BASE.replace('"192.0.2.2" }]', '"192.0.2.2" }, { address = "192.0.2.10" }]')
    assert len(parse_config(sibling).database[0].rlocs) == 2
    # Without the etr role no RLOC of the set needs to be local.
    itr_only = BASE.replace('["itr", "etr"]', '["itr"]').replace('"192.0.2.2" }', '"192.0.2.10" }')
    assert parse_config(itr_only).database[0].rlocs[0].address == ipaddress.ip_address("192.0.2.10")


# -- the model ------------------------------------------------------------------------------------


def test_immutable() -> None:
    config = parse_config(DUAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.tun.mtu = 9000  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.daemon = config.daemon  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.database[0].rlocs[0].weight = 1  # type: ignore[misc]
    assert isinstance(config.database, tuple) and isinstance(config.database[0].rlocs, tuple)
    assert isinstance(config.roles, frozenset)
    assert isinstance(config.underlay.rlocs, tuple)
    hash(config)  # usable as a dict key / in sets


def test_properties() -> None:
    config = parse_config(DUAL)
    v4, v6 = ipaddress.ip_address("192.0.2.2"), ipaddress.ip_address("2001:db8:0:1::2")
    assert config.rloc_v4 == v4 and config.rloc_v6 == v6
    assert config.underlay.rloc_v4 == v4 and config.underlay.rloc_v6 == v6
    assert config.local_rloc(4) == v4 and config.local_rloc(6) == v6
    assert config.is_local_rloc(v4) and config.is_local_rloc(v6)
    assert not config.is_local_rloc(ipaddress.ip_address("192.0.2.3"))
    assert config.has_role("itr") and config.has_role("etr") and not config.has_role("pitr")
    with pytest.raises(ValueError, match="unknown role"):
        config.has_role("xtr")
    assert parse_config(BASE).rloc_v6 is None
    assert parse_config(BASE).local_rloc(6) is None
    assert parse_config(BASE).underlay.encap_overhead == 36
    mapping = config.database[0]
    assert mapping.version == 4 and not mapping.is_negative
    assert config.daemon.logging_level == 20


def test_equality_ignores_path() -> None:
    assert parse_config(BASE, "a.conf") == parse_config(BASE, "b.conf")
    assert parse_config(BASE) != parse_config(DUAL)
    assert isinstance(parse_config(BASE), Config)


def test_config_error_pickles() -> None:
    err = error_of(BASE.replace('"192.0.2.2" }', '"192.0.2.2", weight = 999 }'))
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.path, copy.line, copy.key_path, copy.message) == (
        err.path,
        err.line,
        err.key_path,
        err.message,
    )
    assert str(copy) == str(err)


# -- the line locator -----------------------------------------------------------------------------


def test_key_lines_skips_strings_and_comments() -> None:
    text = '''\
# [not-a-table]
a = """multi
line = [ { "string"
"""
b = \'\'\'x\'\'\'\'
c = 'lit # not a comment'   # real comment
[[t]]
[[t]]
k = { x = 1, y = [1,
  2] }
[t.sub]
z = 1979-05-27 07:32:00Z
'''
    tomllib.loads(text)  # the locator only sees valid TOML
    lines = key_lines(text)
    assert lines[("a",)] == 2
    assert lines[("b",)] == 5
    assert lines[("c",)] == 6
    assert lines[("t", 0)] == 7
    assert lines[("t", 1)] == 8
    assert lines[("t", 1, "k", "y", 1)] == 10
    assert lines[("t", 1, "sub")] == 11
    assert lines[("t", 1, "sub", "z")] == 12
    assert ("not-a-table",) not in lines and ("line",) not in lines


def test_key_lines_is_best_effort() -> None:
    assert key_lines("a = 1\n= broken") == {("a",): 1}
