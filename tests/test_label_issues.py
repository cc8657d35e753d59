"""`stance data label-issues`: confident learning finds label flips planted in the tiny corpus, points at file and
line, and never touches the corpus."""

from __future__ import annotations

import csv

from typer.testing import CliRunner

from tests.conftest import REPO, make_rows, write_jsonl
from train.cli import app

runner = CliRunner()
FLIPS = {"en-0002": "hostile", "ru-0014": "conciliatory", "tr-0030": "neutral", "en-0027": "conciliatory"}


def test_label_issues_finds_planted_flips(tmp_path, monkeypatch):
    rows = make_rows()
    given = {}
    for r in rows:
        if r["id"] in FLIPS:
            given[r["id"]] = r["stance"]
            r["stance"] = FLIPS[r["id"]]
    corpus = write_jsonl(tmp_path / "labeled" / "statements.jsonl", rows)
    before = corpus.read_bytes()
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "issues.csv"
    r = runner.invoke(app, ["data", "label-issues", "--config", str(REPO / "configs" / "baseline.yaml"), "--output", str(out)])
    assert r.exit_code == 0, r.output
    found = list(csv.DictReader(out.open(encoding="utf-8")))
    ids = [f["id"] for f in found]
    assert set(FLIPS) <= set(ids) and len(ids) <= len(FLIPS) + 3, ids  # the flips, and at most a few false alarms
    line = {r["id"]: i for i, r in enumerate(rows, 1)}
    for f in found:
        if f["id"] in FLIPS:
            assert f["given_label"] == FLIPS[f["id"]] and f["suggested_label"] == given[f["id"]]
            assert f["file"].endswith("statements.jsonl") and int(f["line"]) == line[f["id"]]
            assert f["reason"].startswith(f"label issue: given {FLIPS[f['id']]}, the data suggests {given[f['id']]}")
    assert corpus.read_bytes() == before  # a report, never a relabeling
    assert f"{len(found)} of {len(rows)} rows flagged" in r.output
