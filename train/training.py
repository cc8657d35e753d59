"""`stance train`: config -> validated data -> model.fit -> evaluation -> everything logged to MLflow."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from train.config import Config, flat_params, to_dict
from train.schema import LABELS
from train.tracking import TrainingInterrupted  # noqa: F401 - re-exported: callers stop runs with it


def config_digest(cfg: Config) -> str:
    d = to_dict(cfg)
    d.pop("run_name", None)
    d.pop("tune", None)  # how a config was found does not change what it trains
    if d["data"].get("max_train_rows") is None:
        d["data"].pop("max_train_rows", None)  # keys added later leave the digests of earlier runs (and --resume) as they were
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


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
    return core + (f"-holdout-{'+'.join(held)}" if held else "") + f"-s{cfg.train.seed}"


def prepare_data(cfg: Config):
    """Validate (fails on any error), filter and split. Returns (full_df, {train, val, eval}).

    Everything that would make the run fail later, or finish with a meaningless model, fails here, before any MLflow
    run exists: filter or hold-out values the data does not have, filters that leave no rows, empty splits and a
    training set with a single class (a DataError with one problem each).
    """
    from train.data import DataError, Problem, filter_statements, load_statements, make_splits

    df = load_statements(cfg.data.paths)
    d = cfg.data
    where = ", ".join(map(str, d.paths))

    def problem(message):
        return DataError(Problem(where, None, None, message))

    for key, column in (("languages", "language"), ("exclude_languages", "language"), ("holdout_languages", "language"),
                        ("speaker_groups", "speaker_group"), ("exclude_speaker_groups", "speaker_group"),
                        ("holdout_speaker_groups", "speaker_group"), ("sources", "source")):
        # a typo in a filter silently changes the experiment (an exclude that excludes nothing, a hold-out of nothing)
        absent = sorted(set(getattr(d, key) or ()) - set(df[column]))
        if absent:
            raise problem(f"data.{key}={absent}: no rows have these values; valid: {', '.join(sorted(set(df[column])))}")
    df = filter_statements(df, languages=d.languages, exclude_languages=d.exclude_languages or None,
                           speaker_groups=d.speaker_groups, exclude_speaker_groups=d.exclude_speaker_groups or None, sources=d.sources)
    if df.empty:
        used = [f"data.{k}={getattr(d, k)}" for k in ("languages", "exclude_languages", "speaker_groups", "exclude_speaker_groups", "sources")
                if getattr(d, k)]
        raise problem(f"{', '.join(used)} leave no rows; valid: filters that keep at least one language, group and source")
    try:
        parts = make_splits(df, eval_split=d.eval_split, holdout_languages=d.holdout_languages, holdout_speaker_groups=d.holdout_speaker_groups)
    except ValueError as e:
        raise problem(str(e)) from None
    if d.max_train_rows is not None and len(parts["train"]) > d.max_train_rows:
        parts["train"] = subsample(parts["train"], d.max_train_rows, cfg.train.seed)
    classes = parts["train"]["stance"].value_counts().to_dict()
    if len(classes) < 2:
        raise problem(f"the training set has a single class {classes}; a classifier needs at least two of {', '.join(LABELS)}")
    return df, parts


def subsample(df, n: int, seed: int):
    """n rows of df, stratified by stance and language (each cell keeps its share, within one row), drawn with seed;
    in df's order. The same (df, n, seed) always gives the same rows."""
    shuffled = df.sample(frac=1.0, random_state=seed)
    cells = shuffled.groupby(["stance", "language"], sort=False)
    # a row's position within its cell, as a fraction of the cell: taking the n smallest interleaves the cells evenly
    rank = (cells.cumcount() + 0.5) / cells["stance"].transform("size")
    keep = rank.sort_values(kind="stable").index[:n]
    return df.loc[df.index.isin(keep)]


def class_weights(labels: list[str]) -> list[float]:
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([LABELS.index(l) for l in labels])
    present = np.unique(y)
    w = np.ones(len(LABELS))
    w[present] = compute_class_weight("balanced", classes=present, y=y)
    return w.tolist()


