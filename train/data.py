"""Reading, validating, splitting, summarising and importing labeled statements.

The corpus lives in ``labeled/*.jsonl`` (one JSON object per line, fields from ``train.schema``).
Everything that reads the corpus goes through :func:`validate` / :func:`load_statements`, so a
broken row is reported once, with its file and line, instead of surfacing later as a training bug.

Public API
----------
``ISO639_1``                      set of ISO 639-1 two-letter language codes
``Problem``, ``DataError``        one finding (path, line, field, message) / exception carrying a list of them
``ValidationReport``              ``errors``, ``warnings``, ``n_rows`` (+ ``ok``)
``validate(paths)``               all problems in one pass; never raises for bad data
``load_statements(paths)``        DataFrame with every schema field; raises ``DataError`` on errors
``filter_statements(df, ...)``    keep/drop languages, speaker groups, sources
``make_splits(df, ...)``          ``{"train", "val", "eval"}`` DataFrames, with optional held-out languages/groups
``stats_table(df)``               markdown count tables; ``write_card_stats`` puts them into the dataset card
``import_csv(...)``               CSV -> schema JSONL (validated)
``read_tweeteval(...)``           TweetEval-style benchmark folder(s) -> DataFrame in the schema
``import_tweeteval(...)``         same, written as JSONL (validated)
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field as _field
from pathlib import Path

import pandas as pd

from train.schema import (
    LABELS,
    OPTIONAL_FIELDS,
    REGISTERS,
    REQUIRED_FIELDS,
    SOURCES,
    SPEAKER_GROUPS,
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
# fmt: on
"""All 184 ISO 639-1 codes (the 183 current ones plus ``bh``, Bihari, a collective code still in use)."""

ALL_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS
DEFAULT_LABELED_DIR = Path(__file__).resolve().parent.parent / "labeled"
NEAR_DUPLICATE_THRESHOLD = 0.9

_LANG_RE = re.compile(r"[a-z]{2}")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class Problem:
    """One finding about one place in one file. ``line`` is 1-based; ``None`` means the whole file."""

    path: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        what = f"field '{self.field}': " if self.field else ""
        return f"{where}: {what}{self.message}"


class DataError(Exception):
    """Bad data. ``problems`` holds every :class:`Problem` found, not just the first."""

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem("<data>", None, None, problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        head = "\n".join(str(p) for p in self.problems[:20])
        more = f"\n... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"{len(self.problems)} data problem(s):\n{head}{more}")


@dataclass
class ValidationReport:
    errors: list[Problem] = _field(default_factory=list)
    warnings: list[Problem] = _field(default_factory=list)
    n_rows: int = 0
    n_files: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class _Record:
    """A parsed row and where it came from."""

    path: str
    line: int
    row: dict
    header_missing: frozenset = frozenset()  # CSV columns already reported once, on the header line

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def _display(path: Path) -> str:
    """A path as shown in messages: relative to the working directory when it lies below it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return str(path) if rel.startswith("..") else Path(rel).as_posix()


# --------------------------------------------------------------------------- reading files


