"""The uplift stage on hand-built lakes of a randomised experiment whose truth is known
(:func:`tests.models.test_uplift.synthetic_experiment`): three score months of treated and control lines
with their features, warning list, labels and assignments, real Spark, Delta and MLflow (sqlite) in temp
folders. Where a sales-like offer pushes out sleeping dogs the stage promotes the model and matching
targets by it; where every line responds in proportion to its risk it refuses, and the rule stays."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.uplift import main as uplift_job
from models.offers import value_of_save
from pipelines.core.config import Config, load_config
from pipelines.core.lake import Lake
from pipelines.core.tracking import CHAMPION, alias_version, configure_mlflow
from pipelines.match_offers import match_offers_month
from pipelines.offer_candidates import targeting
from pipelines.uplift import UpliftReport, uplift_month
from tests.conftest import TEST_CONF
from tests.models.test_uplift import COST, HORIZON, _candidates, synthetic_experiment, synthetic_lines
from tests.pipelines.test_match_offers_hand_built import WARNING_DDL

SCORE_MONTHS = ("2024-01", "2024-02", "2024-03")
RUN_MONTH = "2024-05"  # the windows of 2024-03 (gap 04, window 05) closed: all three matured
LINES_PER_MONTH = 6000
CATALOGUE = {
    "offers": {
        "offers": [
            {"id": "pack", "channel": "sms", "cost": COST["pack"], "effect": 0.3, "sales_like": True},
            {"id": "care", "channel": "call", "cost": COST["care"], "effect": 0.3, "capacity": 100},
        ],
        "budget": 800.0,
        "min_band": "low",
        "value_horizon_months": HORIZON,
        "margin": 1.0,
        "holdout_rate": 0.0,
        "min_control_lines": 0,
        "programme_holdout_rate": 0.0,
        "exploration_rate": 0.0,
    }
}
FEATURES_DDL = (
    "month string, subscriber_id string, plan_type string, marketing_consent boolean, has_contract boolean, "
    "out_of_contract boolean, months_to_contract_end int, unresolved_complaints_3m long, "
    "out_events_avg_3m double"
)
LABELS_DDL = (
    "month string, subscriber_id string, label_available boolean, is_churn boolean, label_status string, "
    "churn_reason string"
)
ASSIGNMENTS_DDL = (
    "score_month string, subscriber_id string, status string, offer_id string, intended_offer_id string, "
    "exclusion_reason string, arm string"
)


@dataclass(frozen=True)
class ExperimentLake:
    lake: Lake
    cfg: Config
    report: UpliftReport  # the uplift stage as of RUN_MONTH
    candidates: pd.DataFrame  # the lines of RUN_MONTH's warning list, with their truth


def _write(spark: SparkSession, lake: Lake, frame: pd.DataFrame, ddl: str, table: str, by: str) -> None:
    names = [f.name for f in spark.createDataFrame([], ddl).schema.fields]
    rows = [tuple(None if pd.isna(v) else v for v in r) for r in frame[names].itertuples(index=False)]
    lake.write(spark.createDataFrame(rows, ddl), table, partition_by=[by])


def _rows(lines: pd.DataFrame, month: str) -> pd.DataFrame:
    """The warning list and feature columns of ``lines`` as of ``month`` (each table takes its own)."""
    out_of_contract = lines["contract_state"] == "out_of_contract"
    return _candidates(lines).assign(
        score_month=month,
        month=month,
        model_version="1",
        run_id="r",
        has_contract=True,
        out_of_contract=out_of_contract,
        months_to_contract_end=np.where(out_of_contract, -2, 10),
        unresolved_complaints_3m=0,
    )


def build_lake(spark: SparkSession, root: Path, *, heterogeneous: bool, seed: int) -> ExperimentLake:
    overlay = root / "catalogue.yml"
    root.mkdir(parents=True, exist_ok=True)
    overlay.write_text(yaml.safe_dump(CATALOGUE))
    cfg = load_config(
        [TEST_CONF, overlay], [f"lake.root={root / 'lake'}", f"landing.root={root / 'landing'}"]
    )
    lake = Lake(spark, cfg)
    months = []
    for i, month in enumerate(SCORE_MONTHS):
        lines = synthetic_experiment(LINES_PER_MONTH, seed + i, heterogeneous=heterogeneous)
        months.append((month, lines))
    candidates = synthetic_lines(600, seed + 50, heterogeneous=heterogeneous)
    rows = pd.concat([_rows(lines, month) for month, lines in [*months, (RUN_MONTH, candidates)]])
    _write(spark, lake, rows, WARNING_DDL, "warning_list", "score_month")
    _write(spark, lake, rows, FEATURES_DDL, "features_monthly", "month")
    experiment = pd.concat([lines.assign(month=m, score_month=m) for m, lines in months])
    churned = experiment["churned"].to_numpy()
    labels = experiment.assign(
        label_available=True,
        is_churn=churned,
        label_status=np.where(churned, "churn", "active"),
        churn_reason=np.where(churned, "port_out", None),
    )
    _write(spark, lake, labels, LABELS_DDL, "labels_monthly", "month")
    treated = experiment["treated"].to_numpy()
    assignments = experiment.assign(
        status=np.where(treated, "assigned", "holdout"),
        offer_id=np.where(treated, experiment["offer_id"], None),
        intended_offer_id=experiment["offer_id"],
        exclusion_reason=np.where(treated, None, "holdout"),
        arm="optimised",
    )
    _write(spark, lake, assignments, ASSIGNMENTS_DDL, "offer_assignments", "score_month")
    subscriptions = spark.createDataFrame(
        [(RUN_MONTH, s, f"m{s}") for s in candidates["subscriber_id"]],
        "month string, subscriber_id string, msisdn string",
    )
    lake.write(subscriptions, "subscriptions", partition_by=["month"])
    return ExperimentLake(lake, cfg, uplift_month(spark, cfg, RUN_MONTH), candidates)


@pytest.fixture(scope="module")
def promoting(spark, tmp_path_factory) -> ExperimentLake:
    """Sleeping dogs: the stage should promote."""
    return build_lake(spark, tmp_path_factory.mktemp("uplift_promote"), heterogeneous=True, seed=101)


def _runs(lake: Lake, stage: str) -> list[dict]:
    """The stage's runs recorded in ``pipeline_runs``, oldest first."""
    runs = [r for r in lake.read_rows("pipeline_runs") if r["stage"] == stage]
    return sorted(runs, key=lambda r: r["started_at"])


