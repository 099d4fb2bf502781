"""LISP-Trace through the real :class:`lispd.daemon.Daemon` (fake sockets and clock, from
``tests.fuzz.harness``): a trace whose destination has no mapping yet is held while it is
resolved, like a data packet, and follows the mapping on its first try; a destination the
mapping system calls no EID ends the trace "not an EID" (even with a PETR for the data); a
trace still waiting after ``TRACE_HOLD`` seconds is answered "map-cache miss", once.

The node is the fuzz world's RTR (:data:`tests.fuzz.roles.ROLE_CONFIGS`): RLOC 192.0.2.20,
public 203.0.113.20 (``[rtr] public-rlocs``), Map-Resolver 192.0.2.10, PETR 192.0.2.30.  The
ltr client sits behind a NAT (private RLOC 10.0.0.2, seen as 192.0.2.50).
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, ip_address

from lispd.dataplane.outputs import Encap
from lispd.dataplane.tracing import TRACE_HOLD, stamp_encap
from lispd.mapcache import MapCacheEntry
from lispd.wire.control import decode_control
from lispd.wire.data import DATA_HEADER_LEN, build_data_header
from lispd.wire.ecm import EncapsulatedControl
from lispd.wire.ip import IPv4Header, UdpDatagram, build_udp_datagram, parse_udp_datagram
from lispd.wire.mapreply import MapReply, encode_map_reply
from lispd.wire.maprequest import MapRequest
from lispd.wire.records import Action, EidRecord, Locator
from lispd.wire.trace import TRACE_PORT, TraceHop, TraceMessage, decode_trace, encode_trace
from tests.fuzz.harness import FuzzInput, Harness, Sent, new_loop

NONCE = 0x0123456789ABCDEF
CLIENT_RLOC = IPv4Address("10.0.0.2")
CLIENT_PORT = 40000
NAT = "192.0.2.50"  # the client's NAT, as the RTR sees it
NAT_TRACE_PORT = 41000  # what the NAT made of the client's port
NAT_DATA_PORT = 42000  # what it made of the xTR's data port
MAP_RESOLVER = "192.0.2.10"


def client_trace(src: str, dst: str, port: int = CLIENT_PORT) -> bytes:
    """The ltr client's first packet from EID ``src`` to ``dst`` (no JSON yet), sent from
    ``port``."""
    msg = TraceMessage(local_port=port, local_rloc=CLIENT_RLOC, nonce=NONCE)
    ip = IPv4Header(IPv4Address(src), IPv4Address(dst))
    return build_udp_datagram(UdpDatagram(ip, port, TRACE_PORT, encode_trace(msg)))


def from_nated_itr(dst: str, port: int = CLIENT_PORT) -> bytes:
    """What the NATed xTR sends the RTR: a LISP header and the trace with its ITR record."""
    inner = stamp_encap(
        client_trace("198.51.100.50", dst, port),
        iid=0,
        role="ITR",
        sr=str(CLIENT_RLOC),
        dr="203.0.113.20",
        hn="xtr3",
        ts=1.0,
    )
    assert inner is not None
    return build_data_header(0x123, 0) + inner


def records(payload: bytes) -> list[TraceHop]:
    """Every record of a bare trace payload, in order."""
    return [hop for seg in decode_trace(payload).segments or () for hop in seg.paths]


def run(role: str, scenario: Callable[[Harness, list[Encap]], None]) -> None:
    """Run ``scenario`` on a started harness of ``role`` inside an event loop; it gets the
    harness and the list every packet the daemon encapsulates is appended to."""

    async def main() -> None:
        harness = Harness(role)
        harness.start()
        sent: list[Encap] = []
        send = harness.daemon._send_encap

        def record(out: Encap) -> bool:
            sent.append(out)
            return send(out)

        harness.daemon._send_encap = record  # type: ignore[method-assign]
        try:
            harness.take_unanswered()  # what start-up sent: registrations, probes
            scenario(harness, sent)
            assert not harness.stats.failures, [f.report() for f in harness.stats.failures]
        finally:
            harness.close()

    loop = new_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def announce_client(h: Harness) -> None:
    """The ltr client's bare header to the RTR's port 2434, through the NAT."""
    bare = encode_trace(TraceMessage(CLIENT_PORT, CLIENT_RLOC, NONCE))
    h.deliver("trace", FuzzInput(bare, NAT, NAT_TRACE_PORT))
    assert h.daemon.counters.packets["trace.nat-client.packets"] == 1


def test_rtr_learns_a_client_announced_but_not_yet_read_before_answering() -> None:
    """The loop may wake for the trace (port 4341) before the client's bare header, sent
    first, is read from port 2434: the RTR reads it before it answers, or the answer would go
    to the client's private address."""

    def scenario(h: Harness, encapsulated: list[Encap]) -> None:
        bare = encode_trace(TraceMessage(CLIENT_PORT, CLIENT_RLOC, NONCE))
        h.trace_sockets[4].push(FuzzInput(bare, NAT, NAT_TRACE_PORT))  # queued, unread
        # A drop mapping: the RTR answers at once, in lispers.net's words.
        h.daemon.mapcache.add(MapCacheEntry(0, "198.51.100.32/28", action="drop"))
        h.deliver("data", FuzzInput(from_nated_itr("198.51.100.40"), NAT, NAT_DATA_PORT))
        [back] = returned(h)
        assert (back.dst, back.port) == (NAT, NAT_TRACE_PORT)
        assert records(back.payload)[-1].dr == "? (drop action)"
        assert encapsulated == []

    run("rtr", scenario)


