"""lispctl against live daemons: every command, as tables and as JSON, in the NAT world.

The lab is tests/netns/test_rtr_nat's (lispd.lab.nat_topology): two xTRs behind NATs, an RTR
behind a 1:1 NAT and a Map-Server/Map-Resolver.  It has something to show for every command:
sites on the Map-Server, registrations and NAT state at the xTRs, NAT bindings, learned
map-cache entries and probed RLOCs at the RTR, which here also has one static map-cache entry
(so that clearing the map-cache has something to leave alone).  lispctl runs on the host: the
unix sockets in the lab's workdir are reachable from any namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lispd.api.client import ControlError, request
from lispd.lab import Lab, Topology, nat_topology
from tests import configs
from tests.netns import common
from tests.netns.test_rtr_nat import World, ms_config, rtr_config, xtr_config

pytestmark = pytest.mark.netns

STATIC_EID = "203.0.113.0/24"
STATIC_RLOC = "192.0.2.99"  # on the public link, answered by nobody
RTR_STATIC = [configs.mapping(STATIC_EID, {"address": STATIC_RLOC, "priority": 1, "weight": 100})]


@contextlib.contextmanager
def world() -> Iterator[World]:
    plan = nat_topology()
    with Lab(plan.topology) as lab:
        w = World(lab, plan)
        daemons = [
            lab.start_lispd(plan.ms, ms_config(plan, w.sock(plan.ms))),
            lab.start_lispd(plan.rtr1, rtr_config(plan, w.sock(plan.rtr1), map_cache=RTR_STATIC)),
        ]
        for site in plan.sites:
            daemons.append(lab.start_lispd(site.xtr, xtr_config(plan, site, w.sock(site.xtr))))
        w.config_paths = {d.node: str(d.config_path) for d in daemons}
        w.wait("sites did not register", lambda: len(w.ask(plan.ms, "site")) == 4)
        w.wait("no NAT bindings at the RTR", lambda: len(w.ask(plan.rtr1, "rtr")) == 2)
        try:
            yield w
        finally:
            for daemon in daemons:
                assert daemon.stop() == 0, daemon.log_tail()


def ctl(*argv: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m lispd.cli.lispctl ARGV`` on the host; check its exit status."""
    proc = subprocess.run(
        [sys.executable, "-m", "lispd.cli.lispctl", *argv],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=common.REPO,
        env={**os.environ, "PYTHONPATH": common.REPO},
    )
    assert proc.returncode == expect, (argv, proc.returncode, proc.stdout, proc.stderr)
    return proc


def show(sock: str, *words: str, expect: int = 0) -> str:
    """The table lispctl prints."""
    return ctl("-s", sock, *words, expect=expect).stdout


def show_json(sock: str, *words: str, expect: int = 0) -> Any:
    """What lispctl --json prints, parsed."""
    return json.loads(ctl("-s", sock, "--json", *words, expect=expect).stdout)


def prefixes(entries: list[dict[str, Any]]) -> dict[str, str]:
    """eid-prefix -> source of map-cache entries."""
    return {e["eid-prefix"]: e["source"] for e in entries}


