"""Our DECODERS on real captures from other implementations (found by
:mod:`tests.external` beside the checkout; the module skips when they are absent).

For every LISP control packet (UDP 4342) of every capture:

* tshark finds it clean -> ``decode_control`` decodes it, every ``lisp.*`` field tshark shows
  equals what :func:`tests.wire.test_oracle_encoders.lisp_fields` derives from our decoded
  object (exact dict equality: nonce, type, counts, records, locators, ITR-RLOCs, source EID,
  LCAFs, auth block, xTR-ID/site-ID, ECM flags and the inner message), the inner IP/UDP of an
  ECM matches, and ``encode_control`` gives back the very same bytes;
* tshark finds it malformed, raises an expert warning/error, or leaves bytes undissected ->
  our decoder raises :class:`WireError` with the reason listed in :data:`REJECTED`.

The frames are the ones tshark dissects as LISP control: UDP port 4342 at either end,
including the Map-Request that ``maprequest.pcap`` carries inside a GRE tunnel.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from lispd.cli.decode import decode_capture
from lispd.tools.pcap import ip_payload, read_file
from lispd.wire import auth
from lispd.wire.control import MESSAGE_NAMES, ControlMessage, decode_control, encode_control
from lispd.wire.ecm import EncapsulatedControl
from lispd.wire.errors import WireError
from lispd.wire.ip import IPv4Header, parse_udp_datagram
from lispd.wire.jsonview import to_jsonable
from lispd.wire.mapregister import MapNotify, MapRegister, encode_signed
from lispd.wire.packet import decode_ip_packet
from tests import oracle
from tests.external import CAPTURES, MISSING_CAPTURES, capture_files
from tests.wire.test_oracle_encoders import frame_fields, lisp_fields

if not capture_files():
    pytest.skip(MISSING_CAPTURES, allow_module_level=True)

LISP_CONTROL_PORT = 4342
PROTO_GRE = 47
PROTO_UDP = 17

# ---------------------------------------------------------------------------------------------
# What the captures hold (worked out with tshark 4.0.17 and checked by the tests below)
# ---------------------------------------------------------------------------------------------

# Control messages each capture must decode to, by type ("ecm:<inner type>" for an ECM).
EXPECTED_MESSAGES: dict[str, dict[str, int]] = {
    "dual_stack_lisp.pcap": {
        "map-register": 8,
        "ecm:map-request": 25,
        "map-reply": 35,
        "map-request": 10,
    },
    "encapsulated_control_message.pcap": {"ecm:map-request": 1},
    "lcaf_instanceid.pcap": {"ecm:map-request": 2, "map-reply": 2},
    "ligpy-marek.pcap": {"ecm:map-request": 1, "map-reply": 1},
    "lisp_eid_notify.pcap": {"map-notify": 2},
    "lisp_eid_register.pcap": {"map-register": 2},
    "lisp_invalid.pcap": {},
    "lisp_invalid_length.pcap": {},
    "lisp_ipv6.pcap": {"map-register": 1, "map-notify": 1},
    "maprequest.pcap": {"map-request": 1},  # inside GRE (IP proto 47)
    "various_lisp_packets.pcap": {
        "map-register": 1,
        "map-request": 5,
        "map-reply": 9,
        "ecm:map-request": 4,
    },
}

# (file, frame) -> reason our decoder gives for the frames tshark objects to, all of them.
REJECTED: dict[tuple[str, int], str] = {
    # xTR-ID announced by the I bit, cut off by the end of the message (tshark: Malformed)
    ("lisp_eid_notify.pcap", 3): "truncated",
    # tcpdump's mutation: I bit cleared, xTR-ID/site-ID left in -> 24 bytes tshark shows as
    # undissected data; by our rules a message with trailing bytes is malformed
    ("lisp_eid_notify.pcap", 4): "trailing-bytes",
    # EID AFI 7680 (and a bad UDP checksum): tshark "Unexpected EID prefix AFI"
    ("lisp_invalid.pcap", 1): "bad-afi",
    # auth length 35117 in a frame cut to 69 bytes (IP says 156): tshark Malformed
    ("lisp_invalid.pcap", 2): "truncated",
    # UDP length 16 (8 bytes of LISP) under an IP total length of 3959: tshark Malformed
    ("lisp_invalid_length.pcap", 1): "truncated",
}

# What decode_ip_packet (the `lispd decode` path) reports for the rejected frames: the two
# frames cut short by the capture fail already in the IP framing.
REJECTED_BY_PACKET_DECODER: dict[tuple[str, int], str] = {
    ("lisp_eid_notify.pcap", 3): "truncated",
    ("lisp_eid_notify.pcap", 4): "trailing-bytes",
    ("lisp_invalid.pcap", 1): "bad-afi",
    ("lisp_invalid.pcap", 2): "truncated",
    ("lisp_invalid_length.pcap", 1): "truncated",
}

# `lispd decode --pcap` lines per file: (messages, errors).  maprequest.pcap gives none: the
# packet decoder does not look inside GRE.  ligpy-marek.pcap's 4 DNS frames are skipped.
EXPECTED_DECODE_LINES: dict[str, tuple[int, int]] = {
    "dual_stack_lisp.pcap": (78, 0),
    "encapsulated_control_message.pcap": (1, 0),
    "lcaf_instanceid.pcap": (4, 0),
    "ligpy-marek.pcap": (2, 0),
    "lisp_eid_notify.pcap": (2, 2),
    "lisp_eid_register.pcap": (2, 0),
    "lisp_invalid.pcap": (0, 2),
    "lisp_invalid_length.pcap": (0, 1),
    "lisp_ipv6.pcap": (2, 0),
    "maprequest.pcap": (0, 0),
    "various_lisp_packets.pcap": (19, 0),
}

# HMAC keys tried on every authenticated message; none of them verifies any (checked below).
CANDIDATE_KEYS = (b"password", b"lisp", b"key", b"test", b"tcpdump", b"cisco", b"secret")
VERIFYING_KEYS: dict[tuple[str, int], bytes] = {}

# ---------------------------------------------------------------------------------------------
# Reading the captures (our pcap reader; the frame list is fixed at collection time)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ControlFrame:
    """A LISP control packet of a capture: the IP packet carrying it (GRE stripped) and the
    UDP payload as far as the UDP length and the captured bytes go."""

    file: str
    number: int
    ip: bytes
    sport: int
    dport: int
    payload: bytes

    @property
    def key(self) -> tuple[str, int]:
        return (self.file, self.number)


def _strip_gre(ip: bytes) -> bytes:
    """The IP packet inside an IPv4 GRE packet (maprequest.pcap); others unchanged."""
    if ip[0] >> 4 != 4 or ip[9] != PROTO_GRE:
        return ip
    hlen = (ip[0] & 0xF) * 4
    flags = struct.unpack_from("!H", ip, hlen)[0]
    optional = 4 * sum(1 for bit in (0x8000, 0x2000, 0x1000) if flags & bit)  # C, K, S
    return ip[hlen + 4 + optional :]


def _udp(ip: bytes) -> tuple[int, int, bytes] | None:
    """(sport, dport, payload) without trusting lengths beyond the captured bytes."""
    if ip[0] >> 4 == 4:
        hlen, proto = (ip[0] & 0xF) * 4, ip[9]
    else:
        hlen, proto = 40, ip[6]
    if proto != PROTO_UDP or len(ip) < hlen + 8:
        return None
    sport, dport, length = struct.unpack_from("!HHH", ip, hlen)
    return sport, dport, ip[hlen + 8 : hlen + length]


def _control_frames(path: Path) -> list[ControlFrame]:
    frames = []
    for captured in read_file(path):
        ip = ip_payload(captured.linktype, captured.frame)
        if ip is None:
            continue
        ip = _strip_gre(ip)
        udp = _udp(ip)
        if udp is None or LISP_CONTROL_PORT not in udp[:2]:
            continue
        frames.append(ControlFrame(path.name, captured.index, ip, *udp))
    return frames


CAPTURE_FILES = sorted(p.name for p in CAPTURES.glob("*.pcap"))
FRAMES = {f.key: f for name in CAPTURE_FILES for f in _control_frames(CAPTURES / name)}
FRAME_IDS = [f"{file}#{number}" for file, number in FRAMES]


@pytest.fixture(scope="module")
def tshark() -> dict[str, list[dict[str, list[str]]]]:
    """tshark's flattened frames of every capture (one run per file, run in parallel)."""
    if oracle.TSHARK is None:
        pytest.skip("tshark (the oracle) is not installed")
    with ThreadPoolExecutor(max_workers=len(CAPTURE_FILES)) as pool:
        runs = pool.map(lambda n: oracle.tshark_file_frames(CAPTURES / n), CAPTURE_FILES)
        return dict(zip(CAPTURE_FILES, runs, strict=True))


