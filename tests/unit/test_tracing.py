"""The node-side LISP-Trace glue: which record a node stamps, with what probe data, and where a
trace that cannot go on is sent back."""

from __future__ import annotations

from ipaddress import ip_address

from lispd.dataplane.outputs import Encap
from lispd.dataplane.tracing import MAX_HELD_TRACES, TRACE_HOLD, Tracer, stamp_encap
from lispd.wire.data import build_data_header
from lispd.wire.ip import (
    IPv4Header,
    IPv6Header,
    UdpDatagram,
    build_udp_datagram,
    parse_udp_datagram,
)
from lispd.wire.trace import TraceMessage, decode_trace, encode_trace

RLOC = ip_address("192.0.2.2")


def first_packet(port: int = 40000) -> bytes:
    msg = TraceMessage(local_port=port, local_rloc=RLOC, nonce=7)  # type: ignore[arg-type]
    ip = IPv4Header(ip_address("198.51.100.1"), ip_address("198.51.100.18"))
    return build_udp_datagram(UdpDatagram(ip, port, 2434, encode_trace(msg)))


def hops(inner: bytes) -> list[dict[str, object]]:
    msg = decode_trace(parse_udp_datagram(inner, verify_checksum=True).payload)
    return [
        {"n": h.node, "sr": h.sr, "dr": h.dr, "hn": h.hn, "rtts": h.rtts, "hops": h.hops}
        for seg in msg.segments or ()
        for h in seg.paths
    ]


def tracer(history: object = None) -> Tracer:
    return Tracer("xtr1", {4: RLOC}, lambda _rloc: history, wall_clock=lambda: 1.5)  # type: ignore[arg-type, return-value]


def test_encap_record_carries_the_probe_history_of_the_chosen_rloc() -> None:
    pkt = first_packet()
    out = Encap(ip_address("192.0.2.6"), 4341, 0, 64, 0, build_data_header(1, 5) + pkt)
    stamped = tracer(([0.0012, 0.002], ["1/1", "1/2"])).encap(out, "ITR")
    assert stamped.payload[:8] == out.payload[:8]
    (hop,) = hops(stamped.payload[8:])
    assert hop["n"] == "ITR" and hop["sr"] == "192.0.2.2:40000" and hop["dr"] == "192.0.2.6"
    assert hop["rtts"] == (0.001, 0.002, -1) and hop["hops"] == ("1/1", "1/2", "?/?")


def test_encap_to_a_translated_port_and_without_probe_data() -> None:
    out = Encap(ip_address("192.0.2.14"), 56829, 0, 64, 0, build_data_header(1, 0) + first_packet())
    (hop,) = hops(tracer().encap(out, "RTR").payload[8:])
    assert hop["dr"] == "192.0.2.14:56829" and hop["rtts"] is None


def test_decap_record_names_the_outer_source_as_it_arrived() -> None:
    inner = stamp_encap(first_packet(), iid=0, role="ITR", sr="192.0.2.134", dr="192.0.2.100",
                        hn="gxtr1", ts=1.0)  # fmt: skip
    assert inner is not None
    decap = tracer().decap(inner, 0, "RTR", "192.0.2.10", 44953)
    assert hops(decap)[-1]["sr"] == "192.0.2.10:44953" and hops(decap)[-1]["dr"] == "192.0.2.2"
    assert tracer().decap(b"garbage", 0, "RTR", "192.0.2.10", 1) == b"garbage"


def test_failure_goes_back_to_the_client_or_its_nat_binding() -> None:
    inner = stamp_encap(first_packet(), iid=0, role="ITR", sr="192.0.2.134", dr="192.0.2.100",
                        hn="gxtr1", ts=1.0)  # fmt: skip
    assert inner is not None
    t = tracer()
    back = t.failure(inner, 0, "RTR", "rtr-native-forward-no-petr")
    assert back is not None and back[1:] == (ip_address("192.0.2.134"), 40000)
    last = decode_trace(back[0]).segments[0].paths[-1]  # type: ignore[index]
    assert last.dr == "? (not an EID)"
    # The client behind a NAT announced itself: the answer goes to its translated address.
    bare = encode_trace(TraceMessage(40000, ip_address("192.0.2.134"), 7))  # type: ignore[arg-type]
    assert t.learn_client(bare, "192.0.2.10", 41000)
    assert not t.learn_client(b"junk", "192.0.2.10", 41000)
    back = t.failure(inner, 0, "RTR", "map-cache-miss")
    assert back is not None and back[1:] == (ip_address("192.0.2.10"), 41000)
    assert decode_trace(back[0]).segments[0].paths[-1].dr == "? (map-cache miss)"  # type: ignore[index]


