"""One home for derived column names, so a window parameter changes every name that carries it.

Families write and read columns through these helpers only: ``out_events_ratio_avg_3m`` written as a
literal in another module broke ``features.trend_months=4``.
"""

from __future__ import annotations


def summary_col(measure: str, k: int) -> str:
    """The CDR summary's raw monthly sum of ``measure`` for month M-k (internal to the feature build)."""
    return f"{measure}__{k}"


def month_col(measure: str, k: int) -> str:
    """A feature of month M-k: ``voice_out_calls_m0``."""
    return f"{measure}_m{k}"


def window_col(measure: str, n: int) -> str:
    """A count or sum over the N months ending at M: ``unresolved_complaints_3m``, ``bill_months_3m``."""
    return f"{measure}_{n}m"


def avg_col(measure: str, n: int) -> str:
    """The mean over the N months ending at M: ``data_mb_avg_3m``."""
    return f"{measure}_avg_{n}m"


def ratio_avg_col(measure: str, n: int) -> str:
    """This month against the N-month mean: ``out_events_ratio_avg_3m``."""
    return f"{measure}_ratio_avg_{n}m"


def chg_col(measure: str) -> str:
    """This month minus last month: ``sms_out_chg_1m``."""
    return f"{measure}_chg_1m"


OUT_DAY_MASK = summary_col("out_day_mask", 0)
ROAMING_COUNTRIES = summary_col("roaming_countries", 0)


DAYS_SINCE_LAST_CARE_CONTACT = "days_since_last_care_contact"
NO_CARE_CONTACT_IN_LOOKBACK = "no_care_contact_in_lookback"


def recency_cap_days(lookback_months: int) -> int:
    """The value of a recency (days) with no event in the lookback: longer than any lookback of that many
    months, and the same every month (a cap at the lookback's own length, 89 to 92 days for three
    months, would move with the calendar)."""
    return 31 * lookback_months


DRIFT_EXEMPT: frozenset[str] = frozenset()
"""Feature columns whose distribution depends on the lake's age by construction (months of history
held, long windows during the lake's first year): the drift monitor skips them, so the alarm does not
ring for a lake that is only getting older."""
