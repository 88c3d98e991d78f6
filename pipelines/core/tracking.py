"""MLflow helpers: the tracking store under the lake, the family as a pyfunc, registry aliases.

With the default config the store is sqlite at ``<lake.root>/mlflow/mlflow.db`` and artifacts live in
``<lake.root>/mlflow/artifacts``; ``mlflow.tracking_uri`` / ``registry_uri`` point elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipelines.core.config import Config

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
# the tag of a registered version holding the sha256 of every file of its artifacts, as JSON
ARTIFACT_HASH_TAG = "churnlake.sha256"
# where a lake remembers the tracking stores it created (a missing one is then an error, not a new store)
STORE_MARKER = "_meta/mlflow_store.json"


class ModelIntegrityError(RuntimeError):
    """A registered model's files differ from the hashes recorded at registration (or none were recorded):
    it is not loaded, since loading unpickles it (code execution)."""

    exit_status = 20


class AliasMovedError(RuntimeError):
    """An alias no longer points at the version a promotion gate compared against: another run moved it."""

    exit_status = 21


class MissingStoreError(RuntimeError):
    """The tracking store this lake created is gone: never silently replaced by an empty one."""

    exit_status = 22


# tracking stores being opened by a background thread (open_in_background), by URI
_OPENING: dict[str, threading.Thread] = {}


def open_in_background(cfg: Config) -> None:
    """Open the tracking store in a thread while the first stages run: the first open of a new sqlite
    store creates its tables (several seconds). :func:`configure_mlflow` waits for it."""
    uri = cfg.mlflow_tracking_uri
    if uri not in _OPENING:
        _OPENING[uri] = threading.Thread(target=_open_quietly, args=(cfg,), name="mlflow-open", daemon=True)
        _OPENING[uri].start()


def _open_quietly(cfg: Config) -> None:
    try:
        configure_mlflow(cfg)
    except Exception as exc:  # the stage that needs the store meets the error itself, with its context
        log.debug("opening the tracking store in the background failed: %s", exc)


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def _marker_path(cfg: Config) -> Path | None:
    """The lake's record of the stores it created; None for a lake that is not a local folder."""
    root = cfg.lake_root
    return None if "://" in root else Path(root) / STORE_MARKER


def _known_stores(cfg: Config) -> dict[str, Any]:
    marker = _marker_path(cfg)
    if marker is None or not marker.exists():
        return {}
    return dict(json.loads(marker.read_text()).get("stores", {}))


def _store_key(cfg: Config) -> str:
    """How the marker names the configured store: the lake's own store (no ``mlflow.tracking_uri``) by
    its place in the lake, so a lake copied or moved elsewhere still knows it had one."""
    return cfg.mlflow.tracking_uri or "lake.root/mlflow/mlflow.db"


def _remember_store(cfg: Config) -> None:
    """Add the configured store to the lake's marker (atomically: a temp file renamed over it)."""
    marker = _marker_path(cfg)
    stores = _known_stores(cfg)
    key = _store_key(cfg)
    if marker is None or key in stores:
        return
    stores[key] = {"created_at": datetime.now(UTC).isoformat(timespec="seconds")}
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"stores": stores}, indent=1) + "\n")
    os.replace(tmp, marker)


def _check_store(cfg: Config) -> bool:
    """Whether the sqlite store exists; raises :class:`MissingStoreError` when it does not but the lake
    recorded creating it (unless ``mlflow.allow_new_store``)."""
    uri = cfg.mlflow_tracking_uri
    path = _sqlite_path(uri)
    if path is None or path.exists():
        return True
    known = _known_stores(cfg).get(_store_key(cfg))
    if known is not None and not cfg.mlflow.allow_new_store:
        raise MissingStoreError(
            f"the MLflow store {uri} is missing, but this lake created it on {known.get('created_at')} "
            f"({_marker_path(cfg)}): restore it from a backup (with its artifacts folder), or start an empty "
            "registry on purpose with --set mlflow.allow_new_store=true (no champion: the next run retrains)"
        )
    return False


