"""A LISP-DDT hierarchy in network namespaces (issue 23): its topology, configurations and
daemons, for tests/netns/test_ddt.py.

Every node hangs off one core router (``core``), IPv4 and IPv6 underlay::

    root1 root2        two DDT roots (same configuration)
    ddt1 ddt2          two child DDT nodes
    ms1 ms2 ms3 ms4    four Map-Servers: ms1+ms2 serve ddt1's sites, ms3+ms4 ddt2's
    mr1 mr2            two DDT Map-Resolvers (roles ["map-resolver"], [ddt] roots)
    xtr1..xtr4         four xTRs, host hN behind xtrN
    pxtr               PITR + PETR, in front of the non-LISP host ``inet``

Node k (in that order, from 0) is on 192.0.2.4k/30 and 2001:db8:0:k+1::/64 toward core (core
.1/::1, the node .2/::2) and reaches the underlay 192.0.2.0/24, 2001:db8::/48 through core.

The EID space and who is authoritative for what (``[iid]prefix``):

- The roots: [0]0.0.0.0/0, [0]::/0, [7]0.0.0.0/0, [7]::/0.  They delegate each instance's site
  block (iid 0: 198.51.100.0/25 and 2001:db8:100::/40; iid 7: 198.51.100.128/25 and
  2001:db8:700::/40) by halves: the first half to ddt1, the second to ddt2 (``kind =
  "ddt-node"``), ddt2 by its IPv6 address (the mapping system's nodes have an IPv4 and an
  IPv6 RLOC; the xTRs and the PxTR only IPv4).  Everything else is a delegation hole
  (203.0.113.0/24, the internet).
- ddt1 and ddt2: authoritative for their halves; each delegates one Map-Server block per
  half (a /27 and a /44) to its pair of Map-Servers (``kind = "map-server"``).
- The Map-Servers: sites registered inside those blocks (a /28 and a /48 each); every xTR
  registers with both Map-Servers of its pair.  ms3 and ms4 are also configured for site5
  ([0]198.51.100.80/28, [0]2001:db8:198::/48), which nobody registers.

========  ====  =====  =========  ====================  =====================
site      iid   child  MS pair    IPv4 EID-prefix       IPv6 EID-prefix
========  ====  =====  =========  ====================  =====================
site1     0     ddt1   ms1, ms2   198.51.100.0/28       2001:db8:110::/48
site2     0     ddt2   ms3, ms4   198.51.100.64/28      2001:db8:190::/48
site3     7     ddt1   ms1, ms2   198.51.100.128/28     2001:db8:710::/48
site4     7     ddt2   ms3, ms4   198.51.100.192/28     2001:db8:790::/48
========  ====  =====  =========  ====================  =====================

Hosts are .2 / ::2 of their site, their xTR .1 / ::1 (the hosts' gateway).  The xTRs resolve
everything (0.0.0.0/0 and ::/0 in their instance) through both Map-Resolvers and send
native-forward traffic to the PETR; ``inet`` (203.0.113.2, 2001:db8:ff::2) sits behind pxtr
(203.0.113.1, 2001:db8:ff::1), whose PITR side resolves the four site blocks through the
Map-Resolvers, so replies from the internet come back encapsulated.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from lispd.api.client import request
from lispd.lab import DaemonHandle, Lab, Topology
from tests import configs
from tests.netns.common import REPO, wait_for

__all__ = [
    "DdtPlan",
    "DdtSite",
    "World",
    "child_doc",
    "configs_of",
    "ddt_plan",
    "delegation_hole",
    "mr_doc",
    "ms_doc",
    "pxtr_doc",
    "root_doc",
    "world",
    "xtr_doc",
]

ROOTS = ("root1", "root2")
CHILDREN = ("ddt1", "ddt2")
MAP_SERVERS = ("ms1", "ms2", "ms3", "ms4")
MAP_RESOLVERS = ("mr1", "mr2")
XTRS = ("xtr1", "xtr2", "xtr3", "xtr4")
PXTR = "pxtr"
INET = "inet"
CORE = "core"
CORE_NODES = (*ROOTS, *CHILDREN, *MAP_SERVERS, *MAP_RESOLVERS, *XTRS, PXTR)
"""The nodes on core, in the order of their links (node k on 192.0.2.4k/30)."""
DUAL_STACK = (*ROOTS, *CHILDREN, *MAP_SERVERS, *MAP_RESOLVERS)
"""The mapping system's nodes: IPv4 and IPv6 RLOCs (the xTRs and the PxTR only IPv4)."""
REFERRED_BY_V6 = ("ddt2",)
"""Nodes their parents refer to by their IPv6 address (the roots' referral set for ddt2's
halves): the Map-Resolvers walk an IPv6 hop of the tree."""

