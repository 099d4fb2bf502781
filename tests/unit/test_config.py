"""Unit tests of lispd.config: lispd.conf parsing, validation, error positions and the example."""

from __future__ import annotations

import dataclasses
import ipaddress
import pickle
import socket
import tomllib
from pathlib import Path
from typing import Any

import pytest

from lispd.config import (
    KEY_IDS,
    LOG_LEVELS,
    MAP_CACHE_ACTIONS,
    ROLES,
    ROOT,
    Config,
    ConfigError,
    Mapping,
    MappingSystemConfig,
    MapServerRef,
    RegistrationConfig,
    ResolverConfig,
    Rloc,
    Site,
    SitePrefix,
    key_paths,
    load_config,
    parse_config,
)
from lispd.config.locate import key_lines

EXAMPLE = Path(__file__).resolve().parents[2] / "lispd.conf.example"
EXAMPLE_MSMR = EXAMPLE.with_name("lispd.conf.example.msmr")
EXAMPLE_PXTR = EXAMPLE.with_name("lispd.conf.example.pxtr")
EXAMPLE_DDT = EXAMPLE.with_name("lispd.conf.example.ddt")
EXAMPLES = (EXAMPLE, EXAMPLE_MSMR, EXAMPLE_DDT, EXAMPLE_PXTR)
"""The xTR example, the Map-Server/Map-Resolver one and the DDT one (together they document every
key), and the PITR + PETR one (only keys the first three describe)."""

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

# Appended to a text whose daemon.roles has "map-server" (which needs a [[site]]).
SITE = """
[[site]]
name = "site-z"
key = "s3cret-z"
eid-prefixes = [{ eid-prefix = "203.0.113.0/24" }]
"""

# Every key in the texts below contains SECRET: no error message nor repr() may show it.
SECRET = "s3cret"

# An xTR that registers and resolves; lines 1-9 as BASE, then
#   11 [[map-server]]  12 address  13 key  15 [[map-resolver]]  16 address  (17: appended text)
XTR_CP = (
    BASE
    + """
[[map-server]]
address = "192.0.2.10"
key = "s3cret-ms"

[[map-resolver]]
address = "192.0.2.10"
"""
)

# A Map-Server/Map-Resolver:
#   1 [daemon]  2 roles  4 [underlay]  5 rlocs  7 [[site]]  8 name  9 key  10 eid-prefixes
MSMR = """\
[daemon]
roles = ["map-server", "map-resolver"]

[underlay]
rlocs = ["192.0.2.10"]

[[site]]
name = "site-a"
key = "s3cret-a"
eid-prefixes = [{ eid-prefix = "198.51.100.0/28" }]
"""


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
    assert any(m.action == "send-map-request" for m in config.map_cache)
    assert len(config.map_servers) == 1 and len(config.map_resolvers) == 1
    assert config.sites == ()
    assert any(rloc.elp for m in config.database for rloc in m.rlocs)
    assert any(rloc.elp for m in config.map_cache for rloc in m.rlocs)
    assert not config.nat_traversal.enabled and config.rtr.public_rlocs == ()


def test_msmr_example_loads() -> None:
    config = load_config(EXAMPLE_MSMR)
    assert config.roles == {"map-server", "map-resolver"}
    assert config.database == () and config.map_cache == ()
    assert [site.name for site in config.sites] == ["site-a", "site-b"]


def test_pxtr_example_loads() -> None:
    """A plain PITR + PETR: no EIDs of its own, the EID space resolved through a Map-Resolver."""
    config = load_config(EXAMPLE_PXTR)
    assert config.daemon.name == "pxtr1"
    assert config.roles == {"pitr", "petr"}
    assert config.database == () and config.sites == () and config.map_servers == ()
    assert config.map_cache and all(m.action == "send-map-request" for m in config.map_cache)
    assert {m.prefix.version for m in config.map_cache} == {4, 6}
    assert config.map_resolvers and config.petrs == ()
    assert config.dataplane.workers == 1


def test_examples_describe_one_network() -> None:
    """The xTR registers with and resolves through the MS/MR example, with its site's key; the
    PxTR resolves through the same Map-Resolver, attracts every site's prefixes and is the
    xTR's PETR."""
    xtr, msmr = load_config(EXAMPLE), load_config(EXAMPLE_MSMR)
    pxtr = load_config(EXAMPLE_PXTR)
    assert set(pxtr.map_resolvers) <= set(msmr.underlay.rlocs)
    for site in msmr.sites:
        for p in site.prefixes:
            covering = [
                m.prefix
                for m in pxtr.map_cache
                if m.instance_id == p.instance_id and m.prefix.version == p.prefix.version
            ]
            assert any(p.prefix.subnet_of(net) for net in covering), p  # type: ignore[arg-type]
    assert {p.address for p in xtr.petrs} <= set(pxtr.underlay.rlocs)
    (map_server,) = xtr.map_servers
    assert map_server.address in msmr.underlay.rlocs
    assert set(xtr.map_resolvers) <= set(msmr.underlay.rlocs)
    site_a = msmr.sites[0]
    assert map_server.key == site_a.key
    registered = {(p.instance_id, p.prefix) for p in site_a.prefixes}
    assert {(m.instance_id, m.prefix) for m in xtr.database} == registered
    site_b = {(p.instance_id, p.prefix) for p in msmr.sites[1].prefixes}
    assert any((m.instance_id, m.prefix) in site_b for m in xtr.map_cache)
    # The xTR's Explicit Locator Paths go through an RTR the Map-Server hands out.
    first_hops = {r.elp[0] for m in xtr.database + xtr.map_cache for r in m.rlocs if r.elp}
    assert first_hops and first_hops <= set(msmr.mapping_system.rtr_rlocs)


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
    used: set[tuple[str, ...]] = set()
    for example in EXAMPLES:
        in_this = _document_paths(tomllib.loads(example.read_text()))
        assert in_this - accepted == set(), example.name
        used |= in_this
    assert accepted - used == set(), "keys missing from every lispd.conf.example file"
    # Sanity of the schema walk itself.
    assert ("daemon", "log-level") in accepted
    assert ("database-mapping", "rlocs", "weight") in accepted
    assert ("map-cache", "action") in accepted
    assert ("site", "eid-prefixes", "accept-more-specifics") in accepted
    assert ("resolver", "max-requests-per-second") in accepted


