"""Inter-annotator agreement (`stance agreement`): how far human coders agree, and whether the model codes like one.

Annotations come in long form, one row per statement and annotator (`id, annotator, stance`; optional `text`,
`language`, `borderline`, `note`, `time`), from any number of CSV / JSONL files. Figures:

- Krippendorff's alpha (the `krippendorff` package), nominal and ordinal (conciliatory < neutral < hostile: a
  hostile-vs-conciliatory disagreement counts more than hostile-vs-neutral); works with any number of coders and
  missing labels.
- Cohen's kappa per pair of annotators on the statements both labeled (scikit-learn).
- Per language (alpha) and per label (one-vs-rest alpha: "is it hostile or not").
- 95% intervals by the bootstrap over statements (the unit that was sampled), percentile method.
- The model beside the humans on the same scale: kappa and alpha of the model against the reference labels
  (adjudicated, or else the strict majority), the model against each annotator next to annotator against
  annotator, and alpha with the model joining the humans as one more coder. If the model's figures sit inside the
  humans' range it labels like a human coder; if below, by how much.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from train.coding.records import read_records
from train.data import DataError, Problem
from train.schema import LABELS

MODEL = "model"


@dataclass
class Annotations:
    labels: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> annotator -> stance
    texts: dict[str, str] = field(default_factory=dict)
    languages: dict[str, str] = field(default_factory=dict)

    @property
    def annotators(self) -> list[str]:
        return sorted({a for by in self.labels.values() for a in by})


def read_annotations(paths: list[Path]) -> Annotations:
    """Long-form annotation files -> Annotations. Every problem (missing column, empty id or annotator, unknown
    label, the same statement twice from one annotator) is collected with file, line and field, then raised."""
    ann, problems, where = Annotations(), [], {}
    for path in paths:
        records = read_records(path)
        if not records:
            problems.append(Problem(str(path), None, None, "no annotation rows"))
        for line, row in records:
            missing = [c for c in ("id", "annotator", "stance") if c not in row]
            if missing:
                problems += [Problem(str(path), line, c, "missing column (long form: id, annotator, stance)") for c in missing]
                break  # the same for every row of this file
            rid, who, label = (str(row.get(c) or "").strip() for c in ("id", "annotator", "stance"))
            bad = [(c, "empty") for c, v in (("id", rid), ("annotator", who)) if not v]
            if label not in LABELS:
                bad.append(("stance", f"unknown label {label!r} (expected one of {', '.join(LABELS)})"))
            if (rid, who) in where and rid and who:
                bad.append(("id", f"{rid!r} labeled twice by annotator {who!r} (first at {where[(rid, who)]})"))
            problems += [Problem(str(path), line, c, m) for c, m in bad]
            if bad:
                continue
            where[(rid, who)] = f"{path}:{line}"
            ann.labels.setdefault(rid, {})[who] = label
            if row.get("text"):
                ann.texts.setdefault(rid, str(row["text"]))
            if row.get("language"):
                ann.languages.setdefault(rid, str(row["language"]))
    if problems:
        raise DataError(problems)
    return ann


def read_labels(path: Path, columns: tuple[str, ...], ann: Annotations | None = None) -> dict[str, str]:
    """id -> label from an adjudicated file (`stance`) or a predict output (`pred_stance`, else `stance`): the first of
    `columns` the file has. Texts and languages it carries fill the gaps in `ann`."""
    records, out, problems = read_records(path), {}, []
    col = next((c for c in columns if records and c in records[0][1]), None)
    if col is None or "id" not in records[0][1]:
        need = "id" if records and "id" not in records[0][1] else " or ".join(columns)
        raise DataError(Problem(str(path), 1, need, "missing column"))
    for line, row in records:
        rid, label = str(row.get("id") or "").strip(), str(row.get(col) or "").strip()
        if not rid:
            problems.append(Problem(str(path), line, "id", "empty"))
        elif label not in LABELS:
            problems.append(Problem(str(path), line, col, f"unknown label {label!r} (expected one of {', '.join(LABELS)})"))
        elif rid in out:
            problems.append(Problem(str(path), line, "id", f"{rid!r} appears twice"))
        else:
            out[rid] = label
            if ann is not None:
                for key, store in (("text", ann.texts), ("language", ann.languages)):
                    if row.get(key):
                        store.setdefault(rid, str(row[key]))
    if problems:
        raise DataError(problems)
    return out


# -- the statistics -------------------------------------------------------------------------------------------------------


def codes(labels: dict[str, dict[str, str]], ids: list[str], coders: list[str]) -> np.ndarray:
    """coders x statements matrix of label indices (0 conciliatory, 1 neutral, 2 hostile), NaN where not labeled."""
    m = np.full((len(coders), len(ids)), np.nan)
    for j, rid in enumerate(ids):
        for i, c in enumerate(coders):
            if c in labels.get(rid, {}):
                m[i, j] = LABELS.index(labels[rid][c])
    return m


def alpha(m: np.ndarray, level: str = "nominal") -> float:
    """Krippendorff's alpha of a coders x units matrix; NaN when it is undefined (fewer than two values in play, or no
    unit labeled twice)."""
    import krippendorff

    m = np.asarray(m, dtype=float)
    pairable = (~np.isnan(m)).sum(0) >= 2
    if pairable.sum() == 0 or len(np.unique(m[:, pairable][~np.isnan(m[:, pairable])])) < 2:
        return math.nan
    return float(krippendorff.alpha(reliability_data=m[:, pairable], level_of_measurement=level))


def kappa(a, b) -> float:
    """Cohen's kappa of two coders' label indices over the units both labeled (NaN if none or one value only)."""
    from sklearn.metrics import cohen_kappa_score

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = ~np.isnan(a) & ~np.isnan(b)
    if ok.sum() == 0 or len(np.unique(np.concatenate([a[ok], b[ok]]))) < 2:
        return math.nan
    return float(cohen_kappa_score(a[ok].astype(int), b[ok].astype(int), labels=list(range(len(LABELS)))))


def with_ci(stat, m: np.ndarray, n_boot: int, seed: int) -> dict:
    """{value, low, high, n}: the statistic of the matrix and its percentile bootstrap interval over units (columns)."""
    value = stat(m)
    n = int(((~np.isnan(m)).sum(0) >= 2).sum())
    out = {"value": value, "low": math.nan, "high": math.nan, "n": n}
    if n_boot and m.shape[1] > 1 and not math.isnan(value):
        rng = np.random.default_rng(seed)
        boots = np.array([stat(m[:, rng.integers(0, m.shape[1], m.shape[1])]) for _ in range(n_boot)])
        boots = boots[~np.isnan(boots)]
        if len(boots):
            out["low"], out["high"] = float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))
    return out


def majority(by: dict[str, str]) -> str | None:
    """The label more than half of the annotators gave (None on a tie or a single annotator)."""
    if len(by) < 2:
        return None
    values = list(by.values())
    best = max(LABELS, key=values.count)
    return best if values.count(best) * 2 > len(values) else None


def agreement_report(
    ann: Annotations,
    adjudicated: dict[str, str] | None = None,
    model: dict[str, str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Every figure of `stance agreement` as one dict (written as agreement.json; rendered by report_markdown)."""
    humans = ann.annotators
    overlap = [rid for rid, by in ann.labels.items() if len(by) >= 2]
    if len(humans) < 2 or not overlap:
        raise ValueError("agreement needs statements labeled by at least two annotators (none found)")
    m = codes(ann.labels, overlap, humans)
    nominal, ordinal = (lambda x: alpha(x, "nominal")), (lambda x: alpha(x, "ordinal"))
    pair_kappa = lambda x: kappa(x[0], x[1])
    rep = {
        "annotators": humans,
        "statements": len(ann.labels),
        "overlap": len(overlap),
        "alpha_nominal": with_ci(nominal, m, n_boot, seed),
        "alpha_ordinal": with_ci(ordinal, m, n_boot, seed),
        "pairs": [],
        "languages": {},
        "labels": {},
    }
    for i, a in enumerate(humans):
        for j in range(i + 1, len(humans)):
            pm = m[[i, j]]
            if ((~np.isnan(pm)).sum(0) == 2).any():
                rep["pairs"].append({"a": a, "b": humans[j], "kappa": with_ci(pair_kappa, pm, n_boot, seed)})
    for lang in sorted({ann.languages.get(rid, "?") for rid in overlap}):
        cols = [k for k, rid in enumerate(overlap) if ann.languages.get(rid, "?") == lang]
        rep["languages"][lang] = with_ci(nominal, m[:, cols], n_boot, seed)
    for k, label in enumerate(LABELS):  # one-vs-rest: this label or not
        rep["labels"][label] = with_ci(nominal, np.where(np.isnan(m), np.nan, (m == k).astype(float)), n_boot, seed)
    reference = adjudicated if adjudicated else {rid: v for rid in overlap if (v := majority(ann.labels[rid])) is not None}
    rep["reference"] = "adjudicated" if adjudicated else "majority"
    rep["reference_n"] = len(reference)
    if model:
        rep["model"] = _model_figures(ann, humans, reference, model, n_boot, seed)
    return rep


