"""Rows -> predictions: the one function (`predict_values`) that turns raw cell values into the prediction columns,
bad rows included. The CLI, the pyfunc, the model server and the Spark UDF all go through it, so they agree row for
row. Also language detection (lingua). What is kept with a reason and what is refused: docs/input-contract.md.
"""

from __future__ import annotations

import math
import re
import unicodedata

import numpy as np

from train.schema import LABELS

PRED_COLUMNS = ["pred_stance", "pred_confidence"] + [f"prob_{name}" for name in LABELS]
OUTPUT_COLUMNS = PRED_COLUMNS + ["pred_error"]


def output_frame(proba: np.ndarray, labels=LABELS, errors=None):
    """OUTPUT_COLUMNS for a probability matrix. Rows holding NaN (bad rows) get empty predictions; `errors` gives
    each row's reason ("" / None when the row is fine)."""
    import pandas as pd

    proba = np.asarray(proba, dtype=np.float64).reshape(-1, len(labels))
    ok = ~np.isnan(proba).any(1)
    best = np.where(ok, np.nan_to_num(proba, nan=-1.0).argmax(1), 0)
    out = pd.DataFrame(
        {
            "pred_stance": pd.Series([labels[i] if good else None for i, good in zip(best, ok)], dtype=object),
            "pred_confidence": np.where(ok, np.nan_to_num(proba, nan=0.0).max(1), np.nan),
        }
    )
    for i, name in enumerate(labels):
        out[f"prob_{name}"] = proba[:, i]
    errors = [""] * len(proba) if errors is None else ["" if e is None else str(e) for e in errors]
    out["pred_error"] = pd.Series(errors, dtype=object)
    return out


MAX_CHARS = 20000  # longer values are not statements (whole articles, dumps) and would only be truncated
MAX_TOKENS_FACTOR = 4  # ... nor are values tokenizing to more than 4x the model's max_length
DETECT_LANGUAGES = (
    "en",
    "ru",
    "tr",
    "az",
    "uk",
    "de",
    "fr",
    "es",
    "pl",
    "ka",
    "kk",
    "ar",
    "fa",
    "hy",
    "it",
    "pt",
    "be",
    "zh",
)  # labeled/ languages lingua knows (not uz)
RUN_COLUMNS = ["detected_language", "model_uri", "model_version"]


class InferenceError(Exception):
    """A problem with the user's input or options, reported before any work is done (exit code 2)."""


# -- rows -> predictions ---------------------------------------------------------------------------------------------


