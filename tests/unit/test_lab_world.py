"""The seed world without namespaces: its plan (nat_topology(outside_world=True)), the lispd
configurations it runs (validated by the real config parser), the demo's story formatting,
what ``lispd-lab up`` prints, the command line and the demo's signal handling."""

from __future__ import annotations

import io
import ipaddress
import os
import signal
from pathlib import Path

import pytest

from lispd.config import parse_config
from lispd.lab import NodeKind, Topology, nat_topology
from lispd.lab.cli import parser
from lispd.lab.demo import Interrupted, interruptible, restore_signals
from lispd.lab.session import explore_text
from lispd.lab.story import Story
from lispd.lab.world import (
    SITE_KEYS,
    daemon_nodes,
    ms_config,
    rtr_config,
    seed_plan,
    socket_path,
    world_configs,
    xtr_config,
)

SOCKS = Path("/run/lispd-lab/world")


def routes(topo: Topology, node: str) -> set[tuple[str, str]]:
    """``(destination, gateway)`` of ``node``'s static routes."""
    return {(str(r.dst), str(r.via)) for r in topo.routes if r.node == node}


# -- the plan ---------------------------------------------------------------------------------


def test_default_nat_topology_is_unchanged_by_the_outside_world_option() -> None:
    plain, seed = nat_topology(), seed_plan()
    assert not plain.outside_world and seed.outside_world
    assert "outside" not in plain.topology.nodes
    assert [str(a) for a in plain.topology.interface("ms").addresses] == ["192.0.2.2/30"]
    assert routes(plain.topology, "gxtr1") == {("0.0.0.0/0", "192.0.2.133")}
    assert routes(plain.topology, "core") == {("192.0.2.100/32", "192.0.2.6")}
    plain_nodes = set(plain.topology.nodes)
    assert set(seed.topology.nodes) == plain_nodes | {"outside"}


def test_seed_plan_adds_the_outside_world_around_core() -> None:
    p = seed_plan()
    topo = p.topology
    topo.validate()  # documentation ranges only, gateways on links
    assert topo.node(p.outside).kind is NodeKind.HOST
    outside = topo.interface(p.outside)
    assert outside.name == p.outside_if
    assert {str(a) for a in outside.addresses} == {f"{p.outside_v4}/30", f"{p.outside_v6}/64"}
    assert topo.interface(p.core, p.outside).name == p.core_outside_if
    assert ipaddress.ip_address(p.outside_v4) in ipaddress.ip_network(p.outside_space_v4)
    assert ipaddress.ip_address(p.outside_v6) in ipaddress.ip_network(p.outside_space_v6)
    ms = {str(a) for a in topo.interface(p.ms).addresses}
    assert ms == {f"{p.ms_rloc_v4}/30", f"{p.ms_v6}/64"}
    core = routes(topo, p.core)
    assert (p.eid_space_v4, p.ms_rloc_v4) in core and (p.eid_space_v6, p.ms_v6) in core
    assert ("::/0", p.core_ms_v6) in routes(topo, p.ms)
    assert ("::/0", p.core_outside_v6) in routes(topo, p.outside)
    for site in p.sites:  # the underlay stays reachable once lispd takes the default route
        assert ("192.0.2.0/24", site.router_side) in routes(topo, site.xtr)


# -- the configurations -----------------------------------------------------------------------


def test_every_daemon_config_validates() -> None:
    p = seed_plan()
    configs = world_configs(p, SOCKS)
    assert list(configs) == daemon_nodes(p) == ["ms", "rtr1", "gxtr1", "xtr2"]
    for node, text in configs.items():
        config = parse_config(text, f"{node}.conf")
        assert config.daemon.name == node
        assert config.daemon.control_socket == str(socket_path(SOCKS, node))


def test_ms_is_mapping_system_pitr_and_petr() -> None:
    p = seed_plan()
    config = parse_config(ms_config(p, SOCKS / "ms.sock"))
    assert config.daemon.roles == {"map-server", "map-resolver", "pitr", "petr"}
    assert [str(a) for a in config.mapping_system.rtr_rlocs] == [p.rtr1_public_v4]
    keys = {s.name: s.key for s in config.sites}
    assert keys == {"site1": SITE_KEYS[1].encode(), "site2": SITE_KEYS[2].encode()}
    attracted = {str(m.prefix) for m in config.map_cache if m.action == "send-map-request"}
    assert attracted == {p.eid_space_v4, p.eid_space_v6}
    assert [str(a) for a in config.map_resolvers] == [p.ms_rloc_v4]


def test_rtr_uses_ms_as_map_resolver_and_petr() -> None:
    p = seed_plan()
    config = parse_config(rtr_config(p, SOCKS / "rtr1.sock"))
    assert "rtr" in config.daemon.roles
    assert [str(a) for a in config.underlay.rlocs] == [p.rtr1_private_v4]
    assert [str(a) for a in config.rtr.public_rlocs] == [p.rtr1_public_v4]
    assert [str(r.address) for r in config.petrs] == [p.ms_rloc_v4]
    assert [str(a) for a in config.map_resolvers] == [p.ms_rloc_v4]


