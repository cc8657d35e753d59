"""The package's architecture, checked by plain `pytest`: the import-linter contracts of pyproject.toml (layers, no
cycles, inference free of training code, MLflow only in train.tracking) and short modules."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.fail("lint-imports is not installed: pip install -e '.[test]' (import-linter is a test dependency)")
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(Path.home())}
    res = subprocess.run([exe, "--no-cache"], cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout


def test_no_import_cycle_between_modules():
    """Module-level and function-local imports alike (grimp, the graph import-linter checks). A package's __init__
    re-exporting its own submodules is not a cycle; a submodule importing its package back would be."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("train", cache_dir=None)
    edges = {m: {i for i in graph.find_modules_directly_imported_by(m) if not i.startswith(m + ".")} for m in graph.modules}
    state, path, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        path.append(m)
        for n in sorted(edges.get(m, ())):
            if state.get(n) == "open":
                cycles.append(" -> ".join(path[path.index(n) :] + [n]))
            elif n in edges and n not in state:
                visit(n)
        path.pop()
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_modules_stay_short():
    long = {
        str(p.relative_to(REPO)): n
        for p in (REPO / "train").rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 420
    }
    assert not long, f"modules over ~400 lines (split them by concern): {long}"


def test_no_flat_train_module_named_train():
    assert not (REPO / "train" / "train.py").exists()