def map_request_nonce(h: Harness, eid: str) -> int:
    """The nonce of the Map-Request for ``eid`` the RTR just sent its Map-Resolver."""
    for sent in h.take_unanswered():
        if sent.kind != "control" or sent.dst != MAP_RESOLVER:
            continue
        ecm = decode_control(sent.payload)
        if (
            isinstance(ecm, EncapsulatedControl)
            and isinstance(ecm.message, MapRequest)
            and str(ecm.inner_ip.dst) == eid
        ):
            return ecm.message.nonce
    raise AssertionError(f"no Map-Request for {eid}")


def reply(h: Harness, nonce: int, record: EidRecord) -> None:
    """The Map-Resolver's Map-Reply."""
    data = encode_map_reply(MapReply(nonce=nonce, records=(record,)))
    h.deliver("control", FuzzInput(data, MAP_RESOLVER, 4342))


def returned(h: Harness) -> list[Sent]:
    """Trace payloads the node sent back to ltr clients since the last look."""
    return [s for s in h.take_unanswered() if s.kind == "trace"]


def test_rtr_holds_a_trace_while_resolving_and_answers_not_an_eid_from_its_public_rloc() -> None:
    def scenario(h: Harness, encapsulated: list[Encap]) -> None:
        announce_client(h)
        h.deliver("data", FuzzInput(from_nated_itr("203.0.113.7"), NAT, NAT_DATA_PORT))
        assert h.daemon.counters.packets["trace.held.packets"] == 1
        nonce = map_request_nonce(h, "203.0.113.7")
        assert returned(h) == []  # held, not answered "map-cache miss"
        native = EidRecord(IPv4Address("203.0.113.0"), 24, action=Action.NATIVELY_FORWARD)
        reply(h, nonce, native)
        [back] = returned(h)
        # To the client's NAT binding; the trace ends at the RTR, not at its PETR.
        assert (back.dst, back.port) == (NAT, NAT_TRACE_PORT)
        itr, decap, stop = records(back.payload)
        assert (itr.node, itr.sr) == ("ITR", f"{CLIENT_RLOC}:{CLIENT_PORT}")
        assert (decap.node, decap.sr, decap.dr) == ("RTR", f"{NAT}:{NAT_DATA_PORT}", "192.0.2.20")
        assert (stop.node, stop.sr, stop.dr, stop.hn) == (
            "RTR",
            "203.0.113.20",
            "? (not an EID)",
            "rtr1",
        )
        assert encapsulated == []  # nothing went to the PETR
        # Cached now: the next trace is answered at once, without a Map-Request.
        h.deliver("data", FuzzInput(from_nated_itr("203.0.113.8"), NAT, NAT_DATA_PORT))
        [again] = returned(h)
        assert records(again.payload)[-1].dr == "? (not an EID)"

    run("rtr", scenario)


