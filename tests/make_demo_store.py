"""A small MLflow store with real runs (2 seeds of a tiny transformer + 1 baseline) for the comparison, browser and
notebook tests, and for trying `stance runs` / `stance ui` / benchmarks/ui_screenshot.py by hand:

    python tests/make_demo_store.py /tmp/demo      # then: STANCE_MLRUNS=/tmp/demo/mlruns stance ui

Built once per test session (see `demo_store`): a training run takes seconds, but the suite runs on 2 cores.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # when run as a script
    sys.path.insert(0, str(REPO))

from tests.conftest import build_tiny_model, make_rows, tiny_overrides, write_jsonl  # noqa: E402

DEMO_EXPERIMENT = "stance-demo"
SEEDS = (1, 2)


@dataclass(frozen=True)
class DemoStore:
    root: Path
    store: Path  # the STANCE_MLRUNS folder: mlflow.db + artifacts/
    tracking_uri: str
    experiment: str
    experiment_id: str
    transformer_run_ids: tuple[str, ...]
    baseline_run_id: str

    @property
    def run_ids(self) -> tuple[str, ...]:
        return (*self.transformer_run_ids, self.baseline_run_id)


def build_demo_store(root: Path) -> DemoStore:
    """Train the demo runs into root/mlruns. Leaves the process's environment as it found it."""
    import mlflow

    from train.config import load_config
    from train.pipeline import run_training
    from train.tracking import setup_tracking

    root = Path(root).resolve()
    corpus = write_jsonl(root / "labeled" / "statements.jsonl", make_rows()).parent
    model_dir = build_tiny_model(root / "tiny-bert")
    store = root / "mlruns"
    saved = {k: os.environ.get(k) for k in ("STANCE_MLRUNS", "MLFLOW_TRACKING_URI")}
    os.environ["STANCE_MLRUNS"] = str(store)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    cwd = os.getcwd()
    # MLflow resolves an experiment's default artifact folder against the working directory: keep it inside root
    os.chdir(root)
    try:
        uri = setup_tracking()

        def train(*extra):
            kw = {"experiment": DEMO_EXPERIMENT, "register_as": "null", "output_dir": str(root / "outputs")}
            return run_training(load_config(None, tiny_overrides(corpus, model_dir, **kw) + list(extra)), quiet=True)

        transformer = tuple(train(f"train.seed={s}") for s in SEEDS)
        baseline = train("model.kind=baseline", "model.max_features=2000")
        exp_id = mlflow.get_experiment_by_name(DEMO_EXPERIMENT).experiment_id
    finally:
        os.chdir(cwd)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return DemoStore(root, store, uri, DEMO_EXPERIMENT, exp_id, transformer, baseline)


_BUILT: dict[str, DemoStore] = {}


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory) -> DemoStore:
    """Imported by several test modules; the module-level cache makes them share one store per session."""
    if "store" not in _BUILT:
        _BUILT["store"] = build_demo_store(tmp_path_factory.mktemp("demo-store"))
    return _BUILT["store"]


@pytest.fixture
def use_demo_store(demo_store, monkeypatch) -> DemoStore:
    """Point the project's tracking setup (and MLflow's globals) at the demo store for one test."""
    from train.tracking import setup_tracking

    monkeypatch.setenv("STANCE_MLRUNS", str(demo_store.store))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    setup_tracking()
    return demo_store


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/make_demo_store.py OUT_DIR")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    demo = build_demo_store(Path(sys.argv[1]))
    print(f"STANCE_MLRUNS={demo.store}  experiment {demo.experiment} (id {demo.experiment_id}), runs: {', '.join(demo.run_ids)}")
