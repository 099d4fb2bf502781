"""The compiled fast path is an optional extension: a failed build only warns, and lispd then
runs the Python path.  Where a C compiler and Python's headers exist (every machine
scripts/install prepares: gcc and python3-dev), it must have been built, or the compiled-path
tests elsewhere would skip and prove nothing."""

from __future__ import annotations

import os
import shutil
import sysconfig

import pytest

from lispd.engine import compiled


@pytest.mark.skipif(
    shutil.which("gcc") is None
    or not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")),
    reason="no C compiler or Python headers: the Python path is the expected one",
)
def test_the_extension_was_built_where_it_can_be() -> None:
    assert compiled.available(), "lispd.engine._accel did not build: see pip's output"