def rtr_tracer() -> Tracer:
    """rtr1 on 10.0.1.5 behind a 1:1 NAT that shows it as 192.0.2.100 (``[rtr] public-rlocs``)."""
    return Tracer(
        "rtr1",
        {4: ip_address("10.0.1.5")},  # type: ignore[dict-item]
        lambda _rloc: None,
        wall_clock=lambda: 2.5,
        public_rlocs={4: ip_address("192.0.2.100")},  # type: ignore[dict-item]
    )


def test_rtr_records_name_its_public_rloc_as_the_seed_does() -> None:
    inner = stamp_encap(first_packet(), iid=0, role="ITR", sr="192.0.2.134", dr="192.0.2.100",
                        hn="gxtr1", ts=1.0)  # fmt: skip
    assert inner is not None
    t = rtr_tracer()
    # Decap: the outer source as it arrived (the NAT's address and port), our own RLOC.
    decap = t.decap(inner, 0, "RTR", "192.0.2.10", 41000)
    assert hops(decap)[-1]["sr"] == "192.0.2.10:41000" and hops(decap)[-1]["dr"] == "10.0.1.5"
    # Encap and "cannot forward": the address the next hop (and the seed) sees.
    out = Encap(ip_address("192.0.2.14"), 53227, 0, 64, 0, build_data_header(1, 0) + decap)
    encap = hops(t.encap(out, "RTR").payload[8:])[-1]
    assert encap["sr"] == "192.0.2.100" and encap["dr"] == "192.0.2.14:53227"
    back = t.failure(decap, 0, "RTR", "native-forward")
    assert back is not None
    last = decode_trace(back[0]).segments[0].paths[-1]  # type: ignore[index]
    assert (last.sr, last.dr) == ("192.0.2.100", "? (not an EID)")
    # The public address is the RTR's only: as an ITR the node names its own RLOC (error
    # returns come back to the first ITR's, and RTRs key NATed clients by it).
    itr = hops(t.encap(Encap(ip_address("192.0.2.6"), 4341, 0, 64, 0, build_data_header(1, 0)
                             + first_packet()), "ITR").payload[8:])[-1]  # fmt: skip
    assert itr["sr"] == "10.0.1.5:40000"


def test_failure_of_an_ipv6_trace_on_an_ipv4_underlay_names_the_ipv4_rloc() -> None:
    msg = TraceMessage(local_port=40000, local_rloc=RLOC, nonce=7)  # type: ignore[arg-type]
    ip = IPv6Header(ip_address("2001:db8:100:1::1"), ip_address("2001:db8:200::1"))
    pkt = build_udp_datagram(UdpDatagram(ip, 40000, 2434, encode_trace(msg)))
    back = tracer().failure(pkt, 0, "ITR", "native-forward")
    assert back is not None and back[1:] == (RLOC, 40000)  # the client is reachable there
    (hop,) = [h for seg in decode_trace(back[0]).segments or () for h in seg.paths]
    assert (hop.sr, hop.dr) == ("192.0.2.2:40000", "? (not an EID)")


def test_held_traces_are_answered_once_when_their_time_is_up() -> None:
    t = tracer()
    a, b = first_packet(40001), first_packet(40002)
    assert t.next_deadline() is None and t.overdue(100.0) == []
    assert t.hold(a, 0, "RTR", 10.0) and t.hold(b, 7, "ITR", 11.0)
    assert t.next_deadline() == 10.0 + TRACE_HOLD
    # Released before its time: forwarded (True), and forgotten.
    assert t.release(b) and not t.release(b)
    assert t.overdue(10.0 + TRACE_HOLD - 0.001) == []
    assert t.overdue(10.0 + TRACE_HOLD) == [(a, 0, "RTR")]
    # Answered: a release afterwards says drop it; nothing is left to answer.
    assert not t.release(a)
    assert t.overdue(1000.0) == [] and t.next_deadline() is None


def test_held_traces_are_bounded() -> None:
    t = tracer()
    for port in range(MAX_HELD_TRACES):
        assert t.hold(first_packet(10000 + port), 0, "RTR", float(port))
    assert not t.hold(first_packet(9999), 0, "RTR", 500.0)  # full: answer it at once
    # Holding one already held again moves its deadline; it takes no more room.
    assert t.hold(first_packet(10000), 0, "RTR", 600.0)
    assert len(t.held) == MAX_HELD_TRACES
    assert t.next_deadline() == 1.0 + TRACE_HOLD
    assert [p for p, _i, _r in t.overdue(599.0 + TRACE_HOLD)] == [
        first_packet(10000 + port) for port in range(1, MAX_HELD_TRACES)
    ]
    assert t.overdue(600.0 + TRACE_HOLD) == [(first_packet(10000), 0, "RTR")]
