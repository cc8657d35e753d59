"""`stance models export URI DIR`: a self-contained model directory another researcher can load and cite.

DIR holds the logged MLflow model as it is (MLmodel, the stance model directory with stance_model.json listing every
file's sha256, the code it runs with, pinned requirements), plus
- MODEL_CARD.md: data, metrics on the test split and on real text, intended use, limits, how to load and cite;
- model_identity.json: tool version and commit, run id, training-data digest, registry name and version, the model's
  fingerprint. `stance predict --model DIR` reads it, so predictions made from a copy name the original run.

Loading a copy goes through the same checks as any other model (no pickle, digests against the card), and
`mlflow.pyfunc.load_model(DIR)` works too. The directory is built beside DIR and renamed into place: no half export.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from train.models.card import model_fingerprint, read_card
from train.reports.verify import VerifyError, resolve_spec
from train.schema import CORE_LANGUAGES, LABELS
from train.tracking.identity import IDENTITY_FILE, model_identity
from train.tracking.queries import RunNotFound, get_run
from train.tracking.registry import resolve_model

CARD_FILE = "MODEL_CARD.md"


class ExportError(ValueError):
    """The model cannot be exported (unknown run, destination not empty)."""


def export_model(spec: str, dest: Path) -> Path:
    """Export the model behind `spec` (run id, runs:/ or models:/ URI) into `dest` (new or empty). Returns dest."""
    dest = Path(dest).resolve()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ExportError(f"{dest}: exists and is not an empty directory")
    try:
        run_id, uri = resolve_spec(spec)
        run, _ = get_run(run_id)
    except (VerifyError, RunNotFound) as e:
        raise ExportError(str(e)) from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        with tempfile.TemporaryDirectory(prefix="stance-export-") as dl:
            stance_dir, _, version = resolve_model(uri, Path(dl))
            mlflow_dir = stance_dir if (stance_dir / "MLmodel").is_file() else _mlflow_root(stance_dir, Path(dl))
            shutil.copytree(mlflow_dir, tmp, dirs_exist_ok=True)
        inner = tmp / stance_dir.relative_to(mlflow_dir)
        card = read_card(inner)  # the copy passes the loader's checks before it is handed out
        identity = model_identity(uri, version, inner, model_fingerprint(inner))
        (tmp / IDENTITY_FILE).write_text(json.dumps(identity, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / CARD_FILE).write_text(model_card(run, identity, card), encoding="utf-8")
        if dest.exists():
            dest.rmdir()
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _mlflow_root(stance_dir: Path, download_root: Path) -> Path:
    """The downloaded MLflow model directory (holding MLmodel) above the stance model directory inside it."""
    for d in stance_dir.parents:
        if (d / "MLmodel").is_file():
            return d
        if d == download_root:
            break
    return stance_dir


def _f(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def _metrics_table(m: dict, prefix: str, counts: str) -> list[str]:
    """macro-F1 with its interval, accuracy, ECE, and the core languages with their row counts."""
    k = (lambda name: name) if prefix in ("", "eval") else (lambda name: f"{prefix}/{name}")
    n = dict(part.rsplit(" ", 1) for part in counts.split(" · ")) if counts else {}
    rows = [
        "| metric | value |",
        "|---|---:|",
        f"| macro-F1 | {_f(m.get(k('macro_f1')))} (95% CI {_f(m.get(k('macro_f1_ci_low')))}–{_f(m.get(k('macro_f1_ci_high')))}) |",
        f"| accuracy | {_f(m.get(k('accuracy')))} |",
        f"| expected calibration error | {_f(m.get(k('ece')))} |",
    ]
    rows += [f"| recall {label} | {_f(m.get(k(f'recall_{label}')))} |" for label in LABELS]
    rows += [
        f"| macro-F1 {lang} (n={n.get(lang, '?')}) | {_f(m.get(k(f'macro_f1_lang_{lang}')))} |"
        for lang in CORE_LANGUAGES
        if k(f"macro_f1_lang_{lang}") in m
    ]
    if "other" in n:
        rows.append(f"| macro-F1 other languages (n={n['other']}) | {_f(m.get(k('f1/other')))} |")
    return rows + [""]


def model_card(run, identity: dict, card: dict) -> str:
    m, p, t = run.data.metrics, run.data.params, run.data.tags
    extra = [s for s in t.get("stance.eval_sets", "eval").split(",") if s and s != "eval"]
    kind = (
        "TF-IDF + logistic regression baseline"
        if card["kind"] == "baseline"
        else f"fine-tuned {p.get('model.name', 'transformer')}"
    )
    lines = [
        f"# Model card: {run.info.run_name or run.info.run_id}",
        "",
        f"Stance classifier (conciliatory / neutral / hostile) for statements about an interstate crisis: {kind}.",
        "Made with stance-lab (cite it with the repository's `CITATION.cff`).",
        "",
        "## How to cite",
        "",
        f"`{identity['model_id']}`",
        "",
        "| field | value |",
        "|---|---|",
        *[f"| {key} | `{value}` |" for key, value in identity.items() if key != "model_id"],
        "",
        "## How to load",
        "",
        "```bash",
        "stance predict --model THIS_DIR --input quotes.parquet --output scored.parquet",
        "```",
        "",
        "or `mlflow.pyfunc.load_model('THIS_DIR').predict(pandas.DataFrame({'text': [...]}))`. The loader checks every",
        "file against `stance_model.json` (sha256) and refuses a changed copy; nothing is unpickled.",
        "",
        "## Data",
        "",
        f"- training data: `{p.get('data.paths', '?')}` (digest `{identity.get('training_data_digest', 'unknown')}`)",
        f"- rows: train {p.get('n_train', '?')}, validation {p.get('n_val', '?')}, test {p.get('n_eval', '?')}",
        f"- languages trained on: {t.get('languages', '?')}; held out: {t.get('holdout', 'none')}",
        f"- labels, in output order: {', '.join(LABELS)}",
        "",
        f"## Metrics on the test split ({t.get('eval_split', 'test')})",
        "",
        *_metrics_table(m, "", t.get("n_eval", "")),
    ]
    for name in extra:
        lines += [f"## Metrics on real text: `{name}`", "", *_metrics_table(m, name, t.get(f"{name}/n_eval", ""))]
    if not extra:
        lines += [
            "## Metrics on real text",
            "",
            "None logged for this run: train with `data.eval_files` (e.g. `configs/realdev.yaml`) to score labeled real",
            "statements. Figures on the authored test split overstate what the model does on real text.",
            "",
        ]
    lines += [
        "## Intended use",
        "",
        "Research on political rhetoric: estimating the share of conciliatory, neutral and hostile statements in a",
        "collection of quotes about the crisis, compared across speakers, languages and time, with a sample of the",
        "predictions checked by people. Not for decisions about individuals, moderation or any automated action.",
        "",
        "## Limits",
        "",
        "- Most training statements were written by the project (LLM-assisted), not collected: the test split shares",
        "  their authors' habits; the real-text metrics above (where logged) are the ones to quote.",
        "- Hostility voiced as sarcasm or contempt inside analysis is often missed; diplomatic demands are often read as",
        "  conciliatory. Per-language figures with few rows (small n) are uncertain: see the intervals.",
        "- Languages outside the core five (en, ru, tr, az, uk) had little training data.",
        f"- Probabilities calibrated with temperature {card.get('temperature', 1.0):.3f}"
        + (
            " and class biases " + ", ".join(f"{lab} {b:+.3f}" for lab, b in zip(card["labels"], card["class_bias"]))
            if card.get("class_bias")
            else ""
        )
        + (f" and shifted to the prior {card['class_prior']}" if card.get("class_prior") else "")
        + "; calibration measured on the test split may not hold on another collection.",
        "",
    ]
    return "\n".join(lines)
