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

What a batch's scores mean is pure pandas (:mod:`models.scoring`); which model serves M is
:mod:`pipelines.core.registry`'s rule (trained as of M or earlier). This module runs them in Spark.
"""

from __future__ import annotations

import logging
import pickle
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from features.errors import MissingColumnsError
from models.family import ModelFamily
from models.params import RISK_BANDS, ScoreParams
from models.scoring import (
    REASONS_SCHEMA,
    SCORED_SCHEMA,
    drift_feature_columns,
    drift_psi,
    value_columns,
)
from pipelines.core import delta
from pipelines.core.arrow import write_staged
from pipelines.core.config import Config
from pipelines.core.errors import InputNotReadyError
from pipelines.core.lake import Lake, decimals_as_double
from pipelines.core.manifest import recorded_run
from pipelines.core.registry import ResolvedModel, resolve_model
from pipelines.core.spark import check_folder_shared
from pipelines.core.tables import MONITORING_SCHEMA
from pipelines.score.batch import (
    FamilyPayload,
    reason_batches,
    reasons_input,
    score_batches,
    score_files,
    scoring_input,
)

log = logging.getLogger(__name__)

# feature-table columns carried onto the warning list (besides the model's own features)
CARRIED = ("subscriber_id", "customer_id", "household_id", "lifecycle_stage", "hard_warning")


@dataclass
class ScoreReport:
    """What a month's scoring produced: the model, the rows per band, hard and drift warnings."""

    month: str
    model: str
    version: str
    subscribers: int
    with_reasons: int
    bands: dict[str, int]
    hard_warnings: int
    drift_warnings: list[str] = field(default_factory=list)


def read_month_features(lake: Lake, month: str, family: ModelFamily, version: str) -> DataFrame:
    """The feature rows of ``month`` with the columns the model needs, decimals as doubles."""
    if not lake.exists("features_monthly") or (month,) not in lake.partition_values(
        "features_monthly", "month"
    ):
        raise InputNotReadyError(
            f"score {month}: no features for {month} (run jobs/build_features.py --month {month})"
        )
    features = lake.read("features_monthly").where(F.col("month") == month)
    segment_columns = family.segments.columns if family.segments is not None else []
    need = [*dict.fromkeys([*family.features, family.spec.tenure, "subscriber_id"])]
    missing = [c for c in need if c not in features.columns]
    if missing:
        raise MissingColumnsError(
            missing, f"features_monthly for {month} (model version {version} needs them)"
        )
    value = value_columns(lake.cfg.features.trend_months)
    wanted = [*CARRIED, *value, *need, *drift_feature_columns(family), *segment_columns]
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
    trend_months = lake.cfg.features.trend_months
    check_folder_shared(spark, lake.cfg.lake_root)  # the tasks write the scored rows themselves
    try:
        files = delta.data_files(lake.path("features_monthly"), {"month": [month]}, version=version)
    except delta.UnsupportedTableError:
        fn = score_batches(payload, params, trend_months=trend_months)
        return write_staged(scoring_input(spark, features), fn, SCORED_SCHEMA, target)
    return score_files(spark, files, features.columns, payload, params, target, trend_months=trend_months)


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
                    reasons = reasons_input(
                        spark, features.join(actionable, "subscriber_id", "left_semi")
                    ).mapInArrow(reason_batches(payload, params), REASONS_SCHEMA)
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
    """The score distribution by cohort and the PSI of the score and monitored features against the drift
    reference: ``score_monitoring`` rows (``MONITORING_SCHEMA``) and the drift warnings.

    The month's verdict is the row ``kind = drift``, ``name = drifted`` (value 1 or 0, ``warning`` alike):
    the score or one of the ``drift_top_features`` best monitored features above its threshold. The
    monthly run retrains after ``drift_months`` such months in a row (:func:`sustained_drift`)."""
    rows: list[tuple[Any, ...]] = []
    # a refitted champion's reference is its own scores of another month (pipelines.train.stage.refit_as_of)
    refit = family.report.get("refit")
    reference = (
        "out-of-sample test month"
        if refit is None
        else refit.get("drift_reference", "the refit's own scores (month not recorded)")
    )

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
        psi = drift_psi(family.drift, ((r.column, r.bin, r["count"]) for r in counts))
        counted = {"score", *[c for c in family.drift.columns if c != "score"][: params.drift_top_features]}
        drifted = False
        for name, value in psi.items():
            threshold = params.drift_score_psi if name == "score" else params.drift_feature_psi
            shifted = bool(value > threshold)
            add("psi", "all", name, value, threshold, shifted)
            drifted = drifted or (shifted and name in counted)
            if shifted:
                warnings.append(f"PSI of {name} is {value:.3f} (> {threshold}) against the drift reference")
        add("drift", "all", "drifted", float(drifted), None, drifted)
    return rows, warnings


def sustained_drift(rows: Iterable[Mapping[str, Any]], version: str, months: int) -> str | None:
    """``sustained_drift: ...`` when the latest ``months`` score months scored by model ``version`` all
    drifted (``score_monitoring`` rows with ``kind = drift``), else None."""
    verdicts = {
        r["score_month"]: bool(r["warning"])
        for r in rows
        if r["kind"] == "drift" and r["model_version"] == version
    }
    latest = sorted(verdicts)[-months:]
    if len(latest) < months or not all(verdicts[m] for m in latest):
        return None
    return f"sustained_drift: score months {', '.join(latest)} scored by version {version} drifted"


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


__all__ = ["ScoreReport", "customer_risk", "read_month_features", "score_month", "sustained_drift"]
