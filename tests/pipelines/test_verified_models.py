"""A trained family's files checked before scoring unpickles them, and a missing tracking store after a
training: on copies of the trained lake (real Spark, Delta tables and MLflow on sqlite)."""

from __future__ import annotations

import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from pipelines.core.config import Config
from pipelines.core.registry import resolve_model
from pipelines.core.tracking import (
    ARTIFACT_HASH_TAG,
    CHAMPION,
    MissingStoreError,
    ModelIntegrityError,
    configure_mlflow,
    log_family,
    set_alias,
)
from tests.conftest import cfg_at, job_args

pytestmark = pytest.mark.slow


class _Trap:
    """Unpickled, it creates the file at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@dataclass(frozen=True)
class Registered:
    cfg: Config
    version: str
    folder: Path  # the version's artifacts in the store


@pytest.fixture
def registered(trained_lake, tmp_path) -> Registered:
    """A copy of the trained lake with a registry of its own: the trained family as version 1, champion
    (the shared lake's artifacts are never touched)."""
    root = tmp_path / "lake"
    shutil.copytree(trained_lake.cfg.lake_root, root, ignore=shutil.ignore_patterns("mlflow", "_meta"))
    cfg = cfg_at(root, trained_lake.cfg.landing_root)
    configure_mlflow(cfg)
    name, result = cfg.train.registered_model, trained_lake.result
    with mlflow.start_run(run_name="train 2024-05"):
        mlflow.set_tags({"stage": "train", "run_month": "2024-05", "promoted": "True"})
        version = log_family(result.family, result.test_frame, name)
    set_alias(name, CHAMPION, version)
    folder = Path(MlflowClient().get_model_version_download_uri(name, version))
    return Registered(cfg, version, folder)


def test_a_good_model_resolves_and_predicts_as_trained(registered: Registered, trained_lake):
    model = resolve_model(registered.cfg, "2024-05")
    assert (model.version, model.trained_as_of) == (registered.version, "2024-05")
    test = trained_lake.result.test_frame
    np.testing.assert_allclose(
        model.family.predict_proba(test), trained_lake.result.family.predict_proba(test)
    )


def test_scoring_refuses_a_swapped_family_before_unpickling(registered: Registered, tmp_path, capsys):
    from jobs.score import main as score_job

    marker = tmp_path / "unpickled"
    (registered.folder / "artifacts" / "family.pkl").write_bytes(pickle.dumps(_Trap(marker)))
    capsys.readouterr()
    assert score_job(["--month", "2024-05", *job_args(registered.cfg)]) == 20
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ERROR")]
    assert errors == [
        "ERROR score: ModelIntegrityError: churn_family version 1: file artifacts/family.pkl does not match "
        "the sha256 recorded at registration (artifacts changed in the store): not loaded"
    ]
    assert not marker.exists()
    assert not (Path(registered.cfg.lake_root) / "warning_list").exists()


def test_resolve_model_refuses_a_changed_byte_of_the_pyfunc(registered: Registered):
    path = registered.folder / "python_model.pkl"
    data = bytearray(path.read_bytes())
    data[-2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match=r"version 1: file python_model.pkl does not match"):
        resolve_model(registered.cfg, "2024-05")
    with pytest.raises(ModelIntegrityError, match=r"version 1: file python_model.pkl does not match"):
        resolve_model(registered.cfg, "2024-05", "1")


def test_resolve_model_refuses_a_version_without_hashes(registered: Registered):
    name = registered.cfg.train.registered_model
    MlflowClient().delete_model_version_tag(name, registered.version, ARTIFACT_HASH_TAG)
    with pytest.raises(ModelIntegrityError, match=f"{name} version 1 has no {ARTIFACT_HASH_TAG} tag"):
        resolve_model(registered.cfg, "2024-05")


def test_a_store_deleted_after_a_training_is_a_clear_error(trained_lake, tmp_path, capsys):
    from jobs.score import main as score_job

    root = tmp_path / "lake"
    shutil.copytree(trained_lake.cfg.lake_root, root)
    cfg = cfg_at(root, trained_lake.cfg.landing_root)
    db = root / "mlflow" / "mlflow.db"
    db.unlink()
    with pytest.raises(MissingStoreError, match=f"the MLflow store sqlite:///{db} is missing"):
        resolve_model(cfg, "2024-05")
    capsys.readouterr()
    assert score_job(["--month", "2024-05", *job_args(cfg)]) == 22
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "mlflow.allow_new_store=true" in errors[0]
    assert not db.exists()  # never recreated empty


def test_a_training_does_not_promote_over_a_champion_moved_meanwhile(
    spark, trained_lake, tmp_path, monkeypatch
):
    """Another training promotes between this one's gates and its promotion: the alias stays theirs."""
    from pipelines.core import tracking
    from pipelines.core.tracking import AliasMovedError, alias_version
    from pipelines.train import train_month

    root = tmp_path / "lake"
    shutil.copytree(trained_lake.cfg.lake_root, root)
    cfg = cfg_at(root, trained_lake.cfg.landing_root)
    name, load_family = cfg.train.registered_model, tracking.load_family

    def gates_see_then_another_promotes(model: str, version_or_alias: str):
        found = load_family(model, version_or_alias)
        if version_or_alias == CHAMPION:  # the race is on the champion the gates read (not on its refit_of)
            with mlflow.start_run(run_name="the other training"):
                other = tracking.log_family(found[0], trained_lake.result.test_frame, model)
            tracking.set_alias(model, CHAMPION, other)
        return found

    monkeypatch.setattr(tracking, "load_family", gates_see_then_another_promotes)
    with pytest.raises(AliasMovedError, match=r"champion now points at version 4, not 2 as when the gate"):
        train_month(spark, cfg, "2024-05", promote=True, reason="test")
    assert alias_version(name, CHAMPION) == "4"  # the trained lake's refit is 2; this training's gated 3
    mine = MlflowClient().get_model_version(name, "3")
    assert MlflowClient().get_run(mine.run_id).data.tags["promoted"] == "False"
