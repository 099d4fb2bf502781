"""The processes :mod:`benchmarks.soak` runs inside the lab's namespaces.

    python -m benchmarks.soak_agents fake-mr --listen ADDR --rule PREFIX=RLOC[/host] ... --stats F
    python -m benchmarks.soak_agents server --echo-port P --sink-port P --stats F
    python -m benchmarks.soak_agents steady --v4 ADDR --v6 ADDR --port P --seconds S --stats F
    python -m benchmarks.soak_agents churn --base ADDR --count N --rate R --port P --seconds S ...

Each one writes its counters as JSON to ``--stats`` (atomically, about once a second and when
it ends), so the harness can sample them while they run and read the final figures after.

``fake-mr``
    A Map-Resolver that answers every ECM'd Map-Request itself (no Map-Server, no
    registrations), built from lispd's own wire codecs: the Map-Reply goes from the listening
    address, UDP 4342, to the request's first ITR-RLOC of the listening family and to the inner
    UDP source port, nonce echoed.  ``--rule PREFIX=RLOC`` answers an EID in PREFIX with PREFIX
    itself; ``--rule PREFIX=RLOC/host`` with the host prefix of the requested EID (/32 or
    /128): every address of PREFIX becomes its own map-cache entry at the ITR.  Longest
    PREFIX wins; an EID no rule covers gets a negative reply (drop) for its host prefix.  All
    records carry ``--ttl`` minutes (default 1, the smallest non-zero TTL).
``server``
    Echoes every datagram arriving on ``--echo-port`` (IPv4 and IPv6) back to its sender and
    counts per family; counts the datagrams of ``--sink-port`` (IPv6) and their distinct
    destination addresses (the harness routes the churn range to this host as local).
``steady``
    Sends one sequence-numbered datagram every ``--interval`` seconds to each of ``--v4`` and
    ``--v6`` (the echo server) for ``--seconds``, then waits ``--drain`` seconds: sent and
    echoed per family, the sequence numbers that never came back (with when they were sent),
    duplicates, round-trip times.
``churn``
    Sends ``--rate`` small datagrams per second to ``--count`` distinct IPv6 destinations
    ``--base`` + 1 .. ``--base`` + count, cycling, for ``--seconds``.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

from lispd.wire.ecm import EncapsulatedControl, decode_ecm
from lispd.wire.errors import WireError
from lispd.wire.mapreply import MapReply, encode_map_reply
from lispd.wire.maprequest import MapRequest
from lispd.wire.records import Action, EidRecord, Locator

LISP_CONTROL_PORT = 4342
STATS_EVERY = 1.0  # seconds between two writes of the stats file
_SEQ = struct.Struct("!IQ")  # sequence number, send time (ns, monotonic)
_IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
_IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)

IpNetwork = IPv4Network | IPv6Network


class _Stop:
    """Set by SIGTERM/SIGINT: the agent finishes its loop and writes its last stats."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, _signum: int, _frame: object) -> None:
        self.requested = True


def write_stats(path: str, stats: dict[str, Any]) -> None:
    """Write ``stats`` as JSON to ``path`` atomically (a reader never sees half a file)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(stats, fh)
    os.replace(tmp, path)


# --- fake Map-Resolver ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """EIDs of ``prefix`` map to ``rloc``; ``per_host``: reply with the EID's host prefix."""

    name: str
    prefix: IpNetwork
    rloc: IPv4Address | IPv6Address
    per_host: bool


def parse_rule(text: str) -> Rule:
    """``PREFIX=RLOC`` or ``PREFIX=RLOC/host``."""
    prefix, _, target = text.partition("=")
    rloc, _, kind = target.partition("/")
    if kind not in ("", "host"):
        raise ValueError(f"rule {text!r}: the suffix after the RLOC can only be /host")
    return Rule(text, ipaddress.ip_network(prefix), ipaddress.ip_address(rloc), kind == "host")


def answer(request: MapRequest, rules: list[Rule], ttl: int) -> tuple[MapReply, str]:
    """The Map-Reply to ``request`` (one record per requested EID-prefix) and the name of the
    rule that answered its first record ("negative" when none covered it)."""
    records = []
    used = "negative"
    for k, wanted in enumerate(request.records):
        eid = wanted.address
        rule = None
        if isinstance(eid, IPv4Address | IPv6Address):
            covering = [r for r in rules if r.prefix.version == eid.version and eid in r.prefix]
            rule = max(covering, key=lambda r: r.prefix.prefixlen, default=None)
        if rule is None or not isinstance(eid, IPv4Address | IPv6Address):
            records.append(EidRecord(eid, wanted.mask_len, ttl=ttl, action=Action.DROP))
            continue
        if k == 0:
            used = rule.name
        locator = Locator(rule.rloc, priority=1, weight=100)
        if rule.per_host:
            record = EidRecord(eid, eid.max_prefixlen, (locator,), ttl=ttl, authoritative=True)
        else:
            net = rule.prefix
            record = EidRecord(
                net.network_address, net.prefixlen, (locator,), ttl=ttl, authoritative=True
            )
        records.append(record)
    return MapReply(nonce=request.nonce, records=tuple(records)), used


