"""The Prometheus endpoint of live daemons: scraped over HTTP inside their namespaces.

lispd.lab.mapping_system_topology(sites=2): h1-xtr1 and h2-xtr2 around a core router with a
lispd MS/MR.  Each daemon has ``[metrics] listen = "127.0.0.1:9342"``, on the loopback of its
own namespace (the same port three times, no clash).  A small urllib client run in the node's
namespace scrapes it; the text must parse with prometheus_client's parser and agree with what
the control socket says, before and after pings through the tunnel.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lispd.api.client import request
from lispd.lab import Lab, MappingSystemPlan, mapping_system_topology
from tests.netns.common import ms_config, wait_for, xtr_config

pytestmark = pytest.mark.netns

KEYS = {1: "key-one", 2: "key-two"}
LISTEN = "127.0.0.1:9342"
METRICS = {"listen": LISTEN}
PINGS = 5

# Run inside a node: GET the URL, print the status, the content type and the body.
CLIENT = """
import sys, urllib.error, urllib.request
try:
    response = urllib.request.urlopen(sys.argv[1], timeout=5)
except urllib.error.HTTPError as exc:
    response = exc
sys.stdout.write(f"{response.status}\\n{response.headers['Content-Type']}\\n")
sys.stdout.flush()
sys.stdout.buffer.write(response.read())
"""

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class World:
    lab: Lab
    plan: MappingSystemPlan
    socks: dict[str, str]

    def get(self, node: str, path: str = "/metrics") -> tuple[int, str, str]:
        """Status, content type and body of ``GET path`` from inside ``node``."""
        proc = self.lab.run(
            node, sys.executable, "-I", "-S", "-c", CLIENT, f"http://{LISTEN}{path}", timeout=20
        )
        status, content_type, body = proc.stdout.split("\n", 2)
        return int(status), content_type, body

    def scrape(self, node: str) -> Samples:
        """Every sample of ``node``'s metrics, by (name, sorted labels); the text must parse."""
        status, content_type, body = self.get(node)
        assert status == 200 and content_type == "text/plain; version=0.0.4; charset=utf-8"
        out: Samples = {}
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
        return out

    def ask(self, node: str, command: str) -> Any:
        return request(self.socks[node], command)


def metric(samples: Samples, name: str, /, **labels: str) -> float | None:
    """The value of sample ``name`` with exactly ``labels``, None when absent."""
    return samples.get((name, tuple(sorted(labels.items()))))