def row_problem(value, max_chars: int = MAX_CHARS) -> str | None:
    """Why a cell cannot be classified, or None when it is a usable statement."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ in ("NAType", "NaTType"):
        return "missing text"
    if not isinstance(value, str):
        return f"not text ({type(value).__name__})"
    if not value.strip():
        return "empty text"
    if len(value) > max_chars:
        return f"text too long ({len(value)} chars > {max_chars})"
    if not any(ch.isalpha() or unicodedata.category(ch) == "So" for ch in value):
        return "no letters (not a statement)"  # digits/punctuation only; emoji-only posts do carry stance
    return None


def _token_problems(model, texts: dict[int, str]) -> dict[int, str]:
    """Values tokenizing far past the model's max_length. Only values long enough to possibly exceed the limit are
    tokenized again (a subword token covers at least half a character), so ordinary rows cost nothing extra."""
    tokenizer, max_length = getattr(model, "tokenizer", None), getattr(model, "max_length", None)
    if tokenizer is None or not max_length:
        return {}
    limit = MAX_TOKENS_FACTOR * max_length
    long = {i: t for i, t in texts.items() if 2 * len(t) + 2 > limit}
    if not long:
        return {}
    lengths = [len(ids) for ids in tokenizer(list(long.values()), truncation=False)["input_ids"]]
    return {
        i: f"text too long ({n} tokens > {MAX_TOKENS_FACTOR}x max_length {max_length})"
        for i, n in zip(long, lengths)
        if n > limit
    }


def predict_values(model, values, batch_size: int = 64, errors: list | None = None, max_chars: int = MAX_CHARS):
    """Prediction frame (PRED_COLUMNS + pred_error) for raw cell values, one row per value in the same order.

    `errors` carries problems found while reading (e.g. an unparsable JSON line). Bad rows get empty predictions and
    the reason in pred_error; they never raise and are never dropped.
    """
    values = list(values)
    problems = list(errors) if errors is not None else [None] * len(values)
    for i, v in enumerate(values):
        if problems[i] is None:
            problems[i] = row_problem(v, max_chars)
    good = {i: values[i] for i, p in enumerate(problems) if p is None}
    for i, reason in _token_problems(model, good).items():
        problems[i] = reason
        del good[i]
    proba = np.full((len(values), len(model.labels)), np.nan, dtype=np.float32)
    if good:
        idx = list(good)
        try:
            proba[idx] = model.predict_proba([good[i] for i in idx], batch_size=batch_size)
        except Exception:  # noqa: BLE001 - one poisonous row must not sink its chunk: retry row by row
            for i in idx:
                try:
                    proba[i] = model.predict_proba([good[i]], batch_size=1)[0]
                except Exception as e:  # noqa: BLE001
                    problems[i] = f"model error: {type(e).__name__}: {e}"[:500]
    return output_frame(proba, model.labels, problems)


# -- language detection ------------------------------------------------------------------------------------------------

_DETECTORS: dict = {}
MIN_LETTERS = 8  # fewer letters (a URL, a mention, "ok", emoji) say nothing reliable about the language
MIN_CONFIDENCE = 0.6  # lingua's relative confidence of the best language below this: reported as unknown (None)
NOT_LANGUAGE = re.compile(r"https?://\S+|www\.\S+|[@#]\w+|\S+@\S+\.\S+")  # URLs, @mentions, #tags, e-mails
# A language written in the script of a larger neighbour is only taken when the text has its own letters: lingua read
# 11 of 333 Ukrainian posts as Kazakh (both use і), and Turkish as Azerbaijani, without a single ә/қ/ң or ə.
MARKER_LETTERS = {"kk": set("әғқңөұүһӘҒҚҢӨҰҮҺ"), "az": set("əƏ")}


def _language_text(value) -> str | None:
    """The part of a value that can tell its language (URLs, mentions and hashtags removed); None when too little."""
    if not isinstance(value, str) or len(value) > MAX_CHARS:
        return None
    text = NOT_LANGUAGE.sub(" ", value)
    return text if sum(ch.isalpha() for ch in text) >= MIN_LETTERS else None


def _detector(without: frozenset = frozenset()):
    """lingua's detector over DETECT_LANGUAGES less `without`, built once per set (models load lazily, per script)."""
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    if without not in _DETECTORS:
        codes = [getattr(IsoCode639_1, c.upper()) for c in DETECT_LANGUAGES if c not in without]
        _DETECTORS[without] = LanguageDetectorBuilder.from_iso_codes_639_1(*codes).build()
    return _DETECTORS[without]


def _best(scores) -> tuple[str | None, float]:
    total = sum(c.value for c in scores)
    return (scores[0].language.iso_code_639_1.name.lower(), scores[0].value / total) if scores and total > 0 else (None, 0.0)


def detect_languages(values) -> list[str | None]:
    """ISO 639-1 codes from lingua, restricted to the languages this project meets and to what the text supports;
    None (unknown) for non-text, too few letters once URLs, mentions and hashtags are removed, or a best confidence
    under MIN_CONFIDENCE. A language of MARKER_LETTERS is a candidate only for a text that has its own letters (such a
    text is detected again without it). Uses lingua's multi-threaded batch API."""
    texts = [_language_text(v) for v in values]
    out: list[str | None] = [None] * len(texts)
    pending = {i: frozenset() for i, t in enumerate(texts) if t is not None}
    while pending:
        without = next(iter(pending.values()))
        idx = [i for i, w in pending.items() if w == without]
        for i, scores in zip(idx, _detector(without).compute_language_confidence_values_in_parallel([texts[i] for i in idx])):
            del pending[i]
            code, confidence = _best(scores)
            if code in MARKER_LETTERS and not set(texts[i]) & MARKER_LETTERS[code]:
                pending[i] = without | {code}  # not this language: ask again without it
            elif confidence >= MIN_CONFIDENCE:
                out[i] = code
    return out
