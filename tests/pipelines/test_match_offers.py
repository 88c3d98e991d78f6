"""Match offers on a generated, scored lake: budget, capacity, policy reasons, reruns, the Lagrangian path
against the exact job, the evaluation of a planted effect and the next matching reading it. The
hand-built cases (every exclusion reason, the price path against brute force, the repair, the control
group) are in ``test_match_offers_hand_built.py``."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass

import pandas as pd
import pytest
import yaml
from pyspark.sql import functions as F
from scipy.stats import norm

from features.columns import window_col
from jobs.match_offers import main as match_job
from models.offers import control_size
from pipelines.core.config import Config, load_config
from pipelines.core.lake import Lake
from tests.conftest import TEST_CONF, job_args

MONTH = "2024-05"


# three offers, one with a small capacity, and a budget that binds
OVERLAY = {
    "offers": {
        "budget": 40.0,
        "holdout_rate": 0.3,
        "min_band": "low",
        "offers": [
            {"id": "call", "channel": "call", "cost": 6.0, "capacity": 2, "effect": 0.5},
            {"id": "sms_pack", "channel": "sms", "cost": 1.0, "effect": 0.2, "sales_like": True},
            {
                "id": "bill_credit",
                "channel": "call",
                "cost": 3.0,
                "effect": 0.3,
                "eligibility": {"value_tiers": ["high", "medium"]},
            },
        ],
    },
    # a few lines per arm: the planted effect is fed back (the default treats them as underpowered)
    "evaluate": {"min_arm_lines": 2},
}


@dataclass(frozen=True)
class Matched:
    lake: Lake
    cfg: Config
    args: list[str]  # the match job's arguments for MONTH on this lake
    top: str  # the line contacted in 2024-04
    first: pd.DataFrame  # offer_assignments after the first of the two runs


@pytest.fixture(scope="module")
def matched(spark, scored_lake, tmp_path_factory) -> Matched:
    """A copy of the scored lake; a contact in 2024-04 planted for one line; 2024-05 matched twice."""
    base_cfg = scored_lake.cfg
    work = tmp_path_factory.mktemp("match_lake")
    shutil.copytree(base_cfg.lake_root, work / "lake")
    overlay = work / "offers.yml"
    overlay.write_text(yaml.safe_dump(OVERLAY))
    cfg = load_config(
        [TEST_CONF, overlay], [f"lake.root={work / 'lake'}", f"landing.root={base_cfg.landing_root}"]
    )
    lake = Lake(spark, cfg)
    consenting = (
        lake.read("features_monthly").where((F.col("month") == MONTH) & F.col("marketing_consent"))
    ).select("subscriber_id")
    top = (  # with consent: a line without it is excluded for that first, whatever its contacts
        lake.read("warning_list")
        .where(F.col("score_month") == MONTH)
        .join(consenting, "subscriber_id")
        .orderBy(F.desc("churn_probability"), "subscriber_id")
        .select("subscriber_id")
        .first()
        .subscriber_id
    )
    contacted = spark.createDataFrame(
        [("2024-04", top, "sms_pack", "sms", True, False, None, None, "2024-05")],
        "campaign_month string, subscriber_id string, offer_id string, channel string, contacted boolean, "
        "accepted boolean, contact_ts timestamp, feedback_code string, month string",
    )
    lake.write(contacted, "campaign_outcomes", mode="append", merge_schema=True)
    base_args = job_args(cfg)  # --conf test.yml --set lake.root=... --set landing.root=...
    args = ["--month", MONTH, *base_args[:2], "--conf", str(overlay), *base_args[2:]]
    assert match_job(args) == 0
    first = lake.read("offer_assignments").toPandas()
    assert match_job(args) == 0
    return Matched(lake, cfg, args, top, first)


def _assignments(lake) -> pd.DataFrame:
    return lake.read("offer_assignments").where(F.col("score_month") == MONTH).toPandas()


@pytest.mark.slow
def test_budget_and_capacity_are_never_exceeded(matched: Matched):
    lake, cfg = matched.lake, matched.cfg
    a = _assignments(lake)
    assigned = a[a["status"] == "assigned"]
    assert 0 < assigned["cost"].sum() <= cfg.offers.budget
    picked = a[a["status"].isin(["assigned", "holdout"])]
    assert (picked["intended_offer_id"] == "call").sum() <= 2
    # the budget binds: some candidates worth an offer were left out for it
    assert (a["exclusion_reason"] == "budget").any()
    assert assigned["msisdn"].notna().all() and a.loc[a["status"] != "assigned", "msisdn"].isna().all()
    assert a.loc[a["status"] != "assigned", "offer_id"].isna().all()


@pytest.mark.slow
def test_policy_exclusions_carry_their_reason(matched: Matched, spark):
    lake, cfg, top = matched.lake, matched.cfg, matched.top
    complaints = window_col("unresolved_complaints", cfg.features.trend_months)
    a = _assignments(lake).set_index("subscriber_id")
    f = (
        lake.read("features_monthly")
        .where(F.col("month") == MONTH)
        .select("subscriber_id", "marketing_consent", complaints)
        .toPandas()
        .set_index("subscriber_id")
    )
    assert len(a) == len(f)
    no_consent = f.index[~f["marketing_consent"].fillna(False).astype(bool)]
    assert (a.loc[no_consent, "exclusion_reason"] == "no_consent").all()
    assert a.loc[top, "exclusion_reason"] == "cooling_down"  # contacted in 2024-04
    complaint = f.index[f[complaints].fillna(0) > 0]
    sales = a.loc[complaint]
    assert not (sales["intended_offer_id"] == "sms_pack").any()
    assert (
        a.loc[a["value_tier"] == "unprofitable", "exclusion_reason"].isin(
            ["no_consent", "cooling_down", "unprofitable"]
        )
    ).all()
    assert set(a["status"]) == {"assigned", "holdout", "excluded"}
    assert a.loc[a["status"] == "assigned", "exclusion_reason"].isna().all()


@pytest.mark.slow
def test_each_offers_control_is_its_share_of_the_picked_and_stable_across_reruns(matched: Matched):
    lake, cfg, first = matched.lake, matched.cfg, matched.first
    a = _assignments(lake)
    picked = a[a["status"].isin(["assigned", "holdout"]) & (a["exclusion_reason"] != "programme_holdout")]
    assert picked["intended_offer_id"].nunique() > 1
    for _, part in picked.groupby("intended_offer_id"):
        assert (part["status"] == "holdout").sum() == control_size(len(part), cfg.offers)
    assert set(picked["arm"]) <= {"optimised", "explore"} and picked["arm"].notna().all()
    assert (a.loc[a["status"] == "holdout", "exclusion_reason"].isin(["holdout", "programme_holdout"])).all()
    # the programme hold-out: the lines whose id hashes low, whatever the month, never offered anything
    programme = a[a["programme_holdout"]]
    assert 0 < len(programme) < 0.15 * len(a) and programme["offer_id"].isna().all()
    assert set(programme["status"]) <= {"holdout", "excluded"}
    cols = ["subscriber_id", "status", "exclusion_reason", "offer_id", "intended_offer_id", "arm"]
    pd.testing.assert_frame_equal(
        a.sort_values("subscriber_id")[cols].reset_index(drop=True),
        first.sort_values("subscriber_id")[cols].reset_index(drop=True),
    )
    assert len(lake.read("offer_assignments").toPandas()) == len(first)  # replaced, not appended


@pytest.mark.slow
def test_the_price_path_in_spark_is_feasible_and_bounded_by_the_exact_optimum(
    matched: Matched, spark, tmp_path
):
    lake, cfg, args = matched.lake, matched.cfg, matched.args
    runs = lake.read("pipeline_runs").where(F.col("stage") == "match_offers").orderBy(F.desc("ended_at"))
    exact = runs.first().flags
    assert '"method": "exact"' in exact
    exact_flags = json.loads(exact)
    assert exact_flags["optimised_value"] >= exact_flags["greedy_value"] - 1e-9
    root = tmp_path / "lake"
    shutil.copytree(cfg.lake_root, root)
    other_args = [*args, "--set", f"lake.root={root}", "--set", "offers.exact_max_candidates=0"]
    assert match_job(other_args) == 0
    other = Lake(spark, load_config([TEST_CONF], [f"lake.root={root}"]))
    flags = json.loads(
        other.read("pipeline_runs")
        .where(F.col("stage") == "match_offers")
        .orderBy(F.desc("ended_at"))
        .first()
        .flags
    )
    assert flags["method"] == "lagrangian"
    # the price path's value never beats the optimum, and its bound is never below it (the bound can be
    # tight: equal up to rounding)
    assert flags["optimised_value"] <= exact_flags["optimised_value"] + 1e-6
    assert exact_flags["optimised_value"] <= flags["bound"] + 1e-6
    a = other.read("offer_assignments").toPandas()
    assert a.loc[a["status"] == "assigned", "cost"].sum() <= cfg.offers.budget
    assert (a.loc[a["status"].isin(["assigned", "holdout"]), "intended_offer_id"] == "call").sum() <= 2


@pytest.mark.slow
def test_no_warning_list_is_a_clear_error(matched: Matched, capsys):
    args = matched.args
    month_args = [a if a != MONTH else "2024-02" for a in args]
    assert match_job(month_args) == 1
    assert "no warning list for 2024-02 (run jobs/score.py --month 2024-02)" in capsys.readouterr().err


@dataclass(frozen=True)
class MatchedAndEvaluated:
    lake: Lake
    month_args: list[str]  # the job arguments for 2024-07 on this lake


@pytest.fixture(scope="module")
def evaluated(matched: Matched, spark, tmp_path_factory) -> MatchedAndEvaluated:
    """A copy of the matched lake whose 2024-05 labels are planted: treated lines churn when their
    subscriber id hashes below 10 %, held-out and other lines below 30 %; evaluated as of 2024-07."""
    from jobs.evaluate import main as evaluate_job

    args = matched.args
    root = tmp_path_factory.mktemp("evaluate_lake") / "lake"
    shutil.copytree(matched.cfg.lake_root, root)
    other_args = [*args, "--set", f"lake.root={root}"]
    other = Lake(spark, load_config([TEST_CONF], [f"lake.root={root}"]))
    status = (
        other.read("offer_assignments").where(F.col("score_month") == MONTH).select("subscriber_id", "status")
    )
    bucket = F.conv(F.substring(F.sha2("subscriber_id", 256), 1, 8), 16, 10).cast("double") / 16**8
    planted = (
        other.read("labels_monthly")
        .where(F.col("month") == MONTH)
        .drop("label_available", "is_churn")
        .join(status, "subscriber_id", "left")
        .withColumn("label_available", F.lit(True))
        .withColumn("is_churn", bucket < F.when(F.col("status") == "assigned", 0.1).otherwise(0.3))
        .withColumn("label_status", F.when(F.col("is_churn"), "churn").otherwise("active"))
        .drop("status")
        .localCheckpoint()
    )
    other.write(
        planted.select(*other.read("labels_monthly").columns),
        "labels_monthly",
        mode="overwrite",
        replace_partitions={"month": [MONTH]},
    )
    month_args = [a if a != MONTH else "2024-07" for a in other_args]
    assert evaluate_job(month_args) == 0
    return MatchedAndEvaluated(other, month_args)


@pytest.mark.slow
def test_evaluation_measures_the_planted_effect_and_realised_performance(evaluated: MatchedAndEvaluated):
    from sklearn.metrics import roc_auc_score

    lake = evaluated.lake
    w = lake.read("warning_list").where(F.col("score_month") == MONTH).toPandas()
    labels = lake.read("labels_monthly").where(F.col("month") == MONTH).toPandas()
    a = lake.read("offer_assignments").where(F.col("score_month") == MONTH).toPandas().merge(labels)
    # realised performance: the lines left alone (the treated are out: their churn is the campaign's),
    # neither assigned an offer nor contacted by the operator's campaign inside the label window
    outcomes = lake.read("campaign_outcomes").toPandas()
    window = outcomes["campaign_month"].isin([MONTH, "2024-06"]) & outcomes["contacted"].fillna(False)
    assigned = set(a.loc[a["status"] == "assigned", "subscriber_id"])
    treated = assigned | set(outcomes.loc[window, "subscriber_id"])
    assert len(treated) > len(assigned)  # the operator's contacts are in the sample
    alone = w[~w["subscriber_id"].isin(treated)]
    joined = alone.merge(labels[["subscriber_id", "is_churn"]], on="subscriber_id")
    # the table's AUC is over probabilities binned at the evaluation's resolution (ties count half)
    resolution = lake.cfg.evaluate.probability_bins
    binned = (joined["churn_probability"] * resolution).round() / resolution
    perf = (
        lake.read("model_performance")
        .where((F.col("source") == "realised") & (F.col("month") == "2024-07"))
        .toPandas()
    )
    auc = perf[(perf["cohort"] == "all") & (perf["metric"] == "roc_auc") & (perf["test_month"] == MONTH)][
        "value"
    ]
    assert auc.iloc[0] == pytest.approx(roc_auc_score(joined["is_churn"], binned), abs=1e-9)
    effect = lake.read("campaign_effect").where(F.col("month") == "2024-07").toPandas()
    total = effect[
        (effect["offer_id"] == "all") & (effect["cohort"] == "all") & (effect["risk_band"] == "all")
    ].iloc[0]
    treated = a[a["status"] == "assigned"]
    held = a[(a["status"] == "holdout") & (a["exclusion_reason"] == "holdout")]
    assert (total["treated"], total["holdout"]) == (len(treated), len(held))
    # over all offers: each offer's churn rates weighed by its lines (offers have their own control shares)
    arms = (
        pd.concat([treated, held]).groupby(["intended_offer_id", "status"])["is_churn"].agg(["mean", "size"])
    )
    rates, sizes = arms["mean"].unstack(), arms["size"].unstack()
    weight = sizes.sum(axis=1) / sizes.to_numpy().sum()
    assert total["churn_rate_treated"] == pytest.approx((weight * rates["assigned"]).sum())
    assert total["churn_rate_holdout"] == pytest.approx((weight * rates["holdout"]).sum())
    effect = (weight * (rates["holdout"] - rates["assigned"])).sum()
    assert total["effect"] == pytest.approx(effect)
    variance = rates * (1 - rates) / sizes
    se = float((weight**2 * variance.sum(axis=1)).sum()) ** 0.5
    z = norm.ppf(0.5 + lake.cfg.evaluate.confidence / 2)
    assert (total["effect_low"], total["effect_high"]) == pytest.approx((effect - z * se, effect + z * se))
    # the planted effect: held-out lines churn at 30 %, treated ones at 10 %
    assert total["effect_low"] <= 0.2 <= total["effect_high"]


@pytest.mark.slow
def test_the_next_matching_reads_the_measured_effects(evaluated: MatchedAndEvaluated, spark):
    lake, month_args = evaluated.lake, evaluated.month_args
    effects = (
        lake.read("offer_effects")
        .where((F.col("month") == "2024-07") & (F.col("dimension") == "all") & ~F.col("underpowered"))
        .toPandas()
    )
    assert len(effects) > 0
    # a warning list for 2024-07 (the scored lines of 2024-05 again): its matching must use them
    w = (
        lake.read("warning_list")
        .where(F.col("score_month") == MONTH)
        .withColumn("score_month", F.lit("2024-07"))
    )
    lake.write(
        w.localCheckpoint(), "warning_list", mode="overwrite", replace_partitions={"score_month": ["2024-07"]}
    )
    assert match_job(month_args) == 0
    flags = json.loads(
        lake.read("pipeline_runs")
        .where((F.col("stage") == "match_offers") & (F.col("month") == "2024-07"))
        .first()
        .flags
    )
    assert flags["effects"] == pytest.approx(dict(zip(effects["offer_id"], effects["effect"], strict=True)))


@pytest.mark.slow
def test_offers_notebook_runs_on_the_lake(evaluated: MatchedAndEvaluated, monkeypatch):
    from tests.conftest import run_notebook

    lake = evaluated.lake
    monkeypatch.setenv("CHURN_LAKE_ROOT", lake.cfg.lake_root)
    monkeypatch.setenv("CHURN_SCORE_MONTH", MONTH)
    text, figures = run_notebook("03_warning_list_and_offers.ipynb")
    w = lake.read("warning_list").where(F.col("score_month") == MONTH)
    with_reasons = w.where("reasons IS NOT NULL").count()
    assert text[1].startswith(f"{MONTH}: {w.count():,} subscribers scored, {with_reasons:,}")
    a = lake.read("offer_assignments").where(
        (F.col("score_month") == MONTH) & (F.col("status") == "assigned")
    )
    spend = a.agg(F.sum("cost")).first()[0]
    assert f"{MONTH}: spend {spend:,.0f}; expected net value" in text[6]
    effect = (
        lake.read("campaign_effect")
        .where("month = '2024-07' AND offer_id = 'all' AND cohort = 'all' AND risk_band = 'all'")
        .first()
    )
    assert f"{effect['effect']:.4f}".rstrip("0") in text[8]
    assert figures == 2
