"""Churn labels against the contract: gap month, window, reasons, pending months (M = 2024-01), whole frames.

With the default rules the gap is February and the window March 2024 (2024-03-01 .. 2024-03-31).
"""

from __future__ import annotations

import datetime as dt

from pyspark.testing import assertDataFrameEqual

from features.labels import compute_labels, label_window, prepaid_inactive_subscribers
from features.params import ChurnParams
from tests.features.frames import frame

D = dt.date
T = dt.datetime
MONTH = "2024-01"
SNAPSHOT_SCHEMA = {
    "subscriber_id": "string",
    "month": "string",
    "status": "string",
    "deactivation_date": "date",
    "deactivation_reason": "string",
    "port_out_operator": "string",
}


def active(subscriber_id: str, month: str) -> dict:
    return deactivated(subscriber_id, month, None, None) | {"status": "active"}


def deactivated(
    subscriber_id: str, month: str, date: dt.date | None, reason: str | None, operator: str | None = None
) -> dict:
    return {
        "subscriber_id": subscriber_id,
        "month": month,
        "status": "deactivated",
        "deactivation_date": date,
        "deactivation_reason": reason,
        "port_out_operator": operator,
    }


SNAPSHOTS = [
    # a stale January row saying "deactivated" is not after M and never read
    deactivated("stay", "2024-01", D(2024, 1, 3), "port_out", "OP_B"),
    active("stay", "2024-02"),
    active("stay", "2024-03"),
    active("stay", "2024-04"),
    active("churn", "2024-02"),
    # on the window's first day
    deactivated("churn", "2024-03", D(2024, 3, 1), "port_out", "OP_B"),
    # on the gap month's last day
    deactivated("gap", "2024-02", D(2024, 2, 29), "voluntary"),
    deactivated("invol", "2024-03", D(2024, 3, 15), "non_payment"),
    # on the window's last day
    deactivated("fraud", "2024-03", D(2024, 3, 31), "fraud"),
    deactivated("other", "2024-03", D(2024, 3, 20), "other"),
    # leaves the day after a one-month window: not a churner of January then
    active("later", "2024-03"),
    deactivated("later", "2024-04", D(2024, 4, 1), "port_out", "OP_C"),
    # "lost" is missing from March without a deactivation: unknown
    active("lost", "2024-02"),
    active("idle", "2024-03"),
]
POPULATION = [(s, "postpaid") for s in ("stay", "churn", "gap", "invol", "fraud", "other", "later", "lost")]
POPULATION.append(("idle", "prepaid"))
RULES = ChurnParams(
    counted_reasons=("port_out", "voluntary"),
    involuntary_reasons=("non_payment",),
    excluded_reasons=("fraud", "deceased"),
)
LABEL_SCHEMA = {
    "subscriber_id": "string",
    "month": "string",
    "window_start_month": "string",
    "window_end_month": "string",
    "label_available": "boolean",
    "is_churn": "boolean",
    "label_status": "string",
    "churn_date": "date",
    "churn_reason": "string",
    "port_out_operator": "string",
}


def _labels(spark, *, rules: ChurnParams = RULES, available: bool = True, inactive=None):
    population = spark.createDataFrame(POPULATION, "subscriber_id string, plan_type string")
    return compute_labels(
        population,
        frame(spark, SNAPSHOT_SCHEMA, SNAPSHOTS),
        month=MONTH,
        rules=rules,
        available=available,
        prepaid_inactive=inactive,
    )


def label(
    subscriber_id: str,
    is_churn: bool | None,
    status: str,
    date: dt.date | None = None,
    reason: str | None = None,
    operator: str | None = None,
    *,
    window: tuple[str, str] = ("2024-03", "2024-03"),
    available: bool = True,
) -> dict:
    return {
        "subscriber_id": subscriber_id,
        "month": MONTH,
        "window_start_month": window[0],
        "window_end_month": window[1],
        "label_available": available,
        "is_churn": is_churn,
        "label_status": status,
        "churn_date": date,
        "churn_reason": reason,
        "port_out_operator": operator,
    }


EXPECTED = {
    "stay": label("stay", False, "active"),
    "churn": label("churn", True, "churn", D(2024, 3, 1), "port_out", "OP_B"),
    # deactivated in the gap: neither churner nor stayer, the deactivation still reported
    "gap": label("gap", None, "gap_churn", D(2024, 2, 29), "voluntary"),
    "invol": label("invol", False, "involuntary", D(2024, 3, 15), "non_payment"),
    "fraud": label("fraud", None, "excluded", D(2024, 3, 31), "fraud"),
    "other": label("other", False, "other_deactivation", D(2024, 3, 20), "other"),
    # the April deactivation is after the window: no churn date
    "later": label("later", False, "active"),
    "lost": label("lost", None, "unknown"),
    "idle": label("idle", False, "active"),
}


