"""The RTR's table of NATed xTRs: translated address -> translated UDP port.

An xTR behind a NAT keeps a binding open toward the RTR with keepalives (Info-Requests behind a
data header with instance-ID 0xFFFFFF) sent from its UDP 4341; the RTR sees them arrive from the
NAT's outside address and the port the NAT picked, records that pair here, and encapsulates the
traffic for that xTR to it (outer source port 4341, destination the translated port).

The table is keyed by the translated (observed) address, the RLOC the Map-Server gives the RTR for
the NATed site.  One port per address: xTRs behind one NAT address cannot be told apart by address
alone, and the latest keepalive wins (``learn`` reports the port change).

Keepalives are not authenticated, and a port change is work for the daemon (the compiled
forwarding records of the map-cache entries using that address are issued again).  So port
changes are rate-limited per address: a token bucket of ``change_burst`` changes refilled at
``change_rate`` a second (by default 4, then one every 10 s: a NAT rebinds rarely); a change
beyond that is refused (``drops["nat-binding-change-rate-limited"]``) and the binding keeps its
port and its last refresh.  A refresh (same port) and a new binding are never limited.  The
buckets live only as long as their bindings (created at the first change), so their memory is
bounded by ``max_entries`` too.

:meth:`NatBindings.port_for` is on the per-packet path: one dict lookup, no clock, no allocation.
Expiry is the daemon's timer work: a binding not refreshed for ``timeout`` seconds is forgotten
(the NAT has forgotten it too, or will).  The table is bounded: when it is full, a new address
evicts the least recently refreshed one (``drops["nat-binding-evicted"]``).  ``now`` comes from
the daemon's monotonic clock and must not go backwards.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from ipaddress import IPv4Address, IPv6Address

from lispd.ratelimit import TokenBucket

IPAddress = IPv4Address | IPv6Address

CHANGE_RATE = 0.1
"""Port changes a second one address may make in the long run (after its burst)."""
CHANGE_BURST = 4.0
"""Port changes one address may make at once."""


class NatBindings:
    """Translated address -> translated port of the NATed xTRs an RTR serves."""

    __slots__ = (
        "_buckets",
        "_ports",
        "_refreshed",
        "change_burst",
        "change_rate",
        "drops",
        "max_entries",
        "stats",
        "timeout",
    )

    def __init__(
        self,
        timeout: float,
        max_entries: int,
        change_rate: float = CHANGE_RATE,
        change_burst: float = CHANGE_BURST,
    ) -> None:
        """Forget a binding ``timeout`` seconds after its last refresh; hold at most
        ``max_entries`` of them; let each address change its port ``change_burst`` times at
        once and ``change_rate`` times a second after that."""
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ValueError(
                f"the NAT binding timeout must be a finite number > 0, not {timeout!r}"
            )
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"max_entries must be an integer >= 1, not {max_entries!r}")
        if not (math.isfinite(change_rate) and change_rate > 0):
            raise ValueError(f"change_rate must be a finite number > 0, not {change_rate!r}")
        if not (math.isfinite(change_burst) and change_burst >= 1):
            raise ValueError(f"change_burst must be a finite number >= 1, not {change_burst!r}")
        self.timeout = float(timeout)
        self.max_entries = max_entries
        self.change_rate = float(change_rate)
        self.change_burst = float(change_burst)
        self._ports: dict[IPAddress, int] = {}  # the packet path reads only this
        self._refreshed: OrderedDict[IPAddress, float] = OrderedDict()  # oldest refresh first
        self._buckets: dict[IPAddress, TokenBucket] = {}  # port changes, per bound address
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()

    def __len__(self) -> int:
        """The number of bindings held."""
        return len(self._ports)

    def __contains__(self, address: object) -> bool:
        """Whether ``address`` has a binding."""
        return address in self._ports

    def port_for(self, address: IPAddress) -> int | None:
        """The translated port to encapsulate to for ``address``, None when it has no binding.

        Called per packet: it does not look at the clock, so a binding past its timeout is used
        until :meth:`expire` runs (at :meth:`next_deadline`)."""
        return self._ports.get(address)

    def learn(self, address: IPAddress, port: int, now: float) -> list[IPAddress]:
        """A keepalive from ``address``:``port`` arrived at ``now``: create or refresh its
        binding.  Returns the addresses whose translated port changed, whose forwarding must
        follow: ``address`` when its binding is new or the NAT rebound it, and the addresses
        a full table evicted to make room; empty for a refresh, and for a port change beyond
        the rate limit (refused: the binding stays as it was)."""
        if not 0 < port <= 0xFFFF:
            raise ValueError(f"a UDP port is 1..65535, not {port!r}")
        old = self._ports.get(address)
        if old == port:
            self._refreshed.move_to_end(address)
            self._refreshed[address] = now
            return []
        changed: list[IPAddress] = []
        if old is None:
            while len(self._ports) >= self.max_entries:
                victim, _ = self._refreshed.popitem(last=False)
                del self._ports[victim]
                self._buckets.pop(victim, None)
                self.drops["nat-binding-evicted"] += 1
                changed.append(victim)
            self.stats["learned"] += 1
        else:
            bucket = self._buckets.get(address)
            if bucket is None:
                bucket = self._buckets[address] = TokenBucket(self.change_rate, self.change_burst)
            if not bucket.take(now):
                self.drops["nat-binding-change-rate-limited"] += 1
                return []
            self._refreshed.move_to_end(address)
            self.stats["port-changed"] += 1
        self._ports[address] = port
        self._refreshed[address] = now
        changed.append(address)
        return changed

    def forget(self, address: IPAddress) -> bool:
        """Drop the binding of ``address``; False when it had none."""
        if self._ports.pop(address, None) is None:
            return False
        del self._refreshed[address]
        self._buckets.pop(address, None)
        return True

    def expire(self, now: float) -> list[IPAddress]:
        """Forget the bindings not refreshed in the last ``timeout`` seconds; returns their
        addresses, oldest first."""
        expired: list[IPAddress] = []
        limit = now - self.timeout
        while self._refreshed:
            address, refreshed = next(iter(self._refreshed.items()))
            if refreshed > limit:
                break
            del self._refreshed[address]
            del self._ports[address]
            self._buckets.pop(address, None)
            expired.append(address)
        if expired:
            self.stats["expired"] += len(expired)
        return expired

    def next_deadline(self) -> float | None:
        """When the oldest binding expires (None when the table is empty)."""
        for refreshed in self._refreshed.values():
            return refreshed + self.timeout
        return None

    def states(self, now: float) -> list[dict[str, object]]:
        """Every binding as JSON-ready dicts for a show command, most recently refreshed first:
        address, port, age-seconds (since the last refresh, rounded to milliseconds) and
        expires-in."""
        return [
            {
                "address": str(address),
                "port": self._ports[address],
                "age-seconds": round(now - refreshed, 3),
                "expires-in": round(max(0.0, refreshed + self.timeout - now), 3),
            }
            for address, refreshed in reversed(self._refreshed.items())
        ]
