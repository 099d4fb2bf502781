"""ICMP "fragmentation needed" (IPv4) and "packet too big" (IPv6) messages, sent back to an
inner source whose packet does not fit the tunnel."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

from lispd.wire.ip import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    IPv4Header,
    IPv6Header,
    build_ip_header,
    internet_checksum,
)

IPV4_QUOTE_MAX = 548  # 576-byte datagram minus 20 (IP) and 8 (ICMP)
IPV6_MIN_MTU = 1280


def frag_needed_v4(pkt: bytes, mtu: int, src: IPv4Address) -> bytes:
    """ICMP type 3 code 4 to the source of IPv4 packet ``pkt`` with next-hop MTU ``mtu``."""
    quote = pkt[:IPV4_QUOTE_MAX]
    body = struct.pack("!BBHHH", 3, 4, 0, 0, mtu) + quote
    body = body[:2] + struct.pack("!H", internet_checksum(body)) + body[4:]
    ip = IPv4Header(src, IPv4Address(pkt[12:16]), ttl=64, protocol=PROTO_ICMP, dont_fragment=False)
    return build_ip_header(ip, len(body)) + body


def packet_too_big_v6(pkt: bytes, mtu: int, src: IPv6Address) -> bytes:
    """ICMPv6 Packet Too Big to the source of IPv6 packet ``pkt`` reporting ``mtu``."""
    dst = IPv6Address(pkt[8:24])
    quote = pkt[: IPV6_MIN_MTU - 40 - 8]
    body = struct.pack("!BBHI", 2, 0, 0, mtu) + quote
    pseudo = src.packed + dst.packed + struct.pack("!I3xB", len(body), PROTO_ICMPV6)
    body = body[:2] + struct.pack("!H", internet_checksum(pseudo + body)) + body[4:]
    ip = IPv6Header(src, dst, hop_limit=64, next_header=PROTO_ICMPV6)
    return build_ip_header(ip, len(body)) + body
