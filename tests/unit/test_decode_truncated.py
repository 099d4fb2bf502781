"""``lispd decode --pcap`` on captures cut by a snap length (``tcpdump -s 256``): a data packet
reports the headers it has (outer IP/UDP, the LISP data header, the inner IP header and UDP
ports) and ``"truncated": true, "captured": N, "length": M``; a control message cut short
reports ``"error": "truncated"`` with its type.  The captures are built here by write_pcap from
packets our own encoders make."""

from __future__ import annotations

import json
import subprocess
import sys
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

import pytest

from lispd.cli.decode import decode_capture
from lispd.tools.pcap import LINKTYPE_ETHERNET, read_packets, write_pcap
from lispd.wire.control import encode_control
from lispd.wire.data import IID_CONTROL, DataHeader, EncapsulatedPacket, encapsulate
from lispd.wire.ip import IpHeader, IPv4Header, IPv6Header, UdpDatagram, build_udp_datagram
from lispd.wire.mapregister import MapNotify, MapRegister, encode_map_register
from lispd.wire.packet import decode_ip_packet
from lispd.wire.records import EidRecord, Locator

REPO = Path(__file__).resolve().parents[2]
SNAPLEN = 256
HEADER = DataHeader(nonce_present=True, instance_id_present=True, nonce=0xABCDE, instance_id=7)


def ip_header(src: str, dst: str) -> IpHeader:
    """An IPv4 or IPv6 header (by the addresses' family)."""
    if ":" in src:
        return IPv6Header(IPv6Address(src), IPv6Address(dst))
    return IPv4Header(IPv4Address(src), IPv4Address(dst))


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An IP/UDP packet built by lispd's encoder."""
    return build_udp_datagram(UdpDatagram(ip_header(src, dst), sport, dport, payload))


def data_packet(outer: tuple[str, str], inner: tuple[str, str], size: int = 1400) -> bytes:
    """A LISP data packet (instance 7) from ``outer[0]``:61000 to ``outer[1]``:4341 carrying
    a UDP packet 40000 -> 5001 of ``size`` payload bytes between the ``inner`` EIDs."""
    inner_packet = udp(*inner, 40000, 5001, bytes(size))
    encap = EncapsulatedPacket(ip_header(*outer), 61000, HEADER, inner_packet)
    return encapsulate(encap)


def decoded(packets: list[bytes], snaplen: int | None = SNAPLEN, **kw: Any) -> list[dict[str, Any]]:
    """What ``lispd decode --pcap`` prints for a capture of ``packets`` (as JSON round trip)."""
    capture = write_pcap(packets, snaplen=snaplen, **kw)
    return [json.loads(json.dumps(obj)) for obj in decode_capture(capture)]


def assert_data_header(obj: dict[str, Any]) -> None:
    """The LISP data header of :data:`HEADER`."""
    assert obj["layer"] == "data" and "error" not in obj
    assert obj["message"]["type"] == "DataHeader"
    assert obj["message"]["instance_id"] == 7
    assert obj["message"]["nonce"] == "0x00000000000abcde"


@pytest.mark.parametrize(
    ("outer", "inner"),
    [
        (("192.0.2.1", "192.0.2.2"), ("198.51.100.2", "198.51.100.18")),
        (("2001:db8:0:1::1", "2001:db8:0:2::2"), ("2001:db8:100:1::2", "2001:db8:100:2::2")),
        (("192.0.2.1", "192.0.2.2"), ("2001:db8:100:1::2", "2001:db8:100:2::2")),
        (("2001:db8:0:1::1", "2001:db8:0:2::2"), ("198.51.100.2", "198.51.100.18")),
    ],
    ids=["v4-in-v4", "v6-in-v6", "v6-in-v4", "v4-in-v6"],
)
def test_a_data_packet_cut_by_the_snap_length_reports_its_headers(
    outer: tuple[str, str], inner: tuple[str, str]
) -> None:
    pkt = data_packet(outer, inner)
    (obj,) = decoded([pkt])
    assert (obj["src"], obj["dst"], obj["sport"], obj["dport"]) == (*outer, 61000, 4341)
    assert obj["truncated"] is True
    assert obj["captured"] == SNAPLEN  # raw IP link type: the whole frame is the IP packet
    assert obj["length"] == len(pkt)
    assert_data_header(obj)
    assert obj["inner"]["ip"]["src"] == inner[0] and obj["inner"]["ip"]["dst"] == inner[1]
    assert obj["inner"]["ip"]["type"] == ("IPv6Header" if ":" in inner[0] else "IPv4Header")
    assert (obj["inner"]["sport"], obj["inner"]["dport"]) == (40000, 5001)
    assert obj["inner"]["message"] is None


