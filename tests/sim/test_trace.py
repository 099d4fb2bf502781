"""LISP-Trace (``ltr``) through the harness: a round trip between two sites, with each hop's
record; and, from behind the NAT, a trace the RTR cannot forward returned to the client through
the NAT (the RTR learned where the client is from its announcement to port 2434: the node's
:class:`~lispd.node.actions.ReturnTrace` action)."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address

from lispd.cli.ltr import accept_reply, build_first_packet, exit_status
from lispd.wire.trace import TraceMessage
from tests.sim.network import WALL_CLOCK_START
from tests.sim.packets import udp_packet
from tests.sim.plan import H1, H2, NAT_PUBLIC, RTR, XTR1, XTR1_PRIVATE
from tests.sim.test_nat import world as nat_world
from tests.sim.worlds import two_sites

CLIENT_PORT = 41000
NONCE = 0x5157AB


def hops(msg: TraceMessage) -> list[list[tuple[str, str, str, str]]]:
    """(role, node, sr, dr) of every record, per direction."""
    return [[(hop.node, hop.hn, hop.sr, hop.dr) for hop in seg.paths] for seg in msg.segments or ()]


def test_a_trace_goes_there_and_back_with_every_hop_recorded() -> None:
    w = two_sites()
    net = w.net
    net.advance(1.0)
    probe = build_first_packet(CLIENT_PORT, IPv4Address(XTR1), NONCE)
    for _ in range(2):  # the first one waits for the mapping, the second finds it
        net.inject("xtr1", udp_packet(H1, H2, CLIENT_PORT, 2434, probe))
        net.settle()
    legs = [d for d in net.datagrams("data") if not d.control_in_data]
    assert [d.sender for d in legs] == ["xtr1", "xtr2"] * 2
    replies = [p for p in w.xtr1.delivered if p.dport == CLIENT_PORT]
    assert len(replies) == 2
    for i, reply in enumerate(replies):
        out, ret = legs[2 * i], legs[2 * i + 1]
        assert (str(reply.src), str(reply.dst), reply.sport) == (H2, H1, 2434)
        msg = accept_reply(reply.payload, NONCE)
        assert msg is not None and exit_status(msg) == 0
        there, back = hops(msg)
        assert [(h[0], h[1]) for h in there] == [("ITR", "xtr1"), ("ETR", "xtr2")]
        assert [(h[0], h[1]) for h in back] == [("ITR", "xtr2"), ("ETR", "xtr1")]
        # Each record names the outer addresses of its leg; the ITR adds the client's port.
        # (the ETR the outer source port too, when it is not 4341).
        assert there[0][2:] == (f"{out.src}:{CLIENT_PORT}", str(out.dst))
        assert there[1][2:] == (f"{out.src}:{out.sport}", str(out.dst))
        assert back[0][2:] == (str(ret.src), str(ret.dst))
        assert back[1][2:] == (f"{ret.src}:{ret.sport}", str(ret.dst))
        # Timestamps follow the fake clock (as Unix time).
        stamps = [h.encap_ts or h.decap_ts or 0 for seg in msg.segments or () for h in seg.paths]
        assert stamps == sorted(stamps)
        assert (
            stamps[0] > WALL_CLOCK_START
            and stamps[-1] <= WALL_CLOCK_START + net.now - net.start_time
        )
    assert w.xtr1.packets("trace.held") == 1
    assert w.xtr2.packets("trace.etr") == 2 and w.xtr1.packets("trace.etr") == 2


def test_an_rtr_returns_a_failed_trace_through_the_nat() -> None:
    net, nat, _ms, rtr, xtr1, _xtr2 = nat_world()
    inbox = net.listen(XTR1_PRIVATE, CLIENT_PORT)  # the ltr client's socket on xtr1
    probe = build_first_packet(CLIENT_PORT, IPv4Address(XTR1_PRIVATE), NONCE)
    # ltr behind a NAT announces itself to the RTR first (the same bytes, to port 2434) ...
    net.send_from("xtr1", CLIENT_PORT, RTR, 2434, probe)
    # ... then traces a destination in the EID space that nobody registered.
    net.inject("xtr1", udp_packet(H1, "198.51.100.100", CLIENT_PORT, 2434, probe))
    net.settle()

    assert rtr.packets("trace.nat-client") == 1 and rtr.packets("trace.returned") == 1
    assert len(inbox) == 1
    back = inbox[0]
    assert (str(back.src), back.sport) == (RTR, 2434)  # through the client's NAT mapping
    msg = accept_reply(back.payload, NONCE)
    assert msg is not None and exit_status(msg) == 2
    (there,) = hops(msg)
    public_port = nat.mappings()[(ip_address(XTR1_PRIVATE), 4341)]
    assert there == [
        ("ITR", "xtr1", f"{XTR1_PRIVATE}:{CLIENT_PORT}", RTR),
        ("RTR", "rtr", f"{NAT_PUBLIC}:{public_port}", RTR),  # it came through the NAT
        ("RTR", "rtr", RTR, "? (not an EID)"),
    ]
    assert rtr.drops() == {"native-forward-no-petr": 1}
    assert not [p for p in xtr1.delivered if p.dport == CLIENT_PORT]
