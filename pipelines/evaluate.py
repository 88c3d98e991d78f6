"""Stage: measure what the warning lists and the offers were worth, for score months whose labels matured.

``evaluate_month(spark, cfg, M)`` takes every score month S of ``warning_list`` whose churn window closed
by the end of M and whose labels are available, and replaces the run-month partitions (``month = M``):

- ``model_performance`` (``source = realised``): the family's metrics per cohort on S's actual churn,
  from counts per probability bin aggregated in Spark (nothing line-level reaches the driver);
- ``campaign_effect``: per score month, offer (the intended offer, so the control group is compared
  with the lines that got the same offer), cohort and risk band (and ``all``): treated and held-out
  lines, their churn rates, the effect with its Newcombe confidence interval, contact and acceptance
  rates from ``campaign_outcomes``, and the incremental retained revenue;
- ``campaign_feedback``: the agents' feedback codes by churn type;
- ``offer_effects``: per offer (and per offer and cohort), the relative effect measured over every
  matured score month, shrunk toward the catalogue's prior; ``match_offers`` uses it from then on.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from models.evaluation import binned_metrics, campaign_effect, shrunk_effect
from pipelines.core.config import Config
from pipelines.core.lake import Lake
from pipelines.core.manifest import recorded_run
from pipelines.core.maturity import labelled_months, matured
from pipelines.core.tables import PERFORMANCE_SCHEMA

log = logging.getLogger(__name__)

EFFECT_SCHEMA = (
    "month string, score_month string, offer_id string, cohort string, risk_band string, treated long, "
    "holdout long, churn_rate_treated double, churn_rate_holdout double, effect double, effect_low double, "
    "effect_high double, relative_effect double, contacted long, accepted long, contact_rate double, "
    "acceptance_rate double, incremental_revenue double"
)
OFFER_EFFECT_SCHEMA = (
    "month string, offer_id string, cohort string, effect double, measured double, prior double, "
    "treated long, holdout long, score_months string"
)
FEEDBACK_SCHEMA = "month string, score_month string, churn_type string, feedback_code string, contacts long"


@dataclass
class EvaluateReport:
    month: str
    score_months: list[str]
    realised: dict[str, float] = field(default_factory=dict)  # score month -> AUC over all cohorts
    effects: dict[str, float] = field(default_factory=dict)  # offer -> effect used from now on


def matured_score_months(lake: Lake, month: str) -> list[str]:
    """Score months with a warning list whose labels matured (window closed) by ``month``."""
    if not lake.exists("warning_list") or not lake.exists("labels_monthly"):
        return []
    scored = {m for (m,) in lake.partition_values("warning_list", "score_month")}
    labelled = set(labelled_months(lake, month))
    return sorted(m for m in scored & labelled if matured(m, month, lake.cfg))


def _labels(lake: Lake, months: list[str]) -> DataFrame:
    return (
        lake.read("labels_monthly")
        .where(F.col("month").isin(*months) & F.col("label_available") & F.col("is_churn").isNotNull())
        .select(F.col("month").alias("score_month"), "subscriber_id", "is_churn")
    )


def realised_performance(
    lake: Lake, month: str, months: list[str]
) -> tuple[list[tuple[Any, ...]], dict[str, float]]:
    """``model_performance`` rows of the family on each score month's actual churn."""
    cfg = lake.cfg
    resolution = cfg.evaluate.probability_bins
    warning = lake.read("warning_list").where(F.col("score_month").isin(*months))
    joined = warning.join(_labels(lake, months), ["score_month", "subscriber_id"])
    bins = (
        joined.groupBy(
            "score_month",
            "cohort",
            "model_version",
            "run_id",
            (F.round(F.col("churn_probability") * resolution) / resolution).alias("probability"),
        )
        .agg(F.count_if("is_churn").alias("churners"), F.count_if(~F.col("is_churn")).alias("stayers"))
        .toPandas()
    )
    rows: list[tuple[Any, ...]] = []
    auc: dict[str, float] = {}
    for (score_month, version, run_id), part in bins.groupby(
        ["score_month", "model_version", "run_id"], dropna=False
    ):
        cohorts = {"all": part.groupby("probability", as_index=False)[["churners", "stayers"]].sum()}
        for cohort, c in part.groupby("cohort"):
            cohorts[cohort] = c.groupby("probability", as_index=False)[["churners", "stayers"]].sum()
        for cohort, b in cohorts.items():
            metrics = binned_metrics(b, cfg.train.profit)
            if cohort == "all":
                auc[score_month] = metrics["roc_auc"]
            for metric, value in metrics.items():
                v = (
                    None
                    if value is None or (isinstance(value, float) and math.isnan(value))
                    else float(value)
                )
                rows.append((month, "realised", score_month, "family", cohort, metric, v, version, run_id))
    return rows, auc


