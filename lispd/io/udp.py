"""UDP sockets of the LISP data plane (port 4341).

Receiving: one socket per local RLOC on 4341, reporting each datagram's TTL/hop limit and
TOS/traffic class (needed by the decapsulation rules) through ancillary data.  Sending: a pool
of sockets per family bound to distinct ports of the dynamic range, chosen by flow hash, so that
the outer UDP source port carries flow entropy (ECMP) while one flow keeps one port.  The outer
TTL and TOS of each packet are set per send with IP_TTL/IP_TOS (IPV6_HOPLIMIT/IPV6_TCLASS)
control messages.

Outer checksums: zero over IPv4 (SO_NO_CHECK, RFC 9300), computed over IPv6; zero-checksum IPv6
is accepted on receive (UDP_NO_CHECK6_RX).  The kernel fragments an outer packet that exceeds
the path MTU (IP_PMTUDISC_DONT): the ITR has already answered DF/IPv6 packets that cannot fit with
ICMP, so only packets the sender allowed to be fragmented get there.
"""

from __future__ import annotations

import errno
import random
import socket
import struct
from ipaddress import IPv4Address, IPv6Address

SOL_UDP = 17
SO_NO_CHECK = 11
UDP_GRO = 104
UDP_NO_CHECK6_RX = 102
IP_RECVTTL = 12
IP_MTU_DISCOVER = 10
IP_PMTUDISC_DONT = 0
IPV6_PMTUDISC_DONT = 0
IPV6_MTU_DISCOVER = 23
RECV_SIZE = 65536
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
# Bursts from a fast sender must wait in the kernel while Python catches up: a small receive
# buffer turns every burst into losses that halve TCP's window.
SOCKET_BUFFER = 4 * 1024 * 1024
DYNAMIC_PORTS_FIRST = 49152
CMSG_SPACE = 64
CONTROL_TTL = 64  # what RLOC probes (and every control message) leave with

_INT = struct.Struct("@i")


def _family(addr: IPv4Address | IPv6Address) -> int:
    return socket.AF_INET if addr.version == 4 else socket.AF_INET6


