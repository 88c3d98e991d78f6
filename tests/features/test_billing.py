"""Billing and roaming-charge features on literal bills (M = 2024-03)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from features.billing import compute_billing_features
from features.roaming import compute_roaming_features

BILL_SCHEMA = (
    "subscriber_id string, bill_month string, invoice_amount decimal(18,4), recurring_charge decimal(18,4), "
    "usage_charge decimal(18,4), roaming_charge decimal(18,4), discount_amount decimal(18,4), "
    "paid_amount decimal(18,4), overdue_days int, balance_due decimal(18,4), topup_count int, "
    "topup_amount decimal(18,4)"
)
BILLS = [
    # postpaid P: 30 a month, then a 90 bill in March (three times the usual), half paid, 20 days late
    ("P", "2023-12", 30, 30, 0, 0, 0, 30, 0, 0, 0, 0),
    ("P", "2024-01", 30, 30, 0, 0, 0, 30, 0, 0, 0, 0),
    ("P", "2024-02", 30, 25, 5, 0, 0, 30, 0, 0, 0, 0),
    ("P", "2024-03", 90, 30, 50, 12, 2, 45, 20, 45, 0, 0),
    # a bill after M: never read
    ("P", "2024-04", 500, 30, 470, 0, 0, 0, 30, 500, 0, 0),
    # prepaid Q: revenue is its top-ups
    ("Q", "2024-02", 0, 0, 3, 0, 0, 0, 0, 0, 2, 20),
    ("Q", "2024-03", 0, 0, 4, 0, 5, 0, 0, 0, 1, 15),
]


def _decimals(row: tuple) -> tuple:
    return tuple(Decimal(v) if i in DECIMAL_FIELDS else v for i, v in enumerate(row))


DECIMAL_FIELDS = {2, 3, 4, 5, 6, 7, 9, 11}


def _frames(spark):
    bills = spark.createDataFrame([_decimals(b) for b in BILLS], BILL_SCHEMA)
    population = spark.createDataFrame(
        [("P", "postpaid"), ("Q", "prepaid"), ("R", "postpaid")], "subscriber_id string, plan_type string"
    )
    return population, bills.where("bill_month <= '2024-03'")


def test_arpu_bill_shock_overdue_and_topups(spark):
    population, bills = _frames(spark)
    rows = {
        r.subscriber_id: r.asDict()
        for r in compute_billing_features(population, bills, month="2024-03", trend_months=3).collect()
    }
    p, q, r = rows["P"], rows["Q"], rows["R"]
    assert {k: float(p[k]) for k in ("invoice_amount_m0", "arpu_m0", "balance_due_m0")} == {
        "invoice_amount_m0": 90.0,
        # recurring 30 + usage 50 + roaming 12 - discount 2
        "arpu_m0": 90.0,
        "balance_due_m0": 45.0,
    }
    assert p["overdue_days_m0"] == 20 and p["overdue_months_3m"] == 1 and p["bill_months_3m"] == 3
    assert float(p["payment_ratio_m0"]) == pytest.approx(0.5)
    # (30 + 30 + 90) / 3 over January-March
    assert float(p["arpu_avg_3m"]) == pytest.approx(50.0)
    # 90 against the mean of December-February (30)
    assert float(p["bill_shock_ratio_m0"]) == pytest.approx(3.0)
    # prepaid: top-ups 15 - discount 5; nothing invoiced, so no payment ratio and no bill shock
    assert float(q["arpu_m0"]) == 10.0 and float(q["arpu_avg_3m"]) == pytest.approx(15.0)
    assert (q["topup_count_m0"], float(q["topup_amount_m0"])) == (1, 15.0)
    assert q["payment_ratio_m0"] is None and q["bill_shock_ratio_m0"] is None
    # no bills at all: unknown, not zero; the counts are zero
    assert r["arpu_m0"] is None and r["bill_months_3m"] == 0


def test_roaming_features(spark):
    population, bills = _frames(spark)
    countries = spark.createDataFrame([("P", 2)], "subscriber_id string, roaming_countries__0 long")
    summary = spark.createDataFrame(
        [("P", 4, 3, 2, 1.5, 10)],
        "subscriber_id string, roaming_events__0 long, roaming_out_events__0 long, roaming_days__0 long, "
        "roaming_data_mb__0 double, events__0 long",
    )
    out = compute_roaming_features(population, summary, countries, bills, month="2024-03", trend_months=3)
    rows = {r.subscriber_id: r.asDict() for r in out.collect()}
    p, q = rows["P"], rows["Q"]
    assert (p["roaming_events_m0"], p["roaming_days_m0"], p["roaming_countries_m0"]) == (4, 2, 2)
    assert p["roaming_usage_share_m0"] == pytest.approx(0.4)
    assert float(p["roaming_charge_m0"]) == 12.0 and float(p["roaming_charge_avg_3m"]) == pytest.approx(4.0)
    assert (q["roaming_events_m0"], q["roaming_countries_m0"]) == (0, 0) and q[
        "roaming_usage_share_m0"
    ] is None
