"""``lig``: the LISP Internet Groper (RFC 6835), asks a Map-Resolver for the mapping of an EID.

    lig [-c CONFIG] [-m MAP-RESOLVER] [-s SOURCE-EID] [--iid N] [--timeout S] [--count N]
        [--json] EID

Sends an ECM'd Map-Request for ``EID`` to the Map-Resolver's UDP 4342 and prints the Map-Reply
that comes back (from the Map-Resolver itself, a proxying Map-Server or the ETR)::

    Send map-request to 192.0.2.30 for [0]198.51.100.18 ...
    Received map-reply from 192.0.2.6 with rtt 0.003 secs

    Mapping entry for EID '[0]198.51.100.16/28', record ttl 1440, auth
      Locator    State  Priority/Weight
      192.0.2.6  up     1/100

A negative reply prints the record's action instead of locators::

    Mapping entry for EID '[0]200.0.0.0/5', record ttl 15, not auth, action native-forward

Exit status: 0 when a Map-Reply came, 1 when none came after ``--count`` tries (``No map-reply
received after N tries``) or the request could not be sent, 2 on a usage error (bad argument,
unreadable configuration, no Map-Resolver).

Choices:

* ``EID`` is ``[iid]address``, ``address``, ``address/len`` or a host name (resolved, its first
  address taken).  The request is for the host prefix (/32, /128) unless a length is given.
  ``--iid`` and a ``[iid]`` prefix must agree; the default instance-id is 0.
* Map-Resolver: ``-m`` (an address or a name), else the first ``[[map-resolver]]`` of the
  configuration (``-c``, default ``/etc/lispd/lispd.conf``).
* Source EID (informational in the Map-Request): ``-s``, else taken from the configuration's
  ``[[database-mapping]]`` prefixes of the requested instance-id: the first address of this
  machine inside one of them, else the first prefix's network address; prefixes of the EID's
  address family are preferred.  None (AFI 0) when there is no such prefix or no
  configuration could be read and none was needed (``-m`` given, ``-c`` not).
* ITR-RLOC: the address this machine sends from toward the Map-Resolver, found with a connected
  UDP socket's ``getsockname()`` (connecting a UDP socket sends nothing).  The request goes out
  from a UDP socket bound to that address and an ephemeral port; the reply (sent to
  ITR-RLOC:port) is read from it.
* The ECM's inner IP/UDP header, as lispd's resolver writes it: destination the EID, UDP
  source port our socket's port, destination port 4342; the inner source is the ITR-RLOC when
  of the EID's family, else the source EID when it is, else the unspecified address (0.0.0.0,
  ::), since the inner header must be of the EID's family.
* Every try has a fresh random 64-bit nonce; a Map-Reply carrying the nonce of any try sent so
  far is accepted (a late answer to try 1 during try 2 counts), its rtt measured from that try.
* The rtt is printed with three decimals; a TTL of 0xffffffff prints as ``unlimited``.
* ``--json`` prints one JSON object on stdout (progress lines go to stderr): the fields of the
  first record at the top level for convenience, and every record under ``records``.

The module is a sans-IO core (argument parsing, request building, reply matching, formatting:
pure functions, unit-tested with golden strings) and a thin IO shell (:func:`run_lig`,
:func:`main`).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import secrets
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, TextIO

from lispd.cli.args import parse_address, seconds, split_iid
from lispd.wire.address import (
    NO_ADDRESS,
    Address,
    ElpAddress,
    InstanceIdAddress,
    address_text,
    split_eid,
)
from lispd.wire.ecm import EncapsulatedControl, encode_ecm
from lispd.wire.errors import EncodeError, WireError
from lispd.wire.ip import IPv4Header, IPv6Header
from lispd.wire.mapreply import TYPE_MAP_REPLY, MapReply, decode_map_reply
from lispd.wire.maprequest import MapRequest
from lispd.wire.records import TTL_UNLIMITED, Action, EidPrefix, EidRecord, Locator

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_CONFIG = "/etc/lispd/lispd.conf"
DEFAULT_TIMEOUT = 2.0
DEFAULT_COUNT = 3
CONTROL_PORT = 4342
MR_PORT = CONTROL_PORT
"""The Map-Resolver's port (a module constant so that tests can point it elsewhere)."""
MAX_IID = 0xFFFFFE
"""Largest instance-id (24 bits, 0xFFFFFF is reserved), as in lispd.conf."""

