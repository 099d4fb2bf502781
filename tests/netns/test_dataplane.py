"""The data plane through real namespaces and real lispd processes.

Topology (lispd.lab.two_site_topology): host A - xTR1 - router R - xTR2 - host B, static
map-caches.  Every overlay/underlay family combination and a non-zero instance-ID carry ping
and a checksummed TCP transfer both ways; tshark decodes what crossed the underlay.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from lispd.api.client import request
from lispd.engine import compiled
from lispd.lab import Lab, TwoSitePlan, two_site_topology
from lispd.wire.data import DATA_HEADER_LEN, decapsulate
from lispd.wire.ip import parse_udp_datagram
from tests import configs, oracle

pytestmark = pytest.mark.netns

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYENV = {"PYTHONPATH": REPO}
TRANSFER_BYTES = 20_000_000


@dataclass
class Site:
    """One xTR's view: its RLOCs and EID-prefixes, and the peer's."""

    name: str
    rloc4: str
    rloc6: str
    eid4: str
    eid6: str


def sites(plan: TwoSitePlan) -> tuple[Site, Site]:
    return (
        Site("xtr1", plan.xtr1_rloc_v4, plan.xtr1_rloc_v6, plan.site_a_prefix_v4,
             plan.site_a_prefix_v6),
        Site("xtr2", plan.xtr2_rloc_v4, plan.xtr2_rloc_v6, plan.site_b_prefix_v4,
             plan.site_b_prefix_v6),
    )  # fmt: skip


@dataclass
class XtrConfig:
    """A lispd.conf for one xTR of the two-site lab."""

    me: Site
    peer: Site
    socket: str
    iid: int = 0
    underlay: int = 4  # which of the peer's RLOCs the static map-cache points at
    extra_map_cache: list[configs.Doc] = field(default_factory=list)
    underlay_mtu: int | None = None
    tun_mtu: int | None = None
    fastpath: str = "auto"  # [dataplane] fastpath: auto runs the compiled path when built
    workers: int | None = None  # [dataplane] workers (None: the default, one per core)

    def text(self) -> str:
        peer_rloc = self.peer.rloc4 if self.underlay == 4 else self.peer.rloc6
        own = ((self.me.eid4, self.me.rloc4), (self.me.eid6, self.me.rloc6))
        doc = configs.xtr(
            self.me.name,
            (self.me.rloc4, self.me.rloc6),
            control_socket=self.socket,
            daemon={"log-level": "debug"},
            database_mapping=[
                configs.mapping(eid, rloc, instance_id=self.iid) for eid, rloc in own
            ],
            map_cache=[
                configs.mapping(eid, peer_rloc, instance_id=self.iid)
                for eid in (self.peer.eid4, self.peer.eid6)
            ]
            + self.extra_map_cache,
            dataplane={"fastpath": self.fastpath, "workers": self.workers},  # None: left out
        )
        if self.underlay_mtu:
            doc["underlay"]["mtu"] = self.underlay_mtu
        if self.tun_mtu:
            doc["tun"] = {"mtu": self.tun_mtu}
        return configs.toml(doc)


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Lab, TwoSitePlan]]:
    plan = two_site_topology()
    with Lab(plan.topology) as built:
        yield built, plan


@contextlib.contextmanager
def xtrs(lab: Lab, plan: TwoSitePlan, **kw) -> Iterator[tuple[str, str]]:
    """Run lispd on both xTRs; yields their control socket paths; stops them after."""
    s1, s2 = sites(plan)
    sock1, sock2 = str(lab.workdir / "xtr1.sock"), str(lab.workdir / "xtr2.sock")
    extra1 = kw.pop("extra_map_cache", [])
    mtu1 = {k: kw.pop(k) for k in ("underlay_mtu", "tun_mtu") if k in kw}
    d1 = lab.start_lispd(
        plan.xtr1, XtrConfig(s1, s2, sock1, extra_map_cache=extra1, **mtu1, **kw).text()
    )
    try:
        d2 = lab.start_lispd(plan.xtr2, XtrConfig(s2, s1, sock2, **kw).text())
        try:
            yield sock1, sock2
        finally:
            assert d2.stop() == 0, d2.log_tail()
    finally:
        assert d1.stop() == 0, d1.log_tail()


def transfer(lab: Lab, plan: TwoSitePlan, src: str, dst: str, dst_addr: str) -> None:
    """A checksummed TCP transfer from node ``src`` to ``dst_addr`` (on node ``dst``)."""
    server = lab.popen(
        dst,
        [sys.executable, "-m", "lispd.lab.transfer", "serve", dst_addr, "5001"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **PYENV},
    )
    assert server.stdout is not None
    assert server.stdout.readline().strip() == "listening"
    sent = lab.run(
        src, sys.executable, "-m", "lispd.lab.transfer", "send", dst_addr, "5001",
        str(TRANSFER_BYTES), timeout=120, env=PYENV,
    ).stdout.split()  # fmt: skip
    received = server.stdout.readline().split()
    server.wait(timeout=30)
    assert sent == received and int(sent[0]) == TRANSFER_BYTES


def stats(sock: str) -> dict:
    """The daemon's counters, without the kernel's multicast chatter on the TUN."""
    result = request(sock, "stats")
    result["drops"].pop("not-unicast", None)
    return result


CASES = {
    # name: (overlay family, underlay family, instance-id, fast path)
    "v4-over-v4": (4, 4, 0, "auto"),
    "v6-over-v4": (6, 4, 0, "auto"),
    "v4-over-v6": (4, 6, 0, "auto"),
    "v6-over-v6": (6, 6, 0, "auto"),
    "v4-over-v4-iid": (4, 4, 7, "auto"),
    "v6-over-v6-iid": (6, 6, 0xABCDE, "auto"),
    # the pure-Python reference path, which runs where the compiled one is not built
    "v4-over-v6-python": (4, 6, 0, "python"),
    "v6-over-v4-iid-python": (6, 4, 7, "python"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_ping_tcp_and_wire_format(lab: tuple[Lab, TwoSitePlan], case: str) -> None:
    built, plan = lab
    overlay, underlay, iid, fastpath = CASES[case]
    a_addr = plan.host_a_v4 if overlay == 4 else plan.host_a_v6
    b_addr = plan.host_b_v4 if overlay == 4 else plan.host_b_v6
    rloc1 = plan.xtr1_rloc_v4 if underlay == 4 else plan.xtr1_rloc_v6
    rloc2 = plan.xtr2_rloc_v4 if underlay == 4 else plan.xtr2_rloc_v6
    with xtrs(built, plan, iid=iid, underlay=underlay, fastpath=fastpath) as (sock1, sock2):
        with built.capture(plan.r, plan.r_xtr2_if, "udp port 4341") as cap:
            assert built.ping(plan.host_a, b_addr, count=3)
            assert built.ping(plan.host_b, a_addr, count=3)
        transfer(built, plan, plan.host_a, plan.host_b, b_addr)
        transfer(built, plan, plan.host_b, plan.host_a, a_addr)
        s1, s2 = stats(sock1), stats(sock2)
    assert s1["packets"]["itr.encap.packets"] > 1000 and s2["packets"]["etr.decap.packets"] > 1000
    assert not s1["drops"] and not s2["drops"], (s1, s2)
    compiled_ran = "fastpath" in s1 and "fastpath" in s2
    assert compiled_ran == (fastpath == "auto" and compiled.available())

    # veth checksum offload leaves outer IPv6 UDP checksums unfinished in a capture taken on
    # the path (the receiver never checks them); everything else is checked.
    frames = oracle.tshark_file_frames(cap.path, ("-o", "udp.check_checksum:FALSE"))
    assert len(frames) >= 6  # 3 requests and 3 replies at least, each way
    for frame in frames:
        oracle.assert_clean(frame)
        assert frame["lisp-data.iid"] == [str(iid)]
        assert frame["lisp-data.flags.nonce"] == ["1"]
        outer = frame["ip.src" if underlay == 4 else "ipv6.src"][0]
        outer_dst = frame["ip.dst" if underlay == 4 else "ipv6.dst"][0]
        assert {outer, outer_dst} == {rloc1, rloc2}
        inner_src = frame["ip.src" if overlay == 4 else "ipv6.src"][-1]
        assert inner_src in (a_addr, b_addr)
        assert 49152 <= int(frame["udp.srcport"][0]) <= 65535
        assert frame["udp.dstport"][0] == "4341"


def gso_segments(inner: bytes) -> Iterator[bytes]:
    """The inner packets of a captured datagram: one, or several when the capture took a UDP
    GSO burst before the kernel cut it (the ITR sends runs to one RLOC as one; each segment
    is a LISP header and an inner packet, and the first header was already taken off)."""
    while inner:
        length = (
            int.from_bytes(inner[2:4]) if inner[0] >> 4 == 4 else 40 + int.from_bytes(inner[4:6])
        )
        yield inner[:length]
        inner = inner[length + DATA_HEADER_LEN :]


def sent_by_xtr1(packets: Iterable[bytes], plan: TwoSitePlan) -> Iterator[tuple[Any, list[Any]]]:
    """The captured packets xtr1 encapsulated (ICMP port unreachables coming back from B left
    out), each with its inner UDP datagrams (a GSO super-packet's segments)."""
    for pkt in packets:
        encap = decapsulate(pkt)
        if str(encap.outer.src) in (plan.xtr1_rloc_v4, plan.xtr1_rloc_v6):
            yield encap, [parse_udp_datagram(seg) for seg in gso_segments(encap.inner)]


def test_weighted_rlocs_and_unusable_priority(lab: tuple[Lab, TwoSitePlan]) -> None:
    """Site B reachable on xTR2's two RLOCs (weights 75/25) and on an unusable one (255)."""
    built, plan = lab
    spread = [
        configs.mapping(
            "198.51.100.16/29",
            {"address": plan.xtr2_rloc_v4, "priority": 1, "weight": 75},
            {"address": plan.xtr2_rloc_v6, "priority": 1, "weight": 25},
            {"address": "192.0.2.99", "priority": 255, "weight": 100},
        )
    ]
    # The /29 is more specific than the site's /28: it wins for host B (.18).
    sender = (
        "import socket,sys\n"
        "for sport in range(20000, 20060):\n"
        "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "    s.bind(('0.0.0.0', sport))\n"
        "    for _ in range(3):\n"
        f"        s.sendto(b'x' * 20, ('{plan.host_b_v4}', 9))\n"
        "    s.close()\n"
    )
    with (
        xtrs(built, plan, extra_map_cache=spread),
        built.capture(plan.xtr1, plan.xtr1_rloc_if, "udp port 4341") as cap,
    ):
        built.run(plan.host_a, sys.executable, "-c", sender)
        time.sleep(0.5)
    rloc_of_flow: dict[int, set[str]] = defaultdict(set)
    ports_used = set()
    for encap, datagrams in sent_by_xtr1(cap.ip_packets(), plan):
        for inner in datagrams:
            assert inner.dport == 9
            rloc_of_flow[inner.sport].add(str(encap.outer.dst))
        ports_used.add(encap.sport)
    assert len(rloc_of_flow) == 60
    assert all(len(r) == 1 for r in rloc_of_flow.values()), "a flow changed RLOC"
    used = [next(iter(r)) for r in rloc_of_flow.values()]
    assert "192.0.2.99" not in used
    share = used.count(plan.xtr2_rloc_v4) / len(used)
    assert used.count(plan.xtr2_rloc_v6) > 0 and 0.5 < share < 0.95, used
    assert len(ports_used) > 4, "outer source ports carry no flow entropy"


def udp_flows(lab: Lab, node: str, dst: str, first_port: int, flows: int = 60) -> None:
    """Three datagrams in each of ``flows`` UDP flows (source ports from ``first_port``)."""
    sender = (
        "import socket\n"
        f"for sport in range({first_port}, {first_port + flows}):\n"
        "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "    s.bind(('0.0.0.0', sport))\n"
        "    for _ in range(3):\n"
        f"        s.sendto(b'x' * 20, ('{dst}', 9))\n"
        "    s.close()\n"
    )
    lab.run(node, sys.executable, "-c", sender)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_workers_share_flows_and_one_killed_comes_back(lab: tuple[Lab, TwoSitePlan]) -> None:
    """Two engines per xTR (the main process and one worker, each on its own TUN queue and
    SO_REUSEPORT socket): many flows go through both, TCP is intact, the counters add up, a
    killed worker is restarted with its tables, and no worker outlives its daemon."""
    if not compiled.available():
        pytest.skip("workers run the compiled fast path, which is not built")
    built, plan = lab
    seen_pids: list[int] = []
    with xtrs(built, plan, workers=2) as (sock1, sock2):
        for sock in (sock1, sock2):
            version = request(sock, "version")
            assert version["engines"] == 2 and len(version["worker-pids"]) == 1, version
            seen_pids += version["worker-pids"]
        udp_flows(built, plan.host_a, plan.host_b_v4, 20000)
        udp_flows(built, plan.host_b, plan.host_a_v4, 21000)
        transfer(built, plan, plan.host_a, plan.host_b, plan.host_b_v4)
        transfer(built, plan, plan.host_b, plan.host_a, plan.host_a_v4)
        s1, s2 = stats(sock1), stats(sock2)
        for s in (s1, s2):  # 60 flows each way: both engines of each ITR took some
            assert s["engines"]["main"] > 0 and s["engines"]["worker1"] > 0, s["engines"]
            assert s["fastpath"]["engines"] == 2 and s["fastpath"]["worker-restarts"] == 0
            assert not s["drops"], s["drops"]
        encap_before = s1["packets"]["itr.encap.packets"]
        assert encap_before >= 180 + 1000  # the flows and a 20 MB transfer
        assert s2["packets"]["etr.decap.packets"] >= 180 + 1000

        (old,) = request(sock1, "version")["worker-pids"]
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            pids = request(sock1, "version")["worker-pids"]
            if pids and pids != [old]:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the killed worker was not restarted")
        seen_pids += pids
        udp_flows(built, plan.host_a, plan.host_b_v4, 22000)
        transfer(built, plan, plan.host_a, plan.host_b, plan.host_b_v4)
        s1 = stats(sock1)
        assert s1["fastpath"]["worker-restarts"] == 1
        assert s1["engines"]["worker1"] > 0, s1["engines"]  # the new one has its tables
        assert s1["packets"]["itr.encap.packets"] >= encap_before + 180 + 1000
        assert not s1["drops"], s1["drops"]
    assert not [pid for pid in seen_pids if alive(pid)]


def test_workers_follow_a_map_cache_changed_while_traffic_flows(
    lab: tuple[Lab, TwoSitePlan],
) -> None:
    """Two engines per xTR reading one forwarding table (the main process writes it in shared
    memory, the worker maps it read-only): while UDP flows keep going, a reload adds a more
    specific prefix for host B on xTR2's IPv6 RLOC, then a second one takes it away.  Every
    flow of each phase, whichever engine took it, leaves by the RLOC of the table of that
    phase: the worker follows without being sent a record."""
    if not compiled.available():
        pytest.skip("workers run the compiled fast path, which is not built")
    built, plan = lab
    s1, s2 = sites(plan)
    sock1, sock2 = str(built.workdir / "xtr1.sock"), str(built.workdir / "xtr2.sock")
    narrower = configs.mapping("198.51.100.16/29", plan.xtr2_rloc_v6)  # host B is .18
    plain = XtrConfig(s1, s2, sock1, workers=2)
    changed = XtrConfig(s1, s2, sock1, workers=2, extra_map_cache=[narrower])
    background = (  # traffic that never stops while the table changes
        "import socket, time\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "end = time.monotonic() + 30\n"
        "while time.monotonic() < end:\n"
        f"    s.sendto(b'b' * 20, ('{plan.host_b_v4}', 9))\n"
        "    time.sleep(0.001)\n"
    )

    def phase(mark: bytes, first_port: int) -> None:
        """60 flows of 3 datagrams, each payload ``mark`` * 20."""
        sender = (
            "import socket\n"
            f"for sport in range({first_port}, {first_port + 60}):\n"
            "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "    s.bind(('0.0.0.0', sport))\n"
            "    for _ in range(3):\n"
            f"        s.sendto({mark!r} * 20, ('{plan.host_b_v4}', 9))\n"
            "    s.close()\n"
        )
        built.run(plan.host_a, sys.executable, "-c", sender)

    d1 = built.start_lispd(plan.xtr1, plain.text())
    try:
        d2 = built.start_lispd(plan.xtr2, XtrConfig(s2, s1, sock2, workers=2).text())
        try:
            version = request(sock1, "version")
            assert version["engines"] == 2 and len(version["worker-pids"]) == 1, version
            with built.capture(plan.xtr1, plan.xtr1_rloc_if, "udp port 4341") as cap:
                flowing = built.popen(plan.host_a, [sys.executable, "-c", background])
                try:
                    time.sleep(0.3)
                    phase(b"p", 23000)  # the table as configured: IPv4 underlay
                    before = stats(sock1)["engines"]
                    d1.config_path.write_text(changed.text())
                    assert request(sock1, "reload")["reloaded"]
                    phase(b"v", 23100)  # the /29 on IPv6
                    during = stats(sock1)["engines"]
                    d1.config_path.write_text(plain.text())
                    assert request(sock1, "reload")["reloaded"]
                    phase(b"w", 23200)  # the /29 gone: IPv4 again
                    after = stats(sock1)
                finally:
                    flowing.kill()
                    flowing.wait()
                time.sleep(0.3)
        finally:
            assert d2.stop() == 0, d2.log_tail()
    finally:
        assert d1.stop() == 0, d1.log_tail()

    want = {b"p": plan.xtr2_rloc_v4, b"v": plan.xtr2_rloc_v6, b"w": plan.xtr2_rloc_v4}
    flows: dict[bytes, set[int]] = defaultdict(set)
    background_rlocs = set()
    for encap, datagrams in sent_by_xtr1(cap.ip_packets(), plan):
        for inner in datagrams:
            mark = inner.payload[:1]
            if mark == b"b":
                background_rlocs.add(str(encap.outer.dst))
                continue
            assert str(encap.outer.dst) == want[mark], (mark, encap.outer.dst)
            flows[mark].add(inner.sport)
    assert {mark: len(ports) for mark, ports in flows.items()} == {b"p": 60, b"v": 60, b"w": 60}
    assert background_rlocs == {plan.xtr2_rloc_v4, plan.xtr2_rloc_v6}  # it saw both tables
    # the worker forwarded flows of every phase (the kernel spreads them over both queues)
    assert before["worker1"] > 0 and during["worker1"] > before["worker1"], (before, during)
    assert after["engines"]["worker1"] > during["worker1"], after["engines"]
    assert after["fastpath"]["worker-restarts"] == 0 and after["fastpath"]["shared-table"] == 1
    assert not after["drops"], after["drops"]


def test_too_big_gets_icmp_and_tcp_adapts(lab: tuple[Lab, TwoSitePlan]) -> None:
    """The ITR's TUN takes 1500-byte packets but only 1400 fits the underlay (config): DF
    packets over 1364 get ICMP frag-needed / packet-too-big with MTU 1364 (1400 - 36)."""
    built, plan = lab
    built.run(plan.host_a, "ip", "route", "flush", "cache")  # no PMTU left by earlier tests
    with xtrs(built, plan, underlay_mtu=1400, tun_mtu=1500) as (sock1, _sock2):
        assert not built.ping(plan.host_a, plan.host_b_v4, size=1472, df=True, wait=1.0)
        route = built.run(plan.host_a, "ip", "-4", "route", "get", plan.host_b_v4).stdout
        assert "mtu 1364" in route, route
        assert not built.ping(plan.host_a, plan.host_b_v6, size=1452, wait=1.0)
        route6 = built.run(plan.host_a, "ip", "-6", "route", "get", plan.host_b_v6).stdout
        assert "mtu 1364" in route6, route6
        assert built.ping(plan.host_a, plan.host_b_v4, size=1200, df=True)
        built.run(plan.host_a, "ip", "route", "flush", "cache")
        transfer(built, plan, plan.host_a, plan.host_b, plan.host_b_v4)
        s1 = stats(sock1)
    assert s1["packets"]["itr.icmp-too-big.packets"] >= 2
    assert not s1["drops"], s1


def test_bad_packets_are_counted_and_forwarding_goes_on(lab: tuple[Lab, TwoSitePlan]) -> None:
    built, plan = lab
    attack = f"""
import socket, ipaddress
def inner(dst):
    h = bytearray(bytes.fromhex('4500001c000040004011000000000000000000000000000000080000'))
    h[12:16] = ipaddress.ip_address('{plan.host_a_v4}').packed
    h[16:20] = ipaddress.ip_address(dst).packed
    h[20:22] = (1234).to_bytes(2, 'big'); h[22:24] = (9).to_bytes(2, 'big')
    return bytes(h)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
to = ('{plan.xtr2_rloc_v4}', 4341)
s.sendto(b'\\x88\\x00', to)                                             # truncated header
s.sendto(bytes.fromhex('8800000100006300') + inner('{plan.host_b_v4}'), to)  # IID 99
s.sendto(bytes.fromhex('8800000100000000') + inner('203.0.113.5'), to)   # not our EID
s.sendto(bytes.fromhex('8800000100000000') + b'\\x45' * 30, to)           # bad inner header
s.sendto(bytes.fromhex('8b00000100000000') + inner('{plan.host_b_v4}'), to)  # K bits set
"""
    with xtrs(built, plan) as (sock1, sock2):
        built.run(plan.xtr1, "ip", "route", "add", "198.51.100.32/28", "dev", "lisp0")
        assert not built.ping(plan.host_a, "198.51.100.33", wait=0.5)
        built.run(plan.r, sys.executable, "-c", attack)
        time.sleep(0.3)
        assert built.ping(plan.host_a, plan.host_b_v4, count=2)
        s1, s2 = stats(sock1), stats(sock2)
    assert s1["drops"] == {"map-cache-miss": 1}, s1
    assert s2["drops"] == {
        "truncated-header": 1,
        "wrong-instance-id": 1,
        "not-our-eid": 1,
        "bad-inner-header": 1,
        "encrypted-unsupported": 1,
    }, s2


def test_sigterm_exits_zero_and_removes_tun_and_routes(lab: tuple[Lab, TwoSitePlan]) -> None:
    built, plan = lab
    s1, s2 = sites(plan)
    daemon = built.start_lispd(plan.xtr1, XtrConfig(s1, s2, str(built.workdir / "t.sock")).text())
    routes = built.run(plan.xtr1, "ip", "route", "show", "table", "4341").stdout
    assert f"{plan.site_b_prefix_v4} dev lisp0" in routes
    assert "proto 44" in built.run(plan.xtr1, "ip", "-N", "rule").stdout
    assert "lisp0" in built.run(plan.xtr1, "ip", "link").stdout
    assert daemon.stop() == 0, daemon.log_tail()
    assert "lisp0" not in built.run(plan.xtr1, "ip", "link").stdout
    for family in ("-4", "-6"):  # nothing of lispd's left: no route, no throw, no rule
        shown = built.run(plan.xtr1, "ip", "-N", family, "route", "show", "table", "all").stdout
        assert "table 4341" not in shown and "proto 44" not in shown, shown
        assert "proto 44" not in built.run(plan.xtr1, "ip", "-N", family, "rule").stdout
    assert not (built.workdir / "t.sock").exists()
