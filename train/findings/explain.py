"""Which words pushed a prediction toward each class: for auditing individual labels, not for findings.

Transformers: Captum's layer integrated gradients on the input word embeddings, one attribution per class toward
that class's probability, from a baseline where every word token is [PAD] (special tokens and positions kept); the
sub-word attributions are summed per word. Completeness holds up to the integration error: a class's word
attributions sum to p(class | text) - p(class | baseline), and `delta` reports the gap.

The TF-IDF baseline is linear, so its explanation is exact: each n-gram feature adds tfidf(f) * (w[c, f] - mean_k
w[k, f]) to class c's centred logit (the softmax ignores what all classes share); a char_wb or word n-gram belongs
to one word and is credited to the words that contain it, in proportion to their counts. Words' contributions plus
the centred intercept sum exactly to the centred logits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


@dataclass
class Explanation:
    text: str
    labels: list[str]
    proba: np.ndarray  # the model's probabilities for the text
    words: list[str]
    scores: np.ndarray  # words x classes: positive pushes toward the class
    target: str  # what the scores add up to ("probability" or "centred logit")
    rest: np.ndarray  # per class, what the words do not account for (baseline output or intercept)
    delta: float = 0.0  # integrated gradients' completeness gap (0 for the exact linear case)

    def top(self, label: str, k: int = 5) -> list[tuple[str, float]]:
        c = self.labels.index(label)
        order = np.argsort(-self.scores[:, c], kind="stable")[:k]
        return [(self.words[i], float(self.scores[i, c])) for i in order if self.scores[i, c] > 0]


def explain(model, text: str, n_steps: int = 50) -> Explanation:
    """An Explanation for `text` from a loaded stance model (TransformerStance or BaselineStance)."""
    if getattr(model, "kind", "") == "baseline" or hasattr(model, "pipeline"):
        return _explain_linear(model, text)
    return _explain_transformer(model, text, n_steps)


def _explain_linear(model, text: str) -> Explanation:
    from scipy import sparse

    tfidf, clf = model.pipeline.named_steps["tfidf"], model.pipeline.named_steps["clf"]
    x = sparse.csr_matrix(tfidf.transform([text]))
    k = len(model.labels)
    coef = np.zeros((k, clf.coef_.shape[1]))
    intercept = np.zeros(k)
    coef[clf.classes_], intercept[clf.classes_] = clf.coef_, clf.intercept_
    coef -= coef.mean(0, keepdims=True)
    intercept -= intercept.mean()
    per_feature = {int(f): x[0, f] * coef[:, f] for f in x.indices}  # feature -> contribution to each class
    analyzer, vocab = tfidf.build_analyzer(), tfidf.vocabulary_
    words = text.split()
    counts = [{} for _ in words]
    for i, w in enumerate(words):
        for g in analyzer(w):
            f = vocab.get(g)
            if f is not None and f in per_feature:
                counts[i][f] = counts[i].get(f, 0) + 1
    totals: dict[int, int] = {}
    for c in counts:
        for f, m in c.items():
            totals[f] = totals.get(f, 0) + m
    scores = np.zeros((len(words), k))
    for i, c in enumerate(counts):
        for f, m in c.items():
            scores[i] += per_feature[f] * m / totals[f]
    # n-grams that span words (analyzer="char") are not any one word's: they stay in `rest` with the intercept
    unassigned = sum((v for f, v in per_feature.items() if f not in totals), np.zeros(k))
    proba = model.predict_proba([text])[0]
    return Explanation(text, list(model.labels), proba, words, scores, "centred logit", intercept + unassigned)


def _explain_transformer(model, text: str, n_steps: int) -> Explanation:
    import torch
    from captum.attr import LayerIntegratedGradients

    module = model.module.eval().float()
    tok = model.tokenizer
    prefix = model.text_prefix or ""
    enc = tok(prefix + text, truncation=True, max_length=model.max_length, return_tensors="pt", return_offsets_mapping=True)
    device = next(module.parameters()).device
    ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    offsets = enc["offset_mapping"][0].tolist()
    special = set(tok.all_special_ids)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    base = ids.clone()
    for j, t in enumerate(ids[0].tolist()):
        if t not in special:
            base[0, j] = pad

    def forward(input_ids, attention_mask):
        return torch.softmax(module(input_ids=input_ids, attention_mask=attention_mask)["logits"].float(), -1)

    lig = LayerIntegratedGradients(forward, module.backbone.get_input_embeddings())
    k = len(model.labels)
    per_token = np.zeros((ids.shape[1], k))
    deltas = []
    for c in range(k):
        attr, delta = lig.attribute(
            ids, baselines=base, additional_forward_args=(mask,), target=c, n_steps=n_steps, return_convergence_delta=True
        )
        per_token[:, c] = attr.sum(-1)[0].detach().cpu().numpy()
        deltas.append(abs(float(delta[0])))
    with torch.no_grad():
        proba = forward(ids, mask)[0].cpu().numpy()
        base_proba = forward(base, mask)[0].cpu().numpy()
    # tokens -> words of the text (by character offsets; the prefix, e.g. "query: ", and special tokens are not words)
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    words = [text[a:b] for a, b in spans]
    scores = np.zeros((len(words), k))
    rest = base_proba.astype(np.float64).copy()
    for j, (a, b) in enumerate(offsets):
        a, b = a - len(prefix), b - len(prefix)
        w = next((i for i, (s, e) in enumerate(spans) if s <= a < e), None) if b > a >= 0 else None
        if w is None:
            rest += per_token[j]  # special tokens are kept in the baseline, so their attribution is ~0
        else:
            scores[w] += per_token[j]
    return Explanation(text, list(model.labels), proba, words, scores, "probability", rest, max(deltas))


def format_explanation(e: Explanation, k: int = 5) -> str:
    """Plain text for the terminal: probabilities, then the words pushing toward each class, strongest first."""
    pred = e.labels[int(np.argmax(e.proba))]
    lines = [f"text: {e.text}", f"predicted: {pred} (" + ", ".join(f"{l} {p:.2f}" for l, p in zip(e.labels, e.proba)) + ")"]
    for c, label in enumerate(e.labels):
        top = ", ".join(f"{w} {s:+.3f}" for w, s in e.top(label, k)) or "(none)"
        # integrated gradients explain the move from the all-[PAD] input's probability to the text's
        unit = f"probability points from {e.rest[c]:.2f} without the words" if e.target == "probability" else "logit (centred)"
        lines.append(f"  toward {label} [{unit}]: {top}")
    if e.target == "probability":
        lines.append(f"  integrated-gradients completeness gap: {e.delta:.4f}")
    return "\n".join(lines) + "\n"
