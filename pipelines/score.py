"""Stage: score every subscriber of a run month with the registered family; the warning list and its views.

``score_month(spark, cfg, M)`` resolves the model (``@champion``, or ``--model-version N``), checks the
feature partition of M, then

1. scores in Spark with ``mapInArrow``: the family is broadcast once and unpickled once per Python
   worker; each Arrow batch gets the calibrated probability, the raw score, band, value tier, strategy,
   usage segment and the drift bins of the monitored columns; the tasks write these rows themselves
   with pyarrow to a scratch folder (Spark's Parquet writer cost more than the scoring) and report only
   their file names to the driver, never rows;
2. ranks within cohort (``risk_rank``, ``risk_decile``) and marks the rows that can be acted on (band at
   or above ``score.reasons_min_band``, the top ``score.reasons_top_share`` of each cohort, every hard
   warning);
3. computes SHAP reasons and the churn type for those rows only (another ``mapInArrow``);
4. replaces the ``score_month=M`` partitions of ``warning_list``, ``customer_risk`` and
   ``score_monitoring``.

Time: the model serving M must have been trained as of M or earlier. Without ``--model-version`` the
champion serves when it was; otherwise the newest version ever promoted that was trained by M does, so
rescoring a past month never uses labels that matured after it.
"""

from __future__ import annotations

import logging
import pickle
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from features.errors import MissingColumnsError
from models.family import ModelFamily
from models.params import RISK_BANDS, ScoreParams
from models.scoring import risk_band, strategy, top_reasons, value_tier
from pipelines.core import delta
from pipelines.core.arrow import BatchFn, file_batches, pandas_batches, write_staged
from pipelines.core.config import Config
from pipelines.core.errors import InputNotReadyError
from pipelines.core.lake import Lake, decimals_as_double
from pipelines.core.manifest import recorded_run

log = logging.getLogger(__name__)

# rows per batch of the scoring tasks (a task holds one): 8-15 % faster than Spark's 10,000-row batches
SCORE_BATCH_ROWS = 100_000
# feature-table columns carried onto the warning list (besides the model's own features)
CARRIED = ("subscriber_id", "customer_id", "household_id", "lifecycle_stage", "hard_warning")
SCORED_SCHEMA = (
    "subscriber_id string, customer_id string, household_id string, cohort string, tenure_months int, "
    "lifecycle_stage string, hard_warning boolean, arpu_3m double, churn_probability double, "
    "raw_score double, risk_band string, value_tier string, strategy string, usage_segment string, "
    "drift_bins array<int>"
)
REASONS_SCHEMA = (
    "subscriber_id string, reasons array<struct<feature:string, contribution:double, family:string>>, "
    "churn_type string"
)
MONITORING_SCHEMA = (
    "score_month string, kind string, cohort string, name string, value double, threshold double, "
    "warning boolean, reference string, model_name string, model_version string"
)


class ModelNotFoundError(LookupError):
    """No registered model can serve the month (no champion, an unknown version, or none trained by then)."""


@dataclass
class ResolvedModel:
    name: str
    version: str
    run_id: str
    trained_as_of: str | None
    family: ModelFamily


@dataclass
class ScoreReport:
    month: str
    model: str
    version: str
    subscribers: int
    with_reasons: int
    bands: dict[str, int]
    hard_warnings: int
    drift_warnings: list[str] = field(default_factory=list)


def _run_tags(client: Any, run_id: str) -> dict[str, str]:
    try:
        return dict(client.get_run(run_id).data.tags)
    except Exception:  # a version logged outside this pipeline has no run here
        return {}


