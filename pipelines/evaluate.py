"""Stage: measure what the warning lists and the offers were worth, for score months whose labels matured.

``evaluate_month(spark, cfg, M)`` takes every score month S of ``warning_list`` whose churn window closed
by the end of M and whose labels are available, and replaces the run-month partitions (``month = M``):

- ``model_performance`` (``source = realised``): the family's metrics per cohort on S's actual churn of
  the lines left alone (lines contacted inside their label window are out:
  :mod:`pipelines.core.treatment`), from counts per probability bin aggregated in Spark;
- ``campaign_effect``: per score month, offer (the intended offer, so the control group is compared
  with the lines that got the same offer), cohort and risk band (and ``all``): treated and held-out
  lines, their churn **from the contact month** (S + 1, the gap month included, to the end of the
  window: the campaign outcome, not the training label, which leaves gap-month churn out), the effect
  with its Newcombe interval, the relative effect with the risk ratio's, contact and acceptance rates
  from ``campaign_outcomes``, the incremental retained value and the net value after the offers' cost;
- ``programme_effect``: per score month, cohort and risk band (and ``all``), the lines at or above
  ``offers.min_band`` outside the programme hold-out against those in it: what the whole programme
  (lists, offers, exploration) changed;
- ``campaign_feedback``: the agents' feedback codes by churn type;
- ``offer_effects``: per offer, over every matured score month, pooled across score month x cohort x
  risk band strata (Mantel-Haenszel, CMH test): overall (``dimension = all``) and per cohort, churn
  type, value tier and risk band; the relative effect averaged with the catalogue's prior by precision
  (negative kept) and the realised net value with its interval. ``match_offers`` uses the overall effect
  from then on and does not offer an offer where it significantly raised churn; an arm under
  ``evaluate.min_arm_lines`` is ``underpowered``: reported, not fed back.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from models.evaluation import (
    binned_metrics,
    campaign_effect,
    pooled_effect,
    shrunk_effect,
    standardised_effect,
)
from models.offers import RISK_BANDS, SEGMENT_DIMENSIONS, value_of_save
from pipelines.core.config import Config
from pipelines.core.experiment import campaign_outcomes, is_experiment_line
from pipelines.core.lake import Lake
from pipelines.core.manifest import recorded_run
from pipelines.core.maturity import matured_score_months
from pipelines.core.tables import PERFORMANCE_SCHEMA
from pipelines.core.treatment import treated_in_window

log = logging.getLogger(__name__)

EFFECT_SCHEMA = (
    "month string, score_month string, offer_id string, cohort string, risk_band string, treated long, "
    "holdout long, churn_rate_treated double, churn_rate_holdout double, effect double, effect_low double, "
    "effect_high double, relative_effect double, contacted long, accepted long, contact_rate double, "
    "acceptance_rate double, incremental_revenue double, relative_low double, relative_high double, "
    "cost double, net_value double, net_value_low double, net_value_high double, underpowered boolean"
)
PROGRAMME_SCHEMA = (
    "month string, score_month string, cohort string, risk_band string, outside long, holdout long, "
    "churn_rate_outside double, churn_rate_holdout double, effect double, effect_low double, "
    "effect_high double, relative_effect double, relative_low double, relative_high double, "
    "underpowered boolean"
)
OFFER_EFFECT_SCHEMA = (
    "month string, offer_id string, cohort string, effect double, measured double, prior double, "
    "treated long, holdout long, score_months string, dimension string, segment string, "
    "measured_low double, measured_high double, effect_diff double, effect_diff_low double, "
    "effect_diff_high double, p_value double, underpowered boolean, cost double, net_value double, "
    "net_value_low double, net_value_high double"
)
FEEDBACK_SCHEMA = "month string, score_month string, churn_type string, feedback_code string, contacts long"


@dataclass
class EvaluateReport:
    month: str
    score_months: list[str]
    realised: dict[str, float] = field(default_factory=dict)  # score month -> AUC over all cohorts
    effects: dict[str, float] = field(default_factory=dict)  # offer -> effect used from now on


def _labels(lake: Lake, months: list[str]) -> DataFrame:
    return (
        lake.read("labels_monthly")
        .where(F.col("month").isin(*months) & F.col("label_available") & F.col("is_churn").isNotNull())
        .select(F.col("month").alias("score_month"), "subscriber_id", "is_churn")
    )


def realised_performance(
    lake: Lake, month: str, months: list[str]
) -> tuple[list[tuple[Any, ...]], dict[str, float]]:
    """``model_performance`` rows of the family on each score month's actual churn of the lines left
    alone (the churn probability is the risk without a contact)."""
    cfg = lake.cfg
    resolution = cfg.evaluate.probability_bins
    warning = lake.read("warning_list").where(F.col("score_month").isin(*months))
    treated = treated_in_window(lake, months).withColumnRenamed("month", "score_month")
    joined = warning.join(_labels(lake, months), ["score_month", "subscriber_id"]).join(
        treated, ["score_month", "subscriber_id"], "left_anti"
    )
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
                rows.append(
                    (
                        month,
                        "realised",
                        score_month,
                        "family",
                        cohort,
                        metric,
                        _or_none(value),
                        version,
                        run_id,
                    )
                )
    return rows, auc


def _or_none(value: Any) -> float | None:
    """A float for a table cell: None for null or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def _campaign_frame(lake: Lake, months: list[str]) -> DataFrame | None:
    """Every line of the score months' offer lists with its campaign outcome (``churned``) and contact."""
    if not lake.exists("offer_assignments"):
        return None
    assigned = lake.read("offer_assignments").where(F.col("score_month").isin(*months))
    for column, kind in (("programme_holdout", "boolean"), ("arm", "string")):
        if column not in assigned.columns:  # lists written before the experiment design
            assigned = assigned.withColumn(column, F.lit(None).cast(kind))
    frame = assigned.join(campaign_outcomes(lake, months), ["score_month", "subscriber_id"])
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


