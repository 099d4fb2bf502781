"""lig through real namespaces: ask a lispd Map-Resolver what the mapping system knows.

lispd.lab.mapping_system_topology(sites=2): h1-xtr1 and h2-xtr2 around a core router R with a
lispd MS/MR.  Both xTRs register their prefixes; ``lig`` run on xtr1 asks for site 2's host and
gets the registered /28 with xtr2's RLOC (an authoritative answer from xtr2, to which the
Map-Server forwarded the request), and for an address outside every site the Map-Resolver's
negative native-forward reply.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from lispd.api.client import request
from lispd.lab import Lab, MappingSystemPlan, mapping_system_topology
from tests.netns.common import REPO, ms_config, wait_for, xtr_config

pytestmark = pytest.mark.netns

KEYS = {1: "key-one", 2: "key-two"}
LIG = [sys.executable, "-m", "lispd.cli.lig"]


@dataclass
class World:
    lab: Lab
    plan: MappingSystemPlan
    configs: dict[str, str]

    def lig(self, *args: str) -> tuple[int, str, str]:
        xtr1 = self.plan.sites[0].xtr
        proc = self.lab.run(
            xtr1, *LIG, "-c", self.configs[xtr1], *args, check=False, timeout=30,
            env={"PYTHONPATH": REPO},
        )  # fmt: skip
        return proc.returncode, proc.stdout, proc.stderr


@contextmanager
def world() -> Iterator[World]:
    plan = mapping_system_topology(sites=2)
    with Lab(plan.topology) as lab:
        sock = {
            n: str(lab.workdir / f"{n}.sock") for n in (plan.msmr, *(s.xtr for s in plan.sites))
        }
        daemons = [
            lab.start_lispd(
                plan.msmr, ms_config(plan.msmr, plan.msmr_rloc, sock[plan.msmr], plan.sites, KEYS)
            )
        ]
        for site in plan.sites:
            config = xtr_config(site, sock[site.xtr], plan.msmr_rloc, KEYS[site.index])
            daemons.append(lab.start_lispd(site.xtr, config))
        wanted = {p for s in plan.sites for p in (s.prefix_v4, s.prefix_v6)}
        wait_for(
            "sites to register",
            lambda: {r["eid-prefix"] for r in request(sock[plan.msmr], "site")} == wanted,
        )
        try:
            yield World(lab, plan, {d.node: str(d.config_path) for d in daemons})
        finally:
            for daemon in daemons:
                assert daemon.stop() == 0, daemon.log_tail()


def test_lig_positive_negative_json_and_timeout() -> None:
    with world() as w:
        plan = w.plan
        site2 = plan.sites[1]
        ms = plan.msmr_rloc

        # A registered EID: the /28 and xtr2's RLOC, answered by xtr2 itself.
        code, out, err = w.lig("-m", ms, site2.host_v4)
        assert code == 0, out + err
        assert out.startswith(f"Send map-request to {ms} for [0]{site2.host_v4} ...\n"), out
        assert re.search(
            rf"^Received map-reply from {site2.rloc} with rtt \d+\.\d{{3}} secs$", out, re.M
        ), out
        assert f"Mapping entry for EID '[0]{site2.prefix_v4}', record ttl 1440, auth\n" in out
        assert re.search(r"^  Locator +State +Priority/Weight$", out, re.M), out
        assert re.search(rf"^  {re.escape(site2.rloc)} +up +1/100$", out, re.M), out

        # The Map-Resolver from the configuration, an IPv6 EID, --json.
        code, out, err = w.lig("--json", site2.host_v6)
        assert code == 0, out + err
        assert f"Send map-request to {ms} for [0]{site2.host_v6} ..." in err
        doc = json.loads(out)
        assert doc["eid-prefix"] == f"[0]{site2.prefix_v6}" and doc["iid"] == 0
        assert doc["authoritative"] is True and doc["reply-from"] == site2.rloc
        assert doc["locators"] == [
            {"address": site2.rloc, "priority": 1, "weight": 100, "state": "up"}
        ]

        # Outside every site: the Map-Resolver's negative reply.
        code, out, err = w.lig("-m", ms, plan.outside_v4)
        assert code == 0, out + err
        assert f"Received map-reply from {ms} with rtt" in out
        assert (
            "Mapping entry for EID '[0]200.0.0.0/5', record ttl 15, not auth, "
            "action native-forward\n"
        ) in out, out
        # EID space no site holds: the largest prefix around it that overlaps no site.
        code, out, err = w.lig("-m", ms, "198.51.100.50")
        assert code == 0, out + err
        assert "EID '[0]198.51.100.32/27', record ttl 15, not auth, action native-forward" in out
        code, out, err = w.lig("-m", ms, "--json", plan.outside_v4)
        assert code == 0, out + err
        doc = json.loads(out)
        assert (doc["eid-prefix"], doc["action"], doc["locators"]) == (
            "[0]200.0.0.0/5",
            "native-forward",
            [],
        )

        # No Map-Resolver there (the core router): every try times out.
        code, out, err = w.lig("-m", plan.sites[0].router_side, "--timeout", "0.3", "--count", "2")
        assert code == 2, out + err  # the EID is missing: usage error
        code, out, err = w.lig(
            "-m", plan.sites[0].router_side, "--timeout", "0.3", "--count", "2", site2.host_v4
        )
        assert code == 1, out + err
        assert out.endswith("No map-reply received after 2 tries (0.3 secs each)\n"), out
