"""Unit tests of lispd.control.nat: the xTR side of NAT traversal.

A fake clock (plain floats), a counting nonce source, and Map-Server answers built from
lispd.wire (decode the Info-Request, answer with an Info-Reply through the wire codec), or from
the real InfoResponder, instead of sockets.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lispd.control.infoserver import InfoResponder
from lispd.control.nat import (
    INFO_TTL,
    NAT_RTR_PRIORITY,
    RECENT_NONCES,
    NatClient,
    NatStatus,
    nat_record,
)
from lispd.control.outputs import SendControl, SendData
from lispd.wire.address import (
    NO_ADDRESS,
    Address,
    DistinguishedName,
    InstanceIdAddress,
    NatTraversalAddress,
)
from lispd.wire.data import DATA_HEADER_LEN, IID_CONTROL, decode_data_header, read_data_header
from lispd.wire.info import InfoMessage, decode_info, encode_info
from lispd.wire.records import EidRecord, Locator

IPAddress = IPv4Address | IPv6Address

LOCAL4 = IPv4Address("192.0.2.130")  # private side of the NAT
LOCAL6 = IPv6Address("2001:db8:1::1")
GLOBAL4 = IPv4Address("192.0.2.5")  # the NAT's outside address
GLOBAL4B = IPv4Address("192.0.2.6")  # ... after the NAT was renumbered
MS4 = IPv4Address("192.0.2.9")
MS4B = IPv4Address("192.0.2.10")
MS6 = IPv6Address("2001:db8::9")
RTR_A = IPv4Address("192.0.2.13")
RTR_B = IPv4Address("192.0.2.17")
RTR_C = IPv4Address("192.0.2.21")
RTR6 = IPv6Address("2001:db8::d")
EID4 = (0, IPv4Network("198.51.100.0/28"))
EID6 = (7, IPv6Network("2001:db8:100:1::/64"))
START = 0x1000
INTERVAL = 60.0
KEEPALIVE = 15.0


def counting_rng(start: int = START) -> Callable[[], int]:
    counter = itertools.count(start)
    return lambda: next(counter)


def make(
    map_servers: Sequence[IPAddress] = (MS4,),
    local: Sequence[IPAddress] = (LOCAL4,),
    eids: Sequence[tuple[int, IPv4Network | IPv6Network]] = (EID4, EID6),
    info_interval: float = INTERVAL,
    keepalive_interval: float = KEEPALIVE,
) -> NatClient:
    return NatClient(map_servers, local, eids, info_interval, keepalive_interval, counting_rng())


def request_of(send: SendControl | SendData) -> InfoMessage:
    """The Info-Request in ``send``: a bare control message to 4342, or behind a data header
    (instance-ID 0xFFFFFF) to 4341."""
    if isinstance(send, SendData):
        assert send.port == 4341
        assert read_data_header(send.payload) == (IID_CONTROL, 0)
        message = decode_info(send.payload[DATA_HEADER_LEN:])
    else:
        assert isinstance(send, SendControl)
        assert send.port == 4342
        message = decode_info(send.payload)
    assert not message.reply
    return message


def reply_to(
    send: SendControl | SendData,
    global_rloc: Address = GLOBAL4,
    rtrs: tuple[Address, ...] = (RTR_A,),
    etr_port: int = 50000,
    nonce: int | None = None,
    address: Address | None = None,
) -> InfoMessage:
    """What a Map-Server answers to ``send``, through the wire codec."""
    request = request_of(send)
    if address is None:
        address = NatTraversalAddress(4342, etr_port, global_rloc, send.dst, NO_ADDRESS, rtrs)
    reply = InfoMessage(
        nonce=request.nonce if nonce is None else nonce,
        reply=True,
        ttl=request.ttl,
        eid=request.eid,
        eid_mask_len=request.eid_mask_len,
        address=address,
    )
    return decode_info(encode_info(reply))


def discover(
    client: NatClient,
    now: float,
    global_rloc: Address = GLOBAL4,
    rtrs: tuple[Address, ...] = (RTR_A,),
) -> NatStatus | None:
    """Ask at ``now`` and answer every request at once."""
    status = None
    for send in client.on_timer(now):
        if isinstance(send, SendControl):
            got = client.on_info_reply(reply_to(send, global_rloc, rtrs), send.dst, now)
            status = got or status
    return status


def sends_between(client: NatClient, start: float, end: float) -> list[tuple[float, object]]:
    """Drive the client by its own deadlines from ``start`` to ``end`` (nothing answered)."""
    out: list[tuple[float, object]] = []
    t = start
    while True:
        deadline = client.next_deadline()
        assert deadline is not None
        t = max(t, deadline)
        if t > end:
            return out
        out += [(t, s) for s in client.on_timer(t)]


# --- the Info-Request on the wire -------------------------------------------------------------


def test_info_request_to_a_map_server() -> None:
    c = make()
    assert c.next_deadline() == -math.inf  # never asked: at once
    (send,) = c.on_timer(0.0)
    assert type(send) is SendControl
    assert (send.dst, send.port) == (MS4, 4342)
    assert send.payload[0] == 0x70  # type 7, R clear
    req = request_of(send)
    assert req == InfoMessage(
        nonce=START,
        reply=False,
        key_id=0,
        auth_data=b"",
        ttl=INFO_TTL,
        eid=IPv4Address("198.51.100.0"),
        eid_mask_len=28,
        address=NO_ADDRESS,
    )
    assert INFO_TTL == 1440
    assert c.stats["requests-sent"] == 1


def test_eid_prefix_of_the_map_servers_family_with_its_instance_id() -> None:
    c = make(map_servers=(MS4, MS6), local=(LOCAL4, LOCAL6))
    to4, to6 = c.on_timer(0.0)
    assert (to4.dst, to6.dst) == (MS4, MS6)
    assert (request_of(to4).eid, request_of(to4).eid_mask_len) == (IPv4Address("198.51.100.0"), 28)
    req6 = request_of(to6)
    assert req6.eid == InstanceIdAddress(7, IPv6Address("2001:db8:100:1::"))
    assert req6.eid_mask_len == 64
    assert request_of(to4).nonce != req6.nonce


def test_eid_prefix_falls_back_to_another_family_then_to_none() -> None:
    c = make(map_servers=(MS6,), local=(LOCAL6,), eids=((9, IPv4Network("198.51.100.16/28")),))
    req = request_of(c.on_timer(0.0)[0])
    assert (req.eid, req.eid_mask_len) == (InstanceIdAddress(9, IPv4Address("198.51.100.16")), 28)
    c = make(eids=())
    req = request_of(c.on_timer(0.0)[0])
    assert (req.eid, req.eid_mask_len) == (NO_ADDRESS, 0)


def test_map_servers_of_a_family_without_local_rloc_are_skipped() -> None:
    c = make(map_servers=(MS6, MS4, MS4), local=(LOCAL4,))
    assert c.map_servers == (MS4,)
    assert c.skipped_map_servers == (MS6,)
    assert [s.dst for s in c.on_timer(0.0)] == [MS4]
    c = make(map_servers=(MS6,), local=(LOCAL4,))
    assert c.next_deadline() is None
    assert c.on_timer(0.0) == []
    assert c.states(0.0)["skipped-map-servers"] == [str(MS6)]


def test_constructor_refuses_bad_arguments() -> None:
    with pytest.raises(TypeError):
        NatClient(["192.0.2.9"], [LOCAL4], [EID4], 60, 15, counting_rng())  # type: ignore[list-item]
    with pytest.raises(TypeError):
        NatClient([MS4], ["192.0.2.1"], [EID4], 60, 15, counting_rng())  # type: ignore[list-item]
    for interval in (0, -1.0, math.inf, math.nan, True):
        with pytest.raises(ValueError):
            NatClient([MS4], [LOCAL4], [EID4], interval, 15, counting_rng())
        with pytest.raises(ValueError):
            NatClient([MS4], [LOCAL4], [EID4], 60, interval, counting_rng())
    with pytest.raises(ValueError, match="instance-ID"):
        NatClient([MS4], [LOCAL4], [(1 << 24, EID4[1])], 60, 15, counting_rng())
    with pytest.raises(ValueError):
        NatClient([MS4], [LOCAL4], [(0, "198.51.100.1/24")], 60, 15)  # type: ignore[list-item]


# --- retries and cadence ----------------------------------------------------------------------


def test_retries_back_off_until_the_interval_then_stay_there() -> None:
    c = make(info_interval=20.0)
    times = [t for t, _ in sends_between(c, 0.0, 100.0)]
    assert times == [0.0, 1.0, 3.0, 7.0, 15.0, 31.0, 51.0, 71.0, 91.0]
    assert c.status == NatStatus() and not c.status.discovered


def test_nothing_is_sent_before_the_deadline() -> None:
    c = make()
    c.on_timer(0.0)
    assert c.next_deadline() == 1.0
    assert c.on_timer(0.99) == []
    assert len(c.on_timer(1.0)) == 1
    assert c.next_deadline() == 3.0
    assert len(c.on_timer(3.5)) == 1  # called late: the next retry counts from now
    assert c.next_deadline() == 7.5


def test_short_interval_caps_the_first_retry() -> None:
    c = make(info_interval=0.5)
    times = [t for t, _ in sends_between(c, 0.0, 2.0)]
    assert times == [0.0, 0.5, 1.0, 1.5, 2.0]


def test_after_an_answer_every_interval_and_no_return_to_backoff() -> None:
    c = make()
    (send,) = c.on_timer(0.0)
    c.on_timer(1.0)  # a retry went out before the answer to the first request came
    assert c.on_info_reply(reply_to(send, rtrs=()), MS4, 1.2) is not None
    assert c.next_deadline() == 1.0 + INTERVAL  # from the last request sent
    behind = c.status
    # From here on the Map-Server is silent: requests every interval, status kept.
    requests = [t for t, s in sends_between(c, 1.2, 400.0) if isinstance(s, SendControl)]
    assert requests == [61.0, 121.0, 181.0, 241.0, 301.0, 361.0]
    assert c.status == behind and c.status.behind_nat


def test_map_servers_are_scheduled_independently() -> None:
    c = make(map_servers=(MS4, MS4B))
    first = c.on_timer(0.0)
    c.on_info_reply(reply_to(first[0]), MS4, 0.1)  # only MS4 answers
    sends = sends_between(c, 0.1, 8.0)
    assert [(t, s.dst) for t, s in sends if isinstance(s, SendControl)] == [
        (1.0, MS4B),
        (3.0, MS4B),
        (7.0, MS4B),
    ]


# --- nonces -----------------------------------------------------------------------------------


def test_refused_replies_are_counted() -> None:
    c = make()
    (send,) = c.on_timer(0.0)
    assert c.on_info_reply(reply_to(send, nonce=0xDEAD), MS4, 0.1) is None
    assert c.drops == {"info-reply-unknown-nonce": 1}
    request = request_of(send)
    assert c.on_info_reply(request, MS4, 0.1) is None  # an Info-Request, not a reply
    assert c.drops["info-reply-not-reply"] == 1
    assert c.status == NatStatus()
    # The genuine answer still counts, once.
    assert c.on_info_reply(reply_to(send), MS4, 0.2) is not None
    assert c.on_info_reply(reply_to(send), MS4, 0.3) is None
    assert c.drops["info-reply-unknown-nonce"] == 2
    assert c.stats["replies"] == 1


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        (NO_ADDRESS, "info-reply-bad-address"),
        (GLOBAL4, "info-reply-bad-address"),
        (NatTraversalAddress(4342, 1, NO_ADDRESS, MS4, NO_ADDRESS), "info-reply-bad-global-rloc"),
        (NatTraversalAddress(4342, 1, RTR6, MS4, NO_ADDRESS), "info-reply-bad-global-rloc"),
        (
            NatTraversalAddress(4342, 1, DistinguishedName("nat"), MS4, NO_ADDRESS),
            "info-reply-bad-global-rloc",
        ),
    ],
)
def test_replies_without_a_usable_nat_lcaf_are_refused(address: Address, reason: str) -> None:
    c = make()
    (send,) = c.on_timer(0.0)
    assert c.on_info_reply(reply_to(send, address=address), MS4, 0.1) is None
    assert c.drops == {reason: 1}
    assert c.status == NatStatus()
    assert c.next_deadline() == 1.0  # still unanswered: still backing off
    # The nonce was used up by the refused reply.
    assert c.on_info_reply(reply_to(send), MS4, 0.2) is None
    assert c.drops["info-reply-unknown-nonce"] == 1


def test_a_late_answer_to_a_recent_request_counts_an_old_one_does_not() -> None:
    c = make()
    sends = [s for _, s in sends_between(c, 0.0, 200.0)]  # 0, 1, 3, 7, 15, 31, 63, 123, 183
    assert len(sends) == RECENT_NONCES + 1  # the first one is no longer remembered
    assert c.on_info_reply(reply_to(sends[0]), MS4, 1000.0) is None
    assert c.drops == {"info-reply-unknown-nonce": 1}
    status = c.on_info_reply(reply_to(sends[1]), MS4, 1000.0)
    assert status is not None and status.discovered


def test_nonces_are_64_bit_and_unique_among_outstanding_ones() -> None:
    values = iter([(1 << 64) + 5, 5, 5, 6])
    c = NatClient([MS4, MS4B], [LOCAL4], [EID4], 60, 15, lambda: next(values))
    a, b = c.on_timer(0.0)
    assert request_of(a).nonce == 5  # masked to 64 bits
    assert request_of(b).nonce == 6  # 5 is outstanding: drawn again


def test_a_stuck_nonce_source_is_an_error() -> None:
    c = NatClient([MS4], [LOCAL4], [EID4], 60, 15, lambda: 42)
    c.on_timer(0.0)
    with pytest.raises(RuntimeError):
        c.on_timer(1.0)


def test_reply_from_another_address_of_the_map_server_is_accepted() -> None:
    c = make()
    (send,) = c.on_timer(0.0)
    assert c.on_info_reply(reply_to(send), MS4B, 0.1) is not None
    assert c.stats["replies-from-other-address"] == 1 and not c.drops


# --- behind NAT or not ------------------------------------------------------------------------


def test_not_behind_nat_when_the_global_rloc_is_ours() -> None:
    c = make()
    status = discover(c, 0.0, global_rloc=LOCAL4, rtrs=(RTR_A, RTR_B))
    assert status == NatStatus(
        behind_nat=False, global_rloc=LOCAL4, rtrs=(RTR_A, RTR_B), discovered=True
    )
    assert c.status == status
    assert c.next_deadline() == INTERVAL  # no keepalives
    sends = sends_between(c, 0.0, 200.0)
    assert sends and all(type(s) is SendControl for _, s in sends)
    assert c.stats["keepalives-sent"] == 0


def test_behind_nat_when_the_global_rloc_is_not_ours() -> None:
    c = make(local=(LOCAL4, IPv4Address("192.0.2.131")))
    status = discover(c, 0.0, global_rloc=GLOBAL4, rtrs=(RTR_A, RTR_B))
    assert status == NatStatus(
        behind_nat=True, global_rloc=GLOBAL4, rtrs=(RTR_A, RTR_B), discovered=True
    )
    assert c.next_deadline() == 0.0  # keepalives due at once
    # A second local RLOC of the family is "ours" too.
    c = make(local=(LOCAL4, IPv4Address("192.0.2.131")))
    status = discover(c, 0.0, global_rloc=IPv4Address("192.0.2.131"))
    assert status is not None and not status.behind_nat


def test_same_answer_again_is_no_change() -> None:
    c = make()
    assert discover(c, 0.0) is not None
    assert discover(c, INTERVAL) is None
    assert c.stats["status-changes"] == 1


def test_leaving_and_reentering_nat() -> None:
    c = make()
    assert discover(c, 0.0).behind_nat  # type: ignore[union-attr]
    c.on_timer(0.0)  # keepalive
    status = discover(c, INTERVAL, global_rloc=LOCAL4)  # e.g. the NAT was removed
    assert status == NatStatus(False, LOCAL4, (RTR_A,), True)
    assert c.next_deadline() == 2 * INTERVAL  # keepalives stopped
    assert c.states(INTERVAL)["keepalives"] == []
    status = discover(c, 2 * INTERVAL, global_rloc=GLOBAL4)
    assert status is not None and status.behind_nat
    assert c.next_deadline() == 2 * INTERVAL  # keepalives at once again


def test_end_to_end_with_the_info_responder() -> None:
    """The Map-Server sees the NAT's outside address and port, and answers to them."""
    ms = InfoResponder([MS4, MS6], [RTR_A, RTR6])
    c = make()
    (send,) = c.on_timer(0.0)
    request = decode_info(send.payload)
    (answer,) = ms.on_info_request(request, GLOBAL4, 61001, 0.05)  # after translation
    assert (answer.dst, answer.port) == (GLOBAL4, 61001)  # back through the NAT
    status = c.on_info_reply(decode_info(answer.payload), MS4, 0.1)
    # The IPv6 RTR is of no use to an IPv4-only xTR.
    assert status == NatStatus(True, GLOBAL4, (RTR_A,), True)
    assert c.stats["rtrs-ignored"] == 1
    assert c.states(0.1)["map-servers"][0]["translated-port"] == 61001  # type: ignore[index]


