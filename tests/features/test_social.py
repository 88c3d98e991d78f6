"""Social features and churn contagion on literal data (M = 2024-03, contagion window 3 months)."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from features.build import summarize_cdr
from features.params import FeatureParams
from features.social import churned_numbers, compute_contact_pairs, compute_social_features

T = dt.datetime
D = dt.date


def sha(msisdn: str) -> str:
    return hashlib.sha256(msisdn.encode()).hexdigest()


SNAPSHOT_SCHEMA = (
    "subscriber_id string, msisdn string, month string, status string, deactivation_date date, "
    "deactivation_reason string"
)
SNAPSHOTS = [
    # Z left for a competitor in February: known at M
    ("Z", "111", "2024-02", "deactivated", D(2024, 2, 15), "port_out"),
    # V leaves in April: unknown at M (a later snapshot must not leak in)
    ("V", "222", "2024-04", "deactivated", D(2024, 4, 2), "port_out"),
    # N was cut off for non-payment: not churn contagion
    ("N", "333", "2024-03", "deactivated", D(2024, 3, 3), "non_payment"),
    # O left in 2023: outside the window
    ("O", "444", "2023-11", "deactivated", D(2023, 11, 20), "voluntary"),
]
CDR_SCHEMA = (
    "subscriber_id string, event_ts timestamp, event_type string, direction string, duration_s int, "
    "volume_kb bigint, other_party string, other_party_operator string, roaming boolean, "
    "roaming_country string"
)


def _call(sub, ts, party, op="own", etype="voice", direction="out"):
    return (sub, ts, etype, direction, 60, 0, party, op, False, None)


CDRS = [
    # three calls with Z (one per month): a frequent contact who churned
    _call("A", T(2024, 1, 5, 9), sha("111")),
    _call("A", T(2024, 2, 5, 9), sha("111")),
    _call("A", T(2024, 3, 5, 9), sha("111")),
    # three with V in February: frequent, but V's churn is not known yet
    *[_call("A", T(2024, 2, d, 9), sha("222")) for d in (1, 2, 3)],
    # three with N (involuntary) and three with O: frequent, not contagion
    *[_call("A", T(2024, 3, d, 9), sha("333"), direction="in") for d in (1, 2, 3)],
    *[_call("A", T(2024, 1, d, 9), sha("444"), etype="sms") for d in (1, 2, 3)],
    # a competitor number once in March
    _call("A", T(2024, 3, 7, 9), "comp", op="OP_C"),
    # data sessions have no contact
    ("A", T(2024, 3, 8, 9), "data", "out", 60, 10, None, None, False, None),
]


def _social(spark):
    cdr = spark.createDataFrame(CDRS, CDR_SCHEMA)
    snapshots = spark.createDataFrame(SNAPSHOTS, SNAPSHOT_SCHEMA)
    population = spark.createDataFrame(
        [("A", D(2020, 1, 1)), ("B", D(2024, 3, 2))], "subscriber_id string, activation_date date"
    )
    summary = summarize_cdr(cdr, month="2024-03", params=FeatureParams())
    pairs = compute_contact_pairs(cdr, month="2024-03", contagion_months=3)
    churned = churned_numbers(
        snapshots, month="2024-03", contagion_months=3, counted_reasons=["port_out", "voluntary"]
    )
    out = compute_social_features(
        population,
        pairs,
        churned,
        summary,
        month="2024-03",
        min_calls=3,
        available_months=["2024-01", "2024-02", "2024-03"],
    )
    return {r.subscriber_id: r.asDict() for r in out.collect()}


def test_contacts_competitor_share_and_contagion_known_by_m(spark):
    a = _social(spark)["A"]
    expected = {
        # March: Z, N, the competitor number
        "distinct_contacts_m0": 3,
        # February: Z, V
        "distinct_contacts_m1": 2,
        "contacts_ratio_1m": 1.5,
        # outgoing calls/SMS in March: Z and the competitor number
        "competitor_out_share_m0": 0.5,
        # Z, V, N, O
        "frequent_contacts": 4,
        # only Z: V's churn is after M, N's is involuntary, O's is before the window
        "churned_frequent_contacts": 1,
        "churned_contact_share": 0.25,
    }
    assert {k: a[k] for k in expected} == pytest.approx(expected)


def test_subscriber_without_calls(spark):
    b = _social(spark)["B"]
    assert (b["distinct_contacts_m0"], b["frequent_contacts"]) == (0, 0)
    # activated in M: no M-1 circle to compare with; no outgoing calls: no share
    assert b["distinct_contacts_m1"] is None and b["contacts_ratio_1m"] is None
    assert b["competitor_out_share_m0"] is None and b["churned_contact_share"] is None
