"""A minimal ICMP/ICMPv6 echo client, so that labs need no ``ping`` binary.

``python -m lispd.lab.pinger [-c COUNT] [-W WAIT] [-i INTERVAL] [-s SIZE] [--df] [-I SRC] DST``
sends ``COUNT`` echo requests (raw sockets: root) and prints one line per reply and a summary
``sent=N received=M``.  Exit status 0 when at least one reply came back, 1 when none did,
2 on a usage or socket error.  :meth:`lispd.lab.Lab.ping` runs it inside a namespace.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import select
import socket
import struct
import sys
import time
import traceback

__all__ = ["checksum", "echo_request", "main", "parse_reply"]

_IP_MTU_DISCOVER = 10  # not exported by Python's socket module
_IPV6_MTU_DISCOVER = 23
_PMTUDISC_DONT = 0  # same values for IPv4 and IPv6
_PMTUDISC_DO = 2


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(family: int, ident: int, seq: int, payload: bytes) -> bytes:
    """An ICMP (family 4) or ICMPv6 (family 6, kernel fills the checksum) echo request."""
    icmp_type = 8 if family == 4 else 128
    header = struct.pack("!BBHHH", icmp_type, 0, 0, ident, seq)
    if family == 6:
        return header + payload
    csum = checksum(header + payload)
    return struct.pack("!BBHHH", icmp_type, 0, csum, ident, seq) + payload


def parse_reply(family: int, data: bytes) -> tuple[int, int] | None:
    """``(ident, seq)`` of an echo reply received on a raw socket, else None.

    IPv4 raw sockets deliver the IP header; IPv6 ones start at the ICMPv6 header.
    """
    if family == 4:
        if len(data) < 20:
            return None
        data = data[(data[0] & 0x0F) * 4 :]
    if len(data) < 8:
        return None
    icmp_type, _code, _csum, ident, seq = struct.unpack_from("!BBHHH", data)
    if icmp_type != (0 if family == 4 else 129):
        return None
    return ident, seq


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lispd.lab.pinger", description=__doc__)
    p.add_argument("dst", help="IPv4 or IPv6 address")
    p.add_argument("-c", "--count", type=int, default=1)
    p.add_argument("-W", "--wait", type=float, default=1.0, help="seconds to wait for a reply")
    p.add_argument("-i", "--interval", type=float, default=0.2)
    p.add_argument("-s", "--size", type=int, default=56, help="payload bytes")
    p.add_argument("-I", "--source", help="source address to bind")
    p.add_argument(
        "--df",
        action="store_true",
        help="never fragment (IPv4: set DF).  Default: IPv4 without DF, so routers fragment "
        "(the kernel's default for raw sockets would set DF); IPv6 fragments locally at the "
        "known path MTU, so the first packet larger than an unknown one is lost",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        dst = ipaddress.ip_address(args.dst)
    except ValueError as exc:
        print(f"pinger: {exc}", file=sys.stderr)
        return 2
    family = dst.version
    af, proto = (
        (socket.AF_INET, socket.IPPROTO_ICMP)
        if family == 4
        else (socket.AF_INET6, socket.IPPROTO_ICMPV6)
    )
    try:
        sock = socket.socket(af, socket.SOCK_RAW, proto)
        if args.source:
            sock.bind((args.source, 0))
        if family == 4:
            mode = _PMTUDISC_DO if args.df else _PMTUDISC_DONT
            sock.setsockopt(socket.IPPROTO_IP, _IP_MTU_DISCOVER, mode)
        elif args.df:  # else the kernel default: fragment locally at the known path MTU
            sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_MTU_DISCOVER, _PMTUDISC_DO)
    except OSError as exc:
        print(f"pinger: {exc}", file=sys.stderr)
        return 2
    ident = os.getpid() & 0xFFFF
    payload = bytes(i & 0xFF for i in range(args.size))
    sent: dict[int, float] = {}
    received = 0
    with sock:
        for seq in range(1, args.count + 1):
            request = echo_request(family, ident, seq, payload)
            try:
                # Stamped before the send: a process descheduled inside sendto() would
                # otherwise report a round trip shorter than the real one.
                sent[seq] = time.monotonic()
                sock.sendto(request, (str(dst), 0))
            except OSError as exc:
                sent.pop(seq, None)
                print(f"seq={seq} send error: {exc}")
            deadline = time.monotonic() + (args.interval if seq < args.count else args.wait)
            while (left := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select([sock], [], [], left)
                if not ready:
                    break
                data, addr = sock.recvfrom(65535)
                reply = parse_reply(family, data)
                if reply is None or reply[0] != ident or reply[1] not in sent:
                    continue
                rtt = (time.monotonic() - sent.pop(reply[1])) * 1000
                received += 1
                print(f"reply from {addr[0]} seq={reply[1]} time={rtt:.3f} ms")
                if not sent and seq == args.count:
                    break
    print(f"sent={args.count} received={received}")
    return 0 if received else 1


if __name__ == "__main__":
    try:
        status = main()
    except Exception:  # a bug must not read as "no reply" (exit 1)
        traceback.print_exc()
        status = 2
    sys.exit(status)