def _message_name(message: ControlMessage, payload: bytes) -> str:
    if isinstance(message, EncapsulatedControl):
        inner = encode_control(message.message)
        return f"ecm:{MESSAGE_NAMES[inner[0] >> 4]}"
    return MESSAGE_NAMES[payload[0] >> 4]


def _colon_hex(value: str) -> bytes:
    return bytes.fromhex(value.replace(":", ""))


def _inner_ip_fields(ecm: EncapsulatedControl) -> dict[str, str]:
    ip = ecm.inner_ip
    if isinstance(ip, IPv4Header):
        out = {"ip.src": str(ip.src), "ip.dst": str(ip.dst), "ip.ttl": str(ip.ttl)}
    else:
        out = {"ipv6.src": str(ip.src), "ipv6.dst": str(ip.dst), "ipv6.hlim": str(ip.hop_limit)}
    return {**out, "udp.srcport": str(ecm.sport), "udp.dstport": str(ecm.dport)}


# ---------------------------------------------------------------------------------------------
# Per frame
# ---------------------------------------------------------------------------------------------


@oracle.requires_tshark
@pytest.mark.tshark
@pytest.mark.parametrize("frame_id", FRAME_IDS)
def test_control_frame_against_tshark(tshark: dict, frame_id: str) -> None:
    file, number = frame_id.rsplit("#", 1)
    cf = FRAMES[(file, int(number))]
    frame = tshark[file][cf.number - 1]
    assert frame["frame.number"] == [str(cf.number)]
    assert "lisp" in frame["frame.protocols"][0].split(":")
    dirty = bool(frame["_malformed"] or frame["_expert"] or frame["_trailing"])

    if cf.key in REJECTED:
        assert dirty, "tshark accepts a frame we expected it to reject"
        with pytest.raises(WireError) as err:
            decode_control(cf.payload)
        assert err.value.reason == REJECTED[cf.key]
        assert err.value.detail
        return

    oracle.assert_clean(frame)
    dg = parse_udp_datagram(cf.ip, verify_checksum=True)
    assert (dg.sport, dg.dport, dg.payload) == (cf.sport, cf.dport, cf.payload)
    assert _colon_hex(frame["udp.payload"][0]) == cf.payload
    message = decode_control(cf.payload)
    assert frame_fields(frame, "lisp.") == lisp_fields(message)
    if isinstance(message, EncapsulatedControl):
        for key, value in _inner_ip_fields(message).items():
            assert frame[key][-1] == value, key
    assert encode_control(message) == cf.payload


