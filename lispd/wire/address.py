"""LISP addresses: AFI-encoded addresses and the LCAF types lispd speaks (RFC 8060).

On the wire every address is a 16-bit AFI followed by its bytes.  Decoded, an address is one of
the types in :data:`Address`: plain IPv4/IPv6 addresses are the stdlib ``ipaddress`` objects,
everything else a frozen dataclass below.  LCAF types lispd does not interpret are kept whole in
:class:`UnknownLcaf` (skipped by their length, never fatal) so they re-encode unchanged.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Union

from lispd.wire.errors import (
    BAD_AFI,
    BAD_LCAF,
    BAD_LCAF_LENGTH,
    BAD_MASK_LEN,
    EncodeError,
    WireError,
)
from lispd.wire.reader import Reader

AFI_NONE = 0
AFI_IPV4 = 1
AFI_IPV6 = 2
AFI_DISTINGUISHED_NAME = 17
AFI_LCAF = 16387
AFI_MAC = 16389  # 48-bit MAC, what lispd sends
AFI_802 = 6  # "802 media": also read as a 6-byte MAC

LCAF_AFI_LIST = 1
LCAF_INSTANCE_ID = 2
LCAF_NAT_TRAVERSAL = 7
LCAF_ELP = 10

# Nested LCAFs (an AFI-list holding an ELP holding ...) are legal but never deep in practice;
# the bound keeps a hostile packet from driving the decoder into deep recursion.
MAX_LCAF_NESTING = 8

_LCAF_HEADER = struct.Struct("!HBBBBH")  # AFI 16387, rsvd1, flags, type, rsvd2, length


@dataclass(frozen=True, slots=True)
class NoAddress:
    """AFI 0: the field is present but carries no address."""


NO_ADDRESS = NoAddress()


@dataclass(frozen=True, slots=True)
class DistinguishedName:
    """AFI 17: a NUL-terminated ASCII name (lispers.net sends host names this way)."""

    name: str


@dataclass(frozen=True, slots=True)
class MacAddress:
    """AFI 16389: a 48-bit MAC address."""

    mac: bytes

    def __post_init__(self) -> None:
        if len(self.mac) != 6:
            raise EncodeError("a MAC address is 6 bytes")

    def __str__(self) -> str:
        return ":".join(f"{b:02x}" for b in self.mac)


@dataclass(frozen=True, slots=True)
class InstanceIdAddress:
    """LCAF type 2: an address scoped to a 24-bit (32 on the wire) instance-ID."""

    iid: int
    address: Address
    iid_mask_len: int = 0

    def __str__(self) -> str:
        return f"[{self.iid}]{address_text(self.address)}"


@dataclass(frozen=True, slots=True)
class AfiListAddress:
    """LCAF type 1: several addresses of one node (e.g. an IPv4 and an IPv6 RLOC)."""

    addresses: tuple[Address, ...]


@dataclass(frozen=True, slots=True)
class NatTraversalAddress:
    """LCAF type 7, carried in Info-Replies: what the Map-Server saw of a (NATed) xTR."""

    ms_port: int
    etr_port: int
    global_etr_rloc: Address
    ms_rloc: Address
    private_etr_rloc: Address
    rtr_rlocs: tuple[Address, ...] = ()


@dataclass(frozen=True, slots=True)
class ElpHop:
    """One hop of an Explicit Locator Path with its L (lookup), P (probe), S (strict) bits."""

    address: Address
    lookup: bool = False
    probe: bool = False
    strict: bool = False


@dataclass(frozen=True, slots=True)
class ElpAddress:
    """LCAF type 10: an Explicit Locator Path, hops in forwarding order (LISP-TE)."""

    hops: tuple[ElpHop, ...]


@dataclass(frozen=True, slots=True)
class UnknownLcaf:
    """An LCAF type lispd does not interpret, kept verbatim."""

    lcaf_type: int
    body: bytes
    flags: int = 0
    rsvd1: int = 0
    rsvd2: int = 0


Address = Union[  # noqa: UP007 - a runtime alias used in isinstance-free annotations
    NoAddress,
    IPv4Address,
    IPv6Address,
    DistinguishedName,
    MacAddress,
    InstanceIdAddress,
    AfiListAddress,
    NatTraversalAddress,
    ElpAddress,
    UnknownLcaf,
]


# --- decoding ---------------------------------------------------------------------------------


def decode_address(r: Reader, depth: int = 0) -> Address:
    """Read one AFI-encoded address from ``r``."""
    afi = r.u16("afi")
    if afi == AFI_NONE:
        return NO_ADDRESS
    if afi == AFI_IPV4:
        return IPv4Address(r.take(4, "ipv4 address"))
    if afi == AFI_IPV6:
        return IPv6Address(r.take(16, "ipv6 address"))
    if afi == AFI_LCAF:
        return _decode_lcaf(r, depth)
    if afi == AFI_DISTINGUISHED_NAME:
        return _decode_name(r)
    if afi in (AFI_MAC, AFI_802):
        return MacAddress(r.take(6, "mac address"))
    raise WireError(BAD_AFI, f"unknown AFI {afi}")


def _decode_name(r: Reader) -> DistinguishedName:
    start = r.pos
    end = r.data.find(b"\x00", start, r.end)
    if end < 0:
        raise WireError(BAD_AFI, "distinguished name without NUL terminator")
    raw = r.take(end - start + 1, "distinguished name")[:-1]
    try:
        return DistinguishedName(raw.decode("ascii"))
    except UnicodeDecodeError:
        raise WireError(BAD_AFI, "distinguished name is not ASCII") from None


def _decode_lcaf(r: Reader, depth: int) -> Address:
    if depth >= MAX_LCAF_NESTING:
        raise WireError(BAD_LCAF, "LCAF nesting too deep")
    rsvd1 = r.u8("lcaf rsvd1")
    flags = r.u8("lcaf flags")
    lcaf_type = r.u8("lcaf type")
    rsvd2 = r.u8("lcaf rsvd2")
    length = r.u16("lcaf length")
    if length > r.remaining:
        raise WireError(BAD_LCAF_LENGTH, f"LCAF type {lcaf_type} length {length} > {r.remaining}")
    body = r.sub(length, "lcaf body")
    if lcaf_type == LCAF_INSTANCE_ID:
        iid = body.u32("instance-id")
        value: Address = InstanceIdAddress(iid, decode_address(body, depth + 1), rsvd2)
    elif lcaf_type == LCAF_AFI_LIST:
        items = []
        while body.remaining:
            items.append(decode_address(body, depth + 1))
        value = AfiListAddress(tuple(items))
    elif lcaf_type == LCAF_NAT_TRAVERSAL:
        ms_port = body.u16("nat ms port")
        etr_port = body.u16("nat etr port")
        global_rloc = decode_address(body, depth + 1)
        ms_rloc = decode_address(body, depth + 1)
        private_rloc = decode_address(body, depth + 1)
        rtrs = []
        while body.remaining:
            rtrs.append(decode_address(body, depth + 1))
        value = NatTraversalAddress(
            ms_port, etr_port, global_rloc, ms_rloc, private_rloc, tuple(rtrs)
        )
    elif lcaf_type == LCAF_ELP:
        hops = []
        while body.remaining:
            hop_flags = body.u16("elp hop flags")
            hops.append(
                ElpHop(
                    decode_address(body, depth + 1),
                    lookup=bool(hop_flags & 0x4),
                    probe=bool(hop_flags & 0x2),
                    strict=bool(hop_flags & 0x1),
                )
            )
        value = ElpAddress(tuple(hops))
    else:
        return UnknownLcaf(lcaf_type, body.rest(), flags, rsvd1, rsvd2)
    if body.remaining:
        raise WireError(BAD_LCAF_LENGTH, f"LCAF type {lcaf_type}: {body.remaining} bytes unused")
    return value


# --- encoding ---------------------------------------------------------------------------------


def encode_address(addr: Address) -> bytes:
    """The AFI-encoded bytes of ``addr``."""
    if isinstance(addr, IPv4Address):
        return b"\x00\x01" + addr.packed
    if isinstance(addr, IPv6Address):
        return b"\x00\x02" + addr.packed
    if isinstance(addr, NoAddress):
        return b"\x00\x00"
    if isinstance(addr, InstanceIdAddress):
        if not 0 <= addr.iid <= 0xFFFFFFFF:
            raise EncodeError(f"instance-id {addr.iid} does not fit 32 bits")
        body = struct.pack("!I", addr.iid) + encode_address(addr.address)
        return _lcaf(LCAF_INSTANCE_ID, body, rsvd2=addr.iid_mask_len)
    if isinstance(addr, AfiListAddress):
        return _lcaf(LCAF_AFI_LIST, b"".join(encode_address(a) for a in addr.addresses))
    if isinstance(addr, NatTraversalAddress):
        if not (0 <= addr.ms_port <= 0xFFFF and 0 <= addr.etr_port <= 0xFFFF):
            raise EncodeError("NAT-traversal ports are 16 bits")
        body = b"".join(
            [
                struct.pack("!HH", addr.ms_port, addr.etr_port),
                encode_address(addr.global_etr_rloc),
                encode_address(addr.ms_rloc),
                encode_address(addr.private_etr_rloc),
                *(encode_address(a) for a in addr.rtr_rlocs),
            ]
        )
        return _lcaf(LCAF_NAT_TRAVERSAL, body)
    if isinstance(addr, ElpAddress):
        body = b"".join(
            struct.pack("!H", (hop.lookup << 2) | (hop.probe << 1) | int(hop.strict))
            + encode_address(hop.address)
            for hop in addr.hops
        )
        return _lcaf(LCAF_ELP, body)
    if isinstance(addr, UnknownLcaf):
        return _lcaf(addr.lcaf_type, addr.body, addr.flags, addr.rsvd1, addr.rsvd2)
    if isinstance(addr, DistinguishedName):
        if "\x00" in addr.name:
            raise EncodeError("a distinguished name cannot contain NUL")
        try:
            return b"\x00\x11" + addr.name.encode("ascii") + b"\x00"
        except UnicodeEncodeError:
            raise EncodeError("a distinguished name is ASCII") from None
    if isinstance(addr, MacAddress):
        return struct.pack("!H", AFI_MAC) + addr.mac
    raise EncodeError(f"not a LISP address: {addr!r}")


def _lcaf(lcaf_type: int, body: bytes, flags: int = 0, rsvd1: int = 0, rsvd2: int = 0) -> bytes:
    if len(body) > 0xFFFF:
        raise EncodeError("LCAF body longer than 65535 bytes")
    try:
        return _LCAF_HEADER.pack(AFI_LCAF, rsvd1, flags, lcaf_type, rsvd2, len(body)) + body
    except struct.error as exc:
        raise EncodeError(f"LCAF header field out of range: {exc}") from None


# --- helpers ----------------------------------------------------------------------------------


def address_text(addr: Address) -> str:
    """A human/JSON string for ``addr`` ("192.0.2.1", "[7]2001:db8::1", "none")."""
    if isinstance(addr, NoAddress):
        return "none"
    if isinstance(addr, DistinguishedName):
        return addr.name
    return str(addr)


def max_mask_len(addr: Address) -> int | None:
    """The largest prefix length that makes sense for ``addr`` (None when unbounded)."""
    if isinstance(addr, InstanceIdAddress):
        return max_mask_len(addr.address)
    if isinstance(addr, IPv4Address):
        return 32
    if isinstance(addr, IPv6Address):
        return 128
    if isinstance(addr, MacAddress):
        return 48
    if isinstance(addr, NoAddress):
        return 0
    return None


def check_mask_len(addr: Address, mask_len: int) -> None:
    """Raise ``WireError("bad-mask-len")`` when ``mask_len`` exceeds ``addr``'s width."""
    limit = max_mask_len(addr)
    if limit is not None and mask_len > limit:
        raise WireError(BAD_MASK_LEN, f"mask length {mask_len} > {limit}")


def check_mask_len_for_encode(addr: Address, mask_len: int) -> None:
    """Raise ``EncodeError`` for a prefix length the wire cannot carry or a decoder refuses."""
    limit = max_mask_len(addr)
    if not 0 <= mask_len <= (255 if limit is None else limit):
        raise EncodeError(f"mask length {mask_len} does not fit {address_text(addr)}")


def eid_prefix(iid: int, network: str | IPv4Network | IPv6Network) -> tuple[Address, int]:
    """(address, mask_len) for an EID-prefix, wrapped in an instance-ID LCAF when iid != 0."""
    net = ipaddress.ip_network(network, strict=False)
    addr: Address = net.network_address
    if iid:
        addr = InstanceIdAddress(iid, addr)
    return addr, net.prefixlen


def split_eid(addr: Address, mask_len: int) -> tuple[int, IPv4Network | IPv6Network | None]:
    """(instance-id, network) for an EID-prefix; network is None for non-IP EIDs."""
    iid = 0
    if isinstance(addr, InstanceIdAddress):
        iid, addr = addr.iid, addr.address
    if isinstance(addr, IPv4Address | IPv6Address):
        return iid, ipaddress.ip_network((addr, mask_len), strict=False)
    return iid, None
