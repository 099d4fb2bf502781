"""``ltr``: the LISP-Trace client, compatible with lispers.net's ``ltr``.

    ltr [-c CONFIG] [-s SOURCE-EID] [--json] [--timeout SECONDS] DESTINATION

Sends one LISP-Trace packet (UDP 2434, the format in :mod:`lispd.wire.trace`) from a local EID to
``DESTINATION`` through the overlay, waits for it to come back with the records every LISP
node on the way appended, and prints the path::

    Send round-trip LISP-Trace between EIDs [0]198.51.100.1 and [0]198.51.100.17 ...
    Received reply from 198.51.100.17, rtt 0.012 secs

    Path from [0]198.51.100.1 to [0]198.51.100.17:
      ITR encap: 192.0.2.2:40123 -> 203.0.113.2, ts 1700000000.101, node xtr1
        recent-rtts [0.004, 0.005, ?], recent-hops [2/2, 2/2, ?/?]
      ETR decap: 192.0.2.2 -> 203.0.113.2, ts 1700000000.103, node xtr2

    Path from [0]198.51.100.17 to [0]198.51.100.1:
    ...

Exit status: 0 when the round trip came back, 2 when the trace stopped at a node (a node that
could not forward returned it: its record's ``dr`` is ``"? (<reason>)"``), 1 on timeout and on
usage or setup errors.

The module is a sans-IO core (parsing the arguments' addresses, choosing the EIDs, building the
first packet, accepting and formatting the reply: pure functions, unit-tested with golden
strings) and a thin IO shell (:func:`main`, :func:`run_trace`).

Sockets.  One UDP socket, bound to the wildcard address on an ephemeral port, sends and
receives everything.  The turned-around reply arrives at ``SOURCE-EID:port`` but an error
return comes from the failing node straight to the first ITR's ``sr``, i.e. to the xTR's RLOC
at the same port (and behind NAT, through the RTR, to the translated address).  A socket bound
to the source EID would never see the error return, so the socket is bound to the wildcard and
only the trace itself is given the source EID as source address with ``IPV6_PKTINFO`` ancillary
data in ``sendmsg``.  The socket is an IPv6 one with ``IPV6_V6ONLY`` off (IPv4 peers are
``::ffff:a.b.c.d``; Linux honours a v4-mapped ``IPV6_PKTINFO`` source for IPv4 destinations), so
an IPv6 trace still receives the error return of an IPv4 underlay and vice versa.  Without IPv6
in the kernel it falls back to an IPv4 socket and ``IP_PKTINFO``.  The bare NAT-traversal
headers to the RTRs are sent without ancillary data: the kernel picks the RLOC as source, which
is what the RTR must see.

Output choices the format leaves open (lispers.net's ``ltr.py`` decides):

* ``ts`` is printed exactly as received (the Unix time float, Python's ``str``), as lispers.net
  does; no conversion to a human time.
* ``recent-rtts`` prints ``-1`` (unknown) as ``?``; ``recent-hops`` prints the strings without
  quotes.  The line is printed only when ``rtts``, ``hops`` and ``lats`` are all present.
* A decap record's source is printed without its ``:port`` (lispd's records keep the port an
  RTR or ETR saw the packet come from, e.g. a NAT's; ``--json`` shows it): the seed's lines
  have none.  An IPv6 source whose port reads as a last group of hex digits
  (``2001:db8::1:5000``) is printed as it is recorded (:func:`lispd.wire.trace.parse_rloc`).
* Segments are separated by one blank line; none follows the last (the seed's layout).
* No ANSI colours (lispers.net paints ``?`` red and host names blue); control characters
  received from the network are printed escaped.
* The rtt is printed with exactly three decimals (lispers.net: ``round(rtt, 3)``).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import secrets
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, TextIO

from lispd.cli.args import Parser, parse_address, seconds, split_iid
from lispd.wire.errors import EncodeError, WireError
from lispd.wire.trace import (
    REPLY_WORD0,
    TRACE_HEADER_LEN,
    TRACE_PORT,
    IPAddress,
    TraceHop,
    TraceMessage,
    decode_trace,
    encode_trace,
    format_eid,
    is_round_trip,
    parse_rloc,
)

DEFAULT_CONFIG = "/etc/lispd/lispd.conf"
DEFAULT_TIMEOUT = 5.0
MAX_IID = 0xFFFFFE
"""Largest instance-id (24 bits, 0xFFFFFF is reserved), as in lispd.conf."""

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_STOPPED = 2

HOP_INDENT = "  "
STATS_INDENT = "    "
"""Indentation of the hop line and of its ``recent-rtts`` line (the layout of the ltr
transcripts our users gave us; lispers.net's own ``ltr.py`` indents the latter by 13 spaces)."""

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Python does not export it; 8 on Linux
_RECV_SIZE = 65535


class UsageError(Exception):
    """A bad argument or an impossible request: printed as ``ltr: <message>``, exit 1."""


class Eid(NamedTuple):
    """An EID with its instance-id; ``str`` gives ``"[iid]address"``."""

    iid: int
    address: IPAddress

    def __str__(self) -> str:
        return format_eid(self.iid, self.address)


# --------------------------------------------------------------------------------------------
# Sans-IO core: arguments and EIDs


def parse_destination(text: str) -> tuple[int | None, str]:
    """Split ``"[iid]host"`` or ``"host"`` into ``(iid or None, host)``.

    ``host`` is an IP address or a DNS name, returned as given (not resolved).  Raises
    :class:`UsageError` for an empty host or a malformed / out-of-range instance-id.
    """
    split = split_iid(text)
    if split is None:
        raise UsageError(f"{text!r}: expected [instance-id]address or a host name")
    iid, host = split
    if iid is not None and iid > MAX_IID:
        raise UsageError(f"{text!r}: instance-id must be from 0 to {MAX_IID}")
    if not host or any(ch.isspace() for ch in host):
        raise UsageError(f"{text!r}: missing or malformed address or host name")
    return iid, host


def parse_source(text: str) -> tuple[int | None, IPAddress]:
    """``-s`` argument: ``"[iid]address"`` or ``"address"`` (an address, not a name)."""
    iid, host = parse_destination(text)
    address = parse_address(host)
    if address is None:
        raise UsageError(f"source EID {text!r} is not an IP address")
    return iid, address


def database_iid(database: Iterable[Any], address: IPAddress, iid: int | None = None) -> int | None:
    """The instance-id of the longest database-mapping prefix that holds ``address`` (only
    prefixes of instance-id ``iid`` when given), or ``None`` when none does.

    ``database`` holds objects with ``instance_id`` and ``prefix`` (config ``Mapping``).
    """
    best: tuple[int, int] | None = None  # (prefix length, iid)
    for mapping in database:
        prefix = mapping.prefix
        if prefix.version != address.version or address not in prefix:
            continue
        if iid is not None and mapping.instance_id != iid:
            continue
        if best is None or prefix.prefixlen > best[0]:
            best = (prefix.prefixlen, mapping.instance_id)
    return None if best is None else best[1]


def local_eids(database: Iterable[Any], addresses: Iterable[IPAddress]) -> list[Eid]:
    """The local ``addresses`` that lie in a database-mapping prefix, as EIDs, in the order of
    the database (then of the addresses); an address in prefixes of several instance-ids gives
    one EID per instance-id."""
    addresses = list(addresses)
    out: list[Eid] = []
    for mapping in database:
        for address in addresses:
            if address.version != mapping.prefix.version or address not in mapping.prefix:
                continue
            eid = Eid(mapping.instance_id, address)
            if eid not in out:
                out.append(eid)
    return out


def _family_name(version: int) -> str:
    return "IPv4" if version == 4 else "IPv6"


def select_endpoints(
    dest_iid: int | None,
    dest_host: str,
    source: tuple[int | None, IPAddress] | None,
    database: Sequence[Any],
    local_addresses: Callable[[], Iterable[IPAddress]],
    resolve: Callable[[str, int | None], list[IPAddress]],
) -> tuple[Eid, Eid]:
    """Choose the source and destination EIDs of the trace.

    ``source`` is the parsed ``-s`` (or ``None``: take an address of this machine that lies in a
    database-mapping prefix, of the destination's family, in the destination's instance-id when
    one was given).  ``dest_host`` may be a DNS name: ``resolve(name, version or None)`` gives
    its addresses, asked in the source EID's family when the source is known.  The destination's
    instance-id defaults to the source's.  Raises :class:`UsageError`.
    """
    dest_addr = parse_address(dest_host)

    if source is not None:
        s_iid, s_addr = source
        iid = database_iid(database, s_addr, s_iid if s_iid is not None else dest_iid)
        if iid is None and s_iid is None:
            iid = database_iid(database, s_addr)
        if iid is None:
            where = "" if s_iid is None else f" of instance-id {s_iid}"
            raise UsageError(
                f"source {s_addr} is not in a database-mapping prefix{where}: not a local EID"
            )
        src = Eid(iid, s_addr)
        if dest_addr is None:
            found = [a for a in resolve(dest_host, s_addr.version) if a.version == s_addr.version]
            if not found:
                raise UsageError(
                    f"{dest_host} has no {_family_name(s_addr.version)} address "
                    f"(the family of source EID {src})"
                )
            dest_addr = found[0]
        elif dest_addr.version != s_addr.version:
            raise UsageError(
                f"source EID {src} and destination {dest_addr} are not of the same address family"
            )
    else:
        candidates = local_eids(database, local_addresses())
        if dest_iid is not None:
            candidates = [c for c in candidates if c.iid == dest_iid]
        in_iid = "" if dest_iid is None else f" in instance-id {dest_iid}"
        if dest_addr is not None:
            same = [c for c in candidates if c.address.version == dest_addr.version]
            if not same:
                raise UsageError(
                    f"no local {_family_name(dest_addr.version)} EID{in_iid}: no address of "
                    "this machine lies in a database-mapping prefix (give one with -s)"
                )
            src = same[0]
        else:
            if not candidates:
                raise UsageError(
                    f"no local EID{in_iid}: no address of this machine lies in a "
                    "database-mapping prefix (give one with -s)"
                )
            resolved = resolve(dest_host, None)
            for cand in candidates:
                match = [a for a in resolved if a.version == cand.address.version]
                if match:
                    src, dest_addr = cand, match[0]
                    break
            else:
                raise UsageError(f"{dest_host} has no address of the family of a local EID{in_iid}")

    if dest_iid is not None and dest_iid != src.iid:
        raise UsageError(
            f"instance-ids must be the same for source and destination EIDs ({src} and "
            f"[{dest_iid}]{dest_addr})"
        )
    if dest_addr.is_multicast:
        raise UsageError(f"{dest_addr}: multicast EIDs are not supported")
    return src, Eid(src.iid, dest_addr)


def map_cache_covers(map_cache: Iterable[Any], address: IPAddress) -> bool:
    """Whether a static ``[[map-cache]]`` prefix (objects with ``prefix``) holds ``address``.

    lispd routes exactly those prefixes into its TUN: traffic from a local EID to anything
    else is routed by the kernel outside LISP, so a trace to it meets no LISP node."""
    return any(m.prefix.version == address.version and address in m.prefix for m in map_cache)


def local_rloc(rlocs: Iterable[IPAddress]) -> ipaddress.IPv4Address:
    """The xTR's local IPv4 RLOC for the header's word 1 (``0.0.0.0`` without one)."""
    for rloc in rlocs:
        if isinstance(rloc, ipaddress.IPv4Address):
            return rloc
    return ipaddress.IPv4Address(0)


def parse_nat_status(result: Any) -> tuple[bool, list[IPAddress]]:
    """``(behind NAT, RTR addresses)`` from the daemon's ``nat`` answer; anything unexpected
    (``{}``, ``None``, a non-dict, ``behind-nat`` not ``true``) means not behind NAT.  RTR
    strings that are not IP addresses are skipped."""
    if not isinstance(result, dict) or result.get("behind-nat") is not True:
        return False, []
    rtrs: list[IPAddress] = []
    raw = result.get("rtrs")
    for item in raw if isinstance(raw, list) else ():
        address = parse_address(item) if isinstance(item, str) else None
        if address is not None and address not in rtrs:
            rtrs.append(address)
    return True, rtrs


# --------------------------------------------------------------------------------------------
# Sans-IO core: packets


def build_first_packet(local_port: int, rloc: ipaddress.IPv4Address, nonce: int) -> bytes:
    """The client's packet: word 0 = type 9 and ``local_port``, word 1 = ``rloc``, the nonce
    and no JSON.  The same bytes go to each RTR as the NAT-traversal packet."""
    return encode_trace(TraceMessage(local_port=local_port, local_rloc=rloc, nonce=nonce))


def accept_reply(data: bytes, nonce: int) -> TraceMessage | None:
    """The decoded reply when ``data`` is the answer to the trace with ``nonce``: word 0 exactly
    ``0x90000000``, the same nonce and a JSON body with at least one segment; else ``None``."""
    try:
        msg = decode_trace(data)
    except WireError:
        return None
    if msg.word0 != REPLY_WORD0 or msg.nonce != nonce or not msg.segments:
        return None
    return msg


def stop_hop(msg: TraceMessage) -> TraceHop | None:
    """The record of the node that could not forward (the first unreachable hop), or None."""
    for seg in msg.segments or ():
        for hop in seg.paths:
            if hop.unreachable:
                return hop
    return None


def exit_status(msg: TraceMessage) -> int:
    """0 for a completed round trip, 2 when the trace stopped at a node (a record with an
    unreachable ``dr``) or came back without its return segment."""
    if stop_hop(msg) is not None or not is_round_trip(msg):
        return EXIT_STOPPED
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# Sans-IO core: text


def _safe(text: str) -> str:
    """``text`` with control characters escaped (names and RLOCs come from the network)."""
    return _UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1], text)