# ---------------------------------------------------------------------------------------------
# Per file
# ---------------------------------------------------------------------------------------------


def test_every_capture_is_in_the_tables() -> None:
    assert set(CAPTURE_FILES) == set(EXPECTED_MESSAGES) == set(EXPECTED_DECODE_LINES)


@pytest.mark.parametrize("file", CAPTURE_FILES)
def test_decoded_messages_per_file(file: str) -> None:
    decoded: Counter[str] = Counter()
    rejected: dict[tuple[str, int], str] = {}
    for cf in (f for f in FRAMES.values() if f.file == file):
        try:
            message = decode_control(cf.payload)
        except WireError as exc:
            rejected[cf.key] = exc.reason
        else:
            decoded[_message_name(message, cf.payload)] += 1
    assert dict(decoded) == EXPECTED_MESSAGES[file]
    assert rejected == {k: v for k, v in REJECTED.items() if k[0] == file}


@pytest.mark.parametrize("file", CAPTURE_FILES)
def test_packet_decoder_per_file(file: str) -> None:
    """decode_capture (the `lispd decode` path) agrees with decode_control frame by frame."""
    lines = list(decode_capture((CAPTURES / file).read_bytes()))
    ok = [line for line in lines if "error" not in line]
    errors = {(file, line["frame"]): line["error"] for line in lines if "error" in line}
    assert (len(ok), len(errors)) == EXPECTED_DECODE_LINES[file]
    assert errors == {k: v for k, v in REJECTED_BY_PACKET_DECODER.items() if k[0] == file}
    for line in ok:
        cf = FRAMES[(file, line["frame"])]
        assert line["layer"] == "control"
        assert (line["sport"], line["dport"]) == (cf.sport, cf.dport)
        assert line["message"] == to_jsonable(decode_control(cf.payload))


