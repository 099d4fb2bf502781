"""``lig``, the LISP Internet Groper: the sans-IO core against golden strings, and ``main`` end
to end against a fake Map-Resolver on the loopback (no root, no namespaces)."""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lispd.cli import lig
from lispd.config import parse_config
from lispd.wire.address import NO_ADDRESS, ElpAddress, ElpHop, InstanceIdAddress
from lispd.wire.ecm import EncapsulatedControl, decode_ecm
from lispd.wire.ip import IPv4Header, IPv6Header
from lispd.wire.mapreply import MapReply, encode_map_reply
from lispd.wire.maprequest import MapRequest, encode_map_request
from lispd.wire.records import TTL_UNLIMITED, Action, EidPrefix, EidRecord, Locator
from tests import configs

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address
NONCE = 0x0123456789ABCDEF

# --------------------------------------------------------------------------------------------
# Arguments


def test_parse_eid() -> None:
    assert lig.parse_eid("198.51.100.18", None) == (0, "198.51.100.18", None)
    assert lig.parse_eid("[7]198.51.100.18", None) == (7, "198.51.100.18", None)
    assert lig.parse_eid("[7]198.51.100.18", 7) == (7, "198.51.100.18", None)
    assert lig.parse_eid("2001:db8::1", 9) == (9, "2001:db8::1", None)
    assert lig.parse_eid("198.51.100.0/28", None) == (0, "198.51.100.0", 28)
    assert lig.parse_eid("host.example", None) == (0, "host.example", None)
    for bad in ("[7]", "[x]1.2.3.4", "1.2.3.4/33", "1.2.3.4/x", "name/3", "", "[16777215]1.2.3.4"):
        with pytest.raises(lig.UsageError):
            lig.parse_eid(bad, None)
    with pytest.raises(lig.UsageError, match="--iid 8"):
        lig.parse_eid("[7]1.2.3.4", 8)


def test_make_target() -> None:
    assert lig.make_target(0, V4("198.51.100.18"), None) == (0, V4("198.51.100.18"), 32)
    assert lig.make_target(3, V4("198.51.100.18"), 28) == (3, V4("198.51.100.16"), 28)
    assert lig.make_target(0, V6("2001:db8::1"), None) == (0, V6("2001:db8::1"), 128)
    assert str(lig.Target(0, V4("198.51.100.18"), 32)) == "[0]198.51.100.18"
    assert str(lig.Target(5, V4("198.51.100.16"), 28)) == "[5]198.51.100.16/28"
    with pytest.raises(lig.UsageError, match="multicast"):
        lig.make_target(0, V4("224.0.0.1"), None)


def test_parse_source() -> None:
    assert lig.parse_source("198.51.100.1") == V4("198.51.100.1")
    assert lig.parse_source("[7]2001:db8::1") == V6("2001:db8::1")
    with pytest.raises(lig.UsageError):
        lig.parse_source("host.example")


def _database() -> tuple[Any, ...]:
    doc = configs.xtr(
        rlocs=("192.0.2.2",), eids=("2001:db8:1::/64", "198.51.100.0/28", "198.51.100.64/28")
    )
    doc["database-mapping"].append(configs.mapping("10.7.0.0/16", "192.0.2.2", instance_id=7))
    return parse_config(configs.toml(doc)).database


DATABASE = _database()


def test_choose_source_eid() -> None:
    local = [V4("127.0.0.1"), V4("192.0.2.2"), V4("198.51.100.65"), V6("2001:db8:1::1")]
    # A local address inside a database prefix, of the EID's family first.
    assert lig.choose_source_eid(DATABASE, 0, 4, local) == V4("198.51.100.65")
    assert lig.choose_source_eid(DATABASE, 0, 6, local) == V6("2001:db8:1::1")
    # None local: the first prefix's network address, of the EID's family first.
    assert lig.choose_source_eid(DATABASE, 0, 4, []) == V4("198.51.100.0")
    assert lig.choose_source_eid(DATABASE, 0, 6, []) == V6("2001:db8:1::")
    # Only the requested instance-id's prefixes; another family when that is all there is.
    assert lig.choose_source_eid(DATABASE, 7, 6, [V4("10.7.3.4")]) == V4("10.7.3.4")
    assert lig.choose_source_eid(DATABASE, 8, 4, local) is None
    assert lig.choose_source_eid((), 0, 4, local) is None


