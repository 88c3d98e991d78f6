"""Verified models, the champion's compare-and-set, a missing tracking store and MLflow retention, against
a real sqlite store in a temp folder (tiny families: no Spark)."""

from __future__ import annotations

import hashlib
import json
import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from pipelines.core.config import Config
from pipelines.core.tracking import (
    ARTIFACT_HASH_TAG,
    CHAMPION,
    STORE_MARKER,
    AliasMovedError,
    MissingStoreError,
    ModelIntegrityError,
    alias_version,
    configure_mlflow,
    load_family,
    load_uplift,
    log_family,
    log_uplift,
    move_alias,
    prune_mlflow,
    record_artifact_hashes,
    set_alias,
    store_exists,
)
from tests.pipelines.core.test_tracking import EXAMPLE, TinyFamily


class _Trap:
    """Unpickled, it creates the file at ``path``: proof that something was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.fixture
def cfg(make_cfg) -> Config:
    cfg = make_cfg("mlflow.experiment=trust-test")
    configure_mlflow(cfg)
    return cfg


def _register(cfg: Config, slope: float, *, month: str = "2024-05", promoted: bool = False) -> str:
    with mlflow.start_run(run_name=f"train {month}"):
        mlflow.set_tags({"run_month": month, "promoted": str(promoted)})
        return log_family(TinyFamily(slope), EXAMPLE, cfg.train.registered_model)


def _stored(name: str, version: str) -> Path:
    """The folder of a version's artifacts in the store (not a copy)."""
    return Path(MlflowClient().get_model_version_download_uri(name, version))


def test_registration_records_the_sha256_of_every_file(cfg: Config):
    name = cfg.train.registered_model
    version = _register(cfg, 0.01)
    folder = _stored(name, version)
    recorded = json.loads(MlflowClient().get_model_version(name, version).tags[ARTIFACT_HASH_TAG])
    files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
    assert {"MLmodel", "python_model.pkl", "artifacts/family.pkl"} <= set(files)
    assert recorded == {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in files.items()}
    family, loaded = load_family(name, version)
    assert loaded == version and family == TinyFamily(0.01)


@pytest.mark.parametrize("changed", ["artifacts/family.pkl", "python_model.pkl"])
def test_a_changed_byte_is_refused(cfg: Config, changed: str):
    name = cfg.train.registered_model
    version = _register(cfg, 0.01)
    path = _stored(name, version) / changed
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError) as caught:
        load_family(name, version)
    assert str(caught.value) == (
        f"{name} version {version}: file {changed} does not match the sha256 recorded at registration "
        "(artifacts changed in the store): not loaded"
    )
    assert caught.value.exit_status == 20


@pytest.mark.parametrize("changed", ["artifacts/family.pkl", "python_model.pkl"])
def test_a_swapped_pickle_is_refused_before_it_is_unpickled(cfg: Config, tmp_path: Path, changed: str):
    name = cfg.train.registered_model
    version = _register(cfg, 0.01)
    set_alias(name, CHAMPION, version)
    # the trap works: unpickled, it leaves its file
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Trap(probe)))
    assert probe.exists()
    marker = tmp_path / "unpickled"
    (_stored(name, version) / changed).write_bytes(pickle.dumps(_Trap(marker)))
    with pytest.raises(ModelIntegrityError, match=f"version {version}: file {changed} does not match"):
        load_family(name, CHAMPION)
    assert not marker.exists()


def test_an_extra_or_missing_file_is_refused(cfg: Config):
    name = cfg.train.registered_model
    extra, missing = _register(cfg, 0.01), _register(cfg, 0.02)
    (_stored(name, extra) / "artifacts" / "more.pkl").write_bytes(b"x")
    (_stored(name, missing) / "requirements.txt").unlink()
    with pytest.raises(ModelIntegrityError, match=r"file artifacts/more.pkl was not there at registration"):
        load_family(name, extra)
    with pytest.raises(ModelIntegrityError, match=r"version 2: file requirements.txt is missing"):
        load_family(name, missing)


def test_a_version_without_the_tag_is_refused_until_trusted_on_purpose(cfg: Config):
    name = cfg.train.registered_model
    version = _register(cfg, 0.03)
    MlflowClient().delete_model_version_tag(name, version, ARTIFACT_HASH_TAG)
    with pytest.raises(ModelIntegrityError, match=f"{name} version {version} has no {ARTIFACT_HASH_TAG} tag"):
        load_family(name, version)
    record_artifact_hashes(name, version)
    assert load_family(name, version) == (TinyFamily(0.03), version)


def test_the_uplift_model_is_verified_too(cfg: Config, tmp_path: Path):
    name = cfg.uplift.registered_model
    with mlflow.start_run():
        version = log_uplift(TinyFamily(0.5), name, "2024-05")
    set_alias(name, CHAMPION, version)
    model, loaded, month = load_uplift(name, CHAMPION)
    assert (model, loaded, month) == (TinyFamily(0.5), version, "2024-05")
    marker = tmp_path / "unpickled"
    (_stored(name, version) / "artifacts" / "uplift.pkl").write_bytes(pickle.dumps(_Trap(marker)))
    with pytest.raises(ModelIntegrityError, match=f"{name} version {version}: file artifacts/uplift.pkl"):
        load_uplift(name, CHAMPION)
    assert not marker.exists()