def _forget_cached_stores() -> None:
    """MLflow keeps an opened store per URI for the life of the process: a sqlite file that is not there
    must be created afresh, not reached through the cached engine of a file that was removed."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore
    from mlflow.tracking._model_registry.registry import ModelRegistryStoreRegistry
    from mlflow.tracking._tracking_service.registry import TrackingStoreRegistry

    for registry in (TrackingStoreRegistry, ModelRegistryStoreRegistry):
        clear = getattr(getattr(registry, "_get_store_with_resolved_uri", None), "cache_clear", None)
        if clear is not None:
            clear()
    for store in (TrackingStore, RegistryStore):
        engines = getattr(store, "_engine_map", {})
        for uri in [u for u in engines if u.startswith("sqlite:")]:
            engines.pop(uri).dispose()


def store_exists(cfg: Config) -> bool:
    """Whether the tracking store may hold anything: false for a sqlite store whose file is not there yet
    (a reader need not create one just to find it empty); a store this lake created that is gone raises
    :class:`MissingStoreError` instead of reading as empty."""
    return _check_store(cfg)


def configure_mlflow(cfg: Config) -> MlflowClient:
    """Point MLflow at the configured store and make sure the experiment exists (artifacts under the lake)."""
    opening = _OPENING.get(cfg.mlflow_tracking_uri)
    if opening is not None and opening is not threading.current_thread():
        opening.join()
    uri = cfg.mlflow_tracking_uri
    _check_store(cfg)
    path = _sqlite_path(uri)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            _forget_cached_stores()
    for noisy in ("alembic", "mlflow.store.db.utils"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(cfg.mlflow.registry_uri or uri)
    client = MlflowClient()
    if client.get_experiment_by_name(cfg.mlflow.experiment) is None:
        location = cfg.mlflow_artifact_root if not cfg.mlflow.tracking_uri else None
        client.create_experiment(cfg.mlflow.experiment, artifact_location=location)
    mlflow.set_experiment(cfg.mlflow.experiment)
    if path is not None:  # created now, or made before the lake kept the record: remembered from now on
        _remember_store(cfg)
    return client


class PickledModel(mlflow.pyfunc.PythonModel):
    """A pyfunc around one pickled object of this package: the artifact named ``ARTIFACT``, loaded as the
    attribute of that name."""

    ARTIFACT = ""

    def load_context(self, context: Any) -> None:
        with open(context.artifacts[self.ARTIFACT], "rb") as fh:
            setattr(self, self.ARTIFACT, pickle.load(fh))


class ChurnFamilyModel(PickledModel):
    """The whole cohort family as one pyfunc: ``predict`` returns calibrated churn probabilities."""

    ARTIFACT = "family"

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        return self.family.predict_proba(model_input)


def family_signature(family: Any, example: pd.DataFrame) -> Any:
    """Input columns as the family reads them, every one optional: categories as strings, numbers and
    booleans as any. MLflow refuses int -> double, and whether a batch holds a null decides if pandas
    gives an integer column as ints or floats, a boolean one as bools or objects; the family converts."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema, TensorSpec

    specs = []
    for name in dict.fromkeys([*family.features, family.spec.tenure]):
        if name in family.encoder.categories:
            specs.append(ColSpec("string", name, required=False))
        else:
            specs.append(ColSpec(AnyType(), name, required=False))
    return ModelSignature(Schema(specs), Schema([TensorSpec(np.dtype("float64"), (-1,))]))


# what the logged family needs to load and predict (besides this package: the pickled classes live in it)
RUNTIME_PACKAGES = ("mlflow", "lightgbm", "scikit-learn", "numpy", "pandas", "pyarrow", "scipy")


def runtime_requirements() -> list[str]:
    """The installed versions of :data:`RUNTIME_PACKAGES`, pinned: declared, so MLflow does not infer them
    (inference loads the model in a subprocess, a large share of a training job's time)."""
    from importlib import metadata

    return [f"{name}=={metadata.version(name)}" for name in RUNTIME_PACKAGES]


