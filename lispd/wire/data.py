"""The LISP data-plane header (RFC 9300 section 5.3) and whole encapsulated packets: lispd's one
codec of that header.

Layout of the 8-byte header: flags N L E V I R K K in the first byte, then 24 bits of nonce (N=1)
or source/destination map-versions (V=1), then 32 bits of locator-status-bits, or with I=1 a
24-bit instance-ID and 8 LSBs.

Any header, every field: :func:`decode_data_header` and :func:`encode_data_header`, over a
:class:`DataHeader`.  The packet path's header, without an object per packet:
:func:`build_data_header` writes what lispd sends (N and I set, nonce, instance-ID) and
:func:`read_data_header` reads what an ETR or RTR needs (instance-ID, key-id); both agree with the
full codec byte for byte (the C engine writes and reads the same bytes: ``fp_write_header``,
``parse_lisp_header``).

An encapsulated packet is ``outer IPv4/IPv6 | UDP (dport 4341) | LISP header | inner packet``;
:func:`encapsulate` and :func:`decapsulate` build and take apart the whole thing (see
:mod:`lispd.wire.ip` for the checksum rules).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from lispd.wire.errors import TRUNCATED, EncodeError, WireError
from lispd.wire.ip import IpHeader, UdpDatagram, build_udp_datagram, parse_udp_datagram

LISP_DATA_PORT = 4341
LISP_CONTROL_PORT = 4342
DATA_HEADER_LEN = 8
IID_CONTROL = 0xFFFFFF  # instance-ID marking a control message carried in the data path

FLAG_N = 0x80
FLAG_L = 0x40
FLAG_E = 0x20
FLAG_V = 0x10
FLAG_I = 0x08
FLAG_R = 0x04
KEY_ID_MASK = 0x03

_HEADER = struct.Struct("!II")
_WORD0_N_I = (FLAG_N | FLAG_I) << 24  # a nonce and an instance-ID: what lispd sends
_WORD0_I = FLAG_I << 24


@dataclass(frozen=True, slots=True)
class DataHeader:
    """The 8-byte LISP data header.

    ``nonce`` is meaningful when ``nonce_present``; the map-versions when ``map_version_present``
    (the two are exclusive on the wire; a header with both set is read as carrying a nonce, as
    RFC 9300 says).  ``lsbs`` is 32 bits wide without an instance-ID and 8 bits wide with one.
    """

    nonce_present: bool = False
    lsb_enabled: bool = False
    echo_nonce_request: bool = False
    map_version_present: bool = False
    instance_id_present: bool = False
    reserved_flag: bool = False
    key_id: int = 0
    nonce: int = 0
    source_map_version: int = 0
    dest_map_version: int = 0
    lsbs: int = 0
    instance_id: int = 0

    @property
    def iid(self) -> int:
        """The instance-ID the packet belongs to (0 when the header carries none)."""
        return self.instance_id if self.instance_id_present else 0


def decode_data_header(data: bytes, offset: int = 0) -> DataHeader:
    """Decode the LISP header at ``data[offset:offset + 8]``."""
    if len(data) - offset < DATA_HEADER_LEN:
        raise WireError(TRUNCATED, "LISP data header")
    word0, word1 = _HEADER.unpack_from(data, offset)
    flags = word0 >> 24
    low24 = word0 & 0xFFFFFF
    n = bool(flags & FLAG_N)
    v = bool(flags & FLAG_V)
    i = bool(flags & FLAG_I)
    return DataHeader(
        nonce_present=n,
        lsb_enabled=bool(flags & FLAG_L),
        echo_nonce_request=bool(flags & FLAG_E),
        map_version_present=v,
        instance_id_present=i,
        reserved_flag=bool(flags & FLAG_R),
        key_id=flags & KEY_ID_MASK,
        nonce=low24 if n or not v else 0,
        source_map_version=(low24 >> 12) if v and not n else 0,
        dest_map_version=(low24 & 0xFFF) if v and not n else 0,
        lsbs=(word1 & 0xFF) if i else word1,
        instance_id=(word1 >> 8) if i else 0,
    )


def encode_data_header(h: DataHeader) -> bytes:
    """The 8 bytes of ``h``."""
    flags = (
        (FLAG_N if h.nonce_present else 0)
        | (FLAG_L if h.lsb_enabled else 0)
        | (FLAG_E if h.echo_nonce_request else 0)
        | (FLAG_V if h.map_version_present else 0)
        | (FLAG_I if h.instance_id_present else 0)
        | (FLAG_R if h.reserved_flag else 0)
    )
    if not 0 <= h.key_id <= 3:
        raise EncodeError("key-id is 2 bits")
    flags |= h.key_id
    if h.map_version_present and not h.nonce_present:
        if not (0 <= h.source_map_version <= 0xFFF and 0 <= h.dest_map_version <= 0xFFF):
            raise EncodeError("map-versions are 12 bits")
        low24 = (h.source_map_version << 12) | h.dest_map_version
    else:
        low24 = h.nonce
    if not 0 <= low24 <= 0xFFFFFF:
        raise EncodeError("nonce is 24 bits")
    if h.instance_id_present:
        if not (0 <= h.instance_id <= 0xFFFFFF and 0 <= h.lsbs <= 0xFF):
            raise EncodeError("instance-ID is 24 bits and LSBs 8 bits when I is set")
        word1 = (h.instance_id << 8) | h.lsbs
    else:
        if not 0 <= h.lsbs <= 0xFFFFFFFF:
            raise EncodeError("LSBs are 32 bits")
        word1 = h.lsbs
    return _HEADER.pack((flags << 24) | low24, word1)


def build_data_header(nonce: int, iid: int) -> bytes:
    """The header lispd puts on a data packet: N and I set, the 24-bit ``nonce`` and the
    instance-ID ``iid`` (always sent, 0 included, so that the ETR never has to guess), LSBs 0.
    The bytes of ``encode_data_header(DataHeader(nonce_present=True, instance_id_present=True,
    nonce=nonce & 0xFFFFFF, instance_id=iid & 0xFFFFFF))``, for the packet path."""
    return _HEADER.pack(_WORD0_N_I | (nonce & 0xFFFFFF), (iid & 0xFFFFFF) << 8)


def read_data_header(payload: bytes) -> tuple[int, int] | None:
    """(instance-ID, key-id) of the header at the start of ``payload``, as
    ``decode_data_header(payload)`` has them in ``iid`` and ``key_id`` (a header without the I
    bit belongs to instance 0), for the packet path; None when the payload is shorter than a
    header."""
    if len(payload) < DATA_HEADER_LEN:
        return None
    word0, word1 = _HEADER.unpack_from(payload)
    iid = word1 >> 8 if word0 & _WORD0_I else 0
    return iid, (word0 >> 24) & KEY_ID_MASK


@dataclass(frozen=True, slots=True)
class EncapsulatedPacket:
    """A whole LISP data packet: outer IP + UDP, LISP header, inner packet bytes."""

    outer: IpHeader
    sport: int
    header: DataHeader
    inner: bytes
    dport: int = LISP_DATA_PORT
    zero_checksum: bool = False


def encapsulate(pkt: EncapsulatedPacket) -> bytes:
    """Bytes of an encapsulated packet (IPv4 outer: pass ``zero_checksum=True`` for RFC 9300's
    recommended zero UDP checksum)."""
    payload = encode_data_header(pkt.header) + pkt.inner
    return build_udp_datagram(
        UdpDatagram(pkt.outer, pkt.sport, pkt.dport, payload, pkt.zero_checksum)
    )


def decapsulate(data: bytes, verify_checksum: bool = False) -> EncapsulatedPacket:
    """Take an encapsulated packet apart; the port is not checked (NATs translate it)."""
    dg = parse_udp_datagram(data, verify_checksum)
    header = decode_data_header(dg.payload)
    return EncapsulatedPacket(
        dg.ip, dg.sport, header, dg.payload[DATA_HEADER_LEN:], dg.dport, dg.zero_checksum
    )
