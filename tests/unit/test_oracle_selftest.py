"""Self-test of the tshark oracle harness (tests/oracle.py) on hand-written LISP bytes.

The LISP messages below are written out byte by byte from the RFCs (RFC 9300 section 5: the
data header; RFC 9301 section 5: records, Map-Request, Map-Reply), independently of lispd.wire, so
that a failure here points at the harness (or at tshark), never at our codecs.
"""

from __future__ import annotations

import shutil

import pytest

from tests import oracle
from tests.external import capture

# fmt: off
# Map-Request (section 4.1): type 1, no flags, IRC 0 (one ITR-RLOC), 1 record;
# nonce 0x0102030405060708; source EID AFI 0; ITR-RLOC AFI 1 192.0.2.1;
# record: reserved 0, mask-len 24, AFI 1 198.51.100.0.
MAP_REQUEST = bytes.fromhex(
    "10000001"  # type 1 | flags 0 | IRC 0 | record count 1
    "0102030405060708"  # nonce
    "0000"  # source EID AFI 0 (not set)
    "0001" "c0000201"  # ITR-RLOC: AFI 1, 192.0.2.1
    "00" "18" "0001" "c6336400"  # record: reserved, mask-len 24, AFI 1, 198.51.100.0
)

# Map-Reply (section 5 with records per 3.1/3.2): P and E flags, 2 records, same nonce.
#   record 1: TTL 1440, 1 locator, 198.51.100.0/24, ACT 0, A=1, version 5;
#             locator prio 1 weight 100 mprio 255 mweight 0, flags L|p|R, 192.0.2.10
#   record 2: TTL 15, 0 locators, 198.51.100.16/28, ACT 3 (drop), A=0 (negative)
MAP_REPLY = bytes.fromhex(
    "2c000002"  # type 2 | P 0x08 | E 0x04 | record count 2
    "0102030405060708"
    "000005a0" "01" "18" "1000" "0005" "0001" "c6336400"  # record 1 header + EID
    "01" "64" "ff" "00" "0007" "0001" "c000020a"  # its locator
    "0000000f" "00" "1c" "6000" "0000" "0001" "c6336410"  # record 2: negative, ACT 3
)

# Inner IPv4/UDP packet 198.51.100.1:1000 -> 198.51.100.17:2000, TTL 63, ID 0x1234, "hi",
# header and UDP checksums filled in.
INNER_IPV4 = bytes.fromhex(
    "4500001e123400003f111522c6336401c6336411" "03e807d0000a373f" "6869"
)

# LISP data header (section 2.2): N|L|I flags (0xc8), nonce 0xabcdef, IID 7, LSB8 0x03.
DATA_HEADER = bytes.fromhex("c8abcdef" "00000703")
# E without N (0x20): RFC-wise meaningless, and tshark warns about it.
DATA_HEADER_E_NO_N = bytes.fromhex("20000000" "00000000")
# fmt: on


def _control(payload: bytes, v6: bool = False, sport: int = 61000, dport: int = 4342) -> bytes:
    if v6:
        return oracle.udp_packet("2001:db8::1", "2001:db8::2", sport, dport, payload)
    return oracle.udp_packet("192.0.2.1", "192.0.2.2", sport, dport, payload)


# ---------------------------------------------------------------------------- udp_packet
def test_udp_packet_ipv4_data_has_zero_checksum() -> None:
    pkt = oracle.udp_packet("192.0.2.1", "192.0.2.2", 61000, 4341, b"\x00" * 8, ttl=17)
    assert pkt[0] >> 4 == 4
    assert pkt[8] == 17  # TTL
    assert pkt[9] == 17  # protocol UDP
    assert pkt[26:28] == b"\x00\x00"  # UDP checksum
    assert int.from_bytes(pkt[22:24], "big") == 4341


def test_udp_packet_checksums_elsewhere() -> None:
    v4 = oracle.udp_packet("192.0.2.1", "192.0.2.2", 61000, 4342, MAP_REQUEST)
    assert v4[26:28] != b"\x00\x00"
    v6 = oracle.udp_packet("2001:db8::1", "2001:db8::2", 61000, 4341, b"\x00" * 8, ttl=9)
    assert v6[0] >> 4 == 6
    assert v6[7] == 9  # hop limit
    assert v6[46:48] != b"\x00\x00"  # IPv6 UDP checksum is computed, even to 4341


