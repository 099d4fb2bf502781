"""Kernel routes for remote EID-prefixes pointed at the TUN device (pyroute2), removed on exit.

A TUN device lispd creates is not persistent: when the process dies, even by SIGKILL, the
kernel removes the device and every route through it, so nothing is left behind.  A device
that existed before (created persistent, ``ip tuntap add``, e.g. to hand it to an unprivileged
user) outlives the process with the routes of a killed run still pointing at it; so on such a
device the routes of ours (``proto static``, main table) found at start are removed first.

pyroute2 0.9 runs its own asyncio loop under the synchronous API, which cannot run inside the
daemon's loop (and uvloop has no netlink sockets), so every netlink call is made on one worker
thread that owns the IPRoute object.  Route changes are rare (start-up and mapping changes);
the packet path never waits for them.
"""

from __future__ import annotations

import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

log = logging.getLogger("lispd.io.routes")

RTPROT_STATIC = 4
"""The protocol of the routes this module installs (``proto static``)."""
RT_TABLE_MAIN = 254
IFF_PERSIST = 0x0800


def is_persistent_tun(ifname: str, sys_class_net: Path = Path("/sys/class/net")) -> bool:
    """Whether ``ifname`` is a persistent TUN/TAP device (it outlives the process holding it);
    False when it is not a TUN/TAP device or sysfs does not say."""
    try:
        flags = int((sys_class_net / ifname / "tun_flags").read_text().strip(), 16)
    except (OSError, ValueError):
        return False
    return bool(flags & IFF_PERSIST)


class RouteTable:
    """Routes this daemon installed, so that it removes exactly those."""

    def __init__(self, ifname: str) -> None:
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")
        self.ipr: IPRoute = self._call(IPRoute)
        links = self._call(self.ipr.link_lookup, ifname=ifname)
        if not links:
            raise OSError(f"no interface {ifname}")
        self.ifindex: int = links[0]
        self.installed: set[IPv4Network | IPv6Network] = set()
        if is_persistent_tun(ifname):
            self.remove_stale()

    def remove_stale(self) -> int:
        """Remove the routes of ours (``proto static``, main table) through the device that this
        instance did not install: leftovers of a previous run killed without clean-up.  Returns
        how many went."""
        removed = 0
        for family in (socket.AF_INET, socket.AF_INET6):
            for route in self._call(self.ipr.get_routes, family=family):
                table = route.get_attr("RTA_TABLE") or route["table"]
                if (
                    route.get_attr("RTA_OIF") != self.ifindex
                    or route["proto"] != RTPROT_STATIC
                    or table != RT_TABLE_MAIN
                ):
                    continue
                dst = route.get_attr("RTA_DST") or ("0.0.0.0" if family == socket.AF_INET else "::")
                prefix = ip_network(f"{dst}/{route['dst_len']}")
                if prefix in self.installed:
                    continue
                try:
                    self._call(
                        self.ipr.route, "del", dst=str(prefix), oif=self.ifindex, family=family
                    )
                except NetlinkError as exc:
                    log.debug("stale route del %s: %s", prefix, exc)
                    continue
                removed += 1
        if removed:
            log.info("removed stale routes count=%d ifindex=%d", removed, self.ifindex)
        return removed

    def add(self, prefix: IPv4Network | IPv6Network) -> None:
        """Route ``prefix`` to the TUN (replacing any route to the same prefix)."""
        family = socket.AF_INET if prefix.version == 4 else socket.AF_INET6
        self._call(
            self.ipr.route,
            "replace",
            dst=str(prefix),
            oif=self.ifindex,
            family=family,
            proto=RTPROT_STATIC,
        )
        self.installed.add(prefix)

    def remove(self, prefix: IPv4Network | IPv6Network) -> None:
        """Remove a route this daemon installed."""
        if prefix not in self.installed:
            return
        family = socket.AF_INET if prefix.version == 4 else socket.AF_INET6
        try:
            self._call(self.ipr.route, "del", dst=str(prefix), oif=self.ifindex, family=family)
        except NetlinkError as exc:
            log.debug("route del %s: %s", prefix, exc)
        self.installed.discard(prefix)

    def close(self) -> None:
        """Remove every installed route and close the netlink socket."""
        for prefix in sorted(self.installed, key=lambda p: (p.version, p)):
            self.remove(prefix)
        self._call(self.ipr.close)
        self._worker.shutdown()

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self._worker.submit(fn, *args, **kwargs).result()
