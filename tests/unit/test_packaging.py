"""The package a user installs: sdist and wheel built as ``pip`` would, installed into a fresh
virtual environment with no repository around it, and its commands run there.

One module-scoped build serves every test: ``python -m build`` makes the sdist and then the
wheel *from that sdist*, so a file the C build needs but the sdist lacks shows up as a wheel
without the compiled extension (the extension is optional, so the build itself would not fail).
Needs the package index for the isolated build environment and the runtime dependencies.
"""

from __future__ import annotations

import email
import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import lispd

REPOSITORY = Path(__file__).resolve().parents[2]
COMMANDS = ("lispd", "lispctl", "ltr", "lig", "rig", "lispd-lab")


@dataclass(frozen=True)
class Built:
    """The artefacts of one ``python -m build`` run and what it printed."""

    sdist: Path
    wheel: Path
    output: str


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("dist")
    run = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPOSITORY)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    (sdist,) = out.glob("lispd-*.tar.gz")
    (wheel,) = out.glob("lispd-*.whl")
    return Built(sdist, wheel, output)


def test_the_build_prints_no_deprecation_warning(built: Built) -> None:
    warnings = [
        line
        for line in built.output.splitlines()
        if "deprecat" in line.lower() or "BuildBackendWarning" in line
    ]
    assert not warnings, "\n".join(warnings)


def test_the_sdist_carries_what_the_build_and_a_user_need(built: Built) -> None:
    with tarfile.open(built.sdist) as tar:
        root = tar.getnames()[0].split("/")[0]
        names = {n.removeprefix(root + "/") for n in tar.getnames()}
    csrc = REPOSITORY / "lispd" / "engine" / "csrc"
    sources = {f"lispd/engine/csrc/{p.name}" for p in csrc.iterdir() if p.suffix in (".c", ".h")}
    assert sources and sources <= names, sorted(sources - names)
    needed = {
        "setup.py",
        "pyproject.toml",
        "MANIFEST.in",
        "LICENSE",
        "README.md",
        "lispd/py.typed",
        "lispd.conf.example",
        "lispd.conf.example.msmr",
        "lispd.conf.example.ddt",
        "lispd.conf.example.pxtr",
        "systemd/lispd.service",
        "docs/ARCHITECTURE.md",
    }
    assert needed <= names, sorted(needed - names)


def test_the_wheel_has_the_engine_the_license_and_one_version(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as whl:
        names = whl.namelist()
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = email.message_from_bytes(whl.read(meta_name))
    assert any(n.startswith("lispd/engine/_accel") and n.endswith(".so") for n in names), names
    assert "lispd/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Version"] == lispd.__version__
    requires = " ".join(meta.get_all("Requires-Dist") or [])
    assert "netaddr" not in requires and "pytricia" in requires


def test_the_installed_wheel_runs_without_the_repository(built: Built, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    install = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", str(built.wheel)],
        capture_output=True,
        text=True,
        timeout=600,
        env=environ,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, cwd=tmp_path, capture_output=True, text=True, timeout=60, env=environ
        )

    where = run(
        str(bin_dir / "python"),
        "-c",
        "import lispd, lispd.engine._accel as a; print(lispd.__file__); print(a.__file__)",
    )
    assert where.returncode == 0, where.stderr
    for line in where.stdout.splitlines():
        assert Path(line).is_relative_to(env_dir), line  # not the checkout
    version = run(str(bin_dir / "lispd"), "--version")
    assert version.stdout.strip() == f"lispd {lispd.__version__}", version
    for command in COMMANDS:
        helped = run(str(bin_dir / command), "--help")
        assert helped.returncode == 0 and "usage" in helped.stdout.lower(), (command, helped)
    for example in (
        "lispd.conf.example",
        "lispd.conf.example.msmr",
        "lispd.conf.example.ddt",
        "lispd.conf.example.pxtr",
    ):
        checked = run(str(bin_dir / "lispd"), "--check", "-c", str(REPOSITORY / example))
        assert checked.returncode == 0, (example, checked.stdout, checked.stderr)
