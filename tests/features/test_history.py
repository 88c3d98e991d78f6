"""Long windows from earlier feature rows (M = 2024-03, windows 1 and 3 months, baseline 3), whole frames."""

from __future__ import annotations

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
    with pytest.raises(AnalysisException):
        with_history_features(current.join(lags, "subscriber_id"), windows=(1, 6), baseline_windows=(6,))


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
                    "max": max((y for _, y in known), default=None),
                }
                for stat, value in sums.items():
                    parts[f"{c}__{stat}{w}"] = value if known or stat == "n" else None
        for c in BASELINE_COLUMNS.values():
            known = [r for r in mine if r[c] is not None]
            peak = min(known, key=lambda r: (-r[c], r["_k"])) if known else min(mine, key=lambda r: r["_k"])
            parts[f"{c}__peak_k{reach + 1}"] = float(peak["_k"])
        out[sid] = [parts[name] for name in _part_names(windows)]
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_partial_sums_equal_a_row_by_row_computation(seed):
    """Random histories: months missing, unknown values, equal maxima (the latest month is the peak)."""
    rng = random.Random(seed)
    windows = (1, 3, 6, 12)
    rows = []
    for s in range(60):
        for k in rng.sample(range(1, 12), rng.randint(1, 11)):
            rows.append(
                {
                    "subscriber_id": f"S{s:03d}",
                    "_k": k,
                    **{c: rng.choice([None, 0.0, 2.0, 2.0, rng.uniform(-5, 50)]) for c in HISTORY_COLUMNS},
                }
            )
    rng.shuffle(rows)
    got = history_partial_sums(pa.Table.from_pylist(rows), windows).to_pylist()
    want = _naive_parts(rows, windows)
    assert sorted(r["subscriber_id"] for r in got) == sorted(want)
    assert any(v is None for parts in want.values() for v in parts)
    for r in got:
        parts = r[parts_column(windows)]
        expected = want[r["subscriber_id"]]
        assert [v is None for v in parts] == [v is None for v in expected]
        assert [v for v in parts if v is not None] == pytest.approx([v for v in expected if v is not None])
