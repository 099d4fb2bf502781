"""A minimal xTR that reads the underlay the way Open Overlay Router and lispers.net do: every
frame an AF_PACKET socket captures on the RLOC interface is taken for one LISP packet.

Run inside a namespace (``python -m tests.netns.raw_xtr ...``, as root).  It opens a TUN,
routes ``--route`` prefixes into it, and then:

- underlay -> TUN: for each IPv4 frame to UDP 4341 the packet socket captures (incoming only),
  strip the outer IP and UDP headers and exactly one 8-byte LISP header, and write the inner
  packet (cut at its own IP total length) to the TUN.  A UDP GSO burst that reaches the
  interface unsegmented is one such frame: all of it but its first inner packet is lost, as
  with those implementations.
- TUN -> underlay: each packet read from the TUN gets a LISP header (N bit and a nonce) and
  is sent in a UDP datagram from ``--local``:4341 to ``--peer``:4341.

It prints ``ready`` once set up; on SIGTERM it prints one JSON object of what it saw and exits:
``frames`` (captured LISP frames), ``decapsulated`` (written to the TUN), ``encapsulated``,
``largest`` (the longest frame, bytes of IP packet), ``oversized`` (frames longer than the
link MTU), ``carried`` (inner packets in those frames, estimated from the first inner packet's
length as the segment size), ``malformed``, and ``mtu`` (the link MTU).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytun

ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33
LISP_DATA_PORT = 4341
LISP_HDR = 8


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iface", required=True, help="the RLOC interface to capture on")
    p.add_argument("--local", required=True, help="this xTR's RLOC (IPv4)")
    p.add_argument("--peer", required=True, help="the other xTR's RLOC (IPv4)")
    p.add_argument("--route", action="append", default=[], help="prefix routed into the TUN")
    p.add_argument("--tun", default="rawxtr0")
    p.add_argument("--tun-mtu", type=int, default=1400)
    return p


class RawXtr:
    """The two loops' state and counters (see the module docstring)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.link_mtu = int(Path(f"/sys/class/net/{args.iface}/mtu").read_text())
        self.tun = pytun.TunTapDevice(name=args.tun, flags=pytun.IFF_TUN | pytun.IFF_NO_PI)
        self.tun.mtu = args.tun_mtu
        self.tun.up()
        os.set_blocking(self.tun.fileno(), False)
        for prefix in args.route:
            subprocess.run(["ip", "route", "add", prefix, "dev", self.tun.name], check=True)
        self.capture = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
        self.capture.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        self.capture.bind((args.iface, ETH_P_IP))
        self.capture.setblocking(False)
        # bound to 4341 so the kernel does not answer the ITR's datagrams with ICMP; never read
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.udp.bind((args.local, LISP_DATA_PORT))
        self.udp.setblocking(False)
        self.peer = (args.peer, LISP_DATA_PORT)
        self.buf = bytearray(256 * 1024)
        self.counts = dict.fromkeys(
            ("frames", "decapsulated", "encapsulated", "largest", "oversized", "carried",
             "malformed"),
            0,
        )  # fmt: skip
        self.counts["mtu"] = self.link_mtu

    def from_underlay(self) -> None:
        """Every captured frame: one LISP header off, one inner packet to the TUN."""
        view = memoryview(self.buf)
        while True:
            try:
                n, addr = self.capture.recvfrom_into(self.buf, 0, socket.MSG_TRUNC)
            except BlockingIOError:
                return
            if addr[2] == PACKET_OUTGOING or n > len(self.buf):
                continue
            pkt = view[:n]
            if n < 20 or pkt[0] >> 4 != 4 or pkt[9] != socket.IPPROTO_UDP:
                continue
            ihl = (pkt[0] & 0x0F) * 4
            if n < ihl + 8 + LISP_HDR + 20:
                continue
            (dport,) = struct.unpack_from("!H", pkt, ihl + 2)
            if dport != LISP_DATA_PORT:
                continue
            c = self.counts
            c["frames"] += 1
            c["largest"] = max(c["largest"], n)
            inner = pkt[ihl + 8 + LISP_HDR :]
            if inner[0] >> 4 != 4:
                c["malformed"] += 1
                continue
            (inner_len,) = struct.unpack_from("!H", inner, 2)
            if not 20 <= inner_len <= len(inner):
                c["malformed"] += 1
                continue
            if n > self.link_mtu:
                c["oversized"] += 1
                segment = LISP_HDR + inner_len
                c["carried"] += -(-(n - ihl - 8) // segment)
            try:
                os.write(self.tun.fileno(), inner[:inner_len])
                c["decapsulated"] += 1
            except BlockingIOError:
                pass

    def from_tun(self) -> None:
        """Every packet the TUN hands over, encapsulated toward the peer."""
        while True:
            try:
                inner = os.read(self.tun.fileno(), 65536)
            except BlockingIOError:
                return
            header = bytes([0x80]) + secrets.token_bytes(3) + bytes(4)  # N bit, nonce
            try:
                self.udp.sendto(header + inner, self.peer)
                self.counts["encapsulated"] += 1
            except BlockingIOError:
                pass


def main(argv: list[str] | None = None) -> int:
    """Set up, print ``ready``, forward until SIGTERM, print the counts."""
    args = _parser().parse_args(argv)
    stop = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    xtr = RawXtr(args)
    poller = select.poll()
    poller.register(xtr.capture.fileno(), select.POLLIN)
    poller.register(xtr.tun.fileno(), select.POLLIN)
    print("ready", flush=True)
    while not stop:
        for fd, _ in poller.poll(100):
            if fd == xtr.capture.fileno():
                xtr.from_underlay()
            else:
                xtr.from_tun()
    print(json.dumps(xtr.counts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