def _comment_block(lines: list[str], lineno: int, direction: int) -> str:
    """The comment lines directly above (direction -1) or below (+1) 1-based ``lineno``."""
    block: list[str] = []
    index = lineno - 1 + direction
    while 0 <= index < len(lines) and lines[index].lstrip().startswith("#"):
        block.append(lines[index])
        index += direction
    return "\n".join(block)


def test_example_comments_every_key() -> None:
    # Each key is described where it first appears: in lispd.conf.example, else in the .msmr one.
    first_line: dict[
        tuple[str, ...], tuple[tuple[str | int, ...], int, list[str], dict[Any, int]]
    ] = {}
    for example in EXAMPLES:
        text = example.read_text()
        positions = key_lines(text)
        for path, line in sorted(positions.items(), key=lambda item: item[1]):
            if isinstance(path[-1], int):
                continue
            generic = tuple(part for part in path if isinstance(part, str))
            first_line.setdefault(generic, (path, line, text.splitlines(), positions))
    for generic in key_paths(ROOT):
        path, line, lines, positions = first_line[generic]
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


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_example_uses_documentation_addresses_only(example: Path) -> None:
    config = load_config(example)
    addresses: list[object] = list(config.underlay.rlocs)
    for mapping in config.database + config.map_cache:
        addresses.append(mapping.prefix)
        addresses += [rloc.address for rloc in mapping.rlocs]
        addresses += [hop for rloc in mapping.rlocs for hop in rloc.elp]
    addresses += [ms.address for ms in config.map_servers] + list(config.map_resolvers)
    addresses += list(config.rtr.public_rlocs) + list(config.mapping_system.rtr_rlocs)
    addresses += [entry.prefix for site in config.sites for entry in site.prefixes]
    for item in addresses:
        network = ipaddress.ip_network(item)  # type: ignore[arg-type]
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
[[site]]
name = "s"
key = "k"
eid-prefixes = [{ eid-prefix = "2001:db8:100:2::/64" }]
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
    pitr_needs = '\n[[map-resolver]]\naddress = "192.0.2.10"\n' + SEND_MAP_REQUEST
    ddt_needs = '\n[[ddt-authority]]\neid-prefix = "198.51.100.128/25"\n'
    text = BASE.replace('roles = ["itr", "etr"]', f"roles = [{roles}]") + SITE + pitr_needs
    config = parse_config(text + ddt_needs)
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
    err = error_of(BASE + "\n[map-servers]\naddress = '192.0.2.1'\n")
    assert (err.key_path, err.line) == ("map-servers", 11)
    assert "did you mean 'map-server'?" in err.message


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
    assert "address, elp, priority, weight" in err.message


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
    entry = MAP_CACHE_ENTRY + f"action = '{action}'\nttl = 15\n"
    config = parse_config(BASE + entry + "[[map-resolver]]\naddress = '192.0.2.10'\n")
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


@pytest.mark.parametrize(
    "roles", ['"rtr"', '"petr"', '"map-server"', '"map-server", "map-resolver"']
)
def test_other_roles_need_no_database_mapping(roles: str) -> None:
    text = BASE.split("[[database-mapping]]")[0].replace('"itr", "etr"', roles)
    text += SITE if "map-server" in roles else ""
    assert parse_config(text).database == ()


def test_database_rlocs_of_other_xtrs() -> None:
    # An ETR lists its own RLOC and those of the site's other xTRs.
    sibling = BASE.replace('"192.0.2.2" }]', '"192.0.2.2" }, { address = "192.0.2.10" }]')
    assert len(parse_config(sibling).database[0].rlocs) == 2
    # Without the etr role no RLOC of the set needs to be local.
    itr_only = BASE.replace('["itr", "etr"]', '["itr"]').replace('"192.0.2.2" }', '"192.0.2.10" }')
    assert parse_config(itr_only).database[0].rlocs[0].address == ipaddress.ip_address("192.0.2.10")


# -- the control plane: registration, resolution, Map-Server, Map-Resolver -----------------------


