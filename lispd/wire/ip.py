"""IPv4/IPv6 + UDP framing: the outer headers of LISP packets and the inner ones of ECMs.

Checksums: IPv4 headers always carry a correct header checksum.  UDP over IPv4 carries a real
checksum unless ``zero_checksum`` is asked for (lispd sends LISP data on IPv4 with checksum 0, as
RFC 9300 recommends).  UDP over IPv6 carries a real checksum by default; ``zero_checksum`` is
honoured for IPv6 too because RFC 9300 / RFC 6935 allow it for tunnel traffic on port 4341, but
lispd's own data plane computes it on IPv6 so that receivers need no special socket option.
Decoding accepts both and verifies a non-zero checksum only when asked.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from lispd.wire.errors import (
    BAD_FIELD,
    BAD_LENGTH,
    BAD_PROTOCOL,
    BAD_VERSION,
    TRUNCATED,
    EncodeError,
    WireError,
)

PROTO_UDP = 17
PROTO_ICMP = 1
PROTO_ICMPV6 = 58
IPV4_HEADER_LEN = 20
IPV6_HEADER_LEN = 40
UDP_HEADER_LEN = 8

_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_UDP = struct.Struct("!HHHH")


@dataclass(frozen=True, slots=True)
class IPv4Header:
    """The fields of an IPv4 header lispd reads or writes (lengths and checksum are derived)."""

    src: IPv4Address
    dst: IPv4Address
    ttl: int = 64
    tos: int = 0
    ident: int = 0
    dont_fragment: bool = True
    more_fragments: bool = False
    fragment_offset: int = 0
    protocol: int = PROTO_UDP
    options: bytes = b""


@dataclass(frozen=True, slots=True)
class IPv6Header:
    """The fields of an IPv6 header lispd reads or writes (no extension headers)."""

    src: IPv6Address
    dst: IPv6Address
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0
    next_header: int = PROTO_UDP


IpHeader = IPv4Header | IPv6Header


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """An IP + UDP packet with its payload."""

    ip: IpHeader
    sport: int
    dport: int
    payload: bytes
    zero_checksum: bool = False


def internet_checksum(data: bytes, initial: int = 0) -> int:
    """The 16-bit ones' complement checksum of ``data`` (RFC 1071)."""
    if len(data) % 2:
        data += b"\x00"
    total: int = initial + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo_header(ip: IpHeader, length: int) -> bytes:
    if isinstance(ip, IPv4Header):
        return ip.src.packed + ip.dst.packed + struct.pack("!BBH", 0, PROTO_UDP, length)
    return ip.src.packed + ip.dst.packed + struct.pack("!I3xB", length, PROTO_UDP)


def udp_checksum(ip: IpHeader, udp_segment: bytes) -> int:
    """The UDP checksum of ``udp_segment`` (header with checksum 0 + payload) under ``ip``."""
    value = internet_checksum(_pseudo_header(ip, len(udp_segment)) + udp_segment)
    return value or 0xFFFF


def build_ip_header(ip: IpHeader, payload_len: int) -> bytes:
    """The IPv4 or IPv6 header for a payload of ``payload_len`` bytes."""
    try:
        if isinstance(ip, IPv4Header):
            if len(ip.options) % 4 or len(ip.options) > 40:
                raise EncodeError("IPv4 options must be a multiple of 4 bytes, at most 40")
            ihl = 5 + len(ip.options) // 4
            total = ihl * 4 + payload_len
            if total > 0xFFFF:
                raise EncodeError(f"IPv4 packet of {total} bytes is too long")
            if not 0 <= ip.fragment_offset <= 0x1FFF:
                raise EncodeError("fragment offset is 13 bits")
            frag = (ip.dont_fragment << 14) | (ip.more_fragments << 13) | ip.fragment_offset
            head = (
                _IPV4.pack(
                    0x40 | ihl,
                    ip.tos,
                    total,
                    ip.ident,
                    frag,
                    ip.ttl,
                    ip.protocol,
                    0,
                    ip.src.packed,
                    ip.dst.packed,
                )
                + ip.options
            )
            csum = internet_checksum(head)
            return head[:10] + struct.pack("!H", csum) + head[12:]
        if payload_len > 0xFFFF:
            raise EncodeError(f"IPv6 payload of {payload_len} bytes is too long")
        if not (0 <= ip.traffic_class <= 0xFF and 0 <= ip.flow_label <= 0xFFFFF):
            raise EncodeError("traffic class is 8 bits and flow label 20 bits")
        word0 = (6 << 28) | (ip.traffic_class << 20) | ip.flow_label
        return _IPV6.pack(
            word0, payload_len, ip.next_header, ip.hop_limit, ip.src.packed, ip.dst.packed
        )
    except struct.error as exc:
        raise EncodeError(f"IP header field out of range: {exc}") from None


