"""The namespace lab itself: description checks, build, reachability, captures, daemons with
sd_notify readiness, teardown on every path and cleanup of stale runs."""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lispd.lab import (
    CommandError,
    DaemonStartError,
    Lab,
    LabError,
    Topology,
    TopologyError,
    TwoSitePlan,
    cleanup_stale,
    two_site_topology,
)
from lispd.lab.netns import NS_PREFIX, TMP_PREFIX, list_namespaces, namespace_pids, pid_alive

# A fake daemon: prints its arguments and config, sends STATUS + READY=1 to $NOTIFY_SOCKET
# (as sd_notify does), then sleeps.  With "ignore-term" as 2nd argument it ignores SIGTERM.
FAKE_READY = (
    "import os, signal, socket, sys, time\n"
    "print('fake daemon args', sys.argv[1:], flush=True)\n"
    "print(open(sys.argv[1]).read(), flush=True)\n"
    "if sys.argv[2:] == ['ignore-term']: signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
    "s.sendto(b'STATUS=starting\\nREADY=1\\n', os.environ['NOTIFY_SOCKET'])\n"
    "time.sleep(60)\n"
)
FAKE_EXITS = "import sys; print('boom: cannot parse config', file=sys.stderr); sys.exit(3)"
FAKE_SILENT = "import time; print('thinking', flush=True); time.sleep(60)"


def small_topology() -> Topology:
    """Two hosts on one underlay link."""
    topo = Topology()
    h1, h2 = topo.host("h1"), topo.host("h2")
    topo.link(
        h1, h2, ["192.0.2.1/30", "2001:db8:0:9::1/64"], ["192.0.2.2/30", "2001:db8:0:9::2/64"]
    )
    return topo


def ipv4_fields(packet: bytes) -> tuple[str, str, int, bytes]:
    """(src, dst, protocol, payload) of an IPv4 packet."""
    ihl = (packet[0] & 0x0F) * 4
    src = str(ipaddress.IPv4Address(packet[12:16]))
    dst = str(ipaddress.IPv4Address(packet[16:20]))
    return src, dst, packet[9], packet[ihl:]


def ipv6_fields(packet: bytes) -> tuple[str, str, int, bytes]:
    """(src, dst, next header, payload) of an IPv6 packet without extension headers."""
    src = str(ipaddress.IPv6Address(packet[8:24]))
    dst = str(ipaddress.IPv6Address(packet[24:40]))
    return src, dst, packet[6], packet[40:]


def in_namespace(pid: int, ns: str, timeout: float = 5.0) -> bool:
    """Whether process ``pid`` runs in namespace ``ns`` (waiting for it to get there: ``ip
    netns exec`` enters the namespace a moment after ``Popen`` returns)."""
    want = os.stat(f"/run/netns/{ns}").st_ino
    deadline = time.monotonic() + timeout
    while os.stat(f"/proc/{pid}/ns/net").st_ino != want:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture(scope="module")
def two_site() -> Iterator[tuple[TwoSitePlan, Lab]]:
    """The standard two-site topology, built once for the read-only tests of this module."""
    plan = two_site_topology()
    with Lab(plan.topology) as lab:
        yield plan, lab


# -- the description (no OS work) ---------------------------------------------------------


def test_topology_rejects_bad_descriptions() -> None:
    topo = Topology()
    for bad in ("A", "1x", "name-too-long", "", "x_y"):
        with pytest.raises(TopologyError):
            topo.host(bad)
    a, b = topo.host("a"), topo.router("b")
    with pytest.raises(TopologyError, match="already exists"):
        topo.host("a")
    with pytest.raises(TopologyError, match="documentation"):
        topo.link(a, b, ["10.0.0.1/24"], [])
    with pytest.raises(TopologyError, match="prefix length"):
        topo.link(a, b, ["192.0.2.1"], [])
    with pytest.raises(TopologyError, match="itself"):
        topo.link(a, a)
    with pytest.raises(TopologyError, match="no node"):
        topo.link(a, "nobody")
    topo.link(a, b, ["192.0.2.1/30"], ["192.0.2.2/30"])
    with pytest.raises(TopologyError, match="already exists"):
        topo.link(a, b)  # same default interface names
    with pytest.raises(TopologyError, match="characters"):
        topo.link(a, b, names=("a-very-long-ifname", "b2"))
    topo.link(a, b, names=("a2", "b2"), mtu=1400)
    with pytest.raises(TopologyError, match="mtu"):
        topo.link(a, b, names=("a3", "b3"), mtu=10)
    with pytest.raises(TopologyError, match="other family"):
        topo.route(a, "::/0", via="192.0.2.2")
    with pytest.raises(TopologyError, match="via= or dev="):
        topo.route(a, "198.51.100.0/24")
    with pytest.raises(TopologyError, match="documentation"):
        topo.route(a, "10.0.0.0/8", via="192.0.2.2")
    with pytest.raises(TopologyError, match="no interface"):
        topo.masquerade(b, "eth9")
    topo.route(a, "default", via="192.0.2.2")
    topo.validate()
    topo.route(a, "198.51.100.0/24", via="192.0.2.9")  # not on any of a's links
    with pytest.raises(TopologyError, match="on none of its links"):
        topo.validate()

    free = Topology(doc_ranges_only=False)
    free.link(free.host("x"), free.host("y"), ["10.0.0.1/24"], ["10.0.0.2/24"])


