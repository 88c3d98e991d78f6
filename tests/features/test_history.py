"""Long windows from earlier feature rows (M = 2024-03, windows 1 and 3 months, baseline 3), whole frames."""

from __future__ import annotations

import math
import random

import pyarrow as pa
import pytest
from pyspark.errors import AnalysisException
from pyspark.testing import assertDataFrameEqual

from features.columns import (
    avg_col,
    decline_col,
    history_months_col,
    max_col,
    ratio_avg_col,
    ratio_max_col,
    slope_col,
)
from features.history import (
    BASELINE_COLUMNS,
    HISTORY_COLUMNS,
    PartialSums,
    _part_names,
    compute_history_lags,
    history_partial_sums,
    history_reach,
    parts_column,
    with_history_features,
)
from tests.features.frames import frame

MONTH = "2024-03"
MEASURE = "out_events"
OUT = "out_events_m0"


def rows(subscriber_id: str, month: str, value: float | None) -> dict:
    """A feature row: ``out_events_m0`` = ``value``, every other history column 1."""
    return {"subscriber_id": subscriber_id, "month": month, **{c: 1.0 for c in HISTORY_COLUMNS}, OUT: value}


SCHEMA = {"subscriber_id": "string", "month": "string", **{c: "double" for c in HISTORY_COLUMNS}}
CURRENT = [rows("A", MONTH, 4.0), rows("B", MONTH, 4.0), rows("C", MONTH, 3.0)]
HISTORY = [
    # A: falling for two months, 8 -> 6 -> 4
    rows("A", "2024-02", 6.0),
    rows("A", "2024-01", 8.0),
    # A row older than the window is never read
    rows("A", "2023-12", 1000.0),
    # B: new at M (the lake's first month for it): no history
    # C: no row in M-1 (not built, or not a subscriber then); 5 in M-2
    rows("C", "2024-01", 5.0),
]
# rows of M itself and of later months: the window of M never reads them
LATER = [
    rows("A", MONTH, 99.0),
    rows("A", "2024-04", 0.0),
    rows("B", "2024-04", 50.0),
    rows("C", "2024-02", None),
]
EXPECTED_SCHEMA = {
    "subscriber_id": "string",
    history_months_col(3): "int",
    avg_col(MEASURE, 3): "double",
    slope_col(MEASURE, 3): "double",
    max_col(MEASURE, 3): "double",
    ratio_avg_col(MEASURE, 3): "double",
    ratio_max_col(MEASURE, 3): "double",
    decline_col(MEASURE): "int",
}


def expected(sid, months, mean, slope, top, ratio_avg, ratio_max, decline) -> dict:
    return dict(
        zip(EXPECTED_SCHEMA, (sid, months, mean, slope, top, ratio_avg, ratio_max, decline), strict=True)
    )


def _history_features(spark, history_rows):
    current = frame(spark, SCHEMA, CURRENT).drop("month")
    population = current.select("subscriber_id")
    history = frame(spark, SCHEMA, history_rows)
    lags = compute_history_lags(population, history, month=MONTH, windows=(1, 3))
    df = with_history_features(current.join(lags, "subscriber_id"), windows=(1, 3), baseline_windows=(3,))
    return df.select(*EXPECTED_SCHEMA)


def test_windows_ratios_slope_and_decline_from_earlier_rows(spark):
    want = [
        # mean 6, slope -2 a month (8, 6, 4), max 8, 4/6 and 4/8, the peak two months ago
        expected("A", 3, 6.0, -2.0, 8.0, 4 / 6, 0.5, 2),
        # M only: a mean of M, no slope (one point), M is the peak; history_months 1, never a silent 0
        expected("B", 1, 4.0, None, 4.0, 1.0, 1.0, 0),
        # M-1 unknown: 2 months of history; slope through (0, 3) and (-2, 5); the peak in M-2
        expected("C", 2, 4.0, -1.0, 5.0, 0.75, 0.6, 2),
    ]
    got = _history_features(spark, HISTORY)
    assertDataFrameEqual(got, frame(spark, EXPECTED_SCHEMA, want), checkRowOrder=False, rtol=1e-9)


def test_rows_of_m_and_later_months_do_not_change_m(spark):
    assertDataFrameEqual(_history_features(spark, HISTORY + LATER[:3]), _history_features(spark, HISTORY))


def test_no_history_table_at_the_lake_start(spark):
    current = frame(spark, SCHEMA, CURRENT).drop("month")
    lags = compute_history_lags(current.select("subscriber_id"), None, month=MONTH, windows=(1, 3))
    got = with_history_features(current.join(lags, "subscriber_id"), windows=(1, 3), baseline_windows=(3,))
    months = {r.subscriber_id: r[history_months_col(3)] for r in got.collect()}
    assert months == {"A": 1, "B": 1, "C": 1}
    assert {r.subscriber_id: r[avg_col(MEASURE, 3)] for r in got.collect()} == {"A": 4.0, "B": 4.0, "C": 3.0}