def format_address(address: str) -> str:
    """A datagram's source address as printed: v4-mapped IPv6 shown as IPv4, no scope."""
    text = address.split("%", 1)[0]
    parsed = parse_address(text)
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return text


def format_seconds(value: float) -> str:
    """``5`` for 5.0, ``2.5`` for 2.5."""
    return f"{value:g}"


def format_nat_line(rtr: IPAddress | str) -> str:
    return f"Send NAT-traversal LISP-Trace to RTR {rtr} ..."


def format_send_line(src: Eid, dst: Eid) -> str:
    return f"Send round-trip LISP-Trace between EIDs {src} and {dst} ..."


def format_timeout(dst: Eid, timeout: float) -> str:
    return f"No reply received within {format_seconds(timeout)} seconds from {dst}"


def format_not_routed(dst: Eid, config_path: str) -> str:
    """Why a trace to a destination no ``[[map-cache]]`` prefix covers got no answer."""
    return (
        f"no [[map-cache]] prefix in {config_path} covers {dst.address}: the kernel routes "
        "the trace outside LISP and no LISP node sees it (a send-map-request entry for "
        "0.0.0.0/0 and ::/0 makes lispd resolve and trace every destination)"
    )


def format_received_line(reply_from: str, rtt: float) -> str:
    return f"Received reply from {format_address(reply_from)}, rtt {rtt:.3f} secs"