# --------------------------------------------------------------------------------------------
# The request

# Map-Request for [0]198.51.100.18/32 from source EID 198.51.100.1, ITR-RLOC 192.0.2.2, in an
# ECM whose inner IPv4/UDP goes 192.0.2.2:40000 -> 198.51.100.18:4342.
GOLDEN_REQUEST = bytes.fromhex(
    "80000000"  # ECM
    "4500003c0000400040114e69c0000202c6336412"  # inner IPv4, DF, TTL 64, UDP
    "9c4010f60028a157"  # inner UDP 40000 -> 4342
    "10000001"  # Map-Request, IRC 0 (one ITR-RLOC), one record
    "0123456789abcdef"  # nonce
    "0001c6336401"  # source EID 198.51.100.1
    "0001c0000202"  # ITR-RLOC 192.0.2.2
    "00200001c6336412"  # record: /32 198.51.100.18
)


def test_build_request_golden_and_decoded_back() -> None:
    target = lig.Target(0, V4("198.51.100.18"), 32)
    data = lig.build_request(target, V4("192.0.2.2"), 40000, NONCE, V4("198.51.100.1"))
    assert data == GOLDEN_REQUEST
    ecm = decode_ecm(data)
    assert ecm.inner_ip == IPv4Header(V4("192.0.2.2"), V4("198.51.100.18"))
    assert (ecm.sport, ecm.dport) == (40000, 4342)
    assert not (ecm.to_etr or ecm.to_ms or ecm.ddt or ecm.rtr)
    assert ecm.message == MapRequest(
        nonce=NONCE,
        records=(EidPrefix(V4("198.51.100.18"), 32),),
        itr_rlocs=(V4("192.0.2.2"),),
        source_eid=V4("198.51.100.1"),
    )


def test_build_request_instance_id_and_families() -> None:
    # IPv6 EID over an IPv4 underlay: the inner header takes the (IPv6) source EID.
    target = lig.Target(7, V6("2001:db8:2::2"), 128)
    ecm = decode_ecm(lig.build_request(target, V4("192.0.2.2"), 1234, 5, V6("2001:db8:1::1")))
    assert ecm.inner_ip == IPv6Header(V6("2001:db8:1::1"), V6("2001:db8:2::2"))
    request = ecm.message
    assert isinstance(request, MapRequest)
    assert request.records == (EidPrefix(InstanceIdAddress(7, V6("2001:db8:2::2")), 128),)
    assert request.source_eid == InstanceIdAddress(7, V6("2001:db8:1::1"))
    assert request.itr_rlocs == (V4("192.0.2.2"),)
    # No source EID of that family: the unspecified address; no source EID at all: AFI 0.
    ecm = decode_ecm(lig.build_request(target, V4("192.0.2.2"), 1234, 5, None))
    assert ecm.inner_ip.src == V6("::")
    assert isinstance(ecm.message, MapRequest) and ecm.message.source_eid == NO_ADDRESS
    # The ITR-RLOC wins over the source EID when both are of the EID's family.
    v4 = lig.Target(0, V4("198.51.100.0"), 28)
    ecm = decode_ecm(lig.build_request(v4, V4("192.0.2.2"), 1234, 5, V4("198.51.100.65")))
    assert ecm.inner_ip.src == V4("192.0.2.2")
    assert isinstance(ecm.message, MapRequest)
    assert ecm.message.records == (EidPrefix(V4("198.51.100.0"), 28),)


# --------------------------------------------------------------------------------------------
# Reply matching

