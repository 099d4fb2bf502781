"""lispd on a router that has routes of its own: policy routing leaves the host's routing alone.

lispd.lab.proxy_topology (two LISP sites, a node that is Map-Server, Map-Resolver, PITR and
PETR, a non-LISP "outside world"), with xtr1 set up as a field router: a default route via its
upstream R (the Map-Server/Map-Resolver and the PETR are reached through it), an administrator's
``proto static`` route via that neighbour and an administrator's ``ip rule``.  xtr1 runs with
``0.0.0.0/0`` and ``::/0`` as send-map-request (every destination resolved, non-EIDs sent to the
PETR).  Throughout, xtr1's own ping to the outside world goes natively and loses nothing, and
the administrator's routes and rules are byte for byte what they were before lispd started:
while it runs, after a reload, after a stop, and after SIGKILL and a restart.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from lispd.api.client import request
from lispd.lab import DaemonHandle, DaemonStartError, Lab, ProxyPlan, proxy_topology
from lispd.wire.data import decapsulate
from lispd.wire.ip import parse_ip_header
from tests.netns.common import continuous_ping, sigkill, wait_for
from tests.netns.test_proxy import pxtr_config, xtr_config

pytestmark = pytest.mark.netns

TABLE, PROTOCOL = "4341", "44"  # lispd's defaults ([tun] route-table, route-protocol)
ADMIN_ROUTE = "203.0.113.128/25"


@dataclass
class Field:
    lab: Lab
    plan: ProxyPlan
    daemons: dict[str, DaemonHandle]

    def sock(self, node: str) -> str:
        return str(self.lab.workdir / f"{node}.sock")

    def ask(self, node: str, command: str) -> Any:
        return request(self.sock(node), command)

    def ip(self, *args: str, numeric: bool = True) -> str:
        """``ip -N ...`` on xtr1 (numbers, not names, whatever /etc/iproute2 registers); an
        empty table does not exist for the kernel: no output."""
        argv = ("ip", "-N", *args) if numeric else ("ip", *args)
        run = self.lab.run(self.plan.sites[0].xtr, *argv, check=False)
        assert run.returncode == 0 or "table does not exist" in run.stderr, run.stderr
        return run.stdout

    def admin_state(self) -> str:
        """Every route (all tables) and rule on xtr1 that is not lispd's, as ``ip`` prints them.
        The TUN's own kernel routes (``dev lisp0``) come and go with the device."""
        lines = []
        for family in ("-4", "-6"):
            lines += self.ip(family, "route", "show", "table", "all").splitlines()
            lines += self.ip(family, "rule").splitlines()
        return "\n".join(
            line
            for line in lines
            if f"table {TABLE}" not in line
            and f"proto {PROTOCOL}" not in line
            and "dev lisp0" not in line
        )

    def lispd_state(self) -> str:
        """What lispd installed on xtr1: the routes of its table and its rules (route types by
        name: ``ip -N`` prints a throw route's type as 9)."""
        lines = []
        for family in ("-4", "-6"):
            routes = self.ip(family, "route", "show", "table", TABLE, numeric=False)
            lines += routes.replace("proto lispd", f"proto {PROTOCOL}").splitlines()
            lines += [r for r in self.ip(family, "rule").splitlines() if f"proto {PROTOCOL}" in r]
        return "\n".join(line.rstrip() for line in lines)


def make_field_router(lab: Lab, plan: ProxyPlan) -> None:
    """xtr1 as a field router: everything via its upstream R by default, an administrator's
    static route and rule."""
    site = plan.sites[0]
    lab.run(site.xtr, "ip", "route", "del", "192.0.2.0/24")
    lab.run(site.xtr, "ip", "route", "add", "default", "via", site.router_side)
    lab.run(site.xtr, "ip", "route", "add", ADMIN_ROUTE, "via", site.router_side, "proto", "static")
    lab.run(site.xtr, "ip", "rule", "add", "pref", "1000", "to", "192.0.2.200", "lookup", "main")


@contextlib.contextmanager
def field_world() -> Iterator[Field]:
    plan = proxy_topology()
    with Lab(plan.topology) as lab:
        lab.run(plan.outside, "ip", "addr", "add", f"{plan.outside_v4}/32", "dev", "lo")
        lab.run(plan.outside, "ip", "addr", "add", f"{plan.outside_v6}/128", "dev", "lo")
        make_field_router(lab, plan)
        w = Field(lab, plan, {})
        w.daemons[plan.pxtr] = lab.start_lispd(plan.pxtr, pxtr_config(plan, w.sock(plan.pxtr)))
        try:
            yield w
        finally:
            for daemon in w.daemons.values():
                if daemon.running():
                    assert daemon.stop() == 0, daemon.log_tail()


def start_xtr(w: Field, index: int) -> DaemonHandle:
    site = w.plan.sites[index]
    config = xtr_config(w.plan, site, w.sock(site.xtr), [w.plan.pxtr_rloc])
    w.daemons[site.xtr] = w.lab.start_lispd(site.xtr, config)
    return w.daemons[site.xtr]


