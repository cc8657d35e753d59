"""The bad-input corpus (issue 12): every bad file is generated here, then run through both `stance data validate` and
`stance predict`. Each must end without a traceback, with the exit code of docs/input-contract.md, keep bad rows with
a reason (or refuse the whole file before any work), and leave nothing behind but the input and a finished output."""

from __future__ import annotations

import csv
import io
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.conftest import make_rows
from train.cli import app
from train.models import BaselineStance

ROWS = make_rows()[:12]  # rows valid for `stance data validate`: it reports only what each case breaks
FIELDS = list(ROWS[0])


def jsonl(rows=ROWS) -> list[bytes]:
    return [json.dumps(r, ensure_ascii=False).encode() for r in rows]


def csv_text(rows=ROWS) -> str:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(FIELDS)
    writer.writerows([r[f] for f in FIELDS] for r in rows)
    return buf.getvalue()


FRENCH = [{**r, "text": f"Déclaration: {r['text']}"} if i % 3 == 0 else r for i, r in enumerate(ROWS)]  # é is not ASCII


def extra_field() -> bytes:
    lines = csv_text().splitlines(keepends=True)
    lines[4] = lines[4].rstrip("\r\n") + ",surplus\r\n"  # row 3 (line 5): an unquoted comma too many
    return "".join(lines).encode()


def with_line(index: int, line: bytes) -> bytes:
    lines = jsonl()
    lines[index] = line
    return b"\n".join(lines) + b"\n"


def parquet_bytes(table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def parquet_with_bad_utf8() -> bytes:  # written by a tool that does not validate its strings
    texts = [r["text"].encode() for r in ROWS]
    texts[7] = b"bad \xff " + texts[7]
    return parquet_bytes(pa.table({"id": [r["id"] for r in ROWS], "text": pa.array(texts, pa.binary()).view(pa.string())}))


def duplicate_columns() -> bytes:
    return parquet_bytes(
        pa.Table.from_arrays(
            [pa.array(["a", "b"]), pa.array(["we hope", "strike"]), pa.array(["x", "y"])], names=["id", "text", "text"]
        )
    )


# name -> (file name, content, predict: {row: reason prefix} with the row count, or (exit code, message);
#          validate: (exit code, message))
CASES = {
    "latin-1 CSV": (
        "in.csv",
        lambda: csv_text(FRENCH).encode("latin-1"),
        (2, "cannot decode as utf-8 (byte 0xe9"),
        (1, "invalid UTF-8"),
    ),
    "UTF-16 CSV": ("in.csv", lambda: csv_text().encode("utf-16"), (2, "--encoding utf-16"), (1, "a UTF-16 file")),
    "CSV row with an extra field": (
        "in.csv",
        extra_field,
        (12, {3: "line 5: wrong number of fields (12, the header has 11)"}),
        (1, "in.csv:5: row has 12 values, the header has 11"),
    ),
    "bad UTF-8 on line 3 of JSONL": (
        "in.jsonl",
        lambda: with_line(2, jsonl()[2].replace(b"test speaker", b"test \xff speaker")),
        (12, {2: "line 3: invalid UTF-8 (byte 0xff"}),
        (1, "in.jsonl:3: invalid UTF-8"),
    ),
    "lone surrogate escape in JSONL": (
        "in.jsonl",
        lambda: with_line(4, jsonl()[4].replace(b'"text": "', b'"text": "\\ud83d ', 1)),
        (12, {4: "line 5: lone surrogate (half an emoji) in text"}),
        (1, "in.jsonl:5: field 'text': lone surrogate \\ud83d"),
    ),
    "deeply nested JSONL line": (
        "in.jsonl",
        lambda: with_line(6, b"[" * 100000),
        (12, {6: "line 7: invalid JSON (nested too deeply"}),
        (1, "in.jsonl:7: malformed JSON: nested too deeply"),
    ),
    "JSONL line nested 500 levels (valid JSON)": (
        "in.jsonl",
        lambda: with_line(5, jsonl()[5].replace(b'"notes": ""', b'"notes": "", "thread": ' + b"[" * 500 + b"]" * 500)),
        (12, {5: "line 6: invalid JSON (nested too deeply: over 64 levels)"}),
        (1, "in.jsonl:6: field 'thread': unknown field"),
    ),
    "UTF-8 BOM before JSONL": (
        "in.jsonl",
        lambda: b"\xef\xbb\xbf" + b"\n".join(jsonl()) + b"\n",
        (12, {}),
        (0, "12 rows in 1 file(s): 0 error(s)"),
    ),
    "UTF-16 JSONL": (
        "in.jsonl",
        lambda: "\n".join(json.dumps(r) for r in ROWS).encode("utf-16"),
        (2, "JSON Lines must be UTF-8"),
        (1, "a UTF-16 file"),
    ),
    "invalid UTF-8 in a Parquet string column": (
        "in.parquet",
        parquet_with_bad_utf8,
        (12, {7: "invalid UTF-8 in column 'text' (not scored)"}),
        (1, "a Parquet file"),
    ),
    "duplicate Parquet column names": (
        "in.parquet",
        duplicate_columns,
        (2, "duplicate column names 'text'"),
        (1, "a Parquet file"),
    ),
    "empty CSV": ("in.csv", lambda: b"", (2, "in.csv: empty file"), (1, "empty CSV file")),
    "CSV with a header only": ("in.csv", lambda: csv_text([]).encode(), (0, {}), (1, "nothing validated")),
    "empty Parquet": ("in.parquet", lambda: b"", (2, "not a readable Parquet file"), (1, "a Parquet file")),
    "empty JSONL": ("in.jsonl", lambda: b"", (2, "in.jsonl: empty file"), (1, "nothing validated")),
}


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("bad-input-baseline") / "model"
    rows = make_rows()
    BaselineStance().fit([r["text"] for r in rows], [r["stance"] for r in rows]).save(path)
    return path


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output, result.output
    return result


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, baseline_dir, tmp_path):
    name, content, expect_predict, (validate_code, validate_says) = CASES[case]
    src = tmp_path / name
    src.write_bytes(content())

    checked = run("data", "validate", src)
    assert checked.exit_code == validate_code and validate_says in checked.output, checked.output
    if "latin-1" not in case:  # (there, each line with a non-UTF-8 byte is an error of its own)
        assert checked.output.count("error: ") <= 1, checked.output  # one problem, reported once

    out_path = tmp_path / "out.parquet"
    result = run("predict", "-m", baseline_dir, "-i", src, "-o", out_path, "--chunk-size", 4, "--no-detect-language")
    n_rows, detail = expect_predict
    if isinstance(detail, str):  # the whole file is refused before any work: one error line, nothing written
        assert result.exit_code == n_rows, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {src}") and detail in lines[0], result.output
        assert sorted(p.name for p in tmp_path.iterdir()) == [name]
        return
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [name, "out.parquet", "out.parquet.meta.json"]
    )  # no parts dir, no temp file; the model identity beside it
    out = pd.read_parquet(out_path)
    assert len(out) == n_rows
    for i in range(n_rows):
        if i in detail:
            assert out["pred_error"][i].startswith(detail[i]) and pd.isna(out["pred_stance"][i]), out["pred_error"][i]
        else:
            assert out["pred_error"][i] == "" and out["pred_stance"][i] in ("conciliatory", "neutral", "hostile"), out.iloc[i]
    if n_rows and src.suffix in (".jsonl", ".parquet") and "nested" not in case:  # rows kept with their values, bad ones included
        assert out["id"].tolist() == [r["id"] for r in ROWS]


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_encoding_option_reads_what_utf8_refused(encoding, baseline_dir, tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes(csv_text(FRENCH).encode(encoding))
    out_path = tmp_path / "out.jsonl"
    result = run("predict", "-m", baseline_dir, "-i", src, "-o", out_path, "--encoding", encoding, "--no-detect-language")
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in out_path.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in out] == [r["text"] for r in FRENCH] and all(r["pred_error"] == "" for r in out)
    wrong = run("predict", "-m", baseline_dir, "-i", src, "-o", tmp_path / "x.jsonl", "--encoding", "no-such-codec")
    assert wrong.exit_code == 2 and "unknown encoding 'no-such-codec'" in wrong.output