POSITIVE = EidRecord(
    V4("198.51.100.16"),
    28,
    (
        Locator(V4("192.0.2.6"), 1, 100),
        Locator(V6("2001:db8::6"), 2, 50, reachable=False),
    ),
    ttl=1440,
    authoritative=True,
)
NEGATIVE = EidRecord(V4("200.0.0.0"), 5, ttl=15, action=Action.NATIVELY_FORWARD)
UNREGISTERED = EidRecord(V4("198.51.100.32"), 28, ttl=1, action=Action.SEND_MAP_REQUEST)
ELP = EidRecord(
    InstanceIdAddress(7, V4("198.51.100.32")),
    28,
    (
        Locator(
            ElpAddress(
                (ElpHop(V4("192.0.2.10")), ElpHop(V4("192.0.2.14")), ElpHop(V4("192.0.2.10")))
            ),
            1,
            100,
        ),
    ),
    ttl=TTL_UNLIMITED,
)


def test_match_reply() -> None:
    data = encode_map_reply(MapReply(NONCE, (POSITIVE,)))
    assert lig.match_reply(data, {NONCE}) == MapReply(NONCE, (POSITIVE,))
    assert lig.match_reply(data, [1, NONCE]) is not None
    assert lig.match_reply(data, {NONCE + 1}) is None
    assert lig.match_reply(data, ()) is None
    probe = encode_map_reply(MapReply(NONCE, (POSITIVE,), probe=True))
    assert lig.match_reply(probe, {NONCE}) is None
    request = encode_map_request(
        MapRequest(NONCE, (EidPrefix(V4("198.51.100.18"), 32),), (V4("192.0.2.2"),))
    )
    assert lig.match_reply(request, {NONCE}) is None
    assert lig.match_reply(b"", {NONCE}) is None
    assert lig.match_reply(data[:-3], {NONCE}) is None  # truncated
    assert lig.match_reply(b"\x20" + b"\xff" * 30, {NONCE}) is None


# --------------------------------------------------------------------------------------------
# Text and JSON


def test_format_positive() -> None:
    assert lig.format_reply(MapReply(NONCE, (POSITIVE,))) == (
        "\n"
        "Mapping entry for EID '[0]198.51.100.16/28', record ttl 1440, auth\n"
        "  Locator      State  Priority/Weight\n"
        "  192.0.2.6    up     1/100\n"
        "  2001:db8::6  down   2/50\n"
    )


def test_format_negative() -> None:
    assert lig.format_reply(MapReply(NONCE, (NEGATIVE,))) == (
        "\nMapping entry for EID '[0]200.0.0.0/5', record ttl 15, not auth, action native-forward\n"
    )
    assert lig.format_record(UNREGISTERED) == [
        "Mapping entry for EID '[0]198.51.100.32/28', record ttl 1, not auth, "
        "action send-map-request"
    ]
    drop = EidRecord(V6("2001:db8::"), 32, ttl=1, action=Action.DROP, authoritative=True)
    assert lig.format_record(drop) == [
        "Mapping entry for EID '[0]2001:db8::/32', record ttl 1, auth, action drop"
    ]


def test_format_elp_and_several_records() -> None:
    assert lig.format_reply(MapReply(NONCE, (ELP, NEGATIVE))) == (
        "\n"
        "Mapping entry for EID '[7]198.51.100.32/28', record ttl unlimited, not auth\n"
        "  Locator                             State  Priority/Weight\n"
        "  192.0.2.10->192.0.2.14->192.0.2.10  up     1/100\n"
        "\n"
        "Mapping entry for EID '[0]200.0.0.0/5', record ttl 15, not auth, action native-forward\n"
    )
    assert lig.format_reply(MapReply(NONCE, ())) == "\nMap-reply without records\n"


def test_format_progress_lines() -> None:
    target = lig.Target(0, V4("198.51.100.18"), 32)
    assert (
        lig.format_send_line("192.0.2.30", target)
        == "Send map-request to 192.0.2.30 for [0]198.51.100.18 ..."
    )
    assert (
        lig.format_received_line("192.0.2.6", 0.0123456)
        == "Received map-reply from 192.0.2.6 with rtt 0.012 secs"
    )
    assert lig.format_timeout(3, 2.0) == "No map-reply received after 3 tries (2 secs each)"
    assert lig.format_timeout(1, 0.5) == "No map-reply received after 1 try (0.5 secs each)"


