"""What ``lig`` and ``rig`` share: the EID argument, the ECM'd Map-Request they send, the text
and JSON of a Map-Reply, and finding the local address toward a server.

Everything here is pure (bytes and values in, values out) except :func:`resolve_host` (a name
lookup), :func:`route_source` (a connected UDP socket's ``getsockname()``, nothing sent) and
:func:`local_addresses`.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any, NamedTuple

from lispd.cli.args import parse_address, split_iid
from lispd.wire.address import (
    NO_ADDRESS,
    Address,
    ElpAddress,
    InstanceIdAddress,
    address_text,
    split_eid,
)
from lispd.wire.ecm import EncapsulatedControl, encode_ecm
from lispd.wire.errors import WireError
from lispd.wire.ip import IPv4Header, IPv6Header
from lispd.wire.mapreferral import ReferralRecord
from lispd.wire.mapreply import TYPE_MAP_REPLY, MapReply, decode_map_reply
from lispd.wire.maprequest import MapRequest
from lispd.wire.records import TTL_UNLIMITED, Action, EidPrefix, EidRecord, Locator

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

CONTROL_PORT = 4342
MAX_IID = 0xFFFFFE
"""Largest instance-id (24 bits, 0xFFFFFF is reserved), as in lispd.conf."""

INDENT = "  "

ACTION_NAMES: dict[int, str] = {
    Action.NO_ACTION: "no-action",
    Action.NATIVELY_FORWARD: "native-forward",
    Action.SEND_MAP_REQUEST: "send-map-request",
    Action.DROP: "drop",
    Action.DROP_POLICY_DENIED: "drop-policy-denied",
    Action.DROP_AUTH_FAILURE: "drop-auth-failure",
    Action.SEND_SUBSCRIBE: "send-subscribe",
    Action.NOT_REGISTERED: "not-registered",
}


class UsageError(Exception):
    """A bad argument or configuration: printed as ``<command>: <message>``, exit 2."""


class Target(NamedTuple):
    """What to ask for: ``[iid]address/mask_len``."""

    iid: int
    address: IPAddress
    mask_len: int

    def __str__(self) -> str:
        if self.mask_len == self.address.max_prefixlen:
            return f"[{self.iid}]{self.address}"
        return f"[{self.iid}]{self.address}/{self.mask_len}"


# --------------------------------------------------------------------------------------------
# Arguments


def parse_eid(text: str, iid_option: int | None) -> tuple[int, str, int | None]:
    """Split the EID argument into ``(iid, host, mask_len or None)``.

    ``text`` is ``[iid]host`` or ``host``, ``host`` an address (optionally ``/len``) or a name,
    returned unresolved.  ``iid_option`` is ``--iid``; it must agree with a ``[iid]`` prefix.
    """
    split = split_iid(text)
    if split is None:
        raise UsageError(f"{text!r}: expected [instance-id]address")
    iid, host = split
    if iid is not None and iid_option is not None and iid != iid_option:
        raise UsageError(f"{text!r}: instance-id {iid} but --iid {iid_option}")
    if iid is None:
        iid = iid_option if iid_option is not None else 0
    if not 0 <= iid <= MAX_IID:
        raise UsageError(f"instance-id must be from 0 to {MAX_IID}")
    mask_len: int | None = None
    if "/" in host:
        host, _, length = host.partition("/")
        address = parse_address(host)
        if address is None or not length.isdigit() or int(length) > address.max_prefixlen:
            raise UsageError(f"{text!r}: malformed EID-prefix")
        mask_len = int(length)
    if not host or any(ch.isspace() for ch in host):
        raise UsageError(f"{text!r}: missing or malformed EID")
    return iid, host, mask_len


def make_target(iid: int, address: IPAddress, mask_len: int | None) -> Target:
    """The request's EID: the host prefix of ``address``, or the network of ``address/len``."""
    if address.is_multicast:
        raise UsageError(f"{address}: multicast EIDs are not supported")
    if mask_len is None:
        return Target(iid, address, address.max_prefixlen)
    network = ipaddress.ip_network((address, mask_len), strict=False)
    return Target(iid, network.network_address, mask_len)