def test_rejected_frames_through_decode_ip_packet() -> None:
    for key, reason in REJECTED_BY_PACKET_DECODER.items():
        pkt = decode_ip_packet(FRAMES[key].ip)
        assert pkt is not None
        assert (pkt.kind, pkt.message, pkt.error) == ("control", None, reason)
        assert pkt.error_detail


def test_gre_frame_is_not_seen_by_the_packet_decoder() -> None:
    """maprequest.pcap's Map-Request travels in GRE: decode_ip_packet (rightly, for a LISP
    router) reports the outer packet as not LISP; the inner packet decodes."""
    (captured,) = read_file(CAPTURES / "maprequest.pcap")
    outer = ip_payload(captured.linktype, captured.frame)
    assert outer is not None and outer[9] == PROTO_GRE
    assert decode_ip_packet(outer) is None
    inner = decode_ip_packet(FRAMES[("maprequest.pcap", 1)].ip)
    assert inner is not None and inner.error is None and inner.message.map_reply is not None


# ---------------------------------------------------------------------------------------------
# `lispd decode --pcap`
# ---------------------------------------------------------------------------------------------


def test_cli_decode_pcap_matches_decode_capture() -> None:
    path = CAPTURES / "ligpy-marek.pcap"
    proc = subprocess.run(
        [sys.executable, "-m", "lispd", "decode", "--pcap", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr
    printed = [json.loads(line) for line in proc.stdout.splitlines()]
    expected = [json.loads(json.dumps(obj)) for obj in decode_capture(path.read_bytes())]
    assert printed == expected
    # frames 1-4 are DNS (UDP 53) and are skipped; 5 is the ECM'd Map-Request, 6 its reply
    assert [line["frame"] for line in printed] == [5, 6]
    assert [line["message"]["type"] for line in printed] == ["EncapsulatedControl", "MapReply"]
    assert printed[0]["message"]["message"]["type"] == "MapRequest"
    assert printed[0]["message"]["message"]["nonce"] == printed[1]["message"]["nonce"]


# ---------------------------------------------------------------------------------------------
# Authentication on real layouts
# ---------------------------------------------------------------------------------------------

AUTHENTICATED = [
    key
    for key, cf in FRAMES.items()
    if key not in REJECTED and cf.payload[0] >> 4 in (3, 4)  # Map-Register, Map-Notify
]


def test_authenticated_messages_are_the_expected_ones() -> None:
    by_file = Counter(file for file, _ in AUTHENTICATED)
    assert by_file == {
        "dual_stack_lisp.pcap": 8,
        "lisp_eid_notify.pcap": 2,
        "lisp_eid_register.pcap": 2,
        "lisp_ipv6.pcap": 2,
        "various_lisp_packets.pcap": 1,
    }


@pytest.mark.parametrize("key", AUTHENTICATED, ids=[f"{f}#{n}" for f, n in AUTHENTICATED])
def test_hmac_on_real_messages(key: tuple[str, int]) -> None:
    raw = FRAMES[key].payload
    message = decode_control(raw)
    assert isinstance(message, MapRegister | MapNotify)
    # every capture uses HMAC-SHA-1 with the full 20-byte digest
    assert (message.key_id, len(message.auth_data)) == (auth.KeyId.HMAC_SHA_1_96, 20)
    verifying = {k for k in CANDIDATE_KEYS if auth.verify(raw, k)}
    expected = {VERIFYING_KEYS[key]} if key in VERIFYING_KEYS else set()
    assert verifying == expected
    assert not auth.verify(raw, b"not-the-key")
    # Re-signing the decoded message writes the digest exactly where the original one sits:
    # same length, every other byte unchanged, and it verifies.
    key_bytes = b"lispd-test-key"
    resigned = encode_signed(message, key_bytes)
    start = auth.AUTH_OFFSET + 4
    assert len(resigned) == len(raw)
    assert resigned[:start] == raw[:start]
    assert resigned[start + 20 :] == raw[start + 20 :]
    assert auth.verify(resigned, key_bytes)
    assert not auth.verify(resigned, key_bytes + b"x")
    redecoded = decode_control(resigned)
    assert replace(redecoded, auth_data=message.auth_data) == message
