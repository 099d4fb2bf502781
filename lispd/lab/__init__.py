"""Network-namespace labs: the one topology builder of the integration tests, demo and benchmarks.

Describe a topology with plain dataclasses (:mod:`lispd.lab.topology`), build it with
:class:`Lab` (:mod:`lispd.lab.lab`), which runs commands, daemons and captures inside it and
always tears it down.  :func:`two_site_topology` (:mod:`lispd.lab.plans`) is the standard
A - xTR1 - R - xTR2 - B test bed with its addresses as named attributes; :func:`nat_topology`
puts xTRs behind masquerading NATs and an RTR behind a 1:1 NAT, :func:`elp_topology` lays out
two sites, two RTRs and an MS/MR one hop from a core router.  Root only.

Modules: ``topology`` (description, no OS access), ``netns`` (namespaces, ``ip`` batches,
sysctls, stale cleanup), ``process`` (daemon handles with sd_notify readiness, tcpdump
captures), ``lab`` (the builder), ``plans`` (ready-made topologies).
"""

from lispd.lab.lab import DEFAULT_SYSCTLS, FORWARDING_SYSCTLS, LISPD_ARGV, ConntrackEntry, Lab
from lispd.lab.netns import CommandError, LabError, cleanup_stale
from lispd.lab.plans import (
    ElpPlan,
    MappingSystemPlan,
    NatPlan,
    ProxyPlan,
    SiteHandle,
    TwoSitePlan,
    elp_topology,
    mapping_system_topology,
    nat_topology,
    proxy_topology,
    site_handle,
    two_site_topology,
)
from lispd.lab.process import Capture, DaemonHandle, DaemonStartError
from lispd.lab.topology import (
    Interface,
    Link,
    Node,
    NodeKind,
    Route,
    StaticNat,
    Topology,
    TopologyError,
)

__all__ = [
    "DEFAULT_SYSCTLS",
    "FORWARDING_SYSCTLS",
    "LISPD_ARGV",
    "Capture",
    "CommandError",
    "ConntrackEntry",
    "DaemonHandle",
    "DaemonStartError",
    "ElpPlan",
    "Interface",
    "Lab",
    "LabError",
    "Link",
    "MappingSystemPlan",
    "NatPlan",
    "Node",
    "NodeKind",
    "ProxyPlan",
    "Route",
    "SiteHandle",
    "StaticNat",
    "Topology",
    "TopologyError",
    "TwoSitePlan",
    "cleanup_stale",
    "elp_topology",
    "mapping_system_topology",
    "nat_topology",
    "proxy_topology",
    "site_handle",
    "two_site_topology",
]
