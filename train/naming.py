"""How runs are named and what makes two runs "the same configuration".

A run's default name ends in `-s<seed>`; a seed sweep's parent ends in `-x<N>seeds`. Runs of one configuration share
the name without the seed suffix (`without_seed`) and the config digest (every setting but the run name).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from train.config import Config, to_dict

INFERENCE_EXPERIMENT = "stance-inference"  # where `stance predict --log-mlflow` logs its runs
EVALUATION_EXPERIMENT = "stance-evaluations"  # where `stance eval file --log` logs its runs
CALIBRATION_EXPERIMENT = "stance-calibrations"  # `stance models calibrate` of a model that no run logged
SEED_SUFFIX = re.compile(r"-s(\d+)$")
# Params that differ between runs of one configuration without making it another configuration.
NOT_CONFIG_PARAMS = {"train.seed", "run_name", "threads", "train.threads", "output_dir", "register_as", "experiment"}


def config_digest(cfg: Config) -> str:
    """Same configuration, same digest: every setting except the run name."""
    d = to_dict(cfg)
    d.pop("run_name", None)
    d.pop("tune", None)  # how a config was found does not change what it trains
    if d["data"].get("max_train_rows") is None:
        d["data"].pop("max_train_rows", None)  # keys added later leave the digests of earlier runs (and --resume) as they were
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def data_digest(parts: dict) -> str:
    """Same rows, same digest: sha256 over every row a run trains, validates and is scored on (id, text, language,
    stance, per split, in id order), after filters, hold-outs and subsampling. Two runs of one config on an edited
    corpus differ here, not in the config digest."""
    h = hashlib.sha256()
    for name in ("train", "val", "eval"):
        h.update(f"[{name}]\n".encode())
        rows = parts[name].sort_values("id", kind="stable")[["id", "text", "language", "stance"]]
        for row in rows.itertuples(index=False):
            h.update(json.dumps(list(row), ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()[:12]


def model_family(cfg: Config) -> str:
    if cfg.model.kind == "baseline":
        return "tfidf-logreg"
    return Path(cfg.model.name.rstrip("/")).name


def default_run_name(cfg: Config) -> str:
    if cfg.model.kind == "baseline":
        core = f"tfidf-{cfg.model.analyzer}{cfg.model.ngram_min}-{cfg.model.ngram_max}-C{cfg.model.C:g}"
    else:
        t = cfg.train
        core = f"{model_family(cfg)}-{cfg.model.pooling}-lr{t.lr:g}-ep{t.epochs}" + ("-frozenemb" if t.freeze_embeddings else "")
    held = cfg.data.holdout_languages + cfg.data.holdout_speaker_groups
    return core + (f"-holdout-{'+'.join(held)}" if held else "") + with_seed("", cfg.train.seed)


def with_seed(name: str, seed: int) -> str:
    return f"{name}-s{seed}"


def without_seed(name: str) -> str:
    return SEED_SUFFIX.sub("", name)


def seed_of(name) -> str | None:
    """The seed a run name ends in, or None."""
    m = SEED_SUFFIX.search(name) if isinstance(name, str) else None
    return m.group(1) if m else None


def calibrated_run_name(source_name: str, method: str) -> str:
    """`<source name>-cal-<method>`, the seed suffix kept last (runs of one configuration share the name without it)."""
    seed = seed_of(source_name)
    core = f"{without_seed(source_name) or 'model'}-cal-{method}"
    return with_seed(core, int(seed)) if seed is not None else core


def parent_run_name(cfg: Config, n: int) -> str:
    return f"{without_seed(cfg.run_name or default_run_name(cfg))}-x{n}seeds"


def child_run_name(cfg: Config, seed: int) -> str | None:
    """A sweep child's run name: None keeps the default (which already ends in -s<seed>)."""
    if cfg.run_name is None:
        return None
    return with_seed(without_seed(cfg.run_name), seed)
