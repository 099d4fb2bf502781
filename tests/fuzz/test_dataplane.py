"""The packet handlers of the ITR and ETR never raise, whatever bytes arrive: every packet
ends as an encapsulation, a TUN write or a drop with a named reason."""

from __future__ import annotations

import os
import random
from ipaddress import ip_address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lispd.config import parse_config
from lispd.dataplane.etr import Etr
from lispd.dataplane.itr import Itr
from lispd.dataplane.outputs import Drop, Encap, Miss, ToTun
from lispd.dataplane.rtr import Rtr
from lispd.node.build import build_tables
from lispd.stats import Counters
from lispd.wire.ip import IPv4Header, IPv6Header, UdpDatagram, build_udp_datagram
from tests import configs
from tests.fuzz.test_decoders import mutated

EXAMPLES = int(os.environ.get("LISPD_FUZZ_EXAMPLES", "2000"))  # see test_decoders
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

CONFIG = parse_config(
    configs.toml(
        configs.xtr(
            rlocs=("192.0.2.2", "2001:db8:0:1::2"),
            underlay={"mtu": 1400},
            database_mapping=[
                configs.mapping("198.51.100.0/28", "192.0.2.2", instance_id=7),
                configs.mapping("2001:db8:100:1::/64", "2001:db8:0:1::2"),
            ],
            map_cache=[
                configs.mapping(
                    "198.51.100.16/28",
                    {"address": "192.0.2.6", "weight": 60},
                    {"address": "2001:db8:0:2::2", "weight": 40},
                    instance_id=7,
                ),
                configs.negative("2001:db8:100:2::/64", "drop"),
            ],
        )
    )
)


def _seeds() -> tuple[bytes, ...]:
    v4 = IPv4Header(ip_address("198.51.100.2"), ip_address("198.51.100.18"))
    v6 = IPv6Header(ip_address("2001:db8:100:1::2"), ip_address("2001:db8:100:2::2"))
    inner = [build_udp_datagram(UdpDatagram(ip, 1000, 2000, b"x" * n)) for ip in (v4, v6)
             for n in (0, 100, 1400)]  # fmt: skip
    headers = [bytes.fromhex("8800000100000700"), bytes.fromhex("8000000100000000")]
    return tuple(inner) + tuple(h + p for h in headers for p in inner)


SEEDS = _seeds()


def _roles() -> tuple[Itr, Etr]:
    mapcache, database = build_tables(CONFIG, 0.0)
    rng = random.Random(1)
    rlocs = {a.version: a for a in CONFIG.underlay.rlocs}
    itr = Itr(mapcache, database, rlocs, 1400, Counters(), lambda: rng.getrandbits(24), float)
    return itr, Etr(database)


ITR, ETR = _roles()


@FUZZ
@given(mutated(SEEDS))
def test_itr_handles_anything(data: bytes) -> None:
    out = ITR.handle(data)
    assert type(out) in (Encap, ToTun, Miss, Drop)
    if type(out) is Drop:
        assert out.reason


@FUZZ
@given(mutated(SEEDS), st.integers(0, 255), st.integers(0, 255))
def test_etr_handles_anything(data: bytes, ttl: int, tos: int) -> None:
    out = ETR.handle(data, ttl, tos)
    assert type(out) in (ToTun, Drop)


def _rtr() -> Rtr:
    mapcache, database = build_tables(CONFIG, 0.0)
    rng = random.Random(2)
    rlocs = {a.version: a for a in CONFIG.underlay.rlocs}
    ports = {ip_address("192.0.2.6"): 40000}
    forwarder = Itr(
        mapcache, database, rlocs, 1400, Counters(), lambda: rng.getrandbits(24), float,
        nat_port=lambda address, _iid, _prefix: ports.get(address),
    )  # fmt: skip
    return Rtr(forwarder)


RTR = _rtr()


@FUZZ
@given(mutated(SEEDS), st.integers(0, 255), st.integers(0, 255))
def test_rtr_handles_anything(data: bytes, ttl: int, tos: int) -> None:
    out = RTR.handle(data, ttl, tos)
    assert type(out) in (Encap, Miss, Drop)
    if type(out) is Miss:
        assert out.packet  # an RTR always hands over the packet to hold
    if type(out) is Drop:
        assert out.reason
