"""The role configurations the entry-point fuzz harness runs the daemon as, and the addresses of
the small world they live in (peers, EID-prefixes), which the seeds are built from.

One world for every role, so that one seed makes sense to each: the xTR's site, a remote site
with a static mapping, EID space resolved through the Map-Resolver, a native-forward prefix,
a dropped prefix, an RTR, a PETR and an MS/MR.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

# --- underlay --------------------------------------------------------------------------------
XTR_V4, XTR_V6 = ip_address("192.0.2.2"), ip_address("2001:db8:0:1::2")
REMOTE_V4, REMOTE_V6 = ip_address("192.0.2.6"), ip_address("2001:db8:0:2::2")
MS_V4, MS_V6 = ip_address("192.0.2.10"), ip_address("2001:db8:0:10::10")
RTR_V4, RTR_V6 = ip_address("192.0.2.20"), ip_address("2001:db8:0:20::20")
RTR_PUBLIC_V4 = ip_address("203.0.113.20")
PETR_V4, PETR_V6 = ip_address("192.0.2.30"), ip_address("2001:db8:0:30::30")
NAT_XTR_V4 = ip_address("10.0.0.2")  # a private RLOC: the NATed xTR's
NAT_GLOBAL_V4 = ip_address("203.0.113.2")  # what its NAT makes of it

# --- overlay ---------------------------------------------------------------------------------
LOCAL_EID_V4, LOCAL_EID_V6 = ip_address("198.51.100.2"), ip_address("2001:db8:100:1::2")
STATIC_EID_V4, STATIC_EID_V6 = ip_address("198.51.100.18"), ip_address("2001:db8:100:2::2")
RESOLVED_EID_V4, RESOLVED_EID_V6 = ip_address("198.51.100.70"), ip_address("2001:db8:100:7::7")
DROP_EID_V4 = ip_address("198.51.100.40")
NATIVE_EID_V4 = ip_address("203.0.113.5")
NAT_SITE_EID_V4 = ip_address("198.51.100.50")
OUTSIDE_V4, OUTSIDE_V6 = ip_address("8.8.8.8"), ip_address("2001:4860::8888")
MULTICAST_V4, MULTICAST_V6 = ip_address("224.0.0.5"), ip_address("ff02::16")

SITE_KEYS = {"site-a": "key-site-a", "site-b": "key-site-b", "site-c": "key-site-c"}

ROLE_CONFIGS: dict[str, str] = {
    # ITR + ETR of site-a: static, drop, native-forward (to a PETR) and send-map-request
    # map-cache entries, an ELP, two instances, registration, resolution, RLOC probing.
    "xtr": """
[daemon]
name = "xtr1"
roles = ["itr", "etr"]
control-socket = ""
[underlay]
rlocs = ["192.0.2.2", "2001:db8:0:1::2"]
mtu = 1500
[[database-mapping]]
eid-prefix = "198.51.100.0/28"
rlocs = [{ address = "192.0.2.2" }, { address = "2001:db8:0:1::2" }]
[[database-mapping]]
eid-prefix = "198.51.100.0/28"
instance-id = 7
rlocs = [{ address = "192.0.2.2" }]
[[database-mapping]]
eid-prefix = "2001:db8:100:1::/64"
rlocs = [{ elp = ["2001:db8:0:20::20", "2001:db8:0:1::2"] }]
[[map-cache]]
eid-prefix = "198.51.100.16/28"
rlocs = [
    { address = "192.0.2.6", weight = 50 },
    { elp = ["2001:db8:0:20::20", "2001:db8:0:2::2"], weight = 50 },
]
[[map-cache]]
eid-prefix = "2001:db8:100:2::/64"
rlocs = [{ address = "2001:db8:0:2::2" }]
[[map-cache]]
eid-prefix = "198.51.100.32/28"
action = "drop"
[[map-cache]]
eid-prefix = "203.0.113.0/24"
action = "native-forward"
[[map-cache]]
eid-prefix = "198.51.100.0/24"
action = "send-map-request"
[[map-cache]]
eid-prefix = "198.51.100.0/24"
instance-id = 7
action = "send-map-request"
[[map-cache]]
eid-prefix = "2001:db8:100::/48"
action = "send-map-request"
[[map-server]]
address = "192.0.2.10"
key = "key-site-a"
[[map-server]]
address = "2001:db8:0:10::10"
key = "key-site-a"
key-id = 1
[[map-resolver]]
address = "192.0.2.10"
[[map-resolver]]
address = "2001:db8:0:10::10"
[[petr]]
address = "192.0.2.30"
[probing]
interval = 10
timeout = 3
""",
    # An RTR with a public RLOC behind a 1:1 NAT, resolving through the MR, with a PETR.
    "rtr": """
