"""Dispatch on the control message type: bytes from UDP 4342 in, a message object out."""

from __future__ import annotations

from collections.abc import Callable

from lispd.wire.ecm import TYPE_ECM, EncapsulatedControl, decode_ecm, encode_ecm
from lispd.wire.errors import TRUNCATED, UNSUPPORTED_TYPE, EncodeError, WireError
from lispd.wire.info import TYPE_INFO, InfoMessage, decode_info, encode_info
from lispd.wire.mapreferral import (
    TYPE_MAP_REFERRAL,
    MapReferral,
    decode_map_referral,
    encode_map_referral,
)
from lispd.wire.mapregister import (
    TYPE_MAP_NOTIFY,
    TYPE_MAP_NOTIFY_ACK,
    TYPE_MAP_REGISTER,
    MapNotify,
    MapRegister,
    decode_map_notify,
    decode_map_register,
    encode_map_notify,
    encode_map_register,
)
from lispd.wire.mapreply import TYPE_MAP_REPLY, MapReply, decode_map_reply, encode_map_reply
from lispd.wire.maprequest import (
    TYPE_MAP_REQUEST,
    MapRequest,
    decode_map_request,
    encode_map_request,
)

ControlMessage = (
    MapRequest
    | MapReply
    | MapRegister
    | MapNotify
    | MapReferral
    | InfoMessage
    | EncapsulatedControl
)

_DECODERS: dict[int, Callable[[bytes], ControlMessage]] = {
    TYPE_MAP_REQUEST: decode_map_request,
    TYPE_MAP_REPLY: decode_map_reply,
    TYPE_MAP_REGISTER: decode_map_register,
    TYPE_MAP_NOTIFY: decode_map_notify,
    TYPE_MAP_NOTIFY_ACK: decode_map_notify,
    TYPE_MAP_REFERRAL: decode_map_referral,
    TYPE_INFO: decode_info,
    TYPE_ECM: decode_ecm,
}

MESSAGE_NAMES = {
    TYPE_MAP_REQUEST: "map-request",
    TYPE_MAP_REPLY: "map-reply",
    TYPE_MAP_REGISTER: "map-register",
    TYPE_MAP_NOTIFY: "map-notify",
    TYPE_MAP_NOTIFY_ACK: "map-notify-ack",
    TYPE_MAP_REFERRAL: "map-referral",
    TYPE_INFO: "info",
    TYPE_ECM: "ecm",
}


def control_type(data: bytes) -> int:
    """The message type nibble of a control message."""
    if not data:
        raise WireError(TRUNCATED, "empty control message")
    return data[0] >> 4


def decode_control(data: bytes) -> ControlMessage:
    """Decode any control message lispd understands; others raise ``unsupported-type``."""
    msg_type = control_type(data)
    decoder = _DECODERS.get(msg_type)
    if decoder is None:
        name = MESSAGE_NAMES.get(msg_type, f"type {msg_type}")
        raise WireError(UNSUPPORTED_TYPE, f"{name} is not supported")
    return decoder(data)


def encode_control(m: ControlMessage) -> bytes:
    """Bytes of any control message (authentication data written as held in the message)."""
    if isinstance(m, MapRequest):
        return encode_map_request(m)
    if isinstance(m, MapReply):
        return encode_map_reply(m)
    if isinstance(m, MapRegister):
        return encode_map_register(m)
    if isinstance(m, MapNotify):
        return encode_map_notify(m)
    if isinstance(m, MapReferral):
        return encode_map_referral(m)
    if isinstance(m, InfoMessage):
        return encode_info(m)
    if isinstance(m, EncapsulatedControl):
        return encode_ecm(m)
    raise EncodeError(f"not a control message: {type(m).__name__}")
