"""Running lispd as a service, through real namespaces: systemd's notify protocol (READY only
once packets flow, STATUS, WATCHDOG, STOPPING), live reload under a continuous 20 ms ping (a
valid reload loses nothing, an invalid one is refused and changes nothing), and lispd as an
unprivileged user holding only CAP_NET_ADMIN (all systemd/lispd.service grants).

The lab is tests/netns/test_controlplane's: three xTR sites and an MS/MR around a core router.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lispd.api.client import request
from lispd.lab import Lab, mapping_system_topology
from tests import configs
from tests.netns import common
from tests.netns.test_controlplane import (
    KEYS,
    all_prefixes,
    msmr_config,
    network,
    registered,
    wait_for,
    xtr_config,
    xtr_doc,
)

pytestmark = pytest.mark.netns

CAP_BITS = {"net_admin": 12}


def unit_capabilities() -> str:
    """The capabilities systemd/lispd.service grants, as setpriv spells them."""
    unit = Path(common.REPO, "systemd", "lispd.service").read_text()
    [line] = [x for x in unit.splitlines() if x.startswith("AmbientCapabilities=")]
    names = [c.removeprefix("CAP_").lower() for c in line.partition("=")[2].split()]
    assert set(names) == set(CAP_BITS), names
    return ",".join(names)


CAPS = unit_capabilities()
NOBODY = 65534
PINGER = [sys.executable, "-m", "lispd.lab.pinger"]
STATIC_EID = "203.0.113.0/24"  # reached by nobody here: only its map-cache entry and route


def lispctl(sock: str, *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lispd.cli.lispctl", "-s", sock, *words],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=common.REPO,
        env={**os.environ, "PYTHONPATH": common.REPO},
    )


def ping_summary(output: str) -> tuple[int, int]:
    """(sent, received) from the pinger's summary line."""
    m = re.search(r"sent=(\d+) received=(\d+)", output)
    assert m, output
    return int(m.group(1)), int(m.group(2))


# --- systemd notify protocol ------------------------------------------------------------------


def test_ready_only_once_packets_flow_then_status_watchdog_and_stopping() -> None:
    """The lab's NOTIFY_SOCKET stands in for systemd.  When READY=1 arrives (start_lispd returns
    on it), the TUN, its routes and the data and control sockets are already there, looked at
    without waiting, and a single ping sent then is answered."""
    with network() as net:
        plan = net.plan
        site1, site2 = plan.sites[0], plan.sites[1]
        wait_for("sites registered", lambda: registered(net) == all_prefixes(plan))
        net.stop(site1.xtr)
        config = xtr_config(plan, site1, net.sock(site1.xtr))
        daemon = net.lab.start_lispd(site1.xtr, config, env={"WATCHDOG_USEC": "300000"})
        net.daemons[site1.xtr] = daemon
        ready_at = daemon.notifications.index("READY=1")
        for family in ("-4", "-6"):  # send-map-request for 0.0.0.0/0 and ::/0: default routes
            routes = net.lab.run(
                site1.xtr, "ip", family, "route", "show", "table", "4341", "default"
            ).stdout
            assert "dev lisp0" in routes, routes
        bound = net.lab.run(site1.xtr, "ss", "-Hnlu").stdout
        for port in (4341, 4342):
            assert f"{site1.rloc}:{port} " in bound, bound
        assert net.lab.ping(site1.host, site2.host_v4, count=1, wait=3.0)
        assert net.lab.ping(site1.host, site2.host_v6, count=1, wait=3.0)
        # Nothing before READY claimed readiness; STATUS came with it.
        assert not any(n.startswith("WATCHDOG") for n in daemon.notifications[:ready_at])
        status = [n for n in daemon.notifications if n.startswith("STATUS=")]
        assert status and "roles=etr,itr" in status[0] and "map-cache=" in status[0]
        # Watchdog pings every WATCHDOG_USEC / 2 (0.15 s) while the loop runs.
        start = len(daemon.notifications)
        time.sleep(1.0)
        daemon.wait_notify("WATCHDOG=1", start=start)
        pings = daemon.notifications[start:].count("WATCHDOG=1")
        assert 3 <= pings <= 10, daemon.notifications[start:]
        # STATUS follows what happens: traffic shows up in it.
        assert net.lab.ping(site1.host, site2.host_v4, count=3, wait=2.0)

        def statuses() -> list[str]:
            daemon.read_notifications()
            return [n for n in daemon.notifications[start:] if n.startswith("STATUS=")]

        wait_for(
            "a STATUS with traffic",
            lambda: any("encap=0 " not in n for n in statuses()),
            timeout=15.0,
        )
        assert "registered=1/1" in statuses()[-1]
        net.daemons.pop(site1.xtr)
        assert daemon.stop() == 0, daemon.log_tail()
        assert "STOPPING=1" in daemon.notifications, daemon.notifications[-5:]


# --- reload -----------------------------------------------------------------------------------


