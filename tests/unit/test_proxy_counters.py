"""PITR and PETR traffic on the Python path: the role logic marks it (``Encap.pitr``,
``ToTun.petr``) and the node counts it under ``pitr.encap`` / ``petr.decap`` instead of
``itr.encap`` / ``etr.decap``, so that summing the counters never counts a packet twice."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_network

from lispd.api import views
from lispd.cli.lispctl import format_stats
from lispd.config import parse_config
from lispd.control.plane import ControlResult
from lispd.dataplane.etr import Etr
from lispd.dataplane.itr import Itr
from lispd.dataplane.outputs import Drop, Encap, ToTun
from lispd.mapcache import DatabaseEntry, LocalDatabase, MapCache, MapCacheEntry, RlocEntry
from lispd.node import Node
from lispd.node.actions import SendEncap, WriteTun
from lispd.stats import Counters
from lispd.wire.data import build_data_header
from lispd.wire.ip import IPv4Header, IPv6Header, UdpDatagram, build_udp_datagram
from tests import configs
from tests.unit.socketless import perform

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


NOW = 0.0


def node(roles: tuple[str, ...], database: bool) -> Node:
    """The node of :func:`config` (no sockets, no loop)."""
    return Node(parse_config(config(roles, database)), NOW)


def sent(n: Node) -> list[str]:
    """Perform what ``n`` asked for, every send succeeding: the RLOCs it encapsulated to."""
    return [str(a.encap.rloc) for a in perform(n) if isinstance(a, SendEncap)]


def written(n: Node) -> list[bytes]:
    """Perform what ``n`` asked for, every write succeeding: the packets for the TUN."""
    return [bytes(a.packet) for a in perform(n) if isinstance(a, WriteTun)]


def packets(n: Node) -> dict[str, int]:
    """The node's packet counters (as ``lispctl show stats`` gets them)."""
    return dict(views.node_stats(n)["packets"])


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


# -- the node's counters ---------------------------------------------------------------------


def status_line(n: Node) -> str:
    """The ``STATUS=`` line the daemon gives systemd for ``n``."""
    return views.status_line(n, views.node_stats(n), NOW)


def test_a_pxtr_counts_its_traffic_under_pitr_and_petr_only() -> None:
    n = node(("pitr", "petr"), database=False)
    v4, v6 = packet(OUTSIDE, REMOTE), packet(OUTSIDE_V6, REMOTE_V6)
    n.tun_packet(v4, NOW)
    n.tun_packet(v6, NOW)
    assert sent(n) == [ETR_RLOC, ETR_RLOC]
    to_outside = packet(REMOTE, OUTSIDE, b"x" * 100)
    n.data_datagram(build_data_header(1, 0) + to_outside, 64, 0, ETR_RLOC, 4341, NOW)
    assert written(n) == [to_outside]
    n.tun_packet(packet(OUTSIDE, UNCOVERED), NOW)  # nothing covers it: a PITR drop
    assert perform(n) == []
    counts = packets(n)
    assert counts["pitr.encap.packets"] == 2
    assert counts["pitr.encap.bytes"] == len(v4) + len(v6)
    assert counts["petr.decap.packets"] == 1
    assert counts["petr.decap.bytes"] == len(to_outside)
    assert not {"itr.encap.packets", "etr.decap.packets"} & counts.keys()
    assert views.node_stats(n)["drops"]["pitr-no-map-cache-entry"] == 1
    assert "encap=2 decap=1 " in status_line(n)


def test_an_xtr_that_is_also_a_pxtr_splits_its_traffic_by_role() -> None:
    n = node(("itr", "etr", "pitr", "petr"), database=True)
    own, proxied = packet(LOCAL_EID, REMOTE, b"o" * 10), packet(OUTSIDE, REMOTE, b"p" * 20)
    n.tun_packet(own, NOW)
    n.tun_packet(proxied, NOW)
    n.tun_packet(proxied, NOW)
    to_eid, to_outside = packet(REMOTE, LOCAL_EID, b"e" * 30), packet(REMOTE, OUTSIDE, b"n")
    n.data_datagram(build_data_header(1, 0) + to_eid, 64, 0, ETR_RLOC, 4341, NOW)
    n.data_datagram(build_data_header(1, 0) + to_outside, 64, 0, ETR_RLOC, 4341, NOW)
    n.data_datagram(build_data_header(1, 0) + to_outside, 64, 0, ETR_RLOC, 4341, NOW)
    perform(n)
    counts = packets(n)
    assert (counts["itr.encap.packets"], counts["itr.encap.bytes"]) == (1, len(own))
    assert (counts["pitr.encap.packets"], counts["pitr.encap.bytes"]) == (2, 2 * len(proxied))
    assert (counts["etr.decap.packets"], counts["etr.decap.bytes"]) == (1, len(to_eid))
    assert (counts["petr.decap.packets"], counts["petr.decap.bytes"]) == (2, 2 * len(to_outside))
    # Every packet once: the status line's totals are the sums of the two roles.
    assert "encap=3 decap=3 " in status_line(n)


def test_a_pitr_packet_held_for_resolution_is_counted_as_pitr_when_released() -> None:
    n = node(("pitr", "petr"), database=False)
    pkt = packet(OUTSIDE, RESOLVED)
    n.tun_packet(pkt, NOW)  # a send-map-request range: resolved, the packet held
    assert sent(n) == [] and packets(n)["itr.held.packets"] == 1
    found = MapCacheEntry(
        0,
        ip_network("203.0.113.192/26"),
        (RlocEntry(ETR_RLOC, 1, 100),),
        source="map-reply",
        ttl=60,
    )
    n._apply(ControlResult(installs=[found], released=[(0, pkt)]))
    assert sent(n) == [ETR_RLOC]
    counts = packets(n)
    assert counts["pitr.encap.packets"] == 1 and "itr.encap.packets" not in counts


def test_a_trace_through_a_petr_to_a_non_eid_is_counted_as_petr() -> None:
    """A packet to UDP port 2434 takes the LISP-Trace branch (stamped, then written to the
    TUN when it is not one to turn around); it is still the PETR's traffic."""
    n = node(("pitr", "petr"), database=False)
    probe = packet(REMOTE, OUTSIDE, b"not a trace message", dport=2434)
    n.data_datagram(build_data_header(1, 0) + probe, 64, 0, ETR_RLOC, 4341, NOW)
    assert len(written(n)) == 1
    counts = packets(n)
    assert counts["petr.decap.packets"] == 1 and "etr.decap.packets" not in counts


def test_show_stats_lists_the_proxy_counters() -> None:
    n = node(("pitr", "petr"), database=False)
    inbound, outbound = packet(OUTSIDE, REMOTE), packet(REMOTE, OUTSIDE)
    n.tun_packet(inbound, NOW)
    n.data_datagram(build_data_header(1, 0) + outbound, 64, 0, ETR_RLOC, 4341, NOW)
    perform(n)
    rows = {
        line.split()[0]: line.split()[1:]
        for line in format_stats(views.node_stats(n)).splitlines()
        if line.startswith(("pitr.", "petr.", "itr.", "etr."))
    }
    assert rows == {
        "pitr.encap": ["1", str(len(inbound))],
        "petr.decap": ["1", str(len(outbound))],
    }