def test_the_same_packets_whole_have_no_truncation_marks() -> None:
    pkt = data_packet(("2001:db8:0:1::1", "2001:db8:0:2::2"), ("198.51.100.2", "198.51.100.18"))
    (whole,) = decoded([pkt], snaplen=None)
    assert not {"truncated", "captured", "length"} & whole.keys()
    (cut,) = decoded([pkt])
    for key in ("layer", "src", "dst", "sport", "dport", "message"):
        assert cut[key] == whole[key], key
    assert cut["inner"]["ip"] == whole["inner"]["ip"]


def test_a_small_packet_under_the_snap_length_is_untouched() -> None:
    small = data_packet(("192.0.2.1", "192.0.2.2"), ("198.51.100.2", "198.51.100.18"), size=20)
    big = data_packet(("192.0.2.1", "192.0.2.2"), ("198.51.100.2", "198.51.100.18"))
    first, second = decoded([small, big])
    assert "truncated" not in first and first["inner"]["sport"] == 40000
    assert second["truncated"] and second["frame"] == 2


@pytest.mark.parametrize("family", [4, 6])
def test_cuts_inside_the_inner_headers(family: int) -> None:
    """Cut inside the inner UDP header: the inner IP header and the ports (4 bytes) stay;
    cut inside the inner IP header: no inner part, the LISP header stays; cut inside the
    LISP header: the outer headers and a truncated error."""
    if family == 4:
        outer, inner, outer_len, inner_len = (
            ("192.0.2.1", "192.0.2.2"),
            ("198.51.100.2", "198.51.100.18"),
            28,
            20,
        )
    else:
        outer, inner, outer_len, inner_len = (
            ("2001:db8:0:1::1", "2001:db8:0:2::2"),
            ("2001:db8:100:1::2", "2001:db8:100:2::2"),
            48,
            40,
        )
    pkt = data_packet(outer, inner)
    start = outer_len + 8 + inner_len  # where the inner UDP header starts
    (ports_only,) = decoded([pkt], snaplen=start + 4)
    assert_data_header(ports_only)
    assert (ports_only["inner"]["sport"], ports_only["inner"]["dport"]) == (40000, 5001)
    (no_ports,) = decoded([pkt], snaplen=start + 3)
    assert no_ports["inner"]["ip"]["dst"] == inner[1]
    assert no_ports["inner"]["sport"] is None and no_ports["inner"]["dport"] is None
    (no_inner,) = decoded([pkt], snaplen=start - 1)
    assert_data_header(no_inner)
    assert "inner" not in no_inner and no_inner["captured"] == start - 1
    (no_header,) = decoded([pkt], snaplen=outer_len + 5)
    assert no_header["error"] == "truncated" and no_header["truncated"]
    assert (no_header["sport"], no_header["dport"]) == (61000, 4341)
    (no_udp,) = decoded([pkt], snaplen=outer_len - 8 + 6)  # the ports, not the UDP length
    assert no_udp["error"] == "truncated" and no_udp["detail"] == "UDP header"


def test_a_cut_control_message_reports_truncated_with_its_type() -> None:
    locators = tuple(Locator(ip_address(f"192.0.2.{i}")) for i in range(1, 40))
    record = EidRecord(ip_address("198.51.100.0"), 28, locators)  # type: ignore[arg-type]
    register = encode_map_register(MapRegister(0x1234, (record,), auth_data=bytes(16)))
    pkt = udp("192.0.2.1", "192.0.2.10", 4342, 4342, register)
    assert len(pkt) > SNAPLEN
    (obj,) = decoded([pkt])
    assert obj["layer"] == "control" and obj["error"] == "truncated" and obj["detail"]
    assert obj["message_type"] == "map-register"
    assert (obj["truncated"], obj["captured"], obj["length"]) == (True, SNAPLEN, len(pkt))
    (whole,) = decoded([pkt], snaplen=None)
    assert whole["message"]["type"] == "MapRegister" and "truncated" not in whole


