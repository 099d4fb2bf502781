"""The RTR's table of NATed xTRs: translated address -> translated UDP port.

An xTR behind a NAT keeps a binding open toward the RTR with keepalives (Info-Requests behind a
data header with instance-ID 0xFFFFFF) sent from its UDP 4341; the RTR sees them arrive from the
NAT's outside address and the port the NAT picked, records that pair here, and encapsulates the
traffic for that xTR to it (outer source port 4341, destination the translated port).

The table is keyed by the translated (observed) address, the RLOC the Map-Server gives the RTR for
the NATed site.  One port per address: xTRs behind one NAT address cannot be told apart by address
alone, and the latest keepalive wins (``learn`` reports the port change).

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

IPAddress = IPv4Address | IPv6Address


class NatBindings:
    """Translated address -> translated port of the NATed xTRs an RTR serves."""

    __slots__ = ("_ports", "_refreshed", "drops", "max_entries", "stats", "timeout")

    def __init__(self, timeout: float, max_entries: int) -> None:
        """Forget a binding ``timeout`` seconds after its last refresh; hold at most
        ``max_entries`` of them."""
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
        self.timeout = float(timeout)
        self.max_entries = max_entries
        self._ports: dict[IPAddress, int] = {}  # the packet path reads only this
        self._refreshed: OrderedDict[IPAddress, float] = OrderedDict()  # oldest refresh first
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

    def learn(self, address: IPAddress, port: int, now: float) -> bool:
        """A keepalive from ``address``:``port`` arrived at ``now``: create or refresh its
        binding.  True when the binding is new or its port changed (the NAT rebound)."""
        if not 0 < port <= 0xFFFF:
            raise ValueError(f"a UDP port is 1..65535, not {port!r}")
        old = self._ports.get(address)
        if old is None:
            while len(self._ports) >= self.max_entries:
                victim, _ = self._refreshed.popitem(last=False)
                del self._ports[victim]
                self.drops["nat-binding-evicted"] += 1
            self.stats["learned"] += 1
        else:
            self._refreshed.move_to_end(address)
            if old != port:
                self.stats["port-changed"] += 1
        self._ports[address] = port
        self._refreshed[address] = now
        return old != port

    def forget(self, address: IPAddress) -> bool:
        """Drop the binding of ``address``; False when it had none."""
        if self._ports.pop(address, None) is None:
            return False
        del self._refreshed[address]
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
