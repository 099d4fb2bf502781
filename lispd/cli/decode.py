"""``lispd decode``: print every LISP message in hex input or a capture file as JSON lines.

A packet the capture cut short (``tcpdump -s 256``) is reported with the headers it has and
``"truncated": true, "captured": N, "length": M`` (bytes of the IP packet captured, and its
length by its IP header) instead of a ``truncated`` error."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from lispd.tools.pcap import PcapError, ip_payload, read_packets
from lispd.wire.control import decode_control
from lispd.wire.data import decode_data_header
from lispd.wire.errors import WireError
from lispd.wire.jsonview import to_jsonable
from lispd.wire.packet import LispPacket, decode_ip_packet
from lispd.wire.trace import decode_trace

LAYERS = ("auto", "ip", "control", "data", "trace")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``decode`` sub-command's options."""
    parser.add_argument(
        "hex",
        nargs="*",
        help="hex bytes (spaces and colons allowed): an IP packet or a bare LISP message",
    )
    parser.add_argument("--pcap", metavar="FILE", help="read packets from a pcap/pcapng file")
    parser.add_argument(
        "--as",
        dest="layer",
        choices=LAYERS,
        default="auto",
        help="what the hex input is (auto: an IP packet on a LISP port, else a control message)",
    )


def _packet_json(pkt: LispPacket) -> dict[str, Any]:
    out: dict[str, Any] = {
        "layer": pkt.kind,
        "src": str(pkt.ip.src),
        "dst": str(pkt.ip.dst),
        "sport": pkt.sport,
        "dport": pkt.dport,
    }
    if pkt.truncated:
        out.update(truncated=True, captured=pkt.captured, length=pkt.length)
    if pkt.error is not None:
        out["error"] = pkt.error
        out["detail"] = pkt.error_detail
        if pkt.message_type is not None:
            out["message_type"] = pkt.message_type
        return out
    out["message"] = to_jsonable(pkt.message)
    if pkt.inner is not None:
        out["inner"] = to_jsonable(pkt.inner)
    return out


def _bare_json(layer: str, data: bytes) -> dict[str, Any]:
    decoders: dict[str, Callable[[bytes], object]] = {
        "control": decode_control,
        "data": decode_data_header,
        "trace": decode_trace,
    }
    try:
        return {"layer": layer, "message": to_jsonable(decoders[layer](data))}
    except WireError as exc:
        return {"layer": layer, "error": exc.reason, "detail": exc.detail}


def decode_hex(text: str, layer: str = "auto") -> dict[str, Any]:
    """The JSON object for one hex input."""
    cleaned = "".join(ch for ch in text if ch not in " :\n\t")
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    try:
        data = bytes.fromhex(cleaned)
    except ValueError:
        return {"error": "bad-hex", "detail": "input is not hexadecimal"}
    if layer in ("auto", "ip"):
        pkt = decode_ip_packet(data)
        if pkt is not None:
            return _packet_json(pkt)
        if layer == "ip":
            return {"layer": "ip", "error": "not-lisp", "detail": "no LISP message found"}
        layer = "control"
    return _bare_json(layer, data)


def decode_capture(data: bytes) -> Iterator[dict[str, Any]]:
    """JSON objects for every LISP packet of a capture file's bytes (others are skipped); a
    packet the capture's snap length cut short is decoded as far as it goes."""
    for captured in read_packets(data):
        ip = ip_payload(captured.linktype, captured.frame)
        if ip is None:
            continue
        pkt = decode_ip_packet(ip, cut=captured.cut)
        if pkt is None:
            continue
        yield {"frame": captured.index, "time": captured.timestamp, **_packet_json(pkt)}


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Execute ``lispd decode``; exit status 0, or 2 on unusable input."""
    if args.pcap:
        try:
            with open(args.pcap, "rb") as fh:
                data = fh.read()
            for obj in decode_capture(data):
                out.write(json.dumps(obj) + "\n")
        except OSError as exc:
            print(f"lispd decode: {args.pcap}: {exc.strerror}", file=sys.stderr)
            return 2
        except PcapError as exc:
            print(f"lispd decode: {args.pcap}: not a usable capture: {exc}", file=sys.stderr)
            return 2
        return 0
    inputs = args.hex or [line for line in sys.stdin.read().splitlines() if line.strip()]
    if not inputs:
        print("lispd decode: give hex bytes or --pcap FILE", file=sys.stderr)
        return 2
    for text in inputs:
        out.write(json.dumps(decode_hex(text, args.layer)) + "\n")
    return 0
