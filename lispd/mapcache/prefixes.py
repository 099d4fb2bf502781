"""Address and prefix normalisation shared by the map-cache tables.

Everything a table stores is keyed by a stdlib ``ipaddress`` network; everything it looks up may
be a packed 4/16-byte string (the fast path hands raw header bytes), an ``ipaddress`` address or,
for convenience in the control plane and tests, text.  The helpers here turn those into the one
form a table needs and reject the rest with ``TypeError`` (wrong kind of object) or
``ValueError`` (right kind, bad value).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Final, TypeAlias

Network: TypeAlias = IPv4Network | IPv6Network
"""An EID-prefix as stored in the tables."""

Address: TypeAlias = IPv4Address | IPv6Address
"""A single address as an ``ipaddress`` object."""

PrefixLike: TypeAlias = Network | str
"""What the table APIs accept as a prefix: a network object or ``"a.b.c.d/n"`` text."""

AddressLike: TypeAlias = bytes | bytearray | memoryview | Address | str
"""What lookups accept: packed 4/16 bytes (the fast path), an address object, or text."""

FAMILIES: Final = (4, 6)
"""Address families as the tables name them (the ``version`` of ``ipaddress`` objects)."""

MAX_IID: Final = (1 << 24) - 1
"""Largest LISP instance-ID (24 bits, RFC 8060 Instance ID LCAF)."""


def family_bits(family: int) -> int:
    """Address length in bits of ``family`` (4 -> 32, 6 -> 128); ValueError for others."""
    if family == 4:
        return 32
    if family == 6:
        return 128
    raise ValueError(f"address family must be 4 or 6, not {family!r}")


def prefix_masks(bits: int) -> tuple[int, ...]:
    """Netmasks as integers for every prefix length 0..``bits`` (index = prefix length)."""
    ones = (1 << bits) - 1
    return tuple(ones ^ (ones >> plen) for plen in range(bits + 1))


def to_network(prefix: PrefixLike) -> Network:
    """Return ``prefix`` as a network object.

    Text is parsed strictly: ``"192.0.2.1/24"`` (host bits set) raises ValueError, so a typo in a
    configuration or a command cannot silently name another prefix.
    """
    if isinstance(prefix, IPv4Network | IPv6Network):
        return prefix
    if isinstance(prefix, str):
        return ip_network(prefix)
    raise TypeError(f"a prefix is an IPv4Network, IPv6Network or str, not {type(prefix).__name__}")


def to_address(address: Address | str) -> Address:
    """Return ``address`` as an address object (text is parsed)."""
    if isinstance(address, IPv4Address | IPv6Address):
        return address
    if isinstance(address, str):
        return ip_address(address)
    raise TypeError(
        f"an address is an IPv4Address, IPv6Address or str, not {type(address).__name__}"
    )


def address_family(address: AddressLike) -> int:
    """Family (4 or 6) of a lookup key: from the length of packed bytes, else the object."""
    if isinstance(address, bytes | bytearray | memoryview):
        n = len(address) if not isinstance(address, memoryview) else address.nbytes
        if n == 4:
            return 4
        if n == 16:
            return 6
        raise ValueError(f"a packed address is 4 or 16 bytes, not {n}")
    return to_address(address).version


def check_iid(iid: int) -> int:
    """Return ``iid`` if it is a valid 24-bit instance-ID, else raise ValueError/TypeError."""
    if not isinstance(iid, int) or isinstance(iid, bool):
        raise TypeError(f"an instance-ID is an int, not {type(iid).__name__}")
    if not 0 <= iid <= MAX_IID:
        raise ValueError(f"instance-ID {iid} is outside 0..{MAX_IID}")
    return iid
