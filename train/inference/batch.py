"""Files -> files in chunks: `predict_file` streams a CSV / JSONL / Parquet file in fixed-size chunks (memory is bounded
by the chunk size, not the file size). Each finished chunk is written atomically as a numbered Parquet part in
`<output>.parts/` next to a manifest, so a run killed at any point (even SIGKILL) resumes without recomputing finished
chunks; at the end the parts are joined into the output (temp file + os.replace) and the work directory is removed.
The work directory belongs to one process at a time (an flock), and parts are resumed only for the same input
content, model and options. Exit codes and the input contract: docs/input-contract.md.
"""

from __future__ import annotations

import codecs
import fcntl
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from train.inference.readers import _text_encoding, file_format, input_columns, iter_chunks, scan_input
from train.inference.rows import RUN_COLUMNS, InferenceError, detect_languages, predict_values
from train.inference.writers import _write_atomic_parquet, join_parts, to_arrow
from train.runtime import chunk_delay

LANGUAGE_COLUMNS = ("language", "lang")
MANIFEST = "manifest.json"

# -- the file -> file run ----------------------------------------------------------------------------------------------


@dataclass
class PredictSummary:
    rows: int = 0
    bad_rows: int = 0
    chunks: int = 0
    chunks_computed: int = 0
    chunks_reused: int = 0
    seconds: float = 0.0
    labels: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)  # reason (without line numbers) -> count
    truncated: int = 0  # rows scored on their first max_length tokens only (long_text="truncate")
    input_sha256: str = ""

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class PredictOptions:
    """How a file is read and scored: everything of a predict run but the model, the files and the run control
    (resume, overwrite, progress). `predict_file` takes them as keywords; `predict_file_with` as this object."""

    text_column: str = "text"
    model_uri: str = ""  # written into every output row, with model_version, and bound into the resume manifest
    model_version: str = ""
    batch_size: int = 64  # rows per forward pass
    chunk_rows: int = 5000  # rows read, scored and written at a time: bounds memory, unit of resume
    detect_language: bool | None = None  # None: only when the input has no language column
    encoding: str = "utf-8"  # of a CSV input
    long_text: str = "truncate"  # truncate, window or sentences (rows.predict_values)


def parts_dir_for(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


LOCK = "lock"


def _busy(output: Path, fd: int) -> InferenceError:
    owner = os.pread(fd, 1000, 0).decode("utf-8", "replace").strip() or "pid unknown"
    return InferenceError(
        f"{output} is being written by another stance predict ({owner}); wait for it to finish or choose another --output"
    )


class WorkLock:
    """Exclusive ownership of `<output>.parts/` for one run: flock on `<output>.parts/lock`.

    The kernel drops a flock when its process dies, however it dies (even SIGKILL), so a crashed run never leaves a
    stale lock: the next run just takes it. The file holds the owner's pid, host and start time for the error message.
    """

    def __init__(self, output: Path):
        self.work = parts_dir_for(output)
        while True:
            try:
                self.work.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.work / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:  # the owner removed the directory just now: try again
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                error = _busy(output, fd)
                os.close(fd)
                raise error from None
            try:  # the previous owner may have unlinked the file between our open and flock: then it guards nothing
                same = os.stat(self.work / LOCK).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}".encode())

    @staticmethod
    def check_free(output: Path) -> None:
        """Raise now if another run holds `output`, e.g. before loading a model (creates nothing; the lock itself is
        taken by predict_file). Its lock lasts microseconds: a run starting in that instant is refused, as one of two
        runs started together must be."""
        try:
            fd = os.open(parts_dir_for(output) / LOCK, os.O_RDONLY)
        except OSError:
            return  # no work directory: nobody holds it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(output, fd) from None
        finally:
            os.close(fd)  # also unlocks

    def clear(self) -> None:
        """Remove everything in the work directory but the lock itself."""
        for p in self.work.iterdir():
            if p.name != LOCK:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()

    def release(self, remove: bool) -> None:
        """Unlock; with `remove`, delete the work directory first (while still holding the lock)."""
        if remove or not any(p.name != LOCK for p in self.work.iterdir()):  # nothing worth resuming: leave nothing
            self.clear()
            (self.work / LOCK).unlink()
            self.work.rmdir()
        os.close(self.fd)


