"""Unit tests of lispd.config for the RTR role, NAT traversal and Explicit Locator Paths:
``[nat-traversal]``, ``[rtr]``, ``mapping-system.rtr-rlocs`` and ``elp`` in RLOC tables."""

from __future__ import annotations

import ipaddress

import pytest

from lispd.config import (
    ROOT,
    Config,
    ConfigError,
    MappingSystemConfig,
    NatTraversalConfig,
    Rloc,
    RtrConfig,
    key_paths,
    parse_config,
)
from tests.unit.test_config import BASE, DUAL, MSMR, XTR_CP, error_of

ip = ipaddress.ip_address


def check_error(text: str, key_path: str, line: int | None, fragment: str) -> ConfigError:
    """Parsing ``text`` fails at ``key_path`` on ``line`` with ``fragment`` in the message."""
    err = error_of(text)
    assert (err.key_path, err.line) == (key_path, line), err
    assert fragment in err.message, err
    where = "test.conf" if line is None else f"test.conf:{line}"
    assert str(err) == f"{where}: {key_path}: {err.message}"
    return err


def test_new_keys_are_in_the_schema() -> None:
    accepted = set(key_paths(ROOT))
    for path in [
        ("nat-traversal", "enabled"),
        ("nat-traversal", "info-interval"),
        ("nat-traversal", "keepalive-interval"),
        ("rtr", "public-rlocs"),
        ("rtr", "nat-binding-timeout"),
        ("rtr", "max-nat-bindings"),
        ("mapping-system", "rtr-rlocs"),
        ("database-mapping", "rlocs", "elp"),
        ("map-cache", "rlocs", "elp"),
    ]:
        assert path in accepted, path
    assert ("petr", "elp") not in accepted  # a PETR is a plain RLOC


# -- defaults ---------------------------------------------------------------------------------


def test_defaults() -> None:
    config = parse_config(BASE)
    assert config.nat_traversal == NatTraversalConfig(
        enabled=False, info_interval=15.0, keepalive_interval=10.0
    )
    assert config.rtr == RtrConfig(
        public_rlocs=(), nat_binding_timeout=120.0, max_nat_bindings=100000
    )
    assert config.mapping_system.rtr_rlocs == ()
    assert config.database[0].rlocs[0].elp == ()
    # The schema's defaults are the model's.
    assert config.nat_traversal == NatTraversalConfig()
    assert config.rtr == RtrConfig()
    assert config.mapping_system == MappingSystemConfig()
    bare = Config(daemon=config.daemon, tun=config.tun, underlay=config.underlay)
    assert (bare.nat_traversal, bare.rtr) == (config.nat_traversal, config.rtr)
    assert Rloc(ip("192.0.2.2")).elp == ()
    assert isinstance(config.nat_traversal.info_interval, float)
    assert isinstance(config.nat_traversal.keepalive_interval, float)
    assert isinstance(config.rtr.nat_binding_timeout, float)


# -- [nat-traversal] --------------------------------------------------------------------------

NAT = "[nat-traversal]\nenabled = true\n"


def test_nat_traversal_all_values_given() -> None:
    config = parse_config(
        XTR_CP + "[nat-traversal]\nenabled = true\ninfo-interval = 0.1\nkeepalive-interval = 3600\n"
    )
    assert config.nat_traversal == NatTraversalConfig(True, 0.1, 3600.0)
    assert isinstance(config.nat_traversal.keepalive_interval, float)  # an integer is accepted
    config = parse_config(
        XTR_CP + "[nat-traversal]\ninfo-interval = 3600\nkeepalive-interval = 0.1"
    )
    assert config.nat_traversal == NatTraversalConfig(False, 3600.0, 0.1)


@pytest.mark.parametrize("roles", ['"etr"', '"itr", "etr"'])
def test_nat_traversal_with_the_etr_role(roles: str) -> None:
    text = XTR_CP.replace('"itr", "etr"', roles) + NAT
    assert parse_config(text).nat_traversal.enabled


