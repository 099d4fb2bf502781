"""The role configurations the entry-point fuzz harness runs the daemon as, and the addresses of
the small world they live in (peers, EID-prefixes), which the seeds are built from.

One world for every role, so that one seed makes sense to each: the xTR's site, a remote site
with a static mapping, EID space resolved through the Map-Resolver, a native-forward prefix,
a dropped prefix, an RTR, a PETR and an MS/MR.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

from tests import configs

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

MS_RTR_KEY = "key-ms-rtr"
SITE_KEYS = {"site-a": "key-site-a", "site-b": "key-site-b", "site-c": "key-site-c"}


def _a(*addresses: IPv4Address | IPv6Address) -> tuple[str, ...]:
    return tuple(str(a) for a in addresses)


def _probing(interval: float, timeout: float) -> dict[str, float]:
    return {"interval": interval, "timeout": timeout}


ROLE_CONFIGS: dict[str, str] = {
    # ITR + ETR of site-a: static, drop, native-forward (to a PETR) and send-map-request
    # map-cache entries, an ELP, two instances, registration, resolution, RLOC probing.
    "xtr": configs.toml(
        configs.xtr(
            "xtr1",
            _a(XTR_V4, XTR_V6),
            underlay={"mtu": 1500},
            database_mapping=[
                configs.mapping("198.51.100.0/28", *_a(XTR_V4, XTR_V6)),
                configs.mapping("198.51.100.0/28", str(XTR_V4), instance_id=7),
                configs.mapping("2001:db8:100:1::/64", {"elp": _a(RTR_V6, XTR_V6)}),
            ],
            map_cache=[
                configs.mapping(
                    "198.51.100.16/28",
                    {"address": str(REMOTE_V4), "weight": 50},
                    {"elp": _a(RTR_V6, REMOTE_V6), "weight": 50},
                ),
                configs.mapping("2001:db8:100:2::/64", str(REMOTE_V6)),
                configs.negative("198.51.100.32/28", "drop"),
                configs.negative("203.0.113.0/24", "native-forward"),
                configs.resolve("198.51.100.0/24"),
                configs.resolve("198.51.100.0/24", instance_id=7),
                configs.resolve("2001:db8:100::/48"),
            ],
            map_server=[
                configs.map_server(str(MS_V4), SITE_KEYS["site-a"]),
                configs.map_server(str(MS_V6), SITE_KEYS["site-a"], key_id=1),
            ],
            map_resolver=configs.addresses(*_a(MS_V4, MS_V6)),
            petr=configs.addresses(str(PETR_V4)),
            probing=_probing(10, 3),
        )
    ),
    # An RTR with a public RLOC behind a 1:1 NAT, resolving through the MR, with a PETR.
    "rtr": configs.toml(
        configs.rtr(
            "rtr1",
            _a(RTR_V4, RTR_V6),
            rtr={
                "public-rlocs": _a(RTR_PUBLIC_V4),
                "nat-binding-timeout": 120,
                "max-nat-bindings": 1000,
                "ms-rtr-key": MS_RTR_KEY,  # draft-style NAT traversal: ECM'd Map-Registers
            },
            map_cache=[configs.mapping("198.51.100.16/28", str(REMOTE_V4))],
            map_resolver=configs.addresses(str(MS_V4)),
            petr=configs.addresses(str(PETR_V4)),
            probing=_probing(10, 3),
        )
    ),
    # Map-Server and Map-Resolver of three sites, telling NATed xTRs about the RTR.
    "msmr": configs.toml(
        configs.msmr(
            "msmr1",
            _a(MS_V4, MS_V6),
            (
                configs.site(
                    "site-a",
                    SITE_KEYS["site-a"],
                    "198.51.100.0/28",
                    {"eid-prefix": "198.51.100.0/28", "instance-id": 7},
                    "2001:db8:100:1::/64",
                ),
                configs.site(
                    "site-b",
                    SITE_KEYS["site-b"],
                    {"eid-prefix": "198.51.100.16/28", "accept-more-specifics": True},
                    {"eid-prefix": "2001:db8:100:2::/64", "accept-more-specifics": True},
                ),
                configs.site("site-c", SITE_KEYS["site-c"], "198.51.100.48/28"),
            ),
            mapping_system={
                "registration-timeout": 180,
                "negative-ttl": 15,
                "rtr-rlocs": _a(RTR_V4),
                "ms-rtr-key": MS_RTR_KEY,  # R-bit Map-Registers from the RTR get signed notifies
            },
        )
    ),
    # LISP-DDT in one node: a DDT node for everything (delegating to the remote site's node
    # and to itself as Map-Server), the Map-Server of site-a (a DDT leaf) and a DDT
    # Map-Resolver walking from the remote node as root.
    "ddt": configs.toml(
        configs.msmr(
            "ddt1",
            _a(MS_V4, MS_V6),
            (
                configs.site(
                    "site-a", SITE_KEYS["site-a"], "198.51.100.0/28", "2001:db8:100:1::/64"
                ),
            ),
            roles=["map-server", "map-resolver", "ddt-node"],
            ddt={"roots": _a(REMOTE_V4, REMOTE_V6), "request-timeout": 0.5, "max-pending": 50},
            ddt_authority=[{"eid-prefix": "0.0.0.0/0"}, {"eid-prefix": "::/0"}],
            ddt_delegation=[
                {"eid-prefix": "198.51.100.0/28", "kind": "map-server", "referrals": _a(MS_V4)},
                {"eid-prefix": "198.51.100.64/26", "kind": "ddt-node", "referrals": _a(REMOTE_V4)},
                {
                    "eid-prefix": "2001:db8:100::/48",
                    "kind": "ddt-node",
                    "referrals": _a(REMOTE_V6, MS_V6),
                },
            ],
        )
    ),
    # A proxy ITR and ETR: encapsulates for non-LISP sources, decapsulates for anywhere.
    "pxtr": configs.toml(
        configs.pxtr(
            "pxtr1",
            _a(PETR_V4, PETR_V6),
            map_cache=[
                configs.mapping("198.51.100.16/28", str(REMOTE_V4)),
                configs.resolve("198.51.100.0/24"),
                configs.resolve("2001:db8:100::/48"),
            ],
            map_resolvers=_a(MS_V4),
            probing=_probing(10, 3),
        )
    ),
    # site-c's xTR behind a NAT: Info-Requests, RTRs, keepalives, everything through the RTR.
    "nat-xtr": configs.toml(
        configs.xtr(
            "xtr3",
            _a(NAT_XTR_V4),
            ("198.51.100.48/28",),
            map_cache=[
                configs.mapping("198.51.100.16/28", str(REMOTE_V4)),
                configs.resolve("0.0.0.0/0"),
            ],
            map_server=[configs.map_server(str(MS_V4), SITE_KEYS["site-c"])],
            map_resolver=configs.addresses(str(MS_V4)),
            nat_traversal={"enabled": True, "info-interval": 5, "keepalive-interval": 1},
            probing=_probing(1, 1),
        )
    ),
}

ROLES: tuple[str, ...] = tuple(ROLE_CONFIGS)

# Where traffic to each role comes from: its peers first, then anyone.
PEERS: dict[str, tuple[IPv4Address | IPv6Address, ...]] = {
    "xtr": (MS_V4, MS_V6, REMOTE_V4, REMOTE_V6, RTR_V4, RTR_V6, PETR_V4, NAT_GLOBAL_V4),
    "rtr": (NAT_GLOBAL_V4, REMOTE_V4, REMOTE_V6, XTR_V4, XTR_V6, MS_V4, PETR_V4),
    "msmr": (XTR_V4, XTR_V6, REMOTE_V4, RTR_V4, NAT_GLOBAL_V4, PETR_V4, MS_V6),
    "pxtr": (MS_V4, REMOTE_V4, REMOTE_V6, XTR_V4, RTR_V4, RTR_V6),
    "ddt": (REMOTE_V4, REMOTE_V6, XTR_V4, XTR_V6, PETR_V4, MS_V6),
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
