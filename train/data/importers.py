"""Writing schema JSONL and importing external data: CSV files and TweetEval-style benchmarks (e.g. UMSAB)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

import pandas as pd

from train.data.codebook import DEFAULT_CODEBOOK, Codebook, codebook_for, group_key, load_codebook
from train.data.problems import DataError, Problem, _display, _Record, did_you_mean
from train.data.readers import ALL_FIELDS, _decode_text_file, _read_csv
from train.data.validation import ISO639_1, _check_records, _frame, _sorted, normalise_text
from train.schema import LABELS, REQUIRED_FIELDS, SPLITS, split_for_id

# --------------------------------------------------------------------------- writing and importing


def _write_jsonl(rows: list[dict], out_jsonl, overwrite: bool) -> None:
    out = Path(out_jsonl)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps({k: row[k] for k in ALL_FIELDS if k in row}, ensure_ascii=False) + "\n")
    tmp.replace(out)


def _validate_or_raise(records: list[_Record], near_duplicates: bool = False) -> list[Problem]:
    errors, warnings = _check_records(records, near_duplicates)
    if errors:
        raise DataError(errors)
    return warnings


MAP_TARGETS = tuple(f for f in ALL_FIELDS if f != "meta")


@dataclass
class ImportSummary:
    """What `import_csv` did: rows written, ids it generated, the columns it kept in `meta`, the group values it read
    as codebook groups ("Western media" -> western_media)."""

    rows: int
    generated_ids: int = 0
    meta_columns: list[str] = dataclass_field(default_factory=list)
    groups_read_as: dict[str, str] = dataclass_field(default_factory=dict)


def parse_mapping(items: Mapping[str, str] | None, where: str = "--map") -> dict[str, str]:
    """CSV column -> field (or `meta.<name>`), checked: every target a field, with the close one named."""
    mapping = {str(k).strip(): str(v).strip() for k, v in (items or {}).items()}
    for column, target in mapping.items():
        if target not in MAP_TARGETS and not (target.startswith("meta.") and len(target) > 5):
            raise ValueError(
                f"{where} {column}={target}: {target!r} is not a field (valid: {', '.join(MAP_TARGETS)}, or meta.NAME)"
                f"{did_you_mean(target, MAP_TARGETS)}"
            )
    return mapping


def import_csv(
    csv_path,
    out_jsonl,
    *,
    source: str | None = None,
    defaults: Mapping[str, str] | None = None,
    overwrite: bool = False,
    mapping: Mapping[str, str] | None = None,
) -> ImportSummary:
    """Convert a CSV (header row) into schema JSONL; nothing is written on error (a DataError with every problem).

    ``mapping`` renames the file's columns (``{"quote": "text", "quote_id": "id"}``; a target may be ``meta.<name>``);
    every other column that is not a field is kept in the row's ``meta`` object (coder, source_url, ...).
    Without an id column, ids are generated from the text: ``<file stem>-<first 10 hex of sha256(normalised text)>``,
    so re-importing the sheet, sorted or extended, gives every row the same id (and split) again.
    ``defaults`` fills fields whose column is absent or whose cell is empty (e.g. ``{"language": "ru"}``); ``source``
    is the default source; a missing split is derived from the id. Stance and language values are read lowercased, and
    a speaker group written as text ("Western media") is read as the codebook group it names (western_media). Rows are
    validated like the corpus, against the codebook of the output's folder; problems name the CSV line.
    """
    fill = {k: v for k, v in (defaults or {}).items() if v is not None}
    if source is not None:
        fill["source"] = source
    unknown = sorted(set(fill) - set(MAP_TARGETS))
    if unknown:
        raise ValueError(f"unknown default field(s) {unknown} (allowed: {', '.join(MAP_TARGETS)})")
    mapping = parse_mapping(mapping)
    required = [f for f in REQUIRED_FIELDS if f not in fill and f not in ("split", "id")]
    records, problems = _read_csv(Path(csv_path), header_required=required, mapping=mapping)
    codebook, book_problems = DEFAULT_CODEBOOK, []
    book = codebook_for(Path(out_jsonl).parent)
    if book is not None:
        codebook, book_problems = load_codebook(book, ISO639_1)
    summary = ImportSummary(0)
    generate = bool(records) and "id" in records[0].header_missing
    taken: dict[str, int] = {}
    filled = []
    for r in records:
        row = _normalise(r.row, codebook, summary)
        if generate and isinstance(row.get("text"), str) and row["text"].strip():
            row["id"] = _generated_id(Path(csv_path), row["text"], taken)
        # without an id (its column, cell or text is missing: reported) the split cannot be derived: not a second error
        reported = r.header_missing - {"split"} | ({"split"} if not row.get("id") else set())
        filled.append(_Record(r.path, r.line, _fill_row(row, fill), reported, codebook))
    errors, _ = _check_records(filled, near_duplicates=False)
    hint = " (add a source column or pass --source)"
    problems = [
        Problem(p.path, p.line, p.field, p.message + hint) if p.field == "source" and "missing" in p.message else p
        for p in book_problems + problems + errors
    ]
    if problems:
        raise DataError(_sorted(problems))
    _write_jsonl([r.row for r in filled], out_jsonl, overwrite)
    summary.rows = len(filled)
    summary.generated_ids = len(filled) if generate else 0
    summary.meta_columns = sorted({k for r in filled for k in r.row.get("meta", {})})
    return summary


def _normalise(row: dict, codebook: Codebook, summary: ImportSummary) -> dict:
    """Stance and language lowercased; a group written as text read as the codebook group it names."""
    row = dict(row)
    for name in ("stance", "language"):
        if isinstance(row.get(name), str):
            row[name] = row[name].strip().lower()
    group = row.get("speaker_group")
    if isinstance(group, str) and group not in codebook.speaker_groups and group_key(group) in codebook.speaker_groups:
        summary.groups_read_as[group] = row["speaker_group"] = group_key(group)
    return row


def _generated_id(csv_path: Path, text: str, taken: dict[str, int]) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", csv_path.stem).strip("-") or "row"
    rid = f"{stem}-{hashlib.sha256(normalise_text(text).encode('utf-8')).hexdigest()[:10]}"
    taken[rid] = taken.get(rid, 0) + 1
    return rid if taken[rid] == 1 else f"{rid}-{taken[rid]}"  # the same text twice: reported as a duplicate text


def _fill_row(row: dict, fill: Mapping[str, str]) -> dict:
    """Apply defaults to absent/empty cells; derive a missing split from the id; drop empty optional cells."""
    row = dict(row)
    for k, v in fill.items():
        if row.get(k, "") == "":
            row[k] = v
    if row.get("split", "") == "" and isinstance(row.get("id"), str) and row["id"]:
        row["split"] = split_for_id(row["id"])
    for k in ("source", "split"):
        if row.get(k) == "":
            del row[k]  # reported as a missing field, with a hint
    return row


# TweetEval-style benchmarks ------------------------------------------------------------

LANGUAGE_NAMES = {
    "arabic": "ar",
    "english": "en",
    "french": "fr",
    "german": "de",
    "hindi": "hi",
    "italian": "it",
    "portuguese": "pt",
    "spanish": "es",
    "russian": "ru",
    "ukrainian": "uk",
    "turkish": "tr",
    "azerbaijani": "az",
    "persian": "fa",
    "farsi": "fa",
    "chinese": "zh",
    "japanese": "ja",
    "korean": "ko",
    "dutch": "nl",
    "polish": "pl",
    "armenian": "hy",
    "georgian": "ka",
    "hebrew": "he",
}
SENTIMENT_LABEL_MAP = {"0": "hostile", "1": "neutral", "2": "conciliatory"}
"""Default TweetEval mapping: negative/neutral/positive mapped onto the project's three ordered classes.
Sentiment is not stance; use imported sentiment rows for pipeline checks and transfer experiments only."""

_ESCAPE_PAIR = re.compile(r"\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})")
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def decode_unicode_escapes(text: str) -> str:
    """Turn literal six-character ``\\uXXXX`` escapes (and surrogate pairs) into characters.

    Other backslashes are left alone, and so are lone surrogate escapes (not valid text)."""
    if "\\u" not in text:
        return text
    text = _ESCAPE_PAIR.sub(lambda m: chr(0x10000 + ((int(m[1], 16) - 0xD800) << 10) + int(m[2], 16) - 0xDC00), text)
    return _ESCAPE.sub(lambda m: m[0] if 0xD800 <= int(m[1], 16) <= 0xDFFF else chr(int(m[1], 16)), text)


def _is_tweeteval_folder(folder: Path) -> bool:
    return any((folder / f"{s}_text.txt").is_file() for s in SPLITS)


def _language_for(folder: Path) -> str:
    name = folder.name.lower()
    code = LANGUAGE_NAMES.get(name, name)
    if code not in ISO639_1:
        raise DataError(
            Problem(
                _display(folder),
                None,
                "language",
                f"cannot tell the language from the folder name {folder.name!r}; pass language=",
            )
        )
    return code


def _lines(path: Path) -> list[str]:
    text, problems = _decode_text_file(path)
    if problems:
        raise DataError(problems)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # a trailing newline ends the last line; it does not start a new one
    return [line.rstrip("\r") for line in lines]


def _read_mapping(folder: Path, label_map) -> dict[str, str]:
    if label_map is not None:
        mapping = {str(k).strip(): str(v).strip() for k, v in label_map.items()}
        bad = sorted(set(mapping.values()) - set(LABELS))
        if bad:
            raise ValueError(f"label_map targets {bad} are not labels (expected {', '.join(LABELS)})")
        return mapping
    mapping = folder / "mapping.txt"
    if mapping.is_file():
        names = [line.split()[-1].lower() for line in _lines(mapping) if line.strip()]
        if names != ["negative", "neutral", "positive"]:
            raise DataError(
                Problem(_display(mapping), None, None, f"classes {names} are not negative/neutral/positive; pass label_map=")
            )
    return dict(SENTIMENT_LABEL_MAP)


def _tweeteval_rows(folder: Path, language: str, label_map: dict[str, str], prefix: str) -> list[_Record]:
    records = []
    for split in SPLITS:
        text_path, label_path = folder / f"{split}_text.txt", folder / f"{split}_labels.txt"
        if not text_path.is_file():
            continue
        if not label_path.is_file():
            raise DataError(Problem(_display(text_path), None, None, f"has no labels file {_display(label_path)}"))
        texts, labels = _lines(text_path), _lines(label_path)
        if len(texts) != len(labels):
            raise DataError(
                Problem(
                    _display(text_path),
                    None,
                    None,
                    f"has {len(texts)} lines but {_display(label_path)} has {len(labels)}; "
                    "texts and labels must align line by line",
                )
            )
        problems = []
        for n, (text, label) in enumerate(zip(texts, labels), start=1):
            label = label.strip()
            if label not in label_map:
                problems.append(
                    Problem(_display(label_path), n, "stance", f"label {label!r} not in the label map ({', '.join(label_map)})")
                )
                continue
            row = {
                "id": f"{prefix}-{language}-{split}-{n:06d}",
                "text": decode_unicode_escapes(text).strip(),
                "language": language,
                "stance": label_map[label],
                "speaker": "unknown",
                "speaker_group": "other",
                "source": "imported",
                "date": "",
                "split": split,
                "register": "tweet",
                "notes": f"{prefix} {split} line {n}, original label {label}",
            }
            records.append(_Record(_display(text_path), n, row))
        if problems:
            raise DataError(problems)
    if not records:
        raise DataError(Problem(_display(folder), None, None, "no {train,val,test}_text.txt files"))
    return records


def _tweeteval_records(folder, language=None, label_map=None, id_prefix=None) -> list[_Record]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(Problem(_display(folder), None, None, "no such directory"))
    if _is_tweeteval_folder(folder):
        if language is None and folder.name.lower() == "all":
            raise DataError(
                Problem(
                    _display(folder),
                    None,
                    "language",
                    "'all' mixes languages; import the parent folder (one language per subfolder) instead",
                )
            )
        prefix = id_prefix or re.sub(r"[^a-z0-9_]+", "-", folder.resolve().parent.name.lower()).strip("-") or "import"
        return _tweeteval_rows(folder, language or _language_for(folder), _read_mapping(folder, label_map), prefix)
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.lower() != "all" and _is_tweeteval_folder(p))
    if not subfolders:
        raise DataError(Problem(_display(folder), None, None, "neither a TweetEval folder nor a parent of any"))
    if language is not None:
        raise ValueError("language= applies to a single-language folder, not to a parent of language folders")
    prefix = id_prefix or re.sub(r"[^a-z0-9_]+", "-", folder.resolve().name.lower()).strip("-") or "import"
    return [r for sub in subfolders for r in _tweeteval_rows(sub, _language_for(sub), _read_mapping(sub, label_map), prefix)]


def read_tweeteval(folder, language=None, label_map=None, id_prefix=None) -> pd.DataFrame:
    """Read a TweetEval-style folder into a schema DataFrame (validated; raises :class:`DataError`).

    ``folder`` holds ``{train,val,test}_text.txt`` + ``_labels.txt`` aligned by line (optional
    ``mapping.txt``), or is a parent of such folders, one per language (an ``all/`` subfolder is skipped).
    Language: ``language=`` or the folder name (``english`` -> ``en``, or a 2-letter code).
    Labels: ``label_map`` (benchmark label -> stance); default :data:`SENTIMENT_LABEL_MAP`.
    Rows: ids ``{prefix}-{lang}-{split}-{line:06d}`` (1-based line; prefix defaults to the dataset folder's
    name, e.g. ``umsab``), source "imported", speaker "unknown", speaker_group "other", register "tweet",
    date "", split = the benchmark's official split; literal ``\\uXXXX`` escapes decoded.
    """
    records = _tweeteval_records(folder, language, label_map, id_prefix)
    df = _frame([r.row for r in records])
    df.attrs["warnings"] = [str(p) for p in _validate_or_raise(records)]
    return df


def import_tweeteval(folder, out_jsonl, language=None, label_map=None, id_prefix=None, overwrite: bool = False) -> int:
    """:func:`read_tweeteval`, written to ``out_jsonl``; returns the number of rows written."""
    records = _tweeteval_records(folder, language, label_map, id_prefix)
    _validate_or_raise(records)
    _write_jsonl([r.row for r in records], out_jsonl, overwrite)
    return len(records)
