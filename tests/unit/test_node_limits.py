"""The node's map-cache bound ([limits] map-cache-entries), without sockets: installs from the
control plane beyond the limit replace the learned entry closest to its expiry."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from lispd.config import parse_config
from lispd.control.plane import ControlResult
from lispd.mapcache import MapCacheEntry, RlocEntry
from lispd.node import Node
from tests import configs
from tests.unit.socketless import xtr_config

CONFIG = xtr_config(
    map_cache=[configs.resolve("2001:db8::/32")],
    map_resolver=configs.addresses("192.0.2.50"),
    limits={"map-cache-entries": 3},
)


def learned(n: int, ttl: float) -> MapCacheEntry:
    return MapCacheEntry(
        0,
        ip_network(f"2001:db8:{n}::/48"),
        (RlocEntry(ip_address("192.0.2.9"), 1, 100),),
        ttl=ttl,
        created=0.0,
        source="map-reply",
    )


def test_learned_entries_beyond_the_limit_replace_the_soonest_to_expire() -> None:
    node = Node(parse_config(CONFIG), 0.0)
    ttls = {1: 300.0, 2: 100.0, 3: 200.0, 4: 400.0, 5: 500.0}
    node._apply(ControlResult(installs=[learned(n, ttl) for n, ttl in ttls.items()]))
    prefixes = {str(e.prefix) for e in node.mapcache.entries() if e.source != "static"}
    assert prefixes == {"2001:db8:1::/48", "2001:db8:4::/48", "2001:db8:5::/48"}
    assert node.counters.drops["map-cache-evicted"] == 2
    # The static entry is never a victim, and a refresh of a held entry evicts nothing.
    assert node.mapcache.get(0, ip_network("2001:db8::/32")) is not None
    node._apply(ControlResult(installs=[learned(4, 600.0)]))
    assert node.counters.drops["map-cache-evicted"] == 2
    assert len(node.mapcache) == 4
