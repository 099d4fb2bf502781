"""Unit tests of lispd.api.metrics: the exposition a snapshot renders to (parsed back with
prometheus_client's own parser), the HTTP answers, and the server on an ephemeral port."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, ip_address, ip_network
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from lispd.api.metrics import (
    CONTENT_TYPE,
    MAX_REQUEST,
    MetricsServer,
    MetricsSnapshot,
    render_metrics,
    respond,
)
from lispd.control.prober import Prober, ProbeSettings
from lispd.control.registrar import MapServerTarget, Registrar
from lispd.control.resolver import Resolver
from lispd.mapcache import MapCacheEntry, RlocEntry

RLOC_A, RLOC_B, RLOC_C = "192.0.2.6", "192.0.2.10", "2001:db8:0:3::2"

STATS = {
    "packets": {
        "itr.encap.packets": 5,
        "itr.encap.bytes": 420,
        "etr.decap.packets": 3,
        "etr.decap.bytes": 252,
        "control.sent.packets": 7,
        "control.sent.bytes": 700,
    },
    "drops": {"no-route": 2, "control-bad-length": 1, 'odd "reason"\\ with\nnewline': 4},
}

CACHE = [
    MapCacheEntry(0, ip_network("0.0.0.0/0"), action="send-map-request"),
    MapCacheEntry(0, ip_network("::/0"), action="send-map-request"),
    *(
        MapCacheEntry(
            iid,
            ip_network(prefix),
            (RlocEntry(ip_address(rloc), 1, 100),),
            ttl=60,
            source="map-reply",
        )
        for iid, prefix, rloc in (
            (0, "198.51.100.16/28", RLOC_A),
            (0, "198.51.100.32/28", RLOC_B),
            (7, "2001:db8:100:2::/64", RLOC_C),
        )
    ),
]

PENDING = [
    {"iid": 0, "eid": "198.51.100.49", "held": 2},
    {"iid": 0, "eid": "203.0.113.1", "held": 0},
]

REGISTRATIONS = [
    {
        "address": "192.0.2.30",
        "acknowledged": True,
        "last-acked": 95.5,
        "registers-sent": 4,
        "notifies-accepted": 3,
    },
    {
        "address": "2001:db8::30",
        "acknowledged": False,
        "last-acked": None,
        "registers-sent": 4,
        "notifies-accepted": 0,
    },
]

RLOCS: list[dict[str, Any]] = [
    {"rloc": RLOC_A, "up": True, "last-rtt": 0.00125, "losses": 0, "probes-sent": 9, "replies": 9},
    {"rloc": RLOC_B, "up": False, "last-rtt": 0.002, "losses": 4, "probes-sent": 9, "replies": 5},
    {"rloc": RLOC_C, "up": None, "last-rtt": None, "losses": 1, "probes-sent": 1, "replies": 0},
]


def full_snapshot() -> MetricsSnapshot:
    """A node with every part: resolver, registrar, prober, RTR bindings, Map-Server."""
    return MetricsSnapshot(
        name="xtr1",
        version="0.1.0",
        stats=STATS,
        map_cache=CACHE,
        pending=PENDING,
        registrations=REGISTRATIONS,
        rlocs=RLOCS,
        nat_bindings=3,
        sites=["site-a", "site-b", "site-c"],
        registered=["site-a", "site-a", "site-b"],
        now=100.0,
    )


def parse(text: bytes) -> dict[str, Any]:
    """Metric family name (as the parser names it) -> family; the text must parse."""
    return {f.name: f for f in text_string_to_metric_families(text.decode("utf-8"))}


def samples(family: Any) -> dict[tuple[tuple[str, str], ...], float]:
    """Sorted label pairs -> value of every sample of a family."""
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples}


def value(families: dict[str, Any], metric: str, /, **labels: str) -> float:
    """The value of the one sample ``metric`` with exactly ``labels``."""
    for family in families.values():
        for sample in family.samples:
            if isinstance(sample, Sample) and sample.name == metric and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"no sample {metric}{labels}")


# --- render_metrics --------------------------------------------------------------------------


def test_render_is_valid_exposition_with_the_snapshot_values() -> None:
    text = render_metrics(full_snapshot)
    families = parse(text)
    assert value(families, "lispd_info", name="xtr1", version="0.1.0") == 1

    assert families["lispd_packets"].type == "counter"
    assert value(families, "lispd_packets_total", counter="itr.encap") == 5
    assert value(families, "lispd_bytes_total", counter="itr.encap") == 420
    assert value(families, "lispd_packets_total", counter="etr.decap") == 3
    assert value(families, "lispd_bytes_total", counter="etr.decap") == 252
    assert value(families, "lispd_packets_total", counter="control.sent") == 7
    assert len(families["lispd_packets"].samples) == 3
    assert families["lispd_drops"].type == "counter"
    assert samples(families["lispd_drops"]) == {
        (("reason", "control-bad-length"),): 1,
        (("reason", "no-route"),): 2,
        (("reason", 'odd "reason"\\ with\nnewline'),): 4,  # escaped and unescaped intact
    }

    assert families["lispd_map_cache_entries"].type == "gauge"
    assert samples(families["lispd_map_cache_entries"]) == {
        (("family", "ipv4"), ("instance_id", "0"), ("source", "static")): 1,
        (("family", "ipv6"), ("instance_id", "0"), ("source", "static")): 1,
        (("family", "ipv4"), ("instance_id", "0"), ("source", "map-reply")): 2,
        (("family", "ipv6"), ("instance_id", "7"), ("source", "map-reply")): 1,
    }

    assert value(families, "lispd_resolutions_pending") == 2
    assert value(families, "lispd_resolution_held_packets") == 2

    ms1, ms2 = "192.0.2.30", "2001:db8::30"
    assert value(families, "lispd_registration_acknowledged", map_server=ms1) == 1
    assert value(families, "lispd_registration_acknowledged", map_server=ms2) == 0
    assert value(families, "lispd_registration_last_ack_age_seconds", map_server=ms1) == 4.5
    assert len(families["lispd_registration_last_ack_age_seconds"].samples) == 1  # never acked
    assert value(families, "lispd_map_registers_sent_total", map_server=ms2) == 4
    assert value(families, "lispd_map_notifies_accepted_total", map_server=ms1) == 3

    states = samples(families["lispd_rloc_state"])
    assert len(states) == 9
    assert {labels for labels, v in states.items() if v == 1} == {
        (("rloc", RLOC_A), ("state", "up")),
        (("rloc", RLOC_B), ("state", "down")),
        (("rloc", RLOC_C), ("state", "unknown")),
    }
    assert samples(families["lispd_rloc_rtt_seconds"]) == {
        (("rloc", RLOC_A),): 0.00125,
        (("rloc", RLOC_B),): 0.002,
    }
    assert value(families, "lispd_rloc_consecutive_losses", rloc=RLOC_B) == 4
    assert value(families, "lispd_rloc_probes_sent_total", rloc=RLOC_C) == 1
    assert value(families, "lispd_rloc_probe_replies_total", rloc=RLOC_B) == 5

    assert value(families, "lispd_nat_bindings") == 3
    assert value(families, "lispd_map_server_sites") == 3
    assert value(families, "lispd_map_server_registered_sites") == 2
    assert samples(families["lispd_map_server_registered_prefixes"]) == {
        (("site", "site-a"),): 2,
        (("site", "site-b"),): 1,
        (("site", "site-c"),): 0,
    }


def test_text_format_details() -> None:
    text = render_metrics(full_snapshot).decode("utf-8")
    assert "# HELP lispd_packets_total Packets per data-path counter\n" in text
    assert "# TYPE lispd_packets_total counter\n" in text
    assert 'lispd_packets_total{counter="itr.encap"} 5.0\n' in text
    assert "# TYPE lispd_map_cache_entries gauge\n" in text
    assert 'lispd_drops_total{reason="odd \\"reason\\"\\\\ with\\nnewline"} 4.0\n' in text
    assert text.endswith("\n")
    assert "_created" not in text  # a custom collector: no creation-time samples


def test_parts_a_node_does_not_run_are_left_out() -> None:
    bare = MetricsSnapshot(name="ms", version="0.1.0", stats={"packets": {}, "drops": {}})
    families = parse(render_metrics(lambda: bare))
    assert set(families) == {
        "lispd_info",
        "lispd_packets",
        "lispd_bytes",
        "lispd_drops",
        "lispd_map_cache_entries",
    }
    assert all(not families[name].samples for name in set(families) - {"lispd_info"})


def test_map_server_with_silent_sites_only() -> None:
    snap = MetricsSnapshot("ms", "1", {}, sites=["a", "b"], registered=[])
    families = parse(render_metrics(lambda: snap))
    assert value(families, "lispd_map_server_sites") == 2
    assert value(families, "lispd_map_server_registered_sites") == 0
    assert samples(families["lispd_map_server_registered_prefixes"]) == {
        (("site", "a"),): 0,
        (("site", "b"),): 0,
    }


def test_a_counter_outside_the_naming_scheme_is_still_shown() -> None:
    snap = MetricsSnapshot("x", "1", {"packets": {"odd": 2, "bytes": 3}, "drops": {}})
    families = parse(render_metrics(lambda: snap))
    assert samples(families["lispd_packets"]) == {
        (("counter", "bytes"),): 3,
        (("counter", "odd"),): 2,
    }


def test_source_is_read_at_each_render() -> None:
    counter = {"itr.encap.packets": 1}

    def source() -> MetricsSnapshot:
        return MetricsSnapshot("x", "1", {"packets": dict(counter), "drops": {}})

    first = parse(render_metrics(source))
    counter["itr.encap.packets"] = 10
    second = parse(render_metrics(source))
    assert value(first, "lispd_packets_total", counter="itr.encap") == 1
    assert value(second, "lispd_packets_total", counter="itr.encap") == 10


def test_the_machines_dicts_have_the_keys_the_metrics_read() -> None:
    """What the control machines return for the show commands, rendered unchanged: a key
    renamed there would show as a missing or wrong sample here."""
    now = 50.0
    local = IPv4Address("192.0.2.2")
    prober = Prober((local,), ProbeSettings(), lambda: 1)
    assert prober.watch(IPv4Address(RLOC_A), None, now)
    registrar = Registrar([MapServerTarget(IPv4Address("192.0.2.30"), b"k")], [])
    registrar.on_timer(now)
    resolver = Resolver([IPv4Address("192.0.2.30")], [local], rng=lambda: 7)
    assert resolver.resolve(0, IPv4Address("198.51.100.17"), None, now)
    assert resolver.hold(0, IPv4Address("198.51.100.17"), b"\x45" + bytes(27), now)
    snap = MetricsSnapshot(
        "x",
        "1",
        {},
        pending=resolver.pending(),
        registrations=registrar.status(now),
        rlocs=prober.states(now),
        now=now,
    )
    families = parse(render_metrics(lambda: snap))
    assert value(families, "lispd_resolutions_pending") == 1
    assert value(families, "lispd_resolution_held_packets") == 1
    assert value(families, "lispd_registration_acknowledged", map_server="192.0.2.30") == 0
    assert value(families, "lispd_map_registers_sent_total", map_server="192.0.2.30") == 0
    assert value(families, "lispd_rloc_state", rloc=RLOC_A, state="unknown") == 1
    assert value(families, "lispd_rloc_probes_sent_total", rloc=RLOC_A) == 1


# --- respond (the HTTP answers, sans-IO) ------------------------------------------------------


def split(response: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of a whole response."""
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("ascii").split("\r\n")
    version, status, _reason = status_line.split(" ", 2)
    assert version == "HTTP/1.1"
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    assert int(headers["content-length"]) == len(body) or not body
    assert headers["connection"] == "close"
    return int(status), headers, body


