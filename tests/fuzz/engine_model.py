"""Reference implementations the C engine's fuzz job (:mod:`tests.fuzz.engine`) checks it
against where lispd has no Python path of its own: the virtio-net side of the TUN (checksum
completion, TCP segmentation of super-packets, what a merged super-packet stands for) and the
forwarding tables' argument rules and longest-prefix match.

Written from the specifications (RFC 1071 checksums, RFC 9293 TCP, the kernel's TSO rules the
engine follows: IP ids counting up, CWR on the first segment, FIN and PSH on the last), not from
the C code, and small enough to read in one go.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lispd.wire.ip import internet_checksum

PROTO_TCP = 6
VNET_HDR_LEN = 10
VNET_F_NEEDS_CSUM = 1
VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_GSO_ECN = 0, 1, 4, 0x80
_VNET = struct.Struct("<BBHHHH")

# The engine's buffers (engine.h): what one read or receive can hold, and how many segments
# of one super-packet it splits.
FP_SLOT = 65536 + 64
FP_HEADROOM = 16
FP_LISP_HDR = 8
FP_SEG_MAX = 256
FP_SEG_BUF = FP_SEG_MAX * (FP_HEADROOM + 2048) + 65536
TUN_ROOM = {True: FP_SLOT - (FP_HEADROOM - VNET_HDR_LEN), False: FP_SLOT - FP_HEADROOM}
UDP_ROOM = FP_SLOT - FP_HEADROOM
GSO_MAX_SEGS = 64
GSO_MAX_BYTES = 65000


@dataclass(frozen=True, slots=True)
class Vnet:
    """A struct virtio_net_hdr (host order, as the TUN reads and writes it)."""

    flags: int
    gso_type: int
    hdr_len: int
    gso_size: int
    csum_start: int
    csum_offset: int

    @classmethod
    def read(cls, data: bytes) -> Vnet:
        return cls(*_VNET.unpack_from(data))

    def pack(self) -> bytes:
        return _VNET.pack(
            self.flags,
            self.gso_type,
            self.hdr_len,
            self.gso_size,
            self.csum_start,
            self.csum_offset,
        )

    @property
    def kind(self) -> int:
        return self.gso_type & ~VNET_GSO_ECN


@dataclass(frozen=True, slots=True)
class TcpHeaders:
    """Where a TCP/IP packet's headers end."""

    version: int
    l3: int
    l4: int

    @property
    def length(self) -> int:
        return self.l3 + self.l4


def tcp_headers(pkt: bytes) -> TcpHeaders | None:
    """IPv4 (any IHL) or IPv6 without extension headers carrying TCP whose data offset fits in
    the packet; None otherwise."""
    if not pkt:
        return None
    version = pkt[0] >> 4
    if version == 4:
        if len(pkt) < 20 or pkt[9] != PROTO_TCP:
            return None
        l3 = (pkt[0] & 0x0F) * 4
        if l3 < 20:
            return None
    elif version == 6:
        if len(pkt) < 40 or pkt[6] != PROTO_TCP:
            return None
        l3 = 40
    else:
        return None
    if len(pkt) < l3 + 20:
        return None
    l4 = (pkt[l3 + 12] >> 4) * 4
    if l4 < 20 or l3 + l4 > len(pkt):
        return None
    return TcpHeaders(version, l3, l4)


def _pseudo(ip: bytes, version: int, length: int) -> bytes:
    if version == 4:
        return ip[12:20] + struct.pack("!BBH", 0, PROTO_TCP, length)
    return ip[8:40] + struct.pack("!I3xB", length, PROTO_TCP)


