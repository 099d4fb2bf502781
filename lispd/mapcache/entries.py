"""What the map-cache and the local database store: frozen entries with validated fields.

Times are plain floats on the caller's clock (the daemon's monotonic clock, a fake clock in
tests): nothing here reads the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from lispd.mapcache.prefixes import Address, Network, check_iid, to_address, to_network

Action: TypeAlias = Literal[
    "encapsulate", "drop", "native-forward", "send-map-request", "no-action"
]
"""What the data plane does with a packet matching a map-cache entry.

``encapsulate`` is the action of every entry with RLOCs; the others are the negative Map-Reply
actions of RFC 9301 section 5.4 (Natively-Forward, Send-Map-Request, No-Action, and the Drop
variants folded into ``drop``).
"""

ACTIONS: Final[frozenset[str]] = frozenset(
    ("encapsulate", "drop", "native-forward", "send-map-request", "no-action")
)

LISP_DATA_PORT: Final = 4341

INTERNED_RLOC_SETS: Final = 4096
"""Distinct RLOC sets :func:`intern_rlocs` remembers; past that it starts afresh (sharing is
a saving, never a meaning: a set met again after that is merely not shared with the earlier
entries)."""

_interned: dict[tuple[RlocEntry, ...], tuple[RlocEntry, ...]] = {}


def intern_rlocs(rlocs: tuple[RlocEntry, ...]) -> tuple[RlocEntry, ...]:
    """The one tuple kept for RLOC sets equal to ``rlocs`` (``rlocs`` itself the first time).

    A million map-cache entries typically name a few hundred distinct RLOC sets: sharing the
    tuple (and its :class:`RlocEntry` objects) saves their memory per entry, and lets what
    depends on the set alone (the map-cache's RLOC index, a forwarding record) be worked out
    once per set, keyed by the tuple's identity.
    """
    if not rlocs:
        return ()
    shared = _interned.get(rlocs)
    if shared is not None:
        return shared
    if len(_interned) >= INTERNED_RLOC_SETS:
        _interned.clear()
    _interned[rlocs] = rlocs
    return rlocs


def _check_rlocs(rlocs: object) -> tuple[RlocEntry, ...]:
    if isinstance(rlocs, str | bytes) or not hasattr(rlocs, "__iter__"):
        raise TypeError("rlocs is a sequence of RlocEntry")
    out = tuple(rlocs)
    for rloc in out:
        if not isinstance(rloc, RlocEntry):
            raise TypeError(f"an RLOC is an RlocEntry, not {type(rloc).__name__}")
    return out


@dataclass(frozen=True, slots=True)
class RlocEntry:
    """One locator of a mapping (RFC 9301 section 5.4 Locator record).

    ``priority`` 0..255, lower preferred, 255 meaning "not for unicast"; ``weight`` 0..255
    shares traffic among equal priorities; ``up`` is the reachability as last learned;
    ``port`` the UDP port to encapsulate to (4341, or the translated port behind a NAT).
    ``elp`` is an Explicit Locator Path (LISP-TE), the hops in forwarding order, the last one
    the ETR; then ``address`` is the first hop, where an ITR encapsulates to.
    ``address`` and the hops may be given as text.
    """

    address: Address
    priority: int
    weight: int
    up: bool = True
    port: int = LISP_DATA_PORT
    elp: tuple[Address, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", to_address(self.address))
        if self.elp:
            hops = tuple(to_address(a) for a in self.elp)
            if len(hops) < 2:
                raise ValueError("an explicit locator path has at least two hops")
            if len(set(hops)) != len(hops):
                raise ValueError("an explicit locator path visits a hop twice")
            if hops[0] != self.address:
                raise ValueError("the address of an RLOC with a path is the path's first hop")
            object.__setattr__(self, "elp", hops)
        if not 0 <= self.priority <= 255:
            raise ValueError(f"RLOC priority {self.priority} is outside 0..255")
        if not 0 <= self.weight <= 255:
            raise ValueError(f"RLOC weight {self.weight} is outside 0..255")
        if not 0 < self.port <= 65535:
            raise ValueError(f"RLOC port {self.port} is outside 1..65535")


@dataclass(frozen=True, slots=True)
class MapCacheEntry:
    """A mapping the ITR side encapsulates with: EID-prefix -> RLOC set (or negative action).

    ``prefix`` may be given as text.  ``action`` is ``"encapsulate"`` exactly when there are
    RLOCs; a negative entry (no RLOCs) names one of the other :data:`ACTIONS`.  ``ttl`` is in
    seconds (None: never expires); ``created`` is the caller's clock when the entry was made, and
    ``expires`` defaults to ``created + ttl``.  ``source`` tells where it came from
    (``"static"``, ``"map-reply"``, ...).  Entries with equal RLOC sets share one ``rlocs``
    tuple (:func:`intern_rlocs`).
    """

    iid: int
    prefix: Network
    rlocs: tuple[RlocEntry, ...] = ()
    action: Action = "encapsulate"
    ttl: float | None = None
    created: float = 0.0
    expires: float | None = None
    source: str = "static"

    def __post_init__(self) -> None:
        check_iid(self.iid)
        object.__setattr__(self, "prefix", to_network(self.prefix))
        object.__setattr__(self, "rlocs", intern_rlocs(_check_rlocs(self.rlocs)))
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; choose from {sorted(ACTIONS)}")
        if self.rlocs and self.action != "encapsulate":
            raise ValueError(f"an entry with RLOCs encapsulates, it cannot {self.action!r}")
        if not self.rlocs and self.action == "encapsulate":
            raise ValueError("an entry without RLOCs needs a negative action, not 'encapsulate'")
        if self.ttl is not None:
            if self.ttl < 0:
                raise ValueError(f"TTL {self.ttl} is negative")
            if self.expires is None:
                object.__setattr__(self, "expires", self.created + self.ttl)

    @property
    def negative(self) -> bool:
        """True for an entry without RLOCs (from a negative Map-Reply or configured so)."""
        return not self.rlocs

    def is_expired(self, now: float) -> bool:
        """True once ``now`` has reached ``expires`` (never for an entry without expiry)."""
        return self.expires is not None and now >= self.expires

    def remaining(self, now: float) -> float | None:
        """Seconds left until expiry at ``now`` (0 when expired), None when it never expires."""
        return None if self.expires is None else max(0.0, self.expires - now)


@dataclass(frozen=True, slots=True)
class DatabaseEntry:
    """A local EID-prefix this router is authoritative for, with its own RLOCs.

    ``prefix`` may be given as text.
    """

    iid: int
    prefix: Network
    rlocs: tuple[RlocEntry, ...] = ()

    def __post_init__(self) -> None:
        check_iid(self.iid)
        object.__setattr__(self, "prefix", to_network(self.prefix))
        object.__setattr__(self, "rlocs", _check_rlocs(self.rlocs))