def test_reply_json() -> None:
    reply = lig.Reply(MapReply(NONCE, (POSITIVE, ELP)), "192.0.2.6", 0.0031234567)
    target = lig.Target(0, V4("198.51.100.18"), 32)
    assert lig.reply_json(reply, "192.0.2.30", target) == {
        "eid": "[0]198.51.100.18",
        "map-resolver": "192.0.2.30",
        "reply-from": "192.0.2.6",
        "rtt": 0.003123,
        "nonce": "0x0123456789abcdef",
        "eid-prefix": "[0]198.51.100.16/28",
        "iid": 0,
        "ttl": 1440,
        "action": "no-action",
        "authoritative": True,
        "locators": [
            {"address": "192.0.2.6", "priority": 1, "weight": 100, "state": "up"},
            {"address": "2001:db8::6", "priority": 2, "weight": 50, "state": "down"},
        ],
        "records": [
            lig.record_json(POSITIVE),
            {
                "eid-prefix": "[7]198.51.100.32/28",
                "iid": 7,
                "ttl": TTL_UNLIMITED,
                "action": "no-action",
                "authoritative": False,
                "locators": [
                    {
                        "address": "192.0.2.10->192.0.2.14->192.0.2.10",
                        "priority": 1,
                        "weight": 100,
                        "state": "up",
                        "elp": ["192.0.2.10", "192.0.2.14", "192.0.2.10"],
                    }
                ],
            },
        ],
    }
    negative = lig.reply_json(lig.Reply(MapReply(1, (NEGATIVE,)), "x", 0.5), "y", target)
    assert (negative["action"], negative["locators"], negative["ttl"]) == ("native-forward", [], 15)


# --------------------------------------------------------------------------------------------
# main() against a fake Map-Resolver on the loopback

Handler = Callable[[EncapsulatedControl, socket.socket], None]