def segment(pkt: bytes, gso_size: int) -> list[bytes] | None:
    """The segments TSO makes of TCP super-packet ``pkt``: payload cut every ``gso_size``
    bytes, IPv4 ids counting up from the packet's, lengths, sequence numbers and checksums
    per segment, CWR on the first segment only, FIN and PSH on the last only; None when
    ``pkt`` is not TCP this can split (or ``gso_size`` is 0)."""
    headers = tcp_headers(pkt)
    if headers is None or gso_size <= 0:
        return None
    v, l3, hdrs = headers.version, headers.l3, headers.length
    payload = pkt[hdrs:]
    count = max(1, -(-len(payload) // gso_size))
    (seq,) = struct.unpack_from("!I", pkt, l3 + 4)
    (ident,) = struct.unpack_from("!H", pkt, 4)
    out = []
    for k in range(count):
        body = payload[k * gso_size : (k + 1) * gso_size]
        ip = bytearray(pkt[:l3])
        tcp = bytearray(pkt[l3:hdrs])
        if v == 4:
            struct.pack_into("!HH", ip, 2, hdrs + len(body), (ident + k) & 0xFFFF)
            struct.pack_into("!H", ip, 10, 0)
            struct.pack_into("!H", ip, 10, internet_checksum(bytes(ip)))
        else:
            struct.pack_into("!H", ip, 4, headers.l4 + len(body))
        struct.pack_into("!I", tcp, 4, (seq + k * gso_size) & 0xFFFFFFFF)
        flags = tcp[13]
        if k > 0:
            flags &= ~0x80
        if k < count - 1:
            flags &= ~0x09
        tcp[13] = flags
        struct.pack_into("!H", tcp, 16, 0)
        checksum = internet_checksum(_pseudo(bytes(ip), v, len(tcp) + len(body)) + tcp + body)
        struct.pack_into("!H", tcp, 16, checksum)
        out.append(bytes(ip + tcp) + body)
    return out


def segment_limit(headers: TcpHeaders, gso_size: int) -> tuple[int, int]:
    """How many segments of one super-packet the engine splits at most: (when it punts them,
    when it encapsulates them), its segment buffer holding one stride per segment."""
    punt = min(FP_SEG_BUF // (FP_HEADROOM + 120 + gso_size), FP_SEG_MAX)
    encap = min(FP_SEG_BUF // (FP_LISP_HDR + headers.length + gso_size), FP_SEG_MAX)
    return punt, encap


def complete_checksum(pkt: bytes, header: Vnet) -> bytes | None:
    """``pkt`` with the checksum the kernel left partial done: the ones' complement sum from
    ``csum_start`` to the end (the field holds the pseudo-header sum), stored at
    ``csum_start + csum_offset``; a UDP zero (offset 6) sent as all ones.  None when the
    offsets fall outside the packet."""
    start, at = header.csum_start, header.csum_start + header.csum_offset
    if at + 2 > len(pkt) or start >= len(pkt):
        return None
    value = internet_checksum(pkt[start:])
    if value == 0 and header.csum_offset == 6:
        value = 0xFFFF
    return pkt[:at] + value.to_bytes(2, "big") + pkt[at + 2 :]


def without_ipv4_id(pkt: bytes) -> bytes:
    """``pkt`` with the IPv4 identification and header checksum blanked (a merged
    super-packet keeps its first segment's id; segmenting it numbers the rest from there)."""
    if len(pkt) >= 20 and pkt[0] >> 4 == 4:
        return pkt[:4] + b"\0\0" + pkt[6:10] + b"\0\0" + pkt[12:]
    return pkt


def expand_tun_write(data: bytes) -> tuple[list[bytes], bool]:
    """What one write to a vnet TUN stands for: (the packets, merged or not).  A plain write
    (all-zero virtio-net header) is one packet; a merged super-packet must carry the header
    the kernel needs to segment it (partial TCP checksum at l3 + 16, the headers' length) and
    is segmented back with :func:`segment`.  Raises AssertionError on a header that says
    neither."""
    assert len(data) >= VNET_HDR_LEN, f"a TUN write of {len(data)} bytes"
    header, pkt = Vnet.read(data), data[VNET_HDR_LEN:]
    if header == Vnet(0, 0, 0, 0, 0, 0):
        return [pkt], False
    headers = tcp_headers(pkt)
    assert headers is not None, "a merged write that is not TCP"
    wanted = VNET_GSO_TCPV4 if headers.version == 4 else VNET_GSO_TCPV6
    assert header == Vnet(
        VNET_F_NEEDS_CSUM, wanted, headers.length, header.gso_size, headers.l3, 16
    ), f"merged write header {header}"
    assert header.gso_size > 0
    tcp_len = len(pkt) - headers.l3
    partial = ~internet_checksum(_pseudo(pkt, headers.version, tcp_len)) & 0xFFFF
    assert pkt[headers.l3 + 16 : headers.l3 + 18] == partial.to_bytes(2, "big"), (
        "a merged packet's TCP checksum field must hold the pseudo-header sum"
    )
    if headers.version == 4:
        assert struct.unpack_from("!H", pkt, 2)[0] == len(pkt)
        assert internet_checksum(pkt[: headers.l3]) == 0, "merged IPv4 header checksum"
    else:
        assert struct.unpack_from("!H", pkt, 4)[0] == len(pkt) - 40
    segments = segment(pkt, header.gso_size)
    assert segments is not None
    return segments, True


# --- the forwarding tables ---------------------------------------------------------------------

Key = tuple[int, int, int, bytes]  # iid, family, prefix length, masked prefix


def mask(address: bytes, plen: int) -> bytes:
    """``address`` with every bit past ``plen`` cleared."""
    value = int.from_bytes(address, "big")
    bits = len(address) * 8
    kept = value >> (bits - plen) << (bits - plen) if plen else 0
    return kept.to_bytes(len(address), "big")


def _bytes_like(value: Any) -> bytes | None:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return None


class TableModel:
    """What ``map_set`` / ``db_set`` and friends accept and what ``lookup`` must then answer:
    the argument rules of the engine's documentation, and a dictionary searched longest
    prefix first."""

    def __init__(self) -> None:
        self.map: dict[Key, list[tuple[bytes, int, int, bool]]] = {}
        self.db: set[Key] = set()
        self.lengths: dict[tuple[int, int], Counter[int]] = {}  # (iid, family): lengths held

    def _count(self, key: Key, delta: int) -> None:
        held = self.lengths.setdefault(key[:2], Counter())
        held[key[2]] += delta
        if held[key[2]] <= 0:
            del held[key[2]]

    def clear_map(self) -> None:
        self.map.clear()
        self.lengths.clear()

    @staticmethod
    def key(iid: Any, prefix: Any, plen: Any) -> Key | None:
        """The table key, or None when the arguments are not valid ones."""
        address = _bytes_like(prefix)
        if not isinstance(iid, int) or not isinstance(plen, int) or address is None:
            return None
        if not 0 <= iid <= 0xFFFFFF or len(address) not in (4, 16):
            return None
        if not 0 <= plen <= len(address) * 8:
            return None
        return iid, 4 if len(address) == 4 else 6, plen, mask(address, plen)

    @staticmethod
    def record(rlocs: Any) -> list[tuple[bytes, int, int, bool]] | None:
        """The record ``rlocs`` stands for ([] for None: punt), or None when invalid."""
        if rlocs is None:
            return []
        try:  # any iterable, as PySequence_Fast takes it
            items = list(rlocs)
        except TypeError:
            return None
        if len(items) > 255:
            return None
        out = []
        for item in items:
            if not isinstance(item, tuple) or len(item) != 4:
                return None
            address, port, weight, via = item
            packed = _bytes_like(address)
            if packed is None or len(packed) not in (4, 16):
                return None
            if not isinstance(port, int) or not isinstance(weight, int):
                return None
            if not 1 <= port <= 65535 or not 0 <= weight <= 255:
                return None
            out.append((packed, port, weight, bool(via)))
        return out

    def map_set(self, iid: Any, prefix: Any, plen: Any, rlocs: Any) -> bool:
        """Apply it; False when the engine must refuse it (and nothing changes)."""
        key, record = self.key(iid, prefix, plen), self.record(rlocs)
        if key is None or record is None:
            return False
        if key not in self.map:
            self._count(key, 1)
        self.map[key] = record
        return True

    def remove(self, table: str, iid: Any, prefix: Any, plen: Any) -> bool | None:
        """Whether the prefix was there; None when the engine must refuse the call."""
        key = self.key(iid, prefix, plen)
        if key is None:
            return None
        if table == "map":
            found = self.map.pop(key, None) is not None
            if found:
                self._count(key, -1)
            return found
        found = key in self.db
        self.db.discard(key)
        return found

    def db_set(self, iid: Any, prefix: Any, plen: Any) -> bool:
        key = self.key(iid, prefix, plen)
        if key is None:
            return False
        self.db.add(key)
        return True

    def lookup(self, iid: int, address: bytes) -> list[tuple[bytes, int, int, bool]] | None:
        """The record of the longest prefix of (iid, family) holding ``address``."""
        family = 4 if len(address) == 4 else 6
        for plen in sorted(self.lengths.get((iid, family), ()), reverse=True):
            found = self.map.get((iid, family, plen, mask(address, plen)))
            if found is not None:
                return found
        return None


def split_message(message: bytes, seg: int) -> list[bytes]:
    """The datagrams the engine makes of one received message: cut every ``seg`` bytes (the
    UDP GRO size) when 0 < seg <= len, else the message whole (an empty one included)."""
    if seg <= 0 or seg > len(message):
        return [message]
    return [message[i : i + seg] for i in range(0, len(message), seg)]


def gso_datagrams(datagrams: Sequence[bytes], seg: int) -> None:
    """Raise AssertionError when a UDP GSO send breaks the kernel's rules."""
    if seg:
        assert 1 < len(datagrams) <= GSO_MAX_SEGS, f"a GSO send of {len(datagrams)} datagrams"
        assert sum(map(len, datagrams)) <= GSO_MAX_BYTES
        assert all(len(d) == seg for d in datagrams[:-1]) and len(datagrams[-1]) <= seg