def test_two_site_plan_matches_its_topology() -> None:
    plan = two_site_topology(underlay_mtu=1400)
    topo = plan.topology
    topo.validate()
    assert topo.addr(plan.host_a, 4) == plan.host_a_v4
    assert topo.addr(plan.host_a, 6) == plan.host_a_v6
    assert topo.addr(plan.xtr1, 4, toward=plan.host_a) == plan.xtr1_eid_v4
    assert topo.addr(plan.xtr1, 6, toward=plan.host_a) == plan.xtr1_eid_v6
    assert topo.addr(plan.xtr1, 4, toward=plan.r) == plan.xtr1_rloc_v4
    assert topo.addr(plan.xtr1, 6, toward=plan.r) == plan.xtr1_rloc_v6
    assert topo.addr(plan.r, 4, toward=plan.xtr1) == plan.r_xtr1_v4
    assert topo.addr(plan.r, 6, toward=plan.xtr2) == plan.r_xtr2_v6
    assert topo.addr(plan.xtr2, 4, toward=plan.r) == plan.xtr2_rloc_v4
    assert topo.addr(plan.xtr2, 6, toward=plan.r) == plan.xtr2_rloc_v6
    assert topo.addr(plan.xtr2, 4, toward=plan.host_b) == plan.xtr2_eid_v4
    assert topo.addr(plan.host_b, 6) == plan.host_b_v6
    assert topo.interface(plan.xtr1, plan.r).name == plan.xtr1_rloc_if
    assert topo.interface(plan.xtr1, plan.host_a).name == plan.xtr1_site_if
    assert topo.interface(plan.r, plan.xtr1).name == plan.r_xtr1_if
    assert topo.interface(plan.r, plan.xtr2).name == plan.r_xtr2_if
    assert topo.interface(plan.host_b).name == plan.host_b_if
    assert {lk.mtu for lk in topo.links_between(plan.xtr1, plan.r)} == {1400}
    sites = {
        plan.host_a_v4: plan.site_a_prefix_v4,
        plan.host_a_v6: plan.site_a_prefix_v6,
        plan.xtr1_eid_v4: plan.site_a_prefix_v4,
        plan.host_b_v4: plan.site_b_prefix_v4,
        plan.host_b_v6: plan.site_b_prefix_v6,
        plan.xtr2_eid_v6: plan.site_b_prefix_v6,
        plan.xtr1_rloc_v4: plan.underlay_v4,
        plan.xtr2_rloc_v6: plan.underlay_v6,
    }
    for address, prefix in sites.items():
        assert ipaddress.ip_address(address) in ipaddress.ip_network(prefix)
    # No route on an xTR leads to the other site: lispd will install those.
    for route in topo.routes:
        if route.node in (plan.xtr1, plan.xtr2):
            assert route.dst.prefixlen > 0
            assert not route.dst.overlaps(ipaddress.ip_network("198.51.100.0/24"))  # type: ignore[arg-type]
            assert not route.dst.overlaps(ipaddress.ip_network("2001:db8:100::/48"))  # type: ignore[arg-type]


# -- the built two-site topology ----------------------------------------------------------