def test_nat_traversal_lets_an_itr_use_map_servers() -> None:
    """An ITR behind a NAT sends Info-Requests to its [[map-server]]s without registering."""
    itr_only = XTR_CP.replace('"itr", "etr"', '"itr"')
    config = parse_config(itr_only + NAT)
    assert config.nat_traversal.enabled and config.map_servers[0].address == ip("192.0.2.10")
    # Without NAT traversal the [[map-server]] entries of an ITR would be ignored: an error,
    # that says how to use them.
    check_error(
        itr_only,
        "map-server[0]",
        11,
        "[[map-server]] is only used by the 'etr' role (to register the database-mappings), "
        "which daemon.roles does not have: add 'etr', set nat-traversal.enabled (an ITR behind "
        "a NAT sends them Info-Requests) or remove the [[map-server]] entries",
    )
    # The hint is for an ITR only.
    err = error_of(
        XTR_CP.replace('"itr", "etr"', '"rtr"').replace(
            'rlocs = [{ address = "192.0.2.2" }]', 'rlocs = [{ address = "192.0.2.6" }]'
        )
    )
    assert err.key_path == "map-server[0]" and "nat-traversal" not in err.message


def test_nat_traversal_needs_a_map_server() -> None:
    # 10 (blank)  11 [nat-traversal]  12 enabled
    check_error(
        BASE + "\n" + NAT,
        "nat-traversal.enabled",
        12,
        "NAT traversal needs at least one [[map-server]] (to send the Info-Requests to",
    )
    # Disabled, nothing is needed.
    assert not parse_config(BASE + "\n" + NAT.replace("true", "false")).nat_traversal.enabled


@pytest.mark.parametrize("roles", ['"map-server", "map-resolver"', '"rtr", "map-server"'])
def test_nat_traversal_needs_an_xtr_role(roles: str) -> None:
    text = MSMR.replace('"map-server", "map-resolver"', roles) + "\n" + NAT  # enabled: line 13
    check_error(
        text,
        "nat-traversal.enabled",
        13,
        "NAT traversal is for an xTR behind a NAT: it needs the 'etr' or 'itr' role, which "
        "daemon.roles does not have",
    )
    # The tuning keys alone are fine on any node, like those of [registration].
    tuned = MSMR + "\n[nat-traversal]\nenabled = false\ninfo-interval = 5\n"
    assert parse_config(tuned).nat_traversal.info_interval == 5.0


# -- [rtr] ------------------------------------------------------------------------------------

RTR = """\
[daemon]
roles = ["rtr"]

[underlay]
rlocs = ["10.0.0.5", "2001:db8:0:9::5"]
"""
"""An RTR in a cloud VM: private RLOCs behind a 1:1 NAT (its [rtr] table from line 6)."""


def test_rtr_all_values_given() -> None:
    config = parse_config(
        RTR + "[rtr]\npublic-rlocs = ['2001:db8:0:20::20', '203.0.113.20']\n"
        "nat-binding-timeout = 1\nmax-nat-bindings = 10000000\n"
    )
    assert config.rtr == RtrConfig(
        public_rlocs=(ip("2001:db8:0:20::20"), ip("203.0.113.20")),
        nat_binding_timeout=1.0,
        max_nat_bindings=10_000_000,
    )
    assert isinstance(config.rtr.nat_binding_timeout, float)
    config = parse_config(RTR + "[rtr]\nnat-binding-timeout = 86400\nmax-nat-bindings = 1\n")
    assert config.rtr == RtrConfig((), 86400.0, 1)


def test_rtr_table_without_the_rtr_role_is_checked_but_allowed() -> None:
    """Like [registration] or [mapping-system] without their role: checked, then unused."""
    config = parse_config(BASE + "[rtr]\npublic-rlocs = ['203.0.113.20']\n")
    assert config.rtr.public_rlocs == (ip("203.0.113.20"),) and not config.has_role("rtr")
    check_error(
        BASE + "[rtr]\nmax-nat-bindings = 0\n", "rtr.max-nat-bindings", 11, "from 1 to 10000000"
    )


def test_public_rlocs_need_a_local_rloc_of_their_family() -> None:
    v4_only = RTR.replace(', "2001:db8:0:9::5"', "")
    check_error(
        v4_only + "[rtr]\npublic-rlocs = ['203.0.113.20', '2001:db8:0:20::20']\n",
        "rtr.public-rlocs[1]",
        7,
        "2001:db8:0:20::20 is IPv6 and underlay.rlocs has no IPv6 address for it to stand for "
        "(a public RLOC is the address of a local RLOC of its family seen through a 1:1 NAT)",
    )


