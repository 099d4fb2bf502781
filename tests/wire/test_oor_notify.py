"""Open Overlay Router's NAT-traversal Map-Notify forms, on the real OOR 1.3.0 captures (found
by :mod:`tests.external`; every test skips when they are absent).

* ``oor-nat-traversal.pcap`` frame 14: the Map-Server's Map-Notify to the RTR, I and R bits,
  ending with a 24-byte MS-RTR authentication block (key-id 1, 20 bytes of HMAC-SHA-1);
* frames 15 and 16 (outside and inside the NAT): the RTR's data-Map-Notify, the same message in
  a LISP data packet with IID 0xFFFFFF, carrying the 4-byte empty block (key-id 0, length 0).

Keys from the captures' README: site 1 ``lab-secret-1``, MS-RTR ``rtr-key``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lispd.cli.decode import decode_capture
from lispd.tools.pcap import ip_payload, read_file
from lispd.wire.control import decode_control, encode_control
from lispd.wire.ip import parse_udp_datagram
from lispd.wire.mapregister import (
    MapNotify,
    RtrAuth,
    encode_signed,
    verify_notify,
    verify_rtr_auth,
)
from lispd.wire.packet import decode_ip_packet
from tests.external import capture

SITE1_KEY = b"lab-secret-1"
RTR_KEY = b"rtr-key"
NAT = "oor/oor-nat-traversal.pcap"
OOR_FILES = (
    "oor/oor-xtr-ms-control.pcap",
    "oor/oor-nat-traversal.pcap",
    "oor/oor-ddt-referrals.pcap",
    "oor/oor-smr.pcap",
)
FRAMES = {
    "oor/oor-xtr-ms-control.pcap": 38,
    NAT: 20,
    "oor/oor-ddt-referrals.pcap": 42,
    "oor/oor-smr.pcap": 31,
}


def _frames(name: str) -> dict[int, bytes]:
    """The IP packets of a capture, by frame number."""
    out: dict[int, bytes] = {}
    for c in read_file(str(capture(name))):
        ip = ip_payload(c.linktype, c.frame)
        if ip is not None:
            out[c.index] = ip
    return out


def _udp_payload(ip: bytes) -> bytes:
    return parse_udp_datagram(ip).payload


@pytest.mark.parametrize("name", OOR_FILES)
def test_every_oor_frame_decodes(name: str) -> None:
    """No ``"error"`` line from ``lispd decode``: every frame of OOR's captures, the DDT
    Map-Referrals (RFC 8111 section 6.4) included, decodes."""
    objs = list(decode_capture(Path(capture(name)).read_bytes()))
    assert objs
    assert len(objs) == FRAMES[name]
    assert [o for o in objs if "error" in o] == []


def test_map_notify_to_rtr() -> None:
    raw = _udp_payload(_frames(NAT)[14])
    msg = decode_control(raw)
    assert isinstance(msg, MapNotify)
    assert msg.for_rtr and msg.xtr_id is not None and msg.site_id == 0
    assert msg.rtr_auth is not None
    assert msg.rtr_auth.key_id == 1 and len(msg.rtr_auth.data) == 20
    assert encode_control(msg) == raw
    assert verify_notify(raw, SITE1_KEY)
    assert verify_rtr_auth(raw, RTR_KEY)
    assert not verify_rtr_auth(raw, SITE1_KEY)
    # lispd's signer reproduces OOR's bytes from the decoded fields and the two keys.
    assert encode_signed(msg, SITE1_KEY, RTR_KEY) == raw


@pytest.mark.parametrize("frame", [15, 16], ids=["outside-nat", "inside-nat"])
def test_data_map_notify(frame: int) -> None:
    frames = _frames(NAT)
    pkt = decode_ip_packet(frames[frame])
    assert pkt is not None and pkt.error is None
    assert pkt.kind == "data" and pkt.message is not None and pkt.message.iid == 0xFFFFFF
    assert pkt.inner is not None
    msg = pkt.inner.message
    assert isinstance(msg, MapNotify)
    assert msg.rtr_auth == RtrAuth()
    raw = encode_control(msg)
    assert raw.endswith(bytes(4))
    assert verify_notify(raw, SITE1_KEY)
    assert not verify_rtr_auth(raw, RTR_KEY)
    # The same Map-Notify the Map-Server sent the RTR, its MS-RTR block swapped for the empty one.
    to_rtr = _udp_payload(frames[14])
    assert raw == to_rtr[:-24] + bytes(4)
    assert encode_signed(msg, SITE1_KEY) == raw
