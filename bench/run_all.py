"""Benchmarks (``make bench``): throughputs as ratios against a reference measured in the same run.

- Delta layer: write and read through the bridge vs Spark writing/reading plain Parquet in the same place.
- Sample data: generator CDR rows per second for 12 months (target: well over 1 million).
- Ingest: one month of CDRs, rows per second, vs DuckDB reading the same files into Parquet.
- Features: the monthly CDR aggregation (one pass: subscriber-day, then subscriber-month and contact
  pairs) and the whole feature build for the third month, vs one DuckDB SQL query computing the same CDR
  aggregates over the same Delta table (target: within 3x).
- Training: the train job as of one month vs plain ``lightgbm.train`` on the same rows, and vs the same
  boosters trained plainly (the family fits a pooled and a per-cohort model).
- Scoring: the ``mapInArrow`` scoring pass vs the same work in one process (pyarrow read, score, pyarrow
  write; target at least 0.7x), Python worker memory at 1x and 2x the subscribers (flat), the SHAP
  reasons pass on a 10 % share, and the whole score job.

Results go to ``bench/results/latest.json``. Sizes: ``BENCH_SUBSCRIBERS`` (default 100000).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pyspark.sql import functions as F

from features.calendar import months_between
from pipelines.core.config import load_config
from pipelines.core.delta import read_delta, write_delta
from pipelines.core.runner import configure_logging
from pipelines.core.spark import get_spark
from pipelines.core.sql import duckdb_connect
from pipelines.ingest import ingest_month
from pipelines.sample_data.writer import GenerateOptions, generate


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
    """The issue's scenario: 12 months (ingest and features then use the first three)."""
    months = tuple(months_between("2024-01", "2024-12"))
    opts = GenerateOptions(months=months, subscribers=subscribers, seed=3)
    report, secs = timed(lambda: generate(work / "landing", opts))
    return {
        "subscribers": subscribers,
        "months": len(months),
        "cdr_rows": report.cdr_rows,
        "seconds": round(secs, 2),
        "cdr_rows_per_s": round(report.cdr_rows / secs),
        "target_rows_per_s": 1_000_000,
        # this process's peak so far (the generator's: Spark's memory is the JVM's); flat in the months
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def bench_ingest(spark, work: Path) -> dict:
    cfg = load_config([], [f"lake.root={work / 'lake'}", f"landing.root={work / 'landing'}"])
    ingest_month(spark, cfg, "2024-01", sources=["subscriptions"])
    reports, secs = timed(lambda: ingest_month(spark, cfg, "2024-01", sources=["cdr"]))
    rows = reports["cdr"].rows_read
    # the next month: late records of the first, checked against what its delivery already loaded
    ingest_month(spark, cfg, "2024-02", sources=["subscriptions"])
    reports2, secs2 = timed(lambda: ingest_month(spark, cfg, "2024-02", sources=["cdr"]))
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
        "next_month_cdr_rows": reports2["cdr"].rows_read,
        "next_month_late_records": reports2["cdr"].late_records,
        "next_month_ingest_s": round(secs2, 2),
        "target_s": 120,
    }


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


def duckdb_feature_sql(cdr_path: str, month: str, out: Path) -> str:
    """The CDR aggregates of the feature build as one DuckDB query (the reference)."""
    from features.calendar import add_months
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


def bench_features(spark, work: Path) -> dict:
    from features.build import select_cdr_window, summarize_cdr
    from features.social import compute_contact_pairs
    from pipelines.build_features import build_features_month
    from pipelines.core.lake import Lake

    cfg = load_config([], [f"lake.root={work / 'lake'}", f"landing.root={work / 'landing'}"])
    for month in ("2024-01", "2024-02"):  # bench_ingest loaded their subscriptions and CDRs
        ingest_month(spark, cfg, month, sources=["billing", "care"])
    ingest_month(spark, cfg, "2024-03", sources=["subscriptions", "billing", "care", "cdr"])
    lake = Lake(spark, cfg)
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

    _, t_spark = timed(spark_cdr_aggregates)
    _, t_build = timed(lambda: build_features_month(spark, cfg, month))
    con = duckdb_connect()
    con.execute("SET threads = 2")
    _, t_duck = timed(
        lambda: con.execute(duckdb_feature_sql(cfg.table_path("cdr"), month, work / "duck_agg.parquet"))
    )
    return {
        "cdr_rows_in_window": cdr_rows,
        "spark_cdr_aggregates_s": round(t_spark, 2),
        "build_features_s": round(t_build, 2),
        "duckdb_cdr_aggregates_s": round(t_duck, 2),
        "ratio_cdr_aggregates_vs_duckdb": round(t_spark / t_duck, 2),
        "ratio_build_features_vs_duckdb": round(t_build / t_duck, 2),
        "target_ratio": 3.0,
    }