# --- RTRs and keepalives ----------------------------------------------------------------------


def test_keepalive_payload_is_a_data_header_then_an_info_request() -> None:
    c = make()
    discover(c, 0.0, rtrs=(RTR_A,))
    # A round: one keepalive per database EID-prefix, the RTR family's first (so that an RTR
    # with xTRs sharing our NAT address knows which prefixes are ours).
    ka, ka_other = c.on_timer(0.0)
    for sent in (ka, ka_other):
        assert type(sent) is SendData
        assert (sent.dst, sent.port) == (RTR_A, 4341)
        header = decode_data_header(sent.payload[:DATA_HEADER_LEN])
        assert header.iid == IID_CONTROL == 0xFFFFFF
        req = request_of(sent)
        assert header.nonce == req.nonce & 0xFFFFFF
        assert req.ttl == INFO_TTL and req.key_id == 0 and req.address == NO_ADDRESS
    req = request_of(ka)
    assert (req.eid, req.eid_mask_len) == (IPv4Address("198.51.100.0"), 28)
    other = request_of(ka_other)
    assert (other.eid, other.eid_mask_len) == (
        InstanceIdAddress(7, IPv6Address("2001:db8:100:1::")),
        64,
    )
    assert request_of(ka).nonce != other.nonce
    assert c.stats["keepalives-sent"] == 2


