"""Stage: match retention offers to the warning list of a month under budget, capacity and contact policy,
as a randomised experiment that keeps measuring every offer.

``match_offers_month(spark, cfg, M)``:

1. builds a candidate row per line of ``warning_list`` for M with what the policy needs
   (:mod:`pipelines.offer_candidates`): an assignment or a control-group draw within
   ``offers.policy.cooldown_months`` before M means cooling down;
2. on the executors (``mapInArrow``, :mod:`models.offers`): each line's exclusion reason, or the expected
   net value of every offer it may get: ``churn_probability x effect x value_of_save - cost`` (the rule),
   or, for the offers a promoted uplift model covers (:func:`pipelines.offer_candidates.targeting`), its
   predicted churn reduction in place of ``churn_probability x effect``;
3. sets aside the **programme hold-out** (``offers.programme_holdout_rate`` of subscribers by a salted
   hash of the id alone: the same lines every month, never offered anything);
4. **explores**: ``offers.exploration_rate`` of the candidates (and of the lines no offer is worth its
   cost to) get a random eligible offer, within ``offers.exploration_max_budget_share`` of the budget,
   so an offer never picked, or once measured at or below zero, keeps being measured;
5. solves the assignment of the rest within what exploration left of budget and capacities: exactly
   (HiGHS MILP on the driver) when there are at most ``offers.exact_max_candidates`` candidates,
   reported beside a greedy by value, a greedy by value per unit of cost and the LP bound; otherwise by
   Lagrangian prices iterated in Spark (one small aggregation per iteration), with the bound on the gap;
6. draws each offer's **control group** among its picked lines (explored and optimised alike):
   ``offers.holdout_rate`` of them, stratified by arm, cohort and risk band (a systematic draw over the
   lines ordered by stratum and the hash of salt, month and unit, from a random start), at least
   ``offers.min_control_lines`` where the offer has enough lines (:func:`models.offers.control_size`);
   the control lines get no offer and count as contacted for the cool-down;
7. replaces the ``score_month = M`` partition of ``offer_assignments`` (``arm``: ``optimised`` or
   ``explore`` for the picked lines; ``programme_holdout`` on every line).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from models.offers import (
    Assignment,
    control_size,
    dual_bound,
    lp_bound,
    solve_exact,
    solve_greedy,
    update_prices,
)
from models.params import OfferParams
from pipelines.core.config import Config
from pipelines.core.lake import Lake
from pipelines.core.manifest import recorded_run
from pipelines.offer_candidates import (
    candidate_frame,
    candidate_values,
    offer_effects,
    targeting,
    uniform_hash,
    uplift_features,
)

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
PICKS_SCHEMA = "subscriber_id string, offer_index int, expected_net_value double, arm string"


@dataclass
class MatchReport:
    month: str
    method: str
    optimised_value: float  # of every optimised line, its control lines included
    candidates: int
    assigned: int
    holdout: int
    total_value: float
    spend: float
    budget: float
    greedy_value: float | None  # greedy by value on the same candidates, budget and capacities
    bound: float | None  # an upper bound on the optimum: the LP relaxation's, or the Lagrangian dual's
    by_status: dict[str, int]
    greedy_ratio_value: float | None = None  # greedy by value per unit of cost
    explored: int = 0
    explore_spend: float = 0.0
    programme_holdout: int = 0
    underpowered: list[str] = field(default_factory=list)  # offers whose control is under min_control_lines
    targeting: str = "rule"  # how offers were valued: rule (churn_probability x effect) or uplift


def match_offers_month(spark: SparkSession, cfg: Config, month: str) -> MatchReport:
    """Assign offers for ``month`` and replace its partition of ``offer_assignments``."""
    lake = Lake(spark, cfg)
    params = cfg.offers
    with recorded_run(lake, "match_offers", month) as run:
        uplift = targeting(cfg, month)
        log.info("match_offers %s: values by %s", month, "the rule" if uplift is None else uplift.describe())
        base = candidate_frame(lake, month, params, uplift_features(uplift)).persist(
            StorageLevel.MEMORY_AND_DISK
        )
        try:
            effects = offer_effects(lake, month)
            run.input_versions = lake.versions(["warning_list", "features_monthly", "offer_effects"])
            if uplift is not None:
                run.model_versions = {"uplift": cfg.uplift.registered_model, "version": uplift.version}
            if effects.effect or effects.harmful:
                log.info(
                    "match_offers %s: measured effects %s; harmful in %s",
                    month,
                    {o: round(e, 3) for o, e in sorted(effects.effect.items())},
                    sorted(effects.harmful),
                )
            values = (
                candidate_values(base, params, effects, uplift)
                .join(
                    base.select("subscriber_id", "unit", "programme_holdout", "cohort", "risk_band"),
                    "subscriber_id",
                )
                .withColumn(
                    "reason",
                    F.when(
                        F.col("programme_holdout") & F.col("explore_offers").isNotNull(),
                        F.lit("programme_holdout"),
                    ).otherwise(F.col("reason")),
                )
                .persist(StorageLevel.MEMORY_AND_DISK)
            )
            explored = explore(values, month, params).persist(StorageLevel.MEMORY_AND_DISK)
            left = remaining(params, explored)
            candidates = values.where(F.col("reason").isNull()).join(
                explored.select("subscriber_id"), "subscriber_id", "left_anti"
            )
            n = candidates.count()
            greedy = greedy_ratio = None
            if n <= params.exact_max_candidates:
                picked, assignment, greedy, greedy_ratio = solve_on_driver(spark, candidates, left)
            else:
                picked, assignment = solve_in_spark(candidates, left)
            picked = picked.withColumn("arm", F.lit("optimised")).unionByName(explored)
            controls, underpowered = control_sizes(picked, params)
            assignments = with_holdout(values, picked, month, params, controls)
            if params.randomise_by == "household":  # whole households drawn: the sizes are as they fell
                underpowered = drawn_underpowered(assignments, params)
            lake.replace(
                _output(assignments, base, lake, month, params),
                "offer_assignments",
                {"score_month": [month]},
                merge_schema=True,  # lakes written before a column was added
            )
            explored.unpersist()
            values.unpersist()
        finally:
            base.unpersist()
        report = _report(lake, month, params, assignment, n, greedy, greedy_ratio, underpowered)
        report.targeting = "rule" if uplift is None else f"uplift version {uplift.version}"
        run.output_versions = lake.versions(["offer_assignments"])
        run.row_counts = {
            "candidates": n,
            "assigned": report.assigned,
            "holdout": report.holdout,
            "explored": report.explored,
            "programme_holdout": report.programme_holdout,
        }
        run.flags = {
            "method": assignment.method,
            "optimised_value": assignment.total,
            "greedy_value": report.greedy_value,
            "greedy_ratio_value": report.greedy_ratio_value,
            "bound": assignment.bound,
            "effects": dict(effects.effect),
            "harmful": sorted("/".join(h) for h in effects.harmful),
            "underpowered": underpowered,
            "targeting": "rule" if uplift is None else "uplift",
            "uplift_version": None if uplift is None else uplift.version,
            "uplift_offers": [] if uplift is None else list(uplift.offers),
        }
        log.info(
            "match_offers %s: %s solve over %d candidates: value %.1f (greedy %s, by value per cost %s, "
            "bound %s), %d assigned (%d explored), %d held out, %d in the programme hold-out, spend %.1f of "
            "%.1f",
            month,
            assignment.method,
            n,
            assignment.total,
            _fmt(greedy and greedy.total),
            _fmt(greedy_ratio and greedy_ratio.total),
            _fmt(assignment.bound),
            report.assigned,
            report.explored,
            report.holdout,
            report.programme_holdout,
            report.spend,
            params.budget,
        )
        if underpowered:
            log.warning(
                "match_offers %s: control groups under %d lines (underpowered this month, pooled over "
                "months by the evaluation): %s",
                month,
                params.min_control_lines,
                ", ".join(underpowered),
            )
        return report


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _report(
    lake: Lake,
    month: str,
    params: OfferParams,
    assignment: Assignment,
    n: int,
    greedy: Assignment | None,
    greedy_ratio: Assignment | None,
    underpowered: list[str],
) -> MatchReport:
    """What was written: counts by status and reason, spend and value of the assigned (one pass)."""
    written = lake.read("offer_assignments").where(F.col("score_month") == month)
    groups = (
        written.groupBy("status", "exclusion_reason", "arm")
        .agg(
            F.count("*").alias("n"),
            F.sum("cost").alias("cost"),
            F.sum("expected_net_value").alias("value"),
        )
        .collect()
    )
    status: dict[tuple[str, str | None], int] = {}
    for r in groups:
        status[(r.status, r.exclusion_reason)] = status.get((r.status, r.exclusion_reason), 0) + r.n
    assigned = [r for r in groups if r.status == "assigned"]
    return MatchReport(
        month,
        assignment.method,
        assignment.total,
        n,
        status.get(("assigned", None), 0),
        status.get(("holdout", "holdout"), 0),
        float(sum(r.value or 0.0 for r in assigned)),
        float(sum(r.cost or 0.0 for r in assigned)),
        params.budget,
        None if greedy is None else greedy.total,
        assignment.bound,
        {
            f"{s}:{r}" if r else s: c
            for (s, r), c in sorted(status.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
        },
        None if greedy_ratio is None else greedy_ratio.total,
        sum(r.n for r in assigned if r.arm == "explore"),
        float(sum(r.cost or 0.0 for r in assigned if r.arm == "explore")),
        status.get(("holdout", "programme_holdout"), 0),
        underpowered,
    )


def explore(values: DataFrame, month: str, params: OfferParams) -> DataFrame:
    """The exploration slice: lines drawn by hash get a random eligible offer (picks in ``PICKS_SCHEMA``),
    within each offer's capacity and ``exploration_max_budget_share`` of the budget (lowest draws first)."""
    salt = F.lit(params.holdout_salt)
    draw = uniform_hash(salt, F.lit("explore"), F.lit(month), F.col("unit"))
    pick = uniform_hash(salt, F.lit("explore-offer"), F.lit(month), F.col("subscriber_id"))
    k = F.size("explore_offers")
    lines = values.where(
        F.col("explore_offers").isNotNull()
        & (F.col("reason").isNull() | (F.col("reason") == "below_value"))
        & (draw < F.lit(params.exploration_rate))
    ).select(
        "subscriber_id",
        F.element_at("explore_offers", (F.floor(pick * k) + 1).cast("int")).alias("offer_index"),
        "offer_values",
        draw.alias("_draw"),
    )
    caps = F.element_at(
        F.array(*[F.lit(-1 if o.capacity is None else o.capacity) for o in params.offers]),
        F.col("offer_index") + 1,
    )
    costs = F.element_at(F.array(*[F.lit(float(o.cost)) for o in params.offers]), F.col("offer_index") + 1)
    by_offer = Window.partitionBy("offer_index").orderBy("_draw", "subscriber_id")
    running = Window.orderBy("_draw", "subscriber_id").rowsBetween(Window.unboundedPreceding, 0)
    return (
        lines.withColumn("_n", F.row_number().over(by_offer))
        .where((caps < 0) | (F.col("_n") <= caps))
        .withColumn("_spend", F.sum(costs).over(running))
        .where(F.col("_spend") <= F.lit(params.budget * params.exploration_max_budget_share + 1e-9))
        .select(
            "subscriber_id",
            "offer_index",
            F.element_at("offer_values", F.col("offer_index") + 1).alias("expected_net_value"),
            F.lit("explore").alias("arm"),
        )
    )


