"""`stance select`: never a labeled row again (by id or by text), picks spread across clusters and languages, a random
sample reproducible by seed, and the model's one-pass probabilities equal to predict_proba."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import write_jsonl
from train.cli import app
from train.coding.selection import score_pool, select, uncertainty

runner = CliRunner()


def test_uncertainty_by_hand():
    p = np.array([[0.5, 0.3, 0.2], [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]])
    assert uncertainty(p, "margin") == pytest.approx([0.8, 1.0, 0.0])
    h = -(0.5 * np.log(0.5) + 0.3 * np.log(0.3) + 0.2 * np.log(0.2)) / np.log(3)
    assert uncertainty(p, "entropy") == pytest.approx([h, 1.0, 0.0], abs=1e-9)


def _pool(n_lang=4, per_lang=30, seed=0):
    """Rows in four languages; the most uncertain are all Russian and all in one embedding blob."""
    rng = np.random.default_rng(seed)
    rows, proba, emb = [], [], []
    centers = np.eye(4) * 5
    for li, lang in enumerate(["ru", "en", "tr", "az"][:n_lang]):
        for k in range(per_lang):
            rows.append({"id": f"{lang}-{k}", "text": f"statement {lang} {k}", "language": lang, "speaker": f"s{k % 3}"})
            top = 0.36 if lang == "ru" else 0.4 + 0.5 * rng.random()  # Russian rows: nearly uniform, the most uncertain
            proba.append([top, (1 - top) / 2 + 0.001, (1 - top) / 2 - 0.001])
            emb.append(centers[li] + rng.normal(0, 0.1, 4))
    return rows, np.array(proba), np.array(emb)


def test_uncertainty_spreads_across_clusters_and_languages():
    rows, proba, emb = _pool()
    picks = select(rows, 12, "uncertainty", proba, emb, seed=0, candidates=10)
    langs = [rows[p["index"]]["language"] for p in picks]
    # uncertainty alone would take 12 Russian rows (the 30 most uncertain are Russian); diversity spreads them
    assert sorted(np.argsort(-uncertainty(proba), kind="stable")[:12]) == list(range(12))
    assert len(set(langs)) == 4 and max(langs.count(lang) for lang in set(langs)) <= 6
    assert len({p["cluster"] for p in picks}) >= 3
    assert [p["rank"] for p in picks] == list(range(1, 13)) and all(p["reason"].startswith("uncertain") for p in picks)
    # without embeddings the languages still spread, round-robin
    langs = [rows[p["index"]]["language"] for p in select(rows, 8, "uncertainty", proba, None, candidates=10)]
    assert sorted(langs) == sorted(["ru", "en", "tr", "az"] * 2)


def test_never_repicks_labeled_rows_by_id_or_text():
    rows, proba, emb = _pool()
    rows[1]["text"] = "  STATEMENT ru 0 "  # a duplicate of ru-0 inside the pool (normalised)
    exclude_ids = {"ru-2", "en-3"}
    exclude_texts = {"statement ru 4"}  # labeled before under another id
    for strategy in ("uncertainty", "random"):
        picks = select(rows, len(rows), strategy, proba, emb, exclude_ids=exclude_ids, exclude_texts=exclude_texts, candidates=10)
        ids = [rows[p["index"]]["id"] for p in picks]
        assert len(ids) == len(set(ids)) == len(rows) - 4
        assert not {"ru-1", "ru-2", "en-3", "ru-4"} & set(ids)


def test_random_sample_reproducible_by_seed():
    rows, proba, _ = _pool()
    a = [p["index"] for p in select(rows, 20, "random", proba, seed=3)]
    b = [p["index"] for p in select(rows, 20, "random", seed=3)]
    c = [p["index"] for p in select(rows, 20, "random", seed=4)]
    assert a == b and a != c and len(set(a)) == 20


def test_score_pool_probabilities_match_predict_proba(tiny_model_dir):
    from tests.conftest import make_rows
    from train.models import BaselineStance, TransformerStance

    texts = [r["text"] for r in make_rows(2)]
    model = TransformerStance(str(tiny_model_dir), max_length=32).build()
    proba, emb = score_pool(model, texts, batch_size=7)
    assert np.allclose(proba, model.predict_proba(texts), atol=1e-5) and emb.shape == (len(texts), 32)
    rows = make_rows(4)
    base = BaselineStance(max_features=2000).fit([r["text"] for r in rows], [r["stance"] for r in rows])
    proba, emb = score_pool(base, texts)
    assert np.allclose(proba, base.predict_proba(texts)) and emb.shape[0] == len(texts)


def test_cli_select_from_predict_output_and_exclusions(tmp_path):
    rows, proba, _ = _pool()
    pool = [{**r, "prob_conciliatory": p[0], "prob_neutral": p[1], "prob_hostile": p[2]} for r, p in zip(rows, proba)]
    write_jsonl(tmp_path / "pool.jsonl", pool)
    (tmp_path / "ann.csv").write_text("id,annotator,stance\nru-0,a,hostile\nen-1,a,neutral\n", encoding="utf-8")
    out = tmp_path / "next.csv"
    r = runner.invoke(
        app,
        [
            "select",
            "--pool",
            str(tmp_path / "pool.jsonl"),
            "--n",
            "10",
            "--exclude",
            str(tmp_path / "ann.csv"),
            "--output",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    import csv

    got = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(got) == 10 and list(got[0])[:5] == ["id", "reason", "rank", "uncertainty", "cluster"]
    assert not {"ru-0", "en-1"} & {g["id"] for g in got}
    # a random sample needs no probabilities; the same seed gives the same file
    args = ["select", "--pool", str(tmp_path / "pool.jsonl"), "--n", "5", "--strategy", "random", "--seed", "1"]
    assert runner.invoke(app, args + ["--output", str(tmp_path / "r1.jsonl")]).exit_code == 0
    assert runner.invoke(app, args + ["--output", str(tmp_path / "r2.jsonl")]).exit_code == 0
    assert (tmp_path / "r1.jsonl").read_text() == (tmp_path / "r2.jsonl").read_text()
    assert json.loads((tmp_path / "r1.jsonl").read_text().splitlines()[0])["reason"] == "random sample (seed 1)"


def test_cli_select_bad_pool_exit_2(tmp_path):
    write_jsonl(tmp_path / "pool.jsonl", [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}])
    r = runner.invoke(
        app, ["select", "--pool", str(tmp_path / "pool.jsonl"), "--strategy", "random", "--output", str(tmp_path / "o.csv")]
    )
    assert r.exit_code == 2 and "pool.jsonl:2: field 'id'" in r.output and not (tmp_path / "o.csv").exists()
    write_jsonl(tmp_path / "p2.jsonl", [{"id": "a", "text": "x"}])
    r = runner.invoke(app, ["select", "--pool", str(tmp_path / "p2.jsonl"), "--output", str(tmp_path / "o.csv")])
    assert r.exit_code == 2 and "needs --model or a pool with prob_* columns" in r.output