def test_udp_packet_rejects_mixed_families() -> None:
    with pytest.raises(ValueError):
        oracle.udp_packet("192.0.2.1", "2001:db8::2", 1, 2, b"")


def test_decode_as_arguments() -> None:
    assert oracle.decode_as(61005, "lisp-data") == ("-d", "udp.port==61005,lisp-data")


def test_marks() -> None:
    assert oracle.TSHARK_MARKS[0].name == "tshark"
    assert oracle.requires_tshark.name == "skipif"
    assert oracle.requires_tshark.args[0] is (shutil.which("tshark") is None)


# ---------------------------------------------------------------------------- flatten (offline)
def test_flatten_collects_expert_and_malformed_offline() -> None:
    T = oracle.Tree
    tree = T(
        [
            ("ip", T([("ip.src", "192.0.2.1")])),
            (
                "lisp",
                T(
                    [
                        ("lisp.type", "1"),
                        (
                            "_ws.expert",
                            T(
                                [
                                    ("lisp.unexpected_field", ""),
                                    ("_ws.expert.message", "Unexpected AFI"),
                                    ("_ws.expert.severity", "8388608"),
                                    ("_ws.expert.group", "150994944"),
                                ]
                            ),
                        ),
                        (
                            "_ws.expert",
                            T(
                                [
                                    ("x.note", ""),
                                    ("_ws.expert.message", "only a note"),
                                    ("_ws.expert.severity", "4194304"),
                                ]
                            ),
                        ),
                        ("data", T([("data.data", "01:02"), ("data.len", "2")])),
                    ]
                ),
            ),
            ("ip", T([("ip.src", "198.51.100.1")])),
            ("data", T([("data.data", "68:69")])),
            (
                "_ws.malformed",
                T(
                    [
                        (
                            "_ws.expert",
                            T(
                                [
                                    ("_ws.malformed.expert", ""),
                                    ("_ws.expert.message", "Malformed Packet (Exception occurred)"),
                                    ("_ws.expert.severity", "8388608"),
                                ]
                            ),
                        ),
                        ("_ws.malformed", "Malformed Packet"),
                    ]
                ),
            ),
        ]
    )
    flat = oracle.flatten(tree)
    assert flat["ip.src"] == ["192.0.2.1", "198.51.100.1"]
    assert flat["lisp.type"] == ["1"]
    assert flat["_malformed"] == ["Malformed Packet (Exception occurred)"]
    assert flat["_expert"] == [
        "error lisp.unexpected_field: Unexpected AFI",
        "error _ws.malformed.expert: Malformed Packet (Exception occurred)",
    ]
    assert flat["_trailing"] == ["01:02"]  # the data under "lisp", not the inner payload
    assert [oracle.flatten(t)["ip.src"] for t in oracle.subtrees(tree, "ip")] == [
        ["192.0.2.1"],
        ["198.51.100.1"],
    ]
    with pytest.raises(pytest.fail.Exception, match="Unexpected AFI"):
        oracle.assert_clean(flat)
    oracle.assert_clean(oracle.flatten(T([("ip", T([("ip.src", "192.0.2.1")]))])))


# ---------------------------------------------------------------------------- against tshark
@pytest.mark.tshark
@oracle.requires_tshark
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_map_request_fields(v6: bool) -> None:
    (frame,) = oracle.tshark_frames([_control(MAP_REQUEST, v6=v6)])
    oracle.assert_clean(frame)
    assert frame["lisp.type"] == ["1"]
    assert frame["lisp.nonce"] == ["0x0102030405060708"]
    assert frame["lisp.mreq.flags"] == ["0x000000"]
    assert frame["lisp.mreq.flags.probe"] == ["0"]
    assert frame["lisp.irc"] == ["0"]
    assert frame["lisp.records"] == ["1"]
    assert frame["lisp.mreq.srceid.afi"] == ["0"]
    assert frame["lisp.mreq.itr_rloc.afi"] == ["1"]
    assert frame["lisp.mreq.itr_rloc_ipv4"] == ["192.0.2.1"]
    assert frame["lisp.mreq.record.prefix.length"] == ["24"]
    assert frame["lisp.mreq.record.prefix.afi"] == ["1"]
    assert frame["lisp.mreq.record.prefix.ipv4"] == ["198.51.100.0"]
    assert frame["udp.dstport"] == ["4342"]
    assert frame["udp.checksum.status"] == ["1"]  # good
    assert frame["_malformed"] == frame["_expert"] == frame["_trailing"] == []
    if v6:
        assert frame["ipv6.src"] == ["2001:db8::1"]
    else:
        assert frame["ip.src"] == ["192.0.2.1"]
        assert frame["ip.checksum.status"] == ["1"]


