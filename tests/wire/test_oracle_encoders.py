"""tshark as the independent oracle for our ENCODERS.

Every case builds a message with lispd's encoders, frames it with scapy
(:func:`tests.oracle.udp_packet`), and hands all cases to ONE tshark run (a module-scoped
fixture).  Each case then asserts that tshark finds the frame clean (no malformed mark, no
warning/error expert item, no undissected LISP bytes) and that tshark's ``lisp.*`` (and
``lisp-data.*``) fields are *exactly* what :func:`lisp_fields` / :func:`data_fields` predict
from the message object we encoded: every key, every value, in order of appearance.

:func:`lisp_fields` is the model -> tshark view: it walks a decoded/constructed message in wire
order and writes down the fields tshark 4.0.17 shows for it (names and formats from the
cheat-sheet in ``tests/oracle.py``).  ``tests/wire/test_captures.py`` uses the same function on
real captures from other implementations, so the view itself is checked against bytes we did
not write.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from lispd.wire import auth
from lispd.wire.address import (
    NO_ADDRESS,
    Address,
    AfiListAddress,
    DistinguishedName,
    ElpAddress,
    ElpHop,
    InstanceIdAddress,
    MacAddress,
    NatTraversalAddress,
    NoAddress,
    encode_address,
)
from lispd.wire.control import ControlMessage, decode_control, encode_control
from lispd.wire.data import (
    DataHeader,
    EncapsulatedPacket,
    decode_data_header,
    encapsulate,
    encode_data_header,
)
from lispd.wire.ecm import EncapsulatedControl
from lispd.wire.errors import WireError
from lispd.wire.info import InfoMessage, encode_info_signed
from lispd.wire.ip import (
    IPv4Header,
    IPv6Header,
    UdpDatagram,
    build_udp_datagram,
    parse_udp_datagram,
)
from lispd.wire.mapregister import MapNotify, MapRegister, RtrAuth, encode_signed
from lispd.wire.mapreply import MapReply
from lispd.wire.maprequest import MapRequest
from lispd.wire.records import Action, EidPrefix, EidRecord, Locator
from tests import oracle

pytestmark = oracle.TSHARK_MARKS

# ---------------------------------------------------------------------------------------------
# The model -> tshark view (also imported by test_captures.py)
# ---------------------------------------------------------------------------------------------

Fields = dict[str, list[str]]


def _hex(value: int, digits: int) -> str:
    return f"0x{value:0{digits}x}"


def _colon(data: bytes) -> str:
    return ":".join(f"{b:02x}" for b in data)


def _bit(on: bool) -> str:
    return "1" if on else "0"


def _add(f: Fields, key: str, value: object) -> None:
    f.setdefault(key, []).append(str(value))


def _address(
    f: Fields, addr: Address, afi_key: str, v4_key: str, v6_key: str, other_key: str = ""
) -> None:
    """AFI + address as tshark shows it under the given field names (LCAFs: lisp.lcaf.*).
    ``other_key`` names the field of a MAC / distinguished name where tshark decodes one."""
    raw = encode_address(addr)
    _add(f, afi_key, int.from_bytes(raw[:2], "big"))
    if isinstance(addr, IPv4Address):
        _add(f, v4_key, addr)
    elif isinstance(addr, IPv6Address):
        _add(f, v6_key, addr)
    elif isinstance(addr, NoAddress):
        pass
    elif isinstance(addr, MacAddress | DistinguishedName) and other_key:
        _add(f, other_key, addr if isinstance(addr, MacAddress) else addr.name)
    else:
        _lcaf(f, addr, raw)


def _lcaf(f: Fields, addr: Address, raw: bytes) -> None:
    rsvd1, flags, lcaf_type, rsvd2, length = struct.unpack("!BBBBH", raw[2:8])
    assert length == len(raw) - 8
    _add(f, "lisp.lcaf.header", _colon(raw[2:8]))
    _add(f, "lisp.lcaf.res1", _hex(rsvd1, 2))
    _add(f, "lisp.lcaf.flags", _hex(flags, 2))
    _add(f, "lisp.lcaf.type", lcaf_type)
    _add(f, "lisp.lcaf.res2", _hex(rsvd2, 2))
    _add(f, "lisp.lcaf.length", length)
    if isinstance(addr, InstanceIdAddress):
        assert (lcaf_type, rsvd2) == (2, addr.iid_mask_len)
        _add(f, "lisp.lcaf.iid", addr.iid)
        _address(
            f,
            addr.address,
            "lisp.lcaf.iid.afi",
            "lisp.lcaf.iid.ipv4",
            "lisp.lcaf.iid.ipv6",
            "lisp.lcaf.iid.mac",
        )
    elif isinstance(addr, AfiListAddress):
        assert lcaf_type == 1
        for item in addr.addresses:
            _address(
                f,
                item,
                "lisp.lcaf.afi_list.afi",
                "lisp.lcaf.afi_list.ipv4",
                "lisp.lcaf.afi_list.ipv6",
            )
    elif isinstance(addr, ElpAddress):
        assert lcaf_type == 10
        for hop in addr.hops:
            bits = (hop.lookup << 2) | (hop.probe << 1) | int(hop.strict)
            _add(f, "lisp.lcaf.elp_hop.flags", _hex(bits, 4))
            _add(f, "lisp.lcaf.elp_hop.flags.res", "0x0000")
            _add(f, "lisp.lcaf.elp_hop.flags.local", _bit(hop.lookup))
            _add(f, "lisp.lcaf.elp_hop.flags.probe", _bit(hop.probe))
            _add(f, "lisp.lcaf_elp_hop.flags.strict", _bit(hop.strict))
            _address(
                f,
                hop.address,
                "lisp.lcaf.elp_hop.afi",
                "lisp.lcaf.elp_hop.ipv4",
                "lisp.lcaf.elp_hop.ipv6",
            )
    elif isinstance(addr, NatTraversalAddress):
        assert lcaf_type == 7
        _add(f, "lisp.lcaf.natt.msport", addr.ms_port)
        _add(f, "lisp.lcaf.natt.etrport", addr.etr_port)
        for rloc in (addr.global_etr_rloc, addr.ms_rloc, addr.private_etr_rloc, *addr.rtr_rlocs):
            _address(
                f,
                rloc,
                "lisp.lcaf.natt.rloc.afi",
                "lisp.lcaf.natt.rloc.ipv4",
                "lisp.lcaf.natt.rloc.ipv6",
            )
    else:
        raise AssertionError(f"no tshark view written for {addr!r}")


def _locator(f: Fields, loc: Locator) -> None:
    _add(f, "lisp.loc.priority", loc.priority)
    _add(f, "lisp.loc.weight", loc.weight)
    _add(f, "lisp.loc.multicast_priority", loc.m_priority)
    _add(f, "lisp.loc.multicast_weight", loc.m_weight)
    bits = (loc.reserved << 3) | (loc.local << 2) | (loc.probed << 1) | loc.reachable
    _add(f, "lisp.loc.flags", _hex(bits, 4))
    _add(f, "lisp.loc.flags.res", _hex(loc.reserved, 4))
    _add(f, "lisp.loc.flags.local", _bit(loc.local))
    _add(f, "lisp.loc.flags.probe", _bit(loc.probed))
    _add(f, "lisp.loc.flags.reach", _bit(loc.reachable))
    _address(
        f, loc.address, "lisp.loc.afi", "lisp.loc.locator", "lisp.loc.locator", "lisp.loc.locator"
    )


def _eid_record(f: Fields, rec: EidRecord) -> None:
    _add(f, "lisp.mapping.ttl", rec.ttl)
    _add(f, "lisp.mapping.loccnt", len(rec.locators))
    _add(f, "lisp.mapping.eid.masklen", rec.mask_len)
    _add(f, "lisp.mapping.act", int(rec.action))
    _add(f, "lisp.mapping.auth", _bit(rec.authoritative))
    # tshark's res1 is the 12 bits after A (our incomplete bit + 11 reserved), res2 the 4 bits
    # before the map-version.
    _add(f, "lisp.mapping.res1", _hex((rec.incomplete << 11) | (rec.reserved >> 4), 4))
    _add(f, "lisp.mapping.res2", _hex(rec.reserved & 0xF, 4))
    _add(f, "lisp.mapping.ver", rec.map_version)
    _address(f, rec.eid, "lisp.mapping.eid.afi", "lisp.mapping.eid.ipv4", "lisp.mapping.eid.ipv6")
    for loc in rec.locators:
        _locator(f, loc)


def _auth_block(f: Fields, key_id: int, auth_data: bytes) -> None:
    _add(f, "lisp.keyid", _hex(key_id, 4))
    _add(f, "lisp.authlen", len(auth_data))
    _add(f, "lisp.auth", _colon(auth_data))


def _ids(f: Fields, xtr_id: int | None, site_id: int | None) -> None:
    if xtr_id is not None and site_id is not None:
        _add(f, "lisp.xtrid", _colon(xtr_id.to_bytes(16, "big")))
        _add(f, "lisp.siteid", _colon(site_id.to_bytes(8, "big")))


def _map_request(f: Fields, m: MapRequest) -> None:
    _add(f, "lisp.type", 1)
    bits = (m.authoritative << 5) | ((m.map_reply is not None) << 4) | (m.probe << 3)
    bits |= (m.smr << 2) | (m.pitr << 1) | int(m.smr_invoked)
    _add(f, "lisp.mreq.flags", _hex(bits, 6))
    _add(f, "lisp.mreq.flags.auth", _bit(m.authoritative))
    _add(f, "lisp.mreq.flags.mrp", _bit(m.map_reply is not None))
    _add(f, "lisp.mreq.flags.probe", _bit(m.probe))
    _add(f, "lisp.mreq.flags.smr", _bit(m.smr))
    _add(f, "lisp.mreq.flags.pitr", _bit(m.pitr))
    _add(f, "lisp.mreq.flags.smri", _bit(m.smr_invoked))
    res = m.reserved | (m.local_xtr << 14) | (m.dont_map_reply << 13)
    _add(f, "lisp.mreq.res", _hex(res >> 13, 6))
    _add(f, "lisp.irc", len(m.itr_rlocs) - 1)
    _add(f, "lisp.records", len(m.records))
    _add(f, "lisp.nonce", _hex(m.nonce, 16))
    _address(
        f, m.source_eid, "lisp.mreq.srceid.afi", "lisp.mreq.srceid.ipv4", "lisp.mreq.srceid_ipv6"
    )
    if isinstance(m.source_eid, NoAddress):
        _add(f, "lisp.mreq.srceid.string", "not set")
    for rloc in m.itr_rlocs:
        _address(
            f, rloc, "lisp.mreq.itr_rloc.afi", "lisp.mreq.itr_rloc_ipv4", "lisp.mreq.itr_rloc_ipv6"
        )
    for rec in m.records:
        _add(f, "lisp.mreq.record.res", "0x00")
        _add(f, "lisp.mreq.record.prefix.length", rec.mask_len)
        _address(
            f,
            rec.address,
            "lisp.mreq.record.prefix.afi",
            "lisp.mreq.record.prefix.ipv4",
            "lisp.mreq.record.prefix.ipv6",
        )
    if m.map_reply is not None:
        _eid_record(f, m.map_reply)


def _map_reply(f: Fields, m: MapReply) -> None:
    _add(f, "lisp.type", 2)
    _add(f, "lisp.mrep.flags.probe", _bit(m.probe))
    _add(f, "lisp.mrep.flags.enlr", _bit(m.echo_nonce_capable))
    _add(f, "lisp.mrep.flags.sec", _bit(m.security_data is not None))
    _add(f, "lisp.mrep.res", _hex((m.reserved >> 8) | m.reported_ttl, 6))
    _add(f, "lisp.records", len(m.records))
    _add(f, "lisp.nonce", _hex(m.nonce, 16))
    for rec in m.records:
        _eid_record(f, rec)


def _map_register(f: Fields, m: MapRegister) -> None:
    _add(f, "lisp.type", 3)
    _add(f, "lisp.mreg.flags.pmr", _bit(m.proxy_reply))
    _add(f, "lisp.mreg.flags.sec", _bit(m.security_capable))
    _add(f, "lisp.mreg.flags.xtrid", _bit(m.xtr_id is not None))
    _add(f, "lisp.mreg.flags.rtr", _bit(m.for_rtr))
    res = m.reserved | (m.eid_notify << 12) | (m.ttl_timeout << 11) | (m.merge << 10)
    _add(f, "lisp.mreg.res", _hex(res >> 9, 6))
    _add(f, "lisp.mreg.flags.wmn", _bit(m.want_map_notify))
    _add(f, "lisp.records", len(m.records))
    _add(f, "lisp.nonce", _hex(m.nonce, 16))
    _auth_block(f, m.key_id, m.auth_data)
    for rec in m.records:
        _eid_record(f, rec)
    _ids(f, m.xtr_id, m.site_id)


def _map_notify(f: Fields, m: MapNotify) -> None:
    if m.ack:  # tshark 4.0 does not dissect Map-Notify-Ack beyond its type
        _add(f, "lisp.type", 5)
        return
    _add(f, "lisp.type", 4)
    _add(f, "lisp.mnot.flags.xtrid", _bit(m.xtr_id is not None))
    _add(f, "lisp.mnot.flags.rtr", _bit(m.for_rtr))
    _add(f, "lisp.mnot.res", _hex(m.reserved >> 8, 6))
    _add(f, "lisp.records", len(m.records))
    _add(f, "lisp.nonce", _hex(m.nonce, 16))
    _auth_block(f, m.key_id, m.auth_data)
    for rec in m.records:
        _eid_record(f, rec)
    _ids(f, m.xtr_id, m.site_id)
    if m.rtr_auth is not None:
        _add(f, "lisp.msrtr.keyid", _hex(m.rtr_auth.key_id, 4))
        _add(f, "lisp.msrtr.authlen", len(m.rtr_auth.data))
        if m.rtr_auth.data:
            _add(f, "lisp.msrtr.auth", _colon(m.rtr_auth.data))


def _info(f: Fields, m: InfoMessage) -> None:
    _add(f, "lisp.type", 7)
    _add(f, "lisp.info.r", _bit(m.reply))
    _add(f, "lisp.info.res1", _hex(m.reserved, 8))
    _add(f, "lisp.nonce", _hex(m.nonce, 16))
    _auth_block(f, m.key_id, m.auth_data)
    _add(f, "lisp.info.ttl", m.ttl)
    _add(f, "lisp.info.res2", "0x00")
    _add(f, "lisp.info.prefix.masklen", m.eid_mask_len)
    if isinstance(m.eid, IPv4Address | IPv6Address | NoAddress):
        _address(f, m.eid, "lisp.info.prefix.afi", "lisp.info.prefix.ipv4", "lisp.info.prefix.ipv6")
    else:  # tshark 4.0 puts an LCAF EID-prefix of an Info message only in the subtree label
        _add(f, "lisp.info.prefix.afi", 16387)
    _address(f, m.address, "lisp.info.afi", "lisp.info.ipv4", "lisp.info.ipv6")


def _ecm(f: Fields, m: EncapsulatedControl) -> None:
    _add(f, "lisp.type", 8)
    _add(f, "lisp.ecm.flags.sec", "0")
    _add(f, "lisp.ecm.flags.ddt", _bit(m.ddt))
    res = m.reserved & 0x03FFFFFF
    res |= (m.to_etr << 25) | (m.to_ms << 24) | (m.rtr << 22) | (m.relayed << 21)
    _add(f, "lisp.ecm.res", _hex(res, 8))
    _control(f, m.message)


def _control(f: Fields, m: ControlMessage) -> None:
    views: dict[type, Callable[[Fields, object], None]] = {
        MapRequest: _map_request,
        MapReply: _map_reply,
        MapRegister: _map_register,
        MapNotify: _map_notify,
        InfoMessage: _info,
        EncapsulatedControl: _ecm,
    }
    views[type(m)](f, m)


def lisp_fields(message: ControlMessage) -> Fields:
    """Every ``lisp.*`` field tshark 4.0.17 shows for ``message`` (an ECM includes the fields of
    the message inside it), as :func:`tests.oracle.flatten` lists them."""
    f: Fields = {}
    _control(f, message)
    return f


def data_fields(h: DataHeader) -> Fields:
    """Every ``lisp-data.*`` field tshark shows for a LISP data header (N and V not both set)."""
    flags = encode_data_header(h)[0]
    f: Fields = {}
    _add(f, "lisp-data.flags", _hex(flags, 2))
    _add(f, "lisp-data.flags.nonce", _bit(h.nonce_present))
    _add(f, "lisp-data.flags.lsb", _bit(h.lsb_enabled))
    _add(f, "lisp-data.flags.enr", _bit(h.echo_nonce_request))
    _add(f, "lisp-data.flags.mv", _bit(h.map_version_present))
    _add(f, "lisp-data.flags.iid", _bit(h.instance_id_present))
    _add(f, "lisp-data.flags.res", _hex(flags & 0x07, 2))
    if h.nonce_present:
        _add(f, "lisp-data.nonce", h.nonce)
    if h.map_version_present:
        _add(f, "lisp-data.mapver", _hex((h.source_map_version << 12) | h.dest_map_version, 6))
        _add(f, "lisp-data.srcmapver", h.source_map_version)
        _add(f, "lisp-data.dstmapver", h.dest_map_version)
    if h.instance_id_present:
        _add(f, "lisp-data.iid", h.instance_id)
    if h.lsb_enabled:
        if h.instance_id_present:
            _add(f, "lisp-data.lsb8", _hex(h.lsbs, 2))
        else:
            _add(f, "lisp-data.lsb", _hex(h.lsbs, 8))
    return f


def frame_fields(frame: dict[str, list[str]], prefix: str = "lisp.") -> Fields:
    """The fields of a flattened tshark frame whose names start with ``prefix``."""
    return {k: v for k, v in frame.items() if k.startswith(prefix)}


# ---------------------------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------------------------

NONCE = 0x0123456789ABCDEF
RLOC4 = ip_address("192.0.2.1")
RLOC4B = ip_address("192.0.2.2")
RLOC4C = ip_address("192.0.2.3")
RLOC6 = ip_address("2001:db8::1")
RLOC6B = ip_address("2001:db8::2")
MS4 = ip_address("192.0.2.100")
MS6 = ip_address("2001:db8::100")
EID4 = ip_address("198.51.100.0")
EID4_HOST = ip_address("198.51.100.17")
EID6 = ip_address("2001:db8:100::")
EID6_HOST = ip_address("2001:db8:100::17")
OUTSIDE4 = ip_address("203.0.113.0")
KEY = b"lispd-oracle-key"
XTR_ID = 0x000102030405060708090A0B0C0D0E0F
SITE_ID = 0xFEDCBA9876543210
SHA = {auth.KeyId.HMAC_SHA_1_96: hashlib.sha1, auth.KeyId.HMAC_SHA_256_128: hashlib.sha256}


@dataclass(frozen=True)
class Case:
    """One packet shown to tshark and what tshark must see in it.

    ``message`` is the control message whose ``lisp.*`` view is expected (None for a data
    packet carrying no control message); ``header`` the data header of a data packet;
    ``extra`` fields expected on top of the views; ``trailing`` the ``_trailing`` tshark must
    report (and nothing else may be unclean); ``labels`` subtree labels the tree must
    hold (for values tshark shows only there); ``outer`` / ``inner`` exact values of
    non-LISP fields as the *first* / *last* value of each key (outer and inner IP/UDP headers
    of ECMs and data packets).
    """

    packet: bytes
    message: ControlMessage | None = None
    header: DataHeader | None = None
    extra: Fields = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    trailing: tuple[str, ...] = ()  # bytes tshark 4.0 does not dissect (LISP-SEC data)
    outer: dict[str, str] = field(default_factory=dict)
    inner: dict[str, str] = field(default_factory=dict)
    wire: bytes = b""  # the LISP bytes our decoder must read back into ``message``/``header``


def _hmac(m: MapRegister | MapNotify | InfoMessage, key: bytes) -> bytes:
    """The HMAC computed here, independently of lispd.wire.auth, over the message encoded with
    a zeroed authentication field (a Map-Notify's MS-RTR block, if any, left out)."""
    digest = SHA[auth.KeyId(m.key_id)]
    blank = replace(m, auth_data=bytes(digest().digest_size))
    raw = encode_control(blank)
    if isinstance(m, MapNotify) and m.rtr_auth is not None:
        raw = raw[: len(raw) - 4 - len(m.rtr_auth.data)]
    return hmac.new(key, raw, digest).digest()


def _control_case(
    message: ControlMessage,
    wire: bytes | None = None,
    *,
    v6: bool = False,
    sport: int = 4342,
    dport: int = 4342,
    extra: Fields | None = None,
    inner: dict[str, str] | None = None,
) -> Case:
    wire = encode_control(message) if wire is None else wire
    src, dst = ("2001:db8::a", "2001:db8::b") if v6 else ("192.0.2.10", "192.0.2.11")
    return Case(
        oracle.udp_packet(src, dst, sport, dport, wire),
        message=message,
        extra=extra or {},
        outer={"ipv6.src" if v6 else "ip.src": src, "udp.srcport": str(sport)},
        inner=inner or {},
        wire=wire,
    )


def _signed(message: MapRegister | MapNotify, **kw: object) -> Case:
    """A Map-Register/Map-Notify signed by encode_signed; the expected auth data is our own
    HMAC, and lispd's verify must accept the bytes."""
    wire = encode_signed(message, KEY)
    assert auth.verify(wire, KEY)
    assert not auth.verify(wire, KEY + b"x")
    return _control_case(replace(message, auth_data=_hmac(message, KEY)), wire, **kw)


# --- Map-Request ------------------------------------------------------------------------------

_REC4 = EidPrefix(EID4_HOST, 32)
_REC6 = EidPrefix(EID6, 48)
_REC6_IID = EidPrefix(InstanceIdAddress(1, EID6), 64)
_POSITIVE = EidRecord(
    EID4,
    24,
    (
        Locator(RLOC4, priority=1, weight=50, m_priority=255, m_weight=0, local=True),
        Locator(RLOC4B, priority=1, weight=50, m_priority=7, m_weight=9, probed=True),
        Locator(RLOC6, priority=2, weight=100, m_priority=1, m_weight=100, reachable=False),
    ),
    ttl=1440,
    authoritative=True,
    map_version=17,
)

MAP_REQUESTS: dict[str, MapRequest] = {
    "plain": MapRequest(NONCE, (_REC4,), (RLOC4,)),
    "probe": MapRequest(1, (_REC6,), (RLOC4,), source_eid=EID6_HOST, probe=True),
    "smr": MapRequest(
        2, (_REC4,), (RLOC4,), source_eid=EID4_HOST, smr=True, pitr=True, smr_invoked=True
    ),
    "map-data": MapRequest(3, (EidPrefix(EID4, 24),), (RLOC4,), map_reply=_POSITIVE),
    "itr-v6": MapRequest(4, (_REC6,), (RLOC4, RLOC6), authoritative=True),
    "iid-source": MapRequest(
        5,
        (_REC6_IID,),
        (RLOC6,),
        source_eid=InstanceIdAddress(1, EID6_HOST),
        local_xtr=True,
        dont_map_reply=True,
    ),
    "two-records": MapRequest(
        0xFFFFFFFFFFFFFFFF,
        (EidPrefix(InstanceIdAddress(0xFFFFFF, EID4), 24), _REC6),
        (RLOC6, RLOC4, RLOC6B),
        source_eid=EID4_HOST,
        smr_invoked=True,
    ),
}

# --- Map-Reply --------------------------------------------------------------------------------

_ELP = ElpAddress(
    (
        ElpHop(RLOC4, lookup=True),
        ElpHop(RLOC6, probe=True, strict=True),
        ElpHop(RLOC4C, lookup=True, probe=True, strict=True),
    )
)
_AFI_LIST = AfiListAddress((RLOC4B, RLOC6B))

MAP_REPLIES: dict[str, MapReply] = {
    "positive": MapReply(NONCE, (_POSITIVE,)),
    "probe-reply": MapReply(
        7,
        (replace(_POSITIVE, eid=EID6, mask_len=48, ttl=0xFFFFFFFF, map_version=4095),),
        probe=True,
        echo_nonce_capable=True,
        reported_ttl=61,
    ),
    "reported-ttl": MapReply(8, (_POSITIVE,), reported_ttl=255),
    "two-records-iid": MapReply(
        9,
        (
            replace(_POSITIVE, eid=InstanceIdAddress(1, EID4, iid_mask_len=32)),
            EidRecord(
                InstanceIdAddress(0xFFFFFF, EID6),
                64,
                # priority 255 (never used) and unused flag bits, which are re-sent as received
                (Locator(RLOC6), Locator(RLOC6B, 255, 0, 255, 0, reserved=0x1001)),
                ttl=0,
            ),
        ),
    ),
    "elp-and-afi-list": MapReply(
        10,
        (
            EidRecord(
                EID4,
                28,
                (Locator(_ELP, priority=1), Locator(_AFI_LIST, priority=2, local=True)),
                ttl=60,
            ),
        ),
    ),
    # a MAC EID in an instance-ID (what tshark 4.0 decodes of L2 EIDs), a host-name locator
    # (AFI 17, as lispers.net sends), and an AFI-0 EID
    "mac-eid-name-locator": MapReply(
        11,
        (
            EidRecord(
                InstanceIdAddress(3, MacAddress(bytes.fromhex("020000c00201"))),
                48,
                (Locator(DistinguishedName("rtr-1.example")), Locator(RLOC4)),
            ),
            EidRecord(NO_ADDRESS, 0, (), ttl=1, action=Action.NATIVELY_FORWARD),
        ),
    ),
}
for _action in Action:
    MAP_REPLIES[f"negative-{_action.name.lower()}"] = MapReply(
        100 + _action,
        (EidRecord(OUTSIDE4, 24, (), ttl=15, action=_action, authoritative=_action % 2 == 0),),
    )

# --- Map-Register / Map-Notify ----------------------------------------------------------------

_REG_RECORDS = (
    EidRecord(EID4, 24, (Locator(RLOC4, local=True), Locator(RLOC6, priority=2)), ttl=1440),
    EidRecord(
        InstanceIdAddress(1, EID6),
        48,
        (Locator(RLOC4B, 1, 50, 255, 0), Locator(RLOC4C, 1, 50, 255, 0)),
        ttl=1440,
        map_version=1,
    ),
)
_SHA1 = auth.KeyId.HMAC_SHA_1_96
_SHA256 = auth.KeyId.HMAC_SHA_256_128

MAP_REGISTERS: dict[str, MapRegister] = {
    "sha1-xtr-id": MapRegister(
        11,
        _REG_RECORDS,
        key_id=_SHA1,
        proxy_reply=True,
        want_map_notify=True,
        xtr_id=XTR_ID,
        site_id=SITE_ID,
    ),
    "sha256-for-rtr": MapRegister(
        12,
        _REG_RECORDS[:1],
        key_id=_SHA256,
        for_rtr=True,
        security_capable=True,
        merge=True,
        xtr_id=(1 << 128) - 1,
        site_id=1,
    ),
    "sha256-eid-notify": MapRegister(
        13, _REG_RECORDS, key_id=_SHA256, eid_notify=True, ttl_timeout=True, want_map_notify=True
    ),
}

MAP_NOTIFIES: dict[str, MapNotify] = {
    "sha1-xtr-id": MapNotify(14, _REG_RECORDS, key_id=_SHA1, xtr_id=XTR_ID, site_id=SITE_ID),
    "sha256-plain": MapNotify(15, _REG_RECORDS[:1], key_id=_SHA256),
}

# --- Info -------------------------------------------------------------------------------------

_NAT = NatTraversalAddress(
    4342,
    61001,
    ip_address("203.0.113.7"),
    MS4,
    ip_address("192.0.2.130"),
    (ip_address("192.0.2.50"), RLOC6B, ip_address("192.0.2.51"), ip_address("2001:db8::52")),
)
INFOS: dict[str, InfoMessage] = {
    "request": InfoMessage(21, key_id=_SHA1, eid=EID4, eid_mask_len=24),
    "request-v6-iid": InfoMessage(
        22, key_id=_SHA256, eid=InstanceIdAddress(5, EID6), eid_mask_len=48
    ),
    "reply": InfoMessage(
        23, reply=True, key_id=_SHA1, ttl=1440, eid=EID4, eid_mask_len=24, address=_NAT
    ),
    "reply-no-private": InfoMessage(
        24,
        reply=True,
        key_id=_SHA256,
        ttl=15,
        eid=EID6,
        eid_mask_len=48,
        address=replace(_NAT, private_etr_rloc=NO_ADDRESS, global_etr_rloc=RLOC6),
    ),
}

# --- ECM --------------------------------------------------------------------------------------

ECMS: dict[str, EncapsulatedControl] = {
    "v4-in-v4-map-request": EncapsulatedControl(
        IPv4Header(EID4_HOST, ip_address("198.51.100.200"), ttl=32, ident=0x1234),
        61002,
        4342,
        MAP_REQUESTS["smr"],
        to_etr=True,
    ),
    "v6-in-v6-map-request": EncapsulatedControl(
        IPv6Header(EID6_HOST, ip_address("2001:db8:100::200"), hop_limit=17, flow_label=0xABCDE),
        61003,
        4342,
        MAP_REQUESTS["iid-source"],
        ddt=True,
    ),
    "v6-in-v4-map-register": EncapsulatedControl(
        IPv6Header(RLOC6, MS6),
        4342,
        4342,
        replace(MAP_REGISTERS["sha1-xtr-id"], auth_data=bytes(20)),
        to_ms=True,
        rtr=True,
    ),
    "v4-in-v6-map-register": EncapsulatedControl(
        IPv4Header(RLOC4, MS4, tos=0xB8, dont_fragment=False),
        61004,
        4342,
        replace(MAP_REGISTERS["sha256-for-rtr"], auth_data=bytes(32)),
        relayed=True,
    ),
}
_ECM_OUTER_V6 = {"v6-in-v6-map-request", "v4-in-v6-map-register"}  # the others: IPv4 outer


def _inner_ip(ip: IPv4Header | IPv6Header, sport: int, dport: int) -> dict[str, str]:
    if isinstance(ip, IPv4Header):
        out = {
            "ip.src": str(ip.src),
            "ip.dst": str(ip.dst),
            "ip.ttl": str(ip.ttl),
            "ip.id": _hex(ip.ident, 4),
            "ip.flags.df": _bit(ip.dont_fragment),
            "ip.dsfield": _hex(ip.tos, 2),
        }
    else:
        out = {
            "ipv6.src": str(ip.src),
            "ipv6.dst": str(ip.dst),
            "ipv6.hlim": str(ip.hop_limit),
            "ipv6.flow": _hex(ip.flow_label, 6),
        }
    return {**out, "udp.srcport": str(sport), "udp.dstport": str(dport)}


# --- data packets -----------------------------------------------------------------------------

DATA_HEADERS: dict[str, DataHeader] = {
    "n-i-iid0": DataHeader(
        nonce_present=True, instance_id_present=True, nonce=0xABCDEF, instance_id=0
    ),
    "n-i-iid1": DataHeader(nonce_present=True, instance_id_present=True, nonce=1, instance_id=1),
    "n-e-l-i-iid-max": DataHeader(
        nonce_present=True,
        echo_nonce_request=True,
        lsb_enabled=True,
        instance_id_present=True,
        nonce=0xFFFFFF,
        instance_id=0xFFFFFF,
        lsbs=0x81,
    ),
    "v": DataHeader(map_version_present=True, source_map_version=5, dest_map_version=4095),
    "v-l-i": DataHeader(
        map_version_present=True,
        lsb_enabled=True,
        instance_id_present=True,
        source_map_version=4095,
        dest_map_version=1,
        instance_id=1,
        lsbs=0x03,
    ),
    "l": DataHeader(lsb_enabled=True, lsbs=0x80000001),
    "n-l": DataHeader(nonce_present=True, lsb_enabled=True, nonce=0x123456, lsbs=0xFFFFFFFF),
    "n-k-r": DataHeader(nonce_present=True, key_id=2, reserved_flag=True, nonce=3),
    "none": DataHeader(),
}
# every header goes v4-in-v4 and v6-in-v6 outer; the IID ones also cross families
_DATA_CROSS = {"n-i-iid0", "n-i-iid1", "n-e-l-i-iid-max"}
_INNER_DST4 = "203.0.113.9"
_INNER_DST6 = "2001:db8:200::9"
DATA_MAP_NOTIFY_PORT = 61999


def _inner_packet(v6: bool) -> bytes:
    """An inner packet from a local EID host (an echo request), built by scapy, not by us."""
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6

    if v6:
        return bytes(IPv6(src=str(EID6_HOST), dst=_INNER_DST6) / ICMPv6EchoRequest(id=7, seq=1))
    return bytes(IP(src=str(EID4_HOST), dst=_INNER_DST4) / ICMP(id=7, seq=1))


def _inner_expect(v6: bool) -> dict[str, str]:
    if v6:
        return {"ipv6.src": str(EID6_HOST), "ipv6.dst": _INNER_DST6, "icmpv6.type": "128"}
    return {"ip.src": str(EID4_HOST), "ip.dst": _INNER_DST4, "icmp.type": "8"}


def _data_case(header: DataHeader, outer_v6: bool, inner_v6: bool) -> Case:
    wire = encode_data_header(header) + _inner_packet(inner_v6)
    src, dst = ("2001:db8::a", "2001:db8::b") if outer_v6 else ("192.0.2.10", "192.0.2.11")
    return Case(
        oracle.udp_packet(src, dst, 61000, 4341, wire),
        header=header,
        outer={"ipv6.src" if outer_v6 else "ip.src": src, "udp.dstport": "4341"},
        inner=_inner_expect(inner_v6),
        wire=wire,
    )


def _data_map_notify() -> Case:
    """An RTR's Data-Map-Notify: LISP data header with IID 0xFFFFFF carrying IP/UDP 4342 and a
    Map-Notify, sent from 4342 to a NAT-translated port (tshark needs decode-as there)."""
    notify = MAP_NOTIFIES["sha1-xtr-id"]
    inner_ip = IPv4Header(MS4, ip_address("192.0.2.130"), ttl=63)
    inner = build_udp_datagram(UdpDatagram(inner_ip, 4342, 4342, encode_signed(notify, KEY)))
    header = DataHeader(nonce_present=True, instance_id_present=True, nonce=9, instance_id=0xFFFFFF)
    wire = encode_data_header(header) + inner
    return Case(
        oracle.udp_packet("192.0.2.60", "203.0.113.7", 4342, DATA_MAP_NOTIFY_PORT, wire),
        message=replace(notify, auth_data=_hmac(notify, KEY)),
        header=header,
        outer={"ip.src": "192.0.2.60", "udp.dstport": str(DATA_MAP_NOTIFY_PORT)},
        inner=_inner_ip(inner_ip, 4342, 4342),
        wire=wire,
    )


def _encapsulated(outer_v6: bool) -> Case:
    """A whole packet from lispd.wire.data.encapsulate (our outer IP/UDP, no scapy): IPv4 with
    RFC 9300's zero UDP checksum, IPv6 with a real one; tshark verifies both checksums."""
    header = DataHeader(nonce_present=True, instance_id_present=True, nonce=77, instance_id=1)
    outer: IPv4Header | IPv6Header
    if outer_v6:
        outer = IPv6Header(RLOC6, RLOC6B, hop_limit=9)
        outer_expect = {"ipv6.src": str(RLOC6), "ipv6.hlim": "9"}
    else:
        outer = IPv4Header(RLOC4, RLOC4B, ttl=9, ident=0xBEEF)
        outer_expect = {"ip.src": str(RLOC4), "ip.ttl": "9", "udp.checksum": "0x0000"}
    inner_v6 = not outer_v6
    pkt = EncapsulatedPacket(
        outer, 62000, header, _inner_packet(inner_v6), zero_checksum=not outer_v6
    )
    raw = encapsulate(pkt)
    return Case(
        raw,
        header=header,
        outer={**outer_expect, "udp.srcport": "62000", "udp.dstport": "4341"},
        inner=_inner_expect(inner_v6),
        wire=raw[(40 if outer_v6 else 20) + 8 :],
    )


# --- the registry -----------------------------------------------------------------------------


def _signed_info(info: InfoMessage) -> Case:
    wire = encode_info_signed(info, KEY)
    assert auth.verify(wire, KEY)
    sport, dport = (4342, 61005) if info.reply else (61005, 4342)
    v6 = isinstance(info.eid, IPv6Address) or (
        isinstance(info.eid, InstanceIdAddress) and isinstance(info.eid.address, IPv6Address)
    )
    case = _control_case(
        replace(info, auth_data=_hmac(info, KEY)), wire, v6=v6, sport=sport, dport=dport
    )
    if isinstance(info.eid, InstanceIdAddress):  # only visible in the subtree label
        label = f"EID Prefix: [{info.eid.iid}] {info.eid.address}/{info.eid_mask_len}"
        case = replace(case, labels=(label,))
    return case


def _rtr_notify() -> Case:
    # R=1: Wireshark (after the NAT-traversal draft) dissects an MS-RTR authentication block
    # after the records and xTR-ID/site-ID, which MapNotify.rtr_auth holds.
    notify = replace(MAP_NOTIFIES["sha1-xtr-id"], rtr_auth=RtrAuth(1, bytes(range(20))))
    wire = encode_signed(notify, KEY)
    return _control_case(replace(notify, auth_data=_hmac(notify, KEY)), wire)


def _lisp_sec_reply() -> Case:
    # S=1: tshark 4.0 shows the flag but leaves the LISP-SEC data undissected.
    security = bytes.fromhex("0102000400000000")
    case = _control_case(MapReply(30, (_POSITIVE,), security_data=security), dport=61000)
    return replace(case, trailing=(_colon(security),))


def _ecm_case(name: str, ecm: EncapsulatedControl) -> Case:
    return _control_case(
        ecm,
        v6=name in _ECM_OUTER_V6,
        sport=61006,
        inner=_inner_ip(ecm.inner_ip, ecm.sport, ecm.dport),
    )


def _case_builders() -> dict[str, Callable[[], Case]]:
    """Case name -> builder (cheap to list at collection time; scapy is imported only when the
    fixture builds the data packets)."""
    b: dict[str, Callable[[], Case]] = {}
    for name, req in MAP_REQUESTS.items():
        v6 = name in ("itr-v6", "iid-source")
        b[f"map-request-{name}"] = lambda m=req, v6=v6: _control_case(m, v6=v6, sport=61000)
    for name, rep in MAP_REPLIES.items():
        v6 = name == "probe-reply"
        b[f"map-reply-{name}"] = lambda m=rep, v6=v6: _control_case(m, v6=v6, dport=61000)
    b["map-reply-lisp-sec"] = _lisp_sec_reply
    for name, reg in MAP_REGISTERS.items():
        b[f"map-register-{name}"] = lambda m=reg, v6="eid-notify" in name: _signed(m, v6=v6)
    for name, notify in MAP_NOTIFIES.items():
        b[f"map-notify-{name}"] = lambda m=notify, v6=name == "sha256-plain": _signed(m, v6=v6)
    b["map-notify-rtr-msrtr-block"] = _rtr_notify
    acks = {
        "ack": MapNotify(31, _REG_RECORDS, key_id=_SHA1, auth_data=bytes(range(20)), ack=True),
        "ack-xtr-id": MapNotify(32, (), key_id=0, ack=True, xtr_id=XTR_ID, site_id=SITE_ID),
    }
    for name, ack in acks.items():
        b[f"map-notify-{name}"] = lambda m=ack: _control_case(m)
    for name, info in INFOS.items():
        b[f"info-{name}"] = lambda m=info: _signed_info(m)
    for name, ecm in ECMS.items():
        b[f"ecm-{name}"] = lambda n=name, m=ecm: _ecm_case(n, m)
    for name, header in DATA_HEADERS.items():
        for outer_v6 in (False, True):
            for inner_v6 in (False, True):
                if outer_v6 != inner_v6 and name not in _DATA_CROSS:
                    continue
                tag = f"{'v6' if inner_v6 else 'v4'}-in-{'v6' if outer_v6 else 'v4'}"
                b[f"data-{name}-{tag}"] = lambda h=header, o=outer_v6, i=inner_v6: _data_case(
                    h, o, i
                )
    b["data-map-notify-iid-ffffff"] = _data_map_notify
    b["data-encapsulate-v4-zero-checksum"] = lambda: _encapsulated(False)
    b["data-encapsulate-v6"] = lambda: _encapsulated(True)
    return b


CASE_IDS = list(_case_builders())

Decoded = dict[str, tuple[Case, dict[str, list[str]]]]


@pytest.fixture(scope="module")
def decoded() -> Decoded:
    """Every case, and tshark's flattened decode of its packet, from a single tshark run."""
    cases = {name: build() for name, build in _case_builders().items()}
    trees = oracle.tshark_trees(
        [c.packet for c in cases.values()], oracle.decode_as(DATA_MAP_NOTIFY_PORT, "lisp-data")
    )
    assert len(trees) == len(cases)
    out: Decoded = {}
    for (name, case), tree in zip(cases.items(), trees, strict=True):
        frame = oracle.flatten(tree)
        frame["_labels"] = _labels(tree)
        out[name] = (case, frame)
    return out


def _labels(tree: oracle.Tree) -> list[str]:
    """Every key of the unflattened tree, at any depth (subtree labels such as
    "EID Prefix: [5] 2001:db8:100::/48" included)."""
    found: list[str] = []
    for key, value in tree:
        found.append(key)
        for item in value if type(value) is list else [value]:
            if isinstance(item, oracle.Tree):
                found.extend(_labels(item))
    return found


# ---------------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CASE_IDS)
def test_tshark_reads_our_encoding(decoded: Decoded, name: str) -> None:
    """Clean for tshark, and every lisp.*/lisp-data.* field exactly as the model predicts."""
    case, frame = decoded[name]
    assert frame["_trailing"] == list(case.trailing)
    oracle.assert_clean({**frame, "_trailing": []})
    expected: Fields = {}
    if case.header is not None:
        expected.update(data_fields(case.header))
    if case.message is not None:
        expected.update(lisp_fields(case.message))
    expected.update(case.extra)
    seen = frame_fields(frame, "lisp.") | frame_fields(frame, "lisp-data.")
    assert seen == expected
    for label in case.labels:
        assert label in frame["_labels"]
    for key, value in case.outer.items():
        assert frame.get(key, [None])[0] == value, key
    for key, value in case.inner.items():
        assert frame.get(key, [None])[-1] == value, key


@pytest.mark.parametrize("name", CASE_IDS)
def test_our_decoder_reads_back(decoded: Decoded, name: str) -> None:
    """The bytes tshark accepted decode back to the object we encoded."""
    case, _ = decoded[name]
    if case.header is None:
        assert case.message is not None
        assert decode_control(case.wire) == case.message
        return
    assert decode_data_header(case.wire) == case.header
    if case.message is not None:
        inner = parse_udp_datagram(case.wire[8:], verify_checksum=True)
        assert decode_control(inner.payload) == case.message


def test_map_notify_ack_is_only_typed_by_tshark(decoded: Decoded) -> None:
    """tshark 4.0 stops after lisp.type for type 5; the body is a sibling data layer."""
    for name in ("map-notify-ack", "map-notify-ack-xtr-id"):
        case, frame = decoded[name]
        assert frame["lisp.type"] == ["5"]
        assert frame["data.data"] == [_colon(case.wire)]
        assert frame["_trailing"] == []


def test_map_notify_r_bit_without_msrtr_block_is_malformed_for_tshark() -> None:
    """Why R=1 goes with an MS-RTR block: without it tshark runs off the end (and our decoder
    refuses it as truncated)."""
    notify = replace(MAP_NOTIFIES["sha256-plain"], rtr_auth=RtrAuth())
    wire = encode_signed(notify, KEY)[:-4]
    with pytest.raises(WireError) as err:
        decode_control(wire)
    assert err.value.reason == "truncated"
    pkt = oracle.udp_packet("192.0.2.10", "192.0.2.11", 4342, 4342, wire)
    (frame,) = oracle.tshark_frames([pkt])
    assert frame["lisp.mnot.flags.rtr"] == ["1"]
    assert frame["_malformed"]


def test_every_message_type_and_family_is_covered() -> None:
    """The matrix the brief asks for, so a trimmed table fails loudly."""
    ids = set(CASE_IDS)
    assert {f"map-reply-negative-{a.name.lower()}" for a in Action} <= ids
    assert {i for i in ids if i.startswith("ecm-")} == {f"ecm-{n}" for n in ECMS}
    assert any(i.startswith("data-") and i.endswith("in-v4") for i in ids)
    assert any(i.startswith("data-") and i.endswith("in-v6") for i in ids)
    iids = {h.instance_id for h in DATA_HEADERS.values() if h.instance_id_present}
    assert {0, 1, 0xFFFFFF} <= iids


def test_packet_decoder_reads_a_data_map_notify(decoded: Decoded) -> None:
    from lispd.wire.packet import decode_ip_packet

    case, _ = decoded["data-map-notify-iid-ffffff"]
    pkt = decode_ip_packet(case.packet)
    assert pkt is not None
    assert (pkt.kind, pkt.error) == ("data", None)
    assert pkt.message == case.header
    assert pkt.inner is not None and pkt.inner.message == case.message