def test_reload_under_a_20ms_ping_loses_nothing_and_a_bad_file_is_refused() -> None:
    with network() as net:
        plan = net.plan
        site1, site2 = plan.sites[0], plan.sites[1]
        sock1, sock2 = net.sock(site1.xtr), net.sock(site2.xtr)
        wait_for("sites registered", lambda: registered(net) == all_prefixes(plan))
        assert net.lab.ping(site1.host, site2.host_v4, count=1, wait=3.0)
        assert net.lab.ping(site1.host, site2.host_v6, count=1, wait=3.0)
        held_before = net.ask(site1.xtr, "stats")["packets"].get("itr.held.packets", 0)
        learned = {
            e["eid-prefix"] for e in net.ask(site1.xtr, "map-cache") if e["source"] != "static"
        }
        assert {site2.prefix_v4, site2.prefix_v6} <= learned

        count = 250  # 5 s at 20 ms
        pinger = net.lab.popen(
            site1.host,
            [*PINGER, "-i", "0.02", "-c", str(count), "-W", "2", site2.host_v4],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=common.REPO,
            env={**os.environ, "PYTHONPATH": common.REPO},
        )
        time.sleep(0.5)

        # 1. A valid reload at xtr1: its IPv6 prefix is withdrawn, the resolver and the log
        #    level change.  It is applied at once, and the Map-Server forgets the prefix now.
        path1 = net.daemons[site1.xtr].config_path
        original1 = path1.read_text()
        doc1 = xtr_doc(plan, site1, sock1)
        assert configs.toml(doc1) == original1  # what xtr1 runs
        reloaded = configs.merge(doc1, daemon={"log-level": "info"})
        reloaded["database-mapping"] = [
            m for m in doc1["database-mapping"] if m["eid-prefix"] != site1.prefix_v6
        ]
        assert reloaded["database-mapping"] != doc1["database-mapping"]
        #    A static map-cache entry and a PETR arrive too: the entry and its route into the
        #    TUN appear, the PETR is probed.
        reloaded["map-cache"].append(configs.mapping(STATIC_EID, site2.rloc))
        reloaded["petr"] = configs.addresses(plan.msmr_rloc)
        path1.write_text(configs.toml(reloaded))
        answer = json.loads(lispctl(sock1, "--json", "reload").stdout)
        assert answer["reloaded"] is True, answer
        assert {"database-mapping", "daemon.log-level", "map-cache", "petr"} <= set(
            answer["applied"]
        ), answer
        assert answer["restart-needed"] == []
        database = json.loads(lispctl(sock1, "--json", "show", "database").stdout)
        assert [d["eid-prefix"] for d in database] == [site1.prefix_v4]
        wait_for("the withdrawn prefix gone", lambda: site1.prefix_v6 not in registered(net), 3.0)
        static = [e for e in net.ask(site1.xtr, "map-cache") if e["eid-prefix"] == STATIC_EID]
        assert [e["source"] for e in static] == ["static"]
        shown = net.lab.run(site1.xtr, "ip", "route", "show", "table", "4341", STATIC_EID).stdout
        assert "dev lisp0" in shown, shown
        assert plan.msmr_rloc in {r["rloc"] for r in net.ask(site1.xtr, "rlocs")}

        # 2. An invalid file at xtr2 is refused, by lispctl and by SIGHUP alike.
        path2 = net.daemons[site2.xtr].config_path
        original2 = path2.read_text()
        doc2 = xtr_doc(plan, site2, sock2)
        assert configs.toml(doc2) == original2
        path2.write_text(configs.toml(configs.merge(doc2, daemon={"roles": ["itr", "bogus"]})))
        proc = lispctl(sock2, "--json", "reload")
        answer = json.loads(proc.stdout)
        assert answer["reloaded"] is False and re.search(r":\d+: daemon.roles", answer["error"])
        assert proc.returncode != 0
        net.daemons[site2.xtr].send_signal(signal.SIGHUP)
        wait_for(
            "the refusal logged",
            lambda: net.daemons[site2.xtr].log_text().count("reload refused") >= 2,
            3.0,
        )
        path2.write_text(original2)

        # 3. The original file, with a shorter registration interval: the prefix comes back,
        #    the log level returns to debug.
        path1.write_text(configs.toml(configs.merge(doc1, registration={"interval": 30})))
        answer = request(sock1, "reload")
        assert set(answer["applied"]) == {
            "daemon.log-level",
            "database-mapping",
            "map-cache",
            "petr",
            "registration",
        }, answer
        wait_for("the prefix registered again", lambda: site1.prefix_v6 in registered(net), 3.0)
        assert not [e for e in net.ask(site1.xtr, "map-cache") if e["eid-prefix"] == STATIC_EID]
        shown = net.lab.run(site1.xtr, "ip", "route", "show", "table", "4341", STATIC_EID).stdout
        assert shown.strip() == "", shown
        assert plan.msmr_rloc not in {r["rloc"] for r in net.ask(site1.xtr, "rlocs")}
        # xtr2 was told (SMR) both times; its Map-Requests for one EID are at least 1 s apart.
        assert net.lab.ping(site1.host, site2.host_v6, count=3, wait=3.0)

        output, _ = pinger.communicate(timeout=30)
        sent, received = ping_summary(output)
        assert (sent, received) == (count, count), output
        # Nothing was flushed: the learned entry stayed and no packet waited for a resolution.
        learned_after = {
            e["eid-prefix"] for e in net.ask(site1.xtr, "map-cache") if e["source"] != "static"
        }
        assert learned <= learned_after
        held_after = net.ask(site1.xtr, "stats")["packets"].get("itr.held.packets", 0)
        assert held_after == held_before
        assert net.daemons[site2.xtr].running() and net.daemons[site1.xtr].running()


