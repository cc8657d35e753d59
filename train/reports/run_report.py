"""`stance runs report RUN_ID`: one run in Markdown (setup, metrics with CI and ECE, extra evaluation sets, per language
and per class, artifacts, the most confident mistakes)."""

from __future__ import annotations

import math

import pandas as pd

from train.config import Config, applies, flat_params
from train.reports.leaderboard import CompareError, markdown_table
from train.schema import LABELS
from train.tracking.identity import run_identity
from train.tracking.queries import artifact_paths, get_run, logged_table

SUMMARY_PARAMS = (  # each shown only where it applies to the run's model.kind (config.applies), old runs included
    "model.kind",
    "model.name",
    "model.pooling",
    "model.analyzer",
    "model.ngram_min",
    "model.ngram_max",
    "model.max_features",
    "model.C",
    "train.lr",
    "train.epochs",
    "train.batch_size",
    "train.max_length",
    "train.freeze_embeddings",
    "train.seed",
    "train.class_weighting",
    "data.paths",
    "data.eval_split",
    "data.holdout_languages",
    "data.holdout_speaker_groups",
    "data.digest",
    "n_train",
    "n_val",
    "n_eval",
)
CONFIG_KEYS = set(flat_params(Config()))


def setup_params(params: dict[str, str]) -> list[tuple[str, str]]:
    """The summary settings a run logged, less those its model kind never reads: a baseline run logged before runs
    logged only their own settings still has train.lr and model.name among its params, and its report must not."""
    kind = params.get("model.kind", "transformer")
    kind = kind if kind in ("transformer", "baseline") else "transformer"
    return [(k, params[k]) for k in SUMMARY_PARAMS if k in params and (k not in CONFIG_KEYS or applies(k, kind))]


SUMMARY_TAGS = ("model_family", "languages", "eval_languages", "holdout", "device", "git.commit", "git.dirty")


def misclassified(run_id: str, path: str = "eval/misclassified.json") -> pd.DataFrame:
    """The run's wrong predictions, most confident first (logged by tracking.log_evaluation as an MLflow table)."""
    table = logged_table(run_id, path)
    return pd.DataFrame(table["data"], columns=table["columns"]).sort_values("confidence", ascending=False, kind="stable")


def cite_lines(run_id: str) -> list[str]:
    """The model's citable identity (train.tracking.identity): what a paper quotes instead of a registry counter."""
    ident = run_identity(run_id)
    return [
        "## How to cite this model",
        "",
        f"`{ident['model_id']}`",
        "",
        f"- tool: stance-lab {ident['training_tool_version']}, training commit `{ident['training_commit']}`",
        f"- run id: `{run_id}`" + (f" (registered version {ident['registered_version']})" if ident["registered_version"] else ""),
        f"- training-data digest: `{ident['training_data_digest']}`",
        "- software: cite stance-lab with `CITATION.cff` at the repository root; "
        "`stance models export` writes a self-contained copy of the model with its card",
        "",
    ]


