"""Checks beyond types: ranges, consistency between keys, the `tune.space` search space, the model source."""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path

from train.config.build import _build, _check_type, _set_dotted, flat_params, to_dict
from train.config.sections import CALIBRATION_METHODS, RANGES, Config, ConfigError, TuneConfig


def _check_consistency(cfg: Config) -> None:
    t = cfg.train
    if t.epochs < 1 or t.batch_size < 1 or t.max_length < 8:
        raise ConfigError("train.epochs and train.batch_size must be >= 1 and train.max_length >= 8")
    if not 0 <= t.warmup_ratio < 1:
        raise ConfigError(f"train.warmup_ratio must be in [0, 1), got {t.warmup_ratio}")
    for key, (ok, valid) in RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if not ok(value):
            raise ConfigError(f"{key}: {value!r} is out of range; valid: {valid}")
    prior = cfg.model.class_prior
    if prior is not None and (len(prior) != 3 or min(prior) <= 0 or abs(sum(prior) - 1) > 1e-6):
        raise ConfigError(
            f"model.class_prior: {prior!r} is not valid; valid: three shares > 0 summing to 1, "
            f"[conciliatory, neutral, hostile], or null"
        )
    if t.calibration_method not in CALIBRATION_METHODS:
        raise ConfigError(
            f"train.calibration_method: {t.calibration_method!r} is not valid; valid: {', '.join(CALIBRATION_METHODS)}"
        )
    if cfg.model.ngram_min > cfg.model.ngram_max:
        raise ConfigError("model.ngram_min must not exceed model.ngram_max")
    if cfg.tune.space:
        check_search_space(cfg)


DISTRIBUTIONS = {"float": ("low", "high", "log", "step"), "int": ("low", "high", "log", "step"), "categorical": ("choices",)}


def check_search_space(cfg: Config) -> None:
    """tune.space: every key a config key the search may set, every distribution well formed, and its bounds (or every
    choice) a value the config accepts for that key, so that no trial can fail on a value the search proposed."""
    valid = [
        k
        for k in flat_params(cfg)
        if not k.startswith("tune.") and k not in ("experiment", "register_as", "output_dir", "run_name")
    ]
    for key, spec in cfg.tune.space.items():
        where = f"tune.space.{key}"
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"{where}: '{key}' is not a config key a search can set.{hint} Valid keys: dotted keys such as train.lr, model.dropout"
            )
        if not isinstance(spec, dict):
            raise ConfigError(
                f"{where}: expected a distribution such as {{type: float, low: 1e-5, high: 1e-4, log: true}}, got {spec!r}"
            )
        kind = spec.get("type")
        if kind not in DISTRIBUTIONS:
            raise ConfigError(f"{where}.type: {kind!r} is not one of {', '.join(DISTRIBUTIONS)}")
        for name in spec:
            if name != "type" and name not in DISTRIBUTIONS[kind]:
                close = difflib.get_close_matches(name, DISTRIBUTIONS[kind], n=1)
                hint = f" Did you mean '{where}.{close[0]}'?" if close else ""
                raise ConfigError(
                    f"unknown key '{where}.{name}' for type {kind}.{hint} Valid keys: type, {', '.join(DISTRIBUTIONS[kind])}"
                )
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ConfigError(f"{where}.choices: expected a non-empty list, got {choices!r}")
            values = choices
        else:
            if "low" not in spec or "high" not in spec:
                raise ConfigError(f"{where}: a {kind} distribution needs low and high")
            number = (
                _check_type(spec["low"], int if kind == "int" else float, f"{where}.low"),
                _check_type(spec["high"], int if kind == "int" else float, f"{where}.high"),
            )
            if number[0] > number[1]:
                raise ConfigError(f"{where}: low {number[0]} is above high {number[1]}")
            if spec.get("log") and (number[0] <= 0 or spec.get("step") is not None):
                raise ConfigError(f"{where}: log: true needs low > 0 and no step")
            spec["low"], spec["high"] = number  # YAML 1.1 reads 1e-5 as a string: keep the number
            if spec.get("step") is not None:
                spec["step"] = _check_type(spec["step"], int if kind == "int" else float, f"{where}.step")
            if "log" in spec:
                spec["log"] = _check_type(spec["log"], bool, f"{where}.log")
            values = list(number)
        for v in values:
            try:
                apply_overrides(cfg, {key: v}, check_space=False)
            except ConfigError as e:
                raise ConfigError(f"{where}: the value {v!r} is not valid for {key} ({e})") from None


def apply_overrides(cfg: Config, values: dict, check_space: bool = True) -> Config:
    """A copy of cfg with dotted keys set ({"train.lr": 3e-5}), validated like a loaded config."""
    tree = to_dict(cfg)
    for key, value in values.items():
        _set_dotted(tree, key, value)
    out = _build(Config, tree, "")
    if check_space:
        _check_consistency(out)
    else:
        _check_consistency(dataclasses.replace(out, tune=TuneConfig()))
    return out


def check_model_source(cfg: Config) -> None:
    """A transformer's model.name must be an existing directory or something the Hugging Face Hub can resolve.

    Not part of load_config: `stance train` calls it after it bootstraps the default offline encoder. A name that can
    only be a local path (absolute, ./ ../ ~, more than one '/', or below an existing directory such as models/) and
    does not exist would otherwise surface deep in transformers as "Repo id must be in the form ...".
    """
    name = cfg.model.name
    if cfg.model.kind != "transformer" or Path(name).expanduser().is_dir():
        return
    first = Path(name).parts[0] if Path(name).parts else ""
    local = (
        name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1 or (name.count("/") == 1 and Path(first).is_dir())
    )
    if local or not name.strip():
        raise ConfigError(
            f"model.name: {name!r} is not an existing model directory; valid: a local directory with "
            f"config.json, or a Hugging Face Hub id ('name' or 'org/name')"
        )
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(name, "config.json"), str):
            raise ConfigError(
                f"model.name: {name!r} is neither a local directory nor in the Hugging Face cache, and "
                f"HF_HUB_OFFLINE is set; valid: a local directory with config.json, or a cached Hub id"
            )
