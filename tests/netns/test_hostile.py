"""Hostile traffic at every LISP node while real traffic flows through them.

An ``attacker`` host hangs off the core router (192.0.2.66/30; 192.0.2.80/28, the addresses it
spoofs, is routed to it too, so replies to them can be seen on its link).  From a UDP socket
and a raw socket opened inside its namespace it sends, while a ping every 10 ms and one TCP
transfer after another cross between two sites:

- crafted packets at the data ports (truncated, oversized, wrong inner IP version,
  wrong instance-ID, non-local EID, encrypted, TTL expiring, control-in-the-data-path garbage)
  and at the control ports (truncated, unknown type, bad LCAF, wrong IP version inside an
  ECM, oversized; Map-Registers with a wrong key, without authentication, for unknown
  prefixes, and replays of captured real ones from the attacker's and a spoofed address;
  unsolicited Map-Replies and Map-Notifies with random nonces claiming the sites' EIDs at the
  attacker's RLOC, also spoofed from the Map-Server or the other xTR; replayed Map-Notifies);
- floods, bounded to :data:`FLOOD_SECONDS`: Info-Requests at the Map-Server and NAT
  keepalives at the RTR (:data:`INFO_FLOOD_PPS` a second each), forged Map-Registers at the
  Map-Server (a third of that), and Map-Requests from one spoofed source, naming it as
  ITR-RLOC, at the Map-Server/Map-Resolver and at an ETR (:data:`REQUEST_FLOOD_PPS`).

Checked: the ping loses under 1 % and every TCP transfer arrives with the sender's SHA-256;
every crafted packet is counted under its named drop reason at its target (exactly when that
target's kernel dropped no UDP datagram meanwhile — /proc/net/snmp InErrors, RcvbufErrors,
MemErrors — else at least what the kernel let through); every flood packet is either answered
(the replies are seen by the attacker) or counted as rate-limited; one source gets at most the
rate limit's worth of replies, none over :data:`MAX_REPLY_RATIO` times its request; no packet
from the attacker's inner source reaches a site; each daemon logs a few lines, not one per
packet; its RSS grows by less than :data:`MAX_RSS_GROWTH_KIB`; nothing unauthenticated changes
state (the Map-Server's registrations, the map-caches, the RTR's bindings of the real xTRs).

What is exact and what is a bound: the per-reason counts and the flood accounting are exact
whenever the target's kernel reports no UDP receive drop (it reported none in every run so
far); an RTR counts every keepalive, including the real xTRs' (a round a second each, one
keepalive per EID-prefix), so that count has the real ones as slack; reply rates include the
token bucket's burst.

Two worlds: :func:`lispd.lab.nat_topology` (RTR behind a 1:1 NAT, xTRs behind masquerading
NATs, reached here through their pinhole toward the RTR with the RTR's address spoofed, and
the MS/MR answering Info-Requests and proxy-replying for the NATed sites) and
:func:`lispd.lab.mapping_system_topology` (xTRs reachable directly: their ETR and ITR paths,
and Map-Requests at an ETR).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from ipaddress import IPv4Address, ip_address, ip_network
from typing import Any

import pytest

from lispd.api.client import request
from lispd.lab import Capture, DaemonHandle, Lab, Topology, mapping_system_topology, nat_topology
from lispd.tools.pcap import ip_payload
from lispd.wire.address import InstanceIdAddress
from lispd.wire.control import decode_control
from lispd.wire.ecm import EncapsulatedControl, encode_ecm
from lispd.wire.errors import WireError
from lispd.wire.info import InfoMessage, encode_info
from lispd.wire.ip import (
    PROTO_UDP,
    IPv4Header,
    UdpDatagram,
    build_udp_datagram,
    parse_ip_header,
    parse_udp_datagram,
)
from lispd.wire.mapregister import (
    MapNotify,
    MapRegister,
    encode_map_register,
    encode_signed,
)
from lispd.wire.mapreply import MapReply, encode_map_reply
from lispd.wire.maprequest import MapRequest, encode_map_request
from lispd.wire.records import EidPrefix, EidRecord, Locator
from tests.netns import common, test_controlplane, test_rtr_nat
from tests.netns.common import wait_for

pytestmark = pytest.mark.netns

ATTACKER = "attacker"
ATTACKER_V4 = "192.0.2.66"
ATTACKER_GW = "192.0.2.65"
SPOOF_NET = "192.0.2.80/28"  # routed to the attacker: its spoofed sources
SPOOFED = "192.0.2.81"  # a spoofed source of replays and keepalives
VICTIM = "192.0.2.90"  # the one spoofed source (and ITR-RLOC) of the Map-Request floods
ATTACKER_SPACE = ip_network("192.0.2.64/27")  # any of these in a table is poison
ATTACK_PORT = 4342  # the attacker's own UDP socket (replies to it are counted)

PING_INTERVAL = 0.01
MAX_RSS_GROWTH_KIB = 16 * 1024
FLOOD_SECONDS = 3.0
INFO_FLOOD_PPS = 3000  # Info-Requests a second at the Map-Server, and keepalives at the RTR
REQUEST_FLOOD_PPS = 1000  # Map-Requests a second from the one spoofed source
MAX_REPLY_RATIO = 1.5  # reply bytes / request bytes (IP packets): no amplification
MAX_LOG_LINES = 100  # lines a daemon may log during an attack of ~10,000 packets

# The rate limits the checks assume: lispd/control/responder.py (ETR), infoserver.py
# (Info-Replies), mapresolver.py (Map-Resolver), all per source address.
ETR_RATE, ETR_BURST = 10.0, 20.0
INFO_RATE, INFO_BURST = 10.0, 20.0
MR_RATE, MR_BURST = 100.0, 200.0

_CLONE_NEWNET = 0x40000000
RNG = random.Random(4342)


# --- the attacker ----------------------------------------------------------------------------


def attach_attacker(topo: Topology, core: str) -> None:
    """Hang the attacker host off ``core`` (documentation addresses only, nothing beyond)."""
    attacker = topo.host(ATTACKER)
    topo.link(core, attacker, [f"{ATTACKER_GW}/30"], [f"{ATTACKER_V4}/30"])
    topo.route(attacker, "default", via=ATTACKER_GW)
    topo.route(core, SPOOF_NET, via=ATTACKER_V4)


def spoofed(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    """An IPv4/UDP packet from any source (the raw socket sends it as it is)."""
    header = IPv4Header(IPv4Address(src), IPv4Address(dst), dont_fragment=False)
    return build_udp_datagram(UdpDatagram(header, sport, dport, payload))


@dataclass
class Attacker:
    """Sends from the attacker namespace and keeps the books: packets per kind, and per
    (target node, drop reason) the packets that reason must count there."""

    udp: socket.socket
    raw: socket.socket
    sent: Counter[str] = field(default_factory=Counter)
    expect: Counter[tuple[str, str]] = field(default_factory=Counter)

    @classmethod
    def open(cls, lab: Lab) -> Attacker:
        """Its own UDP socket (192.0.2.66:4342) and a raw IPv4 socket (any source)."""
        udp = lab.socket(ATTACKER, socket.AF_INET, socket.SOCK_DGRAM)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        udp.bind((ATTACKER_V4, ATTACK_PORT))
        udp.setblocking(False)
        raw = lab.socket(ATTACKER, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        return cls(udp, raw)

    def close(self) -> None:
        """Close both sockets."""
        self.udp.close()
        self.raw.close()

    def send(
        self,
        kind: str,
        target: str | None,
        reason: str,
        dst: str,
        dport: int,
        payload: bytes,
        *,
        src: str | None = None,
        sport: int = ATTACK_PORT,
    ) -> None:
        """Send ``payload`` to ``dst``:``dport`` (from ``src``:``sport`` over the raw socket,
        else from the attacker's own socket) and note that ``target`` must count it under
        ``reason`` (``a|b``: under one of them, which depends on a rate limit; no target: a
        flood packet, accounted for by its test)."""
        if src is None:
            self.udp.sendto(payload, (dst, dport))
        else:
            self.raw.sendto(spoofed(src, sport, dst, dport, payload), (dst, 0))
        self.sent[kind] += 1
        if target is not None:
            self.expect[(target, reason)] += 1

    def replies(self) -> dict[str, list[int]]:
        """The UDP payload sizes of what came back to the attacker's own socket, by source."""
        got: dict[str, list[int]] = {}
        while True:
            try:
                data, addr = self.udp.recvfrom(65535)
            except BlockingIOError:
                return got
            got.setdefault(addr[0], []).append(len(data))


class Pacer:
    """Sleeps so that :meth:`tick` returns at most ``rate`` times a second."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.start = time.monotonic()
        self.count = 0

    def tick(self) -> None:
        """One more event; sleep while ahead of the schedule."""
        self.count += 1
        ahead = self.count / self.rate - (time.monotonic() - self.start)
        if ahead > 0.002:
            time.sleep(ahead)


# --- crafted packets (lispd's own encoders, then bytes broken on purpose) --------------------


def nonce64() -> int:
    """A random 64-bit nonce (no daemon is waiting for it)."""
    return RNG.getrandbits(64)


def data_header(iid: int = 0, *, flags: int = 0x88) -> bytes:
    """A LISP data header (N and I bits unless ``flags`` says otherwise), random nonce."""
    return struct.pack("!II", flags << 24 | RNG.getrandbits(24), (iid & 0xFFFFFF) << 8)


def inner_v4(src: str, dst: str, size: int = 64, ttl: int = 64) -> bytes:
    """A well-formed inner IPv4/UDP packet of ``size`` bytes."""
    header = IPv4Header(IPv4Address(src), IPv4Address(dst), ttl=ttl)
    return build_udp_datagram(UdpDatagram(header, 40000, 9, bytes(size - 28)))


def eid_record(prefix: str, rloc: str) -> EidRecord:
    """``prefix`` mapped to ``rloc`` (the attacker's: what a poisoner wants installed)."""
    net = ip_network(prefix)
    return EidRecord(net.network_address, net.prefixlen, (Locator(ip_address(rloc)),))


def map_request(eid: str, itr_rloc: str, *, smr: bool = False) -> bytes:
    """A plain Map-Request for the host ``eid``, answered to ``itr_rloc``."""
    addr = ip_address(eid)
    msg = MapRequest(
        nonce=nonce64(),
        records=(EidPrefix(addr, addr.max_prefixlen),),
        itr_rlocs=(ip_address(itr_rloc),),
        source_eid=addr if smr else IPv4Address(0),
        smr=smr,
    )
    return encode_map_request(msg)


def ecm_request(eid: str, itr_rloc: str) -> bytes:
    """An ECM'd Map-Request for the host ``eid`` (what an ITR sends its Map-Resolver)."""
    inner = IPv4Header(IPv4Address(itr_rloc), IPv4Address(eid))
    msg = MapRequest(
        nonce=nonce64(),
        records=(EidPrefix(ip_address(eid), 32),),
        itr_rlocs=(ip_address(itr_rloc),),
    )
    return encode_ecm(EncapsulatedControl(inner, ATTACK_PORT, 4342, msg))


def map_reply(prefix: str, rloc: str, *, probe: bool = False) -> bytes:
    """An unsolicited Map-Reply (random nonce) mapping ``prefix`` to ``rloc``."""
    return encode_map_reply(
        MapReply(nonce=nonce64(), records=(eid_record(prefix, rloc),), probe=probe)
    )


def map_register(prefix: str, rloc: str, key: bytes, *, key_id: int = 2) -> bytes:
    """A Map-Register of ``prefix`` at ``rloc`` signed with ``key`` (key-id 0: unsigned)."""
    msg = MapRegister(
        nonce=nonce64(), records=(eid_record(prefix, rloc),), key_id=key_id, want_map_notify=True
    )
    return encode_signed(msg, key) if key_id else encode_map_register(msg)


def map_notify(prefix: str, rloc: str, key: bytes, *, ack: bool = False) -> bytes:
    """An unsolicited Map-Notify (or -Ack) mapping ``prefix`` to ``rloc``, signed with ``key``."""
    return encode_signed(
        MapNotify(nonce=nonce64(), records=(eid_record(prefix, rloc),), ack=ack), key
    )


def info_request() -> bytes:
    """An unauthenticated Info-Request (what NAT discovery and keepalives carry)."""
    return encode_info(InfoMessage(nonce=nonce64()))


def info_reply() -> bytes:
    """An Info-Reply nobody asked for."""
    return encode_info(InfoMessage(nonce=nonce64(), reply=True))


def bad_lcaf_request(eid: str) -> bytes:
    """A Map-Request whose EID is an instance-ID LCAF whose length runs past the end."""
    good = encode_map_request(
        MapRequest(
            nonce=nonce64(),
            records=(EidPrefix(InstanceIdAddress(7, ip_address(eid)), 32),),
            itr_rlocs=(ip_address(ATTACKER_V4),),
        )
    )
    at = good.rindex(struct.pack("!H", 16387))  # the record's LCAF: AFI, rsvd, flags, type, ...
    return good[: at + 6] + struct.pack("!H", 200) + good[at + 8 :]


def wrong_version_ecm(eid: str) -> bytes:
    """An ECM whose inner IP header says version 5."""
    good = ecm_request(eid, ATTACKER_V4)
    return good[:4] + bytes([0x55]) + good[5:]


def decoder_reason(payload: bytes) -> str:
    """Why lispd's decoder refuses ``payload`` (the daemon counts ``control-<reason>``)."""
    try:
        decode_control(payload)
    except WireError as exc:
        return exc.reason
    raise AssertionError(f"{payload.hex()} decodes")


@dataclass(frozen=True)
class Shot:
    """One kind of crafted packet: what it is, where it goes, and which drop reason its
    ``target`` node must count it under (``a|b``: one of them, depending on a rate limit).
    ``payload`` is bytes, or a function making fresh ones (new nonces) for every send."""

    kind: str
    target: str
    reason: str
    dst: str
    payload: bytes | Callable[[], bytes]
    dport: int = 4342
    src: str | None = None  # spoofed source (raw socket); None: the attacker's own socket
    sport: int = ATTACK_PORT


def fire(attacker: Attacker, shots: list[Shot], reps: int) -> None:
    """Send every shot ``reps`` times, round after round, 20 ms apart."""
    for _ in range(reps):
        for s in shots:
            payload = s.payload() if callable(s.payload) else s.payload
            attacker.send(
                s.kind, s.target, s.reason, s.dst, s.dport, payload, src=s.src, sport=s.sport
            )
        time.sleep(0.02)


def control_garbage(target: str, dst: str, eid: str) -> list[Shot]:
    """Malformed control messages at ``dst``:4342, counted ``control-<decoder reason>``."""
    kinds = [
        ("control: empty", b""),
        ("control: truncated", map_request(eid, ATTACKER_V4)[:9]),
        ("control: unknown type 6", bytes([0x60]) + bytes(27)),
        ("control: unknown type 15", bytes([0xF0]) + bytes(27)),
        ("control: bad LCAF", bad_lcaf_request(eid)),
        ("control: wrong IP version in ECM", wrong_version_ecm(eid)),
        ("control: oversized (8 KB)", map_request(eid, ATTACKER_V4) + os.urandom(8000)),
    ]
    return [
        Shot(kind, target, "control-" + (decoder_reason(p) if p else "truncated"), dst, p)
        for kind, p in kinds
    ]


def data_garbage(
    target: str,
    dst: str,
    dport: int,
    *,
    local_eid: str | None,
    foreign_eid: str,
    src: str | None = None,
    sport: int = ATTACK_PORT,
) -> list[Shot]:
    """Malformed or misdirected data packets at ``dst``:``dport`` (inner source
    :data:`VICTIM`).  ``local_eid`` is an EID of the target's (None: the target is an RTR,
    whose drop reasons start ``rtr-``), ``foreign_eid`` one that is not.  With a spoofed
    ``src`` the packets over 1400 bytes are left out: the kernel does not fragment raw ones."""
    hdr, foreign = data_header, inner_v4(VICTIM, foreign_eid)
    oversized = hdr() + inner_v4(VICTIM, foreign_eid, 1500)[:20] + os.urandom(8000)
    kinds = [
        ("data: empty", "truncated-header", b""),
        ("data: truncated header", "truncated-header", hdr()[:5]),
        ("data: wrong inner IP version", "bad-inner-header", hdr() + b"\x55" * 40),
        ("data: truncated inner", "bad-inner-header", hdr() + foreign[:30]),
        ("data: oversized (8 KB)", "bad-inner-header", oversized),
        ("data: encrypted (K bits)", "encrypted-unsupported", hdr(flags=0x8A) + foreign),
    ]
    if local_eid is not None:
        kinds += [
            (
                "data: wrong instance-ID",
                "wrong-instance-id",
                hdr(0x5EED) + inner_v4(VICTIM, local_eid),
            ),
            ("data: non-local EID", "not-our-eid", hdr() + foreign),
        ]
    else:  # an RTR forwards whatever it can map (so LISP has it): TTL 1 it must refuse
        kinds += [
            ("data: TTL expiring", "ttl-exceeded", hdr() + inner_v4(VICTIM, foreign_eid, ttl=1))
        ]
    prefix = "" if local_eid is not None else "rtr-"
    control = hdr(0xFFFFFF)
    shots = [Shot(k, target, prefix + r, dst, p, dport, src, sport) for k, r, p in kinds]
    shots += [
        Shot(k, target, r, dst, p, dport, src, sport)
        for k, r, p in (
            ("data-control: unknown type", "data-control-unsupported-type", control + b"\xf0" * 21),
            ("data-control: truncated", "data-control-truncated", control + info_request()[:10]),
            (
                "data-control: Map-Reply",
                "data-control-unexpected",
                control + map_reply(foreign_eid + "/32", ATTACKER_V4),
            ),
        )
    ]
    return [s for s in shots if src is None or len(s.payload) <= 1400]  # type: ignore[arg-type]


# --- measuring the targets -------------------------------------------------------------------


def udp_kernel_drops(lab: Lab, node: str) -> int:
    """UDP datagrams ``node``'s kernel has dropped (receive buffer full, checksum, memory)."""
    text = lab.run(node, "cat", "/proc/net/snmp").stdout
    names, values = [line.split()[1:] for line in text.splitlines() if line.startswith("Udp:")]
    row = dict(zip(names, map(int, values), strict=True))
    return row["InErrors"] + row["RcvbufErrors"] + row.get("MemErrors", 0)


def rss_kib(daemon: DaemonHandle) -> int:
    """The daemon's resident set size (VmRSS) in KiB."""
    with open(f"/proc/{daemon.pid}/status") as f:
        match = re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.MULTILINE)
    assert match is not None
    return int(match.group(1))


@dataclass
class Reading:
    """One node's counters at one moment."""

    drops: Counter[str]
    packets: Counter[str]
    kernel: int  # UDP datagrams its kernel dropped
    rss: int  # KiB
    log_lines: int


@dataclass
class World:
    """A running lab with its daemons, the attacker attached, and the control messages
    captured at the Map-Server while the sites registered."""

    lab: Lab
    plan: Any
    daemons: dict[str, DaemonHandle] = field(default_factory=dict)
    captured: list[tuple[str, str, bytes]] = field(default_factory=list)  # (src, dst, payload)

    def sock(self, node: str) -> str:
        return str(self.lab.workdir / f"{node}.sock")

    def ask(self, node: str, command: str) -> Any:
        return request(self.sock(node), command)

    def read(self) -> dict[str, Reading]:
        """Every daemon's counters, kernel UDP drops and RSS."""
        out = {}
        for node, daemon in self.daemons.items():
            stats = self.ask(node, "stats")
            out[node] = Reading(
                Counter(stats["drops"]),
                Counter(stats["packets"]),
                udp_kernel_drops(self.lab, node),
                rss_kib(daemon),
                log_lines(daemon),
            )
        return out

    def messages(self, msg_type: int) -> list[tuple[str, str, bytes]]:
        """The captured control messages of ``msg_type`` (3 Map-Register, 4 Map-Notify)."""
        return [m for m in self.captured if m[2] and m[2][0] >> 4 == msg_type]

    def settle(self, quiet: float = 0.5, timeout: float = 10.0) -> dict[str, Reading]:
        """Wait until no daemon's drop counters moved for ``quiet`` seconds; that reading."""
        last = self.read()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(quiet)
            now = self.read()
            if all(now[n].drops == last[n].drops for n in now):
                return now
            last = now
        return last


@contextlib.contextmanager
def running(
    plan: Any, core: str, ms: str, ms_if: str, start: Callable[[World], None]
) -> Iterator[World]:
    """Build ``plan`` with the attacker on ``core``, run ``start`` (which starts the daemons and
    waits until the sites are registered) while capturing UDP 4342 at ``ms`` on ``ms_if``, and
    stop every daemon cleanly at the end."""
    attach_attacker(plan.topology, core)
    with Lab(plan.topology) as lab:
        w = World(lab, plan)
        with lab.capture(ms, ms_if, "udp port 4342") as cap:
            start(w)
        w.captured = [(src, dst, payload) for src, _sp, dst, _dp, _n, payload in udp_packets(cap)]
        try:
            yield w
        finally:
            for daemon in w.daemons.values():
                assert daemon.stop() == 0, daemon.log_tail()


def udp_packets(cap: Capture) -> list[tuple[str, int, str, int, int, bytes]]:
    """(src, sport, dst, dport, IP length, UDP payload) of the captured IPv4/UDP packets."""
    out = []
    for pkt in cap.ip_packets():
        try:
            ip, _hlen, end = parse_ip_header(pkt)
            if not isinstance(ip, IPv4Header) or ip.protocol != PROTO_UDP:
                continue
            dg = parse_udp_datagram(pkt[:end])
        except (ValueError, WireError):
            continue
        out.append((str(ip.src), dg.sport, str(ip.dst), dg.dport, end, dg.payload))
    return out


def reply_span(cap: Capture, src: str) -> float:
    """Seconds from the first to the last IPv4 packet from ``src`` in the capture: the time
    the answering rate limiter was at work (it can still be draining its socket's backlog
    after the sender stopped)."""
    times = []
    for pkt in cap.packets():
        ip = ip_payload(pkt.linktype, pkt.frame)
        if ip is None:
            continue
        try:
            header, _hlen, _end = parse_ip_header(ip)
        except (ValueError, WireError):
            continue
        if isinstance(header, IPv4Header) and str(header.src) == src:
            times.append(pkt.timestamp)
    return max(times) - min(times) if times else 0.0


# --- checks and figures ----------------------------------------------------------------------


def print_sent(attacker: Attacker) -> None:
    """Packets sent per kind."""
    print(f"    sent by the attacker, {sum(attacker.sent.values())} packets:")
    for kind, n in sorted(attacker.sent.items()):
        print(f"      {n:6d}  {kind}")


def check_accounting(
    attacker: Attacker, before: dict[str, Reading], after: dict[str, Reading]
) -> None:
    """Every crafted packet counted under its named reason at its target: exactly when the
    target's kernel dropped no UDP datagram meanwhile, else at least what got through."""
    problems = []
    print("    crafted packets, counted at their target (sent -> counted):")
    for (node, reasons), sent in sorted(attacker.expect.items()):
        delta = after[node].drops - before[node].drops
        counted = sum(delta[r] for r in reasons.split("|"))
        kernel = after[node].kernel - before[node].kernel
        note = "" if kernel == 0 else f" (its kernel dropped {kernel} UDP datagrams)"
        print(f"      {node:6} {reasons:46} {sent:4d} -> {counted}{note}")
        if not sent - kernel <= counted <= sent:
            problems.append(f"{node} {reasons}: sent {sent}, counted {counted}, kernel {kernel}")
    assert not problems, problems
    expected = {(node, r) for node, reasons in attacker.expect for r in reasons.split("|")}
    for node in after:
        others = {
            r: n
            for r, n in (after[node].drops - before[node].drops).items()
            if (node, r) not in expected
        }
        print(f"      {node:6} other drops meanwhile: {others or 'none'}")


def check_rss(before: dict[str, Reading], after: dict[str, Reading]) -> None:
    """Each daemon's RSS before and after, and its growth bounded."""
    for node in before:
        grew = after[node].rss - before[node].rss
        print(f"    RSS {node}: {before[node].rss} -> {after[node].rss} KiB ({grew:+d})")
        assert grew < MAX_RSS_GROWTH_KIB, f"{node} grew {grew} KiB"


def check_flood_replies(
    what: str,
    sent: int,
    seconds: float,
    replies: list[int],
    limited: int,
    kernel: int,
    request_len: int,
    rate: float,
    burst: float,
) -> None:
    """A Map-Request flood from one source: every request answered (``replies``: IP lengths
    of what came back) or counted ``limited``; at most ``burst`` + ``rate`` x ``seconds``
    answered (``seconds``: the longer of the flood and the replies' span, as the limiter may
    still be draining its backlog when the sender stops); no reply larger than
    :data:`MAX_REPLY_RATIO` times its request (IP bytes)."""
    answered = len(replies)
    largest = max(replies, default=0)
    print(
        f"    Map-Request flood at {what} from {VICTIM} (spoofed, itself the ITR-RLOC): "
        f"{sent} in {seconds:.1f} s ({sent / seconds:.0f}/s): answered {answered} "
        f"({answered / seconds:.1f}/s; limit {rate:.0f}/s, burst {burst:.0f}), rate-limited "
        f"{limited}, kernel drops {kernel}; request {request_len} bytes, replies "
        f"{min(replies, default=0)}-{largest} bytes: largest reply / request "
        f"{largest / request_len:.2f}, all replies / all requests "
        f"{sum(replies) / (sent * request_len):.3f}"
    )
    assert sent - kernel <= answered + limited <= sent
    assert answered <= burst + rate * seconds + 1
    assert largest <= MAX_REPLY_RATIO * request_len


def check_no_leaks(captures: list[Capture]) -> None:
    """Nothing with the attacker's inner source came out of an xTR into its site (captures
    at the xTRs' site interfaces)."""
    for cap in captures:
        assert not cap.packets(), f"attack packets reached a site: {cap.path}"
    print(f"    packets from the attacker's inner source {VICTIM} delivered into a site: 0")


def log_lines(daemon: DaemonHandle) -> int:
    """Lines the daemon has logged so far (at debug level, as the tests run it)."""
    return len(daemon.log_text().splitlines())


def check_logs(w: World, before: dict[str, Reading], after: dict[str, Reading]) -> None:
    """The attack left a few log lines at each daemon, not one per packet."""
    for node in before:
        grew = after[node].log_lines - before[node].log_lines
        print(f"    log lines written by {node} during the attack: {grew}")
        assert grew <= MAX_LOG_LINES, w.daemons[node].log_tail()


def mappings(cache: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """A map-cache without its clock: (prefix, action, RLOCs)."""
    return {
        (e["eid-prefix"], e["action"], ",".join(r["address"] for r in e["rlocs"])) for e in cache
    }


def poisoned(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Map-cache entries with an RLOC in the attacker's space."""
    return [
        e for e in entries if any(ip_address(r["address"]) in ATTACKER_SPACE for r in e["rlocs"])
    ]


def registrations(w: World, ms: str) -> list[tuple[Any, ...]]:
    """The Map-Server's registrations without the clock: (site, instance-ID, prefix,
    registered-by address, RLOCs, proxy-reply)."""
    return sorted(
        (
            r["site"],
            r["instance-id"],
            r["eid-prefix"],
            r["registered-by"].rsplit(":", 1)[0],
            tuple(r["rlocs"]),
            r["proxy-reply"],
        )
        for r in w.ask(ms, "site")
    )


@contextlib.contextmanager
def legitimate_traffic(
    lab: Lab, src_host: str, dst_host: str, dst_addr: str, seconds: float
) -> Iterator[dict[str, Any]]:
    """A ping every 10 ms for ``seconds`` and one checksummed 1 MB TCP transfer after
    another (:func:`common.transfer`) from ``src_host`` to ``dst_addr`` during the ``with``
    body; afterwards the dict holds ``sent``, ``received`` and ``transfers``."""
    count = int(seconds / PING_INTERVAL)
    pinger = lab.popen(
        src_host,
        [
            sys.executable,
            "-m",
            "lispd.lab.pinger",
            "-i",
            str(PING_INTERVAL),
            "-W",
            "2",
            "-c",
            str(count),
            dst_addr,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": common.REPO},
    )
    stop = threading.Event()
    result: dict[str, Any] = {"transfers": 0, "error": None}

    def transfers() -> None:
        try:
            while not stop.is_set():
                common.transfer(lab, src_host, dst_host, dst_addr, nbytes=1_000_000)
                result["transfers"] += 1
        except BaseException as exc:  # re-raised in the test's thread
            result["error"] = exc

    thread = threading.Thread(target=transfers, name="tcp-transfers")
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join(timeout=90)
        out, _ = pinger.communicate(timeout=seconds + 60)
    if result["error"] is not None:
        raise result["error"]
    match = re.search(r"sent=(\d+) received=(\d+)", out)
    assert match, out
    result["sent"], result["received"] = int(match.group(1)), int(match.group(2))
    loss = 100.0 * (result["sent"] - result["received"]) / result["sent"]
    print(
        f"    legitimate traffic {src_host} -> {dst_addr} during the attack: ping "
        f"sent={result['sent']} received={result['received']} loss={loss:.2f}%; 1 MB TCP "
        f"transfers with matching SHA-256: {result['transfers']}"
    )
    assert result["transfers"] >= 1
    assert loss < 1.0


# --- the NAT world: RTR, Map-Server/Map-Resolver, NATed xTRs ---------------------------------


def start_nat_world(w: World) -> None:
    """lispd on ms, rtr1 and both xTRs (configurations of test_rtr_nat); both sites
    registered through their NATs, both NAT bindings at the RTR."""
    plan = w.plan
    w.daemons[plan.ms] = w.lab.start_lispd(plan.ms, test_rtr_nat.ms_config(plan, w.sock(plan.ms)))
    rtr_config = test_rtr_nat.rtr_config(plan, w.sock(plan.rtr1))
    w.daemons[plan.rtr1] = w.lab.start_lispd(plan.rtr1, rtr_config)
    for site in plan.sites:
        config = test_rtr_nat.xtr_config(plan, site, w.sock(site.xtr))
        w.daemons[site.xtr] = w.lab.start_lispd(site.xtr, config)
    wait_for("sites registered", lambda: len(w.ask(plan.ms, "site")) == 4, 15)
    wait_for("both NAT bindings at the RTR", lambda: len(w.ask(plan.rtr1, "rtr")) == 2, 15)


def nat_world_shots(w: World, bindings: dict[str, int]) -> list[Shot]:
    """The crafted packets of the NAT world: at the RTR, the Map-Server, and the NATed xTRs
    through their NAT's pinhole toward the RTR (the RTR's address and port spoofed, the NAT's
    port known, as an on-path observer would know it)."""
    plan = w.plan
    s1, s2 = plan.sites
    rtr1, ms_node = plan.rtr1, plan.ms
    ms, rtr = plan.ms_rloc_v4, plan.rtr1_public_v4
    keys = {i: k.encode() for i, k in test_rtr_nat.KEYS.items()}
    shots = data_garbage(rtr1, rtr, 4341, local_eid=None, foreign_eid=s2.host_v4)
    shots += control_garbage(rtr1, rtr, s2.host_v4)
    shots += control_garbage(ms_node, ms, s2.host_v4)
    for site, other, nat in ((s1, s2, plan.nat1_public_v4), (s2, s1, plan.nat2_public_v4)):
        shots += data_garbage(
            site.xtr,
            nat,
            bindings[nat],
            local_eid=site.host_v4,
            foreign_eid=other.host_v4,
            src=rtr,
            sport=4341,
        )
    unknown, guess = "map-reply-unknown-nonce", b"guess"
    for site, other in ((s1, s2), (s2, s1)):
        for prefix in (site.prefix_v4, site.host_v4 + "/32"):  # the sites' EIDs at our RLOC
            poison = partial(map_reply, prefix, ATTACKER_V4)
            probe_reply = partial(map_reply, prefix, ATTACKER_V4, probe=True)
            notify = partial(map_notify, prefix, ATTACKER_V4, guess)
            shots += [
                Shot("Map-Reply, unsolicited", rtr1, unknown, rtr, poison),
                Shot(
                    "Map-Reply, unsolicited, spoofed from the MS",
                    rtr1,
                    unknown,
                    rtr,
                    poison,
                    src=ms,
                ),
                Shot(
                    "Map-Reply, unsolicited probe reply",
                    rtr1,
                    "probe-reply-unknown-nonce",
                    rtr,
                    probe_reply,
                ),
                Shot(
                    "Map-Reply at a Map-Server", ms_node, "control-unexpected-map-reply", ms, poison
                ),
                Shot("Map-Notify, wrong key", rtr1, "control-unexpected-map-notify", rtr, notify),
                Shot("Map-Notify, wrong key", ms_node, "control-unexpected-map-notify", ms, notify),
            ]
        register = partial(map_register, site.prefix_v4, ATTACKER_V4)
        shots += [
            Shot(
                "Map-Register, wrong key",
                ms_node,
                "register-auth-failed",
                ms,
                partial(register, guess),
            ),
            Shot(
                "Map-Register, the other site's key",
                ms_node,
                "register-auth-failed",
                ms,
                partial(register, keys[other.index]),
            ),
            Shot(
                "Map-Register, unauthenticated",
                ms_node,
                "register-bad-key-id",
                ms,
                partial(register, b"", key_id=0),
            ),
            Shot(
                "Map-Register, unknown prefix",
                ms_node,
                "register-unknown-site",
                ms,
                partial(map_register, "203.0.113.0/24", ATTACKER_V4, guess),
            ),
            Shot(
                "Map-Register at an RTR",
                rtr1,
                "control-unexpected-map-register",
                rtr,
                partial(register, guess),
            ),
        ]
    shots += [
        Shot("Info-Reply, unsolicited", rtr1, "control-unexpected-info-reply", rtr, info_reply),
        Shot("Info-Reply, unsolicited", ms_node, "control-unexpected-info-reply", ms, info_reply),
        Shot(
            "Info-Request at an RTR's control port",
            rtr1,
            "control-unexpected-info-request",
            rtr,
            info_request,
        ),
        Shot(
            "Map-Request at a Map-Server, not in an ECM",
            ms_node,
            "control-unexpected-map-request",
            ms,
            partial(map_request, s1.host_v4, ATTACKER_V4),
        ),
    ]
    for _src, _dst, raw in w.messages(3):  # the real Map-Registers, captured at the MS
        shots += [
            Shot("Map-Register, replayed", ms_node, "register-replayed", ms, raw),
            Shot(
                "Map-Register, replayed from a spoofed address",
                ms_node,
                "register-replayed",
                ms,
                raw,
                src=SPOOFED,
            ),
        ]
    return shots


def test_rtr_map_server_and_natted_xtrs_withstand_hostile_traffic() -> None:
    plan = nat_topology()
    with running(plan, plan.core, plan.ms, plan.ms_if, start_nat_world) as w:
        lab = w.lab
        s1, s2 = plan.sites
        ms, rtr = plan.ms_rloc_v4, plan.rtr1_public_v4
        assert lab.ping(s1.host, s2.host_v4, count=3, wait=3.0)
        assert lab.ping(s2.host, s1.host_v4, count=3, wait=3.0)
        regs_before = registrations(w, plan.ms)
        bindings_before = {b["address"]: b["port"] for b in w.ask(plan.rtr1, "rtr")}
        sources = {src for src, _dst, _raw in w.messages(3)}
        assert sources == {plan.nat1_public_v4, plan.nat2_public_v4}
        shots = nat_world_shots(w, bindings_before)
        attacker = Attacker.open(lab)
        print(
            f"\n[NAT world] registered: {regs_before}\n    NAT bindings at rtr1: {bindings_before}"
        )
        before = w.read()
        with contextlib.ExitStack() as stack:
            leaks = [
                stack.enter_context(lab.capture(node, ifname, f"host {VICTIM}"))
                for node, ifname in ((s1.xtr, plan.gxtr1_site_if), (s2.xtr, plan.xtr2_site_if))
            ]
            victim = stack.enter_context(
                lab.capture(ATTACKER, "to-core", f"udp and dst host {VICTIM}")
            )
            stack.enter_context(legitimate_traffic(lab, s1.host, s2.host, s2.host_v4, 9.0))
            time.sleep(0.5)
            fire(attacker, shots, reps=10)
            crafted = w.settle()

            # Floods from the attacker's address: Info-Requests and forged Map-Registers at the
            # Map-Server, NAT keepalives at the RTR (one in a hundred from a spoofed address);
            # from one spoofed source: Map-Requests at the Map-Server/Map-Resolver, for a NATed
            # site's EID (proxy replies) and for a non-EID (negative replies).
            sent: Counter[str] = Counter()
            request_len = len(ecm_request(s2.host_v4, VICTIM)) + 28
            forged = partial(map_register, s1.prefix_v4, ATTACKER_V4, b"guess")
            pacer, t0 = Pacer(INFO_FLOOD_PPS), time.monotonic()
            while time.monotonic() - t0 < FLOOD_SECONDS:
                attacker.send("flood: Info-Request at the MS", None, "", ms, 4342, info_request())
                keepalive = data_header(0xFFFFFF) + info_request()
                spoof = SPOOFED if pacer.count % 100 == 0 else None
                attacker.send(
                    "flood: NAT keepalive at the RTR", None, "", rtr, 4341, keepalive, src=spoof
                )
                if pacer.count % 3 == 0:
                    attacker.send(
                        "flood: Map-Register, wrong key, at the MS", None, "", ms, 4342, forged()
                    )
                    sent["register"] += 1
                if sent["request"] < (time.monotonic() - t0) * REQUEST_FLOOD_PPS:
                    eid = s2.host_v4 if sent["request"] % 2 else "203.0.113.7"
                    attacker.send(
                        "flood: Map-Request (ECM) at the MS/MR, one spoofed source",
                        None,
                        "",
                        ms,
                        4342,
                        ecm_request(eid, VICTIM),
                        src=VICTIM,
                    )
                    sent["request"] += 1
                sent["info"] += 1
                pacer.tick()
            flood_seconds = time.monotonic() - t0
            after = w.settle()
        print_sent(attacker)
        check_accounting(attacker, before, crafted)

        ms_delta = after[plan.ms].drops - crafted[plan.ms].drops
        ms_kernel = after[plan.ms].kernel - crafted[plan.ms].kernel
        info_replies = attacker.replies().get(ms, [])
        info_answered = len(info_replies)
        info_limited = ms_delta["info-request-rate-limited"]
        info_len = len(info_request())
        largest = max(info_replies, default=0)
        print(
            f"    Info-Request flood at the MS: {sent['info']} in {flood_seconds:.1f} s "
            f"({sent['info'] / flood_seconds:.0f}/s): answered {info_answered} (limit "
            f"{INFO_RATE:.0f}/s, burst {INFO_BURST:.0f}), rate-limited {info_limited}, kernel "
            f"drops {ms_kernel}; request {info_len} bytes of UDP payload, reply {largest} "
            f"(x{largest / info_len:.2f}; IP packets x{(largest + 28) / (info_len + 28):.2f}), "
            f"sent back to the request's own source only"
        )
        assert sent["info"] - ms_kernel <= info_answered + info_limited <= sent["info"]
        assert info_answered <= INFO_BURST + INFO_RATE * flood_seconds + 1
        forged_counted = ms_delta["register-auth-failed"]
        print(
            f"    forged Map-Register flood at the MS: {sent['register']}: counted "
            f"register-auth-failed {forged_counted}"
        )
        assert sent["register"] - ms_kernel <= forged_counted <= sent["register"]

        rtr_kernel = after[plan.rtr1].kernel - crafted[plan.rtr1].kernel
        keepalives = attacker.sent["flood: NAT keepalive at the RTR"]

        def keepalives_counted() -> int:
            packets = Counter(w.ask(plan.rtr1, "stats")["packets"])
            return (packets - crafted[plan.rtr1].packets)["rtr.nat-keepalive.packets"]

        counted = wait_for(
            "the RTR counting the keepalives",
            lambda: (n := keepalives_counted()) >= keepalives - rtr_kernel and n,
        )
        print(
            f"    NAT keepalive flood at the RTR: {keepalives} in {flood_seconds:.1f} s: counted "
            f"as keepalives {counted} (with the real xTRs' own, two a second each), kernel "
            f"drops {rtr_kernel}"
        )
        # The xTRs' own keepalives meanwhile, at most: two xTRs, a round a second, one
        # keepalive per EID-prefix (an IPv4 and an IPv6 one each).
        real = 2 * 2 * (time.monotonic() - t0 + 2)
        assert keepalives - rtr_kernel <= counted <= keepalives + real

        replies = [n for src, _sp, _dst, _dp, n, _p in udp_packets(victim) if src == ms]
        check_flood_replies(
            "the MS/MR",
            sent["request"],
            max(flood_seconds, reply_span(victim, ms)),
            replies,
            ms_delta["request-rate-limited"],
            ms_kernel,
            request_len,
            MR_RATE,
            MR_BURST,
        )
        check_no_leaks(leaks)
        check_logs(w, before, after)

        # Nothing unauthenticated changed state.
        regs_after = registrations(w, plan.ms)
        bindings_after = {b["address"]: b["port"] for b in w.ask(plan.rtr1, "rtr")}
        print(f"    registrations at the MS unchanged: {regs_after == regs_before}")
        print(f"    NAT bindings at rtr1 after: {bindings_after}")
        assert regs_after == regs_before
        for address, port in bindings_before.items():
            assert bindings_after[address] == port, "a keepalive from elsewhere moved a binding"
        extra = set(bindings_after) - set(bindings_before)
        assert all(ip_address(a) in ATTACKER_SPACE for a in extra), bindings_after
        for node in (plan.rtr1, s1.xtr, s2.xtr):
            cache = w.ask(node, "map-cache")
            assert not poisoned(cache), cache
        print("    map-caches of rtr1, gxtr1, xtr2: no attacker RLOC")
        check_rss(before, after)
        attacker.close()
        # And the sites still reach each other both ways.
        common.transfer(lab, s2.host, s1.host, s1.host_v6)
        assert lab.ping(s2.host, s1.host_v4, count=3, wait=3.0)


# --- the mapping-system world: xTRs reached directly -----------------------------------------


def start_mapping_world(w: World) -> None:
    """lispd on msmr and the two xTRs (configurations of test_controlplane); both sites
    registered and acknowledged."""
    plan = w.plan
    w.daemons[plan.msmr] = w.lab.start_lispd(
        plan.msmr, test_controlplane.msmr_config(plan, w.sock(plan.msmr))
    )
    for site in plan.sites:
        config = test_controlplane.xtr_config(plan, site, w.sock(site.xtr))
        w.daemons[site.xtr] = w.lab.start_lispd(site.xtr, config)
    wait_for("sites registered", lambda: len(w.ask(plan.msmr, "site")) == 4, 15)
    for site in plan.sites:
        wait_for(
            f"{site.xtr} acknowledged",
            lambda site=site: all(s["acknowledged"] for s in w.ask(site.xtr, "registrations")),
        )


def mapping_world_shots(w: World) -> list[Shot]:
    """The crafted packets of the mapping-system world: at both xTRs and the MS/MR."""
    plan = w.plan
    s1, s2 = plan.sites
    msmr_node, msmr = plan.msmr, plan.msmr_rloc
    keys = {i: k.encode() for i, k in test_controlplane.KEYS.items()}
    unknown, guess = "map-reply-unknown-nonce", b"guess"
    shots = control_garbage(msmr_node, msmr, s1.host_v4)
    for site, other in ((s1, s2), (s2, s1)):
        xtr_node, xtr = site.xtr, site.rloc
        shots += data_garbage(
            xtr_node, xtr, 4341, local_eid=site.host_v4, foreign_eid=other.host_v4
        )
        shots += control_garbage(xtr_node, xtr, site.host_v4)
        for prefix in (other.prefix_v4, other.host_v4 + "/32", other.prefix_v6):
            poison = partial(map_reply, prefix, ATTACKER_V4)
            shots += [
                Shot("Map-Reply, unsolicited", xtr_node, unknown, xtr, poison),
                Shot(
                    "Map-Reply, unsolicited, spoofed from the MS/MR",
                    xtr_node,
                    unknown,
                    xtr,
                    poison,
                    src=msmr,
                ),
                Shot(
                    "Map-Reply, unsolicited, spoofed from the other ETR",
                    xtr_node,
                    unknown,
                    xtr,
                    poison,
                    src=other.rloc,
                ),
                Shot(
                    "Map-Reply, unsolicited probe reply",
                    xtr_node,
                    "probe-reply-unknown-nonce",
                    xtr,
                    partial(map_reply, prefix, ATTACKER_V4, probe=True),
                ),
            ]
        for prefix in (site.prefix_v4, site.prefix_v6):
            notify = partial(map_notify, prefix, ATTACKER_V4, guess)
            shots += [
                Shot("Map-Notify, wrong key", xtr_node, "map-notify-unknown-source", xtr, notify),
                Shot(
                    "Map-Notify, wrong key, spoofed from the MS/MR",
                    xtr_node,
                    "map-notify-bad-auth",
                    xtr,
                    notify,
                    src=msmr,
                ),
                Shot(
                    "Map-Notify-Ack at an xTR",
                    xtr_node,
                    "control-unexpected-map-notify-ack",
                    xtr,
                    partial(map_notify, prefix, ATTACKER_V4, guess, ack=True),
                ),
                Shot(
                    "Map-Register at an xTR",
                    xtr_node,
                    "control-unexpected-map-register",
                    xtr,
                    partial(map_register, prefix, ATTACKER_V4, keys[site.index]),
                ),
                Shot(
                    "Map-Register, wrong key",
                    msmr_node,
                    "register-auth-failed",
                    msmr,
                    partial(map_register, prefix, ATTACKER_V4, guess),
                ),
            ]
        shots += [
            Shot(
                "Info-Request at an xTR",
                xtr_node,
                "control-unexpected-info-request",
                xtr,
                info_request,
            ),
            Shot(
                "Info-Reply, unsolicited",
                xtr_node,
                "control-unexpected-info-reply",
                xtr,
                info_reply,
            ),
            Shot(
                "SMR for an EID not cached",
                xtr_node,
                "smr-not-cached",
                xtr,
                partial(map_request, "203.0.113.9", ATTACKER_V4, smr=True),
            ),
            Shot(
                "Map-Request for a non-local EID",
                xtr_node,
                "request-not-our-eid|request-rate-limited",
                xtr,
                partial(map_request, other.host_v4, ATTACKER_V4),
            ),
        ]
    for src, dst, raw in w.messages(4):  # the real Map-Notifies, captured, from the MS/MR
        xtr_node = next(s.xtr for s in plan.sites if s.rloc == dst)
        shots.append(
            Shot(
                "Map-Notify, replayed, spoofed from the MS/MR",
                xtr_node,
                "map-notify-duplicate",
                dst,
                raw,
                src=src,
            )
        )
    for _src, _dst, raw in w.messages(3):
        shots += [
            Shot("Map-Register, replayed", msmr_node, "register-replayed", msmr, raw),
            Shot(
                "Map-Register, replayed from a spoofed address",
                msmr_node,
                "register-replayed",
                msmr,
                raw,
                src=SPOOFED,
            ),
        ]
    return shots


def test_xtrs_and_map_server_withstand_hostile_traffic() -> None:
    plan = mapping_system_topology(sites=2)
    with running(plan, plan.r, plan.msmr, "to-r", start_mapping_world) as w:
        lab = w.lab
        s1, s2 = plan.sites
        for a, b in ((s1, s2), (s2, s1)):  # both map-caches warm
            assert lab.ping(a.host, b.host_v4, count=2, wait=3.0)
        regs_before = registrations(w, plan.msmr)
        caches_before = {s.xtr: w.ask(s.xtr, "map-cache") for s in plan.sites}
        assert w.messages(3) and w.messages(4)
        shots = mapping_world_shots(w)
        attacker = Attacker.open(lab)
        print(f"\n[mapping-system world] registered: {regs_before}")
        before = w.read()
        with contextlib.ExitStack() as stack:
            leaks = [
                stack.enter_context(lab.capture(s.xtr, f"to-{s.host}", f"host {VICTIM}"))
                for s in plan.sites
            ]
            victim = stack.enter_context(
                lab.capture(ATTACKER, "to-r", f"udp and dst host {VICTIM}")
            )
            stack.enter_context(legitimate_traffic(lab, s1.host, s2.host, s2.host_v4, 7.0))
            time.sleep(0.5)
            fire(attacker, shots, reps=10)
            crafted = w.settle()

            # Map-Requests from one spoofed source at an ETR, for its own EIDs.
            request_len = len(map_request(s1.host_v4, VICTIM)) + 28
            requests, pacer, t0 = 0, Pacer(REQUEST_FLOOD_PPS), time.monotonic()
            while time.monotonic() - t0 < FLOOD_SECONDS:
                eid = s1.host_v4 if requests % 2 else s1.gateway_v4
                attacker.send(
                    "flood: Map-Request at an ETR, one spoofed source",
                    None,
                    "",
                    s1.rloc,
                    4342,
                    map_request(eid, VICTIM),
                    src=VICTIM,
                )
                requests += 1
                pacer.tick()
            flood_seconds = time.monotonic() - t0
            after = w.settle()
        print_sent(attacker)
        check_accounting(attacker, before, crafted)
        etr_delta = after[s1.xtr].drops - crafted[s1.xtr].drops
        replies = [n for src, _sp, _dst, _dp, n, _p in udp_packets(victim) if src == s1.rloc]
        check_flood_replies(
            f"the ETR {s1.xtr}",
            requests,
            max(flood_seconds, reply_span(victim, s1.rloc)),
            replies,
            etr_delta["request-rate-limited"],
            after[s1.xtr].kernel - crafted[s1.xtr].kernel,
            request_len,
            ETR_RATE,
            ETR_BURST,
        )
        check_no_leaks(leaks)
        check_logs(w, before, after)

        regs_after = registrations(w, plan.msmr)
        print(f"    registrations at the MS/MR unchanged: {regs_after == regs_before}")
        assert regs_after == regs_before
        for site in plan.sites:
            cache = w.ask(site.xtr, "map-cache")
            assert not poisoned(cache), cache
            assert mappings(cache) == mappings(caches_before[site.xtr])
            assert all(s["acknowledged"] for s in w.ask(site.xtr, "registrations"))
        print(
            "    map-caches of xtr1, xtr2 unchanged (no attacker RLOC), registrations acknowledged"
        )
        check_rss(before, after)
        attacker.close()
        common.transfer(lab, s2.host, s1.host, s1.host_v6)
