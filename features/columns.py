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