def test_the_stage_promotes_an_uplift_model_that_beats_the_rule_and_registers_it(promoting):
    report, cfg = promoting.report, promoting.cfg
    assert report.status == "promoted", report.decision
    assert (report.fit_months, report.holdout_months) == (["2024-01", "2024-02"], ["2024-03"])
    assert report.covered == ["pack", "care"]
    # the arms as written, counted from the lake's own assignments
    written = promoting.lake.read("offer_assignments").where(F.col("score_month") == "2024-03").toPandas()
    assert report.lines["held_out_treated"] == int((written["status"] == "assigned").sum())
    assert report.lines["held_out_control"] == int((written["status"] == "holdout").sum())
    assert report.comparison.qini["uplift"] > report.comparison.qini["rule"]
    # MLflow: the refitted model is the champion, tagged with its run month, and predicts the truth's signs
    configure_mlflow(cfg)
    assert alias_version(cfg.uplift.registered_model, CHAMPION) == report.version == "1"
    loaded = mlflow.pyfunc.load_model(f"models:/{cfg.uplift.registered_model}@{CHAMPION}")
    lines = _rows(promoting.candidates, RUN_MONTH)
    # the feature patterns found their columns in both tables, the contract state derived
    assert {"churn_probability", "churn_type", "contract_state", "out_events_avg_3m"} <= set(
        loaded.unwrap_python_model().uplift.features
    )
    predicted = loaded.predict(lines)
    assert list(predicted.columns) == ["pack", "care"]
    dogs = lines["sleeping_dog"].to_numpy()
    assert predicted["pack"][dogs].mean() < 0 < predicted["pack"][~dogs].mean()
    decision = mlflow.artifacts.load_text(f"runs:/{report.run_id}/report/decision.txt")
    assert decision.splitlines() == report.decision
    # pipeline_runs: the decision
    (run,) = _runs(promoting.lake, "uplift")
    flags = json.loads(run["flags"])
    assert (run["status"], flags["status"], flags["version"]) == ("success", "promoted", "1")
    assert flags["decision"][-1].startswith("promoted")