@pytest.mark.parametrize("k", [1, 2])
def test_an_earlier_month_row_moves_only_its_windows(spark, k):
    """Control: the test above can fail (a changed row of the window changes the result)."""
    changed = [
        dict(r, **{OUT: 100.0}) if r["subscriber_id"] == "A" and r["month"] == f"2024-0{3 - k}" else r
        for r in HISTORY
    ]
    a = {r.subscriber_id: r[avg_col(MEASURE, 3)] for r in _history_features(spark, changed).collect()}
    assert a["A"] != 6.0 and a["B"] == 4.0


def test_each_long_window_reads_its_own_months(spark):
    """Windows 3 and 6 side by side (their partial sums travel in one array, found by position)."""
    history = frame(
        spark,
        SCHEMA,
        [
            rows("A", "2023-09", 1000.0),  # M-6: outside the 6-month window
            rows("A", "2023-10", 20.0),
            rows("A", "2023-11", 10.0),
            # no row for 2023-12
            rows("A", "2024-01", 8.0),
            rows("A", "2024-02", 6.0),
        ],
    )
    current = frame(spark, SCHEMA, [rows("A", MONTH, 4.0)]).drop("month")
    windows = (1, 3, 6)
    lags = compute_history_lags(current.select("subscriber_id"), history, month=MONTH, windows=windows)
    got = with_history_features(
        current.join(lags, "subscriber_id"), windows=windows, baseline_windows=(3, 6)
    ).first()
    assert (got[history_months_col(3)], got[history_months_col(6)]) == (3, 5)
    assert got[avg_col(MEASURE, 3)] == pytest.approx(6.0)
    assert got[avg_col(MEASURE, 6)] == pytest.approx(48 / 5)
    # x = -5, -4, -2, -1, 0 and y = 20, 10, 8, 6, 4: (5 * -162 - (-12) * 48) / (5 * 46 - 12 ** 2)
    assert got[slope_col(MEASURE, 3)] == pytest.approx(-2.0)
    assert got[slope_col(MEASURE, 6)] == pytest.approx(-234 / 86)
    assert (got[max_col(MEASURE, 3)], got[max_col(MEASURE, 6)]) == (8.0, 20.0)
    assert got[ratio_avg_col(MEASURE, 6)] == pytest.approx(4 / 9.6)
    assert got[ratio_max_col(MEASURE, 6)] == pytest.approx(0.2)
    assert got[decline_col(MEASURE)] == 5
    # a history column that is 1 in every row: the mean 1 and the slope 0 over each window
    other = HISTORY_COLUMNS[0] if HISTORY_COLUMNS[0] != OUT else HISTORY_COLUMNS[1]
    measure = other.removesuffix("_m0")
    assert got[avg_col(measure, 6)] == pytest.approx(1.0) and got[slope_col(measure, 6)] == pytest.approx(0.0)


def test_reading_the_sums_with_other_windows_fails(spark):
    current = frame(spark, SCHEMA, CURRENT).drop("month")
    lags = compute_history_lags(current.select("subscriber_id"), None, month=MONTH, windows=(1, 3))
    with pytest.raises(AnalysisException, match=r"_history_parts_1_6"):
        with_history_features(current.join(lags, "subscriber_id"), windows=(1, 6), baseline_windows=(6,))


def _top(values: list[float]) -> float:
    """Spark's maximum: NaN above every number."""
    return math.nan if any(math.isnan(v) for v in values) else max(values)


def _peak_k(rows: list[dict], column: str) -> int:
    """The latest month of the largest known value (NaN above every number), else the latest month."""
    known = [r for r in rows if r[column] is not None]
    if not known:
        return min(r["_k"] for r in rows)
    return max(
        known, key=lambda r: (math.isnan(r[column]), r[column] if r[column] == r[column] else 0, -r["_k"])
    )["_k"]


def _naive_parts(rows: list[dict], windows: tuple[int, ...]) -> dict[str, list[float | None]]:
    """The partial sums of each subscriber's rows, one row at a time (Spark's aggregate semantics)."""
    reach = history_reach(windows)
    out: dict[str, list[float | None]] = {}
    for sid in sorted({r["subscriber_id"] for r in rows}):
        mine = [r for r in rows if r["subscriber_id"] == sid]
        parts: dict[str, float | None] = {}
        for w in windows[1:]:
            inside = [r for r in mine if r["_k"] <= w - 1]
            parts[f"__rows{w}"] = float(len(inside))
            for c in HISTORY_COLUMNS:
                known = [(-r["_k"], r[c]) for r in inside if r[c] is not None]
                sums = {
                    "n": float(len(known)),
                    "sx": sum(x for x, _ in known),
                    "sxx": sum(x * x for x, _ in known),
                    "sy": sum(y for _, y in known),
                    "sxy": sum(x * y for x, y in known),
                    "max": _top([y for _, y in known]) if known else None,
                }
                for stat, value in sums.items():
                    parts[f"{c}__{stat}{w}"] = value if known or stat == "n" else None
        for c in BASELINE_COLUMNS.values():
            parts[f"{c}__peak_k{reach + 1}"] = float(_peak_k(mine, c))
        out[sid] = [parts[name] for name in _part_names(windows)]
    return out


