"""Features: the monthly CDR aggregation and the whole feature build against one DuckDB SQL query computing
the same CDR aggregates over the same Delta table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import functions as F

from bench.harness import RunContext, timed
from bench.record import Record, TableRow, compare
from features.calendar import add_months
from pipelines.core.lake import Lake
from pipelines.core.sql import duckdb_connect
from pipelines.ingest import ingest_month

TARGET_RATIO = 2.0
SOURCES = ("subscriptions", "billing", "care", "cdr")

DAILY_SQL = {
    "events": "count(*)",
    "out_events": "count_if(direction = 'out')",
    "voice_out_calls": "count_if(event_type = 'voice' AND direction = 'out')",
    "voice_in_calls": "count_if(event_type = 'voice' AND direction = 'in')",
    "voice_out_min": "sum(CASE WHEN event_type = 'voice' AND direction = 'out' THEN duration_s END) / 60.0",
    "voice_in_min": "sum(CASE WHEN event_type = 'voice' AND direction = 'in' THEN duration_s END) / 60.0",
    "sms_out": "count_if(event_type = 'sms' AND direction = 'out')",
    "sms_in": "count_if(event_type = 'sms' AND direction = 'in')",
    "data_sessions": "count_if(event_type = 'data')",
    "data_mb": "sum(CASE WHEN event_type = 'data' THEN volume_kb ELSE 0 END) / 1024.0",
    "night_events": "count_if(hour(event_ts) >= 22 OR hour(event_ts) < 6)",
    "competitor_out_events": "count_if(event_type IN ('voice', 'sms') AND direction = 'out' "
    "AND other_party_operator NOT IN ('own', 'fixed', 'intl'))",
    "roaming_events": "count_if(roaming)",
    "roaming_out_events": "count_if(roaming AND direction = 'out')",
    "roaming_data_mb": "sum(CASE WHEN roaming AND event_type = 'data' THEN volume_kb ELSE 0 END) / 1024.0",
}


@dataclass(frozen=True, kw_only=True)
class FeaturesResult(Record):
    cdr_rows_in_window: int
    subscribers: int
    peak_mb: int
    spark_cdr_aggregates_s: float
    build_features_s: float
    duckdb_cdr_aggregates_s: float
    ratio_cdr_aggregates_vs_duckdb: float
    ratio_build_features_vs_duckdb: float
    target_ratio: float

    def table_rows(self) -> list[TableRow]:
        return [
            compare("feature build (month)", self.build_features_s, "DuckDB CDR aggregates",
                    self.duckdb_cdr_aggregates_s, rows=self.cdr_rows_in_window, peak_mb=self.peak_mb),
        ]  # fmt: skip


def duckdb_feature_sql(cdr_path: str, month: str, out: Path) -> str:
    """The CDR aggregates of the feature build as one DuckDB query (the reference)."""
    from features.usage import CURRENT_MEASURES, TREND_MEASURES

    months = [add_months(month, -k) for k in range(3)]
    day_cols = ",\n".join(f"{expr} AS {name}" for name, expr in DAILY_SQL.items())
    per_day = {
        "active_days": "CASE WHEN events > 0 THEN 1 ELSE 0 END",
        "out_active_days": "CASE WHEN out_events > 0 THEN 1 ELSE 0 END",
        "roaming_days": "CASE WHEN roaming_events > 0 THEN 1 ELSE 0 END",
    }
    sums = []
    for k, m in enumerate(months):
        for name in TREND_MEASURES:
            sums.append(f"sum({per_day.get(name, name)}) FILTER (WHERE month = '{m}') AS {name}__{k}")
    for name in CURRENT_MEASURES:
        sums.append(f"sum({per_day.get(name, name)}) FILTER (WHERE month = '{month}') AS {name}__0")
    sums.append(f"list(day(day)) FILTER (WHERE month = '{month}' AND out_events > 0) AS out_days__0")
    sums.append(f"list_distinct(flatten(list(countries) FILTER (WHERE month = '{month}'))) AS countries__0")
    first = f"{months[-1]}-01"
    m1, m0 = f"{months[1]}-01", f"{month}-01"
    next_start = f"{add_months(month, 1)}-01"
    return f"""