def remaining(params: OfferParams, explored: DataFrame) -> OfferParams:
    """The offer parameters with the budget and capacities exploration has used taken off."""
    used = _per_offer(explored)
    spend = sum(params.offers[i].cost * n for i, n in used.items())
    offers = tuple(
        o if o.capacity is None else o.model_copy(update={"capacity": max(0, o.capacity - used.get(i, 0))})
        for i, o in enumerate(params.offers)
    )
    return params.model_copy(update={"offers": offers, "budget": max(0.0, params.budget - spend)})


def _per_offer(picks: DataFrame) -> dict[int, int]:
    return {r.offer_index: r.n for r in picks.groupBy("offer_index").agg(F.count("*").alias("n")).collect()}


def control_sizes(picked: DataFrame, params: OfferParams) -> tuple[dict[int, int], list[str]]:
    """Control lines per offer index, and the offers whose control is under ``min_control_lines``."""
    counts = _per_offer(picked)
    sizes = {i: control_size(n, params) for i, n in counts.items()}
    under = sorted(
        f"{params.offers[i].id} ({sizes[i]} of {n})"
        for i, n in counts.items()
        if sizes[i] < params.min_control_lines
    )
    return sizes, under


def drawn_underpowered(assignments: DataFrame, params: OfferParams) -> list[str]:
    """The offers whose drawn control group (``with_holdout``'s rows) is under ``min_control_lines``."""
    picked = assignments.where(F.col("offer_index").isNotNull() & (F.col("status") != "excluded"))
    rows = picked.groupBy("offer_index").agg(
        F.count("*").alias("n"), F.count_if(F.col("status") == "holdout").alias("held")
    )
    return sorted(
        f"{params.offers[r.offer_index].id} ({r.held} of {r.n})"
        for r in rows.collect()
        if r.held < params.min_control_lines
    )


