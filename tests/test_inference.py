"""Batch inference: `stance predict` on every format, bad rows, errors, resume after SIGKILL, the MLflow pyfunc, the
model server over HTTP, and the Spark engine. Models are the tiny BERT (untrained head: predictions are arbitrary but
deterministic, which is all that comparing paths needs) and a baseline fit on the tiny corpus."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.conftest import REPO, make_rows
from train.cli import app
from train.inference import OUTPUT_COLUMNS, RUN_COLUMNS, predict_values
from train.models import BaselineStance, TransformerStance, load_stance_model
from train.schema import LABELS

PROBS = [f"prob_{l}" for l in LABELS]
LONG_WORDS = "word " * 100  # 100 tokens > 4 x max_length 16, well under the character limit


@pytest.fixture(scope="session")
def stance_dir(tiny_model_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("stance-tiny") / "model"
    TransformerStance(str(tiny_model_dir), max_length=16).build().save(path)
    return path


@pytest.fixture(scope="session")
def baseline_dir(tmp_path_factory):
    rows = make_rows()
    path = tmp_path_factory.mktemp("stance-baseline") / "model"
    BaselineStance().fit([r["text"] for r in rows], [r["stance"] for r in rows]).save(path)
    return path


def statements(n=23):
    rows = make_rows()[:n]
    return pd.DataFrame({"id": [f"r{i:03d}" for i in range(n)], "text": [r["text"] for r in rows], "score": np.arange(n) * 0.5})


def write(df: pd.DataFrame, path):
    fmt = path.suffix
    if fmt == ".csv":
        df.to_csv(path, index=False)
    elif fmt == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in df.to_dict("records")), encoding="utf-8")
    else:
        df.to_parquet(path, index=False)
    return path


def read(path):
    if path.suffix == ".csv":
        return pd.read_csv(
            path, dtype={"id": str, "pred_error": str, "model_version": str}, keep_default_na=False, na_values=[""]
        )
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True, dtype=False)
    return pd.read_parquet(path)


def predict(*args):
    result = CliRunner().invoke(app, ["predict", *map(str, args)])
    return result


# -- the shared row function -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["transformer", "baseline"])
def test_bad_rows_get_reasons_and_good_rows_probabilities(which, stance_dir, baseline_dir):
    model = load_stance_model(stance_dir if which == "transformer" else baseline_dir, device="cpu")
    values = [
        "we hope for dialogue",
        None,
        "",
        "   ",
        123,
        ["a list"],
        float("nan"),
        "x" * 20001,
        "1234 !!",
        "strike them hard now",
        "🇦🇿🕊️🇷🇺",
    ]
    if which == "transformer":
        values.append(LONG_WORDS)
    out = predict_values(model, values, batch_size=4)
    assert list(out.columns) == OUTPUT_COLUMNS and len(out) == len(values)
    reasons = out["pred_error"].tolist()
    assert reasons[0] == "" and reasons[9] == "" and reasons[10] == ""  # an emoji-only post is a statement
    assert reasons[1] == "missing text" and reasons[6] == "missing text"
    assert reasons[2] == reasons[3] == "empty text"
    assert reasons[4] == "not text (int)" and reasons[5] == "not text (list)"
    assert reasons[7].startswith("text too long (20001 chars") and reasons[8].startswith("no letters")
    if which == "transformer":
        assert reasons[11].startswith("text too long (") and "tokens" in reasons[11]
    bad = out["pred_error"] != ""
    assert out.loc[bad, "pred_stance"].isna().all() and out.loc[bad, PROBS].isna().all().all()
    good = out[~bad]
    assert np.allclose(good[PROBS].sum(axis=1), 1, atol=1e-5) and set(good["pred_stance"]) <= set(LABELS)
    # a row's prediction does not depend on its neighbours (bad rows are cut out before batching)
    alone = predict_values(model, ["strike them hard now"])
    assert np.allclose(alone[PROBS].to_numpy(), out.loc[[9], PROBS].to_numpy(), atol=1e-5)


# -- files ---------------------------------------------------------------------------------------------------------------


def test_cli_every_format_keeps_rows_order_and_columns(stance_dir, tmp_path):
    df = statements()
    model = load_stance_model(stance_dir, device="cpu")
    expected = predict_values(model, df["text"].tolist())
    for src in ("csv", "jsonl", "parquet"):
        path = write(df, tmp_path / f"in.{src}")
        for dst in ("csv", "jsonl", "parquet"):
            out_path = tmp_path / f"out-{src}.{dst}"
            result = predict(
                "--model", stance_dir, "--input", path, "--output", out_path, "--chunk-size", 5, "--no-detect-language"
            )
            assert result.exit_code == 0, result.output
            out = read(out_path)
            assert list(out.columns) == ["id", "text", "score", *OUTPUT_COLUMNS, "truncated", "model_uri", "model_version"], (
                src,
                dst,
            )
            assert out["id"].astype(str).tolist() == df["id"].tolist(), (src, dst)
            assert out["text"].tolist() == df["text"].tolist() and np.allclose(out["score"].astype(float), df["score"])
            assert out["pred_stance"].tolist() == expected["pred_stance"].tolist(), (src, dst)
            assert np.allclose(out[PROBS].to_numpy(float), expected[PROBS].to_numpy(), atol=1e-6)
            assert set(out["model_uri"]) == {str(stance_dir.resolve())}
            assert not (tmp_path / f"out-{src}.{dst}.parts").exists()


def test_cli_bad_rows_are_kept_with_reasons(baseline_dir, tmp_path):
    rows = [
        {"id": 1, "text": "we hope for dialogue"},
        {"id": 2, "text": None},
        {"id": 3, "text": ""},
        {"id": 4, "text": "   "},
        {"id": 5, "text": 123},
        {"id": 6, "text": "y" * 25000},
        {"id": 7},
        {"id": 8, "text": "strike them hard now"},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text(
        "".join(json.dumps(r) + "\n" for r in rows[:4]) + "{broken json\n" + "".join(json.dumps(r) + "\n" for r in rows[4:]),
        encoding="utf-8",
    )
    out_path = tmp_path / "out.parquet"
    result = predict("-m", baseline_dir, "-i", src, "-o", out_path, "--chunk-size", 3)
    assert result.exit_code == 0, result.output
    out = pd.read_parquet(out_path)
    assert len(out) == 9
    reasons = out["pred_error"].tolist()
    assert reasons[0] == "" and reasons[8] == ""
    assert reasons[1] == "missing text" and reasons[2] == reasons[3] == "empty text"
    assert reasons[4].startswith("line 5: invalid JSON")
    assert reasons[5] == "not text (int)" and reasons[6].startswith("text too long") and reasons[7] == "missing text"
    assert out["pred_stance"].notna().tolist() == [r == "" for r in reasons]
    assert out["detected_language"].tolist()[0] == "en"  # no language column: detected by default
    assert "9 rows (7 bad)" in result.output and "invalid JSON: 1" in result.output


def test_missing_text_column_is_a_clear_error_before_any_work(baseline_dir, tmp_path):
    src = write(statements().rename(columns={"text": "statement"}), tmp_path / "in.csv")
    out_path = tmp_path / "out.parquet"
    result = predict("-m", baseline_dir, "-i", src, "-o", out_path)
    assert result.exit_code == 2
    assert "in.csv" in result.output and "'text'" in result.output and "id, statement, score" in result.output
    assert not out_path.exists() and not (tmp_path / "out.parquet.parts").exists()
    result = predict("-m", baseline_dir, "-i", src, "-o", out_path, "--text-column", "statement", "--no-detect-language")
    assert result.exit_code == 0, result.output


@pytest.mark.slow  # a killed predict subprocess
def test_resume_after_sigkill_reuses_finished_chunks(stance_dir, tmp_path):
    df = statements(40)
    src = write(df, tmp_path / "in.parquet")
    out_path = tmp_path / "out.csv"
    parts = tmp_path / "out.csv.parts"
    cmd = [
        sys.executable,
        "-m",
        "train.cli",
        "predict",
        "-m",
        str(stance_dir),
        "-i",
        str(src),
        "-o",
        str(out_path),
        "--chunk-size",
        "5",
        "--no-detect-language",
    ]
    env = {**os.environ, "STANCE_PREDICT_CHUNK_DELAY": "1.0"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while len(list(parts.glob("part-*.parquet"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    # another process on the same output is refused at once, even with --overwrite, and told who holds it
    clash = predict("-m", stance_dir, "-i", src, "-o", out_path, "--chunk-size", 5, "--no-detect-language", "--overwrite")
    assert clash.exit_code == 2 and f"pid {proc.pid} " in clash.output and str(out_path) in clash.output, clash.output
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(parts.glob("part-*.parquet")))
    assert 2 <= done < 8 and not out_path.exists()

    # the killed run's lock is not stale: the kernel released it with the process
    again = predict("-m", stance_dir, "-i", src, "-o", out_path, "--chunk-size", 5, "--no-detect-language")
    assert again.exit_code == 2 and "--resume" in again.output and "--overwrite" in again.output
    changed = predict("-m", stance_dir, "-i", src, "-o", out_path, "--chunk-size", 7, "--resume", "--no-detect-language")
    assert changed.exit_code == 2 and "chunk_rows" in changed.output

    resumed = predict("-m", stance_dir, "-i", src, "-o", out_path, "--chunk-size", 5, "--resume", "--no-detect-language")
    assert resumed.exit_code == 0, resumed.output
    assert f"chunks: {8 - done} computed, {done} reused" in resumed.output
    assert not parts.exists()
    reference = tmp_path / "reference.csv"
    assert predict("-m", stance_dir, "-i", src, "-o", reference, "--chunk-size", 5, "--no-detect-language").exit_code == 0
    pd.testing.assert_frame_equal(read(out_path), read(reference))
    assert len(read(out_path)) == 40


# -- MLflow: pyfunc, registry URIs, model server, Spark -----------------------------------------------------------------


@pytest.fixture
def logged_model(stance_dir, mlflow_store):
    import mlflow

    from train.tracking import get_experiment_id, log_stance_model, setup_tracking

    setup_tracking()
    with mlflow.start_run(experiment_id=get_experiment_id("test-inference")) as run:
        log_stance_model(stance_dir, ["we hope for dialogue"], register_as="tiny-stance")
    return run.info.run_id


MIXED = ["we hope for dialogue", None, "", "   ", 123, LONG_WORDS, "strike them hard now"]


def test_pyfunc_matches_the_shared_row_function(logged_model, stance_dir, tmp_path):
    import mlflow

    pyfunc = mlflow.pyfunc.load_model(f"runs:/{logged_model}/model")
    got = pyfunc.predict(pd.DataFrame({"text": pd.Series(MIXED, dtype=object)}))
    want = predict_values(load_stance_model(stance_dir, device="cpu"), MIXED)
    assert list(got.columns) == OUTPUT_COLUMNS
    assert got["pred_error"].tolist() == want["pred_error"].tolist() and got["pred_error"].tolist()[4] == "not text (int)"
    assert got["pred_stance"].tolist() == want["pred_stance"].tolist()
    assert np.allclose(got[PROBS].astype(float).to_numpy(), want[PROBS].to_numpy(), atol=1e-6, equal_nan=True)

    # the CLI on registry URIs records the URI and the registered version
    from mlflow.tracking import MlflowClient

    MlflowClient().set_registered_model_alias("tiny-stance", "champion", "1")
    src = write(statements(6), tmp_path / "in.csv")
    for uri in (f"runs:/{logged_model}/model", "models:/tiny-stance@champion", "models:/tiny-stance/1"):
        out_path = tmp_path / "out.parquet"
        result = predict("-m", uri, "-i", src, "-o", out_path, "--no-detect-language", "--overwrite")
        assert result.exit_code == 0, result.output
        out = pd.read_parquet(out_path)
        assert set(out["model_uri"]) == {uri} and set(out["model_version"]) == {"1"}
    missing = predict("-m", "models:/no-such-model/1", "-i", src, "-o", tmp_path / "x.parquet")
    assert missing.exit_code == 2 and "no-such-model" in missing.output


def test_log_mlflow_records_the_inference_run(baseline_dir, mlflow_store, tmp_path):
    from mlflow.tracking import MlflowClient

    src = write(pd.concat([statements(10), pd.DataFrame({"id": ["bad"], "text": [""], "score": [0.0]})]), tmp_path / "in.csv")
    result = predict("-m", baseline_dir, "-i", src, "-o", tmp_path / "out.jsonl", "--log-mlflow", "--no-detect-language")
    assert result.exit_code == 0, result.output
    client = MlflowClient()
    exp = client.get_experiment_by_name("stance-inference")
    (run,) = client.search_runs([exp.experiment_id])
    m, t = run.data.metrics, run.data.tags
    assert run.info.status == "FINISHED" and m["rows"] == 11 and m["bad_rows"] == 1 and m["rows_per_s"] > 0
    assert sum(m.get(f"count_{l}", 0) for l in LABELS) == 10
    import hashlib

    assert t["input_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest() and t["model_uri"] == str(baseline_dir.resolve())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(model_dir: str, log_path):
    """`mlflow models serve` on a free local port, started in its own session and stopped (the whole group) on exit.
    Yields the base URL once /ping answers."""
    import requests

    if shutil.which("mlflow") is None:
        pytest.skip("the mlflow CLI is not installed")
    port = _free_port()
    log = open(log_path, "wb")
    server = subprocess.Popen(
        ["mlflow", "models", "serve", "-m", model_dir, "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        while True:
            assert server.poll() is None, open(log_path).read()
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.time() < deadline, "model server did not start within 300 s"
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.mark.slow  # mlflow models serve
def test_served_model_answers_http(logged_model, mlflow_store, tmp_path):
    import mlflow
    import requests

    model_dir = mlflow.artifacts.download_artifacts(f"runs:/{logged_model}/model", dst_path=str(tmp_path / "served"))
    with served(model_dir, tmp_path / "serve.log") as url:
        body = {"dataframe_split": {"columns": ["text"], "data": [[v] for v in MIXED[:5]] + [[MIXED[6]]]}}
        reply = requests.post(f"{url}/invocations", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    json.loads(reply.text, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))  # strict JSON: no NaN
    got = pd.DataFrame(reply.json()["predictions"])
    want = predict_values(load_stance_model(model_dir + "/artifacts/model", device="cpu"), MIXED[:5] + [MIXED[6]])
    assert list(got.columns) == OUTPUT_COLUMNS
    assert got["pred_error"].tolist() == want["pred_error"].tolist()
    assert [s if isinstance(s, str) else None for s in got["pred_stance"]] == want["pred_stance"].tolist()
    assert np.allclose(got[PROBS].astype(float).to_numpy(), want[PROBS].to_numpy(), atol=1e-5, equal_nan=True)


@pytest.mark.slow  # Spark
def test_spark_engine_matches_local_engine(stance_dir, tmp_path, monkeypatch):
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java")
    monkeypatch.setenv("STANCE_MLRUNS", str(tmp_path / "mlruns"))
    df = statements(12)
    df.loc[3, "text"] = ""
    src = write(df, tmp_path / "in.parquet")
    spark_out, local_out = tmp_path / "spark.parquet", tmp_path / "local.parquet"
    result = predict(
        "-m", stance_dir, "-i", src, "-o", spark_out, "--engine", "spark", "--spark-master", "local[1]", "--no-detect-language"
    )
    assert result.exit_code == 0, result.output
    assert predict("-m", stance_dir, "-i", src, "-o", local_out, "--no-detect-language").exit_code == 0
    got, want = pd.read_parquet(spark_out), pd.read_parquet(local_out)
    assert list(got.columns) == list(want.columns) == ["id", "text", "score", *OUTPUT_COLUMNS, "truncated", *RUN_COLUMNS[1:]]
    assert got["truncated"].isna().all() and not want["truncated"].any()  # Spark cannot tell (null); no text was long here
    assert got["id"].tolist() == df["id"].tolist()
    assert got["pred_error"].tolist() == want["pred_error"].tolist() and got["pred_error"][3] == "empty text"
    assert got["pred_stance"].isna().tolist() == want["pred_stance"].isna().tolist() == [i == 3 for i in range(12)]
    assert got["pred_stance"].fillna("").tolist() == want["pred_stance"].fillna("").tolist()
    assert np.allclose(got[PROBS].to_numpy(float), want[PROBS].to_numpy(float), atol=1e-5, equal_nan=True)


# -- issue 12: concurrent runs, resume binding, exact column values, JSONL bytes -------------------------------------


def test_second_run_on_the_same_output_fails_fast_and_names_the_first(baseline_dir, tmp_path, monkeypatch):
    import threading

    from train.inference import predict_file

    first = write(statements(20), tmp_path / "a.parquet")
    other = write(statements(20).assign(id=lambda d: "b" + d["id"]), tmp_path / "b.parquet")
    out_path = tmp_path / "out.jsonl"
    model = load_stance_model(baseline_dir, device="cpu")
    started, release, result = threading.Event(), threading.Event(), {}

    def pause(done, summary):  # the first run holds the output after its first chunk until the second has tried
        started.set()
        release.wait(60)

    worker = threading.Thread(
        target=lambda: result.update(
            summary=predict_file(model, first, out_path, chunk_rows=5, detect_language=False, progress=pause)
        )
    )
    worker.start()
    try:
        assert started.wait(60)
        monkeypatch.setattr(
            "train.tracking.registry.load_stance_model", lambda *a, **k: pytest.fail("loaded a model for a refused run")
        )
        second = predict(
            "-m", baseline_dir, "-i", other, "-o", out_path, "--chunk-size", 5, "--no-detect-language", "--overwrite"
        )
    finally:
        release.set()
        worker.join(60)
    assert second.exit_code == 2, second.output
    assert str(out_path) in second.output and f"pid {os.getpid()}" in second.output
    assert result["summary"].rows == 20  # the first run was not disturbed
    assert read(out_path)["id"].tolist() == statements(20)["id"].tolist()
    assert not (tmp_path / "out.jsonl.parts").exists()


def test_predict_options_object_resumes_a_run_started_with_keywords(baseline_dir, tmp_path):
    """predict_file (keywords) and predict_file_with (PredictOptions) are one path: the same manifest, so either
    resumes the other's parts, and an option that changes predictions refuses them."""
    from train.inference import InferenceError, PredictOptions, predict_file, predict_file_with

    src, out = write(statements(20), tmp_path / "in.csv"), tmp_path / "out.jsonl"
    model = load_stance_model(baseline_dir, device="cpu")

    def stop_after_two_chunks(done, summary):
        if summary.chunks == 2:
            raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        predict_file(model, src, out, chunk_rows=5, model_uri="m", progress=stop_after_two_chunks, options={"device": "cpu"})
    manifest = json.loads((tmp_path / "out.jsonl.parts" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["detect_language"] is True and manifest["chunk_rows"] == 5 and manifest["model_uri"] == "m"
    assert set(manifest) == {
        "input",
        "model_uri",
        "chunk_rows",
        "text_column",
        "detect_language",
        "encoding",
        "device",
        "long_text",
    }
    opts = PredictOptions(chunk_rows=5, model_uri="m", batch_size=3)  # batch size does not change predictions
    with pytest.raises(InferenceError, match="differs in: long_text"):
        predict_file_with(
            model,
            src,
            out,
            PredictOptions(chunk_rows=5, model_uri="m", long_text="window"),
            resume=True,
            options={"device": "cpu"},
        )
    summary = predict_file_with(model, src, out, opts, resume=True, options={"device": "cpu"})
    assert (summary.chunks_reused, summary.chunks_computed, summary.rows) == (2, 2, 20)
    fresh = predict_file(model, src, tmp_path / "fresh.jsonl", chunk_rows=5, model_uri="m")
    assert fresh.labels == summary.labels
    assert read(out).equals(read(tmp_path / "fresh.jsonl")) and set(read(out)["model_uri"]) == {"m"}


def test_resume_refuses_parts_of_an_input_with_the_same_size_and_mtime_but_other_content(baseline_dir, tmp_path, monkeypatch):
    import train.inference.batch as inference

    df = statements(20)
    src = write(df, tmp_path / "in.csv")
    out_path = tmp_path / "out.csv"
    real, calls = inference.predict_values, []

    def dies_on_third_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(inference, "predict_values", dies_on_third_chunk)
    assert isinstance(
        predict("-m", baseline_dir, "-i", src, "-o", out_path, "--chunk-size", 5, "--no-detect-language").exception, RuntimeError
    )
    monkeypatch.setattr(inference, "predict_values", real)
    assert len(list((tmp_path / "out.csv.parts").glob("part-*.parquet"))) == 2

    st = src.stat()
    edited = df.assign(id=df["id"].str.replace("r", "x"))  # another file: same size, same mtime
    write(edited, src)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (src.stat().st_size, src.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    resumed = predict("-m", baseline_dir, "-i", src, "-o", out_path, "--chunk-size", 5, "--resume", "--no-detect-language")
    assert resumed.exit_code == 2 and "input" in resumed.output and "--overwrite" in resumed.output, resumed.output
    fresh = predict("-m", baseline_dir, "-i", src, "-o", out_path, "--chunk-size", 5, "--overwrite", "--no-detect-language")
    assert fresh.exit_code == 0, fresh.output
    assert read(out_path)["id"].tolist() == edited["id"].tolist()


BIG = 1790000000000000123  # a tweet id: not representable as float64


@pytest.mark.parametrize("src_fmt", ["parquet", "jsonl"])
def test_64_bit_ids_come_back_unchanged_despite_nulls_and_bad_lines(baseline_dir, tmp_path, src_fmt):
    import csv as csvmod

    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = [BIG + i for i in range(6)]
    texts = ["we hope for dialogue", "strike them hard now", "talks were held on monday"] * 2
    if src_fmt == "parquet":
        ids[1] = None  # one null in the first chunk
        src = tmp_path / "in.parquet"
        pq.write_table(pa.table({"id": pa.array(ids, pa.int64()), "text": texts}), src)
    else:
        src = tmp_path / "in.jsonl"
        lines = [json.dumps({"id": i, "text": t}) for i, t in zip(ids, texts)]
        lines[1] = '{"id": 1790000000000000124, "text": broken'  # one malformed line: its row has no id
        ids[1] = None
        src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for dst in ("parquet", "jsonl", "csv"):
        out_path = tmp_path / f"out.{dst}"
        result = predict("-m", baseline_dir, "-i", src, "-o", out_path, "--chunk-size", 3, "--no-detect-language")
        assert result.exit_code == 0, result.output
        if dst == "parquet":
            table = pq.read_table(out_path)
            assert table.schema.field("id").type == pa.int64(), table.schema
            got = table.column("id").to_pylist()
        elif dst == "jsonl":
            got = [json.loads(line)["id"] for line in out_path.read_text(encoding="utf-8").splitlines()]
        else:
            with open(out_path, newline="", encoding="utf-8") as fh:
                got = [int(r["id"]) if r["id"] else None for r in csvmod.DictReader(fh)]
        assert got == ids, (src_fmt, dst)


def test_jsonl_bad_bytes_after_line_1000_get_a_reason_and_a_bom_is_accepted(baseline_dir, tmp_path):
    lines = [json.dumps({"id": i, "text": "we hope for dialogue"}).encode() for i in range(1200)]
    lines[1099] = b'{"id": 1099, "text": "we hope \xff for dialogue"}'
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n")
    out_path = tmp_path / "out.parquet"
    result = predict("-m", baseline_dir, "-i", src, "-o", out_path, "--no-detect-language")
    assert result.exit_code == 0, result.output
    out = pd.read_parquet(out_path)
    assert len(out) == 1200 and out["id"].tolist() == list(range(1200))  # the bad row keeps its id
    assert out["pred_error"][0] == "" and out["pred_stance"][0] in LABELS  # the BOM is not part of the first row
    assert out["pred_error"][1099].startswith("line 1100: invalid UTF-8") and pd.isna(out["pred_stance"][1099])
    assert (out["pred_error"] != "").sum() == 1
