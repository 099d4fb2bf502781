"""Read (and minimally write) packet-capture files in pure Python.

Two formats are understood:

* **classic pcap**: both byte orders, microsecond (magic ``a1b2c3d4``) and nanosecond
  (``a1b23c4d``) timestamps.  The link type is the low 16 bits of the header's ``network``
  field (the upper bits may carry FCS-length information, which is ignored).
* **pcapng**: any number of sections, each opened by a Section Header Block in either byte
  order; Interface Description Blocks give each interface its link type, snap length,
  ``if_tsresol`` (default 10^-6 s) and ``if_tsoffset`` (default 0 s); packets come from
  Enhanced Packet Blocks, Simple Packet Blocks (interface 0, no timestamp: reported as 0.0)
  and the obsolete Packet Block (type 2, still counted as a frame by tshark).  Every other
  block type is skipped by its length.

Packets are numbered from 1 in file order, like tshark's ``frame.number``.  tshark 4.0 also
gives frame numbers to pcapng custom blocks (types 0x00000BAD, 0x40000BAD) and systemd journal
export blocks (type 9); those are not yielded but consume their number, so ``index`` keeps
matching tshark and may skip values in such files.

Errors: anything malformed raises :class:`PcapError` with a short hyphenated ``reason``
(``bad-magic``, ``truncated-header``, ``truncated-record``, ``truncated-block``,
``bad-block-length``, ``bad-block``, ``bad-option``, ``bad-interface``, ``bad-version``),
never ``IndexError`` or ``struct.error``.  The file header (classic) or first block header
(pcapng) is checked when :func:`read_packets` is called; later problems surface while
iterating, **after** every complete packet before them has been yielded.  In particular a
truncated final record ends the iteration with ``PcapError("truncated-record")`` (tshark
likewise shows the earlier frames and then reports the file as cut short); callers that want
the good prefix of a damaged file catch the error after consuming the iterator.

:func:`ip_payload` strips a link-layer header so that the IP packet inside a frame can be
handed to our decoders.  :func:`write_pcap` produces a classic little-endian microsecond file,
used by the tests to show our bytes to tshark.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_LOOP",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
    "CapturedPacket",
    "PcapError",
    "ip_payload",
    "read_file",
    "read_packets",
    "write_pcap",
]

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
_VLAN_TPIDS = frozenset({0x8100, 0x88A8, 0x9100})  # 802.1Q, 802.1ad, old QinQ
_BSD_AF_INET = frozenset({2})
_BSD_AF_INET6 = frozenset({24, 28, 30})  # NetBSD/OpenBSD, FreeBSD, Darwin

# Classic pcap magic (as the first four bytes appear in the file) -> (byte order, ticks/s).
_CLASSIC_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
_CLASSIC_HEADER_LEN = 24
_CLASSIC_RECORD_LEN = 16

_SHB_TYPE_BYTES = b"\x0a\x0d\x0d\x0a"  # a palindrome: same in both byte orders
_BOM_LE = b"\x4d\x3c\x2b\x1a"
_BOM_BE = b"\x1a\x2b\x3c\x4d"
_SHB = 0x0A0D0D0A
_IDB = 0x00000001
_PB = 0x00000002  # obsolete Packet Block
_SPB = 0x00000003
_EPB = 0x00000006
# Blocks that tshark 4.0 numbers as frames although they hold no packet: systemd journal
# export and custom blocks.  They are not yielded, but they use up a frame number.
_NUMBERED_NON_PACKETS = frozenset({0x00000009, 0x00000BAD, 0x40000BAD})
_OPT_ENDOFOPT = 0
_OPT_IF_TSRESOL = 9
_OPT_IF_TSOFFSET = 14


class PcapError(Exception):
    """A capture file that cannot be read; ``reason`` is short, lowercase and hyphenated."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True, slots=True)
class CapturedPacket:
    """One packet of a capture file.

    ``index`` counts from 1 (tshark's ``frame.number``); ``timestamp`` is seconds since the
    epoch; ``linktype`` is the LINKTYPE_* value of the interface it was captured on;
    ``frame`` is the captured bytes (possibly fewer than were on the wire);
    ``original_length`` is how many bytes the frame had on the wire, as the file records it
    (tshark's ``frame.len``; more than ``len(frame)`` when the snap length cut it).
    """

    index: int
    timestamp: float
    linktype: int
    frame: bytes
    original_length: int

    @property
    def cut(self) -> bool:
        """The capture kept only the start of the frame (its snap length cut the rest)."""
        return self.original_length > len(self.frame)


