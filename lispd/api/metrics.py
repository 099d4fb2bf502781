"""Prometheus metrics: ``GET /metrics`` over HTTP, served on the daemon's own asyncio loop.

Optional: ``[metrics] listen = "127.0.0.1:9342"`` in ``lispd.conf`` turns it on (an IPv6
address in brackets, ``"[::1]:9342"``); without the table there is no endpoint.

Two parts, like the rest of lispd:

- :func:`render_metrics` (sans-IO) turns a :class:`MetricsSnapshot` into the Prometheus text
  exposition format (version 0.0.4), written by ``prometheus_client`` through a custom
  collector that reads the snapshot at scrape time: nothing is registered globally, nothing is
  counted twice. :func:`respond` turns one HTTP request head into the whole response.
- :class:`MetricsServer` is the small TCP server around them (``asyncio.start_server``, no
  thread): one request per connection, bounded in size and time, closed after the response.
  Since it runs on the daemon's loop, the snapshot is taken between two packets, from the
  loop's thread: no lock, no race.

The daemon supplies the snapshot through a :data:`MetricsSource`, a function called once per
scrape (this module never imports the daemon). The same data as the control socket's
``stats``, ``map-cache``, ``registrations``, ``rlocs``, ``rtr`` and ``site`` commands:

Always:

``lispd_info{name, version}``
    gauge, 1: the node name (``daemon.name``) and lispd's version.
``lispd_packets_total{counter}``, ``lispd_bytes_total{counter}``
    counters: packets and bytes per data-path counter of ``lispctl show stats``, e.g.
    ``counter="itr.encap"``, ``"etr.decap"``, ``"pitr.encap"``, ``"petr.decap"``,
    ``"rtr.reencap"``, ``"control.sent"`` (a packet is counted under one role only), and a
    few parts of those, e.g. ``"itr.all-rlocs-down"`` (encapsulated, also in ``itr.encap``, to
    a mapping whose RLOCs are all down).
``lispd_drops_total{reason}``
    counter: dropped packets and messages per reason, data and control plane together (e.g.
    ``reason="no-route"``, ``"control-bad-length"``).
``lispd_map_cache_entries{instance_id, family, source}``
    gauge: map-cache entries per instance-id, address family (``ipv4``, ``ipv6``) and origin
    (``static``, ``map-reply``, ...), negative entries included.

With a resolver (the ``itr``, ``pitr`` and ``rtr`` roles, with a ``[[map-resolver]]``):

``lispd_resolutions_pending``
    gauge: EIDs being resolved (Map-Requests outstanding, retries included).
``lispd_resolution_held_packets``
    gauge: packets held until their EID is resolved.

With a registrar (``etr``), per ``[[map-server]]`` (label ``map_server``, its address):

``lispd_registration_acknowledged{map_server}``
    gauge: 1 when a Map-Notify acknowledged a recent Map-Register, else 0.
``lispd_registration_last_ack_age_seconds{map_server}``
    gauge: seconds since the last accepted Map-Notify (absent until the first).
``lispd_map_registers_sent_total{map_server}``, ``lispd_map_notifies_accepted_total{...}``
    counters.

With RLOC probing (``itr``, ``pitr``, ``rtr``: PETRs and map-cache RLOCs), per probed RLOC
(label ``rloc``):

``lispd_rloc_state{rloc, state}``
    gauge: 1 for the RLOC's current state, 0 for the others, ``state`` one of ``up``,
    ``down``, ``unknown`` (not yet answered nor given up); alert on
    ``lispd_rloc_state{state="down"} == 1``.
``lispd_rloc_rtt_seconds{rloc}``
    gauge: round-trip time of the last answered probe (absent until one is).
``lispd_rloc_consecutive_losses{rloc}``
    gauge: probes lost since the last reply.
``lispd_rloc_probes_sent_total{rloc}``, ``lispd_rloc_probe_replies_total{rloc}``
    counters.

With the ``rtr`` role: ``lispd_nat_bindings`` (gauge: xTRs behind NATs whose translated
address:port the RTR knows).  With the compiled fast path there too:
``lispd_fastpath_records_reissued_total`` (counter: forwarding records issued again because
the NAT binding of one of their RLOCs changed).

The event loop (every running daemon):

``lispd_event_loop_lag_seconds``
    histogram: how late a tick due every 10 ms ran (buckets 5 ms to 1 s): the loop's stalls,
    give or take one tick interval.
``lispd_event_loop_lag_recent_max_seconds``
    gauge: the largest of those lags in the last 10 to 20 seconds.

With a DDT role (a DDT node, a Map-Server, a Map-Resolver with ``[ddt] roots``):
``lispd_ddt_referrals_received_total{action}``, ``lispd_ddt_referrals_sent_total{action}``,
``lispd_ddt_events_total{event}`` (``resolutions``, ``requests-sent``, ``steps``,
``timeouts``, ``gave-up-loop``, ...; ``steps`` / ``resolutions-finished`` is the mean number of
requests per resolution), gauges ``lispd_ddt_referral_cache_entries``,
``lispd_ddt_resolutions_pending``, ``lispd_ddt_max_steps_per_resolution``.

With the ``map-server`` role:

``lispd_map_server_sites``
    gauge: configured sites (``[[site]]`` tables).
``lispd_map_server_registered_sites``
    gauge: sites with at least one EID-prefix registered.
``lispd_map_server_registered_prefixes{site}``
    gauge: registered EID-prefixes per configured site (0 for a silent one).

A part the node does not run (no resolver, no Map-Server, ...) leaves its metrics out
altogether, HELP and TYPE lines included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from lispd.logfmt import kv
from lispd.mapcache import MapCacheEntry

log = logging.getLogger("lispd.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The media type of the text exposition format :func:`render_metrics` writes."""

