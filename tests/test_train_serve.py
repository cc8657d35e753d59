"""Train = serve: for the baseline and for transformers with each pooling, the class probabilities that the logged or
registered model returns for the run's evaluation rows equal the probabilities the run logged for those rows (1e-5),
through every way a user applies a model: `stance runs verify`, `stance predict` with runs:/ and models:/ URIs,
`mlflow.pyfunc.load_model`, `mlflow models serve` over HTTP, the Spark engine and `--backend onnx` (int8: within
its documented tolerance). Also: what a finished run leaves on disk, and misuse of --resume refused before any work."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.conftest import make_rows, tiny_overrides, write_jsonl
from train.cli import app
from train.config import load_config
from train.schema import LABELS

pytestmark = pytest.mark.slow  # a module of real runs, model servers and Spark

PROBS = [f"prob_{l}" for l in LABELS]
KINDS = ["baseline", "mean", "cls", "auto"]
TOL = 1e-5


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_model_dir):
    """One store for the module, with one finished run per model kind (training is the slow part)."""
    root = tmp_path_factory.mktemp("train-serve")
    corpus = write_jsonl(root / "labeled" / "statements.jsonl", make_rows()).parent
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STANCE_MLRUNS", str(root / "mlruns"))
        mp.setenv("STANCE_CACHE", str(root / "cache"))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        mp.chdir(root)
        from train.pipeline import run_training

        runs = {}
        for kind in KINDS:
            # calibrated (temperature fitted on val): the reloaded model must apply the same temperature
            extra = ["train.calibrate=true"] + (["model.kind=baseline"] if kind == "baseline" else [f"model.pooling={kind}"])
            cfg = load_config(None, tiny_overrides(corpus, tiny_model_dir, register_as=f"ts-{kind}") + extra)
            runs[kind] = run_training(cfg, quiet=True)
        from mlflow.tracking import MlflowClient

        for kind in KINDS:
            MlflowClient().set_registered_model_alias(f"ts-{kind}", "champion", "1")
        yield {"root": root, "corpus": corpus, "runs": runs}
        import mlflow

        while mlflow.active_run():
            mlflow.end_run()


def logged_rows(run_id: str) -> pd.DataFrame:
    import mlflow

    return pd.read_parquet(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="eval/scored.parquet"))


def assert_reproduces(got: pd.DataFrame, logged: pd.DataFrame, tol: float = TOL) -> None:
    assert len(got) == len(logged) > 0
    assert (got["pred_error"].fillna("") == "").all(), got["pred_error"].tolist()
    diff = np.abs(got[PROBS].to_numpy(float) - logged[PROBS].to_numpy(float)).max()
    assert diff <= tol, f"max |prob diff| {diff:.3g} > {tol}"


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_every_run_is_verified_registered_and_leaves_no_checkpoints(store):
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    for kind, rid in store["runs"].items():
        run = client.get_run(rid)
        assert run.data.tags["stance.verified"] == "passed", kind
        (version,) = client.search_model_versions(f"name='ts-{kind}'")
        assert version.run_id == rid
        assert "PASSED" in mlflow.artifacts.load_text(f"runs:/{rid}/verify.txt")
        assert run.data.metrics["temperature"] != 1.0, kind
    # checkpoints of finished runs are removed, and the model is stored once, in the run's artifacts
    assert [p for p in (store["root"] / "outputs").rglob("*") if p.is_file()] == []
    weights = [p for p in store["root"].rglob("*") if p.suffix in (".safetensors", ".skops") and "cache" not in p.parts]
    per_run = {k: sorted(p.name for p in logged_model_dir(store, store["runs"][k]).rglob("*") if p in weights) for k in KINDS}
    assert per_run == {
        "baseline": ["baseline.skops"],
        "mean": ["head.safetensors", "model.safetensors"],
        "cls": ["head.safetensors", "model.safetensors"],
        "auto": ["model.safetensors"],
    }, per_run
    assert len(weights) == 6, weights
    # the logged pyfunc names the exact versions installed when it was logged, not bare package names
    from importlib.metadata import version

    reqs = [
        l
        for l in (logged_model_dir(store, store["runs"]["mean"]) / "requirements.txt").read_text().splitlines()
        if l and not l.startswith("#")
    ]
    pinned = dict(l.split("==", 1) for l in reqs)
    assert set(pinned) >= {"torch", "transformers", "scikit-learn", "skops", "safetensors", "mlflow", "numpy", "pandas"}, reqs
    assert all(pinned[name] == version(name) for name in pinned), reqs


@pytest.mark.parametrize("kind", KINDS)
def test_stance_runs_verify_passes(store, kind):
    rid = store["runs"][kind]
    for spec in (rid, f"models:/ts-{kind}@champion"):
        result = cli("runs", "verify", spec)
        assert result.exit_code == 0, result.output
        assert "PASSED" in result.output and "max |prob diff|" in result.output and "macro_f1" in result.output


@pytest.mark.parametrize("kind", KINDS)
def test_predict_with_run_and_registry_uris_reproduces_logged_probabilities(store, kind, tmp_path):
    rid = store["runs"][kind]
    logged = logged_rows(rid)
    src = tmp_path / "rows.parquet"
    logged[["id", "text"]].to_parquet(src, index=False)
    for uri in (f"runs:/{rid}/model", f"models:/ts-{kind}/1", f"models:/ts-{kind}@champion"):
        out = tmp_path / "out.parquet"
        result = cli("predict", "-m", uri, "-i", src, "-o", out, "--no-detect-language", "--overwrite")
        assert result.exit_code == 0, result.output
        got = pd.read_parquet(out)
        assert got["id"].tolist() == logged["id"].tolist()
        assert_reproduces(got, logged)


@pytest.mark.parametrize("kind", KINDS)
def test_pyfunc_reproduces_logged_probabilities(store, kind):
    import mlflow

    rid = store["runs"][kind]
    logged = logged_rows(rid)
    for uri in (f"runs:/{rid}/model", f"models:/ts-{kind}/1"):
        got = mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"text": logged["text"]}))
        assert_reproduces(got, logged)


@pytest.mark.parametrize("kind", KINDS)
def test_served_model_reproduces_logged_probabilities(store, kind, tmp_path):
    import mlflow
    import requests

    from tests.test_inference import served

    logged = logged_rows(store["runs"][kind])
    model_dir = mlflow.artifacts.download_artifacts(f"models:/ts-{kind}/1", dst_path=str(tmp_path / "served"))
    with served(model_dir, tmp_path / "serve.log") as url:
        body = {"dataframe_split": {"columns": ["text"], "data": [[t] for t in logged["text"]]}}
        reply = requests.post(f"{url}/invocations", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    assert_reproduces(pd.DataFrame(reply.json()["predictions"]), logged)


def test_spark_engine_reproduces_logged_probabilities(store, tmp_path):
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java")
    for kind in KINDS:
        logged = logged_rows(store["runs"][kind])
        src = tmp_path / f"{kind}.parquet"
        logged[["id", "text"]].to_parquet(src, index=False)
        out = tmp_path / f"{kind}-out.parquet"
        result = cli(
            "predict",
            "-m",
            f"models:/ts-{kind}/1",
            "-i",
            src,
            "-o",
            out,
            "--engine",
            "spark",
            "--spark-master",
            "local[1]",
            "--no-detect-language",
        )
        assert result.exit_code == 0, result.output
        got = pd.read_parquet(out)
        assert got["id"].tolist() == logged["id"].tolist()
        assert_reproduces(got, logged)


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_backend_reproduces_and_int8_stays_within_tolerance(store, kind, tmp_path):
    pytest.importorskip("onnxruntime")
    rid = store["runs"][kind]
    logged = logged_rows(rid)
    src = tmp_path / "rows.parquet"
    logged[["id", "text"]].to_parquet(src, index=False)
    result = cli(
        "predict",
        "-m",
        f"runs:/{rid}/model",
        "-i",
        src,
        "-o",
        tmp_path / "out.parquet",
        "--backend",
        "onnx",
        "--no-detect-language",
    )
    assert result.exit_code == 0, result.output
    assert_reproduces(pd.read_parquet(tmp_path / "out.parquet"), logged)
    assert cli("runs", "verify", rid, "--backend", "onnx").exit_code == 0
    approx = cli("runs", "verify", rid, "--int8")
    assert "argmax agreement" in approx.output, approx.output
    if kind != "baseline":  # the baseline has no int8 graph: its verification is the exact one
        assert "(int8)" in approx.output
    assert approx.exit_code == 0, approx.output


def logged_model_dir(store, rid: str):
    """The folder in the store where the run's logged model lives (MLflow 3 keeps models apart from run artifacts)."""
    import yaml

    for mlmodel in (store["root"] / "mlruns").rglob("MLmodel"):
        if (yaml.safe_load(mlmodel.read_text()) or {}).get("run_id") == rid:
            return mlmodel.parent
    raise AssertionError(f"no logged model of run {rid} in the store")


