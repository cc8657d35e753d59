"""A project folder that was moved or copied: the embedded MLflow store keeps absolute artifact locations.

MLflow's sqlite store records where each experiment, run and logged model keeps its artifacts as an absolute file:
URI (it resolves a relative location against the working directory of the moment, so a relative one is no way out).
After `mv project new-place` or `cp -r project copy`, the store still says `file:///old-place/mlruns/artifacts`: runs
logged from the new folder would write their artifacts into the old one (or fail when it is gone), silently.

`check_store_location` (called whenever a command opens the embedded store) detects it from the experiments' locations
and refuses with the fix; `relocate_store` (`stance runs relocate`) rewrites every stored artifact location from the
old folder to the current one, after copying the database to a backup. Plain sqlite3: MLflow has no API for it.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

# every column where MLflow 3 keeps an artifact location (absent tables or columns are skipped)
LOCATION_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
)


class StoreMovedError(RuntimeError):
    """The store's artifact locations point into another folder than the store's own."""


def _old_roots(db: Path) -> set[Path]:
    """The store folders the experiments' artifact locations name (`<folder>/artifacts[/...]` as file: URIs)."""
    roots = set()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        try:
            rows = con.execute("SELECT artifact_location FROM experiments").fetchall()
        except sqlite3.DatabaseError:  # a store MLflow has not created its tables in yet
            return roots
    for (location,) in rows:
        if not location or not location.startswith("file:"):
            continue
        path = Path(unquote(urlparse(location).path))
        parts = path.parts
        if "artifacts" in parts:
            i = len(parts) - 1 - parts[::-1].index("artifacts")
            roots.add(Path(*parts[:i]))
    return roots


def moved_from(store: Path) -> Path | None:
    """The folder the store at `store` was made in, when that is not `store` (moved or copied); else None."""
    db = Path(store) / "mlflow.db"
    if not db.is_file():
        return None
    here = Path(store).resolve()
    others = sorted(r for r in _old_roots(db) if r != here and r.resolve() != here)
    return others[0] if others else None


def check_store_location(store: Path) -> None:
    old = moved_from(store)
    if old is None:
        return
    gone = "no longer exists" if not old.exists() else "is another copy of the project"
    raise StoreMovedError(
        f"the MLflow store {Path(store) / 'mlflow.db'} was made in {old}, which {gone}: its runs' artifacts are "
        f"recorded there, and new runs would write there. The project folder was moved or copied. Fix: "
        f"`stance runs relocate` rewrites the store's artifact locations to {Path(store) / 'artifacts'} "
        f"(the database is backed up first); or set STANCE_MLRUNS to the store you mean."
    )


def relocate_store(store: Path) -> tuple[Path, Path, int]:
    """Rewrite every artifact location from the old store folder to `store`; returns (old folder, backup, rows changed).
    ValueError when there is nothing to relocate."""
    store = Path(store).resolve()
    old = moved_from(store)
    if old is None:
        raise ValueError(f"{store / 'mlflow.db'}: every artifact location is already under {store}; nothing to do")
    db = store / "mlflow.db"
    backup = db.with_name(f"mlflow.db.bak-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.copy2(db, backup)
    pairs = [((old / "artifacts").as_uri(), (store / "artifacts").as_uri()), (str(old / "artifacts"), str(store / "artifacts"))]
    changed = 0
    with sqlite3.connect(db) as con:  # one transaction: all rewritten, or (on any error) none
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table, column in LOCATION_COLUMNS:
            if table not in tables or column not in {r[1] for r in con.execute(f"PRAGMA table_info({table})")}:
                continue
            for before, after in pairs:
                cur = con.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE {column} = ? OR {column} LIKE ? ESCAPE '\\'",
                    (after, len(before) + 1, before, _like_prefix(before + "/")),
                )
                changed += cur.rowcount
    return old, backup, changed


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
