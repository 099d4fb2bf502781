"""A TCP bulk transfer with an end-to-end checksum, run inside lab namespaces.

``python -m lispd.lab.transfer serve ADDR PORT`` accepts one connection, reads to EOF and prints
``<bytes> <sha256>``; ``python -m lispd.lab.transfer send ADDR PORT BYTES`` sends BYTES of
seeded pseudo-random data and prints the same line for what it sent.  Equal lines prove the
data crossed intact.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import socket
import sys

CHUNK = 65536


def serve(addr: str, port: int, timeout: float) -> int:
    """Receive one connection's bytes; print their count and SHA-256."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as lsock:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((addr, port))
        lsock.listen(1)
        print("listening", flush=True)
        lsock.settimeout(timeout)
        conn, _ = lsock.accept()
        with conn:
            conn.settimeout(timeout)
            digest, total = hashlib.sha256(), 0
            while chunk := conn.recv(CHUNK):
                digest.update(chunk)
                total += len(chunk)
    print(total, digest.hexdigest(), flush=True)
    return 0


def send(addr: str, port: int, nbytes: int, seed: int, timeout: float) -> int:
    """Send ``nbytes`` of seeded random data; print their count and SHA-256."""
    rng = random.Random(seed)
    digest, left = hashlib.sha256(), nbytes
    with socket.create_connection((addr, port), timeout=timeout) as sock:
        while left:
            chunk = rng.randbytes(min(CHUNK, left))
            sock.sendall(chunk)
            digest.update(chunk)
            left -= len(chunk)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(1)  # wait for the receiver to close: everything was read
    print(nbytes, digest.hexdigest(), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m lispd.lab.transfer")
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("serve")
    s.add_argument("addr")
    s.add_argument("port", type=int)
    c = sub.add_parser("send")
    c.add_argument("addr")
    c.add_argument("port", type=int)
    c.add_argument("nbytes", type=int)
    c.add_argument("--seed", type=int, default=1)
    for p in (s, c):
        p.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.mode == "serve":
        return serve(args.addr, args.port, args.timeout)
    return send(args.addr, args.port, args.nbytes, args.seed, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
