"""What an attacker can predict or take over, tried against real lispd processes.

lispd.lab.mapping_system_topology with one site: h1 - xtr1 - R - msmr (no lispd on msmr: the
Map-Requests xtr1 sends there are only captured).

- Control nonces: xtr1 resolves 450 destinations; the nonces of the Map-Requests it sends are fed
  to an MT19937 state-recovery predictor (tests/mt19937.py), which must fail on them, while the
  same predictor, fed ``random.Random`` output, predicts it exactly (so the test can fail).
- Ports: while xtr1 runs, nobody else binds its UDP 4341/4342 (SO_REUSEADDR, SO_REUSEPORT, the
  wildcard, another user); a port held by someone else before lispd starts stops lispd, naming
  the port and the holder; a second lispd on the same configuration stops at once, naming the
  running one, and the running one goes on with its routes untouched.
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from lispd.api.client import request
from lispd.lab import (
    DaemonHandle,
    DaemonStartError,
    Lab,
    MappingSystemPlan,
    mapping_system_topology,
)
from lispd.tools.pcap import ip_payload
from lispd.wire.control import decode_control
from lispd.wire.ecm import EncapsulatedControl
from lispd.wire.errors import WireError
from lispd.wire.ip import parse_udp_datagram
from lispd.wire.maprequest import MapRequest
from tests import mt19937
from tests.netns import common

pytestmark = pytest.mark.netns

KEY = "key-one"
NOBODY = 65534
RESOLVER = {"max-requests-per-second": 10000, "retries": 0}


@dataclass
class Site1:
    lab: Lab
    plan: MappingSystemPlan

    @property
    def xtr(self) -> str:
        return self.plan.sites[0].xtr

    def sock(self, name: str = "xtr1") -> str:
        return str(self.lab.workdir / f"{name}.sock")

    def config(self, sock: str | None = None) -> str:
        site = self.plan.sites[0]
        return common.xtr_config(
            site, sock or self.sock(), self.plan.msmr_rloc, KEY, resolver=RESOLVER
        )

    def start(self, sock: str | None = None) -> DaemonHandle:
        return self.lab.start_lispd(self.xtr, self.config(sock))


@contextlib.contextmanager
def site1() -> Iterator[Site1]:
    plan = mapping_system_topology(sites=1)
    with Lab(plan.topology) as lab:
        yield Site1(lab, plan)


def map_request_nonces(packets: list[bytes]) -> list[int]:
    """The nonces of the ECM'd Map-Requests among captured IP packets, in capture order."""
    nonces = []
    for ip in packets:
        try:
            message = decode_control(parse_udp_datagram(ip).payload)
        except WireError:
            continue
        if isinstance(message, EncapsulatedControl) and isinstance(message.message, MapRequest):
            nonces.append(message.message.nonce)
    return nonces


def test_control_nonces_of_a_live_lispd_defeat_an_mt19937_predictor() -> None:
    with site1() as w:
        daemon = w.start()
        site = w.plan.sites[0]
        destinations = [f"203.0.113.{i}" for i in range(1, 251)]
        destinations += [f"2001:db8:ff::{i:x}" for i in range(1, 201)]
        sender = (
            "import socket, sys\n"
            "for d in sys.argv[1:]:\n"
            "    f = socket.AF_INET6 if ':' in d else socket.AF_INET\n"
            "    socket.socket(f, socket.SOCK_DGRAM).sendto(b'x', (d, 9))\n"
        )
        with w.lab.capture(site.xtr, "to-r", "udp dst port 4342") as cap:
            w.lab.run(site.host, sys.executable, "-c", sender, *destinations)
            common.wait_for(
                "the Map-Requests sent",
                lambda: (
                    request(w.sock(), "stats")["packets"].get("control.sent.packets", 0)
                    >= len(destinations)
                ),
                timeout=20.0,
            )
        nonces = map_request_nonces(
            [ip for p in cap.packets() if (ip := ip_payload(p.linktype, p.frame)) is not None]
        )
        assert daemon.stop() == 0, daemon.log_tail()
    assert len(nonces) >= 400, len(nonces)
    assert len(set(nonces)) == len(nonces)
    lispd_hits = mt19937.predicted_fraction(nonces)
    mt = random.Random(2026)
    control_hits = mt19937.predicted_fraction([mt.getrandbits(64) for _ in nonces])
    print(
        f"\n[security] MT19937 predictor after 312 nonces: lispd's next {len(nonces) - 312} "
        f"Map-Request nonces predicted {lispd_hits:.0%}; random.Random's {control_hits:.0%}"
    )
    assert control_hits == 1.0
    assert lispd_hits == 0.0