class FakeResolver:
    """A UDP server on 127.0.0.1 that decodes ECMs and hands them to ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.received: list[EncapsulatedControl] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            ecm = decode_ecm(data)
            self.received.append(ecm)
            self.handler(ecm, self.sock)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


def answer(records: tuple[EidRecord, ...], skip: int = 0) -> Handler:
    """Reply like a Map-Resolver: to the first ITR-RLOC at the inner source port (ignoring the
    first ``skip`` requests), with a stray wrong-nonce reply first."""
    seen = [0]

    def handler(ecm: EncapsulatedControl, sock: socket.socket) -> None:
        seen[0] += 1
        if seen[0] <= skip:
            return
        request = ecm.message
        assert isinstance(request, MapRequest)
        dst = (str(request.itr_rlocs[0]), ecm.sport)
        sock.sendto(encode_map_reply(MapReply(request.nonce ^ 1, records)), dst)
        sock.sendto(encode_map_reply(MapReply(request.nonce, records)), dst)

    return handler


@pytest.fixture
def resolver_factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Handler], Any]]:
    made: list[FakeResolver] = []

    def make(handler: Handler) -> FakeResolver:
        fake = FakeResolver(handler)
        monkeypatch.setattr(lig, "MR_PORT", fake.port)
        made.append(fake)
        return fake

    yield make
    for fake in made:
        fake.close()


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = lig.main(list(argv))
    out, err = capsys.readouterr()
    return rc, re.sub(r"rtt \d+\.\d{3} secs", "rtt X secs", out), err


def test_main_positive_reply(
    resolver_factory: Callable[[Handler], FakeResolver], capsys: pytest.CaptureFixture[str]
) -> None:
    fake = resolver_factory(answer((POSITIVE,)))
    rc, out, err = run_main(capsys, "-m", "127.0.0.1", "-s", "198.51.100.1", "198.51.100.18")
    assert (rc, err) == (0, ""), err
    assert out == (
        "Send map-request to 127.0.0.1 for [0]198.51.100.18 ...\n"
        "Received map-reply from 127.0.0.1 with rtt X secs\n"
        + lig.format_reply(MapReply(0, (POSITIVE,)))
    )
    (ecm,) = fake.received
    assert ecm.inner_ip.src == V4("127.0.0.1") and ecm.inner_ip.dst == V4("198.51.100.18")
    assert isinstance(ecm.message, MapRequest)
    assert ecm.message.itr_rlocs == (V4("127.0.0.1"),)
    assert ecm.message.source_eid == V4("198.51.100.1")


def test_main_json_after_a_lost_request(
    resolver_factory: Callable[[Handler], FakeResolver], capsys: pytest.CaptureFixture[str]
) -> None:
    fake = resolver_factory(answer((NEGATIVE,), skip=1))
    rc, out, err = run_main(
        capsys, "-m", "127.0.0.1", "--timeout", "0.3", "--json", "--iid", "0", "203.0.113.5"
    )
    assert rc == 0, err
    assert err.count("Send map-request to 127.0.0.1 for [0]203.0.113.5 ...") == 2, err
    assert "Received map-reply from 127.0.0.1 with rtt" in err
    doc = json.loads(out)
    assert doc["eid-prefix"] == "[0]200.0.0.0/5" and doc["action"] == "native-forward"
    assert doc["locators"] == [] and doc["reply-from"] == "127.0.0.1"
    assert doc["rtt"] < 0.3
    first, second = (e.message for e in fake.received)
    assert isinstance(first, MapRequest) and isinstance(second, MapRequest)
    assert first.nonce != second.nonce  # a fresh nonce per try
    assert doc["nonce"] == f"0x{second.nonce:016x}"


def test_main_timeout(
    resolver_factory: Callable[[Handler], FakeResolver], capsys: pytest.CaptureFixture[str]
) -> None:
    fake = resolver_factory(lambda ecm, sock: None)
    rc, out, _ = run_main(
        capsys, "-m", "127.0.0.1", "--timeout", "0.1", "--count", "2", "198.51.100.18"
    )
    assert rc == 1
    assert out == (
        "Send map-request to 127.0.0.1 for [0]198.51.100.18 ...\n" * 2
        + "No map-reply received after 2 tries (0.1 secs each)\n"
    )
    assert len(fake.received) == 2


def test_main_takes_resolver_and_source_from_the_config(
    resolver_factory: Callable[[Handler], FakeResolver],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    fake = resolver_factory(answer((POSITIVE,)))
    conf = tmp_path / "lispd.conf"
    conf.write_text(
        configs.toml(
            configs.xtr(
                rlocs=("127.0.0.2",), map_resolver=configs.addresses("127.0.0.1", "127.0.0.3")
            )
        )
    )
    rc, out, err = run_main(capsys, "-c", str(conf), "198.51.100.18/28")
    assert rc == 0, err
    assert out.startswith("Send map-request to 127.0.0.1 for [0]198.51.100.16/28 ...\n"), out
    (ecm,) = fake.received
    assert isinstance(ecm.message, MapRequest)
    assert ecm.message.records == (EidPrefix(V4("198.51.100.16"), 28),)
    assert ecm.message.source_eid == V4("198.51.100.0")  # no local address in the prefix


def test_main_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "none.conf")
    rc, _, err = run_main(capsys, "-c", missing, "198.51.100.18")
    assert rc == 2 and err.startswith("lig: ") and "cannot read" in err
    # With -m the configuration is needed only for the source EID: an explicit one must load.
    rc, _, err = run_main(capsys, "-c", missing, "-m", "127.0.0.1", "198.51.100.18")
    assert rc == 2 and "cannot read" in err
    conf = tmp_path / "lispd.conf"
    conf.write_text(configs.toml(configs.xtr(rlocs=("192.0.2.2",))))
    rc, _, err = run_main(capsys, "-c", str(conf), "198.51.100.18")
    assert rc == 2 and "no [[map-resolver]]" in err
    for argv in (["-m", "127.0.0.1", "[x]1.2.3.4"], ["-m", "127.0.0.1", "-s", "nope", "1.2.3.4"]):
        rc, _, err = run_main(capsys, *argv)
        assert rc == 2 and err.startswith("lig: "), err
    for argv in (["--count", "0", "1.2.3.4"], ["--timeout", "-1", "1.2.3.4"], []):
        with pytest.raises(SystemExit) as exc:
            lig.main(argv)
        assert exc.value.code == 2
    capsys.readouterr()
