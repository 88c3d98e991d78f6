import typing
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from features.params import BASE_CONF
from pipelines.core.config import Config, ConfigError, load_config, parse_override


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


def test_baseline_windows_must_be_history_windows():
    # a baseline's max and ratio columns are aggregated over the history window of that length
    with pytest.raises(ConfigError, match="each one of history_windows"):
        load_config([], ["features.baseline_windows=[4]"])
    cfg = load_config([], ["features.history_windows=[1, 4, 12]", "features.baseline_windows=[4]"])
    assert cfg.features.baseline_windows == (4,)


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
    with pytest.raises(ValidationError, match="frozen_instance"):
        a.churn.gap_months = 3  # type: ignore[misc]


def test_mlflow_defaults_under_lake_root():
    cfg = load_config([], ["lake.root=/srv/lake"])
    assert cfg.mlflow_tracking_uri == "sqlite:////srv/lake/mlflow/mlflow.db"


@pytest.mark.parametrize(
    "root", ["/srv/landing", "file:///srv/landing/", "file://localhost/srv/landing", "file:///srv/land%69ng"]
)
def test_landing_root_is_a_path_or_file_uri(root: str):
    assert load_config([], [f"landing.root={root}"]).landing_root == "/srv/landing"


@pytest.mark.parametrize("root", ["s3://bucket/landing", "file://otherhost/srv/landing"])
def test_landing_root_elsewhere_is_refused_naming_the_key(root: str):
    with pytest.raises(ConfigError, match=rf"--set landing\.root: landing\.root: .*'{root}'.*not read"):
        load_config([], [f"landing.root={root}"])


def test_shipped_overlays_are_valid():
    """Every overlay in conf/ loads, and the values it changes from base.yml are the ones in force
    (local.yml restates base.yml's local settings)."""
    root = BASE_CONF.parent
    overlays = {p.name: load_config([p]) for p in sorted(root.glob("*.yml")) if p != BASE_CONF}
    assert sorted(overlays) == ["cluster.yml", "demo.yml", "local.yml", "test.yml"]
    cluster = overlays["cluster.yml"]
    assert (cluster.lake_root, cluster.landing_root) == ("/mnt/lake", "/mnt/landing")
    demo = overlays["demo.yml"]
    assert (demo.offers.min_band, demo.offers.holdout_rate, demo.offers.budget) == ("low", 0.3, 8000.0)
    assert demo.sample_data.drivers.contagion == 0.3
    assert overlays["test.yml"].spark.shuffle_partitions == 2


