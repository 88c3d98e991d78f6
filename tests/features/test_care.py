"""Care features and the port-out hard warning on literal contacts (M = 2024-03), whole frames.

The windows: 3 months is 2024-01-01 00:00:00 .. 2024-03-31 23:59:59; 4 months starts 2023-12-01 00:00:00.
"""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.testing import assertDataFrameEqual

from features.calendar import add_months
from features.care import compute_care_features
from features.columns import recency_cap_days, window_col
from tests.features.frames import frame

T = dt.datetime
D = dt.date
MONTH = "2024-03"
CONTACT_SCHEMA = {
    "subscriber_id": "string",
    "contact_ts": "timestamp",
    "category": "string",
    "resolved": "boolean",
}
CATEGORIES = ("billing", "network", "device", "plan_change", "complaint", "other")


def contact(subscriber_id: str, ts: dt.datetime, category: str, resolved: bool | None) -> dict:
    return {"subscriber_id": subscriber_id, "contact_ts": ts, "category": category, "resolved": resolved}


CONTACTS = [
    # A: three contacts in M, the last on its last second; "other" with an unknown resolution is a
    # contact but not an unresolved one
    contact("A", T(2024, 3, 31, 23, 59, 59), "billing", False),
    contact("A", T(2024, 3, 2, 9), "complaint", False),
    contact("A", T(2024, 3, 15, 10), "other", None),
    # first second of the 3-month window: in it
    contact("A", T(2024, 1, 1, 0, 0, 0), "network", True),
    # last second before the 3-month window: only in the 4-month one
    contact("A", T(2023, 12, 31, 23, 59, 59), "complaint", False),
    # last second before the 4-month window: in neither
    contact("A", T(2023, 11, 30, 23, 59, 59), "device", False),
    # first second after M: never read (the function cuts it, not only the caller)
    contact("A", T(2024, 4, 1, 0, 0, 0), "complaint", False),
    # B: two port-out requests in M (the first dates the warning); neither is counted, resolved or not
    contact("B", T(2024, 3, 29, 11), "port_out_request", True),
    contact("B", T(2024, 3, 5, 8), "port_out_request", False),
    contact("B", T(2023, 10, 10, 10), "device", True),
    # C: a port-out request of an earlier month does not warn now; an unresolved plan change on the last
    # second of February; a network contact on the first second of the 4-month window
    contact("C", T(2024, 2, 27, 11), "port_out_request", True),
    contact("C", T(2024, 2, 29, 23, 59, 59), "plan_change", False),
    contact("C", T(2023, 12, 1, 0, 0, 0), "network", True),
    # E: only a port-out request, on the first second of M: a warning, and no care contact at all
    contact("E", T(2024, 3, 1, 0, 0, 0), "port_out_request", False),
    # X: not in the population
    contact("X", T(2024, 3, 3, 3), "billing", False),
]
POPULATION = ("A", "B", "C", "D", "E")
LOOKBACK = 3
CAP = recency_cap_days(LOOKBACK)


def care_schema(n: int) -> dict[str, str]:
    return {
        "subscriber_id": "string",
        "care_contacts_m0": "bigint",
        **{f"care_{c}_m0": "bigint" for c in CATEGORIES},
        window_col("care_contacts", n): "bigint",
        window_col("unresolved_contacts", n): "bigint",
        window_col("unresolved_complaints", n): "bigint",
        "days_since_last_care_contact": "int",
        "no_care_contact_in_lookback": "boolean",
        "hard_warning": "boolean",
        "port_out_request_date": "date",
    }


def care_row(
    n: int,
    subscriber_id: str,
    *,
    contacts_m0: int = 0,
    by_category_m0: dict[str, int] | None = None,
    window: tuple[int, int, int] = (0, 0, 0),
    days_since_last: int | None = None,
    hard_warning: bool = False,
    request_date: dt.date | None = None,
) -> dict:
    """An expected row; ``window``: (contacts, unresolved contacts, unresolved complaints) over N months;
    ``days_since_last``: None when no contact in the lookback (the value is then the cap)."""
    by_category = by_category_m0 or {}
    return {
        "subscriber_id": subscriber_id,
        "care_contacts_m0": contacts_m0,
        **{f"care_{c}_m0": by_category.get(c, 0) for c in CATEGORIES},
        window_col("care_contacts", n): window[0],
        window_col("unresolved_contacts", n): window[1],
        window_col("unresolved_complaints", n): window[2],
        "days_since_last_care_contact": CAP if days_since_last is None else days_since_last,
        "no_care_contact_in_lookback": days_since_last is None,
        "hard_warning": hard_warning,
        "port_out_request_date": request_date,
    }


# (contacts, unresolved contacts, unresolved complaints) per window
A_WINDOW = {3: (4, 2, 1), 4: (5, 3, 2)}
C_WINDOW = {3: (1, 1, 0), 4: (2, 1, 0)}