# Appended to RTR, from line 6: (text, key path, line, fragment of the message)
# fmt: off
RTR_CASES = [
    ("[rtr]\npublic-rlocs = '203.0.113.20'", "rtr.public-rlocs", 7,
     "must be an array, not a string"),
    ("[rtr]\npublic-rlocs = ['203.0.113.20', '203.0.113.20']", "rtr.public-rlocs[1]", 7,
     "duplicate of rtr.public-rlocs[0]"),
    ("[rtr]\npublic-rlocs = ['203.0.113.20', '203.0.113.21']", "rtr.public-rlocs[1]", 7,
     "203.0.113.21 is a second IPv4 RLOC after 203.0.113.20; give at most one per address "
     "family"),
    ("[rtr]\npublic-rlocs = ['203.0.113.20/32']", "rtr.public-rlocs[0]", 7, "is a prefix"),
    ("[rtr]\npublic-rlocs = ['224.0.0.20']", "rtr.public-rlocs[0]", 7, "multicast"),
    ("[rtr]\npublic-rlocs = ['0.0.0.0']", "rtr.public-rlocs[0]", 7, "unspecified"),
    ("[rtr]\npublic-rlocs = [3405803796]", "rtr.public-rlocs[0]", 7,
     "must be an IP address string, not an integer"),
    ("[rtr]\nnat-binding-timeout = 0.5", "rtr.nat-binding-timeout", 7,
     "must be from 1 to 86400, got 0.5"),
    ("[rtr]\nnat-binding-timeout = 86401", "rtr.nat-binding-timeout", 7, "got 86401"),
    ("[rtr]\nnat-binding-timeout = '120'", "rtr.nat-binding-timeout", 7,
     "must be a number, not a string"),
    ("[rtr]\nnat-binding-timeout = nan", "rtr.nat-binding-timeout", 7, "got nan"),
    ("[rtr]\nmax-nat-bindings = 0", "rtr.max-nat-bindings", 7,
     "must be from 1 to 10000000, got 0"),
    ("[rtr]\nmax-nat-bindings = 10000001", "rtr.max-nat-bindings", 7, "got 10000001"),
    ("[rtr]\nmax-nat-bindings = 1.5", "rtr.max-nat-bindings", 7,
     "must be an integer, not a float"),
    ("[rtr]\nmax-nat-bindings = true", "rtr.max-nat-bindings", 7,
     "must be an integer, not a boolean"),
    ("[rtr]\npublic_rlocs = []", "rtr.public_rlocs", 7, "did you mean 'public-rlocs'?"),
    ("[rtr]\nrlocs = []", "rtr.rlocs", 7,
     "allowed in rtr: public-rlocs, nat-binding-timeout, max-nat-bindings"),
    ("[[rtr]]\nmax-nat-bindings = 5", "rtr", 6, "must be a table, not an array"),
    ("[nat-traversal]\nenabled = 'yes'", "nat-traversal.enabled", 7,
     "must be true or false, not a string"),
    ("[nat-traversal]\nenabled = 1", "nat-traversal.enabled", 7,
     "must be true or false, not an integer"),
    ("[nat-traversal]\ninfo-interval = 0.09", "nat-traversal.info-interval", 7,
     "must be from 0.1 to 3600, got 0.09"),
    ("[nat-traversal]\ninfo-interval = 3600.5", "nat-traversal.info-interval", 7, "got 3600.5"),
    ("[nat-traversal]\ninfo-interval = '15s'", "nat-traversal.info-interval", 7,
     "must be a number, not a string"),
    ("[nat-traversal]\ninfo-interval = true", "nat-traversal.info-interval", 7,
     "must be a number, not a boolean"),
    ("[nat-traversal]\nkeepalive-interval = 0", "nat-traversal.keepalive-interval", 7,
     "must be from 0.1 to 3600, got 0"),
    ("[nat-traversal]\nkeepalive-interval = 3601", "nat-traversal.keepalive-interval", 7,
     "got 3601"),
    ("[nat-traversal]\nkeepalive-interval = inf", "nat-traversal.keepalive-interval", 7,
     "got inf"),
    ("[nat-traversal]\nkeepalive_interval = 5", "nat-traversal.keepalive_interval", 7,
     "did you mean 'keepalive-interval'?"),
    ("[nat-traversal]\ninterval = 5", "nat-traversal.interval", 7,
     "allowed in nat-traversal: enabled, info-interval, keepalive-interval"),
    ("[nat]\nenabled = false", "nat", 6, "unknown key 'nat'"),
    ("[[nat-traversal]]\nenabled = false", "nat-traversal", 6, "must be a table, not an array"),
    ("[mapping-system]\nrtr-rlocs = '192.0.2.20'", "mapping-system.rtr-rlocs", 7,
     "must be an array, not a string"),
    ("[mapping-system]\nrtr-rlocs = ['192.0.2.20', '2001:db8::20', '192.0.2.20']",
     "mapping-system.rtr-rlocs[2]", 7, "duplicate of mapping-system.rtr-rlocs[0]"),
    ("[mapping-system]\nrtr-rlocs = ['192.0.2.20/32']", "mapping-system.rtr-rlocs[0]", 7,
     "is a prefix"),
    ("[mapping-system]\nrtr-rlocs = ['ff02::1']", "mapping-system.rtr-rlocs[0]", 7, "multicast"),
    ("[mapping-system]\nrtr_rlocs = []", "mapping-system.rtr_rlocs", 7,
     "did you mean 'rtr-rlocs'?"),
]
# fmt: on


