"""What an operator sees of the control plane: one log line per state change, and rate-limited
DEBUG lines per control message.

The machines run on a fake clock; their records are checked with caplog (level, event, fields
parsed as logfmt), and every line any of these tests emits goes through the real
:class:`~lispd.logfmt.LogfmtFormatter` and must parse (the ``formatted`` fixture).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, ip_address, ip_network

import pytest

from lispd.config import parse_config
from lispd.control.mapcachelog import log_install, log_removed
from lispd.control.messagelog import MESSAGE_BURST, SUMMARY_INTERVAL, MessageLog
from lispd.control.nat import NatClient
from lispd.control.outputs import SendControl
from lispd.control.plane import ControlPlane, ControlResult
from lispd.control.prober import Prober, ProbeSettings, RlocChange
from lispd.control.registrar import MapServerTarget, Registrar
from lispd.control.resolver import SMR_LOG_BURST, Resolver
from lispd.control.responder import SmrSender
from lispd.logfmt import LogfmtFormatter, message_pairs
from lispd.mapcache import MapCacheEntry, RlocEntry
from lispd.node import Node
from lispd.node.actions import Action, SendDatagram
from lispd.wire.address import NO_ADDRESS, InstanceIdAddress, NatTraversalAddress
from lispd.wire.control import encode_control
from lispd.wire.data import IID_CONTROL, build_data_header
from lispd.wire.ecm import EncapsulatedControl
from lispd.wire.info import InfoMessage, decode_info
from lispd.wire.ip import IPv4Header
from lispd.wire.mapregister import (
    MapNotify,
    decode_map_notify,
    decode_map_register,
    encode_signed,
)
from lispd.wire.mapreply import MapReply, decode_map_reply, encode_map_reply
from lispd.wire.maprequest import MapRequest, decode_map_request, encode_map_request
from lispd.wire.records import EidPrefix, EidRecord, Locator
from tests.unit.socketless import perform, xtr_config
from tests.unit.test_logfmt import parse_logfmt

LOCAL = IPv4Address("192.0.2.1")
MS = IPv4Address("192.0.2.50")
KEY = b"site-key"
ETR = IPv4Address("192.0.2.6")
ITR = IPv4Address("203.0.113.9")
EID_PREFIX = ip_network("198.51.100.16/28")
RECORD = EidRecord(
    IPv4Address("198.51.100.0"), 28, (Locator(LOCAL, 1, 100, local=True),), authoritative=True
)


def counting(start: int) -> Callable[[], int]:
    counter = itertools.count(start)
    return lambda: next(counter)


@pytest.fixture(autouse=True)
def formatted() -> Iterator[list[str]]:
    """Every record of every lispd logger, formatted as the daemon writes it; each must parse."""
    lines: list[str] = []
    formatter = LogfmtFormatter()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(formatter.format(record))

    handler = Collect(logging.DEBUG)
    logger = logging.getLogger("lispd")
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
    for line in lines:
        parse_logfmt(line)


def events(caplog: pytest.LogCaptureFixture, logger: str) -> list[tuple[str, dict[str, str]]]:
    """(level, fields) of the records of ``logger``, the fields parsed as logfmt (with msg)."""
    out = []
    for record in caplog.records:
        if record.name == logger:
            out.append((record.levelname, dict(parse_logfmt(message_pairs(record.getMessage())))))
    return out


# --- registration ---------------------------------------------------------------------------


def registrar(**kw: object) -> Registrar:
    kw.setdefault("interval", 60.0)
    return Registrar([MapServerTarget(MS, KEY)], [RECORD], rng=counting(0x5000), **kw)  # type: ignore[arg-type]


def acknowledge(r: Registrar, send: SendControl, now: float) -> None:
    """The Map-Server's Map-Notify for ``send``."""
    reg = decode_map_register(send.payload)
    raw = encode_signed(MapNotify(nonce=reg.nonce, records=reg.records, key_id=reg.key_id), KEY)
    assert r.on_map_notify(raw, decode_map_notify(raw), MS, now) == []