def solve_on_driver(
    spark: SparkSession, candidates: DataFrame, params: OfferParams
) -> tuple[DataFrame, Assignment, Assignment, Assignment]:
    """Exact MILP on the collected candidate set (small by configuration), with the LP bound, and the
    greedy by value and by value per unit of cost for comparison."""
    rows = candidates.select("subscriber_id", "offer_values").collect()
    ids = [r.subscriber_id for r in rows]
    values = np.array(
        [[-np.inf if v is None else v for v in r.offer_values] for r in rows], dtype=float
    ).reshape(len(rows), len(params.offers))
    exact = solve_exact(values, params)
    exact.bound = lp_bound(values, params)
    greedy, ratio = solve_greedy(values, params), solve_greedy(values, params, by="ratio")
    picked = [
        (s, int(o), float(values[i, o]))
        for i, (s, o) in enumerate(zip(ids, exact.offer, strict=True))
        if o >= 0
    ]
    df = spark.createDataFrame(picked, "subscriber_id string, offer_index int, expected_net_value double")
    return df, exact, greedy, ratio


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
    values: DataFrame, picked: DataFrame, month: str, params: OfferParams, controls: dict[int, int]
) -> DataFrame:
    """Every line's status, offer index, arm and exclusion reason; each offer's control group is drawn
    among its picked lines (``controls``: its size per offer index; by household: a household's lines
    share one draw against ``holdout_rate``).

    By line (``randomise_by: subscriber``) the draw is stratified: an offer's lines ordered by arm,
    cohort, risk band and their hash, every (n / c)-th is taken from a start drawn for the offer and month
    (systematic sampling with a random start). Exactly c lines, each stratum its proportional share to
    within one line, and every line the same chance c / n."""
    draw = uniform_hash(F.lit(params.holdout_salt), F.lit(month), F.col("unit"))
    chosen = picked.join(
        values.select("subscriber_id", "unit", "cohort", "risk_band"), "subscriber_id"
    ).withColumn("_draw", draw)
    if params.randomise_by == "household":
        chosen = chosen.withColumn("_holdout", F.col("_draw") < F.lit(params.holdout_rate))
    else:
        size = F.element_at(
            F.create_map(*[F.lit(x) for i, c in controls.items() for x in (i, c)])
            if controls
            else F.create_map(F.lit(-1), F.lit(0)),
            F.col("offer_index"),
        )
        order = Window.partitionBy("offer_index").orderBy(
            "arm", "cohort", "risk_band", "_draw", "subscriber_id"
        )
        offer = F.concat(F.lit("offer:"), F.col("offer_index").cast("string"))
        chosen = (
            chosen.withColumn("_c", F.coalesce(size, F.lit(0)).cast("long"))
            .withColumn("_n", F.count(F.lit(1)).over(Window.partitionBy("offer_index")))
            .withColumn("_pos", (F.row_number().over(order) - 1).cast("long"))
            .withColumn(
                "_start",  # in [0, n)
                F.floor(uniform_hash(F.lit(params.holdout_salt), F.lit(month), offer) * F.col("_n")),
            )
            # integer division: a multiple of n falls in (pos * c + start, (pos + 1) * c + start]
            .withColumn("_holdout", F.expr("((_pos + 1) * _c + _start) div _n > (_pos * _c + _start) div _n"))
        )
    chosen = chosen.select("subscriber_id", "offer_index", "expected_net_value", "arm", "_holdout")
    best = F.array_max(_filled("offer_values"))
    best_index = (F.array_position(_filled("offer_values"), best) - 1).cast("int")
    candidate = F.col("reason").isNull()
    return values.join(chosen, "subscriber_id", "left").select(
        "subscriber_id",
        F.when(F.col("_holdout"), "holdout")
        .when(F.col("offer_index").isNotNull(), "assigned")
        .when(F.col("reason") == "programme_holdout", "holdout")
        .otherwise("excluded")
        .alias("status"),
        F.when(F.col("_holdout"), "holdout")
        .when(F.col("offer_index").isNotNull(), F.lit(None))
        .when(F.col("reason").isNotNull(), F.col("reason"))
        .otherwise(F.lit("unassigned"))
        .alias("exclusion_reason"),
        "offer_index",  # the offer picked (also for the control group: the one it would have got)
        "arm",
        "programme_holdout",
        F.when(F.col("offer_index").isNotNull(), F.col("expected_net_value"))
        .otherwise(F.when(candidate, best))
        .alias("expected_net_value"),
        F.when(candidate & F.col("offer_index").isNull(), best_index).alias("_best_index"),
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
        "arm",
        "programme_holdout",
    )