[daemon]
name = "rtr1"
roles = ["rtr"]
control-socket = ""
[underlay]
rlocs = ["192.0.2.20", "2001:db8:0:20::20"]
[rtr]
public-rlocs = ["203.0.113.20"]
nat-binding-timeout = 120
max-nat-bindings = 1000
[[map-cache]]
eid-prefix = "198.51.100.16/28"
rlocs = [{ address = "192.0.2.6" }]
[[map-resolver]]
address = "192.0.2.10"
[[petr]]
address = "192.0.2.30"
[probing]
interval = 10
timeout = 3
""",
    # Map-Server and Map-Resolver of three sites, telling NATed xTRs about the RTR.
    "msmr": """
[daemon]
name = "msmr1"
roles = ["map-server", "map-resolver"]
control-socket = ""
[underlay]
rlocs = ["192.0.2.10", "2001:db8:0:10::10"]
[mapping-system]
registration-timeout = 180
negative-ttl = 15
rtr-rlocs = ["192.0.2.20"]
[[site]]
name = "site-a"
key = "key-site-a"
eid-prefixes = [
    { eid-prefix = "198.51.100.0/28" },
    { eid-prefix = "198.51.100.0/28", instance-id = 7 },
    { eid-prefix = "2001:db8:100:1::/64" },
]
[[site]]
name = "site-b"
key = "key-site-b"
eid-prefixes = [
    { eid-prefix = "198.51.100.16/28", accept-more-specifics = true },
    { eid-prefix = "2001:db8:100:2::/64", accept-more-specifics = true },
]
[[site]]
name = "site-c"
key = "key-site-c"
eid-prefixes = [{ eid-prefix = "198.51.100.48/28" }]
""",
    # A proxy ITR and ETR: encapsulates for non-LISP sources, decapsulates for anywhere.
    "pxtr": """
[daemon]
name = "pxtr1"
roles = ["pitr", "petr"]
control-socket = ""
[underlay]
rlocs = ["192.0.2.30", "2001:db8:0:30::30"]
[[map-cache]]
eid-prefix = "198.51.100.16/28"
rlocs = [{ address = "192.0.2.6" }]
[[map-cache]]
eid-prefix = "198.51.100.0/24"
action = "send-map-request"
[[map-cache]]
eid-prefix = "2001:db8:100::/48"
action = "send-map-request"
[[map-resolver]]
address = "192.0.2.10"
[probing]
interval = 10
timeout = 3
""",
    # site-c's xTR behind a NAT: Info-Requests, RTRs, keepalives, everything through the RTR.
    "nat-xtr": """
[daemon]
name = "xtr3"
roles = ["itr", "etr"]
control-socket = ""
[underlay]
rlocs = ["10.0.0.2"]
[[database-mapping]]
eid-prefix = "198.51.100.48/28"
rlocs = [{ address = "10.0.0.2" }]
[[map-cache]]
eid-prefix = "198.51.100.16/28"
rlocs = [{ address = "192.0.2.6" }]
[[map-cache]]
eid-prefix = "0.0.0.0/0"
action = "send-map-request"
[[map-server]]
address = "192.0.2.10"
key = "key-site-c"
[[map-resolver]]
address = "192.0.2.10"
[nat-traversal]
enabled = true
info-interval = 5
keepalive-interval = 1
[probing]
interval = 1
timeout = 1
""",
}

ROLES: tuple[str, ...] = tuple(ROLE_CONFIGS)

# Where traffic to each role comes from: its peers first, then anyone.
PEERS: dict[str, tuple[IPv4Address | IPv6Address, ...]] = {
    "xtr": (MS_V4, MS_V6, REMOTE_V4, REMOTE_V6, RTR_V4, RTR_V6, PETR_V4, NAT_GLOBAL_V4),
    "rtr": (NAT_GLOBAL_V4, REMOTE_V4, REMOTE_V6, XTR_V4, XTR_V6, MS_V4, PETR_V4),
    "msmr": (XTR_V4, XTR_V6, REMOTE_V4, RTR_V4, NAT_GLOBAL_V4, PETR_V4, MS_V6),
    "pxtr": (MS_V4, REMOTE_V4, REMOTE_V6, XTR_V4, RTR_V4, RTR_V6),
    "nat-xtr": (MS_V4, RTR_V4, RTR_PUBLIC_V4, REMOTE_V4),
}
STRANGERS: tuple[str, ...] = (
    "0.0.0.0",
    "255.255.255.255",
    "127.0.0.1",
    "198.51.100.2",  # an EID as an outer source
    "::",
    "::1",
    "::ffff:192.0.2.6",
    "fe80::1%eth0",  # what recvmsg reports for a link-local source
    "ff02::1",
)