def test_registration_acknowledged_lost_restored_one_line_each(
    caplog: pytest.LogCaptureFixture, formatted: list[str]
) -> None:
    r = registrar()
    with caplog.at_level(logging.DEBUG, logger="lispd.control.registrar"):
        for t in (0.0, 60.0, 120.0):  # acknowledged, then re-registrations that stay so
            [send] = r.on_timer(t)
            acknowledge(r, send, t + 0.2)
        assert len(events(caplog, "lispd.control.registrar")) == 1
        # The Map-Server goes silent: Map-Registers at 180, 240, 300 go unanswered.
        for t in (180.0, 240.0, 300.0):
            assert r.next_deadline() == t
            assert len(r.on_timer(t)) == 1
        lost_at = r.next_deadline()  # the acknowledgement of 120.2 runs out: before 360
        assert lost_at is not None and 300.2 < lost_at < 300.2001
        assert r.status(now=300.2)[0]["acknowledged"] is True
        assert r.on_timer(lost_at) == []
        assert r.status()[0]["acknowledged"] is False
        assert r.next_deadline() == 360.0  # nothing more to say until the next Map-Register
        r.on_timer(359.0)
        [send] = r.on_timer(360.0)
        acknowledge(r, send, 360.1)
        [send] = r.on_timer(420.0)
        acknowledge(r, send, 420.1)
    got = events(caplog, "lispd.control.registrar")
    assert [(level, f["msg"]) for level, f in got] == [
        ("INFO", "registration acknowledged"),
        ("WARNING", "registration lost"),
        ("INFO", "registration restored"),
    ]
    acked, lost, restored = (f for _, f in got)
    assert acked["map-server"] == "192.0.2.50" and acked["nonce"] == "0x0000000000005000"
    assert acked["eids"] == "[0]198.51.100.0/28" and acked["proxy-reply"] == "false"
    assert lost["map-server"] == "192.0.2.50" and float(lost["last-acked-ago"]) == 180.0
    assert lost["unanswered"] == "3"
    assert restored["nonce"] == "0x0000000000005006"
    assert float(restored["last-acked-ago"]) == pytest.approx(239.9)
    # As written to stderr:
    lost_line = next(line for line in formatted if 'msg="registration lost"' in line)
    assert lost_line.split(" ", 1)[1] == (
        "level=warning logger=lispd.control.registrar "
        'msg="registration lost" map-server=192.0.2.50 last-acked-ago=180 unanswered=3 '
        "eids=[0]198.51.100.0/28"
    )


def test_registration_never_acknowledged_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    r = registrar()
    with caplog.at_level(logging.INFO, logger="lispd.control.registrar"):
        for t in (0.0, 60.0, 120.0):
            r.on_timer(t)
        assert events(caplog, "lispd.control.registrar") == []
        for t in (180.0, 240.0):
            [send] = r.on_timer(t)
        acknowledge(r, send, 240.1)
    got = events(caplog, "lispd.control.registrar")
    assert [(level, f["msg"]) for level, f in got] == [
        ("WARNING", "registration not acknowledged"),
        ("INFO", "registration acknowledged"),
    ]
    assert got[0][1]["registers-sent"] == "3" and got[0][1]["since"] == "180"


def test_registration_without_map_notify_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    r = registrar(want_map_notify=False)
    with caplog.at_level(logging.DEBUG, logger="lispd.control.registrar"):
        for t in range(0, 600, 60):
            r.on_timer(float(t))
            assert r.next_deadline() == t + 60.0
    assert events(caplog, "lispd.control.registrar") == []


# --- RLOC probing -----------------------------------------------------------------------------


def probe_answer(p: Prober, send: SendControl, now: float) -> object:
    request = decode_map_request(send.payload)
    first = request.records[0]
    reply = MapReply(
        nonce=request.nonce,
        records=(EidRecord(first.address, first.mask_len, ()),),
        probe=True,
        reported_ttl=62,
    )
    return p.on_map_reply(decode_map_reply(encode_map_reply(reply)), send.dst, now, 63)


