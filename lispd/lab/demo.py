"""``lispd-lab demo``: the seed world built, exercised and torn down, told as a story.

    sudo .venv/bin/lispd-lab demo          # or: sudo .venv/bin/python -m lispd.lab demo

Builds :mod:`lispd.lab.world` in network namespaces (two LISP sites behind NATs, an RTR behind a
1:1 NAT, a Map-Server/Map-Resolver that is also PITR and PETR, and a non-LISP outside host),
starts lispd on its four LISP nodes, then shows what an operator would look at: the NAT
discovery and the registrations, pings between the sites (IPv4 and IPv6 EIDs) and what the
Internet sees of them, ``ltr`` between the sites, pings to and from the outside world (through
the PETR one way, the PITR the other) and the map-caches (``lispctl``).  Every step prints a
short narrative, then the real tools' output indented under the command; a summary of the checks
closes it.  Exit status 0 when every check held, 1 when one failed, 2 when not root, 128 + the
signal number when interrupted (SIGINT, SIGTERM).  Namespaces, lispd and capture processes are
removed in every case.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import lispd
from lispd.api.client import ControlError, request
from lispd.cli.decode import decode_capture
from lispd.lab import pinger
from lispd.lab.lab import Lab
from lispd.lab.netns import LabError, list_namespaces
from lispd.lab.plans import NatPlan
from lispd.lab.process import DaemonHandle
from lispd.lab.story import Story
from lispd.lab.world import (
    ROLES,
    daemon_nodes,
    seed_plan,
    socket_path,
    start_daemons,
    wait_converged,
)

__all__ = ["DIAGRAM", "Interrupted", "interruptible", "main", "run_demo", "tool_env"]

#: The seed world as the demo draws it.
DIAGRAM: tuple[str, ...] = (
    "h1 -- gxtr1 -- nat1 --+                +-- ms        Map-Server/Map-Resolver, PITR, PETR",
    "  site 1     (NAT)    |                |",
    "                      +---- core ------+-- cloudnat -- rtr1     RTR behind a 1:1 NAT",
    "  site 2     (NAT)    |                |",
    "h2 -- xtr2 --- nat2 --+                +-- outside   a host that knows nothing of LISP",
)

PING_COUNT = 3
PING_WAIT = 3.0
TOOL_TIMEOUT = 30.0


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: unwind, tear down, exit with 128 + ``signum``."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


class Abort(Exception):
    """A step the rest depends on failed (already recorded as a failed check)."""


@contextmanager
def interruptible() -> Iterator[None]:
    """Turn the first SIGINT or SIGTERM into :class:`Interrupted`; ignore both after it (the
    teardown must not be cut short), and again once the body is left.  :func:`restore_signals`
    puts the defaults back after the teardown."""

    def handler(signum: int, frame: FrameType | None) -> None:
        ignore_signals()
        raise Interrupted(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    try:
        yield
    finally:
        ignore_signals()


def ignore_signals() -> None:
    """Ignore SIGINT and SIGTERM (while tearing down)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def restore_signals() -> None:
    """Default SIGTERM, KeyboardInterrupt on SIGINT again."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def tool_env() -> dict[str, str]:
    """``PYTHONPATH`` so that ``python -m lispd...`` in a namespace finds this source tree."""
    root = str(Path(lispd.__file__).resolve().parent.parent)
    old = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": root + (os.pathsep + old if old else "")}


class SeedDemo:
    """The steps of the demo over one lab; each adds checks to the story."""

    def __init__(self, story: Story, plan: NatPlan, lab: Lab) -> None:
        self.story = story
        self.plan = plan
        self.lab = lab
        self.daemons: dict[str, DaemonHandle] = {}

    # -- helpers --------------------------------------------------------------------------

    def sock(self, node: str) -> Path:
        """The control socket of ``node``'s lispd."""
        return socket_path(self.lab.workdir, node)

    def run_tool(self, node: str, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside ``node`` (never raises on a non-zero exit)."""
        return self.lab.run(node, *argv, check=False, timeout=TOOL_TIMEOUT, env=tool_env())

    def ping(self, src: str, dst: str, what: str) -> bool:
        """``pinger -c 3 dst`` on ``src``, shown; the check holds when every echo came back."""
        argv = [sys.executable, "-I", "-S", pinger.__file__, "-c", str(PING_COUNT)]
        argv += ["-W", f"{PING_WAIT:g}", dst]
        proc = self.run_tool(src, argv)
        self.story.command(src, ["pinger", "-c", str(PING_COUNT), dst], proc.stdout + proc.stderr)
        ok = proc.returncode == 0 and f"received={PING_COUNT}" in proc.stdout
        return self.story.check(what, ok, f"exit status {proc.returncode}")

    def lispctl(self, node: str, *words: str) -> subprocess.CompletedProcess[str]:
        """``lispctl -s <node's socket> WORDS``, shown (run on the host: the socket is a file)."""
        sock = self.sock(node)
        argv = [sys.executable, "-m", "lispd.cli.lispctl", "-s", str(sock), *words]
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT,
            env={**os.environ, **tool_env()},
            check=False,
        )
        self.story.command("", ["lispctl", "-s", sock.name, *words], proc.stdout + proc.stderr)
        return proc

    def ask(self, node: str, command: str) -> Any:
        """One control-socket request to ``node``'s lispd."""
        return request(str(self.sock(node)), command)

    def counter(self, node: str, name: str) -> int:
        """The packets counted under ``name`` (``rtr.reencap``...) by ``node``'s lispd."""
        packets: dict[str, int] = self.ask(node, "stats").get("packets", {})
        return packets.get(f"{name}.packets", 0)

    def rtr_sent(self) -> int:
        """The packets rtr1 encapsulated again: at once (``rtr.reencap``) or once a
        Map-Reply released them (held packets are counted under ``itr.encap``)."""
        rtr1 = self.plan.rtr1
        return self.counter(rtr1, "rtr.reencap") + self.counter(rtr1, "itr.encap")

    # -- the steps ------------------------------------------------------------------------

    def build(self) -> None:
        """Step 1: the namespaces, links, routes and NATs."""
        p = self.plan
        self.story.step("Build the seed world in network namespaces")
        self.story.say(
            "Every name below becomes a network namespace, every line a veth link. The "
            "underlay is 192.0.2.0/24 (the NATs' insides 192.0.2.128/25), the sites' EIDs are "
            f"{p.site1_prefix_v4} + {p.site1_prefix_v6} (h1) and {p.site2_prefix_v4} + "
            f"{p.site2_prefix_v6} (h2), the outside host is {p.outside_v4} and {p.outside_v6}. "
            "nat1 and nat2 masquerade with random ports, as home NATs do; cloudnat maps "
            f"{p.rtr1_public_v4} to rtr1's {p.rtr1_private_v4}, as a cloud provider does."
        )
        self.story.lines(("", *DIAGRAM, ""))
        start = time.monotonic()
        try:
            self.lab.start()
        except LabError as exc:
            self.story.check("the world is built", False, str(exc))
            raise Abort from exc
        names = self.lab.namespaces()
        self.story.say(
            f"{len(names)} namespaces up in {time.monotonic() - start:.1f} s, named "
            f"{names[0].rsplit('-', 1)[0]}-<node>."
        )
        self.story.check(f"world built ({len(names)} namespaces)", True)
        self.story.say(f"Before lispd runs, h1 cannot reach h2 ({p.h2_v4}):")
        reached = self.lab.ping(p.h1, p.h2_v4, wait=0.5)
        self.story.lines([f"    h1 -> {p.h2_v4}: {'REACHABLE?!' if reached else 'unreachable'}"])
        self.story.check("no path between the sites without LISP", not reached)

    def start_lispd(self) -> None:
        """Step 2: lispd on ms, rtr1, gxtr1 and xtr2, each waited for (READY=1)."""
        self.story.step("Start lispd on the four LISP nodes")
        self.story.say(
            "One lispd per node, each with its own lispd.conf (in the lab's directory "
            f"{self.lab.workdir}); each is waited for until it tells READY=1 (sd_notify)."
        )

        def ready(handle: DaemonHandle) -> None:
            role = ROLES.get(handle.node, "")
            self.story.lines([f"    {handle.node:<6} pid {handle.pid:<8} ready   {role}"])

        try:
            self.daemons = start_daemons(self.lab, self.plan, on_ready=ready)
        except LabError as exc:
            self.story.check("lispd started on every LISP node", False, str(exc))
            raise Abort from exc
        self.story.check(f"lispd running on {', '.join(daemon_nodes(self.plan))}", True)

    def registration(self) -> None:
        """Step 3: NAT discovery (Info-Request/Reply) and registration through the RTR."""
        p = self.plan
        self.story.step("The xTRs discover their NATs and register the RTR as their RLOC")
        self.story.say(
            "Each xTR sends an Info-Request to ms. The reply tells it the address and port its "
            "NAT gave it, so it learns it is behind a NAT, and names the RTR to use. It then "
            "registers its sites with its NAT's address and the RTR as RLOCs (proxy-reply: "
            "ms answers for it), and sends the RTR a keepalive every second, which keeps the "
            "NAT binding open and tells the RTR where to send."
        )
        try:
            took = wait_converged(p, self.lab.workdir)
        except TimeoutError as exc:
            self.story.check("both sites registered through the RTR", False, str(exc))
            raise Abort from exc
        when = "at once" if took < 0.1 else f"{took:.1f} s after the last lispd was ready"
        self.story.say(f"Both sites registered ({when}):")
        self.lispctl(p.gxtr1, "show", "nat")
        self.lispctl(p.ms, "show", "site")
        self.lispctl(p.rtr1, "show", "rtr")
        self.story.check("both sites registered through the RTR", True)

    def between_sites(self) -> None:
        """Step 4: pings between the sites, and what nat1's public side sees of them."""
        p = self.plan
        self.story.step("h1 and h2 ping each other across both NATs, through rtr1")
        self.story.say(
            "gxtr1 has no route to h2: lispd took the traffic into its TUN, encapsulates it "
            "and sends it to the RTR from its data port. rtr1 decapsulates, asks ms where "
            "h2's EID is (the Map-Reply gives an RTR the xTR's NAT address) and encapsulates "
            "again to the address and port nat2 opened for xtr2's keepalives."
        )
        before = self.rtr_sent()
        with self.lab.capture(p.nat1, p.nat1_public_if, "udp port 4341") as cap:
            self.ping(p.h1, p.h2_v4, "h1 -> h2, IPv4 EIDs")
        self.ping(p.h1, p.h2_v6, "h1 -> h2, IPv6 EIDs")
        self.ping(p.h2, p.h1_v4, "h2 -> h1, IPv4 EIDs")
        self.ping(p.h2, p.h1_v6, "h2 -> h1, IPv6 EIDs")
        reencap = self.rtr_sent() - before
        expected = 4 * 2 * PING_COUNT
        self.story.say(
            f"rtr1 re-encapsulated {reencap} packets meanwhile (every echo request and reply: "
            f"{expected})."
        )
        self.story.check("every site-to-site packet went through rtr1", reencap >= expected)
        self.story.say(
            "What the Internet sees on nat1's public link during the first ping (tcpdump, "
            "decoded with lispd decode): UDP between nat1's address, on a port it chose, and "
            "the RTR's public address; the EIDs only inside."
        )
        self.story.output("\n".join(self.describe_capture(cap.path)))

    @staticmethod
    def describe_capture(path: Path, limit: int = 4) -> list[str]:
        """One line per LISP data packet carrying an IP packet (keepalives skipped)."""
        lines = []
        for obj in decode_capture(path.read_bytes()):
            inner = (obj.get("inner") or {}).get("ip")
            if not inner:
                continue
            header = obj.get("message") or {}
            lines.append(
                f"{obj['src']}:{obj['sport']} -> {obj['dst']}:{obj['dport']}  LISP "
                f"iid {header.get('instance_id')}  inner {inner['src']} -> {inner['dst']}"
            )
            if len(lines) == limit:
                break
        return lines or ["(no LISP data packet captured)"]

    def trace(self) -> None:
        """Step 5: ltr from gxtr1 to h2."""
        p = self.plan
        self.story.step("ltr: the path between the sites, hop by hop, both ways")
        self.story.say(
            "ltr sends one LISP-Trace packet from gxtr1's EID to h2. Every lispd on the way "
            "appends a record (which node, the addresses as it saw them, after NAT), xtr2 turns "
            "it around, and it comes back with both directions: the private addresses the "
            "xTRs send from, the NATs' addresses and ports rtr1 sees, the probes' RTTs and "
            "hop counts."
        )
        conf = self.daemons[p.gxtr1].config_path
        argv = [sys.executable, "-m", "lispd.cli.ltr", "-c", str(conf), p.h2_v4]
        proc = self.run_tool(p.gxtr1, argv)
        self.story.command(p.gxtr1, ["ltr", "-c", conf.name, p.h2_v4], proc.stdout + proc.stderr)
        ok = proc.returncode == 0 and "Received reply" in proc.stdout
        self.story.check("ltr gxtr1 -> h2 came back", ok, f"exit status {proc.returncode}")

    def outside_world(self) -> None:
        """Step 6: pings to and from the non-LISP host, through the PETR and the PITR."""
        p = self.plan
        self.story.step("The outside world: out through the PETR, in through the PITR")
        self.story.say(
            f"outside ({p.outside_v4}) knows nothing of LISP. h1's packets to it go to rtr1 "
            "like all of gxtr1's; rtr1's Map-Request gets a negative Map-Reply "
            "(native-forward: not an EID), so it encapsulates them to the PETR, ms, which "
            "decapsulates and forwards them natively. The replies, addressed to an EID, are "
            "routed by core to ms as a PITR, which asks its Map-Resolver (itself), gets rtr1 for "
            "h1's site and encapsulates them to rtr1, which sends them on to gxtr1."
        )
        decap0, encap0 = self.counter(p.ms, "petr.decap"), self.counter(p.ms, "pitr.encap")
        self.ping(p.h1, p.outside_v4, "h1 -> outside, IPv4 (via rtr1 and the PETR)")
        self.ping(p.h1, p.outside_v6, "h1 -> outside, IPv6 (via rtr1 and the PETR)")
        self.ping(p.outside, p.h1_v4, "outside -> h1, IPv4 (via the PITR and rtr1)")
        self.ping(p.outside, p.h1_v6, "outside -> h1, IPv6 (via the PITR and rtr1)")
        decap = self.counter(p.ms, "petr.decap") - decap0
        encap = self.counter(p.ms, "pitr.encap") - encap0
        expected = 4 * PING_COUNT
        self.story.say(
            f"ms decapsulated {decap} packets as PETR and encapsulated {encap} as PITR "
            f"meanwhile (each {expected}: the echo requests one way and the replies the other)."
        )
        self.story.check(
            "EID -> outside went through the PETR, outside -> EID through the PITR",
            decap >= expected and encap >= expected,
            f"PETR {decap}, PITR {encap} packets, {expected} expected each",
        )
        self.story.say(
            "rtr1's map-cache now holds both sites (at their NATs' addresses and ports) and "
            "the negative entries the Map-Resolver gave for the outside world's addresses:"
        )
        proc = self.lispctl(p.rtr1, "show", "map-cache")
        self.story.check("lispctl show map-cache on rtr1", proc.returncode == 0)

    def map_caches(self) -> None:
        """Step 7: ``lispctl show map-cache`` on an xTR and on the PITR."""
        p = self.plan
        self.story.step("The map-caches of an xTR and of the PITR")
        self.story.say(
            "gxtr1, behind its NAT, needs no mappings of its own: its map-cache only says that "
            "everything is resolved (0.0.0.0/0, ::/0 into its TUN), and the NAT traversal sends "
            "what has no mapping to the RTR. ms as PITR learned h1's site at the RTR (priority "
            "254: RTRs only)."
        )
        proc = self.lispctl(p.gxtr1, "show", "map-cache")
        self.story.check("lispctl show map-cache on gxtr1", proc.returncode == 0)
        proc = self.lispctl(p.ms, "show", "map-cache")
        self.story.check("lispctl show map-cache on ms", proc.returncode == 0)

    def run(self) -> None:
        """Every step in order; :class:`Abort` stops at a step the rest depend on."""
        self.build()
        self.start_lispd()
        self.registration()
        self.between_sites()
        self.trace()
        self.outside_world()
        self.map_caches()

    def report_logs(self, lines: int = 15) -> None:
        """The daemons' log tails (after a failure)."""
        for node, handle in self.daemons.items():
            self.story.say(f"{node}'s log, last lines ({handle.log_path}):")
            self.story.output(handle.log_tail(lines))

    def teardown(self) -> bool:
        """Stop everything and delete the namespaces; whether nothing stayed behind."""
        names = self.lab.namespaces()
        self.story.step("Tear everything down")
        start = time.monotonic()
        try:
            self.lab.close()
        except LabError as exc:
            self.story.check("everything torn down", False, str(exc))
            return False
        left = sorted(set(names) & set(list_namespaces()))
        alive = [d.node for d in self.daemons.values() if d.running()]
        self.story.say(
            f"lispd stopped on {len(self.daemons)} nodes, {len(names)} namespaces deleted in "
            f"{time.monotonic() - start:.1f} s."
        )
        return self.story.check(
            "everything torn down", not left and not alive, f"left: {left} {alive}"
        )


