"""Long-history features: windows of up to 12 months read from EARLIER ``features_monthly`` rows (pure).

The CDR window of a month is a few months long (``features.cdr_months``); reading a year of CDRs for
every month would multiply the build's cost by four. The measures a long window needs are already in
the rows of earlier months, each built with what was known at the end of its month, so the window of M
is M's own measure and the rows of M-1..M-K+1 (``history``), reduced to partial sums per window in
Python tasks (a pivot of every month's value made a plan too large for a small driver). Months are
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

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, StructField, StructType

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
    return f"{column}__{stat}{w}"


def history_reach(windows: Sequence[int]) -> int:
    """How many months before M the windows read."""
    return max(windows) - 1


_SUMS = ("n", "sx", "sxx", "sy", "sxy")


def parts_column(windows: Sequence[int]) -> str:
    """The lags family's one column: every partial sum in the order of ``_part_names`` (one array, not one
    column per sum: 226 columns made the families' combine about twice as slow). Named after the windows,
    so reading it with other windows than it was built with fails instead of reading the wrong sums."""
    return "_history_parts_" + "_".join(map(str, windows))


def _part_names(windows: Sequence[int]) -> list[str]:
    reach = history_reach(windows)
    long = [w for w in windows if w > 1]
    names = [_part("", "rows", w) for w in long]
    for c in HISTORY_COLUMNS:
        names += [_part(c, stat, w) for w in long for stat in (*_SUMS, "max")]
    names += [_part(c, "peak_k", reach + 1) for c in BASELINE_COLUMNS.values()]
    return names


LAG = "_k"  # the partial sums' input column: months before M


def compute_history_lags(
    population: DataFrame, history: DataFrame | None, *, month: str, windows: Sequence[int]
) -> DataFrame:
    """One row per subscriber of ``population``: each window's partial sums over M-1..M-N+1 (the rows
    present, the known values' count, sums for the mean and the least-squares slope, the maximum), and
    the month of the longest window's maximum, as one array column (a family for
    ``features.build.combine_families``; M's own values are added after the combine, by
    :func:`with_history_features`).

    The sums are computed by :func:`history_partial_sums` in Python tasks (``mapInArrow`` over the rows
    partitioned and sorted by subscriber, so a task holds a bounded chunk of whole subscribers, never its
    whole partition): as one Spark aggregation of ~230 conditional sums, the generated code cost more than
    the rest of the families together on 100,000 subscribers.
    """
    reach = history_reach(windows)
    keys = population.select("subscriber_id")
    column = parts_column(windows)
    if history is None or reach == 0:
        return keys.select("subscriber_id", F.lit(None).cast("array<double>").alias(column))
    months = [add_months(month, -k) for k in range(1, reach + 1)]
    k = F.round(F.months_between(F.to_date(F.lit(f"{month}-01")), F.to_date(F.concat("month", F.lit("-01")))))
    rows = history.where(F.col("month").isin(*months)).select(
        "subscriber_id", k.cast("int").alias(LAG), *[F.col(c).cast("double") for c in HISTORY_COLUMNS]
    )
    schema = StructType(
        [
            StructField("subscriber_id", rows.schema["subscriber_id"].dataType),
            StructField(column, ArrayType(DoubleType())),
        ]
    )
    # a subscriber's rows in one task, next to each other: the sums are per subscriber
    rows = rows.repartition("subscriber_id").sortWithinPartitions("subscriber_id")
    return keys.join(rows.mapInArrow(PartialSums(tuple(windows)), schema), "subscriber_id", "left")


class PartialSums:
    """The ``mapInArrow`` function of :func:`compute_history_lags`, over rows sorted by subscriber: the
    sums of each chunk of at least ``chunk_rows`` rows that ends where a subscriber ends (a subscriber's
    rows may be split between batches)."""

    def __init__(self, windows: tuple[int, ...], chunk_rows: int = 500_000) -> None:
        self.windows = windows
        self.chunk_rows = chunk_rows

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        held: list[pa.RecordBatch] = []
        rows = 0
        for batch in batches:
            held.append(batch)
            rows += batch.num_rows
            if rows < self.chunk_rows:
                continue
            table = pa.Table.from_batches(held)
            ids = table.column("subscriber_id")
            # the last subscriber's rows may go on in the next batch: they wait for it
            last = pc.equal(ids, ids[-1]).to_numpy(zero_copy_only=False).argmax()
            if last:
                yield from history_partial_sums(table.slice(0, last), self.windows).to_batches()
            held, rows = table.slice(last).to_batches(), table.num_rows - last
        if rows:
            yield from history_partial_sums(pa.Table.from_batches(held), self.windows).to_batches()


def history_partial_sums(rows: pa.Table, windows: Sequence[int]) -> pa.Table:
    """Per subscriber of ``rows`` (``subscriber_id``, the lag ``_k`` in months before M, the
    ``HISTORY_COLUMNS`` as doubles): the partial sums of ``_part_names`` as one list column, with
    Spark's aggregate semantics (a sum or maximum over no known value is null, a count is 0; the peak's
    month is the latest month of the largest known value, else the latest month)."""
    reach = history_reach(windows)
    long = [w for w in windows if w > 1]
    ids = rows.column("subscriber_id")
    keys = pc.unique(ids)
    group = pc.index_in(ids, keys).to_numpy()
    g = len(keys)
    if g == 0:
        return pa.Table.from_pydict(
            {"subscriber_id": keys, parts_column(windows): pa.array([], pa.list_(pa.float64()))}
        )
    lag = rows.column(LAG).to_numpy().astype(np.float64)
    x = -lag
    index = {name: i for i, name in enumerate(_part_names(windows))}
    values = np.zeros((g, len(index)))
    missing = np.zeros((g, len(index)), dtype=bool)

    def count(weights: np.ndarray) -> np.ndarray:
        return np.bincount(group, weights=weights, minlength=g)

    within = {w: lag <= w - 1 for w in long}
    for w in long:
        values[:, index[_part("", "rows", w)]] = count(within[w].astype(np.float64))
    for c in HISTORY_COLUMNS:
        column = rows.column(c)
        known = pc.is_valid(column).to_numpy(zero_copy_only=False)
        y = pc.fill_null(column, 0.0).to_numpy(zero_copy_only=False).astype(np.float64)
        for w in long:
            inside = known & within[w]
            n = count(inside.astype(np.float64))
            none = n == 0
            xi, yi = np.where(inside, x, 0.0), np.where(inside, y, 0.0)
            top = np.full(g, -np.inf)
            with np.errstate(invalid="ignore"):  # NaN is the maximum, as in Spark
                np.maximum.at(top, group[inside], y[inside])
            for stat, value in (
                ("n", n),
                ("sx", count(xi)),
                ("sxx", count(xi * xi)),
                ("sy", count(yi)),
                ("sxy", count(xi * yi)),
                ("max", top),
            ):
                i = index[_part(c, stat, w)]
                values[:, i] = value
                missing[:, i] = none & (stat != "n")
        if c in BASELINE_COLUMNS.values():
            # first row per subscriber, ordered by known first, NaN first (Spark orders it above every
            # number), the value descending, the lag ascending
            order = np.lexsort((lag, -np.where(known, y, 0.0), ~(known & np.isnan(y)), ~known, group))
            first = order[np.r_[True, np.diff(group[order]) != 0]]
            values[group[first], index[_part(c, "peak_k", reach + 1)]] = lag[first]
    flat = pa.array(values.ravel(), mask=missing.ravel())
    offsets = pa.array(np.arange(0, len(flat) + 1, len(index), dtype=np.int32))
    return pa.Table.from_pydict(
        {"subscriber_id": keys, parts_column(windows): pa.ListArray.from_arrays(offsets, flat)}
    )


def _q(name: str) -> str:
    """``name`` as a SQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def _value(column: str) -> str:
    """M's own value of a history column (x = 0)."""
    return f"CAST({_q(column)} AS DOUBLE)"


