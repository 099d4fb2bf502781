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
routes; nftables NAT (masquerade, 1:1 static NAT; table ``ip lab_nat``, see
:meth:`~lispd.lab.topology.Node.nat_ruleset`) on the nodes that have some, a static NAT's
outside address added as a /32 to its interface; then the nodes' conntrack UDP timeouts
(written once conntrack exists in the namespace, i.e. after the NAT rules, and read back);
then it waits until every veth is operationally up (so the first packet is not lost).  Any
failure tears down what was built and raises :class:`~lispd.lab.netns.LabError`.

NAT state: :meth:`Lab.set_nat_udp_timeout` / :meth:`Lab.nat_udp_timeouts` change and read a
node's conntrack UDP timeouts; :meth:`Lab.conntrack_entries` lists its conntrack table and
:meth:`Lab.flush_conntrack` deletes entries (by default the UDP ones: every UDP NAT binding is
forgotten, as after a NAT reboot).  Both talk ctnetlink directly (no ``conntrack`` tool).

Teardown (``__exit__`` or :meth:`Lab.close`, which always runs): captures stopped, tracked
processes SIGTERMed then SIGKILLed, anything left in a namespace SIGKILLed, namespaces
deleted (veths go with them), the temp dir removed.  When the ``with`` body raised, the log
tails of the daemons are written to stderr (pytest shows them with the failure).  Set
``LISPD_LAB_KEEP=1`` in the environment to keep the temp dir (configs, logs, pcaps).

A ``Lab`` is not thread-safe; several may be alive in one process (up to 26).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import itertools
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from socket import socket as Socket  # in Lab's body, ``socket`` is its method
from types import TracebackType
from typing import Any

import lispd
from lispd.lab import netns, pinger
from lispd.lab.netns import CommandError, LabError
from lispd.lab.process import Capture, DaemonHandle, terminate_all
from lispd.lab.topology import (
    UDP_TIMEOUT_STREAM_SYSCTL,
    UDP_TIMEOUT_SYSCTL,
    Interface,
    IPAddress,
    IPInterface,
    NodeRef,
    Topology,
)

__all__ = ["DEFAULT_SYSCTLS", "FORWARDING_SYSCTLS", "LISPD_ARGV", "ConntrackEntry", "Lab"]

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