EXIT_OK = 0
EXIT_TIMEOUT = 1
EXIT_USAGE = 2

INDENT = "  "
_RECV_SIZE = 65535
_MASK64 = (1 << 64) - 1

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
    """A bad argument or configuration: printed as ``lig: <message>``, exit 2."""


class Target(NamedTuple):
    """What to ask for: ``[iid]address/mask_len``."""

    iid: int
    address: IPAddress
    mask_len: int

    def __str__(self) -> str:
        if self.mask_len == self.address.max_prefixlen:
            return f"[{self.iid}]{self.address}"
        return f"[{self.iid}]{self.address}/{self.mask_len}"


class Reply(NamedTuple):
    """An accepted Map-Reply: the message, who sent it, the rtt of its try."""

    message: MapReply
    reply_from: str
    rtt: float


# --------------------------------------------------------------------------------------------
# Sans-IO core: arguments


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


# --------------------------------------------------------------------------------------------
# Sans-IO core: packets


def _scoped(iid: int, address: Address) -> Address:
    return InstanceIdAddress(iid, address) if iid else address


def inner_source(target: Target, itr_rloc: IPAddress, source_eid: IPAddress | None) -> IPAddress:
    """The ECM's inner source address: of the EID's family (see the module docstring)."""
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
) -> bytes:
    """The ECM carrying the Map-Request for ``target``, to send to the Map-Resolver."""
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
    return encode_ecm(EncapsulatedControl(inner, sport, CONTROL_PORT, request))


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
# Sans-IO core: text and JSON


def format_seconds(value: float) -> str:
    return f"{value:g}"


def format_prefix(record: EidRecord) -> str:
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


def format_send_line(map_resolver: str, target: Target) -> str:
    return f"Send map-request to {map_resolver} for {target} ..."


def format_received_line(reply_from: str, rtt: float) -> str:
    return f"Received map-reply from {reply_from} with rtt {rtt:.3f} secs"


def format_timeout(count: int, timeout: float) -> str:
    tries = "try" if count == 1 else "tries"
    return f"No map-reply received after {count} {tries} ({format_seconds(timeout)} secs each)"


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


def reply_json(reply: Reply, map_resolver: str, target: Target) -> dict[str, Any]:
    """The ``--json`` object: request facts, the first record's fields, every record."""
    records = [record_json(r) for r in reply.message.records]
    first = records[0] if records else {}
    return {
        "eid": str(target),
        "map-resolver": map_resolver,
        "reply-from": reply.reply_from,
        "rtt": round(reply.rtt, 6),
        "nonce": f"0x{reply.message.nonce:016x}",
        **first,
        "records": records,
    }


# --------------------------------------------------------------------------------------------
# IO


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


def _family(address: IPAddress) -> socket.AddressFamily:
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


def route_source(dest: IPAddress, port: int = MR_PORT) -> IPAddress:
    """The local address the kernel would send from toward ``dest`` (connect sends nothing)."""
    with socket.socket(_family(dest), socket.SOCK_DGRAM) as sock:
        sock.connect((str(dest), port))
        local = ipaddress.ip_address(str(sock.getsockname()[0]).split("%", 1)[0])
    return local


def local_addresses() -> list[IPAddress]:
    from lispd.cli.ltr import local_addresses as addresses

    return addresses()


def run_lig(
    map_resolver: IPAddress,
    target: Target,
    source_eid: IPAddress | None,
    timeout: float,
    count: int,
    say: Callable[[str], None],
    port: int | None = None,
) -> Reply | None:
    """Send up to ``count`` Map-Requests ``timeout`` seconds apart; the first matching reply or
    None.  ``say`` prints progress lines; raises ``OSError`` when the network refuses."""
    port = MR_PORT if port is None else port
    itr_rloc = route_source(map_resolver, port)
    sent: dict[int, float] = {}
    with socket.socket(_family(map_resolver), socket.SOCK_DGRAM) as sock:
        sock.bind((str(itr_rloc), 0))
        sport = sock.getsockname()[1]
        for _ in range(count):
            nonce = secrets.randbits(64) & _MASK64
            packet = build_request(target, itr_rloc, sport, nonce, source_eid)
            say(format_send_line(str(map_resolver), target))
            sent[nonce] = time.monotonic()
            sock.sendto(packet, (str(map_resolver), port))
            deadline = sent[nonce] + timeout
            while (remaining := deadline - time.monotonic()) > 0:
                sock.settimeout(remaining)
                try:
                    data, addr = sock.recvfrom(_RECV_SIZE)
                except TimeoutError:
                    break
                except OSError:  # an ICMP error reported on the socket: keep waiting
                    continue
                arrived = time.monotonic()
                reply = match_reply(data, sent)
                if reply is not None:
                    return Reply(reply, str(addr[0]), arrived - sent[reply.nonce])
    return None