def _care(spark, n: int):
    care = frame(spark, CONTACT_SCHEMA, CONTACTS)
    population = spark.createDataFrame([(s,) for s in POPULATION], "subscriber_id string")
    return compute_care_features(
        population, care, month=MONTH, trend_months=n, recency_lookback_months=LOOKBACK
    )


@pytest.mark.parametrize("n", [3, 4])
def test_care_counts_windows_last_contact_and_hard_warning(spark, n):
    expected = [
        care_row(
            n,
            "A",
            contacts_m0=3,
            by_category_m0={"billing": 1, "complaint": 1, "other": 1},
            window=A_WINDOW[n],
            # the last contact is on the last day of M
            days_since_last=0,
        ),
        # the port-out requests warn and are not counted; the last real contact (2023-10-10) is before the
        # 3-month lookback: capped and flagged
        care_row(n, "B", hard_warning=True, request_date=D(2024, 3, 5)),
        # last contact 2024-02-29: 31 days before the end of M
        care_row(n, "C", window=C_WINDOW[n], days_since_last=31),
        # never contacted care: counts 0, no contact in the lookback
        care_row(n, "D"),
        care_row(n, "E", hard_warning=True, request_date=D(2024, 3, 1)),
    ]
    assertDataFrameEqual(_care(spark, n), frame(spark, care_schema(n), expected))


def test_the_window_is_in_the_column_names(spark):
    names = _care(spark, 4).columns
    assert {"care_contacts_4m", "unresolved_contacts_4m", "unresolved_complaints_4m"} <= set(names)
    assert not any(name.endswith("_3m") for name in names)


def test_no_contacts_at_all(spark):
    care = frame(spark, CONTACT_SCHEMA, [])
    population = spark.createDataFrame([("D",)], "subscriber_id string")
    got = compute_care_features(
        population, care, month=MONTH, trend_months=4, recency_lookback_months=LOOKBACK
    )
    assertDataFrameEqual(got, frame(spark, care_schema(4), [care_row(4, "D")]))


def test_recency_does_not_depend_on_how_much_history_the_lake_holds(spark):
    """The same subscribers and month, the lake holding 3 or 12 months of contacts: identical recency.

    Every subscriber contacted care once a month, for its own number of months before M, with a gap of
    its own before M: an uncapped recency grows with the held history for those whose last contact is
    older than the lookback.
    """
    rows = []
    for i in range(12):
        gap = i % 6
        for k in range(gap, 12):
            rows.append(
                contact(f"S{i}", T(*map(int, add_months(MONTH, -k).split("-")), 10, 12), "billing", True)
            )
    care_12 = frame(spark, CONTACT_SCHEMA, rows)
    care_3 = care_12.where(f"contact_ts >= '{add_months(MONTH, -2)}-01'")
    population = spark.createDataFrame([(f"S{i}",) for i in range(12)], "subscriber_id string")
    cols = ["subscriber_id", "days_since_last_care_contact", "no_care_contact_in_lookback"]

    def recency(care):
        got = compute_care_features(
            population, care, month=MONTH, trend_months=3, recency_lookback_months=LOOKBACK
        )
        return got.select(*cols)

    held_3, held_12 = recency(care_3), recency(care_12)
    assertDataFrameEqual(held_3, held_12)
    # and the planted truth: gaps 0-2 months are in the lookback (21 days from the 10th to the 31st of
    # March, then 50 and 81 days), gaps 3-5 are capped
    by_gap = {0: 21, 1: 50, 2: 81}
    expected = [(f"S{i}", by_gap.get(i % 6, CAP), i % 6 not in by_gap) for i in range(12)]
    assertDataFrameEqual(
        held_12,
        spark.createDataFrame(
            expected,
            ", ".join(
                [
                    "subscriber_id string",
                    "days_since_last_care_contact int",
                    "no_care_contact_in_lookback boolean",
                ]
            ),
        ),
    )


def test_care_by_category_over_longer_windows(spark):
    care = frame(spark, CONTACT_SCHEMA, CONTACTS)
    population = spark.createDataFrame([("A",), ("C",), ("D",)], "subscriber_id string")
    got = compute_care_features(
        population,
        care,
        month=MONTH,
        trend_months=3,
        recency_lookback_months=LOOKBACK,
        category_windows=(1, 3),
    )
    names = [window_col(f"care_{c}", 3) for c in CATEGORIES]
    # window 1 is the _m0 column; no _1m column
    assert not any(c.endswith("_1m") for c in got.columns)
    counts = {
        r.subscriber_id: tuple(r[n] for n in names) for r in got.select("subscriber_id", *names).collect()
    }
    # A over 2024-01..03: billing, network (first second of the window), complaint, other; the December
    # complaint is outside. C: the February plan change; its port-out request is no category.
    assert counts == {"A": (1, 1, 0, 0, 1, 1), "C": (0, 0, 0, 1, 0, 0), "D": (0, 0, 0, 0, 0, 0)}
