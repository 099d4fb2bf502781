"""The RTR's table of NATed xTRs: one binding per xTR, keyed by its translated address and port.

An xTR behind a NAT keeps a binding open toward the RTR with keepalives (Info-Requests behind a
data header with instance-ID 0xFFFFFF) sent from its UDP 4341; the RTR sees them arrive from the
NAT's outside address and the port the NAT picked for that xTR's flow, records the pair here,
and encapsulates the traffic for that xTR to it (outer source port 4341, destination the
translated port).

Per xTR, not per address.  Many xTRs may sit behind one public address (carrier-grade NAT, a
cloud NAT gateway, two routers behind one home NAT): a masquerading NAT gives each xTR's 4341
flow its own translated port, so a binding is the pair (translated address, translated port).
A keepalive only ever creates or refreshes the binding of the port it came from: it cannot move
another xTR's.

Which binding an EID's traffic goes to.  The Map-Server gives the RTR each NATed site's
translated RLOC, the same public address for every xTR behind one NAT, so the address does not
say which xTR (and so which port) a map-cache entry is for.  The EID-prefix does: every keepalive
names one of the xTR's database EID-prefixes (:mod:`lispd.control.nat` sends one per prefix), and
the binding it refreshes *claims* that (instance-ID, EID-prefix) at its address.  The packet
path looks up the entry's (address, instance-ID, EID-prefix) first, the prefix exactly as the
Map-Server registered it (what Map-Replies carry); an entry no binding claims (an xTR naming
only some of its prefixes, a more-specific entry, an explicit-path hop) falls back to the
address-wide claim, which the first binding at an address takes and keeps.  RLOC probes go by
the EID-prefix the probe names, the same way.  One xTR alone
behind its NAT therefore behaves as before, whatever it names.

Claims are sticky.  Keepalives are not authenticated: a spoofed one naming another xTR's prefix
from another port must not take that xTR's traffic.  A claim held by a binding moves to another
binding of the same address only when its holder has gone quiet *for that claim*: no keepalive
of the holder naming it for :data:`QUIET_GAPS` times the holder's own last keepalive gap (gaps
under :data:`MIN_GAP` are bursts and do not count; before a gap is known, half the timeout).  A
live xTR keeps its prefixes; a NAT that rebinds an xTR to a new port (a NAT reboot, a mapping
timed out) is followed at the new port's first keepalive after that, about two keepalive
intervals later; and a port the NAT frees and gives to another xTR loses the old xTR's prefixes
the same way, since the new owner's keepalives name other prefixes.  Refused claims are counted
(``drops["nat-binding-eid-held"]``; the address-wide claim is contested by every other binding
of the address, silently).  Moves are also rate-limited per claim: a token bucket of
``change_burst`` moves refilled at ``change_rate`` a second (by default 4, then one every 10 s);
beyond it ``drops["nat-binding-change-rate-limited"]``.  A binding claims at most
:data:`MAX_EIDS` prefixes (``drops["nat-binding-too-many-eids"]`` beyond).

:meth:`NatBindings.port_for` is on the per-packet path: one dict lookup by address (the only
one for an RLOC that is no NATed xTR's), a second by EID-prefix, no clock, no work that grows
with the table.  Expiry is the daemon's timer work: a binding not refreshed for
``timeout`` seconds is forgotten (the NAT has forgotten it too, or will), with its claims; the
address-wide claim passes to the most recently refreshed binding left at the address.  The
table is bounded: when it is full, a new binding evicts the least recently refreshed one
(``drops["nat-binding-evicted"]``).  ``now`` comes from the daemon's monotonic clock and must not
go backwards.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Final

from lispd.ratelimit import TokenBucket

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
Eid = tuple[int, IPNetwork]
"""(instance-ID, EID-prefix) as a keepalive names it and a map-cache entry holds it."""
Claim = tuple[IPAddress, int, IPNetwork | None]
"""(translated address, instance-ID, EID-prefix); (address, -1, None) is the address-wide one."""

CHANGE_RATE: Final = 0.1
"""Moves a second one claim may make in the long run (after its burst)."""
CHANGE_BURST: Final = 4.0
"""Moves one claim may make at once."""
MAX_EIDS: Final = 16
"""EID-prefixes one binding may claim."""
QUIET_GAPS: Final = 1.5
"""A claim's holder is quiet after this many of its own keepalive gaps without a keepalive."""
MIN_GAP: Final = 0.25
"""Seconds between two keepalives of one binding below which they are one burst (an xTR sends
one per EID-prefix at once), not a gap."""


def _wide(address: IPAddress) -> Claim:
    return (address, -1, None)