@dataclass(frozen=True, slots=True)
class _Interface:
    linktype: int
    snaplen: int
    units_per_second: int
    offset_seconds: int


def read_packets(data: bytes | bytearray | memoryview) -> Iterator[CapturedPacket]:
    """Iterate over the packets of a classic pcap or pcapng file held in ``data``.

    The file header is validated immediately (``PcapError`` from this call); errors further
    in are raised by the iterator once it reaches them.
    """
    data = bytes(data)
    if len(data) < 4:
        raise PcapError("truncated-header", f"{len(data)} bytes is too short for a capture file")
    magic = data[:4]
    if magic == _SHB_TYPE_BYTES:
        if len(data) < 12:
            raise PcapError("truncated-header", "pcapng section header block")
        if data[8:12] not in (_BOM_LE, _BOM_BE):
            raise PcapError("bad-magic", f"pcapng byte-order magic {data[8:12].hex()}")
        return _read_pcapng(data)
    try:
        byteorder, ticks = _CLASSIC_MAGIC[magic]
    except KeyError:
        raise PcapError("bad-magic", f"unknown capture file magic {magic.hex()}") from None
    if len(data) < _CLASSIC_HEADER_LEN:
        raise PcapError("truncated-header", f"classic pcap header needs 24 bytes, have {len(data)}")
    network = struct.unpack_from(byteorder + "I", data, 20)[0]
    return _read_classic(data, byteorder, ticks, network & 0xFFFF)


def read_file(path: str | Path) -> list[CapturedPacket]:
    """All packets of the capture file at ``path`` (``PcapError`` if any part is malformed)."""
    return list(read_packets(Path(path).read_bytes()))


def _seconds(ticks: int, units_per_second: int, offset: int = 0) -> float:
    whole, frac = divmod(ticks, units_per_second)
    return float(whole + offset) + frac / units_per_second


def _read_classic(
    data: bytes, byteorder: str, ticks: int, linktype: int
) -> Iterator[CapturedPacket]:
    record = struct.Struct(byteorder + "IIII")
    pos = _CLASSIC_HEADER_LEN
    end = len(data)
    index = 0
    while pos < end:
        if end - pos < _CLASSIC_RECORD_LEN:
            raise PcapError(
                "truncated-record", f"record header at offset {pos}: only {end - pos} bytes left"
            )
        sec, frac, incl_len, orig_len = record.unpack_from(data, pos)
        pos += _CLASSIC_RECORD_LEN
        if incl_len > end - pos:
            raise PcapError(
                "truncated-record",
                f"record {index + 1} at offset {pos - 16} claims {incl_len} bytes, "
                f"{end - pos} left",
            )
        index += 1
        yield CapturedPacket(
            index=index,
            timestamp=_seconds(sec * ticks + frac, ticks),
            linktype=linktype,
            frame=data[pos : pos + incl_len],
            original_length=orig_len,
        )
        pos += incl_len


def _parse_idb(body: bytes, bo: str) -> _Interface:
    if len(body) < 8:
        raise PcapError("bad-block", f"interface description block body of {len(body)} bytes")
    linktype, _reserved, snaplen = struct.unpack_from(bo + "HHI", body, 0)
    units = 1_000_000
    offset = 0
    pos = 8
    while pos + 4 <= len(body):
        code, length = struct.unpack_from(bo + "HH", body, pos)
        pos += 4
        if code == _OPT_ENDOFOPT:
            break
        if length > len(body) - pos:
            raise PcapError("bad-option", f"option {code} length {length} overruns its block")
        value = body[pos : pos + length]
        pos += (length + 3) & ~3
        if code == _OPT_IF_TSRESOL:
            if length != 1:
                raise PcapError("bad-option", f"if_tsresol of length {length}")
            v = value[0]
            units = 2 ** (v & 0x7F) if v & 0x80 else 10**v
        elif code == _OPT_IF_TSOFFSET:
            if length != 8:
                raise PcapError("bad-option", f"if_tsoffset of length {length}")
            offset = struct.unpack(bo + "q", value)[0]
    return _Interface(linktype, snaplen, units, offset)


def _interface(ifaces: list[_Interface], number: int, block: str) -> _Interface:
    if number >= len(ifaces):
        raise PcapError(
            "bad-interface", f"{block} names interface {number}, {len(ifaces)} described"
        )
    return ifaces[number]


