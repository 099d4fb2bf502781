"""Paged listings for the control socket: a big table goes out one bounded page per request.

A million map-cache entries do not fit in one answer: rendering them all would hold the event
loop (which also forwards packets) for seconds, and ``lispctl`` would time out waiting.  So a
listing is served in pages over several requests, each doing a bounded amount of work:

- the first request (``"cursor"`` absent or null) opens a :class:`Listing` and answers its first
  page with a ``cursor`` token; each later request names the token and gets the next page; the
  last page answers ``"cursor": null``.  A request with ``"close": true`` drops the listing
  (``lispctl --limit`` does so once it has printed enough);
- a listing is made of *parts*, each a function returning a snapshot of that part's items,
  called only when the listing reaches the part: for the map-cache, a small (instance-ID,
  family) table is one part in prefix order, a large one is one part per prefix length
  (:meth:`lispd.mapcache.PrefixTable.partition`), so a request copies one length's
  references at most (about 20 ns each: a million prefixes of one length would still be one
  copy of some 20 ms; a whole 514,001-prefix table in one copy measured 72 ms).  The
  snapshot is a list of references, not of rendered entries: rendering happens page by page;
- each item is rendered when its page is served, from the table's *current* state: an item gone
  since the snapshot is skipped, one replaced is shown as it is now.  So a listing shows every
  item that was in the table when its part was reached and still is when its page is served,
  once; items added after their part was reached are not shown, and nothing is shown twice;
- at most :data:`MAX_LISTINGS` listings are open at once (a new one beyond is refused with an
  error saying so), and one unused for :data:`IDLE_TIMEOUT` seconds is dropped.

:class:`Listings` is sans-IO: the daemon's clock comes in with each call.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

DEFAULT_PAGE = 100
"""Items per page when the request does not say."""
MAX_PAGE = 200
"""The most items one page holds, whatever the request asks (rendering an entry costs some
10-40 us)."""
SCAN_FACTOR = 4
"""A page looks at most ``SCAN_FACTOR`` times its size of snapshot items (the others having
vanished since): a table emptied meanwhile still costs a bounded time per request."""
MAX_LISTINGS = 8
"""Listings open at once, over every command."""
IDLE_TIMEOUT = 60.0
"""Seconds a listing stays open without a request for its next page."""
UNPAGED_MAX = 10_000
"""The most items a request without paging fields gets in one answer (the protocol before
paging); a larger table is refused with an error naming the paging fields."""


def page_size(request: dict[str, Any]) -> int:
    """The page size a request asks for (``"count"``), bounded to 1..:data:`MAX_PAGE`;
    ValueError for a value that is not a positive integer."""
    count = request.get("count", DEFAULT_PAGE)
    if count is None:
        return DEFAULT_PAGE
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"count must be a positive integer, not {count!r}")
    return min(count, MAX_PAGE)


def is_paged(request: dict[str, Any]) -> bool:
    """Whether ``request`` uses the paging fields (``cursor``, ``count``, ``close``)."""
    return "cursor" in request or "count" in request or "close" in request


@dataclass
class Listing(Generic[T]):
    """What one paged listing walks: its parts, how to render an item, how many items the
    table held when it was opened."""

    parts: Sequence[Callable[[], Sequence[T]]]
    """Each returns a snapshot of one part's items; called when the listing reaches it."""
    render: Callable[[T], dict[str, Any] | None]
    """An item as JSON now, or None when it is gone (or expired) since the snapshot."""
    total: int
    """Items in the table when the listing was opened (for the header ``lispctl`` prints)."""
    part: int = 0
    items: Sequence[T] | None = None
    position: int = 0
    kind: str = ""
    last_used: float = 0.0

    def _next_items(self) -> Sequence[T] | None:
        """The snapshot being walked, moving to the next part when it is used up (taking
        that part's snapshot); None at the end."""
        while self.items is None or self.position >= len(self.items):
            if self.items is not None:
                self.part += 1
                self.items = None
            if self.part >= len(self.parts):
                return None
            self.items = self.parts[self.part]()
            self.position = 0
        return self.items

    def page(self, size: int) -> list[dict[str, Any]]:
        """Up to ``size`` rendered items from where the last page stopped."""
        out: list[dict[str, Any]] = []
        budget = size * SCAN_FACTOR
        while len(out) < size and budget > 0:
            items = self._next_items()
            if items is None:
                break
            end = min(len(items), self.position + budget, self.position + size - len(out))
            render = self.render
            for item in items[self.position : end]:
                shown = render(item)
                if shown is not None:
                    out.append(shown)
            budget -= end - self.position
            self.position = end
        return out

    @property
    def finished(self) -> bool:
        """True once every part has been walked (without taking another part's snapshot)."""
        if self.part >= len(self.parts):
            return True
        used_up = self.items is not None and self.position >= len(self.items)
        return used_up and self.part == len(self.parts) - 1


@dataclass
class Listings:
    """The open paged listings of one daemon, by cursor token."""

    max_open: int = MAX_LISTINGS
    idle_timeout: float = IDLE_TIMEOUT
    open: dict[str, Listing[Any]] = field(default_factory=dict)

    def _expire(self, now: float) -> None:
        for token in [t for t, lst in self.open.items() if now - lst.last_used > self.idle_timeout]:
            del self.open[token]

    def serve(
        self,
        kind: str,
        request: dict[str, Any],
        make: Callable[[], Listing[Any]],
        now: float,
    ) -> dict[str, Any]:
        """One page of the ``kind`` listing the request continues (``cursor``) or opens
        (``make`` builds it): ``{"entries": [...], "cursor": token or None, "total": n}``.

        ValueError for an unknown or expired cursor, a cursor of another command, a bad
        ``count``, and when :attr:`max_open` listings are open already.
        """
        self._expire(now)
        size = page_size(request)
        token = request.get("cursor")
        if token is not None:
            if not isinstance(token, str):
                raise ValueError("cursor must be the string a previous page returned")
            listing = self.open.get(token)
            if listing is None or listing.kind != kind:
                raise ValueError(
                    f"unknown or expired cursor {token[:32]!r} (a listing is dropped after "
                    f"{self.idle_timeout:g} s unused): start the listing again"
                )
            if request.get("close"):
                del self.open[token]
                return {"entries": [], "cursor": None, "total": listing.total}
        else:
            if request.get("close"):
                return {"entries": [], "cursor": None, "total": 0}
            if len(self.open) >= self.max_open:
                raise ValueError(
                    f"busy: {len(self.open)} listings open already (each is dropped when "
                    f"finished, or {self.idle_timeout:g} s after its last page): try again later"
                )
            listing = make()
            listing.kind = kind
            token = secrets.token_hex(8)
            self.open[token] = listing
        listing.last_used = now
        entries = listing.page(size)
        if listing.finished:
            del self.open[token]
            return {"entries": entries, "cursor": None, "total": listing.total}
        return {"entries": entries, "cursor": token, "total": listing.total}


def unpaged(kind: str, total: int, limit: int = UNPAGED_MAX) -> None:
    """Refuse (ValueError) an un-paged request for a table of ``total`` items over ``limit``."""
    if total > limit:
        raise ValueError(
            f"{kind}: {total} entries, more than {limit} in one answer: ask for pages "
            '(request fields "cursor" and "count", as lispctl does; lispctl --limit N prints '
            "the first N)"
        )
