"""Billing and roaming-charge features on literal bills (M = 2024-03), whole frames.

Windows: 3 months is 2024-01..03 (earlier bills for the shock: 2023-12..2024-02); 4 months is
2023-12..2024-03 (earlier bills: 2023-11..2024-02).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from pyspark.testing import assertDataFrameEqual

from features.billing import compute_billing_features
from features.columns import avg_col, window_col
from features.roaming import compute_roaming_features
from tests.features.frames import frame

MONTH = "2024-03"
MONEY = "decimal(18,4)"
BILL_SCHEMA = {
    "subscriber_id": "string",
    "bill_month": "string",
    "invoice_amount": MONEY,
    "recurring_charge": MONEY,
    "usage_charge": MONEY,
    "roaming_charge": MONEY,
    "discount_amount": MONEY,
    "paid_amount": MONEY,
    "overdue_days": "int",
    "balance_due": MONEY,
    "topup_count": "int",
    "topup_amount": MONEY,
}
AMOUNTS = {c for c, kind in BILL_SCHEMA.items() if kind == MONEY}


def bill(subscriber_id: str, bill_month: str, **values: int) -> dict:
    """A bill by name: every amount and count not given is 0."""
    row = {c: Decimal(0) if c in AMOUNTS else 0 for c in BILL_SCHEMA} | {
        "subscriber_id": subscriber_id,
        "bill_month": bill_month,
    }
    return row | {c: Decimal(v) if c in AMOUNTS else v for c, v in values.items()}


BILLS = [
    # postpaid P: 60 in November (only in the 4-month shock base), then 30 a month, then 90 in March
    bill("P", "2023-11", invoice_amount=60, recurring_charge=60, paid_amount=60),
    bill("P", "2023-12", invoice_amount=30, recurring_charge=30, paid_amount=30),
    bill("P", "2024-01", invoice_amount=30, recurring_charge=30, paid_amount=30, overdue_days=5),
    bill("P", "2024-02", invoice_amount=30, recurring_charge=25, usage_charge=5, paid_amount=30),
    # March: three times the usual bill, half paid, 20 days late
    bill(
        "P",
        "2024-03",
        invoice_amount=90,
        recurring_charge=30,
        usage_charge=50,
        roaming_charge=12,
        discount_amount=2,
        paid_amount=45,
        overdue_days=20,
        balance_due=45,
    ),
    # a bill after M: never read (the function cuts it, not only the caller)
    bill("P", "2024-04", invoice_amount=500, usage_charge=470, recurring_charge=30, overdue_days=30),
    # prepaid Q: nothing invoiced; revenue is its top-ups
    bill("Q", "2024-02", usage_charge=3, topup_count=2, topup_amount=20),
    bill("Q", "2024-03", usage_charge=4, discount_amount=5, topup_count=1, topup_amount=15),
    # X: not in the population
    bill("X", "2024-03", invoice_amount=10, recurring_charge=10),
]


def _frames(spark):
    population = spark.createDataFrame(
        [("P", "postpaid"), ("Q", "prepaid"), ("R", "postpaid")], "subscriber_id string, plan_type string"
    )
    return population, frame(spark, BILL_SCHEMA, BILLS)


def billing_schema(n: int) -> dict[str, str]:
    return {
        "subscriber_id": "string",
        "invoice_amount_m0": MONEY,
        "arpu_m0": "decimal(21,4)",
        "discount_amount_m0": MONEY,
        "overdue_days_m0": "int",
        "balance_due_m0": MONEY,
        "payment_ratio_m0": "decimal(38,20)",
        "topup_count_m0": "int",
        "topup_amount_m0": MONEY,
        avg_col("arpu", n): "decimal(25,8)",
        avg_col("topup_amount", n): "decimal(22,8)",
        window_col("overdue_months", n): "bigint",
        window_col("bill_months", n): "bigint",
        "bill_shock_ratio_m0": "decimal(38,16)",
    }


def m(value: str | int | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def billing_row(n: int, subscriber_id: str, m0: dict, window: dict) -> dict:
    """An expected row: this month's values by their ``_m0`` name, the window's by measure."""
    return {
        "subscriber_id": subscriber_id,
        **m0,
        avg_col("arpu", n): window["arpu_avg"],
        avg_col("topup_amount", n): window["topup_amount_avg"],
        window_col("overdue_months", n): window["overdue_months"],
        window_col("bill_months", n): window["bill_months"],
        "bill_shock_ratio_m0": window["bill_shock_ratio"],
    }


P_M0 = {
    "invoice_amount_m0": m(90),
    # recurring 30 + usage 50 + roaming 12 - discount 2
    "arpu_m0": m(90),
    "discount_amount_m0": m(2),
    "overdue_days_m0": 20,
    "balance_due_m0": m(45),
    "payment_ratio_m0": m("0.5"),
    "topup_count_m0": 0,
    "topup_amount_m0": m(0),
}
P_WINDOW = {
    # ARPU (30 + 30 + 90) / 3; overdue in January and March; 90 against the mean 30 of Dec..Feb
    3: {
        "arpu_avg": m(50),
        "topup_amount_avg": m(0),
        "overdue_months": 2,
        "bill_months": 3,
        "bill_shock_ratio": m(3),
    },
    # ARPU (30 + 30 + 30 + 90) / 4; 90 against the mean (60 + 30 + 30 + 30) / 4 = 37.5 of Nov..Feb
    4: {
        "arpu_avg": m(45),
        "topup_amount_avg": m(0),
        "overdue_months": 2,
        "bill_months": 4,
        "bill_shock_ratio": m("2.4"),
    },
}
# prepaid: ARPU is top-ups 15 - discount 5; nothing invoiced, so no payment ratio and no bill shock
Q_M0 = {
    "invoice_amount_m0": m(0),
    "arpu_m0": m(10),
    "discount_amount_m0": m(5),
    "overdue_days_m0": 0,
    "balance_due_m0": m(0),
    "payment_ratio_m0": None,
    "topup_count_m0": 1,
    "topup_amount_m0": m(15),
}
# ARPU (20 + 10) / 2 and top-ups (20 + 15) / 2 over the two bills present, whatever the window
Q_WINDOW = {
    "arpu_avg": m(15),
    "topup_amount_avg": m("17.5"),
    "overdue_months": 0,
    "bill_months": 2,
    "bill_shock_ratio": None,
}
# no bills at all: this month unknown, not zero; the counts are zero
R_M0 = dict.fromkeys(P_M0)
R_WINDOW = {
    "arpu_avg": None,
    "topup_amount_avg": None,
    "overdue_months": 0,
    "bill_months": 0,
    "bill_shock_ratio": None,
}


@pytest.mark.parametrize("n", [3, 4])
def test_arpu_bill_shock_overdue_and_topups(spark, n):
    population, bills = _frames(spark)
    got = compute_billing_features(population, bills, month=MONTH, trend_months=n)
    expected = [
        billing_row(n, "P", P_M0, P_WINDOW[n]),
        billing_row(n, "Q", Q_M0, Q_WINDOW),
        billing_row(n, "R", R_M0, R_WINDOW),
    ]
    assertDataFrameEqual(got, frame(spark, billing_schema(n), expected))


SUMMARY_SCHEMA = {
    "subscriber_id": "string",
    "roaming_events__0": "bigint",
    "roaming_out_events__0": "bigint",
    "roaming_days__0": "bigint",
    "roaming_data_mb__0": "double",
    "events__0": "bigint",
}


def roaming_schema(n: int) -> dict[str, str]:
    return {
        "subscriber_id": "string",
        "roaming_events_m0": "bigint",
        "roaming_out_events_m0": "bigint",
        "roaming_days_m0": "bigint",
        "roaming_data_mb_m0": "double",
        "roaming_countries_m0": "bigint",
        "roaming_usage_share_m0": "double",
        "roaming_charge_m0": "decimal(28,4)",
        avg_col("roaming_charge", n): "decimal(22,8)",
    }


@pytest.mark.parametrize("n", [3, 4])
def test_roaming_features(spark, n):
    population, bills = _frames(spark)
    countries = spark.createDataFrame([("P", 2)], "subscriber_id string, roaming_countries__0 bigint")
    summary = frame(
        spark,
        SUMMARY_SCHEMA,
        [
            {
                "subscriber_id": "P",
                "roaming_events__0": 4,
                "roaming_out_events__0": 3,
                "roaming_days__0": 2,
                "roaming_data_mb__0": 1.5,
                "events__0": 10,
            },
            # R used the network this month, never abroad; Q has no summary row at all
            {
                "subscriber_id": "R",
                "roaming_events__0": 0,
                "roaming_out_events__0": 0,
                "roaming_days__0": 0,
                "roaming_data_mb__0": 0.0,
                "events__0": 0,
            },
        ],
    )
    got = compute_roaming_features(population, summary, countries, bills, month=MONTH, trend_months=n)
    zero_events = {
        "roaming_events_m0": 0,
        "roaming_out_events_m0": 0,
        "roaming_days_m0": 0,
        "roaming_data_mb_m0": 0.0,
        "roaming_countries_m0": 0,
        # no events this month: no share
        "roaming_usage_share_m0": None,
    }
    expected = [
        {
            "subscriber_id": "P",
            "roaming_events_m0": 4,
            "roaming_out_events_m0": 3,
            "roaming_days_m0": 2,
            "roaming_data_mb_m0": 1.5,
            "roaming_countries_m0": 2,
            # 4 of 10 events abroad
            "roaming_usage_share_m0": 0.4,
            "roaming_charge_m0": m(12),
            # 12 in March over the bills of Jan..Mar (3) or Dec..Mar (4)
            avg_col("roaming_charge", n): {3: m(4), 4: m(3)}[n],
        },
        # prepaid Q: two bills without roaming charges
        {"subscriber_id": "Q", **zero_events, "roaming_charge_m0": m(0), avg_col("roaming_charge", n): m(0)},
        # R: no bills, so the charges are unknown
        {"subscriber_id": "R", **zero_events, "roaming_charge_m0": None, avg_col("roaming_charge", n): None},
    ]
    assertDataFrameEqual(got, frame(spark, roaming_schema(n), expected))
