"""The rows a run uses: the corpus validated, filtered and split as the config says, and its extra evaluation files.

Everything that would make a run fail later, or finish with a meaningless model, fails here, before any MLflow run
exists (a DataError naming each problem)."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from train.config import Config
from train.data.importers import LANGUAGE_NAMES
from train.data.problems import DataError, Problem
from train.data.splits import filter_statements, make_splits
from train.data.validation import load_statements
from train.schema import LABELS


class SelectionError(DataError):
    """The config selects rows the corpus does not have (a filter or hold-out value absent, nothing left to train on):
    a wrong value in the config, reported in one line with the valid values (`stance train` exits 2)."""


def _did_you_mean(value: str, valid: list[str]) -> str:
    """' (did you mean 'tr'?)' for 'turkish' or 'TR' or 'trr' when 'tr' is valid; '' when nothing is close."""
    code = LANGUAGE_NAMES.get(str(value).lower(), str(value).lower())
    close = [code] if code in valid else difflib.get_close_matches(str(value), valid, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def prepare_data(cfg: Config):
    """Validate (fails on any error), filter and split. Returns (full_df, {train, val, eval}).

    Everything that would make the run fail later, or finish with a meaningless model, fails here, before any MLflow
    run exists: filter or hold-out values the data does not have, filters that leave no rows, empty splits and a
    training set with a single class (a DataError with one problem each).
    """
    df = load_statements(cfg.data.paths)
    d = cfg.data
    where = ", ".join(map(str, d.paths))

    def problem(message):
        return SelectionError(Problem(where, None, None, message))

    for key, column in (
        ("languages", "language"),
        ("exclude_languages", "language"),
        ("holdout_languages", "language"),
        ("speaker_groups", "speaker_group"),
        ("exclude_speaker_groups", "speaker_group"),
        ("holdout_speaker_groups", "speaker_group"),
        ("sources", "source"),
    ):
        # a typo in a filter silently changes the experiment (an exclude that excludes nothing, a hold-out of nothing)
        absent = sorted(set(getattr(d, key) or ()) - set(df[column]))
        if absent:
            valid = sorted(set(df[column]))
            what = "a language code in the corpus" if column == "language" else f"a {column} in the corpus"
            raise problem(
                f"data.{key}: {', '.join(repr(a) for a in absent)} is not {what}{_did_you_mean(absent[0], valid)}; "
                f"valid: {', '.join(valid)}"
            )
    df = filter_statements(
        df,
        languages=d.languages,
        exclude_languages=d.exclude_languages or None,
        speaker_groups=d.speaker_groups,
        exclude_speaker_groups=d.exclude_speaker_groups or None,
        sources=d.sources,
    )
    if df.empty:
        used = [
            f"data.{k}={getattr(d, k)}"
            for k in ("languages", "exclude_languages", "speaker_groups", "exclude_speaker_groups", "sources")
            if getattr(d, k)
        ]
        raise problem(f"{', '.join(used)} leave no rows; valid: filters that keep at least one language, group and source")
    try:
        parts = make_splits(
            df, eval_split=d.eval_split, holdout_languages=d.holdout_languages, holdout_speaker_groups=d.holdout_speaker_groups
        )
    except ValueError as e:
        raise problem(f"data selection leaves an empty split: {str(e).removeprefix('make_splits: ')}") from None
    if d.max_train_rows is not None and len(parts["train"]) > d.max_train_rows:
        parts["train"] = subsample(parts["train"], d.max_train_rows, cfg.train.seed)
    classes = parts["train"]["stance"].value_counts().to_dict()
    if len(classes) < 2:
        raise problem(f"the training set has a single class {classes}; a classifier needs at least two of {', '.join(LABELS)}")
    return df, parts


def subsample(df, n: int, seed: int):
    """n rows of df, stratified by stance and language (each cell keeps its share, within one row), drawn with seed;
    in df's order. The same (df, n, seed) always gives the same rows."""
    shuffled = df.sample(frac=1.0, random_state=seed)
    cells = shuffled.groupby(["stance", "language"], sort=False)
    # a row's position within its cell, as a fraction of the cell: taking the n smallest interleaves the cells evenly
    rank = (cells.cumcount() + 0.5) / cells["stance"].transform("size")
    keep = rank.sort_values(kind="stable").index[:n]
    return df.loc[df.index.isin(keep)]


