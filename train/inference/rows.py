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
PROB_DECIMALS = 6  # CSV / JSONL output: 6 decimals (error <= 5e-7, far below the 1e-5 train = serve tolerance); Parquet exact


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


LONG_TEXT_MODES = ("truncate", "window", "sentences")
SENTENCE_END = re.compile(r"(?<=[.!?…。؟])\s+")
SCORE_SLICE = 4  # rows are scored batch_size * SCORE_SLICE at a time, so that progress can be told by the batch


def _token_lengths(model, texts: dict[int, str]) -> dict[int, int]:
    """Token counts (prefix and special tokens included, as the model sees them) of the values that may exceed the
    model's max_length. Only values long enough to possibly exceed it are tokenized again (a subword token covers at
    least half a character), so ordinary rows cost nothing extra. {} for a model without a tokenizer (the baseline)."""
    tokenizer, max_length = getattr(model, "tokenizer", None), getattr(model, "max_length", None)
    if tokenizer is None or not max_length:
        return {}
    long = {i: t for i, t in texts.items() if 2 * len(t) + 2 > max_length}
    if not long:
        return {}
    prefix = getattr(model, "text_prefix", "") or ""
    ids = tokenizer([prefix + t for t in long.values()], truncation=False)["input_ids"]
    return {i: len(x) for i, x in zip(long, ids) if len(x) > max_length}


def _windows(model, text: str, budget: int) -> list[tuple[str, int]]:
    """Overlapping spans of `budget` tokens (stride budget/2) as (text slice, tokens), cut at token offsets."""
    offsets = model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    out, step = [], max(1, budget // 2)
    for start in range(0, len(offsets), step):
        end = min(start + budget, len(offsets))
        out.append((text[offsets[start][0] : offsets[end - 1][1]], end - start))
        if end == len(offsets):
            break
    return out


def _sentence_groups(model, text: str, budget: int) -> list[tuple[str, int]]:
    """Consecutive sentences grouped up to `budget` tokens; a sentence longer than that is split into windows."""
    out, group, size = [], [], 0
    for sentence in (x for x in SENTENCE_END.split(text) if x.strip()):
        n = len(model.tokenizer(sentence, add_special_tokens=False)["input_ids"])
        if group and size + n > budget:
            out.append((" ".join(group), size))
            group, size = [], 0
        if n > budget:
            out += _windows(model, sentence, budget)
        else:
            group, size = group + [sentence], size + n
    if group:
        out.append((" ".join(group), size))
    return out


def _pieces(model, text: str, mode: str) -> list[tuple[str, int]]:
    """A long text as pieces that each fit the model (window or sentences mode), with their token counts."""
    prefix = getattr(model, "text_prefix", "") or ""
    overhead = len(model.tokenizer(prefix)["input_ids"])  # the prefix and the special tokens every piece gets
    budget = max(8, model.max_length - overhead - 2)  # 2: a piece may tokenize a little longer than its slice did
    return _sentence_groups(model, text, budget) if mode == "sentences" else _windows(model, text, budget)


def predict_values(
    model,
    values,
    batch_size: int = 64,
    errors: list | None = None,
    max_chars: int = MAX_CHARS,
    long_text: str = "truncate",
    on_scored=None,
    flag_truncated: bool = False,
):
    """Prediction frame (OUTPUT_COLUMNS, and with `flag_truncated` a boolean `truncated` column: `stance predict`'s
    output) for raw cell values, one row per value in order.

    `errors` carries problems found while reading (e.g. an unparsable JSON line). Bad rows get empty predictions and
    the reason in pred_error; they never raise and are never dropped. Texts longer than the model's max_length:
    `long_text="truncate"` scores their first max_length tokens and sets `truncated` (and a text over
    MAX_TOKENS_FACTOR x max_length is refused as "text too long", not a statement); "window" scores overlapping
    windows and "sentences" groups of whole sentences, each fitting the model, and averages their probabilities
    weighted by token count (docs/long-texts.md). `on_scored(rows)` is called as rows are scored (progress).
    """
    if long_text not in LONG_TEXT_MODES:
        raise InferenceError(f"--long-text: {long_text!r} is not one of {', '.join(LONG_TEXT_MODES)}")
    values = list(values)
    problems = list(errors) if errors is not None else [None] * len(values)
    for i, v in enumerate(values):
        if problems[i] is None:
            problems[i] = row_problem(v, max_chars)
    good = {i: values[i] for i, p in enumerate(problems) if p is None}
    lengths = _token_lengths(model, good)
    truncated = np.zeros(len(values), dtype=bool)
    jobs: list[tuple[int, str, int]] = []  # (row, text scored, weight)
    for i, text in good.items():
        n = lengths.get(i)
        if n is None:
            jobs.append((i, text, 1))
        elif long_text != "truncate":
            jobs += [(i, piece, k) for piece, k in _pieces(model, text, long_text)]
        elif n > MAX_TOKENS_FACTOR * model.max_length:
            problems[i] = (
                f"text too long ({n} tokens > {MAX_TOKENS_FACTOR}x max_length {model.max_length}; --long-text window scores it)"
            )
        else:
            truncated[i] = True
            jobs.append((i, text, 1))
    scored = _score(model, [t for _, t, _ in jobs], batch_size, on_scored)
    proba = np.full((len(values), len(model.labels)), np.nan, dtype=np.float32)
    total = np.zeros((len(values), len(model.labels)), dtype=np.float64)
    weight = np.zeros(len(values), dtype=np.float64)
    for (i, _, w), (p, error) in zip(jobs, scored):
        if error:
            problems[i] = error
        else:
            total[i] += w * p
            weight[i] += w
    for i in {i for i, _, _ in jobs}:
        if problems[i] is None:
            proba[i] = total[i] / weight[i]
    out = output_frame(proba, model.labels, problems)
    if flag_truncated:
        out["truncated"] = truncated
    return out


def _score(model, texts: list[str], batch_size: int, on_scored=None) -> list[tuple[np.ndarray | None, str | None]]:
    """(probabilities, None) or (None, error) per text, scored in slices of batch_size * SCORE_SLICE rows."""
    out: list = []
    step = batch_size * SCORE_SLICE
    for start in range(0, len(texts), step):
        part = texts[start : start + step]
        try:
            out += [(p, None) for p in model.predict_proba(part, batch_size=batch_size)]
        except Exception:  # noqa: BLE001 - one poisonous row must not sink its slice: retry row by row
            for text in part:
                try:
                    out.append((model.predict_proba([text], batch_size=1)[0], None))
                except Exception as e:  # noqa: BLE001
                    out.append((None, f"model error: {type(e).__name__}: {e}"[:500]))
        if on_scored is not None:
            on_scored(len(part))
    return out


# -- language detection ------------------------------------------------------------------------------------------------

_DETECTORS: dict = {}
MIN_LETTERS = 8  # fewer letters (a URL, a mention, "ok", emoji) say nothing reliable about the language
MIN_CONFIDENCE = 0.25  # lingua's relative confidence of the best language below this (a guess among many): unknown (None)
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