COPY (
WITH cdr AS (
  SELECT * FROM delta_scan('{cdr_path}')
  WHERE event_month IN ({", ".join(repr(m) for m in months)}) AND delivery_month <= '{month}'
    AND event_ts < TIMESTAMP '{next_start}'
), daily AS (
  SELECT subscriber_id, CAST(event_ts AS DATE) AS day, strftime(CAST(event_ts AS DATE), '%Y-%m') AS month,
    {day_cols},
    list_distinct(list(roaming_country) FILTER (WHERE roaming)) AS countries
  FROM cdr GROUP BY ALL
), summary AS (
  SELECT subscriber_id, {", ".join(sums)} FROM daily GROUP BY subscriber_id
), pairs AS (
  SELECT subscriber_id, other_party,
    count_if(event_ts >= TIMESTAMP '{first}') AS events_window,
    count_if(event_ts >= TIMESTAMP '{m0}') AS events_m0,
    count_if(event_ts >= TIMESTAMP '{m1}' AND event_ts < TIMESTAMP '{m0}') AS events_m1
  FROM cdr WHERE event_type IN ('voice', 'sms') AND other_party IS NOT NULL GROUP BY ALL
), contacts AS (
  SELECT subscriber_id, count_if(events_m0 > 0) AS distinct_contacts_m0,
    count_if(events_m1 > 0) AS distinct_contacts_m1, count_if(events_window >= 3) AS frequent_contacts
  FROM pairs GROUP BY subscriber_id
)
SELECT * FROM summary LEFT JOIN contacts USING (subscriber_id)
) TO '{out}' (FORMAT parquet)
"""


def _ingested(lake: Lake, month: str) -> set[str]:
    if not lake.exists("data_quality"):
        return set()
    quality = lake.read("data_quality").where(F.col("month") == month)
    return {r.source for r in quality.select("source").distinct().collect()}


def run(ctx: RunContext) -> FeaturesResult:
    from features.build import select_cdr_window, summarize_cdr
    from features.social import compute_contact_pairs
    from pipelines.build_features import build_features_month

    spark, work = ctx.spark, ctx.work
    cfg = ctx.config()
    lake = Lake(spark, cfg)
    for month in ("2024-01", "2024-02"):
        # the ingest stage loaded their subscriptions and CDRs; run alone (--stage features), this one does
        todo = [s for s in SOURCES if s not in _ingested(lake, month)]
        if todo:  # (no sources means every source)
            ingest_month(spark, cfg, month, sources=todo)
    ingest_month(spark, cfg, "2024-03", sources=list(SOURCES))
    month, params = "2024-03", cfg.features
    cdr_rows = select_cdr_window(lake.read("cdr"), month=month, params=params).count()

    def spark_cdr_aggregates() -> None:
        cdr = select_cdr_window(lake.read("cdr"), month=month, params=params)
        summary = summarize_cdr(cdr, month=month, params=params)
        pairs = compute_contact_pairs(cdr, month=month, contagion_months=3)
        contacts = pairs.groupBy("subscriber_id").agg(
            F.count_if(F.col("events_m0") > 0),
            F.count_if(F.col("events_m1") > 0),
            F.count_if(F.col("events_window") >= 3),
        )
        summary.join(contacts, "subscriber_id", "left").write.mode("overwrite").parquet(
            str(work / "spark_agg")
        )

    t_spark = timed(spark_cdr_aggregates).seconds
    build = timed(lambda: build_features_month(spark, cfg, month))
    con = duckdb_connect()
    con.execute("SET threads = 2")
    t_duck = timed(
        lambda: con.execute(duckdb_feature_sql(cfg.table_path("cdr"), month, work / "duck_agg.parquet"))
    ).seconds
    t_build = build.seconds
    return FeaturesResult(
        cdr_rows_in_window=cdr_rows,
        subscribers=build.value.subscribers,
        peak_mb=build.peak_mb,
        spark_cdr_aggregates_s=round(t_spark, 2),
        build_features_s=round(t_build, 2),
        duckdb_cdr_aggregates_s=round(t_duck, 2),
        ratio_cdr_aggregates_vs_duckdb=round(t_spark / t_duck, 2),
        ratio_build_features_vs_duckdb=round(t_build / t_duck, 2),
        target_ratio=TARGET_RATIO,
    )
