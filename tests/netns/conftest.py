"""Every test under tests/netns is marked ``netns`` and skipped unless we are root with ``ip``.

A session fixture checks at the end that no namespace of this test run is left behind.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def netns_skip_reason() -> str | None:
    """Why network-namespace tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "network-namespace tests need root"
    if shutil.which("ip") is None:
        return "network-namespace tests need iproute2 (the ip command)"
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of this directory ``netns`` (before ``-m`` deselects) and skip them
    when :func:`netns_skip_reason` says so."""
    reason = netns_skip_reason()
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.netns)
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def _no_leftover_namespaces() -> Iterator[None]:
    """After the last netns test: no namespace created by this process may remain."""
    yield
    if netns_skip_reason() is not None:
        return
    from lispd.lab.netns import NS_PREFIX, list_namespaces

    mine = re.compile(rf"^{NS_PREFIX}{os.getpid()}[a-z]-")
    left = [n for n in list_namespaces() if mine.match(n)]
    assert not left, f"namespaces left behind: {left}"