def _key_mismatches(
    model: type[BaseModel], node: dict[str, Any], path: str, *, every_field: bool
) -> list[str]:
    """Keys of ``node`` that are no field of ``model``, and (``every_field``) fields with no key."""
    out = [f"{path}{k}: key of base.yml with no field" for k in sorted(set(node) - set(model.model_fields))]
    if every_field:
        out += [
            f"{path}{k}: field with no key in base.yml" for k in sorted(set(model.model_fields) - set(node))
        ]
    for name in sorted(set(node) & set(model.model_fields)):
        annotation = model.model_fields[name].annotation
        args = typing.get_args(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out += _key_mismatches(annotation, node[name], f"{path}{name}.", every_field=every_field)
        elif (
            typing.get_origin(annotation) is tuple
            and args
            and isinstance(args[0], type)
            and issubclass(args[0], BaseModel)
        ):
            # a list of items (the offer catalogue): each item's keys are fields; items may omit some
            for i, item in enumerate(node[name]):
                out += _key_mismatches(args[0], item, f"{path}{name}[{i}].", every_field=False)
    return out


def test_every_key_of_base_yml_is_a_field_and_every_field_a_key():
    """Each parameter is defined once: its value and explanation in base.yml, its type in the code."""
    base = yaml.safe_load(BASE_CONF.read_text())
    assert _key_mismatches(Config, base, "", every_field=True) == []


def test_the_key_check_catches_a_stray_key_and_a_missing_field():
    base = yaml.safe_load(BASE_CONF.read_text())
    base["features"]["trend_monhts"] = 3
    del base["model"]["num_boost_round"]
    base["offers"]["offers"][0]["costs"] = 1.0
    assert _key_mismatches(Config, base, "", every_field=True) == [
        "features.trend_monhts: key of base.yml with no field",
        "model.num_boost_round: field with no key in base.yml",
        "offers.offers[0].costs: key of base.yml with no field",
    ]


def test_pure_parameters_take_their_defaults_from_base_yml():
    from features.params import ChurnParams, CohortParams, FeatureParams
    from models.metrics import ProfitParams
    from models.params import (
        ContactPolicy,
        EvaluateParams,
        ModelParams,
        OfferParams,
        ScoreParams,
        UpliftParams,
    )

    base = yaml.safe_load(BASE_CONF.read_text())
    cfg = load_config()
    assert FeatureParams().trend_months == base["features"]["trend_months"]
    assert ModelParams().lightgbm == base["model"]["lightgbm"]
    assert [o.id for o in OfferParams().offers] == [o["id"] for o in base["offers"]["offers"]]
    assert ContactPolicy().cooldown_months == base["offers"]["policy"]["cooldown_months"]
    for section, model in [
        (cfg.churn, ChurnParams),
        (cfg.cohorts, CohortParams),
        (cfg.features, FeatureParams),
        (cfg.model, ModelParams),
        (cfg.score, ScoreParams),
        (cfg.offers, OfferParams),
        (cfg.evaluate, EvaluateParams),
        (cfg.uplift, UpliftParams),
        (cfg.train.profit, ProfitParams),
    ]:
        assert section == model(), model.__name__


def test_a_field_without_a_value_in_base_yml_is_required():
    from pydantic import ValidationError

    from features.params import BASE, Params

    class Probe(Params):
        defaults_section: ClassVar[str | None] = "features"

        trend_months: int = BASE
        not_in_base_yml: int = BASE

    with pytest.raises(ValidationError, match="not_in_base_yml"):
        Probe()
    assert (
        Probe(not_in_base_yml=1).trend_months
        == yaml.safe_load(BASE_CONF.read_text())["features"]["trend_months"]
    )


def test_lightgbm_parameters_are_configurable():
    cfg = load_config([], ["model.lightgbm.num_leaves=7", "model.lightgbm.learning_rate=0.1"])
    assert cfg.model.lightgbm["num_leaves"] == 7 and cfg.model.lightgbm["learning_rate"] == 0.1
    assert cfg.model.lightgbm["objective"] == "binary"  # the other keys keep their base values


def test_config_sections_are_the_pure_parameter_models():
    from features.params import FeatureParams

    cfg = load_config(overrides=["features.trend_months=4"])
    assert type(cfg.features) is FeatureParams and cfg.features.trend_months == 4
    assert cfg.features.cdr_months == 4


def test_an_offer_eligible_for_an_unknown_state_is_refused(tmp_path: Path):
    overlay = tmp_path / "offers.yml"
    overlay.write_text(
        "offers:\n  offers:\n    - {id: x, channel: sms, cost: 1.0, effect: 0.1,"
        " eligibility: {contract_states: [expired]}}\n"
    )
    with pytest.raises(ConfigError, match=r"offers\.offers\.0\.eligibility: .*unknown \['expired'\]"):
        load_config([overlay])


def test_offers_must_fit_the_strategy_matrix_and_the_outcome_window(tmp_path: Path):
    overlay = tmp_path / "offers.yml"
    overlay.write_text(
        "offers:\n  offers:\n    - {id: x, channel: sms, cost: 1.0, effect: 0.1,"
        " eligibility: {strategies: [strongest_retention, shout]}}\n"
    )
    with pytest.raises(
        ConfigError, match=r"offers\.offers\[x\]\.eligibility\.strategies: unknown \['shout'\]"
    ):
        load_config([overlay])
    # gap 1 + window 3: a line listed for S has its outcome open to S + 4, so two months of cool-down
    # would let a control line be contacted in S + 4
    with pytest.raises(ConfigError, match=r"cooldown_months \(2\) must be at least .* \(3\)"):
        load_config([], ["churn.window_months=3", "offers.policy.cooldown_months=2"])
    assert (
        load_config(
            [], ["churn.window_months=3", "offers.policy.cooldown_months=3"]
        ).offers.policy.cooldown_months
        == 3
    )
