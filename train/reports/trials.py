"""The trials of a `stance tune` study as a frame and a fixed-width table (best first), and the `stance train` command
that trains the best trial's values on all rows."""

from __future__ import annotations

import math
import shlex


def trials_frame(study_trials, space: dict):
    import pandas as pd

    rows = []
    for t in study_trials:
        row = {
            "trial": t.number,
            "state": t.state.name,
            "value": t.value if t.value is not None else float("nan"),
            "epochs_reported": len(t.intermediate_values),
            "seconds": (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else float("nan"),
            "run_id": t.user_attrs.get("mlflow_run_id", ""),
        }
        row.update({k: t.params.get(k) for k in space})
        rows.append(row)
    return pd.DataFrame(rows, columns=["trial", "state", "value", *space, "epochs_reported", "seconds", "run_id"])


def trials_table(df, objective: str) -> str:
    """Fixed-width text, best first among completed trials, then the rest by number."""

    def cell(v):
        if isinstance(v, float):
            return "–" if math.isnan(v) else f"{v:.4g}"
        return "–" if v is None else str(v)

    order = (
        df.assign(_done=df["state"] == "COMPLETE").sort_values(["_done", "value", "trial"], ascending=[False, False, True])
        if len(df)
        else df
    )
    header = [
        "trial",
        "state",
        objective,
        *[c for c in df.columns if c not in ("trial", "state", "value", "epochs_reported", "seconds", "run_id")],
        "seconds",
        "run",
    ]
    rows = [
        [
            cell(r["trial"]),
            r["state"],
            "–" if math.isnan(r["value"]) else f"{r['value']:.4f}",
            *[cell(r[c]) for c in header[3:-2]],
            "–" if math.isnan(r["seconds"]) else f"{r['seconds']:.0f}",
            str(r["run_id"])[:8],
        ]
        for _, r in order.iterrows()
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines) + "\n"


def best_command(config_path: str | None, overrides, best_params: dict) -> str:
    """`stance train CONFIG <the worker's overrides> <the best values>`: the best trial on all rows, registered as the
    config says (the trial itself trained on tune.max_train_rows rows, if set, and registered nothing)."""
    keys = set(best_params)
    kept = [o for o in overrides if o.split("=", 1)[0].strip() not in keys and not o.split("=", 1)[0].strip().startswith("tune.")]
    args = [
        "stance",
        "train",
        str(config_path or "configs/default.yaml"),
        *kept,
        *(f"{k}={_yaml_value(v)}" for k, v in best_params.items()),
    ]
    return " ".join(shlex.quote(a) for a in args)


def _yaml_value(v) -> str:
    if isinstance(v, float):
        return repr(v)
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def fmt_params(values: dict) -> str:
    return " ".join(f"{k}={_yaml_value(v) if not isinstance(v, float) else f'{v:.4g}'}" for k, v in values.items())