def test_a_relayed_map_notify_cut_short_is_still_a_data_packet() -> None:
    """An RTR relays a Map-Notify from its port 4342 to a NATed xTR's translated port inside a
    data header with instance-ID 0xFFFFFF: recognised by the inner ports, even when cut."""
    locators = tuple(Locator(ip_address(f"192.0.2.{i}")) for i in range(1, 40))
    record = EidRecord(ip_address("198.51.100.0"), 28, locators)  # type: ignore[arg-type]
    notify = encode_control(MapNotify(0x99, (record,), auth_data=bytes(16)))
    inner = udp("192.0.2.10", "198.51.100.2", 4342, 4342, notify)
    header = DataHeader(nonce_present=True, instance_id_present=True, instance_id=IID_CONTROL)
    outer = IPv4Header(IPv4Address("192.0.2.20"), IPv4Address("203.0.113.2"))
    pkt = encapsulate(EncapsulatedPacket(outer, 4342, header, inner, dport=40123))
    (obj,) = decoded([pkt])
    assert obj["layer"] == "data" and obj["truncated"]
    assert obj["message"]["instance_id"] == IID_CONTROL
    assert (obj["inner"]["sport"], obj["inner"]["dport"]) == (4342, 4342)


def test_a_packet_short_on_the_wire_is_still_malformed() -> None:
    """Only the capture's own cut is forgiven: a record whose frame is all there was (its
    original length says so) but whose IP header claims more is a truncated packet."""
    pkt = data_packet(("192.0.2.1", "192.0.2.2"), ("198.51.100.2", "198.51.100.18"))
    (obj,) = decoded([pkt[:SNAPLEN]], snaplen=None)
    assert obj["error"] == "truncated" and not {"truncated", "captured", "length"} & obj.keys()
    assert decode_ip_packet(pkt[:SNAPLEN]).error == "truncated"  # type: ignore[union-attr]
    cut = decode_ip_packet(pkt[:SNAPLEN], cut=True)
    assert cut is not None and cut.error is None and cut.truncated
    assert (cut.captured, cut.length) == (SNAPLEN, len(pkt))


def test_ethernet_frames_cut_by_the_snap_length() -> None:
    """With a link layer, the snap length counts it too: ``captured`` is the IP part."""
    pkt = data_packet(("192.0.2.1", "192.0.2.2"), ("198.51.100.2", "198.51.100.18"))
    frame = bytes(6) + bytes(6) + b"\x08\x00" + pkt
    (obj,) = decoded([frame], linktype=LINKTYPE_ETHERNET)
    assert obj["truncated"] and obj["captured"] == SNAPLEN - 14 and obj["length"] == len(pkt)
    assert obj["inner"]["ip"]["dst"] == "198.51.100.18"


def test_non_lisp_packets_cut_short_are_skipped() -> None:
    other = udp("192.0.2.1", "192.0.2.2", 40000, 53, bytes(1000))
    assert decoded([other]) == []
    assert [p.cut for p in read_packets(write_pcap([other], snaplen=SNAPLEN))] == [True]


def test_cli_decode_pcap_prints_the_truncated_record(tmp_path: Path) -> None:
    pkt = data_packet(
        ("2001:db8:0:1::1", "2001:db8:0:2::2"), ("2001:db8:100:1::2", "2001:db8:100:2::2")
    )
    path = tmp_path / "cut.pcap"
    path.write_bytes(write_pcap([pkt], snaplen=SNAPLEN))
    proc = subprocess.run(
        [sys.executable, "-m", "lispd", "decode", "--pcap", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    obj = json.loads(line)
    assert (obj["truncated"], obj["captured"], obj["length"]) == (True, SNAPLEN, len(pkt))
    assert obj["inner"]["ip"]["src"] == "2001:db8:100:1::2"
