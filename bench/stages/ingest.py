"""Ingest: one month of CDRs against Spark's plain CSV -> Parquet copy of the same files and against DuckDB
reading them into Parquet; then the next month, whose delivery carries late records of the first. The
default (Arrow) path, with the time of each of its phases, and the Spark path on the same month."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bench.harness import RunContext, timed
from bench.record import OPTIONAL, Record, TableRow, compare
from pipelines.core.sql import duckdb_connect
from pipelines.ingest import ingest_month
from pipelines.ingest.stage import PHASES

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
    # from the Arrow path on (issue 33): the path measured, where its time goes, the Spark path beside it
    path: str | None = dataclasses.field(default=None, metadata=OPTIONAL)
    phases_s: dict[str, float] | None = dataclasses.field(default=None, metadata=OPTIONAL)
    next_month_peak_mb: int | None = dataclasses.field(default=None, metadata=OPTIONAL)
    next_month_phases_s: dict[str, float] | None = dataclasses.field(default=None, metadata=OPTIONAL)
    ratio_next_month_vs_spark_copy: float | None = dataclasses.field(default=None, metadata=OPTIONAL)
    spark_path_s: float | None = dataclasses.field(default=None, metadata=OPTIONAL)
    spark_path_peak_mb: int | None = dataclasses.field(default=None, metadata=OPTIONAL)
    ratio_ingest_vs_spark_path: float | None = dataclasses.field(default=None, metadata=OPTIONAL)

    def table_rows(self) -> list[TableRow]:
        stage, n, peak = "ingest, one CDR month", self.cdr_rows, self.peak_mb
        rows = [
            compare(stage, self.ingest_s, "Spark CSV->Parquet copy", self.spark_csv_to_parquet_s, rows=n,
                    peak_mb=peak),
            compare(stage, self.ingest_s, "DuckDB CSV->Parquet", self.duckdb_csv_to_parquet_s, rows=n,
                    peak_mb=peak),
        ]  # fmt: skip
        if self.spark_path_s is not None:
            rows.append(compare(stage, self.ingest_s, "ingest's Spark path", self.spark_path_s, rows=n))
        if self.next_month_peak_mb is not None:
            rows.append(
                compare("ingest, next month (late records)", self.next_month_ingest_s,
                        "Spark CSV->Parquet copy", self.spark_csv_to_parquet_s,
                        rows=self.next_month_cdr_rows, peak_mb=self.next_month_peak_mb)
            )  # fmt: skip
        return rows


def run(ctx: RunContext) -> IngestResult:
    spark, work, landing = ctx.spark, ctx.work, ctx.landing
    cfg = ctx.config()
    ingest_month(spark, cfg, "2024-01", sources=["subscriptions"])
    first = timed(lambda: ingest_month(spark, cfg, "2024-01", sources=["cdr"]))
    rows = first.value["cdr"].rows_read
    # the next month: late records of the first, checked against what its delivery already loaded
    ingest_month(spark, cfg, "2024-02", sources=["subscriptions"])
    second = timed(lambda: ingest_month(spark, cfg, "2024-02", sources=["cdr"]))
    phases = dict(PHASES.get(("cdr", "2024-01"), {}))
    next_phases = dict(PHASES.get(("cdr", "2024-02"), {}))
    # the Spark path on the same month, in a lake of its own
    old_cfg = ctx.config(f"lake.root={work / 'lake-spark-path'}", "ingest.path=spark")
    ingest_month(spark, old_cfg, "2024-01", sources=["subscriptions"])
    old = timed(lambda: ingest_month(spark, old_cfg, "2024-01", sources=["cdr"]))
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
        path=cfg.ingest.path,
        phases_s=phases,
        next_month_peak_mb=second.peak_mb,
        next_month_phases_s=next_phases,
        ratio_next_month_vs_spark_copy=round(second.seconds / spark_copy, 2),
        spark_path_s=round(old.seconds, 2),
        spark_path_peak_mb=old.peak_mb,
        ratio_ingest_vs_spark_path=round(secs / old.seconds, 2),
    )
