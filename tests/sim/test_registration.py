"""Scenario 1: ETRs register their database with the Map-Server (HMAC-SHA-256 authenticated,
acknowledged with a Map-Notify when they ask), re-register every interval, and the Map-Server
forgets a site that stops registering."""

from __future__ import annotations

import hashlib
import hmac
import struct

from lispd.wire.control import decode_control
from lispd.wire.mapregister import MapNotify, MapRegister
from tests import configs
from tests.sim.network import Network
from tests.sim.plan import MS, MS_V6, SITE1, SITE2, XTR1, XTR1_V6, XTR2, XTR2_V6
from tests.sim.worlds import site_xtr, two_sites


def hmac_ok(message: bytes, key: str) -> bool:
    """An independent check of a Map-Register/Map-Notify's HMAC-SHA-256 (RFC 9301 5.6): over
    the whole message with the authentication data zeroed."""
    key_id, length = struct.unpack_from("!HH", message, 12)
    assert key_id == 2 and length in (16, 32)
    zeroed = message[:16] + bytes(length) + message[16 + length :]
    digest = hmac.new(key.encode(), zeroed, hashlib.sha256).digest()[:length]
    return hmac.compare_digest(digest, message[16 : 16 + length])


def test_etrs_register_with_hmac_and_the_map_server_notifies() -> None:
    w = two_sites()
    w.net.advance(1.0)

    sites = {(s["site"], s["eid-prefix"]): s for s in w.ms.sites()}
    assert set(sites) == {(s.name, p) for s in (SITE1, SITE2) for p in s.prefixes}
    for prefix in SITE2.prefixes:
        reg = sites[("site2", prefix)]
        assert reg["rlocs"] == [XTR2, XTR2_V6]
        assert reg["registered-by"] == f"{XTR2}:4342"
        assert reg["proxy-reply"] is False

    # On the wire: one signed Map-Register from each ETR (M-bit set), one Map-Notify back.
    registers = [d for d in w.net.datagrams("control", dst=MS)]
    assert {d.sender for d in registers} == {"xtr1", "xtr2"}
    for d in registers:
        msg = decode_control(d.payload)
        assert isinstance(msg, MapRegister) and msg.want_map_notify
        assert (str(d.src), d.sport) == ({"xtr1": XTR1, "xtr2": XTR2}[d.sender], 4342)
        key = SITE1.key if d.sender == "xtr1" else SITE2.key
        assert hmac_ok(d.payload, key)
        assert not hmac_ok(d.payload, "not-the-key")
    notifies = list(w.net.datagrams("control", sender="ms"))
    assert sorted(str(d.dst) for d in notifies) == [XTR1, XTR2]
    for d in notifies:
        assert isinstance(decode_control(d.payload), MapNotify)
        assert hmac_ok(d.payload, SITE1.key if str(d.dst) == XTR1 else SITE2.key)

    status = w.xtr2.node.control.registrar.status(w.net.now)  # type: ignore[union-attr]
    assert [(s["acknowledged"], s["notifies-accepted"]) for s in status] == [(True, 1)]
    assert w.ms.drops() == {} and w.xtr1.drops() == {} and w.xtr2.drops() == {}


def test_a_register_signed_with_the_wrong_key_is_refused() -> None:
    net = Network()
    ms = net.add_node("ms", configs.msmr("ms", [MS], [SITE1.table()]))
    impostor = site_xtr("xtr1", (XTR1, XTR1_V6), SITE1, registration={"interval": 10})
    impostor["map-server"][0]["key"] = "guessed-key"
    xtr = net.add_node("xtr1", impostor)
    net.advance(25.0)  # three registers, every one refused (no Map-Notify comes)

    assert ms.sites() == []
    assert ms.drops()["register-auth-failed"] == len(list(net.datagrams("control", dst=MS)))
    assert list(net.datagrams("control", sender="ms")) == []  # no Map-Notify
    status = xtr.node.control.registrar.status(net.now)  # type: ignore[union-attr]
    assert status[0]["acknowledged"] is False and status[0]["registers-sent"] == 3


def test_no_map_notify_unless_asked() -> None:
    net = Network()
    ms = net.add_node("ms", configs.msmr("ms", [MS], [SITE1.table()]))
    net.add_node(
        "xtr1",
        site_xtr("xtr1", (XTR1, XTR1_V6), SITE1, registration={"want-map-notify": False}),
    )
    net.advance(1.0)
    assert [s["eid-prefix"] for s in ms.sites()] == list(SITE1.prefixes)
    register = next(net.datagrams("control", dst=MS))
    msg = decode_control(register.payload)
    assert isinstance(msg, MapRegister) and not msg.want_map_notify
    assert list(net.datagrams(sender="ms")) == []


def test_registrations_are_refreshed_and_expire_when_the_etr_goes() -> None:
    net = Network()
    ms = net.add_node(
        "ms",
        configs.msmr(
            "ms", [MS, MS_V6], [SITE1.table()], mapping_system={"registration-timeout": 30}
        ),
    )
    net.add_node("xtr1", site_xtr("xtr1", (XTR1, XTR1_V6), SITE1, registration={"interval": 10}))
    start = net.now
    net.advance(25.0)
    times = [round(d.time - start, 3) for d in net.datagrams("control", dst=MS)]
    assert times == [0.0, 10.0, 20.0]  # every interval, to the millisecond of fake time
    assert len(ms.sites()) == 2

    net.take_down("xtr1")
    net.advance(24.9)  # the registers at 30 s and 40 s are lost; the one of 20 s still holds
    assert len(ms.sites()) == 2
    net.advance(10.0)  # 30 s after it
    assert ms.sites() == []
    assert net.lost_reasons() == {"node-down": 3}  # the registers of 30, 40 and 50 s
    net.bring_up("xtr1")
    net.advance(0.2)  # the next periodic register (at 60 s) brings it back
    assert [s["eid-prefix"] for s in ms.sites()] == list(SITE1.prefixes)
