"""A whole month with non-default feature windows: every stage takes its column names from one place.

With ``features.trend_months: 4``, ``features.contagion_months: 2`` and long windows of 4, 6 and 12
months the feature build writes no ``_3m`` name; training (segments, reason families), scoring and
offer matching must read those names, not the default ``_3m`` ones written as literals somewhere.
"""

from __future__ import annotations

import fnmatch
import shutil

import pytest
from pyspark.sql import functions as F

from features.columns import avg_col, ratio_avg_col, window_col
from models.params import ScoreParams
from models.scoring import reason_families
from tests.conftest import TEST_CONF

pytestmark = pytest.mark.slow

MONTHS = ("2024-01", "2024-02", "2024-03", "2024-04", "2024-05")  # the trained lake's: enough labels by 05
RUN = "2024-05"


def test_the_default_reason_patterns_follow_the_window():
    names = [ratio_avg_col("out_events", 4), ratio_avg_col("voice_out_min", 6), "region"]
    assert reason_families(names, ScoreParams()) == ["usage_decline", "usage_decline", None]


@pytest.fixture(scope="module")
def windowed(spark, feature_lake, tmp_path_factory):
    from pipelines.build_features import build_features_month
    from pipelines.core.config import load_config
    from pipelines.core.lake import Lake
    from pipelines.match_offers import match_offers_month
    from pipelines.score import score_month
    from pipelines.train import train_month

    # the session's feature lake ingested the six months with the same ingest settings: its silver tables
    # are copied, the features and labels built again with the windows under test
    root = tmp_path_factory.mktemp("windows") / "lake"
    built = shutil.ignore_patterns("features_monthly", "labels_monthly")
    shutil.copytree(feature_lake.cfg.lake_root, root, ignore=built)
    cfg = load_config(
        [TEST_CONF],
        [
            f"lake.root={root}",
            f"landing.root={feature_lake.cfg.landing_root}",
            "features.trend_months=4",
            "features.contagion_months=2",
            # the long windows are configured on their own: no 3-month one either
            "features.history_windows=[1, 4, 6, 12]",
            "features.care_category_windows=[4, 6]",
            "train.fit_months=2",
            "offers.min_band=low",
        ],
    )
    for month in MONTHS:
        build_features_month(spark, cfg, month)
    trained = train_month(spark, cfg, RUN)
    # the version just trained, promoted or not: the gates judge quality, this test judges names
    score_month(spark, cfg, RUN, model_version=trained.version)
    match_offers_month(spark, cfg, RUN)
    return Lake(spark, cfg), cfg


def test_features_carry_the_configured_windows(windowed):
    lake, _ = windowed
    columns = set(lake.read("features_monthly").columns)
    for name in (
        avg_col("arpu", 4),
        ratio_avg_col("out_events", 4),
        window_col("unresolved_complaints", 4),
        window_col("bill_months", 4),
    ):
        assert name in columns
    assert fnmatch.filter(columns, "*_3m") == []


def test_scoring_uses_the_windowed_columns(windowed):
    lake, _ = windowed
    warning = lake.read("warning_list").where(F.col("score_month") == RUN).toPandas()
    features = (
        lake.read("features_monthly")
        .where(F.col("month") == RUN)
        .select("subscriber_id", avg_col("arpu", 4), "monthly_fee")
        .toPandas()
        .set_index("subscriber_id")
    )
    assert len(warning) == len(features)
    assert warning["usage_segment"].notna().all()
    # arpu_3m on the list (its name is the table's contract) is the feature window's ARPU, or the plan
    # fee where the line has no bill yet
    expected = features[avg_col("arpu", 4)].astype(float).fillna(features["monthly_fee"].astype(float))
    got = warning.set_index("subscriber_id")["arpu_3m"]
    assert got.sort_index().to_numpy() == pytest.approx(expected.sort_index().to_numpy())


def test_matching_reads_the_windowed_complaints(windowed):
    lake, cfg = windowed
    sales_like = [o.id for o in cfg.offers.offers if o.sales_like]
    complaining = (
        lake.read("features_monthly")
        .where((F.col("month") == RUN) & (F.col(window_col("unresolved_complaints", 4)) > 0))
        .select("subscriber_id")
    )
    assignments = lake.read("offer_assignments").where(F.col("score_month") == RUN)
    assert assignments.where(F.col("status") == "assigned").count() > 0
    offered = assignments.join(complaining, "subscriber_id").where(F.col("status") == "assigned")
    assert complaining.count() > 0
    assert offered.where(F.col("offer_id").isin(*sales_like)).count() == 0
    # not vacuous: complaining lines reached the rule (suppressed, or given an offer that is not sales-like)
    reached = assignments.join(complaining, "subscriber_id").where(
        (F.col("status") == "assigned") | (F.col("exclusion_reason") == "open_complaint")
    )
    assert reached.count() > 0
