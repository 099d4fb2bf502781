"""What the socketless node and daemon tests share: a minimal xTR configuration (one IPv4
EID-prefix, one RLOC, no control socket, no map-cache probing) that more tables extend, and
:func:`perform`, a shell for a :class:`~lispd.node.Node` whose every send and write works."""

from __future__ import annotations

from typing import Any

from lispd.node import Node
from lispd.node.actions import Action, ReturnTrace, SendDatagram, SendEncap, WriteTun
from tests import configs


def xtr_config(**tables: Any) -> str:
    """The minimal xTR configuration with ``tables`` (see :func:`tests.configs.merge`)."""
    return configs.toml(configs.xtr(probing={"map-cache": False}, **tables))


def perform(node: Node) -> list[Action]:
    """What :meth:`lispd.daemon.Daemon.transmit` does with the node's actions, without the
    I/O: every send and TUN write succeeds (and is accounted so), a :class:`ReturnTrace` is
    answered at once (no port 2434 to read first), route and engine actions are only
    recorded.  Every action taken, in order, until the node asks for nothing more."""
    done: list[Action] = []
    actions = node.take_actions()
    while actions:
        for action in actions:
            if isinstance(action, (SendEncap, SendDatagram, WriteTun)):
                node.account(action, None)
            elif isinstance(action, ReturnTrace):
                node.return_trace(action)
            done.append(action)
        actions = node.take_actions()
    return done
