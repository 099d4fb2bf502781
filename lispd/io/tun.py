"""The TUN device inner packets come in and go out by (python-pytun)."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytun

from lispd.logfmt import kv

READ_SIZE = 65536
VNET_HDR_LEN = 10  # struct virtio_net_hdr
TUNSETOFFLOAD = 0x400454D0  # _IOW('T', 208, unsigned int)
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
TUN_OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN
_PLAIN_VNET = bytes(VNET_HDR_LEN)
IFF_PERSIST = 0x0800


def held_by_another_process(name: str, sys_class_net: Path = Path("/sys/class/net")) -> bool:
    """Whether a TUN/TAP device ``name`` exists that some process holds open: it is not
    persistent (such a device exists only while a process has it open), so opening it would
    attach to another program's device (a multi-queue one takes a second reader silently).
    False when there is no such device or it is persistent (made beforehand for lispd)."""
    try:
        flags = int((sys_class_net / name / "tun_flags").read_text().strip(), 16)
    except (OSError, ValueError):
        return False
    return not flags & IFF_PERSIST


log = logging.getLogger(__name__)


def _queue_mode(multi: bool) -> int:
    return pytun.IFF_MULTI_QUEUE if multi else 0


class Tun:
    """A layer-3 TUN device (IFF_TUN | IFF_NO_PI), non-blocking, with the given MTU.

    ``prepare`` runs between creation and bringing the link up (for per-interface sysctls
    that only act on a down link, such as turning off IPv6 link-local addresses).

    ``vnet``: the device is opened with IFF_VNET_HDR and TCP segmentation offload, so the
    kernel hands over TCP super-packets of up to 64 KB, each after a virtio-net header, and
    takes them back the same way.  The compiled fast path reads and writes such a device;
    :meth:`write` and :meth:`read_batch` hide the header from the Python path.

    ``queues`` > 1: a multi-queue device (IFF_MULTI_QUEUE); the kernel spreads flows over the
    queues, and a flow's packets go to the queue that last wrote one of its replies.  This
    object reads and writes queue 0; :attr:`queue_fds` are the others, for fast-path workers.
    """

    def __init__(
        self,
        name: str,
        mtu: int,
        prepare: Callable[[str], None] | None = None,
        vnet: bool = False,
        queues: int = 1,
    ) -> None:
        flags = pytun.IFF_TUN | pytun.IFF_NO_PI | (pytun.IFF_VNET_HDR if vnet else 0)
        multi = queues > 1
        try:
            self.device = pytun.TunTapDevice(name=name, flags=flags | _queue_mode(multi))
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            # A persistent device made beforehand (ip tuntap add) in the other queue mode:
            # take it as it is; a single-queue one gives one queue, and so one engine.
            multi = not multi
            self.device = pytun.TunTapDevice(name=name, flags=flags | _queue_mode(multi))
            if queues > 1:
                log.warning("persistent single-queue device, one queue %s", kv(tun=name))
                queues = 1
        flags |= _queue_mode(multi)
        self.name: str = self.device.name
        self.vnet = vnet
        self.fd: int = self.device.fileno()
        self.extra_queues: list[pytun.TunTapDevice] = []
        try:
            for _ in range(queues - 1):
                queue = pytun.TunTapDevice(name=self.name, flags=flags)  # attaches a queue
                os.set_blocking(queue.fileno(), False)
                self.extra_queues.append(queue)
        except BaseException:
            self.close()
            raise
        if vnet:
            # the flags are the argument itself, not a pointer to them
            fcntl.ioctl(self.fd, TUNSETOFFLOAD, TUN_OFFLOADS)
        self.device.mtu = mtu
        if prepare is not None:
            prepare(self.name)
        self.device.up()
        os.set_blocking(self.fd, False)

    def read_batch(self, limit: int) -> list[bytes]:
        """Up to ``limit`` packets, reading until the queue is empty (EAGAIN).  A vnet device
        is read by the compiled engine only (its reads carry a virtio-net header)."""
        packets = []
        read = os.read
        fd = self.fd
        for _ in range(limit):
            try:
                packets.append(read(fd, READ_SIZE))
            except BlockingIOError:
                break
        return packets

    def write(self, packet: bytes | bytearray) -> bool:
        """Write one packet; False when the kernel queue is full (the caller counts a drop)."""
        try:
            if self.vnet:
                os.writev(self.fd, (_PLAIN_VNET, packet))
            else:
                os.write(self.fd, packet)
        except BlockingIOError:
            return False
        return True

    @property
    def queue_fds(self) -> list[int]:
        """The descriptors of queues 1..N-1 (empty for a single-queue device)."""
        return [queue.fileno() for queue in self.extra_queues]

    def close(self) -> None:
        """Close the device (the kernel removes the interface with its routes when the last
        queue closes)."""
        for queue in self.extra_queues:
            queue.close()
        self.extra_queues = []
        self.device.close()


_TUNSETQUEUE = 0x400454D9  # _IOW('T', 217, int)
_IFF_ATTACH_QUEUE = 0x0200
_IFF_DETACH_QUEUE = 0x0400


def set_queue_attached(fd: int, attached: bool) -> None:
    """Attach or detach the queue ``fd`` of a multi-queue TUN device: the kernel spreads
    flows over the attached queues only, so a detached queue's flows move to the others (a
    worker's queue while the worker restarts).  OSError when the kernel refuses (a queue in
    that state already, a single-queue device)."""
    flags = _IFF_ATTACH_QUEUE if attached else _IFF_DETACH_QUEUE
    fcntl.ioctl(fd, _TUNSETQUEUE, struct.pack("16sH22x", b"", flags))
