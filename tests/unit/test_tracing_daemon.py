"""LISP-Trace through the real :class:`lispd.daemon.Daemon` (fake sockets and clock, from
``tests.fuzz.harness``): what the shell adds around its node.  An RTR's node asks to answer a
trace (:class:`~lispd.node.actions.ReturnTrace`) and the daemon reads port 2434 first, where
the ltr client behind a NAT announced itself before it sent the trace; the logic of tracing is
in ``test_tracing_node.py``, with the world described there.
"""

from __future__ import annotations

from lispd.dataplane.outputs import Encap
from lispd.mapcache import MapCacheEntry
from lispd.node.actions import SendEncap
from lispd.wire.trace import TraceMessage, encode_trace
from tests.fuzz.harness import FuzzInput, Harness, Sent, new_loop
from tests.unit.test_tracing_node import (
    CLIENT_PORT,
    CLIENT_RLOC,
    NAT,
    NAT_DATA_PORT,
    NAT_TRACE_PORT,
    NONCE,
    from_nated_itr,
    records,
)


def returned(h: Harness) -> list[Sent]:
    """Trace payloads the daemon sent back to ltr clients since the last look."""
    return [s for s in h.take_unanswered() if s.kind == "trace"]


def test_rtr_learns_a_client_announced_but_not_yet_read_before_answering() -> None:
    """The loop may wake for the trace (port 4341) before the client's bare header, sent
    first, is read from port 2434: the RTR reads it before it answers, or the answer would go
    to the client's private address."""

    async def main() -> None:
        h = Harness("rtr")
        h.start()
        encapsulated: list[Encap] = []
        send = h.daemon._send_encap

        def record(action: SendEncap) -> str | None:
            encapsulated.append(action.encap)
            return send(action)

        h.daemon._send_encap = record  # type: ignore[method-assign]
        try:
            h.take_unanswered()  # what start-up sent: registrations, probes
            bare = encode_trace(TraceMessage(CLIENT_PORT, CLIENT_RLOC, NONCE))
            h.trace_sockets[4].push(FuzzInput(bare, NAT, NAT_TRACE_PORT))  # queued, unread
            # A drop mapping: the RTR answers at once, in lispers.net's words.
            h.daemon.node.mapcache.add(MapCacheEntry(0, "198.51.100.32/28", action="drop"))
            h.deliver("data", FuzzInput(from_nated_itr("198.51.100.40"), NAT, NAT_DATA_PORT))
            [back] = returned(h)
            assert (back.dst, back.port) == (NAT, NAT_TRACE_PORT)
            assert records(back.payload)[-1].dr == "? (drop action)"
            assert encapsulated == []
            assert h.daemon.node.counters.packets["trace.nat-client.packets"] == 1
            assert not h.stats.failures, [f.report() for f in h.stats.failures]
        finally:
            h.close()

    loop = new_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