def _model_figures(ann, humans, reference, model, n_boot, seed) -> dict:
    """The model on the humans' scale: against the reference, against each annotator, and as one more coder."""
    ids = [rid for rid in reference if rid in model]
    both = {rid: {"reference": reference[rid], MODEL: model[rid]} for rid in ids}
    vs_ref = codes(both, ids, ["reference", MODEL])
    out = {
        "n_predicted": len(model),
        "vs_reference": {
            "kappa": with_ci(lambda x: kappa(x[0], x[1]), vs_ref, n_boot, seed),
            "alpha_nominal": with_ci(lambda x: alpha(x, "nominal"), vs_ref, n_boot, seed),
            "alpha_ordinal": with_ci(lambda x: alpha(x, "ordinal"), vs_ref, n_boot, seed),
        },
    }
    out["humans_vs_reference"] = {}
    for h in humans:  # with a majority reference each annotator is part of it: an upper bound for the humans
        hm = codes(
            {
                rid: {"reference": reference[rid], **({h: ann.labels[rid][h]} if h in ann.labels.get(rid, {}) else {})}
                for rid in reference
            },
            list(reference),
            ["reference", h],
        )
        out["humans_vs_reference"][h] = kappa(hm[0], hm[1])
    joined = {rid: {**ann.labels[rid], **({MODEL: model[rid]} if rid in model else {})} for rid in ann.labels}
    overlap = [rid for rid, by in ann.labels.items() if len(by) >= 2]
    mh = codes(joined, overlap, humans + [MODEL])
    out["model_vs_annotator"] = {h: kappa(mh[-1], mh[i]) for i, h in enumerate(humans)}
    out["alpha_with_model"] = {"nominal": alpha(mh, "nominal"), "ordinal": alpha(mh, "ordinal")}
    return out


