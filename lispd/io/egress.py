"""Whether UDP GSO bursts can leave this host whole: ``[dataplane] offloads = "auto"``'s check.

A UDP GSO burst is one packet of up to 64 KB that the kernel cuts into datagrams as late as it
can: just before it hands the burst to a device that does not offer UDP segmentation
(``tx-udp-segmentation`` off), whatever the device.  A network card cuts it before the wire:
in hardware when it offers UDP segmentation, else the kernel does it in software just before
the driver.  A virtual device that offers it (veth, bridge, tun, ... do by default) hands the
burst on as it is, so the next namespace or guest gets one oversized packet, which a receiver
reading 4341 by raw socket or pcap (Open Overlay Router, lispers.net) takes for a single LISP
packet.  A paravirtual card that offers it (virtio-net with the host's USO) hands it to its
host, which may pass it whole to another guest.

So bursts are safe when every interface the data could leave by cuts them: it has UDP
segmentation off (any kind of device: ``ethtool -K to-r tx-udp-segmentation off`` on a
container's veth makes the kernel cut the bursts before it), or it is a PCI card (real hardware
or a passed-through function: it sits on a bus and is no link kind of the kernel's).  A VLAN,
bond, team or bridge with UDP segmentation on only hands what it sends to the devices under it
(the VLAN's lower device, the bond's or bridge's ports), so it cuts bursts when all of those
do: a router's ``eth0.100`` or ``bond0`` of two cards keeps the bursts.  A macvlan or ipvlan
does not count as one of these: it delivers straight to its siblings on the same host.  The
interfaces are those up in lispd's own network namespace, but loopback and lispd's TUN, read
through netlink (``/sys/class/net`` may show another namespace's).  Checked at start and again
every few seconds (:meth:`lispd.daemon.Daemon._watch_egress`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from lispd.logfmt import kv

log = logging.getLogger("lispd.io")

IFF_UP = 0x1
HARDWARE_BUS = "pci"
PASSES_DOWN = frozenset({"vlan", "bond", "team", "bridge"})
"""Link kinds that send only through the devices under them."""
MAX_DEPTH = 8
"""How deep devices under devices are followed (a VLAN on a bond on cards is 2)."""


@dataclass(frozen=True, slots=True)
class Link:
    """What the check needs of one interface."""

    name: str
    kind: str | None  # the kernel's link kind (veth, bridge, tun, vlan, ...): None for a card
    bus: str | None  # the bus of the device behind it (pci, virtio, vmbus, ...): None if none
    udp_segmentation: bool | None  # tx-udp-segmentation enabled; None: unknown
    below: tuple[Link, ...] = ()  # a VLAN's lower device, a bond's or bridge's ports

    @property
    def card(self) -> bool:
        """A network card: a device on a bus, no link kind of the kernel's."""
        return self.kind is None and self.bus is not None

    @property
    def pci_card(self) -> bool:
        """A card on the PCI bus (hardware or a passed-through function): it cuts bursts."""
        return self.card and self.bus == HARDWARE_BUS

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
    """``eth0 (pci)``, ``to-r (veth, UDP segmentation on)``, ``to-r (veth, UDP segmentation
    off)``, ``eth1 (virtio, UDP segmentation unknown)``, ``eth0.100 (vlan on eth0 (pci))``,
    ``bond0 (bond of eth1 (pci), eth2 (pci))``."""
    what = link.kind or link.bus or "no device"
    if link.udp_segmentation is False:
        return f"{link.name} ({what}, UDP segmentation off)"
    if link.kind in PASSES_DOWN:
        how = "on" if link.kind == "vlan" else "of"
        under = ", ".join(map(describe, link.below)) or "nothing"
        return f"{link.name} ({link.kind} {how} {under})"
    if link.pci_card:
        return f"{link.name} ({link.bus})"
    state = {True: "on", False: "off", None: "unknown"}[link.udp_segmentation]
    return f"{link.name} ({what}, UDP segmentation {state})"


def cuts_bursts(link: Link) -> bool:
    """Whether a UDP GSO burst sent through ``link`` reaches the wire as datagrams."""
    if link.udp_segmentation is False:
        return True  # the kernel cuts it before handing it to the device
    if link.kind in PASSES_DOWN:  # as the devices under it do; with none, it goes nowhere known
        return bool(link.below) and all(map(cuts_bursts, link.below))
    return link.pci_card  # the card cuts it, or the kernel just before its driver