def test_control_plane_defaults() -> None:
    config = parse_config(BASE)
    assert config.map_servers == () and config.map_resolvers == () and config.sites == ()
    assert config.registration == RegistrationConfig(
        interval=60.0, record_ttl=1440, want_map_notify=True
    )
    assert config.resolver == ResolverConfig(
        retries=3,
        retry_interval=1.0,
        queue_per_entry=64,
        queue_total=4096,
        queue_timeout=3.0,
        min_request_interval=1.0,
        max_requests_per_second=100,
        max_ttl=1440,
    )
    assert config.mapping_system == MappingSystemConfig(registration_timeout=180.0, negative_ttl=15)
    # The schema's defaults are the model's: code that builds a Config by hand gets the same.
    assert config.registration == RegistrationConfig()
    assert config.resolver == ResolverConfig()
    assert config.mapping_system == MappingSystemConfig()
    bare = Config(daemon=config.daemon, tun=config.tun, underlay=config.underlay)
    assert (bare.registration, bare.resolver, bare.mapping_system) == (
        config.registration,
        config.resolver,
        config.mapping_system,
    )
    assert bare.map_servers == () and bare.map_resolvers == () and bare.sites == ()
    assert isinstance(config.registration.interval, float)
    assert isinstance(config.resolver.retry_interval, float)
    assert isinstance(config.mapping_system.registration_timeout, float)


def test_map_server_and_resolver_defaults() -> None:
    config = parse_config(XTR_CP)
    assert config.map_servers == (
        MapServerRef(
            address=ipaddress.ip_address("192.0.2.10"),
            key=b"s3cret-ms",
            key_id=2,
            proxy_reply=False,
        ),
    )
    assert config.map_resolvers == (ipaddress.ip_address("192.0.2.10"),)


def test_site_defaults() -> None:
    (site,) = parse_config(MSMR).sites
    assert site == Site(
        name="site-a",
        key=b"s3cret-a",
        prefixes=(SitePrefix(0, ipaddress.ip_network("198.51.100.0/28"), False),),
    )
    assert site.prefixes[0].accept_more_specifics is False and site.prefixes[0].version == 4


def test_control_plane_all_values_given() -> None:
    config = parse_config(
        XTR_CP.replace('key = "s3cret-ms"', 'key = "s3cret-ms"\nkey-id = 1\nproxy-reply = true')
        + """
[[map-resolver]]
address = "192.0.2.11"
[registration]
interval = 0.5e1
record-ttl = 4294967295
want-map-notify = false
[resolver]
retries = 0
retry-interval = 2
queue-per-entry = 0
queue-total = 1000000
queue-timeout = 0.1
min-request-interval = 0
max-requests-per-second = 100000
max-ttl = 1
[mapping-system]
registration-timeout = 3
negative-ttl = 1440
"""
    )
    (map_server,) = config.map_servers
    assert map_server.key_id == 1 and map_server.proxy_reply is True
    assert config.map_resolvers == tuple(
        ipaddress.ip_address(a) for a in ("192.0.2.10", "192.0.2.11")
    )  # file order: the first is the primary
    assert config.registration == RegistrationConfig(5.0, 4294967295, False)
    assert config.resolver == ResolverConfig(0, 2.0, 0, 1_000_000, 0.1, 0.0, 100_000, 1)
    assert isinstance(config.resolver.retry_interval, float)  # an integer is accepted
    assert config.mapping_system == MappingSystemConfig(3.0, 1440)


@pytest.mark.parametrize(("key_id", "name"), sorted(KEY_IDS.items()))
def test_key_ids(key_id: int, name: str) -> None:
    text = XTR_CP.replace('key = "s3cret-ms"', f'key = "s3cret-ms"\nkey-id = {key_id}')
    assert parse_config(text).map_servers[0].key_id == key_id
    assert name.startswith("HMAC-SHA-")


def test_keys_are_utf8_bytes() -> None:
    config = parse_config(XTR_CP.replace('"s3cret-ms"', '"s3cret-clé \\u00e9"'))
    assert config.map_servers[0].key == "s3cret-clé é".encode()
    assert isinstance(config.map_servers[0].key, bytes)
    site = parse_config(MSMR.replace('"s3cret-a"', "'s3cret \\\\ ✓'")).sites[0]
    assert site.key == "s3cret \\\\ ✓".encode()


def test_more_sites_and_prefixes() -> None:
    text = MSMR.replace(
        '[{ eid-prefix = "198.51.100.0/28" }]',
        '[\n  { eid-prefix = "198.51.100.0/28", instance-id = 7, accept-more-specifics = true },\n'
        '  { eid-prefix = "198.51.100.0/28" },\n  { eid-prefix = "2001:db8:100:1::/64" },\n]',
    ) + site_text("site-b", "198.51.100.16/28", "198.51.100.0/28", iid=8)
    config = parse_config(text)
    assert [s.name for s in config.sites] == ["site-a", "site-b"]
    first = config.sites[0].prefixes[0]
    assert first == SitePrefix(7, ipaddress.ip_network("198.51.100.0/28"), True)
    assert [p.instance_id for p in config.sites[1].prefixes] == [8, 8]


def site_text(name: str, *prefixes: str, iid: int = 0, key: str = "s3cret-x") -> str:
    """A [[site]] table with ``prefixes`` in instance-id ``iid``."""
    entries = ", ".join(f'{{ eid-prefix = "{p}", instance-id = {iid} }}' for p in prefixes)
    return f'\n[[site]]\nname = "{name}"\nkey = "{key}"\neid-prefixes = [{entries}]\n'


