"""Reading and fixing inner (EID) IP headers on the packet path.

Functions take and return ``bytes``/``bytearray`` and plain ints: no dataclass per packet.
"""

from __future__ import annotations

from typing import NamedTuple
from zlib import crc32

PROTO_TCP = 6
PROTO_UDP = 17
PROTO_SCTP = 132
_PORT_PROTOCOLS = frozenset({PROTO_TCP, PROTO_UDP, PROTO_SCTP})

ECN_MASK = 0x03
ECN_NOT_ECT = 0x00
ECN_ECT1 = 0x01
ECN_ECT0 = 0x02
ECN_CE = 0x03


class InnerFlow(NamedTuple):
    """What the packet path needs from an inner packet's headers."""

    version: int
    # Slices of the packet: bytearray when it is one (an RTR's, TTL lowered in a copy).
    src: bytes | bytearray  # packed 4 or 16 bytes
    dst: bytes | bytearray
    protocol: int
    ports: bytes | bytearray  # 4 bytes (sport, dport) for unfragmented TCP/UDP/SCTP, else b""
    ttl: int
    tos: int  # IPv4 TOS or IPv6 traffic class (DSCP << 2 | ECN)
    dont_fragment: bool  # IPv4 DF; always True for IPv6 (routers never fragment it)


def parse_inner(pkt: bytes | bytearray) -> InnerFlow | None:
    """The flow fields of the IPv4/IPv6 packet ``pkt``; None when the header is malformed or
    the header's length disagrees with the packet's."""
    n = len(pkt)
    if n < 20:
        return None
    first = pkt[0]
    version = first >> 4
    if version == 4:
        ihl = (first & 0x0F) * 4
        if ihl < 20 or n < ihl or (pkt[2] << 8 | pkt[3]) != n:
            return None
        frag = pkt[6] << 8 | pkt[7]
        proto = pkt[9]
        ports: bytes | bytearray = b""
        if proto in _PORT_PROTOCOLS and not frag & 0x3FFF and n >= ihl + 4:
            ports = pkt[ihl : ihl + 4]
        return InnerFlow(
            4, pkt[12:16], pkt[16:20], proto, ports, pkt[8], pkt[1], bool(frag & 0x4000)
        )
    if version == 6:
        if n < 40 or (pkt[4] << 8 | pkt[5]) + 40 != n:
            return None
        proto = pkt[6]
        ports = pkt[40:44] if proto in _PORT_PROTOCOLS and n >= 44 else b""
        tclass = ((first & 0x0F) << 4) | (pkt[1] >> 4)
        return InnerFlow(6, pkt[8:24], pkt[24:40], proto, ports, pkt[7], tclass, True)
    return None


def inner_source(pkt: bytes) -> bytes:
    """The packed source address at its fixed place in an IPv4 or IPv6 header (by the version
    nibble; no other check: for a packet already known to be one, as traces and the SMR
    memory's samples are).  Shorter than an address when the packet is cut short."""
    return pkt[12:16] if pkt[0] >> 4 == 4 else pkt[8:24]


def inner_destination(pkt: bytes | memoryview) -> bytes | None:
    """The packed destination address of an IPv4/IPv6 packet whose header length fields agree
    with its size; None otherwise.  The decapsulation path needs no more than this."""
    n = len(pkt)
    if n < 20:
        return None
    version = pkt[0] >> 4
    if version == 4:
        if (pkt[2] << 8 | pkt[3]) != n or pkt[0] & 0x0F < 5:
            return None
        return bytes(pkt[16:20])
    if version == 6 and n >= 40 and (pkt[4] << 8 | pkt[5]) + 40 == n:
        return bytes(pkt[24:40])
    return None


def flow_hash(flow: InnerFlow) -> int:
    """A 32-bit hash of the inner 5-tuple (addresses and protocol only for fragments and
    port-less protocols, so all fragments of a datagram hash alike).  CRC-32 is deterministic
    across processes and restarts, unlike ``hash()``, so a flow keeps its RLOC and source port."""
    return crc32(flow.ports, crc32(flow.dst, crc32(flow.src, flow.protocol)))


