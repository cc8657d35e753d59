"""Small text and file helpers every layer shares: content digests, atomic text writes, Markdown tables."""

from __future__ import annotations

import hashlib
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


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write via a temporary file in the same folder and os.replace, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def markdown_table(header: list[str], rows: list[list[str]], right_from: int | None = None) -> str:
    """A GitHub Markdown table of already formatted cells; columns from index `right_from` on are right-aligned."""
    n = len(header)
    align = ["---" if right_from is None or i < right_from else "---:" for i in range(n)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"