def test_two_site_namespaces_and_sysctls(two_site: tuple[TwoSitePlan, Lab]) -> None:
    plan, lab = two_site
    names = lab.namespaces()
    assert len(names) == 5
    assert set(names) <= set(list_namespaces())
    assert lab.ns(plan.xtr1) == f"lt{lab.run_id}-xtr1"
    assert lab.run_id.startswith(str(os.getpid()))
    for node in (plan.r, plan.xtr1):
        out = lab.run(node, "sysctl", "-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")
        assert out.stdout.split() == ["1", "1"]
    out = lab.run(plan.host_a, "sysctl", "-n", "net.ipv4.ip_forward")
    assert out.stdout.split() == ["0"]
    links = lab.run(plan.xtr1, "ip", "-o", "link", "show").stdout
    assert "to-a" in links and "to-r" in links
    addrs = lab.run(plan.xtr1, "ip", "-o", "addr", "show", "dev", plan.xtr1_rloc_if).stdout
    assert f"{plan.xtr1_rloc_v6}/64" in addrs and "tentative" not in addrs


def test_two_site_reachability(two_site: tuple[TwoSitePlan, Lab]) -> None:
    plan, lab = two_site
    assert lab.ping(plan.host_a, plan.xtr1_eid_v4)
    assert lab.ping(plan.host_a, plan.xtr1_eid_v6)
    assert lab.ping(plan.host_b, plan.xtr2_eid_v4)
    assert lab.ping(plan.host_b, plan.xtr2_eid_v6)
    assert lab.ping(plan.xtr1, plan.xtr2_rloc_v4)
    assert lab.ping(plan.xtr1, plan.xtr2_rloc_v6)
    assert lab.ping(plan.xtr2, plan.xtr1_rloc_v6, count=3)
    # Without lispd, the sites cannot reach each other: no EID routes on the xTRs.
    assert not lab.ping(plan.host_a, plan.host_b_v4, wait=0.3)
    assert not lab.ping(plan.host_a, plan.host_b_v6, wait=0.3)


def test_capture_on_underlay_link_sees_the_ping(two_site: tuple[TwoSitePlan, Lab]) -> None:
    plan, lab = two_site
    with lab.capture(plan.r, plan.r_xtr1_if, "icmp or icmp6") as cap:
        assert lab.ping(plan.xtr1, plan.xtr2_rloc_v4)
        assert lab.ping(plan.xtr1, plan.xtr2_rloc_v6)
    assert cap.path.suffix == ".pcap" and cap.path.parent == lab.workdir
    assert cap.path.stat().st_size > 24
    assert cap.dropped == 0
    v4 = [ipv4_fields(p) for p in cap.ip_packets() if p[0] >> 4 == 4]
    v6 = [ipv6_fields(p) for p in cap.ip_packets() if p[0] >> 4 == 6]
    assert (plan.xtr1_rloc_v4, plan.xtr2_rloc_v4, 1) in [
        (s, d, pr) for s, d, pr, body in v4 if body[0] == 8
    ]
    assert (plan.xtr2_rloc_v4, plan.xtr1_rloc_v4, 1) in [
        (s, d, pr) for s, d, pr, body in v4 if body[0] == 0
    ]
    assert (plan.xtr1_rloc_v6, plan.xtr2_rloc_v6, 58) in [
        (s, d, nh) for s, d, nh, body in v6 if body[0] == 128
    ]


def test_capture_keeps_up_with_a_burst(two_site: tuple[TwoSitePlan, Lab]) -> None:
    plan, lab = two_site
    sender = (
        "import socket\n"
        "s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
        "for i in range(3000):\n"
        f"    s.sendto(i.to_bytes(4, 'big') + bytes(1200), ('{plan.xtr2_rloc_v6}', 4341))\n"
    )
    with lab.capture(plan.r, plan.r_xtr2_if, "udp dst port 4341") as cap:
        lab.run(plan.xtr1, sys.executable, "-c", sender)
    assert cap.dropped == 0
    assert len(cap.packets()) == 3000


def test_run_and_helpers(two_site: tuple[TwoSitePlan, Lab]) -> None:
    plan, lab = two_site
    assert lab.run(plan.r, "true").returncode == 0
    assert lab.run(plan.r, "false", check=False).returncode == 1
    with pytest.raises(CommandError, match=r"nonexistent0.* does not exist"):
        lab.run(plan.r, "ip", "link", "show", "nonexistent0")
    with pytest.raises(subprocess.TimeoutExpired):
        lab.run(plan.r, "sleep", "5", timeout=0.3)
    assert lab.run(plan.host_a, "cat", input="hello").stdout == "hello"
    assert lab.addr(plan.xtr2, 6, toward=plan.r) == plan.xtr2_rloc_v6
    assert lab.iface(plan.r, plan.xtr2).name == plan.r_xtr2_if
    assert lab.exec_argv(plan.r, ["true"]) == ["ip", "netns", "exec", lab.ns(plan.r), "true"]
    proc = lab.popen(plan.r, ["sleep", "30"])
    assert in_namespace(proc.pid, lab.ns(plan.r))
    lab.wait_ping(plan.host_a, plan.xtr1_eid_v4, timeout=5)