def parse_source(text: str) -> IPAddress:
    """``-s``: an address (``[iid]`` is accepted and ignored: the request's iid applies)."""
    split = split_iid(text)
    address = parse_address(split[1] if split else text.strip())
    if address is None:
        raise UsageError(f"source EID {text!r} is not an IP address")
    return address


def choose_source_eid(
    database: Iterable[Any], iid: int, version: int, addresses: Iterable[IPAddress]
) -> IPAddress | None:
    """The default source EID (see the module docstring) or None.

    ``database`` holds objects with ``instance_id`` and ``prefix`` (config ``Mapping``);
    ``addresses`` are this machine's.  Prefixes of instance-id ``iid`` only; of family
    ``version`` first.
    """
    prefixes = [m.prefix for m in database if m.instance_id == iid]
    prefixes.sort(key=lambda p: p.version != version)  # stable: file order within a family
    addresses = list(addresses)
    for prefix in prefixes:
        for address in addresses:
            if address.version == prefix.version and address in prefix:
                return address
    return prefixes[0].network_address if prefixes else None


def iid_arg(text: str) -> int:
    """An argparse type: an instance-id, 0..MAX_IID."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= MAX_IID:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_IID}")
    return value


# --------------------------------------------------------------------------------------------
# Packets


def _scoped(iid: int, address: Address) -> Address:
    return InstanceIdAddress(iid, address) if iid else address


def inner_source(target: Target, itr_rloc: IPAddress, source_eid: IPAddress | None) -> IPAddress:
    """The ECM's inner source address, which must be of the EID's family: the ITR-RLOC when it
    is, else the source EID when it is, else the unspecified address (0.0.0.0, ::)."""
    version = target.address.version
    for candidate in (itr_rloc, source_eid):
        if candidate is not None and candidate.version == version:
            return candidate
    return ipaddress.IPv4Address(0) if version == 4 else ipaddress.IPv6Address(0)


def build_request(
    target: Target,
    itr_rloc: IPAddress,
    sport: int,
    nonce: int,
    source_eid: IPAddress | None = None,
    *,
    ddt: bool = False,
) -> bytes:
    """The ECM carrying the Map-Request for ``target``: inner IP from :func:`inner_source` to
    the EID, inner UDP ``sport`` -> 4342, the ITR-RLOC ``itr_rloc``.  ``ddt`` sets the ECM's D
    bit (a DDT-originated request, answered with a Map-Referral: RFC 8111 section 6.3)."""
    request = MapRequest(
        nonce=nonce,
        records=(EidPrefix(_scoped(target.iid, target.address), target.mask_len),),
        itr_rlocs=(itr_rloc,),
        source_eid=NO_ADDRESS if source_eid is None else _scoped(target.iid, source_eid),
    )
    src = inner_source(target, itr_rloc, source_eid)
    inner: IPv4Header | IPv6Header
    if isinstance(target.address, ipaddress.IPv4Address):
        assert isinstance(src, ipaddress.IPv4Address)
        inner = IPv4Header(src, target.address)
    else:
        assert isinstance(src, ipaddress.IPv6Address)
        inner = IPv6Header(src, target.address)
    return encode_ecm(EncapsulatedControl(inner, sport, CONTROL_PORT, request, ddt=ddt))


def match_reply(data: bytes, nonces: Iterable[int]) -> MapReply | None:
    """The decoded Map-Reply when ``data`` is one carrying one of ``nonces`` (and not an RLOC
    probe reply), else None."""
    if not data or data[0] >> 4 != TYPE_MAP_REPLY:
        return None
    try:
        reply = decode_map_reply(data)
    except (WireError, ValueError):
        return None
    if reply.probe or reply.nonce not in set(nonces):
        return None
    return reply


# --------------------------------------------------------------------------------------------
# Map-Reply text and JSON


def format_seconds(value: float) -> str:
    """Seconds as given (``2``, ``0.5``)."""
    return f"{value:g}"


def format_prefix(record: EidRecord | ReferralRecord) -> str:
    """``[iid]prefix/len`` of a record (non-IP EIDs as their text and length)."""
    iid, network = split_eid(record.eid, record.mask_len)
    if network is None:
        address = record.eid.address if isinstance(record.eid, InstanceIdAddress) else record.eid
        return f"[{iid}]{address_text(address)}/{record.mask_len}"
    return f"[{iid}]{network}"


def record_iid(record: EidRecord) -> int:
    return record.eid.iid if isinstance(record.eid, InstanceIdAddress) else 0


def format_locator_address(address: Address) -> str:
    """A locator's address; an Explicit Locator Path as its hops joined by ``->``."""
    if isinstance(address, ElpAddress):
        return "->".join(address_text(hop.address) for hop in address.hops)
    return address_text(address)