def _campaign_frame(lake: Lake, months: list[str]) -> DataFrame | None:
    """Treated and held-out lines of the score months with their churn label and campaign outcome."""
    if not lake.exists("offer_assignments"):
        return None
    assigned = lake.read("offer_assignments").where(
        F.col("score_month").isin(*months) & F.col("status").isin("assigned", "holdout")
    )
    frame = assigned.join(_labels(lake, months), ["score_month", "subscriber_id"])
    if lake.exists("campaign_outcomes"):
        outcomes = (
            lake.read("campaign_outcomes")
            .where(F.col("campaign_month").isin(*months))
            .groupBy(F.col("campaign_month").alias("score_month"), "subscriber_id")
            .agg(
                F.max(F.col("contacted").cast("int")).alias("contacted"),
                F.max(F.col("accepted").cast("int")).alias("accepted"),
                F.max("feedback_code").alias("feedback_code"),
            )
        )
        frame = frame.join(outcomes, ["score_month", "subscriber_id"], "left")
    else:
        frame = frame.select(
            "*",
            F.lit(0).alias("contacted"),
            F.lit(0).alias("accepted"),
            F.lit(None).cast("string").alias("feedback_code"),
        )
    return frame


def campaign_effect_rows(frame: DataFrame, month: str, cfg: Config) -> list[tuple[Any, ...]]:
    """Effect per score month x offer x cohort x band, with ``all`` roll-ups (counts from Spark)."""
    treated = F.col("status") == "assigned"
    counts = (
        frame.cube("score_month", "intended_offer_id", "cohort", "risk_band")
        .agg(
            F.count_if(treated).alias("treated"),
            F.count_if(treated & F.col("is_churn")).alias("treated_churners"),
            F.count_if(~treated).alias("holdout"),
            F.count_if(~treated & F.col("is_churn")).alias("holdout_churners"),
            F.sum(F.when(treated, F.coalesce("contacted", F.lit(0)))).alias("contacted"),
            F.sum(F.when(treated, F.coalesce("accepted", F.lit(0)))).alias("accepted"),
            F.avg("arpu_3m").alias("arpu_3m"),
        )
        .where(F.col("score_month").isNotNull())
        .toPandas()
    )
    rows = []
    for r in counts.itertuples(index=False):
        e = campaign_effect(
            r.treated, r.treated_churners, r.holdout, r.holdout_churners, cfg.evaluate.confidence
        )
        contacted, accepted = int(_number(r.contacted)), int(_number(r.accepted))
        revenue = (
            e["effect"] * r.treated * _number(r.arpu_3m) * cfg.evaluate.revenue_months
            if not math.isnan(e["effect"])
            else None
        )
        rows.append(
            (
                month,
                r.score_month,
                r.intended_offer_id or "all",
                r.cohort or "all",
                r.risk_band or "all",
                int(r.treated),
                int(r.holdout),
                *(
                    None if math.isnan(e[k]) else e[k]
                    for k in (
                        "churn_rate_treated",
                        "churn_rate_holdout",
                        "effect",
                        "effect_low",
                        "effect_high",
                        "relative_effect",
                    )
                ),
                contacted,
                accepted,
                contacted / r.treated if r.treated else None,
                accepted / contacted if contacted else None,
                revenue,
            )
        )
    return rows