def run_report(run_id: str, top_errors: int = 10) -> str:
    """A Markdown report of one run: params, metrics with CI and ECE, per-language and per-class tables, errors."""
    try:
        run, exp = get_run(run_id)
    except LookupError as e:
        raise CompareError(str(e)) from None
    m, p, t = run.data.metrics, run.data.params, run.data.tags
    name = t.get("mlflow.runName", run_id)
    lines = [
        f"# Run report: {name}",
        "",
        f"- run id: `{run_id}`",
        f"- experiment: {exp.name} (id {exp.experiment_id})",
        f"- status: {run.info.status}",
        f"- started: {pd.Timestamp(run.info.start_time, unit='ms', tz='UTC'):%Y-%m-%d %H:%M UTC}",
        f"- artifacts: {run.info.artifact_uri}",
        "",
        *cite_lines(run_id),
    ]
    lines += [
        "## Setup",
        "",
        markdown_table(
            pd.DataFrame(
                [(k, t[k]) for k in SUMMARY_TAGS if k in t] + setup_params(p),
                columns=["setting", "value"],
            )
        ),
    ]

    lines += ["## Metrics", ""]
    if "macro_f1" in m:
        ci = (
            f" (95% bootstrap CI {m['macro_f1_ci_low']:.3f}–{m['macro_f1_ci_high']:.3f})"
            if "macro_f1_ci_low" in m and "macro_f1_ci_high" in m
            else ""
        )
        lines += [f"**macro-F1 {m['macro_f1']:.3f}**{ci}", ""]
    main = [
        (k, m[k])
        for k in ("macro_f1", "accuracy", "weighted_f1", "ece", "macro_f1_ci_low", "macro_f1_ci_high", "train_seconds")
        if k in m
    ]
    lines += [
        markdown_table(pd.DataFrame(main, columns=["metric", "value"])),
        "ECE: expected calibration error of the top-class confidence (lower is better).",
        "",
    ]

    extra = sorted(k.split("/")[0] for k in m if k.endswith("/macro_f1"))
    if extra:
        lines += ["## Extra evaluation sets", "", "Scored by the final model beside the eval split (`data.eval_files`).", ""]
        table = []
        for name in extra:
            g = {k.split("/", 1)[1]: v for k, v in m.items() if k.startswith(name + "/")}
            ci = f"{g['macro_f1_ci_low']:.3f}–{g['macro_f1_ci_high']:.3f}" if "macro_f1_ci_low" in g else ""
            table.append(
                (
                    name,
                    g["macro_f1"],
                    ci,
                    g.get("accuracy", math.nan),
                    g.get("ece", math.nan),
                    *(g.get(f"recall_{l}", math.nan) for l in LABELS),
                )
            )
        lines.append(
            markdown_table(
                pd.DataFrame(table, columns=["set", "macro_f1", "95% CI", "accuracy", "ece", *(f"recall_{l}" for l in LABELS)])
            )
        )
        for name in extra:
            langs_x = sorted(k.removeprefix(f"{name}/macro_f1_lang_") for k in m if k.startswith(f"{name}/macro_f1_lang_"))
            if langs_x:
                lines += [
                    f"{name} per language (macro-F1):",
                    "",
                    markdown_table(
                        pd.DataFrame({"language": langs_x, "macro_f1": [m[f"{name}/macro_f1_lang_{l}"] for l in langs_x]})
                    ),
                ]

    langs = sorted(k.removeprefix("macro_f1_lang_") for k in m if k.startswith("macro_f1_lang_"))
    if langs:
        lines += [
            "## Per language",
            "",
            markdown_table(pd.DataFrame({"language": langs, "macro_f1": [m[f"macro_f1_lang_{l}"] for l in langs]})),
        ]
    classes = [l for l in LABELS if f"f1_{l}" in m]
    if classes:
        lines += [
            "## Per class",
            "",
            markdown_table(
                pd.DataFrame(
                    [(l, m.get(f"precision_{l}", math.nan), m.get(f"recall_{l}", math.nan), m[f"f1_{l}"]) for l in classes],
                    columns=["class", "precision", "recall", "f1"],
                )
            ),
        ]

    arts = artifact_paths(run_id)
    if arts:
        lines += ["## Artifacts", ""]
        base = run.info.artifact_uri.rstrip("/")
        for path in arts:
            link = f"{base}/{path}"
            lines.append(f"![{path}]({link})" if path.endswith(".png") else f"- [{path}]({link})")
        lines.append("")

    if "eval/misclassified.json" in arts:
        wrong = misclassified(run_id)
        lines += [f"## Most confident mistakes ({min(top_errors, len(wrong))} of {len(wrong)})", ""]
        cols = [c for c in ("id", "language", "gold", "predicted", "confidence", "text") if c in wrong]
        lines.append(markdown_table(wrong[cols].head(top_errors)) if len(wrong) else "No misclassified examples.\n")
    return "\n".join(lines).rstrip() + "\n"
