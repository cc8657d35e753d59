"""A headless Chromium to look at the MLflow UI from tests and scripts: the rendered DOM and screenshots."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from train.tracking.server import UIError

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Flags that work headless in a container (stack notes): no sandbox, no GPU, nothing phoning home.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--hide-scrollbars",
)

# -- headless Chromium ---------------------------------------------------------------------------------------------


def find_chromium() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium(url: str, *extra: str, budget_ms: int = 20000, timeout: float = 180) -> subprocess.CompletedProcess:
    exe = find_chromium()
    if exe is None:
        raise UIError("chromium is not installed (Debian: apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="stance-chromium-") as profile:
        argv = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *extra, url]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise UIError(f"chromium exited with {res.returncode}: {res.stderr[-2000:]}")
    return res


def dump_dom(url: str, window: tuple[int, int] = (2400, 1200), budget_ms: int = 20000) -> str:
    """The page's DOM after its scripts ran (virtual time lets the single-page app fetch and render)."""
    return _chromium(url, "--dump-dom", f"--window-size={window[0]},{window[1]}", budget_ms=budget_ms).stdout


def screenshot(url: str, out: Path, window: tuple[int, int] = (1800, 1000), budget_ms: int = 20000) -> Path:
    """A PNG of the rendered page, written atomically (Chromium writes to a temp name, then it is renamed)."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.png")
    try:
        _chromium(url, f"--screenshot={tmp}", f"--window-size={window[0]},{window[1]}", budget_ms=budget_ms)
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise UIError(f"chromium wrote no screenshot for {url}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
