"""Labeled statements: reading, validating, splitting, summarising and importing.

The corpus lives in ``labeled/*.jsonl`` (one JSON object per line, fields from ``train.schema``). Everything that
reads the corpus goes through :func:`validate` / :func:`load_statements`, so a broken row is reported once, with its
file and line, instead of surfacing later as a training bug.

Modules: ``problems`` (Problem, DataError, ValidationReport), ``readers`` (JSONL / CSV files), ``validation`` (row and
cross-row checks, ``validate``, ``load_statements``), ``splits`` (filters, train/val/eval with hold-outs), ``stats``
(count tables, the dataset card), ``importers`` (CSV with column mapping, TweetEval), ``selection`` (the rows a run
trains and is scored on), ``codebook`` (a study's speaker groups and languages, from codebook.yaml in its folder).
"""

from train.data.codebook import CODEBOOK_FILE, DEFAULT_CODEBOOK, Codebook, codebook_for, load_codebook
from train.data.importers import (
    LANGUAGE_NAMES,
    MAP_TARGETS,
    SENTIMENT_LABEL_MAP,
    ImportSummary,
    decode_unicode_escapes,
    import_csv,
    import_tweeteval,
    parse_mapping,
    read_tweeteval,
)
from train.data.problems import DataError, Problem, ValidationReport, did_you_mean, summarize
from train.data.readers import ALL_FIELDS, corpus_files
from train.data.selection import (
    SelectionError,
    calibration_rows,
    check_apart,
    check_calibration_labels,
    eval_set_name,
    load_eval_files,
    prepare_data,
    read_eval_files,
    subsample,
)
from train.data.splits import filter_statements, make_splits
from train.data.stats import STATS_END, STATS_START, stats_table, write_card_stats
from train.data.validation import (
    ISO639_1,
    NEAR_DUPLICATE_THRESHOLD,
    check_row,
    load_statements,
    near_duplicate_pairs,
    normalise_text,
    validate,
)
from train.runtime import DEFAULT_LABELED_DIR

__all__ = [
    "ALL_FIELDS",
    "CODEBOOK_FILE",
    "DEFAULT_CODEBOOK",
    "MAP_TARGETS",
    "Codebook",
    "ImportSummary",
    "codebook_for",
    "did_you_mean",
    "load_codebook",
    "parse_mapping",
    "summarize",
    "DEFAULT_LABELED_DIR",
    "ISO639_1",
    "LANGUAGE_NAMES",
    "NEAR_DUPLICATE_THRESHOLD",
    "SENTIMENT_LABEL_MAP",
    "STATS_END",
    "STATS_START",
    "DataError",
    "Problem",
    "SelectionError",
    "ValidationReport",
    "check_row",
    "corpus_files",
    "decode_unicode_escapes",
    "filter_statements",
    "import_csv",
    "import_tweeteval",
    "load_eval_files",
    "load_statements",
    "make_splits",
    "prepare_data",
    "calibration_rows",
    "check_apart",
    "check_calibration_labels",
    "eval_set_name",
    "read_eval_files",
    "subsample",
    "near_duplicate_pairs",
    "normalise_text",
    "read_tweeteval",
    "stats_table",
    "validate",
    "write_card_stats",
]
