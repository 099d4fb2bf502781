"""Inputs for the entry-point fuzz harness: seeds per entry point, a fast deterministic
mutator, and answers made up on the fly to what the daemon just sent.

Seeds (:func:`entry_seeds`) are the real captures and encoder-built messages of
:mod:`tests.fuzz.seeds`, wrapped for the entry point they arrive at, plus packets and messages
built for the fuzzed world (:mod:`tests.fuzz.roles`) so that they reach past the first checks:
inner IP packets between its EIDs for the TUN; LISP data headers (every flag, the instance-IDs
in use, the control instance 0xFFFFFF) around inner packets for UDP 4341; Map-Requests (plain,
probes, SMRs, ECM-encapsulated), Map-Registers signed with the sites' keys, Map-Notifies,
Info-Requests and Info-Replies, Map-Replies for UDP 4342; LISP-Trace headers for UDP 2434.

:class:`Mutator` draws an input from ``random.Random(seed)`` only, so a run is reproducible
from its seed: a seed as it is, or with 1 to 5 mutations (bit flips, interesting bytes and
16/32-bit values over length/count/AFI fields, arithmetic, truncation, deletion, insertion,
duplication, splices and overwrites from another seed), or plain random bytes; then, half of
the time, repairs that let a mutant get further (IP lengths and checksum, the HMAC recomputed
with a site key or a wrong one).  One input in eight answers something the daemon sent a
moment ago (a Map-Reply to its Map-Request, an Info-Reply to its Info-Request, a Map-Notify to
its Map-Register, with the right nonce and from the right peer), mutated or not: that is how
map-cache installs, released held packets, NAT discovery, acknowledged registrations and RLOC
probe state get fuzzed too.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from dataclasses import replace
from functools import cache
from ipaddress import IPv4Address, IPv6Address, ip_address

from lispd.wire import auth
from lispd.wire.address import (
    AfiListAddress,
    DistinguishedName,
    ElpAddress,
    ElpHop,
    InstanceIdAddress,
    NatTraversalAddress,
)
from lispd.wire.control import decode_control, encode_control
from lispd.wire.data import IID_CONTROL, build_data_header, decapsulate
from lispd.wire.ecm import EncapsulatedControl
from lispd.wire.errors import WireError
from lispd.wire.info import InfoMessage, encode_info_signed
from lispd.wire.ip import (
    PROTO_UDP,
    IPv4Header,
    IPv6Header,
    UdpDatagram,
    build_ip_header,
    build_udp_datagram,
    internet_checksum,
    parse_udp_datagram,
)
from lispd.wire.mapregister import MapNotify, MapRegister, encode_signed
from lispd.wire.mapreply import MapReply
from lispd.wire.maprequest import MapRequest
from lispd.wire.records import Action, EidPrefix, EidRecord, Locator
from lispd.wire.trace import TraceHop, TraceMessage, TraceSegment, encode_trace
from tests.fuzz import roles as w
from tests.fuzz.harness import FuzzInput, Harness, Sent
from tests.fuzz.seeds import capture_payloads, control_seeds, packet_seeds

TRACE_PORT = 2434
KEYS = (*(k.encode() for k in w.SITE_KEYS.values()), b"wrong-key")
INTERESTING_8 = (0, 1, 0x7F, 0x80, 0xFF)
INTERESTING_16 = (0, 1, 2, 8, 0x10, 0x7F, 0x80, 0xFF, 0x100, 0x4003, 0x7FFF, 0x8000, 0xFFFF)
INTERESTING_32 = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFF00, 0x00FFFFFF)
SPORTS = (4341, 4342, 2434, 0, 65535, 49152, 61000)
TTLS = (64, 64, 64, 1, 0, 255, None)

Address = IPv4Address | IPv6Address


# --- seeds -------------------------------------------------------------------------------------


def _udp(src: Address, dst: Address, sport: int, dport: int, payload: bytes, **ip: int) -> bytes:
    kind = IPv4Header if src.version == 4 else IPv6Header
    header = kind(src, dst, **ip)  # type: ignore[arg-type]
    return build_udp_datagram(UdpDatagram(header, sport, dport, payload))


def _raw(src: Address, dst: Address, protocol: int, payload: bytes) -> bytes:
    header: IPv4Header | IPv6Header
    if src.version == 4:
        header = IPv4Header(src, dst, protocol=protocol)  # type: ignore[arg-type]
    else:
        header = IPv6Header(src, dst, next_header=protocol)  # type: ignore[arg-type]
    return build_ip_header(header, len(payload)) + payload


def _trace(se: Address, de: Address, iid: int = 0, hops: int = 0) -> bytes:
    segs: tuple[TraceSegment, ...] | None = None
    if hops:
        path = tuple(
            TraceHop.decap("ETR" if i % 2 else "ITR", "192.0.2.6", "192.0.2.2", f"h{i}", 1.5)
            for i in range(hops)
        )
        segs = (TraceSegment(f"[{iid}]{se}", f"[{iid}]{de}", path),)
    msg = TraceMessage(40000, IPv4Address("10.0.0.9"), 0x1122334455667788, segs)
    return encode_trace(msg)


PAIRS: tuple[tuple[Address, Address], ...] = (
    (w.LOCAL_EID_V4, w.STATIC_EID_V4),
    (w.LOCAL_EID_V4, w.RESOLVED_EID_V4),
    (w.LOCAL_EID_V4, w.DROP_EID_V4),
    (w.LOCAL_EID_V4, w.NATIVE_EID_V4),
    (w.LOCAL_EID_V4, w.OUTSIDE_V4),
    (w.LOCAL_EID_V4, w.MULTICAST_V4),
    (w.LOCAL_EID_V4, w.LOCAL_EID_V4),
    (w.STATIC_EID_V4, w.LOCAL_EID_V4),
    (w.OUTSIDE_V4, w.STATIC_EID_V4),
    (w.OUTSIDE_V4, w.RESOLVED_EID_V4),
    (w.OUTSIDE_V4, w.NAT_SITE_EID_V4),
    (w.NAT_SITE_EID_V4, w.STATIC_EID_V4),
    (w.NAT_SITE_EID_V4, w.RESOLVED_EID_V4),
    (w.STATIC_EID_V4, w.NAT_SITE_EID_V4),
    (w.STATIC_EID_V4, w.OUTSIDE_V4),
    (w.LOCAL_EID_V6, w.STATIC_EID_V6),
    (w.LOCAL_EID_V6, w.RESOLVED_EID_V6),
    (w.LOCAL_EID_V6, w.MULTICAST_V6),
    (w.STATIC_EID_V6, w.LOCAL_EID_V6),
    (w.OUTSIDE_V6, w.RESOLVED_EID_V6),
    (w.STATIC_EID_V6, w.OUTSIDE_V6),
)


@cache
def inner_packets() -> tuple[bytes, ...]:
    """Inner IP packets between the world's EIDs (and outsiders): UDP small and too big with
    DF, TCP, ICMP, fragments, IPv4 options, LISP-Traces."""
    out: list[bytes] = []
    for src, dst in PAIRS:
        out.append(_udp(src, dst, 1000, 2000, b"x" * 20))
        out.append(_udp(src, dst, 1000, 2000, b"y" * 1460))
        out.append(_raw(src, dst, 6, bytes.fromhex("04d20050000000010000000050022000") + b"\0" * 4))
        icmp = 58 if src.version == 6 else 1
        out.append(_raw(src, dst, icmp, bytes.fromhex("0800f7ff00000000")))
        out.append(_udp(src, dst, 40000, TRACE_PORT, _trace(src, dst)))
        out.append(_udp(src, dst, 40000, TRACE_PORT, _trace(src, dst, 0, 2)))
        out.append(_udp(dst, src, TRACE_PORT, 40000, _trace(dst, src, 0, 3)))
        if src.version == 4:
            out.append(_udp(src, dst, 1, 2, b"frag", more_fragments=1, dont_fragment=0))
            out.append(_udp(src, dst, 1, 2, b"", ttl=1, tos=3))
            out.append(
                build_udp_datagram(
                    UdpDatagram(IPv4Header(src, dst, options=b"\x94\x04\0\0"), 1, 2, b"opt")  # type: ignore[arg-type]
                )
            )
        else:
            out.append(_udp(src, dst, 1, 2, b"", hop_limit=1, traffic_class=3))
    return tuple(out)


@cache
def captured_lisp() -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """(UDP payloads to or from 4341, their inner packets) from the captures."""
    payloads: list[bytes] = []
    inners: list[bytes] = []
    for pkt in capture_payloads()[1] + packet_seeds()[:2]:
        try:
            dg = parse_udp_datagram(pkt)
        except WireError:
            continue
        if 4341 not in (dg.sport, dg.dport):
            continue
        payloads.append(dg.payload)
        try:
            inners.append(decapsulate(pkt).inner)
        except WireError:
            continue
    return tuple(payloads), tuple(inners)


def _record(eid: Address, mask: int, iid: int = 0, **kw: object) -> EidRecord:
    address = InstanceIdAddress(iid, eid) if iid else eid
    return EidRecord(address, mask, **kw)  # type: ignore[arg-type]


def _locators() -> tuple[Locator, ...]:
    return (
        Locator(w.REMOTE_V4, 1, 50),
        Locator(w.REMOTE_V6, 1, 50, probed=True),
        Locator(ElpAddress((ElpHop(w.RTR_V4, lookup=True), ElpHop(w.REMOTE_V4))), 2, 100),
        Locator(AfiListAddress((w.REMOTE_V4, w.REMOTE_V6)), 3, 0),
    )


@cache
def built_control() -> tuple[bytes, ...]:
    """Control messages addressed to the fuzzed world's roles."""
    locs = _locators()
    out: list[bytes] = []
    requests = []
    for eid, mask, iid in (
        (w.LOCAL_EID_V4, 32, 0),
        (w.LOCAL_EID_V4, 32, 7),
        (w.LOCAL_EID_V6, 128, 0),
        (w.STATIC_EID_V4, 32, 0),
        (w.NAT_SITE_EID_V4, 32, 0),
        (w.OUTSIDE_V4, 32, 0),
    ):
        address = InstanceIdAddress(iid, eid) if iid else eid
        for flags in ({}, {"probe": True}, {"smr_invoked": True}, {"pitr": True}):
            requests.append(
                MapRequest(
                    nonce=0xA1A2A3A4A5A6A7A8,
                    records=(EidPrefix(address, mask),),
                    itr_rlocs=(w.REMOTE_V4, w.REMOTE_V6),
                    source_eid=w.STATIC_EID_V4,
                    **flags,  # type: ignore[arg-type]
                )
            )
    for src_eid in (w.STATIC_EID_V4, w.RESOLVED_EID_V4, w.STATIC_EID_V6):
        requests.append(
            MapRequest(
                nonce=0xB1,
                records=(EidPrefix(w.LOCAL_EID_V4, 32),),
                itr_rlocs=(w.REMOTE_V4,),
                source_eid=src_eid,
                smr=True,
            )
        )
    for req in requests:
        out.append(encode_control(req))
        eid = req.records[0].address
        inner_dst = eid.address if isinstance(eid, InstanceIdAddress) else eid
        src_eid = w.STATIC_EID_V6 if inner_dst.version == 6 else w.STATIC_EID_V4
        ip = (IPv6Header if inner_dst.version == 6 else IPv4Header)(src_eid, inner_dst)  # type: ignore[arg-type]
        for flags in ({}, {"to_etr": True}, {"to_ms": True}, {"rtr": True}):
            out.append(encode_control(EncapsulatedControl(ip, 4342, 4342, req, **flags)))  # type: ignore[arg-type]
    registers = [
        ("key-site-a", _record(ip_address("198.51.100.0"), 28, 0, locators=locs[:2])),
        ("key-site-a", _record(ip_address("198.51.100.0"), 28, 7, locators=locs[:1])),
        ("key-site-a", _record(ip_address("2001:db8:100:1::"), 64, 0, locators=locs[1:3])),
        ("key-site-b", _record(ip_address("198.51.100.16"), 29, 0, locators=locs)),
        ("key-site-b", _record(ip_address("198.51.100.16"), 28, 0, locators=locs[:1], ttl=0)),
        ("key-site-c", _record(ip_address("198.51.100.48"), 28, 0, locators=(locs[0],))),
        ("key-site-a", _record(ip_address("198.51.100.16"), 28, 0, locators=locs[:1])),
    ]
    for key, rec in registers:
        for flags in (
            {"want_map_notify": True},
            {"proxy_reply": True, "want_map_notify": True},
            {"merge": True, "xtr_id": 7, "site_id": 9},
            {"key_id": auth.KeyId.HMAC_SHA_1_96, "for_rtr": True},
        ):
            reg = MapRegister(nonce=0xC1, records=(rec,), **flags)  # type: ignore[arg-type]
            out.append(encode_signed(reg, key.encode()))
        out.append(encode_signed(MapNotify(nonce=0xC2, records=(rec,)), key.encode()))
    nat = NatTraversalAddress(4342, 61000, w.NAT_GLOBAL_V4, w.MS_V4, w.NAT_XTR_V4, (w.RTR_V4,))
    for key in ("key-site-c", "wrong"):
        info = InfoMessage(
            nonce=0xD1, key_id=auth.KeyId.HMAC_SHA_256_128, ttl=1440, eid=w.NAT_SITE_EID_V4,
            eid_mask_len=28, address=DistinguishedName("xtr3"),
        )  # fmt: skip
        out.append(encode_info_signed(info, key.encode()))
    out.append(encode_control(InfoMessage(nonce=0xD2, reply=True, address=nat)))
    for rec_eid, mask in ((w.RESOLVED_EID_V4, 28), (w.RESOLVED_EID_V6, 64), (w.OUTSIDE_V4, 8)):
        for kw in (
            {"locators": locs},
            {"action": Action.NATIVELY_FORWARD, "ttl": 15},
            {"action": Action.SEND_MAP_REQUEST, "ttl": 0},
            {"action": Action.DROP},
        ):
            rec = _record(rec_eid, mask, **kw)  # type: ignore[arg-type]
            out.append(encode_control(MapReply(nonce=0xE1, records=(rec,))))
            out.append(encode_control(MapReply(nonce=0xE2, records=(rec,), probe=True)))
    return tuple(out)


