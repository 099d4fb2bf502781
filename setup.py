"""Builds lispd's compiled fast path (lispd.fastpath._accel) with the package.

The extension is optional: without a C compiler the build goes on and lispd runs the
pure-Python fast path (``[dataplane] fastpath = "auto"``).
"""

from setuptools import Extension, setup

CSRC = "lispd/fastpath/csrc/"

setup(
    ext_modules=[
        Extension(
            "lispd.fastpath._accel",
            sources=[CSRC + name for name in ("lpm.c", "packet.c", "engine.c", "module.c")],
            depends=[CSRC + name for name in ("lpm.h", "packet.h", "engine.h")],
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
