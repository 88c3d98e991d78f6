"""Match offers to a scored month: a hand-built month with every exclusion reason and a non-default
complaint window; the Spark price path against brute force; the repair's capacity and budget cut; the
control group against hashes computed here; then the stage on a generated, scored lake (budget, capacity,
policy reasons, reruns, the evaluation of a planted effect, the next matching reading it)."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from statsmodels.stats.proportion import confint_proportions_2indep

from features.columns import window_col
from jobs.match_offers import main as match_job
from models.offers import solve_exact
from models.params import Offer, OfferParams
from pipelines.core.config import Config, load_config
from pipelines.core.lake import Lake
from pipelines.match_offers import match_offers_month, repair_picks, solve_in_spark, with_holdout
from tests.conftest import TEST_CONF, job_args
from tests.models.test_offers import brute_force_optimum, random_case

MONTH = "2024-05"


def _frame(spark: SparkSession, rows: list[dict[str, Any]], ddl: str) -> DataFrame:
    """Rows by column name (a missing key is null) in the schema ``ddl``."""
    names = [f.name for f in spark.createDataFrame([], ddl).schema.fields]
    return spark.createDataFrame([tuple(r.get(n) for n in names) for r in rows], ddl)


# --- a hand-built month --------------------------------------------------------------------------------

WARNING_DDL = (
    "score_month string, subscriber_id string, churn_probability double, arpu_3m double, churn_type string, "
    "value_tier string, strategy string, cohort string, risk_band string, usage_segment string, "
    "model_version string, run_id string"
)
FEATURES_DDL = (
    "month string, subscriber_id string, plan_type string, marketing_consent boolean, has_contract boolean, "
    "out_of_contract boolean, months_to_contract_end int, unresolved_complaints_3m long, "
    "unresolved_complaints_4m long"
)
# one sales-like offer (suppressed while a complaint is open), worth 0.5 x p x 12 x arpu - 10; the budget
# pays for two
HAND_OFFERS = {
    "offers": {
        "budget": 20.0,
        "holdout_rate": 0.0,
        "min_band": "low",
        "value_horizon_months": 12,
        "offers": [{"id": "pack", "channel": "sms", "cost": 10.0, "effect": 0.5, "sales_like": True}],
    }
}


def _hand_lake(spark: SparkSession, tmp_path) -> tuple[Lake, Config]:
    overlay = tmp_path / "offers.yml"
    overlay.write_text(yaml.safe_dump(HAND_OFFERS))
    cfg = load_config(
        [TEST_CONF, overlay],
        [f"lake.root={tmp_path / 'lake'}", f"landing.root={tmp_path / 'landing'}", "features.trend_months=4"],
    )
    lake = Lake(spark, cfg)
    line = {
        "score_month": MONTH,
        "month": MONTH,
        "churn_type": "service_issue",
        "value_tier": "high",
        "strategy": "care",
        "cohort": "established",
        "risk_band": "high",
        "usage_segment": "voice-heavy",
        "model_version": "1",
        "run_id": "r",
        "plan_type": "postpaid",
        "marketing_consent": True,
        "has_contract": True,
        "out_of_contract": False,
        "months_to_contract_end": 10,
        "unresolved_complaints_3m": 0,
        "unresolved_complaints_4m": 0,
    }
    lines = {
        "s1": {"churn_probability": 0.5, "arpu_3m": 10.0},  # 0.5 x 0.5 x 120 - 10 = 20
        "s2": {"churn_probability": 0.5, "arpu_3m": 10.0, "marketing_consent": False},
        "s3": {"churn_probability": 0.5, "arpu_3m": 10.0, "unresolved_complaints_4m": 1},
        # a complaint before the 4-month window only: no open complaint; 0.4 x 0.5 x 240 - 10 = 38
        "s4": {"churn_probability": 0.4, "arpu_3m": 20.0, "unresolved_complaints_3m": 2},
        "s5": {"churn_probability": 0.5, "arpu_3m": 10.0},  # contacted in 2024-04
        "s6": {"churn_probability": 0.05, "arpu_3m": 10.0},  # 3 - 10: worth less than it costs
        "s7": {"churn_probability": 0.5, "arpu_3m": 10.0},  # assigned an offer in 2024-03
        # assigned in 2024-01, before the 3 cooldown months; 0.3 x 0.5 x 120 - 10 = 8: left out for budget
        "s8": {"churn_probability": 0.3, "arpu_3m": 10.0},
    }
    rows = [{**line, "subscriber_id": s, **c} for s, c in lines.items()]
    lake.write(_frame(spark, rows, WARNING_DDL), "warning_list", partition_by=["score_month"])
    lake.write(_frame(spark, rows, FEATURES_DDL), "features_monthly", partition_by=["month"])
    subscriptions = [{"month": MONTH, "subscriber_id": s, "msisdn": f"m{s}"} for s in lines]
    lake.write(
        _frame(spark, subscriptions, "month string, subscriber_id string, msisdn string"), "subscriptions"
    )
    lake.write(
        _frame(
            spark,
            [{"campaign_month": "2024-04", "subscriber_id": "s5", "contacted": True}],
            "campaign_month string, subscriber_id string, contacted boolean",
        ),
        "campaign_outcomes",
    )
    earlier = [
        {"score_month": "2024-03", "subscriber_id": "s7", "status": "assigned"},
        {"score_month": "2024-01", "subscriber_id": "s8", "status": "assigned"},
    ]
    lake.write(
        _frame(spark, earlier, "score_month string, subscriber_id string, status string"),
        "offer_assignments",
        partition_by=["score_month"],
    )
    return lake, cfg


def test_a_hand_built_month_gets_every_reason_with_a_four_month_complaint_window(spark, tmp_path):
    lake, cfg = _hand_lake(spark, tmp_path)
    report = match_offers_month(spark, cfg, MONTH)
    got = (
        lake.read("offer_assignments")
        .where(F.col("score_month") == MONTH)
        .select(
            "subscriber_id", "status", "exclusion_reason", "offer_id", "expected_net_value", "cost", "msisdn"
        )
        .toPandas()
        .sort_values("subscriber_id")
        .set_index("subscriber_id")
    )
    assigned, excluded = ("assigned", None, "pack"), ("excluded",)
    want = {
        "s1": (*assigned, 20.0, 10.0, "ms1"),
        "s2": (*excluded, "no_consent", None, None, None, None),
        "s3": (*excluded, "open_complaint", None, None, None, None),
        "s4": (*assigned, 38.0, 10.0, "ms4"),
        "s5": (*excluded, "cooling_down", None, None, None, None),
        "s6": (*excluded, "below_value", None, None, None, None),
        "s7": (*excluded, "cooling_down", None, None, None, None),
        "s8": (*excluded, "budget", None, 8.0, None, None),
    }
    assert list(got.index) == sorted(want)
    for s, (status, reason, offer, value, cost, msisdn) in want.items():
        row = got.loc[s].map(lambda v: None if pd.isna(v) else v)
        assert (row["status"], row["exclusion_reason"], row["offer_id"], row["msisdn"], row["cost"]) == (
            status,
            reason,
            offer,
            msisdn,
            cost,
        ), s
        assert row["expected_net_value"] == (None if value is None else pytest.approx(value)), s
    assert (report.method, report.candidates, report.assigned, report.holdout) == ("exact", 3, 2, 0)
    assert report.spend == 20.0 and report.total_value == pytest.approx(58.0)


# --- the Spark price path, its repair, the control group ---------------------------------------------------


def _candidates(spark: SparkSession, values: np.ndarray) -> DataFrame:
    rows = [
        (f"s{i}", [None if not np.isfinite(v) else float(v) for v in row]) for i, row in enumerate(values)
    ]
    return spark.createDataFrame(rows, "subscriber_id string, offer_values array<double>")


def _check_feasible(picked: pd.DataFrame, values: np.ndarray, params: OfferParams) -> float:
    """The total value of ``picked`` counted from ``values``, after checking it keeps every constraint."""
    rows = picked["subscriber_id"].str[1:].astype(int).to_numpy()
    offers = picked["offer_index"].to_numpy()
    assert len(set(rows)) == len(rows)  # one offer per line
    assert sum(params.offers[o].cost for o in offers) <= params.budget + 1e-9
    for j, o in enumerate(params.offers):
        assert o.capacity is None or (offers == j).sum() <= o.capacity
    chosen = values[rows, offers]
    assert np.isfinite(chosen).all()  # only offers the line may get
    assert picked["expected_net_value"].to_numpy() == pytest.approx(chosen)
    return float(chosen.sum())


def test_the_price_path_in_spark_is_feasible_below_the_optimum_and_its_bound_above(spark):
    rng = np.random.default_rng(5)
    for _ in range(3):
        values, params = random_case(rng)
        params = params.model_copy(update={"lagrangian_iterations": 12})
        picked, assignment = solve_in_spark(_candidates(spark, values), params)
        total = _check_feasible(picked.toPandas(), values, params)
        optimum = brute_force_optimum(values, params)
        assert assignment.total == pytest.approx(total)
        assert total <= optimum + 1e-9 <= assignment.bound + 2e-9


def test_the_price_path_in_spark_is_near_the_optimum_on_a_larger_case(spark):
    params = OfferParams(budget=800)
    rng = np.random.default_rng(1)
    values = rng.normal(-2, 6, (2000, len(params.offers)))
    values[rng.random(values.shape) < 0.5] = -np.inf
    picked, assignment = solve_in_spark(_candidates(spark, values), params)
    exact = solve_exact(values, params)
    total = _check_feasible(picked.toPandas(), values, params)
    assert total <= exact.total <= assignment.bound + 1e-6
    assert total >= 0.97 * exact.total


def test_repair_cuts_each_offer_to_capacity_then_keeps_the_best_prefix_within_the_budget(spark):
    params = OfferParams(
        offers=(
            Offer(id="call", channel="call", cost=5.0, capacity=2, effect=0.1),
            Offer(id="sms", channel="sms", cost=1.0, effect=0.1),
        ),
        budget=8.0,
    )
    picks = spark.createDataFrame(
        [("s0", 1, 10.0), ("s1", 0, 10.0), ("s2", 0, 9.0), ("s3", 0, 9.5), ("s4", 1, 7.0), ("s5", 1, 6.0)],
        "subscriber_id string, offer_index int, expected_net_value double",
    )
    kept = sorted(r.subscriber_id for r in repair_picks(picks, params).collect())
    # capacity: the call keeps s1 (10) and s3 (9.5), not s2 (9); then by value (ties by id): s0 (spend 1),
    # s1 (6), s3 (11 > 8) ends the prefix, so s4 and s5 are out though each would still fit
    assert kept == ["s0", "s1"]


def test_the_control_group_is_each_strata_lowest_hashes_with_halves_rounded_up(spark):
    params = OfferParams(holdout_rate=0.5, holdout_salt="pepper")
    strata = {("new", "high"): 5, ("new", "medium"): 3, ("established", "high"): 4}
    base, picked, i = [], [], 0
    for (cohort, band), n in strata.items():
        for _ in range(n):
            base.append((f"s{i}", cohort, band))
            picked.append((f"s{i}", 0, 1.0 + i))
            i += 1
    base += [("x_consent", "new", "high"), ("x_unpicked", "new", "high")]
    values = [(s, None, [1.0 + k]) for k, (s, *_rest) in enumerate(base[:i])]
    values += [("x_consent", "no_consent", None), ("x_unpicked", None, [1.0, 3.0])]
    out = with_holdout(
        spark.createDataFrame(base, "subscriber_id string, cohort string, risk_band string"),
        spark.createDataFrame(values, "subscriber_id string, reason string, offer_values array<double>"),
        spark.createDataFrame(picked, "subscriber_id string, offer_index int, expected_net_value double"),
        MONTH,
        params,
    ).toPandas()
    got = out.set_index("subscriber_id")

    def key(s: str) -> str:
        return hashlib.sha256(f"pepper|{MONTH}|{s}".encode()).hexdigest()

    held = set()
    for (cohort, band), n in strata.items():
        ids = sorted((s for s, c, b in base[:i] if (c, b) == (cohort, band)), key=key)
        k = int((Decimal(n) * Decimal("0.5")).quantize(Decimal(1), rounding=ROUND_HALF_UP))  # 5 -> 3
        held |= set(ids[:k])
    assert len(held) == 3 + 2 + 2
    assert set(got.index[got["status"] == "holdout"]) == held
    assert set(got.index[got["status"] == "assigned"]) == {s for s, *_ in base[:i]} - held
    assert (got.loc[list(held), "exclusion_reason"] == "holdout").all()
    assert tuple(got.loc["x_consent", ["status", "exclusion_reason"]]) == ("excluded", "no_consent")
    unpicked = got.loc["x_unpicked"]
    assert (unpicked["status"], unpicked["exclusion_reason"], unpicked["expected_net_value"]) == (
        "excluded",
        "unassigned",
        3.0,
    )
    assert unpicked["_best_index"] == 1


# --- the stage on a generated, scored lake -------------------------------------------------------------

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
    }
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
    top = (
        lake.read("warning_list")
        .where(F.col("score_month") == MONTH)
        .orderBy(F.desc("churn_probability"))
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
def test_holdout_is_a_stratified_share_of_the_picked_and_stable_across_reruns(matched: Matched):
    lake, cfg, first = matched.lake, matched.cfg, matched.first
    a = _assignments(lake)
    picked = a[a["status"].isin(["assigned", "holdout"])]
    for _, part in picked.groupby(["cohort", "risk_band"]):
        # Spark rounds halves up (Python's round would round them to even)
        share = Decimal(str(cfg.offers.holdout_rate)) * len(part)
        assert (part["status"] == "holdout").sum() == int(share.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    assert (a.loc[a["status"] == "holdout", "exclusion_reason"] == "holdout").all()
    cols = ["subscriber_id", "status", "exclusion_reason", "offer_id", "intended_offer_id"]
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
    joined = w.merge(labels[["subscriber_id", "is_churn"]], on="subscriber_id")
    perf = (
        lake.read("model_performance")
        .where((F.col("source") == "realised") & (F.col("month") == "2024-07"))
        .toPandas()
    )
    auc = perf[(perf["cohort"] == "all") & (perf["metric"] == "roc_auc") & (perf["test_month"] == MONTH)][
        "value"
    ]
    assert auc.iloc[0] == pytest.approx(
        roc_auc_score(joined["is_churn"], joined["churn_probability"]), abs=1e-3
    )
    effect = lake.read("campaign_effect").where(F.col("month") == "2024-07").toPandas()
    total = effect[
        (effect["offer_id"] == "all") & (effect["cohort"] == "all") & (effect["risk_band"] == "all")
    ].iloc[0]
    a = (
        lake.read("offer_assignments")
        .where(F.col("score_month") == MONTH)
        .toPandas()
        .merge(labels[["subscriber_id", "is_churn"]])
    )
    treated, held = a[a["status"] == "assigned"], a[a["status"] == "holdout"]
    assert (total["treated"], total["holdout"]) == (len(treated), len(held))
    assert total["churn_rate_treated"] == pytest.approx(treated["is_churn"].mean())
    assert total["churn_rate_holdout"] == pytest.approx(held["is_churn"].mean())
    churned_t, churned_h = int(treated["is_churn"].sum()), int(held["is_churn"].sum())
    assert total["effect"] == pytest.approx(churned_h / len(held) - churned_t / len(treated))
    low, high = confint_proportions_2indep(
        churned_h, len(held), churned_t, len(treated), method="newcomb", compare="diff"
    )
    assert (total["effect_low"], total["effect_high"]) == pytest.approx((low, high))
    # the planted effect: held-out lines churn at 30 %, treated ones at 10 %
    assert low <= 0.2 <= high


@pytest.mark.slow
def test_the_next_matching_reads_the_measured_effects(evaluated: MatchedAndEvaluated, spark):
    lake, month_args = evaluated.lake, evaluated.month_args
    effects = (
        lake.read("offer_effects").where((F.col("month") == "2024-07") & F.col("cohort").isNull()).toPandas()
    )
    assert len(effects) > 0 and ((effects["effect"] >= 0) & (effects["effect"] <= 1)).all()
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
