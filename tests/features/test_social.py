"""Social features and churn contagion on literal data (M = 2024-03), whole frames.

Contagion windows: 3 months is 2024-01-01 .. 2024-03-31; 2 months starts 2024-02-01. The social columns
do not carry the window in their names: the window changes values only.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from pyspark.testing import assertDataFrameEqual

from features.build import summarize_cdr
from features.params import FeatureParams
from features.social import churned_numbers, compute_contact_pairs, compute_social_features
from tests.features.frames import CDR_COLUMNS, frame

T = dt.datetime
D = dt.date
MONTH = "2024-03"


def sha(msisdn: str) -> str:
    return hashlib.sha256(msisdn.encode()).hexdigest()


SNAPSHOT_SCHEMA = {
    "subscriber_id": "string",
    "msisdn": "string",
    "month": "string",
    "status": "string",
    "deactivation_date": "date",
    "deactivation_reason": "string",
}


def left(subscriber_id: str, msisdn: str, month: str, date: dt.date, reason: str) -> dict:
    return {
        "subscriber_id": subscriber_id,
        "msisdn": msisdn,
        "month": month,
        "status": "deactivated",
        "deactivation_date": date,
        "deactivation_reason": reason,
    }


SNAPSHOTS = [
    # Z left for a competitor in February: known at M, in both windows
    left("Z", "111", "2024-02", D(2024, 2, 15), "port_out"),
    # V leaves in April: unknown at M (a later snapshot must not leak in)
    left("V", "222", "2024-04", D(2024, 4, 2), "port_out"),
    # N was cut off for non-payment: not churn contagion
    left("N", "333", "2024-03", D(2024, 3, 3), "non_payment"),
    # O left in 2023: outside both windows
    left("O", "444", "2023-11", D(2023, 11, 20), "voluntary"),
    # Q left on the first day of the 3-month window: outside the 2-month one
    left("Q", "555", "2024-01", D(2024, 1, 1), "voluntary"),
]


def event(
    ts: dt.datetime,
    party: str | None,
    *,
    operator: str | None = "own",
    event_type: str = "voice",
    direction: str = "out",
) -> dict:
    """An event of subscriber A."""
    return {
        "subscriber_id": "A",
        "event_ts": ts,
        "event_type": event_type,
        "direction": direction,
        "duration_s": 60,
        "volume_kb": 0,
        "other_party": party,
        "other_party_operator": operator,
        "roaming": False,
        "roaming_country": None,
    }


CDRS = [
    # Z, one call a month: 3 events in the 3-month window, 2 in the 2-month one
    *[event(T(2024, m, 5, 9), sha("111")) for m in (1, 2, 3)],
    # V, three calls in February: frequent in both windows, but V's churn is not known yet
    *[event(T(2024, 2, d, 9), sha("222")) for d in (1, 2, 3)],
    # N, three incoming calls in March: frequent, not contagion
    *[event(T(2024, 3, d, 9), sha("333"), direction="in") for d in (1, 2, 3)],
    # O, three SMS in January, the first on the first second of the 3-month window
    *[event(T(2024, 1, d, h), sha("444"), event_type="sms") for d, h in ((1, 0), (2, 9), (3, 9))],
    # Q, three calls in March: frequent in both windows
    *[event(T(2024, 3, d, 9), sha("555")) for d in (10, 11, 12)],
    # P, one second before the 3-month window and twice in January: two events in it, not frequent
    event(T(2023, 12, 31, 23, 59, 59), sha("666")),
    *[event(T(2024, 1, d, 9), sha("666")) for d in (8, 9)],
    # a competitor number once in March
    event(T(2024, 3, 7, 9), "comp", operator="OP_C"),
    # a data session has no contact
    event(T(2024, 3, 8, 9), None, operator=None, event_type="data"),
]
SOCIAL_SCHEMA = {
    "subscriber_id": "string",
    "distinct_contacts_m0": "bigint",
    "distinct_contacts_m1": "bigint",
    "contacts_ratio_1m": "double",
    "competitor_out_share_m0": "double",
    "frequent_contacts": "bigint",
    "churned_frequent_contacts": "bigint",
    "churned_contact_share": "double",
}


def _social(spark, contagion_months: int):
    cdr = frame(spark, CDR_COLUMNS, CDRS)
    snapshots = frame(spark, SNAPSHOT_SCHEMA, SNAPSHOTS)
    population = spark.createDataFrame(
        [("A", D(2020, 1, 1)), ("B", D(2024, 3, 2))], "subscriber_id string, activation_date date"
    )
    summary = summarize_cdr(cdr, month=MONTH, params=FeatureParams(contagion_months=contagion_months))
    pairs = compute_contact_pairs(cdr, month=MONTH, contagion_months=contagion_months)
    churned = churned_numbers(
        snapshots, month=MONTH, contagion_months=contagion_months, counted_reasons=["port_out", "voluntary"]
    )
    return compute_social_features(
        population,
        pairs,
        churned,
        summary,
        month=MONTH,
        min_calls=3,
        available_months=["2024-01", "2024-02", "2024-03"],
    )


# the circle and the competitor share do not depend on the contagion window
CIRCLE_A = {
    # March: Z, N, Q and the competitor number
    "distinct_contacts_m0": 4,
    # February: Z, V
    "distinct_contacts_m1": 2,
    "contacts_ratio_1m": 2.0,
    # outgoing calls and SMS in March: Z once, Q three times, the competitor number once
    "competitor_out_share_m0": 0.2,
}
CONTAGION_A = {
    # frequent: Z, V, N, O, Q; churned among them, known at M: Z and Q (V after M, N involuntary,
    # O before the window)
    3: {"frequent_contacts": 5, "churned_frequent_contacts": 2, "churned_contact_share": 0.4},
    # frequent: V, N, Q; Z churned in the window but is no longer frequent, Q churned before it
    2: {"frequent_contacts": 3, "churned_frequent_contacts": 0, "churned_contact_share": 0.0},
}
# B: activated in M without a call: no M-1 circle to compare with, no outgoing calls, no frequent contacts
B = {
    "subscriber_id": "B",
    "distinct_contacts_m0": 0,
    "distinct_contacts_m1": None,
    "contacts_ratio_1m": None,
    "competitor_out_share_m0": None,
    "frequent_contacts": 0,
    "churned_frequent_contacts": 0,
    "churned_contact_share": None,
}


@pytest.mark.parametrize("contagion_months", [3, 2])
def test_contacts_competitor_share_and_contagion_known_by_m(spark, contagion_months):
    got = _social(spark, contagion_months)
    expected = [{"subscriber_id": "A", **CIRCLE_A, **CONTAGION_A[contagion_months]}, B]
    assertDataFrameEqual(got, frame(spark, SOCIAL_SCHEMA, expected))
