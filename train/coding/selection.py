"""Active learning: which statements of a pool to label next (`stance select`).

Uncertainty alone picks near-copies: the statements a model hesitates on cluster (one topic, one language, one
speaker), and labeling twenty of them teaches little more than labeling three. So the uncertainty strategy takes the
most uncertain candidates (a few times n), clusters them on the model's sentence embeddings (k-means), and picks
round-robin across clusters; inside a cluster it prefers a language and then a speaker that has fewest picks so far,
then the most uncertain. Uncertainty is the margin between the two most probable labels (1 - (p1 - p2)) or the
normalised entropy.

`random` is a simple random sample (seeded) of the eligible rows: the unbiased evaluation sample that
`stance analyze --validation` needs; an actively chosen sample over-represents hard cases and must never be used to
estimate accuracy or label shares.

Rows already labeled never come back: an exclusion file (annotations, the labeled corpus, an earlier selection)
removes its ids and its normalised texts (train.data.normalise_text), and a pool's own duplicate texts are offered
once.
"""

from __future__ import annotations

import math

import numpy as np

from train.data import normalise_text
from train.schema import LABELS

STRATEGIES = ("uncertainty", "random")
MEASURES = ("margin", "entropy")
PROB_COLUMNS = [f"prob_{label}" for label in LABELS]


def uncertainty(proba: np.ndarray, measure: str = "margin") -> np.ndarray:
    """Per row, in [0, 1], higher = less sure: 1 - (p1 - p2) for the margin, entropy / log(K) for the entropy."""
    proba = np.asarray(proba, dtype=np.float64)
    if measure == "margin":
        top = np.sort(proba, axis=1)[:, ::-1]
        return 1.0 - (top[:, 0] - top[:, 1])
    if measure == "entropy":
        p = np.clip(proba, 1e-12, 1.0)
        return -(p * np.log(p)).sum(1) / math.log(proba.shape[1])
    raise ValueError(f"unknown uncertainty measure {measure!r} (expected one of {', '.join(MEASURES)})")


