"""Benchmarks (``make bench``): throughputs as ratios against a reference measured in the same run.

- Delta layer: write and read through the bridge vs Spark writing/reading plain Parquet in the same place.
- Sample data: generator CDR rows per second (target: well over 1 million).
- Ingest: one month of CDRs, rows per second, vs DuckDB reading the same files into Parquet.

Results go to ``bench/results/latest.json``. Sizes: ``BENCH_SUBSCRIBERS`` (default 100000).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pyspark.sql import functions as F

from pipelines.config import load_config
from pipelines.delta import read_delta, write_delta
from pipelines.ingest import ingest_month
from pipelines.runner import configure_logging
from pipelines.sample_data.writer import GenerateOptions, generate
from pipelines.spark import get_spark
from pipelines.sql import duckdb_connect


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def bench_delta(spark, work: Path, rows: int) -> dict:
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
    _, t_parquet = timed(lambda: df.write.mode("overwrite").partitionBy("month").parquet(str(work / "plain")))
    _, t_delta = timed(lambda: write_delta(df, str(work / "delta"), mode="overwrite", partition_by=["month"]))
    _, r_parquet = timed(lambda: spark.read.parquet(str(work / "plain")).agg(F.sum("charge")).collect())
    _, r_delta = timed(lambda: read_delta(spark, str(work / "delta")).agg(F.sum("charge")).collect())
    df.unpersist()
    return {
        "rows": rows,
        "parquet_write_s": round(t_parquet, 2),
        "delta_write_s": round(t_delta, 2),
        "write_ratio_delta_vs_parquet": round(t_delta / t_parquet, 2),
        "parquet_read_s": round(r_parquet, 2),
        "delta_read_s": round(r_delta, 2),
        "read_ratio_delta_vs_parquet": round(r_delta / r_parquet, 2),
        "delta_write_rows_per_s": round(rows / t_delta),
    }


def bench_generator(work: Path, subscribers: int) -> dict:
    opts = GenerateOptions(months=("2024-01", "2024-02", "2024-03"), subscribers=subscribers, seed=3)
    report, secs = timed(lambda: generate(work / "landing", opts))
    return {
        "subscribers": subscribers,
        "months": 3,
        "cdr_rows": report.cdr_rows,
        "seconds": round(secs, 2),
        "cdr_rows_per_s": round(report.cdr_rows / secs),
        "target_rows_per_s": 1_000_000,
    }


def bench_ingest(spark, work: Path) -> dict:
    cfg = load_config([], [f"lake.root={work / 'lake'}", f"landing.root={work / 'landing'}"])
    ingest_month(spark, cfg, "2024-01", sources=["subscriptions"])
    reports, secs = timed(lambda: ingest_month(spark, cfg, "2024-01", sources=["cdr"]))
    rows = reports["cdr"].rows_read
    con = duckdb_connect()
    folder = work / "landing" / "cdr" / "month=2024-01"
    files = [str(p) for p in folder.iterdir() if p.name.endswith((".csv", ".csv.gz"))]
    _, duck = timed(
        lambda: con.execute(
            f"COPY (SELECT * FROM read_csv({files!r}, all_varchar=true, union_by_name=true)) "
            f"TO '{work / 'duck.parquet'}' (FORMAT parquet)"
        )
    )
    return {
        "cdr_rows": rows,
        "ingest_s": round(secs, 2),
        "ingest_rows_per_s": round(rows / secs),
        "duckdb_csv_to_parquet_s": round(duck, 2),
        "ratio_ingest_vs_duckdb": round(secs / duck, 2),
    }


def main() -> int:
    configure_logging()
    subscribers = int(os.environ.get("BENCH_SUBSCRIBERS", "100000"))
    cfg = load_config([Path(__file__).resolve().parent.parent / "conf" / "local.yml"])
    spark = get_spark(cfg)
    work = Path(tempfile.mkdtemp(prefix="churn-bench-"))
    try:
        results = {
            "delta_layer": bench_delta(spark, work, 5_000_000),
            "generator": bench_generator(work, subscribers),
        }
        results["ingest"] = bench_ingest(spark, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