def _random_rows(seed: int, subscribers: int = 60) -> list[dict]:
    """Random histories: months missing, a month twice, unknown values, NaN, equal maxima."""
    rng = random.Random(seed)
    rows = []
    for s in range(subscribers):
        months = rng.sample(range(1, 12), rng.randint(1, 11))
        for k in months + months[:1] * (s % 5 == 0):
            choices = [None, 0.0, 2.0, 2.0, rng.uniform(-5, 50), math.nan if s % 7 == 0 else 1.0]
            rows.append(
                {"subscriber_id": f"S{s:03d}", "_k": k, **{c: rng.choice(choices) for c in HISTORY_COLUMNS}}
            )
    rng.shuffle(rows)
    return rows


def _same_parts(got: dict[str, list], want: dict[str, list]) -> None:
    assert sorted(got) == sorted(want)
    for sid, expected in want.items():
        parts = got[sid]
        assert [v is None for v in parts] == [v is None for v in expected], sid
        known = [v for v in expected if v is not None]
        assert [v for v in parts if v is not None] == pytest.approx(known, nan_ok=True), sid


WINDOWS = (1, 3, 6, 12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_partial_sums_equal_a_row_by_row_computation(seed):
    rows = _random_rows(seed)
    got = history_partial_sums(pa.Table.from_pylist(rows), WINDOWS).to_pylist()
    want = _naive_parts(rows, WINDOWS)
    assert any(v is None for parts in want.values() for v in parts)
    assert any(v != v for parts in want.values() for v in parts if v is not None)  # NaN
    _same_parts({r["subscriber_id"]: r[parts_column(WINDOWS)] for r in got}, want)


def test_partial_sums_of_sorted_batches_in_chunks():
    """A task's batches, sorted by subscriber, summed in chunks that never split a subscriber."""
    rows = sorted(_random_rows(3), key=lambda r: r["subscriber_id"])
    table = pa.Table.from_pylist(rows)
    batches = table.to_batches(max_chunksize=4)
    out = pa.Table.from_batches(list(PartialSums(WINDOWS, chunk_rows=9)(iter(batches)))).to_pylist()
    assert len(out) == len({r["subscriber_id"] for r in rows})  # each subscriber once
    _same_parts({r["subscriber_id"]: r[parts_column(WINDOWS)] for r in out}, _naive_parts(rows, WINDOWS))
    assert history_partial_sums(table.slice(0, 0), WINDOWS).num_rows == 0


def _spark_parts(history, month: str, windows: tuple[int, ...]):
    """The sums as one Spark aggregation (the implementation before the Python tasks): an oracle of
    Spark's own aggregate semantics."""
    from pyspark.sql import functions as F

    long = [w for w in windows if w > 1]
    reach = history_reach(windows)
    q = "`{}`".format
    rows = history.withColumn(
        "_k",
        F.round(
            F.months_between(F.to_date(F.lit(f"{month}-01")), F.to_date(F.concat("month", F.lit("-01"))))
        ),
    )
    k = "CAST(`_k` AS DOUBLE)"
    terms = {}
    for w in long:
        inside = f"{k} <= {w - 1}"
        terms[f"__rows{w}"] = f"sum(CASE WHEN {inside} THEN 1D ELSE 0D END)"
        for c in HISTORY_COLUMNS:
            y = f"(CASE WHEN {inside} THEN CAST({q(c)} AS DOUBLE) END)"
            x = f"(CASE WHEN {y} IS NOT NULL THEN -{k} END)"
            terms[f"{c}__n{w}"] = f"CAST(count({y}) AS DOUBLE)"
            terms[f"{c}__sx{w}"] = f"sum({x})"
            terms[f"{c}__sxx{w}"] = f"sum({x} * {x})"
            terms[f"{c}__sy{w}"] = f"sum({y})"
            terms[f"{c}__sxy{w}"] = f"sum({x} * {y})"
            terms[f"{c}__max{w}"] = f"max({y})"
    for c in BASELINE_COLUMNS.values():
        terms[f"{c}__peak_k{reach + 1}"] = f"max_by({k}, struct(CAST({q(c)} AS DOUBLE), -{k}))"
    array = ", ".join(terms[name] for name in _part_names(windows))
    parts = rows.groupBy("subscriber_id").agg(F.expr(f"array({array})").alias("parts"))
    return {r.subscriber_id: list(r.parts) for r in parts.collect()}


def test_partial_sums_as_spark_aggregates_them(spark):
    """The Spark family against Spark's own aggregation of the same rows (NaN, a month twice, nulls)."""
    rows = [
        dict(r, month=f"2024-{3 - r['_k']:02d}" if r["_k"] < 3 else f"2023-{15 - r['_k']:02d}")
        for r in _random_rows(4)
    ]
    history = frame(spark, SCHEMA, [{k: v for k, v in r.items() if k != "_k"} for r in rows])
    population = history.select("subscriber_id").distinct()
    got = compute_history_lags(population, history, month=MONTH, windows=WINDOWS).collect()
    _same_parts(
        {r.subscriber_id: list(r[parts_column(WINDOWS)]) for r in got}, _spark_parts(history, MONTH, WINDOWS)
    )