def test_rloc_down_and_up_one_line_each(caplog: pytest.LogCaptureFixture) -> None:
    p = Prober([LOCAL], ProbeSettings(interval=10.0, timeout=3.0, down_after=3), counting(0x77))
    with caplog.at_level(logging.DEBUG, logger="lispd.control.prober"):
        [first] = p.watch(ETR, (0, EID_PREFIX), 0.0)
        probe_answer(p, first, 0.004)  # unknown -> up: DEBUG only
        now, changes = 0.004, list[RlocChange]()
        while not changes:  # three probes in a row unanswered
            now = p.next_deadline() or now
            _sends, changes = p.on_timer(now)
        assert [(level, f["msg"]) for level, f in events(caplog, "lispd.control.prober")] == [
            ("DEBUG", "rloc reachable"),
            ("WARNING", "rloc down"),
        ]
        down_at = now
        sends: list[SendControl] = []
        while not sends:
            now = p.next_deadline() or now
            sends, _ = p.on_timer(now)
        up_at = now + 0.005
        assert probe_answer(p, sends[0], up_at) is not None
        # Further answers change nothing: no more lines.
        for _ in range(3):
            sends = []
            while not sends:
                now = p.next_deadline() or now
                sends, _ = p.on_timer(now)
            assert probe_answer(p, sends[0], now + 0.001) is None
    got = events(caplog, "lispd.control.prober")
    assert [(level, f["msg"]) for level, f in got] == [
        ("DEBUG", "rloc reachable"),
        ("WARNING", "rloc down"),
        ("INFO", "rloc up"),
    ]
    down, up = got[1][1], got[2][1]
    assert down["rloc"] == "192.0.2.6" and down["eid-prefix"] == "[0]198.51.100.16/28"
    assert down["losses"] == "3"
    assert up["rloc"] == "192.0.2.6" and up["rtt"] == "0.005" and up["hops"] == "2/1"
    assert float(up["down-for"]) == pytest.approx(up_at - down_at)


# --- NAT --------------------------------------------------------------------------------------


def info_reply(
    send: SendControl, global_rloc: IPv4Address, rtrs: tuple[IPv4Address, ...]
) -> InfoMessage:
    request = decode_info(send.payload)
    nat = NatTraversalAddress(4342, 61000, global_rloc, send.dst, NO_ADDRESS, rtrs)
    reply = InfoMessage(nonce=request.nonce, reply=True, eid=request.eid, address=nat)
    return decode_info(encode_control(reply))


def test_nat_status_changes_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    private, public, rtr = IPv4Address("192.0.2.130"), IPv4Address("192.0.2.5"), ETR
    c = NatClient([MS], [private], [(0, EID_PREFIX)], 60.0, 15.0, counting(0x900))
    with caplog.at_level(logging.INFO, logger="lispd.control.nat"):
        [ask] = c.on_timer(0.0)
        assert isinstance(ask, SendControl)
        assert c.on_info_reply(info_reply(ask, public, (rtr,)), MS, 0.1) is not None
        asks = [s for s in c.on_timer(60.0) if isinstance(s, SendControl)]
        assert c.on_info_reply(info_reply(asks[0], public, (rtr,)), MS, 60.1) is None  # same
        asks = [s for s in c.on_timer(120.0) if isinstance(s, SendControl)]
        assert c.on_info_reply(info_reply(asks[0], private, ()), MS, 120.1) is not None
    got = events(caplog, "lispd.control.nat")
    assert [f for _, f in got] == [
        {
            "msg": "nat status",
            "behind-nat": "true",
            "global-rloc": "192.0.2.5",
            "translated-port": "61000",
            "rtrs": "192.0.2.6",
            "changed": "discovered,behind-nat,global-rloc,rtrs",
        },
        {
            "msg": "nat status",
            "behind-nat": "false",
            "global-rloc": "192.0.2.130",
            "translated-port": "-",
            "rtrs": "-",
            "changed": "behind-nat,global-rloc,rtrs",
        },
    ]