def _number(value: Any) -> str:
    return "?" if value == -1 else json.dumps(value)


def without_port(rloc: str) -> str:
    """An ``sr`` / ``dr`` text without its ``:port`` (unchanged when it has none or does not
    parse as ``address[:port]``)."""
    try:
        _address, port = parse_rloc(rloc)
    except WireError:
        return rloc
    return rloc if port is None else rloc.rpartition(":")[0]


def format_hop(hop: TraceHop) -> list[str]:
    """The line of one record and, on encap records with all of rtts/hops/lats, its stats.
    A decap record's source is shown without its port (the seed's layout)."""
    # ts as received (Python's str of the JSON number), the way lispers.net prints it.
    sr = hop.sr
    if hop.encap_ts is not None:
        kind, ts = "encap", str(hop.encap_ts)
    elif hop.decap_ts is not None:
        kind, ts, sr = "decap", str(hop.decap_ts), without_port(hop.sr)
    else:
        kind, ts = "?", "?"
    lines = [
        f"{HOP_INDENT}{_safe(hop.node)} {kind}: {_safe(sr)} -> {_safe(hop.dr)}, "
        f"ts {ts}, node {_safe(hop.hn)}"
    ]
    if hop.rtts is not None and hop.hops is not None and hop.lats is not None:
        rtts = ", ".join(_number(x) for x in hop.rtts)
        hops = ", ".join(_safe(x) for x in hop.hops)
        lines.append(f"{STATS_INDENT}recent-rtts [{rtts}], recent-hops [{hops}]")
    return lines


