"""The seed world: every role lispd has, in one lab (``lispd-lab demo`` and ``lispd-lab up``).

:func:`seed_plan` is :func:`~lispd.lab.plans.nat_topology` with its outside world::

    h1 - gxtr1 - nat1 ---+               +--- ms       Map-Server, Map-Resolver, PITR, PETR
        (masquerade)     |               |
                         +---- core -----+--- cloudnat - rtr1     RTR behind a 1:1 NAT
        (masquerade)     |               |
    h2 - xtr2 -- nat2 ---+               +--- outside  a non-LISP host

The configurations below (pure text, validated by the unit tests with
:func:`lispd.config.parse_config`) make it work:

- ``gxtr1`` and ``xtr2`` are xTRs with NAT traversal: Info-Requests to ms find their NAT and the
  RTR, they register their translated RLOC and the RTR, and send everything off-site to rtr1,
  keeping their NAT bindings open with keepalives.  Their map-caches resolve ``0.0.0.0/0`` and
  ``::/0`` (lispd routes those into its TUN for traffic from their EIDs only, so their default
  route via their NAT keeps carrying their own traffic), so that the sites' traffic to the
  outside world goes through LISP too;
- ``rtr1`` re-encapsulates between them (it knows the NAT bindings) and resolves everything else
  through ms: a negative Map-Reply (native-forward) sends the packet to the PETR (ms);
- ``ms`` is Map-Server and Map-Resolver of both sites (handing out rtr1 in Info-Replies), PETR
  (decapsulates and forwards natively to the outside world) and PITR (core routes the EID space
  to it; it resolves through itself and encapsulates to rtr1, which alone reaches the NATed
  xTRs).

:func:`start_daemons` starts them in that order and :func:`wait_converged` waits until both sites
are registered (two prefixes each) and rtr1 knows both NAT bindings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lispd.api.client import ControlError, request
from lispd.lab.lab import Lab
from lispd.lab.plans import NatPlan, SiteHandle, nat_topology
from lispd.lab.process import DaemonHandle

__all__ = [
    "KEEPALIVE_INTERVAL",
    "PROBE_INTERVAL",
    "ROLES",
    "SITE_KEYS",
    "converged",
    "daemon_nodes",
    "ms_config",
    "progress",
    "rtr_config",
    "seed_plan",
    "socket_path",
    "start_daemons",
    "wait_converged",
    "world_configs",
    "xtr_config",
]

#: The shared registration key of each site (the sites' indexes 1 and 2).
SITE_KEYS: dict[int, str] = {1: "seed-site-1-key", 2: "seed-site-2-key"}
#: Seconds between two NAT keepalives of an xTR to the RTR.
KEEPALIVE_INTERVAL = 1.0
#: Seconds between two RLOC probes (so that ``ltr`` has recent RTTs to show).
PROBE_INTERVAL = 1.0

#: What each lispd node of the seed world does, for people.
ROLES: dict[str, str] = {
    "ms": "Map-Server, Map-Resolver, PITR and PETR",
    "rtr1": "RTR in a cloud, behind the 1:1 NAT cloudnat",
    "gxtr1": "xTR of site 1, behind the NAT nat1",
    "xtr2": "xTR of site 2, behind the NAT nat2",
}


def seed_plan() -> NatPlan:
    """The seed world's topology: :func:`nat_topology` with the outside world."""
    return nat_topology(outside_world=True)


def daemon_nodes(plan: NatPlan) -> list[str]:
    """The nodes that run lispd, in start order (the mapping system first)."""
    return [plan.ms, plan.rtr1, *(s.xtr for s in plan.sites)]


def socket_path(directory: Path, node: str) -> Path:
    """The control socket of ``node``'s lispd in ``directory``."""
    return directory / f"{node}.sock"


def _probing() -> str:
    return f"""
[probing]
interval = {PROBE_INTERVAL}
timeout = {PROBE_INTERVAL}
"""


def _resolve_tables(*prefixes: str) -> str:
    """``[[map-cache]]`` entries resolving ``prefixes`` through the Map-Resolver."""
    return "".join(
        f'\n[[map-cache]]\neid-prefix = "{prefix}"\naction = "send-map-request"\n'
        for prefix in prefixes
    )


def _eid_space_tables(plan: NatPlan) -> str:
    """``[[map-cache]]`` entries resolving the whole EID space through the Map-Resolver."""
    return _resolve_tables(plan.eid_space_v4, plan.eid_space_v6)


