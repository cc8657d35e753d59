"""`base:` in configs: a config extends another (path relative to the file), sections merge key by key, cycles fail.

tests/data/configs_full/ keeps the full copies the configs had before they were reduced to `base:` plus what differs:
each reduced config must resolve to exactly the same Config."""

from __future__ import annotations

from pathlib import Path

import pytest

from train.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
FULL = REPO / "tests" / "data" / "configs_full"
REDUCED = sorted(p.relative_to(FULL) for p in FULL.rglob("*.yaml"))


def test_every_reduced_config_is_kept():
    assert len(REDUCED) == 10
    for rel in REDUCED:
        assert "base:" in (REPO / "configs" / rel).read_text(encoding="utf-8"), rel


@pytest.mark.parametrize("rel", REDUCED, ids=str)
def test_reduced_config_resolves_to_the_full_copy(rel):
    assert load_config(REPO / "configs" / rel) == load_config(FULL / rel)


def test_sections_merge_key_by_key_and_lists_replace(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "experiment: a\ndata:\n  languages: [en, ru]\n  eval_split: val\ntrain:\n  lr: 1.0e-4\n  seed: 7\n"
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("base: ../a.yaml\ndata:\n  languages: [tr]\ntrain:\n  seed: 8\n")
    cfg = load_config(tmp_path / "sub" / "b.yaml", ["train.epochs=3"])
    assert cfg.experiment == "a" and cfg.data.languages == ["tr"] and cfg.data.eval_split == "val"
    assert (cfg.train.lr, cfg.train.seed, cfg.train.epochs) == (1e-4, 8, 3)


def test_base_cycles_and_missing_bases_are_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("base: [a.yaml]\n")
    with pytest.raises(ConfigError, match="base"):
        load_config(tmp_path / "d.yaml")