# -- other topologies ----------------------------------------------------------------------


def test_mtu_and_masquerade() -> None:
    topo = Topology()
    inside, nat, server = topo.host("in"), topo.nat("nat"), topo.host("srv")
    topo.link(inside, nat, ["192.0.2.130/25"], ["192.0.2.129/25"])
    topo.link(nat, server, ["192.0.2.1/30"], ["192.0.2.2/30"], mtu=1300)
    topo.route(inside, "default", via="192.0.2.129")
    topo.masquerade(nat, "to-srv")  # the server has no route back to 192.0.2.128/25
    with Lab(topo) as lab:
        assert "mtu 1300" in lab.run("srv", "ip", "link", "show", "to-nat").stdout
        with lab.capture("srv", "to-nat", "icmp") as cap:
            assert lab.ping("in", "192.0.2.2")
        sources = {ipv4_fields(p)[0] for p in cap.ip_packets()}
        assert sources == {"192.0.2.1", "192.0.2.2"}
        assert lab.ping("in", "192.0.2.2", size=1400)  # fragmented at the NAT
        assert lab.ping("in", "192.0.2.2", size=1200, df=True)
        assert not lab.ping("in", "192.0.2.2", size=1400, df=True, wait=0.3)
        assert lab.ping("in", "192.0.2.2", size=1400)


def test_set_link_down_and_up() -> None:
    with Lab(small_topology()) as lab:
        assert lab.ping("h1", "2001:db8:0:9::2")
        lab.set_link("h1", "h2", up=False)
        assert not lab.ping("h1", "192.0.2.2", wait=0.3)
        lab.set_link("h1", "h2", up=True)
        assert lab.ping("h1", "192.0.2.2")
        assert lab.ping("h2", "2001:db8:0:9::1")


def test_set_link_restores_static_routes(two_site: tuple[TwoSitePlan, Lab]) -> None:
    plan, lab = two_site
    lab.set_link(plan.xtr1, plan.r, up=False)
    assert not lab.ping(plan.xtr1, plan.xtr2_rloc_v4, wait=0.3)
    lab.set_link(plan.xtr1, plan.r, up=True)
    assert lab.ping(plan.xtr1, plan.xtr2_rloc_v4)
    assert lab.ping(plan.xtr1, plan.xtr2_rloc_v6)


def test_blackhole_keeps_carrier(two_site: tuple[TwoSitePlan, Lab]) -> None:
    plan, lab = two_site
    lab.set_blackhole(plan.r, plan.xtr2, on=True)
    try:
        assert not lab.ping(plan.xtr1, plan.xtr2_rloc_v4, wait=0.3)
        assert not lab.ping(plan.xtr1, plan.xtr2_rloc_v6, wait=0.3)
        assert lab.ping(plan.xtr1, plan.r_xtr1_v4)
        state = lab.run(plan.xtr2, "ip", "-br", "link", "show", plan.xtr2_rloc_if).stdout
        assert " UP " in state
    finally:
        lab.set_blackhole(plan.r, plan.xtr2, on=False)
    assert lab.ping(plan.xtr1, plan.xtr2_rloc_v4)
    lab.set_blackhole(plan.r, plan.xtr2, on=True)  # the table exists already: elements only
    assert not lab.ping(plan.xtr1, plan.xtr2_rloc_v6, wait=0.3)
    lab.set_blackhole(plan.r, plan.xtr2, on=False)
    assert lab.ping(plan.xtr1, plan.xtr2_rloc_v6)


# -- daemons and the notify protocol ------------------------------------------------------


def test_start_daemon_waits_for_ready_and_stops_it() -> None:
    with Lab(small_topology()) as lab:
        config = "# fake config\nroles = ['itr']\n"
        argv = [sys.executable, "-c", FAKE_READY, "{config}"]
        d = lab.start_lispd("h1", config, argv=argv, timeout=10)
        assert d.running() and d.pid > 0
        assert "READY=1" in d.notifications and "STATUS=starting" in d.notifications
        assert in_namespace(d.pid, lab.ns("h1"))
        assert d.config_path.read_text() == config
        assert "roles = ['itr']" in d.log_text()
        assert str(d.config_path) in d.log_text()
        assert d.stop(timeout=5) == -signal.SIGTERM
        assert not d.running()

        # A daemon that ignores SIGTERM is SIGKILLed after the timeout.
        d2 = lab.start_lispd("h2", config, argv=[*argv, "ignore-term"], timeout=10)
        start = time.monotonic()
        assert d2.stop(timeout=0.5) == -signal.SIGKILL
        assert time.monotonic() - start < 5


