"""Long-history features: windows of up to 12 months read from EARLIER ``features_monthly`` rows (pure).

The CDR window of a month is a few months long (``features.cdr_months``); reading a year of CDRs for
every month would multiply the build's cost by four. The measures a long window needs are already in
the rows of earlier months, each built with what was known at the end of its month, so the window of M
is M's own measure and the rows of M-1..M-K+1 (``history``), reduced to partial sums per window in
one aggregation (a pivot of every month's value made a plan too large for a small driver). Months are
therefore built in order; a month missing from the lake (before the lake's first month, or never
built) is simply not in the window, and ``history_months_Nm`` (months with a row, M included) says
how much of the window exists.
A window's statistic is over the months that exist, null when none has a value: never a silent zero.

For every baseline measure (usage and spend) and window N of ``features.history_windows`` (N > 1):
``<measure>_avg_Nm`` (unless the usage family already wrote it), ``<measure>_slope_Nm`` (least-squares
change per month, null with fewer than two known months); for N in ``features.baseline_windows``:
``<measure>_max_Nm`` and this month against the subscriber's own mean and maximum
(``<measure>_ratio_avg_Nm``, ``<measure>_ratio_max_Nm``; null when the baseline is 0 or unknown); and
``<measure>_decline_months``: months since the measure's peak over the longest window (0: M is the
peak), the start of the decline. For the trend measures (competitor share, the contact circle, care
contacts): the mean and slope over each window. ``history`` holds months before M only, so a later
month never changes M.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from features.calendar import add_months
from features.columns import (
    BASELINE_MEASURES,
    TREND_MEASURES,
    avg_col,
    decline_col,
    history_months_col,
    max_col,
    month_col,
    plan_fit_col,
    ratio_avg_col,
    ratio_max_col,
    slope_col,
)

# measure -> its column in a features_monthly row (the value of that row's month)
BASELINE_COLUMNS = {m: month_col(m, 0) for m in BASELINE_MEASURES}
TREND_COLUMNS = {
    m: m if m in ("frequent_contacts", "churned_contact_share") else month_col(m, 0) for m in TREND_MEASURES
}
HISTORY_COLUMNS = tuple(dict.fromkeys([*BASELINE_COLUMNS.values(), *TREND_COLUMNS.values()]))
# usage against what the plan includes: the extracts carry no allowance, so the plan's median user of
# the month stands for it (a subscriber far above or below the plan's typical use is on the wrong plan)
PLAN_FIT_MEASURES = ("voice_out_min", "data_mb")


def _part(column: str, stat: str, w: int) -> str:
    return f"_h_{column}__{stat}{w}"


def history_reach(windows: Sequence[int]) -> int:
    """How many months before M the windows read."""
    return max(windows) - 1


_SUMS = ("n", "sx", "sxx", "sy", "sxy")


def compute_history_lags(
    population: DataFrame, history: DataFrame | None, *, month: str, windows: Sequence[int]
) -> DataFrame:
    """One row per subscriber of ``population``: each window's partial sums over M-1..M-N+1 (the rows
    present, the known values' count, sums for the mean and the least-squares slope, the maximum), and
    the month of the longest window's maximum (a family for ``features.build.combine_families``; M's own
    values are added after the combine, by :func:`with_history_features`).
    """
    reach = history_reach(windows)
    long = [w for w in windows if w > 1]
    keys = population.select("subscriber_id")
    names = [_part("", "rows", w) for w in long]
    for c in HISTORY_COLUMNS:
        names += [_part(c, stat, w) for w in long for stat in (*_SUMS, "max")]
    names += [_part(c, "peak_k", reach + 1) for c in BASELINE_COLUMNS.values()]
    if history is None or reach == 0:
        return keys.select("subscriber_id", *[F.lit(None).cast("double").alias(n) for n in names])
    months = [add_months(month, -k) for k in range(1, reach + 1)]
    rows = history.where(F.col("month").isin(*months)).withColumn(
        "_k",
        F.round(
            F.months_between(F.to_date(F.lit(f"{month}-01")), F.to_date(F.concat("month", F.lit("-01"))))
        ),
    )
    k = F.col("_k").cast("double")
    aggs = []
    for w in long:
        inside = k <= w - 1
        aggs.append(F.sum(F.when(inside, 1.0).otherwise(0.0)).alias(_part("", "rows", w)))
        for c in HISTORY_COLUMNS:
            y = F.when(inside, F.col(c).cast("double"))
            x = F.when(y.isNotNull(), -k)
            aggs += [
                F.count(y).cast("double").alias(_part(c, "n", w)),
                F.sum(x).alias(_part(c, "sx", w)),
                F.sum(x * x).alias(_part(c, "sxx", w)),
                F.sum(y).alias(_part(c, "sy", w)),
                F.sum(x * y).alias(_part(c, "sxy", w)),
                F.max(y).alias(_part(c, "max", w)),
            ]
    for c in BASELINE_COLUMNS.values():
        # the month of the maximum (the latest of equal ones)
        aggs.append(F.max_by(k, F.struct(F.col(c).cast("double"), -k)).alias(_part(c, "peak_k", reach + 1)))
    parts = rows.groupBy("subscriber_id").agg(*aggs)
    return keys.join(parts, "subscriber_id", "left").select("subscriber_id", *names)


def _ratio(value: Column, base: Column) -> Column:
    return F.when(base != 0, value / base)


class _Window:
    """A window's statistics: its partial sums over earlier months plus M's own value ``y0`` (x = 0)."""

    def __init__(self, column: str, w: int) -> None:
        self.y0 = F.col(column).cast("double")
        has = F.when(self.y0.isNotNull(), 1.0).otherwise(0.0)
        part = {stat: F.coalesce(F.col(_part(column, stat, w)), F.lit(0.0)) for stat in _SUMS}
        self.n = part["n"] + has
        self.sx, self.sxx = part["sx"], part["sxx"]
        self.sy = part["sy"] + F.coalesce(self.y0, F.lit(0.0))
        self.sxy = part["sxy"]
        self.top = F.greatest(F.col(_part(column, "max", w)), self.y0)

    def mean(self) -> Column:
        return F.when(self.n > 0, self.sy / self.n)

    def slope(self) -> Column:
        """Least-squares change per month of the known values (null with fewer than two)."""
        den = self.n * self.sxx - self.sx * self.sx
        return F.when((self.n >= 2) & (den != 0), (self.n * self.sxy - self.sx * self.sy) / den)


def with_history_features(
    df: DataFrame, *, windows: Sequence[int], baseline_windows: Sequence[int]
) -> DataFrame:
    """The window statistics (see the module) from M's columns and the partial sums of
    :func:`compute_history_lags`, which are dropped."""
    reach = history_reach(windows)
    long = [w for w in windows if w > 1]
    out: dict[str, Column] = {
        history_months_col(w): (F.coalesce(F.col(_part("", "rows", w)), F.lit(0.0)) + 1).cast("int")
        for w in long
    }
    for measure, column in BASELINE_COLUMNS.items():
        for w in long:
            window = _Window(column, w)
            out[avg_col(measure, w)] = window.mean()
            out[slope_col(measure, w)] = window.slope()
        for w in baseline_windows:
            window = _Window(column, w)
            out[max_col(measure, w)] = window.top
            out[ratio_avg_col(measure, w)] = _ratio(window.y0, window.mean())
            out[ratio_max_col(measure, w)] = _ratio(window.y0, window.top)
        peak_k = F.col(_part(column, "peak_k", reach + 1))
        longest = _Window(column, max(windows))
        # M at (or above) the longest window's maximum: 0 months since the peak
        out[decline_col(measure)] = F.when(longest.y0.isNull(), None).otherwise(
            F.when(
                longest.y0 >= F.coalesce(F.col(_part(column, "max", max(windows))), longest.y0), 0
            ).otherwise(peak_k.cast("int"))
        )
    for measure, column in TREND_COLUMNS.items():
        for w in long:
            window = _Window(column, w)
            out[avg_col(measure, w)] = window.mean()
            out[slope_col(measure, w)] = window.slope()
    # a column another family already wrote (the usage family's N-month mean, N = trend_months) stays
    kept = [c for c in df.columns if not c.startswith("_h_")]
    return df.select(*kept, *[v.alias(k) for k, v in out.items() if k not in kept])


def compute_plan_fit(population: DataFrame, usage: DataFrame) -> DataFrame:
    """``<measure>_plan_fit_m0``: M's usage against the median of the lines on the same ``plan_id`` in M
    (null when that median is 0 or unknown). A family: one row per subscriber of ``population``."""
    m0 = [month_col(m, 0) for m in PLAN_FIT_MEASURES]
    rows = population.select("subscriber_id", "plan_id").join(
        usage.select("subscriber_id", *m0), "subscriber_id"
    )
    medians = rows.groupBy("plan_id").agg(
        *[F.percentile_approx(c, 0.5, 10000).cast("double").alias(f"_median_{c}") for c in m0]
    )
    fit = rows.join(F.broadcast(medians), "plan_id", "left")
    return fit.select(
        "subscriber_id",
        *[
            _ratio(F.col(month_col(m, 0)), F.col(f"_median_{month_col(m, 0)}")).alias(plan_fit_col(m))
            for m in PLAN_FIT_MEASURES
        ],
    )