# Loaded only when a namespace has no conntrack yet (nf_conntrack built as a module and not
# used anywhere): the ``ct`` expression makes the kernel load it, which registers its sysctls.
_CONNTRACK_TABLE = """\
table inet lab_conntrack {
  chain pre { type filter hook prerouting priority -200; policy accept; ct state new counter; }
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
            lines += [f"addr add {nat.outside}/32 dev {nat.ifname}" for nat in node.static_nats]
            netns.ip_batch(self.ns(node.name), lines)
        netns.wait_links_up({self.ns(n): [i.name for i in topo.interfaces(n)] for n in topo.nodes})
        for node in topo.nodes.values():
            routes = [r for r in topo.routes if r.node == node.name]
            netns.ip_batch(
                self.ns(node.name),
                [f"route add {' '.join(r.ip_args())}" for r in routes],
            )
        for node in topo.nodes.values():
            ruleset = node.nat_ruleset()
            if ruleset:
                netns.run_checked(
                    ["ip", "netns", "exec", self.ns(node.name), "nft", "-f", "-"], input=ruleset
                )
        for node in topo.nodes.values():
            if node.udp_timeout is not None or node.udp_timeout_stream is not None:
                self._write_conntrack_sysctls(node.name, node.nat_sysctls())

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

    def set_features(self, node: NodeRef, features: Mapping[str, bool]) -> None:
        """``ethtool -K IFACE FEATURE on|off ...`` on every interface of ``node`` (pyroute2's
        ethtool, inside its namespace), e.g. ``{"tx-udp-segmentation": False}``: the kernel
        then cuts a UDP GSO burst into datagrams before it hands it to the veth, as it does
        before a card."""
        names = [i.name for i in self.topology.interfaces(node)]
        self._in_namespace(node, "ethtool", lambda: _set_features(names, features))

    # -- sysctls and conntrack (NAT state) ---------------------------------------------

    def sysctl(self, node: NodeRef, key: str) -> str | None:
        """The value of sysctl ``key`` in ``node`` (``net.*`` keys are per namespace), or
        None when the namespace has no such key."""
        proc = self.run(node, "sysctl", "-n", key, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None

    def set_nat_udp_timeout(self, node: NodeRef, seconds: int, stream: int | None = None) -> None:
        """Set ``node``'s conntrack UDP timeouts: ``nf_conntrack_udp_timeout`` to ``seconds``
        and ``nf_conntrack_udp_timeout_stream`` to ``stream`` (default ``seconds``).

        They apply to new and existing entries from their next packet on.  Loads conntrack in
        the namespace if needed (the sysctls exist only then); reads them back and raises
        :class:`LabError` if they differ.
        """
        stream = seconds if stream is None else stream
        for value in (seconds, stream):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LabError(f"conntrack UDP timeout {value!r} is not a positive integer")
        name = self.topology.node(node).name
        self._write_conntrack_sysctls(
            name, {UDP_TIMEOUT_SYSCTL: str(seconds), UDP_TIMEOUT_STREAM_SYSCTL: str(stream)}
        )

    def nat_udp_timeouts(self, node: NodeRef) -> tuple[int, int]:
        """``node``'s (``nf_conntrack_udp_timeout``, ``..._udp_timeout_stream``) in seconds."""
        values = [self.sysctl(node, k) for k in (UDP_TIMEOUT_SYSCTL, UDP_TIMEOUT_STREAM_SYSCTL)]
        if None in values:
            raise LabError(f"no conntrack in {self.topology.node(node).name} (no UDP timeouts)")
        return int(values[0] or 0), int(values[1] or 0)

    def _write_conntrack_sysctls(self, node: str, settings: dict[str, str]) -> None:
        ns = self.ns(node)
        if self.sysctl(node, UDP_TIMEOUT_SYSCTL) is None:
            netns.run_checked(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=_CONNTRACK_TABLE)
            if self.sysctl(node, UDP_TIMEOUT_SYSCTL) is None:
                raise LabError(f"{node}: no {UDP_TIMEOUT_SYSCTL} even with conntrack in use")
        netns.set_sysctls(ns, settings)
        for key, value in settings.items():
            got = self.sysctl(node, key)
            if got != value:
                raise LabError(f"{node}: {key} reads back {got!r} after writing {value!r}")

    def conntrack_entries(self, node: NodeRef, proto: int | None = 17) -> list[ConntrackEntry]:
        """The conntrack entries (IPv4 and IPv6) of ``node`` whose layer-4 protocol is
        ``proto`` (17 UDP, 6 TCP, 1 ICMP; None: all).

        On a NAT node an entry is one NAT binding: ``orig_*`` as the inside host sent it,
        ``reply_*`` as the outside answers (``reply_dst``/``reply_dport`` are the public
        address and port the NAT chose).
        """
        with self._ctnetlink(node) as sock:
            return [e for e in _ct_dump(sock) if proto is None or e.proto == proto]

    def flush_conntrack(self, node: NodeRef, proto: int | None = 17) -> int:
        """Delete ``node``'s conntrack entries of protocol ``proto`` (default UDP; None: all)
        and return how many went; a NAT then forgets those bindings (the next packet of a
        flow makes a new one, with a new port when the masquerade is fully random)."""
        with self._ctnetlink(node) as sock:
            entries = [e for e in _ct_dump(sock) if proto is None or e.proto == proto]
            return sum(_ct_delete(sock, e) for e in entries)

    def socket(self, node: NodeRef, family: int, kind: int, proto: int = 0) -> socket.socket:
        """A socket opened inside ``node``'s namespace (from a helper thread that enters it, so
        this process stays where it is); it sends and receives there whoever uses it."""
        sock: socket.socket = self._in_namespace(
            node, "socket", lambda: socket.socket(family, kind, proto)
        )
        return sock

    def _in_namespace(self, node: NodeRef, what: str, work: Callable[[], Any]) -> Any:
        """``work()``'s result, run on a helper thread inside ``node``'s namespace (sockets it
        opens stay there); its failure as a :class:`LabError` naming ``what``."""
        path = f"/run/netns/{self.ns(node)}"
        box: dict[str, Any] = {}

        def enter_and_work() -> None:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    libc = ctypes.CDLL(None, use_errno=True)
                    if libc.setns(fd, _CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, f"setns({path}): {os.strerror(err)}")
                finally:
                    os.close(fd)
                box["result"] = work()
            except BaseException as exc:
                box["error"] = exc

        thread = threading.Thread(target=enter_and_work, name="lab-setns")
        thread.start()
        thread.join()
        if "error" in box:
            raise LabError(f"{what} in {self.ns(node)}: {box['error']}")
        return box["result"]

    def _ctnetlink(self, node: NodeRef) -> Socket:
        """A ctnetlink socket inside ``node``'s namespace."""
        sock = self.socket(node, socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
        sock.settimeout(5.0)
        sock.bind((0, 0))
        return sock

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


# -- ctnetlink (the conntrack table over netlink, as the conntrack tool does) --------------

_CLONE_NEWNET = 0x40000000
_NETLINK_NETFILTER = 12
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_DUMP = 0x1, 0x4, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NFNL_SUBSYS_CTNETLINK = 1
_IPCTNL_MSG_CT_GET, _IPCTNL_MSG_CT_DELETE = 1, 2
_CTA_TUPLE_ORIG, _CTA_TUPLE_REPLY, _CTA_ZONE = 1, 2, 18
_CTA_TUPLE_IP, _CTA_TUPLE_PROTO = 1, 2
_CTA_PROTO_NUM, _CTA_PROTO_SRC_PORT, _CTA_PROTO_DST_PORT = 1, 2, 3
_NLA_F_NESTED = 0x8000
_NLA_TYPE_MASK = 0x3FFF
_NLMSG = struct.Struct("=IHHII")
_NFGEN = struct.Struct("=BBH")
_NLA = struct.Struct("=HH")
_SEQ = itertools.count(1)


def _set_features(names: Sequence[str], features: Mapping[str, bool]) -> None:
    """Set ``features`` on the interfaces ``names`` of the calling thread's namespace."""
    from pyroute2.ethtool import Ethtool

    tool = Ethtool()
    try:
        for name in names:
            current = tool.get_features(name)
            for feature, on in features.items():
                current.features[feature].enable = on
            tool.set_features(name, current)
            now = tool.get_features(name).features
            if any(now[f].enable != on for f, on in features.items()):
                raise LabError(f"{name} keeps its features: {dict(features)} not taken")
    finally:
        tool.close()


@dataclass(frozen=True)
class ConntrackEntry:
    """One conntrack entry: both directions' tuples (ports are None for ICMP and others)."""

    family: int  # socket.AF_INET or AF_INET6
    proto: int
    orig_src: IPAddress
    orig_dst: IPAddress
    orig_sport: int | None
    orig_dport: int | None
    reply_src: IPAddress
    reply_dst: IPAddress
    reply_sport: int | None
    reply_dport: int | None
    raw_orig: bytes  # the CTA_TUPLE_ORIG payload, to name the entry in a delete
    zone: bytes | None = None  # the CTA_ZONE payload, if any


def _nla_parse(data: bytes) -> dict[int, bytes]:
    """Netlink attributes ``type -> payload`` (flags stripped; the last of a type wins)."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos + _NLA.size <= len(data):
        length, kind = _NLA.unpack_from(data, pos)
        if length < _NLA.size:
            break
        out[kind & _NLA_TYPE_MASK] = data[pos + _NLA.size : pos + length]
        pos += (length + 3) & ~3
    return out


def _nla(kind: int, payload: bytes) -> bytes:
    length = _NLA.size + len(payload)
    return _NLA.pack(length, kind) + payload + b"\0" * (-length % 4)


def _ct_tuple(payload: bytes) -> tuple[IPAddress, IPAddress, int, int | None, int | None]:
    attrs = _nla_parse(payload)
    ip = _nla_parse(attrs.get(_CTA_TUPLE_IP, b""))
    l4 = _nla_parse(attrs.get(_CTA_TUPLE_PROTO, b""))
    src_b, dst_b = (ip[1], ip[2]) if 1 in ip else (ip[3], ip[4])
    proto = l4[_CTA_PROTO_NUM][0]
    ports: list[int | None] = [None, None]
    for i, kind in enumerate((_CTA_PROTO_SRC_PORT, _CTA_PROTO_DST_PORT)):
        if kind in l4 and len(l4[kind]) == 2:
            ports[i] = struct.unpack("!H", l4[kind])[0]
    return ipaddress.ip_address(src_b), ipaddress.ip_address(dst_b), proto, ports[0], ports[1]


def _ct_request(sock: socket.socket, msg: int, flags: int, family: int, attrs: bytes) -> int:
    seq = next(_SEQ)
    body = _NFGEN.pack(family, 0, 0) + attrs
    kind = (_NFNL_SUBSYS_CTNETLINK << 8) | msg
    sock.send(_NLMSG.pack(_NLMSG.size + len(body), kind, _NLM_F_REQUEST | flags, seq, 0) + body)
    return seq


def _ct_messages(sock: socket.socket, seq: int) -> Iterator[tuple[int, bytes]]:
    """``(type, payload)`` of the answers to request ``seq`` until DONE or the ack; an error
    answer raises ``OSError``."""
    while True:
        data = sock.recv(1 << 20)
        pos = 0
        while pos + _NLMSG.size <= len(data):
            length, kind, _flags, mseq, _pid = _NLMSG.unpack_from(data, pos)
            if length < _NLMSG.size:
                return
            payload = data[pos + _NLMSG.size : pos + length]
            pos += (length + 3) & ~3
            if mseq != seq:
                continue
            if kind == _NLMSG_DONE:
                return
            if kind == _NLMSG_ERROR:
                code = -struct.unpack_from("=i", payload)[0]
                if code:
                    raise OSError(code, os.strerror(code))
                return
            yield kind, payload


def _ct_dump(sock: socket.socket) -> list[ConntrackEntry]:
    seq = _ct_request(sock, _IPCTNL_MSG_CT_GET, _NLM_F_DUMP, socket.AF_UNSPEC, b"")
    entries = []
    for _kind, payload in _ct_messages(sock, seq):
        family = payload[0]
        attrs = _nla_parse(payload[_NFGEN.size :])
        if _CTA_TUPLE_ORIG not in attrs or _CTA_TUPLE_REPLY not in attrs:
            continue
        osrc, odst, proto, osport, odport = _ct_tuple(attrs[_CTA_TUPLE_ORIG])
        rsrc, rdst, _p, rsport, rdport = _ct_tuple(attrs[_CTA_TUPLE_REPLY])
        orig = (osrc, odst, osport, odport)
        reply = (rsrc, rdst, rsport, rdport)
        raw = (attrs[_CTA_TUPLE_ORIG], attrs.get(_CTA_ZONE))
        entries.append(ConntrackEntry(family, proto, *orig, *reply, *raw))
    return entries


def _ct_delete(sock: socket.socket, entry: ConntrackEntry) -> bool:
    """Delete ``entry``; False if it was already gone."""
    attrs = _nla(_CTA_TUPLE_ORIG | _NLA_F_NESTED, entry.raw_orig)
    if entry.zone is not None:
        attrs += _nla(_CTA_ZONE, entry.zone)
    seq = _ct_request(sock, _IPCTNL_MSG_CT_DELETE, _NLM_F_ACK, entry.family, attrs)
    try:
        for _ in _ct_messages(sock, seq):
            pass
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    return True


def _addr_line(end: Interface, a: IPInterface) -> str:
    nodad = " nodad" if a.version == 6 else ""
    return f"addr add {a.with_prefixlen} dev {end.name}{nodad}"