def test_start_daemon_that_exits_shows_its_log() -> None:
    with Lab(small_topology()) as lab:
        with pytest.raises(DaemonStartError) as info:
            lab.start_lispd("h1", "", argv=[sys.executable, "-c", FAKE_EXITS], timeout=10)
        assert "boom: cannot parse config" in str(info.value)
        assert "exited with 3" in str(info.value)
        assert info.value.returncode == 3


def test_start_daemon_that_never_gets_ready_times_out() -> None:
    with Lab(small_topology()) as lab:
        start = time.monotonic()
        with pytest.raises(DaemonStartError, match=r"no READY=1 within 0.5 s") as info:
            lab.start_lispd("h1", "", argv=[sys.executable, "-c", FAKE_SILENT], timeout=0.5)
        assert time.monotonic() - start < 5
        assert "thinking" in info.value.log_tail
        assert namespace_pids(lab.ns("h1")) == []  # stopped, not left running


def test_start_lispd_default_command_refuses_garbage_config() -> None:
    # The default argv runs this tree's ``python -m lispd -c <config>``; whatever lispd's
    # state, garbage must not make it report READY=1.
    with Lab(small_topology()) as lab:
        with pytest.raises(DaemonStartError) as info:
            lab.start_lispd("h1", "this is [not toml\n", timeout=15)
        assert info.value.returncode not in (None, 0)


# -- teardown on every path and stale cleanup ----------------------------------------------


def test_teardown_after_exception_in_body() -> None:
    argv = [sys.executable, "-c", FAKE_READY, "{config}"]
    with pytest.raises(RuntimeError, match="test body failed"), Lab(small_topology()) as lab:
        names = lab.namespaces()
        workdir = lab.workdir
        proc = lab.popen("h1", ["sleep", "60"])
        daemon = lab.start_lispd("h2", "", argv=argv, timeout=10)
        raise RuntimeError("test body failed")
    assert names and not set(names) & set(list_namespaces())
    assert proc.poll() is not None
    assert not daemon.running()
    assert not workdir.exists()


def test_teardown_when_build_fails_half_way() -> None:
    topo = small_topology()
    topo.nodes["h2"].sysctls["net.ipv4.no_such_setting"] = "1"  # fails after h1 exists
    tmp = Path(tempfile.gettempdir())
    # only this process's labs: other test runs may build theirs meanwhile
    mine = re.compile(rf"^{NS_PREFIX}{os.getpid()}[a-z]-")
    dirs = f"{TMP_PREFIX}{os.getpid()}[a-z]-*"
    before = set(list_namespaces()), set(tmp.glob(dirs))
    with pytest.raises(LabError, match="no_such_setting"):
        Lab(topo).start()
    assert {n for n in list_namespaces() if mine.match(n)} <= before[0]
    assert set(tmp.glob(dirs)) <= before[1]


@pytest.mark.solo  # another run's Lab start would clean up the stale namespace first
def test_cleanup_stale_removes_dead_runs_only() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert not pid_alive(dead.pid)
    stale_ns = f"lt{dead.pid}a-x"
    live_ns = f"lt{os.getpid()}z-x"
    stale_dir = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{dead.pid}a-"))
    subprocess.run(["ip", "netns", "add", stale_ns], check=True)
    subprocess.run(["ip", "netns", "add", live_ns], check=True)
    sleeper = subprocess.Popen(["ip", "netns", "exec", stale_ns, "sleep", "60"])
    try:
        assert in_namespace(sleeper.pid, stale_ns)
        removed = cleanup_stale()
        assert stale_ns in removed and str(stale_dir) in removed
        assert sleeper.wait(timeout=5) == -signal.SIGKILL
        names = list_namespaces()
        assert stale_ns not in names and live_ns in names
        assert not stale_dir.exists()

        # Lab start cleans up too.
        subprocess.run(["ip", "netns", "add", stale_ns], check=True)
        with Lab(small_topology()):
            assert stale_ns not in list_namespaces()
    finally:
        sleeper.kill()
        sleeper.wait()
        for ns in (stale_ns, live_ns):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)
