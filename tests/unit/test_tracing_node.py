"""LISP-Trace through a :class:`lispd.node.Node` (bytes and a clock the test moves in, actions
out, every send succeeding): a trace whose destination has no mapping yet is held while it is
resolved, like a data packet, and follows the mapping on its first try; a destination the
mapping system calls no EID ends the trace "not an EID" (even with a PETR for the data); a
trace still waiting after ``TRACE_HOLD`` seconds is answered "map-cache miss", once.

The node is the fuzz world's RTR (:data:`tests.fuzz.roles.ROLE_CONFIGS`): RLOC 192.0.2.20,
public 203.0.113.20 (``[rtr] public-rlocs``), Map-Resolver 192.0.2.10, PETR 192.0.2.30.  The
ltr client sits behind a NAT (private RLOC 10.0.0.2, seen as 192.0.2.50).  What the daemon adds
around the node (an RTR reads its port 2434 before it answers) is in ``test_tracing_daemon.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, ip_address

from lispd.config import parse_config
from lispd.dataplane.outputs import Encap
from lispd.dataplane.tracing import TRACE_HOLD, TRACE_PORT, stamp_encap
from lispd.node import Node
from lispd.node.actions import SendDatagram, SendEncap
from lispd.wire.control import decode_control
from lispd.wire.data import DATA_HEADER_LEN, build_data_header
from lispd.wire.ecm import EncapsulatedControl
from lispd.wire.ip import IPv4Header, UdpDatagram, build_udp_datagram, parse_udp_datagram
from lispd.wire.mapreply import MapReply, encode_map_reply
from lispd.wire.maprequest import MapRequest
from lispd.wire.records import Action, EidRecord, Locator
from lispd.wire.trace import TraceHop, TraceMessage, decode_trace, encode_trace
from tests.fuzz.roles import ROLE_CONFIGS
from tests.unit.socketless import perform

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


class Driven:
    """A started node of the fuzz world's ``role`` on a clock the test moves; after every
    input what the node asked for is performed (:func:`perform`: every send succeeds) and
    kept: the datagrams until :meth:`take_unanswered`, the encapsulations in
    ``encapsulated``."""

    def __init__(self, role: str) -> None:
        self.now = 1000.0
        self.node = Node(parse_config(ROLE_CONFIGS[role]), self.now)
        self.node.start(self.now)
        perform(self.node)  # what start-up sent: registrations, probes
        self.unanswered: list[SendDatagram] = []
        self.encapsulated: list[Encap] = []

    def _perform(self) -> None:
        for action in perform(self.node):
            if isinstance(action, SendDatagram):
                self.unanswered.append(action)
            elif isinstance(action, SendEncap):
                self.encapsulated.append(action.encap)

    def data(self, payload: bytes, src: str, sport: int) -> None:
        """A datagram to the data port 4341."""
        self.node.data_datagram(payload, 64, 0, src, sport, self.now)
        self._perform()

    def control(self, data: bytes, src: str, sport: int) -> None:
        """A datagram to the control port 4342."""
        self.node.control_datagram(data, 64, src, sport, self.now)
        self._perform()

    def trace(self, payload: bytes, src: str, sport: int) -> None:
        """A datagram to the LISP-Trace port 2434."""
        self.node.trace_datagram(payload, src, sport, self.now)
        self._perform()

    def tun(self, packet: bytes) -> None:
        """A packet the kernel routed into the TUN."""
        self.node.tun_packet(packet, self.now)
        self._perform()

    def timer(self) -> None:
        """Run the node's timer now (early is harmless: every machine checks its own
        deadlines)."""
        self.node.handle_timer(self.now)
        self._perform()

    def take_unanswered(self) -> list[SendDatagram]:
        """The datagrams the node sent since the last call."""
        out, self.unanswered = self.unanswered, []
        return out


def run(role: str, scenario: Callable[[Driven], None]) -> None:
    """Run ``scenario`` on a started node of ``role``: no input may cost an internal error."""
    n = Driven(role)
    scenario(n)
    assert "internal-error" not in n.node.counters.drops


def announce_client(n: Driven) -> None:
    """The ltr client's bare header to the RTR's port 2434, through the NAT."""
    bare = encode_trace(TraceMessage(CLIENT_PORT, CLIENT_RLOC, NONCE))
    n.trace(bare, NAT, NAT_TRACE_PORT)
    assert n.node.counters.packets["trace.nat-client.packets"] == 1


def map_request_nonce(n: Driven, eid: str) -> int:
    """The nonce of the Map-Request for ``eid`` the RTR just sent its Map-Resolver."""
    for sent in n.take_unanswered():
        if sent.via != "control" or str(sent.dst) != MAP_RESOLVER:
            continue
        ecm = decode_control(sent.payload)
        if (
            isinstance(ecm, EncapsulatedControl)
            and isinstance(ecm.message, MapRequest)
            and str(ecm.inner_ip.dst) == eid
        ):
            return ecm.message.nonce
    raise AssertionError(f"no Map-Request for {eid}")


def reply(n: Driven, nonce: int, record: EidRecord) -> None:
    """The Map-Resolver's Map-Reply."""
    data = encode_map_reply(MapReply(nonce=nonce, records=(record,)))
    n.control(data, MAP_RESOLVER, 4342)


