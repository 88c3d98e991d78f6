"""Retention offer matching (pure): eligibility, contact policy, expected net value, the optimal assignment.

Per candidate line and offer, the expected net value is

    churn_probability x effect x value_of_save - cost
    value_of_save = arpu_3m x value_horizon_months x margin

(``churn_probability``: the risk if left alone; ``effect``: the share of that risk the offer removes, the
prior from the catalogue or the effect measured by the evaluation; the evaluation values a save the same
way, :func:`value_of_save`). An offer measured to raise churn in a segment (:class:`OfferEffects`
``harmful``) is not offered there. The assignment maximises the total expected net value with at most
one offer per line, every offer within its monthly capacity and the total cost within the budget:

- :func:`solve_exact`: the integer programme, solved by HiGHS (``scipy.optimize.milp``);
- :func:`solve_greedy`: the best (line, offer) pairs first by value, or by value per unit of cost
  (``by="ratio"``, the stronger heuristic), the baselines it must beat;
- :func:`lp_bound`: the linear relaxation's optimum, an upper bound on the integer one;
- :func:`update_prices` / :func:`dual_bound`: the driver's half of the price decomposition the Spark stage
  (``pipelines.match_offers``) runs for large populations: each line picks its best offer at the current
  prices of capacity and budget in Spark, the driver moves the prices from the aggregated usage. Any
  prices give an upper bound on the optimum, so the job reports the gap of the assignment it writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from scipy.sparse import coo_matrix, vstack

from models.params import RISK_BANDS, OfferParams

# the columns a candidate frame needs (the Spark stage builds them from the warning list and features)
CANDIDATE_COLUMNS = (
    "subscriber_id",
    "churn_probability",
    "risk_band",
    "cohort",
    "value_tier",
    "strategy",
    "churn_type",
    "usage_segment",
    "arpu_3m",
    "plan_type",
    "contract_state",
    "marketing_consent",
    "cooling_down",
    "open_complaint",
)


def contract_state(
    has_contract: pd.Series, out_of_contract: pd.Series, months_to_end: pd.Series
) -> np.ndarray:
    """``no_contract``, ``out_of_contract``, ``expiring`` (ends within 3 months) or ``in_contract``."""
    months = pd.to_numeric(months_to_end, errors="coerce")
    return np.select(
        [
            ~has_contract.fillna(False).astype(bool),
            out_of_contract.fillna(False).astype(bool),
            (months <= 3).fillna(False).to_numpy(),
        ],
        ["no_contract", "out_of_contract", "expiring"],
        "in_contract",
    ).astype(object)


def eligible(frame: pd.DataFrame, params: OfferParams) -> np.ndarray:
    """Lines x offers: the offer's eligibility rules hold (the contact policy is applied apart)."""
    out = np.ones((len(frame), len(params.offers)), dtype=bool)
    for j, offer in enumerate(params.offers):
        rules = offer.eligibility
        for column, allowed in (
            ("plan_type", rules.plan_types),
            ("cohort", rules.cohorts),
            ("value_tier", rules.value_tiers),
            ("churn_type", rules.churn_types),
            ("contract_state", rules.contract_states),
            ("strategy", rules.strategies),
        ):
            if allowed:
                out[:, j] &= frame[column].isin(allowed).to_numpy()
        if rules.usage_segments:
            segment = frame["usage_segment"].fillna("").astype(str)
            out[:, j] &= np.logical_or.reduce(
                [segment.str.startswith(s).to_numpy() for s in rules.usage_segments]
            )
    return out


# the candidate columns an offer's measured harm can be confined to (``offer_effects.dimension``)
SEGMENT_DIMENSIONS = ("cohort", "churn_type", "value_tier", "risk_band")


@dataclass(frozen=True)
class OfferEffects:
    """What the evaluation measured: each offer's relative effect (the catalogue's prior where absent),
    and the (offer, dimension, segment) cells where the offer significantly raised churn."""

    effect: Mapping[str, float] = field(default_factory=dict)
    harmful: frozenset[tuple[str, str, str]] = frozenset()


def value_of_save(arpu: np.ndarray | pd.Series, params: OfferParams) -> np.ndarray:
    """What keeping a line is worth: ``arpu x value_horizon_months x margin`` (matching and evaluation)."""
    return np.nan_to_num(np.asarray(arpu, dtype=float)) * params.value_horizon_months * params.margin


