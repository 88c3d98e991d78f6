"""Tenure, cohort, contract and lifecycle features on literal snapshots (M = 2024-03), whole frames."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from pyspark.testing import assertDataFrameEqual

from features.columns import ratio_avg_col
from features.tenure import compute_tenure_features, select_population, with_lifecycle_stage
from tests.features.frames import frame

D = dt.date
MONTH = "2024-03"
SNAPSHOT_SCHEMA = {
    "subscriber_id": "string",
    "customer_id": "string",
    "household_id": "string",
    "segment": "string",
    "plan_type": "string",
    "plan_id": "string",
    "monthly_fee": "decimal(18,4)",
    "activation_date": "date",
    "contract_end_date": "date",
    "status": "string",
    "acquisition_channel": "string",
    "region": "string",
    "handset_age_months": "int",
    "marketing_consent": "boolean",
}


def sub(
    subscriber_id: str,
    activation_date: dt.date,
    *,
    contract_end_date: dt.date | None = None,
    status: str = "active",
    household_id: str | None = None,
    customer_id: str | None = None,
    segment: str = "consumer",
    plan_id: str = "P1",
    monthly_fee: int = 20,
    handset_age_months: int | None = 12,
) -> dict:
    return {
        "subscriber_id": subscriber_id,
        "customer_id": customer_id or f"C{subscriber_id}",
        "household_id": household_id,
        "segment": segment,
        "plan_type": "postpaid",
        "plan_id": plan_id,
        "monthly_fee": Decimal(monthly_fee),
        "activation_date": activation_date,
        "contract_end_date": contract_end_date,
        "status": status,
        "acquisition_channel": "store",
        "region": "north",
        "handset_age_months": handset_age_months,
        "marketing_consent": True,
    }


SNAPSHOT = [
    # activated on the last day of M: tenure 0, one day on network
    sub("new0", D(2024, 3, 31), household_id="H1"),
    # 5 calendar months: still "new"; 6 months: "early" (lower bound inclusive)
    sub("new5", D(2023, 10, 1), household_id="H1", handset_age_months=None),
    # the contract ends on the last day of M: no commitment left
    sub("early6", D(2023, 9, 30), contract_end_date=D(2024, 3, 31)),
    sub("est12", D(2023, 3, 1), contract_end_date=D(2024, 6, 15), customer_id="Cbig", segment="business"),
    sub(
        "est40",
        D(2020, 11, 5),
        contract_end_date=D(2023, 1, 1),
        status="suspended",
        customer_id="Cbig",
        plan_id="P2",
        monthly_fee=15,
    ),
    # not in the population
    sub("gone", D(2020, 1, 1), status="deactivated", household_id="H1", customer_id="Cbig"),
]
PREVIOUS = [
    sub("est40", D(2020, 11, 5), plan_id="P1", monthly_fee=25),
    sub("est12", D(2023, 3, 1)),
]
TENURE_SCHEMA = SNAPSHOT_SCHEMA | {
    "tenure_months": "int",
    "tenure_days": "int",
    "months_to_contract_end": "int",
    "has_contract": "boolean",
    "out_of_contract": "boolean",
    "is_suspended": "boolean",
    "is_business": "boolean",
    "cohort": "string",
    "household_lines": "bigint",
    "customer_lines": "bigint",
    "plan_changed_m0": "boolean",
    "monthly_fee_change_m0": "decimal(19,4)",
}
SNAPSHOT_BY_ID = {row["subscriber_id"]: row for row in SNAPSHOT}
# the derived columns of each subscriber, by hand
DERIVED = {
    "new0": {
        "tenure_months": 0,
        "tenure_days": 1,
        "months_to_contract_end": None,
        "has_contract": False,
        "out_of_contract": True,
        "is_suspended": False,
        "is_business": False,
        "cohort": "new",
        # new0 and new5 share H1 ("gone" is not active)
        "household_lines": 2,
        "customer_lines": 1,
        # not in the previous snapshot: unknown, not "no change"
        "plan_changed_m0": None,
        "monthly_fee_change_m0": None,
    },
    "new5": {
        "tenure_months": 5,
        # 2023-10-01 .. 2024-03-31: 31 + 30 + 31 + 31 + 29 + 31
        "tenure_days": 183,
        "months_to_contract_end": None,
        "has_contract": False,
        "out_of_contract": True,
        "is_suspended": False,
        "is_business": False,
        "cohort": "new",
        "household_lines": 2,
        "customer_lines": 1,
        "plan_changed_m0": None,
        "monthly_fee_change_m0": None,
    },
    "early6": {
        "tenure_months": 6,
        "tenure_days": 184,
        "months_to_contract_end": 0,
        "has_contract": True,
        "out_of_contract": True,
        "is_suspended": False,
        "is_business": False,
        "cohort": "early",
        # no household: a household of its own
        "household_lines": 1,
        "customer_lines": 1,
        "plan_changed_m0": None,
        "monthly_fee_change_m0": None,
    },
    "est12": {
        "tenure_months": 12,
        # 2023-03-01 .. 2024-03-31: 366 days to 2024-03-01 (a leap February), then 31
        "tenure_days": 397,
        "months_to_contract_end": 3,
        "has_contract": True,
        "out_of_contract": False,
        "is_suspended": False,
        "is_business": True,
        "cohort": "established",
        "household_lines": 1,
        # est12 and est40 share Cbig
        "customer_lines": 2,
        "plan_changed_m0": False,
        "monthly_fee_change_m0": Decimal(0),
    },
    "est40": {
        "tenure_months": 40,
        # 2020-11-05 .. 2024-03-31: 1095 days to 2023-11-05, 121 to 2024-03-05, 26 to 03-31, plus the first
        "tenure_days": 1243,
        # January 2023 is 14 months before March 2024
        "months_to_contract_end": -14,
        "has_contract": True,
        "out_of_contract": True,
        "is_suspended": True,
        "is_business": False,
        "cohort": "established",
        "household_lines": 1,
        "customer_lines": 2,
        # P1 at 25 last month, P2 at 15 now
        "plan_changed_m0": True,
        "monthly_fee_change_m0": Decimal(-10),
    },
}


def _population(spark):
    return select_population(frame(spark, SNAPSHOT_SCHEMA, SNAPSHOT))


def test_population_tenure_cohort_contract_plan_and_lines(spark):
    got = compute_tenure_features(
        _population(spark),
        frame(spark, SNAPSHOT_SCHEMA, PREVIOUS),
        month=MONTH,
        boundaries=[6, 12],
        names=["new", "early", "established"],
    )
    expected = [SNAPSHOT_BY_ID[sid] | derived for sid, derived in DERIVED.items()]
    assertDataFrameEqual(got, frame(spark, TENURE_SCHEMA, expected))


def test_without_a_previous_snapshot_plan_changes_are_unknown(spark):
    got = compute_tenure_features(
        _population(spark), None, month=MONTH, boundaries=[6, 12], names=["new", "early", "established"]
    )
    unknown = {"plan_changed_m0": None, "monthly_fee_change_m0": None}
    expected = [SNAPSHOT_BY_ID[sid] | derived | unknown for sid, derived in DERIVED.items()]
    # without the join on the previous snapshot the fee change keeps the fee's type, and the columns come
    # in the order of the household and customer joins (the feature frame selects by name)
    schema = TENURE_SCHEMA | {"monthly_fee_change_m0": "decimal(18,4)"}
    assertDataFrameEqual(got, frame(spark, schema, expected), ignoreColumnOrder=True)


def test_cohort_boundaries_and_names_come_from_the_parameters(spark):
    got = compute_tenure_features(
        _population(spark), None, month=MONTH, boundaries=[1, 6, 40], names=["a", "b", "c", "d"]
    )
    # tenure 0 -> a; 5 -> b; 6 and 12 -> c; 40 (the last bound, inclusive) -> d
    cohorts = {"new0": "a", "new5": "b", "early6": "c", "est12": "c", "est40": "d"}
    unknown = {"plan_changed_m0": None, "monthly_fee_change_m0": None}
    expected = [
        SNAPSHOT_BY_ID[sid] | derived | unknown | {"cohort": cohorts[sid]} for sid, derived in DERIVED.items()
    ]
    schema = TENURE_SCHEMA | {"monthly_fee_change_m0": "decimal(18,4)"}
    assertDataFrameEqual(got, frame(spark, schema, expected), ignoreColumnOrder=True)


def stage_case(
    subscriber_id: str,
    stage: str,
    *,
    tenure: int = 30,
    contract_end: int | None = None,
    inactive_run: int = 0,
    ratio: float | None = 1.0,
) -> tuple[dict, str]:
    """An input row (outgoing events against their average: ``ratio``) and its expected stage."""
    row = {
        "subscriber_id": subscriber_id,
        "tenure_months": tenure,
        "months_to_contract_end": contract_end,
        "max_inactive_run_days_m0": inactive_run,
        "ratio": ratio,
    }
    return row, stage


STAGE_CASES = [
    stage_case("onb", "onboarding", tenure=2, ratio=0.1),
    # onboarding ends at 3 months; growth until 12
    stage_case("onb_edge", "growth", tenure=3),
    stage_case("grow", "growth", tenure=11, contract_end=20),
    stage_case("mature", "maturity", tenure=12, ratio=None),
    # the contract ends within 0..3 months
    stage_case("contract", "decline", contract_end=2),
    stage_case("contract_edge", "decline", contract_end=3),
    stage_case("contract_later", "maturity", contract_end=4),
    stage_case("contract_over", "maturity", contract_end=-1),
    # a week without outgoing activity while it falls below its average
    stage_case("inactive", "decline", inactive_run=7, ratio=0.5),
    stage_case("inactive_short", "maturity", inactive_run=6, ratio=0.5),
    stage_case("inactive_but_steady", "maturity", inactive_run=9, ratio=1.0),
    stage_case("inactive_unknown_trend", "maturity", inactive_run=9, ratio=None),
]


@pytest.mark.parametrize("trend_months", [3, 4])  # the window names the ratio column it reads
def test_lifecycle_stage(spark, trend_months):
    ratio = ratio_avg_col("out_events", trend_months)
    schema = {
        "subscriber_id": "string",
        "tenure_months": "int",
        "months_to_contract_end": "int",
        "max_inactive_run_days_m0": "int",
        ratio: "double",
    }
    rows = [{**{k: v for k, v in row.items() if k != "ratio"}, ratio: row["ratio"]} for row, _ in STAGE_CASES]
    got = with_lifecycle_stage(
        frame(spark, schema, rows),
        onboarding_months=3,
        growth_months=12,
        decline_contract_months=3,
        decline_inactive_days=7,
        trend_months=trend_months,
    )
    expected = [row | {"lifecycle_stage": stage} for row, (_, stage) in zip(rows, STAGE_CASES, strict=True)]
    assertDataFrameEqual(got, frame(spark, schema | {"lifecycle_stage": "string"}, expected))
