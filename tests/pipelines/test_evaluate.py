"""The evaluation stage on a lake built by hand: a campaign with a planted treated / held-out churn
difference (10 % against 30 %), scored lines with known labels, and a later score month whose labels have
not matured. Every expected value is counted here from the planted rows (pandas, statsmodels, sklearn)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
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


ARMS = (
    Arm("th", "assigned", "established", "high", "price_sensitivity", 20, 2, 15, 6, "too_expensive"),
    Arm("hh", "holdout", "established", "high", "price_sensitivity", 10, 4),
    Arm("tm", "assigned", "new", "medium", "service_issue", 20, 2, 15, 6, "network"),
    Arm("hm", "holdout", "new", "medium", "service_issue", 10, 2),
    Arm("x", "excluded", "established", "low", "price_sensitivity", 10, 5),
)


def _planted(offer: str) -> pd.DataFrame:
    """One row per line of the score month: status, stratum, churn, campaign outcome, probability."""
    rng = np.random.default_rng(3)
    rows = []
    for arm in ARMS:
        for i in range(arm.n):
            rows.append(
                {
                    "subscriber_id": f"{arm.prefix}{i:02d}",
                    "status": arm.status,
                    "intended_offer_id": None if arm.status == "excluded" else offer,
                    "cohort": arm.cohort,
                    "risk_band": arm.risk_band,
                    "churn_type": arm.churn_type,
                    "arpu_3m": 20.0,
                    "is_churn": i < arm.churners,
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
    lines: pd.DataFrame  # the planted lines of SCORE_MONTH with a label
    offer: str  # their intended offer
    report: EvaluateReport


@pytest.fixture(scope="module")
def evaluated(spark, tmp_path_factory) -> Evaluated:
    """The lake of the planted month, evaluated once as of RUN_MONTH (read-only for the tests)."""
    root = tmp_path_factory.mktemp("evaluate")
    lake = Lake(
        spark, load_config([TEST_CONF], [f"lake.root={root / 'lake'}", f"landing.root={root / 'landing'}"])
    )
    offer = lake.cfg.offers.offers[0].id  # an offer of the catalogue (others get no offer_effects row)
    lines = _planted(offer)
    # a treated line whose label is not available: counted nowhere
    unlabelled = lines.iloc[[0]].assign(subscriber_id="th_unlabelled", is_churn=None)
    later = lines.assign(month=LATER, score_month=LATER, is_churn=True)  # every line churns: never read
    this = pd.concat([lines, unlabelled]).assign(month=SCORE_MONTH, score_month=SCORE_MONTH)
    both = pd.concat([this, later], ignore_index=True)
    both = both.assign(
        label_available=both["is_churn"].notna(),
        campaign_month=both["score_month"],
        model_version="7",
        run_id="run-7",
    )
    _write(lake, both, "month string, subscriber_id string", "features_monthly", "month")
    _write(
        lake,
        both,
        "month string, subscriber_id string, is_churn boolean, label_available boolean",
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
        "score_month string, subscriber_id string, status string, intended_offer_id string, cohort string, "
        "risk_band string, churn_type string, arpu_3m double",
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
    for table in ("model_performance", "campaign_effect", "campaign_feedback"):
        rows = lake.read(table).where(F.col("month") == RUN_MONTH)
        column = "test_month" if table == "model_performance" else "score_month"
        assert {r[0] for r in rows.select(column).distinct().collect()} == {SCORE_MONTH}, table


def test_campaign_effect_is_the_planted_difference_in_every_roll_up(evaluated: Evaluated):
    lake, lines, offer = evaluated.lake, evaluated.lines, evaluated.offer
    cfg = lake.cfg
    got = _rows(lake, "campaign_effect").set_index(["offer_id", "cohort", "risk_band"]).sort_index()
    picked = lines[lines["status"] != "excluded"]
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
                ct, ch = int(t["is_churn"].sum()), int(h["is_churn"].sum())
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
                    "incremental_revenue": effect * len(t) * 20.0 * cfg.evaluate.revenue_months,
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
    # the planted arms: 4 of 40 treated churn, 6 of 20 held out
    assert (total["treated"], total["holdout"], total["effect"]) == (40, 20, pytest.approx(0.2))
    assert total["effect_low"] < 0.2 < total["effect_high"]
    assert got.loc[(offer, "established", "high"), "effect"] == pytest.approx(0.4 - 0.1)


def test_offer_effects_measure_the_relative_effect_and_lean_on_the_prior(evaluated: Evaluated):
    lake, offer, report = evaluated.lake, evaluated.offer, evaluated.report
    prior = next(o.effect for o in lake.cfg.offers.offers if o.id == offer)
    got = _rows(lake, "offer_effects").set_index("cohort", drop=False)
    assert set(got["offer_id"]) == {offer}
    overall = got[got["cohort"].isna()].iloc[0]
    # (30 % - 10 %) / 30 % of the held-out's churn prevented; (40 - 10) / 40 and (20 - 10) / 20 per cohort
    assert overall["measured"] == pytest.approx(2 / 3)
    assert (overall["treated"], overall["holdout"], overall["prior"]) == (40, 20, prior)
    assert got.loc["established", "measured"] == pytest.approx(0.75)
    assert got.loc["new", "measured"] == pytest.approx(0.5)
    # 60 lines against a prior worth 200: between the two, nearer the prior
    assert min(prior, 2 / 3) < overall["effect"] < max(prior, 2 / 3)
    assert abs(overall["effect"] - prior) < abs(overall["effect"] - 2 / 3)
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
    for cohort, part in [("all", lines), *lines.groupby("cohort")]:
        y, p = part["is_churn"].astype(int), part["churn_probability"]
        assert metrics[(cohort, "rows")] == len(part), cohort
        assert metrics[(cohort, "churn_rate")] == pytest.approx(y.mean()), cohort
        assert metrics[(cohort, "roc_auc")] == pytest.approx(roc_auc_score(y, p), abs=1e-9), cohort
        assert metrics[(cohort, "brier")] == pytest.approx(brier_score_loss(y, p)), cohort
    assert report.realised == {
        SCORE_MONTH: pytest.approx(roc_auc_score(lines["is_churn"], lines["churn_probability"]))
    }