def format_paths(msg: TraceMessage) -> str:
    """Every segment: ``Path from <se> to <de>:`` and its records, a blank line between two
    segments (none after the last)."""
    lines: list[str] = []
    for seg in msg.segments or ():
        if lines:
            lines.append("")
        lines.append(f"Path from {_safe(seg.se)} to {_safe(seg.de)}:")
        for hop in seg.paths:
            lines.extend(format_hop(hop))
    return "".join(line + "\n" for line in lines)


def format_report(msg: TraceMessage, reply_from: str, rtt: float) -> str:
    """The text printed after the reply arrived: the ``Received reply`` line, a blank line and
    the paths (a blank line between segments, none after the last)."""
    return format_received_line(reply_from, rtt) + "\n\n" + format_paths(msg)


def format_json(msg: TraceMessage) -> str:
    """The reply's JSON body as lispers.net writes it (``json.dumps`` of the list of segments,
    keys in lispers.net's order)."""
    return encode_trace(msg)[TRACE_HEADER_LEN:].decode("ascii")


def format_stop(msg: TraceMessage) -> str | None:
    """A one-line diagnosis when the trace did not complete, else None."""
    hop = stop_hop(msg)
    if hop is not None:
        return f"trace stopped at {_safe(hop.node)} {_safe(hop.hn)}: {_safe(hop.dr)}"
    if not is_round_trip(msg):
        return "trace came back without its return path"
    return None


