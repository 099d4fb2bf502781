"""Inner (EID) packets for the in-memory harness: ICMP echo and UDP over IPv4/IPv6 to inject at
a node's TUN, and a decoder for what a node writes to its TUN (delivered to the host)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

from lispd.wire.data import decode_data_header
from lispd.wire.ip import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_UDP,
    IPv4Header,
    IPv6Header,
    UdpDatagram,
    build_ip_header,
    build_udp_datagram,
    internet_checksum,
    parse_ip_header,
)

Address = IPv4Address | IPv6Address

ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST = 0, 8
ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY = 128, 129
LISP_HEADER_LEN = 8


def _address(value: str | Address) -> Address:
    return value if isinstance(value, IPv4Address | IPv6Address) else ip_address(value)


def _header(src: Address, dst: Address, ttl: int, proto: int) -> IPv4Header | IPv6Header:
    if isinstance(src, IPv4Address) and isinstance(dst, IPv4Address):
        return IPv4Header(src, dst, ttl=ttl, protocol=proto)
    if isinstance(src, IPv6Address) and isinstance(dst, IPv6Address):
        return IPv6Header(src, dst, hop_limit=ttl, next_header=proto)
    raise ValueError(f"{src} and {dst} are not of one address family")


def icmp_echo(
    src: str | Address,
    dst: str | Address,
    *,
    ident: int = 0x5157,
    seq: int = 1,
    payload: bytes = b"lispd-sim",
    reply: bool = False,
    ttl: int = 64,
) -> bytes:
    """An ICMP (IPv4) or ICMPv6 (IPv6) echo request (``reply``: echo reply), with checksums."""
    s, d = _address(src), _address(dst)
    v4 = s.version == 4
    kind = (
        (ICMP_ECHO_REPLY if reply else ICMP_ECHO_REQUEST)
        if v4
        else (ICMPV6_ECHO_REPLY if reply else ICMPV6_ECHO_REQUEST)
    )
    proto = PROTO_ICMP if v4 else PROTO_ICMPV6
    ip = _header(s, d, ttl, proto)
    body = struct.pack("!BBHHH", kind, 0, 0, ident, seq) + payload
    if v4:
        csum = internet_checksum(body)
    else:  # ICMPv6: the pseudo-header is part of the checksum
        pseudo = s.packed + d.packed + struct.pack("!I3xB", len(body), PROTO_ICMPV6)
        csum = internet_checksum(pseudo + body)
    body = body[:2] + struct.pack("!H", csum) + body[4:]
    return build_ip_header(ip, len(body)) + body


def udp_packet(
    src: str | Address,
    dst: str | Address,
    sport: int = 40000,
    dport: int = 9,
    payload: bytes = b"lispd-sim",
    *,
    ttl: int = 64,
) -> bytes:
    """An IPv4 or IPv6 UDP packet with a correct checksum."""
    s, d = _address(src), _address(dst)
    return build_udp_datagram(UdpDatagram(_header(s, d, ttl, PROTO_UDP), sport, dport, payload))


@dataclass(frozen=True)
class InnerPacket:
    """An IP packet as a host sees it (what a node wrote to its TUN)."""

    src: Address
    dst: Address
    proto: int
    ttl: int
    raw: bytes
    icmp_type: int | None = None
    ident: int | None = None
    seq: int | None = None
    sport: int | None = None
    dport: int | None = None
    payload: bytes = b""

    @property
    def is_echo_request(self) -> bool:
        return self.icmp_type in (ICMP_ECHO_REQUEST, ICMPV6_ECHO_REQUEST)

    @property
    def is_echo_reply(self) -> bool:
        return (self.proto, self.icmp_type) in (
            (PROTO_ICMP, ICMP_ECHO_REPLY),
            (PROTO_ICMPV6, ICMPV6_ECHO_REPLY),
        )

    def echo_reply(self) -> bytes:
        """The echo reply the destination host would send to this echo request."""
        assert self.is_echo_request and self.ident is not None and self.seq is not None
        return icmp_echo(self.dst, self.src, ident=self.ident, seq=self.seq,
                         payload=self.payload, reply=True)  # fmt: skip


def parse_inner(packet: bytes | bytearray) -> InnerPacket:
    """Decode an IPv4/IPv6 packet (ICMP echo and UDP in detail)."""
    data = bytes(packet)
    ip, hlen, end = parse_ip_header(data)
    if isinstance(ip, IPv4Header):
        proto, ttl = ip.protocol, ip.ttl
    else:
        proto, ttl = ip.next_header, ip.hop_limit
    body = data[hlen:end]
    fields: dict[str, object] = {}
    if proto in (PROTO_ICMP, PROTO_ICMPV6) and len(body) >= 8:
        kind, _code, _csum, ident, seq = struct.unpack_from("!BBHHH", body)
        fields = {"icmp_type": kind, "ident": ident, "seq": seq, "payload": body[8:]}
    elif proto == PROTO_UDP and len(body) >= 8:
        sport, dport = struct.unpack_from("!HH", body)
        fields = {"sport": sport, "dport": dport, "payload": body[8:]}
    return InnerPacket(ip.src, ip.dst, proto, ttl, data, **fields)  # type: ignore[arg-type]


def decode_lisp_data(payload: bytes) -> tuple[int | None, InnerPacket]:
    """(instance-ID or None, inner packet) of a LISP data datagram's UDP payload."""
    header = decode_data_header(payload)
    return header.iid, parse_inner(payload[LISP_HEADER_LEN:])