def source_port(h: int) -> int:
    """The outer UDP source port for flow hash ``h``: in the dynamic range 49152-65535."""
    return 0xC000 | (h & 0x3FFF)


def _checksum_adjust(csum: int, old: int, new: int) -> int:
    """RFC 1624 incremental update of a ones' complement checksum for one 16-bit word."""
    total = (~csum & 0xFFFF) + (~old & 0xFFFF) + new
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ecn_decapsulate(outer_tos: int, inner_tos: int) -> int | None:
    """The inner ECN bits after decapsulation (RFC 6040 normal mode); None means drop (the
    outer packet says congestion-experienced but the inner one is not ECN-capable)."""
    outer = outer_tos & ECN_MASK
    inner = inner_tos & ECN_MASK
    if outer == ECN_CE:
        return None if inner == ECN_NOT_ECT else ECN_CE
    if outer == ECN_ECT1 and inner == ECN_ECT0:
        return ECN_ECT1
    return inner


def fix_inner_on_decap(pkt: bytes, outer_ttl: int, outer_tos: int) -> bytes | bytearray | None:
    """Apply RFC 9300's decapsulation rules to the inner packet: its TTL/hop limit becomes the
    lower of inner and outer, and congestion marks of the outer header carry over.  Returns the
    packet (rewritten in a copy when needed), or None when RFC 6040 says drop."""
    if pkt[0] >> 4 == 4:
        ttl, tos = pkt[8], pkt[1]
        ecn = tos & ECN_MASK
        outer_ecn = outer_tos & ECN_MASK
        if outer_ecn == ECN_CE or (outer_ecn == ECN_ECT1 and ecn == ECN_ECT0):
            new_ecn = ecn_decapsulate(outer_tos, tos)
            if new_ecn is None:
                return None
        else:
            new_ecn = ecn
        if ttl <= outer_ttl and new_ecn == ecn:
            return pkt
        buf = bytearray(pkt)
        csum = buf[10] << 8 | buf[11]
        if ttl > outer_ttl:
            # Only the TTL byte of the (TTL, protocol) word changes: RFC 1624 update, the way
            # routers patch the checksum when they decrement the TTL.
            buf[8] = outer_ttl
            csum = _checksum_adjust(csum, ttl << 8 | pkt[9], outer_ttl << 8 | pkt[9])
        if new_ecn != ecn:
            new_tos = (tos & ~ECN_MASK) | new_ecn
            buf[1] = new_tos
            csum = _checksum_adjust(csum, pkt[0] << 8 | tos, pkt[0] << 8 | new_tos)
        buf[10], buf[11] = csum >> 8, csum & 0xFF
        return buf
    ttl, tos = pkt[7], ((pkt[0] & 0x0F) << 4) | (pkt[1] >> 4)
    decap_ecn = ecn_decapsulate(outer_tos, tos)
    if decap_ecn is None:
        return None
    new_tos = (tos & ~ECN_MASK) | decap_ecn
    if ttl <= outer_ttl and new_tos == tos:
        return pkt
    buf = bytearray(pkt)
    buf[7] = min(ttl, outer_ttl)
    buf[0] = 0x60 | (new_tos >> 4)
    buf[1] = ((new_tos & 0x0F) << 4) | (pkt[1] & 0x0F)
    return buf


def decrement_ttl(pkt: bytes | bytearray) -> bytes | bytearray | None:
    """``pkt`` with its TTL/hop limit one lower, as a router forwarding it does (an RTR
    re-encapsulating without the kernel); None when it reaches zero (the packet must die)."""
    if pkt[0] >> 4 == 4:
        ttl = pkt[8]
        if ttl <= 1:
            return None
        buf = bytearray(pkt)
        buf[8] = ttl - 1
        csum = _checksum_adjust(buf[10] << 8 | buf[11], ttl << 8 | pkt[9], (ttl - 1) << 8 | pkt[9])
        buf[10], buf[11] = csum >> 8, csum & 0xFF
        return buf
    hops = pkt[7]
    if hops <= 1:
        return None
    buf = bytearray(pkt)
    buf[7] = hops - 1
    return buf
