"""`stance label` in a real headless Chromium: statements labeled with the keyboard are in the store and still counted
after the page is reloaded, the model's suggestion is not in the page until the annotator asks for it, and asking is
recorded with the label (anchoring). The app runs as the real `stance label` process.

A screenshot goes to test-artifacts/label-app.png (git-ignored) for a person to look at.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.test_annotate import make_pool
from tests.test_ui_browser import chromium  # noqa: F401 - fixture
from train.reports.browser import DevToolsPage
from train.tracking.server import free_port

pytestmark = pytest.mark.slow  # headless Chromium

TEXT = "document.getElementById('text').textContent"
PROGRESS = "document.getElementById('progress').textContent"


@pytest.fixture
def app_url(tmp_path):
    pool = make_pool(tmp_path / "pool.jsonl", language="en")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "train.cli",
            "label",
            str(pool),
            "--annotator",
            "anna",
            "--port",
            str(port),
            "--store",
            str(tmp_path / "store"),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    first = proc.stdout.readline()
    assert f"http://127.0.0.1:{port}/?annotator=anna" in first, first + (proc.stdout.read() if proc.poll() is not None else "")
    yield f"http://127.0.0.1:{port}/?annotator=anna", tmp_path / "store" / "events.jsonl"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 0


def test_keyboard_labels_survive_a_reload(app_url, chromium):
    url, events = app_url
    with DevToolsPage() as page:
        page.goto(url)
        assert page.wait_for(TEXT) == "statement 0 on the talks in Baku"
        assert page.js(PROGRESS) == "0 of 6 labeled"
        body = page.js("document.body.innerHTML")
        assert "0.81" not in body and "model: hostile" not in body  # the suggestion is not even in the DOM

        page.press("3")  # hostile
        page.wait_for(f"{TEXT}.startsWith('statement 1')")
        page.press("b")  # borderline, then a note typed into the note field, then neutral
        page.press("e")
        for ch in "quoted":
            page.press(ch)
        page.press("Escape")
        page.press("n")
        page.wait_for(f"{TEXT}.startsWith('statement 2')")
        page.press("s")  # ask for the suggestion: now it is there
        assert "model: hostile (0.81)" in page.wait_for("document.getElementById('suggestion').textContent")
        page.press("1")  # conciliatory
        page.wait_for(f"{TEXT}.startsWith('statement 3')")
        page.press("u")  # undo: statement 2 comes back, its suggestion hidden again
        page.wait_for(f"{TEXT}.startsWith('statement 2')")
        assert page.js("document.getElementById('suggestion').textContent") == ""
        page.press("h")
        page.wait_for(f"{TEXT}.startsWith('statement 3')")
        assert page.js(PROGRESS) == "3 of 6 labeled"

        page.reload()
        page.wait_for(f"{TEXT}.startsWith('statement 3')")
        assert page.wait_for(PROGRESS) == "3 of 6 labeled"
        os.makedirs(REPO / "test-artifacts", exist_ok=True)
        page.screenshot(REPO / "test-artifacts" / "label-app.png")

    log = [json.loads(x) for x in events.read_text().splitlines()]
    labels = [(e["id"], e["stance"], e["borderline"], e["note"], e["suggestion_shown"]) for e in log if e["event"] == "label"]
    assert labels == [
        ("p0", "hostile", False, "", False),
        ("p1", "neutral", True, "quoted", False),
        ("p2", "conciliatory", False, "", True),
        ("p2", "hostile", False, "", True),  # after the undo: the annotator had seen the suggestion for this one
    ]
    assert [e["event"] for e in log] == ["label", "label", "reveal", "label", "undo", "label"]
