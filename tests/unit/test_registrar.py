"""Unit tests of lispd.control.registrar: the ETR's Map-Register / Map-Notify machine.

A fake clock, a counting nonce source, and a stand-in Map-Server built from lispd.wire (decode
the Map-Register, answer with a signed Map-Notify) instead of sockets.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lispd.control.outputs import SendControl
from lispd.control.registrar import RECENT_NONCES, MapServerTarget, Registrar
from lispd.wire import auth
from lispd.wire.address import InstanceIdAddress
from lispd.wire.errors import WireError
from lispd.wire.mapregister import (
    MapNotify,
    MapRegister,
    decode_map_notify,
    decode_map_register,
    encode_signed,
)
from lispd.wire.records import EidRecord, Locator

MS1 = IPv4Address("192.0.2.50")
MS2 = IPv6Address("2001:db8::50")
MS3 = IPv4Address("203.0.113.50")
KEY1 = b"site-key-one"
KEY2 = b"site-key-two"
KEY3 = b"site-key-three"
RLOC = IPv4Address("192.0.2.1")
RECORDS = (
    EidRecord(
        IPv4Address("198.51.100.0"),
        28,
        (Locator(RLOC, 1, 100, local=True),),
        ttl=1440,
        authoritative=True,
    ),
    EidRecord(
        InstanceIdAddress(7, IPv6Address("2001:db8:100:1::")),
        64,
        (Locator(RLOC, 1, 100, local=True),),
        ttl=1440,
        authoritative=True,
    ),
)
T1 = MapServerTarget(MS1, KEY1)
T2 = MapServerTarget(MS2, KEY2, key_id=1, proxy_reply=True)
START = 0x5000


def counting_rng(start: int = START) -> Callable[[], int]:
    it = itertools.count(start)
    return lambda: next(it)


def make(*targets: MapServerTarget, **kw: object) -> Registrar:
    kw.setdefault("rng", counting_rng())
    return Registrar(list(targets or (T1, T2)), RECORDS, **kw)  # type: ignore[arg-type]


def registers(sends: list[SendControl]) -> dict[object, MapRegister]:
    out = {}
    for send in sends:
        assert send.port == 4342
        out[send.dst] = decode_map_register(send.payload)
    return out


def notify_for(
    send: SendControl, key: bytes, *, nonce: int | None = None, key_id: int | None = None
) -> tuple[bytes, MapNotify]:
    """What a Map-Server answers to ``send`` (a Map-Register): a signed Map-Notify."""
    reg = decode_map_register(send.payload)
    msg = MapNotify(
        nonce=reg.nonce if nonce is None else nonce,
        records=reg.records,
        key_id=reg.key_id if key_id is None else key_id,
        xtr_id=reg.xtr_id,
        site_id=reg.site_id,
    )
    raw = encode_signed(msg, key)
    return raw, decode_map_notify(raw)


def by_dst(sends: list[SendControl]) -> dict[object, SendControl]:
    return {s.dst: s for s in sends}


# --- Map-Register contents ----------------------------------------------------------------------


def test_first_timer_registers_with_every_target_and_every_field_is_right() -> None:
    r = make()
    assert r.next_deadline() == -math.inf
    sends = r.on_timer(100.0)
    assert [s.dst for s in sends] == [MS1, MS2]
    regs = registers(sends)
    m1, m2 = regs[MS1], regs[MS2]
    for m in (m1, m2):
        assert m.records == RECORDS
        assert m.want_map_notify
        assert m.xtr_id is None and m.site_id is None
        assert not (m.security_capable or m.for_rtr or m.eid_notify or m.ttl_timeout or m.merge)
        assert m.reserved == 0
    assert (m1.key_id, len(m1.auth_data), m1.proxy_reply) == (2, 32, False)
    assert (m2.key_id, len(m2.auth_data), m2.proxy_reply) == (1, 20, True)
    # Nonces come from the rng and go up by one per Map-Register.
    assert (m1.nonce, m2.nonce) == (START, START + 1)
    by = by_dst(sends)
    assert auth.verify(by[MS1].payload, KEY1)
    assert auth.verify(by[MS2].payload, KEY2)
    assert not auth.verify(by[MS1].payload, KEY2)
    assert r.next_deadline() == 160.0
    assert r.stats["registers-sent"] == 2


def test_xtr_id_and_site_id_are_appended_when_configured() -> None:
    r = make(T1, xtr_id=0x0123456789ABCDEF0123456789ABCDEF, site_id=42, want_map_notify=False)
    [send] = r.on_timer(0.0)
    m = decode_map_register(send.payload)
    assert m.xtr_id == 0x0123456789ABCDEF0123456789ABCDEF
    assert m.site_id == 42
    assert not m.want_map_notify
    assert auth.verify(send.payload, KEY1)


def test_every_map_register_takes_a_fresh_nonce_from_the_rng() -> None:
    drawn = iter([0xDEADBEEF, (1 << 64) - 1, 7])
    r = make(T1, rng=lambda: next(drawn))
    assert decode_map_register(r.on_timer(0.0)[0].payload).nonce == 0xDEADBEEF
    assert decode_map_register(r.on_timer(60.0)[0].payload).nonce == (1 << 64) - 1
    assert decode_map_register(r.on_timer(120.0)[0].payload).nonce == 7


# --- timing -------------------------------------------------------------------------------------


def test_periodic_registration_per_interval() -> None:
    r = make(interval=60.0)
    assert len(r.on_timer(0.0)) == 2
    assert r.on_timer(59.9) == []
    assert r.next_deadline() == 60.0
    sends = r.on_timer(60.0)
    assert [decode_map_register(s.payload).nonce for s in sends] == [START + 2, START + 3]
    # A late tick sends once and the period restarts from then.
    assert len(r.on_timer(150.0)) == 2
    assert r.next_deadline() == 210.0
    assert r.status()[0]["registers-sent"] == 3


def test_targets_are_scheduled_independently() -> None:
    r = make(T1)
    r.on_timer(0.0)
    t3 = MapServerTarget(MS3, KEY3)
    # A new target registers at once, the old one keeps its phase.
    [send] = r.update_targets([T1, t3], now=10.0)
    assert send.dst == MS3
    assert r.next_deadline() == 60.0
    assert [s.dst for s in r.on_timer(60.0)] == [MS1]
    assert r.next_deadline() == 70.0
    assert [s.dst for s in r.on_timer(70.0)] == [MS3]
    # Only MS3 answers; MS1's silence changes nothing for either.
    raw, notify = notify_for(send, KEY3)
    assert r.on_map_notify(raw, notify, MS3, now=10.5) == []
    status = {s["address"]: s for s in r.status(now=75.0)}
    assert status[str(MS3)]["acknowledged"] is True
    assert status[str(MS1)]["acknowledged"] is False
    assert [s.dst for s in r.on_timer(120.0)] == [MS1]
    # Removing a target forgets it, after telling it to drop our registrations at once.
    [withdraw] = r.update_targets([t3], now=121.0)
    assert withdraw.dst == MS1
    assert [s["address"] for s in r.status()] == [str(MS3)]
    assert r.next_deadline() == 130.0  # MS3 keeps its own phase


def test_deregister_sends_ttl_zero_with_the_t_bit_everywhere() -> None:
    r = make()
    r.on_timer(0.0)
    sends = r.deregister(RECORDS[:1], now=5.0)
    assert {s.dst for s in sends} == {MS1, MS2}
    for send in sends:
        msg = decode_map_register(send.payload)
        assert msg.ttl_timeout and not msg.want_map_notify
        assert [(rec.eid, rec.mask_len) for rec in msg.records] == [
            (RECORDS[0].eid, RECORDS[0].mask_len)
        ]
        assert all(rec.ttl == 0 for rec in msg.records)
    assert r.deregister([], now=6.0) == []
    assert r.stats["deregisters-sent"] == 2
    # The periodic registrations of what is left go on unchanged.
    assert r.next_deadline() == 60.0


def test_update_records_registers_everywhere_at_once() -> None:
    r = make()
    r.on_timer(0.0)
    new = RECORDS[:1]
    sends = r.update_records(new, now=30.0)
    assert [s.dst for s in sends] == [MS1, MS2]
    for m in registers(sends).values():
        assert m.records == new
    assert r.records == new
    assert r.next_deadline() == 90.0
    assert r.on_timer(60.0) == []


def test_nothing_is_sent_without_records() -> None:
    r = Registrar([T1], [], rng=counting_rng())
    assert r.on_timer(0.0) == []
    assert r.stats["register-skipped-empty"] == 1
    assert r.next_deadline() == 60.0
    [send] = r.update_records(RECORDS, now=5.0)
    assert decode_map_register(send.payload).records == RECORDS


def test_no_targets_no_deadline() -> None:
    r = Registrar([], RECORDS, rng=counting_rng())
    assert r.next_deadline() is None
    assert r.on_timer(0.0) == []


def test_configuration_errors_raise() -> None:
    with pytest.raises(ValueError):
        MapServerTarget(MS1, b"")
    with pytest.raises(ValueError):
        MapServerTarget(MS1, KEY1, key_id=3)
    with pytest.raises(TypeError):
        MapServerTarget("192.0.2.50", KEY1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Registrar([T1], RECORDS, interval=0)
    with pytest.raises(ValueError):
        Registrar([T1], [EidRecord(IPv4Address("198.51.100.0"), 33)])
    assert "site-key" not in repr(T1)


# --- Map-Notify ---------------------------------------------------------------------------------


def test_map_notify_acknowledges_the_registration() -> None:
    r = make()
    sends = by_dst(r.on_timer(0.0))
    raw, notify = notify_for(sends[MS1], KEY1)
    assert r.on_map_notify(raw, notify, MS1, now=0.2) == []
    assert r.stats["notifies-accepted"] == 1
    status = {s["address"]: s for s in r.status()}
    assert status[str(MS1)] == {
        "address": str(MS1),
        "key-id": 2,
        "proxy-reply": False,
        "last-sent": 0.0,
        "last-acked": 0.2,
        "acknowledged": True,
        "registers-sent": 1,
        "notifies-accepted": 1,
        "next-send": 60.0,
    }
    assert status[str(MS2)]["acknowledged"] is False
    assert status[str(MS2)]["last-acked"] is None
    # The same Map-Notify again is a duplicate: counted, not acknowledged twice, not acked.
    assert r.on_map_notify(raw, notify, MS1, now=0.3) == []
    assert r.drops["map-notify-duplicate"] == 1
    assert r.stats["notifies-accepted"] == 1


def test_acknowledged_lasts_three_intervals() -> None:
    r = make(T1, interval=60.0)
    [send] = r.on_timer(0.0)
    raw, notify = notify_for(send, KEY1)
    r.on_map_notify(raw, notify, MS1, now=0.5)
    assert r.status(now=180.5)[0]["acknowledged"] is True
    assert r.status(now=180.6)[0]["acknowledged"] is False
    r.on_timer(60.0)
    assert r.status()[0]["acknowledged"] is True  # judged at the latest time seen (60.0)


def test_a_late_notify_for_a_recent_register_still_counts() -> None:
    r = make(T1)
    [first] = r.on_timer(0.0)
    r.on_timer(60.0)
    raw, notify = notify_for(first, KEY1)
    assert r.on_map_notify(raw, notify, MS1, now=61.0) == []
    assert r.status()[0]["last-acked"] == 61.0


def test_notify_with_the_wrong_key_is_dropped() -> None:
    r = make()
    sends = by_dst(r.on_timer(0.0))
    raw, notify = notify_for(sends[MS1], KEY2)
    assert r.on_map_notify(raw, notify, MS1, now=0.1) == []
    assert r.drops["map-notify-bad-auth"] == 1
    assert r.status()[0]["last-acked"] is None
    # MS1's genuine notify sent from MS2's address does not verify with MS2's key.
    raw, notify = notify_for(sends[MS1], KEY1)
    assert r.on_map_notify(raw, notify, MS2, now=0.1) == []
    assert r.drops["map-notify-bad-auth"] == 2


def test_notify_from_an_unknown_source_is_dropped() -> None:
    r = make()
    sends = by_dst(r.on_timer(0.0))
    raw, notify = notify_for(sends[MS1], KEY1)
    assert r.on_map_notify(raw, notify, MS3, now=0.1) == []
    assert r.drops["map-notify-unknown-source"] == 1
    assert all(s["last-acked"] is None for s in r.status())


def test_notify_with_a_nonce_of_another_target_is_not_an_ack() -> None:
    r = make()
    sends = by_dst(r.on_timer(0.0))
    ms2_nonce = decode_map_register(sends[MS2].payload).nonce
    raw, notify = notify_for(sends[MS1], KEY1, nonce=ms2_nonce)
    out = r.on_map_notify(raw, notify, MS1, now=0.1)
    # Authentic but not answering a Map-Register sent to MS1: unsolicited, so acked.
    assert len(out) == 1
    assert decode_map_notify(out[0].payload).ack
    assert all(s["last-acked"] is None for s in r.status())


def test_unsolicited_notify_gets_a_signed_map_notify_ack() -> None:
    r = make()
    r.on_timer(0.0)
    records = (EidRecord(IPv4Address("198.51.100.0"), 28, (Locator(RLOC),), ttl=3),)
    msg = MapNotify(nonce=0xDEADBEEF, records=records, key_id=1, xtr_id=77, site_id=5)
    raw = encode_signed(msg, KEY1)
    [ack_send] = r.on_map_notify(raw, decode_map_notify(raw), MS1, now=5.0)
    assert (ack_send.dst, ack_send.port) == (MS1, 4342)
    ack = decode_map_notify(ack_send.payload)
    assert ack.ack
    assert ack.nonce == 0xDEADBEEF
    assert ack.records == records
    assert ack.key_id == 1
    assert (ack.xtr_id, ack.site_id) == (77, 5)
    assert len(ack.auth_data) == 20
    assert auth.verify(ack_send.payload, KEY1)
    assert r.stats["unsolicited-notifies"] == 1
    assert r.stats["notify-acks-sent"] == 1
    # Not an acknowledgement of our registration.
    assert r.status()[0]["last-acked"] is None


def test_old_nonces_rotate_out() -> None:
    r = make(T1)
    [first] = r.on_timer(0.0)
    for i in range(1, RECENT_NONCES + 1):
        r.on_timer(60.0 * i)
    raw, notify = notify_for(first, KEY1)
    out = r.on_map_notify(raw, notify, MS1, now=400.0)
    assert len(out) == 1  # too old to be an ack: answered as unsolicited
    assert r.status()[0]["last-acked"] is None


def test_map_notify_ack_is_not_expected_by_an_etr() -> None:
    r = make()
    sends = by_dst(r.on_timer(0.0))
    reg = decode_map_register(sends[MS1].payload)
    raw = encode_signed(MapNotify(reg.nonce, reg.records, ack=True), KEY1)
    assert r.on_map_notify(raw, decode_map_notify(raw), MS1, now=0.1) == []
    assert r.drops["map-notify-ack-unexpected"] == 1


def test_truncated_raw_bytes_are_counted() -> None:
    r = make()
    sends = by_dst(r.on_timer(0.0))
    raw, notify = notify_for(sends[MS1], KEY1)
    assert r.on_map_notify(raw[:13], notify, MS1, now=0.1) == []
    assert r.drops["map-notify-malformed"] == 1


def test_two_registrars_never_confuse_each_others_notifies() -> None:
    a = make(T1, rng=counting_rng(1))
    b = make(T1, rng=counting_rng(1 << 40))
    sa, sb = a.on_timer(0.0)[0], b.on_timer(0.0)[0]
    raw, notify = notify_for(sa, KEY1)
    assert a.on_map_notify(raw, notify, MS1, now=0.1) == []
    assert b.on_map_notify(raw, notify, MS1, now=0.1) != []  # unsolicited for b
    assert a.status()[0]["acknowledged"] and not b.status()[0]["acknowledged"]
    del sb


# --- robustness ---------------------------------------------------------------------------------


def _good_notify() -> bytes:
    r = make(T1)
    reg = decode_map_register(r.on_timer(0.0)[0].payload)
    return encode_signed(MapNotify(reg.nonce, reg.records, xtr_id=9, site_id=1), KEY1)


GOOD_NOTIFY = _good_notify()


@settings(max_examples=300)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(GOOD_NOTIFY) - 1), st.integers(0, 255)), max_size=6
    ),
    cut=st.one_of(st.just(len(GOOD_NOTIFY)), st.integers(0, len(GOOD_NOTIFY))),
    src=st.sampled_from([MS1, MS2, MS3]),
)
def test_mutated_map_notifies_never_raise(
    edits: list[tuple[int, int]], cut: int, src: IPv4Address | IPv6Address
) -> None:
    data = bytearray(GOOD_NOTIFY)
    for pos, value in edits:
        data[pos] = value
    raw = bytes(data[:cut])
    r = make()
    r.on_timer(0.0)
    try:
        notify = decode_map_notify(raw)
    except WireError:
        notify = decode_map_notify(GOOD_NOTIFY)  # a mismatched pair must not break it either
    out = r.on_map_notify(raw, notify, src, now=1.0)
    for send in out:
        assert decode_map_notify(send.payload).ack


@settings(max_examples=200)
@given(
    nonce=st.integers(0, 2**64 - 1),
    key_id=st.integers(0, 0xFFFF),
    auth_data=st.binary(max_size=40),
    xtr=st.one_of(st.none(), st.integers(0, 2**128 - 1)),
    raw=st.binary(max_size=80),
    ack=st.booleans(),
)
def test_random_notify_objects_never_raise(
    nonce: int, key_id: int, auth_data: bytes, xtr: int | None, raw: bytes, ack: bool
) -> None:
    r = make()
    r.on_timer(0.0)
    notify = MapNotify(
        nonce, RECORDS, key_id=key_id, auth_data=auth_data, xtr_id=xtr, site_id=xtr, ack=ack
    )
    assert isinstance(r.on_map_notify(raw, notify, MS1, now=1.0), list)
