"""RLOC choice: the lowest usable priority wins; ties share by weight, by flow hash, so one
flow always lands on the same RLOC while the set is unchanged.

When every RLOC of a mapping is believed down, an ITR keeps encapsulating to the best ones
anyway (:func:`mapping_candidates`).  RFC 9300 section 10 and RFC 9301 section 7.1 tell how an
ITR learns reachability (probing, Locator-Status-Bits, the R bit, ICMP) and that it switches to
another locator when one is found unreachable; neither asks it to drop a flow whose locators
are all thought unreachable.  "Down" is a guess made from lost probes (an xTR that restarted,
or one like OOR that answers no probe for its first seconds): the path may work, and
encapsulating costs less than a black hole.  Priority 255 (RFC 9301 section 5.4: not for
unicast) and an address family this router cannot send in still rule an RLOC out."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol, TypeVar


class RlocLike(Protocol):
    """What selection reads of an RLOC (mapcache.RlocEntry has it)."""

    @property
    def priority(self) -> int: ...
    @property
    def weight(self) -> int: ...
    @property
    def up(self) -> bool: ...
    @property
    def address(self) -> object: ...


R = TypeVar("R", bound=RlocLike)
T = TypeVar("T")

UNUSABLE_PRIORITY = 255


def usable_candidates(rlocs: Sequence[RlocLike], families: Collection[int]) -> list[RlocLike]:
    """The RLOCs of the best (lowest) priority among those that are up, not priority 255, and
    of an address family this router can send in (``families``: versions 4 and/or 6)."""
    return _usable(rlocs, families)


def mapping_candidates(rlocs: Sequence[R], families: Collection[int]) -> tuple[list[R], bool]:
    """The RLOCs a map-cache entry's flows are shared among, and whether they were chosen with
    every RLOC down: :func:`usable_candidates` when any RLOC is up, else the RLOCs of the best
    priority as if all were up (``(candidates, True)``; see the module docstring)."""
    chosen = _usable(rlocs, families)
    if chosen:
        return chosen, False
    chosen = _usable(rlocs, families, ignore_down=True)
    return chosen, bool(chosen)


def select_mapping_rloc(
    rlocs: Sequence[R], h: int, families: Collection[int]
) -> tuple[R | None, bool]:
    """The RLOC flow hash ``h`` goes to among a map-cache entry's ``rlocs``, falling back to
    the down ones when none is up (:func:`mapping_candidates`); the flag says it fell back."""
    chosen, all_down = mapping_candidates(rlocs, families)
    return pick_by_weight(chosen, h), all_down


def _usable(rlocs: Sequence[R], families: Collection[int], ignore_down: bool = False) -> list[R]:
    """:func:`usable_candidates`, typed by the caller's RLOC class (generic, for
    :func:`select_rloc`); ``ignore_down``: as if every RLOC were up."""
    best = UNUSABLE_PRIORITY + 1
    chosen: list[R] = []
    for r in rlocs:
        prio = r.priority
        if prio == UNUSABLE_PRIORITY or not (r.up or ignore_down):
            continue
        if r.address.version not in families:  # type: ignore[attr-defined]
            continue
        if prio < best:
            best = prio
            chosen = [r]
        elif prio == best:
            chosen.append(r)
    return chosen


def pick_by_weight(candidates: Sequence[R], h: int) -> R | None:
    """One of ``candidates`` chosen by flow hash ``h`` in proportion to the weights (equal
    shares when every weight is 0; weight-0 RLOCs get nothing when others have weight)."""
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    total = sum(r.weight for r in candidates)
    if total == 0:
        return candidates[h % len(candidates)]
    point = h % total
    for r in candidates:
        point -= r.weight
        if point < 0:
            return r
    return candidates[-1]  # unreachable: the weights add up to total


def select_rloc(rlocs: Sequence[R], h: int, families: Collection[int]) -> R | None:
    """The RLOC flow hash ``h`` goes to, or None when no RLOC is usable."""
    return pick_by_weight(_usable(rlocs, families), h)


def elp_next_hop(path: Sequence[T], own: Collection[object]) -> T | None:
    """Where a node encapsulates to along the Explicit Locator Path ``path`` (LISP-TE): the
    hop after the last one that is one of ``own`` addresses, or the first hop when the node is
    not on the path (an ITR).  None when the node is the path's last hop."""
    for i in range(len(path) - 1, -1, -1):
        if path[i] in own:
            return path[i + 1] if i + 1 < len(path) else None
    return path[0]
