"""Regression tests for inputs the entry-point fuzzer (``tests/fuzz/entrypoints.py``) found
reaching the node's per-packet guard: each is fed to the real :class:`lispd.daemon.Daemon`
through the fuzz harness's fake sockets (read by the daemon's readers into its
:class:`~lispd.node.Node`) and must end as a named drop, not ``internal-error``."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import ip_address

from lispd.wire.address import DistinguishedName
from lispd.wire.control import encode_control
from lispd.wire.data import IID_CONTROL, build_data_header
from lispd.wire.info import InfoMessage
from tests.fuzz.harness import FuzzInput, Harness, run_inputs

NATED_XTR = "203.0.113.2"


def _keepalive() -> bytes:
    """A NAT keepalive as an xTR behind a NAT sends it to its RTR's data port."""
    info = InfoMessage(nonce=5, address=DistinguishedName("xtr3"))
    return build_data_header(0x42, IID_CONTROL) + encode_control(info)


def test_rtr_nat_keepalive_from_port_zero_is_a_named_drop() -> None:
    """UDP source port 0 reaches a socket like any other; the RTR used to hand it to
    NatBindings.learn, which refuses port 0 with ValueError (internal-error)."""
    seen: dict[str, object] = {}

    def inputs(harness: Harness) -> Iterator[FuzzInput]:
        yield FuzzInput(_keepalive(), NATED_XTR, 0)
        seen["bound after port 0"] = len(harness.daemon.node.nat_bindings or ())
        yield FuzzInput(_keepalive(), NATED_XTR, 61000)
        bindings = harness.daemon.node.nat_bindings
        assert bindings is not None
        seen["port"] = bindings.port_for(ip_address(NATED_XTR))
        seen["drops"] = dict(harness.daemon.node.counters.drops)

    stats = run_inputs("rtr", "data", inputs)
    assert not stats.failure_kinds, [f.report() for f in stats.failures]
    assert seen["bound after port 0"] == 0
    assert seen["port"] == 61000
    drops = seen["drops"]
    assert isinstance(drops, dict)
    assert drops.get("nat-keepalive-port-zero") == 1
    assert "internal-error" not in drops


def test_trace_port_has_the_per_packet_guard() -> None:
    """Port 2434 had no guard: a bug while reading one datagram would have left the handler
    with the rest of the batch unread.  Now it costs that datagram, counted internal-error,
    like on the other sockets."""
    seen: dict[str, int] = {}

    def inputs(harness: Harness) -> Iterator[FuzzInput]:
        def broken(payload: bytes, src: str, sport: int) -> bool:
            raise RuntimeError("a bug")

        harness.daemon.node.tracer.learn_client = broken  # type: ignore[method-assign]
        sock = harness.trace_sockets[4]
        sock.push(FuzzInput(b"first", "192.0.2.6", 40000))
        sock.push(FuzzInput(b"second", "192.0.2.6", 40001))
        harness.daemon._on_trace_readable(sock)  # type: ignore[arg-type]
        seen.update(harness.daemon.node.counters.drops)
        return iter(())

    run_inputs("rtr", "trace", inputs)
    assert seen.get("internal-error") == 2  # both read, neither escaped