def disagreements(ann: Annotations) -> list[dict]:
    """Statements the annotators labeled differently, the widest splits (hostile against conciliatory) first: a
    selection file for adjudication in the app (`id`, `reason`), with each annotator's label."""
    rows = []
    for rid, by in ann.labels.items():
        values = set(by.values())
        if len(by) < 2 or len(values) < 2:
            continue
        spread = max(LABELS.index(v) for v in values) - min(LABELS.index(v) for v in values)
        reason = "disagreement: " + ", ".join(f"{a}={by[a]}" for a in sorted(by))
        rows.append(
            {
                "id": rid,
                "reason": reason,
                "spread": spread,
                "n_annotators": len(by),
                "majority": majority(by) or "",
                "language": ann.languages.get(rid, ""),
                "text": ann.texts.get(rid, ""),
                **{f"label_{a}": by.get(a, "") for a in ann.annotators},
            }
        )
    rows.sort(key=lambda r: (-r["spread"], r["id"]))
    return rows


def _fmt(x: dict | float) -> str:
    if isinstance(x, dict):
        if math.isnan(x["value"]):
            return "n/a"
        ci = "" if math.isnan(x["low"]) else f" ({x['low']:.2f}-{x['high']:.2f})"
        return f"{x['value']:.3f}{ci}"
    return "n/a" if x is None or math.isnan(x) else f"{x:.3f}"


