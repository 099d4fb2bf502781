"""The compiled engine's hardening (issue 19): it owns its descriptors, refuses to be re-entered
while a batch is in flight, counts every packet it discards under a named reason that reaches
``lispctl show stats``, and refuses table arguments it cannot represent instead of wrapping
them.  The fuzz job (tests/fuzz/test_engine.py) drives the same code with hostile input; these
are the behaviours one by one, through the real read paths (socket pairs standing in for the
TUN and the 4341 socket)."""

from __future__ import annotations

import gc
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from lispd.cli.lispctl import format_stats
from lispd.engine.compiled import CompiledPath, merge_counts
from lispd.wire.ip import internet_checksum
from tests.unit.fastpath_packets import (
    ACK,
    PSH,
    lisp_header,
    packed,
    require_accel,
    tcp_packet,
    udp_packet,
    vnet_header,
)

_accel = require_accel()

SRC, DST = packed("198.51.100.1"), packed("203.0.113.9")
BIG = 70_000  # longer than any packet: more than a receive slot holds


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A datagram socket pair: (ours, the engine's end), the engine's non-blocking, room for
    datagrams larger than the engine's buffers."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    theirs.setblocking(False)
    yield ours, theirs
    ours.close()
    theirs.close()


def drops(engine: Any) -> dict[str, int]:
    """The engine's drop reasons that are not zero."""
    return {k: v for k, v in engine.counters()["drops"].items() if v}


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- descriptors --------------------------------------------------------------------------------


def itr_to(port: int, tun_fd: int, pool: list[int]) -> Any:
    """An ITR engine sending 203.0.113.0/24 to 127.0.0.1:port from ``pool``."""
    engine = _accel.Engine(itr=True, tun_fd=tun_fd)
    engine.set_pool(4, pool)
    engine.db_set(0, packed("198.51.100.0"), 24)
    engine.map_set(0, packed("203.0.113.0"), 24, [(packed("127.0.0.1"), port, 1, False)])
    return engine


def test_the_engine_sends_from_its_own_copy_after_python_closes_the_socket(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    decoy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for s in (receiver, sender, decoy):
            s.bind(("127.0.0.1", 0))
        receiver.settimeout(2)
        engine = itr_to(receiver.getsockname()[1], theirs.fileno(), [sender.fileno()])
        number, port = sender.fileno(), sender.getsockname()[1]
        sender.close()
        os.dup2(decoy.fileno(), number)  # the number now names another socket
        try:
            ours.send(udp_packet(SRC, DST))
            assert engine.from_tun() == []
            _, source = receiver.recvfrom(2048)
            assert source[1] == port != decoy.getsockname()[1]
        finally:
            os.close(number)
    finally:
        for s in (receiver, decoy):
            s.close()


def test_close_and_dealloc_release_the_engines_descriptors(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    _, theirs = pair
    pool = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    try:
        gc.collect()  # earlier tests' garbage holding descriptors goes now, not mid-count
        before = open_descriptors()
        engine = itr_to(9, theirs.fileno(), [s.fileno() for s in pool])
        engine.set_data_socket(4, pool[0].fileno())
        assert open_descriptors() == before + 5  # the TUN, three pool sockets, the data socket
        engine.set_pool(4, [pool[1].fileno()])  # replaced: the old copies are closed
        assert open_descriptors() == before + 3
        engine.close()
        assert open_descriptors() == before
        with pytest.raises(RuntimeError, match="no TUN"):
            engine.from_tun()
        assert engine.encap(udp_packet(SRC, DST)) is None  # no socket left: Python decides
        engine = itr_to(9, theirs.fileno(), [s.fileno() for s in pool])
        del engine
        gc.collect()
        assert open_descriptors() == before
    finally:
        for s in pool:
            s.close()


def test_the_compiled_path_closes_its_engines_copies(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """What Daemon.close calls: the TUN and the sockets the daemon closes are then closed for
    the engine too (the device disappears, the ports are free), whoever still holds it."""
    _, theirs = pair
    pool = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        before = open_descriptors()
        fast = CompiledPath(
            roles=["itr", "etr"],
            mtu=1500,
            tun_fd=theirs.fileno(),
            offloads=False,
            families=(4,),
            own_rlocs=(),
            nat_port=None,
        )
        fast.use_sockets({4: pool}, {4: pool[0]})
        shared = 1 if fast.shared_table else 0  # the shared forwarding table's memfd
        assert open_descriptors() == before + 4 + shared
        kept = fast.engine  # a reference elsewhere does not keep them open
        fast.close()
        assert open_descriptors() == before
        assert kept.counters()["packets"]["itr.encap.packets"] == 0
    finally:
        for s in pool:
            s.close()


def test_a_bad_descriptor_is_refused_and_changes_nothing() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        engine = itr_to(9, -1, [sock.fileno()])
        with pytest.raises(OSError) as failed:
            engine.set_pool(4, [sock.fileno(), 1_000_000])
        assert failed.value.errno == 9
        with pytest.raises(OSError):
            engine.set_data_socket(4, 1_000_000)
        with pytest.raises(OSError):
            _accel.Engine(tun_fd=1_000_000)
        out = engine.encap(udp_packet(SRC, DST))
        assert out is not None and out[2] == sock.fileno()  # the pool as it was
    finally:
        sock.close()


# --- re-entry -----------------------------------------------------------------------------------


def test_the_punt_handler_cannot_reenter_or_reinitialise_the_engine(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    engine = _accel.Engine(etr=True)  # an empty database: every datagram is punted
    seen: list[str] = []

    def handler(payload: bytes, ttl: int, tos: int, source: str, port: int) -> None:
        for call in (
            lambda: engine.from_udp(theirs.fileno()),
            lambda: engine.fuzz_udp([(payload, 0)]),
            lambda: engine.__init__(etr=True),
            lambda: engine.set_pool(4, []),
            engine.close,
        ):
            with pytest.raises(RuntimeError, match="reading"):
                call()
        engine.db_set(0, packed("203.0.113.0"), 24)  # table changes are fine mid-batch
        seen.append(source)

    for _ in range(3):
        ours.send(lisp_header() + udp_packet(SRC, DST))
    assert engine.from_udp(theirs.fileno(), handler) == []
    # the first: no local EID yet; the second: the database changed in between, but the
    # first datagram of a new ITR goes to Python; the third is decapsulated (to no TUN)
    assert seen == ["::", "::"]  # a socket pair's source is no address: the unspecified one
    assert drops(engine) == {"tun-write-failed": 1}


def test_an_engine_not_initialised_refuses_everything() -> None:
    engine = _accel.Engine.__new__(_accel.Engine)
    for call in (
        engine.from_tun,
        engine.counters,
        lambda: engine.map_set(0, bytes(4), 0, None),
        lambda: engine.fuzz_tun([b""]),
    ):
        with pytest.raises(RuntimeError, match="__init__"):
            call()


# --- drops --------------------------------------------------------------------------------------


def test_tun_reads_the_engine_discards_are_counted_by_reason(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    engine = _accel.Engine(itr=True, tun_fd=theirs.fileno(), vnet=True, gso=True)
    tcp = tcp_packet(SRC, DST, payload=bytes(3000))
    udp = udp_packet(SRC, DST, payload=bytes(3000))
    reads = [
        b"\x00" * 5,  # shorter than the virtio-net header
        bytes(BIG),  # more than a slot holds
        vnet_header(0, 3, 40, 1400) + udp,  # UDP fragmentation offload: never asked for
        vnet_header(0, 1, 40, 0) + tcp,  # TSO without a segment size
        vnet_header(0, 4, 40, 1400) + tcp,  # TCPv6 segmentation of an IPv4 packet
        vnet_header(1, 0, 0, 0, 20, 9000) + udp,  # checksum offset past the end
        vnet_header(0, 1, 28, 1400) + udp,  # TCPv4 segmentation of UDP
        vnet_header() + udp,  # a good one, punted (no tables)
    ]
    for read in reads:
        ours.send(read)
    assert engine.from_tun() == [udp]
    assert drops(engine) == {
        "tun-read-short": 1,
        "tun-read-truncated": 1,
        "tun-bad-vnet-header": 4,
        "tso-unsupported": 1,
    }


def test_a_datagram_larger_than_the_buffer_is_counted_not_parsed(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    engine = _accel.Engine(etr=True)
    ours.send(lisp_header() + bytes(BIG))
    ours.send(lisp_header() + udp_packet(SRC, DST))
    punted = engine.from_udp(theirs.fileno())
    assert [p[0] for p in punted] == [lisp_header() + udp_packet(SRC, DST)]
    assert drops(engine) == {"udp-read-truncated": 1}


def test_what_a_failing_handler_leaves_behind_is_counted(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    engine = _accel.Engine(etr=True)

    def fail(*_: object) -> None:
        raise MemoryError("the handler failed")

    first = lisp_header() + udp_packet(SRC, DST)
    coalesced = [first] * 3
    for _ in range(3):
        ours.send(first)
    with pytest.raises(MemoryError):
        engine.from_udp(theirs.fileno(), fail)
    assert drops(engine) == {"punt-aborted": 2}  # read with the first, then left
    for _ in range(2):  # coalesced by GRO: three datagrams in each message
        ours.send(b"".join(coalesced))
    with pytest.raises(MemoryError):
        engine.from_udp(theirs.fileno(), fail)
    # a socket pair has no GRO: each message is one (long, malformed) datagram
    assert drops(engine) == {"punt-aborted": 3}
    tun_ours, tun_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        tun_theirs.setblocking(False)
        itr = _accel.Engine(itr=True, tun_fd=tun_theirs.fileno(), vnet=True, gso=True)
        pkt = tcp_packet(SRC, DST, payload=bytes(5000), flags=ACK | PSH)
        tun_ours.send(vnet_header(0, 1, 40, 1000) + pkt)  # five segments, all for Python
        with pytest.raises(MemoryError):
            itr.from_tun(fail)
        assert drops(itr) == {"punt-aborted": 4}
    finally:
        tun_ours.close()
        tun_theirs.close()


def test_the_engines_drop_reasons_reach_show_stats(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    engine = _accel.Engine(itr=True, tun_fd=theirs.fileno(), vnet=True, gso=True)
    ours.send(b"\x01\x02")
    engine.from_tun()
    snapshot: dict[str, Any] = {"packets": {}, "drops": {"truncated-header": 2}}
    merge_counts(snapshot, engine.counters())
    assert snapshot["drops"] == {"truncated-header": 2, "tun-read-short": 1}
    text = format_stats(snapshot)
    assert "tun-read-short" in text and "Drops: 3 in 2 reasons" in text


# --- arguments ----------------------------------------------------------------------------------


def test_instance_ids_are_checked_not_wrapped() -> None:
    engine = _accel.Engine(itr=True)
    rlocs = [(packed("192.0.2.1"), 4341, 1, False)]
    for iid, error in (
        (2**64 + 5, OverflowError),
        (-1, OverflowError),
        (2**24, ValueError),
        ("5", TypeError),
    ):
        with pytest.raises(error):
            engine.map_set(iid, packed("203.0.113.0"), 24, rlocs)
        with pytest.raises(error):
            engine.db_set(iid, packed("203.0.113.0"), 24)
        with pytest.raises(error):
            engine.lookup(iid, packed("203.0.113.1"))
    assert len(engine) == 0
    engine.map_set(True, packed("203.0.113.0"), 24, rlocs)  # an int (bool) is one
    assert engine.lookup(1, packed("203.0.113.1")) == [(packed("192.0.2.1"), 4341, 1, False)]
    assert engine.lookup(5, packed("203.0.113.1")) is None


def test_the_mtu_must_leave_room_for_the_tunnel() -> None:
    for mtu in (0, -1, 67, 65536):
        with pytest.raises(ValueError, match="mtu"):
            _accel.Engine(mtu=mtu)
    assert _accel.Engine(mtu=68) is not None


def test_fuzz_entry_points_take_one_round_at_most() -> None:
    engine = _accel.Engine(itr=True)
    with pytest.raises(ValueError, match="64"):
        engine.fuzz_tun([b""] * 65)
    with pytest.raises(ValueError, match="64"):
        engine.fuzz_udp([(b"", 0)] * 65)
    with pytest.raises(TypeError):
        engine.fuzz_udp([b"no segment size"])
    assert engine.fuzz_tun([b"", b"\x45"]) == [("punt", b""), ("punt", b"\x45")]


def test_merging_keeps_segments_whose_ipv4_flags_differ_apart() -> None:
    """The kernel segments a merged packet with its first segment's IP flags: a segment with
    the reserved bit set must not be folded into one without it."""
    from tests.unit.test_fastpath_offloads import flow

    first, second = flow(4, [1000, 1000])
    assert len(_accel.merge([first, second])) == 1
    odd = bytearray(second)
    odd[6] |= 0x80  # the reserved ("evil") bit, DF kept
    odd[10:12] = b"\0\0"
    odd[10:12] = internet_checksum(bytes(odd[:20])).to_bytes(2, "big")
    assert len(_accel.merge([first, bytes(odd)])) == 2
