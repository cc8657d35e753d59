"""Checking rows (per row and across rows) and loading the validated corpus as a DataFrame."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from train.data.codebook import DEFAULT_CODEBOOK, Codebook, codebook_for, load_codebook
from train.data.problems import DataError, Problem, ValidationReport, _display, _Record, did_you_mean
from train.data.readers import ALL_FIELDS, _read_any, corpus_files
from train.runtime import DEFAULT_LABELED_DIR
from train.schema import (
    LABELS,
    OPTIONAL_FIELDS,
    REGISTERS,
    REQUIRED_FIELDS,
    SOURCES,
    SPLITS,
    split_for_id,
)

# fmt: off
ISO639_1 = frozenset("""
aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv dz
ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ik
io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml
mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd
se sg si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi
vo wa wo xh yi yo za zh zu
""".split())

NEAR_DUPLICATE_THRESHOLD = 0.9

_LANG_RE = re.compile(r"[a-z]{2}")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")

# --------------------------------------------------------------------------- per-row checks


def normalise_text(text: str) -> str:
    """Casefold and collapse whitespace: the key for duplicate-text checks."""
    return " ".join(text.casefold().split())


def _check_enum(row: dict, name: str, allowed: tuple[str, ...], what: str, whose: str = "") -> list[tuple[str, str]]:
    value = row.get(name)
    if value in allowed:
        return []
    return [(name, f"unknown {what} {value!r} (expected one of {', '.join(allowed)}{whose}){did_you_mean(value, allowed)}")]


def _check_language(value, codebook: Codebook = DEFAULT_CODEBOOK) -> list[tuple[str, str]]:
    if not isinstance(value, str) or not _LANG_RE.fullmatch(value):
        return [("language", f"malformed language code {value!r} (expected a lowercase ISO 639-1 two-letter code)")]
    if value not in ISO639_1:
        return [("language", f"unknown language code {value!r} (not an ISO 639-1 code)")]
    if codebook.languages is not None and value not in codebook.languages:
        return [
            (
                "language",
                f"language {value!r} is not one the study expects ({', '.join(codebook.languages)}, the languages "
                f"of {codebook.path}; add it there if it belongs){did_you_mean(value, codebook.languages)}",
            )
        ]
    return []


def _check_meta(value) -> list[tuple[str, str]]:
    """meta: the study's own columns, an object of name -> string/number/bool/null (what a CSV cell can hold)."""
    if value is None:
        return []
    if not isinstance(value, dict):
        return [("meta", f"meta must be an object of column name -> value, got {type(value).__name__}")]
    nested = [k for k, v in value.items() if isinstance(v, (dict, list))]
    if nested:
        return [("meta", f"meta values must be strings, numbers, true/false or null; {nested[0]!r} holds a {type(value[nested[0]]).__name__}")]
    return []


def _check_text(value) -> list[tuple[str, str]]:
    if not isinstance(value, str):
        return [("text", f"text must be a string, got {type(value).__name__}")]
    if not value.strip():
        return [("text", "empty text" if not value else "whitespace-only text")]
    return []


def _check_date(value) -> list[tuple[str, str]]:
    if value == "":
        return []
    if isinstance(value, str) and _DATE_RE.fullmatch(value):
        try:
            _dt.date.fromisoformat(value)
            return []
        except ValueError:
            pass
    return [("date", f"malformed date {value!r} (expected \"\" or YYYY-MM-DD)")]


