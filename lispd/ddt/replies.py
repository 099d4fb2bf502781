"""What every DDT answerer shares: action names, the referral set on the wire, and the
Map-Referral datagram (sent back to the ECM's outer source address and port)."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

from lispd.control.outputs import SendControl
from lispd.wire.address import eid_prefix
from lispd.wire.mapreferral import MapReferral, ReferralAction, ReferralRecord, encode_map_referral
from lispd.wire.records import Locator

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

ACTION_NAMES: dict[ReferralAction, str] = {
    action: action.name.lower().replace("_", "-") for action in ReferralAction
}
"""``node-referral``, ``ms-referral``, ``ms-ack``, ... as logs, counters and lispctl say them."""

REFERRAL_WEIGHT = 100
"""The weight every member of a configured referral set is handed out with."""


def referral_set(addresses: Iterable[IPAddress]) -> tuple[Locator, ...]:
    """A configured referral set as locators: priority by position (1, 2, ...: the order of
    preference written in the file), equal weights."""
    return tuple(
        Locator(address=a, priority=min(index + 1, 254), weight=REFERRAL_WEIGHT)
        for index, a in enumerate(addresses)
    )


def host_prefix(address: IPAddress, mask_len: int) -> IPNetwork:
    """The prefix a Map-Request asked for: ``address`` with ``mask_len`` clamped to its family
    (what a not-authoritative answer names)."""
    bits = 32 if address.version == 4 else 128
    return ip_network((address, max(0, min(mask_len, bits))), strict=False)


def referral_datagram(
    dst: IPAddress,
    port: int,
    nonce: int,
    iid: int,
    prefix: IPNetwork,
    action: ReferralAction,
    ttl: int,
    referrals: tuple[Locator, ...] = (),
    *,
    authoritative: bool = True,
) -> SendControl:
    """A one-record Map-Referral to ``dst``:``port``; raises ``lispd.wire.errors.EncodeError``
    when it cannot be
    encoded (an instance-id or TTL out of range)."""
    eid, mask_len = eid_prefix(iid, prefix)
    record = ReferralRecord(
        eid=eid,
        mask_len=mask_len,
        referrals=referrals,
        ttl=ttl,
        action=action,
        authoritative=authoritative,
    )
    payload = encode_map_referral(MapReferral(nonce=nonce, records=(record,)))
    return SendControl(dst, port, payload)


__all__ = [
    "ACTION_NAMES",
    "IPAddress",
    "IPNetwork",
    "host_prefix",
    "referral_datagram",
    "referral_set",
]
