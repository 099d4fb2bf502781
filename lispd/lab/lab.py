"""``Lab``: build a :class:`~lispd.lab.topology.Topology` in network namespaces, run things
in it, and always tear it down.

Usage::

    plan = two_site_topology()
    with Lab(plan.topology) as lab:
        assert lab.ping(plan.host_a, plan.xtr1_eid_v6)
        d = lab.start_lispd(plan.xtr1, config_text)   # waits for READY=1
        with lab.capture(plan.r, plan.r_xtr1_if, "udp port 4341") as cap:
            lab.ping(plan.host_a, plan.host_b_v4, count=3)
        print(len(cap.packets()), d.log_text())
        lab.set_link(plan.xtr1, plan.r, up=False)      # RLOC failure

The build, in order: stale labs of dead processes are removed (:func:`cleanup_stale`); one
namespace per node with ``lo`` up and the sysctls (IPv6 DAD, router advertisements and
solicitations off everywhere, reverse-path filter off, forwarding on for routers, then the
node's own ``sysctls``); the veth pairs (created directly inside their namespaces, so names
never clash with the host's or another run's); links up with their MTU and addresses; static
routes; nftables masquerade on NAT boxes; then it waits until every veth is operationally up
(so the first packet is not lost).  Any failure tears down what was built and raises
:class:`~lispd.lab.netns.LabError`.

Teardown (``__exit__`` or :meth:`Lab.close`, which always runs): captures stopped, tracked
processes SIGTERMed then SIGKILLed, anything left in a namespace SIGKILLed, namespaces
deleted (veths go with them), the temp dir removed.  When the ``with`` body raised, the log
tails of the daemons are written to stderr (pytest shows them with the failure).  Set
``LISPD_LAB_KEEP=1`` in the environment to keep the temp dir (configs, logs, pcaps).

A ``Lab`` is not thread-safe; several may be alive in one process (up to 26).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import lispd
from lispd.lab import netns, pinger
from lispd.lab.netns import CommandError, LabError
from lispd.lab.process import Capture, DaemonHandle, terminate_all
from lispd.lab.topology import Interface, IPInterface, NodeRef, Topology

__all__ = ["DEFAULT_SYSCTLS", "FORWARDING_SYSCTLS", "LISPD_ARGV", "Lab"]

#: Written in every namespace before its interfaces exist (``default`` covers new ones).
DEFAULT_SYSCTLS: dict[str, str] = {
    "net.ipv6.conf.all.disable_ipv6": "0",
    "net.ipv6.conf.default.disable_ipv6": "0",
    "net.ipv6.conf.all.accept_dad": "0",
    "net.ipv6.conf.default.accept_dad": "0",
    "net.ipv6.conf.all.dad_transmits": "0",
    "net.ipv6.conf.default.dad_transmits": "0",
    "net.ipv6.conf.all.accept_ra": "0",
    "net.ipv6.conf.default.accept_ra": "0",
    "net.ipv6.conf.all.router_solicitations": "0",
    "net.ipv6.conf.default.router_solicitations": "0",
    "net.ipv6.conf.all.keep_addr_on_down": "1",
    "net.ipv6.conf.default.keep_addr_on_down": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
}

#: Added on every node that forwards (routers, LISP routers, NAT boxes).
FORWARDING_SYSCTLS: dict[str, str] = {
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
    "net.ipv6.conf.default.forwarding": "1",
    "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.conf.default.send_redirects": "0",
}

_IFINDEX_BASE = 10

_BLACKHOLE_TABLE = """\
table inet lab_blackhole {
  set ifs { type ifname; }
  chain pre { type filter hook prerouting priority -300; policy accept; iifname @ifs drop; }
  chain post { type filter hook postrouting priority 300; policy accept; oifname @ifs drop; }
}
"""

#: ``argv`` of :meth:`Lab.start_lispd` by default; ``{config}`` becomes the config path.
LISPD_ARGV: tuple[str, ...] = (sys.executable, "-m", "lispd", "-c", "{config}")


def _repo_root() -> str:
    """The directory holding the ``lispd`` package (so ``python -m lispd`` finds this tree)."""
    return str(Path(lispd.__file__).resolve().parent.parent)


def _python_env() -> dict[str, str]:
    """``PYTHONPATH`` with this source tree first, for ``python -m lispd...`` in a namespace."""
    old = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": _repo_root() + (os.pathsep + old if old else "")}


class Lab:
    """A topology built in network namespaces; use as a context manager.

    ``workdir``: where configs, logs and pcaps go (default: a fresh temp dir, removed at
    teardown unless ``keep_workdir`` or ``$LISPD_LAB_KEEP``; a given ``workdir`` is never
    removed).
    """

    def __init__(
        self,
        topology: Topology,
        *,
        workdir: str | os.PathLike[str] | None = None,
        keep_workdir: bool = False,
    ) -> None:
        self.topology = topology
        self.run_id = ""
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.gettempdir())
        self._own_workdir = workdir is None
        self._made_workdir = False
        self._keep = keep_workdir or os.environ.get("LISPD_LAB_KEEP", "") not in ("", "0")
        self._namespaces: list[str] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._captures: list[Capture] = []
        self._daemons: list[DaemonHandle] = []
        self._names_used: set[str] = set()
        self._blackhole_tables: set[str] = set()
        self._started = False
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._report_daemons()
        self.close(raise_errors=exc_type is None)

    def start(self) -> None:
        """Build the topology (once).  On any failure, tear down and raise :class:`LabError`."""
        if self._started:
            raise LabError("this Lab was already started")
        self._started = True
        self.topology.validate()
        netns.cleanup_stale()
        self.run_id = netns.choose_run_id()
        try:
            if self._own_workdir:
                self.workdir = Path(tempfile.mkdtemp(prefix=f"{netns.TMP_PREFIX}{self.run_id}-"))
                self._made_workdir = True
            else:
                self.workdir.mkdir(parents=True, exist_ok=True)
            self._build()
        except BaseException as exc:
            self.close(raise_errors=False)
            if isinstance(exc, CommandError | subprocess.TimeoutExpired | OSError):
                raise LabError(f"building the lab failed: {exc}") from exc
            raise

    def close(self, *, raise_errors: bool = True) -> None:
        """Tear everything down (idempotent); raise :class:`LabError` if something stays."""
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []
        for cap in self._captures:
            try:
                cap.stop(settle=0.0)
            except Exception as exc:
                errors.append(f"capture {cap.path}: {exc}")
        terminate_all(self._procs, grace=3.0)  # daemons too, all at once
        for daemon in self._daemons:
            daemon.stop(timeout=0.0)  # closes its notify socket
        for ns in reversed(self._namespaces):
            try:
                netns.kill_namespace_processes(ns)
                netns.delete_namespace(ns)
            except Exception as exc:
                errors.append(f"namespace {ns}: {exc}")
        self._namespaces.clear()
        if self._made_workdir and not self._keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if errors and raise_errors:
            raise LabError("teardown incomplete:\n" + "\n".join(errors))

    def _report_daemons(self) -> None:
        for d in self._daemons:
            tail = d.log_tail(30)
            if tail:
                print(f"--- lab {d.node}: {d.log_path.name} (last lines) ---", file=sys.stderr)
                print(tail, file=sys.stderr)

    # -- build --------------------------------------------------------------------------

    def _build(self) -> None:
        topo = self.topology
        for node in topo.nodes.values():
            ns = self.ns(node.name)
            netns.add_namespace(ns)
            self._namespaces.append(ns)
            settings = dict(DEFAULT_SYSCTLS)
            if node.forwarding:
                settings.update(FORWARDING_SYSCTLS)
            settings.update(node.sysctls)
            netns.set_sysctls(ns, settings)
            netns.ip_batch(ns, ["link set lo up"])
        for k, link in enumerate(topo.links):
            # Distinct ifindexes on the two ends make the kernel treat the carrier change as
            # urgent (same index on both ends, the default in fresh namespaces, delays it ~1 s).
            mtu = [] if link.mtu is None else ["mtu", str(link.mtu)]
            left = ["ip", "-n", self.ns(link.left.node), "link", "add", link.left.name]
            left += ["index", str(_IFINDEX_BASE + 2 * k), *mtu]
            right = ["peer", "name", link.right.name, "index", str(_IFINDEX_BASE + 2 * k + 1)]
            right += [*mtu, "netns", self.ns(link.right.node)]
            netns.run_checked([*left, "type", "veth", *right])
        for node in topo.nodes.values():
            lines = []
            for end in topo.interfaces(node):
                lines += [_addr_line(end, a) for a in end.addresses]
                lines.append(f"link set {end.name} up")
            netns.ip_batch(self.ns(node.name), lines)
        netns.wait_links_up({self.ns(n): [i.name for i in topo.interfaces(n)] for n in topo.nodes})
        for node in topo.nodes.values():
            routes = [r for r in topo.routes if r.node == node.name]
            netns.ip_batch(
                self.ns(node.name),
                [f"route add {' '.join(r.ip_args())}" for r in routes],
            )
        for node in topo.nodes.values():
            if node.masquerade:
                rules = "".join(f'    oifname "{i}" masquerade\n' for i in node.masquerade)
                ruleset = (
                    "table ip lab_nat {\n"
                    "  chain postrouting {\n"
                    "    type nat hook postrouting priority srcnat; policy accept;\n"
                    f"{rules}  }}\n}}\n"
                )
                netns.run_checked(
                    ["ip", "netns", "exec", self.ns(node.name), "nft", "-f", "-"], input=ruleset
                )

    # -- names and addresses ------------------------------------------------------------

    def ns(self, node: NodeRef) -> str:
        """The namespace name of ``node``, e.g. ``lt4242a-xtr1``."""
        if not self.run_id:
            raise LabError("the lab is not started")
        return f"{netns.NS_PREFIX}{self.run_id}-{self.topology.node(node).name}"

    def namespaces(self) -> list[str]:
        """The namespaces this lab created and has not yet deleted."""
        return list(self._namespaces)

    def addr(self, node: NodeRef, family: int = 4, toward: NodeRef | None = None) -> str:
        """A bare address of ``node`` (see :meth:`Topology.addr`)."""
        return self.topology.addr(node, family, toward)

    def iface(self, node: NodeRef, toward: NodeRef | None = None) -> Interface:
        """The interface of ``node`` on its link toward ``toward`` (name and addresses)."""
        return self.topology.interface(node, toward)

    # -- running things -----------------------------------------------------------------

    def exec_argv(self, node: NodeRef, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed so that it runs inside ``node``'s namespace."""
        return ["ip", "netns", "exec", self.ns(node), *argv]

    def run(
        self,
        node: NodeRef,
        *argv: str,
        check: bool = True,
        timeout: float = 30.0,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside ``node`` and wait; text stdout/stderr are captured.

        ``check``: raise :class:`~lispd.lab.netns.CommandError` (a ``CalledProcessError``
        whose message shows the output) on a non-zero exit.  ``timeout`` kills the command
        and raises ``subprocess.TimeoutExpired``.
        """
        full = self.exec_argv(node, argv)
        proc = subprocess.run(
            full,
            input=input,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=None if env is None else {**os.environ, **env},
            check=False,
        )
        if check and proc.returncode != 0:
            raise CommandError(proc.returncode, full, proc.stdout, proc.stderr)
        return proc

    def popen(self, node: NodeRef, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in the background inside ``node``; killed at teardown.

        Keyword arguments go to ``subprocess.Popen``; the process gets its own session
        (so teardown can signal its whole process group) unless ``start_new_session=False``.
        """
        kw.setdefault("start_new_session", True)
        proc = subprocess.Popen(self.exec_argv(node, argv), **kw)
        self._procs.append(proc)
        return proc

    def ping(
        self,
        node: NodeRef,
        dst: str,
        *,
        count: int = 1,
        wait: float = 2.0,
        size: int | None = None,
        df: bool = False,
        source: str | None = None,
    ) -> bool:
        """Whether ``count`` echo requests from ``node`` to ``dst`` got at least one reply.

        Uses :mod:`lispd.lab.pinger` (no ``ping`` binary needed); ``wait`` is how long to
        wait for the last reply, ``size`` the payload length, ``df`` forbids fragmenting
        (IPv4 DF set; without it IPv4 goes without DF and routers fragment, IPv6 is fragmented
        at the source to the known path MTU), ``source`` binds a source address.
        """
        # The pinger needs only the standard library: run its file in isolated mode without
        # site-packages (starts in ~20 ms instead of ~150 ms for ``-m lispd.lab.pinger``).
        argv = [sys.executable, "-I", "-S", pinger.__file__, "-c", str(count), "-W", f"{wait:g}"]
        if size is not None:
            argv += ["-s", str(size)]
        if df:
            argv.append("--df")
        if source is not None:
            argv += ["-I", source]
        timeout = count * 0.2 + wait + 10.0
        proc = self.run(node, *argv, dst, check=False, timeout=timeout)
        if proc.returncode not in (0, 1):  # 2: pinger usage/socket error, 255: ip netns exec
            raise LabError(f"pinger failed in {self.topology.node(node).name}: {proc.stderr}")
        return proc.returncode == 0

    def wait_ping(self, node: NodeRef, dst: str, timeout: float = 10.0) -> float:
        """Ping until one reply comes back; return the seconds it took, raise on timeout."""
        start = time.monotonic()
        while not self.ping(node, dst, wait=1.0):
            if time.monotonic() - start > timeout:
                raise LabError(f"{dst} unreachable from {self.topology.node(node).name}")
        return time.monotonic() - start

    def set_link(self, a: NodeRef, b: NodeRef, *, up: bool) -> None:
        """Set the link(s) between ``a`` and ``b`` administratively up or down (both ends).

        Down: the kernel drops the static routes through those interfaces; up: they are
        installed again (``ip route replace`` of the topology's routes of ``a`` and ``b``) and
        this waits for the carrier.  Addresses stay (``keep_addr_on_down``).  For a silent
        failure that keeps the carrier, see :meth:`set_blackhole`.
        """
        links = self.topology.links_between(a, b)
        if not links:
            raise LabError(f"no link between {a} and {b}")
        ends = [e for lk in links for e in (lk.left, lk.right)]
        state = "up" if up else "down"
        for end in ends:
            netns.ip_batch(self.ns(end.node), [f"link set {end.name} {state}"])
        if not up:
            return
        pending: dict[str, list[str]] = {}
        for end in ends:
            pending.setdefault(self.ns(end.node), []).append(end.name)
        netns.wait_links_up(pending)
        for node in {e.node for e in ends}:
            routes = [r for r in self.topology.routes if r.node == node]
            netns.ip_batch(
                self.ns(node), [f"route replace {' '.join(r.ip_args())}" for r in routes]
            )

    def set_blackhole(self, a: NodeRef, b: NodeRef, *, on: bool) -> None:
        """Silently drop (``on=True``) or pass again all IP traffic on the link(s) between
        ``a`` and ``b``, in both directions; carrier, addresses and routes stay as they are.

        Uses an nftables table ``inet lab_blackhole`` in both end namespaces.
        """
        links = self.topology.links_between(a, b)
        if not links:
            raise LabError(f"no link between {a} and {b}")
        for end in (e for lk in links for e in (lk.left, lk.right)):
            ns = self.ns(end.node)
            script = ""
            if ns not in self._blackhole_tables:
                script += _BLACKHOLE_TABLE
                self._blackhole_tables.add(ns)
            verb = "add" if on else "delete"
            script += f'{verb} element inet lab_blackhole ifs {{ "{end.name}" }}\n'
            netns.run_checked(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script)

    def _unique(self, stem: str) -> str:
        name, n = stem, 1
        while name in self._names_used:
            n += 1
            name = f"{stem}-{n}"
        self._names_used.add(name)
        return name

    @contextlib.contextmanager
    def capture(
        self,
        node: NodeRef,
        ifname: str,
        filter: str = "",
        *,
        name: str | None = None,
        snaplen: int = 9216,
        buffer_kib: int = 32768,
        settle: float = 0.2,
    ) -> Iterator[Capture]:
        """Capture on ``ifname`` inside ``node`` with tcpdump for the ``with`` body.

        ``filter`` is a pcap filter (``"udp port 4341"``).  The body starts once tcpdump is
        listening; on exit it waits ``settle`` s for packets in flight and stops it.  The
        yielded :class:`~lispd.lab.process.Capture` has ``.path`` (a pcap file in the
        workdir) and, after the ``with``, ``.packets()``, ``.ip_packets()`` and ``.dropped``
        (packets the kernel dropped because tcpdump's ring was full; 0 expected).

        ``snaplen``: bytes kept per packet, default a jumbo frame; GSO/GRO super-packets on
        veths (TCP) can be longer and are then truncated.  Keep it small: in immediate mode
        libpcap sizes every ring slot by it, so ``snaplen=0`` (262144) leaves only
        ``buffer_kib / 64`` slots on an interface with offloads, and a burst overflows them.
        """
        node_name = self.topology.node(node).name
        stem = self._unique(name or f"{node_name}-{ifname}")
        path = self.workdir / f"{stem}.pcap"
        log = self.workdir / f"{stem}.tcpdump.log"
        argv = ["tcpdump", "-i", ifname, "-n", "-U", "--immediate-mode", "-Z", "root"]
        argv += ["-B", str(buffer_kib), "-s", str(snaplen), "-w", str(path)]
        if filter:
            argv.append(filter)
        with log.open("wb") as logf:
            proc = self.popen(
                node, argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT
            )
        cap = Capture(proc, path, log)
        self._captures.append(cap)
        cap.wait_listening()
        try:
            yield cap
        finally:
            cap.stop(settle)

    def start_lispd(
        self,
        node: NodeRef,
        config_text: str,
        *,
        argv: Sequence[str] | None = None,
        timeout: float = 15.0,
        env: Mapping[str, str] | None = None,
        name: str = "lispd",
    ) -> DaemonHandle:
        """Start lispd in ``node`` with ``config_text`` and wait for its ``READY=1``.

        The config is written to ``<workdir>/<node>-<name>.conf``, stdout and stderr go to
        ``<node>-<name>.log``.  ``argv`` replaces the command (default
        ``[sys.executable, "-m", "lispd", "-c", "{config}"]``; ``{config}`` in any argument
        becomes the config path).  The daemon's environment has ``NOTIFY_SOCKET`` (a datagram
        socket in the workdir), ``PYTHONPATH`` starting with this source tree, and ``env``.
        Raises :class:`~lispd.lab.process.DaemonStartError` (with the log tail) if it exits
        or stays silent for ``timeout`` s; it is then stopped.
        """
        node_name = self.topology.node(node).name
        stem = self._unique(f"{node_name}-{name}")
        config_path = self.workdir / f"{stem}.conf"
        log_path = self.workdir / f"{stem}.log"
        sock_path = self.workdir / f"{stem}.notify"
        config_path.write_text(config_text)
        if len(os.fsencode(sock_path)) >= 108:
            raise LabError(f"notify socket path too long for AF_UNIX: {sock_path}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(str(sock_path))
            sock.setblocking(False)
            cmd = [a.replace("{config}", str(config_path)) for a in (argv or LISPD_ARGV)]
            child_env = dict(os.environ)
            child_env.pop("LISTEN_FDS", None)
            child_env["NOTIFY_SOCKET"] = str(sock_path)
            child_env["PYTHONUNBUFFERED"] = "1"
            child_env.update(_python_env())
            child_env.update(env or {})
            with log_path.open("wb") as logf:
                proc = self.popen(
                    node_name,
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    env=child_env,
                    cwd=self.workdir,
                )
        except BaseException:
            sock.close()
            raise
        handle = DaemonHandle(node_name, proc, config_path, log_path, sock)
        self._daemons.append(handle)
        try:
            handle.wait_notify("READY=1", timeout)
        except BaseException:
            handle.stop(2.0)
            raise
        return handle


def _addr_line(end: Interface, a: IPInterface) -> str:
    nodad = " nodad" if a.version == 6 else ""
    return f"addr add {a.with_prefixlen} dev {end.name}{nodad}"