def build_model(cfg: Config, train_labels: list[str]):
    from train.model import BaselineStance, TransformerStance

    m, t = cfg.model, cfg.train
    if m.kind == "baseline":
        return BaselineStance(m.analyzer, m.ngram_min, m.ngram_max, m.max_features, m.C, t.class_weighting, t.seed, m.class_prior)
    model = TransformerStance(m.name, m.pooling, t.max_length, m.text_prefix, m.dropout, m.class_prior)
    model.build(class_weights(train_labels) if t.class_weighting else None, t.label_smoothing)
    return model


# -- the transformer's training loop: the HF Trainer with our callbacks ------------------------------------------------

def fit_transformer(model, texts, labels, eval_texts, eval_labels, t, output_dir, callbacks=(), resume=False, eval_groups=None):
    import torch
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainingArguments, get_linear_schedule_with_warmup

    from train.config import TrainConfig
    from train.metrics import compute_metrics
    from train.model import pick_device, resolve_dtype

    t = t or TrainConfig()
    device = pick_device()
    dtype = resolve_dtype(t.precision, device)
    if t.freeze_embeddings:
        model.freeze_embeddings()
    if t.freeze_layers:
        model.freeze_lower_layers(t.freeze_layers)

    def encode(batch_texts, batch_labels):
        enc = model.tokenize(batch_texts)
        return Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                                  "labels": [LABELS.index(l) for l in batch_labels], "length": [len(x) for x in enc["input_ids"]]})

    train_ds = encode(texts, labels)
    eval_ds = encode(list(eval_texts), list(eval_labels)) if eval_texts is not None and len(eval_texts) else None

    def metrics_fn(pred):
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        proba = torch.softmax(torch.as_tensor(logits, dtype=torch.float32), -1).numpy()
        return compute_metrics(pred.label_ids, proba, eval_groups)

    steps_per_epoch = -(-len(train_ds) // t.batch_size)
    total_steps = steps_per_epoch * t.epochs
    head_params = [p for n, p in model.module.named_parameters() if p.requires_grad and n.startswith("head.")]
    body = [(n, p) for n, p in model.module.named_parameters() if p.requires_grad and not n.startswith("head.")]
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
    groups = [
        {"params": [p for n, p in body if not n.endswith(no_decay)], "weight_decay": t.weight_decay, "lr": t.lr},
        {"params": [p for n, p in body if n.endswith(no_decay)], "weight_decay": 0.0, "lr": t.lr},
    ]
    if head_params:
        groups.append({"params": head_params, "weight_decay": t.weight_decay, "lr": t.head_lr or t.lr})
    groups = [g for g in groups if g["params"]]
    # fused AdamW: ~8x faster per step on CPU for a model with a 250k-row embedding table (stack notes)
    optimizer = torch.optim.AdamW(groups, lr=t.lr, fused=True)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(t.warmup_ratio * total_steps), total_steps)

    early = t.early_stopping_patience > 0 and eval_ds is not None
    args = TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=t.epochs,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        eval_strategy="epoch" if eval_ds is not None else "no",
        save_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=early,
        metric_for_best_model="macro_f1" if early else None,
        greater_is_better=True,
        logging_strategy="epoch",
        report_to="none",  # our MlflowEpochLogger logs exactly what we want, named like the baseline's metrics
        seed=t.seed,
        data_seed=t.seed,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        length_column_name="length",
        remove_unused_columns=True,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        use_cpu=device == "cpu",
        dataloader_num_workers=0,
        disable_tqdm=not sys.stderr.isatty(),
        save_only_model=False,
    )
    cbs = list(callbacks)
    if early:
        cbs.append(EarlyStoppingCallback(early_stopping_patience=t.early_stopping_patience))
    class StanceTrainer(Trainer):
        def _get_eval_sampler(self, eval_dataset):
            # group_by_length would shuffle eval rows too; keep input order so per-language metrics line up
            return torch.utils.data.SequentialSampler(eval_dataset) if eval_dataset is not None else None

    trainer = StanceTrainer(model=model.module, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                      data_collator=DataCollatorWithPadding(model.tokenizer, pad_to_multiple_of=8),
                      compute_metrics=metrics_fn if eval_ds is not None else None, callbacks=cbs,
                      optimizers=(optimizer, scheduler))
    # What the encoder actually computed in (autocast decides, not the config): read off its first Linear's output in
    # the first training step. The encoder's own output is no witness: it ends in a LayerNorm, which autocast runs in
    # fp32 (seen on an H200: every Linear bf16, every LayerNorm and so last_hidden_state fp32).
    seen = []
    probe = next(m for m in model.module.backbone.modules() if isinstance(m, torch.nn.Linear))
    hook = probe.register_forward_hook(lambda mod, args, out: seen.append(str(out.dtype).removeprefix("torch.")) if not seen else None)
    try:
        trainer.train(resume_from_checkpoint=_resume_checkpoint(output_dir) if resume else None)
    finally:
        hook.remove()
    model.train_compute_dtype = seen[0] if seen else "unknown"
    model.device, model.dtype = device, dtype
    model.module.eval()
    return model