def test_verify_fails_on_a_corrupted_logged_model(store, tiny_model_dir):
    """A model whose files were altered is refused on load; one altered consistently (the card's digests rewritten,
    as a buggy serializer would have produced) loads, and verify fails on its probabilities."""
    import json

    from safetensors.torch import load_file, save_file

    from train.models import MODEL_CARD, file_digests
    from train.pipeline import run_training

    cfg = load_config(None, tiny_overrides(store["corpus"], tiny_model_dir, register_as="null") + ["run_name=to-corrupt"])
    rid = run_training(cfg, quiet=True)
    model_dir = next(p.parent for p in logged_model_dir(store, rid).rglob(MODEL_CARD))
    head = load_file(str(model_dir / "head.safetensors"))
    save_file({k: v.flip(0).contiguous() for k, v in head.items()}, str(model_dir / "head.safetensors"))  # classes swapped
    refused = cli("runs", "verify", rid)
    assert refused.exit_code == 1 and "changed since saved: head.safetensors" in refused.output, refused.output
    card = json.loads((model_dir / MODEL_CARD).read_text())
    card["files"] = file_digests(model_dir)
    (model_dir / MODEL_CARD).write_text(json.dumps(card))
    failed = cli("runs", "verify", f"runs:/{rid}/model")
    assert (
        failed.exit_code == 1
        and "FAILED" in failed.output
        and "FAIL" in failed.output.split("max |prob diff|")[1].splitlines()[0]
    ), failed.output