def corpus_files(paths: Iterable[str | Path] | str | Path) -> tuple[list[Path], list[Problem]]:
    """Expand files and directories (directories: their *.jsonl and *.csv, sorted, not recursive)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files, problems = [], []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in (".jsonl", ".csv"))
            if not found:
                problems.append(Problem(_display(p), None, None, "directory holds no *.jsonl or *.csv files"))
            files.extend(found)
        elif p.is_file() and p.suffix.lower() in (".parquet", ".pq"):
            problems.append(Problem(_display(p), None, None, "a Parquet file; the corpus is JSONL or CSV"))
        elif p.is_file():
            files.append(p)
        else:
            problems.append(Problem(_display(p), None, None, "no such file or directory"))
    return files, problems


def _read_jsonl(path: Path) -> tuple[list[_Record], list[Problem]]:
    shown, records, problems = _display(path), [], []
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return [], [Problem(shown, None, None, "a UTF-16 file; JSON Lines must be UTF-8")]
    for n, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=1):  # a UTF-8 BOM is accepted
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            problems.append(Problem(shown, n, None, f"invalid UTF-8 ({e.reason} at byte {e.start} of the line)"))
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(Problem(shown, n, None, f"malformed JSON: {e.msg} (column {e.colno})"))
            continue
        except RecursionError:
            problems.append(Problem(shown, n, None, "malformed JSON: nested too deeply"))
            continue
        if not isinstance(obj, dict):
            problems.append(Problem(shown, n, None, f"line is a JSON {type(obj).__name__}, expected an object"))
            continue
        records.append(_Record(shown, n, obj))
    return records, problems


def _decode_text_file(path: Path) -> tuple[str, list[Problem]]:
    """Decode a whole file; report every line holding invalid UTF-8 (those bytes become U+FFFD)."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "", [Problem(_display(path), None, None, "a UTF-16 file; the corpus must be UTF-8")]
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError:
        pass
    problems = []
    for n, raw in enumerate(data.split(b"\n"), start=1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            problems.append(Problem(_display(path), n, None, f"invalid UTF-8 ({e.reason} at byte {e.start} of the line)"))
    return data.decode("utf-8-sig", errors="replace"), problems


def _read_csv(path: Path, *, header_required: Iterable[str] = REQUIRED_FIELDS) -> tuple[list[_Record], list[Problem]]:
    """Rows of a CSV with a header. Missing/unknown columns are reported once, on line 1."""
    shown = _display(path)
    text, problems = _decode_text_file(path)
    if problems and not text:  # undecodable as a whole (UTF-16): one problem, not also "empty CSV file"
        return [], problems
    bad_lines = {p.line for p in problems}
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        return [], problems + [Problem(shown, 1, None, "empty CSV file (expected a header row)")]
    header = [h.strip() for h in header]
    for name in header_required:
        if name not in header:
            problems.append(Problem(shown, 1, name, "missing required column"))
    for name in header:
        if name not in ALL_FIELDS:
            problems.append(Problem(shown, 1, name, f"unknown column (allowed: {', '.join(ALL_FIELDS)})"))
    header_missing = frozenset(REQUIRED_FIELDS) - set(header)
    records, start = [], reader.line_num + 1
    for values in _csv_rows(reader, shown, problems):
        line, start = start, reader.line_num + 1
        if not any(v.strip() for v in values) or line in bad_lines:
            continue
        if len(values) != len(header):
            problems.append(Problem(shown, line, None, f"row has {len(values)} values, the header has {len(header)}"))
            continue
        row = {h: v for h, v in zip(header, values) if h in ALL_FIELDS}
        records.append(_Record(shown, line, row, header_missing))
    return records, problems


def _csv_rows(reader, shown: str, problems: list[Problem]):
    """The reader's rows; a CSV syntax error (e.g. a field past the size limit) ends the file with a problem."""
    try:
        yield from reader
    except csv.Error as e:
        problems.append(Problem(shown, reader.line_num, None, f"unreadable CSV: {e}"))


def _read_any(path: Path) -> tuple[list[_Record], list[Problem]]:
    return _read_csv(path) if path.suffix.lower() == ".csv" else _read_jsonl(path)


# --------------------------------------------------------------------------- per-row checks


def normalise_text(text: str) -> str:
    """Casefold and collapse whitespace: the key for duplicate-text checks."""
    return " ".join(text.casefold().split())


def _check_enum(row: dict, name: str, allowed: tuple[str, ...], what: str) -> list[tuple[str, str]]:
    value = row.get(name)
    if value in allowed:
        return []
    return [(name, f"unknown {what} {value!r} (expected one of {', '.join(allowed)})")]


def _check_language(value) -> list[tuple[str, str]]:
    if not isinstance(value, str) or not _LANG_RE.fullmatch(value):
        return [("language", f"malformed language code {value!r} (expected a lowercase ISO 639-1 two-letter code)")]
    if value not in ISO639_1:
        return [("language", f"unknown language code {value!r} (not an ISO 639-1 code)")]
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


def check_row(row: dict) -> list[tuple[str, str]]:
    """Every problem of one row as ``(field, message)`` pairs (cross-row checks are separate)."""
    found = [(k, f"unknown field (allowed: {', '.join(ALL_FIELDS)})") for k in row if k not in ALL_FIELDS]
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
        found += _check_language(row["language"])
    if "stance" not in missing:
        found += _check_enum(row, "stance", LABELS, "label")
    if "speaker" not in missing and not isinstance(row["speaker"], str):
        found.append(("speaker", f"speaker must be a string, got {type(row['speaker']).__name__}"))
    if "speaker_group" not in missing:
        found += _check_enum(row, "speaker_group", SPEAKER_GROUPS, "speaker_group")
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
    return found


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
    import numpy as np
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
    errors = [Problem(r.path, r.line, f, m) for r in records for f, m in check_row(r.row)
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
    records, read_problems = [], []
    for f in files:
        recs, probs = _read_any(f)
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
    blank = dict.fromkeys(OPTIONAL_FIELDS, "")
    rows = [{**blank, **{k: v for k, v in row.items() if v is not None or k not in blank}} for row in rows]
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


def _as_set(values) -> set[str] | None:
    if values is None:
        return None
    return {values} if isinstance(values, str) else set(values)


def filter_statements(df: pd.DataFrame, languages=None, exclude_languages=None, speaker_groups=None,
                      exclude_speaker_groups=None, sources=None) -> pd.DataFrame:
    """Keep rows matching every given include list and none of the exclude lists (``None`` = no constraint)."""
    keep = pd.Series(True, index=df.index)
    for column, include, exclude in (("language", languages, exclude_languages),
                                     ("speaker_group", speaker_groups, exclude_speaker_groups),
                                     ("source", sources, None)):
        if (inc := _as_set(include)) is not None:
            keep &= df[column].isin(inc)
        if (exc := _as_set(exclude)) is not None:
            keep &= ~df[column].isin(exc)
    return df[keep].reset_index(drop=True)


def make_splits(df: pd.DataFrame, eval_split: str = "test", holdout_languages=(), holdout_speaker_groups=()) -> dict:
    """Return ``{"train": df, "val": df, "eval": df}``.

    Without holdouts the ``split`` column decides: train = split "train", val = split "val",
    eval = split ``eval_split`` ("test" by default; "val" makes eval the validation rows).

    With holdouts (``holdout_languages`` and/or ``holdout_speaker_groups``): eval = ALL rows whose
    language or speaker_group is held out, whatever their split column says; train and val = the
    remaining rows by their split column. Test-split rows of non-held-out languages/groups are then
    unused, so that eval measures transfer to unseen languages/groups only.

    Raises ``ValueError`` if a holdout value has no rows or any of the three sets is empty.
    """
    if eval_split not in ("val", "test"):
        raise ValueError(f"eval_split must be 'val' or 'test', got {eval_split!r}")
    langs, groups = _as_set(holdout_languages) or set(), _as_set(holdout_speaker_groups) or set()
    for column, values in (("language", langs), ("speaker_group", groups)):
        absent = sorted(values - set(df[column]))
        if absent:
            raise ValueError(f"held-out {column} value(s) {absent} have no rows in the data")
    held = df["language"].isin(langs) | df["speaker_group"].isin(groups)
    rest = df[~held]
    if langs or groups:
        eval_df = df[held]
    else:
        eval_df = df[df["split"] == eval_split]
    out = {"train": rest[rest["split"] == "train"], "val": rest[rest["split"] == "val"], "eval": eval_df}
    for name, part in out.items():
        if part.empty:
            hold = f" (holdout_languages={sorted(langs)}, holdout_speaker_groups={sorted(groups)})" if held.any() else ""
            raise ValueError(f"make_splits: the {name!r} set is empty{hold}; {len(df)} rows in, "
                             f"split counts {df['split'].value_counts().to_dict()}")
    return {name: part.reset_index(drop=True) for name, part in out.items()}


# --------------------------------------------------------------------------- statistics and the dataset card

STATS_START, STATS_END = "<!-- stats:start -->", "<!-- stats:end -->"


def _markdown(table: pd.DataFrame, index_name: str) -> str:
    header = [index_name, *map(str, table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * len(table.columns)) + "|"]
    for idx, row in table.iterrows():
        lines.append("| " + " | ".join([str(idx), *(str(int(v)) for v in row)]) + " |")
    return "\n".join(lines)


def _crosstab(df: pd.DataFrame, column: str) -> pd.DataFrame:
    table = pd.crosstab(df[column], df["stance"])
    table = table.reindex(columns=[c for c in LABELS if c in table.columns] + sorted(set(table.columns) - set(LABELS)),
                          fill_value=0)
    table["total"] = table.sum(axis=1)
    table.loc["**total**"] = table.sum(axis=0)
    return table


def stats_table(df: pd.DataFrame, by=("language", "stance", "speaker_group")) -> str:
    """Markdown count tables: each field of ``by`` (other than stance) x stance, then split x stance and
    source x stance; every table has row and column totals."""
    columns = list(dict.fromkeys([c for c in by if c != "stance"] + ["split", "source"]))
    parts = [f"{len(df)} rows, {df['language'].nunique()} languages, {df['speaker_group'].nunique()} speaker groups."]
    for column in columns:
        parts.append(f"### Rows per {column.replace('_', ' ')} and stance\n\n{_markdown(_crosstab(df, column), column)}")
    return "\n\n".join(parts)


def write_card_stats(card_path, df: pd.DataFrame) -> None:
    """Replace the text between the stats markers of the dataset card with freshly generated tables."""
    card_path = Path(card_path)
    text = card_path.read_text(encoding="utf-8")
    start, end = text.find(STATS_START), text.find(STATS_END)
    if start < 0 or end < start:
        raise DataError(Problem(_display(card_path), None, None, f"needs the markers {STATS_START} ... {STATS_END}"))
    block = f"{STATS_START}\n<!-- generated by `stance data stats --write-card`; do not edit by hand -->\n\n" \
            f"{stats_table(df)}\n\n"
    card_path.write_text(text[:start] + block + text[end:], encoding="utf-8")


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


def import_csv(csv_path, out_jsonl, *, source: str | None = None, defaults: Mapping[str, str] | None = None,
               overwrite: bool = False) -> int:
    """Convert a CSV (header row, columns by name) into schema JSONL; returns the number of rows written.

    ``defaults`` fills fields whose column is absent or whose cell is empty (e.g. ``{"language": "ru"}``);
    ``source`` is the default source. A missing/empty split is computed with ``split_for_id(id)``.
    Rows are validated like the corpus (problems name the CSV line); nothing is written on error.
    """
    fill = {k: v for k, v in (defaults or {}).items() if v is not None}
    if source is not None:
        fill["source"] = source
    unknown = sorted(set(fill) - set(ALL_FIELDS))
    if unknown:
        raise ValueError(f"unknown default field(s) {unknown} (allowed: {', '.join(ALL_FIELDS)})")
    required = [f for f in REQUIRED_FIELDS if f not in fill and f != "split"]
    records, problems = _read_csv(Path(csv_path), header_required=required)
    filled = [_Record(r.path, r.line, _fill_row(r.row, fill), r.header_missing - {"split"}) for r in records]
    errors, _ = _check_records(filled, near_duplicates=False)
    hint = " (add a source column or pass --source)"
    problems = [Problem(p.path, p.line, p.field, p.message + hint) if p.field == "source" and "missing" in p.message
                else p for p in problems + errors]
    if problems:
        raise DataError(_sorted(problems))
    _write_jsonl([r.row for r in filled], out_jsonl, overwrite)
    return len(filled)


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
    "arabic": "ar", "english": "en", "french": "fr", "german": "de", "hindi": "hi", "italian": "it",
    "portuguese": "pt", "spanish": "es", "russian": "ru", "ukrainian": "uk", "turkish": "tr",
    "azerbaijani": "az", "persian": "fa", "farsi": "fa", "chinese": "zh", "japanese": "ja", "korean": "ko",
    "dutch": "nl", "polish": "pl", "armenian": "hy", "georgian": "ka", "hebrew": "he",
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
        raise DataError(Problem(_display(folder), None, "language",
                                f"cannot tell the language from the folder name {folder.name!r}; pass language="))
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
            raise DataError(Problem(_display(mapping), None, None,
                                    f"classes {names} are not negative/neutral/positive; pass label_map="))
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
            raise DataError(Problem(_display(text_path), None, None,
                                    f"has {len(texts)} lines but {_display(label_path)} has {len(labels)}; "
                                    "texts and labels must align line by line"))
        problems = []
        for n, (text, label) in enumerate(zip(texts, labels), start=1):
            label = label.strip()
            if label not in label_map:
                problems.append(Problem(_display(label_path), n, "stance",
                                        f"label {label!r} not in the label map ({', '.join(label_map)})"))
                continue
            row = {"id": f"{prefix}-{language}-{split}-{n:06d}", "text": decode_unicode_escapes(text).strip(),
                   "language": language, "stance": label_map[label], "speaker": "unknown", "speaker_group": "other",
                   "source": "imported", "date": "", "split": split, "register": "tweet",
                   "notes": f"{prefix} {split} line {n}, original label {label}"}
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
            raise DataError(Problem(_display(folder), None, "language", "'all' mixes languages; import the parent "
                                                                        "folder (one language per subfolder) instead"))
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
