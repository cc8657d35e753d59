"""The one reader of whole tables (train.inference.tables.read_rows) and the four commands' readers built on it: each
record's true file line (a quoted CSV cell may span lines), strings kept as strings, and a malformed row an error that
names file:line in each command's own error class."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from train.annotate.pool import AnnotateError, read_pool
from train.cli import app
from train.coding.records import read_records
from train.data import DataError
from train.findings.analyze import read_labeled
from train.findings.collect import FindingsError
from train.inference.tables import TableError, read_rows
from train.reports.file_eval import coded_rows

# line 1 header; the first record spans lines 2-4 (a quoted cell with two newlines); line 5 a blank line; line 6 a
# good row; line 7 a row with a cell too many
MULTILINE = 'id,text,stance\n007,"first line\nsecond line\nthird line",hostile\n\n8,plain,neutral\n9,extra,neutral,oops\n'


def test_csv_lines_are_the_records_first_lines_and_cells_stay_text(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(MULTILINE.rsplit("9,", 1)[0] + 'x,,conciliatory\n , , \n10,"a\n""b""",neutral\n', encoding="utf-8")
    columns, rows = read_rows(path)
    assert columns == ["id", "text", "stance"]
    assert [line for line, _ in rows] == [2, 6, 7, 9]  # line 8 (cells of blanks) is skipped like a blank line
    assert rows[0][1] == {"id": "007", "text": "first line\nsecond line\nthird line", "stance": "hostile"}
    assert rows[2][1] == {"id": "x", "text": None, "stance": "conciliatory"}  # an empty cell is None
    assert rows[3][1]["text"] == 'a\n"b"'
    assert read_rows(path, columns=["id"])[1][1] == (6, {"id": "8"})


@pytest.mark.parametrize(
    "name, content, line, says",
    [
        ("t.csv", MULTILINE, 7, "4 values, the header has 3"),
        ("t.csv", 'id,text\n1,"a\nb"\n2\n', 4, "1 values, the header has 2"),  # fewer cells is an error too
        ("t.csv", b'id,text\n1,"a\nb"\n2,caf\xe9\n', 4, "cannot decode as utf-8 (byte 0xe9)"),
        ("t.jsonl", '{"id": 1}\n\n[1, 2]\n', 3, "not a JSON object"),
        ("t.jsonl", '{"id": 1}\n{"id": 2\n', 2, "invalid JSON"),
        ("t.jsonl", b'{"id": 1}\n{"id": "\xff"}\n', 2, "invalid UTF-8"),
    ],
)
def test_a_malformed_row_is_an_error_naming_file_and_line(tmp_path, name, content, line, says):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(TableError) as e:
        read_rows(path)
    assert (e.value.path, e.value.line) == (str(path), line) and says in e.value.reason
    assert str(e.value).startswith(f"{path}:{line}: ")


def test_parquet_rows_are_numbered_with_plain_values(tmp_path):
    path = tmp_path / "t.parquet"
    frame = pd.DataFrame(
        {"id": ["007", "8"], "n": pd.array([1790000000000000123, None], dtype="Int64"), "x": [0.5, float("nan")]}
    )
    frame.to_parquet(path)
    columns, rows = read_rows(path)
    assert columns == ["id", "n", "x"]
    assert rows == [(1, {"id": "007", "n": 1790000000000000123, "x": 0.5}), (2, {"id": "8", "n": None, "x": None})]
    assert type(rows[0][1]["n"]) is int
    # Parquet writers need not validate UTF-8: a bad cell is an error naming its row
    bad = pa.Array.from_buffers(
        pa.string(), 2, [None, pa.py_buffer(bytes([0, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0])), pa.py_buffer(b"ok\xff")]
    )
    pq.write_table(pa.table({"text": bad}), tmp_path / "bad.parquet")
    with pytest.raises(TableError, match=r"bad.parquet: row 2: column 'text': invalid UTF-8"):
        read_rows(tmp_path / "bad.parquet")


def test_coded_rows_name_the_true_line_after_a_multiline_cell(tmp_path):
    """`stance eval file` used to count CSV lines as row index + 2, wrong after a cell holding newlines."""
    path = tmp_path / "s.csv"
    path.write_text('text,stance\n"one\ntwo",hostile\nthree,hostle\n"four\n\nfive",\n', encoding="utf-8")
    with pytest.raises(DataError) as e:
        coded_rows(path)
    assert [(p.line, p.field) for p in e.value.problems] == [(4, "stance"), (5, "stance")]
    assert "s.csv:4: field 'stance': gold label 'hostle'" in str(e.value.problems[0])
    assert "gold label ''" in str(e.value.problems[1])  # an empty CSV cell is shown as written
    path.write_text('text,stance\n"one\ntwo",hostile\n007,neutral\n', encoding="utf-8")
    rows = coded_rows(path)
    assert rows["line"].tolist() == [2, 4] and rows["text"].tolist() == ["one\ntwo", "007"]