def test_a_model_that_fails_verification_is_not_registered(store, tiny_model_dir, monkeypatch):
    from mlflow.tracking import MlflowClient

    import train.reports.verify
    from train.pipeline import VerificationFailed, run_training

    monkeypatch.setattr(train.reports.verify, "PROB_TOL", -1.0)  # every comparison now fails, as a broken serializer would
    cfg = load_config(
        None,
        tiny_overrides(store["corpus"], tiny_model_dir, register_as="ts-never")
        + ["model.kind=baseline", "run_name=unverifiable"],
    )
    with pytest.raises(VerificationFailed):
        run_training(cfg, quiet=True)
    client = MlflowClient()
    exp = client.get_experiment_by_name("test-exp")
    (run,) = client.search_runs([exp.experiment_id], filter_string="attributes.run_name = 'unverifiable'")
    assert run.info.status == "FAILED" and run.data.tags["stance.verified"] == "failed"
    assert not client.search_model_versions("name='ts-never'")


# -- misuse refused before any work --------------------------------------------------------------------------------


def test_run_id_without_resume_and_resume_with_seeds_are_refused(store_location):
    r = cli("train", "configs/default.yaml", "--run-id", "0" * 32)
    assert r.exit_code == 2 and "--run-id" in r.output and "--resume" in r.output
    r = cli("train", "configs/default.yaml", "--resume", "--seeds", "3")
    assert r.exit_code == 2 and "--seeds" in r.output
    assert not (store_location / "mlflow.db").exists()


def test_resume_after_the_config_changed_is_refused(tiny_corpus, tiny_model_dir, mlflow_store):
    import mlflow

    from train import tracking
    from train.config import flat_params
    from train.naming import config_digest
    from train.pipeline import ResumeError, run_training

    old = load_config(None, tiny_overrides(tiny_corpus, tiny_model_dir))
    tracking.setup_tracking()
    with mlflow.start_run(experiment_id=tracking.get_experiment_id("test-exp")) as run:  # as an interrupted run leaves it
        mlflow.set_tag("stance.config_digest", config_digest(old))
        mlflow.log_params({k: v[:500] for k, v in flat_params(old).items()})
    mlflow.tracking.MlflowClient().set_terminated(run.info.run_id, "KILLED")
    new = load_config(None, tiny_overrides(tiny_corpus, tiny_model_dir, **{"train.lr": 0.01}))
    for run_id in (None, run.info.run_id):
        with pytest.raises(ResumeError, match=r"configuration changed.*train.lr: 0.001 -> 0.01"):
            run_training(new, resume=True, run_id=run_id, quiet=True)
    runs = mlflow.tracking.MlflowClient().search_runs([tracking.get_experiment_id("test-exp")])
    assert len(runs) == 1  # nothing was started


