"""The monthly run end to end, through its jobs, on the closed loop: eight simulated months into an empty
lake, where the pipeline trains, scores, evaluates and matches, and the simulated campaign system carries
out its offers with known true effects. Then a rerun that changes nothing, and a stage failure."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import functions as F

from tests.conftest import LOOP_OUTPUTS, ROOT

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

OUTPUTS = LOOP_OUTPUTS


def _runs(lake) -> pd.DataFrame:
    return lake.read("pipeline_runs").toPandas()


def test_every_stage_ran_in_order_and_recorded_its_run(loop_lake):
    lake = loop_lake.lake
    for table in OUTPUTS:
        assert lake.exists(table), table
    runs = _runs(lake)
    ok = runs[runs["status"] == "success"]
    assert set(ok["stage"]) == {
        "ingest",
        "build_features",
        "train",
        "score",
        "evaluate",
        "uplift",
        "match_offers",
        "housekeeping",
    }
    assert sorted(ok.loc[ok["stage"] == "train", "month"]) == ["2024-05", "2024-08"]  # every 3 months
    assert sorted(ok.loc[ok["stage"] == "score", "month"].unique()) == [f"2024-0{m}" for m in range(5, 9)]
    assert set(ok.loc[ok["stage"] == "build_features", "month"]) == {f"2024-0{m}" for m in range(1, 9)}
    assert (runs["status"] != "failed").all()
    # every stage run the monthly job made carries the inputs it saw
    fingerprints = ok.loc[ok["stage"] == "score", "fingerprint"].map(json.loads)
    # the champions: the refits (2 of 1, 4 of 3) of the families trained as of 2024-05 and 2024-08
    assert all(set(f["tables"]) == {"features_monthly"} and f["champion"] in {"2", "4"} for f in fingerprints)
    assert lake.read("warning_list").select("score_month").distinct().count() == 4


def test_evaluation_recovers_the_true_effects_and_matching_uses_them(loop_lake):
    from pipelines.sample_data.writer import read_manifest

    lake, cfg = loop_lake.lake, loop_lake.cfg
    truth = pd.DataFrame(read_manifest(cfg.landing_root)["campaign_truth"])
    assert set(truth["campaign_month"]) == {f"2024-0{m}" for m in range(5, 9)}
    measured = (
        lake.read("campaign_effect")
        .where((F.col("month") == "2024-08") & (F.col("cohort") == "all") & (F.col("risk_band") == "all"))
        .toPandas()
    )
    assert set(measured["score_month"]) == {"2024-05", "2024-06"}  # matured by 08
    both = measured.merge(
        truth,
        left_on=["score_month", "offer_id"],
        right_on=["campaign_month", "offer_id"],
        suffixes=("", "_t"),
    )
    assert len(both) == len(measured)  # every measured offer has a known truth
    # the evaluation counts the lines with a campaign outcome (gap-month leavers included: only an
    # excluded reason or an unknown fate leaves a line out)
    assert (both["treated"] <= both["treated_t"]).all() and (both["holdout"] <= both["holdout_t"]).all()
    assert both["treated"].sum() >= 0.97 * both["treated_t"].sum()
    sized = both[(both["treated"] >= 20) & (both["holdout"] >= 20)]
    assert len(sized) >= 4
    true = sized["true_effect_listed"]  # over treated and control lines: what the comparison estimates
    covered = (sized["effect_low"] <= true) & (true <= sized["effect_high"])
    assert covered.mean() >= 0.8, sized[
        ["score_month", "offer_id", "effect_low", "true_effect_listed", "effect_high"]
    ]
    # the offer effects measured by 08 are what 08's matching used instead of the priors
    effects = (
        lake.read("offer_effects")
        .where((F.col("month") == "2024-08") & (F.col("dimension") == "all") & ~F.col("underpowered"))
        .toPandas()
    )
    runs = _runs(lake)
    match = runs[
        (runs["stage"] == "match_offers") & (runs["month"] == "2024-08") & (runs["status"] == "success")
    ]
    used = json.loads(match.iloc[-1]["flags"])["effects"]
    assert used == pytest.approx(dict(zip(effects["offer_id"], effects["effect"], strict=True)))
    priors = {o.id: o.effect for o in cfg.offers.offers}
    assert any(abs(used[o] - priors[o]) > 1e-6 for o in used)


def test_no_control_line_is_touched_while_its_outcome_is_open(loop_lake):
    lake, cfg = loop_lake.lake, loop_lake.cfg
    a = lake.read("offer_assignments").select("score_month", "subscriber_id", "status", "exclusion_reason")
    a = a.toPandas()
    controls = a[a["exclusion_reason"] == "holdout"]
    assert len(controls) > 50
    span = cfg.churn.gap_months + cfg.churn.window_months  # a list of S is contacted in S + 1 ...
    later = a[a["status"] == "assigned"].merge(controls, on="subscriber_id", suffixes=("", "_c"))

    def index(month: pd.Series) -> pd.Series:
        return month.str[:4].astype(int) * 12 + month.str[5:7].astype(int)

    gap = index(later["score_month"]) - index(later["score_month_c"])
    # ... and its outcome is open to S + span: a later list's contact (S' + 1) must come after it
    assert not ((gap > 0) & (gap + 1 <= span)).any()
    programme = a[a["exclusion_reason"] == "programme_holdout"]
    assert len(programme) > 0
    assert not a[a["status"] == "assigned"]["subscriber_id"].isin(programme["subscriber_id"]).any()


def test_a_second_run_of_the_same_month_changes_nothing(loop_lake):
    from jobs.monthly import main as monthly

    lake, args = loop_lake.lake, loop_lake.args
    before = lake.versions(list(OUTPUTS))
    assert monthly(["--month", "2024-08", *args]) == 0
    assert lake.versions(list(OUTPUTS)) == before
    runs = _runs(lake)
    last = runs[runs["month"] == "2024-08"].sort_values("ended_at").tail(7)
    assert list(last["status"]) == ["skipped"] * 7
    stages = ["ingest", "build_features", "score", "evaluate", "uplift", "match_offers", "housekeeping"]
    assert list(last["stage"]) == stages


def test_a_failed_stage_stops_the_run_with_its_status(loop_lake):
    lake, cfg, args = loop_lake.lake, loop_lake.cfg, loop_lake.args
    folder = Path(cfg.landing_root) / "subscriptions" / "month=2024-09"
    folder.mkdir(parents=True)
    (folder / "part-0.csv").write_text("subscriber_id\n")  # no _SUCCESS: an incomplete delivery
    try:
        before = lake.versions(list(OUTPUTS))
        out = subprocess.run(
            [sys.executable, str(ROOT / "jobs" / "monthly.py"), "--month", "2024-09", *args],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        shutil.rmtree(folder)
    assert out.returncode == 10, out.stderr[-2000:]
    assert "stage ingest of 2024-09 failed: IncompleteDeliveryError" in out.stderr
    # the console stays quiet: no config dump, no per-commit lines (both are in the log file)
    assert "effective config (hash" not in out.stderr and "committed" not in out.stderr
    assert lake.versions(list(OUTPUTS)) == before
    runs = _runs(lake)
    failed = runs[(runs["month"] == "2024-09") & (runs["status"] == "failed")]
    assert list(failed["stage"]) == ["ingest"] and "incomplete" in failed.iloc[0]["error"]
    log_files = sorted((Path(cfg.lake_root) / "_logs").glob("monthly-*.log"))
    assert log_files and "effective config (hash" in log_files[-1].read_text()


def test_the_documented_sql_questions_answer_on_the_lake(loop_lake, spark):
    import re

    from pipelines.sql import run_sql

    lake, cfg = loop_lake.lake, loop_lake.cfg
    queries = re.findall(r'^make sql Q="(.+)"$', (ROOT / "docs" / "operations.md").read_text(), flags=re.M)
    assert len(queries) >= 3
    results = [run_sql(cfg, query) for query in queries]
    assert list(results[0].columns) == ["subscriber_id", "p", "churn_type", "drivers"]
    assert all(len(r) > 0 for r in results[1:]), queries
    # the household question, checked against the table read by Spark and by the Spark SQL engine
    household = run_sql(cfg, queries[2])
    top = (
        lake.read("customer_risk")
        .where("level = 'household' AND score_month = '2024-08'")
        .orderBy(F.desc("revenue_at_risk"))
        .first()
    )
    assert household.iloc[0]["id"] == top["id"]
    assert household.iloc[0]["at_risk"] == pytest.approx(round(top["revenue_at_risk"], 1))
    spark_result = run_sql(cfg, "SELECT count(*) AS n FROM warning_list", engine="spark", spark=spark)
    assert spark_result["n"][0] == lake.read("warning_list").count()