def _experiment(frame: DataFrame) -> DataFrame:
    """The lines of the offer experiment: treated, and the control group of their offer."""
    return frame.where(is_experiment_line())


def campaign_effect_rows(frame: DataFrame, month: str, cfg: Config) -> list[tuple[Any, ...]]:
    """Effect per score month x offer x cohort x band, with ``all`` roll-ups (counts from Spark)."""
    treated = F.col("status") == "assigned"
    horizon = cfg.offers.value_horizon_months * cfg.offers.margin
    counts = (
        _experiment(frame)
        .cube("score_month", "intended_offer_id", "cohort", "risk_band")
        .agg(
            F.count_if(treated).alias("treated"),
            F.count_if(treated & F.col("churned")).alias("treated_churners"),
            F.count_if(~treated).alias("holdout"),
            F.count_if(~treated & F.col("churned")).alias("holdout_churners"),
            F.sum(F.when(treated, F.coalesce("contacted", F.lit(0)))).alias("contacted"),
            F.sum(F.when(treated, F.coalesce("accepted", F.lit(0)))).alias("accepted"),
            F.avg("arpu_3m").alias("arpu_3m"),
            F.sum(F.when(treated, F.col("cost"))).alias("cost"),
        )
        .where(F.col("score_month").isNotNull())
        .toPandas()
    )
    # the all-offers rows: each offer has its own control share, so the offers are strata
    keys = counts[["score_month", "cohort", "risk_band"]].fillna("\0").apply(tuple, axis=1)
    by_offer = counts[counts["intended_offer_id"].notna()].groupby(keys[counts["intended_offer_id"].notna()])
    rows = []
    for key, r in zip(keys, counts.itertuples(index=False), strict=True):
        e = campaign_effect(
            r.treated, r.treated_churners, r.holdout, r.holdout_churners, cfg.evaluate.confidence
        )
        if r.intended_offer_id is None and key in by_offer.groups:
            e.update(standardised_effect(by_offer.get_group(key), cfg.evaluate.confidence))
        contacted, accepted = int(_number(r.contacted)), int(_number(r.accepted))
        per_save = r.treated * _number(r.arpu_3m) * horizon
        cost = _number(r.cost)
        revenue, net_low, net_high = (e[k] * per_save for k in ("effect", "effect_low", "effect_high"))
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
                    _or_none(e[k])
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
                _or_none(revenue),
                _or_none(e["relative_low"]),
                _or_none(e["relative_high"]),
                cost,
                _or_none(revenue - cost),
                _or_none(net_low - cost),
                _or_none(net_high - cost),
                min(r.treated, r.holdout) < cfg.evaluate.min_arm_lines,
            )
        )
    return rows


def programme_effect_rows(frame: DataFrame, month: str, cfg: Config) -> list[tuple[Any, ...]]:
    """The whole programme: churn of the lines at or above ``offers.min_band`` outside the programme
    hold-out against those in it, per score month x cohort x band with ``all`` roll-ups."""
    bands = RISK_BANDS[RISK_BANDS.index(cfg.offers.min_band) :]
    held = F.col("programme_holdout")
    counts = (
        frame.where(F.col("programme_holdout").isNotNull() & F.col("risk_band").isin(*bands))
        .cube("score_month", "cohort", "risk_band")
        .agg(
            F.count_if(~held).alias("outside"),
            F.count_if(~held & F.col("churned")).alias("outside_churners"),
            F.count_if(held).alias("holdout"),
            F.count_if(held & F.col("churned")).alias("holdout_churners"),
        )
        .where(F.col("score_month").isNotNull())
        .toPandas()
    )
    rows = []
    for r in counts.itertuples(index=False):
        e = campaign_effect(
            r.outside, r.outside_churners, r.holdout, r.holdout_churners, cfg.evaluate.confidence
        )
        rows.append(
            (
                month,
                r.score_month,
                r.cohort or "all",
                r.risk_band or "all",
                int(r.outside),
                int(r.holdout),
                *(
                    _or_none(e[k])
                    for k in (
                        "churn_rate_treated",
                        "churn_rate_holdout",
                        "effect",
                        "effect_low",
                        "effect_high",
                        "relative_effect",
                        "relative_low",
                        "relative_high",
                    )
                ),
                min(r.outside, r.holdout) < cfg.evaluate.min_arm_lines,
            )
        )
    return rows