def _read_pcapng(data: bytes) -> Iterator[CapturedPacket]:
    end = len(data)
    pos = 0
    bo = "<"
    ifaces: list[_Interface] = []
    index = 0
    while pos < end:
        if end - pos < 12:
            raise PcapError("truncated-block", f"block header at offset {pos}: {end - pos} bytes")
        if data[pos : pos + 4] == _SHB_TYPE_BYTES:
            bom = data[pos + 8 : pos + 12]
            if bom == _BOM_LE:
                bo = "<"
            elif bom == _BOM_BE:
                bo = ">"
            else:
                raise PcapError("bad-magic", f"byte-order magic {bom.hex()} at offset {pos}")
        btype, blen = struct.unpack_from(bo + "II", data, pos)
        if blen < 12 or blen % 4:
            raise PcapError("bad-block-length", f"block at offset {pos} has total length {blen}")
        if blen > end - pos:
            raise PcapError(
                "truncated-block", f"block at offset {pos} claims {blen} bytes, {end - pos} left"
            )
        trailer = struct.unpack_from(bo + "I", data, pos + blen - 4)[0]
        if trailer != blen:
            raise PcapError(
                "bad-block-length", f"block at offset {pos}: length {blen}, trailer {trailer}"
            )
        body = data[pos + 8 : pos + blen - 4]
        pos += blen

        if btype == _SHB:
            if len(body) < 16:
                raise PcapError("bad-block", "section header block shorter than 28 bytes")
            major = struct.unpack_from(bo + "H", body, 4)[0]
            if major != 1:
                raise PcapError("bad-version", f"pcapng major version {major}")
            ifaces = []
        elif btype == _IDB:
            ifaces.append(_parse_idb(body, bo))
        elif btype in (_EPB, _PB):
            what = "enhanced packet block" if btype == _EPB else "packet block"
            if len(body) < 20:
                raise PcapError("bad-block", f"{what} shorter than 32 bytes")
            if btype == _EPB:
                ifno, ts_hi, ts_lo, caplen, orig_len = struct.unpack_from(bo + "IIIII", body, 0)
            else:  # the obsolete Packet Block: a 16-bit interface id and a drop count
                ifno, _drops, ts_hi, ts_lo, caplen, orig_len = struct.unpack_from(
                    bo + "HHIIII", body, 0
                )
            iface = _interface(ifaces, ifno, what)
            if caplen > len(body) - 20:
                raise PcapError(
                    "truncated-record", f"packet of {caplen} bytes in a {blen}-byte block"
                )
            index += 1
            yield CapturedPacket(
                index=index,
                timestamp=_seconds(
                    (ts_hi << 32) | ts_lo, iface.units_per_second, iface.offset_seconds
                ),
                linktype=iface.linktype,
                frame=body[20 : 20 + caplen],
                original_length=orig_len,
            )
        elif btype == _SPB:
            if len(body) < 4:
                raise PcapError("bad-block", "simple packet block shorter than 16 bytes")
            iface = _interface(ifaces, 0, "simple packet block")
            orig_len = struct.unpack_from(bo + "I", body, 0)[0]
            caplen = min(orig_len, len(body) - 4)
            if iface.snaplen:
                caplen = min(caplen, iface.snaplen)
            index += 1
            yield CapturedPacket(
                index=index,
                timestamp=0.0,
                linktype=iface.linktype,
                frame=body[4 : 4 + caplen],
                original_length=orig_len,
            )
        elif btype in _NUMBERED_NON_PACKETS:
            index += 1
        # every other block type (statistics, name resolution, decryption secrets...) is skipped


def _ip_packet(frame: bytes, version: int | None = None) -> bytes | None:
    """``frame`` if it starts with an IP header of ``version`` (4 or 6; None = either),
    trimmed to the length the header states when the frame is longer (Ethernet padding, FCS).
    """
    if not frame:
        return None
    v = frame[0] >> 4
    if v not in (4, 6) or (version is not None and v != version):
        return None
    if v == 4 and len(frame) >= 20:
        total = int.from_bytes(frame[2:4], "big")
        if 20 <= total < len(frame):
            return frame[:total]
    elif v == 6 and len(frame) >= 40:
        payload = int.from_bytes(frame[4:6], "big")
        if payload and 40 + payload < len(frame):  # 0 means a jumbogram: leave it alone
            return frame[: 40 + payload]
    return frame