def ms_config(plan: NatPlan, sock: str | Path) -> str:
    """lispd.conf of ms: Map-Server and Map-Resolver of both sites, PITR and PETR."""
    sites = "".join(
        f"""
[[site]]
name = "site{s.index}"
key = "{SITE_KEYS[s.index]}"
eid-prefixes = [{{ eid-prefix = "{s.prefix_v4}" }}, {{ eid-prefix = "{s.prefix_v6}" }}]
"""
        for s in plan.sites
    )
    return f"""# {plan.ms}: {ROLES["ms"]}
[daemon]
name = "{plan.ms}"
roles = ["map-server", "map-resolver", "pitr", "petr"]
control-socket = "{sock}"

[underlay]
rlocs = ["{plan.ms_rloc_v4}"]

[mapping-system]
rtr-rlocs = ["{plan.rtr1_public_v4}"]
negative-ttl = 1

[[map-resolver]]
address = "{plan.ms_rloc_v4}"
{_eid_space_tables(plan)}{_probing()}{sites}"""


def rtr_config(plan: NatPlan, sock: str | Path) -> str:
    """lispd.conf of rtr1: the RTR behind cloudnat's 1:1 NAT, using ms as Map-Resolver and
    PETR."""
    return f"""# {plan.rtr1}: {ROLES["rtr1"]}
[daemon]
name = "{plan.rtr1}"
roles = ["rtr"]
control-socket = "{sock}"

[underlay]
rlocs = ["{plan.rtr1_private_v4}"]

[rtr]
public-rlocs = ["{plan.rtr1_public_v4}"]

[[map-resolver]]
address = "{plan.ms_rloc_v4}"

[[petr]]
address = "{plan.ms_rloc_v4}"
{_probing()}"""


def xtr_config(plan: NatPlan, site: SiteHandle, sock: str | Path) -> str:
    """lispd.conf of a site's xTR behind its NAT: registers with ms, NAT traversal on."""
    return f"""# {site.xtr}: {ROLES.get(site.xtr, "xTR")}
[daemon]
name = "{site.xtr}"
roles = ["itr", "etr"]
control-socket = "{sock}"

[underlay]
rlocs = ["{site.rloc}"]

[[database-mapping]]
eid-prefix = "{site.prefix_v4}"
rlocs = [{{ address = "{site.rloc}" }}]

[[database-mapping]]
eid-prefix = "{site.prefix_v6}"
rlocs = [{{ address = "{site.rloc}" }}]
{_resolve_tables("0.0.0.0/0", "::/0")}
[[map-server]]
address = "{plan.ms_rloc_v4}"
key = "{SITE_KEYS[site.index]}"

[[map-resolver]]
address = "{plan.ms_rloc_v4}"

[nat-traversal]
enabled = true
info-interval = 5
keepalive-interval = {KEEPALIVE_INTERVAL}
{_probing()}"""


def world_configs(plan: NatPlan, sock_dir: Path) -> dict[str, str]:
    """lispd.conf text of every daemon node (in :func:`daemon_nodes` order); control sockets
    in ``sock_dir``."""
    configs = {
        plan.ms: ms_config(plan, socket_path(sock_dir, plan.ms)),
        plan.rtr1: rtr_config(plan, socket_path(sock_dir, plan.rtr1)),
    }
    for site in plan.sites:
        configs[site.xtr] = xtr_config(plan, site, socket_path(sock_dir, site.xtr))
    return configs


def start_daemons(
    lab: Lab,
    plan: NatPlan,
    *,
    on_ready: Callable[[DaemonHandle], None] | None = None,
) -> dict[str, DaemonHandle]:
    """Start lispd on every daemon node (control sockets in the lab's workdir), each waited
    for (``READY=1``); ``on_ready`` is called with each handle as it comes up."""
    handles = {}
    for node, text in world_configs(plan, lab.workdir).items():
        handles[node] = lab.start_lispd(node, text)
        if on_ready is not None:
            on_ready(handles[node])
    return handles


def _ask(sock: Path, command: str) -> Any:
    try:
        return request(str(sock), command)
    except ControlError:
        return None


def progress(plan: NatPlan, sock_dir: Path) -> tuple[int, int]:
    """(EID-prefixes registered at ms, NAT bindings rtr1 knows); converged at (4, 2)."""
    sites = _ask(socket_path(sock_dir, plan.ms), "site") or []
    bindings = _ask(socket_path(sock_dir, plan.rtr1), "rtr") or []
    return len(sites), len(bindings)


def converged(plan: NatPlan, sock_dir: Path) -> bool:
    """Whether ms has both sites' four prefixes registered and rtr1 both NAT bindings."""
    prefixes, bindings = progress(plan, sock_dir)
    return prefixes >= 2 * len(plan.sites) and bindings >= len(plan.sites)


def wait_converged(plan: NatPlan, sock_dir: Path, timeout: float = 20.0) -> float:
    """Wait until :func:`converged`; return the seconds it took.  Raises ``TimeoutError``."""
    start = time.monotonic()
    while not converged(plan, sock_dir):
        if time.monotonic() - start > timeout:
            prefixes, bindings = progress(plan, sock_dir)
            raise TimeoutError(
                f"after {timeout:g} s ms has {prefixes} of {2 * len(plan.sites)} EID-prefixes "
                f"registered and rtr1 {bindings} of {len(plan.sites)} NAT bindings"
            )
        time.sleep(0.1)
    return time.monotonic() - start
