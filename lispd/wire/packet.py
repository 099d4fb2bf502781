"""Find and decode the LISP message in an IP packet: data (UDP 4341), control (UDP 4342) or
LISP-Trace (UDP 2434).  Used by ``lispd decode`` and by tests that read captures."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from lispd.wire.control import decode_control
from lispd.wire.data import (
    DATA_HEADER_LEN,
    IID_CONTROL,
    LISP_CONTROL_PORT,
    LISP_DATA_PORT,
    DataHeader,
    decode_data_header,
)
from lispd.wire.errors import WireError
from lispd.wire.ip import (
    IPV4_HEADER_LEN,
    IPV6_HEADER_LEN,
    PROTO_UDP,
    IpHeader,
    IPv4Header,
    IPv6Header,
    parse_ip_header,
    parse_udp_datagram,
)
from lispd.wire.trace import TRACE_PORT, decode_trace

LISP_PORTS = frozenset({LISP_DATA_PORT, LISP_CONTROL_PORT, TRACE_PORT})


@dataclass(frozen=True, slots=True)
class InnerPacket:
    """What a data packet carries: the inner IP header, and the LISP message inside it when the
    inner packet is itself LISP control (IID 0xFFFFFF or port 4342) or a LISP-Trace."""

    ip: IpHeader
    sport: int | None = None
    dport: int | None = None
    message: Any = None


@dataclass(frozen=True, slots=True)
class LispPacket:
    """One LISP message found in an IP packet.  ``error`` is a WireError reason when the LISP
    part is malformed (``message`` is then None)."""

    kind: str  # "data", "control" or "trace"
    ip: IpHeader
    sport: int
    dport: int
    message: Any = None
    inner: InnerPacket | None = None
    error: str | None = None
    error_detail: str = ""


_PORT_KINDS = ((LISP_CONTROL_PORT, "control"), (LISP_DATA_PORT, "data"), (TRACE_PORT, "trace"))


def _kind(sport: int, dport: int) -> str | None:
    """The destination port decides; the source port when the destination is not a LISP port
    (a reply to an ephemeral port)."""
    for port in (dport, sport):
        for lisp_port, kind in _PORT_KINDS:
            if port == lisp_port:
                return kind
    return None


def _is_data_map_notify(payload: bytes) -> bool:
    """A LISP data header with IID 0xFFFFFF carrying IP/UDP to or from 4342: the Map-Notify
    an RTR relays from its port 4342 to a NATed xTR's translated port, which the port-based
    guess would take for a control message."""
    if len(payload) <= DATA_HEADER_LEN or not payload[0] & 0x08 or payload[4:7] != b"\xff" * 3:
        return False
    try:
        inner = parse_udp_datagram(payload[DATA_HEADER_LEN:])
    except WireError:
        return False
    return LISP_CONTROL_PORT in (inner.sport, inner.dport)


def _decode_inner(payload: bytes, header: DataHeader) -> InnerPacket | None:
    try:
        dg = parse_udp_datagram(payload)
    except WireError:
        return None
    message: Any = None
    if header.iid == IID_CONTROL or LISP_CONTROL_PORT in (dg.sport, dg.dport):
        message = decode_control(dg.payload)
    elif TRACE_PORT in (dg.sport, dg.dport):
        message = decode_trace(dg.payload)
    return InnerPacket(dg.ip, dg.sport, dg.dport, message)


def _broken_udp(data: bytes, exc: WireError) -> LispPacket | None:
    """A packet on a LISP port whose IP/UDP framing is broken (often a capture cut short by
    its snap length) is reported with the framing error; anything else is not LISP."""
    if len(data) < 1 or data[0] >> 4 not in (4, 6):
        return None
    if data[0] >> 4 == 4:
        hlen = (data[0] & 0xF) * 4
        if len(data) < max(hlen, IPV4_HEADER_LEN) + 4 or data[9] != PROTO_UDP:
            return None
        ip: IpHeader = IPv4Header(IPv4Address(data[12:16]), IPv4Address(data[16:20]), data[8])
    else:
        hlen = IPV6_HEADER_LEN
        if len(data) < hlen + 4 or data[6] != PROTO_UDP:
            return None
        ip = IPv6Header(IPv6Address(data[8:24]), IPv6Address(data[24:40]), data[7])
    sport, dport = struct.unpack_from("!HH", data, hlen)
    kind = _kind(sport, dport)
    if kind is None:
        return None
    return LispPacket(kind, ip, sport, dport, error=exc.reason, error_detail=exc.detail)


def decode_ip_packet(data: bytes) -> LispPacket | None:
    """The LISP message in the IP packet ``data``; None when the packet is not LISP at all
    (not UDP, not on a LISP port, or an IP fragment)."""
    try:
        dg = parse_udp_datagram(data)
    except WireError as exc:
        return _broken_udp(data, exc)
    kind = _kind(dg.sport, dg.dport)
    if kind is None:
        return None
    if kind == "control" and dg.dport != LISP_CONTROL_PORT and _is_data_map_notify(dg.payload):
        kind = "data"
    try:
        if kind == "control":
            return LispPacket(kind, dg.ip, dg.sport, dg.dport, decode_control(dg.payload))
        if kind == "trace":
            return LispPacket(kind, dg.ip, dg.sport, dg.dport, decode_trace(dg.payload))
        header = decode_data_header(dg.payload)
        inner_bytes = dg.payload[DATA_HEADER_LEN:]
        inner = _decode_inner(inner_bytes, header)
        if inner is None:
            try:
                inner = InnerPacket(parse_ip_header(inner_bytes)[0])
            except WireError:
                inner = None
        return LispPacket(kind, dg.ip, dg.sport, dg.dport, header, inner)
    except WireError as exc:
        return LispPacket(
            kind, dg.ip, dg.sport, dg.dport, error=exc.reason, error_detail=exc.detail
        )