def bench_train(spark, work: Path) -> dict:
    """Training as of 2024-05 (fit 01, validate 02, test 03) against one plain ``lightgbm.train``."""
    import lightgbm as lgb
    import numpy as np

    from models.family import _lgb_params, _with_cohort
    from pipelines.build_features import build_features_month
    from pipelines.core.lake import Lake
    from pipelines.train import labelled_months, read_training_frame, train_month, training_window

    cfg = load_config([], [f"lake.root={work / 'lake'}", f"landing.root={work / 'landing'}"])
    for month in ("2024-04", "2024-05"):  # the snapshots that close the label windows of 01..03
        ingest_month(spark, cfg, month, sources=["subscriptions"])
    for month in ("2024-01", "2024-02", "2024-03"):
        build_features_month(spark, cfg, month)
    lake = Lake(spark, cfg)
    # the whole job: read, fit, evaluate, log to MLflow, register (version 1, scored by bench_score)
    result, t_all = timed(lambda: train_month(spark, cfg, "2024-05"))
    family = result.family
    window = training_window("2024-05", labelled_months(lake, "2024-05"), cfg)
    frame = read_training_frame(lake, [*window.fit_months, window.valid_month], family.spec)
    fit = frame[frame["month"].isin(window.fit_months)]
    valid = frame[frame["month"] == window.valid_month]
    x, xv = family.encoder.transform(fit), family.encoder.transform(valid)
    y, yv = fit["is_churn"].to_numpy(float), valid["is_churn"].to_numpy(float)
    params = {**_lgb_params(cfg.model), "metric": "binary_logloss"}

    def plain() -> lgb.Booster:
        train = lgb.Dataset(x, y, categorical_feature=family.encoder.categorical)
        return lgb.train(
            params,
            train,
            cfg.model.num_boost_round,
            valid_sets=[lgb.Dataset(xv, yv, reference=train)],
            callbacks=[lgb.early_stopping(cfg.model.early_stopping_rounds, verbose=False)],
        )

    booster, t_plain = timed(plain)

    def same_models() -> None:
        """The family's boosters, each a plain lightgbm.train on its own rows for as many trees."""
        xp = _with_cohort(x, family.spec.cohorts.names, family.cohorts(fit))
        cohort = family.cohorts(fit)
        for name, fitted in family.boosters.items():
            rows = np.ones(len(fit), bool) if name == "pooled" else cohort == name
            categorical = [*family.encoder.categorical, xp.shape[1] - 1]
            data = lgb.Dataset(xp[rows], y[rows], categorical_feature=categorical)
            lgb.train(params, data, fitted.num_trees())

    _, t_same = timed(same_models)
    return {
        "fit_rows": result.rows["fit"],
        "valid_rows": result.rows["valid"],
        "features": len(family.features),
        "train_as_of_s": round(t_all, 2),
        "family_fit_s": round(result.seconds, 2),
        "plain_lightgbm_s": round(t_plain, 2),
        "plain_same_boosters_s": round(t_same, 2),
        "plain_trees": booster.num_trees(),
        "family_trees": int(np.sum([b.num_trees() for b in family.boosters.values()])),
        "ratio_family_fit_vs_plain": round(result.seconds / t_plain, 2),
        "ratio_family_fit_vs_same_boosters": round(result.seconds / t_same, 2),
        "ratio_train_as_of_vs_plain": round(t_all / t_plain, 2),
        "test_auc_family": round(result.test_metrics["family"]["all"]["roc_auc"], 4),
    }


