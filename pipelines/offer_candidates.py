"""The candidates of a month's offer matching: the warning list with the contact policy's inputs, and each
line's exclusion reason or the expected net value of every offer (:mod:`models.offers` on the executors).

- :func:`candidate_frame`: one row per line of ``warning_list`` for M with what the policy needs from
  ``features_monthly`` (plan type, consent, contract state, an open complaint: an unresolved complaint
  within the care family's ``features.trend_months`` window) and the contact history (cooling down);
- :func:`offer_effects`: the effects measured by the evaluation, which replace the catalogue's priors;
- :func:`candidate_values`: per line, its exclusion reason or its offers' values (``mapInArrow``).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from features.calendar import add_months
from features.columns import window_col
from models.offers import CANDIDATE_COLUMNS, contract_state, net_values, policy_reasons
from models.params import OfferParams
from pipelines.core.arrow import BatchFn, pandas_batches
from pipelines.core.errors import InputNotReadyError
from pipelines.core.lake import Lake, decimals_as_double

VALUES_SCHEMA = "subscriber_id string, reason string, offer_values array<double>"
# what the values need: the candidate columns, with the contract state still as its three inputs
VALUE_INPUTS = (
    *(c for c in CANDIDATE_COLUMNS if c != "contract_state"),
    "has_contract",
    "out_of_contract",
    "months_to_contract_end",
)


def candidate_frame(lake: Lake, month: str, params: OfferParams) -> DataFrame:
    """The warning list of ``month`` with the policy's inputs, one row per line."""
    if not lake.exists("warning_list") or (month,) not in lake.partition_values(
        "warning_list", "score_month"
    ):
        raise InputNotReadyError(
            f"match_offers {month}: no warning list for {month} (run jobs/score.py --month {month})"
        )
    complaints = window_col("unresolved_complaints", lake.cfg.features.trend_months)
    warning = lake.read("warning_list").where(F.col("score_month") == month)
    features = decimals_as_double(
        lake.read("features_monthly")
        .where(F.col("month") == month)
        .select(
            "subscriber_id",
            "plan_type",
            "marketing_consent",
            "has_contract",
            "out_of_contract",
            "months_to_contract_end",
            (F.coalesce(F.col(complaints), F.lit(0)) > 0).alias("open_complaint"),
        )
    )
    recent = recently_contacted(lake, month, params.policy.cooldown_months)
    return (
        warning.join(features, "subscriber_id", "left")
        .join(recent, "subscriber_id", "left")
        .withColumn("cooling_down", F.coalesce(F.col("cooling_down"), F.lit(False)))
    )


def recently_contacted(lake: Lake, month: str, months: int) -> DataFrame:
    """Lines with a retention offer assigned, or a contact made, in the ``months`` before ``month``."""
    spark = lake.spark
    empty = spark.createDataFrame([], "subscriber_id string")
    if months == 0:
        return empty.withColumn("cooling_down", F.lit(True))
    first = add_months(month, -months)
    parts = [empty]
    if lake.exists("offer_assignments"):
        parts.append(
            lake.read("offer_assignments")
            .where(
                (F.col("score_month") >= first)
                & (F.col("score_month") < month)
                & (F.col("status") == "assigned")
            )
            .select("subscriber_id")
        )
    if lake.exists("campaign_outcomes"):
        parts.append(
            lake.read("campaign_outcomes")
            .where(
                (F.col("campaign_month") >= first) & (F.col("campaign_month") < month) & F.col("contacted")
            )
            .select("subscriber_id")
        )
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out.distinct().withColumn("cooling_down", F.lit(True))


def offer_effects(lake: Lake, month: str) -> dict[str, float]:
    """Measured effects per offer (``offer_effects``, written by the evaluation) known by ``month``."""
    if not lake.exists("offer_effects"):
        return {}
    rows = (
        lake.read("offer_effects")
        .where((F.col("month") <= month) & F.col("cohort").isNull())
        .withColumn("_r", F.row_number().over(Window.partitionBy("offer_id").orderBy(F.desc("month"))))
        .where("_r = 1")
        .select("offer_id", "effect")
        .collect()
    )
    return {r.offer_id: float(r.effect) for r in rows}


def candidate_values(base: DataFrame, params: OfferParams, effects: dict[str, float]) -> DataFrame:
    """Each line of :func:`candidate_frame`: its exclusion reason, or its offers' expected net values."""
    return base.select(*VALUE_INPUTS).mapInArrow(value_batches(params, effects), VALUES_SCHEMA)


def value_batches(params: OfferParams, effects: dict[str, float]) -> BatchFn:
    """``mapInArrow``: each line's exclusion reason or its offers' expected net values (null: not usable)."""
    return pandas_batches(VALUES_SCHEMA, lambda: partial(value_frame, params=params, effects=effects))


def value_frame(frame: pd.DataFrame, params: OfferParams, effects: dict[str, float]) -> pd.DataFrame:
    """One batch of :func:`value_batches` (pure pandas)."""
    frame = frame.assign(
        contract_state=contract_state(
            frame["has_contract"], frame["out_of_contract"], frame["months_to_contract_end"]
        )
    )
    reason, usable = policy_reasons(frame, params, net_values(frame, params, effects))
    values = [
        None if r is not None else [float(v) if np.isfinite(v) else None for v in row]
        for r, row in zip(reason, usable, strict=True)
    ]
    return pd.DataFrame(
        {"subscriber_id": frame["subscriber_id"].to_numpy(), "reason": reason, "offer_values": values}
    )