@cache
def entry_seeds(entry: str) -> tuple[bytes, ...]:
    """Every seed of one entry point."""
    if entry == "tun":
        return inner_packets() + captured_lisp()[1] + packet_seeds()
    if entry == "control":
        return built_control() + control_seeds()
    if entry == "data":
        headers = [
            build_data_header(0x123456, 0),
            build_data_header(0x123456, 7),
            build_data_header(0x123456, 5),
            bytes.fromhex("8000000100000000"),  # N only: instance 0
            bytes.fromhex("c8abcdef00000701"),  # N, L, I
            bytes.fromhex("9000000100020003"),  # V: map versions
            bytes.fromhex("a8000001000007ff"),  # N, E, I
            bytes.fromhex("89000001000000ff"),  # K bits: encrypted
            bytes.fromhex("0000000000000000"),
        ]
        inner = inner_packets()
        out = [h + p for h in headers for p in inner[:: max(1, len(inner) // 40)]]
        out += [headers[0] + p for p in inner]
        out += [headers[1] + p for p in inner[::3]]
        control = build_data_header(0x42, IID_CONTROL)
        out += [control + m for m in built_control()[::2] + control_seeds()]
        out += list(captured_lisp()[0])
        return tuple(out)
    if entry == "trace":
        return (
            encode_trace(TraceMessage(40000, IPv4Address("10.0.0.9"), 5)),
            encode_trace(TraceMessage(1, IPv4Address("192.168.1.1"), 0, reserved=0xFFF)),
            _trace(w.LOCAL_EID_V4, w.STATIC_EID_V4, 0, 1),
            bytes(16),
        )
    raise ValueError(f"unknown entry point {entry!r}")


# --- mutation ----------------------------------------------------------------------------------


def mutate(data: bytes, rng: random.Random, seeds: tuple[bytes, ...], rounds: int) -> bytes:
    """``data`` with ``rounds`` random mutations (see the module docstring)."""
    buf = bytearray(data)
    for _ in range(rounds):
        n = len(buf)
        op = rng.randrange(14)
        if n == 0:
            buf += rng.randbytes(rng.randrange(1, 16))
            continue
        i = rng.randrange(n)
        if op == 0:
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[i] = rng.randrange(256)
        elif op == 2:
            buf[i] = rng.choice(INTERESTING_8)
        elif op == 3 and i + 2 <= n:
            buf[i : i + 2] = rng.choice(INTERESTING_16).to_bytes(2, "big")
        elif op == 4 and i + 4 <= n:
            buf[i : i + 4] = rng.choice(INTERESTING_32).to_bytes(4, "big")
        elif op == 5 and i + 2 <= n:  # length/count arithmetic
            value = (int.from_bytes(buf[i : i + 2], "big") + rng.randint(-16, 16)) & 0xFFFF
            buf[i : i + 2] = value.to_bytes(2, "big")
        elif op == 6:
            buf[i] = (buf[i] + rng.randint(-8, 8)) & 0xFF
        elif op == 7:
            del buf[i:]
        elif op == 8:
            del buf[i : i + rng.randrange(1, 17)]
        elif op == 9:
            buf[i:i] = rng.randbytes(rng.randrange(1, 17))
        elif op == 10:
            j = rng.randrange(n)
            buf[i:i] = buf[j : j + rng.randrange(1, 33)]
        elif op == 11:  # splice: our head, another seed's tail
            other = rng.choice(seeds)
            buf[i:] = other[rng.randrange(len(other) + 1) :]
        elif op == 12:  # overwrite a chunk with one of another seed
            other = rng.choice(seeds)
            if other:
                j = rng.randrange(len(other))
                chunk = other[j : j + rng.randrange(1, 33)]
                buf[i : i + len(chunk)] = chunk
        else:  # a control message's record count / a header's flags
            k = min(n - 1, rng.choice((0, 1, 2, 3)))
            buf[k] = rng.randrange(256)
    return bytes(buf)


def fix_ip(data: bytes, start: int = 0) -> bytes:
    """The IP packet at ``start`` with its IPv4 total length and header checksum, or IPv6
    payload length, and its UDP length made to agree with its actual size."""
    buf = bytearray(data)
    n = len(buf) - start
    if n < 1:
        return data
    version = buf[start] >> 4
    if version == 4 and n >= 20:
        ihl = (buf[start] & 0x0F) * 4
        struct.pack_into("!H", buf, start + 2, min(n, 0xFFFF))
        if 20 <= ihl <= n:
            struct.pack_into("!H", buf, start + 10, 0)
            csum = internet_checksum(bytes(buf[start : start + ihl]))
            struct.pack_into("!H", buf, start + 10, csum)
            if buf[start + 9] == PROTO_UDP and n >= ihl + 8:
                struct.pack_into("!H", buf, start + ihl + 4, min(n - ihl, 0xFFFF))
    elif version == 6 and n >= 40:
        struct.pack_into("!H", buf, start + 4, min(n - 40, 0xFFFF))
        if buf[start + 6] == PROTO_UDP and n >= 48:
            struct.pack_into("!H", buf, start + 44, min(n - 40, 0xFFFF))
    return bytes(buf)


def resign(data: bytes, key: bytes) -> bytes:
    """A Map-Register, Map-Notify or Info message with its HMAC recomputed under ``key``
    (unchanged when its authentication field does not allow it)."""
    try:
        length = struct.unpack_from("!H", data, auth.AUTH_OFFSET + 2)[0]
        start = auth.AUTH_OFFSET + 4
        blank = data[:start] + bytes(length) + data[start + length :]
        return auth.sign(blank, key)
    except (WireError, ValueError, struct.error):
        return data


# --- answers -----------------------------------------------------------------------------------


def _sent_message(payload: bytes) -> tuple[object, bool] | None:
    """(decoded message, came in a data header) of something the daemon sent, or None."""
    for body, wrapped in ((payload, False), (payload[8:], True)):
        try:
            return decode_control(body), wrapped
        except WireError:
            continue
    return None


def answer(sent: Sent, rng: random.Random, role: str, plain: bool = False) -> tuple[bytes, bool]:
    """A made-up reply to one datagram the daemon sent: (bytes, whether it goes in a data
    header); empty bytes when there is nothing to answer.  ``plain``: the answer a well-behaved
    peer gives (the requested prefix, the remote site's RLOCs, the right key); otherwise prefix
    lengths, locators (ELPs, lists, our own RLOCs), TTLs, actions and keys vary."""
    decoded = _sent_message(sent.payload)
    if decoded is None:
        return b"", False
    msg, wrapped = decoded
    if isinstance(msg, EncapsulatedControl):
        msg = msg.message
    if isinstance(msg, MapRequest) and not msg.smr and msg.records:
        asked = msg.records[0]
        locs = _locators()
        if plain:  # the /28 (/124) around the EID, or the probed prefix itself
            kwargs: dict[str, object] = {"locators": locs[:2], "ttl": 1440}
            mask = asked.mask_len if msg.probe else max(0, asked.mask_len - 4)
        else:
            full = asked.mask_len
            mask = rng.choice((full, full, max(0, full - rng.randrange(1, 9)), rng.randrange(129)))
            kwargs = {
                "ttl": rng.choice((0, 1, 15, 1440, 0xFFFFFFFF)),
                "locators": tuple(rng.sample(locs, rng.randrange(len(locs) + 1))),
            }
            if not kwargs["locators"]:
                kwargs["action"] = rng.choice(list(Action))
            if rng.random() < 0.1:  # a locator that is one of the node's own RLOCs
                kwargs["locators"] = (Locator(rng.choice((w.XTR_V4, w.RTR_V4, w.PETR_V4))),)
        try:
            rec = EidRecord(_masked(asked.address, mask), mask, **kwargs)  # type: ignore[arg-type]
            records = (rec,) if plain or rng.random() < 0.9 else (rec, rec)
            reply = MapReply(nonce=msg.nonce, records=records, probe=msg.probe)
            return encode_control(reply), wrapped
        except (WireError, ValueError):
            return b"", False
    if isinstance(msg, InfoMessage) and not msg.reply:
        if plain:
            rtrs: tuple[Address, ...] = (w.RTR_PUBLIC_V4,)
            global_rloc: Address = w.NAT_GLOBAL_V4
        else:
            rtrs = rng.choice(((w.RTR_PUBLIC_V4,), (w.RTR_V4, w.RTR_V6), ()))
            global_rloc = rng.choice((w.NAT_GLOBAL_V4, w.NAT_XTR_V4, w.MS_V6))
        port = 61000 if plain else rng.choice((61000, 4341, 0))
        nat = NatTraversalAddress(4342, port, global_rloc, w.MS_V4, w.NAT_XTR_V4, rtrs)
        reply_msg = InfoMessage(
            nonce=msg.nonce, reply=True, ttl=msg.ttl, eid=msg.eid,
            eid_mask_len=msg.eid_mask_len, address=nat,
        )  # fmt: skip
        return encode_control(reply_msg), wrapped
    if isinstance(msg, MapRegister) and msg.want_map_notify:
        notify = MapNotify(
            nonce=msg.nonce, records=msg.records, key_id=msg.key_id, xtr_id=msg.xtr_id,
            site_id=msg.site_id,
        )  # fmt: skip
        key = rng.choice(KEYS) if not plain and rng.random() < 0.2 else _role_key(role)
        try:
            return encode_signed(notify, key), wrapped
        except (WireError, ValueError):
            return b"", False
    return b"", False


def _masked(address: object, mask: int) -> object:
    """``address`` (maybe inside an instance-ID) with the bits beyond ``mask`` cleared."""
    if isinstance(address, InstanceIdAddress):
        inner = _masked(address.address, mask)
        return InstanceIdAddress(address.iid, inner)  # type: ignore[arg-type]
    if isinstance(address, IPv4Address | IPv6Address):
        bits = address.max_prefixlen
        mask = min(mask, bits)
        value = int(address) >> (bits - mask) << (bits - mask) if mask else 0
        return type(address)(value)
    return address


def _role_key(role: str) -> bytes:
    return b"key-site-c" if role == "nat-xtr" else b"key-site-a"


# --- the stream of inputs ----------------------------------------------------------------------


class Mutator:
    """A reproducible stream of :class:`FuzzInput` for one entry point of one role."""

    def __init__(self, role: str, entry: str, seed: int = 0) -> None:
        self.role = role
        self.entry = entry
        self.rng = random.Random(f"{seed}/{role}/{entry}")
        self.seeds = entry_seeds(entry)
        self.sources: dict[int, tuple[str, ...]] = {}

    def _sources(self, families: tuple[int, ...]) -> tuple[str, ...]:
        key = hash(families)
        if key not in self.sources:
            peers = [str(a) for a in w.PEERS[self.role] if a.version in families]
            others = [s for s in w.STRANGERS if (6 if ":" in s else 4) in families]
            self.sources[key] = tuple(peers * 4 + others)
        return self.sources[key]

    def _source(self, families: tuple[int, ...]) -> str:
        rng = self.rng
        if rng.random() < 0.85:
            return rng.choice(self._sources(families))
        version = rng.choice(families)
        if version == 4:
            return str(IPv4Address(rng.getrandbits(32)))
        return str(IPv6Address(rng.getrandbits(128)))

    def one(self, harness: Harness) -> FuzzInput:
        """The next input."""
        rng = self.rng
        entry = self.entry
        families = harness.families
        r = rng.random()
        src = ""
        data = b""
        if r < 0.125 and entry in ("control", "data"):
            sends = harness.recent_sends()
            if sends:
                sent = rng.choice(sends)
                data, _wrapped = answer(sent, rng, self.role)
                if data:
                    if rng.random() < 0.5:
                        data = mutate(data, rng, self.seeds, rng.randrange(1, 3))
                        if data[:1] and data[0] >> 4 in (3, 4):
                            data = resign(data, _role_key(self.role))
                    if entry == "data":
                        data = build_data_header(rng.getrandbits(24), IID_CONTROL) + data
                    if rng.random() < 0.9 and _version_of(sent.dst) in families:
                        src = sent.dst
        if not data:
            if r < 0.05:
                data = rng.randbytes(rng.randrange(0, 300))
            else:
                data = rng.choice(self.seeds)
                if rng.random() < 0.9:
                    data = mutate(data, rng, self.seeds, rng.randrange(1, 6))
                if rng.random() < 0.5:
                    data = self._repair(data)
        if entry == "tun":
            return FuzzInput(data)
        if not src:
            src = self._source(families)
        sport = rng.choice(SPORTS) if rng.random() < 0.7 else rng.randrange(65536)
        ttl = rng.choice(TTLS) if rng.random() < 0.8 else rng.randrange(256)
        tos = rng.choice((0, 0, 1, 2, 3)) if rng.random() < 0.8 else rng.randrange(256)
        return FuzzInput(data, src, sport, ttl, tos)

    def _repair(self, data: bytes) -> bytes:
        rng = self.rng
        entry = self.entry
        if entry == "tun":
            return fix_ip(data)
        if entry == "data":
            if data[4:7] == b"\xff\xff\xff":
                body = data[8:]
                if body[:1] and body[0] >> 4 in (3, 4):
                    body = resign(body, rng.choice(KEYS))
                return data[:8] + body
            return fix_ip(data, 8)
        if entry == "control" and data[:1] and data[0] >> 4 in (3, 4, 7):
            return resign(data, rng.choice(KEYS))
        return data

    def stream(self, harness: Harness, count: int) -> Iterator[FuzzInput]:
        """``count`` inputs, each drawn after the previous one was handled (answers need it)."""
        for _ in range(count):
            yield self.one(harness)


def _version_of(address: str) -> int:
    return 6 if ":" in address else 4


# --- the peers ---------------------------------------------------------------------------------


class World:
    """The node's peers, played between fuzz inputs (after each run of the timer): most of
    what it sent gets the answer a well-behaved peer gives (some are lost), and nodes with an
    ITR or RTR see a little ordinary traffic toward resolved EID space, so that lookups are
    pending for fuzzed Map-Replies to complete and RLOCs are probed up as well as down."""

    def __init__(self, role: str, seed: int = 0, loss: float = 0.3) -> None:
        self.role = role
        self.rng = random.Random(f"world/{seed}/{role}")
        self.loss = loss
        self.nonce = 1 << 40
        self.sources = {
            "xtr": (w.LOCAL_EID_V4, w.LOCAL_EID_V6),
            "nat-xtr": (w.NAT_SITE_EID_V4,),
            "pxtr": (w.OUTSIDE_V4, w.OUTSIDE_V6),
            "rtr": (w.STATIC_EID_V4, w.STATIC_EID_V6),
        }.get(role, ())

    def __call__(self, harness: Harness) -> None:
        """Answer what was sent since the last call, then send a packet or two."""
        rng = self.rng
        entries = harness.entry_points
        for sent in harness.take_unanswered():
            if sent.kind in ("trace", "pool") or rng.random() < self.loss:
                continue
            data, wrapped = answer(sent, rng, self.role, plain=True)
            if not data or _version_of(sent.dst) not in harness.families:
                continue
            if wrapped or sent.kind == "data":
                if "data" not in entries or data[0] >> 4 == 8:
                    continue  # an RTR does not answer NAT keepalives
                data = build_data_header(rng.getrandbits(24), IID_CONTROL) + data
                harness.deliver("data", FuzzInput(data, sent.dst, sent.port))
            else:
                harness.deliver("control", FuzzInput(data, sent.dst, sent.port))
        if self.role == "msmr":
            self._sites(harness)
        elif self.role == "rtr":
            self._nated_xtr(harness)
        if not self.sources or rng.random() < 0.5:
            return
        src = rng.choice(self.sources)
        if src.version == 4:
            dst: Address = IPv4Address(int(w.RESOLVED_EID_V4) + rng.randrange(-6, 50))
        else:
            dst = IPv6Address(int(w.RESOLVED_EID_V6) + rng.randrange(64))
        packet = _udp(src, dst, 1000 + rng.randrange(100), 2000, b"hello")
        if "tun" in entries:
            harness.deliver("tun", FuzzInput(packet))
        else:
            peer = w.REMOTE_V4 if src.version == 4 else w.REMOTE_V6
            data = build_data_header(rng.getrandbits(24), 0) + packet
            harness.deliver("data", FuzzInput(data, str(peer), 4341))

    def _sites(self, harness: Harness) -> None:
        """A Map-Server's peers: sites registering, ITRs asking for their EIDs."""
        rng = self.rng
        messages = registrations()
        register, key, src = messages[rng.randrange(len(messages))]
        self.nonce += 1  # Map-Servers refuse replayed registrations
        data = encode_signed(replace(register, nonce=self.nonce), key)
        harness.deliver("control", FuzzInput(data, src, 4342))
        eid = rng.choice((w.LOCAL_EID_V4, w.STATIC_EID_V4, w.NAT_SITE_EID_V4, w.LOCAL_EID_V6))
        itr = w.REMOTE_V4 if rng.random() < 0.5 else w.XTR_V4
        request = MapRequest(
            nonce=rng.getrandbits(64), records=(EidPrefix(eid, eid.max_prefixlen),),
            itr_rlocs=(itr,), source_eid=w.OUTSIDE_V4,
        )  # fmt: skip
        kind = IPv4Header if eid.version == 4 else IPv6Header
        inner = kind(w.OUTSIDE_V4 if eid.version == 4 else w.OUTSIDE_V6, eid)  # type: ignore[arg-type]
        ecm = EncapsulatedControl(inner, 61001, 4342, request)
        harness.deliver("control", FuzzInput(encode_control(ecm), str(itr), 61001))

    def _nated_xtr(self, harness: Harness) -> None:
        """An RTR's NATed xTR: keepalives (which create its NAT binding), then traffic."""
        rng = self.rng
        keepalive = InfoMessage(nonce=rng.getrandbits(64), address=DistinguishedName("xtr3"))
        data = build_data_header(rng.getrandbits(24), IID_CONTROL) + encode_control(keepalive)
        harness.deliver("data", FuzzInput(data, str(w.NAT_GLOBAL_V4), 61000))
        dst = rng.choice((w.STATIC_EID_V4, w.RESOLVED_EID_V4))
        packet = _udp(w.NAT_SITE_EID_V4, dst, 1000, 2000, b"from behind the NAT")
        data = build_data_header(rng.getrandbits(24), 0) + packet
        harness.deliver("data", FuzzInput(data, str(w.NAT_GLOBAL_V4), 61000))


@cache
def registrations() -> tuple[tuple[MapRegister, bytes, str], ...]:
    """Well-formed Map-Registers of the world's three sites, with their keys and senders."""
    locs = _locators()
    nat = w.NAT_GLOBAL_V4
    out = []
    for key, rec, src in (
        ("key-site-a", _record(ip_address("198.51.100.0"), 28, 0, locators=locs[:1]), w.XTR_V4),
        ("key-site-a", _record(ip_address("198.51.100.0"), 28, 7, locators=locs[:1]), w.XTR_V4),
        ("key-site-a", _record(ip_address("2001:db8:100:1::"), 64, locators=locs[1:2]), w.XTR_V6),
        ("key-site-b", _record(ip_address("198.51.100.16"), 28, locators=locs[:1]), w.REMOTE_V4),
        ("key-site-c", _record(ip_address("198.51.100.48"), 28, locators=locs[:1]), nat),
    ):
        for flags in ({"want_map_notify": True}, {"proxy_reply": True}):
            reg = MapRegister(nonce=0xF1, records=(rec,), **flags)  # type: ignore[arg-type]
            out.append((reg, key.encode(), str(src)))
    return tuple(out)
