"""Where runs go: the embedded sqlite store under mlruns/ (created and migrated once, under a lock) or the server in
$MLFLOW_TRACKING_URI, and experiments by name. The store folder itself is decided by train.runtime.locate_store."""

from __future__ import annotations

import fcntl
import os

from train.runtime import locate_store, store_dir
from train.tracking.relocate import check_store_location


def describe_store() -> str:
    """Which store commands use and why, for messages such as "run not found"."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri and uri != _local_uri():
        return f"{uri} (from $MLFLOW_TRACKING_URI)"
    path, why = locate_store()
    return f"{path / 'mlflow.db'} ({why})"


def setup_tracking() -> str:
    """Use MLFLOW_TRACKING_URI when set (a team server); otherwise an embedded sqlite store under mlruns/.

    Set explicitly because MLflow's own default depends on what happens to be in the working directory.
    """
    import mlflow

    global _LOCAL_STORE
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    _LOCAL_STORE = not uri or uri == _local_uri()
    if _LOCAL_STORE:
        uri = _local_uri()
        _create_store_once(uri)
    mlflow.set_tracking_uri(uri)  # note: this also exports MLFLOW_TRACKING_URI to the environment
    # The registry follows the tracking URI by default; setting it here would export MLFLOW_REGISTRY_URI and pin it.
    return uri


_LOCAL_STORE = False
_CREATED: set[str] = set()


def _create_store_once(uri: str) -> None:
    """Create and migrate the sqlite store while holding a lock file in its folder. MLflow migrates a store that lacks
    tables on first use, unlocked: two commands started at once on a fresh store both run the migrations on one
    database, and one crashes. Under the lock the second one finds the tables there and only checks them."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    if uri in _CREATED:
        return
    folder = store_dir()
    check_store_location(folder)  # a moved or copied project: refuse before MLflow writes anything (tracking.relocate)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".create.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        SqlAlchemyStore(uri, (folder / "artifacts").as_uri()).engine.dispose()
    _CREATED.add(uri)


def _local_uri() -> str:
    return f"sqlite:///{store_dir() / 'mlflow.db'}"


def is_local_store() -> bool:
    """True when setup_tracking chose the embedded store (decided before mlflow exported the URI to the env)."""
    return _LOCAL_STORE


def get_experiment_id(name: str) -> str:
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    from mlflow.exceptions import MlflowException

    location = (store_dir() / "artifacts").as_uri() if is_local_store() else None
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except MlflowException:  # another command created it since we looked (two runs started at once)
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id