def _ratio(value: str, base: str) -> str:
    return f"(CASE WHEN {base} != 0 THEN {value} / {base} END)"


class _Parts:
    """The partial sums of :func:`compute_history_lags` by name (SQL text)."""

    def __init__(self, windows: Sequence[int]) -> None:
        self.column = parts_column(windows)
        self.index = {name: i for i, name in enumerate(_part_names(windows))}

    def __call__(self, name: str) -> str:
        return f"{_q(self.column)}[{self.index[name]}]"


class _Window:
    """A window's statistics: its partial sums over earlier months plus M's own value ``y0`` (x = 0),
    as SQL text."""

    def __init__(self, parts: _Parts, column: str, w: int) -> None:
        self.y0 = _value(column)
        part = {stat: f"coalesce({parts(_part(column, stat, w))}, 0D)" for stat in _SUMS}
        self.n = f"({part['n']} + CASE WHEN {self.y0} IS NOT NULL THEN 1D ELSE 0D END)"
        self.sx, self.sxx, self.sxy = part["sx"], part["sxx"], part["sxy"]
        self.sy = f"({part['sy']} + coalesce({self.y0}, 0D))"
        self.top = f"greatest({parts(_part(column, 'max', w))}, {self.y0})"

    def mean(self) -> str:
        return f"(CASE WHEN {self.n} > 0 THEN {self.sy} / {self.n} END)"

    def slope(self) -> str:
        """Least-squares change per month of the known values (null with fewer than two)."""
        n, sx, sy = self.n, self.sx, self.sy
        den = f"({n} * {self.sxx} - {sx} * {sx})"
        return f"(CASE WHEN {n} >= 2 AND {den} != 0 THEN ({n} * {self.sxy} - {sx} * {sy}) / {den} END)"


