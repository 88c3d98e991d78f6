"""A pickled family over feature rows in Spark tasks: broadcast once, unpickled once per Python worker,
applied batch by batch with ``mapInArrow`` (:func:`models.scoring.score_frame` and
:func:`~models.scoring.reason_frame`), one LightGBM thread per task since Spark runs a task per core.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from models.family import ModelFamily
from models.params import ScoreParams
from models.scoring import REASONS_SCHEMA, SCORED_SCHEMA, reason_frame, score_frame
from pipelines.core.arrow import BatchFn, file_batches, pandas_batches, write_staged

# rows per batch of the scoring tasks (a task holds one): larger than Spark's 10,000-row Arrow batches, so
# the per-batch cost (encoding, one LightGBM call per cohort) is paid less often
SCORE_BATCH_ROWS = 100_000
# the family of the current scoring run in this Python worker, by its payload key
_LOADED: dict[str, ModelFamily] = {}


@dataclass(frozen=True)
class FamilyPayload:
    """The pickled family as a broadcast variable and a key unique to this scoring run."""

    key: str
    broadcast: Any


def _family(payload: FamilyPayload) -> ModelFamily:
    """The broadcast family, unpickled once per Python worker (workers are reused across tasks)."""
    if payload.key not in _LOADED:
        family = pickle.loads(payload.broadcast.value)
        # one LightGBM thread per task: Spark runs a task per core
        family.spec = replace(family.spec, params=family.spec.params.model_copy(update={"num_threads": 1}))
        _LOADED.clear()
        _LOADED[payload.key] = family
    return _LOADED[payload.key]


def score_batches(payload: FamilyPayload, params: ScoreParams, *, trend_months: int) -> BatchFn:
    """The scoring pass: :func:`score_frame` on each batch, the family loaded once per task."""
    return pandas_batches(SCORED_SCHEMA, partial(_score_fn, payload, params, trend_months))


def reason_batches(payload: FamilyPayload, params: ScoreParams) -> BatchFn:
    """The reasons pass: :func:`reason_frame` on each batch (the actionable rows only)."""
    return pandas_batches(REASONS_SCHEMA, lambda: partial(reason_frame, _family(payload), params=params))


def score_files(
    spark: SparkSession,
    files: list[str],
    columns: list[str],
    payload: FamilyPayload,
    params: ScoreParams,
    target: str,
    *,
    trend_months: int,
) -> DataFrame:
    """:func:`score_frame` over the ``columns`` of Parquet ``files``, one file per task, read by the task;
    the scored rows written by the tasks with pyarrow into ``target`` and read back from there."""
    batch_rows = max(
        SCORE_BATCH_ROWS, int(spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch", "0"))
    )
    # one task per file: a range of the files' indexes (a parallelized list of paths costs a Python pass
    # of its own in every task)
    units = spark.range(len(files), numPartitions=max(len(files), 1))
    make = partial(_score_fn, payload, params, trend_months)
    return write_staged(
        units, file_batches(SCORED_SCHEMA, files, columns, make, batch_rows), SCORED_SCHEMA, target
    )


def _score_fn(
    payload: FamilyPayload, params: ScoreParams, trend_months: int
) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return partial(score_frame, _family(payload), params=params, trend_months=trend_months)


def reasons_input(spark: SparkSession, rows: DataFrame) -> DataFrame:
    """The actionable rows dealt round-robin to one partition per core: a row's reasons (its SHAP values)
    cost the same whatever the row, and the actionable rows bunch in some of the month's files."""
    return rows.repartition(spark.sparkContext.defaultParallelism)


def scoring_input(spark: SparkSession, features: DataFrame) -> DataFrame:
    """At least one partition per core (a month is often one or two files; a task scores with one thread)."""
    parallelism = spark.sparkContext.defaultParallelism
    if features.rdd.getNumPartitions() < parallelism:
        return features.repartition(parallelism)
    return features
