"""What the namespace tests share: lispd.conf texts for the usual nodes, a TCP transfer."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from lispd.lab import Lab, SiteHandle

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def site_tables(sites: Iterable[SiteHandle], keys: Mapping[int, str]) -> str:
    """``[[site]]`` tables allowing each site's IPv4 and IPv6 prefix, keyed by site index."""
    return "".join(
        f"""
[[site]]
name = "site{s.index}"
key = "{keys[s.index]}"
eid-prefixes = [{{ eid-prefix = "{s.prefix_v4}" }}, {{ eid-prefix = "{s.prefix_v6}" }}]
"""
        for s in sites
    )


def ms_config(
    name: str,
    rloc: str,
    sock: str,
    sites: Iterable[SiteHandle],
    keys: Mapping[int, str],
    *,
    roles: str = '"map-server", "map-resolver"',
    extra: str = "",
) -> str:
    """A Map-Server/Map-Resolver serving ``sites``; ``extra`` is appended before the sites."""
    return f"""
[daemon]
name = "{name}"
roles = [{roles}]
log-level = "debug"
control-socket = "{sock}"

[underlay]
rlocs = ["{rloc}"]
{extra}
{site_tables(sites, keys)}"""


def xtr_config(
    site: SiteHandle,
    sock: str,
    ms: str,
    key: str,
    *,
    eid_space: tuple[str, str] = ("0.0.0.0/0", "::/0"),
    rloc_table: str | None = None,
    extra: str = "",
) -> str:
    """An xTR of ``site`` registering with and resolving through ``ms``; destinations in
    ``eid_space`` are resolved; ``rloc_table`` replaces its database RLOC (default: its own
    address); ``extra`` is appended."""
    rlocs = rloc_table or f'{{ address = "{site.rloc}" }}'
    return f"""
[daemon]
name = "{site.xtr}"
roles = ["itr", "etr"]
log-level = "debug"
control-socket = "{sock}"

[underlay]
rlocs = ["{site.rloc}"]

[[database-mapping]]
eid-prefix = "{site.prefix_v4}"
rlocs = [{rlocs}]

[[database-mapping]]
eid-prefix = "{site.prefix_v6}"
rlocs = [{rlocs}]

[[map-cache]]
eid-prefix = "{eid_space[0]}"
action = "send-map-request"

[[map-cache]]
eid-prefix = "{eid_space[1]}"
action = "send-map-request"

[[map-server]]
address = "{ms}"
key = "{key}"

[[map-resolver]]
address = "{ms}"
{extra}"""


def transfer(lab: Lab, src: str, dst: str, dst_addr: str, nbytes: int = 2_000_000) -> None:
    """A checksummed TCP transfer of ``nbytes`` from node ``src`` to ``dst_addr`` on ``dst``:
    what the receiver counted and hashed must be what the sender sent."""
    env = {**os.environ, "PYTHONPATH": REPO}
    server = lab.popen(
        dst,
        [sys.executable, "-m", "lispd.lab.transfer", "serve", dst_addr, "5001"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert server.stdout is not None and server.stdout.readline().strip() == "listening"
    sent = lab.run(
        src, sys.executable, "-m", "lispd.lab.transfer", "send", dst_addr, "5001", str(nbytes),
        timeout=60, env={"PYTHONPATH": REPO},
    ).stdout.split()  # fmt: skip
    assert sent == server.stdout.readline().split()
    server.wait(timeout=10)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``check`` every 0.1 s until it returns something true (returned); fail the test
    naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
