"""A set of :class:`~lispd.mapcache.table.PrefixTable` keyed by (instance-ID, address family).

LISP EID space is scoped by a 24-bit instance-ID: ``198.51.100.0/24`` in IID 0 and in IID 7 are
unrelated prefixes.  :class:`ScopedTables` keeps one table per (IID, family) and derives the
family of a lookup key from the key itself (4 or 16 packed bytes, or the address object).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Generic, TypeVar

from lispd.mapcache.prefixes import (
    AddressLike,
    Network,
    PrefixLike,
    address_family,
    check_iid,
    to_network,
)
from lispd.mapcache.table import PrefixTable

V = TypeVar("V")


def _as_network(prefix: PrefixLike) -> Network:
    """``prefix`` itself when it is a network object already (one type check: the map-cache's
    hot path), else parsed."""
    if type(prefix) is IPv4Network or type(prefix) is IPv6Network:
        return prefix
    return to_network(prefix)


class ScopedTables(Generic[V]):
    """Longest-prefix-match tables per (instance-ID, family 4|6).

    Tables are created on first insert and kept while the object lives (possibly empty), so a
    reference obtained from :meth:`table` stays valid.
    """

    __slots__ = ("_backend", "_prefix_of", "_total", "_v4", "_v6")

    def __init__(
        self,
        *,
        backend: str | None = None,
        prefix_of: Callable[[V], Network] | None = None,
    ) -> None:
        """Create an empty set; ``backend`` and ``prefix_of`` are passed to every
        :class:`PrefixTable`."""
        self._backend = backend
        self._prefix_of = prefix_of
        self._v4: dict[int, PrefixTable[V]] = {}
        self._v6: dict[int, PrefixTable[V]] = {}
        self._total = [0]  # prefixes in every table: each table counts in it

    def _by_family(self, family: int) -> dict[int, PrefixTable[V]]:
        if family == 4:
            return self._v4
        if family == 6:
            return self._v6
        raise ValueError(f"address family must be 4 or 6, not {family!r}")

    def table(self, iid: int, family: int, *, create: bool = False) -> PrefixTable[V] | None:
        """The table of ``(iid, family)``; None if it does not exist and not ``create``."""
        tables = self._by_family(family)
        table = tables.get(iid)
        if table is None and create:
            table = tables[check_iid(iid)] = PrefixTable(
                family, backend=self._backend, prefix_of=self._prefix_of
            )
            table._total = self._total
        return table

    def _existing(self, iid: int, net: Network) -> PrefixTable[V] | None:
        kind = type(net)
        if kind is IPv4Network:
            return self._v4.get(iid)
        if kind is IPv6Network:
            return self._v6.get(iid)
        return self._by_family(net.version).get(iid)

    def put(self, iid: int, prefix: PrefixLike, value: V) -> V | None:
        """Map ``prefix`` in instance ``iid`` to ``value``; return the value it replaced."""
        net = _as_network(prefix)
        table = self._existing(iid, net)
        if table is None:
            table = self.table(iid, net.version, create=True)
            assert table is not None
        return table.put(net, value)

    def insert(self, iid: int, prefix: PrefixLike, value: V) -> None:
        """Map ``prefix`` in instance ``iid`` to ``value``, replacing any previous value."""
        self.put(iid, prefix, value)

    def delete(self, iid: int, prefix: PrefixLike) -> V:
        """Remove exactly ``prefix`` from instance ``iid``; KeyError when absent."""
        net = to_network(prefix)
        table = self._existing(iid, net)
        if table is None:
            raise KeyError((iid, net))
        return table.delete(net)

    def exact(self, iid: int, prefix: PrefixLike) -> V | None:
        """Value stored for exactly ``prefix`` in ``iid``, or None."""
        net = _as_network(prefix)
        table = self._existing(iid, net)
        return None if table is None else table.exact(net)

    def exact_int(self, iid: int, family: int, address: int, plen: int) -> V | None:
        """Value stored for exactly the prefix (``address`` as an int, ``plen``) of ``family``
        in ``iid``, or None."""
        table = (self._v4 if family == 4 else self._v6).get(iid)
        return None if table is None else table.exact_int(address, plen)

    def lookup(self, iid: int, address: AddressLike) -> tuple[Network, V] | None:
        """Longest-prefix match of ``address`` in instance ``iid``: ``(prefix, value)`` or None.

        ``address`` is 4 or 16 packed bytes (the fast path), an address object or text; its
        family selects the table.
        """
        kind = type(address)
        if kind is bytes:
            n = len(address)  # type: ignore[arg-type]
            if n == 4:
                table = self._v4.get(iid)
            elif n == 16:
                table = self._v6.get(iid)
            else:
                raise ValueError(f"a packed address is 4 or 16 bytes, not {n}")
            return None if table is None else table.lookup_packed(address)  # type: ignore[arg-type]
        if kind is IPv4Address:
            table = self._v4.get(iid)
        elif kind is IPv6Address:
            table = self._v6.get(iid)
        else:
            table = self._by_family(address_family(address)).get(iid)
        return None if table is None else table.lookup(address)

    def covering(
        self, iid: int, prefix: PrefixLike, *, strict: bool = False
    ) -> list[tuple[Network, V]]:
        """Stored prefixes of ``iid`` containing ``prefix``, least specific first."""
        net = to_network(prefix)
        table = self._by_family(net.version).get(iid)
        return [] if table is None else table.covering(net, strict=strict)

    def more_specifics(
        self, iid: int, prefix: PrefixLike, *, strict: bool = False
    ) -> list[tuple[Network, V]]:
        """Stored prefixes of ``iid`` contained in ``prefix``, in prefix order."""
        net = to_network(prefix)
        table = self._by_family(net.version).get(iid)
        return [] if table is None else table.more_specifics(net, strict=strict)

    def largest_uncovered(self, iid: int, address: AddressLike) -> Network | None:
        """See :meth:`PrefixTable.largest_uncovered`; an empty instance yields the /0."""
        family = address_family(address)
        table = self.table(iid, family)
        if table is None:
            return to_network("0.0.0.0/0" if family == 4 else "::/0")
        return table.largest_uncovered(address)

    def instance_ids(self) -> list[int]:
        """Instance-IDs holding at least one prefix, ascending."""
        return sorted(
            {iid for iid, t in self._v4.items() if t} | {iid for iid, t in self._v6.items() if t}
        )

    def items(self) -> Iterator[tuple[int, Network, V]]:
        """``(iid, prefix, value)`` in (iid, family, prefix) order, from a snapshot per table."""
        for iid in sorted(self._v4.keys() | self._v6.keys()):
            for tables in (self._v4, self._v6):
                table = tables.get(iid)
                if table is not None:
                    for net, value in table.items():
                        yield iid, net, value

    def values(self) -> list[V]:
        """Every value in (iid, family, prefix) order (a snapshot)."""
        out: list[V] = []
        for iid in sorted(self._v4.keys() | self._v6.keys()):
            for tables in (self._v4, self._v6):
                table = tables.get(iid)
                if table is not None:
                    out += table.values()
        return out

    def count(self, iid: int | None = None, family: int | None = None) -> int:
        """Number of prefixes: in total, in one instance, one family, or one (iid, family)."""
        families = (4, 6) if family is None else (family,)
        total = 0
        for fam in families:
            tables = self._by_family(fam)
            if iid is None:
                total += sum(len(t) for t in tables.values())
            else:
                table = tables.get(iid)
                total += 0 if table is None else len(table)
        return total

    def counts(self) -> dict[tuple[int, int], int]:
        """Number of prefixes per non-empty (iid, family), in (iid, family) order."""
        pairs = [(iid, 4, t) for iid, t in self._v4.items() if t]
        pairs += [(iid, 6, t) for iid, t in self._v6.items() if t]
        return {(iid, fam): len(t) for iid, fam, t in sorted(pairs, key=lambda p: p[:2])}

    def clear(self, iid: int | None = None) -> None:
        """Remove every prefix, or every prefix of instance ``iid`` (tables are kept)."""
        for tables in (self._v4, self._v6):
            if iid is None:
                for table in tables.values():
                    table.clear()
            elif iid in tables:
                tables[iid].clear()

    def __len__(self) -> int:
        return self._total[0]

    def __repr__(self) -> str:
        return f"<ScopedTables {self.count()} prefixes in {len(self.instance_ids())} instances>"