def test_nested_values_come_out_as_json_in_csv(baseline_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": "we hope for dialogue", "tags": ["a", "b"], "user": {"id": 1790000000000000123}}) + "\n")
    out_path = tmp_path / "out.csv"
    assert run("predict", "-m", baseline_dir, "-i", src, "-o", out_path, "--no-detect-language").exit_code == 0
    with open(out_path, newline="", encoding="utf-8") as fh:
        (row,) = csv.DictReader(fh)
    assert json.loads(row["tags"]) == ["a", "b"] and json.loads(row["user"]) == {"id": 1790000000000000123}


def test_lone_surrogate_row_keeps_its_values_as_escape_text(baseline_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"id": 1, "text": "peace \\ud83d and dialogue", "n": 1790000000000000123}\n')
    out_path = tmp_path / "out.jsonl"
    assert run("predict", "-m", baseline_dir, "-i", src, "-o", out_path, "--no-detect-language").exit_code == 0
    (row,) = [json.loads(line) for line in out_path.read_text(encoding="utf-8").splitlines()]
    assert row["text"] == "peace \\ud83d and dialogue" and row["n"] == 1790000000000000123 and row["pred_stance"] is None


def test_a_file_unreadable_past_its_start_exits_2_and_leaves_nothing(baseline_dir, tmp_path, monkeypatch):
    import train.inference.readers as inference

    rows = [{**r, "notes": "n" * 300 if i == 9 else ""} for i, r in enumerate(ROWS)]  # row 9: a field past the limit below
    src = tmp_path / "in.csv"
    src.write_text(csv_text(rows), encoding="utf-8")
    real = inference._csv_reader

    def small_limit(fh):  # stands for a field over the real 64 MiB limit: found after two chunks are written
        reader = real(fh)
        csv.field_size_limit(200)
        return reader

    monkeypatch.setattr(inference, "_csv_reader", small_limit)
    limit = csv.field_size_limit()
    try:
        result = run(
            "predict", "-m", baseline_dir, "-i", src, "-o", tmp_path / "out.csv", "--chunk-size", 4, "--no-detect-language"
        )
    finally:
        csv.field_size_limit(limit)
    assert result.exit_code == 2 and "in.csv: line 11: unreadable CSV" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]
    jsonl_in = tmp_path / "in.jsonl"
    jsonl_in.write_bytes(b"\n".join(jsonl()))
    wrong = run("predict", "-m", baseline_dir, "-i", jsonl_in, "-o", tmp_path / "out.csv", "--encoding", "latin-1")
    assert wrong.exit_code == 2 and "--encoding applies to CSV input only" in wrong.output
