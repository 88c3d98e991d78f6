"""Care features and the port-out hard warning (pure).

A ``port_out_request`` is the churn process already under way: it is **not** a model feature (it would
leak the label). It only raises ``hard_warning``, reported next to the score. Contacts of that category
are left out of every count below.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features.calendar import add_months, month_end, month_start
from features.columns import (
    CARE_CATEGORIES,
    DAYS_SINCE_LAST_CARE_CONTACT,
    NO_CARE_CONTACT_IN_LOOKBACK,
    recency_cap_days,
    window_col,
)

FEATURE_CATEGORIES = CARE_CATEGORIES
PORT_OUT_REQUEST = "port_out_request"


def compute_care_features(
    population: DataFrame,
    care: DataFrame,
    *,
    month: str,
    trend_months: int,
    recency_lookback_months: int,
    category_windows: Sequence[int] = (),
) -> DataFrame:
    """Per subscriber of ``population``, from contacts dated up to the end of M:

    - ``care_contacts_m0`` and ``care_<category>_m0`` for each category but port-out requests;
    - ``care_contacts_Nm``, ``unresolved_contacts_Nm`` and ``unresolved_complaints_Nm`` over M-N+1..M;
    - ``care_<category>_Wm`` for each W > 1 of ``category_windows``;
    - ``days_since_last_care_contact``: from the last contact of the lookback (M-L+1..M, L =
      ``recency_lookback_months``) to the end of M, capped at ``recency_cap_days(L)`` when there was none,
      with ``no_care_contact_in_lookback`` saying so. Contacts before the lookback are never read: an
      uncapped recency grows with the history the lake holds (left-censored at its first month), so its
      distribution drifted with the lake's age and rang the drift alarm every month;
    - ``hard_warning`` (a port-out request dated in M) and ``port_out_request_date`` (its first date).
    """
    n = trend_months
    end = month_end(month)
    next_start = month_start(add_months(month, 1))
    m0_start = month_start(month)
    window_start = month_start(add_months(month, -(n - 1)))
    lookback_start = month_start(add_months(month, -(recency_lookback_months - 1)))
    ts = F.col("contact_ts")
    known = care.where(ts < F.lit(dt.datetime.combine(next_start, dt.time())))
    category = F.col("category")
    normal = category != PORT_OUT_REQUEST
    in_m0 = ts >= F.lit(dt.datetime.combine(m0_start, dt.time()))
    in_window = ts >= F.lit(dt.datetime.combine(window_start, dt.time()))
    unresolved = ~F.col("resolved")
    by_category = [
        (
            window_col(f"care_{c}", w),
            ts >= F.lit(dt.datetime.combine(month_start(add_months(month, -(w - 1))), dt.time())),
            c,
        )
        for w in category_windows
        if w > 1
        for c in FEATURE_CATEGORIES
    ]
    agg = known.groupBy("subscriber_id").agg(
        F.count_if(normal & in_m0).alias("care_contacts_m0"),
        *[F.count_if(in_m0 & (category == c)).alias(f"care_{c}_m0") for c in FEATURE_CATEGORIES],
        F.count_if(normal & in_window).alias(window_col("care_contacts", n)),
        F.count_if(normal & in_window & unresolved).alias(window_col("unresolved_contacts", n)),
        F.count_if(in_window & unresolved & (category == "complaint")).alias(
            window_col("unresolved_complaints", n)
        ),
        *[F.count_if(since & (category == c)).alias(name) for name, since, c in by_category],
        F.max(
            F.when(normal & (ts >= F.lit(dt.datetime.combine(lookback_start, dt.time()))), F.to_date(ts))
        ).alias("_last"),
        F.min(F.when(in_m0 & ~normal, F.to_date(ts))).alias("port_out_request_date"),
    )
    counts = [
        "care_contacts_m0",
        *[f"care_{c}_m0" for c in FEATURE_CATEGORIES],
        window_col("care_contacts", n),
        window_col("unresolved_contacts", n),
        window_col("unresolved_complaints", n),
        *[name for name, _, _ in by_category],
    ]
    df = population.select("subscriber_id").join(agg, "subscriber_id", "left").fillna(0, subset=counts)
    return df.select(
        "subscriber_id",
        *counts,
        F.coalesce(
            F.datediff(F.lit(end), F.col("_last")), F.lit(recency_cap_days(recency_lookback_months))
        ).alias(DAYS_SINCE_LAST_CARE_CONTACT),
        F.col("_last").isNull().alias(NO_CARE_CONTACT_IN_LOOKBACK),
        F.col("port_out_request_date").isNotNull().alias("hard_warning"),
        "port_out_request_date",
    )
