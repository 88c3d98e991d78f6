"""The evaluation stage on a lake built by hand: a campaign with a planted treated / held-out churn
difference (10 % against 30 %, one held-out churner gone in the gap month), a programme hold-out, scored
lines with known labels, and a later score month whose labels have not matured. Every expected value is
counted here from the planted rows (pandas, statsmodels, sklearn)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from scipy.stats import norm
from sklearn.metrics import brier_score_loss, roc_auc_score
from statsmodels.stats.proportion import confint_proportions_2indep

from pipelines.core.config import load_config
from pipelines.core.lake import Lake
from pipelines.evaluate import EvaluateReport, evaluate_month
from tests.conftest import TEST_CONF

SCORE_MONTH = "2024-01"  # churn window 2024-03 (gap 1, window 1): matured by RUN_MONTH
LATER = "2024-02"  # window 2024-04: not matured by RUN_MONTH, so never evaluated
RUN_MONTH = "2024-03"


@dataclass(frozen=True)
class Arm:
    """``n`` lines of one status in one stratum, the first ``churners`` of them churn; the first
    ``contacted`` are contacted and the first ``accepted`` accept."""

    prefix: str
    status: str
    cohort: str
    risk_band: str
    churn_type: str
    n: int
    churners: int
    contacted: int = 0
    accepted: int = 0
    feedback: str | None = None  # the first 3 contacted give this feedback code
    gap: int = 0  # the first ``gap`` churners leave in the gap month (no training label, a campaign outcome)
    reason: str = "holdout"  # the exclusion reason of a hold-out line


ARMS = (
    Arm("th", "assigned", "established", "high", "price_sensitivity", 20, 2, 15, 6, "too_expensive"),
    Arm("hh", "holdout", "established", "high", "price_sensitivity", 10, 4, gap=1),
    Arm("tm", "assigned", "new", "medium", "service_issue", 20, 2, 15, 6, "network"),
    Arm("hm", "holdout", "new", "medium", "service_issue", 10, 2),
    Arm("x", "excluded", "established", "low", "price_sensitivity", 10, 5),
    Arm("p", "holdout", "established", "high", "price_sensitivity", 10, 5, reason="programme_holdout"),
)
COST = 5.0  # of each assigned offer


def _planted(offer: str) -> pd.DataFrame:
    """One row per line of the score month: status, stratum, churn, campaign outcome, probability."""
    rng = np.random.default_rng(3)
    rows = []
    for arm in ARMS:
        for i in range(arm.n):
            gap = i < arm.gap
            rows.append(
                {
                    "subscriber_id": f"{arm.prefix}{i:02d}",
                    "status": arm.status,
                    "exclusion_reason": {"holdout": arm.reason, "excluded": "below_value"}.get(arm.status),
                    "programme_holdout": arm.reason == "programme_holdout",
                    "intended_offer_id": None if arm.status == "excluded" or arm.prefix == "p" else offer,
                    "cost": COST if arm.status == "assigned" else None,
                    "value_tier": "high" if arm.cohort == "established" else "medium",
                    "cohort": arm.cohort,
                    "risk_band": arm.risk_band,
                    "churn_type": arm.churn_type,
                    "arpu_3m": 20.0,
                    "churned": i < arm.churners,  # the campaign outcome, from the contact month
                    "is_churn": None if gap else i < arm.churners,  # the training label
                    "label_status": "gap_churn" if gap else "churn" if i < arm.churners else "active",
                    "churn_reason": "port_out" if i < arm.churners else None,
                    "contacted": i < arm.contacted,
                    "accepted": i < arm.accepted,
                    "feedback_code": arm.feedback if i < 3 else None,
                    # on a grid coarser than the evaluation's probability bins, churners scored higher on
                    # average (some ties, some misses)
                    "churn_probability": round(
                        float(rng.uniform(0.3, 0.9) if i < arm.churners else rng.uniform(0.01, 0.6)), 2
                    ),
                }
            )
    return pd.DataFrame(rows)


def _write(lake: Lake, frame: pd.DataFrame, ddl: str, name: str, partition: str) -> None:
    spark: SparkSession = lake.spark
    names = [f.name for f in spark.createDataFrame([], ddl).schema.fields]
    rows = [tuple(None if pd.isna(v) else v for v in r) for r in frame[names].itertuples(index=False)]
    lake.write(spark.createDataFrame(rows, ddl), name, partition_by=[partition])


@dataclass(frozen=True)
class Evaluated:
    lake: Lake
    lines: pd.DataFrame  # the planted lines of SCORE_MONTH with an outcome
    offer: str  # their intended offer
    report: EvaluateReport


@pytest.fixture(scope="module")
def evaluated(spark, tmp_path_factory) -> Evaluated:
    """The lake of the planted month, evaluated once as of RUN_MONTH (read-only for the tests)."""
    root = tmp_path_factory.mktemp("evaluate")
    settings = [f"lake.root={root / 'lake'}", f"landing.root={root / 'landing'}", "evaluate.min_arm_lines=10"]
    lake = Lake(spark, load_config([TEST_CONF], settings))
    offer = lake.cfg.offers.offers[0].id  # an offer of the catalogue (others get no offer_effects row)
    lines = _planted(offer)
    # a treated line whose label is not available: counted nowhere
    unlabelled = lines.iloc[[0]].assign(subscriber_id="th_unlabelled", is_churn=None, label_status="pending")
    later = lines.assign(month=LATER, score_month=LATER, is_churn=True)  # every line churns: never read
    this = pd.concat([lines, unlabelled]).assign(month=SCORE_MONTH, score_month=SCORE_MONTH)
    both = pd.concat([this, later], ignore_index=True)
    both = both.assign(
        label_available=both["label_status"] != "pending",
        campaign_month=both["score_month"],
        model_version="7",
        run_id="run-7",
    )
    _write(lake, both, "month string, subscriber_id string", "features_monthly", "month")
    _write(
        lake,
        both,
        "month string, subscriber_id string, is_churn boolean, label_available boolean, label_status string, "
        "churn_reason string",
        "labels_monthly",
        "month",
    )
    _write(
        lake,
        both,
        "score_month string, subscriber_id string, churn_probability double, cohort string, "
        "risk_band string, model_version string, run_id string",
        "warning_list",
        "score_month",
    )
    _write(
        lake,
        both,
        "score_month string, subscriber_id string, status string, exclusion_reason string, "
        "intended_offer_id string, cohort string, risk_band string, churn_type string, value_tier string, "
        "arpu_3m double, cost double, programme_holdout boolean",
        "offer_assignments",
        "score_month",
    )
    outcomes = both[both["contacted"]]
    _write(
        lake,
        outcomes,
        "campaign_month string, subscriber_id string, contacted boolean, accepted boolean, "
        "feedback_code string",
        "campaign_outcomes",
        "campaign_month",
    )
    report = evaluate_month(lake.spark, lake.cfg, RUN_MONTH)
    return Evaluated(lake, lines, offer, report)


def _rows(lake: Lake, table: str) -> pd.DataFrame:
    return lake.read(table).where(F.col("month") == RUN_MONTH).toPandas()


def test_only_the_matured_score_month_is_evaluated(evaluated: Evaluated):
    lake, report = evaluated.lake, evaluated.report
    assert report.score_months == [SCORE_MONTH]
    for table in ("model_performance", "campaign_effect", "programme_effect", "campaign_feedback"):
        rows = lake.read(table).where(F.col("month") == RUN_MONTH)
        column = "test_month" if table == "model_performance" else "score_month"
        assert {r[0] for r in rows.select(column).distinct().collect()} == {SCORE_MONTH}, table


def test_campaign_effect_is_the_planted_difference_in_every_roll_up(evaluated: Evaluated):
    lake, lines, offer = evaluated.lake, evaluated.lines, evaluated.offer
    cfg = lake.cfg
    horizon = cfg.offers.value_horizon_months * cfg.offers.margin
    got = _rows(lake, "campaign_effect").set_index(["offer_id", "cohort", "risk_band"]).sort_index()
    picked = lines[lines["intended_offer_id"].notna()]
    assert picked["intended_offer_id"].nunique() == 1
    expected = {}
    dims = ("intended_offer_id", "cohort", "risk_band")
    for k in range(len(dims) + 1):
        for by in itertools.combinations(dims, k):
            groups = picked.groupby(list(by)) if by else [((), picked)]
            for key, part in groups:
                key = key if isinstance(key, tuple) else (key,)
                named = dict(zip(by, key, strict=True))
                index = tuple(named.get(d, "all") for d in dims)
                t, h = part[part["status"] == "assigned"], part[part["status"] == "holdout"]
                ct, ch = int(t["churned"].sum()), int(h["churned"].sum())
                low, high = confint_proportions_2indep(
                    ch,
                    len(h),
                    ct,
                    len(t),
                    method="newcomb",
                    compare="diff",
                    alpha=1 - cfg.evaluate.confidence,
                )
                effect = ch / len(h) - ct / len(t)
                if "intended_offer_id" not in by:
                    # the all-offers rows stand each offer's arms side by side (one offer here: weight 1)
                    # with a Wald interval
                    rt, rh = ct / len(t), ch / len(h)
                    se = (rh * (1 - rh) / len(h) + rt * (1 - rt) / len(t)) ** 0.5
                    z = norm.ppf(0.5 + cfg.evaluate.confidence / 2)
                    low, high = effect - z * se, effect + z * se
                expected[index] = {
                    "treated": len(t),
                    "holdout": len(h),
                    "churn_rate_treated": ct / len(t),
                    "churn_rate_holdout": ch / len(h),
                    "effect": effect,
                    "effect_low": low,
                    "effect_high": high,
                    "relative_effect": effect / (ch / len(h)),
                    "contacted": int(t["contacted"].sum()),
                    "accepted": int(t["accepted"].sum()),
                    "incremental_revenue": effect * len(t) * 20.0 * horizon,
                    "cost": COST * len(t),
                    "net_value": effect * len(t) * 20.0 * horizon - COST * len(t),
                    "net_value_low": low * len(t) * 20.0 * horizon - COST * len(t),
                }
    assert sorted(got.index) == sorted(expected)
    for index, want in expected.items():
        row = got.loc[index]
        for column, value in want.items():
            assert row[column] == pytest.approx(value), (index, column)
        assert row["score_month"] == SCORE_MONTH
        assert row["contact_rate"] == pytest.approx(want["contacted"] / want["treated"])
        assert row["acceptance_rate"] == pytest.approx(want["accepted"] / want["contacted"])
    total = got.loc[("all", "all", "all")]
    # the planted arms: 4 of 40 treated churn, 6 of 20 held out (one of them in the gap month: the
    # training label's 5 of 19 would understate the effect)
    assert (total["treated"], total["holdout"], total["effect"]) == (40, 20, pytest.approx(0.2))
    assert not total["underpowered"] and got.loc[(offer, "new", "medium"), "underpowered"] == False  # noqa: E712
    assert total["effect_low"] < 0.2 < total["effect_high"]
    assert got.loc[(offer, "established", "high"), "effect"] == pytest.approx(0.4 - 0.1)


def test_programme_effect_compares_the_lines_outside_the_programme_hold_out_with_those_in_it(
    evaluated: Evaluated,
):
    got = _rows(evaluated.lake, "programme_effect").set_index(["cohort", "risk_band"])
    total = got.loc[("all", "all")]
    # at or above the medium band: 60 lines outside (10 churn), the 10 of the programme hold-out (5 churn);
    # the excluded lines are in the low band
    assert (total["outside"], total["holdout"]) == (60, 10)
    assert total["churn_rate_outside"] == pytest.approx(10 / 60)
    assert total["effect"] == pytest.approx(0.5 - 10 / 60)
    low, high = confint_proportions_2indep(5, 10, 10, 60, method="newcomb", compare="diff")
    assert (total["effect_low"], total["effect_high"]) == pytest.approx((low, high))
    assert got.loc[("established", "high"), "outside"] == 30 and got.loc[("new", "medium"), "holdout"] == 0


def test_offer_effects_pool_the_strata_and_lean_on_the_prior_by_precision(evaluated: Evaluated):
    lake, offer, report = evaluated.lake, evaluated.offer, evaluated.report
    cfg = lake.cfg
    prior = next(o.effect for o in cfg.offers.offers if o.id == offer)
    got = _rows(lake, "offer_effects")
    assert set(got["offer_id"]) == {offer}
    assert set(got["dimension"]) == {"all", "cohort", "churn_type", "value_tier", "risk_band"}
    overall = got[got["dimension"] == "all"].iloc[0]
    # Mantel-Haenszel over the two strata: risk ratio (2x10/30 + 2x10/30) / (4x20/30 + 2x20/30) = 1/3;
    # risk difference: both strata weigh 20x10/30, (0.3 + 0.1) / 2
    assert overall["measured"] == pytest.approx(2 / 3) and overall["effect_diff"] == pytest.approx(0.2)
    assert overall["measured_low"] < 2 / 3 < overall["measured_high"] and 0 < overall["p_value"] < 0.2
    assert (overall["treated"], overall["holdout"], overall["prior"]) == (40, 20, prior)
    cohort = got[got["dimension"] == "cohort"].set_index("segment")
    assert cohort.loc["established", "measured"] == pytest.approx(0.75)
    assert cohort.loc["new", "measured"] == pytest.approx(0.5)
    assert (cohort["cohort"] == cohort.index).all()  # the cohort column still names the cohort
    # the net value: 0.2 of 40 lines x 20 x the value horizon, less the offers' cost
    value = 40 * 20.0 * cfg.offers.value_horizon_months * cfg.offers.margin
    assert overall["net_value"] == pytest.approx(0.2 * value - 40 * COST)
    assert overall["cost"] == pytest.approx(40 * COST)
    # 60 lines against a prior of standard deviation 0.1: between the two, nearer the prior
    assert min(prior, 2 / 3) < overall["effect"] < max(prior, 2 / 3)
    assert abs(overall["effect"] - prior) < abs(overall["effect"] - 2 / 3)
    assert not overall["underpowered"]
    assert report.effects == {offer: pytest.approx(overall["effect"])}


def test_feedback_is_counted_by_churn_type(evaluated: Evaluated):
    lake = evaluated.lake
    got = _rows(lake, "campaign_feedback")
    assert sorted(zip(got["churn_type"], got["feedback_code"], got["contacts"], strict=True)) == [
        ("price_sensitivity", "too_expensive", 3),
        ("service_issue", "network", 3),
    ]


def test_realised_performance_is_the_scores_against_the_labels(evaluated: Evaluated):
    lake, lines, report = evaluated.lake, evaluated.lines, evaluated.report
    got = _rows(lake, "model_performance")
    assert set(got["source"]) == {"realised"} and set(got["model"]) == {"family"}
    assert set(zip(got["model_version"], got["run_id"], strict=True)) == {("7", "run-7")}
    metrics = got.set_index(["cohort", "metric"])["value"]
    # the lines left alone with a training label: the treated and the gap-month leaver are out
    lines = lines[(lines["status"] != "assigned") & lines["is_churn"].notna()]
    lines = lines.assign(is_churn=lines["is_churn"].astype(bool))
    for cohort, part in [("all", lines), *lines.groupby("cohort")]:
        y, p = part["is_churn"].astype(int), part["churn_probability"]
        assert metrics[(cohort, "rows")] == len(part), cohort
        assert metrics[(cohort, "churn_rate")] == pytest.approx(y.mean()), cohort
        assert metrics[(cohort, "roc_auc")] == pytest.approx(roc_auc_score(y, p), abs=1e-9), cohort
        assert metrics[(cohort, "brier")] == pytest.approx(brier_score_loss(y, p)), cohort
    assert report.realised == {
        SCORE_MONTH: pytest.approx(roc_auc_score(lines["is_churn"], lines["churn_probability"]))
    }