def action_name(action: int) -> str:
    return ACTION_NAMES.get(action, str(int(action)))


def format_ttl(ttl: int) -> str:
    return "unlimited" if ttl == TTL_UNLIMITED else str(ttl)


def locator_state(locator: Locator) -> str:
    return "up" if locator.reachable else "down"


def format_record(record: EidRecord) -> list[str]:
    """The ``Mapping entry`` line and, for a positive record, the locator table."""
    head = (
        f"Mapping entry for EID '{format_prefix(record)}', record ttl {format_ttl(record.ttl)}, "
        f"{'auth' if record.authoritative else 'not auth'}"
    )
    if not record.locators:
        return [f"{head}, action {action_name(record.action)}"]
    rows = [("Locator", "State", "Priority/Weight")]
    rows += [
        (
            format_locator_address(loc.address),
            locator_state(loc),
            f"{loc.priority}/{loc.weight}",
        )
        for loc in record.locators
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [head]
    lines += [f"{INDENT}{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
    return lines


def format_reply(reply: MapReply) -> str:
    """Every record of the reply, each block preceded by a blank line."""
    lines: list[str] = []
    for record in reply.records:
        lines.append("")
        lines.extend(format_record(record))
    if not reply.records:
        lines += ["", "Map-reply without records"]
    return "".join(line + "\n" for line in lines)


def record_json(record: EidRecord) -> dict[str, Any]:
    return {
        "eid-prefix": format_prefix(record),
        "iid": record_iid(record),
        "ttl": record.ttl,
        "action": action_name(record.action),
        "authoritative": record.authoritative,
        "locators": [
            {
                "address": format_locator_address(loc.address),
                "priority": loc.priority,
                "weight": loc.weight,
                "state": locator_state(loc),
                **(
                    {"elp": [address_text(h.address) for h in loc.address.hops]}
                    if isinstance(loc.address, ElpAddress)
                    else {}
                ),
            }
            for loc in record.locators
        ],
    }


# --------------------------------------------------------------------------------------------
# The network


def resolve_host(host: str) -> IPAddress:
    """``host`` as an address, resolving a name (its first address)."""
    address = parse_address(host)
    if address is not None:
        return address
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_UNSPEC, socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UsageError(f"cannot resolve {host}: {exc}") from None
    for info in infos:
        address = parse_address(str(info[4][0]))
        if address is not None:
            return address
    raise UsageError(f"{host} has no IP address")


def family(address: IPAddress) -> socket.AddressFamily:
    """The socket family of ``address``."""
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


def route_source(dest: IPAddress, port: int = CONTROL_PORT) -> IPAddress:
    """The local address the kernel would send from toward ``dest`` (connect sends nothing)."""
    with socket.socket(family(dest), socket.SOCK_DGRAM) as sock:
        sock.connect((str(dest), port))
        local = ipaddress.ip_address(str(sock.getsockname()[0]).split("%", 1)[0])
    return local


def local_addresses() -> list[IPAddress]:
    """This machine's addresses (for the default source EID)."""
    from lispd.cli.ltr import local_addresses as addresses

    return addresses()
