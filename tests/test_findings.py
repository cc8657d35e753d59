"""stance analyze and stance explain: corrected shares against known mixes, interval coverage, streaming equals
in-memory, small groups flagged (never dropped), bad input named, explanations on tiny models."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.conftest import make_rows
from train.cli import app
from train.findings import Correction, FindingsError, collect, estimate_group
from train.findings.analyze import build_table
from train.schema import LABELS

PROBS = [f"prob_{l}" for l in LABELS]
# the model's confusion, columns = true class: it calls a quarter of neutral statements hostile and a tenth conciliatory
CONFUSION = np.array([[0.80, 0.10, 0.05], [0.15, 0.65, 0.10], [0.05, 0.25, 0.85]])


def scored(y, rng):
    """Probabilities of a model with the fixed CONFUSION: the predicted class drawn from the column of the true class,
    its probability 0.5-0.9 and the rest spread over the other two."""
    pred = np.array([rng.choice(3, p=CONFUSION[:, t]) for t in y])
    top = rng.uniform(0.5, 0.9, len(y))
    p = np.repeat(((1 - top) / 2)[:, None], 3, 1)
    p[np.arange(len(y)), pred] = top
    return p.astype(np.float32)


def labeled(n_per_class, rng):
    y = np.repeat(np.arange(3), n_per_class)
    return scored(y, rng), y


def collection(mix, n, rng):
    y = rng.choice(3, n, p=mix)
    return scored(y, rng), y


@pytest.mark.parametrize("method", ["acc", "pacc"])
def test_corrected_shares_recover_a_known_mix_that_naive_counting_misses(method):
    rng = np.random.default_rng(1)
    vp, vy = labeled(1000, rng)  # balanced labeled rows, as the authored evaluation split
    cp, cy = collection([0.1, 0.75, 0.15], 3000, rng)  # a real-looking collection: mostly neutral
    truth = np.bincount(cy, minlength=3) / len(cy)
    est = estimate_group(Correction(method, "test", vp, vy, n_boot=50), cp)
    # naive counting sees hostility that is not there (a quarter of the neutral rows called hostile)
    assert est.naive[2] - truth[2] > 0.12
    assert np.abs(est.share - truth).max() < 0.04
    assert np.abs(est.naive - truth).mean() > 3 * np.abs(est.share - truth).mean()
    assert np.all(est.low <= truth) and np.all(truth <= est.high)


def test_interval_coverage_is_near_95_percent():
    """Over 40 collections (the labeled rows redrawn each time, as the truth does not depend on them), the 95%
    interval of PACC holds the true share about 95% of the time: it covers both error sources."""
    rng = np.random.default_rng(2)
    hits = []
    for _ in range(40):
        vp, vy = labeled(100, rng)  # few labeled rows: the correction's own error dominates
        cp, cy = collection(rng.dirichlet([2, 4, 2]), 400, rng)
        est = estimate_group(Correction("pacc", "test", vp, vy, n_boot=100, seed=int(rng.integers(1000))), cp)
        truth = np.bincount(cy, minlength=3) / len(cy)
        hits += list((est.low <= truth) & (truth <= est.high))
    assert 0.85 <= np.mean(hits) <= 1.0


def test_interval_without_the_correction_error_would_be_too_narrow():
    """What resampling the labeled rows adds: with 60 labeled rows the interval is much wider than with 3,000."""
    rng = np.random.default_rng(3)
    cp, _ = collection([0.2, 0.6, 0.2], 2000, rng)
    few = estimate_group(Correction("pacc", "few", *labeled(20, rng), n_boot=100), cp)
    many = estimate_group(Correction("pacc", "many", *labeled(1000, rng), n_boot=100), cp)
    assert (few.high - few.low).mean() > 2 * (many.high - many.low).mean()


def predictions_frame(rng, n=400):
    p, y = collection([0.2, 0.6, 0.2], n, rng)
    df = pd.DataFrame(p, columns=PROBS)
    df["pred_stance"] = [LABELS[i] for i in p.argmax(1)]
    df["speaker_group"] = rng.choice(["blogger", "official"], n)
    df.loc[:4, "speaker_group"] = "tiny"  # 5 rows: a small group
    df["date"] = (pd.Timestamp("2025-06-02") + pd.to_timedelta(rng.integers(0, 28, n), unit="D")).strftime("%Y-%m-%d")
    df.loc[7, PROBS] = np.nan  # a row the model could not score
    df.loc[7, "pred_error"] = "empty text"
    df["model_uri"] = "runs:/abc/model"
    return df


@pytest.mark.parametrize("ext", [".parquet", ".csv", ".jsonl"])
def test_streaming_equals_in_memory(tmp_path, ext):
    df = predictions_frame(np.random.default_rng(4))
    path = tmp_path / f"pred{ext}"
    if ext == ".parquet":
        df.to_parquet(path)
    elif ext == ".csv":
        df.to_csv(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True, force_ascii=False)
    small = collect(path, ["speaker_group"], "date", "W", chunk_rows=7)
    whole = collect(path, ["speaker_group"], "date", "W", chunk_rows=10**6)
    assert small.all_keys() == whole.all_keys() and small.rows == whole.rows == len(df)
    for key in whole.all_keys():
        np.testing.assert_array_equal(small.proba(key), whole.proba(key))
    # in memory, by hand: the same rows per group and week, and the unscored row counted, not dropped
    week = pd.to_datetime(df["date"]).dt.to_period("W").astype(str)
    for (g, w), rows in df.groupby([df["speaker_group"], week]):
        got = whole.proba((g, w))
        ok = rows[PROBS].notna().all(axis=1)
        np.testing.assert_allclose(np.sort(got, 0), np.sort(rows.loc[ok, PROBS].to_numpy(np.float32), 0), rtol=1e-6)
        assert whole.unscored[(g, w)] == int((~ok).sum())
    assert whole.model_uri == "runs:/abc/model"
    corr = Correction("pacc", "test", *labeled(100, np.random.default_rng(5)), n_boot=20)
    pd.testing.assert_frame_equal(build_table(small, corr), build_table(whole, corr))


def test_small_groups_are_flagged_with_wide_intervals_never_dropped(tmp_path):
    df = predictions_frame(np.random.default_rng(6))
    df.to_parquet(tmp_path / "p.parquet")
    data = collect(tmp_path / "p.parquet", ["speaker_group"])
    table = build_table(data, Correction("pacc", "test", *labeled(200, np.random.default_rng(7)), n_boot=100))
    assert set(table["speaker_group"]) == {"tiny", "blogger", "official"}
    assert len(table) == 3 * 3
    tiny, big = table[table.speaker_group == "tiny"], table[table.speaker_group == "blogger"]
    assert tiny["small_group"].all() and not big["small_group"].any()
    assert (tiny["n"] == 5).all()
    assert (tiny.ci_high - tiny.ci_low).mean() > 2 * (big.ci_high - big.ci_low).mean()
    assert np.allclose(table.groupby("speaker_group")["share"].sum(), 1.0)


def test_bad_input_names_file_and_column(tmp_path):
    df = predictions_frame(np.random.default_rng(8)).drop(columns=["prob_hostile"])
    df.to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(FindingsError, match=r"p\.csv: no column 'prob_hostile'"):
        collect(tmp_path / "p.csv", ["speaker_group"])
    full = predictions_frame(np.random.default_rng(8))
    full.to_parquet(tmp_path / "q.parquet")
    with pytest.raises(FindingsError, match=r"q\.parquet: no column 'channel' \(--by\)"):
        collect(tmp_path / "q.parquet", ["channel"])
    full.loc[12, "date"] = "next tuesday"
    full.to_parquet(tmp_path / "r.parquet")
    with pytest.raises(FindingsError, match=r"r\.parquet: row 13: column 'date': 'next tuesday' is not a date"):
        collect(tmp_path / "r.parquet", ["speaker_group"], "date")
    # through the CLI: one error line, exit 2, nothing written
    r = CliRunner().invoke(
        app, ["analyze", str(tmp_path / "p.csv"), "--by", "speaker_group", "--output", str(tmp_path / "o.csv")]
    )
    assert r.exit_code == 2 and "no column 'prob_hostile'" in r.output
    assert not (tmp_path / "o.csv").exists()


def test_analyze_cli_with_validation_writes_every_output_and_logs(tmp_path, mlflow_store):
    rng = np.random.default_rng(9)
    predictions_frame(rng).to_parquet(tmp_path / "p.parquet")
    vp, vy = labeled(150, rng)
    val = pd.DataFrame(vp, columns=PROBS).assign(stance=[LABELS[i] for i in vy])
    val.to_csv(tmp_path / "val.csv", index=False)
    out = tmp_path / "res" / "shares.csv"
    args = ["analyze", str(tmp_path / "p.parquet"), "--by", "speaker_group", "--time", "date", "--freq", "W"]
    r = CliRunner().invoke(
        app, args + ["--validation", str(tmp_path / "val.csv"), "--output", str(out), "--n-boot", "30", "--log"]
    )
    assert r.exit_code == 0, r.output
    for name in (
        "shares.csv",
        "shares.parquet",
        "shares.md",
        "shares.tex",
        "shares_time.png",
        "shares_time.svg",
        "shares_heatmap.png",
        "shares_heatmap.svg",
    ):
        assert (out.parent / name).stat().st_size > 0, name
    table = pd.read_csv(out)
    assert list(table.columns[:3]) == ["speaker_group", "period", "stance"]
    assert (table["method"] == "pacc").all() and table["fitted_on"].str.contains("val.csv").all()
    assert "2025-06-02/2025-06-08" in set(table["period"])
    md = (out.parent / "shares.md").read_text()
    assert "| speaker_group | period | stance |" in md and "(small)" in md
    from tests.conftest import tracking_client
    from train.formats import sha256_file

    runs = tracking_client().search_runs([tracking_client().get_experiment_by_name("stance-analysis").experiment_id])
    assert len(runs) == 1
    assert runs[0].data.tags["input_sha256"] == sha256_file(tmp_path / "p.parquet")
    assert runs[0].data.tags["model_uri"] == "runs:/abc/model"


def test_analyze_defaults_to_the_model_runs_evaluation_rows_and_says_they_are_authored(tmp_path, mlflow_store):
    import mlflow

    from train.tracking import get_experiment_id, log_scored_rows, setup_tracking

    rng = np.random.default_rng(10)
    vp, vy = labeled(60, rng)
    setup_tracking()
    with mlflow.start_run(experiment_id=get_experiment_id("test-exp")) as run:  # not the process's last active experiment
        log_scored_rows(pd.DataFrame({"id": range(len(vy)), "stance": [LABELS[i] for i in vy]}), vp, "eval")
    df = predictions_frame(rng)
    df["model_uri"] = f"runs:/{run.info.run_id}/model"
    df.to_parquet(tmp_path / "p.parquet")
    r = CliRunner().invoke(
        app,
        [
            "analyze",
            str(tmp_path / "p.parquet"),
            "--by",
            "speaker_group",
            "--output",
            str(tmp_path / "o.parquet"),
            "--n-boot",
            "20",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "AUTHORED" in r.output and "--validation" in r.output
    assert pd.read_parquet(tmp_path / "o.parquet")["fitted_on"].str.contains("180 rows of the evaluation split").all()


@pytest.fixture(scope="module")
def tiny_baseline(tmp_path_factory):
    from train.models.baseline import BaselineStance

    rows = make_rows()
    model = BaselineStance(ngram_min=2, ngram_max=4, C=4.0).fit([r["text"] for r in rows], [r["stance"] for r in rows])
    return model.save(tmp_path_factory.mktemp("baseline") / "model")


def test_explain_baseline_is_exact_and_finds_the_hostile_word(tiny_baseline):
    from train.findings.explain import explain
    from train.models.baseline import BaselineStance

    model = BaselineStance.load(tiny_baseline)
    e = explain(model, "the ministry said traitors must be punished")
    assert e.labels[int(e.proba.argmax())] == "hostile"
    assert e.top("hostile", 1)[0][0] in {"traitors", "punished", "must"}
    # exact: words + intercept are the centred logits, whose softmax is the model's probability
    logits = e.scores.sum(0) + e.rest
    np.testing.assert_allclose(np.exp(logits) / np.exp(logits).sum(), e.proba, atol=1e-5)


def test_explain_transformer_attributions_are_complete(tiny_model_dir):
    from train.findings.explain import explain
    from train.models.transformer import TransformerStance

    model = TransformerStance(str(tiny_model_dir), max_length=32).build()
    e = explain(model, "strike them hard now", n_steps=64)
    assert e.words == ["strike", "them", "hard", "now"]
    # completeness of integrated gradients: word attributions + the baseline's probability = the probability
    np.testing.assert_allclose(e.scores.sum(0) + e.rest, e.proba, atol=max(5e-3, 2 * e.delta))
    assert e.delta < 0.01


def test_explain_cli_on_text_and_file(tiny_baseline, tmp_path):
    r = CliRunner().invoke(app, ["explain", "--model", str(tiny_baseline), "--text", "they will pay for this insult"])
    assert r.exit_code == 0, r.output
    assert "predicted: hostile" in r.output and "toward hostile" in r.output
    pd.DataFrame({"quote": ["peace and good neighbours", "strike them hard now"]}).to_csv(tmp_path / "q.csv", index=False)
    out = tmp_path / "ex.jsonl"
    r = CliRunner().invoke(
        app,
        [
            "explain",
            "--model",
            str(tiny_baseline),
            "--input",
            str(tmp_path / "q.csv"),
            "--text-column",
            "quote",
            "--output",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [max(x["proba"], key=x["proba"].get) for x in recs] == ["conciliatory", "hostile"]
    r = CliRunner().invoke(app, ["explain", "--model", str(tiny_baseline), "--input", str(tmp_path / "q.csv")])
    assert r.exit_code == 2 and "no column 'text'" in r.output


def test_analyze_scores_an_unscored_validation_file_with_the_model(tiny_baseline, tmp_path):
    """--validation with text and stance but no probabilities: analyze scores it with --model itself."""
    rows = make_rows(n_per_cell=4, seed=3)
    pd.DataFrame({"text": [r["text"] for r in rows], "stance": [r["stance"] for r in rows]}).to_csv(
        tmp_path / "v.csv", index=False
    )
    predictions_frame(np.random.default_rng(11)).to_parquet(tmp_path / "p.parquet")
    out = tmp_path / "o.csv"
    args = ["analyze", str(tmp_path / "p.parquet"), "--by", "speaker_group", "--output", str(out), "--n-boot", "20"]
    r = CliRunner().invoke(app, args + ["--validation", str(tmp_path / "v.csv"), "--model", str(tiny_baseline)])
    assert r.exit_code == 0, r.output
    assert pd.read_csv(out)["fitted_on"].str.startswith(f"{len(rows)} labeled rows of v.csv").all()
    r = CliRunner().invoke(app, args + ["--validation", str(tmp_path / "v.csv")])  # no probabilities and no model
    assert r.exit_code == 2 and "pass --model" in r.output
