"""Tests of lispd.tools.pcap: the capture-file reader/writer and link-layer stripping.

tshark is the oracle for frame counts, timestamps and captured lengths (tests marked
``tshark``); everything else runs without it.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lispd.tools.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    CapturedPacket,
    PcapError,
    ip_payload,
    read_file,
    read_packets,
    write_pcap,
)
from tests.external import capture, capture_files, needs_captures

CAPTURE_FILES = capture_files()
# Frame counts as tshark reports them (and as the captures README describes the files).
EXPECTED_COUNTS = {
    "dual_stack_lisp.pcap": 78,
    "encapsulated_control_message.pcap": 1,
    "lcaf_instanceid.pcap": 4,
    "ligpy-marek.pcap": 6,
    "lisp_eid_notify.pcap": 4,
    "lisp_eid_register.pcap": 2,
    "lisp_invalid.pcap": 2,
    "lisp_invalid_length.pcap": 1,
    "lisp_ipv6.pcap": 2,
    "maprequest.pcap": 1,
    "various_lisp_packets.pcap": 19,
}
TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed")

# fmt: off
# A small IPv4/UDP packet 192.0.2.1 -> 192.0.2.2 (checksums not relevant here) and an IPv6 one.
IPV4 = bytes.fromhex(
    "4500001e" "00010000" "40110000" "c0000201" "c0000202"  # IPv4, total length 30
    "f00010f6" "000a0000" "6869"  # UDP 61440 -> 4342, length 10, "hi"
)
IPV6 = bytes.fromhex(
    "60000000" "000a1140"  # IPv6, payload length 10, next header UDP, hop limit 64
    "20010db8000000000000000000000001" "20010db8000000000000000000000002"
    "f00010f6" "000a0000" "6869"
)
# fmt: on
MAC_DST = bytes.fromhex("020000000002")
MAC_SRC = bytes.fromhex("020000000001")


# ---------------------------------------------------------------------------- builders
def classic(
    frames: list[bytes],
    *,
    byteorder: str = "<",
    nanos: bool = False,
    linktype: int = LINKTYPE_ETHERNET,
    stamps: list[tuple[int, int]] | None = None,
) -> bytes:
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = [struct.pack(byteorder + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)]
    for i, frame in enumerate(frames):
        sec, frac = stamps[i] if stamps else (1_000_000_000 + i, i)
        out.append(struct.pack(byteorder + "IIII", sec, frac, len(frame), len(frame)) + frame)
    return b"".join(out)


def block(btype: int, body: bytes, bo: str = "<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    total = len(body) + 12
    return struct.pack(bo + "II", btype, total) + body + struct.pack(bo + "I", total)


def option(code: int, value: bytes, bo: str = "<") -> bytes:
    return struct.pack(bo + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def shb(bo: str = "<", major: int = 1) -> bytes:
    return block(0x0A0D0D0A, struct.pack(bo + "IHHq", 0x1A2B3C4D, major, 0, -1), bo)


def idb(
    linktype: int,
    bo: str = "<",
    snaplen: int = 0,
    tsresol: int | None = None,
    tsoffset: int | None = None,
) -> bytes:
    opts = b""
    if tsresol is not None:
        opts += option(9, bytes([tsresol]), bo)
    if tsoffset is not None:
        opts += option(14, struct.pack(bo + "q", tsoffset), bo)
    if opts:
        opts += option(0, b"", bo)
    return block(1, struct.pack(bo + "HHI", linktype, 0, snaplen) + opts, bo)


def epb(ifno: int, ticks: int, frame: bytes, bo: str = "<") -> bytes:
    head = struct.pack(bo + "IIIII", ifno, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame))
    return block(6, head + frame, bo)


def spb(frame: bytes, bo: str = "<") -> bytes:
    return block(3, struct.pack(bo + "I", len(frame)) + frame, bo)


def ether(payload: bytes, ethertype: int = 0x0800, tags: tuple[int, ...] = ()) -> bytes:
    head = MAC_DST + MAC_SRC
    for tpid in tags:
        head += struct.pack("!HH", tpid, 0x0064)  # VLAN 100
    return head + struct.pack("!H", ethertype) + payload


def two_interface_pcapng(bo: str = "<") -> bytes:
    """Ethernet interface 0 (ns resolution, +100 s offset) and RAW interface 1 (2^-3 s)."""
    return (
        shb(bo)
        + idb(LINKTYPE_ETHERNET, bo, tsresol=9, tsoffset=100)
        + block(0x00000004, b"\x00\x00\x00\x00", bo)  # name resolution block: skipped
        + idb(LINKTYPE_RAW, bo, snaplen=65535, tsresol=0x83)
        + epb(0, 1_700_000_000_123_456_789, ether(IPV4), bo)
        + block(5, struct.pack(bo + "III", 0, 0, 0), bo)  # interface statistics: skipped
        + epb(1, 1_700_000_000 * 8 + 3, IPV6, bo)
        + block(0x40000BAD, b"custom!", bo)  # custom block: skipped
        + spb(ether(IPV4), bo)
    )


def tshark_fields(path: Path) -> list[tuple[int, str, int]]:
    """(frame.number, frame.time_epoch, frame.cap_len) per frame, as tshark prints them."""
    assert TSHARK is not None
    proc = subprocess.run(
        [TSHARK, "-n", "-r", str(path), "-T", "fields", "-e", "frame.number", "-e",
         "frame.time_epoch", "-e", "frame.cap_len"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    rows = []
    for line in proc.stdout.splitlines():
        number, epoch, caplen = line.split("\t")
        rows.append((int(number), epoch, int(caplen)))
    return rows


def assert_matches_tshark(
    packets: list[CapturedPacket], path: Path, non_packets: frozenset[int] = frozenset()
) -> None:
    """Same frame numbers, timestamps (within 1 us) and captured lengths as tshark; frame
    numbers in ``non_packets`` are records tshark numbers but that hold no packet."""
    rows = {number: (epoch, caplen) for number, epoch, caplen in tshark_fields(path)}
    assert [p.index for p in packets] == sorted(rows.keys() - non_packets)
    for packet in packets:
        epoch, caplen = rows[packet.index]
        assert len(packet.frame) == caplen
        expected = Decimal(epoch) if epoch else Decimal(0)  # SPBs have no timestamp
        assert abs(Decimal(repr(packet.timestamp)) - expected) < Decimal("0.000001"), (
            packet.index,
            packet.timestamp,
            epoch,
        )


# ---------------------------------------------------------------------------- real captures
@needs_captures
@pytest.mark.parametrize("path", CAPTURE_FILES, ids=lambda p: p.name)
def test_real_captures_offline(path: Path) -> None:
    packets = read_file(path)
    assert len(packets) == EXPECTED_COUNTS[path.name]
    assert [p.index for p in packets] == list(range(1, len(packets) + 1))
    for packet in packets:
        assert packet.linktype == LINKTYPE_ETHERNET
        ip = ip_payload(packet.linktype, packet.frame)
        assert ip is not None and ip[0] >> 4 in (4, 6)
    assert list(read_packets(path.read_bytes())) == packets


@pytest.mark.tshark
@needs_tshark
@needs_captures
@pytest.mark.parametrize("path", CAPTURE_FILES, ids=lambda p: p.name)
def test_real_captures_match_tshark(path: Path) -> None:
    assert_matches_tshark(read_file(path), path)


@pytest.mark.tshark
@needs_tshark
@needs_captures
def test_ip_payload_lengths_match_tshark() -> None:
    """ip_payload strips exactly the link layer: its length is the outer IP length."""
    assert TSHARK is not None
    for path in CAPTURE_FILES:
        proc = subprocess.run(
            [TSHARK, "-n", "-r", str(path), "-T", "fields", "-E", "occurrence=f", "-e",
             "ip.version", "-e", "ip.len", "-e", "ipv6.plen"],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        for packet, line in zip(read_file(path), proc.stdout.splitlines(), strict=True):
            version, ip_len, ipv6_plen = line.split("\t")  # first occurrence = outer
            expected = int(ip_len) if version == "4" else 40 + int(ipv6_plen)
            ip = ip_payload(packet.linktype, packet.frame)
            assert ip is not None
            if len(ip) < expected:  # the IP header claims more than was captured
                assert packet.frame.endswith(ip), (path.name, packet.index)
            else:
                assert len(ip) == expected, (path.name, packet.index)


def test_pcapng_captures_are_pcapng() -> None:
    for name in ("encapsulated_control_message.pcap", "maprequest.pcap"):
        assert capture(name).read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    (packet,) = read_file(capture("maprequest.pcap"))
    assert packet.timestamp == pytest.approx(946736982.875288, abs=1e-6)


# ---------------------------------------------------------------------------- classic pcap
@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("nanos", [False, True])
def test_classic_variants(byteorder: str, nanos: bool) -> None:
    frames = [ether(IPV4), ether(IPV6, 0x86DD), b""]
    data = classic(
        frames,
        byteorder=byteorder,
        nanos=nanos,
        stamps=[(1_000_000_000, 999_999), (1_000_000_001, 0), (5, 500_000)],
    )
    packets = list(read_packets(data))
    assert [p.frame for p in packets] == frames
    assert [p.index for p in packets] == [1, 2, 3]
    scale = 1e9 if nanos else 1e6
    assert packets[0].timestamp == pytest.approx(1_000_000_000 + 999_999 / scale, abs=1e-9)
    assert packets[1].timestamp == 1_000_000_001.0
    assert packets[2].timestamp == pytest.approx(5 + 500_000 / scale)
    assert {p.linktype for p in packets} == {LINKTYPE_ETHERNET}


def test_classic_linktype_ignores_fcs_bits() -> None:
    data = bytearray(classic([IPV4], linktype=LINKTYPE_RAW))
    data[23] = 0x14  # FCS-present flag + length bits in the upper bits of "network"
    assert next(read_packets(bytes(data))).linktype == LINKTYPE_RAW


def test_classic_empty_file_has_no_packets() -> None:
    assert list(read_packets(classic([]))) == []


@pytest.mark.tshark
@needs_tshark
@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("nanos", [False, True])
def test_classic_variants_match_tshark(tmp_path: Path, byteorder: str, nanos: bool) -> None:
    path = tmp_path / "x.pcap"
    path.write_bytes(
        classic(
            [ether(IPV4), ether(IPV6, 0x86DD)],
            byteorder=byteorder,
            nanos=nanos,
            stamps=[(1_700_000_000, 123_456), (1_700_000_001, 999_999)],
        )
    )
    assert_matches_tshark(read_file(path), path)


# ---------------------------------------------------------------------------- writer
def test_write_read_round_trip() -> None:
    packets = [IPV4, IPV6, b"", bytes(range(256)) * 10]
    stamps = [1_700_000_000.25, 1_700_000_000.000001, 0.0, 12.5]
    data = write_pcap(packets, timestamps=stamps)
    assert data[:4] == b"\xd4\xc3\xb2\xa1"  # little-endian, microseconds
    back = list(read_packets(data))
    assert [p.frame for p in back] == packets
    assert [p.linktype for p in back] == [LINKTYPE_RAW] * 4
    assert [p.timestamp for p in back] == pytest.approx(stamps, abs=1e-6)


def test_write_defaults_and_linktype() -> None:
    back = list(read_packets(write_pcap(iter([ether(IPV4)] * 3), linktype=LINKTYPE_ETHERNET)))
    assert [p.timestamp for p in back] == [0.0, 1.0, 2.0]
    assert {p.linktype for p in back} == {LINKTYPE_ETHERNET}
    assert [ip_payload(p.linktype, p.frame) for p in back] == [IPV4] * 3
    assert list(read_packets(write_pcap([]))) == []


def test_write_with_a_snap_length_records_the_original_length() -> None:
    """As ``tcpdump -s N``: frames longer than N are cut to N, their length on the wire kept."""
    long = bytes(range(256)) * 2
    data = write_pcap([IPV4, long], snaplen=100)
    assert struct.unpack_from("<I", data, 16)[0] == 100  # the file header's snaplen
    short, cut = read_packets(data)
    assert (short.frame, short.original_length, short.cut) == (IPV4, len(IPV4), False)
    assert (cut.frame, cut.original_length, cut.cut) == (long[:100], 512, True)
    whole = list(read_packets(write_pcap([long])))
    assert [(p.frame, p.original_length, p.cut) for p in whole] == [(long, 512, False)]
    with pytest.raises(ValueError):
        write_pcap([IPV4], snaplen=0)


def test_write_rejects_bad_timestamps() -> None:
    with pytest.raises(ValueError):
        write_pcap([IPV4, IPV4], timestamps=[1.0])
    with pytest.raises(ValueError):
        write_pcap([IPV4], timestamps=[-1.0])
    with pytest.raises(ValueError):
        write_pcap([IPV4], timestamps=[2.0**33])


@pytest.mark.tshark
@needs_tshark
def test_written_file_matches_tshark(tmp_path: Path) -> None:
    path = tmp_path / "w.pcap"
    path.write_bytes(write_pcap([IPV4, IPV6], timestamps=[1_600_000_000.5, 1_600_000_001.75]))
    assert_matches_tshark(read_file(path), path)


# ---------------------------------------------------------------------------- pcapng
@pytest.mark.parametrize("bo", ["<", ">"], ids=["little", "big"])
def test_pcapng_two_interfaces(bo: str) -> None:
    packets = list(read_packets(two_interface_pcapng(bo)))
    assert [p.index for p in packets] == [1, 2, 4]  # the custom block is frame 3 for tshark
    assert [p.linktype for p in packets] == [LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_ETHERNET]
    assert packets[0].timestamp == pytest.approx(1_700_000_100.123456789, abs=1e-6)
    assert packets[1].timestamp == 1_700_000_000.375  # 2^-3 resolution
    assert packets[2].timestamp == 0.0  # simple packet blocks carry no timestamp
    assert [ip_payload(p.linktype, p.frame) for p in packets] == [IPV4, IPV6, IPV4]


def test_pcapng_sections_reset_interfaces_and_byte_order() -> None:
    data = (
        shb("<")
        + idb(LINKTYPE_ETHERNET, "<")
        + epb(0, 1_000_000, ether(IPV4), "<")
        + shb(">")
        + idb(LINKTYPE_RAW, ">", tsresol=3)
        + epb(0, 2_500, IPV6, ">")
    )
    packets = list(read_packets(data))
    assert [(p.index, p.linktype, p.timestamp) for p in packets] == [
        (1, LINKTYPE_ETHERNET, 1.0),
        (2, LINKTYPE_RAW, 2.5),
    ]
    # interface 1 of the first section does not exist in the second one
    with pytest.raises(PcapError) as err:
        list(read_packets(data + epb(1, 0, IPV6, ">")))
    assert err.value.reason == "bad-interface"


def test_pcapng_snaplen_limits_simple_packet() -> None:
    data = shb() + idb(LINKTYPE_RAW, snaplen=10) + spb(IPV4)
    (packet,) = read_packets(data)
    assert packet.frame == IPV4[:10]
    assert packet.original_length == len(IPV4) and packet.cut


def test_pcapng_packet_blocks_give_the_original_length() -> None:
    """An Enhanced Packet Block and the obsolete Packet Block record the length on the wire
    beside the captured length: a frame cut by the snap length says so."""
    cut_epb = struct.pack("<IIIII", 0, 0, 0, 10, len(IPV4)) + IPV4[:10]
    cut_pb = struct.pack("<HHIIII", 0, 0, 0, 0, 12, len(IPV6)) + IPV6[:12]
    data = shb() + idb(LINKTYPE_RAW) + block(6, cut_epb) + block(2, cut_pb) + epb(0, 0, IPV4)
    first, second, whole = read_packets(data)
    assert (first.frame, first.original_length, first.cut) == (IPV4[:10], len(IPV4), True)
    assert (second.frame, second.original_length, second.cut) == (IPV6[:12], len(IPV6), True)
    assert (whole.frame, whole.original_length, whole.cut) == (IPV4, len(IPV4), False)


def test_pcapng_obsolete_packet_block() -> None:
    body = struct.pack("<HHIIII", 0, 0, 0, 3_000_000, len(IPV4), len(IPV4)) + IPV4
    (packet,) = read_packets(shb() + idb(LINKTYPE_RAW) + block(2, body))
    assert (packet.frame, packet.timestamp) == (IPV4, 3.0)


@pytest.mark.tshark
@needs_tshark
@pytest.mark.parametrize("bo", ["<", ">"], ids=["little", "big"])
def test_pcapng_two_interfaces_match_tshark(tmp_path: Path, bo: str) -> None:
    path = tmp_path / "two.pcapng"
    path.write_bytes(two_interface_pcapng(bo))
    assert_matches_tshark(read_file(path), path, non_packets=frozenset({3}))


JOURNAL_ENTRY = b"__REALTIME_TIMESTAMP=1700000000000000\nMESSAGE=hello world\n"


def numbered_non_packets_pcapng() -> bytes:
    return (
        shb()
        + idb(LINKTYPE_ETHERNET)
        + epb(0, 5, ether(IPV4))
        + block(0x00000BAD, struct.pack("<I", 32473) + b"abcd")  # custom block: frame 2
        + block(9, JOURNAL_ENTRY)  # systemd journal export: frame 3
        + block(10, b"\x00" * 8)  # decryption secrets: not numbered
        + block(0x40000BAD, struct.pack("<I", 32473) + b"xyz")  # custom block: frame 4
        + block(0x80000001, b"abc")  # local-use block type: not numbered
        + epb(0, 6, ether(IPV6, 0x86DD))
    )


def test_pcapng_numbered_non_packet_blocks() -> None:
    packets = list(read_packets(numbered_non_packets_pcapng()))
    assert [p.index for p in packets] == [1, 5]
    assert [ip_payload(p.linktype, p.frame) for p in packets] == [IPV4, IPV6]


@pytest.mark.tshark
@needs_tshark
def test_pcapng_numbered_non_packet_blocks_match_tshark(tmp_path: Path) -> None:
    path = tmp_path / "cb.pcapng"
    path.write_bytes(numbered_non_packets_pcapng())
    assert_matches_tshark(read_file(path), path, non_packets=frozenset({2, 3, 4}))


# ---------------------------------------------------------------------------- ip_payload
def test_ip_payload_ethernet_and_vlans() -> None:
    assert ip_payload(LINKTYPE_ETHERNET, ether(IPV4)) == IPV4
    assert ip_payload(LINKTYPE_ETHERNET, ether(IPV6, 0x86DD)) == IPV6
    assert ip_payload(LINKTYPE_ETHERNET, ether(IPV4, tags=(0x8100,))) == IPV4
    assert ip_payload(LINKTYPE_ETHERNET, ether(IPV6, 0x86DD, tags=(0x88A8, 0x8100))) == IPV6
    assert ip_payload(LINKTYPE_ETHERNET, ether(IPV4, tags=(0x9100, 0x8100))) == IPV4
    # Ethernet padding and a trailing FCS are cut off at the IP total length
    assert ip_payload(LINKTYPE_ETHERNET, ether(IPV4) + b"\0" * 20) == IPV4
    assert ip_payload(LINKTYPE_ETHERNET, ether(IPV6, 0x86DD) + b"\xde\xad\xbe\xef") == IPV6


def test_ip_payload_ethernet_non_ip() -> None:
    assert ip_payload(LINKTYPE_ETHERNET, ether(b"\x00\x01" * 14, 0x0806)) is None  # ARP
    assert ip_payload(LINKTYPE_ETHERNET, ether(IPV6, 0x0800)) is None  # version mismatch
    assert ip_payload(LINKTYPE_ETHERNET, ether(IPV4, 0x0040)) is None  # 802.3 length field
    assert ip_payload(LINKTYPE_ETHERNET, ether(b"", 0x0800)) is None
    assert ip_payload(LINKTYPE_ETHERNET, MAC_DST + MAC_SRC + b"\x81\x00\x00") is None
    assert ip_payload(LINKTYPE_ETHERNET, b"\x00" * 13) is None


def test_ip_payload_truncated_ip_is_returned_as_captured() -> None:
    assert ip_payload(LINKTYPE_ETHERNET, ether(IPV4[:10])) == IPV4[:10]
    assert ip_payload(LINKTYPE_RAW, IPV4[:25]) == IPV4[:25]


@pytest.mark.parametrize("linktype", [LINKTYPE_NULL, LINKTYPE_LOOP])
def test_ip_payload_null_and_loop(linktype: int) -> None:
    for order in ("little", "big"):
        assert ip_payload(linktype, (2).to_bytes(4, order) + IPV4) == IPV4
        for family in (24, 28, 30):
            assert ip_payload(linktype, family.to_bytes(4, order) + IPV6) == IPV6
        assert ip_payload(linktype, (7).to_bytes(4, order) + IPV4) is None
    assert ip_payload(linktype, (2).to_bytes(4, "little") + IPV6) is None
    assert ip_payload(linktype, b"\x02\x00") is None


def test_ip_payload_raw_types() -> None:
    assert ip_payload(LINKTYPE_RAW, IPV4) == IPV4
    assert ip_payload(LINKTYPE_RAW, IPV6) == IPV6
    assert ip_payload(LINKTYPE_RAW, b"\x50" + IPV4[1:]) is None
    assert ip_payload(LINKTYPE_RAW, b"") is None
    assert ip_payload(LINKTYPE_IPV4, IPV4) == IPV4
    assert ip_payload(LINKTYPE_IPV4, IPV6) is None
    assert ip_payload(LINKTYPE_IPV6, IPV6) == IPV6
    assert ip_payload(LINKTYPE_IPV6, IPV4) is None
    assert ip_payload(147, IPV4) is None  # a user link type: unknown


def test_ip_payload_linux_cooked() -> None:
    sll = struct.pack("!HHH", 0, 1, 6) + MAC_SRC + b"\0\0"
    assert ip_payload(LINKTYPE_LINUX_SLL, sll + b"\x08\x00" + IPV4) == IPV4
    assert ip_payload(LINKTYPE_LINUX_SLL, sll + b"\x86\xdd" + IPV6) == IPV6
    assert ip_payload(LINKTYPE_LINUX_SLL, sll + b"\x81\x00\x00\x64\x08\x00" + IPV4) == IPV4
    assert ip_payload(LINKTYPE_LINUX_SLL, sll + b"\x08\x06" + IPV4) is None
    assert ip_payload(LINKTYPE_LINUX_SLL, sll) is None

    def sll2(ethertype: int) -> bytes:
        return struct.pack("!HHIHBB", ethertype, 0, 3, 1, 0, 6) + MAC_SRC + b"\0\0"

    assert ip_payload(LINKTYPE_LINUX_SLL2, sll2(0x0800) + IPV4) == IPV4
    assert ip_payload(LINKTYPE_LINUX_SLL2, sll2(0x86DD) + IPV6) == IPV6
    assert ip_payload(LINKTYPE_LINUX_SLL2, sll2(0x8100) + b"\x00\x64\x86\xdd" + IPV6) == IPV6
    assert ip_payload(LINKTYPE_LINUX_SLL2, sll2(0x0806) + IPV4) is None
    assert ip_payload(LINKTYPE_LINUX_SLL2, sll2(0x0800)[:19]) is None


# ---------------------------------------------------------------------------- malformed
def _reason(data: bytes) -> str:
    with pytest.raises(PcapError) as err:
        list(read_packets(data))
    return err.value.reason


def test_malformed_headers() -> None:
    assert _reason(b"") == "truncated-header"
    assert _reason(b"\xd4\xc3") == "truncated-header"
    assert _reason(b"GIF89a..........................") == "bad-magic"
    assert _reason(classic([])[:23]) == "truncated-header"
    assert _reason(shb()[:11]) == "truncated-header"
    assert _reason(shb()[:8] + b"\x00\x00\x00\x00" + shb()[12:]) == "bad-magic"
    assert _reason(shb(major=2)) == "bad-version"
    assert _reason(idb(LINKTYPE_RAW)) == "bad-magic"  # first block must be a section header


def test_header_errors_are_raised_on_call() -> None:
    with pytest.raises(PcapError):
        read_packets(b"nonsense")


def test_malformed_classic_records() -> None:
    good = classic([ether(IPV4), ether(IPV6, 0x86DD)])
    assert _reason(good[:-1]) == "truncated-record"  # last record cut short
    assert _reason(good + b"\x00" * 7) == "truncated-record"  # partial record header
    lying = bytearray(classic([ether(IPV4)]))
    lying[24 + 8 : 24 + 12] = struct.pack("<I", 0xFFFFFFFF)  # incl_len beyond the file
    assert _reason(bytes(lying)) == "truncated-record"


def test_truncated_final_record_yields_earlier_packets_first() -> None:
    data = classic([ether(IPV4), ether(IPV6, 0x86DD)])[:-3]
    seen: list[CapturedPacket] = []
    with pytest.raises(PcapError) as err:
        seen.extend(read_packets(data))
    assert err.value.reason == "truncated-record"
    assert [p.frame for p in seen] == [ether(IPV4)]
    assert "record 2" in str(err.value)


def test_malformed_pcapng_blocks() -> None:
    head = shb() + idb(LINKTYPE_RAW)
    packet = epb(0, 0, IPV4)
    assert _reason(head + packet[:-1]) == "truncated-block"
    assert _reason(head + packet[:10]) == "truncated-block"
    for bad_len in (8, 14, 1 << 30):
        lying = bytearray(packet)
        lying[4:8] = struct.pack("<I", bad_len)
        expected = "truncated-block" if bad_len > len(packet) else "bad-block-length"
        assert _reason(head + bytes(lying)) == expected
    mismatch = bytearray(packet)
    mismatch[-4:] = struct.pack("<I", len(packet) + 4)
    assert _reason(head + bytes(mismatch)) == "bad-block-length"
    assert _reason(head + epb(1, 0, IPV4)) == "bad-interface"
    assert _reason(shb() + spb(IPV4)) == "bad-interface"
    caplen = bytearray(packet)
    caplen[8 + 12 : 8 + 16] = struct.pack("<I", 4000)  # captured length beyond the block
    assert _reason(head + bytes(caplen)) == "truncated-record"
    assert _reason(head + block(6, b"\x00" * 8)) == "bad-block"
    assert _reason(head + block(2, b"\x00" * 8)) == "bad-block"
    assert _reason(head + block(3, b"")) == "bad-block"
    assert _reason(shb() + block(1, b"\x01\x00")) == "bad-block"
    assert _reason(block(0x0A0D0D0A, struct.pack("<I", 0x1A2B3C4D))) == "bad-block"


def test_malformed_pcapng_options() -> None:
    body = struct.pack("<HHI", LINKTYPE_RAW, 0, 0)
    overrun = body + struct.pack("<HH", 9, 200) + b"\x06\x00\x00\x00"
    assert _reason(shb() + block(1, overrun)) == "bad-option"
    assert _reason(shb() + block(1, body + option(9, b"\x06\x06"))) == "bad-option"
    assert _reason(shb() + block(1, body + option(14, b"\x00" * 4))) == "bad-option"


def test_pcap_error_shape() -> None:
    err = PcapError("bad-magic", "detail")
    assert isinstance(err, Exception)
    assert err.reason == "bad-magic" and err.detail == "detail"
    assert str(err) == "bad-magic: detail"
    assert str(PcapError("truncated-record")) == "truncated-record"


# ---------------------------------------------------------------------------- fuzz
SEEDS = [
    classic([ether(IPV4), ether(IPV6, 0x86DD, tags=(0x8100,))]),
    classic([IPV4], byteorder=">", nanos=True, linktype=LINKTYPE_RAW),
    write_pcap([IPV4, IPV6]),
    two_interface_pcapng("<"),
    two_interface_pcapng(">"),
    shb(">") + idb(LINKTYPE_LINUX_SLL2, ">", snaplen=40) + spb(IPV4 * 3, ">"),
] + [p.read_bytes() for p in CAPTURE_FILES if p.stat().st_size < 4096]


def _consume(data: bytes) -> None:
    try:
        for packet in read_packets(data):
            assert isinstance(packet, CapturedPacket)
            ip = ip_payload(packet.linktype, packet.frame)
            assert ip is None or ip[0] >> 4 in (4, 6)
    except PcapError as err:
        assert err.reason


@st.composite
def mutated_captures(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set32", "truncate", "insert", "delete"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set32":
            value = draw(st.sampled_from([0, 1, 3, 12, 0x7FFFFFFF, 0xFFFFFFFF]))
            data[i : i + 4] = struct.pack(draw(st.sampled_from(["<I", ">I"])), value)
        elif op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[i : i + draw(st.integers(1, 16))]
    return bytes(data)


MAGICS = [b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
          b"\x0a\x0d\x0d\x0a"]  # fmt: skip


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=256),
        st.tuples(st.sampled_from(MAGICS), st.binary(max_size=256)).map(lambda t: t[0] + t[1]),
        st.tuples(st.sampled_from(MAGICS), st.binary(max_size=4), st.sampled_from(
            [b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"]), st.binary(max_size=200)
        ).map(b"".join),
        mutated_captures(),
    )
)  # fmt: skip
def test_fuzz_parses_or_raises_pcap_error(data: bytes) -> None:
    _consume(data)


@settings(max_examples=2000, deadline=None)
@given(
    st.sampled_from([0, 1, 101, 108, 113, 228, 229, 276, 9999]),
    st.binary(max_size=80),
)
def test_fuzz_ip_payload_never_raises(linktype: int, frame: bytes) -> None:
    ip = ip_payload(linktype, frame)
    assert ip is None or (ip[0] >> 4 in (4, 6) and len(ip) <= len(frame))