IIDS = (0, 7)
SITE_BLOCKS: dict[int, tuple[str, str]] = {
    0: ("198.51.100.0/25", "2001:db8:100::/40"),
    7: ("198.51.100.128/25", "2001:db8:700::/40"),
}
"""Each instance's site block (IPv4, IPv6): what the roots delegate, by halves."""

PAIRS: dict[str, tuple[str, str]] = {"ddt1": ("ms1", "ms2"), "ddt2": ("ms3", "ms4")}
"""Each child DDT node's pair of Map-Servers."""

SILENT_SITE: tuple[str, str, int, str, str] = (
    "site5",
    "site5-key",
    0,
    "198.51.100.80/28",
    "2001:db8:198::/48",
)
"""A site ms3 and ms4 are configured for (name, key, iid, prefixes) that no xTR registers:
inside ddt2's Map-Server block of instance 0, so the walk for it ends in MS-NOT-REGISTERED."""

UNDERLAY_V4 = "192.0.2.0/24"
UNDERLAY_V6 = "2001:db8::/48"
INTERNET_V4 = "203.0.113.0/24"
INTERNET_V6 = "2001:db8:ff::/64"
PXTR_INET_V4, INET_V4 = "203.0.113.1", "203.0.113.2"
PXTR_INET_V6, INET_V6 = "2001:db8:ff::1", "2001:db8:ff::2"

# Short timers: registrations every 2 s (a killed Map-Server is noticed soon), referrals
# re-asked after 0.5 s without an answer (the failure test walks past two dead nodes).
REGISTRATION_INTERVAL = 2
REQUEST_TIMEOUT = 0.5


def _halves(prefix: str) -> tuple[str, str]:
    first, second = ipaddress.ip_network(prefix).subnets()
    return str(first), str(second)


def _first_sub(prefix: str, length: int) -> str:
    return str(next(ipaddress.ip_network(prefix).subnets(new_prefix=length)))


@dataclass(frozen=True)
class DdtSite:
    """One LISP site: host ``host`` behind ``xtr`` in instance ``iid``, under child DDT node
    ``child``, registered with both Map-Servers of ``map_servers``.  ``ms_block_*`` is the
    block the child delegates to that pair, ``child_block_*`` the half the roots delegate to
    the child (each holds the site's prefix)."""

    index: int
    iid: int
    host: str
    xtr: str
    child: str
    map_servers: tuple[str, str]
    prefix_v4: str
    prefix_v6: str
    host_v4: str
    host_v6: str
    gateway_v4: str
    gateway_v6: str
    rloc: str
    rloc_v6: str
    child_block_v4: str
    child_block_v6: str
    ms_block_v4: str
    ms_block_v6: str
    key: str

    def prefixes(self) -> tuple[str, str]:
        """The site's IPv4 and IPv6 EID-prefixes."""
        return (self.prefix_v4, self.prefix_v6)


@dataclass(frozen=True)
class DdtPlan:
    """Nodes and addresses of :func:`ddt_plan`; ``rloc[node]`` / ``rloc_v6[node]`` are the
    underlay addresses of every node on core."""

    topology: Topology = field(compare=False, repr=False)
    sites: tuple[DdtSite, ...] = ()
    rloc: dict[str, str] = field(default_factory=dict)
    rloc_v6: dict[str, str] = field(default_factory=dict)

    def site(self, index: int) -> DdtSite:
        """Site ``index`` (1..4)."""
        return self.sites[index - 1]

    def referral(self, node: str) -> str:
        """The address by which ``node``'s parent refers to it (see :data:`REFERRED_BY_V6`)."""
        return self.rloc_v6[node] if node in REFERRED_BY_V6 else self.rloc[node]

    def rlocs(self, node: str) -> tuple[str, ...]:
        """``node``'s underlay RLOCs (both families for :data:`DUAL_STACK` nodes)."""
        if node in DUAL_STACK:
            return (self.rloc[node], self.rloc_v6[node])
        return (self.rloc[node],)

    def in_iid(self, iid: int) -> list[DdtSite]:
        """The sites of instance ``iid``."""
        return [s for s in self.sites if s.iid == iid]

    def served_by(self, ms: str) -> list[DdtSite]:
        """The sites that register with Map-Server ``ms``."""
        return [s for s in self.sites if ms in s.map_servers]

    def child_blocks(self, child: str) -> list[tuple[int, str]]:
        """(iid, prefix) the roots delegate to ``child`` (both families)."""
        seen: dict[tuple[int, str], None] = {}
        for s in self.sites:
            if s.child == child:
                seen[(s.iid, s.child_block_v4)] = None
                seen[(s.iid, s.child_block_v6)] = None
        return list(seen)

    def root_delegations(self, iid: int) -> list[str]:
        """The prefixes the roots delegate in instance ``iid`` (both children, families)."""
        return [p for child in CHILDREN for i, p in self.child_blocks(child) if i == iid]


