"""A study's own data (issue #15, items 1-3): `stance data import csv` with column mapping, generated ids, extra columns
kept in `meta`, problems summarised per kind and "did you mean" hints; a codebook.yaml per data folder; `stance eval
file` and the gold-column agreement of `stance predict`, their figures against scikit-learn."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import REPO, make_rows, write_jsonl
from train.cli import app
from train.config import load_config
from train.data import DataError, import_csv, load_statements, prepare_data, validate
from train.models.baseline import BaselineStance
from train.schema import LABELS, SPEAKER_GROUPS, split_for_id

HEADER = ["quote_id", "date", "speaker", "affiliation", "language", "quote", "stance", "coder", "source_url"]
CODEBOOK = """speaker_groups:
  western_media: newspapers, TV and news sites in EU/NATO countries
  international_org: UN, OSCE officials
  regional_news_agency: news agencies of the region
languages: [ru, en, de]
"""
GROUPS = ["Western media", "International org", "Regional news agency"]


def sheet(path: Path, n: int = 40, **change) -> Path:
    """A coding sheet shaped like the issue's (quote_id, ..., coder, source_url)."""
    rows = make_rows()
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for i in range(n):
            r = rows[i * 2]
            values = {
                "quote_id": f"Q{i + 1:03d}",
                "date": "2025-07-01",
                "speaker": "a speaker",
                "affiliation": GROUPS[i % 3],
                "language": "en" if r["language"] == "en" else "ru",
                "quote": r["text"],
                "stance": r["stance"],
                "coder": "AK",
                "source_url": f"https://example.org/{i}",
            }
            values.update({k: v(i) if callable(v) else v for k, v in change.items()})
            w.writerow([values[h] for h in HEADER])
    return path


@pytest.fixture
def study(tmp_path) -> Path:
    d = tmp_path / "study"
    d.mkdir()
    (d / "codebook.yaml").write_text(CODEBOOK, encoding="utf-8")
    return d


