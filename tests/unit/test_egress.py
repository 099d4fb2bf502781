"""``offloads = "auto"``'s check of the ways out (:mod:`lispd.io.egress`): UDP GSO bursts only
when every interface up cuts them before the wire: one with UDP segmentation off (the kernel cuts
them before it), a PCI card, a VLAN, bond or bridge as the devices under it do."""

from __future__ import annotations

from lispd.io.egress import (
    Link,
    LinkRecord,
    assemble,
    check_links,
    cuts_bursts,
    describe,
    read_links,
)

NIC = Link("eth0", None, "pci", True)  # hardware with UDP segmentation: it cuts the bursts
VIRTIO_OFF = Link("eth1", None, "virtio", False)  # the guest's kernel cuts them
VIRTIO_ON = Link("eth2", None, "virtio", True)  # the host gets them whole
VIRTIO_UNKNOWN = Link("eth3", None, "vmbus", None)
VETH = Link("to-r", "veth", None, True)
VETH_CUT = Link("to-r", "veth", None, False)  # ethtool -K to-r tx-udp-segmentation off
BRIDGE = Link("br0", "bridge", None, None)
NO_DEVICE = Link("odd0", None, None, None)


def test_which_interfaces_cut_bursts() -> None:
    assert cuts_bursts(NIC) and cuts_bursts(VIRTIO_OFF) and cuts_bursts(VETH_CUT)
    for link in (VIRTIO_ON, VIRTIO_UNKNOWN, VETH, BRIDGE, NO_DEVICE):
        assert not cuts_bursts(link), link


def test_every_way_out_must_cut_them() -> None:
    safe = check_links([NIC, VIRTIO_OFF])
    assert safe.safe
    assert safe.reason == (
        "every way out cuts them: eth0 (pci), eth1 (virtio, UDP segmentation off)"
    )
    mixed = check_links([NIC, VETH, VIRTIO_ON, VIRTIO_UNKNOWN])
    assert not mixed.safe
    assert mixed.reason == (
        "bursts would leave whole by to-r (veth, UDP segmentation on), eth2 (virtio, UDP "
        "segmentation on), "
        "eth3 (vmbus, UDP segmentation unknown)"
    )
    assert not check_links([]).safe
    assert describe(NO_DEVICE) == "odd0 (no device, UDP segmentation unknown)"
    assert check_links([VETH_CUT]).reason == (
        "every way out cuts them: to-r (veth, UDP segmentation off)"
    )


def test_read_links_leaves_out_loopback_and_the_excluded() -> None:
    links = read_links(exclude=["no-such-interface"])
    names = [link.name for link in links]
    assert "lo" not in names and "no-such-interface" not in names
    for link in links:  # whatever this machine has, each is described
        assert describe(link).startswith(link.name)
    assert read_links(exclude=names) == []


def test_vlans_bonds_and_bridges_cut_bursts_as_the_devices_under_them() -> None:
    vlan_on_nic = Link("eth0.100", "vlan", None, None, (NIC,))
    bond_of_cards = Link("bond0", "bond", None, None, (NIC, VIRTIO_OFF))
    vlan_on_bond = Link("bond0.7", "vlan", None, None, (bond_of_cards,))
    for link in (vlan_on_nic, bond_of_cards, vlan_on_bond):
        assert cuts_bursts(link), link
    bridge_with_veth = Link("br0", "bridge", None, None, (NIC, VETH))
    vlan_on_veth = Link("to-r.5", "vlan", None, None, (VETH,))
    bond_of_virtio_on = Link("bond1", "bond", None, None, (VIRTIO_ON,))
    lonely_bridge = Link("br1", "bridge", None, None, ())
    macvlan = Link("mv0", "macvlan", None, None, (NIC,))  # its siblings get bursts whole
    for link in (bridge_with_veth, vlan_on_veth, bond_of_virtio_on, lonely_bridge, macvlan):
        assert not cuts_bursts(link), link
    assert describe(vlan_on_bond) == (
        "bond0.7 (vlan on bond0 (bond of eth0 (pci), eth1 (virtio, UDP segmentation off)))"
    )
    assert describe(lonely_bridge) == "br1 (bridge of nothing)"
    bridge_cut = Link("br0", "bridge", None, False, (VETH,))  # the kernel cuts before the bridge
    assert cuts_bursts(bridge_cut) and describe(bridge_cut) == "br0 (bridge, UDP segmentation off)"
    assert check_links([NIC, vlan_on_nic]).reason == (
        "every way out cuts them: eth0 (pci), eth0.100 (vlan on eth0 (pci))"
    )
    assert check_links([NIC, bridge_with_veth]).reason == (
        "bursts would leave whole by br0 (bridge of eth0 (pci), to-r (veth, UDP segmentation on))"
    )


def test_assemble_puts_lower_devices_and_ports_under_their_links() -> None:
    records = [
        LinkRecord(1, "lo", True, None, None),
        LinkRecord(2, "eth0", True, None, "pci", lower=2, master=5),
        LinkRecord(3, "eth1", True, None, "virtio", lower=3, master=5, udp_segmentation=False),
        LinkRecord(4, "eth2", False, None, "pci"),  # down: not a way out
        LinkRecord(5, "bond0", True, "bond", None),
        LinkRecord(6, "bond0.100", True, "vlan", None, lower=5),
        LinkRecord(7, "vx0", True, "vlan", None, lower=None),  # lower device elsewhere
        LinkRecord(8, "lisp0", True, "tun", None),
    ]
    links = {link.name: link for link in assemble(records, exclude=["lisp0"])}
    assert sorted(links) == ["bond0", "bond0.100", "eth0", "eth1", "vx0"]
    assert [b.name for b in links["bond0"].below] == ["eth0", "eth1"]
    assert links["bond0.100"].below == (links["bond0"],)
    assert links["eth1"].udp_segmentation is False
    assert not check_links(links.values()).safe  # vx0: a VLAN on nothing known
    del links["vx0"]
    assert check_links(links.values()).safe


def test_a_loop_of_lower_devices_ends() -> None:
    records = [
        LinkRecord(1, "a", True, "vlan", None, lower=2),
        LinkRecord(2, "b", True, "vlan", None, lower=1),
    ]
    assert not check_links(assemble(records, exclude=[])).safe


def test_only_the_devices_the_verdict_depends_on_are_asked_for_their_flag() -> None:
    records = [
        LinkRecord(1, "lo", True, None, None),
        LinkRecord(2, "eth0", True, None, "pci"),  # a PCI card: no question
        LinkRecord(3, "eth1", True, None, "virtio", master=5),
        LinkRecord(4, "eth9", False, None, "virtio"),  # down, no port of anything
        LinkRecord(5, "br0", True, "bridge", None),
        LinkRecord(6, "lisp0", True, "tun", None),
    ]
    asked: list[str] = []

    def segmentation(r: LinkRecord) -> bool | None:
        asked.append(r.name)
        return r.name == "br0"  # the bridge offers it, its virtio port does not

    links = assemble(records, exclude=["lisp0"], segmentation=segmentation)
    assert sorted(asked) == ["br0", "eth1"]  # once each: eth1 is a way out and a port
    assert check_links(links).safe  # eth0 a PCI card, br0 over eth1 without segmentation
    assert [describe(link) for link in links] == [
        "eth0 (pci)",
        "eth1 (virtio, UDP segmentation off)",
        "br0 (bridge of eth1 (virtio, UDP segmentation off))",
    ]