def test_keepalive_cadence_while_behind_nat() -> None:
    c = make()
    discover(c, 0.0, rtrs=(RTR_A, RTR_B))
    sends = sends_between(c, 0.0, 100.0)
    keepalives = [(t, s.dst) for t, s in sends if type(s) is SendData]
    assert keepalives == [
        (t, rtr)
        for t in (0.0, 15.0, 30.0, 45.0, 60.0, 75.0, 90.0)
        for rtr in (RTR_A, RTR_B)
        for _prefix in (EID4, EID6)
    ]
    requests = [t for t, s in sends if type(s) is SendControl]
    assert requests == [60.0]  # the Map-Server still every interval
    assert all(request_of(s).nonce for _, s in sends)


def test_rtr_list_changes() -> None:
    c = make(keepalive_interval=25.0)
    assert discover(c, 0.0, rtrs=(RTR_A, RTR_B)).rtrs == (RTR_A, RTR_B)  # type: ignore[union-attr]
    keepalives = [(t, s.dst) for t, s in sends_between(c, 0.0, 59.0) if type(s) is SendData]
    assert keepalives == [
        (t, rtr) for t in (0.0, 25.0, 50.0) for rtr in (RTR_A, RTR_B) for _prefix in (EID4, EID6)
    ]
    status = discover(c, 60.0, rtrs=(RTR_B, RTR_C))
    assert status == NatStatus(True, GLOBAL4, (RTR_B, RTR_C), True)
    # C is new: at once; B keeps its cadence; A is no longer kept alive.
    assert c.next_deadline() == 60.0
    assert [s.dst for s in c.on_timer(60.0)] == [RTR_C, RTR_C]
    keepalives = [(t, s.dst) for t, s in sends_between(c, 60.0, 100.0) if type(s) is SendData]
    assert keepalives == [
        (t, r) for t, r in ((75.0, RTR_B), (85.0, RTR_C), (100.0, RTR_B)) for _ in "46"
    ]
    # An empty list: behind NAT, nobody to keep alive.
    status = discover(c, 120.0, rtrs=())
    assert status == NatStatus(True, GLOBAL4, (), True)
    assert all(type(s) is SendControl for _, s in sends_between(c, 120.1, 400.0))