# --------------------------------------------------------------------------------------------
# IO: the machine, the daemon, the network


def local_addresses() -> list[IPAddress]:
    """The addresses configured on this machine (netlink via pyroute2, else ``ip -j addr``)."""
    out: list[IPAddress] = []
    try:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            for msg in ipr.get_addr():
                text = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
                address = parse_address(text) if isinstance(text, str) else None
                if address is not None and address not in out:
                    out.append(address)
        return out
    except Exception:  # no netlink (or no pyroute2): ask iproute2
        pass
    try:
        proc = subprocess.run(
            ["ip", "-j", "addr", "show"], capture_output=True, text=True, timeout=10, check=True
        )
        for link in json.loads(proc.stdout):
            for info in link.get("addr_info", ()):
                address = parse_address(str(info.get("local", "")))
                if address is not None and address not in out:
                    out.append(address)
    except (OSError, subprocess.SubprocessError, ValueError, AttributeError, TypeError):
        pass
    return out


def resolve(host: str, version: int | None) -> list[IPAddress]:
    """The addresses of ``host`` (``version`` 4 or 6 first when given); UsageError if none."""
    family = {4: socket.AF_INET, 6: socket.AF_INET6}.get(version or 0, socket.AF_UNSPEC)
    try:
        infos = socket.getaddrinfo(host, None, family, socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:
        if family == socket.AF_UNSPEC:
            raise UsageError(f"cannot resolve {host}: {exc}") from None
        infos = []
    if not infos and family != socket.AF_UNSPEC:
        return resolve(host, None)
    out: list[IPAddress] = []
    for info in infos:
        address = parse_address(str(info[4][0]).split("%", 1)[0])
        if address is not None and address not in out:
            out.append(address)
    return out


def nat_status(control_socket: str) -> tuple[bool, list[IPAddress]]:
    """Ask the daemon whether this xTR is behind NAT and which RTRs serve it; any failure
    (no daemon, no control socket, an error answer) means not behind NAT."""
    if not control_socket:
        return False, []
    from lispd.api.client import ControlError, request

    try:
        return parse_nat_status(request(control_socket, "nat", timeout=2.0))
    except (ControlError, OSError, ValueError):
        return False, []


def open_socket() -> socket.socket:
    """One UDP socket on the wildcard address and an ephemeral port: dual-stack IPv6 when the
    kernel has IPv6, else IPv4."""
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    except OSError:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("", 0))
        return sock
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", 0))
    except OSError:
        sock.close()
        raise
    return sock


