"""What a :class:`~lispd.node.Node` asks its shell to do: the node's outputs.

The node decides, the shell acts.  Sends and TUN writes name the counter their success is
counted under; the shell performs them and reports the outcome with
:meth:`Node.account <lispd.node.Node.account>`, so that counting stays with the node and a
failed send is a named drop, as it would be with the socket in hand.  Route and engine actions
keep the kernel's routing table and the compiled engine's mirror of the tables in step with the
node; a node without them (tests, the in-memory harness) may ignore them.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Literal

from lispd.dataplane.outputs import Encap

Address = IPv4Address | IPv6Address
Prefix = IPv4Network | IPv6Network
Via = Literal["control", "data", "trace"]


@dataclass(frozen=True, slots=True)
class SendEncap:
    """Send an encapsulated data packet (from the flow's pool socket, or from the 4341 socket
    when ``encap.data_port``); counted under ``count`` with ``size`` bytes when it left."""

    encap: Encap
    count: str
    size: int


@dataclass(frozen=True, slots=True)
class SendDatagram:
    """Send ``payload`` from our socket ``via`` ("control": UDP 4342, "data": UDP 4341,
    "trace": UDP 2434) of ``dst``'s family to ``dst``:``port``.

    ``count`` names the counter of a datagram that left (``size`` bytes).  ``message`` is the
    control message inside, for the message log, when there is one (``offset``: where it
    starts in ``payload``)."""

    via: Via
    payload: bytes
    dst: Address
    port: int
    count: str
    size: int
    message: bytes | None = None
    offset: int = 0


@dataclass(frozen=True, slots=True)
class WriteTun:
    """Write ``packet`` to the TUN device; counted under ``count`` (when not None)."""

    packet: bytes | bytearray
    count: str | None = None


@dataclass(frozen=True, slots=True)
class ReturnTrace:
    """A LISP-Trace goes back to its ltr client with our record and ``reason``.

    Only an RTR asks for this (others get a :class:`SendDatagram` at once): a client behind a
    NAT announced itself to our port 2434 just before it sent the trace, and that announcement
    may still be unread.  The shell reads port 2434 first (``trace_datagram``), then asks
    :meth:`Node.return_trace <lispd.node.Node.return_trace>` for the datagram."""

    inner: bytes
    iid: int | None
    role: str
    reason: str


@dataclass(frozen=True, slots=True)
class RouteAdd:
    """Route ``prefix`` into the TUN (a map-cache entry the kernel must send us)."""

    prefix: Prefix


@dataclass(frozen=True, slots=True)
class RouteRemove:
    """Stop routing ``prefix`` into the TUN."""

    prefix: Prefix


@dataclass(frozen=True, slots=True)
class LocalPrefixes:
    """Our own EID-prefixes changed: traffic to them stays native (throw routes)."""

    prefixes: tuple[Prefix, ...]


@dataclass(frozen=True, slots=True)
class DatabaseChanged:
    """The local database changed: the compiled engine loads it again."""


@dataclass(frozen=True, slots=True)
class PuntAll:
    """Behind a NAT (``on``), every packet from the TUN is the node's to handle: the engine
    hands them all over instead of encapsulating them itself."""

    on: bool


@dataclass(frozen=True, slots=True)
class ForgetSources:
    """The SMR memory turned over: the engine forgets which ITRs sent us traffic."""


@dataclass(frozen=True, slots=True)
class NatBindingsChanged:
    """The NAT bindings of ``addresses`` are new, moved or gone (RTR): the engine's records
    for map-cache entries using them carry old ports and must be issued again."""

    addresses: tuple[Address, ...]


Action = (
    SendEncap
    | SendDatagram
    | WriteTun
    | ReturnTrace
    | RouteAdd
    | RouteRemove
    | LocalPrefixes
    | DatabaseChanged
    | PuntAll
    | ForgetSources
    | NatBindingsChanged
)