@pytest.mark.tshark
@oracle.requires_tshark
def test_map_reply_records_via_subtrees() -> None:
    pkt = oracle.udp_packet("192.0.2.2", "192.0.2.1", 4342, 61000, MAP_REPLY)
    (tree,) = oracle.tshark_trees([pkt])
    frame = oracle.flatten(tree)
    oracle.assert_clean(frame)
    assert frame["lisp.type"] == ["2"]
    assert frame["lisp.mrep.flags.probe"] == ["1"]
    assert frame["lisp.mrep.flags.enlr"] == ["1"]
    assert frame["lisp.mrep.flags.sec"] == ["0"]
    assert frame["lisp.mapping.ttl"] == ["1440", "15"]
    records = [oracle.flatten(t) for t in oracle.subtrees(tree, "lisp.mapping")]
    assert len(records) == 2
    first, second = records
    assert first["lisp.mapping.eid.ipv4"] == ["198.51.100.0"]
    assert first["lisp.mapping.eid.masklen"] == ["24"]
    assert first["lisp.mapping.loccnt"] == ["1"]
    assert first["lisp.mapping.auth"] == ["1"]
    assert first["lisp.mapping.act"] == ["0"]
    assert first["lisp.mapping.ver"] == ["5"]
    assert first["lisp.loc.priority"] == ["1"]
    assert first["lisp.loc.weight"] == ["100"]
    assert first["lisp.loc.multicast_priority"] == ["255"]
    assert first["lisp.loc.multicast_weight"] == ["0"]
    assert first["lisp.loc.flags"] == ["0x0007"]
    assert first["lisp.loc.flags.local"] == first["lisp.loc.flags.probe"] == ["1"]
    assert first["lisp.loc.flags.reach"] == ["1"]
    assert first["lisp.loc.locator"] == ["192.0.2.10"]
    assert second["lisp.mapping.eid.ipv4"] == ["198.51.100.16"]
    assert second["lisp.mapping.eid.masklen"] == ["28"]
    assert second["lisp.mapping.loccnt"] == ["0"]
    assert second["lisp.mapping.act"] == ["3"]
    assert second["lisp.mapping.auth"] == ["0"]
    assert "lisp.loc.locator" not in second


@pytest.mark.tshark
@oracle.requires_tshark
def test_data_packet_fields() -> None:
    pkt = oracle.udp_packet("192.0.2.1", "192.0.2.2", 61000, 4341, DATA_HEADER + INNER_IPV4)
    (frame,) = oracle.tshark_frames([pkt])
    oracle.assert_clean(frame)
    assert frame["lisp-data.flags"] == ["0xc8"]
    assert frame["lisp-data.flags.nonce"] == ["1"]
    assert frame["lisp-data.flags.lsb"] == ["1"]
    assert frame["lisp-data.flags.enr"] == ["0"]
    assert frame["lisp-data.flags.mv"] == ["0"]
    assert frame["lisp-data.flags.iid"] == ["1"]
    assert frame["lisp-data.nonce"] == [str(0xABCDEF)]  # decimal, not hex
    assert frame["lisp-data.iid"] == ["7"]
    assert frame["lisp-data.lsb8"] == ["0x03"]
    assert "lisp-data.lsb" not in frame
    # outer then inner headers, in order of appearance
    assert frame["ip.src"] == ["192.0.2.1", "198.51.100.1"]
    assert frame["ip.dst"] == ["192.0.2.2", "198.51.100.17"]
    assert frame["ip.ttl"] == ["64", "63"]
    assert frame["udp.dstport"] == ["4341", "2000"]
    assert frame["udp.checksum"][0] == "0x0000"  # outer: zero checksum
    assert frame["ip.checksum.status"] == ["1", "1"]


@pytest.mark.tshark
@oracle.requires_tshark
def test_ecm_values_are_outer_then_inner() -> None:
    inner = oracle.udp_packet("198.51.100.1", "198.51.100.17", 61002, 4342, MAP_REQUEST, ttl=32)
    ecm = bytes.fromhex("80000000") + inner  # ECM header (section 6), no flags
    (frame,) = oracle.tshark_frames([_control(ecm)])
    oracle.assert_clean(frame)
    assert frame["lisp.type"] == ["8", "1"]
    assert frame["lisp.ecm.flags.sec"] == frame["lisp.ecm.flags.ddt"] == ["0"]
    assert frame["lisp.ecm.res"] == ["0x00000000"]
    assert frame["ip.src"] == ["192.0.2.1", "198.51.100.1"]
    assert frame["ip.ttl"] == ["64", "32"]
    assert frame["udp.srcport"] == ["61000", "61002"]
    assert frame["lisp.mreq.itr_rloc_ipv4"] == ["192.0.2.1"]
    assert len(oracle.subtrees(oracle.tshark_trees([_control(ecm)])[0], "lisp")) == 2


