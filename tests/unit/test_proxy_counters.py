"""PITR and PETR traffic on the Python path: the role logic marks it (``Encap.pitr``,
``ToTun.petr``) and the daemon counts it under ``pitr.encap`` / ``petr.decap`` instead of
``itr.encap`` / ``etr.decap``, so that summing the counters never counts a packet twice."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv6Address, ip_network
from typing import Any

from lispd.cli.lispctl import format_stats
from lispd.config import parse_config
from lispd.control.plane import ControlResult
from lispd.daemon import Daemon
from lispd.dataplane.etr import Etr
from lispd.dataplane.itr import Itr
from lispd.dataplane.outputs import Drop, Encap, ToTun
from lispd.mapcache import DatabaseEntry, LocalDatabase, MapCache, MapCacheEntry, RlocEntry
from lispd.stats import Counters
from lispd.wire.data import build_data_header
from lispd.wire.ip import IPv4Header, IPv6Header, UdpDatagram, build_udp_datagram
from tests import configs

LOCAL_EID = "198.51.100.2"  # in the database-mapping 198.51.100.0/28
OUTSIDE = "192.0.2.99"  # a non-LISP host
OUTSIDE_V6 = "2001:db8:99::1"
REMOTE = "203.0.113.5"  # in the static map-cache entry 203.0.113.0/25
REMOTE_V6 = "2001:db8:200::5"  # in 2001:db8:200::/48
RESOLVED = "203.0.113.200"  # in the send-map-request range 203.0.113.128/25
UNCOVERED = "192.0.2.200"  # no map-cache entry covers it
ETR_RLOC = "192.0.2.6"


def packet(src: str, dst: str, payload: bytes = b"payload", dport: int = 2000) -> bytes:
    """A UDP packet over IPv4 or IPv6 (by the addresses' family)."""
    if ":" in dst:
        h6 = IPv6Header(IPv6Address(src), IPv6Address(dst))
        return build_udp_datagram(UdpDatagram(h6, 1000, dport, payload))
    h4 = IPv4Header(IPv4Address(src), IPv4Address(dst))
    return build_udp_datagram(UdpDatagram(h4, 1000, dport, payload))


def config(roles: tuple[str, ...], database: bool) -> str:
    """A node of ``roles``: static mappings for 203.0.113.0/25 and 2001:db8:200::/48, the range
    203.0.113.128/25 to resolve; with ``database`` the local EIDs 198.51.100.0/28."""
    doc = configs.node(
        "pxtr",
        roles,
        ("192.0.2.1", "2001:db8:0:1::1"),
        map_cache=[
            configs.mapping("203.0.113.0/25", ETR_RLOC),
            configs.mapping("2001:db8:200::/48", ETR_RLOC),
            configs.resolve("203.0.113.128/25"),
        ],
        map_resolver=configs.addresses("192.0.2.10"),
        probing={"map-cache": False},
    )
    if database:
        doc["database-mapping"] = [configs.mapping("198.51.100.0/28", "192.0.2.1")]
    return configs.toml(doc)


class FakeSender:
    """Accepts every encapsulated packet, remembering where it went."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def send(self, payload: bytes, rloc: Any, port: int, flow: int, ttl: int, tos: int) -> bool:
        self.sent.append((payload, rloc))
        return True

    def send_from_data_port(self, payload: bytes, rloc: Any, port: int, ttl: int, tos: int) -> bool:
        self.sent.append((payload, rloc))
        return True


class FakeTun:
    """Accepts every packet written to it."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, packet: bytes) -> bool:
        self.written.append(bytes(packet))
        return True


def node(roles: tuple[str, ...], database: bool) -> tuple[Daemon, FakeSender, FakeTun]:
    """The daemon of :func:`config` with a fake sender and TUN (no sockets, no loop)."""
    d = Daemon(parse_config(config(roles, database)), clock=lambda: 0.0)
    sender, tun = FakeSender(), FakeTun()
    d.sender = sender  # type: ignore[assignment]
    d.tun = tun  # type: ignore[assignment]
    return d, sender, tun


def packets(d: Daemon) -> dict[str, int]:
    """The daemon's packet counters (as ``lispctl show stats`` gets them)."""
    return dict(d._stats()["packets"])


# -- the role logic ---------------------------------------------------------------------------


def pitr(proxy: bool = True) -> Itr:
    """An ITR (a PITR with ``proxy``) with the local EIDs 198.51.100.0/28 and a mapping for
    203.0.113.0/25."""
    mapcache = MapCache()
    mapcache.add(
        MapCacheEntry(
            0, ip_network("203.0.113.0/25"), (RlocEntry(ETR_RLOC, 1, 100),), source="static"
        )
    )
    database = LocalDatabase()
    database.add(DatabaseEntry(0, ip_network("198.51.100.0/28"), (RlocEntry("192.0.2.1", 1, 100),)))
    rlocs: dict[int, IPv4Address | IPv6Address] = {4: IPv4Address("192.0.2.1")}
    return Itr(mapcache, database, rlocs, 1500, Counters(), lambda: 7, float, proxy=proxy)


def test_a_pitr_marks_what_it_encapsulates_for_non_eid_sources() -> None:
    itr = pitr()
    proxied = itr.handle(packet(OUTSIDE, REMOTE))
    assert type(proxied) is Encap and proxied.pitr and str(proxied.rloc) == ETR_RLOC
    own = itr.handle(packet(LOCAL_EID, REMOTE))
    assert type(own) is Encap and not own.pitr
    # Released after resolution (the instance-ID given): still judged by the source.
    assert itr.handle(packet(OUTSIDE, REMOTE), 0).pitr  # type: ignore[union-attr]
    assert not itr.handle(packet(LOCAL_EID, REMOTE), 0).pitr  # type: ignore[union-attr]
    assert itr.handle(packet(OUTSIDE, UNCOVERED)) == Drop("pitr-no-map-cache-entry")


def test_a_plain_itr_never_marks_and_refuses_non_eid_sources() -> None:
    itr = pitr(proxy=False)
    assert itr.handle(packet(OUTSIDE, REMOTE)) == Drop("source-not-eid")
    held = itr.handle(packet(OUTSIDE, REMOTE), 0)  # an RTR's or a held packet
    assert type(held) is Encap and not held.pitr


def test_a_petr_marks_what_it_decapsulates_for_non_eid_destinations() -> None:
    database = LocalDatabase()
    database.add(DatabaseEntry(0, ip_network("198.51.100.0/28"), (RlocEntry("192.0.2.1", 1, 100),)))
    petr = Etr(database, petr=True)
    outside = petr.handle(build_data_header(1, 0) + packet(REMOTE, OUTSIDE), 64, 0)
    assert type(outside) is ToTun and outside.petr
    ours = petr.handle(build_data_header(1, 0) + packet(REMOTE, LOCAL_EID), 64, 0)
    assert type(ours) is ToTun and not ours.petr
    etr = Etr(database)
    assert etr.handle(build_data_header(1, 0) + packet(REMOTE, OUTSIDE), 64, 0) == Drop(
        "not-our-eid"
    )


# -- the daemon's counters ----------------------------------------------------------------


def test_a_pxtr_counts_its_traffic_under_pitr_and_petr_only() -> None:
    d, sender, tun = node(("pitr", "petr"), database=False)
    v4, v6 = packet(OUTSIDE, REMOTE), packet(OUTSIDE_V6, REMOTE_V6)
    d._itr_packet(v4)
    d._itr_packet(v6)
    assert [str(rloc) for _, rloc in sender.sent] == [ETR_RLOC, ETR_RLOC]
    to_outside = packet(REMOTE, OUTSIDE, b"x" * 100)
    d._etr_packet(build_data_header(1, 0) + to_outside, 64, 0, ETR_RLOC, 4341)
    assert tun.written == [to_outside]
    d._itr_packet(packet(OUTSIDE, UNCOVERED))  # nothing covers it: a PITR drop
    counts = packets(d)
    assert counts["pitr.encap.packets"] == 2
    assert counts["pitr.encap.bytes"] == len(v4) + len(v6)
    assert counts["petr.decap.packets"] == 1
    assert counts["petr.decap.bytes"] == len(to_outside)
    assert not {"itr.encap.packets", "etr.decap.packets"} & counts.keys()
    assert d._stats()["drops"]["pitr-no-map-cache-entry"] == 1
    assert "encap=2 decap=1 " in d._status_line()


def test_an_xtr_that_is_also_a_pxtr_splits_its_traffic_by_role() -> None:
    d, _sender, _tun = node(("itr", "etr", "pitr", "petr"), database=True)
    own, proxied = packet(LOCAL_EID, REMOTE, b"o" * 10), packet(OUTSIDE, REMOTE, b"p" * 20)
    d._itr_packet(own)
    d._itr_packet(proxied)
    d._itr_packet(proxied)
    to_eid, to_outside = packet(REMOTE, LOCAL_EID, b"e" * 30), packet(REMOTE, OUTSIDE, b"n")
    d._etr_packet(build_data_header(1, 0) + to_eid, 64, 0, ETR_RLOC, 4341)
    d._etr_packet(build_data_header(1, 0) + to_outside, 64, 0, ETR_RLOC, 4341)
    d._etr_packet(build_data_header(1, 0) + to_outside, 64, 0, ETR_RLOC, 4341)
    counts = packets(d)
    assert (counts["itr.encap.packets"], counts["itr.encap.bytes"]) == (1, len(own))
    assert (counts["pitr.encap.packets"], counts["pitr.encap.bytes"]) == (2, 2 * len(proxied))
    assert (counts["etr.decap.packets"], counts["etr.decap.bytes"]) == (1, len(to_eid))
    assert (counts["petr.decap.packets"], counts["petr.decap.bytes"]) == (2, 2 * len(to_outside))
    # Every packet once: the status line's totals are the sums of the two roles.
    assert "encap=3 decap=3 " in d._status_line()


def test_a_pitr_packet_held_for_resolution_is_counted_as_pitr_when_released() -> None:
    async def scenario() -> dict[str, int]:
        d, sender, _tun = node(("pitr", "petr"), database=False)
        pkt = packet(OUTSIDE, RESOLVED)
        try:
            d._itr_packet(pkt)  # a send-map-request range: resolved, the packet held
            assert not sender.sent and packets(d)["itr.held.packets"] == 1
            found = MapCacheEntry(
                0,
                ip_network("203.0.113.192/26"),
                (RlocEntry(ETR_RLOC, 1, 100),),
                source="map-reply",
                ttl=60,
            )
            d._apply(ControlResult(installs=[found], released=[(0, pkt)]))
            assert [str(rloc) for _, rloc in sender.sent] == [ETR_RLOC]
            return packets(d)
        finally:
            if d._timer is not None:
                d._timer.cancel()

    counts = asyncio.run(scenario())
    assert counts["pitr.encap.packets"] == 1 and "itr.encap.packets" not in counts


def test_a_trace_through_a_petr_to_a_non_eid_is_counted_as_petr() -> None:
    """A packet to UDP port 2434 takes the LISP-Trace branch (stamped, then written to the
    TUN when it is not one to turn around); it is still the PETR's traffic."""
    d, _sender, tun = node(("pitr", "petr"), database=False)
    probe = packet(REMOTE, OUTSIDE, b"not a trace message", dport=2434)
    d._etr_packet(build_data_header(1, 0) + probe, 64, 0, ETR_RLOC, 4341)
    assert len(tun.written) == 1
    counts = packets(d)
    assert counts["petr.decap.packets"] == 1 and "etr.decap.packets" not in counts


def test_show_stats_lists_the_proxy_counters() -> None:
    d, _sender, _tun = node(("pitr", "petr"), database=False)
    inbound, outbound = packet(OUTSIDE, REMOTE), packet(REMOTE, OUTSIDE)
    d._itr_packet(inbound)
    d._etr_packet(build_data_header(1, 0) + outbound, 64, 0, ETR_RLOC, 4341)
    rows = {
        line.split()[0]: line.split()[1:]
        for line in format_stats(d._stats()).splitlines()
        if line.startswith(("pitr.", "petr.", "itr.", "etr."))
    }
    assert rows == {
        "pitr.encap": ["1", str(len(inbound))],
        "petr.decap": ["1", str(len(outbound))],
    }
