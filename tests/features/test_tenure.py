"""Tenure, cohort, contract and lifecycle features on literal snapshots (M = 2024-03)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from features.tenure import compute_tenure_features, select_population, with_lifecycle_stage

D = dt.date
SCHEMA = (
    "subscriber_id string, customer_id string, household_id string, segment string, plan_type string, "
    "plan_id string, monthly_fee decimal(18,4), activation_date date, contract_end_date date, status string, "
    "acquisition_channel string, region string, handset_age_months int, marketing_consent boolean"
)


def _sub(
    sid, activation, contract_end=None, status="active", household=None, customer=None, plan="P1", fee=20
):
    return (
        sid,
        customer or f"C{sid}",
        household,
        "consumer",
        "postpaid",
        plan,
        Decimal(fee),
        activation,
        contract_end,
        status,
        "store",
        "north",
        12,
        True,
    )


SNAPSHOT = [
    # activated in M: tenure 0
    _sub("new0", D(2024, 3, 31), household="H1"),
    # 5 calendar months: still "new"; 6 months: "early" (lower bound inclusive)
    _sub("new5", D(2023, 10, 1), household="H1"),
    _sub("early6", D(2023, 9, 30), contract_end=D(2024, 3, 31)),
    _sub("est12", D(2023, 3, 1), contract_end=D(2024, 6, 15), customer="Cbig"),
    _sub(
        "est40",
        D(2020, 11, 5),
        contract_end=D(2023, 1, 1),
        status="suspended",
        customer="Cbig",
        plan="P2",
        fee=15,
    ),
    _sub("gone", D(2020, 1, 1), status="deactivated"),
]
PREVIOUS = [_sub("est40", D(2020, 11, 5), plan="P1", fee=25), _sub("est12", D(2023, 3, 1))]


def _tenure(spark):
    snapshot = spark.createDataFrame(SNAPSHOT, SCHEMA)
    previous = spark.createDataFrame(PREVIOUS, SCHEMA)
    out = compute_tenure_features(
        select_population(snapshot),
        previous,
        month="2024-03",
        boundaries=[6, 12],
        names=["new", "early", "established"],
    )
    return {r.subscriber_id: r.asDict() for r in out.collect()}


def test_population_tenure_cohort_and_contract(spark):
    rows = _tenure(spark)
    assert set(rows) == {"new0", "new5", "early6", "est12", "est40"}
    got = {
        k: (r["tenure_months"], r["cohort"], r["months_to_contract_end"], r["out_of_contract"])
        for k, r in rows.items()
    }
    assert got == {
        "new0": (0, "new", None, True),
        "new5": (5, "new", None, True),
        # the contract ends on the last day of M: no commitment left
        "early6": (6, "early", 0, True),
        "est12": (12, "established", 3, False),
        "est40": (40, "established", -14, True),
    }
    assert rows["new0"]["tenure_days"] == 1 and rows["est40"]["is_suspended"] is True


def test_plan_change_household_and_customer_lines(spark):
    rows = _tenure(spark)
    assert (rows["est40"]["plan_changed_m0"], float(rows["est40"]["monthly_fee_change_m0"])) == (True, -10.0)
    assert (rows["est12"]["plan_changed_m0"], float(rows["est12"]["monthly_fee_change_m0"])) == (False, 0.0)
    # not in the previous snapshot: unknown, not "no change"
    assert rows["new5"]["plan_changed_m0"] is None
    assert (rows["new0"]["household_lines"], rows["est12"]["household_lines"]) == (2, 1)
    assert (rows["est12"]["customer_lines"], rows["new0"]["customer_lines"]) == (2, 1)


@pytest.mark.parametrize("trend_months", [3, 4])  # the window names the ratio column it reads
def test_lifecycle_stage(spark, trend_months):
    rows = [
        ("onb", 1, None, 0, 0.1),
        ("contract", 30, 2, 0, 1.0),
        ("inactive", 30, None, 9, 0.5),
        ("inactive_but_steady", 30, None, 9, 1.0),
        ("grow", 8, 20, 0, 1.0),
        ("mature", 30, None, 0, None),
    ]
    df = spark.createDataFrame(
        rows,
        "subscriber_id string, tenure_months int, months_to_contract_end int, max_inactive_run_days_m0 int, "
        f"out_events_ratio_avg_{trend_months}m double",
    )
    out = with_lifecycle_stage(
        df,
        onboarding_months=3,
        growth_months=12,
        decline_contract_months=3,
        decline_inactive_days=7,
        trend_months=trend_months,
    )
    assert {r.subscriber_id: r.lifecycle_stage for r in out.collect()} == {
        "onb": "onboarding",
        "contract": "decline",
        "inactive": "decline",
        "inactive_but_steady": "maturity",
        "grow": "growth",
        "mature": "maturity",
    }