def test_the_champion_moves_only_from_where_the_gate_looked(cfg: Config):
    name = cfg.train.registered_model
    first, second, third = _register(cfg, 0.01), _register(cfg, 0.02), _register(cfg, 0.03)
    move_alias(name, CHAMPION, first, expected=None)
    assert alias_version(name, CHAMPION) == first
    # a training that compared against "no champion" while another promoted version 1 meanwhile
    with pytest.raises(AliasMovedError) as caught:
        move_alias(name, CHAMPION, second, expected=None)
    assert str(caught.value) == (
        f"{name}@champion now points at version {first}, not None as when the gate compared: another run "
        f"moved it meanwhile; version {second} not promoted (rerun to compare again)"
    )
    assert caught.value.exit_status == 21
    assert alias_version(name, CHAMPION) == first
    move_alias(name, CHAMPION, third, expected=first)
    assert alias_version(name, CHAMPION) == third
    with pytest.raises(AliasMovedError, match=f"now points at version {third}, not {first}"):
        move_alias(name, CHAMPION, second, expected=first)
    move_alias(name, CHAMPION, None, expected=third)  # taken off only from where it was
    assert alias_version(name, CHAMPION) is None


def test_a_missing_store_is_an_error_not_a_new_registry(cfg: Config, make_cfg):
    name = cfg.train.registered_model
    db = Path(cfg.mlflow_tracking_uri.removeprefix("sqlite:///"))
    marker = Path(cfg.lake_root) / STORE_MARKER
    assert db.is_file() and "lake.root/mlflow/mlflow.db" in json.loads(marker.read_text())["stores"]
    set_alias(name, CHAMPION, _register(cfg, 0.01))
    db.unlink()
    for reader in (configure_mlflow, store_exists):
        with pytest.raises(MissingStoreError) as caught:
            reader(cfg)
        message = str(caught.value)
        assert message.startswith(f"the MLflow store {cfg.mlflow_tracking_uri} is missing")
        assert "--set mlflow.allow_new_store=true" in message and "\n" not in message
        assert caught.value.exit_status == 22
    assert not db.exists()
    # started over on purpose: an empty registry
    fresh = make_cfg("mlflow.experiment=trust-test", "mlflow.allow_new_store=true")
    configure_mlflow(fresh)
    assert db.is_file() and alias_version(name, CHAMPION) is None
    assert configure_mlflow(cfg) is not None  # the store is there again: no error


def test_a_store_made_before_the_marker_is_remembered(cfg: Config):
    marker = Path(cfg.lake_root) / STORE_MARKER
    marker.unlink()
    configure_mlflow(cfg)
    assert list(json.loads(marker.read_text())["stores"]) == ["lake.root/mlflow/mlflow.db"]


def test_prune_keeps_the_champion_and_every_promoted_version(make_cfg):
    cfg = make_cfg(
        "mlflow.experiment=trust-test", "mlflow.retention.keep_versions=1", "mlflow.retention.run_days=30"
    )
    client = configure_mlflow(cfg)
    name = cfg.train.registered_model
    promoted = _register(cfg, 0.01, month="2024-03", promoted=True)  # a past month's rescoring uses it
    plain = [_register(cfg, 0.02, month="2024-04"), _register(cfg, 0.03, month="2024-05")]
    champion = _register(cfg, 0.04, month="2024-06")  # kept for its alias alone
    newest = _register(cfg, 0.05, month="2024-07")  # the newest keep_versions
    set_alias(name, CHAMPION, champion)
    with mlflow.start_run(run_name="report only") as orphan:
        mlflow.set_tag("stage", "evaluate")
    runs = {v: client.get_model_version(name, v).run_id for v in (promoted, *plain, champion, newest)}
    # nothing is old enough yet: only versions go
    report = prune_mlflow(cfg, now=datetime.now(UTC))
    assert report.deleted_versions == {name: sorted(plain, reverse=True)}
    assert report.deleted_runs == []
    left = {str(v.version) for v in client.search_model_versions(f"name='{name}'")}
    assert left == {promoted, champion, newest}
    assert load_family(name, CHAMPION) == (TinyFamily(0.04), champion)
    # a year later: runs behind no kept version go, for good
    later = prune_mlflow(cfg, now=datetime.now(UTC) + timedelta(days=365))
    assert later.deleted_versions == {}
    assert set(later.deleted_runs) == {runs[v] for v in plain} | {orphan.info.run_id}
    experiment = client.get_experiment_by_name("trust-test").experiment_id
    kept = {r.info.run_id for r in client.search_runs([experiment], run_view_type=3)}  # ALL, deleted too
    assert kept == {runs[promoted], runs[champion], runs[newest]}
    assert load_family(name, promoted) == (TinyFamily(0.01), promoted)
