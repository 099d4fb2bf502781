"""Longest-prefix-match table for one address family, with two interchangeable backends.

``PrefixTable(family)`` returns a table backed by the fastest implementation installed:

``"pytricia"``
    The C patricia tree of the ``pytricia`` package.  A lookup of packed bytes is one C call
    (about 0.2 us through this class, see ``benchmarks/lpm.py``).
``"pure"``
    A pure-Python reference: one ``dict`` per prefix length present, probed from the longest
    length down.  Obviously correct, a few times slower; used when pytricia is missing and, in the
    tests, as the reference the C backend must agree with.

``PrefixTable(family, backend="pure")`` picks one explicitly.  Both keep every entry in a plain
dict as well, so exact matches, counts, ordered iteration and the covering / more-specific
queries are shared code and cannot disagree between backends.  A lookup returns the stored
``(network, value)`` pair itself: no allocation on the fast path.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from itertools import chain
from typing import Any, ClassVar, Final, Generic, TypeVar

from lispd.mapcache.prefixes import (
    AddressLike,
    Network,
    PrefixLike,
    family_bits,
    prefix_masks,
    to_address,
    to_network,
)

try:
    import pytricia
except ImportError:  # pragma: no cover - pytricia is a declared dependency
    pytricia = None

V = TypeVar("V")

BACKENDS: Final = ("pytricia", "pure")
"""Every backend name, fastest first."""

DEFAULT_BACKEND: Final[str] = "pytricia" if pytricia is not None else "pure"
"""The backend ``PrefixTable(family)`` uses when none is named."""


def available_backends() -> tuple[str, ...]:
    """Names of the backends that can be used on this machine, fastest first."""
    return tuple(b for b in BACKENDS if b != "pytricia" or pytricia is not None)


_MASKS4: Final = prefix_masks(32)
_MASKS6: Final = prefix_masks(128)

_Key = tuple[int, int]  # (network address as int, prefix length)

PARTITIONS: Final = 256
"""The prefix -> item dict of a table is split in this many by the key's hash (a power of 2):
a paged listing (``lispctl show map-cache``) copies one part per page, never a million
references in one go (75-200 ms on a small machine, on the loop that forwards packets)."""
_PART: Final = PARTITIONS - 1


class PrefixTable(Generic[V]):
    """Prefixes of one address family mapped to values, with longest-prefix-match lookup.

    Prefixes are ``IPv4Network``/``IPv6Network`` objects or strict text (``"192.0.2.0/24"``);
    a prefix of the other family is a ValueError.  Iteration is in prefix order: by network
    address, then by prefix length (a covering prefix before the prefixes it covers).
    """

    __slots__ = (
        "_addr_type",
        "_masks",
        "_nbytes",
        "_order",
        "_parts",
        "_size",
        "bits",
        "family",
        "lookup_packed",
    )

    backend: ClassVar[str]
    """Name of the implementation behind this table (one of :data:`BACKENDS`)."""

    def __new__(cls, family: int, *, backend: str | None = None) -> PrefixTable[Any]:
        """Pick the backend class when ``PrefixTable`` itself is instantiated."""
        if cls is PrefixTable:
            cls = _backend_class(DEFAULT_BACKEND if backend is None else backend)
        elif backend is not None and backend != cls.backend:
            raise ValueError(f"{cls.__name__} is the {cls.backend!r} backend, not {backend!r}")
        return object.__new__(cls)

    def __init__(self, family: int, *, backend: str | None = None) -> None:
        """Create an empty table for ``family`` (4 or 6); ``backend`` as in :data:`BACKENDS`."""
        self.family: Final[int] = family
        self.bits: Final[int] = family_bits(family)
        self._nbytes = self.bits // 8
        self._masks = _MASKS4 if family == 4 else _MASKS6
        self._addr_type: type[IPv4Address] | type[IPv6Address] = (
            IPv4Address if family == 4 else IPv6Address
        )
        # Every entry, in the dict of the key's partition (see PARTITIONS).
        self._parts: list[dict[_Key, tuple[Network, V]]] = [{} for _ in range(PARTITIONS)]
        self._size = 0
        self._order: list[_Key] | None = None  # sorted keys, rebuilt lazily after a change
        self.lookup_packed: Callable[[bytes], tuple[Network, V] | None]
        """The fastest lookup, for callers that already hold ``bytes`` of the right length.

        Unchecked: a key of another type or length gives an error or a wrong answer.  Set once
        per table (a bound C method on the pytricia backend); safe to keep for the table's life.
        """
        self._init_backend()

    # -- backend hooks (every backend class overrides all of them) ---------------------------

    def _init_backend(self) -> None:
        """Create the (empty) lookup structure and set :attr:`lookup_packed`."""
        raise NotImplementedError

    def _clear_backend(self) -> None:
        """Empty the lookup structure in place (``lookup_packed`` must stay valid)."""
        raise NotImplementedError

    def _store(self, key: _Key, item: tuple[Network, V]) -> None:
        """Add or replace ``item`` in the lookup structure."""
        raise NotImplementedError

    def _discard(self, key: _Key, net: Network) -> None:
        """Remove a prefix that is known to be present from the lookup structure."""
        raise NotImplementedError

    def lookup(self, address: AddressLike) -> tuple[Network, V] | None:
        """Longest-prefix match: the most specific ``(prefix, value)`` containing ``address``.

        ``address`` is packed bytes (4 or 16, matching the family: the fast path), an address
        object, or text.  Returns None when no prefix matches.  A key of the wrong family or
        length is a ValueError.
        """
        raise NotImplementedError

    # -- shared code -----------------------------------------------------------------------

    def _network(self, prefix: PrefixLike) -> Network:
        net = to_network(prefix)
        if net.version != self.family:
            raise ValueError(f"{net} is not an IPv{self.family} prefix")
        return net

    def _address_int(self, address: AddressLike) -> int:
        """The address as an integer, after checking its family."""
        if isinstance(address, bytes | bytearray | memoryview):
            n = address.nbytes if isinstance(address, memoryview) else len(address)
            if n != self._nbytes:
                raise ValueError(f"an IPv{self.family} address is {self._nbytes} bytes, not {n}")
            return int.from_bytes(address, "big")
        addr = to_address(address)
        if addr.version != self.family:
            raise ValueError(f"{addr} is not an IPv{self.family} address")
        return int(addr)

    def _address_packed(self, address: AddressLike) -> bytes:
        """The address as packed bytes, after checking its family."""
        if isinstance(address, bytes | bytearray | memoryview):
            n = address.nbytes if isinstance(address, memoryview) else len(address)
            if n != self._nbytes:
                raise ValueError(f"an IPv{self.family} address is {self._nbytes} bytes, not {n}")
            return bytes(address)
        addr = to_address(address)
        if addr.version != self.family:
            raise ValueError(f"{addr} is not an IPv{self.family} address")
        return addr.packed

    def _make_network(self, address: int, plen: int) -> Network:
        if self.family == 4:
            return IPv4Network((IPv4Address(address), plen))
        return IPv6Network((IPv6Address(address), plen))

    def _sorted_keys(self) -> list[_Key]:
        if self._order is None:
            self._order = sorted(chain.from_iterable(self._parts))
        return self._order

    def insert(self, prefix: PrefixLike, value: V) -> None:
        """Map ``prefix`` to ``value``, replacing any value it had."""
        net = self._network(prefix)
        key = (int(net.network_address), net.prefixlen)
        item = (net, value)
        part = self._parts[hash(key) & _PART]
        new = key not in part
        part[key] = item
        self._store(key, item)
        if new:
            self._size += 1
            self._order = None

    def delete(self, prefix: PrefixLike) -> V:
        """Remove ``prefix`` (exact match) and return its value; KeyError if it is absent."""
        net = self._network(prefix)
        key = (int(net.network_address), net.prefixlen)
        item = self._parts[hash(key) & _PART].pop(key)  # KeyError when absent
        self._size -= 1
        self._discard(key, item[0])
        self._order = None
        return item[1]

    def exact(self, prefix: PrefixLike) -> V | None:
        """Value stored for exactly ``prefix`` (not a longest match), or None."""
        net = self._network(prefix)
        key = (int(net.network_address), net.prefixlen)
        item = self._parts[hash(key) & _PART].get(key)
        return None if item is None else item[1]

    def clear(self) -> None:
        """Remove every prefix."""
        self._clear_backend()
        for part in self._parts:
            part.clear()
        self._size = 0
        self._order = None

    def __contains__(self, prefix: object) -> bool:
        """True when exactly ``prefix`` is stored."""
        if not isinstance(prefix, IPv4Network | IPv6Network | str):
            return False
        net = to_network(prefix)
        if net.version != self.family:
            return False
        return self._item((int(net.network_address), net.prefixlen)) is not None

    def _item(self, key: _Key) -> tuple[Network, V] | None:
        return self._parts[hash(key) & _PART].get(key)

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Network]:
        """Stored prefixes in prefix order (address, then prefix length)."""
        parts = self._parts
        return iter([parts[hash(k) & _PART][k][0] for k in self._sorted_keys()])

    def items(self) -> list[tuple[Network, V]]:
        """``(prefix, value)`` pairs in prefix order (a snapshot: safe to mutate while using)."""
        parts = self._parts
        return [parts[hash(k) & _PART][k] for k in self._sorted_keys()]

    partitions: ClassVar[int] = PARTITIONS
    """How many parts :meth:`partition` divides the table into."""

    def partition(self, index: int) -> list[tuple[Network, V]]:
        """A copy of one part (``index`` from 0 to :attr:`partitions` - 1) of the ``(prefix,
        value)`` pairs, in no particular order.  A prefix is always in the same part, so a
        paged listing (:mod:`lispd.api.paging`) walking the parts one per page shows each
        prefix at most once, and never copies the whole table in one go."""
        return list(self._parts[index].values())

    def pieces(self) -> Iterator[list[tuple[Network, V]]]:
        """``(prefix, value)`` pairs in no particular order, one part of the table at a time:
        each part a copy made at C speed (no sort) when the iterator reaches it, for work
        spread over many event-loop turns that looks each prefix up again when it gets to it
        (a worker's seed).  The parts are the :attr:`partitions` (about 50 ns a prefix: some
        0.1-0.2 ms each for 500,000 prefixes, against 25-100 ms for one copy of them all);
        empty ones are skipped."""
        for part in self._parts:
            if part:
                yield list(part.values())

    def covering(self, prefix: PrefixLike, *, strict: bool = False) -> list[tuple[Network, V]]:
        """Stored prefixes that contain ``prefix``, least specific first.

        ``prefix`` itself is included when stored, unless ``strict``.  The last element is what
        a longest-prefix match of ``prefix`` would return.
        """
        net = self._network(prefix)
        address = int(net.network_address)
        masks = self._masks
        parts = self._parts
        out: list[tuple[Network, V]] = []
        for plen in range(net.prefixlen if strict else net.prefixlen + 1):
            key = (address & masks[plen], plen)
            item = parts[hash(key) & _PART].get(key)
            if item is not None:
                out.append(item)
        return out

    def more_specifics(
        self, prefix: PrefixLike, *, strict: bool = False
    ) -> list[tuple[Network, V]]:
        """Stored prefixes contained in ``prefix``, in prefix order.

        ``prefix`` itself is included when stored, unless ``strict``.
        """
        net = self._network(prefix)
        start = int(net.network_address)
        end = int(net.broadcast_address)
        keys = self._sorted_keys()
        lo = bisect_left(keys, (start, net.prefixlen + 1 if strict else net.prefixlen))
        hi = bisect_left(keys, (end + 1, 0), lo)
        # Sorted by (address, length): a stored prefix whose address lies inside ``prefix`` and
        # is not its first address is longer than ``prefix``, so the slice is exactly the set.
        parts = self._parts
        return [parts[hash(k) & _PART][k] for k in keys[lo:hi]]

    def largest_uncovered(self, address: AddressLike) -> Network | None:
        """The shortest prefix holding ``address`` that overlaps no stored prefix.

        None when a stored prefix contains ``address``.  This is the EID-prefix of a negative
        Map-Reply (RFC 9301, Map-Resolver processing): the least specific prefix around the
        requested EID for which nothing is registered.
        """
        a = self._address_int(address)
        masks = self._masks
        for plen in range(self.bits + 1):
            if self._item((a & masks[plen], plen)) is not None:
                return None
        keys = self._sorted_keys()
        ones = masks[self.bits]
        for plen in range(self.bits + 1):
            start = a & masks[plen]
            i = bisect_left(keys, (start, 0))
            if i == len(keys) or keys[i][0] > start | (ones ^ masks[plen]):
                return self._make_network(start, plen)
        raise AssertionError("unreachable: the host prefix of an uncovered address is free")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} IPv{self.family} {len(self)} prefixes>"


class PyTriciaPrefixTable(PrefixTable[V]):
    """:class:`PrefixTable` on pytricia's C patricia tree (the default backend)."""

    __slots__ = ("_tree",)
    backend = "pytricia"

    def _init_backend(self) -> None:
        if pytricia is None:
            raise RuntimeError("the pytricia backend needs the pytricia package")
        self._tree = pytricia.PyTricia(self.bits)
        self.lookup_packed = self._tree.get

    def _clear_backend(self) -> None:
        for part in self._parts:
            for net, _value in part.values():
                self._tree.delete(net)

    def _store(self, key: _Key, item: tuple[Network, V]) -> None:
        net = item[0]
        self._tree.insert(net.network_address.packed, net.prefixlen, item)

    def _discard(self, key: _Key, net: Network) -> None:
        self._tree.delete(net)

    def lookup(self, address: AddressLike) -> tuple[Network, V] | None:
        """Longest-prefix match (see :meth:`PrefixTable.lookup`)."""
        # pytricia does not check that a key belongs to the tree's family, hence the tests.
        kind = type(address)
        if kind is bytes and len(address) == self._nbytes:  # type: ignore[arg-type]
            return self._tree.get(address)  # type: ignore[no-any-return]
        if kind is self._addr_type:
            return self._tree.get(address.packed)  # type: ignore[union-attr,no-any-return]
        return self._tree.get(self._address_packed(address))  # type: ignore[no-any-return]


