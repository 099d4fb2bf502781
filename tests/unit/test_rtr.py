"""The RTR's re-encapsulation decisions, and the ITR forwarding features it relies on (Explicit
Locator Paths, NAT-translated ports, sending through the RTRs from behind a NAT)."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address, ip_network

import pytest

from lispd.dataplane.inner import decrement_ttl
from lispd.dataplane.itr import Itr
from lispd.dataplane.outputs import Drop, Encap, Miss
from lispd.dataplane.rloc import elp_next_hop
from lispd.dataplane.rtr import Rtr
from lispd.mapcache import DatabaseEntry, LocalDatabase, MapCache, MapCacheEntry, RlocEntry
from lispd.node.natbindings import NatBindings
from lispd.stats import Counters
from lispd.wire.data import IID_CONTROL, build_data_header
from lispd.wire.ip import IPv4Header, IPv6Header, UdpDatagram, build_udp_datagram, internet_checksum

RTR_A, RTR_B, ETR = "192.0.2.5", "192.0.2.9", "192.0.2.13"
PUBLIC = IPv4Address("192.0.2.21")  # the RTR's address on the far side of its 1:1 NAT


def packet(dst: str = "198.51.100.18", ttl: int = 64) -> bytes:
    src = "198.51.100.2" if ":" not in dst else "2001:db8:100:1::2"
    hdr = (
        IPv4Header(ip_address(src), ip_address(dst), ttl=ttl)
        if ":" not in dst
        else IPv6Header(ip_address(src), ip_address(dst), hop_limit=ttl)
    )
    return build_udp_datagram(UdpDatagram(hdr, 1000, 2000, b"payload"))


def forwarder(local: str, entries: list[MapCacheEntry], **kw: object) -> Itr:
    mapcache = MapCache()
    for e in entries:
        mapcache.add(e)
    database = LocalDatabase()
    database.add(DatabaseEntry(0, ip_network("198.51.100.0/28"), (RlocEntry(ETR, 1, 100),)))
    return Itr(mapcache, database, {4: ip_address(local)}, 1500, Counters(), lambda: 7, float, **kw)  # type: ignore[arg-type]


def entry(prefix: str, *rlocs: RlocEntry, iid: int = 0, action: str = "encapsulate"):
    return MapCacheEntry(iid, ip_network(prefix), rlocs, action, source="static")  # type: ignore[arg-type]


PATH = RlocEntry(RTR_A, 1, 100, elp=(RTR_A, RTR_B, ETR))


def test_elp_next_hop() -> None:
    path = [ip_address(a) for a in (RTR_A, RTR_B, ETR)]
    assert elp_next_hop(path, set()) == path[0]  # an ITR: the first hop
    assert elp_next_hop(path, {path[0]}) == path[1]
    assert elp_next_hop(path, {path[1]}) == path[2]
    assert elp_next_hop(path, {path[2]}) is None  # the ETR is the end


def test_rloc_entry_path_checks() -> None:
    with pytest.raises(ValueError):
        RlocEntry(RTR_B, 1, 100, elp=(RTR_A, RTR_B))  # address must be the first hop
    with pytest.raises(ValueError):
        RlocEntry(RTR_A, 1, 100, elp=(RTR_A, RTR_B, RTR_A))
    with pytest.raises(ValueError):
        RlocEntry(RTR_A, 1, 100, elp=(RTR_A,))


def test_itr_encapsulates_to_the_first_hop_and_each_rtr_to_the_next() -> None:
    pkt = packet()
    itr = forwarder("192.0.2.2", [entry("198.51.100.16/28", PATH)])
    out = itr.handle(pkt)
    assert type(out) is Encap and str(out.rloc) == RTR_A and out.port == 4341
    for here, nxt in ((RTR_A, RTR_B), (RTR_B, ETR)):
        rtr = Rtr(forwarder(here, [entry("198.51.100.16/28", PATH)]))
        out = rtr.handle(build_data_header(1, 0) + pkt, 64, 0)
        assert type(out) is Encap and str(out.rloc) == nxt, here
    end = Rtr(forwarder(ETR, [entry("198.51.100.16/28", PATH)]))
    assert end.handle(build_data_header(1, 0) + pkt, 64, 0) == Drop("elp-ends-here")


def test_rtr_finds_itself_by_its_public_address() -> None:
    rtr = Rtr(
        forwarder("192.0.2.130", [entry("198.51.100.16/28", PATH)], own_rlocs=[ip_address(RTR_A)])
    )
    out = rtr.handle(build_data_header(1, 0) + packet(), 64, 0)
    assert type(out) is Encap and str(out.rloc) == RTR_B


def test_rtr_keeps_the_instance_lowers_the_ttl_and_fixes_the_checksum() -> None:
    rtr = Rtr(forwarder(RTR_A, [entry("198.51.100.16/28", RlocEntry(ETR, 1, 100), iid=5)]))
    out = rtr.handle(build_data_header(1, 5) + packet(ttl=40), 30, 0)
    assert type(out) is Encap and str(out.rloc) == ETR
    assert out.payload[:8] == build_data_header(7, 5)  # instance-ID 5 kept
    inner = out.payload[8:]
    assert inner[8] == 29 and out.ttl == 29  # min(inner 40, outer 30) - 1
    assert internet_checksum(inner[:20]) == 0


def test_rtr_ipv6_hop_limit_and_expiry() -> None:
    rtr = Rtr(forwarder(RTR_A, [entry("2001:db8:100:2::/64", RlocEntry(ETR, 1, 100))]))
    out = rtr.handle(build_data_header(1, 0) + packet("2001:db8:100:2::2", ttl=10), 64, 0)
    assert type(out) is Encap and out.payload[8 + 7] == 9
    assert rtr.handle(build_data_header(1, 0) + packet(ttl=1), 64, 0) == Drop("ttl-exceeded")
    assert decrement_ttl(packet(ttl=2))[8] == 1  # type: ignore[index]


def test_rtr_sends_to_a_nated_xtr_at_its_translated_port_from_the_data_port() -> None:
    nated = ip_address("192.0.2.33")
    ports = {nated: 40123}
    rtr = Rtr(
        forwarder(
            RTR_A,
            [entry("198.51.100.16/28", RlocEntry(nated, 1, 100))],
            nat_port=lambda address, _iid, _prefix: ports.get(address),
        )
    )
    out = rtr.handle(build_data_header(1, 0) + packet(), 64, 0)
    assert type(out) is Encap and out.rloc == nated and out.port == 40123 and out.data_port
    ports.clear()
    out = rtr.handle(build_data_header(1, 0) + packet(), 64, 0)
    assert type(out) is Encap and out.port == 4341 and not out.data_port


def test_rtr_sends_each_nated_xtr_behind_one_address_to_its_own_port() -> None:
    """Two xTRs behind one NAT address: the RTR picks the binding by the entry's EID-prefix,
    the address-wide binding for a prefix nobody claims."""
    nated = ip_address("192.0.2.33")
    bindings = NatBindings(timeout=60.0, max_entries=10)
    bindings.learn(nated, 40001, 0.0, (0, ip_network("198.51.100.16/28")))
    bindings.learn(nated, 40002, 0.0, (0, ip_network("198.51.100.32/28")))
    rtr = Rtr(
        forwarder(
            RTR_A,
            [
                entry("198.51.100.16/28", RlocEntry(nated, 1, 100)),
                entry("198.51.100.32/28", RlocEntry(nated, 1, 100)),
                entry("198.51.100.48/28", RlocEntry(nated, 1, 100)),
            ],
            nat_port=bindings.port_for,
        )
    )
    ports = []
    for dst in ("198.51.100.18", "198.51.100.34", "198.51.100.50"):
        out = rtr.handle(build_data_header(1, 0) + packet(dst=dst), 64, 0)
        assert type(out) is Encap and out.rloc == nated and out.data_port
        ports.append(out.port)
    assert ports == [40001, 40002, 40001]  # the last: nobody's prefix, the address-wide one


def test_rtr_miss_holds_the_decapsulated_packet() -> None:
    rtr = Rtr(forwarder(RTR_A, []))
    pkt = packet(ttl=20)
    out = rtr.handle(build_data_header(1, 3) + pkt, 64, 0)
    assert type(out) is Miss and out.iid == 3 and out.packet == decrement_ttl(pkt)
    # The RTR forwards a bytearray (TTL lowered in a copy): what the daemon keeps is bytes.
    assert (type(out.dst), type(out.src), type(out.packet)) == (bytes, bytes, bytes)
    assert ip_address(out.dst) == ip_address("198.51.100.18")


def test_itr_miss_of_a_bytearray_packet_has_bytes_addresses() -> None:
    out = forwarder(RTR_A, []).handle(bytearray(packet()), 3)
    assert type(out) is Miss and out.iid == 3
    assert (out.dst, out.src) == (ip_address("198.51.100.18").packed, bytes(packet()[12:16]))
    assert type(out.dst) is bytes and type(out.src) is bytes


def test_rtr_drops_bad_input_with_named_reasons() -> None:
    rtr = Rtr(forwarder(RTR_A, [entry("0.0.0.0/0", action="native-forward")]))
    assert rtr.handle(b"\x88\x00", 64, 0) == Drop("truncated-header")
    assert rtr.handle(build_data_header(1, IID_CONTROL) + packet(), 64, 0) == Drop(
        "data-control-unsupported"
    )
    assert rtr.handle(build_data_header(1, 0) + b"\x45" * 10, 64, 0) == Drop("bad-inner-header")
    keyed = bytearray(build_data_header(1, 0))
    keyed[0] |= 0x01  # key-id bits: encrypted
    assert rtr.handle(bytes(keyed) + packet(), 64, 0) == Drop("encrypted-unsupported")
    # Not an EID (the mapping system said forward natively) and no PETR: dropped, counted.
    assert rtr.handle(build_data_header(1, 0) + packet("203.0.113.1"), 64, 0) == Drop(
        "native-forward-no-petr"
    )


def test_itr_behind_nat_sends_everything_without_a_mapping_to_the_rtrs() -> None:
    itr = forwarder(
        "192.0.2.130",
        [
            entry("198.51.100.0/24", action="send-map-request"),
            entry("198.51.100.32/28", RlocEntry("192.0.2.40", 1, 100)),
        ],
    )
    pkt = packet()
    assert type(itr.handle(pkt)) is Miss
    itr.rtrs = (RlocEntry(RTR_A, 1, 100),)
    out = itr.handle(pkt)
    assert type(out) is Encap and str(out.rloc) == RTR_A and out.data_port
    static = itr.handle(packet("198.51.100.34"))
    assert type(static) is Encap and str(static.rloc) == "192.0.2.40" and not static.data_port
    itr.rtrs = (RlocEntry(RTR_A, 1, 100, up=False),)
    assert itr.handle(pkt) == Drop("no-live-rtr")


def test_rtr_encapsulates_a_packet_too_big_for_the_next_hop_instead_of_answering_icmp() -> None:
    big = build_udp_datagram(
        UdpDatagram(
            IPv4Header(ip_address("198.51.100.2"), ip_address("198.51.100.18")),
            1000,
            2000,
            b"x" * 1460,
        )
    )
    itr = forwarder(RTR_A, [entry("198.51.100.16/28", RlocEntry(ETR, 1, 100))])
    assert type(itr.handle(big)) is not Encap  # an ITR answers ICMP too-big instead
    out = Rtr(itr).handle(build_data_header(1, 0) + big, 64, 0)
    assert type(out) is Encap and len(out.payload) == 8 + len(big)
