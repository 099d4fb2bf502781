"""The node-side LISP-Trace glue: which record a node stamps, with what probe data, and where a
trace that cannot go on is sent back."""

from __future__ import annotations

from ipaddress import ip_address

from lispd.dataplane.outputs import Encap
from lispd.dataplane.trace import stamp_encap
from lispd.dataplane.tracing import Tracer
from lispd.fastpath.header import build_header
from lispd.wire.ip import IPv4Header, UdpDatagram, build_udp_datagram, parse_udp_datagram
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
    out = Encap(ip_address("192.0.2.6"), 4341, 0, 64, 0, build_header(1, 5) + pkt)
    stamped = tracer(([0.0012, 0.002], ["1/1", "1/2"])).encap(out, "ITR")
    assert stamped.payload[:8] == out.payload[:8]
    (hop,) = hops(stamped.payload[8:])
    assert hop["n"] == "ITR" and hop["sr"] == "192.0.2.2:40000" and hop["dr"] == "192.0.2.6"
    assert hop["rtts"] == (0.001, 0.002, -1) and hop["hops"] == ("1/1", "1/2", "?/?")


def test_encap_to_a_translated_port_and_without_probe_data() -> None:
    out = Encap(ip_address("192.0.2.14"), 56829, 0, 64, 0, build_header(1, 0) + first_packet())
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