@pytest.mark.parametrize(
    "request_head",
    [
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
        b"GET /metrics HTTP/1.0\r\n\r\n",
        b"GET /metrics?name[]=lispd_info HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1\n\n",
    ],
)
def test_get_metrics(request_head: bytes) -> None:
    status, headers, body = split(respond(request_head, full_snapshot))
    assert status == 200
    assert headers["content-type"] == CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    assert body == render_metrics(full_snapshot)


def test_head_has_the_headers_only() -> None:
    response = respond(b"HEAD /metrics HTTP/1.1\r\n\r\n", full_snapshot)
    status, headers, body = split(response)
    assert status == 200 and body == b""
    assert int(headers["content-length"]) == len(render_metrics(full_snapshot))


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", 404),
        (b"GET /metrics/ HTTP/1.1\r\n\r\n", 404),
        (b"GET /favicon.ico HTTP/1.1\r\n\r\n", 404),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
        (b"DELETE /metrics HTTP/1.1\r\n\r\n", 405),
        (b"GET /metrics\r\n\r\n", 400),  # HTTP/0.9
        (b"GET /metrics HTTP/2.0\r\n\r\n", 400),
        (b"GET  /metrics HTTP/1.1\r\n\r\n", 400),
        (b"GET metrics HTTP/1.1\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # a TLS hello
        (b"\r\n", 400),
        (b"", 400),
        (b"G\xffT /metrics HTTP/1.1\r\n\r\n", 400),
    ],
)
def test_other_requests(request_head: bytes, status: int) -> None:
    got, headers, body = split(respond(request_head, full_snapshot))
    assert got == status
    assert headers["content-type"].startswith("text/plain")
    assert body.startswith(str(status).encode())
    if status == 405:
        assert headers["allow"] == "GET, HEAD"