def ddt_plan() -> DdtPlan:
    """Build the topology of this module's documentation; return its plan."""
    topo = Topology()
    core = topo.router(CORE)
    rloc: dict[str, str] = {}
    rloc_v6: dict[str, str] = {}
    for k, name in enumerate(CORE_NODES):
        node = topo.lisp_router(name)
        rloc[name], rloc_v6[name] = f"192.0.2.{4 * k + 2}", f"2001:db8:0:{k + 1:x}::2"
        topo.link(
            node, core, [f"{rloc[name]}/30", f"{rloc_v6[name]}/64"],
            [f"192.0.2.{4 * k + 1}/30", f"2001:db8:0:{k + 1:x}::1/64"],
        )  # fmt: skip
        topo.route(node, UNDERLAY_V4, via=f"192.0.2.{4 * k + 1}")
        topo.route(node, UNDERLAY_V6, via=f"2001:db8:0:{k + 1:x}::1")
    sites = []
    layout = [(1, 0, "ddt1"), (2, 0, "ddt2"), (3, 7, "ddt1"), (4, 7, "ddt2")]
    for index, iid, child in layout:
        half = 0 if child == "ddt1" else 1
        block4 = _halves(SITE_BLOCKS[iid][0])[half]
        block6 = _halves(SITE_BLOCKS[iid][1])[half]
        ms4 = _first_sub(block4, 27)
        v6 = ipaddress.ip_network(block6)
        site6 = ipaddress.ip_network((int(v6.network_address) + (0x10 << 80), 48))
        ms6 = str(site6.supernet(new_prefix=44))
        prefix4 = _first_sub(ms4, 28)
        base4 = ipaddress.ip_network(prefix4).network_address
        base6 = site6.network_address
        xtr = f"xtr{index}"
        sites.append(
            DdtSite(
                index=index, iid=iid, host=f"h{index}", xtr=xtr, child=child,
                map_servers=PAIRS[child], prefix_v4=prefix4, prefix_v6=str(site6),
                host_v4=str(base4 + 2), host_v6=str(base6 + 2),
                gateway_v4=str(base4 + 1), gateway_v6=str(base6 + 1),
                rloc=rloc[xtr], rloc_v6=rloc_v6[xtr],
                child_block_v4=block4, child_block_v6=block6, ms_block_v4=ms4, ms_block_v6=ms6,
                key=f"site{index}-key",
            )
        )  # fmt: skip
    for s in sites:
        host = topo.host(s.host)
        topo.link(
            host, s.xtr, [f"{s.host_v4}/28", f"{s.host_v6}/64"],
            [f"{s.gateway_v4}/28", f"{s.gateway_v6}/64"],
        )  # fmt: skip
        topo.route(host, "default", via=s.gateway_v4)
        topo.route(host, "default", via=s.gateway_v6)
    inet = topo.host(INET)
    topo.link(
        inet, PXTR, [f"{INET_V4}/24", f"{INET_V6}/64"], [f"{PXTR_INET_V4}/24", f"{PXTR_INET_V6}/64"]
    )
    topo.route(inet, "default", via=PXTR_INET_V4)
    topo.route(inet, "default", via=PXTR_INET_V6)
    return DdtPlan(topo, tuple(sites), rloc, rloc_v6)


def delegation_hole(eid: str, delegations: Sequence[str]) -> str:
    """The largest prefix holding ``eid`` that overlaps none of ``delegations`` (same
    family), worked out here independently of lispd: what a root (authoritative for the whole
    family) answers for an undelegated EID."""
    address = ipaddress.ip_address(eid)
    nets = [ipaddress.ip_network(d) for d in delegations]
    nets = [n for n in nets if n.version == address.version]
    for length in range(address.max_prefixlen + 1):
        candidate = ipaddress.ip_network((address, length), strict=False)
        if not any(candidate.overlaps(n) for n in nets):
            return str(candidate)
    raise ValueError(f"{eid} lies in a delegation")


