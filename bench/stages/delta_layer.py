"""The Delta layer: write and read through the bridge against Spark writing and reading plain Parquet in
the same place."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import functions as F

from bench.harness import RunContext, timed
from bench.record import Record, TableRow, compare
from pipelines.core.delta import read_delta, write_delta

ROWS = 5_000_000  # the same at every size: the layer's cost, not the pipeline's


@dataclass(frozen=True, kw_only=True)
class DeltaLayerResult(Record):
    rows: int
    parquet_write_s: float
    delta_write_s: float
    write_ratio_delta_vs_parquet: float
    parquet_read_s: float
    delta_read_s: float
    read_ratio_delta_vs_parquet: float
    delta_write_rows_per_s: int

    def table_rows(self) -> list[TableRow]:
        return [
            compare(
                "delta write", self.delta_write_s, "Spark Parquet write", self.parquet_write_s, rows=self.rows
            ),
            compare(
                "delta read", self.delta_read_s, "Spark Parquet read", self.parquet_read_s, rows=self.rows
            ),
        ]


def run(ctx: RunContext, rows: int = ROWS) -> DeltaLayerResult:
    spark, work = ctx.spark, ctx.work
    df = (
        spark.range(rows)
        .select(
            F.col("id"),
            (F.col("id") % 12).cast("string").alias("month"),
            F.sha2(F.col("id").cast("string"), 256).alias("other_party"),
            (F.rand(1) * 100).alias("charge"),
            F.current_timestamp().alias("ts"),
        )
        .cache()
    )
    df.count()
    t_parquet = timed(
        lambda: df.write.mode("overwrite").partitionBy("month").parquet(str(work / "plain"))
    ).seconds
    t_delta = timed(
        lambda: write_delta(df, str(work / "delta"), mode="overwrite", partition_by=["month"])
    ).seconds
    r_parquet = timed(lambda: spark.read.parquet(str(work / "plain")).agg(F.sum("charge")).collect()).seconds
    r_delta = timed(lambda: read_delta(spark, str(work / "delta")).agg(F.sum("charge")).collect()).seconds
    df.unpersist()
    return DeltaLayerResult(
        rows=rows,
        parquet_write_s=round(t_parquet, 2),
        delta_write_s=round(t_delta, 2),
        write_ratio_delta_vs_parquet=round(t_delta / t_parquet, 2),
        parquet_read_s=round(r_parquet, 2),
        delta_read_s=round(r_delta, 2),
        read_ratio_delta_vs_parquet=round(r_delta / r_parquet, 2),
        delta_write_rows_per_s=round(rows / t_delta),
    )
