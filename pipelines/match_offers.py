"""Stage: match retention offers to the warning list of a month under budget, capacity and contact policy.

``match_offers_month(spark, cfg, M)``:

1. builds a candidate row per line of ``warning_list`` for M with what the policy needs from
   ``features_monthly`` (plan type, consent, contract state, open complaints) and the contact history
   (an assignment in ``offer_assignments`` or a contact in ``campaign_outcomes`` within
   ``offers.policy.cooldown_months`` before M: cooling down) (:mod:`pipelines.offer_candidates`);
2. on the executors (``mapInArrow``, :mod:`models.offers`): each line's exclusion reason, or the expected
   net value of every offer it may get;
3. solves the assignment: exactly (HiGHS MILP on the driver) when there are at most
   ``offers.exact_max_candidates`` candidates, reporting the greedy total beside it; otherwise by
   Lagrangian prices iterated in Spark (one small aggregation per iteration), reporting the bound on
   the gap to the optimum;
4. holds out ``offers.holdout_rate`` of the assigned lines in each cohort x risk band stratum (the lowest
   hashes of salt, month and subscriber: reproducible; ``round(rate x n)`` with halves rounded up), who
   get no offer (the control group);
5. replaces the ``score_month = M`` partition of ``offer_assignments``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from models.offers import Assignment, dual_bound, solve_exact, solve_greedy, update_prices
from models.params import OfferParams
from pipelines.core.config import Config
from pipelines.core.lake import Lake
from pipelines.core.manifest import recorded_run
from pipelines.offer_candidates import candidate_frame, candidate_values, offer_effects

log = logging.getLogger(__name__)

# warning-list columns carried onto every assignment row
CARRIED = (
    "churn_probability",
    "arpu_3m",
    "churn_type",
    "value_tier",
    "strategy",
    "cohort",
    "risk_band",
    "model_version",
    "run_id",
)


@dataclass
class MatchReport:
    month: str
    method: str
    optimised_value: float  # of every picked line, the control group included
    candidates: int
    assigned: int
    holdout: int
    total_value: float
    spend: float
    budget: float
    greedy_value: float | None
    bound: float | None
    by_status: dict[str, int]


def match_offers_month(spark: SparkSession, cfg: Config, month: str) -> MatchReport:
    """Assign offers for ``month`` and replace its partition of ``offer_assignments``."""
    lake = Lake(spark, cfg)
    params = cfg.offers
    with recorded_run(lake, "match_offers", month) as run:
        base = candidate_frame(lake, month, params).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            effects = offer_effects(lake, month)
            run.input_versions = lake.versions(["warning_list", "features_monthly", "offer_effects"])
            if effects:
                log.info("match_offers %s: measured effects %s", month, effects)
            values = candidate_values(base, params, effects).persist(StorageLevel.MEMORY_AND_DISK)
            candidates = values.where(F.col("reason").isNull())
            n = candidates.count()
            if n <= params.exact_max_candidates:
                picked, assignment, greedy = solve_on_driver(spark, candidates, params)
            else:
                picked, assignment = solve_in_spark(candidates, params)
                greedy = None
            assignments = with_holdout(base, values, picked, month, params)
            lake.replace(
                _output(assignments, base, lake, month, params),
                "offer_assignments",
                {"score_month": [month]},
                merge_schema=True,  # lakes written before a column was added
            )
            values.unpersist()
        finally:
            base.unpersist()
        written = lake.read("offer_assignments").where(F.col("score_month") == month)
        groups = (
            written.groupBy("status", "exclusion_reason")
            .agg(
                F.count("*").alias("n"),
                F.sum("cost").alias("cost"),
                F.sum("expected_net_value").alias("value"),
            )
            .collect()
        )  # one pass: counts by status and reason, spend and value of the assigned
        status = {(r.status, r.exclusion_reason): r.n for r in groups}
        assigned = [r for r in groups if r.status == "assigned"]
        spend = sum(r.cost or 0.0 for r in assigned)
        total = sum(r.value or 0.0 for r in assigned)
        report = MatchReport(
            month,
            assignment.method,
            assignment.total,
            n,
            status.get(("assigned", None), 0),
            status.get(("holdout", "holdout"), 0),
            float(total),
            float(spend),
            params.budget,
            None if greedy is None else greedy.total,
            assignment.bound,
            {
                f"{s}:{r}" if r else s: c
                for (s, r), c in sorted(status.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
            },
        )
        run.output_versions = lake.versions(["offer_assignments"])
        run.row_counts = {"candidates": n, "assigned": report.assigned, "holdout": report.holdout}
        run.flags = {
            "method": assignment.method,
            "optimised_value": assignment.total,
            "greedy_value": report.greedy_value,
            "bound": assignment.bound,
            "effects": effects,
        }
        log.info(
            "match_offers %s: %s solve over %d candidates: value %.1f (greedy %s, bound %s), %d assigned, "
            "%d held out, spend %.1f of %.1f",
            month,
            assignment.method,
            n,
            assignment.total,
            "-" if greedy is None else f"{greedy.total:.1f}",
            "-" if assignment.bound is None else f"{assignment.bound:.1f}",
            report.assigned,
            report.holdout,
            report.spend,
            params.budget,
        )
        return report


def solve_on_driver(
    spark: SparkSession, candidates: DataFrame, params: OfferParams
) -> tuple[DataFrame, Assignment, Assignment]:
    """Exact MILP (and greedy for comparison) on the collected candidate set (small by configuration)."""
    rows = candidates.select("subscriber_id", "offer_values").collect()
    ids = [r.subscriber_id for r in rows]
    values = np.array(
        [[-np.inf if v is None else v for v in r.offer_values] for r in rows], dtype=float
    ).reshape(len(rows), len(params.offers))
    exact, greedy = solve_exact(values, params), solve_greedy(values, params)
    picked = [
        (s, int(o), float(values[i, o]))
        for i, (s, o) in enumerate(zip(ids, exact.offer, strict=True))
        if o >= 0
    ]
    df = spark.createDataFrame(picked, "subscriber_id string, offer_index int, expected_net_value double")
    return df, exact, greedy


def solve_in_spark(candidates: DataFrame, params: OfferParams) -> tuple[DataFrame, Assignment]:
    """Lagrangian prices: each candidate picks its best offer at the prices, the driver moves the prices."""
    m = len(params.offers)
    costs = np.array([o.cost for o in params.offers])
    cached = candidates.select("subscriber_id", _filled("offer_values").alias("v")).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    prices, mu = np.zeros(m), 0.0
    best_bound, best_prices = np.inf, (prices, mu)
    try:
        for i in range(params.lagrangian_iterations):
            picks = price_picks(cached, prices, mu, costs)
            agg = (
                picks.groupBy("offer_index")
                .agg(F.count("*").alias("n"), F.sum("reduced").alias("reduced"))
                .collect()
            )
            counts = np.zeros(m)
            reduced_total = 0.0
            for r in agg:
                if r.offer_index >= 0:
                    counts[r.offer_index] = r.n
                    reduced_total += r.reduced
            bound = dual_bound(reduced_total, prices, mu, params)
            if bound < best_bound:
                best_bound, best_prices = bound, (prices.copy(), mu)
            spend = float(counts @ costs)
            prices, mu = update_prices(prices, mu, counts, spend, params, step=1.0 / (1 + i) ** 0.5)
        picks = price_picks(cached, *best_prices, costs).where(F.col("offer_index") >= 0)
        feasible = repair_picks(picks, params).persist(StorageLevel.MEMORY_AND_DISK)
        total = feasible.agg(F.sum("expected_net_value")).first()[0] or 0.0
    finally:
        cached.unpersist()
    return feasible, Assignment(np.empty(0, dtype=int), float(total), "lagrangian", float(best_bound))


def _filled(column: str):
    """The offer values with null (offer not usable) as a value no offer can lose to."""
    return F.transform(column, lambda v: F.coalesce(v, F.lit(-1e300)))


def price_picks(cached: DataFrame, prices: np.ndarray, mu: float, costs: np.ndarray) -> DataFrame:
    """Each line's best offer at the prices (``offer_index`` -1 when no reduced value is positive), its
    reduced value (value - price - mu x cost) and its value."""
    price = F.array(*[F.lit(float(p + mu * c)) for p, c in zip(prices, costs, strict=True)])
    reduced = F.zip_with("v", price, lambda v, p: v - p)
    best = F.array_max("_r")
    index = (F.array_position("_r", best) - 1).cast("int")
    return cached.withColumn("_r", reduced).select(
        "subscriber_id",
        F.when(best > 0, index).otherwise(F.lit(-1)).alias("offer_index"),
        F.when(best > 0, best).otherwise(F.lit(0.0)).alias("reduced"),
        F.element_at("v", index + 1).alias("expected_net_value"),
    )


def repair_picks(picks: DataFrame, params: OfferParams) -> DataFrame:
    """Make the picks at some prices feasible: within each offer's capacity (best value first), then the
    best-valued lines whose running cost stays within the budget (the cut is a prefix: once a line does
    not fit, no later line is kept, even a cheaper one). Ties on value are broken by subscriber id."""
    caps = F.element_at(
        F.array(*[F.lit(-1 if o.capacity is None else o.capacity) for o in params.offers]),
        F.col("offer_index") + 1,
    )
    costs = F.element_at(F.array(*[F.lit(float(o.cost)) for o in params.offers]), F.col("offer_index") + 1)
    by_offer = Window.partitionBy("offer_index").orderBy(F.desc("expected_net_value"), "subscriber_id")
    within = picks.withColumn("_n", F.row_number().over(by_offer)).where((caps < 0) | (F.col("_n") <= caps))
    running = Window.orderBy(F.desc("expected_net_value"), "subscriber_id").rowsBetween(
        Window.unboundedPreceding, 0
    )
    return (
        within.withColumn("_spend", F.sum(costs).over(running))
        .where(F.col("_spend") <= F.lit(params.budget + 1e-9))
        .select("subscriber_id", "offer_index", "expected_net_value")
    )


def with_holdout(
    base: DataFrame, values: DataFrame, picked: DataFrame, month: str, params: OfferParams
) -> DataFrame:
    """Every line's status, offer index and exclusion reason (the control group is drawn from the picked)."""
    key = F.sha2(F.concat_ws("|", F.lit(params.holdout_salt), F.lit(month), F.col("subscriber_id")), 256)
    stratum = Window.partitionBy("cohort", "risk_band")
    ordered = stratum.orderBy(key)
    strata = base.select("subscriber_id", "cohort", "risk_band")
    chosen = (
        picked.join(strata, "subscriber_id")
        .withColumn("_rank", F.row_number().over(ordered))
        .withColumn("_size", F.count("*").over(stratum))
        .withColumn("_holdout", F.col("_rank") <= F.round(F.col("_size") * F.lit(params.holdout_rate)))
        .select("subscriber_id", "offer_index", "expected_net_value", "_holdout")
    )
    best = F.array_max(_filled("offer_values"))
    best_index = (F.array_position(_filled("offer_values"), best) - 1).cast("int")
    return values.join(chosen, "subscriber_id", "left").select(
        "subscriber_id",
        F.when(F.col("_holdout"), "holdout")
        .when(F.col("offer_index").isNotNull(), "assigned")
        .otherwise("excluded")
        .alias("status"),
        F.when(F.col("_holdout"), "holdout")
        .when(F.col("offer_index").isNotNull(), F.lit(None))
        .when(F.col("reason").isNotNull(), F.col("reason"))
        .otherwise(F.lit("unassigned"))
        .alias("exclusion_reason"),
        "offer_index",  # the offer picked (also for the control group: the one it would have got)
        F.when(F.col("offer_index").isNotNull(), F.col("expected_net_value"))
        .otherwise(F.when(F.col("reason").isNull(), best))
        .alias("expected_net_value"),
        F.when(F.col("reason").isNull() & F.col("offer_index").isNull(), best_index).alias("_best_index"),
    )