def calibration_rows(cfg: Config, parts: dict, extra_sets: dict):
    """The rows the calibration is fitted on: data.calibration_file, else the validation split; None when off. Refused
    before any run exists: rows shared with training or evaluation, and (class_bias) a file without rows of a label."""
    if not cfg.train.calibrate:
        return None
    if not cfg.data.calibration_file:
        return parts["val"]
    df = load_statements([cfg.data.calibration_file])
    check_apart(df, cfg.data.calibration_file, {"training": parts["train"], "evaluation": parts["eval"], **extra_sets})
    check_calibration_labels(df, cfg.data.calibration_file, cfg.train.calibration_method)
    return df


def check_apart(df, path, others: dict) -> None:
    """Calibration rows must share no id with the rows a model is trained or scored on: a DataError naming `path`
    and the first shared id otherwise. `others`: what the rows are (training, evaluation, a set's name) -> frame."""
    for name, other in others.items():
        if "id" not in getattr(other, "columns", ()):
            continue
        shared = sorted(set(df["id"]) & set(other["id"].astype(str)))
        if shared:
            raise DataError(
                [
                    Problem(
                        str(path),
                        None,
                        "id",
                        f"{len(shared)} rows are also {name} rows (e.g. {shared[0]}): calibration rows must be apart from "
                        f"the rows a model is trained and scored on",
                    )
                ]
            )


def check_calibration_labels(df, path, method: str) -> None:
    """class_bias fits a bias per class: a sample without rows of a class gives that class's bias nothing to fit."""
    if method != "class_bias":
        return
    missing = [l for l in LABELS if l not in set(df["stance"])]
    if missing:
        counts = ", ".join(f"{l} {int((df['stance'] == l).sum())}" for l in LABELS)
        raise DataError(
            [
                Problem(
                    str(path),
                    None,
                    "stance",
                    f"no {' or '.join(missing)} rows ({counts}): class_bias fits a bias per class and needs rows of each "
                    f"of {', '.join(LABELS)}; label some, or use the temperature method",
                )
            ]
        )


def eval_set_name(path) -> str:
    """The name an evaluation file's metrics and artifacts are logged under: its file stem, made safe."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(path).stem)


def load_eval_files(cfg: Config, train_df) -> dict:
    """The config's extra evaluation sets, validated like labeled/ (before any run exists), keyed by file stem."""
    return read_eval_files(cfg.data.eval_files, {"training": train_df}, where="data.eval_files")


def read_eval_files(paths, unseen: dict | None = None, reserved=("eval",), where: str = "data.eval_files") -> dict:
    """Evaluation files validated like labeled/, keyed by file stem (eval_set_name). Each must be unseen: no id shared
    with a frame of `unseen` (what those rows are -> frame); a name in `reserved` or given twice is refused."""
    sets = {}
    for path in paths:
        name = eval_set_name(path)
        if name in sets or name in reserved:
            raise DataError([Problem(str(path), None, where, f"two evaluation sets would be named {name!r}: rename one file")])
        if not Path(path).exists():
            raise DataError([Problem(str(path), None, where, "no such file or directory")])
        df = load_statements([path])
        for what, other in (unseen or {}).items():
            leaked = sorted(set(df["id"]) & set(other["id"]))
            if leaked:
                raise DataError(
                    [
                        Problem(
                            str(path),
                            None,
                            "id",
                            f"{len(leaked)} rows are also {what} rows (e.g. {leaked[0]}): an evaluation set must be unseen",
                        )
                    ]
                )
        sets[name] = df.reset_index(drop=True)
    return sets