def report_markdown(rep: dict) -> str:
    """The report as Markdown tables (95% bootstrap intervals over statements in brackets)."""
    from train.formats import markdown_table

    out = [
        f"# Agreement\n\n{len(rep['annotators'])} annotators, {rep['statements']} statements, {rep['overlap']} labeled "
        f"by two or more. Intervals: 95% bootstrap over statements.\n"
    ]
    out.append(
        markdown_table(
            ["figure", "value (95% CI)", "statements"],
            [
                ["Krippendorff's alpha, nominal", _fmt(rep["alpha_nominal"]), str(rep["alpha_nominal"]["n"])],
                [
                    "Krippendorff's alpha, ordinal (conciliatory < neutral < hostile)",
                    _fmt(rep["alpha_ordinal"]),
                    str(rep["alpha_ordinal"]["n"]),
                ],
            ],
            right_from=1,
        )
    )
    out.append(
        "\n## Cohen's kappa per pair\n\n"
        + markdown_table(
            ["annotator", "annotator", "kappa (95% CI)", "statements"],
            [[p["a"], p["b"], _fmt(p["kappa"]), str(p["kappa"]["n"])] for p in rep["pairs"]],
            right_from=2,
        )
    )
    out.append(
        "\n## Per language (alpha, nominal)\n\n"
        + markdown_table(
            ["language", "alpha (95% CI)", "statements"],
            [[k, _fmt(v), str(v["n"])] for k, v in rep["languages"].items()],
            right_from=1,
        )
    )
    out.append(
        "\n## Per label (one-vs-rest alpha: this label or not)\n\n"
        + markdown_table(["label", "alpha (95% CI)"], [[k, _fmt(v)] for k, v in rep["labels"].items()], right_from=1)
    )
    if "model" in rep:
        mo = rep["model"]
        ref = f"the {rep['reference']} labels ({rep['reference_n']} statements)"
        rows = [
            [
                "model vs " + rep["reference"],
                _fmt(mo["vs_reference"]["kappa"]),
                _fmt(mo["vs_reference"]["alpha_nominal"]),
                _fmt(mo["vs_reference"]["alpha_ordinal"]),
            ]
        ]
        rows += [[f"{h} vs {rep['reference']}", _fmt(k), "", ""] for h, k in mo["humans_vs_reference"].items()]
        rows += [[f"model vs {h}", _fmt(k), "", ""] for h, k in mo["model_vs_annotator"].items()]
        rows += [[f"{p['a']} vs {p['b']}", _fmt(p["kappa"]["value"]), "", ""] for p in rep["pairs"]]
        rows.append(["all annotators (alpha)", "", _fmt(rep["alpha_nominal"]["value"]), _fmt(rep["alpha_ordinal"]["value"])])
        rows.append(
            [
                "all annotators + model (alpha)",
                "",
                _fmt(mo["alpha_with_model"]["nominal"]),
                _fmt(mo["alpha_with_model"]["ordinal"]),
            ]
        )
        note = (
            " A majority reference contains each annotator's own label, so their rows against it are an upper bound."
            if rep["reference"] == "majority"
            else ""
        )
        out.append(
            f"\n## The model on the same scale\n\nAgainst {ref}; the model's rows next to the humans'.{note}\n\n"
            + markdown_table(["coders", "Cohen's kappa", "alpha nominal", "alpha ordinal"], rows, right_from=1)
        )
    return "\n".join(out)