@pytest.mark.parametrize("index", [0, 1])
def test_xtrs_traverse_their_nat_and_resolve_everything(index: int) -> None:
    p = seed_plan()
    site = p.sites[index]
    config = parse_config(xtr_config(p, site, SOCKS / f"{site.xtr}.sock"))
    assert config.daemon.roles == {"itr", "etr"}
    assert config.nat_traversal.enabled
    assert [str(a) for a in config.underlay.rlocs] == [site.rloc]
    assert {str(m.prefix) for m in config.database} == {site.prefix_v4, site.prefix_v6}
    assert {str(m.prefix) for m in config.map_cache} == {"0.0.0.0/0", "::/0"}
    assert [(str(m.address), m.key) for m in config.map_servers] == [
        (p.ms_rloc_v4, SITE_KEYS[site.index].encode())
    ]


# -- the story --------------------------------------------------------------------------------


def test_story_prints_steps_commands_and_a_summary() -> None:
    out = io.StringIO()
    story = Story(out)
    story.step("First")
    story.say("A short line.")
    story.command("h1", ["pinger", "-c", "3", "198.51.100.18"], "reply 1\n\nsent=3 received=3\n")
    story.command("", ["lispctl", "-s", "x y.sock", "show", "nat"], "")
    story.check("ping", True)
    story.check("trace", False, "exit status 1")
    story.summary(12.34, torn_down=True)
    assert out.getvalue() == (
        "\n"
        "[1] First\n"
        "    A short line.\n"
        "    h1# pinger -c 3 198.51.100.18\n"
        "        reply 1\n"
        "\n"
        "        sent=3 received=3\n"
        "    # lispctl -s 'x y.sock' show nat\n"
        "        (no output)\n"
        "    FAILED: trace: exit status 1\n"
        "\n"
        "Summary\n"
        "    ok      ping\n"
        "    FAILED  trace\n"
        "demo FAILED: 1 of 2 checks passed in 12.3 s; everything torn down.\n"
    )
    assert [c.name for c in story.failed] == ["trace"]


def test_story_verdicts() -> None:
    for kwargs, verdict in (
        (
            {"torn_down": True},
            "demo succeeded: all 1 checks passed in 1.0 s; everything torn down.",
        ),
        ({"torn_down": False}, "demo FAILED: 1 of 1 checks passed in 1.0 s; TEARDOWN INCOMPLETE."),
        (
            {"torn_down": True, "interrupted": "SIGINT"},
            "demo INTERRUPTED by SIGINT after 1 passed checks in 1.0 s; everything torn down.",
        ),
    ):
        out = io.StringIO()
        story = Story(out)
        story.check("one", True)
        story.summary(1.0, **kwargs)  # type: ignore[arg-type]
        assert out.getvalue().splitlines()[-1] == verdict


# -- up's instructions, the command line, signals ---------------------------------------------


def test_explore_text_names_the_namespaces_sockets_and_down_command(tmp_path: Path) -> None:
    p = seed_plan()
    state = {
        "keeper_pid": 4242,
        "run_id": "4242a",
        "workdir": str(tmp_path / "world"),
        "namespaces": {n: f"lt4242a-{n}" for n in p.topology.nodes},
        "daemons": {n: 100 + i for i, n in enumerate(daemon_nodes(p))},
        "sockets": {n: str(socket_path(tmp_path / "world", n)) for n in daemon_nodes(p)},
        "configs": {n: str(tmp_path / "world" / f"{n}-lispd.conf") for n in daemon_nodes(p)},
        "python": "/usr/bin/python3",
        "state_dir": str(tmp_path),
    }
    text = explore_text(state)
    assert "ip netns exec lt4242a-h1 bash" in text
    assert f"-c 3 {p.h2_v4}" in text and f"-c 3 {p.outside_v6}" in text
    assert f"-s {tmp_path}/world/gxtr1.sock show map-cache" in text
    assert "ip netns exec lt4242a-gxtr1 " in text and f"gxtr1-lispd.conf {p.h2_v4}" in text
    assert text.endswith(f"Tear it down with: lispd-lab --state-dir {tmp_path} down")
    state["state_dir"] = "/run/lispd-lab"
    assert explore_text(state).endswith("Tear it down with: lispd-lab down")


def test_command_line() -> None:
    args = parser().parse_args(["demo"])
    assert args.command == "demo" and args.state_dir == Path("/run/lispd-lab")
    args = parser().parse_args(["--state-dir", "/tmp/x", "down"])
    assert args.command == "down" and args.state_dir == Path("/tmp/x")
    with pytest.raises(SystemExit):
        parser().parse_args([])
    with pytest.raises(SystemExit):
        parser().parse_args(["sideways"])


def test_first_signal_interrupts_later_ones_are_ignored() -> None:
    try:
        with pytest.raises(Interrupted) as info, interruptible():
            os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("SIGTERM did not interrupt")
        assert info.value.signum == signal.SIGTERM and str(info.value) == "SIGTERM"
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)  # ignored while tearing down
    finally:
        restore_signals()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
