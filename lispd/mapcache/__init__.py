"""Longest-prefix-match tables per (instance-ID, address family): map-cache and local database.

Layers, bottom up:

- :mod:`~lispd.mapcache.table`: :class:`PrefixTable`, one family, two backends (pytricia in C,
  a pure-Python reference) that the tests hold to the same answers;
- :mod:`~lispd.mapcache.scoped`: :class:`ScopedTables`, one table per (IID, family);
- :mod:`~lispd.mapcache.entries`: the frozen :class:`RlocEntry`, :class:`MapCacheEntry` and
  :class:`DatabaseEntry`;
- :mod:`~lispd.mapcache.cache` and :mod:`~lispd.mapcache.database`: :class:`MapCache` (TTL
  expiry on an injected clock, a generation counter for flow caches) and
  :class:`LocalDatabase`.

Lookups take packed 4/16-byte addresses straight from packet headers, or ``ipaddress`` objects.
"""

from lispd.mapcache.cache import MapCache
from lispd.mapcache.database import LocalDatabase
from lispd.mapcache.entries import (
    ACTIONS,
    LISP_DATA_PORT,
    Action,
    DatabaseEntry,
    MapCacheEntry,
    RlocEntry,
)
from lispd.mapcache.prefixes import MAX_IID, Address, AddressLike, Network, PrefixLike
from lispd.mapcache.scoped import ScopedTables
from lispd.mapcache.table import (
    BACKENDS,
    DEFAULT_BACKEND,
    PrefixTable,
    PurePrefixTable,
    PyTriciaPrefixTable,
    available_backends,
)

__all__ = [
    "ACTIONS",
    "BACKENDS",
    "DEFAULT_BACKEND",
    "LISP_DATA_PORT",
    "MAX_IID",
    "Action",
    "Address",
    "AddressLike",
    "DatabaseEntry",
    "LocalDatabase",
    "MapCache",
    "MapCacheEntry",
    "Network",
    "PrefixLike",
    "PrefixTable",
    "PurePrefixTable",
    "PyTriciaPrefixTable",
    "RlocEntry",
    "ScopedTables",
    "available_backends",
]