def test_rtrs_that_cannot_be_reached_are_ignored() -> None:
    c = make(local=(LOCAL4,))
    status = discover(c, 0.0, rtrs=(RTR6, DistinguishedName("rtr"), RTR_A, RTR_A))
    assert status is not None and status.rtrs == (RTR_A,)
    assert c.stats["rtrs-ignored"] == 2
    c = make(map_servers=(MS4,), local=(LOCAL4, LOCAL6))
    status = discover(c, 0.0, rtrs=(RTR6, RTR_A))
    assert status is not None and status.rtrs == (RTR6, RTR_A)
    ka6, _, ka4, _ = c.on_timer(0.0)
    assert (ka6.dst, ka4.dst) == (RTR6, RTR_A)
    req6 = request_of(ka6)  # the RTR's family picks the EID-prefix
    assert req6.eid == InstanceIdAddress(7, IPv6Address("2001:db8:100:1::"))


def test_a_new_global_rloc_refreshes_every_rtr_at_once() -> None:
    c = make(keepalive_interval=25.0)
    discover(c, 0.0, rtrs=(RTR_A, RTR_B))
    sends_between(c, 0.0, 59.0)  # keepalives at 0, 25, 50
    status = discover(c, 60.0, global_rloc=GLOBAL4B, rtrs=(RTR_A, RTR_B))
    assert status == NatStatus(True, GLOBAL4B, (RTR_A, RTR_B), True)
    assert c.next_deadline() == 60.0  # not 75
    assert [s.dst for s in c.on_timer(60.0)] == [RTR_A, RTR_A, RTR_B, RTR_B]
    assert c.next_deadline() == 85.0


