"""From predictions to findings: stance shares by group and period corrected for classifier error (quantification
with quapy), 95% bootstrap intervals, the tables and plots a paper needs (`stance analyze`), and word attributions
for auditing single labels (`stance explain`).

collect (streams `stance predict` output into per-group float32 arrays), quantify (the corrections and the
bootstrap), analyze (one row per group x period x stance), outputs (CSV, Parquet, Markdown, LaTeX, PNG, SVG),
explain (Captum integrated gradients for transformers, exact linear contributions for the TF-IDF baseline).
Sits beside train.reports: it reads prediction files and the model run's scored rows (through train.tracking),
never training code.
"""

from train.findings.collect import FindingsError, collect
from train.findings.quantify import DEFAULT_METHOD, METHODS, SMALL_GROUP, Correction, estimate, estimate_group, fit_quantifier

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "SMALL_GROUP",
    "Correction",
    "FindingsError",
    "collect",
    "estimate",
    "estimate_group",
    "fit_quantifier",
]
