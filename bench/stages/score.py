"""Scoring: the ``mapInArrow`` scoring pass against the same work in one process (pyarrow read, score,
pyarrow write), the two sides interleaved and each its best of five passes; the Python workers' memory at
one and two times the subscribers; the SHAP reasons on a 10 % share; and the whole score job."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.harness import SCORE_MONTH, PeakMemory, RunContext, interleaved_best, timed
from bench.record import OPTIONAL, Record, TableRow, compare
from pipelines.core.lake import Lake

MODEL_VERSION = "1"  # the train stage's first registration


@dataclass(frozen=True, kw_only=True)
class ScoreResult(Record):
    subscribers: int
    features: int
    one_process_rows_per_s: int
    spark_pass_rows_per_s: int
    ratio_spark_vs_one_process: float
    spark_pass_100k_batches_rows_per_s: int
    ratio_spark_100k_batches_vs_one_process: float
    spark_rows_pass_rows_per_s: int | None = field(default=None, metadata=OPTIONAL)
    ratio_spark_rows_vs_one_process: float | None = field(default=None, metadata=OPTIONAL)
    spark_pass_2x_rows_s: float
    one_process_10x_rows_s: float | None = field(default=None, metadata=OPTIONAL)
    spark_pass_10x_rows_s: float | None = field(default=None, metadata=OPTIONAL)
    ratio_spark_vs_one_process_10x: float | None = field(default=None, metadata=OPTIONAL)
    python_workers_peak_mb_1x: int
    python_workers_peak_mb_2x: int
    reasons_rows_per_s: int
    score_job_s: float
    score_job_with_reasons: int
    score_job_peak_mb: int

    def table_rows(self) -> list[TableRow]:
        n = self.subscribers
        pass_s, one_s = n / self.spark_pass_rows_per_s, n / self.one_process_rows_per_s
        rows = [
            compare(
                "scoring pass", pass_s, "one process", one_s, rows=n, peak_mb=self.python_workers_peak_mb_1x
            )
        ]
        if self.spark_pass_10x_rows_s is not None:
            x10, one_x10 = self.spark_pass_10x_rows_s, self.one_process_10x_rows_s
            rows.append(compare("scoring pass x10", x10, "one process", one_x10, rows=10 * n))
        rows.append(compare("score job", self.score_job_s, rows=n, peak_mb=self.score_job_peak_mb))
        return rows


def run(ctx: RunContext) -> ScoreResult:
    import pickle
    import uuid

    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq
    from pyspark.sql import functions as F

    from models.scoring import REASONS_SCHEMA, SCORED_SCHEMA, score_frame
    from pipelines.core import delta
    from pipelines.core.arrow import write_staged
    from pipelines.core.registry import resolve_model
    from pipelines.score import read_month_features, score_month
    from pipelines.score.batch import (
        FamilyPayload,
        reason_batches,
        reasons_input,
        score_batches,
        score_files,
        scoring_input,
    )

    spark, month = ctx.spark, SCORE_MONTH
    cfg = ctx.config()
    lake = Lake(spark, cfg)
    model = resolve_model(cfg, month, MODEL_VERSION)
    family = model.family
    features = read_month_features(lake, month, family, model.version)
    subscribers = features.count()
    files = [
        f.removeprefix("file://")
        for f in lake.read("features_monthly").inputFiles()
        if f"/month={month}/" in f  # inputFiles() does not prune partitions
    ]
    out = ctx.work / "score_out"

    def one_process(files: list[str] = files) -> None:
        table = ds.dataset(files, format="parquet").to_table(columns=features.columns)
        doubles = pa.schema(
            [pa.field(f.name, pa.float64()) if pa.types.is_decimal(f.type) else f for f in table.schema]
        )
        frame = table.cast(doubles).to_pandas()
        scored = score_frame(family, frame, cfg.score, trend_months=cfg.features.trend_months)
        pq.write_table(pa.Table.from_pandas(scored, preserve_index=False), out / "one.parquet")

    out.mkdir(exist_ok=True)
    one_process()  # imports and the first read done, as for the Spark side's warm-up below
    payload = FamilyPayload(uuid.uuid4().hex, spark.sparkContext.broadcast(pickle.dumps(family)))

    def spark_pass(source: Any) -> None:
        """The job's pass: tasks reading the feature files (a list), or rows through Spark (a frame), and
        writing the scored rows with pyarrow (the job then ranks them)."""
        with delta.scratch_folder(str(out), "spark") as target:
            if isinstance(source, list):
                score_files(
                    spark,
                    source,
                    features.columns,
                    payload,
                    cfg.score,
                    target,
                    trend_months=cfg.features.trend_months,
                )
            else:
                fn = score_batches(payload, cfg.score, trend_months=cfg.features.trend_months)
                write_staged(scoring_input(spark, source), fn, SCORED_SCHEMA, target)

    # start every Python worker once (one per task slot: a pass over one file starts only one of them),
    # as a scheduled job's earlier stages do; the one-process reference has its imports done too
    spark_pass(files)
    spark_pass(features.limit(1000))
    # the two sides interleaved (one, Spark, one, Spark, ...), each its best of five: a single pass is
    # short and noisy, and the machine's state drifts between a block of one side's passes and the other's
    t_one, t_spark = interleaved_best(5, one_process, lambda: spark_pass(files))
    with PeakMemory(workers_only=True, every=0.05) as mem_1x:  # apart: sampling every 50 ms costs CPU
        spark_pass(files)
    # the same pass with Spark's Arrow batches at 100,000 rows (the file pass streams batches of
    # SCORE_BATCH_ROWS whatever this says; the rows-through-Spark pass below follows it)
    batch_conf = "spark.sql.execution.arrow.maxRecordsPerBatch"
    default_batch = spark.conf.get(batch_conf)
    spark.conf.set(batch_conf, "100000")
    try:
        (t_spark_big,) = interleaved_best(3, lambda: spark_pass(files))
    finally:
        spark.conf.set(batch_conf, default_batch)
    # the rows through Spark (the path for tables only the native Delta connector reads)
    t_spark_rows = timed(lambda: spark_pass(features)).seconds
    with PeakMemory(workers_only=True, every=0.05) as mem_2x:
        t_spark_2x = timed(lambda: spark_pass(files + files)).seconds
    # ten times the month (the files listed ten times): Spark's fixed cost per job spread over more rows
    t_one_10x = timed(lambda: one_process(files * 10)).seconds
    t_spark_10x = timed(lambda: spark_pass(files * 10)).seconds
    top = features.orderBy(F.rand(1)).limit(max(1, subscribers // 10))  # a 10 % actionable share
    t_reasons = timed(
        lambda: (
            reasons_input(spark, top)
            .mapInArrow(reason_batches(payload, cfg.score), REASONS_SCHEMA)
            .write.mode("overwrite")
            .parquet(str(out / "reasons"))
        )
    ).seconds
    payload.broadcast.destroy()
    job = timed(lambda: score_month(spark, cfg, month, model_version=model.version))
    return ScoreResult(
        subscribers=subscribers,
        features=len(family.features),
        one_process_rows_per_s=round(subscribers / t_one),
        spark_pass_rows_per_s=round(subscribers / t_spark),
        ratio_spark_vs_one_process=round(t_one / t_spark, 2),
        spark_pass_100k_batches_rows_per_s=round(subscribers / t_spark_big),
        ratio_spark_100k_batches_vs_one_process=round(t_one / t_spark_big, 2),
        spark_rows_pass_rows_per_s=round(subscribers / t_spark_rows),
        ratio_spark_rows_vs_one_process=round(t_one / t_spark_rows, 2),
        spark_pass_2x_rows_s=round(t_spark_2x, 2),
        one_process_10x_rows_s=round(t_one_10x, 2),
        spark_pass_10x_rows_s=round(t_spark_10x, 2),
        ratio_spark_vs_one_process_10x=round(t_one_10x / t_spark_10x, 2),
        python_workers_peak_mb_1x=mem_1x.mb,
        python_workers_peak_mb_2x=mem_2x.mb,
        reasons_rows_per_s=round(max(1, subscribers // 10) / t_reasons),
        score_job_s=round(job.seconds, 2),
        score_job_with_reasons=job.value.with_reasons,
        score_job_peak_mb=job.peak_mb,
    )