def _sockaddr(sock: socket.socket, address: IPAddress, port: int) -> tuple[Any, ...]:
    if sock.family == socket.AF_INET6:
        if isinstance(address, ipaddress.IPv4Address):
            return (f"::ffff:{address}", port, 0, 0)
        return (str(address), port, 0, 0)
    if not isinstance(address, ipaddress.IPv4Address):
        raise UsageError(f"{address}: IPv6 is not available on this machine")
    return (str(address), port)


def _pktinfo(sock: socket.socket, source: IPAddress) -> tuple[int, int, bytes]:
    """Ancillary data that makes ``source`` the datagram's source address."""
    if sock.family == socket.AF_INET6:
        if isinstance(source, ipaddress.IPv4Address):
            source = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + source.packed)
        return (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, source.packed + struct.pack("@I", 0))
    return (socket.IPPROTO_IP, _IP_PKTINFO, struct.pack("@i4s4s", 0, source.packed, bytes(4)))


def send_from(
    sock: socket.socket, data: bytes, source: IPAddress, dest: IPAddress, port: int
) -> None:
    """Send ``data`` to ``dest:port`` with ``source`` as source address."""
    sock.sendmsg([data], [_pktinfo(sock, source)], 0, _sockaddr(sock, dest, port))


def wait_reply(
    sock: socket.socket, nonce: int, timeout: float
) -> tuple[TraceMessage, str, float] | None:
    """Wait up to ``timeout`` seconds for the reply; ``(message, source address, arrival time
    on the monotonic clock)`` or ``None``.  Anything else that arrives is ignored."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        sock.settimeout(remaining)
        try:
            data, addr = sock.recvfrom(_RECV_SIZE)
        except TimeoutError:
            return None
        except OSError:  # e.g. an ICMP error reported on the socket: keep waiting
            continue
        arrived = time.monotonic()
        msg = accept_reply(data, nonce)
        if msg is not None:
            return msg, str(addr[0]), arrived


class TraceResult(NamedTuple):
    msg: TraceMessage
    reply_from: str
    rtt: float


def run_trace(
    src: Eid,
    dst: Eid,
    rloc: ipaddress.IPv4Address,
    rtrs: Sequence[IPAddress],
    timeout: float,
    say: Callable[[str], None],
    port: int = TRACE_PORT,
) -> TraceResult | None:
    """Send the NAT-traversal packets (one per RTR) and the trace, wait for the reply.

    ``say`` prints a progress line.  Returns ``None`` on timeout; raises ``OSError`` when a send
    fails.
    """
    with open_socket() as sock:
        nonce = secrets.randbits(64)
        packet = build_first_packet(sock.getsockname()[1], rloc, nonce)
        for rtr in rtrs:
            say(format_nat_line(rtr))
            sock.sendto(packet, _sockaddr(sock, rtr, port))
        say(format_send_line(src, dst))
        sent = time.monotonic()
        send_from(sock, packet, src.address, dst.address, port)
        reply = wait_reply(sock, nonce, timeout)
    if reply is None:
        return None
    msg, reply_from, arrived = reply
    return TraceResult(msg, reply_from, arrived - sent)


# --------------------------------------------------------------------------------------------
# The command


class _Parser(Parser):
    """argparse, but usage errors exit with 1 (2 means "trace stopped at a node")."""

    usage_exit = EXIT_ERROR


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ltr",
        description="LISP-Trace: send a trace from a local EID to DESTINATION through the LISP "
        "overlay and back, and print every encapsulation and decapsulation on the way "
        "(compatible with lispers.net's ltr). Exit status: 0 round trip completed, 2 trace "
        "stopped at a node, 1 timeout or error.",
    )
    parser.add_argument(
        "-c", "--config", default=DEFAULT_CONFIG, help=f"lispd configuration ({DEFAULT_CONFIG})"
    )
    parser.add_argument(
        "-s",
        "--source",
        metavar="SOURCE-EID",
        help="source EID, [iid]address or address (default: an address of this machine in a "
        "database-mapping prefix, of the destination's family)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the reply's JSON body instead of the paths"
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for the reply ({format_seconds(DEFAULT_TIMEOUT)})",
    )
    parser.add_argument(
        "destination",
        metavar="DESTINATION",
        help="[iid]address or [iid]host-name (iid defaults to the source EID's)",
    )
    return parser


def _emit(stream: TextIO, text: str) -> None:
    stream.write(text)
    stream.flush()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ltr`` console script."""
    args = build_parser().parse_args(argv)
    out = sys.stdout
    # With --json, stdout carries the JSON body alone; the progress lines go to stderr.
    info = sys.stderr if args.json else sys.stdout

    def fail(message: str) -> int:
        _emit(sys.stderr, f"ltr: {message}\n")
        return EXIT_ERROR

    from lispd.config import ConfigError, load_config

    try:
        dest_iid, dest_host = parse_destination(args.destination)
        source = parse_source(args.source) if args.source is not None else None
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            return fail(str(exc))
        src, dst = select_endpoints(
            dest_iid, dest_host, source, config.database, local_addresses, resolve
        )
        behind_nat, rtrs = nat_status(config.daemon.control_socket)
        result = run_trace(
            src,
            dst,
            local_rloc(config.underlay.rlocs),
            rtrs if behind_nat else (),
            args.timeout,
            lambda line: _emit(info, line + "\n"),
            port=TRACE_PORT,
        )
    except UsageError as exc:
        return fail(str(exc))
    except (OSError, EncodeError) as exc:
        return fail(f"cannot send the trace: {getattr(exc, 'strerror', None) or exc}")
    if result is None:
        _emit(info, format_timeout(dst, args.timeout) + "\n")
        if not map_cache_covers(config.map_cache, dst.address):
            _emit(sys.stderr, f"ltr: {format_not_routed(dst, args.config)}\n")
        return EXIT_ERROR
    if args.json:
        _emit(info, format_received_line(result.reply_from, result.rtt) + "\n")
        _emit(out, format_json(result.msg) + "\n")
    else:
        _emit(out, format_report(result.msg, result.reply_from, result.rtt))
    stop = format_stop(result.msg)
    if stop is not None:
        _emit(sys.stderr, f"ltr: {stop}\n")
    return exit_status(result.msg)


if __name__ == "__main__":
    sys.exit(main())