def fake_mr(args: argparse.Namespace) -> int:
    """Answer ECM'd Map-Requests until SIGTERM (see the module docstring)."""
    stop = _Stop()
    rules = [parse_rule(r) for r in args.rule]
    listen = ipaddress.ip_address(args.listen)
    family = socket.AF_INET if listen.version == 4 else socket.AF_INET6
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((str(listen), LISP_CONTROL_PORT))
    sock.setblocking(False)
    stats: dict[str, Any] = {"requests": 0, "replies": 0, "refused": {}, "answered": {}}
    last_write = 0.0
    while not stop.requested:
        ready, _, _ = select.select([sock], [], [], 0.2)
        for _ in range(256 if ready else 0):
            try:
                data, (src, _sport, *_rest) = sock.recvfrom(65535)
            except BlockingIOError:
                break
            stats["requests"] += 1
            reason = None
            try:
                ecm = decode_ecm(data)
            except WireError as exc:
                reason = exc.reason
            else:
                reason = _reply(sock, ecm, listen, rules, args.ttl, stats)
            if reason is not None:
                refused = stats["refused"]
                refused[reason] = refused.get(reason, 0) + 1
                print(f"fake-mr: refused a message from {src}: {reason}", file=sys.stderr)
        now = time.monotonic()
        if now - last_write >= STATS_EVERY:
            write_stats(args.stats, stats)
            last_write = now
    write_stats(args.stats, stats)
    return 0


def _reply(
    sock: socket.socket,
    ecm: EncapsulatedControl,
    listen: IPv4Address | IPv6Address,
    rules: list[Rule],
    ttl: int,
    stats: dict[str, Any],
) -> str | None:
    """Send the Map-Reply to one ECM; the reason it was refused, or None."""
    request = ecm.message
    if not isinstance(request, MapRequest):
        return "not-a-map-request"
    if request.probe or request.smr:
        return "probe-or-smr"
    itr = next((a for a in request.itr_rlocs if getattr(a, "version", 0) == listen.version), None)
    if itr is None:
        return "no-itr-rloc-of-our-family"
    reply, used = answer(request, rules, ttl)
    try:
        sock.sendto(encode_map_reply(reply), (str(itr), ecm.sport))
    except OSError as exc:
        return f"send-failed-{exc.errno}"
    stats["replies"] += 1
    answered = stats["answered"]
    answered[used] = answered.get(used, 0) + 1
    return None


# --- server: echo and churn sink -----------------------------------------------------------------


def server(args: argparse.Namespace) -> int:
    """Echo ``--echo-port`` (both families), count ``--sink-port`` (IPv6) until SIGTERM."""
    stop = _Stop()
    echo4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo4.bind(("0.0.0.0", args.echo_port))
    echo6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    echo6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    echo6.bind(("::", args.echo_port))
    sink = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sink.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sink.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVPKTINFO, 1)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    sink.bind(("::", args.sink_port))
    for s in (echo4, echo6, sink):
        s.setblocking(False)
    counts = {"echoed_v4": 0, "echoed_v6": 0, "sink": 0}
    destinations: set[bytes] = set()
    last_write = 0.0

    def snapshot() -> dict[str, Any]:
        return {**counts, "sink_distinct": len(destinations)}

    while not stop.requested:
        ready, _, _ = select.select([echo4, echo6, sink], [], [], 0.2)
        for s in ready:
            for _ in range(256):
                try:
                    if s is sink:
                        _data, anc, _flags, _src = s.recvmsg(2048, socket.CMSG_SPACE(20))
                        counts["sink"] += 1
                        for level, kind, value in anc:
                            if level == socket.IPPROTO_IPV6 and kind == _IPV6_PKTINFO:
                                destinations.add(bytes(value[:16]))
                        continue
                    data, src = s.recvfrom(2048)
                except BlockingIOError:
                    break
                counts["echoed_v4" if s is echo4 else "echoed_v6"] += 1
                with contextlib.suppress(OSError):
                    s.sendto(data, src)
        now = time.monotonic()
        if now - last_write >= STATS_EVERY:
            write_stats(args.stats, snapshot())
            last_write = now
    write_stats(args.stats, snapshot())
    return 0


# --- steady flow ---------------------------------------------------------------------------------


