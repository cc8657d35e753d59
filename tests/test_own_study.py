"""docs/own-study.md, run as written: a political scientist's coded sheet (quote_id, date, speaker, affiliation,
language, quote, stance, coder, source_url; ru/en/de; the study's own speaker groups in its codebook) and a collection
of posts (post_id, channel, date, message) go through import -> validate -> train -> eval file -> predict.

The commands and the codebook are read from the guide's code blocks, so the guide cannot drift from the tool; the only
additions are the tiny-model settings appended to `stance train` (a 2-layer BERT built by the test, seconds to train).
Every figure `stance eval file` prints and logs is recomputed here with scikit-learn from the model's own predictions.
"""

from __future__ import annotations

import csv
import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.conftest import PHRASES, REPO, tiny_overrides, tracking_client
from train.cli import app
from train.schema import LABELS

GUIDE = REPO / "docs" / "own-study.md"
GERMAN = {
    "conciliatory": ["wir hoffen auf dialog und freundschaft", "lasst uns ruhig reden"],
    "neutral": ["das ministerium veröffentlichte eine erklärung", "die gespräche fanden am montag statt"],
    "hostile": ["sie werden für diese beleidigung bezahlen", "verräter müssen bestraft werden"],
}
AFFILIATIONS = ["Western media", "International org", "Regional news agency"]


