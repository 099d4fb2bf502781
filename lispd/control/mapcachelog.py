"""The log lines of map-cache changes the control plane causes (logger ``lispd.mapcache``).

The resolver's entries are installed by the daemon, which alone sees what an install replaces;
it hands both to :func:`log_install`.  One line per change of state:

- ``map-cache learned`` (INFO): a new mapping with RLOCs, or one with other RLOCs or another
  action than the entry it replaces (then ``was-action`` / ``was-rlocs`` say what it was);
- ``map-cache negative`` (INFO): a new or changed entry without RLOCs (a negative Map-Reply:
  ``native-forward``, ``drop``, ``send-map-request``), with its TTL;
- ``map-cache refreshed`` (DEBUG): the same mapping again (a refresh is not a change);
- ``map-cache expired`` / ``map-cache cleared`` (INFO, :func:`log_removed`).

Every line names ``iid``, ``prefix``, ``action``, ``rlocs`` (addresses, a down one marked
``!down``), ``ttl`` (seconds) and ``source``.
"""

from __future__ import annotations

import logging

from lispd.logfmt import pairs
from lispd.mapcache import MapCacheEntry

log = logging.getLogger("lispd.mapcache")


def rloc_texts(entry: MapCacheEntry) -> list[str]:
    """The entry's RLOCs for a log line: addresses (an ELP's first hop), down ones ``!down``."""
    return [str(r.address) + ("" if r.up else "!down") for r in entry.rlocs]


def entry_fields(entry: MapCacheEntry) -> dict[str, object]:
    """The fields naming a map-cache entry in a log line."""
    return {
        "iid": entry.iid,
        "prefix": entry.prefix,
        "action": entry.action,
        "rlocs": rloc_texts(entry),
        "ttl": entry.ttl,
        "source": entry.source,
    }


def _mapping(entry: MapCacheEntry) -> tuple[object, ...]:
    """What forwarding follows in an entry (not its clock, not the RLOCs' probe state)."""
    return (
        entry.action,
        tuple((r.address, r.priority, r.weight, r.port, r.elp) for r in entry.rlocs),
    )


def install_event(previous: MapCacheEntry | None, entry: MapCacheEntry) -> str | None:
    """What installing ``entry`` in place of ``previous`` is worth an INFO line as: ``learned``
    or ``negative``; None for a refresh (the same mapping again: a DEBUG line at most)."""
    if previous is not None and _mapping(previous) == _mapping(entry):
        return None
    return "learned" if entry.rlocs else "negative"


def log_install(
    previous: MapCacheEntry | None, entry: MapCacheEntry, logger: logging.Logger = log
) -> None:
    """Log the install of ``entry`` in place of ``previous`` (None: a new prefix); the line's
    text is built only when its level is shown (tens of microseconds an entry otherwise)."""
    event = install_event(previous, entry)
    if event is None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("map-cache refreshed %s", pairs(entry_fields(entry)))
        return
    if not logger.isEnabledFor(logging.INFO):
        return
    fields = entry_fields(entry)
    if previous is not None:
        fields["was-action"] = previous.action
        fields["was-rlocs"] = rloc_texts(previous)
    logger.info("map-cache %s %s", event, pairs(fields))


def log_removed(entry: MapCacheEntry, why: str, logger: logging.Logger = log) -> None:
    """Log the removal of ``entry``: ``why`` is ``expired`` or ``cleared``."""
    if logger.isEnabledFor(logging.INFO):
        logger.info("map-cache %s %s", why, pairs(entry_fields(entry)))
