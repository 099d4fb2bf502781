"""Golden per-role answers over Open Overlay Router 1.3.0's captures (issue 21).

``oor-xtr-ms-control.pcap`` and ``oor-smr.pcap`` (found by :mod:`tests.external`; every test
skips when they are absent) are an OOR Map-Server/Map-Resolver (192.0.2.10) and two OOR xTRs
(xtr1 192.0.2.1: 198.51.100.0/25 and 2001:db8:1::/64, proxy-reply, record TTL 10; xtr2
192.0.2.2: 198.51.100.128/25 and 2001:db8:2::/64, TTL 1440) talking.  Keys from the captures'
README: site 1 ``lab-secret-1``, site 2 ``lab-secret-2``, key-id 1 (HMAC-SHA-1).

Each message one OOR node sent is fed to a lispd node (:class:`lispd.node.Node`, configured in
memory from :mod:`tests.configs` with the capture's addresses and keys) in the receiving role,
and lispd's answer is held against the answer the OOR peer gave in the capture:

* Map-Server: a Map-Notify for each Map-Register, same nonce and records, HMAC verifying
  (RFC 9301 section 5.7); an ECM Map-Request forwarded to the registered ETR, or answered by
  proxy when the registration set the P bit (RFC 9301 section 8.3; the P bit: section 5.6),
  as OOR's MS did;
* ETR: a Map-Reply for each Map-Request the MS forwarded and for each RLOC-probe, same nonce and
  records, the probe bit echoed and the p-bit on the probed locator only (RFC 9301 sections 5.4,
  7.1);
* xTR: the SMR-invoked Map-Request an SMR calls for, to the Map-Resolver, only for a mapping it
  caches (RFC 9301 section 6.1).

Where the RFC allows both answers and lispd's differs from OOR's, the test asserts lispd's own
and says what OOR did:

* Map-Notify records: lispd echoes the Map-Register's records as they were signed, L bits
  included; OOR clears the L bit (the Map-Server is not local to the locator).  RFC 9301
  section 5.7 builds the Map-Notify from the Map-Register's records; the L bit there is
  about the sender's own locators and an xTR does not act on it in a Map-Notify.
* Forwarded ECM: lispd sets the E (to-ETR) bit of RFC 9301 section 5.8 when its Map-Server
  forwards to an ETR; OOR leaves it clear.  lispd as ETR answers OOR's E-less ECM anyway.
* RLOC-probe replies: lispd reports the TTL the probe arrived with in the Map-Reply's reserved
  byte (as lispers.net does, for hop counts); OOR leaves it 0.  Receivers ignore it.
* SMR-invoked Map-Request: lispd asks for the SMR's source EID as a host route with no source
  EID, the ECM's inner source its own RLOC (what OOR's xtr2 did, frame 28 of the SMR capture);
  OOR's xtr1 (frame 17) asked for the cached /25 from a source EID of its own.  RFC 9301
  section 6.1 names the EID to look up again, not the prefix length nor the source EID.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest

from lispd.cli.decode import decode_capture
from lispd.config import parse_config
from lispd.node import Node
from lispd.node.actions import SendDatagram
from lispd.tools.pcap import ip_payload, read_file
from lispd.wire import auth
from lispd.wire.control import decode_control, encode_control
from lispd.wire.ecm import EncapsulatedControl
from lispd.wire.ip import parse_udp_datagram
from lispd.wire.mapregister import MapNotify, MapRegister, verify_notify
from lispd.wire.mapreply import MapReply
from lispd.wire.maprequest import MapRequest
from lispd.wire.records import EidRecord
from tests import configs
from tests.external import capture
from tests.unit.fastpath_packets import packed, udp_packet
from tests.unit.socketless import perform

XTR_MS = "oor/oor-xtr-ms-control.pcap"
SMR = "oor/oor-smr.pcap"
FILES = (XTR_MS, SMR)

MS = "192.0.2.10"
XTR1, XTR2 = "192.0.2.1", "192.0.2.2"
SITE1 = ("198.51.100.0/25", "2001:db8:1::/64")
SITE2 = ("198.51.100.128/25", "2001:db8:2::/64")
KEY1, KEY2 = "lab-secret-1", "lab-secret-2"


@dataclass(frozen=True)
class Frame:
    """One LISP control datagram of a capture."""

    index: int
    src: str
    dst: str
    sport: int
    dport: int
    payload: bytes

    @property
    def message(self) -> Any:
        return decode_control(self.payload)


def frames(name: str) -> dict[int, Frame]:
    """The UDP datagrams of a capture, by frame number (tshark's)."""
    out: dict[int, Frame] = {}
    for c in read_file(str(capture(name))):
        ip = ip_payload(c.linktype, c.frame)
        assert ip is not None
        d = parse_udp_datagram(ip)
        out[c.index] = Frame(c.index, str(d.ip.src), str(d.ip.dst), d.sport, d.dport, d.payload)
    return out


def site_key(records: tuple[EidRecord, ...]) -> bytes:
    """The key of the site the records' EID-prefixes belong to."""
    eid = records[0].eid
    if any(eid in ip_network(p) for p in SITE1):  # type: ignore[operator]
        return KEY1.encode()
    assert any(eid in ip_network(p) for p in SITE2)  # type: ignore[operator]
    return KEY2.encode()


def answer(all_frames: dict[int, Frame], asked: Frame, nonce: int) -> Frame:
    """The first frame after ``asked`` that its receiver sent with ``nonce`` (ECM: inside)."""
    for f in all_frames.values():
        if f.index <= asked.index or f.src != asked.dst:
            continue
        m = f.message
        inner = m.message if isinstance(m, EncapsulatedControl) else m
        if getattr(inner, "nonce", None) == nonce:
            return f
    raise AssertionError(f"no answer to frame {asked.index} in the capture")


def sent(node: Node) -> list[SendDatagram]:
    """The datagrams the node asks to send (every other action performed and left out)."""
    return [a for a in perform(node) if isinstance(a, SendDatagram)]


def feed(node: Node, f: Frame, now: float) -> list[SendDatagram]:
    """Frame ``f`` to the node's control socket (bound to ``f.dst``); what it sends back."""
    node.control_datagram(f.payload, 64, f.src, f.sport, now, f.dst)
    return sent(node)


def without_local(records: tuple[EidRecord, ...]) -> tuple[EidRecord, ...]:
    """``records`` with every locator's L bit cleared."""
    return tuple(
        dataclasses.replace(
            r, locators=tuple(dataclasses.replace(loc, local=False) for loc in r.locators)
        )
        for r in records
    )


# --- every frame -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FILES)
def test_every_frame_decodes_and_encodes_back_to_its_bytes(name: str) -> None:
    objs = list(decode_capture(Path(capture(name)).read_bytes()))
    assert objs and not [o for o in objs if "error" in o]
    for f in frames(name).values():
        assert encode_control(f.message) == f.payload, f"frame {f.index}"


@pytest.mark.parametrize("name", FILES)
def test_every_hmac_verifies_with_its_sites_key_only(name: str) -> None:
    signed = 0
    for f in frames(name).values():
        m = f.message
        if isinstance(m, MapRegister):
            key = site_key(m.records)
            assert auth.verify(f.payload, key), f"frame {f.index}"
            assert not auth.verify(f.payload, b"lab-secret-0")
            signed += 1
        elif isinstance(m, MapNotify):
            key = site_key(m.records)
            assert verify_notify(f.payload, key), f"frame {f.index}"
            assert not verify_notify(f.payload, b"lab-secret-0")
            signed += 1
    assert signed == {XTR_MS: 12, SMR: 12}[name]


# --- lispd as the Map-Server/Map-Resolver ------------------------------------------------------


def map_server() -> Node:
    sites = [configs.site("site1", KEY1, *SITE1), configs.site("site2", KEY2, *SITE2)]
    node = Node(parse_config(configs.toml(configs.msmr("ms", [MS], sites))), 0.0)
    perform(node)
    return node


@pytest.mark.parametrize("name", FILES)
def test_map_server_answers_each_map_register_with_oors_map_notify(name: str) -> None:
    """RFC 9301 section 5.7: the Map-Notify carries the Map-Register's nonce and records and
    is signed with the site's key.  lispd keeps the L bits of the records as registered; OOR
    clears them (see the module docstring)."""
    all_frames = frames(name)
    node = map_server()
    answered = 0
    for f in all_frames.values():
        register = f.message
        if not isinstance(register, MapRegister):
            continue
        (out,) = feed(node, f, float(f.index))
        notify = decode_control(out.payload)
        oor_frame = answer(all_frames, f, register.nonce)
        oor = oor_frame.message
        assert isinstance(notify, MapNotify) and isinstance(oor, MapNotify)
        assert (str(out.dst), out.port) == (oor_frame.dst, oor_frame.dport) == (f.src, 4342)
        assert notify.nonce == oor.nonce == register.nonce
        assert notify.key_id == oor.key_id == 1 and len(notify.auth_data) == 20
        assert notify.records == register.records
        assert without_local(notify.records) == oor.records
        assert (notify.xtr_id, notify.site_id, notify.ack) == (oor.xtr_id, oor.site_id, oor.ack)
        assert verify_notify(out.payload, site_key(register.records))
        answered += 1
    assert answered == {XTR_MS: 6, SMR: 6}[name]
    assert node.counters.drops == {} and not +node.control.drops


@pytest.mark.parametrize("name", FILES)
def test_map_server_forwards_or_proxy_replies_like_oors(name: str) -> None:
    """Every ECM Map-Request sent to the MS, fed after the registrations before it: site 2
    registered without the P bit, so the request goes on to xtr2 in an ECM (E bit set by lispd,
    clear in OOR's: see the module docstring), the Map-Request inside unchanged; site 1 asked
    for proxy replies, so the Map-Server answers itself, non-authoritative, with the
    registered record (RFC 9301 section 8.3)."""
    all_frames = frames(name)
    node = map_server()
    forwarded = proxied = 0
    for f in all_frames.values():
        m = f.message
        if isinstance(m, MapRegister):
            feed(node, f, float(f.index))
            continue
        if not (isinstance(m, EncapsulatedControl) and f.dst == MS):
            continue
        request = m.message
        assert isinstance(request, MapRequest)
        (out,) = feed(node, f, float(f.index))
        oor_frame = answer(all_frames, f, request.nonce)
        oor = oor_frame.message
        assert (str(out.dst), out.port) == (oor_frame.dst, oor_frame.dport)
        mine = decode_control(out.payload)
        if isinstance(oor, EncapsulatedControl):
            assert isinstance(mine, EncapsulatedControl)
            assert mine.message == oor.message == request
            assert mine.inner_ip == oor.inner_ip == m.inner_ip
            assert (mine.sport, mine.dport) == (oor.sport, oor.dport)
            assert mine.to_etr and not oor.to_etr
            assert str(out.dst) == XTR2
            forwarded += 1
        else:
            assert isinstance(oor, MapReply) and isinstance(mine, MapReply)
            assert mine.nonce == oor.nonce == request.nonce
            assert mine.records == oor.records
            assert not mine.probe and not oor.probe
            assert not mine.records[0].authoritative  # a proxy reply (RFC 9301 section 5.4)
            proxied += 1
    assert (forwarded, proxied) == {XTR_MS: (4, 4), SMR: (2, 2)}[name]
    assert node.counters.drops == {} and not +node.control.drops


# --- lispd as an ETR ---------------------------------------------------------------------------


def etr(rloc: str, prefixes: tuple[str, ...], key: str, ttl: int, priority: int = 1) -> Node:
    """An xTR like OOR's at ``rloc`` (records of ``ttl`` minutes, ``priority``, weight 100)."""
    doc = configs.xtr(
        f"xtr-{rloc}",
        [rloc],
        database_mapping=[
            configs.mapping(p, {"address": rloc, "priority": priority, "weight": 100})
            for p in prefixes
        ],
        map_server=[configs.map_server(MS, key, key_id=1)],
        map_resolver=configs.addresses(MS),
        registration={"record-ttl": ttl},
        probing={"map-cache": False},
    )
    node = Node(parse_config(configs.toml(doc)), 0.0)
    perform(node)  # its own first Map-Registers
    return node


ETRS = {XTR1: (SITE1, KEY1, 10), XTR2: (SITE2, KEY2, 1440)}


def etr_for(address: str, f: Frame, all_frames: dict[int, Frame]) -> Node:
    """lispd in the place of OOR's xTR at ``address``, with the priority OOR's gave in the
    Map-Reply it sent for ``f`` (xtr2 registers priority 2 halfway through the SMR capture)."""
    prefixes, key, ttl = ETRS[address]
    request = f.message.message if isinstance(f.message, EncapsulatedControl) else f.message
    reply = answer(all_frames, f, request.nonce).message
    assert isinstance(reply, MapReply)
    return etr(address, prefixes, key, ttl, reply.records[0].locators[0].priority)


@pytest.mark.parametrize("name", FILES)
def test_etr_answers_forwarded_map_requests_and_probes_like_oors(name: str) -> None:
    """What the MS forwarded (an ECM, no E bit) and every RLOC-probe, to lispd in the place of
    the OOR xTR it went to.  The Map-Reply goes to the ITR-RLOC from port 4342 with the
    request's nonce and the ETR's authoritative record, L bit set (RFC 9301 section 5.4); a
    probe's reply has the P bit and flags the locator the probe was sent to (RFC 9301 sections
    5.4 and 7.1)."""
    all_frames = frames(name)
    replies = probes = 0
    for f in all_frames.values():
        m = f.message
        if f.dst not in ETRS or (f.src == MS and not isinstance(m, EncapsulatedControl)):
            continue
        request = m.message if isinstance(m, EncapsulatedControl) else m
        if not isinstance(request, MapRequest) or request.smr:
            continue
        node = etr_for(f.dst, f, all_frames)
        (out,) = feed(node, f, 10.0)
        mine = decode_control(out.payload)
        oor_frame = answer(all_frames, f, request.nonce)
        oor = oor_frame.message
        assert isinstance(mine, MapReply) and isinstance(oor, MapReply)
        assert (str(out.dst), out.port) == (oor_frame.dst, oor_frame.dport)
        assert str(out.dst) == str(request.itr_rlocs[0])
        assert mine.nonce == oor.nonce == request.nonce
        assert mine.probe == oor.probe == request.probe
        assert mine.records == oor.records
        (locator,) = mine.records[0].locators
        assert locator.local and locator.probed == request.probe
        if request.probe:
            assert str(locator.address) == f.dst
            assert mine.reported_ttl == 64 and oor.reported_ttl == 0  # module docstring
            probes += 1
        else:
            replies += 1
    assert (replies, probes) == {XTR_MS: (4, 3), SMR: (2, 3)}[name]


# --- lispd as an xTR given SMRs ----------------------------------------------------------------


def resolved_xtr(
    address: str, source: str, destination: str, reply: Frame
) -> tuple[Node, IPv4Address | IPv6Address]:
    """lispd in the place of OOR's xTR at ``address``, its map-cache holding what OOR's got
    in ``reply``: a packet from ``source`` to ``destination`` is resolved and answered by
    ``reply``'s Map-Reply (its nonce made lispd's request's).  Returns the node and its Map-
    Resolver."""
    prefixes, key, ttl = ETRS[address]
    nonces = iter(range(1000, 2000))
    doc = configs.xtr(
        f"xtr-{address}",
        [address],
        list(prefixes),
        map_server=[configs.map_server(MS, key, key_id=1)],
        map_resolver=configs.addresses(MS),
        registration={"record-ttl": ttl},
        probing={"map-cache": False},
    )
    node = Node(parse_config(configs.toml(doc)), 0.0, control_rng=lambda: next(nonces))
    perform(node)
    node.tun_packet(udp_packet(packed(source), packed(destination)), 1.0)
    (asked,) = sent(node)
    ecm = decode_control(asked.payload)
    assert isinstance(ecm, EncapsulatedControl) and isinstance(ecm.message, MapRequest)
    oor_reply = reply.message
    assert isinstance(oor_reply, MapReply)
    answered = dataclasses.replace(oor_reply, nonce=ecm.message.nonce)
    node.control_datagram(encode_control(answered), 64, reply.src, 4342, 1.5, address)
    perform(node)  # the held packet, now encapsulated
    entry = node.mapcache.lookup(0, ip_address(destination))
    assert entry is not None and entry.source == "map-reply"
    return node, asked.dst


def assert_smr_invoked(out: SendDatagram, node_rloc: str, eid: str) -> MapRequest:
    """``out`` is lispd's SMR-invoked Map-Request for ``eid``, to the Map-Resolver in an ECM."""
    ecm = decode_control(out.payload)
    assert isinstance(ecm, EncapsulatedControl) and not ecm.to_etr
    request = ecm.message
    assert isinstance(request, MapRequest)
    assert request.smr_invoked and not request.smr and not request.probe
    assert [str(a) for a in request.itr_rlocs] == [node_rloc]
    assert [(str(r.address), r.mask_len) for r in request.records] == [(eid, 32)]
    assert (str(ecm.inner_ip.src), str(ecm.inner_ip.dst)) == (node_rloc, eid)
    return request


def test_xtr1_sends_the_smr_invoked_request_oors_xtr1_sent() -> None:
    """SMR capture frames 15 and 16: OOR's xtr2 solicits 198.51.100.128 (cached: lispd asks
    the Map-Resolver again, as OOR's xtr1 did in frame 17) and 2001:db8:2:: (not cached by
    xtr1 in this capture: nothing is sent, by OOR either; counted ``smr-not-cached``)."""
    all_frames = frames(SMR)
    node, resolver = resolved_xtr(XTR1, "198.51.100.10", "198.51.100.138", all_frames[9])
    assert str(resolver) == MS
    oor = all_frames[17].message
    assert isinstance(oor, EncapsulatedControl) and oor.message.smr_invoked
    (out,) = feed(node, all_frames[15], 20.0)
    assert (str(out.dst), out.port) == (all_frames[17].dst, all_frames[17].dport)
    request = assert_smr_invoked(out, XTR1, "198.51.100.128")
    # OOR asked for the cached prefix from its own EID (module docstring).
    assert [(str(r.address), r.mask_len) for r in oor.message.records] == [("198.51.100.128", 25)]
    assert str(oor.message.source_eid) == "198.51.100.10"
    assert request.nonce != all_frames[15].message.nonce  # a fresh one
    assert feed(node, all_frames[16], 21.0) == []
    assert node.control.drops["smr-not-cached"] == 1
    assert not [
        f
        for f in all_frames.values()
        if f.index > 17
        and f.src == XTR1
        and isinstance(f.message, EncapsulatedControl)
        and f.message.message.smr_invoked
    ]


def test_xtr2_answers_oors_zero_nonce_smr_as_oors_xtr2_did() -> None:
    """SMR capture frame 24: OOR's xtr1 solicits with nonce 0 (the nonce of an SMR is not
    matched against anything) from source EID 198.51.100.0; xtr2, holding 198.51.100.0/25
    from the MS's proxy reply (frame 11), asks again (frame 28): lispd's request is the one
    OOR's xtr2 sent but for the nonce."""
    all_frames = frames(SMR)
    node, _ = resolved_xtr(XTR2, "198.51.100.138", "198.51.100.10", all_frames[11])
    smr = all_frames[24].message
    assert isinstance(smr, MapRequest) and smr.smr and smr.nonce == 0
    (out,) = feed(node, all_frames[24], 30.0)
    oor_frame = all_frames[28]
    assert (str(out.dst), out.port) == (oor_frame.dst, oor_frame.dport)
    request = assert_smr_invoked(out, XTR2, "198.51.100.0")
    oor = oor_frame.message
    assert isinstance(oor, EncapsulatedControl)
    assert request == dataclasses.replace(oor.message, nonce=request.nonce)
    assert node.counters.drops == {} and not +node.control.drops
