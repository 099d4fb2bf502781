"""What the compiled path's send offloads put on a veth link, seen by a receiver that reads
the underlay the way Open Overlay Router (raw socket) and lispers.net (pcap) do.

Topology (lispd.lab.two_site_topology): host A - xTR1 - R - xTR2 - host B.  lispd is the
xTR of site A; xTR2 runs :mod:`tests.netns.raw_xtr`, which takes every frame an AF_PACKET
socket captures on its RLOC interface for one LISP packet: one LISP header off, one inner packet
to its TUN.  A UDP GSO burst crosses veth links (and R, which forwards it as it is) as one
unsegmented super-packet, so such a receiver keeps its first datagram only.

With lispd's defaults (``offloads = "auto"``: TUN TSO, UDP GRO, datagrams sent one by one in
``sendmmsg`` batches), and with ``offloads = "off"``, a 4 MB TCP transfer from A to B
completes in seconds and no frame on xTR2's link is longer than its MTU.  With
``offloads = "gso"`` the same receiver sees frames carrying several LISP packets: what the
default avoids.  With UDP segmentation off on xTR1's veths, ``"auto"`` sends bursts, and the
kernel cuts them before the veth: one LISP packet per frame again.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lispd.api.client import request
from lispd.daemon import EGRESS_RECHECK_S
from lispd.engine import compiled
from lispd.lab import Lab, TwoSitePlan, two_site_topology
from tests import configs

pytestmark = pytest.mark.netns

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYENV = {"PYTHONPATH": REPO}
TRANSFER_BYTES = 4_000_000
TRANSFER_SECONDS = 15.0  # a healthy run takes well under 2 s here; the bug took 24 s or stalled


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Lab, TwoSitePlan]]:
    if not compiled.available():
        pytest.skip("the compiled fast path is not built: only it has send offloads")
    plan = two_site_topology()
    with Lab(plan.topology) as built:
        yield built, plan


def itr_config(
    plan: TwoSitePlan, sock: str, offloads: str | None, gso_rlocs: list[str] | None = None
) -> str:
    """lispd on xTR1: site A's IPv4 prefix on its RLOC, site B's mapped to xTR2's RLOC;
    ``offloads`` None leaves the ``[dataplane]`` table out (the defaults); ``gso_rlocs`` its
    ``gso-rlocs`` (with the default offloads)."""
    doc = configs.xtr(
        plan.xtr1,
        (plan.xtr1_rloc_v4,),
        (plan.site_a_prefix_v4,),
        control_socket=sock,
        map_cache=[configs.mapping(plan.site_b_prefix_v4, plan.xtr2_rloc_v4)],
    )
    if offloads is not None:
        doc["dataplane"] = {"offloads": offloads}
    if gso_rlocs is not None:
        doc["dataplane"] = {"gso-rlocs": gso_rlocs}
    return configs.toml(doc)


@contextlib.contextmanager
def raw_xtr(lab: Lab, plan: TwoSitePlan) -> Iterator[dict[str, Any]]:
    """tests.netns.raw_xtr on xTR2 (site A routed into its TUN); yields a dict that holds
    its counts once the block is left."""
    argv = [
        sys.executable, "-m", "tests.netns.raw_xtr", "--iface", plan.xtr2_rloc_if,
        "--local", plan.xtr2_rloc_v4, "--peer", plan.xtr1_rloc_v4,
        "--route", plan.site_a_prefix_v4,
    ]  # fmt: skip
    proc = lab.popen(
        plan.xtr2, argv, stdout=subprocess.PIPE, text=True, env={**os.environ, **PYENV}
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    counts: dict[str, Any] = {}
    try:
        yield counts
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
        counts.update(json.loads(out.strip().splitlines()[-1]))


def timed_transfer(lab: Lab, plan: TwoSitePlan, nbytes: int, timeout: float) -> float | None:
    """A checksummed TCP transfer of ``nbytes`` from A to B: its seconds, None when it did not
    finish within ``timeout``.  What B counted and hashed must be what A sent."""
    server = lab.popen(
        plan.host_b,
        [sys.executable, "-m", "lispd.lab.transfer", "serve", plan.host_b_v4, "5001"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **PYENV},
    )
    assert server.stdout is not None and server.stdout.readline().strip() == "listening"
    started = time.monotonic()
    try:
        sent = lab.run(
            plan.host_a, sys.executable, "-m", "lispd.lab.transfer", "send", plan.host_b_v4,
            "5001", str(nbytes), timeout=timeout, env=PYENV,
        ).stdout.split()  # fmt: skip
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(5)
        return None
    elapsed = time.monotonic() - started
    assert sent == server.stdout.readline().split() and int(sent[0]) == nbytes
    server.wait(timeout=10)
    return elapsed


def fastpath_counters(sock: str) -> dict[str, Any]:
    """The ``fastpath`` table of the daemon's stats."""
    fastpath: dict[str, Any] = request(sock, "stats")["fastpath"]
    return fastpath


