"""Encapsulated Control Message (type 8, RFC 9301 section 5.8).

``ECM header (4 bytes) | inner IPv4/IPv6 | inner UDP | LISP control message``.  The inner
message is decoded too; an ECM inside an ECM is refused.  LISP-SEC authentication data (S bit)
is not interpreted: such ECMs are refused with reason ``unsupported-type``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lispd.wire.errors import (
    BAD_TYPE,
    TRAILING_BYTES,
    TRUNCATED,
    UNSUPPORTED_TYPE,
    EncodeError,
    WireError,
)
from lispd.wire.ip import (
    UDP_HEADER_LEN,
    IpHeader,
    UdpDatagram,
    build_udp_datagram,
    parse_ip_header,
    parse_udp_datagram,
)

if TYPE_CHECKING:
    from lispd.wire.control import ControlMessage

TYPE_ECM = 8

F_SECURITY = 0x08000000
F_DDT = 0x04000000
F_TO_ETR = 0x02000000
F_TO_MS = 0x01000000
F_RTR = 0x00400000  # "process at RTR" (NAT traversal, OOR's placement)
F_RELAYED = 0x00200000  # "relayed by RTR"
_RESERVED = 0x009FFFFF


@dataclass(frozen=True, slots=True)
class EncapsulatedControl:
    """An ECM: a control message wrapped in an inner IP/UDP header addressed to the EID."""

    inner_ip: IpHeader
    sport: int
    dport: int
    message: ControlMessage
    ddt: bool = False
    to_etr: bool = False
    to_ms: bool = False
    rtr: bool = False
    relayed: bool = False
    zero_checksum: bool = False
    reserved: int = 0


def decode_ecm(data: bytes) -> EncapsulatedControl:
    """Decode an ECM and the control message inside it."""
    from lispd.wire.control import decode_control

    if len(data) < 4:
        raise WireError(TRUNCATED, "ECM header")
    (word0,) = struct.unpack_from("!I", data)
    if word0 >> 28 != TYPE_ECM:
        raise WireError(BAD_TYPE, f"type {word0 >> 28} is not an ECM")
    if word0 & F_SECURITY:
        raise WireError(UNSUPPORTED_TYPE, "LISP-SEC ECM authentication data")
    inner = parse_udp_datagram(data[4:])
    _, hlen, end = parse_ip_header(data[4:])
    if end != len(data) - 4 or hlen + UDP_HEADER_LEN + len(inner.payload) != end:
        raise WireError(TRAILING_BYTES, "bytes after the ECM's inner UDP datagram")
    if inner.payload[:1] and inner.payload[0] >> 4 == TYPE_ECM:
        raise WireError(BAD_TYPE, "ECM inside an ECM")
    message = decode_control(inner.payload)
    return EncapsulatedControl(
        inner_ip=inner.ip,
        sport=inner.sport,
        dport=inner.dport,
        message=message,
        ddt=bool(word0 & F_DDT),
        to_etr=bool(word0 & F_TO_ETR),
        to_ms=bool(word0 & F_TO_MS),
        rtr=bool(word0 & F_RTR),
        relayed=bool(word0 & F_RELAYED),
        zero_checksum=inner.zero_checksum,
        reserved=word0 & _RESERVED,
    )


def encode_ecm(m: EncapsulatedControl) -> bytes:
    """Bytes of an ECM (inner IPv4 header checksum and inner UDP length/checksum computed)."""
    from lispd.wire.control import encode_control

    word0 = (TYPE_ECM << 28) | (m.reserved & _RESERVED)
    for flag, on in (
        (F_DDT, m.ddt),
        (F_TO_ETR, m.to_etr),
        (F_TO_MS, m.to_ms),
        (F_RTR, m.rtr),
        (F_RELAYED, m.relayed),
    ):
        if on:
            word0 |= flag
    if isinstance(m.message, EncapsulatedControl):
        raise EncodeError("an ECM cannot carry an ECM")
    inner = UdpDatagram(m.inner_ip, m.sport, m.dport, encode_control(m.message), m.zero_checksum)
    return struct.pack("!I", word0) + build_udp_datagram(inner)
