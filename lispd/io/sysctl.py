"""The few per-interface kernel settings the data plane depends on."""

from __future__ import annotations

import logging
from pathlib import Path

from lispd.logfmt import kv

log = logging.getLogger("lispd.io.sysctl")


def set_sysctl(key: str, value: str) -> bool:
    """Write ``value`` to /proc/sys/``key`` (dots as slashes); False (logged) when refused."""
    path = Path("/proc/sys") / key.replace(".", "/")
    try:
        path.write_text(value)
    except OSError as exc:
        log.warning("sysctl refused %s", kv(key=key, value=value, error=exc.strerror))
        return False
    return True


def prepare_tun_interface(ifname: str) -> None:
    """Decapsulated packets arrive on the TUN with remote sources: no reverse-path filter
    there.  No IPv6 link-local address either (set before the link goes up), so the kernel sends
    no router solicitations or MLD reports into the tunnel: only EID traffic enters it."""
    set_sysctl(f"net.ipv4.conf.{ifname}.rp_filter", "0")
    # ICMP errors the ITR writes back into the TUN are sourced from its own RLOC address:
    # without accept_local the kernel would drop them as martians.
    set_sysctl(f"net.ipv4.conf.{ifname}.accept_local", "1")
    set_sysctl(f"net.ipv6.conf.{ifname}.addr_gen_mode", "1")
    set_sysctl(f"net.ipv6.conf.{ifname}.accept_ra", "0")
    set_sysctl(f"net.ipv6.conf.{ifname}.autoconf", "0")
