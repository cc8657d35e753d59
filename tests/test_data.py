"""Tests for train/data.py and the `stance data` CLI (train/cli_data.py)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from train import data
from train.cli.data import data_app
from train.data import DataError, Problem, import_csv, import_tweeteval, load_statements, make_splits, validate
from train.schema import LABELS, SPLITS, split_for_id

REPO = Path(__file__).resolve().parent.parent
LABELED = REPO / "labeled"
UMSAB = REPO.parent / "shared" / "external" / "umsab"
if not UMSAB.is_dir():
    UMSAB = Path("/work/shared/external/umsab")

TOPICS = [
    "the border talks",
    "the gas pipeline",
    "the detained journalists",
    "the flight ban",
    "the embassy",
    "the trade sanctions",
    "the football match",
    "the concert tour",
    "the grain corridor",
    "the customs queue",
]
VERBS = ["criticised", "welcomed", "discussed", "ignored", "mocked", "praised", "questioned", "announced"]


def make_row(i: int, **changes) -> dict:
    """A valid row whose text is unlike every other row's text (so no near-duplicate warnings)."""
    rng = random.Random(i)
    words = " ".join(rng.choice(["alpha", "bravo", "delta", "kilo", "oscar", "zulu", "lima", "echo"]) for _ in range(6))
    row = {
        "id": f"t-{i:04d}",
        "text": f"Statement {i}: the minister {VERBS[i % len(VERBS)]} {TOPICS[(i * 7) % len(TOPICS)]}, code {words} {i * 7919}.",
        "language": ["en", "ru", "uk", "az"][i % 4],
        "stance": LABELS[i % 3],
        "speaker": "analyst",
        "speaker_group": ["russian_official", "western_analyst", "azerbaijani_media"][i % 3],
        "source": "authored",
        "date": "",
        "split": split_for_id(f"t-{i:04d}"),
        "register": "tweet",
        "notes": "",
    }
    row.update(changes)
    if "id" in changes and "split" not in changes:
        row["split"] = split_for_id(row["id"])
    return row


