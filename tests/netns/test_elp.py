"""Explicit Locator Paths (LISP-TE) through real namespaces.

lispd.lab.elp_topology: two xTR sites, two RTRs and a Map-Server/Map-Resolver, all one hop from
each other through a core router.  xtr2 registers its EID-prefixes with an ELP locator
(rtra -> rtrb -> xtr2): the ITR encapsulates to rtra, which finds itself on the path and sends
to rtrb, which sends to xtr2.  Routing would allow every shortcut; only the ELP makes traffic
take that path, and captures on core's links show each leg, in order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from lispd.api.client import request
from lispd.lab import ElpPlan, Lab, SiteHandle, elp_topology
from lispd.wire.data import decapsulate
from lispd.wire.errors import WireError
from lispd.wire.ip import parse_ip_header
from tests import configs
from tests.netns import common
from tests.netns.common import wait_for

pytestmark = pytest.mark.netns

KEYS = {1: "key-one", 2: "key-two"}


def xtr_config(
    plan: ElpPlan, site: SiteHandle, sock: str, path: list[str] | None, nat: bool = False
) -> str:
    return common.xtr_config(
        site,
        sock,
        plan.ms_rloc_v4,
        KEYS[site.index],
        eid_space=(plan.eid_space_v4, plan.eid_space_v6),
        rloc={"elp": list(path)} if path else None,
        nat_traversal={"enabled": nat},
    )


def ms_config(plan: ElpPlan, sock: str) -> str:
    return common.ms_config(
        "ms",
        plan.ms_rloc_v4,
        sock,
        plan.sites,
        KEYS,
        mapping_system={"rtr-rlocs": [plan.rtra_rloc_v4]},
    )


def rtr_config(plan: ElpPlan, name: str, rloc: str, sock: str) -> str:
    return configs.toml(
        configs.rtr(
            name,
            (rloc,),
            control_socket=sock,
            daemon={"log-level": "debug"},
            map_resolver=configs.addresses(plan.ms_rloc_v4),
        )
    )


@contextlib.contextmanager
def elp_lab() -> Iterator[tuple[Lab, ElpPlan]]:
    plan = elp_topology()
    s1, s2 = plan.sites
    path = [plan.rtra_rloc_v4, plan.rtrb_rloc_v4, s2.rloc]
    with Lab(plan.topology) as lab:

        def sock(node: str) -> str:
            return str(lab.workdir / f"{node}.sock")

        daemons = [lab.start_lispd(plan.ms, ms_config(plan, sock(plan.ms)))]
        for rtr, rloc in ((plan.rtra, plan.rtra_rloc_v4), (plan.rtrb, plan.rtrb_rloc_v4)):
            daemons.append(lab.start_lispd(rtr, rtr_config(plan, rtr, rloc, sock(rtr))))
        daemons += [
            # xtr1 runs NAT discovery but is not behind a NAT: a normal xTR.
            lab.start_lispd(s1.xtr, xtr_config(plan, s1, sock(s1.xtr), None, nat=True)),
            lab.start_lispd(s2.xtr, xtr_config(plan, s2, sock(s2.xtr), path)),
        ]  # fmt: skip
        wait_for("sites to register", lambda: len(request(sock(plan.ms), "site")) >= 4)
        try:
            yield lab, plan
        finally:
            for daemon in daemons:
                assert daemon.stop() == 0, daemon.log_tail()


def legs(cap: Any) -> dict[tuple[str, str, bytes], list[tuple[float, str, str]]]:
    """Inner packet (src, dst, bytes after the IP header) -> [(time, outer src, outer dst)]."""
    out: dict[tuple[str, str, bytes], list[tuple[float, str, str]]] = {}
    for frame, ip in zip(cap.packets(), cap.ip_packets(), strict=True):
        try:
            encap = decapsulate(ip)
            inner, hlen, end = parse_ip_header(encap.inner)
        except (ValueError, WireError):
            continue
        key = (str(inner.src), str(inner.dst), encap.inner[hlen:end])
        out.setdefault(key, []).append(
            (frame.timestamp, str(encap.outer.src), str(encap.outer.dst))
        )
    return out


def test_traffic_follows_the_explicit_locator_path_in_order() -> None:
    with elp_lab() as (lab, plan):
        s1, s2 = plan.sites
        for dst in (s2.host_v4, s2.host_v6):  # resolve along the path first
            assert lab.ping(s1.host, dst, count=2, wait=3.0)
        ifaces = [plan.core_xtr1_if, plan.core_rtra_if, plan.core_rtrb_if, plan.core_xtr2_if]
        with contextlib.ExitStack() as stack:
            caps = [stack.enter_context(lab.capture(plan.core, i, "udp port 4341")) for i in ifaces]
            for dst in (s2.host_v4, s2.host_v6):
                assert lab.ping(s1.host, dst, count=5, wait=3.0), dst
        seen: dict[tuple[str, str, bytes], list[tuple[float, str, str]]] = {}
        for cap in caps:
            for key, hits in legs(cap).items():
                seen.setdefault(key, []).extend(hits)
        forward = [
            (k, sorted(set(v))) for k, v in seen.items() if k[:2] in {
                (s1.host_v4, s2.host_v4), (s1.host_v6, s2.host_v6)
            }
        ]  # fmt: skip
        assert len(forward) == 10, forward  # five echo requests per family
        expected = [
            (s1.rloc, plan.rtra_rloc_v4),
            (plan.rtra_rloc_v4, plan.rtrb_rloc_v4),
            (plan.rtrb_rloc_v4, s2.rloc),
        ]
        for key, hits in forward:
            # Each leg seen on the two core links it crosses: keep one sighting per leg.
            order = []
            for _ts, src, dst in hits:
                if (src, dst) not in order:
                    order.append((src, dst))
            assert order == expected, (key, hits)
        # xtr1 found it is not behind a NAT: registered its own RLOC, not the RTR.
        nat = request(str(lab.workdir / f"{s1.xtr}.sock"), "nat")
        assert nat["behind-nat"] is False and nat["global-rloc"] == s1.rloc, nat
        sites = request(str(lab.workdir / f"{plan.ms}.sock"), "site")
        assert {tuple(r["rlocs"]) for r in sites if r["site"] == "site1"} == {(s1.rloc,)}
        # The replies come straight back: xtr1's own mapping has no path.
        back = {
            (src, dst)
            for k, v in seen.items()
            if k[:2] == (s2.host_v4, s1.host_v4)
            for _ts, src, dst in v
        }
        assert back == {(s2.rloc, s1.rloc)}
        rtra = request(str(lab.workdir / f"{plan.rtra}.sock"), "stats")["packets"]
        assert rtra["rtr.reencap.packets"] >= 10  # the captured ten at least