@pytest.mark.tshark
@oracle.requires_tshark
def test_truncated_map_request_is_malformed() -> None:
    frames = oracle.tshark_frames([_control(MAP_REQUEST[:20]), _control(MAP_REQUEST[:13])])
    assert len(frames) == 2
    for frame in frames:
        assert frame["lisp.type"] == ["1"]
        assert frame["_malformed"] == ["Malformed Packet (Exception occurred)"]
        assert any("Malformed" in e for e in frame["_expert"])
        with pytest.raises(pytest.fail.Exception, match="Malformed Packet"):
            oracle.assert_clean(frame)


@pytest.mark.tshark
@oracle.requires_tshark
def test_expert_warning_e_without_n() -> None:
    pkt = oracle.udp_packet("192.0.2.1", "192.0.2.2", 61000, 4341, DATA_HEADER_E_NO_N + INNER_IPV4)
    (frame,) = oracle.tshark_frames([pkt])
    assert frame["_malformed"] == []
    assert frame["_expert"] == [
        "warning lisp-data.flags.en_invalid: Invalid flag combination: if E is set, N MUST be set"
    ]
    with pytest.raises(pytest.fail.Exception, match="en_invalid"):
        oracle.assert_clean(frame)


@pytest.mark.tshark
@oracle.requires_tshark
def test_bad_udp_checksum_is_an_expert_error() -> None:
    pkt = bytearray(_control(MAP_REQUEST))
    pkt[26] ^= 0xFF  # UDP checksum, high byte
    (frame,) = oracle.tshark_frames([bytes(pkt)])
    assert frame["udp.checksum.status"] == ["0"]
    assert len(frame["_expert"]) == 1
    assert frame["_expert"][0].startswith("error udp.checksum.bad: Bad checksum")


@pytest.mark.tshark
@oracle.requires_tshark
def test_trailing_bytes_are_reported() -> None:
    (frame,) = oracle.tshark_frames([_control(MAP_REQUEST + b"\x01\x02")])
    assert frame["lisp.mreq.record.prefix.ipv4"] == ["198.51.100.0"]
    assert frame["_malformed"] == frame["_expert"] == []
    assert frame["_trailing"] == ["01:02"]
    with pytest.raises(pytest.fail.Exception, match="undissected"):
        oracle.assert_clean(frame)


@pytest.mark.tshark
@oracle.requires_tshark
def test_frames_keep_order_and_decode_as() -> None:
    data = DATA_HEADER + INNER_IPV4
    from_4342 = oracle.udp_packet("192.0.2.1", "203.0.113.5", 4342, 61005, data)
    plain = oracle.tshark_frames([_control(MAP_REQUEST), from_4342])
    assert [f["frame.number"] for f in plain] == [["1"], ["2"]]
    assert "lisp-data.flags" not in plain[1]  # wrongly taken for control by port order
    decoded = oracle.tshark_frames(
        [_control(MAP_REQUEST), from_4342], oracle.decode_as(61005, "lisp-data")
    )
    oracle.assert_clean(decoded[1])
    assert decoded[1]["lisp-data.iid"] == ["7"]


@pytest.mark.tshark
@oracle.requires_tshark
def test_tshark_file_frames_on_real_capture() -> None:
    (frame,) = oracle.tshark_file_frames(capture("maprequest.pcap"))
    oracle.assert_clean(frame)
    assert frame["lisp.type"] == ["1"]
    assert frame["frame.time_epoch"] == ["946736982.875288000"]


@pytest.mark.tshark
@oracle.requires_tshark
def test_real_malformed_capture() -> None:
    frames = oracle.tshark_file_frames(capture("lisp_eid_notify.pcap"))
    assert len(frames) == 4
    assert [bool(f["_malformed"]) for f in frames] == [False, False, True, False]


@pytest.mark.tshark
@oracle.requires_tshark
def test_no_packets() -> None:
    assert oracle.tshark_frames([]) == []
