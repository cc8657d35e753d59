"""Choosing rows: filters by language / speaker group / source, and the train / val / eval split (with hold-outs)."""

from __future__ import annotations

import pandas as pd


def _as_set(values) -> set[str] | None:
    if values is None:
        return None
    return {values} if isinstance(values, str) else set(values)


def filter_statements(
    df: pd.DataFrame, languages=None, exclude_languages=None, speaker_groups=None, exclude_speaker_groups=None, sources=None
) -> pd.DataFrame:
    """Keep rows matching every given include list and none of the exclude lists (``None`` = no constraint)."""
    keep = pd.Series(True, index=df.index)
    for column, include, exclude in (
        ("language", languages, exclude_languages),
        ("speaker_group", speaker_groups, exclude_speaker_groups),
        ("source", sources, None),
    ):
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
            raise ValueError(
                f"make_splits: the {name!r} set is empty{hold}; {len(df)} rows in, "
                f"split counts {df['split'].value_counts().to_dict()}"
            )
    return {name: part.reset_index(drop=True) for name, part in out.items()}
