"""From the store to files: the long form (one row per statement and annotator, what `stance agreement` reads), the
disagreement list (what `stance label --adjudicate` presents) and corpus rows (`labeled/statements_annotated_*.jsonl`),
the latter checked by the corpus validator before they are moved into place, all or nothing."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from train.annotate.pool import AnnotateError, Pool
from train.annotate.store import Store
from train.data import corpus_files, validate
from train.data.problems import _display
from train.formats import write_rows_atomic
from train.schema import OPTIONAL_FIELDS, REQUIRED_FIELDS, split_for_id

CORPUS_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS
LONG_COLUMNS = ("id", "annotator", "stance", "borderline", "suggestion_shown", "seconds", "note", "time")
DEFAULTABLE = ("language", "speaker", "speaker_group", "date", "register")  # pool column, else --set KEY=VALUE


def write_rows(rows: list[dict], columns, path: Path) -> Path:
    """CSV or JSONL by extension, written atomically."""
    if Path(path).suffix.lower() not in (".csv", ".jsonl", ".ndjson"):
        raise AnnotateError(f"{path}: write .csv or .jsonl")
    return write_rows_atomic(path, rows, columns)


def long_rows(store: Store) -> list[dict]:
    """The labels in effect of every annotator (adjudicators excluded: they would count as one more annotator)."""
    rows = [
        {c: e.get(c) for c in LONG_COLUMNS} | {"id": rid, "annotator": who}
        for (who, role), labels in store.current("annotator").items()
        for rid, e in labels.items()
    ]
    return sorted(rows, key=lambda r: (r["id"], r["annotator"]))


def resolve(store: Store, annotators: list[str] | None = None) -> tuple[dict[str, dict], list[dict]]:
    """(decided, disagreements). A statement is decided when an adjudicator labeled it (the latest adjudication wins)
    or every annotator who labeled it gave the same label; otherwise it is a disagreement, listed with each label."""
    by_id: dict[str, dict[str, dict]] = {}
    for (who, _), labels in store.current("annotator").items():
        if annotators and who not in annotators:
            continue
        for rid, e in labels.items():
            by_id.setdefault(rid, {})[who] = e
    adjudicated: dict[str, dict] = {}
    for (who, _), labels in store.current("adjudicator").items():
        for rid, e in labels.items():
            if rid not in adjudicated or e["time"] > adjudicated[rid]["time"]:
                adjudicated[rid] = e | {"annotator": who}
    decided, disagreements = {}, []
    for rid in sorted(set(by_id) | set(adjudicated)):
        votes = by_id.get(rid, {})
        summary = ", ".join(f"{who}: {e['stance']}" for who, e in sorted(votes.items()))
        if rid in adjudicated:
            a = adjudicated[rid]
            decided[rid] = {
                "stance": a["stance"],
                "borderline": a["borderline"],
                "notes": f"adjudicated by {a['annotator']} ({a['time']})" + (f" over {summary}" if summary else "") + _extra(a),
            }
        elif len({e["stance"] for e in votes.values()}) == 1:
            first = next(iter(votes.values()))
            who = ", ".join(f"{w} ({e['time']})" for w, e in sorted(votes.items()))
            how = "unanimous, " if len(votes) > 1 else ""
            decided[rid] = {
                "stance": first["stance"],
                "borderline": any(e["borderline"] for e in votes.values()),
                "notes": f"annotated by {who}"
                + (f"; {how}{len(votes)} annotators" if how else "")
                + "".join(_extra(e) for e in votes.values()),
            }
        else:
            disagreements.append(
                {"id": rid, "reason": f"disagreement: {summary}"} | {"labels": {w: e["stance"] for w, e in votes.items()}}
            )
    return decided, disagreements


def _extra(e: dict) -> str:
    """The annotator's flag and note, in the guidelines' convention: ambiguous rows say `borderline:` in notes."""
    if e.get("borderline"):
        return f"; borderline: {e.get('note') or 'flagged by the annotator'}"
    return f"; note: {e['note']}" if e.get("note") else ""


def _value(row_values: dict, name: str, defaults: dict[str, str]):
    v = row_values.get(name)
    if name == "language" and v in (None, ""):
        v = row_values.get("detected_language")  # stance predict's column when the input had no language
    if v in (None, ""):
        v = defaults.get(name)
    if name == "date" and isinstance(v, str) and re.match(r"\d{4}-\d{2}-\d{2}[T ]", v):
        v = v[:10]  # a timestamp: the corpus keeps the day
    if v is None and name == "date":
        v = ""
    return v if v is None or isinstance(v, str) else str(v)


def corpus_rows(
    pool: Pool, decided: dict[str, dict], defaults: dict[str, str], id_prefix: str = "", detect_language: bool = False
) -> list[tuple[dict, object]]:
    """(corpus row, pool row) for each decided statement, in pool order; a decided id missing from the pool is an error
    (the wrong pool file was given)."""
    missing = sorted(set(decided) - set(pool.by_id))
    if missing:
        raise AnnotateError(
            f"{pool.path}: {len(missing)} labeled id(s) are not in this pool "
            f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}); pass the pool that was labeled"
        )
    out = []
    for prow in pool.rows:
        if prow.id not in decided:
            continue
        d = decided[prow.id]
        rid = f"{id_prefix}{prow.id}"
        row = {"id": rid, "text": prow.values[pool.text_column]}
        for name in DEFAULTABLE:
            v = _value(prow.values, name, defaults)
            if v is not None and (v != "" or name == "date"):
                row[name] = v
        row.update(stance=d["stance"], source="annotated", split=split_for_id(rid), notes=d["notes"])
        out.append(({k: row[k] for k in CORPUS_FIELDS if k in row}, prow))
    if detect_language:
        from train.inference import detect_languages

        need = [r for r, _ in out if "language" not in r]
        for r, lang in zip(need, detect_languages([r["text"] for r in need])):
            if lang:
                r["language"] = lang
                r["notes"] += "; language detected by lingua"
    return out


def write_corpus(rows: list[tuple[dict, object]], pool: Pool, target: Path) -> tuple[Path, list[str]]:
    """Validate the rows as part of the corpus folder they join (ids and texts across files too), then move them into
    place atomically. Any error: AnnotateError naming the pool file, line and field; the target is left untouched.
    Returns (target, warnings)."""
    target = Path(target)
    if target.suffix.lower() != ".jsonl":
        raise AnnotateError(f"{target}: the corpus is JSON Lines; name the file statements_annotated_<name>.jsonl")
    if not rows:
        raise AnnotateError("nothing to export: no statement is decided (labeled unanimously or adjudicated)")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r, _ in rows)
            fh.flush()
            os.fsync(fh.fileno())
        others, _ = corpus_files(target.parent)
        others = [f for f in others if f.resolve() != target.resolve()]
        report = validate([*others, Path(tmp)], near_duplicates=True)
        shown_tmp, shown_target = _display(Path(tmp)), _display(target)
        errors = [_explain(p, rows, pool).replace(shown_tmp, shown_target) for p in report.errors if p.path == shown_tmp]
        if errors:
            raise AnnotateError("\n".join(errors) + f"\n{len(errors)} error(s); nothing written to {target}")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    warnings = [str(p).replace(shown_tmp, shown_target) for p in report.warnings if shown_tmp in str(p)]
    return target, warnings


def _explain(problem, rows, pool: Pool) -> str:
    """A validator problem about line n of the temporary file, told as the pool row it came from."""
    if problem.line is None or not 1 <= problem.line <= len(rows):
        return str(problem)
    row, prow = rows[problem.line - 1]
    hint = ""
    if problem.field in DEFAULTABLE:
        hint = f" (from the pool's {problem.field!r} column or --set {problem.field}=...)"
        if problem.field == "language":
            hint = " (from the pool's 'language' / 'detected_language' column, --set language=xx or --detect-language)"
    return f"{prow.where}: field '{problem.field}': {problem.message}{hint} [id {row['id']!r}]"
