"""`stance models calibrate`: an existing model (a run's, a registered version, a model directory) calibrated on a
labeled sample of the text it will score, without retraining, and logged as a run of its own the way a training run
logs its model: the pipeline's evaluation logging for every set, the calibrated model logged, verified as `stance
predict` loads it (pipeline.verify_and_register), registered when asked. Reproducible from the logged model like
every other run: `stance runs verify` re-scores its sets.

Above the pipeline (whose pieces it reuses), beside `train.tune`.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from pathlib import Path

from train import tracking
from train.data import DataError, Problem, check_apart, check_calibration_labels, load_statements, read_eval_files
from train.formats import sha256_file
from train.metrics import compute_metrics
from train.models import CALIBRATION_METHODS
from train.naming import CALIBRATION_EXPERIMENT, calibrated_run_name
from train.pipeline import log_scored_set, verify_and_register
from train.schema import LABELS
from train.tracking import runs as run_log
from train.tracking.eval_runs import source_run_and_model
from train.tracking.identity import DATA_DIGEST_TAG
from train.tracking.identity import data_digest as run_data_digest
from train.tracking.queries import download_run_artifact, get_run
from train.tracking.quiet import harmless_warnings_dropped, quiet_training
from train.tracking.registry import load_for_predict, quiet_libraries

CALIBRATION_SET = "calibration"  # the calibration rows, scored in-sample and logged under this name
COPIED_TAGS = ("model_family", "model_kind", "languages", "holdout", "seed")  # what the source run says of the model


@dataclasses.dataclass
class SetChange:
    """One evaluation set of a calibration run: macro-F1 and ECE of the source model (before) and the calibrated one."""

    name: str  # as logged: "eval" (unprefixed metrics), else the metrics' prefix
    what: str  # where its rows come from, for the console
    rows: int
    before: dict
    after: dict


@dataclasses.dataclass
class CalibrationResult:
    run_id: str
    experiment: str
    source_uri: str
    source_version: str
    source_run_id: str
    method: str
    temperature: float
    class_bias: list[float] | None
    n_rows: int
    sets: list[SetChange]
    notes: list[str]
    registered_version: str = ""

    @property
    def model_uri(self) -> str:
        return f"runs:/{self.run_id}/model"


def calibrate_logged_model(
    spec: str,
    calibration_file,
    method: str = "class_bias",
    eval_files=(),
    experiment: str | None = None,
    register_as: str | None = None,
    batch_size: int = 64,
    device: str = "auto",
    quiet: bool = False,
) -> CalibrationResult:
    """Calibrate an existing model (a run id, runs:/, models:/ URI or a model directory) on a labeled sample and log the
    result as a new run, like a training run logs its model: tags naming the source, the method, the sample's path,
    sha256 and size as params, `temperature` and `class_bias/<label>` as metrics, every evaluation set scored (the
    source run's own sets re-scored from its logged rows, each --eval-file, and the calibration rows in-sample under
    `calibration/`), the calibrated model logged, verified as `stance predict` loads it, and registered when asked.

    The model keeps everything but its calibration: its weights, class_prior and train_prior; a temperature and class
    biases it had are replaced (fitted anew on its own probabilities). Bad input (a DataError, ValueError) fails
    before any run exists."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"method {method!r} is not one of {', '.join(CALIBRATION_METHODS)}")
    quiet_training()
    quiet_libraries()
    if not Path(calibration_file).is_file():
        raise DataError([Problem(str(calibration_file), None, None, "no such file (give one JSONL or CSV file)")])
    calib = load_statements([calibration_file]).reset_index(drop=True)
    check_calibration_labels(calib, calibration_file, method)
    extra = read_eval_files([str(p) for p in eval_files], reserved=("eval", CALIBRATION_SET), where="--eval-file")
    check_apart(calib, calibration_file, extra)

    with tempfile.TemporaryDirectory(prefix="stance-calibrate-") as tmp:
        model, uri, version, dev, _ = load_for_predict(spec, Path(tmp) / "source", device)
        src_run, src_exp, notes = None, None, []
        src_run_id = source_run_and_model(uri)[0] if uri.startswith(("runs:/", "models:/")) else ""
        if src_run_id:
            src_run, src_exp = get_run(src_run_id)
        source_sets = _source_eval_sets(src_run, Path(tmp) / "sets", skip=set(extra), notes=notes)
        check_apart(calib, calibration_file, {f"the source run's {name}": df for name, df in source_sets.items()})
        sets = {**source_sets, **extra, CALIBRATION_SET: calib}
        split = src_run.data.tags.get("eval_split", "test") if src_run else "test"
        what = {name: "the source run's evaluation set" for name in source_sets}
        if "eval" in source_sets:
            what["eval"] = "the source run's held-out rows" if split == "holdout" else f"the source run's {split} split"
        what |= {name: f"--eval-file {path}" for name, path in zip(extra, eval_files)}
        what[CALIBRATION_SET] = f"{calibration_file}: in-sample, the rows it was fitted on"

        raw = {name: model._raw_proba(df["text"].tolist(), batch_size) for name, df in sets.items()}
        before = {name: model.adjust(r) for name, r in raw.items()}
        temperature = model.calibrate(calib["text"].tolist(), calib["stance"].tolist(), batch_size, method)
        after = {name: model.adjust(r) for name, r in raw.items()}
        bias = list(model.class_bias) if model.class_bias is not None else None

        def headline(df, proba):
            m = compute_metrics(df["stance"].map(LABELS.index).to_numpy(), proba, df["language"].tolist())
            return {"macro_f1": m["macro_f1"], "ece": m["ece"]}

        src_name = (src_run.info.run_name if src_run else "") or _model_name(uri)
        exp_name = experiment or (src_exp.name if src_exp is not None else CALIBRATION_EXPERIMENT)
        tracking.setup_tracking()
        exp_id = tracking.get_experiment_id(exp_name)
        tracking.reconcile_stale_runs(exp_id)
        sha = sha256_file(Path(calibration_file))
        rid = run_log.start_run(exp_id, calibrated_run_name(src_name, method))
        with tracking.closing_run():
            tags = {
                **tracking.process_tags(),
                **tracking.git_info(),
                **_source_tags(src_run, with_eval_split="eval" in source_sets),
                "device": dev,
                "stance.calibrated_from": uri,
                "stance.calibrated_from_version": version,
                "stance.calibrated_from_run": src_run_id,
                "stance.eval_sets": ",".join(sets),
            }
            run_log.set_tags({k: v for k, v in tags.items() if v != ""})
            params = {
                "source_model": uri,
                "train.calibration_method": method,
                "data.calibration_file": str(calibration_file),
                "data.calibration_sha256": sha,
                "n_calibration": len(calib),
                "data.eval_files": ",".join(map(str, eval_files)),
                "train.eval_batch_size": batch_size,  # `stance runs verify` scores in batches of this size
            }
            if src_run is not None and "data.digest" in src_run.data.params:  # the rows the source trained and was tested on
                params["data.digest"] = src_run.data.params["data.digest"]  # (the leaderboard's data column)
            run_log.log_params(params)
            run_log.log_text(tracking.installed_packages(), "environment/requirements.txt")
            tracking.log_dataset(calib, CALIBRATION_SET, str(Path(calibration_file).resolve()))
            run_log.log_metric("temperature", temperature)
            if bias is not None:
                run_log.log_metrics({f"class_bias/{label}": b for label, b in zip(model.labels, bias)})
            changes = []
            for name, df in sets.items():
                log_scored_set(df, after[name], name)
                changes.append(SetChange(name, what[name], len(df), headline(df, before[name]), headline(df, after[name])))
            counts = {label: int((calib["stance"] == label).sum()) for label in LABELS}
            run_log.log_dict(
                {
                    "source_model": uri,
                    "source_version": version,
                    "source_run_id": src_run_id,
                    "method": method,
                    "calibration_file": str(calibration_file),
                    "calibration_sha256": sha,
                    "rows_per_label": counts,
                    "temperature": temperature,
                    "class_bias": dict(zip(model.labels, bias)) if bias is not None else None,
                    "before_after": [dataclasses.asdict(c) for c in changes],
                },
                "calibration_summary.json",
            )
            with tempfile.TemporaryDirectory(prefix="stance-model-") as out:
                with harmless_warnings_dropped():
                    tracking.log_stance_model(model.save(Path(out) / "model"), calib["text"].tolist())
            del model, raw  # verify loads the logged copy
            registered = verify_and_register(rid, register_as, quiet, device=dev)
    return CalibrationResult(
        rid, exp_name, uri, version, src_run_id, method, temperature, bias, len(calib), changes, notes, registered
    )


