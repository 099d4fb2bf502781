"""The tests' lispd.conf builder (tests/configs.py), and every configuration the namespace tests
build with it, parsed here without root (their plans are plain data)."""

from __future__ import annotations

import tomllib
from collections.abc import Callable

import pytest

from lispd.config import Config, parse_config
from lispd.lab import (
    elp_topology,
    mapping_system_topology,
    nat_topology,
    proxy_topology,
    two_site_topology,
)
from tests import configs
from tests.netns import (
    common,
    test_controlplane,
    test_dataplane,
    test_elp,
    test_lispctl,
    test_metrics,
    test_proxy,
    test_rtr_nat,
    test_security,
)

SOCK = "/run/lispd-test/node.sock"


# -- the builder ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "roles"),
    [
        (configs.xtr, {"itr", "etr"}),
        (configs.msmr, {"map-server", "map-resolver"}),
        (configs.rtr, {"rtr"}),
        (configs.pxtr, {"pitr", "petr"}),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_every_shape_is_a_valid_configuration(
    shape: Callable[..., configs.Doc], roles: set[str]
) -> None:
    doc = shape()
    text = configs.toml(doc)
    assert tomllib.loads(text) == doc
    config = parse_config(text)
    assert config.roles == roles
    assert config.daemon.control_socket == ""  # no control socket unless asked for


def test_keyword_tables_merge_replace_and_remove() -> None:
    base = configs.xtr(petr=configs.addresses("192.0.2.30"), probing={"interval": 5})
    doc = configs.merge(
        base,
        daemon={"log-level": "debug", "control-socket": None},
        map_cache=[configs.resolve("0.0.0.0/0")],
        map_resolver=configs.addresses("192.0.2.10"),
        petr=None,
        probing={"timeout": 1},
    )
    assert doc["daemon"] == {"name": "xtr1", "roles": ["itr", "etr"], "log-level": "debug"}
    assert doc["map-cache"] == [{"eid-prefix": "0.0.0.0/0", "action": "send-map-request"}]
    assert "petr" not in doc and doc["probing"] == {"interval": 5, "timeout": 1}
    assert base["daemon"]["control-socket"] == "" and "petr" in base  # a copy: base unchanged
    config = parse_config(configs.toml(doc))
    assert config.daemon.control_socket == "/run/lispd/lispd.sock"  # left out: the default
    assert (config.probing.interval, config.probing.timeout) == (5.0, 1.0)


def test_entries() -> None:
    assert configs.mapping("10.0.0.0/8", "192.0.2.1", {"elp": ["a", "b"]}, instance_id=7) == {
        "eid-prefix": "10.0.0.0/8",
        "instance-id": 7,
        "rlocs": [{"address": "192.0.2.1"}, {"elp": ["a", "b"]}],
    }
    assert configs.negative("10.0.0.0/8", "drop") == {"eid-prefix": "10.0.0.0/8", "action": "drop"}
    assert configs.site("s", "k", "10.0.0.0/8", {"eid-prefix": "10.1.0.0/16"}) == {
        "name": "s",
        "key": "k",
        "eid-prefixes": [{"eid-prefix": "10.0.0.0/8"}, {"eid-prefix": "10.1.0.0/16"}],
    }
    assert configs.map_server("192.0.2.10", "k", key_id=1, proxy_reply=True) == {
        "address": "192.0.2.10",
        "key": "k",
        "key-id": 1,
        "proxy-reply": True,
    }


def test_the_text_is_laid_out_as_an_operator_writes_it() -> None:
    """Arrays of tables as ``[[name]]`` entries (tomli-w alone writes short ones inline, which
    a reload test could not append to), a table too long for a line under its own header."""
    long_path = [f"2001:db8:0:{n}::20" for n in range(20, 26)]
    doc = configs.xtr(
        rlocs=("192.0.2.1", "2001:db8:0:1::1"),
        map_cache=[configs.mapping("198.51.100.16/28", {"elp": [*long_path, "2001:db8::2"]})],
        map_resolver=configs.addresses("192.0.2.10"),
    )
    text = configs.toml(doc)
    assert text.startswith("[daemon]\n")
    assert "\n[[map-resolver]]\naddress = " in text and "\n[[map-cache.rlocs]]\n" in text
    assert tomllib.loads(text) == doc
    appended = text + '\n[[map-cache]]\neid-prefix = "203.0.113.0/24"\naction = "drop"\n'
    assert len(parse_config(appended).map_cache) == 2


# -- the namespace tests' configurations ----------------------------------------------------------


def _parses(text: str, name: str, roles: set[str]) -> Config:
    config = parse_config(text, f"{name}.conf")
    assert (config.daemon.name, set(config.roles)) == (name, roles)
    return config


def test_common_and_the_mapping_system_lab() -> None:
    plan = mapping_system_topology()
    site = plan.sites[0]
    ms = _parses(
        test_controlplane.msmr_config(plan, SOCK, timeout=9),
        "msmr",
        {"map-server", "map-resolver"},
    )
    assert ms.mapping_system.registration_timeout == 9.0 and len(ms.sites) == len(plan.sites)
    xtr = _parses(
        test_controlplane.xtr_config(plan, site, SOCK, priority=7, interval=1, record_ttl=5),
        site.xtr,
        {"itr", "etr"},
    )
    assert {r.priority for m in xtr.database for r in m.rlocs} == {7}
    assert (xtr.registration.interval, xtr.registration.record_ttl) == (1.0, 5)
    assert xtr.daemon.control_socket == SOCK and xtr.daemon.log_level == "debug"
    assert configs.toml(test_controlplane.xtr_doc(plan, site, SOCK)) == (
        test_controlplane.xtr_config(plan, site, SOCK)
    )
    plain = _parses(
        common.xtr_config(site, SOCK, plan.msmr_rloc, "k", metrics=test_metrics.METRICS),
        site.xtr,
        {"itr", "etr"},
    )
    assert [str(m.prefix) for m in plain.map_cache] == ["0.0.0.0/0", "::/0"]
    assert plain.metrics is not None and plain.metrics.listen == test_metrics.LISTEN
    one_site = mapping_system_topology(sites=1)
    secured = test_security.Site1(None, one_site).config(SOCK)  # type: ignore[arg-type]
    assert _parses(secured, one_site.sites[0].xtr, {"itr", "etr"}).resolver.retries == 0


def test_the_two_site_lab() -> None:
    plan = two_site_topology()
    for me in (1, 2):
        for probing in (None, (0.5, 0.25, 2)):
            text = common.two_site_failover_config(plan, me, SOCK, probing)
            config = _parses(text, f"xtr{me}", {"itr", "etr"})
            assert [r.priority for r in config.map_cache[0].rlocs] == [1, 2]
            if probing is not None:
                assert config.probing.down_after == 2
    s1, s2 = test_dataplane.sites(plan)
    xtr1 = test_dataplane.XtrConfig(
        s1,
        s2,
        SOCK,
        iid=7,
        underlay=6,
        underlay_mtu=1400,
        tun_mtu=1300,
        fastpath="python",
        workers=1,
        extra_map_cache=[configs.mapping("198.51.100.16/29", plan.xtr2_rloc_v4)],
    )
    config = _parses(xtr1.text(), "xtr1", {"itr", "etr"})
    assert (config.underlay.mtu, config.tun.mtu, config.dataplane.workers) == (1400, 1300, 1)
    assert {m.instance_id for m in config.database + config.map_cache[:2]} == {7}
    assert str(config.map_cache[0].rlocs[0].address) == plan.xtr2_rloc_v6
    default = _parses(test_dataplane.XtrConfig(s2, s1, SOCK).text(), "xtr2", {"itr", "etr"})
    assert default.dataplane.workers == 0 and default.underlay.mtu == 1500


def test_the_nat_elp_and_proxy_labs() -> None:
    nat = nat_topology()
    site = nat.sites[0]
    xtr = _parses(test_rtr_nat.xtr_config(nat, site, SOCK, 0.5), site.xtr, {"itr", "etr"})
    assert xtr.nat_traversal.enabled and xtr.probing.timeout == 0.5
    rtr = _parses(
        test_rtr_nat.rtr_config(nat, SOCK, map_cache=test_lispctl.RTR_STATIC), "rtr1", {"rtr"}
    )
    assert [str(m.prefix) for m in rtr.map_cache] == [test_lispctl.STATIC_EID]
    assert _parses(test_rtr_nat.ms_config(nat, SOCK), "ms", {"map-server", "map-resolver"})

    elp = elp_topology()
    s1, s2 = elp.sites
    path = [elp.rtra_rloc_v4, elp.rtrb_rloc_v4, s2.rloc]
    with_path = _parses(test_elp.xtr_config(elp, s2, SOCK, path), s2.xtr, {"itr", "etr"})
    assert [str(h) for h in with_path.database[0].rlocs[0].elp] == path
    behind_nat = _parses(test_elp.xtr_config(elp, s1, SOCK, None, nat=True), s1.xtr, {"itr", "etr"})
    assert behind_nat.nat_traversal.enabled
    assert _parses(test_elp.ms_config(elp, SOCK), "ms", {"map-server", "map-resolver"})
    assert _parses(test_elp.rtr_config(elp, "rtra", elp.rtra_rloc_v4, SOCK), "rtra", {"rtr"})

    proxy = proxy_topology()
    site = proxy.sites[0]
    xtr = _parses(
        test_proxy.xtr_config(proxy, site, SOCK, [proxy.pxtr_rloc]), site.xtr, {"itr", "etr"}
    )
    assert [str(p.address) for p in xtr.petrs] == [proxy.pxtr_rloc]
    pxtr = _parses(
        test_proxy.pxtr_config(proxy, SOCK), "pxtr", {"map-server", "map-resolver", "pitr", "petr"}
    )
    assert pxtr.mapping_system.negative_ttl == 1 and len(pxtr.map_cache) == 2