def write_jsonl(path: Path, rows: list) -> Path:
    lines = [r if isinstance(r, (str, bytes)) else json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_bytes(b"\n".join(l if isinstance(l, bytes) else l.encode("utf-8") for l in lines) + b"\n")
    return path


@pytest.fixture
def good_dir(tmp_path) -> Path:
    d = tmp_path / "labeled"
    d.mkdir()
    write_jsonl(d / "statements_a.jsonl", [make_row(i) for i in range(40)])
    write_jsonl(d / "statements_b.jsonl", [make_row(i) for i in range(40, 80)])
    return d


def broken_file(tmp_path, index: int, **changes) -> Path:
    """statements.jsonl with 5 good rows where row `index` (line index+1) gets `changes`."""
    rows = [make_row(i) for i in range(5)]
    rows[index] = make_row(index, **changes)
    return write_jsonl(tmp_path / "statements.jsonl", rows)


def only_error(report, line: int, field: str | None, pattern: str) -> Problem:
    assert len(report.errors) == 1, [str(p) for p in report.errors]
    p = report.errors[0]
    assert p.path.endswith("statements.jsonl") and p.line == line and p.field == field, str(p)
    assert re.search(pattern, str(p)), str(p)
    assert str(p).startswith(f"{p.path}:{line}: ")
    return p


# ---------------------------------------------------------------------------------------------- one test per error


def test_good_corpus_has_no_problems(good_dir):
    report = validate(good_dir)
    assert report.ok and report.errors == [] and report.warnings == [], [str(p) for p in report.warnings]
    assert report.n_rows == 80 and report.n_files == 2


def test_problem_str_format():
    p = Problem("labeled/x.jsonl", 12, "stance", "unknown label 'hostle' (expected one of conciliatory, neutral, hostile)")
    assert str(p) == "labeled/x.jsonl:12: field 'stance': unknown label 'hostle' (expected one of conciliatory, neutral, hostile)"


def test_unknown_label(tmp_path):
    p = only_error(validate(broken_file(tmp_path, 2, stance="hostle")), 3, "stance", "unknown label 'hostle'")
    assert str(p).endswith(
        "field 'stance': unknown label 'hostle' (expected one of conciliatory, neutral, hostile). Did you mean 'hostile'?"
    )


@pytest.mark.parametrize("code", ["EN", "eng", "e", "", "e1"])
def test_malformed_language(tmp_path, code):
    only_error(validate(broken_file(tmp_path, 1, language=code)), 2, "language", "malformed language code")


def test_unknown_language_code(tmp_path):
    only_error(validate(broken_file(tmp_path, 4, language="xx")), 5, "language", "unknown language code 'xx'")


def test_iso639_1_set():
    assert len(data.ISO639_1) in (183, 184)
    assert {"en", "ru", "uk", "az", "tr", "ka", "hy", "kk", "de", "fr", "zh"} <= data.ISO639_1
    assert all(re.fullmatch("[a-z]{2}", c) for c in data.ISO639_1)


def test_empty_text(tmp_path):
    only_error(validate(broken_file(tmp_path, 0, text="")), 1, "text", "empty text")


def test_whitespace_text(tmp_path):
    only_error(validate(broken_file(tmp_path, 0, text=" \t\n ")), 1, "text", "whitespace-only text")


def test_non_string_text(tmp_path):
    only_error(validate(broken_file(tmp_path, 3, text=42)), 4, "text", "must be a string")


def test_duplicate_id_reports_both_locations(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [make_row(1), make_row(2)])
    write_jsonl(tmp_path / "b.jsonl", [make_row(3), make_row(4, id="t-0002")])
    report = validate(tmp_path)
    assert [(Path(p.path).name, p.line, p.field) for p in report.errors] == [("a.jsonl", 2, "id"), ("b.jsonl", 2, "id")]
    assert "b.jsonl:2" in report.errors[0].message and "a.jsonl:2" in report.errors[1].message
    assert all("duplicate id 't-0002'" in p.message for p in report.errors)


def test_conflicting_duplicate_text_reports_both_locations(tmp_path):
    text = make_row(0)["text"]
    rows = [make_row(i) for i in range(4)]
    rows[3] = make_row(
        3, text="  " + text.upper().replace(" ", "   "), stance="hostile" if rows[0]["stance"] != "hostile" else "neutral"
    )
    report = validate(write_jsonl(tmp_path / "statements.jsonl", rows))
    assert [(p.line, p.field) for p in report.errors] == [(1, "stance"), (4, "stance")]
    assert "statements.jsonl:4" in report.errors[0].message and "statements.jsonl:1" in report.errors[1].message
    assert "same text labeled" in report.errors[0].message


def test_exact_duplicate_same_stance_is_a_warning(tmp_path):
    rows = [make_row(i) for i in range(4)]
    rows[2] = make_row(2, text=rows[0]["text"], stance=rows[0]["stance"])
    report = validate(write_jsonl(tmp_path / "statements.jsonl", rows))
    assert report.ok
    assert [(w.line, w.field) for w in report.warnings] == [(3, "text")]
    assert "exact duplicate" in report.warnings[0].message and "statements.jsonl:1" in report.warnings[0].message


def test_bad_utf8(tmp_path):
    rows = [make_row(i) for i in range(4)]
    lines = [json.dumps(r, ensure_ascii=False).encode() for r in rows]
    lines[2] = lines[2].replace(b"Statement", b"St\xffatement")
    path = write_jsonl(tmp_path / "statements.jsonl", lines)
    only_error(validate(path), 3, None, "invalid UTF-8")


def test_malformed_json_line(tmp_path):
    rows = [json.dumps(make_row(i)) for i in range(4)]
    rows[1] = rows[1][:-10]  # truncated, as when a file is half-written
    only_error(validate(write_jsonl(tmp_path / "statements.jsonl", rows)), 2, None, "malformed JSON")


def test_non_object_line(tmp_path):
    rows = [json.dumps(make_row(i)) for i in range(3)] + ['["a", "list"]']
    only_error(validate(write_jsonl(tmp_path / "statements.jsonl", rows)), 4, None, "expected an object")


def test_missing_column(tmp_path):
    row = make_row(2)
    del row["speaker_group"]
    rows = [make_row(i) for i in range(4)]
    rows[2] = row
    only_error(validate(write_jsonl(tmp_path / "statements.jsonl", rows)), 3, "speaker_group", "missing required field")


def test_missing_csv_column_reported_once_on_header(tmp_path):
    rows = [make_row(i) for i in range(4)]
    pd.DataFrame(rows).drop(columns=["date"]).to_csv(tmp_path / "statements.csv", index=False)
    report = validate(tmp_path / "statements.csv")
    assert [(p.line, p.field) for p in report.errors] == [(1, "date")], [str(p) for p in report.errors]
    assert "missing required column" in report.errors[0].message


def test_unknown_field(tmp_path):
    p = only_error(validate(broken_file(tmp_path, 1, labell="x")), 2, "labell", "unknown field")
    assert "allowed: id, text, language" in p.message


def test_wrong_split(tmp_path):
    right = split_for_id("t-0001")
    wrong = next(s for s in SPLITS if s != right)
    p = only_error(validate(broken_file(tmp_path, 1, split=wrong)), 2, "split", "derived from the id")
    assert repr(right) in p.message


def test_imported_rows_keep_their_split(tmp_path):
    right = split_for_id("t-0001")
    wrong = next(s for s in SPLITS if s != right)
    assert validate(broken_file(tmp_path, 1, split=wrong, source="imported")).ok


@pytest.mark.parametrize(
    "name,value,pattern",
    [
        ("speaker_group", "russian_oficial", "unknown speaker_group"),
        ("source", "scraped", "unknown source"),
        ("split", "dev", "unknown split"),
        ("date", "23.07.2025", "malformed date"),
        ("date", "2025-02-30", "malformed date"),
        ("register", "podcast", "unknown register"),
    ],
)
def test_unknown_values(tmp_path, name, value, pattern):
    only_error(validate(broken_file(tmp_path, 2, **{name: value})), 3, name, pattern)


def test_all_problems_in_one_pass(tmp_path):
    rows = [json.dumps(make_row(i)) for i in range(6)]
    rows[1] = json.dumps(make_row(1, stance="hostle"))
    rows[3] = "{not json"
    rows[5] = json.dumps(make_row(5, language="xx", text=""))
    write_jsonl(tmp_path / "statements.jsonl", rows)
    report = validate(tmp_path)
    assert sorted((p.line, p.field or "") for p in report.errors) == [(2, "stance"), (4, ""), (6, "language"), (6, "text")]


def test_three_different_errors_reported(tmp_path):
    rows = [make_row(i) for i in range(5)]
    rows[0] = make_row(0, stance="angry")
    rows[2] = make_row(2, language="english")
    rows[4] = make_row(4, notes="ok", extra=1)
    report = validate(write_jsonl(tmp_path / "statements.jsonl", rows))
    assert len(report.errors) == 3
    assert {(p.line, p.field) for p in report.errors} == {(1, "stance"), (3, "language"), (5, "extra")}


def test_lone_surrogate_is_an_error_naming_the_field(tmp_path):
    lines = [json.dumps(make_row(i)) for i in range(3)]
    lines[1] = lines[1].replace('"text": "', '"text": "\\ud83d ', 1)  # half an emoji: valid JSON, not valid Unicode
    only_error(validate(write_jsonl(tmp_path / "statements.jsonl", lines)), 2, "text", "lone surrogate")


def test_deeply_nested_line_is_an_error_not_a_crash(tmp_path):
    lines = [json.dumps(make_row(i)) for i in range(3)] + ["[" * 100000]
    only_error(validate(write_jsonl(tmp_path / "statements.jsonl", lines)), 4, None, "nested too deeply")


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "statements.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(make_row(i)) + "\n" for i in range(3)).encode())
    report = validate(path)
    assert report.ok and report.n_rows == 3, [str(p) for p in report.errors]


def test_cli_nothing_validated_is_not_a_success(tmp_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "nodata").mkdir()
    runner = CliRunner()
    empty = runner.invoke(data_app, ["validate", str(tmp_path / "empty.jsonl")])
    assert empty.exit_code == 1 and "empty.jsonl: empty file" in empty.output and "nothing validated" in empty.output, (
        empty.output
    )
    nodata = runner.invoke(data_app, ["validate", str(tmp_path / "nodata")])
    assert nodata.exit_code == 1 and "holds no *.jsonl" in nodata.output and "nothing validated" in nodata.output, nodata.output
    good = write_jsonl(tmp_path / "good.jsonl", [make_row(i) for i in range(3)])
    mixed = runner.invoke(data_app, ["validate", str(good), str(tmp_path / "empty.jsonl")])
    assert mixed.exit_code == 0 and "warning: " in mixed.output and "empty file" in mixed.output, mixed.output


def test_missing_path_is_an_error(tmp_path):
    report = validate([tmp_path / "nope.jsonl"])
    assert not report.ok and "no such file" in report.errors[0].message


def test_load_statements_raises_with_every_problem(tmp_path, good_dir):
    write_jsonl(good_dir / "statements_c.jsonl", [make_row(100, stance="x"), make_row(101, language="zz")])
    with pytest.raises(DataError) as e:
        load_statements(good_dir)
    assert len(e.value.problems) == 2 and "statements_c.jsonl:1" in str(e.value)


def test_load_statements_frame(good_dir):
    df = load_statements(good_dir)
    assert list(df.columns) == list(data.ALL_FIELDS) and len(df) == 80
    assert set(df.stance) == set(LABELS)


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_validate_exit_codes(tmp_path, good_dir):
    runner = CliRunner()
    ok = runner.invoke(data_app, ["validate", str(good_dir)])
    assert ok.exit_code == 0, ok.output
    assert "80 rows" in ok.output and "0 error(s)" in ok.output
    broken = broken_file(tmp_path, 1, stance="hostle")
    bad = runner.invoke(data_app, ["validate", str(broken)])
    assert bad.exit_code == 1
    assert "statements.jsonl:2: field 'stance': unknown label 'hostle'" in bad.output


def test_cli_warnings_do_not_fail(tmp_path):
    rows = [make_row(i) for i in range(4)]
    rows[2] = make_row(2, text=rows[0]["text"], stance=rows[0]["stance"])
    result = CliRunner().invoke(data_app, ["validate", str(write_jsonl(tmp_path / "statements.jsonl", rows))])
    assert result.exit_code == 0 and "warning:" in result.output


def test_cli_stats_write_card(good_dir):
    card = good_dir / "README.md"
    card.write_text("# Card\n\nbefore\n<!-- stats:start -->\nold\n<!-- stats:end -->\nafter\n")
    result = CliRunner().invoke(data_app, ["stats", str(good_dir), "--write-card"])
    assert result.exit_code == 0, result.output
    text = card.read_text()
    assert "old" not in text and "before" in text and "after" in text and "| **total** |" in text
    assert text.index("<!-- stats:start -->") < text.index("80 rows") < text.index("<!-- stats:end -->")


# ---------------------------------------------------------------------------------------------- splits


def test_split_stability_and_proportions():
    ids = [f"row-{i}" for i in range(5000)]
    before = {i: split_for_id(i) for i in ids[:1000]}
    after = {i: split_for_id(i) for i in ids}  # the corpus grew
    assert all(after[i] == s for i, s in before.items())
    counts = pd.Series(list(after.values())).value_counts(normalize=True)
    assert abs(counts["train"] - 0.70) < 0.03 and abs(counts["val"] - 0.15) < 0.02 and abs(counts["test"] - 0.15) < 0.02


def test_adding_rows_keeps_existing_splits(good_dir):
    before = load_statements(good_dir).set_index("id")["split"]
    write_jsonl(good_dir / "statements_c.jsonl", [make_row(i) for i in range(200, 260)])
    after = load_statements(good_dir).set_index("id")["split"]
    assert (after.loc[before.index] == before).all()


def frame(n=300) -> pd.DataFrame:
    return pd.DataFrame([make_row(i) for i in range(n)])


def test_make_splits_default_uses_split_column():
    df = frame()
    parts = make_splits(df)
    assert len(parts["train"]) == (df.split == "train").sum()
    assert len(parts["val"]) == (df.split == "val").sum()
    assert set(parts["eval"].split) == {"test"} and len(parts["eval"]) == (df.split == "test").sum()
    assert set(make_splits(df, eval_split="val")["eval"].split) == {"val"}


def test_make_splits_holdout_language():
    df = frame()
    parts = make_splits(df, holdout_languages=["az"])
    assert set(parts["eval"].language) == {"az"}
    assert len(parts["eval"]) == (df.language == "az").sum()  # every az row, from all splits
    assert set(parts["eval"].split) == set(SPLITS)
    for name in ("train", "val"):
        assert "az" not in set(parts[name].language)
    assert len(parts["train"]) == ((df.language != "az") & (df.split == "train")).sum()
    assert len(parts["val"]) == ((df.language != "az") & (df.split == "val")).sum()


def test_make_splits_holdout_language_and_group():
    df = frame()
    parts = make_splits(df, holdout_languages=("uk",), holdout_speaker_groups=("western_analyst",))
    held = (df.language == "uk") | (df.speaker_group == "western_analyst")
    assert len(parts["eval"]) == held.sum()
    assert not ((parts["train"].language == "uk") | (parts["train"].speaker_group == "western_analyst")).any()


def test_make_splits_errors():
    df = frame()
    with pytest.raises(ValueError, match="'fr'"):
        make_splits(df, holdout_languages=["fr"])
    with pytest.raises(ValueError, match="'train' set is empty"):
        make_splits(df, holdout_languages=["en", "ru", "uk", "az"])
    with pytest.raises(ValueError, match="'val' set is empty"):
        make_splits(df[df.split != "val"])


def test_filter_statements():
    df = frame(40)
    assert set(data.filter_statements(df, languages=["en", "ru"]).language) == {"en", "ru"}
    assert "en" not in set(data.filter_statements(df, exclude_languages="en").language)
    out = data.filter_statements(df, speaker_groups=["western_analyst"], exclude_speaker_groups=[], sources=["authored"])
    assert set(out.speaker_group) == {"western_analyst"} and out.index.tolist() == list(range(len(out)))
    assert data.filter_statements(df, sources=["imported"]).empty


# ---------------------------------------------------------------------------------------------- near duplicates


def test_near_duplicate_across_splits_warns(tmp_path):
    rows = [make_row(i) for i in range(10)]
    base = rows[0]
    other_id = next(f"nd-{k}" for k in range(100) if split_for_id(f"nd-{k}") != base["split"])
    same_id = next(f"nd-{k}" for k in range(100, 200) if split_for_id(f"nd-{k}") == base["split"])
    rows.append(make_row(10, id=other_id, text=base["text"].replace("minister", "ministers")))
    rows.append(make_row(11, id=same_id, text=base["text"].replace("minister", "ministre")))  # same split: fine
    report = validate(write_jsonl(tmp_path / "statements.jsonl", rows))
    assert report.ok
    assert [(w.line, w.field) for w in report.warnings] == [(11, "text")], [str(w) for w in report.warnings]
    assert "near-duplicate" in report.warnings[0].message and "statements.jsonl:1" in report.warnings[0].message


def test_near_duplicate_pairs_is_fast_and_exact():
    import time

    rng = random.Random(0)
    vocab = [f"w{k}" for k in range(3000)]
    texts = [" ".join(rng.choice(vocab) for _ in range(20)) for _ in range(10000)]
    texts[9999] = texts[5] + " x"
    groups = [SPLITS[i % 3] for i in range(10000)]
    start = time.process_time()  # CPU time of this process: what the code costs, not how busy the machine is
    pairs = data.near_duplicate_pairs(texts, groups)
    assert time.process_time() - start < 60
    assert [(i, j) for i, j, _ in pairs] == [(5, 9999)]


# ---------------------------------------------------------------------------------------------- importers


def make_tweeteval(folder: Path, splits=None, mapping=True) -> Path:
    folder.mkdir(parents=True)
    splits = splits or {
        "train": [(r"I\u2019m fine\u002c thanks", 2), (r"a \\n backslash \d stays", 1), ("awful day", 0)],
        "val": [("meh", 1)],
        "test": [(r"emoji \ud83d\ude00 ok", 2), (r"lone \ud83d stays", 0)],
    }
    for split, items in splits.items():
        (folder / f"{split}_text.txt").write_text("\n".join(t for t, _ in items), encoding="utf-8")
        (folder / f"{split}_labels.txt").write_text("\n".join(str(l) for _, l in items), encoding="utf-8")
    if mapping:
        (folder / "mapping.txt").write_text("0\tnegative\n1\tneutral\n2\tpositive\n")
    return folder


def test_tweeteval_import(tmp_path):
    folder = make_tweeteval(tmp_path / "bench" / "english")
    out = tmp_path / "out.jsonl"
    assert import_tweeteval(folder, out) == 6
    rows = [json.loads(l) for l in out.read_text(encoding="utf-8").splitlines()]
    first = rows[0]
    assert first["text"] == "I\u2019m fine, thanks"
    assert first["id"] == "bench-en-train-000001" and first["language"] == "en" and first["stance"] == "conciliatory"
    assert (first["source"], first["speaker"], first["speaker_group"], first["split"]) == (
        "imported",
        "unknown",
        "other",
        "train",
    )
    assert rows[1]["text"] == r"a \\n backslash \d stays"
    assert rows[2]["stance"] == "hostile" and rows[3]["split"] == "val"
    assert rows[4]["text"] == "emoji \U0001f600 ok" and rows[5]["text"] == r"lone \ud83d stays"
    assert validate(out).ok


def test_tweeteval_parent_folder_and_options(tmp_path):
    make_tweeteval(tmp_path / "bench" / "french")
    make_tweeteval(tmp_path / "bench" / "de")
    make_tweeteval(tmp_path / "bench" / "all")  # a concatenation: skipped
    df = data.read_tweeteval(tmp_path / "bench", id_prefix="x")
    assert sorted(set(df.language)) == ["de", "fr"] and len(df) == 12 and df.id.str.startswith("x-").all()
    df = data.read_tweeteval(tmp_path / "bench" / "french", language="fr", label_map={0: "neutral", 1: "neutral", 2: "hostile"})
    assert set(df.stance) == {"neutral", "hostile"}
    with pytest.raises(DataError, match="all"):
        data.read_tweeteval(tmp_path / "bench" / "all")


def test_tweeteval_mismatched_lines(tmp_path):
    folder = make_tweeteval(tmp_path / "english")
    (folder / "val_labels.txt").write_text("1\n2\n0")
    with pytest.raises(DataError) as e:
        import_tweeteval(folder, tmp_path / "out.jsonl")
    message = str(e.value)
    assert "val_text.txt" in message and "val_labels.txt" in message
    assert not (tmp_path / "out.jsonl").exists()


def test_tweeteval_cli(tmp_path):
    folder = make_tweeteval(tmp_path / "bench" / "spanish")
    out = tmp_path / "es.jsonl"
    result = CliRunner().invoke(data_app, ["import", "tweeteval", str(folder), str(out)])
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 6


@pytest.mark.skipif(not (UMSAB / "english").is_dir(), reason="UMSAB not available")
def test_umsab_english(tmp_path):
    df = data.read_tweeteval(UMSAB / "english")
    assert len(df) == 1839 + 324 + 870
    assert df.split.value_counts().to_dict() == {"train": 1839, "test": 870, "val": 324}
    assert set(df.language) == {"en"} and set(df.stance) == set(LABELS)
    assert not df.text.str.contains(r"\\u[0-9a-fA-F]{4}", regex=True).any()
    assert df.id.iloc[0] == "umsab-en-train-000001"


@pytest.mark.skipif(not UMSAB.is_dir(), reason="UMSAB not available")
def test_umsab_all_languages_fast(tmp_path):
    import time

    start = time.process_time()  # CPU time: robust on a busy machine (the import is one pass, ~1-2 s)
    n = import_tweeteval(UMSAB, tmp_path / "umsab.jsonl")
    assert time.process_time() - start < 30
    assert n == 8 * (1839 + 324 + 870)


def test_import_csv(tmp_path):
    rows = [make_row(i) for i in range(6)]
    df = pd.DataFrame(rows).drop(columns=["split", "source", "register", "notes"])
    df.to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(DataError, match="--source"):
        import_csv(tmp_path / "in.csv", tmp_path / "out.jsonl")
    assert import_csv(tmp_path / "in.csv", tmp_path / "out.jsonl", source="authored").rows == 6
    out = load_statements(tmp_path / "out.jsonl")
    assert (out.split == out.id.map(split_for_id)).all() and set(out.source) == {"authored"}


def test_import_csv_validates_with_line_numbers(tmp_path):
    rows = [make_row(i) for i in range(4)]
    rows[2]["stance"] = "hostle"
    pd.DataFrame(rows).to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(DataError) as e:
        import_csv(tmp_path / "in.csv", tmp_path / "out.jsonl")
    assert [(p.line, p.field) for p in e.value.problems] == [(4, "stance")]  # header is line 1
    assert not (tmp_path / "out.jsonl").exists()
    result = CliRunner().invoke(data_app, ["import", "csv", str(tmp_path / "in.csv"), str(tmp_path / "out.jsonl")])
    assert result.exit_code == 1 and "in.csv:4: field 'stance'" in result.output


# ---------------------------------------------------------------------------------------------- stats


def test_stats_table_counts_match():
    df = frame(90)
    md = data.stats_table(df)
    for lang in ["en", "ru", "uk", "az"]:
        sub = df[df.language == lang]
        counts = [int((sub.stance == label).sum()) for label in LABELS]
        assert f"| {lang} | {' | '.join(map(str, counts))} | {len(sub)} |" in md
    totals = [int((df.stance == label).sum()) for label in LABELS]
    assert f"| **total** | {' | '.join(map(str, totals))} | 90 |" in md
    for split in SPLITS:
        assert re.search(rf"\| {split} \|[^\n]*\| {(df.split == split).sum()} \|", md)
    assert "| authored | 30 | 30 | 30 | 90 |" in md
    assert "Rows per speaker group and stance" in md and "Rows per source and stance" in md


# ---------------------------------------------------------------------------------------------- the real corpus


@pytest.mark.skipif(not list(LABELED.glob("*.jsonl")), reason="no corpus files yet")
def test_real_corpus_validates():
    report = validate(LABELED)
    assert report.ok, "\n".join(str(p) for p in report.errors[:30])
    assert report.n_rows > 0


def test_dataset_card_has_stats_markers():
    text = (LABELED / "README.md").read_text(encoding="utf-8")
    assert text.index(data.STATS_START) < text.index(data.STATS_END)