def _number(value: Any) -> float:
    """A count or mean from pandas: null (None or NaN) is 0."""
    return 0.0 if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


STRATA = ["score_month", "cohort", "risk_band"]


def offer_effect_rows(
    frame: DataFrame, month: str, months: list[str], cfg: Config
) -> tuple[list[tuple[Any, ...]], dict[str, float]]:
    """The measured effect per offer, overall and per segment, over all matured months: pooled across
    score month x cohort x band strata, averaged with the prior by precision, net value after cost."""
    treated = F.col("status") == "assigned"
    keys = ["intended_offer_id", *STRATA, *(d for d in SEGMENT_DIMENSIONS if d not in STRATA)]
    cells = (
        _experiment(frame)
        .groupBy(*[F.coalesce(F.col(k).cast("string"), F.lit("unknown")).alias(k) for k in keys])
        .agg(
            F.count_if(treated).alias("treated"),
            F.count_if(treated & F.col("churned")).alias("treated_churners"),
            F.count_if(~treated).alias("holdout"),
            F.count_if(~treated & F.col("churned")).alias("holdout_churners"),
            F.sum(F.when(treated, F.col("arpu_3m"))).alias("treated_arpu"),
            F.sum(F.when(treated, F.col("cost"))).alias("cost"),
        )
        .toPandas()
    )
    prior = {o.id: o.effect for o in cfg.offers.offers}
    rows, used = [], {}
    for offer_id, part in cells.groupby("intended_offer_id"):
        if offer_id not in prior:
            continue  # an offer no longer in the catalogue
        groups = [("all", "all", part)] + [
            (d, str(seg), sub) for d in SEGMENT_DIMENSIONS for seg, sub in part.groupby(d)
        ]
        for dimension, segment, sub in groups:
            row, effect = _offer_effect_row(sub, prior[offer_id], cfg)
            rows.append(
                (
                    month,
                    offer_id,
                    segment if dimension == "cohort" else None,
                    effect,
                    *row[:4],
                    ",".join(months),
                    dimension,
                    segment,
                    *row[4:],
                )
            )
            if dimension == "all" and not row[-5]:
                used[offer_id] = effect
    return rows, used


def _offer_effect_row(cells: pd.DataFrame, prior: float, cfg: Config) -> tuple[tuple[Any, ...], float]:
    """(measured, prior, treated, holdout, measured_low, measured_high, diff, diff_low, diff_high,
    p_value, underpowered, cost, net, net_low, net_high) of one offer x segment, and the effect to use."""
    strata = cells.groupby(STRATA, as_index=False)[
        ["treated", "treated_churners", "holdout", "holdout_churners", "treated_arpu", "cost"]
    ].sum()
    e = pooled_effect(strata, cfg.evaluate.confidence)
    treated, holdout = int(strata["treated"].sum()), int(strata["holdout"].sum())
    underpowered = min(treated, holdout) < cfg.evaluate.min_arm_lines
    effect = (
        prior
        if underpowered
        else shrunk_effect(e["relative_effect"], e["se_relative"], prior, cfg.evaluate.prior_sd)
    )
    value = float(value_of_save(np.array([strata["treated_arpu"].sum()]), cfg.offers)[0])
    cost = float(np.nan_to_num(strata["cost"].sum()))
    net = [e[k] * value - cost for k in ("effect", "effect_low", "effect_high")]
    return (
        _or_none(e["relative_effect"]),
        prior,
        treated,
        holdout,
        _or_none(e["relative_low"]),
        _or_none(e["relative_high"]),
        _or_none(e["effect"]),
        _or_none(e["effect_low"]),
        _or_none(e["effect_high"]),
        _or_none(e["p_value"]),
        underpowered,
        cost,
        *(_or_none(v) for v in net),
    ), float(effect)


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
            programme = programme_effect_rows(frame, month, cfg)
            offers, report.effects = offer_effect_rows(frame, month, months, cfg)
            feedback = feedback_rows(frame, month)
            frame.unpersist()
            for table, rows, schema in (
                ("campaign_effect", effects, EFFECT_SCHEMA),
                ("programme_effect", programme, PROGRAMME_SCHEMA),
                ("offer_effects", offers, OFFER_EFFECT_SCHEMA),
                ("campaign_feedback", feedback, FEEDBACK_SCHEMA),
            ):
                lake.replace_rows(rows, schema, table, {"month": [month]})
        run.output_versions = lake.versions(
            ["model_performance", "campaign_effect", "programme_effect", "offer_effects", "campaign_feedback"]
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