class _Flow:
    """One family's sequence-numbered echo flow."""

    def __init__(self, dst: str, port: int) -> None:
        addr = ipaddress.ip_address(dst)
        self.family = addr.version
        self.sock = socket.socket(
            socket.AF_INET if addr.version == 4 else socket.AF_INET6, socket.SOCK_DGRAM
        )
        self.sock.setblocking(False)
        self.dst = (dst, port)
        self.sent_at: list[float] = []  # send time (s since start) by sequence number
        self.received: set[int] = set()
        self.duplicates = 0
        self.rtts: list[float] = []
        self.send_errors = 0

    def send(self, since_start: float, padding: bytes) -> None:
        seq = len(self.sent_at)
        self.sent_at.append(since_start)
        try:
            self.sock.sendto(_SEQ.pack(seq, time.monotonic_ns()) + padding, self.dst)
        except OSError:
            self.send_errors += 1  # counted as sent (and so as lost when no echo comes)

    def receive(self) -> None:
        while True:
            try:
                data = self.sock.recv(2048)
            except BlockingIOError:
                return
            if len(data) < _SEQ.size:
                continue
            seq, sent_ns = _SEQ.unpack_from(data)
            if seq >= len(self.sent_at):
                continue
            if seq in self.received:
                self.duplicates += 1
                continue
            self.received.add(seq)
            self.rtts.append((time.monotonic_ns() - sent_ns) / 1e6)

    def summary(self, final: bool) -> dict[str, Any]:
        sent = len(self.sent_at)
        out: dict[str, Any] = {
            "sent": sent,
            "received": len(self.received),
            "duplicates": self.duplicates,
            "send_errors": self.send_errors,
        }
        if final:
            lost = [s for s in range(sent) if s not in self.received]
            out["lost"] = len(lost)
            out["lost_at_s"] = [round(self.sent_at[s], 3) for s in lost[:200]]
            rtts = sorted(self.rtts)
            if rtts:
                out["rtt_ms"] = {
                    "median": round(rtts[len(rtts) // 2], 3),
                    "p99": round(rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))], 3),
                    "max": round(rtts[-1], 3),
                }
        return out


def steady(args: argparse.Namespace) -> int:
    """Run the steady flows for ``--seconds``, drain, write the final stats."""
    stop = _Stop()
    flows = {f"v{f.family}": f for f in (_Flow(args.v4, args.port), _Flow(args.v6, args.port))}
    padding = b"\0" * max(0, args.size - _SEQ.size)
    start = time.monotonic()
    next_send = start
    last_write = 0.0
    socks = [f.sock for f in flows.values()]
    while not stop.requested:
        now = time.monotonic()
        if now - start >= args.seconds:
            break
        if now >= next_send:
            for flow in flows.values():
                flow.send(now - start, padding)
            next_send += args.interval
            if next_send < now:  # descheduled for longer than an interval: no burst
                next_send = now + args.interval
        ready, _, _ = select.select(socks, [], [], max(0.0, min(next_send - now, 0.2)))
        for flow in flows.values():
            if flow.sock in ready:
                flow.receive()
        if now - last_write >= STATS_EVERY:
            write_stats(args.stats, {k: f.summary(False) for k, f in flows.items()})
            last_write = now
    drain_until = time.monotonic() + args.drain
    while time.monotonic() < drain_until and any(
        len(f.received) < len(f.sent_at) for f in flows.values()
    ):
        ready, _, _ = select.select(socks, [], [], 0.1)
        for flow in flows.values():
            if flow.sock in ready:
                flow.receive()
    write_stats(args.stats, {k: f.summary(True) for k, f in flows.items()})
    return 0


# --- churn ---------------------------------------------------------------------------------------


def churn(args: argparse.Namespace) -> int:
    """Send ``--rate`` datagrams/s to ``--count`` destinations in turn for ``--seconds``."""
    stop = _Stop()
    base = int(IPv6Address(args.base))
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 21)
    payload = b"churn".ljust(args.size, b"\0")
    start = time.monotonic()
    sent = errors = 0
    last_write = 0.0
    while not stop.requested:
        now = time.monotonic()
        elapsed = now - start
        if elapsed >= args.seconds:
            break
        due = int(elapsed * args.rate)
        while sent < due:
            dst = str(IPv6Address(base + 1 + sent % args.count))
            try:
                sock.sendto(payload, (dst, args.port))
            except OSError:
                errors += 1
            sent += 1
        if now - last_write >= STATS_EVERY:
            write_stats(args.stats, {"sent": sent, "errors": errors, "cycles": sent / args.count})
            last_write = now
        time.sleep(0.01)
    write_stats(args.stats, {"sent": sent, "errors": errors, "cycles": sent / args.count})
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one agent."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak_agents")
    sub = parser.add_subparsers(dest="agent", required=True)
    p = sub.add_parser("fake-mr")
    p.add_argument("--listen", required=True)
    p.add_argument("--rule", action="append", default=[], metavar="PREFIX=RLOC[/host]")
    p.add_argument("--ttl", type=int, default=1, help="record TTL in minutes (default 1)")
    p.add_argument("--stats", required=True)
    p = sub.add_parser("server")
    p.add_argument("--echo-port", type=int, required=True)
    p.add_argument("--sink-port", type=int, required=True)
    p.add_argument("--stats", required=True)
    p = sub.add_parser("steady")
    p.add_argument("--v4", required=True)
    p.add_argument("--v6", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--interval", type=float, default=0.05)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--drain", type=float, default=3.0)
    p.add_argument("--stats", required=True)
    p = sub.add_parser("churn")
    p.add_argument("--base", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--stats", required=True)
    args = parser.parse_args(argv)
    agents = {"fake-mr": fake_mr, "server": server, "steady": steady, "churn": churn}
    return agents[args.agent](args)


if __name__ == "__main__":
    sys.exit(main())