# -- configurations -------------------------------------------------------------------------------


def _node_doc(name: str, roles: Sequence[str], sock: str, plan: DdtPlan, **tables: Any) -> Any:
    return configs.node(
        name,
        roles,
        plan.rlocs(name),
        control_socket=sock,
        daemon={"log-level": "debug"},
        **tables,
    )


def root_doc(plan: DdtPlan, name: str, sock: str) -> Any:
    """A root DDT node: authoritative for everything in iids 0 and 7, each instance's site
    block delegated by halves to ddt1 and ddt2."""
    authorities = [
        {"eid-prefix": p, "instance-id": iid} for iid in IIDS for p in ("0.0.0.0/0", "::/0")
    ]
    delegations = [
        {
            "eid-prefix": prefix,
            "instance-id": iid,
            "kind": "ddt-node",
            "referrals": [plan.referral(child)],
        }
        for child in CHILDREN
        for iid, prefix in plan.child_blocks(child)
    ]
    return _node_doc(
        name, ["ddt-node"], sock, plan, ddt_authority=authorities, ddt_delegation=delegations
    )


def child_doc(plan: DdtPlan, name: str, sock: str) -> Any:
    """A child DDT node: authoritative for its halves, each Map-Server block referred to its
    pair of Map-Servers."""
    authorities = [{"eid-prefix": p, "instance-id": iid} for iid, p in plan.child_blocks(name)]
    delegations = [
        {
            "eid-prefix": prefix,
            "instance-id": s.iid,
            "kind": "map-server",
            "referrals": [plan.referral(ms) for ms in s.map_servers],
        }
        for s in plan.sites
        if s.child == name
        for prefix in (s.ms_block_v4, s.ms_block_v6)
    ]
    return _node_doc(
        name, ["ddt-node"], sock, plan, ddt_authority=authorities, ddt_delegation=delegations
    )


def ms_doc(plan: DdtPlan, name: str, sock: str) -> Any:
    """A Map-Server (and DDT leaf) of the sites of its pair."""
    sites = [
        configs.site(
            f"site{s.index}",
            s.key,
            *({"eid-prefix": p, "instance-id": s.iid} for p in s.prefixes()),
        )
        for s in plan.served_by(name)
    ]
    if name in PAIRS["ddt2"]:
        silent, key, iid, *prefixes = SILENT_SITE
        sites.append(
            configs.site(
                str(silent), str(key), *({"eid-prefix": p, "instance-id": iid} for p in prefixes)
            )
        )
    return _node_doc(name, ["map-server"], sock, plan, site=sites)


def mr_doc(plan: DdtPlan, name: str, sock: str) -> Any:
    """A DDT Map-Resolver starting at both roots."""
    roots = [plan.rloc[r] for r in ROOTS]
    ddt = {"roots": roots, "request-timeout": REQUEST_TIMEOUT}
    return _node_doc(name, ["map-resolver"], sock, plan, ddt=ddt)


def xtr_doc(plan: DdtPlan, site: DdtSite, sock: str) -> Any:
    """An xTR: its prefixes in its instance registered with both Map-Servers of its pair,
    everything else in its instance resolved through both Map-Resolvers, the PETR for
    native-forward destinations."""
    iid = site.iid
    return configs.xtr(
        site.xtr,
        (site.rloc,),
        control_socket=sock,
        daemon={"log-level": "debug"},
        database_mapping=[configs.mapping(p, site.rloc, instance_id=iid) for p in site.prefixes()],
        map_cache=[configs.resolve(p, instance_id=iid) for p in ("0.0.0.0/0", "::/0")],
        map_server=[configs.map_server(plan.rloc[ms], site.key) for ms in site.map_servers],
        map_resolver=configs.addresses(*(plan.rloc[mr] for mr in MAP_RESOLVERS)),
        petr=configs.addresses(plan.rloc[PXTR]),
        registration={"interval": REGISTRATION_INTERVAL},
    )


def pxtr_doc(plan: DdtPlan, sock: str) -> Any:
    """The PITR + PETR: the four site blocks resolved through both Map-Resolvers."""
    return configs.node(
        PXTR,
        ["pitr", "petr"],
        (plan.rloc[PXTR],),
        control_socket=sock,
        daemon={"log-level": "debug"},
        map_cache=[configs.resolve(p, instance_id=iid) for iid in IIDS for p in SITE_BLOCKS[iid]],
        map_resolver=configs.addresses(*(plan.rloc[mr] for mr in MAP_RESOLVERS)),
    )


