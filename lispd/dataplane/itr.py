"""ITR: an inner packet from the TUN -> encapsulated toward the destination EID's RLOC.

As a PITR (RFC 6832) it also encapsulates packets whose source is not a local EID, in the
instance of the map-cache entry covering the destination.  Destinations the mapping system says
to forward natively go to a Proxy-ETR when the node has live ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv6Address

from lispd.dataplane.icmp import frag_needed_v4, packet_too_big_v6
from lispd.dataplane.inner import flow_hash, parse_inner
from lispd.dataplane.outputs import Drop, Encap, Miss, Output, ToTun
from lispd.dataplane.rloc import elp_next_hop, select_mapping_rloc, select_rloc
from lispd.mapcache import LocalDatabase, MapCache, Network, RlocEntry
from lispd.ratelimit import TokenBucket
from lispd.stats import Counters
from lispd.wire.data import build_data_header

OVERHEAD = {4: 20 + 8 + 8, 6: 40 + 8 + 8}  # outer IP + UDP + LISP header

DROP_BAD_INNER = Drop("bad-inner-header")
DROP_SOURCE_NOT_EID = Drop("source-not-eid")
DROP_NOT_UNICAST = Drop("not-unicast")
DROP_NO_RLOC = Drop("no-usable-rloc")
DROP_TOO_BIG = Drop("too-big-rate-limited")
DROP_PITR_NO_ENTRY = Drop("pitr-no-map-cache-entry")
DROP_NATIVE_NO_PETR = Drop("native-forward-no-petr")
DROP_NO_LIVE_PETR = Drop("no-live-petr")
DROP_NO_LIVE_RTR = Drop("no-live-rtr")
DROP_ELP_END = Drop("elp-ends-here")
DROP_TO_SELF = Drop("rloc-is-self")


def _multicast(dst: bytes | bytearray) -> bool:
    return dst[0] == 0xFF if len(dst) == 16 else dst[0] >= 224


class Itr:
    """Encapsulation decisions for packets read from the TUN device."""

    def __init__(
        self,
        mapcache: MapCache,
        database: LocalDatabase,
        local_rlocs: dict[int, IPv4Address | IPv6Address],
        underlay_mtu: int,
        counters: Counters,
        nonce: Callable[[], int],
        clock: Callable[[], float],
        proxy: bool = False,
        petrs: Sequence[RlocEntry] = (),
        own_rlocs: Sequence[IPv4Address | IPv6Address] = (),
        nat_port: Callable[[IPv4Address | IPv6Address, int, Network | None], int | None]
        | None = None,
    ) -> None:
        self.mapcache = mapcache
        self.database = database
        self.local_rlocs = local_rlocs
        self.families = frozenset(local_rlocs)
        self.underlay_mtu = underlay_mtu
        self.counters = counters
        self.nonce = nonce
        self.clock = clock
        self.icmp_limit = TokenBucket(rate=10.0, burst=10.0)
        self.proxy = proxy
        self.petrs: tuple[RlocEntry, ...] = tuple(petrs)  # `up` kept current by the daemon
        # Behind a NAT: every destination without a static mapping goes to these RTRs (the
        # daemon sets them from NAT discovery; None when not behind a NAT).
        self.rtrs: tuple[RlocEntry, ...] | None = None
        # Addresses that are this node on an Explicit Locator Path (its RLOCs, public ones too).
        self.own_rlocs = frozenset(own_rlocs) | frozenset(local_rlocs.values())
        # RTR: the translated port of a NATed xTR's RLOC for an entry's (instance-ID,
        # EID-prefix), None when that RLOC is not NATed.
        self.nat_port = nat_port
        self._iids: tuple[int, ...] = ()
        self._iids_generation = -1

    def instance_for_source(self, src: bytes | bytearray) -> int | None:
        """The instance-ID of the local EID-prefix holding ``src`` (None: not a local EID).
        With overlapping local prefixes in several instances, the lowest instance-ID wins."""
        database = self.database
        if database.generation != self._iids_generation:
            self._iids = tuple(database.instance_ids())
            self._iids_generation = database.generation
        for iid in self._iids:
            if database.contains(iid, src):
                return iid
        return None

    def handle(
        self, pkt: bytes | bytearray, iid: int | None = None, reencap: bool = False
    ) -> Output:
        """Decide what to do with one packet from the TUN.  ``iid`` given: the packet is being
        forwarded in that instance (an RTR re-encapsulating, or a packet held during
        resolution), so its source need not be a local EID.  ``reencap``: an RTR's packet,
        which has no TUN to send an ICMP too-big into: one too large for the next hop is
        encapsulated anyway, and the outer packet fragmented by the kernel.  An Encap of a
        packet whose source is not a local EID, sent as a PITR, has ``pitr`` set; one to a
        Proxy-ETR (a native-forward destination) has ``to_petr`` set."""
        flow = parse_inner(pkt)
        if flow is None:
            return DROP_BAD_INNER
        if _multicast(flow.dst):
            # The kernel's own multicast chatter on the TUN (MLD reports sent from :: when the
            # link comes up) is no EID traffic: counted apart from real stray sources.
            return DROP_NOT_UNICAST
        now = self.clock()
        proxied = False
        if iid is None:
            iid = self.instance_for_source(flow.src)
            if iid is None:
                if not self.proxy:
                    return DROP_SOURCE_NOT_EID
                iid = self._instance_for_destination(flow.dst, now)
                if iid is None:
                    return DROP_PITR_NO_ENTRY
                proxied = True
        elif self.proxy and not reencap:
            # Released after its Map-Reply (or turned around): still PITR traffic when its
            # source is not one of our EIDs.
            proxied = self.instance_for_source(flow.src) is None
        entry = self.mapcache.lookup(iid, flow.dst, now)
        h = flow_hash(flow)
        data_port = to_petr = all_down = False
        if self.rtrs is not None and (entry is None or entry.action != "encapsulate"):
            rloc = select_rloc(self.rtrs, h, self.families)
            if rloc is None:
                return DROP_NO_LIVE_RTR
            data_port = True
        elif entry is None or entry.action == "send-map-request":
            # As bytes (an RTR's packet is a bytearray): kept while resolving, and ip_address()
            # takes no bytearray.  bytes() of bytes is the object itself, no copy.
            return Miss(iid, bytes(flow.dst), bytes(flow.src))
        elif entry.action == "encapsulate":
            # Every RLOC down: the best ones are used anyway (see lispd.dataplane.rloc).
            rloc, all_down = select_mapping_rloc(entry.rlocs, h, self.families)
        elif entry.action == "native-forward":
            if not self.petrs:
                return DROP_NATIVE_NO_PETR
            rloc = select_rloc(self.petrs, h, self.families)
            if rloc is None:
                return DROP_NO_LIVE_PETR
            to_petr = True
        else:
            return Drop("action-" + entry.action)
        if rloc is None:
            return DROP_NO_RLOC
        address, port = rloc.address, rloc.port
        if rloc.elp:
            hop = elp_next_hop(rloc.elp, self.own_rlocs)
            if hop is None:
                return DROP_ELP_END
            address = hop
        if address in self.own_rlocs:
            return DROP_TO_SELF  # a mapping that points back at us: never loop
        if self.nat_port is not None:
            translated = self.nat_port(address, iid, entry.prefix if entry is not None else None)
            if translated is not None:
                port, data_port = translated, True
        family = address.version
        limit = self.underlay_mtu - OVERHEAD[family]
        if len(pkt) > limit and flow.dont_fragment and not reencap:
            return self._too_big(bytes(pkt), flow.version, limit, now)
        if all_down:
            self.counters.count("itr.all-rlocs-down", len(pkt))
        return Encap(
            address,
            port,
            h,
            flow.ttl,
            flow.tos,
            build_data_header(self.nonce(), iid) + pkt,
            data_port,
            proxied,
            to_petr,
        )

    def _instance_for_destination(self, dst: bytes | bytearray, now: float) -> int | None:
        """PITR: the instance whose map-cache covers ``dst`` (the lowest one if several)."""
        for iid in self.mapcache.instance_ids():
            if self.mapcache.lookup(iid, dst, now) is not None:
                return iid
        return None

    def _too_big(self, pkt: bytes, version: int, mtu: int, now: float) -> Output:
        """ICMP back to the source saying how large a packet fits (rate-limited)."""
        if not self.icmp_limit.take(now):
            return DROP_TOO_BIG
        self.counters.count("itr.icmp-too-big", len(pkt))
        if version == 4:
            src4 = self.local_rlocs.get(4)
            if not isinstance(src4, IPv4Address):
                src4 = IPv4Address(pkt[16:20])
            return ToTun(frag_needed_v4(pkt, mtu, src4))
        src6 = self.local_rlocs.get(6)
        if not isinstance(src6, IPv6Address):
            src6 = IPv6Address(pkt[24:40])
        return ToTun(packet_too_big_v6(pkt, max(mtu, 1280), src6))