# What the Trainer reads to resume (trainer_state.json is written last), and one of the weight files it may write.
CHECKPOINT_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt", "rng_state.pth")
CHECKPOINT_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")


def _complete_checkpoints(output_dir) -> list[Path]:
    """checkpoint-N folders the Trainer can resume from, oldest first. A process killed while the Trainer was saving
    leaves a folder that lacks some of these files; the Trainer's own choice (the highest N) would pick it and fail."""
    found = []
    for d in Path(output_dir).glob("checkpoint-*"):
        if not (d.name.removeprefix("checkpoint-").isdigit() and d.is_dir()):
            continue
        if not all((d / f).is_file() and (d / f).stat().st_size for f in CHECKPOINT_FILES):
            continue
        if not any((d / f).is_file() for f in CHECKPOINT_WEIGHTS):
            continue
        try:
            json.loads((d / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found.append(d)
    return sorted(found, key=lambda d: int(d.name.removeprefix("checkpoint-")))


def _has_checkpoint(output_dir) -> bool:
    return bool(_complete_checkpoints(output_dir))


def _resume_checkpoint(output_dir) -> str | None:
    """The newest complete checkpoint, said out loud; None (train from scratch, also said) when there is none.

    Incomplete checkpoint folders are renamed incomplete-checkpoint-N-<time>, not deleted (kept for inspection): the Trainer
    would otherwise save into or rotate them as if they were checkpoints.
    """
    complete = _complete_checkpoints(output_dir)
    for d in sorted(set(Path(output_dir).glob("checkpoint-*")) - set(complete)):
        if d.is_dir():
            aside = d.with_name(f"incomplete-{d.name}-{int(time.time())}")
            d.rename(aside)
            print(f"resume: {d} is incomplete (interrupted while saving?); moved aside to {aside.name}", file=sys.stderr)
    if not complete:
        print(f"resume: no complete checkpoint in {output_dir}; training from scratch", file=sys.stderr)
        return None
    print(f"resume: continuing from {complete[-1]}", file=sys.stderr)
    return str(complete[-1])


def mlflow_epoch_logger():
    """A Trainer callback that logs per-epoch train loss and eval metrics under the names the baseline uses."""
    import mlflow
    from transformers import TrainerCallback

    class MlflowEpochLogger(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or state.epoch is None:
                return
            step = int(round(state.epoch))
            out = {}
            for k, v in logs.items():
                if not isinstance(v, (int, float)):
                    continue
                if k == "loss":
                    out["train_loss"] = v
                elif k.startswith("eval_") and k not in ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "eval_epoch"):
                    out["val_" + k.removeprefix("eval_")] = v
                elif k == "learning_rate":
                    out["learning_rate"] = v
            if out:
                mlflow.log_metrics(out, step=step)

    return MlflowEpochLogger()


# -- a whole run ---------------------------------------------------------------------------------------------------

def run_training(cfg: Config, resume: bool = False, run_id: str | None = None, config_path: str | None = None,
                 parent_run_id: str | None = None, quiet: bool = False, callbacks=(), tags: dict | None = None) -> str:
    """Train and evaluate one model, logging everything to MLflow. Returns the MLflow run id.

    callbacks: extra Trainer callbacks (the transformer only; `stance tune` reports epochs to Optuna with one);
    tags: extra tags set on the run when it opens."""
    import mlflow

    from train import tracking
    from train.model import set_threads

    threads = set_threads(cfg.train.threads)
    df, parts = prepare_data(cfg)  # fails on invalid data before any run is opened
    extra_sets = load_eval_files(cfg, parts["train"])
    calib = calibration_rows(cfg, parts, extra_sets)  # like the data above: refused before any run exists
    tracking.setup_tracking()
    exp_id = tracking.get_experiment_id(cfg.experiment)
    tracking.reconcile_stale_runs(exp_id)
    digest = config_digest(cfg)
    if resume and run_id is None:
        run_id = _find_resumable_run(exp_id, digest)
    if resume:
        check_resume(cfg, exp_id, digest, run_id)
    run_name = cfg.run_name or default_run_name(cfg)
    out_dir = Path(cfg.output_dir) / cfg.experiment / (run_id or f"{run_name}-{digest}-{int(time.time())}")

    run = mlflow.start_run(run_id=run_id, experiment_id=None if run_id else exp_id, run_name=None if run_id else run_name,
                           parent_run_id=parent_run_id, nested=parent_run_id is not None)
    rid = run.info.run_id
    with tracking.closing_run():
        if run_id is None:
            out_dir = out_dir.with_name(rid)
        _log_run_setup(cfg, df, parts, digest, out_dir, threads, config_path)
        if tags:
            mlflow.set_tags(tags)
        started = time.time()
        _seed_everything(cfg.train.seed)  # before the head is initialised, not only when the Trainer starts
        model = build_model(cfg, parts["train"]["stance"].tolist())
        if cfg.model.kind == "baseline":
            model.fit(parts["train"]["text"].tolist(), parts["train"]["stance"].tolist())
            val = parts["val"]
            if len(val):
                from train.metrics import compute_metrics

                vm = compute_metrics(val["stance"].map(LABELS.index), model.predict_proba(val["text"].tolist()), val["language"].tolist())
                mlflow.log_metrics({f"val_{k}": v for k, v in vm.items()}, step=1)
        else:
            val = parts["val"]
            model.fit(parts["train"]["text"].tolist(), parts["train"]["stance"].tolist(),
                      eval_texts=val["text"].tolist() if len(val) else None, eval_labels=val["stance"].tolist() if len(val) else None,
                      train_cfg=cfg.train, output_dir=out_dir, callbacks=[mlflow_epoch_logger(), *callbacks], resume=resume,
                      eval_groups=val["language"].tolist() if len(val) else None)
        if calib is not None and len(calib):
            # after the val metrics above (computed at temperature 1)
            mlflow.log_metric("temperature", model.calibrate(calib["text"].tolist(), calib["stance"].tolist(), cfg.train.eval_batch_size))
        train_seconds = time.time() - started
        if getattr(model, "train_compute_dtype", None):
            mlflow.set_tag("train.compute_dtype", model.train_compute_dtype)
        metrics = evaluate_and_log(model, parts["eval"], cfg.train.eval_batch_size)
        for name, eval_df in extra_sets.items():
            extra = evaluate_and_log(model, eval_df, cfg.train.eval_batch_size, prefix=name)
            if not quiet:
                print(f"{name} ({len(eval_df)} rows): macro_f1={extra['macro_f1']:.4f} "
                      f"({extra['macro_f1_ci_low']:.3f}-{extra['macro_f1_ci_high']:.3f}) ece={extra['ece']:.3f}")
        mlflow.set_tag("stance.eval_sets", ",".join(["eval", *extra_sets]))
        mlflow.log_metric("train_seconds", train_seconds)
        # The model is stored once, in the run's artifacts: saved to a temporary folder, logged, folder removed.
        with tempfile.TemporaryDirectory(prefix="stance-model-") as tmp:
            tracking.log_stance_model(model.save(Path(tmp) / "model"), parts["train"]["text"].tolist())
        del model  # verify loads the logged copy; two models in memory would double the peak for nothing
        verify_and_register(rid, cfg.register_as, quiet)
        if not quiet:
            print(f"run {rid}: macro_f1={metrics['macro_f1']:.4f} accuracy={metrics['accuracy']:.4f} ({train_seconds:.0f}s)")
    # Checkpoints exist so that an interrupted run can resume; a finished one needs none of them.
    shutil.rmtree(out_dir, ignore_errors=True)
    return rid


class VerificationFailed(RuntimeError):
    """The logged model does not reproduce the run's own numbers: it is not registered, and the run fails."""


def verify_and_register(run_id: str, register_as: str | None, quiet: bool = False) -> None:
    """Reload the logged model the way `stance predict` does and check it against the run's numbers; tag the run
    with the outcome and register the model only when it passed."""
    import mlflow

    from train.cli_predict import _quiet_libraries
    from train.verify import verify

    _quiet_libraries()
    result = verify(run_id)
    mlflow.set_tags({"stance.verified": "passed" if result.passed else "failed"})
    mlflow.log_text(result.table(), "verify.txt")
    if not quiet or not result.passed:
        print(result.table(), end="", file=sys.stdout if result.passed else sys.stderr)
    if not result.passed:
        raise VerificationFailed(f"the logged model does not reproduce run {run_id}'s numbers (see verify.txt); not registered")
    if register_as:
        version = mlflow.register_model(f"runs:/{run_id}/model", register_as)
        mlflow.set_tag("stance.registered_version", str(version.version))


class ResumeError(ValueError):
    """--resume cannot continue: the run is not this configuration's, or not resumable at all."""


def check_resume(cfg: Config, exp_id: str, digest: str, run_id: str | None) -> None:
    """Refuse to resume a run under a configuration other than the one it was started with: its checkpoint's
    optimizer state and epochs belong to that configuration, and its logged params would describe another run."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    if run_id is not None:
        try:
            run = client.get_run(run_id)
        except MlflowException as e:
            raise ResumeError(f"--run-id {run_id}: no such run ({e.message})") from e
        if run.info.experiment_id != exp_id:
            raise ResumeError(f"--run-id {run_id}: that run is in another experiment than '{cfg.experiment}'")
        if run.info.status == "FINISHED":
            raise ResumeError(f"--run-id {run_id}: that run finished; there is nothing to resume")
        candidates = [run]
    else:  # no interrupted run of this configuration: was there one of an edited configuration?
        recent = client.search_runs([exp_id], order_by=["attributes.start_time DESC"], max_results=50)
        candidates = [r for r in recent if r.info.status in ("FAILED", "KILLED")][:1]
    for run in candidates:
        if run.data.tags.get("stance.config_digest", digest) != digest:
            now = {k: v[:500] for k, v in flat_params(cfg).items() if k != "run_name"}
            changed = [f"{k}: {run.data.params.get(k, '(unset)')} -> {v}" for k, v in now.items() if run.data.params.get(k, v) != v]
            raise ResumeError(f"--resume: the configuration changed since run {run.info.run_id} was interrupted "
                              f"({'; '.join(changed) or 'config digest differs'}); resume with the original settings, "
                              f"or train anew without --resume")


def _seed_everything(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)


def _find_resumable_run(exp_id: str, digest: str) -> str | None:
    from mlflow.tracking import MlflowClient

    runs = MlflowClient().search_runs([exp_id], filter_string=f"tags.`stance.config_digest` = '{digest}'",
                                      order_by=["attributes.start_time DESC"], max_results=20)
    for r in runs:
        if r.info.status in ("FAILED", "KILLED") and _has_checkpoint(r.data.tags.get("stance.output_dir", "/nonexistent")):
            return r.info.run_id
    return None


def _log_run_setup(cfg, df, parts, digest, out_dir, threads, config_path):
    import mlflow

    from train import tracking
    from train.model import pick_device

    langs = sorted(set(parts["train"]["language"]))
    tags = {
        **tracking.process_tags(), "stance.config_digest": digest,
        "stance.output_dir": str(out_dir), "model_family": model_family(cfg), "model_kind": cfg.model.kind,
        "languages": ",".join(langs), "eval_languages": ",".join(sorted(set(parts["eval"]["language"]))),
        "eval_split": "holdout" if (cfg.data.holdout_languages or cfg.data.holdout_speaker_groups) else cfg.data.eval_split,
        "holdout": ",".join(cfg.data.holdout_languages + cfg.data.holdout_speaker_groups) or "none",
        "device": pick_device(), "seed": str(cfg.train.seed), **tracking.git_info(),
    }
    if config_path:
        tags["config_file"] = str(config_path)
    mlflow.set_tags(tags)
    params = flat_params(cfg)
    params.update({"n_train": len(parts["train"]), "n_val": len(parts["val"]), "n_eval": len(parts["eval"]), "threads": threads})
    mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
    mlflow.log_dict(to_dict(cfg), "config/resolved_config.json")
    mlflow.log_text(tracking.installed_packages(), "environment/requirements.txt")
    source = ",".join(cfg.data.paths)
    for name in ("train", "val", "eval"):
        if len(parts[name]):
            tracking.log_dataset(parts[name], name, source)


def evaluate_and_log(model, eval_df, batch_size: int = 64, prefix: str = "") -> dict:
    """Score an evaluation set and log its metrics and artifacts: the eval split unprefixed (metrics `macro_f1`,
    artifacts in `eval/`), an extra set under its name (metrics `<name>/macro_f1`, artifacts in `<name>/`)."""
    import mlflow

    from train import tracking
    from train.metrics import evaluation_metrics, metric_key

    proba = model.predict_proba(eval_df["text"].tolist(), batch_size=batch_size)
    y = eval_df["stance"].map(LABELS.index).to_numpy()
    metrics = evaluation_metrics(y, proba, eval_df["language"].tolist())
    mlflow.log_metrics({metric_key(prefix, k): v for k, v in metrics.items()})
    tracking.log_evaluation(eval_df, proba, metrics, prefix=prefix or "eval")
    return metrics


def calibration_rows(cfg: Config, parts: dict, extra_sets: dict):
    """The rows the temperature is fitted on: data.calibration_file, else the validation split; None when off."""
    if not cfg.train.calibrate:
        return None
    if not cfg.data.calibration_file:
        return parts["val"]
    from train.data import DataError, Problem, load_statements

    df = load_statements([cfg.data.calibration_file])
    for name, other in {"training": parts["train"], "evaluation": parts["eval"], **extra_sets}.items():
        shared = sorted(set(df["id"]) & set(other["id"]))
        if shared:
            raise DataError([Problem(cfg.data.calibration_file, None, "id", f"{len(shared)} rows are also {name} rows (e.g. {shared[0]}): "
                                                                            "calibration rows must be apart from both")])
    return df


def load_eval_files(cfg: Config, train_df) -> dict:
    """The config's extra evaluation sets, validated like labeled/ (before any run exists), keyed by file stem."""
    import re

    from train.data import DataError, Problem, load_statements

    sets = {}
    for path in cfg.data.eval_files:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(path).stem)
        if name in sets or name == "eval":
            raise DataError([Problem(path, None, "data.eval_files", f"two evaluation sets would be named {name!r}: rename one file")])
        if not Path(path).exists():
            raise DataError([Problem(path, None, "data.eval_files", "no such file or directory")])
        df = load_statements([path])
        leaked = sorted(set(df["id"]) & set(train_df["id"]))
        if leaked:
            raise DataError([Problem(path, None, "id", f"{len(leaked)} rows are also training rows (e.g. {leaked[0]}): an evaluation set must be unseen")])
        sets[name] = df.reset_index(drop=True)
    return sets