def _check_split(row: dict) -> list[tuple[str, str]]:
    found = _check_enum(row, "split", SPLITS, "split")
    if found or row.get("source") == "imported" or not isinstance(row.get("id"), str):
        return found
    expected = split_for_id(row["id"])
    if row["split"] != expected:
        return [("split", f"split {row['split']!r} does not match the split derived from the id ({expected!r}); "
                          "splits are derived from sha256(id) by schema.split_for_id, so set it to "
                          f"{expected!r} (only source 'imported' rows keep their benchmark's split)")]
    return []


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_row(row: dict, codebook: Codebook | None = None) -> list[tuple[str, str]]:
    """Every problem of one row as ``(field, message)`` pairs (cross-row checks are separate). Speaker groups and
    expected languages come from the codebook of the row's folder (default: the shipped one)."""
    codebook = codebook or DEFAULT_CODEBOOK
    found = [
        (k, f"unknown field (allowed: {', '.join(ALL_FIELDS)}; a study's own columns go in meta){did_you_mean(k, ALL_FIELDS)}")
        for k in row
        if k not in ALL_FIELDS
    ]
    # a JSON "\\ud83d" without its pair (an emoji cut in half) parses, but no tokenizer or UTF-8 writer accepts it
    found += [(k, f"lone surrogate \\u{ord(m[0]):04x} at character {m.start()} (half an emoji?); not valid Unicode")
              for k, v in row.items() if isinstance(v, str) and (m := _SURROGATE.search(v))]
    missing = [k for k in REQUIRED_FIELDS if k not in row]
    found += [(k, "missing required field") for k in missing]
    if "id" not in missing and (not isinstance(row["id"], str) or not row["id"].strip()):
        found.append(("id", f"id must be a non-empty string, got {row['id']!r}"))
    if "text" not in missing:
        found += _check_text(row["text"])
    if "language" not in missing:
        found += _check_language(row["language"], codebook)
    if "stance" not in missing:
        found += _check_enum(row, "stance", LABELS, "label")
    if "speaker" not in missing and not isinstance(row["speaker"], str):
        found.append(("speaker", f"speaker must be a string, got {type(row['speaker']).__name__}"))
    if "speaker_group" not in missing:
        whose = f"; the groups of {codebook.path}" if codebook.path else ""
        found += _check_enum(row, "speaker_group", codebook.speaker_groups, "speaker_group", whose)
    if "source" not in missing:
        found += _check_enum(row, "source", SOURCES, "source")
    if "date" not in missing:
        found += _check_date(row["date"])
    if "split" not in missing:
        found += _check_split(row)
    if row.get("register") not in (None, ""):
        found += _check_enum(row, "register", REGISTERS, "register")
    if not isinstance(row.get("notes", ""), (str, type(None))):
        found.append(("notes", f"notes must be a string, got {type(row['notes']).__name__}"))
    return found + _check_meta(row.get("meta"))


# --------------------------------------------------------------------------- cross-row checks


def _duplicate_ids(records: list[_Record]) -> list[Problem]:
    by_id = defaultdict(list)
    for r in records:
        if isinstance(r.row.get("id"), str) and r.row["id"]:
            by_id[r.row["id"]].append(r)
    problems = []
    for rid, group in by_id.items():
        for r in group if len(group) > 1 else ():
            others = ", ".join(o.where for o in group if o is not r)
            problems.append(Problem(r.path, r.line, "id", f"duplicate id {rid!r} (also at {others})"))
    return problems


def _duplicate_texts(records: list[_Record]) -> tuple[list[Problem], list[Problem]]:
    """Same normalised text twice: error if the stances differ, warning if they agree.

    Conflicts among rows that are all ``source == "imported"`` are warnings: a benchmark's labels
    are kept as published.
    """
    by_text = defaultdict(list)
    for r in records:
        if isinstance(r.row.get("text"), str) and r.row["text"].strip():
            by_text[normalise_text(r.row["text"])].append(r)
    errors, warnings = [], []
    for group in by_text.values():
        if len(group) < 2:
            continue
        stances = {str(r.row.get("stance")) for r in group}
        all_imported = all(r.row.get("source") == "imported" for r in group)
        for i, r in enumerate(group):
            others = [o for o in group if o is not r]
            if len(stances) > 1:
                detail = ", ".join(f"{o.row.get('stance')!r} at {o.where}" for o in others)
                message = f"same text labeled {r.row.get('stance')!r} here and {detail}"
                (warnings if all_imported else errors).append(Problem(r.path, r.line, "stance", message))
            elif i > 0:
                message = f"exact duplicate (same stance) of the text at {group[0].where}"
                if r.row.get("split") != group[0].row.get("split"):
                    message += f" in split {group[0].row.get('split')!r}; this row is in {r.row.get('split')!r} (leakage)"
                warnings.append(Problem(r.path, r.line, "text", message))
    return errors, warnings