@pytest.mark.parametrize(("extra", "key_path", "line", "fragment"), RTR_CASES)
def test_table_errors(extra: str, key_path: str, line: int, fragment: str) -> None:
    assert RTR.count("\n") == 5
    check_error(RTR + extra + "\n", key_path, line, fragment)


# -- [mapping-system] rtr-rlocs ---------------------------------------------------------------


def test_rtr_rlocs() -> None:
    text = MSMR + "\n[mapping-system]\nrtr-rlocs = ['192.0.2.20', '2001:db8:0:20::20']\n"
    config = parse_config(text)
    # File order kept; an IPv6 RTR is fine for a Map-Server without an IPv6 RLOC (it only names
    # it, to xTRs that may reach it).
    assert config.mapping_system.rtr_rlocs == (ip("192.0.2.20"), ip("2001:db8:0:20::20"))
    assert config.mapping_system.registration_timeout == 180.0


def test_rtr_rlocs_may_be_this_node_with_the_rtr_role() -> None:
    own = "\n[mapping-system]\nrtr-rlocs = ['192.0.2.20', '192.0.2.10']\n"  # rtr-rlocs: line 13
    check_error(
        MSMR + own,
        "mapping-system.rtr-rlocs[1]",
        13,
        "192.0.2.10 is this node's own RLOC, but daemon.roles has no 'rtr' role to relay there",
    )
    with_rtr = MSMR.replace('"map-server", "map-resolver"', '"map-server", "map-resolver", "rtr"')
    assert parse_config(with_rtr + own).mapping_system.rtr_rlocs[1] == ip("192.0.2.10")


# -- Explicit Locator Paths ---------------------------------------------------------------------

PLAIN = '{ address = "192.0.2.2" }'
"""The one RLOC of BASE's database-mapping, on line 9."""


def with_rloc(*rlocs: str, text: str = BASE) -> str:
    """``text`` with its database-mapping's RLOC set replaced by ``rlocs``."""
    assert PLAIN in text
    return text.replace(PLAIN, ", ".join(rlocs), 1)


def test_elp_in_a_database_mapping() -> None:
    text = with_rloc(
        '{ elp = ["203.0.113.1", "203.0.113.5", "192.0.2.2"], priority = 2, weight = 30 }'
    )
    (rloc,) = parse_config(text).database[0].rlocs
    hops = (ip("203.0.113.1"), ip("203.0.113.5"), ip("192.0.2.2"))
    assert rloc == Rloc(address=ip("192.0.2.2"), priority=2, weight=30, elp=hops)
    assert isinstance(rloc.elp, tuple)
    # Defaults as for an address.
    (rloc,) = parse_config(with_rloc('{ elp = ["203.0.113.1", "192.0.2.2"] }')).database[0].rlocs
    assert (rloc.address, rloc.priority, rloc.weight) == (ip("192.0.2.2"), 1, 100)
    assert rloc.elp == (ip("203.0.113.1"), ip("192.0.2.2"))