def test_every_lispctl_command_against_live_daemons() -> None:
    with world() as w:
        plan, lab = w.plan, w.lab
        s1, s2 = plan.sites
        ms, rtr, x1 = w.sock(plan.ms), w.sock(plan.rtr1), w.sock(s1.xtr)

        # version, by socket and by the daemon's configuration file
        assert show_json(x1, "version")["name"] == s1.xtr
        version = ctl("-c", w.config_paths[s1.xtr], "version").stdout
        assert re.fullmatch(rf"lispd \S+, node {s1.xtr}\n", version), version

        # show site (Map-Server)
        sites = show_json(ms, "show", "site")
        assert {(r["site"], r["eid-prefix"]) for r in sites} == {
            (f"site{s.index}", p) for s in plan.sites for p in (s.prefix_v4, s.prefix_v6)
        }
        text = show(ms, "sh", "si")  # abbreviated
        assert text.startswith("LISP site registrations: 4 EID-prefixes\n\nSite ")
        for s in plan.sites:
            public = plan.nat1_public_v4 if s is s1 else plan.nat2_public_v4
            line = rf"^site{s.index}\s+\d\d:\d\d:\d\d\s+yes\s+\S+\s+0\s+{re.escape(s.prefix_v4)}"
            match = re.search(line + r"\s+yes\s+(\S+)$", text, re.M)
            assert match, text
            assert set(match.group(1).split(",")) == {public, plan.rtr1_public_v4}

        # show registrations, show nat, show database (xTR behind a NAT)
        regs = show_json(x1, "show", "registrations")
        assert [r["address"] for r in regs] == [plan.ms_rloc_v4]
        assert regs[0]["registers-sent"] >= 1 and regs[0]["proxy-reply"]
        assert re.search(
            rf"^{re.escape(plan.ms_rloc_v4)}\s+\d+\s+yes\s+(yes|no)\s+\d+\s+\d+\s+\d\d:\d\d:\d\d",
            show(x1, "show", "registrations"),
            re.M,
        )
        nat = show_json(x1, "show", "nat")
        assert nat["behind-nat"] and nat["global-rloc"] == plan.nat1_public_v4
        text = show(x1, "show", "nat")
        assert "behind a NAT yes" in text and f"Global RLOC: {plan.nat1_public_v4}" in text
        assert re.search(rf"^{re.escape(plan.rtr1_public_v4)}\s+\d+\s", text, re.M), text
        assert show(rtr, "show", "nat") == "NAT traversal is not enabled on this node\n"
        database = show_json(x1, "show", "database")
        assert [(e["eid-prefix"], [r["address"] for r in e["rlocs"]]) for e in database] == [
            (s1.prefix_v4, [s1.rloc]),
            (s1.prefix_v6, [s1.rloc]),
        ]
        text = show(x1, "show", "database")
        assert re.search(rf"^0\s+{re.escape(s1.prefix_v4)}\s+{s1.rloc}\s+1/100\s+up$", text, re.M)

        # show stats: the counters move with traffic
        before = show_json(x1, "show", "stats")["packets"].get("itr.encap.packets", 0)
        assert lab.ping(s1.host, s2.host_v4, count=3, wait=3.0)
        stats = show_json(x1, "show", "stats")
        assert stats["packets"]["itr.encap.packets"] >= before + 3
        text = show(x1, "show", "stats")
        encap = re.search(r"^itr\.encap\s+(\d+)\s+(\d+)$", text, re.M)
        assert encap and int(encap.group(1)) >= before + 3, text
        reasons = text.split("\nDrops: ")[1].splitlines()[3:]
        assert [r.split()[0] for r in reasons] == sorted(stats["drops"])

        # show rtr (the RTR's NAT bindings)
        bindings = show_json(rtr, "show", "rtr")
        assert {b["address"] for b in bindings} == {plan.nat1_public_v4, plan.nat2_public_v4}
        text = show(rtr, "show", "rtr")
        assert text.startswith("LISP RTR NAT bindings: 2 bindings\n")
        for b in bindings:
            assert re.search(rf"^{re.escape(b['address'])}\s+{b['port']}\s", text, re.M), text

        # show map-cache at the RTR: what the ping made it learn, and the static entry
        cache = prefixes(show_json(rtr, "show", "map-cache"))
        assert cache[s2.prefix_v4] == "map-reply" and cache[s1.prefix_v4] == "map-reply"
        assert cache[STATIC_EID] == "static"
        text = show(rtr, "show", "map-cache")
        assert re.search(
            rf"^0\s+{re.escape(STATIC_EID)}\s+encapsulate\s+static\s+never\s+{STATIC_RLOC}"
            r"\s+1/100\s+(up|down)$",
            text,
            re.M,
        ), text
        assert re.search(rf"^0\s+{re.escape(s2.prefix_v4)}\s+encapsulate\s+map-reply\s", text, re.M)
        # ... the longest match of one EID only
        [entry] = show_json(rtr, "show", "map-cache", s2.host_v4)
        assert entry["eid-prefix"] == s2.prefix_v4
        [entry] = show_json(rtr, "show", "map-cache", f"[0]{s1.host_v4}")
        assert entry["eid-prefix"] == s1.prefix_v4
        text = show(rtr, "show", "map-cache", "203.0.113.7")
        assert text.startswith("LISP map-cache: 1 entry\n") and STATIC_EID in text
        assert show_json(rtr, "show", "map-cache", "[5]203.0.113.7", expect=1) == []
        assert "no map-cache entry" in ctl("-s", rtr, "sh", "ma", "10.1.1.1", expect=1).stderr

        # show rlocs: the RTR probes the RLOCs of its map-cache
        probed = {r["rloc"]: r for r in show_json(rtr, "show", "rlocs")}
        assert STATIC_RLOC in probed and plan.nat2_public_v4 in probed, probed
        text = show(rtr, "show", "rlocs")
        assert re.search(
            rf"^{STATIC_RLOC}\s+{re.escape(STATIC_EID)}\s+(unknown|down)\s", text, re.M
        )

        # clear map-cache: one prefix, then all the learned ones; never the static entry
        assert show_json(rtr, "clear", "map-cache", s2.prefix_v4) == {"cleared": 1}
        cache = prefixes(show_json(rtr, "show", "map-cache"))
        assert s2.prefix_v4 not in cache and s1.prefix_v4 in cache and STATIC_EID in cache
        assert show(rtr, "clear", "map-cache", STATIC_EID) == (
            f"Cleared 0 learned map-cache entries for {STATIC_EID}\n"
        )
        learned = sum(1 for source in cache.values() if source != "static")
        assert show(rtr, "clear", "map-cache") == (
            f"Cleared {learned} learned map-cache {'entry' if learned == 1 else 'entries'}\n"
        )
        assert prefixes(show_json(rtr, "show", "map-cache")) == {STATIC_EID: "static"}
        probed = {r["rloc"] for r in show_json(rtr, "show", "rlocs")}
        assert probed == {STATIC_RLOC}  # no more probing of the cleared entries' RLOCs
        with pytest.raises(ControlError, match="does not appear to be"):
            request(rtr, "clear-map-cache", prefix="not-a-prefix")
        # traffic brings the entries back
        assert lab.ping(s1.host, s2.host_v4, count=2, wait=3.0)
        assert s2.prefix_v4 in prefixes(show_json(rtr, "show", "map-cache"))

        # reload: unchanged, refused (configuration broken), then a database change applied
        config = Path(w.config_paths[s1.xtr])
        original = config.read_text()
        assert show_json(x1, "reload") == {
            "reloaded": True,
            "applied": [],
            "restart-needed": [],
            "database-changed": False,
        }
        config.write_text(original + "\n[daemon\n")
        refused = show_json(x1, "reload", expect=1)
        assert refused["reloaded"] is False and str(config) in refused["error"], refused
        assert "Reload refused" in ctl("-s", x1, "reload", expect=1).stderr
        config.write_text(
            original.replace(
                f'{{ address = "{s1.rloc}" }}', f'{{ address = "{s1.rloc}", weight = 50 }}'
            )
        )
        assert show(x1, "reload") == "Configuration reloaded: database-mapping\n"
        assert {r["weight"] for e in show_json(x1, "show", "database") for r in e["rlocs"]} == {50}
        config.write_text(original)
        assert show_json(x1, "reload")["applied"] == ["database-mapping"]

        # the daemon gone: a clear message, exit 1
        lab_sock = w.sock("nobody")
        assert (
            "lispd is not running? cannot connect to"
            in ctl("-s", lab_sock, "version", expect=1).stderr
        )