class PeakWorkerMemory:
    """Peak summed RSS of Spark's Python workers (``pyspark.daemon`` / ``worker``), sampled every 50 ms."""

    def __enter__(self) -> PeakWorkerMemory:
        import threading

        import psutil

        self.peak, self._stop = 0, threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                total = 0
                for proc in psutil.process_iter(["cmdline", "memory_info"]):
                    cmd = " ".join(proc.info["cmdline"] or [])
                    if "pyspark.daemon" in cmd or "pyspark.worker" in cmd:
                        total += proc.info["memory_info"].rss if proc.info["memory_info"] else 0
                self.peak = max(self.peak, total)
                self._stop.wait(0.05)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def bench_score(spark, work: Path) -> dict:
    """The scoring pass (``mapInArrow``) against the same work in one process, reasons apart, memory."""
    import pickle
    import uuid

    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from pipelines.core.lake import Lake
    from pipelines.score import (
        REASONS_SCHEMA,
        SCORED_SCHEMA,
        FamilyPayload,
        read_month_features,
        reason_batches,
        resolve_model,
        score_batches,
        score_frame,
        score_month,
        scoring_input,
    )

    cfg = load_config([], [f"lake.root={work / 'lake'}", f"landing.root={work / 'landing'}"])
    lake, month = Lake(spark, cfg), "2024-03"
    model = resolve_model(cfg, month, "1")
    family = model.family
    features = read_month_features(lake, month, family, model.version)
    subscribers = features.count()
    files = [
        f.removeprefix("file://")
        for f in lake.read("features_monthly").inputFiles()
        if f"/month={month}/" in f  # inputFiles() does not prune partitions
    ]
    out = work / "score_out"

    def one_process() -> None:
        table = ds.dataset(files, format="parquet").to_table(columns=features.columns)
        doubles = pa.schema(
            [pa.field(f.name, pa.float64()) if pa.types.is_decimal(f.type) else f for f in table.schema]
        )
        frame = table.cast(doubles).to_pandas()
        scored = score_frame(family, frame, cfg.score)
        pq.write_table(pa.Table.from_pandas(scored, preserve_index=False), out / "one.parquet")

    out.mkdir(exist_ok=True)
    _, t_one = timed(one_process)
    payload = FamilyPayload(uuid.uuid4().hex, spark.sparkContext.broadcast(pickle.dumps(family)))

    def spark_pass(frame) -> None:
        scoring_input(spark, frame).mapInArrow(score_batches(payload, cfg.score), SCORED_SCHEMA).write.mode(
            "overwrite"
        ).parquet(str(out / "spark"))

    spark_pass(features.limit(1000))  # start the Python workers once, as a scheduled job's first batch does
    with PeakWorkerMemory() as mem_1x:
        _, t_spark = timed(lambda: spark_pass(features))
    doubled = features.unionByName(
        features.withColumn("subscriber_id", F.concat("subscriber_id", F.lit("b")))
    )
    with PeakWorkerMemory() as mem_2x:
        _, t_spark_2x = timed(lambda: spark_pass(doubled))
    top = features.orderBy(F.rand(1)).limit(max(1, subscribers // 10))  # a 10 % actionable share
    _, t_reasons = timed(
        lambda: (
            scoring_input(spark, top)
            .mapInArrow(reason_batches(payload, cfg.score), REASONS_SCHEMA)
            .write.mode("overwrite")
            .parquet(str(out / "reasons"))
        )
    )
    payload.broadcast.destroy()
    report, t_job = timed(lambda: score_month(spark, cfg, month, model_version=model.version))
    return {
        "subscribers": subscribers,
        "features": len(family.features),
        "one_process_rows_per_s": round(subscribers / t_one),
        "spark_pass_rows_per_s": round(subscribers / t_spark),
        "ratio_spark_vs_one_process": round(t_one / t_spark, 2),
        "spark_pass_2x_rows_s": round(t_spark_2x, 2),
        "python_workers_peak_mb_1x": round(mem_1x.peak / 2**20),
        "python_workers_peak_mb_2x": round(mem_2x.peak / 2**20),
        "reasons_rows_per_s": round(max(1, subscribers // 10) / t_reasons),
        "score_job_s": round(t_job, 2),
        "score_job_with_reasons": report.with_reasons,
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
        results["features"] = bench_features(spark, work)
        results["train"] = bench_train(spark, work)
        results["score"] = bench_score(spark, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