def _output(
    assignments: DataFrame, base: DataFrame, lake: Lake, month: str, params: OfferParams
) -> DataFrame:
    """Name the offers, split unassigned candidates into ``capacity`` / ``budget``; msisdn and lineage."""
    offers = lake.spark.createDataFrame(
        [(i, o.id, o.channel, float(o.cost), o.capacity) for i, o in enumerate(params.offers)],
        "offer_index int, offer_id string, channel string, cost double, capacity int",
    )
    used = assignments.where(F.col("offer_index").isNotNull()).groupBy("offer_index").count()
    full = {r.offer_index: r["count"] for r in used.collect()}
    full_offers = [
        i for i, o in enumerate(params.offers) if o.capacity is not None and full.get(i, 0) >= o.capacity
    ]
    unassigned_reason = F.when(
        F.col("_best_index").isin(*full_offers) if full_offers else F.lit(False), "capacity"
    ).otherwise("budget")
    msisdn = (
        lake.read("subscriptions")
        .where(F.col("month") == month)
        .select("subscriber_id", "msisdn")
        .dropDuplicates(["subscriber_id"])
    )
    w = base.select("subscriber_id", *CARRIED)
    out = (
        assignments.join(offers, "offer_index", "left")
        .join(w, "subscriber_id", "left")
        .join(msisdn, "subscriber_id", "left")
    )
    return out.select(
        F.lit(month).alias("score_month"),
        "subscriber_id",
        F.when(F.col("status") == "assigned", F.col("msisdn")).alias("msisdn"),
        F.when(F.col("status") == "assigned", F.col("offer_id")).alias("offer_id"),
        F.col("offer_id").alias("intended_offer_id"),
        "status",
        F.when(F.col("exclusion_reason") == "unassigned", unassigned_reason)
        .otherwise(F.col("exclusion_reason"))
        .alias("exclusion_reason"),
        "expected_net_value",
        F.when(F.col("status") == "assigned", F.col("cost")).alias("cost"),
        F.when(F.col("status") == "assigned", F.col("channel")).alias("channel"),
        *CARRIED,
    )