def test_rtr_trace_follows_the_mapping_resolved_on_its_first_try() -> None:
    def scenario(h: Harness, encapsulated: list[Encap]) -> None:
        announce_client(h)
        h.deliver("data", FuzzInput(from_nated_itr("198.51.100.70"), NAT, NAT_DATA_PORT))
        nonce = map_request_nonce(h, "198.51.100.70")
        site = EidRecord(
            IPv4Address("198.51.100.64"), 28, locators=(Locator(IPv4Address("192.0.2.6")),)
        )
        reply(h, nonce, site)
        assert returned(h) == []
        [out] = encapsulated
        assert out.rloc == ip_address("192.0.2.6")
        inner = parse_udp_datagram(out.payload[DATA_HEADER_LEN:], verify_checksum=True)
        *_, decap, encap = records(inner.payload)
        assert (decap.node, decap.sr, decap.dr) == ("RTR", f"{NAT}:{NAT_DATA_PORT}", "192.0.2.20")
        assert (encap.node, encap.sr, encap.dr) == ("RTR", "203.0.113.20", "192.0.2.6")
        assert h.daemon.tracer.held == {}

    run("rtr", scenario)


def test_rtr_trace_waiting_too_long_is_answered_map_cache_miss_once() -> None:
    def scenario(h: Harness, encapsulated: list[Encap]) -> None:
        announce_client(h)
        h.deliver("data", FuzzInput(from_nated_itr("198.51.100.80"), NAT, NAT_DATA_PORT))
        nonce = map_request_nonce(h, "198.51.100.80")
        h.clock.now += TRACE_HOLD - 0.01
        h.run_timer()
        assert returned(h) == []
        h.clock.now += 0.01
        h.run_timer()
        [back] = returned(h)
        assert (back.dst, back.port) == (NAT, NAT_TRACE_PORT)
        stop = records(back.payload)[-1]
        assert (stop.sr, stop.dr) == ("203.0.113.20", "? (map-cache miss)")
        # The mapping comes late: the trace was answered, it is not sent on as well.
        site = EidRecord(
            IPv4Address("198.51.100.80"), 32, locators=(Locator(IPv4Address("192.0.2.6")),)
        )
        reply(h, nonce, site)
        assert encapsulated == [] and returned(h) == []
        assert h.daemon.counters.drops["trace-answered"] == 1

    run("rtr", scenario)


def test_itr_answers_not_an_eid_instead_of_tracing_through_its_petr() -> None:
    """The fuzz world's xTR maps 203.0.113.0/24 native-forward and has a PETR: lispers.net's
    ITR answers such a trace "not an EID" (and forwards data natively); lispd's too, to the
    client on its own RLOC, while data still goes to the PETR."""

    def scenario(h: Harness, encapsulated: list[Encap]) -> None:
        h.deliver("tun", FuzzInput(client_trace("198.51.100.2", "203.0.113.5")))
        [back] = returned(h)
        assert (back.dst, back.port) == ("192.0.2.2", CLIENT_PORT)
        [stop] = records(back.payload)
        assert (stop.node, stop.sr, stop.dr, stop.hn) == (
            "ITR",
            f"192.0.2.2:{CLIENT_PORT}",
            "? (not an EID)",
            "xtr1",
        )
        assert encapsulated == []
        data = bytearray(client_trace("198.51.100.2", "203.0.113.5"))
        data[22:24] = (5353).to_bytes(2, "big")  # UDP to another port: no trace, just data
        h.deliver("tun", FuzzInput(bytes(data)))
        assert [(o.rloc, o.to_petr) for o in encapsulated] == [(ip_address("192.0.2.30"), True)]

    run("xtr", scenario)