# Replacements in XTR_CP: (replace this, with that, key path, line, fragment of the message)
# fmt: off
XTR_CP_CASES = [
    ('key = "s3cret-ms"', 'key = "s3cret-ms"\nkey-id = 3', "map-server[0].key-id", 14,
     "must be 1 (HMAC-SHA-1-96) or 2 (HMAC-SHA-256-128), got 3"),
    ('key = "s3cret-ms"', 'key = "s3cret-ms"\nkey-id = 0', "map-server[0].key-id", 14,
     "must be 1 (HMAC-SHA-1-96) or 2 (HMAC-SHA-256-128), got 0"),
    ('key = "s3cret-ms"', 'key = "s3cret-ms"\nkey-id = "2"', "map-server[0].key-id", 14,
     "must be an integer, not a string"),
    ('key = "s3cret-ms"', 'key = "s3cret-ms"\nkey-id = true', "map-server[0].key-id", 14,
     "must be an integer, not a boolean"),
    ('key = "s3cret-ms"', 'key = ""', "map-server[0].key", 13, "must not be empty"),
    ('key = "s3cret-ms"', "key = 5", "map-server[0].key", 13, "must be a string, not an integer"),
    ('key = "s3cret-ms"', 'key = ["s3cret-ms"]', "map-server[0].key", 13,
     "must be a string, not an array"),
    ('key = "s3cret-ms"\n', "", "map-server[0].key", 11, "required key is missing"),
    ('address = "192.0.2.10"\nkey', "key", "map-server[0].address", 11, "required key is missing"),
    ('address = "192.0.2.10"', 'address = "192.0.2.10/32"', "map-server[0].address", 12,
     "is a prefix"),
    ('address = "192.0.2.10"', 'address = "224.0.0.10"', "map-server[0].address", 12,
     "multicast"),
    ('address = "192.0.2.10"', 'address = "2001:db8::10"', "map-server[0].address", 12,
     "unreachable: 2001:db8::10 is IPv6 and underlay.rlocs has no IPv6 address"),
    ('address = "192.0.2.10"', 'address = "192.0.2.2"', "map-server[0].address", 12,
     "192.0.2.2 is this node's own RLOC, but daemon.roles has no 'map-server' role"),
    ('key = "s3cret-ms"', 'key = "s3cret-ms"\nproxy-reply = "yes"', "map-server[0].proxy-reply",
     14, "must be true or false, not a string"),
    ('key = "s3cret-ms"', 'key = "s3cret-ms"\nproxy-reply = 1', "map-server[0].proxy-reply", 14,
     "must be true or false, not an integer"),
    ('key = "s3cret-ms"', 'key = "s3cret-ms"\nsecret = "s3cret-2"', "map-server[0].secret", 14,
     "unknown key 'secret'"),
    ('key = "s3cret-ms"', 'key = "s3cret-ms"\nkey_id = 1', "map-server[0].key_id", 14,
     "did you mean 'key-id'?"),
    ("[[map-server]]", "[map-server]", "map-server", 11,
     "must be an array (write [[map-server]] headers), not a table"),
    ("[[map-resolver]]",
     '[[map-server]]\naddress = "192.0.2.10"\nkey = "s3cret-2"\n[[map-resolver]]',
     "map-server[1].address", 16, "192.0.2.10 is already map-server[0]"),
    ('roles = ["itr", "etr"]', 'roles = ["itr"]', "map-server[0]", 11,
     "[[map-server]] is only used by the 'etr' role (to register the database-mappings), "
     "which daemon.roles does not have"),
    ('[[map-resolver]]\naddress = "192.0.2.10"', "[[map-resolver]]", "map-resolver[0].address", 15,
     "required key is missing"),
    ('[[map-resolver]]\naddress = "192.0.2.10"', '[[map-resolver]]\naddress = "192.0.2.10"\n'
     '[[map-resolver]]\naddress = "192.0.2.10"', "map-resolver[1].address", 18,
     "192.0.2.10 is already map-resolver[0]"),
    ('[[map-resolver]]\naddress = "192.0.2.10"', '[[map-resolver]]\naddress = "2001:db8::10"',
     "map-resolver[0].address", 16, "unreachable: 2001:db8::10 is IPv6"),
    ('[[map-resolver]]\naddress = "192.0.2.10"', '[[map-resolver]]\naddress = "192.0.2.2"',
     "map-resolver[0].address", 16, "own RLOC, but daemon.roles has no 'map-resolver' role"),
    ("[[map-resolver]]\n", "[[map-resolver]]\nkey = 1\n", "map-resolver[0].key", 16,
     "unknown key 'key'"),
]