def check_links(links: Iterable[Link]) -> BurstCheck:
    """The verdict over the interfaces data may leave by (see the module docstring)."""
    links = list(links)
    if not links:
        return BurstCheck(False, "no interface up but loopback and the TUN")
    whole = [link for link in links if not cuts_bursts(link)]
    if whole:
        return BurstCheck(False, "bursts would leave whole by " + ", ".join(map(describe, whole)))
    return BurstCheck(True, "every way out cuts them: " + ", ".join(map(describe, links)))


@dataclass(frozen=True, slots=True)
class LinkRecord:
    """One interface as netlink lists it: what :func:`assemble` builds :class:`Link` from."""

    index: int
    name: str
    up: bool
    kind: str | None
    bus: str | None
    lower: int | None = None  # IFLA_LINK: a VLAN's lower device (None when in another namespace)
    master: int | None = None  # IFLA_MASTER: the bond, team or bridge it is a port of
    udp_segmentation: bool | None = None


def assemble(
    records: Iterable[LinkRecord],
    exclude: Iterable[str],
    segmentation: Callable[[LinkRecord], bool | None] | None = None,
) -> list[Link]:
    """The interfaces up but loopback and ``exclude``, each with the devices under it;
    ``segmentation`` gives the UDP segmentation flag of a device the verdict needs it for
    (every one but a PCI card), else the record's own is used."""
    records = list(records)
    by_index = {r.index: r for r in records}
    ports: dict[int, list[LinkRecord]] = {}
    for r in records:
        if r.master is not None:
            ports.setdefault(r.master, []).append(r)

    flags: dict[int, bool | None] = {}  # asked once per device, however often it appears

    def flag_of(r: LinkRecord) -> bool | None:
        if segmentation is None or Link(r.name, r.kind, r.bus, None).pci_card:
            return r.udp_segmentation
        if r.index not in flags:
            flags[r.index] = segmentation(r)
        return flags[r.index]

    def build(r: LinkRecord, depth: int) -> Link:
        below: list[LinkRecord] = []
        if r.kind in PASSES_DOWN and depth < MAX_DEPTH:
            if r.kind == "vlan":
                lower = by_index.get(r.lower) if r.lower is not None else None
                below = [lower] if lower is not None else []
            else:
                below = ports.get(r.index, [])
        under = tuple(build(b, depth + 1) for b in below)
        return Link(r.name, r.kind, r.bus, flag_of(r), under)

    skip = {"lo", *exclude}
    return [build(r, 0) for r in records if r.up and r.name not in skip]


def read_links(exclude: Iterable[str]) -> list[Link]:
    """The interfaces up in this network namespace but loopback and ``exclude``, with the
    devices under each (netlink; ethtool over netlink for the UDP segmentation flags, asked
    only of the devices the verdict depends on)."""
    from pyroute2 import IPRoute
    from pyroute2.ethtool import Ethtool

    records = []
    with IPRoute() as ipr:
        for msg in ipr.get_links():
            info = msg.get_attr("IFLA_LINKINFO")
            in_other_namespace = msg.get_attr("IFLA_LINK_NETNSID") is not None
            records.append(
                LinkRecord(
                    index=msg["index"],
                    name=msg.get_attr("IFLA_IFNAME"),
                    up=bool(msg["flags"] & IFF_UP),
                    kind=info.get_attr("IFLA_INFO_KIND") if info is not None else None,
                    bus=msg.get_attr("IFLA_PARENT_DEV_BUS_NAME"),
                    lower=None if in_other_namespace else msg.get_attr("IFLA_LINK"),
                    master=msg.get_attr("IFLA_MASTER"),
                )
            )
    tools: list[Any] = []  # the ethtool socket, opened at the first question

    def segmentation(r: LinkRecord) -> bool | None:
        if not tools:
            tools.append(Ethtool())
        try:
            features = tools[0].get_features(r.name).features
            return bool(features["tx-udp-segmentation"].enable)
        except Exception:  # an old kernel or a driver without the feature list: unknown
            return None

    try:
        return assemble(records, exclude, segmentation)
    finally:
        for tool in tools:
            tool.close()


def udp_bursts_safe(tun_name: str | None) -> BurstCheck:
    """:func:`check_links` over this namespace's interfaces (a failure to read them: not
    safe, with the reason)."""
    try:
        links = read_links([tun_name] if tun_name else [])
    except Exception as exc:  # netlink unavailable: keep the separate datagrams
        log.warning("cannot list the interfaces for UDP GSO %s", kv(error=exc))
        return BurstCheck(False, f"interfaces unreadable: {exc}")
    return check_links(links)