# -- extra evaluation files (real statements) ------------------------------------------------------------------------


def test_extra_evaluation_files_are_scored_logged_and_verified(tiny_corpus, tiny_model_dir, mlflow_store, tmp_path):
    from mlflow.tracking import MlflowClient

    from train.data import DataError
    from train.pipeline import run_training

    rows = [dict(r, id="real-" + r["id"], source="imported", split="test") for r in make_rows(n_per_cell=4, seed=7)]
    real = write_jsonl(tmp_path / "real_dev.jsonl", rows)
    calib = write_jsonl(
        tmp_path / "calib.jsonl", [dict(r, id="cal-" + r["id"], source="imported") for r in make_rows(n_per_cell=3, seed=9)]
    )
    cfg = load_config(
        None,
        tiny_overrides(tiny_corpus, tiny_model_dir, register_as="null")
        + ["model.kind=baseline", f"data.eval_files=[{real}]", "train.calibrate=true", f"data.calibration_file={calib}"],
    )
    rid = run_training(cfg, quiet=True)
    from train.models import fit_temperature
    from train.schema import LABELS as L

    model_dir = next(p.parent for p in (mlflow_store / "artifacts").rglob("stance_model.json"))
    from train.models import load_stance_model

    rows_c = make_rows(n_per_cell=3, seed=9)
    want_t = fit_temperature(
        load_stance_model(model_dir)._raw_proba([r["text"] for r in rows_c]), np.array([L.index(r["stance"]) for r in rows_c])
    )
    assert MlflowClient().get_run(rid).data.metrics["temperature"] == pytest.approx(want_t)  # fitted on the calibration file
    run = MlflowClient().get_run(rid)
    m = run.data.metrics
    assert {
        "real_dev/macro_f1",
        "real_dev/ece",
        "real_dev/macro_f1_ci_low",
        "real_dev/f1_hostile",
        "real_dev/macro_f1_lang_ru",
    } <= set(m)
    arts = {a.path for a in MlflowClient().list_artifacts(rid, "real_dev")}
    assert {"real_dev/confusion_matrix.png", "real_dev/scored.parquet", "real_dev/reliability_diagram.png"} <= arts
    logged = pd.read_parquet(
        __import__("mlflow").artifacts.download_artifacts(run_id=rid, artifact_path="real_dev/scored.parquet")
    )
    assert len(logged) == len(rows) and logged["id"].tolist() == [r["id"] for r in rows]
    result = cli("runs", "verify", rid)
    assert result.exit_code == 0 and "real_dev: max |prob diff|" in result.output and "real_dev/macro_f1" in result.output, (
        result.output
    )

    board = cli("runs", "compare", "-e", "test-exp", "--format", "csv")
    assert board.exit_code == 0 and "real_dev/macro_f1" in board.output.splitlines()[0], board.output
    report = cli("runs", "report", rid)
    assert "## Extra evaluation sets" in report.output and f"| real_dev | {m['real_dev/macro_f1']:.3f}" in report.output, (
        report.output
    )

    leaked = write_jsonl(tmp_path / "leak.jsonl", make_rows()[:5])  # rows of the training corpus itself
    for path, message in ((leaked, "also training rows"), (tmp_path / "missing.jsonl", "no such file")):
        bad = load_config(
            None, tiny_overrides(tiny_corpus, tiny_model_dir) + ["model.kind=baseline", f"data.eval_files=[{path}]"]
        )
        with pytest.raises(DataError, match=message):
            run_training(bad, quiet=True)
    bad = load_config(
        None,
        tiny_overrides(tiny_corpus, tiny_model_dir)
        + ["model.kind=baseline", "train.calibrate=true", f"data.eval_files=[{real}]", f"data.calibration_file={real}"],
    )
    with pytest.raises(DataError, match="also real_dev rows"):
        run_training(bad, quiet=True)
    no_hostile = write_jsonl(
        tmp_path / "no_hostile.jsonl",
        [dict(r, id="nh-" + r["id"], source="imported") for r in make_rows(n_per_cell=2, seed=11) if r["stance"] != "hostile"],
    )
    bad = load_config(
        None,
        tiny_overrides(tiny_corpus, tiny_model_dir)
        + ["model.kind=baseline", "train.calibrate=true", "train.calibration_method=class_bias"]
        + [f"data.calibration_file={no_hostile}"],
    )
    with pytest.raises(DataError, match="no hostile rows .*class_bias fits a bias per class"):
        run_training(bad, quiet=True)