def score_pool(model, texts: list[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray | None]:
    """The model's probabilities and a sentence embedding per text, in one pass where the model allows.

    Transformer (mean or cls pooling, torch backend): the pooled encoder output that feeds the head is the embedding,
    and the head on it gives the probabilities (then the model's temperature and prior shift, as predict_proba).
    Baseline: its TF-IDF vectors reduced by TruncatedSVD to 64 dimensions. Otherwise (the `auto` head, ONNX): only
    the probabilities; the caller then spreads picks by language and speaker alone."""
    texts = list(texts)
    if hasattr(model, "pipeline"):  # the TF-IDF baseline
        from sklearn.decomposition import TruncatedSVD
        from sklearn.preprocessing import normalize

        proba = model.predict_proba(texts)
        x = model.pipeline.named_steps["tfidf"].transform(texts)
        dims = min(64, x.shape[1] - 1, len(texts) - 1)
        emb = TruncatedSVD(n_components=dims, random_state=0).fit_transform(x) if dims >= 2 else x.toarray()
        return proba, normalize(emb)
    if getattr(model, "pooling", None) not in ("mean", "cls") or getattr(model, "runner", None) is not None:
        return model.predict_proba(texts, batch_size=batch_size), None
    import torch

    module = model.module.eval()
    device = next(module.parameters()).device
    probs, embs = [], []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = model.tokenize(texts[start : start + batch_size], padding=True)
            ids = torch.as_tensor(enc["input_ids"], device=device)
            mask = torch.as_tensor(enc["attention_mask"], device=device)
            hidden = module.backbone(input_ids=ids, attention_mask=mask).last_hidden_state.float()
            if model.pooling == "mean":
                m = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
            else:
                pooled = hidden[:, 0]
            probs.append(torch.softmax(module.head(pooled.to(module.head.weight.dtype)).float(), -1).cpu().numpy())
            embs.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
    if not texts:
        return np.zeros((0, len(model.labels)), np.float32), np.zeros((0, 1), np.float32)
    proba = model.adjust(np.concatenate(probs))  # what predict_proba gives: calibration and prior as the model has them
    return proba, np.concatenate(embs)


def eligible_rows(rows: list[dict], exclude_ids: set[str], exclude_texts: set[str]) -> tuple[list[int], dict[str, int]]:
    """Indices of pool rows that may be offered (not excluded by id or normalised text, first of duplicate texts), and
    how many were left out for which reason."""
    keep, seen, dropped = (
        [],
        set(),
        {"already labeled (id)": 0, "already labeled (text)": 0, "duplicate text in pool": 0, "no text": 0},
    )
    for i, row in enumerate(rows):
        key = normalise_text(str(row.get("text") or ""))
        if not key:  # nothing to read, nothing to label
            dropped["no text"] += 1
        elif str(row["id"]) in exclude_ids:
            dropped["already labeled (id)"] += 1
        elif key in exclude_texts:
            dropped["already labeled (text)"] += 1
        elif key in seen:
            dropped["duplicate text in pool"] += 1
        else:
            keep.append(i)
        seen.add(key)
    return keep, dropped


def select(
    rows: list[dict],
    n: int,
    strategy: str = "uncertainty",
    proba: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
    seed: int = 0,
    measure: str = "margin",
    candidates: int = 3,
    exclude_ids: set[str] = frozenset(),
    exclude_texts: set[str] = frozenset(),
) -> list[dict]:
    """Pick up to n rows of the pool; returns one dict per pick, in the order to present: `index` (into rows),
    `rank`, `reason`, `uncertainty` (None without probabilities), `cluster` (None without embeddings).

    rows: dicts with `id`, `text` and optionally `language` and `speaker` (or `speaker_group`); proba: the model's
    probabilities per row (NaN rows are skipped: bad rows of a predict output); embeddings: one vector per row."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r} (expected one of {', '.join(STRATEGIES)})")
    pool, _ = eligible_rows(rows, set(map(str, exclude_ids)), set(exclude_texts))
    unc = None
    if proba is not None:
        proba = np.asarray(proba, dtype=np.float64)
        ok = ~np.isnan(proba).any(1)
        unc = np.full(len(rows), np.nan)
        unc[ok] = uncertainty(proba[ok], measure)
    if strategy == "random":
        rng = np.random.default_rng(seed)
        picks = [pool[i] for i in rng.permutation(len(pool))[:n]]
        return [_pick(i, r, f"random sample (seed {seed})", unc, None) for r, i in enumerate(picks, 1)]
    if unc is None:
        raise ValueError("the uncertainty strategy needs the model's probabilities (a --model, or a pool with prob_* columns)")
    pool = [i for i in pool if not np.isnan(unc[i])]
    pool.sort(key=lambda i: -unc[i])  # stable: ties keep the pool's order
    cand = pool[: max(n, candidates * n)]
    clusters = _clusters(cand, embeddings, n, seed)
    return _round_robin(rows, cand, clusters, unc, n, measure)


def _clusters(cand: list[int], embeddings, n: int, seed: int) -> dict[int, int] | None:
    """k-means on the candidates' embeddings, about four picks per cluster (None without embeddings)."""
    if embeddings is None or len(cand) < 2:
        return None
    from sklearn.cluster import KMeans

    x = np.asarray(embeddings, dtype=np.float64)[cand]
    k = min(len(cand), max(2, math.ceil(n / 4)))
    labels = KMeans(n_clusters=k, random_state=seed, n_init=4).fit_predict(x)
    return {i: int(c) for i, c in zip(cand, labels)}


def _round_robin(rows, cand, clusters, unc, n, measure) -> list[dict]:
    """One pick per cluster in turn (clusters ordered by their most uncertain member); inside a cluster the row whose
    language, then speaker, has fewest picks so far, then the most uncertain."""
    groups: dict[int, list[int]] = {}
    for i in cand:  # cand is sorted by uncertainty, so each group is too
        groups.setdefault(clusters[i] if clusters else 0, []).append(i)
    order = list(groups)  # first appearance = the cluster's most uncertain member
    lang_n: dict[str, int] = {}
    speaker_n: dict[str, int] = {}
    out = []
    while len(out) < n and any(groups.values()):
        for c in order:
            if len(out) >= n or not groups[c]:
                continue
            i = min(groups[c], key=lambda j: (lang_n.get(_lang(rows[j]), 0), speaker_n.get(_speaker(rows[j]), 0), -unc[j]))
            groups[c].remove(i)
            lang_n[_lang(rows[i])] = lang_n.get(_lang(rows[i]), 0) + 1
            speaker_n[_speaker(rows[i])] = speaker_n.get(_speaker(rows[i]), 0) + 1
            where = f"cluster {c}, " if clusters else ""
            reason = f"uncertain ({measure} uncertainty {unc[i]:.2f}; {where}language {_lang(rows[i]) or '?'})"
            out.append(_pick(i, len(out) + 1, reason, unc, c if clusters else None))
    return out


def _lang(row: dict) -> str:
    return str(row.get("language") or row.get("detected_language") or "")


def _speaker(row: dict) -> str:
    return str(row.get("speaker") or row.get("speaker_group") or "")


def _pick(i: int, rank: int, reason: str, unc, cluster) -> dict:
    u = None if unc is None or np.isnan(unc[i]) else round(float(unc[i]), 4)
    return {"index": i, "rank": rank, "reason": reason, "uncertainty": u, "cluster": cluster}