def near_duplicate_pairs(texts: list[str], groups: list[str] | None = None,
                         threshold: float = NEAR_DUPLICATE_THRESHOLD, block: int = 2000) -> list[tuple[int, int, float]]:
    """Index pairs ``(i, j, cosine)``, i < j, whose character 3-gram TF-IDF cosine is >= ``threshold``.

    With ``groups`` only pairs from different groups are compared (cheaper: no within-group products).
    Exact: sparse matrix products in row blocks (about 1 s for 10k short texts).
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    if len(texts) < 2:
        return []
    X = TfidfVectorizer(analyzer="char", ngram_range=(3, 3), sublinear_tf=True, dtype=np.float32).fit_transform(texts)
    labels = np.asarray(groups if groups is not None else [""] * len(texts), dtype=object)
    names = list(dict.fromkeys(labels))
    members = {g: np.flatnonzero(labels == g) for g in names}
    if groups is None:
        comparisons = [(names[0], names[0])]
    else:
        comparisons = [(a, b) for k, a in enumerate(names) for b in names[k + 1 :]]
    pairs = []
    for a, b in comparisons:
        rows_a, rows_b = members[a], members[b]
        right = X[rows_b].T.tocsc()
        for start in range(0, len(rows_a), block):
            sims = (X[rows_a[start : start + block]] @ right).tocoo()
            keep = sims.data >= threshold
            i, j = rows_a[sims.row[keep] + start], rows_b[sims.col[keep]]
            pairs += [(int(min(x, y)), int(max(x, y)), float(v)) for x, y, v in zip(i, j, sims.data[keep]) if x != y]
    return sorted(set(pairs))


def _near_duplicates_across_splits(records: list[_Record]) -> list[Problem]:
    """Warn about near-identical (not identical) texts sitting in different splits: train/eval leakage."""
    first = {}
    for r in records:
        text = r.row.get("text")
        if isinstance(text, str) and text.strip() and r.row.get("split") in SPLITS:
            first.setdefault((normalise_text(text), r.row["split"]), r)
    keys = list(first)
    problems = []
    for i, j, sim in near_duplicate_pairs([k[0] for k in keys], [k[1] for k in keys]):
        a, b = sorted((first[keys[i]], first[keys[j]]), key=lambda r: (r.path, r.line))
        if keys[i][0] != keys[j][0]:
            message = (f"near-duplicate (cosine {sim:.2f}) of the text at {a.where} in split {a.row['split']!r}; "
                       f"this row is in {b.row['split']!r} (leakage between splits)")
            problems.append(Problem(b.path, b.line, "text", message))
    return problems


def _check_records(records: list[_Record], near_duplicates: bool = True) -> tuple[list[Problem], list[Problem]]:
    errors = [Problem(r.path, r.line, f, m) for r in records for f, m in check_row(r.row, r.codebook)
              if not (f in r.header_missing and m == "missing required field")]
    errors += _duplicate_ids(records)
    text_errors, warnings = _duplicate_texts(records)
    errors += text_errors
    if near_duplicates:
        warnings += _near_duplicates_across_splits(records)
    return _sorted(errors), _sorted(warnings)


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.path, p.line or 0))


def _scan(paths, near_duplicates: bool = True) -> tuple[list[_Record], ValidationReport]:
    files, file_problems = corpus_files(paths)
    records, read_problems, codebooks = [], [], {}
    for f in files:
        recs, probs = _read_any(f)
        book = codebook_for(f)
        if book is not None and book not in codebooks:
            codebooks[book], found = load_codebook(book, ISO639_1)
            read_problems += found
        if book is not None:
            recs = [dataclasses.replace(r, codebook=codebooks[book]) for r in recs]
        records += recs
        read_problems += probs
        if not recs and not probs:
            file_problems.append(Problem(_display(f), None, None, "empty file (no rows)"))
    errors, warnings = _check_records(records, near_duplicates)
    no_files = [p for p in file_problems if p.message.startswith(("directory holds no", "empty file"))]
    missing = [p for p in file_problems if p not in no_files]
    report = ValidationReport(_sorted(missing + read_problems + errors), warnings + no_files, len(records), len(files))
    return records, report


def validate(paths=DEFAULT_LABELED_DIR, near_duplicates: bool = True) -> ValidationReport:
    """Check files/directories in one pass and return every error and warning (never raises for bad data).

    Errors: unreadable lines (UTF-8, JSON, non-object), missing/unknown fields, bad values (label,
    language, text, speaker_group, source, split, date, register), split not derived from the id
    (except ``source == "imported"``), duplicate ids, the same text with different stances.
    Warnings: exact duplicate texts with the same stance, near-duplicates across splits.
    """
    return _scan(paths, near_duplicates)[1]


# --------------------------------------------------------------------------- loading, filtering, splitting


def _frame(rows: list[dict]) -> pd.DataFrame:
    blank = {**dict.fromkeys(OPTIONAL_FIELDS, ""), "meta": None}
    rows = [{**blank, **{k: v for k, v in row.items() if v is not None or k not in blank}} for row in rows]
    rows = [{**row, "meta": row["meta"] or {}} for row in rows]  # every row an object: df["meta"].str.get("coder") works
    return pd.DataFrame(rows, columns=list(ALL_FIELDS))


def load_statements(paths=DEFAULT_LABELED_DIR, validate: bool = True) -> pd.DataFrame:
    """All rows of the given files/directories as a DataFrame with every schema field (optional ones "" when absent).

    With ``validate=True`` (default) raises :class:`DataError` listing every error; warnings are kept in
    ``df.attrs["warnings"]`` (the slower near-duplicate scan is left to :func:`validate` /
    ``stance data validate``). With ``validate=False`` unreadable lines are skipped silently.
    """
    records, report = _scan(paths, near_duplicates=False)
    if validate and report.errors:
        raise DataError(report.errors)
    if not records:
        raise DataError(Problem(", ".join(map(str, [paths] if isinstance(paths, (str, Path)) else paths)), None, None, "no rows found"))
    df = _frame([r.row for r in records])
    df.attrs["warnings"] = [str(p) for p in report.warnings]
    return df
