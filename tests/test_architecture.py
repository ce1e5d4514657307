"""The layout's rules hold: import-linter's contracts (.importlinter), no import cycles, the run-time
commands load no generator/training/torch code, every package says what it owns, no source file is
over 500 lines. Each checker is also shown failing on a deliberately broken copy of the tree."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PACKAGES = ("app", "engines", "sensors")
MAX_LINES = 500


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """Run import-linter on the tree at `root` (its .importlinter)."""
    exe = Path(sys.executable).with_name("lint-imports")
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([str(exe), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300)


CYCLES_SCRIPT = """
import json, sys
import grimp
packages = sys.argv[1:]
graph = grimp.build_graph(*packages, cache_dir=None)
cycles = [(a, b) for a in sorted(graph.modules) for b in sorted(graph.find_modules_directly_imported_by(a))
          if b.split('.')[0] in packages and graph.chain_exists(b, a)]
print(json.dumps(cycles))
"""


def import_cycles(root: Path) -> list[tuple[str, str]]:
    """Pairs (a, b) of project modules at `root` where a imports b directly and b reaches a again.

    Run in a fresh interpreter with `root` first on the path, so the tree under test is the one read.
    """
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run([sys.executable, "-c", CYCLES_SCRIPT, *PACKAGES], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    return [tuple(pair) for pair in json.loads(proc.stdout)]


def source_files(root: Path) -> list[Path]:
    files = [root / "main.py"]
    for package in PACKAGES + ("tests",):
        files += sorted((root / package).rglob("*.py"))
    return files


@pytest.fixture(scope="module")
def broken_tree(tmp_path_factory) -> Path:
    """A copy of the sources with a layer violation (sensors -> app) and an import cycle."""
    root = tmp_path_factory.mktemp("broken")
    for name in PACKAGES:
        shutil.copytree(REPO_ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / ".importlinter", root / ".importlinter")
    frame = root / "sensors" / "frame.py"
    frame.write_text(frame.read_text() + "\nimport app.views  # deliberate layer violation\n")
    (root / "engines" / "cycle_a.py").write_text('"""a"""\nimport engines.cycle_b\n')
    (root / "engines" / "cycle_b.py").write_text('"""b"""\nimport engines.cycle_a\n')
    return root


def test_layer_contracts_hold():
    proc = lint_imports(REPO_ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_layer_contracts_fail_on_a_violation(broken_tree):
    proc = lint_imports(broken_tree)
    assert proc.returncode != 0
    assert "sensors.frame -> app.views" in proc.stdout


def test_no_import_cycles():
    assert import_cycles(REPO_ROOT) == []


def test_cycle_check_fails_on_a_cycle(broken_tree):
    assert ("engines.cycle_a", "engines.cycle_b") in import_cycles(broken_tree)


def test_every_package_says_what_it_owns():
    for init in sorted(p for name in PACKAGES for p in (REPO_ROOT / name).rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, f"{init.relative_to(REPO_ROOT)} needs a docstring saying what it owns"


def test_no_source_file_over_500_lines():
    long = {str(p.relative_to(REPO_ROOT)): n for p in source_files(REPO_ROOT)
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"split these files (over {MAX_LINES} lines): {long}"


@pytest.mark.slow
def test_process_loads_no_generator_training_or_torch(tmp_path):
    """`main.py process` on a recording: the modules it loaded (checked in the same interpreter)."""
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['main.py', 'process', 'assets/demo_recording', '--out', sys.argv[1], '--mode', 'dart']\n"
        "try:\n    runpy.run_path('main.py', run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('engines.synth', 'engines.training', 'engines.nets',"
        " 'engines.evaluation', 'torch')))\n"
        "print('LOADED', bad)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "out")], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LOADED []" in proc.stdout, proc.stdout[-500:]