# Appended to XTR_CP, from line 17: (text, key path, line, fragment of the message)
XTR_CP_TABLE_CASES = [
    ("[registration]\ninterval = 0", "registration.interval", 18,
     "must be from 1 to 3600, got 0"),
    ("[registration]\ninterval = 3600.5", "registration.interval", 18, "got 3600.5"),
    ("[registration]\ninterval = '60'", "registration.interval", 18,
     "must be a number, not a string"),
    ("[registration]\ninterval = true", "registration.interval", 18,
     "must be a number, not a boolean"),
    ("[registration]\nrecord-ttl = 0", "registration.record-ttl", 18,
     "must be from 1 to 4294967295, got 0"),
    ("[registration]\nrecord-ttl = 4294967296", "registration.record-ttl", 18, "from 1 to"),
    ("[registration]\nrecord-ttl = 60.0", "registration.record-ttl", 18,
     "must be an integer, not a float"),
    ("[registration]\nwant-map-notify = 'true'", "registration.want-map-notify", 18,
     "must be true or false, not a string"),
    ("[registration]\nintervall = 5", "registration.intervall", 18, "did you mean 'interval'?"),
    ("[[registration]]\ninterval = 5", "registration", 17, "must be a table, not an array"),
    ("[resolver]\nretries = 11", "resolver.retries", 18, "must be from 0 to 10, got 11"),
    ("[resolver]\nretries = -1", "resolver.retries", 18, "from 0 to 10"),
    ("[resolver]\nretries = 1.5", "resolver.retries", 18, "must be an integer, not a float"),
    ("[resolver]\nretry-interval = 0.04", "resolver.retry-interval", 18,
     "must be from 0.05 to 60, got 0.04"),
    ("[resolver]\nretry-interval = 61", "resolver.retry-interval", 18, "got 61"),
    ("[resolver]\nretry-interval = nan", "resolver.retry-interval", 18, "got nan"),
    ("[resolver]\nretry-interval = inf", "resolver.retry-interval", 18, "got inf"),
    ("[resolver]\nretry-interval = '1s'", "resolver.retry-interval", 18, "not a string"),
    ("[resolver]\nqueue-per-entry = 65536", "resolver.queue-per-entry", 18,
     "must be from 0 to 65535"),
    ("[resolver]\nqueue-total = -1", "resolver.queue-total", 18, "must be from 0 to 1000000"),
    ("[resolver]\nqueue-total = 1000001", "resolver.queue-total", 18, "got 1000001"),
    ("[resolver]\nqueue-timeout = 0.09", "resolver.queue-timeout", 18,
     "must be from 0.1 to 60, got 0.09"),
    ("[resolver]\nqueue-timeout = 60.5", "resolver.queue-timeout", 18, "got 60.5"),
    ("[resolver]\nmin-request-interval = -0.1", "resolver.min-request-interval", 18,
     "must be from 0 to 3600"),
    ("[resolver]\nmin-request-interval = 3601", "resolver.min-request-interval", 18, "got 3601"),
    ("[resolver]\nmax-requests-per-second = 0", "resolver.max-requests-per-second", 18,
     "must be from 1 to 100000"),
    ("[resolver]\nmax-requests-per-second = 100001", "resolver.max-requests-per-second", 18,
     "got 100001"),
    ("[resolver]\nmax-ttl = 0", "resolver.max-ttl", 18, "must be from 1 to 4294967295"),
    ("[resolver]\nretries = 3\nmax_ttl = 1", "resolver.max_ttl", 19, "did you mean 'max-ttl'?"),
    ("[mapping-system]\nregistration-timeout = 2", "mapping-system.registration-timeout", 18,
     "must be from 3 to 86400, got 2"),
    ("[mapping-system]\nregistration-timeout = 86401", "mapping-system.registration-timeout",
     18, "got 86401"),
    ("[mapping-system]\nnegative-ttl = 0", "mapping-system.negative-ttl", 18,
     "must be from 1 to 1440, got 0"),
    ("[mapping-system]\nnegative-ttl = 1441", "mapping-system.negative-ttl", 18, "got 1441"),
    ("[mapping-system]\nnegative-ttl = 15.0", "mapping-system.negative-ttl", 18,
     "must be an integer, not a float"),
    ("[[site]]\nname = 's'\nkey = 's3cret'\neid-prefixes = [{ eid-prefix = '203.0.113.0/24' }]",
     "site[0]", 17, "[[site]] is only used by the 'map-server' role, which daemon.roles does not "
     "have"),
]

# Replacements in MSMR: (replace this, with that, key path, line, fragment of the message)
MSMR_CASES = [
    ('name = "site-a"', 'name = ""', "site[0].name", 8, "1 to 64"),
    ('name = "site-a"', 'name = "site a"', "site[0].name", 8, "space"),
    ('name = "site-a"', f'name = "{"x" * 65}"', "site[0].name", 8, "1 to 64"),
    ('name = "site-a"', "name = 1", "site[0].name", 8, "must be a string, not an integer"),
    ('name = "site-a"\n', "", "site[0].name", 7, "required key is missing"),
    ('key = "s3cret-a"', 'key = ""', "site[0].key", 9, "must not be empty"),
    ('key = "s3cret-a"', 'key = ["s3cret-a"]', "site[0].key", 9, "must be a string, not an array"),
    ('key = "s3cret-a"\n', "", "site[0].key", 7, "required key is missing"),
    ('key = "s3cret-a"', 'keys = "s3cret-a"', "site[0].keys", 9, "did you mean 'key'?"),
    ('eid-prefixes = [{ eid-prefix = "198.51.100.0/28" }]', "eid-prefixes = []",
     "site[0].eid-prefixes", 10, "needs at least 1 element"),
    ('eid-prefixes = [{ eid-prefix = "198.51.100.0/28" }]', "",
     "site[0].eid-prefixes", 7, "required key is missing"),
    ('[{ eid-prefix = "198.51.100.0/28" }]', '{ eid-prefix = "198.51.100.0/28" }',
     "site[0].eid-prefixes", 10, "must be an array ([ { ... }, ... ]), not a table"),
    ('[{ eid-prefix = "198.51.100.0/28" }]', '["198.51.100.0/28"]',
     "site[0].eid-prefixes[0]", 10, "must be a table, not a string"),
    ('"198.51.100.0/28" }', '"198.51.100.1/28" }', "site[0].eid-prefixes[0].eid-prefix", 10,
     "has host bits set; did you mean '198.51.100.0/28'?"),
    ('{ eid-prefix = "198.51.100.0/28" }', "{ instance-id = 1 }",
     "site[0].eid-prefixes[0].eid-prefix", 10, "required key is missing"),
    ('"198.51.100.0/28" }', '"198.51.100.0/28", instance-id = 16777215 }',
     "site[0].eid-prefixes[0].instance-id", 10, "from 0 to 16777214"),
    ('"198.51.100.0/28" }', '"198.51.100.0/28", accept-more-specifics = "yes" }',
     "site[0].eid-prefixes[0].accept-more-specifics", 10, "must be true or false, not a string"),
    ('"198.51.100.0/28" }', '"198.51.100.0/28", more-specifics = true }',
     "site[0].eid-prefixes[0].more-specifics", 10, "unknown key 'more-specifics'"),
    ('"198.51.100.0/28" }]', '"198.51.100.0/28" },\n  { eid-prefix = "198.51.100.0/28" }]',
     "site[0].eid-prefixes[1].eid-prefix", 11,
     "198.51.100.0/28 in instance-id 0 is already eid-prefixes[0]"),
    ("[[site]]", "[site]", "site", 7, "must be an array (write [[site]] headers), not a table"),
    ('roles = ["map-server", "map-resolver"]', 'roles = ["map-resolver"]', "daemon.roles", 2,
     "role 'map-resolver' needs the 'map-server' role too (lispd's Map-Resolver answers "
     "Map-Requests from the registrations of its co-located Map-Server) or [ddt] roots"),
    ('roles = ["map-server", "map-resolver"]', 'roles = ["rtr"]', "site[0]", 7,
     "[[site]] is only used by the 'map-server' role"),
]
# fmt: on