def log_family(family: Any, example: pd.DataFrame, registered_model: str) -> str:
    """Log the family as a pyfunc in the active run, register it and return the new version."""
    return log_pickled(
        family, ChurnFamilyModel(), "model", registered_model, signature=family_signature(family, example)
    )


def log_pickled(
    obj: Any, python_model: PickledModel, name: str, registered_model: str, signature: Any = None
) -> str:
    """Log ``obj`` pickled as the artifact of ``python_model`` (a pyfunc named ``name``) in the active run,
    register it as ``registered_model`` and return the new version."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{python_model.ARTIFACT}.pkl"
        path.write_bytes(pickle.dumps(obj))
        pyfunc_log = logging.getLogger("mlflow.pyfunc")
        level = pyfunc_log.level
        pyfunc_log.setLevel(logging.ERROR)  # pickled on purpose: it holds fitted boosters
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            info = mlflow.pyfunc.log_model(
                name=name,
                python_model=python_model,
                artifacts={python_model.ARTIFACT: str(path)},
                signature=signature,
                pip_requirements=runtime_requirements(),
                registered_model_name=registered_model,
            )
        pyfunc_log.setLevel(level)
    version = str(info.registered_model_version)
    record_artifact_hashes(registered_model, version)
    return version


def artifact_hashes(folder: Path) -> dict[str, str]:
    """The sha256 of every file under ``folder``, by its path relative to it (POSIX separators)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        # MLflow writes registered_model_meta (the registered name and version, YAML) into the
        # version's copy after registration; it is never unpickled
        if path.is_file() and path.name != "registered_model_meta":
            with open(path, "rb") as fh:
                out[path.relative_to(folder).as_posix()] = hashlib.file_digest(fh, "sha256").hexdigest()
    return out


@contextmanager
def _downloaded(name: str, version: str) -> Iterator[Path]:
    """A private local copy of a registered version's artifacts (the store's own location, not the
    ``models:/`` URI, whose download adds a file of MLflow's own); removed on exit."""
    uri = MlflowClient().get_model_version_download_uri(name, version)
    with tempfile.TemporaryDirectory(prefix="churnlake-model-") as tmp:
        yield Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))


def record_artifact_hashes(name: str, version: str) -> dict[str, str]:
    """Hash every file of a registered version's artifacts and keep the hashes as its
    :data:`ARTIFACT_HASH_TAG` tag, so loading can refuse changed files. Called at registration; for a
    version registered before verification existed, only after checking its files are trustworthy."""
    with _downloaded(name, version) as local:
        hashes = artifact_hashes(local)
    MlflowClient().set_model_version_tag(name, version, ARTIFACT_HASH_TAG, json.dumps(hashes, sort_keys=True))
    return hashes


def _difference(expected: dict[str, str], found: dict[str, str]) -> str | None:
    """The first file that differs, as words, or None."""
    for path in sorted(expected.keys() | found.keys()):
        if path not in found:
            return f"file {path} is missing"
        if path not in expected:
            return f"file {path} was not there at registration"
        if expected[path] != found[path]:
            return f"file {path} does not match the sha256 recorded at registration"
    return None


def load_verified(name: str, version: str) -> Any:
    """The python model of a registered version, loaded only after every file of its artifacts matched
    the hashes recorded at registration: downloaded to a private folder, hashed, then loaded from that
    copy (a file swapped in the store after the check is never read). Raises :class:`ModelIntegrityError`
    before anything is unpickled."""
    client = MlflowClient()
    recorded = client.get_model_version(name, version).tags.get(ARTIFACT_HASH_TAG)
    if not recorded:
        raise ModelIntegrityError(
            f"{name} version {version} has no {ARTIFACT_HASH_TAG} tag (registered without verification): "
            "not loaded; retrain, or trust it on purpose (docs/operations.md, verified models)"
        )
    try:
        expected = json.loads(recorded)
    except ValueError:
        raise ModelIntegrityError(
            f"{name} version {version}: its {ARTIFACT_HASH_TAG} tag is not JSON: not loaded"
        ) from None
    with _downloaded(name, version) as local:
        problem = _difference(expected, artifact_hashes(local))
        if problem is not None:
            raise ModelIntegrityError(
                f"{name} version {version}: {problem} (artifacts changed in the store): not loaded"
            )
        return mlflow.pyfunc.load_model(str(local)).unwrap_python_model()


