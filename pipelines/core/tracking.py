"""MLflow helpers: the tracking store under the lake, the family as a pyfunc, registry aliases.

With the default config the store is sqlite at ``<lake.root>/mlflow/mlflow.db`` and artifacts live in
``<lake.root>/mlflow/artifacts``; ``mlflow.tracking_uri`` / ``registry_uri`` point elsewhere.
"""

from __future__ import annotations

import logging
import pickle
import tempfile
import threading
import warnings
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


def store_exists(cfg: Config) -> bool:
    """Whether the tracking store may hold anything: false for a sqlite store whose file is not there yet
    (a reader need not create one just to find it empty)."""
    uri = cfg.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).exists()
    return True


def configure_mlflow(cfg: Config) -> MlflowClient:
    """Point MLflow at the configured store and make sure the experiment exists (artifacts under the lake)."""
    opening = _OPENING.get(cfg.mlflow_tracking_uri)
    if opening is not None and opening is not threading.current_thread():
        opening.join()
    uri = cfg.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    for noisy in ("alembic", "mlflow.store.db.utils"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(cfg.mlflow.registry_uri or uri)
    client = MlflowClient()
    if client.get_experiment_by_name(cfg.mlflow.experiment) is None:
        location = cfg.mlflow_artifact_root if not cfg.mlflow.tracking_uri else None
        client.create_experiment(cfg.mlflow.experiment, artifact_location=location)
    mlflow.set_experiment(cfg.mlflow.experiment)
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
    return str(info.registered_model_version)


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
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    return model.unwrap_python_model().family, str(version)


def alias_version(name: str, alias: str) -> str | None:
    """The version an alias points at, or None (no such model or alias)."""
    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def set_alias(name: str, alias: str, version: str) -> None:
    MlflowClient().set_registered_model_alias(name, alias, version)


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
    model = mlflow.pyfunc.load_model(f"models:/{name}/{found.version}")
    return model.unwrap_python_model().uplift, str(found.version), found.tags.get(RUN_MONTH_TAG)


def remove_alias(name: str, alias: str) -> bool:
    """Take the alias off whatever version holds it; whether one did."""
    if alias_version(name, alias) is None:
        return False
    MlflowClient().delete_registered_model_alias(name, alias)
    return True