def test_a_silent_map_server_keeps_the_status_and_the_keepalives() -> None:
    c = make()
    status = discover(c, 0.0)
    sends = sends_between(c, 0.0, 1000.0)
    assert c.status == status
    assert sum(1 for _, s in sends if type(s) is SendData) == 2 * (1000 // 15 + 1)
    assert c.states(1000.0)["map-servers"][0]["last-reply-ago"] == 1000.0  # type: ignore[index]


def test_an_rtrs_answer_to_a_keepalive_changes_nothing() -> None:
    c = make()
    discover(c, 0.0)
    ka, _ = c.on_timer(0.0)
    rtr_view = reply_to(ka, global_rloc=GLOBAL4, rtrs=())
    assert c.on_info_reply(rtr_view, RTR_A, 0.1) is None
    assert c.stats["keepalive-replies"] == 1 and not c.drops
    assert c.status.rtrs == (RTR_A,)
    (row,) = c.states(1.1)["keepalives"]  # type: ignore[misc]
    assert row["last-reply-ago"] == 1.0
    assert c.on_info_reply(rtr_view, RTR_A, 0.2) is None  # a duplicate
    assert c.drops == {"info-reply-unknown-nonce": 1}


# --- several Map-Servers ----------------------------------------------------------------------


def test_status_combines_the_map_servers_answers() -> None:
    c = make(map_servers=(MS6, MS4), local=(LOCAL4, LOCAL6))
    to6, to4 = c.on_timer(0.0)
    status = c.on_info_reply(reply_to(to6, global_rloc=LOCAL6, rtrs=(RTR6,)), MS6, 0.1)
    assert status == NatStatus(False, LOCAL6, (RTR6,), True)
    status = c.on_info_reply(reply_to(to4, global_rloc=GLOBAL4, rtrs=(RTR_A,)), MS4, 0.2)
    assert status == NatStatus(True, GLOBAL4, (RTR6, RTR_A), True)
    # MS6 answering the same again does not flip anything back.
    (to6,) = [s for s in c.on_timer(INTERVAL) if type(s) is SendControl and s.dst == MS6]
    assert c.on_info_reply(reply_to(to6, global_rloc=LOCAL6, rtrs=(RTR6,)), MS6, 60.1) is None
    assert c.status.behind_nat


# --- show -------------------------------------------------------------------------------------


def test_states_for_show_nat() -> None:
    c = make(map_servers=(MS4, MS6), local=(LOCAL4,))
    before = c.states()
    json.dumps(before)
    assert before["discovered"] is False and before["map-servers"][0]["answered"] is False  # type: ignore[index]
    (send,) = c.on_timer(10.0)
    c.on_info_reply(reply_to(send, rtrs=(RTR_A,), etr_port=61000), MS4, 10.25)
    c.on_timer(10.25)
    state = c.states(12.0)
    json.dumps(state)
    assert state == {
        "discovered": True,
        "behind-nat": True,
        "global-rloc": "192.0.2.5",
        "rtrs": ["192.0.2.13"],
        "local-rlocs": ["192.0.2.130"],
        "info-interval": 60.0,
        "keepalive-interval": 15.0,
        "map-servers": [
            {
                "address": "192.0.2.9",
                "answered": True,
                "last-sent-ago": 2.0,
                "last-reply-ago": 1.75,
                "last-rtt": 0.25,
                "next-send-in": 58.0,
                "requests-sent": 1,
                "replies": 1,
                "outstanding": 0,
                "global-rloc": "192.0.2.5",
                "translated-port": 61000,
                "behind-nat": True,
                "rtrs": ["192.0.2.13"],
            }
        ],
        "skipped-map-servers": ["2001:db8::9"],
        "keepalives": [
            {
                "rtr": "192.0.2.13",
                "keepalives-sent": 2,  # one per EID-prefix
                "last-sent-ago": 1.75,
                "last-reply-ago": None,
                "next-send-in": 13.25,
            }
        ],
        "drops": {},
        "stats": {"requests-sent": 1, "replies": 1, "status-changes": 1, "keepalives-sent": 2},
    }
    assert c.states()["map-servers"][0]["last-reply-ago"] == 0.0  # type: ignore[index]


# --- robustness -------------------------------------------------------------------------------

_ADDRESSES = st.sampled_from([GLOBAL4, LOCAL4, LOCAL6, RTR_A, RTR6, NO_ADDRESS])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["answer", "timer", "junk"]),
            st.integers(0, 5),
            _ADDRESSES,
            st.lists(_ADDRESSES, max_size=3),
            st.floats(0.0, 30.0),
        ),
        max_size=40,
    )
)
def test_random_inputs_keep_the_invariants(ops: list) -> None:
    c = make(map_servers=(MS4, MS6), local=(LOCAL4, LOCAL6), info_interval=20.0)
    now = 0.0
    sent: list[SendControl | SendData] = []
    for kind, pick, global_rloc, rtrs, step in ops:
        now += step
        if kind == "timer":
            sends = c.on_timer(now)
            for s in sends:
                request_of(s)  # every send decodes
            assert c.status.behind_nat or not any(type(s) is SendData for s in sends)
            sent += sends
            deadline = c.next_deadline()
            assert deadline is not None and deadline > now  # no busy loop
        elif sent:
            target = sent[pick % len(sent)]
            nonce = None if kind == "answer" else pick
            before = c.status
            status = c.on_info_reply(
                reply_to(target, global_rloc, tuple(rtrs), nonce=nonce), target.dst, now
            )
            assert status is None or (status == c.status != before)
        s = c.status
        assert s.discovered or s == NatStatus()
        assert s.global_rloc is None or s.global_rloc.version in (4, 6)
        assert len(set(s.rtrs)) == len(s.rtrs)
        state = c.states(now)
        json.dumps(state)
        servers = state["map-servers"]
        assert isinstance(servers, list)
        assert s.behind_nat == any(ms["behind-nat"] for ms in servers)
        assert s.behind_nat == (s.global_rloc not in (None, LOCAL4, LOCAL6))


def test_nat_record_registers_the_translated_rloc_and_the_rtrs() -> None:
    private, glob, rtr = (
        IPv4Address("192.0.2.134"),
        IPv4Address("192.0.2.10"),
        IPv4Address("192.0.2.100"),
    )
    record = EidRecord(
        IPv4Address("198.51.100.0"), 28, (Locator(private, 1, 100, local=True),), ttl=1440
    )
    status = NatStatus(behind_nat=True, global_rloc=glob, rtrs=(rtr,), discovered=True)
    out = nat_record(record, status)
    assert [(loc.address, loc.priority, loc.local) for loc in out.locators] == [
        (glob, 1, False),
        (rtr, NAT_RTR_PRIORITY, False),
    ]
    assert (out.eid, out.mask_len, out.ttl) == (record.eid, 28, 1440)
