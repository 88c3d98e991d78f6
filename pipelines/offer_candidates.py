"""The candidates of a month's offer matching: the warning list with the contact policy's inputs, and each
line's exclusion reason or the expected net value of every offer (:mod:`models.offers` on the executors).

- :func:`candidate_frame`: one row per line of ``warning_list`` for M with what the policy needs from
  ``features_monthly`` (plan type, consent, contract state, an open complaint: an unresolved complaint
  within the care family's ``features.trend_months`` window), the contact history (cooling down: an
  assignment or a control-group draw within ``offers.policy.cooldown_months``), the randomisation unit
  (``offers.randomise_by``) and the programme hold-out;
- :func:`offer_effects`: the effects measured by the evaluation, which replace the catalogue's priors,
  and the segments where an offer was measured to raise churn;
- :func:`targeting`: the promoted uplift model (``uplift.registered_model@champion``), when matching
  targets by it rather than by ``churn_probability x effect``;
- :func:`candidate_values`: per line, its exclusion reason or its offers' values (from the uplift model
  for the offers it covers), and the offers it may be explored with (``mapInArrow``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from features.calendar import add_months
from features.columns import window_col
from models.offers import (
    CANDIDATE_COLUMNS,
    SEGMENT_DIMENSIONS,
    OfferEffects,
    contract_state,
    net_values,
    policy_reasons,
)
from models.params import OfferParams
from models.uplift import UpliftModel
from pipelines.core.arrow import BatchFn, pandas_batches
from pipelines.core.config import Config
from pipelines.core.errors import InputNotReadyError
from pipelines.core.experiment import CONTRACT_INPUTS, CONTRACT_STATE, feature_columns, is_experiment_line
from pipelines.core.lake import Lake, decimals_as_double

log = logging.getLogger(__name__)

VALUES_SCHEMA = "subscriber_id string, reason string, offer_values array<double>, explore_offers array<int>"
# what the values need: the candidate columns, with the contract state still as its three inputs
VALUE_INPUTS = (
    *(c for c in CANDIDATE_COLUMNS if c != "contract_state"),
    *CONTRACT_INPUTS,
)


def candidate_frame(
    lake: Lake, month: str, params: OfferParams, extra_features: Sequence[str] = ()
) -> DataFrame:
    """The warning list of ``month`` with the policy's inputs, one row per line; ``extra_features``: the
    feature-table columns an uplift model needs beside them."""
    if not lake.exists("warning_list") or (month,) not in lake.partition_values(
        "warning_list", "score_month"
    ):
        raise InputNotReadyError(
            f"match_offers {month}: no warning list for {month} (run jobs/score.py --month {month})"
        )
    complaints = window_col("unresolved_complaints", lake.cfg.features.trend_months)
    warning = lake.read("warning_list").where(F.col("score_month") == month)
    table = lake.read("features_monthly")
    household = F.col("household_id") if "household_id" in table.columns else F.lit(None).cast("string")
    policy = ["subscriber_id", "plan_type", "marketing_consent", *CONTRACT_INPUTS]
    extra = feature_columns(
        lake, extra_features, [*warning.columns, *policy, "open_complaint", "household_id"]
    )
    features = decimals_as_double(
        table.where(F.col("month") == month).select(
            *policy,
            (F.coalesce(F.col(complaints), F.lit(0)) > 0).alias("open_complaint"),
            household.alias("household_id"),
            *extra,
        )
    )
    recent = recently_contacted(lake, month, params.policy.cooldown_months)
    unit = F.col("subscriber_id")
    if params.randomise_by == "household":
        unit = F.coalesce(F.concat(F.lit("h:"), F.col("household_id")), F.col("subscriber_id"))
    return (
        warning.join(features, "subscriber_id", "left")
        .join(recent, "subscriber_id", "left")
        .withColumn("cooling_down", F.coalesce(F.col("cooling_down"), F.lit(False)))
        .withColumn("unit", unit)
        .withColumn(
            "programme_holdout",
            uniform_hash(F.lit(params.programme_holdout_salt), F.col("unit"))
            < F.lit(params.programme_holdout_rate),
        )
    )


def uniform_hash(*parts: Column) -> Column:
    """A reproducible draw in [0, 1) from the SHA-256 of the parts (salt, month, unit): the same parts
    give the same draw in every run and engine."""
    digest = F.sha2(F.concat_ws("|", *parts), 256)
    return F.conv(F.substring(digest, 1, 13), 16, 10).cast("double") / F.lit(float(16**13))


def recently_contacted(lake: Lake, month: str, months: int) -> DataFrame:
    """Lines with a retention offer assigned, or a contact made, in the ``months`` before ``month``."""
    spark = lake.spark
    empty = spark.createDataFrame([], "subscriber_id string")
    if months == 0:
        return empty.withColumn("cooling_down", F.lit(True))
    first = add_months(month, -months)
    parts = [empty]
    if lake.exists("offer_assignments"):
        # an offer's control group too: a control line stays untouched while its outcome is open (the
        # programme hold-out is never contacted, so it has nothing to cool down from)
        assignments = lake.read("offer_assignments")
        # a lake written before the programme hold-out: every held-out line was an offer's control
        experiment = (
            is_experiment_line()
            if "intended_offer_id" in assignments.columns
            else F.col("status").isin("assigned", "holdout")
        )
        parts.append(
            assignments.where(
                (F.col("score_month") >= first) & (F.col("score_month") < month) & experiment
            ).select("subscriber_id")
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


def offer_effects(lake: Lake, month: str) -> OfferEffects:
    """The latest measured effects (``offer_effects``, written by the evaluation) known by ``month``: per
    offer the effect to use (underpowered estimates are not fed back), and the segments where the offer
    significantly raised churn."""
    if not lake.exists("offer_effects"):
        return OfferEffects()
    table = lake.read("offer_effects").where(F.col("month") <= month)
    latest = table.agg(F.max("month")).first()[0]
    if latest is None:
        return OfferEffects()
    rows = table.where(F.col("month") == latest)
    if "dimension" not in rows.columns:  # written before segments were measured: offer rows only
        effect = {r.offer_id: float(r.effect) for r in rows.where(F.col("cohort").isNull()).collect()}
        return OfferEffects(effect)
    found = rows.where(~F.col("underpowered")).collect()
    effect = {r.offer_id: float(r.effect) for r in found if r.dimension == "all"}
    harmful = frozenset(
        (r.offer_id, r.dimension, r.segment)
        for r in found
        if r.dimension in SEGMENT_DIMENSIONS and r.effect_diff_high is not None and r.effect_diff_high < 0
    )
    return OfferEffects(effect, harmful)


@dataclass(frozen=True)
class Targeting:
    """The uplift model matching targets by: its registered version, the run month it was promoted as of,
    and the catalogue's offers it covers (the others keep the rule)."""

    model: UpliftModel
    version: str
    run_month: str | None
    offers: tuple[str, ...]

    def describe(self) -> str:
        return f"uplift version {self.version} for {', '.join(self.offers)}; the rule for the other offers"