def _manifest(input_path: Path, digest: str, opts: PredictOptions, options: dict) -> dict:
    # bound to the input's content, not its size and mtime: copies (cp -p, rsync -t) and rewrites keep both, and
    # the hash is one sequential read, negligible next to scoring the same rows
    return {
        "input": {"path": str(input_path.resolve()), "size": input_path.stat().st_size, "sha256": digest},
        "model_uri": opts.model_uri,
        "chunk_rows": opts.chunk_rows,
        "text_column": opts.text_column,
        "detect_language": opts.detect_language,
        "encoding": opts.encoding,
        **options,
        "long_text": opts.long_text,
    }


def prepare_work_dir(lock: WorkLock, manifest: dict, resume: bool, overwrite: bool) -> Path:
    """Check or start the manifest of the locked work directory."""
    work = lock.work
    unfinished = any(p.name != LOCK for p in work.iterdir())
    if unfinished and overwrite:
        lock.clear()
    elif unfinished and not resume:
        raise InferenceError(f"{work} exists (an unfinished run); pass --resume to continue it or --overwrite to start over")
    elif unfinished:
        try:
            old = json.loads((work / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if old != manifest:
            diff = (
                sorted(k for k in {**manifest, **(old or {})} if (old or {}).get(k) != manifest.get(k))
                if old
                else ["manifest missing or unreadable"]
            )
            raise InferenceError(
                f"{work}: cannot resume, the unfinished run differs in: {', '.join(diff)}; use --overwrite to start over"
            )
        return work
    tmp = work / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    os.replace(tmp, work / MANIFEST)
    return work


def predict_file(
    model,
    input_path,
    output_path,
    text_column: str = "text",
    *,
    model_uri: str = "",
    model_version: str = "",
    batch_size: int = 64,
    chunk_rows: int = 5000,
    detect_language: bool | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress=None,
    encoding: str = "utf-8",
    options: dict | None = None,
    long_text: str = "truncate",
) -> PredictSummary:
    """Predict every row of `input_path` into `output_path` (formats from the extensions); see the module docstring.
    The keywords are PredictOptions' fields (predict_file_with) and the run control: `resume`, `overwrite`,
    `progress(done_rows, summary)` and `options`, whatever else changes predictions (backend, precision...)."""
    opts = PredictOptions(
        text_column=text_column,
        model_uri=model_uri,
        model_version=model_version,
        batch_size=batch_size,
        chunk_rows=chunk_rows,
        detect_language=detect_language,
        encoding=encoding,
        long_text=long_text,
    )
    return predict_file_with(
        model, input_path, output_path, opts, resume=resume, overwrite=overwrite, progress=progress, options=options
    )


def predict_file_with(
    model,
    input_path,
    output_path,
    opts: PredictOptions,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress=None,
    options: dict | None = None,
) -> PredictSummary:
    """predict_file with its options as one object. `progress(done_rows, summary)` is called after every scored slice
    of a chunk (batch_size x SCORE_SLICE rows), so it moves from the first seconds whatever the chunk size. `options`:
    whatever else changes predictions (backend, precision...); parts are only resumed under the same input content,
    model, options and PredictOptions (but batch_size, which does not change predictions)."""
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise InferenceError(f"{input_path}: input file not found")
    in_fmt, out_fmt = file_format(input_path, "input"), file_format(output_path, "output")
    if opts.chunk_rows < 1 or opts.batch_size < 1:
        raise InferenceError("--chunk-size and --batch-size must be positive")
    if in_fmt != "csv" and codecs.lookup(_text_encoding(opts.encoding)).name not in ("utf-8", "utf-8-sig"):
        why = "JSON Lines are always UTF-8" if in_fmt == "jsonl" else "Parquet is binary"
        raise InferenceError(f"--encoding applies to CSV input only ({input_path.name}: {why})")
    columns = input_columns(input_path, in_fmt, opts.encoding)
    if not columns:
        raise InferenceError(f"{input_path}: empty file (no records, no columns): nothing to predict")
    if opts.text_column not in columns:
        raise InferenceError(
            f"{input_path}: no column {opts.text_column!r}; available columns: {', '.join(map(str, columns))}"
            " (choose one with --text-column)"
        )
    if opts.detect_language is None:
        opts = replace(opts, detect_language=not any(c in columns for c in LANGUAGE_COLUMNS))
    output_path.parent.mkdir(parents=True, exist_ok=True)
    lock = WorkLock(output_path)  # from here on, this run alone owns <output>.parts/ (taken before the long hash pass)
    remove = False  # kept on a refused resume (the parts are another run's) and on interruption (they resume)
    try:
        digest = scan_input(input_path, in_fmt, opts.encoding)
        work = prepare_work_dir(lock, _manifest(input_path, digest, opts, options or {}), resume, overwrite)
        try:
            summary = _predict_chunks(
                model,
                opts,
                source=(input_path, in_fmt),
                output=(output_path, out_fmt),
                work=work,
                columns=columns,
                progress=progress,
            )
        except InferenceError:
            remove = True  # the input is unreadable past some point: its finished parts are worth nothing
            raise
        remove = True
    finally:
        lock.release(remove)
    summary.input_sha256 = digest
    return summary


def _predict_chunks(
    model, opts: PredictOptions, *, source: tuple[Path, str], output: tuple[Path, str], work: Path, columns, progress
) -> PredictSummary:
    """The chunks of `source` (path, format) scored into parts in `work`, then joined into `output` (path, format);
    `opts.detect_language` is decided (True / False)."""
    import pyarrow.parquet as pq

    summary, start = PredictSummary(), time.perf_counter()
    delay = chunk_delay()
    parts = []
    (input_path, in_fmt), (output_path, out_fmt) = source, output
    text_column = opts.text_column
    for k, (df, read_errors) in enumerate(iter_chunks(input_path, in_fmt, opts.chunk_rows, opts.encoding)):
        part = work / f"part-{k:06d}.parquet"
        parts.append(part)
        if part.exists():  # finished by an earlier, interrupted run
            table = pq.read_table(part, columns=["pred_stance", "pred_error", "truncated"])
            summary.chunks_reused += 1
            count_predictions(summary, table.column("pred_stance").to_pylist(), table.column("pred_error").to_pylist())
            summary.truncated += sum(table.column("truncated").to_pylist())
        else:
            if text_column not in df.columns:  # JSONL chunks whose records all lack the key
                df[text_column] = None
            before, scored = summary.rows, [0]

            def on_scored(n, before=before, scored=scored):
                scored[0] += n
                if progress is not None:
                    summary.seconds = time.perf_counter() - start
                    progress(before + scored[0], summary)

            preds = predict_values(
                model,
                df[text_column].tolist(),
                opts.batch_size,
                read_errors,
                long_text=opts.long_text,
                on_scored=on_scored,
                flag_truncated=True,
            )
            out = df.drop(columns=[c for c in [*preds.columns, *RUN_COLUMNS] if c in df.columns])
            for col in preds.columns:
                out[col] = preds[col].to_numpy()
            if opts.detect_language:
                out["detected_language"] = detect_languages(df[text_column].tolist())
            out["model_uri"] = opts.model_uri
            out["model_version"] = opts.model_version
            _write_atomic_parquet(to_arrow(out), part)
            summary.chunks_computed += 1
            count_predictions(summary, preds["pred_stance"].tolist(), preds["pred_error"].tolist())
            summary.truncated += int(preds["truncated"].sum())
            if delay:
                time.sleep(delay)
        summary.chunks = k + 1
        summary.seconds = time.perf_counter() - start
        if progress is not None:
            progress(summary.rows, summary)
    if not parts:  # an empty input still gives an output with the input's columns
        import pandas as pd

        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
        preds = predict_values(model, [], opts.batch_size, flag_truncated=True)
        for col in [*preds.columns, *(RUN_COLUMNS if opts.detect_language else RUN_COLUMNS[1:])]:
            kind = "float64" if col.startswith(("prob_", "pred_conf")) else "bool" if col == "truncated" else object
            empty[col] = pd.Series(dtype=kind)
        parts.append(work / "part-000000.parquet")
        _write_atomic_parquet(to_arrow(empty), parts[0])
    join_parts(parts, output_path, out_fmt)
    summary.seconds = time.perf_counter() - start
    return summary


def count_predictions(summary: PredictSummary, stances, errors) -> None:
    summary.rows += len(stances)
    for s, e in zip(stances, errors):
        if e:
            summary.bad_rows += 1
            reason = e.split(": ", 1)[1] if e.startswith("line ") else e
            reason = reason.split(" (")[0]
            summary.errors[reason] = summary.errors.get(reason, 0) + 1
        elif s is not None:
            summary.labels[s] = summary.labels.get(s, 0) + 1
