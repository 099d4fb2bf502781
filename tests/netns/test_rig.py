"""rig through real namespaces: a real ``rig`` process walks a DDT tree of fake nodes.

Every node is a namespace of its own on a core router R, running :mod:`tests.netns.ddt_responder`
(canned Map-Referrals built with lispd.wire, each preceded by a truncated one and one with
another nonce), except ``dead``, where nothing listens::

    client 192.0.2.2 --+                 +-- root 192.0.2.42   (authoritative for everything)
                       |                 +-- node 192.0.2.50   (198.51.100.0/25)
                       +------ R --------+-- dead 192.0.2.54   (nothing runs there)
                                         +-- ms   192.0.2.10   (Map-Server, forwards to the ETR)
                                         +-- etr  192.0.2.6    (answers with a Map-Reply)
                                         +-- loop1 192.0.2.58, loop2 192.0.2.62 (refer to each
                                             other for 203.0.113.0/24)

The root refers 198.51.100.0/25 to (dead, priority 1; node, priority 2), so every walk into it
first times out on the dead node.  The node refers 198.51.100.0/26 to the Map-Server and
answers a delegation hole for the rest; the Map-Server acknowledges 198.51.100.0/28 (and
forwards the request to the ETR) and answers ms-not-registered for the rest of its /26.

The last test walks a tree of lispd daemons instead: a lispd DDT node (root of 198.51.100.0/24,
198.51.100.0/26 delegated to a lispd Map-Server) added to
``lispd.lab.mapping_system_topology(sites=3)``, where xtr1 and xtr2 register their sites and
site 3 is configured on the Map-Server but never registers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from lispd.api.client import request
from lispd.lab import Lab, Topology, mapping_system_topology
from tests import configs
from tests.netns.common import REPO, ms_config, wait_for, xtr_config

pytestmark = pytest.mark.netns

RIG = [sys.executable, "-m", "lispd.cli.rig"]
ENV = {"PYTHONPATH": REPO}
TIMEOUT = "0.5"

CLIENT = "192.0.2.2"
ROOT = "192.0.2.42"
NODE = "192.0.2.50"
DEAD = "192.0.2.54"
MS = "192.0.2.10"
ETR = "192.0.2.6"
LOOP1 = "192.0.2.58"
LOOP2 = "192.0.2.62"

# name -> (address, responder rules or None for a dead node, ETR mode)
NODES: dict[str, tuple[str, Any, bool]] = {
    "client": (CLIENT, None, False),
    "root": (
        ROOT,
        [
            {"eid": "198.51.100.0/25", "action": "node-referral", "prefix": "198.51.100.0/25",
             "referrals": [[DEAD, 1, 100], [NODE, 2, 100]]},
            {"eid": "203.0.113.0/24", "action": "node-referral", "prefix": "203.0.113.0/24",
             "referrals": [[LOOP1, 1, 100]]},
            {"eid": "0.0.0.0/0", "action": "delegation-hole", "prefix": "198.51.100.128/25",
             "ttl": 15},
        ],
        False,
    ),
    "node": (
        NODE,
        [
            {"eid": "198.51.100.0/26", "action": "ms-referral", "prefix": "198.51.100.0/26",
             "referrals": [[MS, 1, 100]]},
            {"eid": "198.51.100.0/25", "action": "delegation-hole", "prefix": "198.51.100.64/26",
             "ttl": 15},
        ],
        False,
    ),
    "dead": (DEAD, None, False),
    "ms": (
        MS,
        [
            {"eid": "198.51.100.0/28", "action": "ms-ack", "prefix": "198.51.100.0/28",
             "referrals": [[MS, 1, 100]], "forward": ETR},
            {"eid": "198.51.100.0/26", "action": "ms-not-registered", "prefix": "198.51.100.16/28",
             "ttl": 1},
        ],
        False,
    ),
    "etr": (ETR, {"prefix": "198.51.100.0/28", "locators": [[ETR, 1, 100]]}, True),
    "loop1": (
        LOOP1,
        [{"eid": "203.0.113.0/24", "action": "node-referral", "prefix": "203.0.113.0/24",
          "referrals": [[LOOP2, 1, 100]]}],
        False,
    ),
    "loop2": (
        LOOP2,
        [{"eid": "203.0.113.0/24", "action": "node-referral", "prefix": "203.0.113.0/24",
          "referrals": [[LOOP1, 1, 100]]}],
        False,
    ),
}  # fmt: skip


def topology() -> Topology:
    """Each node on R over a /30: the node takes the address above, R the one below it."""
    topo = Topology()
    r = topo.router("r")
    for name, (address, _, _) in NODES.items():
        host = topo.host(name)
        last = int(address.rsplit(".", 1)[1])
        router_side = f"192.0.2.{last - 1}"
        topo.link(host, r, [f"{address}/30"], [f"{router_side}/30"])
        topo.route(host, "192.0.2.0/24", via=router_side)
    return topo


@dataclass
class World:
    lab: Lab
    responders: dict[str, subprocess.Popen[str]]

    def rig(self, *args: str, timeout: float = 30) -> tuple[int, str, str]:
        proc = self.lab.run("client", *RIG, *args, check=False, timeout=timeout, env=ENV)
        return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with Lab(topology()) as lab:
        responders: dict[str, subprocess.Popen[str]] = {}
        for name, (address, rules, etr) in NODES.items():
            if rules is None:
                continue
            argv = [sys.executable, "-m", "tests.netns.ddt_responder", "--listen", address,
                    "--rules", json.dumps(rules), *(["--etr"] if etr else [])]  # fmt: skip
            proc = lab.popen(
                name, argv, stdout=subprocess.PIPE, text=True, env={**os.environ, **ENV}
            )
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", name
            responders[name] = proc
        yield World(lab, responders)


def _steps(out: str) -> list[str]:
    """The ``Received``/``Timed out`` lines, rtts masked."""
    return [
        re.sub(r"rtt \d+\.\d{3} secs", "rtt X", line)
        for line in out.splitlines()
        if line.startswith(("Received ", "Timed out", "Stopped"))
    ]


def test_walk_to_the_map_server_and_the_etr(world: World) -> None:
    code, out, err = world.rig("-t", ROOT, "--timeout", TIMEOUT, "198.51.100.5")
    assert (code, err) == (0, ""), out + err
    assert out.startswith(f"Send DDT map-request to {ROOT} for [0]198.51.100.5 ...\n"), out
    assert _steps(out) == [
        f"Received node-referral from {ROOT} with rtt X",
        f"Timed out: no map-referral from {DEAD} within 0.5 secs",
        f"Received ms-referral from {NODE} with rtt X",
        f"Received ms-ack from {MS} with rtt X",
        f"Received map-reply from {ETR} with rtt X",
    ], out
    assert (
        "  [0]198.51.100.0/25, ttl 1440, auth\n"
        "    Referral    Priority/Weight\n"
        f"    {DEAD}  1/100\n"
        f"    {NODE}  2/100\n"
    ) in out
    assert "Mapping entry for EID '[0]198.51.100.0/28', record ttl 1440, auth\n" in out
    assert re.search(rf"^  {re.escape(ETR)} +up +1/100$", out, re.M), out
    # The noise each node sent first: a truncated referral and a wrong nonce, 3 nodes.
    assert out.endswith("Ignored 6 datagrams: malformed 3, wrong-nonce 3\n"), out


def test_json_from_the_configured_roots(world: World) -> None:
    # The first root is the dead node: the second one answers.
    doc = configs.node("mr", ("map-resolver",), (CLIENT,), ddt={"roots": [DEAD, ROOT]})
    path = world.lab.workdir / "rig.conf"
    path.write_text(configs.toml(doc))
    code, out, err = world.rig("-c", str(path), "--timeout", TIMEOUT, "--json", "198.51.100.5")
    assert code == 0, out + err
    assert f"Send DDT map-request to {DEAD} for [0]198.51.100.5 ..." in err
    result = json.loads(out)
    assert result["eid"] == "[0]198.51.100.5/32" and result["outcome"] == "ms-ack"
    steps = result["steps"]
    assert [s["node"] for s in steps] == [DEAD, ROOT, DEAD, NODE, MS]
    assert steps[0] == {"node": DEAD, "timeout": True}
    assert {k: v for k, v in steps[1].items() if k != "rtt"} == {
        "node": ROOT,
        "action": "node-referral",
        "prefix": "[0]198.51.100.0/25",
        "ttl": 1440,
        "authoritative": True,
        "incomplete": False,
        "referrals": [
            {"address": DEAD, "priority": 1, "weight": 100},
            {"address": NODE, "priority": 2, "weight": 100},
        ],
    }
    assert 0 < steps[1]["rtt"] < 0.5
    assert [s.get("action") for s in steps] == [
        None,
        "node-referral",
        None,
        "ms-referral",
        "ms-ack",
    ]
    assert steps[4]["prefix"] == "[0]198.51.100.0/28"
    reply = result["map_reply"]
    assert reply["from"] == ETR
    assert reply["records"][0]["eid-prefix"] == "[0]198.51.100.0/28"
    assert reply["records"][0]["locators"][0]["address"] == ETR
    assert result["ignored"] == {"malformed": 3, "wrong-nonce": 3}


def test_negative_answers(world: World) -> None:
    # Inside the node's /25 but outside its /26: a delegation hole.
    code, out, err = world.rig("-t", ROOT, "--timeout", TIMEOUT, "198.51.100.70")
    assert code == 0, out + err
    assert _steps(out)[-1] == f"Received delegation-hole from {NODE} with rtt X", out
    assert "  [0]198.51.100.64/26, ttl 15, auth\n" in out
    # In the Map-Server's /26, not registered.
    code, out, err = world.rig("-t", ROOT, "--timeout", TIMEOUT, "--json", "198.51.100.20")
    assert code == 0, out + err
    result = json.loads(out)
    assert result["outcome"] == "ms-not-registered" and result["map_reply"] is None
    assert result["steps"][-1]["node"] == MS and result["steps"][-1]["ttl"] == 1
    # Outside the root's delegations: its hole, straight away.
    code, out, err = world.rig("-t", ROOT, "--json", "198.51.100.200")
    assert code == 0, out + err
    result = json.loads(out)
    assert result["outcome"] == "delegation-hole" and len(result["steps"]) == 1


def test_loop_max_steps_and_dead_node(world: World) -> None:
    code, out, err = world.rig("-t", ROOT, "203.0.113.9")
    assert code == 1, out + err
    assert _steps(out) == [
        f"Received node-referral from {ROOT} with rtt X",
        f"Received node-referral from {LOOP1} with rtt X",
        f"Received node-referral from {LOOP2} with rtt X",
        "Stopped: referral loop, [0]203.0.113.0/24 already followed",
    ], out
    code, out, err = world.rig("-t", ROOT, "--json", "--max-steps", "2", "203.0.113.9")
    assert code == 1, out + err
    result = json.loads(out)
    assert result["outcome"] == "max-steps" and len(result["steps"]) == 2
    code, out, err = world.rig("-t", DEAD, "--timeout", "0.3", "198.51.100.5")
    assert code == 1, out + err
    assert out == (
        f"Send DDT map-request to {DEAD} for [0]198.51.100.5 ...\n"
        f"Timed out: no map-referral from {DEAD} within 0.3 secs\n"
        "Stopped: no start node answered\n"
    )
    # Each responder saw DDT requests only (rig sets the D bit), and the MS forwarded.
    counts: dict[str, dict[str, int]] = {}
    for name, proc in world.responders.items():
        proc.terminate()
        stdout, _ = proc.communicate(timeout=10)
        counts[name] = json.loads(stdout.strip().splitlines()[-1])
    for name in ("root", "node", "ms", "loop1", "loop2"):
        assert counts[name]["requests"] > 0, (name, counts)
        assert counts[name]["answered"] == counts[name]["requests"], (name, counts)
    assert counts["ms"]["forwarded"] == 2  # the two walks that reached the MS-ACK
    assert counts["etr"]["answered"] == 2


# --------------------------------------------------------------------------------------------
# rig against lispd: a DDT node and a Map-Server (DDT leaf) of the mapping-system lab

DDT_RLOC = "192.0.2.38"
R_DDT = "192.0.2.37"
KEYS = {1: "key-one", 2: "key-two", 3: "key-three"}


def test_rig_against_lispd() -> None:
    plan = mapping_system_topology(sites=3)
    topo = plan.topology
    ddt = topo.lisp_router("ddt")
    topo.link(ddt, plan.r, [f"{DDT_RLOC}/30"], [f"{R_DDT}/30"])
    topo.route(ddt, "192.0.2.0/24", via=R_DDT)
    ms = plan.msmr_rloc
    site1, site2, site3 = plan.sites
    with Lab(topo) as lab:
        sock = {n: str(lab.workdir / f"{n}.sock") for n in (plan.msmr, site1.xtr, site2.xtr)}
        ddt_doc = configs.node(
            "ddt",
            ("ddt-node",),
            (DDT_RLOC,),
            daemon={"log-level": "debug"},
            ddt_authority=[{"eid-prefix": "198.51.100.0/24"}],
            ddt_delegation=[
                {"eid-prefix": "198.51.100.0/26", "kind": "map-server", "referrals": [ms]}
            ],
        )
        daemons = [
            lab.start_lispd("ddt", configs.toml(ddt_doc)),
            lab.start_lispd(plan.msmr, ms_config(plan.msmr, ms, sock[plan.msmr], plan.sites, KEYS)),
        ]
        for site in (site1, site2):
            config = xtr_config(site, sock[site.xtr], ms, KEYS[site.index])
            daemons.append(lab.start_lispd(site.xtr, config))
        wanted = {p for s in (site1, site2) for p in (s.prefix_v4, s.prefix_v6)}
        wait_for(
            "sites to register",
            lambda: wanted <= {r["eid-prefix"] for r in request(sock[plan.msmr], "site")},
        )

        def rig(*args: str) -> tuple[int, str, str]:
            proc = lab.run(site1.xtr, *RIG, *args, check=False, timeout=30, env=ENV)
            return proc.returncode, proc.stdout, proc.stderr

        try:
            # Site 2's host: MS-REFERRAL to the Map-Server, its MS-ACK, xtr2's Map-Reply.
            code, out, err = rig("-t", DDT_RLOC, "--timeout", "1", site2.host_v4)
            assert (code, err) == (0, ""), out + err
            assert _steps(out) == [
                f"Received ms-referral from {DDT_RLOC} with rtt X",
                f"Received ms-ack from {ms} with rtt X",
                f"Received map-reply from {site2.rloc} with rtt X",
            ], out
            assert "  [0]198.51.100.0/26, ttl 1440, auth\n" in out, out
            assert f"  [0]{site2.prefix_v4}, ttl 1440, auth\n" in out, out
            assert f"Mapping entry for EID '[0]{site2.prefix_v4}', record ttl 1440, auth" in out
            assert re.search(rf"^  {re.escape(site2.rloc)} +up +1/100$", out, re.M), out
            assert "Ignored" not in out, out

            code, out, err = rig("-t", DDT_RLOC, "--json", site2.host_v4)
            assert code == 0, out + err
            result = json.loads(out)
            assert result["outcome"] == "ms-ack" and result["ignored"] == {}
            assert [s["action"] for s in result["steps"]] == ["ms-referral", "ms-ack"]
            assert result["steps"][0]["referrals"] == [
                {"address": ms, "priority": 1, "weight": 100}
            ]
            assert result["steps"][1]["prefix"] == f"[0]{site2.prefix_v4}"
            assert result["map_reply"]["from"] == site2.rloc

            # Site 3 is configured on the Map-Server but not registered.
            code, out, err = rig("-t", DDT_RLOC, "--json", site3.host_v4)
            assert code == 0, out + err
            result = json.loads(out)
            assert result["outcome"] == "ms-not-registered", result
            assert result["steps"][-1]["node"] == ms and result["map_reply"] is None

            # Inside the authority, outside the delegation: the DDT node's hole.
            code, out, err = rig("-t", DDT_RLOC, "--json", "198.51.100.100")
            assert code == 0, out + err
            result = json.loads(out)
            assert result["outcome"] == "delegation-hole"
            assert result["steps"][0]["prefix"] == "[0]198.51.100.64/26"
            # Outside the authority: not authoritative.
            code, out, err = rig("-t", DDT_RLOC, "--json", plan.outside_v4)
            assert code == 0, out + err
            result = json.loads(out)
            assert result["outcome"] == "not-authoritative"
            assert result["steps"][0]["authoritative"] is False
        finally:
            for daemon in daemons:
                assert daemon.stop() == 0, daemon.log_tail()