def _source_tags(src_run, with_eval_split: bool) -> dict:
    """What the source run says of the model (family, kind, training languages, seed), of its test split when the
    calibration run re-scores it, and the digest of the rows the weights learned from (the citable identity's)."""
    if src_run is None:
        return {}
    t = src_run.data.tags
    keys = COPIED_TAGS + (("eval_split", "eval_languages") if with_eval_split else ())
    return {**{k: t[k] for k in keys if k in t}, DATA_DIGEST_TAG: run_data_digest(src_run)}


def _model_name(uri: str) -> str:
    """What a calibration run of a model that no run logged is named after: the registered name, or the folder's."""
    if uri.startswith("models:/"):
        return re.split(r"[/@]", uri[len("models:/") :])[0]
    return Path(uri.rstrip("/")).name


def _source_eval_sets(src_run, tmp: Path, skip: set, notes: list) -> dict:
    """The evaluation rows the source run logged (`<set>/scored.parquet`: its test split as "eval", its evaluation
    files), to score again before and after calibration. A set an --eval-file of the same name replaces, and the
    in-sample rows of a source that was itself calibrated, are left out; a run that logged no rows has none."""
    import pandas as pd

    if src_run is None:
        return {}
    out = {}
    for name in src_run.data.tags.get("stance.eval_sets", "eval").split(","):
        if name == CALIBRATION_SET:
            continue
        if name in skip:
            notes.append(f"the source run's evaluation set {name!r} is replaced by the --eval-file of that name")
            continue
        try:
            path = download_run_artifact(src_run.info.run_id, f"{name}/{tracking.SCORED_FILE}", str(tmp / name))
        except LookupError:
            notes.append(f"the source run logged no {name}/{tracking.SCORED_FILE}: its {name} set is not re-scored")
            continue
        df = pd.read_parquet(path)
        out[name] = df[[c for c in df.columns if not c.startswith("prob_")]].reset_index(drop=True)
    return out
