"""Operator reads answered in the daemon (:mod:`lispd.api.commands`, :mod:`lispd.api.paging`):
``map-cache`` by longest-prefix match of one EID or exactly one EID-prefix, the live entry only;
tables in pages across changes made between pages; cursor expiry and the cap on open listings;
old clients' un-paged requests."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from lispd.api import commands, paging, views
from lispd.mapcache import DatabaseEntry, LocalDatabase, MapCache, MapCacheEntry, RlocEntry
from tests.unit.test_mapserver import ETR_B, KEY_B, PREFIX_B, make_ms, record, register


@dataclass(eq=False)
class FakeDaemon:
    """What the read commands use of :class:`lispd.daemon.Daemon`: the node's tables and the
    clock."""

    now: float = 100.0
    mapcache: MapCache = field(default_factory=MapCache)
    database: LocalDatabase = field(default_factory=LocalDatabase)
    map_server: Any = None

    @property
    def node(self) -> Any:
        return SimpleNamespace(
            mapcache=self.mapcache,
            database=self.database,
            control=SimpleNamespace(map_server=self.map_server, prober=None),
            nat_bindings=None,
        )

    def clock(self) -> float:
        return self.now


def ask(daemon: FakeDaemon, command: str, **req: Any) -> Any:
    """The command's answer, through JSON like the control socket's."""
    result = commands.COMMANDS[command](daemon, {"command": command, **req})  # type: ignore[arg-type]
    return json.loads(json.dumps(result))


def entry(prefix: str, iid: int = 0, rloc: str = "192.0.2.1", **kw: Any) -> MapCacheEntry:
    return MapCacheEntry(
        iid=iid, prefix=ipaddress.ip_network(prefix), rlocs=(RlocEntry(rloc, 1, 100),), **kw
    )


def shown(result: list[dict[str, Any]]) -> list[str]:
    return [f"[{e['instance-id']}]{e['eid-prefix']}" for e in result]


# --- one EID, one prefix ----------------------------------------------------------------------


def test_eid_is_the_longest_match_in_the_daemon() -> None:
    d = FakeDaemon()
    for e in (
        entry("0.0.0.0/0"),
        entry("198.51.100.0/24"),
        entry("198.51.100.16/28", rloc="192.0.2.5"),
        entry("198.51.100.16/28", iid=7),
        entry("2001:db8::/32"),
        entry("2001:db8:1::/48", iid=7),
    ):
        d.mapcache.add(e)
    assert shown(ask(d, "map-cache", eid="198.51.100.17")) == ["[0]198.51.100.16/28"]
    assert ask(d, "map-cache", eid="198.51.100.17")[0]["rlocs"][0]["address"] == "192.0.2.5"
    assert shown(ask(d, "map-cache", eid="198.51.100.1")) == ["[0]198.51.100.0/24"]
    assert shown(ask(d, "map-cache", eid="10.1.2.3")) == ["[0]0.0.0.0/0"]
    assert shown(ask(d, "map-cache", eid="198.51.100.17", **{"instance-id": 7})) == [
        "[7]198.51.100.16/28"
    ]
    assert shown(ask(d, "map-cache", eid="[7]2001:db8:1::9")) == ["[7]2001:db8:1::/48"]
    assert shown(ask(d, "map-cache", eid="2001:db8:1::9")) == ["[0]2001:db8::/32"]
    assert ask(d, "map-cache", eid="[7]198.51.100.1") == []  # the instance's own entries
    assert ask(d, "map-cache", eid="[5]10.0.0.1") == []  # an instance with no table at all


def test_an_expired_best_match_is_none_not_a_covering_entry() -> None:
    """As :meth:`MapCache.lookup` with ``now``: the more specific mapping is the one to
    refresh, the covering one may point elsewhere."""
    d = FakeDaemon(now=10.0)
    d.mapcache.add(entry("198.51.100.0/24"))
    d.mapcache.add(entry("198.51.100.16/28", ttl=60.0, created=0.0))
    assert shown(ask(d, "map-cache", eid="198.51.100.17")) == ["[0]198.51.100.16/28"]
    d.now = 60.0  # expires at 60: expired from then on, even before the timer removes it
    assert ask(d, "map-cache", eid="198.51.100.17") == []
    assert ask(d, "map-cache", prefix="198.51.100.16/28") == []
    assert shown(ask(d, "map-cache", eid="198.51.100.1")) == ["[0]198.51.100.0/24"]


def test_exact_prefix() -> None:
    d = FakeDaemon()
    d.mapcache.add(entry("198.51.100.0/24"))
    d.mapcache.add(entry("2001:db8::/32", iid=3))
    assert shown(ask(d, "map-cache", prefix="198.51.100.0/24")) == ["[0]198.51.100.0/24"]
    assert ask(d, "map-cache", prefix="198.51.100.0/25") == []  # exact: no longest match
    assert shown(ask(d, "map-cache", prefix="[3]2001:db8::/32")) == ["[3]2001:db8::/32"]
    assert ask(d, "map-cache", prefix="2001:db8::/32") == []


@pytest.mark.parametrize(
    ("req", "message"),
    [
        ({"eid": "nope"}, "is not an EID"),
        ({"eid": 7}, "eid must be a string"),
        ({"eid": "[x]10.0.0.1"}, "expected [instance-id]eid"),
        ({"eid": "10.0.0.1", "instance-id": 1 << 24}, "instance-id must be"),
        ({"eid": "10.0.0.1", "instance-id": True}, "instance-id must be"),
        ({"prefix": "10.0.0.1/8"}, "is not an EID-prefix"),
        ({"cursor": None, "count": 0}, "count must be a positive integer"),
        ({"cursor": 5}, "cursor must be the string"),
        ({"cursor": "0123"}, "unknown or expired cursor"),
    ],
)
def test_bad_requests_are_value_errors(req: dict[str, Any], message: str) -> None:
    """The control server turns a ValueError into an error answer with its text."""
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        commands.map_cache(FakeDaemon(), {"command": "map-cache", **req})  # type: ignore[arg-type]


# --- pages --------------------------------------------------------------------------------------


def fill(d: FakeDaemon, n: int, iid: int = 0) -> list[str]:
    """``n`` IPv4 /32s and n // 2 IPv6 /64s in ``iid``; their ``[iid]prefix`` texts."""
    names = []
    for k in range(n):
        net = ipaddress.ip_network((0x0A000000 + k, 32))
        d.mapcache.add(MapCacheEntry(iid=iid, prefix=net, rlocs=(RlocEntry("192.0.2.1", 1, 1),)))
        names.append(f"[{iid}]{net}")
    for k in range(n // 2):
        net = ipaddress.ip_network(((0x20010DB8 << 96) + (k << 64), 64))
        d.mapcache.add(MapCacheEntry(iid=iid, prefix=net, action="drop"))
        names.append(f"[{iid}]{net}")
    return names


def walk(d: FakeDaemon, command: str = "map-cache", count: int = 100, **first: Any) -> list[Any]:
    """Every page of a listing, as (entries, total) per page."""
    out = []
    page = ask(d, command, cursor=None, count=count, **first)
    while True:
        out.append(page)
        if page["cursor"] is None:
            return out
        page = ask(d, command, cursor=page["cursor"], count=count)


def test_pages_cover_the_table_once_in_bounded_pages() -> None:
    d = FakeDaemon()
    names = fill(d, 3000) + fill(d, 10, iid=9)
    pages = walk(d, count=150)
    assert all(len(p["entries"]) <= 150 for p in pages)
    assert {p["total"] for p in pages} == {len(names)}
    listed = [n for p in pages for n in shown(p["entries"])]
    assert sorted(listed) == sorted(names)  # each once
    assert len(pages) == -(-len(names) // 150)  # full pages: the last one closes the listing
    assert not commands.listings(d).open  # finished: forgotten
    # a small table part (iid 9) is listed in prefix order
    assert listed[-15:] == [f"[9]{e.prefix}" for e in d.mapcache.entries() if e.iid == 9]
    # the page size is bounded whatever the request asks
    first = ask(d, "map-cache", cursor=None, count=10**9)
    assert len(first["entries"]) == paging.MAX_PAGE
    ask(d, "map-cache", cursor=first["cursor"], close=True)
    assert not commands.listings(d).open


def test_changes_between_pages_never_duplicate_nor_crash() -> None:
    """Entries removed before their page are not shown, replaced ones are shown as they are
    now, added ones (after the listing reached their part) are not shown; every entry there
    throughout is shown exactly once."""
    d = FakeDaemon()
    names = fill(d, 2000)
    page = ask(d, "map-cache", cursor=None, count=100)
    listed = shown(page["entries"])
    removed: set[str] = set()
    replaced: set[str] = set()
    k = 0
    while page["cursor"] is not None:
        # between pages: remove some, replace some, add some, clear an instance altogether
        for e in d.mapcache.entries()[k : k + 30 : 3]:
            d.mapcache.remove(e.iid, e.prefix)
            removed.add(f"[{e.iid}]{e.prefix}")
        for e in d.mapcache.entries()[k + 40 : k + 50]:
            d.mapcache.add(entry(str(e.prefix), rloc="192.0.2.77") if e.prefix.version == 4 else e)
            replaced.add(f"[{e.iid}]{e.prefix}")
        d.mapcache.add(entry(f"198.51.100.{k % 256}/32", iid=5))
        k += 37
        page = ask(d, "map-cache", cursor=page["cursor"], count=100)
        listed += shown(page["entries"])
        for e in page["entries"]:
            if f"[0]{e['eid-prefix']}" in replaced and e["eid-prefix"].startswith("10."):
                assert e["rlocs"][0]["address"] == "192.0.2.77"  # as it is now
    assert len(listed) == len(set(listed))  # nothing twice
    assert set(names) - removed <= set(listed)  # everything there throughout
    assert not [n for n in listed if n.startswith("[5]")]  # a part made after the opening


def test_a_table_emptied_between_pages_costs_bounded_work() -> None:
    """Each page looks at SCAN_FACTOR times its size of vanished entries at most, and takes
    one partition's copy at a time: an emptied table ends the listing in a bounded number of
    bounded pages."""
    d = FakeDaemon()
    fill(d, 3000)  # 3,000 IPv4 /32s (one partition), 1,500 IPv6 /64s (one sorted part)
    page = ask(d, "map-cache", cursor=None, count=50)
    d.mapcache.clear()
    pages = 0
    while page["cursor"] is not None:
        page = ask(d, "map-cache", cursor=page["cursor"], count=50)
        assert page["entries"] == []
        pages += 1
    # the first page copied the /32s' part (3,000); each later page looks at 4 x 50 of them
    assert pages <= -(-3000 // (paging.SCAN_FACTOR * 50)) + 1
    listing = views.map_cache_listing(d.mapcache, d.clock)
    assert listing.parts == [] and listing.page(10) == [] and listing.finished


def test_a_large_table_is_copied_one_partition_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """No request copies a large table whole: each page takes the copy of the partitions
    (prefix lengths) it reaches, each when the listing gets to it."""
    d = FakeDaemon()
    fill(d, 4000)
    table = d.mapcache.tables.table(0, 4)
    assert table is not None
    copied: list[int] = []
    partition = type(table).partition

    def counting(self: Any, index: int) -> list[Any]:
        part = partition(self, index)
        copied.append(len(part))
        return part

    monkeypatch.setattr(type(table), "partition", counting)
    pages = walk(d, count=100)
    assert sum(copied) == 4000 and len(copied) == table.partitions
    assert max(copied) == len(table) and copied.count(0) == table.partitions - 1  # all /32s
    assert len(pages) == -(-6000 // 100)


def test_expired_entries_are_left_out_of_pages() -> None:
    d = FakeDaemon(now=10.0)
    d.mapcache.add(entry("198.51.100.0/24", ttl=5.0))
    d.mapcache.add(entry("198.51.100.128/25"))
    [page] = walk(d)
    assert shown(page["entries"]) == ["[0]198.51.100.128/25"]


def test_cursor_idle_timeout_close_and_kind() -> None:
    d = FakeDaemon()
    fill(d, 500)
    first = ask(d, "map-cache", cursor=None, count=10)
    d.now += paging.IDLE_TIMEOUT - 1
    second = ask(d, "map-cache", cursor=first["cursor"], count=10)  # still open: used in time
    assert second["cursor"] == first["cursor"]
    with pytest.raises(ValueError, match="unknown or expired cursor"):  # another command's
        commands.database(d, {"cursor": first["cursor"]})  # type: ignore[arg-type]
    d.now += paging.IDLE_TIMEOUT + 1
    with pytest.raises(ValueError, match="unknown or expired cursor"):
        ask(d, "map-cache", cursor=first["cursor"], count=10)
    assert not commands.listings(d).open
    # closing an open listing forgets it at once
    third = ask(d, "map-cache", cursor=None, count=10)
    assert ask(d, "map-cache", cursor=third["cursor"], close=True)["cursor"] is None
    assert not commands.listings(d).open


def test_open_listings_are_capped() -> None:
    d = FakeDaemon()
    fill(d, 500)
    cursors = [
        ask(d, "map-cache", cursor=None, count=10)["cursor"] for _ in range(paging.MAX_LISTINGS)
    ]
    assert len(set(cursors)) == paging.MAX_LISTINGS
    with pytest.raises(ValueError, match="busy"):
        ask(d, "map-cache", cursor=None, count=10)
    assert ask(d, "map-cache", cursor=cursors[0], count=10)["entries"]  # the open ones go on
    ask(d, "map-cache", cursor=cursors[1], close=True)
    assert ask(d, "map-cache", cursor=None, count=10)["cursor"]  # room again
    d.now += paging.IDLE_TIMEOUT + 1  # the idle ones are dropped: room for a new one
    assert ask(d, "map-cache", cursor=None, count=10)["cursor"]
    assert len(commands.listings(d).open) == 1


def test_unpaged_requests_of_old_clients() -> None:
    """Small tables: the whole list as before (sorted); over UNPAGED_MAX: refused, naming the
    paging fields and lispctl --limit."""
    d = FakeDaemon()
    d.mapcache.add(entry("198.51.100.128/25"))
    d.mapcache.add(entry("198.51.100.0/25"))
    assert shown(ask(d, "map-cache")) == ["[0]198.51.100.0/25", "[0]198.51.100.128/25"]
    with pytest.raises(ValueError, match=r"map-cache: 10001 entries.*cursor.*--limit"):
        paging.unpaged("map-cache", paging.UNPAGED_MAX + 1)
    big = FakeDaemon()
    fill(big, 7000)  # 10,500 entries
    with pytest.raises(ValueError, match="ask for pages"):
        commands.map_cache(big, {"command": "map-cache"})  # type: ignore[arg-type]


def test_database_pages() -> None:
    d = FakeDaemon()
    for k in range(30):
        d.database.add(
            DatabaseEntry(
                iid=0, prefix=f"198.51.100.{k * 8}/29", rlocs=(RlocEntry("192.0.2.1", 1, 1),)
            )
        )
    pages = walk(d, "database", count=7)
    assert [len(p["entries"]) for p in pages] == [7, 7, 7, 7, 2]
    assert [e["eid-prefix"] for p in pages for e in p["entries"]] == [
        str(e.prefix) for e in d.database.entries()
    ]
    assert len(ask(d, "database")) == 30  # un-paged, small: as before


def test_map_server_registrations_pages_and_metrics_counts() -> None:
    """``site`` pages through the registrations; the metrics' per-site counts come from the
    Map-Server's own count, not from a pass over the registrations."""
    ms = make_ms()
    now = 10.0
    for k in range(12):
        net = ipaddress.ip_network(PREFIX_B).subnets(new_prefix=32)
        prefix = str(list(net)[k])
        register(ms, (record(prefix, ETR_B),), KEY_B, now, src=ETR_B, nonce=100 + k)
    d = FakeDaemon(now=now, map_server=ms)
    pages = walk(d, "site", count=5)
    assert [len(p["entries"]) for p in pages] == [5, 5, 2]
    assert {e["site"] for p in pages for e in p["entries"]} == {"site-b"}
    assert sorted(e["eid-prefix"] for p in pages for e in p["entries"]) == sorted(
        str(r.prefix) for r in ms.registrations()
    )
    assert ms.registrations_per_site() == {"site-b": 12}
    assert walk(FakeDaemon(), "site") == [{"entries": [], "cursor": None, "total": 0}]


def test_views_listing_parts_are_taken_when_reached() -> None:
    """A listing's part (one instance and family) is snapshotted when the listing gets there,
    not when it opens: what is added to a later part meanwhile is shown, what is added to a
    part walked already is not."""
    mc = MapCache()
    mc.add(entry("198.51.100.0/24"))
    mc.add(entry("2001:db8::/32"))
    listing = views.map_cache_listing(mc, lambda: 0.0)
    assert [e["eid-prefix"] for e in listing.page(1)] == ["198.51.100.0/24"]
    mc.add(entry("2001:db8:1::/48"))  # the part not reached yet
    mc.add(entry("198.51.100.0/25"))  # the part walked already
    assert [e["eid-prefix"] for e in listing.page(10)] == ["2001:db8::/32", "2001:db8:1::/48"]
    assert listing.finished


# --- over the control socket -------------------------------------------------------------------


def test_pages_over_a_real_control_socket(tmp_path: Any) -> None:
    """The server's JSON round trip with the real handlers, and the client's page iterator
    (closing the listing when stopped early)."""
    import asyncio
    import itertools

    from lispd.api import client
    from lispd.api.server import ControlServer

    d = FakeDaemon()
    names = fill(d, 700)
    path = str(tmp_path / "c.sock")

    async def scenario() -> None:
        server = ControlServer(path, commands.handlers(d))  # type: ignore[arg-type]
        await server.start()
        try:
            got = await asyncio.to_thread(lambda: list(client.entries(path, "map-cache", 64)))
            assert sorted(f"[{e['instance-id']}]{e['eid-prefix']}" for e in got) == sorted(names)
            first = await asyncio.to_thread(
                lambda: list(itertools.islice(client.entries(path, "map-cache", 10), 15))
            )
            assert len(first) == 15 and not commands.listings(d).open  # closed when stopped
            with pytest.raises(client.ControlError, match="unknown or expired cursor"):
                await asyncio.to_thread(client.request, path, "map-cache", cursor="nope")
            one = await asyncio.to_thread(client.request, path, "map-cache", eid="10.0.1.2")
            assert shown(one) == ["[0]10.0.1.2/32"]
        finally:
            await server.close()

    asyncio.run(scenario())


def test_the_benchmark_runs_small() -> None:
    """``python -m benchmarks.control_reads`` at 3,000 prefixes: every figure there, the dump
    printing the whole map-cache (one line per RLOC)."""
    from benchmarks import control_reads

    result = control_reads.measure(3000)
    for key in ("eid_median_ms", "prefix_p99_ms", "page100_max_ms", "partition_copy_max_ms"):
        assert 0 < result[key] < 5000, (key, result)
    assert result["whole_copy_references"] > 1000
    assert result["dump_lines"] > 3000 + 3 and result["dump_s"] > 0