BIND = """
import socket, sys
addr, port, opt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
family = socket.AF_INET6 if ':' in addr else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
if opt in ('reuseaddr', 'both'):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if opt in ('reuseport', 'both'):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
try:
    s.bind((addr, port))
except OSError as exc:
    print('refused', exc.errno)
else:
    print('bound')
"""


def try_bind(lab: Lab, node: str, addr: str, port: int, opt: str, user: int | None = None) -> str:
    argv = [sys.executable, "-c", BIND, addr, str(port), opt]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    return lab.run(node, *argv).stdout.strip()


def test_lispd_owns_its_ports_and_a_second_instance_takes_nothing() -> None:
    with site1() as w:
        site = w.plan.sites[0]
        first = w.start()
        rules_before = w.lab.run(site.xtr, "ip", "-N", "rule").stdout
        attempts = {
            (addr, port, opt, who): try_bind(w.lab, site.xtr, addr, port, opt, user)
            for port in (4341, 4342)
            for opt in ("reuseaddr", "reuseport", "both")
            for who, user in (("root", None), ("nobody", NOBODY))
            for addr in (site.rloc, "0.0.0.0")
            if not (port == 4341 and opt != "reuseaddr" and who == "root")
        }
        print(f"\n[security] binds while lispd runs: {attempts}")
        assert set(attempts.values()) == {"refused 98"}, attempts

        # A second lispd on the same configuration: stops before touching anything.
        with pytest.raises(DaemonStartError) as info:
            w.start()
        line = next(x for x in info.value.log_tail.splitlines() if "failed to start" in x)
        print(f"[security] second instance: {line}")
        assert f"lispd (node {site.xtr}) is serving {w.sock()}" in line, line
        assert request(w.sock(), "version")["name"] == site.xtr
        assert w.lab.run(site.xtr, "ip", "-N", "rule").stdout == rules_before
        assert "lisp0" in w.lab.run(site.xtr, "ip", "link").stdout
        # ... and one with another control socket: stopped by the 4342 it cannot have.
        with pytest.raises(DaemonStartError) as info:
            w.start(sock=w.sock("other"))
        line = next(x for x in info.value.log_tail.splitlines() if "failed to start" in x)
        assert "UDP 4342 on the RLOC is already in use by" in line, line
        assert w.lab.run(site.xtr, "ip", "-N", "rule").stdout == rules_before
        assert first.stop() == 0, first.log_tail()

        # A port someone else holds before lispd starts: the start stops, naming port and holder.
        holder = w.lab.popen(
            site.xtr,
            [
                sys.executable,
                "-c",
                "import socket, sys, time\n"
                "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                "s.bind((sys.argv[1], 4341)); print('ready', flush=True); time.sleep(60)\n",
                site.rloc,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
            with pytest.raises(DaemonStartError) as info:
                w.start()
            line = next(x for x in info.value.log_tail.splitlines() if "failed to start" in x)
            print(f"[security] port held before the start: {line}")
            assert f"underlay.rlocs[0]: {site.rloc}: UDP 4341 on the RLOC is already in use" in line
            assert f"(pid {holder.pid})" in line, line
        finally:
            holder.kill()
            holder.wait(5)
