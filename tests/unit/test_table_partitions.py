"""A PrefixTable's partitions (one per prefix length): together every prefix once, each
prefix always in the same one, kept through every change; what lets a paged listing copy a
large table one partition per page."""

from __future__ import annotations

import ipaddress
import random

import pytest

from lispd.mapcache import PrefixTable, available_backends


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


def test_a_partition_is_one_prefix_length_and_reads_pairs_by_slice() -> None:
    """Partition i holds the prefixes of length i; on a table of values that know their own
    prefix (the map-cache's), the pairs of a slice are made when the slice is read."""
    table: PrefixTable[int] = PrefixTable(6)
    for k in range(512):
        table.insert(ipaddress.ip_network(((0x20010DB8 << 96) + k, 128)), k)
        table.insert(ipaddress.ip_network(((0x20010DB8 << 96) + (k << 64), 64)), k)
    assert table.partitions == 129
    sizes = {i: len(table.partition(i)) for i in range(table.partitions)}
    assert sizes[128] == sizes[64] == 512 and sum(sizes.values()) == 1024
    assert {net.prefixlen for net, _v in table.partition(64)} == {64}
    table.clear()
    assert len(table) == 0 and pairs(table) == []
    assert table.lookup("2001:db8::5") is None


def test_pairs_of_a_keyed_table_partition() -> None:
    """A table storing values that know their prefix (``prefix_of``) gives pairs too."""
    nets = [ipaddress.ip_network(f"198.51.100.{k}/32") for k in range(10)]
    table: PrefixTable[ipaddress.IPv4Network] = PrefixTable(4, prefix_of=lambda v: v)
    for net in nets:
        table.insert(net, net)
    part = table.partition(32)
    assert len(part) == 10
    assert sorted(part[2:5]) == sorted(part[k] for k in range(2, 5))
    assert sorted(n for n, _v in part[:]) == nets
