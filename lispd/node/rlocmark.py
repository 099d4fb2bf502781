"""RLOC up/down marking of the map-cache, a bounded slice per loop turn.

Probing says an RLOC went down (or came back): every map-cache entry using it must show it
(forwarding then skips a down RLOC for the next priority).  An RLOC may be used by 100,000
entries; replacing them all in one call would stall the event loop that also forwards packets
for seconds.  :class:`RlocMarking` spreads the work: :meth:`RlocMarking.mark` queues the
address with its newest state (cheap), :meth:`RlocMarking.run` replaces at most ``slice_size``
entries per call, and the node calls it on every timer turn while work remains (its deadline is
then "now", so the shell comes back on the next loop turn, after the packets that wait).

While a job runs, the entries not reached yet still show the RLOC's former state: packets to
those EIDs still go to the RLOC that went down (or keep avoiding the one that came back).  For
an RLOC of a few thousand entries that lasts milliseconds; for one of 100,000 about 2,000 turns
of ~2 ms, i.e. about 4 s of loop time at 1,000,000 entries on the test VM (longer when the loop
is busy with packets), on top of probing's own detection delay (``interval`` + ``down-after``
x ``timeout``, 19 s by default), which every entry already lives with.  It ends with every
entry showing the final state:

- an entry installed or replaced meanwhile (a Map-Reply) is skipped: the node marks new
  entries with the prober's current state when it installs them;
- an entry removed meanwhile is skipped (:meth:`~lispd.mapcache.MapCache.still_using`);
- an address marked again while it waits keeps its place with the newest state; one marked
  again while its pass runs has the rest of that pass give the new state, and a second pass
  after it for the entries done already (an entry already showing the state costs a
  comparison, not a replacement), so a flap down and up mid-job ends with every entry up.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

from lispd.mapcache import Address, MapCache, MapCacheEntry

# Entries one run() looks at.  Measured at 1,000,000 entries with the compiled listener on the
# shared 2-core VM (``python -m benchmarks.turn_costs``): about 45 us of CPU per entry replaced
# (the new entry, the prefix table, the RLOC index, the compiled record; 80-120 us of wall
# time), so a slice costs about 2 ms (median turn 1.8-1.9 ms CPU), and 100,000 entries take
# 2,000 turns, about 4 s of loop time.
MARK_SLICE = 50


class RlocMarking:
    """The queue of RLOC addresses whose state the map-cache entries must show, and the
    bounded work of showing it (see the module docstring)."""

    def __init__(self, mapcache: MapCache, *, slice_size: int = MARK_SLICE) -> None:
        """Mark entries of ``mapcache``, ``slice_size`` of them per :meth:`run` at most."""
        if slice_size < 1:
            raise ValueError("an RLOC marking needs slice_size >= 1")
        self.mapcache = mapcache
        self.slice_size = slice_size
        self.replaced = 0  # entries replaced, in all
        self._pending: OrderedDict[Address, bool] = OrderedDict()  # address -> newest state
        self._address: Address | None = None  # the running pass's address ...
        self._up = True  # ... the state it gives ...
        self._entries: list[MapCacheEntry] = []  # ... its entries when it began ...
        self._next = 0  # ... and the next one to look at

    def __len__(self) -> int:
        """Addresses still to be marked, the one whose pass runs included."""
        return len(self._pending) + (self._next < len(self._entries))

    def __bool__(self) -> bool:
        return bool(self._pending) or self._next < len(self._entries)

    def mark(self, address: Address, up: bool) -> None:
        """The entries using ``address`` must show it ``up`` (or down).  An address no entry
        uses is not queued; one queued already keeps its place with the new state.  For the
        address whose pass runs, the rest of the pass gives the new state at once and a second
        pass follows for the entries it did already."""
        if address == self._address and self._next < len(self._entries):
            self._up = up
        if self.mapcache.uses(address):
            self._pending[address] = up

    def run(self) -> int:
        """Look at ``slice_size`` entries at most, replacing those that do not show their
        RLOC's state yet; returns how many were looked at."""
        budget = self.slice_size
        looked = 0
        mapcache = self.mapcache
        while looked < budget:
            if self._next >= len(self._entries):
                if not self._pending:
                    break
                self._address, self._up = self._pending.popitem(last=False)
                self._entries, self._next = mapcache.using(self._address), 0
                continue
            address, up = self._address, self._up
            assert address is not None
            start = self._next
            chunk = self._entries[start : start + budget - looked]
            self._next += len(chunk)
            looked += len(chunk)
            # Let go of the snapshot's references as the pass moves on: the entries replaced
            # are freed a slice at a time, not 100,000 at once when the pass ends.
            self._entries[start : self._next] = [None] * len(chunk)  # type: ignore[list-item]
            for entry in mapcache.still_using(address, chunk):
                rlocs = tuple(
                    replace(r, up=up) if r.address == address and r.up != up else r
                    for r in entry.rlocs
                )
                if rlocs != entry.rlocs:
                    mapcache.add(replace(entry, rlocs=rlocs))
                    self.replaced += 1
        if self._next >= len(self._entries):
            self._address, self._entries, self._next = None, [], 0
        return looked

    def clear(self) -> None:
        """Forget every queued and running pass."""
        self._pending.clear()
        self._address, self._entries, self._next = None, [], 0
