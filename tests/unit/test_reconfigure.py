"""Reload planning and in-place control-plane updates (lispd.node.reload), without sockets."""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from typing import Any

from lispd.config import parse_config
from lispd.node.build import build_control_plane, build_tables
from lispd.node.reload import plan_reload, update_control_plane
from lispd.wire.mapregister import decode_map_register
from tests import configs

SITE_A = configs.site("a", "k", "198.51.100.0/28")
SITE_B = configs.site("b", "k2", "198.51.100.16/28")


def xtr(
    level: str = "info",
    ms: str = "192.0.2.50",
    key: str = "secret",
    retries: int = 3,
    **tables: Any,
) -> str:
    """An xTR registering with and resolving through ``ms``, with a PETR; ``tables`` as in
    :func:`tests.configs.merge`."""
    doc = configs.xtr(
        control_socket=None,
        daemon={"log-level": level},
        map_server=[configs.map_server(ms, key)],
        map_resolver=configs.addresses(ms),
        resolver={"retries": retries},
        petr=configs.addresses("203.0.113.9"),
    )
    return configs.toml(configs.merge(doc, **tables))


def msmr(negative: int, *more_sites: configs.Doc) -> str:
    """The Map-Server/Map-Resolver of site a and ``more_sites``."""
    return configs.toml(
        configs.msmr(
            "ms",
            ("192.0.2.50",),
            (SITE_A, *more_sites),
            control_socket=None,
            mapping_system={"negative-ttl": negative},
        )
    )


def plane_of(text: str) -> object:
    config = parse_config(text)
    _cache, database = build_tables(config, 0.0)
    return build_control_plane(config, database, lambda: 7)


def test_identical_configuration_changes_nothing() -> None:
    plan = plan_reload(parse_config(xtr()), parse_config(xtr()))
    assert plan.applied == () and plan.restart_needed == ()


def test_live_sections_are_applied_and_named() -> None:
    plan = plan_reload(
        parse_config(xtr()), parse_config(xtr(level="debug", ms="192.0.2.51", retries=5))
    )
    assert set(plan.applied) == {"daemon.log-level", "map-server", "map-resolver", "resolver"}
    assert plan.restart_needed == ()
    assert plan.effective.map_resolvers == (ip_address("192.0.2.51"),)


def test_settings_needing_a_restart_keep_their_running_values() -> None:
    running = parse_config(xtr())
    new_text = xtr(
        level="debug", daemon={"control-socket": "/run/other.sock"}, underlay={"mtu": 1400}
    )
    plan = plan_reload(running, parse_config(new_text))
    assert set(plan.restart_needed) == {"daemon.control-socket", "underlay", "tun"}
    assert plan.applied == ("daemon.log-level",)
    assert plan.effective.daemon.control_socket == running.daemon.control_socket
    assert plan.effective.underlay == running.underlay
    assert plan.effective.tun == running.tun
    assert plan.effective.daemon.log_level == "debug"


def test_map_servers_under_nat_traversal_need_a_restart() -> None:
    nat = {"enabled": True}
    running = parse_config(xtr(nat_traversal=nat))
    plan = plan_reload(running, parse_config(xtr(ms="192.0.2.51", nat_traversal=nat)))
    assert "map-server (with nat-traversal)" in plan.restart_needed
    assert plan.effective.map_servers == running.map_servers
    assert "map-server" not in plan.applied


def test_resolver_keeps_its_state_and_follows_the_new_settings() -> None:
    plane = plane_of(xtr())
    resolver = plane.resolver  # type: ignore[attr-defined]
    sends = update_control_plane(plane, plane_of(xtr(ms="192.0.2.51", retries=5)), 1.0)  # type: ignore[arg-type]
    assert plane.resolver is resolver  # type: ignore[attr-defined]
    assert resolver.map_resolvers == (ip_address("192.0.2.51"),)
    assert resolver.settings.retries == 5
    # The new Map-Server is registered with at once, the old one told to forget us.
    by_dst = {str(s.dst): decode_map_register(s.payload) for s in sends}
    assert set(by_dst) == {"192.0.2.50", "192.0.2.51"}
    assert by_dst["192.0.2.50"].ttl_timeout
    assert all(r.ttl == 0 for r in by_dst["192.0.2.50"].records)
    assert not by_dst["192.0.2.51"].ttl_timeout


def test_changed_key_reregisters_without_withdrawing() -> None:
    plane = plane_of(xtr())
    plane.registrar.on_timer(0.0)  # type: ignore[attr-defined]
    sends = update_control_plane(plane, plane_of(xtr(key="rotated")), 5.0)  # type: ignore[arg-type]
    [send] = sends
    assert not decode_map_register(send.payload).ttl_timeout


def test_map_server_keeps_registrations_of_sites_still_configured() -> None:
    plane = plane_of(msmr(15, SITE_B))
    ms = plane.map_server  # type: ignore[attr-defined]
    update_control_plane(plane, plane_of(msmr(5)), 1.0)  # type: ignore[arg-type]
    assert plane.map_server is ms  # type: ignore[attr-defined]
    assert [s.name for s in ms.sites] == ["a"]
    assert plane.map_resolver.negative_ttl_minutes == 5  # type: ignore[attr-defined]
    assert ms.site_prefix(0, ip_address("198.51.100.17")) is None
    assert ms.site_prefix(0, ip_address("198.51.100.1"))[0] == ip_network("198.51.100.0/28")


def test_a_machine_the_new_configuration_adds_or_removes_follows_it() -> None:
    plane = plane_of(xtr())
    no_petr_no_probe = xtr(petr=None, probing={"map-cache": False})
    update_control_plane(plane, plane_of(no_petr_no_probe), 1.0)  # type: ignore[arg-type]
    assert plane.prober is None  # type: ignore[attr-defined]
    update_control_plane(plane, plane_of(xtr()), 2.0)  # type: ignore[arg-type]
    assert plane.prober is not None  # type: ignore[attr-defined]
