"""The TUN device inner packets come in and go out by (python-pytun)."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytun

READ_SIZE = 65536


class Tun:
    """A layer-3 TUN device (IFF_TUN | IFF_NO_PI), non-blocking, with the given MTU.

    ``prepare`` runs between creation and bringing the link up (for per-interface sysctls
    that only act on a down link, such as turning off IPv6 link-local addresses).
    """

    def __init__(self, name: str, mtu: int, prepare: Callable[[str], None] | None = None) -> None:
        self.device = pytun.TunTapDevice(name=name, flags=pytun.IFF_TUN | pytun.IFF_NO_PI)
        self.name: str = self.device.name
        self.device.mtu = mtu
        if prepare is not None:
            prepare(self.name)
        self.device.up()
        self.fd: int = self.device.fileno()
        os.set_blocking(self.fd, False)

    def read_batch(self, limit: int) -> list[bytes]:
        """Up to ``limit`` packets, reading until the queue is empty (EAGAIN)."""
        packets = []
        read = os.read
        fd = self.fd
        for _ in range(limit):
            try:
                packets.append(read(fd, READ_SIZE))
            except BlockingIOError:
                break
        return packets

    def write(self, packet: bytes) -> bool:
        """Write one packet; False when the kernel queue is full (the caller counts a drop)."""
        try:
            os.write(self.fd, packet)
        except BlockingIOError:
            return False
        return True

    def close(self) -> None:
        """Close the device (the kernel removes the interface with its routes)."""
        self.device.close()
