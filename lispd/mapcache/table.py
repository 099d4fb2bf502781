"""Longest-prefix-match table for one address family, with two interchangeable backends.

``PrefixTable(family)`` returns a table backed by the fastest implementation installed:

``"pytricia"``
    The C patricia tree of the ``pytricia`` package answers longest matches.  A lookup of
    packed bytes is one C call (about 0.2 us through this class, see ``benchmarks/lpm.py``),
    but the tree costs about 150 bytes per prefix besides the dicts below.
``"pure"``
    Pure Python: the dicts below answer longest matches too, probed from the longest prefix
    length down.  A few times slower on a lookup, no memory besides the dicts; used when
    pytricia is missing, by the map-cache at scale (see :class:`~lispd.mapcache.MapCache`) and,
    in the tests, as the reference the C backend must agree with.

``PrefixTable(family, backend="pure")`` picks one explicitly.  Both store every prefix in one
``dict`` per prefix length present, keyed by the network address as an integer (the very int
object the ``ipaddress`` network holds: no allocation per prefix), so exact matches, counts,
ordered iteration and the covering / more-specific queries are shared code and cannot disagree
between backends.

What a dict holds per prefix is the stored item: the value itself when the table was given
``prefix_of`` (a value that knows its own prefix, as a map-cache entry does: nothing else is
allocated per prefix), else a ``(network, value)`` pair.  A lookup returns a ``(network,
value)`` pair: the stored one itself in the second case (no allocation on the fast path), a new
one in the first.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
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


PIECE: Final = 16_384
"""Pairs per part of :meth:`PrefixTable.pieces` at most (a millisecond or two to make)."""

_MASKS4: Final = prefix_masks(32)
_MASKS6: Final = prefix_masks(128)

# A stored item: the value (tables with ``prefix_of``) or a (network, value) pair.
_Item = Any
_Level = dict[int, _Item]  # network address as int -> item, for one prefix length


class _Pairs(Sequence[tuple[Network, V]]):
    """``(prefix, value)`` pairs of a copy of stored values that know their own prefix, made
    only for what is read: a slice of a page costs the page, not the whole copy."""

    __slots__ = ("_prefix_of", "_values")

    def __init__(self, values: list[V], prefix_of: Callable[[V], Network]) -> None:
        self._values = values
        self._prefix_of = prefix_of

    def __len__(self) -> int:
        return len(self._values)

    def __getitem__(self, index: Any) -> Any:
        prefix_of = self._prefix_of
        if isinstance(index, slice):
            return [(prefix_of(v), v) for v in self._values[index]]
        value = self._values[index]
        return (prefix_of(value), value)


def _pair_prefix(item: tuple[Network, Any]) -> Network:
    return item[0]


def order_key(net: Network) -> int:
    """The sort key of a prefix in a table's order, as one int: the network address, then the
    prefix length (``address << 8 | length``; 8 bits hold every length up to 128)."""
    return int(net.network_address) << 8 | net.prefixlen


class PrefixTable(Generic[V]):
    """Prefixes of one address family mapped to values, with longest-prefix-match lookup.

    Prefixes are ``IPv4Network``/``IPv6Network`` objects or strict text (``"192.0.2.0/24"``);
    a prefix of the other family is a ValueError.  Iteration is in prefix order: by network
    address, then by prefix length (a covering prefix before the prefixes it covers).

    ``prefix_of``: the values know their prefix (``prefix_of(value)`` is the prefix they are
    stored under, checked on insert): the table then stores the values alone.
    """

    __slots__ = (
        "_addr_type",
        "_by_len",
        "_count",
        "_levels",
        "_masks",
        "_nbytes",
        "_net_of",
        "_net_type",
        "_order",
        "_prefix_of",
        "_total",
        "bits",
        "family",
        "lookup_packed",
    )

    backend: ClassVar[str]
    """Name of the implementation behind this table (one of :data:`BACKENDS`)."""
    _mirrored: ClassVar[bool] = True
    """Whether the backend keeps a structure of its own besides the dicts (``_store`` and
    ``_discard`` are called)."""

    def __new__(
        cls,
        family: int,
        *,
        backend: str | None = None,
        prefix_of: Callable[[Any], Network] | None = None,
    ) -> PrefixTable[Any]:
        """Pick the backend class when ``PrefixTable`` itself is instantiated."""
        if cls is PrefixTable:
            cls = _backend_class(DEFAULT_BACKEND if backend is None else backend)
        elif backend is not None and backend != cls.backend:
            raise ValueError(f"{cls.__name__} is the {cls.backend!r} backend, not {backend!r}")
        return object.__new__(cls)

    def __init__(
        self,
        family: int,
        *,
        backend: str | None = None,
        prefix_of: Callable[[V], Network] | None = None,
    ) -> None:
        """Create an empty table for ``family`` (4 or 6); ``backend`` as in :data:`BACKENDS`;
        ``prefix_of`` when every value knows its own prefix (see the class)."""
        self.family: Final[int] = family
        self.bits: Final[int] = family_bits(family)
        self._nbytes = self.bits // 8
        self._masks = _MASKS4 if family == 4 else _MASKS6
        self._addr_type: type[IPv4Address] | type[IPv6Address] = (
            IPv4Address if family == 4 else IPv6Address
        )
        self._net_type: type[IPv4Network] | type[IPv6Network] = (
            IPv4Network if family == 4 else IPv6Network
        )
        self._prefix_of = prefix_of
        self._net_of: Callable[[_Item], Network] = _pair_prefix if prefix_of is None else prefix_of
        self._by_len: dict[int, _Level] = {}
        # (mask, level) for every prefix length in use, longest first: the pure lookup loop.
        self._levels: tuple[tuple[int, _Level], ...] = ()
        self._count = 0
        # Shared with the other tables of a ScopedTables (its len() at no cost), else own.
        self._total = [0]
        self._order: list[_Item] | None = None  # items in prefix order, rebuilt lazily
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

    def _store(self, net: Network, item: _Item) -> None:
        """Add or replace ``item`` in the lookup structure."""
        raise NotImplementedError

    def _discard(self, net: Network) -> None:
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
        if type(prefix) is self._net_type:
            return prefix
        net = to_network(prefix)
        if net.version != self.family:
            raise ValueError(f"{net} is not an IPv{self.family} prefix")
        return net

    def _pair(self, item: _Item) -> tuple[Network, V]:
        """What a query returns for a stored item."""
        if self._prefix_of is None:
            return item  # type: ignore[no-any-return]
        return (self._prefix_of(item), item)

    def _value(self, item: _Item) -> V:
        return item if self._prefix_of is not None else item[1]  # type: ignore[no-any-return]

    def _relevel(self) -> None:
        masks = self._masks
        self._levels = tuple(
            (masks[plen], self._by_len[plen]) for plen in sorted(self._by_len, reverse=True)
        )

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

    def _item_key(self, item: _Item) -> int:
        return order_key(self._net_of(item))

    def _sorted(self) -> list[_Item]:
        if self._order is None:
            items = [item for level in self._by_len.values() for item in level.values()]
            items.sort(key=self._item_key)
            self._order = items
        return self._order

    def put(self, prefix: PrefixLike, value: V) -> V | None:
        """Map ``prefix`` to ``value`` and return the value it replaced (None if it was new)."""
        net = self._network(prefix)
        if self._prefix_of is None:
            item: _Item = (net, value)
        else:
            own = self._prefix_of(value)
            if own is not net and own != net:
                raise ValueError(f"a value stored under {net} must have that prefix, not {own}")
            item = value
        plen = net.prefixlen
        address = int(net.network_address)
        level = self._by_len.get(plen)
        if level is None:
            level = self._by_len[plen] = {}
            level[address] = item
            self._relevel()
            old = None
        else:
            old = level.get(address)
            level[address] = item
        if self._mirrored:
            self._store(net, item)
        if old is None:
            self._count += 1
            self._total[0] += 1
            self._order = None
            return None
        if self._order is not None:  # same place in the order: swap the item in
            order = self._order
            order[bisect_left(order, order_key(net), key=self._item_key)] = item
        return self._value(old)

    def insert(self, prefix: PrefixLike, value: V) -> None:
        """Map ``prefix`` to ``value``, replacing any value it had."""
        self.put(prefix, value)

    def delete(self, prefix: PrefixLike) -> V:
        """Remove ``prefix`` (exact match) and return its value; KeyError if it is absent."""
        net = self._network(prefix)
        plen = net.prefixlen
        level = self._by_len.get(plen)
        if level is None:
            raise KeyError(net)
        item = level.pop(int(net.network_address))  # KeyError when absent
        if not level:
            del self._by_len[plen]
            self._relevel()
        self._count -= 1
        self._total[0] -= 1
        if self._mirrored:
            self._discard(net)
        self._order = None
        return self._value(item)

    def exact(self, prefix: PrefixLike) -> V | None:
        """Value stored for exactly ``prefix`` (not a longest match), or None."""
        net = self._network(prefix)
        level = self._by_len.get(net.prefixlen)
        if level is None:
            return None
        item = level.get(int(net.network_address))
        return None if item is None else self._value(item)

    def exact_int(self, address: int, plen: int) -> V | None:
        """Value stored for exactly the prefix of network address ``address`` (an int) and
        length ``plen``, or None (:meth:`exact` without a network object)."""
        level = self._by_len.get(plen)
        if level is None:
            return None
        item = level.get(address)
        return None if item is None else self._value(item)

    def clear(self) -> None:
        """Remove every prefix."""
        self._clear_backend()
        self._by_len.clear()
        self._levels = ()
        self._total[0] -= self._count
        self._count = 0
        self._order = None

    def __contains__(self, prefix: object) -> bool:
        """True when exactly ``prefix`` is stored."""
        if not isinstance(prefix, IPv4Network | IPv6Network | str):
            return False
        net = to_network(prefix)
        if net.version != self.family:
            return False
        level = self._by_len.get(net.prefixlen)
        return level is not None and int(net.network_address) in level

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Network]:
        """Stored prefixes in prefix order (address, then prefix length)."""
        net_of = self._net_of
        return iter([net_of(item) for item in self._sorted()])

    def items(self) -> list[tuple[Network, V]]:
        """``(prefix, value)`` pairs in prefix order (a snapshot: safe to mutate while using)."""
        if self._prefix_of is None:
            return list(self._sorted())
        prefix_of = self._prefix_of
        return [(prefix_of(item), item) for item in self._sorted()]

    def values(self) -> list[V]:
        """The values in prefix order (a snapshot)."""
        if self._prefix_of is not None:
            return list(self._sorted())
        return [item[1] for item in self._sorted()]

    def pieces(self) -> Iterator[list[tuple[Network, V]]]:
        """``(prefix, value)`` pairs in no particular order, one part of the table at a time,
        for work spread over many event-loop turns that looks each prefix up again when it
        gets to it (a worker's seed).  A part is at most :data:`PIECE` pairs of one prefix
        length's dict: a snapshot of that dict's items is taken at C speed (no sort) when the
        iterator reaches it (about 20 ns a prefix), and each part's pairs are made from it
        when the part is asked for (a pair per value on a ``prefix_of`` table)."""
        for level in list(self._by_len.values()):
            items = list(level.values())
            for start in range(0, len(items), PIECE):
                part = items[start : start + PIECE]
                if self._prefix_of is None:
                    yield part
                else:
                    prefix_of = self._prefix_of
                    yield [(prefix_of(item), item) for item in part]

    @property
    def partitions(self) -> int:
        """How many parts :meth:`partition` numbers: one per prefix length, 0 to :attr:`bits`."""
        return self.bits + 1

    def partition(self, index: int) -> Sequence[tuple[Network, V]]:
        """A copy of the ``(prefix, value)`` pairs of one part, the prefixes of length
        ``index``, in no particular order.  A prefix is always in the same part, so a paged
        listing (:mod:`lispd.api.paging`) walking the parts one per page shows each prefix at
        most once, and never copies the whole table in one go: one length's references at
        C speed (about 20 ns a prefix; a million prefixes of one length would still be one
        copy of some 20 ms), the pairs made only for the slices read."""
        level = self._by_len.get(index)
        if not level:
            return []
        if self._prefix_of is None:
            return list(level.values())
        return _Pairs(list(level.values()), self._prefix_of)

    def covering(self, prefix: PrefixLike, *, strict: bool = False) -> list[tuple[Network, V]]:
        """Stored prefixes that contain ``prefix``, least specific first.

        ``prefix`` itself is included when stored, unless ``strict``.  The last element is what
        a longest-prefix match of ``prefix`` would return.
        """
        net = self._network(prefix)
        address = int(net.network_address)
        top = net.prefixlen if strict else net.prefixlen + 1
        out: list[tuple[Network, V]] = []
        for plen in sorted(p for p in self._by_len if p < top):
            item = self._by_len[plen].get(address & self._masks[plen])
            if item is not None:
                out.append(self._pair(item))
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
        order = self._sorted()
        key = self._item_key
        first = start << 8 | (net.prefixlen + 1 if strict else net.prefixlen)
        lo = bisect_left(order, first, key=key)
        hi = bisect_left(order, (end + 1) << 8, lo, key=key)
        # Sorted by (address, length): a stored prefix whose address lies inside ``prefix`` and
        # is not its first address is longer than ``prefix``, so the slice is exactly the set.
        return [self._pair(item) for item in order[lo:hi]]

    def largest_uncovered(self, address: AddressLike) -> Network | None:
        """The shortest prefix holding ``address`` that overlaps no stored prefix.

        None when a stored prefix contains ``address``.  This is the EID-prefix of a negative
        Map-Reply (RFC 9301, Map-Resolver processing): the least specific prefix around the
        requested EID for which nothing is registered.
        """
        a = self._address_int(address)
        for mask, level in self._levels:
            if a & mask in level:
                return None
        masks = self._masks
        order = self._sorted()
        key = self._item_key
        ones = masks[self.bits]
        for plen in range(self.bits + 1):
            start = a & masks[plen]
            i = bisect_left(order, start << 8, key=key)
            if i == len(order) or key(order[i]) >> 8 > start | (ones ^ masks[plen]):
                return self._make_network(start, plen)
        raise AssertionError("unreachable: the host prefix of an uncovered address is free")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} IPv{self.family} {len(self)} prefixes>"


class PyTriciaPrefixTable(PrefixTable[V]):
    """:class:`PrefixTable` with pytricia's C patricia tree for longest matches."""

    __slots__ = ("_tree",)
    backend = "pytricia"

    def _init_backend(self) -> None:
        if pytricia is None:
            raise RuntimeError("the pytricia backend needs the pytricia package")
        self._tree = pytricia.PyTricia(self.bits)
        self.lookup_packed = self._tree.get

    def _clear_backend(self) -> None:
        net_of = self._net_of
        for level in self._by_len.values():
            for item in level.values():
                self._tree.delete(net_of(item))

    def _store(self, net: Network, item: _Item) -> None:
        # The tree holds what a lookup returns: the (network, value) pair.
        pair = item if self._prefix_of is None else (net, item)
        self._tree.insert(net.network_address.packed, net.prefixlen, pair)

    def _discard(self, net: Network) -> None:
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
    """:class:`PrefixTable` in pure Python: the dict of each prefix length in use, probed from
    the longest length down."""

    __slots__ = ()
    backend = "pure"
    _mirrored = False

    def _init_backend(self) -> None:
        self.lookup_packed = self._lookup_packed

    def _clear_backend(self) -> None:
        pass  # the shared dicts are all there is

    def _store(self, net: Network, item: _Item) -> None:
        pass

    def _discard(self, net: Network) -> None:
        pass

    def _lookup_packed(self, address: bytes) -> tuple[Network, V] | None:
        a = int.from_bytes(address, "big")
        for mask, level in self._levels:
            item = level.get(a & mask)
            if item is not None:
                return item if self._prefix_of is None else (self._prefix_of(item), item)
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
                return item if self._prefix_of is None else (self._prefix_of(item), item)
        return None


def _backend_class(name: str) -> type[PrefixTable[Any]]:
    if name == "pytricia":
        if pytricia is None:
            raise ValueError("backend 'pytricia' is not installed")
        return PyTriciaPrefixTable
    if name == "pure":
        return PurePrefixTable
    raise ValueError(f"unknown PrefixTable backend {name!r}; choose from {BACKENDS}")