def build_udp_datagram(dg: UdpDatagram) -> bytes:
    """Bytes of ``dg``: IP header, UDP header (length and checksum filled in), payload."""
    length = UDP_HEADER_LEN + len(dg.payload)
    if length > 0xFFFF:
        raise EncodeError("UDP datagram too long")
    try:
        header = _UDP.pack(dg.sport, dg.dport, length, 0)
    except struct.error as exc:
        raise EncodeError(f"UDP port out of range: {exc}") from None
    segment = header + dg.payload
    if not dg.zero_checksum:
        csum = udp_checksum(dg.ip, segment)
        segment = segment[:6] + struct.pack("!H", csum) + segment[8:]
    return build_ip_header(dg.ip, length) + segment


def parse_ip_header(data: bytes, partial: bool = False) -> tuple[IpHeader, int, int]:
    """(header, header length, end of the IP packet) of the IPv4/IPv6 packet at ``data[0]``.

    Bytes past the IP total length (link-layer padding) are left out of the returned end.
    ``partial``: ``data`` may be only the start of the packet (a capture cut short by its snap
    length): the header must still be complete, and the end returned is the one the header
    states, which may lie past ``len(data)``.
    """
    if not data:
        raise WireError(TRUNCATED, "empty IP packet")
    version = data[0] >> 4
    if version == 4:
        if len(data) < IPV4_HEADER_LEN:
            raise WireError(TRUNCATED, "IPv4 header")
        vihl, tos, total, ident, frag, ttl, proto, _csum, src, dst = _IPV4.unpack_from(data)
        ihl = (vihl & 0xF) * 4
        if ihl < IPV4_HEADER_LEN or total < ihl:
            raise WireError(BAD_LENGTH, f"IPv4 ihl {ihl} total {total}")
        if total > len(data) and not partial:
            raise WireError(TRUNCATED, f"IPv4 total length {total} > {len(data)}")
        if ihl > len(data):
            raise WireError(TRUNCATED, f"IPv4 header of {ihl} bytes > {len(data)}")
        header = IPv4Header(
            IPv4Address(src),
            IPv4Address(dst),
            ttl,
            tos,
            ident,
            dont_fragment=bool(frag & 0x4000),
            more_fragments=bool(frag & 0x2000),
            fragment_offset=frag & 0x1FFF,
            protocol=proto,
            options=data[IPV4_HEADER_LEN:ihl],
        )
        return header, ihl, total
    if version == 6:
        if len(data) < IPV6_HEADER_LEN:
            raise WireError(TRUNCATED, "IPv6 header")
        word0, plen, nxt, hlim, src, dst = _IPV6.unpack_from(data)
        end = IPV6_HEADER_LEN + plen
        if end > len(data) and not partial:
            raise WireError(TRUNCATED, f"IPv6 payload length {plen} > {len(data) - 40}")
        header6 = IPv6Header(
            IPv6Address(src), IPv6Address(dst), hlim, (word0 >> 20) & 0xFF, word0 & 0xFFFFF, nxt
        )
        return header6, IPV6_HEADER_LEN, end
    raise WireError(BAD_VERSION, f"IP version {version}")


def parse_udp_datagram(data: bytes, verify_checksum: bool = False) -> UdpDatagram:
    """Decode an IP + UDP packet.  Fragments and other protocols are refused."""
    ip, hlen, end = parse_ip_header(data)
    if isinstance(ip, IPv4Header):
        if ip.more_fragments or ip.fragment_offset:
            raise WireError(BAD_PROTOCOL, "IPv4 fragment")
        proto = ip.protocol
    else:
        proto = ip.next_header
    if proto != PROTO_UDP:
        raise WireError(BAD_PROTOCOL, f"IP protocol {proto} is not UDP")
    if end - hlen < UDP_HEADER_LEN:
        raise WireError(TRUNCATED, "UDP header")
    sport, dport, length, csum = _UDP.unpack_from(data, hlen)
    if length < UDP_HEADER_LEN or hlen + length > end:
        raise WireError(BAD_LENGTH, f"UDP length {length} with {end - hlen} bytes of IP payload")
    segment = data[hlen : hlen + length]
    if verify_checksum and csum:
        zeroed = segment[:6] + b"\x00\x00" + segment[8:]
        if udp_checksum(ip, zeroed) != csum:
            raise WireError(BAD_FIELD, "UDP checksum")
    return UdpDatagram(ip, sport, dport, segment[UDP_HEADER_LEN:], zero_checksum=csum == 0)
