"""The router's core as one sans-IO object: :class:`Node` (inputs bytes and ``now``, outputs
:mod:`lispd.node.actions`)."""

from lispd.node.node import (
    DATA_ROLES,
    TUN_ROLES,
    Node,
    ReloadOutcome,
    control_nonce,
)

__all__ = ["DATA_ROLES", "TUN_ROLES", "Node", "ReloadOutcome", "control_nonce"]