def test_elp_next_to_plain_rlocs() -> None:
    text = with_rloc(
        PLAIN, '{ elp = ["2001:db8:0:20::20", "2001:db8:0:1::5"], priority = 2 }', text=DUAL
    )
    plain, path = parse_config(text).database[0].rlocs
    assert plain == Rloc(ip("192.0.2.2")) and plain.elp == ()
    assert path.address == ip("2001:db8:0:1::5") and path.priority == 2
    assert path.elp == (ip("2001:db8:0:20::20"), ip("2001:db8:0:1::5"))


def test_elp_in_a_map_cache_entry() -> None:
    entry = (
        '\n[[map-cache]]\neid-prefix = "198.51.100.16/28"\n'
        'rlocs = [{ elp = ["192.0.2.20", "192.0.2.24", "192.0.2.6"], weight = 7 }]\n'
    )
    (rloc,) = parse_config(BASE + entry).map_cache[0].rlocs
    assert rloc.address == ip("192.0.2.6") and rloc.weight == 7
    assert rloc.elp == (ip("192.0.2.20"), ip("192.0.2.24"), ip("192.0.2.6"))


def test_elp_counts_as_its_last_hop_for_an_etr() -> None:
    """With the etr role a database-mapping lists one of underlay.rlocs: an elp ending at it."""
    err = check_error(
        with_rloc('{ elp = ["192.0.2.2", "203.0.113.1"] }'),  # this node first, not last
        "database-mapping[0].rlocs",
        9,
        "lists none of underlay.rlocs (192.0.2.2); an ETR must list at least one of its own RLOCs",
    )
    assert "elp" not in err.message
    # Without the etr role no RLOC of the set needs to be local.
    itr_only = BASE.replace('["itr", "etr"]', '["itr"]')
    text = with_rloc('{ elp = ["192.0.2.2", "203.0.113.1"] }', text=itr_only)
    assert parse_config(text).database[0].rlocs[0].address == ip("203.0.113.1")


def test_elp_family_must_be_reachable_in_the_map_cache() -> None:
    entry = (
        '\n[[map-cache]]\neid-prefix = "198.51.100.16/28"\n'  # rlocs: line 13
        'rlocs = [{ elp = ["2001:db8:0:20::20", "2001:db8:0:2::2"] }]\n'
    )
    check_error(
        BASE + entry,
        "map-cache[0].rlocs",
        13,
        "unreachable: all are IPv6 and underlay.rlocs has no IPv6 address",
    )
    assert parse_config(DUAL + entry).map_cache[0].rlocs[0].address == ip("2001:db8:0:2::2")


def test_petr_has_no_elp() -> None:
    petr = '\n[[petr]]\naddress = "192.0.2.10"\nelp = ["192.0.2.20", "192.0.2.10"]\n'
    check_error(
        XTR_CP + petr,
        "petr[0].elp",
        20,
        "unknown key 'elp' (allowed in petr[0]: address, priority, weight)",
    )
    check_error(
        XTR_CP + "\n[[petr]]\npriority = 1\n", "petr[0].address", 18, "required key is missing"
    )