def _number(value: Any) -> float:
    """A count or mean from pandas: null (None or NaN) is 0."""
    return 0.0 if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def offer_effect_rows(
    frame: DataFrame, month: str, months: list[str], cfg: Config
) -> tuple[list[tuple[Any, ...]], dict[str, float]]:
    """The measured effect per offer (and offer x cohort) over all matured months, shrunk to the prior."""
    treated = F.col("status") == "assigned"
    counts = (
        frame.rollup("intended_offer_id", "cohort")
        .agg(
            F.count_if(treated).alias("treated"),
            F.count_if(treated & F.col("is_churn")).alias("treated_churners"),
            F.count_if(~treated).alias("holdout"),
            F.count_if(~treated & F.col("is_churn")).alias("holdout_churners"),
        )
        .where(F.col("intended_offer_id").isNotNull())
        .toPandas()
    )
    prior = {o.id: o.effect for o in cfg.offers.offers}
    rows, used = [], {}
    for r in counts.itertuples(index=False):
        if r.intended_offer_id not in prior:
            continue  # an offer no longer in the catalogue
        e = campaign_effect(r.treated, r.treated_churners, r.holdout, r.holdout_churners)
        effect = shrunk_effect(
            e["relative_effect"],
            r.treated,
            r.holdout,
            prior[r.intended_offer_id],
            cfg.evaluate.prior_strength,
        )
        measured = None if math.isnan(e["relative_effect"]) else e["relative_effect"]
        rows.append(
            (
                month,
                r.intended_offer_id,
                r.cohort,
                effect,
                measured,
                prior[r.intended_offer_id],
                int(r.treated),
                int(r.holdout),
                ",".join(months),
            )
        )
        if r.cohort is None:
            used[r.intended_offer_id] = effect
    return rows, used


def feedback_rows(frame: DataFrame, month: str) -> list[tuple[Any, ...]]:
    counts = (
        frame.where(F.col("feedback_code").isNotNull())
        .groupBy(
            "score_month", F.coalesce("churn_type", F.lit("unknown")).alias("churn_type"), "feedback_code"
        )
        .count()
        .collect()
    )
    return [(month, r.score_month, r.churn_type, r.feedback_code, int(r["count"])) for r in counts]


def evaluate_month(spark: SparkSession, cfg: Config, month: str) -> EvaluateReport:
    """Evaluate every score month matured by ``month``; replace the ``month`` partitions of the outputs."""
    lake = Lake(spark, cfg)
    with recorded_run(lake, "evaluate", month) as run:
        months = matured_score_months(lake, month)
        report = EvaluateReport(month, months)
        run.flags = {"score_months": months}
        if not months:
            log.info("evaluate %s: no score month has matured labels yet", month)
            return report
        run.input_versions = lake.versions(
            ["warning_list", "labels_monthly", "offer_assignments", "campaign_outcomes"]
        )
        perf, report.realised = realised_performance(lake, month, months)
        lake.replace_rows(
            perf, PERFORMANCE_SCHEMA, "model_performance", {"month": [month], "source": ["realised"]}
        )
        frame = _campaign_frame(lake, months)
        if frame is not None:
            frame = frame.cache()
            effects = campaign_effect_rows(frame, month, cfg)
            offers, report.effects = offer_effect_rows(frame, month, months, cfg)
            feedback = feedback_rows(frame, month)
            frame.unpersist()
            for table, rows, schema in (
                ("campaign_effect", effects, EFFECT_SCHEMA),
                ("offer_effects", offers, OFFER_EFFECT_SCHEMA),
                ("campaign_feedback", feedback, FEEDBACK_SCHEMA),
            ):
                lake.replace_rows(rows, schema, table, {"month": [month]})
        run.output_versions = lake.versions(
            ["model_performance", "campaign_effect", "offer_effects", "campaign_feedback"]
        )
        log.info(
            "evaluate %s: score months %s; realised AUC %s; offer effects %s",
            month,
            ", ".join(months),
            {m: round(a, 4) for m, a in report.realised.items()},
            {o: round(e, 3) for o, e in report.effects.items()},
        )
        return report


__all__ = ["EvaluateReport", "evaluate_month", "matured_score_months"]
