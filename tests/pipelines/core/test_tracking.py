"""The MLflow helpers against a real sqlite store in a temp folder: the store and experiment under the
lake, a family logged and registered as a pyfunc, loaded back by version and alias, aliases moved."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipelines.core.config import Config
from pipelines.core.tracking import (
    CHALLENGER,
    CHAMPION,
    alias_version,
    champion_of,
    configure_mlflow,
    family_signature,
    load_family,
    log_family,
    set_alias,
)


@dataclass(frozen=True)
class _Spec:
    tenure: str


@dataclass(frozen=True)
class _Encoder:
    categories: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class TinyFamily:
    """What the tracking helpers need of a family: features, the tenure column, the encoder's categories
    and calibrated probabilities (here a fixed rule, so a loaded copy can be told from another)."""

    slope: float
    features: tuple[str, ...] = ("plan_type", "arpu_3m")
    spec: _Spec = _Spec("tenure_months")
    encoder: _Encoder = _Encoder({"plan_type": ("postpaid", "prepaid")})

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return np.clip(self.slope * frame["arpu_3m"].astype(float).to_numpy(), 0.0, 1.0)


EXAMPLE = pd.DataFrame(
    {"plan_type": ["postpaid", "prepaid"], "arpu_3m": [10.0, 40.0], "tenure_months": [3, 30]}
)


@dataclass(frozen=True)
class Store:
    cfg: Config
    client: MlflowClient
    root: Path  # the test's temp folder (the lake is root/lake)


@pytest.fixture
def store(make_cfg, tmp_path: Path) -> Store:
    cfg = make_cfg("mlflow.experiment=tracking-test")
    return Store(cfg, configure_mlflow(cfg), tmp_path)


def test_the_store_and_the_experiment_live_under_the_lake(store: Store):
    cfg, client, tmp_path = store.cfg, store.client, store.root
    assert (tmp_path / "lake" / "mlflow" / "mlflow.db").is_file()
    assert mlflow.get_tracking_uri() == f"sqlite:///{tmp_path}/lake/mlflow/mlflow.db"
    experiment = client.get_experiment_by_name("tracking-test")
    assert experiment.artifact_location.endswith(f"{tmp_path}/lake/mlflow/artifacts")
    # a second configuration finds the experiment instead of creating another
    configure_mlflow(cfg)
    named = [e for e in MlflowClient().search_experiments() if e.name == "tracking-test"]
    assert [e.experiment_id for e in named] == [experiment.experiment_id]


def test_the_signature_takes_categories_as_strings_and_every_column_as_optional():
    signature = family_signature(TinyFamily(0.01), EXAMPLE)
    inputs = {c.name: c for c in signature.inputs.inputs}
    assert list(inputs) == ["plan_type", "arpu_3m", "tenure_months"]
    assert inputs["plan_type"].type.name == "string"
    assert all(not c.required for c in inputs.values())
    assert signature.outputs.inputs[0].type == np.dtype("float64")


def test_a_logged_family_loads_back_by_version_and_alias(store: Store):
    name = store.cfg.train.registered_model
    with mlflow.start_run():
        first = log_family(TinyFamily(0.01), EXAMPLE, name)
    with mlflow.start_run():
        second = log_family(TinyFamily(0.02), EXAMPLE, name)
    assert (first, second) == ("1", "2")
    assert alias_version(name, CHAMPION) is None and alias_version("no-such-model", CHAMPION) is None
    set_alias(name, CHAMPION, first)
    set_alias(name, CHALLENGER, second)
    assert (alias_version(name, CHAMPION), alias_version(name, CHALLENGER)) == ("1", "2")
    loaded = load_family(name, CHAMPION)
    assert loaded is not None and loaded[1] == "1"
    np.testing.assert_allclose(loaded[0].predict_proba(EXAMPLE), [0.1, 0.4])
    family, version = load_family(name, "2")
    assert version == "2" and family == TinyFamily(0.02)
    # the pyfunc predicts what the family predicts
    model = mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}")
    np.testing.assert_allclose(model.predict(EXAMPLE), [0.1, 0.4])
    set_alias(name, CHAMPION, second)
    assert load_family(name, CHAMPION)[1] == "2"
    assert champion_of(store.cfg, name) == "2" and champion_of(store.cfg, "no-such-model") is None
    assert load_family(name, "7") is None and load_family(name, "retired") is None


def test_looking_up_a_champion_creates_no_store(make_cfg, tmp_path: Path):
    cfg = make_cfg()
    assert champion_of(cfg, cfg.train.registered_model) is None
    assert not (tmp_path / "lake" / "mlflow").exists()
