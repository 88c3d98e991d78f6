from pathlib import Path

import pytest

from pipelines.core.config import ConfigError, load_config, parse_override


def test_layers_then_overrides_win(tmp_path: Path):
    overlay = tmp_path / "env.yml"
    overlay.write_text("spark:\n  shuffle_partitions: 3\nchurn:\n  window_months: 2\n")
    cfg = load_config([overlay], ["churn.window_months=3", "lake.root=/lake/x"])
    assert cfg.spark.shuffle_partitions == 3
    assert cfg.churn.window_months == 3
    assert cfg.lake_root == "/lake/x"
    assert cfg.table_path("warning_list") == "/lake/x/warning_list"
    # untouched keys keep base values
    assert cfg.churn.counted_reasons == ("port_out", "voluntary")


def test_unknown_key_names_file_and_key(tmp_path: Path):
    overlay = tmp_path / "bad.yml"
    overlay.write_text("spark:\n  driver_memry: 4g\n")
    with pytest.raises(ConfigError) as err:
        load_config([overlay])
    assert str(overlay) in str(err.value)
    assert "spark.driver_memry: unknown key" in str(err.value)


def test_wrong_type_names_file_and_key(tmp_path: Path):
    overlay = tmp_path / "bad.yml"
    overlay.write_text("churn:\n  gap_months: one\n")
    with pytest.raises(ConfigError) as err:
        load_config([overlay])
    assert f"{overlay}: churn.gap_months" in str(err.value)


def test_override_errors_name_the_override():
    with pytest.raises(ConfigError, match=r"--set spark.shuffle_partitions: spark.shuffle_partitions"):
        load_config([], ["spark.shuffle_partitions=many"])
    with pytest.raises(ConfigError, match=r"--set lake\.nope: lake\.nope: unknown key"):
        load_config([], ["lake.nope=1"])


def test_missing_file_and_bad_override_syntax(tmp_path: Path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config([tmp_path / "absent.yml"])
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override("lake.root")


def test_override_values_are_yaml_scalars():
    assert parse_override("a.b=2") == ("a.b", 2)
    assert parse_override("a.b=[x, y]") == ("a.b", ["x", "y"])
    assert parse_override("a.b=2024-01") == ("a.b", "2024-01")
    assert parse_override("a.b=2024-01-31") == ("a.b", "2024-01-31")


def test_config_is_frozen_and_hash_stable():
    a = load_config()
    b = load_config()
    assert a.config_hash() == b.config_hash()
    assert a.config_hash() != load_config([], ["churn.window_months=2"]).config_hash()
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError on frozen models
        a.churn.gap_months = 3  # type: ignore[misc]


def test_mlflow_defaults_under_lake_root():
    cfg = load_config([], ["lake.root=/srv/lake"])
    assert cfg.mlflow_tracking_uri == "sqlite:////srv/lake/mlflow/mlflow.db"


def test_shipped_overlays_are_valid():
    root = Path(__file__).resolve().parents[2] / "conf"
    for name in ("local.yml", "cluster.yml", "test.yml"):
        load_config([root / name])


def test_base_yml_restates_the_parameter_defaults():
    """Parameters are defined once, in the pure layer; base.yml shows them for reading and must agree."""
    import yaml

    from features.params import ChurnParams, CohortParams, FeatureParams

    base = yaml.safe_load((Path(__file__).resolve().parents[2] / "conf" / "base.yml").read_text())
    from models.params import ScoreParams

    sections = (
        ("churn", ChurnParams),
        ("cohorts", CohortParams),
        ("features", FeatureParams),
        ("score", ScoreParams),
    )
    for section, model in sections:
        assert model.model_validate(base[section]) == model(), section
    cfg = load_config()
    assert cfg.features is not None and cfg.features == FeatureParams()


def test_config_sections_are_the_pure_parameter_models():
    from features.params import FeatureParams

    cfg = load_config(overrides=["features.trend_months=4"])
    assert type(cfg.features) is FeatureParams and cfg.features.trend_months == 4
    assert cfg.features.cdr_months == 4