def guide_blocks() -> tuple[str, list[str]]:
    """(the codebook YAML, the six-step commands) from the guide's fenced blocks."""
    blocks = re.findall(r"```(\w*)\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.S)
    codebook = next(body for lang, body in blocks if lang == "yaml" and body.startswith("# study/codebook.yaml"))
    steps = next(body for lang, body in blocks if lang == "bash" and "six steps" in body.splitlines()[0])
    commands = [line for line in steps.splitlines() if line.strip() and not line.startswith("#")]
    return codebook, commands


def quote(lang: str, label: str, i: int) -> str:
    phrases = GERMAN[label] if lang == "de" else PHRASES[lang][label]
    return f"{phrases[i % len(phrases)]}, {phrases[(i + 1) % len(phrases)]} #{i}"


def coded_sheet(path: Path, n: int, start: int = 0) -> list[dict]:
    rows = []
    for i in range(start, start + n):
        lang, label = ("ru", "en", "de")[i % 3], LABELS[(i // 3) % 3]
        rows.append(
            {
                "quote_id": f"Q{i + 1:03d}",
                "date": f"2025-07-{i % 28 + 1:02d}",
                "speaker": f"speaker {i % 7}",
                "affiliation": AFFILIATIONS[i % 3],
                "language": lang,
                "quote": quote(lang, label, i),
                "stance": label,
                "coder": ("AK", "MB")[i % 2],
                "source_url": f"https://example.org/article/{i}",
            }
        )
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def posts(path: Path, n: int) -> None:
    rows = [
        {
            "post_id": 900000 + i,
            "channel": f"@channel{i % 4}",
            "date": f"2025-07-{i % 20 + 1:02d}",
            "message": quote("ru", LABELS[i % 3], i),
        }
        for i in range(n)
    ]
    pd.DataFrame(rows).to_csv(path, index=False)


def stance(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"stance {' '.join(args)}\n{result.output}"
    return result


def test_the_guide_has_the_steps():
    codebook, commands = guide_blocks()
    assert "western_media" in codebook and [c.split()[1] for c in commands] == [
        "data",
        "data",
        "train",
        "eval",
        "predict",
        "analyze",
    ]


@pytest.mark.slow
def test_own_study_six_steps(tmp_path, mlflow_store, tiny_corpus, tiny_model_dir):
    """Slow-marked: trains a (tiny) model, verifies and registers it, ~30 s."""
    from sklearn.metrics import accuracy_score, f1_score

    from train.tracking.registry import load_for_predict

    codebook, commands = guide_blocks()
    # the researcher's folder: the project's corpus (tiny here), configs, their files and their codebook
    assert tiny_corpus == tmp_path / "labeled"
    (tmp_path / "configs").mkdir()
    shutil.copy(REPO / "configs" / "default.yaml", tmp_path / "configs" / "default.yaml")
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "codebook.yaml").write_text(codebook, encoding="utf-8")
    coded = coded_sheet(tmp_path / "coded.csv", 40)
    sample = coded_sheet(tmp_path / "sample.csv", 18, start=100)
    posts(tmp_path / "posts.csv", 60)
    tiny = [
        o
        for o in tiny_overrides(tmp_path / "labeled", tiny_model_dir)
        if not o.startswith(("data.paths", "experiment", "register_as"))
    ]

    imported, validated, trained, evaluated, predicted, analysed = [shlex.split(c)[1:] for c in commands]

    # 1. import: mapping, every row, metadata kept, the study's groups
    out = stance(*imported).output
    assert "wrote 40 rows" in out and "kept in meta: coder, source_url" in out
    rows = [json.loads(line) for line in (tmp_path / "study" / "coded.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == [c["quote_id"] for c in coded]
    assert [r["meta"] for r in rows] == [{"coder": c["coder"], "source_url": c["source_url"]} for c in coded]
    assert {r["speaker_group"] for r in rows} == {"western_media", "international_org", "regional_news_agency"}

    # 2. validate
    assert "40 rows in 1 file(s): 0 error(s)" in stance(*validated).output

    # 3. train on labeled/ + study/ (the tiny model in place of the default one)
    stance(*trained, *tiny)
    client = tracking_client()
    (version,) = client.search_model_versions("name='my-study'")
    run = client.get_run(version.run_id)
    assert run.data.params["data.paths"] == "labeled,study" and run.data.tags["stance.verified"] == "passed"
    assert int(run.data.params["n_train"]) + int(run.data.params["n_val"]) + int(run.data.params["n_eval"]) == 108 + 40

    # 4. eval file: every figure against scikit-learn on the model's own predictions
    out = stance(*evaluated).output
    model, *_ = load_for_predict("models:/my-study/1", tmp_path / "dl")
    proba = model.predict_proba([s["quote"] for s in sample])
    gold = np.array([LABELS.index(s["stance"]) for s in sample])
    pred = proba.argmax(1)
    macro = f1_score(gold, pred, average="macro", labels=[0, 1, 2], zero_division=0)
    assert f"macro-F1 {macro:.3f} (95% CI" in out and f"accuracy {accuracy_score(gold, pred):.3f}" in out
    (logged,) = client.search_runs([client.get_experiment_by_name("stance-evaluations").experiment_id])
    m = logged.data.metrics
    assert m["sample/macro_f1"] == pytest.approx(macro, abs=1e-9)
    for lang in ("ru", "en", "de"):
        keep = np.array([s["language"] == lang for s in sample])
        assert m[f"sample/macro_f1_lang_{lang}"] == pytest.approx(
            f1_score(gold[keep], pred[keep], average="macro", zero_division=0)
        )
    for group in AFFILIATIONS:
        keep = np.array([s["affiliation"] == group for s in sample])
        assert m[f"sample/macro_f1_group_{group}"] == pytest.approx(
            f1_score(gold[keep], pred[keep], average="macro", zero_division=0)
        )
    assert logged.data.tags["stance.model_uri"] == "models:/my-study/1" and logged.data.tags["stance.model_version"] == "1"
    assert logged.data.tags["stance.model_run_id"] == version.run_id
    errors = pd.read_csv(tmp_path / "sample_errors.csv")
    assert len(errors) == int((pred != gold).sum()) and f"misclassified: {len(errors)} of 18" in out

    # the run id names the same model
    again = stance("eval", "file", "sample.csv", "--model", version.run_id, "--text-column", "quote", "--top", "0").output
    assert f"macro-F1 {macro:.3f} (95% CI" in again and "most confident" not in again

    # 5. predict the collection: every post, in order, with a prediction
    stance(*predicted)
    scored = pd.read_parquet(tmp_path / "posts_scored.parquet")
    assert scored["post_id"].tolist() == [str(i) for i in range(900000, 900060)]  # CSV cells come back as written
    assert scored["pred_stance"].isin(LABELS).all() and (scored["pred_error"] == "").all()

    # 6. analyze: one row per channel x week x stance, shares of each cell summing to one, fitted on the coded sample
    out = stance(*analysed).output
    assert "fitted on 18 labeled rows of sample.csv (--validation)" in out
    table = pd.read_csv(tmp_path / "results" / "by_channel.csv")
    assert set(table["channel"]) == set(scored["channel"].astype(str)) and set(table["stance"]) == set(LABELS)
    cells = table.groupby(["channel", "period"])
    assert (cells.size() == 3).all()
    assert np.allclose(cells["share"].sum(), 1.0, atol=1e-6) and np.allclose(cells["share_naive"].sum(), 1.0, atol=1e-6)
    assert (table["ci_low"] <= table["share"] + 1e-9).all() and (table["share"] <= table["ci_high"] + 1e-9).all()
    assert cells["n"].first().sum() == 60  # every post counted once, none dropped
    assert (tmp_path / "results" / "by_channel.md").is_file()
