"""What the socketless daemon tests share: a minimal xTR configuration (one IPv4 EID-prefix,
one RLOC, no control socket, no map-cache probing) that more tables extend."""

from __future__ import annotations

from typing import Any

from tests import configs


def xtr_config(**tables: Any) -> str:
    """The minimal xTR configuration with ``tables`` (see :func:`tests.configs.merge`)."""
    return configs.toml(configs.xtr(probing={"map-cache": False}, **tables))