def load_family(name: str, version_or_alias: str) -> tuple[Any, str] | None:
    """The family of a registered version (``"3"``) or alias (``"champion"``) and its version, or None."""
    client = MlflowClient()
    try:
        if version_or_alias.isdigit():
            version = client.get_model_version(name, version_or_alias).version
        else:
            version = client.get_model_version_by_alias(name, version_or_alias).version
    except MlflowException:
        return None
    return load_verified(name, str(version)).family, str(version)


def alias_version(name: str, alias: str) -> str | None:
    """The version an alias points at, or None (no such model or alias)."""
    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def champion_of(cfg: Config, name: str) -> str | None:
    """The version ``name@champion`` points at now, or None (no such model or alias, or no store yet: none
    is created just to find it empty)."""
    if not store_exists(cfg):
        return None
    configure_mlflow(cfg)
    return alias_version(name, CHAMPION)


def set_alias(name: str, alias: str, version: str) -> None:
    """Point ``alias`` at ``version`` whatever it held (``challenger``: no gate compared against it)."""
    MlflowClient().set_registered_model_alias(name, alias, version)


def move_alias(name: str, alias: str, version: str | None, *, expected: str | None) -> None:
    """Compare-and-set: point ``alias`` at ``version`` (None: take it off) only while it still points at
    ``expected``, the version the promotion gate compared against (None: it had none). Re-read right
    before setting and checked after, so two trainings at once cannot leave the older one as champion;
    :class:`AliasMovedError` otherwise. One function, so a lake lease can later wrap it whole."""
    current = alias_version(name, alias)
    if current != expected:
        raise AliasMovedError(
            f"{name}@{alias} now points at version {current}, not {expected} as when the gate compared: "
            f"another run moved it meanwhile; version {version} not promoted (rerun to compare again)"
        )
    if version is None:
        if current is not None:
            MlflowClient().delete_registered_model_alias(name, alias)
    else:
        MlflowClient().set_registered_model_alias(name, alias, version)
    after = alias_version(name, alias)
    if after != version:
        raise AliasMovedError(
            f"{name}@{alias} points at version {after} right after it was set to {version}: another run "
            "moved it at the same moment (rerun to compare again)"
        )


class OfferUpliftModel(PickledModel):
    """The offers' uplift model (:class:`models.uplift.UpliftModel`) as a pyfunc: ``predict`` returns a
    frame of lines x offers, each offer's predicted churn reduction (NaN: no model, the rule)."""

    ARTIFACT = "uplift"

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return pd.DataFrame(self.uplift.predict_effect(model_input), columns=list(self.uplift.offer_ids))


# the tag on a registered uplift version: the run month whose matured experiment it was fitted on
RUN_MONTH_TAG = "run_month"


def log_uplift(uplift: Any, registered_model: str, run_month: str) -> str:
    """Log the uplift model as a pyfunc in the active run, register it (tagged with ``run_month``) and
    return the new version."""
    version = log_pickled(uplift, OfferUpliftModel(), "uplift", registered_model)
    MlflowClient().set_model_version_tag(registered_model, version, RUN_MONTH_TAG, run_month)
    return version


def load_uplift(name: str, alias: str) -> tuple[Any, str, str | None] | None:
    """The uplift model an alias points at, its version and the run month it was fitted as of, or None."""
    client = MlflowClient()
    try:
        found = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    model = load_verified(name, str(found.version))
    return model.uplift, str(found.version), found.tags.get(RUN_MONTH_TAG)