def transfer_to_raw_receiver(
    built: Lab,
    plan: TwoSitePlan,
    offloads: str | None,
    label: str,
    before: Callable[[str], None] = lambda sock: None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """lispd on xTR1 with ``offloads``, the raw-socket receiver on xTR2: 4 MB of TCP from A
    to B must cross in time, one LISP packet per frame on xTR2's link, none malformed.  The
    daemon's ``fastpath`` counters and ``version`` answer after the transfer.  ``before`` runs
    with the daemon's control socket once it forwards, before the transfer."""
    sock = str(built.workdir / f"xtr1-{label}.sock")
    with raw_xtr(built, plan) as counts:
        daemon = built.start_lispd(plan.xtr1, itr_config(plan, sock, offloads))
        try:
            built.wait_ping(plan.host_a, plan.host_b_v4)
            before(sock)
            elapsed = timed_transfer(built, plan, TRANSFER_BYTES, TRANSFER_SECONDS)
            fast = fastpath_counters(sock)
            version: dict[str, Any] = request(sock, "version")
        finally:
            assert daemon.stop() == 0, daemon.log_tail()
    assert elapsed is not None, f"4 MB did not cross in {TRANSFER_SECONDS} s: {counts}"
    segments = TRANSFER_BYTES // counts["mtu"]
    assert counts["frames"] >= segments and counts["decapsulated"] >= segments, counts
    assert counts["oversized"] == 0 and counts["largest"] <= counts["mtu"], counts
    assert counts["malformed"] == 0, counts
    return fast, version


@pytest.mark.parametrize("offloads", [None, "off"])
def test_default_offloads_reach_a_raw_socket_receiver_one_packet_per_frame(
    lab: tuple[Lab, TwoSitePlan], offloads: str | None
) -> None:
    """The defaults (no ``[dataplane]`` table), and ``offloads = "off"`` for comparison."""
    built, plan = lab
    fast, version = transfer_to_raw_receiver(built, plan, offloads, offloads or "default")
    # "auto" looked at the ways out: xTR1's are veths, which would pass a burst on whole
    assert version["udp-gso"] is False, version
    if offloads is None:
        assert "bursts would leave whole by" in version["udp-gso-why"], version
        assert "(veth, UDP segmentation on)" in version["udp-gso-why"], version
    # the compiled engine forwarded it (TSO super-packets from the TUN unless the offloads are
    # off), and no burst left as one send
    assert (fast["tun-superpackets"] > 0) == (offloads is None) and fast["gso-sends"] == 0, fast


def wait_udp_gso(sock: str, wanted: bool) -> dict[str, Any]:
    """The daemon's ``version`` answer once its ``udp-gso`` is ``wanted`` (``"auto"`` looks
    again every few seconds); fails after three looks."""
    deadline = time.monotonic() + 3 * EGRESS_RECHECK_S + 2
    while True:
        version: dict[str, Any] = request(sock, "version")
        if version["udp-gso"] is wanted:
            return version
        assert time.monotonic() < deadline, version
        time.sleep(0.25)


def test_auto_follows_the_veths_and_the_kernel_cuts_bursts_where_udp_segmentation_is_off(
    lab: tuple[Lab, TwoSitePlan],
) -> None:
    """lispd starts with xTR1's veths as the lab made them (separate datagrams), then
    ``ethtool -K ... tx-udp-segmentation off`` on them: ``"auto"`` sees it within a few
    seconds and sends bursts, which the kernel cuts into datagrams before the veth, as before
    a card, so the raw-socket receiver still gets one LISP packet per frame.  With the flag
    back on (as a veth that comes up later has it), the bursts stop again."""
    built, plan = lab
    seen: dict[str, Any] = {}

    def cut(sock: str) -> None:
        assert request(sock, "version")["udp-gso"] is False
        for on in (False, True, False):  # off: bursts; on again (a new veth): none; off
            built.set_features(plan.xtr1, {"tx-udp-segmentation": on})
            seen[str(on)] = wait_udp_gso(sock, not on)

    try:
        fast, version = transfer_to_raw_receiver(built, plan, None, "cut", before=cut)
    finally:
        built.set_features(plan.xtr1, {"tx-udp-segmentation": True})
    why = seen["False"]["udp-gso-why"]
    assert why.startswith("every way out cuts them: ") and "(veth, UDP segmentation off)" in why
    assert "(veth, UDP segmentation on)" in seen["True"]["udp-gso-why"], seen
    assert version["udp-gso"] is True, version
    assert fast["tun-superpackets"] > 0 and fast["gso-sends"] > 0, fast


def test_gso_offloads_put_unsegmented_bursts_on_the_veth(lab: tuple[Lab, TwoSitePlan]) -> None:
    """Why GSO is not the default: a burst crosses the veth links as one frame."""
    built, plan = lab
    sock = str(built.workdir / "xtr1-gso.sock")
    with raw_xtr(built, plan) as counts:
        daemon = built.start_lispd(plan.xtr1, itr_config(plan, sock, "gso"))
        try:
            built.wait_ping(plan.host_a, plan.host_b_v4)
            # what gets through is slow or stalls: a short transfer, bounded
            timed_transfer(built, plan, 1_000_000, 5.0)
            fast = fastpath_counters(sock)
        finally:
            assert daemon.stop() == 0, daemon.log_tail()
    assert fast["gso-sends"] > 0, fast
    if counts["oversized"] == 0:
        pytest.skip(f"this kernel segmented lispd's UDP GSO bursts before the veth: {counts}")
    assert counts["largest"] > counts["mtu"] and counts["carried"] > counts["oversized"], counts


def test_gso_rlocs_sends_bursts_only_to_the_rlocs_listed(lab: tuple[Lab, TwoSitePlan]) -> None:
    """``gso-rlocs``: RLOCs known to read 4341 from a UDP socket get GSO bursts with the
    default offloads; any other (here xTR2's raw-socket receiver, not listed) still gets one
    LISP packet per frame.  Listing xTR2 anyway shows the setting takes effect."""
    built, plan = lab
    for listed, bursts in ((["192.0.2.99"], False), ([plan.xtr2_rloc_v4], True)):
        sock = str(built.workdir / f"xtr1-gso-rlocs-{bursts}.sock")
        with raw_xtr(built, plan) as counts:
            daemon = built.start_lispd(plan.xtr1, itr_config(plan, sock, None, listed))
            try:
                built.wait_ping(plan.host_a, plan.host_b_v4)
                elapsed = timed_transfer(built, plan, 1_000_000, 5.0)
                fast = fastpath_counters(sock)
            finally:
                assert daemon.stop() == 0, daemon.log_tail()
        if not bursts:
            assert elapsed is not None and fast["gso-sends"] == 0, fast
            assert counts["oversized"] == 0 and counts["largest"] <= counts["mtu"], counts
        else:
            assert fast["gso-sends"] > 0, fast


@pytest.mark.parametrize("kind", ["bridge", "vlan"])
def test_auto_sees_through_bridges_and_vlans_to_the_veths_under_them(
    lab: tuple[Lab, TwoSitePlan], kind: str
) -> None:
    """The check as lispd runs it, over real netlink: a bridge with a veth port, a VLAN on
    host A's veth, are ways out as the devices under them are (veths: whole bursts)."""
    built, plan = lab
    if kind == "bridge":
        under = "px"
        setup = [
            ["ip", "link", "add", "px", "type", "veth", "peer", "name", "py"],
            ["ip", "link", "add", "dev0", "type", "bridge"],
            ["ip", "link", "set", "px", "master", "dev0"],
            *(["ip", "link", "set", name, "up"] for name in ("px", "py")),
        ]
    else:
        under = built.iface(plan.host_a).name
        setup = [["ip", "link", "add", "link", under, "name", "dev0", "type", "vlan", "id", "5"]]
    script = (
        "from lispd.io.egress import describe, read_links, udp_bursts_safe\n"
        "for link in read_links([]): print(describe(link))\n"
        "print(udp_bursts_safe(None).safe)\n"
    )
    try:
        for argv in [*setup, ["ip", "link", "set", "dev0", "up"]]:
            made = built.run(plan.host_a, *argv, check=False)
            if "Unknown device type" in made.stderr:
                pytest.skip(f"this kernel has no {kind} devices")
            assert made.returncode == 0, made.stderr
        out = built.run(plan.host_a, sys.executable, "-c", script, env=PYENV).stdout
    finally:
        for name in ("dev0", "px"):
            built.run(plan.host_a, "ip", "link", "del", name, check=False)
    lines = out.splitlines()
    how = "on" if kind == "vlan" else "of"
    assert f"dev0 ({kind} {how} {under} (veth, UDP segmentation on))" in lines, out
    assert lines[-1] == "False", out