# --------------------------------------------------------------------------------------------
# The command


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError("must be from 1 to 100")
    return value


def _iid(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= MAX_IID:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_IID}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lig",
        description="LISP Internet Groper (RFC 6835): ask a Map-Resolver for the mapping of "
        "EID and print the Map-Reply. Exit status: 0 reply received, 1 no reply, 2 usage "
        "error.",
    )
    parser.add_argument(
        "-c",
        "--config",
        default=None,
        help=f"lispd configuration, for the Map-Resolver and source EID ({DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "-m",
        "--map-resolver",
        metavar="MAP-RESOLVER",
        help="Map-Resolver address or name (default: the first [[map-resolver]])",
    )
    parser.add_argument(
        "-s",
        "--source",
        metavar="SOURCE-EID",
        help="source EID written in the Map-Request (default: a local EID of the database)",
    )
    parser.add_argument(
        "--iid", type=_iid, default=None, metavar="N", help="instance-id of EID (0)"
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"seconds to wait for a reply to each try ({format_seconds(DEFAULT_TIMEOUT)})",
    )
    parser.add_argument(
        "--count",
        type=_count,
        default=DEFAULT_COUNT,
        metavar="N",
        help=f"Map-Requests sent at most ({DEFAULT_COUNT})",
    )
    parser.add_argument("--json", action="store_true", help="print the reply as one JSON object")
    parser.add_argument(
        "eid", metavar="EID", help="[iid]address, address/len or host name to look up"
    )
    return parser


def _emit(stream: TextIO, text: str) -> None:
    stream.write(text)
    stream.flush()


def _settings(args: argparse.Namespace, target: Target) -> tuple[IPAddress, IPAddress | None]:
    """(Map-Resolver, source EID) from the arguments and, when needed, the configuration."""
    from lispd.config import ConfigError, load_config

    map_resolver = resolve_host(args.map_resolver) if args.map_resolver else None
    source = parse_source(args.source) if args.source is not None else None
    config = None
    if map_resolver is None or source is None:
        try:
            config = load_config(args.config or DEFAULT_CONFIG)
        except ConfigError as exc:
            # Only for the source EID, the default configuration may be missing.
            if map_resolver is None or args.config is not None:
                raise UsageError(str(exc)) from None
    if map_resolver is None:
        assert config is not None
        if not config.map_resolvers:
            raise UsageError(f"{config.path}: no [[map-resolver]] (give one with -m)")
        map_resolver = config.map_resolvers[0]
    if source is None and config is not None and config.database:
        source = choose_source_eid(
            config.database, target.iid, target.address.version, local_addresses()
        )
    return map_resolver, source


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lig`` console script."""
    args = build_parser().parse_args(argv)
    out = sys.stdout
    info = sys.stderr if args.json else sys.stdout  # --json: stdout holds the JSON alone
    try:
        iid, host, mask_len = parse_eid(args.eid, args.iid)
        target = make_target(iid, resolve_host(host), mask_len)
        map_resolver, source = _settings(args, target)
    except UsageError as exc:
        _emit(sys.stderr, f"lig: {exc}\n")
        return EXIT_USAGE
    try:
        reply = run_lig(
            map_resolver,
            target,
            source,
            args.timeout,
            args.count,
            lambda line: _emit(info, line + "\n"),
        )
    except (OSError, EncodeError) as exc:
        _emit(
            sys.stderr,
            f"lig: cannot send the map-request: {getattr(exc, 'strerror', None) or exc}\n",
        )
        return EXIT_TIMEOUT
    if reply is None:
        _emit(info, format_timeout(args.count, args.timeout) + "\n")
        return EXIT_TIMEOUT
    _emit(info, format_received_line(reply.reply_from, reply.rtt) + "\n")
    if args.json:
        _emit(out, json.dumps(reply_json(reply, str(map_resolver), target)) + "\n")
    else:
        _emit(out, format_reply(reply.message))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