def test_a_failing_source_is_a_500_not_an_exception(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> MetricsSnapshot:
        raise RuntimeError("bug")

    with caplog.at_level(logging.ERROR, logger="lispd.metrics"):
        status, _, _ = split(respond(b"GET /metrics HTTP/1.1\r\n\r\n", broken))
    assert status == 500
    assert "metrics rendering failed" in caplog.text


# --- MetricsServer on an ephemeral port -------------------------------------------------------


def serve(test: Callable[[MetricsServer], Awaitable[None]], **kw: Any) -> None:
    """Run ``test`` against a started server on 127.0.0.1 (port chosen by the system)."""

    async def main() -> None:
        server = MetricsServer("127.0.0.1", 0, full_snapshot, **kw)
        await server.start()
        try:
            assert server.port != 0
            await test(server)
        finally:
            await server.close()

    asyncio.run(main())


async def exchange(server: MetricsServer, data: bytes, *, eof: bool = False) -> bytes:
    """Send ``data`` (then close our side when ``eof``), read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(data)
    await writer.drain()
    if eof:
        writer.write_eof()
    try:
        return await asyncio.wait_for(reader.read(), timeout=5)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


def test_server_answers_and_closes() -> None:
    async def test(server: MetricsServer) -> None:
        response = await exchange(server, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = split(response)  # read() returned: the server closed
        assert status == 200 and headers["content-type"] == CONTENT_TYPE
        assert value(parse(body), "lispd_packets_total", counter="itr.encap") == 5
        assert split(await exchange(server, b"GET /nope HTTP/1.1\r\n\r\n"))[0] == 404
        assert split(await exchange(server, b"PUT /metrics HTTP/1.1\r\n\r\n"))[0] == 405
        # request head in pieces
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        for piece in (b"GET /met", b"rics HTTP/1.0\r\n", b"Host: x\r\n", b"\r\n"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.01)
        assert split(await asyncio.wait_for(reader.read(), 5))[0] == 200
        writer.close()

    serve(test)


def test_garbage_does_not_hurt_the_server() -> None:
    async def test(server: MetricsServer) -> None:
        assert split(await exchange(server, b"\x00\xff garbage\r\n\r\n"))[0] == 400
        assert split(await exchange(server, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\n\n"))[0] == 400
        assert await exchange(server, b"GET /metrics HTTP/1.1\r\n", eof=True) == b""  # cut short
        assert await exchange(server, b"", eof=True) == b""
        assert split(await exchange(server, b"GET /metrics HTTP/1.1\r\n\r\n"))[0] == 200

    serve(test)


def test_oversized_request_is_refused_and_closed() -> None:
    async def test(server: MetricsServer) -> None:
        # One endless line, then many short headers: 431 and the connection closed either way.
        for big in (
            b"GET /" + b"a" * (MAX_REQUEST * 4),
            b"GET /metrics HTTP/1.1\r\n" + b"X-Pad: 0123456789\r\n" * 1000,
        ):
            response = await exchange(server, big)
            assert response == b"" or split(response)[0] == 431
        assert split(await exchange(server, b"GET /metrics HTTP/1.1\r\n\r\n"))[0] == 200

    serve(test)


def test_a_silent_client_times_out() -> None:
    async def test(server: MetricsServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /metrics HTTP/1.1\r\n")  # and never the end of the head
        start = asyncio.get_running_loop().time()
        response = await asyncio.wait_for(reader.read(), 5)
        elapsed = asyncio.get_running_loop().time() - start
        writer.close()
        assert split(response)[0] == 408
        assert 0.1 <= elapsed < 2

    serve(test, read_timeout=0.2)


def test_too_many_clients_are_turned_away_and_close_drops_the_rest() -> None:
    async def test(server: MetricsServer) -> None:
        idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
        await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed at once
        writer.close()
        await server.close()
        for reader, writer in idle:
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()

    serve(test, max_clients=2)


def test_ipv6_loopback_and_bind_errors() -> None:
    async def main() -> None:
        server = MetricsServer("::1", 0, full_snapshot)
        try:
            await server.start()
        except OSError:
            pytest.skip("no IPv6 loopback here")
        try:
            reader, writer = await asyncio.open_connection("::1", server.port)
            writer.write(b"GET /metrics HTTP/1.1\r\n\r\n")
            assert split(await asyncio.wait_for(reader.read(), 5))[0] == 200
            writer.close()
            taken = MetricsServer("::1", server.port, full_snapshot)
            with pytest.raises(OSError):
                await taken.start()
            await taken.close()  # safe on a server that never started
        finally:
            await server.close()

    asyncio.run(main())


def test_rtt_values_are_floats_not_rounded_to_integers() -> None:
    families = parse(render_metrics(full_snapshot))
    rtt = value(families, "lispd_rloc_rtt_seconds", rloc=RLOC_A)
    assert math.isclose(rtt, 0.00125)


def test_fastpath_engines_what_each_forwarded_and_worker_restarts() -> None:
    stats = {
        **STATS,
        "fastpath": {"engines": 2, "worker-restarts": 1, "punted-tun": 4},
        "engines": {"main": 30, "worker1": 12},
    }
    snap = MetricsSnapshot(name="xtr1", version="0.1.0", stats=stats)
    families = parse(render_metrics(lambda: snap))
    assert value(families, "lispd_fastpath_engines") == 2
    assert value(families, "lispd_fastpath_worker_restarts_total") == 1
    assert families["lispd_fastpath_engine_packets"].type == "counter"
    assert samples(families["lispd_fastpath_engine_packets"]) == {
        (("engine", "main"),): 30,
        (("engine", "worker1"),): 12,
    }


# --- a scrape never walks the tables ------------------------------------------------------------


def _no_walks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every whole-table walk of the map-cache and of the Map-Server's registrations
    raise: a scrape that still works touched no entry one by one."""

    def walked(*_args: object, **_kw: object) -> Any:
        raise AssertionError("a metrics scrape walked a whole table")

    from lispd.control.mapserver import MapServer
    from lispd.mapcache import MapCache, PrefixTable, ScopedTables

    for cls, names in (
        (MapCache, ("entries", "__iter__")),
        (ScopedTables, ("items",)),
        (PrefixTable, ("items", "partition", "__iter__")),
        (MapServer, ("registrations",)),
    ):
        for name in names:
            monkeypatch.setattr(cls, name, walked)


def test_a_scrape_does_not_touch_map_cache_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    from lispd.api import views
    from lispd.config import parse_config
    from lispd.node import Node
    from tests import configs

    node = Node(parse_config(configs.toml(configs.xtr(probing={"map-cache": False}))), 0.0)
    n = 5000
    for k in range(n):
        node.mapcache.add(
            MapCacheEntry(
                iid=k % 2,
                prefix=ip_network((0x0A000000 + k, 32)),
                rlocs=(RlocEntry(RLOC_A, 1, 1),),
                ttl=600.0,
                source="map-reply",
            )
        )
    _no_walks(monkeypatch)
    snap = views.metrics_snapshot(node, views.node_stats(node), 1.0)
    families = parse(render_metrics(lambda: snap))
    for iid in (0, 1):
        assert value(
            families, "lispd_map_cache_entries", instance_id=str(iid), family="ipv4",
            source="map-reply",
        ) == n // 2  # fmt: skip
    assert f"map-cache={n}" in views.status_line(node, views.node_stats(node), 1.0)


def test_a_scrape_does_not_walk_map_server_registrations(monkeypatch: pytest.MonkeyPatch) -> None:
    from lispd.api import views
    from lispd.config import parse_config
    from lispd.node import Node
    from tests import configs
    from tests.unit.test_mapserver import ETR_A, record, register

    sites = [configs.site("site-a", "key-site-a", {"eid-prefix": "198.51.100.0/24",
                                                   "accept-more-specifics": True})]  # fmt: skip
    node = Node(parse_config(configs.toml(configs.msmr(sites=sites))), 0.0)
    ms = node.control.map_server
    assert ms is not None
    subnets = list(ip_network("198.51.100.0/24").subnets(new_prefix=28))
    for k, net in enumerate(subnets):
        register(ms, (record(str(net), ETR_A),), b"key-site-a", 1.0, src=ETR_A, nonce=k + 1)
    assert ms.registrations_per_site() == {"site-a": len(subnets)}
    _no_walks(monkeypatch)
    snap = views.metrics_snapshot(node, views.node_stats(node), 2.0)
    families = parse(render_metrics(lambda: snap))
    assert value(families, "lispd_map_server_registered_prefixes", site="site-a") == len(subnets)
    assert value(families, "lispd_map_server_registered_sites") == 1
    line = views.status_line(node, views.node_stats(node), 2.0)
    assert f"site-registrations={len(subnets)}" in line
