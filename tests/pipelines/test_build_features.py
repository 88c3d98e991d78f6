"""build_features on generated data: point in time, labels against the landing files, the job contract."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from pyspark.sql import functions as F

from pipelines.build_features import InputNotReadyError, build_features_month
from pipelines.core.lake import Lake
from tests.conftest import TEST_CONF, job_args

# builds a lake over seven months: minutes, not seconds (make test-fast skips it)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(feature_lake):
    """The session's feature lake (tests.conftest.feature_lake): built once, read by several modules."""
    return feature_lake


def test_rebuilding_a_month_after_later_data_arrived_gives_identical_features(built):
    lake, first, again, before, after_features = (
        built.lake,
        built.first,
        built.again,
        built.before,
        built.after_features,
    )
    assert first.subscribers == again.subscribers > 2000
    # the CDRs of 2024-03 grew with the late records delivered in 2024-04: none may leak into M
    late = lake.read("cdr").where(
        (F.col("event_month") == "2024-03") & (F.col("delivery_month") == "2024-04")
    )
    assert late.count() > 0
    assert after_features == before["features_monthly"]


def test_feature_table_shape_and_population(built, landing):
    lake, first = built.lake, built.first
    features = lake.read("features_monthly").where(F.col("month") == "2024-03")
    snapshot = lake.read("subscriptions").where(
        (F.col("month") == "2024-03") & (F.col("status") != "deactivated")
    )
    assert features.count() == snapshot.count() == first.subscribers
    assert features.groupBy("subscriber_id").count().where("count > 1").count() == 0
    cohorts = {r.cohort: r["count"] for r in features.groupBy("cohort").count().collect()}
    assert set(cohorts) == {"new", "early", "established"}
    # port-out requests filed at the end of the month raise hard warnings for active lines
    assert first.hard_warnings > 0
    assert features.where(F.col("hard_warning") & F.col("port_out_request_date").isNull()).count() == 0


def _landing_frame(landing, source: str, month: str) -> pd.DataFrame:
    folder = landing / source / f"month={month}"
    frames = [pd.read_csv(p, dtype=str) for p in sorted(folder.glob("*.csv*"))]
    frames += [pd.read_parquet(p).astype(str) for p in sorted(folder.glob("*.parquet"))]
    return pd.concat(frames)


def test_labels_match_the_landing_snapshots(built, landing):
    lake, later, before = built.lake, built.later, built.before
    # building 2024-04 with snapshots up to 2024-06 loaded settles 02 and 03 (04's own window is closed too)
    assert later.label_months == ["2024-02", "2024-03", "2024-04"]
    # built before the window closed, the month was pending
    assert {r[3] for r in before["labels_monthly"]} == {False}
    labels = lake.read("labels_monthly")
    mature = {r.subscriber_id: r for r in labels.where(F.col("month") == "2024-03").collect()}
    assert all(r.label_available for r in mature.values())
    assert labels.where((F.col("month") == "2024-04") & ~F.col("label_available")).count() == 0
    # independent truth from the raw landing files: deactivated in May for port_out/voluntary
    may = _landing_frame(landing, "subscriptions", "2024-05")
    may = may[(may.status == "deactivated") & may.deactivation_date.str.startswith("2024-05", na=False)]
    churned = set(may[may.deactivation_reason.isin(["port_out", "voluntary"])].subscriber_id) & set(mature)
    labelled = {s for s, r in mature.items() if r.is_churn}
    assert labelled == churned and len(churned) > 20
    april = _landing_frame(landing, "subscriptions", "2024-04")
    gap = set(april[april.status == "deactivated"].subscriber_id) & set(mature)
    assert {s for s, r in mature.items() if r.label_status == "gap_churn"} == gap