# Replacements of BASE's database RLOC (line 9): (new RLOC set, key path, fragment)
# fmt: off
ELP_CASES = [
    ('{ address = "192.0.2.2", elp = ["203.0.113.1", "192.0.2.2"] }',
     "database-mapping[0].rlocs[0].elp",
     "give either address or elp, not both (the address of a path is its last hop)"),
    ('{ priority = 1 }', "database-mapping[0].rlocs[0].address",
     "required key is missing (or give elp, an Explicit Locator Path)"),
    ('{ elp = ["192.0.2.2"] }', "database-mapping[0].rlocs[0].elp",
     "an Explicit Locator Path needs at least 2 hops (the last is the ETR), got 1; give a single "
     "RLOC as address instead"),
    ('{ elp = [] }', "database-mapping[0].rlocs[0].elp", "needs at least 2 hops"),
    ('{ elp = ["203.0.113.1", "203.0.113.1", "192.0.2.2"] }',
     "database-mapping[0].rlocs[0].elp[1]", "duplicate of database-mapping[0].rlocs[0].elp[0]"),
    ('{ elp = ["203.0.113.1", "192.0.2.2", "203.0.113.1"] }',
     "database-mapping[0].rlocs[0].elp[2]", "duplicate of database-mapping[0].rlocs[0].elp[0]"),
    ('{ elp = ["2001:db8::1", "192.0.2.2"] }', "database-mapping[0].rlocs[0].elp[1]",
     "192.0.2.2 is IPv4 but elp[0] (2001:db8::1) is IPv6; all hops of a path must be of one "
     "address family"),
    ('{ elp = ["203.0.113.1", "2001:db8::1", "192.0.2.2"] }',
     "database-mapping[0].rlocs[0].elp[1]", "2001:db8::1 is IPv6 but elp[0] (203.0.113.1)"),
    ('{ elp = "192.0.2.2" }', "database-mapping[0].rlocs[0].elp",
     "must be an array, not a string"),
    ('{ elp = ["203.0.113.1", "224.0.0.1", "192.0.2.2"] }',
     "database-mapping[0].rlocs[0].elp[1]", "224.0.0.1 is a multicast address"),
    ('{ elp = ["203.0.113.1", "192.0.2.2/32"] }', "database-mapping[0].rlocs[0].elp[1]",
     "is a prefix; give just the address"),
    ('{ elp = [1, 2] }', "database-mapping[0].rlocs[0].elp[0]",
     "must be an IP address string, not an integer"),
    ('{ elp = ["203.0.113.1", "192.0.2.2"], priority = 256 }',
     "database-mapping[0].rlocs[0].priority", "must be from 0 to 255, got 256"),
    ('{ path = ["203.0.113.1", "192.0.2.2"] }', "database-mapping[0].rlocs[0].path",
     "unknown key 'path'"),
    ('{ address = "192.0.2.2" }, { elp = ["203.0.113.1", "192.0.2.2"] }',
     "database-mapping[0].rlocs[1].elp[1]",
     "192.0.2.2 is already rlocs[0]; an ETR is in an RLOC set once, on its own or as the last "
     "hop of an elp"),
    ('{ elp = ["203.0.113.1", "192.0.2.2"] }, { address = "192.0.2.2" }',
     "database-mapping[0].rlocs[1].address", "192.0.2.2 is already rlocs[0]; an ETR is in"),
    ('{ elp = ["203.0.113.1", "192.0.2.2"] }, { elp = ["203.0.113.5", "192.0.2.2"] }',
     "database-mapping[0].rlocs[1].elp[1]", "192.0.2.2 is already rlocs[0]"),
]
# fmt: on


@pytest.mark.parametrize(("rlocs", "key_path", "fragment"), ELP_CASES)
def test_elp_errors(rlocs: str, key_path: str, fragment: str) -> None:
    check_error(with_rloc(rlocs), key_path, 9, fragment)


def test_elp_errors_in_a_map_cache_entry() -> None:
    entry = '\n[[map-cache]]\neid-prefix = "198.51.100.16/28"\nrlocs = [{ elp = ["192.0.2.6"] }]\n'
    check_error(BASE + entry, "map-cache[0].rlocs[0].elp", 13, "needs at least 2 hops")
    entry = entry.replace('["192.0.2.6"]', '["192.0.2.6", "192.0.2.6"]')
    check_error(BASE + entry, "map-cache[0].rlocs[0].elp[1]", 13, "duplicate of")


def test_elp_errors_name_the_line_of_the_hop() -> None:
    text = BASE.replace(
        f"rlocs = [{PLAIN}]",
        'rlocs = [\n  { elp = [\n    "203.0.113.1",\n    "203.0.113.1",\n'
        '    "192.0.2.2",\n  ] },\n]',
    )
    check_error(text, "database-mapping[0].rlocs[0].elp[1]", 12, "duplicate of")
