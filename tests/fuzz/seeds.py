"""Seed messages for mutation fuzzing: messages and packets built with our encoders for every
type lispd knows (Info, ELP, NAT LCAF, IPv6 ECM...), plus the real captures of other
implementations when they are beside the checkout (:mod:`tests.external`)."""

from __future__ import annotations

import struct
from functools import cache
from ipaddress import IPv4Address, IPv6Address

from lispd.tools.pcap import LINKTYPE_ETHERNET, LINKTYPE_RAW, ip_payload, read_file, write_pcap
from lispd.wire.address import (
    AfiListAddress,
    DistinguishedName,
    ElpAddress,
    ElpHop,
    InstanceIdAddress,
    NatTraversalAddress,
    UnknownLcaf,
)
from lispd.wire.control import encode_control
from lispd.wire.data import DataHeader, EncapsulatedPacket, encapsulate
from lispd.wire.ecm import EncapsulatedControl
from lispd.wire.errors import WireError
from lispd.wire.info import InfoMessage
from lispd.wire.ip import IPv4Header, IPv6Header, parse_udp_datagram
from lispd.wire.mapreferral import MapReferral, ReferralAction, ReferralRecord
from lispd.wire.mapregister import MapNotify, MapRegister, encode_signed
from lispd.wire.mapreply import MapReply
from lispd.wire.maprequest import MapRequest
from lispd.wire.records import Action, EidPrefix, EidRecord, Locator
from tests.external import capture_files

V4 = IPv4Address("192.0.2.1")
V4B = IPv4Address("192.0.2.5")
V6 = IPv6Address("2001:db8::1")
EID4 = InstanceIdAddress(7, IPv4Address("198.51.100.0"))
EID6 = IPv6Address("2001:db8:100::")


def built_control_messages() -> list[bytes]:
    """Control messages covering every type and LCAF lispd knows."""
    locs = (
        Locator(V4, 1, 50, local=True),
        Locator(V6, 1, 50, probed=True),
        Locator(ElpAddress((ElpHop(V4B, lookup=True), ElpHop(V4, strict=True))), 2, 100),
        Locator(AfiListAddress((V4, V6)), 255, 0),
        Locator(UnknownLcaf(14, b'{"a": 1}\x00\x00', flags=1), 3, 0),
    )
    rec = EidRecord(EID4, 24, locs, ttl=1440, authoritative=True, map_version=5)
    neg = EidRecord(EID6, 48, (), ttl=15, action=Action.NATIVELY_FORWARD)
    request = MapRequest(
        nonce=0x0102030405060708,
        records=(EidPrefix(EID4, 32), EidPrefix(EID6, 128)),
        itr_rlocs=(V4, V6),
        source_eid=InstanceIdAddress(7, IPv4Address("198.51.100.1")),
        smr=True,
        map_reply=rec,
    )
    nat = NatTraversalAddress(4342, 61000, IPv4Address("203.0.113.9"), V4, V4B, (V4, V6))
    msgs: list[bytes] = [
        encode_control(request),
        encode_control(MapReply(nonce=9, records=(rec, neg), probe=True, reported_ttl=62)),
        encode_signed(
            MapRegister(nonce=3, records=(rec,), want_map_notify=True, xtr_id=1 << 100, site_id=4),
            b"key",
        ),
        encode_signed(MapNotify(nonce=3, records=(neg,), key_id=1), b"key"),
        encode_control(InfoMessage(nonce=5, address=DistinguishedName("xtr1"))),
        encode_control(
            InfoMessage(nonce=5, reply=True, ttl=1, eid=EID4, eid_mask_len=24, address=nat)
        ),
        encode_control(
            EncapsulatedControl(
                IPv6Header(IPv6Address("2001:db8:100::1"), V6), 40000, 4342, request, to_ms=True
            )
        ),
        encode_control(
            EncapsulatedControl(
                IPv4Header(IPv4Address("198.51.100.1"), IPv4Address("198.51.100.70")),
                4342,
                4342,
                request,
                ddt=True,
            )
        ),
        encode_control(
            MapReferral(
                nonce=11,
                records=(
                    ReferralRecord(EID4, 24, locs[:2], 1440, ReferralAction.MS_REFERRAL),
                    ReferralRecord(EID6, 48, (), 15, ReferralAction.DELEGATION_HOLE),
                ),
            )
        ),
    ]
    return msgs


@cache
def capture_payloads() -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """(control payloads, whole IP packets) from every capture beside the checkout (none
    when the captures are absent)."""
    control: list[bytes] = []
    packets: list[bytes] = []
    for path in capture_files():
        for pkt in read_file(path):
            ip = ip_payload(pkt.linktype, pkt.frame)
            if ip is None:
                continue
            packets.append(ip)
            try:
                dg = parse_udp_datagram(ip)
            except WireError:  # a seed that does not frame is simply skipped
                continue
            if 4342 in (dg.sport, dg.dport):
                control.append(dg.payload)
    return tuple(control), tuple(packets)


@cache
def control_seeds() -> tuple[bytes, ...]:
    """Every control-message seed."""
    return tuple(built_control_messages()) + capture_payloads()[0]


@cache
def packet_seeds() -> tuple[bytes, ...]:
    """Whole IP packets: captures plus LISP data packets over IPv4 and IPv6."""
    inner = bytes.fromhex("4500001c0001000040110000c6336401c633641104d2162e00080000")
    data = [
        encapsulate(
            EncapsulatedPacket(
                IPv4Header(V4, V4B),
                50000,
                DataHeader(nonce_present=True, instance_id_present=True, nonce=7, instance_id=9),
                inner,
                zero_checksum=True,
            )
        ),
        encapsulate(
            EncapsulatedPacket(
                IPv6Header(V6, IPv6Address("2001:db8::2")),
                50001,
                DataHeader(map_version_present=True, source_map_version=1, dest_map_version=2),
                inner,
            )
        ),
    ]
    return tuple(data) + capture_payloads()[1]


def _pcapng(frames: tuple[bytes, ...], linktype: int) -> bytes:
    """A little-endian pcapng file: section header, one interface (with a nanosecond
    ``if_tsresol`` option) and one enhanced packet block per frame."""

    def block(kind: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    tsresol = struct.pack("<HHB3x", 9, 1, 9) + bytes(4)  # if_tsresol = 10^-9, end of options
    out.append(block(1, struct.pack("<HHI", linktype, 0, 262144) + tsresol))
    for i, frame in enumerate(frames):
        ticks = (1_700_000_000 + i) * 10**9
        head = struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame))
        out.append(block(6, head + frame))
    return b"".join(out)


@cache
def capture_file_seeds() -> tuple[bytes, ...]:
    """Whole capture files for the pcap/pcapng reader: files written from our own packets (raw
    IP and Ethernet, classic pcap and pcapng), then the first 4 KiB of every real capture."""
    packets = packet_seeds()[:2]
    ethernet = tuple(
        bytes.fromhex("020000000002020000000001")
        + (b"\x08\x00" if p[0] >> 4 == 4 else b"\x86\xdd")
        + p
        for p in packets
    )
    built = (
        write_pcap(packets, LINKTYPE_RAW),
        write_pcap(ethernet, LINKTYPE_ETHERNET, [1_700_000_000.5, 1_700_000_001.25]),
        _pcapng(packets, LINKTYPE_RAW),
        _pcapng(ethernet, LINKTYPE_ETHERNET),
    )
    return built + tuple(p.read_bytes()[:4096] for p in capture_files())
