"""A burst of Map-Requests from one ITR address, as an ITR resolving many flows at once sends
them (run inside a namespace by tests/netns/test_ddt.py)::

    python -m tests.netns.ddt_burst MAP-RESOLVER ITR-RLOC EID-PREFIX COUNT RATE [WAIT]

Sends COUNT ECM'd Map-Requests (lig's, each with a fresh nonce) for host addresses of
EID-PREFIX (instance-id 0) to MAP-RESOLVER from ITR-RLOC, RATE a second, then counts for up to
WAIT seconds (default 3) the Map-Replies that carry one of their nonces; prints ``sent N
replies M``.
Bounded in count and time; only the lab's addresses are ever sent to.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import sys
import time

from lispd.cli.lookup import Target, build_request, match_reply


def main(argv: list[str]) -> int:
    """Send the burst and print what came back."""
    mr, itr, prefix, count, rate = argv[0], argv[1], argv[2], int(argv[3]), float(argv[4])
    wait = float(argv[5]) if len(argv) > 5 else 3.0
    if not 0 < count <= 1000 or not 0 < rate <= 1000:
        raise SystemExit("COUNT and RATE must be 1..1000")
    net = ipaddress.ip_network(prefix)
    itr_rloc = ipaddress.ip_address(itr)
    family = socket.AF_INET if itr_rloc.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((itr, 0))
        port = sock.getsockname()[1]
        nonces: set[int] = set()
        hosts = net.num_addresses - 2 if net.num_addresses > 2 else 1
        start = time.monotonic()
        for i in range(count):
            pause = start + i / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            nonce = secrets.randbits(64)
            nonces.add(nonce)
            target = Target(0, net.network_address + 1 + i % hosts, net.max_prefixlen)
            sock.sendto(build_request(target, itr_rloc, port, nonce), (mr, 4342))
        answered: set[int] = set()
        sock.settimeout(0.2)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and len(answered) < count:
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            reply = match_reply(data, nonces)
            if reply is not None:
                answered.add(reply.nonce)
    print(f"sent {count} replies {len(answered)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