def run_demo(out: Any = None) -> int:
    """Run the demo, telling it on ``out`` (default stdout); return the exit status."""
    story = Story(out or sys.stdout)
    started = time.monotonic()
    plan = seed_plan()
    demo = SeedDemo(story, plan, Lab(plan.topology))
    status, interrupted = 0, ""
    story.title(
        "lispd seed-world demo: two LISP sites behind NATs, an RTR in a cloud behind a 1:1 NAT, "
        "a Map-Server/Map-Resolver that is also PITR and PETR, and a host outside LISP."
    )
    try:
        with interruptible():
            try:
                demo.run()
            except Abort:
                pass
            except (LabError, ControlError, subprocess.TimeoutExpired, OSError) as exc:
                story.check("the demo ran to its end", False, f"{type(exc).__name__}: {exc}")
            if story.failed and demo.daemons:
                demo.report_logs()
    except Interrupted as exc:
        status, interrupted = 128 + exc.signum, str(exc)
        story.lines(["", f"Interrupted by {exc}."])
    torn_down = demo.teardown()
    restore_signals()
    story.summary(time.monotonic() - started, torn_down, interrupted)
    if status:
        return status
    return 0 if torn_down and not story.failed else 1


def main() -> int:
    """Entry point of ``python -m lispd.lab.demo``."""
    if os.geteuid() != 0:
        print("lispd-lab demo builds network namespaces: run it as root", file=sys.stderr)
        return 2
    return run_demo()


if __name__ == "__main__":
    sys.exit(main())
