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


def max_col(measure: str, n: int) -> str:
    """The maximum over the N months ending at M: ``data_mb_max_6m``."""
    return f"{measure}_max_{n}m"


def ratio_max_col(measure: str, n: int) -> str:
    """This month against the N-month maximum: ``out_events_ratio_max_12m``."""
    return f"{measure}_ratio_max_{n}m"


def slope_col(measure: str, n: int) -> str:
    """Least-squares change per month over the N months ending at M: ``arpu_slope_6m``."""
    return f"{measure}_slope_{n}m"


def decline_col(measure: str) -> str:
    """Months the measure has fallen month on month up to M: ``out_events_decline_months``."""
    return f"{measure}_decline_months"


def history_months_col(n: int) -> str:
    """Months of the N-month window (M included) with a ``features_monthly`` row: ``history_months_12m``."""
    return f"history_months_{n}m"


def plan_fit_col(measure: str) -> str:
    """M's usage against the plan's typical usage: ``data_mb_plan_fit_m0``."""
    return f"{measure}_plan_fit_m0"


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


# The long windows' measures (features.history): usage and spend get the subscriber's own baseline,
# the competitor share, the contact circle and care contacts their mean and slope.
BASELINE_MEASURES = (
    "voice_out_calls",
    "voice_out_min",
    "sms_out",
    "data_mb",
    "out_events",
    "arpu",
    "invoice_amount",
)
TREND_MEASURES = (
    "competitor_out_share",
    "distinct_contacts",
    "frequent_contacts",
    "churned_contact_share",
    "care_contacts",
)
CARE_CATEGORIES = ("billing", "network", "device", "plan_change", "complaint", "other")


def _lake_age_dependent() -> frozenset[str]:
    """Windows longer than 3 months (the short windows' own length, monitored like the usage family's
    3-month columns), the months of history held, and the declines (which run up to 12 months)."""
    long = range(4, 13)
    names = {history_months_col(n) for n in range(2, 13)}
    for m in BASELINE_MEASURES:
        names |= {f(m, n) for f in (avg_col, slope_col, max_col, ratio_avg_col, ratio_max_col) for n in long}
        names.add(decline_col(m))
    for m in TREND_MEASURES:
        names |= {f(m, n) for f in (avg_col, slope_col) for n in long}
    names |= {window_col(f"care_{c}", n) for c in CARE_CATEGORIES for n in long}
    return frozenset(names)


DRIFT_EXEMPT: frozenset[str] = _lake_age_dependent()
"""Feature columns whose distribution depends on the lake's age by construction: the long windows read
earlier ``features_monthly`` rows, so until the lake holds a window's months (its first year for the
12-month ones) the window holds fewer months, and a model trained on the lake's early months sees other
values than it scores later. The drift monitor skips them, so the alarm does not ring for a lake that is
only getting older; the short-window families (m0, m1, the trend_months columns) stay monitored."""