def test_matching_targets_by_the_promoted_model_and_spares_the_sleeping_dogs(spark, promoting):
    lake, cfg, lines = promoting.lake, promoting.cfg, promoting.candidates
    truth = lines.set_index("subscriber_id")
    save = pd.Series(value_of_save(lines["arpu_3m"], cfg.offers), index=lines["subscriber_id"])
    outcome = {}
    for name, config in (("uplift", cfg), ("rule", cfg.model_copy(update={"uplift": cfg.uplift.model_copy(
        update={"enabled": False})}))):  # fmt: skip
        report = match_offers_month(spark, config, RUN_MONTH)
        assigned = (
            lake.read("offer_assignments")
            .where((F.col("score_month") == RUN_MONTH) & (F.col("status") == "assigned"))
            .toPandas()
            .set_index("subscriber_id")
        )
        effect = [truth.at[s, f"effect_{o}"] for s, o in assigned["offer_id"].items()]
        realised = np.array(effect) * save[assigned.index].to_numpy() - assigned["cost"].to_numpy()
        pack = assigned.index[assigned["offer_id"] == "pack"]
        outcome[name] = {
            "dogs": int(truth.loc[pack, "sleeping_dog"].sum()),
            "value": float(realised.sum()),
            "targeting": report.targeting,
        }
        flags = json.loads(_runs(lake, "match_offers")[-1]["flags"])
        assert flags["targeting"] == name
    assert outcome["uplift"]["targeting"] == "uplift version 1" and outcome["rule"]["targeting"] == "rule"
    assert outcome["rule"]["dogs"] > 20, outcome
    assert outcome["uplift"]["dogs"] < outcome["rule"]["dogs"] / 4, outcome
    assert outcome["uplift"]["value"] > outcome["rule"]["value"], outcome


def test_a_month_without_enough_matured_months_or_lines_skips_and_leaves_the_registry(
    spark, promoting, capsys
):
    cfg = promoting.cfg
    overlay = Path(cfg.lake_root).parent / "catalogue.yml"
    args = ["--conf", str(TEST_CONF), "--conf", str(overlay), "--set", f"lake.root={cfg.lake_root}"]
    assert uplift_job(["--month", "2024-03", *args, "--set", f"landing.root={cfg.landing_root}"]) == 0
    # only 2024-01 has matured by 2024-03
    assert capsys.readouterr().out.splitlines() == [
        "uplift 2024-03: skipped (fitted -, held out 2024-01)",
        "  needs more than 1 matured score month(s) with offers to fit and hold out, has 1 (2024-01)",
    ]
    strict = cfg.model_copy(update={"uplift": cfg.uplift.model_copy(update={"min_lines_per_arm": 5000})})
    few = uplift_month(spark, strict, RUN_MONTH)
    assert few.status == "skipped" and "fewer than uplift.min_lines_per_arm (5000)" in few.decision[0]
    flags = [json.loads(r["flags"]) for r in _runs(promoting.lake, "uplift")]
    assert [f["status"] for f in flags[-2:]] == ["skipped", "skipped"]
    assert alias_version(cfg.uplift.registered_model, CHAMPION) == "1"  # no evidence: unchanged


def test_a_refused_rerun_takes_the_alias_off_and_matching_keeps_the_rule(spark, promoting):
    cfg = promoting.cfg
    never = cfg.model_copy(update={"uplift": cfg.uplift.model_copy(update={"resamples": 0})})
    report = uplift_month(spark, never, RUN_MONTH)
    assert report.status == "refused"
    assert report.decision[-1] == "the champion alias of offer_uplift was taken off"
    assert alias_version(cfg.uplift.registered_model, CHAMPION) is None
    assert targeting(cfg, RUN_MONTH) is None


def test_without_heterogeneous_effects_the_stage_refuses_and_the_rule_stays(spark, tmp_path_factory):
    flat = build_lake(spark, tmp_path_factory.mktemp("uplift_flat"), heterogeneous=False, seed=201)
    assert flat.report.status == "refused", flat.report.decision
    assert flat.report.decision[-1].startswith("not promoted")
    assert alias_version(flat.cfg.uplift.registered_model, CHAMPION) is None
    (run,) = _runs(flat.lake, "uplift")
    assert json.loads(run["flags"])["status"] == "refused"
