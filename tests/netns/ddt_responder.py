"""A fake DDT node, Map-Server or ETR for the ``rig`` namespace tests: canned answers built with
:mod:`lispd.wire`.

Run inside a namespace (``python -m tests.netns.ddt_responder --listen ADDR --rules JSON``).
It listens on ``ADDR``:4342, prints ``ready``, and answers each ECM'd Map-Request:

- by default (DDT node or Map-Server) only DDT-originated ones (ECM D bit), with the
  Map-Referral of the first rule whose ``eid`` prefix holds the requested EID (``action``,
  ``prefix``, ``ttl``, ``referrals`` as ``[address, priority, weight]``), sent from ADDR:4342 to
  the ECM's outer source at its inner UDP source port; before it, a truncated Map-Referral and
  one with another nonce (noise rig must ignore).  A rule with ``forward`` also passes the
  request on, unchanged, to that address's port 4342 (a Map-Server forwarding to the ETR).
  No rule matches: no answer.
- with ``--etr``: every Map-Request (ECM'd, D bit or not) with a Map-Reply to its first
  ITR-RLOC at the inner UDP source port: one record, ``--rules`` then being
  ``{"prefix": ..., "locators": [[address, priority, weight], ...]}``.

On SIGTERM it prints one JSON line of counts (``requests``, ``answered``, ``forwarded``,
``ignored``) and exits.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import socket
import sys
from typing import Any

from lispd.wire.ecm import decode_ecm
from lispd.wire.errors import WireError
from lispd.wire.mapreferral import MapReferral, ReferralAction, ReferralRecord, encode_map_referral
from lispd.wire.mapreply import MapReply, encode_map_reply
from lispd.wire.maprequest import MapRequest
from lispd.wire.records import EidRecord, Locator

PORT = 4342
ACTIONS = {
    "node-referral": ReferralAction.NODE_REFERRAL,
    "ms-referral": ReferralAction.MS_REFERRAL,
    "ms-ack": ReferralAction.MS_ACK,
    "ms-not-registered": ReferralAction.MS_NOT_REGISTERED,
    "delegation-hole": ReferralAction.DELEGATION_HOLE,
    "not-authoritative": ReferralAction.NOT_AUTHORITATIVE,
}


def _locators(entries: list[list[Any]]) -> tuple[Locator, ...]:
    return tuple(Locator(ipaddress.ip_address(a), int(p), int(w)) for a, p, w in entries)


def _referral(rule: dict[str, Any], nonce: int) -> bytes:
    net = ipaddress.ip_network(rule["prefix"])
    record = ReferralRecord(
        eid=net.network_address,
        mask_len=net.prefixlen,
        referrals=_locators(rule.get("referrals", [])),
        ttl=int(rule.get("ttl", 1440)),
        action=ACTIONS[rule["action"]],
        authoritative=True,
    )
    return encode_map_referral(MapReferral(nonce, (record,)))


def main() -> int:
    """Serve until SIGTERM."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--rules", required=True)
    parser.add_argument("--etr", action="store_true")
    args = parser.parse_args()
    rules = json.loads(args.rules)
    counts = {"requests": 0, "answered": 0, "forwarded": 0, "ignored": 0}

    def stop(signum: int, frame: Any) -> None:
        print(json.dumps(counts), flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.listen, PORT))
    print("ready", flush=True)
    while True:
        data, (src, _) = sock.recvfrom(65535)
        try:
            ecm = decode_ecm(data)
        except (WireError, ValueError):
            counts["ignored"] += 1
            continue
        request = ecm.message
        if not isinstance(request, MapRequest) or not request.records:
            counts["ignored"] += 1
            continue
        counts["requests"] += 1
        if args.etr:
            net = ipaddress.ip_network(rules["prefix"])
            record = EidRecord(
                net.network_address, net.prefixlen, _locators(rules["locators"]), ttl=1440,
                authoritative=True,
            )  # fmt: skip
            reply = encode_map_reply(MapReply(request.nonce, (record,)))
            sock.sendto(reply, (str(request.itr_rlocs[0]), ecm.sport))
            counts["answered"] += 1
            continue
        eid = request.records[0].address
        rule = next((r for r in rules if ecm.ddt and eid in ipaddress.ip_network(r["eid"])), None)
        if rule is None:
            counts["ignored"] += 1
            continue
        dst = (src, ecm.sport)
        sock.sendto(_referral(rule, request.nonce)[:-3], dst)
        sock.sendto(_referral(rule, request.nonce ^ 0xFF), dst)
        sock.sendto(_referral(rule, request.nonce), dst)
        counts["answered"] += 1
        if rule.get("forward"):
            sock.sendto(data, (rule["forward"], PORT))
            counts["forwarded"] += 1


if __name__ == "__main__":
    sys.exit(main())
