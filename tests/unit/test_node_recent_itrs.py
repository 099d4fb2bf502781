"""The ETR's memory of the ITRs that sent it traffic (for SMRs), on a node: bounded in sources
and in bytes per source, however many (spoofed) sources send valid packets."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, ip_address

from lispd.config import parse_config
from lispd.mapcache import DatabaseEntry, RlocEntry
from lispd.node import Node
from lispd.node import node as node_module
from lispd.node.actions import WriteTun
from lispd.wire.ip import IPv4Header, UdpDatagram, build_udp_datagram
from lispd.wire.maprequest import decode_map_request
from tests.unit.socketless import perform, xtr_config

CONFIG = xtr_config()


def encapsulated(inner_src: str, size: int) -> bytes:
    """A LISP data packet (instance 0) to the local EID 198.51.100.2 of ``size`` inner bytes."""
    header = IPv4Header(IPv4Address(inner_src), IPv4Address("198.51.100.2"))
    inner = build_udp_datagram(UdpDatagram(header, 40000, 9, bytes(size - 28)))
    return struct.pack("!II", 0x88000000, 0) + inner


def test_spoofed_sources_cannot_grow_the_itr_memory() -> None:
    """Regression: every decapsulated packet was kept whole under its outer source for up to
    two 300 s windows (20,000 spoofed sources x 8 KB held 163 MB)."""
    node = Node(parse_config(CONFIG), 0.0)
    n = node_module.MAX_RECENT_ITRS + 1000
    written = 0
    for k in range(n):
        src = str(IPv4Address(0x0A000000 + k))
        node.data_datagram(encapsulated("203.0.113.9", 8000), 64, 0, src, 4341, 0.0)
        written += sum(1 for a in perform(node) if isinstance(a, WriteTun))
    assert written == n  # every packet delivered all the same
    assert node.counters.packets["etr.decap.packets"] == n
    assert len(node.recent_itrs) == node_module.MAX_RECENT_ITRS
    assert max(len(v) for v in node.recent_itrs.values()) == node_module.SMR_SAMPLE


def test_an_itr_remembered_from_a_sample_still_gets_its_smr() -> None:
    node = Node(parse_config(CONFIG), 0.0)
    node.data_datagram(encapsulated("203.0.113.9", 1400), 64, 0, "192.0.2.7", 4341, 0.0)
    node.data_datagram(encapsulated("203.0.113.10", 1400), 64, 0, "192.0.2.7", 4341, 0.0)
    perform(node)
    changed = DatabaseEntry(
        0, node.database.entries()[0].prefix, (RlocEntry(ip_address("192.0.2.1"), 2, 100),)
    )
    (smr,) = node._solicit([changed], 1440, 0.0)
    assert smr.dst == ip_address("192.0.2.7")
    request = decode_map_request(smr.payload)
    assert request.smr and request.records[0].address == ip_address("203.0.113.9")
