"""Material the tests may use from outside the repository, found in one place.

The project's CI has a folder ``shared/`` beside the checkout with real captures of other LISP
implementations (``shared/captures/``).  A user who clones the repository does not, and the
suite must still pass for them: every test that reads those files asks this module where they
are and skips, naming the missing folder, when they are absent.  Fuzz seeds fall back to what
lispd's own encoders build (``tests.fuzz.seeds``).

``LISPD_SHARED_DIR`` overrides the location; ``tests/unit/test_fresh_clone.py`` points it at a
folder that does not exist and runs every module that imports this one, so the suite is proven
green without it.  No other test file may name the folder (the same test checks that).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
"""The root of this checkout."""

SHARED_ENV = "LISPD_SHARED_DIR"
"""Environment variable naming the shared folder instead of ``../shared``."""


def shared_dir() -> Path:
    """The folder of material beside the checkout (``../shared`` unless overridden)."""
    override = os.environ.get(SHARED_ENV)
    return Path(override) if override else REPOSITORY.parent / "shared"


CAPTURES = shared_dir() / "captures"
"""Real captures of other implementations (pcap/pcapng), when present."""


def capture_files() -> list[Path]:
    """Every ``*.pcap`` in :data:`CAPTURES`, sorted; empty when the folder is absent."""
    return sorted(CAPTURES.glob("*.pcap")) if CAPTURES.is_dir() else []


MISSING_CAPTURES = (
    f"needs the captures of other implementations in {CAPTURES}, which is not there "
    f"(it sits beside the checkout in CI, not in a clone; set {SHARED_ENV} to use another place)"
)
"""The skip reason of every test that needs :data:`CAPTURES`."""

needs_captures = pytest.mark.skipif(not capture_files(), reason=MISSING_CAPTURES)
"""Marks a test that reads :data:`CAPTURES`."""


def capture(name: str) -> Path:
    """The path of one capture; skips the calling test when it is missing."""
    path = CAPTURES / name
    if not path.is_file():
        pytest.skip(MISSING_CAPTURES)
    return path