def with_history_features(
    df: DataFrame, *, windows: Sequence[int], baseline_windows: Sequence[int]
) -> DataFrame:
    """The window statistics (see the module) from M's columns and the partial sums of
    :func:`compute_history_lags`, which are dropped. Built as SQL text: one JVM call for the whole
    projection instead of several per Column operation."""
    reach = history_reach(windows)
    long = [w for w in windows if w > 1]
    parts = _Parts(windows)
    out: dict[str, str] = {
        history_months_col(w): f"CAST(coalesce({parts(_part('', 'rows', w))}, 0D) + 1 AS INT)" for w in long
    }
    for measure, column in BASELINE_COLUMNS.items():
        for w in long:
            window = _Window(parts, column, w)
            out[avg_col(measure, w)] = window.mean()
            out[slope_col(measure, w)] = window.slope()
        for w in baseline_windows:
            window = _Window(parts, column, w)
            out[max_col(measure, w)] = window.top
            out[ratio_avg_col(measure, w)] = _ratio(window.y0, window.mean())
            out[ratio_max_col(measure, w)] = _ratio(window.y0, window.top)
        peak_k = parts(_part(column, "peak_k", reach + 1))
        y0 = _value(column)
        longest_max = parts(_part(column, "max", max(windows)))
        # M at (or above) the longest window's maximum: 0 months since the peak
        out[decline_col(measure)] = (
            f"(CASE WHEN {y0} IS NULL THEN NULL WHEN {y0} >= coalesce({longest_max}, {y0}) THEN 0 "
            f"ELSE CAST({peak_k} AS INT) END)"
        )
    for measure, column in TREND_COLUMNS.items():
        for w in long:
            window = _Window(parts, column, w)
            out[avg_col(measure, w)] = window.mean()
            out[slope_col(measure, w)] = window.slope()
    # a column another family already wrote (the usage family's N-month mean, N = trend_months) stays
    kept = [c for c in df.columns if c != parts.column]
    return df.selectExpr(*map(_q, kept), *[f"{v} AS {_q(k)}" for k, v in out.items() if k not in kept])


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
            F.expr(_ratio(_q(month_col(m, 0)), _q(f"_median_{month_col(m, 0)}"))).alias(plan_fit_col(m))
            for m in PLAN_FIT_MEASURES
        ],
    )
