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
pure functions, unit-tested with golden strings; what ``rig`` needs too lives in
:mod:`lispd.cli.lookup`) and a thin IO shell (:func:`run_lig`, :func:`main`).
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TextIO

from lispd.cli.args import seconds
from lispd.cli.lookup import (
    ACTION_NAMES,
    CONTROL_PORT,
    INDENT,
    MAX_IID,
    IPAddress,
    Target,
    UsageError,
    action_name,
    build_request,
    choose_source_eid,
    family,
    format_locator_address,
    format_prefix,
    format_record,
    format_reply,
    format_seconds,
    format_ttl,
    iid_arg,
    inner_source,
    local_addresses,
    locator_state,
    make_target,
    match_reply,
    parse_eid,
    parse_source,
    record_iid,
    record_json,
    resolve_host,
    route_source,
)
from lispd.wire.errors import EncodeError
from lispd.wire.mapreply import MapReply

__all__ = [
    "ACTION_NAMES",
    "CONTROL_PORT",
    "INDENT",
    "MAX_IID",
    "MR_PORT",
    "Reply",
    "Target",
    "UsageError",
    "action_name",
    "build_parser",
    "build_request",
    "choose_source_eid",
    "format_locator_address",
    "format_prefix",
    "format_received_line",
    "format_record",
    "format_reply",
    "format_seconds",
    "format_send_line",
    "format_timeout",
    "format_ttl",
    "inner_source",
    "locator_state",
    "main",
    "make_target",
    "match_reply",
    "parse_eid",
    "parse_source",
    "record_iid",
    "record_json",
    "reply_json",
    "resolve_host",
    "route_source",
    "run_lig",
]

DEFAULT_CONFIG = "/etc/lispd/lispd.conf"
DEFAULT_TIMEOUT = 2.0
DEFAULT_COUNT = 3
MR_PORT = CONTROL_PORT
"""The Map-Resolver's port (a module constant so that tests can point it elsewhere)."""

EXIT_OK = 0
EXIT_TIMEOUT = 1
EXIT_USAGE = 2

_RECV_SIZE = 65535
_MASK64 = (1 << 64) - 1


class Reply(NamedTuple):
    """An accepted Map-Reply: the message, who sent it, the rtt of its try."""

    message: MapReply
    reply_from: str
    rtt: float


# --------------------------------------------------------------------------------------------
# Sans-IO core: arguments


# --------------------------------------------------------------------------------------------
# Sans-IO core: packets


# --------------------------------------------------------------------------------------------
# Sans-IO core: text and JSON


def format_send_line(map_resolver: str, target: Target) -> str:
    return f"Send map-request to {map_resolver} for {target} ..."


def format_received_line(reply_from: str, rtt: float) -> str:
    return f"Received map-reply from {reply_from} with rtt {rtt:.3f} secs"


def format_timeout(count: int, timeout: float) -> str:
    tries = "try" if count == 1 else "tries"
    return f"No map-reply received after {count} {tries} ({format_seconds(timeout)} secs each)"


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
    with socket.socket(family(map_resolver), socket.SOCK_DGRAM) as sock:
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
        "--iid", type=iid_arg, default=None, metavar="N", help="instance-id of EID (0)"
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
