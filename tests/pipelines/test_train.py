"""Train as of a run month on a copy of the feature lake: windows, leakage, MLflow, registry, gates."""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from pipelines.core.config import Config, load_config
from pipelines.core.errors import InputNotReadyError
from pipelines.core.lake import Lake
from pipelines.core.maturity import training_window
from pipelines.train import (
    TrainResult,
    fit_as_of,
    read_training_frame,
    train_month,
)
from pipelines.train.stage import _spark_training_frame
from tests.conftest import cfg_at, job_args

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Trained:
    lake: Lake
    cfg: Config
    first: TrainResult  # as of 2024-05 (version 1, refitted as version 2, champion)
    second: TrainResult  # as of 2024-06 with a crippled model (version 3)
    second_log: list[str]  # the messages pipelines.train logged while training the second


class _Messages(logging.Handler):
    """Keeps the message of every record it handles."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def trained(spark, trained_lake, tmp_path_factory) -> Trained:
    """A copy of the lake trained as of 2024-05 (v1), then trained as of 2024-06 with a crippled model."""
    base_cfg, first = trained_lake.cfg, trained_lake.result
    root = tmp_path_factory.mktemp("train_lake") / "lake"
    shutil.copytree(base_cfg.lake_root, root)
    cfg = cfg_at(root, base_cfg.landing_root)
    weak = cfg_at(
        root,
        base_cfg.landing_root,
        "model.num_boost_round=1",
        "model.lightgbm.num_leaves=2",
        "model.serve=pooled",
    )
    logger, handler = logging.getLogger("pipelines.train"), _Messages()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        second = train_month(spark, weak, "2024-06")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return Trained(Lake(spark, cfg), cfg, first, second, handler.messages)


def test_window_uses_only_labels_matured_by_the_run_month():
    cfg = load_config()
    months = ["2024-01", "2024-02", "2024-03", "2024-04", "2024-05"]
    w = training_window("2024-06", months, cfg)
    assert (w.fit_months, w.valid_month, w.test_month) == (("2024-01", "2024-02"), "2024-03", "2024-04")
    # 2024-05's window (gap 2024-06, window 2024-07) closes after the run month: ignored though present
    assert training_window("2024-05", months, cfg).test_month == "2024-03"
    short = load_config(overrides=["train.fit_months=1"])
    assert training_window("2024-06", months, short).fit_months == ("2024-02",)
    with pytest.raises(InputNotReadyError, match=r"needs 3 snapshot months .* has 2 \(2024-01, 2024-02\)"):
        training_window("2024-04", months, cfg)


def test_training_reads_only_its_window(trained):
    lake, first = trained.lake, trained.first
    w = first.window
    assert (w.fit_months, w.valid_month, w.test_month) == (("2024-01",), "2024-02", "2024-03")
    labels = lake.read("labels_monthly").where(F.col("is_churn").isNotNull()).toPandas()
    # lines the operator's own campaign contacted inside their label window (a list of S is contacted in
    # S + 1; gap 1 + window 1: the lists of T and T + 1 touch snapshot T) are out
    contacts = lake.read("campaign_outcomes").where(F.col("contacted")).toPandas()
    treated = {
        (s, m)
        for s, c in zip(contacts["subscriber_id"], contacts["campaign_month"], strict=True)
        for m in (c, str(pd.Period(c, freq="M") - 1))
    }
    assert len(treated) > 100
    kept = labels[
        [(s, m) not in treated for s, m in zip(labels["subscriber_id"], labels["month"], strict=True)]
    ]
    assert len(kept) < len(labels)
    counts = kept.groupby("month").size()
    assert first.rows == {"fit": counts["2024-01"], "valid": counts["2024-02"], "test": counts["2024-03"]}
    assert first.family.report["rows"]["train"] == counts["2024-01"]
    assert first.family.report["rows"]["valid"] == counts["2024-02"]


def test_training_frame_read_in_the_driver_equals_spark_join(trained):
    """The driver's pyarrow read of features and labels gives exactly Spark's join: columns, types, values."""
    lake, first = trained.lake, trained.first
    months = ["2024-01", "2024-02", "2024-03"]
    frame = read_training_frame(lake, months, first.family.spec)
    spark_frame = _spark_training_frame(lake, months, first.family.spec)
    spark_frame = spark_frame.sort_values(["month", "subscriber_id"], kind="stable", ignore_index=True)
    pd.testing.assert_frame_equal(frame, spark_frame)
    assert sorted(frame["month"].unique()) == months
    assert len(frame) == sum(first.rows.values())


def test_the_outcomes_of_treated_lines_never_reach_the_model(trained, spark, tmp_path):
    """A strong campaign in a fitted month: half of 2024-01's churners assigned an offer. Whether the
    campaign saved them all or none, the model is the same: treated rows are out, the others stay."""
    lake, cfg, first = trained.lake, trained.cfg, trained.first
    root = tmp_path / "lake"
    shutil.copytree(cfg.lake_root, root)
    other = Lake(spark, cfg_at(root, cfg.landing_root))
    labels = other.read("labels_monthly").where(F.col("month") == "2024-01")
    half = F.conv(F.substring(F.sha2("subscriber_id", 256), 1, 4), 16, 10).cast("int") % 2 == 0
    treated = labels.where(F.col("is_churn") & half).select("subscriber_id").toPandas()["subscriber_id"]
    assigned = spark.createDataFrame(
        [("2024-01", s, "assigned") for s in treated],
        "score_month string, subscriber_id string, status string",
    )
    other.write(assigned, "offer_assignments", partition_by=["score_month"])
    months = list(first.window.months)
    frame = read_training_frame(other, months, first.family.spec)
    before = read_training_frame(lake, months, first.family.spec)
    removed = before[(before["month"] == "2024-01") & before["subscriber_id"].isin(set(treated))]
    assert len(removed) > 20 and len(frame) == len(before) - len(removed)
    assert not frame.loc[frame["month"] == "2024-01", "subscriber_id"].isin(set(treated)).any()
    none_saved = fit_as_of(other, "2024-05")
    saved = spark.createDataFrame(
        labels.withColumn("is_churn", F.col("is_churn") & ~F.col("subscriber_id").isin(*treated)).collect(),
        labels.schema,
    )  # the campaign saved every treated line
    other.write(saved, "labels_monthly", mode="overwrite", replace_partitions={"month": ["2024-01"]})
    all_saved = fit_as_of(other, "2024-05")
    test = read_training_frame(lake, ["2024-03"], first.family.spec)
    np.testing.assert_array_equal(all_saved.family.predict_proba(test), none_saved.family.predict_proba(test))
    assert none_saved.rows == all_saved.rows and none_saved.rows["fit"] == first.rows["fit"] - len(removed)


def test_test_month_and_later_labels_never_reach_the_model(trained, spark, tmp_path):
    """Flip every label of the test month (2024-03) and of a later month (2024-04): same model."""
    lake, cfg, first = trained.lake, trained.cfg, trained.first
    root = tmp_path / "lake"
    shutil.copytree(cfg.lake_root, root)
    other = Lake(spark, cfg_at(root, cfg.landing_root))
    labels = other.read("labels_monthly").where(F.col("month").isin("2024-03", "2024-04"))
    flipped = spark.createDataFrame(
        labels.withColumn("is_churn", ~F.col("is_churn")).collect(), labels.schema
    )
    other.write(
        flipped, "labels_monthly", mode="overwrite", replace_partitions={"month": ["2024-03", "2024-04"]}
    )
    again = fit_as_of(other, "2024-05")
    frame = read_training_frame(lake, ["2024-03"], first.family.spec)
    np.testing.assert_array_equal(again.family.predict_proba(frame), first.family.predict_proba(frame))
    # the test month is used for evaluation: with flipped labels the ranking is reversed
    assert (
        again.test_metrics["family"]["all"]["roc_auc"] < 0.5 < first.test_metrics["family"]["all"]["roc_auc"]
    )


def test_the_served_family_is_refitted_on_every_matured_month_and_no_later_label(trained, spark, tmp_path):
    """The champion is the gated family refitted on its whole window (2024-01..03, the validation and test
    months too) with the gated iterations. Flipping the labels of 2024-04 (a later run month's test month)
    leaves it the same; flipping those of this window's test month changes it."""
    from pipelines.train import refit_as_of

    lake, cfg, first = trained.lake, trained.cfg, trained.first
    served, gated = first.served, first.family
    refit = served.report["refit"]
    assert refit["months"] == ["2024-01", "2024-02", "2024-03"] == list(first.window.months)
    assert refit["rows"] == sum(first.rows.values())
    # the boosters that serve grow the gated iterations again; the baselines serving no cohort are kept
    serving = {gated.serving_booster_name(c) for c in gated.serving}
    assert refit["iterations"] == {k: b.num_trees() for k, b in gated.boosters.items() if k in serving}
    assert refit["kept"] == [*[k for k in gated.boosters if k not in serving], "logistic"]
    assert served.logistic is gated.logistic
    assert all((served.boosters[k] is gated.boosters[k]) == (k not in serving) for k in gated.boosters)
    assert served.serving == gated.serving and served.calibrators is gated.calibrators
    frame = read_training_frame(lake, ["2024-03"], gated.spec)
    assert not np.array_equal(served.raw_score(frame), gated.raw_score(frame))

    def refit_with_flipped(month: str) -> np.ndarray:
        root = tmp_path / month / "lake"
        shutil.copytree(cfg.lake_root, root)
        other = Lake(spark, cfg_at(root, cfg.landing_root))
        labels = other.read("labels_monthly").where(F.col("month") == month)
        flipped = spark.createDataFrame(
            labels.withColumn("is_churn", ~F.col("is_churn")).collect(), labels.schema
        )
        other.write(flipped, "labels_monthly", mode="overwrite", replace_partitions={"month": [month]})
        return refit_as_of(other, fit_as_of(other, "2024-05")).raw_score(frame)

    np.testing.assert_array_equal(refit_with_flipped("2024-04"), served.raw_score(frame))
    assert not np.array_equal(refit_with_flipped("2024-03"), served.raw_score(frame))


def test_each_registered_version_has_its_model_card(trained):
    import mlflow
    from mlflow.tracking import MlflowClient

    from pipelines.core.tracking import configure_mlflow

    cfg, first = trained.cfg, trained.first
    configure_mlflow(cfg)
    client, name = MlflowClient(), cfg.train.registered_model
    for version in ("1", "2", "3"):
        mv = client.get_model_version(name, version)
        path = mv.tags["model_card"]
        assert path == f"model_card/v{version}.md"
        card = mlflow.artifacts.load_text(f"runs:/{mv.run_id}/{path}")
        assert card.startswith(f"# Model card: {name} version {version}")
        for section in ("## Data window", "## Features", "## Fairness view", "## Known limits"):
            assert section in card
    card = mlflow.artifacts.load_text(f"runs:/{first.run_id}/model_card/v2.md")
    assert "refitted on 2024-01, 2024-02, 2024-03" in card and "version 1" in card
    auc = first.test_metrics["family"]["all"]["roc_auc"]
    assert f"| all | **family** | {first.rows['test']:,} |" in card and f"{auc:.4f}" in card
    assert "| region |" in card and "| plan_type |" in card


def test_registered_pyfunc_equals_boosters_and_calibrators(trained):
    import mlflow

    from pipelines.core.tracking import configure_mlflow

    lake, cfg, first = trained.lake, trained.cfg, trained.first
    configure_mlflow(cfg)
    model = mlflow.pyfunc.load_model(f"models:/{cfg.train.registered_model}@champion")
    family = first.served  # the champion: the gated family refitted on its window
    frame = read_training_frame(lake, ["2024-03"], family.spec)
    got = np.asarray(model.predict(frame[[*family.features]]))
    cohort = family.cohorts(frame)
    x = family._matrix(frame, cohort)
    want = np.empty(len(frame))
    for name in family.spec.cohorts.names:
        rows = cohort == name
        booster = family.boosters["pooled" if family.serving[name] == "pooled" else name]
        raw = booster.predict(x[rows])
        want[rows] = family.calibrators[name].predict(raw)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # model_performance holds the same figures as scikit-learn on the gated family's predictions (the
    # evidence: the refit was fitted on these rows)
    from sklearn.metrics import roc_auc_score

    got = first.family.predict_proba(frame)
    perf = lake.read("model_performance").where(
        (F.col("month") == "2024-05") & (F.col("model") == "family") & (F.col("cohort") == "all")
    )
    stored = {r.metric: r.value for r in perf.collect()}
    assert stored["roc_auc"] == pytest.approx(roc_auc_score(frame["is_churn"], got), rel=1e-12)
    # its requirements are declared (pinned to what trained it), not inferred
    from pipelines.core.tracking import runtime_requirements

    path = mlflow.pyfunc.get_model_dependencies(f"models:/{cfg.train.registered_model}@champion")
    declared = [line for line in Path(path).read_text().splitlines() if line and not line.startswith("#")]
    assert declared == runtime_requirements()


def test_gates_keep_the_champion_against_a_worse_model(trained):
    import mlflow
    from mlflow.tracking import MlflowClient

    from pipelines.core.tracking import configure_mlflow

    cfg, first, second = trained.cfg, trained.first, trained.second
    assert first.promoted and (first.version, first.served_version) == ("1", "2")
    # the first model: all gated (no champion to compare with), with its figures
    assert first.decision[0].startswith("all: ") and " test churners, AUC " in first.decision[0]
    assert (
        first.decision[-1].startswith("promoted: every gated row (all")
        and "(no champion yet)" in first.decision[-1]
    )
    assert not second.promoted and second.version == "3" and second.served_version is None
    # the crippled model ranks significantly worse than the champion on the same rows of all
    (versus_all,) = [
        line for line in second.decision if line.startswith("all: AUC ") and "champion's" in line
    ]
    p_value = float(re.search(r"one-sided p [=<] (\d\.\d+)", versus_all).group(1))
    assert versus_all.endswith("worse than the champion") and p_value < cfg.train.promotion.alpha
    assert second.decision[-1].startswith("not promoted: all")
    configure_mlflow(cfg)
    client = MlflowClient()
    name = cfg.train.registered_model
    assert str(client.get_model_version_by_alias(name, "champion").version) == "2"
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "3"
    refit = client.get_model_version(name, "2").tags
    assert refit["refit_of"] == "1" and refit["refit_months"] == "2024-01,2024-02,2024-03"
    # the decision is the run's record
    text = mlflow.artifacts.load_text(f"runs:/{second.run_id}/report/promotion.txt")
    assert text.splitlines() == second.decision


def test_a_rerun_of_the_promoting_month_compares_through_the_fit_the_champion_repeated(
    trained, spark, tmp_path
):
    """Rerun as of 2024-05, the month that promoted version 1 as its refit (version 2, fitted on 2024-01..03):
    the test month 2024-03 is one of the champion's fitted months, so the gates compare through version 1,
    fitted without its labels. The same rows and seed fit the same model again: no difference."""
    cfg = trained.cfg
    root = tmp_path / "lake"
    shutil.copytree(cfg.lake_root, root)
    rerun = train_month(spark, cfg_at(root, cfg.landing_root), "2024-05")
    through = (
        "champion: version 2 was fitted on the test month 2024-03 (its refit); compared through version 1, "
        "the fit it repeated, for which that month was the test month"
    )
    # before the verdict, which stays last (refused by a calibration row here: no "served" line)
    assert not rerun.promoted and rerun.decision.index(through) == len(rerun.decision) - 2
    (versus_all,) = [line for line in rerun.decision if line.startswith("all: AUC ") and "champion's" in line]
    new, old = re.search(r"AUC (\d\.\d+) against the champion's (\d\.\d+)", versus_all).groups()
    assert new == old and "difference +0.0000" in versus_all
    # scored by the refit itself, the champion would have looked better than the same fit on those rows
    from sklearn.metrics import roc_auc_score

    from models.family import labelled_rows
    from pipelines.core.tracking import configure_mlflow, load_family

    configure_mlflow(cfg)
    champion = load_family(cfg.train.registered_model, "2")[0]
    labelled = labelled_rows(rerun.test_frame, rerun.family.spec, "test")
    refit_auc = roc_auc_score(labelled.y, champion.predict_proba(labelled.frame), sample_weight=labelled.w)
    assert refit_auc > float(new)


def test_a_champion_refitted_past_the_test_month_is_compared_as_it_is_and_an_override_has_the_last_word(
    trained, spark, tmp_path
):
    """The champion (version 2) tagged as refitted on 2024-01..04: the test month 2024-03 is one of its
    fitted months but not its last, so the version it refitted saw that month too (it validated on it). No
    fair comparison exists: the gates compare with the champion itself and say that it favours it. A
    ``promote=True`` override then serves the new fit; the gates' verdict and the override stay last."""
    from mlflow.tracking import MlflowClient
    from sklearn.metrics import roc_auc_score

    from models.family import labelled_rows
    from pipelines.core.tracking import configure_mlflow, load_family
    from pipelines.train.stage import REFIT_MONTHS_TAG

    root = tmp_path / "lake"
    shutil.copytree(trained.cfg.lake_root, root)
    cfg = cfg_at(root, trained.cfg.landing_root)
    configure_mlflow(cfg)
    name = cfg.train.registered_model
    MlflowClient().set_model_version_tag(name, "2", REFIT_MONTHS_TAG, "2024-01,2024-02,2024-03,2024-04")
    rerun = train_month(spark, cfg, "2024-05", promote=True, reason="test")

    favours = (
        "champion: version 2 was fitted on the test month 2024-03: compared with it all the same, the "
        "comparison favours it"
    )
    served = (
        f"served: version {rerun.served_version}, refitted on 2024-01, 2024-02, 2024-03 with the iterations "
        f"of version {rerun.version} (whose test metrics are the evidence)"
    )
    assert rerun.promoted and rerun.served_version is not None
    gates = rerun.decision[-2]
    assert gates.startswith(("promoted: ", "not promoted: "))
    assert rerun.decision[-1] == f"gates {'passed' if gates.startswith('promoted') else 'failed'}; " + (
        "overridden: promote=True (test)"
    )
    assert rerun.decision[-4:-2] == [favours, served]
    # compared with version 2 itself, which learnt the test month's labels: its AUC on those rows
    (versus_all,) = [line for line in rerun.decision if line.startswith("all: AUC ") and "champion's" in line]
    old = float(re.search(r"against the champion's (\d\.\d+)", versus_all).group(1))
    labelled = labelled_rows(rerun.test_frame, rerun.family.spec, "test")
    refit = load_family(name, "2")[0]
    auc = roc_auc_score(labelled.y, refit.predict_proba(labelled.frame), sample_weight=labelled.w)
    assert old == pytest.approx(auc, abs=5e-5)
    assert str(MlflowClient().get_model_version_by_alias(name, "champion").version) == rerun.served_version


def test_mlflow_run_holds_cohort_children_params_and_charts(trained):
    import mlflow
    from mlflow.tracking import MlflowClient

    from pipelines.core.tracking import configure_mlflow

    cfg, first = trained.cfg, trained.first
    configure_mlflow(cfg)
    client = MlflowClient()
    run = client.get_run(first.run_id)
    assert run.data.params["test_month"] == "2024-03" and run.data.params["fit_months"] == "2024-01"
    assert run.data.metrics["test_family_roc_auc"] == pytest.approx(
        first.test_metrics["family"]["all"]["roc_auc"]
    )
    children = mlflow.search_runs(
        experiment_ids=[run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{first.run_id}'"
    )
    assert sorted(children["tags.cohort"]) == ["early", "established", "new"]
    files = {f.path for f in client.list_artifacts(first.run_id, "report")}
    for name in ("gains_lift.png", "calibration.png", "score_distribution.png", "feature_importance.png"):
        assert f"report/{name}" in files


def test_the_job_records_the_seconds_of_each_step(trained):
    """The steps are disjoint parts of the run, which the run manifest timed on its own clock: whether
    returned (in order), logged (one decimal) or recorded in ``pipeline_runs`` (two), they are the job's five
    steps, none negative, and together no longer than the run."""
    from mlflow.tracking import MlflowClient

    from pipelines.core.tracking import configure_mlflow

    lake, cfg, second = trained.lake, trained.cfg, trained.second
    steps = ["read", "fit", "test", "mlflow", "gates"]
    runs = lake.read("pipeline_runs").where(
        (F.col("stage") == "train") & (F.col("month") == "2024-06") & (F.col("status") == "success")
    )
    (run,) = runs.collect()
    assert list(second.steps) == steps and all(second.steps[s] > 0 for s in steps)
    assert sum(second.steps.values()) <= run.duration_s + 1e-3
    (line,) = [m for m in trained.second_log if m.startswith("train as of 2024-06: read ")]
    logged = {step: float(s) for step, s in re.findall(r"(\w+) (\d+\.\d) s", line.split(": ", 1)[1])}
    recorded = json.loads(run.flags)["seconds"]
    for seconds, half_unit in ((logged, 0.05), (recorded, 0.005)):
        assert sorted(seconds) == sorted(steps) and min(seconds.values()) >= 0, seconds
        assert sum(seconds.values()) <= run.duration_s + len(steps) * half_unit, seconds
    # the MLflow run holds the fit's seconds: a part of the run too
    configure_mlflow(cfg)
    fit = MlflowClient().get_run(second.run_id).data.metrics["fit_seconds"]
    assert 0 < fit <= run.duration_s


def test_job_refuses_a_month_without_matured_labels(trained, capsys):
    from jobs.train import main

    cfg = trained.cfg
    assert main(["--month", "2024-03", *job_args(cfg)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("ERROR train: InputNotReadyError: train as of 2024-03: needs 3 snapshot months")


def test_monthly_trains_when_due(trained, spark):
    from pipelines.monthly import train_due

    lake, cfg = trained.lake, trained.cfg
    assert train_due(lake, "2024-06") is None  # trained as of 2024-06 already
    assert train_due(lake, "2024-08") is None  # two months later: not yet (every 3)
    assert train_due(lake, "2024-09") == "last trained as of 2024-06"
    never = Lake(spark, cfg_at(cfg.lake_root, cfg.landing_root, "train.every_months=0"))
    assert train_due(never, "2024-09") is None
    fresh = Lake(spark, cfg_at(cfg.lake_root, cfg.landing_root, "train.registered_model=other_family"))
    assert train_due(fresh, "2024-06") == "no champion yet"


def test_a_sustained_drift_retrains_and_a_stable_month_does_not(trained, spark, tmp_path):
    """Score months after the last training (2024-06) whose drift verdict (``score_monitoring``, written
    by scoring) is set: two drifting months in a row by the champion retrain as of 2024-08, before the
    schedule would; one stable month among them, or drift by another version, does not."""
    from pipelines.core.tables import MONITORING_SCHEMA
    from pipelines.monthly import train_due

    cfg = trained.cfg
    root = tmp_path / "lake"
    shutil.copytree(cfg.lake_root, root)
    lake = Lake(spark, cfg_at(root, cfg.landing_root))
    assert cfg.score.drift_months == 2

    def verdicts(**drifted: tuple[bool, str]) -> None:
        rows = [
            (
                month[1:].replace("_", "-"),
                "drift",
                "all",
                "drifted",
                float(d),
                None,
                d,
                "test",
                "churn_family",
                v,
            )
            for month, (d, v) in drifted.items()
        ]
        months = [r[0] for r in rows]
        lake.replace_rows(rows, MONITORING_SCHEMA, "score_monitoring", {"score_month": months})

    verdicts(m2024_06=(True, "2"), m2024_07=(False, "2"))
    assert train_due(lake, "2024-08") is None
    verdicts(m2024_06=(True, "2"), m2024_07=(True, "1"))  # the second by another version
    assert train_due(lake, "2024-08") is None
    verdicts(m2024_06=(True, "2"), m2024_07=(True, "2"))
    reason = train_due(lake, "2024-08")
    assert reason == "sustained_drift: score months 2024-06, 2024-07 scored by version 2 drifted"
    assert train_due(lake, "2024-07") is None  # one drifting month so far


def test_the_backtest_measures_each_run_month_s_own_subscribers(trained, spark, tmp_path):
    """At the horizon the model is used at: as of 2024-05 it scores 2024-05, whose labels the lake does
    not hold yet (its window closes in 2024-07), so the backtest refuses rather than measure on the test
    month; the docs' table is the mean per cohort and model over the run months."""
    import dataclasses

    from pipelines.train import backtest, backtest_markdown

    cfg, first = trained.cfg, trained.first
    root = tmp_path / "lake"
    shutil.copytree(cfg.lake_root, root)
    with pytest.raises(InputNotReadyError, match="no matured labels of 2024-05 in the lake yet"):
        backtest(spark, cfg_at(root, cfg.landing_root), ["2024-05"])
    one = dataclasses.replace(first, horizon_metrics=first.test_metrics)
    text = backtest_markdown([one, dataclasses.replace(one, window=trained.second.window)], cfg.cohorts.names)
    lines = text.splitlines()
    assert lines[0].startswith("Run months 2024-05..2024-06 (2)")
    m = {k: round(v, 4) for k, v in first.test_metrics["family"]["all"].items()}
    assert lines[4] == (
        f"| all | **family** | {m['roc_auc']:.4f} | {m['top_decile_lift']:.2f} | {m['ece']:.4f} | "
        f"{m['empc']:.3f} |"
    )
    auc = round(first.test_metrics["logistic"]["all"]["roc_auc"], 4)
    assert lines[6].startswith(f"| all | logistic regression | {auc:.4f} |")
    assert [line.split(" | ")[0] for line in lines[4:]] == ["| all"] * 3 + [
        f"| {c}" for c in cfg.cohorts.names for _ in range(3)
    ]


def test_train_notebook_runs_on_the_lake(trained, monkeypatch):
    from tests.conftest import run_notebook

    cfg, result = trained.cfg, trained.first
    monkeypatch.setenv("CHURN_LAKE_ROOT", cfg.lake_root)
    monkeypatch.setenv("CHURN_RUN_MONTH", "2024-05")
    text, figures = run_notebook("02_train_and_evaluate.ipynb")
    window = result.window
    split = f"fit {', '.join(window.fit_months)}, validate {window.valid_month}, test {window.test_month}"
    assert text[1].startswith(f"run month 2024-05: {split}")
    assert f"tested on {result.rows['test']:,}" in text[2]
    # the notebook's family is the train job's: the same rows, spec and seed give the same test AUC
    auc = result.test_metrics["family"]["all"]["roc_auc"]
    assert f"{auc:.4f}" in text[4]
    assert figures >= 3  # gains per cohort with churners, calibration, importance