METRICS_PATH = "/metrics"
MAX_REQUEST = 8192
"""Bytes a request head may take (request line and headers); more is refused with 431."""
READ_TIMEOUT = 5.0
"""Seconds a client has to send its request head, and to take the response."""
MAX_CLIENTS = 16
"""Connections served at once; more are closed at once."""


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """What the daemon knows at scrape time; ``None`` for a part this node does not run.

    The dicts are those of the control socket's answers, so the metrics and ``lispctl show``
    always agree.
    """

    name: str
    """The node name (``daemon.name``)."""
    version: str
    """lispd's version."""
    stats: Mapping[str, Mapping[str, int]]
    """``Daemon.stats()``, the ``stats`` command: ``{"packets": {"itr.encap.packets": n,
    "itr.encap.bytes": n, ...}, "drops": {reason: n, ...}}``."""
    map_cache: Iterable[MapCacheEntry] = ()
    """Every map-cache entry (counted here when :attr:`map_cache_counts` is None)."""
    map_cache_counts: Mapping[tuple[int, int, str], int] | None = None
    """Map-cache entries per (instance-ID, IP version, source), counted already
    (:meth:`lispd.mapcache.MapCache.census`: a scrape then costs no pass over the map-cache)."""
    pending: Sequence[Mapping[str, Any]] | None = None
    """:meth:`lispd.control.resolver.Resolver.pending`: one dict per lookup, with ``held``."""
    registrations: Sequence[Mapping[str, Any]] | None = None
    """:meth:`lispd.control.registrar.Registrar.status` at :attr:`now`."""
    rlocs: Sequence[Mapping[str, Any]] | None = None
    """:meth:`lispd.control.prober.Prober.states`."""
    nat_bindings: int | None = None
    """How many NAT bindings the RTR holds."""
    sites: Sequence[str] | None = None
    """The names of the Map-Server's configured sites."""
    registered: Sequence[str] | None = None
    """The site of each registration the Map-Server holds (one per EID-prefix; counted here
    when :attr:`registered_counts` is None)."""
    registered_counts: Mapping[str, int] | None = None
    """Registrations per site, counted already
    (:meth:`lispd.control.mapserver.MapServer.registrations_per_site`: no pass over them)."""
    now: float = 0.0
    """The daemon's clock when the snapshot was taken (the clock of the times above)."""