# --- least privilege ----------------------------------------------------------------------------


def _exposing_mounts(paths: list[Path], scratch: Path) -> list[str]:
    """Shell lines that, inside the daemon's private mount namespace only, make ``paths``
    reachable by an unprivileged user: a directory on the way that others cannot enter (say
    /root, where pyenv lives) is covered by a world-enterable stand-in holding just the entries
    needed, bind-mounted from the real ones.  Nothing outside that namespace changes."""
    blocked: dict[Path, set[str]] = {}
    for path in paths:
        for parent in path.parents:
            if parent == Path("/"):
                continue
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                child = path.relative_to(parent).parts[0]
                blocked.setdefault(parent, set()).add(child)
    lines = []
    for i, (parent, children) in enumerate(
        sorted(blocked.items(), key=lambda kv: -len(kv[0].parts))
    ):
        standin = scratch / f"standin{i}"
        standin.mkdir(mode=0o755)
        standin.chmod(0o755)
        for child in sorted(children):
            (standin / child).mkdir()
            lines.append(f"mount --rbind {parent / child} {standin / child}")
        lines.append(f"mount --rbind {standin} {parent}")
    return lines


def test_runs_as_an_unprivileged_user_with_only_cap_net_admin() -> None:
    """xtr1's lispd runs as nobody with only the unit's capabilities (ambient and bounding):
    it opens the TUN, installs routes, sets the TUN's sysctls, binds its sockets and passes
    traffic both ways, v4 and v6.  /dev/net/tun here may be root-only (Debian's is 0666): a
    0666 node of the same device is bound over it in the daemon's own mount namespace."""
    plan = mapping_system_topology()
    site1, site2 = plan.sites[0], plan.sites[1]
    with Lab(plan.topology) as lab:
        lab.workdir.chmod(0o755)  # the config file is read by nobody
        scratch = lab.workdir / "priv"
        scratch.mkdir(mode=0o755)
        tun = scratch / "tun"
        os.mknod(tun, 0o666 | stat.S_IFCHR, os.makedev(10, 200))
        tun.chmod(0o666)
        rundir = scratch / "run"  # what RuntimeDirectory=lispd gives the service
        rundir.mkdir()
        os.chown(rundir, NOBODY, NOBODY)
        sock = str(rundir / "lispd.sock")
        exposed = _exposing_mounts(
            [Path(sys.base_prefix), Path(sys.prefix), Path(common.REPO), lab.workdir], scratch
        )
        caps = CAPS.replace(",", ",+")
        setpriv = (
            f"setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups --inh-caps=-all,+{caps} "
            f"--ambient-caps=-all,+{caps} --bounding-set=-all,+{caps} "
            f"{sys.executable} -m lispd -c {{config}}"
        )
        script = " && ".join([f"mount --bind {tun} /dev/net/tun", *exposed, f"exec {setpriv}"])
        old_umask = os.umask(0)  # ... and it writes to the notify socket
        try:
            daemons = [
                lab.start_lispd(plan.msmr, msmr_config(plan, str(lab.workdir / "ms.sock"))),
                lab.start_lispd(
                    site1.xtr,
                    xtr_config(plan, site1, sock),
                    argv=["sh", "-c", script],
                ),
                lab.start_lispd(site2.xtr, xtr_config(plan, site2, str(lab.workdir / "x2.sock"))),
            ]
        finally:
            os.umask(old_umask)
        try:
            proc_status = Path(f"/proc/{daemons[1].pid}/status").read_text()
            fields = dict(
                line.split(":\t", 1) for line in proc_status.splitlines() if ":\t" in line
            )
            assert fields["Uid"].split()[:2] == [str(NOBODY)] * 2
            wanted = sum(1 << bit for bit in CAP_BITS.values())
            for name in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
                assert int(fields[name].strip(), 16) == wanted, (name, fields[name])
            wait_for(
                "sites registered",
                lambda: len(request(str(lab.workdir / "ms.sock"), "site")) == 4,
                timeout=15.0,
            )
            for dst in (site2.host_v4, site2.host_v6):
                assert lab.ping(site1.host, dst, count=2, wait=3.0), daemons[1].log_tail()
            common.transfer(lab, site2.host, site1.host, site1.host_v4, nbytes=500_000)
            stats = request(sock, "stats")
            assert stats["packets"]["itr.encap.packets"] > 0
            assert stats["packets"]["etr.decap.packets"] > 0
            log_text = daemons[1].log_text()
            assert "sysctl" not in log_text, log_text  # the TUN's settings were all written
            assert os.stat(sock).st_uid == NOBODY
            assert KEYS[1] not in log_text
        finally:
            for daemon in daemons:
                assert daemon.stop() == 0, daemon.log_tail()
