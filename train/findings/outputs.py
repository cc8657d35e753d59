"""The files a paper needs from analyze's table: CSV and Parquet, Markdown and LaTeX, and two plots (share over time
per group with 95% interval ribbons; a group x stance heat map) as PNG and SVG. Every file is written atomically."""

from __future__ import annotations

from pathlib import Path

from train.formats import markdown_table, write_atomic, write_text_atomic
from train.schema import LABELS

COLORS = {"conciliatory": "#1b9e77", "neutral": "#7570b3", "hostile": "#d95f02"}


def _cell(row, group_cols) -> list[str]:
    ci = f"{row.ci_low:.2f}-{row.ci_high:.2f}" if row.n else ""
    flag = " (small)" if row.small_group else ""
    return [str(getattr(row, c)) for c in group_cols] + [
        row.stance,
        f"{row.n}{flag}",
        f"{row.share_naive:.2f}" if row.n else "",
        f"{row.share:.2f}" if row.n else "",
        ci,
    ]


def markdown(table, group_cols: list[str]) -> str:
    header = group_cols + ["stance", "n", "naive share", "corrected share", "95% CI"]
    rows = [_cell(r, group_cols) for r in table.itertuples(index=False)]
    note = ""
    if len(table):
        note = f"\nCorrected with {table['method'].iloc[0]}, fitted on {table['fitted_on'].iloc[0]}; (small): fewer than 30 statements.\n"
    return markdown_table(header, rows, right_from=len(group_cols) + 1) + note


def _tex(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$")):
        s = s.replace(a, b)
    return s


def latex(table, group_cols: list[str]) -> str:
    header = group_cols + ["stance", "n", "naive", "corrected", "95\\% CI"]
    lines = [
        "\\begin{tabular}{" + "l" * (len(group_cols) + 1) + "rrrr}",
        "\\hline",
        " & ".join(_tex(h) if "\\%" not in h else h for h in header) + " \\\\",
        "\\hline",
    ]
    for r in table.itertuples(index=False):
        lines.append(" & ".join(_tex(c) for c in _cell(r, group_cols)) + " \\\\")
    lines += ["\\hline", "\\end{tabular}", ""]
    return "\n".join(lines)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _group_label(row, group_cols) -> str:
    return " / ".join(str(row[c]) for c in group_cols) or "all"


def time_plot(table, group_cols: list[str]):
    """One panel per group: corrected share of each stance per period, 95% interval as a ribbon."""
    plt = _plt()
    t = table[table["period"] != "(missing)"].copy()
    t["group"] = t.apply(lambda r: _group_label(r, group_cols), axis=1)
    groups = list(dict.fromkeys(t["group"]))
    ncol = min(3, max(1, len(groups)))
    nrow = -(-max(1, len(groups)) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.0 * nrow), squeeze=False, sharey=True)
    for ax, g in zip(axes.flat, groups):
        sub = t[t["group"] == g]
        for label in LABELS:
            s = sub[sub["stance"] == label].sort_values("period")
            x = list(s["period"])
            ax.plot(x, s["share"], marker="o", ms=3, color=COLORS[label], label=label)
            ax.fill_between(x, s["ci_low"], s["ci_high"], color=COLORS[label], alpha=0.2, linewidth=0)
        ax.set_title(g, fontsize=9)
        ax.set_ylim(0, 1)
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    for ax in list(axes.flat)[len(groups) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("share, 95% CI", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def heatmap(table, group_cols: list[str]):
    """Groups x stances, the corrected share over the whole file (periods pooled by their n), interval in the cell."""
    plt = _plt()
    t = table.copy()
    t["group"] = t.apply(lambda r: _group_label(r, group_cols), axis=1)
    if "period" in t:  # pool periods, weighting by n (the table holds each period's share)
        t["w"] = t["share"] * t["n"]
        t = t.groupby(["group", "stance"], sort=False).agg(w=("w", "sum"), n=("n", "sum")).reset_index()
        t["share"] = t["w"] / t["n"].where(t["n"] > 0)
    m = t.pivot(index="group", columns="stance", values="share").reindex(columns=list(LABELS))
    fig, ax = plt.subplots(figsize=(5.5, 0.45 * len(m) + 1.5))
    im = ax.imshow(m.to_numpy(dtype=float), cmap="Oranges", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(LABELS)), LABELS)
    ax.set_yticks(range(len(m)), m.index, fontsize=8)
    for i in range(len(m)):
        for j in range(len(LABELS)):
            v = m.iat[i, j]
            ax.text(j, i, "" if v != v else f"{v:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="share (corrected)")
    fig.tight_layout()
    return fig


def write_outputs(table, output: Path, group_cols: list[str]) -> list[Path]:
    """output.csv/.parquet (whichever was asked, and the other), .md, .tex, _time.png/.svg, _heatmap.png/.svg.
    `group_cols` are the --by columns; the tables also show the period when there is one."""
    keys = group_cols + (["period"] if "period" in table else [])
    output = Path(output)
    base = output.with_suffix("")
    written = [
        write_atomic(base.with_suffix(".csv"), lambda p: table.to_csv(p, index=False)),
        write_atomic(base.with_suffix(".parquet"), lambda p: table.to_parquet(p, index=False)),
        write_text_atomic(base.with_suffix(".md"), markdown(table, keys)),
        write_text_atomic(base.with_suffix(".tex"), latex(table, keys)),
    ]
    plt = _plt()
    figures = {"heatmap": heatmap(table, group_cols)}
    if "period" in table:
        figures["time"] = time_plot(table, group_cols)
    for name, fig in figures.items():
        for ext in ("png", "svg"):
            path = base.parent / f"{base.name}_{name}.{ext}"
            written.append(write_atomic(path, lambda p, fig=fig, ext=ext: fig.savefig(p, format=ext, dpi=150)))
        plt.close(fig)
    return written