def test_window_is_after_the_gap():
    assert label_window("2024-01", gap_months=1, window_months=1) == ("2024-03", "2024-03")
    assert label_window("2024-11", gap_months=1, window_months=2) == ("2025-01", "2025-02")
    assert label_window("2024-01", gap_months=0, window_months=3) == ("2024-02", "2024-04")


def test_labels_follow_the_contract(spark):
    assertDataFrameEqual(_labels(spark), frame(spark, LABEL_SCHEMA, list(EXPECTED.values())))


def test_gap_churn_can_be_counted(spark):
    got = _labels(spark, rules=RULES.model_copy(update={"gap_churn": "count"}))
    expected = EXPECTED | {"gap": label("gap", True, "churn", D(2024, 2, 29), "voluntary")}
    assertDataFrameEqual(got, frame(spark, LABEL_SCHEMA, list(expected.values())))


def test_a_two_month_window(spark):
    # window March..April: April's snapshot decides who is still there
    got = _labels(spark, rules=RULES.model_copy(update={"window_months": 2}))
    window = ("2024-03", "2024-04")
    expected = [
        label("stay", False, "active", window=window),
        label("churn", True, "churn", D(2024, 3, 1), "port_out", "OP_B", window=window),
        label("gap", None, "gap_churn", D(2024, 2, 29), "voluntary", window=window),
        label("invol", False, "involuntary", D(2024, 3, 15), "non_payment", window=window),
        label("fraud", None, "excluded", D(2024, 3, 31), "fraud", window=window),
        label("other", False, "other_deactivation", D(2024, 3, 20), "other", window=window),
        # April 1st is in this window
        label("later", True, "churn", D(2024, 4, 1), "port_out", "OP_C", window=window),
        label("lost", None, "unknown", window=window),
        # on network in March, missing from April's snapshot
        label("idle", None, "unknown", window=window),
    ]
    assertDataFrameEqual(got, frame(spark, LABEL_SCHEMA, expected))


def test_not_mature_month_is_pending(spark):
    got = _labels(spark, available=False)
    expected = [label(s, None, "pending", available=False) for s, _ in POPULATION]
    assertDataFrameEqual(got, frame(spark, LABEL_SCHEMA, expected))


def test_prepaid_inactivity_uses_only_the_window(spark):
    cdr = spark.createDataFrame(
        [
            # active in the gap month (February) only: inactive for all of the March window
            ("idle", T(2024, 2, 28, 9), "out"),
            # outgoing on the window's first and last day: the longest run without is 29 days
            ("busy", T(2024, 3, 1, 0, 0, 0), "out"),
            ("busy", T(2024, 3, 31, 23, 59, 59), "out"),
            # incoming calls are not activity
            ("called", T(2024, 3, 15, 9), "in"),
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

    def inactive(days: int):
        return prepaid_inactive_subscribers(
            prepaid, cdr, bills, first_month="2024-03", last_month="2024-03", days=days
        )

    def ids(*subscriber_ids: str):
        return spark.createDataFrame([(s,) for s in subscriber_ids], "subscriber_id string")

    assertDataFrameEqual(inactive(30), ids("idle", "called", "silent"))
    assertDataFrameEqual(inactive(29), ids("idle", "called", "silent", "busy"))
    # only prepaid lines still on network are relabelled
    got = _labels(spark, inactive=inactive(29))
    expected = EXPECTED | {"idle": label("idle", True, "prepaid_inactivity")}
    assertDataFrameEqual(got, frame(spark, LABEL_SCHEMA, list(expected.values())))


def test_prepaid_inactivity_reads_what_was_delivered_by_the_windows_end(spark):
    """The label matures at the end of the window: a late record of its last day, delivered with the next
    month, does not count (a rebuild after that delivery gives the same label)."""
    cdr = spark.createDataFrame(
        [
            ("late", T(2024, 3, 1, 9), "out", "2024-03"),
            ("late", T(2024, 3, 31, 9), "out", "2024-04"),
            ("known", T(2024, 3, 1, 9), "out", "2024-03"),
            ("known", T(2024, 3, 31, 9), "out", "2024-03"),
        ],
        "subscriber_id string, event_ts timestamp, direction string, delivery_month string",
    )
    bills = spark.createDataFrame([], "subscriber_id string, bill_month string, topup_count int")
    prepaid = spark.createDataFrame([("late",), ("known",)], "subscriber_id string")
    got = prepaid_inactive_subscribers(
        prepaid, cdr, bills, first_month="2024-03", last_month="2024-03", days=30
    )
    assertDataFrameEqual(got, spark.createDataFrame([("late",)], "subscriber_id string"))