def _check_error(err: ConfigError, key_path: str, line: int, fragment: str) -> None:
    assert (err.key_path, err.line) == (key_path, line), err
    assert fragment in err.message
    assert str(err) == f"test.conf:{line}: {key_path}: {err.message}"
    assert SECRET not in str(err) and SECRET not in repr(err)
    assert SECRET not in repr(err.args)


@pytest.mark.parametrize(("old", "new", "key_path", "line", "fragment"), XTR_CP_CASES)
def test_xtr_control_plane_errors(old: str, new: str, key_path: str, line: int, fragment: str):
    assert old in XTR_CP
    _check_error(error_of(XTR_CP.replace(old, new, 1)), key_path, line, fragment)


@pytest.mark.parametrize(("extra", "key_path", "line", "fragment"), XTR_CP_TABLE_CASES)
def test_control_plane_table_errors(extra: str, key_path: str, line: int, fragment: str) -> None:
    assert XTR_CP.count("\n") == 16
    _check_error(error_of(XTR_CP + extra + "\n"), key_path, line, fragment)


@pytest.mark.parametrize(("old", "new", "key_path", "line", "fragment"), MSMR_CASES)
def test_msmr_errors(old: str, new: str, key_path: str, line: int, fragment: str) -> None:
    assert old in MSMR
    _check_error(error_of(MSMR.replace(old, new, 1)), key_path, line, fragment)


def test_map_server_role_needs_a_site() -> None:
    err = error_of(MSMR.split("[[site]]")[0])
    _check_error(
        err, "daemon.roles", 2, "role 'map-server' needs at least one [[site]] (the sites allowed"
    )


def test_co_located_roles_may_use_own_rloc() -> None:
    """An xTR + MS/MR may register with and resolve through itself."""
    text = XTR_CP.replace('"itr", "etr"', '"itr", "etr", "map-server", "map-resolver"').replace(
        '"192.0.2.10"', '"192.0.2.2"'
    ) + site_text("site-a", "198.51.100.0/28")
    config = parse_config(text)
    assert config.map_servers[0].address == config.rloc_v4 == config.map_resolvers[0]
    assert config.sites[0].prefixes[0].prefix == config.database[0].prefix


def test_ipv6_map_server_with_an_ipv6_rloc() -> None:
    text = XTR_CP.replace('rlocs = ["192.0.2.2"]', 'rlocs = ["192.0.2.2", "2001:db8:0:1::2"]')
    config = parse_config(text.replace('address = "192.0.2.10"', 'address = "2001:db8::10"'))
    assert config.map_servers[0].address == ipaddress.ip_address("2001:db8::10")
    assert config.map_resolvers[0] == ipaddress.ip_address("2001:db8::10")


def test_map_resolvers_without_send_map_request() -> None:
    # Map-Resolvers alone are fine (e.g. only static entries for now); so is an ETR without any.
    assert parse_config(BASE + "[[map-resolver]]\naddress = '192.0.2.10'\n").map_resolvers
    assert parse_config(BASE).map_servers == ()


SEND_MAP_REQUEST = '\n[[map-cache]]\neid-prefix = "198.51.100.0/24"\naction = "send-map-request"\n'


def test_send_map_request_needs_a_map_resolver() -> None:
    err = error_of(BASE + SEND_MAP_REQUEST)  # 11 [[map-cache]]  12 eid-prefix  13 action
    _check_error(
        err,
        "map-cache[0].action",
        13,
        '"send-map-request" needs at least one [[map-resolver]] to send the Map-Requests to',
    )


