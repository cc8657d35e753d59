"""The analysis notebooks run top to bottom: 01 on the committed corpus, 02 and 03 on the demo store's real runs.
Also: the committed notebooks are exactly what notebooks/build_notebooks.py writes (reviewed as code, no outputs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.make_demo_store import demo_store  # noqa: F401 - fixture

NOTEBOOKS = REPO / "notebooks"


def test_committed_notebooks_match_generator():
    r = subprocess.run([sys.executable, str(NOTEBOOKS / "build_notebooks.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def execute(name: str, env: dict[str, str], monkeypatch, tmp_path):
    """Run a notebook in a fresh kernel (the kernel inherits this process's environment) and return it executed."""
    import nbformat
    from nbclient import NotebookClient

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:  # executed copies (with plots, or the failing cell's traceback) for a person to look at
        (REPO / "test-artifacts").mkdir(exist_ok=True)
        nbformat.write(nb, REPO / "test-artifacts" / name)
    return nb


def assert_readable_figures(nb, max_px: int = 1500) -> None:
    """No figure wider than a screen (a row of 18 confusion matrices was 6,500 px wide, unreadable when scaled)."""
    import base64
    import struct

    for cell in nb.cells:
        for out in cell.get("outputs", []):
            png = out.get("data", {}).get("image/png")
            if png:
                width, height = struct.unpack(">II", base64.b64decode(png)[16:24])  # the PNG header's IHDR chunk
                assert width <= max_px, f"a figure {width} px wide in cell {cell['id']}"


def outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") + str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


@pytest.mark.slow  # executes notebooks
def test_dataset_overview_runs(monkeypatch, tmp_path):
    nb = execute("01_dataset_overview.ipynb", {}, monkeypatch, tmp_path)
    text = outputs_text(nb)
    assert_readable_figures(nb)
    assert "statements in" in text and "conciliatory" in text
    assert sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", [])) >= 3


@pytest.mark.slow  # executes notebooks
@pytest.mark.parametrize("name", ["02_compare_runs.ipynb", "03_error_analysis.ipynb"])
def test_run_notebooks_on_demo_store(name, demo_store, monkeypatch, tmp_path):
    env = {"MLFLOW_TRACKING_URI": demo_store.tracking_uri, "STANCE_EXPERIMENT": demo_store.experiment}
    monkeypatch.delenv("STANCE_RUN_ID", raising=False)
    nb = execute(name, env, monkeypatch, tmp_path)
    text = outputs_text(nb)
    assert_readable_figures(nb)
    assert demo_store.experiment in text
    if name.startswith("02"):
        assert "3 finished runs, 2 configurations" in text and "tiny-bert-mean" in text
    else:
        assert any(rid in text for rid in demo_store.run_ids) and "eval statements wrong" in text
        assert "explained 5" in text and "toward the prediction" in text
    assert not (tmp_path / "mlruns").exists(), "a notebook created a store in its working folder"


@pytest.mark.slow  # starts a Jupyter server
def test_jupyter_lab_opens_the_notebooks_as_documented(tmp_path):
    """notebooks/README.md says `jupyter lab notebooks/`: the server starts from the project's environment and serves
    every notebook (the [notebooks] extra that scripts/setup.sh installs)."""
    import json
    import os
    import time
    import urllib.request

    from train.tracking.server import free_port

    port = free_port()
    jupyter = Path(sys.executable).with_name("jupyter")
    assert jupyter.is_file(), "jupyter is not installed in this environment (pip install -e '.[notebooks]')"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"), JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"))
    argv = [
        str(jupyter),
        "lab",
        "notebooks/",
        "--no-browser",
        f"--port={port}",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
    ]
    argv += ["--allow-root"] if os.geteuid() == 0 else []  # containers (notebooks/README.md says so too)
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline, listing = time.monotonic() + 90, None
        while listing is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents", timeout=5) as r:
                    listing = json.load(r)
            except OSError:
                assert proc.poll() is None, "jupyter lab exited"
                time.sleep(1)
        assert listing is not None, "jupyter lab did not answer within 90 s"
        names = {c["name"] for c in listing["content"]}
        assert {"01_dataset_overview.ipynb", "02_compare_runs.ipynb", "03_error_analysis.ipynb"} <= names
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab", timeout=30) as r:
            assert r.status == 200
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)


@pytest.mark.slow  # executes notebooks
def test_stance_over_time_runs(monkeypatch, tmp_path):
    """04 runs `stance analyze` on its made-up collection: the corrected shares beat naive counting against the truth."""
    nb = execute("04_stance_over_time.ipynb", {}, monkeypatch, tmp_path)
    text = outputs_text(nb)
    assert "wrote" in text and "shares_time.png" in text
    line = text.split("mean absolute error: naive ")[1].split(";")[0]  # "0.081, corrected 0.021"
    naive, corrected = (float(x) for x in line.split(", corrected "))
    assert corrected < naive / 2
    assert sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", [])) >= 3
