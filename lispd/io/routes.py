"""Kernel routes for remote EID-prefixes pointed at the TUN device (pyroute2), removed on exit.

pyroute2 0.9 runs its own asyncio loop under the synchronous API, which cannot run inside the
daemon's loop (and uvloop has no netlink sockets), so every netlink call is made on one worker
thread that owns the IPRoute object.  Route changes are rare (start-up and mapping changes);
the packet path never waits for them.
"""

from __future__ import annotations

import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Network, IPv6Network
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

log = logging.getLogger("lispd.io.routes")


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

    def add(self, prefix: IPv4Network | IPv6Network) -> None:
        """Route ``prefix`` to the TUN (replacing any route to the same prefix)."""
        family = socket.AF_INET if prefix.version == 4 else socket.AF_INET6
        self._call(
            self.ipr.route, "replace", dst=str(prefix), oif=self.ifindex, family=family, proto=4
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
