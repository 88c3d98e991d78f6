"""Benchmarks (``make bench [SIZE=S|M|L]``): every stage against a reference doing the same work on the
same files in the same run, printed as one table and saved as JSON.

Sizes: ``S`` 10,000 subscribers x 6 months (a couple of minutes), ``M`` 100,000 x 12, ``L`` 400,000 x 12.
The generated landing data is cached per size under ``bench/cache/<size>/``. ``make bench-scaling`` runs
the monthly pipeline over six months at 25k, 50k, 100k and 200k subscribers and plots each stage's time
against size.

- Delta layer: write and read through the bridge vs Spark writing/reading plain Parquet in the same place.
- Sample data: generator CDR rows per second.
- Ingest: one month of CDRs vs Spark's plain CSV -> Parquet copy of the same files, and vs DuckDB reading
  them into Parquet (both ratios).
- Features: the monthly CDR aggregation and the whole feature build vs one DuckDB SQL query computing the
  same CDR aggregates over the same Delta table.
- Training: the train job as of one month vs plain ``lightgbm.train`` on the same rows, and vs the same
  boosters trained plainly (the family fits a pooled and a per-cohort model).
- Scoring: the ``mapInArrow`` scoring pass vs the same work in one process (pyarrow read, score, pyarrow
  write), the two sides interleaved and each its best of five passes, Python worker memory at 1x and 2x
  the subscribers (flat), the SHAP reasons on a 10 % share, and the whole score job.
- Offers: the match_offers job (per subscriber of the warning list), the exact optimum vs greedy, and the
  Lagrangian path in Spark vs the exact solve.
- The whole monthly run of one month (ingest to offers), per subscriber.

Peak memory is the process tree's (this driver, its JVM, the Python workers), sampled every 100 ms.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pyspark.sql import functions as F

from features.calendar import add_months, months_between
from pipelines.core.config import load_config
from pipelines.core.delta import read_delta, write_delta
from pipelines.core.lake import Lake
from pipelines.core.runner import configure_logging
from pipelines.core.spark import get_spark
from pipelines.core.sql import duckdb_connect
from pipelines.ingest import ingest_month
from pipelines.sample_data.writer import GenerateOptions, generate

SIZES = {"S": (10_000, 6), "M": (100_000, 12), "L": (400_000, 12)}
CACHE = Path(__file__).resolve().parent / "cache"
RESULTS = Path(__file__).resolve().parent / "results"


class PeakMemory:
    """Peak summed RSS of a set of processes, sampled every ``every`` seconds: this process and all its
    descendants (the JVM, Spark's Python workers), or with ``workers_only`` Spark's Python workers."""

    def __init__(self, *, workers_only: bool = False, every: float = 0.1) -> None:
        self.workers_only, self.every = workers_only, every

    def _processes(self) -> list:
        import psutil

        if not self.workers_only:
            me = psutil.Process()
            return [me, *me.children(recursive=True)]
        return [
            proc
            for proc in psutil.process_iter(["cmdline"])
            if any(k in " ".join(proc.info["cmdline"] or []) for k in ("pyspark.daemon", "pyspark.worker"))
        ]

    def __enter__(self) -> PeakMemory:
        import threading

        import psutil

        self.peak, self._stop = 0, threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                total = 0
                for proc in self._processes():
                    try:
                        total += proc.memory_info().rss
                    except psutil.Error:
                        continue
                self.peak = max(self.peak, total)
                self._stop.wait(self.every)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mb(self) -> int:
        return round(self.peak / 2**20)


LAST_PEAK_MB: list[int] = [0]


def timed(fn):
    """``fn()`` and its wall time; the peak memory of the process tree meanwhile goes to ``LAST_PEAK_MB``."""
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - t0
    LAST_PEAK_MB[0] = mem.mb
    return out, seconds


def interleaved_best(n: int, *fns) -> list[float]:
    """Each of ``fns`` timed ``n`` times, taking turns, and the best time of each: a ratio between two of
    them then does not depend on the machine's state drifting from one block of timings to the next."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(n):
        for fn, seen in zip(fns, times, strict=True):
            seen.append(timed(fn)[1])
    return [min(seen) for seen in times]


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
    """Three months of every source (the cached landing of the size is generated once, untimed)."""
    months = tuple(months_between("2024-01", "2024-03"))
    opts = GenerateOptions(months=months, subscribers=subscribers, seed=3)
    report, secs = timed(lambda: generate(work / "generated", opts))
    shutil.rmtree(work / "generated", ignore_errors=True)
    return {
        "subscribers": subscribers,
        "months": len(months),
        "cdr_rows": report.cdr_rows,
        "seconds": round(secs, 2),
        "cdr_rows_per_s": round(report.cdr_rows / secs),
        "target_rows_per_s": 1_000_000,
        "peak_mb": LAST_PEAK_MB[0],
    }


def cached_landing(subscribers: int, months: int) -> Path:
    """The size's landing zone, generated once (seed 3) and reused while its options are the same."""
    root = CACHE / f"{subscribers}x{months}" / "landing"
    wanted = GenerateOptions(
        months=tuple(months_between("2024-01", f"2024-{months:02d}")), subscribers=subscribers, seed=3
    )
    manifest = root / "_sample_manifest" / "manifest.json"
    if manifest.exists() and json.loads(manifest.read_text())["options"]["months"] == list(wanted.months):
        return root
    shutil.rmtree(root, ignore_errors=True)
    generate(root, wanted)
    return root


def bench_ingest(spark, work: Path, landing: Path) -> dict:
    cfg = load_config([], [f"lake.root={work / 'lake'}", f"landing.root={landing}"])
    ingest_month(spark, cfg, "2024-01", sources=["subscriptions"])
    reports, secs = timed(lambda: ingest_month(spark, cfg, "2024-01", sources=["cdr"]))
    peak = LAST_PEAK_MB[0]
    rows = reports["cdr"].rows_read
    # the next month: late records of the first, checked against what its delivery already loaded
    ingest_month(spark, cfg, "2024-02", sources=["subscriptions"])
    reports2, secs2 = timed(lambda: ingest_month(spark, cfg, "2024-02", sources=["cdr"]))
    folder = landing / "cdr" / "month=2024-01"
    files = [str(p) for p in sorted(folder.iterdir()) if p.name.endswith((".csv", ".csv.gz"))]
    # Spark's own plain copy of the same files: CSV (all strings) to Parquet, nothing else
    _, spark_copy = timed(
        lambda: (
            spark.read.option("header", True).csv(files).write.mode("overwrite").parquet(str(work / "copy"))
        )
    )
    con = duckdb_connect()
    con.execute("SET threads = 2")
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
        "peak_mb": peak,
        "spark_csv_to_parquet_s": round(spark_copy, 2),
        "duckdb_csv_to_parquet_s": round(duck, 2),
        "ratio_ingest_vs_spark_copy": round(secs / spark_copy, 2),
        "ratio_ingest_vs_duckdb": round(secs / duck, 2),
        "next_month_cdr_rows": reports2["cdr"].rows_read,
        "next_month_late_records": reports2["cdr"].late_records,
        "next_month_ingest_s": round(secs2, 2),
        "target_ratio_vs_spark_copy": 2.0,
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


def bench_features(spark, work: Path, landing: Path) -> dict:
    from features.build import select_cdr_window, summarize_cdr
    from features.social import compute_contact_pairs
    from pipelines.build_features import build_features_month

    cfg = load_config([], [f"lake.root={work / 'lake'}", f"landing.root={landing}"])
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
    report, t_build = timed(lambda: build_features_month(spark, cfg, month))
    peak = LAST_PEAK_MB[0]
    con = duckdb_connect()
    con.execute("SET threads = 2")
    _, t_duck = timed(
        lambda: con.execute(duckdb_feature_sql(cfg.table_path("cdr"), month, work / "duck_agg.parquet"))
    )
    return {
        "cdr_rows_in_window": cdr_rows,
        "subscribers": report.subscribers,
        "peak_mb": peak,
        "spark_cdr_aggregates_s": round(t_spark, 2),
        "build_features_s": round(t_build, 2),
        "duckdb_cdr_aggregates_s": round(t_duck, 2),
        "ratio_cdr_aggregates_vs_duckdb": round(t_spark / t_duck, 2),
        "ratio_build_features_vs_duckdb": round(t_build / t_duck, 2),
        "target_ratio": 3.0,
    }


def bench_train(spark, work: Path, landing: Path) -> dict:
    """Training as of 2024-05 (fit 01, validate 02, test 03) against one plain ``lightgbm.train``."""
    import lightgbm as lgb
    import numpy as np

    from models.family import _encode, _lgb_params
    from pipelines.build_features import build_features_month
    from pipelines.train import labelled_months, read_training_frame, train_month, training_window

    cfg = load_config([], [f"lake.root={work / 'lake'}", f"landing.root={landing}"])
    for month in ("2024-04", "2024-05"):  # the snapshots that close the label windows of 01..03
        ingest_month(spark, cfg, month, sources=["subscriptions"])
    for month in ("2024-01", "2024-02", "2024-03"):
        build_features_month(spark, cfg, month)
    lake = Lake(spark, cfg)
    # the whole job: read, fit, evaluate, log to MLflow, register (version 1, scored by bench_score)
    result, t_all = timed(lambda: train_month(spark, cfg, "2024-05"))
    peak = LAST_PEAK_MB[0]
    # the same job again: a month's training in steady state (the MLflow store exists, a champion to
    # evaluate for the gates, the libraries imported); the first also created the store
    _, t_steady = timed(lambda: train_month(spark, cfg, "2024-05"))
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

    cohort, cohort_v = family.cohorts(fit), family.cohorts(valid)
    xp = _encode(family.encoder, fit, family.spec.cohorts.names, cohort)
    xpv = _encode(family.encoder, valid, family.spec.cohorts.names, cohort_v)
    categorical = [*family.encoder.categorical, xp.shape[1] - 1]

    def same_models(early_stopping: bool) -> None:
        """The family's boosters by hand: a plain lightgbm.train on each one's own rows, early-stopped on its
        validation rows as the family does (``early_stopping``) or for the family's number of trees."""
        for name, fitted in family.boosters.items():
            rows = np.ones(len(fit), bool) if name == "pooled" else cohort == name
            rows_v = np.ones(len(valid), bool) if name == "pooled" else cohort_v == name
            data = lgb.Dataset(xp[rows], y[rows], categorical_feature=categorical)
            if early_stopping:
                lgb.train(
                    params,
                    data,
                    cfg.model.num_boost_round,
                    valid_sets=[lgb.Dataset(xpv[rows_v], yv[rows_v], reference=data)],
                    callbacks=[lgb.early_stopping(cfg.model.early_stopping_rounds, verbose=False)],
                )
            else:
                lgb.train(params, data, fitted.num_trees())

    _, t_same = timed(lambda: same_models(early_stopping=True))
    _, t_same_trees = timed(lambda: same_models(early_stopping=False))
    return {
        "fit_rows": result.rows["fit"],
        "peak_mb": peak,
        "valid_rows": result.rows["valid"],
        "features": len(family.features),
        "train_as_of_s": round(t_all, 2),
        "train_as_of_steady_s": round(t_steady, 2),
        "family_fit_s": round(result.seconds, 2),
        "plain_lightgbm_s": round(t_plain, 2),
        "plain_same_boosters_s": round(t_same, 2),
        "plain_same_trees_s": round(t_same_trees, 2),
        "plain_trees": booster.num_trees(),
        "family_trees": int(np.sum([b.num_trees() for b in family.boosters.values()])),
        "ratio_family_fit_vs_plain": round(result.seconds / t_plain, 2),
        "ratio_family_fit_vs_same_boosters": round(result.seconds / t_same, 2),
        "ratio_family_fit_vs_same_trees": round(result.seconds / t_same_trees, 2),
        "ratio_train_as_of_vs_plain": round(t_all / t_plain, 2),
        "ratio_train_steady_vs_plain": round(t_steady / t_plain, 2),
        "ratio_train_steady_vs_same_boosters": round(t_steady / t_same, 2),
        "test_auc_family": round(result.test_metrics["family"]["all"]["roc_auc"], 4),
    }


def bench_score(spark, work: Path, landing: Path) -> dict:
    """The scoring pass (``mapInArrow``) against the same work in one process, reasons apart, memory."""
    import pickle
    import uuid

    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from pipelines.core import delta
    from pipelines.core.arrow import write_staged
    from pipelines.score import (
        REASONS_SCHEMA,
        SCORED_SCHEMA,
        FamilyPayload,
        read_month_features,
        reason_batches,
        resolve_model,
        score_batches,
        score_files,
        score_frame,
        score_month,
        scoring_input,
    )

    cfg = load_config([], [f"lake.root={work / 'lake'}", f"landing.root={landing}"])
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

    def one_process(files: list[str] = files) -> None:
        table = ds.dataset(files, format="parquet").to_table(columns=features.columns)
        doubles = pa.schema(
            [pa.field(f.name, pa.float64()) if pa.types.is_decimal(f.type) else f for f in table.schema]
        )
        frame = table.cast(doubles).to_pandas()
        scored = score_frame(family, frame, cfg.score)
        pq.write_table(pa.Table.from_pandas(scored, preserve_index=False), out / "one.parquet")

    out.mkdir(exist_ok=True)
    one_process()  # imports and the first read done, as for the Spark side's warm-up below
    payload = FamilyPayload(uuid.uuid4().hex, spark.sparkContext.broadcast(pickle.dumps(family)))

    def spark_pass(source) -> None:
        """The job's pass: tasks reading the feature files (a list), or rows through Spark (a frame), and
        writing the scored rows with pyarrow (the job then ranks them)."""
        with delta.scratch_folder(str(out), "spark") as target:
            if isinstance(source, list):
                score_files(spark, source, features.columns, payload, cfg.score, target)
            else:
                fn = score_batches(payload, cfg.score)
                write_staged(scoring_input(spark, source), fn, SCORED_SCHEMA, target)

    # start every Python worker once (one per task slot: a pass over one file started one of the two),
    # as a scheduled job's earlier stages do; the one-process reference has its imports done too
    spark_pass(files)
    spark_pass(features.limit(1000))
    # the two sides interleaved (one, Spark, one, Spark, ...), each its best of five: a pass of a second
    # swings by half between timings, and the machine's state drifts between a block of one side's
    # passes and the other's (the first timed Spark pass had been the slowest in every run)
    t_one, t_spark = interleaved_best(5, one_process, lambda: spark_pass(files))
    with PeakMemory(workers_only=True, every=0.05) as mem_1x:  # apart: sampling every 50 ms costs CPU
        spark_pass(files)
    # the same pass with Spark's Arrow batches at 100,000 rows (the file pass streams batches of
    # SCORE_BATCH_ROWS = 100,000 whatever this says; the rows-through-Spark pass below follows it)
    batch_conf = "spark.sql.execution.arrow.maxRecordsPerBatch"
    default_batch = spark.conf.get(batch_conf)
    spark.conf.set(batch_conf, "100000")
    try:
        (t_spark_big,) = interleaved_best(3, lambda: spark_pass(files))
    finally:
        spark.conf.set(batch_conf, default_batch)
    # the rows through Spark (the path for tables only the native Delta connector reads)
    _, t_spark_rows = timed(lambda: spark_pass(features))
    with PeakMemory(workers_only=True, every=0.05) as mem_2x:
        _, t_spark_2x = timed(lambda: spark_pass(files + files))
    # ten times the month (the files listed ten times): Spark's fixed cost per job spread over 1M rows
    _, t_one_10x = timed(lambda: one_process(files * 10))
    _, t_spark_10x = timed(lambda: spark_pass(files * 10))
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
    peak = LAST_PEAK_MB[0]
    return {
        "subscribers": subscribers,
        "features": len(family.features),
        "one_process_rows_per_s": round(subscribers / t_one),
        "spark_pass_rows_per_s": round(subscribers / t_spark),
        "ratio_spark_vs_one_process": round(t_one / t_spark, 2),
        "spark_pass_100k_batches_rows_per_s": round(subscribers / t_spark_big),
        "ratio_spark_100k_batches_vs_one_process": round(t_one / t_spark_big, 2),
        "spark_rows_pass_rows_per_s": round(subscribers / t_spark_rows),
        "ratio_spark_rows_vs_one_process": round(t_one / t_spark_rows, 2),
        "spark_pass_2x_rows_s": round(t_spark_2x, 2),
        "one_process_10x_rows_s": round(t_one_10x, 2),
        "spark_pass_10x_rows_s": round(t_spark_10x, 2),
        "ratio_spark_vs_one_process_10x": round(t_one_10x / t_spark_10x, 2),
        "python_workers_peak_mb_1x": round(mem_1x.peak / 2**20),
        "python_workers_peak_mb_2x": round(mem_2x.peak / 2**20),
        "reasons_rows_per_s": round(max(1, subscribers // 10) / t_reasons),
        "score_job_s": round(t_job, 2),
        "score_job_with_reasons": report.with_reasons,
        "score_job_peak_mb": peak,
    }


def bench_offers(spark, work: Path, landing: Path) -> dict:
    """match_offers on the scored month: the job (exact where the candidates fit), the optimum against
    greedy, and the Lagrangian path in Spark against the exact solve of the same candidates."""
    from pipelines.match_offers import match_offers_month

    cfg = load_config([], [f"lake.root={work / 'lake'}", f"landing.root={landing}"])
    month = "2024-03"
    report, t_job = timed(lambda: match_offers_month(spark, cfg, month))
    peak = LAST_PEAK_MB[0]
    lagrangian_cfg = load_config(
        [], [f"lake.root={work / 'lake'}", f"landing.root={landing}", "offers.exact_max_candidates=0"]
    )
    prices, t_prices = timed(lambda: match_offers_month(spark, lagrangian_cfg, month))
    lines = sum(report.by_status.values())
    return {
        "lines": lines,
        "candidates": report.candidates,
        "method": report.method,
        "match_job_s": round(t_job, 2),
        "us_per_line": round(t_job / max(lines, 1) * 1e6, 1),
        "peak_mb": peak,
        "optimised_value": round(report.optimised_value, 2),
        "greedy_value": None if report.greedy_value is None else round(report.greedy_value, 2),
        "lagrangian_job_s": round(t_prices, 2),
        "lagrangian_value": round(prices.optimised_value, 2),
        "lagrangian_bound": None if prices.bound is None else round(prices.bound, 2),
    }


def bench_monthly(spark, work: Path, landing: Path, month: str) -> dict:
    """The whole monthly run of ``month`` (ingest to offers; training is not due), per subscriber."""
    from pipelines.monthly import run_monthly

    cfg = load_config([], [f"lake.root={work / 'lake'}", f"landing.root={landing}"])
    for m in months_between("2024-04", add_months(month, -1)):  # the history the feature build reads
        ingest_month(spark, cfg, m)
    outcomes, secs = timed(lambda: run_monthly(spark, cfg, [month]))
    subscribers = Lake(spark, cfg).read("features_monthly").where(F.col("month") == month).count()
    return {
        "month": month,
        "subscribers": subscribers,
        "seconds": round(secs, 2),
        "ms_per_subscriber": round(secs / subscribers * 1e3, 3),
        "peak_mb": LAST_PEAK_MB[0],
        "stages": {o.stage: round(o.seconds, 2) for o in outcomes if o.status == "ran"},
    }


# (stage, result key, ours, reference name, reference, rows, peak MB): keys into that stage's results,
# a callable for derived values, None where there is nothing to pair
PAIRS = (
    ("delta write", "delta_layer", "delta_write_s", "Spark Parquet write", "parquet_write_s", "rows", None),
    ("delta read", "delta_layer", "delta_read_s", "Spark Parquet read", "parquet_read_s", "rows", None),
    ("generator (3 months)", "generator", "seconds", "-", None, "cdr_rows", "peak_mb"),
    ("ingest, one CDR month", "ingest", "ingest_s", "Spark CSV->Parquet copy", "spark_csv_to_parquet_s",
     "cdr_rows", "peak_mb"),
    ("ingest, one CDR month", "ingest", "ingest_s", "DuckDB CSV->Parquet", "duckdb_csv_to_parquet_s",
     "cdr_rows", "peak_mb"),
    ("feature build (month)", "features", "build_features_s", "DuckDB CDR aggregates",
     "duckdb_cdr_aggregates_s", "cdr_rows_in_window", "peak_mb"),
    ("train job (first: creates the MLflow store)", "train", "train_as_of_s", "plain lightgbm.train",
     "plain_lightgbm_s", "fit_rows", "peak_mb"),
    ("train job (steady)", "train", "train_as_of_steady_s", "plain lightgbm.train", "plain_lightgbm_s",
     "fit_rows", None),
    ("train job (steady)", "train", "train_as_of_steady_s", "same boosters by hand", "plain_same_boosters_s",
     "fit_rows", None),
    ("fit_family", "train", "family_fit_s", "same boosters by hand", "plain_same_boosters_s", "fit_rows",
     None),
    ("scoring pass", "score", lambda c: c["subscribers"] / c["spark_pass_rows_per_s"], "one process",
     lambda c: c["subscribers"] / c["one_process_rows_per_s"], "subscribers", "python_workers_peak_mb_1x"),
    ("scoring pass x10", "score", "spark_pass_10x_rows_s", "one process", "one_process_10x_rows_s",
     lambda c: 10 * c["subscribers"], None),
    ("score job", "score", "score_job_s", "-", None, "subscribers", "score_job_peak_mb"),
    ("match_offers", "offers", "match_job_s", "-", None, "lines", "peak_mb"),
    ("match_offers (Lagrangian)", "offers", "lagrangian_job_s", "exact job", "match_job_s", "lines", None),
    ("monthly run", "monthly", "seconds", "-", None, "subscribers", "peak_mb"),
)  # fmt: skip


def table(results: dict) -> list[tuple]:
    """(stage, ours s, reference, reference s, ratio, rows/s, peak MB) per measured pair."""

    def value(r: dict, key):
        return None if key is None else key(r) if callable(key) else r[key]

    rows: list[tuple] = []
    for stage, name, ours_key, ref_name, ref_key, rows_key, peak_key in PAIRS:
        if name not in results:
            continue
        r = results[name]
        ours, ref, n = value(r, ours_key), value(r, ref_key), value(r, rows_key)
        ratio = round(ours / ref, 2) if ref else None
        rate = round(n / ours) if n and ours else None
        ref_s = None if ref is None else round(ref, 2)
        rows.append((stage, round(ours, 2), ref_name, ref_s, ratio, rate, value(r, peak_key)))
    return rows


def print_table(rows: list[tuple]) -> None:
    head = ("stage", "ours s", "reference", "ref s", "ratio", "rows/s", "peak MB")
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    for line in (head, *rows):
        print("  ".join(str("-" if v is None else v).ljust(w) for v, w in zip(line, widths, strict=True)))


def machine() -> dict:
    import platform

    import psutil
    import pyspark

    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "java": java[0] if java else "unknown",
    }


def run_size(spark, work: Path, subscribers: int, months: int, *, extras: bool = True) -> dict:
    """Every stage at one size (``extras``: also the Delta layer and the generator)."""
    landing = cached_landing(subscribers, months)
    results: dict = {"subscribers": subscribers, "months": months}
    if extras:
        results["delta_layer"] = bench_delta(spark, work, 5_000_000)
        results["generator"] = bench_generator(work, subscribers)
    for name, fn in (
        ("ingest", bench_ingest),
        ("features", bench_features),
        ("train", bench_train),
        ("score", bench_score),
        ("offers", bench_offers),
    ):
        print(f"bench {subscribers:,}: {name} ...", flush=True)
        results[name] = fn(spark, work, landing)
    print(f"bench {subscribers:,}: monthly ...", flush=True)
    results["monthly"] = bench_monthly(spark, work, landing, f"2024-{months:02d}")
    return results


STEADY = ("2024-04", "2024-05", "2024-06")  # months whose ingest and features read a full history


def scaling_run(spark, work: Path, subscribers: int, months: int = 6) -> dict:
    """The monthly run over ``months`` generated months at one size (training becomes due in the fifth,
    the first whose churn windows of three months have closed) and each stage's seconds per month."""
    from pipelines.monthly import run_monthly

    landing = cached_landing(subscribers, months)
    cfg = load_config([], [f"lake.root={work / 'lake'}", f"landing.root={landing}"])
    outcomes, secs = timed(lambda: run_monthly(spark, cfg, months_between("2024-01", f"2024-{months:02d}")))
    per_month: dict[str, dict[str, float]] = {}
    for o in outcomes:
        if o.status == "ran":
            per_month.setdefault(o.month, {})[o.stage] = round(o.seconds, 2)
    peak = LAST_PEAK_MB[0]
    return {"subscribers": subscribers, "seconds": round(secs, 2), "peak_mb": peak, "stages": per_month}


def _stage_seconds(run: dict, stage: str) -> float:
    """A stage's typical seconds in one scaling run: the mean over the steady months where it ran."""
    values = [run["stages"][m][stage] for m in STEADY if stage in run["stages"].get(m, {})]
    return round(sum(values) / len(values), 2)


def scaling(
    spark, sizes=(25_000, 50_000, 100_000, 200_000), months: int = 6, reuse: Path | None = None
) -> dict:
    """Each stage at growing sizes, and a plot of time against size (``bench/results/scaling.png``).

    ``reuse``: an earlier scaling run's JSON whose other sizes join the plot (a size takes minutes to an
    hour: after a change that only touches the largest, rerun that one); the output says which they are.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    earlier = json.loads(reuse.read_text())["runs"] if reuse else {}
    runs = {int(n): r for n, r in earlier.items() if int(n) not in sizes}
    reused = {n: str(reuse) for n in runs}
    for n in sizes:
        print(f"scaling {n:,} subscribers: {months} months ...", flush=True)
        work = Path(tempfile.mkdtemp(prefix=f"churn-scaling-{n}-"))
        try:
            runs[n] = scaling_run(spark, work, n, months)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(json.dumps(runs[n]["stages"]), flush=True)
    sizes = tuple(sorted(runs))
    labels = {
        "ingest": "ingest (month)",
        "build_features": "feature build",
        "train": "train job",
        "score": "score job",
        "evaluate": "evaluate",
        "match_offers": "match_offers",
    }
    seconds = {label: [_stage_seconds(runs[n], stage) for n in sizes] for stage, label in labels.items()}
    # one whole month with training due (the fifth) and one without (the sixth)
    seconds["month with training"] = [round(sum(runs[n]["stages"]["2024-05"].values()), 2) for n in sizes]
    seconds["month without"] = [round(sum(runs[n]["stages"]["2024-06"].values()), 2) for n in sizes]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, ys in seconds.items():
        ax = axes[0] if name.startswith("month") else axes[1]
        ax.plot(sizes, ys, marker="o", label=name)
    for ax, ref in ((axes[0], seconds["month with training"]), (axes[1], seconds["ingest (month)"])):
        ax.plot(sizes, [ref[-1] * n / sizes[-1] for n in sizes], "k:", label="linear through the largest")
        ax.set(xlabel="subscribers", ylabel="seconds")
        ax.legend(fontsize=8)
    axes[0].set_title("One monthly run against base size (2 cores)")
    axes[1].set_title("Each stage")
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    fig.savefig(RESULTS / "scaling.png", dpi=110)
    # growth from the smallest to the largest size, against the size's growth (1.0: linear; below 1: a
    # fixed cost per run that the larger sizes spread)
    growth = {k: round((v[-1] / v[0]) / (sizes[-1] / sizes[0]), 2) for k, v in seconds.items()}
    return {
        "sizes": list(sizes),
        "seconds": seconds,
        "growth_vs_linear": growth,
        "reused": reused,
        "runs": runs,
    }


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default=os.environ.get("SIZE", "M"))
    parser.add_argument("--scaling", action="store_true", help="the scaling run (25k..200k) and its plot")
    parser.add_argument(
        "--sizes", default="25000,50000,100000,200000", help="the scaling runs' subscribers, comma-separated"
    )
    parser.add_argument("--reuse", type=Path, help="an earlier scaling JSON: its other sizes join the plot")
    args = parser.parse_args()
    configure_logging()
    cfg = load_config([Path(__file__).resolve().parent.parent / "conf" / "local.yml"])
    spark = get_spark(cfg)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M")
    if args.scaling:
        sizes = tuple(int(n) for n in args.sizes.split(","))
        out = {"machine": machine(), **scaling(spark, sizes, reuse=args.reuse)}
        (RESULTS / f"scaling-{stamp}.json").write_text(json.dumps(out, indent=2))
        print(json.dumps({k: out[k] for k in ("sizes", "seconds", "growth_vs_linear")}, indent=2))
        print(f"plot: {RESULTS / 'scaling.png'}")
        return 0
    subscribers, months = SIZES[args.size]
    work = Path(tempfile.mkdtemp(prefix="churn-bench-"))
    try:
        results = {"size": args.size, "machine": machine(), **run_size(spark, work, subscribers, months)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["table"] = table(results)
    (RESULTS / f"bench-{args.size}-{stamp}.json").write_text(json.dumps(results, indent=2))
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    print()
    print_table(results["table"])
    print(f"\nresults: {RESULTS / f'bench-{args.size}-{stamp}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