# -- the running world ----------------------------------------------------------------------------


@dataclass
class World:
    """The lab with every daemon running; ``daemons`` by node name."""

    lab: Lab
    plan: DdtPlan
    daemons: dict[str, DaemonHandle] = field(default_factory=dict)
    killed: set[str] = field(default_factory=set)
    startup_seconds: float = 0.0

    def sock(self, node: str) -> str:
        """The control socket of ``node``'s lispd."""
        return str(self.lab.workdir / f"{node}.sock")

    def ask(self, node: str, command: str, **args: Any) -> Any:
        """One control-socket request to ``node``'s lispd."""
        return request(self.sock(node), command, **args)

    def lispctl(self, node: str, *argv: str, codes: tuple[int, ...] = (0,)) -> str:
        """``lispctl -s SOCK ARGV`` on the host against ``node``'s lispd: its stdout (its
        exit status must be one of ``codes``)."""
        proc = subprocess.run(
            [sys.executable, "-m", "lispd.cli.lispctl", "-s", self.sock(node), *argv],
            capture_output=True, text=True, timeout=20, cwd=REPO, env=_env(),
        )  # fmt: skip
        assert proc.returncode in codes, (node, argv, proc.returncode, proc.stdout, proc.stderr)
        return proc.stdout

    def lispctl_json(self, node: str, *argv: str, codes: tuple[int, ...] = (0,)) -> Any:
        """What ``lispctl --json ARGV`` prints against ``node``, parsed."""
        return json.loads(self.lispctl(node, "--json", *argv, codes=codes))

    def start(self, node: str, doc: Any) -> DaemonHandle:
        """Start lispd on ``node`` with the configuration ``doc``."""
        self.daemons[node] = self.lab.start_lispd(node, configs.toml(doc))
        self.killed.discard(node)
        return self.daemons[node]

    def registered(self, ms: str) -> set[tuple[int, str]]:
        """(iid, EID-prefix) registered at Map-Server ``ms``."""
        return {(r.get("instance-id", 0), r["eid-prefix"]) for r in self.ask(ms, "site")}

    def expected_at(self, ms: str) -> set[tuple[int, str]]:
        """(iid, EID-prefix) that should be registered at ``ms``."""
        return {(s.iid, p) for s in self.plan.served_by(ms) for p in s.prefixes()}

    def stop_all(self) -> list[str]:
        """Stop every daemon still running; the log tails of those that did not exit 0."""
        problems = []
        for node, daemon in self.daemons.items():
            if node in self.killed:
                continue
            code = daemon.stop()
            if code != 0:
                problems.append(f"{node} exited {code}:\n{daemon.log_tail()}")
        return problems


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": REPO}


def configs_of(plan: DdtPlan, sock: Callable[[str], str]) -> dict[str, Any]:
    """Every daemon's configuration document by node, in start order (``sock(node)`` gives
    the control socket path)."""
    out: dict[str, Any] = {}
    for name in ROOTS:
        out[name] = root_doc(plan, name, sock(name))
    for name in CHILDREN:
        out[name] = child_doc(plan, name, sock(name))
    for name in MAP_SERVERS:
        out[name] = ms_doc(plan, name, sock(name))
    for name in MAP_RESOLVERS:
        out[name] = mr_doc(plan, name, sock(name))
    for s in plan.sites:
        out[s.xtr] = xtr_doc(plan, s, sock(s.xtr))
    out[PXTR] = pxtr_doc(plan, sock(PXTR))
    return out


@contextlib.contextmanager
def world() -> Iterator[World]:
    """The whole hierarchy up, every site registered with both Map-Servers of its pair."""
    plan = ddt_plan()
    with Lab(plan.topology) as lab:
        w = World(lab, plan)
        try:
            started = time.monotonic()
            for node, doc in configs_of(plan, w.sock).items():
                w.start(node, doc)
            for ms in MAP_SERVERS:
                wait_for(
                    f"every site of {ms} registered",
                    lambda ms=ms: w.registered(ms) == w.expected_at(ms),  # type: ignore[misc]
                    timeout=20,
                )
            w.startup_seconds = time.monotonic() - started
            yield w
        finally:
            problems = w.stop_all()
        assert not problems, "\n".join(problems)
