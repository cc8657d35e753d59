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
from train.tracking.server import experiment_runs_url, free_port, metrics_view, running_ui

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


def test_runs_table_lists_runs_with_metrics(use_demo_store, chromium):
    from mlflow.tracking import MlflowClient

    demo = use_demo_store
    client = MlflowClient()
    runs = [client.get_run(rid) for rid in demo.run_ids]
    ARTIFACTS.mkdir(exist_ok=True)
    with running_ui(log=ARTIFACTS / "mlflow-server.log") as url:
        page = experiment_runs_url(url, demo.experiment_id, metrics_view(demo.experiment_id))
        dom = dump_dom(page)
        screenshot(page, ARTIFACTS / "ui-runs.png", window=(2200, 900))
        rid = demo.transformer_run_ids[0]
        with urllib.request.urlopen(f"{url}/get-artifact?path=eval/confusion_matrix.png&run_uuid={rid}", timeout=30) as r:
            png = r.read()
    (ARTIFACTS / "ui-runs.html").write_text(dom, encoding="utf-8")
    for run in runs:
        assert run.info.run_name in dom, f"run {run.info.run_name} is not in the runs table (see test-artifacts/ui-runs.png)"
        # the UI prints floats the way Python's repr does (shortest round-trip form)
        for metric in ("macro_f1", "accuracy"):
            assert repr(run.data.metrics[metric]) in dom, (
                f"{metric}={run.data.metrics[metric]!r} of {run.info.run_name} not shown"
            )
    assert "macro_f1_lang_ru" in dom  # per-language metrics are columns of their own
    assert png.startswith(b"\x89PNG"), "the confusion matrix artifact is not served as a PNG"


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
