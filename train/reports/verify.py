"""`stance runs verify`: does the model a user loads give the numbers its run logged?

The logged model is fetched and loaded through `load_for_predict`, the same path `stance predict` takes (URI
resolution, download, card and file-digest checks, device, backend), the run's evaluation rows (logged with their
exact probabilities by `train.tracking.artifacts.log_scored_rows`) are scored again through `predict_values`, the function every
serving path shares, and the logged metrics are recomputed from the new probabilities with the function the run
used (`metrics.evaluation_metrics`). Any difference beyond the tolerances is a failure.

The exact paths (torch, ONNX fp32) must agree to PROB_TOL. The int8 graph computes something slightly different on
purpose; it is held to INT8_TOLERANCE (documented in the README) and its agreement is reported.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from train.inference.rows import PRED_COLUMNS, predict_values
from train.metrics import evaluation_metrics, metric_key
from train.schema import LABELS
from train.tracking.artifacts import SCORED_FILE
from train.tracking.queries import RunNotFound, download_run_artifact, get_run, tracking_uri
from train.tracking.registry import load_for_predict, registered_model_run
from train.tracking.store import setup_tracking

PROB_TOL = 1e-5  # float32 arithmetic in another batch composition differs by ~1e-7; a wrong model by far more
METRIC_TOL = 1e-4  # metrics from probabilities within PROB_TOL: only ECE moves, by about that much at most
INT8_TOLERANCE = {"agreement": 0.90, "macro_f1_drop": 0.03}  # measured on the default model: 0.960 and 0.013
HEADLINE = ("macro_f1", "accuracy", "ece", "macro_f1_ci_low", "macro_f1_ci_high")  # one table row each


class VerifyError(Exception):
    """The run or model cannot be checked at all (not found, nothing logged to compare with)."""


@dataclass
class Check:
    name: str
    value: str
    expected: str
    ok: bool


@dataclass
class VerifyResult:
    run_id: str
    model_uri: str
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def table(self) -> str:
        rows = [("check", "value", "expected", "result")] + [
            (c.name, c.value, c.expected, "pass" if c.ok else "FAIL") for c in self.checks
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        verdict = "PASSED" if self.passed else "FAILED"
        return f"verify {self.model_uri} (run {self.run_id}): {verdict}\n" + "\n".join(lines) + "\n"


def resolve_spec(spec: str) -> tuple[str, str]:
    """(run id, model URI) for a run id, a runs:/ URI or a models:/ URI."""
    if re.fullmatch(r"[0-9a-f]{32}", spec):
        return spec, f"runs:/{spec}/model"
    if spec.startswith("runs:/"):
        return spec[len("runs:/") :].split("/")[0], spec
    if spec.startswith("models:/"):
        try:
            run_id = registered_model_run(spec)
        except LookupError as e:
            raise VerifyError(str(e)) from e
        if not run_id:
            raise VerifyError(f"{spec}: the registry does not say which run logged this model")
        return run_id, spec
    raise VerifyError(f"{spec}: give a run id, runs:/RUN_ID/model or models:/NAME/VERSION (or @ALIAS)")


def verify(
    spec: str, device: str = "auto", precision: str = "auto", backend: str = "torch", int8: bool = False, batch_size: int = 0
) -> VerifyResult:
    import pandas as pd

    setup_tracking()
    run_id, uri = resolve_spec(spec)
    try:
        run, _ = get_run(run_id)
    except RunNotFound as e:
        raise VerifyError(f"run {run_id} not found in {tracking_uri()}: {e.detail}") from e
    logged = run.data.metrics
    # the run's own batch size: in bf16 on a GPU, another batch composition moves probabilities by more than PROB_TOL
    batch_size = batch_size or int(run.data.params.get("train.eval_batch_size", 64))
    result = VerifyResult(run_id, uri)
    with tempfile.TemporaryDirectory(prefix="stance-verify-") as tmp:
        model, *_ = load_for_predict(uri, Path(tmp) / "model", device, precision, 0, "onnx" if int8 else backend, int8)
        approximate = (
            int8 and model.kind == "transformer"
        )  # --int8 implies the ONNX backend (as in stance predict); the baseline ignores it
        eval_sets = run.data.tags.get("stance.eval_sets", "eval").split(",")
        for folder in eval_sets:
            try:
                local = download_run_artifact(run_id, f"{folder}/{SCORED_FILE}", tmp)
            except LookupError as e:
                raise VerifyError(
                    f"run {run_id} logged no {folder}/{SCORED_FILE} (made before runs logged their scored rows: "
                    f"retrain to verify it)"
                ) from e
            rows = pd.read_parquet(local)
            want = rows[[f"prob_{l}" for l in LABELS]].to_numpy(np.float64)
            out = predict_values(model, rows["text"].tolist(), batch_size=batch_size)
            refused = out["pred_error"].astype(bool)
            got = out[PRED_COLUMNS[2:]].to_numpy(np.float64)
            tag = f"{folder}: " if len(eval_sets) > 1 else ""
            result.checks.append(
                Check(f"{tag}rows scored", f"{int((~refused).sum())}/{len(rows)}", f"{len(rows)}/{len(rows)}", not refused.any())
            )
            if refused.any():
                continue
            agreement = float((got.argmax(1) == want.argmax(1)).mean())
            diff = float(np.abs(got - want).max()) if len(rows) else 0.0
            y = rows["stance"].map(LABELS.index).to_numpy()
            again = evaluation_metrics(y, got, rows["language"].tolist())
            if approximate:
                drop = logged.get(metric_key(folder, "macro_f1"), float("nan")) - again["macro_f1"]
                result.checks += [
                    Check(
                        f"{tag}argmax agreement (int8)",
                        f"{agreement:.3f}",
                        f">= {INT8_TOLERANCE['agreement']}",
                        agreement >= INT8_TOLERANCE["agreement"],
                    ),
                    Check(
                        f"{tag}macro_f1 drop (int8)",
                        f"{drop:+.4f}",
                        f"<= {INT8_TOLERANCE['macro_f1_drop']}",
                        drop <= INT8_TOLERANCE["macro_f1_drop"],
                    ),
                    Check(f"{tag}max |prob diff| (int8, informative)", f"{diff:.2e}", "-", True),
                ]
                continue
            result.checks += [
                Check(f"{tag}max |prob diff|", f"{diff:.2e}", f"<= {PROB_TOL:g}", diff <= PROB_TOL),
                Check(f"{tag}argmax agreement", f"{agreement:.4f}", "1.0000", agreement == 1.0),
            ]
            rest = {}
            for name, value in again.items():
                key = metric_key(folder, name)
                delta = abs(value - logged[key]) if key in logged else float("inf")
                if name in HEADLINE:
                    shown = f"{logged[key]:.6f}" if key in logged else "(not logged)"
                    result.checks.append(Check(key, f"{value:.6f}", shown, delta <= METRIC_TOL))
                else:
                    rest[key] = delta
            bad = [k for k, d in rest.items() if d > METRIC_TOL]
            worst = max(rest.values(), default=0.0)
            result.checks.append(
                Check(
                    f"{tag}{len(rest)} per-class/per-language metrics",
                    "max |diff| " + (f"{worst:.1e}" if worst < float("inf") else "inf"),
                    f"<= {METRIC_TOL:g}",
                    not bad,
                )
            )
            for k in bad[:10]:
                result.checks.append(Check(k, "differs" if rest[k] < float("inf") else "not logged", "", False))
    return result