# --- SMR ----------------------------------------------------------------------------------------


def test_smr_sent_and_unanswered_once_per_round(caplog: pytest.LogCaptureFixture) -> None:
    smr = SmrSender([LOCAL], counting(0x300), attempts=3, retry_interval=1.0)
    smr.saw_traffic(str(ITR), bytes([198, 51, 100, 200]), 0, 0.0)
    smr.saw_traffic("203.0.113.10", bytes([198, 51, 100, 201]), 0, 0.0)
    with caplog.at_level(logging.DEBUG, logger="lispd.control.responder"):
        assert len(smr.solicit([RECORD], 1.0)) == 2
        smr.saw_invoked([ip_address("203.0.113.10")])
        for t in (2.0, 3.0, 4.0, 5.0):
            smr.on_timer(t)
    got = events(caplog, "lispd.control.responder")
    assert [(level, f["msg"]) for level, f in got] == [
        ("INFO", "smr sent"),
        ("DEBUG", "smr answered"),
        ("INFO", "smr unanswered"),
    ]
    assert got[0][1]["itrs"] == "203.0.113.9,203.0.113.10"
    assert got[0][1]["eids"] == "[0]198.51.100.0/28" and got[0][1]["messages"] == "2"
    assert got[2][1]["itrs"] == "203.0.113.9" and got[2][1]["attempts"] == "3"


def smr_for(eid: str) -> MapRequest:
    return MapRequest(
        nonce=1,
        records=(EidPrefix(IPv4Address("198.51.100.1"), 32),),
        itr_rlocs=(ITR,),
        source_eid=InstanceIdAddress(5, IPv4Address(eid)),
        smr=True,
    )


def test_smr_received_lines_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    r = Resolver([MS], [LOCAL], rng=counting(0x400))
    with caplog.at_level(logging.INFO, logger="lispd.control.resolver"):
        for k in range(30):  # a burst of SMRs for 30 cached EIDs
            r.on_smr(smr_for(f"203.0.113.{k + 1}"), ITR, 0.0)
        r.on_smr(smr_for("203.0.113.1"), ITR, 5.0)  # pending already: no lookup
    got = events(caplog, "lispd.control.resolver")
    assert len(got) == SMR_LOG_BURST + 1
    assert got[0][1] == {
        "msg": "smr received",
        "from": "203.0.113.9",
        "eid": "[5]203.0.113.1",
        "lookup": "started",
    }
    assert got[-1][1]["lookup"] == "skipped" and got[-1][1]["unlogged"] == "20"


# --- map-cache ----------------------------------------------------------------------------------


def entry(rlocs: tuple[RlocEntry, ...]) -> MapCacheEntry:
    return MapCacheEntry(0, EID_PREFIX, rlocs, ttl=86400.0, created=0.0, source="map-reply")


def test_map_cache_learned_refreshed_changed_negative_expired(
    caplog: pytest.LogCaptureFixture,
) -> None:
    a = entry((RlocEntry(ETR, 1, 100),))
    b = entry((RlocEntry(ETR, 1, 100, up=False), RlocEntry(IPv4Address("192.0.2.10"), 2, 100)))
    negative = MapCacheEntry(0, ip_network("203.0.113.0/24"), (), "native-forward", ttl=900.0)
    with caplog.at_level(logging.DEBUG, logger="lispd.mapcache"):
        log_install(None, a)
        log_install(a, entry((RlocEntry(ETR, 1, 100, up=False),)))  # same mapping: refresh
        log_install(a, b)
        log_install(None, negative)
        log_removed(b, "expired")
    got = events(caplog, "lispd.mapcache")
    assert [(level, f["msg"]) for level, f in got] == [
        ("INFO", "map-cache learned"),
        ("DEBUG", "map-cache refreshed"),
        ("INFO", "map-cache learned"),
        ("INFO", "map-cache negative"),
        ("INFO", "map-cache expired"),
    ]
    assert got[0][1] == {
        "msg": "map-cache learned",
        "iid": "0",
        "prefix": "198.51.100.16/28",
        "action": "encapsulate",
        "rlocs": "192.0.2.6",
        "ttl": "86400",
        "source": "map-reply",
    }
    assert got[2][1]["rlocs"] == "192.0.2.6!down,192.0.2.10"
    assert got[2][1]["was-rlocs"] == "192.0.2.6" and got[2][1]["was-action"] == "encapsulate"
    assert got[3][1]["action"] == "native-forward" and got[3][1]["rlocs"] == "-"
    assert got[3][1]["ttl"] == "900"


