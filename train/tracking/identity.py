"""A citable identity for a model: which tool made it (version and git commit), which run trained it, on which data
(digest), and what the registry calls it. Prediction files (a sidecar `<output>.meta.json`, the same for every output
format), `stance runs report` and exported model directories (`stance models export`) carry it, so a figure in a
paper names the exact model, not a counter in someone's local registry (docs/citing.md).

The training-data digest is the run's `stance.data_digest` tag or `data.digest` param (the rows each split used) when it has one; otherwise one sha256 over the digests
of the datasets MLflow logged for the run (train, val, eval: `mlflow.data`, see tracking.artifacts.log_dataset).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from train.runtime import REPO_ROOT

IDENTITY_FILE = "model_identity.json"  # in an exported model directory, read back by `stance predict --model DIR`
DATA_DIGEST_TAG = "stance.data_digest"
VERSION_TAG = "stance.version"  # set on every training run by tracking.runs.git_info
TOOL = "stance-lab"


def tool_version() -> str:
    try:
        return version(TOOL)
    except PackageNotFoundError:
        return "unknown"


def tool_commit() -> str:
    """The git commit of the checkout this code runs from, "+dirty" when it has uncommitted changes; "unknown" when
    it is not a git checkout (an installed wheel, an exported copy)."""

    def git(*args):
        return subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "") if commit else "unknown"


def data_digest(run) -> str:
    """The run's training-data digest (see the module docstring); "unknown" for a run that logged no datasets."""
    tag = run.data.tags.get(DATA_DIGEST_TAG) or run.data.params.get("data.digest")  # the latter: what training logs
    if tag:
        return tag
    inputs = getattr(getattr(run, "inputs", None), "dataset_inputs", None) or []
    parts = sorted(
        f"{next((t.value for t in i.tags if t.key == 'mlflow.data.context'), '')}:{i.dataset.name}:{i.dataset.digest}"
        for i in inputs
    )
    if not parts:
        return "unknown"
    return "sha256:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def run_identity(run_id: str) -> dict[str, str]:
    """What a run says about the model it logged."""
    from train.tracking.queries import get_run

    run, _ = get_run(run_id)
    tags = run.data.tags
    ident = {
        "tool": TOOL,
        "training_tool_version": tags.get(VERSION_TAG, "unknown"),  # runs logged before the tag: unknown
        "run_id": run_id,
        "run_name": run.info.run_name or "",
        "training_commit": tags.get("git.commit", "unknown") + ("+dirty" if tags.get("git.dirty") == "true" else ""),
        "training_data_digest": data_digest(run),
        "registered_version": tags.get("stance.registered_version", ""),
    }
    ident["model_id"] = citation_id(ident)
    return ident


def model_identity(uri: str, registry_version: str, model_dir: Path | None, fingerprint: str = "") -> dict[str, str]:
    """The identity of the model behind `uri` (an MLflow URI or a local directory), with this tool's version and
    commit (the code that computes the predictions). A local directory exported by `stance models export` brings
    its run's identity along in model_identity.json; a plain saved directory has no run to name."""
    out = {"tool": TOOL, "tool_version": tool_version(), "tool_commit": tool_commit(), "model_uri": uri}
    run_id = _run_id_of(uri)
    if run_id:
        try:
            out.update({k: v for k, v in run_identity(run_id).items() if k not in ("tool", "model_id")})
        except LookupError:
            out["run_id"] = run_id
    else:
        for d in _exported_dirs(model_dir, uri):
            if (d / IDENTITY_FILE).is_file():
                saved = json.loads((d / IDENTITY_FILE).read_text(encoding="utf-8"))
                out.update({k: v for k, v in saved.items() if k not in ("tool_version", "tool_commit", "model_uri")})
                out["exported_from"] = saved.get("model_uri", "")
                break
    if registry_version and uri.startswith("models:/"):
        out["registered_model"] = uri[len("models:/") :].split("/")[0].split("@")[0]
        out["registered_version"] = registry_version
    if fingerprint:
        out["model_fingerprint"] = fingerprint
    out["model_id"] = citation_id(out)
    return {k: v for k, v in out.items() if v != ""}


def citation_id(identity: dict[str, str]) -> str:
    """One line to quote in a paper: `stance-lab 0.1.0 (commit 1a2b3c4d5e6f) run 87f2… data sha256:… model <sha>`.
    The version and commit are those that trained the model where the run recorded them, else this code's."""

    def known(*keys):
        return next((identity[k] for k in keys if identity.get(k) and identity[k] != "unknown"), "unknown")

    version_, commit = known("training_tool_version", "tool_version"), known("training_commit", "tool_commit")
    parts = [f"{identity.get('tool', TOOL)} {version_} (commit {commit[:12]}{'+dirty' if commit.endswith('+dirty') else ''})"]
    if identity.get("run_id"):
        parts.append(f"run {identity['run_id']}")
    if identity.get("training_data_digest"):
        parts.append(f"data {identity['training_data_digest']}")
    if identity.get("model_fingerprint"):
        parts.append(f"model {identity['model_fingerprint']}")
    return " ".join(parts)


def _run_id_of(uri: str) -> str:
    if uri.startswith("runs:/"):
        return uri[len("runs:/") :].split("/")[0]
    if uri.startswith("models:/"):
        from train.tracking.registry import registered_model_run

        try:
            return registered_model_run(uri)
        except LookupError:
            return ""
    return ""


def _exported_dirs(model_dir: Path | None, uri: str) -> list[Path]:
    """The folders where an exported directory keeps model_identity.json: the directory given, and the ones above the
    stance model directory inside it."""
    dirs = [Path(uri)] if uri and Path(uri).is_dir() else []
    if model_dir is not None:
        dirs += [Path(model_dir), *list(Path(model_dir).parents)[:3]]
    return dirs


def write_sidecar(output: Path, identity: dict[str, str]) -> Path:
    """`<output>.meta.json` next to a prediction file: the model identity, for every output format."""
    from train.formats import write_text_atomic

    path = Path(output).with_name(Path(output).name + ".meta.json")
    write_text_atomic(path, json.dumps({"model": identity}, indent=2, ensure_ascii=False) + "\n")
    return path
