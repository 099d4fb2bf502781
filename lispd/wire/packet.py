"""Find and decode the LISP message in an IP packet: data (UDP 4341), control (UDP 4342) or
LISP-Trace (UDP 2434).  Used by ``lispd decode`` and by tests that read captures."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from lispd.wire.control import MESSAGE_NAMES, decode_control
from lispd.wire.data import (
    DATA_HEADER_LEN,
    IID_CONTROL,
    LISP_CONTROL_PORT,
    LISP_DATA_PORT,
    DataHeader,
    decode_data_header,
)
from lispd.wire.errors import BAD_LENGTH, TRUNCATED, WireError
from lispd.wire.ip import (
    IPV4_HEADER_LEN,
    IPV6_HEADER_LEN,
    PROTO_UDP,
    UDP_HEADER_LEN,
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
    part is malformed (``message`` is then None).  ``captured`` and ``length`` are set when
    only the start of the packet was there (a capture's snap length): the bytes present and
    the length its IP header states."""

    kind: str  # "data", "control" or "trace"
    ip: IpHeader
    sport: int
    dport: int
    message: Any = None
    inner: InnerPacket | None = None
    error: str | None = None
    error_detail: str = ""
    captured: int | None = None
    length: int | None = None
    # The type of a control message that failed to decode ("map-register"...), when known.
    message_type: str | None = None

    @property
    def truncated(self) -> bool:
        """Only the start of the packet was decoded (see ``captured`` and ``length``)."""
        return self.captured is not None


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


def _inner_packet(payload: bytes, header: DataHeader) -> InnerPacket | None:
    """The inner packet of a whole data packet: IP/UDP with the LISP message inside, else just
    the IP header (another protocol), else None."""
    inner = _decode_inner(payload, header)
    if inner is None:
        try:
            inner = InnerPacket(parse_ip_header(payload)[0])
        except WireError:
            inner = None
    return inner


def _udp_unfragmented(ip: IpHeader) -> bool:
    """The packet of ``ip`` carries UDP, and is no fragment (whose UDP header may be
    elsewhere)."""
    if isinstance(ip, IPv4Header):
        return ip.protocol == PROTO_UDP and not ip.more_fragments and not ip.fragment_offset
    return ip.next_header == PROTO_UDP


def _cut_headers(payload: bytes) -> tuple[IpHeader, int, int | None, int | None] | None:
    """(IP header, stated end, UDP source and destination port) of a packet of which
    ``payload`` may be only the start; the ports are None when not captured (or not UDP), the
    whole is None when not even the IP header was."""
    try:
        ip, hlen, end = parse_ip_header(payload, partial=True)
    except WireError:
        return None
    if not _udp_unfragmented(ip) or len(payload) < hlen + 4:
        return ip, end, None, None
    sport, dport = struct.unpack_from("!HH", payload, hlen)
    return ip, end, sport, dport


def _cut_inner(payload: bytes, header: DataHeader) -> InnerPacket | None:
    """The inner packet of a data packet the capture cut short: its IP header, and its UDP
    ports when they were captured; None when not even the IP header was."""
    found = _cut_headers(payload)
    if found is None:
        return None
    ip, end, sport, dport = found
    if end <= len(payload):  # the cut came after the inner packet
        return _inner_packet(payload, header)
    return InnerPacket(ip, sport, dport)