def test_job_contract(built, capsys):
    from jobs.build_features import main

    lake, cfg = built.lake, built.cfg
    assert main(["--month", "2024-08", *job_args(cfg)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(
        "ERROR build_features: InputNotReadyError: 2024-08: not ingested yet for subscriptions"
    )
    runs = lake.read("pipeline_runs").where(
        (F.col("stage") == "build_features") & (F.col("month") == "2024-04")
    )
    assert runs.where(F.col("status") == "success").count() == 1


def test_unpublished_month_is_refused(built, spark):
    lake, cfg = built.lake, built.cfg
    dq = lake.read("data_quality").where((F.col("source") == "cdr") & (F.col("month") == "2024-05"))
    original = spark.createDataFrame(dq.collect(), dq.schema)
    where = {"source": ["cdr"], "month": ["2024-05"]}
    blocked = original.withColumn("publishable", F.lit(False))
    lake.write(blocked, "data_quality", mode="overwrite", replace_partitions=where)
    try:
        with pytest.raises(InputNotReadyError, match="gates failed for cdr"):
            build_features_month(spark, cfg, "2024-05")
    finally:  # the lake is the session's: put the report back
        lake.write(original, "data_quality", mode="overwrite", replace_partitions=where)


def test_every_feature_column_is_documented_in_docs_features(built):
    from features.usage import TREND_MEASURES
    from tests.conftest import ROOT

    lake = built.lake
    readme = (ROOT / "docs" / "features.md").read_text()
    suffixes = ("_m0", "_m1", "_avg_3m", "_chg_1m", "_ratio_avg_3m")

    def documented(col: str) -> bool:
        if f"`{col}`" in readme:
            return True
        if any(col == f"{m}{s}" for m in TREND_MEASURES for s in suffixes):
            return True
        if col.startswith("care_") and f"`{re.sub(r'_(m0|[0-9]+m)$', '', col)[5:]}`" in readme:
            return True
        # the long windows (features.history): the measure and the statistic's pattern are documented
        long = re.fullmatch(
            r"(\w+?)_(avg|slope|max|ratio_avg|ratio_max)_[0-9]+m|(\w+?)_(decline_months|plan_fit_m0)", col
        )
        if long:
            measure, pattern = (long[1], long[2]) if long[1] else (long[3], long[4])
            return f"`{measure}`" in readme and pattern in readme
        return bool(re.fullmatch(r"history_months_[0-9]+m", col)) and "`history_months_Nm`" in readme

    missing = [c for c in lake.read("features_monthly").columns if not documented(c)]
    assert not missing, missing


def test_explore_notebook_runs_on_the_lake(built, monkeypatch):
    from tests.conftest import run_notebook

    lake = built.lake
    monkeypatch.setenv("CHURN_LAKE_ROOT", lake.cfg.lake_root)
    text, figures = run_notebook("01_explore_features.ipynb")
    labelled = (
        lake.read("labels_monthly").where(F.col("label_available") & F.col("is_churn").isNotNull()).count()
    )
    assert text[1].startswith(f"{labelled} labelled subscriber-months")
    assert figures == 2
    assert "max_inactive_run_days_m0" in text[5]


def _feature_frame(lake: Lake, month: str, params):
    """The pure feature frame of ``month`` over the lake's silver tables."""
    from features.build import build_feature_frame, cdr_window_months, select_cdr_window
    from pipelines.build_features import available_cdr_months

    return build_feature_frame(
        month=month,
        snapshots=lake.read("subscriptions"),
        cdr_window=select_cdr_window(lake.read("cdr"), month=month, params=params),
        billing=lake.read("billing"),
        care=lake.read("care"),
        available_cdr_months=available_cdr_months(lake, month, cdr_window_months(month, params)),
        params=params,
        cohorts=lake.cfg.cohorts,
        churn=lake.cfg.churn,
    )


# memory consumers of a task: each holds at least one page of execution memory while it lives
_CONSUMERS = {"Sort", "HashAggregate", "ObjectHashAggregate", "ShuffledHashJoin", "Window"}
_STAGE_BOUNDARIES = ("ShuffleQueryStage", "BroadcastQueryStage", "TableCacheQueryStage", "ResultQueryStage")


def _consumers_per_task(plan) -> list[int]:
    """Memory consumers alive in one task, for each stage of an executed (adaptive) plan."""
    stages: list[int] = []

    def children(node):
        seq = node.children()
        return [seq.apply(i) for i in range(seq.size())]

    def walk(node) -> int:
        name = node.nodeName()
        if name == "AdaptiveSparkPlan":
            return walk(node.executedPlan())
        if name in _STAGE_BOUNDARIES:
            stages.append(walk(node.plan()))
            return 0
        if name in ("Exchange", "BroadcastExchange"):
            stages.append(sum(walk(c) for c in children(node)))
            return 0
        counts = [walk(c) for c in children(node)]
        if name == "Union":  # partition-aware: one task runs every child's partition i
            aware = "UnknownPartitioning" not in node.outputPartitioning().toString()
            return sum(counts) if aware else max(counts, default=0)
        return int(name in _CONSUMERS) + sum(counts)

    stages.append(walk(plan))
    return stages


def test_feature_plan_holds_few_memory_consumers_per_task(built, spark):
    """The join chain held ten consumers (sorters, a hash map) in one task and ran out of memory."""
    lake, cfg = built.lake, built.cfg
    params = cfg.features
    threshold = spark.conf.get("spark.sql.autoBroadcastJoinThreshold")
    # the worst case: nothing small enough to broadcast, as at operator scale
    spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
    try:
        frame = _feature_frame(lake, "2024-05", params)
        rows = frame.collect()
        per_task = _consumers_per_task(frame._jdf.queryExecution().executedPlan())
    finally:
        spark.conf.set("spark.sql.autoBroadcastJoinThreshold", threshold)
    assert len(rows) == built.later.subscribers
    assert max(per_task) <= 7, per_task


@pytest.mark.e2e  # the whole job in a subprocess with its own JVM
def test_feature_build_runs_at_the_smallest_documented_driver_memory(built, tmp_path):
    """docs/configuration.md: 1g of driver is enough for the local feature build (4m page of base.yml)."""
    import shutil
    import subprocess
    import sys

    from tests.conftest import ROOT

    lake, cfg = built.lake, built.cfg
    root = tmp_path / "lake"
    shutil.copytree(cfg.lake_root, root)
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "jobs" / "build_features.py"),
            "--month",
            "2024-04",
            "--conf",
            str(TEST_CONF),
            "--set",
            f"lake.root={root}",
            "--set",
            f"landing.root={cfg.landing_root}",
            "--set",
            "spark.driver_memory=1g",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    from pipelines.core.delta import read_delta

    features = read_delta(lake.spark, str(root / "features_monthly")).where(F.col("month") == "2024-04")
    active = lake.read("subscriptions").where(
        (F.col("month") == "2024-04") & (F.col("status") != "deactivated")
    )
    assert sorted(r.subscriber_id for r in features.select("subscriber_id").collect()) == sorted(
        r.subscriber_id for r in active.select("subscriber_id").collect()
    )


def test_features_build_with_a_four_month_trend_window(built):
    """``--set features.trend_months=4`` broke the build: the lifecycle rule read the 3-month column."""
    lake, cfg = built.lake, built.cfg
    params = cfg.features.model_copy(update={"trend_months": 4})
    frame = _feature_frame(lake, "2024-05", params)
    assert "out_events_ratio_avg_4m" in frame.columns and "out_events_ratio_avg_3m" not in frame.columns
    rows = frame.select(
        "tenure_months",
        "months_to_contract_end",
        "max_inactive_run_days_m0",
        "out_events_ratio_avg_4m",
        "lifecycle_stage",
    ).collect()

    def stage(r) -> str:  # the rule, restated from the config defaults
        if r.tenure_months < 3:
            return "onboarding"
        ending = r.months_to_contract_end is not None and 0 <= r.months_to_contract_end <= 3
        falling = (
            r.max_inactive_run_days_m0 is not None
            and r.out_events_ratio_avg_4m is not None
            and r.max_inactive_run_days_m0 >= 7
            and r.out_events_ratio_avg_4m < 1
        )
        if ending or falling:
            return "decline"
        return "growth" if r.tenure_months < 12 else "maturity"

    assert [r.lifecycle_stage for r in rows] == [stage(r) for r in rows]
    assert {r.lifecycle_stage for r in rows} == {"onboarding", "decline", "growth", "maturity"}
