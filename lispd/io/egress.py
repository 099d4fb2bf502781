"""Whether UDP GSO bursts can leave this host whole: ``[dataplane] offloads = "auto"``'s check.

A UDP GSO burst is one packet of up to 64 KB that the kernel cuts into datagrams as late as it
can.  A network card cuts it before the wire: in hardware when it offers UDP segmentation, else
the kernel does it in software just before the driver.  A virtual device (veth, bridge, tun,
VLAN, bond, ...) hands the burst on as it is, so the next namespace or guest gets one oversized
packet, which a receiver reading 4341 by raw socket or pcap (Open Overlay Router, lispers.net)
takes for a single LISP packet.  A paravirtual card that offers UDP segmentation (virtio-net
with the host's USO) hands it to its host, which may pass it whole to another guest.

So bursts are safe when every interface the data could leave by is a card: it sits on a bus
and is no link kind of the kernel's, and it is a PCI device (real hardware or a passed-through
function) or has UDP segmentation off (the kernel cuts bursts before it).  The interfaces are
those up in lispd's own network namespace, but loopback and lispd's TUN, read through netlink
(``/sys/class/net`` may show another namespace's).  Checked once, at start.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from lispd.logfmt import kv

log = logging.getLogger("lispd.io")

IFF_UP = 0x1
HARDWARE_BUS = "pci"


@dataclass(frozen=True, slots=True)
class Link:
    """What the check needs of one interface."""

    name: str
    kind: str | None  # the kernel's link kind (veth, bridge, tun, vlan, ...): None for a card
    bus: str | None  # the bus of the device behind it (pci, virtio, vmbus, ...): None if none
    udp_segmentation: bool | None  # tx-udp-segmentation enabled; None: unknown

    @property
    def card(self) -> bool:
        """A network card: a device on a bus, no link kind of the kernel's."""
        return self.kind is None and self.bus is not None

    @property
    def paravirtual(self) -> bool:
        """A card that is not PCI hardware (virtio, vmbus, ...): it may hand a burst to its
        host whole unless its UDP segmentation is off."""
        return self.card and self.bus != HARDWARE_BUS


@dataclass(frozen=True, slots=True)
class BurstCheck:
    """The verdict, and the interfaces that made it (for the log and ``show stats``)."""

    safe: bool
    reason: str


def describe(link: Link) -> str:
    """``eth0 (pci)``, ``to-r (veth)``, ``eth1 (virtio, UDP segmentation on)``."""
    if not link.card:
        return f"{link.name} ({link.kind or 'no device'})"
    if not link.paravirtual:
        return f"{link.name} ({link.bus})"
    state = {True: "on", False: "off", None: "unknown"}[link.udp_segmentation]
    return f"{link.name} ({link.bus}, UDP segmentation {state})"


def cuts_bursts(link: Link) -> bool:
    """Whether a UDP GSO burst sent through ``link`` reaches the wire as datagrams."""
    if not link.card:
        return False  # a virtual device: the burst goes on whole
    return not link.paravirtual or link.udp_segmentation is False


def check_links(links: Iterable[Link]) -> BurstCheck:
    """The verdict over the interfaces data may leave by (see the module docstring)."""
    links = list(links)
    if not links:
        return BurstCheck(False, "no interface up but loopback and the TUN")
    whole = [link for link in links if not cuts_bursts(link)]
    if whole:
        return BurstCheck(False, "bursts would leave whole by " + ", ".join(map(describe, whole)))
    return BurstCheck(True, "every way out is a card: " + ", ".join(map(describe, links)))


def read_links(exclude: Iterable[str]) -> list[Link]:
    """The interfaces up in this network namespace but loopback and ``exclude`` (netlink,
    ethtool over netlink for the UDP segmentation flag)."""
    from pyroute2 import IPRoute
    from pyroute2.ethtool import Ethtool

    skip = {"lo", *exclude}
    links = []
    with IPRoute() as ipr:
        for msg in ipr.get_links():
            name = msg.get_attr("IFLA_IFNAME")
            if name in skip or not msg["flags"] & IFF_UP:
                continue
            info = msg.get_attr("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
            bus = msg.get_attr("IFLA_PARENT_DEV_BUS_NAME")
            links.append(Link(name, kind, bus, None))
    if not any(link.paravirtual for link in links):
        return links
    ethtool = Ethtool()
    try:
        return [_with_segmentation(ethtool, link) for link in links]
    finally:
        ethtool.close()


def _with_segmentation(ethtool: object, link: Link) -> Link:
    if not link.paravirtual:
        return link
    try:
        features = ethtool.get_features(link.name).features  # type: ignore[attr-defined]
        enabled = bool(features["tx-udp-segmentation"].enable)
    except Exception:  # an old kernel or a driver without the feature list: unknown
        return link
    return Link(link.name, link.kind, link.bus, enabled)


def udp_bursts_safe(tun_name: str | None) -> BurstCheck:
    """:func:`check_links` over this namespace's interfaces (a failure to read them: not
    safe, with the reason)."""
    try:
        links = read_links([tun_name] if tun_name else [])
    except Exception as exc:  # netlink unavailable: keep the separate datagrams
        log.warning("cannot list the interfaces for UDP GSO %s", kv(error=exc))
        return BurstCheck(False, f"interfaces unreadable: {exc}")
    return check_links(links)