MetricsSource = Callable[[], MetricsSnapshot]
"""What the daemon hands to :class:`MetricsServer`: called once per scrape, on the loop."""


# --- rendering ----------------------------------------------------------------------------------


def render_metrics(source: MetricsSource) -> bytes:
    """The text exposition (format 0.0.4) of the snapshot ``source()`` returns now."""
    return generate_latest(_Collector(source))


class _Collector:
    """A ``prometheus_client`` collector that reads one snapshot per :meth:`collect`."""

    def __init__(self, source: MetricsSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        """Every metric family of one snapshot."""
        snap = self.source()
        info = GaugeMetricFamily(
            "lispd_info", "The node name and lispd's version", labels=["name", "version"]
        )
        info.add_metric([snap.name, snap.version], 1)
        yield info
        yield from _stats_families(snap.stats)
        counts = snap.map_cache_counts
        if counts is None:
            counts = Counter((e.iid, e.prefix.version, e.source) for e in snap.map_cache)
        yield _map_cache_family(counts)
        if snap.pending is not None:
            yield GaugeMetricFamily(
                "lispd_resolutions_pending",
                "EIDs being resolved (Map-Requests outstanding)",
                value=len(snap.pending),
            )
            yield GaugeMetricFamily(
                "lispd_resolution_held_packets",
                "Packets held until their EID is resolved",
                value=sum(int(p.get("held", 0)) for p in snap.pending),
            )
        if snap.registrations is not None:
            yield from _registration_families(snap.registrations, snap.now)
        if snap.rlocs is not None:
            yield from _rloc_families(snap.rlocs)
        if snap.nat_bindings is not None:
            yield GaugeMetricFamily(
                "lispd_nat_bindings",
                "xTRs behind NATs whose translated address:port this RTR knows",
                value=snap.nat_bindings,
            )
        if snap.sites is not None:
            per_site = snap.registered_counts
            if per_site is None:
                per_site = Counter(snap.registered or ())
            yield from _site_families(snap.sites, per_site)


def _stats_families(stats: Mapping[str, Mapping[str, int]]) -> Iterator[Metric]:
    packets = CounterMetricFamily(
        "lispd_packets", "Packets per data-path counter", labels=["counter"]
    )
    nbytes = CounterMetricFamily("lispd_bytes", "Bytes per data-path counter", labels=["counter"])
    for key, value in sorted(stats.get("packets", {}).items()):
        name, _, kind = key.rpartition(".")
        if kind == "bytes" and name:
            nbytes.add_metric([name], value)
        elif kind == "packets" and name:
            packets.add_metric([name], value)
        else:  # not written by Counters.count(): still shown, under its whole name
            packets.add_metric([key], value)
    drops = CounterMetricFamily(
        "lispd_drops", "Dropped packets and control messages per reason", labels=["reason"]
    )
    for reason, value in sorted(stats.get("drops", {}).items()):
        drops.add_metric([reason], value)
    return iter(
        (
            packets,
            nbytes,
            drops,
            *_fastpath_families(stats),
            *_loop_families(stats),
            *_ddt_families(stats),
        )
    )


DDT_GAUGES = {
    "referral-cache-entries": ("lispd_ddt_referral_cache_entries", "Referrals cached"),
    "pending": ("lispd_ddt_resolutions_pending", "DDT resolutions in progress"),
    "max-steps-per-resolution": (
        "lispd_ddt_max_steps_per_resolution",
        "The most requests one DDT resolution took so far",
    ),
}


def _ddt_families(stats: Mapping[str, Any]) -> Iterator[Metric]:
    """LISP-DDT (``show stats``'s ``ddt`` section): referrals received per action, sent per
    action, resolutions and their steps, referral cache size."""
    ddt = stats.get("ddt")
    if not isinstance(ddt, Mapping) or not ddt:
        return
    received = CounterMetricFamily(
        "lispd_ddt_referrals_received", "Map-Referrals accepted, per action", labels=["action"]
    )
    sent = CounterMetricFamily(
        "lispd_ddt_referrals_sent", "Map-Referrals sent, per action", labels=["action"]
    )
    events = CounterMetricFamily(
        "lispd_ddt_events",
        "DDT resolver events (resolutions, requests-sent, steps, timeouts, gave-up-...)",
        labels=["event"],
    )
    for key, value in sorted(ddt.items()):
        if key in DDT_GAUGES:
            name, doc = DDT_GAUGES[key]
            yield GaugeMetricFamily(name, doc, value=value)
        elif key.startswith("received-"):
            received.add_metric([key.removeprefix("received-")], value)
        elif key.startswith("sent-"):
            sent.add_metric([key.removeprefix("sent-")], value)
        else:
            events.add_metric([key], value)
    yield received
    yield sent
    yield events


def _loop_families(stats: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
    """The event loop's lag (:class:`lispd.stats.LoopLag` figures, in milliseconds)."""
    loop = stats.get("loop")
    if not loop or not loop.get("ticks"):
        return
    ticks = int(loop["ticks"])
    over = {  # "lag-over-20ms": ticks later than 20 ms, per threshold
        float(key[len("lag-over-") : -len("ms")]) / 1000: int(count)
        for key, count in loop.items()
        if key.startswith("lag-over-") and key.endswith("ms")
    }
    buckets = [(f"{le:g}", ticks - over[le]) for le in sorted(over)]
    yield HistogramMetricFamily(
        "lispd_event_loop_lag_seconds",
        "How late the event loop ran a tick due every few milliseconds (its stalls)",
        buckets=[*buckets, ("+Inf", ticks)],
        sum_value=float(loop.get("lag-sum-ms", 0.0)) / 1000,
    )
    yield GaugeMetricFamily(
        "lispd_event_loop_lag_recent_max_seconds",
        "The largest event loop lag in the last 10 to 20 seconds",
        value=float(loop.get("lag-recent-max-ms", 0.0)) / 1000,
    )


def _fastpath_families(stats: Mapping[str, Mapping[str, int]]) -> Iterator[Metric]:
    """The compiled fast path's engines: how many, what each forwarded, worker restarts."""
    fast = stats.get("fastpath")
    if not fast:
        return
    yield GaugeMetricFamily(
        "lispd_fastpath_engines",
        "Compiled fast-path engines forwarding in parallel (the main process and its workers)",
        value=fast.get("engines", 1),
    )
    yield CounterMetricFamily(
        "lispd_fastpath_worker_restarts",
        "Fast-path worker processes restarted after they died",
        value=fast.get("worker-restarts", 0),
    )
    if "records-reissued" in fast:
        yield CounterMetricFamily(
            "lispd_fastpath_records_reissued",
            "Forwarding records issued again because the NAT binding of one of their RLOCs changed",
            value=fast["records-reissued"],
        )
    spread = stats.get("engines")
    if spread:
        family = CounterMetricFamily(
            "lispd_fastpath_engine_packets",
            "Packets each engine forwarded (a restarted worker counts from zero again)",
            labels=["engine"],
        )
        for engine, value in spread.items():
            family.add_metric([engine], value)
        yield family


def _map_cache_family(counts: Mapping[tuple[int, int, str], int]) -> Metric:
    family = GaugeMetricFamily(
        "lispd_map_cache_entries",
        "Map-cache entries per instance-id, address family and origin",
        labels=["instance_id", "family", "source"],
    )
    for (iid, version, source), count in sorted(counts.items()):
        if count:
            family.add_metric([str(iid), f"ipv{version}", source], count)
    return family


def _registration_families(
    registrations: Sequence[Mapping[str, Any]], now: float
) -> Iterator[Metric]:
    labels = ["map_server"]
    acknowledged = GaugeMetricFamily(
        "lispd_registration_acknowledged",
        "1 when a Map-Notify acknowledged a recent Map-Register",
        labels=labels,
    )
    age = GaugeMetricFamily(
        "lispd_registration_last_ack_age_seconds",
        "Seconds since the last accepted Map-Notify",
        labels=labels,
    )
    sent = CounterMetricFamily(
        "lispd_map_registers_sent", "Map-Registers sent per Map-Server", labels=labels
    )
    accepted = CounterMetricFamily(
        "lispd_map_notifies_accepted", "Map-Notifies accepted per Map-Server", labels=labels
    )
    for row in registrations:
        server = [str(row["address"])]
        acknowledged.add_metric(server, 1 if row.get("acknowledged") else 0)
        last = row.get("last-acked")
        if last is not None:
            age.add_metric(server, round(max(0.0, now - float(last)), 3))
        sent.add_metric(server, int(row.get("registers-sent", 0)))
        accepted.add_metric(server, int(row.get("notifies-accepted", 0)))
    return iter((acknowledged, age, sent, accepted))


RLOC_STATES = ("up", "down", "unknown")
"""The values of the ``state`` label of ``lispd_rloc_state``."""


def _rloc_families(rlocs: Sequence[Mapping[str, Any]]) -> Iterator[Metric]:
    state = GaugeMetricFamily(
        "lispd_rloc_state",
        "1 for the probed RLOC's current state (up, down or unknown), 0 for the others",
        labels=["rloc", "state"],
    )
    rtt = GaugeMetricFamily(
        "lispd_rloc_rtt_seconds", "Round-trip time of the last answered probe", labels=["rloc"]
    )
    losses = GaugeMetricFamily(
        "lispd_rloc_consecutive_losses", "Probes lost since the last reply", labels=["rloc"]
    )
    sent = CounterMetricFamily("lispd_rloc_probes_sent", "RLOC probes sent", labels=["rloc"])
    replies = CounterMetricFamily(
        "lispd_rloc_probe_replies", "RLOC probe replies accepted", labels=["rloc"]
    )
    for row in rlocs:
        rloc = str(row["rloc"])
        up = row.get("up")
        current = "unknown" if up is None else "up" if up else "down"
        for name in RLOC_STATES:
            state.add_metric([rloc, name], 1 if name == current else 0)
        if row.get("last-rtt") is not None:
            rtt.add_metric([rloc], float(row["last-rtt"]))
        losses.add_metric([rloc], int(row.get("losses", 0)))
        sent.add_metric([rloc], int(row.get("probes-sent", 0)))
        replies.add_metric([rloc], int(row.get("replies", 0)))
    return iter((state, rtt, losses, sent, replies))


def _site_families(sites: Sequence[str], per_site: Mapping[str, int]) -> Iterator[Metric]:
    yield GaugeMetricFamily("lispd_map_server_sites", "Configured sites", value=len(sites))
    yield GaugeMetricFamily(
        "lispd_map_server_registered_sites",
        "Sites with at least one EID-prefix registered",
        value=sum(1 for site in per_site if per_site[site] > 0),
    )
    prefixes = GaugeMetricFamily(
        "lispd_map_server_registered_prefixes",
        "Registered EID-prefixes per site",
        labels=["site"],
    )
    for site in sorted(set(sites) | set(per_site)):
        prefixes.add_metric([site], per_site.get(site, 0))
    yield prefixes


# --- HTTP -----------------------------------------------------------------------------------------

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}


def _response(status: int, body: bytes, content_type: str, *, head: bool = False) -> bytes:
    headers = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if status == 405:
        headers.append("Allow: GET, HEAD")
    return ("\r\n".join(headers) + "\r\n\r\n").encode("ascii") + (b"" if head else body)


def error_response(status: int) -> bytes:
    """A complete plain-text error response (one of 400, 404, 405, 408, 431, 500)."""
    body = f"{status} {_REASONS[status]}\n".encode("ascii")
    return _response(status, body, "text/plain; charset=utf-8")


def respond(request_head: bytes, source: MetricsSource) -> bytes:
    """The whole HTTP response to one request head (request line and headers, as received).

    ``GET /metrics`` (any query string) answers 200 with :func:`render_metrics`; ``HEAD`` the
    same without the body. Another path is 404, another method 405, anything not an HTTP/1.x
    request line 400; a failing ``source`` is 500 (logged), never an exception.
    """
    line = request_head.split(b"\n", 1)[0].rstrip(b"\r")
    parts = line.split(b" ")
    if len(parts) != 3 or parts[2] not in (b"HTTP/1.0", b"HTTP/1.1") or not parts[0].isalpha():
        return error_response(400)
    method, target = parts[0], parts[1]
    path = target.split(b"?", 1)[0]
    if path != METRICS_PATH.encode():
        return error_response(404 if target.startswith(b"/") else 400)
    if method not in (b"GET", b"HEAD"):
        return error_response(405)
    try:
        body = render_metrics(source)
    except Exception:  # a bug must cost one scrape, never the daemon
        log.exception("metrics rendering failed")
        return error_response(500)
    return _response(200, body, CONTENT_TYPE, head=method == b"HEAD")


class _TooLarge(Exception):
    """The request head is longer than allowed."""


class MetricsServer:
    """Serves :func:`respond` on ``host``:``port`` (TCP) from the running asyncio loop.

    ``refresh``, when given, is awaited before each snapshot (the daemon asks its fast-path
    workers for their current counters)."""

    def __init__(
        self,
        host: str,
        port: int,
        source: MetricsSource,
        *,
        max_request: int = MAX_REQUEST,
        read_timeout: float = READ_TIMEOUT,
        max_clients: int = MAX_CLIENTS,
        refresh: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``port`` 0 picks a free port (see :attr:`port` once started)."""
        self.host = host
        self.source = source
        self.refresh = refresh
        self.max_request = max_request
        self.read_timeout = read_timeout
        self.max_clients = max_clients
        self._port = port
        self.server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        """The port listened on (the one chosen by the system when 0 was asked for)."""
        if self.server is not None and self.server.sockets:
            return int(self.server.sockets[0].getsockname()[1])
        return self._port

    async def start(self) -> None:
        """Bind and start serving; an ``OSError`` (address in use, ...) goes to the caller."""
        self.server = await asyncio.start_server(
            self._client, self.host, self._port, limit=self.max_request
        )
        host = f"[{self.host}]" if ":" in self.host else self.host
        log.info(
            "metrics endpoint listening %s", kv(url=f"http://{host}:{self.port}{METRICS_PATH}")
        )

    async def close(self) -> None:
        """Stop listening and drop the connections still open."""
        if self.server is not None:
            self.server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        if self.server is not None:
            with contextlib.suppress(Exception):
                await self.server.wait_closed()
            self.server = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or len(self._clients) >= self.max_clients:
            writer.close()
            return
        self._clients.add(task)
        try:
            try:
                async with asyncio.timeout(self.read_timeout):
                    head = await self._read_head(reader)
                if self.refresh is not None:
                    await self.refresh()
                response = respond(head, self.source)
            except _TooLarge:
                response = error_response(431)
            except TimeoutError:
                response = error_response(408)
            except asyncio.IncompleteReadError:
                return  # the client went away before a whole request: nothing to answer
            writer.write(response)
            async with asyncio.timeout(self.read_timeout):
                await writer.drain()
        except (ConnectionError, TimeoutError, OSError) as exc:
            log.debug("metrics client error %s", kv(error=exc))
        except asyncio.CancelledError:
            pass  # close(): the connection is dropped below
        except Exception:  # a bug must cost one scrape, never the loop
            log.exception("metrics client failed")
        finally:
            self._clients.discard(task)
            writer.close()

    async def _read_head(self, reader: asyncio.StreamReader) -> bytes:
        """The request line and headers, up to the empty line; without their end, raises
        :class:`asyncio.IncompleteReadError` (EOF) or :class:`_TooLarge`."""
        head = b""
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError as exc:
                raise _TooLarge from exc
            head += line
            if len(head) > self.max_request:
                raise _TooLarge
            if line in (b"\r\n", b"\n"):
                return head
