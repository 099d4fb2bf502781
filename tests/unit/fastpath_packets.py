"""What the compiled fast path's tests share: inner IPv4/IPv6 packets built by hand (so that
every field -- IHL and options, fragment bits, length fields, checksums -- can be set or broken),
hypothesis strategies drawing them, the checks the segmentation and merging tests make, and the
skip when the extension is not built."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

import pytest
from hypothesis import strategies as st

from lispd.engine import compiled
from lispd.wire.ip import internet_checksum

PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_GRE, PROTO_ICMP6, PROTO_SCTP = 1, 6, 17, 47, 58, 132
PROTO_FRAGMENT6 = 44  # an IPv6 fragment header: no ports after the fixed header

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80

VNET_F_NEEDS_CSUM = 1
VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_GSO_TCPV6 = 0, 1, 4

_VNET = struct.Struct("<BBHHHH")


def require_accel() -> Any:
    """The ``lispd.engine._accel`` module; skips the calling test module when lispd was
    built without it (no C compiler: the pure-Python path runs and there is nothing to
    compare)."""
    if not compiled.available():
        pytest.skip(
            "lispd.engine._accel is not built (setup.py build_ext --inplace)",
            allow_module_level=True,
        )
    return compiled._accel


def packed(text: str) -> bytes:
    """The packed form of an address given as text."""
    return ip_address(text).packed


# --- building packets ----------------------------------------------------------------------


def ipv4(
    src: bytes,
    dst: bytes,
    proto: int,
    payload: bytes,
    *,
    ttl: int = 64,
    tos: int = 0,
    df: bool = True,
    mf: bool = False,
    frag_offset: int = 0,
    ident: int = 1,
    options: bytes = b"",
) -> bytes:
    """An IPv4 packet with a valid header checksum; ``options`` (a multiple of 4 bytes) make
    the IHL larger than 5; ``frag_offset`` is in 8-byte units."""
    assert len(options) % 4 == 0 and len(options) <= 40
    ihl = 5 + len(options) // 4
    frag = (0x4000 if df else 0) | (0x2000 if mf else 0) | frag_offset
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        tos,
        ihl * 4 + len(payload),
        ident,
        frag,
        ttl,
        proto,
        0,
        src,
        dst,
    )
    header += options
    checksum = internet_checksum(header)
    return header[:10] + struct.pack("!H", checksum) + header[12:] + payload


def ipv6(
    src: bytes,
    dst: bytes,
    next_header: int,
    payload: bytes,
    *,
    hlim: int = 64,
    tclass: int = 0,
    flow: int = 0,
) -> bytes:
    """An IPv6 packet (no extension headers unless ``payload`` starts with one)."""
    first = 0x60000000 | tclass << 20 | flow
    return struct.pack("!IHBB16s16s", first, len(payload), next_header, hlim, src, dst) + payload


def pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    """The IPv4 or IPv6 pseudo-header transport checksums cover."""
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!I3xB", length, proto)


def tcp_segment(
    src: bytes,
    dst: bytes,
    *,
    sport: int = 40000,
    dport: int = 80,
    seq: int = 1000,
    ack: int = 5000,
    flags: int = ACK,
    payload: bytes = b"",
    window: int = 65000,
    options: bytes = b"",
    urgent: int = 0,
) -> bytes:
    """A TCP header (+ ``options``, a multiple of 4 bytes) and payload, checksum valid for
    the addresses ``src`` and ``dst``."""
    assert len(options) % 4 == 0
    offset = (20 + len(options)) // 4
    header = struct.pack(
        "!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack, offset << 4, flags, window, 0, urgent
    )
    segment = header + options + payload
    checksum = internet_checksum(pseudo_header(src, dst, PROTO_TCP, len(segment)) + segment)
    return segment[:16] + struct.pack("!H", checksum) + segment[18:]


def udp_segment(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    """A UDP header and payload with a valid checksum (0xFFFF when it computes to zero)."""
    segment = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    checksum = internet_checksum(pseudo_header(src, dst, PROTO_UDP, len(segment)) + segment)
    return segment[:6] + struct.pack("!H", checksum or 0xFFFF) + segment[8:]


def ip_packet(src: bytes, dst: bytes, proto: int, l4: bytes, **ip: Any) -> bytes:
    """``l4`` in an IPv4 or IPv6 packet, by the length of the addresses; ``ip`` holds the
    keyword arguments of :func:`ipv4` or :func:`ipv6`."""
    if len(src) == 4:
        return ipv4(src, dst, proto, l4, **ip)
    return ipv6(src, dst, proto, l4, **ip)


def tcp_packet(src: bytes, dst: bytes, ip: dict[str, Any] | None = None, **tcp: Any) -> bytes:
    """A complete TCP/IP packet (``tcp``: the arguments of :func:`tcp_segment`)."""
    return ip_packet(src, dst, PROTO_TCP, tcp_segment(src, dst, **tcp), **(ip or {}))


def udp_packet(
    src: bytes,
    dst: bytes,
    sport: int = 1000,
    dport: int = 2000,
    payload: bytes = b"hello",
    **ip: Any,
) -> bytes:
    """A complete UDP/IP packet."""
    return ip_packet(src, dst, PROTO_UDP, udp_segment(src, dst, sport, dport, payload), **ip)


def timestamp_option(tsval: int, tsecr: int) -> bytes:
    """NOP, NOP, TCP timestamps: the 12 option bytes Linux puts on every segment."""
    return b"\x01\x01\x08\x0a" + struct.pack("!II", tsval, tsecr)


def lisp_header(flags: int = 0x88, nonce: int = 0x123456, iid: int = 0, lsb: int = 0) -> bytes:
    """An 8-byte LISP data header with any first byte (N, L, E, V, I, R, K bits)."""
    return bytes([flags]) + nonce.to_bytes(3, "big") + iid.to_bytes(3, "big") + bytes([lsb])


def vnet_header(
    flags: int = 0,
    gso_type: int = VNET_GSO_NONE,
    hdr_len: int = 0,
    gso_size: int = 0,
    csum_start: int = 0,
    csum_offset: int = 0,
) -> bytes:
    """A struct virtio_net_hdr (10 bytes, little-endian as the TUN device uses it here)."""
    return _VNET.pack(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


@dataclass(frozen=True)
class VnetHeader:
    """The fields of a virtio_net_hdr."""

    flags: int
    gso_type: int
    hdr_len: int
    gso_size: int
    csum_start: int
    csum_offset: int


def read_vnet(data: bytes) -> VnetHeader:
    """The virtio_net_hdr at the start of ``data``."""
    return VnetHeader(*_VNET.unpack_from(data))


# --- reading packets -----------------------------------------------------------------------


@dataclass(frozen=True)
class TcpView:
    """The fields of a TCP/IP packet the offload tests look at."""

    version: int
    l3len: int
    l4len: int
    ip_length: int  # IPv4 total length, or IPv6 payload length
    ident: int  # IPv4 identification (0 for IPv6)
    seq: int
    flags: int
    payload: bytes


def tcp_view(pkt: bytes) -> TcpView:
    """Read a TCP/IP packet without extension headers."""
    version = pkt[0] >> 4
    if version == 4:
        l3 = (pkt[0] & 0x0F) * 4
        ip_length, ident = struct.unpack_from("!HH", pkt, 2)
    else:
        l3, ident = 40, 0
        (ip_length,) = struct.unpack_from("!H", pkt, 4)
    l4 = (pkt[l3 + 12] >> 4) * 4
    (seq,) = struct.unpack_from("!I", pkt, l3 + 4)
    return TcpView(version, l3, l4, ip_length, ident, seq, pkt[l3 + 13], pkt[l3 + l4 :])


def addresses(pkt: bytes) -> tuple[bytes, bytes]:
    """(source, destination) of an IPv4 or IPv6 packet."""
    if pkt[0] >> 4 == 4:
        return pkt[12:16], pkt[16:20]
    return pkt[8:24], pkt[24:40]


def ipv4_checksum_ok(pkt: bytes) -> bool:
    """True when the IPv4 header checksum verifies."""
    return internet_checksum(pkt[: (pkt[0] & 0x0F) * 4]) == 0


def transport_checksum_ok(pkt: bytes, proto: int = PROTO_TCP) -> bool:
    """True when the TCP (or UDP) checksum of a packet without extension headers verifies."""
    l3 = (pkt[0] & 0x0F) * 4 if pkt[0] >> 4 == 4 else 40
    src, dst = addresses(pkt)
    segment = pkt[l3:]
    return internet_checksum(pseudo_header(src, dst, proto, len(segment)) + segment) == 0


# --- hypothesis strategies -----------------------------------------------------------------

_PORTS = st.one_of(st.sampled_from([2434, 4341, 4342, 80, 443, 0, 65535]), st.integers(0, 65535))
_OPTIONS4 = st.sampled_from(
    [b"", b"", b"", b"\x01\x01\x01\x00", b"\x94\x04\x00\x00" * 2, b"\x01" * 40]
)
_SMALL_OR_NEAR_MTU = st.one_of(st.integers(0, 48), st.integers(1180, 1240), st.integers(1340, 1470))


@st.composite
def inner_packets(
    draw: st.DrawFn, sources: dict[int, list[str]], destinations: dict[int, list[str]]
) -> bytes:
    """A well-formed IPv4 or IPv6 packet from one of ``sources`` to one of ``destinations``
    (by version): TCP, UDP, SCTP, ICMP or another protocol, fragments, IPv4 options, any TTL
    and TOS / traffic class, ports including the LISP-Trace one (2434), sizes up to just past
    the tunnel MTU, and transport headers shorter than the ports sometimes."""
    version = draw(st.sampled_from([4, 6]))
    src = packed(draw(st.sampled_from(sources[version])))
    dst = packed(draw(st.sampled_from(destinations[version])))
    protos = [PROTO_TCP, PROTO_UDP, PROTO_UDP, PROTO_SCTP, PROTO_GRE]
    protos += [PROTO_ICMP] if version == 4 else [PROTO_ICMP6, PROTO_FRAGMENT6]
    proto = draw(st.sampled_from(protos))
    sport, dport = draw(_PORTS), draw(_PORTS)
    size = draw(_SMALL_OR_NEAR_MTU)
    body = bytes((i * 7 + size) & 0xFF for i in range(size))
    if proto == PROTO_TCP:
        l4 = tcp_segment(src, dst, sport=sport, dport=dport, seq=draw(st.integers(0, 2**32 - 1)))
        l4 += body
    elif proto == PROTO_UDP:
        l4 = udp_segment(src, dst, sport, dport, body)
    elif proto == PROTO_SCTP:
        l4 = struct.pack("!HHII", sport, dport, 0xC0FFEE, 0) + body
    else:
        l4 = struct.pack("!HH", sport, dport) + body
    if draw(st.integers(0, 9)) == 0:
        l4 = l4[: draw(st.integers(0, 3))]  # shorter than the ports
    ttl, tos = draw(st.integers(0, 255)), draw(st.integers(0, 255))
    if version == 6:
        flow = draw(st.sampled_from([0, 0x12345, 0xFFFFF]))
        return ipv6(src, dst, proto, l4, hlim=ttl, tclass=tos, flow=flow)
    fragment = draw(st.sampled_from(["none", "none", "none", "first", "middle", "last"]))
    return ipv4(
        src,
        dst,
        proto,
        l4,
        ttl=ttl,
        tos=tos,
        df=draw(st.booleans()),
        mf=fragment in ("first", "middle"),
        frag_offset=0 if fragment in ("none", "first") else draw(st.integers(1, 0x1FFF)),
        ident=draw(st.integers(0, 65535)),
        options=draw(_OPTIONS4),
    )


@st.composite
def mangled(draw: st.DrawFn, packets: st.SearchStrategy[bytes]) -> bytes:
    """A packet of ``packets`` broken one way: cut short, grown by a byte, a header byte
    (version/IHL, a length, the protocol) or any byte overwritten."""
    pkt = bytearray(draw(packets))
    how = draw(st.sampled_from(["cut", "grow", "first", "length", "proto", "any"]))
    if how == "cut":
        del pkt[draw(st.integers(0, max(0, len(pkt) - 1))) :]
    elif how == "grow":
        pkt.append(draw(st.integers(0, 255)))
    elif how == "first":
        pkt[0] = draw(st.integers(0, 255))
    elif how == "length":
        at = 2 if pkt[0] >> 4 == 4 else 4
        pkt[at : at + 2] = draw(st.integers(0, 65535)).to_bytes(2, "big")
    elif how == "proto":
        pkt[9 if pkt[0] >> 4 == 4 else 6] = draw(st.integers(0, 255))
    else:
        pkt[draw(st.integers(0, len(pkt) - 1))] = draw(st.integers(0, 255))
    return bytes(pkt)


def address_text(packed_address: bytes) -> str:
    """An address from its packed form, as text."""
    if len(packed_address) == 4:
        return str(IPv4Address(packed_address))
    return str(IPv6Address(packed_address))
