"""benchmarks.ddt without a lab: the EID plan, the configurations it writes, the Map-Registers it
sends (accepted by lispd's own Map-Server), and the in-process referral cache measure."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address, ip_network

import pytest

from benchmarks import ddt
from lispd.config import parse_config
from lispd.control.mapserver import MapServer, SitePrefixSpec, SiteSpec
from lispd.wire.mapregister import decode_map_notify, decode_map_register


@pytest.mark.parametrize(("sites", "map_servers"), [(200, 2), (10_000, 8), (7, 3)])
def test_plan_nests_every_prefix_in_its_parent(sites: int, map_servers: int) -> None:
    plan = ddt.Plan(sites, map_servers)
    children = {plan.ms_child(m) for m in range(map_servers)}
    assert children == set(range(len(children))) and len(children) <= 2
    ms_prefixes = [plan.ms_prefix(m) for m in range(map_servers)]
    assert len(set(ms_prefixes)) == map_servers
    for m, prefix in enumerate(ms_prefixes):
        assert prefix.subnet_of(plan.child_prefix(plan.ms_child(m)))
    for c in children:
        assert plan.child_prefix(c).subnet_of(ddt.ROOT_PREFIX)
    site_prefixes = [plan.site_prefix(i) for i in range(sites)]
    assert len(set(site_prefixes)) == sites
    for i, prefix in enumerate(site_prefixes):
        assert prefix.prefixlen == 48 and prefix.subnet_of(ms_prefixes[plan.site_ms(i)])
        assert plan.eid(i, ddt.EID_COLD) in prefix
    assert sorted(i for m in range(map_servers) for i in plan.ms_sites(m)) == list(range(sites))
    # every address of the lab is a documentation one, and distinct
    addresses = [ip_address(plan.address(n)) for n in plan.nodes]
    addresses += [ip_address(plan.core_address(n)) for n in plan.nodes]
    addresses += [ip_address(plan.source(k)) for k in range(plan.sources)]
    assert len(set(addresses)) == len(addresses)
    assert all(a in ip_network("192.0.2.0/24") or a in ip_network("198.51.100.0/24")
               for a in addresses)  # fmt: skip


def test_plan_refuses_what_the_eid_plan_cannot_hold() -> None:
    with pytest.raises(ValueError, match="Map-Servers"):
        ddt.Plan(100, 9)
    with pytest.raises(ValueError, match="sites"):
        ddt.Plan(2 * ddt.MAX_SITES_PER_MS + 1, 2)


def test_sample_sites_take_turns_between_map_servers() -> None:
    plan = ddt.Plan(10_000, 8)
    picked = plan.sample_sites(1000)
    assert len(picked) == len(set(picked)) == 1000
    assert [plan.site_ms(i) for i in picked[:16]] == [*range(8), *range(8)]
    assert max(picked) > 9000  # spread over each Map-Server's sites, not its first ones


def test_configurations_parse_and_describe_the_tree() -> None:
    plan = ddt.Plan(200, 2)
    root = parse_config(ddt.root_config(plan, "/run/x.sock"))
    assert [(a.prefix, a.instance_id) for a in root.ddt_authorities] == [(ddt.ROOT_PREFIX, 0)]
    assert [(d.prefix, d.kind, d.referrals) for d in root.ddt_delegations] == [
        (plan.child_prefix(c), "ddt-node", (IPv4Address(plan.address(f"ddt{c + 1}")),))
        for c in range(2)
    ]
    child = parse_config(ddt.child_config(plan, 1, "/run/x.sock"))
    assert [(d.prefix, d.kind, d.referrals) for d in child.ddt_delegations] == [
        (plan.ms_prefix(1), "map-server", (IPv4Address(plan.address("ms2")),))
    ]
    ms = parse_config(ddt.ms_config(plan, 0, "/run/x.sock"))
    assert ms.daemon.roles == frozenset({"map-server"})
    assert [s.prefixes[0].prefix for s in ms.sites] == [
        plan.site_prefix(i) for i in plan.ms_sites(0)
    ]
    mr = parse_config(ddt.mr_config(plan, "/run/x.sock"))
    assert mr.ddt.roots == (IPv4Address(plan.address("root")),) and not mr.sites
    msmr = parse_config(ddt.msmr_config(plan, "/run/x.sock"))
    assert len(msmr.sites) == 200 and not msmr.ddt.roots
    assert msmr.mapping_system.registration_timeout == plan.registration_timeout


def test_map_register_is_accepted_by_lispds_map_server_with_proxy_reply() -> None:
    plan = ddt.Plan(20, 2)
    sites = [
        SiteSpec(f"site{i}", plan.site_key(i).encode(), (SitePrefixSpec(0, plan.site_prefix(i)),))
        for i in plan.ms_sites(1)
    ]
    server = MapServer(sites)
    i = 7  # a site of Map-Server 1
    raw = ddt.map_register(plan, i, nonce=0x1234)
    msg = decode_map_register(raw)
    assert msg.proxy_reply and msg.want_map_notify
    (notify,) = server.on_map_register(raw, msg, IPv4Address("198.51.100.2"), 40000, now=1.0)
    assert decode_map_notify(notify.payload).nonce == 0x1234
    reg = server.lookup(0, plan.eid(i, ddt.EID_WARM))
    assert reg is not None and reg.proxy_reply and reg.prefix == plan.site_prefix(i)
    # a byte changed after signing: refused
    forged = ddt.map_register(plan, 9, nonce=1)[:-1] + b"\0"
    assert server.on_map_register(forged, decode_map_register(forged), IPv4Address("198.51.100.2"),
                                  40000, now=2.0) == []  # fmt: skip
    assert server.drops["register-auth-failed"] == 1


def test_referral_cache_memory_holds_what_the_resolver_would() -> None:
    plan = ddt.Plan(50, 2)
    figures = ddt.referral_cache_memory(plan, "pure")
    assert figures["entries"] == 2 + 2 + 50 and figures["backend"] == "pure"
    assert figures["tracemalloc_bytes_per_entry"] > 100  # a referral is not free
    assert figures["lookup_us"] > 0
    assert 0 < len(figures["tracemalloc_top"]) <= 8


def test_summary_and_ratios() -> None:
    s = ddt.summary([1.0, 2.0, 3.0, 4.0], lost=1)
    assert s == {"samples": 4, "lost": 1, "median_ms": 2.5, "p95_ms": 3.85, "max_ms": 4.0,
                 "min_ms": 1.0}  # fmt: skip
    base = ddt.summary([0.5, 1.0], lost=0)
    assert ddt.ratios(s, base) == {"median": 3.33, "p95": 3.95, "max": 4.0}
    assert ddt.summary([], lost=3)["median_ms"] is None
    assert ddt.ratios(ddt.summary([], 3), base)["median"] is None


def test_ddt_counters_pick_the_ddt_section_and_its_drops() -> None:
    stats = {
        "packets": {"x": 1},
        "drops": {"ddt-request-rate-limited": 3, "request-rate-limited": 2, "other": 9},
        "ddt": {"resolutions": 5},
    }
    assert ddt.ddt_counters(stats) == {
        "resolutions": 5,
        "drops": {"ddt-request-rate-limited": 3, "request-rate-limited": 2},
    }
    assert ddt.ddt_counters({"drops": {}}) == {}
