"""``offloads = "auto"``'s check of the ways out (:mod:`lispd.io.egress`): UDP GSO bursts only
when every interface up cuts them before the wire."""

from __future__ import annotations

from lispd.io.egress import Link, check_links, cuts_bursts, describe, read_links

NIC = Link("eth0", None, "pci", True)  # hardware with UDP segmentation: it cuts the bursts
VIRTIO_OFF = Link("eth1", None, "virtio", False)  # the guest's kernel cuts them
VIRTIO_ON = Link("eth2", None, "virtio", True)  # the host gets them whole
VIRTIO_UNKNOWN = Link("eth3", None, "vmbus", None)
VETH = Link("to-r", "veth", None, None)
BRIDGE = Link("br0", "bridge", None, None)
NO_DEVICE = Link("odd0", None, None, None)


def test_which_interfaces_cut_bursts() -> None:
    assert cuts_bursts(NIC) and cuts_bursts(VIRTIO_OFF)
    for link in (VIRTIO_ON, VIRTIO_UNKNOWN, VETH, BRIDGE, NO_DEVICE):
        assert not cuts_bursts(link), link


def test_every_way_out_must_cut_them() -> None:
    safe = check_links([NIC, VIRTIO_OFF])
    assert safe.safe
    assert safe.reason == (
        "every way out is a card: eth0 (pci), eth1 (virtio, UDP segmentation off)"
    )
    mixed = check_links([NIC, VETH, VIRTIO_ON, VIRTIO_UNKNOWN])
    assert not mixed.safe
    assert mixed.reason == (
        "bursts would leave whole by to-r (veth), eth2 (virtio, UDP segmentation on), "
        "eth3 (vmbus, UDP segmentation unknown)"
    )
    assert not check_links([]).safe
    assert describe(NO_DEVICE) == "odd0 (no device)"


def test_read_links_leaves_out_loopback_and_the_excluded() -> None:
    links = read_links(exclude=["no-such-interface"])
    names = [link.name for link in links]
    assert "lo" not in names and "no-such-interface" not in names
    for link in links:  # whatever this machine has, each is described
        assert describe(link).startswith(link.name)
    assert read_links(exclude=names) == []