def test_send_map_request_needs_the_itr_role() -> None:
    text = XTR_CP.replace('"itr", "etr"', '"etr"') + SEND_MAP_REQUEST  # action on line 20
    _check_error(error_of(text), "map-cache[0].action", 20, "needs the 'itr' or 'pitr' role")
    config = parse_config(XTR_CP + SEND_MAP_REQUEST)
    (entry,) = config.map_cache
    assert entry.action == "send-map-request" and entry.is_negative and entry.rlocs == ()
    assert entry.prefix == ipaddress.ip_network("198.51.100.0/24")


def test_duplicate_site_name() -> None:
    err = error_of(MSMR + site_text("site-a", "198.51.100.16/28"))  # name on line 13
    _check_error(err, "site[1].name", 13, "site name 'site-a' is already site[0]")


# (prefixes of site-a, prefixes of site-b, key path, line, fragment) - site-a's prefixes are on
# line 11 and site-b's on line 16.
# fmt: off
OVERLAPS = [
    (["198.51.100.0/24"], ["198.51.100.16/28"], "site[1].eid-prefixes[0].eid-prefix", 16,
     "198.51.100.16/28 in instance-id 0 of site 'site-b' is inside 198.51.100.0/24 of site "
     "'site-a' (site[0].eid-prefixes[0]); an EID-prefix can belong to one site only"),
    (["198.51.100.16/28"], ["203.0.113.0/24", "198.51.100.0/24"],
     "site[1].eid-prefixes[1].eid-prefix", 16,
     "198.51.100.0/24 in instance-id 0 of site 'site-b' contains 198.51.100.16/28 of site "
     "'site-a' (site[0].eid-prefixes[0])"),
    (["203.0.113.0/24", "198.51.100.0/28"], ["198.51.100.0/28"],
     "site[1].eid-prefixes[0].eid-prefix", 16,
     "198.51.100.0/28 in instance-id 0 of site 'site-b' is also 198.51.100.0/28 of site "
     "'site-a' (site[0].eid-prefixes[1])"),
    (["2001:db8:100::/48"], ["2001:db8:100:1::/64"], "site[1].eid-prefixes[0].eid-prefix", 16,
     "2001:db8:100:1::/64 in instance-id 0 of site 'site-b' is inside 2001:db8:100::/48"),
    (["0.0.0.0/0"], ["198.51.100.1/32"], "site[1].eid-prefixes[0].eid-prefix", 16,
     "is inside 0.0.0.0/0 of site 'site-a'"),
]
# fmt: on


@pytest.mark.parametrize(("a", "b", "key_path", "line", "fragment"), OVERLAPS)
def test_site_prefixes_overlapping_across_sites(
    a: list[str], b: list[str], key_path: str, line: int, fragment: str
) -> None:
    text = MSMR.split("[[site]]")[0] + site_text("site-a", *a) + site_text("site-b", *b)
    lines = text.splitlines()
    assert lines[10].startswith("eid-prefixes") and lines[15].startswith("eid-prefixes")
    _check_error(error_of(text), key_path, line, fragment)


def test_site_overlap_reports_the_first_conflict_in_file_order() -> None:
    text = (
        MSMR.split("[[site]]")[0]
        + site_text("a", "198.51.100.0/24")
        + site_text("b", "198.51.100.0/26")
        + site_text("c", "198.51.100.0/28")
    )
    err = error_of(text)
    assert err.key_path == "site[1].eid-prefixes[0].eid-prefix"
    assert "of site 'b' is inside 198.51.100.0/24 of site 'a'" in err.message
    # The same conflict whatever the order of the prefixes in the address space.
    text = (
        MSMR.split("[[site]]")[0]
        + site_text("a", "198.51.100.0/28")
        + site_text("b", "198.51.100.64/26")
        + site_text("c", "198.51.100.0/24")
    )
    err = error_of(text)
    assert err.key_path == "site[2].eid-prefixes[0].eid-prefix"
    assert "of site 'c' contains 198.51.100.0/28 of site 'a' (site[0]" in err.message


def test_site_prefixes_that_do_not_conflict() -> None:
    base = MSMR.split("[[site]]")[0]
    # Nested prefixes of one site, other instance-ids, other families, neighbours: all fine.
    text = (
        base
        + site_text("a", "198.51.100.0/24", "198.51.100.0/28", "2001:db8:100::/48")
        + site_text("b", "198.51.100.0/24", iid=1)
        + site_text("c", "203.0.113.0/25", "2001:db8:101::/48")
        + site_text("d", "203.0.113.128/25")
    )
    assert [site.name for site in parse_config(text).sites] == ["a", "b", "c", "d"]


def test_many_sites() -> None:
    sites = "".join(site_text(f"s{i}", f"10.{i // 256}.{i % 256}.0/24") for i in range(3000))
    config = parse_config(MSMR.split("[[site]]")[0] + sites)
    assert len(config.sites) == 3000
    err = error_of(MSMR.split("[[site]]")[0] + sites + site_text("last", "10.11.0.0/16"))
    assert err.key_path == "site[3000].eid-prefixes[0].eid-prefix"
    assert "contains 10.11.0.0/24 of site 's2816'" in err.message


def test_keys_never_shown() -> None:
    xtr = parse_config(XTR_CP)
    msmr = parse_config(MSMR)
    for shown in (repr(xtr), str(xtr), repr(xtr.map_servers), repr(msmr), repr(msmr.sites[0])):
        assert SECRET not in shown
        assert "key=" not in shown.replace("key_id=", "")
    assert "key_id=2" in repr(xtr.map_servers[0])
    assert xtr.map_servers[0].key == b"s3cret-ms" and msmr.sites[0].key == b"s3cret-a"