# --- control messages at DEBUG ------------------------------------------------------------------


def probe_reply_bytes(nonce: int) -> bytes:
    record = EidRecord(IPv4Address("198.51.100.16"), 28, (Locator(ETR, 1, 100),))
    return encode_map_reply(MapReply(nonce=nonce, records=(record,), probe=True))


def test_a_received_message_is_one_debug_line(caplog: pytest.LogCaptureFixture) -> None:
    plane = ControlPlane()
    request = MapRequest(
        nonce=0xABC,
        records=(EidPrefix(InstanceIdAddress(7, IPv4Address("198.51.100.1")), 32),),
        itr_rlocs=(LOCAL,),
    )
    ecm = EncapsulatedControl(IPv4Header(LOCAL, IPv4Address("198.51.100.1")), 4342, 4342, request)
    with caplog.at_level(logging.DEBUG, logger="lispd.control.messages"):
        plane.on_datagram(probe_reply_bytes(0x75BCD15), "192.0.2.6", 4342, 0.0)
        plane.on_datagram(encode_control(ecm), "2001:db8::6", 4342, 0.1)
        plane.on_datagram(bytes([0x60]) + bytes(27), "192.0.2.66", 4342, 0.2)
        plane.on_datagram(probe_reply_bytes(1), "192.0.2.6", 4342, 0.3, path=None)  # logged
    got = [f for _, f in events(caplog, "lispd.control.messages")]
    assert got == [
        {
            "msg": "control message",
            "dir": "in",
            "type": "map-reply",
            "nonce": "0x00000000075bcd15",
            "eids": "[0]198.51.100.16/28",
            "flags": "probe",
            "peer": "192.0.2.6:4342",
        },
        {
            "msg": "control message",
            "dir": "in",
            "type": "ecm",
            "inner": "map-request",
            "nonce": "0x0000000000000abc",
            "eids": "[7]198.51.100.1/32",
            "peer": "[2001:db8::6]:4342",
        },
        {
            "msg": "control message",
            "dir": "in",
            "type": "malformed",
            "claimed": "map-referral",
            "error": "trailing-bytes",
            "peer": "192.0.2.66:4342",
        },
    ]


def test_a_flood_is_rate_limited_with_a_suppressed_count(caplog: pytest.LogCaptureFixture) -> None:
    messages = MessageLog()
    reply = decode_map_reply(probe_reply_bytes(5))
    with caplog.at_level(logging.DEBUG, logger="lispd.control.messages"):
        for k in range(1000):  # 500 a second for 2 s
            messages.received(reply, ETR, 4342, k / 500)
        lines = events(caplog, "lispd.control.messages")
        assert len(lines) == MESSAGE_BURST + 1  # the burst, then one a second
        assert messages.suppressed == {"in": 989, "out": 0}
        # The next message after the summary interval reports the count, then is logged.
        messages.received(reply, ETR, 4342, SUMMARY_INTERVAL + 0.5)
        lines = events(caplog, "lispd.control.messages")[-2:]
        assert lines[0][1] == {
            "msg": "control messages suppressed",
            "dir": "in",
            "suppressed": "989",
            "seconds": "10.48",
        }
        assert lines[1][1]["type"] == "map-reply"
        # Sent messages have a bucket of their own.
        messages.sent(probe_reply_bytes(6), ETR, 4342, SUMMARY_INTERVAL + 0.5)
        assert events(caplog, "lispd.control.messages")[-1][1]["dir"] == "out"