def targeting(cfg: Config, month: str) -> Targeting | None:
    """The promoted uplift model (``uplift.registered_model`` alias ``champion``) matching for ``month``
    targets by, or None: the rule (``uplift.enabled`` false, nothing promoted, a model promoted as of a
    later month, or one that covers none of the catalogue's offers)."""
    from pipelines.core.tracking import CHAMPION, configure_mlflow, load_uplift, store_exists

    if not cfg.uplift.enabled or not store_exists(cfg):
        return None
    configure_mlflow(cfg)
    loaded = load_uplift(cfg.uplift.registered_model, CHAMPION)
    if loaded is None:
        return None
    model, version, run_month = loaded
    if run_month is not None and run_month > month:
        log.info(
            "match_offers %s: uplift version %s was promoted as of %s, later: the rule",
            month,
            version,
            run_month,
        )
        return None
    offers = tuple(model.covered([o.id for o in cfg.offers.offers]))
    return Targeting(model, version, run_month, offers) if offers else None


def uplift_features(uplift: Targeting | None) -> list[str]:
    """The columns the uplift model reads (``contract_state`` is derived from its inputs)."""
    return [] if uplift is None else [c for c in uplift.model.features if c != CONTRACT_STATE]


def candidate_values(
    base: DataFrame, params: OfferParams, effects: OfferEffects, uplift: Targeting | None = None
) -> DataFrame:
    """Each line of :func:`candidate_frame`: its exclusion reason, or its offers' expected net values."""
    columns = list(dict.fromkeys([*VALUE_INPUTS, *uplift_features(uplift)]))
    model = None if uplift is None else uplift.model
    return base.select(*columns).mapInArrow(value_batches(params, effects, model), VALUES_SCHEMA)


def value_batches(params: OfferParams, effects: OfferEffects, uplift: UpliftModel | None = None) -> BatchFn:
    """``mapInArrow``: each line's exclusion reason or its offers' expected net values (null: not usable)."""
    return pandas_batches(
        VALUES_SCHEMA, lambda: partial(value_frame, params=params, effects=effects, uplift=uplift)
    )


def value_frame(
    frame: pd.DataFrame, params: OfferParams, effects: OfferEffects, uplift: UpliftModel | None = None
) -> pd.DataFrame:
    """One batch of :func:`value_batches` (pure pandas); with an uplift model, the offers it covers are
    valued by its predicted churn reduction, the others by the rule."""
    frame = frame.assign(
        contract_state=contract_state(
            frame["has_contract"], frame["out_of_contract"], frame["months_to_contract_end"]
        )
    )
    predicted = None if uplift is None else uplift.predict_effect(frame, [o.id for o in params.offers])
    policy = policy_reasons(frame, params, net_values(frame, params, effects, uplift=predicted))
    # a line no offer was worth keeps its values: exploration may still give it an offer, whose value
    # (negative) then counts in the assignment's expected value
    values = [
        None if r not in (None, "below_value") else [float(v) if np.isfinite(v) else None for v in row]
        for r, row in zip(policy.reason, policy.usable, strict=True)
    ]
    explore = [np.flatnonzero(row).tolist() or None for row in policy.explorable]
    return pd.DataFrame(
        {
            "subscriber_id": frame["subscriber_id"].to_numpy(),
            "reason": policy.reason,
            "offer_values": values,
            "explore_offers": explore,
        }
    )
