"""Reading config files: YAML, `base:` inheritance (sections merge key by key, cycles refused), overrides."""

from __future__ import annotations

from pathlib import Path

import yaml

from train.config.build import _build, _set_dotted, parse_override
from train.config.checks import _check_consistency
from train.config.sections import Config, ConfigError


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as fh:
        try:
            tree = yaml.safe_load(fh) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return tree


def _merge(base: dict, top: dict) -> dict:
    """`top` over `base`: sections (mappings) merge key by key, any other value (lists included) replaces."""
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_tree(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """A config file as one mapping, its `base:` chain resolved: `base: ../default.yaml` (relative to the file) means
    "that config, with what this file sets on top"."""
    path = Path(path)
    key = path.resolve()
    if key in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, key))
        raise ConfigError(f"{path}: `base:` forms a cycle ({chain})")
    tree = _read_yaml(path)
    base = tree.pop("base", None)
    if base is None:
        return tree
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path}: base: expected the path of another config file, got {base!r}")
    return _merge(load_tree(path.parent / base, (*_seen, key)), tree)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (or the defaults when path is None) with its `base:` chain, apply `key=value` overrides,
    validate everything."""
    tree: dict = load_tree(path) if path is not None else {}
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(tree, key, value)
    cfg = _build(Config, tree, "")
    _check_consistency(cfg)
    return cfg
