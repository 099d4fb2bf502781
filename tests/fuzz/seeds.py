"""Seed messages for mutation fuzzing: real captures from other implementations plus messages
built with our encoders for the types the captures lack (Info, ELP, NAT LCAF, IPv6 ECM...)."""

from __future__ import annotations

from functools import cache
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from lispd.tools.pcap import ip_payload, read_file
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
from lispd.wire.mapregister import MapNotify, MapRegister, encode_signed
from lispd.wire.mapreply import MapReply
from lispd.wire.maprequest import MapRequest
from lispd.wire.records import Action, EidPrefix, EidRecord, Locator

CAPTURES = Path(__file__).resolve().parents[2].parent / "shared" / "captures"

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
    ]
    return msgs


@cache
def capture_payloads() -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """(control payloads, whole IP packets) from every capture in shared/captures."""
    control: list[bytes] = []
    packets: list[bytes] = []
    if not CAPTURES.is_dir():
        return (), ()
    for path in sorted(CAPTURES.glob("*.pcap")):
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