def net_values(
    frame: pd.DataFrame,
    params: OfferParams,
    effects: OfferEffects | None = None,
    uplift: np.ndarray | None = None,
) -> np.ndarray:
    """Lines x offers: expected net value (``-inf`` where the offer is not eligible for the line, or
    measured to harm the line's segment).

    ``uplift``: lines x offers, the predicted drop of each line's churn probability under each offer (an
    uplift model, :mod:`models.uplift`; negative where the offer raises churn); NaN, or without it, the
    rule ``churn_probability x effect``.
    """
    effects = effects or OfferEffects()
    cost = np.array([o.cost for o in params.offers])
    effect = np.array([effects.effect.get(o.id, o.effect) for o in params.offers])
    p = frame["churn_probability"].to_numpy(dtype=float)
    rule = p[:, None] * effect[None, :]
    uplift = rule if uplift is None else np.where(np.isnan(uplift), rule, uplift)
    values = uplift * value_of_save(frame["arpu_3m"], params)[:, None] - cost[None, :]
    allowed = eligible(frame, params)
    for j, offer in enumerate(params.offers):
        for o, dimension, segment in effects.harmful:
            if o == offer.id and dimension in frame:
                allowed[:, j] &= (frame[dimension].astype(str) != segment).to_numpy()
    return np.where(allowed, values, -np.inf)


@dataclass
class PolicyResult:
    """Per line: the exclusion reason (None: a candidate), the offers' values (``-inf`` where the line may
    not get the offer), and the offers the line may get whatever their value (exploration draws from
    these: a candidate's, or a line's that no offer is worth its cost to)."""

    reason: np.ndarray
    usable: np.ndarray
    explorable: np.ndarray


def policy_reasons(frame: pd.DataFrame, params: OfferParams, values: np.ndarray) -> PolicyResult:
    """Each line's exclusion reason before optimisation, and the values and offers it may use.

    Order: below the candidate band (``below_value``), ``no_consent``, ``cooling_down``, ``unprofitable``,
    ``not_eligible`` (no offer fits), ``open_complaint`` (only sales-like offers fit and a complaint is
    open), ``below_value`` (no offer is worth its cost). A line excluded only for the last reason keeps
    its values and may still be explored.
    """
    policy = params.policy
    n = len(frame)
    reason = np.full(n, None, dtype=object)

    def mark(rows: np.ndarray, why: str) -> None:
        reason[(reason == None) & rows] = why  # noqa: E711 (elementwise)

    band_ok = frame["risk_band"].isin(RISK_BANDS[RISK_BANDS.index(params.min_band) :]).to_numpy()
    mark(~band_ok, "below_value")
    if policy.require_consent:
        mark(~frame["marketing_consent"].fillna(False).astype(bool).to_numpy(), "no_consent")
    mark(frame["cooling_down"].fillna(False).astype(bool).to_numpy(), "cooling_down")
    if policy.exclude_unprofitable:
        mark((frame["value_tier"] == "unprofitable").to_numpy(), "unprofitable")
    fits = np.isfinite(values)
    mark(~fits.any(axis=1), "not_eligible")
    usable = values.copy()
    if policy.suppress_sales_on_open_complaint:
        complaint = frame["open_complaint"].fillna(False).astype(bool).to_numpy()
        sales = np.array([o.sales_like for o in params.offers])
        usable[complaint[:, None] & sales[None, :]] = -np.inf
        mark(np.asarray(~np.isfinite(usable).any(axis=1)), "open_complaint")
    usable[reason != None] = -np.inf  # noqa: E711
    explorable = np.isfinite(usable)
    mark(np.asarray(~(usable > 0).any(axis=1)), "below_value")
    return PolicyResult(reason, usable, explorable)


def control_size(picked: int, params: OfferParams) -> int:
    """Control lines among an offer's ``picked`` lines: ``holdout_rate`` of them (halves up), raised to
    ``min_control_lines`` where that keeps at most ``max_control_share`` of them in the control."""
    size = int(np.floor(picked * params.holdout_rate + 0.5))
    if size < params.min_control_lines and picked * params.max_control_share >= params.min_control_lines:
        size = params.min_control_lines
    return size


@dataclass
class Assignment:
    """Offer index per line (-1: none), the total value, and how it was solved."""

    offer: np.ndarray
    total: float
    method: str
    bound: float | None = None  # an upper bound on the optimum (Lagrangian), when known

    @property
    def gap(self) -> float | None:
        return None if self.bound is None else max(0.0, self.bound - self.total)


def _capacities(params: OfferParams) -> np.ndarray:
    return np.array([np.inf if o.capacity is None else o.capacity for o in params.offers], dtype=float)


def _costs(params: OfferParams) -> np.ndarray:
    return np.array([o.cost for o in params.offers], dtype=float)


def _total(values: np.ndarray, offer: np.ndarray) -> float:
    rows = offer >= 0
    return float(values[np.flatnonzero(rows), offer[rows]].sum())