def _set_buffer(sock: socket.socket, option: int, forced: int, size: int) -> None:
    """A socket buffer of ``size`` bytes: beyond net.core.[rw]mem_max when we hold
    CAP_NET_ADMIN (the *BUFFORCE options), else as large as the system allows."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, forced, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, option, size)


def _configure(sock: socket.socket, version: int, receive: bool) -> None:
    sock.setblocking(False)
    if receive:
        _set_buffer(sock, socket.SO_RCVBUF, SO_RCVBUFFORCE, SOCKET_BUFFER)
    else:
        _set_buffer(sock, socket.SO_SNDBUF, SO_SNDBUFFORCE, SOCKET_BUFFER)
    if version == 4:
        sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
        if receive:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DONT)
        if receive:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVTCLASS, 1)
            sock.setsockopt(SOL_UDP, UDP_NO_CHECK6_RX, 1)


def claim_port(addr: IPv4Address | IPv6Address, port: int) -> None:
    """Raise ``EADDRINUSE`` unless ``addr``:``port`` is free: bound by nobody, on this address
    or the wildcard, whatever socket options they set.

    The first socket of an SO_REUSEPORT group cannot find that out by binding (it would join a
    group someone else made with the option), so a plain socket binds the port first, and is
    closed just before the group binds."""
    probe = socket.socket(_family(addr), socket.SOCK_DGRAM)
    try:
        if addr.version == 6:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        probe.bind((str(addr), port))
    finally:
        probe.close()


def open_receive_socket(
    addr: IPv4Address | IPv6Address, port: int, shared: bool = False
) -> socket.socket:
    """The socket that receives encapsulated packets on ``addr``:``port``, owned exclusively:
    no SO_REUSEADDR, so no other socket can bind the same port and take its traffic.

    ``shared``: SO_REUSEPORT, one of lispd's group of sockets on the same address and port (one
    per fast-path engine) among which the kernel spreads flows by their address and port hash.
    Call :func:`claim_port` before the first of the group; the kernel admits later members only
    with the option set and the same user, i.e. lispd itself."""
    sock = socket.socket(_family(addr), socket.SOCK_DGRAM)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    _configure(sock, addr.version, receive=True)
    try:
        sock.bind((str(addr), port))
    except OSError:
        sock.close()
        raise
    return sock


def open_control_socket(addr: IPv4Address | IPv6Address, port: int) -> socket.socket:
    """The LISP control socket on ``addr``:``port`` (4342), non-blocking, real checksums, owned
    exclusively (no SO_REUSEADDR or SO_REUSEPORT: a second bind of the port fails).

    It sends with TTL/hop limit :data:`CONTROL_TTL` and reports the TTL of what it receives
    (RLOC probing derives underlay hop counts from both)."""
    sock = socket.socket(_family(addr), socket.SOCK_DGRAM)
    if addr.version == 6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, CONTROL_TTL)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, CONTROL_TTL)
    sock.setblocking(False)
    _set_buffer(sock, socket.SO_RCVBUF, SO_RCVBUFFORCE, SOCKET_BUFFER)
    try:
        sock.bind((str(addr), port))
    except OSError:
        sock.close()
        raise
    return sock


def open_send_pool(
    addr: IPv4Address | IPv6Address, size: int, rng: random.Random | None = None
) -> list[socket.socket]:
    """``size`` sockets bound to ``addr`` on distinct random ports of the dynamic range
    49152-65535 (RFC 6335), for sending."""
    rng = rng or random.Random()
    pool: list[socket.socket] = []
    tries = 0
    while len(pool) < size:
        sock = socket.socket(_family(addr), socket.SOCK_DGRAM)
        _configure(sock, addr.version, receive=False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            sock.bind((str(addr), rng.randint(DYNAMIC_PORTS_FIRST, 65535)))
        except OSError as exc:
            sock.close()
            tries += 1
            if exc.errno != errno.EADDRINUSE or tries > 100 * size:
                raise
            continue
        pool.append(sock)
    return pool


def enable_offloads(
    pools: dict[int, list[socket.socket]],
    data_sockets: dict[int, socket.socket],
    *,
    gso: bool,
) -> None:
    """Ready the data sockets for the compiled path's offloads: the 4341 sockets receive with
    UDP GRO (coalesced datagrams, the segment size in a control message); with ``gso``, outer
    IPv4 UDP checksums are computed (the kernel refuses UDP GSO on a socket with SO_NO_CHECK).
    Without it they stay zero, as the Python path sends them."""
    for version, pool in pools.items():
        if version == 4 and gso:
            for sock in pool:
                sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 0)
    for version, sock in data_sockets.items():
        if version == 4 and gso:
            sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 0)
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)


Datagram = tuple[bytes, int, int, str, int]  # payload, ttl, tos, source address, source port


def recv_batch(sock: socket.socket, limit: int, default_ttl: int = 64) -> list[Datagram]:
    """Up to ``limit`` datagrams as (payload, ttl, tos, source address, source port), reading
    until the queue is empty."""
    out: list[Datagram] = []
    recvmsg = sock.recvmsg
    unpack = _INT.unpack
    for _ in range(limit):
        try:
            data, ancillary, _flags, addr = recvmsg(RECV_SIZE, CMSG_SPACE)
        except BlockingIOError:
            break
        except OSError:
            # An ICMP error for something we sent (port unreachable behind a NAT...) is
            # reported on the next receive: it costs nothing but this turn of the loop.
            continue
        ttl, tos = default_ttl, 0
        for level, kind, value in ancillary:
            if level == socket.IPPROTO_IP:
                if kind == socket.IP_TTL:
                    ttl = unpack(value[:4])[0]
                elif kind == socket.IP_TOS:
                    tos = value[0]
            elif kind == socket.IPV6_HOPLIMIT:
                ttl = unpack(value[:4])[0]
            elif kind == socket.IPV6_TCLASS:
                tos = unpack(value[:4])[0]
        out.append((data, ttl, tos, addr[0], addr[1]))
    return out


class Sender:
    """Sends encapsulated payloads from the flow's pool socket with per-packet TTL and TOS."""

    def __init__(
        self,
        pools: dict[int, list[socket.socket]],
        data_sockets: dict[int, socket.socket] | None = None,
    ) -> None:
        self.pools = pools
        # The 4341 receive sockets: the source of traffic that must use a NAT binding.
        self.data_sockets = data_sockets if data_sockets is not None else {}
        self._cmsg: dict[tuple[int, int, int], list[tuple[int, int, bytes]]] = {}
        self._sockaddr: dict[tuple[IPv4Address | IPv6Address, int], tuple[str, int]] = {}

    def _ancillary(self, version: int, ttl: int, tos: int) -> list[tuple[int, int, bytes]]:
        key = (version, ttl, tos)
        cmsg = self._cmsg.get(key)
        if cmsg is None:
            if version == 4:
                cmsg = [
                    (socket.IPPROTO_IP, socket.IP_TTL, _INT.pack(ttl)),
                    (socket.IPPROTO_IP, socket.IP_TOS, _INT.pack(tos)),
                ]
            else:
                cmsg = [
                    (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT, _INT.pack(ttl)),
                    (socket.IPPROTO_IPV6, socket.IPV6_TCLASS, _INT.pack(tos)),
                ]
            self._cmsg[key] = cmsg
        return cmsg

    def send(
        self,
        payload: bytes,
        rloc: IPv4Address | IPv6Address,
        port: int,
        flow_hash: int,
        ttl: int,
        tos: int,
    ) -> bool:
        """Send one datagram; False when the socket buffer is full or the kernel refused."""
        version = rloc.version
        pool = self.pools.get(version)
        if not pool:
            return False
        key = (rloc, port)
        sockaddr = self._sockaddr.get(key)
        if sockaddr is None:
            sockaddr = self._sockaddr[key] = (str(rloc), port)
        sock = pool[flow_hash % len(pool)]
        try:
            sock.sendmsg([payload], self._ancillary(version, ttl, tos), 0, sockaddr)
        except (BlockingIOError, OSError):
            return False
        return True

    def send_from_data_port(
        self,
        payload: bytes,
        rloc: IPv4Address | IPv6Address,
        port: int,
        ttl: int,
        tos: int,
    ) -> bool:
        """Send one datagram from our 4341 socket of the family (source port 4341)."""
        version = rloc.version
        sock = self.data_sockets.get(version)
        if sock is None:
            return False
        key = (rloc, port)
        sockaddr = self._sockaddr.get(key)
        if sockaddr is None:
            sockaddr = self._sockaddr[key] = (str(rloc), port)
        try:
            sock.sendmsg([payload], self._ancillary(version, ttl, tos), 0, sockaddr)
        except (BlockingIOError, OSError):
            return False
        return True

    def close(self) -> None:
        """Close every pool socket."""
        for pool in self.pools.values():
            for sock in pool:
                sock.close()
