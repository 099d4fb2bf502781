"""LISP-DDT resolution: cold and warm referral cache against a one-step Map-Resolver (issue 23).

    sudo .venv/bin/python -m benchmarks.ddt [--quick] [--sites N] [--map-servers M]
        [--samples N] [--rate R] [--sources K] [--registration-timeout S] [--json FILE]
    .venv/bin/python -m benchmarks.ddt --in-process-only [--sites N] [--map-servers M]

Lab (its own topology, :class:`lispd.lab.Lab`): every node hangs off one core router::

                      root (ddt-node)
                     /               \\
          ddt1 (ddt-node)          ddt2 (ddt-node)
          /   |   |   \\             /   |   |   \\
        ms1  ms2 ms3  ms4         ms5  ms6 ms7  ms8     (map-server: 1/M of the sites each)

        mr (map-resolver, [ddt] roots = [root])      msmr (map-server + map-resolver: every
        client (sends the Map-Requests and the         site, no DDT: the one-step baseline)
                Map-Registers)

Links: ``core`` - node over 192.0.2.4k/30 (core .4k+1, node .4k+2), the client over
198.51.100.0/26 (core .1, the client .2 and up: one address per request source); every node
routes by default to the core.

EID plan (IPv6 only: 10,000 sites do not fit in the IPv4 documentation ranges).  The root is
authoritative for 2001:db8:8000::/33 and delegates its halves (/34) to ddt1 and ddt2 (kind
``ddt-node``); each of those delegates a /36 per Map-Server to that Map-Server (kind
``map-server``): Map-Server ``m`` (0-based; child ``m // per_child``, ``m % per_child`` under it)
holds 2001:db8:(8000 + 4000 * child + 1000 * (m % per_child))::/36.  Its sites are the /48s
counted up from there: site ``j`` of Map-Server ``m`` is that /36 plus ``j`` in bits 36-47
(4,096 at most per Map-Server).  EIDs asked: ``site::1`` (cold), ``site::2`` (warm),
``site::3`` (baseline), ``site::4`` (the memory phase).

Registration: lispd's registrar is per xTR, so the sites are registered by this module from the
client's namespace: one authenticated Map-Register per site (HMAC-SHA-256-128 with the site's
own key, proxy-reply bit P, want-Map-Notify bit M, one EID-record with one locator in
203.0.113.0/24 that nothing uses), to its DDT Map-Server and to msmr; a site counts as
registered when its Map-Notify came back, the missing ones are sent again (new nonce) up to 5
times.  With P the Map-Server answers a Map-Request with a Map-Reply itself (RFC 9301 8.2):
no ETR exists.  The Map-Servers keep registrations ``--registration-timeout`` seconds (1800 by
default, in their configuration); every site is registered again when a third of it has passed
(checked between requests: the full run does not need it at the default).

Measured, from the client (a socket per source address, opened in its namespace by this
process), with ECM'd Map-Requests built as ``lig`` builds them
(:func:`lispd.cli.lig.build_request`: inner destination the EID, ITR-RLOC the source address,
a fresh random nonce) and the Map-Reply matched by nonce; the time is from ``sendto`` to the
reply read, in this process:

``cold``
    ``mr``'s referral cache cleared (control socket ``clear-referral-cache``, what
    ``lispctl clear referral-cache`` sends) and then a Map-Request for ``site::1`` of a site never
    asked before: mr walks root -> ddt1/2 -> the Map-Server, which proxy-replies to the client.
``warm``
    right after, ``site::2`` of the same site: the Map-Server's MS-ACK is in mr's cache (an
    MS referral for the site's /48), mr asks the Map-Server at once.
``baseline``
    ``site::3`` of the same site to msmr: one Map-Resolver that holds the registration itself.

``--samples`` of each, interleaved (cold, warm, baseline, next site) so that the machine's
noise hits all three alike; median, p95 (linear interpolation) and max in ms, the requests
without an answer within 2 s (``lost``), and cold/baseline, warm/baseline of each figure.

Memory: mr's referral cache cleared, mr's VmRSS (``/proc/PID/status``) read, then one EID
(``site::4``) of every site resolved through mr at ``--rate`` requests a second in total,
answered ones counted (a request unanswered after 2 s is sent again, 3 tries), then the referral
cache's entries (``referral-cache`` listing) and the DDT counters of ``stats``, and VmRSS again:
the growth, and bytes per cached referral.  Then, each in a fresh interpreter of its own (no
root needed: ``--in-process-only`` does this alone), :class:`lispd.ddt.cache.ReferralCache` filled
with the same referrals as mr's (one node referral per child /34, one MS referral per Map-Server
/36, one per site /48, as :class:`lispd.ddt.resolver.DdtResolver` puts them): ``tracemalloc``'s
count of what it allocated (and the 8 lines that allocated most, per entry), the RSS growth (C
allocations too), and a lookup's time; with the cache's own table backend and with ``pure``.

Rate: mr rate-limits ECMs to 100 a second per source address (burst 200), so requests go out
from ``--sources`` (8) addresses in turn, each at most ``--rate / --sources`` a second in the bulk
phase and 40 a second in the timed phase (where one request waits for its answer before the
next).  The DDT nodes and the Map-Servers limit DDT requests per source address too (100 a
second, burst 200), and every DDT request comes from mr: ``--rate`` (400) spread over 8
Map-Servers stays under it; over 100 a second per Map-Server they drop the excess
(``ddt-request-rate-limited`` in their counters) and those resolutions time out.

``--quick``: 200 sites under 2 Map-Servers (one under each child), 30 samples (well under a
minute); the full run defaults to 10,000 sites under 8 Map-Servers and 1,000 samples.  Exit status
0 when every request got its answer, 1 when a timed request went unanswered or a site could not
be resolved in the memory phase (after 3 tries); a site whose Map-Register is never acknowledged
stops the run with an error.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import secrets
import select
import selectors
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

REPO = str(Path(__file__).resolve().parent.parent)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from benchmarks.cpuload import OtherLoad  # noqa: E402
from benchmarks.traffic import percentile  # noqa: E402
from lispd.api.client import entries, request  # noqa: E402
from lispd.cli.lig import Target, build_request, match_reply  # noqa: E402
from lispd.lab import Lab, Topology  # noqa: E402
from lispd.wire.errors import WireError  # noqa: E402
from lispd.wire.mapregister import (  # noqa: E402
    TYPE_MAP_NOTIFY,
    MapRegister,
    decode_map_notify,
    encode_signed,
)
from lispd.wire.records import EidRecord, Locator  # noqa: E402

EID_BASE = int(IPv6Address("2001:db8:8000::"))
ROOT_PREFIX = IPv6Network("2001:db8:8000::/33")
CHILD_SHIFT = 128 - 34  # a child DDT node's /34
MS_SHIFT = 128 - 36  # a Map-Server's /36
SITE_SHIFT = 128 - 48  # a site's /48
MAX_PER_CHILD = 4
MAX_SITES_PER_MS = 1 << (48 - 36)
CONTROL_PORT = 4342
REPLY_TIMEOUT = 2.0
BULK_TRIES = 3
REGISTER_TRIES = 5
TIMED_RATE_PER_SOURCE = 40.0  # requests a second from one source address in the timed phase
CLEAR_COMMAND = "clear-referral-cache"
LIST_COMMAND = "referral-cache"
EID_COLD, EID_WARM, EID_BASELINE, EID_MEMORY = 1, 2, 3, 4


# --- the plan: addresses, prefixes, configurations -------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Sites, Map-Servers and the addresses of the lab (see the module docstring)."""

    sites: int
    map_servers: int
    sources: int = 8
    registration_timeout: float = 1800.0
    children: int = 2
    nodes: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not 1 <= self.map_servers <= self.children * MAX_PER_CHILD:
            raise ValueError(f"1 to {self.children * MAX_PER_CHILD} Map-Servers")
        if not self.map_servers <= self.sites <= self.map_servers * MAX_SITES_PER_MS:
            raise ValueError(f"{self.map_servers} to {self.map_servers * MAX_SITES_PER_MS} sites")
        if not 1 <= self.sources <= 60:
            raise ValueError("1 to 60 source addresses")
        names = ["root", *(f"ddt{c + 1}" for c in range(self.children))]
        names += [f"ms{m + 1}" for m in range(self.map_servers)] + ["mr", "msmr"]
        object.__setattr__(self, "nodes", tuple(names))

    # addresses
    def address(self, node: str) -> str:
        """The underlay address of a lispd node (its end of the link to the core)."""
        return f"192.0.2.{4 * (self.nodes.index(node) + 1) + 2}"

    def core_address(self, node: str) -> str:
        """The core's end of ``node``'s link."""
        return f"192.0.2.{4 * (self.nodes.index(node) + 1) + 1}"

    def source(self, k: int) -> str:
        """The client's ``k``-th source address (0-based)."""
        return f"198.51.100.{2 + k}"

    # the DDT tree
    def per_child(self) -> int:
        """Map-Servers under each child DDT node (the last child may have fewer)."""
        return -(-self.map_servers // self.children)

    def ms_child(self, m: int) -> int:
        """The child DDT node (0-based) Map-Server ``m`` sits under."""
        return m // self.per_child()

    def child_prefix(self, c: int) -> IPv6Network:
        """Child ``c``'s authority prefix (a /34)."""
        return IPv6Network((EID_BASE + (c << CHILD_SHIFT), 34))

    def ms_prefix(self, m: int) -> IPv6Network:
        """Map-Server ``m``'s /36."""
        c, local = self.ms_child(m), m % self.per_child()
        return IPv6Network((EID_BASE + (c << CHILD_SHIFT) + (local << MS_SHIFT), 36))

    # sites
    def site_ms(self, i: int) -> int:
        """The Map-Server of site ``i`` (sites are dealt out in turn)."""
        return i % self.map_servers

    def site_prefix(self, i: int) -> IPv6Network:
        """Site ``i``'s /48."""
        base = int(self.ms_prefix(self.site_ms(i)).network_address)
        return IPv6Network((base + ((i // self.map_servers) << SITE_SHIFT), 48))

    def eid(self, i: int, host: int) -> IPv6Address:
        """Address ``host`` of site ``i``."""
        return self.site_prefix(i).network_address + host

    def site_key(self, i: int) -> str:
        """Site ``i``'s shared key."""
        return f"ddt-bench-site-{i}"

    def site_locator(self, i: int) -> IPv4Address:
        """The (unused) RLOC site ``i`` registers."""
        return IPv4Address(f"203.0.113.{1 + i % 250}")

    def sample_sites(self, n: int) -> list[int]:
        """``n`` distinct sites, the Map-Servers taking turns, spread over each one's sites."""
        rounds = -(-n // self.map_servers)
        stride = max(1, (self.sites // self.map_servers) // rounds)
        picked = [k % self.map_servers + self.map_servers * (k // self.map_servers) * stride
                  for k in range(n)]  # fmt: skip
        return [i for i in picked if i < self.sites][:n]

    def ms_sites(self, m: int) -> range:
        """The sites of Map-Server ``m``."""
        return range(m, self.sites, self.map_servers)


def topology(plan: Plan) -> Topology:
    """The core router, a link to it per lispd node and one for the client."""
    topo = Topology()
    core = topo.router("core")
    for name in plan.nodes:
        node = topo.host(name)
        topo.link(core, node, [f"{plan.core_address(name)}/30"], [f"{plan.address(name)}/30"])
        topo.route(node, "default", via=plan.core_address(name))
    client = topo.host("client")
    sources = [f"{plan.source(k)}/26" for k in range(plan.sources)]
    topo.link(core, client, ["198.51.100.1/26"], sources)
    topo.route(client, "default", via="198.51.100.1")
    return topo


def _head(plan: Plan, name: str, roles: Sequence[str], sock: str) -> str:
    return f"""[daemon]
name = "{name}"
roles = {json.dumps(list(roles))}
control-socket = "{sock}"

[underlay]
rlocs = ["{plan.address(name)}"]

[mapping-system]
registration-timeout = {plan.registration_timeout:g}
"""


def _sites(plan: Plan, sites: Sequence[int]) -> str:
    return "".join(
        f'\n[[site]]\nname = "site{i}"\nkey = "{plan.site_key(i)}"\n'
        f'eid-prefixes = [{{ eid-prefix = "{plan.site_prefix(i)}" }}]\n'
        for i in sites
    )


def _delegation(prefix: IPv6Network, kind: str, referrals: Sequence[str]) -> str:
    return (
        f'\n[[ddt-delegation]]\neid-prefix = "{prefix}"\nkind = "{kind}"\n'
        f"referrals = {json.dumps(list(referrals))}\n"
    )


def root_config(plan: Plan, sock: str) -> str:
    """The root DDT node: authoritative for the /33, its halves delegated to the children."""
    text = _head(plan, "root", ["ddt-node"], sock)
    text += f'\n[[ddt-authority]]\neid-prefix = "{ROOT_PREFIX}"\n'
    for c in range(plan.children):
        if any(plan.ms_child(m) == c for m in range(plan.map_servers)):
            child = f"ddt{c + 1}"
            text += _delegation(plan.child_prefix(c), "ddt-node", [plan.address(child)])
    return text


def child_config(plan: Plan, c: int, sock: str) -> str:
    """Child DDT node ``c``: its /34, a /36 delegated to each of its Map-Servers."""
    text = _head(plan, f"ddt{c + 1}", ["ddt-node"], sock)
    text += f'\n[[ddt-authority]]\neid-prefix = "{plan.child_prefix(c)}"\n'
    for m in range(plan.map_servers):
        if plan.ms_child(m) == c:
            text += _delegation(plan.ms_prefix(m), "map-server", [plan.address(f"ms{m + 1}")])
    return text


def ms_config(plan: Plan, m: int, sock: str) -> str:
    """Map-Server ``m``: a DDT leaf with its sites."""
    return _head(plan, f"ms{m + 1}", ["map-server"], sock) + _sites(plan, plan.ms_sites(m))


def mr_config(plan: Plan, sock: str) -> str:
    """The DDT Map-Resolver: no site, resolves from the root."""
    text = _head(plan, "mr", ["map-resolver"], sock)
    return text + f'\n[ddt]\nroots = ["{plan.address("root")}"]\n'


def msmr_config(plan: Plan, sock: str) -> str:
    """The baseline: a Map-Server/Map-Resolver holding every site, no DDT."""
    head = _head(plan, "msmr", ["map-server", "map-resolver"], sock)
    return head + _sites(plan, range(plan.sites))


# --- registration ----------------------------------------------------------------------------


def map_register(plan: Plan, i: int, nonce: int) -> bytes:
    """Site ``i``'s signed Map-Register (proxy reply, want Map-Notify)."""
    prefix = plan.site_prefix(i)
    record = EidRecord(
        eid=prefix.network_address,
        mask_len=prefix.prefixlen,
        locators=(Locator(plan.site_locator(i), 1, 100),),
        ttl=1440,
        authoritative=True,
    )
    message = MapRegister(nonce=nonce, records=(record,), proxy_reply=True, want_map_notify=True)
    return encode_signed(message, plan.site_key(i).encode())


class Registrar:
    """Registers every site with its DDT Map-Server and with msmr, from the client."""

    def __init__(self, plan: Plan, sock: socket.socket, rate: float = 2000.0) -> None:
        self.plan = plan
        self.sock = sock
        self.rate = rate
        self.last: float | None = None
        self.rounds: list[dict[str, Any]] = []

    def targets(self) -> list[tuple[str, int]]:
        """(Map-Server address, site) of every registration, the Map-Servers taking turns."""
        plan = self.plan
        ddt = [(plan.address(f"ms{plan.site_ms(i) + 1}"), i) for i in range(plan.sites)]
        return ddt + [(plan.address("msmr"), i) for i in range(plan.sites)]

    def register_all(self) -> dict[str, Any]:
        """Send every registration until each is acknowledged (or :data:`REGISTER_TRIES`
        rounds passed); the round's figures."""
        started = time.monotonic()
        pending = self.targets()
        sent = 0
        for _ in range(REGISTER_TRIES):
            if not pending:
                break
            nonces: dict[int, tuple[str, int]] = {}
            interval = 1.0 / self.rate
            next_send = time.monotonic()
            for target in pending:
                nonce = secrets.randbits(64)
                nonces[nonce] = target
                self.sock.sendto(map_register(self.plan, target[1], nonce), (target[0], 4342))
                sent += 1
                next_send += interval
                self._drain(nonces, max(0.0, next_send - time.monotonic()))
            deadline = time.monotonic() + 2.0
            while nonces and time.monotonic() < deadline:
                self._drain(nonces, 0.05)
            pending = list(nonces.values())
        self.last = time.monotonic()
        figures = {
            "registrations": 2 * self.plan.sites,
            "sent": sent,
            "unacknowledged": len(pending),
            "seconds": round(self.last - started, 3),
        }
        self.rounds.append(figures)
        return figures

    def _drain(self, nonces: dict[int, tuple[str, int]], wait: float) -> None:
        """Read Map-Notifies for up to ``wait`` seconds (what is queued, at least)."""
        end = time.monotonic() + wait
        while True:
            ready, _, _ = select.select([self.sock], [], [], max(0.0, end - time.monotonic()))
            if not ready:
                return
            data = self.sock.recv(4096)
            if data and data[0] >> 4 == TYPE_MAP_NOTIFY:
                with contextlib.suppress(WireError, ValueError):
                    nonces.pop(decode_map_notify(data).nonce, None)

    def refresh_if_due(self) -> None:
        """Register everything again when a third of the registration timeout has passed."""
        if self.last is not None and time.monotonic() - self.last > (
            self.plan.registration_timeout / 3
        ):
            self.register_all()


# --- requests --------------------------------------------------------------------------------


class Client:
    """Map-Requests from the client's source addresses; each source paced."""

    def __init__(self, plan: Plan, socks: Sequence[socket.socket]) -> None:
        self.plan = plan
        self.socks = list(socks)
        self.ports = [s.getsockname()[1] for s in self.socks]
        self.next_free = [0.0] * len(self.socks)
        self.turn = 0

    def _pick(self, per_source_rate: float) -> int:
        """The next source in turn, once it may send again (sleeps until then)."""
        k = self.turn
        self.turn = (k + 1) % len(self.socks)
        wait = self.next_free[k] - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.next_free[k] = max(time.monotonic(), self.next_free[k]) + 1.0 / per_source_rate
        return k

    def _request(self, k: int, eid: IPv6Address, nonce: int) -> bytes:
        source = ipaddress.ip_address(self.plan.source(k))
        return build_request(Target(0, eid, 128), source, self.ports[k], nonce)

    def resolve(self, resolver: str, eid: IPv6Address) -> float | None:
        """Milliseconds from sending a Map-Request for ``eid`` to ``resolver`` to its Map-Reply
        (None: none within :data:`REPLY_TIMEOUT`)."""
        k = self._pick(TIMED_RATE_PER_SOURCE)
        sock = self.socks[k]
        nonce = secrets.randbits(64)
        payload = self._request(k, eid, nonce)
        sock.setblocking(True)
        started = time.perf_counter()
        sock.sendto(payload, (resolver, CONTROL_PORT))
        deadline = started + REPLY_TIMEOUT
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                return None
            sock.settimeout(left)
            try:
                data = sock.recv(65535)
            except TimeoutError:
                return None
            if match_reply(data, (nonce,)) is not None:
                return (time.perf_counter() - started) * 1e3

    def resolve_many(
        self, resolver: str, eids: Sequence[IPv6Address], rate: float
    ) -> dict[str, Any]:
        """Resolve every EID through ``resolver`` at ``rate`` requests a second in total
        (unanswered ones again after :data:`REPLY_TIMEOUT`, :data:`BULK_TRIES` tries); counts."""
        per_source = rate / len(self.socks)
        selector = selectors.DefaultSelector()
        for k, sock in enumerate(self.socks):
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, k)
        outstanding: dict[int, tuple[int, float, int]] = {}  # nonce -> (eid index, sent, try)
        queue: list[tuple[int, int]] = [(n, 1) for n in range(len(eids))]
        queue.reverse()
        answered = sent = retried = 0
        failed: list[int] = []
        started = time.monotonic()
        try:
            while queue or outstanding:
                now = time.monotonic()
                for nonce, (n, when, tries) in list(outstanding.items()):
                    if now - when > REPLY_TIMEOUT:
                        del outstanding[nonce]
                        if tries < BULK_TRIES:
                            queue.append((n, tries + 1))
                            retried += 1
                        else:
                            failed.append(n)
                k = self.turn
                if queue and self.next_free[k] <= now:
                    self.turn = (k + 1) % len(self.socks)
                    self.next_free[k] = max(now, self.next_free[k]) + 1.0 / per_source
                    n, tries = queue.pop()
                    nonce = secrets.randbits(64)
                    try:
                        self.socks[k].sendto(
                            self._request(k, eids[n], nonce), (resolver, CONTROL_PORT)
                        )
                    except BlockingIOError:
                        queue.append((n, tries))
                        continue
                    outstanding[nonce] = (n, time.monotonic(), tries)
                    sent += 1
                    continue
                wait = self.next_free[self.turn] - now if queue else 0.05
                for key, _events in selector.select(max(0.0, min(wait, 0.05))):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    while True:
                        try:
                            data = sock.recv(65535)
                        except BlockingIOError:
                            break
                        reply = match_reply(data, outstanding)
                        if reply is not None:
                            del outstanding[reply.nonce]
                            answered += 1
        finally:
            selector.close()
        return {
            "eids": len(eids),
            "answered": answered,
            "sent": sent,
            "retried": retried,
            "failed": len(failed),
            "seconds": round(time.monotonic() - started, 3),
            "rate_per_s": rate,
        }


# --- figures ---------------------------------------------------------------------------------


def summary(values: Sequence[float], lost: int) -> dict[str, Any]:
    """Median, p95 and max (ms) of ``values``, the number of samples and of lost requests."""
    if not values:
        return {"samples": 0, "lost": lost, "median_ms": None, "p95_ms": None, "max_ms": None}
    return {
        "samples": len(values),
        "lost": lost,
        "median_ms": round(statistics.median(values), 3),
        "p95_ms": round(percentile(values, 95), 3),
        "max_ms": round(max(values), 3),
        "min_ms": round(min(values), 3),
    }


def ratios(section: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float | None]:
    """``section``'s median, p95 and max over the baseline's."""
    out: dict[str, float | None] = {}
    for key in ("median_ms", "p95_ms", "max_ms"):
        a, b = section.get(key), baseline.get(key)
        out[key.removesuffix("_ms")] = round(a / b, 2) if a is not None and b else None
    return out


def vm_rss(pid: int) -> int:
    """Resident set size of process ``pid`` in bytes (``VmRSS`` of its status)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def ddt_counters(stats: Any) -> dict[str, Any]:
    """The DDT figures of a ``stats`` answer: its ``ddt`` section (what the resolver, DDT node
    or Map-Server leaf did) and, under ``drops``, the drop counters named ``ddt-...`` or
    ``referral-...`` and ``request-rate-limited``."""
    out: dict[str, Any] = dict(stats.get("ddt", {}))
    drops = {
        k: v
        for k, v in stats.get("drops", {}).items()
        if k.startswith(("ddt-", "referral-")) or k == "request-rate-limited"
    }
    if drops:
        out["drops"] = drops
    return out


# --- in process: the referral cache alone ----------------------------------------------------


def _rss_self() -> int:
    return vm_rss(os.getpid())


def referral_cache_memory(plan: Plan, backend: str | None = None) -> dict[str, Any]:
    """The Map-Resolver's :class:`~lispd.ddt.cache.ReferralCache` filled, in this process, with
    what mr's holds after one resolution in every site (as :class:`~lispd.ddt.resolver.
    DdtResolver` puts them): the root's NODE-REFERRAL per child /34, the children's MS-REFERRAL
    per Map-Server /36, and per site the MS-ACK kept as an MS-REFERRAL for its /48, each with a
    freshly decoded prefix, referral set and source address (interned sets, as the cache does).
    ``tracemalloc``'s count of the Python allocations it made, this process's RSS growth (which
    also sees C allocations: a pytricia tree), bytes per entry; and a longest-prefix lookup's
    time.  ``backend`` replaces the tables' backend (None: the cache's own choice)."""
    import gc
    import tracemalloc

    from lispd.ddt.cache import ReferralCache
    from lispd.mapcache.scoped import ScopedTables
    from lispd.wire.mapreferral import ReferralAction

    def addr(text: str) -> IPv4Address:
        return IPv4Address(text)

    texts: list[tuple[str, ReferralAction, str, str]] = []  # made as text: no object freed
    for c in range(plan.children):
        if any(plan.ms_child(m) == c for m in range(plan.map_servers)):
            child, root = plan.address(f"ddt{c + 1}"), plan.address("root")
            texts.append((str(plan.child_prefix(c)), ReferralAction.NODE_REFERRAL, child, root))
    for m in range(plan.map_servers):
        ms, parent = plan.address(f"ms{m + 1}"), plan.address(f"ddt{plan.ms_child(m) + 1}")
        texts.append((str(plan.ms_prefix(m)), ReferralAction.MS_REFERRAL, ms, parent))
    for i in range(plan.sites):
        ms = plan.address(f"ms{plan.site_ms(i) + 1}")
        texts.append((str(plan.site_prefix(i)), ReferralAction.MS_REFERRAL, ms, ms))
    now = 100.0

    def fill() -> ReferralCache:
        cache = ReferralCache(1_000_000)
        if backend is not None:
            cache._tables = ScopedTables(backend=backend)  # the measured variant
        for net_text, action, member, src in texts:
            cache.put(0, IPv6Network(net_text), action, (addr(member),), 1440, addr(src), now)
        return cache

    # RSS first, on memory the process never had (tracemalloc's own records would count too)
    gc.collect()
    rss0 = _rss_self()
    cache = fill()
    gc.collect()
    rss1 = _rss_self()
    del cache
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    cache = fill()
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    by_line = after.compare_to(before, "lineno")
    traced = sum(stat.size_diff for stat in by_line)
    top = [
        {"where": f"{Path(st.traceback[0].filename).name}:{st.traceback[0].lineno}",
         "bytes_per_entry": round(st.size_diff / max(1, len(cache)), 1)}
        for st in sorted(by_line, key=lambda st: -st.size_diff)[:8]
    ]  # fmt: skip
    entries = len(cache)
    probes = [plan.eid(i, EID_MEMORY) for i in range(0, plan.sites, max(1, plan.sites // 2000))]
    started = time.perf_counter()
    for eid in probes:
        cache.lookup(0, eid, now)
    lookup_us = (time.perf_counter() - started) / len(probes) * 1e6
    tables = cache.tables()
    backends = sorted({t.backend for t in (tables.table(0, 6),) if t is not None})
    return {
        "entries": entries,
        "backend": ",".join(backends),
        "tracemalloc_bytes": traced,
        "tracemalloc_bytes_per_entry": round(traced / entries, 1),
        "rss_growth_bytes": rss1 - rss0,
        "rss_bytes_per_entry": round((rss1 - rss0) / entries, 1),
        "lookup_us": round(lookup_us, 2),
        "tracemalloc_top": top,
    }


def in_process_figures(plan: Plan, backend: str) -> dict[str, Any]:
    """:func:`referral_cache_memory` in a fresh interpreter (``backend``: ``default`` or a
    :class:`~lispd.mapcache.PrefixTable` backend), so that its RSS growth is on memory no earlier
    measure freed."""
    argv = [sys.executable, "-m", "benchmarks.ddt", "--in-process-child", backend]
    argv += ["--sites", str(plan.sites), "--map-servers", str(plan.map_servers)]
    proc = subprocess.run(
        argv, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True,
        check=True, timeout=300,
    )  # fmt: skip
    figures: dict[str, Any] = json.loads(proc.stdout)
    return figures


# --- the run ---------------------------------------------------------------------------------


class Bench:
    """The lab, its daemons and the measured phases."""

    def __init__(self, lab: Lab, plan: Plan, args: argparse.Namespace) -> None:
        self.lab, self.plan, self.args = lab, plan, args
        self.socks = {name: str(lab.workdir / f"{name}.sock") for name in plan.nodes}
        self.pids: dict[str, int] = {}

    def ask(self, node: str, command: str, **kwargs: Any) -> Any:
        """One control-socket command to ``node``'s lispd."""
        return request(self.socks[node], command, timeout=30, **kwargs)

    def start(self) -> float:
        """Start every lispd (the DDT tree first, the resolvers last); seconds it took."""
        plan, lab, socks = self.plan, self.lab, self.socks
        configs = [("root", root_config(plan, socks["root"]))]
        configs += [
            (f"ddt{c + 1}", child_config(plan, c, socks[f"ddt{c + 1}"]))
            for c in range(plan.children)
        ]
        configs += [
            (f"ms{m + 1}", ms_config(plan, m, socks[f"ms{m + 1}"])) for m in range(plan.map_servers)
        ]
        configs += [
            ("mr", mr_config(plan, socks["mr"])),
            ("msmr", msmr_config(plan, socks["msmr"])),
        ]
        started = time.monotonic()
        for name, text in configs:
            handle = lab.start_lispd(name, text, timeout=60.0)
            self.pids[name] = handle.pid
        return time.monotonic() - started

    def clear(self) -> None:
        """Empty mr's referral cache."""
        self.ask("mr", CLEAR_COMMAND)

    def cache_entries(self) -> list[Any]:
        """mr's referral cache, every entry."""
        return list(_entries(self.socks["mr"], LIST_COMMAND))

    def run(self) -> dict[str, Any]:
        """Every phase; the JSON report."""
        plan, args = self.plan, self.args
        result: dict[str, Any] = {
            "settings": {
                "quick": args.quick,
                "sites": plan.sites,
                "map_servers": plan.map_servers,
                "ddt_nodes": 1 + plan.children,
                "samples": args.samples,
                "rate_per_s": args.rate,
                "sources": plan.sources,
                "timed_rate_per_source": TIMED_RATE_PER_SOURCE,
                "registration_timeout_s": plan.registration_timeout,
            }
        }
        result["start_s"] = round(self.start(), 3)
        reg_sock = self.lab.socket("client", socket.AF_INET, socket.SOCK_DGRAM)
        req_socks = [
            self.lab.socket("client", socket.AF_INET, socket.SOCK_DGRAM)
            for _ in range(plan.sources)
        ]
        try:
            reg_sock.bind((plan.source(0), 0))
            for k, sock in enumerate(req_socks):
                sock.bind((plan.source(k), 0))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            registrar = Registrar(plan, reg_sock)
            result["registration"] = registrar.register_all()
            if result["registration"]["unacknowledged"]:
                raise RuntimeError(f"sites not registered: {result['registration']}")
            client = Client(plan, req_socks)
            result["timed"] = self.timed(client, registrar)
            result["memory"] = self.memory(client)
            result["registration_rounds"] = registrar.rounds
        finally:
            for sock in (reg_sock, *req_socks):
                sock.close()
        result["counters"] = {name: ddt_counters(self.ask(name, "stats")) for name in plan.nodes}
        return result

    def timed(self, client: Client, registrar: Registrar) -> dict[str, Any]:
        """Cold, warm and baseline samples, interleaved, one site each."""
        plan, mr, msmr = self.plan, self.plan.address("mr"), self.plan.address("msmr")
        samples = min(self.args.samples, plan.sites)
        sites = plan.sample_sites(samples)
        times: dict[str, list[float]] = {"cold": [], "warm": [], "baseline": []}
        lost = dict.fromkeys(times, 0)
        entries_after_cold: list[int] = []
        # one resolution of each kind first (not counted): the paths work, the sockets are warm
        self.clear()
        for resolver, eid in ((mr, plan.eid(sites[0], 9)), (msmr, plan.eid(sites[0], 9))):
            if client.resolve(resolver, eid) is None:
                raise RuntimeError(f"no Map-Reply from {resolver} for {eid}")
        noise = OtherLoad(self.lab.namespaces())
        noise.start()
        started = time.monotonic()
        for i in sites:
            registrar.refresh_if_due()
            self.clear()
            for kind, resolver, host in (
                ("cold", mr, EID_COLD),
                ("warm", mr, EID_WARM),
                ("baseline", msmr, EID_BASELINE),
            ):
                ms = client.resolve(resolver, plan.eid(i, host))
                if ms is None:
                    lost[kind] += 1
                else:
                    times[kind].append(ms)
            if len(entries_after_cold) < 3:
                entries_after_cold.append(len(self.cache_entries()))
        out: dict[str, Any] = {kind: summary(times[kind], lost[kind]) for kind in times}
        out["ratios"] = {
            "cold/baseline": ratios(out["cold"], out["baseline"]),
            "warm/baseline": ratios(out["warm"], out["baseline"]),
        }
        out["referral_entries_after_one_site"] = entries_after_cold
        seconds = time.monotonic() - started
        out["seconds"] = round(seconds, 3)
        # CPU that processes outside the lab took meanwhile (other work on the machine)
        out["other_load"] = {**noise.stop(), "cores": None}
        out["other_load"]["cores"] = round(out["other_load"]["other_cpu_s"] / seconds, 2)
        return out

    def memory(self, client: Client) -> dict[str, Any]:
        """mr's referral cache and RSS after one resolution in every site."""
        plan, pid = self.plan, self.pids["mr"]
        self.clear()
        time.sleep(0.5)
        rss0 = vm_rss(pid)
        bulk = client.resolve_many(
            plan.address("mr"), [plan.eid(i, EID_MEMORY) for i in range(plan.sites)], self.args.rate
        )
        time.sleep(0.5)
        rss1 = vm_rss(pid)
        cache = self.cache_entries()
        grown = rss1 - rss0
        counted = self.ask("mr", "stats").get("ddt", {}).get("referral-cache-entries")
        return {
            "referral_cache_entries_counter": counted,
            "resolutions": bulk,
            "referral_entries": len(cache),
            "referral_entries_by_kind": _kinds(cache),
            "rss_before_bytes": rss0,
            "rss_after_bytes": rss1,
            "rss_growth_bytes": grown,
            "bytes_per_referral": round(grown / len(cache), 1) if cache else None,
        }


def _entries(path: str, command: str) -> Iterator[Any]:
    return entries(path, command, count=1000, timeout=30)


def _kinds(cache: Sequence[Any]) -> dict[str, int]:
    """Entries per kind (``action``/``kind`` field of each entry, when it has one)."""
    counts: dict[str, int] = {}
    for entry in cache:
        kind = "?"
        if isinstance(entry, dict):
            kind = str(entry.get("action", entry.get("kind", "?")))
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def print_report(result: dict[str, Any]) -> None:
    """The figures as a short table."""
    s = result["settings"]
    if "timed" in result:
        print(
            f"DDT: {s['sites']} sites under {s['map_servers']} Map-Servers, "
            f"{s['ddt_nodes']} DDT nodes (root + {s['ddt_nodes'] - 1}); {s['samples']} samples"
        )
        reg = result["registration"]
        print(
            f"registration: {reg['registrations']} Map-Registers acknowledged in {reg['seconds']} s"
        )
        timed = result["timed"]
        print(f"{'resolution':<10} {'median':>8} {'p95':>8} {'max':>8} {'lost':>5}   (ms)")
        for kind in ("cold", "warm", "baseline"):
            t = timed[kind]
            cells = [
                f"{t[k]:>8.3f}" if t[k] is not None else f"{'-':>8}"
                for k in ("median_ms", "p95_ms", "max_ms")
            ]
            print(f"{kind:<10} {' '.join(cells)} {t['lost']:>5}")
        for name, r in timed["ratios"].items():
            print(f"{name:<14} median {r['median']}  p95 {r['p95']}  max {r['max']}")
        load = timed["other_load"]
        print(
            f"meanwhile processes outside the lab used {load['cores']} cores "
            f"(top: {', '.join(f'{c} {s:.1f}s' for c, s in load['top'])})"
        )
        mem = result["memory"]
        bulk = mem["resolutions"]
        print(
            f"memory: {bulk['answered']}/{bulk['eids']} sites resolved in {bulk['seconds']} s "
            f"({bulk['retried']} retried, {bulk['failed']} failed); referral cache "
            f"{mem['referral_entries']} entries {mem['referral_entries_by_kind']}; mr RSS "
            f"+{mem['rss_growth_bytes'] / 1e6:.2f} MB, {mem['bytes_per_referral']} bytes/referral"
        )
    for name, figures in result["in_process"].items():
        print(
            f"in process ({name} backend: {figures['backend']}): {figures['entries']} referrals, "
            f"tracemalloc {figures['tracemalloc_bytes_per_entry']} bytes/entry, RSS "
            f"{figures['rss_bytes_per_entry']} bytes/entry, lookup {figures['lookup_us']} us"
        )


def main(argv: list[str] | None = None) -> int:
    """Build the lab, measure, print (and write JSON when asked); the exit status."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ddt")
    parser.add_argument("--quick", action="store_true", help="200 sites, 2 Map-Servers, 30 samples")
    parser.add_argument("--sites", type=int, help="sites (default 10,000; --quick 200)")
    parser.add_argument("--map-servers", type=int, help="Map-Servers (default 8; --quick 2)")
    parser.add_argument("--samples", type=int, help="cold/warm/baseline samples (1000; --quick 30)")
    parser.add_argument("--rate", type=float, default=400.0, help="requests/s of the memory phase")
    parser.add_argument("--sources", type=int, default=8, help="client source addresses")
    parser.add_argument("--registration-timeout", type=float, default=1800.0)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument(
        "--in-process-only", action="store_true",
        help="only the referral cache measured in this process (no lab, no root needed)",
    )  # fmt: skip
    parser.add_argument("--in-process-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if os.geteuid() != 0 and not (args.in_process_only or args.in_process_child):
        print("benchmarks.ddt needs root (network namespaces)", file=sys.stderr)
        return 2
    args.sites = args.sites or (200 if args.quick else 10_000)
    args.map_servers = args.map_servers or (2 if args.quick else 8)
    args.samples = args.samples or (30 if args.quick else 1000)
    plan = Plan(args.sites, args.map_servers, args.sources, args.registration_timeout)
    started = time.monotonic()
    if args.in_process_child:
        backend = None if args.in_process_child == "default" else args.in_process_child
        print(json.dumps(referral_cache_memory(plan, backend)))
        return 0
    # the referral cache alone, with its own backend and with "pure", each in a fresh process
    in_process = {name: in_process_figures(plan, name) for name in ("default", "pure")}
    if args.in_process_only:
        result: dict[str, Any] = {"settings": {"sites": plan.sites}, "in_process": in_process}
        print_report(result)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(result, fh, indent=2)
        return 0
    with Lab(topology(plan)) as lab:
        result = Bench(lab, plan, args).run()
    result["in_process"] = in_process
    result["elapsed_s"] = round(time.monotonic() - started, 3)
    print_report(result)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    timed = result["timed"]
    failed = any(timed[k]["lost"] for k in ("cold", "warm", "baseline"))
    failed = failed or result["memory"]["resolutions"]["failed"] > 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