def test_eval_file_names_the_line_of_a_malformed_row(tmp_path):
    (tmp_path / "s.csv").write_text(MULTILINE, encoding="utf-8")
    result = CliRunner().invoke(app, ["eval", "file", str(tmp_path / "s.csv"), "--model", str(tmp_path / "no-model")])
    assert result.exit_code == 2, result.output
    assert "s.csv:7: 4 values, the header has 3" in result.output


def _pool_error(path):
    with pytest.raises(AnnotateError) as e:
        read_pool(path)
    return str(e.value)


def _coding_error(path):
    with pytest.raises(DataError) as e:
        read_records(path)
    return str(e.value.problems[0])


def _findings_error(path):
    with pytest.raises(FindingsError) as e:
        read_labeled(path)
    return str(e.value)


def _eval_error(path):
    with pytest.raises(DataError) as e:
        coded_rows(path)
    return str(e.value.problems[0])


CALLERS = {"annotate": _pool_error, "coding": _coding_error, "findings": _findings_error, "eval file": _eval_error}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(
    "name, content, where",
    [
        ("t.csv", MULTILINE, "t.csv:7: "),
        ("t.jsonl", '{"id": "1", "text": "a", "stance": "hostile"}\n\n{"id": "2", "text": "b",\n', "t.jsonl:3: invalid JSON"),
        ("t.csv", b'id,text,stance\n1,"a\nb",hostile\n2,caf\xe9,neutral\n', "t.csv:4: cannot decode"),
    ],
)
def test_each_caller_reports_file_and_line_of_a_malformed_row(tmp_path, caller, name, content, where):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert where in CALLERS[caller](path)


def test_findings_name_the_line_of_a_bad_label_or_probability(tmp_path):
    from train.findings.analyze import validation_arrays

    path = tmp_path / "v.csv"
    head = "text,stance,prob_conciliatory,prob_neutral,prob_hostile\n"
    path.write_text(head + '"a\nb",hostile,.1,.2,.7\nc,angry,.1,.2,.7\n')
    with pytest.raises(FindingsError, match=r"v.csv:4: column 'stance': 'angry' is not one of"):
        read_labeled(path)
    path.write_text(head + '"a\nb",hostile,.1,.2,.7\nc,neutral,,,\nd,neutral,.1,x,.2\n')
    with pytest.raises(FindingsError, match=r"v.csv:4: empty probabilities"):
        validation_arrays(read_labeled(path), path)
    path.write_text(head + '"a\nb",hostile,.1,.2,.7\nd,neutral,.1,x,.2\n')
    with pytest.raises(FindingsError, match=r"v.csv:4: column 'prob_neutral': 'x' is not a probability"):
        validation_arrays(read_labeled(path), path)
    path.write_text(head + '"a\nb",hostile,.1,.2,.7\nc,neutral,0.25,0.5,0.25\n')
    proba, y = validation_arrays(read_labeled(path), path)
    assert proba.tolist() == [[0.1, 0.2, 0.7], [0.25, 0.5, 0.25]] and y.tolist() == [2, 1]


@pytest.mark.parametrize("suffix", [".ndjson", ".pq", ".csv"])
def test_predict_agreement_reads_every_output_format_predict_writes(tmp_path, suffix):
    from train.reports.file_eval import agreement
    from train.schema import LABELS

    rows = pd.DataFrame({"stance": ["hostile", "neutral", ""], "pred_stance": ["hostile", "hostile", "neutral"]})
    for i, label in enumerate(LABELS):
        rows[f"prob_{label}"] = [0.1, 0.2, 0.3][i]
    path = tmp_path / f"out{suffix}"
    if suffix == ".pq":
        rows.to_parquet(path)
    elif suffix == ".csv":
        rows.to_csv(path, index=False)
    else:
        rows.to_json(path, orient="records", lines=True)
    metrics, n, unlabeled = agreement(path, "stance")
    assert (n, unlabeled) == (2, 1) and metrics["accuracy"] == 0.5
