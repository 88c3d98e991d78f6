"""Churn labels against the contract: gap month, window, reasons, pending months (M = 2024-01)."""

from __future__ import annotations

import datetime as dt

from features.labels import compute_labels, label_window, prepaid_inactive_subscribers
from features.params import ChurnParams

D = dt.date
SNAP = (
    "subscriber_id string, month string, status string, deactivation_date date, deactivation_reason string, "
    "port_out_operator string"
)
SNAPSHOTS = [
    # a stale January row saying "deactivated" is before the window and never read
    ("stay", "2024-01", "deactivated", D(2024, 1, 3), "port_out", "OP_B"),
    ("stay", "2024-02", "active", None, None, None),
    ("stay", "2024-03", "active", None, None, None),
    ("churn", "2024-02", "active", None, None, None),
    ("churn", "2024-03", "deactivated", D(2024, 3, 1), "port_out", "OP_B"),
    ("gap", "2024-02", "deactivated", D(2024, 2, 29), "voluntary", None),
    ("invol", "2024-03", "deactivated", D(2024, 3, 15), "non_payment", None),
    ("fraud", "2024-03", "deactivated", D(2024, 3, 31), "fraud", None),
    ("other", "2024-03", "deactivated", D(2024, 3, 20), "other", None),
    # leaves after the window: not a churner of January
    ("later", "2024-03", "active", None, None, None),
    ("later", "2024-04", "deactivated", D(2024, 4, 1), "port_out", "OP_C"),
    # "lost" is missing from March without a deactivation: unknown
    ("lost", "2024-02", "active", None, None, None),
    ("idle", "2024-03", "active", None, None, None),
]
POPULATION = [(s, "postpaid") for s in ("stay", "churn", "gap", "invol", "fraud", "other", "later", "lost")]
POPULATION.append(("idle", "prepaid"))
RULES = ChurnParams(
    counted_reasons=("port_out", "voluntary"),
    involuntary_reasons=("non_payment",),
    excluded_reasons=("fraud", "deceased"),
)


def _labels(spark, *, available=True, gap_churn="exclude", inactive=None):
    population = spark.createDataFrame(POPULATION, "subscriber_id string, plan_type string")
    later = spark.createDataFrame(SNAPSHOTS, SNAP)
    out = compute_labels(
        population,
        later,
        month="2024-01",
        rules=RULES.model_copy(update={"gap_churn": gap_churn}),
        available=available,
        prepaid_inactive=inactive,
    )
    return {r.subscriber_id: (r.is_churn, r.label_status) for r in out.collect()}, out


def test_window_is_after_the_gap():
    assert label_window("2024-01", gap_months=1, window_months=1) == ("2024-03", "2024-03")
    assert label_window("2024-11", gap_months=1, window_months=2) == ("2025-01", "2025-02")


def test_labels_follow_the_contract(spark):
    got, out = _labels(spark)
    assert got == {
        "stay": (False, "active"),
        "churn": (True, "churn"),
        "gap": (None, "gap_churn"),
        "invol": (False, "involuntary"),
        "fraud": (None, "excluded"),
        "other": (False, "other_deactivation"),
        "later": (False, "active"),
        "lost": (None, "unknown"),
        "idle": (False, "active"),
    }
    churner = out.where("subscriber_id = 'churn'").first()
    assert (churner.churn_date, churner.churn_reason, churner.port_out_operator) == (
        D(2024, 3, 1),
        "port_out",
        "OP_B",
    )
    assert out.where("subscriber_id = 'later'").first().churn_date is None
    assert {(r.window_start_month, r.window_end_month, r.label_available) for r in out.collect()} == {
        ("2024-03", "2024-03", True)
    }


def test_gap_churn_can_be_counted(spark):
    got, _ = _labels(spark, gap_churn="count")
    assert got["gap"] == (True, "churn")
    assert got["churn"] == (True, "churn")


def test_not_mature_month_is_pending(spark):
    got, out = _labels(spark, available=False)
    assert set(got.values()) == {(None, "pending")}
    assert out.where("label_available").count() == 0


def test_prepaid_inactivity_uses_only_the_window(spark):
    cdr = spark.createDataFrame(
        [
            # active in the gap month (February) only: inactive for all of the March window
            ("idle", dt.datetime(2024, 2, 28, 9), "out"),
            ("busy", dt.datetime(2024, 3, 1, 9), "out"),
            ("busy", dt.datetime(2024, 3, 31, 9), "out"),
            # incoming calls are not activity
            ("called", dt.datetime(2024, 3, 15, 9), "in"),
        ],
        "subscriber_id string, event_ts timestamp, direction string",
    )
    bills = spark.createDataFrame(
        [("topped", "2024-03", 1), ("idle", "2024-02", 3)],
        "subscriber_id string, bill_month string, topup_count int",
    )
    prepaid = spark.createDataFrame(
        [("idle",), ("busy",), ("called",), ("topped",), ("silent",)], "subscriber_id string"
    )
    flagged = prepaid_inactive_subscribers(
        prepaid, cdr, bills, first_month="2024-03", last_month="2024-03", days=30
    )
    assert {r.subscriber_id for r in flagged.collect()} == {"idle", "called", "silent"}
    inactive = prepaid_inactive_subscribers(
        prepaid, cdr, bills, first_month="2024-03", last_month="2024-03", days=29
    )
    assert {r.subscriber_id for r in inactive.collect()} == {"idle", "called", "silent", "busy"}
    got, _ = _labels(spark, inactive=inactive)
    # only prepaid lines still on network are relabelled
    assert got["idle"] == (True, "prepaid_inactivity") and got["stay"] == (False, "active")
