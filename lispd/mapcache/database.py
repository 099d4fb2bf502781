"""The local database: EID-prefixes this router serves (ETR side), per instance-ID.

Filled from configuration; the data plane asks it whether a destination is a local EID
(decapsulate / deliver) and the registrar reads it to build Map-Registers.
"""

from __future__ import annotations

from collections.abc import Iterator

from lispd.mapcache.entries import DatabaseEntry
from lispd.mapcache.prefixes import AddressLike, PrefixLike
from lispd.mapcache.scoped import ScopedTables


class LocalDatabase:
    """:class:`DatabaseEntry` objects keyed by (iid, EID-prefix), with longest-prefix match."""

    __slots__ = ("_generation", "_tables")

    def __init__(self, *, backend: str | None = None) -> None:
        """Create an empty database (``backend``: see :class:`~lispd.mapcache.PrefixTable`)."""
        self._tables: ScopedTables[DatabaseEntry] = ScopedTables(backend=backend)
        self._generation = 0

    @property
    def generation(self) -> int:
        """Grows on every add and remove (for caches built on lookups)."""
        return self._generation

    def add(self, entry: DatabaseEntry) -> DatabaseEntry | None:
        """Install ``entry``, replacing the one for the same (iid, prefix); return that one."""
        old = self._tables.exact(entry.iid, entry.prefix)
        self._tables.insert(entry.iid, entry.prefix, entry)
        self._generation += 1
        return old

    def remove(self, iid: int, prefix: PrefixLike) -> DatabaseEntry:
        """Remove exactly ``prefix`` of ``iid`` and return its entry; KeyError when absent."""
        entry = self._tables.delete(iid, prefix)
        self._generation += 1
        return entry

    def get(self, iid: int, prefix: PrefixLike) -> DatabaseEntry | None:
        """The entry for exactly ``prefix`` in ``iid``, or None."""
        return self._tables.exact(iid, prefix)

    def lookup(self, iid: int, address: AddressLike) -> DatabaseEntry | None:
        """The entry of the longest local prefix of ``iid`` holding ``address``, or None."""
        hit = self._tables.lookup(iid, address)
        return None if hit is None else hit[1]

    def contains(self, iid: int, address: AddressLike) -> bool:
        """True when ``address`` is a local EID in instance ``iid``."""
        return self._tables.lookup(iid, address) is not None

    def entries(self) -> list[DatabaseEntry]:
        """Every entry in (iid, family, prefix) order (a snapshot)."""
        return [entry for _iid, _net, entry in self._tables.items()]

    def __iter__(self) -> Iterator[DatabaseEntry]:
        return iter(self.entries())

    def instance_ids(self) -> list[int]:
        """Instance-IDs with at least one local EID-prefix, ascending."""
        return self._tables.instance_ids()

    def __len__(self) -> int:
        return len(self._tables)

    @property
    def tables(self) -> ScopedTables[DatabaseEntry]:
        """The underlying tables, for read-only queries; mutate through this class."""
        return self._tables

    def __repr__(self) -> str:
        return f"<LocalDatabase {len(self)} entries in {len(self.instance_ids())} instances>"
