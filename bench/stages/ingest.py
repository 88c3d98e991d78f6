"""Ingest: one month of CDRs against Spark's plain CSV -> Parquet copy of the same files and against DuckDB
reading them into Parquet; then the next month, whose delivery carries late records of the first."""

from __future__ import annotations

from dataclasses import dataclass

from bench.harness import RunContext, timed
from bench.record import Record, TableRow, compare
from pipelines.core.sql import duckdb_connect
from pipelines.ingest import ingest_month

TARGET_RATIO_VS_SPARK_COPY = 2.0


@dataclass(frozen=True, kw_only=True)
class IngestResult(Record):
    cdr_rows: int
    ingest_s: float
    ingest_rows_per_s: int
    peak_mb: int
    spark_csv_to_parquet_s: float
    duckdb_csv_to_parquet_s: float
    ratio_ingest_vs_spark_copy: float
    ratio_ingest_vs_duckdb: float
    next_month_cdr_rows: int
    next_month_late_records: int
    next_month_ingest_s: float
    target_ratio_vs_spark_copy: float

    def table_rows(self) -> list[TableRow]:
        stage, n, peak = "ingest, one CDR month", self.cdr_rows, self.peak_mb
        return [
            compare(stage, self.ingest_s, "Spark CSV->Parquet copy", self.spark_csv_to_parquet_s, rows=n,
                    peak_mb=peak),
            compare(stage, self.ingest_s, "DuckDB CSV->Parquet", self.duckdb_csv_to_parquet_s, rows=n,
                    peak_mb=peak),
        ]  # fmt: skip


def run(ctx: RunContext) -> IngestResult:
    spark, work, landing = ctx.spark, ctx.work, ctx.landing
    cfg = ctx.config()
    ingest_month(spark, cfg, "2024-01", sources=["subscriptions"])
    first = timed(lambda: ingest_month(spark, cfg, "2024-01", sources=["cdr"]))
    rows = first.value["cdr"].rows_read
    # the next month: late records of the first, checked against what its delivery already loaded
    ingest_month(spark, cfg, "2024-02", sources=["subscriptions"])
    second = timed(lambda: ingest_month(spark, cfg, "2024-02", sources=["cdr"]))
    folder = landing / "cdr" / "month=2024-01"
    files = [str(p) for p in sorted(folder.iterdir()) if p.name.endswith((".csv", ".csv.gz"))]
    # Spark's own plain copy of the same files: CSV (all strings) to Parquet, nothing else
    spark_copy = timed(
        lambda: (
            spark.read.option("header", True).csv(files).write.mode("overwrite").parquet(str(work / "copy"))
        )
    ).seconds
    con = duckdb_connect()
    con.execute("SET threads = 2")
    duck = timed(
        lambda: con.execute(
            f"COPY (SELECT * FROM read_csv({files!r}, all_varchar=true, union_by_name=true)) "
            f"TO '{work / 'duck.parquet'}' (FORMAT parquet)"
        )
    ).seconds
    secs = first.seconds
    return IngestResult(
        cdr_rows=rows,
        ingest_s=round(secs, 2),
        ingest_rows_per_s=round(rows / secs),
        peak_mb=first.peak_mb,
        spark_csv_to_parquet_s=round(spark_copy, 2),
        duckdb_csv_to_parquet_s=round(duck, 2),
        ratio_ingest_vs_spark_copy=round(secs / spark_copy, 2),
        ratio_ingest_vs_duckdb=round(secs / duck, 2),
        next_month_cdr_rows=second.value["cdr"].rows_read,
        next_month_late_records=second.value["cdr"].late_records,
        next_month_ingest_s=round(second.seconds, 2),
        target_ratio_vs_spark_copy=TARGET_RATIO_VS_SPARK_COPY,
    )
