"""The transformer's training loop: the Hugging Face Trainer with our optimizer groups, early stopping, checkpoints
that an interrupted fit resumes from, and per-epoch metrics reported to the fit context. Imported only by
TransformerStance.fit: inference never loads it."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from train.config import TrainConfig
from train.metrics import compute_metrics
from train.models.fitting import FitContext
from train.runtime import pick_device, resolve_dtype
from train.schema import LABELS


def class_weights(labels: list[str]) -> list[float]:
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([LABELS.index(l) for l in labels])
    present = np.unique(y)
    w = np.ones(len(LABELS))
    w[present] = compute_class_weight("balanced", classes=present, y=y)
    return w.tolist()



def fit_transformer(model, texts, labels, eval_texts, eval_labels, eval_groups=None, *, ctx: FitContext):
    """TransformerStance.fit: seed, build with the training set's class weights, run the Trainer, set the train prior."""
    import torch
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainingArguments, get_linear_schedule_with_warmup
    from transformers import set_seed

    t = model.train or TrainConfig()
    output_dir = ctx.checkpoint_dir
    set_seed(t.seed)  # before the head is initialised, not only when the Trainer starts
    model.build(class_weights(labels) if t.class_weighting else None, t.label_smoothing)
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
        disable_tqdm=True,  # the Trainer's bar writes every log dict; a TTY gets QuietProgress below instead
        save_only_model=False,
    )
    cbs = ([EpochReporter(ctx.report)] if ctx.report else []) + list(ctx.trainer_callbacks)
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
    # The Trainer prints each log as a raw dict (PrinterCallback); the pipeline prints one table row per epoch from
    # the same numbers (reports.console.EpochTable), so the dicts go, and a terminal keeps a step bar without them.
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    if sys.stderr.isatty():
        trainer.add_callback(_quiet_progress_class())
    # What the encoder actually computed in (autocast decides, not the config): read off its first Linear's output in
    # the first training step. The encoder's own output is no witness: it ends in a LayerNorm, which autocast runs in
    # fp32 (seen on an H200: every Linear bf16, every LayerNorm and so last_hidden_state fp32).
    seen = []
    probe = next(m for m in model.module.backbone.modules() if isinstance(m, torch.nn.Linear))
    hook = probe.register_forward_hook(lambda mod, args, out: seen.append(str(out.dtype).removeprefix("torch.")) if not seen else None)
    try:
        trainer.train(resume_from_checkpoint=_resume_checkpoint(output_dir) if ctx.resume else None)
    finally:
        hook.remove()
    model.train_compute_dtype = seen[0] if seen else "unknown"
    model.device, model.dtype = device, dtype
    model.module.eval()
    model._set_train_prior(labels, weighted=model.module.class_weights is not None)
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


def has_checkpoint(output_dir) -> bool:
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


def _quiet_progress_class():
    from transformers.trainer_callback import ProgressCallback

    class QuietProgress(ProgressCallback):
        """The Trainer's step bar without the log dicts it writes under it."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            pass

    return QuietProgress


def _epoch_reporter_class():
    from transformers import TrainerCallback

    class EpochReporter(TrainerCallback):
        """Per-epoch train loss and validation metrics, under the names the baseline uses, to FitContext.report."""

        def __init__(self, report):
            self.report = report

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
                self.report(out, step)

    return EpochReporter


def EpochReporter(report):  # noqa: N802 - a class built lazily (transformers is imported on first use)
    return _epoch_reporter_class()(report)