def remove_alias(name: str, alias: str) -> bool:
    """Take the alias off whatever version holds it; whether one did."""
    if alias_version(name, alias) is None:
        return False
    MlflowClient().delete_registered_model_alias(name, alias)
    return True


@dataclass
class MlflowPruneReport:
    """What :func:`prune_mlflow` deleted: registered versions by model name, and run ids."""

    deleted_versions: dict[str, list[str]] = field(default_factory=dict)
    deleted_runs: list[str] = field(default_factory=list)


def _all_runs(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Any]:
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def prune_mlflow(cfg: Config, *, now: datetime, purge: bool = True) -> MlflowPruneReport:
    """Bound the tracking store (``mlflow.retention``): registered versions of the churn and uplift models
    beyond the newest ``keep_versions`` are deleted unless an alias points at them or they were ever
    promoted (their run's ``promoted`` tag: rescoring a past month uses the newest promoted version trained
    by then, :mod:`pipelines.core.registry`); then runs that started more than ``run_days`` before ``now``
    and back no kept version (nor are children of one) are deleted. ``purge`` removes what was deleted
    for good, artifacts included (``mlflow gc`` on exactly those runs and logged models)."""
    report = MlflowPruneReport()
    if not store_exists(cfg):
        return report
    client = configure_mlflow(cfg)
    keep = cfg.mlflow.retention
    backing: set[str] = set()
    logged_models: list[str] = []
    for name in dict.fromkeys([cfg.train.registered_model, cfg.uplift.registered_model]):
        try:
            aliased = {str(v) for v in client.get_registered_model(name).aliases.values()}
        except MlflowException:
            continue  # not registered in this store
        versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: -int(v.version))
        for rank, mv in enumerate(versions):
            run_id: str = mv.run_id or ""
            promoted = bool(run_id) and _run_tag(client, run_id, "promoted") == "True"
            if rank < keep.keep_versions or str(mv.version) in aliased or promoted:
                backing.update([run_id] if run_id else [])
                continue
            client.delete_model_version(name, str(mv.version))
            report.deleted_versions.setdefault(name, []).append(str(mv.version))
            model_id: str | None = getattr(mv, "model_id", None)
            if model_id:  # MLflow 3 keeps the files as a logged model of their own
                client.delete_logged_model(model_id)
                logged_models.append(model_id)
    experiment = client.get_experiment_by_name(cfg.mlflow.experiment)
    cutoff = int((now - timedelta(days=keep.run_days)).timestamp() * 1000)
    if experiment is not None:
        for run in _all_runs(client, experiment.experiment_id, f"attributes.start_time < {cutoff}"):
            parent = run.data.tags.get("mlflow.parentRunId")
            if run.info.run_id in backing or parent in backing:
                continue
            client.delete_run(run.info.run_id)
            report.deleted_runs.append(run.info.run_id)
    if purge and (report.deleted_runs or logged_models):
        _purge(cfg, report.deleted_runs, logged_models)
    log.info(
        "mlflow retention: deleted versions %s and %d runs",
        report.deleted_versions or "none",
        len(report.deleted_runs),
    )
    return report


def _run_tag(client: MlflowClient, run_id: str, tag: str) -> str | None:
    try:
        return client.get_run(run_id).data.tags.get(tag)
    except MlflowException:  # its run is gone (deleted for good)
        return None


def _purge(cfg: Config, run_ids: list[str], logged_models: list[str]) -> None:
    """``mlflow gc`` on exactly these (already deleted) runs and logged models: records and artifacts."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "mlflow", "gc", "--backend-store-uri", cfg.mlflow_tracking_uri]
    if run_ids:
        command += ["--run-ids", ",".join(run_ids)]
    if logged_models:
        command += ["--logged-model-ids", ",".join(logged_models)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(f"mlflow gc failed: {lines[-1] if lines else done.returncode}")
