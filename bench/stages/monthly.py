"""The whole monthly run of the size's last month (ingest to offers), per subscriber. Training is due in
it: in the whole bench the lake's last training is the train stage's, as of 2024-05, more than
``train.every_months`` earlier (run alone, no champion exists yet)."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import functions as F

from bench.harness import RunContext, timed
from bench.record import Record, TableRow, compare
from features.calendar import add_months, months_between
from pipelines.core.lake import Lake
from pipelines.ingest import ingest_month


@dataclass(frozen=True, kw_only=True)
class MonthlyResult(Record):
    month: str
    subscribers: int
    seconds: float
    ms_per_subscriber: float
    peak_mb: int
    stages: dict[str, float]  # seconds of each stage that ran

    def table_rows(self) -> list[TableRow]:
        return [compare("monthly run", self.seconds, rows=self.subscribers, peak_mb=self.peak_mb)]


def run(ctx: RunContext) -> MonthlyResult:
    from pipelines.monthly import run_monthly

    spark, month = ctx.spark, f"2024-{ctx.months:02d}"
    cfg = ctx.config()
    for m in months_between("2024-04", add_months(month, -1)):  # the history the feature build reads
        ingest_month(spark, cfg, m)
    monthly = timed(lambda: run_monthly(spark, cfg, [month]))
    subscribers = Lake(spark, cfg).read("features_monthly").where(F.col("month") == month).count()
    return MonthlyResult(
        month=month,
        subscribers=subscribers,
        seconds=round(monthly.seconds, 2),
        ms_per_subscriber=round(monthly.seconds / subscribers * 1e3, 3),
        peak_mb=monthly.peak_mb,
        stages={o.stage: round(o.seconds, 2) for o in monthly.value if o.status == "ran"},
    )