class PurePrefixTable(PrefixTable[V]):
    """:class:`PrefixTable` in pure Python: one dict per prefix length, longest probed first."""

    __slots__ = ("_by_len", "_levels")
    backend = "pure"

    def _init_backend(self) -> None:
        self._by_len: dict[int, dict[int, tuple[Network, V]]] = {}
        # (mask, dict) for every prefix length in use, longest first: the lookup loop.
        self._levels: tuple[tuple[int, dict[int, tuple[Network, V]]], ...] = ()
        self.lookup_packed = self._lookup_packed

    def _clear_backend(self) -> None:
        self._by_len.clear()
        self._levels = ()

    def _relevel(self) -> None:
        masks = self._masks
        self._levels = tuple(
            (masks[plen], self._by_len[plen]) for plen in sorted(self._by_len, reverse=True)
        )

    def _store(self, key: _Key, item: tuple[Network, V]) -> None:
        address, plen = key
        level = self._by_len.get(plen)
        if level is None:
            level = self._by_len[plen] = {}
            level[address] = item
            self._relevel()
        else:
            level[address] = item

    def _discard(self, key: _Key, net: Network) -> None:
        address, plen = key
        level = self._by_len[plen]
        del level[address]
        if not level:
            del self._by_len[plen]
            self._relevel()

    def _lookup_packed(self, address: bytes) -> tuple[Network, V] | None:
        a = int.from_bytes(address, "big")
        for mask, level in self._levels:
            item = level.get(a & mask)
            if item is not None:
                return item
        return None

    def lookup(self, address: AddressLike) -> tuple[Network, V] | None:
        """Longest-prefix match (see :meth:`PrefixTable.lookup`)."""
        kind = type(address)
        if kind is bytes and len(address) == self._nbytes:  # type: ignore[arg-type]
            a = int.from_bytes(address, "big")  # type: ignore[arg-type]
        elif kind is self._addr_type:
            a = int(address)
        else:
            a = self._address_int(address)
        for mask, level in self._levels:
            item = level.get(a & mask)
            if item is not None:
                return item
        return None


def _backend_class(name: str) -> type[PrefixTable[Any]]:
    if name == "pytricia":
        if pytricia is None:
            raise ValueError("backend 'pytricia' is not installed")
        return PyTriciaPrefixTable
    if name == "pure":
        return PurePrefixTable
    raise ValueError(f"unknown PrefixTable backend {name!r}; choose from {BACKENDS}")