def _after_ethertype(frame: bytes, pos: int) -> bytes | None:
    """Follow the EtherType at ``frame[pos:pos+2]`` through any VLAN tags to an IP packet."""
    while True:
        if len(frame) < pos + 2:
            return None
        ethertype = int.from_bytes(frame[pos : pos + 2], "big")
        pos += 2
        if ethertype in _VLAN_TPIDS:
            pos += 2  # skip the tag control information; the next EtherType follows
            continue
        if ethertype == ETHERTYPE_IPV4:
            return _ip_packet(frame[pos:], 4)
        if ethertype == ETHERTYPE_IPV6:
            return _ip_packet(frame[pos:], 6)
        return None


def ip_payload(linktype: int, frame: bytes) -> bytes | None:
    """The IPv4/IPv6 packet inside ``frame``, or None when the frame does not carry one.

    Link types: Ethernet (1, through any number of 802.1Q/802.1ad tags), BSD NULL (0) and
    LOOP (108; 4-byte address family in either byte order: 2 = IPv4, 24/28/30 = IPv6), RAW
    (101; the version nibble decides), IPV4 (228), IPV6 (229), LINUX_SLL (113) and LINUX_SLL2
    (276).  Unknown link types give None.  The first nibble of the result must match the
    family the link layer announced (else None).  When the IP header states a total length
    shorter than what was captured, the packet is trimmed to it (padding, trailing FCS); a
    captured packet shorter than its header says is returned as captured.
    """
    frame = bytes(frame)
    if linktype == LINKTYPE_ETHERNET:
        return _after_ethertype(frame, 12) if len(frame) >= 14 else None
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(frame) < 4:
            return None
        families = {int.from_bytes(frame[:4], "little"), int.from_bytes(frame[:4], "big")}
        if families & _BSD_AF_INET:
            return _ip_packet(frame[4:], 4)
        if families & _BSD_AF_INET6:
            return _ip_packet(frame[4:], 6)
        return None
    if linktype == LINKTYPE_RAW:
        return _ip_packet(frame)
    if linktype == LINKTYPE_IPV4:
        return _ip_packet(frame, 4)
    if linktype == LINKTYPE_IPV6:
        return _ip_packet(frame, 6)
    if linktype == LINKTYPE_LINUX_SLL:
        return _after_ethertype(frame, 14) if len(frame) >= 16 else None
    if linktype == LINKTYPE_LINUX_SLL2:
        return _ip_after_sll2(frame)
    return None


def _ip_after_sll2(frame: bytes) -> bytes | None:
    # protocol type (2), reserved (2), ifindex (4), ARPHRD (2), pkttype (1), addr len (1),
    # address (8): the EtherType comes first, the payload starts at byte 20.
    if len(frame) < 20:
        return None
    ethertype = int.from_bytes(frame[0:2], "big")
    if ethertype in _VLAN_TPIDS:
        return _after_ethertype(frame[20:], 2)
    if ethertype == ETHERTYPE_IPV4:
        return _ip_packet(frame[20:], 4)
    if ethertype == ETHERTYPE_IPV6:
        return _ip_packet(frame[20:], 6)
    return None


def write_pcap(
    packets: Iterable[bytes],
    linktype: int = LINKTYPE_RAW,
    timestamps: Iterable[float] | None = None,
    snaplen: int | None = None,
) -> bytes:
    """A classic little-endian microsecond pcap file holding ``packets``.

    ``timestamps`` (seconds since the epoch, one per packet) default to 0, 1, 2, ... seconds.
    ``snaplen``: keep at most that many bytes of each packet, recording its whole length as
    the original length, as ``tcpdump -s SNAPLEN`` does (default: keep every byte).
    Raises ValueError when the counts differ, a timestamp is negative or beyond 2106, or
    ``snaplen`` is below 1.
    """
    if snaplen is not None and snaplen < 1:
        raise ValueError(f"snaplen {snaplen} is below 1")
    frames = [bytes(p) for p in packets]
    if timestamps is None:
        stamps = [float(i) for i in range(len(frames))]
    else:
        stamps = [float(t) for t in timestamps]
        if len(stamps) != len(frames):
            raise ValueError(f"{len(frames)} packets but {len(stamps)} timestamps")
    if snaplen is None:
        snaplen = max([262144, *(len(f) for f in frames)])
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)]
    for frame, stamp in zip(frames, stamps, strict=True):
        micros = round(stamp * 1_000_000)
        sec, usec = divmod(micros, 1_000_000)
        if not 0 <= sec <= 0xFFFFFFFF:
            raise ValueError(f"timestamp {stamp} does not fit a classic pcap record")
        kept = frame[:snaplen]
        out.append(struct.pack("<IIII", sec, usec, len(kept), len(frame)))
        out.append(kept)
    return b"".join(out)