@pytest.mark.parametrize(
    "broken",
    [
        'key = "s3cret-ms',  # unterminated string
        "key = s3cret-ms",  # not a value
        'key = "s3cret\\q"',  # bad escape
        'key = "s3cret\x01ms"',  # control character
        'key = "s3cret-ms" trailing',
        'key = "s3cret-ms"\nkey = "s3cret-ms"',  # duplicate key
    ],
)
def test_keys_never_shown_in_syntax_errors(broken: str) -> None:
    err = error_of(XTR_CP.replace('key = "s3cret-ms"', broken))
    assert "TOML syntax error" in err.message
    assert SECRET not in str(err) and SECRET not in repr(err)


def test_keys_keep_the_model_hashable_and_comparable() -> None:
    a, b = parse_config(XTR_CP), parse_config(XTR_CP.replace('"s3cret-ms"', '"s3cret-other"'))
    assert a != b  # a key change is a configuration change (a reload sees it)
    assert len({a, b, parse_config(XTR_CP)}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.map_servers[0].key = b"x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.resolver.retries = 1  # type: ignore[misc]


# -- the model ----------------------------------------------------------------------------------


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


def test_pitr_needs_a_send_map_request_entry() -> None:
    text = BASE.split("[[database-mapping]]")[0].replace('"itr", "etr"', '"pitr"')
    err = error_of(text)
    assert (err.key_path, err.line) == ("daemon.roles", 2)
    assert "send-map-request" in err.message
    pitr = text + '\n[[map-resolver]]\naddress = "192.0.2.10"\n' + SEND_MAP_REQUEST
    assert parse_config(pitr).roles == frozenset({"pitr"})


def test_petrs_and_probing() -> None:
    text = XTR_CP + (
        '\n[[petr]]\naddress = "192.0.2.10"\n\n[[petr]]\naddress = "192.0.2.14"\n'
        "priority = 2\n\n[probing]\ninterval = 1.5\n"
    )
    config = parse_config(text)
    assert [(str(p.address), p.priority, p.weight) for p in config.petrs] == [
        ("192.0.2.10", 1, 100),
        ("192.0.2.14", 2, 100),
    ]
    assert config.probing.interval == 1.5 and config.probing.down_after == 3
    etr_only = text.replace('roles = ["itr", "etr"]', 'roles = ["etr"]')
    assert error_of(etr_only).key_path == "petr[0]"
    twice = XTR_CP + '\n[[petr]]\naddress = "192.0.2.10"\n[[petr]]\naddress = "192.0.2.10"\n'
    assert "is already petr[0]" in error_of(twice).message
    v6 = XTR_CP + '\n[[petr]]\naddress = "2001:db8::10"\n'
    assert "unreachable" in error_of(v6).message


def test_dataplane_offloads_modes_and_the_older_booleans() -> None:
    """``offloads``: "auto" by default (no UDP GSO: a veth/bridge next hop would get bursts
    unsegmented), "gso" only when asked for; true/false of older configs mean auto/off."""
    default = parse_config(BASE, "test.conf").dataplane
    assert default.offloads == "auto" and default.local_offloads and not default.udp_gso
    for written, mode, local, gso in (
        ('"auto"', "auto", True, False),
        ('"gso"', "gso", True, True),
        ('"off"', "off", False, False),
        ("true", "auto", True, False),
        ("false", "off", False, False),
    ):
        got = parse_config(BASE + f"\n[dataplane]\noffloads = {written}\n", "test.conf").dataplane
        assert (got.offloads, got.local_offloads, got.udp_gso) == (mode, local, gso), written
    for bad, says in (
        ('"on"', "'on' is not one of auto, gso, off"),
        ('"GSO"', "did you mean 'gso'?"),
        ("1", 'must be one of "auto", "gso", "off" (or true/false), not an integer'),
    ):
        err = error_of(BASE + f"\n[dataplane]\noffloads = {bad}\n")
        assert (err.key_path, err.line) == ("dataplane.offloads", 12), err
        assert says in err.message, err.message


def test_dataplane_workers_default_one_per_core_and_bounds() -> None:
    assert parse_config(BASE, "test.conf").dataplane.workers == 0  # 0: one engine per core
    assert parse_config(BASE + "\n[dataplane]\nworkers = 4\n", "test.conf").dataplane.workers == 4
    for bad in ("-1", "257", '"auto"'):
        err = error_of(BASE + f"\n[dataplane]\nworkers = {bad}\n")
        assert (err.key_path, err.line) == ("dataplane.workers", 12), err


def test_dataplane_busy_poll_microseconds_and_bounds() -> None:
    default = parse_config(BASE, "test.conf").dataplane.busy_poll
    assert 0 <= default <= 1000
    got = parse_config(BASE + "\n[dataplane]\nbusy-poll = 0\n", "test.conf")
    assert got.dataplane.busy_poll == 0
    got = parse_config(BASE + "\n[dataplane]\nbusy-poll = 1000\n", "test.conf")
    assert got.dataplane.busy_poll == 1000
    for bad in ("-1", "1001", '"50us"'):
        err = error_of(BASE + f"\n[dataplane]\nbusy-poll = {bad}\n")
        assert (err.key_path, err.line) == ("dataplane.busy-poll", 12), err