def test_a_long_flood_stays_within_its_budget(caplog: pytest.LogCaptureFixture) -> None:
    """10,000 messages a second for 60 s in each direction: at most burst + rate x 60 message
    lines and one summary per 10 s each way; every message is either logged or counted."""
    messages = MessageLog()
    reply = decode_map_reply(probe_reply_bytes(5))
    payload = probe_reply_bytes(6)
    with caplog.at_level(logging.DEBUG, logger="lispd.control.messages"):
        for k in range(600_000):
            now = k / 10_000
            messages.received(reply, ETR, 4342, now)
            if k % 100 == 0:
                messages.sent(payload, ETR, 4342, now)
    got = [f for _, f in events(caplog, "lispd.control.messages")]
    for direction, total in (("in", 600_000), ("out", 6000)):
        logged = [f for f in got if f["dir"] == direction and f["msg"] == "control message"]
        summaries = [f for f in got if f["dir"] == direction and f["msg"] != "control message"]
        assert len(logged) <= MESSAGE_BURST + 60 + 1
        assert 5 <= len(summaries) <= 6
        reported = sum(int(f["suppressed"]) for f in summaries)
        assert reported <= messages.suppressed[direction] == total - len(logged)


def test_nothing_is_decoded_or_counted_without_debug(caplog: pytest.LogCaptureFixture) -> None:
    messages = MessageLog()
    with caplog.at_level(logging.INFO, logger="lispd.control.messages"):
        for k in range(100):
            messages.sent(b"\xff not a message", ETR, 4342, k / 100)
    assert caplog.records == [] and messages.suppressed == {"in": 0, "out": 0}


# --- the node's side ----------------------------------------------------------------------------


def test_the_node_logs_what_it_sends_and_learns(caplog: pytest.LogCaptureFixture) -> None:
    """A control message is logged once it left (the shell accounted for its send), one
    received in the data path (instance-ID 0xFFFFFF) as it comes, installs as they happen."""
    node = Node(parse_config(xtr_config()), 50.0)
    request = MapRequest(
        nonce=0x1234,
        records=(EidPrefix(IPv4Address("198.51.100.1"), 32),),
        itr_rlocs=(LOCAL,),
        probe=True,
    )
    keepalive = build_data_header(0x42, IID_CONTROL) + encode_control(
        InfoMessage(nonce=9, eid=IPv4Address("198.51.100.0"), eid_mask_len=28)
    )
    learned = entry((RlocEntry(ETR, 1, 100),))
    performed: list[Action] = []
    with caplog.at_level(logging.DEBUG, logger="lispd"):
        node._send_control([SendControl(ETR, 4342, encode_map_request(request))])
        performed += perform(node)  # sent: logged now
        node.data_datagram(keepalive, 64, 0, "192.0.2.77", 61000, 50.0)
        node._apply(ControlResult(installs=[learned]))
        node._apply(ControlResult(installs=[learned]))  # a refresh: DEBUG only
        performed += perform(node)
    [sent_request] = performed
    assert isinstance(sent_request, SendDatagram)
    assert (sent_request.via, sent_request.dst, sent_request.port) == ("control", ETR, 4342)
    sent = [f for _, f in events(caplog, "lispd.control.messages")]
    assert sent[0] == {
        "msg": "control message",
        "dir": "out",
        "type": "map-request",
        "nonce": "0x0000000000001234",
        "eids": "[0]198.51.100.1/32",
        "flags": "probe",
        "peer": "192.0.2.6:4342",
    }
    assert sent[1]["dir"] == "in" and sent[1]["type"] == "info-request"
    assert sent[1]["path"] == "data" and sent[1]["peer"] == "192.0.2.77:61000"
    cache = events(caplog, "lispd.mapcache")
    assert [(level, f["msg"]) for level, f in cache] == [
        ("INFO", "map-cache learned"),
        ("DEBUG", "map-cache refreshed"),
    ]
