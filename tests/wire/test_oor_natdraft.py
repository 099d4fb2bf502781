"""Draft-style NAT traversal against Open Overlay Router's own exchange
(``oor-nat-traversal.pcap``, found by :mod:`tests.external`; every test skips without it).

Frames (README of the captures): 5/6 the xTR's Info-Request inside/outside the NAT, 7/8 the
Map-Server's Info-Reply outside/inside, 9/10 the ECM'd Map-Register to the RTR inside/outside,
13 the RTR's Map-Register to the Map-Server, 14 the Map-Notify to the RTR (MS-RTR block), 15/16
its relay to the xTR outside/inside, 20 a proxy Map-Reply for the NATed site.

Each message is fed to a lispd node in the receiving role (sans-IO: bytes in, actions out) and
what lispd sends is compared with what OOR sent.  Keys: site 1 ``lab-secret-1``, MS-RTR
``rtr-key``, HMAC-SHA-1 (key-id 1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from ipaddress import ip_address
from typing import Any

from lispd.cli.decode import decode_capture
from lispd.config import parse_config
from lispd.node import Node
from lispd.node.actions import Action, SendDatagram
from lispd.tools.pcap import ip_payload, read_file
from lispd.wire import auth
from lispd.wire.address import NatTraversalAddress
from lispd.wire.control import decode_control
from lispd.wire.data import IID_CONTROL, read_data_header
from lispd.wire.ecm import EncapsulatedControl, decode_ecm
from lispd.wire.info import InfoMessage, encode_info, encode_info_signed
from lispd.wire.ip import parse_udp_datagram
from lispd.wire.mapregister import MapNotify, MapRegister, RtrAuth, verify_notify, verify_rtr_auth
from lispd.wire.mapreply import MapReply
from tests import configs
from tests.external import capture

NAT = "oor/oor-nat-traversal.pcap"
SITE1_KEY = "lab-secret-1"
RTR_KEY = "rtr-key"
MS, RTR, NAT_PUBLIC, XTR1_PRIVATE = "192.0.2.10", "192.0.2.20", "192.0.2.30", "203.0.113.2"
SITE1 = ("198.51.100.0/25", "2001:db8:1::/64")
NOW = 1000.0


def _frames() -> dict[int, Any]:
    """The UDP datagrams of the capture by frame number."""
    out = {}
    for c in read_file(str(capture(NAT))):
        ip = ip_payload(c.linktype, c.frame)
        if ip is not None:
            out[c.index] = parse_udp_datagram(ip)
    return out


def _sends(node: Node) -> list[SendDatagram]:
    actions: list[Action] = node.take_actions()
    return [a for a in actions if isinstance(a, SendDatagram)]


def _ms_node() -> Node:
    doc = configs.msmr(
        "ms",
        [MS],
        [configs.site("site1", SITE1_KEY, *SITE1)],
        mapping_system={"rtr-rlocs": [RTR], "ms-rtr-key": RTR_KEY, "ms-rtr-key-id": 1},
        nat_traversal={"style": "draft"},
    )
    return Node(parse_config(configs.toml(doc)), NOW)


def _rtr_node() -> Node:
    doc = configs.rtr(
        "rtr",
        [RTR],
        map_resolver=configs.addresses(MS),
        rtr={"ms-rtr-key": RTR_KEY},
        probing={"map-cache": False},
    )
    return Node(parse_config(configs.toml(doc)), NOW)


def _scripted(values: list[int]) -> Callable[[], int]:
    """A nonce source giving ``values`` first (then counting from 1)."""
    it: Iterator[int] = iter(values)
    fallback = iter(range(1, 1 << 30))
    return lambda: next(it, None) or next(fallback)


def _xtr_node(frames: dict[int, Any]) -> Node:
    """The xTR behind the NAT, drawing OOR's xTR-ID and nonces (so its messages can be compared
    byte for byte)."""
    register = decode_ecm(frames[9].payload).message
    info = decode_control(frames[5].payload)
    assert isinstance(register, MapRegister) and register.xtr_id is not None
    assert isinstance(info, InfoMessage)
    xtr_id = register.xtr_id
    rng = _scripted([xtr_id >> 64, xtr_id & (2**64 - 1), info.nonce, register.nonce])
    doc = configs.xtr(
        "xtr1",
        [XTR1_PRIVATE],
        SITE1[:1],
        map_server=[configs.map_server(MS, SITE1_KEY, **{"key-id": 1})],
        nat_traversal={"enabled": True, "style": "draft"},
        registration={"record-ttl": 10},
        probing={"map-cache": False},
    )
    return Node(parse_config(configs.toml(doc)), NOW, control_rng=rng)


def test_every_frame_decodes() -> None:
    objs = list(decode_capture(capture(NAT).read_bytes()))
    assert len(objs) == 20
    assert not [o for o in objs if "error" in o]


def test_every_hmac_verifies() -> None:
    frames = _frames()
    site, rtr = SITE1_KEY.encode(), RTR_KEY.encode()
    for n in (5, 6, 7, 8, 13):
        assert auth.verify(frames[n].payload, site), n
        assert not auth.verify(frames[n].payload, rtr), n
    for n in (9, 10):
        ecm = decode_ecm(frames[n].payload)
        inner = frames[n].payload[4 + 20 + 8 :]
        assert isinstance(ecm.message, MapRegister) and auth.verify(inner, site), n
    assert verify_notify(frames[14].payload, site) and verify_rtr_auth(frames[14].payload, rtr)
    assert not verify_rtr_auth(frames[14].payload, site)
    for n in (15, 16):
        relayed = parse_udp_datagram(frames[n].payload[8:])
        assert verify_notify(relayed.payload, site), n


def test_map_server_answers_the_info_request_as_oor_did() -> None:
    frames = _frames()
    node = _ms_node()
    request = frames[6]  # as it arrived, translated by the NAT
    node.control_datagram(request.payload, 64, NAT_PUBLIC, request.sport, NOW)
    (send,) = _sends(node)
    assert (str(send.dst), send.port, send.via) == (NAT_PUBLIC, request.sport, "control")
    ours, oor = decode_control(send.payload), decode_control(frames[7].payload)
    assert isinstance(ours, InfoMessage) and isinstance(oor, InfoMessage)
    assert ours.reply and ours.nonce == oor.nonce and ours.ttl == oor.ttl == 10
    assert (ours.key_id, ours.eid, ours.eid_mask_len) == (oor.key_id, oor.eid, oor.eid_mask_len)
    assert isinstance(ours.address, NatTraversalAddress) and ours.address == oor.address
    assert auth.verify(send.payload, SITE1_KEY.encode())
    assert send.payload == frames[7].payload  # byte for byte, HMAC included


def test_map_server_refuses_info_requests_without_the_site_key() -> None:
    frames = _frames()
    node = _ms_node()
    request = decode_control(frames[6].payload)
    assert isinstance(request, InfoMessage)
    node.control_datagram(encode_info_signed(request, b"not-the-key"), 64, NAT_PUBLIC, 4342, NOW)
    unsigned = replace(request, key_id=0, auth_data=b"")
    node.control_datagram(encode_info(unsigned), 64, NAT_PUBLIC, 4342, NOW)
    assert not _sends(node)
    drops = node.control.counters()
    assert drops["info-request-auth-failed"] == 1 and drops["info-request-unauthenticated"] == 1


def test_map_server_answers_the_rtr_with_an_ms_rtr_signed_map_notify() -> None:
    frames = _frames()
    node = _ms_node()
    node.control_datagram(frames[13].payload, 64, RTR, 4342, NOW)
    (send,) = _sends(node)
    assert (str(send.dst), send.port) == (RTR, 4342)
    ours, oor = decode_control(send.payload), decode_control(frames[14].payload)
    assert isinstance(ours, MapNotify) and isinstance(oor, MapNotify)
    assert (ours.nonce, ours.xtr_id, ours.site_id, ours.key_id) == (
        oor.nonce,
        oor.xtr_id,
        oor.site_id,
        oor.key_id,
    )
    assert ours.rtr_auth is not None and ours.rtr_auth.key_id == 1
    assert [r.eid for r in ours.records] == [r.eid for r in oor.records]
    assert verify_notify(send.payload, SITE1_KEY.encode())
    assert verify_rtr_auth(send.payload, RTR_KEY.encode())
    # Registered as OOR's Map-Server registered it: the RTR first, proxy-reply on.
    (reg,) = node.control.map_server.registrations()  # type: ignore[union-attr]
    assert [str(loc.address) for loc in reg.locators] == [RTR, XTR1_PRIVATE]
    assert reg.proxy_reply and reg.xtr_id == oor.xtr_id


def test_map_server_proxy_replies_for_the_natted_site_with_the_rtr() -> None:
    frames = _frames()
    node = _ms_node()
    node.control_datagram(frames[13].payload, 64, RTR, 4342, NOW)  # registered via the RTR
    _sends(node)
    request = frames[19]  # xTR2's ECM'd Map-Request for a host of site 1
    node.control_datagram(request.payload, 64, str(request.ip.src), request.sport, NOW + 1)
    (send,) = _sends(node)
    assert (str(send.dst), send.port) == ("192.0.2.2", 4342)
    ours, oor = decode_control(send.payload), decode_control(frames[20].payload)
    assert isinstance(ours, MapReply) and isinstance(oor, MapReply)
    assert ours.nonce == oor.nonce
    (record,), (oor_record,) = ours.records, oor.records
    assert (record.eid, record.mask_len, record.ttl) == (
        oor_record.eid,
        oor_record.mask_len,
        oor_record.ttl,
    )
    # The RTR, the only way in: OOR also lists the xTR's private RLOC, marked unreachable;
    # lispd leaves it out for requesters other than its RTRs (nat_view).
    reachable = [str(loc.address) for loc in oor_record.locators if loc.reachable]
    assert [str(loc.address) for loc in record.locators] == reachable == [RTR]


def test_rtr_forwards_the_map_register_as_oor_did() -> None:
    frames = _frames()
    node = _rtr_node()
    ecm = frames[10]  # from the NAT's public address, port 4341
    node.control_datagram(ecm.payload, 64, NAT_PUBLIC, ecm.sport, NOW)
    (send,) = _sends(node)
    assert (str(send.dst), send.port, send.via) == (MS, 4342, "control")
    assert send.payload == frames[13].payload  # unchanged: the site HMAC still verifies


def test_rtr_relays_the_map_notify_as_oor_did() -> None:
    frames = _frames()
    node = _rtr_node()
    node.control_datagram(frames[10].payload, 64, NAT_PUBLIC, frames[10].sport, NOW)
    _sends(node)
    node.control_datagram(frames[14].payload, 64, MS, 4342, NOW + 0.001)
    (send,) = _sends(node)
    oor = frames[15]
    assert (str(send.dst), send.port, send.via) == (NAT_PUBLIC, oor.dport, "control")
    assert read_data_header(send.payload) is not None
    assert read_data_header(send.payload)[0] == read_data_header(oor.payload)[0] == IID_CONTROL  # type: ignore[index]
    ours_in, oor_in = parse_udp_datagram(send.payload[8:]), parse_udp_datagram(oor.payload[8:])
    assert (ours_in.ip.src, ours_in.ip.dst, ours_in.sport, ours_in.dport) == (
        oor_in.ip.src,
        oor_in.ip.dst,
        oor_in.sport,
        oor_in.dport,
    )
    assert ours_in.payload == oor_in.payload  # the Map-Notify with the empty MS-RTR block
    notify = decode_control(ours_in.payload)
    assert isinstance(notify, MapNotify) and notify.rtr_auth == RtrAuth()
    # The binding, per xTR-ID, and the mapping of the NATed site to the NAT's address:port.
    assert node.draft_rtr is not None
    (binding,) = node.draft_rtr.bindings()
    assert (str(binding.translated), binding.port, str(binding.private)) == (
        NAT_PUBLIC,
        4341,
        XTR1_PRIVATE,
    )
    entry = node.mapcache.lookup(0, ip_address("198.51.100.10"))
    assert entry is not None and [(str(r.address), r.port) for r in entry.rlocs] == [
        (NAT_PUBLIC, 4341)
    ]


def test_rtr_refuses_a_map_notify_signed_with_another_key() -> None:
    frames = _frames()
    node = _rtr_node()
    node.control_datagram(frames[10].payload, 64, NAT_PUBLIC, frames[10].sport, NOW)
    _sends(node)
    forged = frames[14].payload[:-20] + bytes(20)
    node.control_datagram(forged, 64, MS, 4342, NOW)
    assert not _sends(node)
    assert node.draft_rtr is not None and node.draft_rtr.drops["rtr-notify-auth-failed"] == 1
    assert not node.draft_rtr.bindings()


def test_xtr_registers_through_the_rtr_as_oor_did_and_accepts_the_relay() -> None:
    frames = _frames()
    node = _xtr_node(frames)
    node.start(NOW)
    (request,) = [s for s in _sends(node) if str(s.dst) == MS]
    assert request.payload == frames[5].payload  # signed Info-Request, TTL 0, byte for byte

    node.control_datagram(frames[8].payload, 64, MS, 4342, NOW + 0.001)  # the Info-Reply
    sends = _sends(node)
    (ecm_send,) = [s for s in sends if str(s.dst) == RTR and s.port == 4342]
    assert ecm_send.via == "data"  # from our port 4341
    ecm, oor = decode_ecm(ecm_send.payload), decode_ecm(frames[9].payload)
    assert isinstance(ecm, EncapsulatedControl) and ecm.rtr
    assert (ecm.inner_ip.src, ecm.inner_ip.dst, ecm.sport, ecm.dport) == (
        oor.inner_ip.src,
        oor.inner_ip.dst,
        oor.sport,
        oor.dport,
    )
    assert ecm.message == oor.message  # the same Map-Register, HMAC included

    node.data_datagram(frames[16].payload, 64, 0, RTR, 4342, NOW + 0.002)  # the relay
    status = node.control.registrar.status(NOW + 0.002)  # type: ignore[union-attr]
    assert status[0]["acknowledged"]
    assert node.counters.packets["nat.notify-relayed.packets"] == 1
    assert not {k: v for k, v in node.control.counters().items() if v}


def test_xtr_refuses_an_info_reply_signed_with_another_key() -> None:
    frames = _frames()
    node = _xtr_node(frames)
    node.start(NOW)
    _sends(node)
    raw = frames[8].payload
    forged = raw[:16] + bytes(20) + raw[36:]
    node.control_datagram(forged, 64, MS, 4342, NOW + 0.001)
    assert node.nat_status is None
    assert node.control.nat is not None
    assert node.control.nat.drops["info-reply-auth-failed"] == 1
    node.control_datagram(raw, 64, MS, 4342, NOW + 0.002)  # the real one still counts
    assert node.nat_status is not None and node.nat_status.behind_nat
