"""A clone of the repository, with nothing beside it, passes its own tests.

CI has real captures of other implementations in ``../shared``; a user who clones the project
does not.  Two checks keep the suite green for that user:

* only :mod:`tests.external` may name anything outside the repository, and no document or
  source file points there (a user could not follow the link);
* every test module that reaches :mod:`tests.external` (directly or through the fuzz seeds) is
  run in a child pytest with ``LISPD_SHARED_DIR`` naming a folder that does not exist: it must
  pass, the capture tests skipping with a reason that names the missing folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.external import REPOSITORY, SHARED_ENV

THIS = Path(__file__).resolve()
EXTERNAL = REPOSITORY / "tests" / "external.py"

# Anything that reaches outside the checkout: the sibling folder or this machine's layout.
# ../shared spelled out, or joined as a path: `parent / "shared"`, `os.path.join(x, "shared")`
# (a bare "shared" is a word the engine's options use too)
OUTSIDE = re.compile(
    r"\.\./shared\b|/work/|shared/captures|/\s*[\"']shared[\"']|join\([^)]*[\"']shared[\"']"
)
TEXT_SUFFIXES = {".py", ".md", ".c", ".h", ".toml", ".cfg", ".txt", ".service", ".conf", ".sh"}
IMPORT = re.compile(r"^\s*(?:from|import)\s+(tests(?:\.\w+)+)", re.MULTILINE)


def tracked_text_files() -> list[Path]:
    """The repository's own text files (what a clone has), from git."""
    names = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    paths = [REPOSITORY / n for n in names]
    return [
        p
        for p in paths
        if p.is_file()
        and (
            p.suffix in TEXT_SUFFIXES
            or p.name.startswith("lispd.conf")
            or p.parent.name == "scripts"
        )
    ]


def test_nothing_but_tests_external_points_outside_the_repository() -> None:
    offenders = []
    for path in tracked_text_files():
        if path in (THIS, EXTERNAL):
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(REPOSITORY)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPOSITORY).with_suffix("").parts)


def modules_reaching_external() -> list[Path]:
    """Test files that import :mod:`tests.external`, directly or through other test modules."""
    sources = {
        _module_name(p): p
        for p in (REPOSITORY / "tests").rglob("*.py")
        if "__pycache__" not in p.parts and p != THIS
    }
    imports = {name: set(IMPORT.findall(path.read_text())) for name, path in sources.items()}
    reaching = {"tests.external"}
    changed = True
    while changed:
        changed = False
        for name, imported in imports.items():
            if name not in reaching and imported & reaching:
                reaching.add(name)
                changed = True
    return sorted(sources[n] for n in reaching if sources[n].name.startswith("test_"))


def test_module_discovery_finds_the_capture_users() -> None:
    found = {p.name for p in modules_reaching_external()}
    # The direct users and one that reaches it only through the fuzz seeds.
    assert {"test_captures.py", "test_pcap.py", "test_decoders.py", "test_entrypoints.py"} <= found


def test_capture_users_pass_without_the_shared_folder(tmp_path: Path) -> None:
    absent = tmp_path / "no-shared-here"
    modules = [str(p.relative_to(REPOSITORY)) for p in modules_reaching_external()]
    env = dict(os.environ)
    env[SHARED_ENV] = str(absent)
    # Fewer fuzz inputs than the full suite: this proves the seeds exist and the tests run.
    env.update(
        LISPD_FUZZ_EXAMPLES="100", LISPD_FUZZ_ENTRY_INPUTS="100", LISPD_FUZZ_ENTRY_EXAMPLES="20"
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *modules],
        cwd=REPOSITORY,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-6000:]
    assert re.search(r"\d+ passed", report), report[-2000:]
    skips = [line for line in report.splitlines() if line.startswith("SKIPPED")]
    assert skips, "the capture tests should skip without the captures\n" + report[-2000:]
    for line in skips:
        assert str(absent / "captures") in line, line
