"""The C engine built with AddressSanitizer + UndefinedBehaviorSanitizer, and run under them.

    python -m tests.fuzz.sanitizer build DIR [--plain | --ubsan]
    python -m tests.fuzz.sanitizer run DIR -- -m MODULE ARGS... | SCRIPT ARGS...
    python -m tests.fuzz.sanitizer check                     # can this machine do it?

``build`` compiles ``lispd.engine._accel`` from ``setup.py``'s :func:`accel_extension`
(-O1 -g -Werror -fsanitize=address,undefined -fno-sanitize-recover=all
-fno-omit-frame-pointer; ``--ubsan``: UndefinedBehaviorSanitizer alone, which needs no
preloaded runtime and so leaves atheris its coverage, see :func:`environment`) into DIR,
leaving the installed build alone.  ``run`` starts this
interpreter with gcc's libasan preloaded (``gcc -print-file-name=libasan.so``: CPython itself is
not instrumented, so the runtime must come first), ``ASAN_OPTIONS=detect_leaks=0`` (CPython
keeps objects alive until exit by design) and every sanitizer report fatal, and with
``LISPD_ACCEL`` naming DIR's extension: the child (``exec``, which ``run`` starts) loads it
as ``lispd.engine._accel`` before anything imports the installed one, then runs MODULE or
SCRIPT as ``python -m`` / ``python`` would.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ACCEL = "lispd.engine._accel"
ENV_ACCEL = "LISPD_ACCEL"  # the extension file a sanitized child process loads
ASAN_OPTIONS = "detect_leaks=0:abort_on_error=0:halt_on_error=1:exitcode=86:handle_abort=1"
UBSAN_OPTIONS = "print_stacktrace=1:halt_on_error=1:exitcode=87"
SANITIZER_EXIT = (86, 87)  # the exit codes of a process a sanitizer stopped


class SanitizerUnavailable(RuntimeError):
    """No gcc, no Python headers, or no libasan/libubsan on this machine."""


def runtime() -> Path:
    """gcc's AddressSanitizer runtime (UBSan's is linked into the extension)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise SanitizerUnavailable("no gcc")
    found = subprocess.run(
        [gcc, "-print-file-name=libasan.so"], capture_output=True, text=True, check=False
    ).stdout.strip()
    path = Path(found)
    if not path.is_absolute() or not path.exists():  # gcc echoes the bare name when it has none
        raise SanitizerUnavailable("gcc has no libasan.so (install libasan / gcc's sanitizers)")
    return path.resolve()


def _setup_module() -> ModuleType:
    """setup.py as a module (its ``setup()`` runs only as a script)."""
    spec = importlib.util.spec_from_file_location("lispd_setup", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(out: Path, sanitize: str = "address,undefined", quiet: bool = True) -> Path:
    """Compile the extension into ``out`` (``sanitize``: the -fsanitize list, "" for a plain
    build); the path of the built file."""
    if "address" in sanitize:
        runtime()  # fail early and clearly
    from setuptools import Distribution

    extension = _setup_module().accel_extension(sanitize=sanitize, root=str(ROOT))
    extension.optional = False  # here a failed build is an error
    dist = Distribution({"name": "lispd-accel", "ext_modules": [extension]})
    dist.verbose = 0 if quiet else 1
    command: Any = dist.get_command_obj("build_ext")
    command.build_lib = str(out)
    command.build_temp = str(out / "objects")
    command.force = True
    command.ensure_finalized()
    command.run()
    built = Path(command.get_ext_fullpath(ACCEL))
    if not built.exists():
        raise RuntimeError(f"the build left no {built}")
    return built


def has_asan(extension: Path) -> bool:
    """Whether ``extension`` was linked against libasan (it then loads only with it preloaded)."""
    return b"libasan.so" in extension.read_bytes()


def environment(extension: Path) -> dict[str, str]:
    """The environment of a process that runs ``extension`` under its sanitizers.

    An ASan build needs gcc's libasan preloaded.  That runtime also defines (weak)
    ``__sanitizer_cov_*`` symbols which then take libFuzzer's place: atheris runs blind under
    it (it says "Coverage symbols are being provided by a library other than libFuzzer").  A
    UBSan-only build loads its runtime privately with the extension, so atheris keeps its
    coverage of the Python code."""
    env = dict(os.environ)
    env.update(
        ASAN_OPTIONS=ASAN_OPTIONS,
        UBSAN_OPTIONS=UBSAN_OPTIONS,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")])),
    )
    if has_asan(extension):
        env["LD_PRELOAD"] = str(runtime())
    env[ENV_ACCEL] = str(extension)
    return env


def load_accel() -> ModuleType | None:
    """When ``LISPD_ACCEL`` names an extension file, load it as ``lispd.engine._accel``
    (before :mod:`lispd.engine.compiled` imports the installed one); that module, or None."""
    path = os.environ.get(ENV_ACCEL)
    if not path:
        return None
    if ACCEL in sys.modules:
        raise RuntimeError(f"{ACCEL} was imported before {ENV_ACCEL} could replace it")
    loader = importlib.machinery.ExtensionFileLoader(ACCEL, path)
    spec = importlib.util.spec_from_file_location(ACCEL, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[ACCEL] = module
    loader.exec_module(module)
    import lispd.engine

    lispd.engine._accel = module  # type: ignore[attr-defined]
    return module


def command(args: list[str]) -> list[str]:
    """The command line of a child that runs ``args`` (``-m MODULE ...`` or ``SCRIPT ...``)
    with the extension ``LISPD_ACCEL`` names (see :func:`environment`)."""
    return [sys.executable, "-m", "tests.fuzz.sanitizer", "exec", *args]


def _exec(args: list[str]) -> None:
    """Load the sanitized extension, then run ``args`` as the interpreter would."""
    load_accel()
    if args[:1] == ["-m"] and len(args) > 1:
        sys.argv = [args[1], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    elif args:
        sys.argv = list(args)
        runpy.run_path(args[0], run_name="__main__")
    else:
        raise SystemExit("exec: -m MODULE [ARGS...] or SCRIPT [ARGS...]")


def extension_in(directory: Path) -> Path:
    """The built extension under ``directory`` (as :func:`build` left it)."""
    found = sorted(directory.glob("lispd/engine/_accel*.so"))
    if not found:
        raise FileNotFoundError(f"no lispd/engine/_accel*.so under {directory}")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.sanitizer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("build", help="compile the extension into DIR")
    make.add_argument("dir", type=Path)
    kind = make.add_mutually_exclusive_group()
    kind.add_argument("--plain", action="store_true", help="without sanitizers")
    kind.add_argument("--ubsan", action="store_true", help="UBSan alone (for atheris)")
    run = sub.add_parser("run", help="python ARGS with DIR's extension under the sanitizers")
    run.add_argument("dir", type=Path)
    run.add_argument("args", nargs=argparse.REMAINDER)
    sub.add_parser("check", help="say whether gcc's sanitizer runtime is there")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["exec"]:  # the child run starts: its arguments are not ours
        _exec(argv[2:] if argv[1:2] == ["--"] else argv[1:])
        return 0
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            print(runtime())
            return 0
        if args.command == "build":
            sanitize = "" if args.plain else "undefined" if args.ubsan else "address,undefined"
            print(build(args.dir, sanitize=sanitize, quiet=False))
            return 0
        extra = args.args[1:] if args.args[:1] == ["--"] else args.args
        env = environment(extension_in(args.dir))
        return subprocess.run(command(extra), env=env, check=False).returncode
    except SanitizerUnavailable as exc:
        print(f"sanitizers unavailable: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
