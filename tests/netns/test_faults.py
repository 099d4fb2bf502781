"""Faults, proved and measured through real namespaces: an ETR RLOC, a Map-Server, a
Map-Resolver going down, and an xTR's lispd killed with SIGKILL and started again.

Each test prints what it measured (``pytest -s`` shows it):

- RLOC failover: lispd.lab.two_site_topology, each xTR mapping the other site to its IPv4 RLOC
  (priority 1) and its IPv6 RLOC (priority 2), probing with the defaults scaled down 20 times
  (interval 0.5 s, timeout 0.15 s, down-after 3).  A 50 ms ping runs from A to B while R starts
  dropping everything to and from xTR2's IPv4 RLOC; the time from the cut to the first reply
  after it is the failover time, at most three probe intervals.
- Map-Server / Map-Resolver down: lispd.lab.mapping_system_topology(second_msmr=True), every
  ETR registering with both MS/MRs every second, every ITR resolving through msmr then msmr2.
  msmr's lispd is SIGKILLed; msmr2 keeps every registration fresh past the registration
  timeout, the ETRs show msmr unacknowledged and msmr2 acknowledged, and new EIDs resolve
  through msmr2: the first after one retransmission interval, the following at once.
- SIGKILL and restart: the TUN device and every route to it go with the process; its policy
  rules and throw routes stay (harmless: they lead to an empty table) until a lispd started
  again removes them, installs its own, and forwards within a few seconds.  On a TUN created
  beforehand as persistent the killed run's routes stay too; the next run removes them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lispd.api.client import request
from lispd.engine import compiled
from lispd.lab import (
    DaemonHandle,
    Lab,
    MappingSystemPlan,
    TwoSitePlan,
    mapping_system_topology,
    two_site_topology,
)
from tests import configs
from tests.netns import common
from tests.netns.common import PING_INTERVAL, continuous_ping, ping_rtt, sigkill, wait_for

pytestmark = pytest.mark.netns

# --- 1. an ETR RLOC goes down -----------------------------------------------------------------

# The defaults (interval 10, timeout 3, down-after 3) scaled down 20 times.
PROBE_INTERVAL, PROBE_TIMEOUT, DOWN_AFTER = 0.5, 0.15, 3


@contextlib.contextmanager
def two_site_lab(
    probing: tuple[float, float, int] | None,
) -> Iterator[tuple[Lab, TwoSitePlan, dict[int, DaemonHandle]]]:
    """The two-site lab with both xTRs running; daemons still running at the end must stop
    cleanly."""
    plan = two_site_topology()
    with Lab(plan.topology) as lab:
        daemons: dict[int, DaemonHandle] = {}
        try:
            for n, node in ((1, plan.xtr1), (2, plan.xtr2)):
                sock = str(lab.workdir / f"xtr{n}.sock")
                daemons[n] = lab.start_lispd(
                    node, common.two_site_failover_config(plan, n, sock, probing)
                )
            yield lab, plan, daemons
        finally:
            for daemon in daemons.values():
                if daemon.running():
                    assert daemon.stop() == 0, daemon.log_tail()


def test_etr_rloc_down_traffic_fails_over_within_three_probe_intervals() -> None:
    probing = (PROBE_INTERVAL, PROBE_TIMEOUT, DOWN_AFTER)
    with two_site_lab(probing) as (lab, plan, _daemons):
        sock1 = str(lab.workdir / "xtr1.sock")
        v4, v6 = plan.xtr2_rloc_v4, plan.xtr2_rloc_v6

        def state(rloc: str) -> str | None:
            return {r["rloc"]: r["state"] for r in request(sock1, "rlocs")}.get(rloc)

        def replies(rloc: str) -> int:
            return next(r["replies"] for r in request(sock1, "rlocs") if r["rloc"] == rloc)

        wait_for("both RLOCs of xTR2 up", lambda: state(v4) == state(v6) == "up")
        with continuous_ping(lab, plan.host_a, plan.host_b_v4, 8.0) as ping:
            wait_for("replies flowing", lambda: len(ping.times()) >= 10)
            # The worst moment: just after a probe was answered, the longest wait for the next.
            answered = replies(v4)
            wait_for("a probe answered", lambda: replies(v4) > answered, 2.0, poll=0.005)
            cut = time.monotonic()  # before nft runs: the rule acts a little later, if anything
            lab.run(plan.r, "nft", "-f", "-", input=(
                "table ip cut {\n  chain cutter {\n    type filter hook forward priority 0;\n"
                f"    ip daddr {v4} drop\n    ip saddr {v4} drop\n  }}\n}}\n"
            ))  # fmt: skip
            wait_for("xTR2's IPv4 RLOC down", lambda: state(v4) == "down", timeout=5.0)
            seen_down = time.monotonic()
            marked_down = seen_down - cut  # as seen by polling every 50 ms
            wait_for("replies again", lambda: ping.first_reply_after(seen_down), timeout=5.0)
            time.sleep(0.2)
            failover = ping.outage_after(cut)
        seqs = {seq for _, seq in ping.replies}
        lost = max(seqs) - min(seqs) + 1 - len(seqs)
        print(
            f"\n[faults] RLOC failover: replies resumed {failover:.3f} s after the cut "
            f"(RLOC marked down after {marked_down:.3f} s; probing interval {PROBE_INTERVAL} s, "
            f"timeout {PROBE_TIMEOUT} s, down-after {DOWN_AFTER}; limit "
            f"{3 * PROBE_INTERVAL:.2f} s + two ping intervals); {lost} pings lost"
        )
        assert failover <= 3 * PROBE_INTERVAL + 2 * PING_INTERVAL, f"failover {failover:.3f} s"
        entry = next(
            e for e in request(sock1, "map-cache") if e["eid-prefix"] == plan.site_b_prefix_v4
        )
        assert [(r["address"], r["up"]) for r in entry["rlocs"]] == [(v4, False), (v6, True)]


# --- 2. and 3. a Map-Server / Map-Resolver goes down ------------------------------------------

KEYS = {1: "key-one", 2: "key-two", 3: "key-three"}
REGISTRATION_TIMEOUT = 3


@dataclass
class MappingNet:
    """Two MS/MRs (msmr, msmr2) and two sites whose xTRs register with both and resolve
    through msmr first, msmr2 second.  xtr2 knows site 1 statically, so that the round trip of
    a first ping from h1 to h2 is the time xtr1 held it while resolving."""

    lab: Lab
    plan: MappingSystemPlan
    daemons: dict[str, DaemonHandle]

    def sock(self, node: str) -> str:
        return str(self.lab.workdir / f"{node}.sock")

    def ask(self, node: str, command: str) -> Any:
        return request(self.sock(node), command)

    def registered(self, ms: str) -> set[str]:
        return {r["eid-prefix"] for r in self.ask(ms, "site")}

    def all_prefixes(self) -> set[str]:
        return {p for s in self.plan.sites for p in (s.prefix_v4, s.prefix_v6)}


@contextlib.contextmanager
def mapping_net() -> Iterator[MappingNet]:
    plan = mapping_system_topology(sites=2, second_msmr=True)
    with Lab(plan.topology) as lab:
        net = MappingNet(lab, plan, {})
        try:
            mapping_system = {"registration-timeout": REGISTRATION_TIMEOUT}
            for name, rloc in ((plan.msmr, plan.msmr_rloc), (plan.msmr2, plan.msmr2_rloc)):
                config = common.ms_config(
                    name, rloc, net.sock(name), plan.sites, KEYS, mapping_system=mapping_system
                )
                net.daemons[name] = lab.start_lispd(name, config)
            for site in plan.sites:
                doc = common.xtr_doc(
                    site,
                    net.sock(site.xtr),
                    plan.msmr_rloc,
                    KEYS[site.index],
                    registration={"interval": 1},
                )
                doc["map-server"].append(configs.map_server(plan.msmr2_rloc, KEYS[site.index]))
                doc["map-resolver"] += configs.addresses(plan.msmr2_rloc)
                if site is plan.sites[1]:
                    back = plan.sites[0]
                    doc["map-cache"] += [
                        configs.mapping(prefix, back.rloc)
                        for prefix in (back.prefix_v4, back.prefix_v6)
                    ]
                net.daemons[site.xtr] = lab.start_lispd(site.xtr, configs.toml(doc))
            want = net.all_prefixes()
            for ms in (plan.msmr, plan.msmr2):
                wait_for(f"every site on {ms}", lambda ms=ms: net.registered(ms) == want)
            yield net
        finally:
            for daemon in net.daemons.values():
                if daemon.running():
                    assert daemon.stop() == 0, daemon.log_tail()


def test_map_server_down_registrations_continue_on_the_other() -> None:
    with mapping_net() as net:
        plan = net.plan
        killed = time.monotonic()
        sigkill(net.daemons[plan.msmr])
        # Well past the registration timeout: without fresh Map-Registers msmr2 would have
        # dropped every site by now.
        time.sleep(REGISTRATION_TIMEOUT + 1.5)
        sites = net.ask(plan.msmr2, "site")
        assert {r["eid-prefix"] for r in sites} == net.all_prefixes(), sites
        assert all(r["last-registered-ago"] <= 1.5 for r in sites), sites
        for site in plan.sites:
            status = {s["address"]: s for s in net.ask(site.xtr, "registrations")}
            assert not status[plan.msmr_rloc]["acknowledged"], status
            assert status[plan.msmr2_rloc]["acknowledged"], status
            assert status[plan.msmr_rloc]["registers-sent"] >= REGISTRATION_TIMEOUT, status
        lispctl = [sys.executable, "-m", "lispd.cli.lispctl", "-s", net.sock(plan.sites[0].xtr)]
        shown = subprocess.run(
            [*lispctl, "show", "registrations"],
            capture_output=True, text=True, timeout=20, check=True, cwd=common.REPO,
        ).stdout  # fmt: skip
        # Resolution through the surviving MS/MR.
        site1, site2 = plan.sites
        rtt = ping_rtt(net.lab, site1.host, site2.host_v4)
        assert rtt is not None, "no reply through msmr2"
        print(
            f"\n[faults] Map-Server down: msmr2 still holds all {len(sites)} registrations "
            f"{time.monotonic() - killed:.1f} s after msmr was killed (registration timeout "
            f"{REGISTRATION_TIMEOUT} s); first ping through it {rtt:.3f} s\n{shown}"
        )


def test_map_resolver_down_resolution_uses_the_next_one() -> None:
    with mapping_net() as net:
        plan = net.plan
        site1, site2 = plan.sites
        sigkill(net.daemons[plan.msmr])
        first = ping_rtt(net.lab, site1.host, site2.host_v4)
        second = ping_rtt(net.lab, site1.host, site2.host_v6)
        stats = net.ask(site1.xtr, "stats")
        print(
            f"\n[faults] Map-Resolver down: first packet to a new EID waited "
            f"{first if first is None else round(first, 3)} s (retry-interval 1 s), "
            f"the next new EID {second if second is None else round(second, 3)} s"
        )
        assert first is not None, "the first packet was lost"
        assert second is not None, "the second new EID's first packet was lost"
        assert first <= 1.0 + 0.5, first  # one retransmission interval
        # Once msmr2 answered, new lookups start with it rather than with the dead msmr.
        assert second < 0.5, second
        assert "resolve-timeout" not in stats["drops"], stats["drops"]
        cache = {e["eid-prefix"]: e for e in net.ask(site1.xtr, "map-cache")}
        for prefix in (site2.prefix_v4, site2.prefix_v6):
            assert cache[prefix]["rlocs"][0]["address"] == site2.rloc, cache


# --- 4. SIGKILL and restart -------------------------------------------------------------------


def test_sigkilled_lispd_leaves_no_route_and_a_restart_forwards_within_seconds() -> None:
    with two_site_lab(None) as (lab, plan, daemons):
        sock1 = str(lab.workdir / "xtr1.sock")
        config = daemons[1].config_path.read_text()
        assert lab.ping(plan.host_a, plan.host_b_v4, count=2)
        assert lab.ping(plan.host_a, plan.host_b_v6, count=2)

        def tun_links() -> str:
            return lab.run(plan.xtr1, "ip", "-o", "link", "show", "type", "tun").stdout

        def routes() -> str:
            v4 = lab.run(plan.xtr1, "ip", "-N", "-4", "route", "show", "table", "all").stdout
            v6 = lab.run(plan.xtr1, "ip", "-N", "-6", "route", "show", "table", "all").stdout
            return v4 + v6

        def rules() -> str:
            v4 = lab.run(plan.xtr1, "ip", "-N", "-4", "rule").stdout
            return v4 + lab.run(plan.xtr1, "ip", "-N", "-6", "rule").stdout

        assert "lisp0" in tun_links()
        before, rules_before = routes(), rules()
        for prefix in (plan.site_b_prefix_v4, plan.site_b_prefix_v6):
            assert f"{prefix} dev lisp0 table 4341" in before, before

        with continuous_ping(lab, plan.host_a, plan.host_b_v4, 15.0) as ping:
            wait_for("replies flowing", lambda: len(ping.times()) >= 5)
            killed = time.monotonic()
            sigkill(daemons[1])
            # The TUN goes with its last queue: the workers die just after (PR_SET_PDEATHSIG).
            wait_for("the killed run's TUN gone", lambda: tun_links() == "", timeout=5.0)
            after = routes()
            assert "lisp0" not in after and "198.51.100.16" not in after, after
            assert "2001:db8:100:2::" not in after, after
            # What a SIGKILL leaves: the rules and the throw routes of the local EID-prefixes
            # (harmless: a lookup in table 4341 finds nothing and goes on to the next rule).
            assert rules().replace(" [detached]", "") == rules_before  # the TUN is gone
            assert Path(sock1).exists()  # the stale control socket: replaced on restart

            restarted = time.monotonic()
            daemons[1] = lab.start_lispd(plan.xtr1, config)
            ready = time.monotonic() - restarted
            forwarding = wait_for(
                "replies after the restart", lambda: ping.first_reply_after(restarted), 10.0
            )
            time.sleep(0.3)
        assert request(sock1, "version")["name"] == "xtr1"
        # The restart removed the killed run's leftovers and installed its own: one set.
        assert routes() == before and rules() == rules_before
        assert "removed leftover routes and rules of an earlier run" in daemons[1].log_text()
        assert lab.ping(plan.host_a, plan.host_b_v6, count=1)
        print(
            f"\n[faults] SIGKILL and restart: READY=1 {ready:.3f} s after the restart, first "
            f"reply {forwarding - restarted:.3f} s after it; outage from the kill "
            f"{forwarding - killed:.3f} s; the restart removed what the killed run left"
        )
        assert forwarding - restarted <= 5.0


def test_on_a_persistent_tun_a_restart_removes_the_routes_a_killed_run_left() -> None:
    """A TUN created beforehand as persistent (``ip tuntap add``) outlives lispd: the routes of
    a SIGKILLed run stay on it, and the next run removes them and installs its own (here site
    B's IPv6 prefix is gone from the map-cache, so its route is not back)."""
    with two_site_lab(None) as (lab, plan, daemons):
        config = daemons[1].config_path.read_text()
        assert daemons[1].stop() == 0, daemons[1].log_tail()
        lab.run(plan.xtr1, "ip", "tuntap", "add", "dev", "lisp0", "mode", "tun")

        def routes() -> str:
            return lab.run(
                plan.xtr1, "ip", "-6", "route", "show", "table", "4341", "dev", "lisp0"
            ).stdout

        daemons[1] = lab.start_lispd(plan.xtr1, config)
        assert lab.ping(plan.host_a, plan.host_b_v6, count=2)
        sigkill(daemons[1])
        # What SIGKILL cannot avoid on a persistent device: the routes stay until the restart.
        assert plan.site_b_prefix_v6 in routes()
        moved = config.replace(f'"{plan.site_b_prefix_v6}"', '"2001:db8:100:9::/64"')
        assert moved != config
        daemons[1] = lab.start_lispd(plan.xtr1, moved)
        left = routes()
        assert plan.site_b_prefix_v6 not in left and "2001:db8:100:9::/64" in left, left
        assert "removed leftover routes and rules of an earlier run" in daemons[1].log_text()
        if compiled.available() and len(os.sched_getaffinity(0)) > 1:
            # workers want a multi-queue TUN; this one is not: one engine, no failure
            assert "persistent single-queue device" in daemons[1].log_text()
        assert lab.ping(plan.host_a, plan.host_b_v4, count=2)

        # The other way round: a multi-queue persistent device and a single engine.
        assert daemons[1].stop() == 0, daemons[1].log_tail()
        lab.run(plan.xtr1, "ip", "tuntap", "del", "dev", "lisp0", "mode", "tun")
        lab.run(plan.xtr1, "ip", "tuntap", "add", "dev", "lisp0", "mode", "tun", "multi_queue")
        daemons[1] = lab.start_lispd(plan.xtr1, config + "\n[dataplane]\nworkers = 1\n")
        assert lab.ping(plan.host_a, plan.host_b_v4, count=2)