# --- a map-cache of a few thousand entries, page by page -------------------------------------

BIG_V6 = 2500  # /64s in 2001:db8:1000::/48
BIG_V4 = 256  # /32s in 203.0.113.0/24
BIG_RLOC = "192.0.2.2"  # the other end of the link, answered by nobody


def big_map_cache() -> list[configs.Doc]:
    """A few thousand static map-cache entries: IPv6 /64s, IPv4 /32s, a few in instance 7."""
    entries = [
        configs.mapping(f"2001:db8:1000:{k:x}::/64", {"address": BIG_RLOC, "priority": 1})
        for k in range(BIG_V6)
    ]
    entries += [
        configs.mapping(f"203.0.113.{k}/32", {"address": BIG_RLOC, "priority": 1})
        for k in range(BIG_V4)
    ]
    entries += [
        configs.mapping("203.0.113.0/24", {"address": BIG_RLOC, "priority": 2}, instance_id=7),
        configs.negative("198.51.100.0/24", "drop", instance_id=7),
    ]
    return entries


def test_a_map_cache_of_thousands_page_by_page() -> None:
    topo = Topology()
    h1, h2 = topo.host("h1"), topo.host("h2")
    topo.link(h1, h2, ["192.0.2.1/30"], ["192.0.2.2/30"])
    total = BIG_V6 + BIG_V4 + 2
    with Lab(topo) as lab:
        sock = str(lab.workdir / "h1.sock")
        doc = configs.xtr(
            "h1",
            ("192.0.2.1",),
            ("198.51.100.0/28",),
            control_socket=sock,
            probing={"map-cache": False},
        )
        doc["map-cache"] = big_map_cache()
        daemon = lab.start_lispd("h1", configs.toml(doc), timeout=60.0)
        try:
            # the control protocol itself: pages of at most the count asked, each entry once
            page = request(sock, "map-cache", cursor=None, count=100)
            assert page["total"] == total
            seen = [(e["instance-id"], e["eid-prefix"]) for e in page["entries"]]
            pages = 1
            while page["cursor"] is not None:
                page = request(sock, "map-cache", cursor=page["cursor"], count=100)
                assert len(page["entries"]) <= 100
                seen += [(e["instance-id"], e["eid-prefix"]) for e in page["entries"]]
                pages += 1
            assert len(seen) == len(set(seen)) == total
            assert pages == -(-total // 100)
            # lispctl prints every entry, as a table and as JSON, fetching pages
            text = show(sock, "show", "map-cache")
            assert text.startswith(f"LISP map-cache: {total} entries\n\nInst-ID ")
            rows = [line for line in text.splitlines()[3:] if line.strip()]
            assert len(rows) == total  # one RLOC each (or none: one line)
            assert re.search(r"^7\s+198\.51\.100\.0/24\s+drop\s+static\s+never\s+-", text, re.M)
            listed = show_json(sock, "show", "map-cache")
            assert sorted((e["instance-id"], e["eid-prefix"]) for e in listed) == sorted(seen)
            # --limit: the first N
            text = show(sock, "--limit", "25", "show", "map-cache")
            assert len(text.splitlines()) == 3 + 25 + 1
            assert text.endswith(f"(the first 25 of {total} shown: --limit 25)\n")
            assert len(show_json(sock, "--limit", "7", "show", "map-cache")) == 7
            # one EID, one prefix: answered by the daemon
            [entry] = show_json(sock, "show", "map-cache", "2001:db8:1000:9c3::1")
            assert entry["eid-prefix"] == "2001:db8:1000:9c3::/64"
            [entry] = show_json(sock, "show", "map-cache", "[7]203.0.113.9")
            assert entry["eid-prefix"] == "203.0.113.0/24" and entry["instance-id"] == 7
            [entry] = show_json(sock, "show", "map-cache", "203.0.113.9/32")
            assert entry["rlocs"][0]["priority"] == 1
            assert show_json(sock, "show", "map-cache", "203.0.113.0/24", expect=1) == []
            # an old client's un-paged request still gets the whole (small enough) table
            assert len(request(sock, "map-cache")) == total
        finally:
            # (the routes of every static prefix are removed one netlink call each on the
            # way out: more than the default 5 s on a busy machine)
            assert daemon.stop(timeout=60.0) == 0, daemon.log_tail()
