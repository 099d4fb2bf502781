"""What the command-line tools share when reading their arguments."""

from __future__ import annotations

import argparse
import ipaddress
import math
import re
import sys
from typing import NoReturn

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_IID_PREFIX = re.compile(r"\[([0-9]+)\](.*)", re.ASCII | re.DOTALL)


def split_iid(text: str) -> tuple[int | None, str] | None:
    """``"[iid]rest"`` -> ``(iid, rest)``, ``"rest"`` -> ``(None, rest)`` (stripped); None when
    ``text`` starts with ``[`` but is not ``[digits]rest``.  The caller checks the range."""
    text = text.strip()
    if not text.startswith("["):
        return None, text
    match = _IID_PREFIX.fullmatch(text)
    return None if match is None else (int(match.group(1)), match.group(2))


def parse_address(text: str) -> IPAddress | None:
    """``text`` as an IP address, or None when it is not one (a host name).  Scoped IPv6
    addresses (``fe80::1%eth0``) are not EIDs and count as not an address."""
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def seconds(text: str) -> float:
    """An argparse type: a number of seconds, more than 0 and at most an hour."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 3600 seconds")
    return value


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors exit with ``usage_exit`` (each tool gives its exit codes
    their own meanings)."""

    usage_exit = 2

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(self.usage_exit, f"{self.prog}: error: {message}\n")