def stance(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


MAP = ["--map", "quote_id=id", "--map", "quote=text", "--map", "affiliation=speaker_group", "--source", "imported"]


# -------------------------------------------------------------------------------------------------- import


def test_import_maps_columns_keeps_extra_columns_as_meta(tmp_path, study):
    result = stance("data", "import", "csv", sheet(tmp_path / "coded.csv"), study / "coded.jsonl", *MAP)
    assert result.exit_code == 0, result.output
    assert "wrote 40 rows" in result.output and "kept in meta: coder, source_url" in result.output
    df = load_statements(study)
    assert df["id"].tolist()[:2] == ["Q001", "Q002"] and df["text"].tolist()[0] == make_rows()[0]["text"]
    assert df["meta"].tolist()[3] == {"coder": "AK", "source_url": "https://example.org/3"}
    assert df["speaker_group"].tolist()[:3] == ["western_media", "international_org", "regional_news_agency"]
    assert (df["split"] == df["id"].map(split_for_id)).all()
    assert validate(study).ok


def test_mapping_file_and_meta_targets(tmp_path, study):
    (tmp_path / "map.yaml").write_text("quote: text\naffiliation: speaker_group\nsource_url: meta.url\n", encoding="utf-8")
    result = stance(
        "data",
        "import",
        "csv",
        sheet(tmp_path / "coded.csv"),
        study / "c.jsonl",
        "--mapping",
        tmp_path / "map.yaml",
        "--source",
        "imported",
    )
    assert result.exit_code == 0, result.output
    first = json.loads((study / "c.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["meta"] == {"quote_id": "Q001", "coder": "AK", "url": "https://example.org/0"}


def test_generated_ids_are_stable_across_reimports(tmp_path, study):
    """No id column: ids from the text, the same after the sheet is re-sorted and extended."""
    m = ["--map", "quote=text", "--map", "affiliation=speaker_group", "--source", "imported"]
    result = stance("data", "import", "csv", sheet(tmp_path / "coded.csv", 30), study / "a.jsonl", *m)
    assert result.exit_code == 0 and "ids: 30 generated from the text" in result.output, result.output
    before = {r["text"]: r["id"] for r in map(json.loads, (study / "a.jsonl").read_text(encoding="utf-8").splitlines())}
    assert all(rid.startswith("coded-") and len(rid) == len("coded-") + 10 for rid in before.values())
    df = pd.read_csv(tmp_path / "coded.csv", dtype=str)
    extended = pd.concat([pd.read_csv(sheet(tmp_path / "more.csv", 36), dtype=str).iloc[30:], df.iloc[::-1]])
    extended.to_csv(tmp_path / "coded.csv", index=False)
    assert stance("data", "import", "csv", tmp_path / "coded.csv", study / "b.jsonl", *m).exit_code == 0
    after = {r["text"]: r["id"] for r in map(json.loads, (study / "b.jsonl").read_text(encoding="utf-8").splitlines())}
    assert len(after) == 36 and all(after[t] == rid for t, rid in before.items())


def test_unmapped_sheet_gets_one_line_per_kind_not_one_per_row(tmp_path, study):
    """The issue's 48 errors: now a missing column is said once, with the option that fixes it, and no row repeats it."""
    result = stance("data", "import", "csv", sheet(tmp_path / "coded.csv"), study / "coded.jsonl")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 3, result.output  # text, speaker_group, source: the id is generated, coder/url are kept
    assert "field 'text': missing required column (name the file's column that holds it: --map COLUMN=text)" in errors[0]
    assert not (study / "coded.jsonl").exists()


def test_many_rows_with_one_problem_are_one_line(tmp_path, study):
    result = stance("data", "import", "csv", sheet(tmp_path / "coded.csv", affiliation="Westrn media"), study / "c.jsonl", *MAP)
    assert result.exit_code == 1
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert "coded.csv:2: field 'speaker_group': unknown speaker_group 'Westrn media'" in line
    assert "Did you mean 'western_media'?" in line and "[and 39 more like it: lines 3, 4, 5, 6, 7 and 34 more]" in line
    assert "40 error(s) of 1 kind(s)" in result.output


@pytest.mark.parametrize(
    "args,says",
    [
        (["--map", "quote=txt"], "--map quote=txt: 'txt' is not a field (valid: id, text, "),
        (["--map", "quote=txt"], "Did you mean 'text'?"),
        (["--map", "quotes=text"], "--map quotes=text: the file has no column 'quotes'. Did you mean 'quote'?"),
        (["--map", "quote"], "--map quote: expected COLUMN=FIELD"),
    ],
)
def test_bad_mapping_is_refused_with_the_close_name(tmp_path, study, args, says):
    result = stance("data", "import", "csv", sheet(tmp_path / "coded.csv"), study / "c.jsonl", *args, "--source", "imported")
    assert result.exit_code in (1, 2) and says in result.output, result.output
    assert not (study / "c.jsonl").exists()


def test_two_columns_for_one_field_are_refused(tmp_path, study):
    with pytest.raises(DataError, match="columns 'speaker', 'quote' would all become 'text'; map only one"):
        import_csv(sheet(tmp_path / "c.csv"), study / "c.jsonl", source="imported", mapping={"quote": "text", "speaker": "text"})


def test_unknown_field_in_jsonl_says_where_extra_columns_go(tmp_path):
    row = {**make_rows()[0], "coder": "AK", "note": "x"}
    report = validate(write_jsonl(tmp_path / "s.jsonl", [row]))
    messages = {p.field: p.message for p in report.errors}
    assert "a study's own columns go in meta" in messages["coder"] and messages["note"].endswith("Did you mean 'notes'?")


def test_meta_must_be_flat(tmp_path):
    rows = make_rows()[:2]
    rows[0]["meta"], rows[1]["meta"] = {"coder": "AK", "n": 3, "ok": True}, {"coder": ["AK", "MB"]}
    report = validate(write_jsonl(tmp_path / "s.jsonl", rows))
    assert [(p.line, p.field) for p in report.errors] == [(2, "meta")], [str(p) for p in report.errors]


# -------------------------------------------------------------------------------------------------- codebook


def test_shipped_codebook_is_the_default():
    book = yaml.safe_load((REPO / "labeled" / "codebook.yaml").read_text(encoding="utf-8"))
    assert tuple(book["speaker_groups"]) == SPEAKER_GROUPS


def test_study_groups_validate_and_default_groups_do_not(tmp_path, study):
    rows = make_rows()[:6]
    for r, g in zip(
        rows, ["western_media", "international_org", "regional_news_agency", "western_media", "russian_official", "western_medai"]
    ):
        r["speaker_group"], r["language"] = g, "en"
    write_jsonl(study / "s.jsonl", rows)
    report = validate(study)
    assert [(p.line, p.field) for p in report.errors] == [(5, "speaker_group"), (6, "speaker_group")]
    assert "the groups of " in report.errors[0].message and "codebook.yaml" in report.errors[0].message
    assert report.errors[1].message.endswith("Did you mean 'western_media'?")
    assert validate(write_jsonl(tmp_path / "elsewhere" / "s.jsonl", make_rows())).ok  # no codebook: the default groups


def test_codebook_languages_are_expected(tmp_path, study):
    rows = make_rows()[:2]
    rows[0]["speaker_group"] = rows[1]["speaker_group"] = "western_media"
    rows[0]["language"], rows[1]["language"] = "de", "tr"
    write_jsonl(study / "s.jsonl", rows)
    (problem,) = validate(study).errors
    assert (
        problem.line == 2 and problem.field == "language" and "'tr' is not one the study expects (ru, en, de" in problem.message
    )


@pytest.mark.parametrize(
    "text,line,key,says",
    [
        (
            "speaker_group:\n  a: b\n",
            1,
            "speaker_group",
            "unknown codebook key (valid: speaker_groups, languages). Did you mean 'speaker_groups'?",
        ),
        (
            "speaker_groups:\n  western_media: x\n  Western Media: y\n",
            3,
            "speaker_groups.Western Media",
            "write it as 'western_media'",
        ),
        ("speaker_groups:\n  a: x\nlanguages: [ru, eng]\n", 3, "languages", "'eng' is not a lowercase ISO 639-1 code"),
        ("speaker_groups: [a, b]\n", 1, "speaker_groups", "expected a mapping of group name to a one-line description"),
        ("speaker_groups:\n  a: x\n  a: y\n", 3, "speaker_groups.a", "listed twice"),
        ("speaker_groups:\n  a: [x]\n", 2, "speaker_groups.a", "expected a one-line description"),
        ("speaker_groups: {a: x\n", 2, None, "not readable YAML"),
        ("languages: [ru]\n", None, "speaker_groups", "missing"),
    ],
)
def test_codebook_errors_name_file_line_and_key(tmp_path, text, line, key, says):
    d = tmp_path / "study"
    write_jsonl(d / "s.jsonl", make_rows()[:3])
    (d / "codebook.yaml").write_text(text, encoding="utf-8")
    report = validate(d)
    found = [p for p in report.errors if p.path.endswith("codebook.yaml")]
    assert found and found[0].line == line and found[0].field == key and says in found[0].message, [str(p) for p in report.errors]
    result = stance("data", "validate", d)
    assert result.exit_code == 1 and "codebook.yaml" in result.output


def test_a_study_with_its_own_groups_prepares_a_run(tmp_path, study):
    """What `stance train` reads first: the study's rows, its groups, held out by group like the project's."""
    assert stance("data", "import", "csv", sheet(tmp_path / "coded.csv", 54), study / "coded.jsonl", *MAP).exit_code == 0
    (tmp_path / "c.yaml").write_text(
        f"data:\n  paths: [{study}]\n  holdout_speaker_groups: [international_org]\n", encoding="utf-8"
    )
    df, parts = prepare_data(load_config(tmp_path / "c.yaml"))
    assert len(df) == 54 and set(parts["eval"]["speaker_group"]) == {"international_org"} and len(parts["eval"]) == 18


# -------------------------------------------------------------------------------------------------- eval file, predict


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("study-baseline") / "model"
    rows = make_rows()
    BaselineStance().fit([r["text"] for r in rows], [r["stance"] for r in rows]).save(path)
    return path


def coded_sample(path: Path) -> pd.DataFrame:
    """Rows the model gets partly wrong: texts of one stance relabeled, so there are errors to find."""
    rows = make_rows(seed=7)[::3]
    df = pd.DataFrame(
        {
            "quote": [r["text"] for r in rows],
            "stance": [("Hostile" if i % 5 == 0 else r["stance"]) for i, r in enumerate(rows)],
            "language": [r["language"] for r in rows],
            "affiliation": [("western_media", "international_org")[i % 2] for i in range(len(rows))],
        }
    )
    df.to_csv(path, index=False)
    return df


def table(out: str, title: str) -> dict[str, list[str]]:
    """The rows of a table `stance eval file` prints under `title`: first cell -> the other cells."""
    lines = out.split(f"\n{title}\n", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    return {cells[0]: cells[1:] for cells in map(str.split, lines)}


def test_eval_file_figures_are_sklearn_figures(tmp_path, baseline_dir):
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    df = coded_sample(tmp_path / "sample.csv")
    result = stance(
        "eval", "file", tmp_path / "sample.csv", "--model", baseline_dir, "--text-column", "quote",
        "--map", "affiliation=speaker_group", "--errors", tmp_path / "errors.csv",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    proba = BaselineStance.load(baseline_dir).predict_proba(df["quote"].tolist())
    gold = df["stance"].str.lower().map(LABELS.index).to_numpy()
    pred = proba.argmax(1)
    assert 0 < (pred != gold).sum() < len(df)
    out = result.output
    assert f"macro-F1 {f1_score(gold, pred, average='macro'):.3f} (95% CI" in out
    assert f"accuracy {accuracy_score(gold, pred):.3f}" in out
    for title, column in (("per language", "language"), ("per speaker group", "affiliation")):
        shown = table(out, title)
        assert set(shown) == set(df[column])
        for value, (n, f1, acc) in shown.items():
            m = (df[column] == value).to_numpy()
            assert (int(n), f1, acc) == (
                m.sum(),
                f"{f1_score(gold[m], pred[m], average='macro'):.3f}",
                f"{(gold[m] == pred[m]).mean():.3f}",
            )
    cm = confusion_matrix(gold, pred, labels=[0, 1, 2])
    for i, label in enumerate(LABELS):
        assert " ".join([label, *map(str, cm[i])]) in " ".join(out.split())
    errors = pd.read_csv(tmp_path / "errors.csv")
    assert len(errors) == (pred != gold).sum() and f"misclassified: {len(errors)} of {len(df)}" in out
    assert errors["pred_confidence"].is_monotonic_decreasing
    assert errors["line"].tolist() == sorted(errors["line"].tolist(), key=lambda n: -proba[n - 2].max())


def test_eval_file_refuses_bad_gold_labels_naming_lines(tmp_path, baseline_dir):
    pd.DataFrame({"text": ["a", "b", "c"], "stance": ["hostile", "hostle", ""]}).to_csv(tmp_path / "s.csv", index=False)
    result = stance("eval", "file", tmp_path / "s.csv", "--model", baseline_dir)
    assert result.exit_code == 2
    assert (
        "s.csv:3: field 'stance': gold label 'hostle' is not one of conciliatory, neutral, hostile. Did you mean 'hostile'?"
        in result.output
    )
    assert "[and 1 more like it: lines 4]" in result.output  # the empty one: same kind of problem
    result = stance("eval", "file", tmp_path / "s.csv", "--model", baseline_dir, "--gold-column", "label")
    assert result.exit_code == 2 and "no column 'label' (--gold-column; the file has text, stance)" in result.output


def test_eval_file_logs_a_run_linked_to_the_model(tmp_path, mlflow_store, baseline_dir):
    from tests.conftest import tracking_client
    from train.formats import sha256_file

    df = coded_sample(tmp_path / "sample.csv")
    result = stance("eval", "file", tmp_path / "sample.csv", "--model", baseline_dir, "--text-column", "quote", "--log")
    assert result.exit_code == 0, result.output
    client = tracking_client()
    (run,) = client.search_runs([client.get_experiment_by_name("stance-evaluations").experiment_id])
    proba = BaselineStance.load(baseline_dir).predict_proba(df["quote"].tolist())
    from sklearn.metrics import f1_score

    gold = df["stance"].str.lower().map(LABELS.index).to_numpy()
    assert run.data.metrics["sample/macro_f1"] == pytest.approx(f1_score(gold, proba.argmax(1), average="macro"))
    assert run.data.tags["stance.eval_file_sha256"] == sha256_file(tmp_path / "sample.csv")
    assert run.data.tags["stance.model_uri"] == str(Path(baseline_dir).resolve())
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "sample")}
    assert {"sample/confusion_matrix.png", "sample/scored.parquet", "sample/misclassified.json"} <= artifacts


def test_predict_reports_agreement_with_a_gold_column(tmp_path, baseline_dir):
    from sklearn.metrics import accuracy_score, f1_score

    df = coded_sample(tmp_path / "sample.csv")
    result = stance(
        "predict",
        "--model",
        baseline_dir,
        "--input",
        tmp_path / "sample.csv",
        "--output",
        tmp_path / "out.csv",
        "--text-column",
        "quote",
    )
    assert result.exit_code == 0, result.output
    out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert out["stance"].tolist() == df["stance"].tolist()  # the gold column is kept as it was
    gold = df["stance"].str.lower().map(LABELS.index).to_numpy()
    pred = out["pred_stance"].map(LABELS.index).to_numpy()
    line = f"agreement with 'stance' ({len(df)} rows): accuracy {accuracy_score(gold, pred):.3f}, macro-F1 {f1_score(gold, pred, average='macro'):.3f}"
    assert line in result.output
    result = stance(
        "predict",
        "--model",
        baseline_dir,
        "--input",
        tmp_path / "sample.csv",
        "--output",
        tmp_path / "o2.csv",
        "--text-column",
        "quote",
        "--gold-column",
        "stanse",
    )
    assert result.exit_code == 2 and "Did you mean 'stance'?" in result.output and not (tmp_path / "o2.csv").exists()
    df.drop(columns=["stance"]).to_csv(tmp_path / "nogold.csv", index=False)
    result = stance(
        "predict",
        "--model",
        baseline_dir,
        "--input",
        tmp_path / "nogold.csv",
        "--output",
        tmp_path / "o3.csv",
        "--text-column",
        "quote",
    )
    assert result.exit_code == 0 and "agreement with" not in result.output


def test_per_group_metrics_match_sklearn():
    from sklearn.metrics import f1_score

    from train.metrics import evaluation_metrics

    rng = np.random.default_rng(0)
    y, proba = rng.integers(0, 3, 60), rng.dirichlet([1, 1, 1], 60)
    groups = np.array(["a", "b", "c"])[rng.integers(0, 3, 60)]
    m = evaluation_metrics(y, proba, groups=groups.tolist())
    for g in "abc":
        assert m[f"macro_f1_group_{g}"] == pytest.approx(f1_score(y[groups == g], proba.argmax(1)[groups == g], average="macro"))
