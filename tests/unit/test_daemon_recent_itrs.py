"""The ETR's memory of the ITRs that sent it traffic (for SMRs), without sockets: bounded in
sources and in bytes per source, however many (spoofed) sources send valid packets."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, ip_address

from lispd import daemon as daemon_module
from lispd.config import parse_config
from lispd.daemon import Daemon
from lispd.mapcache import DatabaseEntry, RlocEntry
from lispd.wire.ip import IPv4Header, UdpDatagram, build_udp_datagram
from lispd.wire.maprequest import decode_map_request
from tests.unit.socketless import xtr_config

CONFIG = xtr_config()


class FakeTun:
    """Accepts every packet written to it."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, packet: bytes) -> bool:
        self.written += 1
        return True


def encapsulated(inner_src: str, size: int) -> bytes:
    """A LISP data packet (instance 0) to the local EID 198.51.100.2 of ``size`` inner bytes."""
    header = IPv4Header(IPv4Address(inner_src), IPv4Address("198.51.100.2"))
    inner = build_udp_datagram(UdpDatagram(header, 40000, 9, bytes(size - 28)))
    return struct.pack("!II", 0x88000000, 0) + inner


def test_spoofed_sources_cannot_grow_the_itr_memory() -> None:
    """Regression: every decapsulated packet was kept whole under its outer source for up to
    two 300 s windows (20,000 spoofed sources x 8 KB held 163 MB)."""
    d = Daemon(parse_config(CONFIG), clock=lambda: 0.0)
    tun = FakeTun()
    d.tun = tun  # type: ignore[assignment]
    n = daemon_module.MAX_RECENT_ITRS + 1000
    for k in range(n):
        d._etr_packet(
            encapsulated("203.0.113.9", 8000), 64, 0, str(IPv4Address(0x0A000000 + k)), 4341
        )
    assert tun.written == n  # every packet delivered all the same
    assert len(d._recent_itrs) == daemon_module.MAX_RECENT_ITRS
    assert max(len(v) for v in d._recent_itrs.values()) == daemon_module.SMR_SAMPLE


def test_an_itr_remembered_from_a_sample_still_gets_its_smr() -> None:
    d = Daemon(parse_config(CONFIG), clock=lambda: 0.0)
    d.tun = FakeTun()  # type: ignore[assignment]
    d._etr_packet(encapsulated("203.0.113.9", 1400), 64, 0, "192.0.2.7", 4341)
    d._etr_packet(encapsulated("203.0.113.10", 1400), 64, 0, "192.0.2.7", 4341)
    changed = DatabaseEntry(
        0, d.database.entries()[0].prefix, (RlocEntry(ip_address("192.0.2.1"), 2, 100),)
    )
    (smr,) = d._solicit([changed], 1440, 0.0)
    assert smr.dst == ip_address("192.0.2.7")
    request = decode_map_request(smr.payload)
    assert request.smr and request.records[0].address == ip_address("203.0.113.9")
