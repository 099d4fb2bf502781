"""Builds lispd's compiled fast path (lispd.engine._accel) with the package.

The extension is optional: without a C compiler the build goes on and lispd runs the
pure-Python fast path (``[dataplane] fastpath = "auto"``).

``LISPD_SANITIZE=1`` builds it with AddressSanitizer and UndefinedBehaviorSanitizer (and
-Werror); such a build only loads with gcc's libasan preloaded: see README, "Fuzzing and soak".
``LISPD_SANITIZE=undefined`` builds it with UBSan alone (loads anywhere).
``python -m tests.fuzz.sanitizer build DIR`` makes one in a directory of its own, from
:func:`accel_extension` below, without touching the installed build.
"""

import os

from setuptools import Extension, setup

CSRC = "lispd/engine/csrc/"
SOURCES = ("lpm.c", "maptable.c", "packet.c", "engine.c", "module.c")
HEADERS = ("cursor.h", "lpm.h", "maptable.h", "packet.h", "engine.h")
WARNINGS = ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"]
ASAN_UBSAN = "address,undefined"


def sanitizer_flags(sanitizers: str) -> list[str]:
    """Compile and link flags for ``-fsanitize=sanitizers``, every report fatal."""
    return [f"-fsanitize={sanitizers}", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


def accel_extension(sanitize: str = "", root: str = "") -> Extension:
    """The ``lispd.engine._accel`` extension (``root``: the repository, when not the current
    directory); ``sanitize``: the -fsanitize list ("address,undefined", "undefined"), built
    -O1 -g with warnings as errors."""
    if sanitize:
        compile_args = ["-O1", "-g", *WARNINGS, "-Werror", *sanitizer_flags(sanitize)]
        link_args = sanitizer_flags(sanitize)
    else:
        compile_args = ["-O2", *WARNINGS]
        link_args = []
    return Extension(
        "lispd.engine._accel",
        sources=[os.path.join(root, CSRC + name) for name in SOURCES],
        depends=[os.path.join(root, CSRC + name) for name in HEADERS],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        optional=not sanitize,  # a sanitizer build that fails must say so
    )


if __name__ == "__main__":  # also how setuptools' build backend runs this file
    wanted = os.environ.get("LISPD_SANITIZE", "")
    setup(ext_modules=[accel_extension(sanitize=ASAN_UBSAN if wanted == "1" else wanted)])