def family(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Labels -> value of every sample called ``name``."""
    return {labels: v for (n, labels), v in samples.items() if n == name}


@contextlib.contextmanager
def world() -> Iterator[World]:
    plan = mapping_system_topology(sites=2)
    with Lab(plan.topology) as lab:
        nodes = (plan.msmr, *(s.xtr for s in plan.sites))
        socks = {n: str(lab.workdir / f"{n}.sock") for n in nodes}
        daemons = [
            lab.start_lispd(
                plan.msmr,
                ms_config(
                    plan.msmr, plan.msmr_rloc, socks[plan.msmr], plan.sites, KEYS, metrics=METRICS
                ),
            )
        ]
        for site in plan.sites:
            config = xtr_config(
                site, socks[site.xtr], plan.msmr_rloc, KEYS[site.index], metrics=METRICS
            )
            daemons.append(lab.start_lispd(site.xtr, config))
        w = World(lab, plan, socks)
        wanted = {p for s in plan.sites for p in (s.prefix_v4, s.prefix_v6)}
        wait_for(
            "sites not registered",
            lambda: {r["eid-prefix"] for r in w.ask(plan.msmr, "site")} == wanted,
            timeout=15.0,
        )
        try:
            yield w
        finally:
            for daemon in daemons:
                assert daemon.stop() == 0, daemon.log_tail()
                assert "Traceback" not in daemon.log_tail(400), daemon.log_tail()


def cache_counts(entries: list[dict[str, Any]]) -> dict[tuple[tuple[str, str], ...], float]:
    """The control socket's map-cache as lispd_map_cache_entries would count it."""
    counts: dict[tuple[tuple[str, str], ...], float] = {}
    for e in entries:
        family_name = "ipv6" if ":" in e["eid-prefix"] else "ipv4"
        labels = (
            ("family", family_name),
            ("instance_id", str(e["instance-id"])),
            ("source", e["source"]),
        )
        counts[labels] = counts.get(labels, 0) + 1
    return counts


def test_metrics_endpoint_of_live_daemons() -> None:
    with world() as w:
        plan = w.plan
        s1, s2 = plan.sites

        # Before any traffic: the node, its static map-cache, its registration.
        before = {x: w.scrape(x) for x in (s1.xtr, s2.xtr)}
        x1 = before[s1.xtr]
        version = w.ask(s1.xtr, "version")["version"]
        assert metric(x1, "lispd_info", name=s1.xtr, version=version) == 1
        assert family(x1, "lispd_map_cache_entries") == {
            (("family", "ipv4"), ("instance_id", "0"), ("source", "static")): 1,
            (("family", "ipv6"), ("instance_id", "0"), ("source", "static")): 1,
        }
        assert metric(x1, "lispd_resolutions_pending") == 0
        assert metric(x1, "lispd_resolution_held_packets") == 0
        ms = plan.msmr_rloc
        assert (metric(x1, "lispd_map_registers_sent_total", map_server=ms) or 0) >= 1
        wait_for(
            "registration not acknowledged",
            lambda: metric(w.scrape(s1.xtr), "lispd_registration_acknowledged", map_server=ms) == 1,
            timeout=15.0,
        )
        assert metric(x1, "lispd_nat_bindings") is None  # no RTR here
        assert metric(x1, "lispd_map_server_sites") is None  # no Map-Server here

        # Pings through the tunnel move the packet counters of both xTRs.
        assert w.lab.ping(s1.host, s2.host_v4, count=PINGS, wait=3.0)
        after = {x: w.scrape(x) for x in (s1.xtr, s2.xtr)}

        def moved(node: str, name: str, counter: str) -> float:
            then = metric(before[node], name, counter=counter) or 0
            now = metric(after[node], name, counter=counter)
            assert now is not None, (node, name, counter)
            return now - then

        for node in (s1.xtr, s2.xtr):  # requests one way, replies the other
            assert moved(node, "lispd_packets_total", "itr.encap") >= PINGS, node
            assert moved(node, "lispd_packets_total", "etr.decap") >= PINGS, node
            assert moved(node, "lispd_bytes_total", "itr.encap") >= PINGS * 84, node  # 20+8+56

        # The same numbers as the control socket's stats (no traffic in between).
        stats = w.ask(s1.xtr, "stats")
        x1 = w.scrape(s1.xtr)
        packets = stats["packets"]
        for key in ("itr.encap", "etr.decap"):
            assert metric(x1, "lispd_packets_total", counter=key) == packets[f"{key}.packets"]
            assert metric(x1, "lispd_bytes_total", counter=key) == packets[f"{key}.bytes"]
        drops = family(x1, "lispd_drops_total")
        for reason, count in stats["drops"].items():
            assert drops[(("reason", reason),)] >= count

        # The map-cache learned site 2's prefix from a Map-Reply: as the control socket says.
        cache = w.ask(s1.xtr, "map-cache")
        assert any(e["eid-prefix"] == s2.prefix_v4 for e in cache)
        counts = family(x1, "lispd_map_cache_entries")
        assert counts == cache_counts(cache)
        assert counts[(("family", "ipv4"), ("instance_id", "0"), ("source", "map-reply"))] == 1
        assert metric(x1, "lispd_resolutions_pending") == 0

        # xtr1 probes xtr2's RLOC, learned with the mapping: up, with an RTT.
        def probed() -> Samples | None:
            samples = w.scrape(s1.xtr)
            up = metric(samples, "lispd_rloc_state", rloc=s2.rloc, state="up")
            return samples if up == 1 else None

        x1 = wait_for("xtr2's RLOC not up", probed, timeout=15.0)
        assert metric(x1, "lispd_rloc_state", rloc=s2.rloc, state="down") == 0
        assert metric(x1, "lispd_rloc_state", rloc=s2.rloc, state="unknown") == 0
        rtt = metric(x1, "lispd_rloc_rtt_seconds", rloc=s2.rloc)
        assert rtt is not None and 0 < rtt < 1
        assert (metric(x1, "lispd_rloc_probe_replies_total", rloc=s2.rloc) or 0) >= 1
        [rloc] = [r for r in w.ask(s1.xtr, "rlocs") if r["rloc"] == s2.rloc]
        assert rloc["state"] == "up"

        # The Map-Server: its sites, all registered.
        msmr = w.scrape(plan.msmr)
        assert metric(msmr, "lispd_map_server_sites") == 2
        assert metric(msmr, "lispd_map_server_registered_sites") == 2
        assert family(msmr, "lispd_map_server_registered_prefixes") == {
            (("site", "site1"),): 2,
            (("site", "site2"),): 2,
        }
        assert metric(msmr, "lispd_resolutions_pending") is None  # no resolver there

        # Other paths and methods, from inside the namespace.
        status, _, body = w.get(s1.xtr, "/")
        assert status == 404 and body.startswith("404")
        assert w.scrape(s1.xtr)  # still serving
