"""What the socketless daemon tests share: a minimal xTR configuration (one IPv4 EID-prefix,
one RLOC, no control socket, no map-cache probing) that ``extra`` extends."""

from __future__ import annotations

XTR_CONFIG = """
[daemon]
name = "xtr1"
roles = ["itr", "etr"]
control-socket = ""

[underlay]
rlocs = ["192.0.2.1"]

[[database-mapping]]
eid-prefix = "198.51.100.0/28"
rlocs = [{ address = "192.0.2.1" }]

[probing]
map-cache = false
"""


def xtr_config(extra: str = "") -> str:
    """The minimal xTR configuration with ``extra`` (more tables) appended."""
    return XTR_CONFIG + extra