def resolve_model(cfg: Config, month: str, version: str | None = None) -> ResolvedModel:
    """The model that scores ``month``: ``version`` if given, else the champion trained by ``month``."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from pipelines.core.tracking import CHAMPION, alias_version, configure_mlflow

    client = configure_mlflow(cfg)
    name = cfg.train.registered_model
    if version is not None:
        try:
            mv = client.get_model_version(name, str(version))
        except MlflowException:
            raise ModelNotFoundError(
                f"{name} has no version {version} in {cfg.mlflow_tracking_uri}"
            ) from None
    else:
        champion = alias_version(name, CHAMPION)
        if champion is None:
            raise ModelNotFoundError(
                f"no {name}@champion in {cfg.mlflow_tracking_uri}: train first (jobs/train.py --month M) "
                "or pass --model-version N"
            )
        mv = client.get_model_version(name, champion)
        trained = _run_tags(client, mv.run_id).get("run_month")
        if trained and trained > month:
            older = []
            for candidate in client.search_model_versions(f"name='{name}'"):
                tags = _run_tags(client, candidate.run_id)
                if tags.get("promoted") == "True" and tags.get("run_month", "9999-99") <= month:
                    older.append(candidate)
            if not older:
                raise ModelNotFoundError(
                    f"{name}@champion (version {mv.version}) was trained as of {trained}, after {month}, and "
                    f"no version trained by {month} was ever champion: pass --model-version N to rescore "
                    "with a later model on purpose"
                )
            mv = max(older, key=lambda v: int(v.version))
            log.info(
                "score %s: champion trained as of %s is later; using version %s", month, trained, mv.version
            )
    model = mlflow.pyfunc.load_model(f"models:/{name}/{mv.version}")
    family = model.unwrap_python_model().family
    tags = _run_tags(client, mv.run_id)
    return ResolvedModel(name, str(mv.version), mv.run_id or "", tags.get("run_month"), family)


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


def score_batches(payload: FamilyPayload, params: ScoreParams) -> BatchFn:
    """The scoring pass: :func:`score_frame` on each batch, the family loaded once per task."""
    return pandas_batches(SCORED_SCHEMA, partial(_score_fn, payload, params))


def reason_batches(payload: FamilyPayload, params: ScoreParams) -> BatchFn:
    """The reasons pass: :func:`reason_frame` on each batch (the actionable rows only)."""
    return pandas_batches(REASONS_SCHEMA, lambda: partial(reason_frame, _family(payload), params=params))


def reason_frame(family: ModelFamily, frame: pd.DataFrame, params: ScoreParams) -> pd.DataFrame:
    """SHAP reasons and churn type of each row (pure pandas)."""
    contrib, names = family.contributions(frame)
    reasons, churn_type = top_reasons(contrib, names[:-1], params)
    return pd.DataFrame(
        {"subscriber_id": frame["subscriber_id"].to_numpy(), "reasons": reasons, "churn_type": churn_type}
    )


def score_frame(family: ModelFamily, frame: pd.DataFrame, params: ScoreParams) -> pd.DataFrame:
    """Score one batch of feature rows (pure pandas: the Spark pass applies it batch by batch)."""
    cohort, raw, proba, monitored = family.score(frame)
    arpu = pd.Series(np.nan, index=frame.index)
    for column in ("arpu_avg_3m", "monthly_fee"):  # no bill yet: the plan fee is what the line brings
        if column in frame.columns:
            arpu = arpu.fillna(pd.to_numeric(frame[column], errors="coerce"))
    arpu_3m = arpu.to_numpy(dtype=float)
    band, tier = risk_band(proba, params), value_tier(arpu_3m, params)
    segments = family.segments.assign(frame) if family.segments is not None else np.full(len(frame), None)
    if family.drift is not None:
        bins = np.column_stack([family.drift.bins(c, monitored[c]) for c in family.drift.columns])
        drift_bins = list(bins)
    else:
        drift_bins = [[] for _ in range(len(frame))]
    hard = frame["hard_warning"] if "hard_warning" in frame.columns else pd.Series(False, index=frame.index)
    return pd.DataFrame(
        {
            "subscriber_id": frame["subscriber_id"].to_numpy(),
            "customer_id": frame.get("customer_id"),
            "household_id": frame.get("household_id"),
            "cohort": cohort,
            "tenure_months": pd.to_numeric(frame[family.spec.tenure], errors="coerce").astype("Int32"),
            "lifecycle_stage": frame.get("lifecycle_stage"),
            "hard_warning": hard.fillna(False).astype(bool).to_numpy(),
            "arpu_3m": arpu_3m,
            "churn_probability": proba,
            "raw_score": raw,
            "risk_band": band,
            "value_tier": tier,
            "strategy": strategy(tier, band, params),
            "usage_segment": segments,
            "drift_bins": drift_bins,
        }
    )


def read_month_features(lake: Lake, month: str, family: ModelFamily, version: str) -> DataFrame:
    """The feature rows of ``month`` with the columns the model needs, decimals as doubles."""
    if not lake.exists("features_monthly") or (month,) not in lake.partition_values(
        "features_monthly", "month"
    ):
        raise InputNotReadyError(
            f"score {month}: no features for {month} (run jobs/build_features.py --month {month})"
        )
    features = lake.read("features_monthly").where(F.col("month") == month)
    segment_columns = []
    if family.segments is not None:
        from models.segments import profile_columns

        segment_columns = profile_columns()
    need = [*dict.fromkeys([*family.features, family.spec.tenure, "subscriber_id"])]
    missing = [c for c in need if c not in features.columns]
    if missing:
        raise MissingColumnsError(
            missing, f"features_monthly for {month} (model version {version} needs them)"
        )
    wanted = [*CARRIED, "arpu_avg_3m", "monthly_fee", *need, *drift_feature_columns(family), *segment_columns]
    present = [c for c in dict.fromkeys(wanted) if c in features.columns]
    return decimals_as_double(features.select(*present))


def scored_rows(
    spark: SparkSession,
    lake: Lake,
    month: str,
    version: int | None,
    features: DataFrame,
    payload: FamilyPayload,
    params: ScoreParams,
    target: str,
) -> DataFrame:
    """The scoring pass over ``month`` of ``features_monthly`` at ``version`` (``features``: the same rows,
    :func:`read_month_features`), its rows written to the scratch folder ``target`` and read back.

    Each task reads one of the month's feature files itself with pyarrow and scores it: only the scored
    rows cross into the JVM, not the hundred feature columns (the JVM's row-to-Arrow conversion of the
    input cost more than the scoring). Tables only the native Delta connector reads go through Spark.
    """
    try:
        files = delta.data_files(lake.path("features_monthly"), {"month": [month]}, version=version)
    except delta.UnsupportedTableError:
        fn = score_batches(payload, params)
        return write_staged(scoring_input(spark, features), fn, SCORED_SCHEMA, target)
    return score_files(spark, files, features.columns, payload, params, target)


def score_files(
    spark: SparkSession,
    files: list[str],
    columns: list[str],
    payload: FamilyPayload,
    params: ScoreParams,
    target: str,
) -> DataFrame:
    """:func:`score_frame` over the ``columns`` of Parquet ``files``, one file per task, read by the task;
    the scored rows written by the tasks with pyarrow into ``target`` and read back from there."""
    batch_rows = max(
        SCORE_BATCH_ROWS, int(spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch", "0"))
    )
    # one task per file: a range of the files' indexes (a parallelized list of paths costs a Python pass
    # of its own in every task: 0.07 s of a 0.8 s pass over 100,000 rows)
    units = spark.range(len(files), numPartitions=max(len(files), 1))
    make = partial(_score_fn, payload, params)
    return write_staged(
        units, file_batches(SCORED_SCHEMA, files, columns, make, batch_rows), SCORED_SCHEMA, target
    )


def _score_fn(payload: FamilyPayload, params: ScoreParams) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return partial(score_frame, _family(payload), params=params)


def scoring_input(spark: SparkSession, features: DataFrame) -> DataFrame:
    """At least one partition per core (a month is often one or two files; a task scores with one thread)."""
    parallelism = spark.sparkContext.defaultParallelism
    if features.rdd.getNumPartitions() < parallelism:
        return features.repartition(parallelism)
    return features


def drift_feature_columns(family: ModelFamily) -> list[str]:
    return [c for c in (family.drift.columns if family.drift else []) if c != "score"]


def score_month(
    spark: SparkSession, cfg: Config, month: str, *, model_version: str | None = None
) -> ScoreReport:
    """Score ``month``: replace its warning_list, customer_risk and score_monitoring partitions."""
    lake = Lake(spark, cfg)
    params = cfg.score
    with recorded_run(lake, "score", month) as run:
        model = resolve_model(cfg, month, model_version)
        family = model.family
        features = read_month_features(lake, month, family, model.version)
        feature_version = lake.version("features_monthly")
        run.input_versions = {"features_monthly": feature_version}
        run.model_versions = {"name": model.name, "version": model.version, "run_id": model.run_id}
        log.info(
            "score %s: %s version %s (trained as of %s)",
            month,
            model.name,
            model.version,
            model.trained_as_of,
        )
        payload = FamilyPayload(
            f"{model.name}/{model.version}/{uuid.uuid4().hex}",
            spark.sparkContext.broadcast(pickle.dumps(family)),
        )
        try:
            # the scored rows, written there by the scoring tasks
            with delta.scratch_folder(lake.path("warning_list"), "score") as staging:
                scored = scored_rows(spark, lake, month, feature_version, features, payload, params, staging)
                ranked = _ranked(scored, params).persist(StorageLevel.MEMORY_AND_DISK)
                try:
                    actionable = ranked.where("actionable").select("subscriber_id")
                    reasons = features.join(actionable, "subscriber_id", "left_semi").mapInArrow(
                        reason_batches(payload, params), REASONS_SCHEMA
                    )
                    this_month = {"score_month": [month]}
                    warning_list = _warning_list(ranked, reasons, month, model, feature_version)
                    lake.replace(warning_list, "warning_list", this_month)
                    written = lake.read("warning_list").where(F.col("score_month") == month)
                    lake.replace(customer_risk(written, params), "customer_risk", this_month)
                    monitoring, warnings = score_monitoring(ranked, family, month, model, params)
                    lake.replace_rows(monitoring, MONITORING_SCHEMA, "score_monitoring", this_month)
                finally:
                    ranked.unpersist()
        finally:
            payload.broadcast.destroy()
        stats = written.agg(
            F.count("*").alias("n"),
            F.count("reasons").alias("with_reasons"),
            F.count_if("hard_warning").alias("hard"),
            *[F.count_if(F.col("risk_band") == b).alias(b) for b in RISK_BANDS],
        ).first()
        report = ScoreReport(
            month,
            model.name,
            model.version,
            stats.n,
            stats.with_reasons,
            {b: stats[b] for b in RISK_BANDS},
            stats.hard,
            warnings,
        )
        for w in warnings:
            log.warning("score %s: drift: %s", month, w)
        log.info(
            "score %s: %d subscribers (%s), %d with reasons, %d hard warnings",
            month,
            report.subscribers,
            ", ".join(f"{k} {v}" for k, v in report.bands.items()),
            report.with_reasons,
            report.hard_warnings,
        )
        run.output_versions = lake.versions(["warning_list", "customer_risk", "score_monitoring"])
        run.row_counts = {
            "subscribers": report.subscribers,
            "with_reasons": report.with_reasons,
            **report.bands,
        }
        run.flags = {"drift_warnings": warnings, "hard_warnings": report.hard_warnings}
        return report


def _ranked(scored: DataFrame, params: ScoreParams) -> DataFrame:
    by_cohort = Window.partitionBy("cohort")
    order = Window.partitionBy("cohort").orderBy(F.desc("churn_probability"), F.asc("subscriber_id"))
    floor = list(RISK_BANDS[RISK_BANDS.index(params.reasons_min_band) :])
    rank, size = F.col("risk_rank"), F.col("cohort_size")
    return (
        scored.withColumn("risk_rank", F.row_number().over(order))
        .withColumn("cohort_size", F.count("*").over(by_cohort))
        .withColumn("risk_decile", F.ceil(rank * 10 / size).cast("int"))
        .withColumn(
            "actionable",
            F.col("risk_band").isin(*floor)
            | (rank <= F.ceil(size * F.lit(params.reasons_top_share)))
            | F.col("hard_warning"),
        )
    )


def _warning_list(
    ranked: DataFrame, reasons: DataFrame, month: str, model: ResolvedModel, feature_version: int | None
) -> DataFrame:
    joined = ranked.join(reasons, "subscriber_id", "left")
    return joined.select(
        F.lit(month).alias("score_month"),
        "subscriber_id",
        "customer_id",
        "household_id",
        "cohort",
        "tenure_months",
        "lifecycle_stage",
        "churn_probability",
        "raw_score",
        F.col("risk_rank").cast("int").alias("risk_rank"),
        "risk_decile",
        "risk_band",
        "reasons",
        "churn_type",
        "value_tier",
        "arpu_3m",
        "strategy",
        "usage_segment",
        "hard_warning",
        F.lit(model.name).alias("model_name"),
        F.lit(model.version).alias("model_version"),
        F.lit(feature_version).cast("long").alias("feature_table_version"),
        F.lit(model.run_id).alias("run_id"),
        F.current_timestamp().alias("scored_at"),
    )


def customer_risk(warning: DataFrame, params: ScoreParams) -> DataFrame:
    """Line-level risk rolled up to the account holder (``level=customer``) and the household.

    ``p_any_leaves`` = 1 - prod(1 - p) (lines taken as independent); ``revenue_at_risk`` = sum(p x arpu_3m);
    the main churn type is that of the riskiest line that has one.
    """
    at_risk = list(RISK_BANDS[RISK_BANDS.index(params.at_risk_band) :])
    band_rank = F.when(F.col("risk_band") == "high", 3).when(F.col("risk_band") == "medium", 2).otherwise(1)
    typed = F.when(F.col("churn_type").isNotNull(), F.struct(F.col("churn_probability"), F.col("churn_type")))
    frames = []
    for level, key in (("customer", "customer_id"), ("household", "household_id")):
        frames.append(
            warning.where(F.col(key).isNotNull())
            .groupBy("score_month", F.col(key).alias("id"))
            .agg(
                F.count("*").cast("int").alias("lines"),
                F.count_if(F.col("risk_band").isin(*at_risk)).cast("int").alias("lines_at_risk"),
                F.max("churn_probability").alias("max_probability"),
                (1 - F.exp(F.sum(F.log1p(-F.least(F.col("churn_probability"), F.lit(1 - 1e-12)))))).alias(
                    "p_any_leaves"
                ),
                F.sum("churn_probability").alias("expected_lines_lost"),
                F.sum(F.coalesce("arpu_3m", F.lit(0.0))).alias("revenue_3m"),
                F.sum(F.col("churn_probability") * F.coalesce("arpu_3m", F.lit(0.0))).alias(
                    "revenue_at_risk"
                ),
                F.max(band_rank).alias("_band"),
                F.max(typed).getField("churn_type").alias("main_churn_type"),
                F.count_if("hard_warning").cast("int").alias("hard_warning_lines"),
            )
            .withColumn("level", F.lit(level))
            .withColumn(
                "highest_band", F.element_at(F.array(*[F.lit(b) for b in RISK_BANDS]), F.col("_band"))
            )
            .drop("_band")
        )
    out = frames[0].unionByName(frames[1])
    return out.select(
        "score_month",
        "level",
        "id",
        "lines",
        "lines_at_risk",
        "highest_band",
        "max_probability",
        "p_any_leaves",
        "expected_lines_lost",
        "revenue_3m",
        "revenue_at_risk",
        "main_churn_type",
        "hard_warning_lines",
    )


def score_monitoring(
    ranked: DataFrame,
    family: ModelFamily,
    month: str,
    model: ResolvedModel,
    params: ScoreParams,
) -> tuple[list[tuple[Any, ...]], list[str]]:
    """The score distribution by cohort and the PSI of the score and monitored features vs training:
    ``score_monitoring`` rows (``MONITORING_SCHEMA``) and the drift warnings."""
    rows: list[tuple[Any, ...]] = []
    reference = "training months"

    def add(kind: str, cohort: str, name: str, value: float | None, threshold=None, warning=False) -> None:
        rows.append(
            (month, kind, cohort, name, value, threshold, warning, reference, model.name, model.version)
        )

    for cohort, stats in _distribution(ranked).items():
        for name, value in stats.items():
            add("distribution", cohort, name, value)
    warnings: list[str] = []
    if family.drift is not None:
        counts = (
            ranked.select(F.posexplode("drift_bins").alias("column", "bin"))
            .groupBy("column", "bin")
            .count()
            .collect()
        )
        per_column: dict[int, dict[int, int]] = {}
        for r in counts:
            per_column.setdefault(r.column, {})[r.bin] = r["count"]
        for i, name in enumerate(family.drift.columns):
            n = family.drift.n_bins(name)
            hist = np.zeros(n)
            for b, c in per_column.get(i, {}).items():
                hist[b] = c
            value = family.drift.psi(name, hist)
            shifted = bool(value > params.psi_warning)
            add("psi", "all", name, value, params.psi_warning, shifted)
            if shifted:
                warnings.append(
                    f"PSI of {name} is {value:.3f} (> {params.psi_warning}) against the training months"
                )
    return rows, warnings


def _distribution(ranked: DataFrame) -> dict[str, dict[str, float | None]]:
    """Per cohort and over all (``all``): rows, mean and deciles of the probability, band shares."""
    p = F.col("churn_probability")
    rows = (
        ranked.rollup("cohort")
        .agg(
            F.count("*").alias("rows"),
            F.avg(p).alias("mean_probability"),
            F.percentile_approx(p, [0.1, 0.5, 0.9], 10000).alias("q"),
            *[F.avg((F.col("risk_band") == b).cast("double")).alias(f"share_{b}") for b in RISK_BANDS],
            F.avg(F.col("hard_warning").cast("double")).alias("share_hard_warning"),
        )
        .collect()
    )
    out = {}
    for row in rows:
        q = row.q or [None, None, None]
        out[row.cohort or "all"] = {
            "rows": float(row.rows),
            "mean_probability": row.mean_probability,
            "p10_probability": q[0],
            "p50_probability": q[1],
            "p90_probability": q[2],
            **{f"share_{b}": row[f"share_{b}"] for b in RISK_BANDS},
            "share_hard_warning": row.share_hard_warning,
        }
    return out


__all__ = [
    "ModelNotFoundError",
    "ScoreReport",
    "customer_risk",
    "resolve_model",
    "score_frame",
    "score_month",
]