def _decode_cut(data: bytes) -> LispPacket | None:
    """A LISP packet of which ``data`` is only the start (a capture's snap length cut it):
    whatever headers are whole, with ``captured`` and ``length`` set.  None when ``data`` is
    not cut (its IP header states no more than is there) or is no UDP packet on a LISP port."""
    try:
        ip, hlen, length = parse_ip_header(data, partial=True)
    except WireError:
        return None
    if length <= len(data) or not _udp_unfragmented(ip) or len(data) < hlen + 4:
        return None
    sport, dport = struct.unpack_from("!HH", data, hlen)
    kind = _kind(sport, dport)
    if kind is None:
        return None
    captured = len(data)

    def failed(layer: str, reason: str, detail: str, message_type: str | None = None) -> LispPacket:
        return LispPacket(
            layer,
            ip,
            sport,
            dport,
            error=reason,
            error_detail=detail,
            captured=captured,
            length=length,
            message_type=message_type,
        )

    if captured < hlen + UDP_HEADER_LEN:
        return failed(kind, TRUNCATED, "UDP header")
    udp_length = struct.unpack_from("!H", data, hlen + 4)[0]
    if udp_length < UDP_HEADER_LEN or hlen + udp_length > length:
        return failed(
            kind, BAD_LENGTH, f"UDP length {udp_length} with {length - hlen} bytes of IP payload"
        )
    payload = data[hlen + UDP_HEADER_LEN : hlen + udp_length]
    if kind == "control" and dport != LISP_CONTROL_PORT and _is_cut_data_map_notify(payload):
        kind = "data"
    if kind != "data" and hlen + udp_length > captured:
        # A message cut short: whatever its decoder would trip on first is the cut.
        named = _control_type_name(payload) if kind == "control" else None
        detail = f"{len(payload)} of the message's {udp_length - UDP_HEADER_LEN} bytes captured"
        return failed(kind, TRUNCATED, detail, named)
    try:
        if kind == "data":
            header = decode_data_header(payload)
            inner = _cut_inner(payload[DATA_HEADER_LEN:], header)
            return LispPacket(
                kind, ip, sport, dport, header, inner, captured=captured, length=length
            )
        message = decode_control(payload) if kind == "control" else decode_trace(payload)
        return LispPacket(kind, ip, sport, dport, message, captured=captured, length=length)
    except WireError as exc:
        named = _control_type_name(payload) if kind == "control" else None
        return failed(kind, exc.reason, exc.detail, named)


def _is_cut_data_map_notify(payload: bytes) -> bool:
    """:func:`_is_data_map_notify` for a payload cut short: the inner ports are enough."""
    if len(payload) <= DATA_HEADER_LEN or not payload[0] & 0x08 or payload[4:7] != b"\xff" * 3:
        return False
    found = _cut_headers(payload[DATA_HEADER_LEN:])
    return found is not None and LISP_CONTROL_PORT in found[2:]


def _control_type_name(payload: bytes) -> str | None:
    """The type name of the control message ``payload`` starts with (None: empty)."""
    if not payload:
        return None
    msg_type = payload[0] >> 4
    return MESSAGE_NAMES.get(msg_type, f"type {msg_type}")


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


def decode_ip_packet(data: bytes, cut: bool = False) -> LispPacket | None:
    """The LISP message in the IP packet ``data``; None when the packet is not LISP at all
    (not UDP, not on a LISP port, or an IP fragment).

    ``cut``: ``data`` may be only the start of the packet, a capture's snap length having cut
    the rest.  A packet whose IP header states more than ``data`` holds is then reported with
    the headers that are whole (outer IP and UDP, the LISP data header, the inner IP header and
    UDP ports) and ``captured`` / ``length`` set, instead of failing as ``truncated``; a
    control message or LISP-Trace cut short still reports its decoder's error (``truncated``).
    Without ``cut`` such a packet is malformed (``error`` ``truncated``), as on the wire."""
    try:
        dg = parse_udp_datagram(data)
    except WireError as exc:
        if cut:
            partial = _decode_cut(data)
            if partial is not None:
                return partial
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
        inner = _inner_packet(dg.payload[DATA_HEADER_LEN:], header)
        return LispPacket(kind, dg.ip, dg.sport, dg.dport, header, inner)
    except WireError as exc:
        return LispPacket(
            kind,
            dg.ip,
            dg.sport,
            dg.dport,
            error=exc.reason,
            error_detail=exc.detail,
            message_type=_control_type_name(dg.payload) if kind == "control" else None,
        )
