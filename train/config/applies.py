"""Which settings shape a run of each model kind: a run logs only those as params, and a setting of the other kind
that a config changes from its default is said out loud (it would have no effect), never silently carried along.

A baseline run has no learning rate, epochs, encoder or max length; a transformer run has no n-gram range or C. A
methods section copied from a run's params must describe what was run, so the params are the settings that applied.
"""

from __future__ import annotations

from train.config.build import flat_params
from train.config.sections import Config

# Settings of every run: the data, where it is logged, the seed, class weighting, calibration and the applied prior.
COMMON = (
    "experiment",
    "run_name",
    "register_as",
    "output_dir",
    "data.",
    "model.kind",
    "model.class_prior",
    "train.seed",
    "train.threads",
    "train.class_weighting",
    "train.calibrate",
    "train.calibration_method",
)
# Settings only one kind reads (BaselineStance.from_config, TransformerStance.from_config and the Trainer loop).
BY_KIND = {
    "baseline": ("model.analyzer", "model.ngram_min", "model.ngram_max", "model.max_features", "model.C"),
    "transformer": (
        "model.name",
        "model.pooling",
        "model.dropout",
        "model.text_prefix",
        "train.",  # every train.* key not in COMMON: epochs, lr, head_lr, batch sizes, max_length, precision, ...
    ),
}


def _matches(key: str, patterns) -> bool:
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in patterns)


def applies(key: str, kind: str) -> bool:
    """Whether the dotted config key shapes a run of this model kind."""
    return _matches(key, COMMON) or _matches(key, BY_KIND[kind])


def run_params(cfg: Config) -> dict[str, str]:
    """The config's flat params that shape a run of its model kind (what the run logs as params)."""
    return {k: v for k, v in flat_params(cfg).items() if applies(k, cfg.model.kind)}


def ineffective_settings(cfg: Config) -> list[str]:
    """Keys the config sets to something other than the default that its model kind never reads."""
    default = flat_params(Config())
    return [k for k, v in flat_params(cfg).items() if not applies(k, cfg.model.kind) and v != default.get(k)]


def ineffective_warning(cfg: Config) -> str | None:
    """One line naming the settings that have no effect on this run and the ones that do; None when there are none."""
    ignored = ineffective_settings(cfg)
    if not ignored:
        return None
    kind = cfg.model.kind
    them = ", ".join(ignored)
    verb = "has" if len(ignored) == 1 else "have"
    own = ", ".join(p + "*" if p.endswith(".") else p for p in BY_KIND[kind])
    shared = (
        "data.*"
        if kind == "transformer"
        else "data.*, train.seed, train.class_weighting, train.calibrate, train.calibration_method"
    )
    return f"warning: {them} {verb} no effect on a {kind} run (model.kind: {kind}); settings that do: {own}, {shared}"
