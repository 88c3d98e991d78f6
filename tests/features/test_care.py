"""Care features and the port-out hard warning on literal contacts (M = 2024-03)."""

from __future__ import annotations

import datetime as dt

from pyspark.testing import assertDataFrameEqual

from features.care import compute_care_features

T = dt.datetime
SCHEMA = "subscriber_id string, contact_ts timestamp, category string, resolved boolean, month string"
CONTACTS = [
    ("A", T(2024, 3, 31, 23, 59, 59), "billing", False, "2024-03"),
    ("A", T(2024, 3, 2, 9), "complaint", False, "2024-03"),
    ("A", T(2024, 1, 1, 0), "network", True, "2024-01"),
    # before the 3-month window: only in days-since-last (not: a later one exists)
    ("A", T(2023, 12, 31, 23), "complaint", False, "2023-12"),
    # after M: never read
    ("A", T(2024, 4, 1, 0), "complaint", False, "2024-04"),
    # a port-out request is a hard warning, not a feature
    ("B", T(2024, 3, 29, 11), "port_out_request", True, "2024-03"),
    ("B", T(2023, 10, 10, 10), "device", True, "2023-10"),
    # a request of an earlier month does not warn now
    ("C", T(2024, 2, 27, 11), "port_out_request", True, "2024-02"),
]


EXPECTED_SCHEMA = (
    "subscriber_id string, care_contacts_m0 bigint, care_billing_m0 bigint, care_network_m0 bigint, "
    "care_device_m0 bigint, care_plan_change_m0 bigint, care_complaint_m0 bigint, care_other_m0 bigint, "
    "care_contacts_3m bigint, unresolved_contacts_3m bigint, unresolved_complaints_3m bigint, "
    "days_since_last_care_contact int, hard_warning boolean, port_out_request_date date"
)
EXPECTED = [
    # A: a billing contact and a complaint in M, a network contact in January; the December complaint is
    # outside the window and not the last contact; the April one is after M
    ("A", 2, 1, 0, 0, 0, 1, 0, 3, 2, 1, 0, False, None),
    # B: the port-out request warns and is not counted; the last real contact was 2023-10-10
    ("B", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, (dt.date(2024, 3, 31) - dt.date(2023, 10, 10)).days, True,
     dt.date(2024, 3, 29)),
    # C: a request of an earlier month does not warn now; D: never contacted care
    ("C", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None, False, None),
    ("D", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None, False, None),
]  # fmt: skip


def test_care_counts_unresolved_and_hard_warning(spark):
    care = spark.createDataFrame(CONTACTS, SCHEMA).where("month <= '2024-03'")
    population = spark.createDataFrame([("A",), ("B",), ("C",), ("D",)], "subscriber_id string")
    got = compute_care_features(population, care, month="2024-03", trend_months=3)
    expected = spark.createDataFrame(EXPECTED, EXPECTED_SCHEMA)
    # the whole frame, with column order and types (nullability aside: joins make every column nullable)
    assertDataFrameEqual(got, expected, checkRowOrder=False)
    assert got.schema.simpleString() == expected.schema.simpleString()
