"""The address plan the scenarios share (documentation ranges only: RFC 5737, RFC 3849).

Underlay (public side): 192.0.2.0/24 and 2001:db8:0::/48; behind NATs: 203.0.113.0/25.
EIDs: 198.51.100.0/24 and 2001:db8:100::/48, one /28 and one /64 per site.  Outside the EID
space (reached natively through a PETR): 203.0.113.128/25 and 2001:db8:ffff::/48.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests import configs


@dataclass(frozen=True)
class Site:
    """An EID site as a Map-Server knows it: a name, its key and its EID-prefixes."""

    name: str
    key: str
    prefixes: tuple[str, ...]

    def table(self) -> configs.Doc:
        """Its ``[[site]]`` table."""
        return configs.site(self.name, self.key, *self.prefixes)


# Underlay RLOCs.
XTR1, XTR1_V6 = "192.0.2.1", "2001:db8:0:1::1"
XTR2, XTR2_V6 = "192.0.2.2", "2001:db8:0:2::2"
XTR3, XTR3_V6 = "192.0.2.3", "2001:db8:0:3::3"
MS, MS_V6 = "192.0.2.10", "2001:db8:0:10::10"
RTR, RTR_V6 = "192.0.2.20", "2001:db8:0:20::20"
RTR_B, RTR_B_V6 = "192.0.2.21", "2001:db8:0:21::21"
PETR = "192.0.2.30"
NAT_PUBLIC = "192.0.2.100"
XTR1_PRIVATE = "203.0.113.2"  # xtr1's RLOC when it sits behind the NAT

# EID space and sites.
EID_SPACE = ("198.51.100.0/24", "2001:db8:100::/48")
SITE1 = Site("site1", "key-site-one", ("198.51.100.0/28", "2001:db8:100:1::/64"))
SITE2 = Site("site2", "key-site-two", ("198.51.100.16/28", "2001:db8:100:2::/64"))
H1, H1_V6 = "198.51.100.1", "2001:db8:100:1::1"  # hosts of site 1
H2, H2_V6 = "198.51.100.17", "2001:db8:100:2::1"  # hosts of site 2

# Not EIDs: the outside world, reached through the PETR.
OUTSIDE, OUTSIDE_V6 = "203.0.113.200", "2001:db8:ffff::200"
