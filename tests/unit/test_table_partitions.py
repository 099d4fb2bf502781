"""A PrefixTable's partitions (lispd.mapcache.table.PARTITIONS): together every prefix once,
each prefix always in the same one, spread evenly, kept through every change; what lets a
paged listing copy a large table one partition per page."""

from __future__ import annotations

import ipaddress
import random

import pytest

from lispd.mapcache import PrefixTable, available_backends
from lispd.mapcache.table import PARTITIONS


def pairs(table: PrefixTable[int]) -> list[tuple[str, int]]:
    """Every (prefix, value) of the partitions, sorted."""
    return sorted((str(net), v) for i in range(table.partitions) for net, v in table.partition(i))


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize("seed", range(3))
def test_partitions_hold_every_prefix_once_through_changes(backend: str, seed: int) -> None:
    rng = random.Random(seed)
    table: PrefixTable[int] = PrefixTable(4, backend=backend)
    want: dict[str, int] = {}
    where: dict[str, int] = {}
    for step in range(2000):
        plen = rng.choice((8, 16, 24, 28, 32))
        net = str(
            ipaddress.ip_network((rng.getrandbits(10) << 22 >> (32 - plen) << (32 - plen), plen))
        )
        op = rng.random()
        if op < 0.6:
            table.insert(net, step)
            want[net] = step
        elif op < 0.95:
            if net in want:
                assert table.delete(net) == want.pop(net)
            else:
                with pytest.raises(KeyError):
                    table.delete(net)
        else:
            table.clear()
            want.clear()
        assert len(table) == len(want)
        if step % 200 == 0:
            assert pairs(table) == sorted(want.items())
            for i in range(table.partitions):  # a prefix never moves to another partition
                for found, _v in table.partition(i):
                    assert where.setdefault(str(found), i) == i
    assert pairs(table) == sorted(want.items())
    assert [str(n) for n, _v in table.items()] == [str(n) for n in table]
    assert sorted(str(n) for n in table) == sorted(want)


def test_consecutive_host_prefixes_spread_over_the_partitions() -> None:
    table: PrefixTable[int] = PrefixTable(6)
    for k in range(8192):
        table.insert(ipaddress.ip_network(((0x20010DB8 << 96) + k, 128)), k)
    sizes = [len(table.partition(i)) for i in range(PARTITIONS)]
    assert sum(sizes) == 8192
    assert max(sizes) < 3 * 8192 // PARTITIONS
    table.clear()
    assert len(table) == 0 and pairs(table) == []
    assert table.lookup("2001:db8::5") is None
