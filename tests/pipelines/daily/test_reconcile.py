"""Days then the month against the month alone: a month's delivery supersedes its days for the days of a
later month, so the silver tables and what the triggers read are the same whether the days came first or not
(nothing counted twice); a day of the month itself still reads its daily tables (point in time)."""

from __future__ import annotations

import datetime as dt

import pytest

from features import contract as C
from pipelines.core.lake import Lake
from pipelines.daily.history import care_contacts, out_events_by_day
from pipelines.daily.ingest import ingest_day
from pipelines.ingest import ingest_month
from pipelines.sample_data.daily import write_daily_deliveries
from pipelines.sample_data.writer import GenerateOptions, generate
from tests.conftest import cfg_at

DAYS = ("2024-02-05", "2024-02-06")


def _frame_rows(df) -> list[tuple]:
    rows = [tuple(r) for r in df.select(*sorted(df.columns)).collect()]
    return sorted(rows, key=lambda r: tuple("" if v is None else str(v) for v in r))


def _rows(lake: Lake, table: str) -> list[tuple]:
    return _frame_rows(lake.read(table))


@pytest.mark.slow
def test_days_then_the_month_load_what_the_month_alone_loads(spark, tmp_path):
    landing = tmp_path / "landing"
    generate(landing, GenerateOptions(months=("2024-01", "2024-02"), subscribers=300, seed=5))
    written = write_daily_deliveries(landing, ["2024-02"])
    assert written["cdr"] > 0 and (landing / "cdr" / f"day={DAYS[0]}" / C.SUCCESS_MARKER).exists()
    both = Lake(spark, cfg_at(tmp_path / "both", landing))
    alone = Lake(spark, cfg_at(tmp_path / "alone", landing))
    first, last = dt.date.fromisoformat(DAYS[0]), dt.date.fromisoformat(DAYS[-1])
    later = dt.date(2024, 3, 1)  # a day of the next month: February's delivery supersedes February's days

    ingest_month(spark, both.cfg, "2024-01")
    for day in DAYS:
        assert ingest_day(both, "cdr", day) is not None
        ingest_day(both, "care", day)  # a quiet day of a small base may have no contact (no folder)
    before = out_events_by_day(both, first, last).toPandas()
    assert before["out_events"].sum() > 0  # read from the daily tables: the month is not delivered yet
    before_rows = _frame_rows(out_events_by_day(both, first, last))
    ingest_month(spark, both.cfg, "2024-02")
    for month in ("2024-01", "2024-02"):
        ingest_month(spark, alone.cfg, month)

    for table in ("cdr", "care"):
        assert _rows(both, table) == _rows(alone, table)
    assert _frame_rows(out_events_by_day(both, first, later)) == _frame_rows(
        out_events_by_day(alone, first, later)
    )
    assert _frame_rows(care_contacts(both, first, later)) == _frame_rows(care_contacts(alone, first, later))
    # the month's delivery, counted apart from the code under test: its outgoing CDRs of those days
    silver = alone.read("cdr").toPandas()
    days = silver["event_ts"].dt.date.between(first, later) & (silver["direction"] == "out")
    assert out_events_by_day(both, first, later).toPandas()["out_events"].sum() == days.sum()
    # a day of February itself reads February's days, never its later delivery
    assert _frame_rows(out_events_by_day(both, first, last)) == before_rows