def test_a_field_router_keeps_its_routes_and_its_own_traffic_through_everything() -> None:
    with field_world() as w:
        plan, lab = w.plan, w.lab
        s1, s2 = plan.sites
        before = w.admin_state()
        assert "default via 192.0.2.1" in before and f"{ADMIN_ROUTE} via" in before
        assert w.lispd_state() == ""
        start_xtr(w, 1)
        with continuous_ping(lab, s1.xtr, plan.outside_v4, 90.0) as own:
            wait_for("xtr1's own ping answered", lambda: len(own.times()) >= 3)
            xtr1 = start_xtr(w, 0)
            wait_for("both sites registered", lambda: len(w.ask(plan.pxtr, "site")) >= 4)
            ours = w.lispd_state()
            print(f"\n[routing] xtr1 before lispd:\n{before}\n[routing] lispd's own:\n{ours}")
            assert f"default dev lisp0 proto {PROTOCOL}" in ours
            assert f"throw {s1.prefix_v4} proto {PROTOCOL}" in ours
            assert f"throw {s1.prefix_v6} dev lo proto {PROTOCOL}" in ours
            assert f"from {s1.prefix_v4} lookup {TABLE} proto {PROTOCOL}" in ours
            assert w.admin_state() == before

            # EID traffic resolves and is encapsulated; non-EID traffic from the EIDs goes to
            # the PETR; the outside world reaches the EIDs through the PITR.
            with lab.capture(s1.xtr, "to-r", "udp port 4341") as cap:
                for dst in (s2.host_v4, s2.host_v6, plan.outside_v4, plan.outside_v6):
                    assert lab.ping(s1.host, dst, count=3, wait=3.0), dst
                assert lab.ping(plan.outside, s1.host_v4, count=2, wait=3.0)
            legs = set()
            for pkt in cap.ip_packets():
                encap = decapsulate(pkt)
                inner, _, _ = parse_ip_header(encap.inner)
                legs.add((str(encap.outer.dst), str(inner.dst)))
            assert (s2.rloc, s2.host_v4) in legs and (s2.rloc, s2.host_v6) in legs, legs
            assert (plan.pxtr_rloc, plan.outside_v4) in legs, legs
            assert (plan.pxtr_rloc, plan.outside_v6) in legs, legs

            # A reload (the static 0/0 entries unchanged, one more added) touches nothing
            # of the administrator's.
            path = xtr1.config_path
            path.write_text(
                path.read_text()
                + '\n[[map-cache]]\neid-prefix = "198.51.100.192/26"\naction = "drop"\n'
            )
            answer = w.ask(s1.xtr, "reload")
            assert answer.get("reloaded") is True, answer
            assert "198.51.100.192/26 dev lisp0" in w.lispd_state()
            assert w.admin_state() == before
            assert lab.ping(s1.host, s2.host_v4, count=1, wait=3.0)

            # A stop removes exactly lispd's routes and rules.
            assert xtr1.stop() == 0, xtr1.log_tail()
            assert w.lispd_state() == "" and w.admin_state() == before

            # SIGKILL leaves lispd's rules and throw routes (harmless: a lookup in an empty
            # table goes on to the next rule); the next start removes them and installs its own.
            xtr1 = start_xtr(w, 0)
            # Straight away: xtr2's probing may have marked xtr1's RLOC down while it was
            # away, but xtr2 keeps sending to it (all RLOCs down: issue 21).
            assert lab.ping(s1.host, s2.host_v4, count=2, wait=3.0)
            installed = w.lispd_state()
            sigkill(xtr1)
            # The TUN goes when its last queue closes: the workers die just after the main
            # process (PR_SET_PDEATHSIG), so give them a moment.
            wait_for(
                "the killed run's TUN gone",
                lambda: "lisp0" not in lab.run(s1.xtr, "ip", "link").stdout,
                timeout=10.0,
            )
            left = w.lispd_state()
            assert "dev lisp0" not in left and "throw" in left, left
            assert w.admin_state() == before
            assert lab.ping(s1.xtr, plan.outside_v4, count=2, wait=2.0)  # own traffic unhurt
            xtr1 = start_xtr(w, 0)
            assert "removed leftover routes and rules" in xtr1.log_text()
            assert w.lispd_state() == installed and w.admin_state() == before
            assert lab.ping(s1.host, s2.host_v4, count=2, wait=3.0)
            assert lab.ping(s1.host, plan.outside_v4, count=2, wait=3.0)
            assert xtr1.stop() == 0, xtr1.log_tail()
            w.daemons.pop(s1.xtr)
            after = w.admin_state()
            print(f"[routing] xtr1 after stop:\n{after}")
            assert after == before and w.lispd_state() == ""

            # xtr1's own traffic went natively the whole time: every echo request answered.
            seqs = sorted(seq for _t, seq in own.replies)
            missing = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))
            assert not missing, missing
        print(f"[routing] xtr1's own ping to {plan.outside_v4}: {len(seqs)} replies, none lost")


def test_a_start_that_fails_names_the_key_and_leaves_nothing_behind() -> None:
    """An RLOC that is not an address of the host: the daemon exits 1 saying which key, which
    value, what is wrong and what to do, and takes back the TUN, routes and rules it made."""
    with field_world() as w:
        plan, lab = w.plan, w.lab
        site = plan.sites[0]
        before = w.admin_state()
        config = xtr_config(plan, site, w.sock(site.xtr), [plan.pxtr_rloc])
        wrong = config.replace(f'"{site.rloc}"', '"192.0.2.99"')  # underlay and database
        assert wrong != config
        with pytest.raises(DaemonStartError) as info:
            lab.start_lispd(site.xtr, wrong, timeout=15)
        assert info.value.returncode == 1
        line = next(x for x in info.value.log_tail.splitlines() if "failed to start" in x)
        print(f"\n[startup] {line}")
        assert "underlay.rlocs[0]: 192.0.2.99: not an address of this host" in line, line
        assert "lispd.conf:" in line and "ip address add" in line, line
        assert w.lispd_state() == "" and w.admin_state() == before
        assert "lisp0" not in lab.run(site.xtr, "ip", "link").stdout