def solve_exact(values: np.ndarray, params: OfferParams, budget: float | None = None) -> Assignment:
    """The optimal assignment (HiGHS MILP over the pairs with a positive value)."""
    budget = params.budget if budget is None else budget
    n, m = values.shape
    rows, cols = np.nonzero(values > 0)
    offer = np.full(n, -1)
    if len(rows) == 0:
        return Assignment(offer, 0.0, "exact")
    v = values[rows, cols]
    a, upper = _constraints(rows, cols, (n, m), params, budget)
    result = milp(
        -v,
        constraints=LinearConstraint(a, -np.inf, upper),
        integrality=np.ones(len(rows)),
        bounds=Bounds(0, 1),
        options={"mip_rel_gap": 1e-6, "time_limit": 300},
    )
    if result.x is None:
        raise RuntimeError(f"offer assignment: HiGHS found no solution ({result.message})")
    chosen = result.x > 0.5
    offer[rows[chosen]] = cols[chosen]
    return Assignment(offer, _total(values, offer), "exact")


def solve_greedy(
    values: np.ndarray,
    params: OfferParams,
    budget: float | None = None,
    by: Literal["value", "ratio"] = "value",
) -> Assignment:
    """The best (line, offer) pairs first while the line is free, the offer has room and the budget lasts;
    best by value, or by value per unit of cost (``ratio``: the knapsack heuristic)."""
    budget = params.budget if budget is None else budget
    n, _ = values.shape
    rows, cols = np.nonzero(values > 0)
    left, spent, cost = _capacities(params).copy(), 0.0, _costs(params)
    key = values[rows, cols] if by == "value" else values[rows, cols] / np.maximum(cost[cols], 1e-9)
    order = np.argsort(-key, kind="stable")
    offer = np.full(n, -1)
    for i in order:
        r, c = rows[i], cols[i]
        if offer[r] < 0 and left[c] >= 1 and spent + cost[c] <= budget + 1e-9:
            offer[r], spent = c, spent + cost[c]
            left[c] -= 1
    return Assignment(offer, _total(values, offer), f"greedy_{by}" if by != "value" else "greedy")


def lp_bound(values: np.ndarray, params: OfferParams, budget: float | None = None) -> float:
    """The optimum of the linear relaxation (fractional assignments): no assignment can be worth more."""
    budget = params.budget if budget is None else budget
    rows, cols = np.nonzero(values > 0)
    if len(rows) == 0:
        return 0.0
    a, upper = _constraints(rows, cols, values.shape, params, budget)
    result = linprog(-values[rows, cols], A_ub=a, b_ub=upper, bounds=(0, 1), method="highs")
    if result.status != 0:
        raise RuntimeError(f"offer assignment: the LP relaxation failed ({result.message})")
    return float(-result.fun)


def _constraints(
    rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int], params: OfferParams, budget: float
) -> tuple[object, np.ndarray]:
    """One offer per line, each offer within its capacity, the spend within the budget (``A x <= b``)."""
    n, m = shape
    k = len(rows)
    cost, cap = _costs(params)[cols], _capacities(params)
    one_per_line = coo_matrix((np.ones(k), (rows, np.arange(k))), shape=(n, k))
    per_offer = coo_matrix((np.ones(k), (cols, np.arange(k))), shape=(m, k))
    spend = coo_matrix((cost, (np.zeros(k, dtype=int), np.arange(k))), shape=(1, k))
    upper = np.concatenate([np.ones(n), np.where(np.isinf(cap), k, cap), [budget]])
    return vstack([one_per_line, per_offer, spend]).tocsr(), upper


def dual_bound(reduced_total: float, prices: np.ndarray, mu: float, params: OfferParams) -> float:
    """Upper bound on the optimum: sum of positive reduced values + prices x capacities + mu x budget."""
    cap = _capacities(params)
    finite = np.isfinite(cap)
    return float(reduced_total + np.sum(prices[finite] * cap[finite]) + mu * params.budget)


def update_prices(
    prices: np.ndarray, mu: float, counts: np.ndarray, spend: float, params: OfferParams, step: float
) -> tuple[np.ndarray, float]:
    """A projected subgradient step: raise the price of what is over-used, lower it where there is room."""
    cap = _capacities(params)
    finite = np.isfinite(cap)
    scale = max(1.0, float(np.max(np.abs(prices))) if len(prices) else 1.0)
    new = prices.copy()
    new[finite] = np.maximum(
        0.0, prices[finite] + step * scale * (counts[finite] - cap[finite]) / np.maximum(cap[finite], 1)
    )
    new[~finite] = 0.0
    new_mu = max(0.0, mu + step * max(mu, 0.01) * (spend - params.budget) / max(params.budget, 1.0))
    return new, new_mu