class _Binding:
    """One NATed xTR as the RTR sees it: its translated address and port."""

    __slots__ = ("address", "claims", "eids", "gap", "port", "refreshed")

    def __init__(self, address: IPAddress, port: int, now: float) -> None:
        self.address = address
        self.port = port
        self.refreshed = now
        self.gap: float | None = None  # its last keepalive gap (None: not seen yet)
        self.claims: dict[Claim, float] = {}  # held claim -> when a keepalive last named it
        self.eids = 0  # how many of ``claims`` are EID claims (not address-wide)


class _Ports:
    """What the packet path reads of one NATed address: the port of its address-wide claim and
    of each claimed (instance-ID, EID-prefix)."""

    __slots__ = ("eids", "wide")

    def __init__(self) -> None:
        self.wide: int | None = None
        self.eids: dict[Eid, int] = {}


class NatBindings:
    """(translated address, translated port) -> binding of the NATed xTRs an RTR serves, and
    which binding each claimed EID-prefix goes to."""

    __slots__ = (
        "_at",
        "_bindings",
        "_buckets",
        "_holders",
        "_ports",
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
        ``max_entries`` of them; let each claim move ``change_burst`` times at once and
        ``change_rate`` times a second after that."""
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
        # (address, port) -> binding, oldest refresh first.
        self._bindings: OrderedDict[tuple[IPAddress, int], _Binding] = OrderedDict()
        self._at: dict[IPAddress, dict[int, _Binding]] = {}  # the bindings of each address
        self._holders: dict[Claim, _Binding] = {}  # who holds each claim
        self._ports: dict[IPAddress, _Ports] = {}  # the packet path reads only this
        self._buckets: dict[Claim, TokenBucket] = {}  # moves, per claim that has moved
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()

    def __len__(self) -> int:
        """The number of bindings held."""
        return len(self._bindings)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` has a binding: an (address, port) pair, or an address (any port)."""
        if isinstance(key, tuple):
            return key in self._bindings
        return key in self._at

    def port_for(
        self, address: IPAddress, iid: int = 0, prefix: IPNetwork | None = None
    ) -> int | None:
        """The translated port to encapsulate to for ``address`` in the map-cache entry
        (``iid``, ``prefix``): the port of the binding claiming that EID-prefix, else of the one
        holding the address-wide claim; None when ``address`` has no binding.

        Called per packet: it does not look at the clock, so a binding past its timeout is used
        until :meth:`expire` runs (at :meth:`next_deadline`)."""
        ports = self._ports.get(address)  # one lookup for an RLOC that is no NATed xTR's
        if ports is None:
            return None
        if prefix is not None and ports.eids:
            port = ports.eids.get((iid, prefix))
            if port is not None:
                return port
        return ports.wide

    def learn(
        self, address: IPAddress, port: int, now: float, eid: Eid | None = None
    ) -> list[IPAddress]:
        """A keepalive from ``address``:``port`` naming ``eid`` arrived at ``now``: create or
        refresh the binding of that port, and let it claim ``eid`` and the address-wide claim
        (see the module documentation).  Returns the addresses whose forwarding must follow:
        ``address`` when a claim of it was taken or moved, and the addresses whose bindings a
        full table evicted to make room; empty for a plain refresh and a refused claim."""
        if not 0 < port <= 0xFFFF:
            raise ValueError(f"a UDP port is 1..65535, not {port!r}")
        key = (address, port)
        binding = self._bindings.get(key)
        changed: list[IPAddress] = []
        if binding is None:
            while len(self._bindings) >= self.max_entries:
                victim = next(iter(self._bindings.values()))
                self.drops["nat-binding-evicted"] += 1
                if self._remove(victim) and victim.address not in changed:
                    changed.append(victim.address)
            binding = _Binding(address, port, now)
            self._bindings[key] = binding
            self._at.setdefault(address, {})[port] = binding
            self.stats["learned"] += 1
        else:
            gap = now - binding.refreshed
            if gap >= MIN_GAP:
                binding.gap = gap
            binding.refreshed = now
            self._bindings.move_to_end(key)
        moved = self._claim(_wide(address), binding, now)
        if eid is not None and self._claim((address, eid[0], eid[1]), binding, now):
            moved = True
        if moved and address not in changed:
            changed.append(address)
        return changed

    def _quiet(self, binding: _Binding, claim: Claim, now: float) -> bool:
        """Whether ``binding``'s keepalives have left ``claim`` unnamed long enough for it to
        lose the claim (its own keepalives stopped, or they name other prefixes now: a NAT
        may give a port it freed to another xTR)."""
        wait = self.timeout / 2 if binding.gap is None else QUIET_GAPS * binding.gap
        return now - binding.claims[claim] > wait

    def _claim(self, claim: Claim, binding: _Binding, now: float) -> bool:
        """``binding`` claims ``claim``; True when the claim was taken or moved to it."""
        holder = self._holders.get(claim)
        if holder is binding:
            binding.claims[claim] = now
            return False
        is_eid = claim[2] is not None
        if holder is not None:
            if not self._quiet(holder, claim, now):
                if is_eid:
                    self.drops["nat-binding-eid-held"] += 1
                return False
            bucket = self._buckets.get(claim)
            if bucket is None:
                bucket = self._buckets[claim] = TokenBucket(self.change_rate, self.change_burst)
            if is_eid and binding.eids >= MAX_EIDS:
                self.drops["nat-binding-too-many-eids"] += 1
                return False
            if not bucket.take(now):
                self.drops["nat-binding-change-rate-limited"] += 1
                return False
            del holder.claims[claim]
            if is_eid:
                holder.eids -= 1
            self.stats["claim-moved"] += 1
        elif is_eid and binding.eids >= MAX_EIDS:
            self.drops["nat-binding-too-many-eids"] += 1
            return False
        self._give(claim, binding)
        return True

    def _give(self, claim: Claim, binding: _Binding) -> None:
        self._holders[claim] = binding
        ports = self._ports.get(binding.address)
        if ports is None:
            ports = self._ports[binding.address] = _Ports()
        if claim[2] is None:
            ports.wide = binding.port
        else:
            ports.eids[(claim[1], claim[2])] = binding.port
        binding.claims[claim] = binding.refreshed
        if claim[2] is not None:
            binding.eids += 1

    def _remove(self, binding: _Binding) -> bool:
        """Forget ``binding`` and its claims, the address-wide one passing to the most recently
        refreshed binding left at its address.  True when a claim changed hands or went."""
        address = binding.address
        del self._bindings[(address, binding.port)]
        same = self._at[address]
        del same[binding.port]
        if not same:
            del self._at[address]
        ports = self._ports.get(address)
        for claim in binding.claims:
            del self._holders[claim]
            self._buckets.pop(claim, None)
            if ports is not None:
                if claim[2] is None:
                    ports.wide = None
                else:
                    del ports.eids[(claim[1], claim[2])]
        wide = _wide(address)
        if wide in binding.claims and same:
            self._give(wide, max(same.values(), key=lambda b: b.refreshed))
        if ports is not None and ports.wide is None and not ports.eids:
            del self._ports[address]
        had = bool(binding.claims)
        binding.claims = {}
        return had

    def forget(self, address: IPAddress, port: int | None = None) -> bool:
        """Drop the binding of ``address``:``port`` (every binding of ``address`` when ``port``
        is None); False when there was none."""
        bindings = self._at.get(address)
        if not bindings:
            return False
        if port is None:
            victims = list(bindings.values())
        elif port in bindings:
            victims = [bindings[port]]
        else:
            return False
        for binding in victims:
            self._remove(binding)
        return True

    def expire(self, now: float) -> list[IPAddress]:
        """Forget the bindings not refreshed in the last ``timeout`` seconds; returns the
        addresses whose forwarding changed (a claim went or passed on), oldest first."""
        changed: dict[IPAddress, None] = {}  # in order, each once (a set look-up each)
        limit = now - self.timeout
        count = 0
        while self._bindings:
            binding = next(iter(self._bindings.values()))
            if binding.refreshed > limit:
                break
            count += 1
            if self._remove(binding):
                changed[binding.address] = None
        if count:
            self.stats["expired"] += count
        return list(changed)

    def next_deadline(self) -> float | None:
        """When the oldest binding expires (None when the table is empty)."""
        for binding in self._bindings.values():
            return binding.refreshed + self.timeout
        return None

    def states(self, now: float) -> list[dict[str, object]]:
        """Every binding as JSON-ready dicts for a show command, most recently refreshed first:
        address, port, age-seconds (since the last refresh, rounded to milliseconds),
        expires-in, address-wide (whether EID-prefixes nobody claims go to it) and the
        EID-prefixes it claims (``[iid]prefix``)."""
        return [
            {
                "address": str(b.address),
                "port": b.port,
                "age-seconds": round(now - b.refreshed, 3),
                "expires-in": round(max(0.0, b.refreshed + self.timeout - now), 3),
                "address-wide": _wide(b.address) in b.claims,
                "eid-prefixes": sorted(f"[{c[1]}]{c[2]}" for c in b.claims if c[2] is not None),
            }
            for b in reversed(self._bindings.values())
        ]
