"""The MLflow UI on the project's store, seen by a real headless Chromium: the runs table lists the runs made here
with their metrics, evaluation images are served, and `stance ui` stops cleanly on Ctrl-C.

Screenshots go to test-artifacts/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import REPO
from tests.make_demo_store import demo_store, use_demo_store  # noqa: F401 - fixtures
from train.reports.browser import dump_dom, find_chromium, screenshot
from train.tracking.server import compare_runs_url, experiment_runs_url, free_port, metrics_view, running_ui

pytestmark = pytest.mark.slow  # MLflow server and headless Chromium

ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture
def chromium():
    exe = find_chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed, and CI must not skip the browser test (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return exe


def test_runs_view_at_1600px_shows_core_languages_with_n_and_compare_shows_the_plot(use_demo_store, chromium):
    """At 1,600 px the table draws only the columns in view: the default view must put the core languages' macro-F1
    (3 decimals) and their row counts there, not the first of 18 alphabetical languages with 16 decimals. The compare
    view shows only root-level files every run has: the comparison figure must be one of them."""
    from mlflow.tracking import MlflowClient

    demo = use_demo_store
    client = MlflowClient()
    runs = [client.get_run(rid) for rid in demo.run_ids]
    ARTIFACTS.mkdir(exist_ok=True)
    with running_ui(log=ARTIFACTS / "mlflow-server.log") as url:
        page = experiment_runs_url(url, demo.experiment_id, metrics_view(demo.experiment_id))
        dom = dump_dom(page, window=(1600, 900))
        screenshot(page, ARTIFACTS / "ui-runs.png", window=(1600, 900))
        compare = compare_runs_url(url, demo.experiment_id, [demo.transformer_run_ids[0], demo.baseline_run_id])
        compare_dom = dump_dom(compare, window=(1600, 900))
        screenshot(compare, ARTIFACTS / "ui-compare.png", window=(1600, 2400))
        rid = demo.transformer_run_ids[0]
        with urllib.request.urlopen(f"{url}/get-artifact?path=summary_eval.png&run_uuid={rid}", timeout=30) as r:
            png = r.read()
    (ARTIFACTS / "ui-runs.html").write_text(dom, encoding="utf-8")
    (ARTIFACTS / "ui-compare.html").write_text(compare_dom, encoding="utf-8")
    for run in runs:
        m = run.data.metrics
        assert run.info.run_name in dom, f"run {run.info.run_name} is not in the runs table (see test-artifacts/ui-runs.png)"
        # the UI prints floats the way Python's repr does: the summary is rounded, so it reads 0.293, not 0.29333333333
        for metric in ("f1/all", "f1/en", "f1/ru", "f1/tr"):
            assert len(repr(m[metric])) <= 5, f"{metric}={m[metric]!r} is not rounded to 3 decimals"
            assert repr(m[metric]) in dom, f"{metric}={m[metric]!r} of {run.info.run_name} not shown at 1,600 px"
        assert run.data.tags["n_eval"] in dom, "the row counts are not beside the core languages"
    for header in ("f1/all", "f1/en", "f1/ru", "f1/tr", "n_eval"):
        assert f">{header}<" in dom, f"column {header} is not drawn at 1,600 px (see test-artifacts/ui-runs.png)"
    # the demo's test split: en 3 rows, ru 6, tr 11 (tests/conftest.py make_rows), counted by the run
    assert runs[0].data.tags["n_eval"] == "en 3 · ru 6 · tr 11 · all 20"
    assert "No common artifacts" not in compare_dom and 'artifact-name="summary_eval.png"' in compare_dom
    assert png.startswith(b"\x89PNG"), "the comparison figure is not served as a PNG"


def test_stance_ui_serves_and_stops_on_ctrl_c(use_demo_store):
    port = free_port()
    env = dict(os.environ, STANCE_MLRUNS=str(use_demo_store.store))
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "train.cli", "ui", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert f"MLflow UI: http://127.0.0.1:{port}" in first, first + proc.stdout.read() if proc.poll() is not None else first
        view = proc.stdout.readline() + proc.stdout.readline()  # the store line, then the runs view's link
        assert f"#/experiments/{use_demo_store.experiment_id}/runs?viewStateShareKey=" in view, view
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
            assert r.status == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    # the server and its workers are gone with it: nothing answers on the port any more
    time.sleep(0.5)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)


def test_ui_refuses_a_port_in_use(use_demo_store):
    import socket

    from train.tracking.server import UIError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(UIError, match=f"port {s.getsockname()[1]} .* in use"):
            with running_ui(port=s.getsockname()[1]):
                pass
