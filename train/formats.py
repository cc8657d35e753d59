"""Small text and file helpers every layer shares: content digests, atomic writes (any writer, text, rows), Markdown tables."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path


def sha256_file(path: Path) -> str:
    """The sha256 of a file's content, streamed in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def write_atomic(path: str | Path, write) -> Path:
    """Call write(tmp) on a temporary file in the same folder, then os.replace it onto `path`: a reader never sees half
    a file, and a failed write leaves neither a temp file nor a changed `path`. The temp name keeps the suffix, for
    writers that choose the format by it (matplotlib, pandas)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically (write_atomic)."""
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8", newline=""))


def write_rows_atomic(path: str | Path, rows: list[dict], columns) -> Path:
    """Rows (dicts) as CSV when the name ends in .csv (None as an empty cell), else as JSON Lines, written atomically;
    only `columns`, in that order."""
    path, columns = Path(path), list(columns)
    if path.suffix.lower() == ".csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return write_text_atomic(path, buf.getvalue())
    return write_text_atomic(path, "".join(json.dumps({c: r.get(c) for c in columns}, ensure_ascii=False) + "\n" for r in rows))


def markdown_table(header: list[str], rows: list[list[str]], right_from: int | None = None) -> str:
    """A GitHub Markdown table of already formatted cells; columns from index `right_from` on are right-aligned."""
    n = len(header)
    align = ["---" if right_from is None or i < right_from else "---:" for i in range(n)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"