def returned(n: Driven) -> list[SendDatagram]:
    """Trace payloads the node sent back to ltr clients since the last look."""
    return [s for s in n.take_unanswered() if s.via == "trace"]


def destination(sent: SendDatagram) -> tuple[str, int]:
    """Where ``sent`` went."""
    return str(sent.dst), sent.port


def test_rtr_holds_a_trace_while_resolving_and_answers_not_an_eid_from_its_public_rloc() -> None:
    def scenario(n: Driven) -> None:
        announce_client(n)
        n.data(from_nated_itr("203.0.113.7"), NAT, NAT_DATA_PORT)
        assert n.node.counters.packets["trace.held.packets"] == 1
        nonce = map_request_nonce(n, "203.0.113.7")
        assert returned(n) == []  # held, not answered "map-cache miss"
        native = EidRecord(IPv4Address("203.0.113.0"), 24, action=Action.NATIVELY_FORWARD)
        reply(n, nonce, native)
        [back] = returned(n)
        # To the client's NAT binding; the trace ends at the RTR, not at its PETR.
        assert destination(back) == (NAT, NAT_TRACE_PORT)
        itr, decap, stop = records(back.payload)
        assert (itr.node, itr.sr) == ("ITR", f"{CLIENT_RLOC}:{CLIENT_PORT}")
        assert (decap.node, decap.sr, decap.dr) == ("RTR", f"{NAT}:{NAT_DATA_PORT}", "192.0.2.20")
        assert (stop.node, stop.sr, stop.dr, stop.hn) == (
            "RTR",
            "203.0.113.20",
            "? (not an EID)",
            "rtr1",
        )
        assert n.encapsulated == []  # nothing went to the PETR
        # Cached now: the next trace is answered at once, without a Map-Request.
        n.data(from_nated_itr("203.0.113.8"), NAT, NAT_DATA_PORT)
        [again] = returned(n)
        assert records(again.payload)[-1].dr == "? (not an EID)"

    run("rtr", scenario)


def test_rtr_trace_follows_the_mapping_resolved_on_its_first_try() -> None:
    def scenario(n: Driven) -> None:
        announce_client(n)
        n.data(from_nated_itr("198.51.100.70"), NAT, NAT_DATA_PORT)
        nonce = map_request_nonce(n, "198.51.100.70")
        site = EidRecord(
            IPv4Address("198.51.100.64"), 28, locators=(Locator(IPv4Address("192.0.2.6")),)
        )
        reply(n, nonce, site)
        assert returned(n) == []
        [out] = n.encapsulated
        assert out.rloc == ip_address("192.0.2.6")
        inner = parse_udp_datagram(out.payload[DATA_HEADER_LEN:], verify_checksum=True)
        *_, decap, encap = records(inner.payload)
        assert (decap.node, decap.sr, decap.dr) == ("RTR", f"{NAT}:{NAT_DATA_PORT}", "192.0.2.20")
        assert (encap.node, encap.sr, encap.dr) == ("RTR", "203.0.113.20", "192.0.2.6")
        assert n.node.tracer.held == {}

    run("rtr", scenario)


def test_rtr_trace_waiting_too_long_is_answered_map_cache_miss_once() -> None:
    def scenario(n: Driven) -> None:
        announce_client(n)
        n.data(from_nated_itr("198.51.100.80"), NAT, NAT_DATA_PORT)
        nonce = map_request_nonce(n, "198.51.100.80")
        n.now += TRACE_HOLD - 0.01
        n.timer()
        assert returned(n) == []
        n.now += 0.01
        n.timer()
        [back] = returned(n)
        assert destination(back) == (NAT, NAT_TRACE_PORT)
        stop = records(back.payload)[-1]
        assert (stop.sr, stop.dr) == ("203.0.113.20", "? (map-cache miss)")
        # The mapping comes late: the trace was answered, it is not sent on as well.
        site = EidRecord(
            IPv4Address("198.51.100.80"), 32, locators=(Locator(IPv4Address("192.0.2.6")),)
        )
        reply(n, nonce, site)
        assert n.encapsulated == [] and returned(n) == []
        assert n.node.counters.drops["trace-answered"] == 1

    run("rtr", scenario)


def test_itr_answers_not_an_eid_instead_of_tracing_through_its_petr() -> None:
    """The fuzz world's xTR maps 203.0.113.0/24 native-forward and has a PETR: lispers.net's
    ITR answers such a trace "not an EID" (and forwards data natively); lispd's too, to the
    client on its own RLOC, while data still goes to the PETR."""

    def scenario(n: Driven) -> None:
        n.tun(client_trace("198.51.100.2", "203.0.113.5"))
        [back] = returned(n)
        assert destination(back) == ("192.0.2.2", CLIENT_PORT)
        [stop] = records(back.payload)
        assert (stop.node, stop.sr, stop.dr, stop.hn) == (
            "ITR",
            f"192.0.2.2:{CLIENT_PORT}",
            "? (not an EID)",
            "xtr1",
        )
        assert n.encapsulated == []
        data = bytearray(client_trace("198.51.100.2", "203.0.113.5"))
        data[22:24] = (5353).to_bytes(2, "big")  # UDP to another port: no trace, just data
        n.tun(bytes(data))
        assert [(o.rloc, o.to_petr) for o in n.encapsulated] == [(ip_address("192.0.2.30"), True)]

    run("xtr", scenario)
