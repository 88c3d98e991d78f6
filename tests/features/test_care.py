"""Care features and the port-out hard warning on literal contacts (M = 2024-03)."""

from __future__ import annotations

import datetime as dt

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


def test_care_counts_unresolved_and_hard_warning(spark):
    care = spark.createDataFrame(CONTACTS, SCHEMA).where("month <= '2024-03'")
    population = spark.createDataFrame([("A",), ("B",), ("C",), ("D",)], "subscriber_id string")
    rows = {
        r.subscriber_id: r.asDict()
        for r in compute_care_features(population, care, month="2024-03", trend_months=3).collect()
    }
    a, b, c, d = rows["A"], rows["B"], rows["C"], rows["D"]
    assert (a["care_contacts_m0"], a["care_billing_m0"], a["care_complaint_m0"], a["care_network_m0"]) == (
        2,
        1,
        1,
        0,
    )
    assert (a["care_contacts_3m"], a["unresolved_contacts_3m"], a["unresolved_complaints_3m"]) == (3, 2, 1)
    assert a["days_since_last_care_contact"] == 0 and a["hard_warning"] is False
    assert b["hard_warning"] is True and b["port_out_request_date"] == dt.date(2024, 3, 29)
    # the request is not counted as a care contact; the last real contact was 2023-10-10
    assert (b["care_contacts_m0"], b["care_contacts_3m"]) == (0, 0)
    assert b["days_since_last_care_contact"] == (dt.date(2024, 3, 31) - dt.date(2023, 10, 10)).days
    assert c["hard_warning"] is False and c["days_since_last_care_contact"] is None
    assert (d["care_contacts_m0"], d["hard_warning"], d["days_since_last_care_contact"]) == (0, False, None)
