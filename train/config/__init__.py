"""Run configuration: YAML files in configs/ plus `key=value` overrides, checked strictly before anything runs.

As in nanoGPT, a config is plain data with defaults; unlike a dict, a mistyped key or a wrong type fails loudly,
naming the key and the valid choices. A config may extend another (`base: ../default.yaml`, relative to the file):
sections merge key by key, so it holds only what differs.

Modules: sections (the dataclasses and valid values), build (YAML tree -> Config, overrides, flat params), checks
(ranges, consistency, the tune search space, the model source), files (YAML files, `base:`, load_config),
applies (which settings shape a run of each model kind: the params it logs, the warning on the others).
"""

from train.config.applies import applies, ineffective_settings, ineffective_warning, run_params
from train.config.build import flat_params, parse_override, to_dict
from train.config.checks import DISTRIBUTIONS, apply_overrides, check_model_source, check_search_space
from train.config.files import load_config, load_tree
from train.config.sections import (
    CHOICES,
    RANGES,
    Config,
    ConfigError,
    DataConfig,
    ModelConfig,
    TrainConfig,
    TuneConfig,
)

__all__ = [
    "CHOICES",
    "DISTRIBUTIONS",
    "RANGES",
    "Config",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "TuneConfig",
    "applies",
    "apply_overrides",
    "ineffective_settings",
    "ineffective_warning",
    "run_params",
    "check_model_source",
    "check_search_space",
    "flat_params",
    "load_config",
    "load_tree",
    "parse_override",
    "to_dict",
]
